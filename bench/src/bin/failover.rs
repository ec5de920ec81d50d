//! `failover`: how fast a cluster of highly-available masters recovers from losing its leader,
//! and what it loses doing so.
//!
//! A three-server ZooKeeper ensemble with fsync (ZooKeeper's default), three `orca-master`
//! processes electing a leader in it, `--agents` simulated agents in their own process on the
//! real gRPC agent link (following the leader in ZooKeeper), and `--frameworks` Mesos HTTP
//! frameworks in this process (finding the leader in ZooKeeper) that bring `--tasks` tasks to
//! TASK_RUNNING. Then a launch storm: every framework keeps launching; in its middle the
//! leader is killed with SIGKILL. Measured from the kill:
//!
//! - **new leader**: ZooKeeper names another master and that master says it is elected;
//! - **agents**: the new leader has every agent registered again;
//! - **first offer**: a framework that re-subscribed gets its first offer;
//! - **frameworks**: every framework re-subscribed (with its id).
//!
//! Counted at the end, after the storm settles: tasks lost (seen RUNNING, not running at the
//! end), tasks duplicated (launched twice, counted by the agents), launches the dead leader
//! accepted but never delivered (the framework learns TASK_LOST through reconciliation, as
//! with Mesos), and status updates lost (made by an agent, never acknowledged, or a running
//! task the framework does not see RUNNING). A launch whose ACCEPT got no answer (the leader
//! died with it) is in doubt, as for any Mesos framework: the framework reconciles it and
//! learns RUNNING or TASK_LOST. Where agents and frameworks disagree, the tasks are named
//! with what the framework and the leader know of them.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use orca_bench::cluster::{MasterProcess, SimAgents};
use orca_leader::{Detector, ZkUrl};
use orca_master::api::mesos_http::client::{self, Caller, SchedulerClient, scalars};
use orca_zk_local::Ensemble;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    #[arg(long, default_value_t = 10)]
    frameworks: usize,
    /// Tasks brought to TASK_RUNNING before the leader is killed.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Tasks each framework launches per second during the storm.
    #[arg(long, default_value_t = 200)]
    storm_rate: u64,
    /// The storm's length; the leader is killed in its middle.
    #[arg(long, default_value_t = 6)]
    storm_seconds: u64,
    /// The masters' ZooKeeper session timeout (Mesos's default is 10 s).
    #[arg(long, default_value = "10s")]
    zk_session_timeout: String,
    /// ZooKeeper without fsync (measures the masters rather than this machine's disk).
    #[arg(long)]
    no_fsync: bool,
    /// Freeze the leader (SIGSTOP: a hung process, as in a long GC or VM pause) instead of
    /// killing it: nothing refuses its port, so its ZooKeeper session has to expire. After
    /// the failover it is thawed (SIGCONT) and the time it still claims to lead is measured.
    #[arg(long)]
    freeze: bool,
}

/// What one framework knows about its tasks.
#[derive(Default)]
struct Tasks {
    /// Accepted (202) launches.
    launched: HashSet<String>,
    /// Launches whose ACCEPT got no answer (the leader died or hung meanwhile): they may
    /// or may not have reached an agent, as with any Mesos framework.
    in_doubt: HashSet<String>,
    running: HashSet<String>,
    /// Tasks ever seen RUNNING.
    ever_running: HashSet<String>,
    terminal: HashMap<String, String>,
}

struct Framework {
    index: usize,
    tasks: Mutex<Tasks>,
    /// How many tasks it should have launched by now.
    target: AtomicU64,
    id: Mutex<Option<String>>,
    subscriptions: AtomicU64,
    resubscribed_at: Mutex<Option<Instant>>,
    first_offer_after_resubscribe: Mutex<Option<Instant>>,
    next_task: AtomicU64,
    /// Set to ask the framework to reconcile its unanswered launches explicitly.
    reconcile: AtomicBool,
}

const PER_OFFER: usize = 25;

fn info(index: usize, id: Option<&str>) -> Value {
    let mut info = json!({
        "user": "root",
        "name": format!("failover-{index}"),
        "roles": ["*"],
        "failover_timeout": 3600.0,
    });
    if let Some(id) = id {
        info["id"] = json!({ "value": id });
    }
    info
}

