//! The base: for every replicated path, the content both ensembles last agreed on. It is what
//! tells a creation from a deletion and a one-sided change from a conflict, so it must survive
//! the engine being killed at any moment.
//!
//! Stored as an append-only JSON-lines log in the state directory, fsynced after every round
//! and compacted (rewritten as a snapshot, then renamed over the old file) on open and when it
//! grows past twice the live entries. A record is appended only after the write it describes
//! succeeded on ZooKeeper, so after a crash the base is at worst older than the ensembles:
//! the paths written since then are found equal on both sides and agreed again. A torn last
//! line (killed mid-write: no newline) is ignored; any other line that is not a record stops
//! the engine with the line named, since skipping it could resurrect or delete a znode.
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::znode::ContentHash;

const FILE: &str = "base.jsonl";

/// Which sync a state directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub source: String,
    pub target: String,
    pub root: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Header { sync: Identity },
    Bootstrapped { bootstrapped: bool },
    Agreed { p: String, h: String },
    Absent { p: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "state file {path}, line {line}: {reason}. The file was damaged or edited; nothing was \
         written or synced. Restore it from a backup, or remove the state directory to start \
         over with a full copy (skipping the line could bring back a deleted znode or delete \
         one that exists)"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "state directory {dir} belongs to another sync ({found:?}); this one is {want:?}. \
         Use another --state-dir, or remove it to start over with a full copy"
    )]
    Foreign {
        dir: PathBuf,
        found: Box<Identity>,
        want: Box<Identity>,
    },
}

/// Last agreed content per path, durable when opened on a directory.
pub struct BaseStore {
    map: BTreeMap<String, ContentHash>,
    bootstrapped: bool,
    log: Option<(PathBuf, BufWriter<File>)>,
    identity: Option<Identity>,
    appended: usize,
}

fn hex(hash: &ContentHash) -> String {
    hash.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<ContentHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ContentHash(out))
}

impl BaseStore {
    /// A base that lives only as long as the process (a restart re-bootstraps).
    pub fn in_memory() -> Self {
        Self {
            map: BTreeMap::new(),
            bootstrapped: false,
            log: None,
            identity: None,
            appended: 0,
        }
    }

    /// Opens (or creates) the base in `dir` for the sync `identity`.
    pub fn open(dir: &Path, identity: Identity) -> Result<Self, BaseError> {
        let io_err = |source| BaseError::Io {
            path: dir.join(FILE),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let path = dir.join(FILE);
        let mut store = Self::in_memory();
        store.identity = Some(identity.clone());
        if path.exists() {
            let text = fs::read_to_string(&path).map_err(io_err)?;
            // Every record ends with a newline; a last line without one was torn by a kill
            // mid-write and is dropped. Any other line that is not a record is an error.
            let torn = !text.is_empty() && !text.ends_with('\n');
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                let corrupt = |reason: String| BaseError::Corrupt {
                    path: path.clone(),
                    line: n + 1,
                    reason,
                };
                let record = match serde_json::from_str::<Record>(line) {
                    Ok(record) => record,
                    Err(_) if torn && n + 1 == lines.len() => break,
                    Err(e) => return Err(corrupt(format!("not a base record ({e})"))),
                };
                match record {
                    Record::Header { sync } if sync != identity => {
                        return Err(BaseError::Foreign {
                            dir: dir.to_path_buf(),
                            found: Box::new(sync),
                            want: Box::new(identity),
                        });
                    }
                    Record::Header { .. } => {}
                    Record::Bootstrapped { bootstrapped } => store.bootstrapped = bootstrapped,
                    Record::Agreed { p, h } => {
                        let h = unhex(&h).ok_or_else(|| {
                            corrupt(format!("the content hash of {p} is not 64 hex digits"))
                        })?;
                        store.map.insert(p, h);
                    }
                    Record::Absent { p } => {
                        store.map.remove(&p);
                    }
                }
            }
        }
        store.compact_to(&path).map_err(io_err)?;
        Ok(store)
    }

