//! What the TUI shows, as Rust types converted once from the master's protobuf when a message
//! is applied: addresses as `IpAddr`/`SocketAddr`, states as enums, a node's detail as an enum
//! of its kinds. Views, filters and details read these, never the wire's messages.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use orca_proto::{
    cluster::v1::TaskState,
    operator::v1 as opb,
    topology::v1::{self as pb, ConnectionState, ContainerState, Direction},
};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Host,
    Container,
    Process,
    /// Made by the collector for the far end of a connection (`external:<ip>`) or processes
    /// outside containers (`uncontained:<host>`).
    Pseudo,
}

impl NodeKind {
    pub fn word(self) -> &'static str {
        match self {
            NodeKind::Host => "host",
            NodeKind::Container => "container",
            NodeKind::Process => "process",
            NodeKind::Pseudo => "pseudo",
        }
    }
}

/// A host, container or process of the topology.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    /// Ids of the nodes containing this one (process → container → host).
    pub parents: Vec<String>,
    pub labels: HashMap<String, String>,
    /// `None` for pseudo nodes.
    #[serde(flatten)]
    pub detail: Option<Detail>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Detail {
    Host(Host),
    Container(Container),
    Process(Process),
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub hostname: String,
    pub ips: Vec<IpAddr>,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cores: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub uptime_seconds: u64,
    pub cpu_percent: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub runtime: String,
    pub state: ContainerState,
    pub labels: HashMap<String, String>,
    pub ports: Vec<String>,
    pub cgroup_path: String,
    pub memory_limit_bytes: u64,
    pub cpu_limit_cores: f64,
    pub memory_usage_bytes: u64,
    pub cpu_percent: f64,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
    pub user: String,
    pub uid: u32,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub vsz_bytes: u64,
    pub open_fds: u32,
    pub connections: u32,
    pub cgroup: String,
    pub container_id: String,
    pub started_unix_ms: i64,
    pub exited: bool,
    pub exit_code: i32,
    pub exit_signal: i32,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
}

/// The container states as people say them (what `state:` filters and details show).
pub fn container_state_word(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Exited => "exited",
        ContainerState::Removing => "removing",
        ContainerState::Dead => "dead",
        ContainerState::Unspecified => "",
    }
}

pub fn connection_state_word(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Established => "established",
        ConnectionState::Closed => "closed",
        ConnectionState::Failed => "failed",
        ConnectionState::Listen => "listen",
        ConnectionState::Unspecified => "",
    }
}

/// A TCP connection or listening socket as the connections view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    pub local: SocketAddr,
    /// `None` for listening sockets.
    pub remote: Option<SocketAddr>,
    pub direction: Direction,
    pub state: ConnectionState,
    pub pid: u32,
    pub process_id: String,
    pub comm: String,
    pub container_id: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    pub started_unix_ms: i64,
    pub closed_unix_ms: i64,
    /// More than 1: that many closed connections folded into one entry.
    pub aggregated: u32,
    /// The host that reported it.
    pub hostname: String,
    /// The node at the far end (`process:<host>:<pid>` or `external:<ip>`).
    pub peer_node: String,
    /// A readable name for the far end: `<comm> on <host>` or the remote IP.
    pub peer_name: String,
}

/// An edge between two nodes of a view.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
    pub connections: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The two ends were reported by different agents.
    pub cross_host: bool,
}

/// A cluster agent.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: String,
    pub hostname: String,
    pub state: opb::AgentState,
    pub total: HashMap<String, f64>,
    pub used: HashMap<String, f64>,
    pub offered: HashMap<String, f64>,
    pub total_ranges: HashMap<String, String>,
    pub attributes: HashMap<String, String>,
    pub registered_unix_ms: i64,
    pub running_tasks: u32,
    /// An operator deactivated it (or drains it): nothing of it is offered.
    pub deactivated: bool,
    pub drain: opb::AgentDrainState,
    /// While it drains: tasks still on it.
    pub drain_tasks_left: u32,
}

impl Agent {
    /// What an operator needs first: a drain or deactivation, else whether it is reachable.
    pub fn status_word(&self) -> &'static str {
        match self.drain {
            opb::AgentDrainState::Draining => "draining",
            opb::AgentDrainState::Drained => "drained",
            opb::AgentDrainState::None if self.deactivated => "deactivated",
            opb::AgentDrainState::None => agent_state_word(self.state),
        }
    }
}

