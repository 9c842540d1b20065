//! Ironic's own rule for the DHCP boot options it puts on a node's Neutron ports, for
//! `ironpxe dhcp --format neutron`. Pure: no I/O.
//!
//! Read from Ironic 39.0.0 (described, not copied):
//! - `common/pxe_utils.py` `dhcp_options_for_instance`: called once for IPv4 and once for
//!   IPv6 (`pxe_base.prepare_ramdisk`); option 67 (IPv4) or 59 (IPv6) carries the boot file;
//!   iPXE interfaces send `tag:!ipxe,67` (`tag:!ipxe6,59`) = boot file and `tag:ipxe,67`
//!   (`tag:ipxe6,59`) = `<[deploy] http_url>/<basename of [pxe] ipxe_boot_script>`; HTTP Boot
//!   interfaces add `60` = `HTTPClient` (IPv4 only); unless the boot is by URL (IPv6, HTTP Boot)
//!   `66`, `150` and `255` (`DHCP_SERVER_IP_ADDRESS`, dnsmasq's `server-ip-address`) carry
//!   `[pxe] tftp_server`; every option carries its `ip_version`.
//! - `pxe_utils._dhcp_option_file_or_url`: the boot file itself (IPv4 PXE), or
//!   `tftp://<[DEFAULT] my_ipv6, else [pxe] tftp_server>/<file>` (IPv6; an IPv6 address in
//!   brackets), or `<[deploy] http_url>/<file>` (HTTP Boot); longer than 64 characters is
//!   refused (Neutron's limit), and then Ironic sets nothing at all.
//! - `drivers/modules/deploy_utils.py` `get_pxe_boot_file` / `get_ipxe_boot_file`: the
//!   `*_bootfile_name_by_arch` entry for `<cpu_arch>-<boot mode>`, then for `<cpu_arch>`, then
//!   the `uefi_*` or BIOS default.
//! - `drivers/modules/boot_mode_utils.py` `get_boot_mode`: `secure_boot:true` in the instance
//!   capabilities means UEFI; else the instance capability `boot_mode`, the deprecated
//!   `instance_info.deploy_boot_mode`, the node capability, `driver_internal_info
//!   .deploy_boot_mode`, lower-cased; a node capability that disagrees is an error; none:
//!   `[deploy] default_boot_mode`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::Deserialize;

use crate::model::boot::capability;
use crate::model::node::Node;

/// Neutron refuses a longer boot file or URL (Ironic checks this before sending).
pub const NEUTRON_MAX_BOOT_FILE: usize = 64;

/// Ironic's option names (`pxe_utils`).
pub const OPT_VENDOR_CLASS: &str = "60";
pub const OPT_CLIENT_ID: &str = "61";
pub const OPT_TFTP_SERVER_NAME: &str = "66";
pub const OPT_BOOTFILE: &str = "67";
pub const OPT_BOOTFILE_URL6: &str = "59";
pub const OPT_TFTP_SERVER_ADDRESS: &str = "150";
/// dnsmasq's `server-ip-address` (siaddr), by number as Ironic sends it.
pub const OPT_SERVER_IP_ADDRESS: &str = "255";

/// The Ironic settings `--format neutron` follows, named and defaulted as Ironic's: `[pxe]`
/// options, plus `[deploy] http_url`, `[deploy] default_boot_mode` and `[DEFAULT] my_ipv6`.
/// `tftp_server`, `http_url` and `my_ipv6` left unset are filled from ironpxe's own DHCP
/// settings by the caller (Ironic's `tftp_server` defaults to the conductor's `my_ip`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IronicPxe {
    pub tftp_server: Option<IpAddr>,
    pub my_ipv6: Option<Ipv6Addr>,
    pub http_url: Option<String>,
    pub pxe_bootfile_name: String,
    pub uefi_pxe_bootfile_name: String,
    pub ipxe_bootfile_name: String,
    pub uefi_ipxe_bootfile_name: String,
    /// `cpu_arch` or `<cpu_arch>-<bios|uefi>` → boot file, for PXE interfaces.
    pub pxe_bootfile_name_by_arch: BTreeMap<String, String>,
    /// The same for iPXE interfaces.
    pub ipxe_bootfile_name_by_arch: BTreeMap<String, String>,
    /// Only its last path component is used (the script's name under `http_url`).
    pub ipxe_boot_script: String,
    pub default_boot_mode: BootMode,
}

