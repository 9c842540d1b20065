//! `BENCHMARKS.md` from the results: this module computes every number and verdict;
//! `report.md.tera` is the text they are filled into (rendered with tera, no escaping).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::Res;

/// The report's text.
const TEMPLATE: &str = include_str!("report.md.tera");

/// The facts (`key<TAB>value` from benches/run.sh) the template names; a missing one shows
/// as `?`.
const FACTS: &[&str] = &[
    "mode",
    "date",
    "runs",
    "duration",
    "nproc",
    "cpu",
    "kernel",
    "memory",
    "rmem_max",
    "ironpxe",
    "rustc",
    "tftpd_hpa",
    "nginx",
    "wrk",
    "ironpxe_log",
    "unknown_pct",
    "storm_timeout_ms",
    "ldlinux_bytes",
    "bulk_mb",
    "wrk_duration",
    "http_nodes",
    "live_edits",
    "live_gap_ms",
    "live_poll_us",
    "check_max",
    "lookup_clients",
];

#[derive(Args)]
pub struct ReportArgs {
    /// Results, one JSON object per line.
    #[arg(long)]
    results: PathBuf,
    /// Machine and run facts, `key<TAB>value` per line.
    #[arg(long)]
    facts: PathBuf,
    /// The commands run, one per line.
    #[arg(long)]
    commands: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy)]
struct Stat {
    med: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stat(rows: &[&Value], key: &str) -> Option<Stat> {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| r[key].as_f64()).collect();
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        med,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn scaled(s: Option<Stat>, factor: f64) -> Option<Stat> {
    s.map(|s| Stat {
        med: s.med * factor,
        min: s.min * factor,
        max: s.max * factor,
        n: s.n,
    })
}

fn num(x: f64, prec: usize) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if prec == 0 && x.abs() >= 10_000.0 {
        // thin-space thousands separators for readability
        let s = format!("{x:.0}");
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && ch.is_ascii_digit() {
                out.push(' ');
            }
            out.push(ch);
        }
        return out;
    }
    format!("{x:.prec$}")
}

fn cell(s: Option<Stat>, prec: usize) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n == 1 || (s.min == s.max) => num(s.med, prec),
        Some(s) => format!(
            "{} ({}–{})",
            num(s.med, prec),
            num(s.min, prec),
            num(s.max, prec)
        ),
    }
}

/// The server's CPU seconds: utime + stime of the process and of the children it reaped.
/// tftpd-hpa forks a process per transfer and reaps it without accounting (its parent's
/// counters miss the transfers), so it shows as not measured.
fn server_cpu(rows: &[&Value], server: &str) -> String {
    if server == "tftpd-hpa" {
        return "n/a".into();
    }
    cell(stat(rows, "server_cpu_s"), 2)
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.med > 0.0 => Some(a.med / b.med),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

struct Results(Vec<Value>);

impl Results {
    fn rows(&self, bench: &str, filters: &[(&str, Value)]) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|r| r["bench"] == bench && filters.iter().all(|(k, v)| r[*k] == *v))
            .collect()
    }

    fn distinct(&self, bench: &str, key: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for r in self.0.iter().filter(|r| r["bench"] == bench) {
            if !out.contains(&r[key]) {
                out.push(r[key].clone());
            }
        }
        out.sort_by(|a, b| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a.to_string().cmp(&b.to_string()),
        });
        out
    }
}

/// A target's row: the measured text and the verdict.
#[derive(Serialize)]
struct Target {
    measured: String,
    verdict: &'static str,
}

fn target(measured: String, met: Option<bool>) -> Target {
    let verdict = match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    Target { measured, verdict }
}

/// "N=1000: 1.26×; N=5000: 1.15×" and the smallest ratio.
fn min_ratio(rs: &[(String, Option<f64>)]) -> (String, Option<f64>) {
    let vals: Vec<f64> = rs.iter().filter_map(|(_, r)| *r).collect();
    let text = rs
        .iter()
        .map(|(k, r)| format!("{k}: {}", fmt_ratio(*r)))
        .collect::<Vec<_>>()
        .join("; ");
    let min = vals.iter().copied().reduce(f64::min);
    (text, min)
}

