//! Orca's protobuf contracts, one versioned package per contract. Every message also has the
//! canonical proto3 JSON mapping (serde), used by `orca-agent report --format json` and the
//! collector's HTTP API.

/// Node reports and the merged topology (`orca.topology.v1`).
pub mod topology {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("orca.topology.v1");
        include!(concat!(env!("OUT_DIR"), "/orca.topology.v1.serde.rs"));

        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

        /// An address as the wire carries it: 4 bytes (IPv4) or 16 (IPv6), network order.
        pub fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
            match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }
        }

        /// An address from the wire; `None` unless it is 4 or 16 bytes.
        pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
            match bytes.len() {
                4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
                16 => Some(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(bytes).ok()?,
                ))),
                _ => None,
            }
        }

        impl Endpoint {
            pub fn new(addr: SocketAddr) -> Self {
                Endpoint {
                    ip: ip_to_bytes(addr.ip()),
                    port: addr.port() as u32,
                }
            }

            /// The address, or `None` when the wire value is not one (a bad report).
            pub fn socket_addr(&self) -> Option<SocketAddr> {
                Some(SocketAddr::new(
                    ip_from_bytes(&self.ip)?,
                    u16::try_from(self.port).ok()?,
                ))
            }
        }

        impl Host {
            /// The host's addresses that are addresses (bad wire values are skipped).
            pub fn ip_addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
                self.ips.iter().filter_map(|ip| ip_from_bytes(ip))
            }
        }

        /// Makes the canonical JSON of topology messages readable: the proto3 JSON mapping
        /// writes bytes as base64, so every `ip` of an endpoint and every address in a host's
        /// `ips` is rewritten as text (`"10.0.0.1"`, `"::1"`). For JSON meant for people
        /// (`orca-agent report --format json`, the collector's HTTP API).
        pub fn readable_addresses(value: &mut serde_json::Value) {
            use base64::Engine as _;
            let text = |v: &serde_json::Value| -> Option<serde_json::Value> {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str()?)
                    .ok()?;
                Some(ip_from_bytes(&bytes)?.to_string().into())
            };
            match value {
                serde_json::Value::Object(map) => {
                    for (key, v) in map.iter_mut() {
                        match key.as_str() {
                            "ip" => {
                                if let Some(t) = text(v) {
                                    *v = t;
                                }
                            }
                            "ips" => {
                                if let Some(list) = v.as_array_mut() {
                                    for ip in list {
                                        if let Some(t) = text(ip) {
                                            *ip = t;
                                        }
                                    }
                                }
                            }
                            _ => readable_addresses(v),
                        }
                    }
                }
                serde_json::Value::Array(list) => list.iter_mut().for_each(readable_addresses),
                _ => {}
            }
        }
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
