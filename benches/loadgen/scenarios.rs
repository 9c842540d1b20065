//! The client load of each measurement, on the one TFTP and HTTP clients (`tests/common`):
//! a boot storm of PXELINUX clients, bulk transfers, live-update polling, and the readiness
//! probe.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use ironpxe::model::addr::{pxelinux_lookup_sequence, IbHwAddr, Mac, PxeHwAddr, SystemUuid};
use serde_json::{json, Value};

use crate::measure::{merge, percentile, round, Counters, Label};
use crate::nodes::{eth_mac_of, guid_of, port_of, splitmix, uuid_bytes, uuid_string, SEED};
use crate::tftp::{self, ClientOpts, Failure, Sink};
use crate::{err, Res};

// ---- storm ----

#[derive(Args)]
pub struct StormArgs {
    #[command(flatten)]
    label: Label,
    /// TFTP server address.
    #[arg(long)]
    server: SocketAddr,
    /// Virtual clients in total.
    #[arg(long)]
    clients: usize,
    /// Clients booting at the same time.
    #[arg(long)]
    concurrency: usize,
    /// Unknown machines, in percent (they walk every name down to `default`).
    #[arg(long, default_value_t = 2.0)]
    unknown_pct: f64,
    /// Also fetch ldlinux.c32 after the config.
    #[arg(long)]
    ldlinux: bool,
    /// Compare ldlinux.c32 with this file.
    #[arg(long)]
    ldlinux_file: Option<PathBuf>,
    /// Retransmit timeout (PXELINUX: about one second).
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Retransmissions of one packet before the client gives up on the server.
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    #[arg(long, default_value_t = 1408)]
    blksize: u16,
    /// The whole storm is cut off after this long (unfinished clients count as failed).
    #[arg(long, default_value_t = 120)]
    deadline_s: u64,
    /// Client threads (tokio workers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

struct ClientSpec {
    src: IpAddr,
    names: Vec<String>,
    known: bool,
}

fn client_src(c: usize, net: u8) -> IpAddr {
    // 127.<net>.x.y with y in 1..=250: many source addresses, so ports never alias sessions.
    IpAddr::V4(Ipv4Addr::new(
        127,
        net.wrapping_add((c / 62_500) as u8),
        ((c / 250) % 250) as u8,
        (c % 250 + 1) as u8,
    ))
}

fn client_spec(c: usize, a: &StormArgs) -> ClientSpec {
    let unknown = (splitmix(SEED ^ 0x5eed ^ c as u64) % 10_000) as f64 / 100.0 < a.unknown_pct;
    let hw = if unknown {
        let v = c as u32;
        if c % 2 == 0 {
            PxeHwAddr::Infiniband(IbHwAddr::Mac(guid_of(v, false).ib_mac()))
        } else {
            PxeHwAddr::Ethernet(eth_mac_of(v, false))
        }
    } else {
        let nodes = a.label.nodes.max(1);
        port_of(c % nodes, (c / nodes) % 2).pxe_hw()
    };
    let smbios = SystemUuid(uuid_bytes(3, c as u64));
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + c as u32);
    let names = pxelinux_lookup_sequence(Some(smbios), hw, Some(ip))
        .iter()
        .map(|n| format!("pxelinux.cfg/{n}"))
        .collect();
    ClientSpec {
        src: client_src(c, 10),
        names,
        known: !unknown,
    }
}

#[derive(Default)]
struct ClientResult {
    ok: bool,
    misrouted: bool,
    ms: f64,
    retries: u32,
    requests: u32,
    not_found: u32,
    error: Option<String>,
}

struct StormCfg {
    server: SocketAddr,
    opts: ClientOpts,
    ldlinux: bool,
    ldlinux_data: Option<Arc<[u8]>>,
}

/// One transfer on a fresh socket (a fresh source port, as PXELINUX does) bound to `src`.
async fn fetch_from(cfg: &StormCfg, src: IpAddr, name: &str, sink: Sink) -> tftp::Fetch {
    match tokio::net::UdpSocket::bind(SocketAddr::new(src, 0)).await {
        Ok(sock) => tftp::fetch_async(&sock, cfg.server, name, &cfg.opts, sink).await,
        Err(e) => tftp::Fetch {
            result: Err(Failure::Io(e.to_string())),
            stats: tftp::Stats::default(),
        },
    }
}

