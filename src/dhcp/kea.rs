//! Kea (DHCPv4): reservations and client classes as JSON.

use super::*;

/// What Kea cannot do for InfiniBand, said in the fragment and on stderr.
pub const KEA_LIMITS: &str = "Kea's raw sockets handle Ethernet only: RFC 4390 IPoIB clients (hardware type 32) need \"dhcp-socket-type\": \"udp\" or a relay, and Kea cannot force broadcast replies (no dhcp-broadcast); IPoIB firmware sets the broadcast flag itself";

/// `--format kea`: a `Dhcp4` fragment with boot classes and global reservations. An IB port has
/// two reservations (client-id, hw-address) with one address, which needs
/// `ip-reservations-unique: false`.
pub fn kea(h: &Hosts, opts: &DhcpOptions) -> String {
    let arch = UEFI_ARCHES
        .iter()
        .map(|a| format!("option[93].hex == 0x{a:04x}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let classes = json!([
        {
            "name": TAG_IPXE,
            "test": "substring(option[77].hex,0,4) == 'iPXE' or option[175].exists",
            "boot-file-name": opts.http_url.boot_script(),
        },
        {
            "name": TAG_EFI,
            "test": format!("not member('{TAG_IPXE}') and ({arch})"),
            "boot-file-name": opts.uefi_boot.as_str(),
        },
        {
            "name": "ironpxe-bios",
            "test": format!("not member('{TAG_IPXE}') and not member('{TAG_EFI}')"),
            "boot-file-name": opts.bios_boot.as_str(),
        },
    ]);
    let mut reservations = Vec::new();
    for e in &h.entries {
        let mut add = |key: &str, value: String| {
            let mut r = Map::new();
            r.insert(key.into(), Value::String(value));
            if let Some(ip) = e.ip {
                r.insert("ip-address".into(), Value::String(ip.to_string()));
            }
            if let Some(name) = &e.hostname {
                r.insert("hostname".into(), Value::String(name.to_string()));
            }
            let mut comment = format!("ironpxe: node {} port {}", e.node, e.port);
            for n in &e.notes {
                let _ = write!(comment, "; {n}");
            }
            r.insert("comment".into(), Value::String(comment));
            reservations.push(Value::Object(r));
        };
        if let Some(cid) = e.client_id() {
            add("client-id", cid.to_string());
        }
        if let Some(mac) = e.mac() {
            add("hw-address", mac.to_string());
        }
    }
    let mut dhcp4 = Map::new();
    dhcp4.insert(
        "comment".into(),
        Value::String(format!(
            "ironpxe: merge into your Dhcp4 configuration. {KEA_LIMITS}"
        )),
    );
    dhcp4.insert(
        "host-reservation-identifiers".into(),
        json!(["hw-address", "client-id"]),
    );
    dhcp4.insert("reservations-global".into(), Value::Bool(true));
    dhcp4.insert("reservations-in-subnet".into(), Value::Bool(true));
    dhcp4.insert("ip-reservations-unique".into(), Value::Bool(false));
    if let Some(ip) = opts.next_server {
        dhcp4.insert("next-server".into(), Value::String(ip.to_string()));
    }
    dhcp4.insert("client-classes".into(), classes);
    dhcp4.insert("reservations".into(), Value::Array(reservations));
    let mut text = serde_json::to_string_pretty(&json!({ "Dhcp4": dhcp4 }))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}
