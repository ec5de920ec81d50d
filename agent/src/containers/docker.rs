//! Containers from a Docker engine (bollard).
use std::path::Path;

use bollard::{
    API_DEFAULT_VERSION, Docker,
    query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder},
};

use orca_proto::topology::v1::ContainerState;

use super::{ContainerMeta, RuntimeError};

pub async fn list(socket: &Path) -> Result<Vec<ContainerMeta>, RuntimeError> {
    let failed = |source| RuntimeError::Docker {
        socket: socket.to_path_buf(),
        source,
    };
    let docker = Docker::connect_with_unix(&socket.to_string_lossy(), 10, API_DEFAULT_VERSION)
        .map_err(failed)?;
    let summaries = docker
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .map_err(failed)?;
    let mut out = Vec::with_capacity(summaries.len());
    for s in summaries {
        let Some(id) = s.id else { continue };
        let mut meta = ContainerMeta {
            name: s
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            image: s.image.unwrap_or_default(),
            runtime: "docker",
            namespace: String::new(),
            state: s
                .state
                .map_or(ContainerState::Unspecified, |st| state(st.as_ref())),
            labels: s.labels.unwrap_or_default(),
            ports: s
                .ports
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                    match p.public_port {
                        Some(public) => format!(
                            "{}:{public}->{}/{proto}",
                            p.ip.as_deref().unwrap_or("0.0.0.0"),
                            p.private_port
                        ),
                        None => format!("{}/{proto}", p.private_port),
                    }
                })
                .collect(),
            id: id.clone(),
            ..Default::default()
        };
        // Limits and the init pid come from inspect; a container that vanished meanwhile
        // keeps what the list said.
        if let Ok(inspect) = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            if let Some(state) = inspect.state {
                meta.pid = state.pid.unwrap_or(0).max(0) as u32;
            }
            meta.restart_count = inspect.restart_count.unwrap_or(0).max(0) as u32;
            if let Some(hc) = inspect.host_config {
                meta.memory_limit_bytes = hc.memory.unwrap_or(0).max(0) as u64;
                meta.cpu_limit_cores = match (hc.nano_cpus, hc.cpu_quota, hc.cpu_period) {
                    (Some(n), _, _) if n > 0 => n as f64 / 1e9,
                    (_, Some(q), Some(p)) if q > 0 && p > 0 => q as f64 / p as f64,
                    _ => 0.0,
                };
            }
        }
        out.push(meta);
    }
    Ok(out)
}

/// Docker's state names (`running`, `exited`, ...) as the report's enum.
fn state(name: &str) -> ContainerState {
    match name {
        "created" => ContainerState::Created,
        "running" => ContainerState::Running,
        "paused" => ContainerState::Paused,
        "restarting" => ContainerState::Restarting,
        "exited" => ContainerState::Exited,
        "removing" => ContainerState::Removing,
        "dead" => ContainerState::Dead,
        _ => ContainerState::Unspecified,
    }
}
