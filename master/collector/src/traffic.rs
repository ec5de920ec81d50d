//! Traffic between service groups, counted as reports arrive.
//!
//! Every connection's byte counters are diffed against its previous report and the difference
//! is added to the edge between the group of its process and the group at its far end. A
//! group is what a service is known by: the Kubernetes `namespace/container`, the Compose
//! service, the container's name, or (outside containers) the process's command name; the far
//! end of a connection to an address no agent reports is `external`. Edges are counters that
//! only grow, so connections that close lose nothing, and there are as many edges as pairs of
//! groups, not as connections (capped by [`TrafficLimits::max_edges`]).
//!
//! Each connection is counted once: from its client's side, or from its server's side when the
//! client is outside every reporting host.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use orca_proto::topology::v1 as pb;

use super::store::{AgentState, Conn};

/// The far end of a connection to an address no agent reports.
pub const EXTERNAL: &str = "external";
/// A process the agent has not described (yet).
pub const UNKNOWN: &str = "unknown";

/// An endpoint, scoped to its agent when it is a loopback address (127.0.0.1 on two hosts
/// are two different places).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scoped {
    pub agent: Option<String>,
    pub addr: SocketAddr,
}

pub fn scoped(agent: &str, addr: SocketAddr) -> Scoped {
    Scoped {
        agent: addr.ip().is_loopback().then(|| agent.to_string()),
        addr,
    }
}

/// One direction-aware pair of groups: the client (`source`) and the server (`destination`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub source: String,
    pub destination: String,
}

/// What went over one edge since the collector started.
#[derive(Debug, Clone, Default)]
pub struct EdgeCounters {
    /// Bytes the source sent to the destination.
    pub transmit_bytes: u64,
    /// Bytes the source received from the destination.
    pub receive_bytes: u64,
    /// Connections opened (a folded entry of closed connections counts as many as it folds).
    pub opened: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    last_update: Option<Instant>,
}

/// A container's TCP bytes (summed over its connections, counted as they grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub transmit_bytes: u64,
    pub receive_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct TrafficLimits {
    /// Edges kept at most; updates of further edges are dropped (and counted).
    pub max_edges: usize,
    /// An edge with no traffic and no new connection for this long is forgotten.
    pub edge_idle: Duration,
}

impl Default for TrafficLimits {
    fn default() -> Self {
        Self {
            max_edges: 10_000,
            edge_idle: Duration::from_secs(15 * 60),
        }
    }
}

/// What changed about one connection in one report.
#[derive(Debug)]
pub struct ConnChange {
    pub process_id: String,
    /// The process's name as the connection carries it (before the process itself is known).
    pub comm: String,
    pub container_id: String,
    pub remote: Option<SocketAddr>,
    pub direction: pb::Direction,
    pub state: pb::ConnectionState,
    pub aggregated: u32,
    pub tx: u64,
    pub rx: u64,
    /// First seen in this report.
    pub new: bool,
}

impl ConnChange {
    /// The change from `previous` (the same connection in the last report, if any) to `now`.
    pub fn between(previous: Option<&Conn>, now: &Conn) -> Self {
        let (tx, rx) = match previous {
            Some(p) => (
                now.wire.bytes_sent.saturating_sub(p.wire.bytes_sent),
                now.wire
                    .bytes_received
                    .saturating_sub(p.wire.bytes_received),
            ),
            None => (now.wire.bytes_sent, now.wire.bytes_received),
        };
        Self {
            process_id: now.wire.process_id.clone(),
            comm: now.wire.comm.clone(),
            container_id: now.wire.container_id.clone(),
            remote: now.remote,
            direction: now.direction,
            state: now.state,
            aggregated: now.wire.aggregated.max(1),
            tx,
            rx,
            new: previous.is_none(),
        }
    }
}

/// Who listens where: (agent, process) by exact address, by (agent, port) for wildcard
/// listeners, and which agent owns which address. Kept current as listening sockets come and go.
#[derive(Debug, Default)]
pub struct ListenerIndex {
    exact: HashMap<Scoped, (String, String)>,
    wildcard: HashMap<(String, u16), String>,
    agent_of_ip: HashMap<IpAddr, String>,
}

impl ListenerIndex {
    pub fn add(&mut self, agent: &str, conn: &Conn) {
        let process = conn.wire.process_id.clone();
        if conn.local.ip().is_unspecified() {
            self.wildcard
                .insert((agent.to_string(), conn.local.port()), process);
        } else {
            self.exact
                .insert(scoped(agent, conn.local), (agent.to_string(), process));
        }
    }

