//! Task execution: each task a process tree in its own cgroup and sandbox, its status
//! updates delivered at least once.
//!
//! A launch goes STARTING (cgroup and sandbox made) → RUNNING (process started) → FINISHED,
//! FAILED (non-zero exit; OOM kill with `REASON_CONTAINER_LIMITATION_MEMORY`) or KILLED. A
//! task group starts all-or-nothing: if any member cannot start, none runs and all fail.
//! A kill sends SIGTERM to the task's process group, then SIGKILL to everything in its cgroup
//! once the grace period passes. Every update carries a uuid and is kept until the master
//! relays the framework's acknowledgement; [`TaskManager::unacknowledged`] lists what to
//! send again.
pub mod capacity;
pub mod cgroups;
mod error;
pub mod link;
pub mod sandbox;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use error::LaunchError;
pub use orca_proto::cluster::v1::TaskState;
use tokio::sync::mpsc;

use cgroups::{Driver, Limits, TaskCgroup, Usage};

/// A command task to run.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub framework_id: String,
    pub task_id: String,
    pub name: String,
    /// Run with `/bin/sh -c` when true; exec `value` with `arguments` otherwise.
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// The user to run as (the command's, else the framework's); `None` runs as the agent.
    pub user: Option<String>,
    pub cpus: f64,
    pub mem_mb: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub kill_grace: Option<Duration>,
    /// The task's resources in Mesos text form (`cpus:1;mem:128`), returned to the master
    /// when the agent re-registers.
    pub resources: String,
    pub role: String,
}

/// A status update for the master, kept until acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    pub framework_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub timestamp: f64,
    pub uuid: [u8; 16],
}

#[derive(Clone, Debug)]
pub struct TaskManagerConfig {
    /// Sandboxes go under `<work_dir>/frameworks/<framework>/tasks/<task>`.
    pub work_dir: PathBuf,
    pub driver: Driver,
    /// Task cgroups are created under this path in each hierarchy.
    pub cgroup_parent: String,
    /// Enforce CPU as a hard CFS quota, not only shares.
    pub cfs_quota: bool,
    pub pids_max: Option<u64>,
    pub rotation: sandbox::Rotation,
    /// Grace between SIGTERM and SIGKILL when the kill names none (Mesos: 3 s).
    pub default_grace: Duration,
}

impl TaskManagerConfig {
    pub fn new(work_dir: PathBuf, driver: Driver) -> Self {
        TaskManagerConfig {
            work_dir,
            driver,
            cgroup_parent: "orca".into(),
            cfs_quota: true,
            pids_max: Some(4096),
            rotation: sandbox::Rotation::default(),
            default_grace: Duration::from_secs(3),
        }
    }
}

/// A started process and the tasks copying its output into the sandbox.
#[derive(Debug)]
struct Spawned {
    child: tokio::process::Child,
    logs: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

#[derive(Debug)]
struct Running {
    spec: TaskSpec,
    state: TaskState,
    pgid: Option<i32>,
    cgroup: TaskCgroup,
    kill_requested: bool,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<(String, String), Running>,
    /// Tasks that ended with updates not acknowledged yet, with their final state: a master
    /// this agent registers with must know them, or their updates would have nowhere to go.
    finished: HashMap<(String, String), (TaskSpec, TaskState)>,
    /// Updates not acknowledged yet, in the order they were made.
    unacked: Vec<StatusUpdate>,
}

/// Runs tasks and tracks their updates. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskManager {
    config: Arc<TaskManagerConfig>,
    inner: Arc<Mutex<Inner>>,
    updates: mpsc::UnboundedSender<StatusUpdate>,
}

/// Waits for the agent to place the process in its cgroup, then becomes the task.
const GATE: &str = r#"read -r _ || exit 111; exec "$@" </dev/null"#;

/// The same gate for a shell command, which the gate's own shell then runs (one exec of a
/// shell less per task): the shell reads and runs this line before it even parses the next,
/// so nothing of the command runs before the agent opens the gate.
const SHELL_GATE: &str = "read -r _ || exit 111; exec </dev/null\n";

