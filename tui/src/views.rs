//! The tabs, what a row of each is, its columns, its health colour, and how rows are chosen
//! (scope, filter), ordered (sort column or process tree) and drawn (cells).
use std::collections::HashMap;

use orca_proto::{
    cluster::v1::TaskState,
    operator::v1::AgentState,
    topology::v1::{self as pb, ContainerState},
};

use crate::{
    filter::{self, Filterable},
    format,
    model::{
        Model,
        domain::{
            Agent, Detail, Framework, Host, Task, connection_state_word, container_state_word,
        },
        topology::{ConnEntry, Metric as NodeMetric, NodeEntry, TopoView},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    Hosts,
    Containers,
    Processes,
    Connections,
    Agents,
    Frameworks,
    Tasks,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Hosts,
        Tab::Containers,
        Tab::Processes,
        Tab::Connections,
        Tab::Agents,
        Tab::Frameworks,
        Tab::Tasks,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Hosts => "Hosts",
            Tab::Containers => "Containers",
            Tab::Processes => "Processes",
            Tab::Connections => "Connections",
            Tab::Agents => "Agents",
            Tab::Frameworks => "Frameworks",
            Tab::Tasks => "Tasks",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn topology(self) -> Option<TopoView> {
        match self {
            Tab::Hosts => Some(TopoView::Hosts),
            Tab::Containers => Some(TopoView::Containers),
            Tab::Processes => Some(TopoView::Processes),
            Tab::Connections => Some(TopoView::Connections),
            _ => None,
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            Tab::Hosts => HOST_COLUMNS,
            Tab::Containers => CONTAINER_COLUMNS,
            Tab::Processes => PROCESS_COLUMNS,
            Tab::Connections => CONNECTION_COLUMNS,
            Tab::Agents => AGENT_COLUMNS,
            Tab::Frameworks => FRAMEWORK_COLUMNS,
            Tab::Tasks => TASK_COLUMNS,
        }
    }
}

/// A column: its title, the width it needs, and whether it sorts by number (largest first).
#[derive(Debug)]
pub struct Column {
    pub title: &'static str,
    pub width: u16,
    pub numeric: bool,
}

const fn text(title: &'static str, width: u16) -> Column {
    Column {
        title,
        width,
        numeric: false,
    }
}

const fn num(title: &'static str, width: u16) -> Column {
    Column {
        title,
        width,
        numeric: true,
    }
}

static HOST_COLUMNS: &[Column] = &[
    text("HOST", 18),
    num("CPU", 6),
    num("MEM", 6),
    num("MEM USED", 9),
    num("LOAD", 5),
    num("IN", 8),
    num("OUT", 8),
    text("IPS", 16),
    text("KERNEL", 12),
    num("UP", 5),
];
static CONTAINER_COLUMNS: &[Column] = &[
    text("NAME", 20),
    text("IMAGE", 18),
    text("STATE", 8),
    num("CPU", 6),
    num("MEM", 7),
    num("LIMIT", 7),
    text("HOST", 12),
    text("NAMESPACE", 10),
    text("RUNTIME", 10),
];
static PROCESS_COLUMNS: &[Column] = &[
    num("PID", 7),
    text("COMMAND", 28),
    text("USER", 8),
    num("CPU", 6),
    num("RSS", 7),
    num("FDS", 5),
    num("CONNS", 5),
    text("HOST", 12),
    text("CONTAINER", 12),
];
/// The width of the address columns (an IPv4 address with its port fits whole).
const ADDRESS_WIDTH: usize = 21;
static CONNECTION_COLUMNS: &[Column] = &[
    text("PROCESS", 16),
    text("", 1),
    text("PEER", 22),
    text("ADDRESS", ADDRESS_WIDTH as u16),
    text("STATE", 11),
    num("OUT", 8),
    num("IN", 8),
    num("SENT", 7),
    num("RECV", 7),
    num("RETR", 4),
    text("HOST", 12),
    text("LOCAL", ADDRESS_WIDTH as u16),
];
static AGENT_COLUMNS: &[Column] = &[
    text("HOSTNAME", 18),
    text("STATE", 9),
    num("CPUS", 11),
    num("MEM", 13),
    num("DISK", 13),
    num("OFFERED", 12),
    num("TASKS", 5),
    text("PORTS", 15),
    num("AGE", 5),
    text("ID", 20),
];
static FRAMEWORK_COLUMNS: &[Column] = &[
    text("NAME", 18),
    text("ROLE", 10),
    num("WEIGHT", 6),
    num("SHARE", 6),
    num("TASKS", 5),
    num("CPUS", 6),
    num("MEM", 7),
    text("STATE", 12),
    text("USER", 8),
    num("AGE", 5),
    text("ID", 20),
];
static TASK_COLUMNS: &[Column] = &[
    text("TASK", 18),
    text("STATE", 15),
    text("FRAMEWORK", 12),
    text("HOST", 12),
    num("CPUS", 5),
    num("MEM", 7),
    num("RSS", 7),
    num("AGE", 5),
    text("REASON", 24),
];

/// Health, shown as a colour and a glyph (so it reads in monochrome too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Failed,
    /// Ended (closed connection, exited process, finished task): shown dimmed.
    Gone,
}

