//! The role weights and quotas operators change at run time (`GET_WEIGHTS`,
//! `UPDATE_WEIGHTS`, `GET_QUOTA`, `UPDATE_QUOTA`), kept in the registry so a restarted or
//! newly elected master allocates the same way.
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value as JsonValue, json};

use super::super::api_error;
use crate::{
    allocator::Quota,
    cluster::{ApiError, Cluster},
    resources::ScalarMap,
};

pub(super) fn get_weights(cluster: &Cluster) -> Response {
    match cluster.weights() {
        Ok(weights) => Json(json!({
            "type": "GET_WEIGHTS",
            "get_weights": { "weight_infos": weights
                .iter()
                .map(|(role, weight)| json!({ "role": role, "weight": weight }))
                .collect::<Vec<_>>() },
        }))
        .into_response(),
        Err(e) => api_error(e),
    }
}

pub(super) async fn update_weights(cluster: &Cluster, call: &JsonValue) -> Response {
    let weights = match weight_infos(&call["update_weights"]["weight_infos"]) {
        Ok(w) => w,
        Err(e) => return api_error(e),
    };
    match cluster.update_weights(weights).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

pub(super) fn get_quota(cluster: &Cluster) -> Response {
    match cluster.quotas() {
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
    }
}

pub(super) async fn update_quota(cluster: &Cluster, call: &JsonValue) -> Response {
    let quotas = match quota_configs(&call["update_quota"]["quota_configs"]) {
        Ok(q) => q,
        Err(e) => return api_error(e),
    };
    match cluster.update_quotas(quotas).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
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