pub fn agent_state_word(state: opb::AgentState) -> &'static str {
    match state {
        opb::AgentState::Active => "active",
        opb::AgentState::Unreachable => "unreachable",
        opb::AgentState::Recovered => "recovered",
        opb::AgentState::Unspecified => "",
    }
}

/// A framework registered with the master.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Framework {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub weight: f64,
    pub dominant_share: f64,
    pub active: bool,
    pub connected: bool,
    pub user: String,
    pub principal: String,
    pub registered_unix_ms: i64,
    pub running_tasks: u32,
    pub used: HashMap<String, f64>,
    pub offered: HashMap<String, f64>,
}

/// A task of any framework.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `<framework_id>/<task_id>`.
    pub key: String,
    pub id: String,
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub state: TaskState,
    pub role: String,
    pub resources: HashMap<String, f64>,
    pub labels: HashMap<String, String>,
    pub started_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub message: String,
    pub reason: String,
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
}

impl From<pb::Node> for Node {
    fn from(n: pb::Node) -> Self {
        let kind = match pb::NodeKind::try_from(n.kind) {
            Ok(pb::NodeKind::Host) => NodeKind::Host,
            Ok(pb::NodeKind::Container) => NodeKind::Container,
            Ok(pb::NodeKind::Process) => NodeKind::Process,
            _ => NodeKind::Pseudo,
        };
        let detail = match n.detail {
            Some(pb::node::Detail::Host(h)) => Some(Detail::Host(Host {
                ips: h.ip_addrs().collect(),
                hostname: h.hostname,
                os: h.os,
                kernel: h.kernel,
                arch: h.arch,
                cores: h.cores,
                memory_total_bytes: h.memory_total_bytes,
                memory_available_bytes: h.memory_available_bytes,
                disk_total_bytes: h.disk_total_bytes,
                disk_free_bytes: h.disk_free_bytes,
                load1: h.load1,
                load5: h.load5,
                load15: h.load15,
                uptime_seconds: h.uptime_seconds,
                cpu_percent: h.cpu_percent,
                net_rx_bytes: h.net_rx_bytes,
                net_tx_bytes: h.net_tx_bytes,
            })),
            Some(pb::node::Detail::Container(c)) => Some(Detail::Container(Container {
                state: c.state(),
                id: c.id,
                name: c.name,
                image: c.image,
                runtime: c.runtime,
                labels: c.labels,
                ports: c.ports,
                cgroup_path: c.cgroup_path,
                memory_limit_bytes: c.memory_limit_bytes,
                cpu_limit_cores: c.cpu_limit_cores,
                memory_usage_bytes: c.memory_usage_bytes,
                cpu_percent: c.cpu_percent,
                namespace: c.namespace,
            })),
            Some(pb::node::Detail::Process(p)) => Some(Detail::Process(Process {
                pid: p.pid,
                ppid: p.ppid,
                comm: p.comm,
                cmdline: p.cmdline,
                user: p.user,
                uid: p.uid,
                cpu_percent: p.cpu_percent,
                rss_bytes: p.rss_bytes,
                vsz_bytes: p.vsz_bytes,
                open_fds: p.open_fds,
                connections: p.connections,
                cgroup: p.cgroup,
                container_id: p.container_id,
                started_unix_ms: p.started_unix_ms,
                exited: p.exited,
                exit_code: p.exit_code,
                exit_signal: p.exit_signal,
                net_tx_bytes: p.net_tx_bytes,
                net_rx_bytes: p.net_rx_bytes,
            })),
            None => None,
        };
        Node {
            id: n.id,
            kind,
            parents: n.parents,
            labels: n.labels,
            detail,
        }
    }
}

impl Default for Node {
    fn default() -> Self {
        Node {
            id: String::new(),
            kind: NodeKind::Pseudo,
            parents: Vec::new(),
            labels: HashMap::new(),
            detail: None,
        }
    }
}

/// An address the collector validated; the unspecified address if a message carried none.
fn socket_addr(ep: Option<&pb::Endpoint>) -> Option<SocketAddr> {
    ep.and_then(pb::Endpoint::socket_addr)
}