impl Health {
    pub fn glyph(self) -> char {
        match self {
            Health::Healthy => '●',
            Health::Degraded => '▲',
            Health::Failed => '✖',
            Health::Gone => '·',
        }
    }
}

/// A row's subject.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Node(&'a NodeEntry),
    Connection(&'a ConnEntry),
    Agent(&'a Agent),
    Framework(&'a Framework),
    Task(&'a Task),
}

impl<'a> Item<'a> {
    pub fn key(&self) -> &'a str {
        match self {
            Item::Node(n) => n.id(),
            Item::Connection(c) => &c.connection().id,
            Item::Agent(a) => &a.id,
            Item::Framework(f) => &f.id,
            Item::Task(t) => &t.key,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Item::Node(n) => n.name().to_owned(),
            Item::Connection(c) => {
                let conn = c.connection();
                format!("{} → {}", conn.comm, c.conn.peer_name)
            }
            Item::Agent(a) => a.hostname.clone(),
            Item::Framework(f) => f.name.clone(),
            Item::Task(t) => t.name.clone(),
        }
    }

    pub fn health(&self) -> Health {
        match self {
            Item::Node(n) => node_health(n),
            Item::Connection(c) => match c.state() {
                pb::ConnectionState::Failed => Health::Failed,
                pb::ConnectionState::Closed => Health::Gone,
                _ if c.linger_until.is_some() => Health::Gone,
                _ if c.connection().retransmits > 0 => Health::Degraded,
                _ => Health::Healthy,
            },
            Item::Agent(a) => match a.state {
                AgentState::Active if a.deactivated => Health::Degraded,
                AgentState::Active => Health::Healthy,
                AgentState::Recovered => Health::Degraded,
                _ => Health::Failed,
            },
            Item::Framework(f) if !f.connected => Health::Degraded,
            Item::Framework(_) => Health::Healthy,
            Item::Task(t) => match t.state {
                TaskState::Running => Health::Healthy,
                TaskState::Finished | TaskState::Killed => Health::Gone,
                s if s.is_terminal() => Health::Failed,
                _ => Health::Degraded,
            },
        }
    }
}

fn node_health(n: &NodeEntry) -> Health {
    match &n.node.detail {
        Some(Detail::Host(h)) => {
            let mem = if h.memory_total_bytes > 0 {
                1.0 - h.memory_available_bytes as f64 / h.memory_total_bytes as f64
            } else {
                0.0
            };
            if h.cpu_percent > 90.0 || mem > 0.9 {
                Health::Degraded
            } else {
                Health::Healthy
            }
        }
        Some(Detail::Container(c)) => match c.state {
            ContainerState::Running | ContainerState::Unspecified => {
                let near_limit = c.memory_limit_bytes > 0
                    && c.memory_usage_bytes as f64 > 0.9 * c.memory_limit_bytes as f64;
                if near_limit {
                    Health::Degraded
                } else {
                    Health::Healthy
                }
            }
            ContainerState::Paused | ContainerState::Created | ContainerState::Restarting => {
                Health::Degraded
            }
            ContainerState::Exited | ContainerState::Removing | ContainerState::Dead => {
                Health::Failed
            }
        },
        Some(Detail::Process(p)) if p.exited => {
            if p.exit_code != 0 || p.exit_signal != 0 {
                Health::Failed
            } else {
                Health::Gone
            }
        }
        Some(Detail::Process(p)) if p.cpu_percent > 90.0 => Health::Degraded,
        _ => Health::Healthy,
    }
}

impl Filterable for Item<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Item::Node(n) => n.kind().word(),
            Item::Connection(_) => "connection",
            Item::Agent(_) => "agent",
            Item::Framework(_) => "framework",
            Item::Task(_) => "task",
        }
    }

    fn labels(&self) -> Vec<(&str, &str)> {
        fn pairs(m: &HashMap<String, String>) -> Vec<(&str, &str)> {
            m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
        }
        match self {
            Item::Node(n) => {
                let mut out = pairs(&n.node.labels);
                if let Some(c) = n.container() {
                    out.extend(c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                }
                out
            }
            Item::Agent(a) => pairs(&a.attributes),
            Item::Task(t) => pairs(&t.labels),
            Item::Connection(_) | Item::Framework(_) => Vec::new(),
        }
    }

    fn namespace(&self) -> &str {
        match self {
            Item::Node(n) => n.container().map_or("", |c| {
                if c.namespace.is_empty() {
                    c.labels
                        .get("io.kubernetes.pod.namespace")
                        .map_or("", String::as_str)
                } else {
                    c.namespace.as_str()
                }
            }),
            _ => "",
        }
    }

    fn hostname(&self) -> &str {
        match self {
            Item::Node(n) => &n.hostname,
            Item::Connection(c) => &c.conn.hostname,
            Item::Agent(a) => &a.hostname,
            Item::Framework(_) => "",
            Item::Task(t) => &t.hostname,
        }
    }

    fn state(&self) -> &str {
        match self {
            Item::Node(n) => n.container().map_or("", |c| container_state_word(c.state)),
            Item::Connection(c) => connection_state_word(c.state()),
            Item::Agent(a) => a.status_word(),
            Item::Framework(f) if f.connected => "connected",
            Item::Framework(_) => "disconnected",
            Item::Task(t) => t.state.mesos_name(),
        }
    }

    fn metric(&self, name: filter::Metric) -> Option<f64> {
        use filter::Metric as M;
        match (self, name) {
            (Item::Node(n), M::Cpu) => Some(n.cpu_percent()),
            (Item::Node(n), M::Memory) => Some(n.memory_bytes() as f64),
            (Item::Node(n), M::Connections) => n.process().map(|p| p.connections as f64),
            (Item::Node(n), M::In) => n.latest(NodeMetric::NetIn).map(f64::from),
            (Item::Node(n), M::Out) => n.latest(NodeMetric::NetOut).map(f64::from),
            (Item::Connection(c), M::In) => Some(c.received_per_second),
            (Item::Connection(c), M::Out) => Some(c.sent_per_second),
            (Item::Task(t), M::Memory) => Some(t.memory_bytes as f64),
            (Item::Agent(a), M::Connections) => Some(a.running_tasks as f64),
            _ => None,
        }
    }

    fn haystack(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{} {} ", self.name(), self.key());
        for (k, v) in self.labels() {
            let _ = write!(out, "{k}={v} ");
        }
        match self {
            Item::Node(n) => match &n.node.detail {
                Some(Detail::Host(h)) => {
                    for ip in &h.ips {
                        let _ = write!(out, "{ip} ");
                    }
                    let _ = write!(out, "{} ", h.os);
                }
                Some(Detail::Container(c)) => {
                    let _ = write!(out, "{} {} {} ", c.image, c.namespace, c.ports.join(" "));
                }
                Some(Detail::Process(p)) => {
                    let _ = write!(out, "{} {} {} ", p.pid, p.user, p.cmdline.join(" "));
                }
                None => {}
            },
            Item::Connection(c) => {
                let conn = c.connection();
                let _ = write!(out, "{} ", conn.local);
                if let Some(remote) = conn.remote {
                    let _ = write!(out, "{remote} ");
                }
                let _ = write!(out, "{} ", conn.pid);
            }
            Item::Agent(a) => out.push_str(&a.hostname),
            Item::Framework(f) => {
                let _ = write!(out, "{} {} ", f.roles.join(" "), f.user);
            }
            Item::Task(t) => {
                let _ = write!(
                    out,
                    "{} {} {} ",
                    t.state.mesos_name(),
                    t.hostname,
                    t.framework_id
                );
            }
        }
    }
}

