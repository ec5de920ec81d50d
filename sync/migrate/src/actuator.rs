//! Starting and stopping masters and ZooKeeper servers. Sites differ (systemd, kubectl,
//! an in-house tool), so each action can be a command from the migration YAML; an action
//! without one is carried out by the built-in local actuator, which runs processes on this
//! host (for `orca up`, tests and demos).
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::config::{ActuatorConfig, MasterAddr};

#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "the local actuator cannot {action} (it only knows processes it can find on this host): set actuator.{key} in the migration YAML"
    )]
    NotLocal { action: String, key: &'static str },
    #[error("{what} did not {outcome} within {timeout:?}")]
    Timeout {
        what: String,
        outcome: &'static str,
        timeout: Duration,
    },
    #[error("cannot start {bin}: {source} (set actuator.master-bin)")]
    MasterBin {
        bin: PathBuf,
        source: std::io::Error,
    },
}

/// One action.
#[derive(Debug, Clone)]
pub enum Action {
    StartMaster { master: MasterAddr, zk: String },
    StopMaster { http: SocketAddr },
    StartZookeeper { server: String },
    StopZookeeper { server: String },
    ArchiveZookeeper { server: String },
}

impl Action {
    fn key(&self) -> &'static str {
        match self {
            Action::StartMaster { .. } => "start-master",
            Action::StopMaster { .. } => "stop-master",
            Action::StartZookeeper { .. } => "start-zookeeper",
            Action::StopZookeeper { .. } => "stop-zookeeper",
            Action::ArchiveZookeeper { .. } => "archive-zookeeper",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::StartMaster { master, zk } => format!("start master {} on {zk}", master.http),
            Action::StopMaster { http } => format!("stop master {http}"),
            Action::StartZookeeper { server } => format!("start ZooKeeper server {server}"),
            Action::StopZookeeper { server } => format!("stop ZooKeeper server {server}"),
            Action::ArchiveZookeeper { server } => format!("archive ZooKeeper server {server}"),
        }
    }
}

/// How long a process may take to serve after a start, or to go after a stop.
const SETTLE: Duration = Duration::from_secs(30);

pub struct Actuator {
    cfg: ActuatorConfig,
    /// Where the local actuator's masters write their logs.
    log_dir: PathBuf,
}

impl Actuator {
    pub fn new(cfg: ActuatorConfig, log_dir: PathBuf) -> Self {
        Self { cfg, log_dir }
    }

    /// Carries out `action` and waits until it took effect (a started process serves, a
    /// stopped one no longer does).
    pub async fn run(&self, action: &Action) -> Result<(), ActuatorError> {
        let command = match action {
            Action::StartMaster { .. } => &self.cfg.start_master,
            Action::StopMaster { .. } => &self.cfg.stop_master,
            Action::StartZookeeper { .. } => &self.cfg.start_zookeeper,
            Action::StopZookeeper { .. } => &self.cfg.stop_zookeeper,
            Action::ArchiveZookeeper { .. } => &self.cfg.archive_zookeeper,
        };
        match command {
            Some(template) => run_command(&expand(template, action)).await?,
            None => self.run_local(action).await?,
        }
        match action {
            Action::StartMaster { master, .. } => {
                wait_port(master.http, true, &format!("master {}", master.http)).await
            }
            Action::StopMaster { http } => wait_port(*http, false, &format!("master {http}")).await,
            Action::StartZookeeper { server } | Action::StopZookeeper { server } => {
                let Ok(addr) = server.parse::<SocketAddr>() else {
                    return Ok(());
                };
                let up = matches!(action, Action::StartZookeeper { .. });
                wait_port(addr, up, &format!("ZooKeeper server {server}")).await
            }
            Action::ArchiveZookeeper { .. } => Ok(()),
        }
    }

    async fn run_local(&self, action: &Action) -> Result<(), ActuatorError> {
        match action {
            Action::StartMaster { master, zk } => self.start_local_master(master, zk),
            Action::StopMaster { http } => stop_listener(*http).await,
            Action::StopZookeeper { server } => match server.parse::<SocketAddr>() {
                Ok(addr) => stop_listener(addr).await,
                Err(_) => Err(ActuatorError::NotLocal {
                    action: format!("stop {server} (not an address of this host)"),
                    key: action.key(),
                }),
            },
            Action::StartZookeeper { .. } => Err(ActuatorError::NotLocal {
                action: action.describe(),
                key: action.key(),
            }),
            // The orchestrator archives A's tree itself; nothing more to do locally.
            Action::ArchiveZookeeper { .. } => Ok(()),
        }
    }

    fn start_local_master(&self, master: &MasterAddr, zk: &str) -> Result<(), ActuatorError> {
        let bin = self
            .cfg
            .master_bin
            .clone()
            .unwrap_or_else(default_master_bin);
        let _ = std::fs::create_dir_all(&self.log_dir);
        let log = self
            .log_dir
            .join(format!("master-{}.log", master.http).replace(':', "_"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| ActuatorError::MasterBin {
                bin: log.clone(),
                source,
            })?;
        let err = log.try_clone().map_err(|source| ActuatorError::MasterBin {
            bin: bin.clone(),
            source,
        })?;
        // Its own process group: the masters are the cluster's, not the orchestrator's, and
        // outlive it (a Ctrl-C or kill of the orchestrator leaves them serving).
        tokio::process::Command::new(&bin)
            .args(["--zk", zk])
            .args(["--http-addr", &master.http.to_string()])
            .args(["--grpc-addr", &master.grpc.to_string()])
            .args(&self.cfg.master_args)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|source| ActuatorError::MasterBin { bin, source })
    }
}

