//! The master's durable registry, behind one trait so the embedded store of a single master
//! ([`file::FileStore`]) and the ZooKeeper store of highly-available masters
//! ([`zk::ZkStore`]) are interchangeable.
//!
//! What is kept is what must survive a master restart or failover (as in Mesos's registry):
//! the agents admitted to the cluster, the frameworks registered with their `FrameworkInfo`,
//! the frameworks torn down (whose ids must never be reused), and the role weights and quotas
//! operators set at run time (`UPDATE_WEIGHTS`, `UPDATE_QUOTA`). Tasks are not kept here:
//! agents report them when they re-register.
//!
//! A change is handed to the store while the master's state changes in memory; what the
//! change answers (an agent's registration, a framework's SUBSCRIBED) leaves only once the
//! store says it is durable ([`Durable`]). A store that cannot write ends the master's term:
//! a single master refuses the call, a leader steps down.
pub mod file;
pub mod zk;

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Mutex, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use file::FileStore;

use super::{FrameworkInfo, Labels};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub hostname: String,
    /// Mesos text form (`cpus:4;mem:8192;ports:[31000-32000]`).
    pub resources: String,
    /// An operator deactivated it (`DEACTIVATE_AGENT`): nothing is offered from it until
    /// `REACTIVATE_AGENT`, across master failovers, as Mesos keeps it in its registry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deactivated: bool,
    /// An operator drains it (`DRAIN_AGENT`); kept so a new leader goes on draining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainRecord>,
    /// When an operator marked it gone (`MARK_AGENT_GONE`, or a drain with `mark_gone`), in
    /// seconds since the epoch: it may never register again, as Mesos's `gone` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<f64>,
    /// The name in the TLS client certificate it was admitted with (mutual TLS): only that
    /// certificate may register as this agent, across master failovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// Mesos's `DrainInfo`: the state of an agent's drain and how it was asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainRecord {
    pub state: DrainState,
    /// Mesos's `DrainConfig.max_grace_period`: no task gets a longer kill grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period_secs: Option<f64>,
    /// Mark the agent gone once it is drained.
    #[serde(default)]
    pub mark_gone: bool,
}

/// Mesos's `DrainState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DrainState {
    /// Its tasks are being killed.
    Draining,
    /// Every task ended and every terminal update was acknowledged.
    Drained,
}

impl DrainState {
    pub fn name(self) -> &'static str {
        match self {
            DrainState::Draining => "DRAINING",
            DrainState::Drained => "DRAINED",
        }
    }
}

/// A registered framework's `FrameworkInfo` (older records have only the first four fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    /// `None` in records written before failover timeouts were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout_secs: Option<f64>,
    #[serde(default)]
    pub checkpoint: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

impl FrameworkRecord {
    pub fn of(info: &FrameworkInfo) -> Self {
        FrameworkRecord {
            name: info.name.clone(),
            user: info.user.clone(),
            roles: info.roles.clone(),
            principal: info.principal.clone(),
            hostname: info.hostname.clone(),
            webui_url: info.webui_url.clone(),
            failover_timeout_secs: Some(info.failover_timeout.as_secs_f64()),
            checkpoint: info.checkpoint,
            capabilities: info.capabilities.clone(),
            labels: info.labels.clone(),
        }
    }

    /// The framework's info as registered (`recovery_timeout` stands in for a failover
    /// timeout the record does not have).
    pub fn info(&self, id: &str, recovery_timeout: Duration) -> FrameworkInfo {
        FrameworkInfo {
            id: Some(id.to_owned()),
            user: self.user.clone(),
            name: self.name.clone(),
            roles: self.roles.clone(),
            principal: self.principal.clone(),
            hostname: self.hostname.clone(),
            webui_url: self.webui_url.clone(),
            failover_timeout: self
                .failover_timeout_secs
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(1e9)))
                .unwrap_or(recovery_timeout),
            checkpoint: self.checkpoint,
            capabilities: self.capabilities.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// A role's weight and quota as set at run time (what is unset keeps the command line's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The quota's guarantee and limit in Mesos text form (`cpus:4;mem:8192`); a quota set
    /// back to none is an empty guarantee and no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// The registry's whole content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub agents: BTreeMap<String, AgentRecord>,
    pub frameworks: BTreeMap<String, FrameworkRecord>,
    pub torn_down: Vec<String>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleRecord>,
    #[serde(default)]
    pub maintenance: MaintenanceRecord,
}

