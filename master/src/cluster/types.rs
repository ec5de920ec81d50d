//! The master's domain types: what frameworks, agents, tasks and offers are, independent of
//! the wire (Mesos v1 JSON, gRPC). The API layers convert to and from these at the boundary.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use crate::resources::Resources;

pub type Labels = BTreeMap<String, String>;

/// What a framework subscribes with (Mesos `FrameworkInfo`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameworkInfo {
    /// Set when a framework re-subscribes after a failover.
    pub id: Option<String>,
    pub user: String,
    pub name: String,
    pub roles: Vec<String>,
    pub principal: Option<String>,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
    /// How long the master keeps the framework's tasks after its connection drops.
    pub failover_timeout: Duration,
    pub checkpoint: bool,
    /// Mesos capability names (`MULTI_ROLE`, `GPU_RESOURCES`, `PARTITION_AWARE`, ...).
    pub capabilities: Vec<String>,
    pub labels: Labels,
}

impl FrameworkInfo {
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }
}

/// A command to run (Mesos `CommandInfo`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandInfo {
    /// Run `value` with `/bin/sh -c` when true; exec `value` with `arguments` otherwise.
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub user: Option<String>,
}

/// A task to launch (Mesos `TaskInfo`).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInfo {
    pub task_id: String,
    pub name: String,
    pub agent_id: String,
    pub resources: Resources,
    pub command: Option<CommandInfo>,
    pub labels: Labels,
    /// SIGTERM-to-SIGKILL grace when the task is killed (Mesos `KillPolicy.grace_period`).
    pub kill_grace: Option<Duration>,
}

/// Mesos task states, by their wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    Error,
    Lost,
    Dropped,
    Unreachable,
    Gone,
    GoneByOperator,
    Unknown,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Error,
        TaskState::Lost,
        TaskState::Dropped,
        TaskState::Unreachable,
        TaskState::Gone,
        TaskState::GoneByOperator,
        TaskState::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }

    pub fn from_name(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Terminal states free the task's resources. `TASK_UNREACHABLE` is not terminal: the
    /// agent may come back with the task still running.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }
}

/// Who produced a status update (Mesos `TaskStatus.Source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusSource {
    Master,
    Agent,
    Executor,
}

impl StatusSource {
    pub fn name(self) -> &'static str {
        match self {
            StatusSource::Master => "SOURCE_MASTER",
            StatusSource::Agent => "SOURCE_AGENT",
            StatusSource::Executor => "SOURCE_EXECUTOR",
        }
    }
}

/// A task status update (Mesos `TaskStatus`).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    pub task_id: String,
    pub agent_id: String,
    pub state: TaskState,
    pub source: StatusSource,
    /// Mesos reason names, e.g. `REASON_CONTAINER_LIMITATION_MEMORY`, `REASON_INVALID_OFFERS`.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Seconds since the epoch.
    pub timestamp: f64,
    /// Set on updates that must be acknowledged; `None` for reconciliation answers.
    pub uuid: Option<[u8; 16]>,
}

/// An offer as made to a framework.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub role: Arc<str>,
    pub resources: Resources,
    pub attributes: Labels,
    /// The agent's machine has a maintenance window.
    pub unavailability: Option<Unavailability>,
}

/// When a machine will be unavailable (Mesos's `Unavailability`): from `start_nanos` since
/// the epoch, for `duration_nanos` (`None`: until further notice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailability {
    pub start_nanos: i64,
    pub duration_nanos: Option<i64>,
}

/// The master asks a framework to give back what it holds on an agent whose machine has a
/// maintenance window (Mesos's `InverseOffer`); the framework accepts or declines.
#[derive(Clone, Debug, PartialEq)]
pub struct InverseOffer {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub unavailability: Unavailability,
}

/// What the master tells a subscribed framework (Mesos v1 scheduler `Event`).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Subscribed {
        framework_id: String,
        heartbeat_interval: Duration,
    },
    Offers(Vec<Offer>),
    Rescind {
        offer_id: String,
    },
    InverseOffers(Vec<InverseOffer>),
    RescindInverseOffer {
        inverse_offer_id: String,
    },
    Update(TaskStatus),
    /// An agent was lost (its tasks get their own updates).
    Failure {
        agent_id: String,
    },
    Error {
        message: String,
    },
    Heartbeat,
}

/// What the master asks of an agent.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentCommand {
    /// Launch the tasks together: all start or none does.
    Launch {
        framework_id: String,
        framework_user: String,
        role: String,
        tasks: Vec<TaskInfo>,
    },
    Kill {
        framework_id: String,
        task_id: String,
        grace: Option<Duration>,
    },
    /// The framework acknowledged this update: stop retrying it.
    Acknowledge { task_id: String, uuid: [u8; 16] },
    /// The framework is gone: kill all its tasks.
    ShutdownFramework { framework_id: String },
    /// Kill every task. Marked gone, the agent stops for good; with `rejoin` (its machine is
    /// down for maintenance) it registers again once the machine is up.
    Shutdown { message: String, rejoin: bool },
    /// An operator moves the agent to another master (`host:port` or `zk://…`).
    SwitchMaster { master: String },
    /// An operator's action on one of the agent's containers (replies come back by
    /// `request_id`).
    Container(orca_proto::cluster::v1::ContainerCommand),
}

/// What an agent registers with.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentInfo {
    /// Set when re-registering after a master restart or a network partition.
    pub id: Option<String>,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: Labels,
    /// Who the agent proved to be: the name in its TLS client certificate (mutual TLS).
    /// An agent id admitted under a name stays bound to it: another certificate cannot
    /// register as that agent.
    pub principal: Option<String>,
}

/// A task the agent already runs when it (re-)registers.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningTask {
    pub framework_id: String,
    pub info: TaskInfo,
    pub role: String,
    pub state: TaskState,
}

/// One operation of an ACCEPT call.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    Launch(Vec<TaskInfo>),
    /// All tasks start or none does.
    LaunchGroup(Vec<TaskInfo>),
}
