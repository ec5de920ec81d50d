//! A local certificate authority: `cargo xtask certs`, `orca up --tls` and the tests make
//! their certificates with it. Every certificate it issues serves as server and as client
//! (both extended key usages), named by its common name and subject alternative names.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From 2020 to 2100.
    Current,
    /// During 2020 only: long expired.
    Expired,
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (the key readable by its owner only).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertGenError> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write(&cert, &self.cert_pem, 0o644)?;
        write(&key, &self.key_pem, 0o600)?;
        Ok((cert, key))
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), CertGenError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    // Written beside and renamed into place: a server reading it again mid-write never sees
    // half a file.
    let partial = path.with_extension("partial");
    let wrote = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&partial, path));
    wrote.map_err(|source| CertGenError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A self-signed CA and the key it signs with.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

impl LocalCa {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> Result<Self, CertGenError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, Validity::Current);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM), what `--tls-ca` points at.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), CertGenError> {
        write(path, &self.pem, 0o644)
    }

    /// A certificate for `common_name`, valid for `names` (DNS names or IP addresses).
    pub fn issue(
        &self,
        common_name: &str,
        names: &[&str],
        validity: Validity,
    ) -> Result<Issued, CertGenError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The names a local daemon is reached by: `localhost`, 127.0.0.1 and ::1.
    pub const LOOPBACK: &'static [&'static str] = &["localhost", "127.0.0.1", "::1"];
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = match validity {
        Validity::Current => rcgen::date_time_ymd(2100, 1, 1),
        Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
    };
}

/// A CA and certificates for a local cluster in `dir`: `ca.pem`; `master.pem`/`.key` (the
/// masters, collector, sync and agent metrics listeners: `localhost` and loopback plus
/// `names`); `agent.pem`/`.key` (common name `agent`, what agents prove themselves with);
/// `client.pem`/`.key` (common name `operator`, for tools that present one). Returns the
/// paths written.
pub fn write_local_set(dir: &Path, names: &[&str]) -> Result<Vec<PathBuf>, CertGenError> {
    std::fs::create_dir_all(dir).map_err(|source| CertGenError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca = LocalCa::new("Orca local CA")?;
    let ca_path = dir.join("ca.pem");
    ca.write_cert(&ca_path)?;
    let mut server_names: Vec<&str> = LocalCa::LOOPBACK.to_vec();
    server_names.extend_from_slice(names);
    let mut written = vec![ca_path];
    for (file, common_name, names) in [
        ("master", "orca-master", server_names.as_slice()),
        ("agent", "agent", LocalCa::LOOPBACK),
        ("client", "operator", &[][..]),
    ] {
        let (cert, key) = ca
            .issue(common_name, names, Validity::Current)?
            .write(dir, file)?;
        written.extend([cert, key]);
    }
    Ok(written)
}
