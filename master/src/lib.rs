//! `orca-master`. This release holds the topology collector; the registry, allocator and
//! scheduler APIs come next (see docs/architecture.md).
pub mod collector;
pub mod metrics;
pub mod server;
