//! Session handling: client ERROR packets, retransmitted and superseding
//! requests, errors of the listening socket, client timeouts above the
//! server's limit, and the memory handed to readers.
//!
//! The client side is played with a blocking `std::net::UdpSocket`. The
//! assertions are on packet counts and contents; timeouts are only bounds
//! of a counting window or a safety net against hanging.

use async_lock::Mutex;
use futures_lite::future;
use std::fs;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

use crate::packet::{Mode, Opts, Packet, RwReq};
use crate::server::handlers::DirHandler;
use crate::server::{ReqsInProgress, TftpServerBuilder};

/// Safety net for waits that should end much sooner.
const SAFETY: Duration = Duration::from_secs(5);
/// Window in which the server must send nothing (to some TID).
const QUIET: Duration = Duration::from_millis(500);
/// Short retry timeout: a session that survives when it should not
/// retransmits at least twice within `QUIET`.
const SHORT: Duration = Duration::from_millis(200);

/// A file of `len` bytes, different for each `seed`.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

struct Server {
    addr: SocketAddr,
    reqs: Arc<Mutex<ReqsInProgress>>,
    dir: TempDir,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<crate::Result<()>>>,
}

impl Server {
    /// Serves (read-write) a directory with `a.bin` (41 blocks of 512 bytes)
    /// and `b.bin` (5 blocks) on `socket`, with retry `timeout`.
    fn start(socket: UdpSocket, timeout: Duration) -> Server {
        Server::start_with(socket, |b| b.timeout(timeout))
    }

    /// Like [`Server::start`], with the builder set up by `configure`.
    fn start_with(
        socket: UdpSocket,
        configure: impl FnOnce(
            TftpServerBuilder<DirHandler>,
        ) -> TftpServerBuilder<DirHandler>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.bin"), content(20 * 1024 + 17, 1))
            .unwrap();
        fs::write(dir.path().join("b.bin"), content(2 * 1024 + 100, 2))
            .unwrap();

        let builder = TftpServerBuilder::with_dir_rw(dir.path())
            .unwrap()
            .std_socket(socket)
            .unwrap();
        let tftpd = future::block_on(configure(builder).build()).unwrap();
        let addr = tftpd.listen_addr().unwrap();
        let reqs = Arc::clone(&tftpd.reqs_in_progress);
        let (stop, stopped) = async_channel::bounded::<()>(1);

        let thread = std::thread::spawn(move || {
            future::block_on(future::or(tftpd.serve(), async move {
                let _ = stopped.recv().await;
                Ok(())
            }))
        });

        Server {
            addr,
            reqs,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn bind(timeout: Duration) -> Server {
        Server::start(UdpSocket::bind("127.0.0.1:0").unwrap(), timeout)
    }

    fn file(&self, name: &str) -> Vec<u8> {
        fs::read(self.dir.path().join(name)).unwrap()
    }

    fn in_progress(&self) -> usize {
        self.reqs.lock_blocking().reqs.len()
    }

    /// Waits (bounded) until no request is in progress, returns their count.
    fn wait_idle(&self) -> usize {
        let deadline = Instant::now() + SAFETY;
        while self.in_progress() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.in_progress()
    }

    /// Whether `serve()` is still running.
    fn is_serving(&self) -> bool {
        !self.thread.as_ref().unwrap().is_finished()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.thread.take().unwrap().join();
    }
}

fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn rrq(filename: &str, opts: Opts) -> Vec<u8> {
    Packet::Rrq(RwReq {
        filename: filename.to_string(),
        mode: Mode::Octet,
        opts,
    })
    .to_bytes()
    .to_vec()
}

fn wrq(filename: &str) -> Vec<u8> {
    Packet::Wrq(RwReq {
        filename: filename.to_string(),
        mode: Mode::Octet,
        opts: Opts::default(),
    })
    .to_bytes()
    .to_vec()
}

fn ack(block: u16) -> Vec<u8> {
    Packet::Ack(block).to_bytes().to_vec()
}

/// ERROR packet with code 8 (RFC 2347: option negotiation failed), as sent
/// by UEFI firmware after it got the file size from the OACK.
fn error_8() -> Vec<u8> {
    let mut p = vec![0, 5, 0, 8];
    p.extend_from_slice(b"tsize probe done\0");
    p
}

/// Receives one packet, waiting at most `timeout`.
fn recv(sock: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 2048];

    match sock.recv_from(&mut buf) {
        Ok((len, from)) => {
            buf.truncate(len);
            Some((buf, from))
        }
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.kind() == io::ErrorKind::TimedOut =>
        {
            None
        }
        Err(e) => panic!("recv_from: {e}"),
    }
}

/// All the packets received during `window`.
fn recv_all(sock: &UdpSocket, window: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let end = Instant::now() + window;
    let mut packets = Vec::new();

    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        match recv(sock, left) {
            Some(p) => packets.push(p),
            None => break,
        }
    }

