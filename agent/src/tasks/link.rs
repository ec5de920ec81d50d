//! The agent's side of the link to the master (`orca.cluster.v1.AgentLink`): register with
//! this host's resources and the tasks still running, then heartbeat, send status updates
//! (re-sent until the master relays the framework's acknowledgement) and usage, and carry
//! out launches, kills and framework shutdowns. Reconnects with backoff and re-registers
//! under the id the master gave.
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use orca_proto::cluster::v1::{
    self as pb, agent_link_client::AgentLinkClient, agent_message, master_message,
};
use orca_resources::{
    Resources,
    proto::{resources_from_proto, resources_to_proto},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{StatusUpdate, TaskManager, TaskSpec, TaskState};

/// Why the link to the master went down; the agent logs it and reconnects with backoff.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect: {}; is the master running and --master right?", orca_auth::tls::explain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Tls(#[from] orca_auth::tls::TlsError),
    #[error("registration refused: {}", orca_auth::tls::explain_status(.0))]
    Refused(tonic::Status),
    #[error("the link broke: {}", orca_auth::tls::explain_status(.0))]
    Broke(tonic::Status),
    #[error("the master closed the link")]
    Closed,
    #[error("the master's first message was not `registered`; is it an Orca master?")]
    NotRegistered,
    #[error("no leading master is known in ZooKeeper yet")]
    NoLeader,
    #[error(
        "the master shut this agent down ({0}): its tasks were killed and it does not \
         register again until it is started again (after MARK_AGENT_GONE: with an empty work \
         directory, as a new agent)"
    )]
    Gone(String),
    #[error("the master ended this agent's tasks ({0}); it registers again once the machine is up")]
    Down(String),
}

impl LinkError {
    /// A refusal that means the master marked this agent gone.
    fn refused(status: tonic::Status) -> Self {
        if status.code() == tonic::Code::PermissionDenied && status.message().contains("gone") {
            LinkError::Gone(status.message().to_owned())
        } else {
            LinkError::Refused(status)
        }
    }
}

/// A launched task this agent cannot run as sent.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("task {task}'s resources: {source}")]
    Resources {
        task: String,
        source: orca_resources::ResourceError,
    },
    #[error("task {0} has no command")]
    NoCommand(String),
}

#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The master: one address, or the leader followed in ZooKeeper; an operator may switch
    /// it while the agent runs.
    pub master: crate::master_switch::MasterSwitch,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
    /// An update not acknowledged within this is sent again.
    pub retry_interval: Duration,
    /// How often per-task usage is reported.
    pub usage_interval: Duration,
    /// Operator actions on this host's containers (`None`: refused with a reason).
    pub containers: Option<crate::containers::control::ContainerControl>,
    /// Where the agent keeps the id the master gave it, so a restarted agent re-registers as
    /// the same agent (Mesos keeps it in its work directory too). `None`: a new id each run.
    pub id_file: Option<std::path::PathBuf>,
}

impl LinkConfig {
    pub fn new(
        master: crate::master_switch::MasterSwitch,
        hostname: String,
        resources: Resources,
    ) -> Self {
        LinkConfig {
            master,
            hostname,
            resources,
            attributes: BTreeMap::new(),
            retry_interval: Duration::from_secs(10),
            usage_interval: Duration::from_secs(5),
            containers: None,
            id_file: None,
        }
    }
}

/// The id a previous run of this agent registered with, if it kept one.
fn saved_id(file: Option<&std::path::Path>) -> String {
    let Some(file) = file else {
        return String::new();
    };
    match std::fs::read_to_string(file) {
        Ok(id) => id.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            tracing::warn!(file = %file.display(), %e, "cannot read the saved agent id; registering as a new agent");
            String::new()
        }
    }
}

/// Keeps the id for the next run (written whole, then renamed into place).
fn save_id(file: &std::path::Path, id: &str) {
    let partial = file.with_extension("partial");
    let written = std::fs::write(&partial, id).and_then(|()| std::fs::rename(&partial, file));
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), %e, "cannot save the agent id; a restart will register as a new agent");
    }
}