/// Everything the template fills in.
#[derive(Serialize)]
struct Report {
    fact: BTreeMap<String, String>,
    quick: bool,
    /// The live section's longest gap between edits (ms).
    live_gap_max: u64,
    other_load: Option<OtherLoad>,
    wsprobe: Option<WsProbe>,
    targets: Targets,
    storm: Vec<StormRow>,
    bulk: Vec<BulkRow>,
    http: Vec<HttpRow>,
    live: Option<LiveRow>,
    scale: Vec<ScaleRow>,
    lookup_cost: Option<LookupCost>,
    commands: Vec<String>,
}

#[derive(Serialize)]
struct OtherLoad {
    median: String,
    max: String,
}

#[derive(Serialize)]
struct WsProbe {
    asked: String,
    negotiated: String,
}

#[derive(Serialize)]
struct Targets {
    storm_dirhandler: Target,
    storm_hpa: Target,
    storm_1000: Target,
    storm_ldlinux: Target,
    storm_null: Target,
    storm_ldlinux_dirhandler: Target,
    bulk_ws8: Target,
    bulk_ws1: Target,
    http: Target,
    live: Target,
    load_100k: Option<Target>,
    rss_100k: Option<Target>,
}

#[derive(Serialize)]
struct StormRow {
    clients: String,
    concurrency: String,
    ldlinux: &'static str,
    server: String,
    cps: String,
    p50: String,
    p99: String,
    failed: String,
    retries: String,
    drops: String,
    rcvbuf_errors: String,
    cpu: String,
    ratio: String,
}

#[derive(Serialize, Default, Clone)]
struct BulkRow {
    blksize: String,
    windowsize: String,
    clients: String,
    /// tftpd-hpa at windowsize > 1: not run (no RFC 7440).
    unsupported: bool,
    server: String,
    per_client: String,
    aggregate: String,
    completed: String,
    retries: String,
    cpu: String,
    ratio: String,
}

#[derive(Serialize)]
struct HttpRow {
    connections: String,
    server: String,
    rps: String,
    p50: String,
    p99: String,
    errors: String,
    ratio: String,
}

#[derive(Serialize)]
struct LiveRow {
    edits: String,
    seen: String,
    timeouts: String,
    p50: String,
    p99: String,
    max: String,
}

#[derive(Serialize)]
struct ScaleRow {
    nodes: String,
    state_mb: String,
    ready: String,
    rss: String,
    check: String,
    check_rss: String,
    first: String,
    warm: String,
    warm_p99: String,
}

#[derive(Serialize)]
struct LookupCost {
    large: u64,
    small: u64,
    ratio: String,
}

pub fn report(a: &ReportArgs) -> Res<()> {
    let results = Results(
        fs::read_to_string(&a.results)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?,
    );
    let mut fact: BTreeMap<String, String> = fs::read_to_string(&a.facts)?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for k in FACTS {
        fact.entry((*k).to_owned()).or_insert_with(|| "?".into());
    }
    let (storm, storm_targets) = storm(&results);
    let [storm_dirhandler, storm_hpa, storm_1000, storm_ldlinux, storm_null, storm_ldlinux_dirhandler] =
        storm_targets;
    let (bulk, bulk_ws8, bulk_ws1) = bulk(&results);
    let (http, http_target) = http(&results);
    let (live, live_target) = live(&results);
    let (scale, lookup_cost, load_100k, rss_100k) = scale(&results, &fact);
    let mut seen = BTreeSet::new();
    let commands = fs::read_to_string(&a.commands)?
        .lines()
        .map(generic_run)
        .filter(|l| seen.insert(l.clone()))
        .collect();
    let report = Report {
        quick: fact["mode"] == "quick",
        live_gap_max: fact["live_gap_ms"]
            .parse::<u64>()
            .map(|g| g + g / 2)
            .unwrap_or(0),
        other_load: other_load(&results),
        wsprobe: results.rows("wsprobe", &[]).first().map(|r| WsProbe {
            asked: r["windowsize"].to_string(),
            negotiated: r["ws_negotiated"].to_string(),
        }),
        targets: Targets {
            storm_dirhandler,
            storm_hpa,
            storm_1000,
            storm_ldlinux,
            storm_null,
            storm_ldlinux_dirhandler,
            bulk_ws8,
            bulk_ws1,
            http: http_target,
            live: live_target,
            load_100k,
            rss_100k,
        },
        storm,
        bulk,
        http,
        live,
        scale,
        lookup_cost,
        commands,
        fact,
    };
    let md = tera::Tera::one_off(TEMPLATE, &tera::Context::from_serialize(&report)?, false)?;
    fs::write(&a.out, md)?;
    eprintln!("report: wrote {}", a.out.display());
    Ok(())
}

