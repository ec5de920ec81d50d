//! The whole scheduling path for real: a framework speaking the Mesos v1 HTTP API to an
//! in-process master, which launches on an agent attached over the gRPC agent link, which
//! runs real processes in real cgroups. Needs root (cgroups).
mod support;

use std::{net::SocketAddr, time::Duration};

use orca_agent::tasks::{TaskManager, TaskManagerConfig, cgroups::Driver, link};
use orca_master::{
    api::mesos_http::client::{self, SchedulerClient, scalars},
    resources::Resources,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    grpc: SocketAddr,
    http: SocketAddr,
    cgroup_parent: String,
    resources: String,
    agent_id: String,
    work: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    link: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.link.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.work);
        // Every task ended before the test returned; its parent cgroup is empty.
        if let Ok(driver) = Driver::detect() {
            driver.remove_parent(&self.cgroup_parent);
        }
    }
}

/// A master on free ports and one agent with `resources`, attached over gRPC.
async fn cluster(tag: &str, resources: &str) -> Cluster {
    support::agent::require_root();
    let (grpc, http, stop_tx) = support::in_process_master().await;
    let work = std::env::temp_dir().join(format!("orca-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let cgroup_parent = format!("orca-e2e-{tag}-{}", std::process::id());
    let (link, agent_id) = agent(grpc, &work, &cgroup_parent, resources).await;
    Cluster {
        grpc,
        http,
        cgroup_parent,
        resources: resources.to_owned(),
        agent_id,
        work,
        stop: Some(stop_tx),
        link,
    }
}

/// Starts an agent process's task side on `work` (as `orca-agent run` does: leftovers of a
/// previous run ended, the id kept in the work directory) and waits until it registers.
async fn agent(
    grpc: SocketAddr,
    work: &std::path::Path,
    cgroup_parent: &str,
    resources: &str,
) -> (tokio::task::JoinHandle<()>, String) {
    let mut tasks = TaskManagerConfig::new(work.to_path_buf(), Driver::detect().unwrap());
    tasks.supervisor = support::bin("orca-task-supervisor");
    tasks.cgroup_parent = cgroup_parent.to_owned();
    let (manager, updates) = TaskManager::new(tasks);
    let mut link_config = link::LinkConfig::new(
        orca_agent::master_switch::MasterSwitch::new(&grpc.to_string(), None).unwrap(),
        "e2e-node".into(),
        Resources::parse(resources).unwrap(),
    );
    link_config.usage_interval = Duration::from_millis(200);
    link_config.id_file = Some(work.join("agent_id"));
    let (registered_tx, mut registered) = tokio::sync::watch::channel(None);
    let link = tokio::spawn(link::recover_and_run(
        link_config,
        manager,
        updates,
        Some(registered_tx),
    ));
    let agent_id = tokio::time::timeout(WAIT, registered.wait_for(Option::is_some))
        .await
        .expect("the agent registers")
        .unwrap()
        .clone()
        .unwrap();
    (link, agent_id)
}

fn framework(name: &str) -> Value {
    json!({
        "user": "root",
        "name": name,
        "roles": ["*"],
        "capabilities": [{ "type": "MULTI_ROLE" }],
    })
}

async fn offer(s: &mut SchedulerClient) -> Value {
    s.take(WAIT, |e| e["type"] == "OFFERS").await.unwrap()["offers"]["offers"][0].clone()
}

async fn launch(s: &SchedulerClient, offer: &Value, ops: Vec<Value>) {
    let (code, body) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": ops,
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202, "{body}");
}

/// The next update of `task_id`, acknowledged.
async fn update(s: &mut SchedulerClient, task_id: &str) -> Value {
    let event = s
        .take(WAIT, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
        })
        .await
        .unwrap();
    let status = event["update"]["status"].clone();
    s.acknowledge(&status).await.unwrap();
    status
}

