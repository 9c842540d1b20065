//! The change-driven poller: it walks the fleet once — every page of `nodes` and `ports`
//! with only the fields ironpxe reads — and then, every `interval_secs`, asks only what
//! changed: three small listings sorted newest first, a fourth every fifth round
//! ([`refresh`](crate::state::source::refresh)), whose entries it merges into its own view.
//! A full reconciliation every `reconcile_secs` walks only uuids, which removes what was
//! deleted (Ironic keeps no record of deletions). The store gets the whole view only when
//! something changed. A failed or partial request changes nothing and is reported (log,
//! `/metrics`, `/healthz`). Published views are also written atomically to a cache file
//! ([`CacheWriter`]), so a restart while Ironic is down still boots every known machine.
//!
//! With `[ironic.notifications]`, Ironic's own change notifications drive it instead: each
//! burst (coalesced for [`COALESCE`]) costs one `GET` per node it names, and the probes run
//! only every `probe_secs` while the stream is healthy, as a safety net for a lost message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::client::{Client, Kind, Pages, SortKey, FUTURE_TOLERANCE};
use super::notify::{NotifyShared, NotifyStatus};
use super::{source_id, IronicError};
use crate::model::node::{Node, NodeUuid, Port, PortUuid, StateDoc};
use crate::state::source::notification::{
    changes_nothing, not_older, overlay, Batch, Event, PortChange,
};
use crate::state::source::refresh::{Delta, Moved, Stamp, View, Watermark};
use crate::state::source::subset::Subset;
use crate::state::{SourceError, Store, Update};

/// Entries per change-probe page at most (pages start at two and double), and pages per
/// probe: more changes than about 1 600 since the last probe mean a full walk instead.
const PROBE_LIMIT: u32 = 100;
const MAX_PROBE_PAGES: usize = 20;

/// Ports are probed for updates every this many rounds (new ports every round). Each
/// `updated_at` probe is a scan of Ironic's table (no index), and a port's address or
/// client-id rarely changes after enrolment, while a node's state changes all the time.
const PORT_UPDATES_EVERY: u64 = 5;

/// The first page a probe whose window is still open asks next, from how many entries it
/// took last time: a probe that keeps reading a window of recent changes asks for it in
/// one request (each page is a scan of Ironic's table); a settled one asks for two rows.
fn next_first_page(took: usize) -> u32 {
    let took = u32::try_from(took).unwrap_or(u32::MAX);
    took.saturating_add(took / 2)
        .saturating_add(2)
        .min(PROBE_LIMIT)
}

/// Listed uuids the view lacks that a reconciliation fetches one by one; more mean a walk.
const MAX_TARGETED: usize = 200;

/// How long a burst of notifications is gathered before it is applied: one `GET` per node
/// for a provision-state change's `.start`/`.end`/`update` run, one publish per burst.
pub const COALESCE: Duration = Duration::from_millis(100);
/// Distinct entries one burst takes at most; more wait for the next one.
const MAX_BATCH: usize = 500;
/// A burst stays open at least this many times as long as the last publish took, so that
/// publishing takes at most about a fifth of a core under any rate of notifications (a
/// publish costs tens of milliseconds at 100 000 nodes), and at most [`MAX_COALESCE`].
const COALESCE_PER_PUBLISH: u32 = 4;
const MAX_COALESCE: Duration = Duration::from_secs(1);

/// How long the next burst gathers, after a publish that took `took`.
fn coalesce_after(took: Duration) -> Duration {
    (took * COALESCE_PER_PUBLISH).clamp(COALESCE, MAX_COALESCE)
}

/// The probes of one refresh, in order (their marks are kept in this order): nodes and
/// ports, each by `updated_at` and `created_at` (new rows, in `id` order), once per listing of
/// the subset (one node query per combination of its single-valued filters, one port query):
/// four for the whole fleet, of which the ports' `updated_at` runs every
/// [`PORT_UPDATES_EVERY`]th round.
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
    /// … or nothing either: an update's payload laid over the node held is the node.
    pub event_payloads: u64,
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

