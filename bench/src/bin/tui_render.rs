//! The TUI's figures at 1,000 / 10,000 / 50,000 nodes, each size in fresh child processes:
//!
//! - **frame**: time to draw one frame (160x48, details panel open with the selected node's
//!   hour of 15-second series) of each topology view: steady frames; frames after a delta
//!   that changes values (apply, then draw); frames after a delta that changes membership (a
//!   node or connection leaves or joins: apply, place it in or take it out of the rows -
//!   scope, filter, order - then draw). Baseline in the same run: a frame that only fills the screen with one
//!   paragraph (the terminal library's floor).
//! - **memory**: the child's resident set after loading that model (every node with its latest
//!   values, the most recently opened nodes with their hour), minus its RSS before.
//! - **start → first frame**, **start → first frame with data** and **start → data on
//!   screen**: a real master (collector fed with agent reports over gRPC) runs in this
//!   process; the child is the TUI's library doing what `orca --master` does (watch streams,
//!   apply, draw to an off-screen terminal); measured from spawning the child to its first
//!   frame, to the first frame that shows a host, and to the frame that shows every host and
//!   process.
//! - **delta → screen**: while agents send delta reports, the time from a delta reaching the
//!   TUI to the frame that shows it (p50/p99/max), as `orca`'s status line reports it.
//! - **agent report → screen**: the same frames timed from the moment the agent sent the
//!   report, so the collector's ingest, its watch fan-out and gRPC are inside the figure.
//!   Each delta report carries its send time (wall clock, microseconds) in its processes'
//!   CPU seconds, which the collector passes through; the TUI's run loop then measures from
//!   that moment. A topology delta of another view (containers, hosts) is timed from the
//!   newest send time seen so far, which can only make the figure larger.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use orca_bench::tui_watch::{self, NoEffects};
use orca_collector::CollectorConfig;
use orca_master::{cluster::ClusterConfig, server::Master};
use orca_proto::topology::v1::{self as pb, collector_client::CollectorClient};
use orca_tui::{
    app::App,
    feed::{self, Event},
    model::topology::TopoView,
    run::{handle, run_loop},
    saved::SavedFilters,
    synthetic, ui,
    views::Tab,
};
use ratatui::{Terminal, backend::TestBackend};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// Topology sizes in nodes (hosts + containers + processes).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    nodes: Vec<usize>,
    /// Frames timed per view and kind.
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// Seconds of delta traffic for the delta-to-screen figure.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Delta reports per second the agents send meanwhile.
    #[arg(long, default_value_t = 50)]
    delta_rate: u64,
    /// Internal: run as the memory/frame child.
    #[arg(long, hide = true)]
    child_model: Option<usize>,
    /// Internal: run as the live child against this master.
    #[arg(long, hide = true)]
    child_live: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    hosts: usize,
}

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Child: load a full-hour synthetic model, report memory and frame times as JSON.
fn child_model(nodes: usize, frames: usize) -> Result<()> {
    let before = rss_bytes();
    let mut app = App::new("bench", SavedFilters::default());
    let now = Instant::now();
    // What the collector sends: the latest point per series... (a few of the messages are
    // kept to send again as deltas below)
    let mut samples: HashMap<TopoView, (Vec<pb::TopologyNode>, Vec<pb::TopologyConnection>)> =
        HashMap::new();
    for (view, delta) in synthetic::snapshots(nodes, 1) {
        samples.insert(
            view,
            (
                delta.upserted_nodes.iter().take(8).cloned().collect(),
                delta.upserted_connections.iter().take(8).cloned().collect(),
            ),
        );
        app.on_topology(view, delta, now);
    }
    // ...and the hour of every node whose details were opened (as many as are kept).
    let some: Vec<String> = app
        .model
        .topology
        .view(TopoView::Processes)
        .nodes
        .keys()
        .take(orca_tui::model::topology::HISTORIES)
        .cloned()
        .collect();
    for id in some {
        app.on_series(synthetic::history(&id, 240), now);
    }
    app.on_cluster(synthetic::cluster(nodes / 100, 20, nodes / 10), now);
    let loaded = app.model.topology.view(TopoView::Processes).nodes.len()
        + app.model.topology.view(TopoView::Containers).nodes.len()
        + app.model.topology.view(TopoView::Hosts).nodes.len();
    let untrimmed = rss_bytes();
    // What stays once the allocator hands back what the snapshot messages used (the TUI does
    // the same after applying a snapshot).
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe { libc::malloc_trim(0) };
    let after = rss_bytes();

    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    // Baseline: a frame with one paragraph filling the screen.
    let text = "x".repeat(WIDTH as usize * HEIGHT as usize);
    let mut floor = histogram();
    for _ in 0..frames {
        let t = Instant::now();
        terminal.draw(|f| {
            f.render_widget(
                ratatui::widgets::Paragraph::new(text.as_str())
                    .wrap(ratatui::widgets::Wrap { trim: false }),
                f.area(),
            )
        })?;
        floor.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    let mut views = serde_json::Map::new();
    app.details = true;
    for (tab, key) in [
        (Tab::Hosts, '1'),
        (Tab::Containers, '2'),
        (Tab::Processes, '3'),
        (Tab::Connections, '4'),
    ] {
        app.on_key(ratatui::crossterm::event::KeyEvent::new(
            ratatui::crossterm::event::KeyCode::Char(key),
            ratatui::crossterm::event::KeyModifiers::NONE,
        ));
        debug_assert_eq!(app.tab, tab);
        terminal.draw(|f| ui::draw(f, &mut app))?;
        if let Some(id) = app.take_series_request() {
            app.on_series(synthetic::history(&id, 240), Instant::now());
        }
        let mut steady = histogram();
        for _ in 0..frames {
            let t = Instant::now();
            terminal.draw(|f| ui::draw(f, &mut app))?;
            steady.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        // A delta changes one process: the view's rows are rebuilt, then drawn.
        let view = tab.topology().unwrap_or(TopoView::Processes);
        // A delta that changes values: an upsert of nodes (or connections) already there.
        let mut values = histogram();
        let (sample_nodes, sample_connections) = samples.get(&view).cloned().unwrap_or_default();
        for i in 0..frames {
            let delta = pb::TopologyDelta {
                seq: 10 + i as u64,
                upserted_nodes: sample_nodes
                    .iter()
                    .take(1)
                    .map(|n| pb::TopologyNode {
                        node: n.node.clone(),
                        hostname: n.hostname.clone(),
                        cpu_percent: vec![pb::Point {
                            timestamp_unix_ms: synthetic::NOW_MS,
                            value: i as f64,
                        }],
                        ..Default::default()
                    })
                    .collect(),
                upserted_connections: sample_connections.iter().take(1).cloned().collect(),
                ..Default::default()
            };
            let t = Instant::now();
            app.on_topology(view, delta, t);
            terminal.draw(|f| ui::draw(f, &mut app))?;
            values.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        // A delta that changes membership (a process exits, a connection closes, then comes
        // back): the rows take it out or place it.
        let mut members = histogram();
        let node = sample_nodes.get(7).map(|n| pb::TopologyNode {
            node: n.node.clone(),
            hostname: n.hostname.clone(),
            ..Default::default()
        });
        let conn = sample_connections.get(7).cloned();
        for i in 0..frames {
            let mut delta = pb::TopologyDelta {
                seq: 1000 + i as u64,
                ..Default::default()
            };
            let leave = i % 2 == 0;
            if let Some(n) = &node {
                let id = n.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
                if leave {
                    delta.removed_nodes.push(id);
                } else {
                    delta.upserted_nodes.push(n.clone());
                }
            }
            if let Some(c) = &conn {
                let id = c
                    .connection
                    .as_ref()
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                if leave {
                    delta.removed_connections.push(id);
                } else {
                    delta.upserted_connections.push(c.clone());
                }
            }
            let t = Instant::now();
            app.on_topology(view, delta, t);
            terminal.draw(|f| ui::draw(f, &mut app))?;
            members.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        views.insert(
            tab.title().to_lowercase(),
            serde_json::json!({
                "rows": app.state().rows().keys.len(),
                "steady_p50_ms": ms(steady.value_at_quantile(0.5)),
                "steady_p99_ms": ms(steady.value_at_quantile(0.99)),
                "steady_max_ms": ms(steady.max()),
                "delta_p50_ms": ms(values.value_at_quantile(0.5)),
                "delta_p99_ms": ms(values.value_at_quantile(0.99)),
                "delta_max_ms": ms(values.max()),
                "members_p50_ms": ms(members.value_at_quantile(0.5)),
                "members_p99_ms": ms(members.value_at_quantile(0.99)),
                "members_max_ms": ms(members.max()),
            }),
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "nodes": loaded,
            "rss_before_mb": before as f64 / 1048576.0,
            "rss_after_mb": after as f64 / 1048576.0,
            "rss_untrimmed_mb": untrimmed as f64 / 1048576.0,
            "floor_p50_ms": ms(floor.value_at_quantile(0.5)),
            "floor_p99_ms": ms(floor.value_at_quantile(0.99)),
            "views": views,
        })
    );
    Ok(())
}

/// Child: be the TUI against a live master; print when the first frame and the full data are
/// on screen, then measure delta-to-screen until stdin closes.
async fn child_live(master: String, hosts: usize, seconds: u64) -> Result<()> {
    let mut app = App::new(master.clone(), SavedFilters::default());
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    tokio::spawn(feed::follow(master, tx));
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    terminal.draw(|f| ui::draw(f, &mut app))?;
    println!("first-frame");
    let effects = NoEffects;
    let expected_processes =
        hosts * synthetic::CONTAINERS_PER_HOST * synthetic::PROCESSES_PER_CONTAINER;
    // Until every host and process is on screen.
    let mut shown_any = false;
    loop {
        let Some(event) = rx.recv().await else {
            bail!("the feed ended");
        };
        handle(&mut app, event, &effects);
        while let Ok(event) = rx.try_recv() {
            handle(&mut app, event, &effects);
        }
        terminal.draw(|f| ui::draw(f, &mut app))?;
        app.frame_drawn(Instant::now());
        let topo = &app.model.topology;
        if !shown_any && !topo.view(TopoView::Hosts).nodes.is_empty() {
            shown_any = true;
            println!("first-data-frame");
        }
        if topo.view(TopoView::Hosts).nodes.len() >= hosts
            && topo.view(TopoView::Processes).nodes.len() >= expected_processes
        {
            break;
        }
    }
    println!("data-frame");
    // Delta to screen through `orca`'s own run loop, on the processes view.
    app.on_key(ratatui::crossterm::event::KeyEvent::new(
        ratatui::crossterm::event::KeyCode::Char('3'),
        ratatui::crossterm::event::KeyModifiers::NONE,
    ));
    println!("measuring");
    app.latency.reset();
    let _ = tokio::time::timeout(
        Duration::from_secs(seconds),
        run_loop(&mut terminal, &mut app, &mut rx, &effects),
    )
    .await;
    let delta = tui_watch::figures(&app.latency);
    // Then agent report to screen: the same loop, fed through a tap that dates each delta
    // from its report's send time.
    app.latency.reset();
    let mut tapped = tui_watch::date_from_send(rx, earliest_send);
    let _ = tokio::time::timeout(
        Duration::from_secs(seconds),
        run_loop(&mut terminal, &mut app, &mut tapped, &effects),
    )
    .await;
    let report = tui_watch::figures(&app.latency);
    println!(
        "{}",
        serde_json::json!({
            "delta": delta,
            "report": report,
            "rss_mb": rss_bytes() as f64 / 1048576.0,
        })
    );
    Ok(())
}

/// The earliest send time (wall clock, µs) of the reports behind a delta.
fn earliest_send(delta: &pb::TopologyDelta) -> Option<u64> {
    delta
        .upserted_nodes
        .iter()
        .filter_map(|n| match n.node.as_ref()?.detail.as_ref()? {
            pb::node::Detail::Process(p) if p.cpu_seconds_total > 0.0 => {
                Some(p.cpu_seconds_total as u64)
            }
            _ => None,
        })
        .min()
}

/// The reports of `hosts` agents: 9 containers x 10 processes each, one connection per
/// process to the same process on the next host.
fn host_report(h: usize, hosts: usize) -> pb::Report {
    let name = format!("node-{h:03}");
    let ip = |h: usize| vec![10, (h / 250) as u8, (h % 250) as u8, 1];
    let mut nodes = vec![pb::Node {
        id: format!("host:{name}"),
        kind: pb::NodeKind::Host as i32,
        detail: Some(pb::node::Detail::Host(pb::Host {
            hostname: name.clone(),
            ips: vec![ip(h)],
            cores: 16,
            memory_total_bytes: 64 << 30,
            memory_available_bytes: 32 << 30,
            cpu_percent: (h % 100) as f64,
            ..Default::default()
        })),
        ..Default::default()
    }];
    let mut connections = Vec::new();
    for c in 0..synthetic::CONTAINERS_PER_HOST {
        let cid = format!("{h:04x}{c:04x}c0ffee");
        nodes.push(pb::Node {
            id: format!("container:{cid}"),
            kind: pb::NodeKind::Container as i32,
            parents: vec![format!("host:{name}")],
            detail: Some(pb::node::Detail::Container(pb::Container {
                id: cid.clone(),
                name: format!("app-{h}-{c}"),
                image: "registry.local/app:1".into(),
                state: pb::ContainerState::Running as i32,
                ..Default::default()
            })),
            ..Default::default()
        });
        for p in 0..synthetic::PROCESSES_PER_CONTAINER {
            let pid = 1000 + (c * 100 + p) as u32;
            let id = format!("process:{name}:{pid}");
            nodes.push(process_node(&name, pid, &cid, p as f64, None));
            connections.push(pb::Connection {
                id: format!("{name}:{pid}"),
                local: Some(pb::Endpoint {
                    ip: ip(h),
                    port: 40_000 + pid,
                }),
                remote: Some(pb::Endpoint {
                    ip: ip((h + 1) % hosts),
                    port: 8080,
                }),
                direction: pb::Direction::Outbound as i32,
                state: pb::ConnectionState::Established as i32,
                pid,
                process_id: id,
                comm: "app".into(),
                container_id: cid.clone(),
                bytes_sent: 4096,
                ..Default::default()
            });
        }
    }
    pb::Report {
        agent_id: name.clone(),
        hostname: name,
        seq: 1,
        full: true,
        timestamp_unix_ms: now_ms(),
        nodes,
        connections,
        ..Default::default()
    }
}

/// A process; a changed one carries its report's send time (µs since the epoch) in its CPU
/// seconds, a value that changes every report as real ones do (a changed name or command
/// line would move its row in the TUI).
fn process_node(host: &str, pid: u32, cid: &str, cpu: f64, sent_us: Option<u64>) -> pb::Node {
    pb::Node {
        id: format!("process:{host}:{pid}"),
        kind: pb::NodeKind::Process as i32,
        parents: vec![format!("container:{cid}"), format!("host:{host}")],
        detail: Some(pb::node::Detail::Process(pb::Process {
            pid,
            ppid: 1,
            comm: "app".into(),
            cmdline: vec!["/usr/bin/app".to_string()],
            cpu_percent: cpu,
            cpu_seconds_total: sent_us.unwrap_or(0) as f64,
            container_id: cid.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct LiveFigures {
    first_frame: Duration,
    first_data_frame: Duration,
    data_frame: Duration,
    result: serde_json::Value,
}

/// A master fed with `hosts` agents' reports; a live child against it; deltas meanwhile.
async fn live(hosts: usize, seconds: u64, delta_rate: u64) -> Result<LiveFigures> {
    let master = Master::bind(
        CollectorConfig::default(),
        ClusterConfig::default(),
        "127.0.0.1:0".parse()?,
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let grpc: SocketAddr = master.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Stopped when this size is done, so it does not load the next one's measurements.
    let _stop = stop;
    tokio::spawn(master.serve(async {
        let _ = stopped.await;
    }));
    let mut client = CollectorClient::connect(format!("http://{grpc}"))
        .await?
        .max_encoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(1024);
    let mut acks = client
        .stream_reports(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    for h in 0..hosts {
        tx.send(host_report(h, hosts)).await?;
    }
    for _ in 0..hosts {
        let ack = acks.message().await?.context("ack stream ended")?;
        if !ack.error.is_empty() {
            bail!("report rejected: {}", ack.error);
        }
    }
    let exe = std::env::current_exe()?;
    let spawned = Instant::now();
    let mut child = Command::new(exe)
        .args([
            "--child-live",
            &grpc.to_string(),
            "--hosts",
            &hosts.to_string(),
        ])
        .args(["--seconds", &seconds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning the live child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send((line, Instant::now())).is_err() {
                return;
            }
        }
    });
    let mut first_frame = None;
    let mut first_data_frame = None;
    let mut data_frame = None;
    let mut seqs = vec![1u64; hosts];
    let mut sending = false;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / delta_rate.max(1)));
    let mut n = 0usize;
    loop {
        tokio::select! {
            line = line_rx.recv() => {
                let Some((line, at)) = line else { bail!("the live child ended early") };
                match line.as_str() {
                    "first-frame" => first_frame = Some(at - spawned),
                    "first-data-frame" => first_data_frame = Some(at - spawned),
                    "data-frame" => data_frame = Some(at - spawned),
                    "measuring" => sending = true,
                    json => {
                        let result: serde_json::Value = serde_json::from_str(json)?;
                        let _ = child.wait();
                        return Ok(LiveFigures {
                            first_frame: first_frame.context("no first frame")?,
                            first_data_frame: first_data_frame.context("no frame with data")?,
                            data_frame: data_frame.context("no data frame")?,
                            result,
                        });
                    }
                }
            }
            _ = tick.tick(), if sending => {
                let h = n % hosts;
                n += 1;
                seqs[h] += 1;
                let name = format!("node-{h:03}");
                let report = pb::Report {
                    agent_id: name.clone(),
                    hostname: name.clone(),
                    seq: seqs[h],
                    full: false,
                    timestamp_unix_ms: now_ms(),
                    nodes: vec![process_node(
                        &name,
                        1000 + (n % 90) as u32,
                        &format!("{h:04x}{:04x}c0ffee", 0),
                        (n % 100) as f64,
                        Some(tui_watch::wall_us()),
                    )],
                    ..Default::default()
                };
                tx.send(report).await?;
                let _ = acks.message().await?;
            }
        }
    }
}

fn run_child_model(nodes: usize, frames: usize) -> Result<serde_json::Value> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--child-model",
            &nodes.to_string(),
            "--frames",
            &frames.to_string(),
        ])
        .output()
        .context("spawning the model child")?;
    if !out.status.success() {
        bail!(
            "model child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(nodes) = args.child_model {
        return child_model(nodes, args.frames);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(master) = args.child_live {
        return runtime.block_on(child_live(master, args.hosts, args.seconds));
    }
    println!(
        "TUI figures, {WIDTH}x{HEIGHT} off-screen terminal, details panel open; goals: frame <= 16 ms \
         at 10,000 nodes, delta->screen p99 <= 100 ms, start->first frame <= 200 ms, memory <= 100 MB \
         at 10,000 nodes"
    );
    for &nodes in &args.nodes {
        let model = run_child_model(nodes, args.frames)?;
        let hosts = nodes.div_ceil(synthetic::NODES_PER_HOST);
        let live = runtime.block_on(live(hosts, args.seconds, args.delta_rate))?;
        println!("\n== {} nodes ({hosts} hosts) ==", model["nodes"]);
        println!(
            "memory: {:.1} MB for the model (process RSS {:.1} -> {:.1} MB)",
            model["rss_after_mb"].as_f64().unwrap_or(0.0)
                - model["rss_before_mb"].as_f64().unwrap_or(0.0),
            model["rss_before_mb"].as_f64().unwrap_or(0.0),
            model["rss_after_mb"].as_f64().unwrap_or(0.0),
        );
        println!(
            "baseline frame (one paragraph): p50 {:.2} ms p99 {:.2} ms",
            model["floor_p50_ms"].as_f64().unwrap_or(0.0),
            model["floor_p99_ms"].as_f64().unwrap_or(0.0)
        );
        println!(
            "{:<12} {:>6}  {:>20}  {:>20}  {:>20}",
            "view (ms)", "rows", "frame p50/p99/max", "values p50/p99/max", "members p50/p99/max"
        );
        if let Some(views) = model["views"].as_object() {
            for (name, v) in views {
                let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
                let three = |k: &str| {
                    format!(
                        "{:.2}/{:.2}/{:.2}",
                        f(&format!("{k}_p50_ms")),
                        f(&format!("{k}_p99_ms")),
                        f(&format!("{k}_max_ms"))
                    )
                };
                println!(
                    "{:<12} {:>6}  {:>20}  {:>20}  {:>20}",
                    name,
                    v["rows"],
                    three("steady"),
                    three("delta"),
                    three("members"),
                );
            }
        }
        let r = &live.result;
        println!(
            "start -> first frame {:.0} ms; -> first frame with data {:.0} ms; -> every host and \
             process on screen {:.0} ms (live master, gRPC)",
            live.first_frame.as_secs_f64() * 1000.0,
            live.first_data_frame.as_secs_f64() * 1000.0,
            live.data_frame.as_secs_f64() * 1000.0
        );
        for (key, what) in [
            ("delta", "delta at the TUI -> screen"),
            ("report", "agent report -> collector -> screen"),
        ] {
            let l = &r[key];
            let f = |k: &str| l[k].as_f64().unwrap_or(0.0);
            println!(
                "{what}, {} frames with news: p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
                l["samples"],
                f("p50_ms"),
                f("p99_ms"),
                f("max_ms"),
            );
        }
        println!("TUI RSS {:.0} MB", r["rss_mb"].as_f64().unwrap_or(0.0));
    }
    Ok(())
}
