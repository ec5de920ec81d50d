//! Decides what to do about one path from A's copy, B's copy and the content both sides last
//! agreed on (the *base*): a three-way merge, so a change on either side flows to the other,
//! a deletion is told apart from a creation, and a change on both sides is a conflict.
use crate::{
    config::{ConflictStrategy, EphemeralPolicy, HiddenAclPolicy},
    znode::{ContentHash, Znode},
};

/// One of the two ensembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// What to do about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Both sides hold the same content (or neither has the node): record it as the base.
    Agreed(Option<ContentHash>),
    /// Make `to` hold `node` (create or update).
    Copy { to: Side, node: Znode },
    /// Delete the node on `on`.
    Delete { on: Side },
    /// Changed on both sides since they last agreed, and the strategy does not settle it.
    Conflict,
    /// Not replicated (an ephemeral under the skip policy).
    Ignore,
}

/// Everything the decision for one path looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub a: Option<&'a Znode>,
    pub b: Option<&'a Znode>,
    /// The content both sides last agreed on; `None` when they agreed the node did not exist,
    /// or never compared it.
    pub base: Option<ContentHash>,
    /// True when there is no record of the two ever agreeing on this path (the first copy).
    pub never_synced: bool,
    /// The engine's own session on A and on B (owner of mirrored ephemerals).
    pub engine_session_a: i64,
    pub engine_session_b: i64,
    /// Sessions of this engine's earlier runs (kept in its state directory): their
    /// ephemerals are mirrors too, until the server expires them.
    pub earlier_sessions: &'a [i64],
    /// What is done where a side's ACL was read with hidden digests: under `keep-target`
    /// such a path is compared by data alone ([`Znode::data_hash`]), the base included.
    pub hidden_acls: HiddenAclPolicy,
}

impl Inputs<'_> {
    /// Whether this path is compared by data alone: a side's ACL cannot be read exactly and
    /// the policy copies such nodes keeping the target's ACL.
    pub fn by_data(&self) -> bool {
        self.hidden_acls == HiddenAclPolicy::KeepTarget
            && [self.a, self.b]
                .into_iter()
                .flatten()
                .any(Znode::acl_hidden)
    }

    /// The hash a copy is compared (and recorded as the base) by.
    pub fn hash(&self, node: &Znode) -> ContentHash {
        if self.by_data() {
            node.data_hash()
        } else {
            node.content_hash()
        }
    }
}

/// Decides one path. When the two copies differ and both changed since the base (or there
/// never was one), `strategy` picks a winner; `Manual` yields `Conflict`. The first copy
/// (`never_synced`) always takes A's side: that is what bootstrap means.
pub fn decide(
    inputs: Inputs<'_>,
    ephemerals: EphemeralPolicy,
    strategy: ConflictStrategy,
) -> Decision {
    judge(inputs, ephemerals, strategy).0
}

/// [`decide`], and whether the path is a conflict (changed on both sides since they agreed),
/// whether or not the strategy settled it.
pub fn judge(
    inputs: Inputs<'_>,
    ephemerals: EphemeralPolicy,
    strategy: ConflictStrategy,
) -> (Decision, bool) {
    let Inputs { a, b, base, .. } = inputs;
    let ours =
        |owner: i64, engine: i64| owner == engine || inputs.earlier_sessions.contains(&owner);
    let mirrored = |node: Option<&Znode>, engine: i64| {
        node.is_some_and(|n| n.ephemeral && ours(n.meta.ephemeral_owner, engine))
    };
    let original = |node: Option<&Znode>, engine: i64| {
        node.is_some_and(|n| n.ephemeral && !ours(n.meta.ephemeral_owner, engine))
    };
    let (a_mirror, b_mirror) = (
        mirrored(a, inputs.engine_session_a),
        mirrored(b, inputs.engine_session_b),
    );
    let (a_original, b_original) = (
        original(a, inputs.engine_session_a),
        original(b, inputs.engine_session_b),
    );
    if a_original || b_original || a_mirror || b_mirror {
        let decision = decide_ephemeral(inputs, ephemerals, (a_original, b_original));
        let conflict = decision == Decision::Conflict;
        return (decision, conflict);
    }

    let ha = a.map(|n| inputs.hash(n));
    let hb = b.map(|n| inputs.hash(n));
    if ha == hb {
        return (Decision::Agreed(ha), false);
    }
    // A side moved when its copy is not the base. Where a side's ACL was hidden when the
    // base was recorded (by data) and is exact now (ADMIN given), or the other way round,
    // its data hash or its full hash is the base: unmoved either way.
    let moved = |node: Option<&Znode>, hash: Option<ContentHash>| {
        hash != base
            && (inputs.hidden_acls != HiddenAclPolicy::KeepTarget
                || node.map(Znode::data_hash) != base && node.map(Znode::content_hash) != base)
    };
    let (a_moved, b_moved) = (moved(a, ha), moved(b, hb));
    let from = if inputs.never_synced {
        Side::A
    } else if !a_moved {
        // Only B moved; or neither did and only what could not be compared before differs
        // (an ACL readable exactly since): A's copy, the exact one, is the one kept.
        if b_moved { Side::B } else { Side::A }
    } else if !b_moved {
        Side::A
    } else {
        match strategy {
            ConflictStrategy::SourceWins => Side::A,
            ConflictStrategy::Manual => return (Decision::Conflict, true),
            ConflictStrategy::LastWriteWins => match (a, b) {
                (Some(x), Some(y)) => {
                    if y.meta.mtime > x.meta.mtime {
                        Side::B
                    } else {
                        Side::A
                    }
                }
                // A delete against an update: keep the data.
                (Some(_), None) => Side::A,
                (None, Some(_)) => Side::B,
                (None, None) => return (Decision::Agreed(None), false),
            },
        }
    };
    let conflict = !inputs.never_synced && a_moved && b_moved;
    (propagate(from, a, b), conflict)
}

