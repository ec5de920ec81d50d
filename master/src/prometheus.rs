//! The master's `/metrics`: its Mesos metrics as typed Prometheus families (counters as
//! `_total` counters, seconds in seconds, allocation run times as a histogram), the
//! collector's own metrics and the topology's series, in one OpenMetrics exposition.
//! `/metrics/snapshot` keeps the Mesos names and shapes.
use std::fmt;

use orca_collector::Collector;
use prometheus_client::{
    collector::Collector as PromCollector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::cluster::{Cluster, TaskState};

/// How one Mesos metric is exported.
#[derive(Debug, PartialEq, Eq)]
enum Export {
    Gauge(String),
    /// Named without `_total` (the encoder adds it).
    Counter(String),
    /// Exported otherwise (the allocation percentiles: as a histogram).
    Skip,
}

/// The Prometheus name and type of a Mesos metric.
fn export(mesos: &str) -> Export {
    let base = |name: &str| format!("orca_{}", name.replace(['/', '-'], "_"));
    let is_counter = |name: &str| {
        matches!(
            name,
            "master/offers_made"
                | "master/offers_declined"
                | "master/offers_accepted"
                | "master/offers_rescinded"
                | "master/invalid_calls"
                | "allocator/allocation_runs"
        ) || TaskState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .any(|s| name == format!("master/tasks_{}", s.name()[5..].to_lowercase()))
    };
    match mesos {
        "master/uptime_secs" => Export::Gauge("orca_master_uptime_seconds".into()),
        name if name.starts_with("allocator/allocation_run_ms/") => Export::Skip,
        name if is_counter(name) => Export::Counter(base(name)),
        name => Export::Gauge(base(name)),
    }
}

/// The cluster's metrics at one instant.
#[derive(Debug)]
struct ClusterSamples(Vec<(String, f64)>);

impl PromCollector for ClusterSamples {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for (mesos, value) in &self.0 {
            let help = format!("Mesos metric {mesos}");
            match export(mesos) {
                Export::Gauge(name) => {
                    let metric =
                        encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
                    ConstGauge::new(*value).encode(metric)?;
                }
                Export::Counter(name) => {
                    let metric =
                        encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
                    ConstCounter::new(*value as u64).encode(metric)?;
                }
                Export::Skip => {}
            }
        }
        Ok(())
    }
}

/// The whole `/metrics` body of a master.
pub fn exposition(collector: &Collector, cluster: &Cluster) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ClusterSamples(cluster.metrics())));
    registry.register(
        "orca_allocator_allocation_run_seconds",
        "Time one allocation run took",
        cluster.allocation_seconds(),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    orca_exposition::join([collector.exposition().as_str(), text.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_metrics_get_prometheus_types_and_units() {
        assert_eq!(
            export("master/offers_made"),
            Export::Counter("orca_master_offers_made".into())
        );
        assert_eq!(
            export("master/tasks_finished"),
            Export::Counter("orca_master_tasks_finished".into())
        );
        assert_eq!(
            export("master/tasks_gone_by_operator"),
            Export::Counter("orca_master_tasks_gone_by_operator".into())
        );
        assert_eq!(
            export("master/tasks_running"),
            Export::Gauge("orca_master_tasks_running".into())
        );
        assert_eq!(
            export("master/uptime_secs"),
            Export::Gauge("orca_master_uptime_seconds".into())
        );
        assert_eq!(export("allocator/allocation_run_ms/p99"), Export::Skip);
        assert_eq!(
            export("allocator/allocation_runs"),
            Export::Counter("orca_allocator_allocation_runs".into())
        );
    }
}
