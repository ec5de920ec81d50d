//! Tasks outlive the agent process: a real `orca-agent` is killed with SIGKILL while it runs
//! tasks for a framework (through an in-process master), and started again — from another
//! copy of its binary, as after an upgrade — and takes its tasks back; a restart in the
//! middle of a launch burst leaves no task unaccounted for; a changed configuration refuses
//! to start and `--recover=cleanup` ends everything; a drained agent's tasks, killed within
//! the drain's grace period, run on another agent; a running agent moves to another
//! master and back without a restart. Needs root (cgroups).
mod support;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use orca_agent::tasks::cgroups::Driver;
use orca_master::api::mesos_http::client::{self, SchedulerClient, scalars};
use orca_task_supervisor::{ExitRecord, Pids, ProcessIdentity};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// An in-process master, a work directory and a cgroup parent for one test's agent.
struct Node {
    grpc: SocketAddr,
    http: SocketAddr,
    work: PathBuf,
    cgroups_root: String,
    /// Directories each holding a copy of `orca-agent` and `orca-task-supervisor`.
    installs: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    agent: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.installs.join("agent.log")).unwrap_or_default();
            eprintln!("--- the agent's log ---\n{log}");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Whatever a failed assertion left running ends with its cgroup.
        support::agent::remove_task_cgroups(&self.cgroups_root);
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_dir_all(&self.installs);
    }
}

