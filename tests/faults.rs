//! Fault injection against a real `ironpxe serve` on loopback: a lossy network, vanishing
//! clients, load and session caps, HTTP abuse, state and template faults, signals during
//! transfers, and image fetches that stall, lie or fill the disk.
//!
//! Every wait is bounded; assertions are about counts and outcomes, never speed. Load is
//! spread over 127.x.y.z source addresses (all local on Linux). The CPU-heavy tests take
//! [`serial`] so that two of them never share the (possibly two) cores.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::tftp_client::{self, ClientOpts, Failure, Fetch};
use common::*;

const IB_NODE: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const IB_CFG: &str = "pxelinux.cfg/20-7c-fe-90-29-26-52";
const ETH_CFG: &str = "pxelinux.cfg/01-52-54-00-12-34-56";

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

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

/// CPU time (clock ticks) used so far by `pid` and its children (the render workers).
fn cpu_ticks_of_tree(pid: u32) -> u64 {
    let ticks = |stat: &str| -> Option<(u32, u64)> {
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state ppid … utime (14th field) stime (15th).
        let ppid = f.get(1)?.parse().ok()?;
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((ppid, t))
    };
    let mut total = 0;
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, t)) = ticks(&stat) {
            if p == pid || ppid == pid {
                total += t;
            }
        }
    }
    total
}

/// The `ironpxe serve` process of `s`, found by its unique config path.
fn server_pid(s: &Ironpxe) -> u32 {
    let config = s.work.path().join("ironpxe.toml");
    let needle = config.to_string_lossy().into_owned();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&needle) {
            return pid;
        }
    }
    panic!("no ironpxe process with --config {needle}");
}

/// Exited (a zombie until the harness reaps it) or gone.
fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

fn prlimit(pid: u32, arg: &str) -> Result<(), String> {
    let found = Command::new("sh")
        .args(["-c", "command -v prlimit"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`prlimit` is missing: it raises the open-file limit of the test and of ironpxe; \
         install it with `apt-get install util-linux`"
    );
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), arg])
        .output()
        .expect("run prlimit");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The hard open-file limit of `pid`.
fn nofile_hard(pid: u32) -> u64 {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .expect("Max open files")
}

/// Raises the open-file limit of `pid` to 65536, or, without the privilege to raise the
/// hard limit (a container without CAP_SYS_RESOURCE), the soft limit to the hard one; fails
/// clearly when that is below `need`.
fn raise_nofile_of(pid: u32, need: u64) {
    if prlimit(pid, "--nofile=65536:65536").is_ok() {
        return;
    }
    let hard = nofile_hard(pid);
    if let Err(e) = prlimit(pid, &format!("--nofile={hard}:{hard}")) {
        panic!("prlimit --pid {pid} --nofile={hard}:{hard} failed: {e}");
    }
    assert!(
        hard >= need,
        "process {pid} may open only {hard} files and this test needs {need}: raise the hard \
         limit (ulimit -Hn, or run with CAP_SYS_RESOURCE)"
    );
}

/// Raises the open-file limit of this test process and of the server.
fn raise_nofile(s: &Ironpxe, need: u64) {
    raise_nofile_of(std::process::id(), need);
    raise_nofile_of(server_pid(s), need);
}

/// Caps the server's address space, so a runaway allocation fails inside ironpxe instead of
/// bringing the OOM killer to the machine.
fn cap_memory(pid: u32, headroom: u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmSize");
    let arg = format!("--as={}", vm_kib * 1024 + headroom);
    if let Err(e) = prlimit(pid, &arg) {
        panic!("prlimit --pid {pid} {arg}: {e}");
    }
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
        let deadline = Instant::now() + bound;
        while !g.2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A client that will never arrive.
    fn fail(&self) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        self.cv.notify_all();
    }

    /// Waits until `n` clients arrived or failed; returns (arrived, failed).
    fn wait_arrived(&self, n: usize, bound: Duration) -> (usize, usize) {
        let deadline = Instant::now() + bound;
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while g.0 + g.1 < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
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
            let f = tftp_client::get_hooked(&sock, server, &name, &opts, &mut |_| {
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
    tftp_client::get(&udp(src), s.tftp, name, opts)
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

// ---- a raw HTTP/1.1 client: bounded, with a chosen source address ----

struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a request ended.
#[derive(Debug, PartialEq)]
enum Ending {
    Status(u16),
    Closed,
}

impl Http {
    fn connect(src: Ipv4Addr, dst: SocketAddr) -> io::Result<Http> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
        sock.connect_timeout(&dst.into(), Duration::from_secs(10))?;
        let stream: TcpStream = sock.into();
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Http {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)
    }

    fn send_get(&mut self, path: &str) -> io::Result<()> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: ironpxe\r\n\r\n").as_bytes())
    }

    /// One keep-alive GET.
    fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send_get(path)?;
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_response(&mut self) -> io::Result<Response> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed before a response head ({} bytes)", self.buf.len()),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
        let len: Option<usize> = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        });
        self.buf.drain(..end);
        let body = match len {
            Some(len) => {
                while self.buf.len() < len {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("body cut at {} of {len} bytes", self.buf.len()),
                        ));
                    }
                }
                self.buf.drain(..len).collect()
            }
            None => {
                while self.fill()? > 0 {}
                std::mem::take(&mut self.buf)
            }
        };
        Ok(Response { status, head, body })
    }

    /// Reads until the server closes (EOF or reset), at most `bound`. Returns what came.
    fn wait_closed(&mut self, bound: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("still open after {bound:?}"));
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.fill() {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(std::mem::take(&mut self.buf)), // reset
            }
        }
    }

    /// Sends `raw` and reports a response status, or that the server closed (never hangs
    /// past `bound`).
    fn exchange(src: Ipv4Addr, dst: SocketAddr, raw: &[u8], bound: Duration) -> Ending {
        let mut c = Http::connect(src, dst).expect("connect");
        let _ = c.stream.set_read_timeout(Some(bound));
        // The server may close before reading all of a huge request: a failed write is fine.
        let _ = c.send(raw);
        match c.read_response() {
            Ok(r) => Ending::Status(r.status),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no answer and no close within {bound:?}")
            }
            Err(_) => Ending::Closed,
        }
    }
}

/// A bounded GET over a fresh connection from 127.0.0.1: (status, body).
fn hget(s: &Ironpxe, path: &str) -> (u16, String) {
    let mut c = Http::connect(lo(0, 0, 1), s.http).expect("connect");
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

// ---- a lossy UDP relay ----

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

// ---------------------------------------------------------------------------------------
// 1-2. a lossy network
// ---------------------------------------------------------------------------------------

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
        let f = tftp_client::get(&udp(lo(0, 0, 1)), relay.addr, "big.img", &opts);
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

// ---------------------------------------------------------------------------------------
// 3. vanishing clients
// ---------------------------------------------------------------------------------------

/// Nine clients open transfers at once (held open together: the gauge shows all nine), then
/// vanish: before ACKing the OACK, after four blocks at windowsize 1, or after a dozen at
/// windowsize 8. Their sessions are freed after the server's retransmissions.
#[test]
fn clients_that_vanish_mid_transfer_free_their_sessions() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 1000\nmax_retries = 3\n".into(),
        ..Options::default()
    });
    let data = pattern_file(&s.tftp_root().join("big"), 1 << 20);
    let base = metric(&s, "ironpxe_tftp_sessions_active");
    let n = 9;
    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let opts = match i % 3 {
                0 => ClientOpts {
                    vanish_after: Some(4),
                    ..ClientOpts::default()
                },
                1 => ClientOpts {
                    blksize: Some(1024),
                    windowsize: Some(8),
                    vanish_after: Some(12),
                    ..ClientOpts::default()
                },
                _ => ClientOpts {
                    blksize: Some(1408),
                    tsize: true,
                    vanish_after: Some(0),
                    ..ClientOpts::default()
                },
            };
            held_fetch(s.tftp, lo(3, 0, 1 + i as u8), "big", opts, gate.clone())
        })
        .collect();
    let (arrived, failed) = gate.wait_arrived(n, Duration::from_secs(30));
    assert_eq!((arrived, failed), (n, 0), "every client got its transfer");
    assert_eq!(
        metric(&s, "ironpxe_tftp_sessions_active"),
        base + n as f64,
        "all transfers open at once"
    );
    gate.release();
    for c in clients {
        let f = c.join().expect("client");
        assert_eq!(f.result, Err(Failure::Vanished), "{:?}", f.stats);
    }
    wait_for(
        &s,
        "the vanished clients' sessions to be freed",
        Duration::from_secs(20),
        || metric(&s, "ironpxe_tftp_sessions_active") == base,
    );
    let got = tftp(&s, lo(3, 1, 1), "big", &ClientOpts::default()).bytes("after the vanishing");
    assert!(got == data, "a later client is served in full");
    let (_, health) = hget(&s, "/healthz");
    assert!(health.contains("\"tftp_sessions\":0"), "{health}");
}

