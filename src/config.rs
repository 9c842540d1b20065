//! Configuration: a TOML file (`--config`) whose keys the command-line flags override.
//!
//! Every key has a default that runs the shipped example on unprivileged loopback ports, so
//! `ironpxe serve` with no arguments works from a checkout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::addr::{client_id_prefix_text, ClientId, MELLANOX_CLIENT_ID_PREFIX};
use crate::model::boot::{BootConfig, UnknownAction};
use crate::model::net::{InterfaceName, ListenSpec};
use crate::model::resource::GrubPrefixes;
use crate::serving::images::policy::{FilePolicy, ImagePolicy, UrlPolicy, IRONIC_IMAGE_DIR};
use crate::serving::images::CacheSettings;
use crate::state::IndexConfig;

/// The whole configuration, as in `ironpxe.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of Ironic JSON (nodes, ports), watched live.
    pub state_dir: PathBuf,
    /// Directory of the Tera templates, watched live.
    pub templates: PathBuf,
    /// Static boot files served over TFTP (pxelinux.0, ldlinux.c32, undionly.kpxe …).
    pub tftp_root: PathBuf,
    /// TFTP listen addresses, one per provisioning interface address; a link-local IPv6 one
    /// with its interface (`[fe80::1%eth1]:69`, see [`parse_listen`]).
    #[serde(deserialize_with = "listen::many")]
    pub tftp_listen: Vec<SocketAddr>,
    /// More static roots searched after `tftp_root`, in order (e.g. Debian's
    /// `/usr/lib/PXELINUX`, `/usr/lib/syslinux/modules/bios`, `/usr/lib/ipxe`, the default).
    /// `serve` warns about a missing one, unless the list is the default.
    pub extra_tftp_roots: Vec<PathBuf>,
    /// HTTP listen address (written as `tftp_listen`'s).
    #[serde(deserialize_with = "listen::one")]
    pub http_listen: SocketAddr,
    /// Static files served over HTTP (kernels, ramdisks, images); defaults to `tftp_root`.
    pub http_root: Option<PathBuf>,
    /// Base URL clients use to reach this server, written into rendered scripts. When unset,
    /// a `Host` header naming this server is used, else the address the client reached.
    pub public_url: Option<String>,
    /// Where fetched kernels and ramdisks are kept for PXELINUX and GRUB.
    pub image_cache_dir: PathBuf,
    /// Size cap of the image cache, in MiB.
    pub image_cache_mib: u64,
    /// Seconds an image fetch may go without receiving data before it fails.
    pub image_fetch_timeout_secs: u64,
    pub boot: BootSection,
    pub index: IndexSection,
    pub tftp: crate::serving::tftp::TftpConfig,
    pub http: crate::serving::http::HttpConfig,
    pub ironic: crate::state::source::ironic::IronicConfig,
    pub dhcp: DhcpSection,
    pub journal: crate::serving::journal::JournalConfig,
    pub admin: AdminSection,
    pub render: crate::render::RenderConfig,
    pub images: crate::serving::images::ImagesConfig,
    pub grub: GrubSection,
    /// Ironic's `[pxe]` settings (with `[deploy] http_url`, `default_boot_mode`, `[DEFAULT]
    /// my_ipv6`) under Ironic's names and defaults: what `ironpxe dhcp --format neutron`
    /// reproduces Ironic's Neutron options from.
    pub ironic_pxe: crate::model::ironic_pxe::IronicPxe,
    /// `[inspector]`: Ironic's inspection settings `ironpxe inspect` reproduces.
    pub inspector: crate::inspect::InspectorSettings,
    pub neutron: NeutronSection,
}

/// `[neutron]`: the Ironic options of that section that change which ports boot, under
/// Ironic's names and with its defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NeutronSection {
    /// Ironic's `[neutron] add_all_ports` (default false): ports that are not PXE-enabled get
    /// boot names and DHCP entries too (without an address, and with option 61 for a
    /// client-id), as Ironic links and creates them then.
    pub add_all_ports: bool,
}

