//! Orca's metrics as Prometheus sees them: every daemon's `/metrics` passes `promtool check
//! metrics`, and a real Prometheus server (Debian's) scrapes a headless collector fed by a real
//! agent watching real processes and a real Docker container; PromQL over Prometheus's HTTP
//! API must show the bytes two processes sent, the container's memory as its cgroup counts
//! it, and the container's series going stale when it stops and goes away.
mod support;

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    agent::{require_root, wait_for},
    daemon::Daemon,
    docker::{Container, Dockerd, Scratch, busybox_rootfs, sh},
    masters::free_ports,
    prometheus::{PROMETHEUS_ACCEPT, PrometheusServer, assert_promtool_passes, get},
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until `GET /metrics` at `at` has a line starting with `prefix`; returns the body.
fn wait_for_series(at: SocketAddr, prefix: &str) -> String {
    wait_for(
        Duration::from_secs(30),
        &format!("{prefix} on {at}/metrics"),
        || {
            let body = get(at, "/metrics", None).ok()?;
            body.lines().any(|l| l.starts_with(prefix)).then_some(body)
        },
    )
}

/// `orca-collector` (no scheduler) on `grpc` and `http`, its log in `dir`.
fn headless_collector(dir: &Path, grpc: SocketAddr, http: SocketAddr) -> Daemon {
    Daemon::start(
        "orca-collector",
        &args(&[
            "--grpc-addr",
            &grpc.to_string(),
            "--http-addr",
            &http.to_string(),
        ]),
        &dir.join("collector.log"),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A master, a headless collector and an agent reporting to each, their `/metrics` checked by
/// promtool in the text format and scraped by Prometheus in OpenMetrics.
#[test]
fn every_daemon_passes_promtool_and_prometheus_scrapes_them() {
    let scratch = Scratch::new("prom-lint");
    let dir = &scratch.0;
    let base = free_ports(6);
    let (master_grpc, master_http) = (addr(base), addr(base + 1));
    let (collector_grpc, collector_http) = (addr(base + 2), addr(base + 3));
    let (agent_a_metrics, agent_b_metrics) = (addr(base + 4), addr(base + 5));
    let _master = Daemon::start(
        "orca-master",
        &args(&[
            "--registry",
            "memory",
            "--grpc-addr",
            &master_grpc.to_string(),
            "--http-addr",
            &master_http.to_string(),
            "--metrics-top-processes",
            "3",
        ]),
        &dir.join("master.log"),
    );
    let _collector = headless_collector(dir, collector_grpc, collector_http);
    let agent = |name: &str, upstream: SocketAddr, metrics: SocketAddr| {
        Daemon::start(
            "orca-agent",
            &args(&[
                "run",
                "--master",
                &upstream.to_string(),
                "--no-tasks",
                "--probe",
                "proc",
                "--agent-id",
                name,
                "--hostname",
                name,
                "--work-dir",
                &dir.join(name).display().to_string(),
                "--metrics-addr",
                &metrics.to_string(),
                "--topology-metrics",
                "--metrics-top-processes",
                "2",
            ]),
            &dir.join(format!("{name}.log")),
        )
    };
    let _agent_a = agent("prom-a", master_grpc, agent_a_metrics);
    let _agent_b = agent("prom-b", collector_grpc, agent_b_metrics);

    let endpoints = [
        (
            "the master",
            master_http,
            "orca_host_cpu_seconds_total{host=\"prom-a\"}",
        ),
        (
            "the collector",
            collector_http,
            "orca_host_cpu_seconds_total{host=\"prom-b\"}",
        ),
        (
            "agent prom-a",
            agent_a_metrics,
            "orca_host_cpu_seconds_total{host=\"prom-a\"}",
        ),
        (
            "agent prom-b",
            agent_b_metrics,
            "orca_process_cpu_seconds_total{host=\"prom-b\"",
        ),
    ];
    for (what, at, series) in endpoints {
        let text = wait_for_series(at, series);
        assert_promtool_passes(what, &text);
        let openmetrics = get(at, "/metrics", Some(PROMETHEUS_ACCEPT)).unwrap();
        assert!(openmetrics.ends_with("# EOF\n"), "{what}: {openmetrics}");
    }
    // The master's Mesos counters are counters, its percentiles a histogram.
    let master = get(master_http, "/metrics", None).unwrap();
    for line in [
        "# TYPE orca_master_offers_made_total counter",
        "# TYPE orca_master_tasks_finished_total counter",
        "# TYPE orca_master_uptime_seconds gauge",
        "# TYPE orca_allocator_allocation_run_seconds histogram",
    ] {
        assert!(master.contains(line), "{line} missing:\n{master}");
    }
    assert!(!master.contains("allocation_run_ms"), "{master}");
    // The agent's own CPU as a counter of seconds.
    let agent = get(agent_a_metrics, "/metrics", None).unwrap();
    assert!(
        agent.contains("# TYPE orca_agent_cpu_seconds_total counter"),
        "{agent}"
    );
    assert!(!agent.contains("cpu_percent"), "{agent}");

    let prometheus = PrometheusServer::start(
        &[
            ("master", vec![master_http]),
            ("collector", vec![collector_http]),
            ("agent", vec![agent_a_metrics]),
        ],
        Duration::from_secs(1),
    );
    wait_for(
        Duration::from_secs(30),
        "Prometheus scraping all three targets",
        || (prometheus.query("sum(up)").first()?.1 == 3.0).then_some(()),
    );
    for (query, hosts) in [
        ("orca_host_cpu_seconds_total{job=\"master\"}", ["prom-a"]),
        ("orca_host_cpu_seconds_total{job=\"collector\"}", ["prom-b"]),
        ("orca_host_memory_total_bytes{job=\"agent\"}", ["prom-a"]),
    ] {
        let result = wait_for(Duration::from_secs(30), query, || {
            let r = prometheus.query(query);
            (!r.is_empty()).then_some(r)
        });
        let seen: Vec<&str> = result
            .iter()
            .filter_map(|(labels, _)| labels["host"].as_str())
            .collect();
        assert_eq!(seen, hosts, "{query}");
    }
    // Counters Prometheus can take a rate of.
    wait_for(Duration::from_secs(30), "a CPU rate for prom-a", || {
        let r = prometheus.query("rate(orca_host_cpu_seconds_total{job=\"agent\"}[5s])");
        (r.first()?.1 > 0.0).then_some(())
    });
}

/// A monitoring-only user points `orca` at a headless collector: the TUI shows its topology
/// and says once that there is no scheduler, rather than reconnecting forever because the
/// cluster watch is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_follows_a_headless_collector() {
    use orca_tui::{app::LinkState, feed::Event, model::topology::TopoView};

    let scratch = Scratch::new("tui-headless");
    let dir = &scratch.0;
    let base = free_ports(3);
    let (grpc, http, metrics) = (addr(base), addr(base + 1), addr(base + 2));
    let _collector = headless_collector(dir, grpc, http);
    let _agent = Daemon::start(
        "orca-agent",
        &args(&[
            "run",
            "--master",
            &grpc.to_string(),
            "--no-tasks",
            "--probe",
            "proc",
            "--agent-id",
            "tui-headless",
            "--hostname",
            "tui-headless",
            "--work-dir",
            &dir.join("agent").display().to_string(),
            "--metrics-addr",
            &metrics.to_string(),
        ]),
        &dir.join("agent.log"),
    );
    wait_for_series(http, "orca_host_cpu_seconds_total{host=\"tui-headless\"}");
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let feed = tokio::spawn(orca_tui::feed::follow(grpc.to_string(), tx));
    let (mut told, mut host_seen) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(told && host_seen) {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("within 30 s: notice {told}, host on the hosts view {host_seen}")
            })
            .expect("the feed ended");
        match event {
            Event::Notice(text, _) => {
                assert!(text.contains("without a scheduler"), "{text}");
                told = true;
            }
            Event::Topology(TopoView::Hosts, delta, _) => {
                host_seen |= delta
                    .upserted_nodes
                    .iter()
                    .any(|n| n.hostname == "tui-headless");
            }
            Event::Link(LinkState::Down { reason, .. }) => {
                panic!("the TUI lost a headless collector: {reason}")
            }
            _ => {}
        }
    }
    feed.abort();
}

