//! A real cluster for the benchmarks, each part its own process: `orca-master` on loopback
//! ports, real `orca-agent`s running tasks in cgroups, and `sim-agents` attached to it over
//! the agent gRPC link.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    path::Path,
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A binary next to the running benchmark (`target/release/<name>`).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("the benchmark binary has a folder")?
        .join(name);
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --release` first (the benchmarks start the \
             workspace's binaries)",
            path.display()
        );
    }
    Ok(path)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// `orca-master` on free loopback ports, killed when dropped.
pub struct MasterProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl MasterProcess {
    /// Starts the master with `extra` flags (its registry in memory) and waits until its HTTP
    /// API answers. Ports are picked free; when another process took one meanwhile (the
    /// master exits, unable to listen), it starts again on others.
    pub fn start(extra: &[&str]) -> Result<Self> {
        for _ in 0..5 {
            let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let child = Command::new(sibling("orca-master")?)
                .args(["--grpc-addr", &grpc.to_string()])
                .args(["--http-addr", &http.to_string()])
                .args(["--registry", "memory"])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .context("starting orca-master")?;
            let mut master = MasterProcess { child, grpc, http };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(http).is_ok() {
                    return Ok(master);
                }
                if master.child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("orca-master did not listen on {http} within 20 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("orca-master exited at start five times (see its errors above)")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process ends with no chance to say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `orca-agent` (task runner in cgroups, the cheapest probe) on a master; killed
/// with SIGKILL when dropped, its tasks living on under their supervisors.
pub struct AgentProcess {
    pub child: Child,
    /// Lines of its log, as they come.
    lines: std::sync::mpsc::Receiver<String>,
}

/// How long an agent may take to log what a benchmark waits for.
const AGENT_WAIT: Duration = Duration::from_secs(120);

impl AgentProcess {
    pub fn start(
        master: &MasterProcess,
        work: &Path,
        cgroups_root: &str,
        hostname: &str,
        resources: &str,
    ) -> Result<Self> {
        Self::following(
            &master.grpc.to_string(),
            work,
            cgroups_root,
            hostname,
            resources,
        )
    }

    /// An agent whose `--master` is `master` (an address or a `zk://` URL).
    pub fn following(
        master: &str,
        work: &Path,
        cgroups_root: &str,
        hostname: &str,
        resources: &str,
    ) -> Result<Self> {
        let mut child = Command::new(sibling("orca-agent")?)
            .arg("run")
            .args(["--master", master])
            .args(["--probe", "proc", "--interval", "5s"])
            .args(["--docker-socket", "", "--containerd-socket", ""])
            .arg("--work-dir")
            .arg(work)
            .args(["--cgroups-root", cgroups_root])
            .args(["--hostname", hostname, "--resources", resources])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting orca-agent")?;
        let stderr = child.stderr.take().context("the agent's stderr")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(AgentProcess { child, lines })
    }

    /// Waits for a log line containing `text`; returns it and when it came.
    pub fn wait_line(&self, text: &str) -> Result<(String, Instant)> {
        let deadline = Instant::now() + AGENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("the agent never logged {text:?}"))?;
            if line.contains(text) {
                return Ok((line, Instant::now()));
            }
        }
    }

    /// The lines it logged since they were last read.
    pub fn logged(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `sim-agents` attached to a master; stops (and reports its counts) when finished.
pub struct SimAgents {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl SimAgents {
    /// Starts `agents` simulated agents on `master` (a gRPC address, or `zk://…` to follow
    /// the leader) and waits until every one registered.
    pub fn start(master: &str, agents: usize, resources: &str, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(sibling("sim-agents")?)
            .args(["--master", master])
            .args(["--agents", &agents.to_string()])
            .args(["--resources", resources])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting sim-agents")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("sim-agents' stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if !line.starts_with("ready") {
            bail!("sim-agents did not get ready: {line:?}");
        }
        Ok(SimAgents {
            child,
            stdin,
            stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the agents and returns what they counted (launched, updates, acknowledgements).
    pub fn finish(mut self) -> Result<serde_json::Value> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"x");
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.child.wait();
        serde_json::from_str(&line).with_context(|| format!("sim-agents' counts: {line:?}"))
    }
}

impl Drop for SimAgents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a benchmark's real tasks leave: their cgroups under `cgroups_root` (every process in
/// them is killed, then they are removed) and the agents' work directories under `work`.
/// Cleaned when dropped, so a benchmark that fails half-way leaves no task running.
pub struct TaskLeftovers {
    pub cgroups_root: String,
    pub work: PathBuf,
}

impl Drop for TaskLeftovers {
    fn drop(&mut self) {
        if let Ok(driver) = orca_agent::tasks::cgroups::Driver::detect() {
            driver.remove_all(&self.cgroups_root);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