async fn run_client(spec: ClientSpec, cfg: Arc<StormCfg>) -> ClientResult {
    let start = Instant::now();
    let mut r = ClientResult::default();
    let last = spec.names.len() - 1;
    let mut hit = None;
    for (k, name) in spec.names.iter().enumerate() {
        r.requests += 1;
        let t = fetch_from(&cfg, spec.src, name, Sink::Keep).await;
        r.retries += t.stats.retransmits;
        match t.result {
            Ok(body) if !body.is_empty() => {
                hit = Some(k);
                break;
            }
            Err(Failure::Error { code: 1, .. }) => r.not_found += 1,
            other => {
                let why = other
                    .err()
                    .map_or("an empty file".into(), |f| f.to_string());
                r.error = Some(format!("{name}: {why}"));
                r.ms = start.elapsed().as_secs_f64() * 1e3;
                return r;
            }
        }
    }
    let Some(k) = hit else {
        r.error = Some("no config, not even default".into());
        r.ms = start.elapsed().as_secs_f64() * 1e3;
        return r;
    };
    r.misrouted = spec.known && k == last;
    if cfg.ldlinux {
        r.requests += 1;
        let sink = match &cfg.ldlinux_data {
            Some(d) => Sink::Verify(d.clone()),
            None => Sink::Count,
        };
        let t = fetch_from(&cfg, spec.src, "ldlinux.c32", sink).await;
        r.retries += t.stats.retransmits;
        if let Err(f) = t.result {
            r.error = Some(format!("ldlinux.c32: {f}"));
        }
    }
    r.ok = r.error.is_none();
    r.ms = start.elapsed().as_secs_f64() * 1e3;
    r
}

pub fn storm(a: &StormArgs) -> Res<Value> {
    let cfg = Arc::new(StormCfg {
        server: a.server,
        opts: ClientOpts {
            tsize: true,
            blksize: Some(a.blksize),
            rto: Duration::from_millis(a.timeout_ms),
            max_timeouts: a.max_retries,
            deadline: Duration::from_secs(a.deadline_s),
            ..ClientOpts::default()
        },
        ldlinux: a.ldlinux,
        ldlinux_data: match &a.ldlinux_file {
            Some(p) => Some(fs::read(p)?.into()),
            None => None,
        },
    });
    let specs: Vec<ClientSpec> = (0..a.clients).map(|c| client_spec(c, a)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    let before = Counters::take(a.server.port(), a.label.server_pid.as_deref());
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.deadline_s);
    let results: Vec<ClientResult> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
        let handles: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let (sem, cfg) = (sem.clone(), cfg.clone());
                tokio::spawn(async move {
                    let work = async move {
                        let _permit = sem.acquire_owned().await.ok()?;
                        Some(run_client(spec, cfg).await)
                    };
                    match tokio::time::timeout_at(deadline, work).await {
                        Ok(Some(r)) => r,
                        _ => ClientResult {
                            error: Some("cut off by the storm's deadline".into()),
                            ..ClientResult::default()
                        },
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap_or_default());
        }
        out
    });
    let wall = started.elapsed().as_secs_f64();
    // Let late replies and retransmissions settle before reading the drop counters.
    std::thread::sleep(Duration::from_millis(100));
    let after = Counters::take(a.server.port(), a.label.server_pid.as_deref());
    drop(rt);

    let mut ms: Vec<f64> = results.iter().filter(|r| r.ok).map(|r| r.ms).collect();
    ms.sort_by(f64::total_cmp);
    let completed = ms.len();
    let failed = results.len() - completed;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for e in results.iter().filter_map(|r| r.error.as_deref()) {
        let key = e.split(": ").last().unwrap_or(e).chars().take(60).collect();
        *errors.entry(key).or_default() += 1;
    }
    let requests: u64 = results.iter().map(|r| u64::from(r.requests)).sum();
    let v = json!({
        "clients": a.clients,
        "concurrency": a.concurrency,
        "ldlinux": a.ldlinux,
        "completed": completed,
        "failed": failed,
        "misrouted": results.iter().filter(|r| r.misrouted).count(),
        "retries": results.iter().map(|r| u64::from(r.retries)).sum::<u64>(),
        "requests": requests,
        "not_found": results.iter().map(|r| u64::from(r.not_found)).sum::<u64>(),
        "wall_s": round(wall, 3),
        "clients_per_s": round(completed as f64 / wall, 1),
        "requests_per_s": round(requests as f64 / wall, 1),
        "p50_ms": round(percentile(&ms, 0.50), 2),
        "p99_ms": round(percentile(&ms, 0.99), 2),
        "max_ms": round(ms.last().copied().unwrap_or(f64::NAN), 2),
        "errors": errors,
    });
    let v = merge(merge(a.label.json("storm"), v), before.delta(&after));
    eprintln!(
        "storm {} N={} K={} ld={}: {:.0} clients/s, p99 {:.1} ms, failed {}, retries {}, drops {}",
        a.label.server_name,
        a.clients,
        a.concurrency,
        a.ldlinux,
        completed as f64 / wall,
        percentile(&ms, 0.99),
        failed,
        v["retries"],
        v["drops_port"]
    );
    Ok(v)
}

