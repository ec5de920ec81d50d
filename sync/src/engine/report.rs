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
