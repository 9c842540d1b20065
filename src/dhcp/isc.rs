//! ISC dhcpd: `host` blocks and the class logic that picks a boot file; `dhcpd -6` boot logic.

use super::*;

/// `--format isc`: boot logic and one `host` declaration per identity, for `dhcpd.conf`.
/// An IB port's client-id host forces broadcast replies (`always-broadcast on`). HTTP Boot
/// clients get option 60 (forced into their parameter request list: dhcpd sends only what
/// a client asks for) and an absolute URL, with no `next-server`.
pub fn isc(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# ironpxe: ISC dhcpd boot logic and host declarations (include in dhcpd.conf)"
    );
    let _ = writeln!(
        s,
        "option ironpxe-client-arch code 93 = unsigned integer 16;"
    );
    let arch = |arches: &[u16]| {
        arches
            .iter()
            .map(|a| {
                format!(
                    "option ironpxe-client-arch = {}",
                    hex_colon(&a.to_be_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let server = match opts.next_server {
        Some(ip) => format!("  next-server {ip};\n"),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "if exists user-class and option user-class = \"iPXE\" {{\n  filename \"{}\";\n{server}\
         }} elsif substring(option vendor-class-identifier, 0, {}) = \"{HTTP_CLIENT}\" or {} {{\n  \
         option vendor-class-identifier \"{HTTP_CLIENT}\";\n  \
         if exists dhcp-parameter-request-list {{\n    \
         option dhcp-parameter-request-list = concat(option dhcp-parameter-request-list, 3c);\n  }}\n  \
         filename \"{}\";\n\
         }} elsif {} {{\n  filename \"{}\";\n{server}}} else {{\n  filename \"{}\";\n{server}}}",
        opts.http_url.boot_script(),
        HTTP_CLIENT.len(),
        arch(&HTTP_BOOT_ARCHES),
        opts.http_boot_url(),
        arch(&UEFI_ARCHES),
        opts.uefi_boot,
        opts.bios_boot
    );
    for e in &h.entries {
        let host = |s: &mut String, suffix: &str, ident: String, extra: &str| {
            let _ = writeln!(s, "\nhost {HOSTSDIR_PREFIX}{}{suffix} {{", e.port.raw());
            s.push_str(&indent(&entry_comment(e)));
            let _ = writeln!(s, "  {ident};");
            s.push_str(extra);
            if let Some(ip) = e.ip {
                let _ = writeln!(s, "  fixed-address {ip};");
            }
            if let Some(name) = &e.hostname {
                let _ = writeln!(s, "  option host-name \"{name}\";");
            }
            s.push_str("}\n");
        };
        if let Some(cid) = e.client_id() {
            host(
                &mut s,
                "-cid",
                format!("option dhcp-client-identifier {cid}"),
                "  always-broadcast on;\n",
            );
        }
        if let Some(mac) = e.mac() {
            host(&mut s, "", format!("hardware ethernet {mac}"), "");
        }
    }
    s
}

/// `--format isc6`: option 59 by client for a `dhcpd -6` configuration, and a host per MAC
/// (dhcpd -6 learns a MAC only from a DUID-LL/LLT or a relay's option 79; an RFC 4390
/// client-id has no DHCPv6 counterpart ironpxe could write, see the module notes).
pub fn isc6(h: &Hosts, opts: &DhcpOptions) -> String {
    let mut s = String::new();
    let Some(v6) = &opts.v6 else {
        return "# ironpxe: no IPv6 TFTP address, so no DHCPv6 configuration\n".into();
    };
    let _ = writeln!(
        s,
        "# ironpxe: ISC dhcpd -6 boot logic and host declarations (include in dhcpd6.conf)\n\
         option dhcp6.ironpxe-user-class code 15 = string;\n\
         option dhcp6.ironpxe-vendor-class code 16 = {{integer 32, integer 16, string}};"
    );
    // A user class is length-prefixed (2 bytes), a vendor class has enterprise and length first.
    let _ = writeln!(
        s,
        "if substring(option dhcp6.ironpxe-user-class, 2, 4) = \"iPXE\" {{\n  \
         option dhcp6.bootfile-url \"{}\";\n\
         }} elsif substring(option dhcp6.ironpxe-vendor-class, 6, {}) = \"{HTTP_CLIENT}\" {{\n  \
         option dhcp6.bootfile-url \"{}\";\n  \
         option dhcp6.ironpxe-vendor-class {HTTP_CLIENT_ENTERPRISE} {} \"{HTTP_CLIENT}\";\n\
         }} else {{\n  option dhcp6.bootfile-url \"{}\";\n}}",
        v6.http_url.boot_script(),
        HTTP_CLIENT.len(),
        http_file_url(&v6.http_url, &opts.http_boot),
        HTTP_CLIENT.len(),
        v6.tftp_url(&opts.uefi_boot)
    );
    for e in &h.entries {
        let Some(mac) = e.mac() else { continue };
        let _ = writeln!(s, "\nhost {HOSTSDIR_PREFIX}{}-v6 {{", e.port.raw());
        s.push_str(&indent(&entry_comment(e)));
        let _ = writeln!(s, "  hardware ethernet {mac};");
        s.push_str("}\n");
    }
    s
}

fn indent(comment: &str) -> String {
    comment.lines().map(|l| format!("  {l}\n")).collect()
}
