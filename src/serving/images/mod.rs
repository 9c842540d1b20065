//! The image cache: kernels and ramdisks fetched from http(s) into a bounded directory, so
//! PXELINUX and GRUB (which cannot fetch http(s) themselves) get them over TFTP — what
//! Ironic does with its master image cache.
//!
//! Images are named by [`ImageSource::cache_key`], and only images some node (or the
//! unknown-machine action) needs are known: a client cannot make ironpxe fetch anything.
//! Every reference is held to the [`policy`] before it is read or fetched; a refused one is
//! never served and is listed as the node's problem (`/healthz`, `/api/v1/problems`,
//! `ironpxe check`) until the node's images are fine again.
//!
//! One fetch per image however many clients ask; a fetch is written to a temporary file and
//! renamed into place only when complete, so a truncated file is never served. Least
//! recently used images are evicted beyond the size cap.
//!
//! A cached copy is revalidated with Ironic's master-cache rule when a node (re-)enters a
//! state that needs it, at most every `[images] revalidate_secs`: HEAD the URL and fetch the
//! image again when `Last-Modified` is newer than the copy's mtime, or absent. The copy's
//! mtime is set to the `Last-Modified` it was fetched with, so the comparison is exact and
//! survives restarts (files are adopted with their mtimes, and revalidated at the first
//! state). A new copy is renamed over the old one: a client mid-transfer holds the old
//! file open and finishes on the old bytes.

mod error;
pub mod fetch;
mod needed;
pub mod policy;

pub use error::ImageError;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde::Deserialize;
use tokio::sync::watch;

use crate::model::boot::{BootConfig, ImageSource};
use crate::model::node::NodeUuid;
use crate::serving::metrics::Metrics;
use crate::state::problems::{ProblemKind, Problems};
use crate::state::Snapshot;
use crate::support::fs::AtomicFile;
use fetch::Fetcher;
pub use needed::{needed_images, Needed};
use policy::{AllowedPath, FilePolicy, ImagePolicy, Refusal, UrlPolicy, UrlRule};

/// How long a failed or refused fetch is remembered before a request may try again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// How long connecting to an image server (and resolving its name) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[images]`: which image references may be read or fetched, and how often a cached copy
/// is checked against its source.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Directories file images may be read from (Ironic's `[conductor]
    /// file_url_allowed_paths`). Unset: `/var/lib/ironic`, the TFTP roots, the HTTP root
    /// and `image_cache_dir`. Empty: no file images.
    pub file_url_allowed_paths: Option<Vec<AllowedPath>>,
    /// Origins http(s) images may be fetched from ([`UrlRule`]). Unset: `*` and ironpxe's
    /// own HTTP server.
    pub allowed_urls: Option<Vec<UrlRule>>,
    /// A cached copy is revalidated when a node enters a state that needs it, at most this
    /// often (seconds; 0: every time).
    pub revalidate_secs: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            file_url_allowed_paths: None,
            allowed_urls: None,
            revalidate_secs: 60,
        }
    }
}

/// What the cache is built from: the configuration, resolved.
pub struct CacheSettings {
    pub dir: PathBuf,
    pub cap_bytes: u64,
    /// How long a fetch may go without receiving data.
    pub read_timeout: Duration,
    pub revalidate: Duration,
    pub policy: ImagePolicy,
}

/// The result of looking an image up.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// On disk and complete.
    Ready { path: PathBuf, len: u64 },
    /// Being fetched; the receiver turns `Some` when the fetch ends.
    Pending(PendingFetch),
    /// No node needs an image with this key, or the name does not match it.
    Unknown,
    /// The last fetch failed (reported in the log and `/metrics`), or a file image cannot
    /// be read.
    Failed(ImageError),
    /// The policy refuses the reference (reported as the nodes' problem).
    Refused(String),
}

/// A fetch in flight: wait with [`PendingFetch::wait`].
#[derive(Debug, Clone)]
pub struct PendingFetch(watch::Receiver<Option<Result<(), ImageError>>>);

impl PendingFetch {
    /// Waits for the fetch to end. Works on any executor (no tokio reactor needed).
    pub async fn wait(mut self) -> Result<(), ImageError> {
        loop {
            if let Some(r) = self.0.borrow_and_update().clone() {
                return r;
            }
            if self.0.changed().await.is_err() {
                return Err(ImageError::Abandoned);
            }
        }
    }
}

