//! The master's durable registry, behind one trait so the embedded store used on a single
//! host and the ZooKeeper-backed store of a highly-available master are interchangeable.
//!
//! What is kept is what must survive a master restart (as in Mesos's registry): the agents
//! admitted to the cluster, the frameworks registered, and the frameworks torn down (whose ids
//! must never be reused). Tasks are not kept here: agents report them when they re-register.
use std::{
    collections::BTreeMap,
    fmt,
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub hostname: String,
    /// Mesos text form (`cpus:4;mem:8192;ports:[31000-32000]`).
    pub resources: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub principal: Option<String>,
}

impl FrameworkRecord {
    pub fn of(info: &super::FrameworkInfo) -> Self {
        FrameworkRecord {
            name: info.name.clone(),
            user: info.user.clone(),
            roles: info.roles.clone(),
            principal: info.principal.clone(),
        }
    }
}

/// The registry's whole content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub agents: BTreeMap<String, AgentRecord>,
    pub frameworks: BTreeMap<String, FrameworkRecord>,
    pub torn_down: Vec<String>,
}

/// One change, applied durably before the master acts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    AgentAdmitted { id: String, record: AgentRecord },
    AgentRemoved { id: String },
    FrameworkAdded { id: String, record: FrameworkRecord },
    FrameworkTornDown { id: String },
}

impl Registry {
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::AgentAdmitted { id, record } => {
                self.agents.insert(id.clone(), record.clone());
            }
            Change::AgentRemoved { id } => {
                self.agents.remove(id);
            }
            Change::FrameworkAdded { id, record } => {
                self.frameworks.insert(id.clone(), record.clone());
            }
            Change::FrameworkTornDown { id } => {
                self.frameworks.remove(id);
                if !self.torn_down.contains(id) {
                    self.torn_down.push(id.clone());
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("registry {path}: {source}; check the path, its permissions and free space")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "registry {path} line {line} is not a registry change ({why}); it was written by something else or damaged"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// Where the registry lives.
pub trait RegistryStore: Send + Sync + fmt::Debug {
    /// Everything stored so far.
    fn load(&self) -> Result<Registry, StoreError>;
    /// Makes `change` durable; when this fails the master refuses the operation.
    fn apply(&self, change: &Change) -> Result<(), StoreError>;
}

/// Keeps the registry in memory only (tests, throwaway clusters).
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Registry>);

impl RegistryStore for MemoryStore {
    fn load(&self) -> Result<Registry, StoreError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn apply(&self, change: &Change) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(change);
        Ok(())
    }
}

/// The embedded store: one JSON line per change, fsynced, compacted into a snapshot line on
/// open. A torn last line (power loss mid-write) is dropped; any other bad line is an error.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Snapshot { snapshot: Registry },
    Change(Change),
}

impl FileStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let registry = Self::read(&path)?;
        // Compact: the snapshot goes to a new file that replaces the log atomically.
        let tmp = path.with_extension("compacting");
        {
            let mut out = File::create(&tmp).map_err(io)?;
            let line = serde_json::to_string(&Line::Snapshot { snapshot: registry })
                .expect("the registry serializes");
            writeln!(out, "{line}").map_err(io)?;
            out.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(FileStore {
            path,
            file: Mutex::new(file),
        })
    }

    fn read(path: &Path) -> Result<Registry, StoreError> {
        let mut registry = Registry::default();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(registry),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let last = lines.len();
        for (i, text) in lines.iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(text) {
                Ok(Line::Snapshot { snapshot }) => registry = snapshot,
                Ok(Line::Change(change)) => registry.apply(&change),
                Err(_) if i + 1 == last => {
                    tracing::warn!(path = %path.display(), "dropping a torn last registry line");
                }
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 1,
                        why: e.to_string(),
                    });
                }
            }
        }
        Ok(registry)
    }
}

impl RegistryStore for FileStore {
    fn load(&self) -> Result<Registry, StoreError> {
        Self::read(&self.path)
    }

    fn apply(&self, change: &Change) -> Result<(), StoreError> {
        let line = serde_json::to_string(&Line::Change(change.clone())).expect("changes serialize");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        writeln!(file, "{line}").map_err(io)?;
        file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_survives_reopening_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("orca-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("registry.jsonl");
        let store = FileStore::open(&path).unwrap();
        let agent = AgentRecord {
            hostname: "n1".into(),
            resources: "cpus:4".into(),
        };
        store
            .apply(&Change::AgentAdmitted {
                id: "a1".into(),
                record: agent.clone(),
            })
            .unwrap();
        store
            .apply(&Change::FrameworkAdded {
                id: "f1".into(),
                record: FrameworkRecord::default(),
            })
            .unwrap();
        store
            .apply(&Change::FrameworkTornDown { id: "f1".into() })
            .unwrap();
        drop(store);
        // Power loss in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "{{\"change\":\"agent_rem").unwrap();
        drop(f);
        let store = FileStore::open(&path).unwrap();
        let registry = store.load().unwrap();
        assert_eq!(registry.agents["a1"], agent);
        assert!(registry.frameworks.is_empty());
        assert_eq!(registry.torn_down, vec!["f1".to_string()]);
        // Compaction left one snapshot line.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // A damaged line in the middle is an error naming the line.
        std::fs::write(
            &path,
            "garbage\n{\"snapshot\":{\"agents\":{},\"frameworks\":{},\"torn_down\":[]}}\n",
        )
        .unwrap();
        let err = FileStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
