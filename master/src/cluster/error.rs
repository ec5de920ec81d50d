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
    /// The registry could not record the change; nothing was done (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<AllocatorError> for ApiError {
    fn from(err: AllocatorError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}
