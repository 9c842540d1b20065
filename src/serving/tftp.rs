//! The TFTP server: async-tftp with ironpxe's handler — virtual PXELINUX and GRUB configs,
//! cached images and static files — on one listening socket and thread per core (at most 16;
//! `[tftp] threads` sets the count) and listen address.
//!
//! async-tftp runs on async-io, not tokio, and a crate server is single-threaded: it serves
//! its transfers on the thread that drives it. Each listening socket gets its own thread
//! driving the crate with `async_io::block_on` (measured fastest: no hop to a reactor thread
//! per packet), and one listen address gets `threads` such sockets sharing its port through
//! `SO_REUSEPORT`: the kernel spreads clients over them by a hash of the client's address and
//! port, so every packet of one client reaches the same crate server (which must see a
//! retransmitted RRQ to recognise it). The crate calls the handler without a lock (vendor
//! patch 12), so an open that waits — a GRUB config's render, awaited for its `tsize` —
//! delays only its own client; `read_req_open` is otherwise a lookup in prebuilt state:
//! classify the name, look the node up, take the render from the cache.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use bytes::{Buf, Bytes};
use futures_lite::AsyncRead;
use quick_cache::sync::Cache;

use crate::model::resource::{classify_with, Kind, Resource};
use crate::serving::app::{Answer, App, Rendering};
use crate::serving::images::ImageError;
use crate::serving::limits::Permit;
use crate::serving::metrics::{Metrics, Outcome};
use crate::serving::request::RequestLog;

/// TFTP settings (`[tftp]` in the config).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpConfig {
    /// Retransmit timeout in milliseconds when the client sets none (sub-second allowed).
    pub timeout_ms: u64,
    /// Retransmissions of one block before a transfer is abandoned.
    pub max_retries: u32,
    /// Largest `timeout` option (RFC 2349, seconds) accepted from a client. A larger one is
    /// declined (left out of the OACK, as the RFC allows no other answer) and `timeout_ms`
    /// used, so a client that vanishes holds its session at most `(max_retries + 1)` × the
    /// larger of the two, not `(max_retries + 1)` × 255 s. 0: every client timeout declined.
    pub max_timeout_secs: u8,
    /// Largest `blksize` granted (RFC 2348).
    pub max_block_size: u16,
    /// Largest `windowsize` granted (RFC 7440).
    pub max_window_size: u16,
    /// Requested `SO_RCVBUF` of each listening socket, so a boot storm's burst of requests is
    /// queued, not dropped (the kernel clamps it to `net.core.rmem_max`).
    pub socket_rcvbuf: usize,
    /// Static files up to this size are kept in memory (shared by all transfers).
    pub memory_file_max: u64,
    /// Total memory for such files.
    pub memory_files_total: u64,
    /// Transfers open at once, in all and per client address; over the cap a client gets a
    /// TFTP error instead of a transfer. Each transfer may hold two descriptors (its socket
    /// and the file it sends); `serve` warns when the open-file limit cannot hold them all
    /// with `[http] max_connections`. The default (4096, with HTTP's) fits a hard limit of
    /// 20 000.
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    /// Listening sockets, each with its own thread, per listen address (they share the port
    /// through `SO_REUSEPORT`); 0: one per CPU core, at most 16. TFTP is CPU-bound in a boot
    /// storm.
    pub threads: usize,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            timeout_ms: 1000,
            max_retries: 5,
            max_timeout_secs: 5,
            max_block_size: 8192,
            max_window_size: 64,
            socket_rcvbuf: 8 << 20,
            memory_file_max: 1 << 20,
            memory_files_total: 64 << 20,
            max_sessions: 4096,
            max_sessions_per_client: 64,
            threads: 0,
        }
    }
}

impl TftpConfig {
    /// Sockets per listen address: `threads`, or one per core (at most 16) when 0.
    pub fn sockets_per_address(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(16)),
            n => n,
        }
    }
}

/// Chunk of one streamed file transfer: what bounds per-transfer memory.
pub const STREAM_BUFFER: usize = 128 << 10;