/// Runs a framework for ever: subscribe to the leader (again, with its id, after a
/// failover), launch up to its target on offers, acknowledge every update.
async fn framework(fw: Arc<Framework>, detector: Detector, dead: Arc<Mutex<Option<SocketAddr>>>) {
    loop {
        let leader = detector
            .leader()
            .map(|l| l.http_addr())
            .filter(|a| Some(*a) != *dead.lock().unwrap());
        let Some(leader) = leader else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let id = fw.id.lock().unwrap().clone();
        let Ok(mut s) = SchedulerClient::subscribe(leader, info(fw.index, id.as_deref())).await
        else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let again = fw.subscriptions.fetch_add(1, Ordering::SeqCst) > 0;
        if again {
            *fw.resubscribed_at.lock().unwrap() = Some(Instant::now());
        }
        *fw.id.lock().unwrap() = Some(s.framework_id.clone());
        let Ok(mut caller) = s.caller().await else {
            continue;
        };
        let _ = serve(&fw, &mut s, &mut caller, again, &detector, leader).await;
    }
}

/// A call with a deadline: a hung master (frozen, not dead) never answers.
async fn call(caller: &mut Caller, body: Value) -> Result<u16> {
    let (code, _) = tokio::time::timeout(Duration::from_secs(2), caller.call(body))
        .await
        .context("the master did not answer within 2 s")??;
    Ok(code.as_u16())
}

