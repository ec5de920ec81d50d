//! End-to-end launch throughput through the master, and offer latency.
//!
//! The cluster is real processes on loopback: `orca-master`, and `--agents` simulated agents
//! in a `sim-agents` process attached over the agent gRPC link (registration, launches,
//! status updates re-sent until acknowledged, acknowledgements, heartbeats), answering every
//! launch at once with TASK_RUNNING then TASK_FINISHED. One framework (this process) takes
//! every offer, fills it with `--task`-sized tasks and acknowledges every update. Launch
//! throughput is the rate of TASK_RUNNING updates the framework receives, over gRPC and over
//! the Mesos v1 HTTP API; the baseline in the same run is the cluster core called in-process
//! with in-process agents (no API, no agent link). The master's and the agents' CPU over the
//! window is printed beside each rate.
//!
//! Offer latency: `--offer-frameworks` HTTP frameworks on `--offer-agents` simulated agents;
//! frameworks in turn decline one of their offers (refuse_seconds 0) and the latency is the
//! time from that DECLINE to the OFFERS event (to whichever framework DRF picks) carrying the
//! same agent's resources again.
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use orca_bench::{
    cluster::{MasterProcess, SimAgents},
    procstat::{CpuUse, cpu_mark, cpu_use},
};
use orca_collector::CollectorConfig;
use orca_master::{
    api::mesos_http::client::{self, SchedulerClient},
    cluster::{
        AgentCommand, AgentInfo, Cluster, ClusterConfig, Event, FrameworkInfo, Operation,
        StatusSource, TaskInfo, TaskState, TaskStatus,
    },
    resources::{Resource, Resources},
    server::Master,
};
use orca_proto::{
    cluster::v1 as cpb,
    scheduler::v1::{
        self as pb, event, operation, scheduler_client::SchedulerClient as GrpcClient,
    },
};
use serde_json::json;
use tokio::sync::mpsc;

/// The same allocator as the `orca-master` binary, so the master measured here is the one shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// What each agent offers.
    #[arg(long, default_value = "cpus:32;mem:131072")]
    agent_resources: String,
    /// What each task takes.
    #[arg(long, default_value = "cpus:0.5;mem:256")]
    task: String,
    /// Measured seconds per front door.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Kept-alive connections the HTTP framework spreads its calls over.
    #[arg(long, default_value_t = 8)]
    http_connections: usize,
    /// gRPC connections the framework's acknowledgements are spread over.
    #[arg(long, default_value_t = 4)]
    grpc_connections: usize,
    /// Run only these (core, grpc, http, http-auth, ha, offers); all by default. `ha` is the
    /// HTTP door of a master whose registry is in ZooKeeper (a three-server ensemble with
    /// fsync), elected there, its agents following it: the steady cost of high availability.
    /// `http-auth` is the HTTP door of a master with `--credentials` and `--acls` (every call
    /// authenticated, every subscription and task authorized); `https-auth` the same over
    /// TLS, its agents proving themselves with client certificates (`--tls-ca`): the cost of
    /// the locked doors.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Offer-latency samples.
    #[arg(long, default_value_t = 2000)]
    offer_samples: usize,
    /// Simulated agents for the offer latency.
    #[arg(long, default_value_t = 1000)]
    offer_agents: usize,
    /// Frameworks sharing them.
    #[arg(long, default_value_t = 100)]
    offer_frameworks: usize,
}

