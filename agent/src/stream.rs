//! Streams reports to the collector: a bounded queue of reports not yet acknowledged, sent in
//! order over one gRPC stream, resent after a reconnect (with exponential backoff), the oldest
//! dropped (and counted) only when the queue is full.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut as _, Bytes};
use orca_proto::topology::v1::{Report, ReportAck};
use prost::Message as _;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::metrics::AgentMetrics;

/// A report kept encoded: a quarter of its in-memory size, and sent without a copy.
#[derive(Debug, Clone)]
struct Encoded {
    seq: u64,
    bytes: Bytes,
}

/// Reports waiting for the collector's acknowledgement, bounded in count and in bytes.
#[derive(Debug)]
pub struct ReportQueue {
    inner: Mutex<QueueState>,
    capacity: usize,
    max_bytes: usize,
    changed: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    reports: VecDeque<Encoded>,
    bytes: usize,
    dropped: u64,
}

impl ReportQueue {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(QueueState::default()),
            capacity: capacity.max(1),
            max_bytes,
            changed: Notify::new(),
        }
    }

    /// Queues a report; drops the oldest when full. Returns (queued, dropped in total).
    pub fn push(&self, report: Report) -> (usize, u64) {
        self.push_with(report, &[])
    }

    /// Queues a report followed by `connections`, more of its `connections` entries already
    /// encoded (repeated fields of a message may come in any number of pieces).
    pub fn push_with(&self, report: Report, connections: &[u8]) -> (usize, u64) {
        let mut bytes = Vec::with_capacity(report.encoded_len() + connections.len());
        report
            .encode(&mut bytes)
            .expect("a Vec grows to hold what it is given");
        bytes.extend_from_slice(connections);
        let report = Encoded {
            seq: report.seq,
            bytes: bytes.into(),
        };
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while !q.reports.is_empty()
            && (q.reports.len() >= self.capacity || q.bytes + report.bytes.len() > self.max_bytes)
        {
            if let Some(old) = q.reports.pop_front() {
                q.bytes -= old.bytes.len();
            }
            q.dropped += 1;
        }
        q.bytes += report.bytes.len();
        q.reports.push_back(report);
        let out = (q.reports.len(), q.dropped);
        drop(q);
        self.changed.notify_one();
        out
    }

    /// Forgets every report up to and including `seq`. Returns how many.
    fn ack(&self, seq: u64) -> usize {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while q.reports.front().is_some_and(|r| r.seq <= seq) {
            if let Some(old) = q.reports.pop_front() {
                q.bytes -= old.bytes.len();
            }
            n += 1;
        }
        n
    }

    /// The encoded report at `index` from the head, if any (it stays queued until acked).
    fn get(&self, index: usize) -> Option<Bytes> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.reports.get(index).map(|r| r.bytes.clone())
    }

    #[cfg(test)]
    fn seq_at(&self, index: usize) -> Option<u64> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.reports.get(index).map(|r| r.seq)
    }

    fn has(&self, index: usize) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reports
            .len()
            > index
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reports
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Exponential backoff between reconnects: 100 ms doubling to 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        d
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Sends queued reports to the master for ever (the leader, when `master` follows one in
/// ZooKeeper: a new leader gets the stream at once). `need_full` is signalled when the
/// collector asks for a full report.
pub async fn send_reports(
    masters: crate::master_switch::MasterSwitch,
    queue: Arc<ReportQueue>,
    need_full: mpsc::Sender<()>,
    metrics: Arc<AgentMetrics>,
) {
    let mut backoff = Backoff::default();
    let mut switches = masters.follow();
    loop {
        let mut master = switches.current().locator;
        let endpoint = tokio::select! {
            endpoint = master.grpc_endpoint(Duration::from_secs(5)) => endpoint,
            () = switches.switched() => continue,
        };
        let Some(endpoint) = endpoint else {
            tracing::warn!(master = %master.describe(), "no leading master known; still collecting, {} reports buffered", queue.len());
            continue;
        };
        master.mark_seen();
        let mut followed = master.clone();
        tokio::select! {
            result = stream_once(&masters, &endpoint, &queue, &need_full, &metrics, &mut backoff) => match result {
                Ok(()) => tracing::info!("collector closed the report stream; reconnecting"),
                Err(err) => tracing::warn!(
                    collector = %endpoint,
                    "collector unreachable ({}); still collecting, {} reports buffered",
                    orca_auth::tls::explain_status(&err),
                    queue.len()
                ),
            },
            () = followed.changed() => {
                tracing::info!(master = %master.describe(), "the leading master changed; streaming reports to it");
                backoff.reset();
            }
            () = switches.switched() => {
                tracing::info!("switched to another master; streaming reports to it");
                metrics.collector_connected.set(0);
                backoff.reset();
                continue;
            }
        }
        metrics.collector_connected.set(0);
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            () = master.changed() => backoff.reset(),
            () = switches.switched() => backoff.reset(),
        }
    }
}

