//! A report sink speaking the collector's gRPC contract: it acknowledges every report and
//! records when each connection (by local port) first arrived, to measure connect-to-report
//! latency at the collector's door.
use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{Stream, StreamExt as _};
use orca_proto::topology::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Default)]
pub struct Arrivals {
    /// Local port of an outbound connection of `watched_pid` -> arrival instants.
    pub by_port: HashMap<u16, Vec<Instant>>,
    /// Folded entries (many closed connections to one server port) of `watched_pid`:
    /// server port -> (arrival, earliest start, latest close) in Unix ms.
    pub folded: HashMap<u16, Vec<(Instant, i64, i64)>>,
    /// Closed outbound connections of `watched_pid` per server port, as the reports count
    /// them: one for each single CLOSED entry, `aggregated` for each folded one. Every
    /// connection's close travels in exactly one report, so this equals the connections made.
    pub closed_by_port: HashMap<u16, u64>,
    pub reports: u64,
    pub first_report: Option<Instant>,
    /// Every CLOSED entry by its remote port, whoever owns it and whichever way it points:
    /// tells a connection reported under another owner or direction from one not reported.
    pub closed_any_by_remote_port: HashMap<u16, u64>,
    /// Single CLOSED entries whose remote port is `diagnose_port`: (pid, direction, local
    /// port, comm).
    pub diagnosed: Vec<(u32, i32, u16, String)>,
    pub diagnose_port: u16,
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub arrivals: Arc<Mutex<Arrivals>>,
    pub watched_pid: u32,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::collector_server::Collector for Sink {
    type StreamReportsStream = BoxStream<pb::ReportAck>;
    type WatchTopologyStream = BoxStream<pb::TopologyDelta>;

    async fn stream_reports(
        &self,
        request: Request<Streaming<pb::Report>>,
    ) -> Result<Response<Self::StreamReportsStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let sink = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(report)) = inbound.next().await {
                let now = Instant::now();
                {
                    let mut a = sink.arrivals.lock().unwrap();
                    a.reports += 1;
                    a.first_report.get_or_insert(now);
                    for c in &report.connections {
                        if c.state == pb::ConnectionState::Closed as i32 {
                            let remote = c.remote.as_ref().map_or(0, |r| r.port as u16);
                            *a.closed_any_by_remote_port.entry(remote).or_default() +=
                                u64::from(c.aggregated.max(1));
                            if remote == a.diagnose_port && a.diagnose_port != 0 {
                                a.diagnosed.push((
                                    c.pid,
                                    c.direction,
                                    c.local.as_ref().map_or(0, |l| l.port as u16),
                                    c.comm.clone(),
                                ));
                            }
                        }
                        if c.pid != sink.watched_pid
                            || c.direction != pb::Direction::Outbound as i32
                        {
                            continue;
                        }
                        let server_port = c.remote.as_ref().map_or(0, |r| r.port as u16);
                        if c.state == pb::ConnectionState::Closed as i32 {
                            *a.closed_by_port.entry(server_port).or_default() +=
                                u64::from(c.aggregated.max(1));
                        }
                        if c.aggregated > 1 {
                            a.folded.entry(server_port).or_default().push((
                                now,
                                c.started_unix_ms,
                                c.closed_unix_ms,
                            ));
                        } else if let Some(local) = &c.local {
                            a.by_port.entry(local.port as u16).or_default().push(now);
                        }
                    }
                }
                let ack = pb::ReportAck {
                    applied_seq: report.seq,
                    need_full: false,
                    error: String::new(),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_topology(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        Err(Status::unimplemented(
            "the benchmark sink only takes reports",
        ))
    }

    async fn node_series(
        &self,
        _request: Request<pb::NodeSeriesRequest>,
    ) -> Result<Response<pb::TopologyNode>, Status> {
        Err(Status::unimplemented(
            "the benchmark sink only takes reports",
        ))
    }
}
