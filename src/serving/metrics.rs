//! Counters for `/metrics`, in Prometheus text format. Lock-free: the serving path only does
//! relaxed atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::model::resource::Kind;

/// Which server saw the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tftp = 0,
    Http = 1,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Served = 0,
    NotFound = 1,
    Error = 2,
    Refused = 3,
}

const PROTOCOLS: [&str; 2] = ["tftp", "http"];
const KINDS: [&str; 8] = [
    "pxelinux",
    "ipxe",
    "ipxe_entry",
    "grub",
    "image",
    "static",
    "health",
    "other",
];
const OUTCOMES: [&str; 4] = ["served", "not_found", "error", "refused"];
const N_REQ: usize = PROTOCOLS.len() * KINDS.len() * OUTCOMES.len();

/// Upper bounds of the render-time histogram, in seconds.
const RENDER_BUCKETS: [f64; 8] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1,
];

/// All of ironpxe's counters.
pub struct Metrics {
    requests: [AtomicU64; N_REQ],
    bytes: [AtomicU64; 2],
    render_buckets: [AtomicU64; RENDER_BUCKETS.len()],
    render_count: AtomicU64,
    render_sum_ns: AtomicU64,
    tftp_sessions: AtomicI64,
    tftp_rcvbuf: AtomicU64,
    image_fetches: AtomicU64,
    image_fetch_errors: AtomicU64,
    image_cache_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            render_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            render_count: AtomicU64::new(0),
            render_sum_ns: AtomicU64::new(0),
            tftp_sessions: AtomicI64::new(0),
            tftp_rcvbuf: AtomicU64::new(0),
            image_fetches: AtomicU64::new(0),
            image_fetch_errors: AtomicU64::new(0),
            image_cache_bytes: AtomicU64::new(0),
        }
    }
}

/// Gauges read from the live state at scrape time.
#[derive(Default, Debug)]
pub struct StateGauges {
    pub nodes: usize,
    pub ports: usize,
    pub state_generation: u64,
    pub state_errors: usize,
    pub template_generation: u64,
    pub template_errors: usize,
    /// Nodes with a problem found while serving (see [`crate::state::problems`]).
    pub node_problems: usize,
    /// Renders stopped at their budget, render workers started and died (see `render::pool`).
    pub renders_stopped: u64,
    pub render_worker_starts: u64,
    pub render_worker_deaths: u64,
    /// The Ironic poller, when Ironic is a source.
    pub ironic: Option<crate::state::source::ironic::PollStatus>,
}

fn idx(p: Protocol, k: Kind, o: Outcome) -> usize {
    (p as usize * KINDS.len() + k as usize) * OUTCOMES.len() + o as usize
}

impl Metrics {
    pub fn request(&self, p: Protocol, k: Kind, o: Outcome) {
        self.requests[idx(p, k, o)].fetch_add(1, Relaxed);
    }

    /// One request counter (read by tests; `/metrics` renders them all from the array).
    pub fn requests(&self, p: Protocol, k: Kind, o: Outcome) -> u64 {
        self.requests[idx(p, k, o)].load(Relaxed)
    }

    pub fn bytes_sent(&self, p: Protocol, n: u64) {
        self.bytes[p as usize].fetch_add(n, Relaxed);
    }