/// Three clients ask `timeout 255` and go silent with their ports still open (no ICMP ends
/// the transfer, as when a machine drops off the network). The option is declined (left out
/// of the OACK) and each slot is freed within `(max_retries + 1)` × max(`timeout_ms`,
/// `max_timeout_secs`) plus slack — before, they were held (5 + 1) × 255 s. A timeout within
/// `max_timeout_secs` is echoed.
#[test]
fn a_silent_client_asking_a_long_timeout_is_freed_within_the_servers_bound() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 500\nmax_retries = 2\nmax_timeout_secs = 1\n".into(),
        ..Options::default()
    });
    pattern_file(&s.tftp_root().join("big"), 64 << 10);
    let base = metric(&s, "ironpxe_tftp_sessions_active");
    let silent: Vec<UdpSocket> = (0..3).map(|i| udp(lo(3, 9, 1 + i))).collect();
    for sock in &silent {
        let asked = rrq(b"big", &[("blksize", "1024"), ("timeout", "255")]);
        sock.send_to(&asked, s.tftp).expect("send RRQ");
        let oack = recv(sock, Duration::from_secs(5)).expect("an OACK");
        assert_eq!(oack.op, OP_OACK);
        assert_eq!(
            oack.options(),
            [("blksize".to_owned(), "1024".to_owned())],
            "timeout 255 declined"
        );
    }
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), base + 3.0);
    // (2 + 1) × max(0.5 s, 1 s) = 3 s, plus generous slack for a loaded machine.
    wait_for(
        &s,
        "the silent clients' sessions to be freed",
        Duration::from_secs(3 + 7),
        || metric(&s, "ironpxe_tftp_sessions_active") == base,
    );
    drop(silent);

    let sock = udp(lo(3, 9, 10));
    sock.send_to(&rrq(b"big", &[("timeout", "1")]), s.tftp)
        .expect("send RRQ");
    let oack = recv(&sock, Duration::from_secs(5)).expect("an OACK");
    assert_eq!(
        oack.options(),
        [("timeout".to_owned(), "1".to_owned())],
        "a timeout within the limit is echoed"
    );
}

/// The receive-buffer metric is what Linux granted (half of what `SO_RCVBUF` reports), and
/// a request above `net.core.rmem_max` is warned about (the doubled value hid the clamp; on
/// a loopback address, where no machine boots, at INFO).
#[test]
fn a_clamped_tftp_receive_buffer_is_reported_as_granted_and_warned_about() {
    let rmem_max: u64 = fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("/proc/sys/net/core/rmem_max")
        .trim()
        .parse()
        .expect("a number");
    let s = Ironpxe::start_with(Options {
        toml: format!("[tftp]\nsocket_rcvbuf = {}\n", rmem_max + 4096),
        ..Options::default()
    });
    assert_eq!(
        metric(&s, "ironpxe_tftp_socket_rcvbuf_bytes"),
        rmem_max as f64,
        "granted: rmem_max"
    );
    assert!(
        s.log().contains("TFTP receive buffer clamped"),
        "the clamp is warned about:\n{}",
        tail(&s.log(), 20)
    );
}

// ---------------------------------------------------------------------------------------
// 4. load and caps
// ---------------------------------------------------------------------------------------

/// 2 000 clients on 2 000 source addresses each open a transfer and hold it (the gauge shows
/// all 2 000 at once), then all complete byte-identical.
#[test]
fn two_thousand_concurrent_tftp_sessions_are_all_served() {
    let _g = serial();
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nmax_sessions = 2500\nmax_sessions_per_client = 4\ntimeout_ms = 1000\n\
               max_retries = 60\n"
            .into(),
        ..Options::default()
    });
    raise_nofile(&s, 2000 + 512);
    let data = pattern_file(&s.tftp_root().join("small.bin"), 3000);
    let n = 2000usize;
    let gate = Arc::new(Gate::default());
    let opts = ClientOpts {
        rto: Duration::from_secs(1),
        max_timeouts: 30,
        deadline: Duration::from_secs(150),
        ..ClientOpts::default()
    };
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let src = lo(4, (i / 200) as u8, 1 + (i % 200) as u8);
            held_fetch(s.tftp, src, "small.bin", opts.clone(), gate.clone())
        })
        .collect();
    let (arrived, failed) = gate.wait_arrived(n, Duration::from_secs(120));
    let active = metric(&s, "ironpxe_tftp_sessions_active");
    gate.release();
    let mut bad = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let f = c.join().expect("client");
        match &f.result {
            Ok(b) if *b == data => {}
            other => bad.push(format!(
                "client {i}: {:?} {:?}",
                other.as_ref().map(Vec::len),
                f.stats
            )),
        }
    }
    assert_eq!(
        (arrived, failed),
        (n, 0),
        "every client got a transfer; failures: {:?}",
        &bad[..bad.len().min(5)]
    );
    assert_eq!(active, n as f64, "all {n} transfers were open at once");
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    wait_for(&s, "sessions back to 0", Duration::from_secs(30), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });
}

/// 5 000 TCP connections from 100 source addresses are all open before any sends its
/// request; then each sends one and every one gets its 200.
#[test]
fn five_thousand_concurrent_http_connections_are_served() {
    let _g = serial();
    let s = Ironpxe::start_with(Options {
        toml: "[http]\nmax_connections = 6000\nmax_connections_per_client = 100\n\
               header_timeout_secs = 120\n"
            .into(),
        ..Options::default()
    });
    raise_nofile(&s, 5000 + 512);
    let (threads, per_thread) = (25usize, 200usize);
    let gate = Arc::new(Gate::default());
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (gate, ok, errors, dst) = (gate.clone(), ok.clone(), errors.clone(), s.http);
            thread::spawn(move || {
                let mut conns = Vec::new();
                for k in 0..per_thread {
                    let src = lo(5, t as u8, 1 + (k / 50) as u8);
                    match Http::connect(src, dst) {
                        Ok(c) => conns.push(c),
                        Err(e) => errors.lock().expect("errors").push(format!("connect: {e}")),
                    }
                }
                gate.arrive_and_wait(Duration::from_secs(120));
                for c in &mut conns {
                    if let Err(e) = c.send_get("/healthz") {
                        errors.lock().expect("errors").push(format!("send: {e}"));
                    }
                }
                for c in &mut conns {
                    match c.read_response() {
                        Ok(r) if r.status == 200 && r.text().contains("\"status\"") => {
                            ok.fetch_add(1, SeqCst);
                        }
                        Ok(r) => errors.lock().expect("errors").push(format!(
                            "status {}: {}",
                            r.status,
                            r.text()
                        )),
                        Err(e) => errors.lock().expect("errors").push(format!("read: {e}")),
                    }
                }
            })
        })
        .collect();
    let (arrived, _) = gate.wait_arrived(threads, Duration::from_secs(120));
    assert_eq!(arrived, threads, "connecting timed out");
    gate.release();
    for w in workers {
        w.join().expect("worker");
    }
    let errors = errors.lock().expect("errors");
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(ok.load(SeqCst), threads * per_thread);
    healthy(&s);
}

