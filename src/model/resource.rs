//! What a requested name asks for, the same for TFTP and HTTP. Pure: no I/O.
//!
//! Names under `pxelinux.cfg/`, GRUB's names, `/ipxe/…`, `boot.ipxe` and `images/…` are
//! virtual; everything else is a static file under the served roots.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Serialize, Serializer};

use crate::model::addr::{AnyAddr, HexIpPrefix, HwType, IbHwAddr, Mac, PxeHwAddr, PxelinuxName};
use crate::model::node::NodeUuid;
use crate::model::paths::{normalize, PathError};

/// Who an `/ipxe/<…>` request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpxeTarget {
    /// Any hardware address spelling (MAC, IB MAC, GUID, IPoIB address, client-id).
    Addr(AnyAddr),
    Node(NodeUuid),
    /// The entry script's last resort: the unknown-machine config.
    Unknown,
}

/// A request, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `pxelinux.cfg/<uuid|01-…|20-…|hex-ip|default>`: a PXELINUX config.
    Pxelinux(PxelinuxName),
    /// `pxelinux.cfg/<mac-with-dashes>` (no type prefix): Ironic's iPXE layout, an iPXE script.
    IronicIpxe(Mac),
    /// `/ipxe/<target>`: the per-node iPXE script.
    Ipxe(IpxeTarget),
    /// `boot.ipxe`: the entry script.
    IpxeEntry,
    /// A name GRUB asks for by itself, under its prefix directory.
    Grub(GrubRequest),
    /// `<mac-with-colons>.conf` (at the root or under `grub/`): what Ironic's master
    /// `grub.cfg` sources; unknown MACs get the unknown-machine config.
    GrubConf(Mac),
    /// `<dotted-ipv4>.conf` at the root: what Ironic links for a UEFI node booted by PXE
    /// without iPXE, named by the IP its DHCP provider gave the port
    /// (`pxe_utils._link_ip_address_pxe_configs`); found like hex-IP names, by a port's fixed
    /// IP. Unknown addresses get the unknown-machine config, as `<mac>.conf` does.
    GrubIpConf(Ipv4Addr),
    /// `images/<key>/<name>`: an image from the image cache.
    Image { key: String, name: String },
    /// Anything else: a static file, as a normalised relative path.
    Static(String),
}

/// What a request asked for, as the request counters label it: a resource's kind, or a
/// request for none (a health check, a refused name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pxelinux = 0,
    Ipxe = 1,
    IpxeEntry = 2,
    Grub = 3,
    Image = 4,
    Static = 5,
    Health = 6,
    Other = 7,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Pxelinux(_) => Kind::Pxelinux,
            Resource::IronicIpxe(_) | Resource::Ipxe(_) => Kind::Ipxe,
            Resource::IpxeEntry => Kind::IpxeEntry,
            Resource::Grub(_) | Resource::GrubConf(_) | Resource::GrubIpConf(_) => Kind::Grub,
            Resource::Image { .. } => Kind::Image,
            Resource::Static(_) => Kind::Static,
        }
    }
}

/// How a request named a hardware address: under a PXELINUX or GRUB hardware type, or in an
/// `/ipxe/<address>` request, which implies none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AskedAs {
    Hw(HwType),
    Ipxe,
}

impl AskedAs {
    /// `01`, `20` or `ipxe`, as the operator view shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            AskedAs::Hw(hw) => hw.arp(),
            AskedAs::Ipxe => "ipxe",
        }
    }
}

impl Serialize for AskedAs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A hardware address a client asked under, with how it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AskedAddr {
    pub addr: AnyAddr,
    pub asked_as: AskedAs,
}

