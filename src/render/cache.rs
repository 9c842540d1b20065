//! The render cache: every result, failures included, keyed by everything that changes the
//! output, bounded and sharded.
//!
//! Beyond its cap the least recently used renders are evicted (quick_cache's CLOCK-Pro),
//! where the cache used to be dropped whole: a fleet larger than the cap keeps its hot
//! configs instead of re-rendering all of them at once. A render still running is pinned —
//! never evicted — so every request for it joins the one render; and its waiters hold the
//! result channel themselves, so even a running entry dropped by a reload or a sweep never
//! strands them.

use std::cell::RefCell;
use std::time::Duration;

use quick_cache::sync::{Cache, EntryAction, GuardResult};
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};
use tokio::sync::watch;

use super::{Format, HwType, Outcome, RenderError, Rendered, Server, Slot};
use crate::model::addr::Mac;
use crate::model::node::NodeUuid;

/// Everything that changes a rendered config.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) struct CacheKey {
    pub templates: u64,
    pub node: Option<(NodeUuid, u64)>,
    pub port: Option<Mac>,
    pub hw: Option<HwType>,
    pub format: Format,
    pub server: Server,
}

/// A finished render (failures too) or one still running.
#[derive(Clone)]
enum Entry {
    Done(Outcome),
    Running(Slot),
}

/// Keeps running renders from being evicted.
#[derive(Clone)]
struct PinRunning;

impl Lifecycle<CacheKey, Entry> for PinRunning {
    type RequestState = ();

    fn is_pinned(&self, _key: &CacheKey, entry: &Entry) -> bool {
        matches!(entry, Entry::Running(_))
    }
}

/// What [`RenderCache::claim`] found for a key.
pub(super) enum Claim {
    Done(Outcome),
    /// Another request is rendering it: wait on its slot.
    Running(Slot),
    /// Nobody is: the caller renders it and reports through [`RenderCache::finish`].
    Owner(watch::Sender<Option<Outcome>>, Slot),
}

pub(super) struct RenderCache {
    map: Cache<CacheKey, Entry, UnitWeighter, DefaultHashBuilder, PinRunning>,
}

impl RenderCache {
    /// A cache of about `cap` renders (running ones may briefly take it past that).
    pub fn new(cap: usize) -> RenderCache {
        RenderCache {
            map: Cache::with(
                cap,
                cap as u64,
                UnitWeighter,
                DefaultHashBuilder::default(),
                PinRunning,
            ),
        }
    }

    /// The cached or running render of `key`, or — when there is none — a claim on it:
    /// from then on every other request for `key` waits on the caller's render.
    pub fn claim(&self, key: &CacheKey) -> Claim {
        match self.map.get_value_or_guard(key, None) {
            GuardResult::Value(Entry::Done(r)) => Claim::Done(r),
            GuardResult::Value(Entry::Running(slot)) => Claim::Running(slot),
            GuardResult::Guard(g) => {
                let (tx, slot) = watch::channel(None);
                // Refused only when the key was dropped meanwhile (a reload): the render
                // still runs for this caller, unshared.
                let _ = g.insert(Entry::Running(slot.clone()));
                Claim::Owner(tx, slot)
            }
            // Without a timeout the cache never gives up waiting; should it, render unshared.
            GuardResult::Timeout => {
                let (tx, slot) = watch::channel(None);
                Claim::Owner(tx, slot)
            }
        }
    }

    /// Replaces the running entry that `slot` claimed with its outcome — unless a reload or
    /// a sweep dropped it meanwhile (the key may be claimed again by then). A busy pool
    /// (`Unavailable`) is remembered by nobody: the next request tries again.
    pub fn finish(&self, key: &CacheKey, slot: &Slot, outcome: &Outcome) {
        let ours = |e: &Entry| matches!(e, Entry::Running(s) if s.same_channel(slot));
        if matches!(outcome, Err(RenderError::Unavailable(_))) {
            self.map.remove_if(key, ours);
            return;
        }
        // Whoever finds it cached did not render it.
        let done = outcome.clone().map(|r| Rendered { fresh: false, ..r });
        // A zero timeout: a key being claimed right now is someone else's render.
        let _ = self.map.entry(key, Some(Duration::ZERO), |_, e| {
            if ours(e) {
                *e = Entry::Done(done);
            }
            EntryAction::Retain(())
        });
    }

