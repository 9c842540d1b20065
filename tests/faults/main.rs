//! Fault injection against a real `ironpxe serve` on loopback: a lossy network, vanishing
//! clients, load and session caps, HTTP abuse, state and template faults, signals during
//! transfers, and image fetches that stall, lie or fill the disk.
//!
//! Every wait is bounded; assertions are about counts and outcomes, never speed. Load is
//! spread over 127.x.y.z source addresses (all local on Linux). The CPU-heavy tests take
//! [`serial`] so that two of them never share the (possibly two) cores.
//!
//! One test binary, a module per concern; this file holds what they share: the clients
//! (`common::tftp`, `common::http_client`) bound to a source address and a deadline, and a
//! gate that holds many clients at one point.

#[path = "../common/mod.rs"]
mod common;

mod http_abuse;
mod image_cache;
mod load_and_caps;
mod lossy_network;
mod process;
mod signals;
mod state_faults;
mod template_faults;
mod vanishing_clients;

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::http_client::{Conn, Ending};
use common::tftp::{self, ClientOpts, Failure, Fetch};
use common::*;
use process::*;

const IB_NODE: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const IB_CFG: &str = "pxelinux.cfg/20-7c-fe-90-29-26-52";
const ETH_CFG: &str = "pxelinux.cfg/01-52-54-00-12-34-56";

/// Serialises the CPU-heavy tests.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn lo(a: u8, b: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, a, b, c)
}

fn udp(ip: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"))
}

/// Polls `cond` until it holds, at most `bound`; the failure names `what` and shows the log.
fn wait_for(s: &Ironpxe, what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}\nlog (tail):\n{}",
            tail(&s.log(), 60)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Holds many clients at one point until the test releases them (bounded both ways).
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, usize, bool)>, // arrived, failed, released
    cv: Condvar,
}

impl Gate {
    fn arrive_and_wait(&self, bound: Duration) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        self.cv.notify_all();
        let _released = self
            .cv
            .wait_timeout_while(g, bound, |s| !s.2)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// A client that will never arrive.
    fn fail(&self) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        self.cv.notify_all();
    }

    /// Waits until `n` clients arrived or failed; returns (arrived, failed).
    fn wait_arrived(&self, n: usize, bound: Duration) -> (usize, usize) {
        let g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, bound, |s| s.0 + s.1 < n)
            .unwrap_or_else(|p| p.into_inner());
        (g.0, g.1)
    }

    fn release(&self) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.2 = true;
        self.cv.notify_all();
    }
}

/// A TFTP fetch from `src` that is held at its first packet by `gate`.
fn held_fetch(
    server: SocketAddr,
    src: Ipv4Addr,
    name: &str,
    opts: ClientOpts,
    gate: Arc<Gate>,
) -> JoinHandle<Fetch> {
    let name = name.to_owned();
    thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let sock = udp(src);
            let mut arrived = false;
            let f = tftp::get_hooked(&sock, server, &name, &opts, &mut |_| {
                arrived = true;
                gate.arrive_and_wait(Duration::from_secs(90));
            });
            if !arrived {
                gate.fail();
            }
            f
        })
        .expect("spawn client")
}

fn tftp(s: &Ironpxe, src: Ipv4Addr, name: &str, opts: &ClientOpts) -> Fetch {
    tftp::get(&udp(src), s.tftp, name, opts)
}

/// A config over TFTP, bounded.
fn tftp_text(s: &Ironpxe, name: &str) -> Result<String, Failure> {
    let opts = ClientOpts {
        deadline: Duration::from_secs(10),
        ..ClientOpts::default()
    };
    tftp(s, lo(0, 0, 1), name, &opts)
        .result
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A bounded GET over a fresh connection from 127.0.0.1: (status, body).
fn hget(s: &Ironpxe, path: &str) -> (u16, String) {
    let mut c = Conn::connect(lo(0, 0, 1), s.http).expect("connect");
    let _ = c.stream.set_read_timeout(Some(Duration::from_secs(15)));
    let r = c
        .get(path)
        .unwrap_or_else(|e| panic!("GET {path}: {e}\nlog:\n{}", tail(&s.log(), 40)));
    (r.status, r.text())
}

/// A metric's value (0 when absent), over a bounded request.
fn metric(s: &Ironpxe, series: &str) -> f64 {
    hget(s, "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn healthy(s: &Ironpxe) {
    let (code, body) = hget(s, "/healthz");
    assert_eq!(code, 200, "/healthz: {body}");
}
