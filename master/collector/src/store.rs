//! The collector's state: the latest nodes and connections of every agent, rebuilt from full
//! reports and kept current with deltas, plus per-node time series.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use orca_proto::topology::v1 as pb;

use super::{
    series::{NodeSeries, Sample, SeriesConfig},
    traffic::{ConnChange, Traffic},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("report has no agent_id")]
    MissingAgentId,
    #[error("report has no hostname")]
    MissingHostname,
    #[error("report seq must start at 1")]
    ZeroSeq,
    #[error("node #{0} has an empty id")]
    EmptyNodeId(usize),
    #[error("node {0} has an unknown kind {1}")]
    BadNodeKind(String, i32),
    #[error("node {0} claims agent {1}'s host; a report may only describe its own host")]
    ForeignHost(String, String),
    #[error(
        "connection {0} has an invalid endpoint {1}: addresses are 4 or 16 bytes, ports below \
         65536"
    )]
    BadEndpoint(String, &'static str),
    #[error("connection {0} has an unknown state {1}")]
    BadConnectionState(String, i32),
    #[error("connection #{0} has an empty id")]
    EmptyConnectionId(usize),
}

/// A connection as the collector keeps it: the message watchers are sent, with its addresses
/// and state parsed once, when its report arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Conn {
    pub wire: pb::Connection,
    pub local: SocketAddr,
    /// `None` for listening sockets.
    pub remote: Option<SocketAddr>,
    pub state: pb::ConnectionState,
    pub direction: pb::Direction,
}

impl Conn {
    pub fn listening(&self) -> bool {
        self.state == pb::ConnectionState::Listen
    }

    /// Closed and failed connections live for exactly one report.
    fn ended(&self) -> bool {
        matches!(
            self.state,
            pb::ConnectionState::Closed | pb::ConnectionState::Failed
        )
    }
}

/// A report checked and parsed: everything of it is applied, or (on an error) nothing.
#[derive(Debug)]
pub struct Parsed {
    report: pb::Report,
    connections: Vec<Conn>,
    /// The host's addresses, when the report carries its host node.
    host_ips: Option<Vec<IpAddr>>,
}

/// Checks a report and parses what later steps read (addresses, states) before anything of
/// it is applied: a bad report changes nothing.
pub fn parse(mut report: pb::Report) -> Result<Parsed, ReportError> {
    if report.agent_id.trim().is_empty() {
        return Err(ReportError::MissingAgentId);
    }
    if report.hostname.trim().is_empty() {
        return Err(ReportError::MissingHostname);
    }
    if report.seq == 0 {
        return Err(ReportError::ZeroSeq);
    }
    let mut host_ips = None;
    for (i, node) in report.nodes.iter().enumerate() {
        if node.id.is_empty() {
            return Err(ReportError::EmptyNodeId(i));
        }
        let kind = pb::NodeKind::try_from(node.kind)
            .ok()
            .filter(|k| *k != pb::NodeKind::Unspecified);
        if kind.is_none() {
            return Err(ReportError::BadNodeKind(node.id.clone(), node.kind));
        }
        if let Some(pb::node::Detail::Host(h)) = &node.detail {
            if h.hostname != report.hostname {
                return Err(ReportError::ForeignHost(
                    node.id.clone(),
                    report.hostname.clone(),
                ));
            }
            host_ips = Some(h.ip_addrs().collect());
        }
    }
    let mut connections = Vec::with_capacity(report.connections.len());
    for (i, wire) in std::mem::take(&mut report.connections)
        .into_iter()
        .enumerate()
    {
        if wire.id.is_empty() {
            return Err(ReportError::EmptyConnectionId(i));
        }
        let local = wire
            .local
            .as_ref()
            .and_then(pb::Endpoint::socket_addr)
            .ok_or_else(|| ReportError::BadEndpoint(wire.id.clone(), "local"))?;
        let remote = match &wire.remote {
            None => None,
            Some(ep) => Some(
                ep.socket_addr()
                    .ok_or_else(|| ReportError::BadEndpoint(wire.id.clone(), "remote"))?,
            ),
        };
        let state = pb::ConnectionState::try_from(wire.state)
            .map_err(|_| ReportError::BadConnectionState(wire.id.clone(), wire.state))?;
        let direction = pb::Direction::try_from(wire.direction).unwrap_or_default();
        connections.push(Conn {
            wire,
            local,
            remote,
            state,
            direction,
        });
    }
    Ok(Parsed {
        report,
        connections,
        host_ips,
    })
}

impl Parsed {
    pub fn agent_id(&self) -> &str {
        &self.report.agent_id
    }
}

