//! The command line: `addr`, `render`, `check`, `serve`, `dhcp` and `inspect` (`serve` runs
//! in `crate::serving::run`; the others are here). Output formats here are part of the interface
//! operators script against, so they are tested.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::model::addr::{self, AnyAddr, PxeHwAddr, PxelinuxName, SystemUuid};
use crate::model::node::NodeUuid;
use crate::render::{Format, HwType, Renderer, Server};
use crate::state::source::dir::DirSource;
use crate::state::{IndexConfig, Match, Snapshot, Store};

/// Network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
#[derive(Parser, Debug)]
#[command(name = "ironpxe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every form derivable from a hardware address, in any spelling.
    Addr(AddrArgs),
    /// Print exactly what a client would be served, and (on stderr) why.
    Render(RenderArgs),
    /// Validate state and templates; exit non-zero listing every problem.
    Check(CheckArgs),
    /// Serve boot configs from the live state (TFTP and HTTP).
    Serve(ServeArgs),
    /// Print DHCP host entries and boot logic for every PXE-enabled port (dnsmasq, ISC, Kea),
    /// or the Neutron extra_dhcp_opts Ironic would set; or sync a dnsmasq --dhcp-hostsdir.
    Dhcp(DhcpArgs),
    /// Check what ironic-python-agent reported about a machine's interfaces against the
    /// ports Ironic has enrolled (IB MAC, client-id); with --apply, create or fix them.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Inspection data (`baremetal node inventory show <node> -f json`) or the inventory.
    pub inventory: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
    /// Read the enrolled ports from this Ironic API instead of the state directory.
    #[arg(long)]
    pub ironic_url: Option<String>,
    /// The node the inventory belongs to (default: the node its interfaces match).
    #[arg(long)]
    pub node: Option<String>,
    /// Create missing ports and fix disagreeing ones through the Ironic API.
    #[arg(long)]
    pub apply: bool,
}

#[derive(Args, Debug)]
pub struct AddrArgs {
    /// MAC, IB MAC, GUID, IPoIB address or client-id, in any spelling.
    pub address: String,
    /// Also say which enrolled port and node the address matches.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Vendor prefix for client-ids derived from a GUID.
    #[arg(long, default_value = "ff:00:00:00:00:00:02:00:00:02:c9:00")]
    pub client_id_prefix: String,
}

#[derive(Args, Debug)]
pub struct StateArgs {
    /// TOML configuration file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub templates: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Any address spelling, a PXELINUX name (`01-…`, `20-…`) or an Ironic node UUID.
    #[arg(long)]
    pub client: String,
    /// The client's SMBIOS UUID, tried first as PXELINUX does.
    #[arg(long)]
    pub smbios_uuid: Option<String>,
    /// pxelinux, ipxe, grub or boot.ipxe.
    #[arg(long, default_value = "ipxe")]
    pub format: Format,
    /// Base URL written into scripts (defaults to http://<http_listen>).
    #[arg(long)]
    pub public_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub tftp_root: Option<PathBuf>,
    /// May be given once per provisioning interface address.
    #[arg(long)]
    pub tftp_listen: Vec<SocketAddr>,
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Poll this Ironic API for nodes and ports (besides the state directory).
    #[arg(long)]
    pub ironic_url: Option<String>,
}

/// A command failure: printed to stderr, exit status 1 (2 for usage, from clap).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError(e.to_string())
    }
}

