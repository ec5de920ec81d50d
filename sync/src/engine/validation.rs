//! Continuous validation: right after the initial copy (or the reconciliation of a restart)
//! and then every `validate-interval-s`, both trees are read and compared by digest while
//! replication goes on. A difference there may only be a change on its way, so
//! every differing path gets a second look once the live rounds have settled every watch
//! event that had arrived by the end of the first look (ZooKeeper delivers a change's event
//! before the read that sees it): still different and unchanged on both sides means
//! replication missed it (a lost watch event, ZOOKEEPER-4698). Such paths are reported
//! (status, metrics, log) and handed to a live round, which repairs them.
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{SyncEngine, SyncError, live::Signal, now_ms};
use crate::{
    digest,
    plan::Decision,
    znode::{Meta, Znode},
};

/// How long the second look waits for the live rounds to settle the events that had arrived;
/// a backlog longer than this leaves the differences counted as in flight.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// Diverged paths kept in the status (all of them go to the repair and the log's count).
const DIVERGED_SHOWN: usize = 100;

/// One validation's outcome.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    pub at_unix_ms: u64,
    pub took_ms: u64,
    pub nodes_a: usize,
    pub nodes_b: usize,
    /// Paths that differed and still differed, unchanged on both sides, after the live
    /// rounds had settled everything that had arrived: replication missed them.
    pub diverged: usize,
    /// The first of them (up to 100).
    pub diverged_paths: Vec<String>,
    /// Paths that differed while a change was on its way (equal at the second look, or
    /// changed since the first).
    pub in_flight: usize,
    /// Conflicts held for an operator (strategy `manual`): different on purpose.
    pub held: usize,
    /// Nodes whose ACL a side read with hidden digests: they cannot be compared, and count
    /// against "in sync" until the sync's identity can read them (ADMIN).
    #[serde(default)]
    pub acl_hidden: usize,
}

impl Validation {
    /// Nothing replication missed and nothing that could not be compared.
    pub fn in_sync(&self) -> bool {
        self.diverged == 0 && self.acl_hidden == 0
    }
}

/// Whether a node is still the copy first seen (same incarnation, data and ACL versions), or
/// still absent.
fn unchanged(first: Option<&Znode>, now: Option<&Znode>) -> bool {
    let versions = |m: &Meta| (m.czxid, m.mzxid, m.aversion);
    match (first, now) {
        (None, None) => true,
        (Some(x), Some(y)) => versions(&x.meta) == versions(&y.meta),
        _ => false,
    }
}

impl SyncEngine {
    /// Reads both trees, compares them, and looks again at each difference once the live
    /// rounds have settled what had arrived. Returns every diverged path.
    pub async fn check(&self) -> Result<(Validation, Vec<String>), SyncError> {
        let started = Instant::now();
        let at_unix_ms = now_ms();
        let (a, b) = self.read_both().await?;
        let mut validation = Validation {
            at_unix_ms,
            nodes_a: a.len(),
            nodes_b: b.len(),
            ..Validation::default()
        };
        let mut suspects = Vec::new();
        {
            let state = self.state.lock().unwrap();
            let differences = digest::diff(&a, &b);
            // Their ACLs cannot be compared: neither replication's miss nor a change on its
            // way. What can be compared (data, presence) still is.
            let hidden: std::collections::BTreeSet<&str> = differences
                .iter()
                .filter(|d| matches!(d, digest::Difference::AclHidden { .. }))
                .map(|d| d.path())
                .collect();
            validation.acl_hidden = hidden.len();
            let mut looked_at = std::collections::BTreeSet::new();
            for difference in &differences {
                let path = difference.path();
                if matches!(
                    difference,
                    digest::Difference::AclHidden { .. } | digest::Difference::Acl { .. }
                ) && hidden.contains(path)
                    || !looked_at.insert(path)
                {
                    continue;
                }
                if state.held.contains_key(path) {
                    validation.held += 1;
                    continue;
                }
                let (decision, _) = self.judge(&state.base, path, a.get(path), b.get(path), false);
                // Not replicated by policy (an ephemeral node under `skip`).
                if decision != Decision::Ignore {
                    suspects.push(path.to_string());
                }
            }
        }
        let mut diverged = Vec::new();
        if !suspects.is_empty() {
            // Every event delivered before the reads' replies has been numbered by now (its
            // watcher task had the whole diff to run); a later mark only waits for more.
            tokio::task::yield_now().await;
            let arrived = self.events.arrived.load(Ordering::Acquire);
            let deadline = Instant::now() + SETTLE_DEADLINE;
            while self.events.settled.load(Ordering::Acquire) < arrived {
                if Instant::now() > deadline {
                    tracing::warn!(
                        "validation: replication is more than {SETTLE_DEADLINE:?} behind; {} \
                         differences counted as in flight",
                        suspects.len()
                    );
                    validation.in_flight = suspects.len();
                    suspects.clear();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for (path, now_a, now_b) in self.read_paths(&suspects).await? {
                let equal = match (&now_a, &now_b) {
                    (Some(x), Some(y)) if x.acl_hidden() || y.acl_hidden() => {
                        x.data_hash() == y.data_hash()
                    }
                    (Some(x), Some(y)) => x.content_hash() == y.content_hash(),
                    (None, None) => true,
                    _ => false,
                };
                if !equal
                    && unchanged(a.get(&path), now_a.as_ref())
                    && unchanged(b.get(&path), now_b.as_ref())
                {
                    diverged.push(path);
                } else {
                    validation.in_flight += 1;
                }
            }
        }
        validation.diverged = diverged.len();
        validation.diverged_paths = diverged.iter().take(DIVERGED_SHOWN).cloned().collect();
        validation.took_ms = started.elapsed().as_millis() as u64;
        Ok((validation, diverged))
    }

    /// Validates at once (the run has just copied or reconciled both trees: this is the proof
    /// it did) and then every `validate-interval-s` until dropped, reports each outcome and
    /// hands diverged paths to the live rounds. Skipped while a re-scan runs (it reads both
    /// trees and settles what differs anyway); a failed validation is logged and tried at the
    /// next interval.
    pub(super) async fn validate_continuously(
        self: Arc<Self>,
        repair: mpsc::UnboundedSender<Signal>,
    ) {
        let every = Duration::from_secs(self.cfg.validate_interval_s);
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            if self.state.lock().unwrap().status.rescanning {
                continue;
            }
            match self.check().await {
                Ok((validation, diverged)) => {
                    if diverged.is_empty() {
                        tracing::debug!(?validation, "validation: in sync");
                    } else {
                        tracing::warn!(
                            "validation: {} paths differ that replication missed ({} among \
                             them); repairing",
                            diverged.len(),
                            diverged[0]
                        );
                    }
                    self.record_validation(validation);
                    if !diverged.is_empty() && repair.send(Signal::Repair(diverged)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("validation failed: {e}; next in {every:?}"),
            }
        }
    }

    fn record_validation(&self, validation: Validation) {
        self.metrics.validations.inc();
        self.metrics.diverged.inc_by(validation.diverged as u64);
        self.metrics
            .validation_diverged
            .set(validation.diverged as i64);
        self.metrics
            .validation_in_flight
            .set(validation.in_flight as i64);
        self.metrics
            .validation_timestamp
            .set((validation.at_unix_ms / 1000) as i64);
        let mut state = self.state.lock().unwrap();
        state.status.validations += 1;
        state.status.diverged_found += validation.diverged as u64;
        state.status.last_validation = Some(validation);
    }
}
