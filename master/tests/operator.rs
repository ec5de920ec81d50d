//! The operator service: the cluster watch (snapshot, then deltas as agents, frameworks and
//! tasks change) and an operator's kill of another framework's task, over a real socket.
mod support;

use orca_proto::cluster::v1::TaskState;
use orca_proto::operator::v1::{self as pb, operator_client::OperatorClient};
use serde_json::json;
use support::*;
use tonic::Code;

async fn next_delta(watch: &mut tonic::Streaming<pb::ClusterDelta>) -> pb::ClusterDelta {
    tokio::time::timeout(DEADLINE, watch.message())
        .await
        .expect("a cluster delta before the deadline")
        .unwrap()
        .expect("the watch is open")
}

#[tokio::test]
async fn watch_follows_the_cluster_and_an_operator_kills_any_task() {
    let (grpc, http, cluster) = whole_master().await;
    let (agent_id, agent, _alive) =
        simulated_agent(&cluster, "node-1", "cpus:4;mem:1024;ports:[31000-31999]").await;

    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut watch = operator
        .watch_cluster(pb::WatchClusterRequest::default())
        .await
        .unwrap()
        .into_inner();
    let snapshot = next_delta(&mut watch).await;
    assert!(snapshot.full);
    let agent_state = &snapshot.upserted_agents[0];
    assert_eq!(
        (
            agent_state.id.as_str(),
            agent_state.hostname.as_str(),
            agent_state.state()
        ),
        (agent_id.as_str(), "node-1", pb::AgentState::Active)
    );
    assert_eq!(agent_state.total["cpus"], 4.0);
    assert_eq!(agent_state.total_ranges["ports"], "[31000-31999]");
    assert!(snapshot.upserted_frameworks.is_empty());

    // A framework subscribes and launches: the watch shows it, the task and the agent's use.
    let mut scheduler = Scheduler::subscribe(
        http,
        json!({"user": "root", "name": "batch", "roles": ["*"]}),
    )
    .await;
    let offers = scheduler.wait_for("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    let (status, body) = scheduler
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("t1", &offer["agent_id"], scalars(1.5, 256.0))],
            }
        }))
        .await;
    assert_eq!(status, 202, "{body}");
    let mut framework = None;
    let mut task = None;
    while framework.is_none()
        || task
            .as_ref()
            .is_none_or(|t: &pb::Task| t.state() != TaskState::Running)
    {
        let delta = next_delta(&mut watch).await;
        assert!(!delta.full);
        framework = delta.upserted_frameworks.into_iter().next().or(framework);
        task = delta
            .upserted_tasks
            .into_iter()
            .find(|t| t.id == "t1")
            .or(task);
    }
    let framework = framework.unwrap();
    let task = task.unwrap();
    assert_eq!(framework.name, "batch");
    assert!(framework.connected);
    assert_eq!(task.key, format!("{}/t1", framework.id));
    assert_eq!(task.hostname, "node-1");
    assert_eq!(task.resources["cpus"], 1.5);

    // Bad input: a kill without ids, a kill of a framework that does not exist.
    let err = operator
        .kill_task(pb::KillTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = operator
        .kill_task(pb::KillTaskRequest {
            framework_id: "nope".into(),
            task_id: "t1".into(),
            grace_seconds: 0.0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());

    // The operator kills the framework's task: the agent is told, the framework gets the
    // update, the watch shows TASK_KILLED.
    operator
        .kill_task(pb::KillTaskRequest {
            framework_id: framework.id.clone(),
            task_id: "t1".into(),
            grace_seconds: 2.0,
        })
        .await
        .unwrap();
    eventually("the agent told to kill t1", || {
        agent.lock().unwrap().killed == ["t1"]
    })
    .await;
    // Updates are in order: STARTING, RUNNING, then the kill's KILLED.
    let mut state = scheduler.update_for("t1").await["state"].clone();
    while state != "TASK_KILLED" {
        assert!(
            state == "TASK_STARTING" || state == "TASK_RUNNING",
            "unexpected {state}"
        );
        state = scheduler.update_for("t1").await["state"].clone();
    }
    loop {
        let delta = next_delta(&mut watch).await;
        if let Some(t) = delta.upserted_tasks.iter().find(|t| t.id == "t1")
            && t.state() == TaskState::Killed
        {
            break;
        }
    }
}

#[tokio::test]
async fn container_actions_and_logs_reach_the_agent_of_the_host() {
    use orca_proto::cluster::v1::ContainerAction;
    let (grpc, _, cluster) = whole_master().await;
    let (_agent_id, agent, _alive) = simulated_agent(&cluster, "node-1", "cpus:1;mem:128").await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let action = |host: &str, id: &str, action: ContainerAction| pb::ContainerActionRequest {
        hostname: host.into(),
        container_id: id.into(),
        action: action as i32,
    };

    operator
        .container_action(action("node-1", "c1", ContainerAction::Pause))
        .await
        .unwrap();
    {
        let log = agent.lock().unwrap();
        assert_eq!(log.containers.len(), 1);
        assert_eq!(log.containers[0].container_id, "c1");
        assert_eq!(log.containers[0].action(), ContainerAction::Pause);
    }

    // Bad input: a host without an agent, no action, logs asked as an action, a container
    // the agent does not have.
    let err = operator
        .container_action(action("node-9", "c1", ContainerAction::Stop))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("node-9"), "{}", err.message());
    let err = operator
        .container_action(action("node-1", "c1", ContainerAction::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = operator
        .container_action(action("node-1", "c1", ContainerAction::Logs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = operator
        .container_action(action("node-1", "missing", ContainerAction::Stop))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("no container missing"),
        "{}",
        err.message()
    );

    // Logs: the chunks arrive in order; leaving a followed log cancels it at the agent.
    let mut logs = operator
        .container_logs(pb::ContainerLogsRequest {
            hostname: "node-1".into(),
            container_id: "c1".into(),
            follow: true,
            tail: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let mut text = Vec::new();
    while text.len() < 14 {
        let chunk = tokio::time::timeout(DEADLINE, logs.message())
            .await
            .expect("a log chunk")
            .unwrap()
            .expect("the log stream is open");
        text.extend(chunk.data);
    }
    assert_eq!(String::from_utf8(text).unwrap(), "line 1\nline 2\n");
    let request = agent.lock().unwrap().containers.last().unwrap().clone();
    assert!(request.follow);
    assert_eq!(request.tail, 10);
    drop(logs);
    eventually("the agent told to stop the followed log", || {
        agent
            .lock()
            .unwrap()
            .containers
            .iter()
            .any(|c| c.cancel && c.request_id == request.request_id)
    })
    .await;
}

/// The gRPC twins of DEACTIVATE/REACTIVATE/DRAIN_AGENT and MARK_AGENT_GONE: the same rules,
/// and the watch shows each step (deactivated, draining with the tasks left, drained, gone).
#[tokio::test]
async fn an_operator_drains_reactivates_and_removes_an_agent_over_grpc() {
    let (grpc, _http, cluster) = whole_master().await;
    let (agent_id, log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut watch = operator
        .watch_cluster(pb::WatchClusterRequest::default())
        .await
        .unwrap()
        .into_inner();
    let agent = |id: &str| pb::AgentRequest {
        agent_id: id.to_owned(),
    };
    let mut until = async |check: &dyn Fn(&pb::Agent) -> bool| loop {
        let delta = next_delta(&mut watch).await;
        if let Some(a) = delta.upserted_agents.iter().find(|a| check(a)) {
            return a.clone();
        }
    };
    until(&|a| a.id == agent_id && !a.deactivated).await;

    let err = operator
        .reactivate_agent(agent(&agent_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "not deactivated: {err}");
    operator.deactivate_agent(agent(&agent_id)).await.unwrap();
    let seen = until(&|a| a.deactivated).await;
    assert_eq!(
        seen.state(),
        pb::AgentState::Active,
        "still connected while deactivated"
    );

    operator
        .drain_agent(pb::DrainAgentRequest {
            agent_id: agent_id.clone(),
            max_grace_seconds: Some(1.5),
            mark_gone: false,
        })
        .await
        .unwrap();
    let drained = until(&|a| a.drain_state() == pb::AgentDrainState::Drained).await;
    assert_eq!(drained.drain_max_grace_seconds, 1.5);
    assert!(drained.drain_started_unix_ms > 0);
    assert_eq!(drained.drain_tasks_left, 0);
    operator.reactivate_agent(agent(&agent_id)).await.unwrap();
    until(&|a| !a.deactivated && a.drain_state() == pb::AgentDrainState::None).await;

    for bad in [
        operator
            .drain_agent(pb::DrainAgentRequest {
                agent_id: agent_id.clone(),
                max_grace_seconds: Some(-1.0),
                mark_gone: false,
            })
            .await
            .unwrap_err(),
        operator
            .drain_agent(pb::DrainAgentRequest::default())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    }
    let unknown = operator
        .mark_agent_gone(agent("no-such-agent"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    operator.mark_agent_gone(agent(&agent_id)).await.unwrap();
    loop {
        let delta = next_delta(&mut watch).await;
        if delta.removed_agents.contains(&agent_id) {
            break;
        }
    }
    eventually("the agent told to shut down", || {
        log.lock().unwrap().shut_down.is_some()
    })
    .await;
}

#[tokio::test]
async fn an_operator_moves_an_agent_to_another_master_over_grpc() {
    let (grpc, _http, cluster) = whole_master().await;
    let (agent_id, log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let switch = |agent_id: &str, master: &str| pb::SwitchAgentMasterRequest {
        agent_id: agent_id.to_owned(),
        master: master.to_owned(),
    };
    for (request, code) in [
        (switch("no-such-agent", "10.0.0.2:7070"), Code::NotFound),
        (switch(&agent_id, ""), Code::InvalidArgument),
        (switch(&agent_id, "10.0.0.2"), Code::InvalidArgument),
        (switch(&agent_id, "zk://zk1:2181"), Code::InvalidArgument),
        (switch("", "10.0.0.2:7070"), Code::InvalidArgument),
    ] {
        let err = operator.switch_agent_master(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }
    assert_eq!(log.lock().unwrap().switched_to, None, "nothing was sent");
    operator
        .switch_agent_master(switch(&agent_id, "zk://zk1:2181,zk2:2181/orca"))
        .await
        .unwrap();
    eventually("the agent told to move", || {
        log.lock().unwrap().switched_to.as_deref() == Some("zk://zk1:2181,zk2:2181/orca")
    })
    .await;
}

#[tokio::test]
async fn an_operator_schedules_maintenance_over_grpc() {
    let (grpc, _http, cluster) = whole_master().await;
    let (_agent_id, log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        + 3_600_000_000_000;
    let window = |hosts: &[&str]| pb::MaintenanceWindow {
        hostnames: hosts.iter().map(|h| h.to_string()).collect(),
        start_unix_nanos: in_an_hour,
        duration_nanos: Some(3_600_000_000_000),
    };
    let overlapping = operator
        .update_maintenance_schedule(pb::MaintenanceSchedule {
            windows: vec![window(&["node-1"]), window(&["node-1"])],
        })
        .await
        .unwrap_err();
    assert_eq!(overlapping.code(), Code::InvalidArgument, "{overlapping}");
    assert!(overlapping.message().contains("one maintenance window"));
    operator
        .update_maintenance_schedule(pb::MaintenanceSchedule {
            windows: vec![window(&["node-1", "node-2"])],
        })
        .await
        .unwrap();
    let now = operator
        .get_maintenance(pb::GetMaintenanceRequest {})
        .await
        .unwrap()
        .into_inner();
    let draining: Vec<&str> = now.draining.iter().map(|m| m.hostname.as_str()).collect();
    assert_eq!(draining, ["node-1", "node-2"]);

    let machines = |hosts: &[&str]| pb::MachinesRequest {
        hostnames: hosts.iter().map(|h| h.to_string()).collect(),
    };
    operator
        .start_maintenance(machines(&["node-1"]))
        .await
        .unwrap();
    eventually("the agent told to shut down", || {
        log.lock().unwrap().shut_down.is_some()
    })
    .await;
    let now = operator
        .get_maintenance(pb::GetMaintenanceRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.down, ["node-1"]);
    let not_down = operator
        .stop_maintenance(machines(&["node-2"]))
        .await
        .unwrap_err();
    assert_eq!(not_down.code(), Code::InvalidArgument, "{not_down}");
    operator
        .stop_maintenance(machines(&["node-1"]))
        .await
        .unwrap();
    let now = operator
        .get_maintenance(pb::GetMaintenanceRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(now.down.is_empty());
    assert_eq!(now.schedule.unwrap().windows[0].hostnames, ["node-2"]);
}

#[tokio::test]
async fn an_operator_sets_weights_and_quotas_over_grpc() {
    let (grpc, _http, _cluster) = whole_master().await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    operator
        .update_weights(pb::Weights {
            weights: [("prod".to_owned(), 3.0)].into(),
        })
        .await
        .unwrap();
    let weights = operator
        .get_weights(pb::GetWeightsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(weights.weights.get("prod"), Some(&3.0));
    let bad = operator
        .update_weights(pb::Weights {
            weights: [("dev".to_owned(), -1.0)].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");

    let quota = |guarantee: &str, limit: &str| pb::Quotas {
        quotas: vec![pb::RoleQuota {
            role: "prod".into(),
            guarantee: guarantee.into(),
            limit: limit.into(),
        }],
    };
    for (guarantee, limit) in [("cpus:lots", ""), ("cpus:8", "cpus:4")] {
        let bad = operator
            .update_quota(quota(guarantee, limit))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    }
    operator
        .update_quota(quota("cpus:2;mem:1024", "cpus:4"))
        .await
        .unwrap();
    let quotas = operator
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner()
        .quotas;
    assert_eq!(quotas.len(), 1);
    assert_eq!(quotas[0].role, "prod");
    assert_eq!(quotas[0].guarantee, "cpus:2;mem:1024");
    assert_eq!(quotas[0].limit, "cpus:4");
}

#[tokio::test]
async fn get_master_tells_what_this_master_is_over_grpc() {
    let (grpc, http, cluster) = whole_master().await;
    let mut operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let master = operator
        .get_master(pb::GetMasterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(master.id, cluster.master_id());
    assert_eq!(master.mesos_version, "1.11.0");
    assert!(master.leading);
    assert_eq!(master.leader, http.to_string(), "{master:?}");
    assert!(master.started_unix_ms > 0 && master.elected_unix_ms >= master.started_unix_ms);
    assert_eq!(
        master.metrics.get("master/elected"),
        Some(&1.0),
        "{master:?}"
    );
}

/// Watchers share one publisher: a second watcher gets the same deltas (the very same
/// message, stamped once), and a watcher that joins later starts from the latest view.
#[tokio::test]
async fn watchers_share_one_publisher() {
    let (grpc, _http, cluster) = whole_master().await;
    let operator = OperatorClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let watch = |operator: &OperatorClient<tonic::transport::Channel>| {
        let mut operator = operator.clone();
        async move {
            operator
                .watch_cluster(pb::WatchClusterRequest::default())
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut first = watch(&operator).await;
    let mut second = watch(&operator).await;
    assert!(next_delta(&mut first).await.full);
    assert!(next_delta(&mut second).await.full);

    let (agent_id, _agent, _alive) = simulated_agent(&cluster, "node-1", "cpus:1;mem:64").await;
    let a = next_delta(&mut first).await;
    let b = next_delta(&mut second).await;
    assert_eq!(a, b, "both watchers get one shared delta");
    assert_eq!(a.upserted_agents[0].id, agent_id);

    let mut late = watch(&operator).await;
    let snapshot = next_delta(&mut late).await;
    assert!(snapshot.full);
    assert_eq!(snapshot.upserted_agents.len(), 1);
    assert_eq!(snapshot.upserted_agents[0].id, agent_id);
}
