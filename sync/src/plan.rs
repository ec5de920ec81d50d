//! Decides what to do about one path from A's copy, B's copy and the content both sides last
//! agreed on (the *base*): a three-way merge, so a change on either side flows to the other,
//! a deletion is told apart from a creation, and a change on both sides is a conflict.
use crate::{
    config::{ConflictStrategy, EphemeralPolicy},
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

    let ha = a.map(Znode::content_hash);
    let hb = b.map(Znode::content_hash);
    if ha == hb {
        return (Decision::Agreed(ha), false);
    }
    let from = if inputs.never_synced {
        Side::A
    } else if ha == base {
        // Only B moved.
        Side::B
    } else if hb == base {
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
    let conflict = !inputs.never_synced && ha != base && hb != base;
    (propagate(from, a, b), conflict)
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
    match mirror {
        Some(m) if m.content_hash() == owner.content_hash() => {
            Decision::Agreed(Some(owner.content_hash()))
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
        // mirror, not a second original: agreed, not a conflict.
        let mut earlier = e.clone();
        earlier.meta.ephemeral_owner = 300;
        assert_eq!(
            decide(
                inputs(Some(&e), Some(&earlier), Some(&e)),
                mirror_policy,
                LWW
            ),
            Decision::Agreed(Some(e.content_hash()))
        );
    }
}