impl AskedAddr {
    /// The hardware address a request names, if it names one.
    pub fn of(res: &Resource) -> Option<AskedAddr> {
        let (addr, asked_as) = match res {
            Resource::Pxelinux(PxelinuxName::Hw(hw)) => {
                let addr = match hw {
                    PxeHwAddr::Ethernet(m) | PxeHwAddr::Infiniband(IbHwAddr::Mac(m)) => {
                        AnyAddr::Six(*m)
                    }
                    PxeHwAddr::Infiniband(IbHwAddr::Guid(g)) => AnyAddr::Eight(*g),
                };
                (addr, AskedAs::Hw(hw.hw_type()))
            }
            Resource::IronicIpxe(m)
            | Resource::Grub(GrubRequest {
                file: GrubFile::Mac(m),
                ..
            }) => (AnyAddr::Six(*m), AskedAs::Hw(HwType::Ethernet)),
            Resource::Ipxe(IpxeTarget::Addr(a)) => (*a, AskedAs::Ipxe),
            _ => return None,
        };
        Some(AskedAddr { addr, asked_as })
    }
}

/// A file GRUB's network boot asks for by itself. Over TFTP GRUB walks
/// `<prefix>/grub.cfg-01-<mac>`, then its IPv4 address as upper-case hex shortened one digit
/// at a time (`grub.cfg-C0A80A05` … `grub.cfg-C`), then `<prefix>/grub.cfg`; over HTTP it asks
/// only `<prefix>/grub.cfg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrubFile {
    /// `grub.cfg-01-<mac>`: that node's config; unknown MACs are not found, so GRUB walks on.
    Mac(Mac),
    /// `grub.cfg-<hex-ip>`: found like PXELINUX's hex-IP names (a port's fixed IP, all 8 digits).
    HexIp(HexIpPrefix),
    /// `grub.cfg`: the master config that sources `/<mac>.conf`, as Ironic's does.
    Master,
}

/// One of GRUB's own names, as asked: the normalised path and what its last component is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubRequest {
    /// The normalised request (`EFI/centos/grub.cfg-01-…`): the static file it may also be.
    pub path: String,
    pub file: GrubFile,
}

impl GrubRequest {
    /// The directory GRUB's prefix names, normalised (`EFI/centos`; empty for the root).
    pub fn prefix(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// Whether the name is in Ironic's own layout (the root or `grub/`), where ironpxe's
    /// answers replace the files Ironic writes, as under `pxelinux.cfg/`. Elsewhere a static
    /// file by that name wins: a distro's own `grub.cfg` under its prefix keeps working.
    pub fn in_ironic_layout(&self) -> bool {
        is_ironic_grub_dir(self.prefix())
    }
}

fn is_ironic_grub_dir(dir: &str) -> bool {
    dir.is_empty() || dir == "grub"
}

/// Where GRUB's names are answered (`[grub] prefixes`): any directory, or only the listed
/// ones. The root and `grub/` (Ironic's layout) are always answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GrubPrefixes {
    #[default]
    Any,
    /// Normalised directories (`EFI/centos`, no leading or trailing `/`).
    Only(BTreeSet<String>),
}

/// A `[grub] prefixes` entry that names no directory a client could ask under.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrubPrefixError {
    #[error("GRUB prefix {entry:?}: {source} (write a directory such as \"/EFI/centos\", or \"*\" for any)")]
    Path { entry: String, source: PathError },
    #[error("GRUB prefix {entry:?}: \"*\" (any directory) cannot be combined with a list of directories")]
    AnyAndList { entry: String },
}