    packets
}

/// Result of a client-side read transfer.
struct Download {
    data: Vec<u8>,
    /// Packets received from another TID than the transfer's one.
    strays: Vec<SocketAddr>,
}

/// Number of packets received from `tid` during `window`.
fn count_from(sock: &UdpSocket, tid: SocketAddr, window: Duration) -> usize {
    recv_all(sock, window).iter().filter(|(_, from)| *from == tid).count()
}

/// Discards the packets already received (e.g. retransmissions).
fn drain(sock: &UdpSocket) {
    while recv(sock, Duration::from_millis(1)).is_some() {}
}

/// Completes a read transfer whose first reply (`first`, OACK or DATA 1)
/// came from `tid`.
fn download(sock: &UdpSocket, tid: SocketAddr, first: &[u8]) -> Download {
    let mut data = Vec::new();
    let mut strays = Vec::new();
    let mut expected: u16 = 1;
    let mut block_size = 512;

    let mut packet = first.to_vec();
    loop {
        match Packet::decode(&packet).unwrap() {
            Packet::OAck(opts) if expected == 1 => {
                block_size = opts.block_size.map_or(512, usize::from);
                sock.send_to(&ack(0), tid).unwrap();
            }
            Packet::Data(block, payload) if block == expected => {
                data.extend_from_slice(payload);
                sock.send_to(&ack(block), tid).unwrap();
                if payload.len() < block_size {
                    return Download {
                        data,
                        strays,
                    };
                }
                expected += 1;
            }
            // Retransmission of something already handled.
            _ => {}
        }

        loop {
            let (p, from) = recv(sock, SAFETY).expect("transfer stalled");
            if from == tid {
                packet = p;
                break;
            }
            strays.push(from);
        }
    }
}

fn first_reply(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv(sock, SAFETY).expect("no reply to the request")
}

fn is_oack(packet: &[u8], expected: &Opts) -> bool {
    matches!(Packet::decode(packet), Ok(Packet::OAck(ref o)) if o == expected)
}

fn blksize_1024() -> Opts {
    Opts {
        block_size: Some(1024),
        ..Opts::default()
    }
}

fn tsize_probe() -> Opts {
    Opts {
        block_size: Some(1024),
        transfer_size: Some(0),
        ..Opts::default()
    }
}

/// UEFI-style size probe from `sock`: RRQ with `tsize 0`, OACK, ERROR 8.
/// Returns the TID of the probe's session.
fn probe(server: &Server, sock: &UdpSocket) -> SocketAddr {
    sock.send_to(&rrq("a.bin", tsize_probe()), server.addr).unwrap();

    let (oack, probe_tid) = first_reply(sock);
    let size = server.file("a.bin").len() as u64;
    assert!(is_oack(
        &oack,
        &Opts {
            block_size: Some(1024),
            transfer_size: Some(size),
            ..Opts::default()
        }
    ));

    // OACKs retransmitted until now were sent before the ERROR.
    drain(sock);
    sock.send_to(&error_8(), probe_tid).unwrap();
    probe_tid
}

/// The real request after a size probe, from the same or another port.
fn real_request(server: &Server, sock: &UdpSocket, probe_tid: SocketAddr) {
    sock.send_to(&rrq("a.bin", blksize_1024()), server.addr).unwrap();

    // Answered on the first try: the first packet is the OACK of the new
    // request (no tsize), from a new TID.
    let (first, tid) = first_reply(sock);
    assert_ne!(tid, probe_tid);
    assert!(is_oack(&first, &blksize_1024()));

    let dl = download(sock, tid, &first);
    assert_eq!(dl.data, server.file("a.bin"));
    assert!(dl.strays.is_empty(), "stray packets from {:?}", dl.strays);
}

