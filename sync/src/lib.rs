//! Orca's ZooKeeper sync engine: keeps two ensembles identical under a root while both stay
//! writable, and proves it with tree digests.
//!
//! - [`tree`] reads subtrees and changed paths (data, ACLs, ephemeral owner) by multi-read,
//!   ACLs from a cache keyed by each node's ACL version.
//! - [`digest`] hashes a tree per subtree (server-assigned `Stat` fields excluded) and names the
//!   paths where two trees differ.
//! - [`plan`] decides, from both sides and the last state both agreed on, what to copy which
//!   way, and what is a conflict.
//! - [`apply`] writes a plan to an ensemble in multi-op batches that fit `jute.maxbuffer`.
//! - [`base`] keeps that last agreed state durable across restarts.
//! - [`http`] serves its REST API, metrics and health.
//! - [`engine`] runs it: initial bootstrap, then live replication from persistent recursive
//!   watches both ways, with a full re-scan after every reconnect and continuous validation
//!   that reports and repairs what replication missed.
pub mod apply;
pub mod base;
pub mod config;
pub mod digest;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod tree;
pub mod znode;

pub use config::{ConflictStrategy, EphemeralPolicy, HiddenAclPolicy, SyncConfig};
pub use engine::SyncEngine;
