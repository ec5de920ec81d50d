//! The cluster master's core: agents, frameworks, offers and tasks, and the rules between them.
//!
//! One state behind one lock; every operation is short and synchronous. The API layers (Mesos
//! v1 HTTP in [`crate::mesos_api`], gRPC for agents) call these operations and carry their
//! results; events to frameworks and commands to agents leave through unbounded channels, so
//! no slow client ever holds the lock. A background task ([`Cluster::run`]) allocates on an
//! interval and after events, rescinds expired offers and marks silent agents unreachable.
//!
//! Status updates are delivered at least once: each carries a uuid, stays pending until the
//! framework acknowledges it, is re-sent when the framework re-subscribes, and the agent is
//! told when to stop retrying it.
//!
//! A master acts only in its [`Role::Leading`] role: a single master always, a
//! highly-available one while elected (`crate::election`). Each term starts from the
//! registry with a fresh state ([`Cluster::lead`]); when a term ends ([`Cluster::follow`])
//! the state is dropped whole, which closes every framework stream and agent link of that
//! term, and calls are answered with the leader's whereabouts ([`ApiError::NotLeader`]).
pub mod config;
mod error;
pub mod registry;
pub mod types;

mod state;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use orca_leader::MasterInfo;

use orca_proto::cluster::v1::{ContainerCommand, ContainerReply};
use tokio::sync::{Notify, mpsc};

pub use config::{ClusterConfig, RoleConfig};
pub use error::ApiError;
pub use registry::DrainState;
use state::State;
pub use state::{
    AgentView, ClusterEvent, DrainView, FrameworkView, InverseOfferAnswer, MaintenanceStatus,
    StateSnapshot, TaskView,
};
pub use types::*;

use crate::resources::Resources;

/// A framework's live subscription: its id, the stream id every later call must carry, and
/// the events for it.
#[derive(Debug)]
pub struct Subscription {
    pub framework_id: String,
    pub stream_id: String,
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// Marks a framework disconnected when dropped: the API layers keep one inside each event
/// stream, so a client that goes away (or a stream replaced by a new SUBSCRIBE) is noticed.
#[derive(Debug)]
pub struct ConnectionGuard {
    cluster: Cluster,
    framework_id: String,
    stream_id: String,
}

impl ConnectionGuard {
    pub fn new(cluster: &Cluster, subscription: &Subscription) -> Self {
        ConnectionGuard {
            cluster: cluster.clone(),
            framework_id: subscription.framework_id.clone(),
            stream_id: subscription.stream_id.clone(),
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.cluster
            .disconnected(&self.framework_id, &self.stream_id);
    }
}

/// An agent's registration: its id, the commands for it, and the term it belongs to (the
/// link must end when the term does).
#[derive(Debug)]
pub struct AgentLink {
    pub agent_id: String,
    pub commands: mpsc::UnboundedReceiver<AgentCommand>,
    pub term: u64,
}

/// What this master does now.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Acts: the only master, or the elected leader (since `elected`).
    Leading { elected: SystemTime },
    /// Elected, but its ZooKeeper session is disconnected: acts on nothing until the session
    /// is back (or steps down when it is lost).
    Suspended { elected: SystemTime },
    /// Another master leads (`None`: none is known now).
    Following { leader: Option<Box<MasterInfo>> },
}

/// Cheap to clone; all clones share one master.
#[derive(Clone, Debug)]
pub struct Cluster {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    containers: Arc<Mutex<ContainerRequests>>,
    role: Arc<RwLock<Role>>,
    /// Counts terms: a new one each time this master starts leading.
    term: Arc<AtomicU64>,
    config: Arc<ClusterConfig>,
    master_id: Arc<str>,
    /// This master as Mesos describes it (set once its listeners are bound).
    info: Arc<RwLock<Option<MasterInfo>>>,
    started: SystemTime,
}

/// Operator calls on containers waiting for their agent's replies.
#[derive(Debug, Default)]
struct ContainerRequests {
    next_id: u64,
    /// request id → (agent, where the replies go)
    pending: HashMap<u64, (String, mpsc::UnboundedSender<ContainerReply>)>,
}

impl Cluster {
    /// A single master whose registry is the file `config.registry` names (in memory
    /// without one). It leads from the start.
    pub fn new(config: ClusterConfig) -> Result<Self, ApiError> {
        let store: Box<dyn registry::RegistryStore> = match &config.registry {
            Some(path) => Box::new(
                registry::FileStore::open(path)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?,
            ),
            None => Box::<registry::MemoryStore>::default(),
        };
        Self::with_store(config, store)
    }

