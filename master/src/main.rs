//! `orca-master`: the cluster master and topology collector.
use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use orca_master::{
    allocator::Quota,
    cluster::{ClusterConfig, RoleConfig},
    election::ElectionConfig,
    resources::ScalarMap,
    server::{HaOptions, Master},
};

/// Ctrl-C or SIGTERM: a leader leaves the group at once instead of holding its place for a
/// session timeout.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The master allocates per request, event and offer on every core: mimalloc's per-thread
/// heaps took the launch benchmark's core rate from about 90k to 124k tasks/s and gRPC from
/// 68k to 79k (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "orca-master",
    version,
    about = "Orca master: agent registry, weighted-DRF offers, Mesos v1 scheduler API, topology collector; highly available with --zk"
)]
struct Cli {
    /// gRPC address agents attach to (tasks and topology reports) and clients watch on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    grpc_addr: SocketAddr,
    /// HTTP address for /api/v1/scheduler, /master/state, /api/topology, /metrics, /health.
    #[arg(long, default_value = "127.0.0.1:7080")]
    http_addr: SocketAddr,
    #[command(flatten)]
    collector: orca_collector::cli::CollectorArgs,
    /// How often the allocator runs when no event triggers it.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    allocation_interval: Duration,
    /// Offers not answered within this are rescinded (0 = never).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    offer_timeout: Duration,
    /// An agent silent this long is unreachable (its tasks TASK_UNREACHABLE).
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    agent_ping_timeout: Duration,
    /// An agent unreachable this long is removed (its tasks TASK_LOST).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    agent_removal_timeout: Duration,
    /// Role weight, e.g. `--weight prod=3` (repeatable).
    #[arg(long = "weight", value_name = "ROLE=WEIGHT")]
    weights: Vec<String>,
    /// Role quota guarantee, e.g. `--quota 'prod=cpus:4;mem:8192'` (repeatable).
    #[arg(long = "quota", value_name = "ROLE=RESOURCES")]
    quotas: Vec<String>,
    /// Role quota limit, e.g. `--quota-limit 'batch=cpus:16'` (repeatable).
    #[arg(long = "quota-limit", value_name = "ROLE=RESOURCES")]
    quota_limits: Vec<String>,
    /// Principals allowed to use a role, e.g. `--role-principals prod=ops,deploy`.
    #[arg(long = "role-principals", value_name = "ROLE=P1,P2")]
    role_principals: Vec<String>,
    /// Refuse roles that have no --weight/--quota/--role-principals entry.
    #[arg(long)]
    closed_roles: bool,
    /// The registry file (admitted agents, frameworks, torn-down framework ids), kept across
    /// restarts; `memory` keeps it in memory only. Not used with --zk (the registry is in
    /// ZooKeeper then).
    #[arg(long, default_value = "/var/lib/orca-master/registry.jsonl")]
    registry: String,
    /// Run as one of several highly-available masters: elect the leader and keep the
    /// registry in ZooKeeper, e.g. `zk://h1:2181,h2:2181,h3:2181/mesos`
    /// (`zk://user:password@…` for digest credentials, or `file:///path` holding the URL).
    #[arg(long, env = "ORCA_ZK")]
    zk: Option<String>,
    /// ZooKeeper session timeout (Mesos `--zk_session_timeout`): how long a leader cut off
    /// from ZooKeeper keeps its place. A leader whose process died is replaced sooner: the
    /// other masters notice its port closing.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    zk_session_timeout: Duration,
    /// Accepted for Mesos command-line compatibility (the size of Mesos's replicated-log
    /// quorum). Orca's registry lives in ZooKeeper, whose own quorum makes it durable.
    #[arg(long)]
    quorum: Option<usize>,
    /// This master's id (Mesos `MasterInfo.id`); a new UUID each start when unset.
    #[arg(long)]
    master_id: Option<String>,
    /// The hostname this master advertises (redirects and MasterInfo); its HTTP IP when
    /// unset.
    #[arg(long)]
    hostname: Option<String>,
    /// Principals and secrets callers must authenticate with (HTTP Basic; gRPC the same in
    /// `authorization` metadata), as a Mesos credentials file: JSON `{"credentials":
    /// [{"principal": …, "secret": …}]}` or lines of `principal secret` (`file://` accepted).
    #[arg(long, value_name = "FILE")]
    credentials: Option<String>,
    /// Mesos ACLs, as JSON or a path to it: `register_frameworks`, `run_tasks`,
    /// `teardown_frameworks`, `kill_tasks`, `drain_agents`, `deactivate_agents`,
    /// `reactivate_agents`, `container_actions`. Requests no rule matches are denied unless
    /// `"permissive": true`.
    #[arg(long, value_name = "JSON|FILE")]
    acls: Option<String>,
    #[command(flatten)]
    tls: orca_auth::tls::cli::ServerTlsArgs,
    /// Listen on addresses other hosts can reach without authenticating every caller.
    /// Refused without it: whoever reaches the master can run commands on every agent.
    #[arg(long)]
    insecure: bool,
}

