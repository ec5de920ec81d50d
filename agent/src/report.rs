//! Turns snapshots of the host into numbered reports: full reports, and deltas that carry only
//! what changed since the previous report.
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash as _, Hasher as _},
};

use orca_proto::topology::v1 as pb;

/// What the agent knows at one instant. Nodes are complete (the builder diffs them);
/// connections are already what the report carries: all of them when `full`, else only those
/// changed since the previous snapshot (the connection table tracks that itself, as
/// rebuilding thousands of unchanged connections every second would cost more than
/// everything else the agent does).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub full: bool,
    pub timestamp_unix_ms: i64,
    /// `None`: the nodes were not collected this time (a connections-only delta).
    pub nodes: Option<Vec<pb::Node>>,
    pub connections: Vec<pb::Connection>,
    /// Connections already encoded as `Report.connections` entries, when the engine was asked
    /// to encode them as it goes ([`ReportConnections`]); they follow the report's own bytes.
    pub encoded_connections: Vec<u8>,
    pub removed_connections: Vec<String>,
    pub stats: pb::AgentStats,
}

/// Where a report's connections go as the engine makes them: kept as messages (for callers
/// that read them), or encoded one at a time into the report's bytes, so that a full report
/// of 10,000 connections never holds 10,000 messages and their strings at once.
#[derive(Debug, Default)]
pub struct ReportConnections {
    pub messages: Vec<pb::Connection>,
    pub encoded: Vec<u8>,
    encode: bool,
}

/// `Report.connections`' field number.
const CONNECTIONS_FIELD: u32 = 8;

impl ReportConnections {
    pub fn new(encode: bool) -> Self {
        Self {
            encode,
            ..Default::default()
        }
    }

    pub fn push(&mut self, connection: pb::Connection) {
        if self.encode {
            prost::encoding::message::encode(CONNECTIONS_FIELD, &connection, &mut self.encoded);
        } else {
            self.messages.push(connection);
        }
    }
}

#[derive(Debug)]
pub struct ReportBuilder {
    agent_id: String,
    hostname: String,
    seq: u64,
    full_every: u64,
    since_full: u64,
    force_full: bool,
    last_nodes: HashMap<String, u64>,
}

fn digest(message: &impl prost::Message) -> u64 {
    let mut hasher = DefaultHasher::new();
    message.encode_to_vec().hash(&mut hasher);
    hasher.finish()
}

impl ReportBuilder {
    /// `full_every`: send a full report after this many deltas (bounds how long a collector
    /// that missed something stays wrong).
    pub fn new(agent_id: String, hostname: String, full_every: u64) -> Self {
        Self {
            agent_id,
            hostname,
            seq: 0,
            full_every: full_every.max(1),
            since_full: 0,
            force_full: true,
            last_nodes: HashMap::new(),
        }
    }

    /// The next report will be full (the collector asked for it).
    pub fn request_full(&mut self) {
        self.force_full = true;
    }

    /// Whether the next report will be full; the snapshot for it must be taken accordingly.
    pub fn next_is_full(&self) -> bool {
        self.force_full || self.since_full >= self.full_every
    }

    pub fn build(&mut self, snapshot: Snapshot) -> pb::Report {
        self.seq += 1;
        let full = snapshot.full;
        self.force_full = false;
        self.since_full = if full { 0 } else { self.since_full + 1 };

        let (nodes, removed_nodes) = match snapshot.nodes {
            Some(all) => {
                let mut nodes_now = HashMap::with_capacity(all.len());
                let mut nodes = Vec::new();
                for node in all {
                    let d = digest(&node);
                    let changed = self.last_nodes.get(&node.id) != Some(&d);
                    nodes_now.insert(node.id.clone(), d);
                    if full || changed {
                        nodes.push(node);
                    }
                }
                let removed_nodes = if full {
                    Vec::new()
                } else {
                    removed(&self.last_nodes, &nodes_now)
                };
                self.last_nodes = nodes_now;
                (nodes, removed_nodes)
            }
            None => (Vec::new(), Vec::new()),
        };
        pb::Report {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            seq: self.seq,
            full,
            timestamp_unix_ms: snapshot.timestamp_unix_ms,
            nodes,
            removed_nodes,
            connections: snapshot.connections,
            removed_connections: snapshot.removed_connections,
            stats: Some(snapshot.stats),
        }
    }
}

fn removed(before: &HashMap<String, u64>, now: &HashMap<String, u64>) -> Vec<String> {
    let mut ids: Vec<String> = before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn encoded_connections_decode_as_the_report_s_own() {
        let connection = |id: &str| pb::Connection {
            id: id.into(),
            local: Some(pb::Endpoint::new("10.0.0.1:5000".parse().unwrap())),
            ..Default::default()
        };
        let mut encoded = ReportConnections::new(true);
        encoded.push(connection("a"));
        encoded.push(connection("b"));
        let report = pb::Report {
            seq: 7,
            connections: vec![connection("first")],
            ..Default::default()
        };
        let mut bytes = report.encode_to_vec();
        bytes.extend_from_slice(&encoded.encoded);
        let decoded = pb::Report::decode(bytes.as_slice()).unwrap();
        let ids: Vec<&str> = decoded.connections.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["first", "a", "b"]);
        assert_eq!(decoded.seq, 7);
    }

    fn node(id: &str, label: &str) -> pb::Node {
        pb::Node {
            id: id.into(),
            kind: pb::NodeKind::Process as i32,
            labels: [("l".to_string(), label.to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_is_full_then_deltas() {
        let mut b = ReportBuilder::new("a".into(), "h".into(), 100);
        assert!(b.next_is_full());
        let r1 = b.build(Snapshot {
            full: b.next_is_full(),
            nodes: Some(vec![node("p1", "x"), node("p2", "x")]),
            ..Default::default()
        });
        assert!(r1.full);
        assert_eq!(r1.seq, 1);
        assert_eq!(r1.nodes.len(), 2);

        assert!(!b.next_is_full());
        let r2 = b.build(Snapshot {
            nodes: Some(vec![node("p1", "y"), node("p3", "x")]),
            ..Default::default()
        });
        assert!(!r2.full);
        assert_eq!(r2.seq, 2);
        let ids: Vec<_> = r2.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["p1", "p3"]);
        assert_eq!(r2.removed_nodes, ["p2"]);

        b.request_full();
        let r3 = b.build(Snapshot {
            full: b.next_is_full(),
            nodes: Some(vec![node("p1", "y")]),
            ..Default::default()
        });
        assert!(r3.full);
        assert!(r3.removed_nodes.is_empty());
        assert_eq!(r3.nodes.len(), 1);
    }

    #[test]
    fn periodic_full() {
        let mut b = ReportBuilder::new("a".into(), "h".into(), 2);
        let fulls: Vec<bool> = (0..6)
            .map(|_| {
                let full = b.next_is_full();
                b.build(Snapshot {
                    full,
                    ..Default::default()
                })
                .full
            })
            .collect();
        assert_eq!(fulls, [true, false, false, true, false, false]);
    }
}
