//! Operator actions on this host's containers, through their runtime: stop, start, pause,
//! unpause, restart, remove, and output (logs, followed or not). Docker through bollard;
//! containerd through its task, container and snapshot services. Replies go back to the master
//! on the agent link, tagged with the request id.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    query_parameters::{
        LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
        StopContainerOptions,
    },
};
use containerd_client::{
    services::v1::{
        Container, CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest,
        GetContainerRequest, GetRequest, KillRequest, PauseTaskRequest, ResumeTaskRequest,
        StartRequest, WaitRequest,
        containers_client::ContainersClient,
        snapshots::{MountsRequest, RemoveSnapshotRequest, snapshots_client::SnapshotsClient},
        tasks_client::TasksClient,
    },
    with_namespace,
};
use futures::StreamExt as _;
use orca_proto::cluster::v1::{self as pb, ContainerAction};
use tokio::{sync::mpsc, task::AbortHandle};
use tonic::Request;

use super::{RuntimeSockets, SharedDirectory};

/// Why a container action failed; the message goes back to the operator as the reply's
/// `error` and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no container {0} on this host (neither Docker nor containerd knows it)")]
    Unknown(String),
    #[error("no container {id} on this host (containerd namespace {namespace} does not know it)")]
    UnknownInNamespace { id: String, namespace: String },
    #[error("no action named; send stop, start, pause, unpause, restart, remove or logs")]
    NoAction,
    #[error("docker at {socket}: {source}")]
    DockerSocket {
        socket: PathBuf,
        source: bollard::errors::Error,
    },
    #[error("docker could not {action} {id}: {source}")]
    Docker {
        action: &'static str,
        id: String,
        source: bollard::errors::Error,
    },
    #[error("containerd at {socket}: {source}")]
    ContainerdSocket {
        socket: PathBuf,
        source: containerd_client::tonic::transport::Error,
    },
    #[error("containerd could not {action} {id}: {}", .status.message())]
    Containerd {
        action: &'static str,
        id: String,
        status: tonic::Status,
    },
    #[error("{id} is {state}: {what}")]
    State {
        id: String,
        state: &'static str,
        what: &'static str,
    },
    #[error(
        "containerd keeps no output of {id}; restart it from orca (it then writes to {}) or \
         read the log its own client set up",
        .path.display()
    )]
    NoOutput { id: String, path: PathBuf },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn containerd_err(action: &'static str, id: &str) -> impl FnOnce(tonic::Status) -> ControlError {
    let id = id.to_owned();
    move |status| ControlError::Containerd { action, id, status }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ControlError {
    let path = path.to_path_buf();
    move |source| ControlError::Io {
        action,
        path,
        source,
    }
}

/// How long a stop waits after SIGTERM before SIGKILL, unless the command says.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a followed containerd log file is read for new output.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// Largest log chunk sent in one reply.
const CHUNK: usize = 64 << 10;

/// Runs container commands; cheap to clone.
#[derive(Debug, Clone)]
pub struct ContainerControl {
    sockets: RuntimeSockets,
    directory: SharedDirectory,
    /// Output of containerd containers started here goes to `<log_dir>/<namespace>/<id>.log`
    /// (containerd itself keeps none).
    log_dir: PathBuf,
    /// Followed logs still streaming, by request id (a cancel ends one).
    streams: Arc<Mutex<HashMap<u64, AbortHandle>>>,
}

/// Where a container lives.
#[derive(Debug, Clone)]
enum Runtime {
    Docker(PathBuf),
    Containerd { socket: PathBuf, namespace: String },
}

fn reply(request_id: u64) -> pb::ContainerReply {
    pb::ContainerReply {
        request_id,
        ..Default::default()
    }
}

fn message(reply: pb::ContainerReply) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::ContainerReply(reply)),
    }
}

impl ContainerControl {
    pub fn new(sockets: RuntimeSockets, directory: SharedDirectory, log_dir: PathBuf) -> Self {
        Self {
            sockets,
            directory,
            log_dir,
            streams: Arc::default(),
        }
    }

