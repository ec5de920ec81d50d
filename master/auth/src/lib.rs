//! Authentication and authorization as Mesos operators know them.
//!
//! - [`Credentials`]: principals and secrets from a Mesos credentials file (JSON
//!   `{"credentials": [{"principal": …, "secret": …}]}` or lines of `principal secret`),
//!   checked against HTTP Basic (`Authorization: Basic …`).
//! - [`Acls`]: Mesos ACLs (`--acls`, JSON): for each action, a list of rules naming subjects
//!   (principals) and objects (roles, users, framework principals, agents). The first rule
//!   whose subjects and objects match a request decides it; no match falls back to
//!   `permissive` (true unless the file says otherwise, as in Mesos).
//! - [`doors`]: authentication at each daemon's HTTP and gRPC doors (Basic credentials,
//!   agents' client certificates).
//! - [`tls`]: TLS listeners with certificates read again when renewed, mutual TLS and the
//!   identity a client certificate speaks for, client configurations, and (feature
//!   `cert-gen`) a local CA.
mod acls;
mod credentials;
pub mod doors;
pub mod tls;

pub use acls::{AclError, Acls, Action, Entity};
pub use credentials::{Credentials, CredentialsError, basic_authorization, basic_credentials};
