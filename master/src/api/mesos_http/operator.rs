//! The Mesos v1 operator API (`POST /api/v1`), as far as this master serves it: the role
//! weights and quotas operators change at run time (`GET_WEIGHTS`, `UPDATE_WEIGHTS`,
//! `GET_QUOTA`, `UPDATE_QUOTA`), kept in the registry so a restarted or newly elected master
//! allocates the same way, and `GET_HEALTH`. Other calls answer 501 naming themselves.
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value as JsonValue, json};

use super::{Api, api_error, error};
use crate::{allocator::Quota, cluster::ApiError, resources::ScalarMap};

pub(super) async fn call(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
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
        "GET_HEALTH" => Json(json!({ "type": "GET_HEALTH", "get_health": { "healthy": true } }))
            .into_response(),
        "GET_WEIGHTS" => match cluster.weights() {
            Ok(weights) => Json(json!({
                "type": "GET_WEIGHTS",
                "get_weights": { "weight_infos": weights
                    .iter()
                    .map(|(role, weight)| json!({ "role": role, "weight": weight }))
                    .collect::<Vec<_>>() },
            }))
            .into_response(),
            Err(e) => api_error(e),
        },
        "UPDATE_WEIGHTS" => {
            let weights = match weight_infos(&call["update_weights"]["weight_infos"]) {
                Ok(w) => w,
                Err(e) => return api_error(e),
            };
            match cluster.update_weights(weights).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => api_error(e),
            }
        }
        "GET_QUOTA" => match cluster.quotas() {
            Ok(quotas) => Json(json!({
                "type": "GET_QUOTA",
                "get_quota": { "status": {
                    "configs": quotas.iter().map(|(role, q)| quota_config(role, q)).collect::<Vec<_>>(),
                    "infos": quotas.iter().map(|(role, q)| json!({
                        "role": role,
                        "guarantee": q.guarantee.iter().map(|(name, amount)| json!({
                            "name": name, "type": "SCALAR", "scalar": { "value": amount.as_f64() },
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                } },
            }))
            .into_response(),
            Err(e) => api_error(e),
        },
        "UPDATE_QUOTA" => {
            let quotas = match quota_configs(&call["update_quota"]["quota_configs"]) {
                Ok(q) => q,
                Err(e) => return api_error(e),
            };
            match cluster.update_quotas(quotas).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => api_error(e),
            }
        }
        "" => error(StatusCode::BAD_REQUEST, "the call has no `type`"),
        other => error(
            StatusCode::NOT_IMPLEMENTED,
            format!("operator call {other} is not supported by this master"),
        ),
    }
}

fn weight_infos(infos: &JsonValue) -> Result<Vec<(String, f64)>, ApiError> {
    let infos = infos.as_array().ok_or_else(|| {
        ApiError::BadRequest("UPDATE_WEIGHTS needs `update_weights.weight_infos`".into())
    })?;
    infos
        .iter()
        .map(|info| {
            let role = info["role"].as_str().ok_or_else(|| {
                ApiError::BadRequest(format!("a weight info without a role: {info}"))
            })?;
            let weight = info["weight"].as_f64().ok_or_else(|| {
                ApiError::BadRequest(format!("a weight info without a numeric weight: {info}"))
            })?;
            Ok((role.to_owned(), weight))
        })
        .collect()
}

/// A `{"cpus": {"value": 4}}` map as a scalar map.
fn scalar_map(map: &JsonValue, what: &str) -> Result<ScalarMap, ApiError> {
    let Some(map) = map.as_object() else {
        return Ok(ScalarMap::default());
    };
    let text = map
        .iter()
        .map(|(name, value)| {
            value["value"]
                .as_f64()
                .map(|v| format!("{name}:{v}"))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{what} {name}: expected {{\"value\": <number>}}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?
        .join(";");
    if text.is_empty() {
        return Ok(ScalarMap::default());
    }
    ScalarMap::parse(&text).map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))
}

fn quota_configs(configs: &JsonValue) -> Result<Vec<(String, Quota)>, ApiError> {
    let configs = configs.as_array().ok_or_else(|| {
        ApiError::BadRequest("UPDATE_QUOTA needs `update_quota.quota_configs`".into())
    })?;
    configs
        .iter()
        .map(|config| {
            let role = config["role"].as_str().ok_or_else(|| {
                ApiError::BadRequest(format!("a quota config without a role: {config}"))
            })?;
            let limits = scalar_map(&config["limits"], "limits")?;
            Ok((
                role.to_owned(),
                Quota {
                    guarantee: scalar_map(&config["guarantees"], "guarantees")?,
                    limit: (!limits.is_empty()).then_some(limits),
                },
            ))
        })
        .collect()
}

fn scalars_json(map: &ScalarMap) -> JsonValue {
    JsonValue::Object(
        map.iter()
            .map(|(name, amount)| (name.to_owned(), json!({ "value": amount.as_f64() })))
            .collect::<Map<_, _>>(),
    )
}

fn quota_config(role: &str, quota: &Quota) -> JsonValue {
    let mut config = json!({ "role": role, "guarantees": scalars_json(&quota.guarantee) });
    if let Some(limit) = &quota.limit {
        config["limits"] = scalars_json(limit);
    }
    config
}
