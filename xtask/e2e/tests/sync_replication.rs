//! The sync engine against two real three-server ensembles.
mod support;

use std::{sync::Arc, time::Duration};

use orca_sync::{
    ConflictStrategy, HiddenAclPolicy, SyncConfig, SyncEngine, digest::TreeDigest, plan::Side,
};
use support::zk::*;
use zookeeper_client::{Acl, Acls, AuthId, CreateMode, Permission};

const USER: &str = "orca:secret";
/// `digest` id of orca:secret (base64 of SHA-1 of "orca:secret").
fn digest_id() -> String {
    digest_of(USER)
}

/// An engine replicating live (`run`) until `stop`.
struct Live {
    stop: tokio::sync::oneshot::Sender<()>,
    runner: tokio::task::JoinHandle<Result<(), orca_sync::engine::SyncError>>,
}

impl Live {
    /// Runs `engine` and waits for its bootstrap.
    async fn start(engine: Arc<SyncEngine>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(engine.clone().run(async {
            let _ = stopped.await;
        }));
        wait_for("bootstrap", Duration::from_secs(60), || async {
            engine.status().bootstrapped
        })
        .await;
        Self { stop, runner }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.runner.await.unwrap().unwrap();
    }
}

async fn engine_for(root: &str) -> Arc<SyncEngine> {
    engine(root, ConflictStrategy::LastWriteWins).await
}

