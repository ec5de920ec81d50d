//! The registry of highly-available masters, in ZooKeeper beside their contender znodes:
//!
//! ```text
//! <path>/orca-registry/agents/<agent id>          AgentRecord JSON
//! <path>/orca-registry/frameworks/<framework id>  FrameworkRecord JSON
//! <path>/orca-registry/torn-down/<framework id>   (empty)
//! <path>/orca-registry/roles/<role, '/' as %2F>   RoleRecord JSON (weight, quota)
//! ```
//!
//! One znode per record, so ZooKeeper's ~1 MB node limit (`jute.maxbuffer`) bounds a record,
//! never the cluster. Changes are written in order by one writer task, as many as are queued
//! in one multi-op (up to [`MAX_OPS`] operations and [`MAX_BATCH_BYTES`]), and every multi-op
//! starts with a check that the leader's own contender znode still exists: a master whose
//! session ended or whose contender was removed cannot write, whatever it still believes.
//! A failed write ends the leader's term (the master steps down and a leader recovers from
//! what is durable).
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use zookeeper_client::{
    Acls, CheckWriteError, Client, CreateMode, Error as ZkError, MultiReadResult,
};

use super::{
    AgentRecord, Change, Durable, FrameworkRecord, Registry, RegistryStore, RoleRecord, StoreError,
};

/// The registry's znode under the masters' path (not a group member: no `_<digits>` suffix).
pub const REGISTRY_NODE: &str = "orca-registry";
/// Operations in one multi-op at most.
pub const MAX_OPS: usize = 1000;
/// Bytes of record data in one multi-op at most (ZooKeeper refuses requests over
/// `jute.maxbuffer`, 1 MB by default).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// One record at most (what fits one znode with room for the request around it).
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;
/// Records read per multi-read while loading.
const READ_BATCH: usize = 500;

const AGENTS: &str = "agents";
const FRAMEWORKS: &str = "frameworks";
const TORN_DOWN: &str = "torn-down";
const ROLES: &str = "roles";
/// One znode holding the whole maintenance state.
const MAINTENANCE: &str = "maintenance";

/// A role as a znode name: hierarchical roles (`eng/web`) hold `/`, which a name cannot.
fn role_node(role: &str) -> String {
    role.replace('%', "%25").replace('/', "%2F")
}

fn role_of_node(node: &str) -> String {
    node.replace("%2F", "/").replace("%25", "%")
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Writes the registry to ZooKeeper for the leader whose contender znode is `contender`.
#[derive(Debug)]
pub struct ZkStore {
    queue: mpsc::UnboundedSender<(Change, Reply)>,
    /// What is durable, as the writer last confirmed it.
    durable: Arc<Mutex<Registry>>,
}

fn zk_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Zk(format!("{what}: {e}"))
}

impl ZkStore {
    /// Reads the registry under `<path>/orca-registry` (creating it on first use) and
    /// starts the writer. A record that does not parse is an error naming its znode: a
    /// leader never starts on a partial registry. `failed` hears the first failed write.
    pub async fn open(
        client: Client,
        path: &str,
        contender: String,
        acls: Acls<'static>,
        failed: mpsc::UnboundedSender<StoreError>,
    ) -> Result<(Self, Registry), StoreError> {
        let root = format!("{path}/{REGISTRY_NODE}");
        let options = CreateMode::Persistent.with_acls(acls);
        for dir in [AGENTS, FRAMEWORKS, TORN_DOWN, ROLES] {
            client
                .mkdir(&format!("{root}/{dir}"), &options)
                .await
                .map_err(|e| zk_error(&format!("creating {root}/{dir}"), e))?;
        }
        match client
            .create(&format!("{root}/{MAINTENANCE}"), b"{}", &options)
            .await
        {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(zk_error(&format!("creating {root}/{MAINTENANCE}"), e)),
        }
        let registry = load(&client, &root).await?;
        let durable = Arc::new(Mutex::new(registry.clone()));
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_changes(
            Writer {
                client,
                root,
                contender,
                acls,
                durable: durable.clone(),
                failed,
            },
            rx,
        ));
        Ok((ZkStore { queue, durable }, registry))
    }
}

