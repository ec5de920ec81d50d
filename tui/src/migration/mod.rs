//! The Migration view's state: the migration the service at `--migration` runs (its phases,
//! gates and timeline), what it sees of both ensembles, the sync's lag and throughput over
//! the last minutes, and the conflicts the sync holds. `poll` keeps it current; the keys here
//! ask for advance, rollback and resolve, each after a confirmation.
pub mod poll;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use orca_migrate::{MigrationState, Status, overview::Overview, state::phase_name};

/// Samples kept for the sparklines (one per poll, a second apart: five minutes).
pub const HISTORY: usize = 300;

/// What the view asks the service to do.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationCommand {
    Advance {
        id: String,
    },
    /// Undo phases down to `to` (0: all of them).
    Rollback {
        id: String,
        to: u8,
    },
    /// Settle a held conflict with `winner`'s copy (`a` or `b`).
    Resolve {
        path: String,
        winner: char,
    },
}

/// One poll's answer: the migration's state and, while this service runs it, the overview.
#[derive(Debug, Clone)]
pub struct Polled {
    pub state: MigrationState,
    pub overview: Option<Overview>,
    /// Why there is no overview (the migration is not running in that service, …).
    pub overview_error: Option<String>,
}

#[derive(Debug)]
pub struct MigrationView {
    /// The service's `host:port`.
    pub api: String,
    pub state: Option<MigrationState>,
    pub overview: Option<Overview>,
    /// What the last poll could not get, in words.
    pub problem: Option<String>,
    pub updated: Option<Instant>,
    /// Mean replication lag (µs) of the writes replicated between two polls, both ways.
    pub lag_us: VecDeque<u64>,
    /// Writes replicated per second, both ways.
    pub throughput: VecDeque<u64>,
    last: Option<Sample>,
    /// The selected held conflict.
    pub conflict: usize,
}

/// The sync's cumulative figures at one poll.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    count: u64,
    sum_ms: f64,
    replicated: u64,
}

fn push(series: &mut VecDeque<u64>, value: u64) {
    if series.len() == HISTORY {
        series.pop_front();
    }
    series.push_back(value);
}

impl MigrationView {
    pub fn new(api: impl Into<String>) -> Self {
        Self {
            api: api.into(),
            state: None,
            overview: None,
            problem: None,
            updated: None,
            lag_us: VecDeque::with_capacity(HISTORY),
            throughput: VecDeque::with_capacity(HISTORY),
            last: None,
            conflict: 0,
        }
    }

    /// A poll's outcome.
    pub fn apply(&mut self, polled: Result<Polled, String>, at: Instant) {
        let polled = match polled {
            Ok(p) => p,
            Err(why) => {
                self.problem = Some(why);
                return;
            }
        };
        self.problem = polled.overview_error;
        if let Some(sync) = polled.overview.as_ref().and_then(|o| o.sync.as_ref()) {
            let (ab, ba) = (&sync.lag_a_to_b_ms, &sync.lag_b_to_a_ms);
            let now = Sample {
                at,
                count: ab.count + ba.count,
                sum_ms: ab.sum + ba.sum,
                replicated: sync.replicated_a_to_b + sync.replicated_b_to_a,
            };
            // A restarted sync starts its figures again: no point from across the restart.
            if let Some(before) = self.last.filter(|b| b.count <= now.count)
                && let Some(secs) =
                    Some(now.at.duration_since(before.at).as_secs_f64()).filter(|s| *s > 0.0)
            {
                let writes = now.count - before.count;
                let mean_us = if writes == 0 {
                    0.0
                } else {
                    (now.sum_ms - before.sum_ms) * 1000.0 / writes as f64
                };
                push(&mut self.lag_us, mean_us.max(0.0).round() as u64);
                let replicated = now.replicated.saturating_sub(before.replicated);
                push(
                    &mut self.throughput,
                    (replicated as f64 / secs).round() as u64,
                );
            }
            self.last = Some(now);
        } else {
            self.last = None;
        }
        let conflicts = polled.overview.as_ref().map_or(0, |o| o.conflicts.len());
        self.conflict = self.conflict.min(conflicts.saturating_sub(1));
        self.state = Some(polled.state);
        self.overview = polled.overview;
        self.updated = Some(at);
    }