impl Node {
    async fn start(tag: &str) -> Node {
        support::agent::require_root();
        let (grpc, http, stop_tx) = support::in_process_master().await;
        let base = std::env::temp_dir().join(format!("orca-recovery-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        Node {
            grpc,
            http,
            work: base.join("work"),
            cgroups_root: format!("orca-recovery-{tag}-{}", std::process::id()),
            installs: base.join("installs"),
            stop: Some(stop_tx),
            agent: None,
        }
    }

    /// `orca-agent` and its supervisor copied into `installs/<version>` (a package upgrade
    /// replaces the files; the running supervisors keep the old ones).
    fn install(&self, version: &str) -> PathBuf {
        let dir = self.installs.join(version);
        std::fs::create_dir_all(&dir).unwrap();
        for binary in ["orca-agent", "orca-task-supervisor"] {
            std::fs::copy(support::bin(binary), dir.join(binary)).unwrap();
        }
        dir.join("orca-agent")
    }

    fn agent_command(&self, binary: &Path, resources: &str) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(["--master", &self.grpc.to_string()])
            .args(["--probe", "proc", "--interval", "1s"])
            .args(["--docker-socket", "", "--containerd-socket", ""])
            .arg("--work-dir")
            .arg(&self.work)
            .args(["--cgroups-root", &self.cgroups_root])
            .args(["--hostname", "recovery-node", "--resources", resources])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Starts the agent; its log goes to `installs/agent.log` (appended, printed when an
    /// assertion fails).
    fn start_agent(&mut self, binary: &Path) {
        std::fs::create_dir_all(&self.installs).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.installs.join("agent.log"))
            .unwrap();
        let child = self
            .agent_command(binary, "cpus:8;mem:8192")
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    /// SIGKILL: nothing of the agent gets to run on its way out.
    fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    fn checkpoint(&self, framework: &str, task: &str) -> PathBuf {
        self.work
            .join("meta/frameworks")
            .join(framework)
            .join("tasks")
            .join(task)
    }

    fn pids(&self, framework: &str, task: &str) -> Pids {
        Pids::read(&self.checkpoint(framework, task))
            .unwrap()
            .expect("the supervisor checkpointed the task's processes")
    }

    /// Task cgroups under this node's parent that hold processes.
    fn busy_cgroups(&self) -> Vec<String> {
        Driver::detect()
            .unwrap()
            .existing(&self.cgroups_root)
            .into_iter()
            .filter(|(_, c)| !c.pids().is_empty())
            .map(|(name, _)| name)
            .collect()
    }

    async fn state(&self) -> Value {
        client::get_json(self.http, "/master/state").await.unwrap()
    }

    /// The master's tasks of the first framework by id, with their states.
    async fn task_states(&self) -> BTreeMap<String, String> {
        let state = self.state().await;
        let framework = &state["frameworks"][0];
        ["tasks", "completed_tasks"]
            .iter()
            .flat_map(|list| framework[list].as_array().cloned().unwrap_or_default())
            .map(|t| {
                (
                    t["id"].as_str().unwrap_or_default().to_owned(),
                    t["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
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

/// Launches `(task id, command)`s on the offer's agent, each with 0.05 CPU and 16 MB.
async fn launch(s: &SchedulerClient, offer: &Value, tasks: &[(String, String)]) {
    let ops: Vec<Value> = tasks
        .iter()
        .map(|(id, command)| client::launch(id, &offer["agent_id"], scalars(0.05, 16.0), command))
        .collect();
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

/// The next update of any task, acknowledged: (task id, status).
async fn next_update(s: &mut SchedulerClient) -> (String, Value) {
    let event = s.take(WAIT, |e| e["type"] == "UPDATE").await.unwrap();
    let status = event["update"]["status"].clone();
    s.acknowledge(&status).await.unwrap();
    let id = status["task_id"]["value"].as_str().unwrap().to_owned();
    (id, status)
}

/// Until every task of `ids` has been reported RUNNING.
async fn until_running(s: &mut SchedulerClient, ids: &[String]) {
    let mut running = std::collections::HashSet::new();
    while running.len() < ids.len() {
        let (id, status) = next_update(s).await;
        assert!(
            ["TASK_STARTING", "TASK_RUNNING"].contains(&status["state"].as_str().unwrap()),
            "{status}"
        );
        if status["state"] == "TASK_RUNNING" {
            running.insert(id);
        }
    }
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_takes_its_100_tasks_back_after_an_upgrade_and_reports_what_ended_meanwhile()
{
    let mut node = Node::start("kill9").await;
    let v1 = node.install("v1");
    node.start_agent(&v1);
    let mut s = SchedulerClient::subscribe(node.http, framework("recovery"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    let agent_id = o["agent_id"]["value"].as_str().unwrap().to_owned();
    let go = node.work.join("go");
    let mut tasks: Vec<(String, String)> = (0..90)
        .map(|i| (format!("long-{i}"), "sleep 300".to_owned()))
        .collect();
    tasks.extend((0..5).map(|i| {
        (
            format!("exits-{i}"),
            format!(
                "while [ ! -e {} ]; do sleep 0.05; done; exit 0",
                go.display()
            ),
        )
    }));
    tasks.extend((0..5).map(|i| (format!("killed-{i}"), "sleep 300".to_owned())));
    launch(&s, &o, &tasks).await;
    let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();
    until_running(&mut s, &ids).await;
    let framework_id = s.framework_id.clone();
    let before: HashMap<String, Pids> = ids
        .iter()
        .map(|id| (id.clone(), node.pids(&framework_id, id)))
        .collect();

    // The agent dies; its tasks do not.
    node.kill_agent();
    assert!(
        before
            .values()
            .all(|p| p.task.is_alive() && p.supervisor.is_alive()),
        "every task and its supervisor outlive the agent"
    );
    // Meanwhile five tasks finish and five are killed.
    std::fs::write(&go, "").unwrap();
    for i in 0..5 {
        sigkill(before[&format!("killed-{i}")].task.pid);
    }
    for i in 0..5 {
        for id in [format!("exits-{i}"), format!("killed-{i}")] {
            support::agent::wait_for(WAIT, "the supervisor to record the exit", || {
                ExitRecord::read(&node.checkpoint(&framework_id, &id)).unwrap()
            });
        }
    }

    // The upgraded agent starts from another copy of the binary.
    let v2 = node.install("v2");
    node.start_agent(&v2);
    let mut ended = BTreeMap::new();
    while ended.len() < 10 {
        let (id, status) = next_update(&mut s).await;
        if ["TASK_STARTING", "TASK_RUNNING"].contains(&status["state"].as_str().unwrap()) {
            // Resent: an acknowledgement may have been in flight when the agent died.
            continue;
        }
        assert!(
            id.starts_with("exits-") || id.starts_with("killed-"),
            "only the tasks that ended report an end: {id} {status}"
        );
        ended.insert(id, status);
    }
    for i in 0..5 {
        let finished = &ended[&format!("exits-{i}")];
        assert_eq!(finished["state"], "TASK_FINISHED", "{finished}");
        let killed = &ended[&format!("killed-{i}")];
        assert_eq!(killed["state"], "TASK_FAILED", "{killed}");
        assert_eq!(
            killed["message"], "command was killed by signal 9",
            "{killed}"
        );
    }
    // The 90 others run on: the same processes, known to the master as running on the
    // same agent.
    for i in 0..90 {
        let p = &before[&format!("long-{i}")];
        assert!(p.task.is_alive(), "long-{i} was not restarted or killed");
    }
    let states = node.task_states().await;
    let running = states.values().filter(|s| *s == "TASK_RUNNING").count();
    assert_eq!(running, 90, "{states:?}");
    let state = node.state().await;
    let agents = state["slaves"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{state}");
    assert_eq!(agents[0]["id"], agent_id.as_str(), "the same agent");
    assert_eq!(node.busy_cgroups().len(), 90);

    // It controls them as before: a teardown ends every one.
    let (code, _) = s.call(json!({ "type": "TEARDOWN" })).await.unwrap();
    assert_eq!(code.as_u16(), 202);
    support::agent::wait_for(WAIT, "every task cgroup to be removed", || {
        node.busy_cgroups().is_empty().then_some(())
    });
    // A supervisor leaves its task's cgroup empty before it exits itself (it reports the end
    // first).
    support::agent::wait_for(WAIT, "every task and supervisor to exit", || {
        before
            .values()
            .all(|p| !p.task.is_alive() && !p.supervisor.is_alive())
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_a_launch_burst_leaves_every_task_running_or_reported() {
    let mut node = Node::start("burst").await;
    let binary = support::bin("orca-agent");
    node.start_agent(&binary);
    let mut s = SchedulerClient::subscribe(node.http, framework("burst"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    let tasks: Vec<(String, String)> = (0..60)
        .map(|i| (format!("t{i}"), "sleep 300".to_owned()))
        .collect();
    launch(&s, &o, &tasks).await;
    // The agent dies as soon as the first task runs, the others still launching.
    loop {
        let (_, status) = next_update(&mut s).await;
        if status["state"] == "TASK_RUNNING" {
            break;
        }
    }
    node.kill_agent();
    node.start_agent(&binary);
    // Every task ends up running, or reported ended with a reason; nothing is left between.
    let deadline = tokio::time::Instant::now() + WAIT;
    let states = loop {
        while let Ok(Ok(event)) = tokio::time::timeout(
            Duration::from_millis(50),
            s.take(WAIT, |e| e["type"] == "UPDATE"),
        )
        .await
        {
            s.acknowledge(&event["update"]["status"]).await.unwrap();
        }
        let states = node.task_states().await;
        let settled = states.len() == 60
            && states.values().all(|st| {
                st == "TASK_RUNNING" || !["TASK_STAGING", "TASK_STARTING"].contains(&st.as_str())
            });
        if settled {
            break states;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks left between states: {states:?}"
        );
    };
    let running: Vec<&String> = states
        .iter()
        .filter(|(_, st)| *st == "TASK_RUNNING")
        .map(|(id, _)| id)
        .collect();
    assert!(!running.is_empty(), "{states:?}");
    // Exactly the running tasks hold processes: nothing runs that the master does not know.
    let mut busy: Vec<String> = node
        .busy_cgroups()
        .into_iter()
        .map(|name| name.rsplit('.').next().unwrap().to_owned())
        .collect();
    busy.sort();
    let mut expected: Vec<String> = running.into_iter().cloned().collect();
    expected.sort();
    assert_eq!(busy, expected, "{states:?}");
    let (code, _) = s.call(json!({ "type": "TEARDOWN" })).await.unwrap();
    assert_eq!(code.as_u16(), 202);
    support::agent::wait_for(WAIT, "every task cgroup to be removed", || {
        node.busy_cgroups().is_empty().then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configuration_refuses_to_start_and_cleanup_ends_the_old_tasks() {
    let mut node = Node::start("reconfigure").await;
    let binary = support::bin("orca-agent");
    node.start_agent(&binary);
    let mut s = SchedulerClient::subscribe(node.http, framework("reconfigure"))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    let first_id = o["agent_id"]["value"].as_str().unwrap().to_owned();
    launch(&s, &o, &[("kept".to_owned(), "sleep 300".to_owned())]).await;
    until_running(&mut s, &["kept".to_owned()]).await;
    let kept: ProcessIdentity = node.pids(&s.framework_id, "kept").task;
    node.kill_agent();

    // Other resources than the run that checkpointed the task: refused, and the task lives.
    let out = node
        .agent_command(&binary, "cpus:4;mem:8192")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration changed")
            && stderr.contains("resources")
            && stderr.contains("--recover=cleanup"),
        "{stderr}"
    );
    assert!(kept.is_alive(), "refusing to start kills nothing");

    // --recover=cleanup ends the task, forgets the agent, and exits.
    let out = node
        .agent_command(&binary, "cpus:4;mem:8192")
        .args(["--recover", "cleanup"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!kept.is_alive());
    assert!(node.busy_cgroups().is_empty());
    assert!(!node.work.join("agent_id").exists());

    // Started again (with the new resources), it is a new agent.
    node.agent = Some(
        node.agent_command(&binary, "cpus:4;mem:8192")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let id_file = node.work.join("agent_id");
    let second_id = support::agent::wait_for(WAIT, "the agent to register", || {
        std::fs::read_to_string(&id_file).ok()
    });
    assert_ne!(second_id, first_id, "it registers as a new agent");
}

/// `DRAIN_AGENT` on the real wire: the `agent-drain` benchmark at a small scale (an
/// `orca-master` and two `orca-agent` processes, tasks that ignore SIGTERM and ask for 30 s,
/// a drain capped at 2 s, a framework relaunching on the other agent).
#[test]
fn a_drained_agent_hands_its_tasks_to_another_agent_within_the_grace_period() {
    let (result, stdout) = support::run_benchmark(
        "agent-drain",
        &["--tasks", "40", "--max-grace", "2"],
        "drain ",
    );
    for zero in [
        "tasks_lost",
        "relaunches_failed",
        "original_processes_alive",
        "offers_from_the_draining_agent",
    ] {
        assert_eq!(result[zero], 0, "{zero}: {stdout}");
    }
    let ms = |key: &str| result[key].as_f64().unwrap();
    // Every kill waits out the 2 s cap (the tasks ignore SIGTERM), and none waits its own 30 s.
    assert!(ms("agent_drained_ms") >= 2_000.0, "{stdout}");
    assert!(ms("agent_drained_ms") < 10_000.0, "{stdout}");
    assert!(ms("all_running_elsewhere_ms") < 10_000.0, "{stdout}");
}

/// A framework named `name` running `sleep 300` as each of `ids` on the node's agent, all
/// RUNNING: the framework, the agent's id, and each task's processes.
async fn sleepers(node: &Node, name: &str, ids: &[String]) -> (SchedulerClient, String, Vec<Pids>) {
    let mut s = SchedulerClient::subscribe(node.http, framework(name))
        .await
        .unwrap();
    let o = offer(&mut s).await;
    let agent_id = o["agent_id"]["value"].as_str().unwrap().to_owned();
    let tasks: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), "sleep 300".to_owned()))
        .collect();
    launch(&s, &o, &tasks).await;
    until_running(&mut s, ids).await;
    let pids = ids
        .iter()
        .map(|id| node.pids(&s.framework_id, id))
        .collect();
    (s, agent_id, pids)
}

/// `orca-agent switch-master` on the agent's host, as an operator types it: its output.
fn switch_master(work: &Path, master: Option<&str>) -> std::process::Output {
    let mut command = Command::new(support::bin("orca-agent"));
    command
        .arg("switch-master")
        .arg("--work-dir")
        .arg(work)
        .args(["--wait", "30s"])
        .env("RUST_LOG", "error");
    if let Some(master) = master {
        command.arg(master);
    }
    command.output().unwrap()
}

/// What `orca-agent switch-master` printed, asserting it succeeded.
fn switched(output: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The agent `agent_id` as `master` lists it in GET_AGENTS, once it is there.
async fn listed_agent(http: SocketAddr, agent_id: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (code, body) = client::operator(http, &json!({ "type": "GET_AGENTS" }))
            .await
            .unwrap();
        assert!(code.is_success(), "{body}");
        let agents: Value = serde_json::from_str(&body).unwrap();
        let found = agents["get_agents"]["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["agent_info"]["id"]["value"] == agent_id && a["active"] == true)
            .cloned();
        if let Some(agent) = found {
            return agent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent {agent_id} never registered: {agents}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running agent moves to another master and back without a restart, keeping its id and
/// its tasks: on its host through `orca-agent switch-master` (the control socket), and from
/// the master through the operator's `SwitchAgentMaster`. The switch outlives an agent
/// restart with the same `--master`; bad addresses and unknown agents are refused with the
/// reason, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_moves_a_running_agent_to_another_master_and_back_with_its_tasks() {
    use orca_proto::operator::v1::{SwitchAgentMasterRequest, operator_client::OperatorClient};

    let mut node = Node::start("switch").await;
    let (grpc_b, http_b, _stop_b) = support::in_process_master().await;
    let (a, b) = (node.grpc.to_string(), grpc_b.to_string());
    let binary = node.install("v1");
    node.start_agent(&binary);
    let ids: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
    let (mut s, agent_id, before) = sleepers(&node, "mover", &ids).await;
    let framework_id = s.framework_id.clone();
    let unchanged = |node: &Node| {
        ids.iter()
            .zip(&before)
            .all(|(id, p)| p.task.is_alive() && node.pids(&framework_id, id).task == p.task)
    };

    // On the host: to B, with the same id and every task.
    let out = switched(switch_master(&node.work, Some(&b)));
    assert!(
        out.contains(&format!("switched from {a} to {b}")) && out.contains(&agent_id),
        "{out}"
    );
    listed_agent(http_b, &agent_id).await;
    let (code, body) = client::operator(http_b, &json!({ "type": "GET_FRAMEWORKS" }))
        .await
        .unwrap();
    assert!(code.is_success(), "{body}");
    let frameworks: Value = serde_json::from_str(&body).unwrap();
    let recovered = &frameworks["get_frameworks"]["frameworks"][0];
    assert_eq!(
        recovered["framework_info"]["id"]["value"], framework_id,
        "B keeps the tasks for the framework it never saw: {frameworks}"
    );
    assert_eq!(recovered["recovered"], true, "{frameworks}");
    let (code, body) = client::operator(http_b, &json!({ "type": "GET_TASKS" }))
        .await
        .unwrap();
    assert!(code.is_success(), "{body}");
    let on_b: Value = serde_json::from_str(&body).unwrap();
    let running = on_b["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING" && t["agent_id"]["value"] == agent_id)
        .count();
    assert_eq!(running, 3, "{on_b}");
    assert!(unchanged(&node), "no task restarted");
    let now = switched(switch_master(&node.work, None));
    assert!(
        now.contains(&b) && now.contains(&format!("registered as agent {agent_id}")),
        "{now}"
    );

    // A bad address is refused and changes nothing.
    let bad = switch_master(&node.work, Some("no-port-here"));
    assert!(!bad.status.success());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("is not a master"), "{why}");
    assert!(switched(switch_master(&node.work, None)).contains(&b));

    // A restart with the same --master follows the switch.
    node.kill_agent();
    node.start_agent(&binary);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = switch_master(&node.work, None);
        if now.status.success() && String::from_utf8_lossy(&now.stdout).contains("registered as") {
            assert!(String::from_utf8_lossy(&now.stdout).contains(&b));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted agent never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unchanged(&node), "no task restarted with the agent");

    // From the master: B sends it back to A.
    let mut operator = OperatorClient::connect(format!("http://{b}"))
        .await
        .unwrap();
    let refused = operator
        .switch_agent_master(SwitchAgentMasterRequest {
            agent_id: "no-such-agent".into(),
            master: a.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    let refused = operator
        .switch_agent_master(SwitchAgentMasterRequest {
            agent_id: agent_id.clone(),
            master: "zk://no-path:2181".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    operator
        .switch_agent_master(SwitchAgentMasterRequest {
            agent_id: agent_id.clone(),
            master: a.clone(),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = switched(switch_master(&node.work, None));
        if now.contains(&a) && now.contains("registered as") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never back on A: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A still has the framework subscribed: it owns its tasks there again.
    let (code, body) = s
        .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202, "{body}");
    // Updates the agent sent before an acknowledgement reached it are sent again (at least
    // once, as in Mesos): they carry a uuid; the reconciliation's answers do not.
    let mut answered = std::collections::HashSet::new();
    while answered.len() < ids.len() {
        let (id, status) = next_update(&mut s).await;
        assert!(ids.contains(&id), "{status}");
        assert_eq!(status["agent_id"]["value"], agent_id);
        if status.get("uuid").is_some() {
            assert!(
                ["TASK_STARTING", "TASK_RUNNING"].contains(&status["state"].as_str().unwrap()),
                "only a launch's updates may come again: {status}"
            );
            continue;
        }
        assert_eq!(status["state"], "TASK_RUNNING", "{status}");
        assert_eq!(status["reason"], "REASON_RECONCILIATION", "{status}");
        answered.insert(id);
    }
    assert!(unchanged(&node), "no task restarted on the way back");
    assert!(
        !node.work.join("master.json").exists(),
        "back on its --master, the switch is forgotten"
    );
    s.call(json!({ "type": "TEARDOWN" })).await.unwrap();
}

/// Live master switch of many agents on the real wire: the `agent-switch` benchmark at a
/// small scale (two `orca-master` processes, ten `orca-agent` processes with two tasks each,
/// moved by master A's `SwitchAgentMaster`; the baseline restarts them with B as --master).
#[test]
fn ten_agents_switch_masters_live_without_restarting_a_task() {
    let (result, stdout) = support::run_benchmark("agent-switch", &["--agents", "10"], "switch ");
    for (key, expected) in [
        ("agents_on_b", 10),
        ("tasks_running_on_b", 20),
        ("tasks_reconciled_by_the_framework_on_b", 20),
        ("tasks_restarted", 0),
        ("agent_processes_restarted", 0),
        ("tasks_restarted_by_the_baseline", 0),
    ] {
        assert_eq!(result[key], expected, "{key}: {stdout}");
    }
    assert!(
        result["all_registered_with_b_ms"].as_f64().unwrap() < 10_000.0,
        "{stdout}"
    );
}

/// A machine brought down for maintenance: the real agent ends its tasks (their processes are
/// gone), stays up, is refused while the machine is down, and registers again by itself once
/// STOP_MAINTENANCE brings the machine up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_a_machine_down_for_maintenance_ends_its_tasks_and_rejoins_when_it_is_up() {
    let mut node = Node::start("maintenance").await;
    let binary = node.install("v1");
    node.start_agent(&binary);
    let ids: Vec<String> = (0..2).map(|i| format!("m{i}")).collect();
    let (mut s, agent_id, before) = sleepers(&node, "maintained", &ids).await;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let machines = json!([{ "hostname": "recovery-node" }]);
    for call in [
        json!({ "type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {
            "schedule": { "windows": [{ "machine_ids": machines,
                "unavailability": { "start": { "nanoseconds": now } } }] } } }),
        json!({ "type": "START_MAINTENANCE", "start_maintenance": { "machines": machines } }),
    ] {
        let (code, body) = client::operator(node.http, &call).await.unwrap();
        assert_eq!(code.as_u16(), 200, "{body}");
    }
    for _ in &ids {
        let (_, status) = next_update(&mut s).await;
        assert_eq!(status["state"], "TASK_LOST", "{status}");
        assert_eq!(status["reason"], "REASON_AGENT_REMOVED", "{status}");
    }
    support::agent::wait_for(WAIT, "the agent to end its tasks", || {
        before.iter().all(|p| !p.task.is_alive()).then_some(())
    });
    assert!(
        node.agent.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the agent process stays up"
    );

    let (code, body) = client::operator(
        node.http,
        &json!({ "type": "STOP_MAINTENANCE", "stop_maintenance": { "machines": machines } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = node.state().await;
        let back = state["slaves"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["id"] == agent_id.as_str() && s["active"] == true)
        });
        if back {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never came back: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.call(json!({ "type": "TEARDOWN" })).await.unwrap();
}