    /// Rewrites the log as a snapshot of the live entries (atomically, by rename).
    fn compact_to(&mut self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            if let Some(identity) = &self.identity {
                serde_json::to_writer(
                    &mut w,
                    &Record::Header {
                        sync: identity.clone(),
                    },
                )?;
                w.write_all(b"\n")?;
            }
            serde_json::to_writer(
                &mut w,
                &Record::Bootstrapped {
                    bootstrapped: self.bootstrapped,
                },
            )?;
            w.write_all(b"\n")?;
            for (p, h) in &self.map {
                serde_json::to_writer(
                    &mut w,
                    &Record::Agreed {
                        p: p.clone(),
                        h: hex(h),
                    },
                )?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        self.log = Some((path.to_path_buf(), BufWriter::new(file)));
        self.appended = 0;
        Ok(())
    }

    pub fn durable(&self) -> bool {
        self.log.is_some()
    }

    pub fn get(&self, path: &str) -> Option<ContentHash> {
        self.map.get(path).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    fn append(&mut self, record: &Record) {
        if let Some((_, w)) = &mut self.log {
            // A failed append is caught by the flush that ends the round.
            let _ = serde_json::to_writer(&mut *w, record);
            let _ = w.write_all(b"\n");
            self.appended += 1;
        }
    }

    /// Records that both sides hold `hash` at `path` (None: neither has the node).
    pub fn set(&mut self, path: &str, hash: Option<ContentHash>) {
        let changed = match hash {
            Some(h) => self.map.insert(path.to_string(), h) != Some(h),
            None => self.map.remove(path).is_some(),
        };
        if changed {
            let record = match hash {
                Some(h) => Record::Agreed {
                    p: path.to_string(),
                    h: hex(&h),
                },
                None => Record::Absent {
                    p: path.to_string(),
                },
            };
            self.append(&record);
        }
    }

    pub fn set_bootstrapped(&mut self) {
        if !self.bootstrapped {
            self.bootstrapped = true;
            self.append(&Record::Bootstrapped { bootstrapped: true });
        }
    }

    /// Makes everything recorded so far durable (and compacts a log that grew too long).
    pub fn flush(&mut self) -> Result<(), BaseError> {
        let Some((path, w)) = &mut self.log else {
            return Ok(());
        };
        let path = path.clone();
        let io_err = |source| BaseError::Io {
            path: path.clone(),
            source,
        };
        w.flush().map_err(io_err)?;
        w.get_ref().sync_data().map_err(io_err)?;
        if self.appended > 2 * self.map.len() + 10_000 {
            self.compact_to(&path).map_err(io_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(root: &str) -> Identity {
        Identity {
            source: "a:1".into(),
            target: "b:1".into(),
            root: root.into(),
        }
    }

    #[test]
    fn survives_reopen_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("orca-base-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let mut base = BaseStore::open(&dir, id("/app")).unwrap();
            base.set("/app/x", Some(ContentHash([1; 32])));
            base.set("/app/y", Some(ContentHash([2; 32])));
            base.set("/app/y", None);
            base.set_bootstrapped();
            base.flush().unwrap();
        }
        // A kill -9 in the middle of an append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .unwrap();
        f.write_all(b"{\"p\":\"/app/z\",\"h\":\"01").unwrap();
        drop(f);
        let base = BaseStore::open(&dir, id("/app")).unwrap();
        assert!(base.bootstrapped());
        assert_eq!(base.get("/app/x"), Some(ContentHash([1; 32])));
        assert_eq!(base.get("/app/y"), None);
        assert_eq!(base.get("/app/z"), None);
        assert_eq!(base.len(), 1);
        let err = BaseStore::open(&dir, id("/other"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("belongs to another sync"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A damaged line in the middle is not skipped: skipping an `Absent` record would make a
    /// deleted znode look agreed, and the next pass would copy it back.
    #[test]
    fn a_corrupt_line_that_is_not_the_last_stops_the_open_and_keeps_the_file() {
        let dir = std::env::temp_dir().join(format!("orca-base-corrupt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let mut base = BaseStore::open(&dir, id("/app")).unwrap();
            base.set("/app/x", Some(ContentHash([1; 32])));
            base.flush().unwrap();
            base.set("/app/x", None);
            base.flush().unwrap();
        }
        let path = dir.join(FILE);
        let text = fs::read_to_string(&path).unwrap();
        let damaged = text.replace("{\"p\":\"/app/x\"}", "{\"p\":\"/app/x\"#");
        assert_ne!(damaged, text, "the Absent record is in the file: {text}");
        fs::write(&path, &damaged).unwrap();
        let err = BaseStore::open(&dir, id("/app")).err().unwrap();
        let BaseError::Corrupt { line, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(*line, damaged.lines().count(), "{err}");
        assert!(err.to_string().contains("not a base record"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            damaged,
            "the evidence is kept"
        );
        // A bad hash is refused the same way.
        fs::write(&path, text.replace(&"01".repeat(32), &"zz".repeat(32))).unwrap();
        let err = BaseStore::open(&dir, id("/app")).err().unwrap().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
