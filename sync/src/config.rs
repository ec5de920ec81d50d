//! What to sync and how: both ensembles, the subtree, exclusions and policies.
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::znode::{AclEntry, is_under};

/// ZooKeeper's own subtree: never replicated (quotas, config, per-ensemble state).
pub const ZOOKEEPER_SYSTEM_PATH: &str = "/zookeeper";

/// Default `jute.maxbuffer` of a server is 1 MiB (1,048,575 bytes); a multi request must fit
/// into it with its framing, so batches stay well below.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SyncConfig {
    /// Connect string of ensemble A (the source of the initial copy).
    pub source_zk: String,
    /// Connect string of ensemble B.
    pub target_zk: String,
    /// The subtree kept identical (default `/`).
    #[serde(default = "root")]
    pub root: String,
    /// Subtrees never replicated, besides `/zookeeper`; one ending in `*` excludes every
    /// path that starts with what comes before it (`/app/tmp-*`).
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default)]
    pub ephemerals: EphemeralPolicy,
    #[serde(default)]
    pub conflicts: ConflictStrategy,
    /// `digest` credentials (`user:password`) for A; needed to read and write nodes whose ACL
    /// restricts access, and ADMIN (or a super digest) to copy ACLs exactly.
    #[serde(default)]
    pub source_auth: Option<String>,
    #[serde(default)]
    pub target_auth: Option<String>,
    /// What is done with a znode whose ACL the sync's identity reads with hidden digests
    /// (`digest user:x`: it lacks ADMIN on it). Such an ACL is never written anywhere.
    #[serde(default)]
    pub acl_hidden: HiddenAclPolicy,
    /// The ACL a node gets where `acl-hidden: keep-target` creates it on the side that has
    /// no copy: entries `scheme:id:perms` (perms from `crwda`), e.g. `world:anyone:r` or
    /// `digest:bob:<base64 hash>:cdrwa`. Without it such nodes are refused.
    #[serde(default)]
    pub acl_fallback: Vec<String>,
    #[serde(default = "session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default = "max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Requests in flight per ensemble while walking a tree.
    #[serde(default = "walk_concurrency")]
    pub walk_concurrency: usize,
    /// Extra sessions per ensemble that walks spread their reads over (a first walk reads
    /// every node's ACL one request each; one session serves about 28,000 a second here, four
    /// about 55,000). Opened with the engine, closed with it.
    #[serde(default = "read_sessions")]
    pub read_sessions: usize,
    /// Seconds between full re-scans while replicating live (ACL changes fire no watch, so
    /// only a re-scan sees them). A re-scan reads both trees; live rounds go on beside it.
    #[serde(default = "rescan_interval_s")]
    pub rescan_interval_s: u64,
    /// Seconds between continuous validations while replicating live (0: none). Each reads
    /// both trees, compares them by digest, looks again at every difference once the changes
    /// on their way have landed, and reports and repairs what replication missed.
    #[serde(default = "validate_interval_s")]
    pub validate_interval_s: u64,
    /// Seconds of the recent lag figures (`recent_lag_*` in the status: the writes
    /// replicated in the last this-many to twice this-many seconds), what gates judge; the
    /// other lag figures cover the whole run.
    #[serde(default = "lag_window_s")]
    pub lag_window_s: u64,
    /// Where the engine keeps what both sides last agreed on, so a restart (even after
    /// `kill -9`) resumes without a full copy and without losing writes made meanwhile. Without
    /// it, a restart copies A over B again.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// File every conflict is appended to, one JSON object per line (path, both sides'
    /// summaries, resolution, time). Conflicts are always logged too.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
}

fn root() -> String {
    "/".into()
}
fn session_timeout_ms() -> u64 {
    10_000
}
fn max_batch_bytes() -> usize {
    DEFAULT_MAX_BATCH_BYTES
}
fn read_sessions() -> usize {
    3
}
fn walk_concurrency() -> usize {
    512
}
fn rescan_interval_s() -> u64 {
    300
}
fn validate_interval_s() -> u64 {
    60
}
fn lag_window_s() -> u64 {
    30
}

/// What happens to ephemeral znodes (they belong to a client session on one ensemble).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EphemeralPolicy {
    /// Not replicated: the clients that own them recreate them on the ensemble they move to.
    #[default]
    Skip,
    /// Replicated as ephemeral nodes owned by the sync engine's session on the other side:
    /// they vanish when the original does, or when the engine stops. Never made persistent.
    Mirror,
}