    /// Keeps only the renders whose key `keep` accepts.
    pub fn retain(&self, keep: impl FnMut(&CacheKey) -> bool) {
        let keep = RefCell::new(keep);
        self.map.retain(|k, _| (keep.borrow_mut())(k));
    }

    pub fn clear(&self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use std::sync::Arc;

    fn key(n: u64) -> CacheKey {
        CacheKey {
            templates: n,
            node: None,
            port: None,
            hw: None,
            format: Format::Ipxe,
            server: Server {
                http_url: "http://192.0.2.1:8080".into(),
                tftp_server: "192.0.2.1".into(),
            },
        }
    }

    fn rendered(body: &str) -> Outcome {
        Ok(Rendered {
            body: ByteString::from(body),
            action: crate::model::boot::Action::LocalBoot,
            reason: Arc::from("test"),
            fresh: true,
        })
    }

    /// Renders `key` to completion through a claim, as the renderer does.
    fn render(cache: &RenderCache, key: &CacheKey, body: &str) {
        let Claim::Owner(tx, slot) = cache.claim(key) else {
            panic!("{key:?} was cached already");
        };
        let out = rendered(body);
        cache.finish(key, &slot, &out);
        let _ = tx.send(Some(out));
    }

    #[test]
    fn the_cap_evicts_old_renders_instead_of_clearing_the_cache() {
        const CAP: u64 = 64;
        let cache = RenderCache::new(CAP as usize);
        for n in 0..=CAP {
            render(&cache, &key(n), &format!("config {n}"));
        }
        let len = cache.len() as u64;
        assert!(len <= CAP, "{len} cached: over the cap");
        assert!(
            len > CAP / 2,
            "{len} cached: the cache was cleared, not evicted"
        );
        // The newest render is there (cleared at the cap, it would be the only one).
        match cache.claim(&key(CAP)) {
            Claim::Done(Ok(r)) => assert_eq!(&*r.body, format!("config {CAP}")),
            _ => panic!("the newest render is not cached"),
        }
    }

    #[test]
    fn running_renders_are_never_evicted_and_their_waiters_get_the_result() {
        const CAP: u64 = 64;
        let cache = RenderCache::new(CAP as usize);
        let Claim::Owner(tx, slot) = cache.claim(&key(1_000)) else {
            panic!("not claimed");
        };
        // A second request joins the running render.
        let Claim::Running(waiter) = cache.claim(&key(1_000)) else {
            panic!("the second request did not join the render");
        };
        // The cache fills up several times over while it runs.
        for n in 0..4 * CAP {
            render(&cache, &key(n), "filler");
        }
        assert!(matches!(cache.claim(&key(1_000)), Claim::Running(_)));
        let out = rendered("the slow one");
        cache.finish(&key(1_000), &slot, &out);
        let _ = tx.send(Some(out));
        let got = waiter.borrow().clone();
        assert!(matches!(got, Some(Ok(r)) if &*r.body == "the slow one"));
        assert!(
            matches!(cache.claim(&key(1_000)), Claim::Done(Ok(r)) if !r.fresh),
            "cached once done"
        );
    }

    #[test]
    fn a_busy_renderer_is_not_remembered_and_a_dropped_claim_is_not_restored() {
        let cache = RenderCache::new(64);
        let Claim::Owner(_tx, slot) = cache.claim(&key(1)) else {
            panic!("not claimed");
        };
        cache.finish(
            &key(1),
            &slot,
            &Err(RenderError::Unavailable("busy".into())),
        );
        assert_eq!(cache.len(), 0, "Unavailable is never cached");

        // A reload drops a running entry; its late result does not come back.
        let Claim::Owner(_tx, slot) = cache.claim(&key(2)) else {
            panic!("not claimed");
        };
        cache.clear();
        cache.finish(&key(2), &slot, &rendered("stale"));
        assert_eq!(cache.len(), 0);
    }
}
