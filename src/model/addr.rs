//! Hardware addresses and PXELINUX config names: pure parsing and formatting.
//!
//! A boot request names its client in one of several overlapping ways. An Ethernet port has
//! a 6-byte MAC. An InfiniBand port has an 8-byte GUID, which reaches us as the GUID itself,
//! inside a 20-byte Linux IPoIB hardware address, inside a 20-byte DHCP client-id, or as a
//! lossy 6-byte "IB MAC" (GUID bytes 0-2 and 5-7) that upstream-iPXE firmware reports as
//! `${mac}`. People type all of these with colons, hyphens, dots, Cisco groups or nothing.
//! This module turns every spelling into typed values, says what an ambiguous length may
//! mean, and produces the names PXELINUX and iPXE ask for. It does no I/O.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The 12-byte client-id prefix Mellanox/NVIDIA ConnectX firmware puts before the port GUID.
pub const MELLANOX_CLIENT_ID_PREFIX: [u8; 12] = [
    0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x02, 0xc9, 0x00,
];

/// A client-id prefix as operators write it (`ff:00:…:00`), e.g. for a default setting.
pub fn client_id_prefix_text(prefix: [u8; 12]) -> String {
    hex_join(&prefix, 1, ":")
}

/// Why an IB MAC alone cannot identify an enrolled port fully.
const IB_MAC_NOTE: &str = "an InfiniBand MAC drops GUID bytes 3-4: the GUID and client-id come only from the enrolled port's extra.client-id";
/// Lower-case hex digits by value, for the output forms.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
/// Longest input echoed back in an error, so hostile requests cannot flood logs.
const MAX_SHOWN_CHARS: usize = 64;

/// Why a string is not the address or name it was meant to be; every message names the part at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AddrError {
    /// Nothing but whitespace was given.
    #[error("empty input")]
    Empty,
    /// Two kinds of separator in one address, e.g. `aa:bb-cc`.
    #[error("mixed separators {first:?} and {second:?} in {input:?}")]
    MixedSeparators {
        first: char,
        second: char,
        input: String,
    },
    /// A separated group holding something other than hex digits.
    #[error("invalid hex group {group:?} at position {position} in {input:?}")]
    InvalidGroup {
        group: String,
        position: usize,
        input: String,
    },
    /// A separated group of hex digits with the wrong width.
    #[error("hex group {group:?} at position {position} in {input:?} has {digits} digits, expected {expected}")]
    GroupSize {
        group: String,
        position: usize,
        digits: usize,
        expected: usize,
        input: String,
    },
    /// A non-hex character in unseparated hex (position counts characters from 1).
    #[error("invalid hex digit {ch:?} at position {position} in {input:?}")]
    InvalidDigit {
        ch: char,
        position: usize,
        input: String,
    },
    /// Unseparated hex that cannot be split into whole bytes.
    #[error("odd number of hex digits ({digits}) in {input:?}")]
    OddDigits { digits: usize, input: String },
    /// Well-formed hex of the wrong length for the type asked for.
    #[error("expected {expected} bytes for {what}, got {got}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// Well-formed hex whose length is no hardware address length.
    #[error("expected 6, 8 or 20 bytes for a hardware address, got {got}")]
    UnknownLength { got: usize },
    /// A dashed UUID without the 8-4-4-4-12 group count.
    #[error("UUID {input:?} has {groups} dash-separated groups, expected 5 (8-4-4-4-12)")]
    UuidGroups { groups: usize, input: String },
    /// A UUID with only one of `{` and `}`.
    #[error("unbalanced braces in UUID {input:?}")]
    UnbalancedBraces { input: String },
    /// A PXELINUX hardware name with a type other than Ethernet (01) or InfiniBand (20).
    #[error("unsupported ARP hardware type {hwtype} in PXELINUX name {name:?}")]
    UnsupportedHwType { hwtype: String, name: String },
    /// A hex-IP name with lower-case digits, which PXELINUX never asks for.
    #[error("hex IP {name:?} has lower-case digits; PXELINUX asks for hex IPs in upper case")]
    LowercaseHexIp { name: String },
    /// A hex-IP name longer than the 8 digits of an IPv4 address.
    #[error("hex IP {name:?} has {digits} digits, at most 8")]
    HexIpTooLong { name: String, digits: usize },
    /// Something that is none of the PXELINUX config name shapes.
    #[error("not a PXELINUX config name: {name:?}")]
    NotPxelinuxName { name: String },
    /// Hex of a length no DHCP server takes as a client-id (RFC 2132: at least 2 bytes; Kea
    /// refuses more than 128).
    #[error("a DHCP client-id has {min} to {max} bytes, got {got}", min = DhcpClientId::MIN, max = DhcpClientId::MAX)]
    ClientIdLength { got: usize },
}

/// An Ethernet MAC, or an InfiniBand "IB MAC" (the two cannot be told apart by their bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Mac(pub [u8; 6]);

/// An InfiniBand port GUID: what identifies an IB port for good.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Guid(pub [u8; 8]);

/// A Linux IPoIB hardware address: flags/QPN (4), subnet prefix (8), port GUID (8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct IpoibAddr(pub [u8; 20]);

/// A DHCP client-id of an IPoIB port: a 12-byte vendor prefix, then the port GUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ClientId(pub [u8; 20]);

/// An SMBIOS system UUID (DHCP option 97), in the byte order it is printed in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SystemUuid(pub [u8; 16]);

/// Parsing, the hyphen/raw/dotted forms and colon `Display` shared by the byte-array addresses.
macro_rules! hex_addr {
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("Parses ", $what, " in any accepted spelling (`:`, `-`, `.` pairs, Cisco dotted, bare hex; any case).")]
            pub fn parse(s: &str) -> Result<Self, AddrError> {
                to_array(&parse_hex(s)?, $what).map(Self)
            }

            /// Hyphenated lower case (`aa-bb-…`), as iPXE `${mac:hexhyp}` and PXELINUX spell it.
            pub fn hyphen(&self) -> String {
                hex_join(&self.0, 1, "-")
            }

            /// Bare lower-case hex (`aabb…`), as iPXE `${mac:hexraw}` spells it.
            pub fn raw(&self) -> String {
                hex_join(&self.0, 1, "")
            }

            /// Cisco dotted groups of two bytes (`aabb.ccdd.…`), as switch CLIs print it.
            pub fn dotted(&self) -> String {
                hex_join(&self.0, 2, ".")
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex_join(&self.0, 1, ":"))
            }
        }
    };
}