/// Rows are narrowed to what a drill-down chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Containers, processes or connections of a host (by hostname).
    Host(String),
    /// Processes or connections of a container (by container id).
    Container(String),
    /// Connections of a process (by node id).
    Process(String),
    /// Tasks on an agent.
    Agent(String),
    /// Tasks of a framework.
    Framework(String),
}

impl Scope {
    pub(crate) fn admits(&self, item: &Item<'_>) -> bool {
        match (self, item) {
            (Scope::All, _) => true,
            (Scope::Host(h), i) => i.hostname() == h,
            (Scope::Container(id), Item::Node(n)) => {
                n.node
                    .parents
                    .iter()
                    .any(|p| p.strip_prefix("container:") == Some(id))
                    || n.process().is_some_and(|p| p.container_id == *id)
            }
            (Scope::Container(id), Item::Connection(c)) => c.connection().container_id == *id,
            (Scope::Process(id), Item::Connection(c)) => c.connection().process_id == *id,
            (Scope::Agent(id), Item::Task(t)) => t.agent_id == *id,
            (Scope::Framework(id), Item::Task(t)) => t.framework_id == *id,
            _ => false,
        }
    }
}

/// Every item of a tab in the model.
pub fn items<'a>(model: &'a Model, tab: Tab) -> Box<dyn Iterator<Item = Item<'a>> + 'a> {
    match tab.topology() {
        Some(TopoView::Connections) => Box::new(
            model
                .topology
                .view(TopoView::Connections)
                .connections
                .values()
                .map(Item::Connection),
        ),
        Some(view) => Box::new(
            model
                .topology
                .view(view)
                .nodes
                .values()
                .filter(|n| !n.is_pseudo())
                .map(Item::Node),
        ),
        None => match tab {
            Tab::Agents => Box::new(model.cluster.agents.values().map(Item::Agent)),
            Tab::Frameworks => Box::new(model.cluster.frameworks.values().map(Item::Framework)),
            _ => Box::new(model.cluster.tasks.values().map(Item::Task)),
        },
    }
}

