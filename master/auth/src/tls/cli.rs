//! The TLS flags every daemon and client takes, the same everywhere (feature `cli`).
use std::path::PathBuf;

use super::{ClientTls, TlsError, TlsFiles};

/// A daemon's TLS: `--tls-cert`, `--tls-key`, `--tls-ca`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerTlsArgs {
    /// Serve HTTP and gRPC over TLS with this certificate chain (PEM, leaf first); read
    /// again when the file changes.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: agents (agent link, topology reports) must present a client certificate
    /// this CA signed; an agent id stays bound to the name in the certificate it was
    /// admitted with. Other clients may present one too.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The files, when TLS was asked for.
    pub fn files(&self) -> Result<Option<TlsFiles>, TlsError> {
        TlsFiles::from_flags(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
        )
    }

    /// Whether agents must prove themselves with a client certificate.
    pub fn verifies_agents(&self) -> bool {
        self.tls_ca.is_some()
    }
}

/// A client's TLS: `--tls`, `--tls-ca`, `--tls-cert`, `--tls-key`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// Connect over TLS, trusting the system's CAs (or --tls-ca).
    #[arg(long)]
    pub tls: bool,
    /// Connect over TLS, trusting the CA in this PEM file.
    #[arg(long, value_name = "PEM", env = "ORCA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The certificate this client proves itself with (PEM; an agent's id stays bound to
    /// its name). Read again at each connection.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// `None` (plain connections) unless one of the flags was given.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        ClientTls::from_flags(
            self.tls,
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
    }
}
