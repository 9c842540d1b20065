//! Neutron, read-only: the `extra_dhcp_opts` Ironic itself would set on each port.

use super::*;

/// Which options Ironic's boot interface for `node` hands out: iPXE (`tag:ipxe`), PXE, or
/// none; and whether over UEFI HTTP Boot (`http`, `http-ipxe`: option 60 and a URL, no TFTP
/// server). A node without `boot_interface` counts as iPXE (Ironic's default).
fn neutron_boot(node: &Node) -> Option<(bool, bool)> {
    let bi = node.boot_interface.as_deref().unwrap_or("ipxe");
    let http = bi == "http" || bi == "http-ipxe";
    if bi.contains("ipxe") {
        Some((true, http))
    } else if bi.contains("pxe") || bi == "http" {
        Some((false, http))
    } else {
        None
    }
}

/// Ironic's boot mode: a `boot_mode` capability (instance first), else `uefi` (its default).
fn uefi(node: &Node) -> bool {
    let caps = [
        node.instance_info.capabilities.as_ref(),
        node.properties.capabilities.as_ref(),
    ];
    caps.into_iter()
        .flatten()
        .find_map(|c| crate::model::boot::capability(c, "boot_mode"))
        .is_none_or(|m| m != "bios")
}

/// `--format neutron`: per provisioning port, the `extra_dhcp_opts` Ironic itself would set on
/// its Neutron port (`61` client-id for IB ports, then the boot options of
/// `pxe_utils.dhcp_options_for_instance`), as JSON. ironpxe never writes to Neutron. Boot file
/// names are the ones given here (Ironic's `[pxe]` bootfile settings should match them); the
/// PXE interface's `210` (TFTP path prefix) is left out: ironpxe has no TFTP root to name.
pub fn neutron(snap: &Snapshot, h: &Hosts, opts: &DhcpOptions) -> String {
    let mut ports = Vec::new();
    for e in &h.entries {
        let Some(node) = snap.node(&e.node).map(|n| &n.node) else {
            continue;
        };
        let opt = |name: &str, value: String| json!({"opt_name": name, "opt_value": value, "ip_version": 4});
        let mut dhcp_opts = Vec::new();
        let mut notes: Vec<String> = e.notes.iter().map(ToString::to_string).collect();
        // Verbatim, as Ironic passes it: any case, any spelling, even a non-string.
        if let Some(cid) = &e.option61 {
            dhcp_opts.push(json!({"opt_name": "61", "opt_value": cid}));
        }
        let boot = neutron_boot(node);
        let boot_file = match boot {
            Some((_, true)) => opts.http_boot_url(),
            _ if uefi(node) => opts.uefi_boot.to_string(),
            _ => opts.bios_boot.to_string(),
        };
        match boot {
            Some((true, _)) => {
                dhcp_opts.push(opt("tag:!ipxe,67", boot_file));
                dhcp_opts.push(opt("tag:ipxe,67", opts.http_url.boot_script()));
            }
            Some((false, _)) => dhcp_opts.push(opt("67", boot_file)),
            None => notes.push(
                "boot interface does not boot from the network: Ironic sets no boot options".into(),
            ),
        }
        if let Some((_, true)) = boot {
            dhcp_opts.push(opt("60", HTTP_CLIENT.into()));
        }
        match (boot, opts.next_server) {
            (Some((_, true)), _) => {}
            (Some(_), Some(tftp)) => {
                for name in ["66", "150", "server-ip-address"] {
                    dhcp_opts.push(opt(name, tftp.to_string()));
                }
            }
            (Some(_), None) => {
                notes.push("no next-server given: 66, 150 and server-ip-address left out".into())
            }
            (None, _) => {}
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
