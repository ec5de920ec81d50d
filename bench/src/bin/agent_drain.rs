//! Draining an agent under a framework that relaunches elsewhere: an `orca-master` process,
//! two `orca-agent` processes running real tasks (each under its own supervisor, in its own
//! cgroup) and a Mesos HTTP framework in this process. `--tasks` tasks run on agent A; the
//! operator API drains A with `max_grace_period`; the framework relaunches every task it
//! hears was killed by the drain (`REASON_AGENT_DRAINING`) on agent B.
//!
//! By default the tasks ignore SIGTERM and ask for a longer grace period than the drain
//! allows, so every kill waits out the drain's cap and ends in SIGKILL: the worst case. The
//! goal: every task running on B, and A DRAINED, within the cap + 2 s, 0 tasks lost.
//! Measured from the DRAIN_AGENT call: all tasks running elsewhere; A DRAINED (every task
//! ended and every update acknowledged). Counted: tasks whose original ended otherwise than
//! killed by the drain, relaunches that failed, original processes still alive afterwards.
//! Baseline in the same run: launching the same tasks on A at the start. Needs root.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use orca_bench::cluster::{AgentProcess, MasterProcess};
use orca_master::api::mesos_http::client::{self, SchedulerClient, scalars};
use orca_task_supervisor::Pids;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// The drain's `max_grace_period`, in seconds.
    #[arg(long, default_value_t = 3.0)]
    max_grace: f64,
    /// Tasks that end on SIGTERM (the best case) instead of ignoring it.
    #[arg(long)]
    polite_tasks: bool,
}

const WAIT: Duration = Duration::from_secs(120);

/// A task that asks for a 30 s grace period.
fn task(id: &str, agent_id: &Value, command: &str) -> Value {
    let mut task = client::task(id, agent_id, scalars(0.01, 8.0), command);
    task["kill_policy"] = json!({ "grace_period": { "nanoseconds": 30_000_000_000u64 } });
    task
}

fn agent_id(work: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(work.join("agent_id")).context("the agent's id file")
}

