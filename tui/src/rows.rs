//! A tab's rows: which items (scope, filter) in what order (a sort column, fuzzy rank, the
//! process tree, or by name). Built whole when the filter, order or scope changes; otherwise
//! kept current in place from the keys a view's journal says came, went or changed, so a
//! process exiting among 90,000 does not rebuild 90,000 rows.
use std::cmp::Ordering;

use rustc_hash::FxHashMap;

use crate::{
    filter::{Query, Scratch},
    model::{Model, topology::TopoView},
    views::{Item, Scope, Tab, cells, item, items, number},
};

/// What a tab's rows follow: its drill-down scope, its query and its order.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub scope: &'a Scope,
    pub query: &'a Query,
    pub sort: Sort,
}

/// How a tab's rows are ordered: by a column, or (processes only) as the process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    /// `None`: the natural order (the process tree, or by name).
    pub column: Option<usize>,
    pub reverse: bool,
}

/// The rows of a tab: keys in display order (cells are drawn only for visible rows).
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub keys: Vec<String>,
    /// Where each row sits in the process tree (processes in tree order), else empty.
    pub tree: Vec<TreeLink>,
    /// Rows before filtering and scoping.
    pub total: usize,
    /// In tree order, each row's host, pid and parent pid: where a process joining goes.
    procs: Vec<TreeProc>,
    hosts: Hosts,
}

/// A row's place in the process tree: its parent row and whether it is its parent's last
/// child. The indentation is drawn from these only for visible rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLink {
    pub parent: Option<u32>,
    pub last: bool,
}

/// A process as the tree places it; `host` indexes `Rows::hosts` (`NO_HOST`: not a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TreeProc {
    host: u32,
    pid: u32,
    ppid: u32,
}

const NO_HOST: u32 = u32::MAX;

/// Host names as small numbers, in the order first seen.
#[derive(Debug, Default, Clone)]
struct Hosts {
    names: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl Hosts {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }

    fn name(&self, host: u32) -> &str {
        self.names.get(host as usize).map_or("", String::as_str)
    }
}

/// At most this many changed keys are placed in the process tree one by one; more rebuild it.
const TREE_UPDATES: usize = 16;

impl Rows {
    /// The tree indentation of row `index` (`├─`, `└─`, `│ ` …), empty outside tree order.
    pub fn tree_prefix(&self, index: usize) -> String {
        let Some(link) = self.tree.get(index) else {
            return String::new();
        };
        let Some(parent) = link.parent else {
            return String::new();
        };
        // Ancestors below the root, innermost first: each draws a bar if more siblings follow.
        let mut levels = Vec::new();
        let mut at = parent as usize;
        while let Some(up) = self.tree[at].parent {
            levels.push(if self.tree[at].last { "  " } else { "│ " });
            at = up as usize;
        }
        let mut out: String = levels.iter().rev().copied().collect();
        out.push_str(if link.last { "└─" } else { "├─" });
        out
    }

    /// Takes out the rows of `gone` (sorted) outside tree order.
    fn remove_keys(&mut self, gone: &[&str]) {
        self.keys
            .retain(|k| gone.binary_search(&k.as_str()).is_err());
    }

