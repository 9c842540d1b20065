//! The change-driven poller: it walks the fleet once — every page of `nodes` and `ports`
//! with only the fields ironpxe reads — and then, every `interval_secs`, asks only what
//! changed: four small listings sorted newest first
//! ([`refresh`](crate::state::source::refresh)), whose entries it merges into its own view.
//! A full reconciliation every `reconcile_secs` walks only uuids, which removes what was
//! deleted (Ironic keeps no record of deletions). The store gets the whole view only when
//! something changed. A failed or partial request changes nothing and is reported (log,
//! `/metrics`, `/healthz`). Each published view is also written atomically to a cache file,
//! so a restart while Ironic is down still boots every known machine.
//!
//! With `[ironic.notifications]`, Ironic's own change notifications drive it instead: each
//! burst (coalesced for [`COALESCE`]) costs one `GET` per node it names, and the probes run
//! only every `probe_secs` while the stream is healthy, as a safety net for a lost message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::client::{Client, Kind, SortKey};
use super::notify::{NotifyShared, NotifyStatus};
use super::{source_id, IronicError};
use crate::model::node::{Node, NodeUuid, Port, PortUuid, StateDoc};
use crate::state::source::notification::{changes_nothing, Batch, Event, PortChange};
use crate::state::source::refresh::{Delta, Moved, View, Watermark};
use crate::state::source::subset::Subset;
use crate::state::{SourceError, Store, Update};

/// Entries per change-probe page at most (pages start at two and double), and pages per
/// probe: more changes than about 1 600 since the last probe mean a full walk instead.
const PROBE_LIMIT: u32 = 100;
const MAX_PROBE_PAGES: usize = 20;

/// Listed uuids the view lacks that a reconciliation fetches one by one; more mean a walk.
const MAX_TARGETED: usize = 200;

/// How long a burst of notifications is gathered before it is applied: one `GET` per node
/// for a provision-state change's `.start`/`.end`/`update` run, one publish per burst.
pub const COALESCE: Duration = Duration::from_millis(100);
/// Distinct entries one burst takes at most; more wait for the next one.
const MAX_BATCH: usize = 500;

/// The probes of one refresh, in order (their marks are kept in this order): nodes and
/// ports, each by `updated_at` and `created_at`, once per listing of the subset (one node
/// query per combination of its single-valued filters, one port query): four for the whole
/// fleet.
///
/// With server-side node filters, one more: every node by `updated_at`, unfiltered, so a
/// node whose placement changed through the API (which bumps `updated_at`) leaves this
/// replica at once instead of at the next reconciliation. It costs Ironic the encoding of
/// every change in the fleet, per replica.
fn probes(subset: &Subset) -> Vec<(Kind, SortKey, String)> {
    let mut out = Vec::new();
    if subset.node_queries() != [String::new()] {
        out.push((Kind::Nodes, SortKey::UpdatedAt, String::new()));
    }
    for q in subset.node_queries() {
        for key in [SortKey::UpdatedAt, SortKey::CreatedAt] {
            out.push((Kind::Nodes, key, q.clone()));
        }
    }
    for key in [SortKey::UpdatedAt, SortKey::CreatedAt] {
        out.push((Kind::Ports, key, subset.port_query()));
    }
    out
}

/// The poller's state, for `/metrics` and `/healthz`.
#[derive(Default, Debug, Clone)]
pub struct PollStatus {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
    pub nodes: usize,
    pub ports: usize,
    /// Full walks (the first, and any fallback: a probe that lost track).
    pub walks: u64,
    /// Reconciliations by uuid walk.
    pub reconciles: u64,
    /// Node and port changes taken in from probes and reconciliations.
    pub changes: u64,
    /// Notification bursts applied.
    pub event_batches: u64,
    /// Nodes a burst named, by what it cost: a `GET`, or nothing (the payloads showed no
    /// change in what ironpxe reads).
    pub event_reads: u64,
    pub event_unchanged: u64,
    /// The notification stream, when `[ironic.notifications]` is on.
    pub notify: Option<NotifyStatus>,
}

/// Shared view of the poller.
#[derive(Default)]
pub struct PollState(Mutex<PollStatus>, std::sync::OnceLock<Arc<NotifyShared>>);

impl PollState {
    pub fn get(&self) -> PollStatus {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        s.notify = self.1.get().map(|n| n.status());
        s
    }

    /// Shows this notification stream's counts in [`PollStatus::notify`].
    pub fn set_notify(&self, n: Arc<NotifyShared>) {
        let _ = self.1.set(n);
    }

