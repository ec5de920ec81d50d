//! The sync engine: connects to both ensembles, copies A to B once (bootstrap), then keeps
//! both identical while both take writes.
//!
//! Live replication ([`live`]) reads persistent recursive watch events from both sides. Each
//! round takes every path that changed, reads both copies (multi-reads), decides with
//! [`plan::decide`] against the base (the content both last agreed on) and writes the
//! differences in batches. Writes are conditional on the version just read, so a client write
//! racing the engine's makes the engine's fail and the path is decided again (a conflict, not
//! a silent overwrite). The engine's own writes come back as watch events; each successful
//! write expects one, and that one event is dropped without reading anything (and were one
//! missed, reading both copies would find them equal): loops stop without marker nodes and
//! without blocking any writer. After a reconnect, and every `rescan-interval-s` (300 s by
//! default), the whole tree is re-read and reconciled the same way, because watch events can
//! be lost across reconnects (ZOOKEEPER-4698) and ACL changes fire no watch at all.
mod error;
mod live;
mod report;
mod validation;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;
use zookeeper_client::{Client, Error as ZkError, SessionState};

use self::{
    error::transient,
    report::{Lag, RecentLag},
};
pub use self::{
    error::{SyncError, Unhealthy},
    report::{Conflict, LagFigures, OpCounts, PassReport, Preview, Status},
    validation::Validation,
};
use crate::{
    apply::{self, Op, Outcome},
    base::{BaseStore, Identity},
    config::{HiddenAclPolicy, SyncConfig},
    digest::{self, Difference},
    metrics::{DirectionLabel, SyncMetrics},
    plan::{self, AclWrite, Decision, Inputs, Side},
    tree::{self, Tree, WalkError},
    znode::{ContentHash, Znode},
};

/// Writes applied (and made durable in the base) at a time.
const APPLY_CHUNK: usize = 4096;

/// Times a pass reads and decides again the paths whose writes could not land yet.
const PASS_RETRY_ROUNDS: usize = 5;

struct State {
    /// Content both sides last agreed on, by path; absent = agreed the node does not exist.
    base: BaseStore,
    held: BTreeMap<String, Conflict>,
    /// Paths a side's copy of which was read with hidden digests (`digest user:x`), with
    /// that side: that ACL is never written; what is copied follows `acl-hidden`.
    acl_hidden: BTreeMap<String, Side>,
    /// Paths whose copy was refused for an ACL hidden on the side it would come from:
    /// nothing below them is created on the other side.
    acl_refused: BTreeMap<String, Side>,
    /// Watch events still to come for the engine's own writes, by side and path.
    echoes: HashMap<(Side, String), u32>,
    status: Status,
    lag_ab: Lag,
    lag_ba: Lag,
    /// The lag up to the start of the engine's write (see `Status::added_a_to_b_ms`).
    added_ab: Lag,
    added_ba: Lag,
    recent_ab: RecentLag,
    recent_ba: RecentLag,
    /// When the live round under way began (see `Status::stalled_ms`).
    round_since: Option<std::time::Instant>,
    /// While a re-scan runs beside live rounds: the paths live rounds took up since it was
    /// started (set before it starts, when no round is in flight). The re-scan leaves those to
    /// them: its copies of them may be older than what those rounds read and wrote, and
    /// deciding on them could undo their work (a node a round had just copied would look
    /// deleted on the side the re-scan read before the copy landed).
    live_during_scan: Option<BTreeSet<String>>,
}

/// Keeps the subtree `cfg.root` of two ensembles identical.
pub struct SyncEngine {
    cfg: SyncConfig,
    /// The sessions with A and B. A session that expires is replaced by a new one
    /// ([`SyncEngine::reconnect`]); everything else takes a clone of the current one.
    clients: [std::sync::RwLock<Client>; 2],
    /// Extra sessions per side that walks spread their reads over (`read-sessions`).
    readers: [std::sync::RwLock<Vec<Client>>; 2],
    state: Mutex<State>,
    /// True while `run` has watches open (their events carry the engine's echoes).
    watching: std::sync::atomic::AtomicBool,
    /// Last ACL read per node on A and on B.
    acls: [tree::AclCache; 2],
    metrics: SyncMetrics,
    /// Znodes read by walks so far (progress of a bootstrap).
    walked: std::sync::atomic::AtomicU64,
    /// Every conflict, appended as a JSON line (`audit-log` in the configuration).
    audit_log: Mutex<Option<std::fs::File>>,
    events: Arc<EventCounts>,
    /// This engine's sessions in earlier runs (from its state directory): the mirrors they
    /// own are this engine's, and are taken over by the current sessions.
    earlier_sessions: Vec<i64>,
    /// `acl-fallback`, parsed.
    fallback_acl: Vec<crate::znode::AclEntry>,
}

/// The engine's sessions of the last runs, kept beside its base.
const SESSIONS_FILE: &str = "engine-sessions.json";
const SESSIONS_KEPT: usize = 16;

