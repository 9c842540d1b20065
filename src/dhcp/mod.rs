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

mod dnsmasq;
mod hostsdir;
mod isc;
mod kea;
mod neutron;

pub use dnsmasq::{dnsmasq, dnsmasq_host, dnsmasq_main};
pub use hostsdir::{hostsdir_files, sighup, sync_and_signal, sync_hostsdir, SyncReport};
pub use isc::isc;
pub use kea::{kea, KEA_LIMITS};
pub use neutron::neutron;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};

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

    /// Options from where ironpxe listens and the operator's choices. The HTTP URL defaults
    /// to `public_url`, else `http://<http_listen>`; next-server to the first `tftp_listen`
    /// IPv4 address that is neither loopback nor unspecified. Returns warnings about defaults
    /// clients cannot use.
    pub fn derive(
        at: &Listeners,
        http_url: Option<&str>,
        next_server: Option<Ipv4Addr>,
        bios_boot: &str,
        uefi_boot: &str,
    ) -> Result<(DhcpOptions, Vec<String>), DhcpError> {
        let mut warnings = Vec::new();
        let url = match http_url
            .map(str::to_owned)
            .or_else(|| at.public_url.clone())
        {
            Some(u) => u,
            None => {
                let ip = at.http_listen.ip();
                if ip.is_loopback() || ip.is_unspecified() {
                    warnings.push(format!(
                        "no --http-url or public_url: iPXE clients are sent to http://{}, which they cannot reach",
                        at.http_listen
                    ));
                }
                format!("http://{}", at.http_listen)
            }
        };
        let explicit = next_server.is_some();
        let next_server = next_server.or_else(|| {
            at.tftp_listen.iter().find_map(|a| match a.ip() {
                IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
                _ => None,
            })
        });
        if next_server.is_none() {
            warnings.push(
                "no --next-server and no routable tftp_listen address: clients load boot files from the DHCP server's own address".into(),
            );
        }
        if !explicit && at.tftp_listen.iter().all(|a| a.port() != 69) {
            warnings.push(
                "no tftp_listen address uses port 69: PXE firmware always asks on port 69".into(),
            );
        }
        let opts = DhcpOptions {
            http_url: HttpUrl::new(&url)?,
            next_server,
            bios_boot: BootFile::new(bios_boot)?,
            uefi_boot: BootFile::new(uefi_boot)?,
            client_id_prefixes: vec![at.client_id_prefix],
        };
        Ok((opts, warnings))
    }
}

/// Where ironpxe answers, as the DHCP output must point clients at it (from the settings
/// file's top level and `[index]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The base URL clients use, when it is not `http://<http_listen>`.
    pub public_url: Option<String>,
    pub http_listen: SocketAddr,
    pub tftp_listen: Vec<SocketAddr>,
    /// The vendor prefix of client-ids derived from a GUID.
    pub client_id_prefix: [u8; 12],
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
pub struct Generated {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Everything `ironpxe dhcp --format <format>` prints.
pub fn generate(format: DhcpFormat, snap: &Snapshot, opts: &DhcpOptions) -> Generated {
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
    Generated { text, warnings }
}

// ---- helpers ----

fn entry_comment(e: &HostEntry) -> String {
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
mod tests;
