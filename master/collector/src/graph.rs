//! Views of the merged topology: hosts, containers or processes as nodes, and edges between
//! them aggregated from every agent's connections. Both ends of a connection are joined by
//! IP:port across agents, so a connection from host A to host B is one cross-host edge.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use orca_proto::topology::v1 as pb;

use super::{
    store::{AgentState, Store},
    traffic::{Scoped, scoped},
};

/// One view of the topology, keyed by id for cheap diffs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewGraph {
    pub nodes: BTreeMap<String, pb::TopologyNode>,
    pub edges: BTreeMap<String, pb::TopologyEdge>,
    /// Only in the connections view.
    pub connections: BTreeMap<String, pb::TopologyConnection>,
}

#[derive(Debug, Default)]
struct Pair {
    client: Option<(String, String)>,
    server: Option<(String, String)>,
    connections: u32,
    bytes_client_to_server: u64,
    bytes_server_to_client: u64,
}

pub fn view_from_param(s: &str) -> Option<pb::View> {
    match s {
        "hosts" => Some(pb::View::Hosts),
        "containers" => Some(pb::View::Containers),
        "processes" => Some(pb::View::Processes),
        "connections" => Some(pb::View::Connections),
        _ => None,
    }
}

/// Builds one view. With `series`, nodes carry their whole time series.
pub fn build(store: &Store, view: pb::View, series: bool) -> ViewGraph {
    if view == pb::View::Connections {
        return ViewGraph {
            connections: connections(store),
            ..Default::default()
        };
    }
    let mut graph = ViewGraph::default();
    for agent in store.agents.values() {
        for node in agent.nodes.values() {
            if shown(view, node) {
                graph.nodes.insert(
                    node.id.clone(),
                    topology_node(store, node, &agent.hostname, series),
                );
            }
        }
    }
    let (edges, ends) = edges(store, view);
    for (id, ip) in ends {
        graph
            .nodes
            .entry(id)
            .or_insert_with_key(|id| pseudo_node(id, ip));
    }
    graph.edges = edges;
    graph
}

/// Whether `view` shows `node` as one of its own nodes.
pub fn shown(view: pb::View, node: &pb::Node) -> bool {
    let kind = pb::NodeKind::try_from(node.kind).unwrap_or(pb::NodeKind::Unspecified);
    matches!(
        (view, kind),
        (pb::View::Hosts, pb::NodeKind::Host)
            | (pb::View::Containers, pb::NodeKind::Container)
            | (pb::View::Processes, pb::NodeKind::Process)
    )
}