/// `[grub]`: where GRUB's own config names are answered.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrubSection {
    /// Directories (GRUB's `-p` prefix, e.g. `"/EFI/centos"`) under which `grub.cfg`,
    /// `grub.cfg-01-<mac>` and `grub.cfg-<hex-ip>` are answered; `["*"]` (the default): any.
    /// The root and `grub/` (Ironic's layout) always are.
    pub prefixes: GrubPrefixes,
}

impl<'de> Deserialize<'de> for GrubPrefixes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GrubPrefixes::parse(&Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `[admin]`: the operator's API and status page, on its own address (never the boot port).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Listen address; the boot ports stay anonymous, this one is for operators.
    #[serde(deserialize_with = "listen::optional")]
    pub listen: Option<SocketAddr>,
    /// A file holding a bearer token the admin API and page require (`Authorization:
    /// Bearer <token>`, or `?token=` for a browser).
    pub token_file: Option<PathBuf>,
    /// Without a token, the admin server answers only requests whose `Host` is its listen
    /// address (or `localhost` on loopback): other names it is reached by go here
    /// (DNS-rebinding protection: a hostile page reaches it only under a name of its own).
    pub host_aliases: Vec<String>,
    /// Connections open at once, from one client address as from all (operators are few);
    /// over the cap a client gets `503 Service Unavailable`. Within the descriptors `serve`
    /// keeps in reserve beyond the boot servers' caps.
    pub max_connections: usize,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            token_file: None,
            host_aliases: Vec::new(),
            max_connections: 64,
        }
    }
}

/// `[dhcp]`: a dnsmasq `--dhcp-hostsdir` kept in sync with the state while serving.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSection {
    /// Directory dnsmasq reads with `--dhcp-hostsdir`; unset: not maintained.
    pub hostsdir: Option<PathBuf>,
    /// dnsmasq's PID file: it gets SIGHUP after an entry is deleted or changed (dnsmasq
    /// keeps serving those until then).
    pub dnsmasq_pid_file: Option<PathBuf>,
    /// `next-server` for the generated boot logic (`ironpxe dhcp`).
    pub next_server: Option<std::net::Ipv4Addr>,
    pub bios_boot: String,
    pub uefi_boot: String,
    /// The loader UEFI HTTP Boot clients fetch from `http_root` (`snponly.efi`; a GRUB built
    /// with `http`, e.g. `grubx64.efi`, for GRUB over HTTP).
    pub http_boot_loader: String,
    /// The IPv6 TFTP address in DHCPv6 `tftp://` URLs; its presence (or an IPv6
    /// `tftp_listen`) turns DHCPv6 output on.
    pub next_server6: Option<std::net::Ipv6Addr>,
    /// Base URL for DHCPv6 iPXE and HTTP Boot clients when neither `public_url` nor
    /// `http_listen` is an IPv6 one they can reach.
    pub http_url6: Option<String>,
    /// dnsmasq's stateful DHCPv6 range, `START,END[,PREFIX-LEN]`.
    pub ipv6_range: Option<crate::dhcp::Ipv6Range>,
}

impl Default for DhcpSection {
    fn default() -> Self {
        DhcpSection {
            hostsdir: None,
            dnsmasq_pid_file: None,
            next_server: None,
            bios_boot: "pxelinux.0".into(),
            uefi_boot: "snponly.efi".into(),
            http_boot_loader: crate::dhcp::DEFAULT_HTTP_BOOT.into(),
            next_server6: None,
            http_url6: None,
            ipv6_range: None,
        }
    }
}

/// `[boot]`: what nodes are booted with.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BootSection {
    /// Ironic API URL the agent calls back (`ipa-api-url`).
    pub ipa_api_url: String,
    /// Ironic's `[pxe] kernel_append_params`; `%default%` in a node's own params expands to it.
    pub kernel_append_params: String,
    /// Parameters every agent ramdisk gets first.
    pub ramdisk_params: String,
    /// Extra parameters for every agent ramdisk.
    pub extra_append_params: String,
    /// Extra parameters for agent ramdisks booting from an InfiniBand port.
    pub infiniband_append_params: String,
    /// Base URL for Glance image ids.
    pub image_base_url: Option<String>,
    /// `local` (exit network boot) or `discovery` (boot the discovery ramdisk).
    pub unknown_action: UnknownKind,
    pub discovery_kernel: Option<String>,
    pub discovery_ramdisk: Option<String>,
}

