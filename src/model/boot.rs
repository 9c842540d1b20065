//! Boot decisions: which kernel, ramdisk and parameters a node gets, decided from its provision
//! state the way Ironic's PXE and iPXE boot interfaces decide it. Pure: no I/O.

use std::fmt;

use crate::model::node::{Node, ProvisionState};

/// Why a ramdisk is booted: it picks the images and the callback parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    Deploy,
    Clean,
    Service,
    Inspect,
    Rescue,
    /// An unknown machine sent to an inspection ramdisk so it can enrol itself.
    Discovery,
}

/// What the served config makes the machine do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Boot an agent ramdisk (ironic-python-agent) for the purpose.
    Ramdisk(Purpose),
    /// Boot the instance's own kernel and ramdisk (ramdisk deploy, or a net-booted partition
    /// image).
    Instance,
    /// Boot the instance's ISO (ramdisk deploy with `boot_iso`): iPXE only.
    InstanceIso,
    /// Leave network boot so the firmware moves on to the local disk.
    LocalBoot,
}

impl Action {
    /// Every action, in the order summaries list them.
    pub const ALL: [Action; 9] = [
        Action::Ramdisk(Purpose::Deploy),
        Action::Ramdisk(Purpose::Clean),
        Action::Ramdisk(Purpose::Service),
        Action::Ramdisk(Purpose::Inspect),
        Action::Ramdisk(Purpose::Rescue),
        Action::Ramdisk(Purpose::Discovery),
        Action::Instance,
        Action::InstanceIso,
        Action::LocalBoot,
    ];

    /// The name templates and logs use: `deploy`, `clean`, `service`, `inspect`, `rescue`,
    /// `discovery`, `instance`, `instance_iso`, `local`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Ramdisk(Purpose::Deploy) => "deploy",
            Action::Ramdisk(Purpose::Clean) => "clean",
            Action::Ramdisk(Purpose::Service) => "service",
            Action::Ramdisk(Purpose::Inspect) => "inspect",
            Action::Ramdisk(Purpose::Rescue) => "rescue",
            Action::Ramdisk(Purpose::Discovery) => "discovery",
            Action::Instance => "instance",
            Action::InstanceIso => "instance_iso",
            Action::LocalBoot => "local",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an image comes from, after Glance ids have been turned into URLs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImageSource {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A local file (`file://` URL or absolute path) on the ironpxe host.
    File(String),
}

impl ImageSource {
    /// Reads an Ironic image reference: an http(s) URL, `file://` URL, absolute path, or a
    /// Glance image id (which becomes `<image_base_url>/<id>`).
    pub fn resolve(reference: &str, image_base_url: Option<&str>) -> Result<Self, BootError> {
        let r = reference.trim();
        let bad = |why: &str| BootError::BadImage {
            reference: reference.to_owned(),
            why: why.to_owned(),
        };
        if r.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(path) = r.strip_prefix("file://") {
            return if path.starts_with('/') {
                Ok(ImageSource::File(path.to_owned()))
            } else {
                Err(bad("a file:// URL needs an absolute path"))
            };
        }
        if r.starts_with("http://") || r.starts_with("https://") {
            return Ok(ImageSource::Url(r.to_owned()));
        }
        if r.starts_with('/') {
            return Ok(ImageSource::File(r.to_owned()));
        }
        if r.contains("://") {
            return Err(bad("only http, https and file URLs are supported"));
        }
        if !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("not a URL, an absolute path or a Glance image id"));
        }
        match image_base_url {
            Some(base) => Ok(ImageSource::Url(format!(
                "{}/{r}",
                base.trim_end_matches('/')
            ))),
            None => Err(bad(
                "a Glance image id needs `image_base_url` in the config",
            )),
        }
    }

    /// The reference as written (URL or path).
    pub fn as_str(&self) -> &str {
        match self {
            ImageSource::Url(s) | ImageSource::File(s) => s,
        }
    }

    /// A stable short key naming this image in the image cache (FNV-1a, 64 bits, hex): the
    /// same source always maps to the same cache path, across restarts and hosts.
    pub fn cache_key(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The last path segment (without query), used as the file name in cache paths that go
    /// into PXELINUX and GRUB configs: reduced to `[A-Za-z0-9._+-]` and 64 bytes, so that no
    /// name can carry a separator such as PXELINUX's `,` between initrds.
    pub fn file_name(&self) -> String {
        let s = self.as_str();
        let s = s.split(['?', '#']).next().unwrap_or(s);
        let name: String = s
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(64)
            .map(|c| match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '+' | '-' => c,
                _ => '_',
            })
            .collect();
        match name.trim_matches('.') {
            "" => "image".into(),
            _ => name,
        }
    }
}