#[test]
fn probe_then_real_request() {
    // Short retry timeout: a session that ignored the ERROR would retransmit
    // its OACK within `QUIET`.
    let server = Server::bind(SHORT);
    let sock = client();

    let probe_tid = probe(&server, &sock);

    // The server sends nothing after the ERROR: no retransmitted OACK, and
    // no ERROR in reply to the ERROR.
    assert_eq!(count_from(&sock, probe_tid, QUIET), 0);

    // The probe's session is gone.
    assert_eq!(server.wait_idle(), 0);

    // Same source port.
    real_request(&server, &sock, probe_tid);

    // New source port.
    let sock2 = client();
    let probe_tid = probe(&server, &sock2);
    let sock3 = client();
    real_request(&server, &sock3, probe_tid);
    assert_eq!(count_from(&sock2, probe_tid, QUIET), 0);

    assert_eq!(server.wait_idle(), 0);
    assert!(server.is_serving());
}

#[test]
fn probe_then_immediate_real_request_same_port() {
    // The real RRQ right after the ERROR, racing the end of the probe's
    // session: it is answered at once all the same.
    let server = Server::bind(SHORT);
    let sock = client();

    let probe_tid = probe(&server, &sock);
    real_request(&server, &sock, probe_tid);

    assert_eq!(server.wait_idle(), 0);
    assert_eq!(count_from(&sock, probe_tid, QUIET), 0);
}

#[test]
fn duplicate_rrq_is_ignored() {
    // Default retry timeout (3 s): no retransmission within `QUIET`.
    let server = Server::bind(Duration::from_secs(3));

    // Retransmitted before any reply (boot storm).
    let sock = client();
    let req = rrq("a.bin", blksize_1024());
    sock.send_to(&req, server.addr).unwrap();
    sock.send_to(&req, server.addr).unwrap();

    let replies = recv_all(&sock, QUIET);
    assert_eq!(replies.len(), 1, "one OACK expected: {replies:?}");
    let (first, tid) = &replies[0];
    assert!(is_oack(first, &blksize_1024()));
    assert_eq!(server.in_progress(), 1);

    let dl = download(&sock, *tid, first);
    assert_eq!(dl.data, server.file("a.bin"));
    assert!(dl.strays.is_empty(), "stray packets from {:?}", dl.strays);

    // Retransmitted after the OACK was sent but before it was acknowledged.
    let sock = client();
    sock.send_to(&req, server.addr).unwrap();
    let (first, tid) = first_reply(&sock);
    sock.send_to(&req, server.addr).unwrap();

    let replies = recv_all(&sock, QUIET);
    assert_eq!(replies.len(), 0, "{replies:?}");
    assert_eq!(server.in_progress(), 1);

    let dl = download(&sock, tid, &first);
    assert_eq!(dl.data, server.file("a.bin"));
    assert!(dl.strays.is_empty(), "stray packets from {:?}", dl.strays);

    assert_eq!(server.wait_idle(), 0);
}

#[test]
fn new_rrq_supersedes_transfer_in_progress() {
    // Short retry timeout: a session that survived would retransmit within
    // `QUIET`.
    let server = Server::bind(SHORT);
    let sock = client();

    // Start a transfer of a.bin and acknowledge 5 blocks of it.
    sock.send_to(&rrq("a.bin", Opts::default()), server.addr).unwrap();
    let (mut packet, old_tid) = first_reply(&sock);
    for block in 1..=5 {
        assert!(
            matches!(Packet::decode(&packet), Ok(Packet::Data(b, _)) if b == block)
        );
        sock.send_to(&ack(block), old_tid).unwrap();
        packet = loop {
            let (p, from) = recv(&sock, SAFETY).expect("transfer stalled");
            assert_eq!(from, old_tid);
            if !matches!(Packet::decode(&p), Ok(Packet::Data(b, _)) if b == block)
            {
                break p;
            }
        };
    }

    // Same port, different file while DATA 6 is unacknowledged.
    sock.send_to(&rrq("b.bin", Opts::default()), server.addr).unwrap();

    // The old transfer may have retransmitted DATA 6 before it was
    // cancelled, never after the new transfer started.
    let (first, new_tid) = loop {
        let (p, from) = recv(&sock, SAFETY).expect("no reply to the RRQ");
        if from != old_tid {
            break (p, from);
        }
    };

    let dl = download(&sock, new_tid, &first);
    assert_eq!(dl.data, server.file("b.bin"));
    assert!(dl.strays.is_empty(), "stray packets from {:?}", dl.strays);

    // The old transfer is cancelled: it retransmits nothing.
    assert_eq!(count_from(&sock, old_tid, QUIET), 0);
    assert_eq!(server.wait_idle(), 0);
}

