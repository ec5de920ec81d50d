//! The six-phase migration for real: two dedicated three-server ensembles (A and B), three
//! `orca-master` processes electing on A, two real agents running real tasks in cgroups
//! (one on a host tied to A), and a Mesos HTTP framework that keeps 50 tasks running while
//! it kills and relaunches one every 300 ms, finding the leader the way Mesos clients do
//! (any master's `/master/redirect`). `zk-migrate` moves the cluster to B phase by phase
//! through its CLI and REST API, its local actuator starting the masters on B and stopping
//! those on A and A's servers. Needs root (cgroups).
mod support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use orca_agent::tasks::{TaskManager, TaskManagerConfig, cgroups::Driver, link};
use orca_master::{
    api::mesos_http::client::{self, ClientError, SchedulerClient, scalars},
    resources::Resources,
};
use orca_zk_local::Ensemble;
use serde_json::{Value, json};
use support::{
    masters::{MasterProcess, three_free_ports},
    zk::{client as zk_client, wait_for},
};

const WAIT: Duration = Duration::from_secs(60);
const TASKS: usize = 50;
const PATH: &str = "/orca";

/// Everything the test started, stopped whatever happens.
struct Site {
    dir: PathBuf,
    ensembles: Vec<Ensemble>,
    cgroup_parents: Vec<String>,
    /// Masters the orchestrator started (found by port).
    target_http: Vec<SocketAddr>,
    orchestrator: Option<Child>,
    agents: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut o) = self.orchestrator.take() {
            let _ = o.kill();
            let _ = o.wait();
            if std::thread::panicking() {
                let log =
                    std::fs::read_to_string(self.dir.join("zk-migrate.log")).unwrap_or_default();
                eprintln!("--- zk-migrate's log ---\n{log}");
            }
        }
        for http in &self.target_http {
            if let Some(pid) = orca_migrate::actuator::listener_pid(*http) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for agent in &self.agents {
            agent.abort();
        }
        for parent in &self.cgroup_parents {
            support::agent::remove_task_cgroups(parent);
        }
        for e in &self.ensembles {
            e.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real agent in this process (task manager, cgroups, supervisors) following `zk`.
fn start_agent(site: &mut Site, hostname: &str, zk: &str) {
    let work = site.dir.join(format!("agent-{hostname}"));
    std::fs::create_dir_all(&work).unwrap();
    let parent = format!("orca-e2e-mig-{hostname}-{}", std::process::id());
    let mut tasks = TaskManagerConfig::new(work.clone(), Driver::detect().unwrap());
    tasks.supervisor = support::bin("orca-task-supervisor");
    tasks.cgroup_parent = parent.clone();
    let (manager, updates) = TaskManager::new(tasks);
    let mut config = link::LinkConfig::new(
        orca_agent::master_switch::MasterSwitch::new(zk, None).unwrap(),
        hostname.into(),
        Resources::parse("cpus:4;mem:1024").unwrap(),
    );
    config.retry_interval = Duration::from_millis(200);
    config.id_file = Some(work.join("agent_id"));
    site.cgroup_parents.push(parent);
    site.agents
        .push(tokio::spawn(link::run(config, manager, updates, None)));
}

/// What the framework saw.
#[derive(Debug, Default)]
struct Seen {
    /// Running tasks: task id → agent id.
    running: BTreeMap<String, String>,
    /// Launched, not yet running or ended.
    pending: HashSet<String>,
    killed_by_us: HashSet<String>,
    /// Updates that interrupt a task (failed, lost, gone, dropped, unreachable, error, or
    /// killed without our asking and not by a drain).
    interrupted: Vec<String>,
    /// Tasks a drain killed (they move).
    drained: Vec<String>,
    /// A task reported running on two agents.
    duplicated: Vec<String>,
    launched: usize,
    subscriptions: usize,
    /// The longest time without a subscription, from its loss to the next SUBSCRIBED.
    longest_gap: Duration,
    hosts: HashMap<String, String>,
}

/// The leader, as Mesos clients find it: any master's `/master/redirect`.
async fn find_leader(masters: &[SocketAddr]) -> Option<SocketAddr> {
    for m in masters {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(m)).await
        else {
            continue;
        };
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let request =
            format!("GET /master/redirect HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut reply = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(1), stream.read_to_string(&mut reply)).await;
        let location = reply.lines().find_map(|l| {
            l.strip_prefix("location: //")
                .or_else(|| l.strip_prefix("Location: //"))
        });
        if let Some(addr) = location.and_then(|l| l.trim().parse().ok()) {
            return Some(addr);
        }
    }
    None
}

/// A framework keeping [`TASKS`] tasks running and killing one every 300 ms (each
/// relaunched), re-subscribing with its id whenever its stream ends.
async fn framework(
    masters: Arc<Mutex<Vec<SocketAddr>>>,
    seen: Arc<Mutex<Seen>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut id: Option<String> = None;
    let mut lost_at: Option<Instant> = None;
    let mut next_task = 0usize;
    let mut last_kill = Instant::now();
    while !*stop.borrow() {
        let list = masters.lock().unwrap().clone();
        let Some(leader) = find_leader(&list).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut info = json!({
            "user": "root", "name": "migration-e2e", "roles": ["*"],
            "failover_timeout": 600.0, "capabilities": [{ "type": "MULTI_ROLE" }],
        });
        if let Some(id) = &id {
            info["id"] = json!({ "value": id });
        }
        let Ok(s) = SchedulerClient::subscribe(leader, info).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut s = s;
        {
            let mut seen = seen.lock().unwrap();
            seen.subscriptions += 1;
            if let Some(at) = lost_at.take() {
                seen.longest_gap = seen.longest_gap.max(at.elapsed());
            }
        }
        id = Some(s.framework_id.clone());
        // Learn every task's state from the (possibly new) leader.
        let _ = s
            .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
            .await;
        loop {
            if *stop.borrow() {
                return;
            }
            match s.next_event(Duration::from_millis(100)).await {
                Ok(Some(event)) => {
                    handle(&s, &event, &seen, &mut next_task).await;
                }
                Err(ClientError::Timeout(_)) => {}
                Ok(None) | Err(_) => {
                    lost_at = Some(Instant::now());
                    break;
                }
            }
            if last_kill.elapsed() >= Duration::from_millis(300) {
                last_kill = Instant::now();
                let victim = {
                    let seen = seen.lock().unwrap();
                    (seen.running.len() >= TASKS - 5)
                        .then(|| {
                            seen.running
                                .iter()
                                .next()
                                .map(|(t, a)| (t.clone(), a.clone()))
                        })
                        .flatten()
                };
                if let Some((task, agent)) = victim {
                    seen.lock().unwrap().killed_by_us.insert(task.clone());
                    let _ = s
                        .call(json!({ "type": "KILL", "kill": {
                            "task_id": { "value": task }, "agent_id": { "value": agent } } }))
                        .await;
                }
            }
        }
    }
}

async fn handle(s: &SchedulerClient, event: &Value, seen: &Arc<Mutex<Seen>>, next: &mut usize) {
    match event["type"].as_str() {
        Some("OFFERS") => {
            for offer in event["offers"]["offers"].as_array().into_iter().flatten() {
                let mut ops = Vec::new();
                {
                    let mut seen = seen.lock().unwrap();
                    let cpus = offer["resources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["name"] == "cpus")
                        .and_then(|r| r["scalar"]["value"].as_f64())
                        .unwrap_or(0.0);
                    let fits = (cpus / 0.05).floor() as usize;
                    let want = TASKS.saturating_sub(seen.running.len() + seen.pending.len());
                    for _ in 0..want.min(fits) {
                        let task = format!("t{}", *next);
                        *next += 1;
                        seen.pending.insert(task.clone());
                        seen.launched += 1;
                        ops.push(client::launch(
                            &task,
                            &offer["agent_id"],
                            scalars(0.05, 8.0),
                            "sleep 1000",
                        ));
                    }
                    seen.hosts.insert(
                        offer["agent_id"]["value"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        offer["hostname"].as_str().unwrap_or_default().to_owned(),
                    );
                }
                let call = if ops.is_empty() {
                    json!({ "type": "DECLINE", "decline": { "offer_ids": [offer["id"]],
                        "filters": { "refuse_seconds": 0.0 } } })
                } else {
                    json!({ "type": "ACCEPT", "accept": { "offer_ids": [offer["id"]],
                        "operations": [{ "type": "LAUNCH", "launch": { "task_infos":
                            ops.iter().flat_map(|o| o["launch"]["task_infos"].as_array().cloned().unwrap_or_default()).collect::<Vec<_>>() } }],
                        "filters": { "refuse_seconds": 0.0 } } })
                };
                let _ = s.call(call).await;
            }
        }
        Some("UPDATE") => {
            let status = &event["update"]["status"];
            let _ = s.acknowledge(status).await;
            let task = status["task_id"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let agent = status["agent_id"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let state = status["state"].as_str().unwrap_or_default();
            let reason = status["reason"].as_str().unwrap_or_default();
            let mut seen = seen.lock().unwrap();
            match state {
                "TASK_STAGING" | "TASK_STARTING" => {}
                "TASK_RUNNING" => {
                    seen.pending.remove(&task);
                    if let Some(other) = seen.running.insert(task.clone(), agent.clone())
                        && other != agent
                    {
                        seen.duplicated
                            .push(format!("{task} on {other} and {agent}"));
                    }
                }
                "TASK_FINISHED" => {
                    seen.pending.remove(&task);
                    seen.running.remove(&task);
                }
                "TASK_KILLED" if seen.killed_by_us.contains(&task) => {
                    seen.running.remove(&task);
                }
                "TASK_KILLED" if reason == "REASON_AGENT_DRAINING" => {
                    seen.running.remove(&task);
                    seen.drained.push(task);
                }
                _ => {
                    seen.pending.remove(&task);
                    seen.running.remove(&task);
                    seen.interrupted
                        .push(format!("{task}: {state} {reason} {}", status["message"]));
                }
            }
        }
        _ => {}
    }
}

fn migrate(args: &[&str]) -> (bool, String) {
    let out = Command::new(support::bin("zk-migrate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running zk-migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn migration_state(api: SocketAddr) -> Value {
    client::get_json(api, "/api/v1/migrations/e2e")
        .await
        .unwrap_or(Value::Null)
}

/// The contender names under [`PATH`] on an ensemble, lowest first.
async fn group(connect: &str) -> Vec<String> {
    let zk = zk_client(connect).await;
    let children = zk.list_children(PATH).await.unwrap_or_default();
    orca_leader::contenders(&children)
        .into_iter()
        .map(|(_, n)| n.to_owned())
        .collect()
}

fn write_config(
    site: &Site,
    a: &Ensemble,
    b: &Ensemble,
    targets: &[(SocketAddr, SocketAddr)],
) -> PathBuf {
    let masters: Vec<String> = targets
        .iter()
        .map(|(h, g)| format!("    - {{ http: \"{h}\", grpc: \"{g}\" }}"))
        .collect();
    let yaml = format!(
        "id: e2e
sync:
  source-zk: \"{}\"
  target-zk: \"{}\"
  root: {PATH}
  session-timeout-ms: 4000
cluster:
  path: {PATH}
  target-masters:
{}
  leave-agents: [mig-leave]
  agent-batch-size: 1
  agent-batch-pause-ms: 200
actuator:
  master-bin: \"{}\"
  master-args: [\"--zk-session-timeout\", \"4s\", \"--allocation-interval\", \"100ms\"]
gates:
  leader-stable-ms: 1000
  phase-timeout-s: 60
state-dir: \"{}\"
",
        a.connect_string(),
        b.connect_string(),
        masters.join("\n"),
        support::bin("orca-master").display(),
        site.dir.join("migrations").display()
    );
    let path = site.dir.join("migration.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Advances one phase through the CLI (which follows it to its end) and returns the
/// migration's state.
async fn advance(api: SocketAddr, phase: u8) -> Value {
    let (ok, out) = migrate(&[
        "advance",
        "--migration-id",
        "e2e",
        "--confirm",
        "--api",
        &api.to_string(),
    ]);
    let state = migration_state(api).await;
    assert!(
        ok && state["completed"] == phase,
        "phase {phase} did not complete: {out}\n{}",
        serde_json::to_string_pretty(&state["gates"]).unwrap_or_default()
    );
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_cluster_moves_from_ensemble_a_to_b_without_interrupting_a_task() {
    support::agent::require_root();
    let dir = std::env::temp_dir().join(format!("orca-e2e-migration-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let a = Ensemble::new(&dir.join("zk"), "mig-a", 3, 21910);
    let b = Ensemble::new(&dir.join("zk"), "mig-b", 3, 21920);
    let mut site = Site {
        dir: dir.clone(),
        ensembles: vec![a.clone(), b.clone()],
        cgroup_parents: Vec::new(),
        target_http: Vec::new(),
        orchestrator: None,
        agents: Vec::new(),
    };
    a.start(WAIT).expect("ensemble A starts");
    b.start(WAIT).expect("ensemble B starts");
    let zk_a = format!("zk://{}{PATH}", a.connect_string());

    let sources: Vec<MasterProcess> = (0..3)
        .map(|i| MasterProcess::start(&zk_a, &dir, &format!("a{i}"), &[]))
        .collect();
    let (http_base, grpc_base) = loop {
        let (h, g) = (three_free_ports(), three_free_ports());
        if h.abs_diff(g) >= 3 {
            break (h, g);
        }
    };
    let targets: Vec<(SocketAddr, SocketAddr)> = (0..3)
        .map(|i| {
            (
                SocketAddr::from(([127, 0, 0, 1], http_base + i)),
                SocketAddr::from(([127, 0, 0, 1], grpc_base + i)),
            )
        })
        .collect();
    site.target_http = targets.iter().map(|(h, _)| *h).collect();
    let all_masters: Vec<SocketAddr> = sources
        .iter()
        .map(|m| m.http)
        .chain(targets.iter().map(|(h, _)| *h))
        .collect();
    let first_leader = {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = find_leader(&all_masters).await {
                break l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader on A: {}",
                sources
                    .iter()
                    .map(MasterProcess::log)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    start_agent(&mut site, "mig-stay", &zk_a);
    start_agent(&mut site, "mig-leave", &zk_a);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fw = tokio::spawn(framework(
        Arc::new(Mutex::new(all_masters.clone())),
        seen.clone(),
        stop_rx,
    ));
    wait_for(
        "the framework's 50 tasks running on both agents",
        WAIT,
        || async {
            let seen = seen.lock().unwrap();
            let agents: HashSet<&String> = seen.running.values().collect();
            seen.running.len() >= TASKS && agents.len() == 2
        },
    )
    .await;

    // Phase 1: the orchestrator starts and syncs B.
    let config = write_config(&site, &a, &b, &targets);
    let api = SocketAddr::from(([127, 0, 0, 1], three_free_ports()));
    let log = std::fs::File::create(dir.join("zk-migrate.log")).unwrap();
    site.orchestrator = Some(
        Command::new(support::bin("zk-migrate"))
            .args(["start", "--config"])
            .arg(&config)
            .args(["--listen", &api.to_string()])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("phase 1 done", WAIT, || async {
        migration_state(api).await["completed"] == 1
    })
    .await;
    // B holds the registry and A's contenders under the same names.
    assert_eq!(
        group(&a.connect_string()).await,
        group(&b.connect_string()).await
    );
    assert_eq!(group(&b.connect_string()).await.len(), 3);
    let zkb = zk_client(&b.connect_string()).await;
    assert!(
        zkb.check_stat(&format!("{PATH}/orca-registry"))
            .await
            .unwrap()
            .is_some()
    );
    let (ok, status) = migrate(&["status", "--migration-id", "e2e", "--api", &api.to_string()]);
    assert!(
        ok && status.contains("waiting to advance to phase 2"),
        "{status}"
    );

    // Phase 2: three masters on B join; one group, seen alike through A and B, same leader.
    let state = advance(api, 2).await;
    let (on_a, on_b) = (
        group(&a.connect_string()).await,
        group(&b.connect_string()).await,
    );
    assert_eq!(on_a.len(), 6, "{on_a:?}");
    assert_eq!(on_a, on_b, "the group differs between A and B");
    assert_eq!(
        find_leader(&all_masters).await,
        Some(first_leader),
        "the leader changed"
    );
    let b_seq: Vec<u64> = on_b
        .iter()
        .filter_map(|n| orca_leader::sequence(n))
        .collect();
    assert!(
        b_seq[3] >= b_seq[2] + 1000,
        "B's masters rank after A's: {on_b:?}"
    );
    assert!(
        state["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["passed"] == true)
    );

    // Phase 3: masters on A leave, the leader last; a master on B leads.
    advance(api, 3).await;
    let leader = find_leader(&all_masters).await.unwrap();
    assert!(
        site.target_http.contains(&leader),
        "{leader} is not a master on B"
    );
    for m in &sources {
        assert!(
            orca_migrate::actuator::listener_pid(m.http).is_none(),
            "master {} still runs",
            m.http
        );
    }
    assert_eq!(
        group(&a.connect_string()).await,
        group(&b.connect_string()).await
    );
    assert_eq!(group(&b.connect_string()).await.len(), 3);

    // Phase 4: both agents follow B, live.
    let state = advance(api, 4).await;
    assert_eq!(state["switched_agents"].as_array().unwrap().len(), 2);

    // Phase 5: the agent tied to A is drained; its tasks run on the other one.
    let state = advance(api, 5).await;
    assert_eq!(state["drained_agents"].as_array().unwrap().len(), 1);
    wait_for(
        "all 50 tasks running again, on mig-stay only",
        WAIT,
        || async {
            let seen = seen.lock().unwrap();
            let hosts: HashSet<&str> = seen
                .running
                .values()
                .filter_map(|agent| seen.hosts.get(agent).map(String::as_str))
                .collect();
            seen.running.len() >= TASKS && hosts == HashSet::from(["mig-stay"])
        },
    )
    .await;

    // Phase 6: no session left on A, its tree archived, its servers stopped.
    drop(zkb);
    let state = advance(api, 6).await;
    assert_eq!(state["status"]["state"], "completed");
    for n in 1..=3 {
        assert!(
            !orca_zk_local::serving(a.client_addr(n)),
            "A's server {n} still serves"
        );
    }
    let archive = PathBuf::from(state["archive"]["file"].as_str().unwrap());
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert!(
        archived.contains(&format!("\"path\":\"{PATH}/orca-registry\"")),
        "{archive:?}"
    );

    // B is independent: the cluster still runs and the framework still launches there.
    let launched = seen.lock().unwrap().launched;
    wait_for("tasks still killed and relaunched on B", WAIT, || async {
        seen.lock().unwrap().launched > launched + 3
    })
    .await;
    let (ok, report) = migrate(&["report", "--migration-id", "e2e", "--api", &api.to_string()]);
    assert!(
        ok && report.contains("# Migration e2e") && report.contains("complete"),
        "{report}"
    );
    assert!(report.contains("task interruptions: 0"), "{report}");

    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), fw).await;
    let seen = seen.lock().unwrap();
    assert!(
        seen.interrupted.is_empty(),
        "interrupted tasks: {:?}",
        seen.interrupted
    );
    assert!(
        seen.duplicated.is_empty(),
        "duplicated tasks: {:?}",
        seen.duplicated
    );
    assert!(
        seen.longest_gap < Duration::from_secs(15),
        "the framework was without a subscription for {:?} (longer than a heartbeat)",
        seen.longest_gap
    );
    assert!(!seen.drained.is_empty(), "the drain moved no task");
    eprintln!(
        "migration: {} tasks launched, {} subscriptions, longest gap {:?}, {} moved by the drain",
        seen.launched,
        seen.subscriptions,
        seen.longest_gap,
        seen.drained.len()
    );
}