// ---- bulk ----

#[derive(Args)]
pub struct BulkArgs {
    #[command(flatten)]
    label: Label,
    #[arg(long)]
    server: SocketAddr,
    /// File name to fetch.
    #[arg(long)]
    file: String,
    /// The same file on disk: every block is compared with it.
    #[arg(long)]
    verify: Option<PathBuf>,
    #[arg(long)]
    clients: usize,
    #[arg(long)]
    blksize: u16,
    /// RFC 7440 windowsize to ask for (1: plain lock-step, option not sent).
    #[arg(long, default_value_t = 1)]
    windowsize: u16,
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// Every transfer is cut off after this long (and counts as failed).
    #[arg(long, default_value_t = 120)]
    deadline_s: u64,
    /// Measure over a fixed window instead: every client stops after this long, finished or
    /// not (not a failure); MB/s is what arrived in the window.
    #[arg(long)]
    duration_s: Option<f64>,
}

pub fn bulk(a: &BulkArgs) -> Res<Value> {
    let want: Option<Arc<[u8]>> = match &a.verify {
        Some(p) => Some(fs::read(p)?.into()),
        None => None,
    };
    let window = a.duration_s.map(Duration::from_secs_f64);
    let opts = ClientOpts {
        tsize: true,
        blksize: Some(a.blksize),
        windowsize: (a.windowsize > 1).then_some(a.windowsize),
        rto: Duration::from_millis(a.timeout_ms),
        max_timeouts: a.max_retries,
        // The measuring window, or the bound on a whole transfer; either way the server is
        // told, so it does not keep retransmitting into the next measurement.
        deadline: window.unwrap_or(Duration::from_secs(a.deadline_s)),
        abort_at_deadline: true,
        ..ClientOpts::default()
    };
    let before = Counters::take(a.server.port(), a.label.server_pid.as_deref());
    let barrier = Arc::new(Barrier::new(a.clients));
    let handles: Vec<_> = (0..a.clients)
        .map(|c| {
            let (barrier, want, file) = (barrier.clone(), want.clone(), a.file.clone());
            let (server, opts) = (a.server, opts.clone());
            std::thread::spawn(move || {
                let sink = match want {
                    Some(w) => Sink::Verify(w),
                    None => Sink::Count,
                };
                barrier.wait();
                let start = Instant::now();
                // A receive buffer for a whole window of the largest blocks (32 × 8 KiB), so
                // the client itself never drops what a windowed server sends.
                let t = tftp::socket_with_rcvbuf(SocketAddr::new(client_src(c, 20), 0), 4 << 20)
                    .map(|sock| tftp::fetch(&sock, server, &file, &opts, sink, &mut |_| {}));
                (start, Instant::now(), t)
            })
        })
        .collect();
    let mut rows = Vec::new();
    for h in handles {
        rows.push(h.join().map_err(|_| "client thread panicked")?);
    }
    let after = Counters::take(a.server.port(), a.label.server_pid.as_deref());
    let first = rows.iter().map(|r| r.0).min().ok_or("no clients")?;
    let last = rows.iter().map(|r| r.1).max().ok_or("no clients")?;
    let (mut bytes, mut retries, mut gaps) = (0u64, 0u64, 0u64);
    let (mut completed, mut cut) = (0usize, 0usize);
    let mut per_client = Vec::new();
    let mut ws_neg = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for (s, e, t) in &rows {
        match t {
            Ok(t) => {
                bytes += t.stats.bytes;
                retries += u64::from(t.stats.retransmits);
                gaps += u64::from(t.stats.gaps);
                ws_neg.push(t.stats.windowsize);
                per_client.push(t.stats.bytes as f64 / 1e6 / (*e - *s).as_secs_f64());
                match &t.result {
                    Ok(_) => completed += 1,
                    Err(Failure::Cut) if window.is_some() => cut += 1,
                    Err(f) => *errors.entry(f.to_string()).or_default() += 1,
                }
            }
            Err(e) => *errors.entry(e.to_string()).or_default() += 1,
        }
    }
    per_client.sort_by(f64::total_cmp);
    let wall = (last - first).as_secs_f64();
    let v = json!({
        "clients": a.clients,
        "blksize": a.blksize,
        "windowsize": a.windowsize,
        "ws_negotiated": ws_neg.iter().copied().min().unwrap_or(0),
        "completed": completed,
        "cut_at_window": cut,
        "failed": a.clients - completed - cut,
        "duration_s": a.duration_s,
        "bytes": bytes,
        "wall_s": round(wall, 3),
        "aggregate_mbps": round(bytes as f64 / 1e6 / wall, 2),
        "per_client_mbps_median": round(percentile(&per_client, 0.5), 2),
        "per_client_mbps_min": round(per_client.first().copied().unwrap_or(0.0), 2),
        "retries": retries,
        "gaps": gaps,
        "errors": errors,
    });
    let v = merge(merge(a.label.json("bulk"), v), before.delta(&after));
    eprintln!(
        "bulk {} C={} bs={} ws={} (got {}): {:.1} MB/s aggregate, {}/{} complete, retries {}",
        a.label.server_name,
        a.clients,
        a.blksize,
        a.windowsize,
        v["ws_negotiated"],
        bytes as f64 / 1e6 / wall,
        completed,
        a.clients,
        retries
    );
    Ok(v)
}

