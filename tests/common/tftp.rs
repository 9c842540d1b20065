//! The one TFTP client of the integration tests and of the load generator
//! (`benches/loadgen/main.rs` includes this file with `#[path]`). Written from the RFCs, not
//! from the server under test: RFC 1350, options (RFC 2347/2348/2349) and windowsize
//! (RFC 7440), with a timer-driven retransmit.
//!
//! * Packets: [`rrq`], [`ack`], [`error_packet`], [`recv`] and [`Packet`], for tests that
//!   drive the protocol by hand or send what no client would (malformed requests, a WRQ).
//! * A transfer: [`Transfer`] is a sans-IO state machine. It sends an RRQ with the options
//!   of [`ClientOpts`]; locks onto the first transfer ID (a packet from another one gets
//!   ERROR 5 and the transfer goes on); ACKs the last block of each window, and on a gap or a
//!   retransmit timeout the last in-order block; tolerates duplicate, late and reordered
//!   packets; and checks the length against `tsize` when it asked for it. [`get`] and
//!   [`fetch`] drive it on a blocking socket (a thread per client), [`fetch_async`] on tokio
//!   (many clients on a few threads).
//! * Client behaviours are options, not copies: slow ACKs, vanishing mid-transfer, dallying
//!   after the last ACK, a bound on the whole transfer, a hook when the transfer opens.
//!
//! Every wait is bounded (`ClientOpts::rto` × `max_timeouts`, and `deadline`).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

// ---- packets ----

/// A read request for `name` (bytes: tests send names no `&str` holds), mode `octet`, with
/// options in the order given.
pub fn rrq(name: &[u8], opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = OP_RRQ.to_be_bytes().to_vec();
    p.extend_from_slice(name);
    p.push(0);
    p.extend_from_slice(b"octet\0");
    for (k, v) in opts {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

pub fn ack(block: u16) -> Vec<u8> {
    let b = block.to_be_bytes();
    vec![0, OP_ACK as u8, b[0], b[1]]
}

pub fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = OP_ERROR.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// NUL-separated key/value pairs (an OACK's body).
pub fn options(body: &[u8]) -> Vec<(String, String)> {
    let parts: Vec<String> = body
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2 && !c[0].is_empty())
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// One received packet: opcode, the rest, and who sent it.
pub struct Packet {
    pub op: u16,
    pub body: Vec<u8>,
    pub from: SocketAddr,
}

impl Packet {
    pub fn error_code(&self) -> Option<u16> {
        (self.op == OP_ERROR && self.body.len() >= 2)
            .then(|| u16::from_be_bytes([self.body[0], self.body[1]]))
    }

    /// OACK options as key/value pairs.
    pub fn options(&self) -> Vec<(String, String)> {
        options(&self.body)
    }
}

/// One packet within `timeout`, for tests that answer by hand.
pub fn recv(sock: &UdpSocket, timeout: Duration) -> Option<Packet> {
    let until = Instant::now() + timeout;
    let mut buf = vec![0u8; 70000];
    let (n, from) = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).ok()?;
        match sock.recv_from(&mut buf) {
            Ok(got) => break got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    if n < 2 {
        return None;
    }
    Some(Packet {
        op: u16::from_be_bytes([buf[0], buf[1]]),
        body: buf[2..n].to_vec(),
        from,
    })
}

/// A client socket on `addr` asking the kernel for a `rcvbuf`-byte receive buffer (clamped
/// to `net.core.rmem_max`), so a client reading large windows never drops what arrives.
pub fn socket_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(rcvbuf);
    s.bind(&addr.into())?;
    Ok(s.into())
}

// ---- a transfer ----

/// What a transfer asks for and how the client behaves.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// `blksize` option (RFC 2348); `None`: not sent (512).
    pub blksize: Option<u16>,
    /// `windowsize` option (RFC 7440); `None`: not sent (1).
    pub windowsize: Option<u16>,
    /// Send `tsize 0` (RFC 2349); the length received is then checked against the OACK's.
    pub tsize: bool,
    /// TFTP `timeout` option, whole seconds (RFC 2349); `None`: not sent.
    pub timeout_secs: Option<u8>,
    /// The client's own retransmit timer: without progress for this long it re-sends the
    /// RRQ, or ACKs the last in-order block.
    pub rto: Duration,
    /// Consecutive retransmit timeouts before giving up ([`Failure::Timeout`]).
    pub max_timeouts: u32,
    /// Bound on the whole transfer ([`Failure::Cut`]).
    pub deadline: Duration,
    /// At the deadline, tell the server (ERROR 0) so it does not keep retransmitting.
    pub abort_at_deadline: bool,
    /// Sleep before each ACK: a slow client (blocking driver).
    pub ack_delay: Duration,
    /// After the final ACK, keep answering a retransmitted last block for this long
    /// (blocking driver).
    pub dally: Duration,
    /// Vanish (return without answering) once this many data blocks arrived in order;
    /// `Some(0)`: at the first packet of the transfer ([`Failure::Vanished`]).
    pub vanish_after: Option<u32>,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            blksize: None,
            windowsize: None,
            tsize: false,
            timeout_secs: None,
            rto: Duration::from_millis(250),
            max_timeouts: 20,
            deadline: Duration::from_secs(60),
            abort_at_deadline: false,
            ack_delay: Duration::ZERO,
            dally: Duration::ZERO,
            vanish_after: None,
        }
    }
}