/// Small static files (pxelinux.0, ldlinux.c32 …) held in memory, keyed by path and checked
/// against size and mtime on every open, so an edit on disk is served at once. Bounded by
/// `memory_files_total`: beyond it the least recently used files are evicted, and a file
/// is read outside any lock.
struct MemoryFiles(Cache<PathBuf, MemoryFile, FileSize>);

#[derive(Clone)]
struct MemoryFile {
    len: u64,
    mtime: SystemTime,
    data: Bytes,
}

/// A file weighs its size (an empty one 1: weightless entries are never evicted).
#[derive(Clone)]
struct FileSize;

impl quick_cache::Weighter<PathBuf, MemoryFile> for FileSize {
    fn weight(&self, _: &PathBuf, f: &MemoryFile) -> u64 {
        f.len.max(1)
    }
}

impl MemoryFiles {
    fn new(cfg: &TftpConfig) -> MemoryFiles {
        // Each shard holds a share of the total: keep it at least four of the largest
        // files, or those would never be admitted.
        let fit = (cfg.memory_files_total / cfg.memory_file_max.max(1) / 4).clamp(1, 16);
        let cache = quick_cache::OptionsBuilder::new()
            .shards(1 << fit.ilog2())
            .estimated_items_capacity(1024)
            .weight_capacity(cfg.memory_files_total)
            .build()
            .map(|o| Cache::with_options(o, FileSize, Default::default(), Default::default()))
            // Not reached: only an unset capacity fails the build.
            .unwrap_or_else(|_| Cache::with_weighter(1024, cfg.memory_files_total, FileSize));
        MemoryFiles(cache)
    }
}

/// ironpxe's async-tftp handler; one per listening socket.
pub struct TftpHandler {
    app: Arc<App>,
    cfg: TftpConfig,
    local_ip: IpAddr,
    http_port: u16,
    /// What a specific (not wildcard) listen address tells every client, built once: per
    /// request it cost an address preview and two formatted strings.
    fixed_server: Option<crate::render::Server>,
    memory: Arc<MemoryFiles>,
    limiter: crate::serving::limits::Limiter,
}

