//! The Mesos v1 operator API over HTTP (`POST /api/v1`), every GET call decoded as Mesos's
//! own `mesos.v1.master.Response` (its `.proto` files, strictly: no field Mesos lacks, every
//! field it requires), with a framework running a task on an agent; `/version` and `/flags`.
#[path = "support/mesos_wire.rs"]
mod mesos_wire;
mod support;

use orca_master::{api::mesos_http::client, cluster::ClusterConfig, server::Master};
use serde_json::{Value, json};
use support::*;

async fn operator(http: std::net::SocketAddr, kind: &str) -> Value {
    let (code, body) = client::operator(http, &json!({ "type": kind }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 200, "{kind}: {body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["type"], kind, "{response}");
    if let Err(why) = mesos_wire::check("mesos.v1.master.Response", &response) {
        panic!("{kind}: {why}\n{response:#}");
    }
    response
}

#[tokio::test]
async fn every_get_call_answers_as_mesos_shapes_it() {
    let config = ClusterConfig {
        flags: vec![
            ("allocation_interval".into(), "50ms".into()),
            ("zk".into(), "zk://ops:******@127.0.0.1:2181/mesos".into()),
        ],
        ..fast_config()
    };
    let master = Master::bind(
        orca_collector::CollectorConfig::default(),
        config,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = master.http_addr();
    let cluster = master.cluster.clone();
    tokio::spawn(master.serve(std::future::pending()));
    let (agent_id, _log, _alive) =
        simulated_agent(&cluster, "node-1", "cpus:4;mem:1024;ports:[31000-31999]").await;
    let mut scheduler = Scheduler::subscribe(
        http,
        json!({ "user": "root", "name": "web", "roles": ["prod"], "principal": "ops",
                "capabilities": [{ "type": "MULTI_ROLE" }] }),
    )
    .await;
    // The scheduler API's events are Mesos's too: SUBSCRIBED with a whole MasterInfo.
    let subscribed = &scheduler.client.subscribed;
    if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Event", subscribed) {
        panic!("SUBSCRIBED: {why}\n{subscribed:#}");
    }
    assert_eq!(subscribed["subscribed"]["master_info"]["port"], http.port());
    assert_eq!(subscribed["subscribed"]["master_info"]["version"], "1.11.0");
    let offers = scheduler.wait_for("OFFERS").await;
    if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Event", &offers) {
        panic!("OFFERS: {why}\n{offers:#}");
    }
    let offer = &offers["offers"]["offers"][0];
    let (code, body) = scheduler
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("t1", &offer["agent_id"], scalars(1.0, 128.0))],
            }
        }))
        .await;
    assert_eq!(code.as_u16(), 202, "{body}");
    loop {
        let update = scheduler
            .client
            .take(DEADLINE, |e| e["type"] == "UPDATE")
            .await
            .unwrap();
        if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Event", &update) {
            panic!("UPDATE: {why}\n{update:#}");
        }
        let status = update["update"]["status"].clone();
        scheduler.acknowledge(&status).await;
        if status["state"] == "TASK_RUNNING" {
            break;
        }
    }

    // Every GET call decodes as Mesos's Response.
    for kind in [
        "GET_HEALTH",
        "GET_VERSION",
        "GET_LOGGING_LEVEL",
        "GET_EXECUTORS",
        "GET_WEIGHTS",
        "GET_QUOTA",
    ] {
        operator(http, kind).await;
    }
    let health = operator(http, "GET_HEALTH").await;
    assert_eq!(health["get_health"]["healthy"], true);
    let version = operator(http, "GET_VERSION").await;
    assert_eq!(version["get_version"]["version_info"]["version"], "1.11.0");

    let flags = operator(http, "GET_FLAGS").await;
    let flags = flags["get_flags"]["flags"].as_array().unwrap().clone();
    assert!(flags.contains(&json!({ "name": "allocation_interval", "value": "50ms" })));

    let metrics = operator(http, "GET_METRICS").await;
    let running = metrics["get_metrics"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "master/tasks_running")
        .cloned();
    assert_eq!(running.unwrap()["value"], 1.0);

    let master = operator(http, "GET_MASTER").await;
    let info = &master["get_master"]["master_info"];
    assert_eq!(info["port"], http.port(), "{master}");
    assert!(
        info["hostname"].is_string() && info["ip"].is_u64(),
        "{master}"
    );
    assert!(
        master["get_master"]["elected_time"].is_f64(),
        "a single master leads"
    );

    let tasks = operator(http, "GET_TASKS").await;
    let task = &tasks["get_tasks"]["tasks"][0];
    assert_eq!(task["task_id"]["value"], "t1", "{tasks}");
    assert_eq!(task["state"], "TASK_RUNNING");
    assert_eq!(task["agent_id"]["value"], agent_id.as_str());
    assert_eq!(
        task["framework_id"]["value"],
        scheduler.framework_id.as_str()
    );
    assert_eq!(task["resources"][0]["allocation_info"]["role"], "prod");

    let agents = operator(http, "GET_AGENTS").await;
    let agent = &agents["get_agents"]["agents"][0];
    assert_eq!(agent["agent_info"]["hostname"], "node-1", "{agents}");
    assert_eq!(agent["agent_info"]["id"]["value"], agent_id.as_str());
    assert_eq!(agent["active"], true);
    assert_eq!(agent["deactivated"], false);

    let frameworks = operator(http, "GET_FRAMEWORKS").await;
    let framework = &frameworks["get_frameworks"]["frameworks"][0];
    assert_eq!(framework["framework_info"]["name"], "web", "{frameworks}");
    assert_eq!(framework["framework_info"]["roles"], json!(["prod"]));
    assert_eq!(framework["framework_info"]["principal"], "ops");
    assert_eq!(framework["connected"], true);

    let roles = operator(http, "GET_ROLES").await;
    let prod = roles["get_roles"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "prod")
        .cloned()
        .unwrap_or_else(|| panic!("{roles}"));
    assert_eq!(
        prod["frameworks"],
        json!([{ "value": scheduler.framework_id }])
    );
    assert_eq!(prod["weight"], 1.0);

    // GET_STATE holds the same parts.
    let state = operator(http, "GET_STATE").await;
    assert_eq!(state["get_state"]["get_tasks"], tasks["get_tasks"]);
    assert_eq!(
        state["get_state"]["get_agents"]["agents"][0]["agent_info"],
        agent["agent_info"]
    );

    // The v0 endpoints Mesos serves beside the API.
    let version = get_json(http, "/version").await;
    assert_eq!(version["version"], "1.11.0", "{version}");
    let flags = get_json(http, "/flags").await;
    assert_eq!(flags["flags"]["allocation_interval"], "50ms", "{flags}");
    assert_eq!(flags["flags"]["zk"], "zk://ops:******@127.0.0.1:2181/mesos");
    for path in ["/state", "/state.json", "/master/state.json"] {
        assert_eq!(
            get_json(http, path).await["id"],
            cluster.master_id(),
            "{path}"
        );
    }

    // A call this master does not serve yet says so.
    let (code, body) = client::operator(http, &json!({ "type": "RESERVE_RESOURCES" }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 501);
    assert!(body.contains("RESERVE_RESOURCES"), "{body}");
}