#[test]
fn client_error_aborts_wrq() {
    let server = Server::bind(SHORT);
    let sock = client();

    sock.send_to(&wrq("up.bin"), server.addr).unwrap();
    let (first, tid) = first_reply(&sock);
    assert!(matches!(Packet::decode(&first), Ok(Packet::Ack(0))));

    drain(&sock);
    sock.send_to(&error_8(), tid).unwrap();

    // No retransmitted ACK, no ERROR in reply to the ERROR.
    assert_eq!(count_from(&sock, tid, QUIET), 0);
    assert_eq!(server.wait_idle(), 0);
}

/// An error returned by `recv_from` on the listening socket (here an
/// ICMP-induced `ECONNREFUSED`) does not stop the server.
#[cfg(target_os = "linux")]
#[test]
fn listening_socket_error_does_not_stop_server() {
    // Port with nobody behind it.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sock = client();

    // Queue an ECONNREFUSED on `socket`: sending from a connected UDP socket
    // to a closed port makes the ICMP port unreachable error pending. The
    // socket is then connected to the client, so that it only gets its
    // requests.
    let provoke = || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(dead).unwrap();
        socket.send(b"x").unwrap();
        socket.connect(sock.local_addr().unwrap()).unwrap();
        socket
    };

    // The mechanism works here: a twin socket gets the error.
    let twin = provoke();
    twin.set_read_timeout(Some(SAFETY)).unwrap();
    let err = twin.recv_from(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);

    let server = Server::start(provoke(), Duration::from_secs(3));

    sock.send_to(&rrq("b.bin", Opts::default()), server.addr).unwrap();
    let (first, tid) = first_reply(&sock);
    let dl = download(&sock, tid, &first);
    assert_eq!(dl.data, server.file("b.bin"));

    assert!(server.is_serving());
}

#[test]
fn recv_error_decision() {
    use crate::server::recv_error_is_fatal;
    use io::ErrorKind::*;

    for kind in [
        ConnectionRefused,
        ConnectionReset,
        OutOfMemory,
        Interrupted,
        WouldBlock,
        TimedOut,
        Other,
    ] {
        let e = io::Error::from(kind);
        assert!(!recv_error_is_fatal(&e, true), "{kind:?}");
        // The socket itself is unusable (e.g. EBADF): fatal.
        assert!(recv_error_is_fatal(&e, false), "{kind:?}");
    }

    for kind in [InvalidInput, Unsupported] {
        assert!(recv_error_is_fatal(&io::Error::from(kind), true), "{kind:?}");
    }
}

#[test]
fn serve_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}

    let server = future::block_on(
        TftpServerBuilder::with_dir_ro(".")
            .unwrap()
            .bind("127.0.0.1:0".parse().unwrap())
            .build(),
    )
    .unwrap();
    assert_send(&server.serve());
}

/// The next `n` DATA blocks from `tid` numbered `first` or later (earlier
/// ones are retransmissions of a window already handled), as (block number,
/// payload).
fn data_blocks(
    sock: &UdpSocket,
    tid: SocketAddr,
    first: u16,
    n: usize,
) -> Vec<(u16, Vec<u8>)> {
    let mut blocks = Vec::new();
    while blocks.len() < n {
        let (p, from) = recv(sock, SAFETY).expect("window stalled");
        match Packet::decode(&p) {
            Ok(Packet::Data(block, payload))
                if from == tid && block >= first =>
            {
                blocks.push((block, payload.to_vec()))
            }
            _ => {}
        }
    }
    blocks
}

