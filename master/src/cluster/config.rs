//! The cluster master's settings: timing, roles (weights, quotas, who may use them) and the
//! allocator's.
use std::{collections::BTreeMap, time::Duration};

use crate::allocator::{AllocatorConfig, Quota};

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// How often the allocator runs when nothing triggers it earlier (Mesos
    /// `--allocation_interval`, default 1 s).
    pub allocation_interval: Duration,
    /// Coalescing window after an event (a decline, a new framework) before allocating.
    pub allocation_batch: Duration,
    /// An offer not answered within this is rescinded (Mesos `--offer_timeout`).
    pub offer_timeout: Option<Duration>,
    /// An agent silent for this long is marked unreachable and its tasks `TASK_UNREACHABLE`.
    pub agent_ping_timeout: Duration,
    /// An unreachable agent is removed after this; its tasks become `TASK_LOST`.
    pub agent_removal_timeout: Duration,
    /// After a master restart, how long a framework whose tasks agents report has to
    /// re-subscribe before it is torn down (and its tasks killed).
    pub framework_recovery_timeout: Duration,
    /// Heartbeat interval announced to frameworks in SUBSCRIBED.
    pub framework_heartbeat: Duration,
    /// Default `refuse_seconds` when a DECLINE or ACCEPT carries no filters (Mesos: 5 s).
    pub default_refuse: Duration,
    /// Terminal tasks kept per framework for `/master/state`.
    pub completed_tasks_kept: usize,
    pub roles: BTreeMap<String, RoleConfig>,
    /// When true, a role with no entry in `roles` may be used by any principal.
    pub open_roles: bool,
    pub allocator: AllocatorConfig,
    /// The embedded registry's file; `None` keeps the registry in memory only.
    pub registry: Option<std::path::PathBuf>,
    /// This master's id (Mesos `MasterInfo.id`); a new one per process when `None`.
    pub master_id: Option<String>,
    /// The flags the master was started with, by name, as the operator API's `GET_FLAGS`
    /// and `GET /flags` report them.
    pub flags: Vec<(String, String)>,
    /// Who may authenticate (`--credentials`); the front doors check callers against it.
    /// `None`: calls are not authenticated.
    pub credentials: Option<orca_auth::Credentials>,
    /// What principals may do (`--acls`); `None` authorizes everything.
    pub acls: Option<orca_auth::Acls>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            allocation_interval: Duration::from_secs(1),
            allocation_batch: Duration::from_millis(1),
            offer_timeout: Some(Duration::from_secs(60)),
            agent_ping_timeout: Duration::from_secs(75),
            agent_removal_timeout: Duration::from_secs(600),
            framework_recovery_timeout: Duration::from_secs(600),
            framework_heartbeat: Duration::from_secs(15),
            default_refuse: Duration::from_secs(5),
            completed_tasks_kept: 1000,
            roles: BTreeMap::new(),
            open_roles: true,
            allocator: AllocatorConfig::default(),
            registry: None,
            master_id: None,
            flags: Vec::new(),
            credentials: None,
            acls: None,
        }
    }
}

/// One role's settings.
#[derive(Clone, Debug, Default)]
pub struct RoleConfig {
    pub weight: Option<f64>,
    pub quota: Option<Quota>,
    /// Principals allowed to register frameworks in this role; empty means anyone.
    pub principals: Vec<String>,
}