/// Session caps per client and in all, for TFTP and for HTTP: over a cap a client is refused
/// cleanly (a TFTP ERROR / a 503 saying which cap), the holders keep working, other clients
/// are served, and a freed slot is usable again.
#[test]
fn session_caps_refuse_cleanly_and_other_clients_are_served() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nmax_sessions = 12\nmax_sessions_per_client = 8\ntimeout_ms = 1000\n\
               max_retries = 30\n[http]\nmax_connections = 12\nmax_connections_per_client = 8\n"
            .into(),
        ..Options::default()
    });
    let data = pattern_file(&s.tftp_root().join("f.bin"), 20_000);
    let quick = ClientOpts {
        deadline: Duration::from_secs(20),
        ..ClientOpts::default()
    };
    let refused = |src: Ipv4Addr, why: &str| {
        let f = tftp(&s, src, "f.bin", &quick);
        match &f.result {
            Err(Failure::Error { message, .. }) => assert!(
                message.contains(why),
                "from {src}: the ERROR must say {why:?}: {message:?}"
            ),
            other => panic!(
                "from {src}: expected a TFTP ERROR ({why}), got {:?}",
                other.as_ref().map(Vec::len)
            ),
        }
    };

    // TFTP, per client: 8 transfers from one address held open, 5 more refused.
    let a = lo(6, 0, 1);
    let gate = Arc::new(Gate::default());
    let mut holders: Vec<_> = (0..8)
        .map(|_| held_fetch(s.tftp, a, "f.bin", ClientOpts::default(), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(8, Duration::from_secs(20)), (8, 0));
    for _ in 0..5 {
        refused(a, "too many sessions from this address");
    }
    let got = tftp(&s, lo(6, 0, 2), "f.bin", &quick).bytes("another client meanwhile");
    assert!(got == data);
    // TFTP, in all: 4 more holders from other addresses fill the 12; a 13th is refused.
    let gate2 = Arc::new(Gate::default());
    holders.extend((0..4).map(|i| {
        held_fetch(
            s.tftp,
            lo(6, 1, 1 + i),
            "f.bin",
            ClientOpts::default(),
            gate2.clone(),
        )
    }));
    assert_eq!(gate2.wait_arrived(4, Duration::from_secs(20)), (4, 0));
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), 12.0);
    refused(lo(6, 1, 9), "too many sessions in all");
    gate.release();
    gate2.release();
    for h in holders {
        let got = h.join().expect("holder").bytes("a holder");
        assert!(got == data, "holders complete byte-identical");
    }
    wait_for(&s, "TFTP sessions freed", Duration::from_secs(15), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });
    let got = tftp(&s, a, "f.bin", &quick).bytes("the capped address once freed");
    assert!(got == data);
    assert!(s.log().contains("tftp request refused"));

    // HTTP, per client: 8 kept-alive connections from one address, 5 more get 503.
    let b = lo(6, 2, 1);
    let mut held: Vec<Http> = (0..8)
        .map(|_| {
            let mut c = Http::connect(b, s.http).expect("connect");
            let r = c.get("/healthz").expect("held connection");
            assert_eq!(r.status, 200);
            c
        })
        .collect();
    let over_cap = |src: Ipv4Addr, why: &str| {
        let mut c = Http::connect(src, s.http).expect("connect");
        let _ = c.send_get("/healthz");
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("over-cap connection from {src}: no 503 but {e}"));
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
        assert!(
            r.head.to_ascii_lowercase().contains("retry-after"),
            "{}",
            r.head
        );
        c.wait_closed(Duration::from_secs(5))
            .expect("an over-cap connection is closed");
    };
    for _ in 0..5 {
        over_cap(b, "too many sessions from this address");
    }
    for c in &mut held {
        assert_eq!(c.get("/healthz").expect("still works").status, 200);
    }
    // HTTP, in all: 4 more from other addresses fill the 12; a 13th gets 503.
    for i in 0..4 {
        let mut c = Http::connect(lo(6, 3, 1 + i), s.http).expect("connect");
        assert_eq!(c.get("/healthz").expect("other client").status, 200);
        held.push(c);
    }
    over_cap(lo(6, 3, 9), "too many sessions in all");
    for c in &mut held {
        assert_eq!(c.get("/healthz").expect("still works").status, 200);
    }
    // A closed connection frees its slot (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Http::connect(lo(6, 3, 9), s.http).expect("connect");
        match c.get("/healthz") {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "the freed slot was never reusable: {other:?}"
            ),
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 5. HTTP abuse
// ---------------------------------------------------------------------------------------

/// Slowloris connections (stalled or trickling a byte every 100 ms) do not block others and
/// are closed after `header_timeout_secs`; oversized request lines and headers get a 4xx or
/// a close; unknown methods get 405 and garbage 400; /healthz answers throughout.
#[test]
fn http_abuse_never_blocks_or_hangs_the_server() {
    let s = Ironpxe::start_with(Options {
        toml: "[http]\nheader_timeout_secs = 1\nmax_header_bytes = 8192\n".into(),
        ..Options::default()
    });
    let bound = Duration::from_secs(15);
    let mut stalled: Vec<Http> = (0..30)
        .map(|i| {
            let mut c = Http::connect(lo(7, 0, 1 + i % 10), s.http).expect("connect");
            c.send(b"GET /healthz HTTP/1.1\r\nHost: ironpxe\r\nX-Slow: ")
                .expect("partial request");
            c
        })
        .collect();
    let tricklers: Vec<_> = (0..10)
        .map(|i| {
            let dst = s.http;
            thread::spawn(move || -> Result<(), String> {
                let mut c = Http::connect(lo(7, 1, 1 + i), dst).map_err(|e| e.to_string())?;
                c.send(b"GET /healthz HTTP/1.1\r\n")
                    .map_err(|e| e.to_string())?;
                let _ = c.stream.set_read_timeout(Some(Duration::from_millis(100)));
                let started = Instant::now();
                let mut chunk = [0u8; 1024];
                while started.elapsed() < Duration::from_secs(15) {
                    if c.stream.write_all(b"X").is_err() {
                        return Ok(()); // closed by the server
                    }
                    match c.stream.read(&mut chunk) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {} // e.g. a 408; the close follows
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return Ok(()),
                    }
                }
                Err("a trickling connection was still open after 15 s".into())
            })
        })
        .collect();
    // Others are served while the slow ones hang on.
    for _ in 0..5 {
        healthy(&s);
    }
    for (i, c) in stalled.iter_mut().enumerate() {
        c.wait_closed(bound)
            .unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
    }
    for t in tricklers {
        t.join().expect("trickler").expect("trickler closed");
    }
    healthy(&s);

    let acceptable = |what: &str, e: &Ending| {
        eprintln!("{what}: {e:?}");
        assert!(
            matches!(e, Ending::Closed | Ending::Status(400 | 413 | 414 | 431)),
            "{what}: {e:?}"
        );
    };
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: ironpxe\r\n\r\n",
        "a".repeat(20_000)
    );
    let e = Http::exchange(lo(7, 2, 1), s.http, long_line.as_bytes(), bound);
    acceptable("a 20 kB request line", &e);
    healthy(&s);
    let mut big_headers = String::from("GET /healthz HTTP/1.1\r\nHost: ironpxe\r\n");
    for i in 0..200 {
        big_headers.push_str(&format!("X-Pad-{i}: {}\r\n", "b".repeat(100)));
    }
    big_headers.push_str("\r\n");
    let e = Http::exchange(lo(7, 2, 1), s.http, big_headers.as_bytes(), bound);
    acceptable("20 kB of headers", &e);
    healthy(&s);
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: ironpxe\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let e = Http::exchange(lo(7, 2, 1), s.http, many.as_bytes(), bound);
    acceptable("150 headers", &e);
    healthy(&s);

    for method in ["PUT", "DELETE", "PROPFIND", "FOO", "POST"] {
        let req = format!(
            "{method} /healthz HTTP/1.1\r\nHost: ironpxe\r\nContent-Length: 5\r\n\r\nhello"
        );
        let e = Http::exchange(lo(7, 2, 2), s.http, req.as_bytes(), bound);
        assert_eq!(e, Ending::Status(405), "{method}");
        healthy(&s);
    }
    for garbage in [
        &b"G@RBAGE /healthz HTTP/1.1\r\nHost: ironpxe\r\n\r\n"[..],
        b"\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\r\n\r\n\r\n\r\n",
    ] {
        let e = Http::exchange(lo(7, 2, 3), s.http, garbage, bound);
        assert!(
            matches!(e, Ending::Closed | Ending::Status(400 | 405 | 505)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(garbage)
        );
        healthy(&s);
    }
}

