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
//! Boot logic, by client (the same in every format):
//! - iPXE (user class `iPXE` or option 175): `<http_url>/boot.ipxe`;
//! - UEFI HTTP Boot (vendor class `HTTPClient…` or client architecture 15, 16, 19): option 60
//!   `HTTPClient` back — firmware ignores an offer without it — and the absolute
//!   `<http_url>/<http_boot>` URL as boot file, with no TFTP server (no `siaddr`, 66 or 150),
//!   as Ironic's `http` boot interfaces answer;
//! - UEFI PXE (architecture 7, 9, 11): `uefi_boot` over TFTP; everything else `bios_boot`.
//!
//! DHCPv6 (only when an IPv6 TFTP address is known, see [`DhcpOptions::derive`]) answers the
//! same clients with option 59 (`bootfile-url`): `tftp://[addr]/<uefi_boot>` for PXEv6,
//! `http://…` for iPXE and HTTP Boot. DHCPv4 lines only ever carry IPv4 or DNS-name URLs and
//! DHCPv6 lines IPv6 or DNS-name ones; an unspecified address (`0.0.0.0`, `[::]`) is never put
//! into a URL ([`HttpUrl`] refuses it).
//!
//! Over DHCPv6 a client is known by its DUID, not its MAC: dnsmasq, dhcpd -6 and Kea learn a
//! MAC only from a DUID-LL/LLT, a relay's option 79 or (dnsmasq, Kea) a client on the same
//! link, so the MAC-based entries here match only then. IPoIB over IPv6 identifies by DUID
//! (RFC 4390's client-id carries an IAID and DUID for DHCPv4): the IB MAC never appears, and
//! ironpxe writes no DHCPv6 entry for an RFC 4390 identity. The boot logic needs no entry.
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
pub use hostsdir::{
    hostsdir_files, sighup, sync_and_signal, sync_hostsdir, sync_hostsdir_nodes, SyncReport,
};
pub use isc::{isc, isc6};
pub use kea::{kea, kea6, KEA_LIMITS};
pub use neutron::neutron;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::model::addr::{ClientId, DhcpClientId, Mac, MELLANOX_CLIENT_ID_PREFIX};
use crate::model::ironic_pxe::IronicPxe;
use crate::model::node::{ClientIdForm, Node, NodeUuid, PortLink};
use crate::state::{IndexedPort, Snapshot};

/// Default boot file for BIOS PXE clients (the PXELINUX chain ironpxe serves over TFTP).
pub const DEFAULT_BIOS_BOOT: &str = "pxelinux.0";
/// Default boot file for UEFI PXE clients (client architecture 7, 9 or 11): iPXE on the
/// firmware's SNP.
pub const DEFAULT_UEFI_BOOT: &str = "snponly.efi";
/// Default loader UEFI HTTP Boot clients fetch from ironpxe's HTTP server (iPXE, which then
/// asks for `boot.ipxe`); a GRUB built with `http` (`grubx64.efi`) is the alternative.
pub const DEFAULT_HTTP_BOOT: &str = "snponly.efi";
/// The vendor class UEFI HTTP Boot clients send (`HTTPClient:Arch:00016:…`) and must get back
/// (option 60), or they ignore the offer.
pub const HTTP_CLIENT: &str = "HTTPClient";
/// The enterprise number of the DHCPv6 vendor class UEFI HTTP Boot sends (edk2 uses Intel's).
const HTTP_CLIENT_ENTERPRISE: u32 = 343;
/// The iPXE entry script under the HTTP base URL.
pub const BOOT_SCRIPT: &str = "boot.ipxe";
/// Name prefix of the files [`sync_hostsdir`] owns; other files in the directory are left alone.
pub const HOSTSDIR_PREFIX: &str = "ironpxe-";

