//! DHCP server configuration for every PXE-enabled port in the state: dnsmasq (a main-config
//! snippet, host lines, and a `--dhcp-hostsdir` kept in sync with the live snapshot), ISC dhcpd,
//! Kea, and — read-only, for comparison — the Neutron `extra_dhcp_opts` Ironic itself would set.
//!
//! An Ethernet port gets one reservation by MAC. An InfiniBand port gets two identities: its
//! RFC 4390 client-id (`ff:…:<guid>`, what IPoIB firmware such as FlexBoot sends with hardware
//! type 32 and no chaddr) and its IB MAC (what firmware built on upstream iPXE sends: it
//! presents IPoIB as Ethernet, hardware type 1, chaddr = IB MAC, client-id `01:<ib-mac>`).
//!
//! Every value written into a generated file is built from typed data (MACs, client-ids,
//! IPv4 addresses, UUIDs), validated on construction ([`BootFile`], [`HttpUrl`]) or sanitized
//! ([`Hostname`]): a node name can never add a line, a field or an option.
//!
//! dnsmasq specifics (measured with Debian 12's dnsmasq 2.90, see `tests/dhcp.rs`):
//! - generated host entries carry no `set:<tag>`: dnsmasq 2.90 crashes on SIGHUP once a
//!   client matched a `--dhcp-hostsdir` entry that sets a tag. RFC 4390 clients are tagged in
//!   the main config instead, by matching their client-id's vendor prefix;
//! - `--dhcp-hostsdir` picks up new and changed files without a restart but keeps serving a
//!   deleted or changed file's old entries until SIGHUP, hence [`SyncReport::needs_sighup`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::model::addr::{ClientId, Mac, MELLANOX_CLIENT_ID_PREFIX};
use crate::model::node::{Node, NodeUuid};
use crate::state::{IndexedPort, Snapshot};

/// Default boot file for BIOS PXE clients (the PXELINUX chain ironpxe serves over TFTP).
pub const DEFAULT_BIOS_BOOT: &str = "pxelinux.0";
/// Default boot file for UEFI clients (client architecture 7 or 9): iPXE on the firmware's SNP.
pub const DEFAULT_UEFI_BOOT: &str = "snponly.efi";
/// The iPXE entry script under the HTTP base URL.
pub const BOOT_SCRIPT: &str = "boot.ipxe";
/// Name prefix of the files [`sync_hostsdir`] owns; other files in the directory are left alone.
pub const HOSTSDIR_PREFIX: &str = "ironpxe-";

/// dnsmasq tags the main snippet sets (namespaced so an existing config's tags cannot collide).
const TAG_IB: &str = "ironpxe-ib";
const TAG_IPXE: &str = "ironpxe-ipxe";
const TAG_EFI: &str = "ironpxe-efi";
/// DHCP client architectures (option 93) that get the UEFI boot file: EFI BC and EFI x86-64.
const UEFI_ARCHES: [u16; 2] = [7, 9];
/// The BOOTP `file` field holds 128 bytes including the terminating NUL.
const MAX_BOOT_FILE: usize = 127;
/// A DNS label.
const MAX_HOSTNAME: usize = 63;
/// Words dnsmasq reads as something other than a host name in a `dhcp-host` field.
const DNSMASQ_KEYWORDS: [&str; 3] = ["ignore", "infinite", "deprecated"];
/// Longest piece of untrusted text echoed into a warning.
const MAX_SHOWN: usize = 64;

/// What the generator refuses; every message names the value at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DhcpError {
    #[error("boot file {value:?}: {why}")]
    BootFile { value: String, why: &'static str },
    #[error("HTTP URL {value:?}: {why}")]
    HttpUrl { value: String, why: &'static str },
    #[error("unknown DHCP format {0:?} (dnsmasq, isc, kea, neutron)")]
    UnknownFormat(String),
    #[error("{0}")]
    Config(String),
}

/// Which DHCP server's syntax to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhcpFormat {
    Dnsmasq,
    Isc,
    Kea,
    /// The Neutron port `extra_dhcp_opts` Ironic would set (read-only comparison).
    Neutron,
}

impl DhcpFormat {
    pub const ALL: [DhcpFormat; 4] = [
        DhcpFormat::Dnsmasq,
        DhcpFormat::Isc,
        DhcpFormat::Kea,
        DhcpFormat::Neutron,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DhcpFormat::Dnsmasq => "dnsmasq",
            DhcpFormat::Isc => "isc",
            DhcpFormat::Kea => "kea",
            DhcpFormat::Neutron => "neutron",
        }
    }
}

impl fmt::Display for DhcpFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DhcpFormat {
    type Err = DhcpError;
    fn from_str(s: &str) -> Result<Self, DhcpError> {
        DhcpFormat::ALL
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| DhcpError::UnknownFormat(shown(s)))
    }
}

/// A boot file name for the BOOTP `file` field: 1-127 bytes of `[A-Za-z0-9._/+-]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFile(String);