/// The baseline's in-process master (its allocation loop runs; its ports are not used).
struct Setup {
    cluster: Cluster,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(agents: usize, agent_resources: &str) -> Result<Setup> {
    let config = ClusterConfig {
        offer_timeout: None,
        ..ClusterConfig::default()
    };
    let master = Master::bind(
        CollectorConfig::default(),
        config,
        "127.0.0.1:0".parse()?,
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let cluster = master.cluster.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(master.serve(async {
        let _ = stopped.await;
    }));
    let resources = Resources::parse(agent_resources)?;
    for i in 0..agents {
        let link = cluster
            .register_agent(
                AgentInfo {
                    id: None,
                    hostname: format!("sim-{i}"),
                    resources: resources.clone(),
                    attributes: Default::default(),
                    principal: None,
                },
                Vec::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::spawn(simulated_agent(
            cluster.clone(),
            link.agent_id,
            link.commands,
        ));
    }
    Ok(Setup {
        cluster,
        _stop: stop,
    })
}

/// Answers every launch at once: RUNNING, then FINISHED.
async fn simulated_agent(
    cluster: Cluster,
    agent_id: String,
    mut commands: mpsc::UnboundedReceiver<AgentCommand>,
) {
    while let Some(command) = commands.recv().await {
        if let AgentCommand::Launch {
            framework_id,
            tasks,
            ..
        } = command
        {
            for task in tasks {
                for state in [TaskState::Running, TaskState::Finished] {
                    let _ = cluster.status_update(
                        &framework_id,
                        TaskStatus {
                            task_id: task.task_id.clone(),
                            agent_id: agent_id.clone(),
                            state,
                            source: StatusSource::Executor,
                            reason: None,
                            message: None,
                            timestamp: 0.0,
                            uuid: Some(*uuid::Uuid::new_v4().as_bytes()),
                        },
                    );
                }
            }
        }
    }
}

/// How many `task`s fit in `offered`.
fn fit(offered: &Resources, task: &Resources) -> usize {
    task.iter()
        .filter_map(|r| {
            let want = task.scalar(&r.name).0;
            (want > 0).then(|| (offered.scalar(&r.name).0 / want) as usize)
        })
        .min()
        .unwrap_or(0)
}

/// Counts tasks reaching TASK_RUNNING in the measured window, each task once: an agent
/// re-sends an update until its acknowledgement arrives, and the master forwards every retry
/// (as Mesos does), so one task's TASK_RUNNING can reach the framework more than once.
struct Meter {
    started: Instant,
    warmup: Duration,
    window: Duration,
    running: u64,
    /// Tasks seen RUNNING (ids are `t<n>`), warm-up included.
    seen: std::collections::HashSet<u64>,
    repeated: u64,
}

impl Meter {
    fn new(warmup: u64, seconds: u64) -> Self {
        Meter {
            started: Instant::now(),
            warmup: Duration::from_secs(warmup),
            window: Duration::from_secs(seconds),
            running: 0,
            seen: Default::default(),
            repeated: 0,
        }
    }

    fn running(&mut self, task_id: &str) {
        let n = task_id
            .strip_prefix('t')
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the benchmark's task ids are t<n>");
        if !self.seen.insert(n) {
            self.repeated += 1;
            return;
        }
        let t = self.started.elapsed();
        if t >= self.warmup && t < self.warmup + self.window {
            self.running += 1;
        }
    }

    fn done(&self) -> bool {
        self.started.elapsed() >= self.warmup + self.window
    }

    fn rate(&self) -> f64 {
        self.running as f64 / self.window.as_secs_f64()
    }
}

fn framework(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        user: "root".into(),
        name: name.into(),
        roles: vec!["*".into()],
        ..Default::default()
    }
}

fn task_info(n: u64, agent_id: &str, resources: &Resources) -> TaskInfo {
    TaskInfo {
        task_id: format!("t{n}"),
        name: String::new(),
        agent_id: agent_id.to_owned(),
        resources: resources.clone(),
        command: Some(orca_master::cluster::CommandInfo {
            shell: true,
            value: "true".into(),
            ..Default::default()
        }),
        labels: Default::default(),
        kill_grace: None,
    }
}

/// The baseline: the framework calls the cluster core in-process.
async fn core(setup: &Setup, task: &Resources, args: &Args) -> Result<Meter> {
    let c = &setup.cluster;
    let mut sub = c
        .subscribe(framework("core"), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let fw = sub.framework_id.clone();
    let mut meter = Meter::new(args.warmup, args.seconds);
    let mut n = 0u64;
    while !meter.done() {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), sub.events.recv()).await
        else {
            anyhow::bail!("no event for 5 s (core)");
        };
        match event {
            Event::Offers(offers) => {
                for o in offers {
                    let tasks: Vec<TaskInfo> = (0..fit(&o.resources, task))
                        .map(|_| {
                            n += 1;
                            task_info(n, &o.agent_id, task)
                        })
                        .collect();
                    let _ = c.accept(
                        &fw,
                        std::slice::from_ref(&o.id),
                        vec![Operation::Launch(tasks)],
                        Some(Duration::ZERO),
                    );
                }
            }
            Event::Update(s) => {
                if s.state == TaskState::Running {
                    meter.running(&s.task_id);
                }
                if let Some(uuid) = s.uuid {
                    let _ = c.acknowledge(&fw, &s.agent_id, &s.task_id, uuid);
                }
            }
            _ => {}
        }
    }
    let _ = c.teardown(&fw).await;
    Ok(meter)
}

async fn grpc(addr: SocketAddr, task: &Resources, args: &Args) -> Result<Meter> {
    let mut client = GrpcClient::connect(format!("http://{addr}")).await?;
    let mut events = client
        .subscribe(pb::SubscribeRequest {
            framework_info: Some(pb::FrameworkInfo {
                user: "root".into(),
                name: "grpc".into(),
                roles: vec!["*".into()],
                ..Default::default()
            }),
            suppressed_roles: vec![],
        })
        .await?
        .into_inner();
    let mut header = None;
    let mut meter = Meter::new(args.warmup, args.seconds);
    let mut n = 0u64;
    let task_pb = orca_master::resources::proto::resources_to_proto(task);
    // Acknowledgements and accepts go out concurrently over the one HTTP/2 connection, a
    // bounded number at a time: a framework that reads events faster than it acknowledges
    // them is not measuring the master (its agents would re-send every update).
    let (ack_tx, mut ack_rx) = mpsc::channel::<pb::AcknowledgeRequest>(4096);
    let mut ackers = Vec::new();
    for _ in 0..args.grpc_connections.max(1) {
        ackers.push(GrpcClient::connect(format!("http://{addr}")).await?);
    }
    let acks = tokio::spawn(async move {
        let mut inflight = tokio::task::JoinSet::new();
        let mut next = 0;
        while let Some(ack) = ack_rx.recv().await {
            next = (next + 1) % ackers.len();
            let mut c = ackers[next].clone();
            inflight.spawn(async move { c.acknowledge(ack).await });
            while inflight.len() > 512 {
                inflight.join_next().await;
            }
        }
    });
    let mut accepts = tokio::task::JoinSet::new();
    while !meter.done() {
        let message = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .context("no event for 5 s (gRPC)")??
            .context("the stream ended")?;
        match message.kind {
            Some(event::Kind::Subscribed(s)) => {
                header = Some(pb::CallHeader {
                    framework_id: s.framework_id,
                    stream_id: s.stream_id,
                })
            }
            Some(event::Kind::Offers(offers)) => {
                for o in offers.offers {
                    let offered = orca_master::resources::proto::resources_from_proto(&o.resources)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    let tasks: Vec<cpb::Task> = (0..fit(&offered, task))
                        .map(|_| {
                            n += 1;
                            cpb::Task {
                                task_id: format!("t{n}"),
                                agent_id: o.agent_id.clone(),
                                resources: task_pb.clone(),
                                command: Some(cpb::Command {
                                    shell: true,
                                    value: "true".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }
                        })
                        .collect();
                    while accepts.len() >= 64 {
                        accepts.join_next().await;
                    }
                    let mut c = client.clone();
                    let request = pb::AcceptRequest {
                        header: header.clone(),
                        offer_ids: vec![o.id],
                        operations: vec![pb::Operation {
                            kind: Some(operation::Kind::Launch(pb::Launch { tasks })),
                        }],
                        refuse_seconds: 0.0,
                    };
                    accepts.spawn(async move { c.accept(request).await });
                }
            }
            Some(event::Kind::Update(s)) => {
                if s.state() == orca_proto::cluster::v1::TaskState::Running {
                    meter.running(&s.task_id);
                }
                let _ = ack_tx
                    .send(pb::AcknowledgeRequest {
                        header: header.clone(),
                        agent_id: s.agent_id,
                        task_id: s.task_id,
                        uuid: s.uuid,
                    })
                    .await;
            }
            _ => {}
        }
    }
    // Acknowledgements still queued would otherwise keep the next front door's master busy.
    acks.abort();
    if let Some(h) = header {
        let _ = client.teardown(h).await;
    }
    Ok(meter)
}

/// Credentials and ACLs for the `http-auth` door: the framework's principal may register in
/// any role and run tasks as root; the rules before its own are tried first for every task.
const BENCH_CREDENTIALS: &str = "bench bench-secret\nops ops-secret\n";
const BENCH_ACLS: &str = r#"{
    "register_frameworks": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "NONE"}},
        {"principals": {"values": ["bench"]}, "roles": {"type": "ANY"}}
    ],
    "run_tasks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "NONE"}},
        {"principals": {"values": ["bench"]}, "users": {"values": ["root"]}}
    ]
}"#;