impl Default for IronicPxe {
    /// Ironic 39's defaults (`conf/pxe.py`, `conf/deploy.py`).
    fn default() -> Self {
        IronicPxe {
            tftp_server: None,
            my_ipv6: None,
            http_url: None,
            pxe_bootfile_name: "pxelinux.0".into(),
            uefi_pxe_bootfile_name: "bootx64.efi".into(),
            ipxe_bootfile_name: "undionly.kpxe".into(),
            uefi_ipxe_bootfile_name: "snponly.efi".into(),
            pxe_bootfile_name_by_arch: BTreeMap::new(),
            ipxe_bootfile_name_by_arch: BTreeMap::new(),
            ipxe_boot_script: "boot.ipxe".into(),
            default_boot_mode: BootMode::Uefi,
        }
    }
}

impl IronicPxe {
    /// What Ironic puts after `http_url/` for iPXE clients.
    pub fn ipxe_script_name(&self) -> &str {
        self.ipxe_boot_script
            .rsplit('/')
            .next()
            .unwrap_or(&self.ipxe_boot_script)
    }
}

/// A node's boot mode as Ironic decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Bios,
    Uefi,
}

impl BootMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Bios => "bios",
            BootMode::Uefi => "uefi",
        }
    }
}

/// Ironic's network boot interfaces (39.0.0 ships exactly these four), by what they set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetBoot {
    Pxe,
    Ipxe,
    /// UEFI HTTP Boot of the PXE loader (`http`).
    Http,
    /// UEFI HTTP Boot of iPXE (`http-ipxe`).
    HttpIpxe,
}

impl NetBoot {
    /// The node's network boot interface; `None` for one that does not boot from the network
    /// (`fake`, virtual media …). A node without `boot_interface` (a hand-written state file)
    /// counts as `ipxe`, Ironic's default; an out-of-tree name holding `ipxe` or `pxe` as those.
    pub fn of(node: &Node) -> Option<NetBoot> {
        match node.boot_interface.as_deref() {
            None | Some("ipxe") => Some(NetBoot::Ipxe),
            Some("pxe") => Some(NetBoot::Pxe),
            Some("http") => Some(NetBoot::Http),
            Some("http-ipxe") => Some(NetBoot::HttpIpxe),
            Some(bi) if bi.contains("ipxe") => Some(NetBoot::Ipxe),
            Some(bi) if bi.contains("pxe") => Some(NetBoot::Pxe),
            Some(_) => None,
        }
    }

    pub fn ipxe(self) -> bool {
        matches!(self, NetBoot::Ipxe | NetBoot::HttpIpxe)
    }

    pub fn http_boot(self) -> bool {
        matches!(self, NetBoot::Http | NetBoot::HttpIpxe)
    }
}

/// IPv4 or IPv6, as Neutron's `ip_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

/// One Neutron `extra_dhcp_opts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpOpt {
    pub name: String,
    pub value: String,
    pub ip_version: IpVersion,
}

/// Why Ironic would set no boot options for a node; each names what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("boot interface {0:?} does not boot from the network: Ironic sets no boot options")]
    NotNetworkBoot(String),
    #[error("boot mode {value:?} ({field}) is neither bios nor uefi: Ironic refuses the node")]
    UnknownBootMode { field: &'static str, value: String },
    #[error("boot mode {chosen:?} disagrees with properties.capabilities boot_mode {cap:?}: Ironic refuses the node (InvalidParameterValue)")]
    BootModeConflict { chosen: String, cap: String },
    #[error("boot file or URL {0:?} is longer than Neutron's 64 characters: Ironic refuses it and sets no options (use a shorter name or URL)")]
    TooLong(String),
    #[error("no TFTP server: give --next-server or [ironic_pxe] tftp_server (Ironic's [pxe] tftp_server)")]
    NoTftpServer,
    #[error("no HTTP URL: give --http-url or [ironic_pxe] http_url (Ironic's [deploy] http_url)")]
    NoHttpUrl,
}

