//! The pure half of the change-driven Ironic refresh: the poller's own view of the fleet,
//! Ironic's timestamps and the watermark that says which listing entries are new.
//!
//! Ironic answers any full listing at a large per-node cost, so the poller walks the fleet
//! once and then only asks "what changed since": listings sorted by `updated_at` (and by
//! `created_at`, since a never-updated row has `updated_at: null`) newest first, read only
//! down to the last newest timestamp seen minus an overlap window. The window absorbs clock
//! skew between Ironic's API and conductor hosts and rows committed late with an older
//! timestamp; an entry seen twice is compared with the view and costs nothing. Ironic keeps
//! no record of deletions: a periodic walk of uuids removes what vanished.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::model::node::{Node, NodeUuid, Port, PortUuid, StateDoc};

/// An Ironic `created_at`/`updated_at`, in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(i128);

impl Stamp {
    /// Parses Ironic's `2026-12-03T18:04:05.123456+00:00` (also `Z`, no fraction). Ironic
    /// writes UTC only; any other offset is refused rather than guessed.
    pub fn parse(s: &str) -> Option<Stamp> {
        let s = s.trim();
        let base = s
            .strip_suffix("+00:00")
            .or_else(|| s.strip_suffix('Z'))
            .unwrap_or(s);
        if base.len() < 19 || base.contains(['+', 'Z', 'z']) || base[10..].contains('-') {
            return None;
        }
        humantime::parse_rfc3339_weak(base).ok().map(Stamp::from)
    }

    /// `self - d`, saturating.
    pub fn minus(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_sub(d.as_micros() as i128))
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(d.as_micros() as i128))
    }
}

impl From<SystemTime> for Stamp {
    fn from(t: SystemTime) -> Stamp {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Stamp(d.as_micros() as i128),
            Err(e) => Stamp(-(e.duration().as_micros() as i128)),
        }
    }
}

/// The newest timestamp one sorted listing showed last time, and whether rows older than it
/// can still appear.
///
/// A probe reads back `overlap` before the mark: a row may be committed after a newer one
/// was seen (a slow transaction, or a host whose clock is behind). Such a row is dated no
/// earlier than `overlap` before Ironic's clock when the probe that missed it ran, so the
/// window never reaches further back than that (`floor`, from the answer's `Date`): a mark
/// on an old row — a fleet enrolled in bulk long ago, thousands of rows within one overlap —
/// is settled at once instead of being read back whole on every probe. Once a probe that
/// started `overlap` after the mark was first seen has read that window, no such row can
/// appear any more, and later probes read only what is newer than the mark — rows with
/// exactly its timestamp were all seen by then, and a burst of them (a bulk enrolment;
/// MySQL's `DATETIME` keeps whole seconds) would otherwise be read again on every probe — so
/// a quiet fleet costs near-empty answers however large the last burst of changes was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    top: Option<Stamp>,
    /// When the current top was first seen (our monotonic clock).
    seen_at: Option<Instant>,
    /// `overlap` before Ironic's clock at the latest probe since the current top was first
    /// seen: no row that can still appear late is older.
    floor: Option<Stamp>,
    settled: bool,
}

/// How a complete probe moved a watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    /// Nothing dated in the listing, or the same top: unchanged.
    Kept,
    Forward,
    /// The newest entry is older than before: the newest row was deleted, or Ironic's clock
    /// went back. The mark follows, so later changes are still seen.
    Backward,
}

impl Watermark {
    /// Entries at or after this are read; `None`: never probed, take only the top.
    pub fn cutoff(&self, overlap: Duration) -> Option<Stamp> {
        match self.settled {
            true => self.top.map(|t| t.plus(Duration::from_micros(1))),
            false => self.top.map(|t| {
                self.floor
                    .map_or(t.minus(overlap), |f| t.minus(overlap).max(f).min(t))
            }),
        }
    }

    pub fn top(&self) -> Option<Stamp> {
        self.top
    }