/// `FromStr` and string serde via `parse`/`Display`, so state files accept any spelling.
macro_rules! string_forms {
    ($($ty:ident),+) => {$(
        impl FromStr for $ty {
            type Err = AddrError;
            fn from_str(s: &str) -> Result<Self, AddrError> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )+};
}

hex_addr!(Mac, "an Ethernet MAC");
hex_addr!(Guid, "a GUID");
hex_addr!(IpoibAddr, "an IPoIB address");
hex_addr!(ClientId, "a DHCP client-id");
string_forms!(Mac, Guid, IpoibAddr, ClientId, SystemUuid, AnyAddr, IbHwAddr, PxeHwAddr);
string_forms!(HexIpPrefix, PxelinuxName);

impl Guid {
    /// The IB MAC upstream iPXE derives (bytes 0-2 and 5-7); it cannot be turned back into a GUID.
    pub fn ib_mac(&self) -> Mac {
        let g = self.0;
        Mac([g[0], g[1], g[2], g[5], g[6], g[7]])
    }

    /// The six-byte windows of the GUID that are not its IB MAC, first six bytes first: what
    /// a port enrolled by hand from a GUID mistakenly holds.
    pub fn truncations(&self) -> [Mac; 3] {
        std::array::from_fn(|i| Mac(std::array::from_fn(|j| self.0[i + j])))
    }

    /// The GUID that ends both 20-byte forms, the IPoIB address and the client-id.
    fn ending(twenty: &[u8; 20]) -> Guid {
        Guid(std::array::from_fn(|i| twenty[12 + i]))
    }

    /// The client-id this port sends when its firmware uses `prefix` (e.g. [`MELLANOX_CLIENT_ID_PREFIX`]).
    pub fn client_id(&self, prefix: [u8; 12]) -> ClientId {
        ClientId::new(prefix, *self)
    }
}

impl IpoibAddr {
    /// The port GUID, the only stable part: the QPN changes with every interface bring-up.
    pub fn guid(&self) -> Guid {
        Guid::ending(&self.0)
    }

    /// The queue pair number: the low 24 bits of the first four bytes.
    pub fn qpn(&self) -> u32 {
        u32::from_be_bytes([0, self.0[1], self.0[2], self.0[3]])
    }

    /// The 8-byte subnet prefix (usually `fe:80::` link-local).
    pub fn subnet_prefix(&self) -> [u8; 8] {
        std::array::from_fn(|i| self.0[4 + i])
    }
}

impl ClientId {
    /// Builds the client-id a port with `guid` sends behind a vendor `prefix`.
    pub fn new(prefix: [u8; 12], guid: Guid) -> ClientId {
        ClientId(std::array::from_fn(|i| match i.checked_sub(12) {
            None => prefix[i],
            Some(j) => guid.0[j],
        }))
    }

    /// The port GUID carried in the last 8 bytes.
    pub fn guid(&self) -> Guid {
        Guid::ending(&self.0)
    }

    /// The 12-byte vendor prefix (any prefix is accepted; see [`MELLANOX_CLIENT_ID_PREFIX`]).
    pub fn prefix(&self) -> [u8; 12] {
        std::array::from_fn(|i| self.0[i])
    }
}

/// A DHCP client-id (option 61) of any length DHCP servers accept, 2 to 128 bytes: what a
/// port's `extra["client-id"]` holds when it is hex but not necessarily the 20 bytes of RFC
/// 4390 (e.g. `01:<mac>`). Fixed-size so it stays `Copy`; printed as lower-case colon hex,
/// the spelling dnsmasq, ISC dhcpd and Kea all read as bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DhcpClientId {
    len: u8,
    bytes: [u8; DhcpClientId::MAX],
}

impl DhcpClientId {
    /// RFC 2132 section 9.14: a client-id has at least two octets.
    pub const MIN: usize = 2;
    /// Kea's limit (ISC dhcpd and dnsmasq take up to the option's 255).
    pub const MAX: usize = 128;

    /// Parses hex in any spelling [`ClientId::parse`] accepts, of any length from
    /// [`Self::MIN`] to [`Self::MAX`] bytes.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let bytes = parse_hex(s)?;
        if !(Self::MIN..=Self::MAX).contains(&bytes.len()) {
            return Err(AddrError::ClientIdLength { got: bytes.len() });
        }
        let mut out = [0; Self::MAX];
        out[..bytes.len()].copy_from_slice(&bytes);
        Ok(DhcpClientId {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The RFC 4390 reading (vendor prefix + GUID) when it is 20 bytes long.
    pub fn rfc4390(&self) -> Option<ClientId> {
        self.as_bytes().try_into().ok().map(ClientId)
    }
}

impl From<ClientId> for DhcpClientId {
    fn from(c: ClientId) -> Self {
        let mut bytes = [0; Self::MAX];
        bytes[..20].copy_from_slice(&c.0);
        DhcpClientId { len: 20, bytes }
    }
}

impl fmt::Display for DhcpClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_join(self.as_bytes(), 1, ":"))
    }
}

impl fmt::Debug for DhcpClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DhcpClientId({self})")
    }
}

impl SystemUuid {
    /// Parses a UUID, dashed 8-4-4-4-12 or 32 bare hex digits, any case, optionally in `{}`.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(AddrError::Empty);
        }
        let inner = strip_braces(input)?;
        let digits = if inner.contains('-') {
            uuid_digits(inner)?
        } else {
            inner.to_owned()
        };
        to_array(&parse_bare(&digits)?, "a system UUID").map(Self)
    }

    /// The same UUID with its first three fields byte-reversed, as iPXE's PXE stack and some
    /// firmware report it; ask for both orders since the client's choice is unknown.
    pub fn swapped(&self) -> SystemUuid {
        let mut b = self.0;
        b[..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        SystemUuid(b)
    }

    /// Whether PXELINUX asks for `pxelinux.cfg/<uuid>`: only when byte 6 is in `0x10..=0xEF`.
    pub fn pxelinux_asks(&self) -> bool {
        (0x10..=0xEF).contains(&self.0[6])
    }
}

impl fmt::Display for SystemUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_char('-')?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Any hardware address as typed by a person or a client, by length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum AnyAddr {
    /// 6 bytes: an Ethernet MAC or an IB MAC.
    Six(Mac),
    /// 8 bytes: a port GUID.
    Eight(Guid),
    /// 20 bytes: an IPoIB address or a client-id.
    Twenty([u8; 20]),
}

impl AnyAddr {
    /// Parses any spelling of 6, 8 or 20 bytes.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let bytes = parse_hex(s)?;
        match bytes.len() {
            6 => to_array(&bytes, "an Ethernet MAC").map(|b| AnyAddr::Six(Mac(b))),
            8 => to_array(&bytes, "a GUID").map(|b| AnyAddr::Eight(Guid(b))),
            20 => to_array(&bytes, "a 20-byte address").map(AnyAddr::Twenty),
            got => Err(AddrError::UnknownLength { got }),
        }
    }

    /// Every way the bytes can be read, most likely first. A 20-byte value starting with
    /// `0xff` (the RFC 4390 client-id type) is read as a client-id first.
    pub fn readings(&self) -> Vec<Reading> {
        match *self {
            AnyAddr::Six(mac) => vec![Reading::EthernetMac(mac), Reading::IbMac(mac)],
            AnyAddr::Eight(guid) => vec![Reading::Guid(guid)],
            AnyAddr::Twenty(b) if b[0] == 0xff => {
                vec![
                    Reading::ClientId(ClientId(b)),
                    Reading::IpoibAddr(IpoibAddr(b)),
                ]
            }
            AnyAddr::Twenty(b) => {
                vec![
                    Reading::IpoibAddr(IpoibAddr(b)),
                    Reading::ClientId(ClientId(b)),
                ]
            }
        }
    }

    /// The port GUID an 8-byte address is, or a 20-byte one ends in; `None` for 6 bytes.
    pub fn guid(&self) -> Option<Guid> {
        match self {
            AnyAddr::Six(_) => None,
            AnyAddr::Eight(guid) => Some(*guid),
            AnyAddr::Twenty(b) => Some(Guid::ending(b)),
        }
    }

    /// The bytes, whatever their length.
    pub fn bytes(&self) -> &[u8] {
        match self {
            AnyAddr::Six(mac) => &mac.0,
            AnyAddr::Eight(guid) => &guid.0,
            AnyAddr::Twenty(b) => b,
        }
    }
}

impl fmt::Display for AnyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_join(self.bytes(), 1, ":"))
    }
}

/// One interpretation of an [`AnyAddr`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Reading {
    /// An Ethernet port's MAC.
    EthernetMac(Mac),
    /// An IB port's lossy IB MAC, as upstream iPXE reports it.
    IbMac(Mac),
    /// An IB port GUID.
    Guid(Guid),
    /// A Linux IPoIB hardware address.
    IpoibAddr(IpoibAddr),
    /// An IPoIB DHCP client-id.
    ClientId(ClientId),
}

impl Reading {
    /// Stable kebab-case name of the interpretation, as the CLI prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Reading::EthernetMac(_) => "ethernet-mac",
            Reading::IbMac(_) => "ib-mac",
            Reading::Guid(_) => "guid",
            Reading::IpoibAddr(_) => "ipoib-addr",
            Reading::ClientId(_) => "client-id",
        }
    }
}

/// How an InfiniBand port shows up in a `20-` name: the lossy IB MAC, or the full GUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum IbHwAddr {
    /// Only the IB MAC is known.
    Mac(Mac),
    /// Also what 20-byte forms (IPoIB address, client-id) normalise to.
    Guid(Guid),
}

impl IbHwAddr {
    /// Parses 6 bytes as an IB MAC, and 8 or 20 bytes (GUID last in both 20-byte forms) as a GUID.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        Ok(match AnyAddr::parse(s)? {
            AnyAddr::Six(mac) => IbHwAddr::Mac(mac),
            AnyAddr::Eight(guid) => IbHwAddr::Guid(guid),
            AnyAddr::Twenty(b) => IbHwAddr::Guid(Guid::ending(&b)),
        })
    }

    /// The IB MAC, the common ground of both variants (and what PXELINUX names carry).
    pub fn ib_mac(&self) -> Mac {
        match self {
            IbHwAddr::Mac(mac) => *mac,
            IbHwAddr::Guid(guid) => guid.ib_mac(),
        }
    }
}

