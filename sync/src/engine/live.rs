//! Live replication: watch events from both sides, gathered into rounds; a re-scan after
//! every reconnect and on a timer, running beside the live rounds (which do not wait for it);
//! continuous validation beside both; transient failures retried with backoff.
use std::{
    collections::BTreeSet,
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;
use zookeeper_client::{AddWatchMode, Error as ZkError, EventType, SessionState};

use super::{PassReport, SyncEngine, SyncError};
use crate::{
    plan::Side,
    znode::{child_path, parent},
};

pub(super) enum Signal {
    /// A watch event, numbered in the order events arrived (both sides together).
    Changed(Side, String, u64),
    /// Paths a validation found different and missed by replication.
    Repair(Vec<String>),
    /// A session reconnected: events may have been lost.
    Rescan(Side),
    /// A session ended for good (expired, closed, auth failed).
    SessionLost(Side, SessionState),
}

/// Waits between retries after a transient failure: 100 ms doubling to 5 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self) {
        let ms = (100u64 << self.0.min(6)).min(5_000);
        self.0 += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

impl SyncEngine {
    /// Replicates live until `shutdown` completes. Bootstraps first if that has not been done.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) -> Result<(), SyncError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Watches first, so nothing written during the bootstrap is missed.
        for side in [Side::A, Side::B] {
            self.watch(side, tx.clone()).await?;
        }
        self.watching
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.state.lock().unwrap().base.bootstrapped() {
            // A restart with durable state: merge what changed on either side meanwhile.
            let report = self.reconcile().await?;
            tracing::info!(?report, "resumed from saved state");
        } else {
            let report = self.bootstrap().await?;
            tracing::info!(?report, "bootstrap done");
        }
        // Validations run beside everything else; dropping the set stops them with `run`.
        let mut validations = tokio::task::JoinSet::new();
        if self.cfg.validate_interval_s > 0 {
            validations.spawn(self.clone().validate_continuously(tx.clone()));
        }
        let mut rescan_timer =
            tokio::time::interval(Duration::from_secs(self.cfg.rescan_interval_s));
        rescan_timer.tick().await;
        tokio::pin!(shutdown);
        let mut pending: BTreeSet<String> = BTreeSet::new();
        // The number of the last watch event taken in.
        let mut absorbed = 0u64;
        let mut rescan = false;
        // The re-scan in progress, if any; dropping the set aborts it, so it ends with `run`
        // however `run` returns.
        let mut scan: tokio::task::JoinSet<Result<PassReport, SyncError>> =
            tokio::task::JoinSet::new();
        let mut scan_backoff = Backoff::default();
        // Sides whose session expired, waiting for a new one.
        let mut lost: Vec<Side> = Vec::new();
        let mut backoff = Backoff::default();
        loop {
            if let Some(&side) = lost.first() {
                if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                    return Ok(());
                }
                match self.renew(side, &tx).await {
                    Ok(()) => {
                        lost.remove(0);
                        rescan = true;
                        backoff.reset();
                    }
                    Err(e) if e.is_transient() || matches!(e, SyncError::Unreachable { .. }) => {
                        tracing::warn!(
                            "a new session with ensemble {}: {e}; retrying",
                            side.name()
                        );
                        backoff.wait().await;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if rescan && scan.is_empty() {
                {
                    let mut state = self.state.lock().unwrap();
                    // Events lost across a reconnect would leave echoes waiting forever.
                    state.echoes.clear();
                    // From here on (no live round is in flight), the paths live rounds take
                    // up are left to them by the re-scan.
                    state.live_during_scan = Some(BTreeSet::new());
                }
                let engine = self.clone();
                scan.spawn(async move { engine.reconcile().await });
                rescan = false;
            }
            if pending.is_empty() {
                let scanning = !scan.is_empty();
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = rescan_timer.tick() => rescan = true,
                    signal = rx.recv() => match signal {
                        None => return Ok(()),
                        Some(s) => {
                            self.absorb(s, &mut pending, &mut absorbed, &mut rescan, &mut lost)?
                        }
                    },
                    Some(finished) = scan.join_next(), if scanning => {
                        self.scan_finished(finished, &mut rescan, &mut scan_backoff).await?;
                    }
                }
            } else if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                return Ok(());
            }
            if let Some(finished) = scan.try_join_next() {
                self.scan_finished(finished, &mut rescan, &mut scan_backoff)
                    .await?;
            }
            // Take everything already queued: one round settles them together.
            while let Ok(s) = rx.try_recv() {
                self.absorb(s, &mut pending, &mut absorbed, &mut rescan, &mut lost)?;
            }
            if pending.is_empty() {
                // Only echoes of the engine's own writes arrived.
                self.events.settled.store(absorbed, Ordering::Release);
                continue;
            }
            {
                let mut state = self.state.lock().unwrap();
                state.status.queue_depth = pending.len();
                // A round that failed and waits to try again keeps its start.
                state
                    .round_since
                    .get_or_insert_with(std::time::Instant::now);
            }
            self.metrics.queue_depth.set(pending.len() as i64);
            let paths: Vec<String> = std::mem::take(&mut pending).into_iter().collect();
            if let Some(taken) = &mut self.state.lock().unwrap().live_during_scan {
                taken.extend(paths.iter().cloned());
            }
            let started = std::time::Instant::now();
            let copies = match self.read_paths(&paths).await {
                Ok(copies) => copies,
                Err(e) if e.is_transient() || e.is_session_expired() => {
                    // Nothing is lost: the paths wait, and a re-scan follows the reconnect
                    // (or the new session, when this one expired).
                    tracing::warn!("reading changed paths failed, retrying: {e}");
                    pending.extend(paths);
                    rescan = true;
                    backoff.wait().await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff.reset();
            let read = started.elapsed();
            let round = self.settle(copies, false, true).await;
            for e in &round.errors {
                tracing::warn!("{e}");
            }
            tracing::debug!(
                paths = paths.len(),
                read_ms = read.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                retry = round.retry.len(),
                "round"
            );
            self.requeue(round.retry, &mut pending).await?;
            self.state.lock().unwrap().round_since = None;
            self.events.settled.store(absorbed, Ordering::Release);
        }
    }

    /// Drops the next watch event for `path` on `side`, as if ZooKeeper had lost it
    /// (ZOOKEEPER-4698; a real ensemble cannot be made to lose one on demand): for tests of
    /// what finds and repairs what such a loss leaves behind.
    #[cfg(any(test, feature = "test-util"))]
    pub fn lose_next_event(&self, side: Side, path: &str) {
        *self
            .state
            .lock()
            .unwrap()
            .echoes
            .entry((side, path.to_string()))
            .or_default() += 1;
    }

    /// Takes in a finished re-scan: logged when done; after a transient failure (or an expired
    /// session, which its watcher announces) another is asked for after a backoff.
    async fn scan_finished(
        &self,
        finished: Result<Result<PassReport, SyncError>, tokio::task::JoinError>,
        rescan: &mut bool,
        backoff: &mut Backoff,
    ) -> Result<(), SyncError> {
        self.state.lock().unwrap().live_during_scan = None;
        match finished {
            Ok(Ok(report)) => {
                tracing::info!(?report, "re-scan");
                backoff.reset();
            }
            Ok(Err(e)) if e.is_transient() || e.is_session_expired() => {
                tracing::warn!("re-scan failed, retrying: {e}");
                backoff.wait().await;
                *rescan = true;
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(SyncError::Rescan(e)),
        }
        Ok(())
    }

    /// Adds the persistent recursive watch on `side` and forwards its events as signals
    /// until the session ends.
    async fn watch(&self, side: Side, tx: mpsc::UnboundedSender<Signal>) -> Result<(), SyncError> {
        let client = self.client(side);
        let root = self.cfg.root.clone();
        let events = self.events.clone();
        let mut watcher = client
            .watch(&root, AddWatchMode::PersistentRecursive)
            .await
            .map_err(|source| SyncError::Zk {
                side: side.name(),
                source,
            })?;
        tokio::spawn(async move {
            let mut disconnected = false;
            loop {
                // `run` ended: the watch and its session clone go with it (an embedding
                // process, like the migration, must leave no session behind).
                let event = tokio::select! {
                    event = watcher.changed() => event,
                    () = tx.closed() => return,
                };
                let signal = match event.event_type {
                    EventType::Session => match event.session_state {
                        SessionState::Disconnected => {
                            disconnected = true;
                            continue;
                        }
                        SessionState::SyncConnected if disconnected => {
                            disconnected = false;
                            // The watch is re-added by hand: after some reconnects the
                            // client's own re-registration delivered no further events.
                            // The new watch is in place before the old one goes, and the
                            // re-scan that follows covers the moment in between.
                            match client.watch(&root, AddWatchMode::PersistentRecursive).await {
                                Ok(fresh) => watcher = fresh,
                                Err(e) => tracing::warn!(
                                    "re-adding the watch on {}: {e}; the re-scan timer still \
                                     covers this side",
                                    side.name()
                                ),
                            }
                            Signal::Rescan(side)
                        }
                        state if state.is_terminated() => {
                            let _ = tx.send(Signal::SessionLost(side, state));
                            return;
                        }
                        _ => continue,
                    },
                    _ => {
                        let number = events.arrived.fetch_add(1, Ordering::AcqRel) + 1;
                        Signal::Changed(side, event.path, number)
                    }
                };
                if tx.send(signal).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// A new session with `side` after the old one expired, and its watch.
    async fn renew(&self, side: Side, tx: &mpsc::UnboundedSender<Signal>) -> Result<(), SyncError> {
        self.reconnect(side).await?;
        self.watch(side, tx.clone()).await?;
        self.metrics.session_renewals.inc();
        tracing::info!("new session with ensemble {}", side.name());
        Ok(())
    }

    fn absorb(
        &self,
        signal: Signal,
        pending: &mut BTreeSet<String>,
        absorbed: &mut u64,
        rescan: &mut bool,
        lost: &mut Vec<Side>,
    ) -> Result<(), SyncError> {
        match signal {
            Signal::Changed(side, path, number) => {
                *absorbed = number.max(*absorbed);
                let mut state = self.state.lock().unwrap();
                let key = (side, path);
                if let Some(n) = state.echoes.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        state.echoes.remove(&key);
                    }
                    return Ok(());
                }
                if self.cfg.includes(&key.1) {
                    pending.insert(key.1);
                }
            }
            Signal::Repair(paths) => {
                pending.extend(paths.into_iter().filter(|p| self.cfg.includes(p)));
            }
            Signal::Rescan(side) => {
                tracing::info!("ensemble {} reconnected: re-scanning", side.name());
                *rescan = true;
            }
            Signal::SessionLost(side, SessionState::Expired) => {
                tracing::warn!(
                    "the session with ensemble {} expired: opening a new one, then re-scanning",
                    side.name()
                );
                if !lost.contains(&side) {
                    lost.push(side);
                }
            }
            Signal::SessionLost(side, state) => {
                return Err(SyncError::Zk {
                    side: side.name(),
                    source: ZkError::UnexpectedError(format!("session ended: {state:?}")),
                });
            }
        }
        Ok(())
    }

    /// Paths that could not be written yet: a create whose parent is missing brings the parent
    /// in; a delete blocked by children brings the children in.
    async fn requeue(
        &self,
        retry: Vec<String>,
        pending: &mut BTreeSet<String>,
    ) -> Result<(), SyncError> {
        for path in retry {
            let p = parent(&path).to_string();
            if p != path && self.cfg.includes(&p) {
                pending.insert(p);
            }
            for side in [Side::A, Side::B] {
                if let Ok(children) = self.client(side).list_children(&path).await {
                    pending.extend(children.iter().map(|c| child_path(&path, c)));
                }
            }
            pending.insert(path);
        }
        Ok(())
    }
}
