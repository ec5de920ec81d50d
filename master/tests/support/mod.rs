//! A hand-written Mesos v1 scheduler client (HTTP/1.1 over a TCP socket, RecordIO decoded by
//! hand), an in-process master serving the API on a free port, and a simulated agent that
//! answers launches and kills the way a real agent does.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    body::{Bytes, Incoming},
};
use orca_master::{
    cluster::{
        AgentCommand, AgentInfo, Cluster, ClusterConfig, StatusSource, TaskState, TaskStatus,
    },
    mesos_api::{self, recordio},
    resources::Resources,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;

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
    let router = mesos_api::router(cluster.clone());
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

async fn connection(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn request(addr: SocketAddr, body: Vec<u8>, stream_id: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/api/v1/scheduler")
        .header("Host", addr.to_string())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json");
    if let Some(id) = stream_id {
        builder = builder.header(mesos_api::STREAM_ID_HEADER, id);
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}

/// A subscribed framework: its id, stream id and event stream.
pub struct Scheduler {
    pub addr: SocketAddr,
    pub framework_id: String,
    pub stream_id: String,
    body: Incoming,
    decoder: recordio::Decoder,
    queued: std::collections::VecDeque<Value>,
    pub raw_records: usize,
}

impl Scheduler {
    /// SUBSCRIBE and wait for SUBSCRIBED; checks the response headers Mesos promises.
    pub async fn subscribe(addr: SocketAddr, framework_info: Value) -> Scheduler {
        let call = json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": framework_info } });
        let mut sender = connection(addr).await;
        let response = sender
            .send_request(request(addr, call.to_string().into_bytes(), None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let stream_id = response.headers()[mesos_api::STREAM_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let mut scheduler = Scheduler {
            addr,
            framework_id: String::new(),
            stream_id,
            body: response.into_body(),
            decoder: recordio::Decoder::default(),
            queued: Default::default(),
            raw_records: 0,
        };
        let subscribed = scheduler.next_event().await;
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        scheduler.framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(subscribed["subscribed"]["heartbeat_interval_seconds"].as_f64().unwrap() > 0.0);
        scheduler
    }

    /// Reads more of the stream into the queue; false when the stream ended.
    async fn receive(&mut self, deadline: tokio::time::Instant) -> bool {
        let frame = tokio::time::timeout_at(deadline, self.body.frame())
            .await
            .expect("no event before the deadline");
        let Some(Ok(frame)) = frame else { return false };
        if let Ok(data) = frame.into_data() {
            for record in self.decoder.push(&data).expect("RecordIO framing") {
                self.raw_records += 1;
                self.queued
                    .push_back(serde_json::from_slice(&record).expect("each record is JSON"));
            }
        }
        true
    }

    /// The next event in order, or a panic after `DEADLINE`. `None` when the stream ended.
    pub async fn try_next_event(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if !self.receive(deadline).await {
                return None;
            }
        }
    }

    pub async fn next_event(&mut self) -> Value {
        self.try_next_event().await.expect("the event stream ended")
    }

    /// The first event (queued or yet to come) that `matches`; other events stay queued.
    pub async fn take(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.queued.iter().position(&matches) {
                return self.queued.remove(at).expect("found");
            }
            assert!(self.receive(deadline).await, "the stream ended before {what}");
        }
    }

    /// The first event of `kind`.
    pub async fn wait_for(&mut self, kind: &str) -> Value {
        self.take(kind, |e| e["type"] == kind).await
    }

    /// The first UPDATE for `task_id`, as its status.
    pub async fn update_for(&mut self, task_id: &str) -> Value {
        let event = self
            .take(task_id, |e| {
                e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
            })
            .await;
        event["update"]["status"].clone()
    }

    /// Sends a call with this framework's id and stream id; returns status and body text.
    pub async fn call(&self, mut call: Value) -> (StatusCode, String) {
        call["framework_id"] = json!({ "value": self.framework_id });
        raw_call(self.addr, call.to_string().into_bytes(), Some(&self.stream_id)).await
    }

    pub async fn acknowledge(&self, status: &Value) {
        let (code, body) = self
            .call(json!({
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": status["agent_id"],
                    "task_id": status["task_id"],
                    "uuid": status["uuid"],
                }
            }))
            .await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    }
}

/// POSTs raw bytes to the scheduler endpoint.
pub async fn raw_call(addr: SocketAddr, body: Vec<u8>, stream_id: Option<&str>) -> (StatusCode, String) {
    let mut sender = connection(addr).await;
    let response = sender
        .send_request(request(addr, body, stream_id))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let mut sender = connection(addr).await;
    let request = Request::get(path)
        .header("Host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// What the simulated agent was asked to do.
#[derive(Debug, Default)]
pub struct AgentLog {
    pub launched: Vec<Vec<String>>,
    pub killed: Vec<String>,
    pub acknowledged: Vec<(String, [u8; 16])>,
    pub shutdowns: Vec<String>,
}

/// Registers an agent and answers its commands: a launch goes STARTING then RUNNING, a kill
/// KILLED. Heartbeats every 100 ms while `heartbeats` is true.
pub async fn simulated_agent(
    cluster: &Cluster,
    hostname: &str,
    resources: &str,
) -> (String, Arc<Mutex<AgentLog>>, Arc<std::sync::atomic::AtomicBool>) {
    let link = cluster
        .register_agent(
            AgentInfo {
                id: None,
                hostname: hostname.into(),
                resources: Resources::parse(resources).unwrap(),
                attributes: Default::default(),
            },
            Vec::new(),
        )
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
                    ..
                } => {
                    log2.lock().unwrap().killed.push(task_id.clone());
                    update(&framework_id, &task_id, TaskState::Killed);
                }
                AgentCommand::Acknowledge { task_id, uuid } => {
                    log2.lock().unwrap().acknowledged.push((task_id, uuid));
                }
                AgentCommand::ShutdownFramework { framework_id } => {
                    log2.lock().unwrap().shutdowns.push(framework_id);
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

/// A LAUNCH operation of one command task.
pub fn launch(task_id: &str, agent_id: &Value, resources: Value) -> Value {
    json!({
        "type": "LAUNCH",
        "launch": { "task_infos": [task(task_id, agent_id, resources)] }
    })
}

pub fn task(task_id: &str, agent_id: &Value, resources: Value) -> Value {
    json!({
        "name": task_id,
        "task_id": { "value": task_id },
        "agent_id": agent_id,
        "resources": resources,
        "command": { "shell": true, "value": "sleep 1000" },
    })
}

pub fn scalars(cpus: f64, mem: f64) -> Value {
    json!([
        { "name": "cpus", "type": "SCALAR", "scalar": { "value": cpus } },
        { "name": "mem", "type": "SCALAR", "scalar": { "value": mem } },
    ])
}