impl fmt::Display for IbHwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IbHwAddr::Mac(mac) => mac.fmt(f),
            IbHwAddr::Guid(guid) => guid.fmt(f),
        }
    }
}

/// ARP hardware type of a port, or of the name a client asked under; it picks the `01-` or
/// `20-` of PXELINUX names and `BOOTIF=`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum HwType {
    Ethernet,
    Infiniband,
}

impl HwType {
    /// The ARP type as PXELINUX names spell it: `01` (Ethernet) or `20` (InfiniBand, 32).
    pub fn arp(self) -> &'static str {
        match self {
            HwType::Ethernet => "01",
            HwType::Infiniband => "20",
        }
    }

    /// The type a PXELINUX name's `<arp>-` spells, if supported.
    pub fn from_arp(arp: &str) -> Option<HwType> {
        [HwType::Ethernet, HwType::Infiniband]
            .into_iter()
            .find(|h| h.arp() == arp)
    }

    /// The link type in words, as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            HwType::Ethernet => "ethernet",
            HwType::Infiniband => "infiniband",
        }
    }
}

/// The hardware half of a PXELINUX name: `<ARP type>-<address>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum PxeHwAddr {
    /// `01-`: Ethernet, or an IB port behind upstream iPXE, which presents IPoIB as Ethernet.
    Ethernet(Mac),
    /// `20-`: InfiniBand.
    Infiniband(IbHwAddr),
}

impl PxeHwAddr {
    /// Parses `01-<mac>` or `20-<ib-mac|guid|ipoib-addr|client-id>`; the address after the
    /// type may be in any spelling [`AnyAddr::parse`] accepts.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let name = s.trim();
        let Some((hwtype, addr)) = name.split_once('-').filter(|(t, _)| is_hwtype(t)) else {
            return Err(AddrError::NotPxelinuxName { name: shown(name) });
        };
        match HwType::from_arp(hwtype) {
            Some(HwType::Ethernet) => Mac::parse(addr).map(PxeHwAddr::Ethernet),
            Some(HwType::Infiniband) => IbHwAddr::parse(addr).map(PxeHwAddr::Infiniband),
            None => Err(AddrError::UnsupportedHwType {
                hwtype: hwtype.to_owned(),
                name: shown(name),
            }),
        }
    }

    /// The name a port with `mac` (its IB MAC, for InfiniBand) asks under as `hw`.
    pub fn new(hw: HwType, mac: Mac) -> PxeHwAddr {
        match hw {
            HwType::Ethernet => PxeHwAddr::Ethernet(mac),
            HwType::Infiniband => PxeHwAddr::Infiniband(IbHwAddr::Mac(mac)),
        }
    }

    pub fn hw_type(&self) -> HwType {
        match self {
            PxeHwAddr::Ethernet(_) => HwType::Ethernet,
            PxeHwAddr::Infiniband(_) => HwType::Infiniband,
        }
    }

    /// The six bytes the name carries: the MAC, or the IB MAC.
    pub fn mac(&self) -> Mac {
        match self {
            PxeHwAddr::Ethernet(mac) => *mac,
            PxeHwAddr::Infiniband(ib) => ib.ib_mac(),
        }
    }
}

impl fmt::Display for PxeHwAddr {
    /// Always hyphenated lower case; InfiniBand always as the IB MAC, which is what clients send.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hw_type().arp(), self.mac().hyphen())
    }
}

/// A PXELINUX hex-IP name: the first 1 to 8 upper-case hex digits of an IPv4 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct HexIpPrefix {
    /// The prefix digits as a number, e.g. `0xC0A` for `C0A`.
    value: u32,
    /// How many digits, `1..=8`; kept because leading zeros are significant (`0A` ≠ `A`).
    digits: u8,
}

impl HexIpPrefix {
    /// Parses 1 to 8 upper-case hex digits. Lower case is rejected: PXELINUX writes upper
    /// case, so a lower-case string such as `deadbeef` is more likely garbage than an IP.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let name = s.trim();
        if name.is_empty() {
            return Err(AddrError::Empty);
        }
        check_hex_chars(name)?;
        if name.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(AddrError::LowercaseHexIp { name: shown(name) });
        }
        let digits = u8::try_from(name.len())
            .ok()
            .filter(|d| *d <= 8)
            .ok_or_else(|| AddrError::HexIpTooLong {
                name: shown(name),
                digits: name.len(),
            })?;
        let value = name
            .bytes()
            .fold(0, |acc, b| acc << 4 | u32::from(nibble(b)));
        Ok(HexIpPrefix { value, digits })
    }

    /// All 8 names PXELINUX asks for an address, longest (the whole address) first.
    pub fn from_ip(ip: Ipv4Addr) -> [HexIpPrefix; 8] {
        let full = u32::from(ip);
        std::array::from_fn(|i| HexIpPrefix {
            value: full >> (4 * i),
            digits: 8 - i as u8,
        })
    }

    /// Number of hex digits, `1..=8`.
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// The address a full 8-digit name spells; `None` for shorter prefixes.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        (self.digits == 8).then(|| Ipv4Addr::from(self.value))
    }

    /// Whether `ip` starts with this prefix, i.e. PXELINUX on `ip` would ask for this name.
    pub fn covers(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) >> (4 * (8 - u32::from(self.digits))) == self.value
    }
}

impl fmt::Display for HexIpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:01$X}", self.value, usize::from(self.digits))
    }
}

/// A file name under `pxelinux.cfg/`, in any of the shapes PXELINUX asks for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum PxelinuxName {
    /// `<uuid>`, lower-case dashed.
    Uuid(SystemUuid),
    /// `01-<mac>` or `20-<ib-mac>`.
    Hw(PxeHwAddr),
    /// `C0A80A05` down to `C`.
    HexIp(HexIpPrefix),
    /// `default`, the last resort.
    Default,
}

impl PxelinuxName {
    /// Parses a name by its shape: `default`, `<2 hex>-…` hardware, 1-8 hex digits (upper
    /// case only) IP prefix, or a 32/36/38-character UUID (bare, dashed or braced).
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let name = s.trim();
        if name == "default" {
            Ok(PxelinuxName::Default)
        } else if name.split_once('-').is_some_and(|(t, _)| is_hwtype(t)) {
            PxeHwAddr::parse(name).map(PxelinuxName::Hw)
        } else if (1..=8).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            HexIpPrefix::parse(name).map(PxelinuxName::HexIp)
        } else if matches!(name.len(), 32 | 36 | 38) {
            SystemUuid::parse(name).map(PxelinuxName::Uuid)
        } else if name.is_empty() {
            Err(AddrError::Empty)
        } else {
            Err(AddrError::NotPxelinuxName { name: shown(name) })
        }
    }

    /// The hardware type a `01-`/`20-` name implies; `None` for the other shapes.
    pub fn hw_type(&self) -> Option<HwType> {
        match self {
            PxelinuxName::Hw(hw) => Some(hw.hw_type()),
            _ => None,
        }
    }
}

impl fmt::Display for PxelinuxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PxelinuxName::Uuid(uuid) => uuid.fmt(f),
            PxelinuxName::Hw(hw) => hw.fmt(f),
            PxelinuxName::HexIp(prefix) => prefix.fmt(f),
            PxelinuxName::Default => f.write_str("default"),
        }
    }
}

/// The names PXELINUX tries, in order: the UUID (when given and PXELINUX would ask for it),
/// the hardware name, the 8 hex-IP prefixes longest first (when an IP is given), `default`.
pub fn pxelinux_lookup_sequence(
    uuid: Option<SystemUuid>,
    hw: PxeHwAddr,
    ip: Option<Ipv4Addr>,
) -> Vec<PxelinuxName> {
    let uuid = uuid
        .filter(SystemUuid::pxelinux_asks)
        .map(PxelinuxName::Uuid);
    let prefixes = ip
        .into_iter()
        .flat_map(HexIpPrefix::from_ip)
        .map(PxelinuxName::HexIp);
    uuid.into_iter()
        .chain([PxelinuxName::Hw(hw)])
        .chain(prefixes)
        .chain([PxelinuxName::Default])
        .collect()
}