/// DEACTIVATE_AGENT and REACTIVATE_AGENT (Mesos 1.9): a deactivated agent's offer is
/// rescinded and nothing of it is offered until it is reactivated; GET_AGENTS and the
/// metrics say so; a call naming no agent or an unknown one is a 400 that changes nothing.
#[tokio::test]
async fn an_operator_deactivates_and_reactivates_an_agent() {
    let (_, http, cluster) = whole_master().await;
    let (agent_id, _log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let mut scheduler = Scheduler::subscribe(http, json!({ "user": "root", "name": "web" })).await;
    scheduler.wait_for("OFFERS").await;

    let call = |kind: &str, agent: &str| {
        let field = kind.to_ascii_lowercase();
        json!({ "type": kind, field: { "agent_id": { "value": agent } } })
    };
    let deactivate = call("DEACTIVATE_AGENT", &agent_id);
    if let Err(why) = mesos_wire::check("mesos.v1.master.Call", &deactivate) {
        panic!("the call itself is Mesos's: {why}");
    }
    let (code, body) = client::operator(http, &deactivate).await.unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    scheduler.wait_for("RESCIND").await;
    let agents = operator(http, "GET_AGENTS").await;
    let agent = &agents["get_agents"]["agents"][0];
    assert_eq!(agent["deactivated"], true, "{agents}");
    assert_eq!(agent["active"], false, "{agents}");
    let metrics = get_json(http, "/metrics/snapshot").await;
    assert_eq!(metrics["master/slaves_deactivated"], 1.0, "{metrics}");
    // Nothing is offered for a few allocation rounds.
    let quiet = scheduler
        .client
        .take(std::time::Duration::from_millis(500), |e| {
            e["type"] == "OFFERS"
        })
        .await;
    assert!(quiet.is_err(), "offered while deactivated: {quiet:?}");

    for (bad, why) in [
        (json!({ "type": "DEACTIVATE_AGENT" }), "agent_id"),
        (call("DEACTIVATE_AGENT", "no-such-agent"), "no-such-agent"),
    ] {
        let (code, body) = client::operator(http, &bad).await.unwrap();
        assert_eq!(code.as_u16(), 400, "{bad}: {body}");
        assert!(body.contains(why), "{bad}: {body}");
    }

    let (code, body) = client::operator(http, &call("REACTIVATE_AGENT", &agent_id))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    scheduler.wait_for("OFFERS").await;
    let agents = operator(http, "GET_AGENTS").await;
    assert_eq!(agents["get_agents"]["agents"][0]["deactivated"], false);
    assert_eq!(agents["get_agents"]["agents"][0]["active"], true);
}

#[tokio::test]
async fn an_operator_drains_an_agent_then_marks_it_gone() {
    let (_, http, cluster) = whole_master().await;
    let (agent_id, log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let mut scheduler = Scheduler::subscribe(http, json!({ "user": "root", "name": "web" })).await;
    let offers = scheduler.wait_for("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    let (code, body) = scheduler
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [
                    launch("t1", &offer["agent_id"], scalars(1.0, 128.0)),
                    launch("t2", &offer["agent_id"], scalars(1.0, 128.0)),
                ],
            }
        }))
        .await;
    assert_eq!(code.as_u16(), 202, "{body}");
    for task in ["t1", "t2"] {
        loop {
            let status = scheduler.update_for(task).await;
            scheduler.acknowledge(&status).await;
            if status["state"] == "TASK_RUNNING" {
                break;
            }
        }
    }

    let drain = json!({ "type": "DRAIN_AGENT", "drain_agent": {
        "agent_id": { "value": agent_id },
        "max_grace_period": "2s",
    } });
    if let Err(why) = mesos_wire::check("mesos.v1.master.Call", &drain) {
        panic!("the call itself is Mesos's: {why}");
    }
    let (code, body) = client::operator(http, &drain).await.unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    // The kills carry the drain's cap; the framework hears why its tasks ended.
    let mut killed = Vec::new();
    for task in ["t1", "t2"] {
        let status = scheduler.update_for(task).await;
        assert_eq!(status["state"], "TASK_KILLED", "{status}");
        assert_eq!(status["reason"], "REASON_AGENT_DRAINING", "{status}");
        killed.push(status);
    }
    // Until the frameworks acknowledge, the agent drains and cannot be reactivated.
    let reactivate = json!({ "type": "REACTIVATE_AGENT",
        "reactivate_agent": { "agent_id": { "value": agent_id } } });
    let (code, body) = client::operator(http, &reactivate).await.unwrap();
    assert_eq!(code.as_u16(), 400, "{body}");
    assert!(body.contains("DRAINING"), "{body}");
    let metrics = get_json(http, "/metrics/snapshot").await;
    assert_eq!(metrics["master/slaves_draining"], 1.0, "{metrics}");
    assert_eq!(metrics["master/draining_tasks"], 2.0, "{metrics}");
    for status in &killed {
        scheduler.acknowledge(status).await;
    }
    assert_eq!(
        log.lock().unwrap().kill_graces,
        vec![Some(std::time::Duration::from_secs(2)); 2]
    );
    // Once every update is acknowledged it is DRAINED, as GET_AGENTS (decoded as Mesos's)
    // and the metrics say.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let drained = loop {
        let agents = operator(http, "GET_AGENTS").await;
        if let Err(why) = mesos_wire::check("mesos.v1.master.Response", &agents) {
            panic!("GET_AGENTS: {why}\n{agents:#}");
        }
        let agent = agents["get_agents"]["agents"][0].clone();
        assert_eq!(agent["deactivated"], true, "{agent}");
        assert_eq!(
            agent["drain_info"]["config"]["max_grace_period"]["nanoseconds"], 2_000_000_000u64,
            "{agent}"
        );
        if agent["drain_info"]["state"] == "DRAINED" {
            break agent;
        }
        assert_eq!(agent["drain_info"]["state"], "DRAINING", "{agent}");
        assert!(
            std::time::Instant::now() < deadline,
            "not DRAINED in time: {agent}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        drained["estimated_drain_start_time"]["nanoseconds"]
            .as_i64()
            .unwrap()
            > 0
    );
    let metrics = get_json(http, "/metrics/snapshot").await;
    assert_eq!(metrics["master/slaves_drained"], 1.0, "{metrics}");
    assert_eq!(metrics["master/draining_tasks"], 0.0, "{metrics}");
    let state = get_json(http, "/master/state").await;
    assert_eq!(
        state["slaves"][0]["drain_info"]["state"], "DRAINED",
        "{state}"
    );

    // Bad drains and removals get Mesos's answers.
    let gone = |agent: &str| json!({ "type": "MARK_AGENT_GONE", "mark_agent_gone": { "agent_id": { "value": agent } } });
    for (bad, code_wanted) in [
        (json!({ "type": "DRAIN_AGENT" }), 400),
        (
            json!({ "type": "DRAIN_AGENT", "drain_agent": { "agent_id": { "value": "no-such-agent" } } }),
            400,
        ),
        (
            json!({ "type": "DRAIN_AGENT", "drain_agent": { "agent_id": { "value": agent_id },
            "max_grace_period": { "seconds": -1 } } }),
            400,
        ),
        (
            json!({ "type": "DRAIN_AGENT", "drain_agent": { "agent_id": { "value": agent_id },
            "max_grace_period": { "nanoseconds": 5 } } }),
            400,
        ),
        (gone("no-such-agent"), 404),
    ] {
        let (code, body) = client::operator(http, &bad).await.unwrap();
        assert_eq!(code.as_u16(), code_wanted, "{bad}: {body}");
    }

    // Draining again (here with the Duration shape Mesos's documentation uses) is taken.
    let again = json!({ "type": "DRAIN_AGENT", "drain_agent": {
        "agent_id": { "value": agent_id }, "max_grace_period": { "seconds": 1 } } });
    let (code, body) = client::operator(http, &again).await.unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");

    let (code, body) = client::operator(http, &gone(&agent_id)).await.unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    eventually("the agent told to shut down", || {
        log.lock().unwrap().shut_down.is_some()
    })
    .await;
    let agents = operator(http, "GET_AGENTS").await;
    assert_eq!(agents["get_agents"]["agents"], json!([]), "{agents}");
    let (code, body) = client::operator(http, &gone(&agent_id)).await.unwrap();
    assert_eq!(code.as_u16(), 200, "marking it gone again: {body}");
    let (code, body) = client::operator(http, &drain).await.unwrap();
    assert_eq!(code.as_u16(), 400, "draining a gone agent: {body}");
    let metrics = get_json(http, "/metrics/snapshot").await;
    assert_eq!(metrics["master/slaves_gone"], 1.0, "{metrics}");
}

