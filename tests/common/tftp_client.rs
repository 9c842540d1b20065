//! A robust TFTP read client for the fault tests: RRQ with options (blksize, windowsize,
//! tsize, timeout), locking onto the first transfer ID, its own sub-second retransmit timer
//! (re-sends the RRQ, or ACKs the last in-order block), RFC 7440 windows (ACK the last block
//! of each window; on a gap, ACK the last in-order block), tolerance of duplicate, late and
//! reordered packets, and a bound on the whole transfer. Returns the bytes and counters.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{ack, error_packet, rrq, OP_DATA, OP_ERROR, OP_OACK};

/// How a transfer is asked for and paced.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// `blksize` option (RFC 2348); `None`: not sent (512).
    pub blksize: Option<u16>,
    /// `windowsize` option (RFC 7440); `None`: not sent (1).
    pub windowsize: Option<u16>,
    /// Send `tsize 0` (RFC 2349).
    pub tsize: bool,
    /// TFTP `timeout` option, whole seconds (RFC 2349); `None`: not sent.
    pub timeout_secs: Option<u8>,
    /// The client's own retransmit timer: without progress for this long it re-sends.
    pub rto: Duration,
    /// Consecutive retransmit timeouts before giving up.
    pub max_timeouts: u32,
    /// Bound on the whole transfer.
    pub deadline: Duration,
    /// Sleep before each ACK (a slow client).
    pub ack_delay: Duration,
    /// After the final ACK, keep answering a retransmitted last block for this long.
    pub dally: Duration,
    /// Vanish (return without answering) once this many data blocks arrived in order;
    /// `Some(0)`: at the first packet of the transfer.
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
            ack_delay: Duration::ZERO,
            dally: Duration::ZERO,
            vanish_after: None,
        }
    }
}

/// What happened on the wire.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// RRQs and ACKs re-sent by the retransmit timer.
    pub retransmits: u32,
    /// Data blocks (and OACKs) received again.
    pub duplicates: u32,
    /// Data blocks received ahead of a gap (discarded; the window is re-sent).
    pub out_of_order: u32,
    /// Packets from another transfer ID (answered with ERROR 5).
    pub foreign: u32,
    pub acks_sent: u32,
    /// Data blocks accepted.
    pub blocks: u32,
    /// Payload bytes accepted so far.
    pub bytes: usize,
    /// The server's transfer ID, once known.
    pub server_tid: Option<SocketAddr>,
    /// The OACK's options, if one came.
    pub oack: Vec<(String, String)>,
}

/// Why a transfer did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server sent an ERROR packet.
    Error {
        code: u16,
        message: String,
    },
    /// No progress after `max_timeouts` retransmissions, or past the deadline.
    Timeout(String),
    /// `vanish_after` was reached: the client left on purpose.
    Vanished,
    Io(String),
}

/// A transfer's result and its counters.
#[derive(Debug)]
pub struct Fetch {
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

/// Fetches `name` from `server` over `sock`.
pub fn get(sock: &UdpSocket, server: SocketAddr, name: &str, opts: &ClientOpts) -> Fetch {
    get_hooked(sock, server, name, opts, &mut |_| {})
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
    let mut c = Client {
        sock,
        opts,
        stats: Stats::default(),
        last_ack: None,
    };
    let result = c.run(server, name, on_open);
    Fetch {
        result,
        stats: c.stats,
    }
}

struct Client<'a> {
    sock: &'a UdpSocket,
    opts: &'a ClientOpts,
    stats: Stats,
    /// Block number and time of the last ACK sent.
    last_ack: Option<(u16, Instant)>,
}

