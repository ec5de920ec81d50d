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
    collections::{BTreeMap, HashMap, HashSet},
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
    /// How often views are brought up to date and deltas published to watchers.
    pub publish_every: Duration,
    /// How often at most a view's edges are recomputed from every connection (when any
    /// changed); nodes follow every publish.
    pub edges_every: Duration,
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
            publish_every: Duration::from_millis(100),
            edges_every: Duration::from_secs(1),
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
    /// Built once from the whole store; kept current by deltas from then on.
    built: bool,
    graph: ViewGraph,
    /// Nodes of `graph` that stand for an edge's end outside the view (`external:…`).
    pseudo: HashSet<String>,
    /// The store's `edges_version` the edges were last computed at, and when.
    edges_from: Option<(u64, Instant)>,
    /// The connections view: far ends are found with this resolver, built at the store's
    /// `endpoints_version` (the second field) at the instant given.
    peers: Option<(graph::PeerResolver, u64, Instant)>,
    /// The connections view: each agent's connection ids in `graph`.
    connections_of: HashMap<String, Vec<String>>,
    tx: broadcast::Sender<Arc<pb::TopologyDelta>>,
}

#[derive(Debug)]
struct Inner {
    store: Mutex<Store>,
    /// Publish rounds so far (whose turn it is for a whole-store pass).
    rounds: std::sync::atomic::AtomicU64,
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
                        built: false,
                        graph: ViewGraph::default(),
                        pseudo: HashSet::new(),
                        edges_from: None,
                        peers: None,
                        connections_of: HashMap::new(),
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
                rounds: std::sync::atomic::AtomicU64::new(0),
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

    /// Brings `view` up to the store and publishes the difference. Returns the delta.
    ///
    /// A node view is built from the whole store once; from then on only the nodes the
    /// store marked changed are looked at. Its edges join connections reported by different
    /// agents, so they are recomputed from every connection, at most every `edges_every` and
    /// only when a connection or the set of nodes changed. The connections view redoes the
    /// agents that reported, and finds every connection's far end again at most every
    /// `edges_every` when endpoints changed.
    fn refresh(&self, view: pb::View) -> Option<Arc<pb::TopologyDelta>> {
        self.refresh_with(view, true)
    }

