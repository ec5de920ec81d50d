//! Task execution: each task a process tree in its own cgroup and sandbox, owned by its own
//! supervisor process so it outlives the agent, its status updates delivered at least once.
//!
//! A launch goes STARTING (cgroup, sandbox and checkpoint made) → RUNNING (process started by
//! its `orca-task-supervisor`) → FINISHED,
//! FAILED (non-zero exit; OOM kill with `REASON_CONTAINER_LIMITATION_MEMORY`) or KILLED. A
//! task group starts all-or-nothing: if any member cannot start, none runs and all fail.
//! A kill sends SIGTERM to the task's process group, then SIGKILL to everything in its cgroup
//! once the grace period passes. Every update carries a uuid and is kept until the master
//! relays the framework's acknowledgement; [`TaskManager::unacknowledged`] lists what to
//! send again. Tasks, updates and acknowledgements are checkpointed ([`checkpoint`]), so a
//! restarted agent takes its tasks back ([`TaskManager::recover`]).
pub mod capacity;
pub mod cgroups;
pub mod checkpoint;
mod error;
pub mod link;
mod recovery;
pub mod sandbox;
mod supervisor;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use error::LaunchError;
pub use orca_proto::cluster::v1::TaskState;
use orca_task_supervisor::{ExitRecord, Invocation, ProcessIdentity};
pub use recovery::{Recovery, RecoveryError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use cgroups::{Driver, Limits, TaskCgroup, Usage};
use checkpoint::TaskCheckpoint;
use supervisor::Supervisor;

/// A command task to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The `orca-task-supervisor` executable each task is started by.
    pub supervisor: PathBuf,
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
            supervisor: supervisor::default_path(),
        }
    }
}

#[derive(Debug)]
struct Running {
    spec: TaskSpec,
    state: TaskState,
    /// The task's process once its supervisor has started it (its process group leader).
    process: Option<ProcessIdentity>,
    cgroup: TaskCgroup,
    kill_requested: bool,
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<Key, Running>,
    /// Tasks that ended with updates not acknowledged yet, with their final state: a master
    /// this agent registers with must know them, or their updates would have nowhere to go.
    finished: HashMap<Key, (TaskSpec, TaskState)>,
    /// Updates not acknowledged yet, in the order they were made.
    unacked: Vec<StatusUpdate>,
    /// The checkpoint of every task running or finished with updates unacknowledged.
    checkpoints: HashMap<Key, TaskCheckpoint>,
    /// Tasks whose launch is being prepared (sandbox, cgroup, checkpoint): a master this
    /// agent registers with meanwhile learns them as staging.
    launching: HashMap<Key, TaskSpec>,
}

/// Runs tasks and tracks their updates. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskManager {
    config: Arc<TaskManagerConfig>,
    inner: Arc<Mutex<Inner>>,
    updates: mpsc::UnboundedSender<StatusUpdate>,
}

/// Waits for the supervisor to place the process in its cgroup, then becomes the task.
const GATE: &str = r#"read -r _ || exit 111; exec "$@" </dev/null"#;

/// The same gate for a shell command, which the gate's own shell then runs (one exec of a
/// shell less per task): the shell reads and runs this line before it even parses the next,
/// so nothing of the command runs before the supervisor opens the gate.
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

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn key(spec: &TaskSpec) -> Key {
    (spec.framework_id.clone(), spec.task_id.clone())
}