    /// A single master that keeps its registry in `store` (and recovers from what is there).
    pub fn with_store(
        config: ClusterConfig,
        store: Box<dyn registry::RegistryStore>,
    ) -> Result<Self, ApiError> {
        let registry = store
            .load()
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let cluster = Self::follower(config)?;
        cluster.lead(store, registry)?;
        Ok(cluster)
    }

    /// A master that follows until elected ([`Cluster::lead`]).
    pub fn follower(config: ClusterConfig) -> Result<Self, ApiError> {
        let master_id: Arc<str> = config
            .master_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            .into();
        let idle = State::new(
            config.clone(),
            master_id.to_string(),
            Box::<registry::MemoryStore>::default(),
            registry::Registry::default(),
        )?;
        Ok(Cluster {
            state: Arc::new(Mutex::new(idle)),
            wake: Arc::new(Notify::new()),
            containers: Arc::default(),
            role: Arc::new(RwLock::new(Role::Following { leader: None })),
            term: Arc::new(AtomicU64::new(0)),
            config: Arc::new(config),
            master_id,
            info: Arc::default(),
            started: SystemTime::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- leadership ----

    /// Starts a term: a fresh state recovered from `registry`, kept in `store`, and this
    /// master acting on it.
    pub fn lead(
        &self,
        store: Box<dyn registry::RegistryStore>,
        registry: registry::Registry,
    ) -> Result<(), ApiError> {
        let state = State::new(
            (*self.config).clone(),
            self.master_id.to_string(),
            store,
            registry,
        )?;
        let previous = std::mem::replace(&mut *self.lock(), state);
        self.term.fetch_add(1, Ordering::SeqCst);
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = Role::Leading {
            elected: SystemTime::now(),
        };
        drop(previous);
        self.changed();
        Ok(())
    }

    /// Ends this master's term, if it has one (every framework stream and agent link of it
    /// closes), and follows `leader`.
    pub fn follow(&self, leader: Option<MasterInfo>) {
        let leading = {
            let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
            let leading = !matches!(*role, Role::Following { .. });
            *role = Role::Following {
                leader: leader.map(Box::new),
            };
            leading
        };
        if leading {
            self.term.fetch_add(1, Ordering::SeqCst);
            let idle = State::new(
                (*self.config).clone(),
                self.master_id.to_string(),
                Box::<registry::MemoryStore>::default(),
                registry::Registry::default(),
            )
            .expect("an empty registry loads");
            let ended = std::mem::replace(&mut *self.lock(), idle);
            drop(ended);
            self.containers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending
                .clear();
            tracing::warn!("this master's term ended; it follows now");
        }
    }

    /// The leader lost its ZooKeeper connection: it stops acting until [`Cluster::resume`].
    pub fn suspend(&self) {
        let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
        if let Role::Leading { elected } = *role {
            *role = Role::Suspended { elected };
        }
    }

    /// The connection is back with the same session: the leader acts again.
    pub fn resume(&self) {
        let mut role = self.role.write().unwrap_or_else(|p| p.into_inner());
        if let Role::Suspended { elected } = *role {
            *role = Role::Leading { elected };
            drop(role);
            self.changed();
        }
    }

    pub fn role(&self) -> Role {
        self.role.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_leading(&self) -> bool {
        matches!(
            *self.role.read().unwrap_or_else(|p| p.into_inner()),
            Role::Leading { .. }
        )
    }

    /// The current term (agent links of an older one end).
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    /// Ok while this master may act; otherwise where the leader is.
    fn acting(&self) -> Result<(), ApiError> {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Leading { .. } => Ok(()),
            Role::Suspended { .. } => Err(ApiError::Unavailable(
                "the leading master lost its ZooKeeper connection and acts on nothing until it \
                 is back; retry shortly"
                    .into(),
            )),
            Role::Following { leader } => Err(ApiError::NotLeader(leader.clone())),
        }
    }

    /// Sets how this master describes itself (Mesos `MasterInfo`).
    pub fn set_info(&self, info: MasterInfo) {
        *self.info.write().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }

    pub fn info(&self) -> Option<MasterInfo> {
        self.info.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The leading master's info: this one's while it leads.
    pub fn leader_info(&self) -> Option<MasterInfo> {
        match self.role() {
            Role::Leading { .. } | Role::Suspended { .. } => self.info(),
            Role::Following { leader } => leader.map(|l| *l),
        }
    }

    pub fn start_time(&self) -> SystemTime {
        self.started
    }

    /// When this master's current term began (`None` while it follows).
    pub fn elected_time(&self) -> Option<SystemTime> {
        match self.role() {
            Role::Leading { elected } | Role::Suspended { elected } => Some(elected),
            Role::Following { .. } => None,
        }
    }

    /// Runs allocation, offer expiry and agent health checks until the cluster is dropped by
    /// every other holder. Allocates on `allocation_interval` and soon after any event.
    pub async fn run(self) {
        let (interval, batch) = {
            let s = self.lock();
            (s.config.allocation_interval, s.config.allocation_batch)
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.wake.notified() => {
                    tokio::time::sleep(batch).await;
                }
            }
            if Arc::strong_count(&self.state) == 1 {
                return;
            }
            if self.is_leading() {
                self.tick(Instant::now());
            }
        }
    }

    /// One round of housekeeping and allocation at `now` (tests drive this directly).
    pub fn tick(&self, now: Instant) {
        let mut s = self.lock();
        s.expire_offers(now);
        s.check_agents(now);
        s.check_drains(now);
        s.expire_frameworks(now);
        s.allocate(now);
        s.inverse_offer_round(now);
        // Removals recorded here answer nobody: the store writes them in order regardless.
        drop(s.take_writes());
    }

    /// Waits until the registry writes of an operation are durable.
    async fn durable(writes: Vec<registry::Durable>) -> Result<(), ApiError> {
        for write in writes {
            write.wait().await.map_err(|e| {
                ApiError::Unavailable(format!("the master could not record this change: {e}"))
            })?;
        }
        Ok(())
    }

    fn changed(&self) {
        self.wake.notify_one();
    }

    // ---- frameworks ----

    /// Subscribes (or re-subscribes) a framework; SUBSCRIBED is queued first on the returned
    /// events, which leave only once the framework is durably registered.
    ///
    /// `principal` is the one the caller authenticated as (`None`: unauthenticated); a
    /// principal written into `info` must equal it, and a framework failing over must be
    /// subscribed by the principal it has.
    pub async fn subscribe(
        &self,
        info: FrameworkInfo,
        principal: Option<&str>,
    ) -> Result<Subscription, ApiError> {
        let term = self.term();
        self.acting()?;
        let (sub, writes) = {
            let mut s = self.lock();
            let sub = s.subscribe(info, principal, Instant::now());
            (sub, s.take_writes())
        };
        let sub = sub?;
        Self::durable(writes).await?;
        self.same_term(term)?;
        self.changed();
        Ok(sub)
    }

    /// The term `term` is still this master's and it acts: an operation that began in it may
    /// answer (one whose term ended meanwhile was applied to a state already dropped).
    fn same_term(&self, term: u64) -> Result<(), ApiError> {
        self.acting()?;
        if self.term() == term {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "this master's term ended during the call; retry with the leader".into(),
            ))
        }
    }

    /// The framework's event stream ended (connection closed).
    pub fn disconnected(&self, framework_id: &str, stream_id: &str) {
        self.lock()
            .disconnected(framework_id, stream_id, Instant::now());
        self.changed();
    }

    /// Checks that a call comes from the framework's current subscription and, when the
    /// caller authenticated, from the principal that subscribed it.
    pub fn check_stream(
        &self,
        framework_id: &str,
        stream_id: Option<&str>,
        principal: Option<&str>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        let s = self.lock();
        s.check_stream(framework_id, stream_id)?;
        // Mesos answers 400 with this message.
        match (principal, s.framework_principal(framework_id)) {
            (Some(caller), owner) if owner != Some(caller) => Err(ApiError::BadRequest(format!(
                "Authenticated principal '{caller}' does not match principal '{}' set in \
                 `FrameworkInfo`",
                owner.unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    pub fn accept(
        &self,
        framework_id: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        refuse: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        let result =
            self.lock()
                .accept(framework_id, offer_ids, operations, refuse, Instant::now());
        self.changed();
        result
    }

    pub fn decline(
        &self,
        framework_id: &str,
        offer_ids: &[String],
        refuse: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        let result = self
            .lock()
            .decline(framework_id, offer_ids, refuse, Instant::now());
        self.changed();
        result
    }

    pub fn revive(&self, framework_id: &str, roles: Option<&[String]>) -> Result<(), ApiError> {
        self.acting()?;
        let result = self.lock().revive(framework_id, roles);
        self.changed();
        result
    }

    /// Mesos UPDATE_FRAMEWORK (see the state's `update_framework`).
    pub async fn update_framework(
        &self,
        framework_id: &str,
        info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        let (result, writes) = {
            let mut s = self.lock();
            let result = s.update_framework(framework_id, info, suppressed_roles, Instant::now());
            (result, s.take_writes())
        };
        self.changed();
        result?;
        Self::durable(writes).await
    }

    pub fn suppress(&self, framework_id: &str, roles: Option<&[String]>) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().suppress(framework_id, roles)
    }

    pub fn kill(
        &self,
        framework_id: &str,
        task_id: &str,
        agent_id: Option<&str>,
        grace: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().kill(framework_id, task_id, agent_id, grace)
    }

    /// Scheduler SHUTDOWN: see `State::shutdown_executor`.
    pub fn shutdown_executor(
        &self,
        framework_id: &str,
        executor_id: &str,
        agent_id: &str,
    ) -> Result<(), ApiError> {
        self.acting()?;
        self.lock()
            .shutdown_executor(framework_id, executor_id, agent_id)
    }

    pub fn acknowledge(
        &self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        uuid: [u8; 16],
    ) -> Result<(), ApiError> {
        self.acting()?;
        self.lock()
            .acknowledge(framework_id, agent_id, task_id, uuid)
    }

    /// Explicit reconciliation for the listed (task, agent) pairs, implicit when empty.
    pub fn reconcile(
        &self,
        framework_id: &str,
        tasks: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().reconcile(framework_id, tasks)
    }

    /// Whether an operator call of `principal` may do `action` to a framework or an agent:
    /// `TeardownFrameworks` and `KillTasks` (`target`: the framework id) are checked against
    /// the framework's principal, `ContainerActions` against the hostname given, agent actions
    /// against the agent's hostname (Mesos's ACL objects). A 403 when not.
    pub fn authorize_operator(
        &self,
        action: orca_auth::Action,
        principal: Option<&str>,
        target: &str,
    ) -> Result<(), ApiError> {
        use orca_auth::Action;
        if self.config.acls.is_none() {
            return Ok(());
        }
        self.acting()?;
        let s = self.lock();
        // A target that does not exist is left to the action, which says so as it would
        // without ACLs.
        let object = match action {
            Action::TeardownFrameworks | Action::KillTasks => match s.framework_owner(target) {
                Some(owner) => owner,
                None => return Ok(()),
            },
            Action::DrainAgents | Action::DeactivateAgents | Action::ReactivateAgents => {
                match s.agent_hostname(target) {
                    Some(hostname) => Some(hostname),
                    None => return Ok(()),
                }
            }
            Action::RegisterFrameworks | Action::RunTasks | Action::ContainerActions => {
                Some(target.to_owned())
            }
        };
        s.authorize(action, principal, object.as_deref())
    }

    pub async fn teardown(&self, framework_id: &str) -> Result<(), ApiError> {
        self.acting()?;
        let (result, writes) = {
            let mut s = self.lock();
            let result = s.teardown(framework_id, Instant::now());
            (result, s.take_writes())
        };
        self.changed();
        result?;
        Self::durable(writes).await
    }

    // ---- roles ----

    /// Mesos `UPDATE_WEIGHTS`: all or none, durable before it returns.
    pub async fn update_weights(&self, weights: Vec<(String, f64)>) -> Result<(), ApiError> {
        self.acting()?;
        let (result, writes) = {
            let mut s = self.lock();
            let result = s.update_weights(&weights);
            (result, s.take_writes())
        };
        result?;
        Self::durable(writes).await?;
        self.changed();
        Ok(())
    }

    /// Mesos `UPDATE_QUOTA`: all or none, durable before it returns.
    pub async fn update_quotas(
        &self,
        quotas: Vec<(String, crate::allocator::Quota)>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        let (result, writes) = {
            let mut s = self.lock();
            let result = s.update_quotas(&quotas);
            (result, s.take_writes())
        };
        result?;
        Self::durable(writes).await?;
        self.changed();
        Ok(())
    }

    /// Roles whose weight is not the default 1.
    pub fn weights(&self) -> Result<std::collections::BTreeMap<String, f64>, ApiError> {
        self.acting()?;
        Ok(self.lock().weights())
    }

    /// Every role with a quota.
    pub fn quotas(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::allocator::Quota>, ApiError> {
        self.acting()?;
        Ok(self.lock().quotas())
    }

    // ---- containers ----

    /// Sends a container command to the agent on `hostname`; its replies (an error, log
    /// chunks, `done`) arrive on the returned channel. Dropping the receiver abandons it.
    pub fn container_command(
        &self,
        hostname: &str,
        mut command: ContainerCommand,
    ) -> Result<(u64, mpsc::UnboundedReceiver<ContainerReply>), ApiError> {
        self.acting()?;
        let (agent_id, commands) = self.lock().agent_on_host(hostname)?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut requests = self.containers.lock().unwrap_or_else(|p| p.into_inner());
            requests.next_id += 1;
            command.request_id = requests.next_id;
            requests.pending.insert(command.request_id, (agent_id, tx));
        }
        let id = command.request_id;
        commands
            .send(AgentCommand::Container(command))
            .map_err(|_| ApiError::Unavailable(format!("the agent on {hostname} just left")))?;
        Ok((id, rx))
    }

    /// The caller of container command `request_id` left: forget it and tell the agent to
    /// stop (a followed log would otherwise stream on).
    pub fn container_cancel(&self, request_id: u64) {
        let owner = self
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .remove(&request_id)
            .map(|(agent, _)| agent);
        let Some(agent_id) = owner else {
            return;
        };
        if let Some(commands) = self.lock().agent_commands(&agent_id) {
            let _ = commands.send(AgentCommand::Container(ContainerCommand {
                request_id,
                cancel: true,
                ..Default::default()
            }));
        }
    }

    /// A reply from an agent to a container command.
    pub fn container_reply(&self, agent_id: &str, reply: ContainerReply) {
        let mut requests = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let (id, done) = (reply.request_id, reply.done);
        let Some((owner, tx)) = requests.pending.get(&id) else {
            return;
        };
        if owner != agent_id {
            tracing::warn!(agent = %agent_id, request = id, "a reply to another agent's request");
            return;
        }
        if tx.send(reply).is_err() || done {
            requests.pending.remove(&id);
        }
    }

    /// The agent's link closed: its open container calls end with an error.
    pub fn container_agent_gone(&self, agent_id: &str) {
        let mut requests = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        requests.pending.retain(|id, (owner, tx)| {
            if owner != agent_id {
                return true;
            }
            let _ = tx.send(ContainerReply {
                request_id: *id,
                error: "the agent's link to the master closed; try again".into(),
                log: Vec::new(),
                done: true,
            });
            false
        });
    }

    // ---- agents ----

    /// Registers (or re-registers) an agent; returns once its admission is durable.
    pub async fn register_agent(
        &self,
        info: AgentInfo,
        running: Vec<RunningTask>,
    ) -> Result<AgentLink, ApiError> {
        let term = self.term();
        self.acting()?;
        let (link, writes) = {
            let mut s = self.lock();
            let link = s.register_agent(info, running, Instant::now());
            (link, s.take_writes())
        };
        let mut link = link?;
        Self::durable(writes).await?;
        self.same_term(term)?;
        link.term = term;
        self.changed();
        Ok(link)
    }

    /// `DEACTIVATE_AGENT` / `REACTIVATE_AGENT`; returns once the change is durable.
    pub async fn set_agent_deactivated(
        &self,
        agent_id: &str,
        deactivated: bool,
    ) -> Result<(), ApiError> {
        self.registry_change(|s, now| s.set_agent_deactivated(agent_id, deactivated, now))
            .await
    }

    /// `DRAIN_AGENT`; returns once the drain is durable (its kills are on their way).
    pub async fn drain_agent(
        &self,
        agent_id: &str,
        max_grace_period: Option<Duration>,
        mark_gone: bool,
    ) -> Result<(), ApiError> {
        self.registry_change(|s, now| s.drain_agent(agent_id, max_grace_period, mark_gone, now))
            .await
    }

    /// `MARK_AGENT_GONE`; returns once it is durable.
    pub async fn mark_agent_gone(&self, agent_id: &str) -> Result<(), ApiError> {
        self.registry_change(|s, now| s.mark_agent_gone(agent_id, now))
            .await
    }

    /// Moves a connected agent to another master or ensemble (an Orca call: Mesos needs an
    /// agent restart for this); returns once the agent was told.
    pub fn switch_agent_master(&self, agent_id: &str, master: &str) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().switch_agent_master(agent_id, master)
    }

    /// The maintenance schedule and the machines down.
    pub fn maintenance(&self) -> Result<registry::MaintenanceRecord, ApiError> {
        self.acting()?;
        Ok(self.lock().maintenance().clone())
    }

    /// The schedule, the machines down, and what frameworks answered per draining machine.
    pub fn maintenance_status(&self) -> Result<MaintenanceStatus, ApiError> {
        self.acting()?;
        Ok(self.lock().maintenance_status())
    }

    /// ACCEPT_INVERSE_OFFERS / DECLINE_INVERSE_OFFERS.
    pub fn answer_inverse_offers(
        &self,
        framework_id: &str,
        inverse_offer_ids: &[String],
        answer: InverseOfferAnswer,
        refuse: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().answer_inverse_offers(
            framework_id,
            inverse_offer_ids,
            answer,
            refuse,
            Instant::now(),
        )
    }

    /// `UPDATE_MAINTENANCE_SCHEDULE`; returns once the schedule is durable.
    pub async fn update_maintenance_schedule(
        &self,
        windows: Vec<registry::WindowRecord>,
    ) -> Result<(), ApiError> {
        self.registry_change(|s, _| s.update_maintenance_schedule(windows, SystemTime::now()))
            .await
    }

    /// `START_MAINTENANCE`: the machines go down and their agents are removed.
    pub async fn start_maintenance(&self, machines: Vec<String>) -> Result<(), ApiError> {
        self.registry_change(|s, now| s.start_maintenance(machines, now))
            .await
    }

    /// `STOP_MAINTENANCE`: the machines are up again and leave the schedule.
    pub async fn stop_maintenance(&self, machines: Vec<String>) -> Result<(), ApiError> {
        self.registry_change(|s, _| s.stop_maintenance(machines))
            .await
    }

    /// The state now and every change after it (the operator event stream).
    pub fn subscribe_events(
        &self,
    ) -> Result<
        (
            StateSnapshot,
            tokio::sync::broadcast::Receiver<ClusterEvent>,
        ),
        ApiError,
    > {
        self.acting()?;
        Ok(self.lock().subscribe_events())
    }

    /// Applies an operator's change to the state and waits until the registry has it.
    async fn registry_change(
        &self,
        change: impl FnOnce(&mut State, Instant) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let term = self.term();
        self.acting()?;
        let writes = {
            let mut s = self.lock();
            change(&mut s, Instant::now())?;
            s.take_writes()
        };
        Self::durable(writes).await?;
        self.same_term(term)?;
        self.changed();
        Ok(())
    }

    pub fn agent_heartbeat(&self, agent_id: &str) -> Result<(), ApiError> {
        self.acting()?;
        self.lock().agent_heartbeat(agent_id, Instant::now())
    }

    /// A status update from an agent (retried by the agent until acknowledged).
    pub fn status_update(&self, framework_id: &str, status: TaskStatus) -> Result<(), ApiError> {
        self.acting()?;
        let result = self.lock().status_update(framework_id, status);
        self.changed();
        result
    }

    /// Per-task usage reported by an agent.
    pub fn task_usage(&self, agent_id: &str, task_id: &str, usage: TaskUsage) {
        self.lock().task_usage(agent_id, task_id, usage);
    }

    // ---- views ----

    pub fn master_id(&self) -> String {
        self.master_id.to_string()
    }

    pub fn agent_ping_timeout(&self) -> Duration {
        self.config.agent_ping_timeout
    }

    /// The flags the master was started with (`GET_FLAGS`, `/flags`).
    pub fn flags(&self) -> &[(String, String)] {
        &self.config.flags
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.config.framework_heartbeat
    }

    /// Who may authenticate to the front doors (`--credentials`), if anyone must.
    pub fn credentials(&self) -> Option<orca_auth::Credentials> {
        self.config.credentials.clone()
    }

    pub fn snapshot(&self) -> StateSnapshot {
        self.lock().snapshot()
    }

    /// Allocation run times as a Prometheus histogram (a handle on the live one).
    pub fn allocation_seconds(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.lock().allocation_seconds()
    }

    /// Mesos-named metrics (`master/elected`, `master/tasks_running`, ...).
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let elected = if self.is_leading() { 1.0 } else { 0.0 };
        let mut metrics = self.lock().metrics();
        for (name, value) in &mut metrics {
            match name.as_str() {
                "master/elected" => *value = elected,
                "master/uptime_secs" => {
                    *value = self.started.elapsed().map_or(0.0, |d| d.as_secs_f64())
                }
                _ => {}
            }
        }
        metrics
    }

    /// What an agent currently has free (for tests and the TUI).
    pub fn agent_available(&self, agent_id: &str) -> Option<Resources> {
        self.lock().agent_available(agent_id)
    }
}

/// Resource usage of one task, read from its cgroup by the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskUsage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
}
