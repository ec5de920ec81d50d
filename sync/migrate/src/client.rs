//! A client of the migration service's REST API (and of a sync engine's, which shares its
//! shapes): what `zk-migrate`'s remote commands and the TUI's Migration view use.
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode, body::Bytes};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{overview::Overview, state::MigrationState};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("nothing answers on {api}: {source}")]
    Unreachable {
        api: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the reply of {api}: {source}")]
    Read { api: String, source: hyper::Error },
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the reply of {api}{path} is not what was expected: {source}")]
    Decode {
        api: String,
        path: String,
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The service answered, and said no (or not found).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One HTTP request: the reply's status and body, whatever the status.
pub async fn request(
    api: &str,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), ClientError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{api}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a method, an address and a path make a request");
    let response = client
        .request(request)
        .await
        .map_err(|source| ClientError::Unreachable {
            api: api.to_owned(),
            source,
        })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|source| ClientError::Read {
            api: api.to_owned(),
            source,
        })?
        .to_bytes();
    Ok((status, bytes))
}

/// The message of an error reply (`{"error": "..."}`), else its text.
fn message(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

/// The migration service at `api` (`host:port`).
#[derive(Debug, Clone)]
pub struct MigrationClient {
    pub api: String,
}

/// A migration as `GET /api/v1/migrations` lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Listed {
    pub id: String,
    pub completed: u8,
    pub status: crate::state::Status,
}

impl MigrationClient {
    pub fn new(api: impl Into<String>) -> Self {
        Self { api: api.into() }
    }

    /// A non-2xx reply is an error with its message.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Bytes, ClientError> {
        let (status, bytes) = request(&self.api, method, path, body).await?;
        if !status.is_success() {
            return Err(ClientError::Refused {
                status,
                message: message(&bytes),
            });
        }
        Ok(bytes)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.call("GET", path, None).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            api: self.api.clone(),
            path: path.to_owned(),
            source,
        })
    }

    pub async fn list(&self) -> Result<Vec<Listed>, ClientError> {
        self.get("/api/v1/migrations").await
    }

    pub async fn state(&self, id: &str) -> Result<MigrationState, ClientError> {
        self.get(&format!("/api/v1/migrations/{id}")).await
    }

    pub async fn overview(&self, id: &str) -> Result<Overview, ClientError> {
        self.get(&format!("/api/v1/migrations/{id}/overview")).await
    }

    /// Runs the next phase (or up to `phase`).
    pub async fn advance(&self, id: &str, phase: Option<u8>) -> Result<(), ClientError> {
        let body = json!({ "confirm": true, "phase": phase }).to_string();
        self.call(
            "POST",
            &format!("/api/v1/migrations/{id}/advance"),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Undoes phases down to `to` (0: all).
    pub async fn rollback(&self, id: &str, to: u8) -> Result<(), ClientError> {
        let body = json!({ "to_phase": to }).to_string();
        self.call(
            "POST",
            &format!("/api/v1/migrations/{id}/rollback"),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Settles a conflict the sync holds by copying `winner`'s copy (`a` or `b`) over.
    pub async fn resolve(&self, path: &str, winner: &str) -> Result<(), ClientError> {
        let body = json!({ "path": path, "winner": winner }).to_string();
        self.call("POST", "/api/v1/sync/conflicts/resolve", Some(body))
            .await
            .map(drop)
    }
}