enum Entry {
    Ready {
        len: u64,
        used: Instant,
        /// When the copy was last found current (`None`: adopted at start, never checked).
        checked: Option<Instant>,
    },
    /// Fetching, or revalidating the cached copy (requests wait for the outcome).
    Fetching(watch::Receiver<Option<Result<(), ImageError>>>),
    Failed {
        error: ImageError,
        at: Instant,
    },
    /// Refused while fetching (an address or redirect); the reason is in `Inner::refusals`.
    Refused {
        at: Instant,
    },
}

struct Known {
    needed: Needed,
    /// The policy's verdict on the reference itself (files: as last checked).
    refused: Option<Refusal>,
}

#[derive(Default)]
struct Inner {
    /// Images the current state needs, by key.
    known: HashMap<String, Known>,
    entries: HashMap<String, Entry>,
    /// Refusals met while fetching, by key; kept across retries until a fetch succeeds.
    refusals: HashMap<String, Refusal>,
    bytes: u64,
}

/// What a fetch or a revalidation did.
enum Done {
    /// A new copy of this length is in place.
    Stored(u64),
    /// The cached copy is current.
    Current,
}

/// The cache. Fetches run on the tokio runtime given at construction.
pub struct ImageCache {
    dir: PathBuf,
    cap_bytes: u64,
    revalidate: Duration,
    fetcher: Fetcher,
    files: FilePolicy,
    problems: Arc<Problems>,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    /// What the last generation seen needs; a lock of its own, so lookups never wait for
    /// boot decisions.
    tracker: Mutex<needed::Tracker>,
}

