//! `orca-master` as a process with `--credentials` and `--acls` files: the TUI (`orca
//! --principal`, its feed) sees the cluster with its credential, and says why it cannot
//! without one; the scheduler API refuses a principal the ACLs do not name. Over TLS with
//! `--tls-ca`, agents prove themselves with certificates, and a renewed certificate drops
//! no one.
mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use orca_master::api::mesos_http::client;
use orca_tui::{
    app::LinkState,
    feed::{self, Credential, Event},
};
use support::{daemon::Daemon, masters::free_ports};

/// Command-line arguments as owned strings.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

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
    let args = strings(&[
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
    ]);
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

/// An `orca-agent run` with tasks (so it registers on the agent link) for `master`, its log
/// in `dir/<name>.log`; `tls` are its TLS flags.
fn tls_agent(dir: &Path, name: &str, master: SocketAddr, tls: &[&Path]) -> Daemon {
    tls_agent_with(dir, name, master, tls, &[])
}

/// `tls_agent` with `extra` flags.
fn tls_agent_with(
    dir: &Path,
    name: &str,
    master: SocketAddr,
    tls: &[&Path],
    extra: &[&str],
) -> Daemon {
    let work = dir.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    let mut args = strings(&[
        "run",
        "--master",
        &master.to_string(),
        "--probe",
        "proc",
        "--docker-socket",
        "",
        "--containerd-socket",
        "",
        "--hostname",
        name,
        "--resources",
        "cpus:1;mem:256",
        "--cgroups-root",
        &format!("orca-e2e-tls-{}", std::process::id()),
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    for (flag, path) in ["--tls-ca", "--tls-cert", "--tls-key"].iter().zip(tls) {
        args.extend([flag.to_string(), path.display().to_string()]);
    }
    args.extend(strings(extra));
    Daemon::start("orca-agent", &args, &dir.join(format!("{name}.log")))
}

/// A log's text without its colours.
fn read_log(log: &Path) -> String {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(start) = rest.find('\x1b') {
        text.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    text.push_str(rest);
    text
}

/// Waits until `log` holds `text`; panics with the log after 20 s.
async fn log_says(log: &Path, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = read_log(log);
        if now.contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never said {text:?}:\n{now}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_prove_themselves_with_certificates_and_a_renewal_drops_nobody() {
    use orca_auth::tls::cert_gen::{LocalCa, Validity};
    support::agent::require_root();
    let dir = std::env::temp_dir().join(format!("orca-tls-doors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name);
    let ca = LocalCa::new("Orca test CA").unwrap();
    ca.write_cert(&file("ca.pem")).unwrap();
    for (name, common_name) in [
        ("master", "orca-master"),
        ("agent", "agent"),
        ("impostor", "agent-b"),
    ] {
        ca.issue(common_name, LocalCa::LOOPBACK, Validity::Current)
            .unwrap()
            .write(&dir, name)
            .unwrap();
    }
    std::fs::write(file("credentials"), "ops o-secret\n").unwrap();
    let base = free_ports(2);
    let (grpc, http) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 1)),
    );
    let args = strings(&[
        "--grpc-addr",
        &grpc.to_string(),
        "--http-addr",
        &http.to_string(),
        "--registry",
        "memory",
        "--credentials",
        file("credentials").to_str().unwrap(),
        "--tls-cert",
        file("master.pem").to_str().unwrap(),
        "--tls-key",
        file("master.key").to_str().unwrap(),
        "--tls-ca",
        file("ca.pem").to_str().unwrap(),
    ]);
    let _master = Daemon::start("orca-master", &args, &file("master.log"));
    log_says(&file("master.log"), "master serving").await;

    // The agent with its certificate registers; the TUI, over TLS with a credential, sees it.
    let agent = tls_agent(
        &dir,
        "tls-node",
        grpc,
        &[&file("ca.pem"), &file("agent.pem"), &file("agent.key")],
    );
    let tls =
        orca_auth::tls::ClientTls::from_flags(true, Some(&file("ca.pem")), None, None).unwrap();
    let credential = Credential::basic("ops", "o-secret").unwrap().with_tls(tls);
    let agent_id = watch_agent(grpc, credential.clone(), "tls-node").await;
    log_says(&file("master.log"), "certificate=\"agent\"").await;

    // Without a certificate, with another CA's, or trusting another CA: refused, and each
    // says why.
    let anonymous = tls_agent(&dir, "no-cert", grpc, &[&file("ca.pem")]);
    log_says(
        &file("no-cert.log"),
        "verifies agents by their TLS client certificate",
    )
    .await;
    let other = LocalCa::new("another CA").unwrap();
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    other.write_cert(&other_dir.join("ca.pem")).unwrap();
    let (foreign_cert, foreign_key) = other
        .issue("agent", LocalCa::LOOPBACK, Validity::Current)
        .unwrap()
        .write(&other_dir, "agent")
        .unwrap();
    let foreign = tls_agent(
        &dir,
        "foreign-cert",
        grpc,
        &[&file("ca.pem"), &foreign_cert, &foreign_key],
    );
    log_says(
        &file("foreign-cert.log"),
        "refused this client's certificate",
    )
    .await;
    let distrustful = tls_agent(
        &dir,
        "wrong-ca",
        grpc,
        &[
            &other_dir.join("ca.pem"),
            &file("agent.pem"),
            &file("agent.key"),
        ],
    );
    log_says(
        &file("wrong-ca.log"),
        "not signed by a CA this client trusts",
    )
    .await;

    // Another agent of the same CA that claims the first one's id is refused.
    let impostor_work = dir.join("impostor-work");
    std::fs::create_dir_all(&impostor_work).unwrap();
    std::fs::write(impostor_work.join("agent_id"), &agent_id).unwrap();
    let impostor = tls_agent(
        &dir,
        "impostor",
        grpc,
        &[
            &file("ca.pem"),
            &file("impostor.pem"),
            &file("impostor.key"),
        ],
    );
    log_says(
        &file("impostor.log"),
        &format!("agent {agent_id} was admitted with the certificate of 'agent'"),
    )
    .await;

    // Renew the master's certificate in place: new connections get it (the master says so
    // at the first handshake after it noticed), and the agent's link is not dropped.
    ca.issue("orca-master-renewed", LocalCa::LOOPBACK, Validity::Current)
        .unwrap()
        .write(&dir, "master")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        watch_agent(grpc, credential.clone(), "tls-node").await;
        let log = read_log(&file("master.log"));
        if log.contains("TLS certificate files changed; serving the new ones") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the master did not take the renewed certificate:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_log = read_log(&file("tls-node.log"));
    assert_eq!(
        agent_log.matches("registered with the master").count(),
        1,
        "the agent's link was dropped by the renewal:\n{agent_log}"
    );
    drop((agent, anonymous, foreign, distrustful, impostor));
    support::agent::remove_task_cgroups(&format!("orca-e2e-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Follows the cluster with `credential` until an agent on `hostname` is registered; its id.
async fn watch_agent(grpc: SocketAddr, credential: Credential, hostname: &str) -> String {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let feed = tokio::spawn(feed::follow_as(grpc.to_string(), credential, tx));
    let id = first(&mut rx, &format!("agent {hostname}"), |e| match e {
        Event::Cluster(delta, _) => delta
            .upserted_agents
            .iter()
            .find(|a| a.hostname == hostname)
            .map(|a| a.id.clone()),
        Event::Link(LinkState::Down { reason, .. }) => panic!("refused: {reason}"),
        _ => None,
    })
    .await;
    feed.abort();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_up_tls_serves_over_tls_with_its_own_ca_and_the_agent_reports_with_its_certificate() {
    let dir = std::env::temp_dir().join(format!("orca-up-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = free_ports(2);
    let (grpc, http) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 1)),
    );
    let args = strings(&[
        "up",
        "--tls",
        "--headless",
        "--no-tasks",
        "--probe",
        "proc",
        "--state-dir",
        dir.to_str().unwrap(),
        "--grpc-addr",
        &grpc.to_string(),
        "--http-addr",
        &http.to_string(),
    ]);
    let log = dir.join("up.log");
    let _up = Daemon::start("orca", &args, &log);
    log_says(&log, "over TLS: clients trust").await;
    let ca = dir.join("tls").join("ca.pem");

    // A client trusting the CA sees the host the agent reported over its mutual-TLS stream.
    let tls = orca_auth::tls::ClientTls::from_flags(true, Some(&ca), None, None).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let feed = tokio::spawn(feed::follow_as(
        grpc.to_string(),
        Credential::default().with_tls(tls),
        tx,
    ));
    first(&mut rx, "the local host in the topology", |e| match e {
        Event::Topology(_, delta, _) => (!delta.upserted_nodes.is_empty()).then_some(()),
        Event::Link(LinkState::Down { reason, .. }) => panic!("refused: {reason}"),
        _ => None,
    })
    .await;
    feed.abort();

    // A plain client is not served; the master says why.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let plain = tokio::spawn(feed::follow(grpc.to_string(), tx));
    first(&mut rx, "a refusal", |e| match e {
        Event::Link(LinkState::Down { .. }) => Some(()),
        Event::Cluster(..) | Event::Topology(..) => panic!("a plain client was served"),
        _ => None,
    })
    .await;
    plain.abort();
    log_says(&log, "a client spoke without TLS to this TLS port").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_collector_takes_reports_from_certified_agents_for_authenticated_readers() {
    use orca_auth::tls::cert_gen::{LocalCa, Validity};
    let dir = std::env::temp_dir().join(format!("orca-tls-collector-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name);
    let ca = LocalCa::new("Orca test CA").unwrap();
    ca.write_cert(&file("ca.pem")).unwrap();
    for (name, common_name) in [("collector", "orca-collector"), ("agent", "agent")] {
        ca.issue(common_name, LocalCa::LOOPBACK, Validity::Current)
            .unwrap()
            .write(&dir, name)
            .unwrap();
    }
    std::fs::write(file("credentials"), "ops o-secret\n").unwrap();
    let base = free_ports(2);
    let (grpc, http) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 1)),
    );
    let path = |name: &str| file(name).to_string_lossy().into_owned();
    let args = strings(&[
        "--grpc-addr",
        &grpc.to_string(),
        "--http-addr",
        &http.to_string(),
        "--tls-cert",
        &path("collector.pem"),
        "--tls-key",
        &path("collector.key"),
        "--tls-ca",
        &path("ca.pem"),
        "--credentials",
        &path("credentials"),
    ]);
    let _collector = Daemon::start("orca-collector", &args, &file("collector.log"));
    log_says(&file("collector.log"), "collector serving").await;

    let no_tasks = ["--no-tasks"];
    let certified = tls_agent_with(
        &dir,
        "certified-host",
        grpc,
        &[&file("ca.pem"), &file("agent.pem"), &file("agent.key")],
        &no_tasks,
    );
    let uncertified = tls_agent_with(
        &dir,
        "uncertified-host",
        grpc,
        &[&file("ca.pem")],
        &no_tasks,
    );
    log_says(
        &file("uncertified-host.log"),
        "verifies agents by their TLS client certificate",
    )
    .await;

    // A reader trusting the CA, with a credential, sees the certified agent's host.
    let tls =
        orca_auth::tls::ClientTls::from_flags(true, Some(&file("ca.pem")), None, None).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let reader = tokio::spawn(feed::follow_as(
        grpc.to_string(),
        Credential::basic("ops", "o-secret")
            .unwrap()
            .with_tls(tls.clone()),
        tx,
    ));
    first(&mut rx, "the certified agent's host", |e| match e {
        Event::Topology(_, delta, _) => {
            assert!(
                delta
                    .upserted_nodes
                    .iter()
                    .all(|n| n.hostname != "uncertified-host"),
                "a report without a certificate was taken"
            );
            delta
                .upserted_nodes
                .iter()
                .any(|n| n.hostname == "certified-host")
                .then_some(())
        }
        Event::Link(LinkState::Down { reason, .. }) => panic!("refused: {reason}"),
        _ => None,
    })
    .await;
    reader.abort();

    // Without a credential the reader is told what is missing.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let anonymous = tokio::spawn(feed::follow_as(
        grpc.to_string(),
        Credential::default().with_tls(tls),
        tx,
    ));
    let reason = first(&mut rx, "a refusal", |e| match e {
        Event::Link(LinkState::Down { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;
    anonymous.abort();
    assert!(reason.contains("requires authentication"), "{reason}");
    drop((certified, uncertified));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_standalone_collector_refuses_to_listen_beyond_loopback_unlocked() {
    let out = std::process::Command::new(support::bin("orca-collector"))
        .args(["--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be reached from other hosts")
            && err.contains("--tls-ca")
            && err.contains("--credentials")
            && err.contains("--insecure"),
        "{err}"
    );
}