/// What happened to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The report was applied to the topology.
    Applied,
    /// Already applied (a resend after a reconnect).
    Duplicate,
    /// A delta that does not follow the last applied report: its samples were kept for the
    /// time series, the topology was not changed, and a full report is needed.
    NeedFull,
}

#[derive(Debug)]
pub struct AgentState {
    pub agent_id: String,
    pub hostname: String,
    pub applied_seq: u64,
    /// False until a full report arrived (after a collector restart, or a gap).
    pub synced: bool,
    pub nodes: HashMap<String, pb::Node>,
    pub connections: HashMap<String, Conn>,
    /// The host's addresses (from its host node), loopback included.
    pub ips: Vec<IpAddr>,
    pub stats: pb::AgentStats,
    pub last_report: Instant,
    pub last_report_unix_ms: i64,
}

impl AgentState {
    /// The container `id` (a runtime's id, without the `container:` prefix) this agent
    /// reports.
    pub fn container(&self, id: &str) -> Option<&pb::Container> {
        match &self.nodes.get(&format!("container:{id}"))?.detail {
            Some(pb::node::Detail::Container(c)) => Some(c),
            _ => None,
        }
    }
}

/// How often idle edges and the counters of departed containers are looked for.
const TRAFFIC_EXPIRY_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Store {
    pub agents: HashMap<String, AgentState>,
    pub series: HashMap<String, NodeSeries>,
    pub series_config: SeriesConfig,
    /// Bumped on every change; views are brought up to date when it moves.
    pub version: u64,
    /// Bumped when anything edges are made of changed: a connection, or which nodes exist
    /// (views' edges are recomputed when it moves).
    pub edges_version: u64,
    /// Bytes and connections between service groups, counted as reports arrive.
    pub traffic: Traffic,
    last_traffic_expiry: Instant,
    /// Nodes changed, added or removed since their view last took them, by kind: (agent,
    /// node id). What lets views follow the store by deltas instead of rebuilds.
    dirty: HashMap<i32, HashSet<(String, String)>>,
    /// Agents whose connections changed (counters included) since the connections view last
    /// took them.
    dirty_connections: HashSet<String>,
    /// Bumped when what the far ends of connections are found by changed: a connection
    /// opened, gone, or turned listener; a process's name; an agent's addresses or name.
    /// Counters alone leave it.
    pub endpoints_version: u64,
}

fn sample(node: &pb::Node) -> Option<Sample> {
    match &node.detail {
        Some(pb::node::Detail::Host(h)) => Some(Sample {
            cpu_percent: h.cpu_percent,
            memory_bytes: h
                .memory_total_bytes
                .saturating_sub(h.memory_available_bytes),
            net_tx_bytes: h.net_tx_bytes,
            net_rx_bytes: h.net_rx_bytes,
        }),
        Some(pb::node::Detail::Process(p)) => Some(Sample {
            cpu_percent: p.cpu_percent,
            memory_bytes: p.rss_bytes,
            net_tx_bytes: p.net_tx_bytes,
            net_rx_bytes: p.net_rx_bytes,
        }),
        Some(pb::node::Detail::Container(c)) => Some(Sample {
            cpu_percent: c.cpu_percent,
            memory_bytes: c.memory_usage_bytes,
            net_tx_bytes: 0,
            net_rx_bytes: 0,
        }),
        None => None,
    }
}

impl Store {
    pub fn new(series_config: SeriesConfig) -> Self {
        Self {
            agents: HashMap::new(),
            series: HashMap::new(),
            series_config,
            version: 0,
            edges_version: 0,
            traffic: Traffic::default(),
            last_traffic_expiry: Instant::now(),
            dirty: HashMap::new(),
            dirty_connections: HashSet::new(),
            endpoints_version: 0,
        }
    }

