//! The migration report: the timeline, every gate with its measurements, sync figures,
//! conflicts and task counts, as Markdown (for people) and JSON (for tools).
use std::fmt::Write as _;

use orca_sync::engine::Status as SyncStatus;
use serde::Serialize;

use crate::state::{MigrationState, Status, phase_name};

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub migration: &'a MigrationState,
    /// The sync's figures when it runs (phases 1-5).
    pub sync: Option<SyncStatus>,
    /// How long each phase took (from its first to its last timeline entry), by phase.
    pub phase_ms: Vec<(u8, u64)>,
    /// Phases 2-4 together: the cutover.
    pub cutover_ms: Option<u64>,
}

impl<'a> Report<'a> {
    pub fn new(migration: &'a MigrationState, sync: Option<SyncStatus>) -> Self {
        let mut phase_ms = Vec::new();
        for phase in 1..=6u8 {
            let begun = migration
                .timeline
                .iter()
                .filter(|e| e.phase == phase && e.what.contains("begins"))
                .map(|e| e.at_unix_ms)
                .next_back();
            let done = migration
                .timeline
                .iter()
                .filter(|e| e.phase == phase && e.what.ends_with(") done"))
                .map(|e| e.at_unix_ms)
                .next_back();
            if let (Some(b), Some(d)) = (begun, done) {
                phase_ms.push((phase, d.saturating_sub(b)));
            }
        }
        let cutover_ms = [2u8, 3, 4]
            .iter()
            .map(|p| phase_ms.iter().find(|(q, _)| q == p).map(|(_, ms)| *ms))
            .sum::<Option<u64>>();
        Self {
            migration,
            sync,
            phase_ms,
            cutover_ms,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn markdown(&self) -> String {
        let m = self.migration;
        let mut out = String::new();
        let _ = writeln!(out, "# Migration {}\n", m.id);
        let _ = writeln!(
            out,
            "- from `{}` to `{}`, cluster path `{}`",
            m.config.sync.source_zk, m.config.sync.target_zk, m.config.cluster.path
        );
        let _ = writeln!(out, "- status: {}", describe_status(&m.status, m.completed));
        if let Some(ms) = self.cutover_ms {
            let _ = writeln!(out, "- cutover (phases 2-4): {:.1} s", ms as f64 / 1000.0);
        }
        let t = &m.tasks;
        let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "- running tasks: before {}, during {}..{}, after {}",
            n(t.before),
            n(t.min_during),
            n(t.max_during),
            n(t.after)
        );
        let _ = writeln!(out, "- task interruptions: {}", m.interruptions.len());
        for i in &m.interruptions {
            let _ = writeln!(out, "  - {i}");
        }
        if let Some(a) = &m.archive {
            let _ = writeln!(
                out,
                "- A's tree archived: {} znodes in `{}`, kept until {} (unix ms)",
                a.znodes,
                a.file.display(),
                a.keep_until_unix_ms
            );
        }
        if !self.phase_ms.is_empty() {
            let _ = writeln!(out, "\n## Phases\n\n| phase | took |\n|---|---|");
            for (p, ms) in &self.phase_ms {
                let _ = writeln!(out, "| {p}. {} | {ms} ms |", phase_name(*p));
            }
        }
        if let Some(s) = &self.sync {
            let _ = writeln!(out, "\n## Sync\n");
            let _ = writeln!(
                out,
                "- replicated A->B {}, B->A {}; conflicts {} ({} held); errors {}",
                s.replicated_a_to_b, s.replicated_b_to_a, s.conflicts, s.conflicts_held, s.errors
            );
            for (dir, l) in [("A->B", &s.lag_a_to_b_ms), ("B->A", &s.lag_b_to_a_ms)] {
                let _ = writeln!(
                    out,
                    "- lag {dir}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} writes",
                    l.p50, l.p99, l.max, l.count
                );
            }
        }
        let _ = writeln!(out, "\n## Gates\n");
        for g in &m.gates {
            let _ = writeln!(
                out,
                "### Phase {} {} — {} ({} ms)\n",
                g.phase,
                g.stage,
                if g.passed { "passed" } else { "FAILED" },
                g.took_ms
            );
            for c in &g.checks {
                let _ = writeln!(
                    out,
                    "- [{}] {}: {}",
                    if c.ok { "x" } else { " " },
                    c.name,
                    c.detail
                );
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "## Timeline\n\n| at (unix ms) | phase | event | took |\n|---|---|---|---|"
        );
        for e in &m.timeline {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                e.at_unix_ms,
                e.phase,
                e.what.replace('|', "\\|"),
                e.took_ms.map_or(String::new(), |ms| format!("{ms} ms"))
            );
        }
        out
    }
}

pub fn describe_status(status: &Status, completed: u8) -> String {
    match status {
        Status::Planned => "planned, not started".into(),
        Status::Running { phase } => format!("running phase {phase} ({})", phase_name(*phase)),
        Status::Waiting => format!(
            "phase {completed} ({}) done; waiting to advance to phase {}",
            phase_name(completed),
            completed + 1
        ),
        Status::Halted { phase, reason } => format!("HALTED in phase {phase}: {reason}"),
        Status::RollingBack { to, from } => {
            format!("rolling back to phase {to} (undoing phase {from})")
        }
        Status::Completed => "complete: B is independent".into(),
        Status::RolledBack => "rolled back: everything is on A".into(),
    }
}