/// The busybox image, a container that fills 40 MB of its memory, and a Docker engine.
fn docker_with_image(dir: &Path) -> Dockerd {
    let dockerd = Dockerd::start(dir);
    let (_rootfs, tarball) = busybox_rootfs(dir);
    sh(dockerd
        .docker()
        .arg("import")
        .arg(&tarball)
        .arg("orca-test/busybox:1"));
    dockerd
}

/// The memory the kernel charges to a Docker container's cgroup (cgroupfs naming).
fn cgroup_memory(id: &str) -> Option<f64> {
    let v1 = format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes");
    let v2 = format!("/sys/fs/cgroup/docker/{id}/memory.current");
    std::fs::read_to_string(v1)
        .or_else(|_| std::fs::read_to_string(v2))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One end of a test connection: `orca-traffic` copied under `name`, so its process has
/// that name.
fn traffic(dir: &Path, name: &str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let exe = dir.join(name);
    std::fs::copy(support::bin("orca-traffic"), &exe).unwrap();
    let mut child = Command::new(&exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

/// The first value of an instant query, if it has one.
fn value(prometheus: &PrometheusServer, query: &str) -> Option<f64> {
    prometheus.query(query).first().map(|(_, v)| *v)
}

#[test]
fn prometheus_sees_traffic_memory_and_stopped_containers() {
    require_root();
    let scratch = Scratch::new("prom");
    let dir = &scratch.0;
    let dockerd = docker_with_image(dir);
    let name = format!("orca-prom-{}", std::process::id());
    let id = sh(dockerd
        .docker()
        .args(["run", "-d", "--network", "none", "--name", &name])
        .args([
            "orca-test/busybox:1",
            "sh",
            "-c",
            "head -c 40000000 /dev/zero > /tmp/fill; sleep 600",
        ]))
    .trim()
    .to_string();
    let container = Container {
        dockerd: &dockerd,
        id: id.clone(),
    };

    let base = free_ports(3);
    let (collector_grpc, collector_http, agent_metrics) =
        (addr(base), addr(base + 1), addr(base + 2));
    let _collector = headless_collector(dir, collector_grpc, collector_http);
    let _agent = Daemon::start(
        "orca-agent",
        &args(&[
            "run",
            "--master",
            &collector_grpc.to_string(),
            "--no-tasks",
            "--agent-id",
            "prom-c",
            "--hostname",
            "prom-c",
            "--work-dir",
            &dir.join("agent").display().to_string(),
            "--docker-socket",
            &dockerd.socket.display().to_string(),
            "--container-refresh",
            "1s",
            "--counter-interval",
            "1s",
            "--metrics-addr",
            &agent_metrics.to_string(),
        ]),
        &dir.join("agent.log"),
    );
    let agent_text = wait_for_series(agent_metrics, "orca_agent_probe_mode{");
    assert!(
        agent_text.contains("orca_agent_probe_mode{mode=\"ebpf\"} 1"),
        "this test needs the agent's eBPF probe (byte counts per connection); the agent \
         fell back to /proc, see its log:\n{}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
    let prometheus = PrometheusServer::start(
        &[("collector", vec![collector_http])],
        Duration::from_secs(1),
    );

    // Two processes of the test's own names; the sender sends RATE bytes a second for
    // SECONDS seconds to the listener.
    const RATE: u64 = 400_000;
    const SECONDS: u64 = 50;
    let suffix = std::process::id() % 100_000;
    let (tx_name, rx_name) = (format!("otx{suffix}"), format!("orx{suffix}"));
    let (mut receiver, mut rx_out) = traffic(dir, &rx_name, &["listen", "127.0.0.1:0"]);
    let listening = read_line(&mut rx_out);
    let server = listening
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the listener said {listening:?}"))
        .to_string();
    // The agent must know the listener before the first bytes count toward its edge.
    wait_for(
        Duration::from_secs(30),
        "the listener in the topology",
        || {
            let body = get(collector_http, "/api/topology?view=connections", None).ok()?;
            body.contains(&format!("\"port\":{}", server.rsplit(':').next()?))
                .then_some(())
        },
    );
    let started = Instant::now();
    let (mut sender, mut tx_out) = traffic(
        dir,
        &tx_name,
        &["send", &server, &RATE.to_string(), &SECONDS.to_string()],
    );
    let edge =
        format!("orca_edge_transmit_bytes_total{{source=\"{tx_name}\",destination=\"{rx_name}\"}}");

    // The container's memory, as Prometheus has it, against its cgroup's own count.
    let memory = format!("orca_container_memory_usage_bytes{{name=\"{name}\"}}");
    let (seen, charged) = wait_for(
        Duration::from_secs(60),
        "the container's memory in Prometheus within 5 % of its cgroup's",
        || {
            let seen = value(&prometheus, &memory)?;
            let charged = cgroup_memory(&id)?;
            ((seen - charged).abs() <= 0.05 * charged && charged > 30e6).then_some((seen, charged))
        },
    );
    eprintln!("container memory: Prometheus {seen} bytes, cgroup {charged} bytes");

    // The byte rate between the two processes, over 30 s of steady sending that began at
    // least 6 s earlier (the agent reads the counters every second: at most 1 s of 30 is off).
    let rate_query = format!("rate({edge}[30s])");
    wait_for(
        Duration::from_secs(SECONDS + 30),
        "30 s of the edge's samples while the sender sends",
        || {
            let samples = value(&prometheus, &format!("count_over_time({edge}[30s])"))?;
            (samples >= 29.0 && started.elapsed() >= Duration::from_secs(38)).then_some(())
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(SECONDS - 1),
        "the sender finished before 30 s of samples were in (scrapes too slow?)"
    );
    let rate = value(&prometheus, &rate_query).expect("a rate of the edge");
    eprintln!("edge {tx_name} -> {rx_name}: {rate:.0} B/s by PromQL, {RATE} B/s sent");
    assert!(
        (rate - RATE as f64).abs() <= 0.05 * RATE as f64,
        "PromQL's rate {rate} B/s is not within 5 % of the {RATE} B/s sent"
    );

    // Everything the sender sent, counted once.
    let sent_line = read_line(&mut tx_out);
    let sent: f64 = sent_line
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the sender said {sent_line:?}"));
    assert!(sender.wait().unwrap().success());
    assert!(receiver.wait().unwrap().success());
    // The final count: the close report's exact counters, once Prometheus has scraped them
    // (the value holds still for 3 s).
    let mut last = (f64::NAN, Instant::now());
    let counted = wait_for(Duration::from_secs(30), "the edge's final count", || {
        let v = value(&prometheus, &edge)?;
        if v != last.0 {
            last = (v, Instant::now());
        }
        (last.1.elapsed() >= Duration::from_secs(3)).then_some(v)
    });
    eprintln!("edge total: {counted} bytes counted, {sent} sent");
    assert!(
        (counted - sent).abs() <= 0.05 * sent,
        "{counted} bytes counted for {sent} sent"
    );

    // A stopped container leaves the running state; a removed one goes stale.
    sh(dockerd.docker().args(["stop", "-t", "1", &id]));
    let state = |s: &str| format!("orca_container_state{{name=\"{name}\",state=\"{s}\"}}");
    wait_for(Duration::from_secs(30), "the container seen exited", || {
        (value(&prometheus, &state("exited")) == Some(1.0)
            && value(&prometheus, &state("running")).is_none())
        .then_some(())
    });
    drop(container);
    wait_for(
        Duration::from_secs(30),
        "the removed container's series stale",
        || prometheus.query(&memory).is_empty().then_some(()),
    );
}