/// The executable a non-shell command names: a path, or a name found on `PATH`.
fn resolve_program(name: &str) -> Result<String, LaunchError> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return if executable(std::path::Path::new(name)) {
            Ok(name.to_owned())
        } else {
            Err(LaunchError::NotExecutable(name.to_owned()))
        };
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    path.split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| executable(p))
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| LaunchError::NotOnPath(name.to_owned()))
}

/// `framework.task` for every sandbox under `work_dir` (the names task cgroups are given).
fn sandboxes(work_dir: &std::path::Path) -> std::collections::HashSet<String> {
    let dirs = |path: PathBuf| {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
    };
    dirs(work_dir.join("frameworks"))
        .flat_map(|framework| {
            dirs(work_dir.join("frameworks").join(&framework).join("tasks"))
                .map(move |task| format!("{framework}.{task}"))
        })
        .collect()
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl TaskManager {
    /// The receiver yields every update once as it happens; send them to the master, and
    /// re-send [`TaskManager::unacknowledged`] ones on an interval and after reconnecting.
    pub fn new(config: TaskManagerConfig) -> (Self, mpsc::UnboundedReceiver<StatusUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            TaskManager {
                config: Arc::new(config),
                inner: Arc::default(),
                updates: tx,
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &TaskManagerConfig {
        &self.config
    }

    /// The cgroup of a running task (its directories, processes and usage).
    pub fn cgroup(&self, framework_id: &str, task_id: &str) -> Option<TaskCgroup> {
        self.lock()
            .tasks
            .get(&(framework_id.to_owned(), task_id.to_owned()))
            .map(|t| t.cgroup.clone())
    }

    fn emit(
        &self,
        spec: &TaskSpec,
        state: TaskState,
        reason: Option<&str>,
        message: Option<String>,
    ) {
        self.emit_for(&spec.framework_id, &spec.task_id, state, reason, message)
    }

    /// A task the master sent that this agent cannot take at all (its launch message does not
    /// describe a runnable task): TASK_FAILED with the reason, delivered like any update, so
    /// the framework hears of it instead of waiting for a task that never starts.
    pub fn refuse(&self, framework_id: &str, task_id: &str, why: String) {
        self.emit_for(
            framework_id,
            task_id,
            TaskState::Failed,
            Some("REASON_CONTAINER_LAUNCH_FAILED"),
            Some(why),
        )
    }

    fn emit_for(
        &self,
        framework_id: &str,
        task_id: &str,
        state: TaskState,
        reason: Option<&str>,
        message: Option<String>,
    ) {
        let update = StatusUpdate {
            framework_id: framework_id.to_owned(),
            task_id: task_id.to_owned(),
            state,
            reason: reason.map(str::to_owned),
            message,
            timestamp: now_seconds(),
            uuid: *uuid::Uuid::new_v4().as_bytes(),
        };
        {
            let mut inner = self.lock();
            if let Some(task) = inner
                .tasks
                .get_mut(&(framework_id.to_owned(), task_id.to_owned()))
            {
                task.state = state;
            }
            inner.unacked.push(update.clone());
        }
        let _ = self.updates.send(update);
    }

    /// Stops retrying an update the framework acknowledged.
    pub fn acknowledge(&self, task_id: &str, uuid: [u8; 16]) {
        let mut inner = self.lock();
        inner
            .unacked
            .retain(|u| !(u.task_id == task_id && u.uuid == uuid));
        if !inner.unacked.iter().any(|u| u.task_id == task_id) {
            inner.finished.retain(|(_, task), _| task != task_id);
        }
    }

    pub fn unacknowledged(&self) -> Vec<StatusUpdate> {
        self.lock().unacked.clone()
    }

    /// What a master must know when this agent (re-)registers: the tasks running, with their
    /// last state, and the tasks that ended whose final updates are not acknowledged yet.
    pub fn running(&self) -> Vec<(TaskSpec, TaskState)> {
        let inner = self.lock();
        inner
            .tasks
            .values()
            .map(|t| (t.spec.clone(), t.state))
            .chain(inner.finished.values().cloned())
            .collect()
    }

    /// Current usage of every running task.
    pub fn usage(&self) -> Vec<(String, Usage)> {
        self.lock()
            .tasks
            .values()
            .map(|t| (t.spec.task_id.clone(), t.cgroup.usage()))
            .collect()
    }

    /// Starts the tasks together: all of them, or none (each then reports TASK_FAILED).
    pub async fn launch(&self, specs: Vec<TaskSpec>) {
        let mut prepared = Vec::new();
        let mut failure = None;
        for spec in &specs {
            if self
                .lock()
                .tasks
                .contains_key(&(spec.framework_id.clone(), spec.task_id.clone()))
            {
                failure = Some(LaunchError::AlreadyRunning(spec.task_id.clone()).to_string());
                break;
            }
            match self.prepare(spec).await {
                Ok(p) => prepared.push(p),
                Err(why) => {
                    failure = Some(format!("task {}: {why}", spec.task_id));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            for (_, cgroup) in &prepared {
                let _ = cgroup.destroy();
            }
            for spec in &specs {
                self.emit(
                    spec,
                    TaskState::Failed,
                    Some("REASON_CONTAINER_LAUNCH_FAILED"),
                    Some(why.clone()),
                );
            }
            return;
        }
        for ((spec, cgroup), _) in prepared.iter().zip(&specs) {
            self.lock().tasks.insert(
                (spec.framework_id.clone(), spec.task_id.clone()),
                Running {
                    spec: spec.clone(),
                    state: TaskState::Staging,
                    pgid: None,
                    cgroup: cgroup.clone(),
                    kill_requested: false,
                },
            );
            self.emit(spec, TaskState::Starting, None, None);
        }
        let mut children = Vec::new();
        let mut failure = None;
        for (spec, cgroup) in &prepared {
            match self.spawn(spec, cgroup).await {
                Ok(child) => children.push(child),
                Err(why) => {
                    failure = Some(format!("task {}: {why}", spec.task_id));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            // Gang semantics: what started is stopped, everything fails.
            for (spec, cgroup) in &prepared {
                cgroup.kill_all();
                self.lock()
                    .tasks
                    .remove(&(spec.framework_id.clone(), spec.task_id.clone()));
            }
            for mut spawned in children {
                let _ = spawned.child.wait().await;
            }
            for (spec, cgroup) in &prepared {
                let _ = cgroup.destroy();
                self.emit(
                    spec,
                    TaskState::Failed,
                    Some("REASON_CONTAINER_LAUNCH_FAILED"),
                    Some(why.clone()),
                );
            }
            return;
        }
        for ((spec, cgroup), child) in prepared.into_iter().zip(children) {
            self.emit(&spec, TaskState::Running, None, None);
            tokio::spawn(self.clone().supervise(spec, cgroup, child));
        }
    }

    /// Makes the sandbox and the cgroup.
    async fn prepare(&self, spec: &TaskSpec) -> Result<(TaskSpec, TaskCgroup), LaunchError> {
        if spec.value.is_empty() {
            return Err(LaunchError::EmptyCommand);
        }
        let dir = sandbox::path(&self.config.work_dir, &spec.framework_id, &spec.task_id)?;
        // One mkdir or a few: cheaper here than a hop to the blocking pool.
        std::fs::create_dir_all(&dir).map_err(|source| LaunchError::Sandbox {
            path: dir.clone(),
            source,
        })?;
        let limits = Limits {
            cpus: spec.cpus,
            cfs_quota: self.config.cfs_quota,
            memory_bytes: spec.mem_mb.map(|mb| (mb * 1024.0 * 1024.0) as u64),
            pids_max: self.config.pids_max,
        };
        let name = format!("{}.{}", spec.framework_id, spec.task_id);
        let cgroup = self
            .config
            .driver
            .create(&self.config.cgroup_parent, &name, &limits)?;
        Ok((spec.clone(), cgroup))
    }

    /// Starts the task's process inside its cgroup. The process starts as a small shell
    /// "gate" that waits for one line on stdin; the agent moves it into the cgroup, then opens
    /// the gate and the gate execs the task (same pid, stdin from /dev/null). Nothing the task
    /// runs can start outside the cgroup, and no pre-exec hook is needed, so the child is
    /// started with posix_spawn instead of a fork of the whole agent.
    async fn spawn(&self, spec: &TaskSpec, cgroup: &TaskCgroup) -> Result<Spawned, LaunchError> {
        let dir = sandbox::path(&self.config.work_dir, &spec.framework_id, &spec.task_id)?;
        let mut command = tokio::process::Command::new("/bin/sh");
        if spec.shell {
            command.arg("-c").arg(format!("{SHELL_GATE}{}", spec.value));
        } else {
            let program = resolve_program(&spec.value)?;
            command
                .arg("-c")
                .arg(GATE)
                .arg("orca-gate")
                .arg(program)
                .args(&spec.arguments);
        }
        command
            .current_dir(&dir)
            .envs(spec.environment.iter().cloned())
            .env("MESOS_SANDBOX", &dir)
            .env("MESOS_TASK_ID", &spec.task_id)
            .env("MESOS_FRAMEWORK_ID", &spec.framework_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(user) = spec.user.as_deref().filter(|u| !u.is_empty()) {
            let me = nix::unistd::Uid::current();
            let found = nix::unistd::User::from_name(user)
                .map_err(|source| LaunchError::UserLookup {
                    user: user.to_owned(),
                    source,
                })?
                .ok_or_else(|| LaunchError::NoSuchUser(user.to_owned()))?;
            if found.uid != me {
                if !me.is_root() {
                    return Err(LaunchError::CannotSwitchUser {
                        uid: me.as_raw(),
                        user: user.to_owned(),
                    });
                }
                command.uid(found.uid.as_raw()).gid(found.gid.as_raw());
            }
        }
        let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
            program: spec.value.clone(),
            source,
        })?;
        let pid = child.id().ok_or(LaunchError::ExitedAtOnce)?;
        let mut gate = child.stdin.take().ok_or_else(|| {
            LaunchError::Gate(std::io::Error::other("the gate's stdin pipe is missing"))
        })?;
        if let Err(e) = cgroup.add(pid) {
            let _ = child.start_kill();
            return Err(e.into());
        }
        use tokio::io::AsyncWriteExt as _;
        if let Err(e) = gate.write_all(b"go\n").await {
            let _ = child.start_kill();
            return Err(LaunchError::Gate(e));
        }
        drop(gate);
        let rotation = self.config.rotation;
        let mut logs = Vec::new();
        if let Some(out) = child.stdout.take() {
            logs.push(tokio::spawn(sandbox::pump(
                out,
                dir.clone(),
                "stdout",
                rotation,
            )));
        }
        if let Some(err) = child.stderr.take() {
            logs.push(tokio::spawn(sandbox::pump(
                err,
                dir.clone(),
                "stderr",
                rotation,
            )));
        }
        if let Some(task) = self
            .lock()
            .tasks
            .get_mut(&(spec.framework_id.clone(), spec.task_id.clone()))
        {
            task.pgid = child.id().map(|p| p as i32);
        }
        Ok(Spawned { child, logs })
    }

    /// Waits for the task to end, reports how, and cleans up its cgroup.
    async fn supervise(self, spec: TaskSpec, cgroup: TaskCgroup, spawned: Spawned) {
        let Spawned { mut child, logs } = spawned;
        let status = child.wait().await;
        let oom = cgroup.oom_killed();
        // Whatever the task left behind goes with it.
        cgroup.kill_all();
        // The sandbox logs are complete before the final state is reported.
        for log in logs {
            let _ = tokio::time::timeout(Duration::from_secs(5), log).await;
        }
        for _ in 0..100 {
            if cgroup.pids().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = cgroup.destroy();
        let key = (spec.framework_id.clone(), spec.task_id.clone());
        let killed = self
            .lock()
            .tasks
            .remove(&key)
            .is_some_and(|t| t.kill_requested);
        use std::os::unix::process::ExitStatusExt as _;
        let (state, reason, message) = match status {
            _ if oom => (
                TaskState::Failed,
                Some("REASON_CONTAINER_LIMITATION_MEMORY"),
                Some(format!(
                    "memory limit of {} MiB exceeded: the kernel OOM-killed the task",
                    cgroup.memory_limit().unwrap_or(0) >> 20
                )),
            ),
            _ if killed => (
                TaskState::Killed,
                None,
                Some("killed on request".to_string()),
            ),
            Ok(s) if s.success() => (
                TaskState::Finished,
                None,
                Some("command exited with status 0".into()),
            ),
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (
                    TaskState::Failed,
                    Some("REASON_COMMAND_EXECUTOR_FAILED"),
                    Some(format!("command exited with status {code}")),
                ),
                (None, Some(signal)) => (
                    TaskState::Failed,
                    Some("REASON_COMMAND_EXECUTOR_FAILED"),
                    Some(format!("command was killed by signal {signal}")),
                ),
                _ => (
                    TaskState::Failed,
                    Some("REASON_COMMAND_EXECUTOR_FAILED"),
                    None,
                ),
            },
            Err(e) => (
                TaskState::Failed,
                Some("REASON_EXECUTOR_TERMINATED"),
                Some(format!("lost track of the process: {e}")),
            ),
        };
        self.lock().finished.insert(key, (spec.clone(), state));
        self.emit(&spec, state, reason, message);
    }

    /// SIGTERM now, SIGKILL to the whole cgroup after `grace`.
    pub fn kill(&self, framework_id: &str, task_id: &str, grace: Option<Duration>) -> bool {
        let (pgid, cgroup, grace) = {
            let mut inner = self.lock();
            let Some(task) = inner
                .tasks
                .get_mut(&(framework_id.to_owned(), task_id.to_owned()))
            else {
                return false;
            };
            task.kill_requested = true;
            let grace = grace
                .or(task.spec.kill_grace)
                .unwrap_or(self.config.default_grace);
            (task.pgid, task.cgroup.clone(), grace)
        };
        if let Some(pgid) = pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let manager = self.clone();
        let key = (framework_id.to_owned(), task_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if manager.lock().tasks.contains_key(&key) {
                cgroup.kill_all();
            }
        });
        true
    }

    /// Ends what a previous run of this agent left running. Its tasks cannot be re-adopted:
    /// their output went through the old agent's pipes and their exit status to the old
    /// agent. So, as Mesos's agent does with `--recover=cleanup`, they are killed and their
    /// cgroups removed; the master, seeing the agent re-register without them, reports them
    /// TASK_LOST (`REASON_AGENT_RESTARTED`). Only cgroups whose sandbox is in this agent's work
    /// directory are touched, so another agent on the host keeps its tasks. Returns the
    /// tasks ended, as `framework.task`.
    pub async fn clean_up_leftovers(&self) -> Vec<String> {
        let ours = sandboxes(&self.config.work_dir);
        let leftovers: Vec<(String, TaskCgroup)> = self
            .config
            .driver
            .existing(&self.config.cgroup_parent)
            .into_iter()
            .filter(|(name, _)| ours.contains(name))
            .collect();
        for (name, cgroup) in &leftovers {
            tracing::warn!(task = %name, pids = ?cgroup.pids(), "a task left by a previous run of this agent cannot be recovered; killing it");
            cgroup.kill_all();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for (name, cgroup) in &leftovers {
            while !cgroup.pids().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Err(e) = cgroup.destroy() {
                tracing::warn!(task = %name, %e, "cannot remove the cgroup of a task left by a previous run");
            }
        }
        leftovers.into_iter().map(|(name, _)| name).collect()
    }

    /// Kills every task at once and waits (up to `wait`) until each has ended and its cgroup
    /// is gone; then removes the agent's parent cgroup if it is empty. For an agent that is
    /// stopping for good (`orca up` quitting): nothing it started keeps running.
    pub async fn shutdown_all(&self, wait: Duration) {
        let keys: Vec<(String, String)> = self.lock().tasks.keys().cloned().collect();
        for (framework, task) in &keys {
            self.kill(framework, task, Some(Duration::ZERO));
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !self.lock().tasks.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.lock().tasks.len();
        if left > 0 {
            tracing::warn!(
                left,
                "tasks still ending after {wait:?}; their cgroups stay"
            );
        }
        self.config.driver.remove_parent(&self.config.cgroup_parent);
    }

    /// Kills every task of a framework (it was torn down) with no grace.
    pub fn shutdown_framework(&self, framework_id: &str) {
        let tasks: Vec<String> = self
            .lock()
            .tasks
            .keys()
            .filter(|(f, _)| f == framework_id)
            .map(|(_, t)| t.clone())
            .collect();
        for task in tasks {
            self.kill(framework_id, &task, Some(Duration::ZERO));
        }
    }
}
