//! `ironpxe`: wiring only. Each subcommand lives in `cli::<name>` (`serve` starts
//! `serving::run`); the hidden `__render-worker` (a child of `serve`) in `render::worker`.

#![deny(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ironpxe::cli::{self, Cli, Command};

fn main() -> ExitCode {
    // A render worker (see `render::worker`) speaks only its pipe protocol.
    if let Some(code) = ironpxe::render::worker::main_if_worker() {
        return code;
    }
    let args = Cli::parse();
    // One-shot commands speak through their output; only the server logs progress.
    init_tracing(if matches!(args.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    });
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = match &args.command {
        Command::Addr(a) => cli::addr(a, &mut stdout.lock()),
        Command::Render(a) => cli::render(a, &mut stdout.lock(), &mut stderr.lock()),
        Command::Check(a) => cli::check(a, &mut stdout.lock()),
        Command::Serve(a) => cli::serve(a),
        Command::Dhcp(a) => cli::dhcp(a, &mut stdout.lock()),
        Command::Inspect(a) => cli::inspect(a, &mut stdout.lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr.lock(), "ironpxe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, one line a record (control characters in any field escaped:
/// `ironpxe::support::logging`); `RUST_LOG` filters.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .fmt_fields(ironpxe::support::logging::EscapedFields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
