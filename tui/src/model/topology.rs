//! The TUI's copy of the collector's topology: one store per view, kept current by applying
//! the collector's snapshot-then-deltas stream. Nothing here polls; every change arrives as a
//! delta and bumps the view's version. Nodes and connections that come, go, or change what a
//! row is ordered, filtered or scoped by are written to the view's journal, from which the
//! rows are updated in place rather than rebuilt.
use std::{
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    time::{Duration, Instant},
};

use rustc_hash::FxHasher;

use orca_proto::topology::v1 as pb;

use super::domain::{Connection, Container, Detail, Edge, Host, Node, NodeKind, Process};

/// The topology views, in the order of their tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopoView {
    Hosts,
    Containers,
    Processes,
    Connections,
}

impl TopoView {
    pub const ALL: [TopoView; 4] = [
        TopoView::Hosts,
        TopoView::Containers,
        TopoView::Processes,
        TopoView::Connections,
    ];

    pub fn proto(self) -> pb::View {
        match self {
            TopoView::Hosts => pb::View::Hosts,
            TopoView::Containers => pb::View::Containers,
            TopoView::Processes => pb::View::Processes,
            TopoView::Connections => pb::View::Connections,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Points kept per series: one hour at the collector's 15-second resolution.
pub const SERIES_CAPACITY: usize = 240;

/// One time series at the collector's resolution: the newest point's timestamp and the values
/// (f32 keeps 10,000 nodes' hour of four series in ~40 MB).
#[derive(Debug, Clone, Default)]
pub struct Series {
    last_unix_ms: i64,
    values: VecDeque<f32>,
}

impl Series {
    /// Appends points newer than the newest held; a point with the newest timestamp replaces
    /// it (the collector re-sends the bucket that is still filling).
    pub fn extend(&mut self, points: &[pb::Point]) {
        for p in points {
            if p.timestamp_unix_ms < self.last_unix_ms {
                continue;
            }
            if p.timestamp_unix_ms == self.last_unix_ms && !self.values.is_empty() {
                if let Some(last) = self.values.back_mut() {
                    *last = p.value as f32;
                }
                continue;
            }
            if self.values.len() == SERIES_CAPACITY {
                self.values.pop_front();
            }
            self.values.push_back(p.value as f32);
            self.last_unix_ms = p.timestamp_unix_ms;
        }
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.values.iter().copied()
    }

    pub fn last(&self) -> Option<f32> {
        self.values.back().copied()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What each node's four series measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu = 0,
    Memory = 1,
    NetOut = 2,
    NetIn = 3,
}

/// A node's four series over the retained hour, fetched when its details are shown.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub cpu: Series,
    pub memory: Series,
    pub net_out: Series,
    pub net_in: Series,
}

impl History {
    fn from_node(t: &pb::TopologyNode) -> Self {
        let mut h = History::default();
        h.extend(t);
        h
    }

    fn extend(&mut self, t: &pb::TopologyNode) {
        self.cpu.extend(&t.cpu_percent);
        self.memory.extend(&t.memory_bytes);
        self.net_out.extend(&t.net_tx_bytes_per_second);
        self.net_in.extend(&t.net_rx_bytes_per_second);
    }

    pub fn series(&self, metric: Metric) -> &Series {
        match metric {
            Metric::Cpu => &self.cpu,
            Metric::Memory => &self.memory,
            Metric::NetOut => &self.net_out,
            Metric::NetIn => &self.net_in,
        }
    }
}

/// A host, container or process (or a pseudo node such as `external:<ip>`). Watch streams
/// carry the latest point of each series; the hour-long history is held only for nodes whose
/// details were opened (a bounded few), so 10,000 nodes cost what their metadata costs.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub node: Node,
    pub hostname: String,
    /// Latest value of each series (cpu, memory, out, in), NaN when none arrived yet.
    latest: [f32; 4],
    history: Option<Box<History>>,
    /// A hash of what rows are ordered, filtered and scoped by, values aside (see `identity`).
    identity: u64,
}

impl NodeEntry {
    fn new(t: pb::TopologyNode) -> Self {
        let mut entry = Self {
            node: Node::default(),
            hostname: String::new(),
            latest: [f32::NAN; 4],
            history: None,
            identity: 0,
        };
        entry.update(t);
        entry
    }

    /// Applies an upsert; returns whether what rows read besides values changed (a renamed
    /// process, a new parent, relabelled container), so its row may have to move.
    fn update(&mut self, t: pb::TopologyNode) -> bool {
        for (slot, points) in self.latest.iter_mut().zip([
            &t.cpu_percent,
            &t.memory_bytes,
            &t.net_tx_bytes_per_second,
            &t.net_rx_bytes_per_second,
        ]) {
            if let Some(p) = points.last() {
                *slot = p.value as f32;
            }
        }
        if let Some(history) = &mut self.history {
            history.extend(&t);
        }
        if let Some(node) = t.node {
            self.node = node.into();
        }
        self.hostname = t.hostname;
        let before = std::mem::replace(&mut self.identity, identity(&self.node, &self.hostname));
        before != self.identity
    }

    /// The newest value of a series.
    pub fn latest(&self, metric: Metric) -> Option<f32> {
        let v = self.latest[metric as usize];
        (!v.is_nan()).then_some(v)
    }

    /// The hour-long series, when fetched.
    pub fn history(&self) -> Option<&History> {
        self.history.as_deref()
    }

    pub fn id(&self) -> &str {
        &self.node.id
    }

    pub fn kind(&self) -> NodeKind {
        self.node.kind
    }

    pub fn is_pseudo(&self) -> bool {
        self.node.labels.contains_key("pseudo")
    }

    pub fn host(&self) -> Option<&Host> {
        match &self.node.detail {
            Some(Detail::Host(h)) => Some(h),
            _ => None,
        }
    }

    pub fn container(&self) -> Option<&Container> {
        match &self.node.detail {
            Some(Detail::Container(c)) => Some(c),
            _ => None,
        }
    }

    pub fn process(&self) -> Option<&Process> {
        match &self.node.detail {
            Some(Detail::Process(p)) => Some(p),
            _ => None,
        }
    }

    /// The name people know the node by.
    pub fn name(&self) -> &str {
        match &self.node.detail {
            Some(Detail::Host(h)) => &h.hostname,
            Some(Detail::Container(c)) if !c.name.is_empty() => &c.name,
            Some(Detail::Container(c)) => &c.id,
            Some(Detail::Process(p)) => &p.comm,
            None => &self.node.id,
        }
    }

    /// The current CPU use in percent (of all cores for hosts, of one core otherwise).
    pub fn cpu_percent(&self) -> f64 {
        match &self.node.detail {
            Some(Detail::Host(h)) => h.cpu_percent,
            Some(Detail::Container(c)) => c.cpu_percent,
            Some(Detail::Process(p)) => p.cpu_percent,
            None => 0.0,
        }
    }

    /// Resident memory in bytes (used memory for hosts).
    pub fn memory_bytes(&self) -> u64 {
        match &self.node.detail {
            Some(Detail::Host(h)) => h
                .memory_total_bytes
                .saturating_sub(h.memory_available_bytes),
            Some(Detail::Container(c)) => c.memory_usage_bytes,
            Some(Detail::Process(p)) => p.rss_bytes,
            None => 0,
        }
    }
}

/// A hash of everything a row is ordered, filtered (text, labels, kind, host, namespace) and
/// scoped (parents, container) by, leaving out values (CPU, memory, states, counters): rows
/// sorted by values are re-sorted on their own schedule; rows in any other order move only
/// when this changes.
fn identity(node: &Node, hostname: &str) -> u64 {
    let mut h = FxHasher::default();
    hostname.hash(&mut h);
    (node.kind as i32).hash(&mut h);
    node.parents.hash(&mut h);
    unordered(&node.labels).hash(&mut h);
    match &node.detail {
        Some(Detail::Host(host)) => {
            (0u8, &host.hostname, &host.ips, &host.os).hash(&mut h);
        }
        Some(Detail::Container(c)) => {
            (1u8, &c.id, &c.name, &c.image, &c.ports, &c.namespace).hash(&mut h);
            unordered(&c.labels).hash(&mut h);
        }
        Some(Detail::Process(p)) => {
            (
                2u8,
                p.pid,
                p.ppid,
                &p.comm,
                &p.cmdline,
                &p.user,
                &p.container_id,
            )
                .hash(&mut h);
        }
        None => 3u8.hash(&mut h),
    }
    h.finish()
}

/// A map's hash that does not depend on its iteration order.
fn unordered(map: &HashMap<String, String>) -> u64 {
    map.iter()
        .map(|pair| {
            let mut h = FxHasher::default();
            pair.hash(&mut h);
            h.finish()
        })
        .fold(0u64, u64::wrapping_add)
}

/// A connection with the rates the TUI derives from successive byte counters.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub conn: Connection,
    pub sent_per_second: f64,
    pub received_per_second: f64,
    updated_unix_ms: i64,
    /// Set when the collector removed a closed connection: kept (dimmed) until then.
    pub linger_until: Option<Instant>,
}

impl ConnEntry {
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn state(&self) -> pb::ConnectionState {
        self.conn.state
    }

