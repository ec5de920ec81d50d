//! The collector's HTTP API: `GET /api/topology?view=…`, `GET /api/agents`, `GET /health`
//! (`/metrics` is served by the master for all its parts).
use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{Collector, graph};

#[derive(Debug, Deserialize)]
struct TopologyQuery {
    view: Option<String>,
}

pub fn router(collector: Collector) -> Router {
    api(collector).merge(health())
}

/// `/api/topology` and `/api/agents`: what a daemon with credentials only shows to callers
/// who authenticate.
pub fn api(collector: Collector) -> Router {
    Router::new()
        .route("/api/topology", get(topology))
        .route("/api/agents", get(agents))
        .with_state(collector)
}

/// `/health`, open to every probe.
pub fn health() -> Router {
    Router::new().route("/health", get(|| async { "ok\n" }))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn topology(State(collector): State<Collector>, Query(q): Query<TopologyQuery>) -> Response {
    let name = q.view.unwrap_or_else(|| "hosts".to_string());
    let Some(view) = graph::view_from_param(&name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown view {name:?}: use view=hosts, view=containers, view=processes \
                 or view=connections"
            ),
        );
    };
    let graph = collector.view(view);
    let mut body = serde_json::json!({
        "view": name,
        "nodes": graph.nodes.values().collect::<Vec<_>>(),
        "edges": graph.edges.values().collect::<Vec<_>>(),
        "connections": graph.connections.values().collect::<Vec<_>>(),
    });
    orca_proto::topology::v1::readable_addresses(&mut body);
    Json(body).into_response()
}

async fn agents(State(collector): State<Collector>) -> Response {
    Json(serde_json::json!({ "agents": collector.agents() })).into_response()
}
