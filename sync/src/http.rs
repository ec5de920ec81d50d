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
//!
//! Requests a web page sends on a visitor's behalf are refused ([`refuse_cross_site`]): a
//! page on any site could otherwise stop the sync with one form post to `localhost`.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State, rejection::JsonRejection},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
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
        .layer(middleware::from_fn(refuse_cross_site))
        .with_state(Api { engine, stop })
}

/// Refuses a request that changes something when a browser says it comes from another site
/// (`Sec-Fetch-Site` other than `same-origin` or `none`), or when its `Origin` is not this
/// server: what a web page's form or script sends on its visitor's behalf. Command-line
/// clients (`zk-migrate`, `curl`, the TUI) send neither header and pass.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let cross_site = match text("sec-fetch-site") {
        Some(site) => site != "same-origin" && site != "none",
        None => match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").map(|(_, authority)| authority) != Some(host)
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
    };
    if cross_site {
        return error(
            StatusCode::FORBIDDEN,
            "cross-site requests are refused: this API changes a live sync, so it answers only \
             clients that are not web pages of another site (use zk-migrate, curl or the TUI)",
        );
    }
    next.run(request).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a POST with `headers` gets from a router behind `refuse_cross_site`.
    async fn post_with(headers: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let router = Router::new()
            .route("/x", post(|| async { "done" }))
            .layer(middleware::from_fn(refuse_cross_site));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /x HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .replace("{addr}", &addr.to_string());
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_web_page_of_another_site_cannot_post_but_clients_and_the_same_origin_can() {
        assert!(
            post_with("").await.starts_with("HTTP/1.1 200"),
            "a plain client"
        );
        let evil = post_with("Origin: http://evil.example\r\n").await;
        assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
        assert!(evil.contains("cross-site requests are refused"), "{evil}");
        let fetch = post_with("Sec-Fetch-Site: cross-site\r\n").await;
        assert!(fetch.starts_with("HTTP/1.1 403"), "{fetch}");
        let same = post_with("Sec-Fetch-Site: same-origin\r\n").await;
        assert!(same.starts_with("HTTP/1.1 200"), "{same}");
        let own = post_with("Origin: http://{addr}\r\n").await;
        assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    }
}
