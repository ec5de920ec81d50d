//! `zk-migrate`: moves a live Orca cluster and its ZooKeeper tree from ensemble A to
//! ensemble B without downtime, in six gated, reversible phases:
//!
//! ```text
//! zk-migrate start --config migration.yaml [--dry-run] [--interactive | --all]
//! zk-migrate serve --state-dir DIR [--migration-id ID]    # resume after a restart
//! zk-migrate status | advance --confirm | rollback | validate | health | report --migration-id ID
//! zk-migrate sync start --config sync.yaml [--dry-run]   # the sync engine alone
//! zk-migrate sync status | validate | stop | conflicts   # talk to a running engine
//! zk-migrate sync resolve /path --winner a|b
//! ```
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use axum::body::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use orca_migrate::client::request;
use orca_sync::{
    ConflictStrategy, EphemeralPolicy, HiddenAclPolicy, SyncConfig, SyncEngine,
    engine::{Conflict, Status},
    http::{ValidateReply, router},
};
use tokio::sync::Notify;

mod migration;

#[derive(Parser)]
#[command(
    name = "zk-migrate",
    version,
    about = "Move a live ZooKeeper tree between ensembles"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Keep two ensembles identical (bidirectional live replication).
    Sync {
        #[command(subcommand)]
        action: SyncAction,
    },
    #[command(flatten)]
    Migration(migration::Command),
}

const DEFAULT_API: &str = "127.0.0.1:7090";

