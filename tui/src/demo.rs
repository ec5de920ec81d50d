//! `orca up --migration-demo`: a live cluster on ZooKeeper ensemble A and an empty ensemble B
//! to move it to from the TUI's Migration view, on this host: two local three-server
//! ensembles (Debian's `zookeeper`, through zk-local), three `orca-master` processes electing
//! on A (processes, so the migration's local actuator stops them as it would on real hosts),
//! the migration planned in this process with its REST API, and the addresses of the three
//! masters it starts on B. The local agent follows A and is switched to B live in phase 4.
//!
//! Clients (the UI) follow `file://<state>/demo/master`, which names the ensemble holding the
//! cluster: A, then B once the agents moved (phase 4 on), A again after a rollback. A
//! follower reads it again with every new session, so the UI stays on the cluster when A is
//! retired. Rolling back phase 6 needs A's servers started again, which the local actuator
//! cannot do: in the demo, phases 1-5 roll back.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use orca_migrate::{
    MigrationConfig, Orchestrator,
    actuator::{self, Action, Actuator},
    config::{ActuatorConfig, MasterAddr},
    http::{Service, router},
};
use orca_zk_local::Ensemble;
use tokio::{sync::watch, task::JoinHandle};

/// The cluster's path in both ensembles.
const PATH: &str = "/orca";
/// Masters per ensemble.
const MASTERS: u16 = 3;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The first master's addresses; the others take the next ports (three on A, then three
    /// on B).
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// A's client ports are this plus 1 to 3, B's plus 11 to 13.
    pub zk_base_port: u16,
    /// Where the migration's REST API listens (what the UI's `--migration` names).
    pub migration_addr: SocketAddr,
    pub state_dir: PathBuf,
}

pub struct Demo {
    /// The agent's `--master`: the leader on A.
    pub agent_master: String,
    /// The clients' `--master`: `file://` of the URL file.
    pub client_master: String,
    pub migration_addr: SocketAddr,
    /// The first master of A's gRPC and HTTP addresses.
    pub first_master: (SocketAddr, SocketAddr),
    masters: Vec<SocketAddr>,
    ensembles: [Ensemble; 2],
    orchestrator: Arc<Orchestrator>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("client_master", &self.client_master)
            .field("migration_addr", &self.migration_addr)
            .finish_non_exhaustive()
    }
}

fn shifted(addr: SocketAddr, by: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + by)
}

