//! Mesos v1 JSON shapes (the protobuf JSON mapping Mesos uses: snake_case fields, enums as
//! strings, ids as `{"value": ...}`, bytes as base64) and their conversion to and from the
//! master's domain types. Unknown fields are ignored, as clients written against newer Mesos
//! versions send them.
use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    cluster::{
        CommandInfo, Event, FrameworkInfo, InverseOffer, Labels, Offer, Operation, TaskInfo,
        TaskStatus, Unavailability,
    },
    resources::{Ranges, Resource, Resources, Scalar, UNRESERVED_ROLE, Value, intern},
};

#[derive(Debug, Default, Deserialize)]
pub struct Id {
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct Call {
    pub framework_id: Option<Id>,
    #[serde(rename = "type")]
    pub kind: String,
    pub subscribe: Option<Subscribe>,
    pub accept: Option<Accept>,
    pub decline: Option<Decline>,
    pub accept_inverse_offers: Option<InverseOffers>,
    pub decline_inverse_offers: Option<InverseOffers>,
    pub revive: Option<Roles>,
    pub suppress: Option<Roles>,
    pub kill: Option<Kill>,
    pub acknowledge: Option<Acknowledge>,
    pub reconcile: Option<Reconcile>,
    pub update_framework: Option<Subscribe>,
    pub shutdown: Option<Shutdown>,
    pub message: Option<Message>,
    /// REQUEST's body; Mesos only checks it is there (its allocator ignores requests).
    pub request: Option<serde_json::Value>,
}

/// SHUTDOWN: an executor to end on an agent.
#[derive(Debug, Deserialize)]
pub struct Shutdown {
    pub executor_id: Id,
    pub agent_id: Id,
}

/// MESSAGE: data for an executor (base64 in JSON).
#[derive(Debug, Deserialize)]
pub struct Message {
    pub agent_id: Id,
    pub executor_id: Id,
    pub data: String,
}

#[derive(Debug, Deserialize)]
pub struct Subscribe {
    pub framework_info: FrameworkInfoJson,
    #[serde(default)]
    pub suppressed_roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct FrameworkInfoJson {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub name: String,
    pub id: Option<Id>,
    pub failover_timeout: Option<f64>,
    #[serde(default)]
    pub checkpoint: bool,
    /// Deprecated single role.
    pub role: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub hostname: Option<String>,
    pub principal: Option<String>,
    pub webui_url: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    pub labels: Option<LabelsJson>,
}

#[derive(Debug, Deserialize)]
pub struct Capability {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LabelsJson {
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Debug, Deserialize)]
pub struct Label {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct Filters {
    pub refuse_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Accept {
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    #[serde(default)]
    pub operations: Vec<OperationJson>,
    pub filters: Option<Filters>,
}

#[derive(Debug, Deserialize)]
pub struct Decline {
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    pub filters: Option<Filters>,
}

/// ACCEPT_INVERSE_OFFERS / DECLINE_INVERSE_OFFERS.
#[derive(Debug, Deserialize)]
pub struct InverseOffers {
    #[serde(default)]
    pub inverse_offer_ids: Vec<Id>,
    pub filters: Option<Filters>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Roles {
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct OperationJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub launch: Option<Launch>,
    pub launch_group: Option<LaunchGroup>,
}

#[derive(Debug, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub task_infos: Vec<TaskInfoJson>,
}

#[derive(Debug, Deserialize)]
pub struct LaunchGroup {
    pub task_group: TaskGroup,
}

#[derive(Debug, Deserialize)]
pub struct TaskGroup {
    #[serde(default)]
    pub tasks: Vec<TaskInfoJson>,
}

#[derive(Debug, Deserialize)]
pub struct TaskInfoJson {
    #[serde(default)]
    pub name: String,
    pub task_id: Id,
    pub agent_id: Id,
    #[serde(default)]
    pub resources: Vec<ResourceJson>,
    pub command: Option<CommandJson>,
    pub executor: Option<Json>,
    pub container: Option<Json>,
    pub labels: Option<LabelsJson>,
    pub kill_policy: Option<KillPolicy>,
}

#[derive(Debug, Deserialize)]
pub struct CommandJson {
    pub value: Option<String>,
    pub shell: Option<bool>,
    #[serde(default)]
    pub arguments: Vec<String>,
    pub environment: Option<Environment>,
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Environment {
    #[serde(default)]
    pub variables: Vec<Variable>,
}

#[derive(Debug, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct KillPolicy {
    pub grace_period: Option<DurationJson>,
}

#[derive(Debug, Deserialize)]
pub struct DurationJson {
    pub nanoseconds: i64,
}

#[derive(Debug, Deserialize)]
pub struct Kill {
    pub task_id: Id,
    pub agent_id: Option<Id>,
    pub kill_policy: Option<KillPolicy>,
}

#[derive(Debug, Deserialize)]
pub struct Acknowledge {
    pub agent_id: Id,
    pub task_id: Id,
    pub uuid: String,
}

#[derive(Debug, Deserialize)]
pub struct Reconcile {
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

#[derive(Debug, Deserialize)]
pub struct ReconcileTask {
    pub task_id: Id,
    pub agent_id: Option<Id>,
}

#[derive(Debug, Deserialize)]
pub struct ResourceJson {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub scalar: Option<ScalarJson>,
    pub ranges: Option<RangesJson>,
    pub role: Option<String>,
    #[serde(default)]
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Deserialize)]
pub struct ScalarJson {
    pub value: f64,
}

#[derive(Debug, Deserialize)]
pub struct RangesJson {
    #[serde(default)]
    pub range: Vec<RangeJson>,
}

#[derive(Debug, Deserialize)]
pub struct RangeJson {
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Deserialize)]
pub struct Reservation {
    pub role: Option<String>,
}

// ---- into the domain ----

pub fn duration(seconds: Option<f64>) -> Option<Duration> {
    seconds
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 365.0 * 24.0 * 3600.0)))
}

