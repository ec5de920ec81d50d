//! Streams reports to the collector: a bounded queue of reports not yet acknowledged, sent in
//! order over one gRPC stream, resent after a reconnect (with exponential backoff), the oldest
//! dropped (and counted) only when the queue is full.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use orca_proto::topology::v1::{Report, collector_client::CollectorClient};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::metrics::AgentMetrics;

/// Reports waiting for the collector's acknowledgement.
#[derive(Debug)]
pub struct ReportQueue {
    inner: Mutex<QueueState>,
    capacity: usize,
    changed: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    reports: VecDeque<Report>,
    dropped: u64,
}

impl ReportQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(QueueState::default()),
            capacity: capacity.max(1),
            changed: Notify::new(),
        }
    }

    /// Queues a report; drops the oldest when full. Returns (queued, dropped in total).
    pub fn push(&self, report: Report) -> (usize, u64) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.reports.len() >= self.capacity {
            q.reports.pop_front();
            q.dropped += 1;
        }
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
            q.reports.pop_front();
            n += 1;
        }
        n
    }

    /// The report at `index` from the head, if any (cloned: it stays queued until acked).
    fn get(&self, index: usize) -> Option<Report> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.reports.get(index).cloned()
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

/// Sends queued reports to `master` for ever. `need_full` is signalled when the collector asks
/// for a full report.
pub async fn send_reports(
    master: String,
    queue: Arc<ReportQueue>,
    need_full: mpsc::Sender<()>,
    metrics: Arc<AgentMetrics>,
) {
    let endpoint = if master.contains("://") {
        master
    } else {
        format!("http://{master}")
    };
    let mut backoff = Backoff::default();
    loop {
        match stream_once(&endpoint, &queue, &need_full, &metrics, &mut backoff).await {
            Ok(()) => tracing::info!("collector closed the report stream; reconnecting"),
            Err(err) => tracing::warn!(
                collector = %endpoint,
                "collector unreachable ({err}); still collecting, {} reports buffered",
                queue.len()
            ),
        }
        metrics.collector_connected.set(0);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn stream_once(
    endpoint: &str,
    queue: &ReportQueue,
    need_full: &mpsc::Sender<()>,
    metrics: &AgentMetrics,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    let mut client = CollectorClient::connect(endpoint.to_string())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Report>(16);
    let mut acks = client
        .stream_reports(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tracing::info!(collector = %endpoint, "streaming reports");
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
        let q = ReportQueue::new(3);
        for seq in 1..=5 {
            q.push(report(seq));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.get(0).unwrap().seq, 3, "oldest dropped first");
        assert_eq!(q.push(report(6)), (3, 3));
        assert_eq!(q.ack(5), 2);
        assert_eq!(q.get(0).unwrap().seq, 6);
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
