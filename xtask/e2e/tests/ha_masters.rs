//! Highly-available masters for real: three `orca-master` processes electing a leader in
//! the shared ZooKeeper ensemble A, a real agent running real tasks in cgroups and a Mesos
//! HTTP framework, both finding the leader in ZooKeeper. The leader is killed with SIGKILL
//! while a task is about to end; a new leader is elected, recovers the registry, the agent
//! re-registers with its tasks, the framework re-subscribes with its id and gets every update
//! (the one made while no master led included). Also: what non-leaders answer, the registry's
//! znodes, a corrupted record, two masters with one id. Needs root (cgroups).
mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use orca_agent::tasks::{TaskManager, TaskManagerConfig, cgroups::Driver, link};
use orca_leader::{Detector, MasterInfo, ZkUrl};
use orca_master::{
    api::mesos_http::client::{self, SchedulerClient, scalars},
    resources::Resources,
};
use orca_zk_local::Ensemble;
use serde_json::{Value, json};
use support::{
    masters::{MasterProcess, three_free_ports},
    zk::{client as zk_client, delete_tree, ensembles, unique_root, wait_for},
};

const WAIT: Duration = Duration::from_secs(30);

/// `/metrics/snapshot`'s `master/elected` of the master on `http` (`None`: not answering).
async fn elected(http: SocketAddr) -> Option<bool> {
    let snapshot = client::get_json(http, "/metrics/snapshot").await.ok()?;
    Some(snapshot["master/elected"] == 1.0)
}

/// The one master of `masters` that says it leads, once exactly one does and ZooKeeper
/// names the same one.
async fn the_leader(masters: &[&MasterProcess], detector: &Detector) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut leaders = Vec::new();
        for (i, m) in masters.iter().enumerate() {
            if elected(m.http).await == Some(true) {
                leaders.push(i);
            }
        }
        let named = detector.leader();
        if leaders.len() == 1
            && named.is_some_and(|info| info.http_addr() == masters[leaders[0]].http)
        {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single elected master that ZooKeeper names after {WAIT:?}: elected {leaders:?}, ZooKeeper names {:?}",
            detector.leader().map(|l| l.http_authority())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP GET: status and `Location` (the test client does not follow redirects).
async fn get_raw(addr: SocketAddr, path: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = response
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(|l| l.trim().to_owned());
    (status, location)
}

fn framework(name: &str, id: Option<&str>) -> Value {
    let mut info = json!({
        "user": "root",
        "name": name,
        "roles": ["*"],
        "failover_timeout": 600.0,
        "capabilities": [{ "type": "MULTI_ROLE" }],
    });
    if let Some(id) = id {
        info["id"] = json!({ "value": id });
    }
    info
}

/// The next update of `task_id`, acknowledged.
async fn update(s: &mut SchedulerClient, task_id: &str) -> Value {
    let event = s
        .take(WAIT, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
        })
        .await
        .unwrap();
    let status = event["update"]["status"].clone();
    s.acknowledge(&status).await.unwrap();
    status
}

