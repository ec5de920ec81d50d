//! Moving running agents to another master without restarting them: two `orca-master`
//! processes (A and B, each its own cluster), `--agents` real `orca-agent` processes on A,
//! each running `--tasks-per-agent` real tasks (each under its own supervisor, in its own
//! cgroup) for a Mesos HTTP framework in this process.
//!
//! The operator asks master A to move every agent to B (the gRPC `SwitchAgentMaster` call,
//! all at once), or with `--via agent` each agent's own control socket (what
//! `orca-agent switch-master` does). Measured from the first call: every agent registered
//! with B, and every task running there (B's GET_TASKS). The goal: all re-registered within
//! 2 s, 0 tasks restarted. Counted: agents on B, tasks B lists running, task processes that
//! are not the ones that ran before (a restarted or lost task), agent processes that
//! exited. The framework then subscribes to B with its id and must find every task.
//! Baseline in the same run: the move as Mesos makes it, every agent restarted with B as its
//! `--master` (recovering its tasks), until all registered again.
//! Needs root.
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use orca_bench::cluster::{AgentProcess, MasterProcess, TaskLeftovers};
use orca_master::api::mesos_http::client::{self, SchedulerClient, scalars};
use orca_proto::{
    cluster::v1 as cluster_pb,
    operator::v1::{self as pb, operator_client::OperatorClient},
};
use orca_task_supervisor::Pids;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    agents: usize,
    #[arg(long, default_value_t = 2)]
    tasks_per_agent: usize,
    /// Who tells the agents: master A's operator API, or each agent's control socket.
    #[arg(long, value_enum, default_value = "master")]
    via: Via,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
enum Via {
    Master,
    Agent,
}

const WAIT: Duration = Duration::from_secs(180);
const RESOURCES: &str = "cpus:4;mem:4096";

fn agent_id(work: &Path) -> Result<String> {
    std::fs::read_to_string(work.join("agent_id")).context("the agent's id file")
}