    fn update(&self, f: impl FnOnce(&mut PollStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Loads the cache from the last good poll into the store (a restart while Ironic is down).
pub fn load_cache(store: &Store, cache: &Path) {
    load_cache_of(store, cache, &Subset::default());
}

/// [`load_cache`], keeping only `subset`'s nodes: the subset may have changed since the cache
/// was written.
pub fn load_cache_of(store: &Store, cache: &Path, subset: &Subset) {
    match std::fs::read(cache) {
        Ok(bytes) => match StateDoc::from_slice(&bytes) {
            Ok(doc) => {
                let cached = doc.nodes.len();
                let doc = subset.select(doc);
                if doc.nodes.len() < cached {
                    tracing::info!(cache = %cache.display(), dropped = cached - doc.nodes.len(), "cached nodes outside [ironic.subset] not loaded");
                }
                tracing::info!(cache = %cache.display(), nodes = doc.nodes.len(), "loaded the last good Ironic poll");
                store.apply(vec![(source_id(), Update::Replace(doc))]);
            }
            Err(e) => {
                tracing::warn!(cache = %cache.display(), error = %e, "Ironic cache unreadable; ignored")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(cache = %cache.display(), error = %e, "Ironic cache unreadable; ignored")
        }
    }
}

/// Writes the poll to `cache` atomically (a dotfile beside it, synced, then renamed), unless
/// the cache already holds exactly this.
fn write_cache(cache: &Path, doc: &StateDoc) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        nodes: &'a [Arc<Node>],
        ports: &'a [Arc<Port>],
    }
    let data = serde_json::to_vec(&Out {
        nodes: &doc.nodes,
        ports: &doc.ports,
    })
    .map_err(std::io::Error::other)?;
    if std::fs::read(cache).is_ok_and(|old| old == data) {
        return Ok(());
    }
    crate::support::fs::write_atomic(cache, &data)
}

/// The change-driven refresh's timing (`[ironic]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// Between change probes.
    pub interval: Duration,
    /// Between uuid reconciliations.
    pub reconcile: Duration,
    /// How far back before the last newest timestamp a probe reads.
    pub overlap: Duration,
}

/// The poller's view of Ironic and where its probes stand.
struct Refresher {
    client: Arc<Client>,
    cfg: Refresh,
    view: View,
    /// Counts since the last report (see [`PollStatus`]).
    walks: u64,
    reconciles: u64,
    changes: u64,
    /// Node reads and skipped reads for notifications (see [`PollStatus`]).
    reads: u64,
    unchanged: u64,
    /// What each probe asks ([`probes`]) and its mark.
    probes: Vec<(Kind, SortKey, String)>,
    marks: Vec<Watermark>,
    /// No complete walk yet, or the probes lost track: walk everything next.
    need_walk: bool,
    last_reconcile: Instant,
}

impl Refresher {
    fn new(client: Arc<Client>, cfg: Refresh) -> Refresher {
        Refresher {
            client,
            cfg,
            view: View::default(),
            walks: 0,
            reconciles: 0,
            changes: 0,
            reads: 0,
            unchanged: 0,
            marks: Vec::new(),
            probes: Vec::new(),
            need_walk: true,
            last_reconcile: Instant::now(),
        }
    }

    /// One refresh; true when the view changed.
    async fn cycle(&mut self) -> Result<bool, IronicError> {
        if self.need_walk {
            self.walk().await?;
            return Ok(true);
        }
        let mut changed = false;
        if self.last_reconcile.elapsed() >= self.cfg.reconcile {
            changed |= self.reconcile().await?;
            if self.need_walk {
                return Ok(changed);
            }
        }
        Ok(self.incremental().await? || changed)
    }

    /// The full walk. The marks are taken first: whatever changes during the walk is newer
    /// than them, so the next probe reads it again.
    async fn walk(&mut self) -> Result<(), IronicError> {
        let probes = probes(self.client.subset());
        let mut marks = vec![Watermark::default(); probes.len()];
        for (mark, (kind, key, query)) in marks.iter_mut().zip(&probes) {
            let started = Instant::now();
            let p = self.client.probe(*kind, *key, query, None, 1, 1).await?;
            mark.advance(
                p.top,
                self.cfg.overlap,
                started,
                Instant::now(),
                p.ironic_now,
            );
        }
        let doc = self.client.poll().await?;
        let (view, dropped) = View::from_doc(doc);
        if dropped > 0 {
            tracing::warn!(dropped, "Ironic listed ports without a uuid; ignored");
        }
        tracing::info!(
            nodes = view.node_count(),
            ports = view.port_count(),
            "walked every Ironic node and port"
        );
        self.view = view;
        self.marks = marks;
        self.probes = probes;
        self.walks += 1;
        self.need_walk = false;
        self.last_reconcile = Instant::now();
        Ok(())
    }