/// A view's edges, aggregated from every agent's connections, and every node id they join
/// with an address of it (for the ends that are not nodes of the view: pseudo nodes).
pub fn edges(
    store: &Store,
    view: pb::View,
) -> (BTreeMap<String, pb::TopologyEdge>, HashMap<String, IpAddr>) {
    let mut edges: BTreeMap<String, pb::TopologyEdge> = BTreeMap::new();
    let mut ends: HashMap<String, IpAddr> = HashMap::new();
    // process id -> view node id
    let mut owner: HashMap<&str, String> = HashMap::new();
    let mut host_of_agent: HashMap<&str, String> = HashMap::new();
    let mut agent_of_ip: HashMap<IpAddr, &str> = HashMap::new();

    for agent in store.agents.values() {
        host_of_agent.insert(&agent.agent_id, format!("host:{}", agent.hostname));
        for ip in agent.ips.iter().filter(|ip| !ip.is_loopback()) {
            agent_of_ip.insert(*ip, &agent.agent_id);
        }
    }
    // Only processes with a connection need an owner.
    for agent in store.agents.values() {
        for c in agent.connections.values() {
            let process = c.wire.process_id.as_str();
            if owner.contains_key(process) {
                continue;
            }
            let Some(node) = agent.nodes.get(process) else {
                continue;
            };
            let target = match view {
                pb::View::Processes => node.id.clone(),
                pb::View::Containers => node
                    .parents
                    .iter()
                    .find(|p| p.starts_with("container:"))
                    .cloned()
                    .unwrap_or_else(|| format!("uncontained:{}", agent.hostname)),
                _ => format!("host:{}", agent.hostname),
            };
            owner.insert(process, target);
        }
    }

    // Listening sockets: exact address, and wildcard listeners by (agent, port).
    let mut listeners: HashMap<Scoped, (String, String)> = HashMap::new();
    let mut wildcard: HashMap<(&str, u16), (String, String)> = HashMap::new();
    for agent in store.agents.values() {
        for c in agent.connections.values().filter(|c| c.listening()) {
            let local = c.local;
            let who = (agent.agent_id.clone(), c.wire.process_id.clone());
            if local.ip().is_unspecified() {
                wildcard.insert((&agent.agent_id, local.port()), who);
            } else {
                listeners.insert(scoped(&agent.agent_id, local), who);
            }
        }
    }

    let mut pairs: HashMap<(Scoped, Scoped), Pair> = HashMap::new();
    for agent in store.agents.values() {
        for c in agent.connections.values().filter(|c| !c.listening()) {
            let Some(remote) = c.remote else {
                continue;
            };
            let me = (agent.agent_id.clone(), c.wire.process_id.clone());
            let local = scoped(&agent.agent_id, c.local);
            let remote = scoped(&agent.agent_id, remote);
            let inbound = c.direction == pb::Direction::Inbound;
            let key = if inbound {
                (remote, local)
            } else {
                (local, remote)
            };
            let pair = pairs.entry(key).or_default();
            let c = &c.wire;
            pair.connections = pair.connections.max(c.aggregated.max(1));
            if inbound {
                pair.server = Some(me);
                pair.bytes_client_to_server = pair.bytes_client_to_server.max(c.bytes_received);
                pair.bytes_server_to_client = pair.bytes_server_to_client.max(c.bytes_sent);
            } else {
                pair.client = Some(me);
                pair.bytes_client_to_server = pair.bytes_client_to_server.max(c.bytes_sent);
                pair.bytes_server_to_client = pair.bytes_server_to_client.max(c.bytes_received);
            }
        }
    }

    for ((client_addr, server_addr), pair) in pairs {
        let server = pair.server.clone().or_else(|| {
            listeners.get(&server_addr).cloned().or_else(|| {
                let agent = match &server_addr.agent {
                    Some(agent) => agent.as_str(),
                    None => agent_of_ip.get(&server_addr.addr.ip()).copied()?,
                };
                wildcard.get(&(agent, server_addr.addr.port())).cloned()
            })
        });
        let resolve = |end: Option<(String, String)>, addr: &Scoped| -> (String, Option<String>) {
            match end {
                Some((agent, process)) => {
                    let node = owner
                        .get(process.as_str())
                        .cloned()
                        .or_else(|| host_of_agent.get(agent.as_str()).cloned())
                        .unwrap_or_else(|| format!("external:{}", addr.addr.ip()));
                    (node, Some(agent))
                }
                None => (format!("external:{}", addr.addr.ip()), None),
            }
        };
        let (source, source_agent) = resolve(pair.client.clone(), &client_addr);
        let (target, target_agent) = resolve(server, &server_addr);
        if source == target {
            continue;
        }
        for (id, addr) in [(&source, &client_addr), (&target, &server_addr)] {
            ends.entry(id.clone()).or_insert(addr.addr.ip());
        }
        let id = format!("{source}->{target}");
        let edge = edges.entry(id.clone()).or_insert_with(|| pb::TopologyEdge {
            id,
            source: source.clone(),
            target: target.clone(),
            ..Default::default()
        });
        edge.connections += pair.connections;
        edge.bytes_sent += pair.bytes_client_to_server;
        edge.bytes_received += pair.bytes_server_to_client;
        if let (Some(a), Some(b)) = (&source_agent, &target_agent)
            && a != b
        {
            edge.cross_host = true;
        }
    }
    (edges, ends)
}

/// Who owns a local endpoint: agent, process node id and name.
#[derive(Debug, Clone)]
struct Owner {
    agent: String,
    process: String,
    comm: String,
}

/// Finds the far end of connections. The far end of a connection is the process whose own
/// connection has the mirrored endpoints (reported by the same or another agent), or failing
/// that the process listening on the remote address. Built from every agent's endpoints
/// (O(connections)); then any agent's connections are resolved against it, so a view can
/// redo only the agents that reported.
#[derive(Debug, Default)]
pub struct PeerResolver {
    agent_of_ip: HashMap<IpAddr, String>,
    hostname_of: HashMap<String, String>,
    local_ends: HashMap<Scoped, Owner>,
    /// Wildcard listeners by agent, then port.
    wildcard: HashMap<String, HashMap<u16, Owner>>,
}

