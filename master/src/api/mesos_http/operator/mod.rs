//! The Mesos v1 operator API (`POST /api/v1`, JSON), as far as this master serves it:
//! what the master is (`GET_HEALTH`, `GET_VERSION`, `GET_FLAGS`, `GET_METRICS`,
//! `GET_LOGGING_LEVEL`, `GET_MASTER`), what the cluster holds (`GET_STATE`, `GET_AGENTS`,
//! `GET_FRAMEWORKS`, `GET_EXECUTORS`, `GET_TASKS`, `GET_ROLES`, shaped as Mesos's
//! `mesos.v1.master.Response`), the role weights and quotas (`roles`), and an agent's
//! deactivation, drain and removal (`agents`), maintenance schedules and machines down
//! (`maintenance`), a framework's `TEARDOWN`, and the event stream (`SUBSCRIBE`, `events`).
//! Other calls answer 501 naming themselves.
mod agents;
mod events;
mod maintenance;
mod roles;
mod views;

pub(in crate::api) use views::drain_info;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value as JsonValue, json};

use orca_auth::Action;

use super::{Api, api_error, error};
use crate::{
    api::authn::Principal,
    cluster::{ApiError, Cluster},
};

pub(super) async fn call(
    State(api): State<Api>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let principal = principal.map(|Extension(p)| p.0);
    let principal = principal.as_deref();
    // As Mesos's `/api/v1`: no Content-Type is 400, one it cannot read 415, an Accept that
    // does not allow JSON 406.
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    match text(header::CONTENT_TYPE) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "Expecting 'Content-Type' to be present",
            );
        }
        Some(t) if !t.starts_with("application/json") => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Expecting 'Content-Type' of application/json (not {t}): this master's operator API speaks JSON"
                ),
            );
        }
        Some(_) => {}
    }
    if let Some(accept) = text(header::ACCEPT)
        && !["application/json", "*/*", "application/*"]
            .iter()
            .any(|m| accept.contains(m))
    {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            format!("Expecting 'Accept' to allow application/json (not {accept})"),
        );
    }
    let call: JsonValue = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed call: {e}")),
    };
    let kind = call["type"].as_str().unwrap_or_default();
    let cluster = &api.cluster;
    match kind {
        "GET_HEALTH" => answer("GET_HEALTH", json!({ "healthy": true })),
        "GET_VERSION" => answer("GET_VERSION", json!({ "version_info": version_info() })),
        "GET_FLAGS" => answer(
            "GET_FLAGS",
            json!({ "flags": cluster
                .flags()
                .iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>() }),
        ),
        "GET_METRICS" => answer(
            "GET_METRICS",
            json!({ "metrics": cluster
                .metrics()
                .into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>() }),
        ),
        // glog's verbosity in Mesos; this master logs through `RUST_LOG` and has no verbose
        // levels beyond it, which is level 0.
        "GET_LOGGING_LEVEL" => answer("GET_LOGGING_LEVEL", json!({ "level": 0 })),
        "GET_MASTER" => answer("GET_MASTER", views::master(cluster)),
        "GET_STATE" => answer("GET_STATE", views::state(&cluster.snapshot())),
        "GET_AGENTS" => answer("GET_AGENTS", views::agents(&cluster.snapshot())),
        "GET_FRAMEWORKS" => answer("GET_FRAMEWORKS", views::frameworks(&cluster.snapshot())),
        "GET_EXECUTORS" => answer("GET_EXECUTORS", views::executors()),
        "GET_TASKS" => answer("GET_TASKS", views::tasks(&cluster.snapshot())),
        "GET_ROLES" => answer("GET_ROLES", views::roles(&cluster.snapshot())),
        "GET_WEIGHTS" => roles::get_weights(cluster),
        "UPDATE_WEIGHTS" => roles::update_weights(cluster, &call).await,
        "GET_QUOTA" => roles::get_quota(cluster),
        "UPDATE_QUOTA" => roles::update_quota(cluster, &call).await,
        "DEACTIVATE_AGENT" => {
            agents::set_deactivated(cluster, principal, &call, "deactivate_agent", true).await
        }
        "REACTIVATE_AGENT" => {
            agents::set_deactivated(cluster, principal, &call, "reactivate_agent", false).await
        }
        "DRAIN_AGENT" => agents::drain(cluster, principal, &call).await,
        "TEARDOWN" => teardown(cluster, principal, &call).await,
        "MARK_AGENT_GONE" => agents::mark_gone(cluster, &call).await,
        "SUBSCRIBE" => events::subscribe(cluster),
        "GET_MAINTENANCE_SCHEDULE" => maintenance::get_schedule(cluster),
        "GET_MAINTENANCE_STATUS" => maintenance::get_status(cluster),
        "UPDATE_MAINTENANCE_SCHEDULE" => maintenance::update_schedule(cluster, &call).await,
        "START_MAINTENANCE" => maintenance::start_or_stop(cluster, &call, true).await,
        "STOP_MAINTENANCE" => maintenance::start_or_stop(cluster, &call, false).await,
        "" => error(StatusCode::BAD_REQUEST, "the call has no `type`"),
        other => error(
            StatusCode::NOT_IMPLEMENTED,
            format!("operator call {other} is not supported by this master"),
        ),
    }
}

/// `{"type": "TEARDOWN", "teardown": {"framework_id": {"value": …}}}`: the framework's tasks
/// are killed and it is removed; 200 with no body once that is in the registry. With
/// `--acls`, the caller needs `teardown_frameworks` for the framework's principal.
async fn teardown(cluster: &Cluster, principal: Option<&str>, call: &JsonValue) -> Response {
    let Some(framework_id) = call["teardown"]["framework_id"]["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting 'teardown.framework_id.value' naming the framework",
        );
    };
    let done = async {
        cluster.authorize_operator(Action::TeardownFrameworks, principal, framework_id)?;
        cluster.teardown(framework_id).await
    };
    match done.await {
        Ok(()) => StatusCode::OK.into_response(),
        // Mesos's answer for a framework it does not know.
        Err(ApiError::NotFound(_)) => error(
            StatusCode::BAD_REQUEST,
            format!("No framework found with ID {framework_id}"),
        ),
        Err(e) => api_error(e),
    }
}

/// `{"type": "GET_FOO", "get_foo": body}`, as Mesos answers call `GET_FOO`.
fn answer(kind: &str, body: JsonValue) -> Response {
    let field = kind.to_ascii_lowercase();
    Json(json!({ "type": kind, field: body })).into_response()
}

/// Mesos's `VersionInfo`: the Mesos version this master speaks (`GET /version` adds Orca's
/// own).
pub(in crate::api) fn version_info() -> JsonValue {
    json!({ "version": orca_leader::info::MESOS_VERSION })
}