async fn engine(root: &str, strategy: ConflictStrategy) -> Arc<SyncEngine> {
    let [a, b] = ensembles();
    let mut cfg = SyncConfig::new(a.connect_string(), b.connect_string());
    cfg.root = root.to_string();
    cfg.conflicts = strategy;
    cfg.source_auth = Some(USER.into());
    cfg.target_auth = Some(USER.into());
    SyncEngine::connect(cfg).await.expect("engine connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_copies_10000_nested_znodes_with_acls_and_digests_match() {
    let root = unique_root("bootstrap");
    let [ea, eb] = ensembles();
    let a = client_with_digest(&ea.connect_string(), USER).await;
    let b = client(&eb.connect_string()).await;
    a.create(&root, b"root", &persistent()).await.unwrap();
    let digest = digest_id();
    // Custom ACL: the orca digest may do everything, the world may only read.
    let custom = [
        Acl::new(Permission::ALL, AuthId::new("digest", &digest)),
        Acl::new(Permission::READ, AuthId::anyone()),
    ];
    let custom_opts = CreateMode::Persistent.with_acls(Acls::new(&custom));
    let started = std::time::Instant::now();
    // 100 directories x 98 children, plus 100 grandchildren: 10,000 znodes below the root.
    let mut writes = Vec::new();
    for d in 0..100 {
        let dir = format!("{root}/dir-{d:03}");
        a.create(&dir, format!("d{d}").as_bytes(), &persistent())
            .await
            .unwrap();
        for c in 0..98 {
            let path = format!("{dir}/node-{c:03}");
            let opts = if c % 10 == 0 {
                custom_opts.clone()
            } else {
                persistent()
            };
            let data = format!("value {d}/{c}").into_bytes();
            let a = &a;
            writes.push(async move { a.create(&path, &data, &opts).await.map(|_| ()) });
        }
    }
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    for d in 0..100 {
        let deep = format!("{root}/dir-{d:03}/node-001/leaf");
        a.create(&deep, &vec![d as u8; 512], &persistent())
            .await
            .unwrap();
    }
    eprintln!("populated A in {:?}", started.elapsed());
    let engine = engine(&root, ConflictStrategy::LastWriteWins).await;
    let started = std::time::Instant::now();
    let report = engine.bootstrap().await.expect("bootstrap");
    eprintln!("bootstrap in {:?}", started.elapsed());
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_eq!(report.nodes_a, 10_001);
    // 10,000 creates, and the root's data (the engine created an empty root on B).
    assert_eq!(report.written_to_b, 10_001);
    let differences = engine.validate().await.unwrap();
    assert!(differences.is_empty(), "after bootstrap: {differences:?}");
    let (ta, tb) = engine.read_both().await.unwrap();
    assert_eq!(
        TreeDigest::of(&ta).subtree(&root),
        TreeDigest::of(&tb).subtree(&root)
    );
    // ACLs were copied exactly: B refuses an anonymous write to a custom-ACL node.
    let (acl, _) = b
        .get_acl(&format!("{root}/dir-007/node-010"))
        .await
        .unwrap();
    assert_eq!(acl.len(), 2, "{acl:?}");
    let denied = b
        .set_data(&format!("{root}/dir-007/node-010"), b"x", None)
        .await;
    assert_eq!(denied, Err(zookeeper_client::Error::NoAuth));
    delete_tree(&a, &root).await;
    delete_tree(&client_with_digest(&eb.connect_string(), USER).await, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_both_sides_converge_without_loss() {
    let root = unique_root("concurrent");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    let engine = engine(&root, ConflictStrategy::LastWriteWins).await;
    let live = Live::start(engine.clone()).await;
    // Writers on both sides at once: creates at several depths, then updates.
    let write = |client: zookeeper_client::Client, side: &'static str| {
        let root = root.clone();
        async move {
            for i in 0..200 {
                let dir = format!("{root}/{side}-{}", i % 10);
                let _ = client.create(&dir, b"", &persistent()).await;
                let path = format!("{dir}/n-{i}");
                client
                    .create(&path, format!("{side} {i}").as_bytes(), &persistent())
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    client
                        .set_data(&path, format!("{side} {i} v2").as_bytes(), None)
                        .await
                        .unwrap();
                }
            }
        }
    };
    tokio::join!(write(a.clone(), "a"), write(b.clone(), "b"));
    wait_for(
        "both ensembles identical",
        Duration::from_secs(30),
        || async {
            engine
                .validate()
                .await
                .map(|d| d.is_empty())
                .unwrap_or(false)
        },
    )
    .await;
    // Nothing lost: every write is on both sides with its last value.
    for side in ["a", "b"] {
        for i in (0..200).step_by(7) {
            let path = format!("{root}/{side}-{}/n-{i}", i % 10);
            let want = if i % 3 == 0 {
                format!("{side} {i} v2")
            } else {
                format!("{side} {i}")
            };
            for (name, c) in [("A", &a), ("B", &b)] {
                let (data, _) = c
                    .get_data(&path)
                    .await
                    .unwrap_or_else(|e| panic!("{path} on {name}: {e}"));
                assert_eq!(String::from_utf8_lossy(&data), want, "{path} on {name}");
            }
        }
    }
    let status = engine.status();
    assert!(
        status.replicated_a_to_b >= 200 && status.replicated_b_to_a >= 200,
        "{status:?}"
    );
    assert_eq!(status.errors, 0, "{status:?}");
    // A subtree deleted on B disappears from A.
    delete_tree(&b, &format!("{root}/b-3")).await;
    wait_for(
        "subtree delete replicated",
        Duration::from_secs(15),
        || async {
            a.check_stat(&format!("{root}/b-3"))
                .await
                .map(|s| s.is_none())
                .unwrap_or(false)
        },
    )
    .await;
    assert!(engine.validate().await.unwrap().is_empty());
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}

/// Both sides change one znode after they agreed: each strategy settles it its own way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_settled_by_each_strategy() {
    for strategy in [
        ConflictStrategy::LastWriteWins,
        ConflictStrategy::SourceWins,
        ConflictStrategy::Manual,
    ] {
        let root = unique_root(&format!("conflict-{strategy:?}").to_lowercase());
        let [ea, eb] = ensembles();
        let a = client(&ea.connect_string()).await;
        let b = client(&eb.connect_string()).await;
        a.create(&root, b"", &persistent()).await.unwrap();
        let path = format!("{root}/config");
        a.create(&path, b"v1", &persistent()).await.unwrap();
        let audit = std::env::temp_dir().join(format!(
            "orca-audit-{}-{strategy:?}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&audit);
        let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
        cfg.root = root.clone();
        cfg.conflicts = strategy;
        cfg.audit_log = Some(audit.clone());
        let engine = SyncEngine::connect(cfg).await.unwrap();
        engine.bootstrap().await.unwrap();
        // A first, then B a little later (B's write is the last one by server clock).
        a.set_data(&path, b"from a", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.set_data(&path, b"from b", None).await.unwrap();
        let report = engine.reconcile().await.unwrap();
        assert_eq!(report.conflicts, 1, "{strategy:?}: {report:?}");
        // Every conflict is in the audit log, as JSON with its path.
        let logged = std::fs::read_to_string(&audit).unwrap();
        let entry: serde_json::Value =
            serde_json::from_str(logged.lines().next().unwrap()).unwrap();
        assert_eq!(entry["path"], path.as_str(), "{logged}");
        let _ = std::fs::remove_file(&audit);
        let on_a = a.get_data(&path).await.unwrap().0;
        let on_b = b.get_data(&path).await.unwrap().0;
        match strategy {
            ConflictStrategy::LastWriteWins => {
                assert_eq!((&on_a[..], &on_b[..]), (&b"from b"[..], &b"from b"[..]));
            }
            ConflictStrategy::SourceWins => {
                assert_eq!((&on_a[..], &on_b[..]), (&b"from a"[..], &b"from a"[..]));
            }
            ConflictStrategy::Manual => {
                assert_eq!(
                    (&on_a[..], &on_b[..]),
                    (&b"from a"[..], &b"from b"[..]),
                    "held: untouched"
                );
                let held = engine.held_conflicts();
                assert_eq!(held.len(), 1);
                assert_eq!(held[0].path, path);
                engine.resolve(&path, Side::B).await.unwrap();
                assert_eq!(a.get_data(&path).await.unwrap().0, b"from b");
                assert!(engine.held_conflicts().is_empty());
                assert!(engine.validate().await.unwrap().is_empty());
            }
        }
        delete_tree(&a, &root).await;
        delete_tree(&b, &root).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ensemble_is_a_clear_error() {
    let [a, _] = ensembles();
    let mut cfg = SyncConfig::new(a.connect_string(), "127.0.0.1:1");
    cfg.session_timeout_ms = 2000;
    let err = SyncEngine::connect(cfg)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("cannot reach ensemble B at 127.0.0.1:1"),
        "{err}"
    );
    let mut cfg = SyncConfig::new(a.connect_string(), a.connect_string());
    cfg.excludes.push("relative/path".into());
    let err = SyncEngine::connect(cfg)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("not an absolute znode path"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_and_large_nodes_replicate() {
    let root = unique_root("auth");
    let [ea, eb] = ensembles();
    let a = client_with_digest(&ea.connect_string(), USER).await;
    let b = client(&eb.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    // Only the orca digest may read this node.
    let private = [Acl::new(
        Permission::ALL,
        AuthId::new("digest", &digest_id()),
    )];
    a.create(
        &format!("{root}/private"),
        b"secret",
        &CreateMode::Persistent.with_acls(Acls::new(&private)),
    )
    .await
    .unwrap();
    // Near ZooKeeper's 1 MiB jute.maxbuffer: alone in its own request.
    let big = vec![7u8; 1_000_000];
    a.create(&format!("{root}/big"), &big, &persistent())
        .await
        .unwrap();

    let [ca, cb] = ensembles();
    let mut cfg = SyncConfig::new(ca.connect_string(), cb.connect_string());
    cfg.root = root.clone();
    cfg.source_auth = Some("orca:wrong".into());
    let engine = SyncEngine::connect(cfg.clone()).await.unwrap();
    let err = engine.bootstrap().await.expect_err("must fail").to_string();
    assert!(
        err.contains(&format!("no permission to read {root}/private on A")),
        "{err}"
    );
    // Nothing was written, nothing lost.
    assert!(
        b.check_stat(&format!("{root}/big"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        a.get_data(&format!("{root}/private")).await.unwrap().0,
        b"secret"
    );

    cfg.source_auth = Some(USER.into());
    cfg.target_auth = Some(USER.into());
    let engine = SyncEngine::connect(cfg).await.unwrap();
    let report = engine.bootstrap().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    // The server this client talks to may be a follower a write has not reached yet.
    b.sync(&root).await.unwrap();
    assert_eq!(b.get_data(&format!("{root}/big")).await.unwrap().0, big);
    assert!(engine.validate().await.unwrap().is_empty());
    delete_tree(&a, &root).await;
    delete_tree(&client_with_digest(&eb.connect_string(), USER).await, &root).await;
}

/// A node whose ACL gives another user (bob) rights the sync's identity (orca) cannot
/// administer: ZooKeeper returns its digest hidden (`digest bob:x`). Such a node is never
/// written with that ACL: the bootstrap copies everything else and stops naming it and the
/// permission needed; validation never calls it equal; once orca gets ADMIN the run resumes and
/// copies it exactly; a node whose ACL is taken away while live is left as B had it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_acl_is_read_hidden_is_never_copied_nor_reported_equal() {
    const BOB: &str = "bob:bobs-password";
    let root = unique_root("hidden-acl");
    let [ea, eb] = ensembles();
    let a = client_with_digest(&ea.connect_string(), USER).await;
    let bob = client_with_digest(&ea.connect_string(), BOB).await;
    let b = client_with_digest(&eb.connect_string(), USER).await;
    let (orca_id, bob_id) = (digest_id(), digest_of(BOB));
    let acl = |orca: Permission| {
        [
            Acl::new(Permission::ALL, AuthId::new("digest", &bob_id)),
            Acl::new(orca, AuthId::new("digest", &orca_id)),
        ]
    };
    let (administered, read_only) = (acl(Permission::ALL), acl(Permission::READ));
    // Bob creates them all (only he may create below a node orca can only read).
    let create = |path: String, acls: Vec<Acl>| {
        let bob = bob.clone();
        async move {
            bob.create(
                &path,
                path.as_bytes(),
                &CreateMode::Persistent.with_acls(Acls::new(&acls)),
            )
            .await
            .unwrap();
        }
    };
    let world = Acls::anyone_all().to_vec();
    create(root.clone(), world.clone()).await;
    create(format!("{root}/world"), world.clone()).await;
    create(format!("{root}/admin"), administered.to_vec()).await;
    create(format!("{root}/hidden"), read_only.to_vec()).await;
    create(format!("{root}/hidden/child"), world.clone()).await;
    create(format!("{root}/mixed"), world.clone()).await;
    create(format!("{root}/mixed/open"), world.clone()).await;
    create(format!("{root}/mixed/hidden"), read_only.to_vec()).await;

    let engine = engine(&root, ConflictStrategy::LastWriteWins).await;
    let err = engine
        .bootstrap()
        .await
        .expect_err("hidden ACLs stop the bootstrap");
    let text = err.to_string();
    for needed in [
        format!("{root}/hidden"),
        format!("{root}/mixed/hidden"),
        "ADMIN".to_owned(),
        "digest user:x".to_owned(),
    ] {
        assert!(text.contains(&needed), "{needed} missing from: {text}");
    }
    // Everything else landed, exactly; nothing below a refused node.
    b.sync(&root).await.unwrap();
    for (path, there) in [
        ("world", true),
        ("admin", true),
        ("mixed/open", true),
        ("hidden", false),
        ("hidden/child", false),
        ("mixed/hidden", false),
    ] {
        let path = format!("{root}/{path}");
        assert_eq!(
            b.check_stat(&path).await.unwrap().is_some(),
            there,
            "{path} on B"
        );
    }
    let (acl_b, _) = b.get_acl(&format!("{root}/admin")).await.unwrap();
    let (acl_a, _) = a.get_acl(&format!("{root}/admin")).await.unwrap();
    assert_eq!(acl_b, acl_a, "copied exactly");
    assert!(acl_b.iter().any(|e| e.id() == bob_id), "{acl_b:?}");
    let status = engine.status();
    assert!(!status.bootstrapped);
    assert_eq!(status.acl_hidden, 2, "{:?}", status.acl_hidden_paths);
    assert!(status.acl_refused >= 3, "{}", status.acl_refused);
    assert!(
        engine
            .metrics_text()
            .contains("orca_sync_acl_hidden_nodes 2"),
        "{}",
        engine.metrics_text()
    );
    let differences = engine.validate().await.unwrap();
    assert!(
        differences.contains(&orca_sync::digest::Difference::AclHidden {
            path: format!("{root}/hidden")
        }),
        "{differences:?}"
    );
    let (validation, _) = engine.check().await.unwrap();
    assert_eq!(validation.acl_hidden, 2, "{validation:?}");
    assert!(!validation.in_sync());

    // Bob gives orca ADMIN: a new run resumes and copies both exactly.
    for path in ["hidden", "mixed/hidden"] {
        bob.set_acl(&format!("{root}/{path}"), &administered, None)
            .await
            .unwrap();
    }
    let engine = engine_for(&root).await;
    engine.bootstrap().await.expect("nothing hidden now");
    b.sync(&root).await.unwrap();
    let (acl_b, _) = b.get_acl(&format!("{root}/hidden")).await.unwrap();
    assert_eq!(acl_b, administered.to_vec());
    assert!(
        b.check_stat(&format!("{root}/hidden/child"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(engine.validate().await.unwrap().is_empty());

    // Live: bob takes ADMIN away from orca and changes the data; B keeps what it had.
    let live = Live::start(engine.clone()).await;
    let path = format!("{root}/admin");
    bob.set_acl(&path, &read_only, None).await.unwrap();
    bob.set_data(&path, b"changed by bob", None).await.unwrap();
    wait_for(
        "the live round's refusal",
        Duration::from_secs(30),
        || async { engine.status().acl_hidden == 1 },
    )
    .await;
    b.sync(&root).await.unwrap();
    assert_eq!(b.get_data(&path).await.unwrap().0, path.as_bytes());
    assert_eq!(b.get_acl(&path).await.unwrap().0, administered.to_vec());
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}

/// `acl-hidden: keep-target`: a node whose ACL orca reads hidden (`digest bob:x`) has its
/// data copied and B's ACL kept; one B lacks is created with `acl-fallback` (refused without
/// one, and nothing below it is created); the two are compared by data, so a change on either
/// side flows both ways without either side's ACL being written; validation still never
/// calls them equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_target_copies_the_data_of_a_hidden_acl_node_and_keeps_b_s_acl() {
    const BOB: &str = "bob:bobs-password";
    let root = unique_root("keep-target");
    let [ea, eb] = ensembles();
    let a = client_with_digest(&ea.connect_string(), USER).await;
    let bob = client_with_digest(&ea.connect_string(), BOB).await;
    let b = client_with_digest(&eb.connect_string(), USER).await;
    let (orca_id, bob_id) = (digest_id(), digest_of(BOB));
    // orca may read and write but not administer: its reads show bob's digest hidden.
    let writable = [
        Acl::new(Permission::ALL, AuthId::new("digest", &bob_id)),
        Acl::new(
            Permission::READ | Permission::WRITE,
            AuthId::new("digest", &orca_id),
        ),
    ];
    let administered = [
        Acl::new(Permission::ALL, AuthId::new("digest", &bob_id)),
        Acl::new(Permission::ALL, AuthId::new("digest", &orca_id)),
    ];
    let world = Acls::anyone_all().to_vec();
    for (path, acl) in [
        ("", &world[..]),
        ("/admin", &administered[..]),
        ("/flip", &administered[..]),
        ("/kept", &writable[..]),
        ("/new", &writable[..]),
        ("/new/child", &world[..]),
    ] {
        let path = format!("{root}{path}");
        bob.create(
            &path,
            path.as_bytes(),
            &CreateMode::Persistent.with_acls(Acls::new(acl)),
        )
        .await
        .unwrap();
    }
    // B already has /kept, with its own ACL and stale data.
    let b_acl = [Acl::new(Permission::ALL, AuthId::new("digest", &orca_id))];
    b.create(
        &root,
        b"",
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    b.create(
        &format!("{root}/kept"),
        b"stale",
        &CreateMode::Persistent.with_acls(Acls::new(&b_acl)),
    )
    .await
    .unwrap();
    let config = |fallback: Vec<String>| {
        let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
        cfg.root = root.clone();
        cfg.source_auth = Some(USER.into());
        cfg.target_auth = Some(USER.into());
        cfg.acl_hidden = HiddenAclPolicy::KeepTarget;
        cfg.acl_fallback = fallback;
        cfg
    };
    let kept = format!("{root}/kept");

    // Without a fallback: /kept is copied (data only), /new has nothing to keep: refused,
    // named, and nothing below it created.
    let engine = SyncEngine::connect(config(vec![])).await.unwrap();
    let err = engine
        .bootstrap()
        .await
        .expect_err("/new has no ACL to keep");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{root}/new")) && text.contains("acl-fallback"),
        "{text}"
    );
    assert!(!text.contains(&kept), "{text}");
    b.sync(&root).await.unwrap();
    assert_eq!(b.get_data(&kept).await.unwrap().0, kept.as_bytes());
    assert_eq!(
        b.get_acl(&kept).await.unwrap().0,
        b_acl.to_vec(),
        "B's ACL kept"
    );
    for path in ["new", "new/child"] {
        assert!(
            b.check_stat(&format!("{root}/{path}"))
                .await
                .unwrap()
                .is_none(),
            "{path} on B"
        );
    }
    let status = engine.status();
    assert_eq!(
        (status.acl_policy, status.acl_kept),
        (HiddenAclPolicy::KeepTarget, 1)
    );
    drop(engine);

    // With a fallback: /new is created with it, its child exactly.
    // In scheme order, as the test sorts what B returns.
    let fallback = [
        Acl::new(Permission::ALL, AuthId::new("digest", &orca_id)),
        Acl::new(Permission::READ, AuthId::new("world", "anyone")),
    ];
    let engine = SyncEngine::connect(config(vec![
        "world:anyone:r".into(),
        format!("digest:{orca_id}:cdrwa"),
    ]))
    .await
    .unwrap();
    engine
        .bootstrap()
        .await
        .expect("everything has an ACL to write");
    b.sync(&root).await.unwrap();
    let mut new_acl = b.get_acl(&format!("{root}/new")).await.unwrap().0;
    new_acl.sort_by_key(|acl| acl.scheme().to_string());
    assert_eq!(new_acl, fallback.to_vec());
    assert_eq!(
        b.get_data(&format!("{root}/new/child")).await.unwrap().0,
        format!("{root}/new/child").as_bytes()
    );
    let status = engine.status();
    assert_eq!(
        (status.acl_fallback, status.acl_hidden),
        (1, 2),
        "{status:?}"
    );
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("orca_sync_acl_fallback_total 1")
            && metrics.contains("orca_sync_acl_hidden_nodes 2"),
        "{metrics}"
    );
    // The data agrees; the ACLs cannot be compared, so the trees are never called equal.
    let (validation, diverged) = engine.check().await.unwrap();
    assert_eq!(
        (validation.acl_hidden, validation.diverged),
        (2, 0),
        "{diverged:?}"
    );
    assert!(!validation.in_sync());

    // Live, both ways, no ACL written on either side.
    let live = Live::start(engine.clone()).await;
    bob.set_data(&kept, b"from A", None).await.unwrap();
    wait_for("A's change on B", Duration::from_secs(30), || async {
        b.get_data(&kept).await.unwrap().0 == b"from A"
    })
    .await;
    assert_eq!(b.get_acl(&kept).await.unwrap().0, b_acl.to_vec());
    b.set_data(&kept, b"from B", None).await.unwrap();
    wait_for("B's change on A", Duration::from_secs(30), || async {
        a.get_data(&kept).await.unwrap().0 == b"from B"
    })
    .await;
    assert_eq!(bob.get_acl(&kept).await.unwrap().0, writable.to_vec());
    // An ACL change while live: bob takes ADMIN on /admin away from orca (copied exactly
    // so far) and writes to it; B gets the data and keeps the ACL it had.
    let admin = format!("{root}/admin");
    assert_eq!(b.get_acl(&admin).await.unwrap().0, administered.to_vec());
    bob.set_acl(&admin, &writable, None).await.unwrap();
    bob.set_data(&admin, b"no ADMIN for orca", None)
        .await
        .unwrap();
    wait_for("the change on B", Duration::from_secs(30), || async {
        b.get_data(&admin).await.unwrap().0 == b"no ADMIN for orca"
    })
    .await;
    assert_eq!(b.get_acl(&admin).await.unwrap().0, administered.to_vec());
    wait_for(
        "/admin listed as hidden",
        Duration::from_secs(30),
        || async { engine.status().acl_hidden == 3 },
    )
    .await;
    // Settled: nothing flows back and forth (no copy after the ones above).
    let replicated = engine.status().replicated_a_to_b + engine.status().replicated_b_to_a;
    let (validation, _) = engine.check().await.unwrap();
    assert_eq!(validation.diverged, 0);
    assert_eq!(
        engine.status().replicated_a_to_b + engine.status().replicated_b_to_a,
        replicated
    );
    live.stop().await;
    // An ACL change alone (no watch fires; a pass sees it): compared by data, the copies
    // agree, so nothing is written, pass after pass, and B keeps its ACL.
    let flip = format!("{root}/flip");
    let kept_before = engine.status().acl_kept;
    bob.set_acl(&flip, &writable, None).await.unwrap();
    for _ in 0..2 {
        engine.bootstrap().await.unwrap();
    }
    assert_eq!(engine.status().acl_kept, kept_before);
    assert_eq!(b.get_acl(&flip).await.unwrap().0, administered.to_vec());
    delete_tree(&bob, &root).await;
    delete_tree(&b, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_are_skipped_by_default_and_mirrored_one_way_on_request() {
    let root = unique_root("ephemeral");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    let owner = client(&ea.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    owner
        .create(&format!("{root}/e1"), b"worker 1", &ephemeral)
        .await
        .unwrap();

    // Default policy: not copied at all.
    let skip = engine(&root, ConflictStrategy::LastWriteWins).await;
    skip.bootstrap().await.unwrap();
    assert!(b.check_stat(&format!("{root}/e1")).await.unwrap().is_none());
    // Left out by policy, it is no difference either.
    let differences = skip.validate().await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    drop(skip);

    // Mirror: copied as an ephemeral of the engine's own session, never as a persistent node.
    let [ca, cb] = ensembles();
    let mut cfg = SyncConfig::new(ca.connect_string(), cb.connect_string());
    cfg.root = root.clone();
    cfg.ephemerals = orca_sync::EphemeralPolicy::Mirror;
    let engine = SyncEngine::connect(cfg).await.unwrap();
    let live = Live::start(engine.clone()).await;
    owner
        .create(&format!("{root}/e2"), b"worker 2", &ephemeral)
        .await
        .unwrap();
    for name in ["e1", "e2"] {
        let path = format!("{root}/{name}");
        wait_for(
            &format!("{path} mirrored on B"),
            Duration::from_secs(15),
            || async { b.check_stat(&path).await.ok().flatten().is_some() },
        )
        .await;
        let (data, stat) = b.get_data(&path).await.unwrap();
        assert_ne!(stat.ephemeral_owner, 0, "{path} must stay ephemeral on B");
        assert_eq!(data, format!("worker {}", &name[1..]).as_bytes());
    }
    // The owner's session ends: its nodes go on A, and their mirrors go on B.
    drop(owner);
    for name in ["e1", "e2"] {
        let path = format!("{root}/{name}");
        wait_for(
            &format!("{path} gone from B"),
            Duration::from_secs(30),
            || async {
                b.check_stat(&path)
                    .await
                    .map(|s| s.is_none())
                    .unwrap_or(false)
            },
        )
        .await;
        assert!(
            a.check_stat(&path).await.unwrap().is_none(),
            "{path} came back on A"
        );
    }
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}

/// Re-scans (after a reconnect, on the timer) read both whole trees, which takes long on a big
/// tree; live rounds go on meanwhile instead of waiting for them.
/// An engine restarted with its state while its earlier session still lives (a crash: the
/// servers expire that session only after its timeout) takes over the mirrors that session
/// owns, each replaced in one transaction: a client watching a mirror (a master watching
/// its predecessor) sees it deleted and finds it there again at once, owned by the new run,
/// so the earlier session's expiry can no longer take it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_takes_over_its_earlier_mirrors_without_a_gap() {
    let root = unique_root("takeover");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    let owner = client(&ea.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    let path = format!("{root}/contender");
    owner
        .create(
            &path,
            b"master 1",
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    let state = std::env::temp_dir().join(format!("orca-sync-takeover-{}", std::process::id()));
    let config = || {
        let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
        cfg.root = root.clone();
        cfg.ephemerals = orca_sync::EphemeralPolicy::Mirror;
        cfg.state_dir = Some(state.clone());
        cfg
    };
    let first = SyncEngine::connect(config()).await.unwrap();
    let live = Live::start(first.clone()).await;
    wait_for("the mirror on B", Duration::from_secs(15), || async {
        b.check_stat(&path).await.ok().flatten().is_some()
    })
    .await;
    live.stop().await;
    let (_, before, watcher) = b.get_and_watch_data(&path).await.unwrap();
    // The first run's sessions stay open, as a crashed engine's do until they expire.
    std::mem::forget(first);

    let second = SyncEngine::connect(config()).await.unwrap();
    let live = Live::start(second.clone()).await;
    let event = tokio::time::timeout(Duration::from_secs(30), watcher.changed())
        .await
        .expect("the mirror taken over");
    assert_eq!(event.event_type, zookeeper_client::EventType::NodeDeleted);
    let after = b
        .check_stat(&path)
        .await
        .unwrap()
        .expect("the mirror is there again the moment its deletion is seen");
    assert_ne!(after.ephemeral_owner, before.ephemeral_owner);
    assert_ne!(after.ephemeral_owner, 0);
    assert_eq!(b.get_data(&path).await.unwrap().0, b"master 1");
    // Taken over once: the next look agrees.
    let (validation, _) = second.check().await.unwrap();
    assert_eq!(validation.diverged, 0, "{validation:?}");
    assert_eq!(
        b.check_stat(&path)
            .await
            .unwrap()
            .map(|s| s.ephemeral_owner),
        Some(after.ephemeral_owner)
    );
    live.stop().await;
    drop(owner);
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_rounds_go_on_while_a_re_scan_runs() {
    let root = unique_root("rescan");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    let mut writes = Vec::new();
    for d in 0..200 {
        let dir = format!("{root}/dir-{d:03}");
        a.create(&dir, b"", &persistent()).await.unwrap();
        for c in 0..100 {
            let path = format!("{dir}/node-{c:03}");
            let a = &a;
            writes.push(async move { a.create(&path, b"v0", &persistent()).await.map(|_| ()) });
        }
    }
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
    cfg.root = root.clone();
    // Re-scans back to back: one starts every second.
    cfg.rescan_interval_s = 1;
    let engine = SyncEngine::connect(cfg).await.expect("engine connects");
    let live = Live::start(engine.clone()).await;
    // The first re-scan reads every ACL on B (the copies are new to the engine's cache); the
    // ones after it read both trees as every later re-scan does.
    wait_for("a first re-scan", Duration::from_secs(120), || async {
        engine.status().last_rescan_ms > 0
    })
    .await;
    // Writes on A, one at a time, each timed until B has it; kept are those made while a
    // re-scan was running.
    let mut during_scan = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut i = 0;
    while during_scan.len() < 15 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} writes landed while a re-scan ran",
            during_scan.len()
        );
        let path = format!("{root}/dir-{:03}/node-{:03}", i % 200, (i / 200) % 100);
        let value = format!("v{i}");
        let scanning = engine.status().rescanning;
        let written = std::time::Instant::now();
        a.set_data(&path, value.as_bytes(), None).await.unwrap();
        loop {
            let (data, _) = b.get_data(&path).await.unwrap();
            if data == value.as_bytes() {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(30),
                "{path} never reached B"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if scanning {
            during_scan.push(written.elapsed());
        }
        i += 1;
        // Spread over several re-scans.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // How long a re-scan like those takes: the shortest of the next two.
    let mut scan = Duration::MAX;
    for _ in 0..2 {
        let started = engine.status().rescans;
        wait_for("a re-scan", Duration::from_secs(120), || async {
            let s = engine.status();
            s.rescans > started && !s.rescanning
        })
        .await;
        scan = scan.min(Duration::from_millis(engine.status().last_rescan_ms));
    }
    during_scan.sort();
    let median = during_scan[during_scan.len() / 2];
    eprintln!(
        "a re-scan takes {scan:?}; {i} writes, {} of them during a re-scan: replication \
         median {median:?}, max {:?}",
        during_scan.len(),
        during_scan[during_scan.len() - 1]
    );
    // Waiting for the re-scan in progress would put the median near half a re-scan.
    assert!(
        median < scan / 4,
        "median replication {median:?} during re-scans of {scan:?}"
    );
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}

/// ACL changes fire no watch: the re-scan carries them over, and walks, which take ACLs from a
/// cache keyed by each node's ACL version, still see every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_changes_reach_the_other_side_by_the_re_scan() {
    let root = unique_root("acl");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    let path = format!("{root}/guarded");
    a.create(&path, b"v", &persistent()).await.unwrap();
    let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
    cfg.root = root.clone();
    cfg.rescan_interval_s = 1;
    let engine = SyncEngine::connect(cfg).await.expect("engine connects");
    let live = Live::start(engine.clone()).await;
    // Read both trees once, so both caches hold the node's first ACL.
    assert!(engine.validate().await.unwrap().is_empty());
    let read_only = [Acl::new(
        Permission::READ | Permission::ADMIN,
        AuthId::anyone(),
    )];
    let all = Acls::anyone_all();
    for acl in [&read_only[..], &all[..]] {
        a.set_acl(&path, acl, None).await.unwrap();
        wait_for("the ACL on B", Duration::from_secs(30), || async {
            b.get_acl(&path).await.unwrap().0.as_slice() == acl
        })
        .await;
        let differences = engine.validate().await.unwrap();
        assert!(differences.is_empty(), "{differences:?}");
    }
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}

/// A watch event ZooKeeper loses (ZOOKEEPER-4698) leaves the trees different with nothing on
/// its way: continuous validation finds the path and has it repaired. Changes on their way
/// while it compares are not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_finds_and_repairs_what_a_lost_event_left_behind() {
    let root = unique_root("validation");
    let [ea, eb] = ensembles();
    let a = client(&ea.connect_string()).await;
    let b = client(&eb.connect_string()).await;
    a.create(&root, b"", &persistent()).await.unwrap();
    for i in 0..200 {
        a.create(&format!("{root}/n{i:03}"), b"v0", &persistent())
            .await
            .unwrap();
    }
    let mut cfg = SyncConfig::new(ea.connect_string(), eb.connect_string());
    cfg.root = root.clone();
    cfg.validate_interval_s = 1;
    // No re-scan comes to the rescue.
    cfg.rescan_interval_s = 3600;
    let engine = SyncEngine::connect(cfg).await.expect("engine connects");
    let live = Live::start(engine.clone()).await;

    // Writes on both sides while validations run: none of it is divergence.
    let validations = engine.status().validations;
    let writes = async {
        let mut i = 0;
        while engine.status().validations < validations + 3 {
            // Twenty at a time, on both sides: many changes are on their way at any moment.
            let batch = (0..20).map(|k| {
                let n = i + k;
                let (side, name) = if n % 2 == 0 { (&a, "A") } else { (&b, "B") };
                // Never n000: a live round still on its way with it could copy the change
                // whose event is lost below.
                let path = format!("{root}/n{:03}", 1 + n % 199);
                async move {
                    side.set_data(&path, format!("{name} {n}").as_bytes(), None)
                        .await
                        .unwrap()
                }
            });
            futures::future::join_all(batch).await;
            i += 20;
        }
        i
    };
    let written = tokio::time::timeout(Duration::from_secs(60), writes)
        .await
        .expect("three validations within a minute");
    let status = engine.status();
    assert_eq!(
        status.diverged_found, 0,
        "{written} writes on their way taken for divergence: {:?}",
        status.last_validation
    );

    // A change on B whose event is lost: only a validation can find it.
    let path = format!("{root}/n000");
    engine.lose_next_event(Side::B, &path);
    b.set_data(&path, b"changed on B, event lost", None)
        .await
        .unwrap();
    wait_for("the repair on A", Duration::from_secs(30), || async {
        a.get_data(&path).await.unwrap().0 == b"changed on B, event lost"
    })
    .await;
    let status = engine.status();
    assert_eq!(status.diverged_found, 1, "{:?}", status.last_validation);
    assert!(
        engine.metrics_text().contains("orca_sync_diverged_total 1"),
        "{}",
        engine.metrics_text()
    );
    wait_for("a validation in sync", Duration::from_secs(30), || async {
        engine
            .status()
            .last_validation
            .is_some_and(|v| v.diverged == 0 && v.nodes_a == 201 && v.nodes_b == 201)
    })
    .await;
    live.stop().await;
    delete_tree(&a, &root).await;
    delete_tree(&b, &root).await;
}
