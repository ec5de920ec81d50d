//! ZooKeeper URLs as Mesos takes them: `zk://host1:port1,host2:port2/path`, with optional
//! digest credentials `zk://user:password@host1:port1/path`, or `file:///path` naming a file
//! that holds such a URL (so credentials stay out of argv and process listings).
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} is not a ZooKeeper URL: expected zk://host:port[,host:port...]/path")]
    Scheme(String),
    #[error("{0:?} names no ZooKeeper server: expected zk://host:port[,host:port...]/path")]
    NoServers(String),
    #[error("{url:?}: server {server:?} is not host:port")]
    Server { url: String, server: String },
    #[error("{0:?} has no path: Mesos clusters live under one, e.g. zk://host:2181/mesos")]
    NoPath(String),
    #[error("{0:?}: the path must not end with '/' nor contain empty segments")]
    BadPath(String),
    #[error("{url:?}: the credentials must be user:password")]
    Credentials { url: String },
    #[error(
        "{0:?} is not a master: expected host:port (one master's gRPC address) or \
         zk://host:port[,host:port...]/path"
    )]
    Master(String),
    #[error("cannot read the ZooKeeper URL from {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// A parsed `zk://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkUrl {
    /// `host:port,host:port`, as ZooKeeper clients take it.
    pub servers: String,
    /// The znode the masters contend under, e.g. `/mesos`.
    pub path: String,
    /// Digest credentials (`user`, `password`) for every session on this URL.
    pub credentials: Option<(String, String)>,
    /// The file it was read from (`file:///path`): followers read it again whenever they
    /// open a new session, so rewriting it points clients at another ensemble (e.g. after a
    /// migration) without restarting them.
    pub file: Option<String>,
}

impl fmt::Debug for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ZkUrl {
    /// The URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credentials {
            Some((user, _)) => write!(f, "zk://{user}:***@{}{}", self.servers, self.path),
            None => write!(f, "zk://{}{}", self.servers, self.path),
        }
    }
}

impl ZkUrl {
    /// Whether `s` asks for ZooKeeper (rather than naming one master's address).
    pub fn is_zk(s: &str) -> bool {
        s.starts_with("zk://") || s.starts_with("file://")
    }

    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("file://") {
            let text = std::fs::read_to_string(path).map_err(|source| UrlError::File {
                path: path.to_owned(),
                source,
            })?;
            let mut url = Self::parse_zk(text.trim())?;
            url.file = Some(path.to_owned());
            return Ok(url);
        }
        Self::parse_zk(s)
    }

    /// The URL as its file says now (`None` when it came from no file, or the file cannot be
    /// read or parsed: the caller keeps what it had).
    pub fn reread(&self) -> Option<ZkUrl> {
        let file = self.file.as_ref()?;
        match Self::parse(&format!("file://{file}")) {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::warn!(%e, "keeping the ZooKeeper URL read before");
                None
            }
        }
    }

    fn parse_zk(s: &str) -> Result<Self, UrlError> {
        let rest = s
            .strip_prefix("zk://")
            .ok_or_else(|| UrlError::Scheme(s.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(UrlError::NoPath(s.to_owned())),
        };
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((creds, hosts)) => {
                let (user, password) = creds
                    .split_once(':')
                    .filter(|(u, _)| !u.is_empty())
                    .ok_or_else(|| UrlError::Credentials { url: s.to_owned() })?;
                (Some((user.to_owned(), password.to_owned())), hosts)
            }
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(UrlError::NoServers(s.to_owned()));
        }
        for server in hosts.split(',') {
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(UrlError::Server {
                    url: s.to_owned(),
                    server: server.to_owned(),
                });
            }
        }
        if path == "/" {
            return Err(UrlError::NoPath(s.to_owned()));
        }
        if path.ends_with('/') || path.contains("//") {
            return Err(UrlError::BadPath(s.to_owned()));
        }
        Ok(ZkUrl {
            file: None,
            servers: hosts.to_owned(),
            path: path.to_owned(),
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_mesos_takes_them() {
        let url = ZkUrl::parse("zk://h1:2181,h2:2182/mesos").unwrap();
        assert_eq!(url.servers, "h1:2181,h2:2182");
        assert_eq!(url.path, "/mesos");
        assert_eq!(url.credentials, None);
        let url = ZkUrl::parse("zk://ops:s3cret@10.0.0.1:2181/a/b").unwrap();
        assert_eq!(url.credentials, Some(("ops".into(), "s3cret".into())));
        assert_eq!(url.path, "/a/b");
        assert_eq!(url.to_string(), "zk://ops:***@10.0.0.1:2181/a/b");
        for bad in [
            "http://h:1/mesos",
            "zk://h:1",
            "zk://h:1/",
            "zk:///mesos",
            "zk://h/mesos",
            "zk://h:1/mesos/",
            "zk://:pw@h:1/mesos",
        ] {
            assert!(ZkUrl::parse(bad).is_err(), "{bad} parsed");
        }
        let file = std::env::temp_dir().join(format!("orca-zk-url-{}", std::process::id()));
        std::fs::write(&file, "zk://u:p@h:1/m\n").unwrap();
        let url = ZkUrl::parse(&format!("file://{}", file.display())).unwrap();
        assert_eq!(url.credentials, Some(("u".into(), "p".into())));
        // Rewritten, the file names another ensemble; unreadable, it changes nothing.
        std::fs::write(&file, "zk://other:2/m\n").unwrap();
        assert_eq!(url.reread().unwrap().servers, "other:2");
        std::fs::write(&file, "not a url").unwrap();
        assert!(url.reread().is_none());
        assert!(ZkUrl::parse("zk://h:1/m").unwrap().reread().is_none());
        std::fs::remove_file(&file).unwrap();
    }
}
