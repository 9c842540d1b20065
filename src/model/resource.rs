//! What a requested name asks for, the same for TFTP and HTTP. Pure: no I/O.
//!
//! Names under `pxelinux.cfg/`, GRUB's names, `/ipxe/…`, `boot.ipxe` and `images/…` are
//! virtual; everything else is a static file under the served roots.

use serde::{Serialize, Serializer};

use crate::model::addr::{AnyAddr, HwType, IbHwAddr, Mac, PxeHwAddr, PxelinuxName};
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
    /// `grub.cfg-01-<mac>` (also under `grub/`): GRUB's own per-MAC name. Unknown MACs are not
    /// found, so GRUB moves on to `grub.cfg`.
    GrubMac(Mac),
    /// `<mac-with-colons>.conf`: what Ironic's master `grub.cfg` sources; unknown MACs get the
    /// unknown-machine config.
    GrubConf(Mac),
    /// `grub.cfg`, `grub/grub.cfg`: the master config that sources `<mac>.conf`.
    GrubMaster,
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
            Resource::GrubMac(_) | Resource::GrubConf(_) | Resource::GrubMaster => Kind::Grub,
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
            Resource::IronicIpxe(m) | Resource::GrubMac(m) => {
                (AnyAddr::Six(*m), AskedAs::Hw(HwType::Ethernet))
            }
            Resource::Ipxe(IpxeTarget::Addr(a)) => (*a, AskedAs::Ipxe),
            _ => return None,
        };
        Some(AskedAddr { addr, asked_as })
    }
}

/// Classifies a request name. `Err` only for names no file could have (traversal, control
/// bytes, empty).
pub fn classify(requested: &str) -> Result<Resource, PathError> {
    let path = normalize(requested)?;
    Ok(classify_normalized(&path).unwrap_or(Resource::Static(path)))
}

fn classify_normalized(path: &str) -> Option<Resource> {
    if let Some(name) = path.strip_prefix("pxelinux.cfg/") {
        return pxelinux_cfg(name);
    }
    if let Some(target) = path.strip_prefix("ipxe/") {
        return ipxe_target(target).map(Resource::Ipxe);
    }
    let base = path.strip_prefix("grub/").unwrap_or(path);
    match base {
        "boot.ipxe" if path == base => return Some(Resource::IpxeEntry),
        "grub.cfg" => return Some(Resource::GrubMaster),
        _ => {}
    }
    if let Some(mac) = base.strip_prefix("grub.cfg-01-") {
        return Mac::parse(mac).ok().map(Resource::GrubMac);
    }
    if let Some(mac) = base.strip_suffix(".conf").filter(|m| m.contains(':')) {
        return Mac::parse(mac).ok().map(Resource::GrubConf);
    }
    if let Some(rest) = path.strip_prefix("images/") {
        let (key, name) = rest.split_once('/')?;
        let is_key = key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit());
        return (is_key && !name.contains('/')).then(|| Resource::Image {
            key: key.to_ascii_lowercase(),
            name: name.to_owned(),
        });
    }
    None
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

    #[test]
    fn grub_names_including_ironic_uefi_layout() {
        let m = mac("0c:42:a1:12:34:56");
        assert_eq!(
            classify("grub.cfg-01-0c-42-a1-12-34-56"),
            Ok(Resource::GrubMac(m))
        );
        assert_eq!(
            classify("grub/grub.cfg-01-0c-42-a1-12-34-56"),
            Ok(Resource::GrubMac(m))
        );
        assert_eq!(
            classify("0c:42:a1:12:34:56.conf"),
            Ok(Resource::GrubConf(m))
        );
        assert_eq!(classify("/grub/grub.cfg"), Ok(Resource::GrubMaster));
        assert_eq!(classify("grub.cfg"), Ok(Resource::GrubMaster));
        assert_eq!(
            classify("grub/x.conf"),
            Ok(Resource::Static("grub/x.conf".into()))
        );
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
