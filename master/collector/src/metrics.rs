//! The collector's own Prometheus metrics.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Debug)]
pub struct CollectorMetrics {
    registry: Registry,
    pub reports: Family<ResultLabel, Counter>,
    pub agents: Gauge,
    pub nodes: Gauge,
    pub watchers: Gauge,
    pub apply_seconds: Histogram,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectorMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orca_collector");
        let reports = Family::<ResultLabel, Counter>::default();
        let agents = Gauge::default();
        let nodes = Gauge::default();
        let watchers = Gauge::default();
        let apply_seconds =
            Histogram::new([0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]);
        registry.register(
            "reports",
            "Reports received, by result (applied, duplicate, need_full, rejected, malformed), and report streams broken off (broken)",
            reports.clone(),
        );
        registry.register("agents", "Agents reporting", agents.clone());
        registry.register("nodes", "Nodes in the merged topology", nodes.clone());
        registry.register("watchers", "Open topology watches", watchers.clone());
        registry.register(
            "report_apply_seconds",
            "Time to validate and apply one report",
            apply_seconds.clone(),
        );
        Self {
            registry,
            reports,
            agents,
            nodes,
            watchers,
            apply_seconds,
        }
    }

    pub fn report(&self, result: &str) {
        self.reports
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
