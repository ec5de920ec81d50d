//! What the agent checkpoints in its work directory so a restarted agent can take its tasks
//! back, as Mesos's agent does under `<work_dir>/meta`:
//!
//! ```text
//! <work_dir>/meta/agent.json                        the agent's configuration and boot
//! <work_dir>/meta/frameworks/<f>/tasks/<t>/task.json    what was launched
//!                                          /updates      status updates and acknowledgements
//!                                          /kill         present once a kill was asked for
//!                                          /pids, /exit  written by the task's supervisor
//! ```
//!
//! Files are written whole and renamed into place, or appended a line at a time; none is
//! fsynced: they must survive the agent process, not the host (a host that reboots has lost
//! its tasks anyway, and the agent then starts as a new agent, as Mesos's does).
use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{StatusUpdate, TaskSpec, TaskState};

/// Bumped when a checkpoint written by one version could be misread by another.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is damaged ({why}); the task it describes cannot be recovered")]
    Damaged { path: PathBuf, why: String },
    #[error(
        "{path} was written by a newer agent (checkpoint format {found}, this agent reads {FORMAT}); \
         run the newer agent, or start this one with --recover=cleanup"
    )]
    Newer { path: PathBuf, found: u32 },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

pub fn meta_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("meta")
}

/// The checkpoint directory of one task (ids already checked to be one path segment).
pub fn task_dir(work_dir: &Path, framework_id: &str, task_id: &str) -> PathBuf {
    meta_dir(work_dir)
        .join("frameworks")
        .join(framework_id)
        .join("tasks")
        .join(task_id)
}

/// Every task checkpoint directory under `work_dir`.
pub fn task_dirs(work_dir: &Path) -> Vec<PathBuf> {
    let children = |dir: PathBuf| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    children(meta_dir(work_dir).join("frameworks"))
        .into_iter()
        .flat_map(|framework| children(framework.join("tasks")))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct TaskFile {
    format: u32,
    spec: TaskSpec,
}

/// One line of a task's `updates` file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Update {
        state: String,
        reason: Option<String>,
        message: Option<String>,
        timestamp: f64,
        uuid: String,
    },
    Ack {
        uuid: String,
    },
}

/// One task's checkpoint directory.
#[derive(Clone, Debug)]
pub struct TaskCheckpoint {
    dir: PathBuf,
}

/// What a task's checkpoint says, read back by a restarted agent.
#[derive(Debug)]
pub struct RecoveredTask {
    pub spec: TaskSpec,
    /// Every update made, in order.
    pub updates: Vec<StatusUpdate>,
    pub acknowledged: HashSet<[u8; 16]>,
    pub kill_requested: bool,
}

impl RecoveredTask {
    pub fn unacknowledged(&self) -> Vec<StatusUpdate> {
        self.updates
            .iter()
            .filter(|u| !self.acknowledged.contains(&u.uuid))
            .cloned()
            .collect()
    }

    /// The last state reported, if any.
    pub fn last_state(&self) -> Option<TaskState> {
        self.updates.last().map(|u| u.state)
    }
}

