//! ironpxe's load generator and benchmark helper; `benches/run.sh` drives it and writes
//! `BENCHMARKS.md`. Run it as `cargo bench --bench loadgen -- <subcommand> …`, or build it
//! once (`cargo bench --bench loadgen --no-run`) and run the binary.
//!
//! Every client here is written from the RFCs, not from the server under test, and is the
//! one the integration tests use too (`tests/common`, included below with `#[path]`): a
//! PXELINUX-like TFTP client (RFC 1350 + options RFC 2347/2348/2349 + windowsize RFC 7440)
//! with a timer-driven retransmit, and a minimal HTTP/1.1 keep-alive client. Every loop is
//! bounded in count and in time. Everything talks to loopback only.
//!
//! Modules: [`nodes`] (the node set and the files derived from it), [`scenarios`] (the
//! client load of each measurement), [`peers`] (the reference TFTP servers), [`measure`]
//! (kernel counters, CPU, readiness, result labels), [`report`] (`BENCHMARKS.md`: the numbers
//! filled into `report.md.tera`).
//!
//! Subcommands:
//! * `gen`          — `nodes.json` + `ports.json` shaped like Ironic's API (3–4 KB per node)
//! * `gen-file`     — a deterministic pseudo-random file (bulk transfers)
//! * `static-tree`  — what Ironic would write for tftpd-hpa (`<uuid>/config` + `pxelinux.cfg`
//!   symlinks) and the pre-rendered iPXE scripts nginx serves, fetched once from ironpxe
//! * `wrk-paths`    — the request paths `benches/wrk.lua` spreads over the nodes
//! * `storm`        — N virtual PXELINUX clients walking the PXELINUX name sequence
//! * `bulk`         — concurrent large-file TFTP transfers with blksize/windowsize
//! * `live`         — latency from an atomic rename of a state file to the new config
//! * `bare-tftpd`   — async-tftp's own `DirHandler` (`with_dir_ro`), the baseline
//! * `ideal-tftpd`  — a minimal windowed sender, the reference for bulk transfers
//! * `null-tftpd`   — a stateless responder with one config in memory: the config phase's ceiling
//! * `wait-ready`   — time from process start to a log line, and peak RSS
//! * `probe`        — one TFTP fetch (readiness checks)
//! * `report`       — `BENCHMARKS.md` from the results

// `json!` for a whole Ironic node nests deeper than the default limit.
#![recursion_limit = "256"]

#[path = "../../tests/common/http_client.rs"]
#[allow(dead_code)] // the tests' raw-request helpers
mod http_client;
#[path = "../../tests/common/tftp.rs"]
#[allow(dead_code)] // the tests' hand-driven packets and hooks
mod tftp;

mod measure;
mod nodes;
mod peers;
mod report;
mod scenarios;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "ironpxe benchmark load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Gen(nodes::GenArgs),
    GenFile(nodes::GenFileArgs),
    StaticTree(nodes::StaticTreeArgs),
    WrkPaths(nodes::WrkPathsArgs),
    Storm(scenarios::StormArgs),
    Bulk(scenarios::BulkArgs),
    Live(scenarios::LiveArgs),
    BareTftpd(peers::BareArgs),
    IdealTftpd(peers::IdealArgs),
    NullTftpd(peers::NullArgs),
    WaitReady(measure::WaitReadyArgs),
    Probe(scenarios::ProbeArgs),
    Report(report::ReportArgs),
}

fn main() {
    // `cargo bench` appends `--bench` to a harness-less bench's arguments.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let result = match cli.cmd {
        Cmd::Gen(a) => nodes::gen(&a),
        Cmd::GenFile(a) => nodes::gen_file(&a),
        Cmd::StaticTree(a) => nodes::static_tree(&a),
        Cmd::WrkPaths(a) => nodes::wrk_paths(&a),
        Cmd::Storm(a) => scenarios::storm(&a).map(|v| println!("{v}")),
        Cmd::Bulk(a) => scenarios::bulk(&a).map(|v| println!("{v}")),
        Cmd::Live(a) => scenarios::live(&a).map(|v| println!("{v}")),
        Cmd::BareTftpd(a) => peers::bare_tftpd(&a),
        Cmd::IdealTftpd(a) => peers::ideal_tftpd(&a),
        Cmd::NullTftpd(a) => peers::null_tftpd(&a),
        Cmd::WaitReady(a) => measure::wait_ready(&a).map(|v| println!("{v}")),
        Cmd::Probe(a) => scenarios::probe(&a),
        Cmd::Report(a) => report::report(&a),
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(msg.into().into())
}

/// A kept-alive HTTP client as the benchmarks use it: `TCP_NODELAY`, 5 s to connect, 10 s
/// per read, `Host: <addr>`.
fn http_client(addr: std::net::SocketAddr) -> http_client::Client {
    let opts = http_client::Opts {
        connect_timeout: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(10),
        nodelay: true,
        host: addr.to_string(),
        ..http_client::Opts::default()
    };
    http_client::Client::new(addr, opts)
}
