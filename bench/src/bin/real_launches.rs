//! Real launches on one agent: `--tasks` command tasks started by the agent's task manager,
//! each a process in its own cgroup (cpu, cpuacct, memory, pids, freezer on v1) with a
//! sandbox and piped, rotated logs, timed from the launch to TASK_RUNNING. Baseline in the
//! same run: the same command started as a bare child process (no cgroup, no sandbox).
//! Needs root.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use orca_agent::tasks::{TaskManager, TaskManagerConfig, TaskSpec, TaskState, cgroups::Driver};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Launches in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value = "sleep 120")]
    command: String,
}

fn spec(i: usize, command: &str) -> TaskSpec {
    TaskSpec {
        framework_id: "bench".into(),
        task_id: format!("t{i}"),
        name: String::new(),
        shell: true,
        value: command.into(),
        arguments: Vec::new(),
        environment: Vec::new(),
        user: None,
        cpus: 0.01,
        mem_mb: Some(16.0),
        labels: BTreeMap::new(),
        kill_grace: None,
        resources: "cpus:0.01;mem:16".into(),
        role: "*".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        nix::unistd::Uid::effective().is_root(),
        "real launches create cgroups: run as root"
    );
    let work = std::env::temp_dir().join(format!("orca-real-launches-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let driver = Driver::detect()?;
    let parent = format!("orca-bench-{}", std::process::id());
    let mut config = TaskManagerConfig::new(work.clone(), driver.clone());
    config.cgroup_parent = parent.clone();
    let (manager, mut updates) = TaskManager::new(config);

    // Baseline: bare processes.
    let started = Instant::now();
    let mut children = Vec::with_capacity(args.tasks);
    for _ in 0..args.tasks {
        children.push(
            tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&args.command)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("spawning the baseline")?,
        );
    }
    let bare = started.elapsed();
    for mut c in children {
        let _ = c.kill().await;
    }

    // Orca: cgroup + sandbox + logs per task, up to `concurrency` launches in flight.
    let mut latency = Histogram::<u64>::new(3)?;
    let mut sent_at = vec![None; args.tasks];
    let started = Instant::now();
    let mut next = 0;
    let mut running = 0;
    let mut inflight = 0;
    while running < args.tasks {
        while inflight < args.concurrency && next < args.tasks {
            sent_at[next] = Some(Instant::now());
            let m = manager.clone();
            let s = spec(next, &args.command);
            tokio::spawn(async move { m.launch(vec![s]).await });
            next += 1;
            inflight += 1;
        }
        let u = tokio::time::timeout(Duration::from_secs(30), updates.recv())
            .await
            .context("no update for 30 s")?
            .context("the task manager stopped")?;
        match u.state {
            TaskState::Running => {
                // Each task once: an update not acknowledged is sent again after a while.
                let i: usize = u.task_id[1..].parse()?;
                if let Some(sent) = sent_at[i].take() {
                    latency.record(sent.elapsed().as_micros() as u64)?;
                    running += 1;
                    inflight -= 1;
                }
            }
            TaskState::Starting => {}
            other => anyhow::bail!(
                "task {} went {}: {:?}",
                u.task_id,
                other.mesos_name(),
                u.message
            ),
        }
    }
    let orca = started.elapsed();
    manager.shutdown_framework("bench");
    let mut ended = 0;
    while ended < args.tasks {
        let u = tokio::time::timeout(Duration::from_secs(30), updates.recv())
            .await
            .context("tasks did not end")?
            .context("the task manager stopped")?;
        if u.state == TaskState::Killed {
            ended += 1;
        }
    }
    driver.remove_parent(&parent);
    let _ = std::fs::remove_dir_all(&work);

    let rate = |d: Duration| args.tasks as f64 / d.as_secs_f64();
    println!(
        "real launches on one agent: {} tasks of `{}`, {} in flight, cgroup v{}",
        args.tasks,
        args.command,
        args.concurrency,
        driver.version()
    );
    println!(
        "  bare fork+exec (baseline)   {:>8.0} processes/s",
        rate(bare)
    );
    println!(
        "  orca task -> TASK_RUNNING   {:>8.0} tasks/s   ({:.2}x of baseline); launch-to-RUNNING p50 {:.1} ms, p99 {:.1} ms",
        rate(orca),
        rate(orca) / rate(bare),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}