impl StateArgs {
    /// The config file (or defaults) with these flags applied.
    pub fn config(&self) -> Result<Config, CliError> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.state_dir {
            cfg.state_dir = d.clone();
        }
        if let Some(t) = &self.templates {
            cfg.templates = t.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Loads the state directory once into a fresh store.
pub fn load_state(dir: &Path, index: IndexConfig) -> Result<Store, CliError> {
    if !dir.is_dir() {
        return Err(CliError(format!(
            "state directory {} does not exist",
            dir.display()
        )));
    }
    let store = Store::new(index);
    store.apply(DirSource::new(dir).scan(&HashSet::new()));
    Ok(store)
}

/// `ironpxe addr`.
pub fn addr(args: &AddrArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let parsed = AnyAddr::parse(&args.address).map_err(|e| CliError(e.to_string()))?;
    let prefix = Config {
        index: crate::config::IndexSection {
            client_id_prefix: args.client_id_prefix.clone(),
            ..Default::default()
        },
        ..Config::default()
    }
    .client_id_prefix()?;
    let store = match &args.state_dir {
        Some(d) => Some(load_state(d, IndexConfig::default())?),
        None => None,
    };
    let snap = store.as_ref().map(Store::current);
    let readings = parsed.readings();
    for (i, reading) in readings.iter().enumerate() {
        if i > 0 {
            writeln!(out).map_err(io)?;
        }
        if readings.len() > 1 {
            writeln!(out, "reading: {} of {}", i + 1, readings.len()).map_err(io)?;
        }
        let d = addr::derive(reading, prefix);
        let rows = [
            ("kind", d.kind.to_owned()),
            ("mac", d.mac),
            ("guid", d.guid),
            ("ib_mac", d.ib_mac),
            ("client_id", d.client_id),
            ("ipoib_addr", d.ipoib_addr),
            ("pxelinux_names", d.pxelinux_names.join(" ")),
            ("ipxe_name", d.ipxe_name),
        ];
        for (k, v) in rows {
            writeln!(out, "{k}: {v}").map_err(io)?;
        }
        if let Some(note) = d.note {
            writeln!(out, "note: {note}").map_err(io)?;
        }
        if let Some(s) = &snap {
            writeln!(out, "match: {}", describe(reading_match(s, reading))).map_err(io)?;
        }
    }
    Ok(())
}

fn reading_match<'a>(s: &'a Snapshot, r: &addr::Reading) -> Option<Match<'a>> {
    use addr::{IbHwAddr, Reading};
    match r {
        Reading::EthernetMac(m) => s
            .by_mac(m)
            .filter(|m| m.via == crate::state::Via::EthernetMac),
        Reading::IbMac(m) => s.by_ib(&IbHwAddr::Mac(*m)),
        Reading::Guid(g) => s.by_guid(g),
        Reading::IpoibAddr(a) => s.by_guid(&a.guid()),
        Reading::ClientId(c) => s.by_guid(&c.guid()),
    }
}

/// One line naming node, port and how they matched.
pub fn describe(m: Option<Match<'_>>) -> String {
    let Some(m) = m else {
        return "none".into();
    };
    let node = &m.node.node;
    let name = node.name.as_deref().unwrap_or("-");
    let port = m
        .port
        .map(|p| {
            let kind = if p.is_infiniband() {
                "infiniband"
            } else {
                "ethernet"
            };
            format!(" port {} ({kind})", p.port.address)
        })
        .unwrap_or_default();
    format!(
        "node {} ({name}, {}){port} via {}",
        node.uuid,
        node.provision_state,
        m.via.describe()
    )
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("writing output: {e}"))
}

/// How `render` resolved its `--client`, with the hardware type the name implies.
struct Resolved<'a> {
    found: Option<Match<'a>>,
    hw: Option<HwType>,
}

fn resolve<'a>(
    s: &'a Snapshot,
    client: &str,
    smbios: Option<&SystemUuid>,
) -> Result<Resolved<'a>, CliError> {
    if let Some(m) = smbios.and_then(|u| s.by_system_uuid(u)) {
        return Ok(Resolved {
            found: Some(m),
            hw: None,
        });
    }
    if let Ok(a) = AnyAddr::parse(client) {
        return Ok(Resolved {
            found: s.by_addr(&a),
            hw: None,
        });
    }
    if let Ok(u) = NodeUuid::parse(client) {
        return Ok(Resolved {
            found: s.by_node_uuid(&u),
            hw: None,
        });
    }
    let name = client.trim().trim_start_matches("pxelinux.cfg/");
    match PxelinuxName::parse(name) {
        Ok(n) => {
            let hw = match &n {
                PxelinuxName::Hw(PxeHwAddr::Ethernet(_)) => Some(HwType::Ethernet),
                PxelinuxName::Hw(PxeHwAddr::Infiniband(_)) => Some(HwType::Infiniband),
                _ => None,
            };
            Ok(Resolved {
                found: s.by_pxelinux_name(&n),
                hw,
            })
        }
        Err(e) => Err(CliError(format!(
            "--client {client:?} is neither an address, a node UUID nor a PXELINUX name: {e}"
        ))),
    }
}

