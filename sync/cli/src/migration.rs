//! The migration commands: `start` runs the orchestrator (with its REST API) and begins phase
//! 1; `serve` resumes one after a restart; the others talk to a running orchestrator.
use std::{
    io::{BufRead as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use orca_migrate::{
    MigrationConfig, MigrationState, Orchestrator, Status, cluster,
    ensemble::EnsembleHealth,
    http::{Service, router},
    report::describe_status,
    state::{GateResult, phase_name},
};
use orca_sync::SyncEngine;

const DEFAULT_MIGRATION_API: &str = "127.0.0.1:7091";

#[derive(Subcommand)]
pub enum Command {
    /// Plan a migration from a YAML file, run its orchestrator (REST API on --listen) and
    /// begin phase 1. Later phases wait for `advance` (or a yes here with --interactive, or
    /// run on their own with --all).
    Start {
        #[arg(long)]
        config: PathBuf,
        /// Check the configuration and both ensembles, show what each phase would do, change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ask before each phase (and offer a rollback when one halts).
        #[arg(long, conflicts_with = "all")]
        interactive: bool,
        /// Run all six phases without asking (each still stops on a failed check).
        #[arg(long)]
        all: bool,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        listen: String,
        /// A's digest credentials from a file (`user:password`; or ZK_MIGRATE_SOURCE_AUTH).
        #[arg(long)]
        source_auth_file: Option<PathBuf>,
        #[arg(long)]
        target_auth_file: Option<PathBuf>,
    },
    /// Run the orchestrator of a migration kept under --state-dir (the newest active one
    /// unless --migration-id): what it was doing when it stopped goes on.
    Serve {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        migration_id: Option<String>,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        listen: String,
    },
    /// Where a migration is: phases done, what runs, the last gates.
    Status {
        #[arg(long)]
        migration_id: String,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
    /// Run the next phase (or every phase up to --phase); --confirm is required.
    Advance {
        #[arg(long)]
        migration_id: String,
        #[arg(long)]
        phase: Option<u8>,
        #[arg(long)]
        confirm: bool,
        /// Return at once instead of following the phase until it ends.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
    /// Undo phases down to --to-phase (0, the default: everything back on A).
    Rollback {
        #[arg(long)]
        migration_id: String,
        #[arg(long, default_value_t = 0)]
        to_phase: u8,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
    /// Evaluate a phase's gate now (the last phase done by default); exit 1 when it fails.
    Validate {
        #[arg(long)]
        migration_id: String,
        #[arg(long)]
        phase: Option<u8>,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
    /// The in-flight checks now; exit 1 when one fails.
    Health {
        #[arg(long)]
        migration_id: String,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
    /// The report: timeline, gates with their figures, lag, task counts.
    Report {
        #[arg(long)]
        migration_id: String,
        #[arg(long, default_value = "md")]
        format: String,
        #[arg(long, default_value = DEFAULT_MIGRATION_API)]
        api: String,
    },
}

pub async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Start {
            config,
            dry_run,
            interactive,
            all,
            listen,
            source_auth_file,
            target_auth_file,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let mut cfg = MigrationConfig::from_yaml(&text)
                .with_context(|| format!("{} is not a valid migration", config.display()))?;
            if let Some(auth) =
                crate::credentials(source_auth_file.as_deref(), "ZK_MIGRATE_SOURCE_AUTH")?
            {
                cfg.sync.source_auth = Some(auth);
            }
            if let Some(auth) =
                crate::credentials(target_auth_file.as_deref(), "ZK_MIGRATE_TARGET_AUTH")?
            {
                cfg.sync.target_auth = Some(auth);
            }
            if dry_run {
                return dry_run_plan(cfg).await;
            }
            // The address first: a migration is planned only once its API can be served.
            let listener = bind(&listen).await?;
            let orchestrator = Orchestrator::create(cfg).await?;
            let id = orchestrator.snapshot().id;
            let api = listener.local_addr()?;
            let service = serve_api(listener, &orchestrator);
            println!("migration {id}: API on http://{api}/api/v1/migrations/{id}");
            orchestrator.advance(Some(if all { 6 } else { 1 }))?;
            drop(orchestrator);
            // Run to the end (--all, --interactive) or serve the API until Ctrl-C.
            follow_locally(service, interactive, all || interactive).await
        }
        Command::Serve {
            state_dir,
            migration_id,
            listen,
        } => {
            let id = match migration_id {
                Some(id) => id,
                None => MigrationState::list(&state_dir)
                    .into_iter()
                    .rev()
                    .find(MigrationState::is_active)
                    .map(|m| m.id)
                    .with_context(|| {
                        format!("no active migration under {}", state_dir.display())
                    })?,
            };
            let listener = bind(&listen).await?;
            let api = listener.local_addr()?;
            let orchestrator = Orchestrator::resume(&state_dir, &id).await?;
            let service = serve_api(listener, &orchestrator);
            let s = orchestrator.snapshot();
            println!(
                "migration {id}: {}; API on http://{api}",
                describe_status(&s.status, s.completed)
            );
            drop(orchestrator);
            follow_locally(service, false, false).await
        }
        Command::Status { migration_id, api } => {
            let state: MigrationState =
                get_json(&api, &format!("/api/v1/migrations/{migration_id}")).await?;
            print_state(&state);
            Ok(ExitCode::SUCCESS)
        }
        Command::Advance {
            migration_id,
            phase,
            confirm,
            no_wait,
            api,
        } => {
            if !confirm {
                bail!("advancing changes the live cluster: add --confirm");
            }
            let body = serde_json::json!({ "confirm": true, "phase": phase }).to_string();
            post(
                &api,
                &format!("/api/v1/migrations/{migration_id}/advance"),
                body,
            )
            .await?;
            if no_wait {
                println!("advancing");
                return Ok(ExitCode::SUCCESS);
            }
            follow_remote(&api, &migration_id).await
        }
        Command::Rollback {
            migration_id,
            to_phase,
            no_wait,
            api,
        } => {
            let body = serde_json::json!({ "to_phase": to_phase }).to_string();
            post(
                &api,
                &format!("/api/v1/migrations/{migration_id}/rollback"),
                body,
            )
            .await?;
            if no_wait {
                println!("rolling back to phase {to_phase}");
                return Ok(ExitCode::SUCCESS);
            }
            follow_remote(&api, &migration_id).await
        }
        Command::Validate {
            migration_id,
            phase,
            api,
        } => {
            let body = serde_json::json!({ "phase": phase }).to_string();
            let bytes = post(
                &api,
                &format!("/api/v1/migrations/{migration_id}/validate"),
                body,
            )
            .await?;
            let gate: GateResult = serde_json::from_slice(&bytes)?;
            print_gate(&gate);
            Ok(if gate.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Health { migration_id, api } => {
            let (_, bytes) = crate::request(
                &api,
                "GET",
                &format!("/api/v1/migrations/{migration_id}/health"),
                None,
            )
            .await
            .with_context(|| no_orchestrator(&api))?;
            let gate: GateResult = serde_json::from_slice(&bytes)
                .with_context(|| String::from_utf8_lossy(&bytes).into_owned())?;
            print_gate(&gate);
            Ok(if gate.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Report {
            migration_id,
            format,
            api,
        } => {
            let path = format!("/api/v1/migrations/{migration_id}/report?format={format}");
            let (status, bytes) = crate::request(&api, "GET", &path, None)
                .await
                .with_context(|| no_orchestrator(&api))?;
            if !status.is_success() {
                bail!("{status}: {}", String::from_utf8_lossy(&bytes));
            }
            print!("{}", String::from_utf8_lossy(&bytes));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn no_orchestrator(api: &str) -> String {
    format!("no migration orchestrator answers on {api} (run `zk-migrate serve`, or give --api)")
}

async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (use --listen to pick another address)"))
}

/// Serves the REST API; the service also holds the migration this process runs (a new one
/// planned over the API replaces a finished one).
fn serve_api(listener: tokio::net::TcpListener, orchestrator: &Arc<Orchestrator>) -> Service {
    let service = Service::new(
        orchestrator.config().state_dir.clone(),
        Some(orchestrator.clone()),
    );
    let app = router(service.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server: {e}");
        }
    });
    service
}

/// Prints the timeline as it grows until Ctrl-C, or (`exit_when_done`) until the migration
/// completes or is rolled back; with `interactive`, asks before each phase and offers a
/// rollback on a halt.
async fn follow_locally(
    service: Service,
    interactive: bool,
    exit_when_done: bool,
) -> Result<ExitCode> {
    let mut shown = 0;
    let mut asked_for: Option<(u8, String)> = None;
    let mut said_done = false;
    let mut following = String::new();
    loop {
        // Only borrowed for a moment: a finished migration replaced over the API is
        // dropped, its sessions closed.
        let Some(orchestrator) = service.current() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let s = orchestrator.snapshot();
        if s.id != following {
            following = s.id.clone();
            shown = 0;
            said_done = false;
        }
        for e in &s.timeline[shown.min(s.timeline.len())..] {
            let took = e.took_ms.map_or(String::new(), |ms| format!(" ({ms} ms)"));
            println!("[phase {}] {}{took}", e.phase, e.what);
        }
        shown = s.timeline.len();
        match &s.status {
            Status::Completed | Status::RolledBack if !said_done => {
                println!("{}", describe_status(&s.status, s.completed));
                if exit_when_done {
                    return Ok(ExitCode::SUCCESS);
                }
                println!("serving the API (status, report) until Ctrl-C");
                said_done = true;
            }
            Status::Waiting | Status::Halted { .. }
                if interactive
                    && asked_for.as_ref() != Some(&(s.completed, format!("{:?}", s.status))) =>
            {
                asked_for = Some((s.completed, format!("{:?}", s.status)));
                let question = match &s.status {
                    Status::Halted { phase, .. } => {
                        format!("phase {phase} halted. [r]etry, roll [b]ack, or [w]ait? ")
                    }
                    _ => format!(
                        "advance to phase {} ({})? [y]es, roll [b]ack, or [w]ait? ",
                        s.completed + 1,
                        phase_name(s.completed + 1)
                    ),
                };
                print!("{question}");
                std::io::stdout().flush()?;
                let answer = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map(|_| line)
                })
                .await??;
                let result = match answer.trim() {
                    "y" | "yes" | "r" | "retry" => orchestrator.advance(None).map(drop),
                    "b" | "back" => orchestrator.rollback(0),
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    println!("{e}");
                }
            }
            // Run to the end without asking: a halt ends the run (the state is kept).
            Status::Halted { .. } if exit_when_done && !interactive => {
                println!("{}", describe_status(&s.status, s.completed));
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
        drop(orchestrator);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => {
                println!("stopped following; the migration's state is kept (resume with `zk-migrate serve`)");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Follows a running phase or rollback through the API until it ends.
async fn follow_remote(api: &str, id: &str) -> Result<ExitCode> {
    let mut shown = usize::MAX;
    loop {
        let s: MigrationState = get_json(api, &format!("/api/v1/migrations/{id}")).await?;
        if shown == usize::MAX {
            shown = s.timeline.len().saturating_sub(1);
        }
        for e in &s.timeline[shown.min(s.timeline.len())..] {
            let took = e.took_ms.map_or(String::new(), |ms| format!(" ({ms} ms)"));
            println!("[phase {}] {}{took}", e.phase, e.what);
        }
        shown = s.timeline.len();
        match &s.status {
            Status::Running { .. } | Status::RollingBack { .. } => {}
            Status::Halted { .. } => {
                println!("{}", describe_status(&s.status, s.completed));
                return Ok(ExitCode::from(1));
            }
            other => {
                println!("{}", describe_status(other, s.completed));
                return Ok(ExitCode::SUCCESS);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> Result<T> {
    let (status, bytes) = crate::request(api, "GET", path, None)
        .await
        .with_context(|| no_orchestrator(api))?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

async fn post(api: &str, path: &str, body: String) -> Result<axum::body::Bytes> {
    let (status, bytes) = crate::request(api, "POST", path, Some(body))
        .await
        .with_context(|| no_orchestrator(api))?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes)
}

fn print_state(s: &MigrationState) {
    println!(
        "migration {}: {}",
        s.id,
        describe_status(&s.status, s.completed)
    );
    for phase in 1..=6u8 {
        let mark = if phase <= s.completed {
            "done"
        } else if matches!(s.status, Status::Running { phase: p } if p == phase) {
            "running"
        } else if matches!(&s.status, Status::Halted { phase: p, .. } if *p == phase) {
            "HALTED"
        } else {
            ""
        };
        println!("  {phase}. {:<28} {mark}", phase_name(phase));
    }
    println!(
        "  agents switched {}, drained {}; task interruptions {}",
        s.switched_agents.len(),
        s.drained_agents.len(),
        s.interruptions.len()
    );
    if let Some(g) = s.gates.last() {
        print_gate(g);
    }
}

fn print_gate(g: &GateResult) {
    println!(
        "phase {} {} checks: {} ({} ms)",
        g.phase,
        g.stage,
        if g.passed { "passed" } else { "FAILED" },
        g.took_ms
    );
    for c in &g.checks {
        println!(
            "  [{}] {}: {}",
            if c.ok { "ok" } else { "!!" },
            c.name,
            c.detail
        );
    }
}

/// What `start --dry-run` shows: both ensembles' health, the masters on A, what the first
/// copy would write, and each phase's actions.
async fn dry_run_plan(cfg: MigrationConfig) -> Result<ExitCode> {
    let (a, b) = tokio::join!(
        EnsembleHealth::probe(&cfg.sync.source_zk),
        EnsembleHealth::probe(&cfg.sync.target_zk)
    );
    println!("ensemble A: {}", a.describe());
    println!("ensemble B: {}", b.describe());
    let mut ok = a.has_quorum() && b.has_quorum() && b.all_serving();
    let engine = SyncEngine::connect(cfg.sync.clone()).await?;
    let preview = engine.preview().await?;
    println!(
        "phase 1: copy A ({} znodes) to B ({} znodes): {} creates, {} updates, {} deletes on B; {} conflicts held",
        preview.nodes_a,
        preview.nodes_b,
        preview.to_b.creates,
        preview.to_b.updates,
        preview.to_b.deletes,
        preview.conflicts.len()
    );
    let a_client = zookeeper_client::Client::connector()
        .with_session_timeout(cfg.sync.session_timeout())
        .connect(&cfg.sync.source_zk)
        .await?;
    let group = cluster::contenders(&a_client, &cfg.cluster.path).await?;
    if group.is_empty() {
        println!("no master contends under {} on A", cfg.cluster.path);
        ok = false;
    }
    println!(
        "phase 2: start {} masters on {}: {}",
        cfg.cluster.target_masters.len(),
        cfg.zk_url(true),
        cfg.cluster
            .target_masters
            .iter()
            .map(|m| m.http.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "phase 3: stop the masters on A (followers first, the leader last): {}",
        group
            .iter()
            .map(cluster::describe)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "phase 4: switch every agent to {} in batches of {} ({} ms apart)",
        cfg.zk_url(true),
        cfg.cluster.agent_batch_size,
        cfg.cluster.agent_batch_pause_ms
    );
    println!(
        "phase 5: drain the agents on {}",
        if cfg.cluster.leave_agents.is_empty() {
            "no host (none listed)".to_owned()
        } else {
            cfg.cluster.leave_agents.join(", ")
        }
    );
    println!(
        "phase 6: stop the sync, archive A's tree (kept {} h), check no session is left on A, stop A's servers",
        cfg.rollback_window_h
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        println!("not ready: see above");
        ExitCode::from(1)
    })
}
