//! Boot journeys: every request as an event, kept in bounded rings (one global, one per
//! node), and the hardware addresses that asked and matched no node.
//!
//! The serving path only hands an event to a bounded channel (`try_send`: when the recorder
//! falls behind, the event is counted as dropped, never waited for); a recorder thread files
//! it. So recording never blocks a boot. A reader that must see what was just recorded (the
//! admin API) calls [`Journal::flush`]: it counts what was handed over and waits for exactly
//! that much to be filed, waking the recorder from its pause — no guessed sleep.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::model::addr::{self, Mac};
use crate::model::node::NodeUuid;
use crate::model::resource::AskedAddr;
use crate::serving::metrics::{Outcome, Protocol};

/// `[journal]` in the config: ring sizes.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Events kept in all.
    pub global_events: usize,
    /// Events kept per node.
    pub node_events: usize,
    /// Unknown hardware addresses kept (least recently seen evicted first).
    pub unknown_clients: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            global_events: 10_000,
            node_events: 64,
            unknown_clients: 4096,
        }
    }
}

/// Pause of the recorder between batches (cut short when a reader waits in a flush).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// Longest a flush waits: only reached if the recorder is stuck or gone.
const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// Longest requested name kept in an event, in bytes (cut on a character boundary): with it
/// an event stays within the README's "at most 512 bytes an event" (tested).
const NAME_BYTES_MAX: usize = 200;

/// One request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub protocol: &'static str,
    pub client: IpAddr,
    /// What was asked for (cut to at most 200 bytes, on a character boundary).
    pub name: String,
    pub node: Option<NodeUuid>,
    pub port: Option<Mac>,
    pub action: Option<&'static str>,
    pub outcome: &'static str,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// What a request carries into the journal (the id and time are added on filing).
#[derive(Clone, Debug)]
pub struct Record {
    pub protocol: Protocol,
    pub client: IpAddr,
    pub name: String,
    pub node: Option<NodeUuid>,
    pub port: Option<Mac>,
    pub action: Option<&'static str>,
    pub outcome: Outcome,
    pub bytes: u64,
    pub duration_ms: u64,
    /// The hardware address a miss asked under, for the unknown-clients list.
    pub unknown: Option<AskedAddr>,
}

/// A hardware address that asked and matched no node.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownClient {
    pub asked: AskedAddr,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub count: u64,
    pub last_client: IpAddr,
}

/// The journal. Cheap to clone a handle to; reading takes short locks.
pub struct Journal {
    cfg: JournalConfig,
    tx: SyncSender<Record>,
    state: Arc<Mutex<State>>,
    /// Signalled when a batch is filed and when a flush starts waiting.
    changed: Arc<Condvar>,
    /// Records handed to the recorder (a flush waits until as many are filed).
    sent: AtomicU64,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    /// Also the count of records filed.
    next_id: u64,
    /// Readers waiting in [`Journal::flush`]: the recorder then skips its pause.
    flushing: usize,
    global: VecDeque<Arc<Event>>,
    by_node: HashMap<NodeUuid, VecDeque<Arc<Event>>>,
    unknown: HashMap<AskedAddr, UnknownClient>,
    evicted: u64,
}