/// Cores busy with neither the server nor the client during the TFTP runs: a noise check.
fn other_load(results: &Results) -> Option<OtherLoad> {
    let other: Vec<Value> = results
        .0
        .iter()
        .filter_map(|r| {
            let (m, s, c, w) = (
                r["machine_cpu_s"].as_f64()?,
                r["server_cpu_s"].as_f64()?,
                r["client_cpu_s"].as_f64()?,
                r["wall_s"].as_f64()?,
            );
            (w > 0.5).then(|| json!({ "cores": ((m - s - c) / w).max(0.0) }))
        })
        .collect();
    stat(&other.iter().collect::<Vec<_>>(), "cores").map(|o| OtherLoad {
        median: format!("{:.2}", o.med),
        max: format!("{:.2}", o.max),
    })
}

/// Section 1 and its targets: vs DirHandler, vs tftpd-hpa, 1000 at a time, with ldlinux.c32,
/// vs the null responder (config phase only: it serves no files), DirHandler with ldlinux.c32.
fn storm(results: &Results) -> (Vec<StormRow>, [Target; 6]) {
    let servers = ["ironpxe", "dirhandler", "tftpd-hpa", "null"];
    let server_title = |s: &str| {
        match s {
            "dirhandler" => "async-tftp DirHandler",
            "null" => "null responder (ceiling)",
            other => other,
        }
        .to_string()
    };
    let storm_key = |n: &Value, k: &Value, ld: bool| {
        vec![
            ("clients", n.clone()),
            ("concurrency", k.clone()),
            ("ldlinux", json!(ld)),
        ]
    };
    let mut table = Vec::new();
    let ns = results.distinct("storm", "clients");
    let ks = results.distinct("storm", "concurrency");
    let mut storm_ratio: BTreeMap<(String, u64, u64, bool), Option<f64>> = BTreeMap::new();
    for n in &ns {
        for k in &ks {
            for ld in [false, true] {
                let base = storm_key(n, k, ld);
                let irows = results.rows(
                    "storm",
                    &[&base[..], &[("server", json!("ironpxe"))]].concat(),
                );
                let ips = stat(&irows, "clients_per_s");
                for s in servers {
                    let rows =
                        results.rows("storm", &[&base[..], &[("server", json!(s))]].concat());
                    if rows.is_empty() {
                        continue;
                    }
                    let cps = stat(&rows, "clients_per_s");
                    let r = if s == "ironpxe" {
                        None
                    } else {
                        ratio(ips, cps)
                    };
                    storm_ratio.insert(
                        (
                            s.to_string(),
                            n.as_u64().unwrap_or(0),
                            k.as_u64().unwrap_or(0),
                            ld,
                        ),
                        r,
                    );
                    table.push(StormRow {
                        clients: n.to_string(),
                        concurrency: k.to_string(),
                        ldlinux: if ld { "yes" } else { "no" },
                        server: server_title(s),
                        cps: cell(cps, 0),
                        p50: cell(stat(&rows, "p50_ms"), 1),
                        p99: cell(stat(&rows, "p99_ms"), 1),
                        failed: cell(stat(&rows, "failed"), 0),
                        retries: cell(stat(&rows, "retries"), 0),
                        drops: cell(stat(&rows, "drops_port"), 0),
                        rcvbuf_errors: cell(stat(&rows, "udp_rcvbuf_errors"), 0),
                        cpu: server_cpu(&rows, s),
                        ratio: if s == "ironpxe" {
                            "—".into()
                        } else {
                            fmt_ratio(r)
                        },
                    });
                }
            }
        }
    }
    let big_n: Vec<u64> = {
        let all: Vec<u64> = ns.iter().filter_map(Value::as_u64).collect();
        let big: Vec<u64> = all.iter().copied().filter(|&n| n >= 1000).collect();
        if big.is_empty() {
            all.iter().copied().max().into_iter().collect()
        } else {
            big
        }
    };
    let pick = |server: &str, k: u64, ld: bool| -> Vec<(String, Option<f64>)> {
        big_n
            .iter()
            .filter_map(|&n| {
                storm_ratio
                    .get(&(server.to_string(), n, k, ld))
                    .map(|r| (format!("N={n}"), *r))
            })
            .collect()
    };
    let (text, min) = min_ratio(&pick("dirhandler", 200, false));
    let dirhandler = target(text, min.map(|m| m >= 0.9));
    let (text, min) = min_ratio(&pick("tftpd-hpa", 200, false));
    let hpa = target(text, min.map(|m| m >= 9.0));
    let at_1000 = {
        let rows: Vec<&Value> = results.rows(
            "storm",
            &[
                ("server", json!("ironpxe")),
                ("concurrency", json!(1000)),
                ("ldlinux", json!(false)),
            ],
        );
        let failed = rows.iter().filter_map(|r| r["failed"].as_u64()).max();
        let p99 = rows
            .iter()
            .filter_map(|r| r["p99_ms"].as_f64())
            .reduce(f64::max);
        let drops = rows.iter().filter_map(|r| r["drops_port"].as_i64()).max();
        match (failed, p99, drops) {
            (Some(f), Some(p), Some(d)) => target(
                format!("worst run: {f} failed, p99 {p:.0} ms, {d} drops"),
                Some(f == 0 && p < 1000.0 && d == 0),
            ),
            _ => target("—".into(), None),
        }
    };
    let mut ld = pick("tftpd-hpa", 200, true);
    ld.extend(
        pick("tftpd-hpa", 1000, true)
            .into_iter()
            .map(|(k, r)| (format!("{k}, 1000 at a time"), r)),
    );
    let (text, min) = min_ratio(&ld);
    let ldlinux = target(text, min.map(|m| m >= 2.5));
    let every_k = |server: &str, ld: bool| -> Vec<(String, Option<f64>)> {
        ks.iter()
            .filter_map(Value::as_u64)
            .flat_map(|k| {
                pick(server, k, ld)
                    .into_iter()
                    .map(move |(n, r)| (format!("{n}, {k} at a time"), r))
            })
            .collect()
    };
    let (text, min) = min_ratio(&every_k("null", false));
    let null = target(text, min.map(|m| m >= 0.75));
    let (text, min) = min_ratio(&every_k("dirhandler", true));
    let ld_dirhandler = target(text, min.map(|m| m >= 1.0));
    (
        table,
        [dirhandler, hpa, at_1000, ldlinux, null, ld_dirhandler],
    )
}

