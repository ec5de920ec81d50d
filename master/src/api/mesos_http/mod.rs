//! The Mesos v1 scheduler HTTP API (JSON), the operator calls this master serves
//! (`POST /api/v1`, see `operator`), `GET /master/state` (also `/state`, `/state.json`),
//! `GET /version`, `GET /flags` and `GET /metrics/snapshot`, shaped as Mesos shapes them so
//! existing Mesos HTTP libraries work unmodified.
//!
//! `POST /api/v1/scheduler` with SUBSCRIBE answers `200` with a chunked RecordIO stream of
//! events and a `Mesos-Stream-Id` header; every other call must carry that header and gets
//! `202 Accepted`, its outcome arriving as events. Malformed calls get `400`, calls without the
//! current stream id `403`, each with a plain-text message saying what to fix.
#[cfg(any(test, feature = "test-util"))]
pub mod client;
pub mod json;
mod operator;
pub mod recordio;

use std::{convert::Infallible, time::Duration};

use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde_json::{Value as JsonValue, json};

use super::{
    authn::{self, Authenticator, Principal},
    convert::http_status,
    events::FrameworkEvents,
};
use crate::cluster::{ApiError, Cluster, InverseOfferAnswer, StateSnapshot, TaskView};

pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// Events written in one chunk at most when they queue up faster than the client reads.
const MAX_EVENTS_PER_CHUNK: usize = 256;

#[derive(Clone, Debug)]
struct Api {
    cluster: Cluster,
    master_id: String,
    heartbeat: Duration,
}

/// The Mesos routes. Those only the leader serves answer on any other master as Mesos's
/// do: `307 Temporary Redirect` to the same path on the leader (`Location:
/// //host:port/path`), or `503` while no leader is known. `/master/redirect` always
/// redirects to the leader's base URL; `/metrics/snapshot` is every master's own.
pub fn router(cluster: Cluster) -> Router {
    let (master_id, heartbeat) = (cluster.master_id(), cluster.heartbeat_interval());
    let api = Api {
        cluster: cluster.clone(),
        master_id,
        heartbeat,
    };
    // With --credentials each endpoint authenticates in Mesos's realm for it.
    let authenticator = Authenticator::new(cluster.credentials());
    let in_realm =
        |realm| middleware::from_fn_with_state(authenticator.in_realm(realm), authn::http);
    let state_route = || get(state).route_layer(in_realm(authn::READONLY_REALM));
    let leader_only = Router::new()
        .route(
            "/api/v1/scheduler",
            post(scheduler).route_layer(in_realm(authn::SCHEDULER_REALM)),
        )
        .route(
            "/api/v1",
            post(operator::call).route_layer(in_realm(authn::READWRITE_REALM)),
        )
        .route("/master/state", state_route())
        .route("/master/state.json", state_route())
        .route("/state", state_route())
        .route("/state.json", state_route())
        .route_layer(middleware::from_fn_with_state(
            cluster.clone(),
            redirect_unless_leading,
        ));
    Router::new()
        .merge(leader_only)
        .route(
            "/flags",
            get(flags).route_layer(in_realm(authn::READONLY_REALM)),
        )
        .route(
            "/metrics/snapshot",
            get(metrics_snapshot).route_layer(in_realm(authn::READONLY_REALM)),
        )
        .route("/master/redirect", any(redirect))
        .route("/redirect", any(redirect))
        .route("/version", get(version))
        .with_state(api)
}

/// Where a request to a master that does not lead goes (Mesos `Master::Http::redirect`).
fn to_leader(cluster: &Cluster, path_and_query: &str) -> Response {
    let Some(leader) = cluster.leader_info() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "No leader elected; retry shortly",
        );
    };
    let base = format!("//{}", leader.http_authority());
    let location = if path_and_query == "/redirect"
        || path_and_query == "/master/redirect"
        || path_and_query.starts_with("/master/redirect?")
        || path_and_query.starts_with("/redirect?")
    {
        base
    } else {
        format!("{base}{path_and_query}")
    };
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn redirect_unless_leading(
    State(cluster): State<Cluster>,
    request: Request,
    next: Next,
) -> Response {
    if cluster.is_leading() {
        return next.run(request).await;
    }
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    to_leader(&cluster, &target)
}