fn update_to_proto(u: &StatusUpdate, agent_id: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(agent_message::Kind::Status(pb::StatusUpdate {
            framework_id: u.framework_id.clone(),
            status: Some(pb::TaskStatus {
                task_id: u.task_id.clone(),
                agent_id: agent_id.to_owned(),
                state: u.state as i32,
                reason: u.reason.clone().unwrap_or_default(),
                message: u.message.clone().unwrap_or_default(),
                timestamp: u.timestamp,
                uuid: u.uuid.to_vec(),
            }),
        })),
    }
}

/// A launched task as the task manager runs it.
pub fn spec_from_proto(
    framework_id: &str,
    user: &str,
    role: &str,
    task: &pb::Task,
) -> Result<TaskSpec, SpecError> {
    let resources =
        resources_from_proto(&task.resources).map_err(|source| SpecError::Resources {
            task: task.task_id.clone(),
            source,
        })?;
    let command = task
        .command
        .clone()
        .ok_or_else(|| SpecError::NoCommand(task.task_id.clone()))?;
    let mem = resources.scalar("mem").as_f64();
    let user = if command.user.is_empty() {
        user
    } else {
        &command.user
    };
    Ok(TaskSpec {
        framework_id: framework_id.to_owned(),
        task_id: task.task_id.clone(),
        name: task.name.clone(),
        shell: command.shell,
        value: command.value,
        arguments: command.arguments,
        environment: command.environment.into_iter().collect(),
        user: (!user.is_empty()).then(|| user.to_owned()),
        cpus: resources.scalar("cpus").as_f64(),
        mem_mb: (mem > 0.0).then_some(mem),
        labels: task.labels.clone().into_iter().collect(),
        kill_grace: (task.kill_grace_seconds > 0.0)
            .then(|| Duration::from_secs_f64(task.kill_grace_seconds)),
        resources: resources.to_string(),
        role: role.to_owned(),
    })
}

fn running_to_proto(spec: &TaskSpec, state: TaskState, agent_id: &str) -> pb::RunningTask {
    let resources = Resources::parse(&spec.resources).unwrap_or_default();
    pb::RunningTask {
        framework_id: spec.framework_id.clone(),
        role: spec.role.clone(),
        state: state as i32,
        task: Some(pb::Task {
            task_id: spec.task_id.clone(),
            name: spec.name.clone(),
            agent_id: agent_id.to_owned(),
            resources: resources_to_proto(&resources),
            command: Some(pb::Command {
                shell: spec.shell,
                value: spec.value.clone(),
                arguments: spec.arguments.clone(),
                environment: spec.environment.iter().cloned().collect(),
                user: spec.user.clone().unwrap_or_default(),
            }),
            labels: spec.labels.clone().into_iter().collect(),
            kill_grace_seconds: spec.kill_grace.map_or(0.0, |g| g.as_secs_f64()),
        }),
    }
}

/// An agent starting: takes back the tasks a previous run of it left
/// ([`TaskManager::recover`]), then attaches to the master and serves it ([`run`]). Recovering
/// first means the agent registers with the tasks it still runs, and the master reports lost
/// only those it could not take back.
pub async fn recover_and_run(
    config: LinkConfig,
    manager: TaskManager,
    updates: mpsc::UnboundedReceiver<StatusUpdate>,
    registered: Option<tokio::sync::watch::Sender<Option<String>>>,
) {
    let started = Instant::now();
    let recovery = manager.recover().await;
    if recovery.reattached.len()
        + recovery.ended_while_down.len()
        + recovery.failed.len()
        + recovery.orphans_ended.len()
        > 0
    {
        tracing::info!(
            reattached = recovery.reattached.len(),
            ended_while_down = recovery.ended_while_down.len(),
            failed = ?recovery.failed,
            orphans_ended = ?recovery.orphans_ended,
            updates_to_resend = recovery.resent,
            took = ?started.elapsed(),
            "recovered the tasks of the previous run"
        );
    }
    run(config, manager, updates, registered).await
}

