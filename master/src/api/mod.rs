//! The master's front doors, each converting its wire to the cluster core's domain types
//! through [`convert`] and nothing else:
//!
//! - [`mesos_http`]: the Mesos v1 scheduler HTTP API (JSON, RecordIO), `/master/state` and
//!   `/metrics/snapshot`, in Mesos's shapes;
//! - [`scheduler_grpc`]: the same scheduler API over gRPC (`orca.scheduler.v1`);
//! - [`operator_grpc`]: the cluster watch and operator actions (`orca.operator.v1`);
//! - [`agent_link`]: one bidirectional stream per agent (`orca.cluster.v1`).
//!
//! Both scheduler doors send a framework's events through [`events::FrameworkEvents`]. With
//! `--credentials`, [`authn`] authenticates callers of the Mesos HTTP API and of the gRPC
//! scheduler and operator services; the cluster core authorizes what they ask with `--acls`.
pub mod agent_link;
pub use orca_auth::doors as authn;
pub mod cluster_watch;
pub mod convert;
pub mod events;
pub mod mesos_http;
pub mod operator_grpc;
pub mod scheduler_grpc;
