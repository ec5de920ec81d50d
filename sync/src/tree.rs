//! Reads znodes of one ensemble: whole subtrees level by level (walks) and sets of changed
//! paths. Data, `Stat` and children come by multi-read (many nodes a request); ACLs, which a
//! multi-read cannot carry, come from a cache keyed by each node's identity and ACL version,
//! and are read (one request each, pipelined) only for nodes new to it or whose ACL changed.
use std::{collections::BTreeMap, collections::HashMap, sync::Mutex};

use futures::{StreamExt as _, future::join_all, stream};
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

/// Paths per multi-read of changed paths: their data must fit one response under
/// `jute.maxbuffer`.
const MULTI_READ_PATHS: usize = 128;

/// A node and its children's names; None when it vanished while being read.
type NodeRead = Option<(Znode, Vec<String>)>;

/// Reads `paths` for a walk: data, `Stat` and children in one multi-read through `client`,
/// ACLs through `acls` spread over `sessions`. On an error, names the path it concerns.
async fn read_nodes(
    client: &Client,
    sessions: &[Client],
    paths: &[String],
    acls: &AclCache,
) -> Result<Vec<NodeRead>, (String, ZkError)> {
    let mut reader = client.new_multi_reader();
    for p in paths {
        reader
            .add_get_data(p)
            .and_then(|()| reader.add_get_children(p))
            .map_err(|e| (p.clone(), e))?;
    }
    let replies = reader
        .commit()
        .await
        .map_err(|e| (paths.first().cloned().unwrap_or_default(), e))?;
    let mut replies = replies.into_iter();
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        use MultiReadResult::{Children, Data, Error};
        found.push(match (replies.next(), replies.next()) {
            (Some(Data { data, stat }), Some(Children { children })) => {
                Some((data, stat, children))
            }
            (
                Some(Error {
                    err: ZkError::NoNode,
                }),
                _,
            )
            | (
                _,
                Some(Error {
                    err: ZkError::NoNode,
                }),
            ) => None,
            (Some(Error { err }), _) | (_, Some(Error { err })) => return Err((path.clone(), err)),
            _ => {
                return Err((
                    path.clone(),
                    ZkError::UnexpectedError(
                        "multi-read: replies missing or of the wrong kind".into(),
                    ),
                ));
            }
        });
    }
    let stats: Vec<Option<&Stat>> = found
        .iter()
        .map(|f| f.as_ref().map(|(_, s, _)| s))
        .collect();
    let acl = acls.of(sessions, paths, &stats).await?;
    Ok(found
        .into_iter()
        .zip(acl)
        .map(|(f, acl)| {
            let (data, stat, children) = f?;
            Some((Znode::new(data, &acl?, &stat), children))
        })
        .collect())
}

/// Walks the subtree at `root` of the ensemble behind `sessions` (reads spread over them, each
/// `sync`ed with the leader beforehand by the caller), skipping (and not descending into)
/// paths `include` rejects. `side` names the ensemble in errors. About `concurrency` nodes
/// are read at a time. With `stream`, the nodes go there as they are read (a level's before
/// the next level's: parents before children) and the tree returned is empty.
#[allow(clippy::too_many_arguments)]
pub async fn walk(
    sessions: &[Client],
    side: &str,
    root: &str,
    include: impl Fn(&str) -> bool,
    concurrency: usize,
    acls: &AclCache,
    walked: &std::sync::atomic::AtomicU64,
    stream: Option<&tokio::sync::mpsc::UnboundedSender<Vec<(String, Znode)>>>,
) -> Result<Tree, WalkError> {
    let mut tree = Tree::new();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        let mut included = level.into_iter().filter(|p| include(p)).peekable();
        let mut chunks: Vec<Vec<String>> = Vec::new();
        while included.peek().is_some() {
            chunks.push(included.by_ref().take(WALK_NODES_PER_READ).collect());
        }
        let mut reads = stream::iter(chunks.into_iter().enumerate())
            .map(|(i, paths)| async move {
                let client = &sessions[i % sessions.len()];
                let read = read_nodes(client, sessions, &paths, acls).await;
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
            let mut read = Vec::with_capacity(paths.len());
            for (path, node) in paths.into_iter().zip(nodes) {
                let Some((node, children)) = node else {
                    continue;
                };
                walked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                next.extend(children.iter().map(|c| child_path(&path, c)));
                read.push((path, node));
            }
            match stream {
                // A receiver gone means the caller stopped (it failed): the walk ends soon
                // after, with nothing kept.
                Some(out) => {
                    let _ = out.send(read);
                }
                None => tree.extend(read),
            }
        }
        level = next;
    }
    Ok(tree)
}

