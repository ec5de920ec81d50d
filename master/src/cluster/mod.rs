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
pub mod config;
mod error;
pub mod registry;
pub mod types;

mod state;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use orca_proto::cluster::v1::{ContainerCommand, ContainerReply};
use tokio::sync::{Notify, mpsc};

pub use config::{ClusterConfig, RoleConfig};
pub use error::ApiError;
use state::State;
pub use state::{AgentView, FrameworkView, StateSnapshot, TaskView};
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

/// An agent's registration: its id and the commands for it.
#[derive(Debug)]
pub struct AgentLink {
    pub agent_id: String,
    pub commands: mpsc::UnboundedReceiver<AgentCommand>,
}

/// Cheap to clone; all clones share one master.
#[derive(Clone, Debug)]
pub struct Cluster {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    containers: Arc<Mutex<ContainerRequests>>,
}

/// Operator calls on containers waiting for their agent's replies.
#[derive(Debug, Default)]
struct ContainerRequests {
    next_id: u64,
    /// request id → (agent, where the replies go)
    pending: HashMap<u64, (String, mpsc::UnboundedSender<ContainerReply>)>,
}

impl Cluster {
    /// A cluster whose registry is the file `config.registry` names (in memory without one).
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

    /// A cluster that keeps its registry in `store` (and recovers from what is there).
    pub fn with_store(
        config: ClusterConfig,
        store: Box<dyn registry::RegistryStore>,
    ) -> Result<Self, ApiError> {
        Ok(Cluster {
            state: Arc::new(Mutex::new(State::new(config, store)?)),
            wake: Arc::new(Notify::new()),
            containers: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            self.tick(Instant::now());
        }
    }

    /// One round of housekeeping and allocation at `now` (tests drive this directly).
    pub fn tick(&self, now: Instant) {
        let mut s = self.lock();
        s.expire_offers(now);
        s.check_agents(now);
        s.expire_frameworks(now);
        s.allocate(now);
    }

    fn changed(&self) {
        self.wake.notify_one();
    }

    // ---- frameworks ----

    pub fn subscribe(&self, info: FrameworkInfo) -> Result<Subscription, ApiError> {
        let sub = self.lock().subscribe(info, Instant::now())?;
        self.changed();
        Ok(sub)
    }

    /// The framework's event stream ended (connection closed).
    pub fn disconnected(&self, framework_id: &str, stream_id: &str) {
        self.lock()
            .disconnected(framework_id, stream_id, Instant::now());
        self.changed();
    }

    /// Checks that a call comes from the framework's current subscription.
    pub fn check_stream(
        &self,
        framework_id: &str,
        stream_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.lock().check_stream(framework_id, stream_id)
    }

    pub fn accept(
        &self,
        framework_id: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        refuse: Option<Duration>,
    ) -> Result<(), ApiError> {
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
        let result = self
            .lock()
            .decline(framework_id, offer_ids, refuse, Instant::now());
        self.changed();
        result
    }

    pub fn revive(&self, framework_id: &str, roles: Option<&[String]>) -> Result<(), ApiError> {
        let result = self.lock().revive(framework_id, roles);
        self.changed();
        result
    }

    /// Mesos UPDATE_FRAMEWORK (see the state's `update_framework`).
    pub fn update_framework(
        &self,
        framework_id: &str,
        info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(), ApiError> {
        let result =
            self.lock()
                .update_framework(framework_id, info, suppressed_roles, Instant::now());
        self.changed();
        result
    }

    pub fn suppress(&self, framework_id: &str, roles: Option<&[String]>) -> Result<(), ApiError> {
        self.lock().suppress(framework_id, roles)
    }

    pub fn kill(
        &self,
        framework_id: &str,
        task_id: &str,
        grace: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.lock().kill(framework_id, task_id, grace)
    }

    pub fn acknowledge(
        &self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        uuid: [u8; 16],
    ) -> Result<(), ApiError> {
        self.lock()
            .acknowledge(framework_id, agent_id, task_id, uuid)
    }

    /// Explicit reconciliation for the listed (task, agent) pairs, implicit when empty.
    pub fn reconcile(
        &self,
        framework_id: &str,
        tasks: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        self.lock().reconcile(framework_id, tasks)
    }

    pub fn teardown(&self, framework_id: &str) -> Result<(), ApiError> {
        let result = self.lock().teardown(framework_id, Instant::now());
        self.changed();
        result
    }

    // ---- containers ----

    /// Sends a container command to the agent on `hostname`; its replies (an error, log
    /// chunks, `done`) arrive on the returned channel. Dropping the receiver abandons it.
    pub fn container_command(
        &self,
        hostname: &str,
        mut command: ContainerCommand,
    ) -> Result<(u64, mpsc::UnboundedReceiver<ContainerReply>), ApiError> {
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

    pub fn register_agent(
        &self,
        info: AgentInfo,
        running: Vec<RunningTask>,
    ) -> Result<AgentLink, ApiError> {
        let link = self.lock().register_agent(info, running, Instant::now())?;
        self.changed();
        Ok(link)
    }

    pub fn agent_heartbeat(&self, agent_id: &str) -> Result<(), ApiError> {
        self.lock().agent_heartbeat(agent_id, Instant::now())
    }

    /// A status update from an agent (retried by the agent until acknowledged).
    pub fn status_update(&self, framework_id: &str, status: TaskStatus) -> Result<(), ApiError> {
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
        self.lock().master_id().to_owned()
    }

    pub fn agent_ping_timeout(&self) -> Duration {
        self.lock().config.agent_ping_timeout
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.lock().config.framework_heartbeat
    }

    pub fn snapshot(&self) -> StateSnapshot {
        self.lock().snapshot()
    }

    /// Mesos-named metrics (`master/elected`, `master/tasks_running`, ...).
    pub fn metrics(&self) -> Vec<(String, f64)> {
        self.lock().metrics()
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
