//! The topology collector: accepts report streams from many agents, merges them into one
//! topology with time series, and publishes views as snapshots followed by deltas.
//!
//! A second product inside `master/`: the master mounts its gRPC service and HTTP routes,
//! but it depends on nothing of the cluster core.
#[cfg(feature = "cli")]
pub mod cli;
pub mod exposition;
pub mod graph;
pub mod http;
pub mod metrics;
pub mod series;
pub mod service;
pub mod store;
pub mod traffic;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use orca_proto::topology::v1 as pb;
use tokio::sync::broadcast;

use exposition::{ExpositionConfig, TopologySamples};
use graph::{ViewGraph, with_latest_points, with_series};
use metrics::CollectorMetrics;
use series::SeriesConfig;
use store::{Applied, Store};

pub const VIEWS: [pb::View; 4] = [
    pb::View::Hosts,
    pb::View::Containers,
    pb::View::Processes,
    pb::View::Connections,
];

/// Collector settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub series: SeriesConfig,
    /// An agent silent for this long is removed from the topology.
    pub agent_expiry: Duration,
    /// How often views are rebuilt and deltas published to watchers.
    pub publish_every: Duration,
    /// Which topology series `/metrics` carries.
    pub exposition: ExpositionConfig,
    /// Caps of the traffic counters between service groups.
    pub traffic: traffic::TrafficLimits,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            series: SeriesConfig::default(),
            agent_expiry: Duration::from_secs(60),
            publish_every: Duration::from_millis(200),
            exposition: ExpositionConfig::default(),
            traffic: traffic::TrafficLimits::default(),
        }
    }
}

/// The published state of one view.
#[derive(Debug)]
struct ViewState {
    seq: u64,
    store_version: u64,
    graph: ViewGraph,
    tx: broadcast::Sender<Arc<pb::TopologyDelta>>,
}

#[derive(Debug)]
struct Inner {
    store: Mutex<Store>,
    views: HashMap<i32, Mutex<ViewState>>,
    metrics: CollectorMetrics,
    config: CollectorConfig,
}

