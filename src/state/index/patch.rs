//! The next generation from the previous one and the few nodes of one source that changed:
//! a walk over plain indexes instead of hashing and parsing every node again, so a notified
//! change costs little at 100 000 nodes. A patch gives exactly what a full build of the same
//! documents gives (`patch_equals_a_full_build` in the state tests); where it could not —
//! a conflict to settle, a port joined across sources, a document not sorted by UUID — it
//! declines and the store builds in full.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use super::{fresh_key, Derive, IndexConfig, IndexedNode, IndexedPort, OnTaken, Snapshot};
use crate::model::node::{Node, NodeUuid, Port, PortUuid, StateDoc};
use crate::state::{SourceError, SourceId};

/// A slot of the previous generation that the patch drops.
const GONE: usize = usize::MAX;

/// The nodes whose rows or ports differ between two documents of one source, each with its
/// new row (`None`: gone) and its complete new port list in document order.
#[derive(Debug, Default)]
pub(in crate::state) struct Touched {
    nodes: BTreeMap<NodeUuid, Option<Arc<Node>>>,
    ports: BTreeMap<NodeUuid, Vec<Arc<Port>>>,
}

impl Touched {
    /// Compares two documents of one source; `None` unless both list nodes and ports
    /// strictly sorted by UUID, every port with one (the Ironic source's documents are; a
    /// hand-written file need not be, and is built in full).
    pub(in crate::state) fn between(old: &StateDoc, new: &StateDoc) -> Option<Touched> {
        let (old_nodes, new_nodes) = (node_uuids(old)?, node_uuids(new)?);
        let (old_ports, new_ports) = (port_uuids(old)?, port_uuids(new)?);
        let mut t = Touched::default();
        for (i, j) in walk(&old_nodes, &new_nodes) {
            let (a, b) = (i.map(|i| &old.nodes[i]), j.map(|j| &new.nodes[j]));
            if !same(a, b) {
                let uuid = a.or(b).map(|n| n.uuid)?;
                t.nodes.insert(uuid, b.cloned());
            }
        }
        // A new, changed or gone port touches its old and its new node.
        for (i, j) in walk(&old_ports, &new_ports) {
            let (a, b) = (i.map(|i| &old.ports[i]), j.map(|j| &new.ports[j]));
            if same(a, b) {
                continue;
            }
            for p in [a, b].into_iter().flatten() {
                let node = p.node_uuid?;
                t.nodes
                    .entry(node)
                    .or_insert_with(|| find(&new.nodes, &node));
            }
        }
        for p in &new.ports {
            let node = p.node_uuid?;
            if t.nodes.contains_key(&node) {
                t.ports.entry(node).or_default().push(p.clone());
            }
        }
        Some(t)
    }

    pub(in crate::state) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Equal rows, by pointer first: unchanged rows are shared between a source's documents.
fn same<T: PartialEq>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// Every node's UUID, when they are strictly sorted (read once: each is behind a pointer).
fn node_uuids(doc: &StateDoc) -> Option<Vec<NodeUuid>> {
    let uuids: Vec<NodeUuid> = doc.nodes.iter().map(|n| n.uuid).collect();
    uuids.windows(2).all(|w| w[0] < w[1]).then_some(uuids)
}

/// Every port's UUID, when all have one and they are strictly sorted.
fn port_uuids(doc: &StateDoc) -> Option<Vec<PortUuid>> {
    let uuids: Vec<PortUuid> = doc.ports.iter().map(|p| p.uuid).collect::<Option<_>>()?;
    uuids.windows(2).all(|w| w[0] < w[1]).then_some(uuids)
}

fn find(nodes: &[Arc<Node>], uuid: &NodeUuid) -> Option<Arc<Node>> {
    let i = nodes.binary_search_by(|n| n.uuid.cmp(uuid)).ok()?;
    Some(nodes[i].clone())
}

/// Merge-walks two sorted key lists: each key once, with its index on either side.
fn walk<'a, K: Ord>(
    a: &'a [K],
    b: &'a [K],
) -> impl Iterator<Item = (Option<usize>, Option<usize>)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let step = match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some(_), None) => (Some(i), None),
            (None, Some(_)) => (None, Some(j)),
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => (Some(i), None),
                std::cmp::Ordering::Greater => (None, Some(j)),
                std::cmp::Ordering::Equal => (Some(i), Some(j)),
            },
        };
        i += usize::from(step.0.is_some());
        j += usize::from(step.1.is_some());
        Some(step)
    })
}