/// Section 2 and its targets: windowsize ≥ 8 and windowsize 1, vs tftpd-hpa.
fn bulk(results: &Results) -> (Vec<BulkRow>, Target, Target) {
    let mut table = Vec::new();
    let mut ws1: Vec<(String, Option<f64>)> = Vec::new();
    let mut ws8: Vec<(String, Option<f64>)> = Vec::new();
    for bs in results.distinct("bulk", "blksize") {
        for ws in results.distinct("bulk", "windowsize") {
            for c in results.distinct("bulk", "clients") {
                let base = [
                    ("blksize", bs.clone()),
                    ("windowsize", ws.clone()),
                    ("clients", c.clone()),
                ];
                let peer = results.rows(
                    "bulk",
                    &[
                        ("blksize", bs.clone()),
                        ("windowsize", json!(1)),
                        ("clients", c.clone()),
                        ("server", json!("tftpd-hpa")),
                    ],
                );
                let peer_agg = stat(&peer, "aggregate_mbps");
                let ideal =
                    results.rows("bulk", &[&base[..], &[("server", json!("ideal"))]].concat());
                let ideal_ratio = ratio(stat(&ideal, "aggregate_mbps"), peer_agg);
                let cell_key = BulkRow {
                    blksize: bs.to_string(),
                    windowsize: ws.to_string(),
                    clients: c.to_string(),
                    ..BulkRow::default()
                };
                for s in ["ironpxe", "tftpd-hpa", "ideal"] {
                    let rows = results.rows("bulk", &[&base[..], &[("server", json!(s))]].concat());
                    if rows.is_empty() {
                        if s == "tftpd-hpa" && ws.as_u64() != Some(1) && !peer.is_empty() {
                            table.push(BulkRow {
                                unsupported: true,
                                ..cell_key.clone()
                            });
                        }
                        continue;
                    }
                    let agg = stat(&rows, "aggregate_mbps");
                    let r = if s == "tftpd-hpa" {
                        None
                    } else {
                        ratio(agg, peer_agg)
                    };
                    if s == "ironpxe" {
                        let mut label = format!("bs {bs}, ws {ws}, {c} client(s)");
                        // The reference's ratio where ironpxe misses this cell's target.
                        let target = if ws.as_u64() == Some(1) { 1.0 } else { 3.0 };
                        if let Some(i) = ideal_ratio.filter(|_| r.is_some_and(|r| r < target)) {
                            label.push_str(&format!(" (ideal-tftpd {i:.2}×)"));
                        }
                        if ws.as_u64() == Some(1) {
                            ws1.push((label, r));
                        } else if ws.as_u64().unwrap_or(0) >= 8 {
                            ws8.push((label, r));
                        }
                    }
                    let done = stat(&rows, "completed").map(|s| s.min).unwrap_or(0.0);
                    table.push(BulkRow {
                        server: if s == "ideal" {
                            "ideal-tftpd (reference)".into()
                        } else {
                            s.into()
                        },
                        per_client: cell(stat(&rows, "per_client_mbps_median"), 1),
                        aggregate: cell(agg, 1),
                        completed: done.to_string(),
                        retries: cell(stat(&rows, "retries"), 0),
                        cpu: server_cpu(&rows, s),
                        ratio: if s == "tftpd-hpa" {
                            "—".into()
                        } else {
                            fmt_ratio(r)
                        },
                        ..cell_key.clone()
                    });
                }
            }
        }
    }
    let (text, min) = min_ratio(&ws8);
    let ws8 = target(
        format!("lowest {}; {text}", fmt_ratio(min)),
        min.map(|m| m >= 3.0),
    );
    let (text, min) = min_ratio(&ws1);
    let ws1 = target(
        format!("lowest {}; {text}", fmt_ratio(min)),
        min.map(|m| m >= 1.0),
    );
    (table, ws8, ws1)
}