/// dnsmasq tags the main snippet sets (namespaced so an existing config's tags cannot collide).
const TAG_IB: &str = "ironpxe-ib";
const TAG_IPXE: &str = "ironpxe-ipxe";
const TAG_EFI: &str = "ironpxe-efi";
const TAG_HTTP: &str = "ironpxe-http";
/// Client architectures (DHCPv4 option 93, DHCPv6 option 61; IANA "Processor Architecture
/// Types") doing UEFI PXE: 7 x64 UEFI, 9 EFI x86-64 (the two x64 spellings), 11 ARM64 UEFI.
const UEFI_ARCHES: [u16; 3] = [7, 9, 11];
/// Client architectures doing UEFI HTTP Boot: 15 x86 UEFI, 16 x64 UEFI, 19 ARM64 UEFI.
const HTTP_BOOT_ARCHES: [u16; 3] = [15, 16, 19];
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
    #[error("IPv6 range {value:?}: {why}")]
    Ipv6Range { value: String, why: &'static str },
    #[error("unknown DHCP format {0:?} (dnsmasq, isc, isc6, kea, kea6, neutron)")]
    UnknownFormat(String),
    #[error("{0}")]
    Config(String),
}

/// Which DHCP server's syntax to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhcpFormat {
    /// DHCPv4, and DHCPv6 too when it is on (dnsmasq serves both from one configuration).
    Dnsmasq,
    Isc,
    /// `dhcpd -6` (a configuration of its own).
    Isc6,
    Kea,
    /// Kea's `Dhcp6` (its own daemon, `kea-dhcp6`).
    Kea6,
    /// The Neutron port `extra_dhcp_opts` Ironic would set (read-only comparison).
    Neutron,
}

impl DhcpFormat {
    pub const ALL: [DhcpFormat; 6] = [
        DhcpFormat::Dnsmasq,
        DhcpFormat::Isc,
        DhcpFormat::Isc6,
        DhcpFormat::Kea,
        DhcpFormat::Kea6,
        DhcpFormat::Neutron,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DhcpFormat::Dnsmasq => "dnsmasq",
            DhcpFormat::Isc => "isc",
            DhcpFormat::Isc6 => "isc6",
            DhcpFormat::Kea => "kea",
            DhcpFormat::Kea6 => "kea6",
            DhcpFormat::Neutron => "neutron",
        }
    }

    /// Formats that are DHCPv6 only, and so need [`DhcpOptions::v6`].
    pub fn is_v6_only(self) -> bool {
        matches!(self, DhcpFormat::Isc6 | DhcpFormat::Kea6)
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

/// The base URL clients reach ironpxe's HTTP server at (no trailing `/`). Checked so that
/// `<url>/boot.ipxe` fits the BOOTP file field and holds no separator of any generated syntax
/// (no `,` `#` `;` quotes, braces, back-slashes or white space), and so that its host is a
/// name, an IPv4 address or a bracketed IPv6 one — never an unspecified address, which no
/// client can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    url: String,
    host: UrlHost,
}

/// What a URL's host is: it decides whether the URL may go into a DHCPv4 or a DHCPv6 line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlHost {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// A DNS name: usable over either IP version.
    Name,
}