/// One item of a tab by key.
pub fn item<'a>(model: &'a Model, tab: Tab, key: &str) -> Option<Item<'a>> {
    match tab.topology() {
        Some(TopoView::Connections) => model
            .topology
            .view(TopoView::Connections)
            .connections
            .get(key)
            .map(Item::Connection),
        Some(view) => model.topology.view(view).nodes.get(key).map(Item::Node),
        None => match tab {
            Tab::Agents => model.cluster.agents.get(key).map(Item::Agent),
            Tab::Frameworks => model.cluster.frameworks.get(key).map(Item::Framework),
            _ => model.cluster.tasks.get(key).map(Item::Task),
        },
    }
}

/// A numeric column's value for sorting.
pub(crate) fn number(item: &Item<'_>, tab: Tab, col: usize, model: &Model) -> f64 {
    let _ = model;
    match (item, tab, col) {
        (Item::Node(n), Tab::Hosts, _) => {
            let h = n.host();
            match col {
                1 => n.cpu_percent(),
                2 => h.map_or(0.0, |h| mem_fraction(h) * 100.0),
                3 => n.memory_bytes() as f64,
                4 => h.map_or(0.0, |h| h.load1),
                5 => n.latest(NodeMetric::NetIn).map_or(0.0, f64::from),
                6 => n.latest(NodeMetric::NetOut).map_or(0.0, f64::from),
                _ => h.map_or(0.0, |h| h.uptime_seconds as f64),
            }
        }
        (Item::Node(n), Tab::Containers, _) => match col {
            3 => n.cpu_percent(),
            4 => n.memory_bytes() as f64,
            _ => n.container().map_or(0.0, |c| c.memory_limit_bytes as f64),
        },
        (Item::Node(n), Tab::Processes, _) => {
            let p = n.process();
            match col {
                0 => p.map_or(0.0, |p| p.pid as f64),
                3 => n.cpu_percent(),
                4 => n.memory_bytes() as f64,
                5 => p.map_or(0.0, |p| p.open_fds as f64),
                _ => p.map_or(0.0, |p| p.connections as f64),
            }
        }
        (Item::Connection(c), _, _) => {
            let conn = c.connection();
            match col {
                5 => c.sent_per_second,
                6 => c.received_per_second,
                7 => conn.bytes_sent as f64,
                8 => conn.bytes_received as f64,
                _ => conn.retransmits as f64,
            }
        }
        (Item::Agent(a), _, _) => match col {
            2 => a.used.get("cpus").copied().unwrap_or(0.0),
            3 => a.used.get("mem").copied().unwrap_or(0.0),
            4 => a.used.get("disk").copied().unwrap_or(0.0),
            5 => a.offered.get("cpus").copied().unwrap_or(0.0),
            6 => a.running_tasks as f64,
            _ => -(a.registered_unix_ms as f64),
        },
        (Item::Framework(f), _, _) => match col {
            2 => f.weight,
            3 => f.dominant_share,
            4 => f.running_tasks as f64,
            5 => f.used.get("cpus").copied().unwrap_or(0.0),
            6 => f.used.get("mem").copied().unwrap_or(0.0),
            _ => -(f.registered_unix_ms as f64),
        },
        (Item::Task(t), _, _) => match col {
            4 => t.resources.get("cpus").copied().unwrap_or(0.0),
            5 => t.resources.get("mem").copied().unwrap_or(0.0),
            6 => t.memory_bytes as f64,
            _ => -(t.started_unix_ms as f64),
        },
        _ => 0.0,
    }
}