async fn http(
    addr: SocketAddr,
    task: &Resources,
    args: &Args,
    authorization: Option<String>,
) -> Result<Meter> {
    let info = json!({ "user": "root", "name": "http", "roles": ["*"] });
    let mut s = SchedulerClient::subscribe_as(addr, info, authorization).await?;
    // Calls go over a pool of kept-alive connections.
    let (call_tx, call_rx) = async_channel(4096);
    for _ in 0..args.http_connections {
        let mut caller = s.caller().await?;
        let rx = call_rx.clone();
        tokio::spawn(async move {
            while let Ok(call) = rx.recv().await {
                let _ = caller.call_encoded(call).await;
            }
        });
    }
    let framework_id = mesos::Id {
        value: s.framework_id.clone(),
    };
    let task_resources: Vec<mesos::ResourceOut> = task
        .iter()
        .map(|r| mesos::ResourceOut {
            name: r.name.to_string(),
            kind: "SCALAR",
            scalar: mesos::ScalarValue {
                value: task.scalar(&r.name).as_f64(),
            },
        })
        .collect();
    let mut meter = Meter::new(args.warmup, args.seconds);
    let mut n = 0u64;
    while !meter.done() {
        let event: mesos::Event = s
            .next_event_as(Duration::from_secs(5))
            .await?
            .context("the stream ended")?;
        if let Some(offers) = event.offers {
            for offer in offers.offers {
                let offered: Resources = offer
                    .resources
                    .iter()
                    .filter_map(|r| Some(Resource::scalar(&r.name, r.scalar.as_ref()?.value)))
                    .collect();
                let task_infos = (0..fit(&offered, task))
                    .map(|_| {
                        n += 1;
                        let id = format!("t{n}");
                        mesos::TaskOut {
                            name: id.clone(),
                            task_id: mesos::Id { value: id },
                            agent_id: &offer.agent_id,
                            resources: &task_resources,
                            command: mesos::CommandOut {
                                shell: true,
                                value: "true",
                            },
                        }
                    })
                    .collect();
                let call = mesos::AcceptCall {
                    framework_id: &framework_id,
                    kind: "ACCEPT",
                    accept: mesos::Accept {
                        offer_ids: [&offer.id],
                        operations: [mesos::LaunchOp {
                            kind: "LAUNCH",
                            launch: mesos::Launch { task_infos },
                        }],
                        filters: mesos::Filters {
                            refuse_seconds: 0.0,
                        },
                    },
                };
                call_tx.send(serde_json::to_vec(&call)?).await.ok();
            }
        } else if let Some(update) = event.update {
            let status = update.status;
            if status.state == "TASK_RUNNING" {
                meter.running(&status.task_id.value);
            }
            let Some(uuid) = status.uuid.as_deref() else {
                continue;
            };
            let ack = mesos::AcknowledgeCall {
                framework_id: &framework_id,
                kind: "ACKNOWLEDGE",
                acknowledge: mesos::Acknowledge {
                    agent_id: &status.agent_id,
                    task_id: &status.task_id,
                    uuid,
                },
            };
            call_tx.send(serde_json::to_vec(&ack)?).await.ok();
        }
    }
    let (_, _) = s.call(json!({ "type": "TEARDOWN" })).await?;
    Ok(meter)
}