impl UrlHost {
    /// Whether a DHCPv4 (`v6 == false`) or DHCPv6 client may be handed this host.
    pub fn fits(self, v6: bool) -> bool {
        match self {
            UrlHost::V4(_) => !v6,
            UrlHost::V6(_) => v6,
            UrlHost::Name => true,
        }
    }
}

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
        let host = url_host(rest).map_err(bad)?;
        Ok(HttpUrl {
            url: url.to_owned(),
            host,
        })
    }

    /// `http://<addr>:<port>` for a listener's address (IPv6 bracketed, its zone dropped:
    /// a zone names an interface of this host, meaningless to a client).
    pub fn for_addr(ip: IpAddr, port: u16) -> Result<HttpUrl, DhcpError> {
        match ip {
            IpAddr::V4(v4) => HttpUrl::new(&format!("http://{v4}:{port}")),
            IpAddr::V6(v6) => HttpUrl::new(&format!("http://[{v6}]:{port}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn host(&self) -> UrlHost {
        self.host
    }

    /// `<url>/boot.ipxe`, what iPXE clients are handed as their boot file.
    pub fn boot_script(&self) -> String {
        format!("{}/{BOOT_SCRIPT}", self.url)
    }

    /// `<url>/<file>`, the absolute URL UEFI HTTP Boot clients are handed; refused when it
    /// does not fit the BOOTP file field.
    pub fn file_url(&self, file: &BootFile) -> Result<String, DhcpError> {
        let u = http_file_url(self, file);
        if u.len() > MAX_BOOT_FILE {
            return Err(DhcpError::HttpUrl {
                value: shown(&u),
                why: "longer than the 127 bytes of the BOOTP file field",
            });
        }
        Ok(u)
    }
}

fn http_file_url(base: &HttpUrl, file: &BootFile) -> String {
    format!("{}/{}", base.url, file.as_str().trim_start_matches('/'))
}

/// The host of `rest` (a URL after its scheme): `[v6]`, dotted IPv4 or a name.
fn url_host(rest: &str) -> Result<UrlHost, &'static str> {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(inner) = hostport.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        if !(after.is_empty() || after.starts_with(':')) {
            return Err("text after the ] of an IPv6 address");
        }
        // A zone, if any, is percent-encoded (`%25eth0`, RFC 6874).
        let addr = addr.split('%').next().unwrap_or_default();
        let ip: Ipv6Addr = addr.parse().map_err(|_| "not an IPv6 address in [ ]")?;
        UrlHost::V6(ip)
    } else {
        let name = hostport.split(':').next().unwrap_or_default();
        if hostport.matches(':').count() > 1 {
            return Err("an IPv6 address must be in [ ]");
        }
        if name.is_empty() {
            return Err("no host");
        }
        match name.parse::<Ipv4Addr>() {
            Ok(ip) => UrlHost::V4(ip),
            Err(_) => UrlHost::Name,
        }
    };
    let unspecified = match host {
        UrlHost::V4(ip) => ip.is_unspecified(),
        UrlHost::V6(ip) => ip.is_unspecified(),
        UrlHost::Name => false,
    };
    if unspecified {
        return Err("an unspecified address (0.0.0.0, [::]) is no address a client can reach");
    }
    Ok(host)
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
    /// DHCPv4 iPXE clients (user class `iPXE` or option 175) get `<http_url>/boot.ipxe`, HTTP
    /// Boot clients `<http_url>/<http_boot>`; never an IPv6 literal.
    pub http_url: HttpUrl,
    /// The TFTP server PXE clients load boot files from (`siaddr`); `None` leaves the DHCP
    /// server's default (dnsmasq: its own address).
    pub next_server: Option<Ipv4Addr>,
    /// BIOS PXE clients' boot file (`pxelinux.0`; `undionly.kpxe` chains into iPXE).
    pub bios_boot: BootFile,
    /// UEFI PXE clients' (architecture 7, 9 or 11) boot file (`snponly.efi`).
    pub uefi_boot: BootFile,
    /// The loader UEFI HTTP Boot clients (architecture 15, 16, 19) fetch over HTTP.
    pub http_boot: BootFile,
    /// Client-id vendor prefixes that mark RFC 4390 clients, besides those in the state.
    pub client_id_prefixes: Vec<[u8; 12]>,
    /// DHCPv6 boot logic; `None`: IPv4 only.
    pub v6: Option<Dhcp6Options>,
    /// Ironic's own settings, for `--format neutron` only ([`DhcpOptions::ironic_settings`]).
    pub ironic_pxe: IronicPxe,
}

/// What DHCPv6 clients are handed (option 59 URLs only: DHCPv6 has no `siaddr`/`file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcp6Options {
    /// PXEv6 clients get `tftp://[tftp_server]/<uefi_boot>`.
    pub tftp_server: Ipv6Addr,
    /// iPXE and HTTP Boot clients' base URL; never an IPv4 literal.
    pub http_url: HttpUrl,
    /// dnsmasq: a stateful range announced with `enable-ra` (OVMF's PXEv6 needs an address).
    pub range: Option<Ipv6Range>,
}

impl Dhcp6Options {
    /// `tftp://[addr]/<file>`, the PXEv6 boot file URL.
    pub fn tftp_url(&self, file: &BootFile) -> String {
        format!(
            "tftp://[{}]/{}",
            self.tftp_server,
            file.as_str().trim_start_matches('/')
        )
    }
}

/// A stateful DHCPv6 address range, `START,END[,PREFIX-LEN]` as dnsmasq writes it (prefix
/// length 64 unless given, 64-128; both ends inside one prefix of that length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Ipv6Range {
    pub start: Ipv6Addr,
    pub end: Ipv6Addr,
    pub prefix_len: u8,
}

