//! Which image references ironpxe may read or fetch.
//!
//! Node state is written by whoever may update a node in Ironic; that must not make them root
//! on the boot server. Without this policy a `driver_info.deploy_kernel` of `/etc/shadow` or
//! `file:///…/admin-token` was served to anonymous TFTP and HTTP clients, and a URL naming an
//! internal-only service (169.254.169.254) was fetched and re-served.
//!
//! **Files** follow Ironic 39's `[conductor] file_url_allowed_paths` (same name, same
//! semantics): a path is served only from inside an allowed directory, `/boot`, `/dev`, `/etc`,
//! `/proc`, `/run` and `/sys` are refused whatever is allowed, an empty list disables file
//! images, and each configured value must be absolute and normalised (no `.`, `..` or empty
//! components). One deliberate difference: Ironic only normalises the requested path
//! (`os.path.abspath`), so a symlink inside an allowed directory reaches any file; ironpxe
//! resolves the path with symlinks followed and checks it against the resolved allowed
//! directories.
//!
//! **URLs** are fetched only from origins `[images] allowed_urls` lists, and never from a
//! loopback, link-local or unspecified address or the admin listen address unless an IP or
//! CIDR entry names that address. The address check applies to the addresses a name
//! resolves to — the ones actually connected to (see [`super::fetch`]) — and to every
//! redirect target.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

/// Directories no file image is ever read from, whatever `file_url_allowed_paths` says
/// (Ironic's `BLOCKED_FILE_URL_PATHS`).
pub const BLOCKED_DIRS: [&str; 6] = ["/boot", "/dev", "/etc", "/proc", "/run", "/sys"];

/// Ironic's default for `file_url_allowed_paths`; ironpxe adds its own roots and cache.
pub const IRONIC_IMAGE_DIR: &str = "/var/lib/ironic";

/// A value the `[images]` section cannot take; the message names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    #[error("[images] file_url_allowed_paths: {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error(
        "[images] file_url_allowed_paths: {0:?} contains `.`, `..` or an empty component; \
         write the directory itself"
    )]
    NotNormalised(String),
    #[error("[images] allowed_urls: {entry:?}: {why}")]
    BadUrlEntry { entry: String, why: &'static str },
}

/// One `[images] file_url_allowed_paths` entry: an absolute, normalised directory (Ironic's
/// `ExplicitAbsolutePath`: a trailing `/` is dropped, anything else abspath would change
/// is an error).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AllowedPath(PathBuf);

impl AllowedPath {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<String> for AllowedPath {
    type Error = PolicyConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let trimmed = if s.len() > 1 {
            s.trim_end_matches('/')
        } else {
            &s
        };
        if !trimmed.starts_with('/') {
            return Err(PolicyConfigError::NotAbsolute(s));
        }
        let normal = trimmed == "/"
            || trimmed[1..]
                .split('/')
                .all(|c| !matches!(c, "" | "." | ".."));
        if !normal {
            return Err(PolicyConfigError::NotNormalised(s));
        }
        Ok(AllowedPath(PathBuf::from(trimmed)))
    }
}

/// An IP network: an address and a prefix length, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a single host).
    pub fn parse(s: &str) -> Option<Result<IpNet, &'static str>> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let a = a
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(a);
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len.map(str::parse::<u8>) {
            None => max,
            Some(Ok(l)) if l <= max => l,
            Some(_) => {
                return Some(Err(
                    "the prefix length is not a number within the address size",
                ))
            }
        };
        let net = IpNet { addr, len };
        if net.network() != addr {
            return Some(Err(
                "host bits are set after the prefix (write the network address)",
            ));
        }
        Some(Ok(net))
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn network(&self) -> IpAddr {
        let (bits, size) = Self::bits(self.addr);
        let keep = if self.len == 0 {
            0
        } else {
            (u128::MAX >> (128 - u32::from(size))) & !((1u128 << (size - self.len)) - 1)
        };
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((bits & keep) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits & keep)),
        }
    }

    /// True when `ip` (IPv4-mapped IPv6 counts as IPv4) is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        IpNet {
            addr: ip,
            len: self.len,
        }
        .network()
            == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One `[images] allowed_urls` entry.
