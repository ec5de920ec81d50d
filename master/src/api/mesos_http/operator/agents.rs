//! The operator's calls that change an agent: `DEACTIVATE_AGENT` and `REACTIVATE_AGENT`
//! (Mesos 1.9): a deactivated agent keeps its tasks but nothing of it is offered.
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::Value as JsonValue;

use super::super::{api_error, error};
use crate::cluster::Cluster;

/// `{"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": …}}}` and its
/// `REACTIVATE_AGENT` twin: 200 with no body once the change is in the registry.
pub(super) async fn set_deactivated(
    cluster: &Cluster,
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
    match cluster.set_agent_deactivated(agent_id, deactivated).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}
