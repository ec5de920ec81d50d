//! `orca-master` as a process with `--credentials` and `--acls` files: the TUI (`orca
//! --principal`, its feed) sees the cluster with its credential, and says why it cannot
//! without one; the scheduler API refuses a principal the ACLs do not name.
mod support;

use std::{net::SocketAddr, time::Duration};

use orca_master::api::mesos_http::client;
use orca_tui::{
    app::LinkState,
    feed::{self, Credential, Event},
};
use support::{daemon::Daemon, masters::free_ports};

/// The first event `want` accepts within 20 s; panics naming `what` otherwise.
async fn first<T>(
    rx: &mut tokio::sync::mpsc::Receiver<Event>,
    what: &str,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 20 s"))
            .expect("the feed ended");
        if let Some(found) = want(&event) {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_authenticates_to_a_locked_master_and_says_why_it_cannot_without() {
    let dir = std::env::temp_dir().join(format!("orca-locked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let credentials = dir.join("credentials");
    std::fs::write(&credentials, "ops o-secret\nmarathon m-secret\n").unwrap();
    let acls = dir.join("acls.json");
    std::fs::write(
        &acls,
        r#"{"register_frameworks": [{"principals": {"values": ["marathon"]}, "roles": {"type": "ANY"}}]}"#,
    )
    .unwrap();
    let base = free_ports(2);
    let (grpc, http) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 1)),
    );
    let args: Vec<String> = [
        "--grpc-addr",
        &grpc.to_string(),
        "--http-addr",
        &http.to_string(),
        "--registry",
        "memory",
        "--credentials",
        credentials.to_str().unwrap(),
        "--acls",
        acls.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _master = Daemon::start("orca-master", &args, &dir.join("master.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the master did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Without a credential the TUI says what is missing.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let anonymous = tokio::spawn(feed::follow(grpc.to_string(), tx));
    let reason = first(&mut rx, "a refusal", |e| match e {
        Event::Link(LinkState::Down { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("requires authentication"), "{reason}");
    anonymous.abort();

    // With one it follows the cluster.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let credential = Credential::basic("ops", "o-secret").unwrap();
    let feed = tokio::spawn(feed::follow_as(grpc.to_string(), credential, tx));
    first(&mut rx, "the cluster snapshot", |e| match e {
        Event::Cluster(..) => Some(()),
        Event::Link(LinkState::Down { reason, .. }) => panic!("refused: {reason}"),
        _ => None,
    })
    .await;
    feed.abort();

    // The scheduler API: ops may not register a framework; marathon may.
    let info = serde_json::json!({"user": "app", "name": "locked", "roles": ["web"]});
    let refused = client::SchedulerClient::subscribe_as(
        http,
        info.clone(),
        Some(client::basic("ops", "o-secret")),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("403"), "{refused}");
    assert!(refused.contains("`register_frameworks`"), "{refused}");
    let s = client::SchedulerClient::subscribe_as(
        http,
        info,
        Some(client::basic("marathon", "m-secret")),
    )
    .await
    .unwrap();
    assert!(!s.framework_id.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
