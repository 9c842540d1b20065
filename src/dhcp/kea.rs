//! Kea (DHCPv4): reservations and client classes as JSON.

use super::*;

/// What Kea cannot do for InfiniBand, said in the fragment and on stderr.
pub const KEA_LIMITS: &str = "Kea's raw sockets handle Ethernet only: RFC 4390 IPoIB clients (hardware type 32) need \"dhcp-socket-type\": \"udp\" or a relay, and Kea cannot force broadcast replies (no dhcp-broadcast); IPoIB firmware sets the broadcast flag itself";

/// `--format kea`: a `Dhcp4` fragment with boot classes and global reservations. An IB port has
/// two reservations (client-id, hw-address) with one address, which needs
/// `ip-reservations-unique: false`.
pub fn kea(h: &Hosts, opts: &DhcpOptions) -> String {
    let classes = classes(opts);
    let reservations = reservations(h);
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
    dhcp4.insert("client-classes".into(), classes);
    dhcp4.insert("reservations".into(), Value::Array(reservations));
    let mut text = serde_json::to_string_pretty(&json!({ "Dhcp4": dhcp4 }))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

/// `--format kea6`: a `Dhcp6` fragment: option 59 by client class and, per MAC, a global
/// reservation (Kea learns a DHCPv6 client's MAC from its DUID-LL/LLT, a relay's option 79
/// or its link-local address; see the module notes for InfiniBand).
pub fn kea6(h: &Hosts, opts: &DhcpOptions) -> String {
    let Some(v6) = &opts.v6 else {
        return "{\"comment\": \"ironpxe: no IPv6 TFTP address, so no DHCPv6 configuration\"}\n"
            .into();
    };
    let url = |data: String| json!([{"name": "bootfile-url", "data": data}]);
    let mut http_options = url(http_file_url(&v6.http_url, &opts.http_boot));
    if let Some(list) = http_options.as_array_mut() {
        list.push(json!({
            "code": 16,
            "csv-format": false,
            "data": vendor_class6().iter().map(|b| format!("{b:02X}")).collect::<String>(),
            "always-send": true,
        }));
    }
    let classes = json!([
        {
            "name": TAG_IPXE,
            "test": "substring(option[15].hex,2,4) == 'iPXE'",
            "option-data": url(v6.http_url.boot_script()),
        },
        {
            "name": TAG_HTTP,
            "test": format!(
                "not member('{TAG_IPXE}') and substring(option[16].hex,6,{}) == '{HTTP_CLIENT}'",
                HTTP_CLIENT.len()
            ),
            "option-data": http_options,
        },
        {
            "name": TAG_EFI,
            "test": format!("not member('{TAG_IPXE}') and not member('{TAG_HTTP}')"),
            "option-data": url(v6.tftp_url(&opts.uefi_boot)),
        },
    ]);
    let reservations: Vec<Value> = h
        .entries
        .iter()
        .filter_map(|e| {
            let mac = e.mac()?;
            let mut r = Map::new();
            r.insert("hw-address".into(), Value::String(mac.to_string()));
            if let Some(name) = &e.hostname {
                r.insert("hostname".into(), Value::String(name.to_string()));
            }
            r.insert(
                "comment".into(),
                Value::String(format!("ironpxe: node {} port {}", e.node, e.port)),
            );
            Some(Value::Object(r))
        })
        .collect();
    let dhcp6 = json!({
        "comment": "ironpxe: merge into your Dhcp6 configuration (subnet6, interfaces-config)",
        "host-reservation-identifiers": ["hw-address", "duid"],
        "reservations-global": true,
        "reservations-in-subnet": true,
        "client-classes": classes,
        "reservations": reservations,
    });
    let mut text = serde_json::to_string_pretty(&json!({ "Dhcp6": dhcp6 }))
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

/// The boot classes, most specific first: iPXE, UEFI HTTP Boot, UEFI PXE, BIOS PXE.
fn classes(opts: &DhcpOptions) -> Value {
    let arch = |arches: &[u16]| {
        arches
            .iter()
            .map(|a| format!("option[93].hex == 0x{a:04x}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let with_server = |mut class: Value| {
        if let (Some(ip), Some(c)) = (opts.next_server, class.as_object_mut()) {
            c.insert("next-server".into(), Value::String(ip.to_string()));
        }
        class
    };
    json!([
        with_server(json!({
            "name": TAG_IPXE,
            "test": "substring(option[77].hex,0,4) == 'iPXE' or option[175].exists",
            "boot-file-name": opts.http_url.boot_script(),
        })),
        {
            "name": TAG_HTTP,
            "test": format!(
                "not member('{TAG_IPXE}') and (substring(option[60].hex,0,{}) == '{HTTP_CLIENT}' or {})",
                HTTP_CLIENT.len(),
                arch(&HTTP_BOOT_ARCHES)
            ),
            "boot-file-name": opts.http_boot_url(),
            "option-data": [
                {"name": "vendor-class-identifier", "data": HTTP_CLIENT, "always-send": true}
            ],
        },
        with_server(json!({
            "name": TAG_EFI,
            "test": format!("not member('{TAG_IPXE}') and not member('{TAG_HTTP}') and ({})", arch(&UEFI_ARCHES)),
            "boot-file-name": opts.uefi_boot.as_str(),
        })),
        with_server(json!({
            "name": "ironpxe-bios",
            "test": format!("not member('{TAG_IPXE}') and not member('{TAG_HTTP}') and not member('{TAG_EFI}')"),
            "boot-file-name": opts.bios_boot.as_str(),
        })),
    ])
}

/// One reservation per identity: an IB port's client-id and its IB MAC share one address.
fn reservations(h: &Hosts) -> Vec<Value> {
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
    reservations
}
