//! Containers from containerd (containerd-client), in every namespace.
use orca_proto::topology::v1::ContainerState;
use std::{collections::HashMap, path::Path};

use containerd_client::{
    services::v1::{
        ListContainersRequest, ListNamespacesRequest, ListTasksRequest,
        containers_client::ContainersClient, namespaces_client::NamespacesClient,
        tasks_client::TasksClient,
    },
    with_namespace,
};
use tonic::Request;

use super::{ContainerMeta, RuntimeError};

/// Container names are labels in containerd; these are the ones the usual clients set.
const NAME_LABELS: &[&str] = &["io.kubernetes.container.name", "nerdctl/name", "name"];

pub async fn list(socket: &Path) -> Result<Vec<ContainerMeta>, RuntimeError> {
    let failed = |namespace: Option<String>| {
        move |status| RuntimeError::Containerd {
            socket: socket.to_path_buf(),
            namespace,
            status,
        }
    };
    let channel = containerd_client::connect(socket).await.map_err(|source| {
        RuntimeError::ContainerdSocket {
            socket: socket.to_path_buf(),
            source,
        }
    })?;
    let namespaces = NamespacesClient::new(channel.clone())
        .list(ListNamespacesRequest::default())
        .await
        .map_err(failed(None))?
        .into_inner()
        .namespaces;
    let mut out = Vec::new();
    for ns in namespaces {
        let ns = ns.name;
        let containers = ContainersClient::new(channel.clone())
            .list(with_namespace!(
                ListContainersRequest::default(),
                ns.as_str()
            ))
            .await
            .map_err(failed(Some(ns.clone())))?
            .into_inner()
            .containers;
        let tasks = TasksClient::new(channel.clone())
            .list(with_namespace!(ListTasksRequest::default(), ns.as_str()))
            .await
            .map_err(failed(Some(ns.clone())))?
            .into_inner()
            .tasks;
        let tasks: HashMap<String, (u32, i32)> = tasks
            .into_iter()
            .map(|t| (t.id.clone(), (t.pid, t.status)))
            .collect();
        for c in containers {
            let (pid, status) = tasks.get(&c.id).copied().unwrap_or((0, 0));
            let name = NAME_LABELS
                .iter()
                .find_map(|l| c.labels.get(*l).cloned())
                .unwrap_or_else(|| c.id.clone());
            let (memory_limit_bytes, cpu_limit_cores) = c
                .spec
                .as_ref()
                .map(|spec| limits_from_spec(&spec.value))
                .unwrap_or((0, 0.0));
            out.push(ContainerMeta {
                id: c.id.clone(),
                name,
                image: c.image.clone(),
                runtime: "containerd",
                namespace: ns.clone(),
                state: task_state(pid, status),
                labels: c.labels.clone(),
                ports: vec![],
                memory_limit_bytes,
                cpu_limit_cores,
                pid,
                restart_count: 0,
            });
        }
    }
    Ok(out)
}

/// containerd's task status enum (`containerd.v1.types.Status`).
fn task_state(pid: u32, status: i32) -> ContainerState {
    match status {
        1 => ContainerState::Created,
        2 => ContainerState::Running,
        3 => ContainerState::Exited,
        4 | 5 => ContainerState::Paused,
        _ if pid == 0 => ContainerState::Created,
        _ => ContainerState::Unspecified,
    }
}

/// Memory limit and CPU quota from the container's OCI runtime spec (JSON).
fn limits_from_spec(spec: &[u8]) -> (u64, f64) {
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(spec) else {
        return (0, 0.0);
    };
    let resources = &spec["linux"]["resources"];
    let memory = resources["memory"]["limit"].as_i64().unwrap_or(0).max(0) as u64;
    let quota = resources["cpu"]["quota"].as_i64().unwrap_or(0);
    let period = resources["cpu"]["period"].as_u64().unwrap_or(0);
    let cpus = if quota > 0 && period > 0 {
        quota as f64 / period as f64
    } else {
        0.0
    };
    (memory, cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_an_oci_spec() {
        let spec = br#"{"linux":{"resources":{"memory":{"limit":67108864},"cpu":{"quota":50000,"period":100000}}}}"#;
        assert_eq!(limits_from_spec(spec), (64 << 20, 0.5));
        assert_eq!(limits_from_spec(b"not json"), (0, 0.0));
    }
}