/// A windowed read (RFC 7440): whole windows (sent as one UDP GSO send
/// where the kernel allows), a partial ACK that moves the window, a window
/// retransmitted after the timeout but not before (the retransmit timer is
/// armed lazily, at an earlier deadline, and must be re-armed, not fire
/// early), and the short last block.
#[test]
fn windowed_transfer_with_partial_ack_and_retransmission() {
    let server = Server::bind(SHORT);
    let file = server.file("a.bin");
    let block = |n: u16| {
        let start = (usize::from(n) - 1) * 512;
        file[start..(start + 512).min(file.len())].to_vec()
    };
    let sock = client();
    let opts = Opts {
        window_size: Some(8),
        ..Opts::default()
    };
    sock.send_to(&rrq("a.bin", opts.clone()), server.addr).unwrap();
    let (oack, tid) = first_reply(&sock);
    assert!(is_oack(&oack, &opts));
    sock.send_to(&ack(0), tid).unwrap();

    let first = data_blocks(&sock, tid, 1, 8);
    let want: Vec<_> = (1..=8).map(|n| (n, block(n))).collect();
    assert_eq!(first, want, "first window");

    // ACK 5 of 8, late in the timeout: the next window starts at block 6,
    // and the timer armed for the first window fires during the second.
    std::thread::sleep(SHORT * 3 / 5);
    sock.send_to(&ack(5), tid).unwrap();
    let second = data_blocks(&sock, tid, 6, 8);
    let want: Vec<_> = (6..=13).map(|n| (n, block(n))).collect();
    assert_eq!(second, want, "window after a partial ACK");

    // No ACK: nothing before the timeout (SHORT) ...
    assert_eq!(count_from(&sock, tid, SHORT / 2), 0, "early retransmission");
    // ... then the same window again.
    let again = data_blocks(&sock, tid, 6, 8);
    assert_eq!(again, want, "retransmitted window");
    drain(&sock);

    // The rest, one whole window at a time, to the short last block (41).
    let mut next = 14u16;
    let mut got = (1..14).flat_map(block).collect::<Vec<u8>>();
    sock.send_to(&ack(13), tid).unwrap();
    while next <= 41 {
        let n = usize::from((41 - next + 1).min(8));
        let window = data_blocks(&sock, tid, next, n);
        for (i, (b, payload)) in window.iter().enumerate() {
            assert_eq!(*b, next + i as u16);
            got.extend_from_slice(payload);
        }
        next += n as u16;
        sock.send_to(&ack(next - 1), tid).unwrap();
    }
    assert_eq!(got, file);
    assert_eq!(server.wait_idle(), 0);
}

/// A client that vanished (its port closed) ends its transfer at the first
/// retransmission: the transfer's socket is connected to the peer, so the
/// ICMP port-unreachable comes back as an error, instead of the session
/// retransmitting `max_send_retries` times (100 x 200 ms here).
#[test]
fn vanished_client_ends_its_transfer_at_the_first_retransmission() {
    let server = Server::bind(SHORT);
    let sock = client();
    sock.send_to(&rrq("a.bin", blksize_1024()), server.addr).unwrap();
    let (oack, _tid) = first_reply(&sock);
    assert!(is_oack(&oack, &blksize_1024()));
    assert_eq!(server.in_progress(), 1);
    drop(sock);
    assert_eq!(server.wait_idle(), 0, "session outlived its client");
}

