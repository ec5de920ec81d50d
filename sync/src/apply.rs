//! Writes changes to one ensemble: creates, data updates and deletes go in multi-op batches
//! that fit `jute.maxbuffer`; ACL changes (not a multi-op in ZooKeeper) go one request each,
//! pipelined. A batch the server refuses as a whole (one op failed, so none applied) is
//! replayed op by op, so one bad node costs only itself. The ACL of every node created, and
//! every ACL set, goes into the side's ACL cache, so reading the node later needs no ACL read.
use futures::{StreamExt as _, future::join_all, stream};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteResult, Stat};

use crate::{tree::AclCache, znode::Znode};

/// One change to make on an ensemble.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create the node (its parent must exist or be created earlier in the same list).
    Create { path: String, node: Znode },
    /// Replace data and/or ACL of an existing node, if its data version is still `version`
    /// (None: whatever it is).
    Update {
        path: String,
        node: Znode,
        data: bool,
        acl: bool,
        version: Option<i32>,
    },
    /// Delete a node without children, if its data version is still `version`.
    Delete { path: String, version: Option<i32> },
    /// Delete the node (at data version `version`) and create it again as `node`, in one
    /// transaction: how an ephemeral mirror an earlier session of the engine owns is taken
    /// over by the current one without a moment in which the node is missing.
    Replace {
        path: String,
        node: Znode,
        version: i32,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Update { path, .. }
            | Op::Delete { path, .. }
            | Op::Replace { path, .. } => path,
        }
    }

    fn size(&self) -> usize {
        match self {
            Op::Create { path, node } => node.request_size(path),
            Op::Replace { path, node, .. } => 16 + path.len() + node.request_size(path),
            Op::Update { path, node, .. } => 32 + path.len() + node.data.len(),
            Op::Delete { path, .. } => 16 + path.len(),
        }
    }

    fn in_multi(&self) -> bool {
        !matches!(self, Op::Update { data: false, .. })
    }
}

/// What happened to one op.
#[derive(Debug)]
pub struct Outcome {
    pub path: String,
    pub result: Result<(), ZkError>,
}

fn mode(node: &Znode) -> CreateMode {
    if node.ephemeral {
        CreateMode::Ephemeral
    } else {
        CreateMode::Persistent
    }
}

/// Ops in one multi-op at most: a smaller multi is applied sooner, so several in flight keep
/// the ensemble's request pipeline busy (one huge multi leaves it idle while it is checked).
const MAX_OPS_PER_MULTI: usize = 200;

/// Multi-ops in flight at a time. One session's requests are applied in the order sent, so a
/// batch that creates parents lands before the next batch's children.
const MULTIS_IN_FLIGHT: usize = 8;