/// What the sync does with a znode whose ACL one side returns with hidden digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenAclPolicy {
    /// Never written to the other side: the bootstrap copies everything else and stops,
    /// naming each such node and the permission the sync's identity needs (ADMIN on it, or
    /// a super digest); live copies are refused and the other side keeps what it had.
    #[default]
    Refuse,
    /// Its data is copied and the other side's copy keeps the ACL it has; where the other
    /// side has no copy, it is created with `acl-fallback` (refused without one). The two
    /// copies are compared by data (their ACLs cannot be), and listed in the status.
    KeepTarget,
}

impl HiddenAclPolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::KeepTarget => "keep-target",
        }
    }
}

/// How a znode changed on both sides within one replication window is settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictStrategy {
    /// The copy with the later modification time (server clock) wins.
    #[default]
    LastWriteWins,
    /// Ensemble A's copy wins.
    SourceWins,
    /// Neither side is changed; the conflict waits in a queue until an operator resolves it.
    Manual,
}

impl SyncConfig {
    pub fn new(source_zk: impl Into<String>, target_zk: impl Into<String>) -> Self {
        Self {
            source_zk: source_zk.into(),
            target_zk: target_zk.into(),
            root: root(),
            excludes: Vec::new(),
            ephemerals: EphemeralPolicy::default(),
            conflicts: ConflictStrategy::default(),
            source_auth: None,
            target_auth: None,
            acl_hidden: HiddenAclPolicy::default(),
            acl_fallback: Vec::new(),
            session_timeout_ms: session_timeout_ms(),
            max_batch_bytes: max_batch_bytes(),
            walk_concurrency: walk_concurrency(),
            read_sessions: read_sessions(),
            rescan_interval_s: rescan_interval_s(),
            validate_interval_s: validate_interval_s(),
            lag_window_s: lag_window_s(),
            state_dir: None,
            audit_log: None,
        }
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    /// Checks the configuration before anything connects.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, zk) in [
            ("source-zk", &self.source_zk),
            ("target-zk", &self.target_zk),
        ] {
            if zk.trim().is_empty() {
                return Err(ConfigError::NoEnsemble(name));
            }
        }
        for path in std::iter::once(&self.root).chain(&self.excludes) {
            if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
                return Err(ConfigError::RelativePath(path.clone()));
            }
        }
        if is_under(&self.root, ZOOKEEPER_SYSTEM_PATH) {
            return Err(ConfigError::SystemRoot);
        }
        if self.rescan_interval_s == 0 {
            return Err(ConfigError::Invalid("rescan-interval-s must be at least 1"));
        }
        if self.read_sessions > 16 {
            return Err(ConfigError::Invalid(
                "read-sessions above 16 only adds load to the ensembles",
            ));
        }
        self.fallback_acl()?;
        if self.max_batch_bytes < 4096 {
            return Err(ConfigError::Invalid(
                "max-batch-bytes must be at least 4096",
            ));
        }
        Ok(())
    }

    /// `acl-fallback` parsed.
    pub fn fallback_acl(&self) -> Result<Vec<AclEntry>, ConfigError> {
        let mut entries = self
            .acl_fallback
            .iter()
            .map(|text| parse_acl_entry(text))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort();
        Ok(entries)
    }

    /// Whether a path is replicated (inside the root, not excluded, not `/zookeeper`).
    pub fn includes(&self, path: &str) -> bool {
        is_under(path, &self.root)
            && !is_under(path, ZOOKEEPER_SYSTEM_PATH)
            && !self.excludes.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => is_under(path, e),
            })
    }
}

/// One ACL entry written as ZooKeeper's CLI shows it: `scheme:id:perms`. The id may hold
/// colons (`digest:user:hash`, `ip:10.0.0.0/8` does not), so the scheme ends at the first
/// colon and the permissions start after the last.
fn parse_acl_entry(text: &str) -> Result<AclEntry, ConfigError> {
    let bad = |why: &str| ConfigError::BadAcl(text.to_owned(), why.to_owned());
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| bad("write it as scheme:id:perms, e.g. world:anyone:r"))?;
    let (id, letters) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("write it as scheme:id:perms, e.g. world:anyone:r"))?;
    if scheme.is_empty() || id.is_empty() {
        return Err(bad("the scheme and the id may not be empty"));
    }
    let mut perms = 0;
    for letter in letters.chars() {
        perms |= match letter {
            'r' => 1,
            'w' => 2,
            'c' => 4,
            'd' => 8,
            'a' => 16,
            _ => return Err(bad("permissions are letters from crwda")),
        };
    }
    if perms == 0 {
        return Err(bad("give at least one permission from crwda"));
    }
    let entry = AclEntry {
        perms,
        scheme: scheme.to_owned(),
        id: id.to_owned(),
    };
    if entry.is_hidden() {
        return Err(bad(
            "a digest ending in :x is a hidden one; give the user's real digest hash",
        ));
    }
    Ok(entry)
}

