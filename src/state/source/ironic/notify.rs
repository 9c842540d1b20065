//! Ironic's versioned notifications over AMQP 0-9-1 (`[ironic.notifications]`): the poller
//! learns of a change from the message bus instead of asking Ironic's API every
//! `interval_secs`, which at 100 000 nodes is what keeps ironpxe a quiet client.
//!
//! Each replica declares its own server-named, exclusive, auto-delete queue bound to
//! `<topic>.*` on Ironic's exchange, so every replica sees every event (a shared queue would
//! split them). Messages are decoded ([`notification`](crate::state::source::notification))
//! and handed to the poller over a bounded channel; a full channel, a reconnect or a lost
//! stream ask the poller for a resync instead (one round of change probes: their marks catch
//! everything missed), so memory stays bounded and nothing is lost for long.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicQosArguments, Channel, ExchangeDeclareArguments,
    QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::state::source::notification::{decode, Event};

/// Events the poller has not taken yet, at most; more ask for a resync instead.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Unacknowledged messages the broker may push at once (bounds the client's own buffer).
const PREFETCH: u16 = 256;
/// Connecting and declaring may take this long before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `[ironic.notifications]`. Off unless `url` is set.
#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// `amqp://user@host:port/vhost` — the broker Ironic's `[oslo_messaging_notifications]
    /// transport_url` names. No password here: `password` or `password_file`.
    pub url: Option<String>,
    /// The broker password, or a file holding it (`password_file` wins).
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Ironic's `[DEFAULT] control_exchange` (default `ironic`).
    pub exchange: Option<String>,
    /// Ironic's `versioned_notifications_topics` entry (default
    /// `ironic_versioned_notifications`); bound as `<topic>.*`, every priority.
    pub topic: Option<String>,
    /// Seconds between change probes while the stream is healthy (default 60): the safety
    /// net for a lost message. While it is down, `interval_secs` applies.
    pub probe_secs: Option<u64>,
}

impl fmt::Debug for NotificationsConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationsConfig")
            .field("url", &self.url)
            .field("exchange", &self.exchange)
            .field("topic", &self.topic)
            .field("probe_secs", &self.probe_secs)
            .finish_non_exhaustive()
    }
}

/// A setting of `[ironic.notifications]` that cannot work, naming the key to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyConfigError {
    #[error("ironic.notifications.url {0}")]
    Url(String),
    #[error("ironic.notifications.password_file {path}: {message}")]
    PasswordFile { path: String, message: String },
    #[error("ironic.notifications.{key} {message}")]
    Name { key: &'static str, message: String },
}

/// The resolved settings: where to connect, as whom, what to bind.
#[derive(Clone, PartialEq, Eq)]
pub struct Amqp {
    pub host: String,
    pub port: u16,
    pub user: String,
    password: String,
    pub vhost: String,
    pub exchange: String,
    pub topic: String,
    pub probe: Duration,
}

impl fmt::Debug for Amqp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "amqp://{}@{}:{}/{} exchange={} topic={} (password=***)",
            self.user,
            self.host,
            self.port,
            self.vhost.replace('%', "%25").replace('/', "%2F"),
            self.exchange,
            self.topic
        )
    }
}

impl NotificationsConfig {
    /// The resolved settings; `None` when notifications are off (no `url`). Reads the
    /// password file.
    pub fn resolve(&self) -> Result<Option<Amqp>, NotifyConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let (host, port, user, vhost) = parse_url(url)?;
        let password = match (&self.password_file, &self.password) {
            (Some(f), _) => super::read_secret(f).map_err(|e| NotifyConfigError::PasswordFile {
                path: f.display().to_string(),
                message: e.to_string(),
            })?,
            (None, Some(p)) => p.clone(),
            (None, None) => "guest".to_owned(),
        };
        let exchange = name(
            "exchange",
            self.exchange.as_deref().unwrap_or("ironic"),
            255,
        )?;
        // The routing key `<topic>.*` must fit AMQP's 255-byte short string.
        let topic = name(
            "topic",
            self.topic
                .as_deref()
                .unwrap_or("ironic_versioned_notifications"),
            253,
        )?;
        Ok(Some(Amqp {
            host,
            port,
            user,
            password,
            vhost,
            exchange,
            topic,
            probe: Duration::from_secs(self.probe_secs.unwrap_or(60).max(1)),
        }))
    }
}

/// An exchange or topic name: printable, no wildcard, bounded.
fn name(key: &'static str, v: &str, max: usize) -> Result<String, NotifyConfigError> {
    let bad = |message: &str| NotifyConfigError::Name {
        key,
        message: format!("{v:?}: {message}"),
    };
    if v.is_empty() || v.len() > max {
        return Err(bad(&format!("must be 1 to {max} bytes")));
    }
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '*' || c == '#')
    {
        return Err(bad("no spaces, control characters, `*` or `#`"));
    }
    Ok(v.to_owned())
}

