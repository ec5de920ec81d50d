//! What the TUI does to the cluster: kill any task (the operator API), and launch command tasks
//! as the `orca` framework (one per role, subscribed on first use through the gRPC scheduler
//! API, so launched tasks go through offers and DRF like any framework's).
use std::collections::{HashMap, VecDeque};

use orca_proto::{
    cluster::v1::{self as cpb, ContainerAction, TaskState},
    operator::v1::{self as opb, operator_client::OperatorClient},
    scheduler::v1::{self as spb, event, operation, scheduler_client::SchedulerClient},
    topology::v1::{self as pb, collector_client::CollectorClient},
};
use tokio::sync::mpsc;

use crate::{
    app::{AgentAction, ContainerTarget, LaunchRequest, Level},
    feed::{Credential, Event, MAX_MESSAGE, MasterChannel, MasterError},
};

/// Sends actions to the master and reports their outcome as notices.
#[derive(Debug, Clone)]
pub struct Actions {
    /// The channel to the master for every action (it connects when first used, again
    /// after a failure, and to the new leader after a failover).
    channel: MasterChannel,
    events: mpsc::Sender<Event>,
    launches: mpsc::UnboundedSender<LaunchRequest>,
    /// The log stream feeding the log view.
    logs: std::sync::Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
}

impl Actions {
    /// Starts the launcher in the background (it subscribes only when the first task is
    /// launched).
    pub fn start(master: String, credential: Credential, events: mpsc::Sender<Event>) -> Self {
        let channel = MasterChannel::new(&master, credential);
        let (launches, rx) = mpsc::unbounded_channel();
        tokio::spawn(launcher(channel.clone(), rx, events.clone()));
        Self {
            channel,
            events,
            launches,
            logs: Default::default(),
        }
    }