/// A sync configuration that cannot run, and what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is empty: give host:port[,host:port...]")]
    NoEnsemble(&'static str),
    #[error("{0:?} is not an absolute znode path (like /app or /)")]
    RelativePath(String),
    #[error("root may not be /zookeeper: it is each ensemble's own state")]
    SystemRoot,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("acl-fallback entry {0:?}: {1}")]
    BadAcl(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_zookeeper_and_configured_paths() {
        let mut cfg = SyncConfig::new("a:1", "b:1");
        cfg.excludes.push("/app/locks".into());
        assert!(cfg.includes("/app"));
        assert!(cfg.includes("/app/locksmith"));
        assert!(!cfg.includes("/app/locks"));
        assert!(!cfg.includes("/app/locks/x"));
        assert!(!cfg.includes("/zookeeper/quota"));
        cfg.root = "/app".into();
        assert!(!cfg.includes("/other"));
    }

    #[test]
    fn rejects_relative_paths_and_empty_ensembles() {
        let mut cfg = SyncConfig::new("", "b:1");
        assert_eq!(cfg.validate(), Err(ConfigError::NoEnsemble("source-zk")));
        cfg.source_zk = "a:1".into();
        cfg.excludes.push("app".into());
        assert!(cfg.validate().is_err());
        cfg.excludes = vec!["/app/tmp-*".into()];
        assert!(cfg.validate().is_ok());
        assert!(!cfg.includes("/app/tmp-1"));
        assert!(!cfg.includes("/app/tmp-1/child"));
        assert!(cfg.includes("/app/tmp"));
        cfg.excludes.push("app".into());
        assert!(cfg.validate().unwrap_err().to_string().contains("absolute"));
        cfg.excludes.clear();
        cfg.root = "/zookeeper/quota".into();
        assert_eq!(cfg.validate(), Err(ConfigError::SystemRoot));
    }

    #[test]
    fn fallback_acl_entries_are_parsed_and_bad_ones_named() {
        let mut cfg: SyncConfig = serde_norway::from_str(
            "source-zk: a:1\ntarget-zk: b:1\nacl-hidden: keep-target\n\
             acl-fallback: ['world:anyone:r', 'digest:bob:uDvrVMV3dAzA3rMy0rPNylDX3Zs=:cdrwa']\n",
        )
        .unwrap();
        assert_eq!(cfg.acl_hidden, HiddenAclPolicy::KeepTarget);
        // Sorted as read ACLs are, so the two compare.
        assert_eq!(
            cfg.fallback_acl().unwrap(),
            vec![
                AclEntry {
                    perms: 1,
                    scheme: "world".into(),
                    id: "anyone".into()
                },
                AclEntry {
                    perms: 31,
                    scheme: "digest".into(),
                    id: "bob:uDvrVMV3dAzA3rMy0rPNylDX3Zs=".into()
                },
            ]
        );
        for (bad, says) in [
            ("world:anyone", "scheme:id:perms"),
            ("world:anyone:rx", "crwda"),
            ("world:anyone:", "at least one"),
            (":anyone:r", "empty"),
            ("digest:bob:x:r", "hidden"),
        ] {
            cfg.acl_fallback = vec![bad.into()];
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
        let default: SyncConfig =
            serde_norway::from_str("source-zk: a:1\ntarget-zk: b:1\n").unwrap();
        assert_eq!(default.acl_hidden, HiddenAclPolicy::Refuse);
    }

    #[test]
    fn read_sessions_default_to_three_and_stop_at_sixteen() {
        let mut cfg: SyncConfig =
            serde_norway::from_str("source-zk: a:1\ntarget-zk: b:1\n").unwrap();
        assert_eq!(cfg.read_sessions, 3);
        assert_eq!(cfg.validate(), Ok(()));
        cfg.read_sessions = 0;
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "0: walks read through the main session alone"
        );
        cfg.read_sessions = 17;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("read-sessions")
        );
    }
}