/// Section 3 and its target: ≥ 0.8× nginx.
fn http(results: &Results) -> (Vec<HttpRow>, Target) {
    let mut table = Vec::new();
    let mut http_ratios = Vec::new();
    for c in results.distinct("http", "connections") {
        let peer = stat(
            &results.rows(
                "http",
                &[("connections", c.clone()), ("server", json!("nginx"))],
            ),
            "rps",
        );
        for s in ["ironpxe", "nginx"] {
            let rows = results.rows("http", &[("connections", c.clone()), ("server", json!(s))]);
            if rows.is_empty() {
                continue;
            }
            let rps = stat(&rows, "rps");
            let r = (s == "ironpxe").then(|| ratio(rps, peer)).flatten();
            if s == "ironpxe" {
                http_ratios.push((format!("{c} conn"), r));
            }
            let ms = |k: &str| scaled(stat(&rows, k), 1e-3);
            table.push(HttpRow {
                connections: c.to_string(),
                server: s.into(),
                rps: cell(rps, 0),
                p50: cell(ms("p50_us"), 2),
                p99: cell(ms("p99_us"), 2),
                errors: cell(stat(&rows, "errors"), 0),
                ratio: if s == "ironpxe" {
                    fmt_ratio(r)
                } else {
                    "—".into()
                },
            });
        }
    }
    let (text, min) = min_ratio(&http_ratios);
    (table, target(text, min.map(|m| m >= 0.8)))
}

/// Section 4 and its target: p99 < 100 ms, no timeouts.
fn live(results: &Results) -> (Option<LiveRow>, Target) {
    let lrows = results.rows("live", &[]);
    let row = (!lrows.is_empty()).then(|| LiveRow {
        edits: cell(stat(&lrows, "edits"), 0),
        seen: cell(stat(&lrows, "seen"), 0),
        timeouts: cell(stat(&lrows, "timeouts"), 0),
        p50: cell(stat(&lrows, "p50_ms"), 1),
        p99: cell(stat(&lrows, "p99_ms"), 1),
        max: cell(stat(&lrows, "max_ms"), 1),
    });
    let p99 = stat(&lrows, "p99_ms");
    let t = target(
        p99.map_or("—".into(), |s| {
            format!(
                "p99 {} ms (median of runs; worst {:.1})",
                num(s.med, 1),
                s.max
            )
        }),
        p99.map(|s| s.med < 100.0 && lrows.iter().all(|r| r["timeouts"] == 0)),
    );
    (row, t)
}