// ---------------------------------------------------------------------------------------
// 6. state and template faults
// ---------------------------------------------------------------------------------------

fn node_json(uuid: &str, name: &str, mac: &str) -> String {
    format!(
        r#"{{"uuid": "{uuid}", "name": "{name}", "provision_state": "active", "boot_interface": "ipxe",
            "ports": [{{"address": "{mac}"}}]}}"#
    )
}

/// The state directory vanishes (renamed away, then deleted: a directory removed file by
/// file would unenrol its nodes one by one, which is correct too) and comes back with other
/// files: the last good state serves meanwhile, /healthz says degraded, then the new files
/// are served.
#[test]
fn a_vanished_state_directory_keeps_the_last_good_state_until_it_returns() {
    let s = Ironpxe::start();
    assert!(tftp_text(&s, IB_CFG).expect("config").contains(IB_NODE));
    let dir = s.state.path().to_owned();
    let away = s.work.path().join("state.gone");
    fs::rename(&dir, &away).expect("rename away");
    fs::remove_dir_all(&away).expect("delete");
    wait_for(
        &s,
        "the missing directory reported",
        Duration::from_secs(15),
        || metric(&s, "ironpxe_state_errors") >= 1.0,
    );
    let (_, health) = hget(&s, "/healthz");
    assert!(health.contains("\"degraded\""), "{health}");
    assert!(
        tftp_text(&s, IB_CFG)
            .expect("still served")
            .contains(IB_NODE),
        "last good state over TFTP"
    );
    let (code, body) = hget(&s, "/ipxe/7c:fe:90:29:26:52");
    assert!(
        code == 200 && body.contains(IB_NODE),
        "over HTTP: {code} {body}"
    );
    assert_eq!(metric(&s, "ironpxe_nodes"), 3.0);

    let new = "0b3e1f6e-5a47-4c3b-9f0e-3a1c2b4d5e6f";
    fs::create_dir(&dir).expect("recreate");
    fs::write(
        dir.join("new.json"),
        node_json(new, "new-node", "52:54:00:aa:bb:01"),
    )
    .expect("write");
    wait_for(
        &s,
        "the recreated directory served",
        Duration::from_secs(20),
        || {
            let (code, body) = hget(&s, "/ipxe/52:54:00:aa:bb:01");
            code == 200 && body.contains(new)
        },
    );
    wait_for(&s, "health ok again", Duration::from_secs(10), || {
        hget(&s, "/healthz").1.contains("\"ok\"")
    });
    assert_eq!(metric(&s, "ironpxe_state_errors"), 0.0);
    assert_eq!(
        hget(&s, "/ipxe/7c:fe:90:29:26:52").0,
        404,
        "the directory is the truth again"
    );
}

/// Swaps two paths atomically (`renameat2(RENAME_EXCHANGE)`), so the watcher never sees the
/// file missing in between.
fn exchange(a: &Path, b: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    extern "C" {
        fn renameat2(
            olddirfd: i32,
            oldpath: *const std::ffi::c_char,
            newdirfd: i32,
            newpath: *const std::ffi::c_char,
            flags: u32,
        ) -> i32;
    }
    const AT_FDCWD: i32 = -100;
    const RENAME_EXCHANGE: u32 = 2;
    let ca = CString::new(a.as_os_str().as_bytes()).expect("path");
    let cb = CString::new(b.as_os_str().as_bytes()).expect("path");
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let rc = unsafe {
        renameat2(
            AT_FDCWD,
            ca.as_ptr(),
            AT_FDCWD,
            cb.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "renameat2: {}", io::Error::last_os_error());
}

/// A state file replaced by a directory keeps its last good contents, is reported, and
/// recovers when it is a file again.
#[test]
fn a_state_file_replaced_by_a_directory_keeps_the_last_good_contents() {
    let s = Ironpxe::start();
    assert!(tftp_text(&s, ETH_CFG)
        .expect("config")
        .contains("eth-node-1"));
    let file = s.state.path().join("eth-node-1.json");
    let other = s.state.path().join(".swap");
    fs::create_dir(&other).expect("mkdir");
    exchange(&file, &other);
    assert!(file.is_dir());
    wait_for(&s, "the error reported", Duration::from_secs(15), || {
        metric(&s, "ironpxe_state_errors") == 1.0
    });
    assert!(
        s.log().contains("is not a regular file"),
        "{}",
        tail(&s.log(), 20)
    );
    assert!(
        tftp_text(&s, ETH_CFG)
            .expect("still served")
            .contains("eth-node-1"),
        "last good contents kept"
    );
    assert!(hget(&s, "/healthz").1.contains("\"degraded\""));
    exchange(&file, &other);
    assert!(file.is_file());
    wait_for(&s, "recovery", Duration::from_secs(15), || {
        metric(&s, "ironpxe_state_errors") == 0.0
    });
    assert!(hget(&s, "/healthz").1.contains("\"ok\""));
    assert!(tftp_text(&s, ETH_CFG)
        .expect("served")
        .contains("eth-node-1"));
}

/// 10 000 node files written in one burst (10 000, not 1 000: it takes seconds) are all
/// served, and /healthz answered throughout.
#[test]
fn ten_thousand_state_files_in_a_burst_are_all_served() {
    let _g = serial();
    let s = Ironpxe::start();
    let n = 10_000u32;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, dst) = (stop.clone(), s.http);
        thread::spawn(move || -> (u32, Vec<String>) {
            let (mut ok, mut bad) = (0, Vec::new());
            while !stop.load(SeqCst) {
                let r = Http::connect(lo(10, 1, 1), dst).and_then(|mut c| {
                    let _ = c.stream.set_read_timeout(Some(Duration::from_secs(20)));
                    c.get("/healthz")
                });
                match r {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => bad.push(format!("status {}", r.status)),
                    Err(e) => bad.push(e.to_string()),
                }
                thread::sleep(Duration::from_millis(50));
            }
            (ok, bad)
        })
    };
    let uuid = |i: u32| format!("{i:08x}-0000-4000-8000-{i:012x}");
    let mac = |i: u32| {
        format!(
            "52:54:01:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        )
    };
    for i in 0..n {
        fs::write(
            s.state.path().join(format!("burst-{i:05}.json")),
            node_json(&uuid(i), &format!("burst-{i}"), &mac(i)),
        )
        .expect("write");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let nodes = metric(&s, "ironpxe_nodes");
        let errors = metric(&s, "ironpxe_state_errors");
        if nodes == f64::from(n + 3) && errors == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{nodes} nodes, {errors} errors after 120 s\n{}",
            tail(&s.log(), 20)
        );
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, SeqCst);
    let (ok, bad) = poller.join().expect("poller");
    assert!(
        ok > 0 && bad.is_empty(),
        "/healthz during the burst: {ok} ok, {bad:?}"
    );
    let checkers: Vec<_> = (0..8u32)
        .map(|t| {
            let dst = s.http;
            thread::spawn(move || -> Vec<String> {
                let mut c = Http::connect(lo(10, 2, 1 + t as u8), dst).expect("connect");
                let mut bad = Vec::new();
                for i in (t..n).step_by(8) {
                    match c.get(&format!("/ipxe/{}", mac(i))) {
                        Ok(r) if r.status == 200 && r.text().contains(&uuid(i)) => {}
                        Ok(r) => bad.push(format!("node {i}: {} {}", r.status, r.text())),
                        Err(e) => {
                            bad.push(format!("node {i}: {e}"));
                            c = Http::connect(lo(10, 2, 1 + t as u8), dst).expect("reconnect");
                        }
                    }
                }
                bad
            })
        })
        .collect();
    let bad: Vec<String> = checkers
        .into_iter()
        .flat_map(|c| c.join().expect("checker"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} not served, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

/// Runs `f` (which starts a server) with this thread bound to one CPU, which the server
/// inherits: it runs as on a one-CPU VM or container (tokio then starts one worker).
fn on_one_cpu<T>(f: impl FnOnce() -> T) -> T {
    let me = fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = me.file_name().expect("tid").to_string_lossy().into_owned();
    let taskset = |args: &[&str]| {
        let out = Command::new("taskset")
            .args(args)
            .output()
            .expect("taskset (util-linux)");
        assert!(out.status.success(), "taskset {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = taskset(&["-cp", &tid]);
    let cpus = shown
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let first = cpus.split([',', '-']).next().unwrap_or("0").to_owned();
    taskset(&["-cp", &first, &tid]);
    let r = f();
    taskset(&["-cp", &cpus, &tid]);
    r
}

/// 10 000 nodes change at once (one state file replaced) while dnsmasq host files are kept,
/// on a one-CPU server: the generation's follow-up work — a boot decision per node, 10 000
/// host files each written and synced — runs off the runtime that serves HTTP, so a client
/// requesting /healthz and an iPXE script throughout sees a p99 latency below 50 ms (before,
/// its requests waited behind the host-file writes on the runtime's one worker).
#[test]
fn http_stays_responsive_while_ten_thousand_nodes_change_at_once() {
    let _g = serial();
    let hosts = tempfile::tempdir().expect("hostsdir");
    let s = on_one_cpu(|| {
        Ironpxe::start_with(Options {
            toml: format!("[dhcp]\nhostsdir = {:?}\n", hosts.path()),
            ..Options::default()
        })
    });
    let host_files = || fs::read_dir(hosts.path()).map_or(0, |d| d.count());
    wait_for(
        &s,
        "the example nodes' host files",
        Duration::from_secs(15),
        || host_files() >= 3,
    );
    let stop = Arc::new(AtomicBool::new(false));
    // A request is due every 10 ms; its latency runs from when it was due, so a stall counts
    // once for every request it held up, not once in all (coordinated omission).
    let sampler = {
        let (stop, dst) = (stop.clone(), s.http);
        thread::spawn(move || -> Vec<Duration> {
            let mut c = Http::connect(lo(10, 3, 1), dst).expect("connect");
            let (start, every) = (Instant::now(), Duration::from_millis(10));
            let mut took = Vec::new();
            for i in 0u32.. {
                if stop.load(SeqCst) {
                    break;
                }
                let due = start + every * i;
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let path = if i % 2 == 0 {
                    "/healthz"
                } else {
                    "/ipxe/52:54:00:12:34:56"
                };
                match c.get(path) {
                    Ok(r) => assert_eq!(r.status, 200, "{path}"),
                    // No answer within the client's 30 s: counted as such, on a new connection.
                    Err(_) => c = Http::connect(lo(10, 3, 1), dst).expect("reconnect"),
                }
                took.push(due.elapsed());
            }
            took
        })
    };
    thread::sleep(Duration::from_millis(300));
    let n = 10_000u32;
    let uuid = |i: u32| format!("{i:08x}-0000-4000-8000-{i:012x}");
    let mac = |i: u32| {
        format!(
            "52:54:02:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        )
    };
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"uuid": "{}", "name": "n{i}", "provision_state": "deploying", "boot_interface": "ipxe"}}"#,
                uuid(i)
            )
        })
        .collect();
    let ports: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"address": "{}", "node_uuid": "{}"}}"#, mac(i), uuid(i)))
        .collect();
    let doc = format!(
        r#"{{"nodes": [{}], "ports": [{}]}}"#,
        nodes.join(","),
        ports.join(",")
    );
    let tmp = s.state.path().join(".fleet.json.tmp");
    fs::write(&tmp, doc).expect("write fleet");
    fs::rename(&tmp, s.state.path().join("fleet.json")).expect("publish fleet");
    wait_for(
        &s,
        "every node's host file",
        Duration::from_secs(300),
        || host_files() >= n as usize + 3,
    );
    thread::sleep(Duration::from_millis(300));
    stop.store(true, SeqCst);
    let mut took = sampler.join().expect("sampler");
    assert!(took.len() >= 100, "enough samples: {}", took.len());
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?} over {} requests (max {:?})",
        took.len(),
        took.last()
    );
}

