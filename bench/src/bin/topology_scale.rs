//! The collector at scale: `orca-collector` as a process, fed by simulated agents in a second
//! process over the real gRPC report stream, watched over gRPC by a client here and by the
//! TUI in a third process, and scraped over HTTP as Prometheus scrapes it.
//!
//! Each simulated agent reports one host, 9 containers and 90 processes (100 nodes), a
//! listener, and 20 connections to other agents' listeners (cross-host edges). Every second
//! each agent sends a delta changing 10 % of its nodes (CPU and memory of 10 processes, and
//! the byte counts of its connections); every changed process carries its report's send time
//! (wall clock, µs) and sequence number in two of its values (CPU seconds, virtual size),
//! which change every report as real values do. Figures, per size, over a steady window after
//! every full report was applied:
//!
//! - **collector CPU**: user + system time of the collector process, % of one core;
//! - **collector memory**: its peak RSS;
//! - **report → watcher p99**: from a changed node's send time to the moment the delta that
//!   carries it arrives at a `WatchTopology(VIEW_PROCESSES)` client in this process (ingest,
//!   publish, fan-out and gRPC inside; every changed node is counted, and nodes never seen
//!   are counted: every delta report of an agent between the first and the last one the
//!   watcher saw must have reached it, with all of its changed nodes);
//! - **report → TUI screen p99** and **TUI frame**: `orca`'s feed and run loop in a child
//!   process (processes view, details open, 160x48 off-screen terminal, frames timed whole),
//!   each frame with news timed from the earliest send time of what it shows;
//! - **/metrics scrape**: wall time of a full `GET /metrics` (text format) and the series it
//!   carried.
//!
//! Baseline of the same run: the same report stream sent while nobody watches (the collector's
//! ingest alone), for CPU.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use orca_bench::{
    cluster::{free_port, sibling},
    procstat::{cpu_mark, cpu_use, peak_rss},
    tui_watch::{self, NoEffects, TimedBackend},
};
use orca_proto::topology::v1::{self as pb, collector_client::CollectorClient};
use tokio_stream::StreamExt as _;

const NODES_PER_AGENT: usize = 100;
const CONTAINERS_PER_AGENT: usize = 9;
const CONNECTIONS_PER_AGENT: usize = 20;
const PROCESSES_PER_AGENT: usize = NODES_PER_AGENT - 1 - CONTAINERS_PER_AGENT;