/// `boot_mode_utils.get_boot_mode`, see the module doc.
pub fn boot_mode(node: &Node, default: BootMode) -> Result<BootMode, OptionsError> {
    let inst = node.instance_info.capabilities.as_ref();
    let secure = inst
        .and_then(|c| capability(c, "secure_boot"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if secure {
        return Ok(BootMode::Uefi);
    }
    let cap = node
        .properties
        .capabilities
        .as_ref()
        .and_then(|c| capability(c, "boot_mode"))
        .filter(|v| !v.is_empty());
    // Python's `a or b`: an empty text counts as unset.
    let sources = [
        (
            "instance_info.capabilities",
            inst.and_then(|c| capability(c, "boot_mode")),
        ),
        (
            "instance_info.deploy_boot_mode",
            node.instance_info.deploy_boot_mode.clone(),
        ),
        ("properties.capabilities", cap.clone()),
        (
            "driver_internal_info.deploy_boot_mode",
            node.driver_internal_info.deploy_boot_mode.clone(),
        ),
    ];
    let Some((field, chosen)) = sources
        .into_iter()
        .find_map(|(f, v)| v.filter(|v| !v.is_empty()).map(|v| (f, v.to_lowercase())))
    else {
        return Ok(default);
    };
    if let Some(cap) = cap.map(|c| c.to_lowercase()) {
        if cap != chosen {
            return Err(OptionsError::BootModeConflict { chosen, cap });
        }
    }
    match chosen.as_str() {
        "bios" => Ok(BootMode::Bios),
        "uefi" => Ok(BootMode::Uefi),
        _ => Err(OptionsError::UnknownBootMode {
            field,
            value: chosen,
        }),
    }
}

/// `deploy_utils.get_pxe_boot_file` / `get_ipxe_boot_file`. Without `cpu_arch` Ironic's
/// composite key reads `None-<mode>`, and so does this one.
pub fn boot_file<'a>(node: &Node, mode: BootMode, ipxe: bool, pxe: &'a IronicPxe) -> &'a str {
    let (by_arch, uefi, bios) = if ipxe {
        (
            &pxe.ipxe_bootfile_name_by_arch,
            &pxe.uefi_ipxe_bootfile_name,
            &pxe.ipxe_bootfile_name,
        )
    } else {
        (
            &pxe.pxe_bootfile_name_by_arch,
            &pxe.uefi_pxe_bootfile_name,
            &pxe.pxe_bootfile_name,
        )
    };
    let arch = node.properties.cpu_arch.as_deref();
    let composite = format!("{}-{}", arch.unwrap_or("None"), mode.as_str());
    by_arch
        .get(&composite)
        .or_else(|| arch.and_then(|a| by_arch.get(a)))
        .unwrap_or(match mode {
            BootMode::Uefi => uefi,
            BootMode::Bios => bios,
        })
}

