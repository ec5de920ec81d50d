//! A whole migration, A to B, of a simulated large cluster on this host: two three-server
//! ensembles; A holding `--znodes` znodes beside the cluster's own; three `orca-master`
//! processes electing on A; `--agents` agents following A, simulated by `sim-agents` in
//! another process over the masters' real gRPC agent link (each switched live by its
//! master, as `orca-agent` is), or with `--real-agents` real `orca-agent` processes running
//! real tasks (each under its own supervisor, in its own cgroup; root needed); `--tasks`
//! tasks of a Mesos HTTP framework in this process, which follows the leader as Mesos
//! clients do (any master's `/master/redirect`) and counts every update.
//! `zk-migrate start --all` (another process) runs the six phases; its state file gives each
//! phase's duration, each gate's evaluation time and each coordination action's time.
//!
//! Goals (issue 17): cutover (phases 2-4) ≤ 60 s, 0 task interruptions, each gate evaluated
//! in ≤ 1 s, coordination actions < 100 ms each. Baseline in the same run: one plain leader
//! failover on B afterwards (the leader stopped; until a new one leads and every agent is
//! registered with it), what phase 3's planned move of leadership is made of.
use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use futures::{StreamExt as _, stream};
use orca_bench::cluster::{AgentProcess, MasterProcess, SimAgents, TaskLeftovers, sibling};
use orca_master::api::mesos_http::client::{self, ClientError, SchedulerClient, scalars};
use orca_zk_local::Ensemble;
use serde_json::{Value, json};
use zookeeper_client::{Acls, Client, CreateMode};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    agents: usize,
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    #[arg(long, default_value_t = 100_000)]
    znodes: usize,
    /// Agents switched at a time in phase 4.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// Real `orca-agent` processes with real tasks (as root) instead of simulated agents.
    #[arg(long)]
    real_agents: bool,
}

/// The agents under migration.
enum Agents {
    Real(Vec<AgentProcess>, TaskLeftovers),
    Simulated(SimAgents),
}

const PATH: &str = "/orca";
const WAIT: Duration = Duration::from_secs(300);

/// What the framework saw.
#[derive(Default)]
struct Seen {
    running: std::collections::HashSet<String>,
    interrupted: Vec<String>,
    subscriptions: usize,
    longest_gap: Duration,
}