///
/// - `*`: any origin (still never a refused address unless an IP entry names it);
/// - `http(s)://host[:port]/path`: URLs under that prefix (same scheme, host and port; the
///   path matched at a `/` boundary);
/// - `images.example.net`: any http(s) URL on that host name;
/// - `192.0.2.0/24`, `2001:db8::/32`, `192.0.2.7`: URLs on a literal address in the network,
///   and names resolving only into listed networks. An IP entry (or a URL prefix on a
///   literal address) is also what allows a loopback, link-local or admin address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum UrlRule {
    Any,
    Prefix(Url),
    Host(String),
    Net(IpNet),
}

impl TryFrom<String> for UrlRule {
    type Error = PolicyConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = |why| PolicyConfigError::BadUrlEntry {
            entry: s.clone(),
            why,
        };
        let t = s.trim();
        if t == "*" {
            return Ok(UrlRule::Any);
        }
        if t.contains("://") {
            let u = Url::parse(t).map_err(|_| bad("not a valid URL"))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(bad("only http and https URLs are fetched"));
            }
            if u.host().is_none() || !u.username().is_empty() || u.password().is_some() {
                return Err(bad(
                    "a URL prefix needs a host and no user name or password",
                ));
            }
            if u.query().is_some() || u.fragment().is_some() {
                return Err(bad("a URL prefix cannot have a query or fragment"));
            }
            return Ok(UrlRule::Prefix(u));
        }
        if let Some(net) = IpNet::parse(t) {
            return net.map(UrlRule::Net).map_err(bad);
        }
        let host_ok = !t.is_empty()
            && t.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if host_ok {
            Ok(UrlRule::Host(t.to_ascii_lowercase()))
        } else {
            Err(bad(
                "expected `*`, an http(s) URL prefix, a host name, or an IP address or CIDR",
            ))
        }
    }
}

impl fmt::Display for UrlRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlRule::Any => f.write_str("*"),
            UrlRule::Prefix(u) => f.write_str(u.as_str()),
            UrlRule::Host(h) => f.write_str(h),
            UrlRule::Net(n) => n.fmt(f),
        }
    }
}

/// Why an image reference is not read or fetched. Each message names the reference and the
/// `[images]` key that would allow it (when one may).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{path}: file images are disabled ([images] file_url_allowed_paths is empty)")]
    FileImagesDisabled { path: String },
    #[error(
        "{path}: under {dir}, which is never served (/boot, /dev, /etc, /proc, /run and /sys \
         are refused whatever [images] file_url_allowed_paths says)"
    )]
    BlockedDir { path: String, dir: &'static str },
    #[error("{path}: resolves to {resolved}, outside [images] file_url_allowed_paths ({allowed})")]
    OutsideAllowedPaths {
        path: String,
        resolved: String,
        allowed: String,
    },
    #[error(
        "{path}: a secret ironpxe reads (its configuration, the admin token, Ironic \
         credentials) is never served"
    )]
    SecretFile { path: String },
    #[error("{url}: not a URL ironpxe can fetch ({why})")]
    BadUrl { url: String, why: String },
    #[error("{url}: not in [images] allowed_urls ({allowed})")]
    UrlNotAllowed { url: String, allowed: String },
    #[error(
        "{url}: {host} is {addr}, {what}, refused unless [images] allowed_urls names it with \
         an IP or CIDR entry"
    )]
    AddressRefused {
        url: String,
        host: String,
        addr: SocketAddr,
        what: &'static str,
    },
    #[error("{url}: {host} resolves to {addr}, outside every network in [images] allowed_urls")]
    AddressNotListed {
        url: String,
        host: String,
        addr: IpAddr,
    },
    #[error("redirect from {from} refused: {to}")]
    Redirect { from: String, to: Box<Refusal> },
}

/// The file side of the policy: resolved allowed directories.
#[derive(Clone, Debug)]
pub struct FilePolicy {
    /// Canonical (symlink-free) allowed directories.
    allowed: Vec<PathBuf>,
    /// Canonical paths of the secrets ironpxe itself reads: refused even inside `allowed`.
    secrets: Vec<PathBuf>,
}

impl FilePolicy {
    /// Resolves the allowed directories once (at start: `[images]` needs a restart). A
    /// directory that does not exist yet is kept as its resolved existing ancestor plus the
    /// rest, so it works once created.
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> FilePolicy {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut allowed: Vec<PathBuf> = Vec::new();
        for d in dirs {
            let abs = normalise(&cwd.join(d));
            let resolved = resolve(&abs);
            if let Some(b) = blocked_dir(&resolved) {
                tracing::warn!(
                    dir = %abs.display(),
                    blocked = b,
                    "[images] file_url_allowed_paths entry is inside a directory that is never served"
                );
            }
            if !allowed.contains(&resolved) {
                allowed.push(resolved);
            }
        }
        FilePolicy {
            allowed,
            secrets: Vec::new(),
        }
    }

