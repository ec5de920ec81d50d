//! The master the agent follows, switchable while it runs: an operator (through the master's
//! `SwitchAgentMaster`, or `orca-agent switch-master` on the agent's control socket) moves a
//! running agent to another master or ZooKeeper ensemble. The task link and the report stream
//! follow the switch at once; the agent re-registers there with the same id and keeps its
//! tasks. Mesos needs an agent restart for this.
//!
//! The switch is kept in the work directory (`master.json`, next to the agent id) with the
//! `--master` it replaced: a restart with that same `--master` follows the new master, as the
//! operator left it; a restart with another `--master` means the configuration changed since,
//! and the flag wins.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use orca_leader::{DEFAULT_SESSION_TIMEOUT, MasterLocator, UrlError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Why a switch was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Address(#[from] UrlError),
    #[error(
        "cannot keep the switch in {path}: {source}; the agent stays on its master (free the \
         disk or fix the work directory's permissions, then switch again)"
    )]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The master being followed: as given, and how it is found.
#[derive(Clone, Debug)]
pub struct Target {
    pub address: String,
    pub locator: MasterLocator,
}

/// The agent is registered with `master` as `agent_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub master: String,
    pub agent_id: String,
}

/// What `master.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct SwitchRecord {
    /// The `--master` the switch replaced.
    flag: String,
    /// The master switched to.
    master: String,
}

const SWITCH_FILE: &str = "master.json";

/// Shared by the task link, the report stream and the control socket (clones are one switch).
#[derive(Clone, Debug)]
pub struct MasterSwitch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: watch::Sender<Target>,
    registration: watch::Sender<Option<Registration>>,
    /// The `--master` the agent was started with.
    flag: String,
    /// Where a switch is kept (`None`: not kept, e.g. an agent that runs no tasks).
    work_dir: Option<PathBuf>,
    /// Serialises switches: the file and the target change together.
    switching: std::sync::Mutex<()>,
    /// TLS to every master followed (`None`: plain connections).
    tls: Option<orca_auth::tls::ClientTls>,
}

impl MasterSwitch {
    /// Follows `flag` (`--master`), or the master a previous run was switched to while it was
    /// started with this same flag (kept in `work_dir`).
    pub fn new(flag: &str, work_dir: Option<&Path>) -> Result<Self, UrlError> {
        let kept = work_dir.and_then(|dir| Self::kept(dir, flag));
        let address = kept.unwrap_or_else(|| flag.to_owned());
        let locator = MasterLocator::new(&address, DEFAULT_SESSION_TIMEOUT)?;
        let (target, _) = watch::channel(Target { address, locator });
        let (registration, _) = watch::channel(None);
        Ok(MasterSwitch {
            inner: Arc::new(Inner {
                target,
                registration,
                flag: flag.to_owned(),
                work_dir: work_dir.map(Path::to_owned),
                switching: std::sync::Mutex::new(()),
                tls: None,
            }),
        })
    }

    /// Connects to masters over TLS (`--tls-ca`, `--tls-cert`, `--tls-key`). Called on a
    /// switch no clone has been made of yet.
    pub fn with_tls(mut self, tls: Option<orca_auth::tls::ClientTls>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_tls is called before the switch is shared")
            .tls = tls;
        self
    }

    /// A gRPC endpoint for a master's address as the locator gives it, over TLS when asked.
    pub fn endpoint(
        &self,
        address: &str,
    ) -> Result<tonic::transport::Endpoint, orca_auth::tls::TlsError> {
        orca_auth::tls::endpoint(self.inner.tls.as_ref(), address)
    }