impl Ipv6Range {
    /// The prefix both ends share, as `addr/len`.
    pub fn subnet(&self) -> String {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        format!(
            "{}/{}",
            Ipv6Addr::from(u128::from(self.start) & mask),
            self.prefix_len
        )
    }
}

impl FromStr for Ipv6Range {
    type Err = DhcpError;
    fn from_str(value: &str) -> Result<Ipv6Range, DhcpError> {
        let bad = |why| DhcpError::Ipv6Range {
            value: shown(value),
            why,
        };
        let mut parts = value.split(',').map(str::trim);
        let mut addr = |what| {
            parts
                .next()
                .ok_or(what)
                .and_then(|p| p.parse::<Ipv6Addr>().map_err(|_| what))
        };
        let start = addr("START is not an IPv6 address").map_err(bad)?;
        let end = addr("END is not an IPv6 address").map_err(bad)?;
        let prefix_len = match parts.next() {
            None => 64,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|l| (64..=128).contains(l))
                .ok_or_else(|| bad("the prefix length must be 64 to 128"))?,
        };
        if parts.next().is_some() {
            return Err(bad("expected START,END[,PREFIX-LEN]"));
        }
        if !routable6(start) || !routable6(end) {
            return Err(bad(
                "addresses must be global or unique-local unicast (not link-local, multicast, loopback or ::)",
            ));
        }
        if u128::from(start) > u128::from(end) {
            return Err(bad("START is above END"));
        }
        let r = Ipv6Range {
            start,
            end,
            prefix_len,
        };
        let other = Ipv6Range { start: end, ..r };
        if r.subnet() != other.subnet() {
            return Err(bad("START and END are in different prefixes"));
        }
        Ok(r)
    }
}

impl TryFrom<String> for Ipv6Range {
    type Error = DhcpError;
    fn try_from(s: String) -> Result<Ipv6Range, DhcpError> {
        s.parse()
    }
}

impl fmt::Display for Ipv6Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.start, self.end, self.prefix_len)
    }
}

/// The operator's choices for `ironpxe dhcp` (flags over `[dhcp]`); `None`: derived or default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhcpChoices {
    pub http_url: Option<String>,
    pub http_url6: Option<String>,
    pub next_server: Option<Ipv4Addr>,
    pub next_server6: Option<Ipv6Addr>,
    pub bios_boot: Option<String>,
    pub uefi_boot: Option<String>,
    pub http_boot: Option<String>,
    pub ipv6_range: Option<Ipv6Range>,
    /// `[ironic_pxe]`, Ironic's names and defaults, for `--format neutron`.
    pub ironic_pxe: IronicPxe,
}

impl DhcpOptions {
    /// Defaults: `pxelinux.0`, `snponly.efi` (PXE and HTTP Boot), no next-server, the
    /// Mellanox/NVIDIA prefix, IPv4 only.
    pub fn new(http_url: HttpUrl) -> DhcpOptions {
        DhcpOptions {
            http_url,
            next_server: None,
            bios_boot: BootFile(DEFAULT_BIOS_BOOT.into()),
            uefi_boot: BootFile(DEFAULT_UEFI_BOOT.into()),
            http_boot: BootFile(DEFAULT_HTTP_BOOT.into()),
            client_id_prefixes: vec![MELLANOX_CLIENT_ID_PREFIX],
            v6: None,
            ironic_pxe: IronicPxe::default(),
        }
    }