impl TftpHandler {
    /// How this client reaches us, for its configs: the listen address, or on a wildcard
    /// listen address (`[::]`, `0.0.0.0`, where the listening socket cannot say which
    /// address the request came to) the address the kernel would answer `client` from.
    fn server(&self, client: SocketAddr) -> Cow<'_, crate::render::Server> {
        if let Some(s) = &self.fixed_server {
            return Cow::Borrowed(s);
        }
        let local = if self.local_ip.is_unspecified() {
            reply_source(client).unwrap_or(self.local_ip)
        } else {
            self.local_ip
        };
        Cow::Owned(self.app.default_server(local, self.http_port))
    }

    fn new(
        app: Arc<App>,
        cfg: &TftpConfig,
        local_ip: IpAddr,
        http_port: u16,
        memory: Arc<MemoryFiles>,
        limiter: crate::serving::limits::Limiter,
    ) -> TftpHandler {
        let fixed_server =
            (!local_ip.is_unspecified()).then(|| app.default_server(local_ip, http_port));
        TftpHandler {
            app,
            cfg: cfg.clone(),
            local_ip,
            http_port,
            fixed_server,
            memory,
            limiter,
        }
    }

    /// Answers a read request; `log` was made as it arrived and counts it however it ends.
    async fn open(
        &self,
        mut log: RequestLog,
        name: &str,
    ) -> Result<(Reader, Option<u64>), packet::Error> {
        let client = log.client();
        let permit = match self.limiter.acquire(client.ip()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%client, name, error = %e, "tftp request refused");
                return Err(packet::Error::Msg(format!("ironpxe: {e}; retry later")));
            }
        };
        let res = match classify_with(name, &self.app.grub_prefixes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%client, name, error = %e, "tftp request refused");
                return Err(packet::Error::PermissionDenied);
            }
        };
        log.classified(name, &res);
        let answer = match self.app.answer(&res, &self.server(client), &self.app.roots) {
            // GRUB reads exactly the size the OACK announces (`tsize`) and nothing of a file
            // without one: it gets an empty config and falls back to its menu. So a GRUB
            // config is awaited (at most the render budget) to announce its size; other
            // clients get the transfer at once and its first block when the render is done.
            Answer::Rendering(r) if res.kind() == Kind::Grub => r.finish().await,
            answer => answer,
        };
        self.reply(log, &res, answer, permit)
    }

    /// Turns an answer into a transfer or a TFTP error; `log` counts and journals it once —
    /// as served only when there is something to send.
    fn reply(
        &self,
        mut log: RequestLog,
        res: &Resource,
        answer: Answer,
        permit: Permit,
    ) -> Result<(Reader, Option<u64>), packet::Error> {
        let (src, len) = match answer {
            Answer::Config(c) => {
                let (src, len) = serve_config(&mut log, c);
                (src, Some(len))
            }
            Answer::Rendering(rendering) => {
                // Rendered in a worker: the transfer starts now and its first block waits for
                // the render, so this thread keeps serving others (no size for `tsize`). It
                // is counted when the render arrives; ended before, it failed.
                log.outcome(Outcome::Error);
                log.transfer("rendering");
                (rendering_source(rendering, log.client(), log.name()), None)
            }
            Answer::File { path, .. } => match self.file_source(&path) {
                Ok((src, len)) => {
                    log.answered(Outcome::Served, matched_of(res), Some(len));
                    log.transfer(matched_of(res));
                    (src, Some(len))
                }
                Err(e) => {
                    // Listed a moment ago, gone (not found) or unopenable now (an error):
                    // either way not served.
                    let (client, name) = (log.client(), log.name());
                    tracing::warn!(%client, name, error = %e, "tftp open failed");
                    return Err(match e.kind() {
                        io::ErrorKind::NotFound => {
                            log.outcome(Outcome::NotFound);
                            packet::Error::FileNotFound
                        }
                        _ => {
                            log.outcome(Outcome::Error);
                            packet::Error::Msg("ironpxe: cannot open this file now".into())
                        }
                    });
                }
            },
            Answer::Pending(p) => {
                log.answered(Outcome::Served, "image (fetching)", None);
                log.transfer("image");
                (self.fetching(p.wait(), res), None)
            }
            Answer::NotFound(why) => {
                log.answered(Outcome::NotFound, why, None);
                return Err(packet::Error::FileNotFound);
            }
            Answer::Refused(why) => {
                log.answered(Outcome::Refused, why, None);
                return Err(packet::Error::PermissionDenied);
            }
            Answer::Error(e) | Answer::Unavailable(e) => {
                log.outcome(Outcome::Error);
                let (client, name) = (log.client(), log.name());
                tracing::error!(%client, name, error = %e, "tftp request failed");
                return Err(render_failed());
            }
        };
        self.app.metrics.tftp_session_started();
        let metrics = self.app.metrics.clone();
        let reader = Reader {
            _permit: permit,
            src,
            metrics,
            log,
        };
        Ok((reader, len))
    }

    /// An image being fetched: the transfer's source, opened when `fetched` is done.
    fn fetching(
        &self,
        fetched: impl Future<Output = Result<(), ImageError>> + Send + 'static,
        res: &Resource,
    ) -> Source {
        let dir = self.app.images.as_ref().map(|i| i.dir().to_path_buf());
        let key = match res {
            Resource::Image { key, .. } => key.clone(),
            _ => String::new(),
        };
        Source::Waiting(Box::pin(async move {
            fetched.await.map_err(io::Error::other)?;
            let dir = dir.ok_or_else(|| io::Error::other("image cache disabled"))?;
            std::fs::File::open(dir.join(key))
        }))
    }

    /// Small files from memory, larger ones streamed with a bounded read-ahead.
    /// Opens the file once and describes what that descriptor holds: a file replaced after
    /// the lookup is served whole, old or new, never a mix or a wrong `tsize`.
    fn file_source(&self, path: &Path) -> io::Result<(Source, u64)> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let len = meta.len();
        if len > self.cfg.memory_file_max {
            return Ok((Source::File(Chunked::new(file)), len));
        }
        let mtime = meta.modified()?;
        let cached = self.memory.0.get(path);
        if let Some(f) = cached.filter(|f| f.len == len && f.mtime == mtime) {
            return Ok((Source::Memory(f.data), len));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)?;
        let data = Bytes::from(bytes);
        let len = data.len() as u64;
        let entry = MemoryFile {
            len,
            mtime,
            data: data.clone(),
        };
        self.memory.0.insert(path.to_owned(), entry);
        Ok((Source::Memory(data), len))
    }
}