    pub fn remove(&mut self, agent: &str, conn: &Conn) {
        if conn.local.ip().is_unspecified() {
            let key = (agent.to_string(), conn.local.port());
            if self.wildcard.get(&key) == Some(&conn.wire.process_id) {
                self.wildcard.remove(&key);
            }
        } else {
            let key = scoped(agent, conn.local);
            if self
                .exact
                .get(&key)
                .is_some_and(|(a, p)| a == agent && *p == conn.wire.process_id)
            {
                self.exact.remove(&key);
            }
        }
    }

    /// The agent's addresses changed from `old` to `new`.
    pub fn set_ips(&mut self, agent: &str, old: &[IpAddr], new: &[IpAddr]) {
        for ip in old {
            if self.agent_of_ip.get(ip).is_some_and(|a| a == agent) {
                self.agent_of_ip.remove(ip);
            }
        }
        for ip in new.iter().filter(|ip| !ip.is_loopback()) {
            self.agent_of_ip.insert(*ip, agent.to_string());
        }
    }

    /// Forgets everything of an agent that left.
    pub fn remove_agent(&mut self, agent: &AgentState) {
        for conn in agent.connections.values().filter(|c| c.listening()) {
            self.remove(&agent.agent_id, conn);
        }
        self.set_ips(&agent.agent_id, &agent.ips, &[]);
    }

    /// The agent an address belongs to (`agent` itself for loopback addresses).
    fn owner<'a>(&'a self, agent: &'a str, ip: IpAddr) -> Option<&'a str> {
        if ip.is_loopback() {
            Some(agent)
        } else {
            self.agent_of_ip.get(&ip).map(String::as_str)
        }
    }

    /// (agent, process) listening where `agent`'s connection goes to.
    fn server<'a>(&'a self, agent: &'a str, remote: SocketAddr) -> Option<(&'a str, &'a str)> {
        if let Some((a, p)) = self.exact.get(&scoped(agent, remote)) {
            return Some((a, p));
        }
        let owner = self.owner(agent, remote.ip())?;
        self.wildcard
            .get_key_value(&(owner.to_string(), remote.port()))
            .map(|((a, _), p)| (a.as_str(), p.as_str()))
    }
}

/// The traffic counters and what they need to place a connection's far end.
#[derive(Debug, Default)]
pub struct Traffic {
    pub edges: HashMap<EdgeKey, EdgeCounters>,
    /// By container id.
    pub containers: HashMap<String, NetCounters>,
    pub listeners: ListenerIndex,
    /// Edge updates dropped because `max_edges` edges exist.
    pub dropped_updates: u64,
    pub limits: TrafficLimits,
}

impl Traffic {
    /// Counts one agent's connection changes (after its report was applied, so the groups of
    /// its new processes are known).
    pub fn account(
        &mut self,
        agents: &HashMap<String, AgentState>,
        agent: &AgentState,
        changes: Vec<ConnChange>,
    ) {
        let now = Instant::now();
        for change in changes {
            if change.state == pb::ConnectionState::Listen {
                continue;
            }
            if !change.container_id.is_empty() && (change.tx > 0 || change.rx > 0) {
                let c = self
                    .containers
                    .entry(change.container_id.clone())
                    .or_default();
                c.transmit_bytes += change.tx;
                c.receive_bytes += change.rx;
            }
            let Some(remote) = change.remote else {
                continue;
            };
            let mut local = group_of(agent, &change.process_id, &change.container_id);
            if local == UNKNOWN && !change.comm.is_empty() {
                local = change.comm.clone();
            }
            let (key, transmit, receive) = if change.direction == pb::Direction::Inbound {
                // The client's own agent counts it, unless the client is outside every host.
                if self.listeners.owner(&agent.agent_id, remote.ip()).is_some() {
                    continue;
                }
                let key = EdgeKey {
                    source: EXTERNAL.to_string(),
                    destination: local,
                };
                (key, change.rx, change.tx)
            } else {
                let destination = match self.listeners.server(&agent.agent_id, remote) {
                    Some((server_agent, process)) => match agents.get(server_agent) {
                        Some(a) => group_of(a, process, ""),
                        None => EXTERNAL.to_string(),
                    },
                    None => match self.listeners.owner(&agent.agent_id, remote.ip()) {
                        // A host that reports, but nobody known listens there.
                        Some(owner) => agents
                            .get(owner)
                            .map(|a| format!("host:{}", a.hostname))
                            .unwrap_or_else(|| EXTERNAL.to_string()),
                        None => EXTERNAL.to_string(),
                    },
                };
                let key = EdgeKey {
                    source: local,
                    destination,
                };
                (key, change.tx, change.rx)
            };
            let (opened, failed) = match (change.new, change.state) {
                (true, pb::ConnectionState::Failed) => (0, change.aggregated as u64),
                (true, _) => (change.aggregated as u64, 0),
                (false, _) => (0, 0),
            };
            if transmit == 0 && receive == 0 && opened == 0 && failed == 0 {
                continue;
            }
            let full = self.edges.len() >= self.limits.max_edges;
            let edge = match self.edges.get_mut(&key) {
                Some(edge) => edge,
                None if full => {
                    self.dropped_updates += 1;
                    continue;
                }
                None => self.edges.entry(key).or_default(),
            };
            edge.transmit_bytes += transmit;
            edge.receive_bytes += receive;
            edge.opened += opened;
            edge.failed += failed;
            edge.last_update = Some(now);
        }
    }

