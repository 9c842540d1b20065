//! The state directory: `*.json` files holding Ironic API responses, kept in the store live.
//!
//! A scan compares each file's identity (inode, size, mtime) with the last scan and re-reads
//! only what changed, plus every path an event named. A missing directory is an error that
//! keeps the last good state: a mount that vanished must not unenrol a data centre.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::node::{DocError, StateDoc};
use crate::state::{SourceError, SourceId, Store, Update};
use crate::support::watch::{watch_dir, Debounce, WatchHandle};

/// Files above this size are parsed as a stream instead of being read into memory first.
const STREAM_ABOVE: u64 = 4 << 20;

/// The source id of one state file (or of the directory itself, for its own errors). Files
/// rank after the Ironic API: a node Ironic reports is served as Ironic has it.
pub fn source_id(path: impl Into<PathBuf>) -> SourceId {
    SourceId::new(1, path.into().into_os_string())
}

/// True for files that hold state: `*.json`, not hidden, not an editor's temporary file.
pub fn is_state_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".json") && !name.starts_with('.') && !name.starts_with('#')
}

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// The directory source: remembers what it loaded so a scan reports only differences.
pub struct DirSource {
    dir: PathBuf,
    known: HashMap<PathBuf, Stamp>,
    dir_error: bool,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSource {
            dir: dir.into(),
            known: HashMap::new(),
            dir_error: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the directory; `forced` paths are re-read even when their stamp is unchanged.
    pub fn scan(&mut self, forced: &HashSet<PathBuf>) -> Vec<(SourceId, Update)> {
        let mut updates = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                self.dir_error = true;
                let err = SourceError {
                    source: self.dir.display().to_string(),
                    message: format!(
                        "cannot read the state directory: {e}; keeping the last good state"
                    ),
                    line: 0,
                    column: 0,
                };
                updates.push((source_id(self.dir.clone()), Update::Failed(err)));
                return updates;
            }
        };
        if std::mem::take(&mut self.dir_error) {
            updates.push((source_id(self.dir.clone()), Update::Remove));
        }
        let mut present = HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !is_state_file(&path) {
                continue;
            }
            present.insert(path.clone());
            let meta = fs::metadata(&path); // follows symlinks (ConfigMap style)
            let stamp = meta.as_ref().ok().map(Stamp::of);
            let unchanged = stamp.is_some() && self.known.get(&path) == stamp.as_ref();
            if unchanged && !forced.contains(&path) {
                continue;
            }
            let update = match meta {
                Ok(m) if m.is_file() => load(&path, m.len()),
                Ok(_) => Update::Failed(file_error(&path, "is not a regular file".into())),
                Err(e) => Update::Failed(file_error(&path, e.to_string())),
            };
            match (&update, stamp) {
                (Update::Replace(_), Some(s)) => {
                    self.known.insert(path.clone(), s);
                }
                _ => {
                    // Retry on the next scan, whatever its stamp then.
                    self.known.remove(&path);
                }
            }
            updates.push((source_id(path), update));
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.known.remove(&path);
            updates.push((source_id(path), Update::Remove));
        }
        // Files that failed before and are now gone must drop their error too.
        for path in forced {
            if is_state_file(path) && !present.contains(path) && path.parent() == Some(&self.dir) {
                updates.push((source_id(path.clone()), Update::Remove));
            }
        }
        updates
    }

    /// Loads the directory once, then keeps `store` in step with it on a watcher thread.
    pub fn watch(mut self, store: Arc<Store>, debounce: Debounce) -> notify::Result<WatchHandle> {
        store.apply(self.scan(&HashSet::new()));
        let dir = self.dir.clone();
        watch_dir(&dir, debounce, move |paths| {
            let updates = self.scan(paths);
            if !updates.is_empty() {
                store.apply(updates);
            }
        })
    }
}

/// Reads and parses one state file; small files in one read, large ones as a stream.
pub fn load(path: &Path, len: u64) -> Update {
    let parsed = if len > STREAM_ABOVE {
        fs::File::open(path)
            .map_err(|e| file_error(path, e.to_string()))
            .and_then(|f| StateDoc::from_reader(BufReader::new(f)).map_err(|e| doc_error(path, e)))
    } else {
        let mut bytes = Vec::with_capacity(len as usize);
        fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| file_error(path, e.to_string()))
            .and_then(|_| StateDoc::from_slice(&bytes).map_err(|e| doc_error(path, e)))
    };
    match parsed {
        Ok(doc) => Update::Replace(doc),
        Err(e) => Update::Failed(e),
    }
}

fn file_error(path: &Path, message: String) -> SourceError {
    SourceError {
        source: path.display().to_string(),
        message,
        line: 0,
        column: 0,
    }
}

fn doc_error(path: &Path, e: DocError) -> SourceError {
    SourceError {
        source: path.display().to_string(),
        message: e.message,
        line: e.line,
        column: e.column,
    }
}