/// What to do with a machine that matches no node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum UnknownAction {
    /// Exit network boot (Ironic's behaviour: it writes nothing for unknown machines).
    #[default]
    LocalBoot,
    /// Boot an inspection ramdisk so the machine can be discovered and enrolled.
    Discovery { kernel: String, ramdisk: String },
}

/// The operator's settings that shape boot decisions (Ironic's `[pxe]`/`[deploy]` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// Ironic API URL handed to the agent (`ipa-api-url`), Ironic's
    /// `[service_catalog] endpoint_override`.
    pub ipa_api_url: Option<String>,
    /// Ironic's `[pxe] kernel_append_params`; also what `%default%` expands to.
    pub kernel_append_params: String,
    /// Parameters every agent ramdisk gets first (Ironic's templates hard-code these).
    pub ramdisk_params: String,
    /// Extra parameters for every agent ramdisk (e.g. `ipa-debug=1`).
    pub extra_append_params: String,
    /// Extra parameters only when the booting port is InfiniBand (e.g. loading `ib_ipoib`
    /// early).
    pub infiniband_append_params: String,
    /// Where Glance image ids are fetched from.
    pub image_base_url: Option<String>,
    pub unknown: UnknownAction,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            ipa_api_url: None,
            kernel_append_params: "nofb vga=normal".into(),
            ramdisk_params: "selinux=0 troubleshoot=0 text".into(),
            extra_append_params: String::new(),
            infiniband_append_params: String::new(),
            image_base_url: None,
            unknown: UnknownAction::LocalBoot,
        }
    }
}

/// The outcome of a boot decision: everything a template needs except per-request facts
/// (BOOTIF and server URLs), which the renderer adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub kernel: Option<ImageSource>,
    pub ramdisk: Option<ImageSource>,
    /// Kernel parameters in order, one token each (never containing white space).
    pub params: Vec<String>,
    /// One line for logs and `ironpxe render`: why this action.
    pub reason: String,
}

/// A node whose state asks for a boot the node's data cannot supply.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BootError {
    #[error("node {node} in {state:?} needs {field}, which is not set")]
    Missing {
        node: String,
        state: String,
        field: &'static str,
    },
    #[error("image reference {reference:?}: {why}")]
    BadImage { reference: String, why: String },
    #[error("{what} needs `ipa_api_url` in the config (Ironic's API URL for the agent)")]
    NoApiUrl { what: &'static str },
}

/// True when Ironic's boot interface for this node boots it from the network. A node without
/// `boot_interface` (a hand-written state file) counts as network-booted.
pub fn boots_from_network(node: &Node) -> bool {
    match node.boot_interface.as_deref() {
        None => true,
        Some(bi) => bi.contains("pxe") || bi == "http",
    }
}