    /// Options from where ironpxe listens and the operator's choices; returns warnings about
    /// defaults clients may not reach.
    ///
    /// DHCPv4: the HTTP URL is `--http-url`, else `public_url` unless it names an IPv6
    /// address, else `http://<http_listen>`, else — `http_listen` unspecified — the HTTP port
    /// on next-server; next-server is the first `tftp_listen` IPv4 address that is neither
    /// loopback nor unspecified. DHCPv6 lines are generated only when an IPv6 TFTP address is
    /// known: `next_server6`, else the first global or unique-local `tftp_listen`; their URL is
    /// `http_url6`, else `public_url` unless it names an IPv4 address, else the IPv6
    /// `http_listen`, else the HTTP port on that TFTP address.
    pub fn derive(
        at: &Listeners,
        c: &DhcpChoices,
    ) -> Result<(DhcpOptions, Vec<String>), DhcpError> {
        let mut warnings = Vec::new();
        let explicit = c.next_server.is_some();
        let next_server = c.next_server.or_else(|| {
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
        let http_url = url_for(
            false,
            at,
            c.http_url.as_deref(),
            next_server.map(IpAddr::V4),
            &mut warnings,
        )?;
        let file =
            |v: &Option<String>, default: &str| BootFile::new(v.as_deref().unwrap_or(default));
        let mut opts = DhcpOptions {
            http_url,
            next_server,
            bios_boot: file(&c.bios_boot, DEFAULT_BIOS_BOOT)?,
            uefi_boot: file(&c.uefi_boot, DEFAULT_UEFI_BOOT)?,
            http_boot: file(&c.http_boot, DEFAULT_HTTP_BOOT)?,
            client_id_prefixes: vec![at.client_id_prefix],
            v6: None,
            ironic_pxe: checked_ironic_pxe(&c.ironic_pxe)?,
        };
        opts.http_url.file_url(&opts.http_boot)?;
        let tftp6 = c.next_server6.or_else(|| {
            at.tftp_listen.iter().find_map(|a| match a.ip() {
                IpAddr::V6(ip) if routable6(ip) => Some(ip),
                IpAddr::V6(ip) if !ip.is_unspecified() && !ip.is_loopback() => {
                    warnings.push(format!(
                        "tftp_listen {a} is link-local: not put into DHCPv6 URLs (set [dhcp] next_server6 or --next-server6)"
                    ));
                    None
                }
                _ => None,
            })
        });
        match tftp6 {
            Some(tftp_server) => {
                let http_url = url_for(
                    true,
                    at,
                    c.http_url6.as_deref(),
                    Some(IpAddr::V6(tftp_server)),
                    &mut warnings,
                )?;
                http_url.file_url(&opts.http_boot)?;
                if c.ipv6_range.is_none() {
                    warnings.push("no ipv6_range: dnsmasq needs a stateful dhcp-range with enable-ra for DHCPv6 clients (OVMF's PXEv6 needs an address)".into());
                }
                opts.v6 = Some(Dhcp6Options {
                    tftp_server,
                    http_url,
                    range: c.ipv6_range,
                });
            }
            None if c.http_url6.is_some() || c.ipv6_range.is_some() => warnings.push(
                "--http-url6/ipv6_range given but no IPv6 TFTP address (next_server6 or a global tftp_listen): no DHCPv6 output".into(),
            ),
            None => {}
        }
        Ok((opts, warnings))
    }

    /// The absolute URL DHCPv4 HTTP Boot clients get (checked to fit by [`Self::derive`]).
    pub fn http_boot_url(&self) -> String {
        http_file_url(&self.http_url, &self.http_boot)
    }
}

/// `[ironic_pxe]` as given, its `http_url` checked like ironpxe's own but kept as written:
/// Ironic joins it verbatim (`http://h/` gives `http://h//boot.ipxe`).
fn checked_ironic_pxe(c: &IronicPxe) -> Result<IronicPxe, DhcpError> {
    let mut out = c.clone();
    if let Some(u) = &c.http_url {
        HttpUrl::new(u)?;
        out.http_url = Some(u.trim().to_owned());
    }
    Ok(out)
}

/// Global or unique-local unicast: an address a DHCPv6 client may be sent to without a zone.
fn routable6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.segments()[0] & 0xffc0 == 0xfe80)
}

