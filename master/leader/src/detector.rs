//! Following the leading master through ZooKeeper, as Mesos's `ZooKeeperMasterDetector`
//! does: watch the contenders under the path, read the lowest one's `MasterInfo`, publish it,
//! and start over on every change. A lost session is replaced; while there is none the
//! leader is unknown.
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client::{Client, Error as ZkError, SessionState};

use crate::{MasterInfo, ZkUrl, connect, contenders};

/// Publishes the current leader (`None`: none elected, or ZooKeeper unreachable).
#[derive(Clone, Debug)]
pub struct Detector {
    leader: watch::Receiver<Option<MasterInfo>>,
    url: ZkUrl,
}

impl Detector {
    /// Starts following the leader under `url` (in the background, for as long as a clone
    /// of the detector lives).
    pub fn start(url: ZkUrl, session_timeout: Duration) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(follow(url.clone(), session_timeout, tx));
        Detector { leader: rx, url }
    }

    pub fn url(&self) -> &ZkUrl {
        &self.url
    }

    /// The leader as last seen.
    pub fn leader(&self) -> Option<MasterInfo> {
        self.leader.borrow().clone()
    }

    /// Waits until the leader changes (or becomes unknown) and returns it.
    pub async fn changed(&mut self) -> Option<MasterInfo> {
        if self.leader.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.leader.borrow_and_update().clone()
    }

    /// Waits until some master leads, at most `timeout`.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Option<MasterInfo> {
        let found = self.leader.wait_for(Option::is_some);
        match tokio::time::timeout(timeout, found).await {
            Ok(Ok(info)) => info.clone(),
            _ => None,
        }
    }

    /// Takes the current leader as seen: [`Detector::changed`] waits for the next change.
    pub fn mark_seen(&mut self) {
        self.leader.borrow_and_update();
    }

    /// A receiver of every change, for callers that select on it.
    pub fn subscribe(&self) -> watch::Receiver<Option<MasterInfo>> {
        self.leader.clone()
    }
}

async fn follow(mut url: ZkUrl, session_timeout: Duration, tx: watch::Sender<Option<MasterInfo>>) {
    let mut backoff = Duration::from_millis(100);
    while !tx.is_closed() {
        // A `file://` URL is read again for every new session.
        if let Some(now) = url.reread().filter(|now| *now != url) {
            tracing::info!(from = %url, to = %now, "the master URL's file names another ensemble");
            url = now;
        }
        match connect(&url, session_timeout).await {
            Ok(client) => {
                backoff = Duration::from_millis(100);
                let why = watch_leader(&client, &url.path, &tx).await;
                tracing::info!(zk = %url, %why, "leader detection restarts with a new session");
            }
            Err(e) => {
                tracing::warn!(zk = %url, %e, retry_in = ?backoff, "cannot reach ZooKeeper to find the leading master");
            }
        }
        tx.send_if_modified(|leader| leader.take().is_some());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Follows the leader on one session until it ends (the returned reason).
async fn watch_leader(
    client: &Client,
    path: &str,
    tx: &watch::Sender<Option<MasterInfo>>,
) -> ZkError {
    let mut state = client.state_watcher();
    loop {
        if tx.is_closed() {
            return ZkError::ClientClosed;
        }
        let (children, watcher) = match client.list_and_watch_children(path).await {
            Ok(found) => found,
            Err(ZkError::NoNode) => {
                // No master ever ran here: wait for the path to appear.
                tx.send_if_modified(|leader| leader.take().is_some());
                match client.check_and_watch_stat(path).await {
                    Ok((Some(_), _)) => continue,
                    Ok((None, watcher)) => {
                        tokio::select! {
                            _ = watcher.changed() => continue,
                            s = state.changed() => if let Some(e) = ended(s) { return e } else { continue },
                        }
                    }
                    Err(e) => return e,
                }
            }
            Err(e) => return e,
        };
        let leader = match contenders(&children).first() {
            None => None,
            Some((_, name)) => match client.get_data(&format!("{path}/{name}")).await {
                Ok((data, _)) => match MasterInfo::from_json(&data) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        tracing::warn!(znode = %format!("{path}/{name}"), %e, "the leading contender's data is not MasterInfo JSON");
                        None
                    }
                },
                // Gone between the listing and the read: the watch fires next.
                Err(ZkError::NoNode) => None,
                Err(e) => return e,
            },
        };
        tx.send_if_modified(|current| {
            let changed = *current != leader;
            if changed {
                *current = leader.clone();
            }
            changed
        });
        let children_changed = watcher.changed();
        tokio::pin!(children_changed);
        loop {
            tokio::select! {
                _ = &mut children_changed => break,
                s = state.changed() => {
                    if let Some(e) = ended(s) {
                        return e;
                    }
                    if s == SessionState::Disconnected {
                        // Not knowing is not the same as no leader: keep the last one seen
                        // until the session is lost.
                        continue;
                    }
                }
                _ = tx.closed() => return ZkError::ClientClosed,
            }
        }
    }
}

