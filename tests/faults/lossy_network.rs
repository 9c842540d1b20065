//! A lossy network between one TFTP client and ironpxe: a UDP relay that drops, duplicates
//! and reorders packets with a fixed seed.

use std::sync::atomic::{AtomicBool, AtomicU32};

use super::common::tftp::{OP_RRQ, OP_WRQ};
use super::*;

/// A tiny fixed-seed PRNG (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

#[derive(Clone, Copy)]
struct Faults {
    drop: u64,
    dup: u64,
    reorder: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU32,
    dropped: AtomicU32,
    duplicated: AtomicU32,
    reordered: AtomicU32,
}

#[derive(Debug, Default, Clone, Copy)]
struct RelayStats {
    forwarded: u32,
    dropped: u32,
    duplicated: u32,
    reordered: u32,
}

/// One direction of the relay: drops, duplicates, and holds a packet back until after the
/// next one (or 20 ms of quiet).
struct Pump {
    rng: XorShift,
    faults: Faults,
    held: Option<(Vec<u8>, SocketAddr)>,
    counters: Arc<Counters>,
}

impl Pump {
    fn forward(&mut self, sock: &UdpSocket, p: &[u8], to: SocketAddr, may_reorder: bool) {
        // Three draws per packet, whatever happens: the fate of the n-th packet is fixed.
        let (drop, dup, reorder) = (
            self.rng.chance(self.faults.drop),
            self.rng.chance(self.faults.dup),
            self.rng.chance(self.faults.reorder),
        );
        if drop {
            self.counters.dropped.fetch_add(1, SeqCst);
            return;
        }
        let send = |b: &[u8], to: SocketAddr| {
            self.counters.forwarded.fetch_add(1, SeqCst);
            let _ = sock.send_to(b, to);
        };
        if let Some((h, hto)) = self.held.take() {
            send(p, to);
            send(&h, hto);
        } else if reorder && may_reorder {
            self.counters.reordered.fetch_add(1, SeqCst);
            self.held = Some((p.to_vec(), to));
            return;
        } else {
            send(p, to);
        }
        if dup {
            self.counters.duplicated.fetch_add(1, SeqCst);
            send(p, to);
        }
    }

    fn flush(&mut self, sock: &UdpSocket) {
        if let Some((h, to)) = self.held.take() {
            self.counters.forwarded.fetch_add(1, SeqCst);
            let _ = sock.send_to(&h, to);
        }
    }
}

/// Sits between one TFTP client and ironpxe. The client talks to `addr`; requests go to
/// ironpxe's listen port, later client packets to the transfer's TID, and everything from
/// the TID comes back to the client from `addr`.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr, seed: u64, faults: Faults) -> Relay {
        let front = Arc::new(udp(lo(0, 0, 1)));
        let back = Arc::new(udp(lo(0, 0, 1)));
        let addr = front.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let tid: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let pump = |seed: u64| Pump {
            rng: XorShift(seed),
            faults,
            held: None,
            counters: counters.clone(),
        };
        let quiet = Duration::from_millis(20);
        let mut threads = Vec::new();
        {
            let (front, back, stop, client, tid) = (
                front.clone(),
                back.clone(),
                stop.clone(),
                client.clone(),
                tid.clone(),
            );
            let mut pump = pump(seed);
            threads.push(thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                front.set_read_timeout(Some(quiet)).expect("timeout");
                while !stop.load(SeqCst) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        pump.flush(&back);
                        continue;
                    };
                    *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    let op = u16::from_be_bytes([buf[0], buf.get(1).copied().unwrap_or(0)]);
                    let is_request = op == OP_RRQ || op == OP_WRQ;
                    let to = if is_request {
                        Some(server)
                    } else {
                        *tid.lock().unwrap_or_else(|p| p.into_inner())
                    };
                    if let Some(to) = to {
                        // Requests are never held back: a late RRQ would start a new transfer.
                        pump.forward(&back, &buf[..n], to, !is_request);
                    }
                }
            }));
        }
        {
            let (front, back, stop) = (front, back, stop.clone());
            let mut pump = pump(seed.rotate_left(17) ^ 0x5555_5555_5555_5555);
            threads.push(thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                back.set_read_timeout(Some(quiet)).expect("timeout");
                while !stop.load(SeqCst) {
                    let Ok((n, from)) = back.recv_from(&mut buf) else {
                        pump.flush(&front);
                        continue;
                    };
                    *tid.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    let to = *client.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(to) = to {
                        pump.forward(&front, &buf[..n], to, true);
                    }
                }
            }));
        }
        Relay {
            addr,
            stop,
            counters,
            threads,
        }
    }

    fn stop(self) -> RelayStats {
        self.stop.store(true, SeqCst);
        for t in self.threads {
            t.join().expect("relay thread");
        }
        let c = &self.counters;
        RelayStats {
            forwarded: c.forwarded.load(SeqCst),
            dropped: c.dropped.load(SeqCst),
            duplicated: c.duplicated.load(SeqCst),
            reordered: c.reordered.load(SeqCst),
        }
    }
}

/// 2 MB through a relay that drops 5 % each way, duplicates 2 % and reorders 2 %: the
/// transfer completes byte-identical at windowsize 1 and 8. blksize 8192 keeps the number of
/// round trips (and so of 200 ms retransmit waits) small enough for a test.
#[test]
fn a_lossy_network_still_delivers_byte_identical_files() {
    let _g = serial();
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 200\nmax_retries = 10\n".into(),
        ..Options::default()
    });
    let data = pattern_file(&s.tftp_root().join("big.img"), 2 << 20);
    let faults = Faults {
        drop: 50,
        dup: 20,
        reorder: 20,
    };
    for (ws, seed) in [(1u16, 0x9E37_79B9_7F4A_7C15u64), (8, 0xD1B5_4A32_D192_ED03)] {
        let relay = Relay::start(s.tftp, seed, faults);
        let opts = ClientOpts {
            blksize: Some(8192),
            windowsize: (ws > 1).then_some(ws),
            tsize: true,
            rto: Duration::from_millis(250),
            max_timeouts: 40,
            deadline: Duration::from_secs(90),
            dally: Duration::from_millis(600),
            ..ClientOpts::default()
        };
        let f = tftp::get(&udp(lo(0, 0, 1)), relay.addr, "big.img", &opts);
        let st = relay.stop();
        let stats = f.stats.clone();
        let got = f.bytes(&format!("windowsize {ws} through the relay ({st:?})"));
        eprintln!("windowsize {ws}: relay {st:?}; client {stats:?}");
        assert!(
            got == data,
            "windowsize {ws}: {} of {} bytes, differ",
            got.len(),
            data.len()
        );
        assert!(
            stats
                .oack
                .contains(&("tsize".into(), data.len().to_string())),
            "{:?}",
            stats.oack
        );
        if ws > 1 {
            assert!(
                stats.oack.contains(&("windowsize".into(), ws.to_string())),
                "{:?}",
                stats.oack
            );
        }
        assert!(
            st.forwarded > 0 && st.dropped > 0 && st.duplicated > 0 && st.reordered > 0,
            "the relay must really have dropped, duplicated and reordered: {st:?}"
        );
    }
    wait_for(&s, "sessions back to 0", Duration::from_secs(15), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });
}