    /// Forgets idle edges, and the counters of containers no agent reports any more.
    pub fn expire(&mut self, agents: &HashMap<String, AgentState>) {
        let idle = self.limits.edge_idle;
        self.edges
            .retain(|_, e| e.last_update.is_some_and(|t| t.elapsed() < idle));
        let reported: HashSet<&str> = agents
            .values()
            .flat_map(|a| a.nodes.keys())
            .filter_map(|id| id.strip_prefix("container:"))
            .collect();
        self.containers
            .retain(|id, _| reported.contains(id.as_str()));
    }
}

/// The group a process belongs to (see the module's documentation). `container_id` may be
/// empty: the process's node says which container it runs in.
pub fn group_of(agent: &AgentState, process_id: &str, container_id: &str) -> String {
    let process = match agent.nodes.get(process_id).and_then(|n| n.detail.as_ref()) {
        Some(pb::node::Detail::Process(p)) => Some(p),
        _ => None,
    };
    let container_id = match container_id {
        "" => process.map(|p| p.container_id.as_str()).unwrap_or_default(),
        id => id,
    };
    if !container_id.is_empty() {
        return match agent.container(container_id) {
            Some(c) => container_group(c),
            None => container_id.chars().take(12).collect(),
        };
    }
    match process {
        Some(p) if !p.comm.is_empty() => p.comm.clone(),
        _ => UNKNOWN.to_string(),
    }
}

