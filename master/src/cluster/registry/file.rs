//! The embedded registry store of a single master: one JSON line per change, fsynced before
//! the change is acknowledged, compacted into one snapshot line on open.
use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use super::{Change, Durable, Registry, RegistryStore, StoreError};

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

    fn apply(&self, change: &Change) -> Durable {
        Durable::ready(self.append(change))
    }
}

impl FileStore {
    fn append(&self, change: &Change) -> Result<(), StoreError> {
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
    use crate::cluster::registry::{AgentRecord, FrameworkRecord};

    #[test]
    fn the_file_store_survives_reopening_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("orca-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("registry.jsonl");
        let store = FileStore::open(&path).unwrap();
        let agent = AgentRecord {
            hostname: "n1".into(),
            resources: "cpus:4".into(),
            ..Default::default()
        };
        store
            .append(&Change::AgentAdmitted {
                id: "a1".into(),
                record: agent.clone(),
            })
            .unwrap();
        store
            .append(&Change::FrameworkAdded {
                id: "f1".into(),
                record: FrameworkRecord::default(),
            })
            .unwrap();
        store
            .append(&Change::FrameworkTornDown { id: "f1".into() })
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
