//! The agent's task manager with real processes in real cgroups (v1 on this host; needs root):
//! limits in the kernel's files, finish, failure status, OOM kill with its reason, SIGTERM then
//! SIGKILL after the grace period, all-or-nothing groups, a task launched twice run once, a
//! CFS quota holding a busy loop;
//! tasks outliving the agent and taken back by a restarted one.
mod support;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use orca_agent::tasks::{
    StatusUpdate, TaskManager, TaskManagerConfig, TaskSpec, TaskState, cgroups::Driver,
};
use orca_task_supervisor::{ExitRecord, Pids, ProcessIdentity};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(20);

/// The parent cgroup of a test's tasks: one per test (managers whose tags share the part
/// before the first `-` share it), so one test removing its parent when done cannot remove it
/// under another test that is about to create a task cgroup in it.
fn parent_cgroup(tag: &str) -> String {
    let test = tag.split('-').next().unwrap_or(tag);
    format!("orca-test-{}-{test}", std::process::id())
}

fn manager(tag: &str) -> (TaskManager, mpsc::UnboundedReceiver<StatusUpdate>, PathBuf) {
    support::agent::require_root();
    let driver = Driver::detect().expect("a cgroup hierarchy");
    let work = std::env::temp_dir().join(format!("orca-tasks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut config = TaskManagerConfig::new(work.clone(), driver);
    config.cgroup_parent = parent_cgroup(tag);
    config.supervisor = support::bin("orca-task-supervisor");
    let (m, rx) = TaskManager::new(config);
    (m, rx, work)
}

fn spec(task_id: &str, command: &str) -> TaskSpec {
    TaskSpec {
        framework_id: "fw".into(),
        task_id: task_id.into(),
        name: task_id.into(),
        shell: true,
        value: command.into(),
        arguments: Vec::new(),
        environment: vec![("GREETING".into(), "hello".into())],
        user: None,
        cpus: 0.5,
        mem_mb: Some(64.0),
        labels: BTreeMap::new(),
        kill_grace: None,
        resources: "cpus:0.5;mem:64".into(),
        role: "*".into(),
    }
}

/// Removes the test's work directory and its parent cgroups (rmdir of a non-empty cgroup
/// fails, so a manager of the same test still running keeps them).
fn cleanup(work: PathBuf) {
    let tag = work
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("orca-tasks-"))
        .and_then(|n| n.rsplit_once('-'))
        .map(|(tag, _pid)| tag.to_owned())
        .expect("a work directory made by `manager`");
    let _ = std::fs::remove_dir_all(&work);
    if let Ok(driver) = Driver::detect() {
        driver.remove_parent(&parent_cgroup(&tag));
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<StatusUpdate>) -> StatusUpdate {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an update before the deadline")
        .expect("the manager is alive")
}

async fn until_terminal(
    rx: &mut mpsc::UnboundedReceiver<StatusUpdate>,
    task: &str,
) -> StatusUpdate {
    loop {
        let u = next(rx).await;
        if u.task_id == task && !matches!(u.state, TaskState::Starting | TaskState::Running) {
            return u;
        }
    }
}

#[tokio::test]
async fn a_task_runs_in_its_own_limited_cgroup_and_finishes() {
    let (m, mut rx, work) = manager("life");
    m.launch(vec![spec(
        "ok",
        "echo $GREETING from $MESOS_TASK_ID; sleep 0.5",
    )])
    .await;
    assert_eq!(next(&mut rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut rx).await.state, TaskState::Running);
    // While it runs: limits are in the kernel's files and the process is in the cgroup.
    let (spec_seen, _) = m.running().pop().expect("running");
    assert_eq!(spec_seen.task_id, "ok");
    let cgroup = m.cgroup("fw", "ok").expect("the running task's cgroup");
    assert!(
        !cgroup.pids().is_empty(),
        "the task's processes are in its cgroup"
    );
    let Driver::V1 {
        cpu, memory, pids, ..
    } = Driver::detect().unwrap()
    else {
        panic!("this host is expected to run v1 controllers");
    };
    let name = format!("{}/fw.ok", parent_cgroup("life"));
    let read = |root: &PathBuf, file: &str| {
        std::fs::read_to_string(root.join(&name).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read(&pids, "pids.max"), "4096");
    let done = until_terminal(&mut rx, "ok").await;
    assert_eq!(done.state, TaskState::Finished, "{done:?}");
    let out = std::fs::read_to_string(work.join("frameworks/fw/tasks/ok/stdout")).unwrap();
    assert_eq!(out, "hello from ok\n");
    assert!(!memory.join(&name).exists(), "the cgroup is removed");
    // Three updates wait for acknowledgement; acknowledging removes them.
    let pending = m.unacknowledged();
    assert_eq!(pending.len(), 3);
    for u in &pending {
        m.acknowledge(&u.task_id, u.uuid);
    }
    assert!(m.unacknowledged().is_empty());
    cleanup(work);
}

/// Launches `specs` under a manager in a runtime of its own, waits until they run, then drops
/// the runtime with the manager: as an agent process dying, its supervisors are left alone.
fn launch_and_abandon(config: TaskManagerConfig, specs: Vec<TaskSpec>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (m, mut rx) = TaskManager::new(config);
            let count = specs.len();
            m.launch(specs).await;
            let mut running = 0;
            while running < count {
                let u = next(&mut rx).await;
                assert!(!u.state.is_terminal(), "{u:?}");
                running += usize::from(u.state == TaskState::Running);
            }
        });
    })
    .join()
    .expect("the first run launches its tasks");
}