/// The maintenance schedule and the machines down for maintenance (Mesos's maintenance
/// primitives). Machines are hostnames in lower case.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowRecord>,
    /// Machines brought down (START_MAINTENANCE) and not up again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<String>,
}

impl MaintenanceRecord {
    /// Machines scheduled and not down: their agents still run, and are asked back.
    pub fn draining(&self) -> impl Iterator<Item = &String> {
        self.windows
            .iter()
            .flat_map(|w| w.machines.iter())
            .filter(|m| !self.down.contains(m))
    }
}

/// Machines unavailable together from `start_nanos` (since the epoch), for `duration_nanos`
/// (`None`: until further notice).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub machines: Vec<String>,
    pub start_nanos: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_nanos: Option<i64>,
}

/// One change, applied durably before the master acts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    AgentAdmitted {
        id: String,
        record: AgentRecord,
    },
    AgentRemoved {
        id: String,
    },
    FrameworkAdded {
        id: String,
        record: FrameworkRecord,
    },
    FrameworkTornDown {
        id: String,
    },
    RoleUpdated {
        role: String,
        record: RoleRecord,
    },
    /// The whole maintenance state after an operator's change.
    MaintenanceUpdated {
        record: MaintenanceRecord,
    },
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
            Change::RoleUpdated { role, record } => {
                if *record == RoleRecord::default() {
                    self.roles.remove(role);
                } else {
                    self.roles.insert(role.clone(), record.clone());
                }
            }
            Change::MaintenanceUpdated { record } => self.maintenance = record.clone(),
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
    #[error(
        "registry znode {znode} is not an Orca registry record ({why}); it was written by something else or damaged: repair or remove it (the master will not start on a partial registry)"
    )]
    CorruptZnode { znode: String, why: String },
    #[error("the registry in ZooKeeper: {0}")]
    Zk(String),
    #[error(
        "this master no longer leads (its contender znode is gone or its session ended): the change was not written"
    )]
    Fenced,
    #[error("registry record {what} is {size} bytes, over the {limit}-byte limit of one znode")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
}

/// When a change handed to a store is durable.
#[derive(Debug)]
pub struct Durable(DurableInner);

#[derive(Debug)]
enum DurableInner {
    Ready(Result<(), StoreError>),
    Pending(oneshot::Receiver<Result<(), StoreError>>),
}

impl Durable {
    /// Already written (or already failed).
    pub fn ready(result: Result<(), StoreError>) -> Self {
        Durable(DurableInner::Ready(result))
    }

    /// Written once `rx` says so.
    pub fn pending(rx: oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Durable(DurableInner::Pending(rx))
    }

    /// The write failed before it was queued (nothing to wait for; refuse the operation).
    pub fn failed_now(&mut self) -> Option<StoreError> {
        match &mut self.0 {
            DurableInner::Ready(Err(_)) => {
                match std::mem::replace(&mut self.0, DurableInner::Ready(Ok(()))) {
                    DurableInner::Ready(Err(e)) => Some(e),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            DurableInner::Ready(result) => result,
            DurableInner::Pending(rx) => rx.await.unwrap_or(Err(StoreError::Fenced)),
        }
    }
}

/// Where the registry lives.
pub trait RegistryStore: Send + Sync + fmt::Debug {
    /// Everything stored so far.
    fn load(&self) -> Result<Registry, StoreError>;
    /// Hands `change` to the store, in order after every change handed before it.
    fn apply(&self, change: &Change) -> Durable;
}

/// Keeps the registry in memory only (tests, throwaway clusters).
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Registry>);

impl RegistryStore for MemoryStore {
    fn load(&self) -> Result<Registry, StoreError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn apply(&self, change: &Change) -> Durable {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(change);
        Durable::ready(Ok(()))
    }
}
