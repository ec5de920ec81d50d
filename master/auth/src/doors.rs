//! Who is calling, checked at the door of every daemon.
//!
//! - With credentials (`--credentials`), callers authenticate with HTTP Basic (gRPC: the same
//!   value in `authorization` metadata). Others get `401` with `WWW-Authenticate: Basic
//!   realm="…"` in Mesos's realm for the endpoint (gRPC `UNAUTHENTICATED`), saying how to
//!   authenticate. The principal rides in the request's extensions for the handlers, which
//!   authorize with it.
//! - With mutual TLS (`--tls-ca`), the gRPC methods only agents call (the agent link,
//!   topology reports) need a client certificate from that CA: [`GrpcDoor`] refuses a call
//!   without one and hands the certificate's name on as an [`AgentIdentity`].
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use crate::{Credentials, tls::peer_identity};
use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The principal a call authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// Mesos's HTTP authentication realms, named in the `WWW-Authenticate` challenge.
pub const SCHEDULER_REALM: &str = "mesos-master-scheduler";
pub const READWRITE_REALM: &str = "mesos-master-readwrite";
pub const READONLY_REALM: &str = "mesos-master-readonly";

/// Checks callers against the credentials the master was given (none: everyone passes,
/// unauthenticated).
#[derive(Debug, Clone)]
pub struct Authenticator {
    credentials: Option<Arc<Credentials>>,
    realm: &'static str,
}

/// Why a call is refused before it is looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error(
        "this master requires authentication: send HTTP Basic credentials of a principal in \
         its --credentials file"
    )]
    Missing,
    #[error(
        "the credentials sent are not valid for this master (unknown principal or wrong secret)"
    )]
    Invalid,
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>) -> Self {
        Self {
            credentials: credentials.map(Arc::new),
            realm: READWRITE_REALM,
        }
    }

    /// The same credentials, challenging in `realm` (Mesos's realm for the endpoint).
    pub fn in_realm(&self, realm: &'static str) -> Self {
        Self {
            credentials: self.credentials.clone(),
            realm,
        }
    }

    pub fn required(&self) -> bool {
        self.credentials.is_some()
    }

    /// The caller's principal from its `authorization` value: `None` when the master needs
    /// none and none was sent.
    pub fn check(&self, authorization: Option<&str>) -> Result<Option<Principal>, AuthnError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let value = authorization.ok_or(AuthnError::Missing)?;
        credentials
            .authenticate(value)
            .map(|p| Some(Principal(p)))
            .ok_or(AuthnError::Invalid)
    }
}

/// The HTTP layer: authenticates, or answers 401.
pub async fn http(State(auth): State<Authenticator>, mut request: Request, next: Next) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(value) {
        Ok(principal) => {
            if let Some(principal) = principal {
                request.extensions_mut().insert(principal);
            }
            next.run(request).await
        }
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{}\"", auth.realm),
                ),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            ],
            format!("{e}\n"),
        )
            .into_response(),
    }
}

/// The gRPC interceptor: authenticates, or answers `UNAUTHENTICATED`.
pub fn grpc(
    auth: Authenticator,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        let value = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match auth.check(value) {
            Ok(principal) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                Ok(request)
            }
            Err(e) => Err(tonic::Status::unauthenticated(e.to_string())),
        }
    }
}

/// The principal of a gRPC call, if it authenticated.
pub fn grpc_principal<T>(request: &tonic::Request<T>) -> Option<String> {
    request.extensions().get::<Principal>().map(|p| p.0.clone())
}

/// The name in the TLS client certificate of an agent's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity(pub String);

/// The gRPC methods only agents call: with mutual TLS they need a client certificate.
pub const AGENT_METHODS: &[&str] = &[
    "/orca.cluster.v1.AgentLink/",
    "/orca.topology.v1.Collector/StreamReports",
];

/// The gRPC methods that read the topology: with credentials they need them, as the
/// topology HTTP API does.
pub const TOPOLOGY_READ_METHODS: &[&str] = &[
    "/orca.topology.v1.Collector/WatchTopology",
    "/orca.topology.v1.Collector/NodeSeries",
];

/// The door of a gRPC server (a tower layer around all its services): agents' methods need
/// a client certificate when `agents_need_certificates`; topology readers authenticate
/// with `readers`. The scheduler and operator services authenticate in their own
/// interceptors ([`grpc`]).
#[derive(Debug, Clone)]
pub struct GrpcDoor {
    pub agents_need_certificates: bool,
    pub readers: Authenticator,
}

impl<S> tower::Layer<S> for GrpcDoor {
    type Service = GrpcDoorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcDoorService {
            inner,
            door: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcDoorService<S> {
    inner: S,
    door: GrpcDoor,
}

impl GrpcDoor {
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), tonic::Status> {
        let path = request.uri().path();
        if AGENT_METHODS.iter().any(|m| path.starts_with(m)) {
            let certificate =
                request
                    .extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .and_then(|info| info.peer_certs())
                    .and_then(|certs| certs.first().and_then(|c| peer_identity(c)));
            match certificate {
                Some(name) => {
                    request.extensions_mut().insert(AgentIdentity(name));
                }
                None if self.agents_need_certificates => {
                    return Err(tonic::Status::unauthenticated(
                        "this server verifies agents by their TLS client certificate \
                         (--tls-ca): start the agent with --tls-cert and --tls-key issued by \
                         that CA",
                    ));
                }
                None => {}
            }
        } else if TOPOLOGY_READ_METHODS.iter().any(|m| path.starts_with(m)) {
            let value = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match self.readers.check(value) {
                Ok(Some(principal)) => {
                    request.extensions_mut().insert(principal);
                }
                Ok(None) => {}
                Err(e) => return Err(tonic::Status::unauthenticated(e.to_string())),
            }
        }
        Ok(())
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for GrpcDoorService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.door.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}