    /// What `a` would do, or why it cannot: (prompt, command).
    pub fn ask_advance(&self) -> Result<(String, MigrationCommand), String> {
        let s = self.state.as_ref().ok_or_else(|| self.nothing())?;
        let next = s.completed + 1;
        match &s.status {
            Status::Completed | Status::RolledBack => Err(format!(
                "migration {} is over ({}); start a new one with zk-migrate",
                s.id,
                status_word(&s.status)
            )),
            Status::Running { phase } => Err(format!(
                "phase {phase} ({}) is running; wait for its gate",
                phase_name(*phase)
            )),
            Status::RollingBack { .. } => Err("a rollback is running; wait for it".into()),
            Status::Halted { phase, .. } => Ok((
                format!(
                    "Retry phase {phase} ({}) of migration {}? It changes the live cluster. (y/n)",
                    phase_name(*phase),
                    s.id
                ),
                MigrationCommand::Advance { id: s.id.clone() },
            )),
            Status::Planned | Status::Waiting => Ok((
                format!(
                    "Advance migration {} to phase {next} ({})? It changes the live cluster. (y/n)",
                    s.id,
                    phase_name(next)
                ),
                MigrationCommand::Advance { id: s.id.clone() },
            )),
        }
    }

    /// What `r` (one phase back) or `R` (`all`: every phase) would do, or why it cannot.
    pub fn ask_rollback(&self, all: bool) -> Result<(String, MigrationCommand), String> {
        let s = self.state.as_ref().ok_or_else(|| self.nothing())?;
        if !s.is_active() {
            return Err(format!(
                "migration {} is over ({}): nothing to roll back",
                s.id,
                status_word(&s.status)
            ));
        }
        if matches!(s.status, Status::RollingBack { .. }) {
            return Err("a rollback is running; wait for it".into());
        }
        // A phase that runs or halted is undone with the completed ones.
        let undo_from = match s.status {
            Status::Running { phase } | Status::Halted { phase, .. } => phase,
            _ => s.completed,
        };
        if undo_from == 0 {
            return Err(format!(
                "migration {} has not started: nothing to roll back",
                s.id
            ));
        }
        let to = if all { 0 } else { undo_from - 1 };
        let what = if to == 0 {
            "everything back on A".to_owned()
        } else {
            format!("back to phase {to} ({})", phase_name(to))
        };
        Ok((
            format!(
                "Roll migration {} back from phase {undo_from}: {what}? (y/n)",
                s.id
            ),
            MigrationCommand::Rollback {
                id: s.id.clone(),
                to,
            },
        ))
    }

    /// What `A`/`B` would do to the selected conflict.
    pub fn ask_resolve(&self, winner: char) -> Result<(String, MigrationCommand), String> {
        let conflict = self
            .overview
            .as_ref()
            .and_then(|o| o.conflicts.get(self.conflict))
            .ok_or("the sync holds no conflict (strategy `manual` holds them)")?;
        let side = winner.to_ascii_uppercase();
        Ok((
            format!(
                "Resolve {}: copy {side}'s version over the other side? (y/n)",
                conflict.path
            ),
            MigrationCommand::Resolve {
                path: conflict.path.clone(),
                winner: winner.to_ascii_lowercase(),
            },
        ))
    }

    pub fn select_conflict(&mut self, by: isize) {
        let n = self.overview.as_ref().map_or(0, |o| o.conflicts.len());
        if n == 0 {
            return;
        }
        self.conflict = (self.conflict as isize + by).clamp(0, n as isize - 1) as usize;
    }

    fn nothing(&self) -> String {
        match &self.problem {
            Some(why) => format!("no migration to act on: {why}"),
            None => format!("no migration yet at {}", self.api),
        }
    }

    /// How long ago the last poll answered.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.updated.map(|u| now.saturating_duration_since(u))
    }
}

/// The status in a few words.
pub fn status_word(status: &Status) -> String {
    match status {
        Status::Planned => "planned".into(),
        Status::Running { phase } => format!("running phase {phase}"),
        Status::Waiting => "waiting for advance".into(),
        Status::Halted { phase, .. } => format!("HALTED in phase {phase}"),
        Status::RollingBack { to, from } => format!("rolling back from phase {from} to {to}"),
        Status::Completed => "completed".into(),
        Status::RolledBack => "rolled back".into(),
    }
}

/// A migration in phase 4 with two held conflicts, as a service would report it.
#[cfg(test)]
pub(crate) mod sample {
    use orca_migrate::{
        MigrationConfig, MigrationState, Status,
        overview::{AgentCounts, EnsembleView, LeaderView, MasterView, Overview, ServerView},
        state::{CheckResult, GateResult},
    };
    use orca_sync::engine::{Conflict, LagFigures, Status as SyncStatus};