fn ended(state: SessionState) -> Option<ZkError> {
    match state {
        SessionState::Expired => Some(ZkError::SessionExpired),
        SessionState::AuthFailed => Some(ZkError::AuthFailed),
        SessionState::Closed => Some(ZkError::ClientClosed),
        _ => None,
    }
}

/// Where a client finds the master: one fixed address, or the leader in ZooKeeper.
#[derive(Clone, Debug)]
pub enum MasterLocator {
    /// `host:port` or a URL of one master's gRPC doors.
    Fixed(String),
    Zk(Detector),
}

impl MasterLocator {
    /// `zk://…`/`file://…` follows the leader in ZooKeeper; anything else is one address.
    pub fn new(master: &str, session_timeout: Duration) -> Result<Self, crate::UrlError> {
        if ZkUrl::is_zk(master) {
            Ok(MasterLocator::Zk(Detector::start(
                ZkUrl::parse(master)?,
                session_timeout,
            )))
        } else {
            Ok(MasterLocator::Fixed(master.to_owned()))
        }
    }

    /// Checks a `--master` value without connecting anywhere: a `zk://` URL that parses, a
    /// `file://` path (read where it is used), or `host:port` / `http(s)://host:port`.
    pub fn check(master: &str) -> Result<(), crate::UrlError> {
        let master = master.trim();
        if master.starts_with("zk://") {
            return ZkUrl::parse(master).map(|_| ());
        }
        if let Some(path) = master.strip_prefix("file://") {
            return if path.is_empty() {
                Err(crate::UrlError::Master(master.to_owned()))
            } else {
                Ok(())
            };
        }
        let authority = master
            .strip_prefix("http://")
            .or_else(|| master.strip_prefix("https://"))
            .unwrap_or(master)
            .trim_end_matches('/');
        let valid = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if valid {
            Ok(())
        } else {
            Err(crate::UrlError::Master(master.to_owned()))
        }
    }

    /// The gRPC endpoint (`http://ip:port`) of the master to talk to now, waiting up to
    /// `timeout` for a leader to be known.
    pub async fn grpc_endpoint(&mut self, timeout: Duration) -> Option<String> {
        match self {
            MasterLocator::Fixed(addr) if addr.contains("://") => Some(addr.clone()),
            MasterLocator::Fixed(addr) => Some(format!("http://{addr}")),
            MasterLocator::Zk(detector) => {
                let info = detector.wait_leader(timeout).await?;
                match info.grpc_addr() {
                    Some(grpc) => Some(format!("http://{grpc}")),
                    None => {
                        tracing::warn!(leader = ?info.pid, "the leading master is not an Orca master (no gRPC address in its MasterInfo)");
                        None
                    }
                }
            }
        }
    }

    /// Takes the current leader as seen (clones made after this wait for the next change).
    pub fn mark_seen(&mut self) {
        if let MasterLocator::Zk(detector) = self {
            detector.mark_seen();
        }
    }

    /// Resolves when the leader changes (never, for a fixed address).
    pub async fn changed(&mut self) {
        match self {
            MasterLocator::Fixed(_) => std::future::pending().await,
            MasterLocator::Zk(detector) => {
                detector.changed().await;
            }
        }
    }

    /// How to name the master in logs.
    pub fn describe(&self) -> String {
        match self {
            MasterLocator::Fixed(addr) => addr.clone(),
            MasterLocator::Zk(d) => match d.leader() {
                Some(info) => format!("{} (leader at {})", d.url(), info.http_authority()),
                None => format!("{} (no leader known)", d.url()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MasterLocator;

    #[test]
    fn a_master_is_host_port_a_url_of_one_or_a_zookeeper_url() {
        for good in [
            "127.0.0.1:7070",
            "master-1.example:7070",
            "[::1]:7070",
            "http://10.0.0.1:7070",
            "zk://zk1:2181,zk2:2181/mesos",
            "file:///etc/orca/master",
        ] {
            assert!(MasterLocator::check(good).is_ok(), "{good} is a master");
        }
        for bad in [
            "",
            "master-1",
            "master-1:http",
            "master-1:0",
            ":7070",
            "zk://zk1:2181",
            "file://",
        ] {
            assert!(
                MasterLocator::check(bad).is_err(),
                "{bad:?} is not a master"
            );
        }
    }
}