/// Launches `tasks` tasks on the offers it gets, then stays subscribed (re-subscribing to
/// whichever master leads), acknowledging and counting every update.
async fn framework(masters: Vec<SocketAddr>, tasks: usize, seen: Arc<Mutex<Seen>>) {
    let mut id: Option<String> = None;
    let mut launched = 0usize;
    let mut lost_at: Option<Instant> = None;
    loop {
        let Some(leader) = client::find_leader(&masters).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut info = json!({ "user": "root", "name": "migration-bench", "roles": ["*"],
            "failover_timeout": 3600.0, "capabilities": [{ "type": "MULTI_ROLE" }] });
        if let Some(id) = &id {
            info["id"] = json!({ "value": id });
        }
        let Ok(mut s) = SchedulerClient::subscribe(leader, info).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        {
            let mut seen = seen.lock().unwrap();
            seen.subscriptions += 1;
            if let Some(at) = lost_at.take() {
                seen.longest_gap = seen.longest_gap.max(at.elapsed());
            }
        }
        id = Some(s.framework_id.clone());
        loop {
            let event = match s.next_event(Duration::from_secs(1)).await {
                Ok(Some(e)) => e,
                Err(ClientError::Timeout(_)) => continue,
                _ => {
                    lost_at = Some(Instant::now());
                    break;
                }
            };
            match event["type"].as_str() {
                Some("OFFERS") => {
                    for offer in event["offers"]["offers"].as_array().into_iter().flatten() {
                        let mut infos = Vec::new();
                        let cpus = offer["resources"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|r| r["name"] == "cpus")
                            .and_then(|r| r["scalar"]["value"].as_f64())
                            .unwrap_or(0.0);
                        let fits = (cpus / 0.01).floor() as usize;
                        for _ in 0..fits.min(tasks - launched).min(20) {
                            let task = client::task(
                                &format!("t{launched}"),
                                &offer["agent_id"],
                                scalars(0.01, 4.0),
                                "sleep 3600",
                            );
                            infos.push(task);
                            launched += 1;
                        }
                        let call = if infos.is_empty() {
                            json!({ "type": "DECLINE", "decline": { "offer_ids": [offer["id"]],
                                "filters": { "refuse_seconds": 1.0 } } })
                        } else {
                            json!({ "type": "ACCEPT", "accept": { "offer_ids": [offer["id"]],
                                "operations": [{ "type": "LAUNCH", "launch": { "task_infos": infos } }],
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
                    let state = status["state"].as_str().unwrap_or_default();
                    let mut seen = seen.lock().unwrap();
                    match state {
                        "TASK_STAGING" | "TASK_STARTING" => {}
                        "TASK_RUNNING" => {
                            seen.running.insert(task);
                        }
                        other => {
                            seen.running.remove(&task);
                            seen.interrupted
                                .push(format!("{task}: {other} {}", status["message"]));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

async fn populate(connect: &str, n: usize) -> Result<f64> {
    let c = Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(connect)
        .await?;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let started = Instant::now();
    let root = format!("{PATH}/data");
    c.mkdir(&root, &opts).await?;
    let dirs: Vec<String> = (0..n.div_ceil(100))
        .map(|d| format!("{root}/d{d}"))
        .collect();
    let nodes: Vec<String> = (0..n)
        .map(|i| format!("{root}/d{}/n{i}", i / 100))
        .collect();
    for paths in [&dirs, &nodes] {
        let mut written = stream::iter(paths.chunks(200))
            .map(|batch| {
                let opts = &opts;
                let c = &c;
                async move {
                    let mut w = c.new_multi_writer();
                    for p in batch {
                        w.add_create(p, b"some application state", opts)?;
                    }
                    w.commit().await.map_err(anyhow::Error::from)
                }
            })
            .buffer_unordered(8);
        while let Some(r) = written.next().await {
            r?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The masters the orchestrator starts on B outlive it by design: ended when dropped.
struct Listeners(Vec<SocketAddr>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for addr in &self.0 {
            if let Some(pid) = orca_migrate::actuator::listener_pid(*addr) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Stops the ensembles and removes the benchmark's directory (their data included).
struct Stop(Vec<Ensemble>, std::path::PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.iter().for_each(Ensemble::stop);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        !args.real_agents || nix::unistd::Uid::effective().is_root(),
        "real tasks run in cgroups: run as root (or leave out --real-agents)"
    );
    let base = std::env::temp_dir().join(format!("orca-bench-migration-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let a = Ensemble::new(&base.join("zk"), "mig-a", 3, 21950);
    let b = Ensemble::new(&base.join("zk"), "mig-b", 3, 21960);
    let _stop = Stop(vec![a.clone(), b.clone()], base.clone());
    a.start(Duration::from_secs(60))?;
    b.start(Duration::from_secs(60))?;
    let populated = populate(&a.connect_string(), args.znodes).await?;
    println!(
        "A holds {} znodes of application state (written in {populated:.1} s)",
        args.znodes
    );

    let zk_a = format!("zk://{}{PATH}", a.connect_string());
    let sources: Vec<MasterProcess> = (0..3)
        .map(|_| {
            MasterProcess::start(&[
                "--zk",
                &zk_a,
                "--zk-session-timeout",
                "4s",
                "--allocation-interval",
                "100ms",
            ])
        })
        .collect::<Result<_>>()?;
    let agents = if args.real_agents {
        let cgroups_root = format!("orca-bench-migration-{}", std::process::id());
        let leftovers = TaskLeftovers {
            cgroups_root: cgroups_root.clone(),
            work: base.join("agents"),
        };
        let mut agents = Vec::with_capacity(args.agents);
        for i in 0..args.agents {
            agents.push(AgentProcess::following(
                &zk_a,
                &base.join("agents").join(format!("a{i}")),
                &cgroups_root,
                &format!("mig-{i}"),
                "cpus:4;mem:4096",
            )?);
        }
        for agent in &agents {
            agent.wait_line("registered with the master")?;
        }
        Agents::Real(agents, leftovers)
    } else {
        Agents::Simulated(SimAgents::start(
            &zk_a,
            args.agents,
            "cpus:4;mem:4096",
            &["--keep-running", "--prefix", "mig", "--retry", "1"],
        )?)
    };
    let targets: Vec<(SocketAddr, SocketAddr)> = (0..3)
        .map(|_| {
            let h = orca_bench::cluster::free_port();
            let g = orca_bench::cluster::free_port();
            (
                SocketAddr::from(([127, 0, 0, 1], h)),
                SocketAddr::from(([127, 0, 0, 1], g)),
            )
        })
        .collect();
    let _targets_ended = Listeners(targets.iter().map(|(h, _)| *h).collect());
    let mut masters: Vec<SocketAddr> = sources.iter().map(|m| m.http).collect();
    masters.extend(targets.iter().map(|(h, _)| *h));
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(framework(masters.clone(), args.tasks, seen.clone()));
    let launch_started = Instant::now();
    while seen.lock().unwrap().running.len() < args.tasks {
        if launch_started.elapsed() > WAIT {
            bail!(
                "only {} of {} tasks running",
                seen.lock().unwrap().running.len(),
                args.tasks
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{} agents, {} tasks running (launched in {:.1} s)",
        args.agents,
        args.tasks,
        launch_started.elapsed().as_secs_f64()
    );

    let masters_yaml: Vec<String> = targets
        .iter()
        .map(|(h, g)| format!("    - {{ http: \"{h}\", grpc: \"{g}\" }}"))
        .collect();
    let config = base.join("migration.yaml");
    std::fs::write(
        &config,
        format!(
            "id: bench\nsync:\n  source-zk: \"{}\"\n  target-zk: \"{}\"\n  root: {PATH}\n  session-timeout-ms: 4000\n\
             cluster:\n  path: {PATH}\n  target-masters:\n{}\n  agent-batch-size: {}\n  agent-batch-pause-ms: 0\n\
             actuator:\n  master-bin: \"{}\"\n  master-args: [\"--zk-session-timeout\", \"4s\", \"--allocation-interval\", \"100ms\", \"--registry\", \"memory\"]\n\
             gates:\n  leader-stable-ms: 1000\n  phase-timeout-s: 180\nstate-dir: \"{}\"\n",
            a.connect_string(),
            b.connect_string(),
            masters_yaml.join("\n"),
            args.batch,
            sibling("orca-master")?.display(),
            base.join("migrations").display()
        ),
    )?;
    let api = orca_bench::cluster::free_port();
    let started = Instant::now();
    let out = Command::new(sibling("zk-migrate")?)
        .args(["start", "--all", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("running zk-migrate")?;
    let whole = started.elapsed();
    let state: Value = serde_json::from_slice(
        &std::fs::read(base.join("migrations/bench/state.json"))
            .context("the migration's state")?,
    )?;
    if state["status"]["state"] != "completed" {
        bail!(
            "the migration did not complete: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            serde_json::to_string_pretty(&state["gates"])?
        );
    }

    // Figures from the orchestrator's own record.
    let timeline = state["timeline"].as_array().cloned().unwrap_or_default();
    let at = |phase: u64, suffix: &str| {
        timeline
            .iter()
            .filter(|e| {
                e["phase"] == phase && e["what"].as_str().is_some_and(|w| w.ends_with(suffix))
            })
            .filter_map(|e| e["at_unix_ms"].as_u64())
            .next_back()
    };
    let mut phase_ms = Vec::new();
    for p in 1..=6u64 {
        let (Some(b), Some(d)) = (at(p, "begins"), at(p, ") done")) else {
            bail!("phase {p} has no begin/done in the timeline");
        };
        phase_ms.push(d - b);
    }
    let cutover_ms: u64 = phase_ms[1..4].iter().sum();
    let gates: Vec<(String, u64)> = state["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            (
                format!("{} {}", g["phase"], g["stage"].as_str().unwrap_or("")),
                g["took_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let slowest_gate = gates
        .iter()
        .max_by_key(|(_, ms)| *ms)
        .cloned()
        .unwrap_or_default();
    let actions: Vec<(String, u64)> = timeline
        .iter()
        .filter_map(|e| {
            let what = e["what"].as_str()?;
            let coordination = what.starts_with("start master")
                || what.starts_with("stop master")
                || what.contains("agents switched to B")
                || what.starts_with("contender sequence");
            Some((what.to_owned(), e["took_ms"].as_u64()?)).filter(|_| coordination)
        })
        .collect();
    let switch_per_agent_ms: Vec<f64> = actions
        .iter()
        .filter(|(w, _)| w.contains("agents switched"))
        .map(|(_, ms)| *ms as f64 / args.batch as f64)
        .collect();

    // Baseline: one plain failover on B, the leader stopped.
    let leader = client::find_leader(&masters)
        .await
        .context("a leader on B")?;
    let pid = orca_migrate::actuator::listener_pid(leader).context("the leader's process")?;
    let failover_started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let failover = loop {
        if let Some(new) = client::find_leader(&masters).await
            && new != leader
            && let Ok(v) = client::get_json(new, "/master/state").await
            && v["activated_slaves"].as_f64() == Some(args.agents as f64)
        {
            break failover_started.elapsed();
        }
        if failover_started.elapsed() > WAIT {
            bail!("no new leader with every agent within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let seen = seen.lock().unwrap();
    println!("phase durations (ms): {phase_ms:?}");
    println!(
        "cutover (phases 2-4): {:.1} s (goal <= 60 s); whole migration {:.1} s",
        cutover_ms as f64 / 1000.0,
        whole.as_secs_f64()
    );
    println!(
        "slowest gate: phase {} took {} ms (goal <= 1000 ms)",
        slowest_gate.0, slowest_gate.1
    );
    if let Some(compared) = timeline.iter().find(|e| {
        e["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("A and B compared by digest"))
    }) {
        println!(
            "  phase 1's comparison of A and B (the sync's validation the gate judges): {} ms, {}",
            compared["took_ms"], compared["what"]
        );
    }
    for (gate, ms) in &gates {
        println!("  gate   {ms:>5} ms  phase {gate}");
    }
    for (what, ms) in &actions {
        println!("  action {ms:>5} ms  {what}");
    }
    println!(
        "agent switch per agent (batch of {}): max {:.1} ms (goal < 100 ms)",
        args.batch,
        switch_per_agent_ms.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "task interruptions seen by the framework: {} ({} still running of {}); subscriptions {}, longest without one {:?}",
        seen.interrupted.len(),
        seen.running.len(),
        args.tasks,
        seen.subscriptions,
        seen.longest_gap
    );
    for i in seen.interrupted.iter().take(10) {
        println!("  interrupted: {i}");
    }
    println!(
        "baseline: a plain leader failover on B until every agent is registered: {:.2} s",
        failover.as_secs_f64()
    );
    let simulated = match agents {
        Agents::Simulated(sim) => {
            let counts = sim.finish()?;
            println!(
                "simulated agents: {} switched live by their master, {} registrations again, \
                 {} tasks running, {} launched twice",
                counts["switched"], counts["reregistered"], counts["running"], counts["duplicated"]
            );
            Some(counts)
        }
        Agents::Real(agents, leftovers) => {
            drop(agents);
            drop(leftovers);
            None
        }
    };
    println!(
        "result {}",
        json!({
            "agents": args.agents, "tasks": args.tasks, "znodes": args.znodes,
            "phase_ms": phase_ms, "cutover_ms": cutover_ms,
            "slowest_gate_ms": slowest_gate.1,
            "interruptions": seen.interrupted.len(), "running_after": seen.running.len(),
            "failover_baseline_ms": failover.as_millis() as u64,
            "agents_switched": simulated.as_ref().map(|c| c["switched"].clone()),
            "duplicated": simulated.as_ref().map(|c| c["duplicated"].clone()),
        })
    );
    drop(sources);
    Ok(())
}