/// The source address the kernel picks to reach `client` (a connected UDP socket sends
/// nothing: `connect` only looks the route up). A link-local client's scope id selects its
/// link. With several addresses on one link this is the route's preferred source, which
/// may not be the one the client asked: the reason to list specific listen addresses.
fn reply_source(client: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match client {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(client).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The TFTP error a client gets for a config that cannot be rendered (its details are
/// operator business: they go to the log and the node's problems).
fn render_failed() -> packet::Error {
    packet::Error::Msg("ironpxe: cannot render this config; see the server log".into())
}

/// A config to send: counted as served now, with its request line; the transfer is named
/// after what decided it.
fn serve_config(log: &mut RequestLog, c: crate::serving::app::ServedConfig) -> (Source, u64) {
    let len = c.body.len() as u64;
    log.config(&c);
    log.transfer(format!("{} {}", c.matched, c.action));
    log.answered(Outcome::Served, c.matched.clone(), Some(len));
    (Source::Memory(c.body.into_bytes()), len)
}

/// A config whose render is running: the transfer's source until it arrives.
fn rendering_source(rendering: Rendering, client: SocketAddr, name: &str) -> Source {
    let name = name.to_owned();
    Source::Rendering(Box::pin(async move {
        match rendering.finish().await {
            Answer::Config(c) => Ok(c),
            Answer::Unavailable(e) | Answer::Error(e) => {
                tracing::error!(%client, name, error = %e, "tftp request failed");
                Err(e)
            }
            _ => Err("unexpected answer".into()),
        }
    }))
}

fn matched_of(res: &Resource) -> &'static str {
    match res {
        Resource::Image { .. } => "image",
        _ => "static",
    }
}

impl Handler for TftpHandler {
    type Reader = Reader;
    type Writer = futures_lite::io::Sink;

    async fn read_req_open(
        &self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Reader, Option<u64>), packet::Error> {
        let log = RequestLog::tftp(&self.app, *client);
        let Some(name) = path.to_str() else {
            return Err(packet::Error::PermissionDenied);
        };
        self.open(log, name).await
    }

    /// The server writes nothing, ever: every write request is an access violation.
    async fn write_req_open(
        &self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        let _refused = RequestLog::tftp(&self.app, *client);
        tracing::warn!(%client, path = %path.display(), "tftp write refused");
        Err(packet::Error::PermissionDenied)
    }
}

type OpenFuture = Pin<Box<dyn Future<Output = io::Result<std::fs::File>> + Send>>;
type RenderFuture =
    Pin<Box<dyn Future<Output = Result<crate::serving::app::ServedConfig, String>> + Send>>;

enum Source {
    /// What is left to send.
    Memory(Bytes),
    File(Chunked),
    /// An image being fetched: becomes `File` when the fetch completes.
    Waiting(OpenFuture),
    /// A config being rendered: becomes `Memory` when the render completes.
    Rendering(RenderFuture),
}

/// A file read in `STREAM_BUFFER` chunks on the blocking pool: one hand-off per chunk, not
/// one per TFTP block, and at most one chunk in memory per transfer.
struct Chunked {
    file: Arc<std::fs::File>,
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    pending: Option<blocking::Task<io::Result<Vec<u8>>>>,
    eof: bool,
}

impl Chunked {
    fn new(file: std::fs::File) -> Chunked {
        Chunked {
            file: Arc::new(file),
            offset: 0,
            buf: Vec::new(),
            pos: 0,
            pending: None,
            eof: false,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        use std::os::unix::fs::FileExt;
        loop {
            if self.pos < self.buf.len() {
                let n = (self.buf.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Poll::Ready(Ok(n));
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            if self.pending.is_none() {
                // The spent chunk's buffer is read into again: no allocation and no zeroing
                // of 128 KiB per chunk.
                let mut chunk = std::mem::take(&mut self.buf);
                chunk.resize(STREAM_BUFFER, 0);
                if let Some(n) = read_cached(&self.file, &mut chunk, self.offset) {
                    chunk.truncate(n);
                    self.offset += n as u64;
                    self.buf = chunk;
                    self.pos = 0;
                    continue;
                }
                let (file, offset) = (self.file.clone(), self.offset);
                self.pending = Some(blocking::unblock(move || {
                    let n = file.read_at(&mut chunk, offset)?;
                    chunk.truncate(n);
                    Ok(chunk)
                }));
            }
            let Some(task) = self.pending.as_mut() else {
                continue;
            };
            match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    self.pending = None;
                    let chunk = result?;
                    self.eof = chunk.is_empty();
                    self.offset += chunk.len() as u64;
                    self.buf = chunk;
                    self.pos = 0;
                }
            }
        }
    }
}

/// Reads what the page cache holds at `offset` without blocking the TFTP thread
/// (`preadv2(RWF_NOWAIT)`): a cached file is served with no hand-off to the blocking pool.
/// `None` when nothing is cached there, at the end of the file (the pool's read then says
/// so for sure) or when the kernel cannot tell.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the crate's one exception to `deny(unsafe_code)`: no safe preadv2
fn read_cached(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let offset = libc::off_t::try_from(offset).ok()?;
    // SAFETY: `iov` describes `buf`, which is live and exclusively borrowed for the call.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn read_cached(_file: &std::fs::File, _buf: &mut [u8], _offset: u64) -> Option<usize> {
    None
}

/// One transfer's data, counted into the metrics; logs the transfer when it ends (complete,
/// aborted by the client, superseded or timed out — the crate drops the reader in all cases).
pub struct Reader {
    /// The transfer's slot under the session caps, freed with the reader.
    _permit: Permit,
    src: Source,
    metrics: Arc<Metrics>,
    /// Counts, journals and logs the transfer when the crate drops the reader.
    log: RequestLog,
}

impl Reader {
    /// A lazily rendered config arrived: count and describe the transfer as served (with
    /// the request line a config served at once gets at its open).
    fn rendered(&mut self, c: crate::serving::app::ServedConfig) -> Source {
        serve_config(&mut self.log, c).0
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            let n = match &mut this.src {
                Source::Memory(data) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    data.advance(n);
                    n
                }
                Source::File(f) => match f.poll_read(cx, buf) {
                    Poll::Ready(Ok(n)) => n,
                    other => return other,
                },
                Source::Waiting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(Ok(file)) => {
                        this.src = Source::File(Chunked::new(file));
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                Source::Rendering(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(Ok(c)) => {
                        this.src = this.rendered(c);
                        continue;
                    }
                    Poll::Ready(Err(_)) => {
                        // Counted as an error when the reader goes (see `reply`).
                        let e = io::Error::other(render_failed());
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                },
            };
            this.log.sent(n as u64);
            return Poll::Ready(Ok(n));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // `log` goes next: bytes, journal entry and the `tftp transfer ended` line.
        self.metrics.tftp_session_ended();
    }
}

/// The receive buffer a socket was granted, from what `SO_RCVBUF` reports. Linux doubles
/// the size it grants (room for its own bookkeeping, socket(7)) and reports the doubled
/// value: compared with the request as is, a buffer clamped to half the request by
/// `net.core.rmem_max` looked granted in full, and the metric showed twice the truth.
pub fn granted_rcvbuf(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// Creates a listening socket with a large receive buffer and reports the size granted.
/// `reuse_port` lets further sockets of this process join the port (see [`bind_group`]).
pub fn bind(
    addr: SocketAddr,
    rcvbuf: usize,
    reuse_port: bool,
    metrics: &Metrics,
) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as P, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(P::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(rcvbuf) {
        tracing::warn!(error = %e, "cannot set SO_RCVBUF");
    }
    let granted = granted_rcvbuf(sock.recv_buffer_size().unwrap_or(0));
    metrics.set_tftp_rcvbuf(granted as u64);
    if granted < rcvbuf {
        const CLAMPED: &str = "TFTP receive buffer clamped by net.core.rmem_max: a boot storm may drop requests; install examples/sysctl.d/60-ironpxe.conf";
        // No machine boots over loopback (the shipped example's address): said, not warned.
        if addr.ip().is_loopback() {
            tracing::info!(%addr, requested = rcvbuf, granted, "{CLAMPED}");
        } else {
            tracing::warn!(%addr, requested = rcvbuf, granted, "{CLAMPED}");
        }
    } else {
        tracing::debug!(%addr, rcvbuf = granted, "TFTP receive buffer");
    }
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// `count` listening sockets on one address and port.
///
/// A port shared through `SO_REUSEPORT` is open to any later socket of the same user that
/// asks for the option too — such as a second ironpxe started by mistake, which would then
/// silently take a share of the clients. So the port is first claimed by a plain socket: that
/// fails while anyone holds the port (a reuse-port group included) and resolves port 0, and
/// a second ironpxe fails the same way while this one runs.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    rcvbuf: usize,
    metrics: &Metrics,
) -> io::Result<Vec<UdpSocket>> {
    if count <= 1 {
        return Ok(vec![bind(addr, rcvbuf, false, metrics)?]);
    }
    let claimed = UdpSocket::bind(addr)?.local_addr()?;
    (0..count)
        .map(|_| bind(claimed, rcvbuf, true, metrics))
        .collect()
}

/// Starts the TFTP server threads: [`TftpConfig::sockets_per_address`] per listen address.
/// Fails if any address cannot be bound.
pub fn start(
    app: Arc<App>,
    listen: &[SocketAddr],
    http_port: u16,
    cfg: &TftpConfig,
) -> io::Result<Vec<SocketAddr>> {
    let memory = Arc::new(MemoryFiles::new(cfg));
    let limiter =
        crate::serving::limits::Limiter::new(cfg.max_sessions, cfg.max_sessions_per_client);
    let per_address = cfg.sockets_per_address();
    let mut bound = Vec::new();
    for &addr in listen {
        let group = bind_group(addr, per_address, cfg.socket_rcvbuf, &app.metrics)?;
        let local = group[0].local_addr()?;
        for (i, sock) in group.into_iter().enumerate() {
            let handler = TftpHandler::new(
                app.clone(),
                cfg,
                local.ip(),
                http_port,
                memory.clone(),
                limiter.clone(),
            );
            let builder = TftpServerBuilder::with_handler(handler)
                .std_socket(sock)
                .map_err(io::Error::other)?
                .timeout(Duration::from_millis(cfg.timeout_ms.max(10)))
                .max_send_retries(cfg.max_retries)
                .client_timeout_limit(Duration::from_secs(cfg.max_timeout_secs.into()))
                .block_size_limit(cfg.max_block_size)
                .window_size_limit(cfg.max_window_size);
            std::thread::Builder::new()
                .name(format!("tftp{i} {local}"))
                .spawn(move || {
                    let result = async_io::block_on(async {
                        let server = builder.build().await?;
                        server.serve().await
                    });
                    if let Err(e) = result {
                        tracing::error!(%local, error = %e, "TFTP server stopped");
                    }
                })?;
        }
        let rcvbuf = app.metrics.tftp_rcvbuf();
        tracing::info!(%local, sockets = per_address, rcvbuf, "TFTP listening");
        bound.push(local);
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::metrics::Protocol;

    fn handler(root: &Path) -> TftpHandler {
        let app = App::for_tests(vec![root.to_owned()]);
        TftpHandler::new(
            Arc::new(app),
            &TftpConfig::default(),
            IpAddr::from([127, 0, 0, 1]),
            8080,
            Arc::new(MemoryFiles::new(&TftpConfig::default())),
            crate::serving::limits::Limiter::new(10, 10),
        )
    }

    /// On a wildcard listener a client's configs name the address the kernel answers it
    /// from, never `0.0.0.0` or `[::]`.
    #[test]
    fn a_wildcard_listener_names_the_address_that_reaches_the_client() {
        let mut h = handler(Path::new("/nonexistent"));
        assert_eq!(
            h.server("127.0.0.1:4011".parse().expect("addr")).http_url,
            "http://127.0.0.1:8080",
            "a specific listener's answer is built once"
        );
        h.fixed_server = None;
        h.local_ip = IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED);
        let s = h.server("[::1]:4011".parse().expect("addr"));
        assert_eq!(
            (s.http_url.as_str(), s.tftp_server.as_str()),
            ("http://[::1]:8080", "::1")
        );
        h.local_ip = IpAddr::from([0, 0, 0, 0]);
        let s = h.server("127.0.0.1:4011".parse().expect("addr"));
        assert_eq!(s.http_url, "http://127.0.0.1:8080");
        // The route's preferred source, not necessarily the address the client asked (a
        // known limit of wildcard listeners; specific listen addresses have none).
        assert_eq!(
            reply_source("127.0.0.2:9".parse().expect("addr")),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        h = TftpHandler::new(
            h.app.clone(),
            &h.cfg,
            IpAddr::from([192, 0, 2, 1]),
            8080,
            h.memory.clone(),
            h.limiter.clone(),
        );
        let s = h.server("127.0.0.1:4011".parse().expect("addr"));
        assert_eq!(
            s.http_url, "http://192.0.2.1:8080",
            "a specific listener is used as is"
        );
    }

    /// A file the lookup found but that cannot be opened when the transfer starts (gone: not
    /// found; unreadable: an error) is counted and journaled so, never as served.
    #[test]
    fn a_file_found_but_not_opened_is_never_counted_as_served() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("a-dir")).expect("dir");
        let h = handler(dir.path());
        let client: SocketAddr = "127.0.0.1:1234".parse().expect("addr");
        let cases = [
            ("vanished.bin", io::ErrorKind::NotFound, Outcome::NotFound),
            ("a-dir", io::ErrorKind::IsADirectory, Outcome::Error),
        ];
        for (name, _, _) in cases {
            let res = Resource::Static(name.into());
            let answer = Answer::File {
                path: dir.path().join(name),
                len: 4,
            };
            let permit = h.limiter.acquire(client.ip()).expect("permit");
            let mut log = RequestLog::tftp(&h.app, client);
            log.classified(name, &res);
            assert!(h.reply(log, &res, answer, permit).is_err());
        }
        let m = &h.app.metrics;
        assert_eq!(m.requests(Protocol::Tftp, Kind::Static, Outcome::Served), 0);
        assert_eq!(
            m.requests(Protocol::Tftp, Kind::Static, Outcome::NotFound),
            1
        );
        assert_eq!(m.requests(Protocol::Tftp, Kind::Static, Outcome::Error), 1);
        let journal = h.app.journal.as_ref().expect("journal");
        journal.flush();
        let events = journal.events_since(0, 10);
        assert_eq!(events.len(), 2, "both journaled");
        let outcomes: Vec<&str> = events.iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, ["not_found", "error"]);
    }

    /// Past `memory_files_total` the least recently used files leave memory; the others,
    /// and the file just read, stay (the cache used to be emptied whole).
    #[test]
    fn memory_files_evict_past_their_total_instead_of_clearing() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = TftpConfig {
            memory_file_max: 4 << 10,
            memory_files_total: 64 << 10,
            ..TftpConfig::default()
        };
        let mut h = handler(dir.path());
        h.memory = Arc::new(MemoryFiles::new(&cfg));
        h.cfg = cfg;
        let files = 24; // 96 KiB of 4 KiB files
        for i in 0..files {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, vec![i as u8; 4 << 10]).expect("write");
            let (src, len) = h.file_source(&path).expect("open");
            assert_eq!(len, 4 << 10);
            assert!(matches!(src, Source::Memory(d) if d.iter().all(|b| *b == i as u8)));
        }
        let held = h.memory.0.weight();
        assert!(held <= 64 << 10, "{held} bytes held: over the total");
        assert!(held > 32 << 10, "{held} bytes held: the files were cleared");
        assert!(h.memory.0.len() < files);
        let last = dir.path().join(format!("f{}", files - 1));
        assert!(h.memory.0.get(&last).is_some(), "the newest file is held");
    }

    #[test]
    fn granted_rcvbuf_is_half_of_what_linux_reports() {
        // Linux: asked 4 MiB, clamped to rmem_max = 2 MiB, getsockopt says 4 MiB.
        let reported = 4 << 20;
        let expected = if cfg!(target_os = "linux") {
            2 << 20
        } else {
            4 << 20
        };
        assert_eq!(granted_rcvbuf(reported), expected);
        assert!(granted_rcvbuf(reported) < reported || !cfg!(target_os = "linux"));
    }
}
