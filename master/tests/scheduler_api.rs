//! The Mesos v1 scheduler HTTP API, driven by a hand-written client over real sockets against
//! an in-process master with a simulated agent: every call type, RecordIO framing, and the bad
//! inputs the API must refuse without disturbing what already runs.
mod support;

use std::time::Duration;

use hyper::StatusCode;
use orca_master::cluster::ClusterConfig;
use serde_json::{Value, json};
use support::*;

fn framework(name: &str) -> Value {
    json!({
        "user": "root",
        "name": name,
        "roles": ["*"],
        "capabilities": [{ "type": "MULTI_ROLE" }, { "type": "PARTITION_AWARE" }],
        "failover_timeout": 0.0,
    })
}

/// Reads events until two HEARTBEATs passed, failing on any OFFERS.
async fn no_offers_for_two_heartbeats(s: &mut Scheduler, why: &str) {
    let mut heartbeats = 0;
    while heartbeats < 2 {
        let event = s.next_event().await;
        assert_ne!(event["type"], "OFFERS", "{why}: {event}");
        if event["type"] == "HEARTBEAT" {
            heartbeats += 1;
        }
    }
}

#[tokio::test]
async fn every_call_type_over_http_with_recordio_events() {
    let m = master(fast_config()).await;
    let (agent_id, agent, _alive) =
        simulated_agent(&m.cluster, "node-1", "cpus:4;mem:4096;ports:[31000-31999]").await;
    let mut s = Scheduler::subscribe(m.addr, framework("every-call")).await;

    // OFFERS: the whole agent, with allocation_info and Mesos resource shapes.
    let offers = s.wait_for("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    assert_eq!(offer["agent_id"]["value"], agent_id.as_str());
    assert_eq!(offer["hostname"], "node-1");
    assert_eq!(offer["allocation_info"]["role"], "*");
    let resources = offer["resources"].as_array().unwrap();
    let cpus = resources.iter().find(|r| r["name"] == "cpus").unwrap();
    assert_eq!(cpus["type"], "SCALAR");
    assert_eq!(cpus["scalar"]["value"], 4.0);
    let ports = resources.iter().find(|r| r["name"] == "ports").unwrap();
    assert_eq!(
        ports["ranges"]["range"][0],
        json!({"begin": 31000, "end": 31999})
    );

    // ACCEPT with LAUNCH: STARTING then RUNNING, each with a uuid, each acknowledged.
    let (code, body) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("t1", &offer["agent_id"], scalars(1.0, 256.0))],
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let starting = s.update_for("t1").await;
    assert_eq!(starting["state"], "TASK_STARTING");
    s.acknowledge(&starting).await;
    let running = s.update_for("t1").await;
    assert_eq!(running["state"], "TASK_RUNNING");
    assert_eq!(running["source"], "SOURCE_EXECUTOR");
    s.acknowledge(&running).await;
    eventually("the agent to hear both acknowledgements", || {
        agent.lock().unwrap().acknowledged.len() == 2
    })
    .await;
    assert_eq!(agent.lock().unwrap().launched, vec![vec!["t1".to_string()]]);

    // The rest of the agent is offered again (refuse_seconds 0): 3 CPUs left.
    let offers = s.wait_for("OFFERS").await;
    let offer = offers["offers"]["offers"][0].clone();
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .unwrap()["scalar"]["value"]
        .as_f64()
        .unwrap();
    assert_eq!(cpus, 3.0);

    // DECLINE with a long filter: no offer for a while; REVIVE brings it back at once.
    let (code, _) = s
        .call(json!({
            "type": "DECLINE",
            "decline": { "offer_ids": [offer["id"]], "filters": { "refuse_seconds": 3600.0 } }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    // Two heartbeats pass (600 ms, a dozen allocation rounds) without an offer.
    no_offers_for_two_heartbeats(&mut s, "declined resources came back").await;
    let (code, _) = s.call(json!({ "type": "REVIVE", "revive": {} })).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let offers = s.wait_for("OFFERS").await;
    let offer = offers["offers"]["offers"][0].clone();

    // SUPPRESS: after declining, nothing more is offered even with no filter.
    let (code, _) = s
        .call(json!({ "type": "SUPPRESS", "suppress": { "roles": ["*"] } }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (code, _) = s
        .call(json!({
            "type": "DECLINE",
            "decline": { "offer_ids": [offer["id"]], "filters": { "refuse_seconds": 0.0 } }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    no_offers_for_two_heartbeats(&mut s, "a suppressed framework got offers").await;

    // RECONCILE: implicit answers for every live task; explicit for an unknown one.
    let (code, _) = s
        .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let answer = s.update_for("t1").await;
    assert_eq!(answer["state"], "TASK_RUNNING");
    assert_eq!(answer["reason"], "REASON_RECONCILIATION");
    assert!(
        answer.get("uuid").is_none(),
        "reconciliation answers need no ack"
    );
    let (code, _) = s
        .call(json!({
            "type": "RECONCILE",
            "reconcile": { "tasks": [{ "task_id": { "value": "never-launched" } }] }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(
        s.update_for("never-launched").await["state"],
        "TASK_UNKNOWN"
    );

    // KILL with a grace period: the agent is asked, the task ends KILLED.
    let (code, _) = s
        .call(json!({
            "type": "KILL",
            "kill": {
                "task_id": { "value": "t1" },
                "agent_id": { "value": agent_id },
                "kill_policy": { "grace_period": { "nanoseconds": 2_000_000_000i64 } },
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let killed = s.update_for("t1").await;
    assert_eq!(killed["state"], "TASK_KILLED");
    s.acknowledge(&killed).await;
    assert_eq!(agent.lock().unwrap().killed, vec!["t1".to_string()]);
    eventually("the killed task's CPU to be free again", || {
        m.cluster
            .agent_available(&agent_id)
            .is_some_and(|r| r.scalar("cpus").as_f64() >= 1.0)
    })
    .await;

    // /master/state and /metrics/snapshot speak Mesos.
    let state = get_json(m.addr, "/master/state").await;
    let fw = &state["frameworks"][0];
    assert_eq!(fw["id"], s.framework_id.as_str());
    assert_eq!(fw["completed_tasks"][0]["state"], "TASK_KILLED");
    assert_eq!(state["slaves"][0]["hostname"], "node-1");
    assert_eq!(state["slaves"][0]["resources"]["cpus"], 4.0);
    let metrics = get_json(m.addr, "/metrics/snapshot").await;
    assert_eq!(metrics["master/elected"], 1.0);
    assert_eq!(metrics["master/tasks_killed"], 1.0);
    assert_eq!(metrics["master/frameworks_active"], 1.0);
    assert!(metrics["allocator/allocation_runs"].as_f64().unwrap() > 0.0);

    // TEARDOWN ends the stream and tells the agent.
    let (code, _) = s.call(json!({ "type": "TEARDOWN" })).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    while let Some(event) = s.try_next_event().await {
        assert_ne!(event["type"], "OFFERS");
    }
    let state = get_json(m.addr, "/master/state").await;
    assert_eq!(state["frameworks"].as_array().unwrap().len(), 0);
    assert_eq!(
        state["completed_frameworks"][0]["id"],
        s.framework_id.as_str()
    );
    assert!(
        s.raw_records() >= 10,
        "every event arrived as its own RecordIO record"
    );
}

#[tokio::test]
async fn bad_calls_are_refused_and_nothing_running_is_affected() {
    let m = master(fast_config()).await;
    let (agent_id, agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:2;mem:1024").await;
    let mut s = Scheduler::subscribe(m.addr, framework("bad-input")).await;
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("keep-running", &offer["agent_id"], scalars(1.0, 128.0))],
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(s.update_for("keep-running").await["state"], "TASK_STARTING");
    assert_eq!(s.update_for("keep-running").await["state"], "TASK_RUNNING");

    // Malformed JSON: 400 naming the problem.
    let (code, body) = raw_call(m.addr, b"{\"type\": \"SUBSCRIBE\", ".to_vec(), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed call"), "{body}");
    // Not JSON at all (protobuf bytes with a JSON content type).
    let (code, _) = raw_call(m.addr, vec![0x08, 0x01, 0x12, 0x00], None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // No stream id, wrong stream id: 403.
    let call = json!({ "type": "REVIVE", "framework_id": { "value": s.framework_id } });
    let (code, body) = raw_call(m.addr, call.to_string().into_bytes(), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body.contains("Mesos-Stream-Id"), "{body}");
    let (code, _) = raw_call(
        m.addr,
        call.to_string().into_bytes(),
        Some("not-the-stream"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // A framework that never subscribed: 403.
    let stranger = json!({ "type": "REVIVE", "framework_id": { "value": "nobody" } });
    let (code, _) = raw_call(
        m.addr,
        stranger.to_string().into_bytes(),
        Some(&s.stream_id),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // Unknown call type and a call missing its object: 400.
    assert_eq!(
        s.call(json!({ "type": "DANCE" })).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.call(json!({ "type": "ACCEPT" })).await.0,
        StatusCode::BAD_REQUEST
    );
    // SUBSCRIBE without user/name: 400.
    let bad = json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": { "user": "" } } });
    assert_eq!(
        raw_call(m.addr, bad.to_string().into_bytes(), None).await.0,
        StatusCode::BAD_REQUEST
    );

    // ACCEPT of an offer that does not exist: TASK_DROPPED, nothing launched.
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [{ "value": "no-such-offer" }],
                "operations": [launch("ghost", &json!({"value": agent_id}), scalars(0.5, 64.0))],
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let dropped = s.update_for("ghost").await;
    assert_eq!(dropped["state"], "TASK_DROPPED");
    assert_eq!(dropped["reason"], "REASON_INVALID_OFFERS");

    // Asking for more than offered: TASK_ERROR, and the offer's resources come back.
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("greedy", &offer["agent_id"], scalars(64.0, 64.0))],
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let refused = s.update_for("greedy").await;
    assert_eq!(refused["state"], "TASK_ERROR");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("offers hold only"),
        "{refused}"
    );
    // The same offer again (already used): dropped.
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("reuse", &offer["agent_id"], scalars(0.1, 32.0))],
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(s.update_for("reuse").await["state"], "TASK_DROPPED");

    // Nothing already running was touched.
    assert_eq!(
        agent.lock().unwrap().launched,
        vec![vec!["keep-running".to_string()]]
    );
    assert!(agent.lock().unwrap().killed.is_empty());
    let state = get_json(m.addr, "/master/state").await;
    let tasks = state["frameworks"][0]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["state"], "TASK_RUNNING");
    let metrics = get_json(m.addr, "/metrics/snapshot").await;
    assert!(metrics["master/invalid_calls"].as_f64().unwrap() >= 2.0);
}

#[tokio::test]
async fn a_task_group_launches_all_or_nothing() {
    let m = master(fast_config()).await;
    let (_agent_id, agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:4;mem:4096").await;
    let mut s = Scheduler::subscribe(m.addr, framework("gang")).await;
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let group = |tasks: Vec<Value>| {
        json!({
            "type": "LAUNCH_GROUP",
            "launch_group": {
                "executor": { "type": "DEFAULT", "executor_id": { "value": "e" } },
                "task_group": { "tasks": tasks }
            }
        })
    };
    // Three tasks whose sum exceeds the offer: none launches.
    let a = &offer["agent_id"];
    let too_big = group(vec![
        task("g1", a, scalars(2.0, 512.0)),
        task("g2", a, scalars(2.0, 512.0)),
        task("g3", a, scalars(2.0, 512.0)),
    ]);
    let (code, body) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": { "offer_ids": [offer["id"]], "operations": [too_big],
                        "filters": { "refuse_seconds": 0.0 } }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    for id in ["g1", "g2", "g3"] {
        let status = s.update_for(id).await;
        assert_eq!(status["state"], "TASK_ERROR", "{status}");
        assert_eq!(status["reason"], "REASON_TASK_GROUP_INVALID");
    }
    assert!(
        agent.lock().unwrap().launched.is_empty(),
        "nothing reached the agent"
    );

    // A group that fits reaches the agent as one launch.
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let fits = group(vec![
        task("h1", &offer["agent_id"], scalars(1.0, 512.0)),
        task("h2", &offer["agent_id"], scalars(1.0, 512.0)),
    ]);
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": { "offer_ids": [offer["id"]], "operations": [fits] }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    for id in ["h1", "h2"] {
        assert_eq!(s.update_for(id).await["state"], "TASK_STARTING");
    }
    assert_eq!(
        agent.lock().unwrap().launched,
        vec![vec!["h1".to_string(), "h2".to_string()]]
    );
}

#[tokio::test]
async fn unanswered_offers_are_rescinded() {
    let m = master(ClusterConfig {
        offer_timeout: Some(Duration::from_millis(300)),
        ..fast_config()
    })
    .await;
    let (_agent_id, _agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:1;mem:512").await;
    let mut s = Scheduler::subscribe(m.addr, framework("slow")).await;
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let rescind = s.wait_for("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], offer["id"]);
    // Accepting the rescinded offer launches nothing.
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("late", &offer["agent_id"], scalars(0.5, 64.0))],
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(s.update_for("late").await["state"], "TASK_DROPPED");
    // The resources are offered again.
    s.wait_for("OFFERS").await;
}

/// Accepts the next offer with one task and waits until the task runs.
async fn launch_on_next_offer(s: &mut Scheduler, task_id: &str, resources: Value) {
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch(task_id, &offer["agent_id"], resources)],
            }
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(s.update_for(task_id).await["state"], "TASK_STARTING");
    assert_eq!(s.update_for(task_id).await["state"], "TASK_RUNNING");
}

#[tokio::test]
async fn a_silent_agent_is_unreachable_then_its_tasks_are_lost() {
    let m = master(ClusterConfig {
        agent_ping_timeout: Duration::from_millis(400),
        agent_removal_timeout: Duration::from_millis(600),
        ..fast_config()
    })
    .await;
    let (agent_id, _agent, alive) = simulated_agent(&m.cluster, "node-1", "cpus:1;mem:512").await;
    let mut s = Scheduler::subscribe(m.addr, framework("partition")).await;
    launch_on_next_offer(&mut s, "far", scalars(0.5, 64.0)).await;
    // The agent stops heartbeating.
    alive.store(false, std::sync::atomic::Ordering::Relaxed);
    let unreachable = s.update_for("far").await;
    assert_eq!(unreachable["state"], "TASK_UNREACHABLE");
    assert_eq!(unreachable["reason"], "REASON_AGENT_UNREACHABLE");
    let lost = s.update_for("far").await;
    assert_eq!(lost["state"], "TASK_LOST");
    let failure = s.wait_for("FAILURE").await;
    assert_eq!(failure["failure"]["agent_id"]["value"], agent_id.as_str());
    let state = get_json(m.addr, "/master/state").await;
    assert_eq!(state["slaves"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_agent_restarted_without_its_tasks_has_them_lost_and_offered_again() {
    let m = master(fast_config()).await;
    let (agent_id, _agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:1;mem:512").await;
    let mut s = Scheduler::subscribe(m.addr, framework("restart")).await;
    launch_on_next_offer(&mut s, "gone", scalars(1.0, 512.0)).await;

    // The agent process restarts: same id (kept in its work directory), no tasks reported.
    let _link = m
        .cluster
        .register_agent(
            orca_master::cluster::AgentInfo {
                id: Some(agent_id.clone()),
                hostname: "node-1".into(),
                resources: orca_master::resources::Resources::parse("cpus:1;mem:512").unwrap(),
                attributes: Default::default(),
                principal: None,
            },
            Vec::new(),
        )
        .await
        .unwrap();
    let lost = s.update_for("gone").await;
    assert_eq!(lost["state"], "TASK_LOST", "{lost}");
    assert_eq!(lost["reason"], "REASON_AGENT_RESTARTED", "{lost}");
    assert_eq!(lost["source"], "SOURCE_MASTER", "{lost}");
    s.acknowledge(&lost).await;
    // Everything the task held is offered again, on the same agent.
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(offer["agent_id"]["value"], agent_id.as_str());
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .unwrap()["scalar"]["value"]
        .as_f64();
    assert_eq!(cpus, Some(1.0), "{offer}");
    let state = get_json(m.addr, "/master/state").await;
    assert_eq!(
        state["slaves"].as_array().unwrap().len(),
        1,
        "still one agent"
    );
}

/// An agent that re-registers (a new connection, or a switch to another master's address)
/// while a launch is on its way over the old connection does not report the task: still
/// STAGING, it is launched again over the new link rather than lost.
#[tokio::test]
async fn a_task_still_staging_when_its_agent_re_registers_is_launched_again() {
    use orca_master::cluster::{AgentCommand, AgentInfo, StatusSource, TaskState, TaskStatus};
    use orca_master::resources::Resources;
    let m = master(fast_config()).await;
    let info = |id: Option<String>| AgentInfo {
        id,
        hostname: "node-1".into(),
        resources: Resources::parse("cpus:1;mem:512").unwrap(),
        attributes: Default::default(),
        principal: None,
    };
    // The first link never answers: its launch is lost with it.
    let mut first = m
        .cluster
        .register_agent(info(None), Vec::new())
        .await
        .unwrap();
    let agent_id = first.agent_id.clone();
    let mut s = Scheduler::subscribe(m.addr, framework("in-flight")).await;
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = s
        .call(
            json!({ "type": "ACCEPT", "accept": { "offer_ids": [offer["id"]],
            "operations": [launch("flying", &offer["agent_id"], scalars(0.5, 64.0))] } }),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let sent = tokio::time::timeout(Duration::from_secs(5), first.commands.recv())
        .await
        .unwrap();
    assert!(
        matches!(sent, Some(AgentCommand::Launch { .. })),
        "{sent:?}"
    );

    let mut second = m
        .cluster
        .register_agent(info(Some(agent_id.clone())), Vec::new())
        .await
        .unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), second.commands.recv())
        .await
        .unwrap();
    let Some(AgentCommand::Launch {
        framework_id,
        framework_user,
        tasks,
        ..
    }) = again
    else {
        panic!("expected the launch again, got {again:?}");
    };
    assert_eq!(framework_user, "root");
    assert_eq!(
        tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        ["flying"]
    );
    m.cluster
        .status_update(
            &framework_id,
            TaskStatus {
                task_id: "flying".into(),
                agent_id: agent_id.clone(),
                state: TaskState::Running,
                source: StatusSource::Executor,
                reason: None,
                message: None,
                timestamp: 0.0,
                uuid: Some(*uuid::Uuid::new_v4().as_bytes()),
            },
        )
        .unwrap();
    // The framework's first word on the task is that it runs: it was never lost.
    let update = s.update_for("flying").await;
    assert_eq!(update["state"], "TASK_RUNNING", "{update}");
    drop(first);
}

#[tokio::test]
async fn update_framework_moves_the_framework_to_new_roles() {
    let m = master(fast_config()).await;
    let (_agent, _log, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:2;mem:1024").await;
    let mut s = Scheduler::subscribe(m.addr, framework("mover")).await;
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(offer["allocation_info"]["role"], "*");

    // Bad updates change nothing and say why.
    let (code, body) = s.call(json!({ "type": "UPDATE_FRAMEWORK" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("update_framework"), "{body}");
    let mut other_user = framework("mover");
    other_user["user"] = json!("someone-else");
    other_user["roles"] = json!(["web"]);
    let (code, body) = s
        .call(json!({
            "type": "UPDATE_FRAMEWORK",
            "update_framework": { "framework_info": other_user },
        }))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("`user` and `principal` cannot be changed"),
        "{body}"
    );

    // Moving to role `web`: the offer in `*` is rescinded, new offers come in `web`.
    let mut info = framework("mover");
    info["id"] = json!({ "value": s.framework_id });
    info["roles"] = json!(["web"]);
    let (code, body) = s
        .call(json!({
            "type": "UPDATE_FRAMEWORK",
            "update_framework": { "framework_info": info.clone() },
        }))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let rescind = s.wait_for("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], offer["id"]);
    let offer = s.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(offer["allocation_info"]["role"], "web", "{offer}");
    let state = get_json(m.addr, "/master/state").await;
    assert_eq!(state["frameworks"][0]["roles"], json!(["web"]), "{state}");

    // Suppressed through the update, then the outstanding offer declined without a filter:
    // its resources go back and no offer comes while suppressed. (Declining first would let
    // the allocator re-offer in between, before the update arrives.)
    let (code, body) = s
        .call(json!({
            "type": "UPDATE_FRAMEWORK",
            "update_framework": { "framework_info": info, "suppressed_roles": ["web"] },
        }))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = s
        .call(json!({
            "type": "DECLINE",
            "decline": { "offer_ids": [offer["id"]], "filters": { "refuse_seconds": 0.0 } },
        }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    no_offers_for_two_heartbeats(&mut s, "suppressed by UPDATE_FRAMEWORK").await;
}

#[tokio::test]
async fn roles_are_limited_to_their_principals() {
    let mut config = fast_config();
    config.roles.insert(
        "prod".into(),
        orca_master::cluster::RoleConfig {
            principals: vec!["ops".into()],
            ..Default::default()
        },
    );
    let m = master(config).await;
    let mut info = framework("intruder");
    info["roles"] = json!(["prod"]);
    info["principal"] = json!("dev");
    let call = json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": info } });
    let (code, body) = raw_call(m.addr, call.to_string().into_bytes(), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body.contains("may not use role prod"), "{body}");
    info["principal"] = json!("ops");
    Scheduler::subscribe(m.addr, info).await;
}

#[tokio::test]
async fn shutdown_ends_a_command_tasks_executor_and_messages_are_accepted_and_dropped() {
    let m = master(fast_config()).await;
    let (agent_id, agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:1;mem:512").await;
    let mut s = Scheduler::subscribe(m.addr, framework("shutdown")).await;
    launch_on_next_offer(&mut s, "t1", scalars(0.5, 128.0)).await;

    // An executor that does not run on that agent: accepted, nothing happens (as in Mesos).
    for (executor, agent) in [("nope", agent_id.as_str()), ("t1", "another-agent")] {
        let (code, body) = s
            .call(json!({ "type": "SHUTDOWN", "shutdown": {
                "executor_id": { "value": executor }, "agent_id": { "value": agent } } }))
            .await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    }
    // A command task's executor id is its task id: shutting it down kills the task.
    let (code, body) = s
        .call(json!({ "type": "SHUTDOWN", "shutdown": {
            "executor_id": { "value": "t1" }, "agent_id": { "value": agent_id } } }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let killed = s.update_for("t1").await;
    assert_eq!(killed["state"], "TASK_KILLED", "{killed}");
    s.acknowledge(&killed).await;
    assert_eq!(agent.lock().unwrap().killed, vec!["t1".to_string()]);

    let (code, body) = s.call(json!({ "type": "SHUTDOWN" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("shutdown"), "{body}");
    let (code, _) = s
        .call(json!({ "type": "MESSAGE", "message": {
            "agent_id": { "value": agent_id }, "executor_id": { "value": "t1" },
            "data": "aGVsbG8=" } }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (code, _) = s.call(json!({ "type": "MESSAGE" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = s
        .call(json!({ "type": "REQUEST", "request": { "requests": [] } }))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (code, _) = s.call(json!({ "type": "REQUEST" })).await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "Mesos expects 'request' to be present"
    );
    // Answers to inverse offers not outstanding are dropped, as Mesos does; a missing body is
    // a bad call.
    let (code, body) = s
        .call(
            json!({ "type": "DECLINE_INVERSE_OFFERS", "decline_inverse_offers": {
            "inverse_offer_ids": [{ "value": "no-such-inverse-offer" }] } }),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let (code, body) = s.call(json!({ "type": "ACCEPT_INVERSE_OFFERS" })).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}
