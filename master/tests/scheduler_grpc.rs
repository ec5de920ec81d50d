//! The gRPC scheduler API: the same core as the HTTP API, driven with tonic's generated
//! client over a real socket, including malformed protobuf and missing stream ids.
mod support;

use std::time::Duration;

use orca_proto::{
    cluster::v1 as cpb,
    scheduler::v1::{self as pb, event, operation, scheduler_client::SchedulerClient},
};
use support::*;
use tonic::Code;

async fn next(
    stream: &mut tonic::Streaming<pb::Event>,
    want: fn(&event::Kind) -> bool,
) -> event::Kind {
    loop {
        let e = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("an event before the deadline")
            .unwrap()
            .expect("the stream is open");
        let kind = e.kind.unwrap();
        if want(&kind) {
            return kind;
        }
    }
}

fn resources(cpus: f64, mem: f64) -> Vec<cpb::Resource> {
    vec![
        cpb::Resource {
            name: "cpus".into(),
            value: Some(cpb::resource::Value::Scalar(cpus)),
            reservation: String::new(),
        },
        cpb::Resource {
            name: "mem".into(),
            value: Some(cpb::resource::Value::Scalar(mem)),
            reservation: String::new(),
        },
    ]
}

/// Bytes that are not a valid `AcceptRequest`: field 1 (a message) sent as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(uint64, tag = "1")]
    header: u64,
}

#[tokio::test]
async fn the_grpc_front_door_runs_the_same_lifecycle() {
    let (grpc, _, cluster) = whole_master().await;
    let (agent_id, agent, _alive) = simulated_agent(&cluster, "node-1", "cpus:2;mem:1024").await;

    let mut client = SchedulerClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
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
        .await
        .unwrap()
        .into_inner();
    let event::Kind::Subscribed(sub) =
        next(&mut events, |k| matches!(k, event::Kind::Subscribed(_))).await
    else {
        unreachable!()
    };
    let header = pb::CallHeader {
        framework_id: sub.framework_id.clone(),
        stream_id: sub.stream_id.clone(),
    };
    let event::Kind::Offers(offers) =
        next(&mut events, |k| matches!(k, event::Kind::Offers(_))).await
    else {
        unreachable!()
    };
    let offer = &offers.offers[0];
    assert_eq!(offer.agent_id, agent_id);

    // Bad calls: no header, a stale stream id, malformed protobuf.
    let err = client
        .revive(pb::RolesRequest {
            header: None,
            roles: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .revive(pb::RolesRequest {
            header: Some(pb::CallHeader {
                framework_id: sub.framework_id.clone(),
                stream_id: "stale".into(),
            }),
            roles: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("Mesos-Stream-Id"),
        "{}",
        err.message()
    );
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let err = raw
        .unary::<Garbage, pb::CallResult, _>(
            tonic::Request::new(Garbage { header: 7 }),
            "/orca.scheduler.v1.Scheduler/Accept".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert!(err.message().contains("decode"), "{}", err.message());

    // LAUNCH through gRPC; updates come as events; acknowledgements reach the agent.
    let task = cpb::Task {
        task_id: "g1".into(),
        name: "g1".into(),
        agent_id: agent_id.clone(),
        resources: resources(1.0, 128.0),
        command: Some(cpb::Command {
            shell: true,
            value: "sleep 1000".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .accept(pb::AcceptRequest {
            header: Some(header.clone()),
            offer_ids: vec![offer.id.clone()],
            operations: vec![pb::Operation {
                kind: Some(operation::Kind::Launch(pb::Launch { tasks: vec![task] })),
            }],
            refuse_seconds: 0.0,
        })
        .await
        .unwrap();
    for want in ["TASK_STARTING", "TASK_RUNNING"] {
        let event::Kind::Update(status) =
            next(&mut events, |k| matches!(k, event::Kind::Update(_))).await
        else {
            unreachable!()
        };
        assert_eq!(status.state().mesos_name(), want);
        client
            .acknowledge(pb::AcknowledgeRequest {
                header: Some(header.clone()),
                agent_id: status.agent_id.clone(),
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone(),
            })
            .await
            .unwrap();
    }
    eventually("two acknowledgements at the agent", || {
        agent.lock().unwrap().acknowledged.len() == 2
    })
    .await;
    client
        .kill(pb::KillRequest {
            header: Some(header.clone()),
            task_id: "g1".into(),
            agent_id: agent_id.clone(),
            grace_seconds: 1.0,
        })
        .await
        .unwrap();
    let event::Kind::Update(status) =
        next(&mut events, |k| matches!(k, event::Kind::Update(_))).await
    else {
        unreachable!()
    };
    assert_eq!(status.state().mesos_name(), "TASK_KILLED");
    client
        .reconcile(pb::ReconcileRequest {
            header: Some(header.clone()),
            tasks: vec![pb::TaskRef {
                task_id: "nope".into(),
                agent_id: String::new(),
            }],
        })
        .await
        .unwrap();
    let event::Kind::Update(status) =
        next(&mut events, |k| matches!(k, event::Kind::Update(_))).await
    else {
        unreachable!()
    };
    assert_eq!(
        (status.task_id.as_str(), status.state().mesos_name()),
        ("nope", "TASK_LOST")
    );
    client.teardown(header).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = events.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends after TEARDOWN");
}
