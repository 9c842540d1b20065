//! dnsmasq: the main-config snippet (tags, boot logic) and one `dhcp-host` line per port.

use super::*;

/// The main-config snippet: client classification and boot files. Host entries go below it
/// or into a `--dhcp-hostsdir`; they never set tags (see the module notes).
pub fn dnsmasq_main(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = String::new();
    let server = match opts.next_server {
        Some(ip) => format!(",,{ip}"),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "# ironpxe: dnsmasq main configuration (include once, next to your dhcp-range)\n\
         # RFC 4390 (IPoIB) clients are tagged by their client-id's vendor prefix here, never in\n\
         # host entries: dnsmasq 2.90 crashes on SIGHUP once a client matched a hostsdir entry\n\
         # carrying set:<tag>."
    );
    for prefix in all_prefixes(h, opts) {
        let _ = writeln!(
            s,
            "dhcp-match=set:{TAG_IB},option:client-id,{}",
            hex_colon(&prefix)
        );
    }
    let _ = writeln!(s, "dhcp-broadcast=tag:{TAG_IB}");
    let _ = writeln!(s, "dhcp-userclass=set:{TAG_IPXE},iPXE");
    let _ = writeln!(s, "dhcp-match=set:{TAG_IPXE},175");
    for arch in UEFI_ARCHES {
        let _ = writeln!(s, "dhcp-match=set:{TAG_EFI},option:client-arch,{arch}");
    }
    // UEFI HTTP Boot: a vendor class starting HTTPClient, or an HTTP client architecture.
    let _ = writeln!(s, "dhcp-vendorclass=set:{TAG_HTTP},{HTTP_CLIENT}");
    for arch in HTTP_BOOT_ARCHES {
        let _ = writeln!(s, "dhcp-match=set:{TAG_HTTP},option:client-arch,{arch}");
    }
    let _ = writeln!(
        s,
        "dhcp-boot=tag:{TAG_IPXE},{}{server}",
        opts.http_url.boot_script()
    );
    // An absolute URL and no TFTP server: HTTP Boot ignores siaddr, 66 and 150.
    let _ = writeln!(
        s,
        "dhcp-boot=tag:!{TAG_IPXE},tag:{TAG_HTTP},{}",
        opts.http_boot_url()
    );
    let _ = writeln!(
        s,
        "dhcp-option-force=tag:!{TAG_IPXE},tag:{TAG_HTTP},option:vendor-class,{HTTP_CLIENT}"
    );
    let _ = writeln!(
        s,
        "dhcp-boot=tag:!{TAG_IPXE},tag:!{TAG_HTTP},tag:{TAG_EFI},{}{server}",
        opts.uefi_boot
    );
    let _ = writeln!(
        s,
        "dhcp-boot=tag:!{TAG_IPXE},tag:!{TAG_HTTP},tag:!{TAG_EFI},{}{server}",
        opts.bios_boot
    );
    if let Some(v6) = &opts.v6 {
        dnsmasq_v6(&mut s, opts, v6);
    }
    s
}

/// DHCPv6: router advertisements and a stateful range (PXEv6 firmware needs an address, not
/// SLAAC), then option 59 by client: iPXE, HTTP Boot (vendor class, enterprise 343, sent
/// back), PXEv6.
fn dnsmasq_v6(s: &mut String, opts: &DhcpOptions, v6: &Dhcp6Options) {
    let _ = writeln!(
        s,
        "\n# ironpxe: DHCPv6 (option 59 URLs only; the dhcp-host lines below apply where dnsmasq\n\
         # learns a client's MAC: DUID-LL/LLT, the same link, or a relay sending option 79)"
    );
    match &v6.range {
        Some(r) => {
            let _ = writeln!(s, "enable-ra");
            let _ = writeln!(s, "dhcp-range={},{},{},1h", r.start, r.end, r.prefix_len);
        }
        None => {
            let _ = writeln!(
                s,
                "# no ipv6_range: add a stateful dhcp-range=<start>,<end>,64 and enable-ra"
            );
        }
    }
    let _ = writeln!(
        s,
        "dhcp-vendorclass=set:{TAG_HTTP},enterprise:{HTTP_CLIENT_ENTERPRISE},{HTTP_CLIENT}"
    );
    let _ = writeln!(
        s,
        "dhcp-option=tag:{TAG_IPXE},option6:bootfile-url,{}",
        v6.http_url.boot_script()
    );
    let _ = writeln!(
        s,
        "dhcp-option=tag:!{TAG_IPXE},tag:{TAG_HTTP},option6:bootfile-url,{}",
        http_file_url(&v6.http_url, &opts.http_boot)
    );
    let _ = writeln!(
        s,
        "dhcp-option-force=tag:!{TAG_IPXE},tag:{TAG_HTTP},option6:16,{}",
        hex_colon(&vendor_class6())
    );
    let _ = writeln!(
        s,
        "dhcp-option=tag:!{TAG_IPXE},tag:!{TAG_HTTP},option6:bootfile-url,{}",
        v6.tftp_url(&opts.uefi_boot)
    );
}

fn all_prefixes(h: &Hosts, opts: &DhcpOptions) -> BTreeSet<[u8; 12]> {
    h.prefixes
        .iter()
        .chain(&opts.client_id_prefixes)
        .copied()
        .collect()
}

/// One `dhcp-host` value (the text right of `=`, as a hostsdir file holds it):
/// `[id:<client-id>,][<mac>,][<ip>,][<hostname>]`. One line carries both identities of an IB
/// port, so dnsmasq sees one host with one address, not a duplicate address.
pub fn dnsmasq_host(e: &HostEntry) -> String {
    let mut fields = Vec::new();
    if let Some(cid) = e.client_id() {
        fields.push(format!("id:{cid}"));
    }
    if let Some(mac) = e.mac() {
        fields.push(mac.to_string());
    }
    if let Some(ip) = e.ip {
        fields.push(ip.to_string());
    }
    if let Some(name) = &e.hostname {
        fields.push(name.to_string());
    }
    fields.join(",")
}

/// `--format dnsmasq`: the main snippet, then every host as a `dhcp-host=` line.
pub fn dnsmasq(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = dnsmasq_main(h, opts);
    s.push_str(
        "\n# ironpxe: host entries (sync_hostsdir writes the same, without \"dhcp-host=\", one file per node)\n",
    );
    for e in &h.entries {
        s.push_str(&entry_comment(e));
        let _ = writeln!(s, "dhcp-host={}", dnsmasq_host(e));
    }
    s
}
