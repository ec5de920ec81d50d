//! Shared by the end-to-end tests: root and kernel helpers for the agent's tests, the local
//! ZooKeeper ensembles for the sync's, and the workspace's binaries.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod daemon;
pub mod docker;
pub mod masters;
pub mod prometheus;
pub mod tmux;
pub mod zk;

use std::path::PathBuf;

/// A binary of the workspace, built by `cargo xtask test` before the tests run (it builds
/// every target first). The tests sit in `target/<profile>/deps`, the binaries one level up.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the end-to-end tests through `cargo xtask test`, which builds \
         every binary of the workspace first (or `cargo build --release` before `cargo test \
         --release -p orca-e2e`)",
        path.display()
    );
    path
}

/// A master in this process on free loopback ports (allocation every 50 ms, framework
/// heartbeats every second), serving until the returned sender is used or dropped:
/// (gRPC address, HTTP address, stop).
pub async fn in_process_master() -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let config = orca_master::cluster::ClusterConfig {
        allocation_interval: std::time::Duration::from_millis(50),
        framework_heartbeat: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let master = orca_master::server::Master::bind(
        orca_collector::CollectorConfig::default(),
        config,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (grpc, http) = (master.grpc_addr(), master.http_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(master.serve(async {
        let _ = stop_rx.await;
    }));
    (grpc, http, stop_tx)
}

/// Runs the benchmark `name` with `args` and returns the JSON on its stdout line starting
/// with `prefix` (e.g. "result "), and the whole stdout for messages; panics, with its
/// output, when it fails or prints no such line.
pub fn run_benchmark(name: &str, args: &[&str], prefix: &str) -> (serde_json::Value, String) {
    let out = std::process::Command::new(bin(name))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap_or_else(|e| panic!("running the {name} benchmark: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line: {stdout}"));
    (result, stdout)
}