/// How a copy's ACL is written where a side's ACL was read with hidden digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclWrite {
    /// Neither side's ACL is hidden: written exactly as the source has it.
    Exact,
    /// The target's copy keeps the ACL it has (only the data is written).
    KeptTarget,
    /// Created on the target with `acl-fallback`.
    Fallback,
}

/// What a copy of `node` onto a side holding `target` writes: an ACL read with hidden digests
/// is never written, nor is one the sync could not read on the target replaced. `None`:
/// refused (the policy is `refuse`, or `keep-target` has no copy to keep the ACL of and no
/// fallback).
pub fn written_copy(
    policy: HiddenAclPolicy,
    fallback: &[crate::znode::AclEntry],
    mut node: Znode,
    target: Option<&Znode>,
) -> Option<(Znode, AclWrite)> {
    if !node.acl_hidden() && !target.is_some_and(Znode::acl_hidden) {
        return Some((node, AclWrite::Exact));
    }
    match (policy, target) {
        (HiddenAclPolicy::Refuse, _) => None,
        (HiddenAclPolicy::KeepTarget, Some(kept)) => {
            node.acl = kept.acl.clone();
            Some((node, AclWrite::KeptTarget))
        }
        (HiddenAclPolicy::KeepTarget, None) if !fallback.is_empty() => {
            node.acl = fallback.to_vec();
            Some((node, AclWrite::Fallback))
        }
        (HiddenAclPolicy::KeepTarget, None) => None,
    }
}

fn propagate(from: Side, a: Option<&Znode>, b: Option<&Znode>) -> Decision {
    let source = if from == Side::A { a } else { b };
    match source {
        Some(node) => Decision::Copy {
            to: from.other(),
            node: node.clone(),
        },
        None => Decision::Delete { on: from.other() },
    }
}

