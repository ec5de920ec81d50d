//! The master's state and the rules of every operation on it. See the module above for the
//! locking and delivery model.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::{
    AgentLink, ClusterConfig, Subscription, TaskUsage,
    registry::{AgentRecord, Change, FrameworkRecord, RegistryStore},
    types::*,
};
use crate::{
    allocator::{Allocator, AllocatorError, FrameworkSpec, validate_role},
    resources::Resources,
};

/// Why a call was refused. The HTTP layer maps these to status codes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiError {
    /// Malformed or invalid request (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed: missing or stale stream id, role not permitted (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The framework or agent is not known (HTTP 404 for lookups, 403 for calls).
    #[error("{0}")]
    NotFound(String),
    /// The registry could not record the change; nothing was done (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<AllocatorError> for ApiError {
    fn from(err: AllocatorError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

/// One operation of an ACCEPT call.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    Launch(Vec<TaskInfo>),
    /// All tasks start or none does.
    LaunchGroup(Vec<TaskInfo>),
}

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
    store: Box<dyn RegistryStore>,
    /// Agents in the registry that have not re-registered since this master started.
    recovered_agents: BTreeMap<String, AgentRecord>,
    /// Frameworks in the registry (they may re-subscribe with their id).
    registered_frameworks: HashMap<String, FrameworkRecord>,
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
    pub(super) fn new(
        config: ClusterConfig,
        store: Box<dyn RegistryStore>,
    ) -> Result<Self, ApiError> {
        let registry = store
            .load()
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let mut allocator = Allocator::new(config.allocator.clone());
        for (role, settings) in &config.roles {
            if let Some(weight) = settings.weight {
                allocator.set_weight(role, weight)?;
            }
            if let Some(quota) = &settings.quota {
                allocator.set_quota(role, quota.clone())?;
            }
        }
        Ok(State {
            config,
            master_id: uuid::Uuid::new_v4().to_string(),
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
            store,
            recovered_agents: registry.agents,
            registered_frameworks: registry.frameworks.into_iter().collect(),
        })
    }

    pub(super) fn master_id(&self) -> &str {
        &self.master_id
    }

    fn record(&self, change: Change) -> Result<(), ApiError> {
        self.store.apply(&change).map_err(|e| {
            ApiError::Unavailable(format!("the master could not record this change: {e}"))
        })
    }

    fn next(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}-{kind}{:06}", self.master_id, self.next_id)
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

    // ---- frameworks ----

    /// A framework's roles as Mesos takes them: `*` when none is given, more than one only
    /// with MULTI_ROLE, each a valid name the principal may use.
    fn check_roles(&self, info: &mut FrameworkInfo) -> Result<(), ApiError> {
        if info.roles.is_empty() {
            info.roles.push("*".into());
        }
        if info.roles.len() > 1 && !info.has_capability("MULTI_ROLE") {
            return Err(ApiError::BadRequest(
                "more than one role needs the MULTI_ROLE capability".into(),
            ));
        }
        for role in &info.roles {
            validate_role(role)?;
            self.authorize_role(role, info.principal.as_deref())?;
        }
        Ok(())
    }

    /// Mesos UPDATE_FRAMEWORK: new roles (offers in roles left are rescinded, allocations in
    /// them stay charged until recovered), suppressed roles, capabilities, name, labels and
    /// failover timeout. `user` and `principal` may not change, as in Mesos.
    pub(super) fn update_framework(
        &mut self,
        framework_id: &str,
        mut info: FrameworkInfo,
        suppressed_roles: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let current = &self
            .frameworks
            .get(framework_id)
            .ok_or_else(|| ApiError::NotFound(format!("unknown framework {framework_id}")))?
            .info;
        if info.id.as_deref().is_some_and(|id| id != framework_id) {
            return Err(ApiError::BadRequest(
                "framework_info.id must be the id of the framework making the call".into(),
            ));
        }
        if info.user != current.user || info.principal != current.principal {
            return Err(ApiError::BadRequest(
                "`user` and `principal` cannot be changed by UPDATE_FRAMEWORK; subscribe a new \
                 framework instead"
                    .into(),
            ));
        }
        self.check_roles(&mut info)?;
        if let Some(role) = suppressed_roles.iter().find(|r| !info.roles.contains(r)) {
            return Err(ApiError::BadRequest(format!(
                "suppressed role {role} is not one of the framework's roles"
            )));
        }
        let spec = FrameworkSpec {
            roles: info.roles.clone(),
            suppressed_roles,
            gpu_aware: info.has_capability("GPU_RESOURCES"),
        };
        let record = FrameworkRecord::of(&info);
        self.record(Change::FrameworkAdded {
            id: framework_id.to_owned(),
            record: record.clone(),
        })?;
        self.registered_frameworks
            .insert(framework_id.to_owned(), record);
        self.allocator.update_framework(framework_id, &spec)?;
        let left: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| {
                o.offer.framework_id == framework_id
                    && !info.roles.iter().any(|r| **r == *o.offer.role)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for offer in left {
            self.rescind(&offer, now, true);
        }
        info.id = Some(framework_id.to_owned());
        self.frameworks
            .get_mut(framework_id)
            .expect("checked above")
            .info = info;
        Ok(())
    }

    pub(super) fn subscribe(
        &mut self,
        mut info: FrameworkInfo,
        now: Instant,
    ) -> Result<Subscription, ApiError> {
        if info.user.is_empty() || info.name.is_empty() {
            return Err(ApiError::BadRequest(
                "framework_info needs a non-empty `user` and `name`".into(),
            ));
        }
        self.check_roles(&mut info)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stream_id = uuid::Uuid::new_v4().to_string();
        let spec = FrameworkSpec {
            roles: info.roles.clone(),
            suppressed_roles: Vec::new(),
            gpu_aware: info.has_capability("GPU_RESOURCES"),
        };
        let framework_id = match info.id.clone() {
            Some(id) if self.frameworks.contains_key(&id) => {
                // Failover: the new connection replaces the old one.
                self.allocator.update_framework(&id, &spec)?;
                self.allocator.set_framework_active(&id, true)?;
                let heartbeat = self.config.framework_heartbeat;
                let fw = self.frameworks.get_mut(&id).expect("checked");
                fw.info = info;
                fw.stream_id = Some(stream_id.clone());
                fw.events = Some(tx);
                fw.disconnected_at = None;
                fw.send(Event::Subscribed {
                    framework_id: id.clone(),
                    heartbeat_interval: heartbeat,
                });
                // Everything not acknowledged yet is delivered again.
                for task in fw.tasks.values() {
                    for status in &task.pending {
                        fw.send(Event::Update(status.clone()));
                    }
                }
                for task in &fw.completed {
                    for status in &task.pending {
                        fw.send(Event::Update(status.clone()));
                    }
                }
                id
            }
            Some(id) if self.completed_frameworks.iter().any(|(c, _)| *c == id) => {
                return Err(ApiError::Forbidden(format!(
                    "framework {id} was torn down; subscribe without an id to start a new one"
                )));
            }
            requested => {
                // A framework id we never saw (e.g. after a master restart without the HA
                // store) is adopted, as Mesos does when frameworks re-register.
                let id = requested.unwrap_or_else(|| self.next("framework-"));
                if !self.registered_frameworks.contains_key(&id) {
                    let record = FrameworkRecord::of(&info);
                    self.record(Change::FrameworkAdded {
                        id: id.clone(),
                        record: record.clone(),
                    })?;
                    self.registered_frameworks.insert(id.clone(), record);
                }
                self.allocator.add_framework(&id, &spec)?;
                info.id = Some(id.clone());
                let entry = FrameworkEntry {
                    id: id.clone(),
                    info,
                    stream_id: Some(stream_id.clone()),
                    events: Some(tx),
                    disconnected_at: None,
                    registered: SystemTime::now(),
                    offers: HashSet::new(),
                    tasks: HashMap::new(),
                    completed: VecDeque::new(),
                };
                entry.send(Event::Subscribed {
                    framework_id: id.clone(),
                    heartbeat_interval: self.config.framework_heartbeat,
                });
                self.frameworks.insert(id.clone(), entry);
                id
            }
        };
        let _ = now;
        Ok(Subscription {
            framework_id,
            stream_id,
            events: rx,
        })
    }

    fn authorize_role(&self, role: &str, principal: Option<&str>) -> Result<(), ApiError> {
        match self.config.roles.get(role) {
            Some(settings) if !settings.principals.is_empty() => {
                if principal.is_some_and(|p| settings.principals.iter().any(|a| a == p)) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!(
                        "principal {} may not use role {role}",
                        principal.unwrap_or("(none)")
                    )))
                }
            }
            Some(_) => Ok(()),
            None if self.config.open_roles => Ok(()),
            None => Err(ApiError::Forbidden(format!(
                "role {role} is not configured on this master"
            ))),
        }
    }

    pub(super) fn check_stream(
        &self,
        framework_id: &str,
        stream_id: Option<&str>,
    ) -> Result<(), ApiError> {
        let fw = self.frameworks.get(framework_id).ok_or_else(|| {
            ApiError::Forbidden(format!("framework {framework_id} is not subscribed"))
        })?;
        match (stream_id, fw.stream_id.as_deref()) {
            (None, _) => Err(ApiError::Forbidden(
                "calls other than SUBSCRIBE need the Mesos-Stream-Id header from SUBSCRIBE".into(),
            )),
            (Some(given), Some(current)) if given == current => Ok(()),
            (Some(_), _) => Err(ApiError::Forbidden(format!(
                "the Mesos-Stream-Id does not match framework {framework_id}'s current subscription"
            ))),
        }
    }

    pub(super) fn disconnected(&mut self, framework_id: &str, stream_id: &str, now: Instant) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream_id.as_deref() != Some(stream_id) {
            return; // an older connection, already replaced
        }
        fw.events = None;
        fw.stream_id = None;
        fw.disconnected_at = Some(now);
        let offers: Vec<String> = fw.offers.iter().cloned().collect();
        let _ = self.allocator.set_framework_active(framework_id, false);
        for offer_id in offers {
            self.rescind(&offer_id, now, false);
        }
    }

    /// Frameworks disconnected for longer than their failover timeout are torn down.
    pub(super) fn expire_frameworks(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|fw| {
                fw.disconnected_at
                    .is_some_and(|at| now.duration_since(at) >= fw.info.failover_timeout)
            })
            .map(|fw| fw.id.clone())
            .collect();
        for id in expired {
            tracing::info!(framework = %id, "failover timeout passed; tearing the framework down");
            let _ = self.teardown(&id, now);
        }
    }

    pub(super) fn teardown(&mut self, framework_id: &str, now: Instant) -> Result<(), ApiError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(ApiError::NotFound(format!(
                "framework {framework_id} is not subscribed"
            )));
        }
        self.record(Change::FrameworkTornDown {
            id: framework_id.to_owned(),
        })?;
        self.registered_frameworks.remove(framework_id);
        let fw = self.frameworks.remove(framework_id).ok_or_else(|| {
            ApiError::NotFound(format!("framework {framework_id} is not subscribed"))
        })?;
        for offer_id in &fw.offers {
            self.offers.remove(offer_id);
        }
        let mut agents = HashSet::new();
        for task in fw.tasks.values() {
            if !task.state.is_terminal() {
                agents.insert(task.info.agent_id.clone());
                *self
                    .counters
                    .terminal
                    .entry(TaskState::Killed.name())
                    .or_default() += 1;
            }
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                let _ = agent.commands.send(AgentCommand::ShutdownFramework {
                    framework_id: framework_id.to_owned(),
                });
            }
        }
        // Everything it held (offers and tasks) returns to the agents.
        self.allocator.remove_framework(framework_id)?;
        self.completed_frameworks
            .push_back((framework_id.to_owned(), fw.info.clone()));
        if self.completed_frameworks.len() > 100 {
            self.completed_frameworks.pop_front();
        }
        let _ = now;
        // Dropping `fw` closes its event stream.
        Ok(())
    }

    // ---- offers ----

    pub(super) fn allocate(&mut self, now: Instant) {
        let started = Instant::now();
        let allocations = self.allocator.allocate(now);
        let _ = self
            .allocation_us
            .record(started.elapsed().as_micros().max(1) as u64);
        let mut by_framework: HashMap<String, Vec<Offer>> = HashMap::new();
        for allocation in allocations {
            let id = self.next("O");
            let (hostname, attributes) = self
                .agents
                .get(&*allocation.agent)
                .map(|a| (a.info.hostname.clone(), a.info.attributes.clone()))
                .unwrap_or_default();
            let offer = Offer {
                id: id.clone(),
                framework_id: allocation.framework.to_string(),
                agent_id: allocation.agent.to_string(),
                hostname,
                role: allocation.role.clone(),
                resources: allocation.resources,
                attributes,
            };
            if let Some(fw) = self.frameworks.get_mut(&*allocation.framework) {
                fw.offers.insert(id.clone());
            }
            self.offers.insert(
                id,
                OfferEntry {
                    offer: offer.clone(),
                    expires: self.config.offer_timeout.map(|t| now + t),
                },
            );
            self.counters.offers_made += 1;
            by_framework
                .entry(allocation.framework.to_string())
                .or_default()
                .push(offer);
        }
        for (framework_id, offers) in by_framework {
            if let Some(fw) = self.frameworks.get(&framework_id) {
                fw.send(Event::Offers(offers));
            }
        }
    }

    /// Takes the offer back: its resources return to the allocator (with a filter when the
    /// framework declined) and, when `tell`, the framework gets RESCIND.
    fn rescind(&mut self, offer_id: &str, now: Instant, tell: bool) {
        let Some(entry) = self.offers.remove(offer_id) else {
            return;
        };
        let offer = entry.offer;
        if let Some(fw) = self.frameworks.get_mut(&offer.framework_id) {
            fw.offers.remove(offer_id);
            if tell {
                fw.send(Event::Rescind {
                    offer_id: offer_id.to_owned(),
                });
            }
        }
        self.counters.offers_rescinded += 1;
        let _ = self.allocator.recover(
            &offer.framework_id,
            &offer.agent_id,
            &offer.role,
            &offer.resources,
            None,
            now,
        );
    }

    pub(super) fn expire_offers(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.expires.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.rescind(&id, now, true);
        }
    }

    /// Removes the framework's offers named; fails (taking nothing) if any is not a live
    /// offer of this framework.
    fn take_offers(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
    ) -> Result<Vec<Offer>, String> {
        for id in offer_ids {
            match self.offers.get(id) {
                Some(entry) if entry.offer.framework_id == framework_id => {}
                Some(_) => return Err(format!("offer {id} belongs to another framework")),
                None => {
                    return Err(format!(
                        "offer {id} is not outstanding (unknown, already used, declined or rescinded)"
                    ));
                }
            }
        }
        let mut unique = HashSet::new();
        if !offer_ids.iter().all(|id| unique.insert(id)) {
            return Err("the same offer is listed twice".into());
        }
        let mut offers = Vec::new();
        for id in offer_ids {
            let entry = self.offers.remove(id).expect("checked above");
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(id);
            }
            offers.push(entry.offer);
        }
        Ok(offers)
    }

    pub(super) fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        let refuse = refuse.unwrap_or(self.config.default_refuse);
        for id in offer_ids {
            let Ok(mut offers) = self.take_offers(framework_id, std::slice::from_ref(id)) else {
                // Declining an offer already gone is harmless (Mesos ignores it too).
                continue;
            };
            let offer = offers.remove(0);
            self.counters.offers_declined += 1;
            self.allocator.recover(
                framework_id,
                &offer.agent_id,
                &offer.role,
                &offer.resources,
                Some(refuse),
                now,
            )?;
        }
        Ok(())
    }

    pub(super) fn accept(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        if offer_ids.is_empty() {
            return Err(ApiError::BadRequest(
                "ACCEPT needs at least one offer id".into(),
            ));
        }
        let refuse = refuse.unwrap_or(self.config.default_refuse);
        let offers = match self.take_offers(framework_id, offer_ids) {
            Ok(offers) => offers,
            Err(why) => {
                self.counters.invalid_calls += 1;
                self.drop_launches(framework_id, &operations, &why, "REASON_INVALID_OFFERS");
                return Ok(());
            }
        };
        let agent_id = offers[0].agent_id.clone();
        let role = offers[0].role.clone();
        if let Some(bad) = offers
            .iter()
            .find(|o| o.agent_id != agent_id || o.role != role)
        {
            let why = format!(
                "offers in one ACCEPT must be for one agent and one role; {} is for agent {} role {}",
                bad.id, bad.agent_id, bad.role
            );
            for offer in &offers {
                let _ = self.allocator.recover(
                    framework_id,
                    &offer.agent_id,
                    &offer.role,
                    &offer.resources,
                    None,
                    now,
                );
            }
            self.drop_launches(framework_id, &operations, &why, "REASON_INVALID_OFFERS");
            return Ok(());
        }
        self.counters.offers_accepted += offers.len() as u64;
        let mut left = Resources::new();
        for offer in &offers {
            left.add(&offer.resources);
        }
        for operation in operations {
            let (tasks, gang) = match operation {
                Operation::Launch(tasks) => (tasks, false),
                Operation::LaunchGroup(tasks) => (tasks, true),
            };
            let mut accepted = Vec::new();
            let mut taken = Resources::new();
            let mut errors = Vec::new();
            for task in tasks {
                match self.validate_task(framework_id, &agent_id, &task, &left.minus(&taken)) {
                    Ok(()) => {
                        taken.add(&task.resources);
                        accepted.push(task);
                    }
                    Err(why) => errors.push((task, why)),
                }
            }
            if gang && !errors.is_empty() {
                // All or nothing: one invalid task fails the whole group.
                let why = errors
                    .iter()
                    .map(|(t, w)| format!("{}: {w}", t.task_id))
                    .collect::<Vec<_>>()
                    .join("; ");
                for task in accepted.drain(..).chain(errors.drain(..).map(|(t, _)| t)) {
                    self.send_master_update(
                        framework_id,
                        &task,
                        TaskState::Error,
                        "REASON_TASK_GROUP_INVALID",
                        &format!("task group refused: {why}"),
                    );
                }
                continue;
            }
            for (task, why) in errors {
                self.send_master_update(
                    framework_id,
                    &task,
                    TaskState::Error,
                    "REASON_TASK_INVALID",
                    &why,
                );
            }
            if accepted.is_empty() {
                continue;
            }
            left.subtract(&taken);
            self.launch(framework_id, &agent_id, &role, accepted);
        }
        if !left.is_empty() {
            self.allocator
                .recover(framework_id, &agent_id, &role, &left, Some(refuse), now)?;
        }
        Ok(())
    }

    fn validate_task(
        &self,
        framework_id: &str,
        agent_id: &str,
        task: &TaskInfo,
        left: &Resources,
    ) -> Result<(), String> {
        if task.task_id.is_empty() {
            return Err("task_id is empty".into());
        }
        if task.agent_id != agent_id {
            return Err(format!(
                "task is for agent {} but the offers are for agent {agent_id}",
                task.agent_id
            ));
        }
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        if fw.tasks.contains_key(&task.task_id) {
            return Err(format!("task id {} is already in use", task.task_id));
        }
        if task.resources.is_empty() {
            return Err("a task needs resources (e.g. cpus and mem)".into());
        }
        if task.command.as_ref().is_none_or(|c| c.value.is_empty()) {
            return Err("a task needs a command with a non-empty value".into());
        }
        if !left.contains(&task.resources) {
            return Err(format!(
                "task asks for {} but the offers hold only {left} after earlier tasks",
                task.resources
            ));
        }
        Ok(())
    }

    fn launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &Arc<str>,
        tasks: Vec<TaskInfo>,
    ) {
        let user = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.user.clone())
            .unwrap_or_default();
        let fw = self.frameworks.get_mut(framework_id).expect("checked");
        for task in &tasks {
            fw.tasks.insert(
                task.task_id.clone(),
                TaskEntry {
                    info: task.clone(),
                    framework_id: framework_id.to_owned(),
                    role: role.clone(),
                    state: TaskState::Staging,
                    latest: None,
                    pending: VecDeque::new(),
                    recovered: false,
                    usage: None,
                    started: SystemTime::now(),
                },
            );
        }
        match self.agents.get(agent_id) {
            Some(agent) if agent.health == AgentHealth::Active => {
                let _ = agent.commands.send(AgentCommand::Launch {
                    framework_id: framework_id.to_owned(),
                    framework_user: user,
                    role: role.to_string(),
                    tasks,
                });
            }
            _ => {
                for task in tasks {
                    self.apply_status(
                        framework_id,
                        TaskStatus {
                            task_id: task.task_id,
                            agent_id: agent_id.to_owned(),
                            state: TaskState::Lost,
                            source: StatusSource::Master,
                            reason: Some("REASON_AGENT_REMOVED".into()),
                            message: Some("the agent is not reachable".into()),
                            timestamp: now_seconds(),
                            uuid: Some(new_uuid()),
                        },
                    );
                }
            }
        }
    }

    /// Tasks of an ACCEPT that cannot be launched because its offers are invalid.
    fn drop_launches(
        &mut self,
        framework_id: &str,
        operations: &[Operation],
        why: &str,
        reason: &str,
    ) {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(FrameworkEntry::partition_aware);
        let state = if partition_aware {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        for op in operations {
            let (Operation::Launch(tasks) | Operation::LaunchGroup(tasks)) = op;
            for task in tasks {
                self.send_master_update(framework_id, task, state, reason, why);
            }
        }
        if operations.is_empty()
            && let Some(fw) = self.frameworks.get(framework_id)
        {
            fw.send(Event::Error {
                message: format!("ACCEPT refused: {why}"),
            });
        }
    }

    /// An update the master itself generates for a task it never launched.
    fn send_master_update(
        &mut self,
        framework_id: &str,
        task: &TaskInfo,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        *self.counters.terminal.entry(state.name()).or_default() += 1;
        if let Some(fw) = self.frameworks.get(framework_id) {
            fw.send(Event::Update(TaskStatus {
                task_id: task.task_id.clone(),
                agent_id: task.agent_id.clone(),
                state,
                source: StatusSource::Master,
                reason: Some(reason.to_owned()),
                message: Some(message.to_owned()),
                timestamp: now_seconds(),
                uuid: None,
            }));
        }
    }

    pub(super) fn revive(
        &mut self,
        framework_id: &str,
        roles: Option<&[String]>,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        self.allocator.revive(framework_id, roles)?;
        Ok(())
    }

    pub(super) fn suppress(
        &mut self,
        framework_id: &str,
        roles: Option<&[String]>,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        self.allocator.suppress(framework_id, roles)?;
        Ok(())
    }

    // ---- tasks ----

    pub(super) fn kill(
        &mut self,
        framework_id: &str,
        task_id: &str,
        grace: Option<Duration>,
    ) -> Result<(), ApiError> {
        let fw = self.framework_mut(framework_id)?;
        match fw.tasks.get(task_id) {
            Some(task) if !task.state.is_terminal() => {
                let grace = grace.or(task.info.kill_grace);
                let agent_id = task.info.agent_id.clone();
                match self.agents.get(&agent_id) {
                    Some(agent) => {
                        let _ = agent.commands.send(AgentCommand::Kill {
                            framework_id: framework_id.to_owned(),
                            task_id: task_id.to_owned(),
                            grace,
                        });
                    }
                    None => {
                        return Err(ApiError::BadRequest(format!(
                            "task {task_id}'s agent {agent_id} is gone"
                        )));
                    }
                }
            }
            Some(_) => {}
            None => {
                // Unknown to the master: tell the framework so it stops waiting.
                let state = if fw.partition_aware() {
                    TaskState::Unknown
                } else {
                    TaskState::Lost
                };
                fw.send(Event::Update(TaskStatus {
                    task_id: task_id.to_owned(),
                    agent_id: String::new(),
                    state,
                    source: StatusSource::Master,
                    reason: Some("REASON_RECONCILIATION".into()),
                    message: Some("kill of a task the master does not know".into()),
                    timestamp: now_seconds(),
                    uuid: None,
                }));
            }
        }
        Ok(())
    }

    pub(super) fn acknowledge(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        uuid: [u8; 16],
    ) -> Result<(), ApiError> {
        let keep = self.config.completed_tasks_kept;
        let fw = self.framework_mut(framework_id)?;
        let Some(task) = fw.tasks.get_mut(task_id) else {
            if let Some(done) = fw.completed.iter_mut().find(|t| t.info.task_id == task_id) {
                done.pending.retain(|s| s.uuid != Some(uuid));
            }
            return Ok(());
        };
        let before = task.pending.len();
        task.pending.retain(|s| s.uuid != Some(uuid));
        if task.pending.len() == before {
            return Err(ApiError::BadRequest(format!(
                "no unacknowledged update of task {task_id} has that uuid"
            )));
        }
        if task.state.is_terminal() && task.pending.is_empty() {
            let done = fw.tasks.remove(task_id).expect("present");
            fw.completed.push_back(done);
            while fw.completed.len() > keep {
                fw.completed.pop_front();
            }
        }
        if let Some(agent) = self.agents.get(agent_id) {
            let _ = agent.commands.send(AgentCommand::Acknowledge {
                task_id: task_id.to_owned(),
                uuid,
            });
        }
        Ok(())
    }

    pub(super) fn reconcile(
        &mut self,
        framework_id: &str,
        tasks: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        let fw = self.framework(framework_id)?;
        let answer = |task: &TaskEntry| {
            let mut status = task.latest.clone().unwrap_or_else(|| TaskStatus {
                task_id: task.info.task_id.clone(),
                agent_id: task.info.agent_id.clone(),
                state: task.state,
                source: StatusSource::Master,
                reason: None,
                message: None,
                timestamp: now_seconds(),
                uuid: None,
            });
            status.uuid = None;
            status.source = StatusSource::Master;
            status.reason = Some("REASON_RECONCILIATION".into());
            status
        };
        if tasks.is_empty() {
            for task in fw.tasks.values() {
                fw.send(Event::Update(answer(task)));
            }
            return Ok(());
        }
        for (task_id, agent_id) in tasks {
            let known = fw
                .tasks
                .get(task_id)
                .or_else(|| fw.completed.iter().find(|t| &t.info.task_id == task_id));
            let status = match known {
                Some(task) => answer(task),
                None => TaskStatus {
                    task_id: task_id.clone(),
                    agent_id: agent_id.clone().unwrap_or_default(),
                    state: if fw.partition_aware() {
                        TaskState::Unknown
                    } else {
                        TaskState::Lost
                    },
                    source: StatusSource::Master,
                    reason: Some("REASON_RECONCILIATION".into()),
                    message: Some("the master does not know this task".into()),
                    timestamp: now_seconds(),
                    uuid: None,
                },
            };
            fw.send(Event::Update(status));
        }
        Ok(())
    }

    pub(super) fn status_update(
        &mut self,
        framework_id: &str,
        status: TaskStatus,
    ) -> Result<(), ApiError> {
        if status.uuid.is_none() {
            return Err(ApiError::BadRequest(
                "agent status updates must carry a uuid".into(),
            ));
        }
        let fw = self.frameworks.get(framework_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "framework {framework_id} is gone; the agent should kill task {}",
                status.task_id
            ))
        })?;
        if !fw.tasks.contains_key(&status.task_id)
            && !fw
                .completed
                .iter()
                .any(|t| t.info.task_id == status.task_id)
        {
            return Err(ApiError::NotFound(format!(
                "task {} of framework {framework_id} is not known",
                status.task_id
            )));
        }
        self.apply_status(framework_id, status);
        Ok(())
    }

    /// Records an update (deduplicated by uuid), frees the task's resources when it reaches a
    /// terminal state, and forwards it to the framework until acknowledged.
    fn apply_status(&mut self, framework_id: &str, status: TaskStatus) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(task) = fw.tasks.get_mut(&status.task_id) else {
            // A retry of an update already acknowledged: forward nothing, ack the agent.
            if let (Some(uuid), Some(agent)) = (status.uuid, self.agents.get(&status.agent_id)) {
                let pending = fw
                    .completed
                    .iter()
                    .any(|t| t.pending.iter().any(|p| p.uuid == Some(uuid)));
                if !pending {
                    let _ = agent.commands.send(AgentCommand::Acknowledge {
                        task_id: status.task_id.clone(),
                        uuid,
                    });
                }
            }
            return;
        };
        let duplicate = task.pending.iter().any(|p| p.uuid == status.uuid);
        if !duplicate {
            // A terminal state is final; later non-terminal updates do not reopen it.
            if !task.state.is_terminal() {
                task.state = status.state;
            }
            task.latest = Some(status.clone());
            task.pending.push_back(status.clone());
        }
        let free = task.state.is_terminal() && !task.recovered;
        if free {
            task.recovered = true;
            *self.counters.terminal.entry(task.state.name()).or_default() += 1;
        }
        let (agent_id, role, resources) = (
            task.info.agent_id.clone(),
            task.role.clone(),
            task.info.resources.clone(),
        );
        fw.send(Event::Update(status));
        if free {
            let _ = self.allocator.recover(
                framework_id,
                &agent_id,
                &role,
                &resources,
                None,
                Instant::now(),
            );
        }
    }

    pub(super) fn task_usage(&mut self, agent_id: &str, task_id: &str, usage: TaskUsage) {
        for fw in self.frameworks.values_mut() {
            if let Some(task) = fw.tasks.get_mut(task_id)
                && task.info.agent_id == agent_id
            {
                task.usage = Some(usage);
                return;
            }
        }
    }

    // ---- agents ----

    pub(super) fn register_agent(
        &mut self,
        info: AgentInfo,
        running: Vec<RunningTask>,
        now: Instant,
    ) -> Result<AgentLink, ApiError> {
        if info.hostname.is_empty() {
            return Err(ApiError::BadRequest("agent hostname is empty".into()));
        }
        if info.resources.is_empty() {
            return Err(ApiError::BadRequest(
                "an agent must offer some resources (e.g. cpus:4;mem:8192)".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let agent_id = match info.id.clone() {
            Some(id) if self.agents.contains_key(&id) => {
                // Re-registration: a restarted agent or one back from a partition.
                let agent = self.agents.get_mut(&id).expect("checked");
                agent.commands = tx;
                agent.last_seen = now;
                let was_unreachable = matches!(agent.health, AgentHealth::Unreachable { .. });
                agent.health = AgentHealth::Active;
                agent.info.hostname = info.hostname.clone();
                if was_unreachable {
                    let _ = self.allocator.set_agent_active(&id, true);
                }
                self.recover_frameworks(&running, now);
                self.lose_unreported_tasks(&id, &running);
                for task in running {
                    let framework_id = task.framework_id.clone();
                    self.readopt(&id, task, framework_id);
                }
                return Ok(AgentLink {
                    agent_id: id,
                    commands: rx,
                });
            }
            Some(id) => id,
            None => self.next("S"),
        };
        if self.recovered_agents.remove(&agent_id).is_none() {
            self.record(Change::AgentAdmitted {
                id: agent_id.clone(),
                record: AgentRecord {
                    hostname: info.hostname.clone(),
                    resources: info.resources.to_string(),
                },
            })?;
        }
        self.recover_frameworks(&running, now);
        let mut used = Vec::new();
        for task in &running {
            if self.frameworks.contains_key(&task.framework_id) {
                used.push((
                    Arc::<str>::from(task.framework_id.as_str()),
                    Arc::<str>::from(task.role.as_str()),
                    task.info.resources.clone(),
                ));
            }
        }
        self.allocator
            .add_agent(&agent_id, info.resources.clone(), &used)?;
        self.agents.insert(
            agent_id.clone(),
            AgentEntry {
                id: agent_id.clone(),
                info: AgentInfo {
                    id: Some(agent_id.clone()),
                    ..info
                },
                commands: tx,
                last_seen: now,
                health: AgentHealth::Active,
                registered: SystemTime::now(),
            },
        );
        for task in running {
            let framework_id = task.framework_id.clone();
            self.readopt(&agent_id, task, framework_id);
        }
        Ok(AgentLink {
            agent_id,
            commands: rx,
        })
    }

    /// Frameworks the registry knows, whose tasks an agent reports before the framework has
    /// re-subscribed to this master (after a master restart), are recreated disconnected: their
    /// tasks keep running and are charged, and the framework has `framework_recovery_timeout`
    /// to come back before it is torn down.
    fn recover_frameworks(&mut self, running: &[RunningTask], now: Instant) {
        for task in running {
            let id = &task.framework_id;
            if self.frameworks.contains_key(id) {
                continue;
            }
            let Some(record) = self.registered_frameworks.get(id).cloned() else {
                continue;
            };
            let mut roles = record.roles.clone();
            for t in running.iter().filter(|t| &t.framework_id == id) {
                if !roles.contains(&t.role) {
                    roles.push(t.role.clone());
                }
            }
            let spec = FrameworkSpec {
                roles: roles.clone(),
                suppressed_roles: Vec::new(),
                gpu_aware: false,
            };
            if self.allocator.add_framework(id, &spec).is_err() {
                continue;
            }
            let _ = self.allocator.set_framework_active(id, false);
            tracing::info!(framework = %id, "recovered from the registry; waiting for it to re-subscribe");
            self.frameworks.insert(
                id.clone(),
                FrameworkEntry {
                    id: id.clone(),
                    info: FrameworkInfo {
                        id: Some(id.clone()),
                        user: record.user,
                        name: record.name,
                        roles,
                        principal: record.principal,
                        failover_timeout: self.config.framework_recovery_timeout,
                        capabilities: if spec.roles.len() > 1 {
                            vec!["MULTI_ROLE".into()]
                        } else {
                            Vec::new()
                        },
                        ..Default::default()
                    },
                    stream_id: None,
                    events: None,
                    disconnected_at: Some(now),
                    registered: SystemTime::now(),
                    offers: HashSet::new(),
                    tasks: HashMap::new(),
                    completed: VecDeque::new(),
                },
            );
        }
    }

    /// A task an agent reports running when it (re-)registers.
    fn readopt(&mut self, agent_id: &str, task: RunningTask, framework_id: String) {
        let Some(fw) = self.frameworks.get_mut(&framework_id) else {
            if let Some(agent) = self.agents.get(agent_id) {
                let _ = agent
                    .commands
                    .send(AgentCommand::ShutdownFramework { framework_id });
            }
            return;
        };
        let entry = fw
            .tasks
            .entry(task.info.task_id.clone())
            .or_insert_with(|| TaskEntry {
                info: task.info.clone(),
                framework_id: framework_id.clone(),
                role: Arc::from(task.role.as_str()),
                state: task.state,
                latest: None,
                pending: VecDeque::new(),
                recovered: false,
                usage: None,
                started: SystemTime::now(),
            });
        if entry.state == TaskState::Unreachable {
            entry.state = task.state;
        }
    }

    pub(super) fn agent_commands(
        &self,
        agent_id: &str,
    ) -> Option<mpsc::UnboundedSender<AgentCommand>> {
        self.agents.get(agent_id).map(|a| a.commands.clone())
    }

    /// The command channel of the reachable agent on `hostname`.
    pub(super) fn agent_on_host(
        &self,
        hostname: &str,
    ) -> Result<(String, mpsc::UnboundedSender<AgentCommand>), ApiError> {
        let agent = self
            .agents
            .values()
            .find(|a| a.info.hostname == hostname)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no agent on host {hostname:?} is attached to the master (an agent run \
                     with --no-tasks does not attach)"
                ))
            })?;
        if !matches!(agent.health, AgentHealth::Active) {
            return Err(ApiError::Unavailable(format!(
                "the agent on {hostname} is unreachable; try again when it is back"
            )));
        }
        Ok((agent.id.clone(), agent.commands.clone()))
    }

    pub(super) fn agent_heartbeat(&mut self, agent_id: &str, now: Instant) -> Result<(), ApiError> {
        let agent = self.agents.get_mut(agent_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "agent {agent_id} is not registered; register again"
            ))
        })?;
        agent.last_seen = now;
        Ok(())
    }

    /// Silent agents become unreachable (their tasks TASK_UNREACHABLE); agents unreachable for
    /// `agent_removal_timeout` are removed (their tasks TASK_LOST).
    pub(super) fn check_agents(&mut self, now: Instant) {
        let ping = self.config.agent_ping_timeout;
        let removal = self.config.agent_removal_timeout;
        let mut newly_unreachable = Vec::new();
        let mut removed = Vec::new();
        for agent in self.agents.values_mut() {
            match agent.health {
                AgentHealth::Active if now.duration_since(agent.last_seen) >= ping => {
                    agent.health = AgentHealth::Unreachable { since: now };
                    newly_unreachable.push(agent.id.clone());
                }
                AgentHealth::Unreachable { since } if now.duration_since(since) >= removal => {
                    removed.push(agent.id.clone());
                }
                _ => {}
            }
        }
        for agent_id in newly_unreachable {
            tracing::warn!(agent = %agent_id, "agent missed its heartbeats; marking it unreachable");
            let _ = self.allocator.set_agent_active(&agent_id, false);
            self.rescind_agent_offers(&agent_id, now);
            self.agent_tasks_to(
                &agent_id,
                TaskState::Unreachable,
                "REASON_AGENT_UNREACHABLE",
            );
        }
        for agent_id in removed {
            tracing::warn!(agent = %agent_id, "agent unreachable too long; removing it");
            self.agent_tasks_to(&agent_id, TaskState::Lost, "REASON_AGENT_REMOVED");
            for fw in self.frameworks.values() {
                fw.send(Event::Failure {
                    agent_id: agent_id.clone(),
                });
            }
            self.agents.remove(&agent_id);
            let _ = self.allocator.remove_agent(&agent_id);
            if let Err(e) = self.record(Change::AgentRemoved {
                id: agent_id.clone(),
            }) {
                tracing::error!(agent = %agent_id, %e, "agent removed but not from the registry");
            }
        }
    }

    fn rescind_agent_offers(&mut self, agent_id: &str, now: Instant) {
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.rescind(&id, now, true);
        }
    }

    /// A re-registering agent that does not report a task the master has on it has lost it
    /// (its process restarted and cleaned up what it could not recover): TASK_LOST, as Mesos
    /// does with `REASON_AGENT_RESTARTED`, and the task's resources return to the agent.
    fn lose_unreported_tasks(&mut self, agent_id: &str, reported: &[RunningTask]) {
        let reported: HashSet<(&str, &str)> = reported
            .iter()
            .map(|r| (r.framework_id.as_str(), r.info.task_id.as_str()))
            .collect();
        let mut lost = Vec::new();
        for fw in self.frameworks.values() {
            for task in fw.tasks.values() {
                if task.info.agent_id == agent_id
                    && !task.state.is_terminal()
                    && !reported.contains(&(fw.id.as_str(), task.info.task_id.as_str()))
                {
                    lost.push((fw.id.clone(), task.info.task_id.clone()));
                }
            }
        }
        for (framework_id, task_id) in lost {
            tracing::warn!(agent = %agent_id, task = %task_id, "agent re-registered without the task; it is lost");
            self.apply_status(
                &framework_id,
                TaskStatus {
                    task_id,
                    agent_id: agent_id.to_owned(),
                    state: TaskState::Lost,
                    source: StatusSource::Master,
                    reason: Some("REASON_AGENT_RESTARTED".to_owned()),
                    message: Some(format!(
                        "agent {agent_id} re-registered without this task (the agent restarted)"
                    )),
                    timestamp: now_seconds(),
                    uuid: Some(new_uuid()),
                },
            );
        }
    }

    fn agent_tasks_to(&mut self, agent_id: &str, state: TaskState, reason: &str) {
        let mut updates = Vec::new();
        for fw in self.frameworks.values() {
            for task in fw.tasks.values() {
                if task.info.agent_id == agent_id && !task.state.is_terminal() {
                    updates.push((fw.id.clone(), task.info.task_id.clone()));
                }
            }
        }
        for (framework_id, task_id) in updates {
            self.apply_status(
                &framework_id,
                TaskStatus {
                    task_id,
                    agent_id: agent_id.to_owned(),
                    state,
                    source: StatusSource::Master,
                    reason: Some(reason.to_owned()),
                    message: Some(format!("agent {agent_id} is not reachable")),
                    timestamp: now_seconds(),
                    uuid: Some(new_uuid()),
                },
            );
        }
    }

    pub(super) fn agent_available(&self, agent_id: &str) -> Option<Resources> {
        self.allocator.agent_available(agent_id).cloned()
    }

    // ---- views ----

    pub(super) fn snapshot(&self) -> StateSnapshot {
        let task_view = |t: &TaskEntry| TaskView {
            id: t.info.task_id.clone(),
            name: t.info.name.clone(),
            framework_id: t.framework_id.clone(),
            agent_id: t.info.agent_id.clone(),
            role: t.role.to_string(),
            state: t.state,
            resources: t.info.resources.clone(),
            labels: t.info.labels.clone(),
            statuses: t.latest.iter().cloned().collect(),
            usage: t.usage.clone(),
            started: t.started,
        };
        let mut frameworks: Vec<FrameworkView> = self
            .frameworks
            .values()
            .map(|fw| {
                let mut used = Resources::new();
                for t in fw.tasks.values().filter(|t| !t.state.is_terminal()) {
                    used.add(&t.info.resources);
                }
                let mut offered = Resources::new();
                for id in &fw.offers {
                    if let Some(o) = self.offers.get(id) {
                        offered.add(&o.offer.resources);
                    }
                }
                FrameworkView {
                    id: fw.id.clone(),
                    info: fw.info.clone(),
                    active: fw.events.is_some(),
                    connected: fw.events.is_some(),
                    registered: fw.registered,
                    dominant_share: self.allocator.framework_share(&fw.id).unwrap_or(0.0),
                    used,
                    offered,
                    tasks: fw.tasks.values().map(task_view).collect(),
                    completed_tasks: fw.completed.iter().map(task_view).collect(),
                    offers: fw
                        .offers
                        .iter()
                        .filter_map(|id| self.offers.get(id).map(|o| o.offer.clone()))
                        .collect(),
                }
            })
            .collect();
        frameworks.sort_by(|a, b| a.id.cmp(&b.id));
        // One pass over tasks and offers, not one per agent.
        let mut used_by: HashMap<&str, Resources> = HashMap::new();
        for t in self.frameworks.values().flat_map(|fw| fw.tasks.values()) {
            if !t.state.is_terminal() {
                used_by
                    .entry(t.info.agent_id.as_str())
                    .or_default()
                    .add(&t.info.resources);
            }
        }
        let mut offered_by: HashMap<&str, Resources> = HashMap::new();
        for o in self.offers.values() {
            offered_by
                .entry(o.offer.agent_id.as_str())
                .or_default()
                .add(&o.offer.resources);
        }
        let mut agents: Vec<AgentView> = self
            .agents
            .values()
            .map(|a| {
                let total = a.info.resources.clone();
                let available = self
                    .allocator
                    .agent_available(&a.id)
                    .cloned()
                    .unwrap_or_default();
                let used = used_by.remove(a.id.as_str()).unwrap_or_default();
                let offered = offered_by.remove(a.id.as_str()).unwrap_or_default();
                AgentView {
                    id: a.id.clone(),
                    hostname: a.info.hostname.clone(),
                    attributes: a.info.attributes.clone(),
                    active: a.health == AgentHealth::Active,
                    registered: a.registered,
                    total,
                    used,
                    offered,
                    available,
                }
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        StateSnapshot {
            master_id: self.master_id.clone(),
            uptime: self.started.elapsed(),
            frameworks,
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|(id, info)| (id.clone(), info.clone()))
                .collect(),
            agents,
            recovered_agents: self
                .recovered_agents
                .iter()
                .map(|(id, r)| (id.clone(), r.hostname.clone()))
                .collect(),
            roles: self
                .allocator
                .role_shares()
                .into_iter()
                .map(|(role, weight, share)| (role.to_string(), weight, share))
                .collect(),
        }
    }

    pub(super) fn metrics(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        let mut put = |name: &str, value: f64| out.push((name.to_owned(), value));
        put("master/elected", 1.0);
        put("master/uptime_secs", self.started.elapsed().as_secs_f64());
        let active_agents = self
            .agents
            .values()
            .filter(|a| a.health == AgentHealth::Active)
            .count();
        put("master/slaves_active", active_agents as f64);
        put("master/slaves_connected", active_agents as f64);
        put(
            "master/slaves_unreachable",
            (self.agents.len() - active_agents) as f64,
        );
        let connected = self
            .frameworks
            .values()
            .filter(|f| f.events.is_some())
            .count();
        put("master/frameworks_active", connected as f64);
        put("master/frameworks_connected", connected as f64);
        put(
            "master/frameworks_disconnected",
            (self.frameworks.len() - connected) as f64,
        );
        put(
            "master/frameworks_inactive",
            (self.frameworks.len() - connected) as f64,
        );
        put("master/outstanding_offers", self.offers.len() as f64);
        let mut live: BTreeMap<TaskState, u64> = BTreeMap::new();
        for fw in self.frameworks.values() {
            for t in fw.tasks.values() {
                *live.entry(t.state).or_default() += 1;
            }
        }
        for state in [
            TaskState::Staging,
            TaskState::Starting,
            TaskState::Running,
            TaskState::Killing,
            TaskState::Unreachable,
        ] {
            let name = format!("master/tasks_{}", &state.name()[5..].to_lowercase());
            put(&name, live.get(&state).copied().unwrap_or(0) as f64);
        }
        for state in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            let name = format!("master/tasks_{}", &state.name()[5..].to_lowercase());
            put(
                &name,
                self.counters
                    .terminal
                    .get(state.name())
                    .copied()
                    .unwrap_or(0) as f64,
            );
        }
        put("master/offers_made", self.counters.offers_made as f64);
        put(
            "master/offers_declined",
            self.counters.offers_declined as f64,
        );
        put(
            "master/offers_accepted",
            self.counters.offers_accepted as f64,
        );
        put(
            "master/offers_rescinded",
            self.counters.offers_rescinded as f64,
        );
        put("master/invalid_calls", self.counters.invalid_calls as f64);
        let h = &self.allocation_us;
        put("allocator/allocation_runs", h.len() as f64);
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            put(
                &format!("allocator/allocation_run_ms/{name}"),
                h.value_at_quantile(q) as f64 / 1000.0,
            );
        }
        put("allocator/allocation_run_ms/max", h.max() as f64 / 1000.0);
        out
    }
}

