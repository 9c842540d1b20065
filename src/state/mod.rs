//! Node state: an immutable, indexed [`Snapshot`] of every node and port, rebuilt off to the
//! side from its sources and published with one swap, so a request never sees half a state
//! and never waits for a writer.
//!
//! Sources — peers in [`source`]: the watched directory and the Ironic API poller — hand the
//! [`Store`] whole documents as [`Update`]s under their own [`SourceId`]; the store keeps the
//! last good document of each source, so a broken file or a failed poll changes nothing until
//! it is fixed.

pub mod diagnosis;
mod index;
pub mod problems;
pub mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use index::Touched;
pub use index::{IndexConfig, IndexedNode, IndexedPort, Match, Snapshot, Via};

use crate::model::node::{NodeUuid, StateDoc};

/// Where a document came from: its source's rank and a name for operators. Each source
/// makes its own ids (`source::dir::source_id`, `source::ironic::source_id`), so the store
/// knows no source by name. Ids sort by rank, then by name as a path (component-wise, as
/// files in the state directory sort); the first id to define a node wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    rank: u8,
    /// A file's path, kept as the OS gave it: two names that differ only in bytes that are
    /// not UTF-8 stay two sources.
    name: std::ffi::OsString,
}

impl SourceId {
    /// `rank`: lower wins when two sources define the same node.
    pub fn new(rank: u8, name: impl Into<std::ffi::OsString>) -> SourceId {
        SourceId {
            rank,
            name: name.into(),
        }
    }

    fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.name)
    }
}

impl Ord for SourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.rank, self.path()).cmp(&(other.rank, other.path()))
    }
}

impl PartialOrd for SourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path().display().fmt(f)
    }
}

/// A problem with one source's input, kept until the source is fixed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceError {
    pub source: String,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.source, self.line, self.column, self.message
            )
        } else {
            write!(f, "{}: {}", self.source, self.message)
        }
    }
}

/// What a source reports.
#[derive(Debug)]
pub enum Update {
    /// New contents for the source.
    Replace(StateDoc),
    /// The source is gone (a deleted file): its nodes go with it.
    Remove,
    /// The source could not be read: keep its last good contents and report this.
    Failed(SourceError),
}

/// Which nodes a new generation added, removed or changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: BTreeSet<NodeUuid>,
    pub removed: BTreeSet<NodeUuid>,
    pub modified: BTreeSet<NodeUuid>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }
}

/// Every source's last good document and current error.
#[derive(Default)]
struct Sources {
    docs: BTreeMap<SourceId, Arc<StateDoc>>,
    errors: BTreeMap<SourceId, SourceError>,
}

/// The live node state: sources write, readers take the current snapshot.
pub struct Store {
    cfg: IndexConfig,
    sources: Mutex<Sources>,
    current: watch::Sender<Arc<Snapshot>>,
}

impl Store {
    pub fn new(cfg: IndexConfig) -> Self {
        let empty = Arc::new(Snapshot::build(&cfg, &BTreeMap::new(), Vec::new(), None));
        Store {
            cfg,
            sources: Mutex::new(Sources::default()),
            current: watch::Sender::new(empty),
        }
    }

    /// The snapshot to serve a request from. Cheap: one `Arc` clone.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// Wakes on every new generation (render cache, image prefetch, DHCP host files).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    /// Applies a batch of source updates and publishes a new generation when anything changed
    /// (contents or errors). Returns the snapshot now current.
    pub fn apply(&self, updates: Vec<(SourceId, Update)>) -> Arc<Snapshot> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut touched = false;
        let mut replaced = Vec::new();
        for (id, update) in updates {
            match apply_one(&mut sources, &id, update) {
                Applied::Nothing => {}
                Applied::Errors => touched = true,
                Applied::Contents(old) => {
                    touched = true;
                    replaced.push((id, old));
                }
            }
        }
        if !touched {
            return self.current();
        }
        let errors: Vec<SourceError> = sources.errors.values().cloned().collect();
        let prev = self.current();
        let next = self
            .patch(&sources, &prev, &replaced, errors.clone())
            .unwrap_or_else(|| Snapshot::build(&self.cfg, &sources.docs, errors, Some(&prev)));
        let next = Arc::new(next);
        log_generation(&prev, &next);
        self.current.send_replace(next.clone());
        next
    }

    /// The next generation by patching `prev`, when one source changed a few of its nodes
    /// (a notified change at fleet scale); `None` to build in full.
    fn patch(
        &self,
        sources: &Sources,
        prev: &Snapshot,
        replaced: &[(SourceId, Option<Arc<StateDoc>>)],
        errors: Vec<SourceError>,
    ) -> Option<Snapshot> {
        let [(id, Some(old))] = replaced else {
            return None;
        };
        let new = sources.docs.get(id)?;
        let touched = Touched::between(old, new)?;
        // Beyond an eighth of the fleet a patch saves little over a full build.
        if touched.len() > prev.nodes().len() / 8 {
            return None;
        }
        Snapshot::patch(prev, &self.cfg, id, &touched, errors)
    }
}

/// What one update changed.
enum Applied {
    Nothing,
    /// Only the source's error.
    Errors,
    /// The source's document, replacing this one (`None`: the source is new or gone).
    Contents(Option<Arc<StateDoc>>),
}

fn apply_one(s: &mut Sources, id: &SourceId, update: Update) -> Applied {
    let cleared = |s: &mut Sources| {
        if s.errors.remove(id).is_some() {
            Applied::Errors
        } else {
            Applied::Nothing
        }
    };
    match update {
        Update::Replace(doc) => {
            let doc = Arc::new(doc);
            if s.docs.get(id).is_some_and(|old| **old == *doc) {
                return cleared(s);
            }
            let old = s.docs.insert(id.clone(), doc);
            cleared(s);
            Applied::Contents(old)
        }
        Update::Remove => match s.docs.remove(id) {
            Some(_) => {
                cleared(s);
                Applied::Contents(None)
            }
            None => cleared(s),
        },
        Update::Failed(err) => {
            tracing::warn!(source = %id, error = %err, "state source failed; keeping its last good contents");
            if s.errors.insert(id.clone(), err.clone()) != Some(err) {
                Applied::Errors
            } else {
                Applied::Nothing
            }
        }
    }
}

/// One line per generation, and each warning the previous generation did not have (a
/// standing conflict is not repeated at every change elsewhere).
fn log_generation(prev: &Snapshot, s: &Snapshot) {
    let c = &s.changes;
    tracing::info!(
        generation = s.generation,
        nodes = s.nodes().len(),
        ports = s.ports().len(),
        added = c.added.len(),
        removed = c.removed.len(),
        modified = c.modified.len(),
        errors = s.errors.len(),
        "node state published"
    );
    let known: std::collections::HashSet<&String> = prev.warnings.iter().collect();
    for w in s.warnings.iter().filter(|w| !known.contains(w)) {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests;
