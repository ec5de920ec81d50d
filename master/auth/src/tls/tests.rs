//! Real handshakes over loopback sockets between [`TlsIncoming`] and a rustls client.
use std::{path::Path, sync::Arc, time::Duration};

use futures::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    cert_gen::{LocalCa, Validity},
    *,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orca-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server certificate for loopback, written as `server.pem`/`.key`, with `ca.pem` beside.
fn server_files(dir: &Path, ca: &LocalCa, validity: Validity, with_ca: bool) -> TlsFiles {
    let (cert, key) = ca
        .issue("server", LocalCa::LOOPBACK, validity)
        .unwrap()
        .write(dir, "server")
        .unwrap();
    ca.write_cert(&dir.join("ca.pem")).unwrap();
    TlsFiles {
        cert,
        key,
        ca: with_ca.then(|| dir.join("ca.pem")),
    }
}

fn client_config(
    trusted: &LocalCa,
    identity: Option<&cert_gen::Issued>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A server that answers each connection with the common name of the client's certificate
/// (or `-`), then echoes one line.
async fn serve(tls: Arc<ServerTls>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = TlsIncoming::new(listener, tls).unwrap();
    tokio::spawn(async move {
        while let Some(Ok(mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                let who = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| peer_identity(&certs[0]))
                    .unwrap_or_else(|| "-".into());
                let _ = stream.write_all(format!("{who}\n").as_bytes()).await;
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects and reads the server's first line; the error explained as an operator sees it.
async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(ClientStream, String), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| explain(&e))?;
    // With TLS 1.3 a refused client certificate shows on the first read.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(0) => return Err("closed".into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(explain(&e)),
        }
    }
    Ok((stream, String::from_utf8(line).unwrap()))
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_mutual_tls_names_the_client() {
    let dir = temp_dir("mtls");
    let ca = LocalCa::new("test CA").unwrap();
    let tls = ServerTls::load(server_files(&dir, &ca, Validity::Current, true), ALPN_HTTP).unwrap();
    assert!(tls.verifies_clients());
    let addr = serve(tls).await;
    let (_, anonymous) = connect(addr, client_config(&ca, None)).await.unwrap();
    assert_eq!(
        anonymous, "-",
        "a client without a certificate is let in unnamed"
    );
    let agent = ca
        .issue("agent-7", LocalCa::LOOPBACK, Validity::Current)
        .unwrap();
    let (_, named) = connect(addr, client_config(&ca, Some(&agent)))
        .await
        .unwrap();
    assert_eq!(named, "agent-7");
}

#[tokio::test]
async fn wrong_ca_expired_and_foreign_certificates_are_refused_with_a_clear_reason() {
    let dir = temp_dir("refused");
    let ca = LocalCa::new("test CA").unwrap();
    let other = LocalCa::new("another CA").unwrap();
    let addr = serve(
        ServerTls::load(server_files(&dir, &ca, Validity::Current, true), ALPN_HTTP).unwrap(),
    )
    .await;

    let wrong_ca = connect(addr, client_config(&other, None))
        .await
        .unwrap_err();
    assert!(
        wrong_ca.contains("not signed by a CA this client trusts"),
        "{wrong_ca}"
    );

    let foreign = other
        .issue("intruder", LocalCa::LOOPBACK, Validity::Current)
        .unwrap();
    let refused = connect(addr, client_config(&ca, Some(&foreign)))
        .await
        .unwrap_err();
    assert!(
        refused.contains("refused this client's certificate"),
        "{refused}"
    );

    let stale = ca
        .issue("agent", LocalCa::LOOPBACK, Validity::Expired)
        .unwrap();
    let expired_client = connect(addr, client_config(&ca, Some(&stale)))
        .await
        .unwrap_err();
    assert!(expired_client.contains("expired"), "{expired_client}");

    let expired_dir = temp_dir("expired-server");
    let expired_server = serve(
        ServerTls::load(
            server_files(&expired_dir, &ca, Validity::Expired, false),
            ALPN_HTTP,
        )
        .unwrap(),
    )
    .await;
    let expired = connect(expired_server, client_config(&ca, None))
        .await
        .unwrap_err();
    assert!(
        expired.contains("server's certificate has expired"),
        "{expired}"
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_while_open_ones_stay() {
    let dir = temp_dir("reload");
    let ca = LocalCa::new("test CA").unwrap();
    let files = server_files(&dir, &ca, Validity::Current, true);
    let tls = ServerTls::load(files.clone(), ALPN_HTTP).unwrap();
    let addr = serve(tls.clone()).await;
    let client = client_config(&ca, None);
    let (mut open, _) = connect(addr, client.clone()).await.unwrap();

    // Renew: a new key and a certificate with another common name, written in place.
    let renewed = ca
        .issue("server-renewed", LocalCa::LOOPBACK, Validity::Current)
        .unwrap();
    std::fs::write(&files.key, &renewed.key_pem).unwrap();
    std::fs::write(&files.cert, &renewed.cert_pem).unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (stream, _) = connect(addr, client.clone()).await.unwrap();
        let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        if peer_identity(&served).as_deref() == Some("server-renewed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the renewal still works.
    open.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    open.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
}

#[test]
fn a_broken_renewal_keeps_the_certificate_in_use() {
    let dir = temp_dir("broken-renewal");
    let ca = LocalCa::new("test CA").unwrap();
    let files = server_files(&dir, &ca, Validity::Current, false);
    let tls = ServerTls::load(files.clone(), ALPN_GRPC).unwrap();
    let before = tls.config();
    std::fs::write(&files.cert, "not a certificate").unwrap();
    std::thread::sleep(RELOAD_CHECK + Duration::from_millis(50));
    assert!(Arc::ptr_eq(&before, &tls.config()));
}

#[test]
fn files_are_checked_at_start_with_messages_that_name_them() {
    let dir = temp_dir("load");
    let ca = LocalCa::new("test CA").unwrap();
    let files = server_files(&dir, &ca, Validity::Current, false);
    let missing = TlsFiles {
        cert: dir.join("nope.pem"),
        ..files.clone()
    };
    let e = ServerTls::load(missing, ALPN_GRPC).unwrap_err().to_string();
    assert!(
        e.contains("cannot read the certificate") && e.contains("nope.pem"),
        "{e}"
    );

    let other = ca
        .issue("other", LocalCa::LOOPBACK, Validity::Current)
        .unwrap()
        .write(&dir, "other")
        .unwrap();
    let mismatched = TlsFiles {
        key: other.1,
        ..files.clone()
    };
    let e = ServerTls::load(mismatched, ALPN_GRPC)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not go together"), "{e}");

    let key_as_cert = TlsFiles {
        cert: files.key.clone(),
        ..files.clone()
    };
    let e = ServerTls::load(key_as_cert, ALPN_GRPC)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");

    assert!(
        TlsFiles::from_flags(Some(&files.cert), None, None)
            .unwrap_err()
            .to_string()
            .contains("--tls-key")
    );
    assert!(
        TlsFiles::from_flags(None, None, Some(&files.cert))
            .unwrap_err()
            .to_string()
            .contains("--tls-cert")
    );
    assert_eq!(TlsFiles::from_flags(None, None, None).unwrap(), None);
    assert_eq!(
        ClientTls::from_flags(false, None, None, None).unwrap(),
        None
    );
    let e = ClientTls::from_flags(true, Some(&dir.join("absent.pem")), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.pem"), "{e}");
}
