//! The agent's main loop: drain kernel events as they come, take a snapshot every interval,
//! turn it into a report, queue it for the collector, and export metrics.
use std::{
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::{Duration, Instant},
};

use orca_proto::topology::v1 as pb;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::{
    containers::{self, RuntimeSockets, SharedDirectory},
    engine::{Engine, EngineOptions},
    metrics::{AgentMetrics, ModeLabel},
    report::ReportBuilder,
    stream::{ReportQueue, send_reports},
};

/// How the agent runs (`orca-agent run`).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// How the host is observed (the container directory is made by `run`).
    pub engine: EngineOptions,
    /// The master: its gRPC address (`host:port` or URL), or `zk://…/path` to follow the
    /// leading master in ZooKeeper; without it reports are only counted.
    pub master: Option<String>,
    /// TLS to the master (`None`: plain connections).
    pub master_tls: Option<orca_auth::tls::ClientTls>,
    /// Full snapshot interval (host, processes, containers).
    pub interval: Duration,
    /// How often connection changes are sent between full snapshots.
    pub connection_interval: Duration,
    /// Prometheus endpoint address.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Export this node's topology series on `/metrics` too (a DaemonSet scraped directly).
    pub topology_metrics: Option<(
        orca_collector::exposition::ExpositionConfig,
        orca_collector::traffic::TrafficLimits,
    )>,
    /// Reports kept while the collector is unreachable.
    pub buffer: usize,
    /// ... and at most this many bytes of them (encoded).
    pub buffer_bytes: usize,
    /// A full report after this many deltas.
    pub full_every: u64,
    pub agent_id: Option<String>,
    /// Container runtimes to ask for container metadata.
    pub runtimes: RuntimeSockets,
    pub container_refresh: Duration,
    /// Run tasks for the master (needs `master`); `None` only observes.
    pub tasks: Option<TasksConfig>,
}

/// How the agent runs tasks for the master.
#[derive(Debug, Clone)]
pub struct TasksConfig {
    /// Sandboxes live under this directory.
    pub work_dir: std::path::PathBuf,
    /// Mesos text overriding or adding resources (`cpus:2;net_bw:1000`).
    pub resources: Option<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Kill every task when the agent stops (an agent that is not coming back, as under
    /// `orca up`); otherwise tasks outlive the agent process.
    pub kill_tasks_on_exit: bool,
    /// What to do with the tasks a previous run of the agent left.
    pub recover: Recover,
    /// Task cgroups are made under this path in each hierarchy (Mesos's `--cgroups_root`).
    pub cgroups_root: String,
}

/// Mesos's `--recover`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Recover {
    /// Take back the tasks a previous run left running and report those that ended.
    #[default]
    Reconnect,
    /// End every task a previous run left, forget its id and checkpoints, and exit: the next
    /// start registers as a new agent (for an incompatible upgrade or configuration change).
    Cleanup,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            master: None,
            master_tls: None,
            interval: Duration::from_secs(1),
            connection_interval: Duration::from_millis(250),
            metrics_addr: None,
            topology_metrics: None,
            buffer: 300,
            buffer_bytes: 16 << 20,
            full_every: 60,
            agent_id: None,
            runtimes: RuntimeSockets::default(),
            container_refresh: Duration::from_secs(5),
            tasks: None,
        }
    }
}

struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// How often pending kernel events are read even without a wakeup (the kernel only wakes the
/// reader when the ring is a quarter full, to save a wakeup per event).
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(tasks) = config
        .tasks
        .as_ref()
        .filter(|t| t.recover == Recover::Cleanup)
    {
        return clean_up_previous_run(tasks).await;
    }
    let directory = SharedDirectory::default();
    let mut engine = Engine::start(EngineOptions {
        containers: directory.clone(),
        ..config.engine.clone()
    })?;
    // Reports are only sent: their connections are encoded as they are made.
    engine.encode_connections(true);
    tokio::spawn(containers::watch(
        config.runtimes.clone(),
        directory.clone(),
        config.container_refresh,
    ));
    tracing::info!(mode = ?engine.mode(), reason = engine.reason(), "agent started");
    let metrics = Arc::new(match &config.topology_metrics {
        Some((exposition, traffic)) => {
            AgentMetrics::new().with_topology(exposition.clone(), *traffic)
        }
        None => AgentMetrics::new(),
    });
    let mode = match engine.mode() {
        pb::ProbeMode::Ebpf => "ebpf",
        _ => "proc",
    };
    metrics
        .probe_mode
        .get_or_create(&ModeLabel { mode: mode.into() })
        .set(1);

    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot serve metrics on {addr}: {e}; choose another --metrics-addr")
        })?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
    }

    let queue = Arc::new(ReportQueue::new(config.buffer, config.buffer_bytes));
    let (need_full_tx, mut need_full_rx) = mpsc::channel(1);
    let work_dir = config.tasks.as_ref().map(|t| t.work_dir.as_path());
    let master = config
        .master
        .as_deref()
        .map(|m| {
            crate::master_switch::MasterSwitch::new(m, work_dir)
                .map(|s| s.with_tls(config.master_tls.clone()))
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("--master: {e}"))?;
    if let Some(master) = master.clone() {
        tokio::spawn(send_reports(
            master,
            queue.clone(),
            need_full_tx,
            metrics.clone(),
        ));
    }
    let mut task_manager = None;
    if let (Some(master), Some(tasks)) = (master, config.tasks.clone()) {
        // Observing is the agent's first job: it goes on when tasks cannot be run here.
        let kill_on_exit = tasks.kill_tasks_on_exit;
        let control = containers::control::ContainerControl::new(
            config.runtimes.clone(),
            directory.clone(),
            tasks.work_dir.join("container-logs"),
        );
        match start_tasks(master, tasks, engine.hostname().to_string(), control).await {
            Ok(manager) => task_manager = kill_on_exit.then_some(manager),
            // Its tasks are left as they are, running: nothing is lost by refusing to start.
            Err(StartError::Unsafe(why)) => return Err(why.into()),
            Err(StartError::Other(why)) => tracing::warn!(
                "not running tasks for the master: {why:#}; the agent only observes \
                 (fix the cause, or pass --no-tasks to say so)"
            ),
        }
    }
    let agent_id = config
        .agent_id
        .clone()
        .unwrap_or_else(|| engine.hostname().to_string());
    let mut builder =
        ReportBuilder::new(agent_id, engine.hostname().to_string(), config.full_every);
    let ring = match engine.ring_fd() {
        // SAFETY: the fd is the ring buffer map's, owned by `engine`, which is declared before
        // `ring` and so outlives it; it is never closed or replaced while the agent runs.
        Some(fd) => Some(
            unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("cannot watch the eBPF ring buffer: {e}"))?,
        ),
        None => None,
    };
    let mut report_tick = tokio::time::interval(config.interval);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection_tick = tokio::time::interval(config.connection_interval);
    connection_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            readable = async { ring.as_ref().unwrap().readable().await }, if ring.is_some() => {
                let mut guard = readable?;
                engine.drain_events();
                guard.clear_ready();
            }
            _ = drain_tick.tick() => {
                engine.drain_events();
            }
            Some(()) = need_full_rx.recv() => {
                builder.request_full();
                publish(&mut engine, &mut builder, &queue, &metrics, config.master.is_some());
            }
            _ = report_tick.tick() => {
                publish(&mut engine, &mut builder, &queue, &metrics, config.master.is_some());
            }
            _ = connection_tick.tick() => {
                publish_connections(&mut engine, &mut builder, &queue, &metrics, config.master.is_some());
            }
        }
    }
    if let Some(manager) = task_manager {
        manager.shutdown_all(Duration::from_secs(5)).await;
        // Nothing is left to take back: the next start begins afresh.
        let meta = crate::tasks::checkpoint::meta_dir(&manager.config().work_dir);
        let _ = std::fs::remove_dir_all(meta);
    }
    tracing::info!("agent stopped");
    Ok(())
}

fn publish(
    engine: &mut Engine,
    builder: &mut ReportBuilder,
    queue: &ReportQueue,
    metrics: &AgentMetrics,
    streaming: bool,
) {
    let started = Instant::now();
    let snapshot = engine.snapshot(builder.next_is_full());
    metrics
        .snapshot_seconds
        .set(started.elapsed().as_secs_f64());
    send(snapshot, engine, builder, queue, metrics, streaming);
}

/// Between full snapshots: a delta of the connections that changed, if any.
fn publish_connections(
    engine: &mut Engine,
    builder: &mut ReportBuilder,
    queue: &ReportQueue,
    metrics: &AgentMetrics,
    streaming: bool,
) {
    if builder.next_is_full() {
        return publish(engine, builder, queue, metrics, streaming);
    }
    if let Some(snapshot) = engine.connection_snapshot() {
        send(snapshot, engine, builder, queue, metrics, streaming);
    }
}

fn send(
    snapshot: crate::report::Snapshot,
    engine: &mut Engine,
    builder: &mut ReportBuilder,
    queue: &ReportQueue,
    metrics: &AgentMetrics,
    streaming: bool,
) {
    let counters = engine.counters();
    AgentMetrics::raise(&metrics.events_processed, counters.events_processed);
    AgentMetrics::raise(&metrics.events_lost, counters.events_lost);
    if snapshot.nodes.is_some() {
        AgentMetrics::raise_seconds(&metrics.cpu_seconds, engine.own_cpu_seconds());
        metrics.rss_bytes.set(snapshot.stats.rss_bytes as i64);
    }
    metrics.connections.set(engine.connection_count() as i64);
    if let Some(nodes) = &snapshot.nodes {
        metrics.processes.set(
            nodes
                .iter()
                .filter(|n| n.kind == pb::NodeKind::Process as i32)
                .count() as i64,
        );
    }
    let mut snapshot = snapshot;
    let connections = std::mem::take(&mut snapshot.encoded_connections);
    let report = builder.build(snapshot);
    metrics.record_report(&report, &connections);
    if streaming {
        let (queued, dropped) = queue.push_with(report, &connections);
        metrics.reports_buffered.set(queued as i64);
        AgentMetrics::raise(&metrics.reports_dropped, dropped);
        engine.buffered_reports = queued as u64;
        engine.dropped_reports = dropped;
    }
}

