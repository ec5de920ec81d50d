//! Shared by the end-to-end tests: root and kernel helpers for the agent's tests, the local
//! ZooKeeper ensembles for the sync's, and the workspace's binaries.
#![allow(dead_code, unused_imports)]

pub mod agent;
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
