//! Runs a migration: the six phases forward, each with its gates, and back from any of
//! them. One phase or rollback runs at a time, in the background; every step is persisted
//! before the next, so a killed orchestrator resumes the step it was in.
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use orca_proto::operator::v1::GetMasterRequest;
use orca_sync::{SyncEngine, engine::Status as SyncStatus};
use tokio::sync::{Notify, watch};
use zookeeper_client::Client;

use crate::{
    actuator::{self, Action, Actuator},
    cluster::{self, Contender, Monitor},
    config::MigrationConfig,
    gates::Gate,
    state::{MigrationState, Status, now_ms, phase_name},
};

mod phases;
mod rollback;

/// How far ahead of the other ensemble a side's next contender sequence is put, so masters
/// that join there rank after every master of the other side (a lower sequence would take
/// the lead from a leader that only watches its own znode), and contenders the other side
/// creates meanwhile (its masters restarting, the mirrors of this side's) never reach the
/// names this side's masters took, which are mirrored there. A migration creates a handful
/// of contenders per side (each master once, its mirror once, restarts), and phase 2 raises
/// again on a retry if the other side moved: 500 leaves room for hundreds of restarts, and
/// its raise (500 creates and deletes) took 35-37 ms in phase 2 of `bench/src/bin/migration.rs`.
const SEQUENCE_MARGIN: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error(
        "migration {0} already exists under the state directory (pick another id, or resume it with `zk-migrate serve`)"
    )]
    Exists(String),
    #[error("a phase or rollback is running (phase {0}); wait for it, or check `status`")]
    Busy(u8),
    #[error("{0}")]
    Refused(String),
    #[error("cannot connect to ensemble {side} ({servers}): {source}")]
    Connect {
        side: &'static str,
        servers: String,
        source: zookeeper_client::Error,
    },
}

/// The sync engine while it runs.
struct RunningSync {
    engine: Arc<SyncEngine>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<(), orca_sync::engine::SyncError>>,
}

pub struct Orchestrator {
    state: Mutex<MigrationState>,
    /// Sessions on A (closed in phase 6, so A sees no client of ours) and on B.
    a: Mutex<Option<Client>>,
    b: Mutex<Client>,
    sync: tokio::sync::Mutex<Option<RunningSync>>,
    /// The engine's status, readable without waiting for a running phase.
    sync_view: Mutex<Option<Arc<SyncEngine>>>,
    actuator: Actuator,
    leader_tx: watch::Sender<Option<SocketAddr>>,
    /// Whether the leader is looked up on B (A while masters on A lead).
    leader_on_b: AtomicBool,
    pub monitor: Monitor,
    busy: AtomicBool,
    /// The leading contender as last seen and since when.
    leader_since: Mutex<Option<(String, Instant)>>,
    /// The leader's count of offers made when a gate last read it: a later gate sees offers
    /// made since without waiting for the next one.
    offers_sample: Mutex<Option<OffersSample>>,
}

/// `master/offers_made` of one leader at one moment.
#[derive(Debug, Clone)]
pub struct OffersSample {
    pub leader: SocketAddr,
    pub made: f64,
    pub at: Instant,
}

impl Orchestrator {
    /// A new migration from `cfg` (its id given or generated); persisted before it returns.
    pub async fn create(mut cfg: MigrationConfig) -> Result<Arc<Self>, MigrateError> {
        let id = cfg.id.clone().unwrap_or_else(|| format!("m{}", now_ms()));
        cfg.id = Some(id.clone());
        if MigrationState::load(&cfg.state_dir, &id).is_ok() {
            return Err(MigrateError::Exists(id));
        }
        let mut state = MigrationState::new(id, cfg);
        state.record(0, "migration planned", None);
        state.save()?;
        Self::open(state).await
    }

    /// A migration kept under `state_dir`, resumed: what was running runs again.
    pub async fn resume(state_dir: &std::path::Path, id: &str) -> Result<Arc<Self>, MigrateError> {
        let state = MigrationState::load(state_dir, id)?;
        let me = Self::open(state).await?;
        let (completed, status) = {
            let s = me.snapshot();
            (s.completed, s.status)
        };
        // The sync runs from phase 1 until phase 6 stops it (a phase 1 that was running
        // starts it again itself).
        if (1..6).contains(&completed)
            && let Err(e) = me.start_sync().await
        {
            tracing::warn!("resuming the sync: {e}");
        }
        me.leader_on_b.store(completed >= 3, Ordering::Relaxed);
        match status {
            Status::Running { phase } => {
                me.update(|s| s.record(phase, "orchestrator restarted: resuming the phase", None));
                me.clone().spawn_forward(phase);
            }
            Status::RollingBack { to, .. } => {
                me.update(|s| {
                    s.record(
                        completed,
                        "orchestrator restarted: resuming the rollback",
                        None,
                    )
                });
                me.clone().spawn_rollback(to);
            }
            _ => {}
        }
        Ok(me)
    }

