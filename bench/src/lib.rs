//! Shared pieces of Orca's benchmarks.
pub mod procstat;
pub mod sink;
