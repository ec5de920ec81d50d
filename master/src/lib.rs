//! `orca-master`: the topology collector, and the cluster master's parts as they land:
//! resources, the weighted-DRF allocator (see docs/architecture.md).
pub mod allocator;
pub mod cluster;
pub mod collector;
pub mod mesos_api;
pub mod metrics;
pub mod resources;
pub mod server;
