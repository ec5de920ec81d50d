//! Principals and secrets, and HTTP Basic.
use std::{collections::HashMap, path::Path};

use base64::Engine as _;

/// Why a credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the credentials file {path} is neither Mesos JSON ({{\"credentials\": [{{\"principal\": \
         …, \"secret\": …}}]}}) nor lines of `principal secret`: {reason}"
    )]
    Format { path: String, reason: String },
    #[error("the credentials file {path} names no principal")]
    Empty { path: String },
}

/// The principals that may authenticate, with their secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut principals: Vec<&String> = self.secrets.keys().collect();
        principals.sort();
        f.debug_struct("Credentials")
            .field("principals", &principals)
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsJson {
    credentials: Vec<CredentialJson>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialJson {
    principal: String,
    #[serde(default)]
    secret: String,
}

impl Credentials {
    /// Reads a credentials file; `file://` in front of the path is accepted, as Mesos's
    /// `--credentials=file:///…` writes it.
    pub fn load(path: &str) -> Result<Self, CredentialsError> {
        let path = path.strip_prefix("file://").unwrap_or(path);
        let text =
            std::fs::read_to_string(Path::new(path)).map_err(|source| CredentialsError::Read {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&text).map_err(|e| match e {
            CredentialsError::Format { reason, .. } => CredentialsError::Format {
                path: path.to_owned(),
                reason,
            },
            CredentialsError::Empty { .. } => CredentialsError::Empty {
                path: path.to_owned(),
            },
            other => other,
        })
    }

    /// Parses a credentials file's text (JSON, or `principal secret` lines).
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let format = |reason: String| CredentialsError::Format {
            path: String::new(),
            reason,
        };
        let mut secrets = HashMap::new();
        if text.trim_start().starts_with('{') {
            let json: CredentialsJson =
                serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
            for c in json.credentials {
                if c.principal.is_empty() {
                    return Err(format("a credential has an empty principal".into()));
                }
                secrets.insert(c.principal, c.secret);
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut words = line.split_whitespace();
                let (Some(principal), Some(secret), None) =
                    (words.next(), words.next(), words.next())
                else {
                    return Err(format(format!("line {} is not `principal secret`", n + 1)));
                };
                secrets.insert(principal.to_owned(), secret.to_owned());
            }
        }
        if secrets.is_empty() {
            return Err(CredentialsError::Empty {
                path: String::new(),
            });
        }
        Ok(Self { secrets })
    }

    /// Whether `principal` exists and `secret` is its secret (compared in constant time).
    pub fn verify(&self, principal: &str, secret: &str) -> bool {
        let Some(known) = self.secrets.get(principal) else {
            return false;
        };
        let (a, b) = (known.as_bytes(), secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The principal an `Authorization` header value authenticates, if any.
    pub fn authenticate(&self, authorization: &str) -> Option<String> {
        let (principal, secret) = basic_credentials(authorization)?;
        self.verify(&principal, &secret).then_some(principal)
    }
}

/// The HTTP Basic `Authorization` value for a principal and secret (what clients send).
pub fn basic_authorization(principal: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{principal}:{secret}"))
    )
}

/// The principal and secret of an HTTP Basic `Authorization` value (`Basic base64(p:s)`).
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (principal, secret) = text.split_once(':')?;
    Some((principal.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(p: &str, s: &str) -> String {
        basic_authorization(p, s)
    }

    #[test]
    fn json_and_text_files_authenticate_their_principals_only() {
        let json = Credentials::parse(
            r#"{"credentials": [{"principal": "ops", "secret": "s3cret"},
                                {"principal": "marathon", "secret": "m"}]}"#,
        )
        .unwrap();
        let text = Credentials::parse("# who\nops s3cret\nmarathon m\n").unwrap();
        for c in [json, text] {
            assert_eq!(
                c.authenticate(&basic("ops", "s3cret")).as_deref(),
                Some("ops")
            );
            assert_eq!(c.authenticate(&basic("ops", "s3creT")), None);
            assert_eq!(c.authenticate(&basic("ops", "s3cre")), None);
            assert_eq!(c.authenticate(&basic("eve", "s3cret")), None);
            assert_eq!(c.authenticate("Bearer abc"), None);
            assert_eq!(c.authenticate("Basic !!!"), None);
            assert!(
                !format!("{c:?}").contains("s3cret"),
                "secrets stay out of logs"
            );
        }
    }

    #[test]
    fn a_malformed_file_says_what_is_wrong() {
        let e = Credentials::parse("ops\n").unwrap_err().to_string();
        assert!(e.contains("line 1 is not `principal secret`"), "{e}");
        let e = Credentials::parse(r#"{"credentials": [{"principal": "a", "secrets": "x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        assert!(matches!(
            Credentials::parse("\n# nobody\n"),
            Err(CredentialsError::Empty { .. })
        ));
        let e = Credentials::load("file:///nonexistent/creds")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/creds"), "{e}");
    }
}
