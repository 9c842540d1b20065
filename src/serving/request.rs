//! The accounting of one request, the same for TFTP and HTTP. A [`RequestLog`] is made as a
//! request arrives and told what it names and how it was answered; it counts the request in
//! the metrics and writes its request log line once (when the answer is known, or at the
//! latest on drop), and on drop adds the bytes sent and files the journal entry. A request
//! that returns early is still counted, as refused unless told otherwise, and never twice.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::model::resource::Resource;
use crate::model::resource::{AskedAddr, Kind};
use crate::serving::app::{App, ServedConfig};
use crate::serving::journal::{Journal, Record};
use crate::serving::metrics::{Metrics, Outcome, Protocol};

/// One request's metrics, journal entry and log lines; see the module docs.
pub struct RequestLog {
    metrics: Arc<Metrics>,
    journal: Option<Arc<Journal>>,
    client: SocketAddr,
    started: Instant,
    kind: Kind,
    outcome: Outcome,
    /// Counted in the metrics, its request line written.
    counted: bool,
    /// The journal entry, once the request names something (a name refused before that is
    /// only counted).
    record: Option<Record>,
    /// Body bytes handed to the client, once a transfer (TFTP) or a counted body (HTTP) began.
    sent: Option<u64>,
    line: Line,
}

/// What the protocol's log lines say besides the client.
enum Line {
    /// `http request`, written for every request, with its status.
    Http {
        method: http::Method,
        /// The raw path, cut to 200 characters.
        path: String,
        status: u16,
    },
    /// `tftp request`, written for an answer; a request refused or failed before one was
    /// found gets the line that says why instead, at the place that knows. A transfer also
    /// gets `tftp transfer ended`.
    Tftp {
        matched: Option<Cow<'static, str>>,
        bytes: Option<u64>,
        /// What the transfer sends, for its end line.
        what: Cow<'static, str>,
    },
}

impl RequestLog {
    fn new(app: &App, client: SocketAddr, line: Line) -> RequestLog {
        RequestLog {
            metrics: app.metrics.clone(),
            journal: app.journal.clone(),
            client,
            started: Instant::now(),
            kind: Kind::Other,
            outcome: Outcome::Refused,
            counted: false,
            record: None,
            sent: None,
            line,
        }
    }

    /// A TFTP request (read or write) from `client`.
    pub fn tftp(app: &App, client: SocketAddr) -> RequestLog {
        let line = Line::Tftp {
            matched: None,
            bytes: None,
            what: Cow::Borrowed(""),
        };
        RequestLog::new(app, client, line)
    }

    /// An HTTP request for `path` (as sent: the line shows what the client wrote).
    pub fn http(app: &App, client: SocketAddr, method: http::Method, path: &str) -> RequestLog {
        let line = Line::Http {
            method,
            path: path.chars().take(200).collect(),
            status: 0,
        };
        RequestLog::new(app, client, line)
    }

    fn protocol(&self) -> Protocol {
        match self.line {
            Line::Http { .. } => Protocol::Http,
            Line::Tftp { .. } => Protocol::Tftp,
        }
    }

    /// `/healthz` or `/metrics`: served, never journaled.
    pub fn health(&mut self) {
        self.kind = Kind::Health;
        self.outcome = Outcome::Served;
    }

    /// The request names `res` (`name` as the journal shows it): from now on it is journaled.
    pub fn classified(&mut self, name: &str, res: &Resource) {
        self.kind = res.kind();
        self.record = Some(Record {
            protocol: self.protocol(),
            client: self.client.ip(),
            name: name.to_owned(),
            node: None,
            port: None,
            action: None,
            outcome: self.outcome,
            bytes: 0,
            duration_ms: 0,
            unknown: AskedAddr::of(res),
        });
    }

    /// How the request ends, unless told otherwise later.
    pub fn outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// The config served: its node, port and action go into the journal entry.
    pub fn config(&mut self, c: &ServedConfig) {
        if let Some(r) = &mut self.record {
            r.node = c.node;
            r.port = c.port;
            r.action = Some(c.action.name());
        }
    }

    /// A TFTP answer: counted now, with its `tftp request` line (`matched` says what
    /// answered, `bytes` the size when known).
    pub fn answered(
        &mut self,
        outcome: Outcome,
        matched: impl Into<Cow<'static, str>>,
        bytes: Option<u64>,
    ) {
        self.outcome = outcome;
        if let Line::Tftp {
            matched: m,
            bytes: b,
            ..
        } = &mut self.line
        {
            *m = Some(matched.into());
            *b = bytes;
        }
        self.count();
    }

    /// An HTTP response's status: counted now, with its `http request` line.
    pub fn status(&mut self, code: u16) {
        if let Line::Http { status, .. } = &mut self.line {
            *status = code;
        }
        self.count();
    }

