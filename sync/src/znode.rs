//! A znode's replicated content: data, ACL and whether it is ephemeral. Everything the server
//! assigns (versions, zxids, times, owner session) is left out, so two ensembles can agree.
use std::fmt;

use sha2::{Digest as _, Sha256};
use zookeeper_client::{Acl, AuthId, Permission, Stat};

/// One ACL entry in a form that can be compared, hashed and written back.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct AclEntry {
    /// Permission bits as ZooKeeper encodes them (READ=1 WRITE=2 CREATE=4 DELETE=8 ADMIN=16).
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

const PERMISSIONS: [(Permission, i32); 5] = [
    (Permission::READ, 1),
    (Permission::WRITE, 2),
    (Permission::CREATE, 4),
    (Permission::DELETE, 8),
    (Permission::ADMIN, 16),
];

impl AclEntry {
    pub fn from_acl(acl: &Acl) -> Self {
        let perms = PERMISSIONS
            .iter()
            .filter(|(p, _)| acl.permission().has(*p))
            .map(|(_, bit)| bit)
            .sum();
        Self {
            perms,
            scheme: acl.scheme().to_string(),
            id: acl.id().to_string(),
        }
    }

    /// Whether this is a digest entry whose password hash ZooKeeper hid (`digest user:x`): a
    /// client without ADMIN on a node reads its digest entries so. Written back as read, it
    /// would lock the user out; a real digest hash is 28 characters of base64, never `x`.
    pub fn is_hidden(&self) -> bool {
        self.scheme == "digest" && self.id.ends_with(":x")
    }

    pub fn to_acl(&self) -> Acl {
        let permission = PERMISSIONS
            .iter()
            .filter(|(_, bit)| self.perms & bit != 0)
            .fold(Permission::NONE, |acc, (p, _)| acc | *p);
        Acl::new(permission, AuthId::new(&self.scheme, &self.id))
    }
}

/// What replication copies of one znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Znode {
    pub data: Vec<u8>,
    /// Sorted, so the order a server returns does not make two equal ACLs differ.
    pub acl: Vec<AclEntry>,
    pub ephemeral: bool,
    /// Server-assigned facts kept for decisions (not compared, not hashed).
    pub meta: Meta,
}

/// Server-assigned facts about one side's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub version: i32,
    pub aversion: i32,
    /// Last modification, server wall-clock milliseconds.
    pub mtime: i64,
    pub mzxid: i64,
    /// Creation transaction: tells a node from a deleted and re-created one of the same path.
    pub czxid: i64,
    /// Session owning an ephemeral node (0 for persistent ones).
    pub ephemeral_owner: i64,
}

impl Meta {
    pub fn from_stat(stat: &Stat) -> Self {
        Self {
            version: stat.version,
            aversion: stat.aversion,
            mtime: stat.mtime,
            mzxid: stat.mzxid,
            czxid: stat.czxid,
            ephemeral_owner: stat.ephemeral_owner,
        }
    }
}

/// A content hash of one znode (path not included).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Znode {
    pub fn new(data: Vec<u8>, acl: &[Acl], stat: &Stat) -> Self {
        let mut acl: Vec<AclEntry> = acl.iter().map(AclEntry::from_acl).collect();
        acl.sort();
        Self {
            data,
            acl,
            ephemeral: stat.ephemeral_owner != 0,
            meta: Meta::from_stat(stat),
        }
    }

    /// Hash of data, ACL and ephemerality: equal hashes mean equal replicated content.
    pub fn content_hash(&self) -> ContentHash {
        let mut h = Sha256::new();
        h.update((self.data.len() as u64).to_le_bytes());
        h.update(&self.data);
        h.update((self.acl.len() as u64).to_le_bytes());
        for entry in &self.acl {
            h.update(entry.perms.to_le_bytes());
            for part in [&entry.scheme, &entry.id] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        h.update([self.ephemeral as u8]);
        ContentHash(h.finalize().into())
    }

    /// Hash of data and ephemerality alone: how two copies are compared when one side's ACL
    /// cannot be read exactly (`acl-hidden: keep-target`). Never equal to a [`content_hash`]
    /// (its input starts differently), so a base recorded one way is not taken for the other.
    ///
    /// [`content_hash`]: Self::content_hash
    pub fn data_hash(&self) -> ContentHash {
        let mut h = Sha256::new();
        h.update(b"data-only\0");
        h.update((self.data.len() as u64).to_le_bytes());
        h.update(&self.data);
        h.update([self.ephemeral as u8]);
        ContentHash(h.finalize().into())
    }

    /// Whether its ACL was read with hidden digests: what was read is not the node's ACL.
    pub fn acl_hidden(&self) -> bool {
        self.acl.iter().any(AclEntry::is_hidden)
    }

    pub fn acls(&self) -> Vec<Acl> {
        self.acl.iter().map(AclEntry::to_acl).collect()
    }

    /// Bytes this node takes in a create request (path, data, ACL), for batching.
    pub fn request_size(&self, path: &str) -> usize {
        64 + path.len()
            + self.data.len()
            + self
                .acl
                .iter()
                .map(|a| 12 + a.scheme.len() + a.id.len())
                .sum::<usize>()
    }
}

/// The parent of an absolute path (`/a/b` -> `/a`, `/a` -> `/`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `base` joined with a child name.
pub fn child_path(base: &str, name: &str) -> String {
    if base == "/" {
        format!("/{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// Whether `path` is `prefix` or below it.
pub fn is_under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// A persistent node readable and writable by anyone, for unit tests.
#[cfg(test)]
pub(crate) fn test_node(data: &str, mtime: i64) -> Znode {
    Znode {
        data: data.as_bytes().to_vec(),
        acl: vec![AclEntry {
            perms: 31,
            scheme: "world".into(),
            id: "anyone".into(),
        }],
        ephemeral: false,
        meta: Meta {
            mtime,
            ..Meta::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/x", "/"));
    }

    #[test]
    fn a_digest_read_without_admin_is_hidden() {
        let entry = |scheme: &str, id: &str| AclEntry {
            perms: 31,
            scheme: scheme.into(),
            id: id.into(),
        };
        let mut node = test_node("x", 0);
        assert!(!node.acl_hidden());
        node.acl
            .push(entry("digest", "bob:4Ns0mLdGAeDvvTCNHaOQd3ARKzI="));
        assert!(!node.acl_hidden());
        node.acl.push(entry("digest", "carol:x"));
        assert!(node.acl_hidden());
        assert!(!entry("ip", "10.0.0.1:x").is_hidden());
    }

    #[test]
    fn acl_round_trip_keeps_permission_bits() {
        let entry = AclEntry {
            perms: 1 | 4 | 16,
            scheme: "digest".into(),
            id: "u:hash".into(),
        };
        assert_eq!(AclEntry::from_acl(&entry.to_acl()), entry);
    }
}
