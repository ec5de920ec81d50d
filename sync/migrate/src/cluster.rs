//! The cluster as the orchestrator sees it: the masters' contenders on each ensemble, the
//! leader's view of agents, frameworks and tasks (its operator `WatchCluster` stream), and the
//! operator calls that move agents.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use orca_leader::{CONTENDER_LABEL, MasterInfo, contenders as contender_names};
use orca_proto::{
    cluster::v1::TaskState,
    operator::v1::{
        self as op, AgentDrainState, AgentState, ClusterDelta, WatchClusterRequest,
        operator_client::OperatorClient,
    },
};
use tokio::sync::watch;
use zookeeper_client::{self as zk, Acls, Client, CreateMode};

/// One contender znode on one ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Contender {
    pub name: String,
    pub sequence: u64,
    /// The master's HTTP and gRPC addresses from its `MasterInfo`.
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub id: String,
    /// The session owning the znode (a mirror's is the sync engine's).
    pub owner: i64,
}

/// The contenders under `path`, lowest sequence (the leader) first.
pub async fn contenders(client: &Client, path: &str) -> Result<Vec<Contender>, zk::Error> {
    let children = match client.list_children(path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (sequence, name) in contender_names(&children) {
        let (data, stat) = match client.get_data(&format!("{path}/{name}")).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        let info = MasterInfo::from_json(&data).ok();
        out.push(Contender {
            name: name.to_owned(),
            sequence,
            http: info.as_ref().map(MasterInfo::http_addr),
            grpc: info.as_ref().and_then(MasterInfo::grpc_addr),
            id: info.map(|i| i.id).unwrap_or_default(),
            owner: stat.ephemeral_owner,
        });
    }
    Ok(out)
}

/// The children the sequence alignment creates and deletes, as a sync exclusion: every
/// name under `path` starting `orca-migrate-align`.
pub fn align_exclusion(path: &str) -> String {
    format!("{path}/orca-migrate-align*")
}

/// Creates and deletes one child per pair of ops in a multi, each one transaction for
/// ZooKeeper (100 pairs are about 8 KB, far below `jute.maxbuffer`). The multis of a raise
/// go out together and ZooKeeper's request pipeline overlaps them: 1,000 numbers took 62 ms
/// in multis of 100 pairs and 107 ms in multis of 500 (`bench/src/bin/migration.rs`).
const ALIGN_PAIRS_PER_MULTI: i64 = 100;

/// Where each side's next contender sequence under a path stood, and where it was raised to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    /// `high`'s next sequence.
    pub high: i64,
    /// `low`'s next sequence afterwards: at least `high` plus the margin.
    pub reached: i64,
}

/// Puts `low`'s next contender sequence under `path` at least `margin` ahead of `high`'s.
/// Both sides are probed at once; the raise is one round of multis whose last one also
/// probes, so what it reached is read in the same transaction.
pub async fn align_sequence(
    high: &Client,
    low: &Client,
    path: &str,
    margin: i64,
) -> Result<Alignment, zk::Error> {
    let (high_next, low_next) = tokio::join!(next_sequence(high, path), async {
        match next_sequence(low, path).await {
            Err(zk::Error::NoNode) => {
                // A fresh ensemble: the path is made (persistent, open ACL; the sync
                // copies the other side's over it).
                match low
                    .mkdir(path, &CreateMode::Persistent.with_acls(Acls::anyone_all()))
                    .await
                {
                    Ok(()) | Err(zk::Error::NodeExists) => {}
                    Err(e) => return Err(e),
                }
                next_sequence(low, path).await
            }
            found => found,
        }
    });
    let high = high_next?;
    let reached = raise_sequence(low, path, low_next?, high + margin).await?;
    Ok(Alignment { high, reached })
}

/// Raises the next contender sequence under `path` on `low` from `next` to at least
/// `at_least`. ZooKeeper numbers a sequential child after the children created under its
/// parent, which its `Stat` does not tell: a plain child is created and deleted once per
/// number. Returns the next sequence.
async fn raise_sequence(
    low: &Client,
    path: &str,
    mut next: i64,
    at_least: i64,
) -> Result<i64, zk::Error> {
    let child = format!("{path}/orca-migrate-align");
    let probe = probe_prefix(path);
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let probe_options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    while next < at_least {
        // The multis go out together (one session applies them in order; each is whole).
        let mut writers = Vec::new();
        let mut left = at_least - next;
        while left > 0 {
            let pairs = left.min(ALIGN_PAIRS_PER_MULTI);
            let mut writer = low.new_multi_writer();
            for _ in 0..pairs {
                writer.add_create(&child, &[], &options)?;
                writer.add_delete(&child, None)?;
            }
            writers.push(writer);
            left -= pairs;
        }
        writers
            .last_mut()
            .expect("at least one pair")
            .add_create(&probe, &[], &probe_options)?;
        let committed = futures::future::join_all(writers.iter_mut().map(|w| w.commit())).await;
        let mut probed = None;
        for result in committed {
            let results = result.map_err(|e| match e {
                zk::MultiWriteError::RequestFailed { source } => source,
                zk::MultiWriteError::OperationFailed { source, .. } => source,
            })?;
            if let Some(zk::MultiWriteResult::Create { path, .. }) = results.last()
                && path.starts_with(&probe)
            {
                probed = Some(path.clone());
            }
        }
        let probed = probed.ok_or_else(|| {
            zk::Error::UnexpectedError("the raise's probe was not created".into())
        })?;
        next = sequence_of(&probe, &probed)? + 1;
        drop_probe(low, probed);
    }
    Ok(next)
}