    /// The four change probes, merged into the view only when all four are complete.
    async fn incremental(&mut self) -> Result<bool, IronicError> {
        let mut probes = Vec::with_capacity(self.probes.len());
        let started = Instant::now();
        for (mark, (kind, key, query)) in self.marks.iter().zip(&self.probes) {
            let (kind, key) = (*kind, *key);
            let cutoff = mark.cutoff(self.cfg.overlap);
            let p = self
                .client
                .probe(kind, key, query, cutoff, PROBE_LIMIT, MAX_PROBE_PAGES)
                .await?;
            if !p.complete {
                tracing::warn!(
                    listing = kind.path(),
                    sort_key = key.name(),
                    "more changes since the last probe than one probe reads: walking the fleet"
                );
                self.walk().await?;
                return Ok(true);
            }
            probes.push(p);
        }
        let mut delta = Delta::default();
        let mut unreadable = 0usize;
        let filtered = self.client.subset().node_queries() != [String::new()];
        for ((kind, key, query), (p, mark)) in self
            .probes
            .iter()
            .zip(probes.into_iter().zip(&mut self.marks))
        {
            let (kind, key) = (*kind, *key);
            // The unfiltered node probe of a subset: what it lists outside the subset left.
            let prune = filtered && query.is_empty();
            for v in p.entries {
                match kind {
                    Kind::Nodes => match serde_json::from_value::<Node>(v) {
                        Ok(n) if prune && !self.client.subset().selects(&n) => {
                            delta.nodes_removed += usize::from(self.view.remove_node(&n.uuid))
                        }
                        Ok(n) => delta.nodes_changed += usize::from(self.view.upsert_node(n)),
                        Err(_) => unreadable += 1,
                    },
                    Kind::Ports => match serde_json::from_value::<Port>(v) {
                        Ok(p) => delta.ports_changed += usize::from(self.view.upsert_port(p)),
                        Err(_) => unreadable += 1,
                    },
                }
            }
            if mark.advance(
                p.top,
                self.cfg.overlap,
                started,
                Instant::now(),
                p.ironic_now,
            ) == Moved::Backward
            {
                tracing::debug!(
                    listing = kind.path(),
                    sort_key = key.name(),
                    "the newest timestamp went back (a deletion, or Ironic's clock); the mark follows"
                );
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "Ironic sent entries ironpxe cannot read; their last good copies are kept"
            );
        }
        if delta.any() {
            tracing::debug!(?delta, "Ironic changes taken in");
        }
        self.changes += (delta.nodes_changed + delta.ports_changed) as u64;
        Ok(delta.any())
    }

    /// Applies a burst of notifications: one `GET` per node named (a deletion removes it
    /// unread, so does a 404), ports from their payload when complete, else one `GET` each.
    /// True when the view changed.
    async fn apply(&mut self, batch: Batch) -> Result<bool, IronicError> {
        let mut delta = Delta::default();
        let fields: Vec<&str> = self.client.node_field_names().collect();
        for (uuid, change) in batch.nodes {
            if let (false, Some(payloads), Some(cached)) =
                (change.deleted, &change.payloads, self.view.node(&uuid))
            {
                if changes_nothing(cached, payloads, &fields) {
                    self.unchanged += 1;
                    continue;
                }
            }
            let fetched = match change.deleted {
                true => None,
                false => {
                    self.reads += 1;
                    self.client.node(uuid).await?
                }
            };
            match fetched {
                Some(n) if self.client.subset().selects(&n) => {
                    delta.nodes_changed += usize::from(self.view.upsert_node(n))
                }
                // Out of this replica's subset: its ports stay (a subset filters them at
                // publish), as after a probe.
                Some(_) => delta.nodes_removed += usize::from(self.view.remove_node(&uuid)),
                None => {
                    delta.nodes_removed += usize::from(self.view.remove_node(&uuid));
                    delta.ports_removed += self.view.remove_ports_of(&uuid);
                }
            }
        }
        for (uuid, change) in batch.ports {
            let port = match change {
                PortChange::Deleted => None,
                PortChange::Upsert(p) => Some(*p),
                PortChange::Fetch => self.client.port(uuid).await?,
            };
            match port {
                Some(p) => delta.ports_changed += usize::from(self.view.upsert_port(p)),
                None => delta.ports_removed += usize::from(self.view.remove_port(&uuid)),
            }
        }
        if delta.any() {
            tracing::debug!(?delta, "Ironic notifications taken in");
        }
        self.changes +=
            (delta.nodes_changed + delta.ports_changed + delta.nodes_removed + delta.ports_removed)
                as u64;
        Ok(delta.any())
    }

