//! Hierarchical weighted DRF ordering (Ghodsi et al., NSDI'11; Mesos's hierarchical sorter).
//!
//! Roles form a tree by their `/`-separated names (`eng/web` is a child of `eng`). At every
//! node the children are ordered by their weighted dominant share: the largest fraction of any
//! cluster total that the child's whole subtree holds, divided by the child's weight. Frameworks
//! inside a role are ordered by their own dominant share in that role. When a role holds
//! frameworks and has children too, its own frameworks compete with the children as one group
//! of weight 1, as in Mesos.
//!
//! Orders are kept sorted incrementally: an allocation moves one framework and its ancestors,
//! never re-sorts the whole tree. Only a change of cluster totals (an agent added or removed)
//! recomputes every share.
use std::{cmp::Ordering, collections::HashMap, ops::ControlFlow, sync::Arc};

use crate::resources::{ScalarMap, intern, same_name};

const ROOT: usize = 0;

/// One framework's allocation inside one role.
#[derive(Debug)]
pub(crate) struct Client {
    pub fw: usize,
    /// The allocator's number for this (framework, role) pair.
    pub id: u32,
    pub fw_id: Arc<str>,
    pub alloc: ScalarMap,
    share: f64,
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
    /// Frameworks in this role, ordered by (share, id).
    clients: Vec<Client>,
}

#[derive(Debug)]
pub(crate) struct DrfSorter {
    totals: ScalarMap,
    excluded: Vec<Arc<str>>,
    nodes: Vec<RoleNode>,
    by_name: HashMap<Arc<str>, usize>,
}

impl DrfSorter {
    /// `excluded` names resource kinds that do not count towards shares (e.g. `gpus`, so that
    /// a GPU job's share is not dominated by a resource most frameworks never ask for).
    pub fn new(excluded: Vec<Arc<str>>) -> Self {
        DrfSorter {
            totals: ScalarMap::default(),
            excluded,
            nodes: vec![RoleNode {
                name: "".into(),
                parent: ROOT,
                weight: 1.0,
                children: Vec::new(),
                own: ScalarMap::default(),
                subtree: ScalarMap::default(),
                key: 0.0,
                own_key: 0.0,
                clients: Vec::new(),
            }],
            by_name: HashMap::new(),
        }
    }