/// Agent ids B lists, and the tasks it lists running.
async fn seen_by(http: SocketAddr) -> Result<(Vec<String>, usize)> {
    let (code, body) = client::operator(http, &json!({ "type": "GET_AGENTS" })).await?;
    ensure!(code.is_success(), "GET_AGENTS: {code} {body}");
    let agents: Value = serde_json::from_str(&body)?;
    let ids = agents["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["agent_info"]["id"]["value"].as_str().map(str::to_owned))
        .collect();
    let (code, body) = client::operator(http, &json!({ "type": "GET_TASKS" })).await?;
    ensure!(code.is_success(), "GET_TASKS: {code} {body}");
    let tasks: Value = serde_json::from_str(&body)?;
    let running = tasks["get_tasks"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count();
    Ok((ids, running))
}

/// One agent per work directory on `master` (started one after the other), once every one
/// logged its registration.
fn start_agents(
    master: &MasterProcess,
    works: &[PathBuf],
    cgroups_root: &str,
) -> Result<Vec<AgentProcess>> {
    let mut agents = Vec::with_capacity(works.len());
    for (i, work) in works.iter().enumerate() {
        agents.push(AgentProcess::start(
            master,
            work,
            cgroups_root,
            &format!("switch-{i}"),
            RESOURCES,
        )?);
    }
    for agent in &agents {
        agent.wait_line("registered with the master")?;
    }
    Ok(agents)
}

/// Tasks whose process is not the one that ran before the switch (restarted, or gone).
fn restarted_tasks(
    works: &[PathBuf],
    framework_id: &str,
    before: &HashMap<(usize, String), Pids>,
) -> Vec<String> {
    let mut restarted = Vec::new();
    for ((i, task), pids) in before {
        let meta = works[*i]
            .join("meta/frameworks")
            .join(framework_id)
            .join("tasks")
            .join(task);
        let now = Pids::read(&meta).ok().flatten();
        if !pids.task.is_alive() || now.is_none_or(|p| p.task != pids.task) {
            restarted.push(task.clone());
        }
    }
    restarted
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "real tasks run in cgroups: run as root"
    );
    let master_a = MasterProcess::start(&["--allocation-interval", "50ms"])?;
    let master_b = MasterProcess::start(&["--allocation-interval", "50ms"])?;
    let base = std::env::temp_dir().join(format!("orca-agent-switch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cgroups_root = format!("orca-bench-switch-{}", std::process::id());
    // Dropped last: the agents are gone by then, and every task ends with its cgroup.
    let _leftovers = TaskLeftovers {
        cgroups_root: cgroups_root.clone(),
        work: base.clone(),
    };

    // Baseline: the agents' first registration with A, from their start.
    let started = Instant::now();
    let works: Vec<PathBuf> = (0..args.agents)
        .map(|i| base.join(format!("agent-{i}")))
        .collect();
    let mut agents = start_agents(&master_a, &works, &cgroups_root)?;
    let first_registration = started.elapsed();
    let ids: Vec<String> = works.iter().map(|w| agent_id(w)).collect::<Result<_>>()?;
    println!(
        "{} agents registered with master A {:.0} ms after their start",
        args.agents,
        first_registration.as_secs_f64() * 1000.0
    );

    // Tasks on every agent.
    let framework_info = json!({ "user": "root", "name": "switch-bench", "roles": ["*"],
        "failover_timeout": 3600.0, "capabilities": [{ "type": "PARTITION_AWARE" }] });
    let mut s = SchedulerClient::subscribe(master_a.http, framework_info.clone()).await?;
    let framework_id = s.framework_id.clone();
    let total = args.agents * args.tasks_per_agent;
    let mut launched_on: HashMap<String, bool> = HashMap::new();
    let mut running = 0;
    while running < total {
        let event = s
            .take(WAIT, |e| e["type"] == "OFFERS" || e["type"] == "UPDATE")
            .await?;
        if event["type"] == "UPDATE" {
            let status = &event["update"]["status"];
            s.acknowledge(status).await?;
            match status["state"].as_str() {
                Some("TASK_RUNNING") => running += 1,
                Some("TASK_STARTING") => {}
                _ => bail!("a task did not start: {status}"),
            }
            continue;
        }
        for offer in event["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let agent = offer["agent_id"]["value"].as_str().unwrap_or_default();
            let ops: Vec<Value> = if launched_on.insert(agent.to_owned(), true).is_none() {
                (0..args.tasks_per_agent)
                    .map(|i| {
                        client::task(
                            &format!("{agent}-t{i}"),
                            &offer["agent_id"],
                            scalars(0.01, 8.0),
                            "sleep 3600",
                        )
                    })
                    .map(|t| json!({ "type": "LAUNCH", "launch": { "task_infos": [t] } }))
                    .collect()
            } else {
                Vec::new()
            };
            let call = if ops.is_empty() {
                json!({ "type": "DECLINE", "decline": { "offer_ids": [offer["id"]],
                        "filters": { "refuse_seconds": 3600.0 } } })
            } else {
                json!({ "type": "ACCEPT", "accept": { "offer_ids": [offer["id"]],
                        "operations": ops, "filters": { "refuse_seconds": 3600.0 } } })
            };
            let (code, body) = s.call(call).await?;
            ensure!(code.as_u16() == 202, "ACCEPT/DECLINE: {code} {body}");
        }
    }
    // Every task's processes, to tell a kept task from a restarted one.
    let mut tasks_before: HashMap<(usize, String), Pids> = HashMap::new();
    for (i, (work, id)) in works.iter().zip(&ids).enumerate() {
        for t in 0..args.tasks_per_agent {
            let task = format!("{id}-t{t}");
            let meta = work
                .join("meta/frameworks")
                .join(&framework_id)
                .join("tasks")
                .join(&task);
            let pids = Pids::read(&meta)?.context("a task's processes")?;
            tasks_before.insert((i, task), pids);
        }
    }
    println!("{total} tasks running on master A's agents");

    // The switch.
    let to = master_b.grpc.to_string();
    let switch_started = Instant::now();
    match args.via {
        Via::Master => {
            let operator = OperatorClient::connect(format!("http://{}", master_a.grpc))
                .await
                .context("master A's operator gRPC")?;
            let calls = ids.iter().map(|id| {
                let mut operator = operator.clone();
                let request = pb::SwitchAgentMasterRequest {
                    agent_id: id.clone(),
                    master: to.clone(),
                };
                async move { operator.switch_agent_master(request).await }
            });
            for reply in futures::future::join_all(calls).await {
                reply.context("SwitchAgentMaster")?;
            }
        }
        Via::Agent => {
            let calls = works.iter().map(|work| {
                let socket = orca_agent::control::socket_path(work);
                let to = to.clone();
                async move {
                    let mut control = orca_agent::control::connect(&socket).await?;
                    control
                        .switch_master(cluster_pb::SwitchMasterRequest {
                            master: to,
                            wait_seconds: 0.0,
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("SwitchMaster: {}", e.message()))?;
                    Ok::<_, anyhow::Error>(())
                }
            });
            for reply in futures::future::join_all(calls).await {
                reply?;
            }
        }
    }
    let told = switch_started.elapsed();
    let (mut all_registered, mut all_running) = (None, None);
    let (mut on_b, mut running_on_b) = (0, 0);
    while all_registered.is_none() || all_running.is_none() {
        let (agents_b, tasks_b) = seen_by(master_b.http).await?;
        on_b = ids.iter().filter(|id| agents_b.contains(id)).count();
        running_on_b = tasks_b;
        if all_registered.is_none() && on_b == args.agents {
            all_registered = Some(switch_started.elapsed());
        }
        if all_running.is_none() && running_on_b == total {
            all_running = Some(switch_started.elapsed());
        }
        if switch_started.elapsed() > WAIT {
            bail!(
                "after {WAIT:?}: {on_b} of {} agents on B, {running_on_b} of {total} tasks \
                 running there",
                args.agents
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (all_registered, all_running) = (all_registered.unwrap(), all_running.unwrap());
    // What went wrong on the way, if anything, in the agents' words.
    for agent in &agents {
        for line in agent.logged() {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("agent: {line}");
            }
        }
    }

    // The framework moves too: it subscribes to B with its id and finds its tasks.
    drop(s);
    let mut info = framework_info.clone();
    info["id"] = json!({ "value": framework_id });
    let mut s = SchedulerClient::subscribe(master_b.http, info).await?;
    ensure!(
        s.framework_id == framework_id,
        "B gave the framework another id"
    );
    let (code, body) = s
        .call(json!({ "type": "RECONCILE", "reconcile": { "tasks": [] } }))
        .await?;
    ensure!(code.as_u16() == 202, "RECONCILE: {code} {body}");
    let mut reconciled = 0;
    while reconciled < total {
        let event = s.take(WAIT, |e| e["type"] == "UPDATE").await?;
        let status = &event["update"]["status"];
        ensure!(
            status["state"] == "TASK_RUNNING",
            "a task is not running on B: {status}"
        );
        reconciled += 1;
    }

    // Nothing restarted: the same task processes, the same agent processes.
    let restarted = restarted_tasks(&works, &framework_id, &tasks_before);
    let mut agents_restarted = 0;
    for agent in &mut agents {
        if agent.child.try_wait()?.is_some() {
            agents_restarted += 1;
        }
    }

    // Baseline: the Mesos way, each agent restarted with B as its --master (its tasks
    // recovered), from the first kill until every one registered again.
    let restart_started = Instant::now();
    for agent in &mut agents {
        agent.kill9();
    }
    let agents = start_agents(&master_b, &works, &cgroups_root)?;
    let restart_move = restart_started.elapsed();
    let restarted_by_restart = restarted_tasks(&works, &framework_id, &tasks_before);
    let result = json!({
        "agents": args.agents,
        "tasks": total,
        "via": if args.via == Via::Master { "master" } else { "agent" },
        "first_registration_ms": first_registration.as_secs_f64() * 1000.0,
        "baseline_restart_with_new_master_ms": restart_move.as_secs_f64() * 1000.0,
        "tasks_restarted_by_the_baseline": restarted_by_restart.len(),
        "calls_done_ms": told.as_secs_f64() * 1000.0,
        "all_registered_with_b_ms": all_registered.as_secs_f64() * 1000.0,
        "all_tasks_running_on_b_ms": all_running.as_secs_f64() * 1000.0,
        "agents_on_b": on_b,
        "tasks_running_on_b": running_on_b,
        "tasks_reconciled_by_the_framework_on_b": reconciled,
        "tasks_restarted": restarted.len(),
        "agent_processes_restarted": agents_restarted,
    });
    println!("switch {result}");
    println!(
        "live switch of {} agents ({} tasks) from A to B via {}: all re-registered with B \
         after {:.0} ms, all tasks running there after {:.0} ms (goal ≤ 2000 ms: {}); tasks \
         restarted {}, agents restarted {}; baseline (Mesos's way): restarting them with B as \
         --master took {:.0} ms to re-register all ({} tasks restarted)",
        args.agents,
        total,
        if args.via == Via::Master {
            "master A's SwitchAgentMaster"
        } else {
            "each agent's control socket"
        },
        all_registered.as_secs_f64() * 1000.0,
        all_running.as_secs_f64() * 1000.0,
        if all_registered.max(all_running) <= Duration::from_secs(2) {
            "met"
        } else {
            "NOT met"
        },
        restarted.len(),
        agents_restarted,
        restart_move.as_secs_f64() * 1000.0,
        restarted_by_restart.len(),
    );
    ensure!(
        restarted.is_empty(),
        "tasks restarted or lost: {restarted:?}"
    );

    // Teardown on B ends the tasks; what is left ends with its cgroup.
    s.call(json!({ "type": "TEARDOWN" })).await?;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && tasks_before.values().any(|p| p.task.is_alive()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(agents);
    Ok(())
}