    /// The agents whose connections changed since the last call.
    pub fn take_dirty_connections(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.dirty_connections)
    }

    /// The nodes of `kind` changed since the last call for that kind: (agent, node id).
    pub fn take_dirty(&mut self, kind: pb::NodeKind) -> HashSet<(String, String)> {
        self.dirty.remove(&(kind as i32)).unwrap_or_default()
    }

    /// Applies a parsed report.
    pub fn apply(&mut self, parsed: Parsed) -> Applied {
        let Parsed {
            report,
            connections,
            host_ips,
        } = parsed;
        let agent = self
            .agents
            .entry(report.agent_id.clone())
            .or_insert_with(|| AgentState {
                agent_id: report.agent_id.clone(),
                hostname: report.hostname.clone(),
                applied_seq: 0,
                synced: false,
                nodes: HashMap::new(),
                connections: HashMap::new(),
                ips: Vec::new(),
                stats: pb::AgentStats::default(),
                last_report: Instant::now(),
                last_report_unix_ms: 0,
            });
        agent.last_report = Instant::now();
        agent.last_report_unix_ms = report.timestamp_unix_ms;
        let follows = agent.synced && report.seq == agent.applied_seq + 1;
        if !report.full && agent.synced && report.seq <= agent.applied_seq {
            return Applied::Duplicate;
        }
        // Samples are history: keep them even from a delta that cannot be applied.
        for node in &report.nodes {
            if let Some(s) = sample(node) {
                self.series.entry(node.id.clone()).or_default().record(
                    &self.series_config,
                    report.timestamp_unix_ms,
                    s,
                );
            }
        }
        if !report.full && !follows {
            return Applied::NeedFull;
        }
        // A full report replaces the agent's connections; the ones it had are still what
        // the traffic counters diff against. Listeners that went away leave the index only
        // after this report's traffic is counted: a connection's last bytes often come in
        // the report that also says its server closed.
        let mut previous = HashMap::new();
        let mut gone_listeners = Vec::new();
        let mut mark = |node: &pb::Node| {
            self.dirty
                .entry(node.kind)
                .or_default()
                .insert((agent.agent_id.clone(), node.id.clone()));
        };
        if report.full {
            for (id, node) in &agent.nodes {
                mark(node);
                if !report.nodes.iter().any(|n| &n.id == id) {
                    self.series.remove(id);
                }
            }
            agent.nodes.clear();
            previous = std::mem::take(&mut agent.connections);
            gone_listeners.extend(previous.values().filter(|c| c.listening()).cloned());
        }
        // Closed and failed connections live for exactly one report.
        let held = agent.connections.len();
        agent.connections.retain(|_, c| !c.ended());
        let mut endpoints_changed = report.full || held != agent.connections.len();
        if report.full
            || held != agent.connections.len()
            || !connections.is_empty()
            || !report.removed_connections.is_empty()
            || report.hostname != agent.hostname
        {
            self.edges_version += 1;
            self.dirty_connections.insert(agent.agent_id.clone());
        }
        let mut membership_changed = !report.removed_nodes.is_empty();
        for id in &report.removed_nodes {
            if let Some(node) = agent.nodes.remove(id) {
                mark(&node);
            }
            self.series.remove(id);
        }
        for id in &report.removed_connections {
            if let Some(conn) = agent.connections.remove(id) {
                endpoints_changed = true;
                if conn.listening() {
                    gone_listeners.push(conn);
                }
            }
        }
        for node in report.nodes {
            mark(&node);
            membership_changed |= agent.nodes.insert(node.id.clone(), node).is_none();
        }
        if membership_changed {
            self.edges_version += 1;
            endpoints_changed = true;
        }
        let mut changes = Vec::with_capacity(connections.len());
        for conn in connections {
            let before = agent
                .connections
                .get(&conn.wire.id)
                .or_else(|| previous.get(&conn.wire.id));
            if conn.listening() {
                if let Some(before) = before.filter(|b| b.listening()) {
                    self.traffic.listeners.remove(&agent.agent_id, before);
                }
                self.traffic.listeners.add(&agent.agent_id, &conn);
            }
            endpoints_changed |= before
                .is_none_or(|b| b.listening() != conn.listening() || b.wire.comm != conn.wire.comm);
            changes.push(ConnChange::between(before, &conn));
            agent.connections.insert(conn.wire.id.clone(), conn);
        }
        endpoints_changed |= report.hostname != agent.hostname;
        if let Some(ips) = host_ips {
            if ips != agent.ips {
                self.edges_version += 1;
                endpoints_changed = true;
            }
            self.traffic
                .listeners
                .set_ips(&agent.agent_id, &agent.ips, &ips);
            agent.ips = ips;
        }
        if endpoints_changed {
            self.endpoints_version += 1;
        }
        agent.hostname = report.hostname;
        agent.applied_seq = report.seq;
        agent.synced = true;
        if let Some(stats) = report.stats {
            agent.stats = stats;
        }
        let agent = &self.agents[&report.agent_id];
        self.traffic.account(&self.agents, agent, changes);
        for conn in gone_listeners {
            if !agent
                .connections
                .get(&conn.wire.id)
                .is_some_and(Conn::listening)
            {
                self.traffic.listeners.remove(&agent.agent_id, &conn);
            }
        }
        self.version += 1;
        Applied::Applied
    }

    /// Forgets agents that have not reported for `expiry`. Returns their ids.
    pub fn expire(&mut self, expiry: Duration) -> Vec<String> {
        let now = Instant::now();
        let gone: Vec<String> = self
            .agents
            .values()
            .filter(|a| now.duration_since(a.last_report) > expiry)
            .map(|a| a.agent_id.clone())
            .collect();
        for id in &gone {
            if let Some(agent) = self.agents.remove(id) {
                for node in agent.nodes.values() {
                    self.series.remove(&node.id);
                    self.dirty
                        .entry(node.kind)
                        .or_default()
                        .insert((agent.agent_id.clone(), node.id.clone()));
                }
                self.traffic.listeners.remove_agent(&agent);
                self.dirty_connections.insert(agent.agent_id.clone());
            }
        }
        if self.last_traffic_expiry.elapsed() >= TRAFFIC_EXPIRY_EVERY {
            self.last_traffic_expiry = now;
            self.traffic.expire(&self.agents);
        }
        if !gone.is_empty() {
            self.version += 1;
            self.edges_version += 1;
            self.endpoints_version += 1;
        }
        gone
    }

    pub fn applied_seq(&self, agent_id: &str) -> u64 {
        self.agents
            .get(agent_id)
            .map(|a| a.applied_seq)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(host: &str, pid: u32, cpu: f64) -> pb::Node {
        pb::Node {
            id: format!("process:{host}:{pid}"),
            kind: pb::NodeKind::Process as i32,
            parents: vec![format!("host:{host}")],
            labels: Default::default(),
            detail: Some(pb::node::Detail::Process(pb::Process {
                pid,
                cpu_percent: cpu,
                ..Default::default()
            })),
        }
    }

    fn report(seq: u64, full: bool, nodes: Vec<pb::Node>, removed: Vec<&str>) -> pb::Report {
        pb::Report {
            agent_id: "a".into(),
            hostname: "h".into(),
            seq,
            full,
            timestamp_unix_ms: seq as i64 * 15_000,
            nodes,
            removed_nodes: removed.into_iter().map(String::from).collect(),
            ..Default::default()
        }
    }

    fn apply(s: &mut Store, report: pb::Report) -> Applied {
        s.apply(parse(report).expect("a valid report"))
    }

    #[test]
    fn full_then_deltas_then_gap() {
        let mut s = Store::new(SeriesConfig::default());
        assert_eq!(
            apply(
                &mut s,
                report(
                    1,
                    true,
                    vec![process("h", 1, 1.0), process("h", 2, 1.0)],
                    vec![]
                )
            ),
            Applied::Applied
        );
        assert_eq!(
            apply(
                &mut s,
                report(2, false, vec![process("h", 3, 1.0)], vec!["process:h:1"])
            ),
            Applied::Applied
        );
        let a = &s.agents["a"];
        let mut ids: Vec<_> = a.nodes.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["process:h:2", "process:h:3"]);
        assert_eq!(
            apply(&mut s, report(2, false, vec![], vec![])),
            Applied::Duplicate
        );
        // seq 3 lost: 4 cannot be applied, but its samples are kept.
        assert_eq!(
            apply(
                &mut s,
                report(4, false, vec![process("h", 2, 50.0)], vec!["process:h:3"])
            ),
            Applied::NeedFull
        );
        assert!(
            s.agents["a"].nodes.contains_key("process:h:3"),
            "topology untouched"
        );
        let cpu = s.series["process:h:2"].cpu_percent.points(&s.series_config);
        assert_eq!(cpu.last().unwrap().value, 50.0);
        assert_eq!(
            apply(&mut s, report(5, true, vec![process("h", 2, 1.0)], vec![])),
            Applied::Applied
        );
        assert_eq!(s.agents["a"].nodes.len(), 1);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut r = report(1, true, vec![], vec![]);
        r.agent_id = "".into();
        assert_eq!(parse(r).unwrap_err(), ReportError::MissingAgentId);
        let mut r = report(1, true, vec![process("h", 1, 0.0)], vec![]);
        r.nodes[0].kind = 42;
        assert!(
            parse(r)
                .unwrap_err()
                .to_string()
                .contains("unknown kind 42")
        );
        let bad = |local: pb::Endpoint, state: i32| {
            let mut r = report(1, true, vec![], vec![]);
            r.connections.push(pb::Connection {
                id: "c".into(),
                local: Some(local),
                state,
                ..Default::default()
            });
            parse(r).unwrap_err()
        };
        let five_bytes = pb::Endpoint {
            ip: vec![1, 2, 3, 4, 5],
            port: 1,
        };
        assert_eq!(
            bad(five_bytes, 1),
            ReportError::BadEndpoint("c".into(), "local")
        );
        let big_port = pb::Endpoint {
            ip: vec![127, 0, 0, 1],
            port: 70_000,
        };
        assert!(matches!(bad(big_port, 1), ReportError::BadEndpoint(..)));
        let fine = pb::Endpoint::new("10.0.0.1:80".parse().unwrap());
        assert_eq!(
            bad(fine, 99),
            ReportError::BadConnectionState("c".into(), 99)
        );
    }
}
