//! `orca-master` processes for the tests that run several masters (HA, migration).
#![allow(dead_code)]
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const WAIT: Duration = Duration::from_secs(30);

/// A free loopback port below the kernel's ephemeral range, so no outgoing connection takes
/// it between this check and the master binding it.
fn free_port() -> u16 {
    three_free_ports()
}

/// One `orca-master` process, killed when dropped.
pub struct MasterProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub log: PathBuf,
}

impl MasterProcess {
    pub fn start(zk: &str, dir: &std::path::Path, name: &str, extra: &[&str]) -> Self {
        Self::start_as(zk, dir, name, extra, None)
    }

    /// As user `uid` (so the test can drop this master's packets alone, by owner). Ports
    /// are picked free, but tests running beside this one pick ports too: a master that
    /// could not listen is started again on others.
    pub fn start_as(
        zk: &str,
        dir: &std::path::Path,
        name: &str,
        extra: &[&str],
        uid: Option<u32>,
    ) -> Self {
        use std::os::unix::process::CommandExt as _;
        for _ in 0..5 {
            let (http, grpc) = (
                SocketAddr::from(([127, 0, 0, 1], free_port())),
                SocketAddr::from(([127, 0, 0, 1], free_port())),
            );
            let log = dir.join(format!("{name}.log"));
            let mut command = Command::new(super::bin("orca-master"));
            if let Some(uid) = uid {
                command.uid(uid).gid(uid);
            }
            let child = command
                .args(["--zk", zk, "--zk-session-timeout", "4s"])
                .args([
                    "--http-addr",
                    &http.to_string(),
                    "--grpc-addr",
                    &grpc.to_string(),
                ])
                .args(["--allocation-interval", "100ms"])
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting orca-master");
            let mut master = MasterProcess {
                child,
                http,
                grpc,
                log,
            };
            let deadline = Instant::now() + WAIT;
            loop {
                // Its own log, not a connection: another test's process may hold the port
                // this one could not listen on (seen: the master had exited, the port
                // answered).
                if master.log().contains("master serving") {
                    return master;
                }
                if let Some(status) = master.child.try_wait().unwrap() {
                    let log = master.log();
                    if log.contains("cannot listen") {
                        break;
                    }
                    // Exiting by itself is what some tests wait for.
                    let _ = status;
                    return master;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not listen: {}",
                    master.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("{name}: no free ports after 5 tries");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status once it exited by itself within `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `base`, `base + 1` and `base + 2` all free on loopback, below the kernel's ephemeral
/// range (32768 and up here) so no outgoing connection of a test running beside this one
/// takes them meanwhile.
pub fn three_free_ports() -> u16 {
    free_ports(3)
}

/// A base port with `count` free ports from it. Tests of one binary run side by side in one
/// process: a port handed out once is never handed out again, even before its user binds it.
pub fn free_ports(count: u16) -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
        ^ CALLS
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut handed_out = HANDED_OUT.lock().unwrap();
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 25_000 + (seed >> 33) as u16 % 6_000;
        let ports = base..base + count;
        if ports.clone().all(|p| !handed_out.contains(&p))
            && ports
                .clone()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            handed_out.extend(ports);
            return base;
        }
    }
}