/// An address as a URL host: IPv6 in brackets (`oslo netutils.escape_ipv6`).
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `pxe_utils.dhcp_options_for_instance` for one IP version (see the module doc). Ironic asks
/// for both versions before it sets anything, so a caller should treat an error of either as
/// "no boot options".
pub fn dhcp_options(
    node: &Node,
    pxe: &IronicPxe,
    version: IpVersion,
) -> Result<Vec<DhcpOpt>, OptionsError> {
    let bi = node.boot_interface.clone().unwrap_or_default();
    let net = NetBoot::of(node).ok_or(OptionsError::NotNetworkBoot(bi))?;
    let mode = boot_mode(node, pxe.default_boot_mode)?;
    let file = boot_file(node, mode, net.ipxe(), pxe);
    let v6 = version == IpVersion::V6;
    let url_boot = v6 || net.http_boot();
    let http_url = || pxe.http_url.as_deref().ok_or(OptionsError::NoHttpUrl);
    let boot = if net.http_boot() {
        format!("{}/{file}", http_url()?)
    } else if v6 {
        let host = pxe
            .my_ipv6
            .map(IpAddr::V6)
            .or(pxe.tftp_server)
            .ok_or(OptionsError::NoTftpServer)?;
        format!("tftp://{}/{file}", url_host(host))
    } else {
        file.to_owned()
    };
    if boot.chars().count() > NEUTRON_MAX_BOOT_FILE {
        return Err(OptionsError::TooLong(boot));
    }
    let param = if v6 { OPT_BOOTFILE_URL6 } else { OPT_BOOTFILE };
    let mut opts: Vec<(String, String)> = Vec::new();
    if net.ipxe() {
        let tag = if v6 { "ipxe6" } else { "ipxe" };
        let script = format!("{}/{}", http_url()?, pxe.ipxe_script_name());
        opts.push((format!("tag:!{tag},{param}"), boot));
        opts.push((format!("tag:{tag},{param}"), script));
    } else {
        opts.push((param.to_owned(), boot));
    }
    if net.http_boot() && !v6 {
        opts.push((OPT_VENDOR_CLASS.to_owned(), "HTTPClient".to_owned()));
    }
    if !url_boot {
        let tftp = pxe
            .tftp_server
            .ok_or(OptionsError::NoTftpServer)?
            .to_string();
        for name in [
            OPT_TFTP_SERVER_NAME,
            OPT_TFTP_SERVER_ADDRESS,
            OPT_SERVER_IP_ADDRESS,
        ] {
            opts.push((name.to_owned(), tftp.clone()));
        }
    }
    Ok(opts
        .into_iter()
        .map(|(name, value)| DhcpOpt {
            name,
            value,
            ip_version: version,
        })
        .collect())
}

