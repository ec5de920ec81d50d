//! What the cluster holds, as Mesos's `mesos.v1.master.Response` messages: `GET_STATE` and
//! its parts, `GET_ROLES` and `GET_MASTER`. Built from one state snapshot each, so the parts
//! of a `GET_STATE` agree with each other.
use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{Value as JsonValue, json};

use super::super::json::{attribute, id, labels_out, master_info, resource_list, status};
use crate::{
    cluster::{
        AgentView, Cluster, DrainView, FrameworkInfo, FrameworkView, StateSnapshot, TaskView,
    },
    resources::Resources,
};

/// Mesos's `TimeInfo`.
fn time(t: SystemTime) -> JsonValue {
    let nanos = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    json!({ "nanoseconds": nanos })
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn agent_info(a: &AgentView) -> JsonValue {
    json!({
        "hostname": a.hostname,
        "id": id(&a.id),
        "resources": resource_list(&a.total, None),
        "attributes": a.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
    })
}

/// Mesos's `DrainInfo`.
pub(in crate::api) fn drain_info(d: &DrainView) -> JsonValue {
    let mut config = json!({ "mark_gone": d.mark_gone });
    if let Some(secs) = d.max_grace_period_secs {
        config["max_grace_period"] = json!({ "nanoseconds": (secs * 1e9).round() as i64 });
    }
    json!({ "state": d.state.name(), "config": config })
}

/// Mesos's `Response.GetAgents.Agent`.
pub(super) fn agent(a: &AgentView) -> JsonValue {
    let mut agent = json!({
        "agent_info": agent_info(a),
        "active": a.active,
        // Deactivated by an operator (DEACTIVATE_AGENT or a drain); an agent that is only
        // unreachable is `active: false` but not deactivated.
        "deactivated": a.deactivated,
        "version": orca_leader::info::MESOS_VERSION,
        "registered_time": time(a.registered),
        "total_resources": resource_list(&a.total, None),
        "allocated_resources": resource_list(&a.used, None),
        "offered_resources": resource_list(&a.offered, None),
    });
    if let Some(drain) = &a.drain {
        agent["drain_info"] = drain_info(drain);
        agent["estimated_drain_start_time"] = time(drain.started);
    }
    if let Some(at) = a.reregistered {
        agent["reregistered_time"] = time(at);
    }
    agent
}

pub fn agents(s: &StateSnapshot) -> JsonValue {
    json!({
        "agents": s.agents.iter().map(agent).collect::<Vec<_>>(),
        "recovered_agents": s.recovered_agents.iter().map(|(agent, hostname)| json!({
            "hostname": hostname,
            "id": id(agent),
        })).collect::<Vec<_>>(),
    })
}

/// Mesos's `FrameworkInfo`.
pub(super) fn framework_info(framework_id: &str, info: &FrameworkInfo) -> JsonValue {
    let mut out = json!({
        "user": info.user,
        "name": info.name,
        "id": id(framework_id),
        "failover_timeout": info.failover_timeout.as_secs_f64(),
        "checkpoint": info.checkpoint,
        "roles": info.roles,
        "capabilities": info.capabilities.iter().map(|c| json!({ "type": c })).collect::<Vec<_>>(),
        "labels": labels_out(&info.labels),
    });
    for (field, value) in [
        ("hostname", &info.hostname),
        ("principal", &info.principal),
        ("webui_url", &info.webui_url),
    ] {
        if let Some(value) = value {
            out[field] = json!(value);
        }
    }
    out
}

pub(super) fn framework(f: &FrameworkView) -> JsonValue {
    json!({
        "framework_info": framework_info(&f.id, &f.info),
        "active": f.active,
        "connected": f.connected,
        "recovered": f.recovered,
        "registered_time": time(f.registered),
        "offers": f.offers.iter().map(super::super::json::offer).collect::<Vec<_>>(),
        "allocated_resources": resource_list(&f.used, None),
        "offered_resources": resource_list(&f.offered, None),
    })
}

pub fn frameworks(s: &StateSnapshot) -> JsonValue {
    json!({
        "frameworks": s.frameworks.iter().map(framework).collect::<Vec<_>>(),
        "completed_frameworks": s.completed_frameworks.iter().map(|(framework_id, info)| json!({
            "framework_info": framework_info(framework_id, info),
            "active": false,
            "connected": false,
            "recovered": false,
        })).collect::<Vec<_>>(),
    })
}

/// Command tasks run without executors here: there are none to list.
pub fn executors() -> JsonValue {
    json!({ "executors": [] })
}

/// Mesos's `Task`.
pub(super) fn task(t: &TaskView) -> JsonValue {
    let mut out = json!({
        "name": t.name,
        "task_id": id(&t.id),
        "framework_id": id(&t.framework_id),
        "agent_id": id(&t.agent_id),
        "state": t.state.name(),
        "resources": resource_list(&t.resources, Some(&t.role)),
        "statuses": t.statuses.iter().map(status).collect::<Vec<_>>(),
        "labels": labels_out(&t.labels),
    });
    if let Some(last) = t.statuses.last() {
        out["status_update_state"] = json!(last.state.name());
    }
    out
}

pub fn tasks(s: &StateSnapshot) -> JsonValue {
    json!({
        "tasks": s.frameworks.iter().flat_map(|f| f.tasks.iter().map(task)).collect::<Vec<_>>(),
        "completed_tasks": s.frameworks.iter().flat_map(|f| f.completed_tasks.iter().map(task)).collect::<Vec<_>>(),
        "unreachable_tasks": [],
    })
}

pub fn state(s: &StateSnapshot) -> JsonValue {
    json!({
        "get_tasks": tasks(s),
        "get_executors": executors(),
        "get_frameworks": frameworks(s),
        "get_agents": agents(s),
    })
}

/// Every role with a weight, a framework or tasks: its weight, its frameworks and what its
/// tasks hold.
pub fn roles(s: &StateSnapshot) -> JsonValue {
    let mut roles: BTreeMap<&str, (f64, Vec<&str>, Resources)> = BTreeMap::new();
    for (role, weight, _) in &s.roles {
        roles
            .entry(role)
            .or_insert((*weight, Vec::new(), Resources::default()))
            .0 = *weight;
    }
    for f in &s.frameworks {
        for role in &f.info.roles {
            roles
                .entry(role)
                .or_insert((1.0, Vec::new(), Resources::default()))
                .1
                .push(&f.id);
        }
        for t in &f.tasks {
            roles
                .entry(&t.role)
                .or_insert((1.0, Vec::new(), Resources::default()))
                .2
                .add(&t.resources);
        }
    }
    json!({
        "roles": roles.iter().map(|(name, (weight, frameworks, resources))| json!({
            "name": name,
            "weight": weight,
            "frameworks": frameworks.iter().map(|f| id(f)).collect::<Vec<_>>(),
            "resources": resource_list(resources, None),
        })).collect::<Vec<_>>(),
    })
}

/// This master's `MasterInfo`, start and election times.
pub fn master(cluster: &Cluster) -> JsonValue {
    let mut out = json!({
        "master_info": master_info(cluster.info().as_ref(), &cluster.master_id()),
        "start_time": seconds(cluster.start_time()),
    });
    if let Some(elected) = cluster.elected_time() {
        out["elected_time"] = json!(seconds(elected));
    }
    out
}