    /// No row up to the top can appear any more: probes read only what is newer.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Takes the newest timestamp a complete probe saw (see [`Sifted::top`]); the probe
    /// started at `started` and read from [`cutoff`](Self::cutoff); `now` is when it ended;
    /// `ironic_now` is Ironic's clock when it started (its answer's `Date`), if known.
    pub fn advance(
        &mut self,
        seen: Option<Stamp>,
        overlap: Duration,
        started: Instant,
        now: Instant,
        ironic_now: Option<Stamp>,
    ) -> Moved {
        let moved = match (seen, self.top) {
            (None, _) => Moved::Kept,
            (Some(s), Some(t)) if s == t => Moved::Kept,
            (Some(s), Some(t)) if s < t => Moved::Backward,
            _ => Moved::Forward,
        };
        if moved == Moved::Kept {
            self.floor = self.floor.max(ironic_now.map(|d| d.minus(overlap)));
            if let Some(at) = self.seen_at {
                if started.saturating_duration_since(at) >= overlap {
                    self.settled = true;
                }
            }
        } else {
            self.top = seen;
            self.seen_at = Some(now);
            self.floor = ironic_now.map(|d| d.minus(overlap));
            self.settled = false;
        }
        if let (Some(f), Some(t)) = (self.floor, self.top) {
            self.settled |= f >= t;
        }
        moved
    }
}

/// One page of a probe, sifted.
#[derive(Debug, Default, PartialEq)]
pub struct Sifted {
    /// Indexes of the entries to take in (at or after the cutoff, or undated-but-odd).
    pub take: Vec<usize>,
    /// The newest sane timestamp on the page.
    pub top: Option<Stamp>,
    /// An entry older than the cutoff, or a `null` after a dated entry, was seen: the
    /// listing is sorted newest first, so the probe is done after this page.
    pub reached_old: bool,
    /// A dated (non-`null`) entry was seen on this page or before it.
    pub dated: bool,
}

/// Sifts a page of a probe sorted newest first by one timestamp. `stamps[i]` is entry i's
/// value of the sort key: `None` for `null` — a row never updated, found by the
/// `created_at` probe instead, so skipped here — and `Some(Err(()))` for a value that does
/// not parse, which is taken in (it may be new) but never moves the mark. Stamps later than
/// `ceiling` (our clock plus a tolerance) are taken in but do not count for the mark either:
/// one row dated in the year 2999 would otherwise hide every later change.
///
/// A `null` after a dated entry (on this page, or an earlier one: `dated_before`) ends the
/// probe: the database sorts `NULL`s last in descending order (MySQL, MariaDB, SQLite), so
/// only never-updated rows follow. `NULL`s before any dated entry (PostgreSQL sorts them
/// first) are skipped and paging goes on, bounded by the probe's page cap.
pub fn sift(
    stamps: &[Option<Result<Stamp, ()>>],
    cutoff: Option<Stamp>,
    ceiling: Stamp,
    dated_before: bool,
) -> Sifted {
    let mut out = Sifted::default();
    let mut dated = dated_before;
    for (i, s) in stamps.iter().enumerate() {
        match s {
            None if dated => {
                out.reached_old = true;
                break;
            }
            None => {}
            Some(Err(())) => {
                dated = true;
                out.take.push(i);
            }
            Some(Ok(t)) => {
                dated = true;
                if *t <= ceiling {
                    out.top = out.top.max(Some(*t));
                }
                match cutoff {
                    Some(c) if *t < c => out.reached_old = true,
                    _ => out.take.push(i),
                }
            }
        }
    }
    out.dated = dated;
    out
}

/// What a merge or a reconciliation changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub nodes_changed: usize,
    pub ports_changed: usize,
    pub nodes_removed: usize,
    pub ports_removed: usize,
}

impl Delta {
    pub fn any(&self) -> bool {
        *self != Delta::default()
    }

    pub fn add(&mut self, o: &Delta) {
        self.nodes_changed += o.nodes_changed;
        self.ports_changed += o.ports_changed;
        self.nodes_removed += o.nodes_removed;
        self.ports_removed += o.ports_removed;
    }
}

