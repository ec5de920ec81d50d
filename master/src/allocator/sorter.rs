//! Hierarchical weighted DRF ordering (Ghodsi et al., NSDI'11; Mesos's hierarchical sorter).
//!
//! Roles form a tree by their `/`-separated names (`eng/web` is a child of `eng`). At every
//! node the children are ordered by their weighted dominant share: the largest fraction of any
//! cluster total that the child's whole subtree holds, divided by the child's weight. Frameworks
//! inside a role are ordered by their own dominant share in that role, ties by subscription
//! order. When a role holds
//! frameworks and has children too, its own frameworks compete with the children as one group
//! of weight 1, as in Mesos.
//!
//! Orders are kept sorted incrementally: an allocation moves one framework and its ancestors,
//! never re-sorts the whole tree. Only a change of cluster totals (an agent added or removed)
//! recomputes every share. A role's order is a vector of 16-byte [`Ranked`] entries, so
//! moving a framework among 200 others shifts 3 KB, and the allocator's scan reads it without
//! touching the frameworks' allocations.
use std::{cmp::Ordering, collections::HashMap, ops::ControlFlow, sync::Arc};

use crate::resources::{ScalarMap, intern, same_name};

const ROOT: usize = 0;

/// One framework's allocation inside one role.
#[derive(Debug)]
pub(crate) struct Client {
    pub fw: usize,
    pub node: usize,
    pub alloc: ScalarMap,
    share: f64,
}

/// A client's place in its role's order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranked {
    share: f64,
    /// The allocator's number for this (framework, role) pair.
    pub id: u32,
    /// The framework's slot.
    pub fw: u32,
}

impl Ranked {
    fn before(&self, share: f64, id: u32) -> bool {
        self.share.total_cmp(&share).then(self.id.cmp(&id)) == Ordering::Less
    }
}

#[derive(Debug)]
struct RoleNode {
    name: Arc<str>,
    parent: usize,
    weight: f64,
    /// Child roles, ordered by (`key`, name).
    children: Vec<usize>,
    /// Allocation of the frameworks directly in this role.
    own: ScalarMap,
    /// `own` plus every descendant's.
    subtree: ScalarMap,
    /// Weighted dominant share of `subtree`: this node's place among its siblings.
    key: f64,
    /// Dominant share of `own`: the place of this role's own frameworks among its children.
    own_key: f64,
    /// Clients in this role, ordered by (share, id).
    order: Vec<Ranked>,
}