impl Client<'_> {
    fn run(
        &mut self,
        server: SocketAddr,
        name: &str,
        on_open: &mut dyn FnMut(&Stats),
    ) -> Result<Vec<u8>, Failure> {
        let o = self.opts;
        let started = Instant::now();
        let (blk, win, tmo);
        let mut req_opts: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = o.blksize {
            blk = b.to_string();
            req_opts.push(("blksize", &blk));
        }
        if o.tsize {
            req_opts.push(("tsize", "0"));
        }
        if let Some(t) = o.timeout_secs {
            tmo = t.to_string();
            req_opts.push(("timeout", &tmo));
        }
        if let Some(w) = o.windowsize {
            win = w.to_string();
            req_opts.push(("windowsize", &win));
        }
        let request = rrq(name.as_bytes(), &req_opts);
        self.send(&request, server)?;

        let mut blksize = 512usize;
        let mut window: u16 = 1;
        let mut tid: Option<SocketAddr> = None;
        let mut data = Vec::new();
        let mut expected: u16 = 1;
        // The last block of the window the server is sending: ACK on reaching it.
        let mut window_end: u16 = 1;
        let mut started_data = false;
        let mut last_progress = Instant::now();
        let mut timeouts = 0u32;
        let mut buf = vec![0u8; 70_000];
        loop {
            let now = Instant::now();
            let total_left = o.deadline.saturating_sub(now - started);
            if total_left.is_zero() {
                return Err(Failure::Timeout(format!(
                    "deadline of {:?} passed",
                    o.deadline
                )));
            }
            let wait = o
                .rto
                .saturating_sub(now - last_progress)
                .min(total_left)
                .max(Duration::from_millis(1));
            let Some((n, from)) = recv_into(self.sock, &mut buf, wait)? else {
                if last_progress.elapsed() < o.rto {
                    continue;
                }
                timeouts += 1;
                if timeouts > o.max_timeouts {
                    return Err(Failure::Timeout(format!(
                        "no progress after {} retransmissions",
                        o.max_timeouts
                    )));
                }
                self.stats.retransmits += 1;
                last_progress = Instant::now();
                match tid {
                    None => self.send(&request, server)?,
                    Some(t) => {
                        let last = expected.wrapping_sub(1);
                        window_end = last.wrapping_add(window);
                        self.ack(last, t)?;
                    }
                }
                continue;
            };
            if n < 2 {
                continue;
            }
            let op = u16::from_be_bytes([buf[0], buf[1]]);
            let body = &buf[2..n];
            match tid {
                None => {
                    tid = Some(from);
                    self.stats.server_tid = Some(from);
                    on_open(&self.stats);
                    if o.vanish_after == Some(0) {
                        return Err(Failure::Vanished);
                    }
                }
                Some(t) if t != from => {
                    // RFC 1350: a packet from another TID gets ERROR 5; the transfer goes on.
                    self.stats.foreign += 1;
                    let _ = self
                        .sock
                        .send_to(&error_packet(5, "unknown transfer id"), from);
                    continue;
                }
                Some(_) => {}
            }
            match op {
                OP_OACK => {
                    if started_data || !self.stats.oack.is_empty() {
                        self.stats.duplicates += 1;
                        if started_data {
                            continue; // stale
                        }
                    } else {
                        self.stats.oack = parse_options(body);
                        for (k, v) in &self.stats.oack {
                            match k.to_ascii_lowercase().as_str() {
                                "blksize" => blksize = v.parse().unwrap_or(512),
                                "windowsize" => window = v.parse().unwrap_or(1),
                                _ => {}
                            }
                        }
                        window = window.max(1);
                        window_end = window;
                    }
                    timeouts = 0;
                    last_progress = Instant::now();
                    self.ack(0, from)?;
                }
                OP_DATA if body.len() >= 2 => {
                    if !started_data {
                        started_data = true;
                        if self.stats.oack.is_empty() {
                            // The server ignored our options: RFC 1350 defaults.
                            blksize = 512;
                            window = 1;
                            window_end = 1;
                        }
                    }
                    let block = u16::from_be_bytes([body[0], body[1]]);
                    let payload = &body[2..];
                    let ahead = block.wrapping_sub(expected) as i16;
                    if ahead == 0 {
                        data.extend_from_slice(payload);
                        self.stats.blocks += 1;
                        self.stats.bytes = data.len();
                        expected = expected.wrapping_add(1);
                        timeouts = 0;
                        last_progress = Instant::now();
                        if o.vanish_after.is_some_and(|v| self.stats.blocks >= v) {
                            return Err(Failure::Vanished);
                        }
                        let last = payload.len() < blksize;
                        if last || block == window_end {
                            self.ack(block, from)?;
                            window_end = block.wrapping_add(window);
                        }
                        if last {
                            self.dally(from, block, &mut buf)?;
                            return Ok(data);
                        }
                    } else {
                        if ahead > 0 {
                            self.stats.out_of_order += 1;
                        } else {
                            self.stats.duplicates += 1;
                        }
                        // Tell the server where we are, but not once per packet of a
                        // window: the same ACK at most every rto/2.
                        let last = expected.wrapping_sub(1);
                        let recent = self
                            .last_ack
                            .is_some_and(|(b, at)| b == last && at.elapsed() < o.rto / 2);
                        if !recent {
                            self.ack(last, from)?;
                            window_end = last.wrapping_add(window);
                        }
                    }
                }
                OP_ERROR => {
                    let code = if body.len() >= 2 {
                        u16::from_be_bytes([body[0], body[1]])
                    } else {
                        0
                    };
                    let msg = body.get(2..).unwrap_or_default();
                    let end = msg.iter().position(|b| *b == 0).unwrap_or(msg.len());
                    return Err(Failure::Error {
                        code,
                        message: String::from_utf8_lossy(&msg[..end]).into_owned(),
                    });
                }
                _ => {}
            }
        }
    }

    fn send(&self, p: &[u8], to: SocketAddr) -> Result<(), Failure> {
        self.sock
            .send_to(p, to)
            .map(|_| ())
            .map_err(|e| Failure::Io(format!("send to {to}: {e}")))
    }

    fn ack(&mut self, block: u16, to: SocketAddr) -> Result<(), Failure> {
        if !self.opts.ack_delay.is_zero() {
            std::thread::sleep(self.opts.ack_delay);
        }
        self.stats.acks_sent += 1;
        self.last_ack = Some((block, Instant::now()));
        self.send(&ack(block), to)
    }

    /// After the final ACK: re-ACK the last block if it comes again (our ACK was lost).
    fn dally(&mut self, tid: SocketAddr, last: u16, buf: &mut [u8]) -> Result<(), Failure> {
        let until = Instant::now() + self.opts.dally;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if let Some((n, from)) = recv_into(self.sock, buf, left)? {
                if from == tid && n >= 4 && u16::from_be_bytes([buf[0], buf[1]]) == OP_DATA {
                    self.stats.duplicates += 1;
                    if u16::from_be_bytes([buf[2], buf[3]]) == last {
                        self.send(&ack(last), tid)?;
                    }
                }
            }
        }
    }
}

/// One datagram within `wait`; `None` on timeout.
fn recv_into(
    sock: &UdpSocket,
    buf: &mut [u8],
    wait: Duration,
) -> Result<Option<(usize, SocketAddr)>, Failure> {
    sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .map_err(|e| Failure::Io(e.to_string()))?;
    match sock.recv_from(buf) {
        Ok(x) => Ok(Some(x)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        // An ICMP error queued on the socket (the server went away): keep waiting, the
        // retransmit timer decides.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(None),
        Err(e) => Err(Failure::Io(e.to_string())),
    }
}

fn parse_options(body: &[u8]) -> Vec<(String, String)> {
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