fn checkpoint_dir(work: &std::path::Path, task: &str) -> PathBuf {
    work.join("meta/frameworks/fw/tasks").join(task)
}

fn alive(identity: ProcessIdentity) -> bool {
    identity.is_alive()
}

#[tokio::test]
async fn a_restarted_agent_takes_back_its_tasks_and_learns_what_ended_while_it_was_down() {
    let (first, _first_rx, work) = manager("recover");
    let config = first.config().clone();
    drop(first);
    let marker = work.join("go");
    launch_and_abandon(
        config.clone(),
        vec![
            spec("kept", "sleep 300"),
            spec(
                "exits",
                &format!(
                    "while [ ! -e {} ]; do sleep 0.05; done; exit 4",
                    marker.display()
                ),
            ),
            spec("killed", "sleep 300"),
            spec("impostor", "sleep 300"),
        ],
    );
    let pids = |task: &str| {
        Pids::read(&checkpoint_dir(&work, task))
            .unwrap()
            .expect("the supervisor checkpointed the task's processes")
    };
    let kept = pids("kept");
    assert!(
        alive(kept.task) && alive(kept.supervisor),
        "tasks outlive the agent"
    );
    // Another agent's task in the same parent cgroup, its sandbox in another work directory.
    let (other, mut other_rx, other_work) = manager("recover-other");
    other.launch(vec![spec("keep", "sleep 300")]).await;
    assert_eq!(next(&mut other_rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut other_rx).await.state, TaskState::Running);

    // While the agent is down: one task exits by itself, another is killed outright.
    std::fs::write(&marker, "").unwrap();
    let killed = pids("killed");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed.task.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for task in ["exits", "killed"] {
        support::agent::wait_for(DEADLINE, "the supervisor to record the exit", || {
            ExitRecord::read(&checkpoint_dir(&work, task)).unwrap()
        });
    }
    // The impostor's checkpoint names a process that is not its supervisor (a pid reused by
    // an unrelated process: the same pid, another start time). That process must survive.
    let mut unrelated = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let unrelated_id = ProcessIdentity::of(unrelated.id()).unwrap();
    let forged = Pids {
        supervisor: ProcessIdentity {
            pid: unrelated_id.pid,
            start_time: unrelated_id.start_time + 1,
        },
        task: ProcessIdentity {
            pid: unrelated_id.pid,
            start_time: unrelated_id.start_time + 1,
        },
    };
    forged.write(&checkpoint_dir(&work, "impostor")).unwrap();
    // And a task cgroup with a sandbox of this agent but no checkpoint: an orphan.
    std::fs::create_dir_all(work.join("frameworks/fw/tasks/orphan")).unwrap();
    let orphan = config
        .driver
        .create(
            &config.cgroup_parent,
            "fw.orphan",
            &orca_agent::tasks::cgroups::Limits {
                cpus: 0.1,
                cfs_quota: false,
                memory_bytes: None,
                pids_max: None,
            },
        )
        .unwrap();

    // The agent starts again on the same work directory.
    let (restarted, mut rx) = TaskManager::new(config.clone());
    let recovery = restarted.recover().await;
    assert_eq!(
        recovery.reattached,
        vec!["fw.kept".to_string()],
        "{recovery:?}"
    );
    let mut ended = recovery.ended_while_down.clone();
    ended.sort();
    assert_eq!(
        ended,
        ["fw.exits", "fw.impostor", "fw.killed"],
        "{recovery:?}"
    );
    assert_eq!(recovery.orphans_ended, vec!["fw.orphan".to_string()]);
    assert!(!orphan.exists(), "the orphan's cgroup is removed");
    let mut finals = std::collections::HashMap::new();
    while finals.len() < 3 {
        let u = next(&mut rx).await;
        finals.insert(u.task_id.clone(), u);
    }
    assert_eq!(finals["exits"].state, TaskState::Failed);
    assert_eq!(
        finals["exits"].message.as_deref(),
        Some("command exited with status 4")
    );
    assert_eq!(finals["killed"].state, TaskState::Failed);
    assert_eq!(
        finals["killed"].message.as_deref(),
        Some("command was killed by signal 9")
    );
    assert_eq!(finals["impostor"].state, TaskState::Failed);
    assert_eq!(
        finals["impostor"].reason.as_deref(),
        Some("REASON_EXECUTOR_TERMINATED")
    );
    assert!(
        alive(unrelated_id),
        "a process whose pid a checkpoint names, but which is not the task's, lives on"
    );
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    // The kept task runs on, the same process, under the restarted agent.
    let running = restarted.running();
    assert!(
        running
            .iter()
            .any(|(s, state)| s.task_id == "kept" && *state == TaskState::Running),
        "{running:?}"
    );
    assert_eq!(restarted.process("fw", "kept"), Some(kept.task));
    assert!(alive(kept.task));
    // Updates unacknowledged before the restart are sent again (STARTING and RUNNING of
    // each task); acknowledging a final one forgets the task, checkpoint and all.
    let pending = restarted.unacknowledged();
    assert!(
        pending
            .iter()
            .any(|u| u.task_id == "kept" && u.state == TaskState::Running)
    );
    let exits = &finals["exits"];
    for u in pending.iter().filter(|u| u.task_id == "exits") {
        restarted.acknowledge(&u.task_id, u.uuid);
    }
    restarted.acknowledge("exits", exits.uuid);
    assert!(!checkpoint_dir(&work, "exits").exists());
    // The reattached task is killed as any other, and its end reported.
    assert!(restarted.kill("fw", "kept", Some(Duration::ZERO)));
    let done = until_terminal(&mut rx, "kept").await;
    assert_eq!(done.state, TaskState::Killed, "{done:?}");
    assert!(!alive(kept.task) && !alive(kept.supervisor));
    // The other agent's task was never touched.
    let kept_other = other.cgroup("fw", "keep").expect("still running");
    assert!(
        !kept_other.pids().is_empty(),
        "another agent's task is left running"
    );
    assert!(other.kill("fw", "keep", Some(Duration::ZERO)));
    assert_eq!(
        until_terminal(&mut other_rx, "keep").await.state,
        TaskState::Killed
    );
    cleanup(work);
    cleanup(other_work);
}