/// The action Ironic's PXE/iPXE boot interface would configure for the node's state.
pub fn action_for(node: &Node) -> Action {
    use ProvisionState as S;
    if !boots_from_network(node) {
        return Action::LocalBoot;
    }
    let ramdisk_deploy = node.deploy_interface.as_deref() == Some("ramdisk");
    match node.provision_state {
        S::Deploying | S::WaitCallBack | S::DeployHold if ramdisk_deploy => instance_action(node),
        S::Deploying | S::WaitCallBack | S::DeployHold => Action::Ramdisk(Purpose::Deploy),
        S::Cleaning | S::CleanWait | S::CleanHold => Action::Ramdisk(Purpose::Clean),
        S::Servicing | S::ServiceWait | S::ServiceHold => Action::Ramdisk(Purpose::Service),
        S::Inspecting | S::InspectWait => Action::Ramdisk(Purpose::Inspect),
        S::Rescuing | S::RescueWait => Action::Ramdisk(Purpose::Rescue),
        S::Active if ramdisk_deploy || wants_netboot(node) => instance_action(node),
        _ => Action::LocalBoot,
    }
}

fn instance_action(node: &Node) -> Action {
    let ii = &node.instance_info;
    if ii.kernel.is_some() && ii.ramdisk.is_some() {
        Action::Instance
    } else if ii.boot_iso.is_some() {
        Action::InstanceIso
    } else {
        Action::LocalBoot
    }
}

/// `boot_option:netboot` in instance or node capabilities (dict, JSON text or `k:v,k:v`), for
/// a partition image (a whole-disk image always boots locally).
fn wants_netboot(node: &Node) -> bool {
    let whole_disk = node.driver_internal_info.is_whole_disk_image == Some(true)
        || node.instance_info.image_type.as_deref() == Some("whole-disk");
    let caps = [
        node.instance_info.capabilities.as_ref(),
        node.properties.capabilities.as_ref(),
    ];
    !whole_disk
        && caps
            .into_iter()
            .flatten()
            .any(|c| capability(c, "boot_option").as_deref() == Some("netboot"))
}

/// Reads one capability from any of the spellings Ironic accepts.
pub fn capability(caps: &serde_json::Value, key: &str) -> Option<String> {
    use serde_json::Value;
    match caps {
        Value::Object(map) => map.get(key).and_then(|v| v.as_str()).map(str::to_owned),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => capability(&v, key),
            _ => s
                .split(',')
                .filter_map(|kv| kv.split_once(':'))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned()),
        },
        _ => None,
    }
}

/// Decides what a known node gets. `infiniband` says whether the booting port is an IB port.
pub fn decide(node: &Node, infiniband: bool, cfg: &BootConfig) -> Result<Decision, BootError> {
    let action = action_for(node);
    let state = node.provision_state.as_str().to_owned();
    let name = node_label(node);
    let missing = |field| BootError::Missing {
        node: name.clone(),
        state: state.clone(),
        field,
    };
    let image = |r: &Option<String>, field| -> Result<ImageSource, BootError> {
        let r = r.as_deref().ok_or_else(|| missing(field))?;
        ImageSource::resolve(r, cfg.image_base_url.as_deref())
    };
    let di = &node.driver_info;
    let ii = &node.instance_info;
    let append = append_params(node, cfg);
    let mut d = Decision {
        action,
        kernel: None,
        ramdisk: None,
        params: Vec::new(),
        reason: format!("provision state {state}: {action}"),
    };
    match action {
        Action::Ramdisk(purpose) => {
            let (k, r) = if purpose == Purpose::Rescue {
                (
                    image(&di.rescue_kernel, "driver_info.rescue_kernel")?,
                    image(&di.rescue_ramdisk, "driver_info.rescue_ramdisk")?,
                )
            } else {
                (
                    image(&di.deploy_kernel, "driver_info.deploy_kernel")?,
                    image(&di.deploy_ramdisk, "driver_info.deploy_ramdisk")?,
                )
            };
            d.kernel = Some(k);
            d.ramdisk = Some(r);
            d.params = ramdisk_params(purpose, &append, infiniband, cfg)?;
        }
        Action::Instance => {
            d.kernel = Some(image(&ii.kernel, "instance_info.kernel")?);
            d.ramdisk = Some(image(&ii.ramdisk, "instance_info.ramdisk")?);
            let root = match node.driver_internal_info.root_uuid_or_disk_id.as_deref() {
                Some(id) if node.deploy_interface.as_deref() != Some("ramdisk") => {
                    format!("root=UUID={id} ro")
                }
                _ => "root=/dev/ram0".to_owned(),
            };
            d.params = tokens([root.as_str(), "text", append.as_str()]);
        }
        Action::InstanceIso => {
            d.kernel = Some(image(&ii.boot_iso, "instance_info.boot_iso")?);
        }
        Action::LocalBoot => {}
    }
    Ok(d)
}

