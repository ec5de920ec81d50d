//! The master's state and the rules of every operation on it, by aggregate: frameworks
//! (subscription, failover, teardown), offers (allocation, accept, decline, launch), tasks
//! (status updates, acknowledgements, kills, reconciliation), agents (registration, health,
//! recovery) and views (snapshots and metrics). One `State` behind the cluster's one lock;
//! each aggregate's operations live in their own module. See the module above for the
//! locking and delivery model.
mod agents;
mod authz;
mod drain;
mod events;
mod frameworks;
mod maintenance;
mod offers;
mod roles;
mod tasks;
#[cfg(test)]
mod testing;
mod views;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

pub use events::ClusterEvent;
use hdrhistogram::Histogram;
pub use maintenance::{InverseOfferAnswer, MaintenanceStatus};
use tokio::sync::mpsc;
pub use views::{AgentView, DrainView, FrameworkView, StateSnapshot, TaskView};

use super::{
    ApiError, ClusterConfig, TaskUsage,
    registry::{AgentRecord, Change, Durable, FrameworkRecord, Registry, RegistryStore},
    types::*,
};
use crate::allocator::Allocator;

#[derive(Debug)]
struct TaskEntry {
    info: TaskInfo,
    framework_id: String,
    role: Arc<str>,
    state: TaskState,
    latest: Option<TaskStatus>,
    /// Updates sent to the framework and not acknowledged yet, oldest first.
    pending: VecDeque<TaskStatus>,
    /// Whether the task's resources went back to the allocator.
    recovered: bool,
    usage: Option<TaskUsage>,
    started: SystemTime,
}

#[derive(Debug)]
struct FrameworkEntry {
    id: String,
    info: FrameworkInfo,
    stream_id: Option<String>,
    events: Option<mpsc::UnboundedSender<Event>>,
    disconnected_at: Option<Instant>,
    registered: SystemTime,
    /// Known from its agents' tasks (after a master failover, or on agents moved here) and
    /// not subscribed to this master since: Mesos's "recovered" frameworks.
    recovered: bool,
    /// The principal its subscriber authenticated as (`None`: not authenticated).
    authenticated: Option<String>,
    offers: HashSet<String>,
    tasks: HashMap<String, TaskEntry>,
    completed: VecDeque<TaskEntry>,
}

