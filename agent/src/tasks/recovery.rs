//! A restarted agent takes back what its previous run left (Mesos's `--recover=reconnect`),
//! or ends all of it (`--recover=cleanup`).
//!
//! For each task checkpoint: a task whose supervisor still lives is reattached (its end is
//! then reported as usual); one that ended while the agent was down is reported from the
//! exit its supervisor recorded; one that had ended before keeps its unacknowledged updates.
//! A process is only ever taken for the task's if its pid *and* start time match the
//! checkpoint, and only signalled through the task's own cgroup or process group: a pid that
//! now names another process is never touched.
use std::{collections::HashSet, path::Path, time::Duration};

use orca_task_supervisor::Pids;

use super::{
    Key, Running, TaskManager, TaskState,
    cgroups::TaskCgroup,
    checkpoint::{self, RecoveredTask, TaskCheckpoint},
    key,
    supervisor::Supervisor,
};

/// What recovery found and did, for the agent's log and its tests.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Tasks whose supervisor still ran: running again under this agent (`framework.task`).
    pub reattached: Vec<String>,
    /// Tasks that ended while the agent was down; their final updates are on their way.
    pub ended_while_down: Vec<String>,
    /// Tasks that could not be taken back, each with why; ended, and reported failed where
    /// their checkpoint allowed.
    pub failed: Vec<(String, String)>,
    /// Task cgroups of this agent's sandboxes with no checkpoint: ended.
    pub orphans_ended: Vec<String>,
    /// Updates not acknowledged before the restart, sent again.
    pub resent: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(
        "the agent's configuration changed since its previous run checkpointed its tasks \
         ({}); reattaching to them under another configuration is unsafe (Mesos's \
         reconfiguration policy `equal`). Start the agent with its previous configuration, \
         or once with --recover=cleanup to end those tasks and register as a new agent",
        .0.join("; ")
    )]
    Changed(Vec<String>),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// `framework.task` for every sandbox under `work_dir` (the names task cgroups are given).
