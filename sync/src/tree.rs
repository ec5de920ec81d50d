//! Reads a subtree of one ensemble: every znode's data, ACL and ephemerality, level by level
//! with many requests in flight (the client pipelines them on one session).
use std::collections::BTreeMap;

use futures::{StreamExt as _, stream};
use zookeeper_client::{Client, Error as ZkError};

use crate::znode::{Znode, child_path};

/// A subtree by absolute path, sorted (parents before children).
pub type Tree = BTreeMap<String, Znode>;

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(
        "no permission to read {path} on {side}: give the sync digest credentials with READ \
         (and ADMIN to copy ACLs) on every replicated node, or a super digest"
    )]
    NoAuth { side: String, path: String },
    #[error("reading {path} on {side}: {source}")]
    Zk {
        side: String,
        path: String,
        source: ZkError,
    },
}

/// One node and its children's names, or None when it vanished while being read.
async fn read_node(client: &Client, path: &str) -> Result<Option<(Znode, Vec<String>)>, ZkError> {
    let data = client.get_data(path);
    let acl = client.get_acl(path);
    let children = client.list_children(path);
    let (data, acl, children) = futures::join!(data, acl, children);
    match (data, acl, children) {
        (Ok((data, stat)), Ok((acl, _)), Ok(children)) => {
            Ok(Some((Znode::new(data, &acl, &stat), children)))
        }
        (Err(ZkError::NoNode), ..) | (_, Err(ZkError::NoNode), _) | (.., Err(ZkError::NoNode)) => {
            Ok(None)
        }
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => Err(e),
    }
}

/// Reads one node (None when it does not exist).
pub async fn read_one(client: &Client, path: &str) -> Result<Option<Znode>, ZkError> {
    let data = client.get_data(path);
    let acl = client.get_acl(path);
    match futures::join!(data, acl) {
        (Ok((data, stat)), Ok((acl, _))) => Ok(Some(Znode::new(data, &acl, &stat))),
        (Err(ZkError::NoNode), _) | (_, Err(ZkError::NoNode)) => Ok(None),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Walks the subtree at `root` of the ensemble behind `client`, skipping (and not descending
/// into) paths `include` rejects. `side` names the ensemble in errors.
pub async fn walk(
    client: &Client,
    side: &str,
    root: &str,
    include: impl Fn(&str) -> bool,
    concurrency: usize,
) -> Result<Tree, WalkError> {
    let mut tree = Tree::new();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        let mut reads = stream::iter(level.into_iter().filter(|p| include(p)))
            .map(|path| async move {
                let read = read_node(client, &path).await;
                (path, read)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((path, read)) = reads.next().await {
            match read {
                Ok(Some((node, children))) => {
                    next.extend(children.iter().map(|c| child_path(&path, c)));
                    tree.insert(path, node);
                }
                Ok(None) => {}
                Err(ZkError::NoAuth) => {
                    return Err(WalkError::NoAuth {
                        side: side.into(),
                        path,
                    });
                }
                Err(source) => {
                    return Err(WalkError::Zk {
                        side: side.into(),
                        path,
                        source,
                    });
                }
            }
        }
        level = next;
    }
    Ok(tree)
}
