//! What can go wrong, and which failures a retry can fix.
use zookeeper_client::Error as ZkError;

use crate::{base::BaseError, tree::WalkError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open audit-log {}: {source}; check the path and its permissions", .path.display())]
    AuditLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the re-scan task ended unexpectedly: {0}")]
    Rescan(#[from] tokio::task::JoinError),
    #[error(
        "cannot reach ensemble {side} at {connect}: {source} (check the address and that a \
         quorum is up)"
    )]
    Unreachable {
        side: &'static str,
        connect: String,
        source: ZkError,
    },
    #[error("ensemble {side} refused the credentials given for it: {source}")]
    Auth { side: &'static str, source: ZkError },
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("ensemble {side}: {source}")]
    Zk { side: &'static str, source: ZkError },
    #[error(transparent)]
    State(#[from] BaseError),
    #[error(
        "{count} znodes on {side} have ACLs the sync's identity reads with hidden digests \
         (`digest user:x`: it has no ADMIN on them), so they were not copied: {}{}. {remedy} \
         and start it again; what was copied stays",
        paths.iter().take(20).cloned().collect::<Vec<_>>().join(", "),
        if *count > 20 { ", …" } else { "" }
    )]
    HiddenAcls {
        side: &'static str,
        count: usize,
        paths: Vec<String>,
        /// What to change, which depends on the `acl-hidden` policy.
        remedy: &'static str,
    },
}

impl SyncError {
    /// A failure the next attempt may not see (the connection dropped or was reset, a request
    /// timed out): the engine retries instead of stopping. What retrying cannot fix (the
    /// session expired or was closed, credentials refused, no permission, a bad request) is
    /// not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Zk { source, .. } => transient(source),
            SyncError::Walk(WalkError::Zk { source, .. }) => transient(source),
            _ => false,
        }
    }

    /// The session the request went out on expired: the live loop waits for the new session
    /// it opens in its place, then re-scans.
    pub fn is_session_expired(&self) -> bool {
        matches!(
            self,
            SyncError::Zk {
                source: ZkError::SessionExpired,
                ..
            } | SyncError::Walk(WalkError::Zk {
                source: ZkError::SessionExpired,
                ..
            })
        )
    }
}

/// Whether retrying a request that failed with `error` may succeed (see
/// [`SyncError::is_transient`]).
pub(super) fn transient(error: &ZkError) -> bool {
    !matches!(
        error,
        ZkError::SessionExpired
            | ZkError::ClientClosed
            | ZkError::AuthFailed
            | ZkError::NoAuth
            | ZkError::InvalidAcl
            | ZkError::BadArguments(_)
            | ZkError::MarshallingError
            | ZkError::UnmarshalError { .. }
            | ZkError::NoChildrenForEphemerals
            | ZkError::QuotaExceeded
    )
}

/// A session of the engine that is not connected (`/health` answers 503 with this).
#[derive(Debug, thiserror::Error)]
#[error("ensemble {side:?}: session {state:?}; the engine reconnects by itself")]
pub struct Unhealthy {
    pub side: crate::plan::Side,
    pub state: zookeeper_client::SessionState,
}