// ---- live ----

#[derive(Args)]
pub struct LiveArgs {
    #[command(flatten)]
    label: Label,
    /// ironpxe's HTTP address.
    #[arg(long)]
    http: SocketAddr,
    /// ironpxe's state directory: `zz-live.json` is written there and removed at the end.
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 200)]
    edits: u32,
    /// Pause between edits, so each is its own change.
    #[arg(long, default_value_t = 60)]
    gap_ms: u64,
    /// Pause between polls (the poll loop is otherwise tight).
    #[arg(long, default_value_t = 200)]
    poll_us: u64,
    /// An edit not seen within this long counts as a timeout.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

const LIVE_MAC: Mac = Mac([0x52, 0x56, 0x00, 0x00, 0x00, 0x01]);

fn live_doc(edit: u32) -> Value {
    let uuid = uuid_string(uuid_bytes(4, 0));
    json!({
        "uuid": uuid,
        "name": "bench-live",
        "provision_state": "wait call-back",
        "target_provision_state": "active",
        "boot_interface": "ipxe",
        "deploy_interface": "direct",
        "driver_info": {
            "deploy_kernel": "http://127.0.0.1:8088/ipa.kernel",
            "deploy_ramdisk": "http://127.0.0.1:8088/ipa.initramfs",
            "kernel_append_params": format!("nofb vga=normal ironpxe.live={edit}")
        },
        "instance_info": {},
        "properties": {},
        "driver_internal_info": {},
        "extra": {},
        "ports": [{
            "uuid": uuid_string(uuid_bytes(5, 0)),
            "address": LIVE_MAC.to_string(),
            "node_uuid": uuid,
            "pxe_enabled": true,
            "extra": {}
        }]
    })
}

