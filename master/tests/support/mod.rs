//! A hand-written Mesos v1 scheduler client (HTTP/1.1 over a TCP socket, RecordIO decoded by
//! hand), an in-process master serving the API on a free port, and a simulated agent that
//! answers launches and kills the way a real agent does.
#![allow(dead_code, unused_imports)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper::StatusCode;
use orca_master::{
    api::mesos_http::{
        self,
        client::{self, SchedulerClient},
    },
    cluster::{
        AgentCommand, AgentInfo, Cluster, ClusterConfig, StatusSource, TaskState, TaskStatus,
    },
    resources::Resources,
};
use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct Master {
    pub cluster: Cluster,
    pub addr: SocketAddr,
}

/// Serves the scheduler API on 127.0.0.1:0 and runs the allocation loop.
pub async fn master(config: ClusterConfig) -> Master {
    let cluster = Cluster::new(config).expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = mesos_http::router(cluster.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::spawn(cluster.clone().run());
    Master { cluster, addr }
}

pub fn fast_config() -> ClusterConfig {
    ClusterConfig {
        allocation_interval: Duration::from_millis(50),
        framework_heartbeat: Duration::from_millis(300),
        ..ClusterConfig::default()
    }
}

/// A subscribed framework driven by the library's hand-written client, with panicking
/// helpers for tests.
pub struct Scheduler {
    pub client: SchedulerClient,
    pub framework_id: String,
    pub stream_id: String,
    pub addr: SocketAddr,
}

impl Scheduler {
    /// SUBSCRIBE and wait for SUBSCRIBED; checks the response headers Mesos promises.
    pub async fn subscribe(addr: SocketAddr, framework_info: Value) -> Scheduler {
        let client = SchedulerClient::subscribe(addr, framework_info)
            .await
            .unwrap();
        Scheduler {
            framework_id: client.framework_id.clone(),
            stream_id: client.stream_id.clone(),
            addr,
            client,
        }
    }

    pub fn raw_records(&self) -> usize {
        self.client.records()
    }

    pub async fn try_next_event(&mut self) -> Option<Value> {
        self.client.next_event(DEADLINE).await.unwrap()
    }

    pub async fn next_event(&mut self) -> Value {
        self.try_next_event().await.expect("the event stream ended")
    }

    /// The first event of `kind` (other events stay queued).
    pub async fn wait_for(&mut self, kind: &str) -> Value {
        self.client
            .take(DEADLINE, |e| e["type"] == kind)
            .await
            .unwrap()
    }

    /// The first UPDATE for `task_id`, as its status.
    pub async fn update_for(&mut self, task_id: &str) -> Value {
        let event = self
            .client
            .take(DEADLINE, |e| {
                e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
            })
            .await
            .unwrap();
        event["update"]["status"].clone()
    }

    pub async fn call(&self, call: Value) -> (StatusCode, String) {
        self.client.call(call).await.unwrap()
    }

    pub async fn acknowledge(&self, status: &Value) {
        assert!(status.get("uuid").is_some(), "{status}");
        self.client.acknowledge(status).await.unwrap();
    }
}

/// POSTs raw bytes to the scheduler endpoint.
pub async fn raw_call(
    addr: SocketAddr,
    body: Vec<u8>,
    stream_id: Option<&str>,
) -> (StatusCode, String) {
    client::post(addr, body, stream_id).await.unwrap()
}

pub async fn get_json(addr: SocketAddr, path: &str) -> Value {
    client::get_json(addr, path).await.unwrap()
}

/// What the simulated agent was asked to do.
#[derive(Debug, Default)]
pub struct AgentLog {
    pub launched: Vec<Vec<String>>,
    pub killed: Vec<String>,
    /// The grace period of each kill, in `killed`'s order.
    pub kill_graces: Vec<Option<Duration>>,
    /// The master marked the agent gone, saying this.
    pub shut_down: Option<String>,
    /// The master it was told to move to.
    pub switched_to: Option<String>,
    pub acknowledged: Vec<(String, [u8; 16])>,
    pub shutdowns: Vec<String>,
    pub containers: Vec<orca_proto::cluster::v1::ContainerCommand>,
}

/// Registers an agent and answers its commands: a launch goes STARTING then RUNNING, a kill
/// KILLED. Heartbeats every 100 ms while `heartbeats` is true.
pub async fn simulated_agent(
    cluster: &Cluster,
    hostname: &str,
    resources: &str,
) -> (
    String,
    Arc<Mutex<AgentLog>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let link = cluster
        .register_agent(
            AgentInfo {
                id: None,
                hostname: hostname.into(),
                resources: Resources::parse(resources).unwrap(),
                attributes: Default::default(),
                principal: None,
            },
            Vec::new(),
        )
        .await
        .unwrap();
    let agent_id = link.agent_id.clone();
    let log = Arc::new(Mutex::new(AgentLog::default()));
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (cluster2, log2, id2) = (cluster.clone(), log.clone(), agent_id.clone());
    let mut commands = link.commands;
    tokio::spawn(async move {
        let update = |framework_id: &str, task_id: &str, state: TaskState| {
            let _ = cluster2.status_update(
                framework_id,
                TaskStatus {
                    task_id: task_id.to_owned(),
                    agent_id: id2.clone(),
                    state,
                    source: StatusSource::Executor,
                    reason: None,
                    message: None,
                    timestamp: 0.0,
                    uuid: Some(*uuid::Uuid::new_v4().as_bytes()),
                },
            );
        };
        while let Some(command) = commands.recv().await {
            match command {
                AgentCommand::Launch {
                    framework_id,
                    tasks,
                    ..
                } => {
                    log2.lock()
                        .unwrap()
                        .launched
                        .push(tasks.iter().map(|t| t.task_id.clone()).collect());
                    for task in &tasks {
                        update(&framework_id, &task.task_id, TaskState::Starting);
                        update(&framework_id, &task.task_id, TaskState::Running);
                    }
                }
                AgentCommand::Kill {
                    framework_id,
                    task_id,
                    grace,
                } => {
                    let mut log = log2.lock().unwrap();
                    log.killed.push(task_id.clone());
                    log.kill_graces.push(grace);
                    drop(log);
                    update(&framework_id, &task_id, TaskState::Killed);
                }
                AgentCommand::Acknowledge { task_id, uuid } => {
                    log2.lock().unwrap().acknowledged.push((task_id, uuid));
                }
                AgentCommand::ShutdownFramework { framework_id } => {
                    log2.lock().unwrap().shutdowns.push(framework_id);
                }
                AgentCommand::Shutdown { message, .. } => {
                    log2.lock().unwrap().shut_down = Some(message);
                }
                AgentCommand::SwitchMaster { master } => {
                    log2.lock().unwrap().switched_to = Some(master);
                }
                AgentCommand::Container(command) => {
                    use orca_proto::cluster::v1::{ContainerAction, ContainerReply};
                    log2.lock().unwrap().containers.push(command.clone());
                    if command.cancel {
                        continue;
                    }
                    let reply = |log: &[u8], error: &str, done: bool| ContainerReply {
                        request_id: command.request_id,
                        error: error.into(),
                        log: log.to_vec(),
                        done,
                    };
                    // "missing" is not here; logs are two lines, more when followed.
                    if command.container_id == "missing" {
                        cluster2
                            .container_reply(&id2, reply(b"", "no container missing here", true));
                    } else if command.action() == ContainerAction::Logs {
                        cluster2.container_reply(&id2, reply(b"line 1\n", "", false));
                        cluster2.container_reply(&id2, reply(b"line 2\n", "", !command.follow));
                    } else {
                        cluster2.container_reply(&id2, reply(b"", "", true));
                    }
                }
            }
        }
    });
    let (cluster3, id3, alive2) = (cluster.clone(), agent_id.clone(), alive.clone());
    tokio::spawn(async move {
        while alive2.load(std::sync::atomic::Ordering::Relaxed) {
            if cluster3.agent_heartbeat(&id3).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (agent_id, log, alive)
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A LAUNCH of one `sleep 1000` task.
pub fn launch(task_id: &str, agent_id: &Value, resources: Value) -> Value {
    client::launch(task_id, agent_id, resources, "sleep 1000")
}

pub fn task(task_id: &str, agent_id: &Value, resources: Value) -> Value {
    client::task(task_id, agent_id, resources, "sleep 1000")
}

pub use client::scalars;

/// The whole master (gRPC and HTTP servers) on free ports with `fast_config`, serving until
/// the test ends: (gRPC address, HTTP address, its cluster).
pub async fn whole_master() -> (SocketAddr, SocketAddr, Cluster) {
    let master = orca_master::server::Master::bind(
        orca_collector::CollectorConfig::default(),
        fast_config(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (grpc, http) = (master.grpc_addr(), master.http_addr());
    let cluster = master.cluster.clone();
    tokio::spawn(master.serve(std::future::pending()));
    (grpc, http, cluster)
}
