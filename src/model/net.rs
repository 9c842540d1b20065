//! Server addresses: listen addresses as operators write them (IPv6 zones included) and the
//! base URLs clients are sent to.
//!
//! An IPv6 link-local address (`fe80::/10`) means something only on one link, so binding it
//! needs the link: a zone, `%2` (the scope id) or `%eth1` (the interface name, turned into
//! its scope id at start by the caller — that takes a system call, so not here).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

/// A listen address as written: `192.0.2.1:69`, `[2001:db8::1]:69`, `[fe80::1%2]:69` or
/// `[fe80::1%eth1]:69`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address; for a numeric zone its scope id is already set.
    pub addr: SocketAddr,
    /// The zone's interface name, still to be turned into the scope id.
    pub interface: Option<InterfaceName>,
}

/// A network interface name as Linux accepts one (`dev_valid_name`): 1 to 15 bytes, not `.`
/// or `..`, no `/`, `:` or white space; here also printable ASCII only, and no `%`, `[` or
/// `]` (it sits inside a bracketed address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceName(String);

/// The longest interface name Linux takes (`IFNAMSIZ` - 1).
pub const INTERFACE_NAME_MAX: usize = 15;

impl InterfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InterfaceName {
    type Err = ListenError;
    fn from_str(name: &str) -> Result<Self, ListenError> {
        let ok = !name.is_empty()
            && name.len() <= INTERFACE_NAME_MAX
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/:%[]".contains(&b));
        if ok {
            Ok(InterfaceName(name.to_owned()))
        } else {
            Err(ListenError::BadInterface(name.escape_debug().to_string()))
        }
    }
}

/// Why a listen address was refused; the text tells the operator what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    #[error("not an address and port (write 192.0.2.1:69, [2001:db8::1]:69 or [fe80::1%eth1]:69)")]
    Syntax,
    #[error("a link-local address needs the interface it is on: write [{0}%<interface>]:<port>, e.g. [{0}%eth1]:69")]
    NeedsZone(Ipv6Addr),
    #[error("a zone (%…) belongs only to a link-local address (fe80::/10); {0} is not one")]
    ZoneNotLinkLocal(Ipv6Addr),
    #[error("{0:?} is not an interface name (1 to 15 printable characters, no / : % [ ])")]
    BadInterface(String),
}

/// Whether an IPv6 address is link-local unicast (`fe80::/10`): it needs a zone.
pub fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

impl FromStr for ListenSpec {
    type Err = ListenError;
    fn from_str(text: &str) -> Result<Self, ListenError> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix('[') else {
            // IPv4 (an unbracketed IPv6 address has no unambiguous port).
            let v4: std::net::SocketAddrV4 = text.parse().map_err(|_| ListenError::Syntax)?;
            return Ok(ListenSpec {
                addr: v4.into(),
                interface: None,
            });
        };
        let (inside, port) = rest.split_once("]:").ok_or(ListenError::Syntax)?;
        let port = parse_port(port).ok_or(ListenError::Syntax)?;
        let (ip, zone) = match inside.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (inside, None),
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| ListenError::Syntax)?;
        let (scope_id, interface) = match zone {
            None if is_link_local(&ip) => return Err(ListenError::NeedsZone(ip)),
            None => (0, None),
            Some(_) if !is_link_local(&ip) => return Err(ListenError::ZoneNotLinkLocal(ip)),
            Some(z) if !z.is_empty() && z.bytes().all(|b| b.is_ascii_digit()) => {
                match z.parse::<u32>() {
                    Ok(0) => return Err(ListenError::NeedsZone(ip)),
                    Ok(id) => (id, None),
                    Err(_) => return Err(ListenError::BadInterface(z.to_owned())),
                }
            }
            Some(z) => (0, Some(z.parse()?)),
        };
        Ok(ListenSpec {
            addr: SocketAddrV6::new(ip, port, 0, scope_id).into(),
            interface,
        })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.addr, &self.interface) {
            (SocketAddr::V6(a), Some(name)) => write!(f, "[{}%{name}]:{}", a.ip(), a.port()),
            (a, _) => write!(f, "{a}"),
        }
    }
}

/// A port: one to five ASCII digits (`u16::from_str` would also take a sign).
fn parse_port(p: &str) -> Option<u16> {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| p.parse().ok()).flatten()
}

