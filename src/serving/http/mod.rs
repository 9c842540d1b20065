//! The HTTP server (hyper 1 on tokio): `boot.ipxe`, per-node iPXE scripts under every
//! spelling, Ironic's `pxelinux.cfg/<mac>` layout, GRUB configs, cached images, static files
//! with Range, `/healthz` and `/metrics`. GET and HEAD only.

pub mod files;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::model::resource::classify_with;
use crate::model::resource::Kind;
use crate::render::Server;
use crate::serving::app::{Answer, App};
use crate::serving::metrics::{Outcome, Protocol};
use crate::serving::request::RequestLog;
use crate::serving::web::{self, text, Body, WebServer};

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
        // `local` is the accepted connection's own address: never a wildcard. Without a
        // trusted `Host`: bracketed, without the zone (which names the link on this side
        // only) and, for a v4 client on a dual-stack socket, the IPv4 address it reached.
        let at =
            crate::serving::app::server_at(self.public_url.as_deref(), local.ip(), local.port());
        if self.public_url.is_some() {
            return at;
        }
        match host.and_then(|h| self.accept_host(h, local)) {
            Some(h) => Server {
                http_url: format!("http://{h}"),
                ..at
            },
            None => at,
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

/// Answers one request.
pub async fn handle(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path();
    let mut log = RequestLog::http(&app, peer, method.clone(), path);
    let resp = if method != Method::GET && method != Method::HEAD {
        web::method_not_allowed()
    } else {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let server = policy.server_for(host, local);
        route(&app, &mut log, path, &server, &method, req.headers()).await
    };
    log.status(resp.status().as_u16());
    if !log.journaled() {
        return resp;
    }
    // The journal entry and byte count wait for what the body really sends (see
    // [`files::counted`]): nothing for a HEAD, the part taken for an aborted download.
    files::counted(resp, Box::new(move |bytes| log.sent(bytes)))
}

async fn route(
    app: &App,
    log: &mut RequestLog,
    raw_path: &str,
    server: &Server,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    match raw_path {
        "/healthz" => {
            log.health();
            return health(app, method, headers);
        }
        "/metrics" => {
            log.health();
            let body = app.metrics.render(&app.gauges());
            let plain = "text/plain; version=0.0.4";
            return files::serve_bytes(body.into(), None, plain, method, headers);
        }
        _ => {}
    }
    let Some(path) = web::percent_decode(raw_path) else {
        return text(StatusCode::BAD_REQUEST, "malformed path\n");
    };
    let res = match classify_with(&path, &app.grub_prefixes) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("refused: {e}\n")),
    };
    log.classified(&path, &res);
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
    reply(log, res.kind(), &path, answer, method, headers).await
}

/// Turns an answer into a response, telling `log` how the request ended.
async fn reply(
    log: &mut RequestLog,
    kind: Kind,
    path: &str,
    answer: Answer,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let (outcome, resp) = match answer {
        Answer::Config(c) => {
            log.config(&c);
            let body = c.body.into_bytes();
            let plain = "text/plain; charset=utf-8";
            let resp = files::serve_bytes(body, None, plain, method, headers);
            (Outcome::Served, resp)
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
            tracing::error!(path = %truncate(path), error = %e, "http request not served now");
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
            text(StatusCode::FORBIDDEN, format!("refused: {why}\n")),
        ),
        Answer::Error(e) => {
            tracing::error!(path = %truncate(path), error = %e, "http request failed");
            let msg = "ironpxe: see the server log\n";
            (Outcome::Error, text(StatusCode::INTERNAL_SERVER_ERROR, msg))
        }
    };
    log.outcome(outcome);
    resp
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A 404 an iPXE `chain` can also read as a script.
fn not_found(kind: Kind, why: &str) -> Response<Body> {
    let body = match kind {
        Kind::Ipxe | Kind::IpxeEntry => format!("#!ipxe\necho ironpxe: {why}\nexit 1\n"),
        _ => format!("not found: {why}\n"),
    };
    text(StatusCode::NOT_FOUND, body)
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

impl HttpConfig {
    /// How the server takes connections.
    fn accept(&self) -> web::Accept {
        web::Accept {
            name: "http",
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            max_header_bytes: Some(self.max_header_bytes),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
        }
    }
}

/// Binds and starts serving on the current tokio runtime.
pub async fn start(
    app: Arc<App>,
    listen: SocketAddr,
    cfg: HttpConfig,
) -> std::io::Result<WebServer> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let policy = Arc::new(HostPolicy {
        listen: Some(local),
        public_url: app.public_url.clone(),
        aliases: cfg.host_aliases.clone(),
    });
    let metrics = app.metrics.clone();
    // A connection over the caps is counted as a refused request (it is answered 503).
    let refused = move || metrics.request(Protocol::Http, Kind::Other, Outcome::Refused);
    let server = web::serve(listener, cfg.accept(), refused, move |req, peer, local| {
        handle(app.clone(), policy.clone(), req, peer, local)
    })?;
    tracing::info!(%local, "HTTP listening");
    Ok(server)
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
        // IPv6: bracketed, the zone of a link-local connection left out, a v4-mapped one as
        // IPv4; an IPv6 Host header naming the server is kept, one with a zone is not.
        let v6 = HostPolicy {
            listen: Some(sa("[::]:8080")),
            ..HostPolicy::default()
        };
        for (host, local, want, tftp) in [
            (
                None,
                "[2001:db8::1]:8080",
                "http://[2001:db8::1]:8080",
                "2001:db8::1",
            ),
            (None, "[fe80::1%3]:8080", "http://[fe80::1]:8080", "fe80::1"),
            (
                None,
                "[::ffff:192.0.2.7]:8080",
                "http://192.0.2.7:8080",
                "192.0.2.7",
            ),
            (
                Some("[fd00::7]:8080"),
                "[fd00::7]:8080",
                "http://[fd00::7]:8080",
                "fd00::7",
            ),
            (
                Some("[fe80::1%25eth0]:8080"),
                "[fe80::1%3]:8080",
                "http://[fe80::1]:8080",
                "fe80::1",
            ),
        ] {
            let s = v6.server_for(host, sa(local));
            assert_eq!(
                (s.http_url.as_str(), s.tftp_server.as_str()),
                (want, tftp),
                "{host:?} {local}"
            );
        }
        let public = HostPolicy {
            public_url: Some("http://pxe.example".into()),
            ..HostPolicy::default()
        };
        assert_eq!(
            public.server_for(Some("127.0.0.1:8080"), local).http_url,
            "http://pxe.example"
        );
    }
}