impl TaskCheckpoint {
    /// Starts a task's checkpoint with what was launched.
    pub fn create(work_dir: &Path, spec: &TaskSpec) -> Result<Self, CheckpointError> {
        let dir = task_dir(work_dir, &spec.framework_id, &spec.task_id);
        // A new directory (the common case) has nothing stale in it: no removals to try.
        let reused = match fs::create_dir(&dir) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
                false
            }
            Err(e) => return Err(io_error("create", &dir)(e)),
        };
        let file = dir.join("task.json");
        let json = serde_json::to_vec(&TaskFile {
            format: FORMAT,
            spec: spec.clone(),
        })
        .map_err(|e| CheckpointError::Damaged {
            path: file.clone(),
            why: e.to_string(),
        })?;
        orca_task_supervisor::write_atomically(&file, &json).map_err(io_error("write", &file))?;
        // A task id used before (its checkpoint kept until its last update was acknowledged)
        // starts a new history.
        if reused {
            for stale in ["updates", "kill", "exit", "pids"] {
                let _ = fs::remove_file(dir.join(stale));
            }
        }
        Ok(TaskCheckpoint { dir })
    }

    pub fn open(dir: PathBuf) -> Self {
        TaskCheckpoint { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn append(&self, entry: &Entry) -> Result<(), CheckpointError> {
        let path = self.dir.join("updates");
        let mut line = serde_json::to_vec(entry).map_err(|e| CheckpointError::Damaged {
            path: path.clone(),
            why: e.to_string(),
        })?;
        line.push(b'\n');
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&line))
            .map_err(io_error("append to", &path))
    }

    pub fn record_update(&self, update: &StatusUpdate) -> Result<(), CheckpointError> {
        self.append(&Entry::Update {
            state: update.state.as_str_name().to_owned(),
            reason: update.reason.clone(),
            message: update.message.clone(),
            timestamp: update.timestamp,
            uuid: uuid::Uuid::from_bytes(update.uuid).to_string(),
        })
    }

    pub fn record_ack(&self, uuid: [u8; 16]) -> Result<(), CheckpointError> {
        self.append(&Entry::Ack {
            uuid: uuid::Uuid::from_bytes(uuid).to_string(),
        })
    }

    /// Remembers that the task is being killed, so its end is reported as TASK_KILLED even
    /// by an agent restarted before it ended.
    pub fn record_kill(&self) -> Result<(), CheckpointError> {
        let path = self.dir.join("kill");
        fs::write(&path, b"").map_err(io_error("write", &path))
    }

    /// The task is done with: its last update was acknowledged.
    pub fn remove(&self) {
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %e, "cannot remove a finished task's checkpoint");
        }
    }

    pub fn load(&self) -> Result<RecoveredTask, CheckpointError> {
        let file = self.dir.join("task.json");
        let bytes = fs::read(&file).map_err(io_error("read", &file))?;
        let task: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Damaged {
                path: file.clone(),
                why: e.to_string(),
            })?;
        let format = task["format"].as_u64().unwrap_or(0) as u32;
        if format > FORMAT {
            return Err(CheckpointError::Newer {
                path: file,
                found: format,
            });
        }
        let task: TaskFile =
            serde_json::from_value(task).map_err(|e| CheckpointError::Damaged {
                path: file.clone(),
                why: e.to_string(),
            })?;
        let path = self.dir.join("updates");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let mut updates = Vec::new();
        let mut acknowledged = HashSet::new();
        let parse_uuid = |text: &str| uuid::Uuid::parse_str(text).ok().map(|u| *u.as_bytes());
        for (n, line) in text.lines().enumerate() {
            // The agent may have died in the middle of its last line: that one is skipped,
            // any other damage is not.
            let entry = match serde_json::from_str::<Entry>(line) {
                Ok(entry) => entry,
                Err(_) if n + 1 == text.lines().count() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(CheckpointError::Damaged {
                        path,
                        why: format!("line {}: {e}", n + 1),
                    });
                }
            };
            match entry {
                Entry::Update {
                    state,
                    reason,
                    message,
                    timestamp,
                    uuid,
                } => {
                    let (Some(state), Some(uuid)) =
                        (TaskState::from_str_name(&state), parse_uuid(&uuid))
                    else {
                        return Err(CheckpointError::Damaged {
                            path,
                            why: format!("line {}: unknown state or uuid", n + 1),
                        });
                    };
                    updates.push(StatusUpdate {
                        framework_id: task.spec.framework_id.clone(),
                        task_id: task.spec.task_id.clone(),
                        state,
                        reason,
                        message,
                        timestamp,
                        uuid,
                    });
                }
                Entry::Ack { uuid } => {
                    if let Some(uuid) = parse_uuid(&uuid) {
                        acknowledged.insert(uuid);
                    }
                }
            }
        }
        Ok(RecoveredTask {
            spec: task.spec,
            updates,
            acknowledged,
            kill_requested: self.dir.join("kill").exists(),
        })
    }
}

/// What a restarted agent must find unchanged to take its tasks back (Mesos's checkpointed
/// `SlaveInfo`, compared under its default `--reconfiguration_policy=equal`), and the boot it
/// ran in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub format: u32,
    pub boot_id: String,
    pub hostname: String,
    pub resources: String,
    pub attributes: BTreeMap<String, String>,
    pub cgroup_parent: String,
}

/// How this run of the agent relates to the previous one on the same work directory.
#[derive(Debug, PartialEq)]
pub enum Continuity {
    /// No previous run left a checkpoint.
    First,
    /// Same boot, same configuration: the tasks may be taken back.
    Same,
    /// The host rebooted: the previous run's tasks are gone with it.
    Rebooted,
    /// The configuration changed: each difference, `what: before → now`.
    Changed(Vec<String>),
}

impl AgentRecord {
    pub fn new(
        hostname: &str,
        resources: &str,
        attributes: &BTreeMap<String, String>,
        cgroup_parent: &str,
    ) -> Self {
        AgentRecord {
            format: FORMAT,
            boot_id: boot_id(),
            hostname: hostname.to_owned(),
            resources: resources.to_owned(),
            attributes: attributes.clone(),
            cgroup_parent: cgroup_parent.to_owned(),
        }
    }

    fn path(work_dir: &Path) -> PathBuf {
        meta_dir(work_dir).join("agent.json")
    }