impl BootFile {
    pub fn new(value: &str) -> Result<BootFile, DhcpError> {
        let bad = |why| DhcpError::BootFile {
            value: shown(value),
            why,
        };
        if value.is_empty() {
            return Err(bad("empty"));
        }
        if value.len() > MAX_BOOT_FILE {
            return Err(bad("longer than the 127 bytes of the BOOTP file field"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "._/+-".contains(c);
        if !value.chars().all(ok) || value.starts_with('-') {
            return Err(bad(
                "only letters, digits and . _ / + - are allowed, not first -",
            ));
        }
        Ok(BootFile(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BootFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The base URL iPXE clients reach ironpxe's HTTP server at (no trailing `/`). Checked so that
/// `<url>/boot.ipxe` fits the BOOTP file field and holds no separator of any generated syntax
/// (no `,` `#` `;` quotes, braces, back-slashes or white space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn new(value: &str) -> Result<HttpUrl, DhcpError> {
        let bad = |why| DhcpError::HttpUrl {
            value: shown(value),
            why,
        };
        let url = value.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("not an http:// or https:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("no host"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "._~-:/?&=%@[]+!*".contains(c);
        if !url.chars().all(ok) {
            return Err(bad(
                "only letters, digits and . _ ~ - : / ? & = % @ [ ] + ! * are allowed",
            ));
        }
        if url.len() + 1 + BOOT_SCRIPT.len() > MAX_BOOT_FILE {
            return Err(bad(
                "<url>/boot.ipxe is longer than the 127 bytes of the BOOTP file field",
            ));
        }
        Ok(HttpUrl(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<url>/boot.ipxe`, what iPXE clients are handed as their boot file.
    pub fn boot_script(&self) -> String {
        format!("{}/{BOOT_SCRIPT}", self.0)
    }
}

/// A host name from a node name: lower-case `[a-z0-9-]`, at most 63 characters, starting with
/// a letter and not a dnsmasq keyword (`node-` is prepended otherwise), so it can never be
/// read as anything but a name — not as a lease time (`3600`, `12h`), `ignore`, a new field or
/// a new line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    /// `None` when nothing usable is left.
    pub fn sanitize(name: &str) -> Option<Hostname> {
        let mut out = String::new();
        for c in name.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        let mut out = out.trim_end_matches('-').to_owned();
        if out.is_empty() {
            return None;
        }
        let letter_first = out.starts_with(|c: char| c.is_ascii_lowercase());
        if !letter_first || DNSMASQ_KEYWORDS.contains(&out.as_str()) {
            out.insert_str(0, "node-");
        }
        out.truncate(MAX_HOSTNAME);
        Some(Hostname(out.trim_end_matches('-').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the generated boot logic hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpOptions {
    /// iPXE clients (user class `iPXE` or option 175) get `<http_url>/boot.ipxe`.
    pub http_url: HttpUrl,
    /// The TFTP server clients load boot files from (`siaddr`); `None` leaves the DHCP
    /// server's default (dnsmasq: its own address).
    pub next_server: Option<Ipv4Addr>,
    /// BIOS PXE clients' boot file (`pxelinux.0`; `undionly.kpxe` chains into iPXE).
    pub bios_boot: BootFile,
    /// UEFI clients' (architecture 7 or 9) boot file (`snponly.efi`).
    pub uefi_boot: BootFile,
    /// Client-id vendor prefixes that mark RFC 4390 clients, besides those in the state.
    pub client_id_prefixes: Vec<[u8; 12]>,
}

impl DhcpOptions {
    /// Defaults: `pxelinux.0`, `snponly.efi`, no next-server, the Mellanox/NVIDIA prefix.
    pub fn new(http_url: HttpUrl) -> DhcpOptions {
        DhcpOptions {
            http_url,
            next_server: None,
            bios_boot: BootFile(DEFAULT_BIOS_BOOT.into()),
            uefi_boot: BootFile(DEFAULT_UEFI_BOOT.into()),
            client_id_prefixes: vec![MELLANOX_CLIENT_ID_PREFIX],
        }
    }

    /// Options from the configuration and the command line. The HTTP URL defaults to the
    /// config's `public_url`, else `http://<http_listen>`; next-server to the first
    /// `tftp_listen` IPv4 address that is neither loopback nor unspecified. Returns warnings
    /// about defaults clients cannot use.
    pub fn from_config(
        cfg: &Config,
        http_url: Option<&str>,
        next_server: Option<Ipv4Addr>,
        bios_boot: &str,
        uefi_boot: &str,
    ) -> Result<(DhcpOptions, Vec<String>), DhcpError> {
        let mut warnings = Vec::new();
        let url = match http_url.map(str::to_owned).or_else(|| cfg.public_url()) {
            Some(u) => u,
            None => {
                let ip = cfg.http_listen.ip();
                if ip.is_loopback() || ip.is_unspecified() {
                    warnings.push(format!(
                        "no --http-url or public_url: iPXE clients are sent to http://{}, which they cannot reach",
                        cfg.http_listen
                    ));
                }
                format!("http://{}", cfg.http_listen)
            }
        };
        let prefix = cfg
            .client_id_prefix()
            .map_err(|e| DhcpError::Config(e.to_string()))?;
        let explicit = next_server.is_some();
        let next_server = next_server.or_else(|| {
            cfg.tftp_listen.iter().find_map(|a| match a.ip() {
                IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
                _ => None,
            })
        });
        if next_server.is_none() {
            warnings.push(
                "no --next-server and no routable tftp_listen address: clients load boot files from the DHCP server's own address".into(),
            );
        }
        if !explicit && cfg.tftp_listen.iter().all(|a| a.port() != 69) {
            warnings.push(
                "no tftp_listen address uses port 69: PXE firmware always asks on port 69".into(),
            );
        }
        let opts = DhcpOptions {
            http_url: HttpUrl::new(&url)?,
            next_server,
            bios_boot: BootFile::new(bios_boot)?,
            uefi_boot: BootFile::new(uefi_boot)?,
            client_id_prefixes: vec![prefix],
        };
        Ok((opts, warnings))
    }
}

/// How DHCP recognises one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortIds {
    Ethernet(Mac),
    /// Either identity may be missing: a client-id that did not parse, or an identity another
    /// node holds (the index gives a duplicate to the node with the lower UUID).
    Infiniband {
        client_id: Option<ClientId>,
        ib_mac: Option<Mac>,
    },
}

/// Why an entry lacks something; rendered as fixed text (a comment), never echoing input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// `extra.client-id` did not parse: only the IB MAC identity is served.
    BadClientId,
    /// Another node's port has the same GUID.
    ClientIdTaken,
    /// Another port (an Ethernet one, or a node with a lower UUID) has this MAC.
    MacTaken,
    /// Another port has the same fixed IP; this one gets no reservation address.
    IpTaken(Ipv4Addr),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::BadClientId => f.write_str(
                "extra.client-id did not parse: by IB MAC only, RFC 4390 firmware will not match",
            ),
            Note::ClientIdTaken => {
                f.write_str("client-id GUID belongs to another node's port: by IB MAC only")
            }
            Note::MacTaken => f.write_str("MAC belongs to another port: not matched by MAC"),
            Note::IpTaken(ip) => write!(f, "fixed IP {ip} belongs to another port: no address"),
        }
    }
}

/// One port's DHCP reservation, all typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub node: NodeUuid,
    /// The Ironic `port.address` (the IB MAC for an IB port).
    pub port: Mac,
    pub hostname: Option<Hostname>,
    pub ip: Option<Ipv4Addr>,
    pub ids: PortIds,
    pub notes: Vec<Note>,
}

impl HostEntry {
    pub fn is_infiniband(&self) -> bool {
        matches!(self.ids, PortIds::Infiniband { .. })
    }

    /// The client-id RFC 4390 firmware sends, when known.
    pub fn client_id(&self) -> Option<ClientId> {
        match self.ids {
            PortIds::Infiniband { client_id, .. } => client_id,
            PortIds::Ethernet(_) => None,
        }
    }

    /// The MAC a hardware-type-1 client sends as chaddr, when this port owns it.
    pub fn mac(&self) -> Option<Mac> {
        match self.ids {
            PortIds::Ethernet(mac) => Some(mac),
            PortIds::Infiniband { ib_mac, .. } => ib_mac,
        }
    }
}

/// Every PXE-enabled port's entry, in node-UUID then port-address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    pub entries: Vec<HostEntry>,
    /// For stderr: ports left out or reduced, and why.
    pub warnings: Vec<String>,
    /// Vendor prefixes of every client-id in the state.
    pub prefixes: BTreeSet<[u8; 12]>,
}

/// The DHCP entries for every PXE-enabled port of `snap`. An identity the index gave to another
/// port (duplicate MAC, GUID or fixed IP) is left out here too, so DHCP and boot configs agree.
pub fn hosts(snap: &Snapshot) -> Hosts {
    let mut h = Hosts::default();
    for p in snap.ports().iter().filter(|p| p.port.pxe_enabled) {
        let node = &snap.nodes()[p.node].node;
        if let Some(e) = entry(snap, node, p, &mut h.warnings) {
            if let Some(cid) = e.client_id() {
                h.prefixes.insert(cid.prefix());
            }
            h.entries.push(e);
        }
    }
    h.entries.sort_by_key(|e| (e.node, e.port));
    h
}

fn entry(
    snap: &Snapshot,
    node: &Node,
    p: &IndexedPort,
    warnings: &mut Vec<String>,
) -> Option<HostEntry> {
    let is_this = |m: Option<crate::state::Match<'_>>| {
        m.and_then(|m| m.port).is_some_and(|q| std::ptr::eq(q, p))
    };
    let mac = p.port.address;
    let label = format!("node {} port {mac}", node.uuid);
    let mut notes = Vec::new();
    let owns_mac = is_this(snap.by_mac(&mac));
    if !owns_mac {
        notes.push(Note::MacTaken);
    }
    let ids = if p.is_infiniband() {
        let client_id = match p.client_id {
            Some(cid) if is_this(snap.by_guid(&cid.guid())) => Some(cid),
            Some(_) => {
                notes.push(Note::ClientIdTaken);
                None
            }
            None => {
                notes.push(Note::BadClientId);
                let raw = p
                    .port
                    .extra
                    .get(crate::model::node::Port::CLIENT_ID_KEY)
                    .map(|v| shown(&v.to_string()))
                    .unwrap_or_default();
                warnings.push(format!(
                    "{label}: InfiniBand port with an unusable extra.client-id {raw}: entry by IB MAC only, RFC 4390 firmware will get no reservation"
                ));
                None
            }
        };
        let ib_mac = owns_mac.then_some(mac);
        if client_id.is_none() && ib_mac.is_none() {
            warnings.push(format!(
                "{label}: every identity of this InfiniBand port belongs to another port; no entry"
            ));
            return None;
        }
        PortIds::Infiniband { client_id, ib_mac }
    } else if owns_mac {
        PortIds::Ethernet(mac)
    } else {
        warnings.push(format!(
            "{label}: the MAC belongs to another port; no entry"
        ));
        return None;
    };
    let ip = match p.fixed_ip {
        Some(ip) if is_this(snap.by_fixed_ip(ip)) => Some(ip),
        Some(ip) => {
            notes.push(Note::IpTaken(ip));
            warnings.push(format!(
                "{label}: fixed IP {ip} belongs to another port; no address for this one"
            ));
            None
        }
        None => None,
    };
    for n in &notes {
        if matches!(n, Note::MacTaken | Note::ClientIdTaken) {
            warnings.push(format!("{label}: {n}"));
        }
    }
    Some(HostEntry {
        node: node.uuid,
        port: mac,
        hostname: node.name.as_deref().and_then(Hostname::sanitize),
        ip,
        ids,
        notes,
    })
}

/// Generated text and what to tell the operator on stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Everything `ironpxe dhcp --format <format>` prints.
pub fn render(format: DhcpFormat, snap: &Snapshot, opts: &DhcpOptions) -> Rendered {
    let h = hosts(snap);
    let mut warnings = h.warnings.clone();
    let text = match format {
        DhcpFormat::Dnsmasq => dnsmasq(&h, opts),
        DhcpFormat::Isc => isc(&h, opts),
        DhcpFormat::Kea => {
            if h.entries.iter().any(HostEntry::is_infiniband) {
                warnings.push(format!("kea: {KEA_LIMITS}"));
            }
            kea(&h, opts)
        }
        DhcpFormat::Neutron => neutron(snap, &h, opts),
    };
    Rendered { text, warnings }
}

// ---- dnsmasq ----

/// The main-config snippet: client classification and boot files. Host entries go below it
/// or into a `--dhcp-hostsdir`; they never set tags (see the module notes).
pub fn dnsmasq_main(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = String::new();
    let server = match opts.next_server {
        Some(ip) => format!(",,{ip}"),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "# ironpxe: dnsmasq main configuration (include once, next to your dhcp-range)\n\
         # RFC 4390 (IPoIB) clients are tagged by their client-id's vendor prefix here, never in\n\
         # host entries: dnsmasq 2.90 crashes on SIGHUP once a client matched a hostsdir entry\n\
         # carrying set:<tag>."
    );
    for prefix in all_prefixes(h, opts) {
        let _ = writeln!(
            s,
            "dhcp-match=set:{TAG_IB},option:client-id,{}",
            hex_colon(&prefix)
        );
    }
    let _ = writeln!(s, "dhcp-broadcast=tag:{TAG_IB}");
    let _ = writeln!(s, "dhcp-userclass=set:{TAG_IPXE},iPXE");
    let _ = writeln!(s, "dhcp-match=set:{TAG_IPXE},175");
    for arch in UEFI_ARCHES {
        let _ = writeln!(s, "dhcp-match=set:{TAG_EFI},option:client-arch,{arch}");
    }
    let _ = writeln!(
        s,
        "dhcp-boot=tag:{TAG_IPXE},{}{server}",
        opts.http_url.boot_script()
    );
    let _ = writeln!(
        s,
        "dhcp-boot=tag:!{TAG_IPXE},tag:{TAG_EFI},{}{server}",
        opts.uefi_boot
    );
    let _ = writeln!(
        s,
        "dhcp-boot=tag:!{TAG_IPXE},tag:!{TAG_EFI},{}{server}",
        opts.bios_boot
    );
    s
}

fn all_prefixes(h: &Hosts, opts: &DhcpOptions) -> BTreeSet<[u8; 12]> {
    h.prefixes
        .iter()
        .chain(&opts.client_id_prefixes)
        .copied()
        .collect()
}

/// One `dhcp-host` value (the text right of `=`, as a hostsdir file holds it):
/// `[id:<client-id>,][<mac>,][<ip>,][<hostname>]`. One line carries both identities of an IB
/// port, so dnsmasq sees one host with one address, not a duplicate address.
pub fn dnsmasq_host(e: &HostEntry) -> String {
    let mut fields = Vec::new();
    if let Some(cid) = e.client_id() {
        fields.push(format!("id:{cid}"));
    }
    if let Some(mac) = e.mac() {
        fields.push(mac.to_string());
    }
    if let Some(ip) = e.ip {
        fields.push(ip.to_string());
    }
    if let Some(name) = &e.hostname {
        fields.push(name.to_string());
    }
    fields.join(",")
}

fn dnsmasq_comment(e: &HostEntry) -> String {
    let kind = if e.is_infiniband() {
        "InfiniBand: RFC 4390 client-id and upstream-iPXE IB MAC"
    } else {
        "Ethernet"
    };
    let mut s = format!("# node {} port {} ({kind})\n", e.node, e.port);
    for n in &e.notes {
        let _ = writeln!(s, "# {n}");
    }
    s
}

/// `--format dnsmasq`: the main snippet, then every host as a `dhcp-host=` line.
pub fn dnsmasq(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = dnsmasq_main(h, opts);
    s.push_str(
        "\n# ironpxe: host entries (sync_hostsdir writes the same, without \"dhcp-host=\", one file per node)\n",
    );
    for e in &h.entries {
        s.push_str(&dnsmasq_comment(e));
        let _ = writeln!(s, "dhcp-host={}", dnsmasq_host(e));
    }
    s
}

/// The `--dhcp-hostsdir` files for `snap`: file name → contents, one file per node with at
/// least one entry. Contents are comments and host values only (no tags, no other options).
pub fn hostsdir_files(snap: &Snapshot) -> (BTreeMap<String, String>, Vec<String>) {
    let h = hosts(snap);
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for e in &h.entries {
        let body = files
            .entry(format!("{HOSTSDIR_PREFIX}{}", e.node))
            .or_insert_with(|| format!("# ironpxe: node {} (generated; do not edit)\n", e.node));
        body.push_str(&dnsmasq_comment(e));
        body.push_str(&dnsmasq_host(e));
        body.push('\n');
    }
    (files, h.warnings)
}

/// What [`sync_hostsdir`] did, by file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// New files: dnsmasq reads them by itself (inotify).
    pub created: Vec<PathBuf>,
    /// Rewritten files: dnsmasq reads the new entries by itself but keeps the old ones.
    pub updated: Vec<PathBuf>,
    /// Stale files removed: dnsmasq keeps serving their entries until SIGHUP.
    pub deleted: Vec<PathBuf>,
    pub unchanged: usize,
    /// Ports left out or reduced, and why.
    pub warnings: Vec<String>,
}

impl SyncReport {
    /// True when dnsmasq still serves entries that are gone or changed: send it SIGHUP
    /// ([`sighup`]). New files alone need no signal.
    pub fn needs_sighup(&self) -> bool {
        !self.deleted.is_empty() || !self.updated.is_empty()
    }
}

/// Brings a dnsmasq `--dhcp-hostsdir` in line with `snap`: one file `ironpxe-<node-uuid>` per
/// node, each written to a dotfile (which dnsmasq ignores) and renamed into place only when
/// its contents change; files of nodes no longer in the state are deleted, as are leftover
/// dotfiles of an interrupted write. Files without the `ironpxe-` prefix are never touched.
/// The options are not needed by host entries today (boot logic lives in the main snippet);
/// they are taken so per-host options can be added without changing callers.
pub fn sync_hostsdir(dir: &Path, snap: &Snapshot, _opts: &DhcpOptions) -> io::Result<SyncReport> {
    fs::create_dir_all(dir)?;
    let (files, warnings) = hostsdir_files(snap);
    let mut report = SyncReport {
        warnings,
        ..SyncReport::default()
    };
    for (name, body) in &files {
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(old) if old == body.as_bytes() => report.unchanged += 1,
            Ok(_) => {
                write_atomic(dir, name, body)?;
                report.updated.push(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(dir, name, body)?;
                report.created.push(path);
            }
            Err(e) => return Err(e),
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let ours = name
            .strip_prefix(HOSTSDIR_PREFIX)
            .is_some_and(|uuid| NodeUuid::parse(uuid).is_ok());
        let leftover = name.starts_with(&format!(".{HOSTSDIR_PREFIX}")) && name.ends_with(".tmp");
        if leftover {
            remove_if_present(&entry.path())?;
        } else if ours && !files.contains_key(&name) && remove_if_present(&entry.path())? {
            report.deleted.push(entry.path());
        }
    }
    report.deleted.sort();
    Ok(report)
}

/// `ironpxe dhcp --hostsdir D [--dnsmasq-pid-file F]`: [`sync_hostsdir`], one line per file
/// touched (`created:`, `updated:`, `deleted:`, then `unchanged: N`), and [`sighup`] to the
/// PID in `pid_file` when [`SyncReport::needs_sighup`] (then a `sighup:` line).
pub fn sync_and_signal(
    dir: &Path,
    snap: &Snapshot,
    opts: &DhcpOptions,
    pid_file: Option<&Path>,
    out: &mut dyn io::Write,
) -> io::Result<SyncReport> {
    let r = sync_hostsdir(dir, snap, opts)?;
    for (what, paths) in [
        ("created", &r.created),
        ("updated", &r.updated),
        ("deleted", &r.deleted),
    ] {
        for p in paths {
            writeln!(out, "{what}: {}", p.display())?;
        }
    }
    writeln!(out, "unchanged: {}", r.unchanged)?;
    if let Some(pid_file) = pid_file.filter(|_| r.needs_sighup()) {
        sighup(pid_file).map_err(|e| io::Error::new(e.kind(), format!("SIGHUP dnsmasq: {e}")))?;
        writeln!(out, "sighup: {}", pid_file.display())?;
    }
    Ok(r)
}

fn write_atomic(dir: &Path, name: &str, body: &str) -> io::Result<()> {
    crate::support::fs::write_atomic(&dir.join(name), body.as_bytes())
}

/// Removes a file; `false` when it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends SIGHUP (`kill -HUP <pid>`) to the process whose PID is in `pid_file`, as dnsmasq
/// writes it. Refuses PIDs 0 and 1 and anything but one decimal number: `kill -HUP 0` or `-1`
/// would signal a whole process group or every process.
pub fn sighup(pid_file: &Path) -> io::Result<()> {
    let text = fs::read_to_string(pid_file)?;
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", pid_file.display()),
        )
    };
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(&format!("{:?} is not a PID", shown(t))));
    }
    let pid: u32 = t.parse().map_err(|_| invalid("PID out of range"))?;
    if pid <= 1 {
        return Err(invalid(&format!("refusing to signal PID {pid}")));
    }
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -HUP {pid} failed ({status})"
        )))
    }
}