/// Section 5, the lookup cost line, and the 100k-node targets (when any size was measured).
fn scale(
    results: &Results,
    fact: &BTreeMap<String, String>,
) -> (
    Vec<ScaleRow>,
    Option<LookupCost>,
    Option<Target>,
    Option<Target>,
) {
    let mb = |s: Option<Stat>| scaled(s, 1.0 / 1024.0);
    let secs = |s: Option<Stat>| scaled(s, 1e-3);
    let mut table = Vec::new();
    let mut warm: BTreeMap<u64, Option<Stat>> = BTreeMap::new();
    let mut sizes: Vec<Value> = Vec::new();
    for b in ["ready", "check", "lookup"] {
        for n in results.distinct(b, "nodes") {
            if !sizes.contains(&n) {
                sizes.push(n);
            }
        }
    }
    sizes.sort_by_key(|n| n.as_u64().unwrap_or(0));
    for n in sizes {
        let ready = results.rows("ready", &[("nodes", n.clone())]);
        let check = results.rows("check", &[("nodes", n.clone())]);
        let first = results.rows("lookup", &[("nodes", n.clone()), ("run", json!(1))]);
        let warm_rows: Vec<&Value> = results
            .rows("lookup", &[("nodes", n.clone())])
            .into_iter()
            .filter(|r| r["run"].as_u64() != Some(1))
            .collect();
        let w = stat(&warm_rows, "requests_per_s");
        warm.insert(n.as_u64().unwrap_or(0), w);
        table.push(ScaleRow {
            nodes: n.to_string(),
            state_mb: fact
                .get(&format!("state_mb_{n}"))
                .cloned()
                .unwrap_or_else(|| "—".into()),
            ready: cell(secs(stat(&ready, "ready_ms")), 2),
            rss: cell(mb(stat(&ready, "vmhwm_kb")), 0),
            check: cell(stat(&check, "wall_s"), 2),
            check_rss: cell(mb(stat(&check, "maxrss_kb")), 0),
            first: cell(stat(&first, "requests_per_s"), 0),
            warm: cell(w, 0),
            warm_p99: cell(stat(&warm_rows, "p99_ms"), 1),
        });
    }
    let sizes: Vec<u64> = warm.keys().copied().collect();
    let (small, large) = (sizes.first().copied(), sizes.last().copied());
    let lookup_cost = match (small, large) {
        (Some(s), Some(l)) if s != l => Some(LookupCost {
            large: l,
            small: s,
            ratio: fmt_ratio(ratio(warm[&l], warm[&s])),
        }),
        _ => None,
    };
    let (mut load, mut rss) = (None, None);
    if let Some(l) = large {
        let ready = results.rows("ready", &[("nodes", json!(l))]);
        let t = secs(stat(&ready, "ready_ms"));
        let r = mb(stat(&ready, "vmhwm_kb"));
        let note = if l < 100_000 {
            format!(" (QUICK run: measured at {l} nodes, not 100k)")
        } else {
            String::new()
        };
        load = Some(target(
            t.map_or("—".into(), |s| {
                format!("{} s at {l} nodes{note}", cell(Some(s), 2))
            }),
            t.map(|s| s.med < 3.0 && l >= 100_000),
        ));
        rss = Some(target(
            r.map_or("—".into(), |s| {
                format!("{} MB at {l} nodes{note}", cell(Some(s), 0))
            }),
            r.map(|s| s.med < 400.0 && l >= 100_000),
        ));
    }
    (table, lookup_cost, load, rss)
}

/// `… --run 3 --pid 4711 …` → `… --run N --pid <pid> …`, so repeated runs print once.
fn generic_run(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split(' ');
    while let Some(w) = words.next() {
        out.push(w.to_string());
        let placeholder = match w {
            "--run" => "N",
            "--pid" | "--server-pid" => "<pid>",
            _ => continue,
        };
        if words.next().is_some() {
            out.push(placeholder.into());
        }
    }
    out.join(" ")
}