    /// `refresh`, with the whole-store passes (edges, far ends) allowed or put off: the
    /// publisher allows one view's per round, so they never add up in one round that holds
    /// the store's lock (and ingest) for their sum.
    fn refresh_with(&self, view: pb::View, whole_pass: bool) -> Option<Arc<pb::TopologyDelta>> {
        let state = self.inner.views.get(&(view as i32))?;
        let mut store = lock(&self.inner.store);
        let mut state = lock(state);
        let edges_behind = if view == pb::View::Connections {
            state
                .peers
                .as_ref()
                .is_none_or(|(_, version, _)| *version != store.endpoints_version)
        } else {
            state
                .edges_from
                .is_none_or(|(version, _)| version != store.edges_version)
        };
        if state.store_version == store.version && !edges_behind {
            return None;
        }
        let mut delta = pb::TopologyDelta {
            seq: state.seq + 1,
            full: false,
            timestamp_unix_ms: now_unix_ms(),
            ..Default::default()
        };
        let kind = match view {
            pb::View::Hosts => Some(pb::NodeKind::Host),
            pb::View::Containers => Some(pb::NodeKind::Container),
            pb::View::Processes => Some(pb::NodeKind::Process),
            _ => None,
        };
        match kind {
            Some(kind) if state.built => {
                let dirty = store.take_dirty(kind);
                update_nodes(&store, view, &mut state, dirty, &mut delta);
            }
            Some(kind) => {
                store.take_dirty(kind);
                let graph = graph::build(&store, view, false);
                for (id, node) in &graph.nodes {
                    if node.node.as_ref().is_some_and(|n| !graph::shown(view, n)) {
                        state.pseudo.insert(id.clone());
                    }
                }
                diff_nodes(&store, &state.graph, &graph, &mut delta);
                state.graph.nodes = graph.nodes;
                state.built = true;
            }
            None => {
                let resolve_all = edges_behind
                    && whole_pass
                    && state
                        .peers
                        .as_ref()
                        .is_none_or(|(_, _, at)| at.elapsed() >= self.inner.config.edges_every);
                update_connections(&mut store, &mut state, resolve_all, &mut delta);
            }
        }
        let edges_due = edges_behind
            && whole_pass
            && state
                .edges_from
                .is_none_or(|(_, at)| at.elapsed() >= self.inner.config.edges_every);
        if kind.is_some() && edges_due {
            state.edges_from = Some((store.edges_version, Instant::now()));
            let (edges, ends) = graph::edges(&store, view);
            update_pseudo_nodes(&mut state, ends, &mut delta);
            for (id, edge) in &edges {
                if state.graph.edges.get(id) != Some(edge) {
                    delta.upserted_edges.push(edge.clone());
                }
            }
            delta.removed_edges = gone(&state.graph.edges, &edges);
            state.graph.edges = edges;
        }
        state.store_version = store.version;
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

    /// Publishes deltas and expires silent agents until the process ends. Each round runs on
    /// the blocking pool: it holds the store's lock for a while at scale, and must not hold
    /// up the tasks that serve report streams and watches meanwhile.
    pub async fn run_publisher(self) {
        let mut tick = tokio::time::interval(self.inner.config.publish_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let this = self.clone();
            if tokio::task::spawn_blocking(move || this.publish_round())
                .await
                .is_err()
            {
                tracing::error!("a publish round panicked; publishing goes on");
            }
        }
    }

    /// Expires silent agents, then brings every watched view up to date.
    fn publish_round(&self) {
        let expired = lock(&self.inner.store).expire(self.inner.config.agent_expiry);
        for agent in expired {
            tracing::info!(%agent, "agent silent for too long; removed from the topology");
        }
        let round = self
            .inner
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, view) in VIEWS.into_iter().enumerate() {
            let watched = self
                .inner
                .views
                .get(&(view as i32))
                .is_some_and(|s| lock(s).tx.receiver_count() > 0);
            if watched {
                self.refresh_with(view, round % VIEWS.len() as u64 == i as u64);
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

/// Upserts and removals between two whole builds of a view's nodes.
fn diff_nodes(store: &Store, before: &ViewGraph, now: &ViewGraph, delta: &mut pb::TopologyDelta) {
    for (id, node) in &now.nodes {
        if before.nodes.get(id) != Some(node) {
            delta
                .upserted_nodes
                .push(with_latest_points(store, node.clone()));
        }
    }
    delta.removed_nodes = gone(&before.nodes, &now.nodes);
}

/// Brings the connections view up to date. Only the agents that reported are redone, their
/// far ends found with the resolver of the last whole pass; with `resolve_all` (endpoints
/// moved, at most every `edges_every`) every connection is resolved again with a new one, so
/// a connection whose far end appeared elsewhere is named within that time.
fn update_connections(
    store: &mut Store,
    state: &mut ViewState,
    resolve_all: bool,
    delta: &mut pb::TopologyDelta,
) {
    let dirty = store.take_dirty_connections();
    if resolve_all || state.peers.is_none() {
        let resolver = graph::PeerResolver::new(store);
        let mut now = BTreeMap::new();
        let mut connections_of: HashMap<String, Vec<String>> = HashMap::new();
        for agent in store.agents.values() {
            let ids = connections_of.entry(agent.agent_id.clone()).or_default();
            for c in resolver.entries(agent) {
                let id = graph::connection_id(&c).to_owned();
                ids.push(id.clone());
                now.insert(id, c);
            }
        }
        for (id, connection) in &now {
            if state.graph.connections.get(id) != Some(connection) {
                delta.upserted_connections.push(connection.clone());
            }
        }
        delta.removed_connections = gone(&state.graph.connections, &now);
        state.graph.connections = now;
        state.connections_of = connections_of;
        state.peers = Some((resolver, store.endpoints_version, Instant::now()));
        return;
    }
    let Some((resolver, _, _)) = &state.peers else {
        return;
    };
    for agent_id in dirty {
        let before = state.connections_of.remove(&agent_id).unwrap_or_default();
        let mut ids = Vec::new();
        if let Some(agent) = store.agents.get(&agent_id) {
            for c in resolver.entries(agent) {
                let id = graph::connection_id(&c).to_owned();
                if state.graph.connections.get(&id) != Some(&c) {
                    delta.upserted_connections.push(c.clone());
                    state.graph.connections.insert(id.clone(), c);
                }
                ids.push(id);
            }
        }
        let kept: HashSet<&String> = ids.iter().collect();
        for id in before {
            if !kept.contains(&id) && state.graph.connections.remove(&id).is_some() {
                delta.removed_connections.push(id);
            }
        }
        if !ids.is_empty() {
            state.connections_of.insert(agent_id, ids);
        }
    }
}

/// Applies the nodes the store marked changed to a built view.
fn update_nodes(
    store: &Store,
    view: pb::View,
    state: &mut ViewState,
    dirty: HashSet<(String, String)>,
    delta: &mut pb::TopologyDelta,
) {
    for (agent_id, id) in dirty {
        let now = store.agents.get(&agent_id).and_then(|agent| {
            let node = agent.nodes.get(&id)?;
            graph::shown(view, node)
                .then(|| graph::topology_node(store, node, &agent.hostname, false))
        });
        match now {
            Some(node) => {
                state.pseudo.remove(&id);
                if state.graph.nodes.get(&id) != Some(&node) {
                    delta
                        .upserted_nodes
                        .push(with_latest_points(store, node.clone()));
                    state.graph.nodes.insert(id, node);
                }
            }
            // Gone. Node ids name their host (`host:<name>`, `process:<host>:<pid>`) or a
            // runtime's unique container id: no other agent reports the same node.
            None => {
                if state.graph.nodes.remove(&id).is_some() {
                    delta.removed_nodes.push(id);
                }
            }
        }
    }
}

/// Keeps a view's pseudo nodes (edge ends outside the view) equal to the ends of its edges.
fn update_pseudo_nodes(
    state: &mut ViewState,
    ends: HashMap<String, std::net::IpAddr>,
    delta: &mut pb::TopologyDelta,
) {
    let stale: Vec<String> = state
        .pseudo
        .iter()
        .filter(|id| !ends.contains_key(*id))
        .cloned()
        .collect();
    for id in stale {
        state.pseudo.remove(&id);
        state.graph.nodes.remove(&id);
        delta.removed_nodes.push(id);
    }
    for (id, ip) in ends {
        if !state.graph.nodes.contains_key(&id) {
            let node = graph::pseudo_node(&id, ip);
            delta.upserted_nodes.push(node.clone());
            state.graph.nodes.insert(id.clone(), node);
            state.pseudo.insert(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn process(host: &str, pid: u32, cpu: f64) -> pb::Node {
        pb::Node {
            id: format!("process:{host}:{pid}"),
            kind: pb::NodeKind::Process as i32,
            parents: vec![format!("host:{host}")],
            detail: Some(pb::node::Detail::Process(pb::Process {
                pid,
                comm: format!("p{pid}"),
                cpu_percent: cpu,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn host(name: &str, ip: [u8; 4]) -> pb::Node {
        pb::Node {
            id: format!("host:{name}"),
            kind: pb::NodeKind::Host as i32,
            detail: Some(pb::node::Detail::Host(pb::Host {
                hostname: name.into(),
                ips: vec![ip.to_vec()],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn conn(
        id: &str,
        local: &str,
        remote: Option<&str>,
        state: pb::ConnectionState,
        pid: &str,
    ) -> pb::Connection {
        pb::Connection {
            id: id.into(),
            local: Some(pb::Endpoint::new(local.parse().unwrap())),
            remote: remote.map(|r| pb::Endpoint::new(r.parse().unwrap())),
            direction: pb::Direction::Outbound as i32,
            state: state as i32,
            process_id: pid.into(),
            bytes_sent: 10,
            ..Default::default()
        }
    }

    fn report(agent: &str, seq: u64, full: bool, nodes: Vec<pb::Node>) -> pb::Report {
        pb::Report {
            agent_id: agent.into(),
            hostname: agent.into(),
            seq,
            full,
            timestamp_unix_ms: seq as i64 * 1000,
            nodes,
            ..Default::default()
        }
    }

    /// What a watcher holds after applying a snapshot and deltas.
    #[derive(Default)]
    struct Watcher {
        nodes: BTreeMap<String, pb::Node>,
        edges: BTreeMap<String, pb::TopologyEdge>,
        connections: BTreeMap<String, pb::TopologyConnection>,
    }

    impl Watcher {
        fn apply(&mut self, delta: &pb::TopologyDelta) {
            if delta.full {
                *self = Self::default();
            }
            for n in &delta.upserted_nodes {
                let node = n.node.clone().unwrap();
                self.nodes.insert(node.id.clone(), node);
            }
            for id in &delta.removed_nodes {
                self.nodes.remove(id);
            }
            for e in &delta.upserted_edges {
                self.edges.insert(e.id.clone(), e.clone());
            }
            for id in &delta.removed_edges {
                self.edges.remove(id);
            }
            for c in &delta.upserted_connections {
                self.connections
                    .insert(graph::connection_id(c).to_owned(), c.clone());
            }
            for id in &delta.removed_connections {
                self.connections.remove(id);
            }
        }

        fn assert_matches(&self, collector: &Collector, view: pb::View) {
            let whole = collector.view(view);
            let nodes: BTreeMap<String, pb::Node> = whole
                .nodes
                .values()
                .map(|n| {
                    let node = n.node.clone().unwrap();
                    (node.id.clone(), node)
                })
                .collect();
            assert_eq!(self.nodes, nodes, "{view:?} nodes");
            assert_eq!(self.edges, whole.edges, "{view:?} edges");
            assert_eq!(self.connections, whole.connections, "{view:?} connections");
        }
    }

    /// A view kept by deltas says what a view built from the whole store says, through
    /// additions, changes, removals, a full report that replaces an agent's state, edges that
    /// come and go (with a pseudo node for an outside peer), connections whose counters alone
    /// move (redone for their agent only) and an agent that expires.
    #[test]
    fn views_kept_by_deltas_equal_views_built_whole() {
        let collector = Collector::new(CollectorConfig {
            edges_every: Duration::ZERO,
            ..Default::default()
        });
        let views = [pb::View::Hosts, pb::View::Processes, pb::View::Connections];
        let mut watchers: Vec<Watched> = Vec::new();
        type Watched = (
            pb::View,
            Watcher,
            broadcast::Receiver<Arc<pb::TopologyDelta>>,
        );
        let step = |collector: &Collector, watchers: &mut Vec<Watched>| {
            for view in views {
                collector.refresh(view);
            }
            for (view, w, rx) in watchers.iter_mut() {
                while let Ok(d) = rx.try_recv() {
                    w.apply(&d);
                }
                w.assert_matches(collector, *view);
            }
        };
        let mut a1 = report(
            "a",
            1,
            true,
            vec![
                host("a", [10, 0, 0, 1]),
                process("a", 1, 1.0),
                process("a", 2, 1.0),
            ],
        );
        a1.connections.push(conn(
            "l",
            "10.0.0.1:80",
            None,
            pb::ConnectionState::Listen,
            "process:a:2",
        ));
        collector.ingest(a1);
        for view in views {
            let (snapshot, rx) = collector.subscribe(view).unwrap();
            let mut w = Watcher::default();
            w.apply(&snapshot);
            watchers.push((view, w, rx));
        }
        step(&collector, &mut watchers);
        // b connects to a's listener and to the outside.
        let mut b1 = report(
            "b",
            1,
            true,
            vec![host("b", [10, 0, 0, 2]), process("b", 7, 3.0)],
        );
        b1.connections.push(conn(
            "b-a",
            "10.0.0.2:5000",
            Some("10.0.0.1:80"),
            pb::ConnectionState::Established,
            "process:b:7",
        ));
        b1.connections.push(conn(
            "b-x",
            "10.0.0.2:5001",
            Some("192.0.2.9:443"),
            pb::ConnectionState::Established,
            "process:b:7",
        ));
        collector.ingest(b1);
        step(&collector, &mut watchers);
        // Only b's counters move: its connections are redone, nobody else's.
        let mut b_counters = report("b", 2, false, vec![]);
        let mut moved = conn(
            "b-a",
            "10.0.0.2:5000",
            Some("10.0.0.1:80"),
            pb::ConnectionState::Established,
            "process:b:7",
        );
        moved.bytes_sent = 99;
        b_counters.connections.push(moved);
        let endpoints = lock(&collector.inner.store).endpoints_version;
        collector.ingest(b_counters);
        assert_eq!(lock(&collector.inner.store).endpoints_version, endpoints);
        step(&collector, &mut watchers);
        // a changes one process, adds one, removes one.
        let mut a2 = report(
            "a",
            2,
            false,
            vec![process("a", 1, 50.0), process("a", 3, 2.0)],
        );
        a2.removed_nodes.push("process:a:2".into());
        collector.ingest(a2);
        step(&collector, &mut watchers);
        // b's outside connection closes; then b sends a full report with another process.
        let mut b2 = report("b", 3, false, vec![]);
        b2.connections.push(conn(
            "b-x",
            "10.0.0.2:5001",
            Some("192.0.2.9:443"),
            pb::ConnectionState::Closed,
            "process:b:7",
        ));
        collector.ingest(b2);
        step(&collector, &mut watchers);
        collector.ingest(report("b", 4, false, vec![]));
        step(&collector, &mut watchers);
        collector.ingest(report(
            "b",
            9,
            true,
            vec![host("b", [10, 0, 0, 2]), process("b", 8, 1.0)],
        ));
        step(&collector, &mut watchers);
        // a goes silent and expires.
        lock(&collector.inner.store).expire(Duration::ZERO);
        step(&collector, &mut watchers);
        assert!(watchers.iter().all(|(_, w, _)| w.nodes.is_empty()));
    }
}
