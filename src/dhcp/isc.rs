//! ISC dhcpd: `host` blocks and the class logic that picks a boot file.

use super::*;

/// `--format isc`: boot logic and one `host` declaration per identity, for `dhcpd.conf`.
/// An IB port's client-id host forces broadcast replies (`always-broadcast on`).
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
    let arch = UEFI_ARCHES
        .iter()
        .map(|a| {
            format!(
                "option ironpxe-client-arch = {}",
                hex_colon(&a.to_be_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let _ = writeln!(
        s,
        "if exists user-class and option user-class = \"iPXE\" {{\n  filename \"{}\";\n}} elsif {arch} {{\n  filename \"{}\";\n}} else {{\n  filename \"{}\";\n}}",
        opts.http_url.boot_script(),
        opts.uefi_boot,
        opts.bios_boot
    );
    if let Some(ip) = opts.next_server {
        let _ = writeln!(s, "next-server {ip};");
    }
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

fn indent(comment: &str) -> String {
    comment.lines().map(|l| format!("  {l}\n")).collect()
}