/// `ironpxe render`.
pub fn render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let cfg = args.state.config()?;
    let store = load_state(&cfg.state_dir, cfg.index_config()?)?;
    let renderer = Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render)
        .map_err(|e| CliError(e.join("\n")))?;
    let smbios = match &args.smbios_uuid {
        Some(u) => Some(SystemUuid::parse(u).map_err(|e| CliError(format!("--smbios-uuid: {e}")))?),
        None => None,
    };
    let snap = store.current();
    let r = resolve(&snap, &args.client, smbios.as_ref())?;
    let server = Server {
        http_url: args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", cfg.http_listen))
            .trim_end_matches('/')
            .to_owned(),
        tftp_server: cfg.http_listen.ip().to_string(),
    };
    let rendered = renderer
        .render(r.found.as_ref(), args.format, r.hw, &server)
        .map_err(|e| CliError(e.to_string()))?;
    let what = match r.found {
        Some(_) => describe(r.found),
        None => "no node matches: this is the unknown-machine config".into(),
    };
    writeln!(err, "matched: {what}").map_err(io)?;
    writeln!(err, "action: {} ({})", rendered.action, rendered.reason).map_err(io)?;
    out.write_all(rendered.body.as_bytes()).map_err(io)?;
    Ok(())
}

/// `ironpxe check`: every state error, template error and node that cannot be rendered.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = args.state.config()?;
    let mut problems = Vec::new();
    let store = load_state(&cfg.state_dir, cfg.index_config()?)?;
    let snap = store.current();
    problems.extend(snap.errors.iter().map(|e| format!("state: {e}")));
    let renderer = match Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render) {
        Ok(r) => Some(r),
        Err(errs) => {
            problems.extend(errs.into_iter().map(|e| format!("templates: {e}")));
            None
        }
    };
    if let Some(r) = &renderer {
        problems.extend(render_problems(&snap, r));
    }
    let policy = cfg.image_policy();
    problems.extend(crate::serving::images::refused_references(
        &snap,
        &cfg.boot_config()?,
        &policy,
    ));
    for w in &snap.warnings {
        writeln!(out, "warning: {w}").map_err(io)?;
    }
    writeln!(
        out,
        "{} nodes, {} ports, {} warnings, {} problems",
        snap.nodes().len(),
        snap.ports().len(),
        snap.warnings.len(),
        problems.len()
    )
    .map_err(io)?;
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        writeln!(out, "problem: {p}").map_err(io)?;
    }
    Err(CliError(format!("{} problems found", problems.len())))
}

/// Renders every PXE-enabled port in every format; one problem per port and distinct error.
/// Renders are started a batch at a time so every render worker is kept busy.
fn render_problems(snap: &Snapshot, r: &Renderer) -> Vec<String> {
    const FORMATS: [Format; 3] = [Format::Pxelinux, Format::Ipxe, Format::Grub];
    const BATCH: usize = 256;
    let server = Server {
        http_url: "http://192.0.2.1".into(),
        tftp_server: "192.0.2.1".into(),
    };
    let ports: Vec<_> = snap
        .ports()
        .iter()
        .filter(|p| p.port.pxe_enabled)
        .filter_map(|p| Some((p, snap.by_mac(&p.port.address)?)))
        .collect();
    let mut problems = Vec::new();
    for batch in ports.chunks(BATCH) {
        let pending: Vec<_> = batch
            .iter()
            .map(|(_, m)| FORMATS.map(|f| r.begin(Some(m), f, None, &server)))
            .collect();
        for ((p, _), renders) in batch.iter().zip(pending) {
            let mut errors: Vec<(String, Vec<&str>)> = Vec::new();
            for (f, pending) in FORMATS.iter().zip(renders) {
                if let Err(e) = pending.wait_blocking() {
                    let e = e.to_string();
                    match errors.iter_mut().find(|(msg, _)| *msg == e) {
                        Some((_, formats)) => formats.push(f.name()),
                        None => errors.push((e, vec![f.name()])),
                    }
                }
            }
            for (e, formats) in errors {
                problems.push(format!(
                    "port {} ({}): {e}",
                    p.port.address,
                    formats.join(", ")
                ));
            }
        }
    }
    problems
}

/// Keeps state and templates live; the servers attach to the same store and renderer.
pub struct Live {
    pub store: Arc<Store>,
    pub renderer: Arc<Renderer>,
    watches: Vec<crate::support::watch::WatchHandle>,
}