fn labels(json: Option<LabelsJson>) -> Labels {
    json.map(|l| l.labels.into_iter().map(|l| (l.key, l.value)).collect())
        .unwrap_or_default()
}

pub fn framework_info(json: FrameworkInfoJson) -> FrameworkInfo {
    let mut roles = json.roles;
    if roles.is_empty()
        && let Some(role) = json.role
    {
        roles.push(role);
    }
    FrameworkInfo {
        id: json.id.map(|i| i.value),
        user: json.user,
        name: json.name,
        roles,
        principal: json.principal,
        hostname: json.hostname,
        webui_url: json.webui_url,
        failover_timeout: duration(json.failover_timeout).unwrap_or_default(),
        checkpoint: json.checkpoint,
        capabilities: json.capabilities.into_iter().map(|c| c.kind).collect(),
        labels: labels(json.labels),
    }
}

/// A Mesos v1 JSON call the master cannot take (HTTP 400 with this message).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonError {
    #[error("resource {name}: {why}")]
    Resource { name: String, why: String },
    #[error("task {task}: {why}")]
    Task { task: String, why: String },
    #[error("{0} without `{1}`")]
    Missing(&'static str, &'static str),
    #[error("operation {0} is not supported (LAUNCH and LAUNCH_GROUP are)")]
    Operation(String),
    #[error("uuid is not base64: {0}")]
    UuidEncoding(String),
    #[error("uuid must be 16 bytes, got {0}")]
    UuidLength(usize),
}

fn bad_resource(name: &str, why: impl Into<String>) -> JsonError {
    JsonError::Resource {
        name: name.to_owned(),
        why: why.into(),
    }
}

