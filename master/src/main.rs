//! `orca-master`: the topology collector (and, in later releases, the cluster master).
use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use orca_master::{
    collector::{CollectorConfig, series::SeriesConfig},
    server::Master,
};

#[derive(Parser, Debug)]
#[command(
    name = "orca-master",
    version,
    about = "Orca master: topology collector"
)]
struct Cli {
    /// gRPC address agents stream reports to and clients watch the topology on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    grpc_addr: SocketAddr,
    /// HTTP address for /api/topology, /api/agents, /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:7080")]
    http_addr: SocketAddr,
    /// Seconds of silence after which an agent is removed from the topology.
    #[arg(long, default_value_t = 60)]
    agent_expiry_secs: u64,
    /// Time-series retention in minutes (15-second resolution).
    #[arg(long, default_value_t = 60)]
    retention_minutes: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = CollectorConfig {
        series: SeriesConfig {
            resolution_ms: 15_000,
            capacity: (cli.retention_minutes.max(1) * 4) as usize,
        },
        agent_expiry: Duration::from_secs(cli.agent_expiry_secs),
        ..Default::default()
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("orca-master: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let master = Master::bind(config, cli.grpc_addr, cli.http_addr).await?;
        tracing::info!(grpc = %master.grpc_addr(), http = %master.http_addr(), "collector serving");
        master
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orca-master: {err:#}");
            ExitCode::FAILURE
        }
    }
}
