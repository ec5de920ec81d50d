//! The agent's side of `orca-task-supervisor`: starting one for a task, and waiting for one
//! to end, whether this run of the agent started it or a previous run did.
use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::Stdio,
};

use orca_task_supervisor::{Invocation, ProcessIdentity, Report};
use tokio::io::{AsyncBufReadExt as _, BufReader, unix::AsyncFd};

use super::LaunchError;

pub const BINARY: &str = "orca-task-supervisor";

/// `orca-task-supervisor` next to the running executable (where packages and `cargo build`
/// put it), else the one on `PATH`.
pub fn default_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(BINARY)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(BINARY))
}

/// A task's supervisor, to wait for.
#[derive(Debug)]
pub enum Supervisor {
    /// Started by this run of the agent: its child, reaped here.
    Child(tokio::process::Child),
    /// Started by a previous run: another process's child now (init's, or a subreaper's),
    /// watched through a pidfd.
    Adopted(AsyncFd<OwnedFd>),
}

impl Supervisor {
    /// Resolves when the supervisor has ended: the task has ended, its exit is recorded and
    /// its output written.
    pub async fn exited(self) {
        match self {
            Supervisor::Child(mut child) => {
                let _ = child.wait().await;
            }
            Supervisor::Adopted(pidfd) => {
                // A pidfd becomes readable when its process ends; an error means the same.
                let _ = pidfd.readable().await;
            }
        }
    }

    /// Takes back a supervisor a previous run of the agent started: `None` when that process
    /// is gone, including when its pid now names another process (a different start time).
    pub fn adopt(identity: ProcessIdentity) -> io::Result<Option<Supervisor>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, identity.pid as libc::pid_t, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: the descriptor was just returned by pidfd_open and is owned by no one else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after the pidfd is held: if the start time still matches now, the pidfd
        // names the process the checkpoint does (a pid is not reused while it lives).
        if !identity.is_alive() {
            return Ok(None);
        }
        // SAFETY: the AsyncFd owns the pidfd, so the descriptor stays open while registered.
        let watched =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
        Ok(Some(Supervisor::Adopted(watched)))
    }
}

/// What a supervisor is started with besides its invocation.
pub struct Start<'a> {
    pub binary: &'a Path,
    pub invocation: Invocation,
    /// The task's working directory (its sandbox).
    pub cwd: &'a Path,
    pub environment: Vec<(String, String)>,
}

/// Starts a supervisor and waits for its word: the task's pid once the task runs in its
/// cgroup, or why it could not start.
pub async fn start(start: Start<'_>) -> Result<(Supervisor, u32), LaunchError> {
    let mut command = tokio::process::Command::new(start.binary);
    command
        .args(start.invocation.to_args())
        .current_dir(start.cwd)
        .envs(start.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| LaunchError::Supervisor {
        binary: start.binary.to_path_buf(),
        source,
    })?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.start_kill();
        return Err(LaunchError::SupervisorSilent(String::new()));
    };
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line).await;
    match (read, Report::parse(&line)) {
        (_, Some(Report::Started { pid })) => Ok((Supervisor::Child(child), pid)),
        (_, Some(Report::Failed(why))) => {
            let _ = child.wait().await;
            Err(LaunchError::Supervised(why))
        }
        (_, None) => {
            // It died or said something else: nothing of the task may be left running.
            let _ = child.start_kill();
            let status = child.wait().await;
            Err(LaunchError::SupervisorSilent(format!(
                "{line:?}, then {}",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            )))
        }
    }
}