impl ImageCache {
    /// Creates the cache directory; files left from an earlier run are reused (they were
    /// complete: only complete files are ever renamed into place) and revalidated when
    /// first needed.
    pub fn new(
        settings: CacheSettings,
        problems: Arc<Problems>,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<ImageCache>> {
        let CacheSettings {
            dir,
            cap_bytes,
            read_timeout,
            revalidate,
            policy,
        } = settings;
        std::fs::create_dir_all(&dir)?;
        let cache = Arc::new(ImageCache {
            dir,
            cap_bytes,
            revalidate,
            fetcher: Fetcher::new(policy.urls, CONNECT_TIMEOUT, read_timeout),
            files: policy.files,
            problems,
            rt,
            metrics,
            inner: Mutex::new(Inner::default()),
            tracker: Mutex::default(),
        });
        cache.adopt_existing();
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn adopt_existing(&self) {
        let mut inner = self.lock();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(m) = e.metadata() else { continue };
            if name.starts_with('.') {
                let _ = std::fs::remove_file(e.path()); // an interrupted fetch
                continue;
            }
            if m.is_file() {
                inner.bytes += m.len();
                let ready = Entry::Ready {
                    len: m.len(),
                    used: Instant::now(),
                    checked: None,
                };
                inner.entries.insert(name, ready);
            }
        }
        self.metrics.set_image_cache_bytes(inner.bytes);
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Records which images the state needs, checks each against the policy, starts
    /// fetching the missing ones (prefetch: a node entering a ramdisk state has its images
    /// ready before it boots) and revalidates cached ones a node has just started to need.
    /// `since`: an earlier generation and the nodes changed since ([`Snapshot::changed_since`]),
    /// so that only those are decided again.
    pub fn update(
        self: &Arc<Self>,
        snap: &Snapshot,
        cfg: &Arc<BootConfig>,
        since: Option<(u64, &BTreeSet<NodeUuid>)>,
    ) {
        let needed = {
            let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            t.advance(snap, cfg, since).clone()
        };
        // Outside the lock: file checks touch the disk.
        let mut verdicts: HashMap<String, Option<Refusal>> = needed
            .iter()
            .map(|(k, n)| (k.clone(), self.verdict(&n.src).err()))
            .collect();
        let mut jobs: Vec<(String, String)> = Vec::new();
        {
            let mut inner = self.lock();
            let old = std::mem::take(&mut inner.known);
            for (key, n) in needed {
                let refused = verdicts.remove(&key).flatten();
                let prev = old.get(&key);
                if let Some(r) = refused.as_ref() {
                    if prev.and_then(|p| p.refused.as_ref()) != Some(r) {
                        tracing::warn!(error = %r, nodes = n.nodes.len(), unknown_action = n.unknown, "image reference refused");
                    }
                }
                if let (None, ImageSource::Url(url)) = (&refused, &n.src) {
                    let entered = prev.is_none_or(|p| {
                        !n.nodes.is_subset(&p.needed.nodes) || (n.unknown && !p.needed.unknown)
                    });
                    let due = match inner.entries.get(&key) {
                        None => true,
                        Some(Entry::Ready { checked, .. }) => {
                            entered && checked.is_none_or(|c| c.elapsed() >= self.revalidate)
                        }
                        Some(_) => false,
                    };
                    if due {
                        jobs.push((key.clone(), url.clone()));
                    }
                }
                inner.known.insert(key, Known { needed: n, refused });
            }
            let Inner {
                entries, refusals, ..
            } = &mut *inner;
            refusals.retain(|k, _| {
                matches!(
                    entries.get(k),
                    Some(Entry::Refused { .. } | Entry::Fetching(_))
                )
            });
            self.sync_problems(&inner);
        }
        for (key, url) in jobs {
            self.start(key, url);
        }
    }

    /// The policy's verdict on a reference, before any fetch.
    fn verdict(&self, src: &ImageSource) -> Result<(), Refusal> {
        verdict(&self.files, self.fetcher.policy(), src)
    }

    /// Finds the image for `images/<key>/<name>`, starting a fetch if needed.
    pub fn lookup(self: &Arc<Self>, key: &str, name: &str) -> Lookup {
        let (src, entry_state) = {
            let mut inner = self.lock();
            let Some(k) = inner.known.get(key) else {
                return Lookup::Unknown;
            };
            if k.needed.src.file_name() != name {
                return Lookup::Unknown;
            }
            let src = k.needed.src.clone();
            if let (Some(r), ImageSource::Url(_)) = (&k.refused, &src) {
                return Lookup::Refused(r.to_string());
            }
            let refusal = inner.refusals.get(key).map(ToString::to_string);
            let state = match inner.entries.get_mut(key) {
                Some(Entry::Ready { len, used, .. }) => {
                    *used = Instant::now();
                    Some(Lookup::Ready {
                        path: self.path(key),
                        len: *len,
                    })
                }
                Some(Entry::Fetching(rx)) => Some(Lookup::Pending(PendingFetch(rx.clone()))),
                Some(Entry::Failed { error, at }) if at.elapsed() < RETRY_AFTER => {
                    Some(Lookup::Failed(error.clone()))
                }
                Some(Entry::Refused { at }) if at.elapsed() < RETRY_AFTER => {
                    Some(Lookup::Refused(refusal.unwrap_or_default()))
                }
                _ => None,
            };
            (src, state)
        };
        if let Some(s) = entry_state {
            return s;
        }
        match src {
            ImageSource::File(p) => self.lookup_file(key, &p),
            ImageSource::Url(url) => Lookup::Pending(self.start(key.to_owned(), url)),
        }
    }

    /// A file image, checked at every request (a link may have changed since the state did)
    /// and served by its resolved path.
    fn lookup_file(&self, key: &str, p: &str) -> Lookup {
        let verdict = self.files.check(p);
        {
            let mut inner = self.lock();
            let now = verdict.as_ref().err().cloned();
            if let Some(k) = inner.known.get_mut(key).filter(|k| k.refused != now) {
                if let Some(r) = &now {
                    tracing::warn!(error = %r, "image reference refused");
                }
                k.refused = now;
                self.sync_problems(&inner);
            }
        }
        match verdict {
            Err(r) => Lookup::Refused(r.to_string()),
            Ok(path) => match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Lookup::Ready { path, len: m.len() },
                Ok(_) => Lookup::Failed(ImageError::NotAFile { path: p.to_owned() }),
                Err(e) => Lookup::Failed(ImageError::Unreadable {
                    path: p.to_owned(),
                    error: e.to_string(),
                }),
            },
        }
    }

    /// Starts one fetch for `key` — or, when a copy is cached, one revalidation — unless one
    /// is running; returns its completion.
    fn start(self: &Arc<Self>, key: String, url: String) -> PendingFetch {
        let (tx, rx) = watch::channel(None);
        let old_len = {
            let mut inner = self.lock();
            let old_len = match inner.entries.get(&key) {
                Some(Entry::Fetching(rx)) => return PendingFetch(rx.clone()),
                Some(Entry::Ready { len, .. }) => Some(*len),
                _ => None,
            };
            inner
                .entries
                .insert(key.clone(), Entry::Fetching(rx.clone()));
            old_len
        };
        let me = Arc::clone(self);
        self.rt.spawn(async move {
            let done = match old_len {
                Some(_) => me.revalidate(&key, &url).await,
                None => me.fetch(&key, &url).await.map(Done::Stored),
            };
            let result = me.finish(&key, &url, old_len, done);
            let _ = tx.send(Some(result));
        });
        PendingFetch(rx)
    }

    /// Ironic's master-cache rule: the copy is current only when the server names a
    /// `Last-Modified` that is not newer than the copy's mtime. A failed HEAD leaves the
    /// cached copy in place (Ironic would fail the deploy; a boot server down for its image
    /// server would be worse) and counts as a failed fetch; a refused one removes it.
    async fn revalidate(&self, key: &str, url: &str) -> Result<Done, ImageError> {
        let cached = tokio::fs::metadata(self.path(key))
            .await
            .and_then(|m| m.modified())
            .ok();
        let head = self.fetcher.send(Method::HEAD, url).await?;
        let remote = last_modified(&head);
        if !is_stale(remote, cached) {
            tracing::debug!(%url, key, "cached image is current");
            return Ok(Done::Current);
        }
        tracing::info!(%url, key, "cached image may be stale; fetching it again");
        self.fetch(key, url).await.map(Done::Stored)
    }

    /// Downloads into a dotfile beside the cached copy, stamps it with the server's
    /// `Last-Modified`, and renames it into place once complete and of the announced length
    /// (replacing an older copy atomically). On any failure the dotfile is removed.
    async fn fetch(&self, key: &str, url: &str) -> Result<u64, ImageError> {
        use tokio::io::AsyncWriteExt;
        let mut resp = self.fetcher.send(Method::GET, url).await?;
        let announced = resp.content_length();
        let modified = last_modified(&resp);
        let dest = self.path(key);
        let part = tokio::task::spawn_blocking(move || AtomicFile::create(&dest))
            .await
            .map_err(|e| ImageError::store(&self.dir, e))?
            .map_err(|e| ImageError::store(&self.dir, e))?;
        let tmp = part.tmp_path().to_owned();
        let io_err = |e: std::io::Error| ImageError::store(&tmp, e);
        let mut file = tokio::fs::File::from_std(part.file().try_clone().map_err(io_err)?);
        let mut got: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| ImageError::Request {
            request: format!("GET {url}"),
            error: e.to_string(),
        })? {
            got += chunk.len() as u64;
            // Bytes beyond Content-Length never arrive here (HTTP framing); an image
            // without a length is bounded by the cache's cap.
            if got > self.cap_bytes {
                return Err(ImageError::TooLarge {
                    url: url.to_owned(),
                    cap: self.cap_bytes,
                });
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        if let Some(a) = announced.filter(|a| *a != got) {
            return Err(ImageError::Truncated {
                url: url.to_owned(),
                got,
                announced: a,
            });
        }
        file.flush().await.map_err(io_err)?;
        drop(file);
        tokio::task::spawn_blocking(move || {
            if let Some(t) = modified {
                part.file().set_modified(t)?;
            }
            part.commit()
        })
        .await
        .map_err(|e| ImageError::store(&tmp, e))?
        .map_err(io_err)?;
        Ok(got)
    }

    /// Records a fetch's or revalidation's outcome; what waiting requests get.
    fn finish(
        &self,
        key: &str,
        url: &str,
        old_len: Option<u64>,
        done: Result<Done, ImageError>,
    ) -> Result<(), ImageError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let ready = |len| Entry::Ready {
            len,
            used: now,
            checked: Some(now),
        };
        let result = match done {
            Ok(Done::Stored(len)) => {
                self.metrics.image_fetched(true);
                tracing::info!(%url, key, bytes = len, replaced = old_len.is_some(), "image cached");
                inner.bytes = inner.bytes.saturating_sub(old_len.unwrap_or(0)) + len;
                inner.entries.insert(key.to_owned(), ready(len));
                inner.refusals.remove(key);
                self.evict(&mut inner);
                Ok(())
            }
            Ok(Done::Current) => {
                inner
                    .entries
                    .insert(key.to_owned(), ready(old_len.unwrap_or(0)));
                inner.refusals.remove(key);
                Ok(())
            }
            Err(ImageError::Refused(r)) => {
                tracing::error!(%url, key, error = %r, "image fetch refused");
                if let Some(len) = old_len {
                    // A copy whose source is now refused is not served either.
                    let _ = std::fs::remove_file(self.path(key));
                    inner.bytes = inner.bytes.saturating_sub(len);
                }
                inner
                    .entries
                    .insert(key.to_owned(), Entry::Refused { at: now });
                inner.refusals.insert(key.to_owned(), r.clone());
                Err(ImageError::Refused(r))
            }
            Err(e) => {
                self.metrics.image_fetched(false);
                match old_len {
                    Some(len) => {
                        tracing::error!(%url, key, error = %e, "image revalidation failed; the cached copy stays");
                        inner.entries.insert(key.to_owned(), ready(len));
                        Ok(())
                    }
                    None => {
                        tracing::error!(%url, key, error = %e, "image fetch failed");
                        let failed = Entry::Failed {
                            error: e.clone(),
                            at: now,
                        };
                        inner.entries.insert(key.to_owned(), failed);
                        Err(e)
                    }
                }
            }
        };
        self.sync_problems(&inner);
        self.metrics.set_image_cache_bytes(inner.bytes);
        result
    }

    /// Makes the problem registry show, for each node, the refusals of the images it needs,
    /// and nothing for nodes whose images are fine.
    fn sync_problems(&self, inner: &Inner) {
        let mut bad: BTreeMap<NodeUuid, Vec<String>> = BTreeMap::new();
        for (key, k) in &inner.known {
            let Some(r) = k.refused.as_ref().or(inner.refusals.get(key)) else {
                continue;
            };
            for node in &k.needed.nodes {
                bad.entry(*node).or_default().push(r.to_string());
            }
        }
        for p in self.problems.list() {
            if p.kind == ProblemKind::Image && !bad.contains_key(&p.node) {
                self.problems.clear(p.node, ProblemKind::Image);
            }
        }
        for (node, why) in bad {
            self.problems.set(node, ProblemKind::Image, why.join("; "));
        }
    }

    /// Evicts least recently used images until the cache fits its cap. An evicted file still
    /// being sent stays readable to that transfer (unlinked, not truncated).
    fn evict(&self, inner: &mut Inner) {
        while inner.bytes > self.cap_bytes {
            let oldest = inner
                .entries
                .iter()
                .filter_map(|(k, e)| match e {
                    Entry::Ready { used, len, .. } => Some((*used, k.clone(), *len)),
                    _ => None,
                })
                .min();
            let Some((_, key, len)) = oldest else { break };
            let _ = std::fs::remove_file(self.path(&key));
            inner.entries.remove(&key);
            inner.bytes = inner.bytes.saturating_sub(len);
            tracing::info!(key, bytes = len, "image evicted");
        }
    }

    /// The cache directory (for tests and the README).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The policy's verdict on a reference, before any fetch (names are not resolved yet).
fn verdict(files: &FilePolicy, urls: &UrlPolicy, src: &ImageSource) -> Result<(), Refusal> {
    match src {
        ImageSource::File(p) => files.check(p).map(|_| ()),
        ImageSource::Url(u) => urls.check_url(u).map(|_| ()),
    }
}

/// The server's `Last-Modified`, if it sent a valid one.
fn last_modified(resp: &reqwest::Response) -> Option<SystemTime> {
    let v = resp.headers().get(reqwest::header::LAST_MODIFIED)?;
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// Ironic's rule: stale unless the server's `Last-Modified` is known and not newer than
/// the cached copy.
fn is_stale(remote: Option<SystemTime>, cached: Option<SystemTime>) -> bool {
    match (remote, cached) {
        (Some(r), Some(c)) => r > c,
        _ => true,
    }
}

/// Every image reference of the state the policy refuses, one line each, for `ironpxe
/// check` (no network: whether a name resolves to a refused address shows when serving).
pub fn refused_references(snap: &Snapshot, cfg: &BootConfig, policy: &ImagePolicy) -> Vec<String> {
    let mut out: Vec<String> = needed_images(snap, cfg)
        .into_values()
        .filter_map(|n| {
            let r = verdict(&policy.files, &policy.urls, &n.src).err()?;
            let mut who: Vec<String> = n.nodes.iter().map(|u| format!("node {u}")).collect();
            if n.unknown {
                who.push("the unknown-machine action".into());
            }
            Some(format!("{}: image refused: {r}", who.join(", ")))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_current_only_when_the_server_proves_it() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = t + Duration::from_secs(1);
        assert!(!is_stale(Some(t), Some(t)), "same time: current");
        assert!(!is_stale(Some(t), Some(later)), "older upstream: current");
        assert!(is_stale(Some(later), Some(t)), "newer upstream: stale");
        assert!(is_stale(None, Some(t)), "no Last-Modified: stale");
        assert!(is_stale(Some(t), None), "no cached mtime: stale");
    }
}
