//! The migration YAML: both ensembles (the sync's own configuration), the cluster's
//! ZooKeeper path, the masters to start on B, which agents leave, the actuator and the gates.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use orca_sync::{EphemeralPolicy, SyncConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MigrationConfig {
    /// The migration's id (letters, digits, `-`, `_`); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Ensembles A (`source-zk`) and B (`target-zk`) and how they are kept identical. The
    /// subtree must hold the cluster's path; ephemerals are always mirrored (the masters'
    /// contenders must be seen on both sides).
    pub sync: SyncConfig,
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub actuator: ActuatorConfig,
    #[serde(default)]
    pub gates: GateConfig,
    /// Where the migration keeps its state, reports and A's archive (one folder per id).
    pub state_dir: PathBuf,
    /// How long A's archived tree is kept for a rollback after phase 6.
    #[serde(default = "rollback_window_h")]
    pub rollback_window_h: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClusterConfig {
    /// The masters' ZooKeeper path (their `--zk zk://…/path`): contenders and registry.
    pub path: String,
    /// The masters started on B in phase 2 (the masters on A are found in A's contenders).
    pub target_masters: Vec<MasterAddr>,
    /// Hostnames of agents tied to A: drained in phase 5 (their tasks move).
    #[serde(default)]
    pub leave_agents: Vec<String>,
    /// Agents switched to B at a time in phase 4, and the pause between batches.
    #[serde(default = "agent_batch_size")]
    pub agent_batch_size: usize,
    #[serde(default = "agent_batch_pause_ms")]
    pub agent_batch_pause_ms: u64,
    /// The grace drained tasks get to end (Mesos DRAIN_AGENT `max_grace_period`).
    #[serde(default)]
    pub drain_grace_s: Option<f64>,
}

/// A master's HTTP and gRPC addresses (what it is started with and advertises).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MasterAddr {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// How masters and ZooKeeper servers are started and stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ActuatorConfig {
    /// A shell command per action; `{host}` is the master's HTTP `host:port` or the server's
    /// client `host:port`, `{grpc}` a master's gRPC address, `{zk}` the master's `zk://` URL,
    /// `{role}` `master` or `zookeeper`. Actions without a command use the built-in local
    /// actuator (processes on this host).
    #[serde(default)]
    pub start_master: Option<String>,
    #[serde(default)]
    pub stop_master: Option<String>,
    #[serde(default)]
    pub start_zookeeper: Option<String>,
    #[serde(default)]
    pub stop_zookeeper: Option<String>,
    /// Run for each server of A after its tree was archived, before it is stopped (e.g.
    /// copying its data directory away).
    #[serde(default)]
    pub archive_zookeeper: Option<String>,
    /// The local actuator's `orca-master` (default: next to this program, else on PATH)
    /// and extra arguments for the masters it starts.
    #[serde(default)]
    pub master_bin: Option<PathBuf>,
    #[serde(default)]
    pub master_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GateConfig {
    /// Sync lag (p99, each direction) a gate accepts.
    #[serde(default = "max_lag_ms")]
    pub max_lag_ms: f64,
    /// How long a leader must stay the same for leadership to count as stable.
    #[serde(default = "leader_stable_ms")]
    pub leader_stable_ms: u64,
    /// How long a phase may wait for its gate to pass before the migration halts.
    #[serde(default = "phase_timeout_s")]
    pub phase_timeout_s: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_lag_ms: max_lag_ms(),
            leader_stable_ms: leader_stable_ms(),
            phase_timeout_s: phase_timeout_s(),
        }
    }
}

fn rollback_window_h() -> u64 {
    72
}
fn agent_batch_size() -> usize {
    10
}
fn agent_batch_pause_ms() -> u64 {
    1000
}
fn max_lag_ms() -> f64 {
    100.0
}
fn leader_stable_ms() -> u64 {
    2000
}
fn phase_timeout_s() -> u64 {
    120
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the migration configuration is not valid YAML for it: {0}")]
    Parse(String),
    #[error("sync: {0}")]
    Sync(String),
    #[error("cluster.path {path} must be an absolute path under sync.root {root}")]
    PathOutsideRoot { path: String, root: String },
    #[error("cluster.target-masters is empty: phase 2 needs at least one master to start on B")]
    NoTargetMasters,
    #[error("id {0:?} may hold only letters, digits, '-' and '_'")]
    BadId(String),
    #[error(
        "{0} is given twice in cluster.target-masters: every master needs its own HTTP and gRPC addresses"
    )]
    AddressTwice(SocketAddr),
    #[error("cluster.agent-batch-size must be at least 1")]
    ZeroBatch,
}

