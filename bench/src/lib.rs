//! Shared pieces of Orca's benchmarks.
pub mod cluster;
pub mod procstat;
pub mod sink;
pub mod tui_watch;