/// The HTTP framework's own Mesos JSON types, as a framework library has them: events are
/// decoded straight into the fields it reads (others are skipped) and calls encoded from
/// borrowed parts, so the framework's JSON work is not what the benchmark measures.
mod mesos {
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    pub struct Id {
        pub value: String,
    }

    #[derive(Deserialize)]
    pub struct Event {
        pub offers: Option<Offers>,
        pub update: Option<Update>,
    }

    #[derive(Deserialize)]
    pub struct Offers {
        pub offers: Vec<Offer>,
    }

    #[derive(Deserialize)]
    pub struct Offer {
        pub id: Id,
        pub agent_id: Id,
        pub resources: Vec<ResourceIn>,
    }

    #[derive(Deserialize)]
    pub struct ResourceIn {
        pub name: String,
        pub scalar: Option<ScalarValue>,
    }

    #[derive(Deserialize, Serialize)]
    pub struct ScalarValue {
        pub value: f64,
    }

    #[derive(Deserialize)]
    pub struct Update {
        pub status: Status,
    }

    #[derive(Deserialize)]
    pub struct Status {
        pub state: String,
        pub agent_id: Id,
        pub task_id: Id,
        pub uuid: Option<String>,
    }

    #[derive(Serialize)]
    pub struct ResourceOut {
        pub name: String,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub scalar: ScalarValue,
    }