    /// A TFTP transfer of `what` begins (or is renamed: a render arrived): its bytes are
    /// counted and its end is logged.
    pub fn transfer(&mut self, what: impl Into<Cow<'static, str>>) {
        if let Line::Tftp { what: w, .. } = &mut self.line {
            *w = what.into();
        }
        self.sent.get_or_insert(0);
    }

    /// `n` more body bytes went to the client.
    pub fn sent(&mut self, n: u64) {
        *self.sent.get_or_insert(0) += n;
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// What the request names, as asked (empty until classified).
    pub fn name(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.name.as_str())
    }

    /// Whether the request has a journal entry (it names something).
    pub fn journaled(&self) -> bool {
        self.record.is_some()
    }

    /// Counts the request once and writes its request line.
    fn count(&mut self) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        self.metrics
            .request(self.protocol(), self.kind, self.outcome);
        let client = self.client;
        match &self.line {
            Line::Http {
                method,
                path,
                status,
            } => tracing::info!(client = %client, %method, path = %path, status, "http request"),
            Line::Tftp {
                matched: Some(matched),
                bytes,
                ..
            } => {
                let name = self.name();
                let matched = &**matched;
                tracing::info!(%client, name, matched, ?bytes, outcome = ?self.outcome, "tftp request");
            }
            Line::Tftp { matched: None, .. } => {}
        }
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.count();
        if let Some(n) = self.sent {
            self.metrics.bytes_sent(self.protocol(), n);
        }
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.outcome = self.outcome;
        if r.outcome != Outcome::NotFound {
            r.unknown = None;
        }
        if let Some(n) = self.sent {
            r.bytes = n;
            r.duration_ms = self.started.elapsed().as_millis() as u64;
        }
        if let (Line::Tftp { what, .. }, Some(_)) = (&self.line, self.sent) {
            tracing::info!(
                client = %r.client,
                name = %r.name.chars().take(128).collect::<String>(),
                matched = %what,
                bytes = r.bytes,
                duration_ms = r.duration_ms,
                "tftp transfer ended"
            );
        }
        if let Some(j) = &self.journal {
            j.record(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::for_tests(Vec::new())
    }

    /// Whatever path a request takes out, it is counted exactly once; only a request that
    /// names something is journaled, and a transfer with the bytes it sent.
    #[test]
    fn every_request_is_counted_once_and_journaled_when_it_names_something() {
        let app = app();
        let client: SocketAddr = "192.0.2.1:1234".parse().expect("addr");
        let m = &app.metrics;
        let res = crate::model::resource::classify("pxelinux.0").expect("classify");
        // Returned early, before anything was classified: refused, not journaled.
        drop(RequestLog::tftp(&app, client));
        assert_eq!(m.requests(Protocol::Tftp, Kind::Other, Outcome::Refused), 1);
        // Answered (counted then), then dropped: not counted again.
        let mut log = RequestLog::tftp(&app, client);
        log.classified("pxelinux.0", &res);
        log.answered(Outcome::NotFound, "no such file", None);
        assert_eq!(
            m.requests(Protocol::Tftp, Kind::Static, Outcome::NotFound),
            1
        );
        drop(log);
        assert_eq!(
            m.requests(Protocol::Tftp, Kind::Static, Outcome::NotFound),
            1
        );
        // A transfer whose render never came: an error, with the bytes it sent.
        let mut log = RequestLog::tftp(&app, client);
        log.classified("pxelinux.0", &res);
        log.outcome(Outcome::Error);
        log.transfer("rendering");
        log.sent(7);
        drop(log);
        assert_eq!(m.requests(Protocol::Tftp, Kind::Static, Outcome::Error), 1);
        // HTTP: counted with its status; the journal entry waits for the body.
        let mut log = RequestLog::http(&app, client, http::Method::GET, "/healthz");
        log.health();
        log.status(200);
        assert!(!log.journaled());
        drop(log);
        assert_eq!(m.requests(Protocol::Http, Kind::Health, Outcome::Served), 1);
        let mut log = RequestLog::http(&app, client, http::Method::HEAD, "/pxelinux.0");
        log.classified("/pxelinux.0", &res);
        log.outcome(Outcome::Served);
        log.status(200);
        log.sent(0);
        drop(log);
        assert_eq!(m.requests(Protocol::Http, Kind::Static, Outcome::Served), 1);

        let journal = app.journal.as_ref().expect("journal");
        journal.flush();
        let events = journal.events_since(0, 10);
        let seen: Vec<(&str, &str, u64)> = events
            .iter()
            .map(|e| (e.protocol, e.outcome, e.bytes))
            .collect();
        assert_eq!(
            seen,
            [
                ("tftp", "not_found", 0),
                ("tftp", "error", 7),
                ("http", "served", 0)
            ]
        );
    }
}