/// The HTTP base URL for DHCPv4 (`v6 == false`) or DHCPv6 clients: `explicit`, else a
/// fitting `public_url`, else `http_listen`, else (unspecified listener) `fallback` on the
/// HTTP port. Never an unspecified address, never the other IP version's literal.
fn url_for(
    v6: bool,
    at: &Listeners,
    explicit: Option<&str>,
    fallback: Option<IpAddr>,
    warnings: &mut Vec<String>,
) -> Result<HttpUrl, DhcpError> {
    let (flag, family) = if v6 {
        ("--http-url6", "IPv6")
    } else {
        ("--http-url", "IPv4")
    };
    if let Some(u) = explicit {
        let url = HttpUrl::new(u)?;
        if !url.host().fits(v6) {
            return Err(DhcpError::Config(format!(
                "{flag} {:?} names an address of the other IP version: DHCP{} clients need an {family} address or a name",
                shown(u),
                if v6 { "v6" } else { "v4" }
            )));
        }
        return Ok(url);
    }
    if let Some(u) = &at.public_url {
        let url = HttpUrl::new(u)?;
        if url.host().fits(v6) {
            return Ok(url);
        }
    }
    let listen = at.http_listen;
    let ip = listen.ip();
    if ip.is_unspecified() {
        let Some(addr) = fallback else {
            return Err(DhcpError::Config(format!(
                "http_listen is {listen}, which is no address for a URL, and no {family} TFTP address to assume instead: give {flag} or public_url"
            )));
        };
        warnings.push(format!(
            "http_listen is {listen}: {family} clients are sent to HTTP on the TFTP address {addr} (give {flag} or public_url to choose)"
        ));
        return HttpUrl::for_addr(addr, listen.port());
    }
    if ip.is_ipv6() != v6 {
        return Err(DhcpError::Config(format!(
            "http_listen {listen} is not {family}: give {flag} or public_url for {family} clients"
        )));
    }
    if ip.is_loopback() {
        warnings.push(format!(
            "no {flag} or public_url: clients are sent to http://{listen}, which they cannot reach"
        ));
    }
    HttpUrl::for_addr(ip, listen.port())
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
    /// Either identity may be missing: a client-id no DHCP config can carry (not hex), or an
    /// identity another node holds (the index gives a duplicate to the node with the lower
    /// UUID). The client-id is the port's own bytes, 20 (RFC 4390) or any other length.
    Infiniband {
        client_id: Option<DhcpClientId>,
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
    /// Not PXE-enabled, listed because of `[neutron] add_all_ports`: no address, as Ironic
    /// creates its Neutron port with `fixed_ips: []`.
    NotPxeEnabled,
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
            Note::NotPxeEnabled => f.write_str(
                "not PXE-enabled, listed by [neutron] add_all_ports: no address (Ironic: fixed_ips [])",
            ),
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
    /// The port's truthy `extra["client-id"]` exactly as stored: what Ironic hands Neutron as
    /// option 61 (`common/neutron.py` `add_ports_to_network`), whatever its type or case.
    /// Only for the Neutron JSON, never for a DHCP server's config.
    pub option61: Option<Value>,
}

impl HostEntry {
    pub fn is_infiniband(&self) -> bool {
        matches!(self.ids, PortIds::Infiniband { .. })
    }

    /// The client-id (option 61) a DHCP server matches this port by, when it has one a
    /// config can carry.
    pub fn client_id(&self) -> Option<DhcpClientId> {
        match self.ids {
            PortIds::Infiniband { client_id, .. } => client_id,
            PortIds::Ethernet(_) => None,
        }
    }

    /// The RFC 4390 client-id IPoIB firmware sends, when the port's is one.
    pub fn rfc4390(&self) -> Option<ClientId> {
        self.client_id().and_then(|c| c.rfc4390())
    }

    /// The MAC a hardware-type-1 client sends as chaddr, when this port owns it.
    pub fn mac(&self) -> Option<Mac> {
        match self.ids {
            PortIds::Ethernet(mac) => Some(mac),
            PortIds::Infiniband { ib_mac, .. } => ib_mac,
        }
    }
}

/// Every booted port's entry (PXE-enabled, or any with `add_all_ports`), in node-UUID then
/// port-address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    pub entries: Vec<HostEntry>,
    /// For stderr: ports left out or reduced, and why.
    pub warnings: Vec<String>,
    /// Vendor prefixes of every client-id in the state.
    pub prefixes: BTreeSet<[u8; 12]>,
}

