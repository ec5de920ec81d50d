//! What a migration has done, persisted after every step (written to a temporary file,
//! fsynced and renamed), so an orchestrator killed at any point resumes where it was.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::config::{MasterAddr, MigrationConfig};

/// The six phases, by number.
pub const PHASES: [&str; 6] = [
    "target ensemble synced",
    "masters on B joined",
    "masters on A left",
    "agents moved to B",
    "agents tied to A drained",
    "ensemble A retired",
];

pub fn phase_name(phase: u8) -> &'static str {
    match phase {
        1..=6 => PHASES[phase as usize - 1],
        _ => "not started",
    }
}

/// Where the migration is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Status {
    /// Created; nothing done yet.
    Planned,
    /// Phase `phase` is being carried out.
    Running {
        phase: u8,
    },
    /// `completed` phases are done; waiting for `advance` (or done when 6).
    Waiting,
    /// A check failed or an action could not be carried out; nothing more happens until an
    /// operator advances (retrying the phase) or rolls back.
    Halted {
        phase: u8,
        reason: String,
    },
    /// Undoing phases from `from` down to `to` (`from` is the next phase to undo).
    RollingBack {
        to: u8,
        from: u8,
    },
    Completed,
    RolledBack,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// What was measured, in words and figures.
    pub detail: String,
}

/// A gate: the checks before (pre), during (in-flight) or after (post) a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateResult {
    pub phase: u8,
    pub stage: String,
    pub at_unix_ms: u64,
    pub took_ms: u64,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

/// A line of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub at_unix_ms: u64,
    pub phase: u8,
    pub what: String,
    /// How long the action took, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// A master seen on A when the migration began (what a rollback starts again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceMaster {
    pub addr: MasterAddr,
    pub id: String,
    pub hostname: Option<String>,
}

/// Running-task counts through the migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskCounts {
    pub before: Option<u64>,
    pub min_during: Option<u64>,
    pub max_during: Option<u64>,
    pub after: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationState {
    pub id: String,
    pub config: MigrationConfig,
    pub created_unix_ms: u64,
    /// Phases completed (0..=6).
    pub completed: u8,
    pub status: Status,
    pub source_masters: Vec<SourceMaster>,
    /// Agents switched to B (ids), and agents drained.
    pub switched_agents: Vec<String>,
    pub drained_agents: Vec<String>,
    pub timeline: Vec<Event>,
    pub gates: Vec<GateResult>,
    pub tasks: TaskCounts,
    /// Task interruptions seen (a running task ending failed, lost, gone, unreachable or
    /// dropped) with what they were.
    pub interruptions: Vec<String>,
    /// A's archived tree and until when it is kept (after phase 6).
    pub archive: Option<Archive>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Archive {
    pub file: PathBuf,
    pub znodes: u64,
    pub keep_until_unix_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot write the migration state {path}: {source} (is the state directory writable and the disk not full?)"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the migration state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a migration state: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl MigrationState {
    pub fn new(id: String, config: MigrationConfig) -> Self {
        Self {
            id,
            config,
            created_unix_ms: now_ms(),
            completed: 0,
            status: Status::Planned,
            source_masters: Vec::new(),
            switched_agents: Vec::new(),
            drained_agents: Vec::new(),
            timeline: Vec::new(),
            gates: Vec::new(),
            tasks: TaskCounts::default(),
            interruptions: Vec::new(),
            archive: None,
        }
    }

    /// The migration's folder: `<state-dir>/<id>`.
    pub fn dir(state_dir: &Path, id: &str) -> PathBuf {
        state_dir.join(id)
    }

    fn file(state_dir: &Path, id: &str) -> PathBuf {
        Self::dir(state_dir, id).join("state.json")
    }

    pub fn record(&mut self, phase: u8, what: impl Into<String>, took_ms: Option<u64>) {
        let what = what.into();
        tracing::info!(migration = %self.id, phase, "{what}");
        self.timeline.push(Event {
            at_unix_ms: now_ms(),
            phase,
            what,
            took_ms,
        });
    }

    /// Writes the state durably: a reader (or a resumed orchestrator) sees the old or the
    /// new state whole, never a part.
    pub fn save(&self) -> Result<(), StateError> {
        let dir = Self::dir(&self.config.state_dir, &self.id);
        let path = Self::file(&self.config.state_dir, &self.id);
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let tmp = dir.join("state.json.tmp");
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    pub fn load(state_dir: &Path, id: &str) -> Result<Self, StateError> {
        let path = Self::file(state_dir, id);
        let bytes = fs::read(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
    }

    /// Every migration kept under `state_dir`, oldest first.
    pub fn list(state_dir: &Path) -> Vec<Self> {
        let mut found: Vec<Self> = fs::read_dir(state_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Self::load(state_dir, &e.file_name().to_string_lossy()).ok())
            .collect();
        found.sort_by_key(|m| m.created_unix_ms);
        found
    }

    /// The HTTP addresses of the masters seen on A when the migration began.
    pub fn source_http(&self) -> Vec<std::net::SocketAddr> {
        self.source_masters.iter().map(|m| m.addr.http).collect()
    }

    /// Whether the migration still acts (not completed or rolled back).
    pub fn is_active(&self) -> bool {
        !matches!(self.status, Status::Completed | Status::RolledBack)
    }

    pub fn observe_tasks(&mut self, running: u64) {
        let t = &mut self.tasks;
        t.min_during = Some(t.min_during.map_or(running, |m| m.min(running)));
        t.max_during = Some(t.max_during.map_or(running, |m| m.max(running)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_save_and_load_whole() {
        let dir = std::env::temp_dir().join(format!("orca-migrate-state-{}", std::process::id()));
        let cfg = crate::config::MigrationConfig::from_yaml(&format!(
            "sync: {{ source-zk: 'a:1', target-zk: 'b:1' }}\ncluster: {{ path: /orca, target-masters: [{{ http: '127.0.0.1:1', grpc: '127.0.0.1:2' }}] }}\nstate-dir: {}\n",
            dir.display()
        ))
        .unwrap();
        let mut state = MigrationState::new("m1".into(), cfg);
        state.completed = 3;
        state.status = Status::Halted {
            phase: 4,
            reason: "lag".into(),
        };
        state.record(4, "switched 10 agents", Some(120));
        state.save().unwrap();
        let back = MigrationState::load(&dir, "m1").unwrap();
        assert_eq!(back.completed, 3);
        assert_eq!(back.status, state.status);
        assert_eq!(back.timeline.len(), 1);
        assert_eq!(MigrationState::list(&dir).len(), 1);
        let _ = fs::remove_dir_all(dir);
    }
}