/// Templates with an include cycle and with a loop of 10^11 items are refused: the last good
/// set keeps serving, the problem is reported naming the template, the process survives (its
/// address space is capped so a runaway allocation kills only it), and a fix is picked up.
#[test]
fn runaway_templates_are_refused_and_the_last_good_set_serves() {
    let tdir = tempfile::tempdir().expect("templates dir");
    for e in fs::read_dir(root().join("templates"))
        .expect("templates")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "tera") {
            fs::copy(e.path(), tdir.path().join(e.file_name())).expect("copy template");
        }
    }
    let s = Ironpxe::start_with(Options {
        toml: format!(
            "templates = {:?}\n[render]\ntrial_budget_ms = 2000\n",
            tdir.path()
        ),
        ..Options::default()
    });
    let pid = server_pid(&s);
    cap_memory(pid, 2 << 30);
    let original = fs::read_to_string(tdir.path().join("pxelinux.tera")).expect("read");
    let good = tftp_text(&s, IB_CFG).expect("config");
    assert!(good.contains("default deploy"), "{good}");
    let alive = |what: &str| {
        assert!(
            !exited(pid),
            "ironpxe died on {what}\n{}",
            tail(&s.log(), 30)
        );
        healthy(&s);
    };
    // A broken edit since log offset `mark`: refused, reported naming `template`, the process
    // alive, and `last_good` still served.
    let refused = |what: &str, mark: usize, template: &str, last_good: &str| {
        wait_for(&s, what, Duration::from_secs(30), || {
            metric(&s, "ironpxe_template_errors") > 0.0
        });
        alive(what);
        assert!(
            s.log()[mark..].contains(template),
            "the log names the template:\n{}",
            &s.log()[mark..]
        );
        assert_eq!(
            tftp_text(&s, IB_CFG).expect("served"),
            last_good,
            "last good set"
        );
    };

    // An include that includes itself.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("loop.tera"),
        "{% include \"loop.tera\" %}\n",
    )
    .expect("write");
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{{% include \"loop.tera\" %}}\n"),
    )
    .expect("write");
    refused("an include cycle", mark, "loop.tera", &good);
    assert!(hget(&s, "/healthz").1.contains("\"degraded\""));
    fs::write(tdir.path().join("loop.tera"), "# LOOP-FIXED\n").expect("write");
    wait_for(
        &s,
        "the fixed include served",
        Duration::from_secs(20),
        || {
            metric(&s, "ironpxe_template_errors") == 0.0
                && tftp_text(&s, IB_CFG).is_ok_and(|c| c.contains("LOOP-FIXED"))
        },
    );
    let fixed = tftp_text(&s, IB_CFG).expect("config");

    // A loop of 10^11 items.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{{% for i in range(end=100000000000) %}}x{{% endfor %}}\n"),
    )
    .expect("write");
    refused("a loop of 10^11 items", mark, "pxelinux.tera", &fixed);
    let recovered = |what: &str| {
        fs::write(tdir.path().join("pxelinux.tera"), &original).expect("restore");
        wait_for(&s, what, Duration::from_secs(20), || {
            metric(&s, "ironpxe_template_errors") == 0.0
        });
    };
    recovered("recovery from the loop");
    let good = tftp_text(&s, IB_CFG).expect("config");

    // A macro that calls itself: refused before any render (it would overflow the stack and
    // abort the process), naming the file, the line and the chain.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("macros.tera"),
        "{# helpers #}\n{% macro f(n) %}{{ self::f(n=n+1) }}{% endmacro f %}\n",
    )
    .expect("write");
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{{% import \"macros.tera\" as m %}}{{{{ m::f(n=1) }}}}\n{original}"),
    )
    .expect("write");
    refused(
        "a self-recursive macro",
        mark,
        "macros.tera: macro f (line 2) -> macros.tera: macro f",
        &good,
    );
    fs::remove_file(tdir.path().join("macros.tera")).expect("remove");
    recovered("recovery from the recursive macro");

    // Loops within the `range` bound that together run for minutes: the trial render is
    // stopped at its budget — its worker killed — and nothing keeps burning CPU.
    let mark = s.log().len();
    let cubic = "{% for i in range(end=10000) %}{% for j in range(end=10000) %}{% for k in range(end=10000) %}{% endfor %}{% endfor %}{% endfor %}";
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{cubic}\n"),
    )
    .expect("write");
    refused("loops that run for minutes", mark, "stopped", &good);
    assert!(s.log()[mark..].contains("trial render ran longer than 2000 ms"));
    let before = cpu_ticks_of_tree(pid);
    thread::sleep(Duration::from_secs(3));
    let burnt = cpu_ticks_of_tree(pid) - before;
    assert!(
        burnt < 50,
        "CPU keeps burning after the refusal: {burnt} ticks in 3 s (server and its workers)"
    );
    fs::write(tdir.path().join("pxelinux.tera"), &original).expect("restore");
    wait_for(&s, "recovery", Duration::from_secs(20), || {
        metric(&s, "ironpxe_template_errors") == 0.0
            && tftp_text(&s, IB_CFG).is_ok_and(|c| c == good)
    });
    alive("recovery");
    for l in s.log().lines().filter(|l| l.contains("template error")) {
        eprintln!("{l}");
    }
}