    /// Whether `other` reads the same to rows (order, filter text, scope), values aside.
    fn same_row(&self, other: &ConnEntry) -> bool {
        let (a, b) = (&self.conn, &other.conn);
        a.comm == b.comm
            && a.peer_name == b.peer_name
            && a.hostname == b.hostname
            && a.process_id == b.process_id
            && a.container_id == b.container_id
            && a.pid == b.pid
            && a.local == b.local
            && a.remote == b.remote
    }
}

/// One view's nodes, edges and connections.
#[derive(Debug, Default)]
pub struct ViewData {
    pub nodes: HashMap<String, NodeEntry>,
    pub edges: HashMap<String, Edge>,
    pub connections: HashMap<String, ConnEntry>,
    /// Edge ids by the nodes they touch (the details panel asks every frame).
    adjacency: HashMap<String, Vec<String>>,
    /// The collector's sequence number of the last applied message.
    pub seq: u64,
    /// Bumped on every applied change.
    pub version: u64,
    /// Bumped when nodes or connections come, go, or change what their rows are ordered,
    /// filtered or scoped by (rows in an order that does not depend on values move only then).
    pub members: u64,
    /// The keys of those changes, each with the `members` version that recorded it, oldest
    /// first; bounded by `JOURNAL`.
    journal: VecDeque<(u64, String)>,
    /// Changes recorded before this `members` version are no longer in the journal.
    journal_floor: u64,
    /// Pseudo nodes (`external:<ip>` …) among `nodes`: they have no rows.
    pseudo_nodes: usize,
    /// True once the first snapshot arrived.
    pub loaded: bool,
}

/// Membership changes a view remembers; rows further behind are rebuilt.
pub const JOURNAL: usize = 4096;

impl ViewData {
    pub fn len(&self) -> usize {
        self.nodes.len() + self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes that have rows (pseudo nodes have none).
    pub fn row_nodes(&self) -> usize {
        self.nodes.len() - self.pseudo_nodes
    }

    /// The keys that joined, left or changed what their rows read since `members` (repeats
    /// possible), or `None` when the journal no longer reaches back that far.
    pub fn changed_since(&self, members: u64) -> Option<impl Iterator<Item = &str> + '_> {
        if members < self.journal_floor || members > self.members {
            return None;
        }
        let from = self.journal.partition_point(|(v, _)| *v <= members);
        Some(self.journal.range(from..).map(|(_, key)| key.as_str()))
    }

