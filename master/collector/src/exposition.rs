//! The topology as Prometheus series: per host, per container, per edge between service
//! groups and (opt-in) per process for the busiest processes of each host.
//!
//! Names follow Prometheus's conventions (base units, `_total` counters). Cardinality is
//! bounded: hosts by agents, containers by [`ExpositionConfig::max_containers`] and the labels
//! chosen, edges by the traffic counters' own cap, processes by
//! [`ExpositionConfig::top_processes`] per host; series a cap leaves out are counted in
//! `orca_topology_series_dropped`.
//!
//! The values are copied out of the store under its lock ([`TopologySamples::collect`]) and
//! written after it is released, so a scrape does not hold up reports.
use std::{fmt, str::FromStr};

use orca_proto::topology::v1 as pb;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{
    store::{AgentState, Store},
    traffic::{EdgeCounters, EdgeKey, NetCounters, container_group},
};

/// A label a container's series may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerLabel {
    /// The agent's hostname.
    Host,
    /// The runtime's name for the container.
    Name,
    Image,
    /// docker, containerd, cri.
    Runtime,
    /// The container id (unbounded over time: every new container is a new series).
    Id,
    /// The Compose service, or Kubernetes `namespace/container` (what traffic edges name).
    Service,
    /// Kubernetes namespace, pod and container names, when the runtime's labels carry them.
    Namespace,
    Pod,
    Container,
}