/// Why the agent does not run tasks.
enum StartError {
    /// Running them would be unsafe for the tasks a previous run left: the agent must stop.
    Unsafe(crate::tasks::RecoveryError),
    /// The host cannot run tasks: the agent goes on observing.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// Starts task execution and the link to the master, after checking this run may take back
/// what the previous one left (same boot, same configuration).
async fn start_tasks(
    master: crate::master_switch::MasterSwitch,
    tasks: TasksConfig,
    hostname: String,
    control: containers::control::ContainerControl,
) -> Result<crate::tasks::TaskManager, StartError> {
    use crate::tasks::{
        RecoveryError, TaskManager, TaskManagerConfig, capacity,
        cgroups::Driver,
        checkpoint::{AgentRecord, Continuity},
        link,
    };
    std::fs::create_dir_all(&tasks.work_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the work directory {}: {e}; choose another --work-dir",
            tasks.work_dir.display()
        )
    })?;
    let driver = Driver::detect().map_err(anyhow::Error::from)?;
    let resources = capacity::discover(&tasks.work_dir, tasks.resources.as_deref())
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    tracing::info!(%resources, cgroups = driver.version(), "running tasks for the master");
    let id_file = tasks.work_dir.join("agent_id");
    let mut manager_config = TaskManagerConfig::new(tasks.work_dir.clone(), driver);
    manager_config.cgroup_parent = tasks.cgroups_root.clone();
    let record = AgentRecord::new(
        &hostname,
        &resources.to_string(),
        &tasks.attributes,
        &manager_config.cgroup_parent,
    );
    let previous = AgentRecord::load(&tasks.work_dir)
        .map_err(|e| StartError::Unsafe(RecoveryError::Checkpoint(e)))?;
    match record.continuity(previous.as_ref()) {
        Continuity::First | Continuity::Same => {}
        Continuity::Rebooted => {
            // As Mesos's agent after a reboot: the tasks died with the host; this is a new
            // agent, and the master reports the old one's tasks lost.
            tracing::warn!(
                "the host rebooted since the agent's previous run: its tasks are gone; \
                 registering as a new agent"
            );
            forget_previous_run(&tasks.work_dir);
        }
        Continuity::Changed(changes) => {
            return Err(StartError::Unsafe(RecoveryError::Changed(changes)));
        }
    }
    record
        .save(&tasks.work_dir)
        .map_err(|e| anyhow::anyhow!("cannot checkpoint the agent: {e}"))?;
    let (manager, updates) = TaskManager::new(manager_config);
    let socket = crate::control::socket_path(&tasks.work_dir);
    let switch = master.clone();
    tokio::spawn(async move {
        if let Err(why) = crate::control::serve(socket, switch).await {
            tracing::warn!(
                "the agent's control door is closed: {why:#}; `orca-agent switch-master` cannot reach it (the master's SwitchAgentMaster still works)"
            );
        }
    });
    let mut config = link::LinkConfig::new(master, hostname, resources);
    config.attributes = tasks.attributes;
    config.containers = Some(control);
    config.id_file = Some(id_file);
    tokio::spawn(link::recover_and_run(
        config,
        manager.clone(),
        updates,
        None,
    ));
    Ok(manager)
}

/// Removes the agent's id and checkpoints: its next registration is a new agent's.
fn forget_previous_run(work_dir: &std::path::Path) {
    let _ = std::fs::remove_file(work_dir.join("agent_id"));
    let _ = std::fs::remove_dir_all(crate::tasks::checkpoint::meta_dir(work_dir));
}

/// `--recover=cleanup`: ends what the previous run left and forgets it, then stops.
async fn clean_up_previous_run(tasks: &TasksConfig) -> anyhow::Result<()> {
    use crate::tasks::{TaskManager, TaskManagerConfig, cgroups::Driver};
    let driver = Driver::detect()?;
    let mut config = TaskManagerConfig::new(tasks.work_dir.clone(), driver);
    config.cgroup_parent = tasks.cgroups_root.clone();
    let (manager, _updates) = TaskManager::new(config);
    let ended = manager.clean_up().await;
    forget_previous_run(&tasks.work_dir);
    tracing::info!(
        tasks = ?ended,
        "--recover=cleanup: ended {} task(s) of the previous run and forgot its id; start the \
         agent again without --recover=cleanup (it registers as a new agent)",
        ended.len()
    );
    Ok(())
}
