//! The embedded registry across a master restart: admitted agents are expected back,
//! registered frameworks may re-subscribe with their id, torn-down ones may not.
mod support;

use orca_master::{
    cluster::{AgentInfo, Cluster, ClusterConfig},
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
    let stays = Scheduler::subscribe(first.addr, info("stays")).await;
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
    // The other framework re-subscribes under its id.
    let mut back = info("stays");
    back["id"] = json!({ "value": stays.framework_id });
    let resubscribed = Scheduler::subscribe(second.addr, back).await;
    assert_eq!(resubscribed.framework_id, stays.framework_id);
    // The agent re-registers under its id and is no longer waited for.
    let link = second
        .cluster
        .register_agent(
            AgentInfo {
                id: Some(agent_id.clone()),
                hostname: "node-1".into(),
                resources: Resources::parse("cpus:2;mem:1024").unwrap(),
                attributes: Default::default(),
            },
            Vec::new(),
        )
        .unwrap();
    assert_eq!(link.agent_id, agent_id);
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