impl ContainerLabel {
    pub const ALL: [ContainerLabel; 9] = [
        Self::Host,
        Self::Name,
        Self::Image,
        Self::Runtime,
        Self::Id,
        Self::Service,
        Self::Namespace,
        Self::Pod,
        Self::Container,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Name => "name",
            Self::Image => "image",
            Self::Runtime => "runtime",
            Self::Id => "id",
            Self::Service => "service",
            Self::Namespace => "namespace",
            Self::Pod => "pod",
            Self::Container => "container",
        }
    }

    /// The label's value for `c` on `host`; `None` when it has none (Kubernetes labels on a
    /// container not run by Kubernetes).
    fn value(self, host: &str, c: &pb::Container) -> Option<String> {
        let kube = |key: &str| c.labels.get(key).filter(|v| !v.is_empty()).cloned();
        match self {
            Self::Host => Some(host.to_string()),
            Self::Name => Some(c.name.clone()),
            Self::Image => Some(c.image.clone()),
            Self::Runtime => Some(c.runtime.clone()),
            Self::Id => Some(c.id.clone()),
            Self::Service => Some(container_group(c)),
            Self::Namespace => kube("io.kubernetes.pod.namespace"),
            Self::Pod => kube("io.kubernetes.pod.name"),
            Self::Container => kube("io.kubernetes.container.name"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown container label {0:?}: choose from host, name, image, runtime, id, service, \
     namespace, pod, container"
)]
pub struct UnknownLabel(pub String);

impl FromStr for ContainerLabel {
    type Err = UnknownLabel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

/// Which series the topology exposition carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpositionConfig {
    /// Labels of container series (in this order).
    pub container_labels: Vec<ContainerLabel>,
    /// Containers exported at most; the rest are counted as dropped.
    pub max_containers: usize,
    /// Processes exported per host, the busiest by CPU first; 0 exports none.
    pub top_processes: usize,
}

impl Default for ExpositionConfig {
    fn default() -> Self {
        Self {
            container_labels: vec![
                ContainerLabel::Host,
                ContainerLabel::Name,
                ContainerLabel::Image,
                ContainerLabel::Namespace,
                ContainerLabel::Pod,
                ContainerLabel::Container,
            ],
            max_containers: 20_000,
            top_processes: 0,
        }
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

#[derive(Debug)]
struct HostRow {
    labels: Labels,
    host: pb::Host,
    report_unix_ms: i64,
}

#[derive(Debug)]
struct ContainerRow {
    labels: Labels,
    cpu_seconds: f64,
    memory_bytes: u64,
    memory_limit_bytes: u64,
    cpu_limit_cores: f64,
    net: NetCounters,
    state: &'static str,
    restarts: u32,
}

#[derive(Debug)]
struct ProcessRow {
    labels: Labels,
    cpu_seconds: f64,
    rss_bytes: u64,
    open_fds: u32,
}

/// The topology's series at one instant, copied out of the store.
#[derive(Debug, Default)]
pub struct TopologySamples {
    hosts: Vec<HostRow>,
    containers: Vec<ContainerRow>,
    processes: Vec<ProcessRow>,
    edges: Vec<(EdgeKey, EdgeCounters)>,
    /// (family, reason, series left out)
    dropped: Vec<(&'static str, &'static str, u64)>,
    edge_updates_dropped: u64,
}

fn container_state(state: i32) -> &'static str {
    match pb::ContainerState::try_from(state).unwrap_or(pb::ContainerState::Unspecified) {
        pb::ContainerState::Unspecified => "unknown",
        pb::ContainerState::Created => "created",
        pb::ContainerState::Running => "running",
        pb::ContainerState::Paused => "paused",
        pb::ContainerState::Restarting => "restarting",
        pb::ContainerState::Exited => "exited",
        pb::ContainerState::Removing => "removing",
        pb::ContainerState::Dead => "dead",
    }
}

impl TopologySamples {
    /// Copies what `config` asks for out of `store`.
    pub fn collect(store: &Store, config: &ExpositionConfig) -> Self {
        let mut out = Self::default();
        let mut containers = Vec::new();
        for agent in store.agents.values() {
            for node in agent.nodes.values() {
                match &node.detail {
                    Some(pb::node::Detail::Host(h)) => out.hosts.push(HostRow {
                        labels: vec![("host", agent.hostname.clone())],
                        host: h.clone(),
                        report_unix_ms: agent.last_report_unix_ms,
                    }),
                    Some(pb::node::Detail::Container(c)) => {
                        containers.push(container_row(store, agent, c, config))
                    }
                    _ => {}
                }
            }
            if config.top_processes > 0 {
                out.processes
                    .extend(top_processes(agent, config.top_processes));
            }
        }
        containers.sort_by(|a, b| a.labels.cmp(&b.labels));
        let before = containers.len();
        containers.dedup_by(|a, b| a.labels == b.labels);
        let duplicates = before - containers.len();
        let capped = containers.len().saturating_sub(config.max_containers);
        containers.truncate(config.max_containers);
        out.containers = containers;
        out.dropped = vec![
            ("container", "cap", capped as u64),
            ("container", "duplicate_labels", duplicates as u64),
        ];
        out.edges = store
            .traffic
            .edges
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.edges.sort_by(|a, b| a.0.cmp(&b.0));
        out.edge_updates_dropped = store.traffic.dropped_updates;
        out
    }

    /// Series written (one per label set and metric), for benchmarks and tests.
    pub fn series(&self) -> usize {
        self.hosts.len() * 11
            + self.containers.len() * 8
            + self.processes.len() * 3
            + self.edges.len() * 4
    }

    /// The text exposition (OpenMetrics, ending in `# EOF`).
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

fn container_row(
    store: &Store,
    agent: &AgentState,
    c: &pb::Container,
    config: &ExpositionConfig,
) -> ContainerRow {
    ContainerRow {
        labels: config
            .container_labels
            .iter()
            .filter_map(|l| Some((l.name(), l.value(&agent.hostname, c)?)))
            .collect(),
        cpu_seconds: c.cpu_seconds_total,
        memory_bytes: c.memory_usage_bytes,
        memory_limit_bytes: c.memory_limit_bytes,
        cpu_limit_cores: c.cpu_limit_cores,
        net: store
            .traffic
            .containers
            .get(&c.id)
            .copied()
            .unwrap_or_default(),
        state: container_state(c.state),
        restarts: c.restart_count,
    }
}

/// The `n` processes of `agent` using the most CPU (alive ones only).
fn top_processes(agent: &AgentState, n: usize) -> Vec<ProcessRow> {
    let mut processes: Vec<&pb::Process> = agent
        .nodes
        .values()
        .filter_map(|node| match &node.detail {
            Some(pb::node::Detail::Process(p)) if !p.exited => Some(p),
            _ => None,
        })
        .collect();
    processes.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(b.cpu_seconds_total.total_cmp(&a.cpu_seconds_total))
            .then(a.pid.cmp(&b.pid))
    });
    processes.truncate(n);
    processes
        .into_iter()
        .map(|p| {
            let container = agent
                .container(&p.container_id)
                .map(container_group)
                .unwrap_or_default();
            ProcessRow {
                labels: vec![
                    ("host", agent.hostname.clone()),
                    ("pid", p.pid.to_string()),
                    ("comm", p.comm.clone()),
                    ("service", container),
                ],
                cpu_seconds: p.cpu_seconds_total,
                rss_bytes: p.rss_bytes,
                open_fds: p.open_fds,
            }
        })
        .collect()
}

/// Writes one metric family (nothing when it has no series).
fn family<'r>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (&'r Labels, Value)>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let family = metric.encode_family(labels)?;
        match (kind, value) {
            (MetricType::Counter, Value::Int(v)) => ConstCounter::new(v).encode(family)?,
            (MetricType::Counter, Value::Float(v)) => ConstCounter::new(v).encode(family)?,
            (_, Value::Int(v)) => ConstGauge::new(v as i64).encode(family)?,
            (_, Value::Float(v)) => ConstGauge::new(v).encode(family)?,
        }
    }
    Ok(())
}

