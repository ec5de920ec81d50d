//! Shared by the sync tests: the two local ensembles `cargo xtask test` starts, a unique root
//! per test, and waiting on conditions with a deadline.
#![allow(dead_code)]
use std::{
    future::Future,
    path::PathBuf,
    time::{Duration, Instant},
};

use orca_zk_local::{ENV_STATE_DIR, Ensemble, shared_ensembles};
use zookeeper_client::{Acls, Client, CreateMode};

/// Ensembles A and B. Fails loudly when they are not running: these tests never skip.
pub fn ensembles() -> [Ensemble; 2] {
    let dir = std::env::var_os(ENV_STATE_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "the sync tests need the local ZooKeeper ensembles: run `cargo xtask test`, or \
             `cargo xtask zk start` and then `{ENV_STATE_DIR}=target/zk cargo test -p orca-sync`"
            )
        });
    let pair = shared_ensembles(&dir);
    for e in &pair {
        e.wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|err| panic!("ensemble {} is not serving: {err:#}", e.name));
    }
    pair
}

/// A root no other test uses.
pub fn unique_root(test: &str) -> String {
    format!("/orca-test-{test}-{}", std::process::id())
}

pub async fn client(connect: &str) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(connect)
        .await
        .unwrap_or_else(|e| panic!("connecting to {connect}: {e}"))
}

pub async fn client_with_digest(connect: &str, user_password: &str) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", user_password.as_bytes())
        .connect(connect)
        .await
        .unwrap_or_else(|e| panic!("connecting to {connect}: {e}"))
}

/// `digest` id of `user:password`.
pub fn digest_of(user_password: &str) -> String {
    use std::process::Command;
    // Computed by ZooKeeper's own tool, so the test does not re-implement the scheme.
    let out = Command::new("java")
        .args([
            "-cp",
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-api.jar",
            "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            user_password,
        ])
        .output()
        .expect("running ZooKeeper's DigestAuthenticationProvider");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split("->")
        .nth(1)
        .expect("user->digest output")
        .to_string()
}

pub fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Deletes a subtree, deepest level first, each level's deletes pipelined; ignores what is
/// already gone.
pub async fn delete_tree(client: &Client, path: &str) {
    let mut levels = vec![vec![path.to_string()]];
    loop {
        let last = levels.last().unwrap();
        let lists = futures::future::join_all(last.iter().map(|p| async move {
            let children = client.list_children(p).await.unwrap_or_default();
            children
                .into_iter()
                .map(|c| format!("{p}/{c}"))
                .collect::<Vec<_>>()
        }))
        .await;
        let next: Vec<String> = lists.into_iter().flatten().collect();
        if next.is_empty() {
            break;
        }
        levels.push(next);
    }
    for level in levels.iter().rev() {
        futures::future::join_all(level.iter().map(|p| client.delete(p, None))).await;
    }
}

/// Drops packets to an ensemble's client ports while it lives (a partition); with `uid`, only
/// that user's packets, so one process of several loses ZooKeeper. The rule is removed on drop.
pub struct PacketLoss(Vec<String>);

impl PacketLoss {
    pub fn to(ensemble: &Ensemble) -> Self {
        Self::insert(ensemble, None)
    }

    pub fn of_user(uid: u32, ensemble: &Ensemble) -> Self {
        Self::insert(ensemble, Some(uid))
    }

    fn insert(ensemble: &Ensemble, uid: Option<u32>) -> Self {
        let (first, last) = (
            ensemble.client_addr(1).port(),
            ensemble.client_addr(ensemble.size).port(),
        );
        let mut rule: Vec<String> = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        rule.push(format!("{first}:{last}"));
        if let Some(uid) = uid {
            rule.extend([
                "-m".into(),
                "owner".into(),
                "--uid-owner".into(),
                uid.to_string(),
            ]);
        }
        rule.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            format!("orca-e2e-{}", std::process::id()),
            "-j".into(),
            "DROP".into(),
        ]);
        let out = std::process::Command::new("iptables")
            .arg("-I")
            .args(&rule)
            .output()
            .expect("running iptables");
        assert!(
            out.status.success(),
            "this test needs root and iptables (with the owner match) to drop packets: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PacketLoss(rule)
    }
}

impl Drop for PacketLoss {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .arg("-D")
            .args(&self.0)
            .output();
    }
}