pub fn resources(list: Vec<ResourceJson>) -> Result<Resources, JsonError> {
    let mut out = Resources::new();
    for r in list {
        let value = match r.kind.as_str() {
            "SCALAR" => {
                let v = r
                    .scalar
                    .ok_or_else(|| bad_resource(&r.name, "SCALAR without `scalar`"))?
                    .value;
                if !v.is_finite() || v < 0.0 {
                    return Err(bad_resource(
                        &r.name,
                        format!("scalar {v} is not a number >= 0"),
                    ));
                }
                Value::Scalar(Scalar::from_f64(v))
            }
            "RANGES" => {
                let ranges = r
                    .ranges
                    .ok_or_else(|| bad_resource(&r.name, "RANGES without `ranges`"))?;
                if let Some(bad) = ranges.range.iter().find(|x| x.begin > x.end) {
                    return Err(bad_resource(
                        &r.name,
                        format!("range {}-{} has begin > end", bad.begin, bad.end),
                    ));
                }
                Value::Ranges(Ranges::new(ranges.range.iter().map(|x| (x.begin, x.end))))
            }
            other => {
                return Err(bad_resource(
                    &r.name,
                    format!("type {other} is not supported (SCALAR and RANGES are)"),
                ));
            }
        };
        // Static reservations: the last entry of `reservations`, or the deprecated `role`.
        let reservation = r
            .reservations
            .last()
            .and_then(|res| res.role.clone())
            .or(r.role)
            .filter(|role| role != UNRESERVED_ROLE);
        out.add_resource(Resource {
            name: intern(&r.name),
            value,
            reservation: reservation.map(|role| intern(&role)),
        });
    }
    Ok(out)
}

pub fn task_info(json: TaskInfoJson) -> Result<TaskInfo, JsonError> {
    let task_id = json.task_id.value;
    let refuse = |why: &str| JsonError::Task {
        task: task_id.clone(),
        why: why.to_owned(),
    };
    if json.executor.is_some() {
        return Err(refuse(
            "custom executors are not supported; give a `command` instead",
        ));
    }
    if json.container.is_some() {
        return Err(refuse(
            "containers are not supported yet; give a `command` instead",
        ));
    }
    let command = json.command.map(|c| CommandInfo {
        shell: c.shell.unwrap_or(true),
        value: c.value.unwrap_or_default(),
        arguments: c.arguments,
        environment: c
            .environment
            .map(|e| e.variables.into_iter().map(|v| (v.name, v.value)).collect())
            .unwrap_or_default(),
        user: c.user,
    });
    Ok(TaskInfo {
        resources: resources(json.resources).map_err(|e| refuse(&e.to_string()))?,
        name: json.name,
        agent_id: json.agent_id.value,
        command,
        labels: labels(json.labels),
        kill_grace: json
            .kill_policy
            .and_then(|k| k.grace_period)
            .map(|g| Duration::from_nanos(g.nanoseconds.max(0) as u64)),
        task_id,
    })
}

pub fn operations(list: Vec<OperationJson>) -> Result<Vec<Operation>, JsonError> {
    list.into_iter()
        .map(|op| match op.kind.as_str() {
            "LAUNCH" => {
                let launch = op.launch.ok_or(JsonError::Missing("LAUNCH", "launch"))?;
                Ok(Operation::Launch(
                    launch
                        .task_infos
                        .into_iter()
                        .map(task_info)
                        .collect::<Result<_, _>>()?,
                ))
            }
            "LAUNCH_GROUP" => {
                let group = op
                    .launch_group
                    .ok_or(JsonError::Missing("LAUNCH_GROUP", "launch_group"))?;
                Ok(Operation::LaunchGroup(
                    group
                        .task_group
                        .tasks
                        .into_iter()
                        .map(task_info)
                        .collect::<Result<_, _>>()?,
                ))
            }
            other => Err(JsonError::Operation(other.to_owned())),
        })
        .collect()
}

pub fn uuid(text: &str) -> Result<[u8; 16], JsonError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| JsonError::UuidEncoding(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| JsonError::UuidLength(b.len()))
}

// ---- out of the domain ----

pub fn id(value: &str) -> Json {
    json!({ "value": value })
}

