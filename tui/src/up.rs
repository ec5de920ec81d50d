//! `orca up`: a master (embedded registry file) and a local agent in this process, so one
//! command shows this machine's topology and can run tasks on it.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use orca_agent::{
    containers::RuntimeSockets,
    engine::EngineOptions,
    probe::ProbeChoice,
    runner::{self, RunConfig, TasksConfig},
};
use orca_collector::{CollectorConfig, series::SeriesConfig};
use orca_master::{cluster::ClusterConfig, server::Master};
use tokio::{sync::watch, task::JoinHandle};

#[derive(Debug, Clone)]
pub struct UpConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The master's registry and the agent's sandboxes live under this directory.
    pub state_dir: PathBuf,
    pub probe: ProbeChoice,
    /// Run tasks on the local agent (needs cgroups; without them it only observes).
    pub tasks: bool,
    pub metrics_addr: Option<SocketAddr>,
}

impl UpConfig {
    /// `/var/lib/orca` as root, else `$XDG_STATE_HOME/orca` or `~/.local/state/orca`.
    pub fn default_state_dir() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/orca");
        }
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state"))
            })
            .unwrap_or_else(std::env::temp_dir)
            .join("orca")
    }
}

/// A running master and agent.
#[derive(Debug)]
pub struct Up {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    failure: watch::Receiver<Option<String>>,
    master: JoinHandle<anyhow::Result<()>>,
    agent: JoinHandle<anyhow::Result<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs `part` and, when it ends before it was asked to stop, says so on `failed`.
async fn report_end(
    name: &'static str,
    part: impl std::future::Future<Output = anyhow::Result<()>>,
    stop: watch::Receiver<bool>,
    failed: watch::Sender<Option<String>>,
) -> anyhow::Result<()> {
    let result = part.await;
    if !*stop.borrow() {
        let why = match &result {
            Ok(()) => format!("the {name} stopped"),
            Err(e) => format!("the {name} stopped: {e:#}"),
        };
        tracing::error!("{why}");
        let _ = failed.send(Some(why));
    }
    result
}

impl Up {
    pub async fn start(config: UpConfig) -> anyhow::Result<Up> {
        let registry = config.state_dir.join("master").join("registry.jsonl");
        std::fs::create_dir_all(registry.parent().unwrap_or(&config.state_dir)).with_context(
            || {
                format!(
                    "cannot create {}; pass --state-dir with a writable directory",
                    config.state_dir.display()
                )
            },
        )?;
        let collector = CollectorConfig {
            series: SeriesConfig {
                resolution_ms: 15_000,
                capacity: 240,
            },
            ..Default::default()
        };
        let cluster = ClusterConfig {
            registry: Some(registry),
            ..ClusterConfig::default()
        };
        let master = Master::bind(collector, cluster, config.grpc_addr, config.http_addr)
            .await
            .context(
                "is another orca master running? attach to it with `orca --master ADDR`, \
                 or pick other ports with --grpc-addr/--http-addr",
            )?;
        let (grpc_addr, http_addr) = (master.grpc_addr(), master.http_addr());
        let (stop, stop_rx) = watch::channel(false);
        let (failed, failure) = watch::channel(None);
        let master = tokio::spawn(report_end(
            "master",
            master.serve(stopped(stop_rx.clone())),
            stop_rx.clone(),
            failed.clone(),
        ));
        let run = RunConfig {
            engine: EngineOptions {
                probe: config.probe,
                ..Default::default()
            },
            master: Some(grpc_addr.to_string()),
            metrics_addr: config.metrics_addr,
            runtimes: RuntimeSockets {
                docker: Some("/var/run/docker.sock".into()),
                containerd: Some("/run/containerd/containerd.sock".into()),
            },
            tasks: config.tasks.then(|| TasksConfig {
                work_dir: config.state_dir.join("agent"),
                resources: None,
                attributes: Default::default(),
                // Quitting `orca up` leaves nothing running.
                kill_tasks_on_exit: true,
            }),
            ..RunConfig::default()
        };
        let agent = tokio::spawn(report_end(
            "local agent",
            runner::run(run, stopped(stop_rx.clone())),
            stop_rx,
            failed,
        ));
        Ok(Up {
            grpc_addr,
            http_addr,
            stop,
            failure,
            master,
            agent,
        })
    }

    /// Says why when the master or the agent stopped on its own.
    pub fn failures(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Stops both and waits (a few seconds at most) for them to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        // The agent kills its tasks first (up to 5 s for them to end).
        let wait = Duration::from_secs(10);
        let agent = tokio::time::timeout(wait, self.agent).await;
        let master = tokio::time::timeout(wait, self.master).await;
        for (name, result) in [("agent", agent), ("master", master)] {
            match result {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(e.context(format!("the {name} failed"))),
                Ok(Err(e)) => anyhow::bail!("the {name} panicked: {e}"),
                Err(_) => anyhow::bail!("the {name} did not stop within {wait:?}"),
            }
        }
        Ok(())
    }
}
