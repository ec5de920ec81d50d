//! What flows into the TUI: the collector's four topology watches and the master's cluster
//! watch, each a snapshot then deltas, over one gRPC connection that is re-made with backoff
//! when the master goes away, and at once when another master is elected (`--master
//! zk://…` follows the leader in ZooKeeper). Nothing is polled.
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use orca_auth::tls::ClientTls;
use orca_leader::MasterLocator;
use orca_proto::{
    operator::v1::{self as opb, operator_client::OperatorClient},
    topology::v1::{self as pb, collector_client::CollectorClient},
};
use ratatui::crossterm::event::{KeyEvent, MouseEvent};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::{
    app::{Level, LinkState},
    model::topology::TopoView,
};

/// Everything the run loop reacts to.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize,
    Topology(TopoView, Box<pb::TopologyDelta>, Instant),
    Cluster(Box<opb::ClusterDelta>, Instant),
    /// A node's whole history (`NodeSeries`), for the details panel.
    Series(Box<pb::TopologyNode>, Instant),
    /// Output for the log view, tagged with its stream.
    Log(u64, Vec<u8>),
    /// The log stream ended, with why when it failed.
    LogEnd(u64, Option<String>),
    Link(LinkState),
    Notice(String, Level),
    /// A poll of the migration service (the Migration view).
    Migration(Box<Result<crate::migration::Polled, String>>, Instant),
    Tick,
}

/// What went wrong talking to the master, in words for the status line and notices (the
/// feed and the action channel reconnect by themselves).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MasterError {
    #[error("{url:?} is not a master address ({reason}); use host:port")]
    Address { url: String, reason: String },
    #[error("{what} refused: {message}")]
    Refused { what: &'static str, message: String },
    #[error("the master closed the {0}")]
    Closed(&'static str),
    #[error("connection lost ({0})")]
    Lost(String),
    #[error("the master is unreachable ({0})")]
    Unreachable(String),
    #[error("{0}")]
    Call(String),
    /// The master ended a framework (its ERROR event: torn down, removed).
    #[error("the master says: {0}")]
    Framework(String),
}

impl MasterError {
    /// A watch's failure: a lost connection names its innermost cause.
    pub fn of_watch(status: &tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                MasterError::Lost(orca_auth::tls::explain_status(status))
            }
            code => MasterError::Call(format!("{code:?}: {}", status.message())),
        }
    }

    /// An action's failure: an unreachable master says so.
    pub fn of_call(status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unavailable => MasterError::Unreachable(status.message().to_owned()),
            _ => MasterError::Call(status.message().to_owned()),
        }
    }
}

/// Largest message accepted from the master (a 50,000-node snapshot is tens of MB).
pub const MAX_MESSAGE: usize = 256 << 20;