// ---- ISC dhcpd ----

/// `--format isc`: boot logic and one `host` declaration per identity, for `dhcpd.conf`.
/// An IB port's client-id host forces broadcast replies (`always-broadcast on`).
pub fn isc(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# ironpxe: ISC dhcpd boot logic and host declarations (include in dhcpd.conf)"
    );
    let _ = writeln!(
        s,
        "option ironpxe-client-arch code 93 = unsigned integer 16;"
    );
    let arch = UEFI_ARCHES
        .iter()
        .map(|a| {
            format!(
                "option ironpxe-client-arch = {}",
                hex_colon(&a.to_be_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let _ = writeln!(
        s,
        "if exists user-class and option user-class = \"iPXE\" {{\n  filename \"{}\";\n}} elsif {arch} {{\n  filename \"{}\";\n}} else {{\n  filename \"{}\";\n}}",
        opts.http_url.boot_script(),
        opts.uefi_boot,
        opts.bios_boot
    );
    if let Some(ip) = opts.next_server {
        let _ = writeln!(s, "next-server {ip};");
    }
    for e in &h.entries {
        let host = |s: &mut String, suffix: &str, ident: String, extra: &str| {
            let _ = writeln!(s, "\nhost {HOSTSDIR_PREFIX}{}{suffix} {{", e.port.raw());
            s.push_str(&indent(&dnsmasq_comment(e)));
            let _ = writeln!(s, "  {ident};");
            s.push_str(extra);
            if let Some(ip) = e.ip {
                let _ = writeln!(s, "  fixed-address {ip};");
            }
            if let Some(name) = &e.hostname {
                let _ = writeln!(s, "  option host-name \"{name}\";");
            }
            s.push_str("}\n");
        };
        if let Some(cid) = e.client_id() {
            host(
                &mut s,
                "-cid",
                format!("option dhcp-client-identifier {cid}"),
                "  always-broadcast on;\n",
            );
        }
        if let Some(mac) = e.mac() {
            host(&mut s, "", format!("hardware ethernet {mac}"), "");
        }
    }
    s
}

fn indent(comment: &str) -> String {
    comment.lines().map(|l| format!("  {l}\n")).collect()
}

// ---- Kea ----

/// What Kea cannot do for InfiniBand, said in the fragment and on stderr.
pub const KEA_LIMITS: &str = "Kea's raw sockets handle Ethernet only: RFC 4390 IPoIB clients (hardware type 32) need \"dhcp-socket-type\": \"udp\" or a relay, and Kea cannot force broadcast replies (no dhcp-broadcast); IPoIB firmware sets the broadcast flag itself";

/// `--format kea`: a `Dhcp4` fragment with boot classes and global reservations. An IB port has
/// two reservations (client-id, hw-address) with one address, which needs
/// `ip-reservations-unique: false`.
pub fn kea(h: &Hosts, opts: &DhcpOptions) -> String {
    let arch = UEFI_ARCHES
        .iter()
        .map(|a| format!("option[93].hex == 0x{a:04x}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let classes = json!([
        {
            "name": TAG_IPXE,
            "test": "substring(option[77].hex,0,4) == 'iPXE' or option[175].exists",
            "boot-file-name": opts.http_url.boot_script(),
        },
        {
            "name": TAG_EFI,
            "test": format!("not member('{TAG_IPXE}') and ({arch})"),
            "boot-file-name": opts.uefi_boot.as_str(),
        },
        {
            "name": "ironpxe-bios",
            "test": format!("not member('{TAG_IPXE}') and not member('{TAG_EFI}')"),
            "boot-file-name": opts.bios_boot.as_str(),
        },
    ]);
    let mut reservations = Vec::new();
    for e in &h.entries {
        let mut add = |key: &str, value: String| {
            let mut r = Map::new();
            r.insert(key.into(), Value::String(value));
            if let Some(ip) = e.ip {
                r.insert("ip-address".into(), Value::String(ip.to_string()));
            }
            if let Some(name) = &e.hostname {
                r.insert("hostname".into(), Value::String(name.to_string()));
            }
            let mut comment = format!("ironpxe: node {} port {}", e.node, e.port);
            for n in &e.notes {
                let _ = write!(comment, "; {n}");
            }
            r.insert("comment".into(), Value::String(comment));
            reservations.push(Value::Object(r));
        };
        if let Some(cid) = e.client_id() {
            add("client-id", cid.to_string());
        }
        if let Some(mac) = e.mac() {
            add("hw-address", mac.to_string());
        }
    }
    let mut dhcp4 = Map::new();
    dhcp4.insert(
        "comment".into(),
        Value::String(format!(
            "ironpxe: merge into your Dhcp4 configuration. {KEA_LIMITS}"
        )),
    );
    dhcp4.insert(
        "host-reservation-identifiers".into(),
        json!(["hw-address", "client-id"]),
    );
    dhcp4.insert("reservations-global".into(), Value::Bool(true));
    dhcp4.insert("reservations-in-subnet".into(), Value::Bool(true));
    dhcp4.insert("ip-reservations-unique".into(), Value::Bool(false));
    if let Some(ip) = opts.next_server {
        dhcp4.insert("next-server".into(), Value::String(ip.to_string()));
    }
    dhcp4.insert("client-classes".into(), classes);
    dhcp4.insert("reservations".into(), Value::Array(reservations));
    let mut text = serde_json::to_string_pretty(&json!({ "Dhcp4": dhcp4 }))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

// ---- Neutron (read-only) ----

/// Whether Ironic's boot interface for `node` hands out the iPXE (`tag:ipxe`) options, the
/// PXE ones, or none. A node without `boot_interface` counts as iPXE (Ironic's default).
fn neutron_boot(node: &Node) -> Option<bool> {
    match node.boot_interface.as_deref() {
        None => Some(true),
        Some(bi) if bi.contains("ipxe") => Some(true),
        Some(bi) if bi.contains("pxe") => Some(false),
        Some(_) => None,
    }
}

/// Ironic's boot mode: a `boot_mode` capability (instance first), else `uefi` (its default).
fn uefi(node: &Node) -> bool {
    let caps = [
        node.instance_info.capabilities.as_ref(),
        node.properties.capabilities.as_ref(),
    ];
    caps.into_iter()
        .flatten()
        .find_map(|c| crate::model::boot::capability(c, "boot_mode"))
        .is_none_or(|m| m != "bios")
}

/// `--format neutron`: per provisioning port, the `extra_dhcp_opts` Ironic itself would set on
/// its Neutron port (`61` client-id for IB ports, then the boot options of
/// `pxe_utils.dhcp_options_for_instance`), as JSON. ironpxe never writes to Neutron. Boot file
/// names are the ones given here (Ironic's `[pxe]` bootfile settings should match them); the
/// PXE interface's `210` (TFTP path prefix) is left out: ironpxe has no TFTP root to name.
pub fn neutron(snap: &Snapshot, h: &Hosts, opts: &DhcpOptions) -> String {
    let mut ports = Vec::new();
    for e in &h.entries {
        let Some(node) = snap.node(&e.node).map(|n| &n.node) else {
            continue;
        };
        let opt = |name: &str, value: String| json!({"opt_name": name, "opt_value": value, "ip_version": 4});
        let mut dhcp_opts = Vec::new();
        let mut notes: Vec<String> = e.notes.iter().map(ToString::to_string).collect();
        if let Some(cid) = e.client_id() {
            dhcp_opts.push(json!({"opt_name": "61", "opt_value": cid.to_string()}));
        }
        let boot_file = if uefi(node) {
            &opts.uefi_boot
        } else {
            &opts.bios_boot
        };
        match neutron_boot(node) {
            Some(true) => {
                dhcp_opts.push(opt("tag:!ipxe,67", boot_file.to_string()));
                dhcp_opts.push(opt("tag:ipxe,67", opts.http_url.boot_script()));
            }
            Some(false) => dhcp_opts.push(opt("67", boot_file.to_string())),
            None => notes.push(
                "boot interface does not boot from the network: Ironic sets no boot options".into(),
            ),
        }
        match (neutron_boot(node), opts.next_server) {
            (Some(_), Some(tftp)) => {
                for name in ["66", "150", "server-ip-address"] {
                    dhcp_opts.push(opt(name, tftp.to_string()));
                }
            }
            (Some(_), None) => {
                notes.push("no next-server given: 66, 150 and server-ip-address left out".into())
            }
            (None, _) => {}
        }
        let mut port = Map::new();
        port.insert("node".into(), Value::String(e.node.to_string()));
        if let Some(name) = &e.hostname {
            port.insert("hostname".into(), Value::String(name.to_string()));
        }
        port.insert("port".into(), Value::String(e.port.to_string()));
        port.insert("infiniband".into(), Value::Bool(e.is_infiniband()));
        port.insert("extra_dhcp_opts".into(), Value::Array(dhcp_opts));
        if !notes.is_empty() {
            port.insert("notes".into(), json!(notes));
        }
        ports.push(Value::Object(port));
    }
    let mut text = serde_json::to_string_pretty(&Value::Array(ports))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

// ---- helpers ----

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Untrusted text for a message: at most [`MAX_SHOWN`] characters, escaped by `{:?}` when shown.
fn shown(s: &str) -> String {
    s.chars().take(MAX_SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node::StateDoc;
    use crate::state::{IndexConfig, SourceId, Store, Update};
    use std::sync::Arc;

    const IB_UUID: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
    const ETH_UUID: &str = "54ccbcf7-e036-4d44-91be-397df22a5ca5";
    const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
    const IB_MAC: &str = "7c:fe:90:29:26:52";
    const ETH_MAC: &str = "52:54:00:12:34:56";

    fn snap(json: &str) -> Arc<Snapshot> {
        let store = Store::new(IndexConfig::default());
        let doc = StateDoc::from_slice(json.as_bytes()).expect("state parses");
        store.apply(vec![(
            SourceId::File("t.json".into()),
            Update::Replace(doc),
        )]);
        store.current()
    }

    /// A node with `ports` (JSON objects), name and boot interface given as JSON values.
    fn node(uuid: &str, name: &str, boot: &str, ports: &[String]) -> String {
        format!(
            r#"{{"uuid": "{uuid}", "name": {name}, "boot_interface": {boot}, "ports": [{}]}}"#,
            ports.join(",")
        )
    }

    fn port(mac: &str, extra: &str) -> String {
        format!(r#"{{"address": "{mac}", "extra": {{{extra}}}}}"#)
    }

    fn listing(nodes: &[String]) -> Arc<Snapshot> {
        snap(&format!(r#"{{"nodes": [{}]}}"#, nodes.join(",")))
    }

    /// The IB node (client-id, fixed IP) and the Ethernet node (fixed IP).
    fn two_nodes() -> Arc<Snapshot> {
        listing(&[
            node(
                IB_UUID,
                r#""ib-node-1""#,
                r#""pxe""#,
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
                )],
            ),
            node(
                ETH_UUID,
                r#""eth-node-1""#,
                r#""ipxe""#,
                &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
            ),
        ])
    }

    fn opts() -> DhcpOptions {
        let mut o = DhcpOptions::new(HttpUrl::new("http://192.0.2.1:8080/").expect("url"));
        o.next_server = Some(Ipv4Addr::new(192, 0, 2, 7));
        o
    }

    fn mac(s: &str) -> Mac {
        Mac::parse(s).expect("mac")
    }

    fn host_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("dhcp-host="))
            .collect()
    }

    #[test]
    fn formats_parse_by_name() {
        for f in DhcpFormat::ALL {
            assert_eq!(f.name().parse::<DhcpFormat>(), Ok(f));
        }
        assert!(matches!(
            "pxelinux".parse::<DhcpFormat>(),
            Err(DhcpError::UnknownFormat(_))
        ));
    }

    #[test]
    fn boot_files_and_urls_are_validated() {
        for ok in [
            "pxelinux.0",
            "snponly.efi",
            "ipxe/undionly.kpxe",
            "grub+x64.efi",
        ] {
            assert_eq!(BootFile::new(ok).expect(ok).as_str(), ok);
        }
        let long = "a".repeat(128);
        for bad in [
            "",
            "-x",
            "a,b",
            "a b",
            "a\nb",
            "a\"b",
            "a#b",
            "a;b",
            long.as_str(),
        ] {
            assert!(BootFile::new(bad).is_err(), "{bad:?} accepted");
        }
        let u = HttpUrl::new(" http://192.0.2.1:8080/ ").expect("url");
        assert_eq!(u.as_str(), "http://192.0.2.1:8080");
        assert_eq!(u.boot_script(), "http://192.0.2.1:8080/boot.ipxe");
        assert!(HttpUrl::new("https://[2001:db8::1]:8443/pxe?a=1&b=%20").is_ok());
        let long = format!("http://{}", "a".repeat(120));
        for bad in [
            "ftp://x",
            "http://",
            "http:///x",
            "192.0.2.1",
            "http://a,b",
            "http://a b",
            "http://a\nb",
            "http://a\"",
            "http://a#b",
            "http://a;b",
            "http://a{b}",
            "http://a\\b",
            long.as_str(),
        ] {
            assert!(HttpUrl::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostnames_are_sanitized_to_one_safe_label() {
        let cases = [
            ("ib-node-1", Some("ib-node-1")),
            ("Node_01.Example.COM", Some("node-01-example-com")),
            ("  spaced   out  ", Some("spaced-out")),
            ("3600", Some("node-3600")),
            ("12h", Some("node-12h")),
            ("ignore", Some("node-ignore")),
            ("IGNORE", Some("node-ignore")),
            ("infinite", Some("node-infinite")),
            ("-lead", Some("lead")),
            ("ünïcode", Some("n-code")),
            (
                "x,set:evil\ndhcp-option=3",
                Some("x-set-evil-dhcp-option-3"),
            ),
            ("a\"; }\nhost evil {", Some("a-host-evil")),
            ("", None),
            ("---", None),
            ("日本", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                Hostname::sanitize(name).as_ref().map(Hostname::as_str),
                want,
                "{name:?}"
            );
        }
        let long =
            Hostname::sanitize(&format!("{}-{}", "a".repeat(62), "b".repeat(10))).expect("long");
        assert_eq!(long.as_str(), "a".repeat(62));
        let digits = Hostname::sanitize(&"9".repeat(80)).expect("digits");
        assert_eq!(digits.as_str().len(), 63);
        assert!(digits.as_str().starts_with("node-9"));
    }

    #[test]
    fn ethernet_and_infiniband_ports_get_typed_entries() {
        let h = hosts(&two_nodes());
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        assert_eq!(h.entries.len(), 2);
        let eth = &h.entries[0];
        assert_eq!(eth.node.to_string(), ETH_UUID);
        assert_eq!(eth.ids, PortIds::Ethernet(mac(ETH_MAC)));
        assert_eq!(dnsmasq_host(eth), "52:54:00:12:34:56,192.0.2.20,eth-node-1");
        let ib = &h.entries[1];
        assert!(ib.is_infiniband());
        assert_eq!(ib.client_id().map(|c| c.to_string()).as_deref(), Some(CID));
        assert_eq!(ib.mac(), Some(mac(IB_MAC)));
        assert_eq!(
            dnsmasq_host(ib),
            format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1")
        );
        assert_eq!(
            h.prefixes.iter().copied().collect::<Vec<_>>(),
            vec![MELLANOX_CLIENT_ID_PREFIX]
        );
    }

    #[test]
    fn bad_client_id_gets_ib_mac_only_with_note_and_warning() {
        let s = listing(&[node(
            IB_UUID,
            r#""ib""#,
            "null",
            &[port(IB_MAC, r#""client-id": "ff:00:zz\nset:x""#)],
        )]);
        let h = hosts(&s);
        let e = &h.entries[0];
        assert_eq!(
            e.ids,
            PortIds::Infiniband {
                client_id: None,
                ib_mac: Some(mac(IB_MAC))
            }
        );
        assert_eq!(e.notes, vec![Note::BadClientId]);
        assert_eq!(dnsmasq_host(e), format!("{IB_MAC},ib"));
        assert_eq!(h.warnings.len(), 1);
        assert!(
            h.warnings[0].contains("unusable extra.client-id"),
            "{}",
            h.warnings[0]
        );
        assert!(!h.warnings[0].contains('\n'), "raw text escaped");
        let text = dnsmasq(&h, &opts());
        assert!(text.contains("# extra.client-id did not parse"), "{text}");
        assert!(
            !text.contains("zz"),
            "raw client-id never reaches the file:\n{text}"
        );
    }

    #[test]
    fn entry_without_ip_or_name_is_identity_only() {
        let s = listing(&[node(
            IB_UUID,
            "null",
            "null",
            &[port(IB_MAC, &format!(r#""client-id": "{CID}""#))],
        )]);
        let e = &hosts(&s).entries[0];
        assert_eq!((e.ip, e.hostname.clone()), (None, None));
        assert_eq!(dnsmasq_host(e), format!("id:{CID},{IB_MAC}"));
    }

    #[test]
    fn duplicates_follow_the_index_lower_uuid_wins() {
        let low = "00000000-0000-4000-8000-000000000001";
        let high = "ffffffff-0000-4000-8000-000000000002";
        let s = listing(&[
            node(
                high,
                r#""high""#,
                "null",
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
                )],
            ),
            node(
                low,
                r#""low""#,
                "null",
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
                )],
            ),
        ]);
        let h = hosts(&s);
        assert_eq!(h.entries.len(), 1, "{:?}", h.entries);
        assert_eq!(h.entries[0].node.to_string(), low);
        assert!(
            h.warnings.iter().any(|w| w.contains(high)),
            "{:?}",
            h.warnings
        );
        // An Ethernet port with the IB port's 6 bytes wins the MAC; the IB port keeps its client-id.
        let s = listing(&[
            node(
                low,
                r#""eth""#,
                "null",
                &[port(IB_MAC, r#""fixed_ip": "192.0.2.20""#)],
            ),
            node(
                high,
                r#""ib""#,
                "null",
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.20""#),
                )],
            ),
        ]);
        let h = hosts(&s);
        let ib = h.entries.iter().find(|e| e.is_infiniband()).expect("ib");
        assert_eq!(ib.mac(), None);
        assert_eq!(ib.ip, None, "the fixed IP went to the lower UUID");
        assert!(ib.notes.contains(&Note::MacTaken));
        assert!(ib
            .notes
            .contains(&Note::IpTaken(Ipv4Addr::new(192, 0, 2, 20))));
        assert_eq!(dnsmasq_host(ib), format!("id:{CID},ib"));
    }

    #[test]
    fn ports_without_pxe_are_left_out() {
        let s = snap(&format!(
            r#"{{"uuid": "{ETH_UUID}", "ports": [{{"address": "{ETH_MAC}", "pxe_enabled": false}}]}}"#
        ));
        assert!(hosts(&s).entries.is_empty());
    }

    #[test]
    fn dnsmasq_main_tags_ib_by_prefix_and_boots_by_client_type() {
        let other = "ff:00:00:00:00:00:02:00:00:15:4d:00:11:22:33:44:55:66:77:88";
        let s = listing(&[node(
            ETH_UUID,
            r#""n""#,
            "null",
            &[port(
                "11:22:33:66:77:88",
                &format!(r#""client-id": "{other}""#),
            )],
        )]);
        let h = hosts(&s);
        let main = dnsmasq_main(&h, &opts());
        assert!(main.contains(
            "dhcp-match=set:ironpxe-ib,option:client-id,ff:00:00:00:00:00:02:00:00:02:c9:00\n"
        ));
        assert!(main.contains(
            "dhcp-match=set:ironpxe-ib,option:client-id,ff:00:00:00:00:00:02:00:00:15:4d:00\n"
        ));
        for line in [
            "dhcp-broadcast=tag:ironpxe-ib",
            "dhcp-userclass=set:ironpxe-ipxe,iPXE",
            "dhcp-match=set:ironpxe-ipxe,175",
            "dhcp-match=set:ironpxe-efi,option:client-arch,7",
            "dhcp-match=set:ironpxe-efi,option:client-arch,9",
            "dhcp-boot=tag:ironpxe-ipxe,http://192.0.2.1:8080/boot.ipxe,,192.0.2.7",
            "dhcp-boot=tag:!ironpxe-ipxe,tag:ironpxe-efi,snponly.efi,,192.0.2.7",
            "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-efi,pxelinux.0,,192.0.2.7",
        ] {
            assert!(main.lines().any(|l| l == line), "{line} missing:\n{main}");
        }
        let mut o = opts();
        o.next_server = None;
        o.bios_boot = BootFile::new("undionly.kpxe").expect("file");
        let main = dnsmasq_main(&h, &o);
        assert!(main
            .lines()
            .any(|l| l == "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-efi,undionly.kpxe"));
        assert!(!main.contains(",,"), "{main}");
    }

    #[test]
    fn dnsmasq_output_is_main_snippet_then_untagged_hosts() {
        let text = dnsmasq(&hosts(&two_nodes()), &opts());
        let hosts = host_lines(&text);
        assert_eq!(
            hosts,
            vec![
                "52:54:00:12:34:56,192.0.2.20,eth-node-1".to_owned(),
                format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1"),
            ]
        );
        assert!(hosts
            .iter()
            .all(|l| !l.contains("set:") && !l.contains("tag:")));
        let first_host = text.find("dhcp-host=").expect("hosts");
        assert!(text.rfind("dhcp-boot=").expect("boot") < first_host);
    }

    #[test]
    fn isc_declares_one_host_per_identity() {
        let text = isc(&hosts(&two_nodes()), &opts());
        assert!(text.contains("option ironpxe-client-arch code 93 = unsigned integer 16;"));
        assert!(text.contains(
            "if exists user-class and option user-class = \"iPXE\" {\n  filename \"http://192.0.2.1:8080/boot.ipxe\";"
        ));
        assert!(text.contains(
            "} elsif option ironpxe-client-arch = 00:07 or option ironpxe-client-arch = 00:09 {\n  filename \"snponly.efi\";"
        ));
        assert!(text.contains("} else {\n  filename \"pxelinux.0\";\n}"));
        assert!(text.contains("next-server 192.0.2.7;"));
        let cid_host = format!(
            "host ironpxe-7cfe90292652-cid {{\n  # node {IB_UUID} port {IB_MAC} (InfiniBand: RFC 4390 client-id and upstream-iPXE IB MAC)\n  option dhcp-client-identifier {CID};\n  always-broadcast on;\n  fixed-address 192.0.2.10;\n  option host-name \"ib-node-1\";\n}}"
        );
        assert!(text.contains(&cid_host), "{text}");
        assert!(text.contains(
            "host ironpxe-7cfe90292652 {\n  # node d962231e-c2c4-415e-a7f1-1b765be00bda port 7c:fe:90:29:26:52 (InfiniBand: RFC 4390 client-id and upstream-iPXE IB MAC)\n  hardware ethernet 7c:fe:90:29:26:52;\n  fixed-address 192.0.2.10;"
        ));
        assert!(text.contains(
            "host ironpxe-525400123456 {\n  # node 54ccbcf7-e036-4d44-91be-397df22a5ca5 port 52:54:00:12:34:56 (Ethernet)\n  hardware ethernet 52:54:00:12:34:56;\n  fixed-address 192.0.2.20;\n  option host-name \"eth-node-1\";\n}"
        ));
        assert_eq!(text.matches("always-broadcast").count(), 1);
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn kea_reserves_both_ib_identities_with_one_address() {
        let h = hosts(&two_nodes());
        let v: Value = serde_json::from_str(&kea(&h, &opts())).expect("json");
        let d = &v["Dhcp4"];
        assert_eq!(d["ip-reservations-unique"], false);
        assert_eq!(d["next-server"], "192.0.2.7");
        assert!(d["comment"]
            .as_str()
            .expect("comment")
            .contains("dhcp-socket-type"));
        let r = d["reservations"].as_array().expect("reservations");
        assert_eq!(r.len(), 3);
        let by = |k: &str, v: &str| r.iter().find(|x| x[k] == v).expect(v);
        assert_eq!(by("client-id", CID)["ip-address"], "192.0.2.10");
        assert_eq!(by("hw-address", IB_MAC)["ip-address"], "192.0.2.10");
        assert_eq!(by("hw-address", ETH_MAC)["ip-address"], "192.0.2.20");
        assert_eq!(by("hw-address", ETH_MAC)["hostname"], "eth-node-1");
        let classes = d["client-classes"].as_array().expect("classes");
        assert_eq!(
            classes[0]["boot-file-name"],
            "http://192.0.2.1:8080/boot.ipxe"
        );
        assert_eq!(classes[1]["boot-file-name"], "snponly.efi");
        assert_eq!(classes[2]["boot-file-name"], "pxelinux.0");
        let r = render(DhcpFormat::Kea, &two_nodes(), &opts());
        assert!(r.warnings.iter().any(|w| w.starts_with("kea: ")));
    }

    #[test]
    fn neutron_lists_what_ironic_would_set() {
        let s = listing(&[
            node(
                IB_UUID,
                r#""ib-node-1""#,
                r#""pxe""#,
                &[port(IB_MAC, &format!(r#""client-id": "{CID}""#))],
            ),
            node(ETH_UUID, r#""eth""#, r#""ipxe""#, &[port(ETH_MAC, "")]),
            node(
                "11111111-2222-4333-8444-555555555555",
                r#""vmedia""#,
                r#""redfish-virtual-media""#,
                &[port("52:54:00:00:00:09", "")],
            ),
        ]);
        let v: Value =
            serde_json::from_str(&render(DhcpFormat::Neutron, &s, &opts()).text).expect("json");
        let ports = v.as_array().expect("array");
        let find = |p: &str| ports.iter().find(|x| x["port"] == p).expect(p);
        let names = |x: &Value| -> Vec<(String, String)> {
            x["extra_dhcp_opts"]
                .as_array()
                .expect("opts")
                .iter()
                .map(|o| {
                    (
                        o["opt_name"].as_str().expect("name").to_owned(),
                        o["opt_value"].as_str().expect("value").to_owned(),
                    )
                })
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            names(find(IB_MAC)),
            vec![
                pair("61", CID),
                pair("67", "snponly.efi"),
                pair("66", "192.0.2.7"),
                pair("150", "192.0.2.7"),
                pair("server-ip-address", "192.0.2.7"),
            ]
        );
        assert_eq!(find(IB_MAC)["infiniband"], true);
        assert_eq!(
            names(find(ETH_MAC))[..2],
            [
                pair("tag:!ipxe,67", "snponly.efi"),
                pair("tag:ipxe,67", "http://192.0.2.1:8080/boot.ipxe"),
            ]
        );
        let vm = find("52:54:00:00:00:09");
        assert!(names(vm).is_empty());
        assert!(vm["notes"][0]
            .as_str()
            .expect("note")
            .contains("sets no boot options"));
        // boot_mode:bios picks the BIOS boot file.
        let s = snap(&format!(
            r#"{{"uuid": "{ETH_UUID}", "boot_interface": "ipxe", "properties": {{"capabilities": "boot_mode:bios"}}, "ports": [{{"address": "{ETH_MAC}"}}]}}"#
        ));
        let v: Value =
            serde_json::from_str(&render(DhcpFormat::Neutron, &s, &opts()).text).expect("json");
        assert_eq!(v[0]["extra_dhcp_opts"][0]["opt_value"], "pxelinux.0");
    }

    #[test]
    fn hostile_node_names_never_inject_in_any_format() {
        let evil = [
            "x,set:evil\ndhcp-option=3,6.6.6.6",
            "a\"; }\nhost evil { hardware ethernet 66:66:66:66:66:66; }",
            "ignore",
            "3600",
            "\",\"hw-address\":\"66:66:66:66:66:66",
            "#comment\r\ndhcp-boot=evil",
        ];
        for name in evil {
            let s = listing(&[node(
                IB_UUID,
                &serde_json::to_string(name).expect("json"),
                "null",
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
                )],
            )]);
            let want = Hostname::sanitize(name).expect("some name survives");
            for f in DhcpFormat::ALL {
                let text = render(f, &s, &opts()).text;
                // The name's words appear only inside the sanitized host name.
                let rest = text.replace(want.as_str(), "");
                assert!(
                    !rest.contains("evil") && !rest.contains("6.6.6.6"),
                    "{f}: {text}"
                );
                assert!(!text.contains("66:66:66:66:66:66"), "{f}: {text}");
                assert!(!text.contains('\r'), "{f}");
                match f {
                    DhcpFormat::Dnsmasq => {
                        let hosts = host_lines(&text);
                        assert_eq!(
                            hosts,
                            vec![format!("id:{CID},{IB_MAC},192.0.2.10,{want}")],
                            "{name:?}"
                        );
                        for l in text.lines() {
                            assert!(
                                l.is_empty() || l.starts_with('#') || l.starts_with("dhcp-"),
                                "{l:?}"
                            );
                        }
                    }
                    DhcpFormat::Isc => {
                        assert_eq!(text.matches("\nhost ").count(), 2, "{text}");
                        assert_eq!(
                            text.matches(&format!("option host-name \"{want}\";"))
                                .count(),
                            2
                        );
                        assert_eq!(text.matches('"').count() % 2, 0);
                    }
                    DhcpFormat::Kea | DhcpFormat::Neutron => {
                        let v: Value = serde_json::from_str(&text).expect("json");
                        assert!(text.contains(&format!("\"hostname\": \"{want}\"")), "{v}");
                    }
                }
            }
        }
    }

    #[test]
    fn hostsdir_sync_writes_renames_and_deletes() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("hosts");
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join("operator-static"), "aa:bb:cc:dd:ee:ff,10.0.0.1\n").expect("foreign");
        fs::write(d.join(format!(".{HOSTSDIR_PREFIX}{ETH_UUID}.tmp")), "half").expect("leftover");
        let r = sync_hostsdir(&d, &two_nodes(), &opts()).expect("sync");
        assert_eq!(r.created.len(), 2);
        assert!(r.deleted.is_empty() && r.updated.is_empty() && !r.needs_sighup());
        let ib_file = d.join(format!("{HOSTSDIR_PREFIX}{IB_UUID}"));
        let body = fs::read_to_string(&ib_file).expect("ib file");
        let lines: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            vec![format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1")]
        );
        assert!(!body.contains("dhcp-host=") && !body.contains("set:"));
        let mut names: Vec<String> = fs::read_dir(&d)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                format!("{HOSTSDIR_PREFIX}{ETH_UUID}"),
                format!("{HOSTSDIR_PREFIX}{IB_UUID}"),
                "operator-static".to_owned(),
            ],
            "leftover dotfile removed, foreign file kept"
        );

        let r = sync_hostsdir(&d, &two_nodes(), &opts()).expect("again");
        assert_eq!(r.unchanged, 2);
        assert!(!r.needs_sighup());

        // A changed address rewrites one file: dnsmasq keeps the old entry until SIGHUP.
        let moved = listing(&[
            node(
                IB_UUID,
                r#""ib-node-1""#,
                "null",
                &[port(
                    IB_MAC,
                    &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.11""#),
                )],
            ),
            node(
                ETH_UUID,
                r#""eth-node-1""#,
                "null",
                &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
            ),
        ]);
        let r = sync_hostsdir(&d, &moved, &opts()).expect("update");
        assert_eq!(r.updated, vec![ib_file.clone()]);
        assert!(r.needs_sighup());

        // The IB node leaves: its file goes.
        let only_eth = listing(&[node(
            ETH_UUID,
            r#""eth-node-1""#,
            "null",
            &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
        )]);
        let r = sync_hostsdir(&d, &only_eth, &opts()).expect("delete");
        assert_eq!(r.deleted, vec![ib_file.clone()]);
        assert!(r.needs_sighup());
        assert!(!ib_file.exists());
        assert!(d.join("operator-static").exists());
    }

    #[test]
    fn sighup_refuses_anything_but_one_real_pid() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("pid");
        for bad in ["", "0", "1", "-1", " 12 34", "abc", "99999999999"] {
            fs::write(&f, bad).expect("write");
            let e = sighup(&f).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}: {e}");
        }
        assert!(sighup(&dir.path().join("missing")).is_err());
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        fs::write(&f, format!("{}\n", child.id())).expect("write");
        sighup(&f).expect("sighup");
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(1), "ended by SIGHUP");
        // The PID is gone now: kill fails and says so.
        assert!(sighup(&f).is_err());
    }

    #[test]
    fn options_default_from_config() {
        let mut cfg = Config::default();
        let (o, warnings) =
            DhcpOptions::from_config(&cfg, None, None, DEFAULT_BIOS_BOOT, DEFAULT_UEFI_BOOT)
                .expect("defaults");
        assert_eq!(o.http_url.as_str(), "http://127.0.0.1:8080");
        assert_eq!(o.next_server, None);
        assert_eq!(o.client_id_prefixes, vec![MELLANOX_CLIENT_ID_PREFIX]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        cfg.public_url = Some("http://pxe.example:8080/".into());
        cfg.tftp_listen = vec![
            "127.0.0.1:69".parse().expect("addr"),
            "192.0.2.5:69".parse().expect("addr"),
        ];
        let (o, warnings) =
            DhcpOptions::from_config(&cfg, None, None, "undionly.kpxe", DEFAULT_UEFI_BOOT)
                .expect("config");
        assert_eq!(
            o.http_url.boot_script(),
            "http://pxe.example:8080/boot.ipxe"
        );
        assert_eq!(o.next_server, Some(Ipv4Addr::new(192, 0, 2, 5)));
        assert_eq!(o.bios_boot.as_str(), "undionly.kpxe");
        assert!(warnings.is_empty(), "{warnings:?}");
        let (o, _) = DhcpOptions::from_config(
            &cfg,
            Some("http://192.0.2.9"),
            Some(Ipv4Addr::new(192, 0, 2, 8)),
            DEFAULT_BIOS_BOOT,
            DEFAULT_UEFI_BOOT,
        )
        .expect("flags win");
        assert_eq!(o.http_url.as_str(), "http://192.0.2.9");
        assert_eq!(o.next_server, Some(Ipv4Addr::new(192, 0, 2, 8)));
        assert!(DhcpOptions::from_config(&cfg, Some("http://a b"), None, "x", "y").is_err());
        assert!(DhcpOptions::from_config(&cfg, None, None, "a,b", "y").is_err());
    }
}