/// Keeps the agent attached to the master until the process ends. The id the master assigns
/// is published on `registered` (for tests and logs).
pub async fn run(
    config: LinkConfig,
    manager: TaskManager,
    mut updates: mpsc::UnboundedReceiver<StatusUpdate>,
    registered: Option<tokio::sync::watch::Sender<Option<String>>>,
) {
    let mut agent_id = saved_id(config.id_file.as_deref());
    let mut backoff = Duration::from_millis(200);
    let mut switches = config.master.follow();
    loop {
        let target = switches.current();
        let mut master = target.locator.clone();
        master.mark_seen();
        let mut followed = master.clone();
        let ended = tokio::select! {
            ended = session(
                &config,
                &target,
                &manager,
                &mut updates,
                &mut agent_id,
                registered.as_ref(),
            ) => ended,
            () = followed.changed() => {
                tracing::info!(master = %master.describe(), "the leading master changed; registering with it");
                config.master.unregistered();
                backoff = Duration::from_millis(200);
                continue;
            }
            () = switches.switched() => {
                config.master.unregistered();
                backoff = Duration::from_millis(200);
                continue;
            }
        };
        config.master.unregistered();
        match ended {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(why @ LinkError::Gone(_)) => {
                // Mesos's agent shuts down on this; the observability engine here goes on.
                end_every_task(&manager);
                tracing::error!(%why, "the agent leaves the cluster");
                return;
            }
            Err(why @ LinkError::Down(_)) => {
                // Mesos's agent shuts down on this too; this one waits for the machine to be
                // up (its registrations are refused meanwhile) and rejoins by itself.
                end_every_task(&manager);
                tracing::warn!(%why, "machine down for maintenance");
                backoff = Duration::from_secs(10);
            }
            Err(why) => {
                tracing::warn!(master = %master.describe(), %why, retry_in = ?backoff, "agent link down");
            }
        }
        // A new leader, or another master, is worth trying at once rather than after the
        // backoff.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
            () = master.changed() => backoff = Duration::from_millis(200),
            () = switches.switched() => backoff = Duration::from_millis(200),
        }
    }
}

/// Ends every task this agent runs (it was marked gone, or its machine went down).
fn end_every_task(manager: &TaskManager) {
    for framework_id in manager
        .running()
        .iter()
        .map(|(spec, _)| spec.framework_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        manager.shutdown_framework(&framework_id);
    }
}