/// The unknown-machine action's name in the config.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownKind {
    #[default]
    Local,
    Discovery,
}

/// `[index]`: where the fields Ironic does not keep live, and the IB vendor prefix.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSection {
    /// Node field holding the SMBIOS system UUID (`extra.<key>`).
    pub system_uuid_field: ExtraField,
    /// Port field holding a fixed IPv4 address (`extra.<key>`), for hex-IP names.
    pub fixed_ip_field: ExtraField,
    /// 12-byte client-id prefix used when deriving a client-id from a GUID.
    pub client_id_prefix: ClientIdPrefix,
}

/// A field of a node's or port's `extra`, written `extra.<key>` in the file (the only fields
/// Ironic lets operators fill freely). Parsed when the file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraField(String);

impl std::str::FromStr for ExtraField {
    type Err = String;
    fn from_str(path: &str) -> Result<Self, String> {
        path.strip_prefix("extra.")
            .filter(|k| !k.is_empty())
            .map(|k| ExtraField(k.to_owned()))
            .ok_or_else(|| format!("{path:?}: only fields of `extra` are supported (extra.<key>)"))
    }
}

/// A listen address as written in the file or a flag (`192.0.2.1:69`, `[2001:db8::1]:69`,
/// `[fe80::1%2]:69`, `[fe80::1%eth1]:69`), an interface name resolved to its scope id now —
/// ironpxe binds what it read at start, and an interface that does not exist is named then,
/// not met as `EINVAL` when binding.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let spec: ListenSpec = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    let Some(name) = &spec.interface else {
        return Ok(spec.addr);
    };
    let index = interface_index(name).map_err(|e| format!("{text:?}: {e}"))?;
    let mut addr = spec.addr;
    if let SocketAddr::V6(v6) = &mut addr {
        v6.set_scope_id(index);
    }
    Ok(addr)
}

/// An interface that cannot be used as a zone.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("no network interface {0:?} on this host (`ip link` lists them)")]
    Missing(String),
    #[error("cannot look up network interface {name:?}: {source}")]
    Lookup {
        name: String,
        source: std::io::Error,
    },
}

/// The scope id (interface index) of a network interface (`if_nametoindex`).
pub fn interface_index(name: &InterfaceName) -> Result<u32, InterfaceError> {
    use rustix::net::{netdevice, socket, AddressFamily, SocketType};
    let lookup = |source: std::io::Error| InterfaceError::Lookup {
        name: name.to_string(),
        source,
    };
    let fd = socket(AddressFamily::INET, SocketType::DGRAM, None).map_err(|e| lookup(e.into()))?;
    match netdevice::name_to_index(&fd, name.as_str()) {
        Ok(i) => Ok(i),
        Err(rustix::io::Errno::NODEV) => Err(InterfaceError::Missing(name.to_string())),
        Err(e) => Err(lookup(e.into())),
    }
}

/// Serde adapters reading listen addresses with [`parse_listen`].
mod listen {
    use super::parse_listen;
    use serde::{de::Error, Deserialize, Deserializer};
    use std::net::SocketAddr;

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse_listen(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| parse_listen(t).map_err(D::Error::custom))
            .collect()
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| parse_listen(&t).map_err(D::Error::custom))
            .transpose()
    }
}

/// Values written as text in the file, parsed when it is read: a bad one is refused there,
/// with its key, and code past loading never handles the error again.
macro_rules! parsed_from_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
parsed_from_text!(ExtraField, ClientIdPrefix);

impl std::fmt::Display for ClientIdPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&client_id_prefix_text(self.0))
    }
}

/// The 12-byte vendor prefix of client-ids derived from a GUID, written as colon-separated
/// hex bytes. Parsed when the file (or `addr --client-id-prefix`) is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIdPrefix(pub [u8; 12]);

