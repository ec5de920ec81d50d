//! Who is calling. With `--credentials`, every call to the Mesos HTTP API (scheduler,
//! operator, state, flags) and to the gRPC scheduler and operator services must authenticate
//! with HTTP Basic (gRPC: the same value in `authorization` metadata). Others get `401` with
//! `WWW-Authenticate: Basic realm="…"` in Mesos's realm for the endpoint (gRPC
//! `UNAUTHENTICATED`), saying how to authenticate. The principal rides in the request's extensions for the handlers, which
//! authorize with it (`cluster::Authorizer`).
use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use orca_auth::Credentials;

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