    /// Records a membership change of `keys` (none: a snapshot, which no journal spans).
    fn record(&mut self, keys: Vec<String>, snapshot: bool) {
        self.members += 1;
        if snapshot {
            self.journal.clear();
            self.journal_floor = self.members;
            return;
        }
        for key in keys {
            self.journal.push_back((self.members, key));
        }
        while self.journal.len() > JOURNAL {
            if let Some((version, _)) = self.journal.pop_front() {
                self.journal_floor = version;
            }
        }
    }

    fn insert_node(&mut self, entry: NodeEntry) {
        self.pseudo_nodes += usize::from(entry.is_pseudo());
        if let Some(old) = self.nodes.insert(entry.node.id.clone(), entry) {
            self.pseudo_nodes -= usize::from(old.is_pseudo());
        }
    }

    fn remove_node(&mut self, id: &str) -> bool {
        let Some(old) = self.nodes.remove(id) else {
            return false;
        };
        self.pseudo_nodes -= usize::from(old.is_pseudo());
        true
    }

    /// Edges touching `id`, with the node at the other end and whether `id` is the source.
    pub fn neighbours<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a Edge, &'a str, bool)> + 'a {
        self.adjacency
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|edge| self.edges.get(edge))
            .map(move |e| {
                if e.source == id {
                    (e, e.target.as_str(), true)
                } else {
                    (e, e.source.as_str(), false)
                }
            })
    }