impl GrubPrefixes {
    /// Parses the configured list: `"*"` alone is any directory; otherwise directories as
    /// GRUB's `-p` names them (`/EFI/centos`, `EFI\\centos`, `/` for the root).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<GrubPrefixes, GrubPrefixError> {
        let entries: Vec<&str> = entries.iter().map(|e| e.as_ref().trim()).collect();
        if entries.contains(&"*") {
            return match entries.iter().find(|e| **e != "*") {
                Some(other) => Err(GrubPrefixError::AnyAndList {
                    entry: (*other).to_owned(),
                }),
                None => Ok(GrubPrefixes::Any),
            };
        }
        let mut dirs = BTreeSet::new();
        for entry in entries {
            let dir = match normalize(entry) {
                Ok(d) => d,
                // Only separators: the root.
                Err(PathError::Empty) if entry.chars().all(|c| c == '/' || c == '\\') => {
                    String::new()
                }
                Err(source) => {
                    return Err(GrubPrefixError::Path {
                        entry: entry.to_owned(),
                        source,
                    })
                }
            };
            dirs.insert(dir);
        }
        Ok(GrubPrefixes::Only(dirs))
    }

    /// Whether GRUB's names under the normalised directory `dir` are answered.
    pub fn allows(&self, dir: &str) -> bool {
        match self {
            GrubPrefixes::Any => true,
            GrubPrefixes::Only(dirs) => is_ironic_grub_dir(dir) || dirs.contains(dir),
        }
    }
}

/// Classifies a request name, answering GRUB's names under any prefix. `Err` only for names
/// no file could have (traversal, control bytes, empty).
pub fn classify(requested: &str) -> Result<Resource, PathError> {
    classify_with(requested, &GrubPrefixes::Any)
}

/// Classifies a request name, answering GRUB's names only under the prefixes `grub` allows
/// (elsewhere they are static files).
pub fn classify_with(requested: &str, grub: &GrubPrefixes) -> Result<Resource, PathError> {
    let path = normalize(requested)?;
    Ok(classify_normalized(&path, grub).unwrap_or(Resource::Static(path)))
}

fn classify_normalized(path: &str, grub: &GrubPrefixes) -> Option<Resource> {
    if let Some(name) = path.strip_prefix("pxelinux.cfg/") {
        return pxelinux_cfg(name);
    }
    if let Some(target) = path.strip_prefix("ipxe/") {
        return ipxe_target(target).map(Resource::Ipxe);
    }
    if let Some(rest) = path.strip_prefix("images/") {
        let (key, name) = rest.split_once('/')?;
        let is_key = key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit());
        return (is_key && !name.contains('/')).then(|| Resource::Image {
            key: key.to_ascii_lowercase(),
            name: name.to_owned(),
        });
    }
    if path == "boot.ipxe" {
        return Some(Resource::IpxeEntry);
    }
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    if let Some(file) = grub_file(base).filter(|_| grub.allows(dir)) {
        return Some(Resource::Grub(GrubRequest {
            path: path.to_owned(),
            file,
        }));
    }
    if !is_ironic_grub_dir(dir) {
        return None;
    }
    let stem = base.strip_suffix(".conf")?;
    if dir.is_empty() {
        // Ironic names it by the address as Neutron prints it: dotted, no leading zeros
        // (which std's parser refuses too).
        if let Ok(ip) = stem.parse::<Ipv4Addr>() {
            return Some(Resource::GrubIpConf(ip));
        }
    }
    let mac = Some(stem).filter(|m| m.contains(':'))?;
    Mac::parse(mac).ok().map(Resource::GrubConf)
}

/// GRUB's name for a file in its prefix directory, if `base` is one.
fn grub_file(base: &str) -> Option<GrubFile> {
    if base == "grub.cfg" {
        return Some(GrubFile::Master);
    }
    let suffix = base.strip_prefix("grub.cfg-")?;
    if let Some(mac) = suffix.strip_prefix("01-") {
        if let Ok(m) = Mac::parse(mac) {
            return Some(GrubFile::Mac(m));
        }
    }
    // GRUB writes 1 to 8 upper-case digits (`01` is also an IP prefix: 0x01…).
    let hex = (1..=8).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| HexIpPrefix::parse(suffix).ok().map(GrubFile::HexIp))
        .flatten()
}

