//! The master's side of the agent link (`orca.cluster.v1.AgentLink`): one bidirectional gRPC
//! stream per agent, carrying registration, heartbeats, status updates and usage in, and
//! launch, kill, acknowledgement and shutdown commands out. Protobuf is converted to the
//! cluster's domain types by `api::convert`.
use std::{pin::Pin, time::Duration};

use futures::Stream;
use orca_proto::cluster::v1::{
    self as pb, agent_link_server::AgentLink, agent_message, master_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::authn::AgentIdentity;
use super::convert::{
    command_to_proto, grpc_status, status_from_proto, task_from_proto, task_state_from_proto,
    usage_from_proto,
};
use crate::{
    cluster::{AgentCommand, AgentInfo, ApiError, Cluster, RunningTask, TaskState},
    resources::proto::resources_from_proto,
};

#[derive(Clone, Debug)]
pub struct AgentLinkService {
    cluster: Cluster,
    heartbeat: Duration,
}

impl AgentLinkService {
    /// `heartbeat` is the interval agents are told to keep (well inside the ping timeout).
    pub fn new(cluster: Cluster, heartbeat: Duration) -> Self {
        AgentLinkService { cluster, heartbeat }
    }
}

type Outgoing = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type AttachStream = Outgoing;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        // With mutual TLS the door put the name in the agent's certificate here.
        let principal = request
            .extensions()
            .get::<AgentIdentity>()
            .map(|id| id.0.clone());
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream closed before registering"))?;
        let Some(agent_message::Kind::Register(register)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message on the agent link must be `register`",
            ));
        };
        let resources = resources_from_proto(&register.resources)
            .map_err(|e| Status::invalid_argument(format!("the agent's resources: {e}")))?;
        let mut running = Vec::new();
        for r in &register.running {
            let Some(task) = &r.task else { continue };
            running.push(RunningTask {
                framework_id: r.framework_id.clone(),
                info: task_from_proto(task)?,
                role: r.role.clone(),
                state: task_state_from_proto(r.state).unwrap_or(TaskState::Running),
            });
        }
        let info = AgentInfo {
            id: (!register.agent_id.is_empty()).then(|| register.agent_id.clone()),
            hostname: register.hostname.clone(),
            resources,
            attributes: register.attributes.clone().into_iter().collect(),
            principal: principal.clone(),
        };
        let link = self
            .cluster
            .register_agent(info, running)
            .await
            .map_err(|e| match e {
                ApiError::BadRequest(m) => Status::invalid_argument(m),
                other => grpc_status(other),
            })?;
        let agent_id = link.agent_id.clone();
        tracing::info!(agent = %agent_id, hostname = %register.hostname, certificate = principal.as_deref().unwrap_or("-"), "agent registered");
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx
            .send(Ok(pb::MasterMessage {
                kind: Some(master_message::Kind::Registered(pb::Registered {
                    agent_id: agent_id.clone(),
                    heartbeat_interval_seconds: self.heartbeat.as_secs_f64(),
                })),
            }))
            .await;
        let mut commands = link.commands;
        let out = tx.clone();
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                if out.send(Ok(command_to_proto(command))).await.is_err() {
                    return;
                }
            }
            // The master let go of this link: the term ended, or the agent registered again
            // on another link or was removed. The agent re-registers with the leader.
            let _ = out
                .send(Err(Status::unavailable(
                    "the master closed this agent link (its term ended or the agent registered \
                     again); register with the leading master",
                )))
                .await;
        });
        let cluster = self.cluster.clone();
        let term = link.term;
        tokio::spawn(async move {
            loop {
                let message = match incoming.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(agent = %agent_id, %status, "agent link broke");
                        break;
                    }
                };
                if cluster.term() != term {
                    // What the agent sends now belongs to the next term's link: applied
                    // here it would meet a state that does not know the agent (and an
                    // update for a task it does not know would be acknowledged away).
                    break;
                }
                let _ = cluster.agent_heartbeat(&agent_id);
                match message.kind {
                    Some(agent_message::Kind::Status(update)) => {
                        let Some(status) = update.status else {
                            continue;
                        };
                        let mut status = match status_from_proto(&status) {
                            Ok(s) => s,
                            Err(why) => {
                                tracing::warn!(agent = %agent_id, %why, "bad status update ignored");
                                continue;
                            }
                        };
                        // The link says which agent speaks, not the message.
                        status.agent_id = agent_id.clone();
                        let (task_id, uuid) = (status.task_id.clone(), status.uuid);
                        match cluster.status_update(&update.framework_id, status) {
                            Ok(()) => {}
                            Err(ApiError::NotFound(why) | ApiError::Forbidden(why)) => {
                                // Nobody will ever acknowledge it: stop the agent retrying.
                                tracing::info!(agent = %agent_id, %why, "update not applied");
                                if let Some(uuid) = uuid {
                                    let ack = AgentCommand::Acknowledge { task_id, uuid };
                                    let _ = tx.send(Ok(command_to_proto(ack))).await;
                                }
                            }
                            Err(err) => {
                                tracing::warn!(agent = %agent_id, %err, "status update refused")
                            }
                        }
                    }
                    Some(agent_message::Kind::Usage(usage)) => {
                        cluster.task_usage(&agent_id, &usage.task_id, usage_from_proto(&usage))
                    }
                    Some(agent_message::Kind::ContainerReply(reply)) => {
                        cluster.container_reply(&agent_id, reply)
                    }
                    Some(agent_message::Kind::Heartbeat(_)) | None => {}
                    Some(agent_message::Kind::Register(_)) => {
                        tracing::warn!(agent = %agent_id, "a second register on one stream is ignored");
                    }
                }
            }
            cluster.container_agent_gone(&agent_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