impl fmt::Display for DhcpOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} (ip_version {})",
            self.name,
            self.value,
            self.ip_version.number()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(fields: serde_json::Value) -> Node {
        let mut v = json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"});
        if let (Some(o), Some(more)) = (v.as_object_mut(), fields.as_object()) {
            o.extend(more.clone());
        }
        serde_json::from_value(v).expect("test node")
    }

    fn settings() -> IronicPxe {
        IronicPxe {
            tftp_server: Some("192.0.2.7".parse().expect("ip")),
            http_url: Some("http://192.0.2.7:8080".into()),
            ..IronicPxe::default()
        }
    }

    fn pairs(opts: &[DhcpOpt]) -> Vec<(&str, &str, u8)> {
        opts.iter()
            .map(|o| (o.name.as_str(), o.value.as_str(), o.ip_version.number()))
            .collect()
    }

    fn opts(fields: serde_json::Value, pxe: &IronicPxe, v: IpVersion) -> Vec<DhcpOpt> {
        dhcp_options(&node(fields), pxe, v).expect("options")
    }

    /// Every boot interface, both boot modes, both IP versions: the option names and values of
    /// `dhcp_options_for_instance` with Ironic's default `[pxe]` boot files.
    #[test]
    fn options_per_interface_mode_and_version_follow_ironic() {
        use IpVersion::{V4, V6};
        let t = "192.0.2.7";
        let s = settings();
        type Want<'a> = Vec<(&'a str, &'a str, u8)>;
        let cases: Vec<(&str, &str, IpVersion, Want)> = vec![
            (
                "pxe",
                "bios",
                V4,
                vec![
                    ("67", "pxelinux.0", 4),
                    ("66", t, 4),
                    ("150", t, 4),
                    ("255", t, 4),
                ],
            ),
            (
                "pxe",
                "uefi",
                V4,
                vec![
                    ("67", "bootx64.efi", 4),
                    ("66", t, 4),
                    ("150", t, 4),
                    ("255", t, 4),
                ],
            ),
            (
                "ipxe",
                "bios",
                V4,
                vec![
                    ("tag:!ipxe,67", "undionly.kpxe", 4),
                    ("tag:ipxe,67", "http://192.0.2.7:8080/boot.ipxe", 4),
                    ("66", t, 4),
                    ("150", t, 4),
                    ("255", t, 4),
                ],
            ),
            (
                "ipxe",
                "uefi",
                V4,
                vec![
                    ("tag:!ipxe,67", "snponly.efi", 4),
                    ("tag:ipxe,67", "http://192.0.2.7:8080/boot.ipxe", 4),
                    ("66", t, 4),
                    ("150", t, 4),
                    ("255", t, 4),
                ],
            ),
            (
                "pxe",
                "uefi",
                V6,
                vec![("59", "tftp://192.0.2.7/bootx64.efi", 6)],
            ),
            (
                "ipxe",
                "bios",
                V6,
                vec![
                    ("tag:!ipxe6,59", "tftp://192.0.2.7/undionly.kpxe", 6),
                    ("tag:ipxe6,59", "http://192.0.2.7:8080/boot.ipxe", 6),
                ],
            ),
            (
                "http",
                "uefi",
                V4,
                vec![
                    ("67", "http://192.0.2.7:8080/bootx64.efi", 4),
                    ("60", "HTTPClient", 4),
                ],
            ),
            (
                "http",
                "uefi",
                V6,
                vec![("59", "http://192.0.2.7:8080/bootx64.efi", 6)],
            ),
            (
                "http-ipxe",
                "uefi",
                V4,
                vec![
                    ("tag:!ipxe,67", "http://192.0.2.7:8080/snponly.efi", 4),
                    ("tag:ipxe,67", "http://192.0.2.7:8080/boot.ipxe", 4),
                    ("60", "HTTPClient", 4),
                ],
            ),
            (
                "http-ipxe",
                "bios",
                V6,
                vec![
                    ("tag:!ipxe6,59", "http://192.0.2.7:8080/undionly.kpxe", 6),
                    ("tag:ipxe6,59", "http://192.0.2.7:8080/boot.ipxe", 6),
                ],
            ),
        ];
        for (bi, mode, v, want) in cases {
            let f = json!({"boot_interface": bi, "properties": {"capabilities": format!("boot_mode:{mode}")}});
            assert_eq!(pairs(&opts(f, &s, v)), want, "{bi} {mode} {v:?}");
        }
    }

    #[test]
    fn ipv6_tftp_urls_use_my_ipv6_in_brackets_else_tftp_server() {
        let f = json!({"boot_interface": "pxe"});
        let mut s = settings();
        s.my_ipv6 = Some("2001:db8::7".parse().expect("ip"));
        assert_eq!(
            opts(f.clone(), &s, IpVersion::V6)[0].value,
            "tftp://[2001:db8::7]/bootx64.efi"
        );
        s.my_ipv6 = None;
        s.tftp_server = Some("2001:db8::9".parse().expect("ip"));
        assert_eq!(
            opts(f.clone(), &s, IpVersion::V6)[0].value,
            "tftp://[2001:db8::9]/bootx64.efi"
        );
        s.tftp_server = None;
        assert_eq!(
            dhcp_options(&node(f.clone()), &s, IpVersion::V6),
            Err(OptionsError::NoTftpServer)
        );
        assert_eq!(
            dhcp_options(&node(f), &s, IpVersion::V4),
            Err(OptionsError::NoTftpServer)
        );
        let no_url = IronicPxe {
            http_url: None,
            ..settings()
        };
        assert_eq!(
            dhcp_options(
                &node(json!({"boot_interface": "ipxe"})),
                &no_url,
                IpVersion::V4
            ),
            Err(OptionsError::NoHttpUrl)
        );
    }

    #[test]
    fn boot_files_by_arch_composite_key_first_then_arch_then_default() {
        let mut s = settings();
        s.pxe_bootfile_name_by_arch = [
            ("aarch64", "grubaa64.efi"),
            ("x86_64-bios", "pxelinux-x86.0"),
            ("None-uefi", "no-arch.efi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        s.ipxe_bootfile_name_by_arch = [("aarch64-uefi".into(), "snp-arm.efi".into())].into();
        let file = |arch: Option<&str>, mode, ipxe| {
            let mut f = json!({"properties": {}});
            if let Some(a) = arch {
                f["properties"]["cpu_arch"] = json!(a);
            }
            boot_file(&node(f), mode, ipxe, &s).to_owned()
        };
        use BootMode::{Bios, Uefi};
        assert_eq!(file(Some("aarch64"), Uefi, false), "grubaa64.efi");
        assert_eq!(file(Some("aarch64"), Bios, false), "grubaa64.efi");
        assert_eq!(file(Some("x86_64"), Bios, false), "pxelinux-x86.0");
        assert_eq!(file(Some("x86_64"), Uefi, false), "bootx64.efi");
        assert_eq!(
            file(None, Uefi, false),
            "no-arch.efi",
            "Ironic formats None"
        );
        assert_eq!(file(None, Bios, false), "pxelinux.0");
        assert_eq!(file(Some("aarch64"), Uefi, true), "snp-arm.efi");
        assert_eq!(file(Some("aarch64"), Bios, true), "undionly.kpxe");
        assert_eq!(file(Some("x86_64"), Uefi, true), "snponly.efi");
        // A non-text cpu_arch is no arch (and does not refuse the node).
        let n = node(json!({"properties": {"cpu_arch": 7}}));
        assert_eq!(n.properties.cpu_arch, None);
    }

    #[test]
    fn boot_mode_follows_ironics_order_and_refuses_disagreement() {
        use BootMode::{Bios, Uefi};
        let mode = |f: serde_json::Value| boot_mode(&node(f), Uefi);
        assert_eq!(mode(json!({})), Ok(Uefi));
        assert_eq!(boot_mode(&node(json!({})), Bios), Ok(Bios), "the default");
        assert_eq!(
            mode(json!({"properties": {"capabilities": "boot_mode:BIOS"}})),
            Ok(Bios)
        );
        assert_eq!(
            mode(json!({"properties": {"capabilities": {"boot_mode": "bios"}}})),
            Ok(Bios)
        );
        assert_eq!(
            mode(json!({"instance_info": {"capabilities": {"boot_mode": "bios"}}})),
            Ok(Bios)
        );
        assert_eq!(
            mode(json!({"instance_info": {"capabilities": "{\"boot_mode\": \"bios\"}"}})),
            Ok(Bios)
        );
        assert_eq!(
            mode(json!({"instance_info": {"deploy_boot_mode": "bios"}})),
            Ok(Bios)
        );
        assert_eq!(
            mode(json!({"driver_internal_info": {"deploy_boot_mode": "bios"}})),
            Ok(Bios)
        );
        // The instance wins over driver_internal_info; an empty value counts as unset.
        assert_eq!(
            mode(
                json!({"instance_info": {"deploy_boot_mode": "uefi"}, "driver_internal_info": {"deploy_boot_mode": "bios"}})
            ),
            Ok(Uefi)
        );
        assert_eq!(
            mode(
                json!({"instance_info": {"deploy_boot_mode": ""}, "driver_internal_info": {"deploy_boot_mode": "bios"}})
            ),
            Ok(Bios)
        );
        // secure_boot forces UEFI, whatever the rest says.
        assert_eq!(
            mode(
                json!({"instance_info": {"capabilities": {"secure_boot": "True", "boot_mode": "bios"}}, "properties": {"capabilities": "boot_mode:bios"}})
            ),
            Ok(Uefi)
        );
        assert_eq!(
            mode(
                json!({"instance_info": {"capabilities": {"boot_mode": "uefi"}}, "properties": {"capabilities": "boot_mode:bios"}})
            ),
            Err(OptionsError::BootModeConflict {
                chosen: "uefi".into(),
                cap: "bios".into()
            })
        );
        let odd = mode(json!({"properties": {"capabilities": "boot_mode:legacy"}}));
        assert!(
            matches!(odd, Err(OptionsError::UnknownBootMode { .. })),
            "{odd:?}"
        );
        // Non-text deploy_boot_mode is unset, never a refused node.
        assert_eq!(
            mode(json!({"driver_internal_info": {"deploy_boot_mode": ["bios"]}})),
            Ok(Uefi)
        );
    }

    #[test]
    fn interfaces_that_do_not_boot_from_the_network_get_no_options() {
        for bi in ["fake", "redfish-virtual-media", "redfish-https", "noop"] {
            let r = dhcp_options(
                &node(json!({"boot_interface": bi})),
                &settings(),
                IpVersion::V4,
            );
            assert_eq!(r, Err(OptionsError::NotNetworkBoot(bi.into())), "{bi}");
        }
        assert_eq!(NetBoot::of(&node(json!({}))), Some(NetBoot::Ipxe));
        assert_eq!(
            NetBoot::of(&node(json!({"boot_interface": "ilo-pxe"}))),
            Some(NetBoot::Pxe)
        );
    }

    #[test]
    fn a_boot_file_or_url_over_64_characters_is_refused_and_the_script_url_is_not() {
        let mut s = settings();
        s.uefi_pxe_bootfile_name = "a".repeat(64);
        let f = json!({"boot_interface": "pxe"});
        assert_eq!(opts(f.clone(), &s, IpVersion::V4)[0].value.len(), 64);
        // The same name as a tftp:// URL is too long.
        let e = dhcp_options(&node(f.clone()), &s, IpVersion::V6).expect_err("too long");
        assert!(
            matches!(&e, OptionsError::TooLong(u) if u.starts_with("tftp://")),
            "{e}"
        );
        assert!(e.to_string().contains("64"), "{e}");
        s.uefi_pxe_bootfile_name = "a".repeat(65);
        assert!(dhcp_options(&node(f), &s, IpVersion::V4).is_err());
        let long = IronicPxe {
            http_url: Some(format!("http://{}.example", "h".repeat(60))),
            ..settings()
        };
        let o = opts(json!({"boot_interface": "ipxe"}), &long, IpVersion::V4);
        assert!(o[1].value.len() > 64, "the iPXE script URL is not limited");
        assert!(dhcp_options(
            &node(json!({"boot_interface": "http"})),
            &long,
            IpVersion::V4
        )
        .is_err());
    }

    #[test]
    fn the_script_name_is_the_last_component_of_ipxe_boot_script() {
        let mut s = settings();
        s.ipxe_boot_script =
            "/usr/lib/python3/site-packages/ironic/drivers/modules/boot.ipxe".into();
        assert_eq!(s.ipxe_script_name(), "boot.ipxe");
        s.ipxe_boot_script = "custom.ipxe".into();
        let o = opts(json!({"boot_interface": "ipxe"}), &s, IpVersion::V4);
        assert_eq!(o[1].value, "http://192.0.2.7:8080/custom.ipxe");
    }

    #[test]
    fn the_section_reads_ironics_names_and_refuses_others() {
        let s: IronicPxe = toml::from_str(
            "tftp_server = \"192.0.2.1\"\nuefi_pxe_bootfile_name = \"grubx64.efi\"\ndefault_boot_mode = \"bios\"\n[pxe_bootfile_name_by_arch]\naarch64 = \"grubaa64.efi\"\n",
        )
        .expect("toml");
        assert_eq!(s.uefi_pxe_bootfile_name, "grubx64.efi");
        assert_eq!(s.default_boot_mode, BootMode::Bios);
        assert_eq!(s.pxe_bootfile_name_by_arch["aarch64"], "grubaa64.efi");
        assert_eq!(s.ipxe_bootfile_name, "undionly.kpxe", "Ironic's default");
        assert!(toml::from_str::<IronicPxe>("bootfile = \"x\"").is_err());
        assert!(toml::from_str::<IronicPxe>("default_boot_mode = \"legacy\"").is_err());
    }
}