    pub fn render_time(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = RENDER_BUCKETS.iter().position(|b| secs <= *b) {
            self.render_buckets[i].fetch_add(1, Relaxed);
        }
        self.render_count.fetch_add(1, Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.render_sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn tftp_session_started(&self) {
        self.tftp_sessions.fetch_add(1, Relaxed);
    }

    pub fn tftp_session_ended(&self) {
        self.tftp_sessions.fetch_sub(1, Relaxed);
    }

    pub fn tftp_sessions(&self) -> i64 {
        self.tftp_sessions.load(Relaxed)
    }

    /// The receive buffer the kernel granted the TFTP listening sockets.
    pub fn tftp_rcvbuf(&self) -> u64 {
        self.tftp_rcvbuf.load(Relaxed)
    }

    pub fn set_tftp_rcvbuf(&self, bytes: u64) {
        self.tftp_rcvbuf.store(bytes, Relaxed);
    }

    pub fn image_fetched(&self, ok: bool) {
        self.image_fetches.fetch_add(1, Relaxed);
        if !ok {
            self.image_fetch_errors.fetch_add(1, Relaxed);
        }
    }

    pub fn image_fetch_errors(&self) -> u64 {
        self.image_fetch_errors.load(Relaxed)
    }

    pub fn set_image_cache_bytes(&self, bytes: u64) {
        self.image_cache_bytes.store(bytes, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: &StateGauges) -> String {
        let mut s = String::with_capacity(8192);
        self.write_requests(&mut s);
        header(
            &mut s,
            "ironpxe_bytes_sent_total",
            "counter",
            "Bytes sent to clients.",
        );
        for (i, p) in PROTOCOLS.iter().enumerate() {
            let v = self.bytes[i].load(Relaxed);
            let _ = writeln!(s, "ironpxe_bytes_sent_total{{protocol=\"{p}\"}} {v}");
        }
        self.write_render_histogram(&mut s);
        for (name, help, v) in self.scalars(g) {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            header(&mut s, name, kind, help);
            let _ = writeln!(s, "{name} {v}");
        }
        if let Some(p) = &g.ironic {
            write_ironic(&mut s, p);
        }
        s
    }

    /// Every single-valued metric: name, help, value. `_total` names are counters.
    fn scalars(&self, g: &StateGauges) -> [(&'static str, &'static str, String); 16] {
        [
            (
                "ironpxe_tftp_sessions_active",
                "TFTP transfers in progress.",
                self.tftp_sessions().to_string(),
            ),
            (
                "ironpxe_tftp_socket_rcvbuf_bytes",
                "Effective SO_RCVBUF of the TFTP listening sockets.",
                self.tftp_rcvbuf.load(Relaxed).to_string(),
            ),
            ("ironpxe_nodes", "Nodes indexed.", g.nodes.to_string()),
            ("ironpxe_ports", "Ports indexed.", g.ports.to_string()),
            (
                "ironpxe_state_generation",
                "Generation of the node state.",
                g.state_generation.to_string(),
            ),
            (
                "ironpxe_state_errors",
                "State sources whose latest input was refused.",
                g.state_errors.to_string(),
            ),
            (
                "ironpxe_template_generation",
                "Generation of the loaded templates.",
                g.template_generation.to_string(),
            ),
            (
                "ironpxe_template_errors",
                "Template problems on disk (the last good set is serving).",
                g.template_errors.to_string(),
            ),
            (
                "ironpxe_renders_stopped_total",
                "Renders (and trial renders) stopped at their budget; their worker was killed.",
                g.renders_stopped.to_string(),
            ),
            (
                "ironpxe_render_worker_starts_total",
                "Render worker processes started.",
                g.render_worker_starts.to_string(),
            ),
            (
                "ironpxe_render_worker_deaths_total",
                "Render workers that died in a render (out of memory, stack overflow).",
                g.render_worker_deaths.to_string(),
            ),
            (
                "ironpxe_node_problems",
                "Nodes with a problem found while serving (render budget, refused image).",
                g.node_problems.to_string(),
            ),
            (
                "ironpxe_image_fetches_total",
                "Image cache fetches.",
                self.image_fetches.load(Relaxed).to_string(),
            ),
            (
                "ironpxe_image_fetch_errors_total",
                "Image cache fetches that failed.",
                self.image_fetch_errors().to_string(),
            ),
            (
                "ironpxe_image_cache_bytes",
                "Bytes held in the image cache.",
                self.image_cache_bytes.load(Relaxed).to_string(),
            ),
            ("ironpxe_up", "Always 1.", "1".into()),
        ]
    }

    fn write_requests(&self, s: &mut String) {
        header(
            s,
            "ironpxe_requests_total",
            "counter",
            "Requests by protocol, kind and outcome.",
        );
        for (pi, p) in PROTOCOLS.iter().enumerate() {
            for (ki, k) in KINDS.iter().enumerate() {
                for (oi, o) in OUTCOMES.iter().enumerate() {
                    let v =
                        self.requests[(pi * KINDS.len() + ki) * OUTCOMES.len() + oi].load(Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            s,
                            "ironpxe_requests_total{{protocol=\"{p}\",kind=\"{k}\",outcome=\"{o}\"}} {v}"
                        );
                    }
                }
            }
        }
    }

    fn write_render_histogram(&self, s: &mut String) {
        let name = "ironpxe_render_seconds";
        header(
            s,
            name,
            "histogram",
            "Time to render a config (cache misses).",
        );
        let mut cumulative = 0;
        for (i, b) in RENDER_BUCKETS.iter().enumerate() {
            cumulative += self.render_buckets[i].load(Relaxed);
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.render_count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.render_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(s, "{name}_sum {sum}");
        let _ = writeln!(s, "{name}_count {count}");
    }
}

/// The Ironic poller's series.
fn write_ironic(s: &mut String, p: &crate::state::source::ironic::PollStatus) {
    header(
        s,
        "ironpxe_ironic_polls_total",
        "counter",
        "Polls of the Ironic API by outcome.",
    );
    let _ = writeln!(
        s,
        "ironpxe_ironic_polls_total{{outcome=\"ok\"}} {}",
        p.polls_ok
    );
    let _ = writeln!(
        s,
        "ironpxe_ironic_polls_total{{outcome=\"failed\"}} {}",
        p.polls_failed
    );
    header(
        s,
        "ironpxe_ironic_refresh_total",
        "counter",
        "Ironic refresh work: full walks (start, or a probe that lost track), uuid \
         reconciliations, node and port changes taken in.",
    );
    for (what, n) in [
        ("walk", p.walks),
        ("reconcile", p.reconciles),
        ("change", p.changes),
    ] {
        let _ = writeln!(s, "ironpxe_ironic_refresh_total{{what=\"{what}\"}} {n}");
    }
    header(
        s,
        "ironpxe_ironic_last_good_poll_age_seconds",
        "gauge",
        "Seconds since the last complete poll (-1: none yet).",
    );
    let age = p.last_ok.map_or(-1.0, |t| t.elapsed().as_secs_f64());
    let _ = writeln!(s, "ironpxe_ironic_last_good_poll_age_seconds {age}");
    header(
        s,
        "ironpxe_ironic_poll_failing",
        "gauge",
        "1 while the latest poll failed.",
    );
    let _ = writeln!(
        s,
        "ironpxe_ironic_poll_failing {}",
        u8::from(p.last_error.is_some())
    );
    if let Some(n) = &p.notify {
        write_notifications(s, n, p);
    }
}

/// `[ironic.notifications]`' series.
fn write_notifications(
    s: &mut String,
    n: &crate::state::source::ironic::NotifyStatus,
    p: &crate::state::source::ironic::PollStatus,
) {
    header(
        s,
        "ironpxe_ironic_notifications_total",
        "counter",
        "Ironic notifications taken from the message bus, by what they name (ignored: \
         events of objects ironpxe does not serve).",
    );
    for (kind, v) in [
        ("node", n.node_events),
        ("port", n.port_events),
        ("ignored", n.ignored_events),
    ] {
        let _ = writeln!(
            s,
            "ironpxe_ironic_notifications_total{{kind=\"{kind}\"}} {v}"
        );
    }
    for (name, help, v) in [
        (
            "ironpxe_ironic_notification_errors_total",
            "Notifications that could not be read (skipped; the change probes catch them).",
            n.decode_errors,
        ),
        (
            "ironpxe_ironic_notification_overflows_total",
            "Notifications dropped because the poller was behind (each asks for a resync).",
            n.overflows,
        ),
        (
            "ironpxe_ironic_notification_connects_total",
            "Connections to the message bus that reached consuming (each asks for a resync).",
            n.connects,
        ),
        (
            "ironpxe_ironic_notification_batches_total",
            "Bursts of notifications applied.",
            p.event_batches,
        ),
    ] {
        header(s, name, "counter", help);
        let _ = writeln!(s, "{name} {v}");
    }
    header(
        s,
        "ironpxe_ironic_notification_node_reads_total",
        "counter",
        "Nodes notifications named, by cost: get (one GET /v1/nodes/<uuid>), unchanged \
         (the payloads changed nothing ironpxe reads: no request) or payload (an update's \
         payload laid over the node held: no request).",
    );
    for (outcome, v) in [
        ("get", p.event_reads),
        ("unchanged", p.event_unchanged),
        ("payload", p.event_payloads),
    ] {
        let _ = writeln!(
            s,
            "ironpxe_ironic_notification_node_reads_total{{outcome=\"{outcome}\"}} {v}"
        );
    }
    header(
        s,
        "ironpxe_ironic_notification_stream_up",
        "gauge",
        "1 while consuming Ironic's notifications (probes every probe_secs), 0 while not \
         (probes every interval_secs).",
    );
    let _ = writeln!(
        s,
        "ironpxe_ironic_notification_stream_up {}",
        u8::from(n.up)
    );
}

fn header(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_counts_what_was_recorded() {
        let m = Metrics::default();
        m.request(Protocol::Tftp, Kind::Pxelinux, Outcome::NotFound);
        m.request(Protocol::Tftp, Kind::Pxelinux, Outcome::NotFound);
        m.request(Protocol::Http, Kind::Ipxe, Outcome::Served);
        m.bytes_sent(Protocol::Http, 42);
        m.render_time(Duration::from_micros(70));
        m.tftp_session_started();
        let text = m.render(&StateGauges {
            nodes: 3,
            ..Default::default()
        });
        assert!(text.contains(
            "ironpxe_requests_total{protocol=\"tftp\",kind=\"pxelinux\",outcome=\"not_found\"} 2"
        ));
        assert!(text.contains(
            "ironpxe_requests_total{protocol=\"http\",kind=\"ipxe\",outcome=\"served\"} 1"
        ));
        assert!(text.contains("ironpxe_bytes_sent_total{protocol=\"http\"} 42"));
        assert!(text.contains("ironpxe_render_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("ironpxe_render_seconds_bucket{le=\"0.00005\"} 0"));
        assert!(text.contains("ironpxe_tftp_sessions_active 1"));
        assert!(text.contains("ironpxe_nodes 3"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        }
    }
}