/// Why the master will not listen where it was asked to (`--insecure` overrides).
fn exposure(cli: &Cli) -> Option<String> {
    if cli.insecure {
        return None;
    }
    let reachable = |addr: &SocketAddr| !addr.ip().is_loopback();
    if reachable(&cli.http_addr) && cli.credentials.is_none() {
        return Some(format!(
            "--http-addr {} can be reached from other hosts and no --credentials are set: \
             anyone who reaches it could launch commands on every agent. Give --credentials \
             (and --acls), bind to 127.0.0.1, or pass --insecure to accept the risk",
            cli.http_addr
        ));
    }
    if reachable(&cli.grpc_addr) && (!cli.tls.verifies_agents() || cli.credentials.is_none()) {
        return Some(format!(
            "--grpc-addr {} can be reached from other hosts without authenticating every \
             caller: agents are verified by their client certificates only with --tls-ca \
             (and --tls-cert/--tls-key), schedulers, operators and topology readers only \
             with --credentials. Give both, bind to 127.0.0.1, or pass --insecure to accept \
             the risk",
            cli.grpc_addr
        ));
    }
    None
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 1s, 500ms or 10m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn split_role(flag: &str, entry: &str) -> anyhow::Result<(String, String)> {
    entry
        .split_once('=')
        .map(|(r, v)| (r.trim().to_owned(), v.trim().to_owned()))
        .filter(|(r, _)| !r.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--{flag} {entry:?}: expected ROLE=VALUE"))
}

fn role(config: &mut ClusterConfig, name: String) -> &mut RoleConfig {
    config.roles.entry(name).or_default()
}

fn cluster_config(cli: &Cli) -> anyhow::Result<ClusterConfig> {
    let mut config = ClusterConfig {
        allocation_interval: cli.allocation_interval,
        offer_timeout: (!cli.offer_timeout.is_zero()).then_some(cli.offer_timeout),
        agent_ping_timeout: cli.agent_ping_timeout,
        agent_removal_timeout: cli.agent_removal_timeout,
        open_roles: !cli.closed_roles,
        registry: (cli.registry != "memory" && cli.zk.is_none())
            .then(|| cli.registry.clone().into()),
        master_id: cli.master_id.clone(),
        ..ClusterConfig::default()
    };
    for entry in &cli.weights {
        let (name, value) = split_role("weight", entry)?;
        let weight: f64 = value
            .parse()
            .map_err(|_| anyhow::anyhow!("--weight {entry:?}: {value:?} is not a number"))?;
        role(&mut config, name).weight = Some(weight);
    }
    for entry in &cli.quotas {
        let (name, value) = split_role("quota", entry)?;
        let guarantee =
            ScalarMap::parse(&value).map_err(|e| anyhow::anyhow!("--quota {entry:?}: {e}"))?;
        role(&mut config, name)
            .quota
            .get_or_insert_with(Quota::default)
            .guarantee = guarantee;
    }
    for entry in &cli.quota_limits {
        let (name, value) = split_role("quota-limit", entry)?;
        let limit = ScalarMap::parse(&value)
            .map_err(|e| anyhow::anyhow!("--quota-limit {entry:?}: {e}"))?;
        role(&mut config, name)
            .quota
            .get_or_insert_with(Quota::default)
            .limit = Some(limit);
    }
    for entry in &cli.role_principals {
        let (name, value) = split_role("role-principals", entry)?;
        role(&mut config, name).principals =
            value.split(',').map(|p| p.trim().to_owned()).collect();
    }
    config.credentials = cli
        .credentials
        .as_deref()
        .map(orca_auth::Credentials::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--credentials: {e}"))?;
    config.acls = cli
        .acls
        .as_deref()
        .map(orca_auth::Acls::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--acls: {e}"))?;
    Ok(config)
}

/// Every flag with its value (given or default), named as Mesos names its flags
/// (`allocation_interval`), for `GET_FLAGS`; a password in `--zk` is masked.
fn flag_list(matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> = matches
        .ids()
        .filter_map(|id| {
            let values = matches.get_raw(id.as_str())?;
            let value = values
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let value = if id.as_str() == "zk" {
                mask_password(&value)
            } else {
                value
            };
            Some((id.as_str().replace('-', "_"), value))
        })
        .collect();
    flags.sort();
    flags
}

/// `zk://user:secret@h:p/path` → `zk://user:******@h:p/path`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, hosts)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:******@{hosts}")
        }
        _ => url.to_owned(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(why) = exposure(&cli) {
        eprintln!("orca-master: {why}");
        return ExitCode::from(2);
    }
    let cluster = match cluster_config(&cli) {
        Ok(mut c) => {
            c.flags = flag_list(&matches);
            c
        }
        Err(e) => {
            eprintln!("orca-master: {e:#}");
            return ExitCode::from(2);
        }
    };
    let config = cli.collector.config();
    let election = match cli.zk.as_deref().map(orca_leader::ZkUrl::parse).transpose() {
        Ok(url) => url.map(|url| ElectionConfig {
            url,
            session_timeout: cli.zk_session_timeout,
        }),
        Err(e) => {
            eprintln!("orca-master: --zk: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(quorum), Some(_)) = (cli.quorum, &election) {
        tracing::info!(
            quorum,
            "--quorum is accepted for Mesos compatibility; the registry's durability is ZooKeeper's quorum"
        );
    }
    let ha = HaOptions {
        election,
        hostname: cli.hostname.clone(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("orca-master: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let mut master =
            Master::bind_with(config, cluster, cli.grpc_addr, cli.http_addr, ha).await?;
        if let Some(files) = cli.tls.files()? {
            master = master.with_tls(files)?;
        }
        tracing::info!(grpc = %master.grpc_addr(), http = %master.http_addr(), "master serving");
        master.serve(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orca-master: {err:#}");
            ExitCode::FAILURE
        }
    }
}
