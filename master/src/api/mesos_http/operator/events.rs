//! `SUBSCRIBE` on the operator API: Mesos's operator event stream. A 200 whose body is
//! RecordIO-framed JSON `mesos.v1.master.Event`s: SUBSCRIBED with the whole state
//! (`get_state`) first, then TASK_ADDED, TASK_UPDATED (every status update), AGENT_ADDED,
//! AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED and FRAMEWORK_REMOVED as they happen,
//! and a HEARTBEAT every 15 s (Mesos's interval). The snapshot and the subscription are taken
//! together, so nothing is missed between them. The stream ends when this master stops
//! leading; a subscriber too slow to keep up is dropped, with a log line, and subscribes
//! again from a new snapshot.
//!
//! Agents stay in Orca's GET_AGENTS while unreachable (as `active: false`), so AGENT_REMOVED
//! is sent when an agent is removed or marked gone, not when it becomes unreachable.
use std::{convert::Infallible, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::Response,
};
use serde_json::{Value as JsonValue, json};
use tokio::sync::broadcast::{self, error::RecvError};

use super::views;
use crate::{
    api::mesos_http::{api_error, error, json::status, recordio},
    cluster::{Cluster, ClusterEvent, StateSnapshot},
};

/// Mesos's operator heartbeat interval.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// At most this many events go out in one chunk.
const MAX_EVENTS_PER_CHUNK: usize = 256;

struct Subscriber {
    cluster: Cluster,
    events: broadcast::Receiver<ClusterEvent>,
    heartbeat: tokio::time::Interval,
    subscribed: Option<Bytes>,
}

pub(super) fn subscribe(cluster: &Cluster) -> Response {
    let (snapshot, events) = match cluster.subscribe_events() {
        Ok(subscription) => subscription,
        Err(e) => return api_error(e),
    };
    let subscribed = json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "get_state": views::state(&snapshot),
            "heartbeat_interval_seconds": HEARTBEAT.as_secs_f64(),
        },
    });
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let subscriber = Subscriber {
        cluster: cluster.clone(),
        events,
        heartbeat: tokio::time::interval_at(start, HEARTBEAT),
        subscribed: Some(records([subscribed])),
    };
    let chunks = futures::stream::unfold(subscriber, |mut sub| async move {
        let chunk = next_chunk(&mut sub).await?;
        Some((Ok::<_, Infallible>(chunk), sub))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The next events, RecordIO-framed; `None` ends the stream.
async fn next_chunk(sub: &mut Subscriber) -> Option<Bytes> {
    if let Some(first) = sub.subscribed.take() {
        return Some(first);
    }
    loop {
        let first = tokio::select! {
            _ = sub.heartbeat.tick() => return Some(records([json!({ "type": "HEARTBEAT" })])),
            event = sub.events.recv() => match event {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "an operator event subscriber fell behind; closing its stream (it subscribes again for a new snapshot)");
                    return None;
                }
                // The state was dropped: this master no longer leads.
                Err(RecvError::Closed) => return None,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_EVENTS_PER_CHUNK {
            match sub.events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let needs_state = batch.iter().any(|e| {
            matches!(
                e,
                ClusterEvent::AgentAdded { .. }
                    | ClusterEvent::FrameworkAdded { .. }
                    | ClusterEvent::FrameworkUpdated { .. }
            )
        });
        let state = needs_state.then(|| sub.cluster.snapshot());
        let events: Vec<JsonValue> = batch
            .iter()
            .filter_map(|e| event_json(e, state.as_ref()))
            .collect();
        if !events.is_empty() {
            return Some(records(events));
        }
    }
}

/// Mesos's `Event` for one change; `None` for an agent or framework already gone again
/// (its removal follows).
fn event_json(event: &ClusterEvent, state: Option<&StateSnapshot>) -> Option<JsonValue> {
    let framework = |id: &str| {
        state
            .and_then(|s| s.frameworks.iter().find(|f| f.id == id))
            .map(views::framework)
    };
    Some(match event {
        ClusterEvent::TaskAdded(task) => json!({
            "type": "TASK_ADDED",
            "task_added": { "task": views::task(task) },
        }),
        ClusterEvent::TaskUpdated {
            framework_id,
            status: update,
            state,
        } => json!({
            "type": "TASK_UPDATED",
            "task_updated": {
                "framework_id": { "value": framework_id },
                "status": status(update),
                "state": state.name(),
            },
        }),
        ClusterEvent::AgentAdded { agent_id } => {
            let agent = state?.agents.iter().find(|a| &a.id == agent_id)?;
            json!({ "type": "AGENT_ADDED", "agent_added": { "agent": views::agent(agent) } })
        }
        ClusterEvent::AgentRemoved { agent_id } => json!({
            "type": "AGENT_REMOVED",
            "agent_removed": { "agent_id": { "value": agent_id } },
        }),
        ClusterEvent::FrameworkAdded { framework_id } => json!({
            "type": "FRAMEWORK_ADDED",
            "framework_added": { "framework": framework(framework_id)? },
        }),
        ClusterEvent::FrameworkUpdated { framework_id } => json!({
            "type": "FRAMEWORK_UPDATED",
            "framework_updated": { "framework": framework(framework_id)? },
        }),
        ClusterEvent::FrameworkRemoved { framework_id, info } => json!({
            "type": "FRAMEWORK_REMOVED",
            "framework_removed": {
                "framework_info": views::framework_info(framework_id, info),
            },
        }),
    })
}

fn records(events: impl IntoIterator<Item = JsonValue>) -> Bytes {
    let mut chunk = Vec::new();
    for event in events {
        recordio::encode_into(&mut chunk, event.to_string().as_bytes());
    }
    Bytes::from(chunk)
}
