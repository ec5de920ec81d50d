//! A minimal Mesos v1 scheduler client: SUBSCRIBE over one HTTP/1.1 connection, events
//! decoded from the RecordIO stream, calls on fresh connections with the stream id. Used by
//! the tests, the launch benchmark and the TUI's launch dialog; it speaks exactly what any
//! Mesos HTTP scheduler library speaks.
use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    body::{Bytes, Incoming},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::{STREAM_ID_HEADER, recordio};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the master at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the master answered {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the event stream: {0}")]
    Stream(String),
    #[error("no event within {0:?}")]
    Timeout(Duration),
}

/// TLS for the connections this process makes to masters from now on (`use_tls`): a test
/// or benchmark talks to TLS masters or to plain ones, one after the other.
static TLS: std::sync::RwLock<Option<std::sync::Arc<rustls::ClientConfig>>> =
    std::sync::RwLock::new(None);

/// Makes every connection after this one TLS, trusting and presenting what `tls` says
/// (`None`: plain again).
pub fn use_tls(tls: Option<&orca_auth::tls::ClientTls>) -> Result<(), orca_auth::tls::TlsError> {
    let config = tls.map(|t| t.rustls_config(&[b"http/1.1"])).transpose()?;
    *TLS.write().unwrap_or_else(|p| p.into_inner()) = config;
    Ok(())
}

async fn connection(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let tls = TLS.read().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(tls) = tls else {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        return Ok(sender);
    };
    let stream = orca_auth::tls::tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            stream,
        )
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// An `Authorization` value for HTTP Basic, as a master with `--credentials` asks for.
pub fn basic(principal: &str, secret: &str) -> String {
    orca_auth::basic_authorization(principal, secret)
}