impl FrameworkEntry {
    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    fn partition_aware(&self) -> bool {
        self.info.has_capability("PARTITION_AWARE")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentHealth {
    Active,
    Unreachable { since: Instant },
}

#[derive(Debug)]
struct AgentEntry {
    id: String,
    info: AgentInfo,
    commands: mpsc::UnboundedSender<AgentCommand>,
    last_seen: Instant,
    health: AgentHealth,
    registered: SystemTime,
    /// When it last registered again (a restart, a partition healed, a master switch).
    reregistered: Option<SystemTime>,
    /// An operator deactivated it (or drains it): connected, but nothing of it is offered.
    deactivated: bool,
    drain: Option<drain::AgentDrain>,
}

impl AgentEntry {
    /// What the registry keeps of it.
    fn record(&self) -> AgentRecord {
        AgentRecord {
            hostname: self.info.hostname.clone(),
            resources: self.info.resources.to_string(),
            deactivated: self.deactivated,
            drain: self.drain.as_ref().map(|d| d.record.clone()),
            gone_at: None,
            principal: self.info.principal.clone(),
        }
    }
}

#[derive(Debug)]
struct OfferEntry {
    offer: Offer,
    expires: Option<Instant>,
}

/// Counters that only grow (Mesos `master/tasks_finished` and friends count terminal states).
#[derive(Debug, Default)]
struct Counters {
    terminal: BTreeMap<&'static str, u64>,
    offers_made: u64,
    offers_declined: u64,
    offers_rescinded: u64,
    offers_accepted: u64,
    invalid_calls: u64,
}

pub(super) struct State {
    pub(super) config: ClusterConfig,
    master_id: String,
    /// Prefix of the ids this state hands out (offers, frameworks, agents): new for every
    /// state, so a master leading again after a term elsewhere never reuses one.
    id_prefix: String,
    started: Instant,
    allocator: Allocator,
    agents: HashMap<String, AgentEntry>,
    frameworks: HashMap<String, FrameworkEntry>,
    /// Frameworks torn down or expired, for `/master/state`.
    completed_frameworks: VecDeque<(String, FrameworkInfo)>,
    offers: HashMap<String, OfferEntry>,
    next_id: u64,
    counters: Counters,
    allocation_us: Histogram<u64>,
    /// The same runs for Prometheus (`orca_allocator_allocation_run_seconds`).
    allocation_seconds: prometheus_client::metrics::histogram::Histogram,
    store: Box<dyn RegistryStore>,
    /// Agents in the registry that have not re-registered since this master started.
    recovered_agents: BTreeMap<String, AgentRecord>,
    /// Agents an operator marked gone, with when (seconds since the epoch): never again.
    gone: BTreeMap<String, f64>,
    /// Frameworks in the registry (they may re-subscribe with their id).
    registered_frameworks: HashMap<String, FrameworkRecord>,
    /// Registry writes handed to the store by the operation under way; the cluster waits
    /// for them before the operation's answer leaves.
    writes: Vec<Durable>,
    /// Role weights and quotas set at run time, as the registry has them.
    runtime_roles: BTreeMap<String, super::registry::RoleRecord>,
    /// Changes, to the operator event stream's subscribers.
    events: tokio::sync::broadcast::Sender<ClusterEvent>,
    /// The maintenance schedule and the machines down, as the registry has them.
    maintenance: super::registry::MaintenanceRecord,
    /// Inverse offers out for draining machines, and the frameworks' answers.
    inverse: maintenance::InverseOfferBook,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("master_id", &self.master_id)
            .field("agents", &self.agents.len())
            .field("frameworks", &self.frameworks.len())
            .field("offers", &self.offers.len())
            .finish()
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn new_uuid() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

impl State {
    /// A state recovering from `registry` (what `store` holds), under the master id `master_id`.
    pub(in crate::cluster) fn new(
        config: ClusterConfig,
        master_id: String,
        store: Box<dyn RegistryStore>,
        registry: Registry,
    ) -> Result<Self, ApiError> {
        let mut allocator = Allocator::new(config.allocator.clone());
        for (role, settings) in &config.roles {
            if let Some(weight) = settings.weight {
                allocator.set_weight(role, weight)?;
            }
            if let Some(quota) = &settings.quota {
                allocator.set_quota(role, quota.clone())?;
            }
        }
        // What operators set at run time wins over the command line.
        for (role, record) in &registry.roles {
            if let Err(e) = roles::apply(&mut allocator, role, record) {
                tracing::warn!(%role, %e, "a role setting in the registry is not valid any more; ignored");
            }
        }
        let (gone, recovered_agents): (BTreeMap<_, _>, BTreeMap<_, _>) = registry
            .agents
            .into_iter()
            .partition(|(_, record)| record.gone_at.is_some());
        let gone = gone
            .into_iter()
            .map(|(id, record)| (id, record.gone_at.unwrap_or_default()))
            .collect();
        Ok(State {
            config,
            master_id,
            id_prefix: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            allocator,
            agents: HashMap::new(),
            frameworks: HashMap::new(),
            completed_frameworks: registry
                .torn_down
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        FrameworkInfo {
                            id: Some(id.clone()),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            offers: HashMap::new(),
            next_id: 0,
            counters: Counters::default(),
            allocation_us: Histogram::new(3).expect("valid histogram"),
            allocation_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16),
            ),
            store,
            recovered_agents,
            gone,
            registered_frameworks: registry.frameworks.into_iter().collect(),
            writes: Vec::new(),
            runtime_roles: registry.roles,
            events: events::channel(),
            maintenance: registry.maintenance,
            inverse: Default::default(),
        })
    }

    /// Hands `change` to the registry. An error means it was refused at once (nothing is
    /// queued; the operation must not go on); otherwise the operation's answer waits for
    /// [`State::take_writes`].
    fn record(&mut self, change: Change) -> Result<(), ApiError> {
        let mut durable = self.store.apply(&change);
        if let Some(e) = durable.failed_now() {
            return Err(ApiError::Unavailable(format!(
                "the master could not record this change: {e}"
            )));
        }
        self.writes.push(durable);
        Ok(())
    }

    /// The registry writes the last operations handed over.
    pub(in crate::cluster) fn take_writes(&mut self) -> Vec<Durable> {
        std::mem::take(&mut self.writes)
    }

    fn next(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}-{kind}{:06}", self.id_prefix, self.next_id)
    }

    fn framework(&self, id: &str) -> Result<&FrameworkEntry, ApiError> {
        self.frameworks
            .get(id)
            .ok_or_else(|| ApiError::NotFound(format!("framework {id} is not subscribed")))
    }

    fn framework_mut(&mut self, id: &str) -> Result<&mut FrameworkEntry, ApiError> {
        self.frameworks
            .get_mut(id)
            .ok_or_else(|| ApiError::NotFound(format!("framework {id} is not subscribed")))
    }
}
