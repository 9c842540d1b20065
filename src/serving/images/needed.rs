//! Which images the state needs, and who needs them: computed in full for `ironpxe check`,
//! and kept up to date by the server from each generation's changes, so a notified change at
//! fleet scale decides the changed nodes' boots again, not every node's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::model::boot::{self, BootConfig, ImageSource};
use crate::model::node::NodeUuid;
use crate::state::{IndexedNode, Snapshot};

/// One image the state needs, and who needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub src: ImageSource,
    pub nodes: BTreeSet<NodeUuid>,
    /// The unknown-machine action boots it.
    pub unknown: bool,
}

/// Every image some node's current action (or the unknown-machine action) boots, by key.
pub fn needed_images(snap: &Snapshot, cfg: &BootConfig) -> HashMap<String, Needed> {
    let mut t = Tracker::default();
    t.rebuild(snap, cfg);
    t.needed
}

/// [`needed_images`] for the generation last seen, carried to the next one by its changes.
#[derive(Default)]
pub(super) struct Tracker {
    /// The generation and boot settings `needed` holds.
    at: Option<(u64, Arc<BootConfig>)>,
    needed: HashMap<String, Needed>,
    /// The keys each node adds to `needed`.
    by_node: HashMap<NodeUuid, Vec<String>>,
}

impl Tracker {
    /// The images `snap` needs. With `since` = (generation, the nodes changed since it) and
    /// that generation the one last seen under the same settings, decides again only those
    /// nodes; otherwise every node.
    pub(super) fn advance(
        &mut self,
        snap: &Snapshot,
        cfg: &Arc<BootConfig>,
        since: Option<(u64, &BTreeSet<NodeUuid>)>,
    ) -> &HashMap<String, Needed> {
        let at = |g: u64| matches!(&self.at, Some((at, c)) if *at == g && Arc::ptr_eq(c, cfg));
        match since {
            _ if at(snap.generation) => return &self.needed,
            Some((from, changed)) if at(from) => {
                for uuid in changed {
                    self.drop_node(uuid);
                    if let Some(n) = snap.node(uuid) {
                        self.add_node(n, cfg);
                    }
                }
            }
            _ => self.rebuild(snap, cfg),
        }
        self.at = Some((snap.generation, cfg.clone()));
        &self.needed
    }

    fn rebuild(&mut self, snap: &Snapshot, cfg: &BootConfig) {
        self.needed.clear();
        self.by_node.clear();
        for n in snap.nodes() {
            self.add_node(n, cfg);
        }
        if let Ok(d) = boot::decide_unknown(cfg) {
            for img in [d.kernel, d.ramdisk].into_iter().flatten() {
                self.entry(img).unknown = true;
            }
        }
    }

    fn entry(&mut self, img: ImageSource) -> &mut Needed {
        self.needed
            .entry(img.cache_key())
            .or_insert_with(|| Needed {
                src: img,
                nodes: BTreeSet::new(),
                unknown: false,
            })
    }

    fn add_node(&mut self, n: &IndexedNode, cfg: &BootConfig) {
        let Ok(d) = boot::decide(&n.node, false, cfg) else {
            return;
        };
        let uuid = n.node.uuid;
        let mut keys = Vec::new();
        for img in [d.kernel, d.ramdisk].into_iter().flatten() {
            keys.push(img.cache_key());
            self.entry(img).nodes.insert(uuid);
        }
        if !keys.is_empty() {
            self.by_node.insert(uuid, keys);
        }
    }

    fn drop_node(&mut self, uuid: &NodeUuid) {
        for key in self.by_node.remove(uuid).into_iter().flatten() {
            if let Some(n) = self.needed.get_mut(&key) {
                n.nodes.remove(uuid);
                if n.nodes.is_empty() && !n.unknown {
                    self.needed.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node::StateDoc;
    use crate::state::{IndexConfig, SourceId, Store, Update};

    /// Nodes `0..n`, node `i` in `states[i]`, each booting its own deploy kernel when in
    /// a ramdisk state (images shared by pairs, so an image has several nodes).
    fn doc(states: &[&str]) -> StateDoc {
        let nodes: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "uuid": format!("{i:08x}-0000-4000-8000-000000000000"),
                    "provision_state": s,
                    "driver_info": {
                        "deploy_kernel": format!("http://images.example/k{}", i / 2),
                        "deploy_ramdisk": "http://images.example/ramdisk",
                    },
                })
            })
            .collect();
        let json = serde_json::json!({ "nodes": nodes }).to_string();
        StateDoc::from_slice(json.as_bytes()).expect("test doc")
    }

    #[test]
    fn carried_by_changes_it_equals_a_full_decision() {
        let store = Store::new(IndexConfig::default());
        let id = SourceId::new(0, "ironic-api");
        let settings = |url: &str| {
            Arc::new(BootConfig {
                ipa_api_url: Some(url.into()),
                ..BootConfig::default()
            })
        };
        let cfg = settings("http://ironic:6385");
        let mut t = Tracker::default();
        let steps: [&[&str]; 6] = [
            &["deploying", "active", "clean wait", "available"],
            &["deploying", "deploying", "clean wait", "available"],
            &["active", "deploying", "clean wait", "available"],
            &["active", "active", "active"],
            &[
                "rescue wait",
                "active",
                "inspect wait",
                "deploying",
                "clean wait",
            ],
            &["deploying"],
        ];
        let mut sizes = Vec::new();
        let mut last = store.current();
        for states in steps {
            let snap = store.apply(vec![(id.clone(), Update::Replace(doc(states)))]);
            let want = needed_images(&snap, &cfg);
            let since = snap.changed_since(&last);
            let got = t.advance(&snap, &cfg, Some((last.generation, &since)));
            assert_eq!(got, &want, "after {states:?}");
            last = snap;
            sizes.push(want.len());
        }
        assert_eq!(
            sizes,
            [3, 3, 3, 0, 3, 2],
            "the steps need what they were meant to"
        );
        assert_eq!(
            t.needed.len(),
            2,
            "the ramdisk and k0: {:?}",
            t.needed.keys()
        );
        assert_eq!(t.by_node.len(), 1, "only node 0 still needs anything");
        // Generations skipped: the changes since the last one seen, by revision.
        store.apply(vec![(id.clone(), Update::Replace(doc(&["deploying"; 4])))]);
        let snap = store.apply(vec![(id.clone(), Update::Replace(doc(&["clean wait"; 6])))]);
        let since = snap.changed_since(&last);
        assert_eq!(since.len(), 6, "{since:?}");
        let got = t.advance(&snap, &cfg, Some((last.generation, &since)));
        assert_eq!(got, &needed_images(&snap, &cfg));
        // New settings, or changes counted from a generation not seen: every node.
        let other = settings("http://ironic-2:6385");
        let none = BTreeSet::new();
        let got = t.advance(&snap, &other, Some((snap.generation, &none)));
        assert_eq!(got, &needed_images(&snap, &other));
        let next = store.apply(vec![(id.clone(), Update::Replace(doc(&["deploying"; 2])))]);
        let got = t.advance(&next, &other, Some((last.generation, &none)));
        assert_eq!(got, &needed_images(&next, &other));
    }
}
