//! `orca-master`: the cluster master (agent registry, weighted-DRF allocator, offers and
//! tasks, the Mesos v1 scheduler HTTP API, the agent link). The topology collector is its own
//! crate (`orca-collector`), which the master serves beside the cluster. See
//! docs/architecture.md.
pub mod allocator;
pub mod api;
pub mod cluster;
pub mod election;
pub use orca_resources as resources;
pub mod prometheus;
pub mod server;