/// A bare dashed MAC is Ironic's iPXE name; anything else is a PXELINUX name. A name that
/// parses as neither stays a static file (an operator may keep real files there).
fn pxelinux_cfg(name: &str) -> Option<Resource> {
    if let Ok(AnyAddr::Six(mac)) = AnyAddr::parse(name) {
        if name.len() == 17 && name.as_bytes()[2] == b'-' {
            return Some(Resource::IronicIpxe(mac));
        }
    }
    PxelinuxName::parse(name).ok().map(Resource::Pxelinux)
}

fn ipxe_target(target: &str) -> Option<IpxeTarget> {
    if target == "unknown" {
        return Some(IpxeTarget::Unknown);
    }
    if let Ok(a) = AnyAddr::parse(target) {
        return Some(IpxeTarget::Addr(a));
    }
    NodeUuid::parse(target).ok().map(IpxeTarget::Node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        Mac::parse(s).expect("test mac")
    }

    #[test]
    fn pxelinux_names() {
        let r = classify("pxelinux.cfg/20-7c-fe-90-29-26-52").expect("ok");
        assert!(
            matches!(r, Resource::Pxelinux(PxelinuxName::Hw(_))),
            "{r:?}"
        );
        let r = classify("/pxelinux.cfg/default").expect("ok");
        assert_eq!(r, Resource::Pxelinux(PxelinuxName::Default));
        let r = classify("pxelinux.cfg/C0A80A05").expect("ok");
        assert!(matches!(r, Resource::Pxelinux(PxelinuxName::HexIp(_))));
        let r = classify("pxelinux.cfg/4c4c4544-0051-3510-8051-b2c04f4e4d32").expect("ok");
        assert!(matches!(r, Resource::Pxelinux(PxelinuxName::Uuid(_))));
        assert_eq!(
            classify("pxelinux.cfg/52-54-00-00-00-01").expect("ok"),
            Resource::IronicIpxe(mac("52:54:00:00:00:01"))
        );
        // Garbage under pxelinux.cfg/ is just a (missing) static file.
        assert_eq!(
            classify("pxelinux.cfg/whatever").expect("ok"),
            Resource::Static("pxelinux.cfg/whatever".into())
        );
    }

    #[test]
    fn ipxe_targets_in_every_spelling() {
        for s in [
            "ipxe/52:54:00:00:00:01",
            "ipxe/52-54-00-00-00-01",
            "ipxe/525400000001",
            "/ipxe/7c:fe:90:03:00:29:26:52",
            "ipxe/ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52",
        ] {
            assert!(
                matches!(classify(s), Ok(Resource::Ipxe(IpxeTarget::Addr(_)))),
                "{s}"
            );
        }
        assert!(matches!(
            classify("ipxe/d962231e-c2c4-415e-a7f1-1b765be00bda"),
            Ok(Resource::Ipxe(IpxeTarget::Node(_)))
        ));
        assert_eq!(
            classify("ipxe/unknown"),
            Ok(Resource::Ipxe(IpxeTarget::Unknown))
        );
        assert_eq!(classify("boot.ipxe"), Ok(Resource::IpxeEntry));
        assert_eq!(classify("ipxe/zz"), Ok(Resource::Static("ipxe/zz".into())));
    }

    fn grub(path: &str, file: GrubFile) -> Result<Resource, PathError> {
        Ok(Resource::Grub(GrubRequest {
            path: path.into(),
            file,
        }))
    }

    fn hex(s: &str) -> HexIpPrefix {
        HexIpPrefix::parse(s).expect("test hex ip")
    }

    #[test]
    fn grub_names_including_ironic_uefi_layout() {
        let m = mac("0c:42:a1:12:34:56");
        let cfg = "grub.cfg-01-0c-42-a1-12-34-56";
        assert_eq!(classify(cfg), grub(cfg, GrubFile::Mac(m)));
        let under = "grub/grub.cfg-01-0c-42-a1-12-34-56";
        assert_eq!(classify(under), grub(under, GrubFile::Mac(m)));
        assert_eq!(
            classify("0c:42:a1:12:34:56.conf"),
            Ok(Resource::GrubConf(m))
        );
        assert_eq!(
            classify("/grub/0c:42:a1:12:34:56.conf"),
            Ok(Resource::GrubConf(m))
        );
        assert_eq!(
            classify("/grub/grub.cfg"),
            grub("grub/grub.cfg", GrubFile::Master)
        );
        assert_eq!(classify("grub.cfg"), grub("grub.cfg", GrubFile::Master));
        assert_eq!(
            classify("grub/x.conf"),
            Ok(Resource::Static("grub/x.conf".into()))
        );
    }

    /// `<ip>.conf` as Ironic links it for GRUB: at the TFTP root, the dotted IPv4 address.
    #[test]
    fn grub_ip_conf_names_at_the_root_only() {
        let ip = Ipv4Addr::new(192, 0, 2, 111);
        for name in [
            "192.0.2.111.conf",
            "/192.0.2.111.conf",
            "tftp://h/192.0.2.111.conf",
        ] {
            assert_eq!(classify(name), Ok(Resource::GrubIpConf(ip)), "{name}");
        }
        assert_eq!(
            classify("192.0.2.111.conf").map(|r| r.kind()),
            Ok(Kind::Grub)
        );
        assert_eq!(
            classify("192.0.2.111.conf")
                .ok()
                .as_ref()
                .and_then(AskedAddr::of),
            None
        );
        for name in [
            "grub/192.0.2.111.conf",       // Ironic links it at the root only
            "EFI/centos/192.0.2.111.conf", // nor under a GRUB prefix
            "192.0.2.1111.conf",
            "192.0.2.conf",
            "192.000.2.111.conf", // not as Neutron prints an address
            "192.0.2.111.conf.bak",
            "192.0.2.111.CONF",
            "2001:db8::1.conf", // ironpxe's fixed IPs are IPv4 (see docs/ironic-parity.md)
        ] {
            assert!(
                matches!(classify(name), Ok(Resource::Static(_))),
                "{name}: {:?}",
                classify(name)
            );
        }
    }

    /// Every name GRUB's TFTP walk asks, under every kind of prefix `grub-mkimage -p` sets.
    #[test]
    fn grub_names_under_any_prefix_in_the_order_grub_asks() {
        let m = mac("52:54:00:12:34:56");
        for prefix in [
            "",
            "grub",
            "EFI/centos",
            "EFI/BOOT",
            "boot/grub/x86_64-efi",
            "a b",
        ] {
            let at = |name: &str| {
                if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                }
            };
            let mut walk = vec![(at("grub.cfg-01-52-54-00-12-34-56"), GrubFile::Mac(m))];
            // 10.99.0.111 = 0A63006F, shortened one digit at a time down to `0`.
            for n in (1..=8).rev() {
                let digits = &"0A63006F"[..n];
                walk.push((
                    at(&format!("grub.cfg-{digits}")),
                    GrubFile::HexIp(hex(digits)),
                ));
            }
            walk.push((at("grub.cfg"), GrubFile::Master));
            for (name, file) in walk {
                for asked in [name.clone(), format!("/{name}"), format!("tftp://h/{name}")] {
                    let got = classify(&asked);
                    assert_eq!(got, grub(&name, file), "{asked}");
                    let Ok(Resource::Grub(g)) = got else { continue };
                    assert_eq!(g.prefix(), prefix, "{asked}");
                    assert_eq!(g.in_ironic_layout(), prefix.is_empty() || prefix == "grub");
                }
            }
        }
        // `01` alone is an IP prefix, not a truncated MAC name.
        assert_eq!(
            classify("EFI/centos/grub.cfg-01"),
            grub("EFI/centos/grub.cfg-01", GrubFile::HexIp(hex("01")))
        );
        // Any MAC spelling GRUB might send; a bad one is no GRUB name at all.
        assert_eq!(
            classify("x/grub.cfg-01-52:54:00:12:34:56"),
            grub("x/grub.cfg-01-52:54:00:12:34:56", GrubFile::Mac(m))
        );
    }

    #[test]
    fn near_misses_of_grub_names_are_static_files() {
        for name in [
            "EFI/centos/grub.cfg-01-52-54-00-12-34",    // short MAC
            "EFI/centos/grub.cfg-01-52-54-00-12-34-zz", // not hex
            "EFI/centos/grub.cfg-0a63006f",             // GRUB writes upper case
            "EFI/centos/grub.cfg-0A63006F0",            // 9 digits
            "EFI/centos/grub.cfg-",
            "EFI/centos/grub.cfg.bak",
            "EFI/centos/grub.cfgx",
            "EFI/centos/xgrub.cfg",
            "EFI/centos/GRUB.CFG",
            "EFI/centos/grub.cfg/x",
            "EFI/centos/52:54:00:12:34:56.conf", // <mac>.conf only where Ironic's master sources it
            "grub/sub/52:54:00:12:34:56.conf",
            "pxelinux.cfg/grub.cfg", // other namespaces keep their own rules
            "ipxe/grub.cfg",
            "grub/boot.ipxe",
        ] {
            assert_eq!(classify(name), Ok(Resource::Static(name.into())), "{name}");
        }
        // An image named like a GRUB file stays an image.
        assert!(matches!(
            classify("images/0123456789abcdef/grub.cfg"),
            Ok(Resource::Image { .. })
        ));
    }

    #[test]
    fn the_prefix_list_limits_where_grub_names_are_answered() {
        let only = GrubPrefixes::parse(&["/EFI/centos/", "\\boot\\grub2"]).expect("list");
        let want: BTreeSet<String> = ["EFI/centos", "boot/grub2"].map(String::from).into();
        assert_eq!(only, GrubPrefixes::Only(want));
        for (name, answered) in [
            ("EFI/centos/grub.cfg", true),
            ("EFI/centos/grub.cfg-01-52-54-00-12-34-56", true),
            ("boot/grub2/grub.cfg-0A", true),
            ("grub.cfg", true), // Ironic's layout always
            ("grub/grub.cfg-01-52-54-00-12-34-56", true),
            ("EFI/redhat/grub.cfg", false),
            ("EFI/centos/x/grub.cfg", false), // exact directories, not subtrees
            ("EFI/grub.cfg", false),
            ("efi/centos/grub.cfg", false), // case matters, as on the disk
        ] {
            let got = classify_with(name, &only).expect("ok");
            assert_eq!(
                matches!(got, Resource::Grub(_)),
                answered,
                "{name}: {got:?}"
            );
            if !answered {
                assert_eq!(got, Resource::Static(name.into()));
            }
        }
        // `<mac>.conf` stays at the root and under grub/ whatever the list says.
        assert!(matches!(
            classify_with("52:54:00:12:34:56.conf", &only),
            Ok(Resource::GrubConf(_))
        ));
        let root_only = GrubPrefixes::parse(&["/"]).expect("root");
        assert_eq!(root_only, GrubPrefixes::Only([String::new()].into()));
        assert!(
            !root_only.allows("EFI/centos") && root_only.allows("") && root_only.allows("grub")
        );
        assert_eq!(GrubPrefixes::parse(&["*"]), Ok(GrubPrefixes::Any));
        assert_eq!(GrubPrefixes::parse(&[" * "]), Ok(GrubPrefixes::Any));
        assert!(GrubPrefixes::Any.allows("any/where"));
        assert_eq!(
            GrubPrefixes::parse::<&str>(&[]),
            Ok(GrubPrefixes::Only(BTreeSet::new())),
            "an empty list: only Ironic's layout"
        );
    }

    #[test]
    fn bad_prefix_entries_say_what_to_write() {
        for (entry, why) in [("/EFI/../etc", "`..`"), ("EFI/\u{1}", "control")] {
            let e = GrubPrefixes::parse(&[entry]).expect_err(entry).to_string();
            assert!(e.contains(why) && e.contains("/EFI/centos"), "{entry}: {e}");
        }
        let e = GrubPrefixes::parse(&["*", "/EFI/centos"]).expect_err("mixed");
        assert_eq!(
            e,
            GrubPrefixError::AnyAndList {
                entry: "/EFI/centos".into()
            }
        );
        assert!(e.to_string().contains("cannot be combined"), "{e}");
    }

    #[test]
    fn asked_addr_is_the_address_and_the_type_the_name_implies() {
        let asked = |name: &str| classify(name).ok().as_ref().and_then(AskedAddr::of);
        let six = AnyAddr::Six(mac("7c:fe:90:29:26:52"));
        let (eth, ib) = (
            AskedAs::Hw(HwType::Ethernet),
            AskedAs::Hw(HwType::Infiniband),
        );
        let cases = [
            ("pxelinux.cfg/01-7c-fe-90-29-26-52", eth),
            ("pxelinux.cfg/20-7c-fe-90-29-26-52", ib),
            ("pxelinux.cfg/7c-fe-90-29-26-52", eth),
            ("grub.cfg-01-7c-fe-90-29-26-52", eth),
            ("EFI/centos/grub.cfg-01-7c-fe-90-29-26-52", eth),
            ("ipxe/7c:fe:90:29:26:52", AskedAs::Ipxe),
        ];
        for (name, asked_as) in cases {
            let want = AskedAddr {
                addr: six,
                asked_as,
            };
            assert_eq!(asked(name), Some(want), "{name}");
        }
        let guid = asked("pxelinux.cfg/20-7c-fe-90-03-00-29-26-52").expect("guid");
        assert!(matches!(guid.addr, AnyAddr::Eight(_)), "{guid:?}");
        assert_eq!(asked("pxelinux.cfg/default"), None);
        assert_eq!(asked("EFI/centos/grub.cfg-C0A80A05"), None);
        assert_eq!(asked("boot.ipxe"), None);
        let names = [eth, ib, AskedAs::Ipxe].map(AskedAs::as_str);
        assert_eq!(names, ["01", "20", "ipxe"]);
    }

    #[test]
    fn kinds_label_resources() {
        let kind = |name: &str| classify(name).map(|r| r.kind());
        assert_eq!(kind("pxelinux.cfg/default"), Ok(Kind::Pxelinux));
        assert_eq!(kind("pxelinux.cfg/52-54-00-00-00-01"), Ok(Kind::Ipxe));
        assert_eq!(kind("boot.ipxe"), Ok(Kind::IpxeEntry));
        assert_eq!(kind("grub.cfg"), Ok(Kind::Grub));
        assert_eq!(kind("EFI/centos/grub.cfg-0A"), Ok(Kind::Grub));
        assert_eq!(kind("0c:42:a1:12:34:56.conf"), Ok(Kind::Grub));
        assert_eq!(kind("images/0123456789abcdef/k"), Ok(Kind::Image));
        assert_eq!(kind("undionly.kpxe"), Ok(Kind::Static));
    }

    #[test]
    fn images_and_static_files() {
        assert_eq!(
            classify("images/0123456789ABCDEF/ipa.kernel"),
            Ok(Resource::Image {
                key: "0123456789abcdef".into(),
                name: "ipa.kernel".into()
            })
        );
        assert_eq!(
            classify("images/short/x"),
            Ok(Resource::Static("images/short/x".into()))
        );
        assert_eq!(
            classify("\\pxelinux.0"),
            Ok(Resource::Static("pxelinux.0".into()))
        );
        assert_eq!(
            classify("tftp://h/ldlinux.c32"),
            Ok(Resource::Static("ldlinux.c32".into()))
        );
        assert_eq!(classify("../x"), Err(PathError::Traversal));
        assert_eq!(classify("a\0"), Err(PathError::Control));
    }
}
