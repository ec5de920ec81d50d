//! The one conversion layer between the wire and the cluster core: refusals as gRPC statuses
//! and HTTP codes, and the agent-link protobuf (tasks, status updates, commands, usage) to
//! and from domain types. Every door converts here; none borrows from another.
use std::time::Duration;

use axum::http::StatusCode;
use orca_proto::cluster::v1::{self as pb, master_message};
use tonic::Status;

use crate::{
    cluster::{
        AgentCommand, ApiError, CommandInfo, StatusSource, TaskInfo, TaskState, TaskStatus,
        TaskUsage,
    },
    resources::{
        ResourceError,
        proto::{resources_from_proto, resources_to_proto},
    },
};

/// A protobuf message the core cannot take, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("task {task}: {source}")]
    Resources { task: String, source: ResourceError },
    #[error("task state {0} is not a Mesos task state (orca.cluster.v1.TaskState)")]
    TaskState(i32),
    #[error("a status uuid must be 16 bytes, got {0}")]
    Uuid(usize),
}

impl From<ConvertError> for Status {
    fn from(err: ConvertError) -> Self {
        Status::invalid_argument(err.to_string())
    }
}

/// A refusal of the cluster core as the gRPC status that says the same.
pub fn grpc_status(err: ApiError) -> Status {
    match err {
        ApiError::BadRequest(m) => Status::invalid_argument(m),
        ApiError::Forbidden(m) => Status::permission_denied(m),
        ApiError::NotFound(m) => Status::not_found(m),
        ApiError::Unavailable(m) => Status::unavailable(m),
        ApiError::NotLeader(leader) => {
            let mut status = Status::unavailable(ApiError::NotLeader(leader.clone()).to_string());
            if let Some(grpc) = leader.as_ref().and_then(|l| l.grpc_addr())
                && let Ok(value) = grpc.to_string().parse()
            {
                status.metadata_mut().insert(LEADER_METADATA, value);
            }
            status
        }
    }
}

/// The gRPC metadata key naming the leader's gRPC address on a non-leader's refusal.
pub const LEADER_METADATA: &str = "orca-leader-grpc";

