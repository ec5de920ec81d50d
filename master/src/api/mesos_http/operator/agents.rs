//! The operator's calls that change an agent (Mesos 1.9): `DEACTIVATE_AGENT` and
//! `REACTIVATE_AGENT` (a deactivated agent keeps its tasks but nothing of it is offered),
//! `DRAIN_AGENT` and `MARK_AGENT_GONE`.
use std::time::Duration;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use orca_auth::Action;
use serde_json::Value as JsonValue;

use super::super::{api_error, error};
use crate::cluster::{ApiError, Cluster};

/// `{"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": …}}}` and its
/// `REACTIVATE_AGENT` twin: 200 with no body once the change is in the registry.
pub(super) async fn set_deactivated(
    cluster: &Cluster,
    principal: Option<&str>,
    call: &JsonValue,
    field: &str,
    deactivated: bool,
) -> Response {
    let Some(agent_id) = call[field]["agent_id"]["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("expecting '{field}.agent_id.value' naming the agent"),
        );
    };
    let action = if deactivated {
        Action::DeactivateAgents
    } else {
        Action::ReactivateAgents
    };
    if let Err(e) = cluster.authorize_operator(action, principal, agent_id) {
        return api_error(e);
    }
    match cluster.set_agent_deactivated(agent_id, deactivated).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

/// `{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": …}, "max_grace_period":
/// {"seconds": …}, "mark_gone": …}}`: 200 with no body once the drain is in the registry
/// (its kills are on their way); 400 for an agent not known.
pub(super) async fn drain(
    cluster: &Cluster,
    principal: Option<&str>,
    call: &JsonValue,
) -> Response {
    let drain = &call["drain_agent"];
    if !drain.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "Expecting 'drain_agent' to be present",
        );
    }
    let Some(agent_id) = drain["agent_id"]["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting 'drain_agent.agent_id.value' naming the agent",
        );
    };
    let max_grace_period = match &drain["max_grace_period"] {
        JsonValue::Null => None,
        period => match protobuf_duration(period) {
            Some(d) => Some(d),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "'drain_agent.max_grace_period' must be a non-negative \
                     google.protobuf.Duration: {\"seconds\": 10} or \"10s\"",
                );
            }
        },
    };
    let mark_gone = match &drain["mark_gone"] {
        JsonValue::Null => false,
        JsonValue::Bool(b) => *b,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "'drain_agent.mark_gone' must be true or false",
            );
        }
    };
    if let Err(e) = cluster.authorize_operator(Action::DrainAgents, principal, agent_id) {
        return api_error(e);
    }
    match cluster
        .drain_agent(agent_id, max_grace_period, mark_gone)
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

/// `{"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": …}}}`: 200 once it
/// is in the registry (also for an agent already gone), 404 for an agent never known.
pub(super) async fn mark_gone(cluster: &Cluster, call: &JsonValue) -> Response {
    let Some(agent_id) = call["mark_agent_gone"]["agent_id"]["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting 'mark_agent_gone.agent_id.value' naming the agent",
        );
    };
    match cluster.mark_agent_gone(agent_id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(ApiError::NotFound(why)) => error(StatusCode::NOT_FOUND, why),
        Err(e) => api_error(e),
    }
}

/// `DrainAgent.max_grace_period`, a `google.protobuf.Duration`: an object `{"seconds": …,
/// "nanos": …}` as Mesos's own JSON parser and its documentation have it, or the proto3 JSON
/// string (`"10s"`, `"1.5s"`) a protobuf library writes.
fn protobuf_duration(value: &JsonValue) -> Option<Duration> {
    let int = |v: &JsonValue| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let secs = match value {
        JsonValue::String(text) => text.strip_suffix('s')?.parse::<f64>().ok()?,
        JsonValue::Object(fields) => {
            if fields.keys().any(|k| k != "seconds" && k != "nanos") {
                return None;
            }
            let seconds = value.get("seconds").map_or(Some(0), int)?;
            let nanos = value.get("nanos").map_or(Some(0), int)?;
            seconds as f64 + nanos as f64 / 1e9
        }
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}