/// The drain state of `agent` in GET_AGENTS (`None` when it has no drain).
async fn drain_state(http: SocketAddr, agent: &str) -> Result<Option<String>> {
    let (code, body) = client::operator(http, &json!({ "type": "GET_AGENTS" })).await?;
    ensure!(code.is_success(), "GET_AGENTS: {code} {body}");
    let agents: Value = serde_json::from_str(&body)?;
    Ok(agents["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["agent_info"]["id"]["value"] == agent)
        .and_then(|a| a["drain_info"]["state"].as_str().map(str::to_owned)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "real tasks run in cgroups: run as root"
    );
    let master = MasterProcess::start(&["--allocation-interval", "50ms"])?;
    let base = std::env::temp_dir().join(format!("orca-agent-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cgroups_root = format!("orca-bench-drain-{}", std::process::id());
    let resources = "cpus:64;mem:65536";
    let (work_a, work_b) = (base.join("a"), base.join("b"));
    let agent_a = AgentProcess::start(&master, &work_a, &cgroups_root, "drain-a", resources)?;
    let agent_b = AgentProcess::start(&master, &work_b, &cgroups_root, "drain-b", resources)?;
    agent_a.wait_line("registered with the master")?;
    agent_b.wait_line("registered with the master")?;
    let (a, b) = (agent_id(&work_a)?, agent_id(&work_b)?);
    let command = if args.polite_tasks {
        "sleep 3600"
    } else {
        "trap '' TERM; sleep 3600"
    };

    let mut s = SchedulerClient::subscribe(
        master.http,
        json!({ "user": "root", "name": "drain-bench", "roles": ["*"],
                "capabilities": [{ "type": "MULTI_ROLE" }] }),
    )
    .await?;
    // Baseline: all tasks launched on A. B's offers are held for the relaunches.
    let mut held_b: Option<Value> = None;
    let launch_started = loop {
        let event = s.take(WAIT, |e| e["type"] == "OFFERS").await?;
        let mut started = None;
        for offer in event["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if offer["agent_id"]["value"] == b.as_str() {
                held_b = Some(offer);
                continue;
            }
            let ops: Vec<Value> = (0..args.tasks)
                .map(|i| task(&format!("t{i}"), &offer["agent_id"], command))
                .map(|t| json!({ "type": "LAUNCH", "launch": { "task_infos": [t] } }))
                .collect();
            started = Some(Instant::now());
            let (code, body) = s
                .call(json!({ "type": "ACCEPT", "accept": {
                    "offer_ids": [offer["id"]], "operations": ops } }))
                .await?;
            ensure!(code.as_u16() == 202, "ACCEPT: {code} {body}");
        }
        if let Some(started) = started {
            break started;
        }
    };
    let mut running = 0;
    while running < args.tasks {
        let event = s.take(WAIT, |e| e["type"] == "UPDATE").await?;
        let status = &event["update"]["status"];
        s.acknowledge(status).await?;
        match status["state"].as_str() {
            Some("TASK_RUNNING") => running += 1,
            Some("TASK_STARTING") => {}
            _ => bail!("a task did not start: {status}"),
        }
    }
    let baseline = launch_started.elapsed();
    let framework_id = s.framework_id.clone();
    let originals: HashMap<String, Pids> = (0..args.tasks)
        .map(|i| {
            let id = format!("t{i}");
            let meta = work_a
                .join("meta/frameworks")
                .join(&framework_id)
                .join("tasks")
                .join(&id);
            let pids = Pids::read(&meta)?.context("a task's processes")?;
            Ok((id, pids))
        })
        .collect::<Result<_>>()?;
    if !args.polite_tasks {
        // TASK_RUNNING means the process started, not that its shell already ran `trap`: a
        // SIGTERM before that would end it at once and make the drain look instant.
        let deadline = Instant::now() + WAIT;
        for pids in originals.values() {
            while !ignores_sigterm(pids.task.pid) {
                ensure!(
                    Instant::now() < deadline,
                    "task process {} never ignored SIGTERM",
                    pids.task.pid
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    println!(
        "{} tasks running on agent A ({}); launching them took {:.0} ms",
        args.tasks,
        if args.polite_tasks {
            "they end on SIGTERM"
        } else {
            "they ignore SIGTERM and ask for 30 s"
        },
        baseline.as_secs_f64() * 1000.0
    );

    // The drain, and a poller for when A is DRAINED.
    let drain_started = Instant::now();
    let (code, body) = client::operator(
        master.http,
        &json!({ "type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": { "value": a },
            "max_grace_period": format!("{}s", args.max_grace) } }),
    )
    .await?;
    ensure!(code.is_success(), "DRAIN_AGENT: {code} {body}");
    let drained = {
        let (http, a) = (master.http, a.clone());
        tokio::spawn(async move {
            loop {
                if drain_state(http, &a).await?.as_deref() == Some("DRAINED") {
                    return Ok::<_, anyhow::Error>(drain_started.elapsed());
                }
                ensure!(drain_started.elapsed() < WAIT, "agent A never DRAINED");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // The framework: every task killed by the drain goes again on B.
    let mut to_relaunch: Vec<String> = Vec::new();
    let mut relaunched: HashSet<String> = HashSet::new();
    let mut elsewhere = 0;
    let mut lost = Vec::new();
    let mut failed_relaunches = Vec::new();
    let mut offers_from_a = 0;
    while elsewhere < args.tasks {
        if let Some(offer) = held_b.take_if(|_| !to_relaunch.is_empty()) {
            let ops: Vec<Value> = to_relaunch
                .drain(..)
                .map(|id| task(&format!("{id}-b"), &offer["agent_id"], command))
                .map(|t| json!({ "type": "LAUNCH", "launch": { "task_infos": [t] } }))
                .collect();
            let (code, body) = s
                .call(json!({ "type": "ACCEPT", "accept": {
                    "offer_ids": [offer["id"]], "operations": ops,
                    // More relaunches may follow: what is left comes back at once, not
                    // after Mesos's default 5 s filter.
                    "filters": { "refuse_seconds": 0.0 } } }))
                .await?;
            ensure!(code.as_u16() == 202, "ACCEPT: {code} {body}");
        }
        ensure!(
            drain_started.elapsed() < WAIT,
            "{elsewhere} of {} tasks relaunched in {WAIT:?}",
            args.tasks
        );
        let event = s.take(WAIT, |_| true).await?;
        match event["type"].as_str() {
            Some("OFFERS") => {
                for offer in event["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    if offer["agent_id"]["value"] == b.as_str() {
                        held_b = Some(offer);
                    } else {
                        offers_from_a += 1;
                    }
                }
            }
            Some("RESCIND")
                if held_b
                    .as_ref()
                    .is_some_and(|o| o["id"] == event["rescind"]["offer_id"]) =>
            {
                held_b = None;
            }
            Some("UPDATE") => {
                let status = event["update"]["status"].clone();
                s.acknowledge(&status).await?;
                let id = status["task_id"]["value"].as_str().unwrap_or_default();
                let state = status["state"].as_str().unwrap_or_default();
                if let Some(original) = id.strip_suffix("-b") {
                    match state {
                        "TASK_RUNNING" => elsewhere += 1,
                        "TASK_STARTING" => {}
                        _ => failed_relaunches.push(format!("{original}: {status}")),
                    }
                } else if state == "TASK_KILLED"
                    && status["reason"] == "REASON_AGENT_DRAINING"
                    && relaunched.insert(id.to_owned())
                {
                    to_relaunch.push(id.to_owned());
                } else if state != "TASK_KILLING" {
                    lost.push(format!("{id}: {status}"));
                }
            }
            _ => {}
        }
        ensure!(
            failed_relaunches.is_empty() && lost.is_empty(),
            "tasks lost: {lost:?}; relaunches failed: {failed_relaunches:?}"
        );
    }
    let all_elsewhere = drain_started.elapsed();
    let drained = drained.await??;
    let alive = originals.values().filter(|p| p.task.is_alive()).count();
    let goal = args.max_grace + 2.0;
    let result = json!({
        "tasks": args.tasks,
        "max_grace_period_s": args.max_grace,
        "tasks_ignore_sigterm": !args.polite_tasks,
        "baseline_launch_ms": baseline.as_secs_f64() * 1000.0,
        "all_running_elsewhere_ms": all_elsewhere.as_secs_f64() * 1000.0,
        "agent_drained_ms": drained.as_secs_f64() * 1000.0,
        "tasks_lost": lost.len(),
        "relaunches_failed": failed_relaunches.len(),
        "original_processes_alive": alive,
        "offers_from_the_draining_agent": offers_from_a,
    });
    println!("drain {result}");
    println!(
        "drain of {} tasks (max grace {:.1} s): all running on B after {:.0} ms, A DRAINED \
         after {:.0} ms (goal ≤ {:.0} ms: {}); lost {}, relaunches failed {}, original \
         processes alive {}, offers from A while draining {}",
        args.tasks,
        args.max_grace,
        all_elsewhere.as_secs_f64() * 1000.0,
        drained.as_secs_f64() * 1000.0,
        goal * 1000.0,
        if all_elsewhere.max(drained).as_secs_f64() <= goal {
            "met"
        } else {
            "NOT met"
        },
        lost.len(),
        failed_relaunches.len(),
        alive,
        offers_from_a,
    );

    // Teardown ends the tasks on B; the agents then remove their cgroups.
    s.call(json!({ "type": "TEARDOWN" })).await?;
    let b_tasks: Vec<PathBuf> = (0..args.tasks)
        .map(|i| {
            work_b
                .join("meta/frameworks")
                .join(&framework_id)
                .join("tasks")
                .join(format!("t{i}-b"))
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline
        && b_tasks.iter().any(|meta| {
            Pids::read(meta)
                .ok()
                .flatten()
                .is_some_and(|p| p.task.is_alive())
        })
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((agent_a, agent_b));
    if let Ok(driver) = orca_agent::tasks::cgroups::Driver::detect() {
        driver.remove_parent(&cgroups_root);
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// Whether a process ignores SIGTERM (bit 15 of `SigIgn` in /proc/<pid>/status).
fn ignores_sigterm(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .is_ok_and(|s| s.sigign & (1 << (15 - 1)) != 0)
}
