//! Watching a directory for changes, debounced, on a thread of its own.
//!
//! Editors, `curl -o` and Kubernetes ConfigMaps all save differently (in place, by atomic
//! rename, by swapping a `..data` symlink), so the watcher does not interpret events: any
//! event in the directory means "look again". The callback receives the paths the events
//! named and rescans; a periodic rescan covers events the OS never delivered (the directory
//! deleted and recreated, a network file system).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};

/// Debounce settings: wait for `quiet` without events, but never longer than `max` after
/// the first one, so a burst of saves costs one reload and a steady stream still reloads.
#[derive(Clone, Copy, Debug)]
pub struct Debounce {
    pub quiet: Duration,
    pub max: Duration,
    /// Rescan this often even without events.
    pub rescan: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(10),
            max: Duration::from_millis(40),
            rescan: Duration::from_secs(5),
        }
    }
}

/// Keeps the watch alive; dropping it stops the watcher thread.
pub struct WatchHandle {
    tx: mpsc::Sender<Msg>,
}

impl WatchHandle {
    /// Forces a rescan now (SIGHUP).
    pub fn poke(&self) {
        let _ = self.tx.send(Msg::Paths(Vec::new()));
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

enum Msg {
    Paths(Vec<PathBuf>),
    WatchError(String),
    Stop,
}

/// Watches `dir` and calls `on_change` (on the watcher thread) with the paths events named,
/// after debouncing; an empty set means a periodic or forced rescan.
pub fn watch_dir<F>(dir: &Path, debounce: Debounce, mut on_change: F) -> notify::Result<WatchHandle>
where
    F: FnMut(&HashSet<PathBuf>) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Msg>();
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let msg = match res {
            Ok(ev) if !changes_content(&ev.kind) => return,
            Ok(ev) => Msg::Paths(ev.paths),
            Err(e) => Msg::WatchError(e.to_string()),
        };
        let _ = events.send(msg);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let dir = dir.to_path_buf();
    thread::Builder::new()
        .name(format!("watch {}", dir.display()))
        .spawn(move || {
            let mut watcher = watcher;
            let mut watching = true;
            loop {
                let batch = match collect(&rx, debounce) {
                    Collected::Paths(p) => p,
                    Collected::Closed => return,
                };
                // Re-arm the watch when the directory was deleted and has come back.
                let exists = dir.is_dir();
                if !exists {
                    watching = false;
                } else if !watching {
                    watching = watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok();
                }
                on_change(&batch);
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(WatchHandle { tx })
}

/// Reads (open, access, close after reading) change nothing; reacting to them would make
/// every rescan, which reads the files, trigger the next one.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

enum Collected {
    Paths(HashSet<PathBuf>),
    Closed,
}

/// Blocks until an event (or the rescan timer), then gathers the burst that follows.
fn collect(rx: &mpsc::Receiver<Msg>, d: Debounce) -> Collected {
    let mut paths = HashSet::new();
    match rx.recv_timeout(d.rescan) {
        Ok(Msg::Stop) => return Collected::Closed,
        Ok(msg) => add(&mut paths, msg),
        Err(mpsc::RecvTimeoutError::Timeout) => return Collected::Paths(paths),
        Err(mpsc::RecvTimeoutError::Disconnected) => return Collected::Closed,
    }
    let start = Instant::now();
    loop {
        let left = d.max.saturating_sub(start.elapsed());
        match rx.recv_timeout(d.quiet.min(left)) {
            Ok(Msg::Stop) => return Collected::Closed,
            Ok(msg) => add(&mut paths, msg),
            Err(mpsc::RecvTimeoutError::Timeout) => return Collected::Paths(paths),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Collected::Closed,
        }
        if start.elapsed() >= d.max {
            return Collected::Paths(paths);
        }
    }
}

fn add(paths: &mut HashSet<PathBuf>, msg: Msg) {
    match msg {
        Msg::Paths(p) => paths.extend(p),
        Msg::WatchError(e) => tracing::warn!(error = %e, "file watch error; rescanning"),
        Msg::Stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn only_events_that_can_change_content_count() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Read)));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_content(&EventKind::Any));
    }

    /// Reading files in the watched directory (as every rescan does) triggers nothing.
    #[test]
    fn reads_do_not_trigger_rescans() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "x").expect("write");
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        let d = Debounce {
            rescan: Duration::from_secs(3600),
            ..Debounce::default()
        };
        let _w = watch_dir(dir.path(), d, move |_| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .expect("watch");
        for _ in 0..20 {
            let _ = std::fs::read(dir.path().join("a")).expect("read");
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "reads triggered a rescan"
        );
        std::fs::write(dir.path().join("a"), "y").expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "a write was not seen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
