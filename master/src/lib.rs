//! `orca-master`: the topology collector, and the cluster master's parts as they land:
//! resources, the weighted-DRF allocator (see docs/architecture.md).
pub mod allocator;
pub mod collector;
pub mod metrics;
pub mod resources;
pub mod server;
