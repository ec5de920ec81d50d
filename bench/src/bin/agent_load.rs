//! Load generator for the node agent: opens new loopback TCP connections at a set rate while
//! holding a set number open, with the agent streaming reports to a sink, and measures:
//! - the whole cost on the node, one number: the agent's user + system time plus the kernel
//!   run time of its tracepoint programs (each % of one core), beside its parts (the counter
//!   reader runs inside the agent's own system call, so its time is already system time);
//! - peak RSS, events/s, events lost, connect-to-report latency;
//! - whether every connection was reported, by counting: per server port, the connections the
//!   load made must equal the CLOSED entries of the reports (one per single entry,
//!   `aggregated` per folded one). A connection missing inside a folded window makes the
//!   counts differ, and the run fails.
//!
//! Runs each probe mode in turn; the /proc mode is the baseline. Needs root.
//!
//! `cargo run --release -p orca-bench --bin agent-load -- --rate 5000 --open 10000`
use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use orca_bench::{
    procstat::{
        BpfStats, CpuUse, bpf_program_ids, bpf_programs_since, cpu_mark, cpu_use, peak_rss,
    },
    sink::{Arrivals, Sink},
};
use orca_proto::topology::v1::collector_server::CollectorServer;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Ebpf,
    Proc,
}

#[derive(Parser, Debug)]
struct Args {
    /// New connections per second.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Connections held open during the run.
    #[arg(long, default_value_t = 10_000)]
    open: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Probe modes to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ebpf,proc")]
    modes: Vec<Mode>,
    /// The agent binary (default: target/release/orca-agent next to this binary).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Listening ports the connections are spread over.
    #[arg(long, default_value_t = 16)]
    server_ports: usize,
    /// Measure the latency of every n-th new connection.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Internal: run as the server side.
    #[arg(long, hide = true)]
    serve: bool,
}

#[derive(Debug)]
struct Figures {
    mode: Mode,
    achieved_rate: f64,
    held_open: usize,
    agent_cpu: CpuUse,
    /// The agent's tracepoint programs' kernel run time, % of one core.
    kernel_cpu: f64,
    peak_rss_mb: f64,
    events_per_sec: f64,
    events_lost: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    sampled: u64,
    unreported: u64,
    /// Connections the load made (connected) over the whole run, and those the reports
    /// carried closed; ports where the two differ.
    made: u64,
    reported: u64,
    /// (port, made, reported, CLOSED entries to that port under any owner or direction).
    ports_differing: Vec<(u16, u64, u64, u64)>,
}

impl Figures {
    /// The whole cost on the node: agent user + system + its eBPF programs.
    fn node_cost(&self) -> f64 {
        self.agent_cpu.total() + self.kernel_cpu
    }
}

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

async fn scrape(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

/// A connection whose latency is measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    local_port: u16,
    server_port: u16,
    at: Instant,
    unix_ms: i64,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Connections made (connected) per server port.
type Made = Arc<Mutex<BTreeMap<u16, u64>>>;

/// One short-lived connection: connect, send 64 bytes, close, wait for the server's close.
async fn churn_one(server: SocketAddr, samples: Option<Samples>, made: Made) -> bool {
    let Ok(mut s) = TcpStream::connect(server).await else {
        return false;
    };
    *made.lock().unwrap().entry(server.port()).or_default() += 1;
    if let Some(samples) = samples
        && let Ok(local) = s.local_addr()
    {
        samples.lock().unwrap().push(Sample {
            local_port: local.port(),
            server_port: server.port(),
            at: Instant::now(),
            unix_ms: unix_ms(),
        });
    }
    if s.write_all(&[b'x'; 64]).await.is_err() {
        return false;
    }
    let _ = s.shutdown().await;
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf).await;
    true
}

