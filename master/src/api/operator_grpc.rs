//! The operator service (`orca.operator.v1`): the cluster as a snapshot followed by deltas,
//! for the TUI's agents, frameworks and tasks views, and operator actions on any framework's
//! tasks.
use std::{
    collections::{BTreeMap, HashMap},
    pin::Pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::Stream;
use orca_auth::Action;
use orca_proto::{cluster::v1 as cpb, operator::v1 as pb};
use orca_resources::{Resources, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    authn::grpc_principal,
    cluster_watch::{ClusterWatches, Subscription},
    convert::{grpc_status, task_state_to_proto},
};
use crate::cluster::{ApiError, Cluster, DrainState, StateSnapshot, TaskView};

/// Terminal tasks per framework sent to watchers unless the request asks otherwise.
const COMPLETED_TASKS: usize = 50;

#[derive(Debug, Clone)]
pub struct OperatorService {
    cluster: Cluster,
    /// The shared publishers of `WatchCluster`.
    watches: ClusterWatches,
    /// Turns true when the master stops: watches end then, so a stopping master does not
    /// wait for its watchers to let go.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl OperatorService {
    pub fn new(cluster: Cluster, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            watches: ClusterWatches::new(cluster.clone()),
            cluster,
            stopping,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What a watcher was last sent, keyed like the deltas.
#[derive(Debug, Default, PartialEq)]
pub struct ClusterView {
    pub agents: BTreeMap<String, pb::Agent>,
    pub frameworks: BTreeMap<String, pb::Framework>,
    pub tasks: BTreeMap<String, pb::Task>,
}

impl ClusterView {
    pub fn from_snapshot(s: &StateSnapshot, completed_tasks: usize) -> Self {
        let mut view = ClusterView::default();
        let hostname: HashMap<&str, &str> = s
            .agents
            .iter()
            .map(|a| (a.id.as_str(), a.hostname.as_str()))
            .chain(
                s.recovered_agents
                    .iter()
                    .map(|(id, h)| (id.as_str(), h.as_str())),
            )
            .collect();
        let mut running: HashMap<&str, u32> = HashMap::new();
        for fw in &s.frameworks {
            let live = fw.tasks.iter().filter(|t| !t.state.is_terminal());
            let weight = fw
                .info
                .roles
                .first()
                .and_then(|r| s.roles.iter().find(|(name, _, _)| name == r))
                .map_or(1.0, |(_, w, _)| *w);
            view.frameworks.insert(
                fw.id.clone(),
                pb::Framework {
                    id: fw.id.clone(),
                    name: fw.info.name.clone(),
                    roles: fw.info.roles.clone(),
                    weight,
                    dominant_share: fw.dominant_share,
                    active: fw.active,
                    connected: fw.connected,
                    user: fw.info.user.clone(),
                    principal: fw.info.principal.clone().unwrap_or_default(),
                    registered_unix_ms: unix_ms(fw.registered),
                    running_tasks: live.clone().count() as u32,
                    used: scalars(&fw.used),
                    offered: scalars(&fw.offered),
                    suppressed_roles: fw.suppressed_roles.clone(),
                },
            );
            for t in live {
                *running.entry(t.agent_id.as_str()).or_default() += 1;
            }
            let newest_completed = fw.completed_tasks.iter().rev().take(completed_tasks);
            for t in fw.tasks.iter().chain(newest_completed) {
                let task = task(t, hostname.get(t.agent_id.as_str()).copied());
                view.tasks.insert(task.key.clone(), task);
            }
        }
        for a in &s.agents {
            view.agents.insert(
                a.id.clone(),
                pb::Agent {
                    id: a.id.clone(),
                    hostname: a.hostname.clone(),
                    state: if a.connected {
                        pb::AgentState::Active
                    } else {
                        pb::AgentState::Unreachable
                    } as i32,
                    total: scalars(&a.total),
                    used: scalars(&a.used),
                    offered: scalars(&a.offered),
                    total_ranges: ranges(&a.total),
                    attributes: a.attributes.clone().into_iter().collect(),
                    registered_unix_ms: unix_ms(a.registered),
                    reregistered_unix_ms: a.reregistered.map_or(0, unix_ms),
                    running_tasks: running.get(a.id.as_str()).copied().unwrap_or(0),
                    deactivated: a.deactivated,
                    drain_state: match a.drain.as_ref().map(|d| d.state) {
                        None => pb::AgentDrainState::None,
                        Some(DrainState::Draining) => pb::AgentDrainState::Draining,
                        Some(DrainState::Drained) => pb::AgentDrainState::Drained,
                    } as i32,
                    drain_tasks_left: a.drain.as_ref().map_or(0, |d| d.tasks_left as u32),
                    drain_started_unix_ms: a.drain.as_ref().map_or(0, |d| unix_ms(d.started)),
                    drain_max_grace_seconds: a
                        .drain
                        .as_ref()
                        .and_then(|d| d.max_grace_period_secs)
                        .unwrap_or(0.0),
                    drain_mark_gone: a.drain.as_ref().is_some_and(|d| d.mark_gone),
                },
            );
        }
        for (id, hostname) in &s.recovered_agents {
            view.agents.entry(id.clone()).or_insert_with(|| pb::Agent {
                id: id.clone(),
                hostname: hostname.clone(),
                state: pb::AgentState::Recovered as i32,
                ..Default::default()
            });
        }
        view
    }

    /// What changed from `self` to `next`, or `None` when nothing did.
    pub fn delta_to(&self, next: &ClusterView) -> Option<pb::ClusterDelta> {
        let mut delta = pb::ClusterDelta::default();
        (delta.upserted_agents, delta.removed_agents) = diff(&self.agents, &next.agents);
        (delta.upserted_frameworks, delta.removed_frameworks) =
            diff(&self.frameworks, &next.frameworks);
        (delta.upserted_tasks, delta.removed_tasks) = diff(&self.tasks, &next.tasks);
        let empty = delta.upserted_agents.is_empty()
            && delta.removed_agents.is_empty()
            && delta.upserted_frameworks.is_empty()
            && delta.removed_frameworks.is_empty()
            && delta.upserted_tasks.is_empty()
            && delta.removed_tasks.is_empty();
        (!empty).then_some(delta)
    }
}

fn diff<T: Clone + PartialEq>(
    before: &BTreeMap<String, T>,
    now: &BTreeMap<String, T>,
) -> (Vec<T>, Vec<String>) {
    let upserted = now
        .iter()
        .filter(|(id, v)| before.get(*id) != Some(v))
        .map(|(_, v)| v.clone())
        .collect();
    let removed = before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    (upserted, removed)
}

fn task(t: &TaskView, hostname: Option<&str>) -> pb::Task {
    let last = t.statuses.last();
    let usage = t.usage.as_ref();
    pb::Task {
        key: format!("{}/{}", t.framework_id, t.id),
        id: t.id.clone(),
        name: t.name.clone(),
        framework_id: t.framework_id.clone(),
        agent_id: t.agent_id.clone(),
        hostname: hostname.unwrap_or_default().to_owned(),
        state: task_state_to_proto(t.state),
        role: t.role.clone(),
        resources: scalars(&t.resources),
        labels: t.labels.clone().into_iter().collect(),
        started_unix_ms: unix_ms(t.started),
        updated_unix_ms: last.map_or(unix_ms(t.started), |s| (s.timestamp * 1000.0) as i64),
        message: last.and_then(|s| s.message.clone()).unwrap_or_default(),
        reason: last.and_then(|s| s.reason.clone()).unwrap_or_default(),
        cpu_seconds: usage.map_or(0.0, |u| u.cpu_seconds),
        memory_bytes: usage.map_or(0, |u| u.memory_bytes),
        memory_limit_bytes: usage.and_then(|u| u.memory_limit_bytes).unwrap_or(0),
    }
}

fn scalars(resources: &Resources) -> HashMap<String, f64> {
    resources
        .scalar_totals()
        .iter()
        .map(|(name, v)| (name.to_owned(), v.as_f64()))
        .collect()
}

fn ranges(resources: &Resources) -> HashMap<String, String> {
    resources
        .iter()
        .filter_map(|r| match &r.value {
            Value::Ranges(ranges) => Some((r.name.to_string(), ranges.to_string())),
            Value::Scalar(_) => None,
        })
        .collect()
}

pub(super) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A container command's first error, or success when the agent says done.
async fn await_done(
    mut replies: mpsc::UnboundedReceiver<cpb::ContainerReply>,
) -> Result<(), Status> {
    let wait = tokio::time::timeout(CONTAINER_ACTION_TIMEOUT, async {
        while let Some(reply) = replies.recv().await {
            if !reply.error.is_empty() {
                return Err(Status::failed_precondition(reply.error));
            }
            if reply.done {
                return Ok(());
            }
        }
        Err(Status::unavailable(
            "the agent's link closed before it answered",
        ))
    });
    wait.await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "the agent did not answer within {CONTAINER_ACTION_TIMEOUT:?}; the action may still complete"
        )))
    })
}