/// One resource as Mesos writes it; `allocated_to` adds `allocation_info` (offers, tasks).
pub fn resource(r: &Resource, allocated_to: Option<&str>) -> Json {
    let mut out = json!({ "name": &*r.name });
    match &r.value {
        Value::Scalar(s) => {
            out["type"] = json!("SCALAR");
            out["scalar"] = json!({ "value": s.as_f64() });
        }
        Value::Ranges(ranges) => {
            out["type"] = json!("RANGES");
            out["ranges"] = json!({
                "range": ranges.iter().map(|(b, e)| json!({"begin": b, "end": e})).collect::<Vec<_>>()
            });
        }
    }
    match &r.reservation {
        Some(role) => {
            out["role"] = json!(&**role);
            out["reservations"] = json!([{ "type": "STATIC", "role": &**role }]);
        }
        None => out["role"] = json!(UNRESERVED_ROLE),
    }
    if let Some(role) = allocated_to {
        out["allocation_info"] = json!({ "role": role });
    }
    out
}

pub fn resource_list(resources: &Resources, allocated_to: Option<&str>) -> Json {
    Json::Array(
        resources
            .iter()
            .map(|r| resource(r, allocated_to))
            .collect(),
    )
}

/// `{"cpus": 1.5, "mem": 128, "ports": "[31000-31010]"}` as in Mesos's `/master/state`.
pub fn resource_summary(resources: &Resources) -> Json {
    let mut out = serde_json::Map::new();
    for name in ["cpus", "gpus", "mem", "disk"] {
        out.insert(name.into(), json!(resources.scalar(name).as_f64()));
    }
    for r in resources.iter() {
        match &r.value {
            Value::Scalar(_) => {
                out.insert(
                    r.name.to_string(),
                    json!(resources.scalar(&r.name).as_f64()),
                );
            }
            Value::Ranges(ranges) => {
                out.insert(r.name.to_string(), json!(ranges.to_string()));
            }
        }
    }
    Json::Object(out)
}

fn labels_json(labels: &Labels) -> Json {
    json!({ "labels": labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>() })
}

/// An agent attribute as Mesos parses `--attributes`: a number is SCALAR, anything else
/// TEXT.
pub fn attribute(name: &str, value: &str) -> Json {
    match value.parse::<f64>() {
        Ok(number) => json!({ "name": name, "type": "SCALAR", "scalar": { "value": number } }),
        Err(_) => json!({ "name": name, "type": "TEXT", "text": { "value": value } }),
    }
}

pub fn offer(o: &Offer) -> Json {
    let mut out = json!({
        "id": id(&o.id),
        "framework_id": id(&o.framework_id),
        "agent_id": id(&o.agent_id),
        "hostname": o.hostname,
        "allocation_info": { "role": &*o.role },
        "resources": resource_list(&o.resources, Some(&o.role)),
        "attributes": o.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
    });
    if let Some(u) = &o.unavailability {
        out["unavailability"] = unavailability(u);
    }
    out
}

/// Mesos's `Unavailability`.
pub fn unavailability(u: &Unavailability) -> Json {
    let mut out = json!({ "start": { "nanoseconds": u.start_nanos } });
    if let Some(d) = u.duration_nanos {
        out["duration"] = json!({ "nanoseconds": d });
    }
    out
}

/// Mesos's `InverseOffer`.
fn inverse_offer(o: &InverseOffer) -> Json {
    json!({
        "id": id(&o.id),
        "framework_id": id(&o.framework_id),
        "agent_id": id(&o.agent_id),
        "unavailability": unavailability(&o.unavailability),
    })
}

pub fn status(s: &TaskStatus) -> Json {
    let mut out = json!({
        "task_id": id(&s.task_id),
        "state": s.state.name(),
        "source": s.source.name(),
        "timestamp": s.timestamp,
    });
    if !s.agent_id.is_empty() {
        out["agent_id"] = id(&s.agent_id);
    }
    if let Some(reason) = &s.reason {
        out["reason"] = json!(reason);
    }
    if let Some(message) = &s.message {
        out["message"] = json!(message);
    }
    if let Some(uuid) = &s.uuid {
        out["uuid"] = json!(BASE64.encode(uuid));
    }
    out
}