/// Applies `ops` in order (batched) and reports each op's outcome.
pub async fn apply(
    client: &Client,
    ops: &[Op],
    max_batch_bytes: usize,
    acls: &AclCache,
) -> Vec<Outcome> {
    let mut batches: Vec<Vec<&Op>> = Vec::new();
    let mut batch: Vec<&Op> = Vec::new();
    let mut bytes = 0;
    for op in ops.iter().filter(|op| op.in_multi()) {
        if !batch.is_empty()
            && (bytes + op.size() > max_batch_bytes || batch.len() == MAX_OPS_PER_MULTI)
        {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += op.size();
        batch.push(op);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let mut outcomes = Vec::with_capacity(ops.len());
    let batches = &batches;
    let mut committed = stream::iter(0..batches.len())
        .map(|i| commit(client, &batches[i], acls))
        .buffered(MULTIS_IN_FLIGHT);
    while let Some(batch_outcomes) = committed.next().await {
        outcomes.extend(batch_outcomes);
    }
    // ACLs after the nodes exist.
    let acl_updates = ops.iter().filter_map(|op| match op {
        Op::Update {
            path,
            node,
            acl: true,
            ..
        } => Some((path, node)),
        _ => None,
    });
    let results = join_all(acl_updates.map(|(path, node)| async move {
        let acl = node.acls();
        let result = client.set_acl(path, &acl, None).await.map(|stat| {
            acls.remember(path, &stat, acl);
        });
        Outcome {
            path: path.clone(),
            result,
        }
    }))
    .await;
    outcomes.extend(results);
    outcomes
}

/// Remembers the ACL a create gave its node (a multi-op may return no valid `Stat` for a create:
/// ZOOKEEPER-4026; the node's ACL is then read when it is next needed).
fn remember_created(acls: &AclCache, op: &Op, stat: &Stat) {
    if let Op::Create { path, node } | Op::Replace { path, node, .. } = op
        && !stat.is_invalid()
    {
        acls.remember(path, stat, node.acls());
    }
}

/// A multi-op's results for one op, in order: a replace has two (the delete's, the create's).
fn results_per_op(op: &Op) -> usize {
    match op {
        Op::Replace { .. } => 2,
        _ => 1,
    }
}

async fn commit(client: &Client, batch: &[&Op], acls: &AclCache) -> Vec<Outcome> {
    if batch.len() > 1 {
        let mut writer = client.new_multi_writer();
        let mut acl_store = Vec::with_capacity(batch.len());
        for op in batch {
            if let Op::Create { node, .. } | Op::Replace { node, .. } = op {
                acl_store.push(node.acls());
            }
        }
        let mut create_acls = acl_store.iter();
        let mut built = true;
        for op in batch {
            let added = match op {
                Op::Create { path, node } => {
                    let acl = create_acls.next().expect("one ACL list per create");
                    writer.add_create(path, &node.data, &mode(node).with_acls(Acls::new(acl)))
                }
                Op::Replace {
                    path,
                    node,
                    version,
                } => {
                    let acl = create_acls.next().expect("one ACL list per replace");
                    writer.add_delete(path, Some(*version)).and_then(|()| {
                        writer.add_create(path, &node.data, &mode(node).with_acls(Acls::new(acl)))
                    })
                }
                Op::Update {
                    path,
                    node,
                    version,
                    ..
                } => writer.add_set_data(path, &node.data, *version),
                Op::Delete { path, version } => writer.add_delete(path, *version),
            };
            built &= added.is_ok();
        }
        if built && let Ok(results) = writer.commit().await {
            let mut results = results.iter();
            for op in batch {
                for result in results.by_ref().take(results_per_op(op)) {
                    if let MultiWriteResult::Create { stat, .. } = result {
                        remember_created(acls, op, stat);
                    }
                }
            }
            return batch
                .iter()
                .map(|op| Outcome {
                    path: op.path().to_string(),
                    result: Ok(()),
                })
                .collect();
        }
    }
    // One by one (pipelined): a failed multi applied nothing.
    join_all(batch.iter().map(|op| async move {
        let result = match op {
            Op::Create { path, node } => {
                let acl = node.acls();
                client
                    .create(path, &node.data, &mode(node).with_acls(Acls::new(&acl)))
                    .await
                    .map(|(stat, _)| remember_created(acls, op, &stat))
            }
            Op::Update {
                path,
                node,
                version,
                ..
            } => client
                .set_data(path, &node.data, *version)
                .await
                .map(|_| ()),
            Op::Delete { path, version } => match client.delete(path, *version).await {
                Err(ZkError::NoNode) => Ok(()),
                other => other,
            },
            Op::Replace {
                path,
                node,
                version,
            } => {
                let acl = node.acls();
                let mut writer = client.new_multi_writer();
                match writer.add_delete(path, Some(*version)).and_then(|()| {
                    writer.add_create(path, &node.data, &mode(node).with_acls(Acls::new(&acl)))
                }) {
                    Err(e) => Err(e),
                    Ok(()) => match writer.commit().await {
                        Ok(results) => {
                            if let Some(MultiWriteResult::Create { stat, .. }) = results.last() {
                                remember_created(acls, op, stat);
                            }
                            Ok(())
                        }
                        Err(zookeeper_client::MultiWriteError::RequestFailed { source })
                        | Err(zookeeper_client::MultiWriteError::OperationFailed {
                            source, ..
                        }) => Err(source),
                    },
                }
            }
        };
        Outcome {
            path: op.path().to_string(),
            result,
        }
    }))
    .await
}
