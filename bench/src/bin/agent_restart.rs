//! Agent restart with running tasks: an `orca-master` process, an `orca-agent` process
//! running `--tasks` real tasks (each a `sleep` under its own `orca-task-supervisor`, in its
//! own cgroup) for a Mesos HTTP framework in this process. The agent is killed with SIGKILL
//! and started again; measured from the restart: the agent's own recovery (checkpoints
//! read, every supervisor reattached), and the time until the master has the agent
//! re-registered with every task. Counted afterwards: tasks whose process is not the one
//! that ran before (killed or restarted), and terminal updates the framework received.
//! Baseline in the same run: the same agent restarted with no tasks. Needs root.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use orca_bench::cluster::{AgentProcess as Agent, MasterProcess};
use orca_master::api::mesos_http::client::{self, SchedulerClient, scalars};
use orca_task_supervisor::Pids;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500)]
    tasks: usize,
    /// Restarts measured (each a SIGKILL and a start).
    #[arg(long, default_value_t = 3)]
    restarts: usize,
}

const WAIT: Duration = Duration::from_secs(120);

/// The agent's `took=…` on its recovery line, in milliseconds.
fn took_ms(line: &str) -> Option<f64> {
    let value = line.split("took=").nth(1)?.split_whitespace().next()?;
    let (number, unit) = value
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .map(|i| value.split_at(i))?;
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "s" => number * 1000.0,
        "ms" => number,
        "µs" | "us" => number / 1000.0,
        "ns" => number / 1e6,
        _ => return None,
    })
}