/// The DHCP entries for every port of `snap` that Ironic links boot names for (PXE-enabled, or
/// any with `add_all_ports`). An identity the index gave to another port (duplicate MAC, GUID
/// or fixed IP) is left out here too, so DHCP and boot configs agree.
pub fn hosts(snap: &Snapshot) -> Hosts {
    let mut h = Hosts::default();
    for p in snap.ports().iter().filter(|p| p.boot_names) {
        let node = &snap.nodes()[p.node].node;
        if let Some(e) = entry(snap, node, p, &mut h.warnings) {
            if let Some(cid) = e.rfc4390() {
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
    let is_this = |m: Option<crate::state::Match<'_>>| is_port(m, p);
    let mac = p.port.address;
    let label = format!("node {} port {mac}", node.uuid);
    let mut notes = Vec::new();
    let owns_mac = is_this(snap.by_mac(&mac));
    if !owns_mac {
        notes.push(Note::MacTaken);
    }
    let ids = if let PortLink::Infiniband(form) = p.port.link() {
        let ib_mac = owns_mac.then_some(mac);
        let Some(ids) = infiniband_ids(snap, p, form, ib_mac, &label, &mut notes, warnings) else {
            warnings.push(format!(
                "{label}: every identity of this InfiniBand port belongs to another port; no entry"
            ));
            return None;
        };
        ids
    } else if owns_mac {
        PortIds::Ethernet(mac)
    } else {
        warnings.push(format!(
            "{label}: the MAC belongs to another port; no entry"
        ));
        return None;
    };
    if !p.port.pxe_enabled {
        notes.push(Note::NotPxeEnabled);
    }
    let ip = match p.fixed_ip.filter(|_| p.port.pxe_enabled) {
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
        option61: p
            .port
            .is_infiniband()
            .then(|| {
                p.port
                    .extra
                    .get(crate::model::node::Port::CLIENT_ID_KEY)
                    .cloned()
            })
            .flatten(),
    })
}

/// Why a DHCPv6 format has nothing to say.
pub const NO_V6: &str = "no IPv6 TFTP address (--next-server6, [dhcp] next_server6 or a global or unique-local tftp_listen): no DHCPv6 configuration";

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
        DhcpFormat::Isc6 => isc6(&h, opts),
        DhcpFormat::Kea6 => kea6(&h, opts),
        DhcpFormat::Kea => {
            if h.entries.iter().any(HostEntry::is_infiniband) {
                warnings.push(format!("kea: {KEA_LIMITS}"));
            }
            kea(&h, opts)
        }
        DhcpFormat::Neutron => {
            warnings.extend(neutron::neutron_warnings(opts));
            neutron(snap, &h, opts)
        }
    };
    if format.is_v6_only() && opts.v6.is_none() {
        warnings.push(format!("{format}: {NO_V6}"));
    }
    Generated { text, warnings }
}

// ---- helpers ----

/// Whether a lookup found this very port.
fn is_port(m: Option<crate::state::Match<'_>>, p: &IndexedPort) -> bool {
    m.and_then(|m| m.port).is_some_and(|q| std::ptr::eq(q, p))
}

/// An InfiniBand port's identities for its entry: its client-id, unless it is RFC 4390 and
/// another port holds the GUID (the index gives a GUID to one port only) or unusable, and
/// `ib_mac` when the port holds its MAC. `None` when it keeps neither.
fn infiniband_ids(
    snap: &Snapshot,
    p: &IndexedPort,
    form: ClientIdForm,
    ib_mac: Option<Mac>,
    label: &str,
    notes: &mut Vec<Note>,
    warnings: &mut Vec<String>,
) -> Option<PortIds> {
    let client_id = match form {
        ClientIdForm::Hex(cid) => match cid.rfc4390() {
            Some(c) if !is_port(snap.by_guid(&c.guid()), p) => {
                notes.push(Note::ClientIdTaken);
                None
            }
            _ => Some(cid),
        },
        ClientIdForm::Unusable(why) => {
            notes.push(Note::BadClientId);
            warnings.push(format!(
                "{label}: InfiniBand port (its extra.client-id is not empty) with an unusable extra.client-id ({}): no DHCP config can carry it, entry by IB MAC only, RFC 4390 firmware will get no reservation",
                why.escape_debug()
            ));
            None
        }
    };
    (client_id.is_some() || ib_mac.is_some()).then_some(PortIds::Infiniband { client_id, ib_mac })
}

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

/// The DHCPv6 vendor class option (16) HTTP Boot clients must get back: enterprise number,
/// then one length-prefixed `HTTPClient` (RFC 8415 21.16).
fn vendor_class6() -> Vec<u8> {
    let mut v = HTTP_CLIENT_ENTERPRISE.to_be_bytes().to_vec();
    v.extend((HTTP_CLIENT.len() as u16).to_be_bytes());
    v.extend(HTTP_CLIENT.as_bytes());
    v
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