/// A node whose render runs for minutes (a template loop that only its data triggers, so the
/// trial render passes): its render is stopped at the budget, the client gets an error
/// (TFTP ERROR with a message, HTTP 503), the node shows the problem, a retry storm does not
/// render it again — and twenty other clients on the same TFTP thread are served meanwhile.
#[test]
fn a_slow_render_stalls_no_one_and_is_remembered() {
    let _serial = serial();
    let tdir = tempfile::tempdir().expect("templates dir");
    let slow = "{% if node and node.name == \"slow\" %}{% for i in range(end=10000) %}{% for j in range(end=10000) %}{% for k in range(end=10000) %}{% endfor %}{% endfor %}{% endfor %}{% endif %}";
    for e in fs::read_dir(root().join("templates"))
        .expect("templates")
        .flatten()
    {
        let text = fs::read_to_string(e.path()).expect("template");
        let text = match e.file_name().to_str() {
            Some("pxelinux.tera" | "ipxe.tera") => format!("{slow}{text}"),
            _ => text,
        };
        fs::write(tdir.path().join(e.file_name()), text).expect("copy template");
    }
    let node = |name: &str, i: u32| {
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        let json = format!(
            r#"{{"uuid": "{uuid}", "name": "{name}", "provision_state": "deploying",
                "driver_info": {{"deploy_kernel": "http://192.0.2.1/k", "deploy_ramdisk": "http://192.0.2.1/r"}},
                "ports": [{{"address": "52:54:00:00:{:02x}:{:02x}", "node_uuid": "{uuid}", "pxe_enabled": true}}]}}"#,
            i / 256,
            i % 256
        );
        (format!("{name}.json"), json)
    };
    let mut opts = Options {
        toml: format!(
            "templates = {:?}\n[render]\nbudget_ms = 1000\n[tftp]\nthreads = 1\n",
            tdir.path()
        ),
        ..Options::default()
    };
    opts.state.push(node("slow", 500));
    for i in 1..=20 {
        opts.state.push(node(&format!("fast-{i}"), i));
    }
    let s = Ironpxe::start_with(opts);
    let pid = server_pid(&s);
    let cfg = |i: u32| {
        format!(
            "pxelinux.cfg/01-52-54-00-00-{:02x}-{:02x}",
            i / 256,
            i % 256
        )
    };

    // The slow node first, then twenty others on the same (single) TFTP thread.
    let server = s.tftp;
    let slow_client = thread::spawn(move || {
        let opts = ClientOpts {
            deadline: Duration::from_secs(30),
            ..ClientOpts::default()
        };
        tftp_client::get(&udp(lo(9, 9, 9)), server, &cfg(500), &opts).result
    });
    thread::sleep(Duration::from_millis(100));
    let fast: Vec<_> = (1..=20)
        .map(|i| {
            thread::spawn(move || {
                // Far below the minutes the slow render would take if it blocked the thread.
                let opts = ClientOpts {
                    deadline: Duration::from_secs(10),
                    ..ClientOpts::default()
                };
                let got = tftp_client::get(&udp(lo(9, 1, i as u8)), server, &cfg(i), &opts).result;
                (i, got)
            })
        })
        .collect();
    for c in fast {
        let (i, got) = c.join().expect("client");
        let text = got.unwrap_or_else(|e| panic!("fast-{i} not served while slow renders: {e:?}"));
        assert!(
            String::from_utf8_lossy(&text).contains(&format!("fast-{i} ")),
            "fast-{i}"
        );
    }
    match slow_client.join().expect("slow client") {
        Err(Failure::Error { code, message }) => {
            assert_eq!(code, 0);
            assert!(message.contains("cannot render"), "{message}");
        }
        other => panic!("the slow node's client must get a TFTP error: {other:?}"),
    }
    let (code, _) = hget(&s, "/ipxe/52:54:00:00:01:f4");
    assert_eq!(code, 503, "over budget over HTTP");
    assert_eq!(
        metric(&s, "ironpxe_renders_stopped_total"),
        2.0,
        "one per format"
    );

    // Visible to the operator: health, problems API, the log.
    let (_, health) = hget(&s, "/healthz");
    assert!(
        health.contains("\"degraded\"") && health.contains("\"node_problems\":1"),
        "{health}"
    );
    let admin = s.admin.expect("admin listens");
    let problems = curl(&["-sf", &format!("http://{admin}/api/v1/problems")]);
    let problems = String::from_utf8_lossy(&problems.stdout).into_owned();
    assert!(
        problems.contains("00000000-0000-4000-8000-000000000500") && problems.contains("budget"),
        "{problems}"
    );

    // A retry storm: remembered for this template generation and node revision.
    for _ in 0..5 {
        let opts = ClientOpts {
            deadline: Duration::from_secs(10),
            ..ClientOpts::default()
        };
        assert!(matches!(
            tftp(&s, lo(9, 9, 8), &cfg(500), &opts).result,
            Err(Failure::Error { .. })
        ));
        assert_eq!(hget(&s, "/ipxe/52:54:00:00:01:f4").0, 503);
    }
    assert_eq!(
        metric(&s, "ironpxe_renders_stopped_total"),
        2.0,
        "not rendered again"
    );
    let before = cpu_ticks_of_tree(pid);
    thread::sleep(Duration::from_secs(2));
    assert!(
        cpu_ticks_of_tree(pid) - before < 50,
        "nothing keeps rendering"
    );

    // A new revision of the node is rendered again (and is fine now).
    let fixed = node("slow", 500)
        .1
        .replace("\"slow\"", "\"no-longer-slow\"");
    fs::write(s.state.path().join("slow.json"), fixed).expect("update node");
    wait_for(
        &s,
        "the renamed node served",
        Duration::from_secs(20),
        || tftp_text(&s, &cfg(500)).is_ok_and(|t| t.contains("no-longer-slow")),
    );
    wait_for(&s, "the problem cleared", Duration::from_secs(10), || {
        hget(&s, "/healthz").1.contains("\"node_problems\":0")
    });
}

// ---------------------------------------------------------------------------------------
// 7. signals during transfers
// ---------------------------------------------------------------------------------------