    fn insert_edge(&mut self, edge: Edge) {
        if !self.edges.contains_key(&edge.id) {
            for end in [&edge.source, &edge.target] {
                self.adjacency
                    .entry(end.clone())
                    .or_default()
                    .push(edge.id.clone());
            }
        }
        self.edges.insert(edge.id.clone(), edge);
    }

    fn remove_edge(&mut self, id: &str) {
        let Some(edge) = self.edges.remove(id) else {
            return;
        };
        for end in [&edge.source, &edge.target] {
            if let Some(list) = self.adjacency.get_mut(end) {
                list.retain(|e| e != id);
                if list.is_empty() {
                    self.adjacency.remove(end);
                }
            }
        }
    }
}

/// How long a closed connection stays on screen after the collector dropped it, so a person
/// sees connections that lived for less than a report cycle.
pub const CLOSED_LINGER: Duration = Duration::from_secs(2);

/// Nodes whose hour-long history is kept at once (the most recently fetched).
pub const HISTORIES: usize = 32;

/// All four views.
#[derive(Debug, Default)]
pub struct Topology {
    views: [ViewData; 4],
    /// Nodes holding a history, oldest first.
    histories: VecDeque<String>,
}

impl Topology {
    pub fn view(&self, view: TopoView) -> &ViewData {
        &self.views[view.index()]
    }

    /// A node of any view by id (hosts, containers and processes each live in their view).
    pub fn node(&self, id: &str) -> Option<&NodeEntry> {
        self.views.iter().find_map(|v| v.nodes.get(id))
    }