impl Snapshot {
    /// Generation `prev + 1` with `touched` (all from `source`) replaced, or `None` where
    /// only a full build settles the result: `prev` had a conflict, or the change brings one.
    pub(in crate::state) fn patch(
        prev: &Snapshot,
        cfg: &IndexConfig,
        source: &SourceId,
        touched: &Touched,
        errors: Vec<SourceError>,
    ) -> Option<Snapshot> {
        if !prev.patchable {
            return None;
        }
        let mut p = Patcher {
            derive: Derive { cfg },
            prev,
            source: Arc::new(source.clone()),
            touched,
            node_map: vec![0; prev.nodes.len()],
            port_map: vec![0; prev.ports.len()],
            s: Snapshot {
                nodes: Vec::with_capacity(prev.nodes.len() + touched.len()),
                ports: Vec::with_capacity(prev.ports.len() + touched.len()),
                node_warnings: prev.node_warnings.clone(),
                ..Snapshot::empty(prev.generation + 1, errors)
            },
        };
        p.mark_gone()?;
        p.nodes()?;
        p.ports()?;
        p.carry_indexes();
        p.index_fresh()?;
        p.set_revisions();
        p.s.flatten_warnings();
        Some(p.s)
    }
}

struct Patcher<'a> {
    derive: Derive<'a>,
    prev: &'a Snapshot,
    source: Arc<SourceId>,
    touched: &'a Touched,
    /// Previous node index → new index, or [`GONE`].
    node_map: Vec<usize>,
    /// Previous port index → new index, or [`GONE`].
    port_map: Vec<usize>,
    s: Snapshot,
}

impl Patcher<'_> {
    /// Drops the touched nodes and their ports; refuses a touched node another source holds.
    fn mark_gone(&mut self) -> Option<()> {
        for uuid in self.touched.nodes.keys() {
            self.s.node_warnings.remove(uuid);
            let Some(&i) = self.prev.by_uuid.get(uuid) else {
                continue;
            };
            let old = &self.prev.nodes[i];
            if *old.source != *self.source {
                return None;
            }
            self.node_map[i] = GONE;
            for &pi in &old.ports {
                self.port_map[pi] = GONE;
            }
        }
        Some(())
    }

    /// The kept nodes in their order, with the touched rows merged in where a full build puts
    /// them: in their source's block, by UUID (the source's document is sorted).
    fn nodes(&mut self) -> Option<()> {
        let mut fresh = self
            .touched
            .nodes
            .iter()
            .filter_map(|(u, row)| row.as_ref().map(|r| (*u, r)))
            .peekable();
        let source = self.source.clone();
        let mut order = SourceOrder::new(&source);
        for (i, old) in self.prev.nodes.iter().enumerate() {
            if self.node_map[i] == GONE {
                continue;
            }
            while let Some(&(uuid, row)) = fresh.peek() {
                if !order.before(&old.source, uuid, &old.node.uuid) {
                    break;
                }
                self.push_fresh(row);
                fresh.next();
            }
            self.node_map[i] = self.s.nodes.len();
            self.s.nodes.push(IndexedNode {
                node: old.node.clone(),
                revision: old.revision,
                source: old.source.clone(),
                ports: Vec::new(),
                system_uuid: old.system_uuid,
            });
        }
        for (_, row) in fresh {
            self.push_fresh(row);
        }
        Some(())
    }

    fn push_fresh(&mut self, row: &Arc<Node>) {
        let mut warns = Vec::new();
        let system_uuid = self.derive.system_uuid(row, &self.source, &mut warns);
        self.s.note(row.uuid, warns);
        self.s.by_uuid.insert(row.uuid, self.s.nodes.len());
        self.s.nodes.push(IndexedNode {
            node: row.clone(),
            revision: self.s.generation,
            source: self.source.clone(),
            ports: Vec::new(),
            system_uuid,
        });
    }

    /// The kept ports in their order with the touched nodes' ports merged in by UUID, each
    /// listed on its node in port order (as a full build lists them).
    fn ports(&mut self) -> Option<()> {
        let mut fresh: Vec<(PortUuid, NodeUuid, &Arc<Port>)> = Vec::new();
        for (node, ports) in &self.touched.ports {
            for p in ports {
                fresh.push((p.uuid?, *node, p));
            }
        }
        fresh.sort_unstable_by_key(|f| f.0);
        let mut fresh = fresh.into_iter().peekable();
        let source = self.source.clone();
        let mut order = SourceOrder::new(&source);
        for (i, old) in self.prev.ports.iter().enumerate() {
            if self.port_map[i] == GONE {
                continue;
            }
            let node = self.node_map[old.node];
            while let Some(&(uuid, node_uuid, port)) = fresh.peek() {
                let old_uuid = old.port.uuid.unwrap_or(PortUuid([0xff; 16]));
                if !order.before(&self.s.nodes[node].source, uuid, &old_uuid) {
                    break;
                }
                self.push_fresh_port(node_uuid, port)?;
                fresh.next();
            }
            self.port_map[i] = self.s.ports.len();
            self.s.nodes[node].ports.push(self.s.ports.len());
            self.s.ports.push(IndexedPort {
                port: old.port.clone(),
                node,
                client_id: old.client_id,
                fixed_ip: old.fixed_ip,
                boot_names: old.boot_names,
            });
        }
        for (_, node_uuid, port) in fresh {
            self.push_fresh_port(node_uuid, port)?;
        }
        Some(())
    }

    /// A touched node's port; `None` for a port of a node that is gone (an orphan).
    fn push_fresh_port(&mut self, node_uuid: NodeUuid, port: &Arc<Port>) -> Option<()> {
        let node = *self.s.by_uuid.get(&node_uuid)?;
        let mut warns = Vec::new();
        let indexed = self
            .derive
            .port(&self.source, (node, node_uuid), port, &mut warns);
        self.s.note(node_uuid, warns);
        self.s.nodes[node].ports.push(self.s.ports.len());
        self.s.ports.push(indexed);
        Some(())
    }

    /// The previous maps with dropped slots taken out and kept ones renumbered.
    fn carry_indexes(&mut self) {
        let (prev, nm, pm) = (self.prev, &self.node_map, &self.port_map);
        // The touched nodes pushed so far are in `by_uuid`; the kept ones are not (no overlap).
        let fresh = std::mem::replace(&mut self.s.by_uuid, renumber(&prev.by_uuid, nm));
        self.s.by_uuid.extend(fresh);
        self.s.by_system_uuid = renumber(&prev.by_system_uuid, nm);
        self.s.by_eth_mac = renumber(&prev.by_eth_mac, pm);
        self.s.by_ib_mac = renumber(&prev.by_ib_mac, pm);
        self.s.by_guid = renumber(&prev.by_guid, pm);
        self.s.by_ip = renumber(&prev.by_ip, pm);
        self.s.by_address = renumber(&prev.by_address, pm);
    }

    /// Indexes the touched nodes and their ports; `None` on any key already taken (a
    /// duplicate the full build settles by rule).
    fn index_fresh(&mut self) -> Option<()> {
        let s = &mut self.s;
        for uuid in self.touched.nodes.keys() {
            let Some(&n) = s.by_uuid.get(uuid) else {
                continue;
            };
            if let Some(u) = s.nodes[n].system_uuid {
                fresh_key(&mut s.by_system_uuid, u, n)?;
            }
            for k in 0..s.nodes[n].ports.len() {
                let i = s.nodes[n].ports[k];
                fresh_key(&mut s.by_address, s.ports[i].port.address, i)?;
                s.index_boot_keys(i, &mut OnTaken::Decline)?;
            }
        }
        Some(())
    }

    /// Revisions and changes of the touched nodes; every other node kept both.
    fn set_revisions(&mut self) {
        let (prev, s) = (self.prev, &mut self.s);
        for uuid in self.touched.nodes.keys() {
            match s.by_uuid.get(uuid) {
                Some(&i) => s.carry_revision(prev, i),
                None if prev.node(uuid).is_some() => {
                    s.changes.removed.insert(*uuid);
                }
                None => {}
            }
        }
    }
}