/// A task's final state from how its process ended.
fn final_state(
    exit: Result<Option<ExitRecord>, std::io::Error>,
    oom: bool,
    killed: bool,
    cgroup: &TaskCgroup,
) -> (TaskState, Option<&'static str>, Option<String>) {
    match exit {
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
        Ok(Some(ExitRecord::Exited(0))) => (
            TaskState::Finished,
            None,
            Some("command exited with status 0".into()),
        ),
        Ok(Some(ExitRecord::Exited(code))) => (
            TaskState::Failed,
            Some("REASON_COMMAND_EXECUTOR_FAILED"),
            Some(format!("command exited with status {code}")),
        ),
        Ok(Some(ExitRecord::Signaled(signal))) => (
            TaskState::Failed,
            Some("REASON_COMMAND_EXECUTOR_FAILED"),
            Some(format!("command was killed by signal {signal}")),
        ),
        Ok(None) => (
            TaskState::Failed,
            Some("REASON_EXECUTOR_TERMINATED"),
            Some(
                "the task's supervisor ended without recording how the task ended (was it \
                 killed?); the task's processes were ended"
                    .into(),
            ),
        ),
        Err(e) => (
            TaskState::Failed,
            Some("REASON_EXECUTOR_TERMINATED"),
            Some(format!("cannot read how the task ended: {e}")),
        ),
    }
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

    /// The process of a running task (its pid and start time).
    pub fn process(&self, framework_id: &str, task_id: &str) -> Option<ProcessIdentity> {
        self.lock()
            .tasks
            .get(&(framework_id.to_owned(), task_id.to_owned()))
            .and_then(|t| t.process)
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
        let key = (framework_id.to_owned(), task_id.to_owned());
        let checkpoint = {
            let mut inner = self.lock();
            if let Some(task) = inner.tasks.get_mut(&key) {
                task.state = state;
            }
            inner.checkpoints.get(&key).cloned()
        };
        // Checkpointed before it can be sent: an update the master may have seen is one a
        // restarted agent knows of. (Each task's updates are made by one flow at a time,
        // so they reach the file in order.)
        if let Some(checkpoint) = checkpoint
            && let Err(e) = checkpoint.record_update(&update)
        {
            tracing::warn!(task = %task_id, %e, "cannot checkpoint a status update; a restart of the agent before it is acknowledged loses it");
        }
        self.lock().unacked.push(update.clone());
        let _ = self.updates.send(update);
    }

    /// Stops retrying an update the framework acknowledged; a task that ended is forgotten
    /// (its checkpoint removed) once all its updates are acknowledged.
    pub fn acknowledge(&self, task_id: &str, uuid: [u8; 16]) {
        let (checkpoint, done) = {
            let mut inner = self.lock();
            let Some(at) = inner
                .unacked
                .iter()
                .position(|u| u.task_id == task_id && u.uuid == uuid)
            else {
                return;
            };
            let acked = inner.unacked.remove(at);
            let key = (acked.framework_id, acked.task_id);
            let done = !inner.unacked.iter().any(|u| u.task_id == task_id)
                && inner.finished.remove(&key).is_some();
            let checkpoint = if done {
                inner.checkpoints.remove(&key)
            } else {
                inner.checkpoints.get(&key).cloned()
            };
            (checkpoint, done)
        };
        match checkpoint {
            Some(checkpoint) if done => checkpoint.remove(),
            Some(checkpoint) => {
                if let Err(e) = checkpoint.record_ack(uuid) {
                    tracing::warn!(task = %task_id, %e, "cannot checkpoint an acknowledgement; a restarted agent sends that update again");
                }
            }
            None => {}
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
            .chain(
                inner
                    .launching
                    .values()
                    .map(|spec| (spec.clone(), TaskState::Staging)),
            )
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

    /// A task is over: it leaves the running tasks, and its final update goes out.
    fn finish(
        &self,
        spec: &TaskSpec,
        state: TaskState,
        reason: Option<&str>,
        message: Option<String>,
    ) {
        {
            let mut inner = self.lock();
            inner.tasks.remove(&key(spec));
            inner.finished.insert(key(spec), (spec.clone(), state));
        }
        self.emit(spec, state, reason, message);
    }

    /// Starts the tasks together: all of them, or none (each then reports TASK_FAILED).
    /// A task this agent already has is left as it is: a master launches a task again when
    /// this agent re-registered without it while its first launch was still on its way.
    pub async fn launch(&self, specs: Vec<TaskSpec>) {
        let specs: Vec<TaskSpec> = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            specs
                .into_iter()
                .filter(|spec| {
                    let k = key(spec);
                    let known = inner.tasks.contains_key(&k)
                        || inner.finished.contains_key(&k)
                        || inner.launching.contains_key(&k);
                    if known {
                        tracing::info!(task = %spec.task_id, "launched again; this agent has it already");
                    } else {
                        inner.launching.insert(k, spec.clone());
                    }
                    !known
                })
                .collect()
        };
        let mut prepared = Vec::new();
        let mut failure = None;
        for spec in &specs {
            match self.prepare(spec).await {
                Ok(p) => prepared.push(p),
                Err(why) => {
                    failure = Some(format!("task {}: {why}", spec.task_id));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            for (_, cgroup, checkpoint) in &prepared {
                let _ = cgroup.destroy();
                checkpoint.remove();
            }
            {
                let mut inner = self.lock();
                for spec in &specs {
                    inner.launching.remove(&key(spec));
                }
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
        for (spec, cgroup, checkpoint) in &prepared {
            let mut inner = self.lock();
            inner.launching.remove(&key(spec));
            inner.tasks.insert(
                key(spec),
                Running {
                    spec: spec.clone(),
                    state: TaskState::Staging,
                    process: None,
                    cgroup: cgroup.clone(),
                    kill_requested: false,
                },
            );
            inner.checkpoints.insert(key(spec), checkpoint.clone());
            drop(inner);
            self.emit(spec, TaskState::Starting, None, None);
        }
        let mut supervisors = Vec::new();
        let mut failure = None;
        for (spec, cgroup, checkpoint) in &prepared {
            match self.spawn(spec, cgroup, checkpoint).await {
                Ok(supervisor) => supervisors.push(supervisor),
                Err(why) => {
                    failure = Some(format!("task {}: {why}", spec.task_id));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            // Gang semantics: what started is stopped, everything fails.
            for (_, cgroup, _) in &prepared {
                cgroup.kill_all();
            }
            for supervisor in supervisors {
                supervisor.exited().await;
            }
            for (spec, cgroup, _) in &prepared {
                let _ = cgroup.destroy();
                self.finish(
                    spec,
                    TaskState::Failed,
                    Some("REASON_CONTAINER_LAUNCH_FAILED"),
                    Some(why.clone()),
                );
            }
            return;
        }
        for ((spec, cgroup, checkpoint), supervisor) in prepared.into_iter().zip(supervisors) {
            self.emit(&spec, TaskState::Running, None, None);
            tokio::spawn(self.clone().supervise(spec, cgroup, checkpoint, supervisor));
        }
    }

    /// Makes the sandbox, the cgroup and the checkpoint.
    async fn prepare(
        &self,
        spec: &TaskSpec,
    ) -> Result<(TaskSpec, TaskCgroup, TaskCheckpoint), LaunchError> {
        if spec.value.is_empty() {
            return Err(LaunchError::EmptyCommand);
        }
        let dir = sandbox::path(&self.config.work_dir, &spec.framework_id, &spec.task_id)?;
        // One mkdir or a few: cheaper here than a hop to the blocking pool.
        std::fs::create_dir_all(&dir).map_err(|source| LaunchError::Sandbox {
            path: dir.clone(),
            source,
        })?;
        let checkpoint = TaskCheckpoint::create(&self.config.work_dir, spec)?;
        let limits = Limits {
            cpus: spec.cpus,
            cfs_quota: self.config.cfs_quota,
            memory_bytes: spec.mem_mb.map(|mb| (mb * 1024.0 * 1024.0) as u64),
            pids_max: self.config.pids_max,
        };
        let name = format!("{}.{}", spec.framework_id, spec.task_id);
        let cgroup = match self
            .config
            .driver
            .create(&self.config.cgroup_parent, &name, &limits)
        {
            Ok(cgroup) => cgroup,
            Err(e) => {
                checkpoint.remove();
                return Err(e.into());
            }
        };
        Ok((spec.clone(), cgroup, checkpoint))
    }

    /// Starts the task's supervisor, which starts the task inside its cgroup. The task starts
    /// as a small shell "gate" that waits for one line on stdin; the supervisor moves it into
    /// the cgroup, then opens the gate and the gate execs the task (same pid, stdin from
    /// /dev/null). Nothing the task runs can start outside the cgroup.
    async fn spawn(
        &self,
        spec: &TaskSpec,
        cgroup: &TaskCgroup,
        checkpoint: &TaskCheckpoint,
    ) -> Result<Supervisor, LaunchError> {
        let dir = sandbox::path(&self.config.work_dir, &spec.framework_id, &spec.task_id)?;
        let args = if spec.shell {
            vec!["-c".into(), format!("{SHELL_GATE}{}", spec.value).into()]
        } else {
            let program = resolve_program(&spec.value)?;
            let mut args: Vec<std::ffi::OsString> =
                vec!["-c".into(), GATE.into(), "orca-gate".into(), program.into()];
            args.extend(spec.arguments.iter().map(Into::into));
            args
        };
        let (mut uid, mut gid) = (None, None);
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
                uid = Some(found.uid.as_raw());
                gid = Some(found.gid.as_raw());
            }
        }
        let mut environment = spec.environment.clone();
        environment.extend([
            ("MESOS_SANDBOX".into(), dir.to_string_lossy().into_owned()),
            ("MESOS_TASK_ID".into(), spec.task_id.clone()),
            ("MESOS_FRAMEWORK_ID".into(), spec.framework_id.clone()),
        ]);
        let invocation = Invocation {
            meta: checkpoint.dir().to_path_buf(),
            sandbox: dir.clone(),
            cgroup_procs: cgroup.procs_files(),
            uid,
            gid,
            rotation: self.config.rotation,
            program: "/bin/sh".into(),
            args,
        };
        let (supervisor, pid) = supervisor::start(supervisor::Start {
            binary: &self.config.supervisor,
            invocation,
            cwd: &dir,
            environment,
        })
        .await?;
        let process = ProcessIdentity::of(pid).ok();
        if let Some(task) = self.lock().tasks.get_mut(&key(spec)) {
            task.process = process;
        }
        Ok(supervisor)
    }

    /// Waits for the task's supervisor to end, then reports how the task ended.
    async fn supervise(
        self,
        spec: TaskSpec,
        cgroup: TaskCgroup,
        checkpoint: TaskCheckpoint,
        supervisor: Supervisor,
    ) {
        supervisor.exited().await;
        self.conclude(&spec, &cgroup, &checkpoint).await;
    }

    /// A task whose supervisor has ended: how the task ended is read from its checkpoint,
    /// whatever it left behind is ended with its cgroup, and its final update goes out.
    async fn conclude(&self, spec: &TaskSpec, cgroup: &TaskCgroup, checkpoint: &TaskCheckpoint) {
        let exit = ExitRecord::read(checkpoint.dir());
        let oom = cgroup.oom_killed();
        // Whatever the task left behind goes with it.
        cgroup.kill_all();
        for _ in 0..100 {
            if cgroup.pids().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = cgroup.destroy();
        let killed = self
            .lock()
            .tasks
            .get(&key(spec))
            .is_some_and(|t| t.kill_requested)
            || checkpoint.dir().join("kill").exists();
        let (state, reason, message) = final_state(exit, oom, killed, cgroup);
        self.finish(spec, state, reason, message);
    }

    /// SIGTERM now, SIGKILL to the whole cgroup after `grace`.
    pub fn kill(&self, framework_id: &str, task_id: &str, grace: Option<Duration>) -> bool {
        let key = (framework_id.to_owned(), task_id.to_owned());
        let (process, cgroup, grace, checkpoint) = {
            let mut inner = self.lock();
            let Some(task) = inner.tasks.get_mut(&key) else {
                return false;
            };
            task.kill_requested = true;
            let grace = grace
                .or(task.spec.kill_grace)
                .unwrap_or(self.config.default_grace);
            let found = (task.process, task.cgroup.clone(), grace);
            (
                found.0,
                found.1,
                found.2,
                inner.checkpoints.get(&key).cloned(),
            )
        };
        if let Some(checkpoint) = checkpoint
            && let Err(e) = checkpoint.record_kill()
        {
            tracing::warn!(task = %task_id, %e, "cannot checkpoint a kill; if the agent restarts before the task ends, it is reported failed rather than killed");
        }
        // Only the process the task started as, and only while it is still that process.
        if let Some(process) = process.filter(ProcessIdentity::is_alive) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(process.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let manager = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if manager.lock().tasks.contains_key(&key) {
                cgroup.kill_all();
            }
        });
        true
    }

    /// Kills every task at once and waits (up to `wait`) until each has ended and its cgroup
    /// is gone; then removes the agent's parent cgroup if it is empty. For an agent that is
    /// stopping for good (`orca up` quitting): nothing it started keeps running.
    pub async fn shutdown_all(&self, wait: Duration) {
        let keys: Vec<Key> = self.lock().tasks.keys().cloned().collect();
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
