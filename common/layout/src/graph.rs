//! Cycles among the edges between modules: the strongly connected components with more than one
//! module (Tarjan), and the elementary cycles within one, each from its smallest module.

use std::collections::{BTreeMap, BTreeSet};

use crate::ModPath;

/// An edge: a module refers to a sibling (or to a sibling of an ancestor's).
pub type Edge = (ModPath, ModPath);

/// Components of more than one module, sorted by their smallest module.
pub fn sccs<'a>(edges: impl IntoIterator<Item = &'a Edge>) -> Vec<BTreeSet<ModPath>> {
    let mut graph: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().insert(b);
        graph.entry(b).or_default();
    }
    let mut t = Tarjan {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    let mut out = t.out;
    out.sort_by(|a, b| a.first().cmp(&b.first()));
    out
}

struct Tarjan<'g, 'a> {
    graph: &'g BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
    index: BTreeMap<&'a ModPath, usize>,
    low: BTreeMap<&'a ModPath, usize>,
    stack: Vec<&'a ModPath>,
    on: BTreeSet<&'a ModPath>,
    out: Vec<BTreeSet<ModPath>>,
}

impl<'a> Tarjan<'_, 'a> {
    fn visit(&mut self, v: &'a ModPath) {
        let n = self.index.len();
        self.index.insert(v, n);
        self.low.insert(v, n);
        self.stack.push(v);
        self.on.insert(v);
        let graph = self.graph;
        for w in graph.get(v).into_iter().flatten() {
            if !self.index.contains_key(w) {
                self.visit(w);
                let lw = self.low[w];
                self.lower(v, lw);
            } else if self.on.contains(w) {
                let iw = self.index[w];
                self.lower(v, iw);
            }
        }
        if self.low[v] == self.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = self.stack.pop() {
                self.on.remove(w);
                comp.insert(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                self.out.push(comp);
            }
        }
    }

    fn lower(&mut self, v: &'a ModPath, to: usize) {
        if let Some(low) = self.low.get_mut(v) {
            *low = (*low).min(to);
        }
    }
}

/// At most `limit` elementary cycles within `comp`, each starting and ending at its smallest
/// module, shortest first.
pub fn simple_cycles<'a>(
    comp: &BTreeSet<ModPath>,
    edges: impl IntoIterator<Item = &'a Edge>,
    limit: usize,
) -> Vec<Vec<ModPath>> {
    let mut succ: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
    for (a, b) in edges {
        if comp.contains(a) && comp.contains(b) {
            succ.entry(a).or_default().insert(b);
        }
    }
    let mut found = Vec::new();
    for start in comp {
        walk(start, &mut vec![start], &succ, limit, &mut found);
    }
    found.sort_by(|a: &Vec<ModPath>, b| (a.len(), a).cmp(&(b.len(), b)));
    found
}

fn walk<'a>(
    start: &'a ModPath,
    path: &mut Vec<&'a ModPath>,
    succ: &BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
    limit: usize,
    found: &mut Vec<Vec<ModPath>>,
) {
    let Some(last) = path.last().copied() else {
        return;
    };
    for w in succ.get(last).into_iter().flatten().copied() {
        if found.len() >= limit {
            return;
        }
        if w == start {
            let mut cycle: Vec<ModPath> = path.iter().map(|m| (*m).clone()).collect();
            cycle.push(start.clone());
            found.push(cycle);
        } else if w > start && !path.contains(&w) {
            path.push(w);
            walk(start, path, succ, limit, found);
            path.pop();
        }
    }
}