/// The cache file, rewritten after the new state is already served and at most as often
/// as keeps writing it under 1/[`CACHE_SPACING`] of a core.
///
/// Serialising and syncing the whole fleet takes a few milliseconds at a hundred nodes but
/// about a second at 100 000, where changes arrive every refresh: a small fleet's cache is
/// always current; a large one's trails the served state by up to `CACHE_SPACING` times one
/// write (about 20 s at 100 000 nodes), which only a restart while Ironic is down notices.
pub struct CacheWriter {
    path: PathBuf,
    spacing: u32,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// When the last write ended and how long it took.
    last: Option<(Instant, Duration)>,
    /// The newest state not yet written.
    pending: Option<StateDoc>,
}

impl CacheWriter {
    /// `spacing`: the time between writes is at least this many times the last write's.
    pub fn new(path: PathBuf, spacing: u32) -> CacheWriter {
        CacheWriter {
            path,
            spacing,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// Takes a new state: written now when due, else kept for [`flush_if_due`](Self::flush_if_due).
    fn offer(&self, doc: StateDoc) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).pending = Some(doc);
        self.flush_if_due();
    }

    /// Writes the newest state not yet written, if the last write is long enough ago. Blocks.
    fn flush_if_due(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = st
            .last
            .is_none_or(|(at, took)| at.elapsed() >= took * self.spacing);
        if !due {
            return;
        }
        if let Some(doc) = st.pending.take() {
            let started = Instant::now();
            if let Err(e) = write_cache(&self.path, &doc) {
                tracing::warn!(cache = %self.path.display(), error = %e, "cannot write the Ironic cache");
            }
            st.last = Some((Instant::now(), started.elapsed()));
        }
    }
}