async fn redirect(State(api): State<Api>, request: Request) -> Response {
    to_leader(&api.cluster, request.uri().path())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

pub(super) fn api_error(err: ApiError) -> Response {
    error(http_status(&err), err.to_string())
}

fn accepted(result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(err) => api_error(err),
    }
}

async fn scheduler(
    State(api): State<Api>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let principal = principal.map(|Extension(p)| p.0);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type} is not supported here: send JSON \
                 (application/json); protobuf clients use the gRPC scheduler service"
            ),
        );
    }
    let call: json::Call = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed call: {e}")),
    };
    if call.kind == "SUBSCRIBE" {
        return subscribe(api, call, principal.as_deref()).await;
    }
    let Some(framework_id) = call.framework_id.as_ref().map(|i| i.value.clone()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} needs `framework_id`", call.kind),
        );
    };
    let stream_id = headers.get(STREAM_ID_HEADER).and_then(|v| v.to_str().ok());
    if let Err(err) = api
        .cluster
        .check_stream(&framework_id, stream_id, principal.as_deref())
    {
        return api_error(err);
    }
    let cluster = &api.cluster;
    let missing = |field: &str| {
        error(
            StatusCode::BAD_REQUEST,
            format!("{} needs the `{field}` object", call.kind),
        )
    };
    match call.kind.as_str() {
        "TEARDOWN" => accepted(cluster.teardown(&framework_id).await),
        "ACCEPT" => {
            let Some(accept) = call.accept else {
                return missing("accept");
            };
            let operations = match json::operations(accept.operations) {
                Ok(ops) => ops,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let offer_ids: Vec<String> = accept.offer_ids.into_iter().map(|i| i.value).collect();
            let refuse = accept
                .filters
                .and_then(|f| json::duration(f.refuse_seconds));
            accepted(cluster.accept(&framework_id, &offer_ids, operations, refuse))
        }
        "DECLINE" => {
            let Some(decline) = call.decline else {
                return missing("decline");
            };
            let offer_ids: Vec<String> = decline.offer_ids.into_iter().map(|i| i.value).collect();
            let refuse = decline
                .filters
                .and_then(|f| json::duration(f.refuse_seconds));
            accepted(cluster.decline(&framework_id, &offer_ids, refuse))
        }
        "REVIVE" => {
            let roles = call.revive.map(|r| r.roles).filter(|r| !r.is_empty());
            accepted(cluster.revive(&framework_id, roles.as_deref()))
        }
        "SUPPRESS" => {
            let roles = call.suppress.map(|r| r.roles).filter(|r| !r.is_empty());
            accepted(cluster.suppress(&framework_id, roles.as_deref()))
        }
        "KILL" => {
            let Some(kill) = call.kill else {
                return missing("kill");
            };
            let grace = kill
                .kill_policy
                .and_then(|k| k.grace_period)
                .map(|g| Duration::from_nanos(g.nanoseconds.max(0) as u64));
            accepted(cluster.kill(
                &framework_id,
                &kill.task_id.value,
                kill.agent_id.as_ref().map(|a| a.value.as_str()),
                grace,
            ))
        }
        "ACKNOWLEDGE" => {
            let Some(ack) = call.acknowledge else {
                return missing("acknowledge");
            };
            let uuid = match json::uuid(&ack.uuid) {
                Ok(uuid) => uuid,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            accepted(cluster.acknowledge(
                &framework_id,
                &ack.agent_id.value,
                &ack.task_id.value,
                uuid,
            ))
        }
        "RECONCILE" => {
            let tasks: Vec<(String, Option<String>)> = call
                .reconcile
                .map(|r| r.tasks)
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.task_id.value, t.agent_id.map(|a| a.value)))
                .collect();
            accepted(cluster.reconcile(&framework_id, &tasks))
        }
        "UPDATE_FRAMEWORK" => {
            let Some(update) = call.update_framework else {
                return missing("update_framework");
            };
            let info = json::framework_info(update.framework_info);
            // Mesos answers UPDATE_FRAMEWORK synchronously: 200 once applied.
            match cluster
                .update_framework(&framework_id, info, update.suppressed_roles)
                .await
            {
                Ok(()) => StatusCode::OK.into_response(),
                Err(err) => api_error(err),
            }
        }
        "SHUTDOWN" => {
            let Some(shutdown) = call.shutdown else {
                return missing("shutdown");
            };
            accepted(cluster.shutdown_executor(
                &framework_id,
                &shutdown.executor_id.value,
                &shutdown.agent_id.value,
            ))
        }
        "MESSAGE" => {
            if call.message.is_none() {
                return missing("message");
            }
            // Command tasks run without a custom executor; Mesos's command executor drops
            // framework messages too.
            tracing::info!(framework = %framework_id, "MESSAGE for an executor dropped: tasks here run without custom executors");
            StatusCode::ACCEPTED.into_response()
        }
        // Deprecated in Mesos, whose allocator ignores resource requests.
        "REQUEST" => {
            if call.request.is_none() {
                return missing("request");
            }
            StatusCode::ACCEPTED.into_response()
        }
        "ACCEPT_INVERSE_OFFERS" | "DECLINE_INVERSE_OFFERS" => {
            let (body, answer, field) = if call.kind == "ACCEPT_INVERSE_OFFERS" {
                (
                    call.accept_inverse_offers,
                    InverseOfferAnswer::Accept,
                    "accept_inverse_offers",
                )
            } else {
                (
                    call.decline_inverse_offers,
                    InverseOfferAnswer::Decline,
                    "decline_inverse_offers",
                )
            };
            let Some(body) = body else {
                return missing(field);
            };
            let ids: Vec<String> = body
                .inverse_offer_ids
                .into_iter()
                .map(|i| i.value)
                .collect();
            let refuse = body.filters.and_then(|f| json::duration(f.refuse_seconds));
            accepted(cluster.answer_inverse_offers(&framework_id, &ids, answer, refuse))
        }
        other => error(
            StatusCode::BAD_REQUEST,
            format!("unknown call type {other:?}"),
        ),
    }
}

