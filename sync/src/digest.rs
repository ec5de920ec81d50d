//! Tree digests: a hash per subtree over every node's path, data, ACL and ephemerality
//! (server-assigned `Stat` fields excluded), so two ensembles can be compared cheaply and a
//! difference narrowed to the paths that differ.
use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::{
    tree::Tree,
    znode::{ContentHash, parent},
};

/// Subtree hashes of one tree, by path.
#[derive(Debug, Clone, Default)]
pub struct TreeDigest {
    pub subtrees: BTreeMap<String, ContentHash>,
}

impl TreeDigest {
    /// Hashes every subtree of `tree` (children in name order).
    pub fn of(tree: &Tree) -> Self {
        // Children's subtree hashes are folded into their parent's, deepest paths first.
        let mut by_depth: Vec<&String> = tree.keys().collect();
        by_depth.sort_by_key(|p| std::cmp::Reverse(depth(p)));
        let mut child_hashes: BTreeMap<&str, Vec<(&str, ContentHash)>> = BTreeMap::new();
        let mut subtrees = BTreeMap::new();
        for path in by_depth {
            let node = &tree[path];
            let mut h = Sha256::new();
            h.update(path.as_bytes());
            h.update([0]);
            h.update(node.content_hash().0);
            if let Some(children) = child_hashes.get_mut(path.as_str()) {
                children.sort();
                for (name, hash) in children.iter() {
                    h.update(name.as_bytes());
                    h.update([0]);
                    h.update(hash.0);
                }
            }
            let hash = ContentHash(h.finalize().into());
            if path != "/" {
                child_hashes
                    .entry(parent(path))
                    .or_default()
                    .push((path.as_str(), hash));
            }
            subtrees.insert(path.clone(), hash);
        }
        Self { subtrees }
    }

    /// The hash of the subtree at `path`, if it exists.
    pub fn subtree(&self, path: &str) -> Option<ContentHash> {
        self.subtrees.get(path).copied()
    }
}

fn depth(path: &str) -> usize {
    if path == "/" {
        0
    } else {
        path.matches('/').count()
    }
}

/// How one path differs between A and B.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Difference {
    OnlyInA {
        path: String,
    },
    OnlyInB {
        path: String,
    },
    Data {
        path: String,
    },
    Acl {
        path: String,
    },
    Ephemeral {
        path: String,
    },
    /// One side's ACL was read with hidden digests (`digest user:x`, read without ADMIN):
    /// what that side holds cannot be known, so the path is never reported equal.
    AclHidden {
        path: String,
    },
}

impl Difference {
    pub fn path(&self) -> &str {
        match self {
            Self::OnlyInA { path }
            | Self::OnlyInB { path }
            | Self::Data { path }
            | Self::Acl { path }
            | Self::Ephemeral { path }
            | Self::AclHidden { path } => path,
        }
    }
}

/// Every path where the two trees differ, in path order. Subtrees with equal digests are
/// skipped without looking at their nodes; a node whose ACL either side read with hidden
/// digests is always a difference ([`Difference::AclHidden`], beside any other).
pub fn diff(a: &Tree, b: &Tree) -> Vec<Difference> {
    let mut out = compare(a, b);
    let hidden: std::collections::BTreeSet<&String> = a
        .iter()
        .chain(b.iter())
        .filter(|(_, node)| node.acl_hidden())
        .map(|(path, _)| path)
        .collect();
    if !hidden.is_empty() {
        out.extend(
            hidden
                .into_iter()
                .map(|path| Difference::AclHidden { path: path.clone() }),
        );
        out.sort_by(|x, y| x.path().cmp(y.path()));
    }
    out
}

fn compare(a: &Tree, b: &Tree) -> Vec<Difference> {
    let da = TreeDigest::of(a);
    let db = TreeDigest::of(b);
    let mut out = Vec::new();
    let mut skip: Option<&str> = None;
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        if let Some(prefix) = skip {
            if crate::znode::is_under(path, prefix) {
                continue;
            }
            skip = None;
        }
        if da.subtree(path).is_some() && da.subtree(path) == db.subtree(path) {
            skip = Some(path);
            continue;
        }
        match (a.get(path), b.get(path)) {
            (Some(_), None) => out.push(Difference::OnlyInA { path: path.clone() }),
            (None, Some(_)) => out.push(Difference::OnlyInB { path: path.clone() }),
            (Some(x), Some(y)) => {
                if x.data != y.data {
                    out.push(Difference::Data { path: path.clone() });
                }
                if x.acl != y.acl {
                    out.push(Difference::Acl { path: path.clone() });
                }
                if x.ephemeral != y.ephemeral {
                    out.push(Difference::Ephemeral { path: path.clone() });
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::znode::{Znode, test_node};

    fn node(data: &str) -> Znode {
        test_node(data, 0)
    }

    fn tree(nodes: &[(&str, &str)]) -> Tree {
        nodes
            .iter()
            .map(|(p, d)| (p.to_string(), node(d)))
            .collect()
    }

    #[test]
    fn equal_trees_have_equal_digests_whatever_the_stat() {
        let a = tree(&[("/", ""), ("/x", "1"), ("/x/y", "2")]);
        let mut b = a.clone();
        b.get_mut("/x").unwrap().meta.version = 7;
        assert_eq!(
            TreeDigest::of(&a).subtree("/"),
            TreeDigest::of(&b).subtree("/")
        );
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn a_node_read_with_a_hidden_digest_is_never_equal() {
        let mut a = tree(&[("/", ""), ("/x", "1")]);
        a.get_mut("/x").unwrap().acl[0] = crate::znode::AclEntry {
            perms: 31,
            scheme: "digest".into(),
            id: "bob:x".into(),
        };
        // The same hidden ACL written on B by a sync that copied it as read.
        let b = a.clone();
        assert_eq!(
            diff(&a, &b),
            vec![Difference::AclHidden { path: "/x".into() }]
        );
    }

    #[test]
    fn diff_names_each_differing_path() {
        let a = tree(&[("/", ""), ("/x", "1"), ("/x/y", "2"), ("/z", "")]);
        let mut b = tree(&[("/", ""), ("/x", "1"), ("/x/y", "3"), ("/w", "")]);
        b.get_mut("/x").unwrap().acl[0].perms = 1;
        assert_ne!(
            TreeDigest::of(&a).subtree("/x"),
            TreeDigest::of(&b).subtree("/x")
        );
        assert_eq!(
            diff(&a, &b),
            vec![
                Difference::OnlyInB { path: "/w".into() },
                Difference::Acl { path: "/x".into() },
                Difference::Data {
                    path: "/x/y".into()
                },
                Difference::OnlyInA { path: "/z".into() },
            ]
        );
    }
}
