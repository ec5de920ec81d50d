//! Command-line flags of the collector and its topology series (the `cli` feature).
use std::time::Duration;

use crate::{
    CollectorConfig,
    exposition::{ContainerLabel, ExpositionConfig},
    series::SeriesConfig,
    traffic::TrafficLimits,
};

/// The collector's flags, for every binary that runs one (`orca-master`, `orca-collector`).
#[derive(Debug, Clone, clap::Args)]
pub struct CollectorArgs {
    /// Seconds of silence after which an agent is removed from the topology.
    #[arg(long, default_value_t = 60)]
    pub agent_expiry_secs: u64,
    /// Time-series retention in minutes (15-second resolution).
    #[arg(long, default_value_t = 60)]
    pub retention_minutes: u64,
    #[command(flatten)]
    pub topology_series: TopologyMetricsArgs,
}

impl CollectorArgs {
    pub fn config(&self) -> CollectorConfig {
        CollectorConfig {
            series: SeriesConfig {
                resolution_ms: 15_000,
                capacity: (self.retention_minutes.max(1) * 4) as usize,
            },
            agent_expiry: Duration::from_secs(self.agent_expiry_secs),
            exposition: self.topology_series.exposition(),
            traffic: self.topology_series.traffic(),
            ..Default::default()
        }
    }
}

/// Flags for the topology series, shared by every daemon that exports them (the collector's,
/// and the agent's own node's).

#[derive(Debug, Clone, clap::Args)]
pub struct TopologyMetricsArgs {
    /// Labels of container series, comma-separated: host, name, image, runtime, id,
    /// service, namespace, pod, container (the last three only where Kubernetes's labels
    /// are on the container).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "host,name,image,namespace,pod,container"
    )]
    pub metrics_container_labels: Vec<ContainerLabel>,
    /// Container series exported at most (the rest are counted in
    /// orca_topology_series_dropped).
    #[arg(long, default_value_t = 20_000)]
    pub metrics_max_containers: usize,
    /// Also export the N busiest processes of each host (0: none).
    #[arg(long, default_value_t = 0)]
    pub metrics_top_processes: usize,
    /// Traffic edges between service groups kept at most (updates of further edges are
    /// counted in orca_topology_edge_updates_dropped_total).
    #[arg(long, default_value_t = 10_000)]
    pub metrics_max_edges: usize,
}

impl TopologyMetricsArgs {
    pub fn exposition(&self) -> ExpositionConfig {
        ExpositionConfig {
            container_labels: self.metrics_container_labels.clone(),
            max_containers: self.metrics_max_containers,
            top_processes: self.metrics_top_processes,
        }
    }

    pub fn traffic(&self) -> TrafficLimits {
        TrafficLimits {
            max_edges: self.metrics_max_edges,
            ..TrafficLimits::default()
        }
    }
}