/// The host part of a URL for `ip`: IPv6 in brackets, never a zone. A zone is local to the
/// machine using the URL (RFC 6874): the server's `%eth1` or `%2` names nothing on the
/// client, and iPXE would read it as one of its own devices (`net0`). A client reaches a
/// link-local address without one over the link it booted from. `None` for an unspecified
/// address (`0.0.0.0`, `::`), which no client can reach.
pub fn url_host(ip: IpAddr) -> Option<String> {
    match ip {
        ip if ip.is_unspecified() => None,
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // A v4 client on a dual-stack socket: it knows the IPv4 address.
            Some(v4) => Some(v4.to_string()),
            None => Some(format!("[{v6}]")),
        },
    }
}

/// `http://<host>:<port>` for a server address a client reached (see [`url_host`]).
pub fn http_base_url(addr: SocketAddr) -> Option<String> {
    Some(format!("http://{}:{}", url_host(addr.ip())?, addr.port()))
}

/// The HTTP address to show in previews (`ironpxe render`, the status page), where no
/// client connection says which address was reached: the HTTP listen address; on a
/// wildcard one the first specific TFTP listen address (same family first), with the HTTP
/// port; else loopback — an address of this machine, never `0.0.0.0` or `::`.
pub fn preview_address(http_listen: SocketAddr, tftp_listen: &[SocketAddr]) -> SocketAddr {
    if !http_listen.ip().is_unspecified() {
        return http_listen;
    }
    let specific = |same: bool| {
        tftp_listen
            .iter()
            .map(SocketAddr::ip)
            .find(|ip| !ip.is_unspecified() && (ip.is_ipv4() == http_listen.is_ipv4()) == same)
    };
    let ip = specific(true)
        .or_else(|| specific(false))
        .unwrap_or(match http_listen {
            SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            SocketAddr::V6(_) => IpAddr::from(Ipv6Addr::LOCALHOST),
        });
    SocketAddr::new(ip, http_listen.port())
}