    pub fn kill(&self, framework_id: String, task_id: String) {
        let (channel, events) = (self.channel.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = async {
                let channel = channel.get().await?;
                OperatorClient::new(channel)
                    .kill_task(opb::KillTaskRequest {
                        framework_id,
                        task_id: task_id.clone(),
                        grace_seconds: 0.0,
                    })
                    .await
                    .map_err(MasterError::of_call)
            }
            .await;
            let notice = match result {
                Ok(_) => (format!("kill sent to task {task_id}"), Level::Info),
                Err(e) => (format!("could not kill {task_id}: {e}"), Level::Error),
            };
            let _ = events.send(Event::Notice(notice.0, notice.1)).await;
        });
    }

    /// Stops, starts, pauses, unpauses, restarts or removes a container through its agent.
    pub fn container_action(&self, target: ContainerTarget, action: ContainerAction) {
        let (channel, events) = (self.channel.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = async {
                let channel = channel.get().await?;
                OperatorClient::new(channel)
                    .container_action(opb::ContainerActionRequest {
                        hostname: target.hostname.clone(),
                        container_id: target.id.clone(),
                        action: action as i32,
                    })
                    .await
                    .map_err(MasterError::of_call)
            }
            .await;
            let verb = action.word();
            let notice = match result {
                Ok(_) => (format!("{verb}: done for {}", target.name), Level::Info),
                Err(e) => (
                    format!("could not {verb} {}: {e}", target.name),
                    Level::Error,
                ),
            };
            let _ = events.send(Event::Notice(notice.0, notice.1)).await;
        });
    }

    /// DRAIN_AGENT (each task killed with its own grace period) or REACTIVATE_AGENT.
    pub fn agent_action(&self, agent_id: String, hostname: String, action: AgentAction) {
        let (channel, events) = (self.channel.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = async {
                let mut operator = OperatorClient::new(channel.get().await?);
                let call = match action {
                    AgentAction::Drain => {
                        operator
                            .drain_agent(opb::DrainAgentRequest {
                                agent_id,
                                max_grace_seconds: None,
                                mark_gone: false,
                            })
                            .await
                    }
                    AgentAction::Reactivate => {
                        operator
                            .reactivate_agent(opb::AgentRequest { agent_id })
                            .await
                    }
                };
                call.map_err(MasterError::of_call)
            }
            .await;
            let notice = match (result, action) {
                (Ok(_), AgentAction::Drain) => (
                    format!("{hostname} is draining: its tasks are being killed"),
                    Level::Info,
                ),
                (Ok(_), AgentAction::Reactivate) => {
                    (format!("{hostname} is offered again"), Level::Info)
                }
                (Err(e), _) => (
                    format!("could not {} {hostname}: {e}", action.word()),
                    Level::Error,
                ),
            };
            let _ = events.send(Event::Notice(notice.0, notice.1)).await;
        });
    }

    /// Streams a container's output (the last 500 lines, then as it comes) to the log view.
    pub fn open_logs(&self, target: ContainerTarget, stream: u64) {
        self.close_logs();
        let (channel, events) = (self.channel.clone(), self.events.clone());
        let task = tokio::spawn(async move {
            let result: Result<(), MasterError> = async {
                let channel = channel.get().await?;
                let mut chunks = OperatorClient::new(channel)
                    .container_logs(opb::ContainerLogsRequest {
                        hostname: target.hostname.clone(),
                        container_id: target.id.clone(),
                        follow: true,
                        tail: 500,
                    })
                    .await
                    .map_err(MasterError::of_call)?
                    .into_inner();
                while let Some(chunk) = chunks.message().await.map_err(MasterError::of_call)? {
                    if events.send(Event::Log(stream, chunk.data)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            let _ = events
                .send(Event::LogEnd(stream, result.err().map(|e| e.to_string())))
                .await;
        });
        *self.logs.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }

    pub fn close_logs(&self) {
        if let Some(task) = self.logs.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Fetches a node's hour of series from the collector.
    pub fn fetch_series(&self, node_id: String) {
        let (channel, events) = (self.channel.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = async {
                let channel = channel.get().await?;
                CollectorClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .node_series(pb::NodeSeriesRequest {
                        node_id: node_id.clone(),
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(MasterError::of_call)
            }
            .await;
            let event = match result {
                Ok(node) => Event::Series(Box::new(node), std::time::Instant::now()),
                Err(e) => Event::Notice(format!("no history for {node_id}: {e}"), Level::Error),
            };
            let _ = events.send(event).await;
        });
    }

    pub fn launch(&self, request: LaunchRequest) {
        let _ = self.launches.send(request);
    }
}

async fn notice(events: &mpsc::Sender<Event>, text: String, level: Level) {
    let _ = events.send(Event::Notice(text, level)).await;
}

/// Routes launch requests to one framework session per role.
async fn launcher(
    channel: MasterChannel,
    mut requests: mpsc::UnboundedReceiver<LaunchRequest>,
    events: mpsc::Sender<Event>,
) {
    let mut sessions: HashMap<String, mpsc::UnboundedSender<LaunchRequest>> = HashMap::new();
    while let Some(request) = requests.recv().await {
        let role = request.role.clone();
        let alive = sessions.get(&role).is_some_and(|s| !s.is_closed());
        if !alive {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(session(channel.clone(), role.clone(), rx, events.clone()));
            sessions.insert(role.clone(), tx);
        }
        if let Some(session) = sessions.get(&role) {
            let _ = session.send(request);
        }
    }
}

/// A task waiting for an offer that fits it.
#[derive(Debug)]
struct Pending {
    request: LaunchRequest,
    task_id: String,
}

fn scalar(resources: &[cpb::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| match r.value {
            Some(cpb::resource::Value::Scalar(v)) => Some(v),
            _ => None,
        })
        .sum()
}

fn resource(name: &str, value: f64) -> cpb::Resource {
    cpb::Resource {
        name: name.into(),
        value: Some(cpb::resource::Value::Scalar(value)),
        reservation: String::new(),
    }
}

/// What an `orca` framework keeps across re-subscriptions: its id, and the tasks still
/// waiting for an offer.
#[derive(Debug, Default)]
struct Framework {
    id: Option<String>,
    pending: VecDeque<Pending>,
    names: HashMap<String, String>,
}

/// How a subscription ended.
enum Ended {
    /// The UI closed its requests: done.
    Closed,
    /// The master said the framework is gone (torn down, removed): a new one is needed.
    Removed(MasterError),
    /// The connection or the leader was lost: subscribe again with the framework's id
    /// (`true`: this subscription had been accepted).
    Lost(MasterError, bool),
}

/// One `orca` framework in `role`: subscribes, launches pending tasks on fitting offers,
/// declines the rest, suppresses offers while nothing waits, acknowledges updates and tells
/// the user how each task does. When the leader changes or the connection drops it
/// subscribes again with its framework id, as Mesos frameworks do, so its tasks stay its own.
async fn session(
    channel: MasterChannel,
    role: String,
    mut requests: mpsc::UnboundedReceiver<LaunchRequest>,
    events: mpsc::Sender<Event>,
) {
    let mut framework = Framework::default();
    let mut backoff = std::time::Duration::from_millis(200);
    let mut told = false;
    loop {
        let lost = match subscription(&channel, &role, &mut framework, &mut requests, &events).await
        {
            Ended::Closed => return,
            Ended::Removed(e) => Err(e),
            Ended::Lost(e, held) => Ok((e, held)),
        };
        match lost {
            Err(e) => {
                let text = format!("launching in role {role}: {e}");
                notice(&events, text, Level::Error).await;
                return;
            }
            Ok((e, held)) => {
                if held {
                    backoff = std::time::Duration::from_millis(200);
                    told = false;
                }
                if !told {
                    // Said once per outage; the launches wait (a master that is not the
                    // leader yet, or a failover, refuses or drops the subscription).
                    let text = format!("the orca framework: {e}; subscribing again");
                    notice(&events, text, Level::Info).await;
                    told = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// One subscription of `framework`, until it ends.
async fn subscription(
    channel: &MasterChannel,
    role: &str,
    framework: &mut Framework,
    requests: &mut mpsc::UnboundedReceiver<LaunchRequest>,
    events: &mpsc::Sender<Event>,
) -> Ended {
    let mut held = false;
    let result: Result<(), MasterError> = async {
        let channel = channel.get().await?;
        let mut client = SchedulerClient::new(channel);
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let mut stream = client
            .subscribe(spb::SubscribeRequest {
                framework_info: Some(spb::FrameworkInfo {
                    id: framework.id.clone().unwrap_or_default(),
                    user,
                    name: "orca".into(),
                    roles: vec![role.to_owned()],
                    hostname: std::env::var("HOSTNAME").unwrap_or_default(),
                    // Tasks outlive a TUI restart by a day; the master tears them down after.
                    failover_timeout_seconds: 86_400.0,
                    ..Default::default()
                }),
                suppressed_roles: vec![],
            })
            .await
            .map_err(|s| MasterError::Refused {
                what: "the orca framework",
                message: orca_auth::tls::explain_status(&s),
            })?
            .into_inner();
        let Framework { id, pending, names } = framework;
        let mut header: Option<spb::CallHeader> = None;
        let mut suppressed = false;
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { return Ok(()) };
                    let task_id = format!(
                        "{}-{}",
                        request.name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-"),
                        &uuid::Uuid::new_v4().simple().to_string()[..8]
                    );
                    names.insert(task_id.clone(), request.name.clone());
                    pending.push_back(Pending { request, task_id });
                    if let (true, Some(h)) = (suppressed, &header) {
                        client.revive(spb::RolesRequest { header: Some(h.clone()), roles: vec![] })
                            .await.map_err(MasterError::of_call)?;
                        suppressed = false;
                    }
                }
                message = stream.message() => {
                    let message = message.map_err(|s| MasterError::of_watch(&s))?;
                    let Some(event) = message else {
                        return Err(MasterError::Closed("orca framework's event stream"));
                    };
                    match event.kind {
                        Some(event::Kind::Subscribed(s)) => {
                            *id = Some(s.framework_id.clone());
                            held = true;
                            header = Some(spb::CallHeader { framework_id: s.framework_id, stream_id: s.stream_id });
                        }
                        Some(event::Kind::Offers(offers)) => {
                            let Some(h) = header.clone() else { continue };
                            for offer in offers.offers {
                                let cpus = scalar(&offer.resources, "cpus");
                                let mem = scalar(&offer.resources, "mem");
                                let fits = pending.iter().position(|p| p.request.cpus <= cpus + 1e-9 && p.request.mem_mb <= mem + 1e-9);
                                match fits.and_then(|i| pending.remove(i)) {
                                    Some(p) => {
                                        let task = cpb::Task {
                                            task_id: p.task_id.clone(),
                                            name: p.request.name.clone(),
                                            agent_id: offer.agent_id.clone(),
                                            resources: vec![resource("cpus", p.request.cpus), resource("mem", p.request.mem_mb)],
                                            command: Some(cpb::Command { shell: true, value: p.request.command.clone(), ..Default::default() }),
                                            labels: [("launched-by".to_owned(), "orca-tui".to_owned())].into(),
                                            kill_grace_seconds: 0.0,
                                        };
                                        client.accept(spb::AcceptRequest {
                                            header: Some(h.clone()),
                                            offer_ids: vec![offer.id.clone()],
                                            operations: vec![spb::Operation { kind: Some(operation::Kind::Launch(spb::Launch { tasks: vec![task] })) }],
                                            refuse_seconds: 1.0,
                                        }).await.map_err(MasterError::of_call)?;
                                        notice(events, format!("task {} sent to {}", p.task_id, offer.hostname), Level::Info).await;
                                    }
                                    None => {
                                        client.decline(spb::DeclineRequest {
                                            header: Some(h.clone()),
                                            offer_ids: vec![offer.id.clone()],
                                            refuse_seconds: if pending.is_empty() { 60.0 } else { 1.0 },
                                        }).await.map_err(MasterError::of_call)?;
                                    }
                                }
                            }
                            if pending.is_empty() && !suppressed {
                                client.suppress(spb::RolesRequest { header: Some(h.clone()), roles: vec![] })
                                    .await.map_err(MasterError::of_call)?;
                                suppressed = true;
                            }
                        }
                        Some(event::Kind::Update(status)) => {
                            if let Some(h) = &header && !status.uuid.is_empty() {
                                client.acknowledge(spb::AcknowledgeRequest {
                                    header: Some(h.clone()),
                                    agent_id: status.agent_id.clone(),
                                    task_id: status.task_id.clone(),
                                    uuid: status.uuid.clone(),
                                }).await.map_err(MasterError::of_call)?;
                            }
                            let name = names.get(&status.task_id).cloned().unwrap_or_else(|| status.task_id.clone());
                            let state = status.state();
                            let level = match state {
                                TaskState::Failed | TaskState::Error | TaskState::Lost | TaskState::Dropped => Level::Error,
                                _ => Level::Info,
                            };
                            let why = [status.reason.as_str(), status.message.as_str()]
                                .iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(": ");
                            let text = if why.is_empty() {
                                format!("{name}: {}", state.mesos_name())
                            } else {
                                format!("{name}: {} ({why})", state.mesos_name())
                            };
                            notice(events, text, level).await;
                        }
                        Some(event::Kind::Error(e)) => {
                            return Err(MasterError::Framework(e.message));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    .await;
    match result {
        Ok(()) => Ended::Closed,
        Err(e @ MasterError::Framework(_)) => {
            framework.id = None;
            Ended::Removed(e)
        }
        Err(e) => Ended::Lost(e, held),
    }
}
