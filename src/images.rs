//! The image cache: kernels and ramdisks fetched from http(s) into a bounded directory, so
//! PXELINUX and GRUB (which cannot fetch http(s) themselves) get them over TFTP — what
//! Ironic does with its master image cache.
//!
//! Images are named by [`ImageSource::cache_key`], and only images some node (or the
//! unknown-machine action) needs are known: a client cannot make ironpxe fetch anything.
//! One fetch per image however many clients ask; a fetch is written to a temporary file and
//! renamed into place only when complete, so a truncated file is never served. Least
//! recently used images are evicted beyond the size cap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::boot::{self, BootConfig, ImageSource};
use crate::metrics::Metrics;
use crate::store::Snapshot;

/// How long a failed fetch is remembered before a request may try again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The result of looking an image up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// On disk and complete.
    Ready { path: PathBuf, len: u64 },
    /// Being fetched; the receiver turns `Some` when the fetch ends.
    Pending(PendingFetch),
    /// No node needs an image with this key, or the name does not match it.
    Unknown,
    /// The last fetch failed (reported in the log and `/metrics`).
    Failed(String),
}

/// A fetch in flight: wait with [`PendingFetch::wait`].
#[derive(Debug, Clone)]
pub struct PendingFetch(watch::Receiver<Option<Result<(), String>>>);

impl PartialEq for PendingFetch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for PendingFetch {}

impl PendingFetch {
    /// Waits for the fetch to end. Works on any executor (no tokio reactor needed).
    pub async fn wait(mut self) -> Result<(), String> {
        loop {
            if let Some(r) = self.0.borrow_and_update().clone() {
                return r;
            }
            if self.0.changed().await.is_err() {
                return Err("image fetch was abandoned".into());
            }
        }
    }
}

enum Entry {
    Ready { len: u64, used: Instant },
    Fetching(watch::Receiver<Option<Result<(), String>>>),
    Failed { error: String, at: Instant },
}

#[derive(Default)]
struct Inner {
    /// Images the current state needs, by key.
    known: HashMap<String, ImageSource>,
    entries: HashMap<String, Entry>,
    bytes: u64,
}