async fn run_mode(args: &Args, mode: Mode, agent_bin: &PathBuf) -> Result<Figures> {
    let before_agent: HashSet<u32> = bpf_program_ids();
    // The counter reader runs by BPF_PROG_TEST_RUN in the agent's own system call: its time is
    // in the agent's system time already.
    let in_agent_context = orca_agent::probe::ebpf::COUNTER_READER;
    let tracepoint_time = |before: &HashSet<u32>| -> u64 {
        bpf_programs_since(before)
            .into_iter()
            .filter(|(name, _, _)| !in_agent_context.starts_with(name.as_str()))
            .map(|(_, ns, _)| ns)
            .sum()
    };
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let sink = Sink {
        arrivals: arrivals.clone(),
        watched_pid: std::process::id(),
    };
    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink_listener.local_addr()?;
    let sink_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CollectorServer::new(sink).max_decoding_message_size(256 << 20))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                sink_listener,
            )),
    );
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let agent = AgentProcess(
        Command::new(agent_bin)
            // The sink takes topology reports only: no task execution to attach.
            .args(["run", "--no-tasks", "--master", &sink_addr.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--probe", if mode == Mode::Ebpf { "ebpf" } else { "proc" }])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", agent_bin.display()))?,
    );
    let agent_pid = agent.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().first_report.is_none() {
        if Instant::now() > deadline {
            bail!("the agent sent no report within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut server_child = Command::new(std::env::current_exe()?)
        .args(["--serve", "--server-ports", &args.server_ports.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server_child.stdout.take().context("server stdout")?),
        &mut line,
    )?;
    let servers: Vec<SocketAddr> = line
        .trim()
        .split(',')
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .context("server child did not print its ports")?;
    let mut held = Vec::with_capacity(args.open as usize);
    for i in 0..args.open as usize {
        held.push(TcpStream::connect(servers[i % servers.len()]).await?);
    }

    let samples: Samples = Arc::new(Mutex::new(Vec::new()));
    let made: Made = Arc::default();
    let in_flight = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let per_tick = (args.rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let run_end = warmup_end + Duration::from_secs(args.seconds);
    let mut n: u64 = 0;
    let mut start = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= run_end {
            break;
        }
        if start.is_none() && now >= warmup_end {
            start = Some((
                cpu_mark(agent_pid)?,
                tracepoint_time(&before_agent),
                scrape(metrics, "orca_agent_events_processed_total")
                    .await
                    .unwrap_or(0.0),
                completed.load(Ordering::Relaxed),
                Instant::now(),
            ));
        }
        for _ in 0..per_tick {
            n += 1;
            let server = servers[(n as usize) % servers.len()];
            let sampled =
                (start.is_some() && n.is_multiple_of(args.sample_every)).then(|| samples.clone());
            let (completed, made, in_flight) = (completed.clone(), made.clone(), in_flight.clone());
            in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if churn_one(server, sampled, made).await {
                    completed.fetch_add(1, Ordering::Relaxed);
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
    let (cpu0, bpf0, events0, done0, t0) = start.context("the run ended during the warm-up")?;
    let cpu1 = cpu_mark(agent_pid)?;
    if mode == Mode::Ebpf {
        for (name, ns, count) in bpf_programs_since(&before_agent) {
            eprintln!(
                "  {name:<16} {:>12} runs {:>8.0} ns/run (since load){}",
                count,
                ns as f64 / count.max(1) as f64,
                if in_agent_context.starts_with(name.as_str()) {
                    " (in the agent's system time)"
                } else {
                    ""
                }
            );
        }
    }
    let bpf1 = tracepoint_time(&before_agent);
    let events1 = scrape(metrics, "orca_agent_events_processed_total")
        .await
        .unwrap_or(0.0);
    let done1 = completed.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();

    // Every connection of the load ends (each waits for the server's close)...
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...then the reports carrying their closes arrive: until the counts match, or nothing
    // more arrived for 5 s after two more reports.
    let made = made.lock().unwrap().clone();
    let made_total: u64 = made.values().sum();
    let reports_at_end = arrivals.lock().unwrap().reports;
    let mut last = (0, Instant::now());
    loop {
        let (reported, reports) = {
            let a = arrivals.lock().unwrap();
            let to_load = servers
                .iter()
                .filter_map(|s| a.closed_by_port.get(&s.port()))
                .sum::<u64>();
            (to_load, a.reports)
        };
        if reported >= made_total && reports >= reports_at_end + 2 {
            break;
        }
        if reported != last.0 {
            last = (reported, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) && reports >= reports_at_end + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost = scrape(metrics, "orca_agent_events_lost_total")
        .await
        .unwrap_or(f64::NAN);
    let rss = peak_rss(agent_pid)?;
    drop(agent);
    sink_server.abort();
    let held_open = held.len();
    drop(held);
    drop(server_child.stdin.take());
    let _ = server_child.wait();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut unreported = 0;
    let samples = samples.lock().unwrap().clone();
    {
        let a = arrivals.lock().unwrap();
        for s in &samples {
            let t = &s.at;
            // Reported alone (by its port), or folded with others to the same server (by the
            // folded entry's time window, with a few ms for clock conversion).
            let alone = a
                .by_port
                .get(&s.local_port)
                .and_then(|v| v.iter().copied().filter(|at| at >= t).min());
            let folded = a.folded.get(&s.server_port).and_then(|v| {
                v.iter()
                    .filter(|(at, start, end)| {
                        at >= t && *start - 5 <= s.unix_ms && s.unix_ms <= *end + 5
                    })
                    .map(|(at, _, _)| *at)
                    .min()
            });
            let first = match (alone, folded) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match first {
                Some(at) => hist.record(at.duration_since(*t).as_micros().max(1) as u64)?,
                None => unreported += 1,
            }
        }
    }
    // The load's server ports only: the benchmark's own scrapes of the agent's metrics are
    // outbound connections of this process too.
    let load_ports: HashSet<u16> = servers.iter().map(|s| s.port()).collect();
    let closed: BTreeMap<u16, u64> = arrivals
        .lock()
        .unwrap()
        .closed_by_port
        .iter()
        .filter(|(port, _)| load_ports.contains(port))
        .map(|(port, n)| (*port, *n))
        .collect();
    let mut ports_differing = Vec::new();
    for port in load_ports {
        let (m, r) = (
            made.get(&port).copied().unwrap_or(0),
            closed.get(&port).copied().unwrap_or(0),
        );
        if m != r {
            let any = arrivals
                .lock()
                .unwrap()
                .closed_any_by_remote_port
                .get(&port)
                .copied()
                .unwrap_or(0);
            ports_differing.push((port, m, r, any));
        }
    }
    ports_differing.sort();
    Ok(Figures {
        made: made_total,
        reported: closed.values().sum(),
        ports_differing,
        mode,
        achieved_rate: (done1 - done0) as f64 / elapsed,
        held_open,
        agent_cpu: cpu_use(cpu0, cpu1),
        kernel_cpu: 100.0 * (bpf1.saturating_sub(bpf0)) as f64 / 1e9 / elapsed,
        peak_rss_mb: rss as f64 / (1024.0 * 1024.0),
        events_per_sec: (events1 - events0) / elapsed,
        events_lost: lost,
        latency_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        latency_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        latency_max_ms: hist.max() as f64 / 1000.0,
        sampled: samples.len() as u64,
        unreported,
    })
}

/// Raises the soft open-files limit to the hard one (raising the hard limit needs
/// CAP_SYS_RESOURCE, which a container may not have; hence client and server sides live in
/// two processes, each holding one socket per connection).
fn raise_nofile(open: u32) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers to initialised structs.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let need = open as u64 + 5_000;
    if lim.rlim_cur < need {
        bail!(
            "{open} open connections need {need} file descriptors; the limit is {}",
            lim.rlim_cur
        );
    }
    Ok(())
}

/// The server side, run as a child process: listens on `ports` ports, prints them, and
/// serves until its standard input closes.
fn serve_child(ports: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut addrs = Vec::new();
        for _ in 0..ports {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(l.local_addr()?.to_string());
            tokio::spawn(serve(l));
        }
        println!("{}", addrs.join(","));
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1])
        })
        .await;
        Ok(())
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.serve {
        raise_nofile(args.open)?;
        return serve_child(args.server_ports);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("agent-load needs root (eBPF, bpf_stats)");
    }
    raise_nofile(args.open)?;
    let agent_bin = match &args.agent {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary has a folder")?
            .join("orca-agent"),
    };
    let _stats = BpfStats::enable()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut all = Vec::new();
    for mode in &args.modes {
        eprintln!(
            "agent-load: {mode:?} mode, {} new conn/s, {} open, {} s",
            args.rate, args.open, args.seconds
        );
        let f = rt.block_on(run_mode(&args, *mode, &agent_bin))?;
        all.push(f);
    }
    println!(
        "{:<5} {:>10} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8} {:>10} {:>7} {:>8} {:>8} {:>8} {:>11} {:>19}",
        "mode",
        "new conn/s",
        "open",
        "node cost%",
        "user%",
        "sys%",
        "ebpf%",
        "rss MB",
        "events/s",
        "lost",
        "p50 ms",
        "p99 ms",
        "max ms",
        "unsampled",
        "reported/made"
    );
    for f in &all {
        println!(
            "{:<5} {:>10.0} {:>7} {:>10.2} {:>7.2} {:>7.2} {:>7.2} {:>8.1} {:>10.0} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>5}/{:<5} {:>9}/{:<9}",
            format!("{:?}", f.mode).to_lowercase(),
            f.achieved_rate,
            f.held_open,
            f.node_cost(),
            f.agent_cpu.user,
            f.agent_cpu.system,
            f.kernel_cpu,
            f.peak_rss_mb,
            f.events_per_sec,
            f.events_lost,
            f.latency_p50_ms,
            f.latency_p99_ms,
            f.latency_max_ms,
            f.unreported,
            f.sampled,
            f.reported,
            f.made,
        );
    }
    let mut failed = false;
    // /proc mode is the baseline that misses connections shorter than a scan; eBPF must not.
    for f in all.iter().filter(|f| f.mode == Mode::Ebpf) {
        if !f.ports_differing.is_empty() {
            failed = true;
            eprintln!(
                "agent-load: {:?} mode: reports and load disagree on {} of the server ports \
                 (port, made, reported, reported under any owner or direction): {:?}",
                f.mode,
                f.ports_differing.len(),
                &f.ports_differing[..f.ports_differing.len().min(8)]
            );
        }
    }
    if let (Some(e), Some(p)) = (
        all.iter().find(|f| f.mode == Mode::Ebpf),
        all.iter().find(|f| f.mode == Mode::Proc),
    ) {
        println!(
            "ebpf vs proc baseline: node cost x{:.2}, rss x{:.2}, short-lived connections reported {:.1}% vs {:.1}%",
            e.node_cost() / p.node_cost().max(1e-9),
            e.peak_rss_mb / p.peak_rss_mb.max(1e-9),
            100.0 * e.reported as f64 / e.made.max(1) as f64,
            100.0 * p.reported as f64 / p.made.max(1) as f64,
        );
    }
    if failed {
        bail!("not every connection the load made was reported exactly once");
    }
    Ok(())
}