#[derive(serde::Serialize)]
struct IdRef<'a> {
    value: &'a str,
}

/// A TaskStatus written straight to JSON (the hottest event: two per task).
#[derive(serde::Serialize)]
struct StatusRef<'a> {
    task_id: IdRef<'a>,
    state: &'static str,
    source: &'static str,
    timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<IdRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
}

#[derive(serde::Serialize)]
struct UpdateEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    update: UpdateBody<'a>,
}

#[derive(serde::Serialize)]
struct UpdateBody<'a> {
    status: StatusRef<'a>,
}

/// Mesos's `MasterInfo` with only the fields Mesos defines (Orca's `orca_grpc` left out, as
/// strict protobuf JSON parsers reject unknown fields); before this master knows its
/// address, its id with the required fields zeroed.
pub fn master_info(info: Option<&orca_leader::MasterInfo>, master_id: &str) -> Json {
    let mut out = info
        .and_then(|info| serde_json::to_value(info).ok())
        .unwrap_or_else(|| {
            json!({ "id": master_id, "ip": 0, "port": 0,
                    "version": orca_leader::info::MESOS_VERSION })
        });
    if let Some(object) = out.as_object_mut() {
        object.remove("orca_grpc");
    }
    out
}

/// Appends the event's JSON to `out`; `master_info` is [`master_info`]'s, for SUBSCRIBED.
pub fn write_event(out: &mut Vec<u8>, e: &Event, master_info: &Json) {
    match e {
        Event::Update(s) => {
            let update = UpdateEvent {
                kind: "UPDATE",
                update: UpdateBody {
                    status: StatusRef {
                        task_id: IdRef { value: &s.task_id },
                        state: s.state.name(),
                        source: s.source.name(),
                        timestamp: s.timestamp,
                        agent_id: (!s.agent_id.is_empty()).then_some(IdRef { value: &s.agent_id }),
                        reason: s.reason.as_deref(),
                        message: s.message.as_deref(),
                        uuid: s.uuid.map(|u| BASE64.encode(u)),
                    },
                },
            };
            serde_json::to_writer(&mut *out, &update).expect("writing to a Vec cannot fail");
        }
        other => serde_json::to_writer(&mut *out, &event(other, master_info))
            .expect("writing to a Vec cannot fail"),
    }
}

pub fn event(e: &Event, master_info: &Json) -> Json {
    match e {
        Event::Subscribed {
            framework_id,
            heartbeat_interval,
        } => json!({
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": id(framework_id),
                "heartbeat_interval_seconds": heartbeat_interval.as_secs_f64(),
                "master_info": master_info,
            }
        }),
        Event::Offers(offers) => json!({
            "type": "OFFERS",
            "offers": { "offers": offers.iter().map(offer).collect::<Vec<_>>() }
        }),
        Event::Rescind { offer_id } => json!({
            "type": "RESCIND",
            "rescind": { "offer_id": id(offer_id) }
        }),
        Event::InverseOffers(offers) => json!({
            "type": "INVERSE_OFFERS",
            "inverse_offers": {
                "inverse_offers": offers.iter().map(inverse_offer).collect::<Vec<_>>()
            }
        }),
        Event::RescindInverseOffer { inverse_offer_id } => json!({
            "type": "RESCIND_INVERSE_OFFER",
            "rescind_inverse_offer": { "inverse_offer_id": id(inverse_offer_id) }
        }),
        Event::Update(s) => json!({ "type": "UPDATE", "update": { "status": status(s) } }),
        Event::Failure { agent_id } => json!({
            "type": "FAILURE",
            "failure": { "agent_id": id(agent_id) }
        }),
        Event::Error { message } => json!({ "type": "ERROR", "error": { "message": message } }),
        Event::Heartbeat => json!({ "type": "HEARTBEAT" }),
    }
}

pub fn labels_out(labels: &Labels) -> Json {
    labels_json(labels)
}
