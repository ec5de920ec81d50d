//! Locked doors: a master given `--credentials` and `--acls` (Mesos's formats) over real
//! sockets. Unauthenticated and wrongly authenticated calls get 401; a framework claiming
//! another principal, a framework taken over by another principal, a role or a task user the
//! ACLs do not grant, an operator's teardown, drain or container action without the
//! permission all get 403 (a task: TASK_ERROR with REASON_TASK_UNAUTHORIZED); the gRPC doors
//! answer UNAUTHENTICATED the same way; and `orca-master` refuses to listen beyond loopback
//! without credentials.
mod support;

use std::process::Command;

use hyper::StatusCode;
use orca_master::{
    api::mesos_http::client::{self, SchedulerClient, basic},
    cluster::ClusterConfig,
};
use orca_proto::{
    operator::v1::{self as opb, operator_client::OperatorClient},
    scheduler::v1::{self as spb, scheduler_client::SchedulerClient as GrpcScheduler},
};
use serde_json::{Value, json};
use support::*;

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "marathon", "secret": "m-secret"},
    {"principal": "ops", "secret": "o-secret"},
    {"principal": "eve", "secret": "e-secret"}
]}"#;

const ACLS: &str = r#"{
    "register_frameworks": [
        {"principals": {"values": ["marathon"]}, "roles": {"values": ["web"]}}
    ],
    "run_tasks": [
        {"principals": {"values": ["marathon"]}, "users": {"values": ["app"]}}
    ],
    "teardown_frameworks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}
    ],
    "drain_agents": [
        {"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}}
    ]
}"#;

fn locked() -> ClusterConfig {
    ClusterConfig {
        credentials: Some(orca_auth::Credentials::parse(CREDENTIALS).unwrap()),
        acls: Some(orca_auth::Acls::parse(ACLS).unwrap()),
        ..fast_config()
    }
}

fn framework(principal: Option<&str>) -> Value {
    let mut info = json!({
        "user": "app",
        "name": "locked",
        "roles": ["web"],
        "capabilities": [{ "type": "MULTI_ROLE" }],
        "failover_timeout": 60.0,
    });
    if let Some(p) = principal {
        info["principal"] = json!(p);
    }
    info
}

fn subscribe_call(info: Value) -> Vec<u8> {
    json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": info } })
        .to_string()
        .into_bytes()
}

/// The status and body of a refused SUBSCRIBE.
async fn refused(
    addr: std::net::SocketAddr,
    info: Value,
    auth: Option<&str>,
) -> (StatusCode, String) {
    match SchedulerClient::subscribe_as(addr, info, auth.map(str::to_owned)).await {
        Ok(_) => panic!("the subscription was accepted"),
        Err(client::ClientError::Refused { status, body }) => (status, body),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn calls_without_valid_credentials_get_401_and_say_how_to_authenticate() {
    let m = master(locked()).await;
    let (code, body) = client::post(m.addr, subscribe_call(framework(None)), None)
        .await
        .unwrap();
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("requires authentication"), "{body}");
    let wrong = basic("marathon", "not-the-secret");
    let (code, body) = client::post_as(m.addr, subscribe_call(framework(None)), None, Some(&wrong))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("not valid"), "{body}");
    let (code, _) = client::operator(m.addr, &json!({"type": "GET_STATE"}))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let state = client::get_json(m.addr, "/master/state").await.unwrap_err();
    assert!(state.to_string().contains("401"), "{state}");
    // The challenge a browser or curl answers.
    let raw = raw_get(m.addr, "/master/state").await;
    assert!(
        raw.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"mesos-master-readonly\""),
        "{raw}"
    );
    // What says which master this is stays open, as Mesos's does.
    assert!(
        raw_get(m.addr, "/version")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // With credentials, the operator API answers.
    let (code, body) = client::operator_as(
        m.addr,
        &json!({"type": "GET_STATE"}),
        Some(&basic("ops", "o-secret")),
    )
    .await
    .unwrap();
    assert_eq!(code, StatusCode::OK, "{body}");
}

/// Whether the master has framework `id`.
fn is_registered(m: &Master, id: &str) -> bool {
    m.cluster.snapshot().frameworks.iter().any(|f| f.id == id)
}