impl PeerResolver {
    pub fn new(store: &Store) -> Self {
        let mut resolver = Self::default();
        for agent in store.agents.values() {
            resolver
                .hostname_of
                .insert(agent.agent_id.clone(), agent.hostname.clone());
            for ip in agent.ips.iter().filter(|ip| !ip.is_loopback()) {
                resolver.agent_of_ip.insert(*ip, agent.agent_id.clone());
            }
            for c in agent.connections.values() {
                let comm = match agent
                    .nodes
                    .get(&c.wire.process_id)
                    .and_then(|n| n.detail.as_ref())
                {
                    _ if !c.wire.comm.is_empty() => c.wire.comm.as_str(),
                    Some(pb::node::Detail::Process(p)) => p.comm.as_str(),
                    _ => "",
                };
                let owner = Owner {
                    agent: agent.agent_id.clone(),
                    process: c.wire.process_id.clone(),
                    comm: comm.to_owned(),
                };
                if c.listening() && c.local.ip().is_unspecified() {
                    resolver
                        .wildcard
                        .entry(agent.agent_id.clone())
                        .or_default()
                        .insert(c.local.port(), owner);
                } else {
                    resolver
                        .local_ends
                        .insert(scoped(&agent.agent_id, c.local), owner);
                }
            }
        }
        resolver
    }

    /// One agent's connections with the node at their far end, by connection id.
    pub fn entries<'a>(
        &'a self,
        agent: &'a AgentState,
    ) -> impl Iterator<Item = pb::TopologyConnection> + 'a {
        agent.connections.values().map(move |c| {
            let remote = c.remote.filter(|_| !c.listening());
            let peer = remote.and_then(|remote| {
                let key = scoped(&agent.agent_id, remote);
                self.local_ends.get(&key).or_else(|| {
                    let owner = match &key.agent {
                        Some(agent) => agent.as_str(),
                        None => self.agent_of_ip.get(&remote.ip())?.as_str(),
                    };
                    self.wildcard.get(owner)?.get(&remote.port())
                })
            });
            let (peer_node, peer_name) = match (peer, remote) {
                (Some(owner), _) => {
                    let host = self
                        .hostname_of
                        .get(&owner.agent)
                        .map_or(owner.agent.as_str(), String::as_str);
                    (owner.process.clone(), format!("{} on {host}", owner.comm))
                }
                (None, Some(remote)) => {
                    (format!("external:{}", remote.ip()), remote.ip().to_string())
                }
                (None, None) => (String::new(), String::new()),
            };
            pb::TopologyConnection {
                connection: Some(c.wire.clone()),
                hostname: agent.hostname.clone(),
                peer_node,
                peer_name,
            }
        })
    }
}

/// Every connection with the node at its far end.
fn connections(store: &Store) -> BTreeMap<String, pb::TopologyConnection> {
    let resolver = PeerResolver::new(store);
    store
        .agents
        .values()
        .flat_map(|agent| resolver.entries(agent))
        .map(|c| (connection_id(&c).to_owned(), c))
        .collect()
}

/// A connections view entry's id.
pub fn connection_id(c: &pb::TopologyConnection) -> &str {
    c.connection.as_ref().map_or("", |w| w.id.as_str())
}

pub fn pseudo_node(id: &str, ip: IpAddr) -> pb::TopologyNode {
    let mut labels = HashMap::new();
    labels.insert("pseudo".to_string(), "true".to_string());
    if id.starts_with("external:") {
        labels.insert("ip".to_string(), ip.to_string());
    }
    pb::TopologyNode {
        node: Some(pb::Node {
            id: id.to_string(),
            kind: pb::NodeKind::Unspecified as i32,
            parents: vec![],
            labels,
            detail: None,
        }),
        hostname: id
            .strip_prefix("uncontained:")
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    }
}

pub fn topology_node(
    store: &Store,
    node: &pb::Node,
    hostname: &str,
    series: bool,
) -> pb::TopologyNode {
    let out = pb::TopologyNode {
        node: Some(node.clone()),
        hostname: hostname.to_string(),
        ..Default::default()
    };
    if series { with_series(store, out) } else { out }
}

/// Fills a node's series with only their newest points.
pub fn with_latest_points(store: &Store, node: pb::TopologyNode) -> pb::TopologyNode {
    fill_series(store, node, super::series::Series::latest)
}

/// Fills a node's whole time series from the store.
pub fn with_series(store: &Store, node: pb::TopologyNode) -> pb::TopologyNode {
    fill_series(store, node, super::series::Series::points)
}

fn fill_series(
    store: &Store,
    mut node: pb::TopologyNode,
    points: fn(&super::series::Series, &super::series::SeriesConfig) -> Vec<pb::Point>,
) -> pb::TopologyNode {
    let id = node
        .node
        .as_ref()
        .map(|n| n.id.as_str())
        .unwrap_or_default();
    if let Some(s) = store.series.get(id) {
        let c = &store.series_config;
        node.cpu_percent = points(&s.cpu_percent, c);
        node.memory_bytes = points(&s.memory_bytes, c);
        node.net_tx_bytes_per_second = points(&s.net_tx_bytes_per_second, c);
        node.net_rx_bytes_per_second = points(&s.net_rx_bytes_per_second, c);
    }
    node
}