fn sandboxes(work_dir: &Path) -> HashSet<String> {
    let dirs = |path: std::path::PathBuf| {
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

/// `framework.task` of a task checkpoint directory (`…/frameworks/<f>/tasks/<t>`).
fn name_of(dir: &Path) -> String {
    let part = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let framework = part(dir.parent().and_then(Path::parent));
    format!("{framework}.{}", part(Some(dir)))
}

/// Ends every process of `cgroup` and removes it.
async fn end(cgroup: &TaskCgroup) {
    if !cgroup.exists() {
        return;
    }
    cgroup.kill_all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cgroup.pids().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Err(e) = cgroup.destroy() {
        tracing::warn!(%e, "cannot remove the cgroup of a task being ended");
    }
}

impl TaskManager {
    fn cgroup_named(&self, name: &str, mem_mb: Option<f64>) -> TaskCgroup {
        self.config.driver.task_cgroup(
            &self.config.cgroup_parent,
            name,
            mem_mb.map(|mb| (mb * 1024.0 * 1024.0) as u64),
        )
    }

    /// Takes back every task a previous run of the agent checkpointed in the work directory
    /// (call before the agent registers, so it registers with them).
    pub async fn recover(&self) -> Recovery {
        let mut recovery = Recovery::default();
        let mut known = HashSet::new();
        for dir in checkpoint::task_dirs(&self.config.work_dir) {
            let name = name_of(&dir);
            known.insert(name.clone());
            let checkpoint = TaskCheckpoint::open(dir);
            match checkpoint.load() {
                Ok(task) => self.recover_task(checkpoint, task, &mut recovery).await,
                Err(e) => {
                    // Nothing to report it with: the master reports the task lost when the
                    // agent registers without it.
                    tracing::error!(task = %name, %e, "cannot recover a task; ending it");
                    end(&self.cgroup_named(&name, None)).await;
                    checkpoint.remove();
                    recovery.failed.push((name, e.to_string()));
                }
            }
        }
        recovery.orphans_ended = self.end_orphans(&known).await;
        recovery.resent = self.lock().unacked.len();
        recovery
    }

    async fn recover_task(
        &self,
        checkpoint: TaskCheckpoint,
        task: RecoveredTask,
        recovery: &mut Recovery,
    ) {
        let spec = task.spec.clone();
        let name = format!("{}.{}", spec.framework_id, spec.task_id);
        let cgroup = self.cgroup_named(&name, spec.mem_mb);
        let unacked = task.unacknowledged();
        if let Some(ended) = task.updates.iter().rev().find(|u| u.state.is_terminal()) {
            // It had ended before the agent stopped.
            end(&cgroup).await;
            if unacked.is_empty() {
                checkpoint.remove();
                return;
            }
            let mut inner = self.lock();
            inner
                .finished
                .insert(key(&spec), (spec.clone(), ended.state));
            inner.checkpoints.insert(key(&spec), checkpoint);
            inner.unacked.extend(unacked);
            return;
        }
        let last_state = task.last_state();
        {
            let mut inner = self.lock();
            inner.tasks.insert(
                key(&spec),
                Running {
                    spec: spec.clone(),
                    state: last_state.unwrap_or(TaskState::Staging),
                    process: None,
                    cgroup: cgroup.clone(),
                    kill_requested: task.kill_requested,
                },
            );
            inner.checkpoints.insert(key(&spec), checkpoint.clone());
            inner.unacked.extend(unacked);
        }
        let pids = match Pids::read(checkpoint.dir()) {
            Ok(Some(pids)) => pids,
            Ok(None) => {
                // The agent stopped while the task was being launched, before its supervisor
                // started it: whatever did start is ended, and the launch fails.
                self.give_up(
                    &spec,
                    &cgroup,
                    "the agent restarted while the task was being launched".into(),
                    recovery,
                )
                .await;
                return;
            }
            Err(e) => {
                let why = format!("the agent restarted and cannot recover the task: {e}");
                self.give_up(&spec, &cgroup, why, recovery).await;
                return;
            }
        };
        match Supervisor::adopt(pids.supervisor) {
            Ok(Some(supervisor)) => {
                // The task process is signalled directly only while it is the one the
                // supervisor started and still in the task's cgroup.
                let task_process = (pids.task.is_alive()
                    && cgroup.pids().contains(&(pids.task.pid as i32)))
                .then_some(pids.task);
                if let Some(running) = self.lock().tasks.get_mut(&key(&spec)) {
                    running.process = task_process;
                }
                if last_state != Some(TaskState::Running) {
                    // It was started, but the agent stopped before saying so.
                    self.emit(&spec, TaskState::Running, None, None);
                }
                tokio::spawn(self.clone().supervise(spec, cgroup, checkpoint, supervisor));
                recovery.reattached.push(name);
            }
            Ok(None) => {
                // It ended while the agent was down; its supervisor recorded how (or, if the
                // supervisor itself was killed, that is reported).
                self.conclude(&spec, &cgroup, &checkpoint).await;
                recovery.ended_while_down.push(name);
            }
            Err(e) => {
                tracing::error!(task = %name, %e, "cannot watch the task's supervisor; ending the task");
                let why =
                    format!("the agent restarted and cannot watch the task's supervisor: {e}");
                self.give_up(&spec, &cgroup, why, recovery).await;
            }
        }
    }

    /// A task that cannot be taken back: whatever of it runs is ended, and it fails with
    /// `REASON_AGENT_RESTARTED` and `why`.
    async fn give_up(
        &self,
        spec: &super::TaskSpec,
        cgroup: &TaskCgroup,
        why: String,
        recovery: &mut Recovery,
    ) {
        end(cgroup).await;
        let name = format!("{}.{}", spec.framework_id, spec.task_id);
        recovery.failed.push((name, why.clone()));
        self.finish(
            spec,
            TaskState::Failed,
            Some("REASON_AGENT_RESTARTED"),
            Some(why),
        );
    }

    /// Ends the task cgroups of this agent's sandboxes that no checkpoint names (left by an
    /// agent that did not checkpoint, or whose checkpoint was removed by hand). Only cgroups
    /// whose sandbox is in this agent's work directory are touched, so another agent on the
    /// host keeps its tasks.
    async fn end_orphans(&self, known: &HashSet<String>) -> Vec<String> {
        let ours = sandboxes(&self.config.work_dir);
        let orphans: Vec<(String, TaskCgroup)> = self
            .config
            .driver
            .existing(&self.config.cgroup_parent)
            .into_iter()
            .filter(|(name, _)| ours.contains(name) && !known.contains(name))
            .filter(|(name, _)| !self.lock().tasks.keys().any(|k| is_named(k, name)))
            .collect();
        for (name, cgroup) in &orphans {
            tracing::warn!(task = %name, pids = ?cgroup.pids(), "a task cgroup no checkpoint names; ending it");
            end(cgroup).await;
        }
        orphans.into_iter().map(|(name, _)| name).collect()
    }

    /// `--recover=cleanup`: ends every task a previous run left (checkpointed or not) and
    /// forgets them. Returns the tasks ended, as `framework.task`.
    pub async fn clean_up(&self) -> Vec<String> {
        let mut ended = Vec::new();
        for dir in checkpoint::task_dirs(&self.config.work_dir) {
            let name = name_of(&dir);
            let cgroup = self.cgroup_named(&name, None);
            if cgroup.exists() {
                tracing::warn!(task = %name, pids = ?cgroup.pids(), "ending a task of the previous run (--recover=cleanup)");
                end(&cgroup).await;
            }
            ended.push(name);
        }
        let known: HashSet<String> = ended.iter().cloned().collect();
        ended.extend(self.end_orphans(&known).await);
        let meta = checkpoint::meta_dir(&self.config.work_dir).join("frameworks");
        if let Err(e) = std::fs::remove_dir_all(&meta)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %meta.display(), %e, "cannot remove the task checkpoints");
        }
        ended
    }
}

fn is_named((framework, task): &Key, name: &str) -> bool {
    name.len() == framework.len() + 1 + task.len()
        && name.starts_with(framework.as_str())
        && name.ends_with(task.as_str())
}
