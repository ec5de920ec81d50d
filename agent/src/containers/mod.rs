//! Containers on this host and their metadata, from the runtimes whose sockets are present:
//! Docker (bollard) and containerd (containerd-client). A background task refreshes a shared
//! directory; the engine reads it to attribute processes to containers and describe them.
mod containerd;
pub mod control;
mod docker;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use orca_proto::topology::v1::ContainerState;

use crate::cgroup;

/// A container runtime that did not answer a listing; its last known containers are kept.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker at {}: {source}", .socket.display())]
    Docker {
        socket: std::path::PathBuf,
        source: bollard::errors::Error,
    },
    #[error("containerd at {}: {source}", .socket.display())]
    ContainerdSocket {
        socket: std::path::PathBuf,
        source: containerd_client::tonic::transport::Error,
    },
    #[error("containerd at {}{}: {}", .socket.display(), .namespace.as_deref().map(|n| format!(" namespace {n}")).unwrap_or_default(), .status.message())]
    Containerd {
        socket: std::path::PathBuf,
        namespace: Option<String>,
        status: tonic::Status,
    },
}

/// What a runtime says about one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub id: String,
    pub name: String,
    pub image: String,
    pub runtime: &'static str,
    pub namespace: String,
    pub state: ContainerState,
    pub labels: HashMap<String, String>,
    pub ports: Vec<String>,
    pub memory_limit_bytes: u64,
    pub cpu_limit_cores: f64,
    /// The container's init process (0 when not running).
    pub pid: u32,
    /// Docker's RestartCount (containerd keeps none).
    pub restart_count: u32,
}

/// Every known container, by id and by the cgroup its init process runs in.
#[derive(Debug, Default)]
pub struct Directory {
    pub by_id: HashMap<String, ContainerMeta>,
    pub by_cgroup: HashMap<String, String>,
    /// The last error of each runtime (cleared when it answers again).
    pub errors: HashMap<&'static str, String>,
}

pub type SharedDirectory = Arc<RwLock<Directory>>;

/// Where the runtimes listen.
#[derive(Debug, Clone)]
pub struct RuntimeSockets {
    pub docker: Option<PathBuf>,
    pub containerd: Option<PathBuf>,
}

impl Default for RuntimeSockets {
    fn default() -> Self {
        Self {
            docker: Some("/var/run/docker.sock".into()),
            containerd: Some("/run/containerd/containerd.sock".into()),
        }
    }
}

impl Directory {
    /// The container a process in `cgroup_path` belongs to: the runtime's own record when the
    /// cgroup is a known container's, else recognised from the runtime's naming scheme.
    pub fn container_of(&self, cgroup_path: &str) -> Option<(String, &'static str)> {
        if let Some(id) = self.by_cgroup.get(cgroup_path) {
            let runtime = self
                .by_id
                .get(id)
                .map(|c| c.runtime)
                .unwrap_or("containerd");
            return Some((id.clone(), runtime));
        }
        cgroup::container_from_cgroup(cgroup_path).map(|c| (c.id, c.runtime))
    }
}

/// Lists every runtime once and replaces the directory's contents.
pub async fn refresh(sockets: &RuntimeSockets, directory: &SharedDirectory) {
    let mut all = Vec::new();
    let mut errors = HashMap::new();
    if let Some(path) = sockets.docker.as_ref().filter(|p| p.exists()) {
        match docker::list(path).await {
            Ok(found) => all.extend(found),
            Err(err) => {
                errors.insert("docker", err.to_string());
            }
        }
    }
    if let Some(path) = sockets.containerd.as_ref().filter(|p| p.exists()) {
        match containerd::list(path).await {
            Ok(found) => all.extend(found),
            Err(err) => {
                errors.insert("containerd", err.to_string());
            }
        }
    }
    let mut by_cgroup = HashMap::new();
    for c in &all {
        if c.pid != 0 {
            by_cgroup.insert(cgroup::of_process(c.pid), c.id.clone());
        }
    }
    let mut dir = directory.write().unwrap_or_else(|e| e.into_inner());
    for (runtime, err) in &errors {
        if dir.errors.get(runtime) != Some(err) {
            tracing::warn!(runtime, %err, "cannot list containers; keeping the last known list");
        }
    }
    // A runtime that failed keeps its previous containers rather than making them vanish.
    let failed: Vec<&'static str> = errors.keys().copied().collect();
    let mut by_id: HashMap<String, ContainerMeta> = dir
        .by_id
        .drain()
        .filter(|(_, c)| failed.contains(&c.runtime))
        .collect();
    by_id.extend(all.into_iter().map(|c| (c.id.clone(), c)));
    by_cgroup.extend(
        dir.by_cgroup
            .drain()
            .filter(|(_, id)| by_id.get(id).is_some_and(|c| failed.contains(&c.runtime))),
    );
    dir.by_id = by_id;
    dir.by_cgroup = by_cgroup;
    dir.errors = errors;
}

/// Refreshes the directory every `every` until the process ends.
pub async fn watch(sockets: RuntimeSockets, directory: SharedDirectory, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        refresh(&sockets, &directory).await;
    }
}
