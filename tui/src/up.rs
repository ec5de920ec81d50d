//! `orca up`: a master (embedded registry file) and a local agent in this process, so one
//! command shows this machine's topology and can run tasks on it. `orca up --ha` tries the
//! highly-available setup instead: a local three-server ZooKeeper ensemble (Debian's
//! `zookeeper` package, via zk-local) and three masters electing a leader in it, the agent
//! and the UI following the leader. `orca up --migration-demo` runs a cluster on one
//! ensemble with another to migrate it to (`demo.rs`).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use orca_agent::{
    containers::RuntimeSockets,
    engine::EngineOptions,
    probe::ProbeChoice,
    runner::{self, RunConfig, TasksConfig},
};
use orca_collector::{CollectorConfig, series::SeriesConfig};
use orca_master::{
    cluster::ClusterConfig,
    election::ElectionConfig,
    server::{HaOptions, Master},
};
use orca_zk_local::Ensemble;
use tokio::{sync::watch, task::JoinHandle};

use crate::demo::{Demo, DemoConfig};

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
    /// Three masters on a local three-server ensemble whose client ports start one above
    /// this port (`None`: one master on its registry file).
    pub ha_zk_base_port: Option<u16>,
    /// The migration demo instead (`demo.rs`): ensembles from this base port, the
    /// migration's API on this address.
    pub migration_demo: Option<(u16, SocketAddr)>,
    /// Serve over TLS with certificates of a local CA made in `<state_dir>/tls` (the agent
    /// proves itself with one of them; clients trust `ca.pem`).
    pub tls: bool,
}

/// The masters of `orca up --ha` use the ports after the first one's.
const HA_MASTERS: u16 = 3;

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

