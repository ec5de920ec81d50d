//! The scheduler API over gRPC (`orca.scheduler.v1.Scheduler`): the second front door to the
//! same cluster core the Mesos v1 HTTP API uses. Protobuf is converted to domain types here.
use std::pin::Pin;

use futures::Stream;
use orca_proto::scheduler::v1::{self as pb, event, operation, scheduler_server::Scheduler};
use tonic::{Request, Response, Status};

use super::{
    authn::grpc_principal,
    convert::{grpc_status, seconds, status_to_proto, task_from_proto},
    events::FrameworkEvents,
};
use crate::{
    cluster::{
        ApiError, Cluster, Event, FrameworkInfo, InverseOfferAnswer, Operation, Unavailability,
    },
    resources::proto::resources_to_proto,
};

#[derive(Clone, Debug)]
pub struct SchedulerService {
    cluster: Cluster,
}

impl SchedulerService {
    pub fn new(cluster: Cluster) -> Self {
        SchedulerService { cluster }
    }

    /// The framework a call is for, once it is known to come from its subscription (and
    /// from the principal that subscribed it).
    fn check(
        &self,
        header: Option<&pb::CallHeader>,
        principal: Option<&str>,
    ) -> Result<String, Status> {
        let header = header.ok_or_else(|| {
            Status::invalid_argument("the call needs `header` with framework_id and stream_id")
        })?;
        self.cluster
            .check_stream(&header.framework_id, Some(&header.stream_id), principal)
            .map_err(grpc_status)?;
        Ok(header.framework_id.clone())
    }

    fn answer_inverse_offers(
        &self,
        request: Request<pb::InverseOffersRequest>,
        answer: InverseOfferAnswer,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let refuse = (r.refuse_seconds > 0.0)
            .then(|| seconds(r.refuse_seconds))
            .flatten();
        done(self.cluster.answer_inverse_offers(
            &framework_id,
            &r.inverse_offer_ids,
            answer,
            refuse,
        ))
    }
}

/// The reply to a call: an empty result, or the refusal as a gRPC status.
fn done(result: Result<(), ApiError>) -> Result<Response<pb::CallResult>, Status> {
    result.map_err(grpc_status)?;
    Ok(Response::new(pb::CallResult {}))
}

fn event_to_proto(e: Event, stream_id: &str) -> pb::Event {
    let kind = match e {
        Event::Subscribed {
            framework_id,
            heartbeat_interval,
        } => event::Kind::Subscribed(pb::Subscribed {
            framework_id,
            stream_id: stream_id.to_owned(),
            heartbeat_interval_seconds: heartbeat_interval.as_secs_f64(),
        }),
        Event::Offers(offers) => event::Kind::Offers(pb::Offers {
            offers: offers
                .into_iter()
                .map(|o| pb::Offer {
                    id: o.id,
                    framework_id: o.framework_id,
                    agent_id: o.agent_id,
                    hostname: o.hostname,
                    role: o.role.to_string(),
                    resources: resources_to_proto(&o.resources),
                    attributes: o.attributes.into_iter().collect(),
                    unavailability: o.unavailability.map(unavailability_to_proto),
                })
                .collect(),
        }),
        Event::InverseOffers(offers) => event::Kind::InverseOffers(pb::InverseOffers {
            inverse_offers: offers
                .into_iter()
                .map(|o| pb::InverseOffer {
                    id: o.id,
                    framework_id: o.framework_id,
                    agent_id: o.agent_id,
                    unavailability: Some(unavailability_to_proto(o.unavailability)),
                })
                .collect(),
        }),
        Event::RescindInverseOffer { inverse_offer_id } => {
            event::Kind::RescindInverseOffer(pb::RescindInverseOffer { inverse_offer_id })
        }
        Event::Rescind { offer_id } => event::Kind::Rescind(pb::Rescind { offer_id }),
        Event::Update(s) => event::Kind::Update(status_to_proto(&s)),
        Event::Failure { agent_id } => event::Kind::Failure(pb::Failure { agent_id }),
        Event::Error { message } => event::Kind::Error(pb::Error { message }),
        Event::Heartbeat => event::Kind::Heartbeat(pb::Heartbeat {}),
    };
    pb::Event { kind: Some(kind) }
}

