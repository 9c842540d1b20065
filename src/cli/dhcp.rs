//! `ironpxe dhcp`: DHCP server configuration for every PXE-enabled port, or a synced
//! dnsmasq hostsdir; generation lives in [`crate::dhcp`], warnings go to stderr.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{load_state, StateArgs};
use anyhow::{anyhow, Context, Result};

#[derive(Args, Debug)]
pub struct DhcpArgs {
    /// dnsmasq (DHCPv4, and DHCPv6 when on), isc, isc6 (dhcpd -6), kea, kea6 (Dhcp6): one
    /// configuration for every client, the boot file chosen by what the client is (its
    /// architecture, iPXE, HTTP Boot), from [dhcp] and the flags below.
    ///
    /// neutron (read-only): per port, the extra_dhcp_opts Ironic 39 itself would set on its
    /// Neutron port — the boot file chosen per node (boot interface, boot mode, cpu_arch) from
    /// Ironic's own settings under Ironic's names and defaults in [ironic_pxe]
    /// (pxe_bootfile_name pxelinux.0, uefi_pxe_bootfile_name bootx64.efi, ipxe_bootfile_name
    /// undionly.kpxe, uefi_ipxe_bootfile_name snponly.efi, *_by_arch, tftp_server, http_url,
    /// my_ipv6, default_boot_mode); --next-server, --http-url and --next-server6 set
    /// tftp_server, http_url and my_ipv6 there too. --bios-boot, --uefi-boot and
    /// --http-boot-loader do not apply to it. IPv6 options (ip_version 6) are added when
    /// DHCPv6 is on.
    #[arg(long, verbatim_doc_comment)]
    pub format: crate::dhcp::DhcpFormat,
    /// TOML configuration file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// TFTP server for boot files (siaddr); default: [dhcp] next_server, else the first
    /// routable IPv4 tftp_listen.
    #[arg(long)]
    pub next_server: Option<std::net::Ipv4Addr>,
    /// Base URL of ironpxe's HTTP server for DHCPv4 iPXE and HTTP Boot clients; default:
    /// public_url, else http_listen.
    #[arg(long)]
    pub http_url: Option<String>,
    /// Boot file for BIOS PXE clients (e.g. undionly.kpxe to chain into iPXE); default
    /// [dhcp] bios_boot (pxelinux.0).
    #[arg(long)]
    pub bios_boot: Option<String>,
    /// Boot file for UEFI PXE clients (client architecture 7, 9, 11); default [dhcp]
    /// uefi_boot (snponly.efi).
    #[arg(long)]
    pub uefi_boot: Option<String>,
    /// Loader UEFI HTTP Boot clients (architecture 15, 16, 19) fetch as <http-url>/<loader>;
    /// default [dhcp] http_boot_loader (snponly.efi; grubx64.efi for GRUB over HTTP).
    #[arg(long)]
    pub http_boot_loader: Option<String>,
    /// IPv6 TFTP address for DHCPv6 tftp:// URLs; turns DHCPv6 output on. Default: [dhcp]
    /// next_server6, else the first global or unique-local tftp_listen.
    #[arg(long)]
    pub next_server6: Option<std::net::Ipv6Addr>,
    /// Base URL for DHCPv6 iPXE and HTTP Boot clients (e.g. http://[2001:db8::1]:8080);
    /// default: [dhcp] http_url6, else an IPv6 public_url or http_listen.
    #[arg(long)]
    pub http_url6: Option<String>,
    /// dnsmasq's stateful DHCPv6 range START,END[,PREFIX-LEN], announced with enable-ra.
    #[arg(long)]
    pub ipv6_range: Option<crate::dhcp::Ipv6Range>,
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
    let mut choices = cfg.dhcp_choices();
    let flags = [
        (&mut choices.http_url, &args.http_url),
        (&mut choices.http_url6, &args.http_url6),
        (&mut choices.bios_boot, &args.bios_boot),
        (&mut choices.uefi_boot, &args.uefi_boot),
        (&mut choices.http_boot, &args.http_boot_loader),
    ];
    for (choice, flag) in flags {
        if flag.is_some() {
            choice.clone_from(flag);
        }
    }
    choices.next_server = args.next_server.or(choices.next_server);
    choices.next_server6 = args.next_server6.or(choices.next_server6);
    // The flags stand for Ironic's settings too, over [ironic_pxe].
    let ironic = &mut choices.ironic_pxe;
    ironic.tftp_server = args.next_server.map(Into::into).or(ironic.tftp_server);
    ironic.my_ipv6 = args.next_server6.or(ironic.my_ipv6);
    if args.http_url.is_some() {
        ironic.http_url.clone_from(&args.http_url);
    }
    choices.ipv6_range = args.ipv6_range.or(choices.ipv6_range);
    let (opts, option_warnings) = DhcpOptions::derive(&cfg.dhcp_listeners(), &choices)?;
    if args.format.is_v6_only() && opts.v6.is_none() && args.hostsdir.is_none() {
        return Err(anyhow!("--format {}: {}", args.format, dhcp::NO_V6));
    }
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