/// The address as a TFTP server name in a boot config (GRUB's `(tftp,<server>)`, PXELINUX):
/// no brackets, no zone, the IPv4 form of a v4-mapped address; `None` when unspecified.
pub fn server_name(ip: IpAddr) -> Option<String> {
    match ip {
        ip if ip.is_unspecified() => None,
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        }),
        v4 => Some(v4.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<ListenSpec, ListenError> {
        s.parse()
    }

    #[test]
    fn listen_addresses_of_every_kind_parse() {
        let cases = [
            ("192.0.2.1:69", "192.0.2.1:69", None),
            (" 0.0.0.0:6969 ", "0.0.0.0:6969", None),
            ("[2001:db8::1]:69", "[2001:db8::1]:69", None),
            ("[fd00:1::5]:8080", "[fd00:1::5]:8080", None),
            ("[::]:69", "[::]:69", None),
            ("[::1]:0", "[::1]:0", None),
            ("[fe80::1%2]:69", "[fe80::1%2]:69", None),
            ("[FE80::1%eth1]:69", "[fe80::1]:69", Some("eth1")),
            (
                "[febf::1%br-prov.100]:69",
                "[febf::1]:69",
                Some("br-prov.100"),
            ),
            (
                "[fe80::1%a23456789012345]:1",
                "[fe80::1]:1",
                Some("a23456789012345"),
            ),
        ];
        for (text, addr, iface) in cases {
            let s = spec(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.addr, addr.parse::<SocketAddr>().expect("addr"), "{text}");
            assert_eq!(s.interface.as_ref().map(|i| i.as_str()), iface, "{text}");
        }
        let s = spec("[fe80::1%eth1]:69").expect("zone");
        assert_eq!(
            s.to_string(),
            "[fe80::1%eth1]:69",
            "the name is kept for display"
        );
        assert_eq!(
            spec("[fe80::1%7]:69").expect("scope").to_string(),
            "[fe80::1%7]:69"
        );
        let SocketAddr::V6(v6) = spec("[fe80::1%7]:69").expect("scope").addr else {
            panic!("v6")
        };
        assert_eq!(v6.scope_id(), 7);
    }

    #[test]
    fn listen_addresses_are_refused_with_what_to_write() {
        let syntax = [
            "",
            "69",
            "fe80::1:69",
            "[fe80::1%eth1]",
            "[fe80::1%eth1]69",
            "[2001:db8::1]:+69",
            "[2001:db8::1]:65536",
            "[2001:db8::1]:069x",
            "192.0.2.1",
            "host.example:69",
            "[192.0.2.1]:69",
            "[fe80::1 %eth1]:69",
        ];
        for text in syntax {
            assert_eq!(spec(text), Err(ListenError::Syntax), "{text:?}");
        }
        let ll: Ipv6Addr = "fe80::1".parse().expect("ip");
        assert_eq!(spec("[fe80::1]:69"), Err(ListenError::NeedsZone(ll)));
        assert_eq!(spec("[fe80::1%0]:69"), Err(ListenError::NeedsZone(ll)));
        let global: Ipv6Addr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            spec("[2001:db8::1%eth1]:69"),
            Err(ListenError::ZoneNotLinkLocal(global))
        );
        assert_eq!(
            spec("[::%1]:69"),
            Err(ListenError::ZoneNotLinkLocal(Ipv6Addr::UNSPECIFIED))
        );
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "eth/1",
            "eth:1",
            "eth 1",
            "eth%1",
            "ethé",
            "eth\n1",
            "eth1\n",
            "99999999999",
        ] {
            let text = format!("[fe80::1%{bad}]:69");
            assert!(
                matches!(spec(&text), Err(ListenError::BadInterface(_))),
                "{text:?}: {:?}",
                spec(&text)
            );
        }
        let msg = ListenError::NeedsZone(ll).to_string();
        assert!(msg.contains("[fe80::1%eth1]:69"), "{msg}");
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        for (ip, ll) in [
            ("fe80::1", true),
            ("febf:ffff::1", true),
            ("fec0::1", false),
            ("fe7f::1", false),
            ("::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_link_local(&ip.parse().expect("ip")), ll, "{ip}");
        }
    }

    #[test]
    fn urls_bracket_ipv6_and_never_name_a_zone_or_an_unspecified_address() {
        let cases = [
            ("192.0.2.1:8080", Some("http://192.0.2.1:8080")),
            ("192.0.2.1:80", Some("http://192.0.2.1:80")),
            ("[2001:db8::1]:8080", Some("http://[2001:db8::1]:8080")),
            ("[fd00::1]:80", Some("http://[fd00::1]:80")),
            ("[fe80::1%2]:8080", Some("http://[fe80::1]:8080")),
            ("[::ffff:192.0.2.1]:8080", Some("http://192.0.2.1:8080")),
            ("0.0.0.0:8080", None),
            ("[::]:8080", None),
        ];
        for (addr, url) in cases {
            let a: SocketAddr = addr.parse().expect("addr");
            assert_eq!(http_base_url(a).as_deref(), url, "{addr}");
        }
        let name = |s: &str| server_name(s.parse().expect("ip"));
        assert_eq!(name("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(name("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(name("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(name("::"), None);
        assert_eq!(name("0.0.0.0"), None);
    }

    #[test]
    fn previews_use_a_specific_address_of_this_server() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let tftp = [sa("[::]:69"), sa("[fe80::1%2]:69"), sa("192.0.2.1:69")];
        let cases = [
            ("192.0.2.9:8080", &tftp[..], "192.0.2.9:8080"),
            ("[2001:db8::9]:80", &tftp[..], "[2001:db8::9]:80"),
            ("0.0.0.0:8080", &tftp[..], "192.0.2.1:8080"),
            ("[::]:8080", &tftp[..], "[fe80::1]:8080"),
            ("[::]:8080", &tftp[2..], "192.0.2.1:8080"),
            ("0.0.0.0:8080", &tftp[..2], "[fe80::1]:8080"),
            ("0.0.0.0:8080", &tftp[..1], "127.0.0.1:8080"),
            ("[::]:8080", &[][..], "[::1]:8080"),
        ];
        for (http, tftp, want) in cases {
            let got = preview_address(sa(http), tftp);
            assert_eq!(got.ip(), sa(want).ip(), "{http} {tftp:?}");
            assert_eq!(got.port(), sa(want).port());
            assert!(http_base_url(got).is_some());
        }
    }
}
