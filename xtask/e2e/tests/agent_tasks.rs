//! The agent's task manager with real processes in real cgroups (v1 on this host; needs root):
//! limits in the kernel's files, finish, failure status, OOM kill with its reason, SIGTERM then
//! SIGKILL after the grace period, all-or-nothing groups, a CFS quota holding a busy loop.
mod support;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use orca_agent::tasks::{
    StatusUpdate, TaskManager, TaskManagerConfig, TaskSpec, TaskState, cgroups::Driver,
};
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

#[tokio::test]
async fn a_restarted_agent_ends_the_tasks_its_previous_run_left_and_only_those() {
    let (old, mut old_rx, work) = manager("leftover");
    old.launch(vec![spec("stray", "sleep 300")]).await;
    assert_eq!(next(&mut old_rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut old_rx).await.state, TaskState::Running);
    let stray = old
        .cgroup("fw", "stray")
        .expect("the running task's cgroup");
    assert!(!stray.pids().is_empty());
    // Another agent's task in the same parent cgroup, its sandbox in another work directory.
    let (other, mut other_rx, other_work) = manager("leftover-other");
    other.launch(vec![spec("keep", "sleep 300")]).await;
    assert_eq!(next(&mut other_rx).await.state, TaskState::Starting);
    assert_eq!(next(&mut other_rx).await.state, TaskState::Running);
    let kept = other
        .cgroup("fw", "keep")
        .expect("the running task's cgroup");

    // The agent restarts on the same work directory: it knows nothing of `stray`.
    let (restarted, _updates) = TaskManager::new(old.config().clone());
    assert!(restarted.running().is_empty());
    let ended = restarted.clean_up_leftovers().await;
    assert_eq!(ended, vec!["fw.stray".to_string()]);
    assert!(
        stray.dirs().iter().all(|d| !d.exists()),
        "the leftover's cgroup is removed"
    );
    // (The old run's supervisor, still alive in this test process, sees its process killed.)
    let died = until_terminal(&mut old_rx, "stray").await;
    assert_eq!(died.state, TaskState::Failed, "{died:?}");
    assert!(
        !kept.pids().is_empty(),
        "another agent's task is left running"
    );
    assert!(other.kill("fw", "keep", Some(Duration::ZERO)));
    assert_eq!(
        until_terminal(&mut other_rx, "keep").await.state,
        TaskState::Killed
    );
    // Nothing left: a second clean-up ends nothing.
    assert!(restarted.clean_up_leftovers().await.is_empty());
    cleanup(work);
    cleanup(other_work);
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
    assert!(m.running().is_empty());
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