impl Live {
    /// Loads everything once and starts watching; fails only on what cannot be served at all.
    pub fn start(cfg: &Config) -> Result<Live, CliError> {
        let store = Arc::new(Store::new(cfg.index_config()?));
        let renderer = Arc::new(
            Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render)
                .map_err(|e| CliError(e.join("\n")))?,
        );
        let debounce = crate::support::watch::Debounce::default();
        let state_watch = DirSource::new(&cfg.state_dir)
            .watch(store.clone(), debounce)
            .map_err(|e| {
                CliError(format!(
                    "watching state directory {}: {e}",
                    cfg.state_dir.display()
                ))
            })?;
        let template_watch = renderer.watch(debounce).map_err(|e| {
            CliError(format!(
                "watching templates {}: {e}",
                cfg.templates.display()
            ))
        })?;
        Ok(Live {
            store,
            renderer,
            watches: vec![state_watch, template_watch],
        })
    }

    /// Rescans the state directory and reloads the templates now (SIGHUP).
    pub fn rescan(&self) {
        for w in &self.watches {
            w.poke();
        }
        self.renderer.reload();
    }
}

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
pub fn dhcp(args: &DhcpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::dhcp::{self, DhcpFormat, DhcpOptions};
    let cfg = StateArgs {
        config: args.config.clone(),
        state_dir: args.state_dir.clone(),
        templates: None,
    }
    .config()?;
    let store = load_state(&cfg.state_dir, cfg.index_config()?)?;
    let snap = store.current();
    let (opts, option_warnings) = DhcpOptions::from_config(
        &cfg,
        args.http_url.as_deref(),
        args.next_server,
        &args.bios_boot,
        &args.uefi_boot,
    )
    .map_err(|e| CliError(e.to_string()))?;
    // Host entries use no boot option: warnings about those matter only when printing.
    let mut warnings = match args.hostsdir {
        Some(_) => Vec::new(),
        None => option_warnings,
    };
    warnings.extend(snap.errors.iter().map(|e| format!("state: {e}")));
    let result = match (&args.hostsdir, args.format) {
        (Some(dir), DhcpFormat::Dnsmasq) => {
            dhcp::sync_and_signal(dir, &snap, &opts, args.dnsmasq_pid_file.as_deref(), out)
                .map(|r| warnings.extend(r.warnings))
                .map_err(|e| CliError(format!("{}: {e}", dir.display())))
        }
        (Some(_), _) => Err(CliError("--hostsdir needs --format dnsmasq".into())),
        (None, format) => {
            let r = dhcp::render(format, &snap, &opts);
            warnings.extend(r.warnings);
            out.write_all(r.text.as_bytes()).map_err(io)
        }
    };
    let mut err = std::io::stderr().lock();
    for w in &warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    result
}

/// `ironpxe inspect`: per interface, the port Ironic should have and how the enrolled one
/// differs; `--apply` makes Ironic agree. Fails while any interface disagrees.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::inspect::{check, parse_inventory, ExpectedPort, Finding};
    let bytes = std::fs::read(&args.inventory)
        .map_err(|e| CliError(format!("{}: {e}", args.inventory.display())))?;
    let ifaces = parse_inventory(&bytes)
        .map_err(|e| CliError(format!("{}: {e}", args.inventory.display())))?;
    let mut cfg = args.state.config()?;
    if let Some(u) = &args.ironic_url {
        cfg.ironic.url = Some(u.clone());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("runtime: {e}")))?;
    let client = match &cfg.ironic.url {
        Some(_) => Some(
            crate::state::source::ironic::Client::new(&cfg.ironic)
                .map_err(|e| CliError(e.to_string()))?,
        ),
        None => None,
    };
    let store = match &client {
        Some(c) => {
            let doc = rt.block_on(c.poll()).map_err(|e| CliError(e.to_string()))?;
            let store = Store::new(cfg.index_config()?);
            store.apply(vec![(
                crate::state::SourceId::IronicApi,
                crate::state::Update::Replace(doc),
            )]);
            store
        }
        None => load_state(&cfg.state_dir, cfg.index_config()?)?,
    };
    let snap = store.current();
    let expected: Vec<ExpectedPort> = ifaces.iter().map(ExpectedPort::of).collect();
    let node = inspected_node(&snap, args.node.as_deref(), &expected)?;
    let enrolled: Vec<crate::model::node::Port> = node
        .and_then(|u| snap.node(&u))
        .map(|n| {
            n.ports
                .iter()
                .map(|&i| (*snap.ports()[i].port).clone())
                .collect()
        })
        .unwrap_or_default();
    let prefix = cfg.client_id_prefix()?;
    let mut open = 0;
    for (iface, exp) in ifaces.iter().zip(&expected) {
        let finding = check(exp, &enrolled);
        print_interface(out, iface, exp, node.as_ref(), &finding, prefix)?;
        let fixed = match (&finding, args.apply) {
            (Finding::Ok { .. }, _) => true,
            (_, false) => false,
            (f, true) => {
                let c = client.as_ref().ok_or_else(|| {
                    CliError("--apply needs --ironic-url (or [ironic] url)".into())
                })?;
                let node = node.ok_or_else(|| {
                    CliError("--apply needs the node: no enrolled node matches; pass --node".into())
                })?;
                writeln!(out, "applied: {}", rt.block_on(apply(c, f, exp, &node))?).map_err(io)?;
                true
            }
        };
        open += usize::from(!fixed);
        writeln!(out).map_err(io)?;
    }
    match open {
        0 => Ok(()),
        n => Err(CliError(format!(
            "{n} interface(s) disagree with Ironic's ports"
        ))),
    }
}