/// A channel to the master's gRPC address (`host:port` or a URL), over TLS with `tls`.
pub fn endpoint(master: &str, tls: Option<&ClientTls>) -> Result<Endpoint, MasterError> {
    orca_auth::tls::endpoint(tls, master)
        .map(|e| {
            e.connect_timeout(Duration::from_secs(3))
                .tcp_keepalive(Some(Duration::from_secs(10)))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
        })
        .map_err(|e| MasterError::Address {
            url: master.to_owned(),
            reason: e.to_string(),
        })
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the TUI finds the master: `host:port`, or `zk://…/path` for the leader.
pub fn locator(master: &str) -> Result<MasterLocator, MasterError> {
    MasterLocator::new(master, orca_leader::DEFAULT_SESSION_TIMEOUT).map_err(|e| {
        MasterError::Address {
            url: master.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// How `orca` meets a locked master: the HTTP Basic credentials sent with every gRPC call
/// (`orca --principal`, the secret from `ORCA_SECRET` or `--secret-file`) for a master
/// started with `--credentials`, and the TLS it connects with (`--tls-ca`, a client
/// certificate) for one started with `--tls-cert`.
#[derive(Clone, Default)]
pub struct Credential {
    basic: Option<tonic::metadata::AsciiMetadataValue>,
    tls: Option<std::sync::Arc<ClientTls>>,
}

impl std::fmt::Debug for Credential {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("basic", &self.basic.is_some())
            .field("tls", &self.tls)
            .finish()
    }
}

impl Credential {
    pub fn basic(principal: &str, secret: &str) -> Result<Self, MasterError> {
        orca_auth::basic_authorization(principal, secret)
            .parse()
            .map(|v| Credential {
                basic: Some(v),
                tls: None,
            })
            .map_err(|_| MasterError::Call("the principal or secret is not valid text".into()))
    }

    /// The same, connecting over TLS as `tls` says (`None`: plain connections).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls.map(std::sync::Arc::new);
        self
    }

    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_deref()
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.basic {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the master whose calls carry the credential.
pub type MasterService = tonic::service::interceptor::InterceptedService<Channel, Credential>;

/// The gRPC channel to the master to talk to now: one lazy channel per address, made again
/// when another master leads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MasterChannel {
    locator: Result<MasterLocator, MasterError>,
    credential: Credential,
    cached: std::sync::Arc<std::sync::Mutex<Option<(String, Channel)>>>,
}

impl MasterChannel {
    pub fn new(master: &str, credential: Credential) -> Self {
        MasterChannel {
            locator: locator(master),
            credential,
            cached: Default::default(),
        }
    }

    pub async fn get(&self) -> Result<MasterService, MasterError> {
        let mut locator = self.locator.clone()?;
        let url = locator
            .grpc_endpoint(Duration::from_secs(5))
            .await
            .ok_or_else(|| {
                MasterError::Unreachable(format!("no leading master in {}", locator.describe()))
            })?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, channel)) = cached.as_ref()
            && *at == url
        {
            return Ok(MasterService::new(channel.clone(), self.credential.clone()));
        }
        let channel = endpoint(&url, self.credential.tls())?.connect_lazy();
        *cached = Some((url, channel.clone()));
        Ok(MasterService::new(channel, self.credential.clone()))
    }
}

/// Follows the master until `events` closes: connects, watches, and on any failure says so
/// and tries again with backoff; a newly elected leader is followed at once.
pub async fn follow(master: String, events: mpsc::Sender<Event>) {
    follow_as(master, Credential::default(), events).await
}

/// `follow`, sending `credential` with every call.
pub async fn follow_as(master: String, credential: Credential, events: mpsc::Sender<Event>) {
    let mut backoff = BACKOFF_MIN;
    let located = locator(&master);
    loop {
        if events
            .send(Event::Link(LinkState::Connecting))
            .await
            .is_err()
        {
            return;
        }
        let mut changed = located.clone().ok();
        if let Some(l) = changed.as_mut() {
            l.mark_seen();
        }
        let reason = match located.clone() {
            Err(e) => e.to_string(),
            Ok(mut locator) => match locator.grpc_endpoint(Duration::from_secs(5)).await {
                None => format!("no leading master in {}", locator.describe()),
                Some(url) => match endpoint(&url, credential.tls()) {
                    Err(e) => e.to_string(),
                    Ok(endpoint) => match endpoint.connect().await {
                        Err(e) => orca_auth::tls::explain(&e),
                        Ok(channel) => {
                            backoff = BACKOFF_MIN;
                            let leader_changed = async {
                                match changed.as_mut() {
                                    Some(l) => l.changed().await,
                                    None => std::future::pending().await,
                                }
                            };
                            tokio::select! {
                                watched = watch_all(
                                    MasterService::new(channel, credential.clone()),
                                    &events,
                                ) => match watched {
                                    Ok(()) => return, // the UI went away
                                    Err(e) => e.to_string(),
                                },
                                () = leader_changed => {
                                    backoff = Duration::ZERO;
                                    format!("another master leads now ({})", locator.describe())
                                }
                            }
                        }
                    },
                },
            },
        };
        let retry_at = Instant::now() + backoff;
        if events
            .send(Event::Link(LinkState::Down { reason, retry_at }))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
    }
}

/// Runs the five watches; returns the first failure (or `Ok` when the UI has gone).
async fn watch_all(
    channel: MasterService,
    events: &mpsc::Sender<Event>,
) -> Result<(), MasterError> {
    let mut streams = futures::stream::FuturesUnordered::new();
    for view in TopoView::ALL {
        streams.push(
            Box::pin(watch_topology(channel.clone(), view, events.clone()))
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<(), MasterError>> + Send>,
                >,
        );
    }
    streams.push(Box::pin(watch_cluster(channel, events.clone())));
    match streams.next().await {
        Some(result) => result,
        None => Ok(()),
    }
}

async fn watch_topology(
    channel: MasterService,
    view: TopoView,
    events: mpsc::Sender<Event>,
) -> Result<(), MasterError> {
    let mut client = CollectorClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut stream = client
        .watch_topology(pb::WatchRequest {
            view: view.proto() as i32,
        })
        .await
        .map_err(|s| MasterError::Refused {
            what: "topology watch",
            message: orca_auth::tls::explain_status(&s),
        })?
        .into_inner();
    let mut first = true;
    loop {
        match stream.message().await {
            Ok(Some(delta)) => {
                if first {
                    first = false;
                    if events
                        .send(Event::Link(LinkState::Connected))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                if events
                    .send(Event::Topology(view, Box::new(delta), Instant::now()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(None) => return Err(MasterError::Closed("topology watch")),
            Err(status) => return Err(MasterError::of_watch(&status)),
        }
    }
}

/// The cluster watch. A headless collector (`orca-collector`) has no scheduler: the TUI then
/// says so once and shows its topology, with the cluster tabs empty.
async fn watch_cluster(
    channel: MasterService,
    events: mpsc::Sender<Event>,
) -> Result<(), MasterError> {
    let mut client = OperatorClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut stream = match client
        .watch_cluster(opb::WatchClusterRequest::default())
        .await
    {
        Ok(stream) => stream.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            let _ = events
                .send(Event::Notice(
                    "this is a collector without a scheduler: topology only, no agents, \
                     frameworks or tasks"
                        .into(),
                    Level::Info,
                ))
                .await;
            std::future::pending::<()>().await;
            return Ok(());
        }
        Err(status) => {
            return Err(MasterError::Refused {
                what: "cluster watch",
                message: status.message().to_owned(),
            });
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(delta)) => {
                if events
                    .send(Event::Cluster(Box::new(delta), Instant::now()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(None) => return Err(MasterError::Closed("cluster watch")),
            Err(status) => return Err(MasterError::of_watch(&status)),
        }
    }
}
