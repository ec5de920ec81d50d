//! `zk-migrate` as a real process against real ensembles: killed with SIGKILL mid-bootstrap
//! and mid-stream, a ZooKeeper server crashing under it, an ensemble going away and coming
//! back, and bad input.
mod support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use orca_sync::{HiddenAclPolicy, engine::Status};
use orca_zk_local::Ensemble;
use support::zk::*;
use zookeeper_client::Client;

fn zk_migrate() -> std::path::PathBuf {
    support::bin("zk-migrate")
}

/// A `zk-migrate sync start` process and its API address.
struct Engine {
    child: Child,
    api: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, a: &str, b: &str, root: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("sync.yaml");
    std::fs::write(
        &path,
        format!(
            "source-zk: {a}\ntarget-zk: {b}\nroot: {root}\nstate-dir: {}\nsession-timeout-ms: 15000\n\
             validate-interval-s: 1\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

impl Engine {
    fn start(config: &Path) -> Self {
        let api = format!("127.0.0.1:{}", free_port());
        let child = Command::new(zk_migrate())
            .args(["sync", "start", "--config"])
            .arg(config)
            .args(["--listen", &api])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting zk-migrate");
        Self { child, api }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(zk_migrate())
            .args(["sync"])
            .args(args)
            .args(["--api", &self.api])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    async fn status(&self) -> Option<Status> {
        let api = self.api.clone();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&api).ok()?;
            use std::io::{Read, Write};
            write!(
                stream,
                "GET /api/v1/sync/status HTTP/1.0\r\nHost: x\r\n\r\n"
            )
            .ok()?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).ok()?;
            let body = reply.split("\r\n\r\n").nth(1)?;
            serde_json::from_str(body).ok()
        })
        .await
        .unwrap()
    }

    async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Status) -> bool,
    ) -> Status {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.status().await
                && ok(&s)
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn validate_identical(&self) -> bool {
        self.cli(&["validate"]).0 == 0
    }
}

async fn populate(client: &Client, root: &str, n: usize) {
    use futures::StreamExt as _;
    client.create(root, b"", &persistent()).await.unwrap();
    for d in 0..n.div_ceil(100) {
        client
            .create(&format!("{root}/d{d}"), b"", &persistent())
            .await
            .unwrap();
    }
    let mut writes = futures::stream::iter(0..n)
        .map(|i| async move {
            client
                .create(
                    &format!("{root}/d{}/n{i}", i / 100),
                    format!("v{i}").as_bytes(),
                    &persistent(),
                )
                .await
        })
        .buffer_unordered(500);
    while let Some(r) = writes.next().await {
        r.unwrap();
    }
}