    /// Refuses this file whatever directory it is in (a secret ironpxe reads: an image
    /// directory is no place for it, but a mistake there must not publish it).
    pub fn refuse_file(&mut self, path: &Path) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.secrets.push(resolve(&normalise(&cwd.join(path))));
    }

    /// Checks a file image; `Ok` is the resolved path to serve (symlinks followed). A missing
    /// file is checked as far as it exists and then fails when opened.
    pub fn check(&self, path: &str) -> Result<PathBuf, Refusal> {
        let lexical = normalise(Path::new(path));
        if let Some(dir) = blocked_dir(&lexical) {
            return Err(Refusal::BlockedDir {
                path: path.to_owned(),
                dir,
            });
        }
        if self.allowed.is_empty() {
            return Err(Refusal::FileImagesDisabled {
                path: path.to_owned(),
            });
        }
        let resolved = resolve(&lexical);
        if let Some(dir) = blocked_dir(&resolved) {
            return Err(Refusal::BlockedDir {
                path: path.to_owned(),
                dir,
            });
        }
        if self.secrets.contains(&resolved) {
            return Err(Refusal::SecretFile {
                path: path.to_owned(),
            });
        }
        if self.allowed.iter().any(|a| resolved.starts_with(a)) {
            Ok(resolved)
        } else {
            Err(Refusal::OutsideAllowedPaths {
                path: path.to_owned(),
                resolved: resolved.display().to_string(),
                allowed: self.shown(),
            })
        }
    }

    fn shown(&self) -> String {
        if self.allowed.is_empty() {
            return "none".into();
        }
        let v: Vec<String> = self
            .allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        v.join(", ")
    }
}

/// `os.path.abspath` for an absolute path: `.` and empty components dropped, `..` pops.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The path with every symlink of its existing part followed; the missing rest is appended
/// as written (it contains no symlink: it does not exist).
fn resolve(abs: &Path) -> PathBuf {
    let mut existing = abs.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return abs.to_path_buf(),
        }
    }
}

fn blocked_dir(p: &Path) -> Option<&'static str> {
    BLOCKED_DIRS.into_iter().find(|b| p.starts_with(b))
}

/// The URL side of the policy.
#[derive(Clone, Debug)]
pub struct UrlPolicy {
    rules: Vec<UrlRule>,
    /// The admin API's listen address: refused unless an IP entry names it.
    admin: Option<SocketAddr>,
}

impl UrlPolicy {
    pub fn new(rules: Vec<UrlRule>, admin: Option<SocketAddr>) -> UrlPolicy {
        UrlPolicy { rules, admin }
    }

    /// The default `allowed_urls`: any origin, plus ironpxe's own HTTP server (which serves
    /// only what any anonymous client gets; the shipped example takes its images from it).
    pub fn default_rules(http_listen: SocketAddr) -> Vec<UrlRule> {
        let ip = match http_listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let own = Url::parse(&format!(
            "http://{}/",
            SocketAddr::new(ip, http_listen.port())
        ));
        std::iter::once(UrlRule::Any)
            .chain(own.ok().map(UrlRule::Prefix))
            .collect()
    }

