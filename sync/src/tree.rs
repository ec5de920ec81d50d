//! Reads a subtree of one ensemble: every znode's data, ACL and ephemerality, level by level,
//! data and children by multi-read (many nodes a request) and ACLs one request each (a
//! multi-read cannot carry them), with many requests in flight on one session.
use std::{collections::BTreeMap, collections::HashMap, sync::Mutex};

use futures::{StreamExt as _, stream};
use zookeeper_client::{Acl, Client, Error as ZkError, MultiReadResult, Stat};

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

/// Nodes read by one multi-read in a walk (data and children of each, two ops per node).
const WALK_NODES_PER_READ: usize = 64;

/// A node and its children's names; None when it vanished while being read.
type NodeRead = Option<(Znode, Vec<String>)>;

/// Reads `paths` (data, `Stat` and children in one multi-read, ACLs pipelined beside it).
/// On an error, names the path it concerns.
async fn read_nodes(client: &Client, paths: &[String]) -> Result<Vec<NodeRead>, (String, ZkError)> {
    let mut reader = client.new_multi_reader();
    for p in paths {
        reader
            .add_get_data(p)
            .and_then(|()| reader.add_get_children(p))
            .map_err(|e| (p.clone(), e))?;
    }
    let acls = futures::future::join_all(paths.iter().map(|p| client.get_acl(p)));
    let (reads, acls) = futures::join!(reader.commit(), acls);
    let reads = reads.map_err(|e| (paths.first().cloned().unwrap_or_default(), e))?;
    let mut replies = reads.into_iter();
    let mut nodes = Vec::with_capacity(paths.len());
    for (path, acl) in paths.iter().zip(acls) {
        use MultiReadResult::{Children, Data, Error};
        let node = match (replies.next(), replies.next(), acl) {
            (Some(Data { data, stat }), Some(Children { children }), Ok((acl, _))) => {
                Some((Znode::new(data, &acl, &stat), children))
            }
            (
                Some(Error {
                    err: ZkError::NoNode,
                }),
                ..,
            )
            | (
                _,
                Some(Error {
                    err: ZkError::NoNode,
                }),
                _,
            )
            | (.., Err(ZkError::NoNode)) => None,
            (Some(Error { err }), ..) | (_, Some(Error { err }), _) | (.., Err(err)) => {
                return Err((path.clone(), err));
            }
            _ => {
                return Err((
                    path.clone(),
                    ZkError::UnexpectedError(
                        "multi-read: replies missing or of the wrong kind".into(),
                    ),
                ));
            }
        };
        nodes.push(node);
    }
    Ok(nodes)
}

/// Walks the subtree at `root` of the ensemble behind `client`, skipping (and not descending
/// into) paths `include` rejects. `side` names the ensemble in errors. About `concurrency`
/// nodes are read at a time.
pub async fn walk(
    client: &Client,
    side: &str,
    root: &str,
    include: impl Fn(&str) -> bool,
    concurrency: usize,
    walked: &std::sync::atomic::AtomicU64,
) -> Result<Tree, WalkError> {
    let mut tree = Tree::new();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        let included: Vec<String> = level.into_iter().filter(|p| include(p)).collect();
        let chunks: Vec<Vec<String>> = included
            .chunks(WALK_NODES_PER_READ)
            .map(<[String]>::to_vec)
            .collect();
        let mut reads = stream::iter(chunks)
            .map(|paths| async move {
                let read = read_nodes(client, &paths).await;
                (paths, read)
            })
            .buffer_unordered((concurrency / WALK_NODES_PER_READ).max(1));
        while let Some((paths, read)) = reads.next().await {
            let nodes = match read {
                Ok(nodes) => nodes,
                Err((path, ZkError::NoAuth)) => {
                    return Err(WalkError::NoAuth {
                        side: side.into(),
                        path,
                    });
                }
                Err((path, source)) => {
                    return Err(WalkError::Zk {
                        side: side.into(),
                        path,
                        source,
                    });
                }
            };
            for (path, node) in paths.into_iter().zip(nodes) {
                let Some((node, children)) = node else {
                    continue;
                };
                walked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                next.extend(children.iter().map(|c| child_path(&path, c)));
                tree.insert(path, node);
            }
        }
        level = next;
    }
    Ok(tree)
}

