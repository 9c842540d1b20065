//! What ironpxe's two web servers — the boot HTTP server ([`crate::serving::http`]) and the
//! operator's ([`crate::serving::admin`]) — share, so each thing is done one way: the response
//! body type, short text responses, percent-coding, and the accept loop with its connection
//! caps, accept-error logging and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::serving::limits::{LimitError, Limiter};

/// The body type all ironpxe responses use.
pub type Body = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// Wraps a small in-memory buffer as a [`Body`] (error pages, rendered configs).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty [`Body`] (HEAD, 304, 416).
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A short `text/plain` response (errors, refusals).
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let body = body.into();
    let len = body.len() as u64;
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// 405 for anything but GET and HEAD, with the `Allow` header RFC 9110 §15.5.6 requires.
pub fn method_not_allowed() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// Decodes `%xx` escapes. Stricter than the `percent-encoding` crate, which passes a
/// malformed escape through as text: a path is refused when an escape is malformed, or the
/// result holds NUL or is not UTF-8 — it names a file, and no such name is one.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let out: Vec<u8> = percent_encoding::percent_decode(b).collect();
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters (a query value).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// How a web server takes connections.
#[derive(Clone, Debug)]
pub struct Accept {
    /// The server's name in log lines (`http`, `admin`).
    pub name: &'static str,
    /// Time a client may take to send its request head.
    pub header_timeout: Duration,
    /// Largest request head accepted; `None`: hyper's default.
    pub max_header_bytes: Option<usize>,
    /// Time running responses get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Connections open at once, in all and per client address; over the cap a client gets
    /// `503 Service Unavailable` and the connection is closed.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

/// A running web server; [`WebServer::shutdown`] stops accepting and drains.
pub struct WebServer {
    pub local: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Stops accepting, lets running responses finish within the grace period.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `listener` on the current tokio runtime: `handle(request, peer, local)` answers
/// each request; `refused` is told of each connection over the caps (it is answered 503).
pub fn serve<H, F>(
    listener: TcpListener,
    accept: Accept,
    refused: impl Fn() + Send + 'static,
    handle: H,
) -> io::Result<WebServer>
where
    H: Fn(Request<Incoming>, SocketAddr, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let local = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let span = tracing::debug_span!("web", server = accept.name, %local);
    let task = tokio::spawn(
        accept_loop(listener, local, accept, refused, Arc::new(handle), stopped).instrument(span),
    );
    Ok(WebServer { local, stop, task })
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    listening: SocketAddr,
    accept: Accept,
    refused: impl Fn() + Send + 'static,
    handle: Arc<H>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let name = accept.name;
    let limiter = Limiter::new(accept.max_connections, accept.max_connections_per_client);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Header names in their canonical case on the wire: GRUB 2.06's http.c matches
    // `Content-Length: ` byte for byte and, not finding it, waits for the close.
    builder
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(accept.header_timeout);
    if let Some(max) = accept.max_header_bytes {
        builder.max_buf_size(max.max(8192));
    }
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "{name} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let permit = match limiter.acquire(peer.ip()) {
            Ok(p) => p,
            Err(e) => {
                refused();
                tracing::warn!(client = %peer, error = %e, "{name} connection refused");
                tokio::spawn(refuse(stream, e));
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or(listening);
        let handle = handle.clone();
        let svc = hyper::service::service_fn(move |req| {
            let answer = (*handle)(req, peer, local);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "{name} connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(accept.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("{name} connections still open after the shutdown grace period");
    }
}

/// Answers an over-cap connection with a plain 503 and closes it (bounded in time).
async fn refuse(mut stream: TcpStream, e: LimitError) {
    use tokio::io::AsyncWriteExt;
    let body = format!("ironpxe: {e}; retry later\n");
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(resp.as_bytes())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2Fb").as_deref(), Some("/a/b"));
        assert_eq!(percent_decode("/%2e%2e/etc").as_deref(), Some("/../etc"));
        assert_eq!(percent_decode("/a%00b"), None);
        assert_eq!(percent_decode("/a%zz"), None);
        assert_eq!(percent_decode("/a%4"), None);
        assert_eq!(percent_decode("/a%+f"), None, "no signs in escapes");
        assert_eq!(percent_decode("/a%ff"), None);
        assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
        assert_eq!(percent_decode("%").as_deref(), None);
        assert_eq!(percent_decode("/%C3%A9").as_deref(), Some("/é"));
    }

    /// Over the cap a connection is told 503 and the server is told; shutdown does not wait
    /// for an idle keep-alive connection.
    #[tokio::test]
    async fn over_the_cap_a_connection_gets_503_and_shutdown_drains() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let accept = Accept {
            name: "test",
            header_timeout: Duration::from_secs(5),
            max_header_bytes: None,
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1,
            max_connections_per_client: 1,
        };
        let refused = Arc::new(AtomicUsize::new(0));
        let r = refused.clone();
        let count = move || {
            r.fetch_add(1, SeqCst);
        };
        let answer = |_, _, _| async { text(StatusCode::OK, "ok\n") };
        let server = serve(listener, accept, count, answer).expect("serve");
        let mut held = TcpStream::connect(server.local).await.expect("connect");
        held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut got = Vec::new();
        while !got.ends_with(b"ok\n") {
            let mut buf = [0u8; 512];
            let n = held.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let mut second = TcpStream::connect(server.local).await.expect("connect");
        let mut reply = String::new();
        second.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert_eq!(refused.load(SeqCst), 1);
        let stopped = tokio::time::timeout(Duration::from_secs(3), server.shutdown()).await;
        assert!(stopped.is_ok(), "shutdown waited for an idle connection");
    }

    #[test]
    fn tokens_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
    }
}
