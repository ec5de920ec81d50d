//! The embedded registry across a master restart: admitted agents are expected back,
//! registered frameworks may re-subscribe with their id, torn-down ones may not.
mod support;

use orca_master::{
    cluster::{AgentInfo, Cluster, ClusterConfig, CommandInfo, RunningTask, TaskInfo, TaskState},
    resources::Resources,
};
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_restarted_master_recovers_its_registry() {
    let dir = std::env::temp_dir().join(format!("orca-master-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || ClusterConfig {
        registry: Some(dir.join("registry.jsonl")),
        ..fast_config()
    };
    let info = |name: &str| json!({ "user": "root", "name": name, "roles": ["*"] });

    let first = master(config()).await;
    let (agent_id, _log, _alive) =
        simulated_agent(&first.cluster, "node-1", "cpus:2;mem:1024").await;
    let gone = Scheduler::subscribe(first.addr, info("gone")).await;
    let (code, _) = gone.call(json!({ "type": "TEARDOWN" })).await;
    assert_eq!(code.as_u16(), 202);
    let mut stays = Scheduler::subscribe(first.addr, info("stays")).await;
    let offer = stays.wait_for("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = stays
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("kept", &offer["agent_id"], scalars(1.0, 128.0))],
            }
        }))
        .await;
    assert_eq!(code.as_u16(), 202);
    assert_eq!(stays.update_for("kept").await["state"], "TASK_STARTING");
    assert_eq!(stays.update_for("kept").await["state"], "TASK_RUNNING");
    drop(first);

    // A new master process on the same registry.
    let second = master(config()).await;
    let state = get_json(second.addr, "/master/state").await;
    assert_eq!(state["recovered_slaves"][0]["id"], agent_id.as_str());
    assert_eq!(state["recovered_slaves"][0]["hostname"], "node-1");
    // The torn-down framework's id is never reused.
    let mut again = info("gone");
    again["id"] = json!({ "value": gone.framework_id });
    let call = json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": again } });
    let (code, body) = raw_call(second.addr, call.to_string().into_bytes(), None).await;
    assert_eq!(code.as_u16(), 403, "{body}");
    assert!(body.contains("torn down"), "{body}");
    // The agent re-registers under its id with the task still running, before the
    // framework is back: the task is kept (not shut down) and charged to the framework.
    let kept = TaskInfo {
        task_id: "kept".into(),
        name: "kept".into(),
        agent_id: agent_id.clone(),
        resources: Resources::parse("cpus:1;mem:128").unwrap(),
        command: Some(CommandInfo {
            shell: true,
            value: "sleep 1000".into(),
            ..Default::default()
        }),
        labels: Default::default(),
        kill_grace: None,
    };
    let mut link = second
        .cluster
        .register_agent(
            AgentInfo {
                id: Some(agent_id.clone()),
                hostname: "node-1".into(),
                resources: Resources::parse("cpus:2;mem:1024").unwrap(),
                attributes: Default::default(),
                principal: None,
            },
            vec![RunningTask {
                framework_id: stays.framework_id.clone(),
                info: kept,
                role: "*".into(),
                state: TaskState::Running,
            }],
        )
        .await
        .unwrap();
    assert_eq!(link.agent_id, agent_id);
    assert!(link.commands.try_recv().is_err(), "nothing was shut down");
    assert_eq!(
        second
            .cluster
            .agent_available(&agent_id)
            .unwrap()
            .scalar("cpus")
            .as_f64(),
        1.0,
        "the running task's CPU stays charged"
    );
    // The framework re-subscribes under its id and finds its task.
    let mut back = info("stays");
    back["id"] = json!({ "value": stays.framework_id });
    let mut resubscribed = Scheduler::subscribe(second.addr, back).await;
    assert_eq!(resubscribed.framework_id, stays.framework_id);
    let (code, _) = resubscribed
        .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
        .await;
    assert_eq!(code.as_u16(), 202);
    assert_eq!(
        resubscribed.update_for("kept").await["state"],
        "TASK_RUNNING"
    );
    let state = get_json(second.addr, "/master/state").await;
    assert!(state["recovered_slaves"].as_array().unwrap().is_empty());
    assert_eq!(state["slaves"][0]["id"], agent_id.as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unusable_registry_is_a_clear_error() {
    let err = Cluster::new(ClusterConfig {
        registry: Some("/proc/orca/registry.jsonl".into()),
        ..ClusterConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("/proc/orca/registry.jsonl"),
        "{err}"
    );
}

#[tokio::test]
async fn weights_and_quotas_set_at_run_time_survive_a_restart() {
    use orca_master::api::mesos_http::client::operator;
    let dir = std::env::temp_dir().join(format!("orca-master-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || ClusterConfig {
        registry: Some(dir.join("registry.jsonl")),
        ..fast_config()
    };
    let first = master(config()).await;
    let (code, body) = operator(
        first.addr,
        &json!({ "type": "UPDATE_WEIGHTS", "update_weights": { "weight_infos": [
            { "role": "prod", "weight": 3.0 }, { "role": "eng/web", "weight": 2.0 },
        ] } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    let (code, body) = operator(
        first.addr,
        &json!({ "type": "UPDATE_QUOTA", "update_quota": { "quota_configs": [{
            "role": "prod",
            "guarantees": { "cpus": { "value": 2.0 }, "mem": { "value": 1024.0 } },
            "limits": { "cpus": { "value": 4.0 } },
        }] } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    // Bad input: a clear 400, nothing changed.
    let (code, body) = operator(
        first.addr,
        &json!({ "type": "UPDATE_WEIGHTS", "update_weights": { "weight_infos": [
            { "role": "ops", "weight": 2.0 }, { "role": "x", "weight": -1.0 },
        ] } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 400, "{body}");
    assert!(body.contains("-1"), "{body}");
    let (code, body) = operator(
        first.addr,
        &json!({ "type": "UPDATE_QUOTA", "update_quota": {
        "quota_configs": [{ "role": "dev", "guarantees": { "cpus": { "value": 8.0 } },
                            "limits": { "cpus": { "value": 4.0 } } }] } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 400, "{body}");
    // The maintenance schedule is kept too.
    let (code, body) = operator(
        first.addr,
        &json!({ "type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {
            "schedule": { "windows": [{ "machine_ids": [{ "hostname": "node-9" }],
                "unavailability": { "start": { "nanoseconds": 4_000_000_000_000_000_000i64 } } }] } } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    drop(first);

    let second = master(config()).await;
    let (code, body) = operator(second.addr, &json!({ "type": "GET_WEIGHTS" }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 200);
    let weights: serde_json::Value = serde_json::from_str(&body).unwrap();
    let infos = weights["get_weights"]["weight_infos"].as_array().unwrap();
    assert!(
        infos.contains(&json!({ "role": "prod", "weight": 3.0 })),
        "{body}"
    );
    assert!(
        infos.contains(&json!({ "role": "eng/web", "weight": 2.0 })),
        "{body}"
    );
    assert!(!body.contains("\"ops\""), "{body}");
    let (_, body) = operator(second.addr, &json!({ "type": "GET_QUOTA" }))
        .await
        .unwrap();
    let quota: serde_json::Value = serde_json::from_str(&body).unwrap();
    let configs = quota["get_quota"]["status"]["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{body}");
    assert_eq!(configs[0]["role"], "prod");
    assert_eq!(configs[0]["guarantees"]["mem"]["value"], 1024.0);
    assert_eq!(configs[0]["limits"]["cpus"]["value"], 4.0);
    let (_, body) = operator(second.addr, &json!({ "type": "GET_MAINTENANCE_SCHEDULE" }))
        .await
        .unwrap();
    assert!(
        body.contains("node-9") && body.contains("4000000000000000000"),
        "{body}"
    );
    let (code, _) = operator(second.addr, &json!({ "type": "RESERVE_RESOURCES" }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 501, "a call not served yet says so");
    // Mesos's media rules: no Content-Type 400, protobuf 415.
    for (content_type, status) in [
        ("", "400"),
        ("Content-Type: application/x-protobuf\r\n", "415"),
    ] {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(second.addr).await.unwrap();
        let body = r#"{"type":"GET_WEIGHTS"}"#;
        let request = format!(
            "POST /api/v1 HTTP/1.1\r\nHost: x\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