/// One connection: register, then serve until the stream breaks.
async fn session(
    config: &LinkConfig,
    target: &crate::master_switch::Target,
    manager: &TaskManager,
    updates: &mut mpsc::UnboundedReceiver<StatusUpdate>,
    agent_id: &mut String,
    registered: Option<&tokio::sync::watch::Sender<Option<String>>>,
) -> Result<(), LinkError> {
    let endpoint = target
        .locator
        .clone()
        .grpc_endpoint(Duration::from_secs(5))
        .await
        .ok_or(LinkError::NoLeader)?;
    let channel = config.master.endpoint(&endpoint)?.connect().await?;
    let mut client = AgentLinkClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    let running = manager
        .running()
        .iter()
        .map(|(spec, state)| running_to_proto(spec, *state, agent_id))
        .collect();
    tx.send(pb::AgentMessage {
        kind: Some(agent_message::Kind::Register(pb::Register {
            agent_id: agent_id.clone(),
            hostname: config.hostname.clone(),
            resources: resources_to_proto(&config.resources),
            attributes: config.attributes.clone().into_iter().collect(),
            running,
        })),
    })
    .await
    .map_err(|_| LinkError::Closed)?;
    let mut inbound = client
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(LinkError::refused)?
        .into_inner();
    let first = inbound
        .message()
        .await
        .map_err(LinkError::refused)?
        .ok_or(LinkError::Closed)?;
    let Some(master_message::Kind::Registered(reg)) = first.kind else {
        return Err(LinkError::NotRegistered);
    };
    if *agent_id != reg.agent_id
        && let Some(file) = &config.id_file
    {
        save_id(file, &reg.agent_id);
    }
    *agent_id = reg.agent_id.clone();
    tracing::info!(agent = %agent_id, master = %target.locator.describe(), "registered with the master");
    config.master.registered(&target.address, agent_id);
    if let Some(watch) = registered {
        let _ = watch.send(Some(agent_id.clone()));
    }
    let heartbeat_every = Duration::from_secs_f64(reg.heartbeat_interval_seconds.clamp(0.05, 60.0));
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    let mut retry = tokio::time::interval(config.retry_interval.min(Duration::from_secs(1)));
    let mut usage = tokio::time::interval(config.usage_interval);
    // Everything not acknowledged yet goes again on a new connection.
    let mut sent: HashMap<[u8; 16], Instant> = HashMap::new();
    for u in manager.unacknowledged() {
        tx.send(update_to_proto(&u, agent_id))
            .await
            .map_err(|_| LinkError::Closed)?;
        sent.insert(u.uuid, Instant::now());
    }
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some(u) = update else { return Ok(()) };
                if sent.contains_key(&u.uuid) {
                    continue;
                }
                sent.insert(u.uuid, Instant::now());
                tx.send(update_to_proto(&u, agent_id)).await.map_err(|_| LinkError::Closed)?;
            }
            message = inbound.message() => {
                let message = message.map_err(LinkError::Broke)?.ok_or(LinkError::Closed)?;
                match message.kind {
                    Some(master_message::Kind::Container(command)) => {
                        container_command(command, config.containers.as_ref(), &tx).await
                    }
                    Some(master_message::Kind::Shutdown(shutdown)) if shutdown.rejoin => {
                        return Err(LinkError::Down(shutdown.message));
                    }
                    Some(master_message::Kind::Shutdown(shutdown)) => {
                        return Err(LinkError::Gone(shutdown.message));
                    }
                    Some(master_message::Kind::SwitchMaster(switch)) => {
                        // The run loop sees the switch and re-registers there.
                        if let Err(why) = config.master.switch(&switch.master) {
                            tracing::warn!(to = %switch.master, %why, "the master asked for a switch this agent cannot make; it stays");
                        }
                    }
                    kind => handle(pb::MasterMessage { kind }, manager, &mut sent).await,
                }
            }
            _ = heartbeat.tick() => {
                tx.send(pb::AgentMessage {
                    kind: Some(agent_message::Kind::Heartbeat(pb::Heartbeat {})),
                })
                .await
                .map_err(|_| LinkError::Closed)?;
            }
            _ = retry.tick() => {
                let now = Instant::now();
                for u in manager.unacknowledged() {
                    let due = sent.get(&u.uuid).is_none_or(|at| now.duration_since(*at) >= config.retry_interval);
                    if due {
                        sent.insert(u.uuid, now);
                        tx.send(update_to_proto(&u, agent_id)).await.map_err(|_| LinkError::Closed)?;
                    }
                }
            }
            _ = usage.tick() => {
                for (task_id, u) in manager.usage() {
                    tx.send(pb::AgentMessage {
                        kind: Some(agent_message::Kind::Usage(pb::TaskUsage {
                            task_id,
                            cpu_seconds: u.cpu_seconds,
                            memory_bytes: u.memory_bytes,
                            memory_limit_bytes: u.memory_limit_bytes.unwrap_or(0),
                            pids: u.pids,
                        })),
                    })
                    .await
                    .map_err(|_| LinkError::Closed)?;
                }
            }
        }
    }
}