impl ClientOpts {
    /// Lock-step with no retransmission: each packet is waited for 5 s, once.
    pub fn one_try() -> ClientOpts {
        ClientOpts {
            rto: Duration::from_secs(5),
            max_timeouts: 0,
            ..ClientOpts::default()
        }
    }
}

/// What happened on the wire.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Retransmit timeouts: RRQs and ACKs re-sent (the last one, giving up, included).
    pub retransmits: u32,
    /// Data blocks received again (and repeated OACKs).
    pub duplicates: u32,
    /// Data blocks received ahead of a gap (discarded; the window is re-sent).
    pub out_of_order: u32,
    /// Gaps answered with an ACK of the last in-order block.
    pub gaps: u32,
    /// Packets from another transfer ID (answered with ERROR 5).
    pub foreign: u32,
    pub acks_sent: u32,
    /// Data blocks accepted.
    pub blocks: u32,
    /// Payload bytes accepted so far.
    pub bytes: u64,
    /// The server's transfer ID, once known.
    pub server_tid: Option<SocketAddr>,
    /// The OACK's options, if one came.
    pub oack: Vec<(String, String)>,
    /// In force: from the OACK, or 512 / 1 when the server ignored the options.
    pub blksize: usize,
    pub windowsize: u16,
    /// The OACK's `tsize`.
    pub tsize: Option<u64>,
}

/// Why a transfer did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server sent an ERROR packet (code 1: file not found).
    Error {
        code: u16,
        message: String,
    },
    /// No progress after `max_timeouts` retransmissions.
    Timeout(String),
    /// `deadline` passed: stopped by the client, not by the server.
    Cut,
    /// `vanish_after` was reached: the client left on purpose.
    Vanished,
    /// Not the expected bytes (a [`Sink::Verify`] mismatch, or not `tsize` long).
    Corrupt(String),
    Io(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error { code, message } => write!(f, "ERROR {code}: {message}"),
            Failure::Timeout(why) => write!(f, "timeout: {why}"),
            Failure::Cut => write!(f, "cut off by the client's deadline"),
            Failure::Vanished => write!(f, "vanished"),
            Failure::Corrupt(why) => write!(f, "corrupt: {why}"),
            Failure::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

/// Where the received bytes go.
pub enum Sink {
    /// Kept, and returned by [`Transfer::finish`].
    Keep,
    /// Compared with these bytes as they arrive ([`Failure::Corrupt`] at the first
    /// difference), not kept.
    Verify(Arc<[u8]>),
    /// Only counted.
    Count,
}

/// A transfer's result and its counters.
#[derive(Debug)]
pub struct Fetch {
    /// The bytes (empty unless [`Sink::Keep`]), or why not.
    pub result: Result<Vec<u8>, Failure>,
    pub stats: Stats,
}

impl Fetch {
    /// The bytes, or a panic naming the failure and the counters.
    pub fn bytes(self, what: &str) -> Vec<u8> {
        match self.result {
            Ok(b) => b,
            Err(f) => panic!("{what}: {f:?} ({:?})", self.stats),
        }
    }
}

/// Who sent a datagram, as far as the transfer is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The first packet of the transfer: its sender is the server's transfer ID from now on.
    First,
    /// The transfer ID.
    Same,
    /// Another port once the transfer ID is known: answer ERROR 5, the transfer goes on.
    Foreign,
    /// Another host before any answer: ignored.
    Stranger,
}