    /// The master a previous run was switched to, if it was started with `flag` too.
    fn kept(work_dir: &Path, flag: &str) -> Option<String> {
        let path = work_dir.join(SWITCH_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), %e, "cannot read the kept master switch; following --master");
                return None;
            }
        };
        match serde_json::from_slice::<SwitchRecord>(&text) {
            Ok(record) if record.flag == flag => {
                tracing::info!(
                    master = %record.master,
                    flag,
                    "following the master this agent was switched to (start it with another \
                     --master to leave it)"
                );
                Some(record.master)
            }
            Ok(record) => {
                tracing::info!(
                    switched_to = %record.master,
                    flag,
                    "--master changed since the agent was switched; following --master"
                );
                let _ = std::fs::remove_file(&path);
                None
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), %e, "the kept master switch is damaged; following --master");
                None
            }
        }
    }

    /// The master followed now.
    pub fn target(&self) -> Target {
        self.inner.target.borrow().clone()
    }

    /// A follower of every switch, for one loop that talks to the master.
    pub fn follow(&self) -> MasterFollower {
        MasterFollower {
            target: self.inner.target.subscribe(),
        }
    }

    /// Moves the agent to `master`; returns the master it left. Switching to the master
    /// followed now changes nothing.
    pub fn switch(&self, master: &str) -> Result<String, SwitchError> {
        let master = master.trim();
        MasterLocator::check(master)?;
        let _one_at_a_time = self
            .inner
            .switching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let previous = self.target().address;
        if previous == master {
            return Ok(previous);
        }
        let locator = MasterLocator::new(master, DEFAULT_SESSION_TIMEOUT)?;
        self.persist(master)?;
        tracing::info!(from = %previous, to = %master, "switching to another master; the agent re-registers there with the same id and its tasks");
        self.inner.registration.send_replace(None);
        self.inner.target.send_replace(Target {
            address: master.to_owned(),
            locator,
        });
        Ok(previous)
    }

    /// Keeps the switch for the next run (or forgets it, back on `--master`).
    fn persist(&self, master: &str) -> Result<(), SwitchError> {
        let Some(dir) = &self.inner.work_dir else {
            return Ok(());
        };
        let path = dir.join(SWITCH_FILE);
        let failed = |source| SwitchError::Persist {
            path: path.clone(),
            source,
        };
        if master == self.inner.flag {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
                _ => Ok(()),
            };
        }
        let record = SwitchRecord {
            flag: self.inner.flag.clone(),
            master: master.to_owned(),
        };
        let partial = path.with_extension("partial");
        let text = serde_json::to_vec(&record).expect("a switch record serialises");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(failed)
    }

    /// The link registered with the master it follows.
    pub fn registered(&self, master: &str, agent_id: &str) {
        self.inner.registration.send_replace(Some(Registration {
            master: master.to_owned(),
            agent_id: agent_id.to_owned(),
        }));
    }

    /// The link to the master went down.
    pub fn unregistered(&self) {
        self.inner.registration.send_replace(None);
    }

    /// The registration now, if any.
    pub fn registration(&self) -> Option<Registration> {
        self.inner.registration.borrow().clone()
    }

    /// Waits up to `timeout` for the agent to be registered with `master`; returns how long
    /// that took from `since`.
    pub async fn wait_registered(
        &self,
        master: &str,
        since: Instant,
        timeout: Duration,
    ) -> Option<Duration> {
        let mut registration = self.inner.registration.subscribe();
        let found = registration.wait_for(|r| r.as_ref().is_some_and(|r| r.master == master));
        match tokio::time::timeout(timeout, found).await {
            Ok(Ok(_)) => Some(since.elapsed()),
            _ => None,
        }
    }
}

/// One loop's view of the switch.
#[derive(Debug)]
pub struct MasterFollower {
    target: watch::Receiver<Target>,
}

impl MasterFollower {
    /// The master to talk to now (taken as seen: [`MasterFollower::switched`] waits for the
    /// next switch).
    pub fn current(&mut self) -> Target {
        self.target.borrow_and_update().clone()
    }

    /// Resolves when an operator switches the agent to another master.
    pub async fn switched(&mut self) {
        if self.target.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("orca-switch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_switch_is_followed_now_and_after_a_restart_with_the_same_flag() {
        let dir = work_dir("kept");
        let switch = MasterSwitch::new("10.0.0.1:7070", Some(&dir)).unwrap();
        let mut follower = switch.follow();
        assert_eq!(follower.current().address, "10.0.0.1:7070");
        assert_eq!(switch.switch("10.0.0.2:7070").unwrap(), "10.0.0.1:7070");
        tokio::time::timeout(Duration::from_secs(1), follower.switched())
            .await
            .expect("the follower sees the switch");
        assert_eq!(follower.current().address, "10.0.0.2:7070");

        let restarted = MasterSwitch::new("10.0.0.1:7070", Some(&dir)).unwrap();
        assert_eq!(restarted.target().address, "10.0.0.2:7070");
        // Switching back to --master forgets the switch.
        restarted.switch("10.0.0.1:7070").unwrap();
        assert!(!dir.join(SWITCH_FILE).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_changed_flag_wins_over_a_kept_switch() {
        let dir = work_dir("flag");
        MasterSwitch::new("10.0.0.1:7070", Some(&dir))
            .unwrap()
            .switch("10.0.0.2:7070")
            .unwrap();
        let reconfigured = MasterSwitch::new("10.0.0.3:7070", Some(&dir)).unwrap();
        assert_eq!(reconfigured.target().address, "10.0.0.3:7070");
        assert!(!dir.join(SWITCH_FILE).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_bad_address_changes_nothing() {
        let dir = work_dir("bad");
        let switch = MasterSwitch::new("10.0.0.1:7070", Some(&dir)).unwrap();
        let mut follower = switch.follow();
        follower.current();
        let err = switch.switch("zk://no-path:2181").unwrap_err();
        assert!(err.to_string().contains("path"), "{err}");
        assert_eq!(switch.target().address, "10.0.0.1:7070");
        assert!(!dir.join(SWITCH_FILE).exists());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), follower.switched())
                .await
                .is_err(),
            "no switch happened"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_switch_waits_for_the_registration_with_the_new_master() {
        let switch = MasterSwitch::new("10.0.0.1:7070", None).unwrap();
        switch.registered("10.0.0.1:7070", "S1");
        switch.switch("10.0.0.2:7070").unwrap();
        assert_eq!(switch.registration(), None, "no longer registered");
        let waiter = switch.clone();
        let since = Instant::now();
        let wait = tokio::spawn(async move {
            waiter
                .wait_registered("10.0.0.2:7070", since, Duration::from_secs(5))
                .await
        });
        switch.registered("10.0.0.2:7070", "S1");
        assert!(wait.await.unwrap().is_some());
    }
}