/// A GET with nothing else, the response's head and body as text.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_principal_is_the_authenticated_one_and_a_framework_cannot_be_taken_over() {
    let m = master(locked()).await;
    let marathon = basic("marathon", "m-secret");
    let eve = basic("eve", "e-secret");
    // Claiming another principal than the one authenticated.
    let (code, body) = refused(m.addr, framework(Some("ops")), Some(&marathon)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains(
            "Authenticated principal 'marathon' does not match principal 'ops' set in `FrameworkInfo`"
        ),
        "{body}"
    );
    // No principal written: the authenticated one is the framework's.
    let s = SchedulerClient::subscribe_as(m.addr, framework(None), Some(marathon.clone()))
        .await
        .unwrap();
    let state = m.cluster.snapshot();
    let registered = state
        .frameworks
        .iter()
        .find(|f| f.id == s.framework_id)
        .expect("the framework is registered");
    assert_eq!(registered.info.principal.as_deref(), Some("marathon"));
    // Eve subscribing with marathon's framework id: a takeover, refused.
    let mut hijack = framework(None);
    hijack["id"] = json!({ "value": s.framework_id });
    let (code, body) = refused(m.addr, hijack.clone(), Some(&eve)).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("belongs to principal 'marathon'"), "{body}");
    // Eve with marathon's stream id: the call is refused too.
    let teardown = json!({
        "type": "TEARDOWN",
        "framework_id": { "value": s.framework_id },
    });
    let (code, body) = client::post_as(
        m.addr,
        teardown.to_string().into_bytes(),
        Some(&s.stream_id),
        Some(&eve),
    )
    .await
    .unwrap();
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("Authenticated principal 'eve' does not match principal 'marathon'"),
        "{body}"
    );
    assert!(is_registered(&m, &s.framework_id), "nothing was torn down");
    // Marathon itself fails over with its id.
    let again = SchedulerClient::subscribe_as(m.addr, hijack, Some(marathon))
        .await
        .unwrap();
    assert_eq!(again.framework_id, s.framework_id);
}

#[tokio::test]
async fn acls_decide_roles_task_users_teardown_and_drain() {
    let m = master(locked()).await;
    let (agent_id, agent, _alive) = simulated_agent(&m.cluster, "node-1", "cpus:4;mem:4096").await;
    let marathon = basic("marathon", "m-secret");
    let (ops, eve) = (basic("ops", "o-secret"), basic("eve", "e-secret"));
    // Eve may register in no role.
    let (code, body) = refused(m.addr, framework(None), Some(&eve)).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("principal 'eve' is not authorized to register a framework in role 'web'"),
        "{body}"
    );
    let mut other_role = framework(None);
    other_role["roles"] = json!(["batch"]);
    let (code, _) = refused(m.addr, other_role, Some(&marathon)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let mut s = SchedulerClient::subscribe_as(m.addr, framework(None), Some(marathon))
        .await
        .unwrap();
    // A task as root: refused with Mesos's reason; one as app runs.
    let offer =
        s.take(DEADLINE, |e| e["type"] == "OFFERS").await.unwrap()["offers"]["offers"][0].clone();
    let mut as_root = client::task(
        "as-root",
        &offer["agent_id"],
        scalars(1.0, 128.0),
        "sleep 100",
    );
    as_root["command"]["user"] = json!("root");
    let as_app = client::task(
        "as-app",
        &offer["agent_id"],
        scalars(1.0, 128.0),
        "sleep 100",
    );
    let (code, body) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{ "type": "LAUNCH", "launch": { "task_infos": [as_root, as_app] } }],
            }
        }))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let error = s
        .take(DEADLINE, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == "as-root"
        })
        .await
        .unwrap();
    let status = &error["update"]["status"];
    assert_eq!(status["state"], "TASK_ERROR", "{status}");
    assert_eq!(status["reason"], "REASON_TASK_UNAUTHORIZED", "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("user 'root'"),
        "{status}"
    );
    let running = s
        .take(DEADLINE, |e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == "as-app"
                && e["update"]["status"]["state"] == "TASK_RUNNING"
        })
        .await;
    assert!(running.is_ok(), "the task as app runs");
    assert_eq!(
        agent.lock().unwrap().launched,
        vec![vec!["as-app".to_owned()]]
    );

    // Operators: eve may neither drain nor tear down; ops may.
    let drain = json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": agent_id}}});
    let (code, body) = client::operator_as(m.addr, &drain, Some(&eve))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("`drain_agents`"), "{body}");
    let teardown =
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": s.framework_id}}});
    let (code, body) = client::operator_as(m.addr, &teardown, Some(&eve))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("not authorized to tear down a framework of principal 'marathon'"),
        "{body}"
    );
    assert!(is_registered(&m, &s.framework_id));
    let (code, body) = client::operator_as(m.addr, &teardown, Some(&ops))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK, "{body}");
    // As Mesos: a framework it does not know is a bad request, whoever asks.
    let unknown = json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "no-such"}}});
    let (code, body) = client::operator_as(m.addr, &unknown, Some(&ops))
        .await
        .unwrap();
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("No framework found with ID no-such"),
        "{body}"
    );
    assert!(!is_registered(&m, &s.framework_id));
}