pub fn live(a: &LiveArgs) -> Res<Value> {
    let file = a.state_dir.join("zz-live.json");
    let tmp = a.state_dir.join(".zz-live.json.tmp");
    let path = format!("/ipxe/{LIVE_MAC}");
    let mut http = crate::http_client(a.http);
    let timeout = Duration::from_millis(a.timeout_ms);
    let mut wait_for = |edit: u32, t0: Instant, limit: Duration| -> Res<Option<f64>> {
        let marker = format!("ironpxe.live={edit} ");
        let mut polls = 0u64;
        loop {
            let r = http.get(&path)?;
            polls += 1;
            if r.status == 200 && String::from_utf8_lossy(&r.body).contains(&marker) {
                return Ok(Some(t0.elapsed().as_secs_f64() * 1e3));
            }
            if t0.elapsed() > limit || polls > 10_000_000 {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(a.poll_us));
        }
    };
    fs::write(&tmp, serde_json::to_vec_pretty(&live_doc(0))?)?;
    fs::rename(&tmp, &file)?;
    if wait_for(0, Instant::now(), Duration::from_secs(30))?.is_none() {
        return err("the live node never appeared");
    }
    let mut lat = Vec::new();
    let mut timeouts = 0u32;
    let started = Instant::now();
    for edit in 1..=a.edits {
        let jitter = splitmix(u64::from(edit)) % (a.gap_ms / 2 + 1);
        std::thread::sleep(Duration::from_millis(a.gap_ms + jitter));
        fs::write(&tmp, serde_json::to_vec_pretty(&live_doc(edit))?)?;
        let t0 = Instant::now();
        fs::rename(&tmp, &file)?;
        match wait_for(edit, t0, timeout)? {
            Some(ms) => lat.push(ms),
            None => timeouts += 1,
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = fs::remove_file(&file);
    lat.sort_by(f64::total_cmp);
    let v = json!({
        "edits": a.edits,
        "seen": lat.len(),
        "timeouts": timeouts,
        "min_ms": round(lat.first().copied().unwrap_or(f64::NAN), 2),
        "p50_ms": round(percentile(&lat, 0.50), 2),
        "p99_ms": round(percentile(&lat, 0.99), 2),
        "max_ms": round(lat.last().copied().unwrap_or(f64::NAN), 2),
        "wall_s": round(wall, 2),
    });
    eprintln!(
        "live: {} edits, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} timeouts",
        a.edits,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        timeouts
    );
    Ok(merge(a.label.json("live"), v))
}

#[derive(Args)]
pub struct ProbeArgs {
    #[arg(long)]
    server: SocketAddr,
    #[arg(long)]
    file: String,
    /// Keep trying for this long.
    #[arg(long, default_value_t = 10)]
    wait_s: u64,
}

pub fn probe(a: &ProbeArgs) -> Res<()> {
    let limit = Instant::now() + Duration::from_secs(a.wait_s);
    let opts = ClientOpts {
        tsize: true,
        blksize: Some(1408),
        rto: Duration::from_millis(200),
        max_timeouts: 2,
        deadline: Duration::from_secs(5),
        abort_at_deadline: true,
        ..ClientOpts::default()
    };
    loop {
        let sock =
            tftp::socket_with_rcvbuf(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0), 4 << 20)?;
        let t = tftp::fetch(&sock, a.server, &a.file, &opts, Sink::Count, &mut |_| {});
        match t.result {
            Ok(_) => {
                eprintln!("probe {}: {} bytes of {}", a.server, t.stats.bytes, a.file);
                return Ok(());
            }
            Err(f) if Instant::now() > limit => {
                return err(format!("probe {} {}: {f}", a.server, a.file));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