/// A running master (or three) and agent.
#[derive(Debug)]
pub struct Up {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// What clients pass as `--master`: the master's gRPC address, or the `zk://` URL.
    pub master: String,
    stop: watch::Sender<bool>,
    failure: watch::Receiver<Option<String>>,
    masters: Vec<JoinHandle<anyhow::Result<()>>>,
    agent: JoinHandle<anyhow::Result<()>>,
    ensemble: Option<Ensemble>,
    /// With `--migration-demo`: its ensembles, masters and migration.
    pub demo: Option<Demo>,
    /// With `--tls`: what clients trust (`ca.pem`, for `orca --tls-ca`).
    pub client_tls: Option<orca_auth::tls::ClientTls>,
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
        // With --tls: a fresh local CA each start, its certificates for the masters (server)
        // and the agent (client).
        let tls_dir = config.state_dir.join("tls");
        if config.tls {
            orca_auth::tls::cert_gen::write_local_set(&tls_dir, &[]).with_context(|| {
                format!("cannot make TLS certificates in {}", tls_dir.display())
            })?;
        }
        let server_tls = config.tls.then(|| orca_auth::tls::TlsFiles {
            cert: tls_dir.join("master.pem"),
            key: tls_dir.join("master.key"),
            ca: Some(tls_dir.join("ca.pem")),
        });
        let client_tls = |identity: bool| {
            config.tls.then(|| orca_auth::tls::ClientTls {
                ca: Some(tls_dir.join("ca.pem")),
                identity: identity.then(|| (tls_dir.join("agent.pem"), tls_dir.join("agent.key"))),
            })
        };
        let collector = CollectorConfig {
            series: SeriesConfig {
                resolution_ms: 15_000,
                capacity: 240,
            },
            ..Default::default()
        };
        let (stop, stop_rx) = watch::channel(false);
        let (failed, failure) = watch::channel(None);
        let mut masters = Vec::new();
        let (mut ensemble, mut addrs, mut master_arg) = (None, Vec::new(), String::new());
        let demo = match config.migration_demo {
            Some((zk_base_port, migration_addr)) => Some(
                Demo::start(DemoConfig {
                    grpc_addr: config.grpc_addr,
                    http_addr: config.http_addr,
                    zk_base_port,
                    migration_addr,
                    state_dir: config.state_dir.clone(),
                })
                .await?,
            ),
            None => None,
        };
        let count = if demo.is_some() {
            // The demo's masters are processes of their own.
            0
        } else if config.ha_zk_base_port.is_some() {
            HA_MASTERS
        } else {
            1
        };
        let election = match config.ha_zk_base_port {
            None => None,
            Some(base) => {
                let local = Ensemble::new(&config.state_dir.join("zk"), "orca-up", 3, base);
                let starting = local.clone();
                let started =
                    tokio::task::spawn_blocking(move || starting.start(Duration::from_secs(60)))
                        .await?;
                if let Err(e) = started {
                    // Servers that did start are not left behind.
                    let stopping = local.clone();
                    let _ = tokio::task::spawn_blocking(move || stopping.stop()).await;
                    return Err(e.context("starting the local ZooKeeper ensemble for --ha"));
                }
                let url = format!("zk://{}/orca", local.connect_string());
                ensemble = Some(local);
                master_arg = url.clone();
                Some(ElectionConfig {
                    url: orca_leader::ZkUrl::parse(&url)?,
                    session_timeout: orca_leader::DEFAULT_SESSION_TIMEOUT,
                })
            }
        };
        for n in 0..count {
            let port = |addr: SocketAddr| {
                SocketAddr::new(
                    addr.ip(),
                    if addr.port() == 0 { 0 } else { addr.port() + n },
                )
            };
            let cluster = ClusterConfig {
                registry: election.is_none().then(|| registry.clone()),
                ..ClusterConfig::default()
            };
            let ha = HaOptions {
                election: election.clone(),
                hostname: None,
            };
            let bound = Master::bind_with(
                collector.clone(),
                cluster,
                port(config.grpc_addr),
                port(config.http_addr),
                ha,
            )
            .await
            .context(
                "is another orca master running? attach to it with `orca --master ADDR`, \
                 or pick other ports with --grpc-addr/--http-addr",
            );
            let bound = match (bound, &server_tls) {
                (Ok(master), Some(files)) => master.with_tls(files.clone()),
                (bound, _) => bound,
            };
            let master = match bound {
                Ok(master) => master,
                Err(e) => {
                    // Nothing started so far outlives the failure.
                    let _ = stop.send(true);
                    for master in masters {
                        let _ = tokio::time::timeout(Duration::from_secs(5), master).await;
                    }
                    if let Some(ensemble) = ensemble {
                        let _ = tokio::task::spawn_blocking(move || ensemble.stop()).await;
                    }
                    return Err(e);
                }
            };
            addrs.push((master.grpc_addr(), master.http_addr()));
            masters.push(tokio::spawn(report_end(
                "master",
                master.serve(stopped(stop_rx.clone())),
                stop_rx.clone(),
                failed.clone(),
            )));
        }
        let (grpc_addr, http_addr) = match &demo {
            Some(d) => {
                master_arg = d.agent_master.clone();
                d.first_master
            }
            None => addrs[0],
        };
        if master_arg.is_empty() {
            master_arg = grpc_addr.to_string();
        }
        let run = RunConfig {
            engine: EngineOptions {
                probe: config.probe,
                ..Default::default()
            },
            master: Some(master_arg.clone()),
            master_tls: client_tls(true),
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
                recover: Default::default(),
                cgroups_root: "orca".into(),
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
            master: demo
                .as_ref()
                .map_or(master_arg, |d| d.client_master.clone()),
            stop,
            failure,
            masters,
            agent,
            ensemble,
            demo,
            client_tls: client_tls(false),
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
        let mut results = vec![("agent", tokio::time::timeout(wait, self.agent).await)];
        for master in self.masters {
            results.push(("master", tokio::time::timeout(wait, master).await));
        }
        if let Some(ensemble) = self.ensemble {
            tokio::task::spawn_blocking(move || ensemble.stop()).await?;
        }
        if let Some(demo) = self.demo {
            demo.stop().await;
        }
        for (name, result) in results {
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