struct TestDir(PathBuf, String);

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Ok(driver) = Driver::detect() {
            driver.remove_parent(&self.1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_agents_frameworks_and_updates_follow() {
    support::agent::require_root();
    let [a, _] = ensembles();
    let root = unique_root("ha-failover");
    let zk = format!("zk://{}{root}", a.connect_string());
    let dir = std::env::temp_dir().join(format!("orca-e2e-ha-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let cgroup_parent = format!("orca-e2e-ha-{}", std::process::id());
    let _cleanup = TestDir(dir.clone(), cgroup_parent.clone());
    let zkc = zk_client(&a.connect_string()).await;

    let mut masters: Vec<MasterProcess> = (0..3)
        .map(|i| MasterProcess::start(&zk, &dir, &format!("m{i}"), &[]))
        .collect();
    let detector = Detector::start(ZkUrl::parse(&zk).unwrap(), Duration::from_secs(10));
    let leader = the_leader(&masters.iter().collect::<Vec<_>>(), &detector).await;
    let info = detector.leader().unwrap();
    assert_eq!(info.grpc_addr(), Some(masters[leader].grpc));

    // The contender znodes are Mesos's: json.info_<seq>, MasterInfo JSON, lowest leads.
    let deadline = Instant::now() + WAIT;
    loop {
        let children = zkc.list_children(&root).await.unwrap_or_default();
        if orca_leader::contenders(&children).len() == 3 {
            break;
        }
        if Instant::now() > deadline {
            // Seen once under the whole suite's load: say which master is missing and why.
            let logs: Vec<String> = masters
                .iter_mut()
                .enumerate()
                .map(|(i, m)| {
                    let exited = m.exited_within(Duration::from_millis(30));
                    format!("--- master m{i} (exited: {exited:?}) ---\n{}", m.log())
                })
                .collect();
            panic!(
                "not all three masters in the group after {WAIT:?}: {children:?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let children = zkc.list_children(&root).await.unwrap();
    let members = orca_leader::contenders(&children);
    assert!(members.iter().all(|(_, n)| n.starts_with("json.info_")));
    let (data, _) = zkc
        .get_data(&format!("{root}/{}", members[0].1))
        .await
        .unwrap();
    let raw: Value = serde_json::from_slice(&data).unwrap();
    for field in ["id", "ip", "port", "pid", "hostname", "version", "address"] {
        assert!(
            raw.get(field).is_some(),
            "MasterInfo without {field}: {raw}"
        );
    }
    assert_eq!(raw["pid"], format!("master@{}", masters[leader].http));
    assert_eq!(MasterInfo::from_json(&data).unwrap(), info);

    // A follower redirects the Mesos API to the leader, as Mesos does (once it has read
    // the leader's info: a master that just joined answers 503 "No leader elected" first).
    let follower = (leader + 1) % 3;
    wait_for("the follower redirecting to the leader", WAIT, || async {
        get_raw(masters[follower].http, "/master/state").await
            == (
                307,
                Some(format!("//{}/master/state", masters[leader].http)),
            )
    })
    .await;
    let (status, location) = get_raw(masters[follower].http, "/master/redirect").await;
    assert_eq!(status, 307);
    assert_eq!(location.unwrap(), format!("//{}", masters[leader].http));
    let refused = SchedulerClient::subscribe(masters[follower].http, framework("x", None)).await;
    assert!(
        format!("{refused:?}").contains("307"),
        "SUBSCRIBE to a follower: {refused:?}"
    );
    // gRPC doors on a follower refuse with UNAVAILABLE, naming the leader's gRPC address.
    let mut grpc = orca_proto::scheduler::v1::scheduler_client::SchedulerClient::connect(format!(
        "http://{}",
        masters[follower].grpc
    ))
    .await
    .unwrap();
    let refused = grpc
        .subscribe(orca_proto::scheduler::v1::SubscribeRequest {
            framework_info: Some(orca_proto::scheduler::v1::FrameworkInfo {
                user: "root".into(),
                name: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused
            .metadata()
            .get("orca-leader-grpc")
            .and_then(|v| v.to_str().ok()),
        Some(masters[leader].grpc.to_string().as_str())
    );
    let state = client::get_json(masters[leader].http, "/master/state")
        .await
        .unwrap();
    assert_eq!(state["leader"], format!("master@{}", masters[leader].http));
    assert_eq!(state["leader_info"]["port"], masters[leader].http.port());
    assert!(state["elected_time"].as_f64().unwrap() >= state["start_time"].as_f64().unwrap());

    // A real agent that finds the leader in ZooKeeper.
    let mut tasks = TaskManagerConfig::new(dir.join("work"), Driver::detect().unwrap());
    tasks.supervisor = support::bin("orca-task-supervisor");
    tasks.cgroup_parent = cgroup_parent.clone();
    let (manager, updates) = TaskManager::new(tasks);
    let mut link_config = link::LinkConfig::new(
        orca_agent::master_switch::MasterSwitch::new(&zk, None).unwrap(),
        "e2e-ha-node".into(),
        Resources::parse("cpus:2;mem:1024").unwrap(),
    );
    link_config.retry_interval = Duration::from_millis(500);
    link_config.id_file = Some(dir.join("work/agent_id"));
    let (registered_tx, mut registered) = tokio::sync::watch::channel(None);
    let agent_link = tokio::spawn(link::run(
        link_config,
        manager.clone(),
        updates,
        Some(registered_tx),
    ));
    let agent_id = tokio::time::timeout(WAIT, registered.wait_for(Option::is_some))
        .await
        .expect("the agent registers with the leader")
        .unwrap()
        .clone()
        .unwrap();

    // A framework with two tasks: one runs on, one ends when told to (during the failover).
    let mut s = SchedulerClient::subscribe(masters[leader].http, framework("ha", None))
        .await
        .unwrap();
    let framework_id = s.framework_id.clone();
    let offer =
        s.take(WAIT, |e| e["type"] == "OFFERS").await.unwrap()["offers"]["offers"][0].clone();
    let release = dir.join("release");
    let (code, body) = s
        .call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [
                    client::launch("stays", &offer["agent_id"], scalars(0.5, 64.0), "sleep 1000"),
                    client::launch("ends", &offer["agent_id"], scalars(0.5, 64.0),
                        &format!("while [ ! -e {} ]; do sleep 0.05; done", release.display())),
                ],
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202, "{body}");
    for task in ["stays", "ends"] {
        assert_eq!(update(&mut s, task).await["state"], "TASK_STARTING");
        assert_eq!(update(&mut s, task).await["state"], "TASK_RUNNING");
    }
    // The registry is in ZooKeeper, one znode per record.
    let registry = format!("{root}/orca-registry");
    assert!(
        zkc.check_stat(&format!("{registry}/agents/{agent_id}"))
            .await
            .unwrap()
            .is_some()
    );
    let (record, _) = zkc
        .get_data(&format!("{registry}/frameworks/{framework_id}"))
        .await
        .unwrap();
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["failover_timeout_secs"], 600.0);

    // A weight set at run time is kept in the registry too.
    let (code, body) = client::operator(
        masters[leader].http,
        &json!({ "type": "UPDATE_WEIGHTS", "update_weights": {
            "weight_infos": [{ "role": "prod", "weight": 3.0 }] } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");
    assert!(
        zkc.check_stat(&format!("{registry}/roles/prod"))
            .await
            .unwrap()
            .is_some()
    );
    // So is the maintenance schedule.
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        + 3_600_000_000_000;
    let (code, body) = client::operator(
        masters[leader].http,
        &json!({ "type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {
            "schedule": { "windows": [{
                "machine_ids": [{ "hostname": "rack-7-host-3" }],
                "unavailability": { "start": { "nanoseconds": in_an_hour },
                                    "duration": { "nanoseconds": 7_200_000_000_000i64 } },
            }] } } }),
    )
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 200, "{body}");

    // SIGKILL the leader; the "ends" task finishes while no master leads.
    let killed_at = Instant::now();
    masters[leader].kill9();
    std::fs::write(&release, b"").unwrap();
    let rest: Vec<&MasterProcess> = masters
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m)
        .collect();
    let new_leader = the_leader(&rest, &detector).await;
    let elected_in = killed_at.elapsed();
    let new_http = rest[new_leader].http;
    assert_ne!(new_http, masters[leader].http);
    // The dead leader's process was noticed: far sooner than its 4 s session.
    assert!(
        elected_in < Duration::from_secs(3),
        "a new leader took {elected_in:?} after the old one was killed"
    );

    // The agent re-registers with its tasks, under the same id.
    wait_for(
        "the agent re-registered with the new leader",
        WAIT,
        || async {
            let Ok(state) = client::get_json(new_http, "/master/state").await else {
                return false;
            };
            state["slaves"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["id"] == agent_id.as_str()))
        },
    )
    .await;
    assert_eq!(*registered.borrow(), Some(agent_id.clone()));

    // The framework re-subscribes with its id (its record came from the registry).
    let mut s = SchedulerClient::subscribe(new_http, framework("ha", Some(&framework_id)))
        .await
        .unwrap();
    assert_eq!(s.framework_id, framework_id);
    // The update made while no master led arrives, and the running task is still running.
    let ended = update(&mut s, "ends").await;
    assert_eq!(ended["state"], "TASK_FINISHED", "{ended}");
    let (code, body) = s
        .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202, "{body}");
    let stays = s
        .take(WAIT, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == "stays"
        })
        .await
        .unwrap();
    assert_eq!(
        stays["update"]["status"]["state"], "TASK_RUNNING",
        "{stays}"
    );
    assert!(manager.running().iter().any(|(t, _)| t.task_id == "stays"));
    let state = client::get_json(new_http, "/master/state").await.unwrap();
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == framework_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(fw["tasks"].as_array().unwrap().len(), 1, "{fw}");
    // Nothing applied twice: "ends" finished once.
    let finished = fw["completed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"] == "ends")
        .count();
    assert!(finished <= 1);
    let (_, weights) = client::operator(new_http, &json!({ "type": "GET_WEIGHTS" }))
        .await
        .unwrap();
    assert!(
        weights.contains(r#"{"role":"prod","weight":3.0}"#),
        "the new leader allocates with the weight set on the old one: {weights}"
    );
    let (_, schedule) = client::operator(new_http, &json!({ "type": "GET_MAINTENANCE_SCHEDULE" }))
        .await
        .unwrap();
    assert!(
        schedule.contains("rack-7-host-3") && schedule.contains(&in_an_hour.to_string()),
        "the new leader has the schedule set on the old one: {schedule}"
    );
    println!("failover: new leader {elected_in:?} after SIGKILL");

    // Clean up: the task ends, the masters stop, the group and registry go.
    let (code, _) = s
        .call(json!({ "type": "KILL", "kill": { "task_id": { "value": "stays" } } }))
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 202);
    assert_eq!(update(&mut s, "stays").await["state"], "TASK_KILLED");
    agent_link.abort();
    drop(masters);
    delete_tree(&zkc, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_or_a_second_master_with_one_id_stops_a_master_with_a_clear_error() {
    let [a, _] = ensembles();
    let root = unique_root("ha-faults");
    let zk = format!("zk://{}{root}", a.connect_string());
    let dir = std::env::temp_dir().join(format!("orca-e2e-ha-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TestDir(dir.clone(), String::new());
    let zkc = zk_client(&a.connect_string()).await;

    // Two masters with one id: the second refuses, naming the first.
    let mut first = MasterProcess::start(&zk, &dir, "first", &["--master-id", "twin"]);
    let detector = Detector::start(ZkUrl::parse(&zk).unwrap(), Duration::from_secs(10));
    the_leader(&[&first], &detector).await;
    let mut second = MasterProcess::start(&zk, &dir, "second", &["--master-id", "twin"]);
    let status = second
        .exited_within(WAIT)
        .expect("a second master with the same id exits");
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains("another master with id twin") && log.contains(&first.http.to_string()),
        "{log}"
    );
    assert_eq!(
        elected(first.http).await,
        Some(true),
        "the first one leads on"
    );

    // A registry record damaged by hand: a master never starts on it.
    first.kill9();
    let record = format!("{root}/orca-registry/frameworks/damaged-framework");
    zkc.create(&record, b"{not json", &support::zk::persistent())
        .await
        .unwrap();
    let mut third = MasterProcess::start(&zk, &dir, "third", &[]);
    let status = third
        .exited_within(WAIT)
        .expect("a master elected on a damaged registry exits");
    assert!(!status.success());
    let log = third.log();
    assert!(log.contains(&record), "the error names the znode: {log}");
    delete_tree(&zkc, &root).await;
}

struct StopEnsemble(Ensemble, PathBuf);

impl Drop for StopEnsemble {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// The masters that say they are elected.
async fn elected_masters(masters: &[&MasterProcess]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, m) in masters.iter().enumerate() {
        if elected(m.http).await == Some(true) {
            leaders.push(i);
        }
    }
    leaders
}

/// On an ensemble of its own (servers die here): a ZooKeeper server dies under the leader
/// (it keeps leading), the leader's ZooKeeper session expires while its process lives on
/// (it stops acting before another is elected, then follows), and the whole ensemble is lost
/// for a while (no master acts; then one leads again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_faults_never_leave_two_leaders_and_end_with_one() {
    support::agent::require_root();
    const NOBODY: u32 = 65534;
    let dir = std::env::temp_dir().join(format!("orca-e2e-ha-zk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut ensemble = Ensemble::new(&dir.join("zk"), "ha", 3, 21880);
    ensemble.force_sync = false;
    ensemble.start(Duration::from_secs(60)).unwrap();
    let _stop = StopEnsemble(ensemble.clone(), dir.clone());
    let zk = format!("zk://{}/mesos", ensemble.connect_string());

    // The first master runs as `nobody`, so its packets alone can be dropped; it leads.
    let first = MasterProcess::start_as(&zk, &dir, "first", &[], Some(NOBODY));
    let detector = Detector::start(ZkUrl::parse(&zk).unwrap(), Duration::from_secs(10));
    assert_eq!(the_leader(&[&first], &detector).await, 0, "{}", first.log());
    let second = MasterProcess::start(&zk, &dir, "second", &[]);
    let third = MasterProcess::start(&zk, &dir, "third", &[]);
    let masters = [&first, &second, &third];
    assert_eq!(the_leader(&masters, &detector).await, 0);

    // A server dies: the leader's session moves to another server; it leads on.
    ensemble.kill_node(1).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(the_leader(&masters, &detector).await, 0, "leadership moved");
    ensemble.restart_node(1, Duration::from_secs(30)).unwrap();

    // The leader's packets to ZooKeeper are dropped: it stops acting at once (it cannot
    // know whether it still leads), another master is elected once its session expires.
    let cut = support::zk::PacketLoss::of_user(NOBODY, &ensemble);
    let cut_at = Instant::now();
    wait_for("the cut-off leader to stop acting", WAIT, || async {
        elected(first.http).await == Some(false)
    })
    .await;
    let stopped_acting = cut_at.elapsed();
    let mut new_leader = None;
    let deadline = Instant::now() + WAIT;
    while new_leader.is_none() {
        let leaders = elected_masters(&masters).await;
        assert!(leaders.len() <= 1, "two masters act at once: {leaders:?}");
        if leaders.len() == 1 && leaders[0] != 0 {
            new_leader = Some(leaders[0]);
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after the leader was cut off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replaced = cut_at.elapsed();
    assert!(
        stopped_acting < replaced,
        "the old leader stopped acting ({stopped_acting:?}) before another was elected ({replaced:?})"
    );
    // Cut off, it knows no leader: the Mesos API answers 503, not 200.
    let (status, _) = get_raw(first.http, "/master/state").await;
    assert_eq!(status, 503);
    drop(cut);
    // Back: its session expired, it joins again as a follower and redirects to the leader.
    let leader_http = masters[new_leader.unwrap()].http;
    wait_for("the old leader to follow the new one", WAIT, || async {
        get_raw(first.http, "/master/state").await
            == (307, Some(format!("//{leader_http}/master/state")))
    })
    .await;
    assert_eq!(elected_masters(&masters).await, vec![new_leader.unwrap()]);
    println!("cut off: stopped acting after {stopped_acting:?}, replaced after {replaced:?}");

    // The whole ensemble is lost: nobody acts (after a session timeout at most) ...
    ensemble.stop();
    wait_for("no master acting without ZooKeeper", WAIT, || async {
        elected_masters(&masters).await.is_empty()
    })
    .await;
    // ... and once it is back, exactly one master leads again.
    ensemble
        .restart_stopped(Duration::from_secs(60))
        .expect("the ensemble comes back");
    let detector = Detector::start(ZkUrl::parse(&zk).unwrap(), Duration::from_secs(10));
    the_leader(&masters, &detector).await;
}

/// SIGKILL of the leader in the middle of a launch storm, on the real wire: the `failover`
/// benchmark at a small scale (3 masters, 100 simulated agents in their own process following
/// the leader, 4 HTTP frameworks launching all along). Nothing lost, nothing twice.
#[test]
fn a_leader_killed_in_a_launch_storm_loses_and_duplicates_nothing() {
    let (result, stdout) = support::run_benchmark(
        "failover",
        &[
            "--agents",
            "100",
            "--frameworks",
            "4",
            "--tasks",
            "1000",
            "--storm-seconds",
            "4",
            "--storm-rate",
            "200",
            "--no-fsync",
        ],
        "result ",
    );
    for zero in ["lost", "duplicated", "unanswered", "unacknowledged"] {
        assert_eq!(result[zero], 0, "{zero}: {stdout}");
    }
    assert_eq!(result["running"], result["agents_running"], "{stdout}");
    assert!(
        result["launched"].as_u64().unwrap() > 1000,
        "the storm launched: {stdout}"
    );
    // The dead leader's port refusing gives it away long before its session would expire.
    assert!(
        result["new_leader_ms"].as_f64().unwrap() < 5_000.0,
        "{stdout}"
    );
}

/// The registry in ZooKeeper holds far more than one znode could (20,000 agent records,
/// ~2.4 MB, over ZooKeeper's 1 MB node limit), reads back whole, refuses a record that could
/// not fit one znode, and a store whose leader's contender is gone writes nothing (fencing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zookeeper_registry_is_not_bounded_by_a_znode_and_is_fenced() {
    use orca_master::cluster::registry::{
        AgentRecord, Change, FrameworkRecord, RegistryStore as _, StoreError, zk::ZkStore,
    };
    let [a, _] = ensembles();
    let root = unique_root("ha-registry");
    let zkc = zk_client(&a.connect_string()).await;
    zkc.mkdir(&root, &support::zk::persistent()).await.unwrap();
    let contender = zkc
        .create(
            &format!("{root}/json.info_"),
            b"{}",
            &zookeeper_client::CreateMode::EphemeralSequential
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap()
        .1;
    let contender = format!("{root}/json.info_{contender}");
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel();
    let (store, registry) = ZkStore::open(
        zkc.clone(),
        &root,
        contender.clone(),
        zookeeper_client::Acls::anyone_all(),
        failed_tx,
    )
    .await
    .unwrap();
    assert!(registry.agents.is_empty());
    let record = |i: usize| AgentRecord {
        hostname: format!("node-{i:05}.rack-{}.example.org", i % 40),
        resources: "cpus:64;mem:262144;disk:1048576;ports:[31000-32000]".into(),
        ..Default::default()
    };
    let writes: Vec<_> = (0..20_000)
        .map(|i| {
            store.apply(&Change::AgentAdmitted {
                id: format!("agent-{i:05}"),
                record: record(i),
            })
        })
        .collect();
    for write in writes {
        write.wait().await.unwrap();
    }
    store
        .apply(&Change::FrameworkAdded {
            id: "fw".into(),
            record: FrameworkRecord {
                name: "big".into(),
                ..Default::default()
            },
        })
        .wait()
        .await
        .unwrap();
    store
        .apply(&Change::FrameworkTornDown { id: "fw".into() })
        .wait()
        .await
        .unwrap();
    let bytes: usize = (0..20_000)
        .map(|i| serde_json::to_vec(&record(i)).unwrap().len())
        .sum();
    assert!(bytes > 1 << 20, "{bytes} bytes");
    drop(store);

    // A new leader reads it all back.
    let (failed_tx2, _failed2) = tokio::sync::mpsc::unbounded_channel();
    let (store, registry) = ZkStore::open(
        zkc.clone(),
        &root,
        contender.clone(),
        zookeeper_client::Acls::anyone_all(),
        failed_tx2,
    )
    .await
    .unwrap();
    assert_eq!(registry.agents.len(), 20_000);
    assert_eq!(registry.agents["agent-12345"], record(12345));
    assert!(registry.frameworks.is_empty());
    assert_eq!(registry.torn_down, vec!["fw".to_string()]);

    // A record no znode can hold is refused, and nothing else is affected.
    let huge = Change::FrameworkAdded {
        id: "huge".into(),
        record: FrameworkRecord {
            name: "x".repeat(2 << 20),
            ..Default::default()
        },
    };
    let err = store.apply(&huge).wait().await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");

    // Fencing: once the leader's contender is gone, a write fails and ends the term.
    zkc.delete(&contender, None).await.unwrap();
    let err = store
        .apply(&Change::AgentRemoved {
            id: "agent-00001".into(),
        })
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced), "{err}");
    assert!(failed.try_recv().is_err(), "the first store was closed");
    assert!(
        zkc.check_stat(&format!("{root}/orca-registry/agents/agent-00001"))
            .await
            .unwrap()
            .is_some(),
        "the fenced write did not land"
    );
    delete_tree(&zkc, &root).await;
}

/// `orca up --ha --headless`: a local three-server ensemble and three masters in one
/// process, exactly one elected and the others redirecting to it; Ctrl-C stops everything,
/// the ensemble's servers included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_up_ha_runs_three_electing_masters_and_stops_everything() {
    let dir = std::env::temp_dir().join(format!("orca-e2e-up-ha-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TestDir(dir.clone(), String::new());
    let log = dir.join("up.log");
    let ensemble = Ensemble::new(&dir.join("state").join("zk"), "orca-up", 3, 21900);
    // Should an assertion fail, nothing this test started outlives it (a leftover `orca up`
    // would rejoin the next run's ensemble on the same ports and contend there).
    struct Leftovers(u32, Ensemble);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            self.1.stop();
        }
    }
    let mut leftovers = Vec::new();
    // Ports are checked free, not reserved: when something took one meanwhile, `orca up`
    // says so and exits, and is started again on others.
    let mut attempt = 0;
    let (mut up, http, leader) = loop {
        attempt += 1;
        let (grpc, http) = (three_free_ports(), three_free_ports());
        let mut up = Command::new(support::bin("orca"))
            .args(["up", "--ha", "--headless", "--no-tasks", "--probe", "proc"])
            .args(["--state-dir", &dir.join("state").display().to_string()])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--zk-base-port", "21900"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting orca up --ha");
        leftovers.push(Leftovers(up.id(), ensemble.clone()));
        let https: Vec<SocketAddr> = (0..3)
            .map(|n| SocketAddr::from(([127, 0, 0, 1], http + n)))
            .collect();
        let mut leader = None;
        let deadline = Instant::now() + Duration::from_secs(90);
        while leader.is_none() {
            if up.try_wait().unwrap().is_some() {
                break;
            }
            let mut elected_now = Vec::new();
            for addr in &https {
                if elected(*addr).await == Some(true) {
                    elected_now.push(*addr);
                }
            }
            assert!(elected_now.len() <= 1, "two leaders: {elected_now:?}");
            leader = elected_now.first().copied();
            assert!(
                Instant::now() < deadline,
                "no leader: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(leader) = leader {
            break (up, https, leader);
        }
        let _ = up.kill();
        let _ = up.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("cannot listen") && attempt < 5,
            "orca up --ha exited: {text}"
        );
    };
    let https = http;
    for addr in https.iter().filter(|a| **a != leader) {
        wait_for("a follower redirecting to the leader", WAIT, || async {
            get_raw(*addr, "/master/state").await == (307, Some(format!("//{leader}/master/state")))
        })
        .await;
    }
    assert!((1..=3).all(|n| ensemble.node_pid(n).is_some()));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "orca up did not stop on Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        (1..=3).all(|n| ensemble.node_pid(n).is_none()),
        "the ensemble's servers outlived orca up"
    );
}