impl MigrationConfig {
    /// Parses and checks a YAML configuration; ephemerals are set to mirror.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Self =
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.sync.ephemerals = EphemeralPolicy::Mirror;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        self.sync
            .validate()
            .map_err(|e| ConfigError::Sync(e.to_string()))?;
        let root = self.sync.root.trim_end_matches('/');
        let path = &self.cluster.path;
        if !path.starts_with('/')
            || !(root.is_empty() || path == root || path.starts_with(&format!("{root}/")))
        {
            return Err(ConfigError::PathOutsideRoot {
                path: path.clone(),
                root: self.sync.root.clone(),
            });
        }
        if self.cluster.target_masters.is_empty() {
            return Err(ConfigError::NoTargetMasters);
        }
        let mut addrs: Vec<SocketAddr> = self
            .cluster
            .target_masters
            .iter()
            .flat_map(|m| [m.http, m.grpc])
            .collect();
        addrs.sort();
        if let Some(w) = addrs.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::AddressTwice(w[0]));
        }
        if self.cluster.agent_batch_size == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        if let Some(id) = &self.id
            && (id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ConfigError::BadId(id.clone()));
        }
        Ok(())
    }

    /// The masters' URL on A (`Side::A`) or B.
    pub fn zk_url(&self, target: bool) -> String {
        let servers = if target {
            &self.sync.target_zk
        } else {
            &self.sync.source_zk
        };
        format!("zk://{servers}{}", self.cluster.path)
    }

    pub fn phase_timeout(&self) -> Duration {
        Duration::from_secs(self.gates.phase_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "
id: prod-move
sync:
  source-zk: 10.0.0.1:2181,10.0.0.2:2181
  target-zk: 10.1.0.1:2181
  root: /orca
cluster:
  path: /orca/masters
  target-masters:
    - { http: 10.1.0.5:5050, grpc: 10.1.0.5:5051 }
  leave-agents: [old-rack-1]
state-dir: /var/lib/zk-migrate
";

    #[test]
    fn a_configuration_parses_with_defaults_and_mirrors_ephemerals() {
        let cfg = MigrationConfig::from_yaml(YAML).unwrap();
        assert_eq!(cfg.sync.ephemerals, EphemeralPolicy::Mirror);
        assert_eq!(cfg.cluster.agent_batch_size, 10);
        assert_eq!(cfg.rollback_window_h, 72);
        assert_eq!(cfg.gates.max_lag_ms, 100.0);
        assert_eq!(
            cfg.zk_url(true),
            "zk://10.1.0.1:2181/orca/masters".to_string()
        );
        assert_eq!(
            cfg.zk_url(false),
            "zk://10.0.0.1:2181,10.0.0.2:2181/orca/masters".to_string()
        );
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let outside = YAML.replace("path: /orca/masters", "path: /mesos");
        assert!(matches!(
            MigrationConfig::from_yaml(&outside),
            Err(ConfigError::PathOutsideRoot { .. })
        ));
        let unknown = YAML.replace("leave-agents", "leave-agentz");
        let err = MigrationConfig::from_yaml(&unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("leave-agentz"), "{err}");
        let twice = YAML.replace(
            "- { http: 10.1.0.5:5050, grpc: 10.1.0.5:5051 }",
            "- { http: 10.1.0.5:5050, grpc: 10.1.0.5:5051 }\n    - { http: 10.1.0.6:5050, grpc: 10.1.0.5:5051 }",
        );
        assert!(matches!(
            MigrationConfig::from_yaml(&twice),
            Err(ConfigError::AddressTwice(_))
        ));
        let bad_id = YAML.replace("id: prod-move", "id: a/b");
        assert!(matches!(
            MigrationConfig::from_yaml(&bad_id),
            Err(ConfigError::BadId(_))
        ));
    }
}