/// A refusal of a scheduler call as Mesos answers it over HTTP: 400 malformed, 403 not
/// allowed (an unknown framework included, as Mesos does for calls), 503 unavailable.
pub fn http_status(err: &ApiError) -> StatusCode {
    match err {
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::Forbidden(_) | ApiError::NotFound(_) => StatusCode::FORBIDDEN,
        ApiError::Unavailable(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A duration in seconds from the wire: negative, NaN or infinite means none; capped at a
/// year (Mesos filters use seconds as doubles).
pub fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0)
        .then(|| Duration::from_secs_f64(value.min(365.0 * 86_400.0)))
}

pub fn task_to_proto(task: &TaskInfo) -> pb::Task {
    pb::Task {
        task_id: task.task_id.clone(),
        name: task.name.clone(),
        agent_id: task.agent_id.clone(),
        resources: resources_to_proto(&task.resources),
        command: task.command.as_ref().map(|c| pb::Command {
            shell: c.shell,
            value: c.value.clone(),
            arguments: c.arguments.clone(),
            environment: c.environment.iter().cloned().collect(),
            user: c.user.clone().unwrap_or_default(),
        }),
        labels: task.labels.clone().into_iter().collect(),
        kill_grace_seconds: task.kill_grace.map_or(0.0, |g| g.as_secs_f64()),
    }
}

pub fn task_from_proto(task: &pb::Task) -> Result<TaskInfo, ConvertError> {
    Ok(TaskInfo {
        task_id: task.task_id.clone(),
        name: task.name.clone(),
        agent_id: task.agent_id.clone(),
        resources: resources_from_proto(&task.resources).map_err(|source| {
            ConvertError::Resources {
                task: task.task_id.clone(),
                source,
            }
        })?,
        command: task.command.as_ref().map(|c| CommandInfo {
            shell: c.shell,
            value: c.value.clone(),
            arguments: c.arguments.clone(),
            environment: c.environment.clone().into_iter().collect(),
            user: (!c.user.is_empty()).then(|| c.user.clone()),
        }),
        labels: task.labels.clone().into_iter().collect(),
        kill_grace: (task.kill_grace_seconds > 0.0)
            .then(|| Duration::from_secs_f64(task.kill_grace_seconds)),
    })
}

pub fn task_state_from_proto(state: i32) -> Result<TaskState, ConvertError> {
    let wire = pb::TaskState::try_from(state).map_err(|_| ConvertError::TaskState(state))?;
    Ok(match wire {
        pb::TaskState::Unspecified => return Err(ConvertError::TaskState(state)),
        pb::TaskState::Staging => TaskState::Staging,
        pb::TaskState::Starting => TaskState::Starting,
        pb::TaskState::Running => TaskState::Running,
        pb::TaskState::Killing => TaskState::Killing,
        pb::TaskState::Finished => TaskState::Finished,
        pb::TaskState::Failed => TaskState::Failed,
        pb::TaskState::Killed => TaskState::Killed,
        pb::TaskState::Error => TaskState::Error,
        pb::TaskState::Lost => TaskState::Lost,
        pb::TaskState::Dropped => TaskState::Dropped,
        pb::TaskState::Unreachable => TaskState::Unreachable,
        pb::TaskState::Gone => TaskState::Gone,
        pb::TaskState::GoneByOperator => TaskState::GoneByOperator,
        pb::TaskState::Unknown => TaskState::Unknown,
    })
}

pub fn task_state_to_proto(state: TaskState) -> i32 {
    let wire = match state {
        TaskState::Staging => pb::TaskState::Staging,
        TaskState::Starting => pb::TaskState::Starting,
        TaskState::Running => pb::TaskState::Running,
        TaskState::Killing => pb::TaskState::Killing,
        TaskState::Finished => pb::TaskState::Finished,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Killed => pb::TaskState::Killed,
        TaskState::Error => pb::TaskState::Error,
        TaskState::Lost => pb::TaskState::Lost,
        TaskState::Dropped => pb::TaskState::Dropped,
        TaskState::Unreachable => pb::TaskState::Unreachable,
        TaskState::Gone => pb::TaskState::Gone,
        TaskState::GoneByOperator => pb::TaskState::GoneByOperator,
        TaskState::Unknown => pb::TaskState::Unknown,
    };
    wire as i32
}

pub fn status_to_proto(s: &TaskStatus) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: s.task_id.clone(),
        agent_id: s.agent_id.clone(),
        state: task_state_to_proto(s.state),
        reason: s.reason.clone().unwrap_or_default(),
        message: s.message.clone().unwrap_or_default(),
        timestamp: s.timestamp,
        uuid: s.uuid.map(|u| u.to_vec()).unwrap_or_default(),
    }
}

/// An agent's status update; it must carry the uuid its acknowledgement will name.
pub fn status_from_proto(s: &pb::TaskStatus) -> Result<TaskStatus, ConvertError> {
    let state = task_state_from_proto(s.state)?;
    let uuid: [u8; 16] = s
        .uuid
        .as_slice()
        .try_into()
        .map_err(|_| ConvertError::Uuid(s.uuid.len()))?;
    Ok(TaskStatus {
        task_id: s.task_id.clone(),
        agent_id: s.agent_id.clone(),
        state,
        source: StatusSource::Executor,
        reason: (!s.reason.is_empty()).then(|| s.reason.clone()),
        message: (!s.message.is_empty()).then(|| s.message.clone()),
        timestamp: s.timestamp,
        uuid: Some(uuid),
    })
}

