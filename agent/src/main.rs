//! `orca-agent`: the node agent.
use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use orca_agent::{
    containers::{self, RuntimeSockets, SharedDirectory},
    engine::{Engine, EngineOptions},
    probe::ProbeChoice,
    report::ReportBuilder,
    runner,
};

#[derive(Parser, Debug)]
#[command(
    name = "orca-agent",
    version,
    about = "Orca node agent: eBPF topology probe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Print one full node report and exit.
    Report {
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        #[arg(long, value_enum, default_value = "auto")]
        probe: ProbeChoice,
        /// How long to observe before reporting (CPU% and events need an interval).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        observe: Duration,
        #[arg(long)]
        own_netns_only: bool,
        /// The name this host reports under (default: the system hostname).
        #[arg(long)]
        hostname: Option<String>,
        #[command(flatten)]
        runtimes: RuntimeArgs,
    },
    /// Observe continuously, stream reports to the collector and serve metrics.
    Run {
        /// The master: its gRPC address (e.g. 127.0.0.1:7070), or `zk://h1:2181,h2:2181/mesos`
        /// to follow the leading master of highly-available masters.
        #[arg(long, env = "ORCA_MASTER")]
        master: Option<String>,
        /// TLS to the master (masters with --tls-ca require --tls-cert/--tls-key).
        #[command(flatten)]
        tls: orca_auth::tls::cli::ClientTlsArgs,
        /// Prometheus metrics address, e.g. 127.0.0.1:9100.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Also serve this node's topology series (host, containers, traffic edges, top
        /// processes) on --metrics-addr, as the collector serves them for every node: for
        /// agents scraped directly (a DaemonSet) instead of through a collector.
        #[arg(long, requires = "metrics_addr")]
        topology_metrics: bool,
        #[command(flatten)]
        topology_series: orca_collector::cli::TopologyMetricsArgs,
        #[arg(long, value_enum, default_value = "auto")]
        probe: ProbeChoice,
        /// Full snapshot interval (processes, host, containers).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// How often connection changes are sent between full snapshots.
        #[arg(long, default_value = "250ms", value_parser = parse_duration)]
        connection_interval: Duration,
        /// How often open connections' byte counters are read from the kernel (eBPF mode;
        /// rounded to whole --interval). Lower it when Prometheus takes rates of traffic
        /// over short windows; closed connections always carry their exact final counts.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        counter_interval: Duration,
        /// Reports kept while the collector is unreachable (the oldest are dropped beyond).
        #[arg(long, default_value_t = 300)]
        buffer: usize,
        /// ... and at most this many MiB of them.
        #[arg(long, default_value_t = 16)]
        buffer_mib: usize,
        /// Send a full report after this many deltas.
        #[arg(long, default_value_t = 60)]
        full_every: u64,
        /// Track only sockets of the agent's own network namespace.
        #[arg(long)]
        own_netns_only: bool,
        /// Agent id in reports (default: the hostname).
        #[arg(long)]
        agent_id: Option<String>,
        /// The name this host reports under (default: the system hostname).
        #[arg(long)]
        hostname: Option<String>,
        #[command(flatten)]
        runtimes: RuntimeArgs,
        /// Turn on the eBPF programs' own diagnostics at this level (error, warn, info,
        /// debug, trace), logged by the agent; off by default.
        #[arg(long)]
        ebpf_log: Option<log::Level>,
        /// How often container metadata is read from the runtimes.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        container_refresh: Duration,
        /// Task sandboxes live under this directory.
        #[arg(long, default_value = "/var/lib/orca-agent")]
        work_dir: std::path::PathBuf,
        /// Resources to offer instead of (or besides) the discovered ones, in Mesos text
        /// form, e.g. `cpus:2;mem:2048;net_bw:1000`.
        #[arg(long)]
        resources: Option<String>,
        /// Attributes for placement, e.g. `rack:r1;zone:a`.
        #[arg(long)]
        attributes: Option<String>,
        /// Only observe and report; run no tasks for the master.
        #[arg(long)]
        no_tasks: bool,
        /// What to do with the tasks a previous run of the agent left running (Mesos's
        /// --recover): take them back, or end them all, forget this agent's id and exit.
        #[arg(long, value_enum, default_value = "reconnect")]
        recover: runner::Recover,
        /// Task cgroups are made under this path in each cgroup hierarchy (Mesos's
        /// --cgroups_root).
        #[arg(long, default_value = "orca")]
        cgroups_root: String,
    },
    /// Move the running agent on this host to another master or ZooKeeper ensemble without
    /// restarting it: it re-registers there with the same id and keeps its tasks. Without a
    /// master, print the one it follows now.
    SwitchMaster {
        /// The new master: `host:port`, or `zk://h1:2181,h2:2181/mesos` to follow the leader
        /// of highly-available masters.
        master: Option<String>,
        /// The running agent's --work-dir (its control socket is there).
        #[arg(long, default_value = "/var/lib/orca-agent")]
        work_dir: std::path::PathBuf,
        /// How long to wait for the agent to register with the new master (0: do not wait).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        wait: Duration,
    },
}

