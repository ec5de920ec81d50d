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