/// Where the touched source's rows go among the kept ones: sources in rank order, then by
/// UUID within the touched source. Remembers the last comparison, since a source's rows are
/// contiguous and comparing paths is not free.
struct SourceOrder<'a> {
    touched: &'a SourceId,
    last: Option<(*const SourceId, std::cmp::Ordering)>,
}

impl<'a> SourceOrder<'a> {
    fn new(touched: &'a SourceId) -> Self {
        SourceOrder {
            touched,
            last: None,
        }
    }

    /// Whether the touched row `fresh` goes before a kept row `kept` of source `of`.
    fn before<K: Ord>(&mut self, of: &Arc<SourceId>, fresh: K, kept: &K) -> bool {
        let ptr = Arc::as_ptr(of);
        let ord = match self.last {
            Some((p, o)) if p == ptr => o,
            _ => {
                let o = self.touched.cmp(of);
                self.last = Some((ptr, o));
                o
            }
        };
        ord.then_with(|| fresh.cmp(kept)).is_lt()
    }
}

/// A copy of `map` with values renumbered by `to` and dropped ones taken out: a copy of the
/// table and one pass over it, no key hashed again.
fn renumber<K: Copy + Eq + Hash>(map: &HashMap<K, usize>, to: &[usize]) -> HashMap<K, usize> {
    let mut out = map.clone();
    out.retain(|_, i| {
        *i = to[*i];
        *i != GONE
    });
    out
}