/// Ephemeral nodes flow one way only, from the side whose client owns them to the mirror
/// the engine owns on the other side; a missing mirror is re-created, never taken as a delete.
fn decide_ephemeral(
    inputs: Inputs<'_>,
    policy: EphemeralPolicy,
    (a_original, b_original): (bool, bool),
) -> Decision {
    if policy == EphemeralPolicy::Skip {
        return Decision::Ignore;
    }
    let (owner, mirror) = match (a_original, b_original) {
        (true, false) => (inputs.a, inputs.b),
        (false, true) => (inputs.b, inputs.a),
        // Both sides have their own client's ephemeral here: two live owners, nothing to copy.
        (true, true) => return Decision::Conflict,
        // Only a mirror is left: its original is gone.
        (false, false) => {
            return if inputs.a.is_some_and(|n| n.ephemeral) {
                Decision::Delete { on: Side::A }
            } else {
                Decision::Delete { on: Side::B }
            };
        }
    };
    let to = if a_original { Side::B } else { Side::A };
    let owner = owner.expect("an original exists on the owner side");
    let engine = match to {
        Side::A => inputs.engine_session_a,
        Side::B => inputs.engine_session_b,
    };
    match mirror {
        // A mirror an earlier run of the engine owns vanishes when that session expires:
        // this run takes it over first (replaced in one transaction, never missing).
        Some(m) if m.ephemeral && m.meta.ephemeral_owner != engine => Decision::Copy {
            to,
            node: owner.clone(),
        },
        Some(m) if inputs.hash(m) == inputs.hash(owner) => {
            Decision::Agreed(Some(inputs.hash(owner)))
        }
        Some(m) if !m.ephemeral => Decision::Conflict,
        _ => Decision::Copy {
            to,
            node: owner.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::znode::test_node as node;

    fn inputs<'a>(a: Option<&'a Znode>, b: Option<&'a Znode>, base: Option<&Znode>) -> Inputs<'a> {
        Inputs {
            a,
            b,
            base: base.map(Znode::content_hash),
            never_synced: false,
            engine_session_a: 100,
            engine_session_b: 200,
            earlier_sessions: &[300],
            hidden_acls: HiddenAclPolicy::Refuse,
        }
    }

    const LWW: ConflictStrategy = ConflictStrategy::LastWriteWins;
    const SKIP: EphemeralPolicy = EphemeralPolicy::Skip;

    #[test]
    fn a_change_on_one_side_flows_to_the_other() {
        let old = node("1", 1);
        let new = node("2", 2);
        let d = decide(inputs(Some(&old), Some(&new), Some(&old)), SKIP, LWW);
        assert_eq!(
            d,
            Decision::Copy {
                to: Side::A,
                node: new.clone()
            }
        );
        let d = decide(inputs(Some(&new), Some(&old), Some(&old)), SKIP, LWW);
        assert_eq!(
            d,
            Decision::Copy {
                to: Side::B,
                node: new
            }
        );
    }

    #[test]
    fn a_delete_is_told_apart_from_a_create() {
        let n = node("1", 1);
        // Agreed it existed, now gone from B: delete on A.
        assert_eq!(
            decide(inputs(Some(&n), None, Some(&n)), SKIP, LWW),
            Decision::Delete { on: Side::A }
        );
        // Agreed it did not exist, now created on A: copy to B.
        assert_eq!(
            decide(inputs(Some(&n), None, None), SKIP, LWW),
            Decision::Copy {
                to: Side::B,
                node: n.clone()
            }
        );
    }

    #[test]
    fn both_sides_changed_is_settled_by_the_strategy() {
        let base = node("0", 0);
        let a = node("a", 5);
        let b = node("b", 9);
        let i = inputs(Some(&a), Some(&b), Some(&base));
        assert_eq!(
            decide(i, SKIP, LWW),
            Decision::Copy {
                to: Side::A,
                node: b.clone()
            }
        );
        assert_eq!(
            decide(i, SKIP, ConflictStrategy::SourceWins),
            Decision::Copy {
                to: Side::B,
                node: a.clone()
            }
        );
        assert_eq!(
            decide(i, SKIP, ConflictStrategy::Manual),
            Decision::Conflict
        );
        // Delete on A against an update on B: the update survives.
        let i = inputs(None, Some(&b), Some(&base));
        assert_eq!(
            decide(i, SKIP, LWW),
            Decision::Copy {
                to: Side::A,
                node: b
            }
        );
    }

    #[test]
    fn first_copy_takes_a_side() {
        let a = node("a", 1);
        let b = node("b", 9);
        let mut i = inputs(Some(&a), Some(&b), None);
        i.never_synced = true;
        assert_eq!(
            decide(i, SKIP, LWW),
            Decision::Copy {
                to: Side::B,
                node: a
            }
        );
    }

    /// `n` as read without ADMIN: bob's digest hidden.
    fn hidden(n: Znode) -> Znode {
        exact(n, "bob:x")
    }

    /// `n` with one digest entry giving `id` every permission.
    fn exact(mut n: Znode, id: &str) -> Znode {
        n.acl = vec![crate::znode::AclEntry {
            perms: 31,
            scheme: "digest".into(),
            id: id.into(),
        }];
        n
    }

    #[test]
    fn keep_target_compares_a_hidden_acl_by_data_both_ways() {
        let keep = |mut i: Inputs<'_>| {
            i.hidden_acls = HiddenAclPolicy::KeepTarget;
            decide(i, SKIP, LWW)
        };
        let a = hidden(node("1", 1));
        let b = exact(node("1", 1), "bob:kept=");
        // Equal data: agreed, by data, under keep-target; different under refuse.
        assert_eq!(
            keep(inputs(Some(&a), Some(&b), None)),
            Decision::Agreed(Some(a.data_hash()))
        );
        assert_ne!(
            decide(inputs(Some(&a), Some(&b), None), SKIP, LWW),
            Decision::Agreed(Some(a.data_hash()))
        );
        let base = Some(a.data_hash());
        let with_base = |x: Option<&Znode>, y: Option<&Znode>| {
            let mut i = inputs(x, y, None);
            i.base = base;
            keep(i)
        };
        // A's data changes: copied to B (B's ACL is kept when it is written).
        let a2 = hidden(node("2", 2));
        assert_eq!(
            with_base(Some(&a2), Some(&b)),
            Decision::Copy {
                to: Side::B,
                node: a2.clone()
            }
        );
        // B's data changes: copied to A.
        let b2 = exact(node("3", 3), "bob:kept=");
        assert_eq!(
            with_base(Some(&a), Some(&b2)),
            Decision::Copy {
                to: Side::A,
                node: b2
            }
        );
        // Deleted on B: deleted on A, not taken for a conflict.
        assert_eq!(with_base(Some(&a), None), Decision::Delete { on: Side::A });
        // ADMIN given on A since: its exact ACL now differs from B's kept one, neither
        // side's data moved; A's exact copy is the one kept.
        let a_exact = exact(node("1", 1), "bob:real=");
        assert_eq!(
            with_base(Some(&a_exact), Some(&b)),
            Decision::Copy {
                to: Side::B,
                node: a_exact
            }
        );
    }

    #[test]
    fn a_hidden_acl_is_never_written() {
        let a = hidden(node("1", 1));
        let b = exact(node("0", 0), "bob:kept=");
        let fallback = [crate::znode::AclEntry {
            perms: 1,
            scheme: "world".into(),
            id: "anyone".into(),
        }];
        assert_eq!(
            written_copy(HiddenAclPolicy::Refuse, &fallback, a.clone(), Some(&b)),
            None
        );
        let (written, how) =
            written_copy(HiddenAclPolicy::KeepTarget, &fallback, a.clone(), Some(&b)).unwrap();
        assert_eq!(
            (written.data, written.acl, how),
            (a.data.clone(), b.acl.clone(), AclWrite::KeptTarget)
        );
        let (written, how) =
            written_copy(HiddenAclPolicy::KeepTarget, &fallback, a.clone(), None).unwrap();
        assert_eq!((written.acl, how), (fallback.to_vec(), AclWrite::Fallback));
        assert_eq!(
            written_copy(HiddenAclPolicy::KeepTarget, &[], a.clone(), None),
            None
        );
        // A target whose ACL the sync cannot read keeps it (it could not be set anyway).
        let (written, how) =
            written_copy(HiddenAclPolicy::KeepTarget, &[], b.clone(), Some(&a)).unwrap();
        assert_eq!((written.acl, how), (a.acl.clone(), AclWrite::KeptTarget));
        assert_eq!(
            written_copy(HiddenAclPolicy::Refuse, &[], b.clone(), Some(&a)),
            None
        );
        // Nothing hidden: exact.
        assert_eq!(
            written_copy(HiddenAclPolicy::Refuse, &[], b.clone(), None),
            Some((b, AclWrite::Exact))
        );
    }

    #[test]
    fn ephemerals_are_skipped_or_mirrored_one_way() {
        let mut e = node("e", 1);
        e.ephemeral = true;
        e.meta.ephemeral_owner = 7;
        assert_eq!(
            decide(inputs(Some(&e), None, None), SKIP, LWW),
            Decision::Ignore
        );
        let mirror_policy = EphemeralPolicy::Mirror;
        assert_eq!(
            decide(inputs(Some(&e), None, Some(&e)), mirror_policy, LWW),
            Decision::Copy {
                to: Side::B,
                node: e.clone()
            }
        );
        // The original is gone; the engine's mirror on B goes too (never copied back).
        let mut mirror = e.clone();
        mirror.meta.ephemeral_owner = 200;
        assert_eq!(
            decide(inputs(None, Some(&mirror), Some(&e)), mirror_policy, LWW),
            Decision::Delete { on: Side::B }
        );
        // A mirror an earlier run of the engine left (its session not yet expired) is a
        // mirror, not a second original: not a conflict; this run takes it over before the
        // earlier session expires and takes it away.
        let mut earlier = e.clone();
        earlier.meta.ephemeral_owner = 300;
        assert_eq!(
            decide(
                inputs(Some(&e), Some(&earlier), Some(&e)),
                mirror_policy,
                LWW
            ),
            Decision::Copy {
                to: Side::B,
                node: e.clone()
            }
        );
        // This run's own mirror, equal: agreed.
        assert_eq!(
            decide(
                inputs(Some(&e), Some(&mirror), Some(&e)),
                mirror_policy,
                LWW
            ),
            Decision::Agreed(Some(e.content_hash()))
        );
    }
}
