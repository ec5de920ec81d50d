//! What the engine reports: per-pass results, previews, conflicts, status and lag figures.
use hdrhistogram::Histogram;

use crate::plan::Side;

/// One conflict: the path changed on both sides since they last agreed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Conflict {
    pub path: String,
    pub a: Option<String>,
    pub b: Option<String>,
    /// What settled it (`last-write-wins: b`, `source-wins: a`), or `held` under `Manual`.
    pub resolution: String,
    pub at_unix_ms: u64,
}

/// What one bootstrap or reconcile pass did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PassReport {
    pub nodes_a: usize,
    pub nodes_b: usize,
    pub written_to_a: usize,
    pub written_to_b: usize,
    pub conflicts: usize,
    pub errors: Vec<String>,
}

/// Writes a pass would make on one side.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
}

/// What a pass would do (`--dry-run`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Preview {
    pub nodes_a: usize,
    pub nodes_b: usize,
    pub to_a: OpCounts,
    pub to_b: OpCounts,
    /// Paths changed on both sides that the strategy would hold (manual).
    pub conflicts: Vec<String>,
}

impl Preview {
    pub(super) fn side_mut(&mut self, side: Side) -> &mut OpCounts {
        match side {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        }
    }
}

/// Replication figures since start.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub bootstrapped: bool,
    /// Znodes read by walks (bootstrap and re-scans) so far.
    pub walked: u64,
    pub replicated_a_to_b: u64,
    pub replicated_b_to_a: u64,
    pub conflicts: u64,
    pub conflicts_held: usize,
    pub errors: u64,
    pub queue_depth: usize,
    pub rescans: u64,
    /// A re-scan is reading (or reconciling) both trees now.
    pub rescanning: bool,
    /// How long the last completed re-scan took.
    pub last_rescan_ms: u64,
    /// Continuous validations done, diverged paths they found (all repaired by live rounds),
    /// and the last one's outcome.
    pub validations: u64,
    pub diverged_found: u64,
    pub last_validation: Option<super::Validation>,
    pub lag_a_to_b_ms: LagFigures,
    pub lag_b_to_a_ms: LagFigures,
    /// The part of the lag before the engine's write began (event delivery, reading both
    /// copies, deciding): the lag less the target's own write acknowledgement.
    #[serde(default)]
    pub added_a_to_b_ms: LagFigures,
    #[serde(default)]
    pub added_b_to_a_ms: LagFigures,
    /// The lag of the writes replicated recently (the configured `lag-window-s` to twice
    /// that): what the migration's gates judge, so a spike long past does not hold them.
    #[serde(default)]
    pub recent_lag_a_to_b_ms: LagFigures,
    #[serde(default)]
    pub recent_lag_b_to_a_ms: LagFigures,
    /// How long the live round now under way has taken so far (0: none): changes seen and
    /// not yet replicated have waited at least this long (a stalled ensemble shows here
    /// before any lag can be measured).
    #[serde(default)]
    pub stalled_ms: u64,
    /// Znodes whose ACL a side read with hidden digests (`digest user:x`: the sync's identity
    /// has no ADMIN on them there): never copied from that side, never reported equal.
    #[serde(default)]
    pub acl_hidden: usize,
    /// The first of them (up to 100), each with the side it was read on.
    #[serde(default)]
    pub acl_hidden_paths: Vec<String>,
    /// Copies refused for that reason so far.
    #[serde(default)]
    pub acl_refused: u64,
    /// What is done with such nodes (`acl-hidden`).
    #[serde(default)]
    pub acl_policy: crate::HiddenAclPolicy,
    /// Copies of such nodes written keeping the target's ACL (keep-target).
    #[serde(default)]
    pub acl_kept: u64,
    /// Such nodes created with `acl-fallback` where the target had none (keep-target).
    #[serde(default)]
    pub acl_fallback: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LagFigures {
    pub count: u64,
    /// The lags' sum: between two readings, the mean lag of the writes replicated meanwhile
    /// is the sum's growth over the count's.
    #[serde(default)]
    pub sum: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Lag of the writes replicated in the last window to two windows: two histograms, the
/// older dropped as each window ends.
pub(super) struct RecentLag {
    current: Lag,
    previous: Lag,
    since: std::time::Instant,
    window: std::time::Duration,
}

impl RecentLag {
    pub(super) fn new(window: std::time::Duration) -> Self {
        Self {
            current: Lag::new(),
            previous: Lag::new(),
            since: std::time::Instant::now(),
            window: window.max(std::time::Duration::from_millis(100)),
        }
    }

    fn rotate(&mut self) {
        let elapsed = self.since.elapsed();
        if elapsed < self.window {
            return;
        }
        if elapsed >= self.window * 2 {
            // Nothing recorded for a whole window: both are stale.
            self.previous = Lag::new();
        } else {
            self.previous = std::mem::replace(&mut self.current, Lag::new());
        }
        self.current = Lag::new();
        self.since = std::time::Instant::now();
    }

    pub(super) fn record_ms(&mut self, ms: f64) {
        self.rotate();
        self.current.record_ms(ms);
    }

    pub(super) fn figures(&mut self) -> LagFigures {
        self.rotate();
        let mut both = self.previous.0.clone();
        let _ = both.add(&self.current.0);
        Lag(both, self.previous.1 + self.current.1).figures()
    }
}

pub(super) struct Lag(Histogram<u64>, f64);

impl Lag {
    pub(super) fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            0.0,
        )
    }
    pub(super) fn record_ms(&mut self, ms: f64) {
        let _ = self.0.record((ms * 1000.0).max(1.0) as u64);
        self.1 += ms;
    }
    pub(super) fn figures(&self) -> LagFigures {
        let ms = |us: u64| us as f64 / 1000.0;
        LagFigures {
            count: self.0.len(),
            sum: self.1,
            p50: ms(self.0.value_at_quantile(0.5)),
            p99: ms(self.0.value_at_quantile(0.99)),
            max: ms(self.0.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RecentLag;

    #[test]
    fn recent_lag_forgets_what_is_older_than_two_windows() {
        let window = Duration::from_millis(100);
        let mut recent = RecentLag::new(window);
        recent.record_ms(5_000.0);
        assert_eq!(recent.figures().count, 1);
        assert!(recent.figures().p99 >= 4_990.0);
        // One window on: still within the figures (the previous half).
        std::thread::sleep(window + Duration::from_millis(10));
        recent.record_ms(2.0);
        let f = recent.figures();
        assert_eq!(f.count, 2);
        assert!((f.sum - 5_002.0).abs() < 1e-6, "{f:?}");
        // Another window: the spike is gone, the recent write stays.
        std::thread::sleep(window + Duration::from_millis(10));
        let f = recent.figures();
        assert_eq!(f.count, 1, "{f:?}");
        assert!(f.p99 < 10.0, "{f:?}");
        // Two quiet windows: nothing recent.
        std::thread::sleep(window * 2 + Duration::from_millis(10));
        assert_eq!(recent.figures().count, 0);
    }
}