/// Reads the sessions earlier runs recorded under `dir` and records `current` for the next
/// run. A file that cannot be read or written costs only a conflict-free restart: mirrors
/// of the earlier run then look like originals until they expire.
fn remember_sessions(dir: Option<&std::path::Path>, current: [i64; 2]) -> Vec<i64> {
    let Some(dir) = dir else { return Vec::new() };
    let path = dir.join(SESSIONS_FILE);
    let earlier: Vec<i64> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut kept: Vec<i64> = earlier.iter().copied().chain(current).collect();
    let skip = kept.len().saturating_sub(SESSIONS_KEPT);
    kept.drain(..skip);
    if let Err(e) = serde_json::to_vec(&kept)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&path, bytes))
    {
        tracing::warn!(file = %path.display(), "cannot record the engine's sessions: {e}");
    }
    earlier
}

/// Watch events numbered as they arrive, and how far the live rounds have settled them: a
/// validation waits for the events that had arrived when it read both trees.
#[derive(Default)]
struct EventCounts {
    arrived: std::sync::atomic::AtomicU64,
    /// Every event up to this number has been taken into a round that finished (or was an
    /// echo, dropped).
    settled: std::sync::atomic::AtomicU64,
}

/// Whether an ancestor of `path` was refused for an ACL hidden on `side`.
fn refused_above(refused: &BTreeMap<String, Side>, path: &str, side: Side) -> bool {
    if refused.is_empty() {
        return false;
    }
    let mut at = path;
    while at != "/" {
        at = crate::znode::parent(at);
        if refused.get(at) == Some(&side) {
            return true;
        }
    }
    false
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn summary(node: Option<&Znode>) -> Option<String> {
    node.map(|n| {
        format!(
            "{} bytes, {} acl entries, mtime {}",
            n.data.len(),
            n.acl.len(),
            n.meta.mtime
        )
    })
}

async fn connect(
    side: &'static str,
    connect: &str,
    auth: Option<&str>,
    timeout: Duration,
) -> Result<Client, SyncError> {
    let mut connector = Client::connector()
        .with_session_timeout(timeout)
        .with_connection_timeout(timeout.min(Duration::from_secs(5)))
        .with_fail_eagerly();
    if let Some(auth) = auth {
        connector = connector.with_auth("digest", auth.as_bytes());
    }
    let client = connector
        .connect(connect)
        .await
        .map_err(|source| match source {
            ZkError::AuthFailed => SyncError::Auth { side, source },
            source => SyncError::Unreachable {
                side,
                connect: connect.to_string(),
                source,
            },
        })?;
    Ok(client)
}

/// The `read-sessions` extra sessions with one ensemble.
async fn connect_readers(
    side: &'static str,
    connect_string: &str,
    auth: Option<&str>,
    cfg: &SyncConfig,
) -> Result<Vec<Client>, SyncError> {
    let opened = futures::future::join_all(
        (0..cfg.read_sessions).map(|_| connect(side, connect_string, auth, cfg.session_timeout())),
    )
    .await;
    opened.into_iter().collect()
}

impl SyncEngine {
    /// Validates `cfg` and connects to both ensembles.
    pub async fn connect(cfg: SyncConfig) -> Result<Arc<Self>, SyncError> {
        cfg.validate()?;
        let fallback_acl = cfg.fallback_acl()?;
        let lag_window = Duration::from_secs(cfg.lag_window_s);
        let base = match &cfg.state_dir {
            Some(dir) => BaseStore::open(
                dir,
                Identity {
                    source: cfg.source_zk.clone(),
                    target: cfg.target_zk.clone(),
                    root: cfg.root.clone(),
                },
            )?,
            None => BaseStore::in_memory(),
        };
        let audit_log = match &cfg.audit_log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| SyncError::AuditLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let timeout = cfg.session_timeout();
        let (a, b) = tokio::join!(
            connect("A", &cfg.source_zk, cfg.source_auth.as_deref(), timeout),
            connect("B", &cfg.target_zk, cfg.target_auth.as_deref(), timeout),
        );
        let (a, b) = (a?, b?);
        let earlier_sessions = remember_sessions(
            cfg.state_dir.as_deref(),
            [a.session_id().0, b.session_id().0],
        );
        let (readers_a, readers_b) = tokio::join!(
            connect_readers("A", &cfg.source_zk, cfg.source_auth.as_deref(), &cfg),
            connect_readers("B", &cfg.target_zk, cfg.target_auth.as_deref(), &cfg),
        );
        let (readers_a, readers_b) = (readers_a?, readers_b?);
        for (side, client) in [("A", &a), ("B", &b)] {
            if cfg.root != "/" {
                client
                    .mkdir(
                        &cfg.root,
                        &zookeeper_client::CreateMode::Persistent
                            .with_acls(zookeeper_client::Acls::anyone_all()),
                    )
                    .await
                    .map_err(|source| SyncError::Zk { side, source })?;
            }
        }
        Ok(Arc::new(Self {
            cfg,
            clients: [std::sync::RwLock::new(a), std::sync::RwLock::new(b)],
            readers: [
                std::sync::RwLock::new(readers_a),
                std::sync::RwLock::new(readers_b),
            ],
            state: Mutex::new(State {
                status: Status {
                    bootstrapped: base.bootstrapped(),
                    ..Status::default()
                },
                base,
                held: BTreeMap::new(),
                acl_hidden: BTreeMap::new(),
                acl_refused: BTreeMap::new(),
                echoes: HashMap::new(),
                live_during_scan: None,
                lag_ab: Lag::new(),
                lag_ba: Lag::new(),
                added_ab: Lag::new(),
                added_ba: Lag::new(),
                recent_ab: RecentLag::new(lag_window),
                recent_ba: RecentLag::new(lag_window),
                round_since: None,
            }),
            watching: std::sync::atomic::AtomicBool::new(false),
            acls: Default::default(),
            metrics: SyncMetrics::default(),
            walked: Default::default(),
            audit_log: Mutex::new(audit_log),
            events: Default::default(),
            earlier_sessions,
            fallback_acl,
        }))
    }

    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    fn session(&self, side: Side) -> &std::sync::RwLock<Client> {
        match side {
            Side::A => &self.clients[0],
            Side::B => &self.clients[1],
        }
    }

    fn client(&self, side: Side) -> Client {
        self.session(side)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Opens a new session with `side` in place of one that expired (a partition longer than
    /// the session timeout). The caller re-adds the watch and re-scans.
    pub(super) async fn reconnect(&self, side: Side) -> Result<(), SyncError> {
        let (connect_string, auth) = match side {
            Side::A => (&self.cfg.source_zk, self.cfg.source_auth.as_deref()),
            Side::B => (&self.cfg.target_zk, self.cfg.target_auth.as_deref()),
        };
        let fresh = connect(
            side.name(),
            connect_string,
            auth,
            self.cfg.session_timeout(),
        )
        .await?;
        *self
            .session(side)
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
        self.renew_readers(side).await;
        Ok(())
    }

    /// Replaces the read sessions with `side` (after one of them failed, or with the main
    /// one). They only make walks faster: when they cannot be opened, walks read through the
    /// main session alone until the next try (the next walk).
    async fn renew_readers(&self, side: Side) {
        let (connect_string, auth) = match side {
            Side::A => (&self.cfg.source_zk, self.cfg.source_auth.as_deref()),
            Side::B => (&self.cfg.target_zk, self.cfg.target_auth.as_deref()),
        };
        let fresh = match connect_readers(side.name(), connect_string, auth, &self.cfg).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(
                    side = side.name(),
                    "read sessions could not be opened, walking through the main session: {e}"
                );
                Vec::new()
            }
        };
        *self.readers[side as usize]
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// The sessions a walk of `side` reads through: the main one and the read sessions.
    fn walk_sessions(&self, side: Side) -> Vec<Client> {
        let mut sessions = vec![self.client(side)];
        sessions.extend(
            self.readers[side as usize]
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        sessions
    }

    async fn walk(&self, side: Side) -> Result<Tree, WalkError> {
        self.walk_into(side, None).await
    }

    /// A walk whose nodes go to `stream` as they are read, if given (see `tree::walk`).
    async fn walk_into(
        &self,
        side: Side,
        stream: Option<&mpsc::UnboundedSender<Vec<(String, Znode)>>>,
    ) -> Result<Tree, WalkError> {
        tree::walk(
            &self.walk_sessions(side),
            match side {
                Side::A => "A",
                Side::B => "B",
            },
            &self.cfg.root,
            |p| self.cfg.includes(p),
            self.cfg.walk_concurrency,
            &self.acls[side as usize],
            &self.walked,
            stream,
        )
        .await
    }

    /// Reads both trees as of now. Each session first `sync`s with its ensemble's leader: a
    /// follower may not have applied a write another client already saw acknowledged.
    pub async fn read_both(&self) -> Result<(Tree, Tree), SyncError> {
        let (sa, sb) = tokio::join!(self.sync_sessions(Side::A), self.sync_sessions(Side::B));
        sa?;
        sb?;
        let (a, b) = tokio::join!(self.walk(Side::A), self.walk(Side::B));
        Ok((a?, b?))
    }

    /// `sync`s every session a walk of `side` reads through with the ensemble's leader: each
    /// may be on another follower, and a follower may not have applied a write another client
    /// already saw acknowledged. The main session's failure is the caller's (it reconnects, or
    /// retries after a transient fault); read sessions that failed are replaced here.
    async fn sync_sessions(&self, side: Side) -> Result<(), SyncError> {
        let zk = |source| SyncError::Zk {
            side: side.name(),
            source,
        };
        self.client(side).sync(&self.cfg.root).await.map_err(zk)?;
        if let Err(e) = self.sync_readers(side).await {
            tracing::warn!(
                side = side.name(),
                "a read session failed ({e}): opening new ones"
            );
            self.renew_readers(side).await;
            if let Err(e) = self.sync_readers(side).await {
                tracing::warn!(side = side.name(), "new read sessions failed too ({e})");
                self.readers[side as usize]
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
        }
        Ok(())
    }

    /// `sync`s the read sessions; fails when one of them fails, or when fewer are open than
    /// configured (they could not all be opened the last time).
    async fn sync_readers(&self, side: Side) -> Result<(), ZkError> {
        let readers = self.readers[side as usize]
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if readers.len() < self.cfg.read_sessions {
            return Err(ZkError::UnexpectedError(format!(
                "{} of {} open",
                readers.len(),
                self.cfg.read_sessions
            )));
        }
        let synced = futures::future::join_all(
            readers
                .iter()
                .map(|c| async move { c.sync(&self.cfg.root).await }),
        )
        .await;
        synced.into_iter().collect()
    }

    /// Compares both trees now; empty when they are identical. What the policy leaves out
    /// on purpose (ephemeral nodes under `skip`) is not a difference, as in continuous
    /// validation.
    pub async fn validate(&self) -> Result<Vec<Difference>, SyncError> {
        let (a, b) = self.read_both().await?;
        let state = self.state.lock().unwrap();
        Ok(digest::diff(&a, &b)
            .into_iter()
            .filter(|difference| {
                let path = difference.path();
                let (decision, _) = self.judge(&state.base, path, a.get(path), b.get(path), false);
                decision != Decision::Ignore
            })
            .collect())
    }

    /// The initial copy: makes B's subtree identical to A's (creates, updates, deletes on B),
    /// then records every path as agreed.
    /// Stops with [`SyncError::HiddenAcls`] when A has nodes whose ACL it reads with hidden
    /// digests: everything else is copied, and a run with the permission given resumes.
    pub async fn bootstrap(&self) -> Result<PassReport, SyncError> {
        let report = self.streamed_pass().await?;
        let mut state = self.state.lock().unwrap();
        // Under `refuse` every node hidden on A stops it; under `keep-target` those B has
        // no copy of and no fallback was given for.
        let (stopping, remedy) = match self.cfg.acl_hidden {
            HiddenAclPolicy::Refuse => (
                &state.acl_hidden,
                "Give the sync's identity ADMIN on them (or use a super digest), or copy them \
                 keeping B's ACL with `acl-hidden: keep-target`,",
            ),
            HiddenAclPolicy::KeepTarget => (
                &state.acl_refused,
                "B has no copy whose ACL could be kept: give `acl-fallback` (the ACL to create \
                 them with) or the sync's identity ADMIN on them,",
            ),
        };
        let refused: Vec<String> = stopping
            .iter()
            .filter(|(_, side)| **side == Side::A)
            .map(|(path, _)| path.clone())
            .collect();
        if report.errors.is_empty() && refused.is_empty() {
            state.base.set_bootstrapped();
        }
        state.status.bootstrapped = state.base.bootstrapped();
        state.base.flush()?;
        if !refused.is_empty() {
            return Err(SyncError::HiddenAcls {
                side: Side::A.name(),
                count: refused.len(),
                paths: refused,
                remedy,
            });
        }
        Ok(report)
    }

    /// The plan's decision for one path against the base, and whether it is a conflict.
    fn judge(
        &self,
        base: &BaseStore,
        path: &str,
        a: Option<&Znode>,
        b: Option<&Znode>,
        never_synced: bool,
    ) -> (Decision, bool) {
        let inputs = self.inputs(base, path, a, b, never_synced);
        plan::judge(inputs, self.cfg.ephemerals, self.cfg.conflicts)
    }

    /// What the plan looks at for one path.
    fn inputs<'a>(
        &'a self,
        base: &BaseStore,
        path: &str,
        a: Option<&'a Znode>,
        b: Option<&'a Znode>,
        never_synced: bool,
    ) -> Inputs<'a> {
        let agreed = base.get(path);
        Inputs {
            a,
            b,
            base: agreed,
            never_synced: never_synced && agreed.is_none(),
            engine_session_a: self.client(Side::A).session_id().0,
            engine_session_b: self.client(Side::B).session_id().0,
            earlier_sessions: &self.earlier_sessions,
            hidden_acls: self.cfg.acl_hidden,
        }
    }

    /// What a bootstrap (or, with saved state, a resume) would write, without writing anything.
    pub async fn preview(&self) -> Result<Preview, SyncError> {
        let (a, b) = self.read_both().await?;
        let mut paths: BTreeSet<&String> = a.keys().collect();
        paths.extend(b.keys());
        let mut preview = Preview {
            nodes_a: a.len(),
            nodes_b: b.len(),
            ..Preview::default()
        };
        let state = self.state.lock().unwrap();
        let never_synced = !state.base.bootstrapped();
        for path in paths {
            let (x, y) = (a.get(path), b.get(path));
            match self.judge(&state.base, path, x, y, never_synced).0 {
                Decision::Copy { to, .. } => {
                    let exists = if to == Side::A {
                        x.is_some()
                    } else {
                        y.is_some()
                    };
                    let c = preview.side_mut(to);
                    if exists {
                        c.updates += 1
                    } else {
                        c.creates += 1
                    }
                }
                Decision::Delete { on } => preview.side_mut(on).deletes += 1,
                Decision::Conflict => preview.conflicts.push(path.clone()),
                Decision::Agreed(_) | Decision::Ignore => {}
            }
        }
        Ok(preview)
    }

    /// Re-reads both trees and reconciles them against the base (after a reconnect, on the
    /// timer, or on demand).
    pub async fn reconcile(&self) -> Result<PassReport, SyncError> {
        /// Clears `rescanning` however the re-scan ends (done, failed or aborted).
        struct Rescanning<'a>(&'a Mutex<State>);
        impl Drop for Rescanning<'_> {
            fn drop(&mut self) {
                let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
                state.status.rescanning = false;
            }
        }
        {
            let mut state = self.state.lock().unwrap();
            state.status.rescans += 1;
            state.status.rescanning = true;
        }
        let _rescanning = Rescanning(&self.state);
        self.metrics.rescans.inc();
        let started = std::time::Instant::now();
        let report = self.pass(false).await?;
        self.state.lock().unwrap().status.last_rescan_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    async fn pass(&self, initial: bool) -> Result<PassReport, SyncError> {
        let (a, b) = self.read_both().await?;
        let mut paths: BTreeSet<&String> = a.keys().collect();
        paths.extend(b.keys());
        let copies: Vec<(String, Option<Znode>, Option<Znode>)> = paths
            .into_iter()
            .map(|p| (p.clone(), a.get(p).cloned(), b.get(p).cloned()))
            .collect();
        let mut report = PassReport {
            nodes_a: a.len(),
            nodes_b: b.len(),
            ..PassReport::default()
        };
        let never_synced = initial || !self.state.lock().unwrap().base.bootstrapped();
        let mut round = self.settle(copies, never_synced, false).await;
        // Writes that could not land yet (a parent created by a batch that failed and was
        // replayed while the next batches were in flight, a client write that moved the
        // version): read again and decided again, a few times.
        for _ in 0..PASS_RETRY_ROUNDS {
            if round.retry.is_empty() {
                break;
            }
            report.add(&round);
            let copies = self.read_paths(&round.retry).await?;
            round = self.settle(copies, never_synced, false).await;
        }
        report.add(&round);
        if let Some(first) = round.retry.first() {
            // Left to live rounds (their watch events) and the next re-scan.
            tracing::warn!(
                "{} paths still changing after {PASS_RETRY_ROUNDS} tries, {first} among them",
                round.retry.len()
            );
        }
        Ok(report)
    }

    /// The initial copy, streamed: B is read whole first (its copies decide whether a path is
    /// created, updated or left), then A is walked and what has been read is decided and
    /// written while the walk reads on; a pass otherwise waits for both whole walks before its
    /// first write. Nodes only B has are decided at the end (deletes, children first); writes
    /// that could not land are decided again as in `pass`.
    async fn streamed_pass(&self) -> Result<PassReport, SyncError> {
        /// Paths decided together: large enough for full multi-ops, small enough that writing
        /// starts while the walk goes on.
        const STREAMED_ROUND: usize = 4096;
        let (sa, sb) = tokio::join!(self.sync_sessions(Side::A), self.sync_sessions(Side::B));
        sa?;
        sb?;
        let b = self.walk(Side::B).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(String, Znode)>>();
        let walking = async move {
            let walked = self.walk_into(Side::A, Some(&tx)).await;
            drop(tx);
            walked
        };
        let settling = async {
            let mut report = PassReport {
                nodes_b: b.len(),
                ..PassReport::default()
            };
            let mut seen: HashSet<String> = HashSet::new();
            let mut retry = Vec::new();
            while let Some(mut read) = rx.recv().await {
                while read.len() < STREAMED_ROUND {
                    match rx.try_recv() {
                        Ok(more) => read.extend(more),
                        Err(_) => break,
                    }
                }
                report.nodes_a += read.len();
                let copies: Vec<(String, Option<Znode>, Option<Znode>)> = read
                    .into_iter()
                    .map(|(path, a)| {
                        seen.insert(path.clone());
                        let b = b.get(&path).cloned();
                        (path, Some(a), b)
                    })
                    .collect();
                let round = self.settle(copies, true, false).await;
                report.add(&round);
                retry.extend(round.retry);
            }
            let only_b: Vec<(String, Option<Znode>, Option<Znode>)> = b
                .iter()
                .filter(|(path, _)| !seen.contains(*path))
                .map(|(path, node)| (path.clone(), None, Some(node.clone())))
                .collect();
            if !only_b.is_empty() {
                let round = self.settle(only_b, true, false).await;
                report.add(&round);
                retry.extend(round.retry);
            }
            (report, retry)
        };
        let (walked, (mut report, mut retry)) = tokio::join!(walking, settling);
        walked?;
        for _ in 0..PASS_RETRY_ROUNDS {
            if retry.is_empty() {
                break;
            }
            let copies = self.read_paths(&retry).await?;
            let round = self.settle(copies, true, false).await;
            report.add(&round);
            retry = round.retry;
        }
        if let Some(first) = retry.first() {
            tracing::warn!(
                "{} paths still changing after {PASS_RETRY_ROUNDS} tries, {first} among them",
                retry.len()
            );
        }
        Ok(report)
    }

    /// Decides and applies a set of paths whose copies on both sides are known. Only `live`
    /// rounds (from watch events) count towards replication lag: a pass copies writes of any
    /// age. A pass (a re-scan) may run beside live rounds: it skips the paths they took up
    /// after it began, and any write it makes on copies gone stale meanwhile fails on the
    /// version (the path is then decided again by a live round).
    async fn settle(
        &self,
        copies: Vec<(String, Option<Znode>, Option<Znode>)>,
        never_synced: bool,
        live: bool,
    ) -> RoundResult {
        let mut ops: [Vec<Op>; 2] = [Vec::new(), Vec::new()];
        let mut copied_from: BTreeMap<String, (Side, i64, ContentHash)> = BTreeMap::new();
        let mut result = RoundResult::default();
        {
            let mut state = self.state.lock().unwrap();
            for (path, a, b) in &copies {
                if !live
                    && state
                        .live_during_scan
                        .as_ref()
                        .is_some_and(|taken| taken.contains(path))
                {
                    // A live round read it after this pass did: its decision stands.
                    continue;
                }
                let inputs = self.inputs(&state.base, path, a.as_ref(), b.as_ref(), never_synced);
                let (decision, conflict) =
                    plan::judge(inputs, self.cfg.ephemerals, self.cfg.conflicts);
                let hidden_on = [(Side::A, a), (Side::B, b)]
                    .into_iter()
                    .find(|(_, node)| node.as_ref().is_some_and(Znode::acl_hidden))
                    .map(|(side, _)| side);
                if let Some(side) = hidden_on {
                    if state.acl_hidden.insert(path.clone(), side).is_none() {
                        self.audit_hidden(path, side);
                    }
                } else {
                    state.acl_hidden.remove(path);
                }
                // An ACL read with hidden digests is never written anywhere (it would lock
                // the digest's user out), nor one the sync cannot read replaced; what is
                // written instead follows the policy. Nothing is created below a refused node.
                let decision = match decision {
                    Decision::Copy { to, node } => {
                        let target = match to {
                            Side::A => a.as_ref(),
                            Side::B => b.as_ref(),
                        };
                        let from = to.other();
                        let written =
                            if target.is_none() && refused_above(&state.acl_refused, path, from) {
                                None
                            } else {
                                plan::written_copy(
                                    self.cfg.acl_hidden,
                                    &self.fallback_acl,
                                    node,
                                    target,
                                )
                            };
                        match written {
                            None => {
                                state.acl_refused.insert(path.clone(), from);
                                state.status.acl_refused += 1;
                                self.metrics.acl_refused.inc();
                                continue;
                            }
                            Some((node, how)) => {
                                state.acl_refused.remove(path);
                                if how != AclWrite::Exact {
                                    self.audit_acl_write(path, to, how);
                                    let (count, metric) = match how {
                                        AclWrite::Fallback => (
                                            &mut state.status.acl_fallback,
                                            &self.metrics.acl_fallback,
                                        ),
                                        _ => (&mut state.status.acl_kept, &self.metrics.acl_kept),
                                    };
                                    *count += 1;
                                    metric.inc();
                                }
                                Decision::Copy { to, node }
                            }
                        }
                    }
                    other => {
                        state.acl_refused.remove(path);
                        other
                    }
                };
                if conflict {
                    let resolution = match &decision {
                        Decision::Conflict => "held".to_string(),
                        Decision::Copy { to, .. } => {
                            format!("{:?}: {}", self.cfg.conflicts, to.other().name())
                        }
                        Decision::Delete { on } => {
                            format!("{:?}: {}", self.cfg.conflicts, on.other().name())
                        }
                        _ => "agreed".into(),
                    };
                    let conflict = Conflict {
                        path: path.clone(),
                        a: summary(a.as_ref()),
                        b: summary(b.as_ref()),
                        resolution,
                        at_unix_ms: now_ms(),
                    };
                    self.audit(&conflict);
                    state.status.conflicts += 1;
                    self.metrics.conflicts.inc();
                    result.conflicts += 1;
                    if decision == Decision::Conflict {
                        state.held.insert(path.clone(), conflict);
                    }
                }
                match decision {
                    Decision::Agreed(hash) => {
                        state.base.set(path, hash);
                        state.held.remove(path);
                    }
                    Decision::Copy { to, node } => {
                        let current = match to {
                            Side::A => a.as_ref(),
                            Side::B => b.as_ref(),
                        };
                        copied_from.insert(
                            path.clone(),
                            (to.other(), node.meta.mtime, inputs.hash(&node)),
                        );
                        let op = match current {
                            // A mirror an earlier session of the engine owns: taken over.
                            Some(cur)
                                if cur.ephemeral
                                    && node.ephemeral
                                    && cur.meta.ephemeral_owner
                                        != self.client(to).session_id().0 =>
                            {
                                Op::Replace {
                                    path: path.clone(),
                                    node,
                                    version: cur.meta.version,
                                }
                            }
                            Some(cur) => Op::Update {
                                path: path.clone(),
                                data: cur.data != node.data,
                                acl: cur.acl != node.acl,
                                version: Some(cur.meta.version),
                                node,
                            },
                            None => Op::Create {
                                path: path.clone(),
                                node,
                            },
                        };
                        ops[to as usize].push(op);
                    }
                    Decision::Delete { on } => {
                        copied_from.insert(path.clone(), (on.other(), 0, ContentHash([0; 32])));
                        let current = match on {
                            Side::A => a.as_ref(),
                            Side::B => b.as_ref(),
                        };
                        ops[on as usize].push(Op::Delete {
                            path: path.clone(),
                            version: current.map(|c| c.meta.version),
                        });
                    }
                    Decision::Conflict | Decision::Ignore => {}
                }
            }
        }
        for side in [Side::A, Side::B] {
            let side_ops = &mut ops[side as usize];
            if side_ops.is_empty() {
                continue;
            }
            // Parents before children for creates; children before parents for deletes.
            side_ops.sort_by(|x, y| match (x, y) {
                (Op::Delete { path: p, .. }, Op::Delete { path: q, .. }) => q.cmp(p),
                (Op::Delete { .. }, _) => std::cmp::Ordering::Greater,
                (_, Op::Delete { .. }) => std::cmp::Ordering::Less,
                _ => x.path().cmp(y.path()),
            });
            // Writes that fire a watch event (an ACL change fires none).
            let mut evented: BTreeSet<String> = side_ops
                .iter()
                .filter(|op| !matches!(op, Op::Update { data: false, .. }))
                .map(|op| op.path().to_string())
                .collect();
            // In chunks, each made durable in the base before the next: a bootstrap killed
            // halfway resumes from where it got to.
            for chunk in side_ops.chunks(APPLY_CHUNK) {
                let writing_since = now_ms();
                let outcomes = apply::apply(
                    &self.client(side),
                    chunk,
                    self.cfg.max_batch_bytes,
                    &self.acls[side as usize],
                )
                .await;
                let now = now_ms();
                let mut state = self.state.lock().unwrap();
                for Outcome { path, result: r } in outcomes {
                    match r {
                        Ok(()) => {
                            // One echo per path and round (an update of data and ACL reports
                            // twice but fires once).
                            if evented.remove(&path) && self.watching() {
                                *state.echoes.entry((side, path.clone())).or_default() += 1;
                            }
                            let Some((from, mtime, hash)) = copied_from.remove(&path) else {
                                continue;
                            };
                            // Content both sides already agreed on, written again (a mirror
                            // its original's client removed, or one whose engine session
                            // ended): no write of a client is replicated, so no lag is
                            // measured (its mtime is the original write's, long past).
                            let restored = state.base.get(&path) == Some(hash);
                            state.base.set(&path, (mtime != 0).then_some(hash));
                            result.written[side as usize] += 1;
                            let direction = DirectionLabel::from(from);
                            self.metrics.replicated.get_or_create(&direction).inc();
                            let state = &mut *state;
                            let (count, lag, added, recent) = match from {
                                Side::A => (
                                    &mut state.status.replicated_a_to_b,
                                    &mut state.lag_ab,
                                    &mut state.added_ab,
                                    &mut state.recent_ab,
                                ),
                                Side::B => (
                                    &mut state.status.replicated_b_to_a,
                                    &mut state.lag_ba,
                                    &mut state.added_ba,
                                    &mut state.recent_ba,
                                ),
                            };
                            *count += 1;
                            if live && mtime > 0 && !restored {
                                let ms = now.saturating_sub(mtime as u64) as f64;
                                lag.record_ms(ms);
                                recent.record_ms(ms);
                                added.record_ms(writing_since.saturating_sub(mtime as u64) as f64);
                                self.metrics
                                    .lag_seconds
                                    .get_or_create(&direction)
                                    .observe(ms / 1000.0);
                            }
                        }
                        // The parent is not there yet, or children are still there, or a
                        // client wrote first: the path is decided again after its neighbours.
                        // A dropped connection: the write is tried again too.
                        Err(
                            ZkError::NoNode
                            | ZkError::NotEmpty
                            | ZkError::NodeExists
                            | ZkError::BadVersion,
                        ) => result.retry.push(path),
                        Err(e) if transient(&e) => result.retry.push(path),
                        Err(e) => {
                            state.status.errors += 1;
                            self.metrics.errors.inc();
                            result
                                .errors
                                .push(format!("writing {path} to {}: {e}", side.name()));
                        }
                    }
                }
                if let Err(e) = state.base.flush() {
                    result.errors.push(e.to_string());
                }
            }
        }
        if let Err(e) = self.state.lock().unwrap().base.flush() {
            result.errors.push(e.to_string());
        }
        result
    }

    /// Reads both copies of each path (multi-reads on both sides at once).
    async fn read_paths(
        &self,
        paths: &[String],
    ) -> Result<Vec<(String, Option<Znode>, Option<Znode>)>, SyncError> {
        let (client_a, client_b) = (self.client(Side::A), self.client(Side::B));
        let (a, b) = tokio::join!(
            tree::read_many(&client_a, paths, &self.acls[Side::A as usize]),
            tree::read_many(&client_b, paths, &self.acls[Side::B as usize])
        );
        let a = a.map_err(|source| SyncError::Zk { side: "A", source })?;
        let b = b.map_err(|source| SyncError::Zk { side: "B", source })?;
        Ok(paths
            .iter()
            .cloned()
            .zip(a.into_iter().zip(b))
            .map(|(p, (a, b))| (p, a, b))
            .collect())
    }

    /// Writes a conflict to the audit log (JSON lines, one per conflict) and the log.
    fn audit(&self, conflict: &Conflict) {
        let line = serde_json::to_string(conflict).unwrap_or_default();
        tracing::warn!(target: "orca_sync::audit", conflict = %line, "conflict");
        self.audit_line(&line);
    }

    /// A node found with its ACL hidden on `side`: logged and written to the audit log once
    /// (until it reads exactly again).
    fn audit_hidden(&self, path: &str, side: Side) {
        let policy = self.cfg.acl_hidden.name();
        let line = serde_json::json!({
            "kind": "acl-hidden",
            "path": path,
            "side": side.name(),
            "policy": policy,
            "needs": "ADMIN on the node for the sync's identity (or a super digest)",
            "at_unix_ms": now_ms(),
        })
        .to_string();
        tracing::warn!(target: "orca_sync::audit", path, side = side.name(), policy, "ACL read with hidden digests (digest user:x): never written; to copy it exactly the sync's identity needs ADMIN on it");
        self.audit_line(&line);
    }

    /// A copy written under `acl-hidden: keep-target`: with the target's ACL kept, or
    /// created with the fallback.
    fn audit_acl_write(&self, path: &str, to: Side, how: AclWrite) {
        let acl = match how {
            AclWrite::Fallback => "fallback",
            _ => "kept",
        };
        let line = serde_json::json!({
            "kind": "acl-hidden-copy",
            "path": path,
            "to": to.name(),
            "acl": acl,
            "at_unix_ms": now_ms(),
        })
        .to_string();
        tracing::info!(target: "orca_sync::audit", path, to = to.name(), acl, "copied a node whose ACL is read with hidden digests");
        self.audit_line(&line);
    }

    fn audit_line(&self, line: &str) {
        if let Some(file) = &mut *self.audit_log.lock().unwrap() {
            use std::io::Write as _;
            if let Err(e) = writeln!(file, "{line}").and_then(|()| file.sync_data()) {
                tracing::error!("writing the audit log: {e}");
            }
        }
    }

    /// Echo bookkeeping only matters while watches run; passes outside `run` leave none.
    fn watching(&self) -> bool {
        self.watching.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replication figures so far.
    pub fn status(&self) -> Status {
        let mut state = self.state.lock().unwrap();
        let mut status = state.status.clone();
        status.walked = self.walked.load(std::sync::atomic::Ordering::Relaxed);
        status.conflicts_held = state.held.len();
        status.lag_a_to_b_ms = state.lag_ab.figures();
        status.lag_b_to_a_ms = state.lag_ba.figures();
        status.added_a_to_b_ms = state.added_ab.figures();
        status.added_b_to_a_ms = state.added_ba.figures();
        status.recent_lag_a_to_b_ms = state.recent_ab.figures();
        status.recent_lag_b_to_a_ms = state.recent_ba.figures();
        status.stalled_ms = state
            .round_since
            .map_or(0, |since| since.elapsed().as_millis() as u64);
        status.acl_hidden = state.acl_hidden.len();
        status.acl_policy = self.cfg.acl_hidden;
        status.acl_hidden_paths = state
            .acl_hidden
            .iter()
            .take(100)
            .map(|(path, side)| format!("{path} (on {})", side.name()))
            .collect();
        status
    }

    /// Prometheus text exposition of the engine's metrics.
    pub fn metrics_text(&self) -> String {
        let status = self.status();
        self.metrics
            .conflicts_held
            .set(status.conflicts_held as i64);
        self.metrics.bootstrapped.set(status.bootstrapped as i64);
        self.metrics.acl_hidden.set(status.acl_hidden as i64);
        self.metrics.encode()
    }

    /// Whether both sessions are connected (what `/health` reports).
    pub fn health(&self) -> Result<(), Unhealthy> {
        for side in [Side::A, Side::B] {
            let state = self.client(side).state();
            if state != SessionState::SyncConnected {
                return Err(Unhealthy { side, state });
            }
        }
        Ok(())
    }

    /// Conflicts held for an operator (strategy `manual`).
    pub fn held_conflicts(&self) -> Vec<Conflict> {
        self.state.lock().unwrap().held.values().cloned().collect()
    }

    /// Settles a held conflict by copying `winner`'s current copy to the other side.
    pub async fn resolve(&self, path: &str, winner: Side) -> Result<(), SyncError> {
        let copies = self.read_paths(&[path.to_string()]).await?;
        let (_, a, b) = &copies[0];
        let won = if winner == Side::A { a } else { b };
        let lost = if winner == Side::A { b } else { a };
        let won = match won.clone() {
            Some(node) => {
                match plan::written_copy(
                    self.cfg.acl_hidden,
                    &self.fallback_acl,
                    node,
                    lost.as_ref(),
                ) {
                    Some((node, _)) => Some(node),
                    None => {
                        return Err(SyncError::HiddenAcls {
                            side: winner.name(),
                            count: 1,
                            paths: vec![path.to_owned()],
                            remedy: "Give the sync's identity ADMIN on it (or use a super \
                                     digest), or set `acl-hidden: keep-target` (with \
                                     `acl-fallback` where the other side has no copy),",
                        });
                    }
                }
            }
            None => None,
        };
        let won = &won;
        let op = match (won, lost) {
            (Some(node), Some(cur)) => Op::Update {
                path: path.into(),
                data: cur.data != node.data,
                acl: cur.acl != node.acl,
                version: Some(cur.meta.version),
                node: node.clone(),
            },
            (Some(node), None) => Op::Create {
                path: path.into(),
                node: node.clone(),
            },
            (None, lost) => Op::Delete {
                path: path.into(),
                version: lost.as_ref().map(|n| n.meta.version),
            },
        };
        let target = winner.other();
        let outcomes = apply::apply(
            &self.client(target),
            &[op],
            self.cfg.max_batch_bytes,
            &self.acls[target as usize],
        )
        .await;
        for o in outcomes {
            o.result.map_err(|source| SyncError::Zk {
                side: target.name(),
                source,
            })?;
        }
        let mut state = self.state.lock().unwrap();
        state.held.remove(path);
        // Compared as the copies were read (an ACL read hidden makes it by data).
        let hash = won.as_ref().map(|node| {
            self.inputs(&state.base, path, a.as_ref(), b.as_ref(), false)
                .hash(node)
        });
        state.base.set(path, hash);
        state.base.flush()?;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct RoundResult {
    written: [usize; 2],
    conflicts: usize,
    retry: Vec<String>,
    errors: Vec<String>,
}

impl PassReport {
    fn add(&mut self, round: &RoundResult) {
        self.written_to_a += round.written[0];
        self.written_to_b += round.written[1];
        self.conflicts += round.conflicts;
        self.errors.extend(round.errors.iter().cloned());
    }
}