async fn wait_identical(engine: &Engine, timeout: Duration) {
    wait_for("both ensembles identical", timeout, || async {
        engine.validate_identical()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_bootstrap_and_mid_stream_it_resumes_and_loses_nothing() {
    let root = unique_root("kill9");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    let dir = std::env::temp_dir().join(format!("orca-sync-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = write_config(&dir, &ea.connect_string(), &eb.connect_string(), &root);
    const N: usize = 30_000;
    populate(&a, &root, N).await;

    // Mid-bootstrap: after the first durable chunk, before the end.
    let engine = Engine::start(&config);
    let at_kill = engine
        .wait_status(
            "the first chunk of the copy",
            Duration::from_secs(60),
            |s| s.replicated_a_to_b >= 4096 || s.bootstrapped,
        )
        .await;
    assert!(
        !at_kill.bootstrapped,
        "the copy finished before the kill: {at_kill:?}"
    );
    engine.kill9();
    let engine = Engine::start(&config);
    let resumed = engine
        .wait_status("the resumed copy", Duration::from_secs(90), |s| {
            s.bootstrapped
        })
        .await;
    assert!(
        (resumed.replicated_a_to_b as usize) < N,
        "the resumed copy wrote {} znodes: it started over",
        resumed.replicated_a_to_b
    );
    wait_identical(&engine, Duration::from_secs(30)).await;
    // Its metrics, as a plain scrape gets them, pass promtool.
    let api: std::net::SocketAddr = engine.api.parse().unwrap();
    let exposition = tokio::task::spawn_blocking(move || {
        support::prometheus::get(api, "/metrics", None).unwrap()
    })
    .await
    .unwrap();
    assert!(exposition.contains("orca_sync_"), "{exposition}");
    support::prometheus::assert_promtool_passes("the sync engine's /metrics", &exposition);

    // Mid-stream: writers on both sides; the engine dies while they write and stays down
    // while they keep writing.
    let shared_root = root.clone();
    let writer = move |c: Client, side: &'static str, from: usize, to: usize| {
        let root = shared_root.clone();
        async move {
            for i in from..to {
                c.create(
                    &format!("{root}/{side}-{i}"),
                    format!("{side}{i}").as_bytes(),
                    &persistent(),
                )
                .await
                .unwrap();
                c.set_data(
                    &format!("{root}/d{}/n{}", i % 300, (i % 300) * 100),
                    format!("{side}-upd{i}").as_bytes(),
                    None,
                )
                .await
                .unwrap();
            }
        }
    };
    let writers = tokio::spawn({
        let (a, b, writer) = (a.clone(), b.clone(), writer.clone());
        async move { tokio::join!(writer(a, "a", 0, 200), writer(b, "b", 0, 200)) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.kill9();
    writers.await.unwrap();
    // Written while the engine was down.
    tokio::join!(
        writer(a.clone(), "a", 200, 300),
        writer(b.clone(), "b", 200, 300)
    );
    let engine = Engine::start(&config);
    wait_identical(&engine, Duration::from_secs(60)).await;
    // Continuous validation agrees (one that began after the trees were found identical), and
    // the CLI says so.
    let identical_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    engine
        .wait_status("a validation in sync", Duration::from_secs(30), |s| {
            s.last_validation
                .as_ref()
                .is_some_and(|v| v.at_unix_ms > identical_at && v.diverged == 0)
        })
        .await;
    let (code, out) = engine.cli(&["status"]);
    assert!(code == 0 && out.contains("in sync"), "{out}");
    for side in ["a", "b"] {
        for i in (0..300).step_by(13) {
            let path = format!("{root}/{side}-{i}");
            for (name, c) in [("A", &a), ("B", &b)] {
                let (data, _) = c
                    .get_data(&path)
                    .await
                    .unwrap_or_else(|e| panic!("{path} on {name}: {e}"));
                assert_eq!(data, format!("{side}{i}").as_bytes(), "{path} on {name}");
            }
        }
    }
    drop(engine);
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two ensembles of this test's own, so crashing their servers disturbs no other test.
fn own_ensembles(name: &str, base: u16) -> (Ensemble, Ensemble, PathBuf) {
    let dir = std::env::temp_dir().join(format!("orca-zk-{name}-{}", std::process::id()));
    let c = Ensemble::new(&dir, "c", 3, base);
    let d = Ensemble::new(&dir, "d", 3, base + 10);
    c.start(Duration::from_secs(60)).unwrap();
    d.start(Duration::from_secs(60)).unwrap();
    (c, d, dir)
}

struct StopEnsembles(Vec<Ensemble>, PathBuf);

impl Drop for StopEnsembles {
    fn drop(&mut self) {
        self.0.iter().for_each(Ensemble::stop);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_a_lost_ensemble_and_a_partition_end_in_catch_up() {
    let (c, d, dir) = own_ensembles("outage", 21850);
    let _stop = StopEnsembles(vec![c.clone(), d.clone()], dir.clone());
    let root = "/outage";
    let config = write_config(
        &dir.join("engine"),
        &c.connect_string(),
        &d.connect_string(),
        root,
    );
    let a = client(&c.connect_string()).await;
    let b = client(&d.connect_string()).await;
    let engine = Engine::start(&config);
    engine
        .wait_status("bootstrap", Duration::from_secs(30), |s| s.bootstrapped)
        .await;

    // A server of A crashes (SIGKILL) during replication and comes back.
    let write_batch = |c: Client, tag: &'static str| async move {
        for i in 0..100 {
            // Connection loss while a server dies: the client retries on another one.
            loop {
                match c
                    .create(&format!("{root}/{tag}-{i}"), tag.as_bytes(), &persistent())
                    .await
                {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    };
    let writes = tokio::spawn(write_batch(a.clone(), "crash"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.kill_node(1).unwrap();
    writes.await.unwrap();
    c.restart_node(1, Duration::from_secs(30)).unwrap();
    wait_identical(&engine, Duration::from_secs(60)).await;

    // Ensemble B goes away entirely (every server down) while A takes writes: a backlog.
    for n in 1..=3 {
        d.kill_node(n).unwrap();
    }
    write_batch(a.clone(), "outage").await;
    d.restart_stopped(Duration::from_secs(60)).unwrap();
    wait_identical(&engine, Duration::from_secs(90)).await;
    let (data, _) = b.get_data(&format!("{root}/outage-99")).await.unwrap();
    assert_eq!(data, b"outage");

    // Packets to B dropped for 5 s (shorter than the session): a backlog, then catch-up.
    let loss = PacketLoss::to(&d);
    write_batch(a.clone(), "partition").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(loss);
    wait_identical(&engine, Duration::from_secs(90)).await;
    let (data, _) = b.get_data(&format!("{root}/partition-99")).await.unwrap();
    assert_eq!(data, b"partition");
    let status = engine.status().await.unwrap();
    assert!(
        status.rescans >= 1,
        "a reconnect must be followed by a re-scan: {status:?}"
    );

    // Packets to B dropped for 20 s, longer than the session (15 s asked, at most 10 s granted
    // by these ensembles): B expires the engine's session. The engine opens a new one,
    // re-scans and carries on (it used to stop here).
    let rescans_before = status.rescans;
    let loss = PacketLoss::to(&d);
    write_batch(a.clone(), "expiry").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    drop(loss);
    wait_identical(&engine, Duration::from_secs(90)).await;
    // The test's own session with B may have expired too.
    let b = client(&d.connect_string()).await;
    let (data, _) = b.get_data(&format!("{root}/expiry-99")).await.unwrap();
    assert_eq!(data, b"expiry");
    let status = engine
        .wait_status(
            "a re-scan after the new session",
            Duration::from_secs(30),
            |s| s.rescans > rescans_before,
        )
        .await;
    assert!(status.bootstrapped, "{status:?}");
    // Still replicating live on the new session.
    a.create(&format!("{root}/after-expiry"), b"live", &persistent())
        .await
        .unwrap();
    wait_for(
        "the write after the expiry on B",
        Duration::from_secs(30),
        || {
            let b = b.clone();
            let path = format!("{root}/after-expiry");
            async move { b.get_data(&path).await.is_ok() }
        },
    )
    .await;
}

#[test]
fn bad_input_gets_a_clear_error() {
    let [ea, _] = ensembles();
    let dir = std::env::temp_dir().join(format!("orca-sync-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(zk_migrate()).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Invalid YAML.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "source-zk: [unclosed\n").unwrap();
    let (code, err) = run(&["sync", "start", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a valid sync configuration"), "{err}");
    // An unknown key is refused, not ignored.
    std::fs::write(&bad, "source-zk: a:1\ntarget-zk: b:1\nstrategy: whatever\n").unwrap();
    let (code, err) = run(&["sync", "start", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `strategy`"), "{err}");
    // An unreachable ensemble.
    let (code, err) = run(&[
        "sync",
        "start",
        "--source-zk",
        &ea.connect_string(),
        "--target-zk",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach ensemble B at 127.0.0.1:1"),
        "{err}"
    );
    // No engine running.
    let (code, err) = run(&["sync", "status", "--api", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no sync engine answers on 127.0.0.1:1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `zk-migrate sync start` as an operator runs it, without a YAML file (credentials from a
/// file): a node whose ACL its identity reads hidden stops the start with exit code 1 and
/// names the node, the permission and the policies (`refuse`, the default; `keep-target`
/// without a fallback for a node B lacks); with a fallback it starts, creates the node with
/// it, and `sync status` and `sync validate` (exit code 1: never equal) say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_acls_set_the_exit_code_and_status_under_each_policy() {
    const ORCA: &str = "orca:secret";
    let root = unique_root("acl-policy");
    let [ea, eb] = ensembles();
    let dir = std::env::temp_dir().join(format!("orca-sync-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let auth = dir.join("orca.auth");
    std::fs::write(&auth, ORCA).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let bob = client_with_digest(&ea.connect_string(), "bob:pw").await;
    let b = client_with_digest(&eb.connect_string(), ORCA).await;
    let orca_id = digest_of(ORCA);
    let read_only = [
        zookeeper_client::Acl::new(
            zookeeper_client::Permission::ALL,
            zookeeper_client::AuthId::new("digest", &digest_of("bob:pw")),
        ),
        zookeeper_client::Acl::new(
            zookeeper_client::Permission::READ,
            zookeeper_client::AuthId::new("digest", &orca_id),
        ),
    ];
    bob.create(&root, b"", &persistent()).await.unwrap();
    bob.create(&format!("{root}/open"), b"open", &persistent())
        .await
        .unwrap();
    let hidden = format!("{root}/hidden");
    bob.create(
        &hidden,
        b"hidden",
        &zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::new(&read_only)),
    )
    .await
    .unwrap();

    let api = format!("127.0.0.1:{}", support::masters::free_ports(1));
    let command = |policy: &[&str]| {
        let mut command = Command::new(zk_migrate());
        command
            .args(["sync", "start", "--source-zk", &ea.connect_string()])
            .args(["--target-zk", &eb.connect_string(), "--root", &root])
            .arg("--source-auth-file")
            .arg(&auth)
            .arg("--target-auth-file")
            .arg(&auth)
            .args(["--listen", &api])
            .args(policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    // Runs a start that must stop by itself; its exit code and what it said.
    let refused = |policy: &[&str]| {
        let mut child = command(policy).spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "zk-migrate {policy:?} did not stop by itself"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = refused(&[]);
    assert_eq!(code, 1, "{err}");
    for said in [hidden.as_str(), "ADMIN", "keep-target"] {
        assert!(err.contains(said), "{said} missing from: {err}");
    }
    let (code, err) = refused(&["--acl-hidden", "keep-target"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&hidden) && err.contains("acl-fallback"),
        "{err}"
    );
    // Nothing half-written: the open node landed, the hidden one did not.
    b.sync(&root).await.unwrap();
    assert!(
        b.check_stat(&format!("{root}/open"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(b.check_stat(&hidden).await.unwrap().is_none());

    let fallback = format!("digest:{orca_id}:cdrwa");
    let child = command(&["--acl-hidden", "keep-target", "--acl-fallback", &fallback])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let engine = Engine {
        child,
        api: api.clone(),
    };
    let status = engine
        .wait_status("the bootstrap", Duration::from_secs(60), |s| s.bootstrapped)
        .await;
    assert_eq!(
        (status.acl_policy, status.acl_fallback, status.acl_hidden),
        (HiddenAclPolicy::KeepTarget, 1, 1),
        "{status:?}"
    );
    let (acl, _) = b.get_acl(&hidden).await.unwrap();
    assert_eq!(
        acl,
        vec![zookeeper_client::Acl::new(
            zookeeper_client::Permission::ALL,
            zookeeper_client::AuthId::new("digest", &orca_id)
        )]
    );
    assert_eq!(b.get_data(&hidden).await.unwrap().0, b"hidden");
    let (code, out) = engine.cli(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("keep-target") && out.contains("1 created with acl-fallback"),
        "{out}"
    );
    let (code, out) = engine.cli(&["validate"]);
    assert_eq!(code, 1, "a hidden ACL is never reported equal: {out}");
    assert!(out.contains("acl-hidden") && out.contains(&hidden), "{out}");
    let (code, out) = engine.cli(&["stop"]);
    assert_eq!(code, 0, "{out}");
    drop(engine);
    delete_tree(&bob, &root).await;
    delete_tree(&b, &root).await;
    let _ = std::fs::remove_dir_all(&dir);
}
