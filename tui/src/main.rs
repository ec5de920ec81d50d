//! `orca`: the terminal UI. `orca up` runs a master and a local agent in-process and opens the
//! UI on them (the `up` feature, on by default; without it `orca` is only the client and
//! builds without the eBPF toolchain); `orca --master ADDR` attaches to a running cluster.
#[cfg(feature = "up")]
use std::{io::IsTerminal as _, net::SocketAddr};
use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
#[cfg(feature = "up")]
use orca_agent::probe::ProbeChoice;
#[cfg(feature = "up")]
use orca_tui::up::{Up, UpConfig};
use orca_tui::{
    actions::Actions,
    app::{App, Level},
    feed::{self, Event},
    run::{self, Live},
    saved::SavedFilters,
};
use tokio::sync::{mpsc, watch};

/// What the migration demo asks of the UI: tasks to launch as its workload.
#[derive(Debug, Clone, Copy)]
struct Demo {
    tasks: usize,
}

/// Tasks the migration demo keeps running while it is migrated.
#[cfg(feature = "up")]
const DEMO_TASKS: usize = 6;

/// `orca up` runs the master in this process: the same allocator as the `orca-master` binary.
#[cfg(feature = "up")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "orca",
    version,
    about = "Orca: the cluster and its live topology, in a terminal"
)]
struct Cli {
    /// The master to attach to: its gRPC address, or `zk://host:port,…/path` to follow
    /// the leading master in ZooKeeper.
    #[arg(
        long,
        env = "ORCA_MASTER",
        default_value = "127.0.0.1:7070",
        global = true
    )]
    master: String,
    /// Write logs to this file (the screen belongs to the UI).
    #[arg(long, env = "ORCA_LOG", global = true)]
    log: Option<PathBuf>,
    /// A migration service (`zk-migrate serve --listen HOST:PORT`) to follow and drive in
    /// the Migration view (`M`).
    #[arg(long, env = "ORCA_MIGRATION", global = true)]
    migration: Option<String>,
    /// Authenticate as this principal to a master started with --credentials; the secret is
    /// read from `ORCA_SECRET` or --secret-file.
    #[arg(long, env = "ORCA_PRINCIPAL")]
    principal: Option<String>,
    /// A file holding the principal's secret (its first line).
    #[arg(long, requires = "principal")]
    secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: orca_auth::tls::cli::ClientTlsArgs,
    #[cfg(feature = "up")]
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[cfg(feature = "up")]
#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Run a master and a local agent on this host, in this process, and open the UI on them.
    Up {
        #[arg(long, default_value = "127.0.0.1:7070")]
        grpc_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:7080")]
        http_addr: SocketAddr,
        /// The master's registry and the agent's task sandboxes (default: /var/lib/orca as
        /// root, else ~/.local/state/orca).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        probe: ProbeChoice,
        /// Only observe; run no tasks on the local agent.
        #[arg(long)]
        no_tasks: bool,
        /// The agent's Prometheus endpoint.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// No UI: run master and agent until Ctrl-C (for scripts and machines without a
        /// terminal).
        #[arg(long)]
        headless: bool,
        /// Try highly-available masters: a local three-server ZooKeeper ensemble (needs
        /// Debian's `zookeeper` package) and three masters on the ports after
        /// --grpc-addr/--http-addr, electing a leader; the agent and the UI follow it.
        #[arg(long)]
        ha: bool,
        /// With --ha: the ensemble's client ports are this plus 1 to 3 (its quorum and
        /// election ports 1000 and 2000 above those); with --migration-demo, A's are these
        /// and B's 10 above.
        #[arg(long, default_value_t = 22180)]
        zk_base_port: u16,
        /// Try a zero-downtime migration: a cluster on a local ensemble A (three
        /// `orca-master` processes, the local agent, a few `sleep` tasks) and an empty
        /// ensemble B; the UI opens on the Migration view to advance and roll back (needs
        /// Debian's `zookeeper` package and `orca-master` beside `orca`).
        #[arg(long, conflicts_with = "ha")]
        migration_demo: bool,
        /// With --migration-demo: where the migration's REST API listens.
        #[arg(long, default_value = "127.0.0.1:7091")]
        migration_addr: SocketAddr,
        /// Serve over TLS: a local CA and certificates are made in <state-dir>/tls, the
        /// agent proves itself with a client certificate (mutual TLS), the UI trusts the CA;
        /// other clients pass `--tls-ca <state-dir>/tls/ca.pem`.
        #[arg(long, conflicts_with = "migration_demo")]
        tls: bool,
    },
}