/// The sequence the next contender under `path` gets: a sequential probe child is created
/// and its number read; the next one is one more.
pub async fn next_sequence(client: &Client, path: &str) -> Result<i64, zk::Error> {
    let probe = probe_prefix(path);
    let (_, sequence) = client
        .create(
            &probe,
            &[],
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await?;
    drop_probe(client, format!("{probe}{sequence}"));
    Ok(sequence.into_i64() + 1)
}

fn probe_prefix(path: &str) -> String {
    format!("{path}/orca-migrate-align-probe-")
}

fn sequence_of(probe: &str, created: &str) -> Result<i64, zk::Error> {
    created
        .strip_prefix(probe)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| zk::Error::UnexpectedError(format!("probe {created} has no sequence")))
}

/// Deletes a probe without waiting for it: the request is queued in the session's order
/// now, and an ephemeral probe goes with the session anyway if the delete is lost.
fn drop_probe(client: &Client, probe: String) {
    let delete = client.delete(&probe, None);
    tokio::spawn(async move {
        if let Err(e) = delete.await {
            tracing::debug!(%probe, %e, "deleting a sequence probe");
        }
    });
}

/// A label for log lines: `json.info_0000000007 (127.0.0.1:5050)`.
pub fn describe(c: &Contender) -> String {
    match c.http {
        Some(h) => format!("{} ({h})", c.name),
        None => c.name.clone(),
    }
}

pub fn is_contender(name: &str) -> bool {
    name.starts_with(CONTENDER_LABEL)
}

/// What the leader says of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub master_id: String,
    pub agents: HashMap<String, op::Agent>,
    pub frameworks: HashMap<String, op::Framework>,
    pub tasks: HashMap<String, op::Task>,
}

impl ClusterView {
    fn apply(&mut self, delta: ClusterDelta) {
        if delta.full {
            self.agents.clear();
            self.frameworks.clear();
            self.tasks.clear();
        }
        self.master_id = delta.master_id;
        for a in delta.upserted_agents {
            self.agents.insert(a.id.clone(), a);
        }
        for id in delta.removed_agents {
            self.agents.remove(&id);
        }
        for f in delta.upserted_frameworks {
            self.frameworks.insert(f.id.clone(), f);
        }
        for id in delta.removed_frameworks {
            self.frameworks.remove(&id);
        }
        for t in delta.upserted_tasks {
            self.tasks.insert(t.key.clone(), t);
        }
        for key in delta.removed_tasks {
            self.tasks.remove(&key);
        }
    }

    pub fn running_tasks(&self) -> u64 {
        self.tasks
            .values()
            .filter(|t| t.state == TaskState::Running as i32)
            .count() as u64
    }

    pub fn active_agents(&self) -> usize {
        self.agents
            .values()
            .filter(|a| a.state == AgentState::Active as i32)
            .count()
    }

    /// Frameworks not connected to the leader now (name and id).
    pub fn disconnected_frameworks(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| !f.connected || !f.active)
            .map(|f| format!("{} ({})", f.name, f.id))
            .collect();
        out.sort();
        out
    }

    pub fn agent_by_host(&self, hostname: &str) -> Vec<&op::Agent> {
        self.agents
            .values()
            .filter(|a| a.hostname == hostname)
            .collect()
    }

    pub fn drained(agent: &op::Agent) -> bool {
        agent.drain_state == AgentDrainState::Drained as i32 && agent.running_tasks == 0
    }
}

/// When an agent last registered (first or again), as the master saw it.
pub fn last_registered(agent: &op::Agent) -> i64 {
    agent.registered_unix_ms.max(agent.reregistered_unix_ms)
}

/// A task ending this way is an interruption (not a framework's own kill or a finish).
fn interrupted(state: i32) -> bool {
    [
        TaskState::Failed,
        TaskState::Lost,
        TaskState::Error,
        TaskState::Dropped,
        TaskState::Unreachable,
        TaskState::Gone,
        TaskState::GoneByOperator,
    ]
    .iter()
    .any(|s| *s as i32 == state)
}