impl RoleNode {
    fn new(name: Arc<str>, parent: usize) -> Self {
        RoleNode {
            name,
            parent,
            weight: 1.0,
            children: Vec::new(),
            own: ScalarMap::default(),
            subtree: ScalarMap::default(),
            key: 0.0,
            own_key: 0.0,
            order: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DrfSorter {
    /// 1 / cluster total for each kind that counts towards shares.
    per_unit: Vec<(Arc<str>, f64)>,
    excluded: Vec<Arc<str>>,
    nodes: Vec<RoleNode>,
    by_name: HashMap<Arc<str>, usize>,
    /// By client id.
    clients: Vec<Option<Client>>,
}

impl DrfSorter {
    /// `excluded` names resource kinds that do not count towards shares (e.g. `gpus`, so that
    /// a GPU job's share is not dominated by a resource most frameworks never ask for).
    pub fn new(excluded: Vec<Arc<str>>) -> Self {
        DrfSorter {
            per_unit: Vec::new(),
            excluded,
            nodes: vec![RoleNode::new("".into(), ROOT)],
            by_name: HashMap::new(),
            clients: Vec::new(),
        }
    }

    /// The dominant share of `alloc` against the cluster totals.
    pub fn share(&self, alloc: &ScalarMap) -> f64 {
        share_of(&self.per_unit, alloc)
    }

    pub fn role_index(&self, role: &str) -> Option<usize> {
        self.by_name.get(role).copied()
    }

    pub fn role_name(&self, node: usize) -> &Arc<str> {
        &self.nodes[node].name
    }

    /// The role's allocation including its descendants (what quotas are charged against).
    pub fn subtree_allocation(&self, node: usize) -> &ScalarMap {
        &self.nodes[node].subtree
    }

    pub fn weight(&self, node: usize) -> f64 {
        self.nodes[node].weight
    }

    /// The role's weighted dominant share.
    pub fn role_share(&self, node: usize) -> f64 {
        self.nodes[node].key
    }

    /// Ancestors of `node` up to (excluding) the root, nearest first, `node` itself included.
    pub fn lineage(&self, mut node: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::from_fn(move || {
            (node != ROOT).then(|| {
                let here = node;
                node = self.nodes[node].parent;
                here
            })
        })
    }

    pub fn client(&self, id: u32) -> Option<&Client> {
        self.clients.get(id as usize)?.as_ref()
    }

    /// Every role name known, parents before children.
    pub fn roles(&self) -> impl Iterator<Item = (usize, &Arc<str>)> {
        self.nodes
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, n)| (i, &n.name))
    }

    pub fn ensure_role(&mut self, role: &str) -> usize {
        if let Some(&i) = self.by_name.get(role) {
            return i;
        }
        let parent = match role.rfind('/') {
            Some(cut) => self.ensure_role(&role[..cut]),
            None => ROOT,
        };
        if parent != ROOT && self.nodes[parent].children.is_empty() {
            // The parent's own allocation was its whole subtree until now.
            self.nodes[parent].own = self.nodes[parent].subtree.clone();
            self.nodes[parent].own_key = self.share(&self.nodes[parent].own);
        }
        let name = intern(role);
        let index = self.nodes.len();
        self.nodes.push(RoleNode::new(name.clone(), parent));
        self.by_name.insert(name, index);
        self.place_child(parent, index);
        index
    }

    pub fn set_weight(&mut self, node: usize, weight: f64) {
        self.nodes[node].weight = weight;
        self.rekey(node);
    }

    /// Enters client `id` (framework `fw` subscribed to role `node`) with nothing allocated.
    pub fn add_client(&mut self, node: usize, fw: usize, id: u32) {
        let slot = id as usize;
        if self.clients.len() <= slot {
            self.clients.resize_with(slot + 1, || None);
        }
        if self.clients[slot].is_some() {
            return;
        }
        self.clients[slot] = Some(Client {
            fw,
            node,
            alloc: ScalarMap::default(),
            share: 0.0,
        });
        let order = &mut self.nodes[node].order;
        let at = order.partition_point(|r| r.before(0.0, id));
        order.insert(
            at,
            Ranked {
                share: 0.0,
                id,
                fw: fw as u32,
            },
        );
    }

    /// Removes the client and takes its allocation out of its role's totals.
    pub fn remove_client(&mut self, id: u32) {
        let Some(client) = self.clients.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        let order = &mut self.nodes[client.node].order;
        let at = order.partition_point(|r| r.before(client.share, id));
        debug_assert_eq!(order[at].id, id);
        order.remove(at);
        self.charge(client.node, &client.alloc, false);
    }

    /// Adds (`add`) or removes an allocation for client `id`.
    pub fn allocated(&mut self, id: u32, amount: &ScalarMap, add: bool) {
        let Some(client) = self.clients.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let (node, old) = (client.node, client.share);
        if add {
            client.alloc.add_all(amount);
        } else {
            client.alloc.subtract_all(amount);
        }
        let share = share_of(&self.per_unit, &client.alloc);
        client.share = share;
        let order = &mut self.nodes[node].order;
        let from = order.partition_point(|r| r.before(old, id));
        debug_assert_eq!(order[from].id, id);
        order[from].share = share;
        // Move the entry to its new place by rotating only the span between.
        if share
            .total_cmp(&old)
            .then(std::cmp::Ordering::Equal)
            .is_ge()
        {
            let to = from + order[from + 1..].partition_point(|r| r.before(share, id));
            order[from..=to].rotate_left(1);
        } else {
            let to = order[..from].partition_point(|r| r.before(share, id));
            order[to..=from].rotate_right(1);
        }
        self.charge(node, amount, add);
    }

    /// Charges the role's own allocation and every ancestor's subtree, and moves each into its
    /// new place among its siblings.
    fn charge(&mut self, node: usize, amount: &ScalarMap, add: bool) {
        let apply = |map: &mut ScalarMap| {
            if add {
                map.add_all(amount)
            } else {
                map.subtract_all(amount)
            }
        };
        // A role without children orders only its own frameworks: its `own` equals its
        // `subtree` and is not kept separately (see `ensure_role`).
        if !self.nodes[node].children.is_empty() {
            apply(&mut self.nodes[node].own);
            self.nodes[node].own_key = self.share(&self.nodes[node].own);
        }
        let mut at = node;
        while at != ROOT {
            apply(&mut self.nodes[at].subtree);
            self.rekey(at);
            at = self.nodes[at].parent;
        }
    }

    fn rekey(&mut self, node: usize) {
        let key = self.share(&self.nodes[node].subtree) / self.nodes[node].weight;
        self.nodes[node].key = key;
        let parent = self.nodes[node].parent;
        let children = &mut self.nodes[parent].children;
        if let Some(pos) = children.iter().position(|&c| c == node) {
            children.remove(pos);
        }
        self.place_child(parent, node);
    }

    fn place_child(&mut self, parent: usize, node: usize) {
        let (key, name) = (self.nodes[node].key, self.nodes[node].name.clone());
        let nodes = &self.nodes;
        let at = nodes[parent].children.partition_point(|&c| {
            nodes[c]
                .key
                .total_cmp(&key)
                .then_with(|| nodes[c].name.cmp(&name))
                == Ordering::Less
        });
        self.nodes[parent].children.insert(at, node);
    }

    /// New cluster totals: every share is recomputed and every order rebuilt.
    pub fn set_totals(&mut self, totals: ScalarMap) {
        self.per_unit = totals
            .entries()
            .filter(|(name, total)| {
                total.0 > 0 && !self.excluded.iter().any(|e| same_name(e, name))
            })
            .map(|(name, total)| (name.clone(), 1.0 / total.0 as f64))
            .collect();
        for client in self.clients.iter_mut().flatten() {
            client.share = share_of(&self.per_unit, &client.alloc);
        }
        for i in 0..self.nodes.len() {
            let mut order = std::mem::take(&mut self.nodes[i].order);
            for r in &mut order {
                r.share = self.clients[r.id as usize]
                    .as_ref()
                    .map_or(0.0, |c| c.share);
            }
            order.sort_by(|a, b| a.share.total_cmp(&b.share).then(a.id.cmp(&b.id)));
            self.nodes[i].order = order;
            self.nodes[i].own_key = self.share(&self.nodes[i].own);
            self.nodes[i].key = self.share(&self.nodes[i].subtree) / self.nodes[i].weight;
        }
        for i in 0..self.nodes.len() {
            let mut children = std::mem::take(&mut self.nodes[i].children);
            let nodes = &self.nodes;
            children.sort_by(|&a, &b| {
                nodes[a]
                    .key
                    .total_cmp(&nodes[b].key)
                    .then_with(|| nodes[a].name.cmp(&nodes[b].name))
            });
            self.nodes[i].children = children;
        }
    }

    /// Whether client `a` comes before client `b` in the order `visit` walks. Lets the
    /// allocator pick the first of a few candidates without walking every framework.
    pub fn precedes(&self, a: u32, b: u32) -> bool {
        let (Some(ca), Some(cb)) = (self.client(a), self.client(b)) else {
            return false;
        };
        if ca.node == cb.node {
            return ca.share.total_cmp(&cb.share).then(a.cmp(&b)) == Ordering::Less;
        }
        // Root-first paths; the first place they part decides.
        let path = |node: usize| {
            let mut p: Vec<usize> = self.lineage(node).collect();
            p.reverse();
            p
        };
        let (pa, pb) = (path(ca.node), path(cb.node));
        let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
        let parent = if common == 0 { ROOT } else { pa[common - 1] };
        // At `parent`, each side is either a child role or the parent's own frameworks; own
        // frameworks go before a child whose key is not lower (as `visit_node` merges them).
        let entry = |p: &[usize]| p.get(common).copied();
        let key = |e: Option<usize>| match e {
            Some(child) => (self.nodes[child].key, 1u8, Some(&self.nodes[child].name)),
            None => (self.nodes[parent].own_key, 0u8, None),
        };
        let (ka, kb) = (key(entry(&pa)), key(entry(&pb)));
        ka.0.total_cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then_with(|| ka.2.cmp(&kb.2))
            == Ordering::Less
    }

    /// Visits (role, framework) pairs in DRF order, lowest share first, until `visit` breaks.
    pub fn visit<F>(&self, visit: &mut F) -> ControlFlow<()>
    where
        F: FnMut(usize, Ranked) -> ControlFlow<()>,
    {
        self.visit_node(ROOT, visit)
    }

    fn visit_node<F>(&self, node: usize, visit: &mut F) -> ControlFlow<()>
    where
        F: FnMut(usize, Ranked) -> ControlFlow<()>,
    {
        let here = &self.nodes[node];
        let mut own_done = here.order.is_empty();
        for &child in &here.children {
            if !own_done && here.own_key <= self.nodes[child].key {
                own_done = true;
                for &r in &here.order {
                    visit(node, r)?;
                }
            }
            self.visit_node(child, visit)?;
        }
        if !own_done {
            for &r in &here.order {
                visit(node, r)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// The dominant share of `alloc`, given 1 / total for each kind that counts.
fn share_of(per_unit: &[(Arc<str>, f64)], alloc: &ScalarMap) -> f64 {
    let mut share = 0.0f64;
    for (name, amount) in alloc.entries() {
        if let Some((_, unit)) = per_unit.iter().find(|(n, _)| same_name(n, name)) {
            share = share.max(amount.0 as f64 * unit);
        }
    }
    share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &DrfSorter) -> Vec<String> {
        let mut out = Vec::new();
        let _ = s.visit(&mut |_, r| {
            out.push(["a", "b", "c"][r.id as usize].to_string());
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn lowest_weighted_share_comes_first_at_every_level() {
        let mut s = DrfSorter::new(Vec::new());
        s.set_totals(ScalarMap::parse("cpus:10;mem:100").unwrap());
        let eng = s.ensure_role("eng/web");
        let ops = s.ensure_role("ops");
        s.add_client(eng, 0, 0);
        s.add_client(eng, 1, 1);
        s.add_client(ops, 2, 2);
        s.allocated(0, &ScalarMap::parse("cpus:2").unwrap(), true);
        // eng subtree holds 20 %, ops 0 %: ops first; inside eng/web, b (0 %) before a (20 %).
        assert_eq!(order(&s), ["c", "b", "a"]);
        s.allocated(2, &ScalarMap::parse("mem:30").unwrap(), true);
        assert_eq!(order(&s), ["b", "a", "c"]);
        // Weight 2 halves ops' key (30 % / 2 = 15 % < 20 %).
        s.set_weight(ops, 2.0);
        assert_eq!(order(&s), ["c", "b", "a"]);
        // `precedes` agrees with the walk for every pair.
        let walked: Vec<u32> = {
            let mut ids = Vec::new();
            let _ = s.visit(&mut |_, r| {
                ids.push(r.id);
                ControlFlow::Continue(())
            });
            ids
        };
        for (i, &a) in walked.iter().enumerate() {
            for &b in &walked[i + 1..] {
                assert!(s.precedes(a, b) && !s.precedes(b, a), "{a} before {b}");
            }
        }
        s.remove_client(2);
        assert_eq!(s.subtree_allocation(ops).get("mem").unwrap().0, 0);
    }
}
