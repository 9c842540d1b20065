//! Caps on concurrent sessions, globally and per client address, so one client (or one
//! compromised machine on the provisioning network) cannot starve the rest. Shared by the
//! TFTP transfers and the HTTP connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("too many sessions in all ({0})")]
    Global(usize),
    #[error("too many sessions from this address ({0})")]
    PerClient(usize),
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts open sessions; [`Limiter::acquire`] hands out a permit that frees its slot on drop.
#[derive(Clone)]
pub struct Limiter {
    global_max: usize,
    per_ip_max: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One session's slot; released when dropped.
pub struct Permit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Limiter {
    pub fn new(global_max: usize, per_ip_max: usize) -> Limiter {
        Limiter {
            global_max: global_max.max(1),
            per_ip_max: per_ip_max.max(1),
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `ip`, or says which cap is full.
    pub fn acquire(&self, ip: IpAddr) -> Result<Permit, LimitError> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.global_max {
            return Err(LimitError::Global(self.global_max));
        }
        let n = c.by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip_max {
            return Err(LimitError::PerClient(self.per_ip_max));
        }
        *n += 1;
        c.total += 1;
        Ok(Permit {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_all_and_frees_on_drop() {
        let l = Limiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let p1 = l.acquire(a).expect("1st");
        let _p2 = l.acquire(a).expect("2nd");
        assert_eq!(l.acquire(a).err(), Some(LimitError::PerClient(2)));
        let _p3 = l.acquire(b).expect("other client");
        assert_eq!(l.acquire(b).err(), Some(LimitError::Global(3)));
        drop(p1);
        assert_eq!(l.open(), 2);
        assert!(l.acquire(a).is_ok(), "a freed slot is reusable");
        assert_eq!(l.open(), 2, "the temporary permit was dropped again");
    }
}
