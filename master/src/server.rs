//! Runs the master's servers: gRPC (agent link, scheduler API, topology collector) and HTTP (Mesos v1
//! scheduler API, `/master/state`, the collector's topology API, `/metrics`, `/health`).
use std::net::SocketAddr;

use axum::{Router, extract::State, http::HeaderMap, response::Response, routing::get};
use orca_auth::{
    doors::GrpcDoor,
    tls::{ALPN_GRPC, ALPN_HTTP, ServerTls, TlsFiles, TlsIncoming},
};
use orca_collector::{Collector, CollectorConfig, http};
use orca_proto::{
    cluster::v1::agent_link_server::AgentLinkServer, operator::v1::operator_server::OperatorServer,
    scheduler::v1::scheduler_server::SchedulerServer,
    topology::v1::collector_server::CollectorServer,
};
use tokio::net::TcpListener;

use crate::{
    api::{
        agent_link::AgentLinkService, authn, mesos_http, operator_grpc::OperatorService,
        scheduler_grpc::SchedulerService,
    },
    cluster::{Cluster, ClusterConfig},
    election::{self, ElectionConfig},
};

/// How long a stopping master waits for open streams to end before it closes them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Listeners bound and ready; `serve` runs them.
#[derive(Debug)]
pub struct Master {
    pub collector: Collector,
    pub cluster: Cluster,
    grpc: TcpListener,
    http: TcpListener,
    election: Option<ElectionConfig>,
    tls: Option<Tls>,
}

/// Both listeners' TLS (the same files; gRPC offers only HTTP/2).
#[derive(Debug)]
struct Tls {
    grpc: std::sync::Arc<ServerTls>,
    http: std::sync::Arc<ServerTls>,
}

/// How a master takes part in a cluster.
#[derive(Clone, Debug, Default)]
pub struct HaOptions {
    /// Elect the leader in ZooKeeper and keep the registry there (`--zk`); `None` is a
    /// single master on its own registry.
    pub election: Option<ElectionConfig>,
    /// The name this master is known by (Mesos `--hostname`); the HTTP address's IP when
    /// unset and bound to one, the system hostname when bound to all.
    pub hostname: Option<String>,
}

impl Master {
    /// Binds both listeners of a single master (port 0 picks a free port; see
    /// `grpc_addr`/`http_addr`).
    pub async fn bind(
        config: CollectorConfig,
        cluster: ClusterConfig,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::bind_with(config, cluster, grpc_addr, http_addr, HaOptions::default()).await
    }

