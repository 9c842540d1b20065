//! What a measurement records besides its own numbers: kernel counters (drops at the server's
//! socket, UDP errors), CPU time of the server, the client and the machine, a server's time
//! to ready and its peak RSS, and the labels every result line carries.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{json, Value};

use crate::{err, Res};

// ---- kernel counters ----

/// Sum of the `drops` column of /proc/net/udp for sockets bound to `port`.
fn udp_port_drops(port: u16) -> u64 {
    let Ok(text) = fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// The `Udp:` counters of /proc/net/snmp.
fn udp_snmp() -> BTreeMap<String, u64> {
    let text = fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let mut m = BTreeMap::new();
    if let [names, values] = rows[..] {
        for (k, v) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            m.insert(k.to_owned(), v.parse().unwrap_or(0));
        }
    }
    m
}

/// utime + stime (+ reaped children's) of a process, in seconds (USER_HZ = 100).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14-17 of stat(5), counted from the state field (3).
    let ticks: u64 = f
        .get(11..15)?
        .iter()
        .filter_map(|s| s.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / 100.0)
}

fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .ok()
    })
}

/// Busy CPU time of the whole machine (all CPUs), in seconds: `/proc/stat` user + nice +
/// system + irq + softirq + steal.
fn machine_cpu_seconds() -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy as f64 / 100.0)
}

pub struct Counters {
    machine_cpu: Option<f64>,
    port_drops: u64,
    snmp: BTreeMap<String, u64>,
    server_cpu: Option<f64>,
    self_cpu: Option<f64>,
}

impl Counters {
    pub fn take(port: u16, server_pid: Option<&str>) -> Counters {
        Counters {
            machine_cpu: machine_cpu_seconds(),
            port_drops: udp_port_drops(port),
            snmp: udp_snmp(),
            server_cpu: server_pid.and_then(cpu_seconds),
            self_cpu: cpu_seconds("self"),
        }
    }

    pub fn delta(&self, later: &Counters) -> Value {
        let d = |k: &str| {
            later.snmp.get(k).copied().unwrap_or(0) as i64
                - self.snmp.get(k).copied().unwrap_or(0) as i64
        };
        let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => json!(((b - a) * 100.0).round() / 100.0),
            _ => Value::Null,
        };
        json!({
            "drops_port": later.port_drops as i64 - self.port_drops as i64,
            "udp_rcvbuf_errors": d("RcvbufErrors"),
            "udp_in_errors": d("InErrors"),
            "server_cpu_s": cpu(self.server_cpu, later.server_cpu),
            "client_cpu_s": cpu(self.self_cpu, later.self_cpu),
            // The whole machine (server, client and anything else running): a noise check.
            "machine_cpu_s": cpu(self.machine_cpu, later.machine_cpu),
        })
    }
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Options every measurement shares: what to label the result with.
#[derive(Args, Clone)]
pub struct Label {
    /// Server name in the results (ironpxe, tftpd-hpa, dirhandler, nginx).
    #[arg(long, default_value = "ironpxe")]
    pub server_name: String,
    /// Run number, recorded in the result.
    #[arg(long, default_value_t = 1)]
    pub run: u32,
    /// Benchmark name in the result (not `--bench`: cargo passes that to every bench).
    #[arg(long)]
    pub bench_name: Option<String>,
    /// The server's PID: its CPU time is reported.
    #[arg(long)]
    pub server_pid: Option<String>,
    /// Nodes in the server's state (`storm`: client i boots node i mod nodes).
    #[arg(long, default_value_t = 0)]
    pub nodes: usize,
}

impl Label {
    pub fn json(&self, default_bench: &str) -> Value {
        json!({
            "bench": self.bench_name.clone().unwrap_or_else(|| default_bench.into()),
            "server": self.server_name,
            "run": self.run,
            "nodes": self.nodes,
        })
    }
}

// ---- wait-ready ----

#[derive(Args)]
pub struct WaitReadyArgs {
    #[command(flatten)]
    label: Label,
    /// The process's log (stderr) file.
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    pid: String,
    /// File holding the start time as bash's $EPOCHREALTIME, written just before `exec`.
    #[arg(long)]
    start_file: PathBuf,
    #[arg(long, default_value = "ironpxe serving")]
    pattern: String,
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

pub fn wait_ready(a: &WaitReadyArgs) -> Res<Value> {
    let limit = Instant::now() + Duration::from_secs(a.timeout_s);
    let mut offset = 0u64;
    let mut tail = String::new();
    let ready = loop {
        if let Ok(mut f) = fs::File::open(&a.log) {
            f.seek(io::SeekFrom::Start(offset))?;
            let mut chunk = String::new();
            offset += f.read_to_string(&mut chunk)? as u64;
            tail.push_str(&chunk);
            if tail.contains(&a.pattern) {
                break SystemTime::now();
            }
            if let Some(nl) = tail.rfind('\n') {
                tail.drain(..=nl);
            }
        }
        if !Path::new(&format!("/proc/{}", a.pid)).exists() {
            return err(format!("process {} exited before `{}`", a.pid, a.pattern));
        }
        if Instant::now() > limit {
            return err(format!("no `{}` within {} s", a.pattern, a.timeout_s));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let start: f64 = fs::read_to_string(&a.start_file)?
        .trim()
        .replace(',', ".")
        .parse()?;
    let ready_s = ready.duration_since(UNIX_EPOCH)?.as_secs_f64() - start;
    let v = json!({
        "ready_ms": round(ready_s * 1e3, 1),
        "vmhwm_kb": status_kb(&a.pid, "VmHWM:"),
        "vmrss_kb": status_kb(&a.pid, "VmRSS:"),
    });
    Ok(merge(a.label.json("ready"), v))
}