    /// Puts `joining` (sorted by `order`) in place by `order`, in one pass over the rows.
    /// False when a row's item is no longer in the model (the rows must be rebuilt).
    fn merge(&mut self, joining: &[Item<'_>], order: &mut Order<'_>) -> bool {
        let mut missing = false;
        let mut at = Vec::with_capacity(joining.len());
        let mut from = 0;
        for new in joining {
            let offset = self.keys[from..].partition_point(|k| match order.item(k) {
                Some(row) => order.cmp(&row, new) == Ordering::Less,
                None => {
                    missing = true;
                    false
                }
            });
            from += offset;
            at.push(from);
        }
        if missing {
            return false;
        }
        let old = std::mem::take(&mut self.keys);
        self.keys.reserve_exact(old.len() + joining.len());
        let mut old = old.into_iter();
        let mut copied = 0;
        for (new, at) in joining.iter().zip(at) {
            self.keys.extend(old.by_ref().take(at - copied));
            copied = at;
            self.keys.push(new.key().to_owned());
        }
        self.keys.extend(old);
        true
    }

    /// Takes out tree row `row`; false when it has children (they would become roots: the
    /// tree is rebuilt).
    fn remove_tree_row(&mut self, row: usize) -> bool {
        if self
            .tree
            .get(row + 1)
            .is_some_and(|l| l.parent == Some(row as u32))
        {
            return false;
        }
        let link = self.tree[row];
        if link.last
            && let Some(parent) = link.parent
        {
            // The sibling before it, if any, is now the last child.
            for j in (parent as usize + 1..row).rev() {
                if self.tree[j].parent == Some(parent) {
                    self.tree[j].last = true;
                    break;
                }
            }
        }
        self.keys.remove(row);
        self.tree.remove(row);
        self.procs.remove(row);
        for l in &mut self.tree {
            if let Some(p) = &mut l.parent
                && *p as usize > row
            {
                *p -= 1;
            }
        }
        true
    }

    /// Places a process in the tree: under its parent among siblings by pid, or among the
    /// roots by host and pid. False when rows already there would become its children.
    fn insert_tree_row(&mut self, key: &str, host: &str, pid: u32, ppid: u32) -> bool {
        let host = self.hosts.intern(host);
        let mut parent = None;
        for (i, p) in self.procs.iter().enumerate() {
            if p.host == host {
                if p.ppid == pid {
                    return false;
                }
                if p.pid == ppid && ppid != pid {
                    parent = Some(i);
                }
            }
        }
        let (at, last) = match parent {
            Some(parent) => {
                // Its subtree ends at the first row hanging from an earlier row, or a root.
                let end = (parent + 1..self.tree.len())
                    .find(|j| self.tree[*j].parent.is_none_or(|p| (p as usize) < parent))
                    .unwrap_or(self.tree.len());
                let mut previous = None;
                let mut at = end;
                for j in parent + 1..end {
                    if self.tree[j].parent == Some(parent as u32) {
                        if self.procs[j].pid > pid {
                            at = j;
                            break;
                        }
                        previous = Some(j);
                    }
                }
                let last = at == end;
                if last && let Some(previous) = previous {
                    self.tree[previous].last = false;
                }
                (at, last)
            }
            None => {
                let name = self.hosts.name(host);
                let at = (0..self.tree.len())
                    .find(|j| {
                        self.tree[*j].parent.is_none() && {
                            let p = self.procs[*j];
                            (self.hosts.name(p.host), p.pid) > (name, pid)
                        }
                    })
                    .unwrap_or(self.tree.len());
                (at, false)
            }
        };
        for l in &mut self.tree {
            if let Some(p) = &mut l.parent
                && *p as usize >= at
            {
                *p += 1;
            }
        }
        self.keys.insert(at, key.to_owned());
        self.tree.insert(
            at,
            TreeLink {
                parent: parent.map(|p| p as u32),
                last,
            },
        );
        self.procs.insert(at, TreeProc { host, pid, ppid });
        true
    }
}

/// Whether a tab's rows are in process-tree order.
fn tree_order(tab: Tab, query: &Query, sort: Sort) -> bool {
    tab == Tab::Processes && sort.column.is_none() && query.is_empty()
}

/// Builds a tab's rows: scoped, filtered, then sorted (or in process-tree order).
pub fn build_rows(model: &Model, tab: Tab, shape: Shape<'_>, scratch: &mut Scratch) -> Rows {
    let Shape { scope, query, sort } = shape;
    let mut total = 0;
    let mut scored: Vec<(u32, Item<'_>)> = items(model, tab)
        .inspect(|_| total += 1)
        .filter(|i| scope.admits(i))
        .filter_map(|i| query.score(&i, scratch).map(|score| (score, i)))
        .collect();
    if sort.column.is_none() && query.is_fuzzy() {
        // Best matches first, as a fuzzy finder does.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| natural_order(&a.1, &b.1)));
        if sort.reverse {
            scored.reverse();
        }
        return Rows {
            keys: scored.iter().map(|(_, i)| i.key().to_owned()).collect(),
            total,
            ..Rows::default()
        };
    }
    let mut chosen: Vec<Item<'_>> = scored.into_iter().map(|(_, i)| i).collect();
    if tree_order(tab, query, sort) {
        let mut rows = process_tree(&chosen);
        rows.total = total;
        return rows;
    }
    match sort.column {
        Some(col) if tab.columns().get(col).is_some_and(|c| c.numeric) => {
            let mut keyed: Vec<(f64, Item<'_>)> = chosen
                .into_iter()
                .map(|i| (number(&i, tab, col, model), i))
                .collect();
            // Largest first: what people look for in a numeric column.
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.key().cmp(b.1.key())));
            chosen = keyed.into_iter().map(|(_, i)| i).collect();
        }
        Some(col) => {
            let mut keyed: Vec<(String, Item<'_>)> = chosen
                .into_iter()
                .map(|i| (cells(&i, tab, model).swap_remove(col).to_lowercase(), i))
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key().cmp(b.1.key())));
            chosen = keyed.into_iter().map(|(_, i)| i).collect();
        }
        None => {
            // Keys computed once per row, then sorted without going back to the items.
            let mut keyed: Vec<(NaturalKey<'_>, Item<'_>)> =
                chosen.into_iter().map(|i| (natural_key(&i), i)).collect();
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            chosen = keyed.into_iter().map(|(_, i)| i).collect();
        }
    }
    if sort.reverse {
        chosen.reverse();
    }
    Rows {
        keys: chosen.iter().map(|i| i.key().to_owned()).collect(),
        total,
        ..Rows::default()
    }
}