/// The task's first two updates: TASK_STARTING, then TASK_RUNNING.
async fn started(s: &mut SchedulerClient, task_id: &str) {
    assert_eq!(update(s, task_id).await["state"], "TASK_STARTING");
    assert_eq!(update(s, task_id).await["state"], "TASK_RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_tasks_run_finish_fail_and_are_killed_through_the_master() {
    let c = cluster("life", "cpus:2;mem:1024;disk:1000").await;
    let mut s = SchedulerClient::subscribe(c.http, framework("e2e"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    assert_eq!(o["agent_id"]["value"], c.agent_id.as_str());
    launch(
        &s,
        &o,
        vec![
            client::launch(
                "done",
                &o["agent_id"],
                scalars(0.5, 64.0),
                "echo hi; sleep 0.2",
            ),
            client::launch("fails", &o["agent_id"], scalars(0.5, 64.0), "exit 7"),
            client::launch("sleeper", &o["agent_id"], scalars(0.5, 64.0), "sleep 1000"),
        ],
    )
    .await;
    for id in ["done", "fails", "sleeper"] {
        started(&mut s, id).await;
    }
    let done = update(&mut s, "done").await;
    assert_eq!(done["state"], "TASK_FINISHED", "{done}");
    let out = c
        .work
        .join(format!("frameworks/{}/tasks/done/stdout", s.framework_id));
    assert_eq!(std::fs::read_to_string(out).unwrap(), "hi\n");
    let failed = update(&mut s, "fails").await;
    assert_eq!(failed["state"], "TASK_FAILED");
    assert_eq!(failed["message"], "command exited with status 7");

    // Usage from the task's cgroup reaches /master/state.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = client::get_json(c.http, "/master/state").await.unwrap();
        let tasks = state["frameworks"][0]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let usage = tasks
            .iter()
            .find(|t| t["id"] == "sleeper")
            .map(|t| t["usage"].clone());
        if usage
            .as_ref()
            .is_some_and(|u| u["memory_bytes"].as_u64().unwrap_or(0) > 0)
        {
            assert_eq!(usage.unwrap()["memory_limit_bytes"], 64 << 20);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no usage reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // KILL through the API ends the real process.
    let (code, _) = s
        .call(json!({
            "type": "KILL",
            "kill": { "task_id": { "value": "sleeper" }, "agent_id": o["agent_id"] }
        }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202);
    assert_eq!(update(&mut s, "sleeper").await["state"], "TASK_KILLED");
    let metrics = client::get_json(c.http, "/metrics/snapshot").await.unwrap();
    assert_eq!(metrics["master/tasks_finished"], 1.0);
    assert_eq!(metrics["master/tasks_failed"], 1.0);
    assert_eq!(metrics["master/tasks_killed"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_reaches_the_framework_with_its_reason() {
    let c = cluster("oom", "cpus:1;mem:512").await;
    let mut s = SchedulerClient::subscribe(c.http, framework("oom"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    launch(
        &s,
        &o,
        vec![client::launch(
            "hog",
            &o["agent_id"],
            scalars(0.5, 32.0),
            "head -c 200m /dev/zero | tail",
        )],
    )
    .await;
    started(&mut s, "hog").await;
    let failed = update(&mut s, "hog").await;
    assert_eq!(failed["state"], "TASK_FAILED");
    assert_eq!(failed["reason"], "REASON_CONTAINER_LIMITATION_MEMORY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tearing_down_a_framework_kills_its_running_tasks() {
    let c = cluster("teardown", "cpus:1;mem:512").await;
    let mut s = SchedulerClient::subscribe(c.http, framework("short-lived"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    launch(
        &s,
        &o,
        vec![client::launch(
            "victim",
            &o["agent_id"],
            scalars(0.5, 64.0),
            "sleep 1000",
        )],
    )
    .await;
    started(&mut s, "victim").await;
    let pid_file = c
        .work
        .join(format!("frameworks/{}/tasks/victim", s.framework_id));
    assert!(pid_file.exists());
    let cgroup = format!(
        "/sys/fs/cgroup/memory/orca-e2e-teardown-{}/{}.victim/cgroup.procs",
        std::process::id(),
        s.framework_id
    );
    assert!(!std::fs::read_to_string(&cgroup).unwrap().trim().is_empty());
    let (code, _) = s.call(json!({ "type": "TEARDOWN" })).await.unwrap();
    assert_eq!(code.as_u16(), 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::path::Path::new(&cgroup).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task's cgroup outlived teardown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_keeps_its_tasks_and_the_master_keeps_them_running() {
    let mut c = cluster("restart", "cpus:1;mem:256").await;
    let mut s = SchedulerClient::subscribe(c.http, framework("restart"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    launch(
        &s,
        &o,
        vec![client::launch(
            "survivor",
            &o["agent_id"],
            scalars(0.5, 64.0),
            "sleep 300",
        )],
    )
    .await;
    started(&mut s, "survivor").await;
    let saved = std::fs::read_to_string(c.work.join("agent_id")).unwrap();
    assert_eq!(
        saved, c.agent_id,
        "the agent keeps its id in its work directory"
    );
    let cgroup = Driver::detect()
        .unwrap()
        .existing(&c.cgroup_parent)
        .into_iter()
        .find(|(name, _)| name.ends_with(".survivor"))
        .expect("the task's cgroup")
        .1;
    let pids = cgroup.pids();
    assert!(!pids.is_empty());

    // The agent's link ends (its process restarting) and a new agent starts on the same work
    // directory: it takes the task back and re-registers with it.
    c.link.abort();
    let (link, agent_id) = agent(c.grpc, &c.work, &c.cgroup_parent, &c.resources).await;
    c.link = link;
    assert_eq!(agent_id, c.agent_id, "it re-registers as the same agent");
    assert_eq!(
        cgroup.pids(),
        pids,
        "the task's processes are the same ones"
    );
    let state = client::get_json(c.http, "/master/state").await.unwrap();
    assert_eq!(state["slaves"].as_array().unwrap().len(), 1, "{state}");
    let task = &state["frameworks"][0]["tasks"][0];
    assert_eq!(task["id"], "survivor", "{state}");
    assert_eq!(task["state"], "TASK_RUNNING", "{state}");
    // The restarted agent still controls it.
    let (code, body) = s
        .call(json!({ "type": "KILL", "kill": { "task_id": { "value": "survivor" } } }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202, "{body}");
    // (An update whose acknowledgement was in flight when the link ended comes again:
    // delivery is at least once.)
    let killed = loop {
        let u = update(&mut s, "survivor").await;
        if !["TASK_STARTING", "TASK_RUNNING"].contains(&u["state"].as_str().unwrap()) {
            break u;
        }
    };
    assert_eq!(killed["state"], "TASK_KILLED", "{killed}");
    assert!(
        cgroup.dirs().iter().all(|d| !d.exists()),
        "its cgroup is removed"
    );
}