impl RegistryStore for ZkStore {
    fn load(&self) -> Result<Registry, StoreError> {
        Ok(self
            .durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn apply(&self, change: &Change) -> Durable {
        if let Some((what, size)) = record_size(change).filter(|(_, s)| *s > MAX_RECORD_BYTES) {
            return Durable::ready(Err(StoreError::TooLarge {
                what,
                size,
                limit: MAX_RECORD_BYTES,
            }));
        }
        let (tx, rx) = oneshot::channel();
        if self.queue.send((change.clone(), tx)).is_err() {
            return Durable::ready(Err(StoreError::Fenced));
        }
        Durable::pending(rx)
    }
}

fn record_size(change: &Change) -> Option<(String, usize)> {
    match change {
        Change::AgentAdmitted { id, record } => Some((
            format!("agent {id}"),
            serde_json::to_vec(record).map_or(0, |v| v.len()),
        )),
        Change::FrameworkAdded { id, record } => Some((
            format!("framework {id}"),
            serde_json::to_vec(record).map_or(0, |v| v.len()),
        )),
        Change::MaintenanceUpdated { record } => Some((
            "the maintenance schedule".to_owned(),
            serde_json::to_vec(record).map_or(0, |v| v.len()),
        )),
        _ => None,
    }
}

async fn load(client: &Client, root: &str) -> Result<Registry, StoreError> {
    let mut registry = Registry::default();
    for (id, data) in read_dir(client, &format!("{root}/{AGENTS}")).await? {
        let record: AgentRecord = parse(root, AGENTS, &id, &data)?;
        registry.agents.insert(id, record);
    }
    for (id, data) in read_dir(client, &format!("{root}/{FRAMEWORKS}")).await? {
        let record: FrameworkRecord = parse(root, FRAMEWORKS, &id, &data)?;
        registry.frameworks.insert(id, record);
    }
    for (node, data) in read_dir(client, &format!("{root}/{ROLES}")).await? {
        let record: RoleRecord = parse(root, ROLES, &node, &data)?;
        registry.roles.insert(role_of_node(&node), record);
    }
    let mut torn_down = client
        .list_children(&format!("{root}/{TORN_DOWN}"))
        .await
        .map_err(|e| zk_error(&format!("listing {root}/{TORN_DOWN}"), e))?;
    torn_down.sort();
    registry.torn_down = torn_down;
    let node = format!("{root}/{MAINTENANCE}");
    match client.get_data(&node).await {
        Ok((data, _)) => {
            registry.maintenance =
                serde_json::from_slice(&data).map_err(|e| StoreError::CorruptZnode {
                    znode: node.clone(),
                    why: e.to_string(),
                })?;
        }
        Err(ZkError::NoNode) => {}
        Err(e) => return Err(zk_error(&format!("reading {node}"), e)),
    }
    Ok(registry)
}

fn parse<T: serde::de::DeserializeOwned>(
    root: &str,
    dir: &str,
    id: &str,
    data: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(data).map_err(|e| StoreError::CorruptZnode {
        znode: format!("{root}/{dir}/{id}"),
        why: e.to_string(),
    })
}

/// Every child of `dir` with its data, read in multi-reads.
async fn read_dir(client: &Client, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let children = client
        .list_children(dir)
        .await
        .map_err(|e| zk_error(&format!("listing {dir}"), e))?;
    let mut out = Vec::with_capacity(children.len());
    for chunk in children.chunks(READ_BATCH) {
        let mut reader = client.new_multi_reader();
        for child in chunk {
            reader
                .add_get_data(&format!("{dir}/{child}"))
                .map_err(|e| zk_error(&format!("reading {dir}/{child}"), e))?;
        }
        let results = reader
            .commit()
            .await
            .map_err(|e| zk_error(&format!("reading {dir}"), e))?;
        for (child, result) in chunk.iter().zip(results) {
            match result {
                MultiReadResult::Data { data, .. } => out.push((child.clone(), data)),
                // Removed since the listing: only the leader writes here, so this is a
                // leader before us finishing; what is left is what counts.
                MultiReadResult::Error {
                    err: ZkError::NoNode,
                } => {}
                MultiReadResult::Error { err } => {
                    return Err(zk_error(&format!("reading {dir}/{child}"), err));
                }
                _ => {
                    return Err(zk_error(
                        &format!("reading {dir}/{child}"),
                        "unexpected answer",
                    ));
                }
            }
        }
    }
    Ok(out)
}

struct Writer {
    client: Client,
    root: String,
    contender: String,
    acls: Acls<'static>,
    durable: Arc<Mutex<Registry>>,
    failed: mpsc::UnboundedSender<StoreError>,
}

/// Writes changes in the order they came, as many per multi-op as are queued.
async fn write_changes(writer: Writer, mut queue: mpsc::UnboundedReceiver<(Change, Reply)>) {
    let mut carried: Option<(Change, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(c) => c,
            None => match queue.recv().await {
                Some(c) => c,
                None => return,
            },
        };
        let mut durable = writer
            .durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut multi = match writer.client.new_check_writer(&writer.contender, None) {
            Ok(m) => m,
            Err(e) => {
                let _ = first.1.send(Err(zk_error("starting a write", e)));
                continue;
            }
        };
        let mut batch: Vec<Reply> = Vec::new();
        let (mut ops, mut bytes) = (0, 0);
        let mut next = Some(first);
        while let Some((change, reply)) = next.take() {
            let planned = plan(&writer, &durable, &change);
            let size: usize = planned.iter().map(|op| op.data.len()).sum();
            if !batch.is_empty()
                && (ops + planned.len() > MAX_OPS || bytes + size > MAX_BATCH_BYTES)
            {
                carried = Some((change, reply));
                break;
            }
            let options = CreateMode::Persistent.with_acls(writer.acls);
            let mut added = Ok(());
            for op in &planned {
                added = added.and_then(|()| match op.kind {
                    OpKind::Create => multi.add_create(&op.path, &op.data, &options),
                    OpKind::Set => multi.add_set_data(&op.path, &op.data, None),
                    OpKind::Delete => multi.add_delete(&op.path, None),
                });
            }
            if let Err(e) = added {
                let _ = reply.send(Err(zk_error("preparing a write", e)));
            } else {
                ops += planned.len();
                bytes += size;
                durable.apply(&change);
                batch.push(reply);
            }
            next = queue.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        let result = match multi.commit().await {
            Ok(_) => Ok(()),
            Err(CheckWriteError::CheckFailed { .. }) => Err(StoreError::Fenced),
            Err(CheckWriteError::RequestFailed {
                source: ZkError::SessionExpired | ZkError::ClientClosed,
            }) => Err(StoreError::Fenced),
            Err(e) => Err(zk_error("writing the registry", e)),
        };
        match result {
            Ok(()) => {
                *writer.durable.lock().unwrap_or_else(|p| p.into_inner()) = durable;
                for reply in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(%e, "a registry write failed; this master's term ends");
                let _ = writer.failed.send(match &e {
                    StoreError::Fenced => StoreError::Fenced,
                    other => StoreError::Zk(other.to_string()),
                });
                for reply in batch {
                    let _ = reply.send(Err(match &e {
                        StoreError::Fenced => StoreError::Fenced,
                        other => StoreError::Zk(other.to_string()),
                    }));
                }
                // Nothing after a failed write may land: everything queued fails too.
                queue.close();
                if let Some((_, reply)) = carried.take() {
                    let _ = reply.send(Err(StoreError::Fenced));
                }
                while let Some((_, reply)) = queue.recv().await {
                    let _ = reply.send(Err(StoreError::Fenced));
                }
                return;
            }
        }
    }
}

enum OpKind {
    Create,
    Set,
    Delete,
}

struct Op {
    kind: OpKind,
    path: String,
    data: Vec<u8>,
}

/// The znode operations that make `change` durable, given what is durable (or planned
/// earlier in the same multi-op).
fn plan(writer: &Writer, durable: &Registry, change: &Change) -> Vec<Op> {
    let root = &writer.root;
    match change {
        Change::AgentAdmitted { id, record } => vec![Op {
            kind: if durable.agents.contains_key(id) {
                OpKind::Set
            } else {
                OpKind::Create
            },
            path: format!("{root}/{AGENTS}/{id}"),
            data: to_json(record),
        }],
        Change::AgentRemoved { id } if durable.agents.contains_key(id) => vec![Op {
            kind: OpKind::Delete,
            path: format!("{root}/{AGENTS}/{id}"),
            data: Vec::new(),
        }],
        Change::AgentRemoved { .. } => Vec::new(),
        Change::FrameworkAdded { id, record } => vec![Op {
            kind: if durable.frameworks.contains_key(id) {
                OpKind::Set
            } else {
                OpKind::Create
            },
            path: format!("{root}/{FRAMEWORKS}/{id}"),
            data: to_json(record),
        }],
        Change::RoleUpdated { role, record } => {
            let path = format!("{root}/{ROLES}/{}", role_node(role));
            let known = durable.roles.contains_key(role);
            if *record == RoleRecord::default() {
                return if known {
                    vec![Op {
                        kind: OpKind::Delete,
                        path,
                        data: Vec::new(),
                    }]
                } else {
                    Vec::new()
                };
            }
            vec![Op {
                kind: if known { OpKind::Set } else { OpKind::Create },
                path,
                data: to_json(record),
            }]
        }
        Change::MaintenanceUpdated { record } => vec![Op {
            kind: OpKind::Set,
            path: format!("{root}/{MAINTENANCE}"),
            data: to_json(record),
        }],
        Change::FrameworkTornDown { id } => {
            let mut ops = Vec::new();
            if durable.frameworks.contains_key(id) {
                ops.push(Op {
                    kind: OpKind::Delete,
                    path: format!("{root}/{FRAMEWORKS}/{id}"),
                    data: Vec::new(),
                });
            }
            if !durable.torn_down.contains(id) {
                ops.push(Op {
                    kind: OpKind::Create,
                    path: format!("{root}/{TORN_DOWN}/{id}"),
                    data: Vec::new(),
                });
            }
            ops
        }
    }
}

fn to_json<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("registry records serialize")
}