#[tokio::test]
async fn cleanup_ends_every_task_of_the_previous_run_and_forgets_them() {
    let (first, _rx, work) = manager("cleanup");
    let config = first.config().clone();
    drop(first);
    launch_and_abandon(
        config.clone(),
        vec![spec("a", "sleep 300"), spec("b", "sleep 300")],
    );
    let pids: Vec<Pids> = ["a", "b"]
        .iter()
        .map(|t| Pids::read(&checkpoint_dir(&work, t)).unwrap().unwrap())
        .collect();
    let (restarted, _rx) = TaskManager::new(config);
    let mut ended = restarted.clean_up().await;
    ended.sort();
    assert_eq!(ended, ["fw.a", "fw.b"]);
    for p in &pids {
        support::agent::wait_for(DEADLINE, "the supervisor to end", || {
            (!alive(p.supervisor)).then_some(())
        });
        assert!(!alive(p.task));
    }
    assert!(
        !work.join("meta/frameworks").exists(),
        "the checkpoints are gone"
    );
    cleanup(work);
}

#[tokio::test]
async fn a_failing_command_reports_its_status() {
    let (m, mut rx, work) = manager("fail");
    m.launch(vec![spec("bad", "echo oops >&2; exit 3")]).await;
    let done = until_terminal(&mut rx, "bad").await;
    assert_eq!(done.state, TaskState::Failed);
    assert_eq!(
        done.message.as_deref(),
        Some("command exited with status 3")
    );
    let err = std::fs::read_to_string(work.join("frameworks/fw/tasks/bad/stderr")).unwrap();
    assert_eq!(err, "oops\n");
    cleanup(work);
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_an_oom_failure_with_its_reason() {
    let (m, mut rx, work) = manager("oom");
    let mut s = spec("hog", "head -c 200m /dev/zero | tail");
    s.mem_mb = Some(32.0);
    m.launch(vec![s]).await;
    let done = until_terminal(&mut rx, "hog").await;
    assert_eq!(done.state, TaskState::Failed, "{done:?}");
    assert_eq!(
        done.reason.as_deref(),
        Some("REASON_CONTAINER_LIMITATION_MEMORY")
    );
    assert!(done.message.unwrap().contains("32 MiB"));
    cleanup(work);
}

#[tokio::test]
async fn a_kill_sends_sigterm_and_waits_the_grace_period_before_sigkill() {
    let (m, mut rx, work) = manager("kill");
    // Ignores SIGTERM (records it), so only the SIGKILL after the grace period ends it.
    let stubborn = spec(
        "stubborn",
        "trap 'echo term >> got-term' TERM; while true; do sleep 0.05; done",
    );
    m.launch(vec![stubborn]).await;
    let starting = next(&mut rx).await;
    assert_eq!(starting.state, TaskState::Starting, "{starting:?}");
    let running = next(&mut rx).await;
    assert_eq!(running.state, TaskState::Running, "{running:?}");
    tokio::time::sleep(Duration::from_millis(200)).await; // let the shell install its trap
    let asked = Instant::now();
    assert!(m.kill("fw", "stubborn", Some(Duration::from_millis(1500))));
    let done = until_terminal(&mut rx, "stubborn").await;
    let took = asked.elapsed();
    assert_eq!(done.state, TaskState::Killed);
    assert!(
        took >= Duration::from_millis(1500),
        "killed after {took:?}, before the grace period"
    );
    assert!(took < Duration::from_secs(5), "SIGKILL came late: {took:?}");
    let marker = work.join("frameworks/fw/tasks/stubborn/got-term");
    assert!(marker.exists(), "the task saw SIGTERM first");

    // A task that exits on SIGTERM is KILLED at once, well before its grace period.
    m.launch(vec![spec("polite", "sleep 1000")]).await;
    assert_eq!(next(&mut rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut rx).await.state, TaskState::Running);
    let asked = Instant::now();
    m.kill("fw", "polite", Some(Duration::from_secs(30)));
    assert_eq!(
        until_terminal(&mut rx, "polite").await.state,
        TaskState::Killed
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    cleanup(work);
}

/// A master launches a task again when the agent re-registered without it while the first
/// launch was on its way: the agent runs it once, and a launch arriving while the first is
/// still being prepared finds it (reported as staging) rather than failing it.
#[tokio::test]
async fn a_task_launched_twice_runs_once() {
    let (m, mut rx, work) = manager("twice");
    let first = m.launch(vec![spec("once", "sleep 1000")]);
    let second = async {
        // The first launch has begun: a master told now learns the task is staging.
        let known: Vec<(String, TaskState)> = m
            .running()
            .into_iter()
            .map(|(s, state)| (s.task_id, state))
            .collect();
        m.launch(vec![spec("once", "sleep 1000")]).await;
        known
    };
    let ((), known) = futures::future::join(first, second).await;
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].0, "once");
    assert!(
        matches!(
            known[0].1,
            TaskState::Staging | TaskState::Starting | TaskState::Running
        ),
        "{known:?}"
    );
    // Once more after it runs.
    m.launch(vec![spec("once", "sleep 1000")]).await;
    let states: Vec<TaskState> = m.unacknowledged().iter().map(|u| u.state).collect();
    assert_eq!(states, [TaskState::Starting, TaskState::Running]);
    assert_eq!(next(&mut rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut rx).await.state, TaskState::Running);
    assert!(
        !m.cgroup("fw", "once")
            .expect("its cgroup")
            .pids()
            .is_empty()
    );
    assert!(m.kill("fw", "once", Some(Duration::from_secs(5))));
    assert_eq!(
        until_terminal(&mut rx, "once").await.state,
        TaskState::Killed
    );
    cleanup(work);
}