/// One read transfer, sans IO: feed it datagrams ([`Transfer::on_packet`]) and timer expiries
/// ([`Transfer::on_timeout`]), send what they return.
pub struct Transfer {
    server: SocketAddr,
    request: Vec<u8>,
    sink: Sink,
    data: Vec<u8>,
    max_timeouts: u32,
    vanish_after: Option<u32>,
    /// An OACK or DATA came: the options are settled.
    got_reply: bool,
    /// The next block in order.
    expected: u16,
    /// The block last ACKed: re-ACKed when it comes again (that ACK was lost).
    last_acked: u16,
    /// In-order blocks since the last ACK (the window's end at `windowsize`).
    since_ack: u16,
    /// A gap was ACKed; further gaps wait for the window to restart.
    nacked: bool,
    /// Retransmit timeouts in a row, without progress.
    consecutive: u32,
    pub stats: Stats,
    outcome: Option<Result<(), Failure>>,
}

impl Transfer {
    pub fn new(server: SocketAddr, name: &str, o: &ClientOpts, sink: Sink) -> Transfer {
        let (blk, tmo, win);
        let mut req: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = o.blksize {
            blk = b.to_string();
            req.push(("blksize", &blk));
        }
        if o.tsize {
            req.push(("tsize", "0"));
        }
        if let Some(t) = o.timeout_secs {
            tmo = t.to_string();
            req.push(("timeout", &tmo));
        }
        if let Some(w) = o.windowsize {
            win = w.to_string();
            req.push(("windowsize", &win));
        }
        Transfer {
            server,
            request: rrq(name.as_bytes(), &req),
            sink,
            data: Vec::new(),
            max_timeouts: o.max_timeouts,
            vanish_after: o.vanish_after,
            got_reply: false,
            expected: 1,
            last_acked: 0,
            since_ack: 0,
            nacked: false,
            consecutive: 0,
            stats: Stats {
                blksize: 512,
                windowsize: 1,
                ..Stats::default()
            },
            outcome: None,
        }
    }

    /// The RRQ, sent to the server's port.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// A receive buffer large enough for any packet of this transfer.
    pub fn buffer(o: &ClientOpts) -> Vec<u8> {
        vec![0u8; usize::from(o.blksize.unwrap_or(512)) + 516]
    }

    pub fn done(&self) -> bool {
        self.outcome.is_some()
    }

    /// Ends the transfer with `f`, unless it already ended.
    pub fn fail(&mut self, f: Failure) {
        self.outcome.get_or_insert(Err(f));
    }

    /// Classifies a datagram's sender; the first one from the server's host becomes the
    /// transfer ID.
    pub fn source(&mut self, from: SocketAddr) -> Source {
        match self.stats.server_tid {
            Some(t) if t == from => Source::Same,
            Some(_) => {
                self.stats.foreign += 1;
                Source::Foreign
            }
            None if from.ip() != self.server.ip() => Source::Stranger,
            None => {
                self.stats.server_tid = Some(from);
                Source::First
            }
        }
    }