fn init_logging(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match path {
        Some(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot write the log {}: {e}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => {
            // Nothing may write to the screen under the UI.
            tracing_subscriber::fmt()
                .with_env_filter("off")
                .with_writer(std::io::sink)
                .init();
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orca: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        #[cfg(feature = "up")]
        if let Some(command) = cli.command {
            return up(command, cli.log, cli.migration).await;
        }
        init_logging(cli.log.as_deref())?;
        let tls = cli.tls.client()?;
        let credential =
            credential(cli.principal.as_deref(), cli.secret_file.as_deref())?.with_tls(tls);
        ui(cli.master, credential, cli.migration, None, None).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `orca up`: master and local agent in this process, with the UI on them (or headless).
#[cfg(feature = "up")]
async fn up(command: Cmd, log: Option<PathBuf>, migration: Option<String>) -> anyhow::Result<()> {
    let Cmd::Up {
        grpc_addr,
        http_addr,
        state_dir,
        probe,
        no_tasks,
        metrics_addr,
        headless,
        ha,
        zk_base_port,
        migration_demo,
        migration_addr,
        tls,
    } = command;
    let state_dir = state_dir.unwrap_or_else(UpConfig::default_state_dir);
    let log = log.unwrap_or_else(|| state_dir.join("orca.log"));
    if headless {
        // Headless: logs go to stderr as for the daemons.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    } else {
        init_logging(Some(&log))?;
    }
    let up = Up::start(UpConfig {
        grpc_addr,
        http_addr,
        state_dir,
        probe,
        tasks: !no_tasks,
        metrics_addr,
        ha_zk_base_port: ha.then_some(zk_base_port),
        migration_demo: migration_demo.then_some((zk_base_port, migration_addr)),
        tls,
    })
    .await?;
    let migration = if migration_demo {
        Some(migration_addr.to_string())
    } else {
        migration
    };
    let demo = migration_demo.then_some(Demo {
        tasks: if no_tasks { 0 } else { DEMO_TASKS },
    });
    let master = up.master.clone();
    let outcome = if headless {
        eprintln!(
            "orca up: master gRPC {} · HTTP {}://{} (Mesos v1 scheduler API, \
             /master/state, /api/topology, /metrics){}{}; Ctrl-C stops",
            up.grpc_addr,
            if tls { "https" } else { "http" },
            up.http_addr,
            match &up.client_tls {
                Some(orca_auth::tls::ClientTls { ca: Some(ca), .. }) => format!(
                    "; over TLS: clients trust {} (orca --tls-ca, curl --cacert)",
                    ca.display()
                ),
                _ => String::new(),
            },
            if ha {
                format!(" and two more masters on the next ports, electing a leader in {master}")
            } else if migration_demo {
                format!(
                    "; migration demo: masters on ensemble A, clients follow {master}, \
                     the migration's API on http://{migration_addr}/api/v1/migrations/demo \
                     (zk-migrate advance --migration-id demo --confirm --api {migration_addr})"
                )
            } else {
                String::new()
            }
        );
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    } else {
        ui(
            master,
            feed::Credential::default().with_tls(up.client_tls.clone()),
            migration,
            Some(up.failures()),
            demo,
        )
        .await
    };
    let stopped = up.stop().await;
    if !headless {
        eprintln!("orca up: stopped (log: {})", log.display());
    }
    outcome.and(stopped)
}

/// Opens the UI on the master at `master` (and the migration service at `migration`) until
/// the user quits; `failures` says when an in-process master or agent stopped.
/// What `orca` authenticates with: nothing, or `--principal` with its secret.
fn credential(
    principal: Option<&str>,
    secret_file: Option<&std::path::Path>,
) -> anyhow::Result<feed::Credential> {
    let Some(principal) = principal else {
        return Ok(feed::Credential::default());
    };
    let secret = match secret_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--secret-file {}: {e}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => std::env::var("ORCA_SECRET").map_err(|_| {
            anyhow::anyhow!(
                "--principal {principal} needs its secret: set ORCA_SECRET or pass --secret-file"
            )
        })?,
    };
    Ok(feed::Credential::basic(principal, &secret)?)
}

async fn ui(
    master: String,
    credential: feed::Credential,
    migration: Option<String>,
    failures: Option<watch::Receiver<Option<String>>>,
    demo: Option<Demo>,
) -> anyhow::Result<()> {
    let (saved, saved_error) = SavedFilters::load(SavedFilters::default_path());
    let mut app = App::new(master.clone(), saved);
    if let Some(api) = &migration {
        app = app.with_migration(api.clone());
        app.show_migration = demo.is_some();
    }
    if let Some(e) = saved_error {
        app.notify(e, Level::Error);
    }
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let effects = Live {
        actions: Actions::start(master.clone(), credential.clone(), tx.clone()),
        migration: migration.clone().map(|api| (api, tx.clone())),
    };
    let polling =
        migration.map(|api| tokio::spawn(orca_tui::migration::poll::follow(api, tx.clone())));
    // The demo's workload: long-running tasks launched as the UI's framework.
    for n in 0..demo.map_or(0, |d| d.tasks) {
        effects.actions.launch(orca_tui::app::LaunchRequest {
            name: format!("demo-{n}"),
            command: "sleep 86400".into(),
            cpus: 0.1,
            mem_mb: 16.0,
            role: "*".into(),
        });
    }
    let follower = tokio::spawn(feed::follow_as(master, credential, tx.clone()));
    if let Some(mut failures) = failures {
        let tx = tx.clone();
        tokio::spawn(async move {
            while failures.changed().await.is_ok() {
                let why = failures.borrow_and_update().clone();
                if let Some(why) = why {
                    let _ = tx.send(Event::Notice(why, Level::Error)).await;
                }
            }
        });
    }
    run::enter_terminal()?;
    run::spawn_input(tx);
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let result = match ratatui::Terminal::new(backend) {
        Ok(mut terminal) => run::run_loop(&mut terminal, &mut app, &mut rx, &effects).await,
        Err(e) => Err(e.into()),
    };
    run::leave_terminal();
    follower.abort();
    if let Some(polling) = polling {
        polling.abort();
    }
    result
}
