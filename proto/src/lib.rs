//! Orca's protobuf contracts, one versioned package per contract. Every message also has the
//! canonical proto3 JSON mapping (serde), used by `orca-agent report --format json` and the
//! collector's HTTP API.

/// Node reports and the merged topology (`orca.topology.v1`).
pub mod topology {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("orca.topology.v1");
        include!(concat!(env!("OUT_DIR"), "/orca.topology.v1.serde.rs"));
    }
}

/// The agent-master link: registration, heartbeats, task launches and status updates
/// (`orca.cluster.v1`).
pub mod cluster {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("orca.cluster.v1");
        include!(concat!(env!("OUT_DIR"), "/orca.cluster.v1.serde.rs"));

        impl ContainerAction {
            /// The action as people say it: `stop`, `unpause`, `logs`.
            pub fn word(self) -> &'static str {
                match self {
                    ContainerAction::Stop => "stop",
                    ContainerAction::Start => "start",
                    ContainerAction::Pause => "pause",
                    ContainerAction::Unpause => "unpause",
                    ContainerAction::Restart => "restart",
                    ContainerAction::Remove => "remove",
                    ContainerAction::Logs => "logs",
                    ContainerAction::Unspecified => "unspecified",
                }
            }
        }

        impl TaskState {
            /// Mesos's own name for the state (`TASK_RUNNING`); empty when unspecified.
            pub fn mesos_name(self) -> &'static str {
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
                    TaskState::Unspecified => "",
                }
            }

            /// Terminal states: the task will not change again.
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
    }
}

/// The scheduler API over gRPC (`orca.scheduler.v1`), twin of the Mesos v1 HTTP API.
pub mod scheduler {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("orca.scheduler.v1");
        include!(concat!(env!("OUT_DIR"), "/orca.scheduler.v1.serde.rs"));
    }
}

/// The cluster as operators see it, and operator actions (`orca.operator.v1`); the TUI's
/// cluster views.
pub mod operator {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("orca.operator.v1");
        include!(concat!(env!("OUT_DIR"), "/orca.operator.v1.serde.rs"));
    }
}