    /// The check before any connection: the URL's origin must be listed, and a literal
    /// address must not be a refused one.
    pub fn check_url(&self, raw: &str) -> Result<Url, Refusal> {
        let url = Url::parse(raw).map_err(|e| Refusal::BadUrl {
            url: raw.to_owned(),
            why: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::BadUrl {
                url: raw.to_owned(),
                why: "only http and https are fetched".into(),
            });
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let by_name = self.rules.iter().any(|r| matches_by_name(r, &url));
        match literal_ip(&url) {
            Some(ip) => {
                if !by_name && !self.in_listed_net(ip) {
                    return Err(self.not_allowed(&url));
                }
                self.check_addr(&url, SocketAddr::new(ip, port))?;
            }
            None => {
                let nets = self.rules.iter().any(|r| matches!(r, UrlRule::Net(_)));
                if !by_name && !nets {
                    return Err(self.not_allowed(&url));
                }
            }
        }
        Ok(url)
    }

    /// The check for one address a host name resolved to (after [`Self::check_url`]).
    pub fn check_resolved(&self, url: &Url, addr: SocketAddr) -> Result<(), Refusal> {
        let by_name = self.rules.iter().any(|r| matches_by_name(r, url));
        if !by_name && !self.in_listed_net(addr.ip()) {
            return Err(Refusal::AddressNotListed {
                url: url.to_string(),
                host: url.host_str().unwrap_or_default().to_owned(),
                addr: addr.ip(),
            });
        }
        self.check_addr(url, addr)
    }

    fn check_addr(&self, url: &Url, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = canonical_ip(addr.ip());
        if self.explicitly_listed(ip, addr.port()) {
            return Ok(());
        }
        let admin = self
            .admin
            .filter(|a| a.port() == addr.port())
            .filter(|a| a.ip().is_unspecified() || canonical_ip(a.ip()) == ip);
        let what = special_address(ip).or(admin.map(|_| "the admin listen address"));
        match what {
            Some(what) => Err(Refusal::AddressRefused {
                url: url.to_string(),
                host: url.host_str().unwrap_or_default().to_owned(),
                addr: SocketAddr::new(ip, addr.port()),
                what,
            }),
            None => Ok(()),
        }
    }

    fn in_listed_net(&self, ip: IpAddr) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r, UrlRule::Net(n) if n.contains(ip)))
    }

    /// An IP entry containing the address, or a URL prefix on that literal address and port.
    fn explicitly_listed(&self, ip: IpAddr, port: u16) -> bool {
        self.rules.iter().any(|r| match r {
            UrlRule::Net(n) => n.contains(ip),
            UrlRule::Prefix(p) => {
                literal_ip(p).map(canonical_ip) == Some(ip)
                    && p.port_or_known_default() == Some(port)
            }
            _ => false,
        })
    }

    fn not_allowed(&self, url: &Url) -> Refusal {
        let v: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
        Refusal::UrlNotAllowed {
            url: url.to_string(),
            allowed: if v.is_empty() {
                "empty".into()
            } else {
                v.join(", ")
            },
        }
    }
}

fn matches_by_name(rule: &UrlRule, url: &Url) -> bool {
    match rule {
        UrlRule::Any => true,
        UrlRule::Host(h) => url.host_str().is_some_and(|u| u.eq_ignore_ascii_case(h)),
        UrlRule::Prefix(p) => {
            let path_ok = {
                let (pp, up) = (p.path(), url.path());
                pp.ends_with('/') && up.starts_with(pp)
                    || up == pp
                    || up.starts_with(pp) && up.as_bytes().get(pp.len()) == Some(&b'/')
            };
            p.scheme() == url.scheme()
                && p.host() == url.host()
                && p.port_or_known_default() == url.port_or_known_default()
                && path_ok
        }
        UrlRule::Net(_) => false,
    }
}

/// The URL's host when it is an address (the URL parser has already normalised spellings
/// such as `127.1` or `0x7f.0.0.1` to dotted decimal).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let h = url.host_str()?;
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.parse().ok().map(canonical_ip)
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Addresses that reach this host or its link rather than an image server.
fn special_address(ip: IpAddr) -> Option<&'static str> {
    match canonical_ip(ip) {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("an unspecified address (this host)"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified address (this host)"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        _ => None,
    }
}