/// Writes `text` to `path` whole (a reader sees the old or the new URL, never a part).
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl Demo {
    pub async fn start(cfg: DemoConfig) -> anyhow::Result<Demo> {
        if cfg.grpc_addr.port() == 0 || cfg.http_addr.port() == 0 {
            anyhow::bail!("--migration-demo needs fixed ports (--grpc-addr/--http-addr not :0)");
        }
        let dir = cfg.state_dir.join("demo");
        // A demo starts from nothing: the previous one's ensembles and migration go.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let a = Ensemble::new(&dir.join("zk"), "demo-a", 3, cfg.zk_base_port);
        let b = Ensemble::new(&dir.join("zk"), "demo-b", 3, cfg.zk_base_port + 10);
        let start = |e: &Ensemble| {
            let e = e.clone();
            tokio::task::spawn_blocking(move || e.start(Duration::from_secs(60)))
        };
        let (started_a, started_b) = tokio::join!(start(&a), start(&b));
        let ensembles = [a, b];
        if let Err(e) = started_a
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
            .and(started_b.map_err(anyhow::Error::from).and_then(|r| r))
        {
            stop_ensembles(&ensembles).await;
            return Err(e.context("starting the demo's ZooKeeper ensembles A and B"));
        }
        let [a, b] = &ensembles;
        let zk_a = format!("zk://{}{PATH}", a.connect_string());
        let zk_b = format!("zk://{}{PATH}", b.connect_string());
        let master = |n: u16| MasterAddr {
            http: shifted(cfg.http_addr, n),
            grpc: shifted(cfg.grpc_addr, n),
        };
        let masters: Vec<SocketAddr> = (0..2 * MASTERS).map(|n| master(n).http).collect();
        // A's masters, as the migration's local actuator starts B's.
        let actuator = Actuator::new(ActuatorConfig::default(), dir.join("masters"));
        for n in 0..MASTERS {
            let action = Action::StartMaster {
                master: master(n),
                zk: zk_a.clone(),
            };
            if let Err(e) = actuator.run(&action).await {
                stop_masters(&masters).await;
                stop_ensembles(&ensembles).await;
                return Err(anyhow::anyhow!(
                    "{}: {e} (build it beside orca: cargo build --release --bins)",
                    action.describe()
                ));
            }
        }
        let targets: Vec<String> = (MASTERS..2 * MASTERS)
            .map(|n| {
                let m = master(n);
                format!("    - {{ http: \"{}\", grpc: \"{}\" }}", m.http, m.grpc)
            })
            .collect();
        let yaml = format!(
            "id: demo\nsync:\n  source-zk: \"{}\"\n  target-zk: \"{}\"\n  root: {PATH}\n\
             cluster:\n  path: {PATH}\n  target-masters:\n{}\n  agent-batch-size: 1\n\
             gates:\n  leader-stable-ms: 2000\nstate-dir: \"{}\"\n",
            a.connect_string(),
            b.connect_string(),
            targets.join("\n"),
            dir.join("migrations").display()
        );
        let planned = async {
            let migration = MigrationConfig::from_yaml(&yaml)?;
            let listener = tokio::net::TcpListener::bind(cfg.migration_addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot serve the migration API on {} (pick another with --migration-addr)",
                        cfg.migration_addr
                    )
                })?;
            let orchestrator = Orchestrator::create(migration).await?;
            anyhow::Ok((listener, orchestrator))
        }
        .await;
        let (listener, orchestrator) = match planned {
            Ok(p) => p,
            Err(e) => {
                stop_masters(&masters).await;
                stop_ensembles(&ensembles).await;
                return Err(e.context("planning the demo's migration"));
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let service = Service::new(dir.join("migrations"), Some(orchestrator.clone()));
        let mut stopping = stop_rx.clone();
        let api = tokio::spawn(async move {
            let serving =
                axum::serve(listener, router(service)).with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|s| *s).await;
                });
            if let Err(e) = serving.await {
                tracing::error!("the migration API stopped: {e}");
            }
        });
        let url_file = dir.join("master");
        write_whole(&url_file, &zk_a)?;
        let follower = tokio::spawn(point_clients(
            Arc::downgrade(&orchestrator),
            url_file.clone(),
            [zk_a.clone(), zk_b],
            stop_rx,
        ));
        Ok(Demo {
            agent_master: zk_a,
            client_master: format!("file://{}", url_file.display()),
            migration_addr: cfg.migration_addr,
            first_master: (master(0).grpc, master(0).http),
            masters,
            ensembles,
            orchestrator,
            stop,
            tasks: vec![api, follower],
        })
    }

    /// Stops the migration (its sync), every master (A's and those it started on B) and
    /// both ensembles.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.orchestrator.shutdown().await;
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        stop_masters(&self.masters).await;
        stop_ensembles(&self.ensembles).await;
    }
}

/// Keeps the URL file naming the ensemble that holds the cluster: B from phase 4 on (agents
/// there, and A retired in phase 6), A before and after a rollback.
async fn point_clients(
    orchestrator: std::sync::Weak<Orchestrator>,
    file: PathBuf,
    [on_a, on_b]: [String; 2],
    mut stop: watch::Receiver<bool>,
) {
    let mut written = on_a.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let Some(o) = orchestrator.upgrade() else {
            return;
        };
        let s = o.snapshot();
        let want = if s.completed >= 4 { &on_b } else { &on_a };
        if *want != written {
            match write_whole(&file, want) {
                Ok(()) => {
                    tracing::info!(master = %want, "clients now follow the cluster there");
                    written = want.clone();
                }
                Err(e) => tracing::warn!("cannot write {}: {e}", file.display()),
            }
        }
    }
}

async fn stop_masters(masters: &[SocketAddr]) {
    let actuator = Actuator::new(ActuatorConfig::default(), std::env::temp_dir());
    for http in masters {
        if actuator::listener_pid(*http).is_some()
            && let Err(e) = actuator.run(&Action::StopMaster { http: *http }).await
        {
            tracing::warn!("stopping the demo's master {http}: {e}");
        }
    }
}

async fn stop_ensembles(ensembles: &[Ensemble; 2]) {
    for e in ensembles {
        let e = e.clone();
        let _ = tokio::task::spawn_blocking(move || e.stop()).await;
    }
}