/// A busy poller spends at most 1/20 of a core on its cache (see [`CacheWriter`]).
const CACHE_SPACING: u32 = 20;

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
    payloads: u64,
    /// The newest `updated_at` of each node's notifications taken in: an older payload
    /// arriving late (API workers emit independently) is not laid over a newer node.
    stamps: HashMap<NodeUuid, Stamp>,
    /// Notified nodes may be read one by one at this pace; past it they wait for a probe
    /// round, and `deferred` says one is owed.
    reads_left: ReadBudget,
    deferred: bool,
    /// What each probe asks ([`probes`]), its mark, and the first page size it asks next
    /// (what it took last time, plus room).
    probes: Vec<(Kind, SortKey, String)>,
    marks: Vec<Watermark>,
    sizes: Vec<u32>,
    /// Incremental rounds so far: port updates are probed every [`PORT_UPDATES_EVERY`]th.
    round: u64,
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
            payloads: 0,
            stamps: HashMap::new(),
            reads_left: ReadBudget::new(Instant::now()),
            deferred: false,
            marks: Vec::new(),
            sizes: Vec::new(),
            round: 0,
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
            let one = Pages {
                first: 1,
                limit: 1,
                max: 1,
            };
            let p = self.client.probe(*kind, *key, query, None, one).await?;
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
        self.sizes = vec![2; marks.len()];
        self.marks = marks;
        self.probes = probes;
        self.walks += 1;
        self.need_walk = false;
        self.last_reconcile = Instant::now();
        Ok(())
    }

    /// The change probes of one round, merged into the view only when all are complete.
    async fn incremental(&mut self) -> Result<bool, IronicError> {
        let mut probes = Vec::with_capacity(self.probes.len());
        let started = Instant::now();
        let round = self.round;
        self.round += 1;
        for ((mark, size), (kind, key, query)) in
            self.marks.iter().zip(&mut self.sizes).zip(&self.probes)
        {
            let (kind, key) = (*kind, *key);
            if (kind, key) == (Kind::Ports, SortKey::UpdatedAt) && round % PORT_UPDATES_EVERY != 0 {
                probes.push(None);
                continue;
            }
            let cutoff = mark.cutoff(self.cfg.overlap);
            let pages = Pages {
                first: *size,
                limit: PROBE_LIMIT,
                max: MAX_PROBE_PAGES,
            };
            let p = self.client.probe(kind, key, query, cutoff, pages).await?;
            if !p.complete {
                tracing::warn!(
                    listing = kind.path(),
                    sort_key = key.name(),
                    "more changes since the last probe than one probe reads: walking the fleet"
                );
                self.walk().await?;
                return Ok(true);
            }
            probes.push(Some(p));
        }
        let mut delta = Delta::default();
        let mut unreadable = 0usize;
        let filtered = self.client.subset().node_queries() != [String::new()];
        for (((kind, key, query), (p, mark)), size) in self
            .probes
            .iter()
            .zip(probes.into_iter().zip(&mut self.marks))
            .zip(&mut self.sizes)
        {
            let (kind, key) = (*kind, *key);
            let Some(p) = p else { continue };
            let took = p.entries.len();
            // The unfiltered node probe of a subset: what it lists outside the subset left.
            let prune = filtered && query.is_empty();
            let subset = prune.then_some(self.client.subset());
            unreadable += merge_entries(&mut self.view, kind, subset, p.entries, &mut delta);
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
            // A settled mark reads only what is new: expect nothing. An open window is read
            // again next time: expect about as much.
            *size = match mark.is_settled() {
                true => 2,
                false => next_first_page(took),
            };
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

    /// Applies a burst of notifications: a node named is taken from its update payloads when
    /// they make it (see [`overlay`]), else read with one `GET` (a deletion removes it unread,
    /// so does a 404); ports from their payload when complete, else one `GET` each. True when
    /// the view changed.
    async fn apply(&mut self, batch: Batch) -> Result<bool, IronicError> {
        let mut delta = Delta::default();
        let client = self.client.clone();
        let fields: Vec<&str> = client.node_field_names().collect();
        for (uuid, change) in batch.nodes {
            if change.deleted {
                self.stamps.remove(&uuid);
            } else if let Some(payloads) = &change.payloads {
                if let Some(node) =
                    self.node_from_payloads(uuid, payloads, change.complete, &fields)
                {
                    if let Some(n) = node {
                        self.payloads += 1;
                        self.take_node(uuid, Some(n), &mut delta);
                    }
                    continue;
                }
            }
            let fetched = match change.deleted {
                true => None,
                false if !self.reads_left.take(Instant::now()) => {
                    // Over budget: the next probe round reads it with every other change.
                    self.deferred = true;
                    continue;
                }
                false => {
                    self.reads += 1;
                    self.client.node(uuid).await?
                }
            };
            self.take_node(uuid, fetched, &mut delta);
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

    /// What a burst's payloads say of a node, without a read: `Some(None)` when they change
    /// nothing ironpxe reads or are older than what was taken already, `Some(Some(node))` when
    /// they are complete updates laid over the node held, `None` when it must be read.
    fn node_from_payloads(
        &mut self,
        uuid: NodeUuid,
        payloads: &[serde_json::Map<String, serde_json::Value>],
        complete: bool,
        fields: &[&str],
    ) -> Option<Option<Node>> {
        let ceiling = Stamp::from(std::time::SystemTime::now()).plus(FUTURE_TOLERANCE);
        let (fresh, newest) = not_older(payloads, self.stamps.get(&uuid).copied(), ceiling);
        if fresh.is_empty() {
            self.unchanged += 1;
            return Some(None);
        }
        if let Some(newest) = newest {
            self.stamps.insert(uuid, newest);
        }
        let cached = self.view.node(&uuid)?;
        if changes_nothing(cached, fresh.iter().copied(), fields) {
            self.unchanged += 1;
            return Some(None);
        }
        if !complete || self.client.subset().reads_shard() {
            return None;
        }
        overlay(cached, fresh, fields).map(Some)
    }

    /// A node as read or made from payloads (`None`: gone), into the view as this replica's
    /// subset has it.
    fn take_node(&mut self, uuid: NodeUuid, node: Option<Node>, delta: &mut Delta) {
        match node {
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
        self.stamps.retain(|u, _| nodes.contains(u));
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
    let cache = Arc::new(CacheWriter::new(cache, CACHE_SPACING));
    let mut r = Refresher::new(client, cfg);
    let mut last_probe: Option<Instant> = None;
    // A failed burst's changes are only caught by a probe: probe at the normal interval
    // until one succeeds.
    let mut distrust = false;
    let mut window = COALESCE;
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
                        Some(e) => batch = Some(gather(e, &mut n.events, window).await),
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
                distrust |= applied.is_err() || std::mem::take(&mut r.deferred);
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
        let took = Instant::now();
        publish(&mut r, outcome, &store, &cache, &state, &base).await;
        window = coalesce_after(took.elapsed());
    }
}

/// Merges a probe's entries into the view; returns how many did not parse (their last good
/// copies stay). With `prune` (the unfiltered node probe of a subset), a node outside the
/// subset leaves the view.
fn merge_entries(
    view: &mut View,
    kind: Kind,
    prune: Option<&Subset>,
    entries: Vec<serde_json::Value>,
    delta: &mut Delta,
) -> usize {
    let mut unreadable = 0;
    for v in entries {
        match kind {
            Kind::Nodes => match serde_json::from_value::<Node>(v) {
                Ok(n) if prune.is_some_and(|s| !s.selects(&n)) => {
                    delta.nodes_removed += usize::from(view.remove_node(&n.uuid))
                }
                Ok(n) => delta.nodes_changed += usize::from(view.upsert_node(n)),
                Err(_) => unreadable += 1,
            },
            Kind::Ports => match serde_json::from_value::<Port>(v) {
                Ok(p) => delta.ports_changed += usize::from(view.upsert_port(p)),
                Err(_) => unreadable += 1,
            },
        }
    }
    unreadable
}

/// How fast notified nodes are read one by one (`GET /v1/nodes/<uuid>`): 2 a second, bursts
/// of up to 10.
///
/// One GET costs Ironic about 9 ms of CPU at 100 000 nodes, while a probe round returns every
/// change since the last in one request (a table scan, ~50 ms, plus ~0.4 ms a row). A light
/// stream of changes is cheapest and fastest read node by node; a heavy one (1 % of 100 000
/// nodes a minute is 17 a second: 15 % of an Ironic core in GETs) is cheaper in a probe
/// round every `interval_secs`. The budget caps the GETs at about 2 % of a core; what is
/// over it waits for the next probe round, and the poller probes every `interval_secs`
/// until it has run.
#[derive(Clone, Copy, Debug)]
struct ReadBudget {
    tokens: f64,
    at: Instant,
}

const READS_PER_SEC: f64 = 2.0;
const READ_BURST: f64 = 10.0;

impl ReadBudget {
    fn new(now: Instant) -> ReadBudget {
        ReadBudget {
            tokens: READ_BURST,
            at: now,
        }
    }

    /// Takes one read if the budget has it.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * READS_PER_SEC;
        self.tokens = (self.tokens + refill).min(READ_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A burst: the first event and whatever else arrives within `window` (bounded).
async fn gather(first: Event, rx: &mut mpsc::Receiver<Event>, window: Duration) -> Batch {
    let mut batch = Batch::default();
    batch.add(first);
    let until = tokio::time::Instant::now() + window;
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
    cache: &Arc<CacheWriter>,
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
        std::mem::take(&mut r.payloads),
    );
    state.update(|s| {
        s.walks += counts.0;
        s.reconciles += counts.1;
        s.changes += counts.2;
        s.event_reads += reads.0;
        s.event_unchanged += reads.1;
        s.event_payloads += reads.2;
    });
    let recovering = {
        let s = state.get();
        s.last_error.is_some() || s.polls_ok == 0
    };
    let polled = match outcome {
        Ok(changed) if changed || recovering => Ok(Some(r.client.subset().select(r.view.to_doc()))),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    let (store, cache, state, base) =
        (store.clone(), cache.clone(), state.clone(), base.to_owned());
    let taken = tokio::task::spawn_blocking(move || match polled {
        Ok(None) => {
            state.update(|s| {
                s.polls_ok += 1;
                s.last_ok = Some(Instant::now());
            });
            cache.flush_if_due();
        }
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
    let cache = CacheWriter::new(cache.to_owned(), 0);
    take_poll(client.poll().await, client.base_url(), store, &cache, state);
}

/// A complete listing replaces the API's contribution; a failure keeps it. Blocks (snapshot
/// build, then the cache when due).
fn take_poll(
    polled: Result<StateDoc, IronicError>,
    base_url: &str,
    store: &Store,
    cache: &CacheWriter,
    state: &PollState,
) {
    match polled {
        Ok(doc) => {
            let (n, p) = (doc.nodes.len(), doc.ports.len());
            // Served first: the cache is for restarts, the store for the next boot request.
            store.apply(vec![(source_id(), Update::Replace(doc.clone()))]);
            cache.offer(doc);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_named(name: &str) -> StateDoc {
        let node: Node = serde_json::from_value(serde_json::json!({
            "uuid": "00000000-0000-4000-8000-000000000001",
            "name": name,
            "provision_state": "active",
        }))
        .expect("node");
        StateDoc {
            nodes: vec![Arc::new(node)],
            ports: Vec::new(),
        }
    }

    fn cached_name(path: &Path) -> String {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("cache")).expect("json");
        v["nodes"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn notified_reads_follow_their_budget_and_refill_with_time() {
        let t0 = Instant::now();
        let mut b = ReadBudget::new(t0);
        let burst = (0..20).filter(|_| b.take(t0)).count();
        assert_eq!(
            burst, READ_BURST as usize,
            "a burst takes the whole bucket, no more"
        );
        assert!(
            !b.take(t0 + Duration::from_millis(100)),
            "0.2 of a read refilled"
        );
        assert!(
            b.take(t0 + Duration::from_millis(600)),
            "one read after half a second"
        );
        let later = t0 + Duration::from_secs(3600);
        let refilled = (0..20).filter(|_| b.take(later)).count();
        assert_eq!(
            refilled, READ_BURST as usize,
            "an idle hour refills to the burst, not past it"
        );
    }

    #[test]
    fn a_burst_gathers_longer_after_a_costly_publish_within_bounds() {
        assert_eq!(
            coalesce_after(Duration::ZERO),
            COALESCE,
            "never below the floor"
        );
        assert_eq!(
            coalesce_after(Duration::from_millis(40)),
            Duration::from_millis(160),
            "four publishes' time: publishing stays under a fifth of a core"
        );
        assert_eq!(coalesce_after(Duration::from_secs(5)), MAX_COALESCE);
    }

    #[test]
    fn the_cache_is_rewritten_no_more_often_than_its_spacing_allows_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".ironic-cache.json");
        let eager = CacheWriter::new(path.clone(), 0);
        eager.offer(doc_named("one"));
        eager.offer(doc_named("two"));
        assert_eq!(
            cached_name(&path),
            "two",
            "spacing 0: every state is written"
        );

        // A spacing no clock reaches: the first state is written, later ones wait.
        let busy = CacheWriter::new(path.clone(), u32::MAX);
        busy.offer(doc_named("three"));
        busy.offer(doc_named("four"));
        busy.flush_if_due();
        assert_eq!(cached_name(&path), "three");
        let pending = busy.state.lock().expect("lock").pending.take();
        assert_eq!(
            pending.map(|d| d.nodes[0].name.clone()),
            Some(Some("four".to_owned())),
            "the newest unwritten state is kept for the next due write"
        );
    }
}