/// How long an operator waits for a container action (a stop waits up to 10 s itself).
const CONTAINER_ACTION_TIMEOUT: Duration = Duration::from_secs(30);

#[tonic::async_trait]
impl pb::operator_server::Operator for OperatorService {
    type WatchClusterStream = BoxStream<pb::ClusterDelta>;
    type ContainerLogsStream = BoxStream<pb::LogChunk>;

    async fn container_action(
        &self,
        request: Request<pb::ContainerActionRequest>,
    ) -> Result<Response<pb::ContainerActionResponse>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let action = cpb::ContainerAction::try_from(r.action)
            .ok()
            .filter(|a| {
                !matches!(
                    a,
                    cpb::ContainerAction::Unspecified | cpb::ContainerAction::Logs
                )
            })
            .ok_or_else(|| {
                Status::invalid_argument(
                    "action must be stop, start, pause, unpause, restart or remove",
                )
            })?;
        if r.hostname.is_empty() || r.container_id.is_empty() {
            return Err(Status::invalid_argument(
                "hostname and container_id are both required",
            ));
        }
        self.cluster
            .authorize_operator(Action::ContainerActions, principal.as_deref(), &r.hostname)
            .map_err(grpc_status)?;
        let (_, replies) = self
            .cluster
            .container_command(
                &r.hostname,
                cpb::ContainerCommand {
                    container_id: r.container_id.clone(),
                    action: action as i32,
                    ..Default::default()
                },
            )
            .map_err(grpc_status)?;
        await_done(replies).await?;
        tracing::info!(host = %r.hostname, container = %r.container_id, ?action, "container action by an operator");
        Ok(Response::new(pb::ContainerActionResponse {}))
    }

    async fn container_logs(
        &self,
        request: Request<pb::ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        if r.hostname.is_empty() || r.container_id.is_empty() {
            return Err(Status::invalid_argument(
                "hostname and container_id are both required",
            ));
        }
        self.cluster
            .authorize_operator(Action::ContainerActions, principal.as_deref(), &r.hostname)
            .map_err(grpc_status)?;
        let (request_id, mut replies) = self
            .cluster
            .container_command(
                &r.hostname,
                cpb::ContainerCommand {
                    container_id: r.container_id,
                    action: cpb::ContainerAction::Logs as i32,
                    follow: r.follow,
                    tail: r.tail,
                    ..Default::default()
                },
            )
            .map_err(grpc_status)?;
        let (tx, rx) = mpsc::channel(64);
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            loop {
                let reply = tokio::select! {
                    reply = replies.recv() => reply,
                    // The caller left while the log is quiet.
                    _ = tx.closed() => None,
                };
                let Some(reply) = reply else { break };
                if !reply.error.is_empty() {
                    let _ = tx.send(Err(Status::failed_precondition(reply.error))).await;
                    return;
                }
                if !reply.log.is_empty()
                    && tx.send(Ok(pb::LogChunk { data: reply.log })).await.is_err()
                {
                    break;
                }
                if reply.done {
                    return;
                }
            }
            cluster.container_cancel(request_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_cluster(
        &self,
        request: Request<pb::WatchClusterRequest>,
    ) -> Result<Response<Self::WatchClusterStream>, Status> {
        let completed = match request.get_ref().completed_tasks {
            0 => COMPLETED_TASKS,
            n => n as usize,
        };
        let watches = self.watches.clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let Subscription {
                snapshot,
                mut deltas,
            } = watches.subscribe(completed);
            if tx.send(Ok(snapshot)).await.is_err() {
                return;
            }
            loop {
                if *stopping.borrow_and_update() {
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "this master is stopping; watch the leading master",
                        )))
                        .await;
                    return;
                }
                let message = tokio::select! {
                    delta = deltas.recv() => match delta {
                        Ok(delta) => (*delta).clone(),
                        // Too far behind: start again from the publisher's latest view.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let fresh = watches.subscribe(completed);
                            deltas = fresh.deltas;
                            fresh.snapshot
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    changed = stopping.changed() => {
                        if changed.is_err() {
                            // The server is gone.
                            return;
                        }
                        continue;
                    }
                    () = tx.closed() => return,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn kill_task(
        &self,
        request: Request<pb::KillTaskRequest>,
    ) -> Result<Response<pb::KillTaskResponse>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        if r.framework_id.is_empty() || r.task_id.is_empty() {
            return Err(Status::invalid_argument(
                "framework_id and task_id are both required",
            ));
        }
        self.cluster
            .authorize_operator(Action::KillTasks, principal.as_deref(), &r.framework_id)
            .map_err(grpc_status)?;
        let grace = (r.grace_seconds > 0.0).then(|| Duration::from_secs_f64(r.grace_seconds));
        self.cluster
            .kill(&r.framework_id, &r.task_id, None, grace)
            .map_err(grpc_status)?;
        tracing::info!(framework = %r.framework_id, task = %r.task_id, "task killed by an operator");
        Ok(Response::new(pb::KillTaskResponse {}))
    }

    async fn deactivate_agent(
        &self,
        request: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::AgentResponse>, Status> {
        let principal = grpc_principal(&request);
        let agent_id = agent_id(&request.into_inner().agent_id)?;
        self.cluster
            .authorize_operator(Action::DeactivateAgents, principal.as_deref(), &agent_id)
            .map_err(grpc_status)?;
        self.cluster
            .set_agent_deactivated(&agent_id, true)
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::AgentResponse {}))
    }

    async fn reactivate_agent(
        &self,
        request: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::AgentResponse>, Status> {
        let principal = grpc_principal(&request);
        let agent_id = agent_id(&request.into_inner().agent_id)?;
        self.cluster
            .authorize_operator(Action::ReactivateAgents, principal.as_deref(), &agent_id)
            .map_err(grpc_status)?;
        self.cluster
            .set_agent_deactivated(&agent_id, false)
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::AgentResponse {}))
    }

    async fn drain_agent(
        &self,
        request: Request<pb::DrainAgentRequest>,
    ) -> Result<Response<pb::AgentResponse>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let agent_id = agent_id(&r.agent_id)?;
        self.cluster
            .authorize_operator(Action::DrainAgents, principal.as_deref(), &agent_id)
            .map_err(grpc_status)?;
        let max_grace = match r.max_grace_seconds {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s.min(1e9))),
            Some(s) => {
                return Err(Status::invalid_argument(format!(
                    "max_grace_seconds must be a non-negative number of seconds (not {s})"
                )));
            }
        };
        self.cluster
            .drain_agent(&agent_id, max_grace, r.mark_gone)
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::AgentResponse {}))
    }

    async fn mark_agent_gone(
        &self,
        request: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::AgentResponse>, Status> {
        let agent_id = agent_id(&request.into_inner().agent_id)?;
        self.cluster
            .mark_agent_gone(&agent_id)
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::AgentResponse {}))
    }

    async fn get_master(
        &self,
        _: Request<pb::GetMasterRequest>,
    ) -> Result<Response<pb::MasterSummary>, Status> {
        let ms = |at: std::time::SystemTime| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let cluster = &self.cluster;
        Ok(Response::new(pb::MasterSummary {
            id: cluster.master_id(),
            mesos_version: orca_leader::info::MESOS_VERSION.to_owned(),
            orca_version: env!("CARGO_PKG_VERSION").to_owned(),
            leading: cluster.is_leading(),
            leader: cluster
                .leader_info()
                .map(|l| l.http_authority())
                .unwrap_or_default(),
            started_unix_ms: ms(cluster.start_time()),
            elected_unix_ms: cluster.elected_time().map_or(0, ms),
            flags: cluster.flags().iter().cloned().collect(),
            metrics: cluster.metrics().into_iter().collect(),
        }))
    }

    async fn get_maintenance(
        &self,
        _: Request<pb::GetMaintenanceRequest>,
    ) -> Result<Response<pb::Maintenance>, Status> {
        let status = self.cluster.maintenance_status().map_err(grpc_status)?;
        let record = &status.record;
        let ms = |at: std::time::SystemTime| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let draining = record
            .draining()
            .map(|m| pb::DrainingMachine {
                hostname: m.clone(),
                answers: status
                    .answers
                    .get(m)
                    .into_iter()
                    .flatten()
                    .map(|(framework_id, answer, at)| pb::InverseOfferAnswer {
                        framework_id: framework_id.clone(),
                        answer: answer.name().to_owned(),
                        at_unix_ms: ms(*at),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::Maintenance {
            schedule: Some(pb::MaintenanceSchedule {
                windows: record
                    .windows
                    .iter()
                    .map(|w| pb::MaintenanceWindow {
                        hostnames: w.machines.clone(),
                        start_unix_nanos: w.start_nanos,
                        duration_nanos: w.duration_nanos,
                    })
                    .collect(),
            }),
            draining,
            down: record.down.clone(),
        }))
    }

    async fn update_maintenance_schedule(
        &self,
        request: Request<pb::MaintenanceSchedule>,
    ) -> Result<Response<pb::MaintenanceResponse>, Status> {
        let windows = request
            .into_inner()
            .windows
            .into_iter()
            .map(|w| crate::cluster::registry::WindowRecord {
                machines: w.hostnames,
                start_nanos: w.start_unix_nanos,
                duration_nanos: w.duration_nanos,
            })
            .collect();
        self.cluster
            .update_maintenance_schedule(windows)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(pb::MaintenanceResponse {}))
    }

    async fn start_maintenance(
        &self,
        request: Request<pb::MachinesRequest>,
    ) -> Result<Response<pb::MaintenanceResponse>, Status> {
        self.cluster
            .start_maintenance(request.into_inner().hostnames)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(pb::MaintenanceResponse {}))
    }

    async fn stop_maintenance(
        &self,
        request: Request<pb::MachinesRequest>,
    ) -> Result<Response<pb::MaintenanceResponse>, Status> {
        self.cluster
            .stop_maintenance(request.into_inner().hostnames)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(pb::MaintenanceResponse {}))
    }

    async fn get_weights(
        &self,
        _: Request<pb::GetWeightsRequest>,
    ) -> Result<Response<pb::Weights>, Status> {
        let weights = self.cluster.weights().map_err(grpc_status)?;
        Ok(Response::new(pb::Weights {
            weights: weights.into_iter().collect(),
        }))
    }

    async fn update_weights(
        &self,
        request: Request<pb::Weights>,
    ) -> Result<Response<pb::RolesResponse>, Status> {
        let weights = request.into_inner().weights.into_iter().collect();
        self.cluster
            .update_weights(weights)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(pb::RolesResponse {}))
    }

    async fn get_quota(
        &self,
        _: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::Quotas>, Status> {
        let quotas = self.cluster.quotas().map_err(grpc_status)?;
        Ok(Response::new(pb::Quotas {
            quotas: quotas
                .into_iter()
                .map(|(role, quota)| pb::RoleQuota {
                    role,
                    guarantee: quota.guarantee.to_string(),
                    limit: quota.limit.map(|l| l.to_string()).unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn update_quota(
        &self,
        request: Request<pb::Quotas>,
    ) -> Result<Response<pb::RolesResponse>, Status> {
        let parse = |role: &str, what: &str, text: &str| {
            crate::resources::ScalarMap::parse(text).map_err(|e| {
                Status::invalid_argument(format!(
                    "role {role}'s {what} {text:?}: {e} (Mesos text form, e.g. cpus:4;mem:8192)"
                ))
            })
        };
        let quotas = request
            .into_inner()
            .quotas
            .into_iter()
            .map(|q| {
                let guarantee = parse(&q.role, "guarantee", &q.guarantee)?;
                let limit = parse(&q.role, "limit", &q.limit)?;
                Ok((
                    q.role,
                    crate::allocator::Quota {
                        guarantee,
                        limit: (!limit.is_empty()).then_some(limit),
                    },
                ))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        self.cluster
            .update_quotas(quotas)
            .await
            .map_err(grpc_status)?;
        Ok(Response::new(pb::RolesResponse {}))
    }

    async fn switch_agent_master(
        &self,
        request: Request<pb::SwitchAgentMasterRequest>,
    ) -> Result<Response<pb::AgentResponse>, Status> {
        let request = request.into_inner();
        let agent_id = agent_id(&request.agent_id)?;
        if request.master.trim().is_empty() {
            return Err(Status::invalid_argument(
                "master is required: host:port or zk://host:port/path",
            ));
        }
        self.cluster
            .switch_agent_master(&agent_id, &request.master)
            .map_err(agent_status)?;
        Ok(Response::new(pb::AgentResponse {}))
    }
}

fn agent_id(id: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("agent_id is required"));
    }
    Ok(id.to_owned())
}

/// As the HTTP API: an agent not known is NOT_FOUND.
fn agent_status(e: ApiError) -> Status {
    match e {
        ApiError::NotFound(why) => Status::not_found(why),
        other => grpc_status(other),
    }
}