    fn accept(&mut self, payload: &[u8]) {
        match &self.sink {
            Sink::Keep => self.data.extend_from_slice(payload),
            Sink::Verify(want) => {
                let at = self.stats.bytes as usize;
                if want.get(at..at + payload.len()) != Some(payload) {
                    self.fail(Failure::Corrupt(format!("content differs at byte {at}")));
                }
            }
            Sink::Count => {}
        }
        self.stats.blocks += 1;
        self.stats.bytes += payload.len() as u64;
    }

    fn ack(&mut self, block: u16) -> Option<Vec<u8>> {
        self.stats.acks_sent += 1;
        Some(ack(block))
    }

    /// Handles one datagram from the transfer ID (see [`Transfer::source`]); returns a packet
    /// to send to it. Once [`Transfer::done`], the transfer has ended (after sending what
    /// was returned); a retransmitted last block is still re-ACKed then (dallying).
    pub fn on_packet(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        if self.vanish_after == Some(0) {
            self.fail(Failure::Vanished);
            return None;
        }
        if pkt.len() < 4 {
            return None;
        }
        match u16::from_be_bytes([pkt[0], pkt[1]]) {
            OP_OACK => {
                if self.expected != 1 {
                    self.stats.duplicates += 1; // stale: data has begun
                    return None;
                }
                if self.got_reply {
                    self.stats.duplicates += 1;
                } else {
                    self.stats.oack = options(&pkt[2..]);
                    for (k, v) in &self.stats.oack {
                        match k.to_ascii_lowercase().as_str() {
                            "blksize" => self.stats.blksize = v.parse().unwrap_or(512),
                            "windowsize" => self.stats.windowsize = v.parse().unwrap_or(1).max(1),
                            "tsize" => self.stats.tsize = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
                self.got_reply = true;
                self.consecutive = 0;
                self.ack(0)
            }
            OP_DATA => {
                let block = u16::from_be_bytes([pkt[2], pkt[3]]);
                let payload = &pkt[4..];
                if !self.got_reply {
                    // DATA without OACK: the server refused every option (RFC 2347).
                    self.got_reply = true;
                    self.stats.blksize = 512;
                    self.stats.windowsize = 1;
                }
                if block == self.expected {
                    self.consecutive = 0;
                    self.nacked = false;
                    self.accept(payload);
                    self.expected = block.wrapping_add(1);
                    self.since_ack += 1;
                    if self.vanish_after.is_some_and(|v| self.stats.blocks >= v) {
                        self.fail(Failure::Vanished);
                        return None;
                    }
                    if payload.len() < self.stats.blksize {
                        self.last_acked = block;
                        let result = match self.stats.tsize {
                            Some(t) if t != self.stats.bytes => Err(Failure::Corrupt(format!(
                                "{} bytes, tsize said {t}",
                                self.stats.bytes
                            ))),
                            _ => Ok(()),
                        };
                        self.outcome.get_or_insert(result);
                        return self.ack(block);
                    }
                    if self.since_ack >= self.stats.windowsize {
                        self.since_ack = 0;
                        self.last_acked = block;
                        return self.ack(block);
                    }
                    None
                } else if self.expected.wrapping_sub(block) <= 0x8000 {
                    // Behind: a retransmission. Our ACK of it was lost: send it again.
                    self.stats.duplicates += 1;
                    if block == self.last_acked {
                        self.ack(block)
                    } else {
                        None
                    }
                } else {
                    // A gap (RFC 7440): ACK the last in-order block once; the server restarts
                    // its window there. The rest of this window is ignored.
                    self.stats.out_of_order += 1;
                    if self.nacked {
                        return None;
                    }
                    self.nacked = true;
                    self.stats.gaps += 1;
                    let b = self.expected.wrapping_sub(1);
                    self.last_acked = b;
                    self.since_ack = 0;
                    self.ack(b)
                }
            }
            OP_ERROR => {
                let code = u16::from_be_bytes([pkt[2], pkt[3]]);
                let msg = &pkt[4..];
                let end = msg.iter().position(|b| *b == 0).unwrap_or(msg.len());
                self.fail(Failure::Error {
                    code,
                    message: String::from_utf8_lossy(&msg[..end]).into_owned(),
                });
                None
            }
            _ => None,
        }
    }

    /// The retransmit timer fired: re-send the request, or re-ACK the last in-order block.
    pub fn on_timeout(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.stats.retransmits += 1;
        self.consecutive += 1;
        if self.consecutive > self.max_timeouts {
            self.fail(Failure::Timeout(format!(
                "no progress after {} retransmissions",
                self.max_timeouts
            )));
            return None;
        }
        match self.stats.server_tid {
            Some(tid) if self.got_reply => {
                let b = self.expected.wrapping_sub(1);
                self.last_acked = b;
                self.since_ack = 0;
                self.nacked = false;
                self.ack(b).map(|p| (p, tid))
            }
            _ => Some((self.request.clone(), self.server)),
        }
    }

    /// The result: the bytes kept (see [`Sink`]) or the failure.
    pub fn finish(self) -> Fetch {
        let result = match self.outcome {
            Some(Ok(())) => Ok(self.data),
            Some(Err(f)) => Err(f),
            None => Err(Failure::Io("the transfer never ended".into())),
        };
        Fetch {
            result,
            stats: self.stats,
        }
    }
}

// ---- drivers ----

/// Fetches `name` from `server` over `sock` into memory.
pub fn get(sock: &UdpSocket, server: SocketAddr, name: &str, opts: &ClientOpts) -> Fetch {
    fetch(sock, server, name, opts, Sink::Keep, &mut |_| {})
}

/// Like [`get`]; `on_open` runs once, when the first packet of the transfer arrives and
/// before it is answered (it may block to hold the transfer open).
pub fn get_hooked(
    sock: &UdpSocket,
    server: SocketAddr,
    name: &str,
    opts: &ClientOpts,
    on_open: &mut dyn FnMut(&Stats),
) -> Fetch {
    fetch(sock, server, name, opts, Sink::Keep, on_open)
}

/// One transfer on a blocking socket, the bytes into `sink`.
pub fn fetch(
    sock: &UdpSocket,
    server: SocketAddr,
    name: &str,
    opts: &ClientOpts,
    sink: Sink,
    on_open: &mut dyn FnMut(&Stats),
) -> Fetch {
    let mut t = Transfer::new(server, name, opts, sink);
    if let Err(e) = drive(&mut t, sock, opts, on_open) {
        t.fail(Failure::Io(e.to_string()));
    }
    t.finish()
}

/// A read that ended without a packet: the timer decides what happens next. `Interrupted`
/// belongs here: a process stopped and continued (a paused CI container, a debugger) gets
/// EINTR from any socket read with `SO_RCVTIMEO`, handler or not (signal(7)).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn drive(
    t: &mut Transfer,
    sock: &UdpSocket,
    opts: &ClientOpts,
    on_open: &mut dyn FnMut(&Stats),
) -> io::Result<()> {
    let hard = Instant::now() + opts.deadline;
    let send = |p: &[u8], to: SocketAddr| {
        if p[1] == OP_ACK as u8 && !opts.ack_delay.is_zero() {
            std::thread::sleep(opts.ack_delay);
        }
        sock.send_to(p, to).map(|_| ())
    };
    sock.send_to(t.request(), t.server)?;
    let mut buf = Transfer::buffer(opts);
    let mut timer = Instant::now() + opts.rto;
    // The socket's read timeout, set again only when it is off by more than 1 ms: a
    // setsockopt per packet would cost a bulk client a third of its syscalls.
    let mut armed: Option<Duration> = None;
    while !t.done() {
        let now = Instant::now();
        if now >= hard {
            if let (true, Some(tid)) = (opts.abort_at_deadline, t.stats.server_tid) {
                let _ = sock.send_to(&error_packet(0, "cut by the client's deadline"), tid);
            }
            t.fail(Failure::Cut);
            break;
        }
        let wait = timer.saturating_duration_since(now);
        if wait.is_zero() {
            if let Some((p, to)) = t.on_timeout() {
                send(&p, to)?;
            }
            timer = Instant::now() + opts.rto;
            continue;
        }
        let want = wait.min(hard - now);
        let ms = Duration::from_millis(1);
        if armed.is_none_or(|a| a > want + ms || want > a + ms) {
            sock.set_read_timeout(Some(want))?;
            armed = Some(want);
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                match t.source(from) {
                    Source::Stranger => continue,
                    Source::Foreign => {
                        // RFC 1350: a packet from another TID gets ERROR 5.
                        let _ = sock.send_to(&error_packet(5, "unknown transfer id"), from);
                        continue;
                    }
                    Source::First => on_open(&t.stats),
                    Source::Same => {}
                }
                let before = t.stats.bytes;
                if let Some(p) = t.on_packet(&buf[..n]) {
                    send(&p, from)?;
                    timer = Instant::now() + opts.rto;
                } else if t.stats.bytes != before {
                    timer = Instant::now() + opts.rto;
                }
            }
            // An ICMP error queued on the socket (the server went away): the timer decides.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    if matches!(t.outcome, Some(Ok(()))) && !opts.dally.is_zero() {
        // Our last ACK may be lost: answer the last block if it comes again.
        let until = Instant::now() + opts.dally;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if t.source(from) == Source::Same => {
                    if let Some(p) = t.on_packet(&buf[..n]) {
                        send(&p, from)?;
                    }
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// One transfer on tokio (the load generator's storm: thousands of clients on two
/// threads); the same [`Transfer`], without `on_open`, `ack_delay` and `dally`.
pub async fn fetch_async(
    sock: &tokio::net::UdpSocket,
    server: SocketAddr,
    name: &str,
    opts: &ClientOpts,
    sink: Sink,
) -> Fetch {
    let mut t = Transfer::new(server, name, opts, sink);
    if let Err(e) = drive_async(&mut t, sock, opts).await {
        t.fail(Failure::Io(e.to_string()));
    }
    t.finish()
}

async fn drive_async(
    t: &mut Transfer,
    sock: &tokio::net::UdpSocket,
    opts: &ClientOpts,
) -> io::Result<()> {
    use tokio::time::{timeout_at, Instant};
    let hard = Instant::now() + opts.deadline;
    sock.send_to(t.request(), t.server).await?;
    let mut buf = Transfer::buffer(opts);
    let mut timer = Instant::now() + opts.rto;
    while !t.done() {
        if Instant::now() >= hard {
            if let (true, Some(tid)) = (opts.abort_at_deadline, t.stats.server_tid) {
                let abort = error_packet(0, "cut by the client's deadline");
                let _ = sock.send_to(&abort, tid).await;
            }
            t.fail(Failure::Cut);
            break;
        }
        match timeout_at(timer.min(hard), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                match t.source(from) {
                    Source::Stranger => continue,
                    Source::Foreign => {
                        let _ = sock
                            .send_to(&error_packet(5, "unknown transfer id"), from)
                            .await;
                        continue;
                    }
                    Source::First | Source::Same => {}
                }
                let before = t.stats.bytes;
                if let Some(p) = t.on_packet(&buf[..n]) {
                    sock.send_to(&p, from).await?;
                    timer = Instant::now() + opts.rto;
                } else if t.stats.bytes != before {
                    timer = Instant::now() + opts.rto;
                }
            }
            // ICMP errors on an unconnected socket: the timer decides.
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => return Err(e),
            Err(_) if Instant::now() >= hard => {}
            Err(_) => {
                if let Some((p, to)) = t.on_timeout() {
                    sock.send_to(&p, to).await?;
                }
                timer = Instant::now() + opts.rto;
            }
        }
    }
    Ok(())
}