/// Hands a container command to the control, or refuses it when this agent has none.
async fn container_command(
    command: pb::ContainerCommand,
    control: Option<&crate::containers::control::ContainerControl>,
    tx: &mpsc::Sender<pb::AgentMessage>,
) {
    match control {
        Some(control) => control.handle(command, tx.clone()),
        None if command.cancel => {}
        None => {
            let _ = tx
                .send(pb::AgentMessage {
                    kind: Some(agent_message::Kind::ContainerReply(pb::ContainerReply {
                        request_id: command.request_id,
                        error: "this agent does not control containers (it was started \
                                without container runtimes)"
                            .into(),
                        log: Vec::new(),
                        done: true,
                    })),
                })
                .await;
        }
    }
}

async fn handle(
    message: pb::MasterMessage,
    manager: &TaskManager,
    sent: &mut HashMap<[u8; 16], Instant>,
) {
    match message.kind {
        Some(master_message::Kind::Launch(launch)) => {
            let specs: Result<Vec<TaskSpec>, SpecError> = launch
                .tasks
                .iter()
                .map(|t| {
                    spec_from_proto(
                        &launch.framework_id,
                        &launch.framework_user,
                        &launch.role,
                        t,
                    )
                })
                .collect();
            match specs {
                Ok(specs) => {
                    let manager = manager.clone();
                    tokio::spawn(async move { manager.launch(specs).await });
                }
                Err(why) => {
                    // A launch is all or nothing: every task of it fails, with the reason.
                    tracing::warn!(%why, "launch refused");
                    for task in &launch.tasks {
                        manager.refuse(&launch.framework_id, &task.task_id, why.to_string());
                    }
                }
            }
        }
        Some(master_message::Kind::Kill(kill)) => {
            let grace =
                (kill.grace_seconds >= 0.0).then(|| Duration::from_secs_f64(kill.grace_seconds));
            if !manager.kill(&kill.framework_id, &kill.task_id, grace) {
                tracing::info!(task = %kill.task_id, "kill of a task not running here");
            }
        }
        Some(master_message::Kind::Acknowledge(ack)) => {
            if let Ok(uuid) = <[u8; 16]>::try_from(ack.uuid.as_slice()) {
                manager.acknowledge(&ack.task_id, uuid);
                sent.remove(&uuid);
            }
        }
        Some(master_message::Kind::ShutdownFramework(s)) => {
            manager.shutdown_framework(&s.framework_id)
        }
        Some(master_message::Kind::Registered(_))
        | Some(master_message::Kind::Container(_))
        | Some(master_message::Kind::Shutdown(_))
        | Some(master_message::Kind::SwitchMaster(_))
        | None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{TaskManagerConfig, cgroups::Driver};

    #[tokio::test]
    async fn a_launch_the_agent_cannot_take_fails_each_task_with_the_reason() {
        // No process starts, so no cgroup is made: any driver will do.
        let driver = Driver::V2 {
            root: std::env::temp_dir().join("orca-link-unused"),
        };
        let work = std::env::temp_dir().join(format!("orca-link-{}", std::process::id()));
        let (manager, mut updates) = TaskManager::new(TaskManagerConfig::new(work, driver));
        let task = |id: &str| pb::Task {
            task_id: id.into(),
            resources: resources_to_proto(&Resources::parse("cpus:1").unwrap()),
            command: None,
            ..Default::default()
        };
        let launch = pb::MasterMessage {
            kind: Some(master_message::Kind::Launch(pb::Launch {
                framework_id: "fw".into(),
                framework_user: "root".into(),
                tasks: vec![task("a"), task("b")],
                role: "*".into(),
            })),
        };
        handle(launch, &manager, &mut HashMap::new()).await;
        for id in ["a", "b"] {
            let update = updates.try_recv().expect("an update for each task");
            assert_eq!(update.task_id, id);
            assert_eq!(update.state, TaskState::Failed);
            assert_eq!(
                update.reason.as_deref(),
                Some("REASON_CONTAINER_LAUNCH_FAILED")
            );
            assert!(update.message.unwrap().contains("has no command"));
        }
        assert_eq!(
            manager.unacknowledged().len(),
            2,
            "retried until acknowledged"
        );
    }
}
