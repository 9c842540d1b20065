//! `ironpxe dhcp`: DHCP server configuration for every PXE-enabled port, or a synced
//! dnsmasq hostsdir; generation lives in [`crate::dhcp`], warnings go to stderr.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{load_state, StateArgs};
use anyhow::{anyhow, Context, Result};

#[derive(Args, Debug)]
pub struct DhcpArgs {
    /// dnsmasq, isc, kea or neutron (read-only: what Ironic would set on Neutron ports).
    #[arg(long)]
    pub format: crate::dhcp::DhcpFormat,
    /// TOML configuration file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// TFTP server for boot files (siaddr); default: the first routable IPv4 tftp_listen.
    #[arg(long)]
    pub next_server: Option<std::net::Ipv4Addr>,
    /// Base URL of ironpxe's HTTP server for iPXE clients; default: public_url, else http_listen.
    #[arg(long)]
    pub http_url: Option<String>,
    /// Boot file for BIOS PXE clients (e.g. undionly.kpxe to chain into iPXE).
    #[arg(long, default_value = crate::dhcp::DEFAULT_BIOS_BOOT)]
    pub bios_boot: String,
    /// Boot file for UEFI clients (client architecture 7 or 9).
    #[arg(long, default_value = crate::dhcp::DEFAULT_UEFI_BOOT)]
    pub uefi_boot: String,
    /// Instead of printing, sync this dnsmasq --dhcp-hostsdir (one file per node).
    #[arg(long)]
    pub hostsdir: Option<PathBuf>,
    /// With --hostsdir: SIGHUP this dnsmasq when an entry changed or was deleted.
    #[arg(long, requires = "hostsdir")]
    pub dnsmasq_pid_file: Option<PathBuf>,
}

/// `ironpxe dhcp`: generation and syncing live in [`crate::dhcp`]; warnings go to stderr.
pub fn dhcp(args: &DhcpArgs, out: &mut dyn Write) -> Result<()> {
    use crate::dhcp::{self, DhcpFormat, DhcpOptions};
    let cfg = StateArgs {
        config: args.config.clone(),
        state_dir: args.state_dir.clone(),
        templates: None,
    }
    .config()?;
    let store = load_state(&cfg.state_dir, cfg.index_config())?;
    let snap = store.current();
    let (opts, option_warnings) = DhcpOptions::derive(
        &cfg.dhcp_listeners(),
        args.http_url.as_deref(),
        args.next_server,
        &args.bios_boot,
        &args.uefi_boot,
    )?;
    // Host entries use no boot option: warnings about those matter only when printing.
    let mut warnings = match args.hostsdir {
        Some(_) => Vec::new(),
        None => option_warnings,
    };
    warnings.extend(snap.errors.iter().map(|e| format!("state: {e}")));
    let result = match (&args.hostsdir, args.format) {
        (Some(dir), DhcpFormat::Dnsmasq) => {
            dhcp::sync_and_signal(dir, &snap, args.dnsmasq_pid_file.as_deref(), out)
                .map(|r| warnings.extend(r.warnings))
                .map_err(|e| anyhow!("{}: {e}", dir.display()))
        }
        (Some(_), _) => Err(anyhow!("--hostsdir needs --format dnsmasq")),
        (None, format) => {
            let r = dhcp::generate(format, &snap, &opts);
            warnings.extend(r.warnings);
            out.write_all(r.text.as_bytes()).context("writing output")
        }
    };
    let mut err = std::io::stderr().lock();
    for w in &warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    result
}
