//! The one small HTTP/1.1 server of the tests: the upstream image servers of the image-cache
//! tests, Ironic's image server (`[deploy] http_url`), a scripted Ironic API. On 127.0.0.1, a
//! thread per connection and one request per connection (`Connection: close`); every request
//! is logged; stopped when dropped. What it answers is a table of routes ([`HttpServer::set`]),
//! then a handler: a directory ([`HttpServer::files`]) or a closure ([`HttpServer::start`]).
//! A [`Reply`] can also misbehave: announce a wrong length, omit it, stall mid-body, or wait
//! for the test to open a gate.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target, query included.
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// How the body's length is announced.
#[derive(Clone, Debug)]
pub enum Length {
    /// `Content-Length` of the body.
    Body,
    /// `Content-Length: n`, whatever the body is.
    Announce(usize),
    /// No `Content-Length`: the body ends with the connection.
    Omitted,
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub length: Length,
    /// Send only this many body bytes, then hold the connection until the server stops.
    pub stall_after: Option<usize>,
    /// Answer only once [`HttpServer::open`] named this gate (or the server stops).
    pub gate: Option<String>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            length: Length::Body,
            stall_after: None,
            gate: None,
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200, body)
    }

    pub fn not_found() -> Reply {
        Reply::new(404, Vec::new())
    }

    /// A 302 to `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply::new(302, Vec::new()).header("Location", location)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `Last-Modified`, when given.
    pub fn last_modified(self, t: Option<SystemTime>) -> Reply {
        match t {
            Some(t) => self.header("Last-Modified", &httpdate::fmt_http_date(t)),
            None => self,
        }
    }

    pub fn announce(mut self, length: usize) -> Reply {
        self.length = Length::Announce(length);
        self
    }

    pub fn no_length(mut self) -> Reply {
        self.length = Length::Omitted;
        self
    }

    pub fn stall_after(mut self, bytes: usize) -> Reply {
        self.stall_after = Some(bytes);
        self
    }

    pub fn gated(mut self, gate: &str) -> Reply {
        self.gate = Some(gate.to_owned());
        self
    }
}

type Handler = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Shared {
    stop: AtomicBool,
    routes: Mutex<HashMap<String, Reply>>,
    handler: Handler,
    gates: Mutex<Vec<String>>,
    log: Mutex<Vec<Request>>,
}

pub struct HttpServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Answers every request with `handler` (unless a route set later matches).
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the test HTTP server");
        let addr = l.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            routes: Mutex::default(),
            handler: Box::new(handler),
            gates: Mutex::default(),
            log: Mutex::default(),
        });
        let sh = shared.clone();
        let accept = thread::spawn(move || {
            for c in l.incoming() {
                if sh.stop.load(SeqCst) {
                    return;
                }
                if let Ok(c) = c {
                    let sh = sh.clone();
                    thread::spawn(move || serve(c, &sh));
                }
            }
        });
        HttpServer {
            addr,
            base: format!("http://{addr}"),
            shared,
            accept: Some(accept),
        }
    }

    /// Answers from a table of request targets; 404 for the rest.
    pub fn routes<P: Into<String>>(routes: impl IntoIterator<Item = (P, Reply)>) -> HttpServer {
        let s = HttpServer::start(|_| Reply::not_found());
        for (p, r) in routes {
            s.set(&p.into(), r);
        }
        s
    }

    /// Serves the files under `root` (GET and HEAD; `/x` is `<root>/x`, no `..`).
    pub fn files(root: &Path) -> HttpServer {
        let root = root.to_owned();
        HttpServer::start(move |req| {
            let path = req.path.split('?').next().unwrap_or_default();
            let safe = path.starts_with('/') && !path.split('/').any(|s| s == "..");
            let file = root.join(path.trim_start_matches('/'));
            match std::fs::read(&file) {
                Ok(body) if safe && file.is_file() && matches!(&*req.method, "GET" | "HEAD") => {
                    Reply::ok(body).header("Content-Type", "application/octet-stream")
                }
                _ => Reply::new(404, "not found\n").header("Content-Type", "text/plain"),
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers `path` (the request target) with `reply` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        lock(&self.shared.routes).insert(path.to_owned(), reply);
    }

    /// Lets the replies gated on `gate` go.
    pub fn open(&self, gate: &str) {
        lock(&self.shared.gates).push(gate.to_owned());
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// How many requests `METHOD /path` arrived.
    pub fn count(&self, request: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| format!("{} {}", r.method, r.path) == request)
            .count()
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Stops accepting, and ends stalled and gated replies.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.accept.take().filter(|_| woken) {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "X",
    }
}

/// Reads one request: the head, then a `Content-Length` body.
fn read_request(c: &mut TcpStream) -> Option<Request> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match c.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&req[..end]).into_owned();
    let mut lines = head.lines();
    let mut words = lines.next().unwrap_or_default().split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or("/").to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = req.split_off(end);
    while body.len() < len {
        match c.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(len);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn serve(mut c: TcpStream, sh: &Shared) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut c) else {
        return;
    };
    if sh.stop.load(SeqCst) {
        return; // the stop's wake-up
    }
    lock(&sh.log).push(req.clone());
    let route = lock(&sh.routes).get(&req.path).cloned();
    let reply = route.unwrap_or_else(|| (sh.handler)(&req));
    let wait_until = |cond: &dyn Fn() -> bool| {
        while !cond() && !sh.stop.load(SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    };
    if let Some(gate) = &reply.gate {
        wait_until(&|| lock(&sh.gates).contains(gate));
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    match reply.length {
        Length::Body => head.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
        Length::Announce(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Length::Omitted => {}
    }
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let body = if req.method == "HEAD" {
        &[][..]
    } else {
        &reply.body[..reply
            .stall_after
            .unwrap_or(reply.body.len())
            .min(reply.body.len())]
    };
    let _ = c
        .write_all(head.as_bytes())
        .and_then(|()| c.write_all(body))
        .and_then(|()| c.flush());
    if reply.stall_after.is_some() {
        wait_until(&|| false);
    }
}
