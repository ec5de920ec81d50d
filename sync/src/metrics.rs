//! The sync engine's Prometheus metrics (prefix `orca_sync`).
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::plan::Side;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `a_to_b` or `b_to_a`.
    pub direction: &'static str,
}

impl DirectionLabel {
    /// The direction of a copy from `from` to the other side.
    pub fn from(from: Side) -> Self {
        Self {
            direction: match from {
                Side::A => "a_to_b",
                Side::B => "b_to_a",
            },
        }
    }
}

#[derive(Debug)]
pub struct SyncMetrics {
    registry: Registry,
    pub replicated: Family<DirectionLabel, Counter>,
    pub lag_seconds: Family<DirectionLabel, Histogram>,
    pub conflicts: Counter,
    pub errors: Counter,
    pub rescans: Counter,
    pub session_renewals: Counter,
    pub queue_depth: Gauge,
    pub conflicts_held: Gauge,
    pub bootstrapped: Gauge,
    pub validations: Counter,
    pub diverged: Counter,
    pub validation_diverged: Gauge,
    pub validation_in_flight: Gauge,
    pub validation_timestamp: Gauge,
    pub acl_hidden: Gauge,
    pub acl_refused: Counter,
    pub acl_kept: Counter,
    pub acl_fallback: Counter,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("orca_sync");
        let replicated = Family::<DirectionLabel, Counter>::default();
        let lag_seconds = Family::<DirectionLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ])
        });
        let conflicts = Counter::default();
        let errors = Counter::default();
        let rescans = Counter::default();
        let session_renewals = Counter::default();
        let queue_depth = Gauge::default();
        let conflicts_held = Gauge::default();
        let bootstrapped = Gauge::default();
        let validations = Counter::default();
        let diverged = Counter::default();
        let validation_diverged = Gauge::default();
        let validation_in_flight = Gauge::default();
        let validation_timestamp = Gauge::default();
        let acl_hidden = Gauge::default();
        let acl_refused = Counter::default();
        let acl_kept = Counter::default();
        let acl_fallback = Counter::default();
        registry.register(
            "replicated",
            "Znode changes written to the other ensemble, by direction",
            replicated.clone(),
        );
        registry.register(
            "lag_seconds",
            "From a write on one ensemble (its server mtime) to the copy acknowledged by the other",
            lag_seconds.clone(),
        );
        registry.register(
            "conflicts",
            "Paths changed on both ensembles since they last agreed",
            conflicts.clone(),
        );
        registry.register("errors", "Writes that failed for good", errors.clone());
        registry.register("rescans", "Full re-reads of both trees", rescans.clone());
        registry.register(
            "session_renewals",
            "New sessions opened after one expired (a partition longer than the session timeout)",
            session_renewals.clone(),
        );
        registry.register(
            "queue_depth",
            "Changed paths waiting for the next round",
            queue_depth.clone(),
        );
        registry.register(
            "conflicts_held",
            "Conflicts waiting for an operator (strategy manual)",
            conflicts_held.clone(),
        );
        registry.register(
            "bootstrapped",
            "1 once the initial copy is complete",
            bootstrapped.clone(),
        );
        registry.register(
            "validations",
            "Continuous validations done (both trees compared)",
            validations.clone(),
        );
        registry.register(
            "diverged",
            "Paths validations found different that replication had missed (each repaired)",
            diverged.clone(),
        );
        registry.register(
            "validation_diverged_paths",
            "Paths the last validation found different that replication had missed",
            validation_diverged.clone(),
        );
        registry.register(
            "validation_in_flight_paths",
            "Paths the last validation found different while a change was on its way",
            validation_in_flight.clone(),
        );
        registry.register(
            "validation_timestamp_seconds",
            "When the last validation started (Unix time)",
            validation_timestamp.clone(),
        );
        registry.register(
            "acl_hidden_nodes",
            "Znodes whose ACL the sync's identity reads with hidden digests (digest user:x, no \
             ADMIN): never copied from that side, never reported equal",
            acl_hidden.clone(),
        );
        registry.register(
            "acl_refused",
            "Copies refused because the source's ACL was read with hidden digests",
            acl_refused.clone(),
        );
        registry.register(
            "acl_kept",
            "Copies of a node whose ACL a side reads with hidden digests written with the ACL \
             the target has kept (acl-hidden: keep-target)",
            acl_kept.clone(),
        );
        registry.register(
            "acl_fallback",
            "Nodes whose ACL a side reads with hidden digests created on the other side with \
             acl-fallback (acl-hidden: keep-target)",
            acl_fallback.clone(),
        );
        // Both directions exist from the start (at zero), so dashboards see them.
        for side in [Side::A, Side::B] {
            let _ = replicated.get_or_create(&DirectionLabel::from(side));
            let _ = lag_seconds.get_or_create(&DirectionLabel::from(side));
        }
        Self {
            registry,
            replicated,
            lag_seconds,
            conflicts,
            errors,
            rescans,
            session_renewals,
            queue_depth,
            conflicts_held,
            bootstrapped,
            validations,
            diverged,
            validation_diverged,
            validation_in_flight,
            validation_timestamp,
            acl_hidden,
            acl_refused,
            acl_kept,
            acl_fallback,
        }
    }
}

impl SyncMetrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
