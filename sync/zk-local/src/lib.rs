//! Local ZooKeeper ensembles on loopback, from the Debian `zookeeper` package (3.8).
//!
//! Each server is a `QuorumPeerMain` JVM with its own directory under a state directory:
//! `<state>/<ensemble>/node<N>/{zoo.cfg,data/myid,server.log,pid}`. The layout is the contract
//! between `cargo xtask zk …` (which starts the shared ensembles the test suite uses) and the
//! tests and benchmarks that kill and restart single servers.
//!
//! Readiness is ZooKeeper's own `ruok` four-letter command answered `imok`, polled with a
//! deadline.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Where Debian installs ZooKeeper's jars.
const JAVA_DIR: &str = "/usr/share/java";
const JARS: &[&str] = &[
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-simple.jar",
];

/// One ensemble: `size` servers on 127.0.0.1, client ports `base_port + 1 ..= base_port + size`,
/// quorum ports `base_port + 1000 + n`, election ports `base_port + 2000 + n`.
#[derive(Debug, Clone)]
pub struct Ensemble {
    pub name: String,
    pub size: u16,
    pub base_port: u16,
    /// Whether servers fsync their transaction log before acknowledging (ZooKeeper's
    /// `forceSync`, on by default as in production). Off, an ensemble measures CPU and
    /// network rather than the disk.
    pub force_sync: bool,
    dir: PathBuf,
}

impl Ensemble {
    /// Describes (does not start) an ensemble under `state_dir/name`.
    pub fn new(state_dir: &Path, name: &str, size: u16, base_port: u16) -> Self {
        Self {
            name: name.to_string(),
            size,
            base_port,
            force_sync: true,
            dir: state_dir.join(name),
        }
    }

    /// The connect string clients use: every server's client address, comma-separated.
    pub fn connect_string(&self) -> String {
        (1..=self.size)
            .map(|n| self.client_addr(n).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn client_addr(&self, node: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + node))
    }

    fn node_dir(&self, node: u16) -> PathBuf {
        self.dir.join(format!("node{node}"))
    }

    fn pid_file(&self, node: u16) -> PathBuf {
        self.node_dir(node).join("pid")
    }

