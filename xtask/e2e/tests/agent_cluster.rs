//! The agent streaming to a real collector: catching up after the collector was down, and two
//! agents in two network namespaces (two hosts on one kernel) joined by a cross-host edge.
//! Runs as root (network namespaces, eBPF).
mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd as _,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use orca_agent::{engine::EngineOptions, probe::ProbeChoice, runner};
use orca_collector::{Collector, CollectorConfig};
use orca_master::server::Master;
use orca_proto::topology::v1 as pb;
use support::agent::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A collector served on its own thread (optionally inside a network namespace).
struct CollectorThread {
    collector: Collector,
    grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CollectorThread {
    fn start(grpc: SocketAddr, netns: Option<String>) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = netns {
                let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = CollectorConfig {
                    publish_every: Duration::from_millis(50),
                    ..Default::default()
                };
                let master = Master::bind(
                    config,
                    Default::default(),
                    grpc,
                    "127.0.0.1:0".parse().unwrap(),
                )
                .await
                .unwrap();
                ready_tx
                    .send((master.collector.clone(), master.grpc_addr()))
                    .unwrap();
                master
                    .serve(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (collector, grpc) = ready_rx.recv().unwrap();
        Self {
            collector,
            grpc,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for CollectorThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn agent_keeps_collecting_while_the_collector_is_down_and_catches_up() {
    require_root();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(runner::run(
            runner::RunConfig {
                engine: EngineOptions {
                    probe: ProbeChoice::Ebpf,
                    ..Default::default()
                },
                master: Some(grpc.to_string()),
                interval: Duration::from_millis(200),
                metrics_addr: Some(metrics),
                agent_id: Some("catch-up".into()),
                ..Default::default()
            },
            async move {
                let _ = agent_stopped.await;
            },
        ))
        .unwrap();
    });

    // Collector down: reports pile up in the agent's bounded buffer.
    let buffered = wait_for(
        Duration::from_secs(10),
        "reports buffered by the agent",
        || {
            let text = http_get(metrics, "/metrics")?;
            let n = metric(&text, "orca_agent_reports_buffered")?;
            (n >= 5.0).then_some(n)
        },
    );
    assert!(buffered >= 5.0);

    // Collector up on the same address: the agent reconnects and delivers the backlog.
    let collector = CollectorThread::start(grpc, None);
    wait_for(Duration::from_secs(10), "the backlog applied", || {
        let text = collector.collector.metrics().encode();
        let applied = metric(&text, "orca_collector_reports_total{result=\"applied\"}")?;
        (applied >= buffered).then_some(())
    });
    let agents = collector.collector.agents();
    let agent_state = agents.iter().find(|a| a["agentId"] == "catch-up").unwrap();
    assert_eq!(agent_state["synced"], true);
    assert!(agent_state["appliedSeq"].as_u64().unwrap() >= buffered as u64);
    let text = wait_for(Duration::from_secs(5), "the agent's buffer drained", || {
        let text = http_get(metrics, "/metrics")?;
        (metric(&text, "orca_agent_reports_buffered")? <= 1.0).then_some(text)
    });
    assert_eq!(metric(&text, "orca_agent_reports_dropped_total"), Some(0.0));
    assert_eq!(metric(&text, "orca_agent_collector_connected"), Some(1.0));
    assert_eq!(metric(&text, "orca_agent_events_lost_total"), Some(0.0));
    let _ = stop_agent.send(());
    agent.join().unwrap();
}

/// Two network namespaces joined by a veth pair: two "hosts" on one kernel.
struct TwoHosts {
    a: String,
    b: String,
    ip_a: String,
    ip_b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TwoHosts {
    fn create() -> Self {
        let id = std::process::id() % 10_000;
        let (a, b) = (format!("orca-test-a{id}"), format!("orca-test-b{id}"));
        let (va, vb) = (format!("orca{id}a"), format!("orca{id}b"));
        let net = 1 + (id % 250);
        let hosts = Self {
            a: a.clone(),
            b: b.clone(),
            ip_a: format!("10.203.{net}.1"),
            ip_b: format!("10.203.{net}.2"),
        };
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &a]);
        ip(&["link", "set", &vb, "netns", &b]);
        ip(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("{}/24", hosts.ip_a),
            "dev",
            &va,
        ]);
        ip(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("{}/24", hosts.ip_b),
            "dev",
            &vb,
        ]);
        for (ns, dev) in [(&a, &va), (&b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn agent_in(ns: &str, master: SocketAddr, name: &str) -> ChildGuard {
    ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(support::bin("orca-agent"))
            .arg("run")
            .args([
                "--master",
                &master.to_string(),
                "--own-netns-only",
                "--probe",
                "ebpf",
            ])
            .args([
                "--hostname",
                name,
                "--agent-id",
                name,
                "--interval",
                "200ms",
                // `ip netns exec` mounts a fresh /sys without the cgroup hierarchies.
                "--no-tasks",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn two_agents_in_two_network_namespaces_share_a_cross_host_edge() {
    require_root();
    let hosts = TwoHosts::create();
    let collector = CollectorThread::start(
        format!("{}:0", hosts.ip_a).parse().unwrap(),
        Some(hosts.a.clone()),
    );
    let _agent_a = agent_in(&hosts.a, collector.grpc, "host-a");
    let _agent_b = agent_in(&hosts.b, collector.grpc, "host-b");

    // A server on host b (a thread of this process inside namespace b).
    let (addr_tx, addr_rx) = mpsc::channel();
    let ns_b = hosts.b.clone();
    let ip_b = hosts.ip_b.clone();
    let server = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{ns_b}")).unwrap();
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(format!("{ip_b}:0")).unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        // Hold the connection until the client goes away.
        let _ = conn.read(&mut buf);
    });
    let server_addr = addr_rx.recv().unwrap();

    // Wait until both agents reported once, so the connection is seen live by both.
    wait_for(Duration::from_secs(15), "both agents reporting", || {
        (collector.collector.agents().len() == 2).then_some(())
    });
    let client = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &hosts.a, "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/{}/{}; printf hello >&3; read -r -t 60 x <&3",
                server_addr.ip(),
                server_addr.port()
            ))
            .spawn()
            .unwrap(),
    );
    let client_pid = client.0.id();

    // Byte counters of open connections are refreshed every few snapshots.
    let hosts_view = wait_for(
        Duration::from_secs(10),
        "the cross-host edge with its bytes",
        || {
            let g = collector.collector.view(pb::View::Hosts);
            g.edges
                .get("host:host-a->host:host-b")
                .is_some_and(|e| e.cross_host && e.bytes_sent == 5)
                .then_some(g)
        },
    );
    let edge = &hosts_view.edges["host:host-a->host:host-b"];
    let processes = collector.collector.view(pb::View::Processes);
    let id = format!(
        "process:host-a:{client_pid}->process:host-b:{}",
        std::process::id()
    );
    let proc_edge = processes.edges.get(&id).unwrap_or_else(|| {
        panic!(
            "process edge {id} missing; edges: {:?}",
            processes.edges.keys().collect::<Vec<_>>()
        )
    });
    assert!(proc_edge.cross_host);
    // Both sides of the connection were reported (a outbound, b inbound) and joined into one.
    assert_eq!(edge.connections, 1, "both ends joined, not double counted");
    assert_eq!(proc_edge.connections, 1);
    // Agent b streams to the collector on host a: that is a real cross-host edge too.
    assert!(hosts_view.edges["host:host-b->host:host-a"].cross_host);
    drop(client);
    server.join().unwrap();
}
