//! The one raw HTTP/1.1 client of the integration tests and of the load generator
//! (`benches/loadgen/main.rs` includes this file with `#[path]`): bytes on a TCP socket, so a
//! test can send what no real client would (half a head, a 20 kB request line, garbage) and
//! see exactly what came back, from a chosen source address. [`Conn`] is one connection;
//! [`Client`] keeps one alive across requests and reconnects when the server closed it.
//!
//! Bounded: connecting, reading and writing each have a timeout ([`Opts`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a connection is made.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Bind to this source address first (many clients: one address each).
    pub src: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// Read and write timeout.
    pub timeout: Duration,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_RCVBUF`, set before connecting (a small one: a client that reads slowly).
    pub recv_buffer: Option<usize>,
    /// The `Host` header of [`Conn::send_get`].
    pub host: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            src: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            nodelay: false,
            recv_buffer: None,
            host: "ironpxe".into(),
        }
    }
}

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    pub body: Vec<u8>,
    /// The server closes the connection after it (`Connection: close`, or a body that
    /// ends with the connection).
    pub close: bool,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a request ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Status(u16),
    Closed,
}

/// One connection. `stream` is open for tests that read or write it byte by byte.
pub struct Conn {
    pub stream: TcpStream,
    /// Received and not yet consumed.
    buf: Vec<u8>,
    host: String,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Conn {
    pub fn open(dst: SocketAddr, o: &Opts) -> io::Result<Conn> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(src) = o.src {
            sock.bind(&SocketAddr::new(src, 0).into())?;
        }
        if let Some(n) = o.recv_buffer {
            sock.set_recv_buffer_size(n)?;
        }
        sock.connect_timeout(&dst.into(), o.connect_timeout)?;
        let stream: TcpStream = sock.into();
        stream.set_nodelay(o.nodelay)?;
        stream.set_read_timeout(Some(o.timeout))?;
        stream.set_write_timeout(Some(o.timeout))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            host: o.host.clone(),
        })
    }

    /// A connection from `src` with the default [`Opts`].
    pub fn connect(src: Ipv4Addr, dst: SocketAddr) -> io::Result<Conn> {
        Conn::open(
            dst,
            &Opts {
                src: Some(IpAddr::V4(src)),
                ..Opts::default()
            },
        )
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)
    }

    pub fn send_get(&mut self, path: &str) -> io::Result<()> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.send(req.as_bytes())
    }

    /// One keep-alive GET.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send_get(path)?;
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        self.fill_at_most(16384)
    }

    fn fill_at_most(&mut self, max: usize) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = loop {
            // EINTR (a stopped-and-continued process) is not an answer: read again.
            match self.stream.read(&mut chunk[..max.clamp(1, 16384)]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Exactly `n` bytes, raw (and no more read from the socket).
    pub fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill_at_most(n - self.buf.len())? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {} of {n} bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Everything until the server closes, raw.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// One CRLF-terminated line, without the CRLF.
    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in a chunked body",
                ));
            }
        }
    }

    /// One response: a `Content-Length` body, a chunked one, or one that ends with the
    /// connection.
    pub fn read_response(&mut self) -> io::Result<Response> {
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
        let (mut len, mut chunked, mut close) = (None::<usize>, false, false);
        for l in head.lines().skip(1) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        self.buf.drain(..end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line = self.read_line()?;
                let size = line.split(';').next().unwrap_or("").trim();
                let n = usize::from_str_radix(size, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                if n == 0 {
                    self.read_line()?; // no trailers
                    break body;
                }
                body.extend(self.read_bytes(n)?);
                self.read_line()?;
            }
        } else if let Some(len) = len {
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body cut at {} of {len} bytes", self.buf.len()),
                    ));
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill()? > 0 {}
            close = true;
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            head,
            body,
            close,
        })
    }

    /// Reads until the server closes (EOF or reset), at most `bound`. Returns what came.
    pub fn wait_closed(&mut self, bound: Duration) -> Result<Vec<u8>, String> {
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
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Ok(std::mem::take(&mut self.buf)), // reset
            }
        }
    }

    /// Sends `raw` from `src` and reports a response status, or that the server closed
    /// (never hangs past `bound`).
    pub fn exchange(src: Ipv4Addr, dst: SocketAddr, raw: &[u8], bound: Duration) -> Ending {
        let mut c = Conn::connect(src, dst).expect("connect");
        let _ = c.stream.set_read_timeout(Some(bound));
        // The server may close before reading all of a huge request: a failed write is fine.
        let _ = c.send(raw);
        match c.read_response() {
            Ok(r) => Ending::Status(r.status),
            Err(e) if is_timeout(&e) => panic!("no answer and no close within {bound:?}"),
            Err(_) => Ending::Closed,
        }
    }
}

/// GETs over one kept-alive connection, opened again when the server closed it.
pub struct Client {
    addr: SocketAddr,
    opts: Opts,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(addr: SocketAddr, opts: Opts) -> Client {
        Client {
            addr,
            opts,
            conn: None,
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        match self.try_get(path) {
            Ok(r) => Ok(r),
            Err(_) => {
                // A keep-alive connection the server closed: one retry on a fresh one.
                self.conn = None;
                self.try_get(path)
            }
        }
    }

    fn try_get(&mut self, path: &str) -> io::Result<Response> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::open(self.addr, &self.opts)?),
        };
        let r = conn.get(path)?;
        if r.close {
            self.conn = None;
        }
        Ok(r)
    }
}
