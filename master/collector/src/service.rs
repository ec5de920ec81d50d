//! The collector's gRPC service: report streams from agents, topology watches for clients.
use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use orca_proto::topology::v1 as pb;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Collector;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::collector_server::Collector for Collector {
    type StreamReportsStream = BoxStream<pb::ReportAck>;
    type WatchTopologyStream = BoxStream<pb::TopologyDelta>;

    async fn stream_reports(
        &self,
        request: Request<Streaming<pb::Report>>,
    ) -> Result<Response<Self::StreamReportsStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let collector = self.clone();
        tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                let answer = match message {
                    Ok(report) => Ok(collector.ingest(report)),
                    // Undecodable bytes (tonic's decoder answers INTERNAL): this stream
                    // ends, nothing of it was applied, every other agent's stream carries on.
                    Err(status) if status.code() == tonic::Code::Internal => {
                        collector.metrics().report("malformed");
                        tracing::warn!(?peer, %status, "malformed report stream closed");
                        Err(Status::invalid_argument(format!(
                            "malformed report (not an orca.topology.v1.Report): {}",
                            status.message()
                        )))
                    }
                    // The connection went away (an agent killed or restarting, a network
                    // cut): nothing was wrong with what it sent; it reconnects on its own.
                    Err(status) => {
                        collector.metrics().report("broken");
                        tracing::info!(?peer, %status, "an agent's report stream broke off; it will reconnect");
                        break;
                    }
                };
                let last = answer.is_err();
                if tx.send(answer).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn node_series(
        &self,
        request: Request<pb::NodeSeriesRequest>,
    ) -> Result<Response<pb::TopologyNode>, Status> {
        let id = &request.get_ref().node_id;
        self.node_series(id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no node {id:?} in the topology")))
    }

    async fn watch_topology(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let view = pb::View::try_from(request.get_ref().view)
            .ok()
            .filter(|v| *v != pb::View::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument(
                    "view must be VIEW_HOSTS, VIEW_CONTAINERS, VIEW_PROCESSES or VIEW_CONNECTIONS",
                )
            })?;
        let (snapshot, mut deltas) = self
            .subscribe(view)
            .ok_or_else(|| Status::internal("view not available"))?;
        let (tx, rx) = mpsc::channel(64);
        let collector = self.clone();
        collector.metrics().watchers.inc();
        tokio::spawn(async move {
            let mut last_seq = snapshot.seq;
            if tx.send(Ok(snapshot)).await.is_err() {
                collector.metrics().watchers.dec();
                return;
            }
            loop {
                match deltas.recv().await {
                    Ok(delta) if delta.seq > last_seq => {
                        last_seq = delta.seq;
                        if tx.send(Ok((*delta).clone())).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Too slow to follow deltas: start again from a snapshot.
                        let Some((snapshot, rx)) = collector.subscribe(view) else {
                            break;
                        };
                        deltas = rx;
                        last_seq = snapshot.seq;
                        if tx.send(Ok(snapshot)).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            collector.metrics().watchers.dec();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