impl From<pb::TopologyConnection> for Connection {
    fn from(t: pb::TopologyConnection) -> Self {
        let c = t.connection.unwrap_or_default();
        let listening = c.state() == ConnectionState::Listen;
        Connection {
            local: socket_addr(c.local.as_ref())
                .unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
            remote: socket_addr(c.remote.as_ref()).filter(|_| !listening),
            direction: c.direction(),
            state: c.state(),
            id: c.id,
            pid: c.pid,
            process_id: c.process_id,
            comm: c.comm,
            container_id: c.container_id,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            retransmits: c.retransmits,
            started_unix_ms: c.started_unix_ms,
            closed_unix_ms: c.closed_unix_ms,
            aggregated: c.aggregated,
            hostname: t.hostname,
            peer_node: t.peer_node,
            peer_name: t.peer_name,
        }
    }
}

impl From<pb::TopologyEdge> for Edge {
    fn from(e: pb::TopologyEdge) -> Self {
        Edge {
            id: e.id,
            source: e.source,
            target: e.target,
            connections: e.connections,
            bytes_sent: e.bytes_sent,
            bytes_received: e.bytes_received,
            cross_host: e.cross_host,
        }
    }
}

impl From<opb::Agent> for Agent {
    fn from(a: opb::Agent) -> Self {
        let drain = a.drain_state();
        Agent {
            state: a.state(),
            id: a.id,
            hostname: a.hostname,
            total: a.total,
            used: a.used,
            offered: a.offered,
            total_ranges: a.total_ranges,
            attributes: a.attributes,
            registered_unix_ms: a.registered_unix_ms,
            running_tasks: a.running_tasks,
            deactivated: a.deactivated,
            drain,
            drain_tasks_left: a.drain_tasks_left,
        }
    }
}

impl From<opb::Framework> for Framework {
    fn from(f: opb::Framework) -> Self {
        Framework {
            id: f.id,
            name: f.name,
            roles: f.roles,
            weight: f.weight,
            dominant_share: f.dominant_share,
            active: f.active,
            connected: f.connected,
            user: f.user,
            principal: f.principal,
            registered_unix_ms: f.registered_unix_ms,
            running_tasks: f.running_tasks,
            used: f.used,
            offered: f.offered,
        }
    }
}

impl From<opb::Task> for Task {
    fn from(t: opb::Task) -> Self {
        Task {
            state: t.state(),
            key: t.key,
            id: t.id,
            name: t.name,
            framework_id: t.framework_id,
            agent_id: t.agent_id,
            hostname: t.hostname,
            role: t.role,
            resources: t.resources,
            labels: t.labels,
            started_unix_ms: t.started_unix_ms,
            updated_unix_ms: t.updated_unix_ms,
            message: t.message,
            reason: t.reason,
            cpu_seconds: t.cpu_seconds,
            memory_bytes: t.memory_bytes,
            memory_limit_bytes: t.memory_limit_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_states_arrive_typed() {
        let wire = pb::TopologyConnection {
            connection: Some(pb::Connection {
                id: "c".into(),
                local: Some(pb::Endpoint::new("[::1]:7070".parse().unwrap())),
                remote: Some(pb::Endpoint::new("10.0.0.2:443".parse().unwrap())),
                direction: Direction::Outbound as i32,
                state: ConnectionState::Established as i32,
                ..Default::default()
            }),
            hostname: "h".into(),
            ..Default::default()
        };
        let c = Connection::from(wire);
        assert_eq!(c.local, "[::1]:7070".parse().unwrap());
        assert_eq!(c.remote, Some("10.0.0.2:443".parse().unwrap()));
        assert_eq!(c.state, ConnectionState::Established);
        let host = Node::from(pb::Node {
            id: "host:h".into(),
            kind: pb::NodeKind::Host as i32,
            detail: Some(pb::node::Detail::Host(pb::Host {
                ips: vec![vec![10, 0, 0, 1], vec![1, 2, 3]],
                ..Default::default()
            })),
            ..Default::default()
        });
        let Some(Detail::Host(h)) = host.detail else {
            panic!("a host")
        };
        assert_eq!(
            h.ips,
            vec![IpAddr::from([10, 0, 0, 1])],
            "a bad address is skipped"
        );
    }
}