    #[derive(Serialize)]
    pub struct AcceptCall<'a> {
        pub framework_id: &'a Id,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub accept: Accept<'a>,
    }

    #[derive(Serialize)]
    pub struct Accept<'a> {
        pub offer_ids: [&'a Id; 1],
        pub operations: [LaunchOp<'a>; 1],
        pub filters: Filters,
    }

    #[derive(Serialize)]
    pub struct LaunchOp<'a> {
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub launch: Launch<'a>,
    }

    #[derive(Serialize)]
    pub struct Launch<'a> {
        pub task_infos: Vec<TaskOut<'a>>,
    }

    #[derive(Serialize)]
    pub struct TaskOut<'a> {
        pub name: String,
        pub task_id: Id,
        pub agent_id: &'a Id,
        pub resources: &'a [ResourceOut],
        pub command: CommandOut,
    }

    #[derive(Serialize)]
    pub struct CommandOut {
        pub shell: bool,
        pub value: &'static str,
    }

    #[derive(Serialize)]
    pub struct Filters {
        pub refuse_seconds: f64,
    }

    #[derive(Serialize)]
    pub struct AcknowledgeCall<'a> {
        pub framework_id: &'a Id,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub acknowledge: Acknowledge<'a>,
    }

    #[derive(Serialize)]
    pub struct Acknowledge<'a> {
        pub agent_id: &'a Id,
        pub task_id: &'a Id,
        pub uuid: &'a str,
    }
}

/// A small multi-consumer queue over tokio's mpsc (one receiver behind a mutex).
fn async_channel(capacity: usize) -> (mpsc::Sender<Vec<u8>>, SharedReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        tx,
        SharedReceiver(std::sync::Arc::new(tokio::sync::Mutex::new(rx))),
    )
}