    pub fn state(status: Status, completed: u8) -> MigrationState {
        let cfg = MigrationConfig::from_yaml(
            "id: m1\nsync: { source-zk: '127.0.0.1:2181', target-zk: '127.0.0.1:2281' }\n\
             cluster: { path: /orca, target-masters: [{ http: '127.0.0.1:5051', grpc: '127.0.0.1:5061' }] }\n\
             state-dir: /nonexistent\n",
        )
        .unwrap();
        let mut s = MigrationState::new("m1".into(), cfg);
        s.completed = completed;
        s.status = status;
        for phase in 1..=completed {
            s.timeline.push(orca_migrate::state::Event {
                at_unix_ms: 1_000 * phase as u64,
                phase,
                what: format!("phase {phase} started"),
                took_ms: None,
            });
            s.timeline.push(orca_migrate::state::Event {
                at_unix_ms: 1_000 * phase as u64 + 400,
                phase,
                what: format!("phase {phase} done"),
                took_ms: Some(400),
            });
        }
        s.gates.push(GateResult {
            phase: completed.max(1),
            stage: "post".into(),
            at_unix_ms: 5_000,
            took_ms: 12,
            passed: true,
            checks: vec![
                CheckResult {
                    name: "leader stable".into(),
                    ok: true,
                    detail: "127.0.0.1:5051 has led for 3.2 s".into(),
                },
                CheckResult {
                    name: "sync lag".into(),
                    ok: true,
                    detail: "p99 A->B 4.1 ms, B->A 3.0 ms, limit 100 ms".into(),
                },
            ],
        });
        s.tasks.before = Some(50);
        s.tasks.min_during = Some(50);
        s.tasks.max_during = Some(52);
        s
    }

    pub fn sync(count: u64, sum: f64, replicated: u64) -> SyncStatus {
        SyncStatus {
            bootstrapped: true,
            replicated_a_to_b: replicated,
            conflicts: 2,
            conflicts_held: 2,
            lag_a_to_b_ms: LagFigures {
                count,
                sum,
                p50: 2.0,
                p99: 4.1,
                max: 9.0,
            },
            recent_lag_a_to_b_ms: LagFigures {
                count: 10,
                sum: 30.0,
                p50: 2.0,
                p99: 4.1,
                max: 9.0,
            },
            ..Default::default()
        }
    }

    fn ensemble(name: &str, base: u16, masters: Vec<MasterView>) -> EnsembleView {
        EnsembleView {
            name: name.into(),
            connect: format!("127.0.0.1:{}", base + 1),
            quorum: true,
            servers: (1..=3)
                .map(|i| ServerView {
                    server: format!("127.0.0.1:{}", base + i),
                    mode: Some(if i == 2 { "leader" } else { "follower" }.into()),
                    sessions: Some(if name == "A" { 2 } else { 5 }),
                })
                .collect(),
            masters,
        }
    }