fn request(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
    stream_id: Option<&str>,
    authorization: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path)
        .header("Host", addr.to_string())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json");
    if let Some(id) = stream_id {
        builder = builder.header(STREAM_ID_HEADER, id);
    }
    if let Some(value) = authorization {
        builder = builder.header(hyper::header::AUTHORIZATION, value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("static request parts are valid")
}

/// POSTs `body` to `/api/v1/scheduler`; returns the status and body text.
pub async fn post(
    addr: SocketAddr,
    body: Vec<u8>,
    stream_id: Option<&str>,
) -> Result<(StatusCode, String), ClientError> {
    post_to(addr, "/api/v1/scheduler", body, stream_id, None).await
}

/// `post` with an `Authorization` value (see [`basic`]).
pub async fn post_as(
    addr: SocketAddr,
    body: Vec<u8>,
    stream_id: Option<&str>,
    authorization: Option<&str>,
) -> Result<(StatusCode, String), ClientError> {
    post_to(addr, "/api/v1/scheduler", body, stream_id, authorization).await
}

async fn post_to(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
    stream_id: Option<&str>,
    authorization: Option<&str>,
) -> Result<(StatusCode, String), ClientError> {
    let mut sender = connection(addr).await?;
    let response = sender
        .send_request(request(addr, path, body, stream_id, authorization))
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// POSTs an operator call (`/api/v1`); returns the status and body text.
pub async fn operator(addr: SocketAddr, call: &Value) -> Result<(StatusCode, String), ClientError> {
    operator_as(addr, call, None).await
}

/// `operator` with an `Authorization` value (see [`basic`]).
pub async fn operator_as(
    addr: SocketAddr,
    call: &Value,
    authorization: Option<&str>,
) -> Result<(StatusCode, String), ClientError> {
    post_to(
        addr,
        "/api/v1",
        call.to_string().into_bytes(),
        None,
        authorization,
    )
    .await
}

/// GETs a JSON document (`/master/state`, `/metrics/snapshot`).
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<Value, ClientError> {
    let mut sender = connection(addr).await?;
    let request = Request::get(path)
        .header("Host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("static request parts are valid");
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Stream(e.to_string()))
}

/// The leading master's HTTP address, found as Mesos clients find it: the first of `masters`
/// that answers `/master/redirect` with a `Location` (`//host:port`). `None` while none does.
pub async fn find_leader(masters: &[SocketAddr]) -> Option<SocketAddr> {
    for &addr in masters {
        let ask = async {
            let mut sender = connection(addr).await.ok()?;
            let request = Request::get("/master/redirect")
                .header("Host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .expect("static request parts are valid");
            let response = sender.send_request(request).await.ok()?;
            let location = response.headers().get(hyper::header::LOCATION)?;
            location.to_str().ok()?.strip_prefix("//")?.parse().ok()
        };
        if let Ok(Some(leader)) = tokio::time::timeout(Duration::from_secs(1), ask).await {
            return Some(leader);
        }
    }
    None
}

/// A kept-alive connection for calls (HTTP/1.1: one call at a time; open several for
/// concurrency).
#[derive(Debug)]
pub struct Caller {
    addr: SocketAddr,
    framework_id: String,
    stream_id: String,
    authorization: Option<String>,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Caller {
    pub async fn call(&mut self, mut call: Value) -> Result<(StatusCode, String), ClientError> {
        call["framework_id"] = json!({ "value": self.framework_id });
        self.call_encoded(call.to_string().into_bytes()).await
    }

    /// Sends a call already encoded as JSON (it must carry `framework_id` itself): for
    /// frameworks that build calls from their own typed structs.
    pub async fn call_encoded(
        &mut self,
        call: Vec<u8>,
    ) -> Result<(StatusCode, String), ClientError> {
        if self.sender.ready().await.is_err() {
            self.sender = connection(self.addr).await?;
        }
        let response = self
            .sender
            .send_request(request(
                self.addr,
                "/api/v1/scheduler",
                call,
                Some(&self.stream_id),
                self.authorization.as_deref(),
            ))
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub fn framework_id(&self) -> &str {
        &self.framework_id
    }
}

/// POSTs a streaming call (a SUBSCRIBE) and returns the response once it answered 200.
async fn open_stream(
    addr: SocketAddr,
    path: &str,
    call: &Value,
    authorization: Option<&str>,
) -> Result<hyper::Response<Incoming>, ClientError> {
    let mut sender = connection(addr).await?;
    let response = sender
        .send_request(request(
            addr,
            path,
            call.to_string().into_bytes(),
            None,
            authorization,
        ))
        .await?;
    let status = response.status();
    if status != StatusCode::OK {
        let body = response.into_body().collect().await?.to_bytes();
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(response)
}

/// A subscribed framework.
#[derive(Debug)]
pub struct SchedulerClient {
    pub addr: SocketAddr,
    pub framework_id: String,
    pub stream_id: String,
    /// The SUBSCRIBED event, whole.
    pub subscribed: Value,
    /// Sent with every call (HTTP Basic, see [`basic`]).
    authorization: Option<String>,
    events: EventStream,
}

/// A RecordIO stream of JSON events (a scheduler's or an operator's subscription).
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    decoder: recordio::Decoder,
    /// Records received and not yet taken, still encoded: a framework with its own event
    /// types decodes them straight into those ([`EventStream::next_event_as`]).
    queued: VecDeque<Vec<u8>>,
    /// RecordIO records received so far.
    pub records: usize,
}

impl SchedulerClient {
    /// SUBSCRIBE with `framework_info` (Mesos JSON) and wait for SUBSCRIBED.
    pub async fn subscribe(addr: SocketAddr, framework_info: Value) -> Result<Self, ClientError> {
        Self::subscribe_as(addr, framework_info, None).await
    }

    /// `subscribe`, authenticating every call with `authorization` (see [`basic`]).
    pub async fn subscribe_as(
        addr: SocketAddr,
        framework_info: Value,
        authorization: Option<String>,
    ) -> Result<Self, ClientError> {
        let call =
            json!({ "type": "SUBSCRIBE", "subscribe": { "framework_info": framework_info } });
        let response =
            open_stream(addr, "/api/v1/scheduler", &call, authorization.as_deref()).await?;
        let stream_id = response
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Stream("no Mesos-Stream-Id header".into()))?
            .to_owned();
        let mut client = SchedulerClient {
            addr,
            framework_id: String::new(),
            subscribed: Value::Null,
            authorization,
            stream_id,
            events: EventStream::new(response.into_body()),
        };
        let subscribed = client
            .take(Duration::from_secs(30), |e| e["type"] == "SUBSCRIBED")
            .await?;
        client.framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .ok_or_else(|| ClientError::Stream("SUBSCRIBED without a framework id".into()))?
            .to_owned();
        client.subscribed = subscribed;
        Ok(client)
    }

    /// RecordIO records received so far.
    pub fn records(&self) -> usize {
        self.events.records
    }

    /// The next event in order; `None` when the stream ended.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Value>, ClientError> {
        self.events.next_event_as(wait).await
    }

    /// The next event decoded as `T`; `None` when the stream ended.
    pub async fn next_event_as<T: DeserializeOwned>(
        &mut self,
        wait: Duration,
    ) -> Result<Option<T>, ClientError> {
        self.events.next_event_as(wait).await
    }

    /// The first event (already received or yet to come) that `matches`; others stay queued.
    pub async fn take(
        &mut self,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        self.events.take(wait, matches).await
    }

    /// A persistent connection for many calls.
    pub async fn caller(&self) -> Result<Caller, ClientError> {
        Ok(Caller {
            addr: self.addr,
            framework_id: self.framework_id.clone(),
            stream_id: self.stream_id.clone(),
            authorization: self.authorization.clone(),
            sender: connection(self.addr).await?,
        })
    }

    /// Sends a call as this framework on a new connection; returns the status and body.
    pub async fn call(&self, mut call: Value) -> Result<(StatusCode, String), ClientError> {
        call["framework_id"] = json!({ "value": self.framework_id });
        post_as(
            self.addr,
            call.to_string().into_bytes(),
            Some(&self.stream_id),
            self.authorization.as_deref(),
        )
        .await
    }

    /// Acknowledges an update's status (Mesos JSON) if it carries a uuid.
    pub async fn acknowledge(&self, status: &Value) -> Result<(), ClientError> {
        if status.get("uuid").is_none() {
            return Ok(());
        }
        let (code, body) = self
            .call(json!({
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": status["agent_id"],
                    "task_id": status["task_id"],
                    "uuid": status["uuid"],
                }
            }))
            .await?;
        if code != StatusCode::ACCEPTED {
            return Err(ClientError::Refused { status: code, body });
        }
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(record: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(record)
        .map_err(|e| ClientError::Stream(format!("a record is not a valid event: {e}")))
}

/// A LAUNCH operation of one shell command task.
pub fn launch(task_id: &str, agent_id: &Value, resources: Value, command: &str) -> Value {
    json!({
        "type": "LAUNCH",
        "launch": { "task_infos": [task(task_id, agent_id, resources, command)] }
    })
}

/// A command `TaskInfo` in Mesos JSON.
pub fn task(task_id: &str, agent_id: &Value, resources: Value, command: &str) -> Value {
    json!({
        "name": task_id,
        "task_id": { "value": task_id },
        "agent_id": agent_id,
        "resources": resources,
        "command": { "shell": true, "value": command },
    })
}

/// `cpus` and `mem` as a Mesos resource list.
pub fn scalars(cpus: f64, mem: f64) -> Value {
    json!([
        { "name": "cpus", "type": "SCALAR", "scalar": { "value": cpus } },
        { "name": "mem", "type": "SCALAR", "scalar": { "value": mem } },
    ])
}

impl EventStream {
    fn new(body: Incoming) -> Self {
        EventStream {
            body,
            decoder: recordio::Decoder::default(),
            queued: VecDeque::new(),
            records: 0,
        }
    }

    /// Reads more of the stream; false when it ended.
    async fn receive(
        &mut self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<bool, ClientError> {
        let frame = tokio::time::timeout_at(deadline, self.body.frame())
            .await
            .map_err(|_| ClientError::Timeout(wait))?;
        let Some(frame) = frame else { return Ok(false) };
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            let records = self
                .decoder
                .push(&data)
                .map_err(|e| ClientError::Stream(e.to_string()))?;
            self.records += records.len();
            self.queued.extend(records);
        }
        Ok(true)
    }

    /// The next event in order; `None` when the stream ended.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Value>, ClientError> {
        self.next_event_as(wait).await
    }

    /// The next event decoded as `T`; `None` when the stream ended.
    pub async fn next_event_as<T: DeserializeOwned>(
        &mut self,
        wait: Duration,
    ) -> Result<Option<T>, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(record) = self.queued.pop_front() {
                return decode(&record).map(Some);
            }
            if !self.receive(deadline, wait).await? {
                return Ok(None);
            }
        }
    }

    /// The first event (already received or yet to come) that `matches`; others stay queued.
    pub async fn take(
        &mut self,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = 0;
        loop {
            while seen < self.queued.len() {
                let event: Value = decode(&self.queued[seen])?;
                if matches(&event) {
                    self.queued.remove(seen);
                    return Ok(event);
                }
                seen += 1;
            }
            if !self.receive(deadline, wait).await? {
                return Err(ClientError::Stream("the event stream ended".into()));
            }
        }
    }
}

/// A subscription to the operator event stream (`POST /api/v1` `SUBSCRIBE`).
#[derive(Debug)]
pub struct OperatorSubscription {
    /// The SUBSCRIBED event, whole (its `get_state` is the state the events start from).
    pub subscribed: Value,
    pub events: EventStream,
}

impl OperatorSubscription {
    pub async fn subscribe(addr: SocketAddr) -> Result<Self, ClientError> {
        let response = open_stream(addr, "/api/v1", &json!({ "type": "SUBSCRIBE" }), None).await?;
        let mut events = EventStream::new(response.into_body());
        let subscribed = events
            .next_event(Duration::from_secs(30))
            .await?
            .ok_or_else(|| ClientError::Stream("the stream ended before SUBSCRIBED".into()))?;
        if subscribed["type"] != "SUBSCRIBED" {
            return Err(ClientError::Stream(format!(
                "the first event is not SUBSCRIBED: {subscribed}"
            )));
        }
        Ok(OperatorSubscription { subscribed, events })
    }
}
