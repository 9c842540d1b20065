//! Neutron, read-only: the `extra_dhcp_opts` Ironic itself would set on each port.
//!
//! Unlike ironpxe's own DHCP outputs (one configuration for every client, the boot file chosen
//! by what the client says it is: its architecture, iPXE or not, HTTP Boot or not), Ironic
//! sets options per node on its Neutron ports: the boot file comes from the node's boot
//! interface, boot mode and `cpu_arch` and from Ironic's `[pxe]` settings, whatever firmware
//! then asks. The rule is [`crate::model::ironic_pxe`]'s; this file only lays it out as JSON.

use super::*;
use crate::model::ironic_pxe::{dhcp_options, IpVersion, IronicPxe, OptionsError, OPT_CLIENT_ID};

impl DhcpOptions {
    /// The Ironic settings `--format neutron` uses: `[ironic_pxe]` (and the flags that set it),
    /// with `tftp_server`, `http_url` and `my_ipv6` left unset taken from ironpxe's own
    /// next-server, HTTP URL and IPv6 TFTP address.
    pub fn ironic_settings(&self) -> IronicPxe {
        let mut s = self.ironic_pxe.clone();
        s.tftp_server = s.tftp_server.or(self.next_server.map(IpAddr::V4));
        s.http_url = s
            .http_url
            .or_else(|| Some(self.http_url.as_str().to_owned()));
        s.my_ipv6 = s.my_ipv6.or(self.v6.as_ref().map(|v| v.tftp_server));
        s
    }

    /// The IP versions whose options a Neutron port carries: Ironic keeps those of the
    /// versions of the port's fixed IPs; ironpxe knows no Neutron port, so IPv4 always and
    /// IPv6 when its own DHCPv6 output is on.
    fn neutron_versions(&self) -> &'static [IpVersion] {
        match self.v6 {
            Some(_) => &[IpVersion::V4, IpVersion::V6],
            None => &[IpVersion::V4],
        }
    }
}

/// Why a port listed by `[neutron] add_all_ports` carries only option 61.
const NO_FIXED_IPS: &str = "no fixed IPs on its Neutron port: Ironic sets no boot options on it (dhcp/neutron.py update_port_dhcp_opts)";

/// The boot options for `node` in every version in `versions`. Ironic computes IPv4 and IPv6
/// before it sets anything, so a failure of either means none at all.
fn boot_options(
    node: &Node,
    pxe: &IronicPxe,
    versions: &[IpVersion],
) -> Result<Vec<Value>, OptionsError> {
    let v4 = dhcp_options(node, pxe, IpVersion::V4)?;
    let v6 = dhcp_options(node, pxe, IpVersion::V6)?;
    Ok(v4
        .into_iter()
        .chain(v6)
        .filter(|o| versions.contains(&o.ip_version))
        .map(|o| json!({"opt_name": o.name, "opt_value": o.value, "ip_version": o.ip_version.number()}))
        .collect())
}

/// `--format neutron`: per provisioning port, the `extra_dhcp_opts` Ironic itself would set on
/// its Neutron port, as JSON: `61` (the client-id, set when the port is created, without
/// `ip_version` as Ironic sends it) for IB ports, then `pxe_utils.dhcp_options_for_instance`'s
/// boot options. ironpxe never writes to Neutron.
pub fn neutron(snap: &Snapshot, h: &Hosts, opts: &DhcpOptions) -> String {
    let pxe = opts.ironic_settings();
    let versions = opts.neutron_versions();
    let mut ports = Vec::new();
    for e in &h.entries {
        let Some(node) = snap.node(&e.node).map(|n| &n.node) else {
            continue;
        };
        let mut dhcp_opts = Vec::new();
        let mut notes: Vec<String> = e.notes.iter().map(ToString::to_string).collect();
        // Verbatim, as Ironic passes it: any case, any spelling, even a non-string.
        if let Some(cid) = &e.option61 {
            dhcp_opts.push(json!({"opt_name": OPT_CLIENT_ID, "opt_value": cid}));
        }
        // A port listed by add_all_ports has a Neutron port without fixed IPs: Ironic's
        // `update_port_dhcp_opts` keeps no boot option of any IP version for it.
        if e.notes.contains(&Note::NotPxeEnabled) {
            notes.push(NO_FIXED_IPS.into());
        } else {
            match boot_options(node, &pxe, versions) {
                Ok(boot) => dhcp_opts.extend(boot),
                Err(why) => notes.push(why.to_string()),
            }
        }
        let mut port = Map::new();
        port.insert("node".into(), Value::String(e.node.to_string()));
        if let Some(name) = &e.hostname {
            port.insert("hostname".into(), Value::String(name.to_string()));
        }
        port.insert("port".into(), Value::String(e.port.to_string()));
        port.insert("infiniband".into(), Value::Bool(e.is_infiniband()));
        if e.notes.contains(&Note::NotPxeEnabled) {
            // add_all_ports: Ironic creates this Neutron port without an address.
            port.insert("fixed_ips".into(), json!([]));
        }
        port.insert("extra_dhcp_opts".into(), Value::Array(dhcp_opts));
        if !notes.is_empty() {
            port.insert("notes".into(), json!(notes));
        }
        ports.push(Value::Object(port));
    }
    let mut text = serde_json::to_string_pretty(&Value::Array(ports))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

/// What the operator should know about the Neutron settings themselves.
pub(super) fn neutron_warnings(opts: &DhcpOptions) -> Vec<String> {
    let pxe = opts.ironic_settings();
    let mut w = Vec::new();
    if pxe.ipxe_script_name() != BOOT_SCRIPT {
        w.push(format!(
            "neutron: [ironic_pxe] ipxe_boot_script {:?}: iPXE clients are sent to <http_url>/{:?}, but ironpxe serves its entry script as {BOOT_SCRIPT}",
            shown(&pxe.ipxe_boot_script),
            shown(pxe.ipxe_script_name())
        ));
    }
    if pxe.tftp_server.is_none() {
        w.push(format!("neutron: {}", OptionsError::NoTftpServer));
    }
    w
}