/// SIGHUP in the middle of slow transfers: they finish byte-identical. SIGTERM in the middle
/// of slow transfers: the process exits within the grace period and every client sees an
/// end (complete, ERROR or timeout) — none hangs.
#[test]
fn sighup_and_sigterm_during_transfers() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 500\nmax_retries = 5\n[http]\nshutdown_grace_secs = 2\n".into(),
        ..Options::default()
    });
    let pid = server_pid(&s);
    let data = pattern_file(&s.tftp_root().join("slow.bin"), 150_000);
    let slow = |delay_ms: u64| ClientOpts {
        blksize: Some(1024),
        ack_delay: Duration::from_millis(delay_ms),
        max_timeouts: 12,
        deadline: Duration::from_secs(60),
        ..ClientOpts::default()
    };

    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..6)
        .map(|i| held_fetch(s.tftp, lo(8, 0, 1 + i), "slow.bin", slow(10), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(6, Duration::from_secs(20)), (6, 0));
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), 6.0);
    gate.release();
    s.signal("HUP");
    wait_for(&s, "the reload", Duration::from_secs(10), || {
        s.log().contains("SIGHUP: reloading")
    });
    for c in clients {
        let got = c.join().expect("client").bytes("a transfer across SIGHUP");
        assert!(got == data, "byte-identical across SIGHUP");
    }
    wait_for(&s, "sessions back to 0", Duration::from_secs(15), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });

    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..6)
        .map(|i| held_fetch(s.tftp, lo(8, 1, 1 + i), "slow.bin", slow(20), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(6, Duration::from_secs(20)), (6, 0));
    gate.release();
    thread::sleep(Duration::from_millis(300));
    s.signal("TERM");
    let term = Instant::now();
    let deadline = term + Duration::from_secs(2 + 8);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "ironpxe still running 10 s after SIGTERM (grace 2 s)\n{}",
            tail(&s.log(), 20)
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("SIGTERM: exited after {:?} (grace 2 s)", term.elapsed());
    let (mut done, mut ended) = (0, 0);
    for c in clients {
        let f = c.join().expect("client");
        match f.result {
            Ok(b) => {
                assert!(
                    b == data,
                    "a transfer reported complete must be byte-identical"
                );
                done += 1;
            }
            Err(Failure::Timeout(_) | Failure::Error { .. } | Failure::Io(_)) => ended += 1,
            Err(Failure::Vanished) => unreachable!("the clients never vanish"),
        }
    }
    assert_eq!(done + ended, 6);
    eprintln!("SIGTERM: {done} transfers completed, {ended} ended early");
    assert!(s.log().contains("shutting down"), "{}", tail(&s.log(), 20));
}

// ---------------------------------------------------------------------------------------
// 8. the image cache
// ---------------------------------------------------------------------------------------

/// How the test image server answers one path.
#[derive(Clone)]
enum Route {
    /// The body, with its length.
    Normal(Vec<u8>),
    /// Announces the whole body, sends half, then stalls until the server is dropped.
    Stall(Vec<u8>),
    /// Announces `usize` bytes and sends the whole (longer) body.
    More(usize, Vec<u8>),
    /// No Content-Length; the body, then close.
    NoLength(Vec<u8>),
    /// Waits for `ImageServer::open(name)`, then like `Normal`.
    Gated(String, Vec<u8>),
}

struct ImageServer {
    base: String,
    stop: Arc<AtomicBool>,
    gates: Arc<Mutex<Vec<String>>>,
    hits: Arc<AtomicUsize>,
}