    async fn open(state: MigrationState) -> Result<Arc<Self>, MigrateError> {
        let cfg = state.config.clone();
        let timeout = cfg.sync.session_timeout();
        let b = connect(
            "B",
            &cfg.sync.target_zk,
            cfg.sync.target_auth.as_deref(),
            timeout,
        )
        .await?;
        // A may be gone for good (phase 6 done).
        let a = if state.completed < 6 {
            Some(
                connect(
                    "A",
                    &cfg.sync.source_zk,
                    cfg.sync.source_auth.as_deref(),
                    timeout,
                )
                .await?,
            )
        } else {
            None
        };
        let (leader_tx, leader_rx) = watch::channel(None);
        let dir = MigrationState::dir(&cfg.state_dir, &state.id);
        let me = Arc::new(Self {
            state: Mutex::new(state),
            a: Mutex::new(a),
            b: Mutex::new(b),
            sync: tokio::sync::Mutex::new(None),
            sync_view: Mutex::new(None),
            actuator: Actuator::new(cfg.actuator.clone(), actuator::log_dir(&dir)),
            leader_tx,
            leader_on_b: AtomicBool::new(false),
            monitor: Monitor::start(leader_rx),
            busy: AtomicBool::new(false),
            leader_since: Mutex::new(None),
            offers_sample: Mutex::new(None),
        });
        tokio::spawn(track_leader(Arc::downgrade(&me)));
        tokio::spawn(keep_sessions(Arc::downgrade(&me)));
        Ok(me)
    }

    pub fn snapshot(&self) -> MigrationState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MigrationState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> MigrationConfig {
        self.lock().config.clone()
    }

    /// Changes the state and persists it (a failed write is logged: the migration goes on,
    /// and the next write tries again).
    fn update(&self, change: impl FnOnce(&mut MigrationState)) {
        let mut s = self.lock();
        change(&mut s);
        if let Err(e) = s.save() {
            tracing::error!("{e}");
        }
    }