    /// When the next refresh is due: a probe round every `period`, a reconciliation every
    /// `reconcile`, whichever comes first.
    fn next_due(&self, last_probe: Option<Instant>, period: Duration) -> Instant {
        match last_probe {
            None => Instant::now(),
            Some(t) => (t + period).min(self.last_reconcile + self.cfg.reconcile),
        }
    }

    /// Removes what Ironic no longer lists and fetches what the view lacks.
    async fn reconcile(&mut self) -> Result<bool, IronicError> {
        let subset = self.client.subset();
        let (mut nodes, mut bad_n) = (Vec::new(), 0);
        for q in subset.node_queries() {
            let (listed, bad) = self.client.uuids(Kind::Nodes, &q).await?;
            nodes.extend(listed);
            bad_n += bad;
        }
        let (ports, bad_p) = self.client.uuids(Kind::Ports, &subset.port_query()).await?;
        let nodes: std::collections::BTreeSet<NodeUuid> = nodes
            .iter()
            .filter_map(|u| NodeUuid::parse(u).ok())
            .collect();
        let ports: std::collections::BTreeSet<PortUuid> = ports
            .iter()
            .filter_map(|u| PortUuid::parse(u).ok())
            .collect();
        let mut delta = self.view.retain_listed(&nodes, &ports);
        let (unknown_nodes, unknown_ports) = self.view.unknown(&nodes, &ports);
        if unknown_nodes.len() + unknown_ports.len() > MAX_TARGETED {
            tracing::warn!(
                nodes = unknown_nodes.len(),
                ports = unknown_ports.len(),
                "reconciliation found many entries the probes missed: walking the fleet"
            );
            self.walk().await?;
            return Ok(true);
        }
        // One request at a time: these are rare, and Ironic serves other clients too.
        for u in &unknown_nodes {
            if let Some(n) = self.client.node(*u).await? {
                delta.nodes_changed += usize::from(self.view.upsert_node(n));
            }
        }
        for u in &unknown_ports {
            if let Some(p) = self.client.port(*u).await? {
                delta.ports_changed += usize::from(self.view.upsert_port(p));
            }
        }
        self.last_reconcile = Instant::now();
        self.reconciles += 1;
        self.changes +=
            (delta.nodes_changed + delta.ports_changed + delta.nodes_removed + delta.ports_removed)
                as u64;
        let orphans = self.view.orphan_ports();
        tracing::info!(
            nodes = self.view.node_count(),
            ports = self.view.port_count(),
            removed_nodes = delta.nodes_removed,
            removed_ports = delta.ports_removed,
            fetched_nodes = unknown_nodes.len(),
            fetched_ports = unknown_ports.len(),
            unreadable_uuids = bad_n + bad_p,
            orphan_ports = orphans,
            "reconciled with Ironic"
        );
        Ok(delta.any())
    }
}

/// Ironic's notifications as the poller takes them: the decoded events and the stream's
/// shared state (health, resync requests), and how often to probe while it is healthy.
pub struct Notifications {
    pub events: mpsc::Receiver<Event>,
    pub shared: Arc<NotifyShared>,
    pub probe_every: Duration,
}

/// Refreshes forever, feeding the store; returns only when the store's owner goes away.
///
/// Only the requests run on the runtime. Taking a changed view in — the cache file written
/// and synced, the snapshot of every node built — blocks for as long as the fleet is large,
/// so it runs on the blocking pool, not on a worker that also serves HTTP.
///
/// With `notices`, a probe round runs every `probe_every` while the stream is up (every
/// `interval` while it is down), at once on a resync request (a (re)connect, an overflow),
/// and each burst of events is applied as it comes.
pub async fn run_poller(
    client: Arc<Client>,
    store: Arc<Store>,
    cache: PathBuf,
    cfg: Refresh,
    state: Arc<PollState>,
    mut notices: Option<Notifications>,
) {
    let base = client.base_url().to_owned();
    let mut r = Refresher::new(client, cfg);
    let mut last_probe: Option<Instant> = None;
    // A failed burst's changes are only caught by a probe: probe at the normal interval
    // until one succeeds.
    let mut distrust = false;
    loop {
        let up = !distrust && notices.as_ref().is_some_and(|n| n.shared.is_up());
        let period = match (&notices, up) {
            (Some(n), true) => n.probe_every,
            _ => cfg.interval,
        };
        let due = r.next_due(last_probe, period);
        let mut batch = None;
        match notices.as_mut() {
            None => tokio::time::sleep_until(due.into()).await,
            Some(n) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = n.shared.wake.notified() => {
                        if !n.shared.take_resync() {
                            continue; // health changed: recompute the period
                        }
                    }
                    ev = n.events.recv() => match ev {
                        Some(e) => batch = Some(gather(e, &mut n.events).await),
                        None => {
                            tracing::warn!("the notification consumer stopped; probing every interval_secs");
                            notices = None;
                            continue;
                        }
                    },
                }
            }
        }
        let outcome = match batch {
            // Before the first walk the view is empty: the walk reads these changes anyway.
            Some(_) if r.need_walk => continue,
            Some(b) => {
                let applied = r.apply(b).await;
                distrust = applied.is_err();
                state.update(|s| s.event_batches += 1);
                applied
            }
            None => {
                last_probe = Some(Instant::now());
                let o = r.cycle().await;
                if o.is_ok() {
                    distrust = false;
                }
                o
            }
        };
        publish(&mut r, outcome, &store, &cache, &state, &base).await;
    }
}