    /// Runs `command` in the background; every reply (and the final `done`, or an error)
    /// goes out on `out`.
    pub fn handle(&self, command: pb::ContainerCommand, out: mpsc::Sender<pb::AgentMessage>) {
        let id = command.request_id;
        if command.cancel {
            if let Some(stream) = self.lock_streams().remove(&id) {
                stream.abort();
            }
            return;
        }
        let follows = command.action() == ContainerAction::Logs;
        let control = self.clone();
        let task = tokio::spawn(async move {
            let result = control.run(&command, &out).await;
            control.lock_streams().remove(&id);
            let mut last = reply(id);
            last.done = true;
            if let Err(why) = result {
                tracing::info!(container = %command.container_id, action = ?command.action(), %why, "container action failed");
                last.error = why.to_string();
            }
            let _ = out.send(message(last)).await;
        });
        if follows {
            self.lock_streams().insert(id, task.abort_handle());
        }
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime holding `id`, from the container directory (refreshed once if unknown).
    async fn runtime_of(&self, id: &str) -> Result<Runtime, ControlError> {
        for attempt in 0..2 {
            let found = {
                let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
                dir.by_id.get(id).map(|c| (c.runtime, c.namespace.clone()))
            };
            match found {
                Some(("docker", _)) => {
                    if let Some(socket) = &self.sockets.docker {
                        return Ok(Runtime::Docker(socket.clone()));
                    }
                }
                Some((_, namespace)) => {
                    if let Some(socket) = &self.sockets.containerd {
                        return Ok(Runtime::Containerd {
                            socket: socket.clone(),
                            namespace,
                        });
                    }
                }
                None if attempt == 0 => super::refresh(&self.sockets, &self.directory).await,
                None => {}
            }
        }
        Err(ControlError::Unknown(id.to_owned()))
    }

    async fn run(
        &self,
        command: &pb::ContainerCommand,
        out: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), ControlError> {
        let id = command.container_id.as_str();
        let stop_timeout = match command.stop_timeout_seconds {
            0 => STOP_TIMEOUT,
            s => Duration::from_secs(s.into()),
        };
        let action = command.action();
        if action == ContainerAction::Unspecified {
            return Err(ControlError::NoAction);
        }
        match self.runtime_of(id).await? {
            Runtime::Docker(socket) => {
                let docker =
                    Docker::connect_with_unix(&socket.to_string_lossy(), 120, API_DEFAULT_VERSION)
                        .map_err(|source| ControlError::DockerSocket {
                            socket: socket.clone(),
                            source,
                        })?;
                docker_action(&docker, id, action, stop_timeout, command, out).await
            }
            Runtime::Containerd { socket, namespace } => {
                let channel = containerd_client::connect(&socket)
                    .await
                    .map_err(|source| ControlError::ContainerdSocket {
                        socket: socket.clone(),
                        source,
                    })?;
                let c = Containerd {
                    channel,
                    namespace,
                    log_dir: self.log_dir.clone(),
                };
                let container = c.container(id).await?;
                c.action(&container, action, stop_timeout, command, out)
                    .await
            }
        }?;
        if action == ContainerAction::Remove {
            self.directory
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .by_id
                .remove(id);
        }
        Ok(())
    }
}

async fn docker_action(
    docker: &Docker,
    id: &str,
    action: ContainerAction,
    stop_timeout: Duration,
    command: &pb::ContainerCommand,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<(), ControlError> {
    let t = stop_timeout.as_secs() as i32;
    let result = match action {
        ContainerAction::Stop => {
            docker
                .stop_container(
                    id,
                    Some(StopContainerOptions {
                        t: Some(t),
                        signal: None,
                    }),
                )
                .await
        }
        ContainerAction::Start => {
            docker
                .start_container(id, None::<StartContainerOptions>)
                .await
        }
        ContainerAction::Pause => docker.pause_container(id).await,
        ContainerAction::Unpause => docker.unpause_container(id).await,
        ContainerAction::Restart => {
            docker
                .restart_container(
                    id,
                    Some(RestartContainerOptions {
                        t: Some(t),
                        signal: None,
                    }),
                )
                .await
        }
        ContainerAction::Remove => {
            docker
                .remove_container(
                    id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
        }
        ContainerAction::Logs => {
            let options = LogsOptions {
                follow: command.follow,
                stdout: true,
                stderr: true,
                tail: match command.tail {
                    0 => "all".into(),
                    n => n.to_string(),
                },
                ..Default::default()
            };
            let mut logs = docker.logs(id, Some(options));
            while let Some(chunk) = logs.next().await {
                let chunk = chunk.map_err(|source| ControlError::Docker {
                    action: "read the logs of",
                    id: id.to_owned(),
                    source,
                })?;
                let mut r = reply(command.request_id);
                r.log = chunk.into_bytes().to_vec();
                if out.send(message(r)).await.is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
        ContainerAction::Unspecified => return Err(ControlError::NoAction),
    };
    result.map_err(|source| ControlError::Docker {
        action: action.word(),
        id: id.to_owned(),
        source,
    })
}

/// A containerd connection in one namespace.
struct Containerd {
    channel: tonic::transport::Channel,
    namespace: String,
    log_dir: PathBuf,
}

/// containerd's task status (`containerd.v1.types.Status`).
const RUNNING: i32 = 2;
const STOPPED: i32 = 3;
const PAUSED: i32 = 4;

impl Containerd {
    fn tasks(&self) -> TasksClient<tonic::transport::Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// The container's record; "no container" when containerd does not know `id` (any more).
    async fn container(&self, id: &str) -> Result<Container, ControlError> {
        let ns = self.namespace.as_str();
        match ContainersClient::new(self.channel.clone())
            .get(with_namespace!(GetContainerRequest { id: id.into() }, ns))
            .await
        {
            Ok(r) => r
                .into_inner()
                .container
                .ok_or_else(|| ControlError::UnknownInNamespace {
                    id: id.to_owned(),
                    namespace: ns.to_owned(),
                }),
            Err(s) if s.code() == tonic::Code::NotFound => Err(ControlError::UnknownInNamespace {
                id: id.to_owned(),
                namespace: ns.to_owned(),
            }),
            Err(s) => Err(containerd_err("look up", id)(s)),
        }
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.log_dir.join(&self.namespace).join(format!("{id}.log"))
    }

    /// The task's status, `None` when the container has no task.
    async fn status(&self, id: &str) -> Result<Option<i32>, ControlError> {
        let ns = self.namespace.as_str();
        match self
            .tasks()
            .get(with_namespace!(
                GetRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                ns
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().process.map(|p| p.status)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(containerd_err("read the task of", id)(s)),
        }
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), ControlError> {
        let ns = self.namespace.as_str();
        self.tasks()
            .kill(with_namespace!(
                KillRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                    signal,
                    all: true,
                },
                ns
            ))
            .await
            .map(|_| ())
            .map_err(containerd_err("signal", id))
    }

    /// SIGTERM, up to `timeout` for the task to exit, then SIGKILL; then the task is deleted
    /// (so the container can be started again or removed).
    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), ControlError> {
        let ns = self.namespace.as_str();
        match self.status(id).await? {
            None => return Ok(()),
            Some(STOPPED) => {}
            Some(status) => {
                if status == PAUSED {
                    self.resume(id).await?;
                }
                self.kill(id, libc::SIGTERM as u32).await?;
                // Wait answers at once for a task that already exited.
                let mut tasks = self.tasks();
                let wait = tasks.wait(with_namespace!(
                    WaitRequest {
                        container_id: id.into(),
                        exec_id: String::new(),
                    },
                    ns
                ));
                if tokio::time::timeout(timeout, wait).await.is_err() {
                    self.kill(id, libc::SIGKILL as u32).await?;
                    let mut tasks = self.tasks();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        tasks.wait(with_namespace!(
                            WaitRequest {
                                container_id: id.into(),
                                exec_id: String::new(),
                            },
                            ns
                        )),
                    )
                    .await;
                }
            }
        }
        self.tasks()
            .delete(with_namespace!(
                DeleteTaskRequest {
                    container_id: id.into()
                },
                ns
            ))
            .await
            .map(|_| ())
            .map_err(containerd_err("delete the stopped task of", id))
    }

    async fn resume(&self, id: &str) -> Result<(), ControlError> {
        let ns = self.namespace.as_str();
        self.tasks()
            .resume(with_namespace!(
                ResumeTaskRequest {
                    container_id: id.into()
                },
                ns
            ))
            .await
            .map(|_| ())
            .map_err(containerd_err("unpause", id))
    }

    /// A new task from the container's snapshot, its output to the agent's log file.
    async fn start(&self, container: &Container) -> Result<(), ControlError> {
        let id = container.id.as_str();
        let ns = self.namespace.as_str();
        match self.status(id).await? {
            Some(RUNNING) => {
                return Err(ControlError::State {
                    id: id.to_owned(),
                    state: "already running",
                    what: "stop or restart it instead",
                });
            }
            Some(PAUSED) => {
                return Err(ControlError::State {
                    id: id.to_owned(),
                    state: "paused",
                    what: "unpause it instead",
                });
            }
            Some(_) => {
                // A stopped task stays until deleted; a new one needs the place.
                let _ = self
                    .tasks()
                    .delete(with_namespace!(
                        DeleteTaskRequest {
                            container_id: id.into()
                        },
                        ns
                    ))
                    .await;
            }
            None => {}
        }
        let rootfs = if container.snapshot_key.is_empty() {
            Vec::new()
        } else {
            SnapshotsClient::new(self.channel.clone())
                .mounts(with_namespace!(
                    MountsRequest {
                        snapshotter: container.snapshotter.clone(),
                        key: container.snapshot_key.clone(),
                    },
                    ns
                ))
                .await
                .map_err(containerd_err("mount the snapshot of", id))?
                .into_inner()
                .mounts
        };
        let log = self.log_path(id);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let uri = format!("file://{}", log.display());
        self.tasks()
            .create(with_namespace!(
                CreateTaskRequest {
                    container_id: id.into(),
                    rootfs,
                    stdout: uri.clone(),
                    stderr: uri,
                    ..Default::default()
                },
                ns
            ))
            .await
            .map_err(containerd_err("create a task for", id))?;
        self.tasks()
            .start(with_namespace!(
                StartRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                ns
            ))
            .await
            .map(|_| ())
            .map_err(containerd_err("start", id))
    }

    async fn remove(&self, container: &Container) -> Result<(), ControlError> {
        let (id, ns) = (container.id.as_str(), self.namespace.as_str());
        self.stop(id, Duration::ZERO).await?;
        ContainersClient::new(self.channel.clone())
            .delete(with_namespace!(
                DeleteContainerRequest { id: id.into() },
                ns
            ))
            .await
            .map_err(containerd_err("remove", id))?;
        if !container.snapshot_key.is_empty() {
            let removed = SnapshotsClient::new(self.channel.clone())
                .remove(with_namespace!(
                    RemoveSnapshotRequest {
                        snapshotter: container.snapshotter.clone(),
                        key: container.snapshot_key.clone(),
                    },
                    ns
                ))
                .await;
            if let Err(s) = removed {
                tracing::warn!(container = %id, "its snapshot stays: {}", s.message());
            }
        }
        let _ = std::fs::remove_file(self.log_path(id));
        Ok(())
    }

    async fn action(
        &self,
        container: &Container,
        action: ContainerAction,
        stop_timeout: Duration,
        command: &pb::ContainerCommand,
        out: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), ControlError> {
        let (id, ns) = (container.id.as_str(), self.namespace.as_str());
        match action {
            ContainerAction::Stop => self.stop(id, stop_timeout).await,
            ContainerAction::Start => self.start(container).await,
            ContainerAction::Restart => {
                self.stop(id, stop_timeout).await?;
                self.start(container).await
            }
            ContainerAction::Pause => self
                .tasks()
                .pause(with_namespace!(
                    PauseTaskRequest {
                        container_id: id.into()
                    },
                    ns
                ))
                .await
                .map(|_| ())
                .map_err(containerd_err("pause", id)),
            ContainerAction::Unpause => self.resume(id).await,
            ContainerAction::Remove => self.remove(container).await,
            ContainerAction::Logs => {
                let path = self.log_path(id);
                if !path.exists() {
                    return Err(ControlError::NoOutput {
                        id: id.to_owned(),
                        path,
                    });
                }
                follow_file(&path, command, out).await
            }
            ContainerAction::Unspecified => Err(ControlError::NoAction),
        }
    }
}

/// Sends the file's last `tail` lines (or all), then, when following, what is appended.
async fn follow_file(
    path: &Path,
    command: &pb::ContainerCommand,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<(), ControlError> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let text = tokio::fs::read(path).await.map_err(io_err("read", path))?;
    let start = match command.tail as usize {
        0 => 0,
        n => {
            let mut newlines = text
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i);
            // Skip the final newline, then find the one before the n-th last line.
            if text.last() == Some(&b'\n') {
                newlines.next();
            }
            newlines.nth(n - 1).map_or(0, |i| i + 1)
        }
    };
    for chunk in text[start..].chunks(CHUNK) {
        let mut r = reply(command.request_id);
        r.log = chunk.to_vec();
        if out.send(message(r)).await.is_err() {
            return Ok(());
        }
    }
    if !command.follow {
        return Ok(());
    }
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(io_err("read", path))?;
    let mut at = text.len() as u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        file.seek(std::io::SeekFrom::Start(at))
            .await
            .map_err(io_err("read", path))?;
        let n = file.read(&mut buf).await.map_err(io_err("read", path))?;
        if n == 0 {
            tokio::time::sleep(FOLLOW_EVERY).await;
            continue;
        }
        at += n as u64;
        let mut r = reply(command.request_id);
        r.log = buf[..n].to_vec();
        if out.send(message(r)).await.is_err() {
            return Ok(());
        }
    }
}