#[test]
fn the_wire_check_rejects_what_a_strict_mesos_client_would() {
    let check = |v: Value| mesos_wire::check("mesos.v1.master.Response", &v);
    assert!(check(json!({ "type": "GET_HEALTH", "get_health": { "healthy": true } })).is_ok());
    let missing = check(json!({ "type": "GET_HEALTH", "get_health": {} })).unwrap_err();
    assert!(missing.contains("get_health.healthy"), "{missing}");
    let unknown =
        check(json!({ "type": "GET_HEALTH", "get_health": { "healthy": true, "extra": 1 } }));
    assert!(unknown.is_err());
    let bad_enum = check(json!({ "type": "GET_SOMETHING" }));
    assert!(bad_enum.is_err());
    let nested = check(json!({ "type": "GET_TASKS", "get_tasks": { "tasks": [
        { "name": "t", "task_id": { "value": "t" }, "framework_id": { "value": "f" },
          "state": "TASK_RUNNING" }
    ] } }))
    .unwrap_err();
    assert!(nested.contains("tasks[0].agent_id"), "{nested}");
}

/// The next operator event that is not a heartbeat, checked as Mesos's `mesos.v1.master.Event`.
async fn operator_event(events: &mut client::OperatorSubscription) -> Value {
    loop {
        let event = events
            .events
            .next_event(DEADLINE)
            .await
            .unwrap()
            .expect("the event stream goes on");
        if let Err(why) = mesos_wire::check("mesos.v1.master.Event", &event) {
            panic!("{why}\n{event:#}");
        }
        if event["type"] != "HEARTBEAT" {
            return event;
        }
    }
}