/// Brings a topology tab's rows up to date with the keys that joined, left or changed what
/// their rows read (`changed`, repeats allowed), keeping scope, filter and order as
/// `build_rows` would. False when they must be rebuilt instead (a cluster tab, a process
/// tree whose branches move, a row no longer in the model).
pub fn update_rows<'k>(
    model: &Model,
    tab: Tab,
    shape: Shape<'_>,
    rows: &mut Rows,
    changed: impl IntoIterator<Item = &'k str>,
    scratch: &mut Scratch,
) -> bool {
    let Shape { scope, query, sort } = shape;
    let Some(view) = tab.topology() else {
        return false;
    };
    let mut changed: Vec<&str> = changed.into_iter().collect();
    changed.sort_unstable();
    changed.dedup();
    let data = model.topology.view(view);
    rows.total = if view == TopoView::Connections {
        data.connections.len()
    } else {
        data.row_nodes()
    };
    let mut joining: Vec<Item<'_>> = changed
        .iter()
        .filter_map(|k| item(model, tab, k))
        .filter(|i| !matches!(i, Item::Node(n) if n.is_pseudo()))
        .filter(|i| scope.admits(i) && query.score(i, scratch).is_some())
        .collect();
    if tree_order(tab, query, sort) {
        if changed.len() > TREE_UPDATES {
            return false;
        }
        let leaving: Vec<usize> = (0..rows.keys.len())
            .filter(|r| changed.binary_search(&rows.keys[*r].as_str()).is_ok())
            .collect();
        // From the bottom, so the rows still to go keep their places.
        for row in leaving.into_iter().rev() {
            if !rows.remove_tree_row(row) {
                return false;
            }
        }
        for i in joining {
            let Item::Node(n) = i else { return false };
            let Some(p) = n.process() else { return false };
            if !rows.insert_tree_row(n.id(), &n.hostname, p.pid, p.ppid) {
                return false;
            }
        }
        return true;
    }
    rows.remove_keys(&changed);
    let mut order = Order {
        model,
        tab,
        query,
        sort,
        scratch,
    };
    joining.sort_by(|a, b| order.cmp(a, b));
    rows.merge(&joining, &mut order)
}

/// The order `build_rows` sorts in, as a comparison of two items.
struct Order<'a> {
    model: &'a Model,
    tab: Tab,
    query: &'a Query,
    sort: Sort,
    scratch: &'a mut Scratch,
}