/// ACLs last read per node, keyed by the node's identity and ACL version: every setACL moves
/// the version (`aversion`), and a node deleted and created again has a new `czxid`, so an
/// entry that matches a fresh `Stat` is the node's current ACL.
#[derive(Default)]
pub struct AclCache {
    entries: Mutex<HashMap<String, CachedAcl>>,
}

/// A node's ACL and the identity (`czxid`) and ACL version (`aversion`) it was read at.
type CachedAcl = (i64, i32, Vec<Acl>);

impl AclCache {
    /// Remembers `acl` as the ACL of the node `stat` describes.
    pub fn remember(&self, path: &str, stat: &Stat, acl: Vec<Acl>) {
        self.entries
            .lock()
            .unwrap()
            .insert(path.to_string(), (stat.czxid, stat.aversion, acl));
    }

    /// The ACL of each node in `paths` whose `Stat` was just read (None where it was not
    /// found, or vanished before its ACL was read): from the cache where it matches, else read
    /// (pipelined) and remembered. An ACL changed between the two reads is taken as read (ACL
    /// changes fire no watch; a re-scan settles them).
    async fn of(
        &self,
        sessions: &[Client],
        paths: &[String],
        stats: &[Option<&Stat>],
    ) -> Result<Vec<Option<Vec<Acl>>>, (String, ZkError)> {
        let mut acls: Vec<Option<Vec<Acl>>> = {
            // One lock for the whole batch (a walk asks for every node).
            let entries = self.entries.lock().unwrap();
            paths
                .iter()
                .zip(stats)
                .map(|(path, stat)| {
                    let stat = (*stat)?;
                    let (czxid, aversion, acl) = entries.get(path)?;
                    (*czxid == stat.czxid && *aversion == stat.aversion).then(|| acl.clone())
                })
                .collect()
        };
        let missing: Vec<usize> = (0..paths.len())
            .filter(|&i| stats[i].is_some() && acls[i].is_none())
            .collect();
        let fetched = join_all(
            missing
                .iter()
                .enumerate()
                .map(|(n, &i)| sessions[n % sessions.len()].get_acl(&paths[i])),
        )
        .await;
        for (&i, result) in missing.iter().zip(fetched) {
            match result {
                Ok((acl, stat)) => {
                    self.remember(&paths[i], &stat, acl.clone());
                    acls[i] = Some(acl);
                }
                // Deleted in between: read as absent.
                Err(ZkError::NoNode) => {}
                Err(e) => return Err((paths[i].clone(), e)),
            }
        }
        Ok(acls)
    }
}

/// Reads many nodes (None for those that do not exist): data and `Stat` by multi-read,
/// `MULTI_READ_PATHS` paths a request, ACLs through `acls`.
pub async fn read_many(
    client: &Client,
    paths: &[String],
    acls: &AclCache,
) -> Result<Vec<Option<Znode>>, ZkError> {
    let chunks = join_all(paths.chunks(MULTI_READ_PATHS).map(|chunk| async move {
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
    let stats: Vec<Option<&Stat>> = found.iter().map(|f| f.as_ref().map(|(_, s)| s)).collect();
    let acl = acls
        .of(std::slice::from_ref(client), paths, &stats)
        .await
        .map_err(|(_, e)| e)?;
    Ok(found
        .into_iter()
        .zip(acl)
        .map(|(f, acl)| {
            let (data, stat) = f?;
            Some(Znode::new(data, &acl?, &stat))
        })
        .collect())
}