/// A read-only copy of the master's state for `/master/state` and the TUI.
#[derive(Clone, Debug)]
pub struct StateSnapshot {
    pub master_id: String,
    pub uptime: Duration,
    pub frameworks: Vec<FrameworkView>,
    pub completed_frameworks: Vec<(String, FrameworkInfo)>,
    pub agents: Vec<AgentView>,
    /// Agents the registry knows that have not re-registered since the master started:
    /// (id, hostname).
    pub recovered_agents: Vec<(String, String)>,
    /// (role, weight, weighted dominant share)
    pub roles: Vec<(String, f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct FrameworkView {
    pub id: String,
    pub info: FrameworkInfo,
    pub active: bool,
    pub connected: bool,
    pub registered: SystemTime,
    pub dominant_share: f64,
    pub used: Resources,
    pub offered: Resources,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
    pub offers: Vec<Offer>,
}

#[derive(Clone, Debug)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub role: String,
    pub state: TaskState,
    pub resources: Resources,
    pub labels: Labels,
    pub statuses: Vec<TaskStatus>,
    pub usage: Option<TaskUsage>,
    pub started: SystemTime,
}

#[derive(Clone, Debug)]
pub struct AgentView {
    pub id: String,
    pub hostname: String,
    pub attributes: Labels,
    pub active: bool,
    pub registered: SystemTime,
    pub total: Resources,
    pub used: Resources,
    pub offered: Resources,
    pub available: Resources,
}