/// What the monitor has seen since it started.
#[derive(Debug, Default)]
pub struct Observed {
    pub view: ClusterView,
    /// The leader's gRPC address the view comes from (`None`: no leader answering).
    pub leader: Option<SocketAddr>,
    pub connected: bool,
    /// Tasks that left RUNNING for a state that interrupts them.
    pub interruptions: Vec<String>,
    /// Registrations per agent seen (a registration time that changed), to tell flapping.
    pub registrations: HashMap<String, u32>,
    pub stream_restarts: u64,
}

/// Follows the leader's `WatchCluster` stream for the whole migration; `leader` names where
/// to find the leader's gRPC doors (the orchestrator updates it as leadership moves).
#[derive(Clone)]
pub struct Monitor {
    pub observed: Arc<Mutex<Observed>>,
}

impl Monitor {
    pub fn start(leader: watch::Receiver<Option<SocketAddr>>) -> Self {
        let observed = Arc::new(Mutex::new(Observed::default()));
        tokio::spawn(follow(leader, observed.clone()));
        Self { observed }
    }

    pub fn view(&self) -> ClusterView {
        self.lock().view.clone()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the monitor holds a view from the leader at `leader` newer than now.
    pub async fn fresh_from(&self, leader: SocketAddr, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let o = self.lock();
                if o.connected && o.leader == Some(leader) {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn follow(mut leader: watch::Receiver<Option<SocketAddr>>, observed: Arc<Mutex<Observed>>) {
    loop {
        let target = *leader.borrow_and_update();
        let Some(addr) = target else {
            if leader.changed().await.is_err() {
                return;
            }
            continue;
        };
        let streamed = async {
            let mut client = OperatorClient::connect(format!("http://{addr}"))
                .await
                .ok()?;
            let mut stream = client
                .watch_cluster(WatchClusterRequest {
                    completed_tasks: 1000,
                })
                .await
                .ok()?
                .into_inner();
            while let Ok(Some(delta)) = stream.message().await {
                let mut o = observed.lock().unwrap_or_else(|p| p.into_inner());
                o.leader = Some(addr);
                o.connected = true;
                absorb(&mut o, delta);
            }
            Some(())
        };
        tokio::select! {
            _ = streamed => {}
            changed = leader.changed() => if changed.is_err() { return },
        }
        {
            let mut o = observed.lock().unwrap_or_else(|p| p.into_inner());
            o.connected = false;
            o.stream_restarts += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn absorb(o: &mut Observed, delta: ClusterDelta) {
    for t in &delta.upserted_tasks {
        let before = o.view.tasks.get(&t.key).map(|p| p.state);
        if interrupted(t.state)
            && before.is_some_and(|s| !interrupted(s))
            && before != Some(t.state)
        {
            o.interruptions.push(format!(
                "task {} of framework {} on {}: {} ({}) {}",
                t.id,
                t.framework_id,
                t.hostname,
                TaskState::try_from(t.state).map_or("?".into(), |s| s.as_str_name().to_owned()),
                t.reason,
                t.message
            ));
        }
    }
    for a in &delta.upserted_agents {
        let changed = o
            .view
            .agents
            .get(&a.id)
            .is_none_or(|p| last_registered(p) != last_registered(a));
        if changed {
            *o.registrations.entry(a.id.clone()).or_default() += 1;
        }
    }
    o.view.apply(delta);
}

/// An operator client of the master at `grpc`.
pub async fn operator(
    grpc: SocketAddr,
) -> Result<OperatorClient<tonic::transport::Channel>, String> {
    tokio::time::timeout(
        Duration::from_secs(5),
        OperatorClient::connect(format!("http://{grpc}")),
    )
    .await
    .map_err(|_| format!("the leader's gRPC doors at {grpc} did not answer within 5 s"))?
    .map_err(|e| format!("cannot reach the leader's gRPC doors at {grpc}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(key: &str, state: TaskState) -> op::Task {
        op::Task {
            key: key.into(),
            id: key.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_running_task_that_fails_or_is_lost_counts_as_interrupted() {
        let mut o = Observed::default();
        absorb(
            &mut o,
            ClusterDelta {
                full: true,
                upserted_tasks: vec![
                    task("a", TaskState::Running),
                    task("b", TaskState::Running),
                    task("c", TaskState::Running),
                ],
                ..Default::default()
            },
        );
        absorb(
            &mut o,
            ClusterDelta {
                upserted_tasks: vec![
                    task("a", TaskState::Killed),
                    task("b", TaskState::Lost),
                    task("c", TaskState::Finished),
                ],
                ..Default::default()
            },
        );
        assert_eq!(o.interruptions.len(), 1, "{:?}", o.interruptions);
        assert!(o.interruptions[0].contains("TASK_STATE_LOST"));
        // The same lost task in a later full snapshot (a reconnect) is not counted twice.
        absorb(
            &mut o,
            ClusterDelta {
                full: true,
                upserted_tasks: vec![task("b", TaskState::Lost)],
                ..Default::default()
            },
        );
        assert_eq!(o.interruptions.len(), 1);
        assert_eq!(o.view.running_tasks(), 0);
    }
}