/// The node an inventory belongs to: `--node`, else the one its interfaces match.
fn inspected_node(
    snap: &Snapshot,
    given: Option<&str>,
    expected: &[crate::inspect::ExpectedPort],
) -> Result<Option<NodeUuid>, CliError> {
    if let Some(n) = given {
        return NodeUuid::parse(n)
            .map(Some)
            .map_err(|e| CliError(format!("--node: {e}")));
    }
    let mut found: Option<NodeUuid> = None;
    for e in expected {
        let m = match e.client_id {
            Some(c) => snap.by_guid(&c.guid()).or_else(|| snap.by_mac(&e.address)),
            None => snap.by_mac(&e.address),
        };
        if let Some(m) = m {
            let u = m.node.node.uuid;
            if found.is_some_and(|f| f != u) {
                return Err(CliError(format!(
                    "interfaces match two nodes ({} and {u}); pass --node",
                    found.map(|f| f.to_string()).unwrap_or_default()
                )));
            }
            found = Some(u);
        }
    }
    Ok(found)
}

fn print_interface(
    out: &mut dyn Write,
    iface: &crate::inspect::Interface,
    exp: &crate::inspect::ExpectedPort,
    node: Option<&NodeUuid>,
    finding: &crate::inspect::Finding,
    prefix: [u8; 12],
) -> Result<(), CliError> {
    use crate::inspect::Finding;
    let reading = match exp.client_id {
        Some(c) => addr::Reading::ClientId(c),
        None => addr::Reading::EthernetMac(exp.address),
    };
    let d = addr::derive(&reading, prefix);
    let finding = match finding {
        Finding::Ok { port } => format!(
            "ok (port {})",
            port.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        ),
        Finding::Missing => "missing: Ironic has no port for this interface".into(),
        Finding::Disagrees { problems, .. } => format!("disagrees: {}", problems.join("; ")),
    };
    let rows = [
        ("interface", iface.name.clone()),
        (
            "kind",
            if exp.client_id.is_some() {
                "infiniband".into()
            } else {
                "ethernet".into()
            },
        ),
        ("guid", d.guid),
        ("ib_mac", d.ib_mac),
        ("client_id", d.client_id),
        ("pxelinux_names", d.pxelinux_names.join(" ")),
        ("port", exp.json(node).to_string()),
        ("create", exp.create_command(node)),
        ("finding", finding),
    ];
    for (k, v) in rows {
        writeln!(out, "{k}: {v}").map_err(io)?;
    }
    if let Some(n) = &exp.inventory_note {
        writeln!(out, "note: {n}").map_err(io)?;
    }
    Ok(())
}

/// Creates or patches the port through the API; returns what was done.
async fn apply(
    c: &crate::state::source::ironic::Client,
    finding: &crate::inspect::Finding,
    exp: &crate::inspect::ExpectedPort,
    node: &NodeUuid,
) -> Result<String, CliError> {
    use crate::inspect::Finding;
    let err = |e: crate::state::source::ironic::IronicError| CliError(e.to_string());
    match finding {
        Finding::Ok { .. } => Ok("nothing".into()),
        Finding::Missing => {
            let body = exp.json(Some(node));
            let r = c
                .send_json(reqwest::Method::POST, "/v1/ports", &body)
                .await
                .map_err(err)?;
            let uuid = serde_json::from_slice::<serde_json::Value>(&r)
                .ok()
                .and_then(|v| v["uuid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Ok(format!("created port {uuid} {}", exp.address))
        }
        Finding::Disagrees { port, patch, .. } => {
            let port = port.ok_or_else(|| {
                CliError("the disagreeing port has no uuid; fix it by hand".into())
            })?;
            let body = serde_json::Value::Array(patch.clone());
            c.send_json(reqwest::Method::PATCH, &format!("/v1/ports/{port}"), &body)
                .await
                .map_err(err)?;
            Ok(format!("patched port {port}"))
        }
    }
}