/// A container's service name: the Kubernetes `namespace/container`, the Compose service, or
/// its own name.
pub fn container_group(c: &pb::Container) -> String {
    let label = |key: &str| c.labels.get(key).filter(|v| !v.is_empty());
    if let (Some(ns), Some(name)) = (
        label("io.kubernetes.pod.namespace"),
        label("io.kubernetes.container.name"),
    ) {
        return format!("{ns}/{name}");
    }
    if let Some(service) = label("com.docker.compose.service") {
        return service.clone();
    }
    if c.name.is_empty() {
        c.id.chars().take(12).collect()
    } else {
        c.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        series::SeriesConfig,
        store::{Store, parse},
    };

    fn host(name: &str, ip: &str) -> pb::Node {
        pb::Node {
            id: format!("host:{name}"),
            kind: pb::NodeKind::Host as i32,
            detail: Some(pb::node::Detail::Host(pb::Host {
                hostname: name.into(),
                ips: vec![pb::ip_to_bytes(ip.parse().unwrap())],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn process(host: &str, pid: u32, comm: &str, container: &str) -> pb::Node {
        pb::Node {
            id: format!("process:{host}:{pid}"),
            kind: pb::NodeKind::Process as i32,
            detail: Some(pb::node::Detail::Process(pb::Process {
                pid,
                comm: comm.into(),
                container_id: container.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn container(id: &str, name: &str, service: &str) -> pb::Node {
        let mut labels = std::collections::HashMap::new();
        labels.insert(
            "com.docker.compose.service".to_string(),
            service.to_string(),
        );
        pb::Node {
            id: format!("container:{id}"),
            kind: pb::NodeKind::Container as i32,
            detail: Some(pb::node::Detail::Container(pb::Container {
                id: id.into(),
                name: name.into(),
                labels,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conn(
        id: &str,
        local: &str,
        remote: Option<&str>,
        direction: pb::Direction,
        state: pb::ConnectionState,
        process_id: &str,
        container: &str,
        sent: u64,
        received: u64,
    ) -> pb::Connection {
        pb::Connection {
            id: id.into(),
            local: Some(pb::Endpoint::new(local.parse().unwrap())),
            remote: remote.map(|r| pb::Endpoint::new(r.parse().unwrap())),
            direction: direction as i32,
            state: state as i32,
            process_id: process_id.into(),
            container_id: container.into(),
            bytes_sent: sent,
            bytes_received: received,
            ..Default::default()
        }
    }

    fn report(
        agent: &str,
        seq: u64,
        full: bool,
        nodes: Vec<pb::Node>,
        connections: Vec<pb::Connection>,
    ) -> pb::Report {
        pb::Report {
            agent_id: agent.into(),
            hostname: agent.into(),
            seq,
            full,
            timestamp_unix_ms: seq as i64 * 1000,
            nodes,
            connections,
            ..Default::default()
        }
    }

    fn apply(store: &mut Store, r: pb::Report) {
        store.apply(parse(r).expect("a valid report"));
    }

    fn edge<'a>(store: &'a Store, source: &str, destination: &str) -> &'a EdgeCounters {
        store
            .traffic
            .edges
            .get(&EdgeKey {
                source: source.into(),
                destination: destination.into(),
            })
            .unwrap_or_else(|| panic!("no edge {source} -> {destination}"))
    }

    use pb::{ConnectionState::*, Direction::*};

    /// A client process on host a talks to a Compose service on host b, and an outside
    /// client talks to it too: bytes count once per connection, grow with it, and survive
    /// its closing.
    #[test]
    fn edges_count_each_connection_once_and_keep_what_closed_connections_carried() {
        let mut store = Store::new(SeriesConfig::default());
        let server = vec![
            host("b", "10.0.0.2"),
            container("c1", "shop-web-1", "web"),
            process("b", 7, "nginx", "c1"),
        ];
        let listen = conn(
            "l",
            "0.0.0.0:80",
            None,
            Inbound,
            Listen,
            "process:b:7",
            "c1",
            0,
            0,
        );
        let inbound = |sent, received| {
            conn(
                "b-in",
                "10.0.0.2:80",
                Some("10.0.0.1:5000"),
                Inbound,
                Established,
                "process:b:7",
                "c1",
                sent,
                received,
            )
        };
        apply(
            &mut store,
            report("b", 1, true, server.clone(), vec![listen.clone()]),
        );
        let outbound = |state, sent, received| {
            conn(
                "a-out",
                "10.0.0.1:5000",
                Some("10.0.0.2:80"),
                Outbound,
                state,
                "process:a:1",
                "",
                sent,
                received,
            )
        };
        let client = vec![host("a", "10.0.0.1"), process("a", 1, "curl", "")];
        apply(
            &mut store,
            report("a", 1, true, client, vec![outbound(Established, 100, 1000)]),
        );
        apply(
            &mut store,
            report("b", 2, false, vec![], vec![inbound(1000, 100)]),
        );
        apply(
            &mut store,
            report(
                "a",
                2,
                false,
                vec![],
                vec![outbound(Established, 300, 5000)],
            ),
        );
        apply(
            &mut store,
            report("a", 3, false, vec![], vec![outbound(Closed, 400, 6000)]),
        );
        // The closed connection is gone from the next report; its bytes stay counted.
        apply(&mut store, report("a", 4, false, vec![], vec![]));
        let e = edge(&store, "curl", "web");
        assert_eq!((e.transmit_bytes, e.receive_bytes), (400, 6000));
        assert_eq!((e.opened, e.failed), (1, 0));
        // The server's side of the same connection was not counted as another edge.
        assert_eq!(store.traffic.edges.len(), 1);

        // A client outside every host is counted from the server's side.
        let outside = conn(
            "b-ext",
            "10.0.0.2:80",
            Some("203.0.113.9:4000"),
            Inbound,
            Established,
            "process:b:7",
            "c1",
            50,
            7,
        );
        apply(&mut store, report("b", 3, false, vec![], vec![outside]));
        let e = edge(&store, EXTERNAL, "web");
        assert_eq!((e.transmit_bytes, e.receive_bytes, e.opened), (7, 50, 1));
        // The container's own counters have every byte its connections carried.
        assert_eq!(
            store.traffic.containers["c1"],
            NetCounters {
                transmit_bytes: 1050,
                receive_bytes: 107
            }
        );

        // A failed attempt to a port nobody listens on, on a reporting host.
        let refused = conn(
            "a-fail",
            "10.0.0.1:5001",
            Some("10.0.0.2:81"),
            Outbound,
            Failed,
            "process:a:1",
            "",
            0,
            0,
        );
        apply(&mut store, report("a", 5, false, vec![], vec![refused]));
        let e = edge(&store, "curl", "host:b");
        assert_eq!((e.opened, e.failed), (0, 1));
    }

    #[test]
    fn edges_beyond_the_cap_are_counted_as_dropped() {
        let mut store = Store::new(SeriesConfig::default());
        store.traffic.limits.max_edges = 1;
        let nodes = vec![
            host("a", "10.0.0.1"),
            process("a", 1, "one", ""),
            process("a", 2, "two", ""),
        ];
        let to_outside = |id: &str, process: &str| {
            conn(
                id,
                "10.0.0.1:5000",
                Some("198.51.100.1:443"),
                Outbound,
                Established,
                process,
                "",
                10,
                10,
            )
        };
        apply(
            &mut store,
            report(
                "a",
                1,
                true,
                nodes,
                vec![
                    to_outside("c1", "process:a:1"),
                    to_outside("c2", "process:a:2"),
                ],
            ),
        );
        assert_eq!(store.traffic.edges.len(), 1);
        assert_eq!(store.traffic.dropped_updates, 1);
    }

    #[test]
    fn a_restarting_listener_moves_in_the_index() {
        let mut store = Store::new(SeriesConfig::default());
        let listen = |pid: u32| {
            conn(
                "l",
                "10.0.0.2:80",
                None,
                Inbound,
                Listen,
                &format!("process:b:{pid}"),
                "",
                0,
                0,
            )
        };
        let nodes = vec![
            host("b", "10.0.0.2"),
            process("b", 7, "old", ""),
            process("b", 8, "new", ""),
        ];
        apply(&mut store, report("b", 1, true, nodes, vec![listen(7)]));
        apply(&mut store, report("b", 2, false, vec![], vec![listen(8)]));
        let client = vec![host("a", "10.0.0.1"), process("a", 1, "curl", "")];
        let out = conn(
            "o",
            "10.0.0.1:6000",
            Some("10.0.0.2:80"),
            Outbound,
            Established,
            "process:a:1",
            "",
            1,
            1,
        );
        apply(&mut store, report("a", 1, true, client, vec![out]));
        assert_eq!(edge(&store, "curl", "new").opened, 1);
    }

    /// A one-agent exchange on loopback: the last report carries the client's final bytes and
    /// says the server's listener closed; those bytes still go to the server's group.
    #[test]
    fn final_bytes_count_toward_a_listener_closed_in_the_same_report() {
        let mut store = Store::new(SeriesConfig::default());
        let nodes = vec![
            host("a", "10.0.0.1"),
            process("a", 1, "client", ""),
            process("a", 2, "server", ""),
        ];
        let listen = conn(
            "l",
            "127.0.0.1:9000",
            None,
            Inbound,
            Listen,
            "process:a:2",
            "",
            0,
            0,
        );
        let out = |state, sent| {
            conn(
                "o",
                "127.0.0.1:40000",
                Some("127.0.0.1:9000"),
                Outbound,
                state,
                "process:a:1",
                "",
                sent,
                0,
            )
        };
        apply(
            &mut store,
            report("a", 1, true, nodes, vec![listen, out(Established, 10)]),
        );
        let mut last = report("a", 2, false, vec![], vec![out(Closed, 25)]);
        last.removed_connections.push("l".into());
        apply(&mut store, last);
        assert_eq!(edge(&store, "client", "server").transmit_bytes, 25);
        assert_eq!(store.traffic.edges.len(), 1);
        // The listener is gone from the index afterwards.
        let again = conn(
            "o2",
            "127.0.0.1:40001",
            Some("127.0.0.1:9000"),
            Outbound,
            Failed,
            "process:a:1",
            "",
            0,
            0,
        );
        apply(&mut store, report("a", 3, false, vec![], vec![again]));
        assert_eq!(edge(&store, "client", "host:a").failed, 1);
    }

    #[test]
    fn counters_of_containers_no_agent_reports_are_forgotten() {
        let mut store = Store::new(SeriesConfig::default());
        let nodes = vec![
            host("a", "10.0.0.1"),
            container("c1", "web-1", "web"),
            process("a", 1, "nginx", "c1"),
        ];
        let out = conn(
            "o",
            "10.0.0.1:5000",
            Some("198.51.100.1:443"),
            Outbound,
            Established,
            "process:a:1",
            "c1",
            10,
            20,
        );
        apply(&mut store, report("a", 1, true, nodes, vec![out]));
        let agents = std::mem::take(&mut store.agents);
        store.traffic.expire(&agents);
        assert!(store.traffic.containers.contains_key("c1"));
        store.traffic.expire(&HashMap::new());
        assert!(store.traffic.containers.is_empty());
    }
}
