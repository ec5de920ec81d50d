//! Leader election for highly-available masters, the Mesos way, in ZooKeeper.
//!
//! Each master joins the group under the cluster's path with an ephemeral sequential
//! `json.info_<seq>` znode holding its `MasterInfo`; the lowest sequence leads. The leader
//! opens the registry ([`ZkStore`]) fenced on its own znode, recovers from it, and acts
//! ([`Cluster::lead`]) until its term ends:
//!
//! - its ZooKeeper connection drops: it stops acting at once ([`Cluster::suspend`]) and
//!   resumes if the same session comes back; after a session timeout without it, or when the
//!   session expires, the term ends (ZooKeeper elects another master no sooner than that);
//! - its contender znode is removed, or a registry write fails: the term ends.
//!
//! A follower watches the group and publishes the leader ([`Cluster::follow`]), and keeps a
//! TCP connection to the leader's HTTP port: when that closes and a new connection is
//! refused, the leader's process is gone, and the follower removes the dead leader's
//! contender at once instead of waiting out its ZooKeeper session (a leader that is merely
//! unreachable is never removed this way; its session decides).
//!
//! Fatal, for the process (as for a Mesos master): a registry that does not parse (never
//! start on a partial registry) and another live master with this master's id.
use std::{net::SocketAddr, time::Duration};

use orca_leader::{
    CONTENDER_LABEL, MasterInfo, ZkUrl, acls, connect, contenders,
    zk::{Client, CreateMode, Error as ZkError, SessionState},
};
use tokio::{io::AsyncReadExt as _, net::TcpStream, sync::mpsc, sync::watch};

use crate::cluster::{
    Cluster,
    registry::{StoreError, zk::ZkStore},
};

/// How a master takes part in the election.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub url: ZkUrl,
    /// The ZooKeeper session timeout (Mesos `--zk_session_timeout`): how long a leader that
    /// cannot reach ZooKeeper keeps its place before another master is elected.
    pub session_timeout: Duration,
}

/// What stops a master for good.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("{0}")]
    Registry(StoreError),
    #[error(
        "another master with id {id} is in the group (znode {znode}, at {at}); every master needs its own --master-id"
    )]
    DuplicateId {
        id: String,
        znode: String,
        at: String,
    },
}

/// Why a session's part in the election ended.
enum SessionEnd {
    Shutdown,
    /// Take part again on a new session.
    Lost(String),
}

