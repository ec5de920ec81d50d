//! TLS for every daemon and client (rustls, ring).
//!
//! - [`ServerTls`]: a daemon's certificate, key and, with `--tls-ca`, the CA its clients'
//!   certificates must be signed by (mutual TLS). The files are read again when they change
//!   (checked at most once per [`RELOAD_CHECK`], on a new connection), so a renewed
//!   certificate is served without a restart and without dropping open connections.
//! - [`TlsIncoming`]: TLS connections accepted from a TCP listener, the handshakes run
//!   concurrently; a stream for tonic and an [`axum::serve::Listener`] for axum.
//! - [`ClientTls`]: what a client trusts (`--tls-ca`, the system's roots without it) and the
//!   certificate it proves itself with; builds tonic endpoints.
//! - [`peer_identity`]: the name a client certificate speaks for (its common name, or its
//!   first DNS name).
use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
pub use tokio_rustls;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// How often, at most, a server looks whether its certificate files changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A handshake not finished within this is dropped (a client that connects and says nothing
/// must not hold a slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes running at once per listener; beyond, accepting waits.
const CONCURRENT_HANDSHAKES: usize = 256;

/// ALPN for a gRPC listener.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for an HTTP listener (HTTP/2 and HTTP/1.1 clients).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the {what} {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the key {path} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1 \
         -----BEGIN … PRIVATE KEY-----): {reason}"
    )]
    NoKey { path: PathBuf, reason: String },
    #[error("the certificate {cert} and the key {key} do not go together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the CA file {path} cannot verify clients: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// Where a daemon's TLS files are (`--tls-cert`, `--tls-key`, `--tls-ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA client certificates must chain to; without it clients are not asked for one.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// From the three flags: cert and key together or neither; the CA needs them.
    pub fn from_flags(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert: cert.to_owned(),
                key: key.to_owned(),
                ca: ca.map(Path::to_owned),
            })),
            (None, None) if ca.is_none() => Ok(None),
            (None, None) => Err(TlsError::Config(
                "--tls-ca verifies clients of a TLS listener: give --tls-cert and --tls-key too"
                    .into(),
            )),
            (Some(_), None) => Err(TlsError::Config(
                "--tls-cert needs --tls-key (the certificate's private key)".into(),
            )),
            (None, Some(_)) => Err(TlsError::Config(
                "--tls-key needs --tls-cert (the certificate chain it signs for)".into(),
            )),
        }
    }
}

/// A listener's TLS configuration, read again from its files when they change.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl ServerTls {
    /// Reads the files; `alpn` is [`ALPN_GRPC`] or [`ALPN_HTTP`].
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Arc<Self>, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let stamps = stamps(&files);
        let config = server_config(&files, &alpn)?;
        Ok(Arc::new(Self {
            files,
            alpn,
            current: Mutex::new(Loaded {
                config,
                stamps,
                checked: Instant::now(),
            }),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether clients are asked for a certificate (a CA was given).
    pub fn verifies_clients(&self) -> bool {
        self.files.ca.is_some()
    }

    /// The configuration for the next handshake: the files' if they changed since they were
    /// last read (and still make a valid configuration), the one in use otherwise.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            let now = stamps(&self.files);
            if now != current.stamps {
                match server_config(&self.files, &self.alpn) {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed; serving the new ones");
                        current.config = config;
                        current.stamps = now;
                    }
                    // Half-written files (the key copied, the certificate not yet) are
                    // tried again at the next check.
                    Err(e) => {
                        tracing::warn!(%e, "TLS certificate files changed but cannot be used; still serving the previous ones")
                    }
                }
            }
        }
        current.config.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// ring: it builds with a C compiler alone (aws-lc-rs needs CMake), and tonic's `tls-ring`
/// uses it too. rustls 0.23.48 marks it deprecated because ring has no post-quantum key
/// exchange; the classical X25519/P-256 exchanges it offers are today's TLS defaults.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates in a PEM file.
pub fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "key",
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The trust anchors in a CA file.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates("CA file", path)? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn server_config(files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certificates("certificate", &files.cert)?;
    warn_if_expired(&files.cert, &certs[0]);
    let key = read_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.ca {
        // Clients without a certificate may still connect (schedulers, operators and
        // browsers authenticate with credentials); the services that need one (the agent
        // link, topology reports) refuse a connection that has none.
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Ca {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// A daemon serving an expired certificate is refused by every client: say so where the
/// operator looks.
fn warn_if_expired(path: &Path, leaf: &CertificateDer<'_>) {
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
        let validity = cert.validity();
        if !validity.is_valid() {
            tracing::warn!(
                cert = %path.display(),
                not_before = %validity.not_before,
                not_after = %validity.not_after,
                "this certificate is not valid now: clients will refuse it; renew it (it is read again when the file changes)"
            );
        }
    }
}

/// The name a certificate speaks for: its subject's common name, else its first DNS name.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        _ => None,
    })
}

/// TLS connections accepted on a TCP listener. Handshakes run in their own tasks, so a
/// slow or silent client does not hold up the others; failed ones are logged with the
/// peer's address and why.
pub struct TlsIncoming {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsIncoming {
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, tls, tx));
        Ok(Self {
            connections,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.config());
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) if e.to_string().contains("InvalidContentType") => {
                    tracing::info!(%peer, "a client spoke without TLS to this TLS port; it must connect with TLS (https://, --tls-ca)")
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused")
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}; closed")
                }
            }
        });
    }
}