pub fn usage_from_proto(usage: &pb::TaskUsage) -> TaskUsage {
    TaskUsage {
        cpu_seconds: usage.cpu_seconds,
        memory_bytes: usage.memory_bytes,
        memory_limit_bytes: (usage.memory_limit_bytes > 0).then_some(usage.memory_limit_bytes),
        pids: usage.pids,
    }
}

pub fn command_to_proto(command: AgentCommand) -> pb::MasterMessage {
    let kind = match command {
        AgentCommand::Launch {
            framework_id,
            framework_user,
            role,
            tasks,
        } => master_message::Kind::Launch(pb::Launch {
            framework_id,
            framework_user,
            role,
            tasks: tasks.iter().map(task_to_proto).collect(),
        }),
        AgentCommand::Kill {
            framework_id,
            task_id,
            grace,
        } => master_message::Kind::Kill(pb::Kill {
            framework_id,
            task_id,
            grace_seconds: grace.map_or(-1.0, |g| g.as_secs_f64()),
        }),
        AgentCommand::Acknowledge { task_id, uuid } => {
            master_message::Kind::Acknowledge(pb::Acknowledge {
                task_id,
                uuid: uuid.to_vec(),
            })
        }
        AgentCommand::Shutdown { message, rejoin } => {
            master_message::Kind::Shutdown(pb::Shutdown { message, rejoin })
        }
        AgentCommand::ShutdownFramework { framework_id } => {
            master_message::Kind::ShutdownFramework(pb::ShutdownFramework { framework_id })
        }
        AgentCommand::SwitchMaster { master } => {
            master_message::Kind::SwitchMaster(pb::SwitchMaster { master })
        }
        AgentCommand::Container(command) => master_message::Kind::Container(command),
    };
    pb::MasterMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    #[test]
    fn a_task_and_its_status_travel_the_agent_link_unchanged() {
        let task = TaskInfo {
            task_id: "t1".into(),
            name: "web".into(),
            agent_id: "a1".into(),
            resources: Resources::parse("cpus:0.5;mem:64;ports:[31000-31001]").unwrap(),
            command: Some(CommandInfo {
                shell: true,
                value: "echo hi".into(),
                arguments: Vec::new(),
                environment: vec![("K".into(), "V".into())],
                user: None,
            }),
            labels: [("app".to_string(), "web".to_string())].into(),
            kill_grace: Some(Duration::from_secs(3)),
        };
        assert_eq!(task_from_proto(&task_to_proto(&task)).unwrap(), task);
        let status = TaskStatus {
            task_id: "t1".into(),
            agent_id: "a1".into(),
            state: TaskState::Running,
            source: StatusSource::Executor,
            reason: Some("REASON_COMMAND_EXECUTOR_FAILED".into()),
            message: Some("up".into()),
            timestamp: 12.5,
            uuid: Some([7; 16]),
        };
        assert_eq!(
            status_from_proto(&status_to_proto(&status)).unwrap(),
            status
        );
        for state in TaskState::ALL {
            assert_eq!(
                task_state_from_proto(task_state_to_proto(state)),
                Ok(state),
                "{state:?} has a wire value"
            );
        }
    }

    #[test]
    fn what_the_core_cannot_take_is_named() {
        let mut bad = status_to_proto(&TaskStatus {
            task_id: "t1".into(),
            agent_id: "a1".into(),
            state: TaskState::Running,
            source: StatusSource::Executor,
            reason: None,
            message: None,
            timestamp: 0.0,
            uuid: Some([1; 16]),
        });
        bad.uuid.truncate(3);
        assert_eq!(status_from_proto(&bad), Err(ConvertError::Uuid(3)));
        bad.state = 0;
        assert!(matches!(
            status_from_proto(&bad),
            Err(ConvertError::TaskState(_))
        ));
        assert_eq!(seconds(-1.0), None);
        assert_eq!(seconds(f64::NAN), None);
        assert_eq!(seconds(2.5), Some(Duration::from_millis(2500)));
    }
}