/// A client's `timeout` above the server's limit is declined (RFC 2349: the
/// server may only echo the value or leave it out of the OACK) and the
/// transfer retransmits at the server's own timeout, `max_send_retries`
/// times: a client that asked 255 s and went silent (its port still open,
/// so no ICMP ends the transfer) is freed after (2 + 1) x 200 ms, not after
/// (2 + 1) x 255 s. A timeout within the limit is accepted and echoed.
#[test]
fn client_timeout_above_the_limit_is_declined_and_the_server_timeout_used() {
    let server =
        Server::start_with(UdpSocket::bind("127.0.0.1:0").unwrap(), |b| {
            b.timeout(SHORT)
                .max_send_retries(2)
                .client_timeout_limit(Duration::from_secs(1))
        });
    let sock = client();
    let asked = Opts {
        timeout: Some(255),
        ..blksize_1024()
    };
    sock.send_to(&rrq("a.bin", asked), server.addr).unwrap();
    let (oack, tid) = first_reply(&sock);
    assert!(is_oack(&oack, &blksize_1024()), "timeout not echoed");

    // Never ACKed: the OACK goes out 1 + 2 times, SHORT apart, then the
    // session ends (with an ERROR, as on any retry exhaustion).
    let mut oacks = 1;
    let deadline = Instant::now() + SAFETY;
    while server.in_progress() != 0 && Instant::now() < deadline {
        if let Some((p, from)) = recv(&sock, SHORT) {
            if from == tid && is_oack(&p, &blksize_1024()) {
                oacks += 1;
            }
        }
    }
    assert_eq!(server.in_progress(), 0, "session held past its retries");
    assert_eq!(oacks, 3, "one OACK and max_send_retries retransmissions");

    // Within the limit: accepted and echoed.
    let sock = client();
    let asked = Opts {
        timeout: Some(1),
        ..blksize_1024()
    };
    sock.send_to(&rrq("a.bin", asked.clone()), server.addr).unwrap();
    let (oack, tid) = first_reply(&sock);
    assert!(is_oack(&oack, &asked), "timeout 1 echoed");
    let dl = download(&sock, tid, &oack);
    assert_eq!(dl.data, server.file("a.bin"));
    assert_eq!(server.wait_idle(), 0);
}

/// The reader is handed initialised memory: every byte of the buffer it
/// gets is zero (the crate used to pass a `&mut [u8]` over the
/// uninitialised spare capacity of a `BytesMut`, undefined behaviour that
/// in practice showed the previous block's bytes).
#[test]
fn reader_is_handed_initialised_memory() {
    use crate::packet;
    use crate::server::Handler;
    use futures_lite::io::{AsyncRead, Sink};
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    const LEN: usize = 40 * 512 + 7;

    /// Yields `left` bytes of 0xAA; counts calls whose buffer was not zero.
    struct Nosy {
        left: usize,
        dirty: Arc<AtomicUsize>,
    }

    impl AsyncRead for Nosy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if buf.iter().any(|&b| b != 0) {
                self.dirty.fetch_add(1, Ordering::Relaxed);
            }
            let n = buf.len().min(self.left);
            buf[..n].fill(0xAA);
            self.left -= n;
            Poll::Ready(Ok(n))
        }
    }

    struct NosyHandler(Arc<AtomicUsize>);

    impl Handler for NosyHandler {
        type Reader = Nosy;
        type Writer = Sink;

        async fn read_req_open(
            &self,
            _client: &SocketAddr,
            _path: &Path,
        ) -> Result<(Nosy, Option<u64>), packet::Error> {
            let dirty = Arc::clone(&self.0);
            Ok((
                Nosy {
                    left: LEN,
                    dirty,
                },
                Some(LEN as u64),
            ))
        }

        async fn write_req_open(
            &self,
            _client: &SocketAddr,
            _path: &Path,
            _size: Option<u64>,
        ) -> Result<Sink, packet::Error> {
            Err(packet::Error::IllegalOperation)
        }
    }

    let dirty = Arc::new(AtomicUsize::new(0));
    let tftpd = future::block_on(
        TftpServerBuilder::with_handler(NosyHandler(Arc::clone(&dirty)))
            .bind("127.0.0.1:0".parse().unwrap())
            .timeout(SHORT)
            .build(),
    )
    .unwrap();
    let addr = tftpd.listen_addr().unwrap();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        future::block_on(future::or(tftpd.serve(), async move {
            let _ = stopped.recv().await;
            Ok(())
        }))
    });

    let sock = client();
    sock.send_to(&rrq("any", Opts::default()), addr).unwrap();
    let (first, tid) = first_reply(&sock);
    let dl = download(&sock, tid, &first);
    assert_eq!(dl.data, vec![0xAA; LEN]);
    assert_eq!(dirty.load(Ordering::Relaxed), 0, "reads into unzeroed memory");

    drop(stop);
    let _ = thread.join();
}