/// `amqp://[user@]host[:port][/vhost]` (also oslo's `rabbit://`) into host, port, user and
/// vhost (percent-decoded; empty means `/`). A password in the URL is refused: URLs end up
/// in logs and `ps`.
fn parse_url(url: &str) -> Result<(String, u16, String, String), NotifyConfigError> {
    let err =
        |m: &str| NotifyConfigError::Url(format!("{m} (expected amqp://user@host:port/vhost)"));
    let rest = url
        .strip_prefix("amqp://")
        .or_else(|| url.strip_prefix("rabbit://"))
        .ok_or_else(|| {
            err(if url.starts_with("amqps://") {
                "amqps (TLS) is not supported: use a local broker or a TLS-terminating proxy"
            } else {
                "must start with amqp:// or rabbit://"
            })
        })?;
    if rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(err("contains spaces or control characters"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if path.contains(['?', '#']) {
        return Err(err("has a query or fragment"));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let user = match userinfo {
        Some(u) if u.contains(':') => {
            return Err(err(
                "holds a password: put it in ironic.notifications.password_file",
            ))
        }
        Some(u) => percent_decode(u).ok_or_else(|| err("has a bad %-escape in the user"))?,
        None => "guest".to_owned(),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| err("has an unclosed [ in the host"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(['@', '[', ']']) {
        return Err(err("has no usable host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err("has a port that is not 1-65535"))?,
        None => 5672,
    };
    let vhost = match path {
        "" => "/".to_owned(),
        p => percent_decode(p).ok_or_else(|| err("has a bad %-escape in the vhost"))?,
    };
    if user.is_empty() || user.len() > 255 || vhost.len() > 255 {
        return Err(err("has an empty or over-long user, or an over-long vhost"));
    }
    Ok((host, port, user, vhost))
}

/// `%XX` decoding into UTF-8; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the consumer and the poller share: the stream's health, the resync request, and
/// the counts `/metrics` shows.
#[derive(Default, Debug)]
pub struct NotifyShared {
    up: AtomicBool,
    resync: AtomicBool,
    /// Wakes the poller on a resync request or a change of health.
    pub wake: tokio::sync::Notify,
    node_events: AtomicU64,
    port_events: AtomicU64,
    ignored_events: AtomicU64,
    decode_errors: AtomicU64,
    connects: AtomicU64,
    overflows: AtomicU64,
}

/// A snapshot of [`NotifyShared`] for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyStatus {
    pub up: bool,
    pub node_events: u64,
    pub port_events: u64,
    pub ignored_events: u64,
    pub decode_errors: u64,
    pub connects: u64,
    pub overflows: u64,
}

impl NotifyShared {
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// True once per resync request.
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Relaxed)
    }

    /// Asks the poller for one round of change probes now.
    pub fn request_resync(&self) {
        self.resync.store(true, Relaxed);
        self.wake.notify_one();
    }

    pub fn status(&self) -> NotifyStatus {
        NotifyStatus {
            up: self.up.load(Relaxed),
            node_events: self.node_events.load(Relaxed),
            port_events: self.port_events.load(Relaxed),
            ignored_events: self.ignored_events.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            connects: self.connects.load(Relaxed),
            overflows: self.overflows.load(Relaxed),
        }
    }

    fn count(&self, e: &Event) {
        let c = match e {
            Event::Node { .. } => &self.node_events,
            Event::Port { .. } => &self.port_events,
            Event::Ignored => &self.ignored_events,
        };
        c.fetch_add(1, Relaxed);
    }
}

/// Starts the consumer; its events come out of the returned receiver. It runs until the
/// receiver is dropped.
pub fn spawn(settings: Amqp, shared: Arc<NotifyShared>) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(run(settings, shared, tx));
    rx
}

/// Connects, consumes, and reconnects with backoff for as long as the poller listens.
async fn run(settings: Amqp, shared: Arc<NotifyShared>, tx: mpsc::Sender<Event>) {
    let mut backoff = Duration::from_secs(1);
    let mut errors = ErrorLog::default();
    // The first failed attempt after start or after a loss is a warning, the rest debug.
    let mut warned = false;
    loop {
        let outcome = session(&settings, &shared, &tx, &mut errors, &mut warned).await;
        let was_up = shared.up.swap(false, Relaxed);
        if tx.is_closed() {
            return;
        }
        match (&outcome, was_up) {
            (Err(e), true) => {
                tracing::warn!(broker = ?settings, error = %e, "Ironic notification stream lost; probing Ironic every interval_secs until it is back");
                backoff = Duration::from_secs(1);
                warned = true;
            }
            (Err(e), false) if !warned => {
                tracing::warn!(broker = ?settings, error = %e, "cannot reach the AMQP broker; probing Ironic every interval_secs and retrying with backoff");
                warned = true;
            }
            (Err(e), false) => {
                tracing::debug!(broker = ?settings, error = %e, retry_in = ?backoff, "cannot reach the AMQP broker")
            }
            (Ok(()), _) => return,
        }
        if was_up {
            shared.wake.notify_one();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Rate sense for decode errors: the first is a warning, then one warning a minute with the
/// count in between (the rest at debug).
#[derive(Default)]
struct ErrorLog {
    last_warn: Option<Instant>,
    since: u64,
}

impl ErrorLog {
    fn note(&mut self, err: &dyn fmt::Display) {
        self.since += 1;
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(error = %err, count = self.since, "Ironic notifications that cannot be read (skipped; the change probes still catch their changes)");
            self.last_warn = Some(Instant::now());
            self.since = 0;
        } else {
            tracing::debug!(error = %err, "unreadable Ironic notification");
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("AMQP: {0}")]
    Amqp(#[from] amqprs::error::Error),
    #[error("connecting and declaring took more than {0:?}")]
    Timeout(Duration),
    #[error("the broker closed the connection or the channel")]
    Closed,
}

/// One connection: declare, bind, consume until it fails. `Ok` only when the poller is gone.
async fn session(
    s: &Amqp,
    shared: &NotifyShared,
    tx: &mpsc::Sender<Event>,
    errors: &mut ErrorLog,
    warned: &mut bool,
) -> Result<(), SessionError> {
    let (conn, ch, mut rx) = tokio::time::timeout(CONNECT_TIMEOUT, open(s))
        .await
        .map_err(|_| SessionError::Timeout(CONNECT_TIMEOUT))??;
    shared.up.store(true, Relaxed);
    shared.connects.fetch_add(1, Relaxed);
    *warned = false;
    tracing::info!(broker = ?s, "consuming Ironic's notifications; change probes every probe_secs");
    shared.request_resync();
    let mut check = tokio::time::interval(Duration::from_secs(2));
    let result = loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break Err(SessionError::Closed) };
                let Some(tag) = msg.deliver.as_ref().map(|d| d.delivery_tag()) else { continue };
                match decode(msg.content.as_deref().unwrap_or_default()) {
                    Ok(e) => {
                        shared.count(&e);
                        if e != Event::Ignored {
                            match tx.try_send(e) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    tracing::debug!("the poller is behind on notifications: dropped, resync asked for");
                                    shared.overflows.fetch_add(1, Relaxed);
                                    shared.request_resync();
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => break Ok(()),
                            }
                        }
                    }
                    Err(e) => {
                        shared.decode_errors.fetch_add(1, Relaxed);
                        errors.note(&e);
                    }
                }
                ch.basic_ack(BasicAckArguments::new(tag, false)).await?;
            }
            _ = check.tick() => {
                if !conn.is_open() || !ch.is_open() {
                    break Err(SessionError::Closed);
                }
                if tx.is_closed() {
                    break Ok(());
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
    result
}

type Opened = (
    Connection,
    Channel,
    mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
);

/// Opens the connection and a channel, binds this replica's own queue and starts consuming.
/// The broker pushes at most [`PREFETCH`] unacknowledged messages, which bounds the
/// client's own (unbounded) delivery buffer.
async fn open(s: &Amqp) -> Result<Opened, SessionError> {
    let mut args = OpenConnectionArguments::new(&s.host, s.port, &s.user, &s.password);
    args.virtual_host(&s.vhost)
        .heartbeat(20)
        .connection_name("ironpxe");
    let conn = Connection::open(&args).await?;
    // Ironic's exchange exists once it has published; until then declare it as oslo.messaging
    // does (topic, not durable). A passive check first: an operator's durable exchange is
    // used as it is.
    let probe = conn.open_channel(None).await?;
    let mut passive = ExchangeDeclareArguments::new(&s.exchange, "topic");
    passive.passive(true);
    if probe.exchange_declare(passive).await.is_err() {
        let ch = conn.open_channel(None).await?;
        ch.exchange_declare(ExchangeDeclareArguments::new(&s.exchange, "topic"))
            .await?;
        let _ = ch.close().await;
    } else {
        let _ = probe.close().await;
    }
    let ch = conn.open_channel(None).await?;
    let (queue, _, _) = ch
        .queue_declare(
            QueueDeclareArguments::exclusive_server_named()
                .auto_delete(true)
                .finish(),
        )
        .await?
        .ok_or(SessionError::Closed)?;
    ch.queue_bind(QueueBindArguments::new(
        &queue,
        &s.exchange,
        &format!("{}.*", s.topic),
    ))
    .await?;
    ch.basic_qos(BasicQosArguments::new(0, PREFETCH, false))
        .await?;
    let (_, rx) = ch
        .basic_consume_rx(
            BasicConsumeArguments::new(&queue, "")
                .manual_ack(true)
                .finish(),
        )
        .await?;
    Ok((conn, ch, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Result<Amqp, NotifyConfigError> {
        NotificationsConfig {
            url: Some(u.into()),
            password: Some("hunter2".into()),
            ..Default::default()
        }
        .resolve()
        .map(|a| a.expect("on"))
    }

    #[test]
    fn off_without_a_url() {
        assert_eq!(NotificationsConfig::default().resolve(), Ok(None));
    }

    #[test]
    fn urls_parse_into_host_port_user_vhost() {
        for (u, host, port, user, vhost) in [
            (
                "amqp://ironpxe@192.0.2.5:5673/ironic",
                "192.0.2.5",
                5673,
                "ironpxe",
                "ironic",
            ),
            ("amqp://192.0.2.5", "192.0.2.5", 5672, "guest", "/"),
            (
                "rabbit://guest@127.0.0.1:25672/",
                "127.0.0.1",
                25672,
                "guest",
                "/",
            ),
            (
                "amqp://u%40x@[2001:db8::5]:5672/%2Fprod",
                "2001:db8::5",
                5672,
                "u@x",
                "/prod",
            ),
            (
                "amqp://rabbit.example.net/",
                "rabbit.example.net",
                5672,
                "guest",
                "/",
            ),
        ] {
            let a = url(u).unwrap_or_else(|e| panic!("{u}: {e}"));
            assert_eq!(
                (a.host.as_str(), a.port, a.user.as_str(), a.vhost.as_str()),
                (host, port, user, vhost),
                "{u}"
            );
            assert_eq!(a.exchange, "ironic");
            assert_eq!(a.topic, "ironic_versioned_notifications");
            assert_eq!(a.probe, Duration::from_secs(60));
        }
    }

    #[test]
    fn bad_urls_name_the_key_and_what_to_fix() {
        for (u, want) in [
            ("http://x", "amqp://"),
            ("amqps://x", "TLS"),
            ("amqp://guest:secret@x/", "password_file"),
            ("amqp://x:0/", "port"),
            ("amqp://x:99999/", "port"),
            ("amqp://x:abc/", "port"),
            ("amqp:///vhost", "host"),
            ("amqp://[::1/", "unclosed"),
            ("amqp://x/%zz", "%-escape"),
            ("amqp://x/a?b=c", "query"),
            ("amqp://x/a b", "spaces"),
            ("amqp://x/\n", "control"),
        ] {
            let e = url(u).expect_err(u).to_string();
            assert!(e.starts_with("ironic.notifications.url"), "{e}");
            assert!(e.contains(want), "{u}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn exchange_and_topic_are_checked() {
        for (exchange, topic, key) in [
            ("", "t", "exchange"),
            ("a b", "t", "exchange"),
            ("e", "t.*", "topic"),
            ("e", "#", "topic"),
            ("e", &"t".repeat(254), "topic"),
        ] {
            let e = NotificationsConfig {
                url: Some("amqp://x".into()),
                exchange: Some(exchange.into()),
                topic: Some(topic.into()),
                ..Default::default()
            }
            .resolve()
            .expect_err(topic)
            .to_string();
            assert!(e.starts_with(&format!("ironic.notifications.{key}")), "{e}");
        }
    }

    #[test]
    fn the_password_never_shows_and_the_file_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").expect("write");
        let cfg = NotificationsConfig {
            url: Some("amqp://ironpxe@x/".into()),
            password: Some("hunter2".into()),
            password_file: Some(f),
            ..Default::default()
        };
        let a = cfg.resolve().expect("ok").expect("on");
        assert_eq!(a.password, "from-file");
        let dbg = format!("{cfg:?} {a:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("from-file"),
            "{dbg}"
        );
        assert!(dbg.contains("amqp://ironpxe@x:5672/%2F "), "{dbg}");
        let missing = NotificationsConfig {
            password_file: Some(dir.path().join("nope")),
            ..cfg
        };
        let e = missing.resolve().expect_err("missing file").to_string();
        assert!(e.contains("ironic.notifications.password_file"), "{e}");
    }

    #[test]
    fn a_resync_request_is_taken_once() {
        let s = NotifyShared::default();
        assert!(!s.take_resync());
        s.request_resync();
        s.request_resync();
        assert!(s.take_resync());
        assert!(!s.take_resync());
    }
}
