//! `orca-agent`: observes a host (eBPF, or /proc when eBPF cannot load) and reports its
//! topology — host, containers, processes, TCP connections — to the collector.
pub mod cgroup;
pub mod connections;
pub mod conntrack;
pub mod containers;
pub mod control;
pub mod engine;
pub mod host;
pub mod master_switch;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod report;
pub mod runner;
pub mod selfstat;
pub mod sockdiag;
pub mod stream;
pub mod tasks;
