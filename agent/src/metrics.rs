//! The agent's Prometheus metrics, and its own node's topology series (hosts, containers,
//! edges, top processes: what the collector exports for every node) for a DaemonSet scraped
//! directly.
use std::sync::{Arc, Mutex, atomic::AtomicU64};

use orca_collector::{
    exposition::{ExpositionConfig, TopologySamples},
    series::SeriesConfig,
    store::{self, Store},
    traffic::TrafficLimits,
};
use orca_proto::topology::v1 as pb;
use prost::Message as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

/// Every metric the agent exports. Counters mirror the engine's totals.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    pub events_processed: Counter,
    pub events_lost: Counter,
    pub reports_sent: Counter,
    pub reports_dropped: Counter,
    pub reports_buffered: Gauge,
    pub collector_connected: Gauge,
    pub probe_mode: Family<ModeLabel, Gauge>,
    pub connections: Gauge,
    pub processes: Gauge,
    pub cpu_seconds: Counter<f64, AtomicU64>,
    pub rss_bytes: Gauge,
    pub snapshot_seconds: Gauge<f64, AtomicU64>,
    /// This node's topology, kept from the reports the agent makes (`None`: not exported).
    topology: Option<NodeTopology>,
}

/// The agent's own reports applied to a collector store of one node.
#[derive(Debug)]
struct NodeTopology {
    store: Mutex<Store>,
    config: ExpositionConfig,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orca_agent");
        let m = Self {
            events_processed: Counter::default(),
            events_lost: Counter::default(),
            reports_sent: Counter::default(),
            reports_dropped: Counter::default(),
            reports_buffered: Gauge::default(),
            collector_connected: Gauge::default(),
            probe_mode: Family::default(),
            connections: Gauge::default(),
            processes: Gauge::default(),
            cpu_seconds: Counter::default(),
            rss_bytes: Gauge::default(),
            snapshot_seconds: Gauge::default(),
            registry: Registry::default(),
            topology: None,
        };
        registry.register(
            "events_processed",
            "Kernel events read from the eBPF ring buffer",
            m.events_processed.clone(),
        );
        registry.register(
            "events_lost",
            "Kernel events lost (ring buffer or connection map full)",
            m.events_lost.clone(),
        );
        registry.register(
            "reports_sent",
            "Reports acknowledged by the collector",
            m.reports_sent.clone(),
        );
        registry.register(
            "reports_dropped",
            "Reports dropped because the buffer was full while the collector was unreachable",
            m.reports_dropped.clone(),
        );
        registry.register(
            "reports_buffered",
            "Reports waiting for the collector",
            m.reports_buffered.clone(),
        );
        registry.register(
            "collector_connected",
            "1 while a report stream to the collector is open",
            m.collector_connected.clone(),
        );
        registry.register(
            "probe_mode",
            "1 for the mode the agent observes the host in (ebpf or proc)",
            m.probe_mode.clone(),
        );
        registry.register(
            "connections",
            "TCP connections tracked",
            m.connections.clone(),
        );
        registry.register("processes", "Processes on the host", m.processes.clone());
        registry.register(
            "cpu_seconds",
            "The agent's own CPU time, user and system",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "The agent's own RSS",
            m.rss_bytes.clone(),
        );
        registry.register(
            "snapshot_seconds",
            "Time the last host snapshot took",
            m.snapshot_seconds.clone(),
        );
        Self { registry, ..m }
    }

    /// Also exports this node's topology series, as `config` says.
    pub fn with_topology(self, config: ExpositionConfig, traffic: TrafficLimits) -> Self {
        // Only the latest values are exported: one point per series is enough.
        let mut store = Store::new(SeriesConfig {
            capacity: 1,
            ..SeriesConfig::default()
        });
        store.traffic.limits = traffic;
        Self {
            topology: Some(NodeTopology {
                store: Mutex::new(store),
                config,
            }),
            ..self
        }
    }

    /// Applies a report the agent made (its connections encoded apart, as the stream sends
    /// them) to the node's topology, when it is exported.
    pub fn record_report(&self, report: &pb::Report, encoded_connections: &[u8]) {
        let Some(topology) = &self.topology else {
            return;
        };
        let mut report = report.clone();
        if !encoded_connections.is_empty() {
            match pb::Report::decode(encoded_connections) {
                Ok(more) => report.connections.extend(more.connections),
                Err(err) => {
                    tracing::warn!(%err, "cannot read back a report's connections");
                    return;
                }
            }
        }
        let mut store = topology.store.lock().unwrap_or_else(|e| e.into_inner());
        match store::parse(report) {
            Ok(parsed) => {
                store.apply(parsed);
                // The node never expires; idle traffic edges do.
                store.expire(std::time::Duration::MAX);
            }
            Err(err) => tracing::warn!(%err, "the node's own report is not valid"),
        }
    }

    /// Raises a seconds counter to an absolute total kept elsewhere.
    pub fn raise_seconds(counter: &Counter<f64, AtomicU64>, total: f64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// Raises a counter to an absolute total kept elsewhere.
    pub fn raise(counter: &Counter, total: u64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// The agent's metrics and, when exported, its node's topology series (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        let Some(topology) = &self.topology else {
            return out;
        };
        let samples = TopologySamples::collect(
            &topology.store.lock().unwrap_or_else(|e| e.into_inner()),
            &topology.config,
        );
        orca_exposition::join([out.as_str(), samples.encode().as_str()])
    }
}

/// Serves `GET /metrics` until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
) -> std::io::Result<()> {
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move |request: axum::http::HeaderMap| {
            let metrics = metrics.clone();
            async move { orca_exposition::response(&request, metrics.encode()) }
        }),
    );
    axum::serve(listener, app).await
}