/// Every form derivable from one reading, for `ironpxe addr`; empty strings where not derivable.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Derived {
    /// [`Reading::kind`] of the input.
    pub kind: &'static str,
    /// Colon form of what the firmware reports as `${mac}` (the IB MAC for IB ports).
    pub mac: String,
    pub guid: String,
    pub ib_mac: String,
    pub client_id: String,
    /// Only when the input was one: the QPN part is dynamic, so it cannot be derived.
    pub ipoib_addr: String,
    /// The PXELINUX hardware names the port may ask for.
    pub pxelinux_names: Vec<String>,
    /// The colon form iPXE scripts see as `${mac}`.
    pub ipxe_name: String,
    /// A caveat about what could not be derived.
    pub note: Option<&'static str>,
}

/// Derives every other form from `reading`; GUIDs and IPoIB addresses get their client-id
/// from `client_id_prefix` (a client-id input keeps its own prefix).
pub fn derive(reading: &Reading, client_id_prefix: [u8; 12]) -> Derived {
    let kind = reading.kind();
    match *reading {
        Reading::EthernetMac(mac) => Derived {
            kind,
            mac: mac.to_string(),
            pxelinux_names: vec![PxeHwAddr::Ethernet(mac).to_string()],
            ipxe_name: mac.to_string(),
            ..Derived::default()
        },
        Reading::IbMac(mac) => Derived {
            note: Some(IB_MAC_NOTE),
            ..ib_derived(kind, mac)
        },
        Reading::Guid(guid) => port_derived(kind, guid.client_id(client_id_prefix), String::new()),
        Reading::IpoibAddr(addr) => port_derived(
            kind,
            addr.guid().client_id(client_id_prefix),
            addr.to_string(),
        ),
        Reading::ClientId(client_id) => port_derived(kind, client_id, String::new()),
    }
}

/// The forms an IB port has from its IB MAC alone.
fn ib_derived(kind: &'static str, ib_mac: Mac) -> Derived {
    Derived {
        kind,
        mac: ib_mac.to_string(),
        ib_mac: ib_mac.to_string(),
        pxelinux_names: vec![
            PxeHwAddr::Infiniband(IbHwAddr::Mac(ib_mac)).to_string(),
            PxeHwAddr::Ethernet(ib_mac).to_string(),
        ],
        ipxe_name: ib_mac.to_string(),
        ..Derived::default()
    }
}

/// The forms an IB port has when its GUID (here inside `client_id`) is known.
fn port_derived(kind: &'static str, client_id: ClientId, ipoib_addr: String) -> Derived {
    let guid = client_id.guid();
    Derived {
        guid: guid.to_string(),
        client_id: client_id.to_string(),
        ipoib_addr,
        ..ib_derived(kind, guid.ib_mac())
    }
}

/// Decodes any accepted spelling of hex bytes, trimming surrounding whitespace.
fn parse_hex(s: &str) -> Result<Vec<u8>, AddrError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(AddrError::Empty);
    }
    match separator(input)? {
        None => parse_bare(input),
        Some(sep) => parse_groups(input, sep),
    }
}

/// The single separator used in `input`, if any; two different ones are an error.
fn separator(input: &str) -> Result<Option<char>, AddrError> {
    let mut found = None;
    for c in input.chars().filter(|c| matches!(c, ':' | '-' | '.')) {
        match found {
            None => found = Some(c),
            Some(first) if first != c => {
                return Err(AddrError::MixedSeparators {
                    first,
                    second: c,
                    input: shown(input),
                })
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// Decodes unseparated hex, which must be whole bytes.
fn parse_bare(input: &str) -> Result<Vec<u8>, AddrError> {
    check_hex_chars(input)?;
    if input.len() % 2 != 0 {
        return Err(AddrError::OddDigits {
            digits: input.len(),
            input: shown(input),
        });
    }
    Ok(decode_checked(input))
}

/// Decodes `sep`-separated groups: pairs, or with `.` also Cisco groups of four (chosen by
/// the first group's width, so all groups must match it).
fn parse_groups(input: &str, sep: char) -> Result<Vec<u8>, AddrError> {
    let cisco = sep == '.' && input.split(sep).next().is_some_and(|g| g.len() == 4);
    let width = if cisco { 4 } else { 2 };
    let mut digits = String::with_capacity(input.len());
    for (i, group) in input.split(sep).enumerate() {
        check_group(group, i + 1, width, input)?;
        digits.push_str(group);
    }
    Ok(decode_checked(&digits))
}

/// Checks that `group` (1-based `position`) is `width` hex digits.
fn check_group(group: &str, position: usize, width: usize, input: &str) -> Result<(), AddrError> {
    if !group.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddrError::InvalidGroup {
            group: shown(group),
            position,
            input: shown(input),
        });
    }
    if group.len() != width {
        return Err(AddrError::GroupSize {
            group: shown(group),
            position,
            digits: group.len(),
            expected: width,
            input: shown(input),
        });
    }
    Ok(())
}

/// Fails on the first non-hex character, naming it and its 1-based position.
fn check_hex_chars(input: &str) -> Result<(), AddrError> {
    match input
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        Some((i, ch)) => Err(AddrError::InvalidDigit {
            ch,
            position: i + 1,
            input: shown(input),
        }),
        None => Ok(()),
    }
}

/// Joins the groups of a dashed UUID after checking the 8-4-4-4-12 layout.
fn uuid_digits(inner: &str) -> Result<String, AddrError> {
    const WIDTHS: [usize; 5] = [8, 4, 4, 4, 12];
    let groups: Vec<&str> = inner.split('-').collect();
    if groups.len() != WIDTHS.len() {
        return Err(AddrError::UuidGroups {
            groups: groups.len(),
            input: shown(inner),
        });
    }
    for (i, (group, width)) in groups.iter().zip(WIDTHS).enumerate() {
        check_group(group, i + 1, width, inner)?;
    }
    Ok(groups.concat())
}

/// Strips one matching pair of `{}` (Windows/registry style) around a UUID.
fn strip_braces(input: &str) -> Result<&str, AddrError> {
    match (input.strip_prefix('{'), input.ends_with('}')) {
        (Some(rest), true) => Ok(rest.strip_suffix('}').unwrap_or(rest)),
        (None, false) => Ok(input),
        _ => Err(AddrError::UnbalancedBraces {
            input: shown(input),
        }),
    }
}

/// Whether `t` is the two-hex-digit ARP type at the start of a PXELINUX hardware name.
fn is_hwtype(t: &str) -> bool {
    t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decodes even-length hex that the caller has already checked to be all hex digits.
fn decode_checked(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| pair.iter().fold(0, |acc, &b| acc << 4 | nibble(b)))
        .collect()
}

/// The value of one checked hex digit.
fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Converts decoded bytes to a fixed-size array, naming `what` on a length mismatch.
fn to_array<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], AddrError> {
    bytes.try_into().map_err(|_| AddrError::WrongLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

/// Lower-case hex of `bytes`, `group` bytes at a time, joined by `sep`.
fn hex_join(bytes: &[u8], group: usize, sep: &str) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, chunk) in bytes.chunks(group.max(1)).enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        for &byte in chunk {
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0xf)]));
        }
    }
    out
}