/// `orca-agent switch-master`: asks the running agent, through its control socket.
async fn switch_master(
    master: Option<String>,
    work_dir: &std::path::Path,
    wait: Duration,
) -> anyhow::Result<()> {
    use orca_proto::cluster::v1 as pb;
    let mut control =
        orca_agent::control::connect(&orca_agent::control::socket_path(work_dir)).await?;
    let Some(master) = master else {
        let now = control
            .get_master(pb::GetMasterRequest {})
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?
            .into_inner();
        match now.registered {
            true => println!("{} (registered as agent {})", now.master, now.agent_id),
            false => println!("{} (not registered with it now)", now.master),
        }
        return Ok(());
    };
    let reply = control
        .switch_master(pb::SwitchMasterRequest {
            master,
            wait_seconds: wait.as_secs_f64(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?
        .into_inner();
    let now = reply.now.unwrap_or_default();
    if now.master == reply.previous {
        println!("the agent already follows {}", now.master);
    } else if now.registered {
        println!(
            "switched from {} to {}: registered there as agent {} in {:.0} ms, its tasks kept",
            reply.previous,
            now.master,
            now.agent_id,
            reply.registered_after_seconds * 1000.0
        );
    } else {
        println!(
            "switched from {} to {}; the agent is registering there",
            reply.previous, now.master
        );
    }
    Ok(())
}

/// Where the container runtimes listen (absent sockets are skipped; "" disables one).
#[derive(clap::Args, Debug)]
struct RuntimeArgs {
    #[arg(
        long,
        env = "ORCA_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    docker_socket: String,
    #[arg(
        long,
        env = "ORCA_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_socket: String,
}

impl RuntimeArgs {
    fn sockets(&self) -> RuntimeSockets {
        let path = |s: &str| (!s.is_empty()).then(|| s.into());
        RuntimeSockets {
            docker: path(&self.docker_socket),
            containerd: path(&self.containerd_socket),
        }
    }
}

/// `rack:r1;zone:a` → {rack: r1, zone: a}.
fn parse_attributes(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            pair.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--attributes: {pair:?} is not key:value"))
        })
        .collect()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 1s or 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit in {s:?}: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// glibc raises its mmap threshold each time a large block is freed, after which transient
/// buffers (a sock_diag dump of every socket, an encoded full report) are carved from the heap
/// and their pages stay resident. Fixed thresholds send them to mmap and give them back.
fn bound_heap_growth() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}

fn main() -> ExitCode {
    bound_heap_growth();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("orca-agent: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Report {
                format: Format::Json,
                probe,
                observe,
                own_netns_only,
                hostname,
                runtimes,
            } => {
                let directory = SharedDirectory::default();
                containers::refresh(&runtimes.sockets(), &directory).await;
                let mut engine = Engine::start(EngineOptions {
                    probe,
                    own_netns_only,
                    hostname,
                    containers: directory,
                    ..Default::default()
                })?;
                let _ = engine.snapshot(true);
                tokio::time::sleep(observe).await;
                let hostname = engine.hostname().to_string();
                let mut builder = ReportBuilder::new(hostname.clone(), hostname, 1);
                let report = builder.build(engine.snapshot(true));
                let mut json = serde_json::to_value(&report)?;
                orca_proto::topology::v1::readable_addresses(&mut json);
                println!("{}", serde_json::to_string_pretty(&json)?);
                Ok(())
            }
            Command::Run {
                master,
                tls,
                metrics_addr,
                topology_metrics,
                topology_series,
                probe,
                interval,
                connection_interval,
                counter_interval,
                buffer,
                buffer_mib,
                full_every,
                own_netns_only,
                agent_id,
                hostname,
                runtimes,
                container_refresh,
                ebpf_log,
                work_dir,
                resources,
                attributes,
                no_tasks,
                recover,
                cgroups_root,
            } => {
                let attributes = parse_attributes(attributes.as_deref().unwrap_or(""))?;
                let tasks = (!no_tasks).then_some(runner::TasksConfig {
                    work_dir,
                    resources,
                    attributes,
                    kill_tasks_on_exit: false,
                    recover,
                    cgroups_root,
                });
                let config = runner::RunConfig {
                    engine: EngineOptions {
                        probe,
                        own_netns_only,
                        hostname,
                        ebpf_log,
                        counters_every: (counter_interval.as_secs_f64()
                            / interval.as_secs_f64().max(0.001))
                        .round()
                        .max(1.0) as u32,
                        ..Default::default()
                    },
                    master,
                    master_tls: tls.client()?,
                    interval,
                    connection_interval,
                    metrics_addr,
                    topology_metrics: topology_metrics
                        .then(|| (topology_series.exposition(), topology_series.traffic())),
                    buffer,
                    buffer_bytes: buffer_mib << 20,
                    full_every,
                    agent_id,
                    runtimes: runtimes.sockets(),
                    container_refresh,
                    tasks,
                };
                runner::run(config, shutdown_signal()).await
            }
            Command::SwitchMaster {
                master,
                work_dir,
                wait,
            } => switch_master(master, &work_dir, wait).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orca-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
