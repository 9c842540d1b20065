//! Problems of single nodes found while serving: a render over its budget, an image
//! reference that is refused. Such a node gets an error instead of a config, and the operator
//! must see why without reading logs: `/healthz` turns `degraded`, `/api/v1/problems` and the
//! status page list them, `ironpxe check` reports them.
//!
//! A problem is keyed by node and kind, so a retry storm updates one entry instead of adding
//! thousands; it is cleared when the same kind of work succeeds again for that node, or when
//! the node goes away.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::Serialize;

use crate::model::node::NodeUuid;

/// What went wrong for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Rendering its config failed or ran over the render budget.
    Render,
    /// An image reference (kernel, ramdisk, ISO) is refused or cannot be fetched.
    Image,
}

impl ProblemKind {
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Render => "render",
            ProblemKind::Image => "image",
        }
    }
}

/// One node's problem, as listed to the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeProblem {
    pub node: NodeUuid,
    pub kind: ProblemKind,
    pub message: String,
}

/// Longest message kept (a message may quote node data).
const MESSAGE_MAX: usize = 512;

/// The registry; cheap to read, written only when a problem appears or goes away.
#[derive(Default, Debug)]
pub struct Problems {
    map: RwLock<BTreeMap<(NodeUuid, ProblemKind), String>>,
}

impl Problems {
    /// Records (or replaces) the node's problem of this kind.
    pub fn set(&self, node: NodeUuid, kind: ProblemKind, message: impl Into<String>) {
        let mut message: String = message.into();
        if message.len() > MESSAGE_MAX {
            let mut cut = MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.get(&(node, kind)) != Some(&message) {
            map.insert((node, kind), message);
        }
    }

    /// Forgets the node's problem of this kind (the work succeeded).
    pub fn clear(&self, node: NodeUuid, kind: ProblemKind) {
        // Read first: the common case (no problem) takes no write lock.
        if self.read().contains_key(&(node, kind)) {
            self.map
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(node, kind));
        }
    }

    /// Forgets every problem of this kind (e.g. new templates: every render is retried).
    pub fn clear_kind(&self, kind: ProblemKind) {
        if self.read().keys().any(|(_, k)| *k == kind) {
            self.map
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(_, k), _| *k != kind);
        }
    }

    /// Keeps only the problems of nodes for which `exists` is true (others went away).
    pub fn retain_nodes(&self, exists: impl Fn(&NodeUuid) -> bool) {
        let gone = self.read().keys().any(|(n, _)| !exists(n));
        if gone {
            self.map
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(n, _), _| exists(n));
        }
    }

    /// Every problem, by node then kind.
    pub fn list(&self) -> Vec<NodeProblem> {
        self.read()
            .iter()
            .map(|((node, kind), message)| NodeProblem {
                node: *node,
                kind: *kind,
                message: message.clone(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(NodeUuid, ProblemKind), String>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_node_and_kind_cleared_on_success_or_removal() {
        let p = Problems::default();
        let of = |n: &NodeUuid| -> Vec<NodeProblem> {
            p.list().into_iter().filter(|x| &x.node == n).collect()
        };
        let (a, b) = (NodeUuid([1; 16]), NodeUuid([2; 16]));
        for i in 0..100 {
            p.set(a, ProblemKind::Render, format!("slow {i}"));
        }
        p.set(a, ProblemKind::Image, "refused");
        p.set(b, ProblemKind::Render, "x".repeat(10_000));
        assert_eq!(p.len(), 3);
        assert_eq!(of(&a)[0].message, "slow 99");
        assert!(of(&b)[0].message.len() <= MESSAGE_MAX);
        p.clear(a, ProblemKind::Render);
        assert_eq!(of(&a).len(), 1);
        p.retain_nodes(|n| *n == a);
        assert_eq!(p.list().len(), 1);
        assert_eq!(p.list()[0].kind, ProblemKind::Image);
    }
}