/// Patch 10: a transfer from a listener on an IPv6 link-local address keeps
/// the listener's scope id. Without it the transfer socket is bound to
/// `fe80::1` with no scope (`EINVAL`) and the client gets nothing.
///
/// Runs in a network namespace of its own (this thread only, `unshare`), with
/// `fe80::1` on its `lo`: needs root and `ip` (Debian: iproute2). It fails,
/// never skips, without them.
#[cfg(target_os = "linux")]
#[test]
fn link_local_listener_serves_transfers_with_its_scope() {
    use std::net::{Ipv6Addr, SocketAddrV6};
    use std::process::Command;

    let t = std::thread::spawn(|| {
        // SAFETY: unshare takes a flag and changes only this thread's
        // namespaces; threads and children it starts inherit them.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            io::Error::last_os_error()
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"][..],
        ] {
            let st = Command::new("ip").args(args).status().expect(
                "running `ip` (Debian package iproute2) in a new namespace",
            );
            assert!(st.success(), "ip {args:?}: {st}");
        }
        // SAFETY: a NUL-terminated constant name.
        let lo = unsafe { libc::if_nametoindex(b"lo\0".as_ptr().cast()) };
        assert_ne!(lo, 0, "lo has an index");
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let listen = SocketAddrV6::new(ll, 0, 0, lo);
        let server = Server::start(UdpSocket::bind(listen).unwrap(), SHORT);
        let SocketAddr::V6(addr) = server.addr else {
            panic!("v6")
        };
        assert_eq!(addr.scope_id(), lo, "the listener has its scope");

        let sock = UdpSocket::bind(SocketAddrV6::new(ll, 0, 0, lo)).unwrap();
        sock.send_to(&rrq("a.bin", blksize_1024()), server.addr).unwrap();
        let (first, tid) = recv(&sock, SAFETY)
            .expect("no reply: the transfer socket was not bound");
        assert!(is_oack(&first, &blksize_1024()));
        let SocketAddr::V6(tid6) = tid else {
            panic!("v6")
        };
        assert_eq!((*tid6.ip(), tid6.scope_id()), (ll, lo));
        assert_ne!(tid.port(), server.addr.port(), "a transfer socket");
        let dl = download(&sock, tid, &first);
        assert_eq!(dl.data, server.file("a.bin"));
        assert_eq!(server.wait_idle(), 0);
    });
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn transfer_address_keeps_the_scope_and_takes_port_0() {
    use crate::server::transfer_addr;
    for (listen, want) in [
        ("[fe80::1%7]:69", "[fe80::1%7]:0"),
        ("[2001:db8::1]:6969", "[2001:db8::1]:0"),
        ("192.0.2.1:69", "192.0.2.1:0"),
    ] {
        let got = transfer_addr(listen.parse().unwrap());
        let want: SocketAddr = want.parse().unwrap();
        assert_eq!(got, want);
        if let (SocketAddr::V6(g), SocketAddr::V6(w)) = (got, want) {
            assert_eq!(g.scope_id(), w.scope_id());
        }
    }
}

/// Counts, on threads that opt in, the allocations of one size: what a
/// transfer allocates per block.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Counting;

    thread_local! {
        /// The allocation size counted on this thread (0: none).
        pub static SIZE: Cell<usize> = const { Cell::new(0) };
    }
    pub static COUNT: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: every call is forwarded to `System` unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if SIZE.try_with(Cell::get).unwrap_or(0) == layout.size() {
                COUNT.fetch_add(1, Ordering::Relaxed);
            }
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: Layout,
            new_size: usize,
        ) -> *mut u8 {
            if SIZE.try_with(Cell::get).unwrap_or(0) == new_size {
                COUNT.fetch_add(1, Ordering::Relaxed);
            }
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;
}

