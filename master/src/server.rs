//! Runs the master's servers: gRPC (collector service) and HTTP (API and metrics).
use std::net::SocketAddr;

use orca_proto::topology::v1::collector_server::CollectorServer;
use tokio::net::TcpListener;

use crate::collector::{Collector, CollectorConfig, http};

/// Listeners bound and ready; `serve` runs them.
#[derive(Debug)]
pub struct Master {
    pub collector: Collector,
    grpc: TcpListener,
    http: TcpListener,
}

impl Master {
    /// Binds both listeners (port 0 picks a free port; see `grpc_addr`/`http_addr`).
    pub async fn bind(
        config: CollectorConfig,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(grpc_addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen for gRPC on {grpc_addr}: {e}; pick another --grpc-addr")
        })?;
        let http = TcpListener::bind(http_addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen for HTTP on {http_addr}: {e}; pick another --http-addr")
        })?;
        Ok(Self {
            collector: Collector::new(config),
            grpc,
            http,
        })
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
        let publisher = tokio::spawn(collector.clone().run_publisher());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut grpc_stop = stop_rx.clone();
        let grpc = tonic::transport::Server::builder()
            .add_service(
                CollectorServer::new(collector.clone()).max_decoding_message_size(64 << 20),
            )
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(self.grpc),
                async move {
                    let _ = grpc_stop.changed().await;
                },
            );
        let mut http_stop = stop_rx;
        let http =
            axum::serve(self.http, http::router(collector)).with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let (grpc, http) = tokio::join!(grpc, http.into_future());
        publisher.abort();
        grpc?;
        http?;
        Ok(())
    }
}
