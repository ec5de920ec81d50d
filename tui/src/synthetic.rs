//! Synthetic clusters for tests, snapshots and the TUI benchmarks: deterministic topologies of
//! any size, shaped like a real one (hosts with containers with processes, connections between
//! processes on different hosts, an hour of series per node), and the collector's messages
//! that carry them.
use orca_proto::{cluster::v1::TaskState, operator::v1 as opb, topology::v1 as pb};

use crate::model::topology::{SERIES_CAPACITY, TopoView};

/// Each host holds this many containers, each container this many processes: 1 + 9 + 90 =
/// 100 nodes per host.
pub const CONTAINERS_PER_HOST: usize = 9;
pub const PROCESSES_PER_CONTAINER: usize = 10;
pub const NODES_PER_HOST: usize = 1 + CONTAINERS_PER_HOST * (1 + PROCESSES_PER_CONTAINER);

/// Series timestamps end here (a fixed time keeps snapshots stable).
pub const NOW_MS: i64 = 1_800_000_000_000;

fn series(points: usize, seed: usize, scale: f64) -> Vec<pb::Point> {
    (0..points)
        .map(|i| pb::Point {
            timestamp_unix_ms: NOW_MS - ((points - 1 - i) as i64) * 15_000,
            value: scale * (1.0 + ((i * 7 + seed * 13) % 17) as f64) / 17.0,
        })
        .collect()
}

fn host_name(h: usize) -> String {
    format!("node-{h:03}")
}

fn container_id(h: usize, c: usize) -> String {
    format!("{h:04x}{c:04x}c0ffee")
}

fn process_pid(c: usize, p: usize) -> u32 {
    1000 + (c * 100 + p) as u32
}

