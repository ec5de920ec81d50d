//! The leading master in ZooKeeper, the way Mesos keeps it, so Mesos tools and Orca's own
//! agents, clients and TUI find an Orca leader alike:
//!
//! - every master is a contender: an ephemeral sequential znode `<path>/json.info_<seq>`
//!   holding its [`MasterInfo`] as JSON; the lowest sequence leads ([`contenders`]);
//! - a [`Detector`] follows the leader: it watches the children of `<path>`, reads the lowest
//!   contender's info, and publishes every change.
//!
//! The masters' own election (acting only while leading, fencing, the registry) is in the
//! master; this crate holds what everything that looks for the leader shares.
mod detector;
pub mod info;
pub mod url;

use std::time::Duration;

pub use detector::{Detector, MasterLocator};
pub use info::MasterInfo;
pub use url::{UrlError, ZkUrl};
pub use zookeeper_client as zk;
use zookeeper_client::{Acl, Acls, AuthId, Client, Permission};

/// The label Mesos gives contender znodes holding JSON (`json.info_0000000007`).
pub const CONTENDER_LABEL: &str = "json.info";

/// Mesos's default `--zk_session_timeout`.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a session on `url`'s servers with its credentials.
pub async fn connect(url: &ZkUrl, session_timeout: Duration) -> Result<Client, zk::Error> {
    let mut connector = Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(session_timeout);
    if let Some((user, password)) = &url.credentials {
        connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
    }
    connector.connect(&url.servers).await
}

static ANYONE_READ_CREATOR_ALL: std::sync::LazyLock<[Acl; 2]> = std::sync::LazyLock::new(|| {
    [
        Acl::new(Permission::READ, AuthId::anyone()),
        Acl::new(Permission::ALL, AuthId::authed()),
    ]
});

/// The ACL for znodes a session on `url` creates: open without credentials; with them,
/// readable by anyone (tools find the leader) and writable by the same identity, as Mesos
/// does.
pub fn acls(url: &ZkUrl) -> Acls<'static> {
    if url.credentials.is_some() {
        Acls::new(&*ANYONE_READ_CREATOR_ALL)
    } else {
        Acls::anyone_all()
    }
}

/// The sequence number of a group member's znode name (`json.info_0000000007` → 7), as
/// Mesos's group reads it: the digits after the last `_`. Other children are not members.
pub fn sequence(name: &str) -> Option<u64> {
    let (_, digits) = name.rsplit_once('_')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The contender znodes among `children`, lowest sequence (the leader) first.
pub fn contenders(children: &[String]) -> Vec<(u64, &str)> {
    let mut members: Vec<(u64, &str)> = children
        .iter()
        .filter_map(|c| Some((sequence(c)?, c.as_str())))
        .collect();
    members.sort_unstable();
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_sequence_leads_and_other_children_are_not_members() {
        let children: Vec<String> = [
            "json.info_0000000012",
            "orca-registry",
            "json.info_0000000003",
            "log_replicas",
            "info_0000000007",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let members = contenders(&children);
        assert_eq!(
            members,
            vec![
                (3, "json.info_0000000003"),
                (7, "info_0000000007"),
                (12, "json.info_0000000012")
            ]
        );
        assert_eq!(sequence("json.info_"), None);
    }
}