#[derive(Parser, Debug)]
struct Args {
    /// Topology sizes in nodes (100 per simulated agent).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    nodes: Vec<usize>,
    /// Seconds measured at each size (after warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Fraction of nodes changed per second.
    #[arg(long, default_value_t = 0.1)]
    change: f64,
    /// Run as the simulated agents' process (internal).
    #[arg(long, hide = true)]
    simulate: Option<SocketAddr>,
    /// Run as the TUI's process against this collector (internal).
    #[arg(long, hide = true)]
    tui: Option<SocketAddr>,
    #[arg(long, hide = true, default_value_t = 0)]
    processes: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    agents: usize,
    /// Instead of the watched figures: the cost of TLS on report ingest. At each size, a
    /// plain collector and one with --tls-cert/--tls-key/--tls-ca (the agents presenting
    /// client certificates) take the same reports, nobody watching; their CPU and the
    /// reports they acknowledged per second, one after the other in the same run.
    #[arg(long)]
    report_cost: bool,
    /// The simulated agents connect over TLS with the certificates in this directory
    /// (internal: `ca.pem`, `agent.pem`, `agent.key`).
    #[arg(long, hide = true)]
    tls_dir: Option<std::path::PathBuf>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn ip_of(agent: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([10, (agent >> 16) as u8, (agent >> 8) as u8, agent as u8 + 1])
}

/// A changed process's send time (µs since the epoch, in its CPU seconds) and report
/// sequence number (in its virtual size).
fn sent_and_report(node: &pb::TopologyNode) -> Option<(u64, u64)> {
    match node.node.as_ref()?.detail.as_ref()? {
        pb::node::Detail::Process(p) if p.vsz_bytes > 0 => {
            Some((p.cpu_seconds_total as u64, p.vsz_bytes))
        }
        _ => None,
    }
}

fn process_node(agent: usize, i: usize, cpu: f64, sent: Option<(u64, u64)>) -> pb::Node {
    let host = format!("sim-{agent}");
    let container = i % (CONTAINERS_PER_AGENT + 1);
    let container_id = if container < CONTAINERS_PER_AGENT {
        format!("{agent:05}c{container}")
    } else {
        String::new()
    };
    let mut parents = Vec::new();
    if !container_id.is_empty() {
        parents.push(format!("container:{container_id}"));
    }
    parents.push(format!("host:{host}"));
    // The send time and report carried in values, which change every report as real ones
    // do (a name, label or command line that changed would move the node's row in the TUI).
    let (sent_us, seq) = sent.unwrap_or((0, 0));
    pb::Node {
        id: format!("process:{host}:{}", 1000 + i),
        kind: pb::NodeKind::Process as i32,
        parents,
        detail: Some(pb::node::Detail::Process(pb::Process {
            pid: 1000 + i as u32,
            ppid: 1,
            comm: format!("svc{}", i % 30),
            cmdline: vec![format!("/usr/bin/svc{}", i % 30), "--serve".into()],
            user: "app".into(),
            cpu_percent: cpu,
            cpu_seconds_total: sent_us as f64,
            vsz_bytes: seq,
            rss_bytes: 50_000_000 + (cpu * 1e5) as u64,
            container_id,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn full_report(agent: usize, agents: usize) -> pb::Report {
    let host = format!("sim-{agent}");
    let mut nodes = vec![pb::Node {
        id: format!("host:{host}"),
        kind: pb::NodeKind::Host as i32,
        detail: Some(pb::node::Detail::Host(pb::Host {
            hostname: host.clone(),
            ips: vec![pb::ip_to_bytes(ip_of(agent))],
            cores: 8,
            memory_total_bytes: 32 << 30,
            ..Default::default()
        })),
        ..Default::default()
    }];
    for c in 0..CONTAINERS_PER_AGENT {
        nodes.push(pb::Node {
            id: format!("container:{agent:05}c{c}"),
            kind: pb::NodeKind::Container as i32,
            parents: vec![format!("host:{host}")],
            detail: Some(pb::node::Detail::Container(pb::Container {
                id: format!("{agent:05}c{c}"),
                name: format!("app{c}-{agent}"),
                image: format!("registry/app{c}:1"),
                runtime: "docker".into(),
                state: pb::ContainerState::Running as i32,
                memory_usage_bytes: 100 << 20,
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    for i in 0..NODES_PER_AGENT - 1 - CONTAINERS_PER_AGENT {
        nodes.push(process_node(agent, i, 1.0, None));
    }
    let mut report = pb::Report {
        agent_id: host.clone(),
        hostname: host,
        seq: 1,
        full: true,
        timestamp_unix_ms: (now_us() / 1000) as i64,
        nodes,
        connections: connections(agent, agents, 0),
        ..Default::default()
    };
    report.connections.push(pb::Connection {
        id: format!("sim-{agent}:listen"),
        local: Some(pb::Endpoint::new(SocketAddr::new(ip_of(agent), 8080))),
        state: pb::ConnectionState::Listen as i32,
        process_id: format!("process:sim-{agent}:1000"),
        ..Default::default()
    });
    report
}

/// The agent's outbound connections, to the listeners of the next agents.
fn connections(agent: usize, agents: usize, bytes: u64) -> Vec<pb::Connection> {
    (0..CONNECTIONS_PER_AGENT)
        .map(|k| {
            let peer = (agent + 1 + k) % agents.max(1);
            let local = SocketAddr::new(ip_of(agent), 40_000 + k as u16);
            pb::Connection {
                id: format!("sim-{agent}:{local}-{peer}"),
                local: Some(pb::Endpoint::new(local)),
                remote: Some(pb::Endpoint::new(SocketAddr::new(ip_of(peer), 8080))),
                direction: pb::Direction::Outbound as i32,
                state: pb::ConnectionState::Established as i32,
                process_id: format!("process:sim-{agent}:{}", 1001 + k),
                bytes_sent: bytes,
                bytes_received: bytes / 2,
                ..Default::default()
            }
        })
        .collect()
}

/// The simulated agents' process: one report stream per agent, a full report, then a delta a
/// second. Prints `ready` once every full report was acknowledged.
async fn simulate(
    collector: SocketAddr,
    agents: usize,
    change: f64,
    tls: Option<orca_auth::tls::ClientTls>,
) -> Result<()> {
    let ready = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let changed = ((NODES_PER_AGENT as f64 * change).round() as usize).max(1);
    let processes = PROCESSES_PER_AGENT;
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let (ready, acked, tls) = (ready.clone(), acked.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let channel = orca_auth::tls::endpoint(tls.as_ref(), &collector.to_string())?
                .connect()
                .await?;
            let mut client = CollectorClient::new(channel).max_decoding_message_size(64 << 20);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(full_report(agent, agents)).await?;
            let mut acks = client
                .stream_reports(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            let first = acks.next().await.context("no ack")??;
            if first.applied_seq != 1 {
                bail!("agent {agent}: full report not applied: {first:?}");
            }
            ready.fetch_add(1, Ordering::Relaxed);
            // Spread the agents over the second.
            let offset = Duration::from_micros((agent as u64 * 1_000_000) / agents as u64);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 1;
            loop {
                tick.tick().await;
                seq += 1;
                let sent = now_us();
                let nodes = (0..changed)
                    .map(|j| {
                        let i = (seq as usize * changed + j) % processes;
                        process_node(agent, i, (seq % 100) as f64, Some((sent, seq)))
                    })
                    .collect();
                let report = pb::Report {
                    agent_id: format!("sim-{agent}"),
                    hostname: format!("sim-{agent}"),
                    seq,
                    full: false,
                    timestamp_unix_ms: (sent / 1000) as i64,
                    nodes,
                    connections: connections(agent, agents, seq * 10_000),
                    ..Default::default()
                };
                if tx.send(report).await.is_err() {
                    return Ok(());
                }
                match acks.next().await {
                    Some(Ok(ack)) if ack.need_full || !ack.error.is_empty() => {
                        bail!("agent {agent}: {ack:?}")
                    }
                    Some(Ok(_)) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return Ok(()),
                }
            }
        }));
    }
    while (ready.load(Ordering::Relaxed) as usize) < agents {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for t in &tasks {
            if t.is_finished() {
                bail!("a simulated agent ended before all were ready");
            }
        }
    }
    println!("ready");
    std::io::stdout().flush()?;
    // Until the driver closes our stdin; each line it sends is answered with the delta
    // reports acknowledged so far.
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
            println!("{}", acked.load(Ordering::Relaxed));
            let _ = std::io::stdout().flush();
        }
        let mut sink = String::new();
        let _ = std::io::stdin().read_to_string(&mut sink);
    })
    .await?;
    Ok(())
}

/// The TUI's process: `orca`'s feed and run loop on the processes view with the details
/// panel open, drawing to a 160x48 off-screen terminal. Says `ready` once every process is in
/// its model, then runs `seconds` and prints its figures as JSON: agent report → screen per
/// frame with news (from the earliest send time in what the frame shows) and frame times.
async fn tui(collector: SocketAddr, processes: usize, seconds: u64) -> Result<()> {
    use orca_tui::{
        app::App,
        feed::{self, Event},
        model::topology::TopoView,
        run::{handle, run_loop},
        saved::SavedFilters,
        ui,
    };
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    let mut app = App::new(collector.to_string(), SavedFilters::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(4096);
    tokio::spawn(feed::follow(collector.to_string(), tx));
    let mut terminal = ratatui::Terminal::new(TimedBackend::new(160, 48))?;
    app.on_key(KeyEvent::new(KeyCode::Char('3'), KeyModifiers::NONE));
    app.details = true;
    let effects = NoEffects;
    while app.model.topology.view(TopoView::Processes).nodes.len() < processes {
        let event = rx.recv().await.context("the feed ended")?;
        handle(&mut app, event, &effects);
        while let Ok(event) = rx.try_recv() {
            handle(&mut app, event, &effects);
        }
        terminal.draw(|f| ui::draw(f, &mut app))?;
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut dated = tui_watch::date_from_send(rx, earliest_send);
    app.latency.reset();
    terminal.backend_mut().frames.reset();
    let _ = tokio::time::timeout(
        Duration::from_secs(seconds),
        run_loop(&mut terminal, &mut app, &mut dated, &effects),
    )
    .await;
    println!(
        "{}",
        serde_json::json!({
            "report": tui_watch::figures(&app.latency),
            "frames": tui_watch::figures(&terminal.backend().frames),
            "rows": app.state().rows().keys.len(),
        })
    );
    Ok(())
}

/// The earliest send time among a delta's changed processes.
fn earliest_send(delta: &pb::TopologyDelta) -> Option<u64> {
    delta
        .upserted_nodes
        .iter()
        .filter_map(|n| sent_and_report(n).map(|(sent, _)| sent))
        .min()
}

struct Process(Child);

/// `--report-cost`: collector CPU and acknowledged reports per second, plain and over TLS
/// with agents' client certificates, at each size.
async fn report_cost(args: &Args) -> Result<()> {
    let certs = std::env::temp_dir().join(format!("topology-scale-tls-{}", std::process::id()));
    orca_auth::tls::cert_gen::write_local_set(&certs, &[])?;
    let pem = |name: &str| certs.join(name).to_string_lossy().into_owned();
    println!(
        "{:>8} {:>6} {:>12} {:>10} {:>12}",
        "nodes", "door", "reports/s", "cpu%", "cpu% / 1k r/s"
    );
    for &nodes in &args.nodes {
        let agents = nodes / NODES_PER_AGENT;
        let mut plain_cpu = f64::NAN;
        for tls in [false, true] {
            let (grpc, http): (SocketAddr, SocketAddr) = (
                format!("127.0.0.1:{}", free_port()).parse()?,
                format!("127.0.0.1:{}", free_port()).parse()?,
            );
            let mut command = Command::new(sibling("orca-collector")?);
            command
                .args(["--grpc-addr", &grpc.to_string()])
                .args(["--http-addr", &http.to_string()]);
            if tls {
                command
                    .args([
                        "--tls-cert",
                        &pem("master.pem"),
                        "--tls-key",
                        &pem("master.key"),
                    ])
                    .args(["--tls-ca", &pem("ca.pem")]);
            }
            let collector = Process(
                command
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()?,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(http).is_err() {
                if Instant::now() > deadline {
                    bail!("orca-collector did not listen on {http}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut command = Command::new(std::env::current_exe()?);
            command
                .args(["--simulate", &grpc.to_string()])
                .args(["--agents", &agents.to_string()])
                .args(["--change", &args.change.to_string()]);
            if tls {
                command.arg("--tls-dir").arg(&certs);
            }
            let mut sim = Process(
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
            let mut input = sim.0.stdin.take().context("sim stdin")?;
            let mut out = BufReader::new(sim.0.stdout.take().context("sim stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "ready" {
                bail!("the simulated agents said {line:?}");
            }
            let mut acked = || -> Result<u64> {
                writeln!(input)?;
                input.flush()?;
                let mut line = String::new();
                out.read_line(&mut line)?;
                line.trim().parse().context("the simulated agents' count")
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (from, acked_from, started) =
                (cpu_mark(collector.0.id())?, acked()?, Instant::now());
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            let cpu = cpu_use(from, cpu_mark(collector.0.id())?).total();
            let rate = (acked()? - acked_from) as f64 / started.elapsed().as_secs_f64();
            let door = if tls { "tls" } else { "plain" };
            println!(
                "{nodes:>8} {door:>6} {rate:>12.0} {cpu:>10.1} {:>12.2}{}",
                cpu / (rate / 1000.0),
                if tls && plain_cpu.is_finite() {
                    format!("   TLS costs {:+.1} points of a core", cpu - plain_cpu)
                } else {
                    String::new()
                }
            );
            if !tls {
                plain_cpu = cpu;
            }
            drop(input);
        }
    }
    let _ = std::fs::remove_dir_all(&certs);
    Ok(())
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn scrape(http: SocketAddr) -> Result<(Duration, usize, usize)> {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(http)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&body);
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(' '))
        .count();
    Ok((took, series, body.len()))
}

struct SizeFigures {
    nodes: usize,
    cpu_watched: f64,
    cpu_unwatched: f64,
    peak_rss_mib: f64,
    latency: Histogram<u64>,
    missed: u64,
    scrape_ms: Vec<f64>,
    series: usize,
    scrape_bytes: usize,
    /// The TUI's figures (`tui`'s JSON) and its CPU, % of one core.
    tui: serde_json::Value,
    tui_cpu: f64,
}

async fn run_size(nodes: usize, args: &Args) -> Result<SizeFigures> {
    let agents = nodes / NODES_PER_AGENT;
    let (grpc, http): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse()?,
        format!("127.0.0.1:{}", free_port()).parse()?,
    );
    let collector = Process(
        Command::new(sibling("orca-collector")?)
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = collector.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(http).is_err() {
        if Instant::now() > deadline {
            bail!("orca-collector did not listen on {http}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sim = Process(
        Command::new(std::env::current_exe()?)
            .args(["--simulate", &grpc.to_string()])
            .args(["--agents", &agents.to_string()])
            .args(["--change", &args.change.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut out = BufReader::new(sim.0.stdout.take().context("sim stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("the simulated agents said {line:?}");
    }
    eprintln!("{nodes} nodes: {agents} agents reporting");

    // Baseline: ingest alone, nobody watching.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = cpu_mark(pid)?;
    tokio::time::sleep(Duration::from_secs(args.seconds / 2)).await;
    let cpu_unwatched = cpu_use(from, cpu_mark(pid)?).total();

    // The TUI, in its own process, loads the whole topology.
    let mut tui = Process(
        Command::new(std::env::current_exe()?)
            .args(["--tui", &grpc.to_string()])
            .args(["--processes", &(agents * PROCESSES_PER_AGENT).to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let tui_pid = tui.0.id();
    let mut tui_out = BufReader::new(tui.0.stdout.take().context("tui stdout")?);
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        tui_out.read_line(&mut line)?;
        anyhow::Ok((line, tui_out))
    });
    let (line, mut tui_out) = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .context("the TUI did not load the topology in 120 s")???;
    if line.trim() != "ready" {
        bail!("the TUI said {line:?}");
    }
    let tui_from = cpu_mark(tui_pid)?;

    // Watched as the TUI watches: every changed node's latency from its send time.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let mut client = CollectorClient::new(channel).max_decoding_message_size(256 << 20);
    let mut watch = client
        .watch_topology(pb::WatchRequest {
            view: pb::View::Processes as i32,
        })
        .await?
        .into_inner();
    let snapshot = watch.next().await.context("no snapshot")??;
    if snapshot.upserted_nodes.len() < nodes * 8 / 10 {
        bail!(
            "the snapshot holds {} nodes, not the ~{} processes reported",
            snapshot.upserted_nodes.len(),
            agents * (NODES_PER_AGENT - 1 - CONTAINERS_PER_AGENT)
        );
    }
    let mut latency = Histogram::<u64>::new(3)?;
    // Warm-up: the first deltas after the snapshot.
    let warm = Instant::now() + Duration::from_secs(2);
    while Instant::now() < warm {
        watch.next().await.context("watch ended")??;
    }
    let from = cpu_mark(pid)?;
    let measure_until = Instant::now() + Duration::from_secs(args.seconds);
    let mut scrape_ms = Vec::new();
    let (mut series, mut scrape_bytes) = (0, 0);
    let mut next_scrape = Instant::now() + Duration::from_secs(2);
    // Per agent: nodes seen of each of its reports.
    let mut reports: HashMap<String, std::collections::BTreeMap<u64, usize>> = HashMap::new();
    while Instant::now() < measure_until {
        let delta = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .context("no delta for 5 s")?
            .context("watch ended")??;
        let now = now_us();
        for node in &delta.upserted_nodes {
            if let Some((sent, seq)) = sent_and_report(node) {
                latency.record(now.saturating_sub(sent).max(1))?;
                let agent = node.hostname.clone();
                *reports.entry(agent).or_default().entry(seq).or_default() += 1;
            }
        }
        if Instant::now() >= next_scrape {
            let (took, n, bytes) = tokio::task::spawn_blocking(move || scrape(http)).await??;
            scrape_ms.push(took.as_secs_f64() * 1000.0);
            (series, scrape_bytes) = (n, bytes);
            next_scrape = Instant::now() + Duration::from_secs(5);
        }
    }
    let cpu_watched = cpu_use(from, cpu_mark(pid)?).total();
    let tui_cpu = cpu_use(tui_from, cpu_mark(tui_pid)?).total();
    let tui_figures = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        tui_out.read_line(&mut line)?;
        anyhow::Ok(serde_json::from_str::<serde_json::Value>(&line)?)
    });
    let tui_figures = tokio::time::timeout(Duration::from_secs(30), tui_figures)
        .await
        .context("the TUI did not report")???;
    let changed = ((NODES_PER_AGENT as f64 * args.change).round() as usize).max(1);
    let mut missed = 0u64;
    for seen in reports.values() {
        let (first, last) = (
            *seen.keys().next().unwrap_or(&0),
            *seen.keys().last().unwrap_or(&0),
        );
        for seq in first..=last {
            // A report the watcher never saw, or saw only part of.
            missed += changed.saturating_sub(seen.get(&seq).copied().unwrap_or(0)) as u64;
        }
    }
    if reports.len() < agents {
        bail!(
            "{} of {agents} agents' changes reached the watcher",
            reports.len()
        );
    }
    let peak = peak_rss(pid)? as f64 / (1 << 20) as f64;
    drop(sim.0.stdin.take());
    Ok(SizeFigures {
        nodes,
        cpu_watched,
        cpu_unwatched,
        peak_rss_mib: peak,
        latency,
        missed,
        scrape_ms,
        series,
        scrape_bytes,
        tui: tui_figures,
        tui_cpu,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(collector) = args.simulate {
        let tls = args.tls_dir.as_ref().map(|dir| orca_auth::tls::ClientTls {
            ca: Some(dir.join("ca.pem")),
            identity: Some((dir.join("agent.pem"), dir.join("agent.key"))),
        });
        return runtime.block_on(simulate(collector, args.agents, args.change, tls));
    }
    if args.report_cost {
        return runtime.block_on(report_cost(&args));
    }
    if let Some(collector) = args.tui {
        return runtime.block_on(tui(collector, args.processes, args.seconds));
    }
    let mut all = Vec::new();
    for &nodes in &args.nodes {
        all.push(runtime.block_on(run_size(nodes, &args))?);
    }
    println!(
        "{:>8} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>9}",
        "nodes",
        "cpu%",
        "cpu%(base)",
        "rss MiB",
        "p50 ms",
        "p99 ms",
        "max ms",
        "missing",
        "scrape ms",
        "series",
        "MiB"
    );
    for f in &all {
        let max_scrape = f.scrape_ms.iter().cloned().fold(0.0, f64::max);
        println!(
            "{:>8} {:>10.1} {:>10.1} {:>9.0} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>10.0} {:>9} {:>9.1}",
            f.nodes,
            f.cpu_watched,
            f.cpu_unwatched,
            f.peak_rss_mib,
            f.latency.value_at_quantile(0.5) as f64 / 1000.0,
            f.latency.value_at_quantile(0.99) as f64 / 1000.0,
            f.latency.max() as f64 / 1000.0,
            f.missed,
            max_scrape,
            f.series,
            f.scrape_bytes as f64 / (1 << 20) as f64,
        );
    }
    println!(
        "\nTUI (its own process; processes view, details open, 160x48):\n{:>8} {:>14} {:>14} {:>14} {:>8} {:>14} {:>8} {:>8}",
        "nodes",
        "report p50 ms",
        "report p99 ms",
        "report max ms",
        "frames",
        "frame p50/p99",
        "max ms",
        "cpu%"
    );
    for f in &all {
        let (r, fr) = (&f.tui["report"], &f.tui["frames"]);
        println!(
            "{:>8} {:>14.1} {:>14.1} {:>14.1} {:>8} {:>14} {:>8.1} {:>8.1}",
            f.nodes,
            r["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["p99_ms"].as_f64().unwrap_or(f64::NAN),
            r["max_ms"].as_f64().unwrap_or(f64::NAN),
            r["samples"].as_u64().unwrap_or(0),
            format!(
                "{:.2}/{:.2}",
                fr["p50_ms"].as_f64().unwrap_or(f64::NAN),
                fr["p99_ms"].as_f64().unwrap_or(f64::NAN)
            ),
            fr["max_ms"].as_f64().unwrap_or(f64::NAN),
            f.tui_cpu,
        );
    }
    Ok(())
}