    /// Applies one message of a view's watch. A snapshot replaces the view (series included);
    /// a delta upserts and removes. Returns whether anything changed.
    pub fn apply(&mut self, view: TopoView, delta: pb::TopologyDelta, now: Instant) -> bool {
        let data = &mut self.views[view.index()];
        // Keys that came, went or changed what their rows read.
        let mut moved: Vec<String> = Vec::new();
        if delta.full {
            let old_connections = std::mem::take(&mut data.connections);
            data.nodes.clear();
            data.pseudo_nodes = 0;
            data.edges.clear();
            data.adjacency.clear();
            data.loaded = true;
            for node in delta.upserted_nodes {
                data.insert_node(NodeEntry::new(node));
            }
            for edge in delta.upserted_edges {
                data.insert_edge(edge.into());
            }
            for c in delta.upserted_connections {
                let (id, mut entry) = new_connection(c, delta.timestamp_unix_ms);
                if let Some(old) = old_connections.get(&id) {
                    rate_from(&mut entry, old, delta.timestamp_unix_ms);
                }
                data.connections.insert(id, entry);
            }
        } else {
            for node in delta.upserted_nodes {
                let id = node
                    .node
                    .as_ref()
                    .map(|n| n.id.as_str())
                    .unwrap_or_default();
                match data.nodes.get_mut(id) {
                    Some(entry) => {
                        let pseudo = entry.is_pseudo();
                        if entry.update(node) {
                            moved.push(entry.node.id.clone());
                            let now_pseudo = entry.is_pseudo();
                            data.pseudo_nodes =
                                data.pseudo_nodes + usize::from(now_pseudo) - usize::from(pseudo);
                        }
                    }
                    None => {
                        let entry = NodeEntry::new(node);
                        moved.push(entry.node.id.clone());
                        data.insert_node(entry);
                    }
                }
            }
            for id in delta.removed_nodes {
                if data.remove_node(&id) {
                    moved.push(id);
                }
            }
            for edge in delta.upserted_edges {
                data.insert_edge(edge.into());
            }
            for id in &delta.removed_edges {
                data.remove_edge(id);
            }
            for c in delta.upserted_connections {
                let (id, mut entry) = new_connection(c, delta.timestamp_unix_ms);
                match data.connections.get(&id) {
                    Some(old) => {
                        rate_from(&mut entry, old, delta.timestamp_unix_ms);
                        if !old.same_row(&entry) {
                            moved.push(id.clone());
                        }
                    }
                    None => moved.push(id.clone()),
                }
                data.connections.insert(id, entry);
            }
            for id in delta.removed_connections {
                let closed = data.connections.get_mut(&id).filter(|c| {
                    matches!(
                        c.state(),
                        pb::ConnectionState::Closed | pb::ConnectionState::Failed
                    )
                });
                match closed {
                    Some(entry) => {
                        entry.linger_until.get_or_insert(now + CLOSED_LINGER);
                        entry.sent_per_second = 0.0;
                        entry.received_per_second = 0.0;
                    }
                    None => {
                        if data.connections.remove(&id).is_some() {
                            moved.push(id);
                        }
                    }
                }
            }
        }
        data.seq = delta.seq;
        data.version += 1;
        if delta.full || !moved.is_empty() {
            data.record(moved, delta.full);
        }
        true
    }

    /// Keeps a node's whole history (from `NodeSeries`); the oldest of more than
    /// `HISTORIES` is dropped. Returns false when the node is no longer in any view.
    pub fn set_history(&mut self, t: pb::TopologyNode) -> bool {
        let Some(id) = t.node.as_ref().map(|n| n.id.clone()) else {
            return false;
        };
        let Some(entry) = self.views.iter_mut().find_map(|v| v.nodes.get_mut(&id)) else {
            return false;
        };
        entry.history = Some(Box::new(History::from_node(&t)));
        self.histories.retain(|h| *h != id);
        self.histories.push_back(id);
        while self.histories.len() > HISTORIES {
            if let Some(old) = self.histories.pop_front()
                && let Some(entry) = self.views.iter_mut().find_map(|v| v.nodes.get_mut(&old))
            {
                entry.history = None;
            }
        }
        true
    }

    /// Drops closed connections whose linger time is over. Returns whether any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let data = &mut self.views[TopoView::Connections.index()];
        let gone: Vec<String> = data
            .connections
            .iter()
            .filter(|(_, c)| c.linger_until.is_some_and(|until| until <= now))
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return false;
        }
        for id in &gone {
            data.connections.remove(id);
        }
        data.version += 1;
        data.record(gone, false);
        true
    }

    /// Forgets everything (the master went away and a new watch will send snapshots).
    pub fn mark_stale(&mut self) {
        for view in &mut self.views {
            view.loaded = false;
        }
    }
}

/// A connection as first seen (no rates yet), with its id.
fn new_connection(conn: pb::TopologyConnection, unix_ms: i64) -> (String, ConnEntry) {
    let conn = Connection::from(conn);
    let id = conn.id.clone();
    let entry = ConnEntry {
        conn,
        sent_per_second: 0.0,
        received_per_second: 0.0,
        updated_unix_ms: unix_ms,
        linger_until: None,
    };
    (id, entry)
}

