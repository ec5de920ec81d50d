//! Simulated agents for the master's benchmarks: `--agents` agents, each on its own
//! `orca.cluster.v1.AgentLink` stream to a real master over gRPC, as `orca-agent` speaks it:
//! register with resources, heartbeat, answer every launch at once with TASK_RUNNING then
//! TASK_FINISHED (or only TASK_RUNNING with `--keep-running`), re-send updates until the
//! master relays their acknowledgement, and end tasks on kill and framework shutdown.
//!
//! Runs as its own process so the master's cost is measured apart from its agents'. Prints
//! `ready <n>` once every agent is registered, then serves until its standard input closes,
//! and prints its counts as one JSON line on exit.
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
    /// The master's gRPC address.
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
    launched: AtomicU64,
    updates_sent: AtomicU64,
    updates_resent: AtomicU64,
    acknowledged: AtomicU64,
    killed: AtomicU64,
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

/// One agent's link: register, then answer the master until the link breaks.
async fn agent(
    channel: tonic::transport::Channel,
    args: Arc<Args>,
    n: usize,
    counts: Arc<Counts>,
    ready: mpsc::Sender<()>,
) -> Result<()> {
    let resources = orca_master::resources::Resources::parse(&args.resources)?;
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    tx.send(pb::AgentMessage {
        kind: Some(agent_message::Kind::Register(pb::Register {
            agent_id: String::new(),
            hostname: format!("{}-{n}", args.prefix),
            resources: orca_master::resources::proto::resources_to_proto(&resources),
            attributes: Default::default(),
            running: Vec::new(),
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
    let agent_id = registered.agent_id;
    counts.registered.fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(()).await;
    let heartbeat =
        Duration::from_secs_f64(registered.heartbeat_interval_seconds.clamp(0.05, 60.0));
    let mut heartbeat = tokio::time::interval(heartbeat);
    let mut retry = tokio::time::interval(args.retry);
    // uuid -> the update, until acknowledged.
    let mut unacked: HashMap<Vec<u8>, pb::AgentMessage> = HashMap::new();
    // task -> framework, while running.
    let mut running: HashMap<String, String> = HashMap::new();
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { return Ok(()) };
                let mut out = Vec::new();
                match message.kind {
                    Some(master_message::Kind::Launch(launch)) => {
                        for task in &launch.tasks {
                            counts.launched.fetch_add(1, Ordering::Relaxed);
                            out.push(update(&launch.framework_id, &task.task_id, &agent_id, TaskState::Running));
                            if args.keep_running {
                                running.insert(task.task_id.clone(), launch.framework_id.clone());
                            } else {
                                out.push(update(&launch.framework_id, &task.task_id, &agent_id, TaskState::Finished));
                            }
                        }
                    }
                    Some(master_message::Kind::Kill(kill)) => {
                        if running.remove(&kill.task_id).is_some() {
                            counts.killed.fetch_add(1, Ordering::Relaxed);
                            out.push(update(&kill.framework_id, &kill.task_id, &agent_id, TaskState::Killed));
                        }
                    }
                    Some(master_message::Kind::ShutdownFramework(s)) => {
                        let ended: Vec<String> = running
                            .iter()
                            .filter(|(_, f)| **f == s.framework_id)
                            .map(|(t, _)| t.clone())
                            .collect();
                        for task in ended {
                            running.remove(&task);
                            out.push(update(&s.framework_id, &task, &agent_id, TaskState::Killed));
                        }
                    }
                    Some(master_message::Kind::Acknowledge(ack)) => {
                        if unacked.remove(&ack.uuid).is_some() {
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
                    Some(master_message::Kind::Registered(_)) | None => {}
                }
                for message in out {
                    if let Some(agent_message::Kind::Status(s)) = &message.kind
                        && let Some(status) = &s.status
                    {
                        unacked.insert(status.uuid.clone(), message.clone());
                        counts.updates_sent.fetch_add(1, Ordering::Relaxed);
                    }
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
                for message in unacked.values() {
                    counts.updates_resent.fetch_add(1, Ordering::Relaxed);
                    tx.send(message.clone()).await?;
                }
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let url = if args.master.contains("://") {
        args.master.clone()
    } else {
        format!("http://{}", args.master)
    };
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            tonic::transport::Endpoint::from_shared(url.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to the master at {url}"))?,
        );
    }
    let counts = Arc::new(Counts::default());
    let (ready_tx, mut ready_rx) = mpsc::channel(args.agents.max(1));
    let mut agents = tokio::task::JoinSet::new();
    for n in 0..args.agents {
        let channel = channels[n % channels.len()].clone();
        let (args, counts, ready) = (args.clone(), counts.clone(), ready_tx.clone());
        agents.spawn(async move {
            if let Err(e) = agent(channel, args, n, counts, ready).await {
                eprintln!("sim-agents: agent {n}: {e:#}");
            }
        });
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
    agents.abort_all();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "registered": load(&counts.registered),
            "launched": load(&counts.launched),
            "updates_sent": load(&counts.updates_sent),
            "updates_resent": load(&counts.updates_resent),
            "acknowledged": load(&counts.acknowledged),
            "killed": load(&counts.killed),
        })
    );
    Ok(())
}