    pub fn sync_status(&self) -> Option<SyncStatus> {
        self.sync_view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.status())
    }

    pub fn sync_metrics(&self) -> Option<String> {
        self.sync_view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.metrics_text())
    }

    fn a_client(&self) -> Option<Client> {
        self.a.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn b_client(&self) -> Client {
        self.b.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs the phases after the completed ones up to `to` (the next one when `None`), in
    /// the background. A halted phase is tried again.
    pub fn advance(self: &Arc<Self>, to: Option<u8>) -> Result<u8, MigrateError> {
        let s = self.snapshot();
        let next = s.completed + 1;
        let to = to.unwrap_or(next);
        match s.status {
            Status::Completed => {
                return Err(MigrateError::Refused("the migration is complete".into()));
            }
            Status::RolledBack => {
                return Err(MigrateError::Refused(
                    "the migration was rolled back; plan a new one".into(),
                ));
            }
            Status::Running { phase } => return Err(MigrateError::Busy(phase)),
            Status::RollingBack { to, .. } => return Err(MigrateError::Busy(to)),
            _ => {}
        }
        if !(next..=6).contains(&to) {
            return Err(MigrateError::Refused(format!(
                "phase {to} cannot be advanced to: {} phases are done, the next is {next}",
                s.completed
            )));
        }
        self.claim(next)?;
        // Running from the moment the call returns: a caller that reads the status next
        // sees the phase under way, never the state before it.
        self.update(|s| s.status = Status::Running { phase: next });
        let me = self.clone();
        tokio::spawn(async move {
            for phase in next..=to {
                if !me.clone().forward(phase).await {
                    break;
                }
            }
            me.busy.store(false, Ordering::Release);
        });
        Ok(next)
    }

    /// Undoes phases down to `to` (0: everything back on A), in the background.
    pub fn rollback(self: &Arc<Self>, to: u8) -> Result<(), MigrateError> {
        let s = self.snapshot();
        match s.status {
            Status::RolledBack => return Err(MigrateError::Refused("already rolled back".into())),
            Status::Running { phase } => return Err(MigrateError::Busy(phase)),
            Status::RollingBack { to, .. } => return Err(MigrateError::Busy(to)),
            _ => {}
        }
        let reached = match &s.status {
            Status::Halted { phase, .. } => *phase,
            _ => s.completed,
        };
        if to >= reached.max(s.completed) && to != 0 {
            return Err(MigrateError::Refused(format!(
                "nothing to roll back to phase {to}: {} phases are done",
                s.completed
            )));
        }
        if let Some(archive) = &s.archive
            && now_ms() > archive.keep_until_unix_ms
        {
            return Err(MigrateError::Refused(format!(
                "the rollback window ended: A's archive {} was kept until {} ms",
                archive.file.display(),
                archive.keep_until_unix_ms
            )));
        }
        self.claim(reached)?;
        let from = reached.max(s.completed);
        self.update(|s| s.status = Status::RollingBack { to, from });
        self.clone().spawn_rollback(to);
        Ok(())
    }

    fn claim(&self, phase: u8) -> Result<(), MigrateError> {
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|_| MigrateError::Busy(phase))
    }

    fn spawn_forward(self: Arc<Self>, phase: u8) {
        self.busy.store(true, Ordering::Release);
        tokio::spawn(async move {
            self.clone().forward(phase).await;
            self.busy.store(false, Ordering::Release);
        });
    }

    fn spawn_rollback(self: Arc<Self>, to: u8) {
        self.busy.store(true, Ordering::Release);
        tokio::spawn(async move {
            self.run_rollback(to).await;
            self.busy.store(false, Ordering::Release);
        });
    }

    /// One phase: pre-checks, its actions, then its gate (waited for up to the phase
    /// timeout). Returns whether it completed.
    async fn forward(self: Arc<Self>, phase: u8) -> bool {
        self.update(|s| {
            s.status = Status::Running { phase };
            s.record(
                phase,
                format!("phase {phase} ({}) begins", phase_name(phase)),
                None,
            );
            if phase == 1 && s.tasks.before.is_none() {
                s.tasks.before = Some(self.monitor.view().running_tasks());
            }
        });
        let started = Instant::now();
        // Pre-checks may wait for what is settling (a leader's stability window after a
        // restart of this orchestrator), up to half a minute.
        let pre_deadline =
            Instant::now() + self.config().phase_timeout().min(Duration::from_secs(30));
        let pre = loop {
            let gate = self.evaluate(phase, "pre").await;
            if gate.passed || Instant::now() >= pre_deadline {
                break gate;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let pre_ok = pre.passed;
        self.update(|s| s.gates.push(pre.clone()));
        if !pre_ok {
            self.halt(phase, format!("pre-checks failed: {}", failures(&pre)));
            return false;
        }
        if let Err(reason) = self.act(phase).await {
            self.halt(phase, reason);
            return false;
        }
        let deadline = Instant::now() + self.config().phase_timeout();
        let post = loop {
            let gate = self.evaluate(phase, "post").await;
            if gate.passed || Instant::now() >= deadline {
                break gate;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let passed = post.passed;
        self.update(|s| s.gates.push(post.clone()));
        if !passed {
            self.halt(phase, format!("gate failed: {}", failures(&post)));
            return false;
        }
        let running = self.monitor.view().running_tasks();
        let interrupted = self.monitor.lock().interruptions.clone();
        self.update(|s| {
            for i in interrupted {
                if !s.interruptions.contains(&i) {
                    s.interruptions.push(i);
                }
            }
            s.completed = phase;
            s.observe_tasks(running);
            s.status = if phase == 6 {
                Status::Completed
            } else {
                Status::Waiting
            };
            if phase == 6 {
                s.tasks.after = Some(running);
            }
            s.record(
                phase,
                format!("phase {phase} ({}) done", phase_name(phase)),
                Some(started.elapsed().as_millis() as u64),
            );
        });
        true
    }

    fn halt(&self, phase: u8, reason: String) {
        tracing::error!(phase, "migration halted: {reason}");
        self.update(|s| {
            s.record(phase, format!("halted: {reason}"), None);
            s.status = Status::Halted { phase, reason };
        });
    }

    /// Evaluates a phase's checks now (`stage`: pre, post or in-flight).
    pub async fn evaluate(&self, phase: u8, stage: &str) -> crate::state::GateResult {
        let started = Instant::now();
        let checks = Gate::new(self, phase, stage).run().await;
        let passed = checks.iter().all(|c| c.ok);
        crate::state::GateResult {
            phase,
            stage: stage.to_owned(),
            at_unix_ms: now_ms(),
            took_ms: started.elapsed().as_millis() as u64,
            passed,
            checks,
        }
    }

    async fn act(&self, phase: u8) -> Result<(), String> {
        match phase {
            1 => self.sync_target().await,
            2 => self.join_target_masters().await,
            3 => self.retire_masters(false).await,
            4 => self.switch_agents(true).await,
            5 => self.drain_leaving_agents().await,
            6 => self.retire_source().await,
            _ => Err(format!("there is no phase {phase}")),
        }
    }

    pub async fn start_sync(&self) -> Result<(), String> {
        let mut running = self.sync.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        let mut cfg = self.config().sync;
        let migration_dir = MigrationState::dir(&self.config().state_dir, &self.snapshot().id);
        cfg.state_dir
            .get_or_insert_with(|| migration_dir.join("sync"));
        let align = cluster::align_exclusion(&self.config().cluster.path);
        if !cfg.excludes.contains(&align) {
            cfg.excludes.push(align);
        }
        let engine = SyncEngine::connect(cfg).await.map_err(|e| e.to_string())?;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(engine.clone().run(async move { stopped.notified().await }));
        *self.sync_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(engine.clone());
        *running = Some(RunningSync { engine, stop, task });
        Ok(())
    }

    async fn engine(&self) -> Option<Arc<SyncEngine>> {
        self.sync.lock().await.as_ref().map(|r| r.engine.clone())
    }

    /// Why the sync stopped, if it did.
    async fn sync_failure(&self) -> Option<String> {
        let running = self.sync.lock().await;
        let r = running.as_ref()?;
        r.task
            .is_finished()
            .then(|| "the sync engine stopped".to_owned())
    }

    async fn stop_sync(&self) {
        let taken = self.sync.lock().await.take();
        if let Some(r) = taken {
            r.stop.notify_one();
            match tokio::time::timeout(Duration::from_secs(30), r.task).await {
                Ok(Ok(Err(e))) => tracing::warn!("the sync ended with: {e}"),
                Err(_) => tracing::warn!("the sync did not stop within 30 s"),
                _ => {}
            }
        }
        *self.sync_view.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The contenders on B (`true`) or A.
    pub async fn contenders(&self, on_b: bool) -> Result<Vec<Contender>, String> {
        let path = self.config().cluster.path;
        let client = if on_b {
            self.b_client()
        } else {
            self.a_client().ok_or("no session on A (it was retired)")?
        };
        cluster::contenders(&client, &path).await.map_err(|e| {
            format!(
                "reading the masters' group on {}: {e}",
                if on_b { "B" } else { "A" }
            )
        })
    }

    async fn actuate(&self, phase: u8, action: Action) -> Result<(), String> {
        let started = Instant::now();
        self.actuator
            .run(&action)
            .await
            .map_err(|e| format!("{}: {e}", action.describe()))?;
        self.update(|s| {
            s.record(
                phase,
                action.describe(),
                Some(started.elapsed().as_millis() as u64),
            )
        });
        Ok(())
    }

    /// The leader's gRPC address as the contenders on the current side name it.
    pub async fn leader_grpc(&self) -> Result<SocketAddr, String> {
        let group = self
            .contenders(self.leader_on_b.load(Ordering::Relaxed) || self.a_client().is_none())
            .await?;
        group
            .first()
            .and_then(|c| c.grpc)
            .ok_or_else(|| "no leading Orca master (no contender with a gRPC address)".into())
    }

    /// The leader's metrics (`master/offers_made`, …).
    pub async fn leader_metrics(&self) -> Result<std::collections::HashMap<String, f64>, String> {
        self.leader_metrics_from().await.map(|(_, m)| m)
    }

    /// The leader's metrics and which master answered.
    async fn leader_metrics_from(
        &self,
    ) -> Result<(SocketAddr, std::collections::HashMap<String, f64>), String> {
        let grpc = self.leader_grpc().await?;
        let mut client = cluster::operator(grpc).await?;
        client
            .get_master(GetMasterRequest {})
            .await
            .map(|r| (grpc, r.into_inner().metrics))
            .map_err(|e| format!("the leader's metrics: {}", e.message()))
    }

    /// The leader's metrics now, and the offers sample a gate took before from the same
    /// leader (replaced by this one).
    pub async fn sample_offers(
        &self,
    ) -> Result<(std::collections::HashMap<String, f64>, Option<OffersSample>), String> {
        let (leader, metrics) = self.leader_metrics_from().await?;
        let now = OffersSample {
            leader,
            made: metrics.get("master/offers_made").copied().unwrap_or(0.0),
            at: Instant::now(),
        };
        let before = self
            .offers_sample
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(now)
            .filter(|b| b.leader == leader);
        Ok((metrics, before))
    }

    /// The leading contender's name and how long it has led (as this orchestrator saw it).
    pub fn leader_since(&self) -> Option<(String, Duration)> {
        self.leader_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(n, at)| (n.clone(), at.elapsed()))
    }

    pub fn leader_on_b(&self) -> bool {
        self.leader_on_b.load(Ordering::Relaxed)
    }

    pub fn has_a(&self) -> bool {
        self.a_client().is_some()
    }

    /// Stops the sync if it runs (its sessions close, its mirrors go); the state stays as
    /// it is, so `resume` goes on from there. For a process that ends.
    pub async fn shutdown(&self) {
        self.stop_sync().await;
    }

    pub async fn engine_for_checks(&self) -> Option<Arc<SyncEngine>> {
        self.engine().await
    }
}

/// Replaces a session with A or B that expired (an ensemble frozen or partitioned for longer
/// than the session timeout): without it every later read would fail for good.
async fn keep_sessions(me: std::sync::Weak<Orchestrator>) {
    use zookeeper_client::SessionState;
    let over = |c: &Client| {
        matches!(
            c.state(),
            SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
        )
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(o) = me.upgrade() else { return };
        let cfg = o.config().sync;
        let timeout = cfg.session_timeout();
        if over(&o.b_client()) {
            match connect("B", &cfg.target_zk, cfg.target_auth.as_deref(), timeout).await {
                Ok(b) => {
                    tracing::warn!("the session with B expired; a new one replaces it");
                    *o.b.lock().unwrap_or_else(|p| p.into_inner()) = b;
                }
                Err(e) => tracing::warn!("{e}; trying again"),
            }
        }
        if o.a_client().is_some_and(|a| over(&a)) {
            match connect("A", &cfg.source_zk, cfg.source_auth.as_deref(), timeout).await {
                Ok(a) => {
                    let mut slot = o.a.lock().unwrap_or_else(|p| p.into_inner());
                    // A retired meanwhile stays retired.
                    if slot.is_some() {
                        tracing::warn!("the session with A expired; a new one replaces it");
                        *slot = Some(a);
                    }
                }
                Err(e) => tracing::warn!("{e}; trying again"),
            }
        }
    }
}

/// Keeps the monitor pointed at the leader's gRPC doors.
async fn track_leader(me: std::sync::Weak<Orchestrator>) {
    loop {
        let Some(o) = me.upgrade() else { return };
        let on_b = o.leader_on_b() || !o.has_a();
        if let Ok(group) = o.contenders(on_b).await {
            let first = group.first();
            {
                let mut since = o.leader_since.lock().unwrap_or_else(|p| p.into_inner());
                let name = first.map(|c| c.name.clone());
                if since.as_ref().map(|(n, _)| n.clone()) != name {
                    *since = name.map(|n| (n, Instant::now()));
                }
            }
            if let Some(grpc) = first.and_then(|c| c.grpc) {
                o.leader_tx.send_if_modified(|cur| {
                    let changed = *cur != Some(grpc);
                    *cur = Some(grpc);
                    changed
                });
            }
        }
        drop(o);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failures(gate: &crate::state::GateResult) -> String {
    gate.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn connect(
    side: &'static str,
    servers: &str,
    auth: Option<&str>,
    timeout: Duration,
) -> Result<Client, MigrateError> {
    let mut connector = Client::connector()
        .with_session_timeout(timeout)
        .with_connection_timeout(timeout);
    if let Some(auth) = auth {
        connector = connector.with_auth("digest", auth.as_bytes());
    }
    connector
        .connect(servers)
        .await
        .map_err(|source| MigrateError::Connect {
            side,
            servers: servers.to_owned(),
            source,
        })
}