    pub fn load(work_dir: &Path) -> Result<Option<AgentRecord>, CheckpointError> {
        let path = Self::path(work_dir);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CheckpointError::Damaged {
                        path,
                        why: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    pub fn save(&self, work_dir: &Path) -> Result<(), CheckpointError> {
        let path = Self::path(work_dir);
        fs::create_dir_all(meta_dir(work_dir)).map_err(io_error("create", &meta_dir(work_dir)))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| CheckpointError::Damaged {
            path: path.clone(),
            why: e.to_string(),
        })?;
        orca_task_supervisor::write_atomically(&path, &json).map_err(io_error("write", &path))
    }

    /// How `self` (this run) follows `previous`.
    pub fn continuity(&self, previous: Option<&AgentRecord>) -> Continuity {
        let Some(previous) = previous else {
            return Continuity::First;
        };
        if previous.boot_id != self.boot_id {
            return Continuity::Rebooted;
        }
        let mut changes = Vec::new();
        let mut compare = |what: &str, before: String, now: String| {
            if before != now {
                changes.push(format!("{what}: {before:?} → {now:?}"));
            }
        };
        compare("hostname", previous.hostname.clone(), self.hostname.clone());
        compare(
            "resources",
            previous.resources.clone(),
            self.resources.clone(),
        );
        compare(
            "attributes",
            format!("{:?}", previous.attributes),
            format!("{:?}", self.attributes),
        );
        compare(
            "cgroup parent",
            previous.cgroup_parent.clone(),
            self.cgroup_parent.clone(),
        );
        if changes.is_empty() {
            Continuity::Same
        } else {
            Continuity::Changed(changes)
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty where the kernel has none, which
/// then compares equal across boots.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            framework_id: "fw".into(),
            task_id: "t1".into(),
            name: "web".into(),
            shell: true,
            value: "sleep 1".into(),
            arguments: vec![],
            environment: vec![("A".into(), "b".into())],
            user: None,
            cpus: 0.5,
            mem_mb: Some(64.0),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            kill_grace: Some(std::time::Duration::from_millis(1500)),
            resources: "cpus:0.5;mem:64".into(),
            role: "*".into(),
        }
    }

    fn update(state: TaskState, n: u8) -> StatusUpdate {
        StatusUpdate {
            framework_id: "fw".into(),
            task_id: "t1".into(),
            state,
            reason: None,
            message: Some(format!("m{n}")),
            timestamp: 1.5,
            uuid: [n; 16],
        }
    }

    #[test]
    fn a_task_checkpoint_reads_back_what_was_recorded() {
        let work = std::env::temp_dir().join(format!("orca-checkpoint-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        let checkpoint = TaskCheckpoint::create(&work, &spec()).unwrap();
        checkpoint
            .record_update(&update(TaskState::Starting, 1))
            .unwrap();
        checkpoint
            .record_update(&update(TaskState::Running, 2))
            .unwrap();
        checkpoint.record_ack([1; 16]).unwrap();
        let back = checkpoint.load().unwrap();
        assert_eq!(back.spec, spec());
        assert_eq!(back.updates.len(), 2);
        assert_eq!(back.last_state(), Some(TaskState::Running));
        assert_eq!(back.unacknowledged(), vec![update(TaskState::Running, 2)]);
        assert!(!back.kill_requested);
        checkpoint.record_kill().unwrap();
        assert!(checkpoint.load().unwrap().kill_requested);
        assert_eq!(task_dirs(&work), vec![checkpoint.dir().to_path_buf()]);

        // A half-written last line (the agent died writing it) is dropped; damage elsewhere
        // is an error naming the file.
        let updates = checkpoint.dir().join("updates");
        let mut text = fs::read_to_string(&updates).unwrap();
        text.push_str("{\"update\":{\"sta");
        fs::write(&updates, &text).unwrap();
        assert_eq!(checkpoint.load().unwrap().updates.len(), 2);
        fs::write(&updates, format!("garbage\n{text}")).unwrap();
        let err = checkpoint.load().unwrap_err().to_string();
        assert!(err.contains("updates") && err.contains("line 1"), "{err}");

        // Launching the same task id again starts a new history.
        let again = TaskCheckpoint::create(&work, &spec()).unwrap();
        let back = again.load().unwrap();
        assert!(back.updates.is_empty() && !back.kill_requested);
        again.remove();
        assert!(task_dirs(&work).is_empty());
        fs::remove_dir_all(&work).unwrap();
    }

    #[test]
    fn a_changed_configuration_or_a_reboot_is_noticed() {
        let attributes = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
        let before = AgentRecord::new("node-1", "cpus:2;mem:1024", &attributes, "orca");
        assert_eq!(before.continuity(None), Continuity::First);
        assert_eq!(before.continuity(Some(&before)), Continuity::Same);
        let mut now = before.clone();
        now.resources = "cpus:4;mem:1024".into();
        let Continuity::Changed(changes) = now.continuity(Some(&before)) else {
            panic!("a resource change is a change");
        };
        assert_eq!(
            changes,
            vec![r#"resources: "cpus:2;mem:1024" → "cpus:4;mem:1024""#]
        );
        let mut rebooted = before.clone();
        rebooted.boot_id = "another boot".into();
        assert_eq!(now.continuity(Some(&rebooted)), Continuity::Rebooted);
        let work = std::env::temp_dir().join(format!("orca-agent-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        assert_eq!(AgentRecord::load(&work).unwrap(), None);
        before.save(&work).unwrap();
        assert_eq!(AgentRecord::load(&work).unwrap(), Some(before));
        fs::remove_dir_all(&work).unwrap();
    }
}