/// Decides what a machine that matches no node gets.
pub fn decide_unknown(cfg: &BootConfig) -> Result<Decision, BootError> {
    match &cfg.unknown {
        UnknownAction::LocalBoot => Ok(Decision {
            action: Action::LocalBoot,
            kernel: None,
            ramdisk: None,
            params: Vec::new(),
            reason: "no node matches: local boot, unknown_action = local".into(),
        }),
        UnknownAction::Discovery { kernel, ramdisk } => {
            let base = cfg.image_base_url.as_deref();
            let purpose = Purpose::Discovery;
            Ok(Decision {
                action: Action::Ramdisk(purpose),
                kernel: Some(ImageSource::resolve(kernel, base)?),
                ramdisk: Some(ImageSource::resolve(ramdisk, base)?),
                params: ramdisk_params(purpose, &cfg.kernel_append_params, false, cfg)?,
                reason: "no node matches: discovery ramdisk, unknown_action = discovery".into(),
            })
        }
    }
}

/// Ironic's order: per-node `kernel_append_params` in `instance_info`, then `driver_info`,
/// with `%default%` expanded; else the configured default.
fn append_params(node: &Node, cfg: &BootConfig) -> String {
    let own = node
        .instance_info
        .kernel_append_params
        .as_deref()
        .or(node.driver_info.kernel_append_params.as_deref());
    match own {
        Some(p) => p.replace("%default%", &cfg.kernel_append_params),
        None => cfg.kernel_append_params.clone(),
    }
}

/// An agent ramdisk's parameters: base, append, extra, the callback, then IB-only ones.
fn ramdisk_params(
    purpose: Purpose,
    append: &str,
    infiniband: bool,
    cfg: &BootConfig,
) -> Result<Vec<String>, BootError> {
    let api = cfg.ipa_api_url.as_deref().map(|u| u.trim_end_matches('/'));
    let callback = match (purpose, api) {
        (Purpose::Inspect | Purpose::Discovery, Some(api)) => {
            format!("ipa-inspection-callback-url={api}/v1/continue_inspection")
        }
        (_, Some(api)) => format!("ipa-api-url={api}"),
        (_, None) => {
            return Err(BootError::NoApiUrl {
                what: "an agent ramdisk",
            })
        }
    };
    let ib = if infiniband {
        cfg.infiniband_append_params.as_str()
    } else {
        ""
    };
    Ok(tokens([
        cfg.ramdisk_params.as_str(),
        append,
        cfg.extra_append_params.as_str(),
        callback.as_str(),
        ib,
    ]))
}

fn tokens<'a>(parts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    parts
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