#[tokio::test]
async fn subscribe_streams_the_state_then_every_change_as_mesos_events() {
    let (_, http, cluster) = whole_master().await;
    let (early_agent, _log, _alive) = simulated_agent(&cluster, "node-0", "cpus:1;mem:256").await;
    let mut events = client::OperatorSubscription::subscribe(http).await.unwrap();
    let subscribed = &events.subscribed;
    if let Err(why) = mesos_wire::check("mesos.v1.master.Event", subscribed) {
        panic!("SUBSCRIBED: {why}\n{subscribed:#}");
    }
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 15.0);
    let state = &subscribed["subscribed"]["get_state"];
    assert_eq!(
        state["get_agents"]["agents"][0]["agent_info"]["id"]["value"], early_agent,
        "{state}"
    );

    // An agent joins.
    let (agent_id, _log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let event = operator_event(&mut events).await;
    assert_eq!(event["type"], "AGENT_ADDED", "{event}");
    assert_eq!(
        event["agent_added"]["agent"]["agent_info"]["id"]["value"],
        agent_id
    );

    // A framework subscribes and runs a task: every status update is an event.
    let mut scheduler =
        Scheduler::subscribe(http, json!({ "user": "root", "name": "events" })).await;
    let framework_id = scheduler.client.framework_id.clone();
    let event = operator_event(&mut events).await;
    assert_eq!(event["type"], "FRAMEWORK_ADDED", "{event}");
    assert_eq!(
        event["framework_added"]["framework"]["framework_info"]["id"]["value"],
        framework_id
    );
    let offers = scheduler.wait_for("OFFERS").await;
    let offer = offers["offers"]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["agent_id"]["value"] == agent_id)
        .cloned()
        .unwrap_or_else(|| offers["offers"]["offers"][0].clone());
    let (code, body) = scheduler
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [launch("t1", &offer["agent_id"], scalars(0.5, 128.0))],
            }
        }))
        .await;
    assert_eq!(code.as_u16(), 202, "{body}");
    let event = operator_event(&mut events).await;
    assert_eq!(event["type"], "TASK_ADDED", "{event}");
    assert_eq!(event["task_added"]["task"]["task_id"]["value"], "t1");
    assert_eq!(event["task_added"]["task"]["state"], "TASK_STAGING");
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("TASK_RUNNING") {
        let event = operator_event(&mut events).await;
        assert_eq!(event["type"], "TASK_UPDATED", "{event}");
        assert_eq!(event["task_updated"]["framework_id"]["value"], framework_id);
        assert_eq!(event["task_updated"]["status"]["task_id"]["value"], "t1");
        states.push(event["task_updated"]["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        states,
        ["TASK_STARTING", "TASK_RUNNING"],
        "one event per update"
    );

    // The framework leaves: torn down, it is removed.
    let (code, body) = scheduler.call(json!({ "type": "TEARDOWN" })).await;
    assert_eq!(code.as_u16(), 202, "{body}");
    let event = operator_event(&mut events).await;
    assert_eq!(event["type"], "FRAMEWORK_REMOVED", "{event}");
    assert_eq!(
        event["framework_removed"]["framework_info"]["id"]["value"],
        framework_id
    );

    // An agent marked gone is removed.
    let gone = json!({ "type": "MARK_AGENT_GONE",
        "mark_agent_gone": { "agent_id": { "value": early_agent } } });
    let (code, body) = client::operator(http, &gone).await.unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    let event = operator_event(&mut events).await;
    assert_eq!(event["type"], "AGENT_REMOVED", "{event}");
    assert_eq!(event["agent_removed"]["agent_id"]["value"], early_agent);
}

/// An operator call checked as Mesos's `mesos.v1.master.Call`, sent; its status and body.
async fn maintenance_call(http: std::net::SocketAddr, call: Value) -> (u16, String) {
    if let Err(why) = mesos_wire::check("mesos.v1.master.Call", &call) {
        panic!("the call itself is Mesos's: {why}\n{call:#}");
    }
    let (code, body) = client::operator(http, &call).await.unwrap();
    (code.as_u16(), body)
}

#[tokio::test]
async fn maintenance_schedules_machines_then_brings_them_down_and_up() {
    let (_, http, cluster) = whole_master().await;
    let (agent_id, log, _alive) = simulated_agent(&cluster, "node-1", "cpus:4;mem:1024").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let hour = 3_600_000_000_000i64;
    let schedule = |windows: Value| {
        json!({ "type": "UPDATE_MAINTENANCE_SCHEDULE",
                "update_maintenance_schedule": { "schedule": { "windows": windows } } })
    };
    let window = |host: &str, start: i64, duration: i64| {
        json!({ "machine_ids": [{ "hostname": host }],
                "unavailability": { "start": { "nanoseconds": start },
                                    "duration": { "nanoseconds": duration } } })
    };

    // Bad schedules are refused whole, with the reason.
    for (windows, says) in [
        (
            json!([
                window("node-1", now + hour, hour),
                window("node-1", now + 3 * hour, hour)
            ]),
            "one maintenance window at a time",
        ),
        (
            json!([window("node-2", now - 3 * hour, hour)]),
            "in the past",
        ),
        (
            json!([{ "machine_ids": [{ "ip": "10.0.0.7" }],
                     "unavailability": { "start": { "nanoseconds": now + hour } } }]),
            "only an ip",
        ),
    ] {
        let (code, body) = maintenance_call(http, schedule(windows)).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(says), "{body}");
    }
    let (code, body) = maintenance_call(
        http,
        json!({ "type": "START_MAINTENANCE",
                "start_maintenance": { "machines": [{ "hostname": "node-1" }] } }),
    )
    .await;
    assert_eq!(code, 400, "not scheduled: {body}");

    // A partition-aware framework runs a task on node-1.
    let mut scheduler = Scheduler::subscribe(
        http,
        json!({ "user": "root", "name": "web",
                "capabilities": [{ "type": "PARTITION_AWARE" }] }),
    )
    .await;
    let offers = scheduler.wait_for("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    let (code, body) = scheduler
        .call(json!({ "type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]],
            "operations": [launch("t1", &offer["agent_id"], scalars(1.0, 128.0))] } }))
        .await;
    assert_eq!(code.as_u16(), 202, "{body}");
    loop {
        let status = scheduler.update_for("t1").await;
        scheduler.acknowledge(&status).await;
        if status["state"] == "TASK_RUNNING" {
            break;
        }
    }

    let (code, body) = maintenance_call(
        http,
        schedule(json!([
            window("node-1", now + hour, hour),
            window("node-2", now + 2 * hour, hour)
        ])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let got = operator(http, "GET_MAINTENANCE_SCHEDULE").await;
    let windows = &got["get_maintenance_schedule"]["schedule"]["windows"];
    assert_eq!(windows[0]["machine_ids"][0]["hostname"], "node-1", "{got}");
    assert_eq!(
        windows[0]["unavailability"]["start"]["nanoseconds"],
        now + hour
    );
    let status = operator(http, "GET_MAINTENANCE_STATUS").await;
    let draining = &status["get_maintenance_status"]["status"]["draining_machines"];
    assert_eq!(draining.as_array().unwrap().len(), 2, "{status}");

    // The framework is asked to give node-1 back, and accepts.
    let inverse = scheduler.wait_for("INVERSE_OFFERS").await;
    if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Event", &inverse) {
        panic!("INVERSE_OFFERS: {why}\n{inverse:#}");
    }
    let inverse_offer = &inverse["inverse_offers"]["inverse_offers"][0];
    assert_eq!(inverse_offer["agent_id"]["value"], agent_id, "{inverse}");
    assert_eq!(
        inverse_offer["unavailability"]["start"]["nanoseconds"],
        now + hour
    );
    let accept = json!({ "type": "ACCEPT_INVERSE_OFFERS",
        "framework_id": { "value": scheduler.client.framework_id },
        "accept_inverse_offers": { "inverse_offer_ids": [inverse_offer["id"]] } });
    if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Call", &accept) {
        panic!("the call itself is Mesos's: {why}");
    }
    let (code, body) = scheduler.call(accept).await;
    assert_eq!(code.as_u16(), 202, "{body}");
    let status = operator(http, "GET_MAINTENANCE_STATUS").await;
    let node_1 = status["get_maintenance_status"]["status"]["draining_machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"]["hostname"] == "node-1")
        .cloned()
        .unwrap();
    assert_eq!(node_1["statuses"][0]["status"], "ACCEPT", "{status}");
    // Its regular offers say when it goes away, in Mesos's `Offer.unavailability`.
    let (code, body) = scheduler.call(json!({ "type": "REVIVE" })).await;
    assert_eq!(code.as_u16(), 202, "{body}");
    let offers = scheduler.wait_for("OFFERS").await;
    if let Err(why) = mesos_wire::check("mesos.v1.scheduler.Event", &offers) {
        panic!("OFFERS: {why}\n{offers:#}");
    }
    assert_eq!(
        offers["offers"]["offers"][0]["unavailability"]["start"]["nanoseconds"],
        now + hour,
        "{offers}"
    );
    assert_eq!(
        node_1["statuses"][0]["framework_id"]["value"],
        scheduler.client.framework_id
    );

    // Down: the machine's agent is removed and told to shut down.
    let (code, body) = maintenance_call(
        http,
        json!({ "type": "START_MAINTENANCE",
                "start_maintenance": { "machines": [{ "hostname": "node-1" }] } }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    eventually("the agent told to shut down", || {
        log.lock().unwrap().shut_down.is_some()
    })
    .await;
    let gone = scheduler.update_for("t1").await;
    assert_eq!(gone["state"], "TASK_GONE", "{gone}");
    assert_eq!(gone["reason"], "REASON_AGENT_REMOVED", "{gone}");
    let status = operator(http, "GET_MAINTENANCE_STATUS").await;
    assert_eq!(
        status["get_maintenance_status"]["status"]["down_machines"],
        json!([{ "hostname": "node-1" }]),
        "{status}"
    );
    let agents = operator(http, "GET_AGENTS").await;
    assert!(
        !agents.to_string().contains(&agent_id),
        "the agent is gone from GET_AGENTS: {agents}"
    );
    // A down machine must stay in the schedule until it is up.
    let (code, body) = maintenance_call(http, schedule(json!([]))).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("STOP_MAINTENANCE"), "{body}");

    // Up: it leaves the schedule.
    let (code, body) = maintenance_call(
        http,
        json!({ "type": "STOP_MAINTENANCE",
                "stop_maintenance": { "machines": [{ "hostname": "node-1" }] } }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let got = operator(http, "GET_MAINTENANCE_SCHEDULE").await;
    let windows = got["get_maintenance_schedule"]["schedule"]["windows"].clone();
    assert_eq!(windows.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(windows[0]["machine_ids"][0]["hostname"], "node-2");
}

/// An agent that registers again (a restart, a healed partition, a master switch) keeps its
/// `registered_time` and gains Mesos's `reregistered_time` in GET_AGENTS.
#[tokio::test]
async fn get_agents_tells_when_an_agent_registered_again() {
    let (_grpc, http, cluster) = whole_master().await;
    let (agent_id, _log, _alive) = simulated_agent(&cluster, "node-1", "cpus:2;mem:512").await;
    let agents = operator(http, "GET_AGENTS").await;
    let first = &agents["get_agents"]["agents"][0];
    assert!(first["registered_time"]["nanoseconds"].is_i64(), "{agents}");
    assert!(first.get("reregistered_time").is_none(), "{agents}");
    let _again = cluster
        .register_agent(
            orca_master::cluster::AgentInfo {
                id: Some(agent_id.clone()),
                hostname: "node-1".into(),
                resources: orca_master::resources::Resources::parse("cpus:2;mem:512").unwrap(),
                attributes: Default::default(),
                principal: None,
            },
            Vec::new(),
        )
        .await
        .unwrap();
    let agents = operator(http, "GET_AGENTS").await;
    let agent = &agents["get_agents"]["agents"][0];
    assert_eq!(agent["agent_info"]["id"]["value"], agent_id.as_str());
    assert_eq!(
        agent["registered_time"], first["registered_time"],
        "{agents}"
    );
    assert!(
        agent["reregistered_time"]["nanoseconds"].is_i64(),
        "{agents}"
    );
}