#[tokio::test]
async fn a_group_starts_all_or_nothing() {
    let (m, mut rx, work) = manager("gang");
    let first = spec("member-1", "sleep 1000");
    let mut second = spec("member-2", "/nonexistent/binary");
    second.shell = false;
    m.launch(vec![first, second]).await;
    let mut terminal = BTreeMap::new();
    while terminal.len() < 2 {
        let u = next(&mut rx).await;
        assert_ne!(u.state, TaskState::Running, "no member may run: {u:?}");
        if u.state != TaskState::Starting {
            terminal.insert(u.task_id.clone(), u);
        }
    }
    for u in terminal.values() {
        assert_eq!(u.state, TaskState::Failed);
        assert_eq!(u.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    }
    // Known only by their final updates, until those are acknowledged.
    assert!(m.running().iter().all(|(_, state)| state.is_terminal()));
    cleanup(work);
}

#[tokio::test]
async fn cpu_quota_holds_a_busy_loop_to_its_share() {
    let (m, mut rx, work) = manager("cpu");
    let mut busy = spec("busy", "while :; do :; done");
    busy.cpus = 0.2;
    m.launch(vec![busy]).await;
    assert_eq!(next(&mut rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut rx).await.state, TaskState::Running);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let usage = m.usage().pop().unwrap().1;
    let wall = started.elapsed().as_secs_f64();
    // Other tests may load both cores; the task only has to have run at all.
    assert!(usage.cpu_seconds > 0.01, "the task ran: {usage:?}");
    assert!(
        usage.cpu_seconds < 0.3 * wall,
        "0.2 CPU quota exceeded: {} s of CPU in {wall:.2} s",
        usage.cpu_seconds
    );
    assert!(usage.memory_bytes > 0);
    m.shutdown_framework("fw");
    assert_eq!(
        until_terminal(&mut rx, "busy").await.state,
        TaskState::Killed
    );
    cleanup(work);
}
