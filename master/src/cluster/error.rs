//! Why the cluster core refused a call. Each front door maps these to its own status codes
//! (HTTP in `api::http`, gRPC statuses in `api::convert`).
use crate::allocator::AllocatorError;

/// Why a call was refused; the message says what to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiError {
    /// Malformed or invalid request (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed: missing or stale stream id, role not permitted (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The framework or agent is not known (HTTP 404 for lookups, 403 for calls).
    #[error("{0}")]
    NotFound(String),
    /// The registry could not record the change, or the leader is between terms; nothing
    /// was done (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// This master does not lead (HTTP 307 to the leader, 503 when none is known; gRPC
    /// UNAVAILABLE naming the leader).
    #[error("{}", not_leader_message(.0.as_deref()))]
    NotLeader(Option<Box<orca_leader::MasterInfo>>),
}

fn not_leader_message(leader: Option<&orca_leader::MasterInfo>) -> String {
    match leader {
        Some(info) => format!(
            "this master is not the leader; the leading master is at {} (gRPC {})",
            info.http_authority(),
            info.grpc_addr()
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
        ),
        None => "this master is not the leader and no leader is elected now; retry shortly".into(),
    }
}

impl From<AllocatorError> for ApiError {
    fn from(err: AllocatorError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}