async fn subscribe(api: Api, call: json::Call, principal: Option<&str>) -> Response {
    let Some(subscribe) = call.subscribe else {
        return error(
            StatusCode::BAD_REQUEST,
            "SUBSCRIBE needs the `subscribe` object",
        );
    };
    let info = json::framework_info(subscribe.framework_info);
    if let (Some(call_id), Some(info_id)) = (&call.framework_id, &info.id)
        && call_id.value != *info_id
    {
        return error(
            StatusCode::BAD_REQUEST,
            "framework_id in the call and in framework_info differ",
        );
    }
    let sub = match api.cluster.subscribe(info, principal).await {
        Ok(sub) => sub,
        Err(err) => return api_error(err),
    };
    if !subscribe.suppressed_roles.is_empty() {
        let _ = api
            .cluster
            .suppress(&sub.framework_id, Some(&subscribe.suppressed_roles));
    }
    let events = FrameworkEvents::new(&api.cluster, sub, api.heartbeat);
    let stream_id = events.stream_id().to_owned();
    let master_info = json::master_info(api.cluster.info().as_ref(), &api.master_id);
    // Everything already queued goes out in the same chunk: one write for a burst of
    // updates instead of one per event.
    let mut record = Vec::new();
    let chunks = events.into_stream(move |events, first| {
        let mut chunk = Vec::new();
        let mut next = Some(first);
        let mut written = 0;
        while let Some(event) = next.take() {
            record.clear();
            json::write_event(&mut record, &event, &master_info);
            recordio::encode_into(&mut chunk, &record);
            written += 1;
            if written < MAX_EVENTS_PER_CHUNK {
                next = events.try_next();
            }
        }
        Ok::<_, Infallible>(Bytes::from(chunk))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(STREAM_ID_HEADER, stream_id)
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn state(State(api): State<Api>) -> Json<JsonValue> {
    let mut state = state_json(&api.cluster.snapshot());
    let seconds = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let me = api.cluster.info();
    let leader = api.cluster.leader_info();
    if let Some(object) = state.as_object_mut() {
        object.insert(
            "start_time".into(),
            json!(seconds(api.cluster.start_time())),
        );
        object.insert(
            "elected_time".into(),
            api.cluster
                .elected_time()
                .map_or(JsonValue::Null, |t| json!(seconds(t))),
        );
        if let Some(me) = &me {
            object.insert("pid".into(), json!(me.pid));
            object.insert("hostname".into(), json!(me.hostname));
        }
        if let Some(leader) = &leader {
            object.insert("leader".into(), json!(leader.pid));
            object.insert(
                "leader_info".into(),
                serde_json::to_value(leader).unwrap_or(JsonValue::Null),
            );
        }
    }
    Json(state)
}

fn task_json(t: &TaskView) -> JsonValue {
    json!({
        "id": t.id,
        "name": t.name,
        "framework_id": t.framework_id,
        "slave_id": t.agent_id,
        "agent_id": t.agent_id,
        "role": t.role,
        "state": t.state.name(),
        "resources": json::resource_summary(&t.resources),
        "labels": json::labels_out(&t.labels)["labels"],
        "statuses": t.statuses.iter().map(json::status).collect::<Vec<_>>(),
        "usage": t.usage.as_ref().map(|u| json!({
            "cpu_seconds": u.cpu_seconds,
            "memory_bytes": u.memory_bytes,
            "memory_limit_bytes": u.memory_limit_bytes,
            "pids": u.pids,
        })),
    })
}

/// Mesos's `/master/state` shape (the fields tools read).
pub fn state_json(s: &StateSnapshot) -> JsonValue {
    json!({
        "id": s.master_id,
        "version": orca_leader::info::MESOS_VERSION,
        "orca_version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": s.uptime.as_secs_f64(),
        "activated_slaves": s.agents.iter().filter(|a| a.active).count(),
        "deactivated_slaves": s.agents.iter().filter(|a| !a.active).count(),
        "slaves": s.agents.iter().map(|a| {
            let mut slave = json!({
                "id": a.id,
                "hostname": a.hostname,
                "active": a.active,
                "deactivated": a.deactivated,
                "attributes": a.attributes,
                "resources": json::resource_summary(&a.total),
                "used_resources": json::resource_summary(&a.used),
                "offered_resources": json::resource_summary(&a.offered),
                "unreserved_resources": json::resource_summary(&a.total.unreserved()),
                "available_resources": json::resource_summary(&a.available),
            });
            if let Some(drain) = &a.drain {
                slave["drain_info"] = operator::drain_info(drain);
                slave["estimated_drain_start_time_seconds"] = json!(drain
                    .started
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()));
                // Orca's: the drain's progress.
                slave["drain_tasks_left"] = json!(drain.tasks_left);
            }
            slave
        }).collect::<Vec<_>>(),
        "frameworks": s.frameworks.iter().map(|f| json!({
            "id": f.id,
            "name": f.info.name,
            "user": f.info.user,
            "roles": f.info.roles,
            "principal": f.info.principal,
            "active": f.active,
            "connected": f.connected,
            "capabilities": f.info.capabilities,
            "failover_timeout": f.info.failover_timeout.as_secs_f64(),
            "dominant_share": f.dominant_share,
            "used_resources": json::resource_summary(&f.used),
            "offered_resources": json::resource_summary(&f.offered),
            "tasks": f.tasks.iter().map(task_json).collect::<Vec<_>>(),
            "completed_tasks": f.completed_tasks.iter().map(task_json).collect::<Vec<_>>(),
            "offers": f.offers.iter().map(json::offer).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "recovered_slaves": s.recovered_agents.iter().map(|(id, hostname)| json!({
            "id": id, "hostname": hostname,
        })).collect::<Vec<_>>(),
        "completed_frameworks": s.completed_frameworks.iter().map(|(id, info)| json!({
            "id": id, "name": info.name, "user": info.user, "roles": info.roles,
        })).collect::<Vec<_>>(),
        "roles": s.roles.iter().map(|(role, weight, share)| json!({
            "name": role, "weight": weight, "dominant_share": share,
        })).collect::<Vec<_>>(),
    })
}

/// Mesos's `GET /version`: the Mesos version this master speaks, and Orca's own.
async fn version() -> Json<JsonValue> {
    let mut version = operator::version_info();
    version["orca_version"] = json!(env!("CARGO_PKG_VERSION"));
    Json(version)
}

/// Mesos's `GET /flags`: `{"flags": {"name": "value", ...}}`.
async fn flags(State(api): State<Api>) -> Json<JsonValue> {
    let flags: serde_json::Map<String, JsonValue> = api
        .cluster
        .flags()
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    Json(json!({ "flags": flags }))
}

async fn metrics_snapshot(State(api): State<Api>) -> Json<JsonValue> {
    let metrics: serde_json::Map<String, JsonValue> = api
        .cluster
        .metrics()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    Json(JsonValue::Object(metrics))
}