fn mem_fraction(h: &Host) -> f64 {
    if h.memory_total_bytes == 0 {
        0.0
    } else {
        1.0 - h.memory_available_bytes as f64 / h.memory_total_bytes as f64
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn age_since(unix_ms: i64, now_ms: i64) -> String {
    if unix_ms <= 0 {
        String::new()
    } else {
        format::age((now_ms - unix_ms) / 1000)
    }
}

/// used/total for a resource of an agent: `1.5/4`.
fn used_of(
    used: &HashMap<String, f64>,
    total: &HashMap<String, f64>,
    name: &str,
    mb: bool,
) -> String {
    let (u, t) = (
        used.get(name).copied().unwrap_or(0.0),
        total.get(name).copied().unwrap_or(0.0),
    );
    if mb {
        format!("{}/{}", format::megabytes(u), format::megabytes(t))
    } else {
        format!("{}/{}", format::amount(u), format::amount(t))
    }
}

/// The cells of a row, in column order.
pub fn cells(item: &Item<'_>, tab: Tab, model: &Model) -> Vec<String> {
    cells_at(item, tab, model, now_unix_ms())
}

/// The cells of a row at a given time (ages), for tests and snapshots.
pub fn cells_at(item: &Item<'_>, tab: Tab, model: &Model, now_ms: i64) -> Vec<String> {
    match item {
        Item::Node(n) => match tab {
            Tab::Hosts => {
                let h = n.host().cloned().unwrap_or_default();
                vec![
                    h.hostname.clone(),
                    format::percent(h.cpu_percent),
                    format::percent(mem_fraction(&h) * 100.0),
                    format::bytes(n.memory_bytes() as f64),
                    format!("{:.2}", h.load1),
                    format::rate(n.latest(NodeMetric::NetIn).map_or(0.0, f64::from)),
                    format::rate(n.latest(NodeMetric::NetOut).map_or(0.0, f64::from)),
                    h.ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    h.kernel.clone(),
                    format::age(h.uptime_seconds as i64),
                ]
            }
            Tab::Containers => {
                let c = n.container().cloned().unwrap_or_default();
                let limit = if c.memory_limit_bytes > 0 {
                    format::bytes(c.memory_limit_bytes as f64)
                } else {
                    "-".into()
                };
                vec![
                    n.name().to_owned(),
                    c.image.clone(),
                    container_state_word(c.state).to_owned(),
                    format::percent(c.cpu_percent),
                    format::bytes(c.memory_usage_bytes as f64),
                    limit,
                    n.hostname.clone(),
                    Filterable::namespace(item).to_owned(),
                    c.runtime.clone(),
                ]
            }
            _ => {
                let p = n.process().cloned().unwrap_or_default();
                let command = if p.cmdline.is_empty() {
                    format!("[{}]", p.comm)
                } else {
                    p.cmdline.join(" ")
                };
                let container = model
                    .topology
                    .node(&format!("container:{}", p.container_id))
                    .map_or_else(
                        || p.container_id.chars().take(12).collect(),
                        |c| c.name().to_owned(),
                    );
                vec![
                    p.pid.to_string(),
                    command,
                    p.user.clone(),
                    format::percent(p.cpu_percent),
                    format::bytes(p.rss_bytes as f64),
                    p.open_fds.to_string(),
                    p.connections.to_string(),
                    n.hostname.clone(),
                    container,
                ]
            }
        },
        Item::Connection(c) => {
            let conn = c.connection();
            let direction = match conn.direction {
                pb::Direction::Outbound => "→",
                pb::Direction::Inbound => "←",
                pb::Direction::Unspecified => " ",
            };
            let mut state = connection_state_word(c.state()).to_owned();
            if conn.aggregated > 1 {
                state = format!("{state}×{}", conn.aggregated);
            }
            // ADDRESS is the far end of a connection and the bound address of a listener, so a
            // listener's port shows where the 80-column screen has room for it.
            let listening = c.state() == pb::ConnectionState::Listen;
            let peer = if listening {
                "listening".to_owned()
            } else {
                c.conn.peer_name.clone()
            };
            let address = if listening {
                Some(conn.local)
            } else {
                conn.remote
            };
            let process = if conn.comm.is_empty() && conn.pid == 0 {
                "-".to_owned()
            } else {
                format!("{} {}", conn.comm, conn.pid)
            };
            vec![
                process,
                direction.into(),
                peer,
                address
                    .map(|a| format::address(a, ADDRESS_WIDTH))
                    .unwrap_or_default(),
                state,
                format::rate(c.sent_per_second),
                format::rate(c.received_per_second),
                format::bytes(conn.bytes_sent as f64),
                format::bytes(conn.bytes_received as f64),
                conn.retransmits.to_string(),
                c.conn.hostname.clone(),
                format::address(conn.local, ADDRESS_WIDTH),
            ]
        }
        Item::Agent(a) => {
            let offered: Vec<String> = ["cpus", "mem"]
                .iter()
                .filter_map(|r| {
                    a.offered.get(*r).filter(|v| **v > 0.0).map(|v| {
                        if *r == "mem" {
                            format::megabytes(*v)
                        } else {
                            format!("{} cpu", format::amount(*v))
                        }
                    })
                })
                .collect();
            vec![
                a.hostname.clone(),
                a.status_word().to_owned(),
                used_of(&a.used, &a.total, "cpus", false),
                used_of(&a.used, &a.total, "mem", true),
                used_of(&a.used, &a.total, "disk", true),
                offered.join(" "),
                a.running_tasks.to_string(),
                a.total_ranges.get("ports").cloned().unwrap_or_default(),
                age_since(a.registered_unix_ms, now_ms),
                a.id.clone(),
            ]
        }
        Item::Framework(f) => vec![
            f.name.clone(),
            f.roles.join(","),
            format::amount(f.weight),
            format!("{:.1}%", f.dominant_share * 100.0),
            f.running_tasks.to_string(),
            format::amount(f.used.get("cpus").copied().unwrap_or(0.0)),
            format::megabytes(f.used.get("mem").copied().unwrap_or(0.0)),
            if f.connected {
                "connected"
            } else {
                "disconnected"
            }
            .into(),
            f.user.clone(),
            age_since(f.registered_unix_ms, now_ms),
            f.id.clone(),
        ],
        Item::Task(t) => vec![
            t.name.clone(),
            t.state.mesos_name().trim_start_matches("TASK_").to_owned(),
            model.cluster.framework_name(&t.framework_id).to_owned(),
            t.hostname.clone(),
            format::amount(t.resources.get("cpus").copied().unwrap_or(0.0)),
            format::megabytes(t.resources.get("mem").copied().unwrap_or(0.0)),
            if t.memory_bytes > 0 {
                format::bytes(t.memory_bytes as f64)
            } else {
                String::new()
            },
            age_since(t.started_unix_ms, now_ms),
            if t.reason.is_empty() {
                t.message.clone()
            } else {
                t.reason.trim_start_matches("REASON_").to_owned()
            },
        ],
    }
}