    /// Checks that Java and ZooKeeper's jars are installed.
    pub fn check_installed() -> Result<()> {
        for jar in JARS {
            let path = Path::new(JAVA_DIR).join(jar);
            if !path.exists() {
                bail!(
                    "{} is missing: install ZooKeeper with `apt-get install -y zookeeper` \
                     (or run `cargo xtask setup`)",
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// Writes every server's configuration, wiping earlier data when `fresh`.
    fn write_configs(&self, fresh: bool) -> Result<()> {
        if fresh && self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        let servers: String = (1..=self.size)
            .map(|n| {
                format!(
                    "server.{n}=127.0.0.1:{}:{}\n",
                    self.base_port + 1000 + n,
                    self.base_port + 2000 + n
                )
            })
            .collect();
        for n in 1..=self.size {
            let dir = self.node_dir(n);
            let data = dir.join("data");
            fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
            fs::write(data.join("myid"), format!("{n}\n"))?;
            let mut cfg = format!(
                "tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n\
                 maxClientCnxns=0\njute.maxbuffer=1048575\nglobalOutstandingLimit=10000\n\
                 snapCount=200000\npreAllocSize=16384\n",
                data.display(),
                self.base_port + n
            );
            if !self.force_sync {
                cfg.push_str("forceSync=no\n");
            }
            if self.size > 1 {
                cfg.push_str(&servers);
            }
            fs::write(dir.join("zoo.cfg"), cfg)?;
        }
        Ok(())
    }

    /// Starts every server (fresh data) and waits until all serve.
    pub fn start(&self, timeout: Duration) -> Result<()> {
        Self::check_installed()?;
        self.stop();
        // Whatever still answers on these ports is not this ensemble's (its own servers were
        // just stopped): starting beside it would quietly use someone else's servers.
        for n in 1..=self.size {
            if serving(self.client_addr(n)) {
                bail!(
                    "{} is already served by another ZooKeeper (not {}'s, which is stopped); \
                     stop it or give this ensemble other ports",
                    self.client_addr(n),
                    self.name
                );
            }
        }
        self.write_configs(true)?;
        for n in 1..=self.size {
            self.spawn_node(n)?;
        }
        self.wait_ready(timeout)
    }

    /// Starts one server again (keeping its data) after `kill_node`.
    pub fn restart_node(&self, node: u16, timeout: Duration) -> Result<()> {
        self.spawn_node(node)?;
        let deadline = Instant::now() + timeout;
        while !serving(self.client_addr(node)) {
            if Instant::now() > deadline {
                bail!(
                    "{} server {node} did not serve within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts every server that is not running (keeping data), then waits until all serve:
    /// the way back from losing the whole ensemble (one server alone has no quorum).
    pub fn restart_stopped(&self, timeout: Duration) -> Result<()> {
        for n in 1..=self.size {
            if self.node_pid(n).is_none() {
                self.spawn_node(n)?;
            }
        }
        self.wait_ready(timeout)
    }

    fn spawn_node(&self, node: u16) -> Result<()> {
        let dir = self.node_dir(node);
        let classpath = JARS
            .iter()
            .map(|j| format!("{JAVA_DIR}/{j}"))
            .collect::<Vec<_>>()
            .join(":");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))?;
        let child = Command::new("java")
            .args([
                "-Xmx512m",
                "-Xms64m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                &classpath,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting java (is a JRE installed? `apt-get install -y zookeeper`)")?;
        fs::write(self.pid_file(node), child.id().to_string())?;
        // The JVM outlives this handle on purpose; `stop`/`kill_node` end it by its pid.
        std::mem::forget(child);
        Ok(())
    }

    /// Waits until every server answers `imok`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for n in 1..=self.size {
            while !serving(self.client_addr(n)) {
                if Instant::now() > deadline {
                    bail!(
                        "{} server {n} ({}) did not serve within {timeout:?}; see {}",
                        self.name,
                        self.client_addr(n),
                        self.node_dir(n).join("server.log").display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The pid of one server's JVM, if it runs.
    pub fn node_pid(&self, node: u16) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.pid_file(node))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    /// Kills one server with SIGKILL (a crash, not a shutdown) and waits for it to be gone.
    pub fn kill_node(&self, node: u16) -> Result<()> {
        let Some(pid) = self.node_pid(node) else {
            bail!("{} server {node} is not running", self.name);
        };
        // SAFETY: plain kill(2) on a pid this module started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.node_pid(node).is_some() && Instant::now() < deadline {
            reap(pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(self.pid_file(node));
        Ok(())
    }

    /// Stops every server that runs (SIGKILL; the data directories stay for inspection).
    pub fn stop(&self) {
        for n in 1..=self.size {
            if self.node_pid(n).is_some() {
                let _ = self.kill_node(n);
            }
        }
    }
}

/// Reaps `pid` if it is a child of this process (it is when this process started it).
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: non-blocking waitpid on one pid.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Whether the server at `addr` serves requests: `srvr` reports its mode only then.
pub fn serving(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"srvr").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.contains("Mode: ")
}

/// The two shared ensembles the test suite and benchmarks use: A (source) and B (target),
/// three servers each.
pub fn shared_ensembles(state_dir: &Path) -> [Ensemble; 2] {
    [
        Ensemble::new(state_dir, "a", 3, 21810),
        Ensemble::new(state_dir, "b", 3, 21820),
    ]
}

/// Environment variables through which `cargo xtask test` hands the shared ensembles to the
/// tests.
pub const ENV_STATE_DIR: &str = "ORCA_ZK_STATE_DIR";