impl std::str::FromStr for ClientIdPrefix {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = text.split(':').count();
        if bytes != 12 {
            return Err(format!(
                "{text:?}: expected 12 colon-separated bytes, got {bytes}"
            ));
        }
        ClientId::parse(&format!("{text}:00:00:00:00:00:00:00:00"))
            .map(|c| ClientIdPrefix(c.prefix()))
            .map_err(|e| format!("{text:?}: {e} (expected 12 colon-separated bytes)"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: "examples/state".into(),
            templates: "templates".into(),
            tftp_root: "tftp-root".into(),
            tftp_listen: vec![SocketAddr::from(([127, 0, 0, 1], 6969))],
            extra_tftp_roots: [
                "/usr/lib/PXELINUX",
                "/usr/lib/syslinux/modules/bios",
                "/usr/lib/ipxe",
            ]
            .map(PathBuf::from)
            .to_vec(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_root: None,
            public_url: None,
            image_cache_dir: std::env::temp_dir().join("ironpxe-images"),
            image_cache_mib: 4096,
            image_fetch_timeout_secs: 30,
            boot: BootSection::default(),
            index: IndexSection::default(),
            tftp: Default::default(),
            http: Default::default(),
            ironic: Default::default(),
            dhcp: Default::default(),
            journal: Default::default(),
            admin: Default::default(),
            render: Default::default(),
            images: Default::default(),
            grub: Default::default(),
            ironic_pxe: Default::default(),
            neutron: Default::default(),
            inspector: Default::default(),
        }
    }
}

impl Default for BootSection {
    fn default() -> Self {
        let b = BootConfig::default();
        BootSection {
            ipa_api_url: "http://127.0.0.1:6385".into(),
            kernel_append_params: b.kernel_append_params,
            ramdisk_params: b.ramdisk_params,
            extra_append_params: b.extra_append_params,
            infiniband_append_params: b.infiniband_append_params,
            image_base_url: None,
            unknown_action: UnknownKind::Local,
            discovery_kernel: None,
            discovery_ramdisk: None,
        }
    }
}

impl Default for IndexSection {
    fn default() -> Self {
        IndexSection {
            system_uuid_field: ExtraField("system_uuid".into()),
            fixed_ip_field: ExtraField("fixed_ip".into()),
            client_id_prefix: ClientIdPrefix(MELLANOX_CLIENT_ID_PREFIX),
        }
    }
}

/// A configuration the server cannot run with; the message says which key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Reads a TOML file; unknown keys are errors (a typo must not silently do nothing).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.boot_config()?;
        if let Some(u) = &self.public_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && crate::render::check_token("public_url", u, crate::render::Format::Grub).is_ok();
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "public_url",
                    message: format!("{u:?} is not a plain http(s) URL"),
                });
            }
        }
        if self.ironic.url.is_some() {
            self.ironic.auth().map_err(|e| ConfigError::Invalid {
                key: "ironic",
                message: e.to_string(),
            })?;
            self.ironic.subset().map_err(|e| ConfigError::Invalid {
                key: "ironic.subset",
                message: e.to_string(),
            })?;
            self.ironic
                .notifications
                .resolve()
                .map_err(|e| ConfigError::Invalid {
                    key: "ironic.notifications",
                    message: e.to_string(),
                })?;
        }
        if self.tftp_listen.is_empty() {
            return Err(ConfigError::Invalid {
                key: "tftp_listen",
                message: "at least one address is needed".into(),
            });
        }
        Ok(())
    }

    /// The boot-decision settings.
    pub fn boot_config(&self) -> Result<BootConfig, ConfigError> {
        let b = &self.boot;
        let unknown =
            match b.unknown_action {
                UnknownKind::Local => UnknownAction::LocalBoot,
                UnknownKind::Discovery => match (&b.discovery_kernel, &b.discovery_ramdisk) {
                    (Some(kernel), Some(ramdisk)) => UnknownAction::Discovery {
                        kernel: kernel.clone(),
                        ramdisk: ramdisk.clone(),
                    },
                    _ => return Err(ConfigError::Invalid {
                        key: "boot.unknown_action",
                        message:
                            "\"discovery\" needs boot.discovery_kernel and boot.discovery_ramdisk"
                                .into(),
                    }),
                },
            };
        let api = b.ipa_api_url.trim();
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "boot.ipa_api_url",
                message: format!("{api:?} is not an http(s) URL"),
            });
        }
        Ok(BootConfig {
            ipa_api_url: Some(api.to_owned()),
            kernel_append_params: b.kernel_append_params.clone(),
            ramdisk_params: b.ramdisk_params.clone(),
            extra_append_params: b.extra_append_params.clone(),
            infiniband_append_params: b.infiniband_append_params.clone(),
            image_base_url: b.image_base_url.clone(),
            unknown,
        })
    }

    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned())
    }

    /// Where the last good Ironic poll is kept.
    pub fn ironic_cache(&self) -> PathBuf {
        self.ironic
            .cache_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join(".ironic-cache.json"))
    }

    /// Static roots for TFTP, in search order.
    pub fn tftp_roots(&self) -> Vec<PathBuf> {
        std::iter::once(self.tftp_root.clone())
            .chain(self.extra_tftp_roots.iter().cloned())
            .collect()
    }

    /// Static roots for HTTP.
    pub fn http_roots(&self) -> Vec<PathBuf> {
        vec![self
            .http_root
            .clone()
            .unwrap_or_else(|| self.tftp_root.clone())]
    }

    /// The index settings.
    pub fn index_config(&self) -> IndexConfig {
        IndexConfig {
            system_uuid_key: self.index.system_uuid_field.0.clone(),
            fixed_ip_key: self.index.fixed_ip_field.0.clone(),
            add_all_ports: self.neutron.add_all_ports,
        }
    }

    /// Where ironpxe answers, for the DHCP output.
    pub fn dhcp_listeners(&self) -> crate::dhcp::Listeners {
        crate::dhcp::Listeners {
            public_url: self.public_url(),
            http_listen: self.http_listen,
            tftp_listen: self.tftp_listen.clone(),
            client_id_prefix: self.client_id_prefix(),
        }
    }

    /// `[dhcp]`'s boot choices, for `ironpxe dhcp` (whose flags override them).
    pub fn dhcp_choices(&self) -> crate::dhcp::DhcpChoices {
        let d = &self.dhcp;
        crate::dhcp::DhcpChoices {
            http_url: None,
            http_url6: d.http_url6.clone(),
            next_server: d.next_server,
            next_server6: d.next_server6,
            bios_boot: Some(d.bios_boot.clone()),
            uefi_boot: Some(d.uefi_boot.clone()),
            http_boot: Some(d.http_boot_loader.clone()),
            ipv6_range: d.ipv6_range,
            ironic_pxe: self.ironic_pxe.clone(),
        }
    }

    /// The image cache's settings, its policy included.
    pub fn image_cache_settings(&self) -> CacheSettings {
        CacheSettings {
            dir: self.image_cache_dir.clone(),
            cap_bytes: self.image_cache_mib << 20,
            read_timeout: Duration::from_secs(self.image_fetch_timeout_secs.max(1)),
            revalidate: Duration::from_secs(self.images.revalidate_secs),
            policy: self.image_policy(),
        }
    }

    /// The image policy: the `[images]` lists, or their defaults — `/var/lib/ironic` plus
    /// ironpxe's TFTP roots, HTTP root and image cache; any origin plus ironpxe's own HTTP
    /// server. The files holding secrets are refused whatever the lists say.
    pub fn image_policy(&self) -> ImagePolicy {
        let dirs: Vec<PathBuf> = match &self.images.file_url_allowed_paths {
            Some(list) => list.iter().map(|p| p.path().to_owned()).collect(),
            None => std::iter::once(PathBuf::from(IRONIC_IMAGE_DIR))
                .chain(self.tftp_roots())
                .chain(self.http_roots())
                .chain(std::iter::once(self.image_cache_dir.clone()))
                .collect(),
        };
        let rules = match &self.images.allowed_urls {
            Some(r) => r.clone(),
            None => UrlPolicy::default_rules(self.http_listen),
        };
        let mut files = FilePolicy::new(dirs);
        let secrets = [
            &self.admin.token_file,
            &self.ironic.password_file,
            &self.ironic.application_credential_secret_file,
        ];
        for f in secrets.into_iter().flatten() {
            files.refuse_file(f);
        }
        ImagePolicy {
            files,
            urls: UrlPolicy::new(rules, self.admin.listen),
        }
    }

    /// The client-id vendor prefix as bytes.
    pub fn client_id_prefix(&self) -> [u8; 12] {
        self.index.client_id_prefix.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_run_the_example() {
        let c = Config::default();
        c.validate().expect("defaults validate");
        assert_eq!(c.state_dir, PathBuf::from("examples/state"));
        assert_eq!(
            c.client_id_prefix(),
            crate::model::addr::MELLANOX_CLIENT_ID_PREFIX
        );
        assert_eq!(c.index_config().system_uuid_key, "system_uuid");
    }

    #[test]
    fn inspector_section_has_ironics_names_and_defaults() {
        use crate::inspect::{AddPorts, InspectorSettings, KeepPorts};
        assert_eq!(Config::default().inspector, InspectorSettings::default());
        let c: Config = toml::from_str("[inspector]\nkeep_ports = \"present\"\n").expect("toml");
        assert_eq!(c.inspector.keep_ports, KeepPorts::Present);
        assert_eq!(c.inspector.add_ports, AddPorts::Pxe);
        assert!(c.inspector.update_pxe_enabled);
        let bad = toml::from_str::<Config>("[inspector]\nadd_port = \"all\"\n").unwrap_err();
        assert!(bad.to_string().contains("add_port"), "{bad}");
    }

    #[test]
    fn shipped_production_sample_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ironpxe.toml");
        let c = Config::load(&p).expect("sample config loads");
        assert!(
            c.tftp_listen.len() >= 2,
            "one listen address per provisioning interface"
        );
    }

    #[test]
    fn a_bad_ironic_subset_stops_the_start_naming_the_key() {
        let load = |t: &str| toml::from_str::<Config>(t).expect("toml");
        let ok =
            load("[ironic]\nurl = \"http://127.0.0.1:6385\"\n[ironic.subset]\nshards = [\"s1\"]\n");
        assert!(ok.validate().is_ok());
        let err = load("[ironic]\nurl = \"http://i:6385\"\n[ironic.subset]\nshards = [\"a&b\"]\n")
            .validate()
            .expect_err("refused")
            .to_string();
        assert!(err.contains("ironic.subset.shards"), "{err}");
        let err = load(
            "[ironic]\nurl = \"http://i:6385\"\napi_version = \"1.40\"\n\
             [ironic.subset]\nconductor_groups = [\"row-a\"]\n",
        )
        .validate()
        .expect_err("refused")
        .to_string();
        assert!(err.contains("needs Ironic API 1.46"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let bad: Config = toml::from_str("[boot]\nunknown_action = \"discovery\"\n").expect("toml");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("boot.unknown_action"));
        // Typed values are refused while the file is read, the line and key shown.
        let bad = toml::from_str::<Config>("[index]\nsystem_uuid_field = \"properties.x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("system_uuid_field") && bad.contains("extra.<key>"),
            "{bad}"
        );
        let bad = toml::from_str::<Config>("[index]\nclient_id_prefix = \"ff:00\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("client_id_prefix") && bad.contains("12 colon-separated"),
            "{bad}"
        );
        let bad: Config = toml::from_str("[boot]\nipa_api_url = \"ironic:6385\"\n").expect("toml");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("boot.ipa_api_url"));
        let typo = toml::from_str::<Config>("stat_dir = \"x\"\n").unwrap_err();
        assert!(typo.to_string().contains("stat_dir"), "{typo}");
    }

    /// An interface-name zone becomes that interface's scope id when the file is read; an
    /// interface that does not exist, or a link-local address without a zone, is refused
    /// naming the key and what to write.
    #[test]
    fn listen_addresses_take_interface_zones_and_name_a_missing_interface() {
        let lo = interface_index(&"lo".parse().expect("name")).expect("lo exists");
        let c: Config = toml::from_str(
            "tftp_listen = [\"[fe80::1%lo]:69\", \"[fe80::2%7]:69\", \"[2001:db8::1]:69\", \"192.0.2.1:69\"]\n\
             http_listen = \"[fe80::1%lo]:8080\"\n[admin]\nlisten = \"[::1]:8081\"\n",
        )
        .expect("valid");
        let scope = |a: &SocketAddr| match a {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => 0,
        };
        let scopes: Vec<u32> = c.tftp_listen.iter().map(scope).collect();
        assert_eq!(scopes, [lo, 7, 0, 0]);
        assert_eq!(c.tftp_listen[0].port(), 69);
        assert_eq!(scope(&c.http_listen), lo);
        assert_eq!(c.admin.listen, Some("[::1]:8081".parse().expect("addr")));

        let missing = toml::from_str::<Config>("tftp_listen = [\"[fe80::1%ironpxe-no0]:69\"]\n")
            .expect_err("no such interface")
            .to_string();
        assert!(
            missing.contains("tftp_listen")
                && missing.contains("no network interface \"ironpxe-no0\"")
                && missing.contains("ip link"),
            "{missing}"
        );
        let bare = toml::from_str::<Config>("http_listen = \"[fe80::1]:80\"\n")
            .expect_err("link-local without a zone")
            .to_string();
        assert!(
            bare.contains("http_listen") && bare.contains("[fe80::1%eth1]:69"),
            "{bare}"
        );
        assert!(parse_listen("[fe80::1%lo]:69").is_ok());
        let flag = parse_listen("[fe80::1%ironpxe-no0]:69").expect_err("missing");
        assert!(flag.contains("ironpxe-no0"), "{flag}");
    }

    #[test]
    fn grub_prefixes_are_checked_when_the_config_is_read() {
        assert_eq!(Config::default().grub.prefixes, GrubPrefixes::Any);
        let c: Config = toml::from_str("[grub]\nprefixes = [\"/EFI/centos/\"]\n").expect("valid");
        assert_eq!(
            c.grub.prefixes,
            GrubPrefixes::Only(["EFI/centos".to_owned()].into())
        );
        let bad = toml::from_str::<Config>("[grub]\nprefixes = [\"/EFI/../x\"]\n")
            .expect_err("traversal")
            .to_string();
        assert!(bad.contains("prefixes") && bad.contains("`..`"), "{bad}");
        let bad = toml::from_str::<Config>("[grub]\nprefixes = \"/EFI/centos\"\n")
            .expect_err("not a list")
            .to_string();
        assert!(bad.contains("prefixes"), "{bad}");
    }

    #[test]
    fn the_images_section_is_checked_when_the_config_is_read() {
        let bad = toml::from_str::<Config>("[images]\nfile_url_allowed_paths = [\"srv/img\"]\n")
            .expect_err("relative");
        assert!(bad.to_string().contains("file_url_allowed_paths"), "{bad}");
        let bad = toml::from_str::<Config>(
            "[images]\nfile_url_allowed_paths = [\"/var/lib/ironic/../../etc\"]\n",
        )
        .expect_err("traversal");
        assert!(bad.to_string().contains("`..`"), "{bad}");
        let bad = toml::from_str::<Config>("[images]\nallowed_urls = [\"10.0.0.1/8\"]\n")
            .expect_err("host bits");
        assert!(bad.to_string().contains("allowed_urls"), "{bad}");
        let ok: Config = toml::from_str(
            "[images]\nfile_url_allowed_paths = []\nallowed_urls = [\"https://img.example.net/\"]\n",
        )
        .expect("valid");
        let p = ok.image_policy();
        assert!(
            p.files.check("/var/lib/ironic/k").is_err(),
            "empty list disables files"
        );
        assert!(p.urls.check_url("https://img.example.net/k").is_ok());

        let default = Config::default().image_policy();
        default
            .urls
            .check_url("http://127.0.0.1:8080/ipa/ipa.kernel")
            .expect("the shipped example fetches from ironpxe's own HTTP server");
        assert!(default
            .urls
            .check_url("http://127.0.0.1:8081/api/v1/nodes")
            .is_err());
        default
            .files
            .check("/var/lib/ironic/images/k")
            .expect("Ironic's default directory");
    }
}