impl Collector for TopologySamples {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        use Value::{Float, Int};
        let hosts = &self.hosts;
        let host = |f: fn(&pb::Host) -> Value| hosts.iter().map(move |r| (&r.labels, f(&r.host)));
        family(
            &mut e,
            "orca_host_cpu_seconds",
            "CPU time the host's cores spent busy since boot",
            Counter,
            host(|h| Float(h.cpu_seconds_total)),
        )?;
        family(
            &mut e,
            "orca_host_cpu_cores",
            "CPU cores of the host",
            Gauge,
            host(|h| Int(h.cores as u64)),
        )?;
        family(
            &mut e,
            "orca_host_memory_total_bytes",
            "Memory of the host",
            Gauge,
            host(|h| Int(h.memory_total_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_memory_available_bytes",
            "Memory available for new work without swapping (MemAvailable)",
            Gauge,
            host(|h| Int(h.memory_available_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_load1",
            "1-minute load average",
            Gauge,
            host(|h| Float(h.load1)),
        )?;
        family(
            &mut e,
            "orca_host_load5",
            "5-minute load average",
            Gauge,
            host(|h| Float(h.load5)),
        )?;
        family(
            &mut e,
            "orca_host_load15",
            "15-minute load average",
            Gauge,
            host(|h| Float(h.load15)),
        )?;
        family(
            &mut e,
            "orca_host_network_receive_bytes",
            "Bytes received on the host's interfaces other than loopback",
            Counter,
            host(|h| Int(h.net_rx_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_network_transmit_bytes",
            "Bytes sent on the host's interfaces other than loopback",
            Counter,
            host(|h| Int(h.net_tx_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_filesystem_size_bytes",
            "Size of the host's root filesystem",
            Gauge,
            host(|h| Int(h.disk_total_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_filesystem_free_bytes",
            "Free space of the host's root filesystem",
            Gauge,
            host(|h| Int(h.disk_free_bytes)),
        )?;
        family(
            &mut e,
            "orca_host_last_report_timestamp_seconds",
            "When the host's agent took its last report (Unix time)",
            Gauge,
            hosts
                .iter()
                .map(|r| (&r.labels, Float(r.report_unix_ms as f64 / 1000.0))),
        )?;

        let containers = &self.containers;
        let container =
            |f: fn(&ContainerRow) -> Value| containers.iter().map(move |r| (&r.labels, f(r)));
        family(
            &mut e,
            "orca_container_cpu_seconds",
            "CPU time of the container's cgroup",
            Counter,
            container(|r| Float(r.cpu_seconds)),
        )?;
        family(
            &mut e,
            "orca_container_memory_usage_bytes",
            "Memory the container's cgroup uses (page cache included, as the cgroup counts it)",
            Gauge,
            container(|r| Int(r.memory_bytes)),
        )?;
        family(
            &mut e,
            "orca_container_memory_limit_bytes",
            "The container's memory limit (containers without one have no series)",
            Gauge,
            containers
                .iter()
                .filter(|r| r.memory_limit_bytes > 0)
                .map(|r| (&r.labels, Int(r.memory_limit_bytes))),
        )?;
        family(
            &mut e,
            "orca_container_cpu_limit_cores",
            "The container's CPU limit in cores (containers without one have no series)",
            Gauge,
            containers
                .iter()
                .filter(|r| r.cpu_limit_cores > 0.0)
                .map(|r| (&r.labels, Float(r.cpu_limit_cores))),
        )?;
        family(
            &mut e,
            "orca_container_network_receive_bytes",
            "TCP bytes the container's processes received",
            Counter,
            container(|r| Int(r.net.receive_bytes)),
        )?;
        family(
            &mut e,
            "orca_container_network_transmit_bytes",
            "TCP bytes the container's processes sent",
            Counter,
            container(|r| Int(r.net.transmit_bytes)),
        )?;
        family(
            &mut e,
            "orca_container_restarts",
            "Times the runtime restarted the container",
            Counter,
            container(|r| Int(r.restarts as u64)),
        )?;
        let states: Vec<(Labels, Value)> = containers
            .iter()
            .map(|r| {
                let mut labels = r.labels.clone();
                labels.push(("state", r.state.to_string()));
                (labels, Int(1))
            })
            .collect();
        family(
            &mut e,
            "orca_container_state",
            "1 for the state the container's runtime reports",
            Gauge,
            states.iter().map(|(l, v)| (l, *v)),
        )?;

        let processes = &self.processes;
        let process =
            |f: fn(&ProcessRow) -> Value| processes.iter().map(move |r| (&r.labels, f(r)));
        family(
            &mut e,
            "orca_process_cpu_seconds",
            "User and system CPU time of one of the host's busiest processes",
            Counter,
            process(|r| Float(r.cpu_seconds)),
        )?;
        family(
            &mut e,
            "orca_process_resident_memory_bytes",
            "Resident memory of one of the host's busiest processes",
            Gauge,
            process(|r| Int(r.rss_bytes)),
        )?;
        family(
            &mut e,
            "orca_process_open_fds",
            "Open file descriptors of one of the host's busiest processes",
            Gauge,
            process(|r| Int(r.open_fds as u64)),
        )?;

        let edges: Vec<(Labels, &EdgeCounters)> = self
            .edges
            .iter()
            .map(|(k, v)| {
                (
                    vec![
                        ("source", k.source.clone()),
                        ("destination", k.destination.clone()),
                    ],
                    v,
                )
            })
            .collect();
        let edge = |f: fn(&EdgeCounters) -> u64| edges.iter().map(move |(l, c)| (l, Int(f(c))));
        family(
            &mut e,
            "orca_edge_transmit_bytes",
            "TCP bytes the source group sent to the destination group",
            Counter,
            edge(|c| c.transmit_bytes),
        )?;
        family(
            &mut e,
            "orca_edge_receive_bytes",
            "TCP bytes the source group received from the destination group",
            Counter,
            edge(|c| c.receive_bytes),
        )?;
        family(
            &mut e,
            "orca_edge_connections_opened",
            "TCP connections the source group opened to the destination group",
            Counter,
            edge(|c| c.opened),
        )?;
        family(
            &mut e,
            "orca_edge_connections_failed",
            "TCP connection attempts from the source group to the destination group that failed",
            Counter,
            edge(|c| c.failed),
        )?;

        let dropped: Vec<(Labels, Value)> = self
            .dropped
            .iter()
            .map(|(family, reason, n)| {
                (
                    vec![
                        ("family", family.to_string()),
                        ("reason", reason.to_string()),
                    ],
                    Int(*n),
                )
            })
            .collect();
        family(
            &mut e,
            "orca_topology_series_dropped",
            "Series left out of this exposition by a cap (cap) or because their labels, as \
             chosen, were not unique (duplicate_labels)",
            Gauge,
            dropped.iter().map(|(l, v)| (l, *v)),
        )?;
        let no_labels: Labels = Vec::new();
        family(
            &mut e,
            "orca_topology_edge_updates_dropped",
            "Traffic updates not counted because the edge cap was reached",
            Counter,
            [(&no_labels, Int(self.edge_updates_dropped))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{series::SeriesConfig, store::parse};

    fn container(id: &str, name: &str, labels: &[(&str, &str)]) -> pb::Node {
        pb::Node {
            id: format!("container:{id}"),
            kind: pb::NodeKind::Container as i32,
            detail: Some(pb::node::Detail::Container(pb::Container {
                id: id.into(),
                name: name.into(),
                image: "nginx:1".into(),
                state: pb::ContainerState::Running as i32,
                memory_usage_bytes: 4096,
                memory_limit_bytes: 1 << 20,
                cpu_seconds_total: 2.5,
                restart_count: 3,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn store_with(nodes: Vec<pb::Node>) -> Store {
        let mut store = Store::new(SeriesConfig::default());
        let report = pb::Report {
            agent_id: "a".into(),
            hostname: "h".into(),
            seq: 1,
            full: true,
            nodes,
            ..Default::default()
        };
        store.apply(parse(report).unwrap());
        store
    }

    #[test]
    fn container_series_carry_the_chosen_labels_and_kubernetes_names() {
        let store = store_with(vec![
            container("c1", "web", &[]),
            container(
                "c2",
                "k8s_app_pod-1",
                &[
                    ("io.kubernetes.pod.namespace", "shop"),
                    ("io.kubernetes.pod.name", "pod-1"),
                    ("io.kubernetes.container.name", "app"),
                ],
            ),
        ]);
        let text = TopologySamples::collect(&store, &ExpositionConfig::default()).encode();
        assert!(
            text.contains(
                "orca_container_memory_usage_bytes{host=\"h\",name=\"web\",image=\"nginx:1\"} 4096"
            ),
            "{text}"
        );
        assert!(text.contains(
            "orca_container_cpu_seconds_total{host=\"h\",name=\"k8s_app_pod-1\",image=\"nginx:1\",\
             namespace=\"shop\",pod=\"pod-1\",container=\"app\"} 2.5"
        ));
        assert!(text.contains(
            "orca_container_state{host=\"h\",name=\"web\",image=\"nginx:1\",state=\"running\"} 1"
        ));
        assert!(text.contains(
            "orca_container_restarts_total{host=\"h\",name=\"web\",image=\"nginx:1\"} 3"
        ));
        assert!(text.contains("# TYPE orca_container_cpu_seconds counter"));
    }

    #[test]
    fn caps_and_label_collisions_are_counted() {
        let store = store_with(vec![
            container("c1", "web", &[]),
            container("c2", "web", &[]),
            container("c3", "db", &[]),
        ]);
        // Only the host label: all three collide into one series.
        let config = ExpositionConfig {
            container_labels: vec![ContainerLabel::Host],
            ..Default::default()
        };
        let samples = TopologySamples::collect(&store, &config);
        assert_eq!(samples.containers.len(), 1);
        assert!(
            samples
                .dropped
                .contains(&("container", "duplicate_labels", 2))
        );
        // Names: two distinct label sets, and a cap of one.
        let config = ExpositionConfig {
            container_labels: vec![ContainerLabel::Name],
            max_containers: 1,
            ..Default::default()
        };
        let samples = TopologySamples::collect(&store, &config);
        assert_eq!(samples.containers.len(), 1);
        assert!(samples.dropped.contains(&("container", "cap", 1)));
        assert!(
            samples
                .dropped
                .contains(&("container", "duplicate_labels", 1))
        );
        let text = samples.encode();
        assert!(
            text.contains("orca_topology_series_dropped{family=\"container\",reason=\"cap\"} 1")
        );
    }

    #[test]
    fn label_names_parse_and_unknown_ones_are_named() {
        assert_eq!("pod".parse(), Ok(ContainerLabel::Pod));
        let err = "rack".parse::<ContainerLabel>().unwrap_err();
        assert!(err.to_string().contains("\"rack\""));
        assert!(err.to_string().contains("choose from host, name"));
    }
}