    /// The dominant share of `alloc` against the cluster totals.
    pub fn share(&self, alloc: &ScalarMap) -> f64 {
        alloc
            .iter()
            .filter(|(name, _)| !self.excluded.iter().any(|e| same_name(e, name)))
            .filter_map(|(name, amount)| {
                let total = self.totals.get(name)?.0;
                (total > 0).then(|| amount.0 as f64 / total as f64)
            })
            .fold(0.0, f64::max)
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

    pub fn client(&self, node: usize, fw: usize) -> Option<&Client> {
        self.nodes[node].clients.iter().find(|c| c.fw == fw)
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
        let name = intern(role);
        let index = self.nodes.len();
        self.nodes.push(RoleNode {
            name: name.clone(),
            parent,
            weight: 1.0,
            children: Vec::new(),
            own: ScalarMap::default(),
            subtree: ScalarMap::default(),
            key: 0.0,
            own_key: 0.0,
            clients: Vec::new(),
        });
        self.by_name.insert(name, index);
        self.place_child(parent, index);
        index
    }

    pub fn set_weight(&mut self, node: usize, weight: f64) {
        self.nodes[node].weight = weight;
        self.rekey(node);
    }

    pub fn add_client(&mut self, node: usize, fw: usize, fw_id: Arc<str>, id: u32) {
        if let Some(existing) = self.nodes[node].clients.iter_mut().find(|c| c.fw == fw) {
            existing.id = id;
            return;
        }
        let client = Client {
            fw,
            id,
            fw_id,
            alloc: ScalarMap::default(),
            share: 0.0,
        };
        let clients = &mut self.nodes[node].clients;
        let at = clients.partition_point(|c| client_order(c, &client) == Ordering::Less);
        clients.insert(at, client);
    }

    /// Removes the framework from the role and takes its allocation out of the role's totals.
    pub fn remove_client(&mut self, node: usize, fw: usize) {
        let Some(pos) = self.nodes[node].clients.iter().position(|c| c.fw == fw) else {
            return;
        };
        let client = self.nodes[node].clients.remove(pos);
        self.charge(node, &client.alloc, false);
    }

    /// Adds (`add`) or removes an allocation for framework `fw` in role `node`.
    pub fn allocated(&mut self, node: usize, fw: usize, amount: &ScalarMap, add: bool) {
        let Some(pos) = self.nodes[node].clients.iter().position(|c| c.fw == fw) else {
            return;
        };
        let mut client = self.nodes[node].clients.remove(pos);
        if add {
            client.alloc.add_all(amount);
        } else {
            client.alloc.subtract_all(amount);
        }
        client.share = self.share(&client.alloc);
        let clients = &mut self.nodes[node].clients;
        let at = clients.partition_point(|c| client_order(c, &client) == Ordering::Less);
        clients.insert(at, client);
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
        apply(&mut self.nodes[node].own);
        self.nodes[node].own_key = self.share(&self.nodes[node].own);
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
        self.totals = totals;
        for i in 0..self.nodes.len() {
            let mut clients = std::mem::take(&mut self.nodes[i].clients);
            for c in &mut clients {
                c.share = self.share(&c.alloc);
            }
            clients.sort_by(client_order);
            self.nodes[i].clients = clients;
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

    /// Visits (role, framework) pairs in DRF order, lowest share first, until `visit` breaks.
    pub fn visit<F>(&self, visit: &mut F) -> ControlFlow<()>
    where
        F: FnMut(usize, &Client) -> ControlFlow<()>,
    {
        self.visit_node(ROOT, visit)
    }

    fn visit_node<F>(&self, node: usize, visit: &mut F) -> ControlFlow<()>
    where
        F: FnMut(usize, &Client) -> ControlFlow<()>,
    {
        let here = &self.nodes[node];
        let mut own_done = here.clients.is_empty();
        for &child in &here.children {
            if !own_done && here.own_key <= self.nodes[child].key {
                own_done = true;
                for c in &here.clients {
                    visit(node, c)?;
                }
            }
            self.visit_node(child, visit)?;
        }
        if !own_done {
            for c in &here.clients {
                visit(node, c)?;
            }
        }
        ControlFlow::Continue(())
    }
}

fn client_order(a: &Client, b: &Client) -> Ordering {
    a.share.total_cmp(&b.share).then_with(|| a.fw_id.cmp(&b.fw_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &DrfSorter) -> Vec<String> {
        let mut out = Vec::new();
        let _ = s.visit(&mut |_, c| {
            out.push(c.fw_id.to_string());
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
        s.add_client(eng, 0, "a".into(), 0);
        s.add_client(eng, 1, "b".into(), 1);
        s.add_client(ops, 2, "c".into(), 2);
        s.allocated(eng, 0, &ScalarMap::parse("cpus:2").unwrap(), true);
        // eng subtree holds 20 %, ops 0 %: ops first; inside eng/web, b (0 %) before a (20 %).
        assert_eq!(order(&s), ["c", "b", "a"]);
        s.allocated(ops, 2, &ScalarMap::parse("mem:30").unwrap(), true);
        assert_eq!(order(&s), ["b", "a", "c"]);
        // Weight 2 halves ops' key (30 % / 2 = 15 % < 20 %).
        s.set_weight(ops, 2.0);
        assert_eq!(order(&s), ["c", "b", "a"]);
        s.remove_client(ops, 2);
        assert_eq!(s.subtree_allocation(ops).get("mem").unwrap().0, 0);
    }
}