/// `s` cut to [`MAX_SHOWN_CHARS`] characters for error messages.
fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUID: &str = "7c:fe:90:03:00:29:26:52";
    const IB_MAC: &str = "7c:fe:90:29:26:52";
    const CLIENT_ID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
    const IPOIB: &str = "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52";
    const IRONIC_MAC: &str = "0c:42:a1:12:34:56";
    const IRONIC_CLIENT_ID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:0c:42:a1:ff:fe:12:34:56";
    const UUID: &str = "4c4c4544-0051-3510-8052-b4c04f4e4d32";

    /// The separator styles people type; `Cisco` groups two bytes per dotted group.
    #[derive(Clone, Copy, Debug)]
    enum Spelling {
        Colon,
        Hyphen,
        DotPairs,
        Cisco,
        Bare,
    }

    const SPELLINGS: [Spelling; 5] = [
        Spelling::Colon,
        Spelling::Hyphen,
        Spelling::DotPairs,
        Spelling::Cisco,
        Spelling::Bare,
    ];

    fn spell(bytes: &[u8], spelling: Spelling) -> String {
        match spelling {
            Spelling::Colon => hex_join(bytes, 1, ":"),
            Spelling::Hyphen => hex_join(bytes, 1, "-"),
            Spelling::DotPairs => hex_join(bytes, 1, "."),
            Spelling::Cisco => hex_join(bytes, 2, "."),
            Spelling::Bare => hex_join(bytes, 1, ""),
        }
    }

    /// Upper-cases the characters where `mask` (cycled) is true.
    fn recase(s: &str, mask: &[bool]) -> String {
        s.chars()
            .zip(mask.iter().cycle())
            .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    /// Lower, upper and alternating case of `s`, each with surrounding whitespace.
    fn cases(s: &str) -> Vec<String> {
        [vec![false], vec![true], vec![true, false]]
            .iter()
            .map(|mask| format!(" \t{}\n", recase(s, mask)))
            .collect()
    }

    fn all_spellings(bytes: &[u8]) -> Vec<String> {
        SPELLINGS
            .iter()
            .flat_map(|&sp| cases(&spell(bytes, sp)))
            .collect()
    }

    fn err(result: Result<impl fmt::Debug, AddrError>) -> String {
        match result {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn mac(s: &str) -> Mac {
        Mac::parse(s).expect("test vector parses")
    }

    fn guid(s: &str) -> Guid {
        Guid::parse(s).expect("test vector parses")
    }

    fn uuid(s: &str) -> SystemUuid {
        SystemUuid::parse(s).expect("test vector parses")
    }

    fn name(s: &str) -> PxelinuxName {
        PxelinuxName::parse(s).expect("test name parses")
    }

    #[test]
    fn mac_parses_every_spelling() {
        let want = Mac([0x7c, 0xfe, 0x90, 0x29, 0x26, 0x52]);
        for s in all_spellings(&want.0) {
            assert_eq!(Mac::parse(&s), Ok(want), "{s:?}");
        }
        assert_eq!(Mac::parse("7cfe.9029.2652"), Ok(want));
        assert_eq!(Mac::parse("7C-fE-90-29-26-52"), Ok(want));
    }

    #[test]
    fn guid_parses_every_spelling() {
        let want = Guid([0x7c, 0xfe, 0x90, 0x03, 0x00, 0x29, 0x26, 0x52]);
        for s in all_spellings(&want.0) {
            assert_eq!(Guid::parse(&s), Ok(want), "{s:?}");
        }
        assert_eq!(Guid::parse("7cfe.9003.0029.2652"), Ok(want));
    }

    #[test]
    fn ipoib_and_client_id_parse_every_spelling() {
        let ipoib = IpoibAddr::parse(IPOIB).expect("vector");
        let client_id = ClientId::parse(CLIENT_ID).expect("vector");
        for s in all_spellings(&ipoib.0) {
            assert_eq!(IpoibAddr::parse(&s), Ok(ipoib), "{s:?}");
        }
        for s in all_spellings(&client_id.0) {
            assert_eq!(ClientId::parse(&s), Ok(client_id), "{s:?}");
        }
    }

    #[test]
    fn output_forms_are_lower_case() {
        let m = mac("7C:FE:90:29:26:52");
        assert_eq!(m.to_string(), "7c:fe:90:29:26:52");
        assert_eq!(m.hyphen(), "7c-fe-90-29-26-52");
        assert_eq!(m.raw(), "7cfe90292652");
        assert_eq!(m.dotted(), "7cfe.9029.2652");
        let g = guid(GUID);
        assert_eq!(g.to_string(), GUID);
        assert_eq!(g.hyphen(), "7c-fe-90-03-00-29-26-52");
        assert_eq!(g.raw(), "7cfe900300292652");
        assert_eq!(g.dotted(), "7cfe.9003.0029.2652");
    }

    #[test]
    fn guid_yields_ib_mac_and_client_id() {
        let g = guid(GUID);
        assert_eq!(g.ib_mac(), mac(IB_MAC));
        assert_eq!(
            g.client_id(MELLANOX_CLIENT_ID_PREFIX).to_string(),
            CLIENT_ID
        );
        assert_eq!(
            ClientId::new(MELLANOX_CLIENT_ID_PREFIX, g).to_string(),
            CLIENT_ID
        );
    }

    #[test]
    fn guid_truncations_are_the_windows_that_are_not_the_ib_mac() {
        let t = guid(GUID).truncations();
        assert_eq!(
            t,
            [
                mac("7c:fe:90:03:00:29"),
                mac("fe:90:03:00:29:26"),
                mac("90:03:00:29:26:52")
            ]
        );
        assert!(!t.contains(&mac(IB_MAC)));
    }

    #[test]
    fn any_addr_guid_is_the_guid_or_the_end_of_twenty_bytes() {
        let g = guid(GUID);
        assert_eq!(AnyAddr::parse(GUID).expect("guid").guid(), Some(g));
        assert_eq!(AnyAddr::parse(CLIENT_ID).expect("cid").guid(), Some(g));
        assert_eq!(AnyAddr::parse(IPOIB).expect("ipoib").guid(), Some(g));
        assert_eq!(AnyAddr::parse(IB_MAC).expect("mac").guid(), None);
    }

    #[test]
    fn hw_type_spells_the_arp_type_both_ways() {
        for hw in [HwType::Ethernet, HwType::Infiniband] {
            assert_eq!(HwType::from_arp(hw.arp()), Some(hw));
            let name = PxeHwAddr::new(hw, mac(IB_MAC));
            assert_eq!(name.hw_type(), hw);
            assert_eq!(PxelinuxName::Hw(name).hw_type(), Some(hw));
            assert!(name.to_string().starts_with(&format!("{}-", hw.arp())));
        }
        assert_eq!(HwType::from_arp("06"), None);
        assert_eq!(PxelinuxName::Default.hw_type(), None);
    }

    #[test]
    fn client_id_prefix_text_is_what_operators_write() {
        let text = client_id_prefix_text(MELLANOX_CLIENT_ID_PREFIX);
        assert!(CLIENT_ID.starts_with(&format!("{text}:")), "{text}");
        assert_eq!(text.len(), 12 * 3 - 1);
    }

    #[test]
    fn ipoib_addr_splits_into_parts() {
        let a = IpoibAddr::parse(IPOIB).expect("vector");
        assert_eq!(a.guid(), guid(GUID));
        assert_eq!(a.qpn(), 0x27);
        assert_eq!(a.subnet_prefix(), [0xfe, 0x80, 0, 0, 0, 0, 0, 0]);
        assert_eq!(a.to_string(), IPOIB);
    }

    #[test]
    fn ipoib_qpn_ignores_flags_byte() {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&[0xff, 0x12, 0x34, 0x56]);
        assert_eq!(IpoibAddr(bytes).qpn(), 0x12_3456);
    }

    #[test]
    fn client_id_splits_into_prefix_and_guid() {
        let c = ClientId::parse(CLIENT_ID).expect("vector");
        assert_eq!(c.guid(), guid(GUID));
        assert_eq!(c.prefix(), MELLANOX_CLIENT_ID_PREFIX);
        let other = ClientId::parse("01:02:03:04:05:06:07:08:09:0a:0b:0c:7c:fe:90:03:00:29:26:52")
            .expect("any prefix parses");
        assert_eq!(other.guid(), guid(GUID));
        assert_eq!(other.prefix(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn ironic_sample_port_guid_gives_its_ib_mac() {
        let c = ClientId::parse(IRONIC_CLIENT_ID).expect("vector");
        assert_eq!(c.guid(), guid("0c:42:a1:ff:fe:12:34:56"));
        assert_eq!(c.guid().ib_mac(), mac(IRONIC_MAC));
        assert_eq!(c.prefix(), MELLANOX_CLIENT_ID_PREFIX);
    }

    #[test]
    fn any_addr_reads_by_length() {
        let six = AnyAddr::parse(IB_MAC).expect("6 bytes");
        assert_eq!(
            six.readings(),
            vec![
                Reading::EthernetMac(mac(IB_MAC)),
                Reading::IbMac(mac(IB_MAC))
            ]
        );
        let eight = AnyAddr::parse(GUID).expect("8 bytes");
        assert_eq!(eight.readings(), vec![Reading::Guid(guid(GUID))]);
        let kinds = |s: &str| -> Vec<&str> {
            let any = AnyAddr::parse(s).expect("20 bytes");
            any.readings().iter().map(Reading::kind).collect()
        };
        assert_eq!(kinds(CLIENT_ID), ["client-id", "ipoib-addr"]);
        assert_eq!(kinds(IPOIB), ["ipoib-addr", "client-id"]);
        assert_eq!(
            AnyAddr::parse(IPOIB).map(|a| a.to_string()),
            Ok(IPOIB.to_owned())
        );
    }

    #[test]
    fn any_addr_rejects_other_lengths() {
        assert_eq!(
            err(AnyAddr::parse("aa:bb:cc:dd:ee:ff:00")),
            "expected 6, 8 or 20 bytes for a hardware address, got 7"
        );
    }

    #[test]
    fn rejects_invalid_group_naming_it() {
        assert_eq!(
            err(Mac::parse("aa:bb:zz:dd:ee:ff")),
            r#"invalid hex group "zz" at position 3 in "aa:bb:zz:dd:ee:ff""#
        );
        assert!(err(Mac::parse("aa: bb:cc:dd:ee:ff")).contains(r#"group " bb" at position 2"#));
        assert!(err(Mac::parse("aa-bb-cc-dd-ee-fé")).contains(r#"group "fé" at position 6"#));
    }

    #[test]
    fn rejects_wrong_length_naming_the_type() {
        assert_eq!(
            err(Mac::parse("aa:bb:cc:dd:ee")),
            "expected 6 bytes for an Ethernet MAC, got 5"
        );
        assert_eq!(
            err(Guid::parse(IB_MAC)),
            "expected 8 bytes for a GUID, got 6"
        );
        assert_eq!(
            err(IpoibAddr::parse(GUID)),
            "expected 20 bytes for an IPoIB address, got 8"
        );
        assert_eq!(err(ClientId::parse("")), "empty input");
        assert_eq!(err(Mac::parse("  \t ")), "empty input");
    }

    #[test]
    fn rejects_mixed_separators() {
        assert_eq!(
            err(Mac::parse("aa:bb-cc:dd:ee:ff")),
            r#"mixed separators ':' and '-' in "aa:bb-cc:dd:ee:ff""#
        );
        assert!(err(Mac::parse("aabb.ccdd:eeff")).contains("'.' and ':'"));
    }

    #[test]
    fn rejects_odd_and_non_hex_bare_digits() {
        assert_eq!(
            err(Mac::parse("aabbccddeef")),
            r#"odd number of hex digits (11) in "aabbccddeef""#
        );
        assert_eq!(
            err(Mac::parse("aabbccddeegg")),
            r#"invalid hex digit 'g' at position 11 in "aabbccddeegg""#
        );
        assert!(err(Mac::parse("0x7cfe90292652")).contains("'x' at position 2"));
    }

    #[test]
    fn rejects_wrong_group_sizes() {
        assert_eq!(
            err(Mac::parse("aa:bbb:cc:dd:ee:ff")),
            r#"hex group "bbb" at position 2 in "aa:bbb:cc:dd:ee:ff" has 3 digits, expected 2"#
        );
        assert!(err(Mac::parse("a:bb:cc:dd:ee:ff")).contains(r#""a" at position 1"#));
        assert!(err(Mac::parse("aa::cc:dd:ee:ff")).contains(r#""" at position 2"#));
        assert!(err(Mac::parse("aa:bb:cc:dd:ee:ff:")).contains(r#""" at position 7"#));
        assert!(err(Mac::parse("7cfe.90.29.2652")).contains(r#""90" at position 2"#));
        assert!(err(Mac::parse("7cfe.90.29.2652")).contains("expected 4"));
        assert!(err(Mac::parse("7cf.e902.92652")).contains(r#""7cf" at position 1"#));
    }

    #[test]
    fn long_input_is_cut_in_messages() {
        let long = "z".repeat(500);
        let message = err(Mac::parse(&long));
        assert!(message.len() < 120, "{message}");
        assert!(message.contains('…'));
    }

    #[test]
    fn uuid_parses_every_spelling() {
        let want = uuid(UUID);
        let bare = UUID.replace('-', "");
        for s in [UUID.to_owned(), bare, format!("{{{UUID}}}")] {
            for spelled in cases(&s) {
                assert_eq!(SystemUuid::parse(&spelled), Ok(want), "{spelled:?}");
            }
        }
        assert_eq!(want.to_string(), UUID);
        assert_eq!(uuid(&UUID.to_uppercase()).to_string(), UUID);
    }

    #[test]
    fn uuid_rejects_malformed_text_naming_the_part() {
        assert_eq!(
            err(SystemUuid::parse("4c4c4544-0051-3510-8052")),
            r#"UUID "4c4c4544-0051-3510-8052" has 4 dash-separated groups, expected 5 (8-4-4-4-12)"#
        );
        assert!(
            err(SystemUuid::parse("4c4c4544-0051-351-08052-b4c04f4e4d32"))
                .contains(r#""351" at position 3"#)
        );
        assert!(
            err(SystemUuid::parse("4c4c4544-0051-3510-80x2-b4c04f4e4d32"))
                .contains(r#"invalid hex group "80x2" at position 4"#)
        );
        assert!(
            err(SystemUuid::parse("{4c4c4544-0051-3510-8052-b4c04f4e4d32"))
                .starts_with("unbalanced braces")
        );
        assert_eq!(
            err(SystemUuid::parse("4c4c45440051")),
            "expected 16 bytes for a system UUID, got 6"
        );
        assert_eq!(err(SystemUuid::parse(" ")), "empty input");
    }

    #[test]
    fn uuid_swaps_first_three_fields() {
        let u = uuid("00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(
            u.swapped().to_string(),
            "33221100-5544-7766-8899-aabbccddeeff"
        );
        assert_eq!(u.swapped().swapped(), u);
    }

    #[test]
    fn pxelinux_asks_for_uuid_only_when_byte_6_is_in_range() {
        let with_byte6 = |b: u8| {
            let mut bytes = [0x11; 16];
            bytes[6] = b;
            SystemUuid(bytes).pxelinux_asks()
        };
        assert!(!with_byte6(0x00));
        assert!(!with_byte6(0x0f));
        assert!(with_byte6(0x10));
        assert!(with_byte6(0x35));
        assert!(with_byte6(0xef));
        assert!(!with_byte6(0xf0));
        assert!(!with_byte6(0xff));
        assert!(uuid(UUID).pxelinux_asks());
    }

    #[test]
    fn pxelinux_ethernet_names() {
        let n = name("01-0c-42-a1-12-34-56");
        assert_eq!(n, PxelinuxName::Hw(PxeHwAddr::Ethernet(mac(IRONIC_MAC))));
        assert_eq!(n.to_string(), "01-0c-42-a1-12-34-56");
        assert_eq!(name("01-0C-42-A1-12-34-56"), n);
        let ib_as_ethernet = name("01-7c-fe-90-29-26-52");
        assert_eq!(
            ib_as_ethernet,
            PxelinuxName::Hw(PxeHwAddr::Ethernet(mac(IB_MAC)))
        );
        assert_eq!(
            err(PxelinuxName::parse("01-7c-fe-90-03-00-29-26-52")),
            "expected 6 bytes for an Ethernet MAC, got 8"
        );
    }

    #[test]
    fn pxelinux_infiniband_names_accept_every_port_form() {
        let by_mac = PxeHwAddr::Infiniband(IbHwAddr::Mac(mac(IB_MAC)));
        let by_guid = PxeHwAddr::Infiniband(IbHwAddr::Guid(guid(GUID)));
        assert_eq!(name("20-7c-fe-90-29-26-52"), PxelinuxName::Hw(by_mac));
        assert_eq!(
            name("20-7c-fe-90-03-00-29-26-52"),
            PxelinuxName::Hw(by_guid)
        );
        let twenty = |s: &str| name(&format!("20-{}", s.replace(':', "-")));
        assert_eq!(twenty(IPOIB), PxelinuxName::Hw(by_guid));
        assert_eq!(twenty(CLIENT_ID), PxelinuxName::Hw(by_guid));
        assert_eq!(by_mac.to_string(), "20-7c-fe-90-29-26-52");
        assert_eq!(by_guid.to_string(), "20-7c-fe-90-29-26-52");
        assert_eq!(by_guid.to_string(), twenty(CLIENT_ID).to_string());
    }

    #[test]
    fn pxelinux_rejects_other_hardware_types() {
        assert_eq!(
            err(PxelinuxName::parse("06-aa-bb-cc-dd-ee-ff")),
            r#"unsupported ARP hardware type 06 in PXELINUX name "06-aa-bb-cc-dd-ee-ff""#
        );
        assert!(err(PxeHwAddr::parse("aa-bb")).contains("unsupported ARP hardware type aa"));
        assert!(err(PxeHwAddr::parse("default")).starts_with("not a PXELINUX config name"));
    }

    #[test]
    fn pxelinux_hex_ip_names() {
        let prefixes: Vec<String> = HexIpPrefix::from_ip(Ipv4Addr::new(192, 168, 10, 5))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            prefixes,
            ["C0A80A05", "C0A80A0", "C0A80A", "C0A80", "C0A8", "C0A", "C0", "C"]
        );
        for p in &prefixes {
            assert_eq!(name(p).to_string(), *p);
        }
        assert_eq!(name("0A"), name("0A"));
        assert_ne!(name("0A"), name("A"));
        assert_eq!(name("0A").to_string(), "0A");
    }

    #[test]
    fn hex_ip_full_name_matches_its_address() {
        let ip = Ipv4Addr::new(192, 168, 10, 5);
        assert_eq!(HexIpPrefix::parse("C0A80A05").map(|p| p.ip()), Ok(Some(ip)));
        assert_eq!(HexIpPrefix::parse("C0A80A0").map(|p| p.ip()), Ok(None));
        for p in HexIpPrefix::from_ip(ip) {
            assert!(p.covers(ip), "{p}");
            assert!(!p.covers(Ipv4Addr::new(10, 0, 0, 1)), "{p}");
        }
        assert_eq!(HexIpPrefix::from_ip(ip)[0].digits(), 8);
        assert_eq!(HexIpPrefix::from_ip(ip)[7].digits(), 1);
    }

    #[test]
    fn hex_ip_rejects_lower_case_and_long_names() {
        assert_eq!(
            err(PxelinuxName::parse("deadbeef")),
            r#"hex IP "deadbeef" has lower-case digits; PXELINUX asks for hex IPs in upper case"#
        );
        assert!(err(PxelinuxName::parse("C0a8")).contains(r#""C0a8""#));
        assert_eq!(
            err(HexIpPrefix::parse("C0A80A05A")),
            r#"hex IP "C0A80A05A" has 9 digits, at most 8"#
        );
        assert!(err(HexIpPrefix::parse("C0G")).contains("'G' at position 3"));
        assert_eq!(err(HexIpPrefix::parse("")), "empty input");
    }

    #[test]
    fn pxelinux_uuid_and_default_names() {
        let u = uuid(UUID);
        assert_eq!(name(UUID), PxelinuxName::Uuid(u));
        assert_eq!(name(&UUID.replace('-', "")), PxelinuxName::Uuid(u));
        assert_eq!(name(&UUID.to_uppercase()), PxelinuxName::Uuid(u));
        assert_eq!(name(&format!("{{{UUID}}}")), PxelinuxName::Uuid(u));
        assert_eq!(PxelinuxName::Uuid(u).to_string(), UUID);
        assert_eq!(name("default"), PxelinuxName::Default);
        assert_eq!(name(" default\n").to_string(), "default");
    }

    #[test]
    fn pxelinux_rejects_other_names() {
        assert_eq!(
            err(PxelinuxName::parse("pxelinux.0")),
            r#"not a PXELINUX config name: "pxelinux.0""#
        );
        assert!(err(PxelinuxName::parse("C0A80A05A")).starts_with("not a PXELINUX"));
        assert!(err(PxelinuxName::parse("Default")).starts_with("not a PXELINUX"));
        assert_eq!(err(PxelinuxName::parse("")), "empty input");
        assert!(
            err(PxelinuxName::parse("4c4c4544-0051-3510-8052-b4c04f4e4dzz"))
                .contains(r#""b4c04f4e4dzz" at position 5"#)
        );
    }

    #[test]
    fn lookup_sequence_follows_pxelinux_order() {
        let hw = PxeHwAddr::Ethernet(mac(IRONIC_MAC));
        let ip = Ipv4Addr::new(192, 168, 10, 5);
        let names: Vec<String> = pxelinux_lookup_sequence(Some(uuid(UUID)), hw, Some(ip))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                UUID,
                "01-0c-42-a1-12-34-56",
                "C0A80A05",
                "C0A80A0",
                "C0A80A",
                "C0A80",
                "C0A8",
                "C0A",
                "C0",
                "C",
                "default"
            ]
        );
    }

    #[test]
    fn lookup_sequence_skips_what_is_missing() {
        let hw = PxeHwAddr::Infiniband(IbHwAddr::Guid(guid(GUID)));
        let never_asked = uuid("00112233-4455-0077-8899-aabbccddeeff");
        assert!(!never_asked.pxelinux_asks());
        let want = vec![PxelinuxName::Hw(hw), PxelinuxName::Default];
        assert_eq!(pxelinux_lookup_sequence(Some(never_asked), hw, None), want);
        assert_eq!(pxelinux_lookup_sequence(None, hw, None), want);
    }

    #[test]
    fn derive_ethernet_mac() {
        let d = derive(
            &Reading::EthernetMac(mac(IRONIC_MAC)),
            MELLANOX_CLIENT_ID_PREFIX,
        );
        assert_eq!(
            d,
            Derived {
                kind: "ethernet-mac",
                mac: IRONIC_MAC.into(),
                pxelinux_names: vec!["01-0c-42-a1-12-34-56".into()],
                ipxe_name: IRONIC_MAC.into(),
                ..Derived::default()
            }
        );
    }

    #[test]
    fn derive_ib_mac_says_what_it_cannot_give() {
        let d = derive(&Reading::IbMac(mac(IB_MAC)), MELLANOX_CLIENT_ID_PREFIX);
        assert_eq!(
            d,
            Derived {
                kind: "ib-mac",
                mac: IB_MAC.into(),
                ib_mac: IB_MAC.into(),
                pxelinux_names: vec!["20-7c-fe-90-29-26-52".into(), "01-7c-fe-90-29-26-52".into()],
                ipxe_name: IB_MAC.into(),
                note: Some(IB_MAC_NOTE),
                ..Derived::default()
            }
        );
    }

    fn port_expectation(kind: &'static str, ipoib_addr: &str) -> Derived {
        Derived {
            kind,
            mac: IB_MAC.into(),
            guid: GUID.into(),
            ib_mac: IB_MAC.into(),
            client_id: CLIENT_ID.into(),
            ipoib_addr: ipoib_addr.into(),
            pxelinux_names: vec!["20-7c-fe-90-29-26-52".into(), "01-7c-fe-90-29-26-52".into()],
            ipxe_name: IB_MAC.into(),
            note: None,
        }
    }

    #[test]
    fn derive_guid_ipoib_and_client_id() {
        let p = MELLANOX_CLIENT_ID_PREFIX;
        assert_eq!(
            derive(&Reading::Guid(guid(GUID)), p),
            port_expectation("guid", "")
        );
        let ipoib = IpoibAddr::parse(IPOIB).expect("vector");
        assert_eq!(
            derive(&Reading::IpoibAddr(ipoib), p),
            port_expectation("ipoib-addr", IPOIB)
        );
        let client_id = ClientId::parse(CLIENT_ID).expect("vector");
        assert_eq!(
            derive(&Reading::ClientId(client_id), p),
            port_expectation("client-id", "")
        );
    }

    #[test]
    fn derive_client_id_keeps_its_own_prefix() {
        let client_id = ClientId::parse(IRONIC_CLIENT_ID).expect("vector");
        let d = derive(&Reading::ClientId(client_id), [0; 12]);
        assert_eq!(d.client_id, IRONIC_CLIENT_ID);
        assert_eq!(d.ib_mac, IRONIC_MAC);
        assert_eq!(d.guid, "0c:42:a1:ff:fe:12:34:56");
        let from_guid = derive(&Reading::Guid(client_id.guid()), [0; 12]);
        assert_eq!(
            from_guid.client_id,
            "00:00:00:00:00:00:00:00:00:00:00:00:0c:42:a1:ff:fe:12:34:56"
        );
    }

    #[test]
    fn serde_writes_canonical_and_reads_any_spelling() {
        let m = mac(IB_MAC);
        assert_eq!(
            serde_json::to_string(&m).ok(),
            Some(format!("\"{IB_MAC}\""))
        );
        assert_eq!(
            serde_json::from_str::<Mac>("\"7CFE.9029.2652\"").ok(),
            Some(m)
        );
        let g = guid(GUID);
        assert_eq!(
            serde_json::from_str::<Guid>("\"7c-fe-90-03-00-29-26-52\"").ok(),
            Some(g)
        );
        let c = ClientId::parse(CLIENT_ID).expect("vector");
        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(serde_json::from_str::<ClientId>(&json).ok(), Some(c));
        let u = uuid(UUID);
        assert_eq!(serde_json::to_string(&u).ok(), Some(format!("\"{UUID}\"")));
        let braced = format!("\"{{{}}}\"", UUID.to_uppercase());
        assert_eq!(serde_json::from_str::<SystemUuid>(&braced).ok(), Some(u));
        let bad = serde_json::from_str::<Mac>("\"aa:bb:zz:dd:ee:ff\"");
        assert!(bad.is_err_and(|e| e.to_string().contains(r#""zz""#)));
    }

    #[test]
    fn from_str_delegates_to_parse() {
        assert_eq!(IB_MAC.parse::<Mac>(), Ok(mac(IB_MAC)));
        assert_eq!(GUID.parse::<Guid>(), Ok(guid(GUID)));
        assert_eq!(UUID.parse::<SystemUuid>(), Ok(uuid(UUID)));
        assert_eq!("default".parse::<PxelinuxName>(), Ok(PxelinuxName::Default));
        assert_eq!("C0".parse::<HexIpPrefix>().map(|p| p.digits()), Ok(2));
        assert_eq!(GUID.parse::<IbHwAddr>(), Ok(IbHwAddr::Guid(guid(GUID))));
        assert_eq!(IB_MAC.parse::<AnyAddr>(), Ok(AnyAddr::Six(mac(IB_MAC))));
    }

    fn arb_spelled(bytes: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, String)> {
        let pad = prop::sample::select(vec!["", " ", "\t", "\n ", "  "]);
        (
            prop::sample::select(SPELLINGS.to_vec()),
            prop::collection::vec(any::<bool>(), 1..16),
            pad.clone(),
            pad,
        )
            .prop_map(move |(sp, mask, pre, post)| {
                let text = format!("{pre}{}{post}", recase(&spell(&bytes, sp), &mask));
                (bytes.clone(), text)
            })
    }

    fn arb_bytes(len: usize) -> impl Strategy<Value = (Vec<u8>, String)> {
        prop::collection::vec(any::<u8>(), len).prop_flat_map(arb_spelled)
    }

    fn arb_name() -> impl Strategy<Value = PxelinuxName> {
        prop_oneof![
            any::<[u8; 16]>().prop_map(|b| PxelinuxName::Uuid(SystemUuid(b))),
            any::<[u8; 6]>().prop_map(|b| PxelinuxName::Hw(PxeHwAddr::Ethernet(Mac(b)))),
            any::<[u8; 6]>()
                .prop_map(|b| PxelinuxName::Hw(PxeHwAddr::Infiniband(IbHwAddr::Mac(Mac(b))))),
            (any::<u32>(), 0..8usize).prop_map(|(ip, i)| {
                PxelinuxName::HexIp(HexIpPrefix::from_ip(Ipv4Addr::from(ip))[i])
            }),
            Just(PxelinuxName::Default),
        ]
    }

    proptest! {
        #[test]
        fn mac_round_trips((bytes, text) in arb_bytes(6)) {
            let m = Mac::parse(&text);
            prop_assert_eq!(m.map(|m| m.0.to_vec()), Ok(bytes));
        }

        #[test]
        fn guid_round_trips((bytes, text) in arb_bytes(8)) {
            let g = Guid::parse(&text);
            prop_assert_eq!(g.map(|g| g.0.to_vec()), Ok(bytes));
        }

        #[test]
        fn ipoib_round_trips((bytes, text) in arb_bytes(20)) {
            let a = IpoibAddr::parse(&text);
            prop_assert_eq!(a.map(|a| a.0.to_vec()), Ok(bytes));
        }

        #[test]
        fn client_id_round_trips((bytes, text) in arb_bytes(20)) {
            let c = ClientId::parse(&text);
            prop_assert_eq!(c.map(|c| c.0.to_vec()), Ok(bytes));
        }

        #[test]
        fn canonical_forms_round_trip(m in any::<[u8; 6]>(), g in any::<[u8; 8]>()) {
            let (m, g) = (Mac(m), Guid(g));
            for text in [m.to_string(), m.hyphen(), m.raw(), m.dotted()] {
                prop_assert_eq!(Mac::parse(&text), Ok(m));
            }
            for text in [g.to_string(), g.hyphen(), g.raw(), g.dotted()] {
                prop_assert_eq!(Guid::parse(&text), Ok(g));
            }
        }

        #[test]
        fn uuid_round_trips(
            bytes in any::<[u8; 16]>(),
            style in 0..3usize,
            mask in prop::collection::vec(any::<bool>(), 1..16),
        ) {
            let u = SystemUuid(bytes);
            let dashed = u.to_string();
            let text = match style {
                0 => dashed,
                1 => dashed.replace('-', ""),
                _ => format!("{{{dashed}}}"),
            };
            prop_assert_eq!(SystemUuid::parse(&format!(" {} ", recase(&text, &mask))), Ok(u));
            prop_assert_eq!(u.swapped().swapped(), u);
        }

        #[test]
        fn pxelinux_names_round_trip(n in arb_name(), pad in "[ \t]{0,2}") {
            prop_assert_eq!(PxelinuxName::parse(&format!("{pad}{n}{pad}")), Ok(n));
        }

        #[test]
        fn infiniband_names_normalise_to_the_guid(
            (bytes, text) in prop_oneof![arb_bytes(8), arb_bytes(20)],
        ) {
            let g = Guid(std::array::from_fn(|i| bytes[bytes.len() - 8 + i]));
            let n = PxelinuxName::parse(&format!("20-{text}"));
            let want = PxelinuxName::Hw(PxeHwAddr::Infiniband(IbHwAddr::Guid(g)));
            prop_assert_eq!(n, Ok(want));
            prop_assert_eq!(want.to_string(), format!("20-{}", g.ib_mac().hyphen()));
        }

        #[test]
        fn hex_ip_prefixes_round_trip(ip in any::<u32>(), i in 0..8usize) {
            let ip = Ipv4Addr::from(ip);
            let p = HexIpPrefix::from_ip(ip)[i];
            prop_assert_eq!(HexIpPrefix::parse(&p.to_string()), Ok(p));
            prop_assert_eq!(usize::from(p.digits()), 8 - i);
            prop_assert_eq!(p.to_string().len(), 8 - i);
            prop_assert!(p.covers(ip));
            prop_assert_eq!(p.ip(), (i == 0).then_some(ip));
        }

        #[test]
        fn parsers_never_panic(s in prop_oneof![any::<String>(), "[0-9a-fA-FxyZ:.{}\\- ]{0,70}"]) {
            let _ = Mac::parse(&s);
            let _ = Guid::parse(&s);
            let _ = IpoibAddr::parse(&s);
            let _ = ClientId::parse(&s);
            let _ = SystemUuid::parse(&s);
            let _ = HexIpPrefix::parse(&s);
            let _ = IbHwAddr::parse(&s);
            let _ = PxeHwAddr::parse(&s);
            if let Ok(any) = AnyAddr::parse(&s) {
                prop_assert!(!any.readings().is_empty());
            }
            if let Ok(n) = PxelinuxName::parse(&s) {
                prop_assert!(PxelinuxName::parse(&n.to_string()).is_ok());
            }
        }
    }
}
