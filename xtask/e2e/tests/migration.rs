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
use orca_migrate::{client::MigrationClient, overview::Overview};
use orca_tui::{app::App, migration::poll::poll_once, saved::SavedFilters};
use orca_zk_local::Ensemble;
use serde_json::{Value, json};
use support::{
    masters::{MasterProcess, three_free_ports},
    zk::{client as zk_client, wait_for},
};

const WAIT: Duration = Duration::from_secs(60);
const TASKS: usize = 50;
const PATH: &str = "/orca";

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
        let Some(leader) = client::find_leader(&list).await else {
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

/// A whole site: ensembles A and B, three masters electing on A, two agents (`mig-stay`,
/// and `mig-leave` on a host tied to A), the framework keeping its tasks, and the addresses
/// the masters on B will take. Everything is stopped when it is dropped.
struct Site {
    tag: String,
    dir: PathBuf,
    a: Ensemble,
    b: Ensemble,
    sources: Vec<MasterProcess>,
    targets: Vec<(SocketAddr, SocketAddr)>,
    all_masters: Vec<SocketAddr>,
    cgroup_parents: Vec<String>,
    orchestrator: Option<Child>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
    stop_framework: tokio::sync::watch::Sender<bool>,
    framework: Option<tokio::task::JoinHandle<()>>,
    api: SocketAddr,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut o) = self.orchestrator.take() {
            let _ = o.kill();
            let _ = o.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("zk-migrate.log")).unwrap_or_default();
            eprintln!("--- zk-migrate's log ---\n{log}");
        }
        let _ = self.stop_framework.send(true);
        // Masters the orchestrator started (on B, and on A again after a rollback) are
        // found by their ports.
        for http in &self.all_masters {
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
        self.a.stop();
        self.b.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Site {
    /// Starts everything, A's ensemble on `zk_base` and B's on `zk_base + 10`, and waits
    /// until the framework's tasks run on both agents.
    async fn start(tag: &str, zk_base: u16) -> Site {
        support::agent::require_root();
        let dir = std::env::temp_dir().join(format!("orca-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = Ensemble::new(&dir.join("zk"), &format!("{tag}-a"), 3, zk_base);
        let b = Ensemble::new(&dir.join("zk"), &format!("{tag}-b"), 3, zk_base + 10);
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
        let (stop_framework, stop_rx) = tokio::sync::watch::channel(false);
        let mut site = Site {
            tag: tag.to_owned(),
            dir: dir.clone(),
            a: a.clone(),
            b: b.clone(),
            sources: Vec::new(),
            all_masters: targets.iter().map(|(h, _)| *h).collect(),
            targets,
            cgroup_parents: Vec::new(),
            orchestrator: None,
            agents: Vec::new(),
            seen: Arc::new(Mutex::new(Seen::default())),
            stop_framework,
            framework: None,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        a.start(WAIT).expect("ensemble A starts");
        b.start(WAIT).expect("ensemble B starts");
        let zk_a = site.zk_url(false);
        site.sources = (0..3)
            .map(|i| MasterProcess::start(&zk_a, &dir, &format!("a{i}"), &[]))
            .collect();
        let sources: Vec<SocketAddr> = site.sources.iter().map(|m| m.http).collect();
        site.all_masters.splice(0..0, sources);
        site.wait_leader().await;
        site.start_agent("mig-stay");
        site.start_agent("mig-leave");
        site.framework = Some(tokio::spawn(framework(
            Arc::new(Mutex::new(site.all_masters.clone())),
            site.seen.clone(),
            stop_rx,
        )));
        let seen = site.seen.clone();
        wait_for(
            "the framework's tasks running on both agents",
            WAIT,
            || async {
                let seen = seen.lock().unwrap();
                let agents: HashSet<&String> = seen.running.values().collect();
                seen.running.len() >= TASKS && agents.len() == 2
            },
        )
        .await;
        site
    }

    fn zk_url(&self, on_b: bool) -> String {
        let e = if on_b { &self.b } else { &self.a };
        format!("zk://{}{PATH}", e.connect_string())
    }

    async fn wait_leader(&self) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = client::find_leader(&self.all_masters).await {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader: {}",
                self.sources
                    .iter()
                    .map(MasterProcess::log)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A real agent in this process (task manager, cgroups, supervisors) following A.
    fn start_agent(&mut self, hostname: &str) {
        let work = self.dir.join(format!("agent-{hostname}"));
        std::fs::create_dir_all(&work).unwrap();
        let parent = format!("orca-e2e-{}-{hostname}-{}", self.tag, std::process::id());
        let mut tasks = TaskManagerConfig::new(work.clone(), Driver::detect().unwrap());
        tasks.supervisor = support::bin("orca-task-supervisor");
        tasks.cgroup_parent = parent.clone();
        let (manager, updates) = TaskManager::new(tasks);
        let mut config = link::LinkConfig::new(
            orca_agent::master_switch::MasterSwitch::new(&self.zk_url(false), None).unwrap(),
            hostname.into(),
            Resources::parse("cpus:4;mem:1024").unwrap(),
        );
        config.retry_interval = Duration::from_millis(200);
        config.id_file = Some(work.join("agent_id"));
        self.cgroup_parents.push(parent);
        self.agents
            .push(tokio::spawn(link::run(config, manager, updates, None)));
    }

    /// The migration YAML (id `id`), with a start-zookeeper command that starts A's servers
    /// again on their own data, as a site's script would.
    fn write_config(&self, id: &str) -> PathBuf {
        self.write_config_tuned(id, 60, 30)
    }

    /// The migration YAML with its phase timeout and the sync's lag window set.
    fn write_config_tuned(&self, id: &str, phase_timeout_s: u64, lag_window_s: u64) -> PathBuf {
        let masters: Vec<String> = self
            .targets
            .iter()
            .map(|(h, g)| format!("    - {{ http: \"{h}\", grpc: \"{g}\" }}"))
            .collect();
        let script = self.dir.join("start-zookeeper.sh");
        let nodes: Vec<String> = (1..=3)
            .map(|n| {
                format!(
                    "  {}) node={} ;;",
                    self.a.client_addr(n),
                    self.dir
                        .join("zk")
                        .join(&self.a.name)
                        .join(format!("node{n}"))
                        .display()
                )
            })
            .collect();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# Starts one of A's servers again on its data: $1 is its client address.\n\
                 case \"$1\" in\n{}\n  *) echo \"unknown server $1\" >&2; exit 2 ;;\nesac\n\
                 cd \"$node\" && setsid java -Xmx512m -XX:+UseSerialGC -cp \
                 /usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-simple.jar \
                 org.apache.zookeeper.server.quorum.QuorumPeerMain \"$node/zoo.cfg\" >>\"$node/server.log\" 2>&1 </dev/null &\n\
                 echo $! > \"$node/pid\"\n",
                nodes.join("\n")
            ),
        )
        .unwrap();
        let yaml = format!(
            "id: {id}
sync:
  source-zk: \"{}\"
  target-zk: \"{}\"
  root: {PATH}
  session-timeout-ms: 4000
  lag-window-s: {lag_window_s}
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
  start-zookeeper: \"sh {} {{host}}\"
gates:
  leader-stable-ms: 1000
  phase-timeout-s: {phase_timeout_s}
state-dir: \"{}\"
",
            self.a.connect_string(),
            self.b.connect_string(),
            masters.join("\n"),
            support::bin("orca-master").display(),
            script.display(),
            self.dir.join("migrations").display()
        );
        let path = self.dir.join(format!("{id}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `zk-migrate start` (phase 1 begins), or `zk-migrate serve` when `resume`. It listens on
    /// a port the kernel picks (a port picked here could be taken by then) and the API's
    /// address is read from the line it prints.
    fn run_orchestrator(&mut self, args: &[&str]) {
        let path = self.dir.join("zk-migrate.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let from = log.metadata().unwrap().len() as usize;
        let mut child = Command::new(support::bin("zk-migrate"))
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        self.api = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let printed = text.get(from..).unwrap_or("").lines().find_map(|l| {
                let rest = l.split_once("API on http://")?.1;
                rest.split('/').next()?.parse::<SocketAddr>().ok()
            });
            if let Some(api) = printed {
                break api;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "zk-migrate {args:?} exited ({status}):\n{}",
                    text.get(from..).unwrap_or("")
                );
            }
            assert!(
                Instant::now() < deadline,
                "zk-migrate {args:?} printed no API address"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.orchestrator = Some(child);
    }

    async fn state(&self, id: &str) -> Value {
        client::get_json(self.api, &format!("/api/v1/migrations/{id}"))
            .await
            .unwrap_or(Value::Null)
    }

    /// Advances one phase through the CLI (which follows it to its end) and returns the
    /// migration's state.
    async fn advance(&self, id: &str, phase: u8) -> Value {
        let (ok, out) = migrate(&[
            "advance",
            "--migration-id",
            id,
            "--confirm",
            "--api",
            &self.api.to_string(),
        ]);
        let state = self.state(id).await;
        assert!(
            ok && state["completed"] == phase,
            "phase {phase} did not complete: {out}\n{}",
            serde_json::to_string_pretty(&state["gates"]).unwrap_or_default()
        );
        state
    }

    /// The framework's verdict: nothing interrupted or duplicated, never without a
    /// subscription for a heartbeat.
    fn assert_no_interruption(&self) {
        let seen = self.seen.lock().unwrap();
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

/// A POST with a body: the status code and the reply.
async fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, reply)
}

/// A GET: the reply's body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned())
}

/// The contender names under [`PATH`] on an ensemble, lowest first.
/// The TUI's Migration view fed by its own poller from the service at `api`, until the
/// overview satisfies `expect`; returns the screen drawn (120x40), which must show `line`.
async fn tui_view(api: &str, line: &str, expect: impl Fn(&Overview) -> bool) -> String {
    let client = MigrationClient::new(api);
    let mut app = App::new("127.0.0.1:1", SavedFilters::default()).with_migration(api);
    let deadline = Instant::now() + WAIT;
    let polled = loop {
        let polled = poll_once(&client).await;
        match &polled {
            Ok(p) if p.overview.as_ref().is_some_and(&expect) => break polled,
            _ => assert!(
                Instant::now() < deadline,
                "the Migration view's overview never showed what was expected: {polled:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.on_migration(polled, Instant::now());
    app.on_key(ratatui::crossterm::event::KeyEvent::new(
        ratatui::crossterm::event::KeyCode::Char('M'),
        ratatui::crossterm::event::KeyModifiers::NONE,
    ));
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| orca_tui::ui::draw(f, &mut app)).unwrap();
    let screen = terminal.backend().to_string();
    assert!(screen.contains(line), "{line:?} missing:\n{screen}");
    screen
}

async fn group(connect: &str) -> Vec<String> {
    let zk = zk_client(connect).await;
    let children = zk.list_children(PATH).await.unwrap_or_default();
    orca_leader::contenders(&children)
        .into_iter()
        .map(|(_, n)| n.to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_cluster_moves_from_ensemble_a_to_b_without_interrupting_a_task() {
    let mut site = Site::start("migration", 21910).await;
    let (a, b) = (site.a.connect_string(), site.b.connect_string());
    let first_leader = site.wait_leader().await;

    // Phase 1: the orchestrator starts and syncs B.
    let config = site.write_config("e2e");
    site.run_orchestrator(&["start", "--config", config.to_str().unwrap()]);
    wait_for("phase 1 done", WAIT, || async {
        site.state("e2e").await["completed"] == 1
    })
    .await;
    // B holds the registry and A's contenders under the same names.
    assert_eq!(group(&a).await, group(&b).await);
    assert_eq!(group(&b).await.len(), 3);
    let zkb = zk_client(&b).await;
    assert!(
        zkb.check_stat(&format!("{PATH}/orca-registry"))
            .await
            .unwrap()
            .is_some()
    );
    drop(zkb);
    let api = site.api.to_string();
    // One OpenMetrics exposition (as Prometheus asks for it): the migration's gauges, then
    // the sync's, one `# EOF`; and a text-format one that promtool finds nothing wrong in.
    let metrics = support::prometheus::get(
        site.api,
        "/metrics",
        Some(support::prometheus::PROMETHEUS_ACCEPT),
    )
    .unwrap();
    support::prometheus::assert_promtool_passes(
        "the migration service's /metrics",
        &support::prometheus::get(site.api, "/metrics", None).unwrap(),
    );
    for family in [
        "orca_migration_phases_completed{migration=\"e2e\"} 1",
        "orca_migration_gate_passed{",
        "orca_migration_zookeeper_sessions{",
        "# TYPE orca_migration_task_interruptions counter",
        "orca_migration_task_interruptions_total{migration=\"e2e\"} 0",
        "orca_sync_",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let (ok, status) = migrate(&["status", "--migration-id", "e2e", "--api", &api]);
    assert!(
        ok && status.contains("waiting to advance to phase 2"),
        "{status}"
    );
    // The sync's conflicts through the migration's API (none under last-write-wins).
    assert_eq!(
        http_get(site.api, "/api/v1/sync/conflicts").await.trim(),
        "[]"
    );
    let (code, body) = http_post(
        site.api,
        "/api/v1/sync/conflicts/resolve",
        r#"{"path": "/nothing-held", "winner": "a"}"#,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = http_post(site.api, "/api/v1/sync/conflicts/resolve", "{").await;
    assert_eq!(code, 400, "{body}");
    let screen = tui_view(&api, "✓ 1 target ensemble synced", |o| {
        o.ensembles[0].masters.len() == 3 && o.ensembles[1].masters.is_empty()
    })
    .await;
    assert!(screen.contains("A · "), "{screen}");

    // Phase 2: three masters on B join; one group, seen alike through A and B, same leader.
    let state = site.advance("e2e", 2).await;
    let (on_a, on_b) = (group(&a).await, group(&b).await);
    assert_eq!(on_a.len(), 6, "{on_a:?}");
    assert_eq!(on_a, on_b, "the group differs between A and B");
    assert_eq!(site.wait_leader().await, first_leader, "the leader changed");
    let b_seq: Vec<u64> = on_b
        .iter()
        .filter_map(|n| orca_leader::sequence(n))
        .collect();
    // The orchestrator's margin: B's next sequence 500 past A's.
    assert!(
        b_seq[3] >= b_seq[2] + 500,
        "B's masters rank after A's: {on_b:?}"
    );
    assert!(
        state["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["passed"] == true)
    );
    // The TUI's Migration view: three masters on each side, A's leading.
    tui_view(&api, "✓ 2 masters on B joined", |o| {
        let (on_a, on_b) = (&o.ensembles[0].masters, &o.ensembles[1].masters);
        on_a.len() == 3
            && on_b.len() == 3
            && on_a[0].leader
            && o.leader.as_ref().is_some_and(|l| !l.on_b)
            && o.sync.is_some()
            && o.tasks_running as usize >= TASKS - 5
    })
    .await;

    // Phase 3: masters on A leave, the leader last; a master on B leads.
    site.advance("e2e", 3).await;
    let leader = site.wait_leader().await;
    assert!(
        site.targets.iter().any(|(h, _)| *h == leader),
        "{leader} is not a master on B"
    );
    for m in &site.sources {
        assert!(
            orca_migrate::actuator::listener_pid(m.http).is_none(),
            "master {} still runs",
            m.http
        );
    }
    assert_eq!(group(&a).await, group(&b).await);
    assert_eq!(group(&b).await.len(), 3);

    // Phase 4, with the orchestrator killed (-9) after its first agent moved: `serve`
    // resumes the phase, and the second agent moves too.
    let (ok, out) = migrate(&[
        "advance",
        "--migration-id",
        "e2e",
        "--confirm",
        "--no-wait",
        "--api",
        &api,
    ]);
    assert!(ok, "{out}");
    wait_for("the first agent switched", WAIT, || async {
        site.state("e2e").await["switched_agents"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    let mut killed = site.orchestrator.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let state_dir = site.dir.join("migrations");
    site.run_orchestrator(&["serve", "--state-dir", state_dir.to_str().unwrap()]);
    wait_for("phase 4 done after the restart", WAIT, || async {
        site.state("e2e").await["completed"] == 4
    })
    .await;
    let state = site.state("e2e").await;
    assert_eq!(state["switched_agents"].as_array().unwrap().len(), 2);
    // The restarted orchestrator listens on a new port.
    let api = site.api.to_string();
    tui_view(&api, "✓ 4 agents moved to B", |o| {
        o.agents.on_b == 2
            && o.agents.on_a == 0
            && o.ensembles[0].masters.is_empty()
            && o.leader.as_ref().is_some_and(|l| l.on_b)
            && o.interruptions.is_empty()
    })
    .await;
    let timeline = state["timeline"].to_string();
    assert!(timeline.contains("resuming the phase"), "{timeline}");

    // Phase 5: the agent tied to A is drained; its tasks run on the other one.
    let state = site.advance("e2e", 5).await;
    assert_eq!(state["drained_agents"].as_array().unwrap().len(), 1);
    let seen = site.seen.clone();
    wait_for(
        "all tasks running again, on mig-stay only",
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
    let state = site.advance("e2e", 6).await;
    assert_eq!(state["status"]["state"], "completed");
    for n in 1..=3 {
        assert!(
            !orca_zk_local::serving(site.a.client_addr(n)),
            "A's server {n} still serves"
        );
    }
    tui_view(&api, "✓ 6 ensemble A retired", |o| {
        o.ensembles[0].servers.iter().all(|s| s.mode.is_none())
            && o.ensembles[1].quorum
            && o.sync.is_none()
    })
    .await;
    let archive = PathBuf::from(state["archive"]["file"].as_str().unwrap());
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert!(
        archived.contains(&format!("\"path\":\"{PATH}/orca-registry\"")),
        "{archive:?}"
    );

    // B is independent: the cluster still runs and the framework still launches there.
    let launched = site.seen.lock().unwrap().launched;
    wait_for("tasks still killed and relaunched on B", WAIT, || async {
        seen.lock().unwrap().launched > launched + 3
    })
    .await;
    let (ok, report) = migrate(&["report", "--migration-id", "e2e", "--api", &api]);
    assert!(
        ok && report.contains("# Migration e2e") && report.contains("complete"),
        "{report}"
    );
    assert!(report.contains("task interruptions: 0"), "{report}");

    let _ = site.stop_framework.send(true);
    if let Some(fw) = site.framework.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), fw).await;
    }
    site.assert_no_interruption();
    let seen = site.seen.lock().unwrap();
    assert!(!seen.drained.is_empty(), "the drain moved no task");
    eprintln!(
        "migration: {} tasks launched, {} subscriptions, longest gap {:?}, {} moved by the drain",
        seen.launched,
        seen.subscriptions,
        seen.longest_gap,
        seen.drained.len()
    );
}

/// Rollback from each of the six phases, one migration after another on one site: each
/// goes forward to its phase and back to phase 0, and ends with everything on A (masters,
/// leader, agents, A serving again after phase 6), B's group empty, and the framework's
/// tasks never interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_rolls_back_from_every_phase_to_everything_on_a() {
    let mut site = Site::start("rollback", 21930).await;
    let (a, b) = (site.a.connect_string(), site.b.connect_string());
    let source_http: Vec<SocketAddr> = site.sources.iter().map(|m| m.http).collect();
    for phase in 1..=6u8 {
        let id = format!("back{phase}");
        let config = site.write_config(&id);
        if site.orchestrator.is_none() {
            site.run_orchestrator(&["start", "--config", config.to_str().unwrap()]);
        } else {
            // The same orchestrator plans the next migration over its REST API.
            let yaml = std::fs::read_to_string(&config).unwrap();
            let (code, body) = http_post(site.api, "/api/v1/migrations", &yaml).await;
            assert_eq!(code, 201, "planning {id}: {body}");
            let (code, body) =
                http_post(site.api, &format!("/api/v1/migrations/{id}/start"), "").await;
            assert_eq!(code, 202, "starting {id}: {body}");
        }
        wait_for("phase 1 done", WAIT, || async {
            site.state(&id).await["completed"] == 1
        })
        .await;
        for next in 2..=phase {
            site.advance(&id, next).await;
        }
        let api = site.api.to_string();
        let (ok, out) = migrate(&["rollback", "--migration-id", &id, "--api", &api]);
        let state = site.state(&id).await;
        assert!(
            ok && state["status"]["state"] == "rolled-back",
            "rollback from phase {phase}: {out}\n{}",
            serde_json::to_string_pretty(&state["timeline"]).unwrap_or_default()
        );
        // Everything on A: its masters lead, B has no contender, A serves.
        let leader = site.wait_leader().await;
        assert!(
            source_http.contains(&leader),
            "after rolling back phase {phase}, {leader} leads"
        );
        wait_for("B's group empty", WAIT, || async {
            group(&b).await.is_empty()
        })
        .await;
        let on_a = group(&a).await;
        assert_eq!(on_a.len(), 3, "after rolling back phase {phase}: {on_a:?}");
        for n in 1..=3 {
            assert!(orca_zk_local::serving(site.a.client_addr(n)));
        }
        site.assert_no_interruption();
    }
}

/// Waits until migration `id` is halted; returns its phase and reason.
async fn halted(site: &Site, id: &str) -> (u8, String) {
    wait_for("the migration halted", WAIT, || async {
        site.state(id).await["status"]["state"] == "halted"
    })
    .await;
    let state = site.state(id).await;
    (
        state["status"]["phase"].as_u64().unwrap() as u8,
        state["status"]["reason"].as_str().unwrap().to_owned(),
    )
}

/// The number (1-3) of the server leading `ensemble`.
async fn leading_server(ensemble: &Ensemble) -> u16 {
    let health = orca_migrate::ensemble::EnsembleHealth::probe(&ensemble.connect_string()).await;
    let at = health
        .servers
        .iter()
        .position(|s| s.mode.as_deref() == Some("leader"))
        .expect("the ensemble has a leader");
    at as u16 + 1
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

/// Faults during migrations on one live site, the framework's tasks never interrupted:
/// - the sync lag gate: B's leading server frozen (SIGSTOP) while A is written to; changes
///   wait, phase 2's pre-checks fail and the migration halts saying so; then it rolls back;
/// - a server of B dies (kill -9) as phase 2 begins: B keeps its quorum, the masters on B
///   join through the other servers, the phase completes;
/// - a master of B dies (kill -9) in phase 3: the gate halts the migration naming it, and
///   `advance` retries the phase, which starts it again first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_halts_on_sync_lag_and_survives_a_b_server_and_a_master_dying() {
    use nix::sys::signal::Signal;
    let mut site = Site::start("faults", 21950).await;

    // Sync lag: a 2 s lag window and a 4 s phase timeout.
    let config = site.write_config_tuned("lag", 4, 2);
    site.run_orchestrator(&["start", "--config", config.to_str().unwrap()]);
    let api = site.api.to_string();
    let client = MigrationClient::new(api.clone());
    wait_for("phase 1 done", WAIT, || async {
        site.state("lag").await["completed"] == 1
    })
    .await;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (a, writing) = (site.a.connect_string(), writing.clone());
        tokio::spawn(async move {
            let zk = zk_client(&a).await;
            let path = format!("{PATH}/load");
            let _ = zk
                .create(
                    &path,
                    b"0",
                    &zookeeper_client::CreateMode::Persistent
                        .with_acls(zookeeper_client::Acls::anyone_all()),
                )
                .await;
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let _ = zk.set_data(&path, n.to_string().as_bytes(), None).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let frozen = site.b.node_pid(leading_server(&site.b).await).unwrap();
    signal(frozen, Signal::SIGSTOP);
    let sync_status = || async {
        client
            .get::<Value>("/api/v1/sync/status")
            .await
            .unwrap_or(Value::Null)
    };
    wait_for("changes waiting for the frozen B", WAIT, || async {
        sync_status().await["stalled_ms"].as_u64().unwrap_or(0) > 300
    })
    .await;
    client.advance("lag", None).await.unwrap();
    let (phase, reason) = halted(&site, "lag").await;
    signal(frozen, Signal::SIGCONT);
    assert_eq!(phase, 2, "{reason}");
    assert!(
        reason.contains("sync lag") && reason.contains("waited"),
        "the halt says the sync lags: {reason}"
    );
    let metrics = http_get(site.api, "/metrics").await;
    assert!(
        metrics.contains("orca_migration_halted{migration=\"lag\"} 1"),
        "{metrics}"
    );
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let (ok, out) = migrate(&["rollback", "--migration-id", "lag", "--api", &api]);
    assert!(ok, "{out}");
    assert_eq!(site.state("lag").await["status"]["state"], "rolled-back");
    wait_for("B whole again", WAIT, || async {
        (1..=3).all(|n| orca_zk_local::serving(site.b.client_addr(n)))
    })
    .await;
    // A new leader of B gives every session a fresh timeout: the sync's session from before
    // the freeze, and the mirrors it owned, go only then.
    wait_for("B's group empty", WAIT, || async {
        group(&site.b.connect_string()).await.is_empty()
    })
    .await;

    // A server of B dies as phase 2 begins; the phase completes on the other two. The sync's
    // session to B moves to another server, and the writes around that take longer than the
    // 100 ms the gate accepts: a lag window (3 s) shorter than the phase timeout (10 s) lets
    // that spike age out, as an operator would tune it, instead of halting the phase for a
    // server the ensemble already lives without.
    let config = site.write_config_tuned("faults", 10, 3);
    let yaml = std::fs::read_to_string(&config).unwrap();
    let (code, body) = http_post(site.api, "/api/v1/migrations", &yaml).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = http_post(site.api, "/api/v1/migrations/faults/start", "").await;
    assert_eq!(code, 202, "{body}");
    wait_for("phase 1 done", WAIT, || async {
        site.state("faults").await["completed"] == 1
    })
    .await;
    client.advance("faults", None).await.unwrap();
    let dead = if leading_server(&site.b).await == 3 {
        2
    } else {
        3
    };
    site.b.kill_node(dead).unwrap();
    // Polled by hand so that a timeout shows what the migration says it waits for.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = site.state("faults").await;
        if state["completed"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "phase 2 not done {WAIT:?} after server {dead} of B was killed; the migration \
             says: {state:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let on_b = group(&site.b.connect_string()).await;
    assert_eq!(on_b.len(), 6, "{on_b:?}");
    site.b.restart_node(dead, WAIT).unwrap();

    // A master of B dies in phase 3: the gate names it; advance starts it again.
    client.advance("faults", None).await.unwrap();
    wait_for("a master of A stopped", WAIT, || async {
        site.state("faults").await["timeline"]
            .to_string()
            .contains("stop master")
    })
    .await;
    let (victim, _) = site.targets[2];
    let pid = orca_migrate::actuator::listener_pid(victim).expect("the master of B runs");
    signal(pid, Signal::SIGKILL);
    let (phase, reason) = halted(&site, "faults").await;
    assert_eq!(phase, 3, "{reason}");
    assert!(
        reason.contains(&format!("master {victim} of B does not answer")),
        "the halt names the dead master: {reason}"
    );
    site.advance("faults", 3).await;
    let leader = site.wait_leader().await;
    assert!(site.targets.iter().any(|(h, _)| *h == leader), "{leader}");
    assert!(
        orca_migrate::actuator::listener_pid(victim).is_some(),
        "{victim} was started again"
    );
    assert_eq!(group(&site.b.connect_string()).await.len(), 3);
    site.assert_no_interruption();
}