/// `orca-master` beside this program when it is there, else from PATH.
fn default_master_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("orca-master")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("orca-master"))
}

/// Fills `{host}`, `{grpc}`, `{zk}` and `{role}` in.
fn expand(template: &str, action: &Action) -> String {
    let (host, grpc, zk, role) = match action {
        Action::StartMaster { master, zk } => (
            master.http.to_string(),
            master.grpc.to_string(),
            zk.clone(),
            "master",
        ),
        Action::StopMaster { http } => (http.to_string(), String::new(), String::new(), "master"),
        Action::StartZookeeper { server }
        | Action::StopZookeeper { server }
        | Action::ArchiveZookeeper { server } => {
            (server.clone(), String::new(), String::new(), "zookeeper")
        }
    };
    template
        .replace("{host}", &host)
        .replace("{grpc}", &grpc)
        .replace("{zk}", &zk)
        .replace("{role}", role)
}

async fn run_command(command: &str) -> Result<(), ActuatorError> {
    let out = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ActuatorError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if output.is_empty() {
        output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(ActuatorError::CommandFailed {
        command: command.to_owned(),
        status: out.status.to_string(),
        output,
    })
}

/// Whether something accepts connections on `addr` within half a second.
pub async fn answers(addr: SocketAddr) -> bool {
    tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .is_ok_and(|c| c.is_ok())
}

/// Waits until `addr` accepts connections (`up`) or refuses them.
async fn wait_port(addr: SocketAddr, up: bool, what: &str) -> Result<(), ActuatorError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if answers(addr).await == up {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ActuatorError::Timeout {
                what: what.to_owned(),
                outcome: if up { "serve" } else { "stop" },
                timeout: SETTLE,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the process listening on `addr`: SIGTERM, and SIGKILL if it is still there after
/// [`SETTLE`].
async fn stop_listener(addr: SocketAddr) -> Result<(), ActuatorError> {
    let Some(pid) = listener_pid(addr) else {
        // Nothing listens: already stopped.
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + SETTLE;
    while nix::sys::signal::kill(pid, None).is_ok() && !is_zombie(pid) {
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn is_zombie(pid: Pid) -> bool {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state == 'Z')
}

/// The process holding a listening TCP socket on `addr` (found through /proc; a JVM
/// listens on an IPv6 socket even for an IPv4 address).
pub fn listener_pid(addr: SocketAddr) -> Option<i32> {
    let mut entries = procfs::net::tcp().unwrap_or_default();
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    let same_ip = |ip: std::net::IpAddr| {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        ip == addr.ip() || ip.is_unspecified()
    };
    let inode = entries
        .iter()
        .find(|e| {
            e.state == procfs::net::TcpState::Listen
                && e.local_address.port() == addr.port()
                && same_ip(e.local_address.ip())
        })?
        .inode;
    procfs::process::all_processes()
        .ok()?
        .flatten()
        .find_map(|p| {
            let owns =
                p.fd().ok()?.flatten().any(
                    |fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode),
                );
            owns.then_some(p.pid)
        })
}

/// A log folder for the local actuator under the migration's folder.
pub fn log_dir(migration_dir: &Path) -> PathBuf {
    migration_dir.join("processes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_get_the_host_role_and_urls_filled_in() {
        let start = Action::StartMaster {
            master: MasterAddr {
                http: "10.0.0.5:5050".parse().unwrap(),
                grpc: "10.0.0.5:5051".parse().unwrap(),
            },
            zk: "zk://b:2181/orca".into(),
        };
        assert_eq!(
            expand(
                "ssh {host} systemctl start orca-master --zk {zk} --grpc {grpc} # {role}",
                &start
            ),
            "ssh 10.0.0.5:5050 systemctl start orca-master --zk zk://b:2181/orca --grpc 10.0.0.5:5051 # master"
        );
        let stop = Action::StopZookeeper {
            server: "zk-a1:2181".into(),
        };
        assert_eq!(
            expand("stop {role} {host}", &stop),
            "stop zookeeper zk-a1:2181"
        );
    }

    #[tokio::test]
    async fn a_failing_command_says_what_it_printed() {
        let err = run_command("echo no such unit >&2; exit 3")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no such unit") && text.contains('3'),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_local_actuator_finds_and_stops_the_process_on_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listener_pid(addr), Some(std::process::id() as i32));
        drop(listener);
        assert_eq!(listener_pid(addr), None);
        // Nothing listens: stopping is done at once.
        stop_listener(addr).await.unwrap();
        let actuator = Actuator::new(ActuatorConfig::default(), std::env::temp_dir());
        let err = actuator
            .run(&Action::StartZookeeper {
                server: "127.0.0.1:1".into(),
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("actuator.start-zookeeper"),
            "{err}"
        );
    }
}