/// Takes part in the election until `shutdown` turns true (then leaves the group at once)
/// or a fatal error.
pub async fn run(
    cluster: Cluster,
    config: ElectionConfig,
    info: MasterInfo,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ElectionError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let client = tokio::select! {
            c = connect(&config.url, config.session_timeout) => c,
            _ = shutdown.changed() => return Ok(()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(zk = %config.url, %e, retry_in = ?backoff, "cannot reach ZooKeeper; this master does not act until it can");
                cluster.follow(None);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let ended = take_part(&cluster, &client, &config, &info, &mut shutdown).await;
        cluster.follow(None);
        match ended {
            Ok(SessionEnd::Shutdown) => {
                // Leave the group now rather than when the session times out.
                drop(client);
                return Ok(());
            }
            Ok(SessionEnd::Lost(why)) => {
                tracing::warn!(%why, "this master's part in the election ends; it joins again");
            }
            Err(fatal) => return Err(fatal),
        }
    }
}

/// One session: join the group, then follow or lead until the session's part ends.
async fn take_part(
    cluster: &Cluster,
    client: &Client,
    config: &ElectionConfig,
    info: &MasterInfo,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, ElectionError> {
    let path = &config.url.path;
    let acls = acls(&config.url);
    if let Err(e) = client
        .mkdir(path, &CreateMode::Persistent.with_acls(acls))
        .await
    {
        return Ok(SessionEnd::Lost(format!("cannot create {path}: {e}")));
    }
    if let Some(end) = clear_predecessors(client, path, info).await? {
        return Ok(end);
    }
    let mine = match client
        .create(
            &format!("{path}/{CONTENDER_LABEL}_"),
            &info.to_json(),
            &CreateMode::EphemeralSequential.with_acls(acls),
        )
        .await
    {
        Ok((_, sequence)) => format!("{CONTENDER_LABEL}_{sequence}"),
        Err(e) => return Ok(SessionEnd::Lost(format!("cannot join the group: {e}"))),
    };
    tracing::info!(znode = %format!("{path}/{mine}"), "joined the masters' group");
    let mut state = client.state_watcher();
    loop {
        let (children, children_changed) = match client.list_and_watch_children(path).await {
            Ok(found) => found,
            Err(e) => return Ok(SessionEnd::Lost(format!("cannot list {path}: {e}"))),
        };
        let members = contenders(&children);
        if !members.iter().any(|(_, name)| *name == mine) {
            return Ok(SessionEnd::Lost(format!(
                "this master's contender {path}/{mine} was removed"
            )));
        }
        let (_, leader) = members[0];
        if leader == mine {
            drop(children_changed);
            return lead(cluster, client, config, &mine, shutdown).await;
        }
        let children_changed = children_changed.changed();
        let leader_path = format!("{path}/{leader}");
        let leader_info = match client.get_data(&leader_path).await {
            Ok((data, _)) => MasterInfo::from_json(&data)
                .inspect_err(|e| tracing::warn!(znode = %leader_path, %e, "the leader's data is not MasterInfo JSON"))
                .ok(),
            Err(ZkError::NoNode) => continue,
            Err(e) => return Ok(SessionEnd::Lost(format!("cannot read {leader_path}: {e}"))),
        };
        if cluster.leader_info() != leader_info {
            tracing::info!(leader = ?leader_info.as_ref().map(|l| l.http_authority()), "following the leading master");
        }
        let probe = leader_info.as_ref().map(MasterInfo::http_addr);
        cluster.follow(leader_info);
        let gone = async {
            match probe {
                Some(addr) => leader_process_gone(addr).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(children_changed, gone);
        loop {
            tokio::select! {
                _ = &mut children_changed => break,
                s = state.changed() => match s {
                    SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => {
                        return Ok(SessionEnd::Lost(format!("ZooKeeper session {s:?}")));
                    }
                    _ => continue,
                },
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                () = &mut gone => {
                    tracing::warn!(znode = %leader_path, "the leader's process is gone (its HTTP port refuses connections); removing its contender instead of waiting for its session to expire");
                    match client.delete(&leader_path, None).await {
                        Ok(()) | Err(ZkError::NoNode) => {}
                        Err(e) => tracing::warn!(znode = %leader_path, %e, "cannot remove the dead leader's contender"),
                    }
                    break;
                }
            }
        }
    }
}

/// Before joining: a contender that claims this master's address is a previous run of a
/// master on this address, now dead (this process holds the address): it is removed. One
/// with this master's id at another address is a second master with the same id: fatal.
async fn clear_predecessors(
    client: &Client,
    path: &str,
    info: &MasterInfo,
) -> Result<Option<SessionEnd>, ElectionError> {
    let children = match client.list_children(path).await {
        Ok(c) => c,
        Err(e) => return Ok(Some(SessionEnd::Lost(format!("cannot list {path}: {e}")))),
    };
    for (_, name) in contenders(&children) {
        let znode = format!("{path}/{name}");
        let Ok((data, _)) = client.get_data(&znode).await else {
            continue;
        };
        let Ok(other) = MasterInfo::from_json(&data) else {
            continue;
        };
        if other.http_addr() == info.http_addr() {
            tracing::info!(%znode, "removing the contender of a previous master on this address");
            let _ = client.delete(&znode, None).await;
        } else if other.id == info.id {
            return Err(ElectionError::DuplicateId {
                id: info.id.clone(),
                znode,
                at: other.http_authority(),
            });
        }
    }
    Ok(None)
}

/// Leads until the term ends.
async fn lead(
    cluster: &Cluster,
    client: &Client,
    config: &ElectionConfig,
    mine: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, ElectionError> {
    let path = &config.url.path;
    let contender = format!("{path}/{mine}");
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let opened = ZkStore::open(
        client.clone(),
        path,
        contender.clone(),
        acls(&config.url),
        failed_tx,
    )
    .await;
    let (store, registry) = match opened {
        Ok(opened) => opened,
        Err(e @ StoreError::CorruptZnode { .. }) => return Err(ElectionError::Registry(e)),
        Err(e) => return Ok(SessionEnd::Lost(format!("cannot read the registry: {e}"))),
    };
    let (agents, frameworks) = (registry.agents.len(), registry.frameworks.len());
    if let Err(e) = cluster.lead(Box::new(store), registry) {
        return Ok(SessionEnd::Lost(format!("cannot recover: {e}")));
    }
    tracing::info!(znode = %contender, agents, frameworks, "elected: this master leads, recovered from the registry");
    let removed = match client.check_and_watch_stat(&contender).await {
        Ok((Some(_), watcher)) => watcher,
        Ok((None, _)) => return Ok(SessionEnd::Lost("the contender vanished".into())),
        Err(e) => return Ok(SessionEnd::Lost(format!("cannot watch {contender}: {e}"))),
    };
    let removed = removed.changed();
    tokio::pin!(removed);
    let mut state = client.state_watcher();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let suspended_too_long = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut removed => {
                return Ok(SessionEnd::Lost(format!("this master's contender {contender} was removed")));
            }
            Some(e) = failed.recv() => {
                return Ok(SessionEnd::Lost(format!("a registry write failed: {e}")));
            }
            s = state.changed() => match s {
                SessionState::Disconnected => {
                    tracing::warn!("lost the connection to ZooKeeper: acting on nothing until it is back");
                    cluster.suspend();
                    deadline = Some(tokio::time::Instant::now() + config.session_timeout);
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                    if deadline.take().is_some() {
                        tracing::info!("reconnected to ZooKeeper with the same session: acting again");
                        cluster.resume();
                    }
                }
                other => return Ok(SessionEnd::Lost(format!("ZooKeeper session {other:?}"))),
            },
            () = suspended_too_long => {
                return Ok(SessionEnd::Lost("disconnected from ZooKeeper for a whole session timeout".into()));
            }
            _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
        }
    }
}

/// Resolves once the process serving `addr` is gone: a connection held open to it closed,
/// and a new one is refused. Never resolves while the address cannot be reached at all
/// (a partition is for the ZooKeeper session to decide).
async fn leader_process_gone(addr: SocketAddr) {
    loop {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Ok(Ok(mut stream)) => {
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