/// A topology of about `nodes` nodes (rounded up to whole hosts), as the full snapshots of the
/// four views, each with `points` points of series per node (the collector sends 1; the hour
/// comes from [`history`]).
pub fn snapshots(nodes: usize, points: usize) -> Vec<(TopoView, pb::TopologyDelta)> {
    let hosts = nodes.div_ceil(NODES_PER_HOST).max(1);
    let points = points.min(SERIES_CAPACITY);
    let mut views: Vec<(TopoView, pb::TopologyDelta)> = TopoView::ALL
        .iter()
        .map(|v| {
            (
                *v,
                pb::TopologyDelta {
                    seq: 1,
                    full: true,
                    timestamp_unix_ms: NOW_MS,
                    ..Default::default()
                },
            )
        })
        .collect();
    let with_series = |node: pb::Node, hostname: &str, seed: usize, mem: f64| pb::TopologyNode {
        node: Some(node),
        hostname: hostname.to_owned(),
        cpu_percent: series(points, seed, 80.0),
        memory_bytes: series(points, seed + 1, mem),
        net_tx_bytes_per_second: series(points, seed + 2, 2e6),
        net_rx_bytes_per_second: series(points, seed + 3, 1e6),
    };
    for h in 0..hosts {
        let name = host_name(h);
        let host = pb::Node {
            id: format!("host:{name}"),
            kind: pb::NodeKind::Host as i32,
            detail: Some(pb::node::Detail::Host(pb::Host {
                hostname: name.clone(),
                ips: vec![vec![10, (h / 250) as u8, (h % 250) as u8, 1]],
                os: "Debian GNU/Linux 13".into(),
                kernel: "6.12.0".into(),
                arch: "x86_64".into(),
                cores: 16,
                memory_total_bytes: 64 << 30,
                memory_available_bytes: (64 << 30) - ((h as u64 % 7 + 1) << 32),
                disk_total_bytes: 500 << 30,
                disk_free_bytes: 200 << 30,
                load1: (h % 9) as f64 * 0.5,
                load5: 1.0,
                load15: 1.0,
                uptime_seconds: 86_400 * 3 + h as u64 * 60,
                cpu_percent: (h * 37 % 100) as f64,
                ..Default::default()
            })),
            ..Default::default()
        };
        views[0]
            .1
            .upserted_nodes
            .push(with_series(host, &name, h, 8e9));
        for c in 0..CONTAINERS_PER_HOST {
            let cid = container_id(h, c);
            let app = ["web", "api", "db", "cache", "queue"][c % 5];
            let container = pb::Node {
                id: format!("container:{cid}"),
                kind: pb::NodeKind::Container as i32,
                parents: vec![format!("host:{name}")],
                detail: Some(pb::node::Detail::Container(pb::Container {
                    id: cid.clone(),
                    name: format!("{app}-{h}-{c}"),
                    image: format!("registry.local/{app}:1.{c}"),
                    runtime: "containerd".into(),
                    state: if (h + c) % 23 == 0 {
                        pb::ContainerState::Exited
                    } else {
                        pb::ContainerState::Running
                    } as i32,
                    labels: [("app".to_owned(), app.to_owned())].into(),
                    namespace: ["payments", "search", "ops"][c % 3].into(),
                    memory_limit_bytes: 1 << 30,
                    memory_usage_bytes: ((c as u64 + 1) * 97) << 20,
                    cpu_percent: ((h + c) * 13 % 100) as f64,
                    ..Default::default()
                })),
                ..Default::default()
            };
            views[1]
                .1
                .upserted_nodes
                .push(with_series(container, &name, h + c, 5e8));
            for p in 0..PROCESSES_PER_CONTAINER {
                let pid = process_pid(c, p);
                let ppid = if p == 0 { 1 } else { process_pid(c, 0) };
                let id = format!("process:{name}:{pid}");
                let process = pb::Node {
                    id: id.clone(),
                    kind: pb::NodeKind::Process as i32,
                    parents: vec![format!("container:{cid}"), format!("host:{name}")],
                    detail: Some(pb::node::Detail::Process(pb::Process {
                        pid,
                        ppid,
                        comm: format!("{app}{}", if p == 0 { "" } else { "-worker" }),
                        cmdline: vec![format!("/usr/bin/{app}"), format!("--worker={p}")],
                        user: "app".into(),
                        cpu_percent: ((h + c + p) * 7 % 100) as f64,
                        rss_bytes: ((p as u64 + 1) * 11) << 20,
                        open_fds: 10 + p as u32,
                        connections: 1,
                        container_id: cid.clone(),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                views[2]
                    .1
                    .upserted_nodes
                    .push(with_series(process, &name, h + c + p, 1e8));
                // Each process talks to the same process one host over.
                let peer_host = host_name((h + 1) % hosts);
                let conn = pb::Connection {
                    id: format!("{name}:{pid}-{peer_host}"),
                    local: Some(pb::Endpoint {
                        ip: vec![10, (h / 250) as u8, (h % 250) as u8, 1],
                        port: 40_000 + (c * 100 + p) as u32,
                    }),
                    remote: Some(pb::Endpoint {
                        ip: vec![
                            10,
                            (((h + 1) % hosts) / 250) as u8,
                            (((h + 1) % hosts) % 250) as u8,
                            1,
                        ],
                        port: 8080,
                    }),
                    direction: pb::Direction::Outbound as i32,
                    state: pb::ConnectionState::Established as i32,
                    pid,
                    process_id: id.clone(),
                    comm: app.to_owned(),
                    container_id: cid.clone(),
                    bytes_sent: ((h + c + p) as u64 + 1) * 4096,
                    bytes_received: ((h + c + p) as u64 + 1) * 1024,
                    ..Default::default()
                };
                views[3]
                    .1
                    .upserted_connections
                    .push(pb::TopologyConnection {
                        connection: Some(conn),
                        hostname: name.clone(),
                        peer_node: format!("process:{peer_host}:{pid}"),
                        peer_name: format!("{app} on {peer_host}"),
                    });
                let edge = |source: String, target: String| pb::TopologyEdge {
                    id: format!("{source}->{target}"),
                    source,
                    target,
                    connections: 1,
                    bytes_sent: 4096,
                    bytes_received: 1024,
                    cross_host: true,
                };
                views[2]
                    .1
                    .upserted_edges
                    .push(edge(id.clone(), format!("process:{peer_host}:{pid}")));
                if p == 0 {
                    let peer_container = container_id((h + 1) % hosts, c);
                    views[1].1.upserted_edges.push(edge(
                        format!("container:{cid}"),
                        format!("container:{peer_container}"),
                    ));
                }
            }
        }
        if hosts > 1 {
            views[0].1.upserted_edges.push(pb::TopologyEdge {
                id: format!("host:{name}->host:{}", host_name((h + 1) % hosts)),
                source: format!("host:{name}"),
                target: format!("host:{}", host_name((h + 1) % hosts)),
                connections: 90,
                bytes_sent: 90 * 4096,
                bytes_received: 90 * 1024,
                cross_host: true,
            });
        }
    }
    views
}

/// A node's whole hour, as `NodeSeries` answers (only the id is needed to apply it).
pub fn history(node_id: &str, points: usize) -> pb::TopologyNode {
    let seed = node_id.bytes().map(usize::from).sum::<usize>();
    pb::TopologyNode {
        node: Some(pb::Node {
            id: node_id.to_owned(),
            ..Default::default()
        }),
        cpu_percent: series(points, seed, 80.0),
        memory_bytes: series(points, seed + 1, 5e8),
        net_tx_bytes_per_second: series(points, seed + 2, 2e6),
        net_rx_bytes_per_second: series(points, seed + 3, 1e6),
        ..Default::default()
    }
}

/// A delta that moves one process's CPU (what the delta-to-screen benchmark sends).
pub fn process_update(host: usize, seq: u64, cpu: f64) -> pb::TopologyDelta {
    let name = host_name(host);
    let pid = process_pid(0, 0);
    pb::TopologyDelta {
        seq,
        full: false,
        timestamp_unix_ms: NOW_MS + seq as i64,
        upserted_nodes: vec![pb::TopologyNode {
            node: Some(pb::Node {
                id: format!("process:{name}:{pid}"),
                kind: pb::NodeKind::Process as i32,
                parents: vec![
                    format!("container:{}", container_id(host, 0)),
                    format!("host:{name}"),
                ],
                detail: Some(pb::node::Detail::Process(pb::Process {
                    pid,
                    ppid: 1,
                    comm: "web".into(),
                    cmdline: vec!["/usr/bin/web".into(), "--worker=0".into()],
                    user: "app".into(),
                    cpu_percent: cpu,
                    container_id: container_id(host, 0),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            hostname: name,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A cluster of `agents` agents, `frameworks` frameworks and `tasks` tasks spread over them.
pub fn cluster(agents: usize, frameworks: usize, tasks: usize) -> opb::ClusterDelta {
    let mut delta = opb::ClusterDelta {
        full: true,
        master_id: "master-1".into(),
        ..Default::default()
    };
    let scalars = |cpus: f64, mem: f64| -> std::collections::HashMap<String, f64> {
        [("cpus".to_owned(), cpus), ("mem".to_owned(), mem)].into()
    };
    for a in 0..agents {
        delta.upserted_agents.push(opb::Agent {
            id: format!("agent-{a:03}"),
            hostname: host_name(a),
            state: if a % 17 == 16 {
                opb::AgentState::Unreachable
            } else {
                opb::AgentState::Active
            } as i32,
            total: [
                ("cpus".to_owned(), 16.0),
                ("mem".to_owned(), 65536.0),
                ("disk".to_owned(), 512000.0),
            ]
            .into(),
            used: scalars((a % 8) as f64, (a % 8) as f64 * 2048.0),
            offered: scalars(2.0, 4096.0),
            total_ranges: [("ports".to_owned(), "[31000-32000]".to_owned())].into(),
            running_tasks: (tasks / agents.max(1)) as u32,
            ..Default::default()
        });
    }
    for f in 0..frameworks {
        delta.upserted_frameworks.push(opb::Framework {
            id: format!("fw-{f}"),
            name: ["marathon", "spark", "cron", "ci"][f % 4].into(),
            roles: vec![["prod", "batch", "ops", "ci"][f % 4].into()],
            weight: (f % 3 + 1) as f64,
            dominant_share: 0.1 * (f % 5) as f64,
            active: true,
            connected: f % 5 != 4,
            user: "root".into(),
            running_tasks: (tasks / frameworks.max(1)) as u32,
            used: scalars(4.0, 8192.0),
            ..Default::default()
        });
    }
    for t in 0..tasks {
        let framework = format!("fw-{}", t % frameworks.max(1));
        let state = match t % 11 {
            9 => TaskState::Failed,
            10 => TaskState::Finished,
            3 => TaskState::Staging,
            _ => TaskState::Running,
        };
        delta.upserted_tasks.push(opb::Task {
            key: format!("{framework}/task-{t}"),
            id: format!("task-{t}"),
            name: format!("job-{t}"),
            framework_id: framework,
            agent_id: format!("agent-{:03}", t % agents.max(1)),
            hostname: host_name(t % agents.max(1)),
            state: state as i32,
            role: "prod".into(),
            resources: scalars(0.5, 256.0),
            reason: if state == TaskState::Failed {
                "REASON_CONTAINER_LIMITATION_MEMORY".into()
            } else {
                String::new()
            },
            memory_bytes: if state == TaskState::Running {
                100 << 20
            } else {
                0
            },
            ..Default::default()
        });
    }
    delta
}