fn unavailability_to_proto(u: Unavailability) -> pb::Unavailability {
    pb::Unavailability {
        start_unix_nanos: u.start_nanos,
        duration_nanos: u.duration_nanos,
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SubscribeStream = Events;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Events>, Status> {
        let principal = grpc_principal(&request);
        let request = request.into_inner();
        let info = request
            .framework_info
            .ok_or_else(|| Status::invalid_argument("`framework_info` is required"))?;
        let info = FrameworkInfo {
            id: (!info.id.is_empty()).then_some(info.id),
            user: info.user,
            name: info.name,
            roles: info.roles,
            principal: (!info.principal.is_empty()).then_some(info.principal),
            hostname: (!info.hostname.is_empty()).then_some(info.hostname),
            webui_url: (!info.webui_url.is_empty()).then_some(info.webui_url),
            failover_timeout: seconds(info.failover_timeout_seconds).unwrap_or_default(),
            checkpoint: info.checkpoint,
            capabilities: info.capabilities,
            labels: info.labels.into_iter().collect(),
        };
        let sub = self
            .cluster
            .subscribe(info, principal.as_deref())
            .await
            .map_err(grpc_status)?;
        if !request.suppressed_roles.is_empty() {
            let _ = self
                .cluster
                .suppress(&sub.framework_id, Some(&request.suppressed_roles));
        }
        let heartbeat = self.cluster.heartbeat_interval();
        let events = FrameworkEvents::new(&self.cluster, sub, heartbeat)
            .into_stream(|events, event| Ok(event_to_proto(event, events.stream_id())));
        Ok(Response::new(Box::pin(events)))
    }

    async fn accept(
        &self,
        request: Request<pb::AcceptRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let mut operations = Vec::new();
        for op in r.operations {
            let (tasks, group) = match op.kind {
                Some(operation::Kind::Launch(l)) => (l.tasks, false),
                Some(operation::Kind::LaunchGroup(l)) => (l.tasks, true),
                None => return Err(Status::invalid_argument("an operation has no kind")),
            };
            let tasks = tasks
                .iter()
                .map(task_from_proto)
                .collect::<Result<Vec<_>, _>>()?;
            operations.push(if group {
                Operation::LaunchGroup(tasks)
            } else {
                Operation::Launch(tasks)
            });
        }
        done(self.cluster.accept(
            &framework_id,
            &r.offer_ids,
            operations,
            seconds(r.refuse_seconds),
        ))
    }

    async fn decline(
        &self,
        request: Request<pb::DeclineRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        done(
            self.cluster
                .decline(&framework_id, &r.offer_ids, seconds(r.refuse_seconds)),
        )
    }

    async fn accept_inverse_offers(
        &self,
        request: Request<pb::InverseOffersRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        self.answer_inverse_offers(request, InverseOfferAnswer::Accept)
    }

    async fn decline_inverse_offers(
        &self,
        request: Request<pb::InverseOffersRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        self.answer_inverse_offers(request, InverseOfferAnswer::Decline)
    }

    async fn revive(
        &self,
        request: Request<pb::RolesRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let roles = (!r.roles.is_empty()).then_some(r.roles);
        done(self.cluster.revive(&framework_id, roles.as_deref()))
    }

    async fn suppress(
        &self,
        request: Request<pb::RolesRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let roles = (!r.roles.is_empty()).then_some(r.roles);
        done(self.cluster.suppress(&framework_id, roles.as_deref()))
    }

    async fn kill(
        &self,
        request: Request<pb::KillRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        done(self.cluster.kill(
            &framework_id,
            &r.task_id,
            Some(r.agent_id.as_str()).filter(|a| !a.is_empty()),
            seconds(r.grace_seconds),
        ))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let uuid: [u8; 16] = r
            .uuid
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("uuid must be 16 bytes"))?;
        done(
            self.cluster
                .acknowledge(&framework_id, &r.agent_id, &r.task_id, uuid),
        )
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let r = request.into_inner();
        let framework_id = self.check(r.header.as_ref(), principal.as_deref())?;
        let tasks: Vec<(String, Option<String>)> = r
            .tasks
            .into_iter()
            .map(|t| (t.task_id, (!t.agent_id.is_empty()).then_some(t.agent_id)))
            .collect();
        done(self.cluster.reconcile(&framework_id, &tasks))
    }

    async fn teardown(
        &self,
        request: Request<pb::CallHeader>,
    ) -> Result<Response<pb::CallResult>, Status> {
        let principal = grpc_principal(&request);
        let header = request.into_inner();
        let framework_id = self.check(Some(&header), principal.as_deref())?;
        done(self.cluster.teardown(&framework_id).await)
    }
}
