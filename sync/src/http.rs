//! The engine's REST API, Prometheus metrics and health, for `zk-migrate` and for the
//! migration orchestrator that will drive it.
//!
//! - `GET  /api/v1/sync/status`: replication figures (JSON).
//! - `POST /api/v1/sync/validate`: compares both trees now; `identical` and the differing
//!   paths (the first 1,000, with the total).
//! - `GET  /api/v1/sync/conflicts`, `POST /api/v1/sync/conflicts/resolve`
//!   (`{"path": "/x", "winner": "a"|"b"}`): conflicts held under the manual strategy.
//! - `POST /api/v1/sync/stop`: ends replication (the process exits after the current round).
//! - `GET  /metrics`, `GET /health`.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{digest::Difference, engine::SyncEngine, plan::Side};

/// Differences listed in one validate reply (the total is always given).
const MAX_LISTED: usize = 1000;

#[derive(Clone)]
struct Api {
    engine: Arc<SyncEngine>,
    stop: Arc<Notify>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ValidateReply {
    pub identical: bool,
    pub differences_total: usize,
    pub differences: Vec<Difference>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub path: String,
    pub winner: Side,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The router; `stop` is notified by `POST /api/v1/sync/stop`.
pub fn router(engine: Arc<SyncEngine>, stop: Arc<Notify>) -> Router {
    Router::new()
        .route("/api/v1/sync/status", get(status))
        .route("/api/v1/sync/validate", post(validate))
        .route("/api/v1/sync/conflicts", get(conflicts))
        .route("/api/v1/sync/conflicts/resolve", post(resolve))
        .route("/api/v1/sync/stop", post(stop_sync))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(Api { engine, stop })
}

async fn status(State(api): State<Api>) -> Response {
    Json(api.engine.status()).into_response()
}

async fn validate(State(api): State<Api>) -> Response {
    match api.engine.validate().await {
        Ok(mut differences) => {
            let total = differences.len();
            differences.truncate(MAX_LISTED);
            Json(ValidateReply {
                identical: total == 0,
                differences_total: total,
                differences,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn conflicts(State(api): State<Api>) -> Response {
    Json(api.engine.held_conflicts()).into_response()
}

async fn resolve(
    State(api): State<Api>,
    body: Result<Json<ResolveRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: send {{\"path\": \"/x\", \"winner\": \"a\"|\"b\"}}",
                    e.body_text()
                ),
            );
        }
    };
    if !api
        .engine
        .held_conflicts()
        .iter()
        .any(|c| c.path == request.path)
    {
        return error(
            StatusCode::NOT_FOUND,
            format!("no conflict is held for {}", request.path),
        );
    }
    match api.engine.resolve(&request.path, request.winner).await {
        Ok(()) => Json(serde_json::json!({ "resolved": request.path })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn stop_sync(State(api): State<Api>) -> Response {
    api.stop.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "stopping": true })),
    )
        .into_response()
}

async fn metrics(State(api): State<Api>, request: HeaderMap) -> Response {
    orca_exposition::response(&request, api.engine.metrics_text())
}

async fn health(State(api): State<Api>) -> Response {
    match api.engine.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}