/// A burst: the first event and whatever else arrives within [`COALESCE`] (bounded).
async fn gather(first: Event, rx: &mut mpsc::Receiver<Event>) -> Batch {
    let mut batch = Batch::default();
    batch.add(first);
    let until = tokio::time::Instant::now() + COALESCE;
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(e)) => batch.add(e),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Reports a refresh and, when the view changed (or the last one failed), hands it to the
/// store and the cache on the blocking pool.
async fn publish(
    r: &mut Refresher,
    outcome: Result<bool, IronicError>,
    store: &Arc<Store>,
    cache: &Path,
    state: &Arc<PollState>,
    base: &str,
) {
    let counts = (
        std::mem::take(&mut r.walks),
        std::mem::take(&mut r.reconciles),
        std::mem::take(&mut r.changes),
    );
    let reads = (
        std::mem::take(&mut r.reads),
        std::mem::take(&mut r.unchanged),
    );
    state.update(|s| {
        s.walks += counts.0;
        s.reconciles += counts.1;
        s.changes += counts.2;
        s.event_reads += reads.0;
        s.event_unchanged += reads.1;
    });
    let recovering = state.get().last_error.is_some() || state.get().polls_ok == 0;
    let polled = match outcome {
        Ok(changed) if changed || recovering => Ok(Some(r.client.subset().select(r.view.to_doc()))),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    let (store, cache, state, base) = (
        store.clone(),
        cache.to_owned(),
        state.clone(),
        base.to_owned(),
    );
    let taken = tokio::task::spawn_blocking(move || match polled {
        Ok(None) => state.update(|s| {
            s.polls_ok += 1;
            s.last_ok = Some(Instant::now());
        }),
        Ok(Some(doc)) => take_poll(Ok(doc), &base, &store, &cache, &state),
        Err(e) => take_poll(Err(e), &base, &store, &cache, &state),
    })
    .await;
    if let Err(e) = taken {
        tracing::error!(error = %e, "taking in an Ironic refresh failed");
    }
}

/// One poll, taken in on the calling thread (tests, one-shot use; the server's poller keeps
/// that part off the runtime, see [`run_poller`]).
pub async fn poll_once(client: &Client, store: &Store, cache: &Path, state: &PollState) {
    take_poll(client.poll().await, client.base_url(), store, cache, state);
}

/// A complete listing replaces the API's contribution; a failure keeps it. Blocks (file
/// write and sync, snapshot build).
fn take_poll(
    polled: Result<StateDoc, IronicError>,
    base_url: &str,
    store: &Store,
    cache: &Path,
    state: &PollState,
) {
    match polled {
        Ok(doc) => {
            let (n, p) = (doc.nodes.len(), doc.ports.len());
            if let Err(e) = write_cache(cache, &doc) {
                tracing::warn!(cache = %cache.display(), error = %e, "cannot write the Ironic cache");
            }
            store.apply(vec![(source_id(), Update::Replace(doc))]);
            state.update(|s| {
                s.polls_ok += 1;
                s.last_ok = Some(Instant::now());
                s.last_error = None;
                s.nodes = n;
                s.ports = p;
            });
        }
        Err(e) => {
            let message = e.to_string();
            tracing::warn!(ironic = base_url, error = %message, "Ironic poll failed; serving the last good state");
            store.apply(vec![(
                source_id(),
                Update::Failed(SourceError {
                    source: "ironic-api".into(),
                    message: message.clone(),
                    line: 0,
                    column: 0,
                }),
            )]);
            state.update(|s| {
                s.polls_failed += 1;
                s.last_error = Some(message);
            });
        }
    }
}