fn node_label(node: &Node) -> String {
    match &node.name {
        Some(n) => format!("{n} ({})", node.uuid),
        None => node.uuid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node::StateDoc;
    use serde_json::json;

    #[test]
    fn every_action_is_listed_once_under_its_own_name() {
        let names: std::collections::HashSet<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(Action::ALL[0].to_string(), "deploy");
    }

    fn node(state: &str, extra_fields: serde_json::Value) -> Node {
        let mut v = json!({
            "uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123",
            "name": "n1",
            "provision_state": state,
            "boot_interface": "ipxe",
            "deploy_interface": "direct",
            "driver_info": {
                "deploy_kernel": "http://img/ipa.kernel",
                "deploy_ramdisk": "http://img/ipa.initramfs",
                "rescue_kernel": "http://img/rescue.kernel",
                "rescue_ramdisk": "http://img/rescue.initramfs"
            }
        });
        if let (Some(obj), Some(more)) = (v.as_object_mut(), extra_fields.as_object()) {
            for (k, val) in more {
                obj.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("test node")
    }

    fn cfg() -> BootConfig {
        BootConfig {
            ipa_api_url: Some("http://ironic:6385/".into()),
            extra_append_params: "ipa-debug=1".into(),
            infiniband_append_params: "rd.driver.pre=ib_ipoib".into(),
            ..BootConfig::default()
        }
    }

    /// Every provision state Ironic defines, with what a default (ipxe/direct) node gets.
    #[test]
    fn action_for_every_known_state() {
        use Action::*;
        use Purpose::*;
        let expected: &[(&str, Action)] = &[
            ("enroll", LocalBoot),
            ("verifying", LocalBoot),
            ("manageable", LocalBoot),
            ("available", LocalBoot),
            ("active", LocalBoot),
            ("deploying", Ramdisk(Deploy)),
            ("wait call-back", Ramdisk(Deploy)),
            ("deploy failed", LocalBoot),
            ("deploy hold", Ramdisk(Deploy)),
            ("deleting", LocalBoot),
            ("deleted", LocalBoot),
            ("cleaning", Ramdisk(Clean)),
            ("clean wait", Ramdisk(Clean)),
            ("clean failed", LocalBoot),
            ("clean hold", Ramdisk(Clean)),
            ("error", LocalBoot),
            ("rebuild", LocalBoot),
            ("inspecting", Ramdisk(Inspect)),
            ("inspect wait", Ramdisk(Inspect)),
            ("inspect failed", LocalBoot),
            ("adopting", LocalBoot),
            ("adopt failed", LocalBoot),
            ("rescue", LocalBoot),
            ("rescuing", Ramdisk(Rescue)),
            ("rescue wait", Ramdisk(Rescue)),
            ("rescue failed", LocalBoot),
            ("unrescuing", LocalBoot),
            ("unrescue failed", LocalBoot),
            ("servicing", Ramdisk(Service)),
            ("service wait", Ramdisk(Service)),
            ("service failed", LocalBoot),
            ("service hold", Ramdisk(Service)),
            ("a state from the future", LocalBoot),
        ];
        assert_eq!(
            expected.len(),
            ProvisionState::KNOWN.len() + 1,
            "table covers every state"
        );
        for (state, action) in expected {
            assert_eq!(
                action_for(&node(state, json!({}))),
                *action,
                "state {state:?}"
            );
        }
    }

    #[test]
    fn nodes_not_network_booted_are_never_given_a_ramdisk() {
        for bi in ["fake", "redfish-virtual-media", "noop"] {
            let n = node("wait call-back", json!({"boot_interface": bi}));
            assert_eq!(action_for(&n), Action::LocalBoot, "boot_interface {bi}");
        }
        for bi in ["pxe", "ipxe", "http", "http-ipxe", "ilo-ipxe"] {
            let n = node("wait call-back", json!({"boot_interface": bi}));
            assert_eq!(action_for(&n), Action::Ramdisk(Purpose::Deploy), "{bi}");
        }
    }

    #[test]
    fn deploy_params_follow_ironic_order() {
        let d = decide(&node("wait call-back", json!({})), false, &cfg()).expect("decides");
        assert_eq!(
            d.params.join(" "),
            "selinux=0 troubleshoot=0 text nofb vga=normal ipa-debug=1 ipa-api-url=http://ironic:6385"
        );
        assert_eq!(
            d.kernel,
            Some(ImageSource::Url("http://img/ipa.kernel".into()))
        );
        assert_eq!(
            d.ramdisk,
            Some(ImageSource::Url("http://img/ipa.initramfs".into()))
        );
    }

    #[test]
    fn infiniband_params_only_for_ib_ports() {
        let n = node("clean wait", json!({}));
        let ib = decide(&n, true, &cfg()).expect("decides");
        let eth = decide(&n, false, &cfg()).expect("decides");
        assert_eq!(
            ib.params.last().map(String::as_str),
            Some("rd.driver.pre=ib_ipoib")
        );
        assert!(!eth.params.iter().any(|p| p.contains("ib_ipoib")));
    }

    #[test]
    fn inspection_uses_the_inspection_callback() {
        let d = decide(&node("inspect wait", json!({})), false, &cfg()).expect("decides");
        assert!(d.params.contains(
            &"ipa-inspection-callback-url=http://ironic:6385/v1/continue_inspection".into()
        ));
        assert!(!d.params.iter().any(|p| p.starts_with("ipa-api-url")));
    }

    #[test]
    fn rescue_uses_rescue_images() {
        let d = decide(&node("rescue wait", json!({})), false, &cfg()).expect("decides");
        assert_eq!(
            d.kernel,
            Some(ImageSource::Url("http://img/rescue.kernel".into()))
        );
        assert_eq!(
            d.ramdisk,
            Some(ImageSource::Url("http://img/rescue.initramfs".into()))
        );
        let after = decide(&node("rescue", json!({})), false, &cfg()).expect("decides");
        assert_eq!(after.action, Action::LocalBoot);
    }

    #[test]
    fn per_node_append_params_with_default_expansion() {
        let n = node(
            "deploying",
            json!({"instance_info": {"kernel_append_params": "%default% console=ttyS0"},
                   "driver_info": {"deploy_kernel": "/k", "deploy_ramdisk": "/r",
                                   "kernel_append_params": "ignored"}}),
        );
        let d = decide(&n, false, &cfg()).expect("decides");
        assert_eq!(&d.params[3..6], ["nofb", "vga=normal", "console=ttyS0"]);
        let n = node(
            "deploying",
            json!({"driver_info": {"deploy_kernel": "/k", "deploy_ramdisk": "/r",
                                   "kernel_append_params": "console=ttyS1"}}),
        );
        let d = decide(&n, false, &cfg()).expect("decides");
        assert_eq!(d.params[3], "console=ttyS1");
        assert!(!d.params.contains(&"vga=normal".to_owned()));
    }

    #[test]
    fn missing_images_and_api_url_are_named() {
        let n = node(
            "deploying",
            json!({"driver_info": {"deploy_kernel": "http://k"}}),
        );
        let err = decide(&n, false, &cfg()).unwrap_err();
        assert!(
            err.to_string().contains("driver_info.deploy_ramdisk"),
            "{err}"
        );
        let err = decide(&node("deploying", json!({})), false, &BootConfig::default()).unwrap_err();
        assert!(err.to_string().contains("ipa_api_url"), "{err}");
    }

    #[test]
    fn ramdisk_deploy_and_netboot_boot_the_instance() {
        let ii = json!({"kernel": "http://img/k", "ramdisk": "http://img/r"});
        let n = node(
            "active",
            json!({"deploy_interface": "ramdisk", "instance_info": ii}),
        );
        let d = decide(&n, false, &cfg()).expect("decides");
        assert_eq!(d.action, Action::Instance);
        assert_eq!(&d.params[..2], ["root=/dev/ram0", "text"]);

        let ii = json!({"kernel": "http://img/k", "ramdisk": "http://img/r",
                        "capabilities": "{\"boot_option\": \"netboot\"}"});
        let dii = json!({"root_uuid_or_disk_id": "abcd", "is_whole_disk_image": false});
        let n = node(
            "active",
            json!({"instance_info": ii, "driver_internal_info": dii}),
        );
        let d = decide(&n, false, &cfg()).expect("decides");
        assert_eq!(d.action, Action::Instance);
        assert_eq!(&d.params[..3], ["root=UUID=abcd", "ro", "text"]);

        let n = node(
            "active",
            json!({"properties": {"capabilities": "boot_option:netboot"},
                                      "instance_info": {"image_type": "whole-disk"}}),
        );
        assert_eq!(
            action_for(&n),
            Action::LocalBoot,
            "whole-disk images boot locally"
        );

        let n = node(
            "active",
            json!({"deploy_interface": "ramdisk",
                                      "instance_info": {"boot_iso": "http://img/x.iso"}}),
        );
        assert_eq!(action_for(&n), Action::InstanceIso);
    }

    #[test]
    fn unknown_machines_follow_the_configured_action() {
        assert_eq!(
            decide_unknown(&cfg()).expect("local").action,
            Action::LocalBoot
        );
        let c = BootConfig {
            unknown: UnknownAction::Discovery {
                kernel: "http://img/ipa.kernel".into(),
                ramdisk: "file:///srv/ipa.initramfs".into(),
            },
            ..cfg()
        };
        let d = decide_unknown(&c).expect("discovery");
        assert_eq!(d.action, Action::Ramdisk(Purpose::Discovery));
        assert_eq!(
            d.ramdisk,
            Some(ImageSource::File("/srv/ipa.initramfs".into()))
        );
        assert!(d
            .params
            .iter()
            .any(|p| p.ends_with("/v1/continue_inspection")));
    }

    #[test]
    fn image_references() {
        let glance = Some("http://glance:9292/v2/images/");
        assert_eq!(
            ImageSource::resolve("1be26c0b-03f2-4d2e-ae87-c02d7f33c123", glance),
            Ok(ImageSource::Url(
                "http://glance:9292/v2/images/1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into()
            ))
        );
        assert!(ImageSource::resolve("abc", None).is_err());
        assert!(ImageSource::resolve("ftp://x/y", glance).is_err());
        assert!(ImageSource::resolve("file://relative", glance).is_err());
        assert!(ImageSource::resolve("a b", glance).is_err());
        let img = ImageSource::resolve("https://x/a/ipa.kernel?sig=1", None).expect("url");
        assert_eq!(img.file_name(), "ipa.kernel");
        let odd = ImageSource::Url("http://x/a,b%20c..;d?x=1".into());
        assert_eq!(odd.file_name(), "a_b_20c.._d");
        assert_eq!(ImageSource::Url("http://x/..".into()).file_name(), "image");
        assert_eq!(img.cache_key().len(), 16);
        assert_ne!(img.cache_key(), ImageSource::File("/a".into()).cache_key());
        assert_eq!(img.cache_key(), img.clone().cache_key());
    }

    /// The real parked nodes decide as Ironic decided for them (see tests/fixtures/ironic).
    #[test]
    fn parked_sample_nodes() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ironic/nodes-parked.json"
        ))
        .expect("fixture");
        let doc = StateDoc::from_slice(&bytes).expect("parses");
        let by_name = |n: &str| {
            doc.nodes
                .iter()
                .find(|x| x.name.as_deref() == Some(n))
                .map(|n| action_for(n))
        };
        use Action::*;
        assert_eq!(by_name("n-deploy-ipxe"), Some(Ramdisk(Purpose::Deploy)));
        assert_eq!(by_name("n-ib-pxe"), Some(Ramdisk(Purpose::Deploy)));
        assert_eq!(by_name("n-clean-auto"), Some(Ramdisk(Purpose::Clean)));
        assert_eq!(by_name("n-clean-manual"), Some(Ramdisk(Purpose::Clean)));
        assert_eq!(by_name("n-inspect"), Some(Ramdisk(Purpose::Inspect)));
        assert_eq!(by_name("n-rescue"), Some(Ramdisk(Purpose::Rescue)));
        assert_eq!(by_name("n-active"), Some(LocalBoot));
        assert_eq!(by_name("n-available"), Some(LocalBoot));
        assert_eq!(by_name("n-manageable"), Some(LocalBoot));
    }
}