/// Both sides, as `serve` and `check` use them.
#[derive(Clone, Debug)]
pub struct ImagePolicy {
    pub files: FilePolicy,
    pub urls: UrlPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> UrlRule {
        UrlRule::try_from(s.to_owned()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn policy(rules: &[&str], admin: Option<&str>) -> UrlPolicy {
        UrlPolicy::new(
            rules.iter().map(|r| rule(r)).collect(),
            admin.map(|a| a.parse().expect("admin addr")),
        )
    }

    #[test]
    fn allowed_paths_follow_ironics_explicit_absolute_path() {
        for good in [
            "/var/lib/ironic",
            "/var/lib/ironic/",
            "/",
            "/srv/.hidden",
            "/a/b.c",
        ] {
            assert!(AllowedPath::try_from(good.to_owned()).is_ok(), "{good}");
        }
        assert_eq!(
            AllowedPath::try_from("/srv/tftp/".to_owned()).map(|p| p.0),
            Ok(PathBuf::from("/srv/tftp"))
        );
        for bad in ["relative/path", "./x", "../x", "x", ""] {
            assert!(
                matches!(
                    AllowedPath::try_from(bad.to_owned()),
                    Err(PolicyConfigError::NotAbsolute(_))
                ),
                "{bad}"
            );
        }
        for bad in [
            "/var/lib/ironic/../../etc",
            "/etc/./x",
            "/a//b",
            "/..",
            "/.",
        ] {
            assert!(
                matches!(
                    AllowedPath::try_from(bad.to_owned()),
                    Err(PolicyConfigError::NotNormalised(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_entries_parse_into_one_of_four_kinds_or_say_why_not() {
        assert_eq!(rule("*"), UrlRule::Any);
        assert!(matches!(
            rule("https://img.example.net/ipa/"),
            UrlRule::Prefix(_)
        ));
        assert_eq!(
            rule("Img.Example.NET"),
            UrlRule::Host("img.example.net".into())
        );
        assert_eq!(rule("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(rule("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(rule("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(rule("[::1]").to_string(), "::1/128");
        for (bad, why) in [
            ("ftp://x/", "only http"),
            ("http://u:p@x/", "user name"),
            ("http://x/?a=1", "query"),
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0/33", "prefix length"),
            ("a b", "expected"),
            ("", "expected"),
        ] {
            let e = UrlRule::try_from(bad.to_owned())
                .expect_err(bad)
                .to_string();
            assert!(
                e.contains("[images] allowed_urls") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n = |s: &str| IpNet::parse(s).expect("ip").expect("net");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(n("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!n("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(n("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")), "v4-mapped");
        assert!(n("0.0.0.0/0").contains(ip("127.0.0.1")));
        assert!(!n("0.0.0.0/0").contains(ip("::1")));
        assert!(n("fe80::/10").contains(ip("febf::1")));
        assert!(!n("fe80::/10").contains(ip("fec0::1")));
        assert!(n("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!n("192.0.2.7").contains(ip("192.0.2.8")));
    }

    #[test]
    fn special_addresses_are_refused_unless_an_ip_entry_names_them() {
        let any = policy(&["*"], Some("192.0.2.10:8081"));
        for url in [
            "http://127.0.0.1/k",
            "http://127.8.9.1:8080/k",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/k",
            "http://[fe80::1]/k",
            "http://[::ffff:169.254.169.254]/k",
            "http://0.0.0.0/k",
            "http://127.1/k",
            "http://0x7f000001/k",
            "http://192.0.2.10:8081/api/v1/nodes",
        ] {
            let e = any.check_url(url).expect_err(url);
            assert!(matches!(e, Refusal::AddressRefused { .. }), "{url}: {e}");
        }
        any.check_url("http://192.0.2.10:8080/k")
            .expect("another port of the admin host");
        any.check_url("http://10.1.2.3/k")
            .expect("private addresses are not special");
        any.check_url("https://images.example.net/k")
            .expect("names pass until resolved");

        let listed = policy(
            &["*", "127.0.0.1", "http://[::1]:8080/", "169.254.0.0/16"],
            None,
        );
        listed.check_url("http://127.0.0.1:9/k").expect("IP entry");
        listed
            .check_url("http://169.254.169.254/k")
            .expect("CIDR entry");
        listed
            .check_url("http://[::1]:8080/k")
            .expect("prefix on the literal address");
        assert!(
            listed.check_url("http://[::1]:8081/k").is_err(),
            "other port"
        );

        let wildcard_admin = policy(&["*"], Some("0.0.0.0:8081"));
        assert!(wildcard_admin.check_url("http://10.0.0.5:8081/").is_err());
        wildcard_admin
            .check_url("http://10.0.0.5:8080/")
            .expect("other port");
    }

    #[test]
    fn origins_must_be_listed_by_prefix_host_or_network() {
        let p = policy(
            &[
                "https://img.example.net/ipa/",
                "mirror.example.org",
                "10.0.0.0/8",
            ],
            None,
        );
        p.check_url("https://img.example.net/ipa/k")
            .expect("prefix");
        p.check_url("https://img.example.net:443/ipa/k?sig=1")
            .expect("default port");
        p.check_url("http://mirror.example.org:8080/x")
            .expect("host, any port");
        p.check_url("http://10.2.3.4/x")
            .expect("literal address in a network");
        p.check_url("http://unlisted.example.com/x")
            .expect("a name may resolve into 10/8");
        assert!(
            p.check_url("http://192.0.2.1/x").is_err(),
            "literal outside 10/8"
        );
        assert!(p.check_url("file:///etc/passwd").is_err());
        let names = policy(
            &["https://img.example.net/ipa/", "mirror.example.org"],
            None,
        );
        for url in [
            "http://img.example.net/ipa/k",
            "https://img.example.net/ipa2/k",
            "https://img.example.net.evil.com/ipa/k",
            "https://img.example.net:8443/ipa/k",
            "https://mirror.example.org.evil.com/x",
        ] {
            let e = names.check_url(url).expect_err(url);
            assert!(matches!(e, Refusal::UrlNotAllowed { .. }), "{url}: {e}");
        }
        let url = Url::parse("http://unlisted.example.com/x").expect("url");
        p.check_resolved(&url, "10.9.9.9:80".parse().expect("addr"))
            .expect("resolves into a listed network");
        let e = p
            .check_resolved(&url, "192.0.2.1:80".parse().expect("addr"))
            .expect_err("outside");
        assert!(matches!(e, Refusal::AddressNotListed { .. }), "{e}");

        let exact = policy(&["https://img.example.net/ipa"], None);
        exact
            .check_url("https://img.example.net/ipa")
            .expect("exact");
        exact
            .check_url("https://img.example.net/ipa/k")
            .expect("below");
        assert!(exact.check_url("https://img.example.net/ipa2").is_err());

        let none = policy(&[], None);
        assert!(matches!(
            none.check_url("https://img.example.net/k"),
            Err(Refusal::UrlNotAllowed { .. })
        ));
    }

    #[test]
    fn a_name_resolving_to_a_refused_address_is_refused() {
        let p = policy(&["*"], None);
        let url = p
            .check_url("http://metadata.internal/latest")
            .expect("name");
        let e = p
            .check_resolved(&url, "169.254.169.254:80".parse().expect("addr"))
            .expect_err("link-local");
        assert!(e.to_string().contains("link-local"), "{e}");
        p.check_resolved(&url, "198.51.100.7:80".parse().expect("addr"))
            .expect("ordinary address");
    }

    #[test]
    fn files_are_served_only_from_inside_the_resolved_allowed_dirs() {
        let t = tempfile::tempdir().expect("tempdir");
        let allowed = t.path().join("allowed");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&allowed).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(allowed.join("k"), "kernel").expect("write");
        std::fs::write(outside.join("secret"), "token").expect("write");
        std::os::unix::fs::symlink(outside.join("secret"), allowed.join("link")).expect("link");
        std::os::unix::fs::symlink(&outside, allowed.join("dirlink")).expect("link");
        let p = FilePolicy::new([allowed.clone()]);
        let s = |p: &Path| p.display().to_string();

        let ok = p.check(&s(&allowed.join("k"))).expect("inside");
        assert_eq!(
            ok,
            std::fs::canonicalize(allowed.join("k")).expect("canonical")
        );
        p.check(&s(&allowed.join("not-yet")))
            .expect("missing inside: fails when opened");
        for refused in [
            outside.join("secret"),
            allowed.join("link"),
            allowed.join("dirlink/secret"),
            allowed.join("../outside/secret"),
        ] {
            let e = p.check(&s(&refused)).expect_err("outside");
            assert!(matches!(e, Refusal::OutsideAllowedPaths { .. }), "{e}");
        }
        for blocked in [
            "/etc/shadow",
            "/proc/self/environ",
            "/var/../etc/passwd",
            "/run/x",
        ] {
            let e = p.check(blocked).expect_err(blocked);
            assert!(matches!(e, Refusal::BlockedDir { .. }), "{blocked}: {e}");
        }
        let mut with_secret = FilePolicy::new([allowed.clone()]);
        with_secret.refuse_file(&allowed.join("dirlink/../k"));
        let e = with_secret
            .check(&s(&allowed.join("k")))
            .expect_err("secret");
        assert!(matches!(e, Refusal::SecretFile { .. }), "{e}");
        let everything = FilePolicy::new([PathBuf::from("/")]);
        assert!(
            everything.check("/etc/hostname").is_err(),
            "blocked even when / is allowed"
        );
        let disabled = FilePolicy::new([]);
        assert!(matches!(
            disabled.check(&s(&allowed.join("k"))),
            Err(Refusal::FileImagesDisabled { .. })
        ));
    }
}
