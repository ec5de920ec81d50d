//! `orca-collector`: the topology collector on its own, for a monitoring-only cluster. Agents
//! (`orca-agent run --no-tasks --master <this>`) stream their reports to it, Prometheus
//! scrapes its `/metrics`, the TUI watches it; no scheduler runs.
use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::State, http::HeaderMap, response::Response, routing::get};
use clap::Parser;
use orca_auth::{
    doors,
    tls::{ALPN_GRPC, ALPN_HTTP, ServerTls, TlsIncoming},
};
use orca_collector::{Collector, cli::CollectorArgs, http};
use orca_proto::topology::v1::collector_server::CollectorServer;

/// A server's future, plain or TLS.
type Served<E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), E>> + Send>>;

#[derive(Parser, Debug)]
#[command(
    name = "orca-collector",
    version,
    about = "Orca's topology collector without a scheduler: agents' reports in, topology \
             views and Prometheus series out"
)]
struct Cli {
    /// gRPC address agents stream reports to and clients watch the topology on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    grpc_addr: SocketAddr,
    /// HTTP address for /api/topology, /api/agents, /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:7080")]
    http_addr: SocketAddr,
    #[command(flatten)]
    collector: CollectorArgs,
    #[command(flatten)]
    tls: orca_auth::tls::cli::ServerTlsArgs,
    /// Principals and secrets (a Mesos credentials file) topology readers authenticate
    /// with: /api/topology, /api/agents, /metrics, WatchTopology, NodeSeries.
    #[arg(long, value_name = "FILE")]
    credentials: Option<String>,
    /// Listen on addresses other hosts can reach without authenticating every caller.
    #[arg(long)]
    insecure: bool,
}

/// Why the collector will not listen where it was asked to (`--insecure` overrides).
fn exposure(cli: &Cli) -> Option<String> {
    let reachable = !cli.grpc_addr.ip().is_loopback() || !cli.http_addr.ip().is_loopback();
    (!cli.insecure && reachable && (!cli.tls.verifies_agents() || cli.credentials.is_none())).then(
        || {
            format!(
                "--grpc-addr {} / --http-addr {} can be reached from other hosts without \
                 authenticating every caller: agents are verified by their client \
                 certificates only with --tls-ca (and --tls-cert/--tls-key), readers of the \
                 topology only with --credentials. Give both, bind to 127.0.0.1, or pass \
                 --insecure to accept the risk",
                cli.grpc_addr, cli.http_addr
            )
        },
    )
}

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

async fn metrics(State(collector): State<Collector>, request: HeaderMap) -> Response {
    orca_exposition::response(&request, collector.exposition())
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let collector = Collector::new(cli.collector.config());
    let credentials = cli
        .credentials
        .as_deref()
        .map(orca_auth::Credentials::load)
        .transpose()
        .context("--credentials")?;
    let readers = doors::Authenticator::new(credentials).in_realm(doors::READONLY_REALM);
    let tls = cli
        .tls
        .files()?
        .map(|files| -> anyhow::Result<_> {
            Ok((
                ServerTls::load(files.clone(), ALPN_GRPC)?,
                ServerTls::load(files, ALPN_HTTP)?,
            ))
        })
        .transpose()?;
    let grpc = tokio::net::TcpListener::bind(cli.grpc_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen for gRPC on {}; pick another --grpc-addr",
                cli.grpc_addr
            )
        })?;
    let http_listener = tokio::net::TcpListener::bind(cli.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}; pick another --http-addr",
                cli.http_addr
            )
        })?;
    tracing::info!(
        grpc = %grpc.local_addr()?,
        http = %http_listener.local_addr()?,
        "collector serving"
    );
    let publisher = tokio::spawn(collector.clone().run_publisher());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut grpc_stop = stop_rx.clone();
    let grpc_stopped = async move {
        let _ = grpc_stop.changed().await;
    };
    let grpc_server = tonic::transport::Server::builder()
        .layer(doors::GrpcDoor {
            agents_need_certificates: tls.as_ref().is_some_and(|(g, _)| g.verifies_clients()),
            readers: readers.clone(),
        })
        .add_service(CollectorServer::new(collector.clone()).max_decoding_message_size(64 << 20));
    let grpc: Served<tonic::transport::Error> =
        match &tls {
            Some((grpc_tls, _)) => Box::pin(grpc_server.serve_with_incoming_shutdown(
                TlsIncoming::new(grpc, grpc_tls.clone())?,
                grpc_stopped,
            )),
            None => Box::pin(grpc_server.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                grpc_stopped,
            )),
        };
    let router = http::api(collector.clone())
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(collector),
        )
        .route_layer(axum::middleware::from_fn_with_state(readers, doors::http))
        .merge(http::health());
    let mut http_stop = stop_rx.clone();
    let http_stopped = async move {
        let _ = http_stop.changed().await;
    };
    let http: Served<std::io::Error> = match &tls {
        Some((_, http_tls)) => Box::pin(
            axum::serve(TlsIncoming::new(http_listener, http_tls.clone())?, router)
                .with_graceful_shutdown(http_stopped)
                .into_future(),
        ),
        None => Box::pin(
            axum::serve(http_listener, router)
                .with_graceful_shutdown(http_stopped)
                .into_future(),
        ),
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // Watches and report streams never end by themselves: once stopping, they get a second.
    let mut grace = stop_rx;
    let (grpc, http) = tokio::select! {
        both = async { tokio::join!(grpc, http) } => both,
        _ = async {
            let _ = grace.changed().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => (Ok(()), Ok(())),
    };
    publisher.abort();
    grpc?;
    http?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(why) = exposure(&cli) {
        eprintln!("orca-collector: {why}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orca-collector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orca-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}
