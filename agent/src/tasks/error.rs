//! Why a task could not be launched; the message goes to the framework in the TASK_FAILED
//! update (`REASON_CONTAINER_LAUNCH_FAILED`) and says what to change.
use std::{io, path::PathBuf};

use super::cgroups::CgroupError;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what} {id:?} cannot name a sandbox directory; use ids without '/', '.' or '..'")]
    BadId { what: &'static str, id: String },
    #[error("the command is empty; give the task a command value")]
    EmptyCommand,
    #[error("cannot create the sandbox {path}: {source}")]
    Sandbox { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{0} is not an executable file on this agent")]
    NotExecutable(String),
    #[error("{0} is not on this agent's PATH")]
    NotOnPath(String),
    #[error("looking up user {user}: {source}")]
    UserLookup { user: String, source: nix::Error },
    #[error("user {0} does not exist on this agent")]
    NoSuchUser(String),
    #[error(
        "the agent runs as uid {uid} and cannot switch to user {user}; run the agent as root \
         or launch as the agent's user"
    )]
    CannotSwitchUser { uid: u32, user: String },
    #[error(
        "cannot start the task supervisor {binary}: {source}; install orca-task-supervisor \
         next to orca-agent or on its PATH"
    )]
    Supervisor { binary: PathBuf, source: io::Error },
    #[error("{0}")]
    Supervised(String),
    #[error("the task supervisor ended without starting the task (it said {0})")]
    SupervisorSilent(String),
    #[error("cannot checkpoint the task: {0}")]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
}