/// Answers events until the stream ends.
async fn serve(
    fw: &Framework,
    s: &mut SchedulerClient,
    caller: &mut Caller,
    resubscribed: bool,
    detector: &Detector,
    leader: SocketAddr,
) -> Result<()> {
    let mut offered = false;
    loop {
        // Another master leads (a hung leader's stream does not end by itself): go to it,
        // as Mesos scheduler drivers do when their detector names a new leader.
        if detector.leader().is_some_and(|l| l.http_addr() != leader) {
            return Ok(());
        }
        if fw.reconcile.swap(false, Ordering::SeqCst) {
            // Mesos's explicit reconciliation: the master answers for every task it is
            // asked about, TASK_LOST for one it does not know.
            let missing: Vec<Value> = {
                let t = fw.tasks.lock().unwrap();
                t.launched
                    .iter()
                    .chain(&t.in_doubt)
                    .filter(|id| !t.running.contains(*id) && !t.terminal.contains_key(*id))
                    .map(|id| json!({ "task_id": { "value": id } }))
                    .collect()
            };
            if !missing.is_empty() {
                call(
                    caller,
                    json!({ "type": "RECONCILE", "reconcile": { "tasks": missing } }),
                )
                .await?;
            }
        }
        let event = match s.next_event(Duration::from_millis(200)).await {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(client::ClientError::Timeout(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        match event["type"].as_str() {
            Some("OFFERS") => {
                if resubscribed && !offered {
                    let mut first = fw.first_offer_after_resubscribe.lock().unwrap();
                    first.get_or_insert_with(Instant::now);
                }
                offered = true;
                for offer in event["offers"]["offers"].as_array().into_iter().flatten() {
                    let launched = fw.tasks.lock().unwrap().launched.len() as u64;
                    let wanted = fw.target.load(Ordering::SeqCst).saturating_sub(launched);
                    let n = (wanted as usize).min(PER_OFFER);
                    if n == 0 {
                        call(caller, json!({
                                "type": "DECLINE",
                                "decline": { "offer_ids": [offer["id"]], "filters": { "refuse_seconds": 0.2 } }
                            }))
                            .await?;
                        continue;
                    }
                    let ids: Vec<String> = (0..n)
                        .map(|_| {
                            format!(
                                "f{}-t{}",
                                fw.index,
                                fw.next_task.fetch_add(1, Ordering::SeqCst)
                            )
                        })
                        .collect();
                    let tasks: Vec<Value> = ids
                        .iter()
                        .map(|id| client::task(id, &offer["agent_id"], scalars(0.1, 32.0), "true"))
                        .collect();
                    let answer = call(caller, json!({
                            "type": "ACCEPT",
                            "accept": {
                                "offer_ids": [offer["id"]],
                                "operations": [{ "type": "LAUNCH", "launch": { "task_infos": tasks } }],
                                "filters": { "refuse_seconds": 0.0 },
                            }
                        }))
                        .await;
                    let code = match answer {
                        Ok(code) => code,
                        Err(e) => {
                            fw.tasks.lock().unwrap().in_doubt.extend(ids);
                            return Err(e);
                        }
                    };
                    if code == 202 {
                        fw.tasks.lock().unwrap().launched.extend(ids);
                    }
                }
            }
            Some("UPDATE") => {
                let status = &event["update"]["status"];
                let task = status["task_id"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let state = status["state"].as_str().unwrap_or_default().to_owned();
                {
                    let mut tasks = fw.tasks.lock().unwrap();
                    if state == "TASK_RUNNING" {
                        tasks.running.insert(task.clone());
                        tasks.ever_running.insert(task);
                    } else if state != "TASK_STARTING" && state != "TASK_STAGING" {
                        tasks.running.remove(&task);
                        tasks.terminal.insert(task, state);
                    }
                }
                if status.get("uuid").is_some() {
                    call(
                        caller,
                        json!({
                            "type": "ACKNOWLEDGE",
                            "acknowledge": {
                                "agent_id": status["agent_id"],
                                "task_id": status["task_id"],
                                "uuid": status["uuid"],
                            }
                        }),
                    )
                    .await?;
                }
            }
            _ => {}
        }
    }
}

async fn elected(http: SocketAddr) -> bool {
    client::get_json(http, "/metrics/snapshot")
        .await
        .is_ok_and(|m| m["master/elected"] == 1.0)
}

async fn metric(http: SocketAddr, name: &str) -> f64 {
    client::get_json(http, "/metrics/snapshot")
        .await
        .ok()
        .and_then(|m| m[name].as_f64())
        .unwrap_or(-1.0)
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run(args: &Args, zk: &str) -> Result<()> {
    let masters: Vec<MasterProcess> = (0..3)
        .map(|_| {
            MasterProcess::start(&[
                "--zk",
                zk,
                "--zk-session-timeout",
                &args.zk_session_timeout,
                "--agent-ping-timeout",
                "30s",
            ])
        })
        .collect::<Result<_>>()?;
    let mut masters: Vec<Option<MasterProcess>> = masters.into_iter().map(Some).collect();
    let detector = Detector::start(ZkUrl::parse(zk)?, Duration::from_secs(10));
    let leader_of = |detector: &Detector, masters: &[Option<MasterProcess>]| {
        let http = detector.leader()?.http_addr();
        masters
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.http == http))
    };
    let mut first = None;
    wait_until("a leader elected", Duration::from_secs(30), || {
        let found = leader_of(&detector, &masters);
        first = found;
        async move { found.is_some() }
    })
    .await?;
    let leader = first.context("a leader")?;
    let leader_http = masters[leader].as_ref().unwrap().http;
    println!("3 masters, leader {leader_http}");

    let started = Instant::now();
    let agents = SimAgents::start(
        zk,
        args.agents,
        "cpus:32;mem:131072",
        &[
            "--keep-running",
            "--retry",
            "2",
            "--connections",
            "8",
            "--list-running",
        ],
    )?;
    println!(
        "{} simulated agents registered in {} (their own process, gRPC, following the leader)",
        args.agents,
        ms(started.elapsed())
    );

    let dead = Arc::new(Mutex::new(None));
    let per_framework = (args.tasks / args.frameworks.max(1)) as u64;
    let frameworks: Vec<Arc<Framework>> = (0..args.frameworks)
        .map(|index| {
            Arc::new(Framework {
                index,
                tasks: Mutex::default(),
                target: AtomicU64::new(per_framework),
                id: Mutex::new(None),
                subscriptions: AtomicU64::new(0),
                resubscribed_at: Mutex::new(None),
                first_offer_after_resubscribe: Mutex::new(None),
                next_task: AtomicU64::new(0),
                reconcile: AtomicBool::new(false),
            })
        })
        .collect();
    for fw in &frameworks {
        tokio::spawn(framework(fw.clone(), detector.clone(), dead.clone()));
    }
    let started = Instant::now();
    wait_until(
        "every framework's tasks running",
        Duration::from_secs(300),
        || {
            let all = frameworks
                .iter()
                .all(|f| f.tasks.lock().unwrap().running.len() as u64 >= per_framework);
            async move { all }
        },
    )
    .await?;
    println!(
        "{} frameworks with {} tasks RUNNING in {}",
        args.frameworks,
        args.tasks,
        ms(started.elapsed())
    );

    // The storm: targets grow at storm_rate per framework per second.
    let storming = Arc::new(AtomicBool::new(true));
    let storm = {
        let (frameworks, storming, rate) = (frameworks.clone(), storming.clone(), args.storm_rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while storming.load(Ordering::SeqCst) {
                tick.tick().await;
                for fw in &frameworks {
                    fw.target.fetch_add(rate / 20, Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(args.storm_seconds / 2)).await;
    let launched_before: usize = frameworks
        .iter()
        .map(|f| f.tasks.lock().unwrap().launched.len())
        .sum();

    // SIGKILL (or freeze) the leader.
    *dead.lock().unwrap() = Some(leader_http);
    let killed = Instant::now();
    let mut frozen = None;
    if args.freeze {
        let old = masters[leader].take().unwrap();
        signal(old.pid(), nix::sys::signal::Signal::SIGSTOP)?;
        frozen = Some(old);
    } else {
        masters[leader].take().unwrap().kill9();
    }
    let mut next = None;
    let new_leader_in = wait_until("a new leader", Duration::from_secs(60), || {
        let found = leader_of(&detector, &masters);
        next = found;
        let http = found.and_then(|i| masters[i].as_ref().map(|m| m.http));
        async move {
            match http {
                Some(http) => elected(http).await,
                None => false,
            }
        }
    })
    .await?;
    let new_http = masters[next.context("new leader")?].as_ref().unwrap().http;
    let agents_in = wait_until(
        "every agent re-registered",
        Duration::from_secs(60),
        || async { metric(new_http, "master/slaves_active").await >= args.agents as f64 },
    )
    .await?
        + new_leader_in;
    wait_until(
        "every framework re-subscribed",
        Duration::from_secs(60),
        || {
            let all = frameworks
                .iter()
                .all(|f| f.resubscribed_at.lock().unwrap().is_some());
            async move { all }
        },
    )
    .await?;
    let frameworks_in = frameworks
        .iter()
        .filter_map(|f| *f.resubscribed_at.lock().unwrap())
        .max()
        .map(|t| t - killed)
        .unwrap_or_default();
    wait_until(
        "a first offer after the failover",
        Duration::from_secs(60),
        || {
            let any = frameworks
                .iter()
                .any(|f| f.first_offer_after_resubscribe.lock().unwrap().is_some());
            async move { any }
        },
    )
    .await?;
    let first_offer_in = frameworks
        .iter()
        .filter_map(|f| *f.first_offer_after_resubscribe.lock().unwrap())
        .min()
        .map(|t| t - killed)
        .unwrap_or_default();
    // A thawed leader must find its term over: how long does it still say it leads?
    let mut thawed_claim = None;
    if let Some(old) = &frozen {
        signal(old.pid(), nix::sys::signal::Signal::SIGCONT)?;
        let thawed = Instant::now();
        let mut claimed = Duration::ZERO;
        while thawed.elapsed() < Duration::from_secs(3) {
            if elected(old.http).await {
                claimed = thawed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        thawed_claim = Some(claimed);
    }
    let remaining = Duration::from_secs(args.storm_seconds / 2).saturating_sub(killed.elapsed());
    tokio::time::sleep(remaining).await;
    storming.store(false, Ordering::SeqCst);
    let _ = storm.await;
    for fw in &frameworks {
        let launched = fw.tasks.lock().unwrap().launched.len() as u64;
        fw.target.store(launched, Ordering::SeqCst);
    }

    // Settle: every accepted launch reaches a state the framework knows; if not, the
    // framework asks the leader about the launches nobody answered for. Launches in doubt are
    // settled the Mesos way too: the framework asks about them (RUNNING if an agent has one,
    // TASK_LOST if no master knows it).
    let settled = wait_until("every launch answered", Duration::from_secs(30), || {
        let done = all_answered(&frameworks, |t| &t.launched);
        async move { done }
    })
    .await;
    // Asked again every second until answered, as Mesos frameworks must: a master answers
    // nothing for a task that may be on an agent it expects back after a failover.
    let asked = std::cell::Cell::new(None::<Instant>);
    let _ = wait_until("reconciliation answered", Duration::from_secs(30), || {
        if asked
            .get()
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            asked.set(Some(Instant::now()));
            for fw in &frameworks {
                fw.reconcile.store(true, Ordering::SeqCst);
            }
        }
        let done = all_answered(&frameworks, |t| &t.in_doubt)
            && (settled.is_ok() || all_answered(&frameworks, |t| &t.launched));
        async move { done }
    })
    .await;
    let mut lost = 0;
    let mut undelivered = 0;
    let mut unanswered = 0;
    let (mut launched, mut running) = (0, 0);
    for fw in &frameworks {
        let t = fw.tasks.lock().unwrap();
        launched += t.launched.len();
        running += t.running.len();
        lost += t
            .ever_running
            .iter()
            .filter(|id| !t.running.contains(*id))
            .count();
        undelivered += t
            .terminal
            .iter()
            .filter(|(id, state)| *state == "TASK_LOST" && !t.ever_running.contains(*id))
            .count();
        unanswered += t
            .launched
            .iter()
            .filter(|id| !t.running.contains(*id) && !t.terminal.contains_key(*id))
            .count();
    }
    if unanswered > 0 {
        // Say what the leader knows of them, to tell where they went.
        let state = client::get_json(new_http, "/master/state").await.ok();
        for fw in &frameworks {
            let t = fw.tasks.lock().unwrap();
            let missing: Vec<&String> = t
                .launched
                .iter()
                .filter(|id| !t.running.contains(*id) && !t.terminal.contains_key(*id))
                .take(3)
                .collect();
            for id in missing {
                let seen: Vec<Value> = state
                    .iter()
                    .flat_map(|s| s["frameworks"].as_array().cloned().unwrap_or_default())
                    .flat_map(|f| {
                        let fid = f["id"].clone();
                        f["tasks"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .chain(f["completed_tasks"].as_array().cloned().unwrap_or_default())
                            .filter(|task| task["id"] == id.as_str())
                            .map(move |task| json!({ "framework": fid, "state": task["state"], "statuses": task["statuses"] }))
                    })
                    .collect();
                println!(
                    "  unanswered: framework {} ({:?}) task {id}: the leader has {}",
                    fw.index,
                    fw.id.lock().unwrap(),
                    serde_json::to_string(&seen).unwrap_or_default()
                );
            }
        }
    }
    // Acknowledgements settle, then the agents say what they hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader_state = client::get_json(new_http, "/master/state").await.ok();
    let mut counts = agents.finish()?;
    let on_agents = counts
        .as_object_mut()
        .and_then(|c| c.remove("running_tasks"))
        .unwrap_or_default();
    let duplicated = counts["duplicated"].as_u64().unwrap_or(u64::MAX);
    let agents_running = counts["running"].as_u64().unwrap_or(0) as usize;
    let unacked = counts["unacknowledged"].as_u64().unwrap_or(u64::MAX);
    let in_doubt: usize = frameworks
        .iter()
        .map(|f| f.tasks.lock().unwrap().in_doubt.len())
        .sum();
    let mismatched = explain_mismatch(&frameworks, &on_agents, leader_state.as_ref());

    println!();
    println!(
        "failover after {} of the leader (goal in brackets):",
        if args.freeze {
            format!("SIGSTOP (session timeout {})", args.zk_session_timeout)
        } else {
            "SIGKILL".into()
        }
    );
    if let Some(claim) = thawed_claim {
        println!(
            "  the thawed old leader still answered master/elected=1 for {} after SIGCONT",
            ms(claim)
        );
    }
    println!(
        "  new leader elected           {:>9}  (<= 1 s)",
        ms(new_leader_in)
    );
    println!(
        "  first offer to a framework   {:>9}  (<= 2 s)",
        ms(first_offer_in)
    );
    println!(
        "  all {} agents re-registered {:>9}  (<= 5 s)",
        args.agents,
        ms(agents_in)
    );
    println!(
        "  all {} frameworks re-subscribed {:>6}",
        args.frameworks,
        ms(frameworks_in)
    );
    println!(
        "launch storm through the failover: {} launches accepted ({} before the kill), {} RUNNING at the end",
        launched, launched_before, running
    );
    println!("  tasks lost (seen RUNNING, not running at the end): {lost}  (goal 0)");
    println!("  tasks duplicated (launched twice, counted by the agents): {duplicated}  (goal 0)");
    println!(
        "  launches accepted (or in doubt) that no agent got (TASK_LOST to the framework): {undelivered}"
    );
    println!("  launches with no answer at the end: {unanswered}  (goal 0)");
    println!(
        "  launches whose ACCEPT got no answer (in doubt, as for any Mesos framework): {in_doubt}"
    );
    println!(
        "  status updates lost: {} never acknowledged, {} running on agents vs {} RUNNING to frameworks  (goal 0 and equal)",
        unacked, agents_running, running
    );
    println!(
        "  agents' counts: {}",
        serde_json::to_string(&counts).unwrap_or_default()
    );
    for line in &mismatched {
        println!("  mismatch: {line}");
    }
    println!(
        "result {}",
        json!({
            "new_leader_ms": new_leader_in.as_secs_f64() * 1000.0,
            "first_offer_ms": first_offer_in.as_secs_f64() * 1000.0,
            "agents_reregistered_ms": agents_in.as_secs_f64() * 1000.0,
            "frameworks_resubscribed_ms": frameworks_in.as_secs_f64() * 1000.0,
            "launched": launched,
            "running": running,
            "agents_running": agents_running,
            "lost": lost,
            "duplicated": duplicated,
            "undelivered": undelivered,
            "unanswered": unanswered,
            "in_doubt": in_doubt,
            "unacknowledged": unacked,
            "thawed_leader_claimed_ms": thawed_claim.map(|c| c.as_secs_f64() * 1000.0),
        })
    );
    Ok(())
}

/// Every task in `which` of every framework is RUNNING or ended, as its framework knows.
fn all_answered(frameworks: &[Arc<Framework>], which: fn(&Tasks) -> &HashSet<String>) -> bool {
    frameworks.iter().all(|f| {
        let t = f.tasks.lock().unwrap();
        which(&t)
            .iter()
            .all(|id| t.running.contains(id) || t.terminal.contains_key(id))
    })
}

/// Where frameworks and agents disagree about what runs: per framework, the tasks running on
/// agents that the framework does not see RUNNING and the reverse, with what the framework
/// and the leader know of a few of them.
fn explain_mismatch(
    frameworks: &[Arc<Framework>],
    on_agents: &Value,
    leader_state: Option<&Value>,
) -> Vec<String> {
    let leader_knows = |framework: &str, task: &str| -> Value {
        leader_state
            .iter()
            .flat_map(|s| s["frameworks"].as_array().cloned().unwrap_or_default())
            .filter(|f| f["id"] == framework)
            .flat_map(|f| {
                let mut all = f["tasks"].as_array().cloned().unwrap_or_default();
                all.extend(f["completed_tasks"].as_array().cloned().unwrap_or_default());
                all
            })
            .find(|t| t["id"] == task)
            .map(|t| json!({ "state": t["state"], "statuses": t["statuses"] }))
            .unwrap_or(Value::Null)
    };
    let mut lines = Vec::new();
    for fw in frameworks {
        let Some(id) = fw.id.lock().unwrap().clone() else {
            continue;
        };
        let t = fw.tasks.lock().unwrap();
        let agents: HashSet<String> = on_agents[&id]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let unseen: Vec<&String> = agents.iter().filter(|x| !t.running.contains(*x)).collect();
        let phantom: Vec<&String> = t.running.iter().filter(|x| !agents.contains(*x)).collect();
        if unseen.is_empty() && phantom.is_empty() {
            continue;
        }
        lines.push(format!(
            "framework {} ({id}): {} running on agents not RUNNING to it, {} RUNNING to it not on agents",
            fw.index,
            unseen.len(),
            phantom.len()
        ));
        for task in unseen.iter().chain(phantom.iter()).take(6) {
            lines.push(format!(
                "  {task}: accepted {}, in doubt {}, terminal {:?}, on agents {}; the leader has {}",
                t.launched.contains(*task),
                t.in_doubt.contains(*task),
                t.terminal.get(*task),
                agents.contains(*task),
                leader_knows(&id, task)
            ));
        }
    }
    lines
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .with_context(|| format!("sending {signal} to {pid}"))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let state = std::env::temp_dir().join(format!("orca-failover-bench-{}", std::process::id()));
    let mut ensemble = Ensemble::new(&state, "bench-ha", 3, 21890);
    ensemble.force_sync = !args.no_fsync;
    println!(
        "ZooKeeper: 3 servers, {}",
        if args.no_fsync {
            "forceSync=no"
        } else {
            "fsync before acknowledging (ZooKeeper's default)"
        }
    );
    ensemble.start(Duration::from_secs(60))?;
    let zk = format!("zk://{}/orca-failover", ensemble.connect_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&args, &zk));
    drop(rt);
    ensemble.stop();
    let _ = std::fs::remove_dir_all(&state);
    result
}
