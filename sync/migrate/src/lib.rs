//! The migration of a live Orca cluster from ZooKeeper ensemble A to ensemble B in six
//! phases, each gated by checks, reversible from any of them, persisted at every step:
//!
//! 1. B is synced with A ([`orca_sync`] replicates both ways, ephemerals mirrored);
//! 2. masters on B join the cluster (one group seen identically through A and B);
//! 3. masters on A leave, leadership moves to B;
//! 4. agents follow B, switched live in batches (no restart, no task touched);
//! 5. agents tied to A are drained;
//! 6. the sync stops, A has no session left, its tree is archived and its servers stop.
//!
//! - [`config`]: the migration YAML;
//! - [`state`]: what was done, persisted durably after every step;
//! - [`orchestrator`]: runs phases and rollbacks;
//! - [`gates`]: every phase's pre, post and in-flight checks;
//! - [`cluster`]: contenders on each ensemble, the leader's view, operator calls;
//! - [`ensemble`]: servers' health and sessions through four-letter commands;
//! - [`actuator`]: starting and stopping masters and servers (site commands or local);
//! - [`http`]: the REST API and metrics; [`client`]: its client; [`overview`]: what the TUI's Migration view shows;
//!   [`report`]: Markdown and JSON reports.
pub mod actuator;
pub mod client;
pub mod cluster;
pub mod config;
pub mod ensemble;
pub mod gates;
pub mod http;
pub mod orchestrator;
pub mod overview;
pub mod report;
pub mod state;

pub use config::MigrationConfig;
pub use orchestrator::{MigrateError, Orchestrator};
pub use state::{MigrationState, Status};