/// A handle to the collector, cheap to clone.
#[derive(Debug, Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Collector {
    pub fn new(config: CollectorConfig) -> Self {
        let views = VIEWS
            .iter()
            .map(|v| {
                let (tx, _) = broadcast::channel(256);
                (
                    *v as i32,
                    Mutex::new(ViewState {
                        seq: 0,
                        store_version: u64::MAX,
                        graph: ViewGraph::default(),
                        tx,
                    }),
                )
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                store: Mutex::new({
                    let mut store = Store::new(config.series);
                    store.traffic.limits = config.traffic;
                    store
                }),
                views,
                metrics: CollectorMetrics::new(),
                config,
            }),
        }
    }

    pub fn metrics(&self) -> &CollectorMetrics {
        &self.inner.metrics
    }

    /// The topology's series, copied out under the store's lock.
    pub fn topology_samples(&self) -> TopologySamples {
        TopologySamples::collect(&lock(&self.inner.store), &self.inner.config.exposition)
    }

    /// `/metrics`: the collector's own metrics and the topology's series (OpenMetrics text).
    pub fn exposition(&self) -> String {
        let own = self.inner.metrics.encode();
        let topology = self.topology_samples().encode();
        orca_exposition::join([own.as_str(), topology.as_str()])
    }

    /// Validates and applies one report; the answer tells the agent what was applied.
    pub fn ingest(&self, report: pb::Report) -> pb::ReportAck {
        let started = Instant::now();
        let metrics = &self.inner.metrics;
        let agent_id = report.agent_id.clone();
        let parsed = match store::parse(report) {
            Ok(parsed) => parsed,
            Err(err) => {
                metrics.report("rejected");
                tracing::warn!(agent = %agent_id, %err, "rejected a report");
                let applied_seq = lock(&self.inner.store).applied_seq(&agent_id);
                return pb::ReportAck {
                    applied_seq,
                    need_full: false,
                    error: format!("report rejected: {err}"),
                };
            }
        };
        let mut store = lock(&self.inner.store);
        let outcome = store.apply(parsed);
        let applied_seq = store.applied_seq(&agent_id);
        metrics.agents.set(store.agents.len() as i64);
        drop(store);
        metrics.report(match outcome {
            Applied::Applied => "applied",
            Applied::Duplicate => "duplicate",
            Applied::NeedFull => "need_full",
        });
        metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        pb::ReportAck {
            applied_seq,
            need_full: outcome == Applied::NeedFull,
            error: String::new(),
        }
    }

    /// A view right now, with whole time series (for the HTTP API).
    pub fn view(&self, view: pb::View) -> ViewGraph {
        let store = lock(&self.inner.store);
        graph::build(&store, view, true)
    }

    /// One node (of any agent) with its whole retained series.
    pub fn node_series(&self, node_id: &str) -> Option<pb::TopologyNode> {
        let store = lock(&self.inner.store);
        let (agent, node) = store
            .agents
            .values()
            .find_map(|a| a.nodes.get(node_id).map(|n| (a, n)))?;
        Some(with_series(
            &store,
            pb::TopologyNode {
                node: Some(node.clone()),
                hostname: agent.hostname.clone(),
                ..Default::default()
            },
        ))
    }

    pub fn agents(&self) -> Vec<serde_json::Value> {
        let store = lock(&self.inner.store);
        let mut out: Vec<serde_json::Value> = store
            .agents
            .values()
            .map(|a| {
                serde_json::json!({
                    "agentId": a.agent_id,
                    "hostname": a.hostname,
                    "appliedSeq": a.applied_seq,
                    "synced": a.synced,
                    "lastReportUnixMs": a.last_report_unix_ms,
                    "secondsSinceReport": a.last_report.elapsed().as_secs_f64(),
                    "nodes": a.nodes.len(),
                    "connections": a.connections.len(),
                    "stats": a.stats,
                })
            })
            .collect();
        out.sort_by(|a, b| a["agentId"].as_str().cmp(&b["agentId"].as_str()));
        out
    }

    /// Rebuilds `view` if the store moved and publishes the difference. Returns the delta.
    fn refresh(&self, view: pb::View) -> Option<Arc<pb::TopologyDelta>> {
        let state = self.inner.views.get(&(view as i32))?;
        let store = lock(&self.inner.store);
        let mut state = lock(state);
        if state.store_version == store.version {
            return None;
        }
        let graph = graph::build(&store, view, false);
        let mut delta = pb::TopologyDelta {
            seq: state.seq + 1,
            full: false,
            timestamp_unix_ms: now_unix_ms(),
            ..Default::default()
        };
        for (id, node) in &graph.nodes {
            if state.graph.nodes.get(id) != Some(node) {
                delta
                    .upserted_nodes
                    .push(with_latest_points(&store, node.clone()));
            }
        }
        delta.removed_nodes = gone(&state.graph.nodes, &graph.nodes);
        for (id, edge) in &graph.edges {
            if state.graph.edges.get(id) != Some(edge) {
                delta.upserted_edges.push(edge.clone());
            }
        }
        delta.removed_edges = gone(&state.graph.edges, &graph.edges);
        for (id, connection) in &graph.connections {
            if state.graph.connections.get(id) != Some(connection) {
                delta.upserted_connections.push(connection.clone());
            }
        }
        delta.removed_connections = gone(&state.graph.connections, &graph.connections);
        state.store_version = store.version;
        state.graph = graph;
        if delta.upserted_nodes.is_empty()
            && delta.removed_nodes.is_empty()
            && delta.upserted_edges.is_empty()
            && delta.removed_edges.is_empty()
            && delta.upserted_connections.is_empty()
            && delta.removed_connections.is_empty()
        {
            return None;
        }
        state.seq = delta.seq;
        let delta = Arc::new(delta);
        let _ = state.tx.send(delta.clone());
        Some(delta)
    }

    /// Subscribes to a view: a full snapshot (nodes with the latest point of each series) and
    /// a receiver of the deltas that follow it.
    pub fn subscribe(
        &self,
        view: pb::View,
    ) -> Option<(
        pb::TopologyDelta,
        broadcast::Receiver<Arc<pb::TopologyDelta>>,
    )> {
        self.refresh(view);
        let state = self.inner.views.get(&(view as i32))?;
        let store = lock(&self.inner.store);
        let state = lock(state);
        let rx = state.tx.subscribe();
        let snapshot = pb::TopologyDelta {
            seq: state.seq,
            full: true,
            upserted_nodes: state
                .graph
                .nodes
                .values()
                .map(|n| with_latest_points(&store, n.clone()))
                .collect(),
            removed_nodes: vec![],
            upserted_edges: state.graph.edges.values().cloned().collect(),
            removed_edges: vec![],
            timestamp_unix_ms: now_unix_ms(),
            upserted_connections: state.graph.connections.values().cloned().collect(),
            removed_connections: vec![],
        };
        Some((snapshot, rx))
    }

    /// Publishes deltas and expires silent agents until the process ends.
    pub async fn run_publisher(self) {
        let mut tick = tokio::time::interval(self.inner.config.publish_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let expired = lock(&self.inner.store).expire(self.inner.config.agent_expiry);
            for agent in expired {
                tracing::info!(%agent, "agent silent for too long; removed from the topology");
            }
            for view in VIEWS {
                let watched = self
                    .inner
                    .views
                    .get(&(view as i32))
                    .is_some_and(|s| lock(s).tx.receiver_count() > 0);
                if watched {
                    self.refresh(view);
                }
            }
            let store = lock(&self.inner.store);
            self.inner.metrics.agents.set(store.agents.len() as i64);
            self.inner
                .metrics
                .nodes
                .set(store.agents.values().map(|a| a.nodes.len()).sum::<usize>() as i64);
        }
    }
}

/// Ids present before and absent now.
fn gone<V>(before: &BTreeMap<String, V>, now: &BTreeMap<String, V>) -> Vec<String> {
    before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect()
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