/// Polls the master (after the agent said it registered again) until an agent is active
/// and `tasks` tasks are running.
async fn until_registered(master: &MasterProcess, tasks: usize, after: Instant) -> Result<Instant> {
    loop {
        let state = client::get_json(master.http, "/master/state").await?;
        let running = state["frameworks"]
            .as_array()
            .map(|fws| {
                fws.iter()
                    .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
                    .filter(|t| t["state"] == "TASK_RUNNING")
                    .count()
            })
            .unwrap_or(0);
        let active = state["slaves"]
            .as_array()
            .is_some_and(|agents| agents.iter().any(|a| a["active"] == true));
        if active && running == tasks {
            return Ok(Instant::now());
        }
        if after.elapsed() > WAIT {
            bail!("the master did not see the agent back with {tasks} tasks: {state}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        nix::unistd::Uid::effective().is_root(),
        "real tasks run in cgroups: run as root"
    );
    let master = MasterProcess::start(&["--allocation-interval", "50ms"])?;
    let base = std::env::temp_dir().join(format!("orca-agent-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cgroups_root = format!("orca-bench-restart-{}", std::process::id());

    // Baseline: an agent with no tasks, restarted.
    let start = |work: &std::path::Path| {
        Agent::start(
            &master,
            work,
            &cgroups_root,
            "restart-bench",
            "cpus:64;mem:65536",
        )
    };
    let empty_work = base.join("empty");
    let mut baseline = Vec::new();
    {
        let mut agent = start(&empty_work)?;
        agent.wait_line("registered with the master")?;
        for _ in 0..args.restarts {
            agent.kill9();
            let started = Instant::now();
            agent = start(&empty_work)?;
            let (_, at) = agent.wait_line("registered with the master")?;
            baseline.push(at.duration_since(started).as_secs_f64() * 1000.0);
        }
    }

    let work = base.join("work");
    let mut agent = start(&work)?;
    agent.wait_line("registered with the master")?;
    let agent_id = std::fs::read_to_string(work.join("agent_id"))?;
    let mut s = SchedulerClient::subscribe(
        master.http,
        json!({ "user": "root", "name": "restart-bench", "roles": ["*"],
                "capabilities": [{ "type": "MULTI_ROLE" }] }),
    )
    .await?;
    // The offers of the agent with tasks (the baseline's agent is gone).
    let mut launched = 0;
    while launched < args.tasks {
        let event = s.take(WAIT, |e| e["type"] == "OFFERS").await?;
        for offer in event["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let ours = offer["agent_id"]["value"] == agent_id.as_str();
            let count = if ours {
                (args.tasks - launched).min(200)
            } else {
                0
            };
            let ops: Vec<Value> = (launched..launched + count)
                .map(|i| {
                    client::launch(
                        &format!("t{i}"),
                        &offer["agent_id"],
                        scalars(0.01, 8.0),
                        "sleep 3600",
                    )
                })
                .collect();
            launched += count;
            s.call(json!({ "type": "ACCEPT", "accept": {
                "offer_ids": [offer["id"]], "operations": ops,
                "filters": { "refuse_seconds": 0.0 } } }))
                .await?;
        }
    }
    let mut running = 0;
    while running < args.tasks {
        let event = s.take(WAIT, |e| e["type"] == "UPDATE").await?;
        let status = &event["update"]["status"];
        s.acknowledge(status).await?;
        if status["state"] == "TASK_RUNNING" {
            running += 1;
        } else if status["state"] != "TASK_STARTING" {
            bail!("a task did not start: {status}");
        }
    }
    let framework_id = s.framework_id.clone();
    let checkpoint = |task: &str| -> PathBuf {
        work.join("meta/frameworks")
            .join(&framework_id)
            .join("tasks")
            .join(task)
    };
    let before: HashMap<String, Pids> = (0..args.tasks)
        .map(|i| {
            let id = format!("t{i}");
            let pids = Pids::read(&checkpoint(&id))?.context("a task's processes")?;
            Ok((id, pids))
        })
        .collect::<Result<_>>()?;
    println!(
        "{} tasks running under the agent (pid {})",
        args.tasks,
        agent.child.id()
    );

    let mut results = Vec::new();
    for restart in 0..args.restarts {
        agent.kill9();
        let started = Instant::now();
        agent = start(&work)?;
        let (line, _) = agent.wait_line("recovered the tasks of the previous run")?;
        let recovery_ms = took_ms(&line).context("the recovery line's took=")?;
        let reattached: usize = line
            .split("reattached=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (_, registered) = agent.wait_line("registered with the master")?;
        let master_sees = until_registered(&master, args.tasks, started).await?;
        let replaced = before
            .values()
            .filter(|p| !p.task.is_alive() || !p.supervisor.is_alive())
            .count();
        let mut terminal = 0;
        while let Ok(Ok(event)) = tokio::time::timeout(
            Duration::from_millis(200),
            s.take(WAIT, |e| e["type"] == "UPDATE"),
        )
        .await
        {
            let status = &event["update"]["status"];
            s.acknowledge(status).await?;
            if status["state"] != "TASK_RUNNING" {
                terminal += 1;
            }
        }
        let result = json!({
            "restart": restart + 1,
            "reattached": reattached,
            "recovery_ms": recovery_ms,
            "registered_ms": registered.duration_since(started).as_secs_f64() * 1000.0,
            "master_sees_all_ms": master_sees.duration_since(started).as_secs_f64() * 1000.0,
            "tasks_killed_or_restarted": replaced,
            "terminal_updates": terminal,
        });
        println!("restart {result}");
        results.push(result);
    }
    let max = |key: &str| {
        results
            .iter()
            .filter_map(|r| r[key].as_f64())
            .fold(0.0, f64::max)
    };
    let baseline_max = baseline.iter().copied().fold(0.0, f64::max);
    println!(
        "baseline (no tasks): agent start → registered {:.1} – {baseline_max:.1} ms",
        baseline.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!(
        "{} tasks: recovery ≤ {:.1} ms (goal ≤ 1000), start → registered ≤ {:.1} ms, \
         start → master sees all running ≤ {:.1} ms; tasks killed or restarted {} (goal 0); \
         terminal updates {}",
        args.tasks,
        max("recovery_ms"),
        max("registered_ms"),
        max("master_sees_all_ms"),
        max("tasks_killed_or_restarted"),
        max("terminal_updates"),
    );
    // Teardown ends the tasks; the agent then removes their cgroups.
    s.call(json!({ "type": "TEARDOWN" })).await?;
    let deadline = Instant::now() + WAIT;
    while before.values().any(|p| p.task.is_alive()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(agent);
    if let Ok(driver) = orca_agent::tasks::cgroups::Driver::detect() {
        driver.remove_parent(&cgroups_root);
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