/// The cache. Fetches run on the tokio runtime given at construction.
pub struct ImageCache {
    dir: PathBuf,
    cap_bytes: u64,
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

impl ImageCache {
    /// Creates the cache directory; files left from an earlier run are reused (they were
    /// complete: only complete files are ever renamed into place).
    pub fn new(
        dir: impl Into<PathBuf>,
        cap_bytes: u64,
        read_timeout: Duration,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<ImageCache>> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .build()
            .map_err(std::io::Error::other)?;
        let cache = Arc::new(ImageCache {
            dir,
            cap_bytes,
            client,
            rt,
            metrics,
            inner: Mutex::new(Inner::default()),
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
                let used = Instant::now();
                inner
                    .entries
                    .insert(name, Entry::Ready { len: m.len(), used });
            }
        }
        self.metrics.set_image_cache_bytes(inner.bytes);
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Records which images the state needs and starts fetching the missing ones
    /// (prefetch: a node entering a ramdisk state has its images ready before it boots).
    pub fn update(self: &Arc<Self>, snap: &Snapshot, cfg: &BootConfig) {
        let needed = needed_images(snap, cfg);
        let to_fetch: Vec<(String, String)> = {
            let mut inner = self.lock();
            inner.known = needed;
            inner
                .known
                .iter()
                .filter(|(k, _)| !inner.entries.contains_key(*k))
                .filter_map(|(k, src)| match src {
                    ImageSource::Url(u) => Some((k.clone(), u.clone())),
                    ImageSource::File(_) => None,
                })
                .collect()
        };
        for (key, url) in to_fetch {
            self.start_fetch(key, url);
        }
    }

    /// Finds the image for `images/<key>/<name>`, starting a fetch if needed.
    pub fn lookup(self: &Arc<Self>, key: &str, name: &str) -> Lookup {
        let (src, entry_state) = {
            let mut inner = self.lock();
            let Some(src) = inner.known.get(key).cloned() else {
                return Lookup::Unknown;
            };
            if src.file_name() != name {
                return Lookup::Unknown;
            }
            let state = match inner.entries.get_mut(key) {
                Some(Entry::Ready { len, used }) => {
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
                _ => None,
            };
            (src, state)
        };
        if let Some(s) = entry_state {
            return s;
        }
        match src {
            ImageSource::File(p) => match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => Lookup::Ready {
                    path: PathBuf::from(p),
                    len: m.len(),
                },
                Ok(_) => Lookup::Failed(format!("{p} is not a regular file")),
                Err(e) => Lookup::Failed(format!("{p}: {e}")),
            },
            ImageSource::Url(url) => Lookup::Pending(self.start_fetch(key.to_owned(), url)),
        }
    }

    /// Starts one fetch for `key` unless one is running; returns its completion.
    fn start_fetch(self: &Arc<Self>, key: String, url: String) -> PendingFetch {
        let (tx, rx) = watch::channel(None);
        {
            let mut inner = self.lock();
            match inner.entries.get(&key) {
                Some(Entry::Fetching(rx)) => return PendingFetch(rx.clone()),
                Some(Entry::Ready { .. }) => {
                    let _ = tx.send(Some(Ok(())));
                    return PendingFetch(rx);
                }
                _ => {}
            }
            inner
                .entries
                .insert(key.clone(), Entry::Fetching(rx.clone()));
        }
        let me = Arc::clone(self);
        self.rt.spawn(async move {
            let result = me.fetch(&key, &url).await;
            me.finish(&key, &url, &result);
            let _ = tx.send(Some(result.map(|_| ())));
        });
        PendingFetch(rx)
    }

    /// Downloads into a dotfile and renames it into place once complete and of the
    /// announced length.
    async fn fetch(&self, key: &str, url: &str) -> Result<u64, String> {
        use tokio::io::AsyncWriteExt;
        let tmp = self.dir.join(format!(".{key}.part"));
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let announced = resp.content_length();
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut got: u64 = 0;
        let result = async {
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                got += chunk.len() as u64;
                // Bytes beyond Content-Length never arrive here (HTTP framing); an image
                // without a length is bounded by the cache's cap.
                if got > self.cap_bytes {
                    return Err(format!(
                        "GET {url}: larger than the image cache ({} bytes)",
                        self.cap_bytes
                    ));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("{}: {e}", tmp.display()))?;
            }
            if let Some(a) = announced.filter(|a| *a != got) {
                return Err(format!("GET {url}: got {got} of {a} bytes"));
            }
            file.sync_all()
                .await
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            tokio::fs::rename(&tmp, self.path(key))
                .await
                .map_err(|e| format!("{}: {e}", tmp.display()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| got)
    }

    fn finish(&self, key: &str, url: &str, result: &Result<u64, String>) {
        self.metrics.image_fetched(result.is_ok());
        let mut inner = self.lock();
        match result {
            Ok(len) => {
                tracing::info!(%url, key, bytes = len, "image cached");
                inner.bytes += len;
                let used = Instant::now();
                inner
                    .entries
                    .insert(key.to_owned(), Entry::Ready { len: *len, used });
                self.evict(&mut inner);
            }
            Err(e) => {
                tracing::error!(%url, key, error = %e, "image fetch failed");
                let failed = Entry::Failed {
                    error: e.clone(),
                    at: Instant::now(),
                };
                inner.entries.insert(key.to_owned(), failed);
            }
        }
        self.metrics.set_image_cache_bytes(inner.bytes);
    }

    /// Evicts least recently used images until the cache fits its cap. An evicted file still
    /// being sent stays readable to that transfer (unlinked, not truncated).
    fn evict(&self, inner: &mut Inner) {
        while inner.bytes > self.cap_bytes {
            let oldest = inner
                .entries
                .iter()
                .filter_map(|(k, e)| match e {
                    Entry::Ready { used, len } => Some((*used, k.clone(), *len)),
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

/// Every image some node's current action (or the unknown-machine action) boots, by key.
pub fn needed_images(snap: &Snapshot, cfg: &BootConfig) -> HashMap<String, ImageSource> {
    let mut out = HashMap::new();
    let decisions = snap
        .nodes()
        .iter()
        .filter_map(|n| boot::decide(&n.node, false, cfg).ok())
        .chain(boot::decide_unknown(cfg).ok());
    for d in decisions {
        for img in [d.kernel, d.ramdisk].into_iter().flatten() {
            out.insert(img.cache_key(), img);
        }
    }
    out
}