impl<'a> Order<'a> {
    fn item(&self, key: &str) -> Option<Item<'a>> {
        item(self.model, self.tab, key)
    }

    fn cmp(&mut self, a: &Item<'_>, b: &Item<'_>) -> Ordering {
        let (model, tab) = (self.model, self.tab);
        let ord = match self.sort.column {
            None if self.query.is_fuzzy() => {
                let score = |i: &Item<'_>, s: &mut Scratch| self.query.score(i, s).unwrap_or(0);
                let (sa, sb) = (score(a, self.scratch), score(b, self.scratch));
                sb.cmp(&sa).then_with(|| natural_order(a, b))
            }
            Some(col) if tab.columns().get(col).is_some_and(|c| c.numeric) => {
                number(b, tab, col, model)
                    .total_cmp(&number(a, tab, col, model))
                    .then_with(|| a.key().cmp(b.key()))
            }
            Some(col) => {
                let text = |i: &Item<'_>| cells(i, tab, model).swap_remove(col).to_lowercase();
                text(a).cmp(&text(b)).then_with(|| a.key().cmp(b.key()))
            }
            None => natural_order(a, b),
        };
        if self.sort.reverse {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// The order rows have without a sort column: tasks live first and newest first,
/// connections by host and local endpoint, everything else by name.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NaturalKey<'a> {
    Task(bool, std::cmp::Reverse<i64>, &'a str),
    Connection(&'a str),
    Name(String, &'a str),
}

fn natural_key<'a>(item: &Item<'a>) -> NaturalKey<'a> {
    match item {
        Item::Task(t) => NaturalKey::Task(
            t.state.is_terminal(),
            std::cmp::Reverse(t.started_unix_ms),
            &t.key,
        ),
        // Ids are `<host>:<local>-<remote>`: by host, then local endpoint (one comparison).
        Item::Connection(c) => NaturalKey::Connection(&c.connection().id),
        _ => NaturalKey::Name(item.name().to_lowercase(), item.key()),
    }
}

fn natural_order(a: &Item<'_>, b: &Item<'_>) -> Ordering {
    natural_key(a).cmp(&natural_key(b))
}

/// Processes as a forest per host: children under their parent, siblings by pid, roots by
/// host then pid.
fn process_tree(items: &[Item<'_>]) -> Rows {
    // (host, pid, ppid) once per item; hosts as small numbers.
    let mut hosts = Hosts::default();
    let procs: Vec<TreeProc> = items
        .iter()
        .map(|item| match item {
            Item::Node(n) => n.process().map(|p| TreeProc {
                host: hosts.intern(&n.hostname),
                pid: p.pid,
                ppid: p.ppid,
            }),
            _ => None,
        })
        .map(|p| {
            p.unwrap_or(TreeProc {
                host: NO_HOST,
                pid: 0,
                ppid: 0,
            })
        })
        .collect();
    let mut by_pid: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    by_pid.reserve(items.len());
    for (i, p) in procs.iter().enumerate() {
        if p.host != NO_HOST {
            by_pid.insert((p.host, p.pid), i as u32);
        }
    }
    let parent: Vec<Option<u32>> = procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.host == NO_HOST {
                return None;
            }
            by_pid
                .get(&(p.host, p.ppid))
                .copied()
                .filter(|parent| *parent as usize != i)
        })
        .collect();
    // Children of each item, contiguous (counting sort by parent), each run sorted by pid.
    let mut start = vec![0u32; items.len() + 1];
    for p in parent.iter().flatten() {
        start[*p as usize + 1] += 1;
    }
    for i in 0..items.len() {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut children = vec![0u32; start[items.len()] as usize];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[fill[*p as usize] as usize] = i as u32;
            fill[*p as usize] += 1;
        }
    }
    let pid = |i: u32| procs[i as usize].pid;
    for i in 0..items.len() {
        children[start[i] as usize..start[i + 1] as usize].sort_unstable_by_key(|c| pid(*c));
    }
    let host_name = |i: u32| hosts.name(procs[i as usize].host);
    let mut roots: Vec<u32> = (0..items.len() as u32)
        .filter(|i| parent[*i as usize].is_none())
        .collect();
    roots.sort_unstable_by(|a, b| host_name(*a).cmp(host_name(*b)).then(pid(*a).cmp(&pid(*b))));

    let mut keys = Vec::with_capacity(items.len());
    let mut links = Vec::with_capacity(items.len());
    let mut placed = Vec::with_capacity(items.len());
    let mut visited = vec![false; items.len()];
    // (item, parent row, last child)
    let mut stack: Vec<(u32, Option<u32>, bool)> =
        roots.iter().rev().map(|r| (*r, None, false)).collect();
    while let Some((i, parent_row, last)) = stack.pop() {
        if std::mem::replace(&mut visited[i as usize], true) {
            continue;
        }
        let row = keys.len() as u32;
        keys.push(items[i as usize].key().to_owned());
        links.push(TreeLink {
            parent: parent_row,
            last,
        });
        placed.push(procs[i as usize]);
        let kids = &children[start[i as usize] as usize..start[i as usize + 1] as usize];
        for (n, kid) in kids.iter().enumerate().rev() {
            stack.push((*kid, Some(row), n + 1 == kids.len()));
        }
    }
    Rows {
        keys,
        tree: links,
        total: 0,
        procs: placed,
        hosts,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use orca_proto::topology::v1 as pb;

    use super::*;
    use crate::synthetic;

    /// A deterministic stream of small numbers.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % below as u64) as usize
        }
    }

    fn loaded(nodes: usize) -> (Model, Vec<(TopoView, pb::TopologyDelta)>) {
        let mut model = Model::default();
        let snapshots = synthetic::snapshots(nodes, 1);
        for (view, delta) in snapshots.clone() {
            model.topology.apply(view, delta, Instant::now());
        }
        (model, snapshots)
    }

    /// One random change to `view`: members leave or come back, a process is renamed, moves
    /// to another parent or starts under one, or only values change.
    fn change(
        dice: &mut Dice,
        model: &Model,
        view: TopoView,
        all: &(Vec<pb::TopologyNode>, Vec<pb::TopologyConnection>),
        seq: u64,
    ) -> pb::TopologyDelta {
        let data = model.topology.view(view);
        let mut delta = pb::TopologyDelta {
            seq,
            timestamp_unix_ms: synthetic::NOW_MS,
            ..Default::default()
        };
        let connections = view == TopoView::Connections;
        let pick_node = |dice: &mut Dice| all.0[dice.roll(all.0.len())].clone();
        match dice.roll(7) {
            0 | 1 => {
                for _ in 0..1 + dice.roll(3) {
                    if connections {
                        let c = &all.1[dice.roll(all.1.len())];
                        let id = c.connection.as_ref().unwrap().id.clone();
                        delta.removed_connections.push(id);
                    } else {
                        delta.removed_nodes.push(pick_node(dice).node.unwrap().id);
                    }
                }
            }
            2 | 3 => {
                for _ in 0..1 + dice.roll(3) {
                    if connections {
                        delta
                            .upserted_connections
                            .push(all.1[dice.roll(all.1.len())].clone());
                    } else {
                        delta.upserted_nodes.push(pick_node(dice));
                    }
                }
            }
            4 if !connections => {
                // Renamed, or (processes) under another parent.
                let mut n = pick_node(dice);
                let id = n.node.as_ref().unwrap().id.clone();
                if !data.nodes.contains_key(&id) {
                    return delta;
                }
                match n.node.as_mut().unwrap().detail.as_mut().unwrap() {
                    pb::node::Detail::Process(p) if dice.roll(2) == 0 => p.ppid = 1,
                    pb::node::Detail::Process(p) => p.comm = format!("renamed-{seq}"),
                    pb::node::Detail::Container(c) => c.name = format!("renamed-{seq}"),
                    pb::node::Detail::Host(h) => h.os = format!("os-{seq}"),
                }
                delta.upserted_nodes.push(n);
            }
            5 if view == TopoView::Processes => {
                // A new process under an existing one.
                let mut n = pick_node(dice);
                let node = n.node.as_mut().unwrap();
                let pb::node::Detail::Process(p) = node.detail.as_mut().unwrap() else {
                    return delta;
                };
                p.ppid = p.pid;
                p.pid = 50_000 + seq as u32;
                p.comm = "child".into();
                node.id = format!("process:{}:{}", n.hostname, p.pid);
                delta.upserted_nodes.push(n);
            }
            _ => {
                // Values only.
                if let Some(mut n) = (!connections).then(|| pick_node(dice)) {
                    n.cpu_percent = vec![pb::Point {
                        timestamp_unix_ms: synthetic::NOW_MS,
                        value: dice.roll(100) as f64,
                    }];
                    delta.upserted_nodes.push(n);
                }
            }
        }
        delta
    }

    /// Rows kept in place from the journal are the rows a whole build makes, in every order,
    /// filter and scope, through a long run of random changes; and most changes are kept in
    /// place rather than rebuilt.
    #[test]
    fn rows_kept_in_place_equal_rows_built_whole() {
        let cases: &[(Tab, &str, Sort, Scope)] = &[
            (Tab::Processes, "", Sort::default(), Scope::All),
            (
                Tab::Processes,
                "",
                Sort::default(),
                Scope::Host("node-001".into()),
            ),
            (Tab::Processes, "worker", Sort::default(), Scope::All),
            (
                Tab::Processes,
                "host:node-00",
                Sort {
                    column: None,
                    reverse: true,
                },
                Scope::All,
            ),
            (Tab::Containers, "", Sort::default(), Scope::All),
            (Tab::Containers, "l:app=web", Sort::default(), Scope::All),
            (Tab::Hosts, "", Sort::default(), Scope::All),
            (Tab::Connections, "", Sort::default(), Scope::All),
            (
                Tab::Connections,
                "",
                Sort {
                    column: None,
                    reverse: true,
                },
                Scope::Host("node-002".into()),
            ),
            // Ordered by a value: members are placed by their values now.
            (
                Tab::Containers,
                "",
                Sort {
                    column: Some(1),
                    reverse: false,
                },
                Scope::All,
            ),
        ];
        for (case, (tab, text, sort, scope)) in cases.iter().enumerate() {
            let (mut model, snapshots) = loaded(400);
            let view = tab.topology().unwrap();
            let snapshot = &snapshots.iter().find(|(v, _)| *v == view).unwrap().1;
            let all = (
                snapshot.upserted_nodes.clone(),
                snapshot.upserted_connections.clone(),
            );
            let query = Query::parse(text).unwrap();
            let mut scratch = Scratch::default();
            let shape = Shape {
                scope,
                query: &query,
                sort: *sort,
            };
            let mut rows = build_rows(&model, *tab, shape, &mut scratch);
            let mut members = model.topology.view(view).members;
            let mut dice = Dice(case as u64 + 7);
            let (mut in_place, mut rebuilt) = (0, 0);
            for step in 0..300u64 {
                let delta = change(&mut dice, &model, view, &all, 100 + step);
                model.topology.apply(view, delta, Instant::now());
                let data = model.topology.view(view);
                if data.members == members {
                    continue;
                }
                let changed = data
                    .changed_since(members)
                    .expect("the journal reaches back");
                let by_values = sort.column.is_some();
                let kept = update_rows(&model, *tab, shape, &mut rows, changed, &mut scratch);
                let whole = build_rows(&model, *tab, shape, &mut scratch);
                if kept {
                    in_place += 1;
                    if !by_values {
                        assert_eq!(rows.keys, whole.keys, "case {case} step {step}");
                        assert_eq!(rows.tree, whole.tree, "case {case} step {step}");
                    }
                    assert_eq!(rows.total, whole.total, "case {case} step {step}");
                    let mut sorted = rows.keys.clone();
                    sorted.sort();
                    let mut expected = whole.keys.clone();
                    expected.sort();
                    assert_eq!(
                        sorted, expected,
                        "case {case} step {step}: the same members"
                    );
                } else {
                    rebuilt += 1;
                }
                rows = whole;
                members = model.topology.view(view).members;
            }
            assert!(
                in_place > 3 * rebuilt,
                "case {case}: {in_place} changes kept in place, {rebuilt} rebuilt"
            );
        }
    }

    #[test]
    fn a_journal_that_no_longer_reaches_back_asks_for_a_rebuild() {
        let (mut model, snapshots) = loaded(100);
        let before = model.topology.view(TopoView::Processes).members;
        let node = snapshots[2].1.upserted_nodes[5].clone();
        let id = node.node.as_ref().unwrap().id.clone();
        for seq in 0..=crate::model::topology::JOURNAL as u64 {
            let mut delta = pb::TopologyDelta {
                seq: 10 + seq,
                ..Default::default()
            };
            if seq % 2 == 0 {
                delta.removed_nodes.push(id.clone());
            } else {
                delta.upserted_nodes.push(node.clone());
            }
            model
                .topology
                .apply(TopoView::Processes, delta, Instant::now());
        }
        let view = model.topology.view(TopoView::Processes);
        assert!(view.changed_since(before).is_none());
        assert_eq!(view.changed_since(view.members).unwrap().count(), 0);
        assert_eq!(
            view.changed_since(view.members - 1)
                .unwrap()
                .collect::<Vec<_>>(),
            [id]
        );
    }
}
