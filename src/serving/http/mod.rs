//! The HTTP server (hyper 1 on tokio): `boot.ipxe`, per-node iPXE scripts under every
//! spelling, Ironic's `pxelinux.cfg/<mac>` layout, GRUB configs, cached images, static files
//! with Range, `/healthz` and `/metrics`. GET and HEAD only.

pub mod files;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::model::resource::classify;
use crate::render::Server;
use crate::serving::app::{Answer, App};
use crate::serving::metrics::{Kind, Outcome, Protocol};
use files::{full, Body};

/// HTTP settings (`[http]` in the config).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Host names or addresses (besides the listen address and the public URL's host) that
    /// clients may use to reach this server; a matching `Host` header becomes the base URL
    /// of rendered scripts.
    pub host_aliases: Vec<String>,
    /// Seconds a client may take to send its request headers (slow clients are dropped).
    pub header_timeout_secs: u64,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Seconds running responses get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Connections open at once, in all and per client address; over the cap a client gets
    /// `503 Service Unavailable` and the connection is closed. Like a TFTP transfer, a
    /// connection may hold two descriptors (see `[tftp] max_sessions`).
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            host_aliases: Vec::new(),
            header_timeout_secs: 10,
            max_header_bytes: 16 << 10,
            shutdown_grace_secs: 10,
            max_connections: 4096,
            max_connections_per_client: 256,
        }
    }
}

/// Which hosts a `Host` header may name for it to be trusted as the base URL.
#[derive(Clone, Debug, Default)]
pub struct HostPolicy {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub aliases: Vec<String>,
}

impl HostPolicy {
    /// The base URL for a request: the configured public URL; else the `Host` header when it
    /// is a bare `host[:port]` naming this server (it is client text that lands inside boot
    /// scripts); else the address the client connected to.
    pub fn server_for(&self, host: Option<&str>, local: SocketAddr) -> Server {
        let tftp_server = local.ip().to_string();
        if let Some(url) = &self.public_url {
            return Server {
                http_url: url.clone(),
                tftp_server,
            };
        }
        let http_url = match host.and_then(|h| self.accept_host(h, local)) {
            Some(h) => format!("http://{h}"),
            None => format!("http://{local}"),
        };
        Server {
            http_url,
            tftp_server,
        }
    }

    /// The host header, normalised (lower-case name, the port as a number), when it names
    /// this server; normalising also keeps case variants from filling the render cache.
    fn accept_host(&self, host: &str, local: SocketAddr) -> Option<String> {
        let (name, port) = split_host_port(host)?;
        if port.unwrap_or(80) != local.port() {
            return None;
        }
        let name_lc = name.to_ascii_lowercase();
        let listen_ip = self.listen.map(|l| l.ip());
        let is_ip = name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .ok();
        let matches = is_ip == Some(local.ip())
            || (is_ip.is_some() && is_ip == listen_ip)
            || (is_ip.is_some() && listen_ip.is_some_and(|l| l.is_unspecified()))
            || self
                .aliases
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&name_lc))
            || self
                .public_url
                .as_deref()
                .and_then(|u| u.split("://").nth(1))
                .and_then(|rest| rest.split(['/', ':']).next())
                .is_some_and(|h| h.eq_ignore_ascii_case(&name_lc));
        let normalised = match port {
            Some(p) => format!("{name_lc}:{p}"),
            None => name_lc,
        };
        matches.then_some(normalised)
    }
}

/// Splits `host[:port]` (IPv6 in brackets), refusing anything but host-name characters.
fn split_host_port(h: &str) -> Option<(&str, Option<u16>)> {
    if h.is_empty() || h.len() > 255 {
        return None;
    }
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (&h[..v6.len() + 2], port)
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) => (n, Some(parse_port(p)?)),
            None => (h, None),
        }
    };
    let ok = name.starts_with('[')
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    ok.then_some((name, port))
}

/// A port: one to five ASCII digits (`u16::from_str` would also take a sign).
fn parse_port(p: &str) -> Option<u16> {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| p.parse().ok()).flatten()
}