/// Paths per multi-read request: their data must fit one response under `jute.maxbuffer`.
const MULTI_READ_PATHS: usize = 128;

/// ACLs last read per node, keyed by the node's identity and ACL version: a multi-read returns
/// data and `Stat` but no ACL, and most changes leave the ACL alone.
#[derive(Default)]
pub struct AclCache {
    entries: Mutex<HashMap<String, CachedAcl>>,
}

/// A node's ACL and the identity (`czxid`) and ACL version (`aversion`) it was read at.
type CachedAcl = (i64, i32, Vec<Acl>);

impl AclCache {
    fn get(&self, path: &str, stat: &Stat) -> Option<Vec<Acl>> {
        let entries = self.entries.lock().unwrap();
        let (czxid, aversion, acl) = entries.get(path)?;
        (*czxid == stat.czxid && *aversion == stat.aversion).then(|| acl.clone())
    }

    fn put(&self, path: &str, stat: &Stat, acl: Vec<Acl>) {
        self.entries
            .lock()
            .unwrap()
            .insert(path.to_string(), (stat.czxid, stat.aversion, acl));
    }

    /// Remembers the ACLs of a whole walked tree, so the first change to each node after a
    /// walk needs no ACL read.
    pub fn fill(&self, tree: &Tree) {
        let mut entries = self.entries.lock().unwrap();
        for (path, node) in tree {
            entries.insert(
                path.clone(),
                (node.meta.czxid, node.meta.aversion, node.acls()),
            );
        }
    }
}

/// Reads many nodes (None for those that do not exist): data and `Stat` by multi-read, a
/// hundred paths per request, ACLs from `acls` unless the node's ACL version moved.
pub async fn read_many(
    client: &Client,
    paths: &[String],
    acls: &AclCache,
) -> Result<Vec<Option<Znode>>, ZkError> {
    let chunks =
        futures::future::join_all(paths.chunks(MULTI_READ_PATHS).map(|chunk| async move {
            let mut reader = client.new_multi_reader();
            for p in chunk {
                reader.add_get_data(p)?;
            }
            reader.commit().await
        }))
        .await;
    let mut found: Vec<Option<(Vec<u8>, Stat)>> = Vec::with_capacity(paths.len());
    for chunk in chunks {
        for result in chunk? {
            match result {
                MultiReadResult::Data { data, stat } => found.push(Some((data, stat))),
                MultiReadResult::Error {
                    err: ZkError::NoNode,
                } => found.push(None),
                MultiReadResult::Error { err } => return Err(err),
                _ => {
                    return Err(ZkError::UnexpectedError(
                        "multi-read: not a data reply".into(),
                    ));
                }
            }
        }
    }
    // ACLs for nodes that are new to the cache or whose ACL changed.
    let missing: Vec<usize> = found
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            f.as_ref()
                .is_some_and(|(_, stat)| acls.get(&paths[*i], stat).is_none())
        })
        .map(|(i, _)| i)
        .collect();
    let fetched =
        futures::future::join_all(missing.iter().map(|&i| client.get_acl(&paths[i]))).await;
    for (&i, result) in missing.iter().zip(fetched) {
        match result {
            Ok((acl, stat)) => acls.put(&paths[i], &stat, acl),
            // Deleted in between: read as absent.
            Err(ZkError::NoNode) => found[i] = None,
            Err(e) => return Err(e),
        }
    }
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let (data, stat) = f?;
            match acls.get(&paths[i], &stat) {
                Some(acl) => Some(Znode::new(data, &acl, &stat)),
                // The ACL changed between the multi-read and the ACL read: take the newer
                // ACL (ACL changes fire no watch; the periodic re-scan settles them anyway).
                None => {
                    let acl = acls
                        .entries
                        .lock()
                        .unwrap()
                        .get(&paths[i])
                        .map(|e| e.2.clone())?;
                    Some(Znode::new(data, &acl, &stat))
                }
            }
        })
        .collect())
}