/// Patch 11: a lock-step transfer reads its blocks into one allocation. The
/// server thread counts allocations of a block's size (4 + 512 bytes) over a
/// 41-block transfer: 1 (the transfer's arena), where one per block (41) was
/// allocated and freed before.
#[test]
fn lock_step_transfer_reuses_one_block_buffer() {
    use crate::packet;
    use crate::server::Handler;
    use futures_lite::io::{AsyncRead, Sink};
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};

    const LEN: usize = 40 * 512 + 7;

    struct Fill(usize);

    impl AsyncRead for Fill {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.0);
            buf[..n].fill(0x5A);
            self.0 -= n;
            Poll::Ready(Ok(n))
        }
    }

    struct FillHandler;

    impl Handler for FillHandler {
        type Reader = Fill;
        type Writer = Sink;

        async fn read_req_open(
            &self,
            _client: &SocketAddr,
            _path: &Path,
        ) -> Result<(Fill, Option<u64>), packet::Error> {
            Ok((Fill(LEN), Some(LEN as u64)))
        }

        async fn write_req_open(
            &self,
            _client: &SocketAddr,
            _path: &Path,
            _size: Option<u64>,
        ) -> Result<Sink, packet::Error> {
            Err(packet::Error::IllegalOperation)
        }
    }

    let tftpd = future::block_on(
        TftpServerBuilder::with_handler(FillHandler)
            .bind("127.0.0.1:0".parse().unwrap())
            .timeout(SHORT)
            .build(),
    )
    .unwrap();
    let addr = tftpd.listen_addr().unwrap();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        counting::SIZE.with(|s| s.set(4 + 512));
        future::block_on(future::or(tftpd.serve(), async move {
            let _ = stopped.recv().await;
            Ok(())
        }))
    });

    let sock = client();
    sock.send_to(&rrq("any", Opts::default()), addr).unwrap();
    let (first, tid) = first_reply(&sock);
    let dl = download(&sock, tid, &first);
    assert_eq!(dl.data, vec![0x5A; LEN]);
    drop(stop);
    let _ = thread.join();
    assert_eq!(
        counting::COUNT.load(Ordering::Relaxed),
        1,
        "block-sized allocations on the server thread over 41 blocks"
    );
}

/// Patch 12: an open that waits (here: until the test says so) does not
/// hold up another client's request; both transfers then complete.
#[test]
fn an_open_that_waits_does_not_hold_up_other_clients() {
    use crate::packet;
    use crate::server::Handler;
    use futures_lite::io::{Cursor, Sink};
    use std::path::Path;

    /// `slow` opens when `release` is closed; anything else at once.
    struct GateHandler {
        release: async_channel::Receiver<()>,
    }

    impl Handler for GateHandler {
        type Reader = Cursor<Vec<u8>>;
        type Writer = Sink;

        async fn read_req_open(
            &self,
            _client: &SocketAddr,
            path: &Path,
        ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
            if path == Path::new("slow") {
                let _ = self.release.recv().await;
            }
            let seed = path.as_os_str().as_encoded_bytes().first().copied();
            let body = content(700, seed.unwrap_or(0));
            let len = body.len() as u64;
            Ok((Cursor::new(body), Some(len)))
        }

        async fn write_req_open(
            &self,
            _client: &SocketAddr,
            _path: &Path,
            _size: Option<u64>,
        ) -> Result<Sink, packet::Error> {
            Err(packet::Error::IllegalOperation)
        }
    }

    let (open_slow, release) = async_channel::bounded::<()>(1);
    let tftpd = future::block_on(
        TftpServerBuilder::with_handler(GateHandler {
            release,
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .timeout(SHORT)
        .build(),
    )
    .unwrap();
    let addr = tftpd.listen_addr().unwrap();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        future::block_on(future::or(tftpd.serve(), async move {
            let _ = stopped.recv().await;
            Ok(())
        }))
    });

    let waiting = client();
    waiting.send_to(&rrq("slow", Opts::default()), addr).unwrap();
    let other = client();
    other.send_to(&rrq("fast", Opts::default()), addr).unwrap();
    let (first, tid) =
        recv(&other, SAFETY).expect("a waiting open held up another client");
    assert_eq!(download(&other, tid, &first).data, content(700, b'f'));
    assert!(
        recv(&waiting, Duration::from_millis(1)).is_none(),
        "the waiting open answered before it was released"
    );

    drop(open_slow);
    let (first, tid) = first_reply(&waiting);
    assert_eq!(download(&waiting, tid, &first).data, content(700, b's'));
    drop(stop);
    let _ = thread.join();
}