impl futures::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections
            .poll_recv(cx)
            .map(|c| c.map(|(stream, _)| Ok(stream)))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it only does when aborted): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What a client trusts and proves itself with (`--tls-ca`, `--tls-cert`, `--tls-key`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA servers' certificates must chain to; the system's roots when unset.
    pub ca: Option<PathBuf>,
    /// This client's certificate and key, for servers that verify clients.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// From the client flags: `None` (plain connections) unless one of them is given.
    pub fn from_flags(
        tls: bool,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Self>, TlsError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c.to_owned(), k.to_owned())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::Config(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Config(
                    "--tls-key needs --tls-cert (the certificate chain it signs for)".into(),
                ));
            }
        };
        if !tls && ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        let client = Self {
            ca: ca.map(Path::to_owned),
            identity,
        };
        // Read now, so that a wrong path is said at start rather than at each connection.
        client.tonic_config()?;
        Ok(Some(client))
    }

    /// tonic's TLS configuration, the files read now (a renewed client certificate is used
    /// from the next connection on).
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => {
                read_roots(ca)?;
                let pem = std::fs::read(ca).map_err(|source| TlsError::Read {
                    what: "CA file",
                    path: ca.clone(),
                    source,
                })?;
                config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            read_certificates("certificate", cert)?;
            read_key(key)?;
            let read = |what, path: &PathBuf| {
                std::fs::read(path).map_err(|source| TlsError::Read {
                    what,
                    path: path.clone(),
                    source,
                })
            };
            config = config.identity(tonic::transport::Identity::from_pem(
                read("certificate", cert)?,
                read("key", key)?,
            ));
        }
        Ok(config)
    }

    /// A rustls client configuration (for HTTP clients), offering `alpn`.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let roots = match &self.ca {
            Some(ca) => read_roots(ca)?,
            None => {
                let mut roots = RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates("certificate", cert)?, read_key(key)?)
                .map_err(|e| TlsError::Mismatch {
                    cert: cert.clone(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A tonic endpoint for `address` (`host:port`, `http://…` or `https://…`) over TLS.
    pub fn endpoint(&self, address: &str) -> Result<tonic::transport::Endpoint, TlsError> {
        let rest = address
            .strip_prefix("http://")
            .or_else(|| address.strip_prefix("https://"))
            .unwrap_or(address);
        tonic::transport::Endpoint::from_shared(format!("https://{rest}"))
            .map_err(|e| TlsError::Config(format!("{address:?} is not an address: {e}")))?
            .tls_config(self.tonic_config()?)
            .map_err(|e| TlsError::Config(e.to_string()))
    }
}

/// A plain or TLS endpoint for `address`, as `tls` says.
pub fn endpoint(
    tls: Option<&ClientTls>,
    address: &str,
) -> Result<tonic::transport::Endpoint, TlsError> {
    match tls {
        Some(tls) => tls.endpoint(address),
        None => {
            let url = if address.contains("://") {
                address.to_owned()
            } else {
                format!("http://{address}")
            };
            tonic::transport::Endpoint::from_shared(url)
                .map_err(|e| TlsError::Config(format!("{address:?} is not an address: {e}")))
        }
    }
}

/// Why a connection failed, in words an operator can act on: the TLS reason (unknown CA,
/// expired, wrong name, a refused client certificate) when there is one, else the innermost
/// cause (tonic's outer message is only "transport error").
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain_tls(tls);
        }
        // tokio-rustls hands rustls errors over inside io::Error.
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return explain_tls(tls);
        }
        innermost = e.to_string();
        source = e.source();
    }
    // Past a handshake (TLS 1.3 refuses a client certificate after it), rustls's error
    // reaches here as text only.
    match innermost.strip_prefix("received fatal alert: ") {
        Some(alert) => explain_alert(alert).unwrap_or(innermost),
        None => innermost,
    }
}

/// What an alert the server sent means for this client (named as rustls prints them).
fn explain_alert(alert: &str) -> Option<String> {
    let why = match alert {
        "UnknownCA" | "BadCertificate" => {
            "TLS: the server refused this client's certificate (not signed by the CA it \
             trusts): use a certificate from the server's --tls-ca"
        }
        "CertificateExpired" => {
            "TLS: the server refused this client's certificate because it has expired: renew it"
        }
        "CertificateRequired" => {
            "TLS: the server requires a client certificate: give --tls-cert and --tls-key"
        }
        _ => return None,
    };
    Some(why.to_owned())
}

/// A gRPC call's failure in words: a transport failure (a refused handshake shows here
/// with TLS 1.3, at the first call) explained as [`explain`] does, else the status message.
pub fn explain_status(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => explain(source),
        None => status.message().to_owned(),
    }
}

fn explain_tls(error: &rustls::Error) -> String {
    use rustls::{CertificateError as Cert, Error as E};
    match error {
        E::InvalidCertificate(Cert::UnknownIssuer) => "TLS: the server's certificate is not \
            signed by a CA this client trusts: give the CA that signed it with --tls-ca"
            .into(),
        E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            format!("TLS: the server's certificate has expired ({error}): renew it on the server")
        }
        E::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            format!("TLS: the server's certificate is not valid yet ({error}): check both clocks")
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!(
                "TLS: the server's certificate does not name the address connected to \
                 ({error}): connect by a name or IP in its subject alternative names"
            )
        }
        E::AlertReceived(alert) => {
            explain_alert(&format!("{alert:?}")).unwrap_or_else(|| format!("TLS: {error}"))
        }
        E::InvalidMessage(_) => {
            format!(
                "TLS: the server does not speak TLS ({error}): connect without TLS or check the port"
            )
        }
        other => format!("TLS: {other}"),
    }
}

#[cfg(any(test, feature = "cert-gen"))]
pub mod cert_gen;
#[cfg(feature = "cli")]
pub mod cli;

#[cfg(test)]
mod tests;