impl ImageServer {
    fn start(routes: HashMap<String, Route>) -> ImageServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let gates: Arc<Mutex<Vec<String>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, g, h) = (stop.clone(), gates.clone(), hits.clone());
        thread::spawn(move || {
            while !st.load(SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (routes, st, g, h) = (routes.clone(), st.clone(), g.clone(), h.clone());
                        thread::spawn(move || serve_image(c, &routes, &st, &g, &h));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ImageServer {
            base,
            stop,
            gates,
            hits,
        }
    }

    fn open(&self, name: &str) {
        self.gates.lock().expect("gates").push(name.to_owned());
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

fn serve_image(
    mut c: TcpStream,
    routes: &HashMap<String, Route>,
    stop: &AtomicBool,
    gates: &Mutex<Vec<String>>,
    hits: &AtomicUsize,
) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    hits.fetch_add(1, SeqCst);
    let text = String::from_utf8_lossy(&req).into_owned();
    let name = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let head = |len: Option<usize>| match len {
        Some(n) => format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"),
        None => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let wait_until = |cond: &dyn Fn() -> bool| {
        while !cond() && !stop.load(SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    };
    let _ = match routes.get(&name) {
        None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        Some(Route::Normal(b)) => c
            .write_all(head(Some(b.len())).as_bytes())
            .and_then(|()| c.write_all(b)),
        Some(Route::Stall(b)) => {
            let r = c
                .write_all(head(Some(b.len())).as_bytes())
                .and_then(|()| c.write_all(&b[..b.len() / 2]))
                .and_then(|()| c.flush());
            wait_until(&|| false);
            r
        }
        Some(Route::More(announced, b)) => c
            .write_all(head(Some(*announced)).as_bytes())
            .and_then(|()| c.write_all(b)),
        Some(Route::NoLength(b)) => c
            .write_all(head(None).as_bytes())
            .and_then(|()| c.write_all(b)),
        Some(Route::Gated(gate, b)) => {
            wait_until(&|| gates.lock().expect("gates").contains(gate));
            c.write_all(head(Some(b.len())).as_bytes())
                .and_then(|()| c.write_all(b))
        }
    };
}

/// The `[images]` section allowing the test image server (a loopback address, refused
/// unless listed).
fn allow_image_server(srv: &ImageServer) -> String {
    format!("[images]\nallowed_urls = [\"{}/\"]\n", srv.base)
}

/// A node in `clean wait` whose deploy kernel and ramdisk come from `base`.
fn image_node(base: &str, mac: &str) -> Vec<(String, String)> {
    vec![(
        "img.json".into(),
        format!(
            r#"{{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "img", "provision_state": "clean wait",
                "driver_info": {{"deploy_kernel": "{base}/vmlinuz", "deploy_ramdisk": "{base}/initrd"}},
                "ports": [{{"address": "{mac}"}}]}}"#
        ),
    )]
}

/// The `images/<key>/<name>` paths of the node's kernel and initrd, from its PXELINUX config.
fn image_paths(s: &Ironpxe, mac: &str) -> (String, String) {
    let cfg = tftp_text(s, &format!("pxelinux.cfg/01-{}", mac.replace(':', "-"))).expect("config");
    let (kernel, initrd) = pxelinux_images(&cfg);
    assert!(
        kernel.starts_with("images/") && initrd.starts_with("images/"),
        "{cfg}"
    );
    (kernel, initrd)
}

fn key_of(path: &str) -> String {
    path.split('/')
        .nth(1)
        .expect("images/<key>/<name>")
        .to_owned()
}

/// The cache directory's entries: name and length.
fn cache_entries(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A TFTP fetch of an image that must fail with an ERROR (never data of the wrong length).
fn image_refused_over_tftp(s: &Ironpxe, path: &str, opts: &ClientOpts) {
    let f = tftp(s, lo(0, 0, 1), path, opts);
    assert!(
        matches!(f.result, Err(Failure::Error { .. })),
        "{path} over TFTP: expected an ERROR, got {:?} ({:?})",
        f.result.as_ref().map(Vec::len),
        f.stats
    );
}

/// An HTTP GET of an image that must fail (never a 200).
fn image_refused_over_http(s: &Ironpxe, path: &str, bound: Duration) {
    let mut c = Http::connect(lo(0, 0, 1), s.http).expect("connect");
    let _ = c.stream.set_read_timeout(Some(bound));
    match c.get(&format!("/{path}")) {
        Ok(r) => assert!(
            r.status >= 500,
            "{path} over HTTP: expected an error status, got {} with {} bytes",
            r.status,
            r.body.len()
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("{path} over HTTP: no answer within {bound:?}")
        }
        Err(_) => {} // closed: not served
    }
}

/// An upstream that sends half the kernel and stalls: requests wait and then fail, nothing
/// partial is ever in the cache or served, and the failure is counted (with
/// `image_fetch_timeout_secs = 3`).
#[test]
fn a_stalled_image_fetch_serves_nothing_partial() {
    let kernel = (0..2_000_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>();
    let initrd = vec![7u8; 1000];
    let srv = ImageServer::start(HashMap::from([
        ("vmlinuz".into(), Route::Stall(kernel)),
        ("initrd".into(), Route::Normal(initrd.clone())),
    ]));
    let mac = "52:54:00:77:00:02";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_fetch_timeout_secs = 3\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let (kpath, ipath) = image_paths(&s, mac);
    let cache = s.work.path().join("images");
    let key = key_of(&kpath);
    let waiting = |over_tftp: bool| {
        let (path, tftp_addr, http) = (kpath.clone(), s.tftp, s.http);
        thread::spawn(move || -> Result<(), String> {
            if over_tftp {
                let opts = ClientOpts {
                    rto: Duration::from_secs(1),
                    max_timeouts: 60,
                    deadline: Duration::from_secs(60),
                    ..ClientOpts::default()
                };
                let f = tftp_client::get(&udp(lo(0, 0, 1)), tftp_addr, &path, &opts);
                match f.result {
                    Err(Failure::Error { .. }) => Ok(()),
                    other => Err(format!("TFTP: {:?}", other.map(|b| b.len()))),
                }
            } else {
                let mut c = Http::connect(lo(0, 0, 1), http).map_err(|e| e.to_string())?;
                let _ = c.stream.set_read_timeout(Some(Duration::from_secs(60)));
                match c.get(&format!("/{path}")) {
                    Ok(r) if r.status >= 500 => Ok(()),
                    Ok(r) => Err(format!("HTTP {} with {} bytes", r.status, r.body.len())),
                    Err(e) => Err(format!("HTTP: {e}")),
                }
            }
        })
    };
    let (t, h) = (waiting(true), waiting(false));
    // While the fetch hangs, only its temporary file may exist.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for (name, _) in cache_entries(&cache) {
            assert!(name != key, "a partial kernel under its final name: {name}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    t.join()
        .expect("tftp waiter")
        .expect("TFTP request while stalled");
    h.join()
        .expect("http waiter")
        .expect("HTTP request while stalled");
    assert!(metric(&s, "ironpxe_image_fetch_errors_total") >= 1.0);
    let entries = cache_entries(&cache);
    assert!(
        entries
            .iter()
            .all(|(n, _)| *n != key && !n.starts_with('.')),
        "nothing partial left: {entries:?}"
    );
    // The failure is remembered for a while: refused at once, over both protocols.
    let quick = ClientOpts {
        deadline: Duration::from_secs(5),
        ..ClientOpts::default()
    };
    image_refused_over_tftp(&s, &kpath, &quick);
    image_refused_over_http(&s, &kpath, Duration::from_secs(5));
    let got = tftp(&s, lo(0, 0, 1), &ipath, &quick).bytes("the initrd");
    assert!(got == initrd, "the other image is fine");
    drop(srv);
}

/// An upstream that sends more than it announced is refused and counted, and nothing is
/// served; so is one that announces nothing and sends more than the cache holds.
#[test]
fn an_image_longer_than_the_cache_is_refused_and_excess_bytes_are_not_cached() {
    let srv = ImageServer::start(HashMap::from([
        ("vmlinuz".into(), Route::More(100_000, vec![1u8; 150_000])),
        ("initrd".into(), Route::NoLength(vec![2u8; 3 << 20])),
    ]));
    let mac = "52:54:00:77:00:03";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_cache_mib = 2\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let (kpath, ipath) = image_paths(&s, mac);
    wait_for(&s, "both fetches to end", Duration::from_secs(20), || {
        metric(&s, "ironpxe_image_fetches_total") >= 2.0
    });
    let entries = cache_entries(&s.work.path().join("images"));
    let errors = metric(&s, "ironpxe_image_fetch_errors_total");
    let quick = ClientOpts {
        deadline: Duration::from_secs(5),
        ..ClientOpts::default()
    };
    // Longer than the cache, no length announced: refused by the cap.
    image_refused_over_tftp(&s, &ipath, &quick);
    image_refused_over_http(&s, &ipath, Duration::from_secs(5));
    // Longer than announced: by HTTP/1.1 framing (RFC 9112 §6.3) the response is the
    // announced 100 000 bytes; the HTTP stack discards the excess. What is cached and served
    // is exactly that response — never a prefix shorter than what the server announced.
    let served = tftp(&s, lo(0, 0, 1), &kpath, &quick).result;
    let served = served.unwrap_or_else(|e| panic!("the announced image is served: {e:?}"));
    assert_eq!(served.len(), 100_000, "exactly the announced length");
    assert!(served.iter().all(|b| *b == 1));
    assert_eq!(
        errors, 1.0,
        "only the over-cap fetch failed; cache: {entries:?}"
    );
    assert_eq!(
        entries.len(),
        1,
        "only the complete kernel is cached: {entries:?}"
    );
    drop(srv);
}

/// Unmounts on drop (lazily if busy).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The image cache on a full disk (a 1 MiB tmpfs mounted over the cache directory after
/// ironpxe starts; both fetches wait for the test to open their gate): a 100 kB initrd is
/// cached, the 3 MB kernel fails cleanly, nothing partial is served or left, and the cache
/// stays within its 2 MiB cap.
#[test]
fn a_full_disk_fails_the_image_fetch_cleanly() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a tmpfs: run it as root"
    );
    let kernel = (0..3_000_000u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>();
    let initrd = (0..100_000u32)
        .map(|i| (i % 241) as u8)
        .collect::<Vec<u8>>();
    let srv = ImageServer::start(HashMap::from([
        ("vmlinuz".into(), Route::Gated("vmlinuz".into(), kernel)),
        (
            "initrd".into(),
            Route::Gated("initrd".into(), initrd.clone()),
        ),
    ]));
    let mac = "52:54:00:77:00:04";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_cache_mib = 2\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let cache = s.work.path().join("images");
    wait_for(
        &s,
        "both fetches to reach the server",
        Duration::from_secs(10),
        || srv.hits.load(SeqCst) >= 2,
    );
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&cache)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount -t tmpfs failed");
    let _mount = Mount(cache.clone());
    let (kpath, ipath) = image_paths(&s, mac);

    srv.open("initrd");
    wait_for(&s, "the initrd cached", Duration::from_secs(15), || {
        metric(&s, "ironpxe_image_fetches_total") >= 1.0
    });
    assert_eq!(metric(&s, "ironpxe_image_fetch_errors_total"), 0.0);
    srv.open("vmlinuz");
    wait_for(
        &s,
        "the kernel fetch to fail",
        Duration::from_secs(15),
        || metric(&s, "ironpxe_image_fetch_errors_total") >= 1.0,
    );
    assert!(
        s.log().contains("No space left on device"),
        "the failure was the full disk:\n{}",
        tail(&s.log(), 20)
    );
    let quick = ClientOpts {
        deadline: Duration::from_secs(5),
        ..ClientOpts::default()
    };
    image_refused_over_tftp(&s, &kpath, &quick);
    image_refused_over_http(&s, &kpath, Duration::from_secs(5));
    let got = tftp(&s, lo(0, 0, 1), &ipath, &quick).bytes("the initrd");
    assert!(got == initrd, "the complete image is served");
    let entries = cache_entries(&cache);
    let (ikey, kkey) = (key_of(&ipath), key_of(&kpath));
    for (name, len) in &entries {
        assert!(
            *name == ikey && *len == initrd.len() as u64,
            "only complete files in the cache: {entries:?} (kernel key {kkey})"
        );
    }
    assert!(fs::read(cache.join(&ikey)).expect("cached initrd") == initrd);
    let bytes = metric(&s, "ironpxe_image_cache_bytes");
    assert!(
        bytes <= f64::from(2u32 << 20),
        "cache within its cap: {bytes}"
    );
    drop(srv);
}
