//! Helpers for the agent's root tests: privilege check, waiting on conditions with a deadline,
//! and finding things in snapshots.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use orca_proto::topology::v1 as pb;

/// These tests load eBPF programs, create cgroups and network namespaces: they need root.
/// They fail loudly instead of skipping, so CI can never pass without running them.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (eBPF, cgroups, network namespaces): run `cargo xtask test` as root"
    );
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Snapshots from `Engine::snapshot` always carry nodes.
pub fn process(nodes: &Option<Vec<pb::Node>>, pid: u32) -> Option<&pb::Process> {
    nodes.as_deref()?.iter().find_map(|n| match &n.detail {
        Some(pb::node::Detail::Process(p)) if p.pid == pid => Some(p),
        _ => None,
    })
}

pub fn node<'a>(nodes: &'a Option<Vec<pb::Node>>, id: &str) -> Option<&'a pb::Node> {
    nodes.as_deref()?.iter().find(|n| n.id == id)
}

pub fn connection(
    conns: &[pb::Connection],
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Option<&pb::Connection> {
    conns.iter().find(|c| {
        c.local.as_ref().and_then(pb::Endpoint::socket_addr) == Some(local)
            && c.remote.as_ref().and_then(pb::Endpoint::socket_addr) == Some(remote)
    })
}

/// Kills and reaps a child when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ends every task left in the cgroups under `parent` (what a failed assertion left running)
/// and removes them and `parent`.
pub fn remove_task_cgroups(parent: &str) {
    if let Ok(driver) = orca_agent::tasks::cgroups::Driver::detect() {
        driver.remove_all(parent);
    }
}