/// Decodes `%xx` escapes; refuses malformed escapes, NUL and non-UTF-8 results.
pub fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Answers one request.
pub async fn handle(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Response<Body> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    if method != Method::GET && method != Method::HEAD {
        app.metrics
            .request(Protocol::Http, Kind::Other, Outcome::Refused);
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let server = policy.server_for(host, local);
    let resp = route(&app, &raw_path, &server, &method, req.headers(), peer).await;
    tracing::info!(client = %peer, %method, path = %truncate(&raw_path), status = resp.status().as_u16(), "http request");
    resp
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn route(
    app: &App,
    raw_path: &str,
    server: &Server,
    method: &Method,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let m = &app.metrics;
    match raw_path {
        "/healthz" => {
            m.request(Protocol::Http, Kind::Health, Outcome::Served);
            return health(app, method, headers);
        }
        "/metrics" => {
            m.request(Protocol::Http, Kind::Health, Outcome::Served);
            let body = app.metrics.render(&app.gauges());
            return files::serve_bytes(
                body.into(),
                None,
                "text/plain; version=0.0.4",
                method,
                headers,
            );
        }
        _ => {}
    }
    let Some(path) = percent_decode(raw_path) else {
        m.request(Protocol::Http, Kind::Other, Outcome::Refused);
        return text(StatusCode::BAD_REQUEST, "malformed path\n");
    };
    let res = match classify(&path) {
        Ok(r) => r,
        Err(e) => {
            m.request(Protocol::Http, Kind::Other, Outcome::Refused);
            return text(StatusCode::FORBIDDEN, &format!("refused: {e}\n"));
        }
    };
    let kind = res.kind();
    let mut answer = app.answer(&res, server, &app.http_roots);
    if let Answer::Pending(p) = answer {
        answer = match p.wait().await {
            Ok(()) => app.answer(&res, server, &app.http_roots),
            Err(e) => Answer::Error(e.to_string()),
        };
    }
    if let Answer::Rendering(r) = answer {
        answer = r.finish().await;
    }
    let mut who = (None, None, None);
    let (outcome, resp) = match answer {
        Answer::Config(c) => {
            who = (c.node, c.port, Some(c.action.name()));
            let body = c.body.into_bytes();
            (
                Outcome::Served,
                files::serve_bytes(body, None, "text/plain; charset=utf-8", method, headers),
            )
        }
        Answer::File { path, .. } => (
            Outcome::Served,
            files::serve_file(&path, method, headers).await,
        ),
        Answer::Pending(_) | Answer::Rendering(_) => (
            Outcome::Error,
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        ),
        Answer::Unavailable(e) => {
            tracing::error!(path = %truncate(&path), error = %e, "http request not served now");
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "ironpxe: cannot render this config now; see the server log\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            (Outcome::Error, r)
        }
        Answer::NotFound(why) => (Outcome::NotFound, not_found(kind, why)),
        Answer::Refused(why) => (
            Outcome::Refused,
            text(StatusCode::FORBIDDEN, &format!("refused: {why}\n")),
        ),
        Answer::Error(e) => {
            tracing::error!(path = %truncate(&path), error = %e, "http request failed");
            (
                Outcome::Error,
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ironpxe: see the server log\n",
                ),
            )
        }
    };
    m.request(Protocol::Http, kind, outcome);
    let record = crate::serving::journal::Record {
        protocol: Protocol::Http,
        client: peer.ip(),
        name: path.clone(),
        node: who.0,
        port: who.1,
        action: who.2,
        outcome,
        bytes: 0,
        duration_ms: 0,
        unknown: (outcome == Outcome::NotFound)
            .then(|| crate::serving::journal::AskedAddr::of(&res))
            .flatten(),
    };
    files::counted(resp, journal_when_sent(app, record, started))
}

/// Completes a request's journal entry and byte count with what its body really sent (see
/// [`files::counted`]): nothing for a HEAD, the part taken for an aborted download.
fn journal_when_sent(
    app: &App,
    mut record: crate::serving::journal::Record,
    started: std::time::Instant,
) -> files::OnSent {
    let (metrics, journal) = (app.metrics.clone(), app.journal.clone());
    Box::new(move |bytes| {
        metrics.bytes_sent(Protocol::Http, bytes);
        record.bytes = bytes;
        record.duration_ms = started.elapsed().as_millis() as u64;
        if let Some(j) = journal {
            j.record(record);
        }
    })
}

/// A 404 an iPXE `chain` can also read as a script.
fn not_found(kind: Kind, why: &str) -> Response<Body> {
    let body = match kind {
        Kind::Ipxe | Kind::IpxeEntry => format!("#!ipxe\necho ironpxe: {why}\nexit 1\n"),
        _ => format!("not found: {why}\n"),
    };
    text(StatusCode::NOT_FOUND, &body)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn health(app: &App, method: &Method, headers: &HeaderMap) -> Response<Body> {
    let g = app.gauges();
    let ironic_failing = g.ironic.as_ref().is_some_and(|p| p.last_error.is_some());
    let degraded =
        g.state_errors > 0 || g.template_errors > 0 || g.node_problems > 0 || ironic_failing;
    let ironic = g.ironic.as_ref().map(|p| {
        serde_json::json!({
            "polls_ok": p.polls_ok,
            "polls_failed": p.polls_failed,
            "last_good_poll_age_secs": p.last_ok.map(|t| t.elapsed().as_secs()),
            "last_error": p.last_error,
            "nodes": p.nodes,
            "ports": p.ports,
        })
    });
    let body = serde_json::json!({
        "ironic": ironic,
        "status": if degraded { "degraded" } else { "ok" },
        "state_generation": g.state_generation,
        "nodes": g.nodes,
        "ports": g.ports,
        "state_errors": g.state_errors,
        "template_generation": g.template_generation,
        "template_errors": g.template_errors,
        "node_problems": g.node_problems,
        "tftp_sessions": app.metrics.tftp_sessions(),
    });
    files::serve_bytes(
        format!("{body}\n").into(),
        None,
        "application/json",
        method,
        headers,
    )
}

/// Answers an over-cap connection with a plain 503 and closes it (bounded in time).
async fn refuse(mut stream: tokio::net::TcpStream, e: crate::serving::limits::LimitError) {
    use tokio::io::AsyncWriteExt;
    let body = format!("ironpxe: {e}; retry later\n");
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(resp.as_bytes())).await;
}

/// A running HTTP server; [`HttpServer::shutdown`] stops accepting and drains.
pub struct HttpServer {
    pub local: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Stops accepting, lets running responses finish within the grace period.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds and starts serving on the current tokio runtime.
pub async fn start(
    app: Arc<App>,
    listen: SocketAddr,
    cfg: HttpConfig,
) -> std::io::Result<HttpServer> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let policy = Arc::new(HostPolicy {
        listen: Some(local),
        public_url: app.public_url.clone(),
        aliases: cfg.host_aliases.clone(),
    });
    let limiter =
        crate::serving::limits::Limiter::new(cfg.max_connections, cfg.max_connections_per_client);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(cfg.header_timeout_secs))
            .max_buf_size(cfg.max_header_bytes.max(8192));
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let permit = match limiter.acquire(peer.ip()) {
                Ok(p) => p,
                Err(e) => {
                    app.metrics
                        .request(Protocol::Http, Kind::Other, Outcome::Refused);
                    tracing::warn!(client = %peer, error = %e, "http connection refused");
                    tokio::spawn(refuse(stream, e));
                    continue;
                }
            };
            let app = app.clone();
            let policy = policy.clone();
            let local = stream.local_addr().unwrap_or(local);
            let svc = hyper::service::service_fn(move |req| {
                let (app, policy) = (app.clone(), policy.clone());
                async move { Ok::<_, Infallible>(handle(app, policy, req, peer, local).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = conn.await {
                    tracing::debug!(client = %peer, error = %e, "http connection ended with an error");
                }
            });
        }
        drop(listener);
        let grace = Duration::from_secs(cfg.shutdown_grace_secs);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http connections still open after the shutdown grace period");
        }
    });
    tracing::info!(%local, "HTTP listening");
    Ok(HttpServer { local, stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn host_header_becomes_base_url_only_when_it_names_this_server() {
        let p = HostPolicy {
            listen: Some(sa("127.0.0.1:8080")),
            public_url: None,
            aliases: vec!["boot.example".into(), "10.0.2.2".into()],
        };
        let local = sa("127.0.0.1:8080");
        let url = |h: Option<&str>| p.server_for(h, local).http_url;
        assert_eq!(url(Some("127.0.0.1:8080")), "http://127.0.0.1:8080");
        assert_eq!(url(Some("boot.example:8080")), "http://boot.example:8080");
        assert_eq!(url(Some("10.0.2.2:8080")), "http://10.0.2.2:8080");
        for hostile in [
            "evil.example:8080",
            "127.0.0.1:9999",
            "boot.example:8080\nchain http://evil",
            "boot.example:8080/x",
            "boot example:8080",
            "127.0.0.1:8080 || shell",
            "",
            "[::1",
        ] {
            assert_eq!(url(Some(hostile)), "http://127.0.0.1:8080", "{hostile:?}");
        }
        assert_eq!(url(None), "http://127.0.0.1:8080");
        assert_eq!(
            url(Some("127.0.0.1:+8080")),
            "http://127.0.0.1:8080",
            "no signed ports"
        );
        assert_eq!(
            url(Some("BOOT.Example:08080")),
            "http://boot.example:8080",
            "normalised"
        );
        let wildcard = HostPolicy {
            listen: Some(sa("0.0.0.0:8080")),
            ..HostPolicy::default()
        };
        assert_eq!(
            wildcard
                .server_for(Some("192.0.2.7:8080"), sa("192.0.2.7:8080"))
                .http_url,
            "http://192.0.2.7:8080"
        );
        let public = HostPolicy {
            public_url: Some("http://pxe.example".into()),
            ..HostPolicy::default()
        };
        assert_eq!(
            public.server_for(Some("127.0.0.1:8080"), local).http_url,
            "http://pxe.example"
        );
    }

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
    }
}