#[derive(Subcommand)]
enum SyncAction {
    /// Connect, copy A to B (or resume from --state-dir), then replicate both ways until
    /// stopped; serves the REST API, /metrics and /health on --listen.
    Start {
        #[command(flatten)]
        config: ConfigArgs,
        /// Show what the first pass would write, write nothing, and exit.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = DEFAULT_API)]
        listen: String,
    },
    /// Replication figures of the running engine.
    Status {
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
    /// Compare both trees now (exit code 1 when they differ).
    Validate {
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
    /// Stop the running engine.
    Stop {
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
    /// Conflicts held for an operator (strategy manual).
    Conflicts {
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
    /// Settle a held conflict: copy the winner's version to the other side.
    Resolve {
        path: String,
        #[arg(long)]
        winner: Winner,
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Winner {
    A,
    B,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// YAML file with the sync's configuration (flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ensemble A, the source of the initial copy (host:port,...).
    #[arg(long)]
    source_zk: Option<String>,
    /// Ensemble B.
    #[arg(long)]
    target_zk: Option<String>,
    /// Subtree to keep identical.
    #[arg(long)]
    root: Option<String>,
    /// Subtree never replicated (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Where agreed state is kept, so a restart resumes without a full copy.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A file holding A's digest credentials (`user:password`), kept out of argv and process
    /// listings; or set them in the environment as ZK_MIGRATE_SOURCE_AUTH.
    #[arg(long)]
    source_auth_file: Option<PathBuf>,
    /// The same for B (or ZK_MIGRATE_TARGET_AUTH).
    #[arg(long)]
    target_auth_file: Option<PathBuf>,
    /// What is done with a znode whose ACL the sync reads with hidden digests (no ADMIN on
    /// it): refuse it (the default), or copy its data keeping the target's ACL.
    #[arg(long, value_enum)]
    acl_hidden: Option<AclHidden>,
    /// ACL entry (`scheme:id:perms`, e.g. `world:anyone:r`) for such a node created where
    /// the target has no copy under `--acl-hidden keep-target` (repeatable).
    #[arg(long)]
    acl_fallback: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AclHidden {
    Refuse,
    KeepTarget,
}

/// Digest credentials from `file` (or, without one, from the environment variable `env`).
fn credentials(file: Option<&Path>, env: &str) -> Result<Option<String>> {
    let (text, source) = match file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the credentials in {}", file.display()))?;
            if let Ok(meta) = std::fs::metadata(file) {
                use std::os::unix::fs::PermissionsExt as _;
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %file.display(), "the credentials file is readable by others; chmod 600 it");
                }
            }
            (text, file.display().to_string())
        }
        None => match std::env::var(env) {
            Ok(text) => (text, format!("${env}")),
            Err(_) => return Ok(None),
        },
    };
    let text = text.trim();
    match text.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(Some(text.to_owned())),
        _ => bail!("{source} must hold digest credentials as user:password"),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Strategy {
    LastWriteWins,
    SourceWins,
    Manual,
}

impl ConfigArgs {
    fn load(&self) -> Result<SyncConfig> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_norway::from_str::<SyncConfig>(&text).with_context(|| {
                    format!("{} is not a valid sync configuration", path.display())
                })?
            }
            None => {
                let (Some(source), Some(target)) = (&self.source_zk, &self.target_zk) else {
                    bail!("give --config FILE, or both --source-zk and --target-zk");
                };
                SyncConfig::new(source.clone(), target.clone())
            }
        };
        if let Some(s) = &self.source_zk {
            cfg.source_zk = s.clone();
        }
        if let Some(t) = &self.target_zk {
            cfg.target_zk = t.clone();
        }
        if let Some(r) = &self.root {
            cfg.root = r.clone();
        }
        cfg.excludes.extend(self.exclude.iter().cloned());
        if let Some(s) = self.strategy {
            cfg.conflicts = match s {
                Strategy::LastWriteWins => ConflictStrategy::LastWriteWins,
                Strategy::SourceWins => ConflictStrategy::SourceWins,
                Strategy::Manual => ConflictStrategy::Manual,
            };
        }
        if let Some(d) = &self.state_dir {
            cfg.state_dir = Some(d.clone());
        }
        if let Some(policy) = self.acl_hidden {
            cfg.acl_hidden = match policy {
                AclHidden::Refuse => HiddenAclPolicy::Refuse,
                AclHidden::KeepTarget => HiddenAclPolicy::KeepTarget,
            };
        }
        if !self.acl_fallback.is_empty() {
            cfg.acl_fallback = self.acl_fallback.clone();
        }
        if let Some(auth) = credentials(self.source_auth_file.as_deref(), "ZK_MIGRATE_SOURCE_AUTH")?
        {
            cfg.source_auth = Some(auth);
        }
        if let Some(auth) = credentials(self.target_auth_file.as_deref(), "ZK_MIGRATE_TARGET_AUTH")?
        {
            cfg.target_auth = Some(auth);
        }
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zk-migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Top::Sync { action } => rt.block_on(run(action)),
        Top::Migration(command) => rt.block_on(migration::run(command)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zk-migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(action: SyncAction) -> Result<ExitCode> {
    match action {
        SyncAction::Start {
            config,
            dry_run,
            listen,
        } => start(config.load()?, dry_run, &listen).await,
        SyncAction::Status { api } => {
            let body = call(&api, "GET", "/api/v1/sync/status", None).await?;
            print_status(&serde_json::from_slice(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        SyncAction::Validate { api } => {
            let body = call(&api, "POST", "/api/v1/sync/validate", None).await?;
            let reply: ValidateReply = serde_json::from_slice(&body)?;
            if reply.identical {
                println!("identical: both ensembles hold the same tree");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} paths differ:", reply.differences_total);
            for d in &reply.differences {
                println!("  {}", serde_json::to_string(d)?);
            }
            Ok(ExitCode::from(1))
        }
        SyncAction::Stop { api } => {
            call(&api, "POST", "/api/v1/sync/stop", None).await?;
            println!("stopping");
            Ok(ExitCode::SUCCESS)
        }
        SyncAction::Conflicts { api } => {
            let body = call(&api, "GET", "/api/v1/sync/conflicts", None).await?;
            let held: Vec<Conflict> = serde_json::from_slice(&body)?;
            if held.is_empty() {
                println!("no conflicts held");
            }
            for c in held {
                println!(
                    "{}  a: {}  b: {}",
                    c.path,
                    c.a.as_deref().unwrap_or("(absent)"),
                    c.b.as_deref().unwrap_or("(absent)")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncAction::Resolve { path, winner, api } => {
            let body = serde_json::json!({
                "path": path,
                "winner": match winner { Winner::A => "a", Winner::B => "b" },
            });
            call(
                &api,
                "POST",
                "/api/v1/sync/conflicts/resolve",
                Some(body.to_string()),
            )
            .await?;
            println!("resolved {path}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(s: &Status) {
    println!("bootstrapped      {}", s.bootstrapped);
    println!("replicated a->b   {}", s.replicated_a_to_b);
    println!("replicated b->a   {}", s.replicated_b_to_a);
    for (name, lag, added) in [
        ("a->b", &s.lag_a_to_b_ms, &s.added_a_to_b_ms),
        ("b->a", &s.lag_b_to_a_ms, &s.added_b_to_a_ms),
    ] {
        println!(
            "lag {name}          p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms (before the write: p99 {:.1} ms)",
            lag.p50, lag.p99, lag.max, added.p99
        );
    }
    for (name, recent) in [
        ("a->b", &s.recent_lag_a_to_b_ms),
        ("b->a", &s.recent_lag_b_to_a_ms),
    ] {
        println!(
            "recent lag {name}   p99 {:.1} ms over {} writes",
            recent.p99, recent.count
        );
    }
    println!("queue depth       {}", s.queue_depth);
    if s.stalled_ms > 0 {
        println!(
            "waiting          changes seen {:.1} s ago are not replicated yet",
            s.stalled_ms as f64 / 1000.0
        );
    }
    println!(
        "conflicts         {} ({} held)",
        s.conflicts, s.conflicts_held
    );
    println!("errors            {}", s.errors);
    match (s.rescanning, s.last_rescan_ms) {
        (true, _) => println!("re-scans          {}, one running now", s.rescans),
        (false, 0) => println!("re-scans          {}", s.rescans),
        (false, ms) => println!("re-scans          {} (the last took {ms} ms)", s.rescans),
    }
    match &s.last_validation {
        None => println!("validated         not yet"),
        Some(v) => {
            let ago_s = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |now| now.as_millis() as u64)
                .saturating_sub(v.at_unix_ms)
                / 1000;
            println!(
                "validated         {ago_s} s ago (A {} znodes, B {}): {}; {} changes on their \
                 way, {} held conflicts; {} validations, {} diverged paths found and repaired \
                 in all",
                v.nodes_a,
                v.nodes_b,
                if v.in_sync() {
                    "in sync".to_string()
                } else if v.diverged == 0 {
                    format!(
                        "NOT in sync: {} znodes whose ACL cannot be read",
                        v.acl_hidden
                    )
                } else {
                    format!("{} paths DIVERGED", v.diverged)
                },
                v.in_flight,
                v.held,
                s.validations,
                s.diverged_found
            );
            for path in &v.diverged_paths {
                println!("  diverged        {path}");
            }
        }
    }
    if s.acl_hidden > 0 {
        if s.acl_policy == HiddenAclPolicy::KeepTarget {
            println!(
                "hidden ACLs       {} znodes read as `digest user:x` (no ADMIN for the sync's \
                 identity), acl-hidden: keep-target: compared by data, {} copies kept the \
                 target's ACL, {} created with acl-fallback, {} refused",
                s.acl_hidden, s.acl_kept, s.acl_fallback, s.acl_refused
            );
        } else {
            println!(
                "hidden ACLs       {} znodes read as `digest user:x` (no ADMIN for the sync's \
                 identity): not copied ({} copies refused); give it ADMIN on them or a super \
                 digest, or copy them keeping the target's ACL (--acl-hidden keep-target)",
                s.acl_hidden, s.acl_refused
            );
        }
        for path in &s.acl_hidden_paths {
            println!("  hidden ACL      {path}");
        }
    }
}

async fn start(cfg: SyncConfig, dry_run: bool, listen: &str) -> Result<ExitCode> {
    if cfg.ephemerals == EphemeralPolicy::Skip {
        tracing::info!("ephemeral znodes are not replicated (ephemerals: skip)");
    }
    let engine = SyncEngine::connect(cfg).await?;
    if dry_run {
        let preview = engine.preview().await?;
        println!(
            "A: {} znodes, B: {} znodes",
            preview.nodes_a, preview.nodes_b
        );
        for (side, c) in [("A", &preview.to_a), ("B", &preview.to_b)] {
            println!(
                "would write to {side}: {} creates, {} updates, {} deletes",
                c.creates, c.updates, c.deletes
            );
        }
        if !preview.conflicts.is_empty() {
            println!("would hold {} conflicts:", preview.conflicts.len());
            for p in &preview.conflicts {
                println!("  {p}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (use --listen to pick another address)"))?;
    let api = listener.local_addr()?;
    let stop = Arc::new(Notify::new());
    let app = router(engine.clone(), stop.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server: {e}");
        }
    });
    tracing::info!("API on http://{api}/api/v1/sync/status");
    let progress = progress_bar(engine.clone());
    let stopped = async move {
        tokio::select! {
            _ = stop.notified() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let result = engine.clone().run(stopped).await;
    progress.finish_and_clear();
    result?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A spinner with the engine's progress while it copies (drawn only on a terminal).
fn progress_bar(engine: Arc<SyncEngine>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let shown = bar.clone();
    tokio::spawn(async move {
        loop {
            let s = engine.status();
            if s.bootstrapped {
                shown.finish_with_message(format!(
                    "initial copy done ({} znodes written to B); replicating",
                    s.replicated_a_to_b
                ));
                return;
            }
            shown.set_message(format!(
                "initial copy: {} znodes read, {} written to B",
                s.walked, s.replicated_a_to_b
            ));
            shown.tick();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    bar
}

/// One request to a running engine's API; a non-2xx reply is an error with its message.
async fn call(api: &str, method: &str, path: &str, body: Option<String>) -> Result<Bytes> {
    let (status, bytes) = request(api, method, path, body).await.with_context(|| {
        format!(
            "no sync engine answers on {api} (start one with `zk-migrate sync start`, or give --api)"
        )
    })?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn credentials_come_from_a_file_or_the_environment_and_must_be_user_password() {
        let dir = std::env::temp_dir().join(format!("zk-migrate-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.auth");
        std::fs::write(&file, "sync:s3cret\n").unwrap();
        assert_eq!(
            credentials(Some(&file), "ZK_MIGRATE_TEST_UNSET").unwrap(),
            Some("sync:s3cret".to_owned())
        );
        std::fs::write(&file, "no-colon").unwrap();
        let err = credentials(Some(&file), "ZK_MIGRATE_TEST_UNSET").unwrap_err();
        assert!(err.to_string().contains("user:password"), "{err}");
        assert!(err.to_string().contains("a.auth"), "{err}");
        let err = credentials(Some(&dir.join("missing")), "ZK_MIGRATE_TEST_UNSET").unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        assert_eq!(credentials(None, "ZK_MIGRATE_TEST_UNSET").unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