    pub fn overview(sync: Option<SyncStatus>) -> Overview {
        Overview {
            migration: "m1".into(),
            ensembles: vec![
                ensemble("A", 2180, vec![]),
                ensemble(
                    "B",
                    2280,
                    vec![MasterView {
                        id: "b1".into(),
                        http: Some("127.0.0.1:5051".parse().unwrap()),
                        sequence: 1003,
                        leader: true,
                    }],
                ),
            ],
            leader: Some(LeaderView {
                contender: "json.info_0000001003".into(),
                http: Some("127.0.0.1:5051".parse().unwrap()),
                on_b: true,
                for_ms: 3_200,
            }),
            agents: AgentCounts {
                total: 10,
                active: 10,
                on_b: 6,
                on_a: 4,
                drained: 0,
            },
            frameworks: 1,
            frameworks_disconnected: vec![],
            tasks_running: 50,
            interruptions: vec![],
            watching: true,
            sync,
            conflicts: ["/orca/app/x", "/orca/app/y"]
                .iter()
                .map(|p| Conflict {
                    path: (*p).into(),
                    a: Some("v1".into()),
                    b: Some("v2".into()),
                    resolution: "held".into(),
                    at_unix_ms: 0,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(status: Status, completed: u8, sync: Option<orca_sync::engine::Status>) -> Polled {
        Polled {
            state: sample::state(status, completed),
            overview: Some(sample::overview(sync)),
            overview_error: None,
        }
    }

    #[test]
    fn lag_and_throughput_are_what_happened_between_two_polls() {
        let mut view = MigrationView::new("127.0.0.1:7091");
        let t0 = Instant::now();
        view.apply(
            Ok(polled(
                Status::Waiting,
                3,
                Some(sample::sync(10, 50.0, 100)),
            )),
            t0,
        );
        assert!(view.lag_us.is_empty(), "one poll has no interval yet");
        // 20 writes meanwhile with 60 ms of lag in all: 3 ms each; 200 replicated in 2 s.
        let t1 = t0 + Duration::from_secs(2);
        view.apply(
            Ok(polled(
                Status::Waiting,
                3,
                Some(sample::sync(30, 110.0, 300)),
            )),
            t1,
        );
        assert_eq!(view.lag_us.back(), Some(&3_000));
        assert_eq!(view.throughput.back(), Some(&100));
        // No write: no lag, no throughput.
        let t2 = t1 + Duration::from_secs(1);
        view.apply(
            Ok(polled(
                Status::Waiting,
                3,
                Some(sample::sync(30, 110.0, 300)),
            )),
            t2,
        );
        assert_eq!(view.lag_us.back(), Some(&0));
        assert_eq!(view.throughput.back(), Some(&0));
        // A restarted sync counts from zero again: no point across the restart.
        let t3 = t2 + Duration::from_secs(1);
        view.apply(
            Ok(polled(Status::Waiting, 3, Some(sample::sync(2, 4.0, 5)))),
            t3,
        );
        assert_eq!(view.lag_us.len(), 2);
        // An unreachable service keeps what was shown and says why.
        view.apply(Err("no migration service answers".into()), t3);
        assert!(view.state.is_some());
        assert_eq!(
            view.problem.as_deref(),
            Some("no migration service answers")
        );
    }

    #[test]
    fn the_history_keeps_five_minutes() {
        let mut view = MigrationView::new("x");
        let t0 = Instant::now();
        for i in 0..(HISTORY as u64 + 20) {
            let sync = sample::sync(i, i as f64, i);
            view.apply(
                Ok(polled(Status::Waiting, 1, Some(sync))),
                t0 + Duration::from_secs(i),
            );
        }
        assert_eq!(view.lag_us.len(), HISTORY);
        assert_eq!(view.throughput.len(), HISTORY);
    }

    #[test]
    fn advance_and_rollback_are_offered_only_where_the_service_would_take_them() {
        let mut view = MigrationView::new("x");
        assert!(view.ask_advance().unwrap_err().contains("no migration yet"));
        let at = Instant::now();
        view.apply(Ok(polled(Status::Waiting, 3, None)), at);
        let (prompt, command) = view.ask_advance().unwrap();
        assert!(prompt.contains("phase 4 (agents moved to B)"), "{prompt}");
        assert_eq!(command, MigrationCommand::Advance { id: "m1".into() });
        let (prompt, command) = view.ask_rollback(false).unwrap();
        assert!(prompt.contains("back to phase 2"), "{prompt}");
        assert_eq!(
            command,
            MigrationCommand::Rollback {
                id: "m1".into(),
                to: 2
            }
        );
        let (prompt, _) = view.ask_rollback(true).unwrap();
        assert!(prompt.contains("everything back on A"), "{prompt}");

        view.apply(Ok(polled(Status::Running { phase: 4 }, 3, None)), at);
        assert!(view.ask_advance().unwrap_err().contains("is running"));
        // A running phase is undone with the completed ones.
        let (_, command) = view.ask_rollback(false).unwrap();
        assert_eq!(
            command,
            MigrationCommand::Rollback {
                id: "m1".into(),
                to: 3
            }
        );
        let halted = Status::Halted {
            phase: 4,
            reason: "sync lag".into(),
        };
        view.apply(Ok(polled(halted, 3, None)), at);
        assert!(view.ask_advance().unwrap().0.contains("Retry phase 4"));
        view.apply(Ok(polled(Status::Planned, 0, None)), at);
        assert!(
            view.ask_rollback(false)
                .unwrap_err()
                .contains("not started")
        );
        view.apply(Ok(polled(Status::Completed, 6, None)), at);
        assert!(view.ask_advance().unwrap_err().contains("is over"));
        assert!(view.ask_rollback(true).unwrap_err().contains("is over"));
    }

    #[test]
    fn a_selected_conflict_is_resolved_with_the_side_chosen() {
        let mut view = MigrationView::new("x");
        view.apply(Ok(polled(Status::Waiting, 1, None)), Instant::now());
        view.select_conflict(5);
        assert_eq!(view.conflict, 1);
        let (prompt, command) = view.ask_resolve('B').unwrap();
        assert!(
            prompt.contains("/orca/app/y") && prompt.contains("B's"),
            "{prompt}"
        );
        assert_eq!(
            command,
            MigrationCommand::Resolve {
                path: "/orca/app/y".into(),
                winner: 'b'
            }
        );
        view.select_conflict(-9);
        assert_eq!(view.conflict, 0);
        let mut empty = sample::overview(None);
        empty.conflicts.clear();
        view.apply(
            Ok(Polled {
                state: sample::state(Status::Waiting, 1),
                overview: Some(empty),
                overview_error: None,
            }),
            Instant::now(),
        );
        assert!(view.ask_resolve('a').unwrap_err().contains("no conflict"));
    }
}