impl Journal {
    /// Starts the recorder thread.
    pub fn start(cfg: JournalConfig) -> Arc<Journal> {
        let (tx, rx) = sync_channel::<Record>(16_384);
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Condvar::new());
        let (sink, signal) = (state.clone(), changed.clone());
        let c = cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                // File in batches and pause between them: senders then seldom find this
                // thread parked, and a `try_send` that needs no wake-up costs next to nothing.
                while let Ok(first) = rx.recv() {
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    file(&mut s, &c, first);
                    for r in rx.try_iter() {
                        file(&mut s, &c, r);
                    }
                    signal.notify_all();
                    let _ = signal
                        .wait_timeout_while(s, BATCH_PAUSE, |s| s.flushing == 0)
                        .unwrap_or_else(|p| p.into_inner());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the journal; requests are not recorded");
        }
        Arc::new(Journal {
            cfg,
            tx,
            state,
            changed,
            sent: AtomicU64::new(0),
            dropped: Arc::default(),
        })
    }

    /// Records a request without ever waiting.
    pub fn record(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {
                self.sent.fetch_add(1, Release);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events after `since` (an event id), oldest first, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Vec<Arc<Event>> {
        let s = self.lock();
        s.global
            .iter()
            .filter(|e| e.id > since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// A node's journey, oldest first.
    pub fn node_events(&self, node: &NodeUuid) -> Vec<Arc<Event>> {
        self.lock()
            .by_node
            .get(node)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The node's latest event.
    pub fn last_event(&self, node: &NodeUuid) -> Option<Arc<Event>> {
        self.lock()
            .by_node
            .get(node)
            .and_then(|q| q.back().cloned())
    }

    /// Unknown clients, most recently seen first, and how many were evicted by the cap.
    pub fn unknown_clients(&self) -> (Vec<UnknownClient>, u64) {
        let s = self.lock();
        let mut v: Vec<UnknownClient> = s.unknown.values().cloned().collect();
        v.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then(a.asked.cmp(&b.asked))
        });
        (v, s.evicted)
    }

    /// Waits until every record handed over before this call is filed, so a reader sees what
    /// was just recorded (the admin API after a boot request). Exact: it waits for that
    /// count, not for a guessed quiet time, and returns at once when nothing is pending;
    /// bounded by `FLUSH_BOUND` should the recorder be stuck.
    pub fn flush(&self) {
        let target = self.sent.load(Acquire);
        let mut s = self.lock();
        if s.next_id >= target {
            return;
        }
        s.flushing += 1;
        self.changed.notify_all();
        let (mut s, _) = self
            .changed
            .wait_timeout_while(s, FLUSH_BOUND, |s| s.next_id < target)
            .unwrap_or_else(|p| p.into_inner());
        s.flushing -= 1;
    }

    pub fn config(&self) -> &JournalConfig {
        &self.cfg
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn file(s: &mut State, cfg: &JournalConfig, r: Record) {
    s.next_id += 1;
    let time_ms = now_ms();
    if let (Some(asked), None, Outcome::NotFound) = (r.unknown, r.node, r.outcome) {
        note_unknown(s, cfg, asked, r.client, time_ms);
    }
    let ev = Arc::new(Event {
        id: s.next_id,
        time_ms,
        protocol: match r.protocol {
            Protocol::Tftp => "tftp",
            Protocol::Http => "http",
        },
        client: r.client,
        name: cut_name(&r.name).to_owned(),
        node: r.node,
        port: r.port,
        action: r.action,
        outcome: match r.outcome {
            Outcome::Served => "served",
            Outcome::NotFound => "not_found",
            Outcome::Error => "error",
            Outcome::Refused => "refused",
        },
        bytes: r.bytes,
        duration_ms: r.duration_ms,
    });
    push_bounded(&mut s.global, ev.clone(), cfg.global_events);
    if let Some(n) = r.node {
        if cfg.node_events > 0 {
            push_bounded(s.by_node.entry(n).or_default(), ev, cfg.node_events);
        }
    }
}

/// `name` cut to at most [`NAME_BYTES_MAX`] bytes, on a character boundary.
fn cut_name(name: &str) -> &str {
    let mut end = name.len().min(NAME_BYTES_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn push_bounded(q: &mut VecDeque<Arc<Event>>, ev: Arc<Event>, cap: usize) {
    if cap == 0 {
        return;
    }
    while q.len() >= cap {
        q.pop_front();
    }
    q.push_back(ev);
}

/// Counts an unknown address; beyond the cap the least recently seen one is evicted (the
/// table is keyed by attacker-chosen addresses).
fn note_unknown(s: &mut State, cfg: &JournalConfig, asked: AskedAddr, client: IpAddr, now: u64) {
    if let Some(u) = s.unknown.get_mut(&asked) {
        u.count += 1;
        u.last_seen_ms = now;
        u.last_client = client;
        return;
    }
    if cfg.unknown_clients == 0 {
        return;
    }
    if s.unknown.len() >= cfg.unknown_clients {
        let oldest = s
            .unknown
            .iter()
            .min_by_key(|(k, u)| (u.last_seen_ms, **k))
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            s.unknown.remove(&k);
            s.evicted += 1;
        }
    }
    s.unknown.insert(
        asked,
        UnknownClient {
            asked,
            first_seen_ms: now,
            last_seen_ms: now,
            count: 1,
            last_client: client,
        },
    );
}

/// Every spelling of an unknown address (the `ironpxe addr` logic), one per reading.
pub fn derived(asked: &AskedAddr, prefix: [u8; 12]) -> Vec<addr::Derived> {
    asked
        .addr
        .readings()
        .iter()
        .map(|r| addr::derive(r, prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::addr::{AnyAddr, HwType};
    use crate::model::resource::AskedAs;

    fn rec(
        name: &str,
        node: Option<NodeUuid>,
        outcome: Outcome,
        unknown: Option<AskedAddr>,
    ) -> Record {
        Record {
            protocol: Protocol::Tftp,
            client: "192.0.2.9".parse().expect("ip"),
            name: name.into(),
            node,
            port: None,
            action: None,
            outcome,
            bytes: 0,
            duration_ms: 0,
            unknown,
        }
    }

    const ETHERNET: AskedAs = AskedAs::Hw(HwType::Ethernet);
    const INFINIBAND: AskedAs = AskedAs::Hw(HwType::Infiniband);

    fn asked(s: &str, asked_as: AskedAs) -> AskedAddr {
        AskedAddr {
            addr: AnyAddr::parse(s).expect("addr"),
            asked_as,
        }
    }

    #[test]
    fn rings_are_bounded_and_events_are_ordered() {
        let j = Journal::start(JournalConfig {
            global_events: 5,
            node_events: 2,
            unknown_clients: 2,
        });
        let n = NodeUuid([1; 16]);
        for i in 0..8 {
            j.record(rec(&format!("n{i}"), Some(n), Outcome::Served, None));
        }
        j.flush();
        let all = j.events_since(0, 100);
        assert_eq!(all.len(), 5);
        assert_eq!(all.first().map(|e| e.name.as_str()), Some("n3"));
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(j.node_events(&n).len(), 2);
        assert_eq!(
            j.last_event(&n).map(|e| e.name.clone()).as_deref(),
            Some("n7")
        );
        assert_eq!(j.events_since(all[3].id, 100).len(), 1);
    }

    /// What was just recorded is visible after a flush, every time, and a flush waits for
    /// exactly that: 300 record-flush-read rounds cannot take the 4.5 s the old fixed-sleep
    /// `settle` (at least 15 ms a call) needed; a flush with nothing pending does not wait.
    #[test]
    fn flush_makes_what_was_just_recorded_visible_without_a_fixed_sleep() {
        let j = Journal::start(JournalConfig::default());
        let started = std::time::Instant::now();
        for i in 0..300 {
            let name = format!("r{i}");
            j.record(rec(&name, None, Outcome::Served, None));
            j.flush();
            let last = j.events_since(0, 10_000).last().map(|e| e.name.clone());
            assert_eq!(last.as_deref(), Some(name.as_str()), "round {i}");
            j.flush();
        }
        let took = started.elapsed();
        assert!(
            took < 300 * 3 * BATCH_PAUSE,
            "300 rounds took {took:?}: flush slept instead of waiting for the recorder"
        );
    }

    #[test]
    fn unknown_clients_are_counted_and_capped() {
        let j = Journal::start(JournalConfig {
            unknown_clients: 2,
            ..JournalConfig::default()
        });
        let a = asked("52:54:00:00:00:01", ETHERNET);
        for _ in 0..3 {
            j.record(rec(
                "pxelinux.cfg/01-52-54-00-00-00-01",
                None,
                Outcome::NotFound,
                Some(a),
            ));
        }
        j.record(rec(
            "x",
            None,
            Outcome::NotFound,
            Some(asked("52:54:00:00:00:02", ETHERNET)),
        ));
        j.record(rec(
            "y",
            None,
            Outcome::NotFound,
            Some(asked("52:54:00:00:00:03", ETHERNET)),
        ));
        j.flush();
        let (list, evicted) = j.unknown_clients();
        assert_eq!(list.len(), 2);
        assert_eq!(evicted, 1);
        assert!(list
            .iter()
            .all(|u| u.asked != asked("52:54:00:00:00:02", ETHERNET) || u.count == 1));
    }

    #[test]
    fn an_unknown_address_is_derived_under_each_reading() {
        let d = derived(
            &asked("7c:fe:90:03:00:29", INFINIBAND),
            addr::MELLANOX_CLIENT_ID_PREFIX,
        );
        assert_eq!(d.len(), 2, "ethernet and IB readings");
    }

    /// README/SECURITY: "at most 512 bytes an event". A name of 1 000 three-byte characters is
    /// kept as its first 66 (198 bytes, cut on a character boundary), and the event — the
    /// struct, its `Arc` counts, the name's heap buffer and its slots in the global and the
    /// node ring — stays within 512 bytes.
    #[test]
    fn a_long_multibyte_name_is_cut_to_200_bytes_and_the_event_to_512() {
        const EVENT_BYTES_MAX: usize = 512;
        let j = Journal::start(JournalConfig::default());
        let n = NodeUuid([2; 16]);
        let long = "€".repeat(1000);
        j.record(rec(&long, Some(n), Outcome::Served, None));
        j.flush();
        let ev = j.last_event(&n).expect("recorded");
        assert!(ev.name.len() <= NAME_BYTES_MAX, "{} bytes", ev.name.len());
        assert_eq!(ev.name, "€".repeat(66));
        let estimated = std::mem::size_of::<Event>()
            + 2 * std::mem::size_of::<usize>()
            + ev.name.capacity()
            + 2 * std::mem::size_of::<Arc<Event>>();
        assert!(
            estimated <= EVENT_BYTES_MAX,
            "an event takes about {estimated} bytes"
        );
    }
}
