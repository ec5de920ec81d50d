//! Simulated agents for the master's benchmarks: `--agents` agents, each on its own
//! `orca.cluster.v1.AgentLink` stream to a real master over gRPC, as `orca-agent` speaks it:
//! register with resources, heartbeat, answer every launch at once with TASK_RUNNING then
//! TASK_FINISHED (or only TASK_RUNNING with `--keep-running`), re-send updates until the
//! master relays their acknowledgement, and end tasks on kill and framework shutdown.
//! `--master zk://…/path` follows the leading master in ZooKeeper: a broken link is made
//! again to the leader, re-registering under the same id with the tasks still running, and
//! every update not acknowledged is sent again. A master's `SwitchMaster` moves an agent to
//! the master URL it names (another ensemble's `zk://…`, or a gRPC address) the same way,
//! live, as `orca-agent` does.
//!
//! Runs as its own process so the master's cost is measured apart from its agents'. Prints
//! `ready <n>` once every agent is registered, then serves until its standard input closes,
//! and prints its counts as one JSON line on exit (with `duplicated`: tasks launched more
//! than once, on one agent or several).
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Parser;
use orca_proto::cluster::v1::{
    self as pb, TaskState, agent_link_client::AgentLinkClient, agent_message, master_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
struct Args {
    /// The master's gRPC address, or `zk://…/path` to follow the leader.
    #[arg(long)]
    master: String,
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// What each agent offers.
    #[arg(long, default_value = "cpus:32;mem:131072")]
    resources: String,
    /// Hostnames are `<prefix>-<n>`.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// HTTP/2 connections the agents' streams share.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Tasks stay RUNNING until killed (the default finishes them at once).
    #[arg(long)]
    keep_running: bool,
    /// An update not acknowledged within this is sent again.
    #[arg(long, default_value = "5", value_parser = seconds)]
    retry: Duration,
    /// The counts printed on exit also list every running task by framework
    /// (`running_tasks`), for a benchmark to compare with what its frameworks know.
    #[arg(long)]
    list_running: bool,
    #[command(flatten)]
    tls: orca_auth::tls::cli::ClientTlsArgs,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// What the agents did, for the benchmark to check against what it asked for.
#[derive(Default)]
struct Counts {
    registered: AtomicU64,
    reregistered: AtomicU64,
    /// Switches to another master URL a master asked for.
    switched: AtomicU64,
    launched: AtomicU64,
    updates_sent: AtomicU64,
    updates_resent: AtomicU64,
    acknowledged: AtomicU64,
    killed: AtomicU64,
    /// Launches per (framework, task): more than one is a duplicate.
    launches: std::sync::Mutex<HashMap<(String, String), u32>>,
    /// Running tasks and unacknowledged updates per agent, as each agent last saw them.
    running: std::sync::Mutex<HashMap<usize, usize>>,
    unacked: std::sync::Mutex<HashMap<usize, usize>>,
    /// framework -> its tasks running on the agents, at the end.
    running_tasks: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

/// The gRPC channels to the master to talk to now (the leader's, when following one).
struct Masters {
    locator: orca_leader::MasterLocator,
    tls: Option<orca_auth::tls::ClientTls>,
    connections: usize,
    current: tokio::sync::Mutex<Option<(String, Vec<tonic::transport::Channel>)>>,
}

impl Masters {
    async fn channel(&self, n: usize) -> Result<tonic::transport::Channel> {
        let url = self
            .locator
            .clone()
            .grpc_endpoint(Duration::from_secs(10))
            .await
            .context("no leading master known")?;
        let mut current = self.current.lock().await;
        if let Some((at, channels)) = current.as_ref()
            && *at == url
        {
            return Ok(channels[n % channels.len()].clone());
        }
        let mut channels = Vec::new();
        for _ in 0..self.connections.max(1) {
            channels.push(
                orca_auth::tls::endpoint(self.tls.as_ref(), &url)?
                    .connect()
                    .await
                    .with_context(|| format!("connecting to the master at {url}"))?,
            );
        }
        let channel = channels[n % channels.len()].clone();
        *current = Some((url, channels));
        Ok(channel)
    }
}

/// The masters of every URL agents follow (the one they started with and those they were
/// switched to); agents following one URL share its connections.
struct Targets {
    tls: Option<orca_auth::tls::ClientTls>,
    connections: usize,
    by_url: std::sync::Mutex<HashMap<String, Arc<Masters>>>,
}

impl Targets {
    fn get(&self, url: &str) -> Result<Arc<Masters>> {
        let mut by_url = self.by_url.lock().unwrap();
        if let Some(masters) = by_url.get(url) {
            return Ok(masters.clone());
        }
        let masters = Arc::new(Masters {
            locator: orca_leader::MasterLocator::new(url, Duration::from_secs(10))?,
            tls: self.tls.clone(),
            connections: self.connections,
            current: Default::default(),
        });
        by_url.insert(url.to_owned(), masters.clone());
        Ok(masters)
    }

    /// Lets go of the URLs no agent follows any more: their ZooKeeper sessions end, as a
    /// switched `orca-agent`'s do (the old ensemble must see no client left to be retired).
    fn release_unused(&self) {
        self.by_url
            .lock()
            .unwrap()
            .retain(|_, masters| Arc::strong_count(masters) > 1);
    }
}

/// How a link ended without an error.
enum Ended {
    /// The stream closed, the process stops, or another master leads.
    Closed,
    /// A master asked this agent to register with the masters of this URL.
    Switch(String),
}

/// What one agent keeps across links.
#[derive(Default)]
struct AgentState {
    agent_id: String,
    /// uuid -> the update, until acknowledged.
    unacked: HashMap<Vec<u8>, pb::AgentMessage>,
    /// task -> (framework, role, task), while running.
    running: HashMap<String, (String, String, pb::Task)>,
}

fn update(framework_id: &str, task_id: &str, agent_id: &str, state: TaskState) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(agent_message::Kind::Status(pb::StatusUpdate {
            framework_id: framework_id.to_owned(),
            status: Some(pb::TaskStatus {
                task_id: task_id.to_owned(),
                agent_id: agent_id.to_owned(),
                state: state as i32,
                reason: String::new(),
                message: String::new(),
                timestamp: 0.0,
                uuid: uuid::Uuid::new_v4().as_bytes().to_vec(),
            }),
        })),
    }
}

/// One agent: links to the master until the process ends, re-registering after a broken
/// link (with a small backoff, or at once when another master leads).
async fn agent(
    targets: Arc<Targets>,
    args: Arc<Args>,
    n: usize,
    counts: Arc<Counts>,
    ready: mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut state = AgentState::default();
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    let mut masters = targets.get(&args.master).expect("checked in main");
    loop {
        let mut changed = masters.locator.clone();
        changed.mark_seen();
        let mut followed = changed.clone();
        let linked = tokio::select! {
            linked = link(&masters, &args, n, &counts, &mut state, &mut ready, stop.clone()) => linked,
            _ = stop.changed() => Ok(Ended::Closed),
            // A hung master's link does not end by itself: go to the new leader.
            () = followed.changed() => Ok(Ended::Closed),
        };
        if *stop.borrow() {
            counts
                .running
                .lock()
                .unwrap()
                .insert(n, state.running.len());
            counts
                .unacked
                .lock()
                .unwrap()
                .insert(n, state.unacked.len());
            let mut listed = counts.running_tasks.lock().unwrap();
            for (task, (framework, _, _)) in &state.running {
                listed
                    .entry(framework.clone())
                    .or_default()
                    .push(task.clone());
            }
            return;
        }
        match linked {
            Ok(Ended::Switch(url)) => match targets.get(&url) {
                Ok(to) => {
                    counts.switched.fetch_add(1, Ordering::Relaxed);
                    masters = to;
                    targets.release_unused();
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Err(e) => {
                    eprintln!("sim-agents: agent {n}: cannot switch to {url}: {e:#}; it stays")
                }
            },
            Ok(Ended::Closed) => backoff = Duration::from_millis(50),
            Err(e) => {
                if ready.is_some() && !args.master.starts_with("zk://") {
                    eprintln!("sim-agents: agent {n}: {e:#}");
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(1)),
            () = changed.changed() => backoff = Duration::from_millis(50),
        }
    }
}

/// One link: register (again), then answer the master until the link breaks.
async fn link(
    masters: &Masters,
    args: &Args,
    n: usize,
    counts: &Counts,
    state: &mut AgentState,
    ready: &mut Option<mpsc::Sender<()>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Ended> {
    let channel = masters.channel(n).await?;
    let resources = orca_master::resources::Resources::parse(&args.resources)?;
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    tx.send(pb::AgentMessage {
        kind: Some(agent_message::Kind::Register(pb::Register {
            agent_id: state.agent_id.clone(),
            hostname: format!("{}-{n}", args.prefix),
            resources: orca_master::resources::proto::resources_to_proto(&resources),
            attributes: Default::default(),
            running: state
                .running
                .values()
                .map(|(framework_id, role, task)| pb::RunningTask {
                    framework_id: framework_id.clone(),
                    role: role.clone(),
                    state: TaskState::Running as i32,
                    task: Some(task.clone()),
                })
                .collect(),
        })),
    })
    .await?;
    let mut inbound = AgentLinkClient::new(channel)
        .attach(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = inbound.message().await?.context("the link closed")?;
    let Some(master_message::Kind::Registered(registered)) = first.kind else {
        anyhow::bail!("the master's first message was not `registered`");
    };
    let first_time = state.agent_id.is_empty();
    state.agent_id = registered.agent_id;
    let agent_id = state.agent_id.clone();
    if first_time {
        counts.registered.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.reregistered.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(()).await;
    }
    // Everything not acknowledged goes to this master too.
    for message in state.unacked.values() {
        counts.updates_resent.fetch_add(1, Ordering::Relaxed);
        tx.send(message.clone()).await?;
    }
    let heartbeat =
        Duration::from_secs_f64(registered.heartbeat_interval_seconds.clamp(0.05, 60.0));
    let mut heartbeat = tokio::time::interval(heartbeat);
    let mut retry = tokio::time::interval(args.retry);
    retry.reset();
    async {
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(Ended::Closed),
                message = inbound.message() => {
                    let Some(message) = message? else { return Ok(Ended::Closed) };
                    let mut out = Vec::new();
                    match message.kind {
                        Some(master_message::Kind::Launch(launch)) => {
                            for task in &launch.tasks {
                                counts.launched.fetch_add(1, Ordering::Relaxed);
                                *counts
                                    .launches
                                    .lock()
                                    .unwrap()
                                    .entry((launch.framework_id.clone(), task.task_id.clone()))
                                    .or_default() += 1;
                                out.push(update(&launch.framework_id, &task.task_id, &agent_id, TaskState::Running));
                                if args.keep_running {
                                    state.running.insert(
                                        task.task_id.clone(),
                                        (launch.framework_id.clone(), launch.role.clone(), task.clone()),
                                    );
                                } else {
                                    out.push(update(&launch.framework_id, &task.task_id, &agent_id, TaskState::Finished));
                                }
                            }
                        }
                        Some(master_message::Kind::Kill(kill)) => {
                            if state.running.remove(&kill.task_id).is_some() {
                                counts.killed.fetch_add(1, Ordering::Relaxed);
                                out.push(update(&kill.framework_id, &kill.task_id, &agent_id, TaskState::Killed));
                            }
                        }
                        Some(master_message::Kind::ShutdownFramework(s)) => {
                            let ended: Vec<String> = state
                                .running
                                .iter()
                                .filter(|(_, (f, _, _))| *f == s.framework_id)
                                .map(|(t, _)| t.clone())
                                .collect();
                            for task in ended {
                                state.running.remove(&task);
                                out.push(update(&s.framework_id, &task, &agent_id, TaskState::Killed));
                            }
                        }
                        Some(master_message::Kind::Acknowledge(ack)) => {
                            if state.unacked.remove(&ack.uuid).is_some() {
                                counts.acknowledged.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(master_message::Kind::Container(c)) => {
                            out.push(pb::AgentMessage {
                                kind: Some(agent_message::Kind::ContainerReply(pb::ContainerReply {
                                    request_id: c.request_id,
                                    error: "a simulated agent has no containers".into(),
                                    log: Vec::new(),
                                    done: true,
                                })),
                            });
                        }
                        Some(master_message::Kind::Shutdown(shutdown)) => {
                            // Marked gone: its tasks are dropped and it does not come back.
                            state.running.clear();
                            anyhow::bail!("agent {agent_id} marked gone: {}", shutdown.message);
                        }
                        Some(master_message::Kind::SwitchMaster(switch)) => {
                            // Registers there at once, with its tasks and updates.
                            return Ok(Ended::Switch(switch.master));
                        }
                        Some(master_message::Kind::Registered(_)) | None => {}
                    }
                    // Every update is kept before the first send awaits: this future may be
                    // dropped at an await (another master leads), and what it has not sent
                    // yet must still be re-sent to the next one.
                    for message in &out {
                        if let Some(agent_message::Kind::Status(s)) = &message.kind
                            && let Some(status) = &s.status
                        {
                            state.unacked.insert(status.uuid.clone(), message.clone());
                            counts.updates_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for message in out {
                        tx.send(message).await?;
                    }
                }
                _ = heartbeat.tick() => {
                    tx.send(pb::AgentMessage {
                        kind: Some(agent_message::Kind::Heartbeat(pb::Heartbeat {})),
                    })
                    .await?;
                }
                _ = retry.tick() => {
                    for message in state.unacked.values() {
                        counts.updates_resent.fetch_add(1, Ordering::Relaxed);
                        tx.send(message.clone()).await?;
                    }
                }
            }
        }
    }
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let targets = Arc::new(Targets {
        tls: args.tls.client()?,
        connections: args.connections,
        by_url: Default::default(),
    });
    targets.get(&args.master)?;
    let counts = Arc::new(Counts::default());
    let (ready_tx, mut ready_rx) = mpsc::channel(args.agents.max(1));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for n in 0..args.agents {
        let (targets, args, counts, ready) = (
            targets.clone(),
            args.clone(),
            counts.clone(),
            ready_tx.clone(),
        );
        agents.spawn(agent(targets, args, n, counts, ready, stop.clone()));
    }
    drop(ready_tx);
    for _ in 0..args.agents {
        if ready_rx.recv().await.is_none() {
            anyhow::bail!("an agent ended before registering (see above)");
        }
    }
    println!("ready {}", args.agents);
    // Serve until the benchmark closes our standard input.
    let _ =
        tokio::task::spawn_blocking(|| std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]))
            .await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while agents.join_next().await.is_some() {}
    })
    .await;
    agents.abort_all();
    let running: usize = counts.running.lock().unwrap().values().sum();
    let unacked: usize = counts.unacked.lock().unwrap().values().sum();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let duplicated = counts
        .launches
        .lock()
        .unwrap()
        .values()
        .filter(|n| **n > 1)
        .count();
    let mut report = serde_json::json!({
            "registered": load(&counts.registered),
            "reregistered": load(&counts.reregistered),
            "switched": load(&counts.switched),
            "duplicated": duplicated,
            "running": running,
            "unacknowledged": unacked,
            "launched": load(&counts.launched),
            "updates_sent": load(&counts.updates_sent),
            "updates_resent": load(&counts.updates_resent),
            "acknowledged": load(&counts.acknowledged),
            "killed": load(&counts.killed),
    });
    if args.list_running {
        report["running_tasks"] = serde_json::json!(*counts.running_tasks.lock().unwrap());
    }
    println!("{report}");
    Ok(())
}