#[tokio::test]
async fn grpc_doors_authenticate_with_the_same_credentials() {
    let master = orca_master::server::Master::bind(
        orca_collector::CollectorConfig::default(),
        locked(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (grpc, http) = (master.grpc_addr(), master.http_addr());
    tokio::spawn(master.serve(std::future::pending()));
    // The topology and metrics (hosts, processes, command lines, traffic) are for
    // authenticated readers; /health stays open to probes.
    for path in ["/api/topology?view=hosts", "/api/agents", "/metrics"] {
        let head = raw_get(http, path).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"mesos-master-readonly\""),
            "{path}: {head}"
        );
    }
    assert!(raw_get(http, "/health").await.starts_with("HTTP/1.1 200"));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let subscribe = || spb::SubscribeRequest {
        framework_info: Some(spb::FrameworkInfo {
            user: "app".into(),
            name: "grpc-locked".into(),
            roles: vec!["web".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut anonymous = GrpcScheduler::new(channel.clone());
    let status = anonymous.subscribe(subscribe()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert!(
        status.message().contains("requires authentication"),
        "{status}"
    );
    let mut operator = OperatorClient::new(channel.clone());
    let status = operator
        .kill_task(opb::KillTaskRequest {
            framework_id: "f".into(),
            task_id: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");

    let marathon: tonic::metadata::MetadataValue<_> =
        basic("marathon", "m-secret").parse().unwrap();
    let mut request = tonic::Request::new(subscribe());
    request
        .metadata_mut()
        .insert("authorization", marathon.clone());
    let mut events = anonymous.subscribe(request).await.unwrap().into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(
        matches!(first.kind, Some(spb::event::Kind::Subscribed(_))),
        "{first:?}"
    );
    // No ACL grants container actions: even an authenticated operator may not stop one.
    let mut request = tonic::Request::new(opb::ContainerActionRequest {
        hostname: "node-1".into(),
        container_id: "c1".into(),
        action: orca_proto::cluster::v1::ContainerAction::Stop as i32,
    });
    request
        .metadata_mut()
        .insert("authorization", basic("ops", "o-secret").parse().unwrap());
    let status = operator.container_action(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains("`container_actions`"), "{status}");
    // Eve is authenticated but the ACLs give her no role.
    let mut request = tonic::Request::new(subscribe());
    request
        .metadata_mut()
        .insert("authorization", basic("eve", "e-secret").parse().unwrap());
    let status = anonymous.subscribe(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    // Watching the topology needs credentials as well.
    let mut collector =
        orca_proto::topology::v1::collector_client::CollectorClient::new(channel.clone());
    let watch = || orca_proto::topology::v1::WatchRequest {
        view: orca_proto::topology::v1::View::Hosts as i32,
    };
    let status = collector.watch_topology(watch()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    let mut request = tonic::Request::new(watch());
    request
        .metadata_mut()
        .insert("authorization", basic("ops", "o-secret").parse().unwrap());
    let mut deltas = collector
        .watch_topology(request)
        .await
        .unwrap()
        .into_inner();
    assert!(deltas.message().await.unwrap().is_some());
}

#[test]
fn the_master_refuses_to_listen_beyond_loopback_without_credentials() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orca-master"))
            .args(args)
            .args(["--registry", "memory"])
            .output()
            .unwrap()
    };
    let out = run(&["--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be reached from other hosts and no --credentials are set"),
        "{err}"
    );
    assert!(err.contains("--insecure"), "{err}");
    let out = run(&["--http-addr", "127.0.0.1:0", "--grpc-addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grpc-addr 0.0.0.0:0"), "{err}");
    assert!(
        err.contains("--tls-ca") && err.contains("--credentials"),
        "{err}"
    );
    // A malformed credentials file stops it with what is wrong.
    let dir = std::env::temp_dir().join(format!("orca-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("credentials");
    std::fs::write(&creds, "marathon\n").unwrap();
    let out = run(&[
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--credentials",
        creds.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1 is not `principal secret`"), "{err}");
}