    /// Binds both listeners; with `ha.election` the master follows until elected.
    pub async fn bind_with(
        config: CollectorConfig,
        cluster: ClusterConfig,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
        ha: HaOptions,
    ) -> anyhow::Result<Self> {
        let cluster = match ha.election {
            Some(_) => Cluster::follower(cluster),
            None => Cluster::new(cluster),
        }
        .map_err(|e| anyhow::anyhow!("invalid cluster configuration: {e}"))?;
        let grpc = listen(grpc_addr).map_err(|e| {
            anyhow::anyhow!("cannot listen for gRPC on {grpc_addr}: {e}; pick another --grpc-addr")
        })?;
        let http = listen(http_addr).map_err(|e| {
            anyhow::anyhow!("cannot listen for HTTP on {http_addr}: {e}; pick another --http-addr")
        })?;
        let (http_bound, grpc_bound) = (http.local_addr()?, grpc.local_addr()?);
        let hostname = ha.hostname.unwrap_or_else(|| {
            if http_bound.ip().is_unspecified() {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into())
            } else {
                http_bound.ip().to_string()
            }
        });
        cluster.set_info(orca_leader::MasterInfo::new(
            cluster.master_id(),
            hostname,
            http_bound,
            grpc_bound,
        ));
        Ok(Self {
            collector: Collector::new(config),
            cluster,
            grpc,
            http,
            election: ha.election,
            tls: None,
        })
    }

    /// Serves both listeners over TLS (`--tls-cert`/`--tls-key`); with a CA (`--tls-ca`)
    /// agents must present a certificate it signed. The files are read again when they
    /// change.
    pub fn with_tls(mut self, files: TlsFiles) -> anyhow::Result<Self> {
        self.tls = Some(Tls {
            grpc: ServerTls::load(files.clone(), ALPN_GRPC)?,
            http: ServerTls::load(files, ALPN_HTTP)?,
        });
        Ok(self)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound listener")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let collector = self.collector.clone();
        let cluster = self.cluster.clone();
        let publisher = tokio::spawn(collector.clone().run_publisher());
        let allocation = tokio::spawn(cluster.clone().run());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
        let election = self.election.map(|config| {
            let (cluster, info, stop) = (
                cluster.clone(),
                cluster.info().expect("set when bound"),
                stop_rx.clone(),
            );
            let fatal = fatal_tx.clone();
            tokio::spawn(async move {
                if let Err(e) = election::run(cluster, config, info, stop).await {
                    let _ = fatal.send(e);
                }
            })
        });
        let mut grpc_stop = stop_rx.clone();
        // Agents are told to heartbeat three times per ping timeout.
        let heartbeat = cluster.agent_ping_timeout() / 3;
        // With --credentials the scheduler and operator services authenticate their callers.
        let authenticator = authn::Authenticator::new(cluster.credentials());
        // What the topology and metrics show (hosts, processes, their command lines and
        // traffic) is for authenticated readers, as Mesos's `/metrics/snapshot` is.
        let readers = authenticator.in_realm(authn::READONLY_REALM);
        let door = GrpcDoor {
            agents_need_certificates: self.tls.as_ref().is_some_and(|t| t.grpc.verifies_clients()),
            readers: readers.clone(),
        };
        let grpc = tonic::transport::Server::builder()
            .layer(door)
            .add_service(
                CollectorServer::new(collector.clone()).max_decoding_message_size(64 << 20),
            )
            .add_service(AgentLinkServer::new(AgentLinkService::new(
                cluster.clone(),
                heartbeat,
            )))
            .add_service(SchedulerServer::with_interceptor(
                SchedulerService::new(cluster.clone()),
                authn::grpc(authenticator.clone()),
            ))
            .add_service(OperatorServer::with_interceptor(
                OperatorService::new(cluster.clone(), stop_rx.clone()),
                authn::grpc(authenticator),
            ));
        let grpc_stopped = async move {
            let _ = grpc_stop.changed().await;
        };
        let grpc: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match &self.tls {
            Some(tls) => Box::pin(grpc.serve_with_incoming_shutdown(
                TlsIncoming::new(self.grpc, tls.grpc.clone())?,
                grpc_stopped,
            )),
            None => Box::pin(grpc.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(self.grpc),
                grpc_stopped,
            )),
        };
        // `/health` stays open to probes.
        let readers = axum::middleware::from_fn_with_state(readers, authn::http);
        let router = http::api(collector.clone())
            .merge(
                Router::new()
                    .route("/metrics", get(metrics))
                    .with_state((collector, cluster.clone())),
            )
            .route_layer(readers)
            .merge(http::health())
            .merge(mesos_http::router(cluster));
        let mut http_stop = stop_rx.clone();
        let http_stopped = async move {
            let _ = http_stop.changed().await;
        };
        let http: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
            match &self.tls {
                Some(tls) => Box::pin(
                    axum::serve(TlsIncoming::new(self.http, tls.http.clone())?, router)
                        .with_graceful_shutdown(http_stopped)
                        .into_future(),
                ),
                None => Box::pin(
                    axum::serve(self.http, router)
                        .with_graceful_shutdown(http_stopped)
                        .into_future(),
                ),
            };
        let stopper = stop_tx.clone();
        let fatal_error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let fatal_seen = fatal_error.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                Some(e) = fatal_rx.recv() => {
                    tracing::error!(%e, "this master cannot go on");
                    *fatal_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
            let _ = stopper.send(true);
        });
        // Watches, event streams and agent links never end by themselves: after the grace
        // period the servers are dropped with whatever is still open.
        let mut grace = stop_rx;
        let served = async { tokio::join!(grpc, http) };
        let (grpc, http) = tokio::select! {
            both = served => both,
            _ = async {
                let _ = grace.changed().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::info!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
                (Ok(()), Ok(()))
            }
        };
        publisher.abort();
        allocation.abort();
        if let Some(election) = election {
            // It leaves the group on the stop signal; give it a moment to say so.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, election).await;
        }
        drop(stop_tx);
        if let Some(e) = fatal_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.into());
        }
        grpc?;
        http?;
        Ok(())
    }
}

/// `/metrics`: the cluster's, the collector's and the topology's series.
async fn metrics(
    State((collector, cluster)): State<(Collector, Cluster)>,
    request: HeaderMap,
) -> Response {
    orca_exposition::response(
        &request,
        crate::prometheus::exposition(&collector, &cluster),
    )
}

/// How many connections may wait to be accepted (the kernel clamps it to `somaxconn`). The
/// usual 128 overflows when a few hundred agents reconnect at once (a new leader, a master
/// switch), and every connection dropped waits out a 1 s SYN retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