#[derive(Clone)]
struct SharedReceiver(std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<Vec<u8>, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

/// DECLINE (refuse 0) of an offer to the next OFFERS of the same agent's resources, to any of
/// `frameworks` HTTP frameworks sharing `agents` simulated agents of a master process.
async fn offer_latency(args: &Args) -> Result<Histogram<u64>> {
    let master = MasterProcess::start(&["--offer-timeout", "0"])?;
    let agents = SimAgents::start(
        &master.grpc.to_string(),
        args.offer_agents,
        "cpus:4;mem:4096",
        &[],
    )?;
    // agent id -> when its offer was declined (waiting for its next offer).
    let declined: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    // Each framework's outstanding offers (agent id, offer id), oldest first.
    let mut held = Vec::new();
    let mut callers = Vec::new();
    for f in 0..args.offer_frameworks {
        let info = json!({ "user": "root", "name": format!("latency-{f}"), "roles": ["*"] });
        let mut s = SchedulerClient::subscribe(master.http, info).await?;
        callers.push(s.caller().await?);
        let offers: Arc<Mutex<VecDeque<(String, String)>>> = Arc::default();
        held.push(offers.clone());
        let (declined, latency) = (declined.clone(), latency.clone());
        tokio::spawn(async move {
            while let Ok(Some(event)) = s.next_event(Duration::from_secs(3600)).await {
                if event["type"] != "OFFERS" {
                    continue;
                }
                let now = Instant::now();
                for offer in event["offers"]["offers"].as_array().into_iter().flatten() {
                    let agent = offer["agent_id"]["value"].as_str().unwrap_or("").to_owned();
                    let id = offer["id"]["value"].as_str().unwrap_or("").to_owned();
                    if let Some(at) = declined.lock().unwrap().remove(&agent) {
                        let _ = latency
                            .lock()
                            .unwrap()
                            .record(now.duration_since(at).as_micros().max(1) as u64);
                    }
                    offers.lock().unwrap().push_back((agent, id));
                }
            }
        });
    }
    // Every agent is offered before the measurement starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.iter().map(|h| h.lock().unwrap().len()).sum::<usize>() < args.offer_agents {
        if Instant::now() > deadline {
            anyhow::bail!("not every agent was offered within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Frameworks decline in turn, each its oldest offer, at most 64 waiting at once.
    let mut sent = 0;
    let mut f = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while latency.lock().unwrap().len() < args.offer_samples as u64 {
        if Instant::now() > deadline {
            anyhow::bail!("offer latency: too few samples within 120 s");
        }
        if declined.lock().unwrap().len() >= 64 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        f = (f + 1) % held.len();
        let Some((agent, offer)) = held[f].lock().unwrap().pop_front() else {
            continue;
        };
        declined.lock().unwrap().insert(agent, Instant::now());
        callers[f]
            .call(json!({
                "type": "DECLINE",
                "decline": { "offer_ids": [{ "value": offer }], "filters": { "refuse_seconds": 0.0 } }
            }))
            .await?;
        sent += 1;
    }
    let _ = sent;
    drop(agents);
    drop(master);
    let h = latency.lock().unwrap().clone();
    Ok(h)
}

/// A three-server ZooKeeper ensemble with fsync for the HA door, stopped when dropped.
struct ZkEnsemble {
    ensemble: orca_zk_local::Ensemble,
    dir: std::path::PathBuf,
    url: String,
}

impl ZkEnsemble {
    async fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("orca-launch-zk-{}", std::process::id()));
        let ensemble = orca_zk_local::Ensemble::new(&dir, "launch", 3, 21870);
        let starting = ensemble.clone();
        tokio::task::spawn_blocking(move || starting.start(Duration::from_secs(60))).await??;
        let url = format!("zk://{}/orca-launch", ensemble.connect_string());
        Ok(ZkEnsemble { ensemble, dir, url })
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        self.ensemble.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU of a process over the measured window of a door (started at `warmup`).
fn window_cpu(pid: u32, warmup: u64, seconds: u64) -> tokio::task::JoinHandle<Option<CpuUse>> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let from = cpu_mark(pid).ok()?;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        Some(cpu_use(from, cpu_mark(pid).ok()?))
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let task = Resources::parse(&args.task)?;
    println!(
        "launch throughput: {} simulated agents of {}, tasks of {}, {} s measured after {} s warm-up",
        args.agents, args.agent_resources, args.task, args.seconds, args.warmup
    );
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|o| o == key);
    let mut baseline = f64::NAN;
    if wanted("core") {
        let setup = start(args.agents, &args.agent_resources).await?;
        baseline = core(&setup, &task, &args).await?.rate();
        println!(
            "  {:<40} {baseline:>8.0} tasks/s to TASK_RUNNING",
            "core (baseline: in-process, no API)"
        );
    }
    let mut http_rate = f64::NAN;
    let secrets = std::env::temp_dir().join(format!("launch-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&secrets)?;
    let (credentials, acls) = (secrets.join("credentials"), secrets.join("acls.json"));
    std::fs::write(&credentials, BENCH_CREDENTIALS)?;
    std::fs::write(&acls, BENCH_ACLS)?;
    orca_auth::tls::cert_gen::write_local_set(&secrets, &[])?;
    let pem = |name: &str| secrets.join(name).to_string_lossy().into_owned();
    let (ca, master_cert, master_key, agent_cert, agent_key) = (
        pem("ca.pem"),
        pem("master.pem"),
        pem("master.key"),
        pem("agent.pem"),
        pem("agent.key"),
    );
    for (key, door) in [
        ("grpc", "gRPC"),
        ("http", "Mesos v1 HTTP"),
        ("http-auth", "Mesos v1 HTTP, --credentials and --acls"),
        (
            "https-auth",
            "Mesos v1 HTTPS, --credentials, --acls, agents' mTLS",
        ),
        ("ha", "Mesos v1 HTTP, HA master (ZooKeeper registry)"),
    ] {
        if !wanted(key) {
            continue;
        }
        let ensemble = if key == "ha" {
            Some(ZkEnsemble::start().await?)
        } else {
            None
        };
        let zk = ensemble.as_ref().map(|e| e.url.clone());
        let mut flags = vec!["--offer-timeout", "0"];
        if let Some(zk) = &zk {
            flags.extend(["--zk", zk.as_str()]);
        }
        if key == "https-auth" {
            flags.extend([
                "--tls-cert",
                &master_cert,
                "--tls-key",
                &master_key,
                "--tls-ca",
                &ca,
            ]);
        }
        if key.ends_with("-auth") {
            flags.extend([
                "--credentials",
                credentials.to_str().context("a temporary path")?,
                "--acls",
                acls.to_str().context("a temporary path")?,
            ]);
        }
        let master = MasterProcess::start(&flags)?;
        if zk.is_some() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !client::get_json(master.http, "/metrics/snapshot")
                .await
                .is_ok_and(|m| m["master/elected"] == 1.0)
            {
                anyhow::ensure!(Instant::now() < deadline, "the HA master was not elected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let agent_tls = [
            "--tls-ca",
            &ca,
            "--tls-cert",
            &agent_cert,
            "--tls-key",
            &agent_key,
        ];
        let tls = key == "https-auth";
        let agents = SimAgents::start(
            zk.as_deref().unwrap_or(&master.grpc.to_string()),
            args.agents,
            &args.agent_resources,
            if tls { &agent_tls } else { &[] },
        )?;
        client::use_tls(
            tls.then(|| orca_auth::tls::ClientTls {
                ca: Some(secrets.join("ca.pem")),
                identity: None,
            })
            .as_ref(),
        )?;
        let master_cpu = window_cpu(master.pid(), args.warmup, args.seconds);
        let agents_cpu = window_cpu(agents.pid(), args.warmup, args.seconds);
        let meter = match key {
            "grpc" => grpc(master.grpc, &task, &args).await?,
            "http-auth" | "https-auth" => {
                let basic = client::basic("bench", "bench-secret");
                http(master.http, &task, &args, Some(basic)).await?
            }
            _ => http(master.http, &task, &args, None).await?,
        };
        let rate = meter.rate();
        client::use_tls(None)?;

        let (master_cpu, agents_cpu) = (master_cpu.await?, agents_cpu.await?);
        let counts = agents.finish()?;
        let cpu = |c: Option<CpuUse>| c.map_or("-".into(), |c| format!("{:.0}%", c.total()));
        println!(
            "  {:<40} {rate:>8.0} tasks/s to TASK_RUNNING   ({:.2}x baseline; master cpu {}, agents cpu {}; agents launched {}, updates {} + {} re-sent, acknowledged {}; each task counted once, {} repeated TASK_RUNNING not counted)",
            format!("{door}, agents over gRPC in another process"),
            rate / baseline,
            cpu(master_cpu),
            cpu(agents_cpu),
            counts["launched"],
            counts["updates_sent"],
            counts["updates_resent"],
            counts["acknowledged"],
            meter.repeated,
        );
        match key {
            "http" => http_rate = rate,
            "http-auth" if http_rate.is_finite() => println!(
                "  authenticated and authorized: {:.0} % of the plain HTTP rate in this run \
                 (goal >= 90 %)",
                100.0 * rate / http_rate
            ),
            "https-auth" if http_rate.is_finite() => println!(
                "  TLS, mutual TLS agents, authenticated and authorized: {:.0} % of the plain \
                 HTTP rate in this run (goal >= 90 %)",
                100.0 * rate / http_rate
            ),
            "ha" if http_rate.is_finite() => println!(
                "  HA master: {:.0} % of the single master's HTTP rate in this run (goal >= 80 %)",
                100.0 * rate / http_rate
            ),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&secrets);
    if wanted("offers") {
        let h = offer_latency(&args).await?;
        println!(
            "offer latency (DECLINE -> next OFFERS of the agent, HTTP, {} frameworks on {} agents over gRPC, {} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.offer_frameworks,
            args.offer_agents,
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}