/// Derives byte rates from the counters of the previous sighting of the same connection.
fn rate_from(entry: &mut ConnEntry, old: &ConnEntry, unix_ms: i64) {
    let elapsed_ms = unix_ms - old.updated_unix_ms;
    let (new, prev) = (entry.connection(), old.connection());
    if elapsed_ms <= 0 {
        entry.sent_per_second = old.sent_per_second;
        entry.received_per_second = old.received_per_second;
        entry.updated_unix_ms = old.updated_unix_ms;
        return;
    }
    let per_second =
        |now: u64, before: u64| now.saturating_sub(before) as f64 * 1000.0 / elapsed_ms as f64;
    let sent = per_second(new.bytes_sent, prev.bytes_sent);
    let received = per_second(new.bytes_received, prev.bytes_received);
    entry.sent_per_second = sent;
    entry.received_per_second = received;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, v: f64) -> pb::Point {
        pb::Point {
            timestamp_unix_ms: t,
            value: v,
        }
    }

    fn process(id: &str, cpu: f64, points: Vec<pb::Point>) -> pb::TopologyNode {
        pb::TopologyNode {
            node: Some(pb::Node {
                id: id.into(),
                kind: pb::NodeKind::Process as i32,
                detail: Some(pb::node::Detail::Process(pb::Process {
                    comm: "nginx".into(),
                    cpu_percent: cpu,
                    ..Default::default()
                })),
                ..Default::default()
            }),
            hostname: "a".into(),
            cpu_percent: points,
            ..Default::default()
        }
    }

    fn connection(id: &str, sent: u64, state: pb::ConnectionState) -> pb::TopologyConnection {
        pb::TopologyConnection {
            connection: Some(pb::Connection {
                id: id.into(),
                bytes_sent: sent,
                state: state as i32,
                ..Default::default()
            }),
            hostname: "a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn series_appends_new_points_and_replaces_the_filling_bucket() {
        let mut s = Series::default();
        s.extend(&[point(15_000, 1.0), point(30_000, 2.0)]);
        s.extend(&[point(30_000, 3.0)]);
        s.extend(&[point(15_000, 9.0)]); // older: ignored
        s.extend(&[point(45_000, 4.0)]);
        assert_eq!(s.values().collect::<Vec<_>>(), [1.0, 3.0, 4.0]);
        for i in 0..SERIES_CAPACITY as i64 {
            s.extend(&[point(60_000 + i * 15_000, i as f64)]);
        }
        assert_eq!(s.len(), SERIES_CAPACITY);
        assert_eq!(s.last(), Some((SERIES_CAPACITY - 1) as f32));
    }

    #[test]
    fn snapshot_then_deltas_upsert_and_remove() {
        let mut t = Topology::default();
        let now = Instant::now();
        t.apply(
            TopoView::Processes,
            pb::TopologyDelta {
                seq: 1,
                full: true,
                upserted_nodes: vec![
                    process("p1", 1.0, vec![point(15_000, 1.0), point(30_000, 2.0)]),
                    process("p2", 5.0, vec![]),
                ],
                ..Default::default()
            },
            now,
        );
        let v = t.view(TopoView::Processes);
        assert!(v.loaded);
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.nodes["p1"].latest(Metric::Cpu), Some(2.0));
        assert!(v.nodes["p1"].history().is_none(), "history only on request");

        t.apply(
            TopoView::Processes,
            pb::TopologyDelta {
                seq: 2,
                upserted_nodes: vec![process("p1", 7.0, vec![point(45_000, 7.0)])],
                removed_nodes: vec!["p2".into()],
                ..Default::default()
            },
            now,
        );
        let v = t.view(TopoView::Processes);
        assert_eq!(v.nodes.len(), 1);
        assert_eq!(v.nodes["p1"].cpu_percent(), 7.0);
        assert_eq!(v.nodes["p1"].latest(Metric::Cpu), Some(7.0));
        assert_eq!(v.seq, 2);
        assert_eq!(v.version, 2);

        // A new snapshot (after a reconnect) replaces everything.
        t.apply(
            TopoView::Processes,
            pb::TopologyDelta {
                seq: 9,
                full: true,
                upserted_nodes: vec![process("p3", 0.0, vec![])],
                ..Default::default()
            },
            now,
        );
        let ids: Vec<_> = t.view(TopoView::Processes).nodes.keys().cloned().collect();
        assert_eq!(ids, ["p3"]);
    }

    #[test]
    fn histories_are_fetched_extended_by_deltas_and_bounded() {
        let mut t = Topology::default();
        let now = Instant::now();
        let nodes = (0..HISTORIES + 2)
            .map(|i| process(&format!("p{i}"), 0.0, vec![point(15_000, 1.0)]))
            .collect();
        t.apply(
            TopoView::Processes,
            pb::TopologyDelta {
                seq: 1,
                full: true,
                upserted_nodes: nodes,
                ..Default::default()
            },
            now,
        );
        let history = process("p0", 0.0, vec![point(0, 0.5), point(15_000, 1.0)]);
        assert!(t.set_history(history));
        t.apply(
            TopoView::Processes,
            pb::TopologyDelta {
                seq: 2,
                upserted_nodes: vec![process("p0", 3.0, vec![point(30_000, 3.0)])],
                ..Default::default()
            },
            now,
        );
        let h = t.node("p0").unwrap().history().unwrap();
        assert_eq!(h.cpu.values().collect::<Vec<_>>(), [0.5, 1.0, 3.0]);
        // More than HISTORIES fetched: the oldest goes.
        for i in 1..=HISTORIES {
            assert!(t.set_history(process(&format!("p{i}"), 0.0, vec![point(0, 1.0)])));
        }
        assert!(t.node("p0").unwrap().history().is_none());
        assert!(t.node("p1").unwrap().history().is_some());
        assert!(!t.set_history(process("gone", 0.0, vec![])));
    }

    #[test]
    fn connection_rates_come_from_successive_counters_and_closed_ones_linger() {
        let mut t = Topology::default();
        let now = Instant::now();
        let view = TopoView::Connections;
        t.apply(
            view,
            pb::TopologyDelta {
                seq: 1,
                full: true,
                timestamp_unix_ms: 1_000,
                upserted_connections: vec![connection("c", 100, pb::ConnectionState::Established)],
                ..Default::default()
            },
            now,
        );
        t.apply(
            view,
            pb::TopologyDelta {
                seq: 2,
                timestamp_unix_ms: 1_500,
                upserted_connections: vec![connection("c", 600, pb::ConnectionState::Closed)],
                ..Default::default()
            },
            now,
        );
        let c = &t.view(view).connections["c"];
        assert_eq!(c.sent_per_second, 1000.0);
        assert_eq!(c.state(), pb::ConnectionState::Closed);

        // The collector drops it with the next report; the TUI keeps it for CLOSED_LINGER.
        t.apply(
            view,
            pb::TopologyDelta {
                seq: 3,
                timestamp_unix_ms: 2_000,
                removed_connections: vec!["c".into()],
                ..Default::default()
            },
            now,
        );
        assert!(t.view(view).connections.contains_key("c"));
        assert!(!t.expire(now + CLOSED_LINGER / 2));
        assert!(t.expire(now + CLOSED_LINGER * 2));
        assert!(t.view(view).connections.is_empty());

        // An established connection removed (its process went) goes at once.
        t.apply(
            view,
            pb::TopologyDelta {
                seq: 4,
                upserted_connections: vec![connection("d", 1, pb::ConnectionState::Established)],
                ..Default::default()
            },
            now,
        );
        t.apply(
            view,
            pb::TopologyDelta {
                seq: 5,
                removed_connections: vec!["d".into()],
                ..Default::default()
            },
            now,
        );
        assert!(t.view(view).connections.is_empty());
    }
}