async fn stream_once(
    masters: &crate::master_switch::MasterSwitch,
    endpoint: &str,
    queue: &ReportQueue,
    need_full: &mpsc::Sender<()>,
    metrics: &AgentMetrics,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    let target = masters
        .endpoint(endpoint)
        .map_err(|e| tonic::Status::invalid_argument(format!("collector: {e}")))?;
    let collector = target.uri().clone();
    let channel = target
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(orca_auth::tls::explain(&e)))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/orca.topology.v1.Collector/StreamReports",
    );
    let mut acks = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            EncodedReportCodec,
        )
        .await?
        .into_inner();
    tracing::info!(%collector, "streaming reports");
    metrics.collector_connected.set(1);
    backoff.reset();
    // Reports from the head of the queue already written to this stream.
    let mut in_flight = 0usize;
    loop {
        let pending = queue.has(in_flight);
        tokio::select! {
            ack = acks.message() => {
                let Some(ack) = ack? else { return Ok(()) };
                let done = queue.ack(ack.applied_seq);
                in_flight = in_flight.saturating_sub(done);
                metrics.reports_sent.inc_by(done as u64);
                metrics.reports_buffered.set(queue.len() as i64);
                if !ack.error.is_empty() {
                    tracing::warn!(error = %ack.error, "collector rejected a report");
                }
                if ack.need_full {
                    let _ = need_full.try_send(());
                }
            }
            permit = tx.reserve(), if pending => {
                let Ok(permit) = permit else { return Ok(()) };
                if let Some(report) = queue.get(in_flight) {
                    permit.send(report);
                    in_flight += 1;
                }
            }
            _ = queue.changed.notified(), if !pending => {}
        }
    }
}

/// Sends reports already encoded as `orca.topology.v1.Report` and decodes the acks: the
/// `StreamReports` call without re-encoding what the queue holds.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedReportCodec;

impl Codec for EncodedReportCodec {
    type Encode = Bytes;
    type Decode = ReportAck;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

impl Encoder for EncodedReportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedReportCodec {
    type Item = ReportAck;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ReportAck>, Self::Error> {
        ReportAck::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable ack: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64) -> Report {
        Report {
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn queue_bounds_and_acks() {
        let q = ReportQueue::new(3, usize::MAX);
        for seq in 1..=5 {
            q.push(report(seq));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.seq_at(0), Some(3), "oldest dropped first");
        assert_eq!(q.push(report(6)), (3, 3));
        assert_eq!(q.ack(5), 2);
        assert_eq!(q.seq_at(0), Some(6));
        let decoded = Report::decode(q.get(0).unwrap()).unwrap();
        assert_eq!(decoded.seq, 6);
    }

    #[test]
    fn queue_is_bounded_in_bytes() {
        let big = |seq| Report {
            seq,
            agent_id: "x".repeat(1000),
            ..Default::default()
        };
        let one = big(1).encoded_len();
        let q = ReportQueue::new(100, one * 2);
        for seq in 1..=4 {
            q.push(big(seq));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.seq_at(0), Some(3));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