/// The poller's own copy of Ironic's nodes and ports, by uuid.
#[derive(Clone, Debug, Default)]
pub struct View {
    nodes: BTreeMap<NodeUuid, Arc<Node>>,
    ports: BTreeMap<PortUuid, Arc<Port>>,
}

impl View {
    /// A view of a complete listing; ports without a uuid (never from the API) are dropped
    /// and counted.
    pub fn from_doc(doc: StateDoc) -> (View, usize) {
        let mut v = View::default();
        let mut dropped = 0;
        for n in doc.nodes {
            v.nodes.insert(n.uuid, n);
        }
        for p in doc.ports {
            match p.uuid {
                Some(u) => {
                    v.ports.insert(u, p);
                }
                None => dropped += 1,
            }
        }
        (v, dropped)
    }

    pub fn node(&self, uuid: &NodeUuid) -> Option<&Node> {
        self.nodes.get(uuid).map(|n| &**n)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// Puts a node in; true when it is new or differs from the copy held.
    pub fn upsert_node(&mut self, n: Node) -> bool {
        match self.nodes.get(&n.uuid) {
            Some(old) if **old == n => false,
            _ => {
                self.nodes.insert(n.uuid, Arc::new(n));
                true
            }
        }
    }

    /// Takes a node out (it left this replica's subset); true when it was there.
    pub fn remove_node(&mut self, uuid: &NodeUuid) -> bool {
        self.nodes.remove(uuid).is_some()
    }

    /// Takes a port out (deleted in Ironic); true when it was there.
    pub fn remove_port(&mut self, uuid: &PortUuid) -> bool {
        self.ports.remove(uuid).is_some()
    }

    /// Takes out every port of a deleted node (Ironic deletes them with it, without a port
    /// notification); how many.
    pub fn remove_ports_of(&mut self, node: &NodeUuid) -> usize {
        let before = self.ports.len();
        self.ports.retain(|_, p| p.node_uuid.as_ref() != Some(node));
        before - self.ports.len()
    }

    /// Puts a port in; true when it is new or differs. A port without a uuid is refused.
    pub fn upsert_port(&mut self, p: Port) -> bool {
        let Some(u) = p.uuid else {
            return false;
        };
        match self.ports.get(&u) {
            Some(old) if **old == p => false,
            _ => {
                self.ports.insert(u, Arc::new(p));
                true
            }
        }
    }

    /// Keeps only what a complete uuid walk listed: Ironic keeps no record of deletions.
    pub fn retain_listed(
        &mut self,
        nodes: &BTreeSet<NodeUuid>,
        ports: &BTreeSet<PortUuid>,
    ) -> Delta {
        let (n0, p0) = (self.nodes.len(), self.ports.len());
        self.nodes.retain(|u, _| nodes.contains(u));
        self.ports.retain(|u, _| ports.contains(u));
        Delta {
            nodes_removed: n0 - self.nodes.len(),
            ports_removed: p0 - self.ports.len(),
            ..Delta::default()
        }
    }

    /// Listed uuids the view lacks (to fetch one by one).
    pub fn unknown(
        &self,
        nodes: &BTreeSet<NodeUuid>,
        ports: &BTreeSet<PortUuid>,
    ) -> (Vec<NodeUuid>, Vec<PortUuid>) {
        (
            nodes
                .iter()
                .filter(|u| !self.nodes.contains_key(u))
                .copied()
                .collect(),
            ports
                .iter()
                .filter(|u| !self.ports.contains_key(u))
                .copied()
                .collect(),
        )
    }

    /// Ports whose node the view does not hold (a port created before its node's row was
    /// seen, or a hostile answer): kept, since the next probe may bring the node, but the
    /// index joins them to nothing.
    pub fn orphan_ports(&self) -> usize {
        self.ports
            .values()
            .filter(|p| p.node_uuid.is_none_or(|n| !self.nodes.contains_key(&n)))
            .count()
    }

    /// The whole view as the store's document (Arc clones: cheap at any N).
    pub fn to_doc(&self) -> StateDoc {
        StateDoc {
            nodes: self.nodes.values().cloned().collect(),
            ports: self.ports.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> Stamp {
        Stamp::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    fn node(uuid: &str, state: &str) -> Node {
        serde_json::from_value(serde_json::json!({"uuid": uuid, "provision_state": state}))
            .expect("node")
    }

    fn port(uuid: &str, node: &str, mac: &str) -> Port {
        serde_json::from_value(serde_json::json!({"uuid": uuid, "node_uuid": node, "address": mac}))
            .expect("port")
    }

    const N1: &str = "11111111-1111-4111-8111-111111111111";
    const N2: &str = "22222222-2222-4222-8222-222222222222";
    const P1: &str = "aaaaaaaa-1111-4111-8111-111111111111";
    const P2: &str = "bbbbbbbb-2222-4222-8222-222222222222";

    #[test]
    fn ironic_timestamps_parse_in_every_form_it_writes() {
        let a = st("2026-12-03T18:04:05.123456+00:00");
        let b = st("2026-12-03T18:04:05.123456Z");
        assert_eq!(a, b);
        let whole = st("2026-12-03T18:04:05+00:00");
        assert_eq!(a.minus(Duration::from_micros(123_456)), whole);
        assert_eq!(
            whole.plus(Duration::from_secs(1)),
            st("2026-12-03T18:04:06Z")
        );
        assert!(st("2026-12-03T18:04:05.000001+00:00") > whole);
        for bad in [
            "",
            "null",
            "2026-12-03T18:04:05+02:00",
            "2026-12-03T18:04:05-05:00",
            "2026-13-03T18:04:05Z",
            "yesterday",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_mark_follows_the_newest_entry_both_ways_and_settles_after_the_overlap() {
        let mut w = Watermark::default();
        let o = Duration::from_secs(5);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.cutoff(o), None);
        assert_eq!(w.advance(None, o, at(0), at(0), None), Moved::Kept);
        assert_eq!(w.cutoff(o), None, "nothing dated yet");
        let t = st("2026-12-03T18:00:00Z");
        assert_eq!(w.advance(Some(t), o, at(0), at(1), None), Moved::Forward);
        assert_eq!(w.cutoff(o), Some(st("2026-12-03T17:59:55Z")));
        assert_eq!(w.advance(Some(t), o, at(3), at(3), None), Moved::Kept);
        assert_eq!(
            w.cutoff(o),
            Some(st("2026-12-03T17:59:55Z")),
            "a probe that started within the overlap does not settle it"
        );
        assert_eq!(w.advance(None, o, at(6), at(6), None), Moved::Kept);
        assert_eq!(w.top(), Some(t), "an empty listing keeps the mark");
        assert_eq!(
            w.cutoff(o),
            Some(t.plus(Duration::from_micros(1))),
            "read the window once more than the overlap after first seeing the top: settled, \
             only what is newer than the top is read"
        );
        let newer = st("2026-12-03T18:00:10Z");
        assert_eq!(
            w.advance(Some(newer), o, at(7), at(7), None),
            Moved::Forward
        );
        assert_eq!(
            w.cutoff(o),
            Some(st("2026-12-03T18:00:05Z")),
            "a new top opens the window again"
        );
        let back = st("2026-12-03T17:00:00Z");
        assert_eq!(
            w.advance(Some(back), o, at(8), at(8), None),
            Moved::Backward
        );
        assert_eq!(w.cutoff(o), Some(st("2026-12-03T16:59:55Z")));
    }

    #[test]
    fn a_mark_older_than_the_overlap_on_ironics_clock_is_settled_at_once() {
        let o = Duration::from_secs(5);
        let t0 = Instant::now();
        // A fleet enrolled in bulk a day ago: thousands of rows within one overlap of the
        // top. Ironic's clock says no late row can be older than 5 s before now.
        let mut w = Watermark::default();
        let top = st("2026-12-02T18:00:00Z");
        let date = Some(st("2026-12-03T18:00:00Z"));
        assert_eq!(w.advance(Some(top), o, t0, t0, date), Moved::Forward);
        let past_top = Some(top.plus(Duration::from_micros(1)));
        assert_eq!(
            w.cutoff(o),
            past_top,
            "nothing up to the top can still appear"
        );
        assert!(w.is_settled());

        // A top 2 s before Ironic's clock: the window reaches back only to 5 s before it.
        let mut w = Watermark::default();
        let top = st("2026-12-03T17:59:58Z");
        assert_eq!(w.advance(Some(top), o, t0, t0, date), Moved::Forward);
        assert_eq!(w.cutoff(o), Some(st("2026-12-03T17:59:55Z")));
        assert!(!w.is_settled());
        // A later probe 2 s on (Ironic's clock) narrows it; our own clock has not moved.
        let later = Some(st("2026-12-03T18:00:02Z"));
        assert_eq!(w.advance(Some(top), o, t0, t0, later), Moved::Kept);
        assert_eq!(w.cutoff(o), Some(st("2026-12-03T17:59:57Z")));
        // One 4 s on: nothing up to the top can appear any more.
        let later = Some(st("2026-12-03T18:00:04Z"));
        assert_eq!(w.advance(Some(top), o, t0, t0, later), Moved::Kept);
        assert_eq!(w.cutoff(o), Some(top.plus(Duration::from_micros(1))));
        // Without a Date the window is the whole overlap, as before.
        let mut w = Watermark::default();
        assert_eq!(w.advance(Some(top), o, t0, t0, None), Moved::Forward);
        assert_eq!(w.cutoff(o), Some(st("2026-12-03T17:59:53Z")));
    }

    #[test]
    fn sifting_takes_the_overlap_stops_at_old_and_ignores_the_future_for_the_mark() {
        let now = st("2026-12-03T18:00:00Z");
        let ceiling = now.plus(Duration::from_secs(600));
        let cutoff = Some(st("2026-12-03T17:59:55Z"));
        let stamps = vec![
            Some(Ok(st("2999-01-01T00:00:00Z"))), // hostile: taken, not the mark
            Some(Ok(st("2026-12-03T17:59:59Z"))),
            Some(Err(())),                        // unparsable: taken
            Some(Ok(st("2026-12-03T17:59:55Z"))), // exactly the cutoff: taken (same-time rows)
            None,                                 // never updated: the created_at probe's
            Some(Ok(st("2026-12-03T17:59:54Z"))), // older: not taken, probe done
        ];
        let s = sift(&stamps, cutoff, ceiling, false);
        assert_eq!(s.take, vec![0, 1, 2, 3]);
        assert_eq!(s.top, Some(st("2026-12-03T17:59:59Z")));
        assert!(
            s.reached_old,
            "the null after dated entries ends it (NULLs last)"
        );

        let no_null = [stamps[..4].to_vec(), stamps[5..].to_vec()].concat();
        let s = sift(&no_null, cutoff, ceiling, false);
        assert_eq!(s.take, vec![0, 1, 2, 3]);
        assert!(s.reached_old, "the older entry ends it");

        let recent = sift(&stamps[..4], cutoff, ceiling, false);
        assert!(!recent.reached_old && recent.dated, "page again");
        let next_page = sift(&[None, None], cutoff, ceiling, recent.dated);
        assert!(next_page.reached_old, "NULLs on the next page end it too");

        let nulls_first = [None, None, Some(Ok(st("2026-12-03T17:59:59Z")))];
        let s = sift(&nulls_first, cutoff, ceiling, false);
        assert_eq!(
            s.take,
            vec![2],
            "NULLs first (PostgreSQL): skipped, not the end"
        );
        assert!(!s.reached_old && s.dated);

        let first = sift(&no_null, None, ceiling, false);
        assert_eq!(first.take.len(), 5, "no mark yet: every dated entry");
        assert!(!first.reached_old);
        let empty = sift(&[None, None], cutoff, ceiling, false);
        assert_eq!(
            (empty.top, empty.reached_old, empty.dated),
            (None, false, false)
        );
    }

    #[test]
    fn merging_counts_only_real_changes() {
        let (mut v, dropped) = View::from_doc(StateDoc {
            nodes: vec![Arc::new(node(N1, "deploying"))],
            ports: vec![Arc::new(port(P1, N1, "52:54:00:00:00:01"))],
        });
        assert_eq!(dropped, 0);
        assert!(!v.upsert_node(node(N1, "deploying")), "same node twice");
        assert!(v.upsert_node(node(N1, "active")));
        assert!(v.upsert_node(node(N2, "available")));
        assert!(!v.upsert_port(port(P1, N1, "52:54:00:00:00:01")));
        assert!(v.upsert_port(port(P1, N1, "52:54:00:00:00:02")));
        let mut no_uuid = port(P2, N2, "52:54:00:00:00:03");
        no_uuid.uuid = None;
        assert!(!v.upsert_port(no_uuid), "a port without a uuid is refused");
        assert_eq!((v.node_count(), v.port_count()), (2, 1));
        let n2 = NodeUuid::parse(N2).expect("uuid");
        assert!(v.remove_node(&n2) && !v.remove_node(&n2));
        assert!(v.upsert_node(node(N2, "available")));
        let doc = v.to_doc();
        let states: Vec<_> = doc
            .nodes
            .iter()
            .map(|n| n.provision_state.as_str())
            .collect();
        assert_eq!(states, vec!["active", "available"]);
        assert_eq!(doc.ports[0].address.to_string(), "52:54:00:00:00:02");
    }

    #[test]
    fn reconciliation_removes_what_vanished_and_names_what_is_unknown() {
        let (mut v, _) = View::from_doc(StateDoc {
            nodes: vec![Arc::new(node(N1, "active")), Arc::new(node(N2, "active"))],
            ports: vec![
                Arc::new(port(P1, N1, "52:54:00:00:00:01")),
                Arc::new(port(P2, N2, "52:54:00:00:00:02")),
            ],
        });
        assert_eq!(v.orphan_ports(), 0);
        let n1 = NodeUuid::parse(N1).expect("uuid");
        let p1 = PortUuid::parse(P1).expect("uuid");
        let n3 = NodeUuid::parse("33333333-3333-4333-8333-333333333333").expect("uuid");
        let nodes: BTreeSet<_> = [n1, n3].into();
        let ports: BTreeSet<_> = [p1].into();
        let d = v.retain_listed(&nodes, &ports);
        assert_eq!((d.nodes_removed, d.ports_removed), (1, 1));
        assert!(d.any());
        assert_eq!(v.unknown(&nodes, &ports), (vec![n3], vec![]));
        assert!(!v.retain_listed(&nodes, &ports).any(), "idempotent");
        // A port whose node is gone stays, counted as an orphan.
        assert!(v.upsert_port(port(P2, N2, "52:54:00:00:00:02")));
        assert_eq!(v.orphan_ports(), 1);
    }

    #[test]
    fn a_deleted_nodes_ports_and_a_deleted_port_leave_the_view() {
        let mut v = View::default();
        v.upsert_node(node(N1, "active"));
        v.upsert_node(node(N2, "active"));
        v.upsert_port(port(P1, N1, "52:54:00:00:00:01"));
        v.upsert_port(port(P2, N2, "52:54:00:00:00:02"));
        assert!(v.remove_node(&NodeUuid::parse(N1).expect("uuid")));
        assert_eq!(v.remove_ports_of(&NodeUuid::parse(N1).expect("uuid")), 1);
        assert_eq!(v.remove_ports_of(&NodeUuid::parse(N1).expect("uuid")), 0);
        assert_eq!((v.node_count(), v.port_count()), (1, 1));
        let p2 = PortUuid::parse(P2).expect("uuid");
        assert!(v.remove_port(&p2));
        assert!(!v.remove_port(&p2));
        assert_eq!(v.port_count(), 0);
    }
}
