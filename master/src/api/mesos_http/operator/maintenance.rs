//! The operator's maintenance calls (Mesos's maintenance primitives):
//! `GET_MAINTENANCE_SCHEDULE`, `UPDATE_MAINTENANCE_SCHEDULE`, `GET_MAINTENANCE_STATUS`,
//! `START_MAINTENANCE` and `STOP_MAINTENANCE`, in Mesos's shapes (`mesos.v1.maintenance`).
//! Machines are matched to agents by hostname; a `MachineID` with only an `ip` is refused.
//! Inverse offers (the scheduler API's INVERSE_OFFERS) ask frameworks with tasks on a
//! draining machine's agents to give them back; their answers show in the status.
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value as JsonValue, json};

use super::{
    super::{api_error, error, json::unavailability},
    answer,
};
use crate::cluster::{Cluster, Unavailability, registry::WindowRecord};

fn machine_id(hostname: &str) -> JsonValue {
    json!({ "hostname": hostname })
}

fn nanoseconds(value: i64) -> JsonValue {
    json!({ "nanoseconds": value })
}

/// `GET_MAINTENANCE_SCHEDULE`: Mesos's `maintenance.Schedule`.
pub(super) fn get_schedule(cluster: &Cluster) -> Response {
    let record = match cluster.maintenance() {
        Ok(record) => record,
        Err(e) => return api_error(e),
    };
    let windows: Vec<JsonValue> = record
        .windows
        .iter()
        .map(|w| {
            json!({
                "machine_ids": w.machines.iter().map(|m| machine_id(m)).collect::<Vec<_>>(),
                "unavailability": unavailability(&Unavailability {
                    start_nanos: w.start_nanos,
                    duration_nanos: w.duration_nanos,
                }),
            })
        })
        .collect();
    answer(
        "GET_MAINTENANCE_SCHEDULE",
        json!({ "schedule": { "windows": windows } }),
    )
}

/// `GET_MAINTENANCE_STATUS`: scheduled machines not down are draining, each with what the
/// frameworks asked to give it back answered (`UNKNOWN` until they do); the others are down.
pub(super) fn get_status(cluster: &Cluster) -> Response {
    let status = match cluster.maintenance_status() {
        Ok(status) => status,
        Err(e) => return api_error(e),
    };
    let record = &status.record;
    let draining: Vec<JsonValue> = record
        .draining()
        .map(|m| {
            let statuses: Vec<JsonValue> = status
                .answers
                .get(m)
                .into_iter()
                .flatten()
                .map(|(framework_id, answer, at)| {
                    let nanos = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    json!({
                        "status": answer.name(),
                        "framework_id": { "value": framework_id },
                        "timestamp": nanoseconds(nanos),
                    })
                })
                .collect();
            json!({ "id": machine_id(m), "statuses": statuses })
        })
        .collect();
    answer(
        "GET_MAINTENANCE_STATUS",
        json!({ "status": {
            "draining_machines": draining,
            "down_machines": record.down.iter().map(|m| machine_id(m)).collect::<Vec<_>>(),
        } }),
    )
}

/// An int64 as proto3 JSON writes it: a number or a string of digits.
fn int64(value: &JsonValue) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The hostnames of `machine_ids`, or why not.
fn hostnames(ids: &JsonValue, field: &str) -> Result<Vec<String>, String> {
    let Some(ids) = ids.as_array() else {
        return Err(format!("expecting '{field}' to be a list of MachineIDs"));
    };
    ids.iter()
        .map(|id| match id["hostname"].as_str() {
            Some(h) if !h.trim().is_empty() => Ok(h.to_owned()),
            _ if id["ip"].is_string() => Err(format!(
                "'{field}': machine {id} has only an ip; Orca matches machines to agents by \
                 hostname, so name its hostname"
            )),
            _ => Err(format!("'{field}': machine {id} has no hostname")),
        })
        .collect()
}

fn windows(call: &JsonValue) -> Result<Vec<WindowRecord>, String> {
    let schedule = &call["update_maintenance_schedule"]["schedule"];
    if !schedule.is_object() {
        return Err("expecting 'update_maintenance_schedule.schedule' to be present".into());
    }
    let windows: &[JsonValue] = match &schedule["windows"] {
        JsonValue::Null => &[],
        JsonValue::Array(windows) => windows,
        _ => return Err("expecting 'schedule.windows' to be a list".into()),
    };
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let machines = hostnames(&w["machine_ids"], &format!("windows[{i}].machine_ids"))?;
            let unavailability = &w["unavailability"];
            let start = int64(&unavailability["start"]["nanoseconds"]).ok_or_else(|| {
                format!("windows[{i}].unavailability.start.nanoseconds is required")
            })?;
            let duration_nanos = match &unavailability["duration"] {
                JsonValue::Null => None,
                d => Some(int64(&d["nanoseconds"]).ok_or_else(|| {
                    format!("windows[{i}].unavailability.duration needs its nanoseconds")
                })?),
            };
            Ok(WindowRecord {
                machines,
                start_nanos: start,
                duration_nanos,
            })
        })
        .collect()
}

/// `UPDATE_MAINTENANCE_SCHEDULE`: 200 once the new schedule is in the registry.
pub(super) async fn update_schedule(cluster: &Cluster, call: &JsonValue) -> Response {
    let windows = match windows(call) {
        Ok(windows) => windows,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match cluster.update_maintenance_schedule(windows).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

/// `START_MAINTENANCE` (`start: true`) or `STOP_MAINTENANCE`: 200 once it is in the registry.
pub(super) async fn start_or_stop(cluster: &Cluster, call: &JsonValue, start: bool) -> Response {
    let field = if start {
        "start_maintenance"
    } else {
        "stop_maintenance"
    };
    let machines = match hostnames(&call[field]["machines"], &format!("{field}.machines")) {
        Ok(machines) => machines,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let done = if start {
        cluster.start_maintenance(machines).await
    } else {
        cluster.stop_maintenance(machines).await
    };
    match done {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}
