use super::*;
use crate::model::node::StateDoc;
use crate::state::{IndexConfig, Store, Update};
use std::sync::Arc;

const IB_UUID: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const ETH_UUID: &str = "54ccbcf7-e036-4d44-91be-397df22a5ca5";
const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
const IB_MAC: &str = "7c:fe:90:29:26:52";
const ETH_MAC: &str = "52:54:00:12:34:56";

fn snap(json: &str) -> Arc<Snapshot> {
    let store = Store::new(IndexConfig::default());
    let doc = StateDoc::from_slice(json.as_bytes()).expect("state parses");
    store.apply(vec![(
        crate::state::source::dir::source_id("t.json"),
        Update::Replace(doc),
    )]);
    store.current()
}

/// A node with `ports` (JSON objects), name and boot interface given as JSON values.
fn node(uuid: &str, name: &str, boot: &str, ports: &[String]) -> String {
    format!(
        r#"{{"uuid": "{uuid}", "name": {name}, "boot_interface": {boot}, "ports": [{}]}}"#,
        ports.join(",")
    )
}

fn port(mac: &str, extra: &str) -> String {
    format!(r#"{{"address": "{mac}", "extra": {{{extra}}}}}"#)
}

/// The IB node (client-id, fixed IP `ip`), no boot interface.
fn ib_node_at(ip: &str) -> String {
    node(
        IB_UUID,
        r#""ib-node-1""#,
        "null",
        &[port(
            IB_MAC,
            &format!(r#""client-id": "{CID}", "fixed_ip": "{ip}""#),
        )],
    )
}

fn listing(nodes: &[String]) -> Arc<Snapshot> {
    snap(&format!(r#"{{"nodes": [{}]}}"#, nodes.join(",")))
}

/// The IB node (client-id, fixed IP) and the Ethernet node (fixed IP).
fn two_nodes() -> Arc<Snapshot> {
    listing(&[
        node(
            IB_UUID,
            r#""ib-node-1""#,
            r#""pxe""#,
            &[port(
                IB_MAC,
                &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
            )],
        ),
        node(
            ETH_UUID,
            r#""eth-node-1""#,
            r#""ipxe""#,
            &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
        ),
    ])
}

fn opts() -> DhcpOptions {
    let mut o = DhcpOptions::new(HttpUrl::new("http://192.0.2.1:8080/").expect("url"));
    o.next_server = Some(Ipv4Addr::new(192, 0, 2, 7));
    o
}

/// [`opts`] with DHCPv6 on: TFTP and HTTP on 2001:db8::7, a stateful range.
fn opts6() -> DhcpOptions {
    let mut o = opts();
    o.v6 = Some(Dhcp6Options {
        tftp_server: "2001:db8::7".parse().expect("ip"),
        http_url: HttpUrl::new("http://[2001:db8::7]:8080").expect("url"),
        range: Some("2001:db8::100,2001:db8::1ff".parse().expect("range")),
    });
    o
}

fn mac(s: &str) -> Mac {
    Mac::parse(s).expect("mac")
}

fn host_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("dhcp-host="))
        .collect()
}

#[test]
fn formats_parse_by_name() {
    for f in DhcpFormat::ALL {
        assert_eq!(f.name().parse::<DhcpFormat>(), Ok(f));
    }
    assert!(matches!(
        "pxelinux".parse::<DhcpFormat>(),
        Err(DhcpError::UnknownFormat(_))
    ));
}

#[test]
fn boot_files_and_urls_are_validated() {
    for ok in [
        "pxelinux.0",
        "snponly.efi",
        "ipxe/undionly.kpxe",
        "grub+x64.efi",
    ] {
        assert_eq!(BootFile::new(ok).expect(ok).as_str(), ok);
    }
    let long = "a".repeat(128);
    for bad in [
        "",
        "-x",
        "a,b",
        "a b",
        "a\nb",
        "a\"b",
        "a#b",
        "a;b",
        long.as_str(),
    ] {
        assert!(BootFile::new(bad).is_err(), "{bad:?} accepted");
    }
    let u = HttpUrl::new(" http://192.0.2.1:8080/ ").expect("url");
    assert_eq!(u.as_str(), "http://192.0.2.1:8080");
    assert_eq!(u.boot_script(), "http://192.0.2.1:8080/boot.ipxe");
    assert!(HttpUrl::new("https://[2001:db8::1]:8443/pxe?a=1&b=%20").is_ok());
    let long = format!("http://{}", "a".repeat(120));
    for bad in [
        "ftp://x",
        "http://",
        "http:///x",
        "192.0.2.1",
        "http://a,b",
        "http://a b",
        "http://a\nb",
        "http://a\"",
        "http://a#b",
        "http://a;b",
        "http://a{b}",
        "http://a\\b",
        long.as_str(),
    ] {
        assert!(HttpUrl::new(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn hostnames_are_sanitized_to_one_safe_label() {
    let cases = [
        ("ib-node-1", Some("ib-node-1")),
        ("Node_01.Example.COM", Some("node-01-example-com")),
        ("  spaced   out  ", Some("spaced-out")),
        ("3600", Some("node-3600")),
        ("12h", Some("node-12h")),
        ("ignore", Some("node-ignore")),
        ("IGNORE", Some("node-ignore")),
        ("infinite", Some("node-infinite")),
        ("-lead", Some("lead")),
        ("ünïcode", Some("n-code")),
        (
            "x,set:evil\ndhcp-option=3",
            Some("x-set-evil-dhcp-option-3"),
        ),
        ("a\"; }\nhost evil {", Some("a-host-evil")),
        ("", None),
        ("---", None),
        ("日本", None),
    ];
    for (name, want) in cases {
        assert_eq!(
            Hostname::sanitize(name).as_ref().map(Hostname::as_str),
            want,
            "{name:?}"
        );
    }
    let long = Hostname::sanitize(&format!("{}-{}", "a".repeat(62), "b".repeat(10))).expect("long");
    assert_eq!(long.as_str(), "a".repeat(62));
    let digits = Hostname::sanitize(&"9".repeat(80)).expect("digits");
    assert_eq!(digits.as_str().len(), 63);
    assert!(digits.as_str().starts_with("node-9"));
}

#[test]
fn ethernet_and_infiniband_ports_get_typed_entries() {
    let h = hosts(&two_nodes());
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    assert_eq!(h.entries.len(), 2);
    let eth = &h.entries[0];
    assert_eq!(eth.node.to_string(), ETH_UUID);
    assert_eq!(eth.ids, PortIds::Ethernet(mac(ETH_MAC)));
    assert_eq!(dnsmasq_host(eth), "52:54:00:12:34:56,192.0.2.20,eth-node-1");
    let ib = &h.entries[1];
    assert!(ib.is_infiniband());
    assert_eq!(ib.client_id().map(|c| c.to_string()).as_deref(), Some(CID));
    assert_eq!(ib.mac(), Some(mac(IB_MAC)));
    assert_eq!(
        dnsmasq_host(ib),
        format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1")
    );
    assert_eq!(
        h.prefixes.iter().copied().collect::<Vec<_>>(),
        vec![MELLANOX_CLIENT_ID_PREFIX]
    );
}

#[test]
fn bad_client_id_gets_ib_mac_only_with_note_and_warning() {
    let s = listing(&[node(
        IB_UUID,
        r#""ib""#,
        "null",
        &[port(IB_MAC, r#""client-id": "ff:00:zz\nset:x""#)],
    )]);
    let h = hosts(&s);
    let e = &h.entries[0];
    assert_eq!(
        e.ids,
        PortIds::Infiniband {
            client_id: None,
            ib_mac: Some(mac(IB_MAC))
        }
    );
    assert_eq!(e.notes, vec![Note::BadClientId]);
    assert_eq!(dnsmasq_host(e), format!("{IB_MAC},ib"));
    assert_eq!(h.warnings.len(), 1);
    assert!(
        h.warnings[0].contains("unusable extra.client-id"),
        "{}",
        h.warnings[0]
    );
    assert!(!h.warnings[0].contains('\n'), "raw text escaped");
    let text = dnsmasq(&h, &opts());
    assert!(text.contains("# extra.client-id did not parse"), "{text}");
    assert!(
        !text.contains("zz"),
        "raw client-id never reaches the file:\n{text}"
    );
}

#[test]
fn entry_without_ip_or_name_is_identity_only() {
    let s = listing(&[node(
        IB_UUID,
        "null",
        "null",
        &[port(IB_MAC, &format!(r#""client-id": "{CID}""#))],
    )]);
    let e = &hosts(&s).entries[0];
    assert_eq!((e.ip, e.hostname.clone()), (None, None));
    assert_eq!(dnsmasq_host(e), format!("id:{CID},{IB_MAC}"));
}

#[test]
fn duplicates_follow_the_index_lower_uuid_wins() {
    let low = "00000000-0000-4000-8000-000000000001";
    let high = "ffffffff-0000-4000-8000-000000000002";
    let s = listing(&[
        node(
            high,
            r#""high""#,
            "null",
            &[port(
                IB_MAC,
                &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
            )],
        ),
        node(
            low,
            r#""low""#,
            "null",
            &[port(
                IB_MAC,
                &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
            )],
        ),
    ]);
    let h = hosts(&s);
    assert_eq!(h.entries.len(), 1, "{:?}", h.entries);
    assert_eq!(h.entries[0].node.to_string(), low);
    assert!(
        h.warnings.iter().any(|w| w.contains(high)),
        "{:?}",
        h.warnings
    );
    // An Ethernet port with the IB port's 6 bytes wins the MAC; the IB port keeps its client-id.
    let s = listing(&[
        node(
            low,
            r#""eth""#,
            "null",
            &[port(IB_MAC, r#""fixed_ip": "192.0.2.20""#)],
        ),
        node(
            high,
            r#""ib""#,
            "null",
            &[port(
                IB_MAC,
                &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.20""#),
            )],
        ),
    ]);
    let h = hosts(&s);
    let ib = h.entries.iter().find(|e| e.is_infiniband()).expect("ib");
    assert_eq!(ib.mac(), None);
    assert_eq!(ib.ip, None, "the fixed IP went to the lower UUID");
    assert!(ib.notes.contains(&Note::MacTaken));
    assert!(ib
        .notes
        .contains(&Note::IpTaken(Ipv4Addr::new(192, 0, 2, 20))));
    assert_eq!(dnsmasq_host(ib), format!("id:{CID},ib"));
}

#[test]
fn ports_without_pxe_are_left_out() {
    let s = snap(&format!(
        r#"{{"uuid": "{ETH_UUID}", "ports": [{{"address": "{ETH_MAC}", "pxe_enabled": false}}]}}"#
    ));
    assert!(hosts(&s).entries.is_empty());
}

#[test]
fn dnsmasq_main_tags_ib_by_prefix_and_boots_by_client_type() {
    let other = "ff:00:00:00:00:00:02:00:00:15:4d:00:11:22:33:44:55:66:77:88";
    let s = listing(&[node(
        ETH_UUID,
        r#""n""#,
        "null",
        &[port(
            "11:22:33:66:77:88",
            &format!(r#""client-id": "{other}""#),
        )],
    )]);
    let h = hosts(&s);
    let main = dnsmasq_main(&h, &opts());
    assert!(main.contains(
        "dhcp-match=set:ironpxe-ib,option:client-id,ff:00:00:00:00:00:02:00:00:02:c9:00\n"
    ));
    assert!(main.contains(
        "dhcp-match=set:ironpxe-ib,option:client-id,ff:00:00:00:00:00:02:00:00:15:4d:00\n"
    ));
    for line in [
        "dhcp-broadcast=tag:ironpxe-ib",
        "dhcp-userclass=set:ironpxe-ipxe,iPXE",
        "dhcp-match=set:ironpxe-ipxe,175",
        "dhcp-match=set:ironpxe-efi,option:client-arch,7",
        "dhcp-match=set:ironpxe-efi,option:client-arch,9",
        "dhcp-match=set:ironpxe-efi,option:client-arch,11",
        "dhcp-vendorclass=set:ironpxe-http,HTTPClient",
        "dhcp-match=set:ironpxe-http,option:client-arch,15",
        "dhcp-match=set:ironpxe-http,option:client-arch,16",
        "dhcp-match=set:ironpxe-http,option:client-arch,19",
        "dhcp-boot=tag:ironpxe-ipxe,http://192.0.2.1:8080/boot.ipxe,,192.0.2.7",
        "dhcp-boot=tag:!ironpxe-ipxe,tag:ironpxe-http,http://192.0.2.1:8080/snponly.efi",
        "dhcp-option-force=tag:!ironpxe-ipxe,tag:ironpxe-http,option:vendor-class,HTTPClient",
        "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-http,tag:ironpxe-efi,snponly.efi,,192.0.2.7",
        "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-http,tag:!ironpxe-efi,pxelinux.0,,192.0.2.7",
    ] {
        assert!(main.lines().any(|l| l == line), "{line} missing:\n{main}");
    }
    let mut o = opts();
    o.next_server = None;
    o.bios_boot = BootFile::new("undionly.kpxe").expect("file");
    let main = dnsmasq_main(&h, &o);
    assert!(main.lines().any(
        |l| l == "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-http,tag:!ironpxe-efi,undionly.kpxe"
    ));
    assert!(!main.contains(",,"), "{main}");
}

#[test]
fn dnsmasq_output_is_main_snippet_then_untagged_hosts() {
    let text = dnsmasq(&hosts(&two_nodes()), &opts());
    let hosts = host_lines(&text);
    assert_eq!(
        hosts,
        vec![
            "52:54:00:12:34:56,192.0.2.20,eth-node-1".to_owned(),
            format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1"),
        ]
    );
    assert!(hosts
        .iter()
        .all(|l| !l.contains("set:") && !l.contains("tag:")));
    let first_host = text.find("dhcp-host=").expect("hosts");
    assert!(text.rfind("dhcp-boot=").expect("boot") < first_host);
}

#[test]
fn isc_declares_one_host_per_identity() {
    let text = isc(&hosts(&two_nodes()), &opts());
    assert!(text.contains("option ironpxe-client-arch code 93 = unsigned integer 16;"));
    assert!(text.contains(
        "if exists user-class and option user-class = \"iPXE\" {\n  filename \"http://192.0.2.1:8080/boot.ipxe\";"
    ));
    assert!(text.contains(
        "} elsif option ironpxe-client-arch = 00:07 or option ironpxe-client-arch = 00:09 or option ironpxe-client-arch = 00:0b {\n  filename \"snponly.efi\";\n  next-server 192.0.2.7;\n}"
    ), "{text}");
    assert!(text.contains("} else {\n  filename \"pxelinux.0\";\n  next-server 192.0.2.7;\n}"));
    assert!(text.contains(
        "} elsif substring(option vendor-class-identifier, 0, 10) = \"HTTPClient\" or option ironpxe-client-arch = 00:0f or option ironpxe-client-arch = 00:10 or option ironpxe-client-arch = 00:13 {\n  option vendor-class-identifier \"HTTPClient\";\n"
    ), "{text}");
    let http_branch = text
        .split("option vendor-class-identifier \"HTTPClient\";")
        .nth(1)
        .and_then(|b| b.split("} elsif").next())
        .expect("HTTP branch");
    assert!(http_branch.contains("filename \"http://192.0.2.1:8080/snponly.efi\";"));
    assert!(!http_branch.contains("next-server"), "{http_branch}");
    let cid_host = format!(
        "host ironpxe-7cfe90292652-cid {{\n  # node {IB_UUID} port {IB_MAC} (InfiniBand: RFC 4390 client-id and upstream-iPXE IB MAC)\n  option dhcp-client-identifier {CID};\n  always-broadcast on;\n  fixed-address 192.0.2.10;\n  option host-name \"ib-node-1\";\n}}"
    );
    assert!(text.contains(&cid_host), "{text}");
    assert!(text.contains(
        "host ironpxe-7cfe90292652 {\n  # node d962231e-c2c4-415e-a7f1-1b765be00bda port 7c:fe:90:29:26:52 (InfiniBand: RFC 4390 client-id and upstream-iPXE IB MAC)\n  hardware ethernet 7c:fe:90:29:26:52;\n  fixed-address 192.0.2.10;"
    ));
    assert!(text.contains(
        "host ironpxe-525400123456 {\n  # node 54ccbcf7-e036-4d44-91be-397df22a5ca5 port 52:54:00:12:34:56 (Ethernet)\n  hardware ethernet 52:54:00:12:34:56;\n  fixed-address 192.0.2.20;\n  option host-name \"eth-node-1\";\n}"
    ));
    assert_eq!(text.matches("always-broadcast").count(), 1);
    assert_eq!(text.matches('{').count(), text.matches('}').count());
}

#[test]
fn kea_reserves_both_ib_identities_with_one_address() {
    let h = hosts(&two_nodes());
    let v: Value = serde_json::from_str(&kea(&h, &opts())).expect("json");
    let d = &v["Dhcp4"];
    assert_eq!(d["ip-reservations-unique"], false);
    assert!(
        d.get("next-server").is_none(),
        "only PXE classes get a TFTP server"
    );
    assert!(d["comment"]
        .as_str()
        .expect("comment")
        .contains("dhcp-socket-type"));
    let r = d["reservations"].as_array().expect("reservations");
    assert_eq!(r.len(), 3);
    let by = |k: &str, v: &str| r.iter().find(|x| x[k] == v).expect(v);
    assert_eq!(by("client-id", CID)["ip-address"], "192.0.2.10");
    assert_eq!(by("hw-address", IB_MAC)["ip-address"], "192.0.2.10");
    assert_eq!(by("hw-address", ETH_MAC)["ip-address"], "192.0.2.20");
    assert_eq!(by("hw-address", ETH_MAC)["hostname"], "eth-node-1");
    let classes = d["client-classes"].as_array().expect("classes");
    assert_eq!(
        classes[0]["boot-file-name"],
        "http://192.0.2.1:8080/boot.ipxe"
    );
    assert_eq!(classes[1]["name"], "ironpxe-http");
    assert_eq!(
        classes[1]["boot-file-name"],
        "http://192.0.2.1:8080/snponly.efi"
    );
    assert_eq!(
        classes[1]["option-data"],
        json!([{"name": "vendor-class-identifier", "data": "HTTPClient", "always-send": true}])
    );
    assert!(classes[1].get("next-server").is_none());
    assert!(classes[1]["test"]
        .as_str()
        .expect("test")
        .contains("option[93].hex == 0x0010"));
    assert_eq!(classes[2]["boot-file-name"], "snponly.efi");
    assert!(classes[2]["test"].as_str().expect("test").ends_with(
        "(option[93].hex == 0x0007 or option[93].hex == 0x0009 or option[93].hex == 0x000b)"
    ));
    assert_eq!(classes[3]["boot-file-name"], "pxelinux.0");
    for i in [0, 2, 3] {
        assert_eq!(classes[i]["next-server"], "192.0.2.7", "class {i}");
    }
    let r = generate(DhcpFormat::Kea, &two_nodes(), &opts());
    assert!(r.warnings.iter().any(|w| w.starts_with("kea: ")));
}

#[test]
fn neutron_lists_what_ironic_would_set() {
    let s = listing(&[
        node(
            IB_UUID,
            r#""ib-node-1""#,
            r#""pxe""#,
            &[port(IB_MAC, &format!(r#""client-id": "{CID}""#))],
        ),
        node(ETH_UUID, r#""eth""#, r#""ipxe""#, &[port(ETH_MAC, "")]),
        node(
            "11111111-2222-4333-8444-555555555555",
            r#""vmedia""#,
            r#""redfish-virtual-media""#,
            &[port("52:54:00:00:00:09", "")],
        ),
    ]);
    let v: Value =
        serde_json::from_str(&generate(DhcpFormat::Neutron, &s, &opts()).text).expect("json");
    let ports = v.as_array().expect("array");
    let find = |p: &str| ports.iter().find(|x| x["port"] == p).expect(p);
    let names = |x: &Value| -> Vec<(String, String)> {
        x["extra_dhcp_opts"]
            .as_array()
            .expect("opts")
            .iter()
            .map(|o| {
                (
                    o["opt_name"].as_str().expect("name").to_owned(),
                    o["opt_value"].as_str().expect("value").to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    // Ironic's defaults: PXE + UEFI boots bootx64.efi, iPXE + UEFI snponly.efi; the TFTP
    // server goes into 66, 150 and 255 (dnsmasq's server-ip-address, by number).
    assert_eq!(
        names(find(IB_MAC)),
        vec![
            pair("61", CID),
            pair("67", "bootx64.efi"),
            pair("66", "192.0.2.7"),
            pair("150", "192.0.2.7"),
            pair("255", "192.0.2.7"),
        ]
    );
    assert_eq!(find(IB_MAC)["infiniband"], true);
    assert_eq!(find(IB_MAC)["extra_dhcp_opts"][0].get("ip_version"), None);
    assert_eq!(find(IB_MAC)["extra_dhcp_opts"][1]["ip_version"], 4);
    assert_eq!(
        names(find(ETH_MAC))[..2],
        [
            pair("tag:!ipxe,67", "snponly.efi"),
            pair("tag:ipxe,67", "http://192.0.2.1:8080/boot.ipxe"),
        ]
    );
    let vm = find("52:54:00:00:00:09");
    assert!(names(vm).is_empty());
    assert!(vm["notes"][0]
        .as_str()
        .expect("note")
        .contains("sets no boot options"));
    // boot_mode:bios picks the BIOS boot file.
    let s = snap(&format!(
        r#"{{"uuid": "{ETH_UUID}", "boot_interface": "ipxe", "properties": {{"capabilities": "boot_mode:bios"}}, "ports": [{{"address": "{ETH_MAC}"}}]}}"#
    ));
    let v: Value =
        serde_json::from_str(&generate(DhcpFormat::Neutron, &s, &opts()).text).expect("json");
    assert_eq!(v[0]["extra_dhcp_opts"][0]["opt_value"], "undionly.kpxe");
}

/// `[ironic_pxe]` is read with Ironic's names: by-arch boot files keyed by the node's
/// `properties.cpu_arch`, its own TFTP server and URL over ironpxe's; with DHCPv6 on, the
/// IPv6 options follow the IPv4 ones, as Ironic adds them for a port with an IPv6 address.
#[test]
fn neutron_follows_ironic_settings_and_adds_ipv6_options_when_dhcpv6_is_on() {
    let s = snap(&format!(
        r#"{{"uuid": "{ETH_UUID}", "boot_interface": "pxe", "properties": {{"cpu_arch": "aarch64"}}, "ports": [{{"address": "{ETH_MAC}"}}]}}"#
    ));
    let mut o = opts6();
    o.ironic_pxe.pxe_bootfile_name_by_arch = [("aarch64".into(), "grubaa64.efi".into())].into();
    o.ironic_pxe.tftp_server = Some("192.0.2.99".parse().expect("ip"));
    let v: Value = serde_json::from_str(&generate(DhcpFormat::Neutron, &s, &o).text).expect("json");
    let got: Vec<(String, String, u64)> = v[0]["extra_dhcp_opts"]
        .as_array()
        .expect("opts")
        .iter()
        .map(|x| {
            (
                x["opt_name"].as_str().expect("n").to_owned(),
                x["opt_value"].as_str().expect("v").to_owned(),
                x["ip_version"].as_u64().expect("ip_version"),
            )
        })
        .collect();
    let t = |n: &str, v: &str, ip: u64| (n.to_owned(), v.to_owned(), ip);
    assert_eq!(
        got,
        vec![
            t("67", "grubaa64.efi", 4),
            t("66", "192.0.2.99", 4),
            t("150", "192.0.2.99", 4),
            t("255", "192.0.2.99", 4),
            t("59", "tftp://[2001:db8::7]/grubaa64.efi", 6),
        ]
    );
    // Ironic's http_url is used as written, a trailing `/` included; a bad one is refused.
    let at = Listeners {
        public_url: None,
        http_listen: "192.0.2.1:8080".parse().expect("addr"),
        tftp_listen: vec!["192.0.2.1:69".parse().expect("addr")],
        client_id_prefix: MELLANOX_CLIENT_ID_PREFIX,
    };
    let mut c = DhcpChoices::default();
    c.ironic_pxe.http_url = Some("http://192.0.2.9/".into());
    let (d, _) = DhcpOptions::derive(&at, &c).expect("derive");
    assert_eq!(
        d.ironic_settings().http_url.as_deref(),
        Some("http://192.0.2.9/")
    );
    c.ironic_pxe.http_url = Some("http://a b".into());
    assert!(DhcpOptions::derive(&at, &c).is_err());
    // A boot file Neutron cannot carry: no boot options at all, and a note that says why.
    o.ironic_pxe.pxe_bootfile_name_by_arch = [("aarch64".into(), "x".repeat(60))].into();
    let v: Value = serde_json::from_str(&generate(DhcpFormat::Neutron, &s, &o).text).expect("json");
    assert_eq!(v[0]["extra_dhcp_opts"], json!([]));
    assert!(
        v[0]["notes"][0]
            .as_str()
            .expect("note")
            .contains("64 characters"),
        "{v}"
    );
}

#[test]
fn hostile_node_names_never_inject_in_any_format() {
    let evil = [
        "x,set:evil\ndhcp-option=3,6.6.6.6",
        "a\"; }\nhost evil { hardware ethernet 66:66:66:66:66:66; }",
        "ignore",
        "3600",
        "\",\"hw-address\":\"66:66:66:66:66:66",
        "#comment\r\ndhcp-boot=evil",
    ];
    for name in evil {
        let s = listing(&[node(
            IB_UUID,
            &serde_json::to_string(name).expect("json"),
            "null",
            &[port(
                IB_MAC,
                &format!(r#""client-id": "{CID}", "fixed_ip": "192.0.2.10""#),
            )],
        )]);
        let want = Hostname::sanitize(name).expect("some name survives");
        for f in DhcpFormat::ALL {
            let text = generate(f, &s, &opts6()).text;
            // The name's words appear only inside the sanitized host name.
            let rest = text.replace(want.as_str(), "");
            assert!(
                !rest.contains("evil") && !rest.contains("6.6.6.6"),
                "{f}: {text}"
            );
            assert!(!text.contains("66:66:66:66:66:66"), "{f}: {text}");
            assert!(!text.contains('\r'), "{f}");
            match f {
                DhcpFormat::Dnsmasq => {
                    let hosts = host_lines(&text);
                    assert_eq!(
                        hosts,
                        vec![format!("id:{CID},{IB_MAC},192.0.2.10,{want}")],
                        "{name:?}"
                    );
                    for l in text.lines() {
                        assert!(
                            l.is_empty()
                                || l.starts_with('#')
                                || l.starts_with("dhcp-")
                                || l == "enable-ra",
                            "{l:?}"
                        );
                    }
                }
                DhcpFormat::Isc => {
                    assert_eq!(text.matches("\nhost ").count(), 2, "{text}");
                    assert_eq!(
                        text.matches(&format!("option host-name \"{want}\";"))
                            .count(),
                        2
                    );
                    assert_eq!(text.matches('"').count() % 2, 0);
                }
                DhcpFormat::Isc6 => {
                    assert_eq!(text.matches("\nhost ").count(), 1, "{text}");
                    assert_eq!(text.matches('"').count() % 2, 0);
                }
                DhcpFormat::Kea6 => {
                    let v: Value = serde_json::from_str(&text).expect("json");
                    assert!(text.contains(&format!("\"hostname\": \"{want}\"")), "{v}");
                }
                DhcpFormat::Kea | DhcpFormat::Neutron => {
                    let v: Value = serde_json::from_str(&text).expect("json");
                    assert!(text.contains(&format!("\"hostname\": \"{want}\"")), "{v}");
                }
            }
        }
    }
}

#[test]
fn hostsdir_sync_writes_renames_and_deletes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("hosts");
    fs::create_dir(&d).expect("mkdir");
    fs::write(d.join("operator-static"), "aa:bb:cc:dd:ee:ff,10.0.0.1\n").expect("foreign");
    fs::write(d.join(format!(".{HOSTSDIR_PREFIX}{ETH_UUID}.tmp")), "half").expect("leftover");
    let r = sync_hostsdir(&d, &two_nodes()).expect("sync");
    assert_eq!(r.created.len(), 2);
    assert!(r.deleted.is_empty() && r.updated.is_empty() && !r.needs_sighup());
    let ib_file = d.join(format!("{HOSTSDIR_PREFIX}{IB_UUID}"));
    let body = fs::read_to_string(&ib_file).expect("ib file");
    let lines: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        vec![format!("id:{CID},{IB_MAC},192.0.2.10,ib-node-1")]
    );
    assert!(!body.contains("dhcp-host=") && !body.contains("set:"));
    let mut names: Vec<String> = fs::read_dir(&d)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{HOSTSDIR_PREFIX}{ETH_UUID}"),
            format!("{HOSTSDIR_PREFIX}{IB_UUID}"),
            "operator-static".to_owned(),
        ],
        "leftover dotfile removed, foreign file kept"
    );

    let r = sync_hostsdir(&d, &two_nodes()).expect("again");
    assert_eq!(r.unchanged, 2);
    assert!(!r.needs_sighup());

    // A changed address rewrites one file: dnsmasq keeps the old entry until SIGHUP.
    let moved = listing(&[
        ib_node_at("192.0.2.11"),
        node(
            ETH_UUID,
            r#""eth-node-1""#,
            "null",
            &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
        ),
    ]);
    let r = sync_hostsdir(&d, &moved).expect("update");
    assert_eq!(r.updated, vec![ib_file.clone()]);
    assert!(r.needs_sighup());

    // The IB node leaves: its file goes.
    let only_eth = listing(&[node(
        ETH_UUID,
        r#""eth-node-1""#,
        "null",
        &[port(ETH_MAC, r#""fixed_ip": "192.0.2.20""#)],
    )]);
    let r = sync_hostsdir(&d, &only_eth).expect("delete");
    assert_eq!(r.deleted, vec![ib_file.clone()]);
    assert!(r.needs_sighup());
    assert!(!ib_file.exists());
    assert!(d.join("operator-static").exists());
}

#[test]
fn sighup_refuses_anything_but_one_real_pid() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("pid");
    for bad in ["", "0", "1", "-1", " 12 34", "abc", "99999999999"] {
        fs::write(&f, bad).expect("write");
        let e = sighup(&f).expect_err(bad);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}: {e}");
    }
    assert!(sighup(&dir.path().join("missing")).is_err());
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    fs::write(&f, format!("{}\n", child.id())).expect("write");
    sighup(&f).expect("sighup");
    let status = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(1), "ended by SIGHUP");
    // The PID is gone now: kill fails and says so.
    assert!(sighup(&f).is_err());
}

fn listeners(http: &str, tftp: &[&str]) -> Listeners {
    Listeners {
        public_url: None,
        http_listen: http.parse().expect("addr"),
        tftp_listen: tftp.iter().map(|a| a.parse().expect("addr")).collect(),
        client_id_prefix: MELLANOX_CLIENT_ID_PREFIX,
    }
}

#[test]
fn options_default_from_config() {
    // The settings file's defaults.
    let mut cfg = listeners("127.0.0.1:8080", &["127.0.0.1:6969"]);
    let none = DhcpChoices::default();
    let (o, warnings) = DhcpOptions::derive(&cfg, &none).expect("defaults");
    assert_eq!(o.http_url.as_str(), "http://127.0.0.1:8080");
    assert_eq!(o.http_boot_url(), "http://127.0.0.1:8080/snponly.efi");
    assert_eq!(o.next_server, None);
    assert_eq!(o.v6, None);
    assert_eq!(o.client_id_prefixes, vec![MELLANOX_CLIENT_ID_PREFIX]);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    cfg.public_url = Some("http://pxe.example:8080".into());
    cfg.tftp_listen = vec![
        "127.0.0.1:69".parse().expect("addr"),
        "192.0.2.5:69".parse().expect("addr"),
    ];
    let undi = DhcpChoices {
        bios_boot: Some("undionly.kpxe".into()),
        http_boot: Some("grubx64.efi".into()),
        ..DhcpChoices::default()
    };
    let (o, warnings) = DhcpOptions::derive(&cfg, &undi).expect("config");
    assert_eq!(
        o.http_url.boot_script(),
        "http://pxe.example:8080/boot.ipxe"
    );
    assert_eq!(o.http_boot_url(), "http://pxe.example:8080/grubx64.efi");
    assert_eq!(o.next_server, Some(Ipv4Addr::new(192, 0, 2, 5)));
    assert_eq!(o.bios_boot.as_str(), "undionly.kpxe");
    assert!(warnings.is_empty(), "{warnings:?}");
    let flags = DhcpChoices {
        http_url: Some("http://192.0.2.9".into()),
        next_server: Some(Ipv4Addr::new(192, 0, 2, 8)),
        ..DhcpChoices::default()
    };
    let (o, _) = DhcpOptions::derive(&cfg, &flags).expect("flags win");
    assert_eq!(o.http_url.as_str(), "http://192.0.2.9");
    assert_eq!(o.next_server, Some(Ipv4Addr::new(192, 0, 2, 8)));
    for bad in [
        DhcpChoices {
            http_url: Some("http://a b".into()),
            ..DhcpChoices::default()
        },
        DhcpChoices {
            bios_boot: Some("a,b".into()),
            ..DhcpChoices::default()
        },
        DhcpChoices {
            http_boot: Some("x;reboot".into()),
            ..DhcpChoices::default()
        },
        DhcpChoices {
            http_boot: Some("a".repeat(110)),
            ..DhcpChoices::default()
        },
        // An IPv6 URL never goes into a DHCPv4 line.
        DhcpChoices {
            http_url: Some("http://[2001:db8::1]:8080".into()),
            ..DhcpChoices::default()
        },
    ] {
        assert!(DhcpOptions::derive(&cfg, &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn unspecified_listeners_never_become_urls() {
    // 0.0.0.0: the HTTP port on the routable TFTP address, with a warning.
    let cfg = listeners("0.0.0.0:8080", &["192.0.2.5:69"]);
    let (o, warnings) = DhcpOptions::derive(&cfg, &DhcpChoices::default()).expect("derive");
    assert_eq!(o.http_url.as_str(), "http://192.0.2.5:8080");
    assert!(
        warnings.iter().any(|w| w.contains("0.0.0.0:8080")),
        "{warnings:?}"
    );
    // Nothing routable to assume: an error naming the flag.
    let cfg = listeners("[::]:8080", &["0.0.0.0:69"]);
    let e = DhcpOptions::derive(&cfg, &DhcpChoices::default()).expect_err("no address");
    assert!(e.to_string().contains("--http-url"), "{e}");
    // [::] serves both families: each gets its own TFTP address, bracketed for IPv6.
    let cfg = listeners("[::]:8080", &["192.0.2.5:69", "[2001:db8::5]:69"]);
    let (o, _) = DhcpOptions::derive(&cfg, &DhcpChoices::default()).expect("derive");
    assert_eq!(o.http_url.as_str(), "http://192.0.2.5:8080");
    let v6 = o.v6.expect("v6 on: an IPv6 tftp_listen");
    assert_eq!(v6.http_url.as_str(), "http://[2001:db8::5]:8080");
    assert_eq!(
        v6.tftp_server,
        "2001:db8::5".parse::<Ipv6Addr>().expect("ip")
    );
    for url in ["http://0.0.0.0:8080", "http://[::]:8080", "http://[0:0::0]"] {
        assert!(HttpUrl::new(url).is_err(), "{url}");
    }
}

#[test]
fn url_hosts_are_typed_by_ip_version() {
    let cases = [
        (
            "http://192.0.2.1:8080",
            UrlHost::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ),
        (
            "http://[2001:db8::1]:8080/x",
            UrlHost::V6("2001:db8::1".parse().expect("ip")),
        ),
        (
            "http://[fe80::1%25eth0]:8080",
            UrlHost::V6("fe80::1".parse().expect("ip")),
        ),
        ("https://user@pxe.example", UrlHost::Name),
        ("http://pxe.example:80/a?b=1", UrlHost::Name),
    ];
    for (url, host) in cases {
        assert_eq!(HttpUrl::new(url).expect(url).host(), host, "{url}");
    }
    assert!(UrlHost::Name.fits(false) && UrlHost::Name.fits(true));
    assert!(cases[0].1.fits(false) && !cases[0].1.fits(true));
    assert!(!cases[1].1.fits(false) && cases[1].1.fits(true));
    for bad in [
        "http://2001:db8::1/",
        "http://[2001:db8::1",
        "http://[nothex]/",
        "http://[2001:db8::1]x/",
        "http://:8080",
    ] {
        assert!(HttpUrl::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn ipv6_ranges_parse_typed() {
    let r: Ipv6Range = "2001:db8::100,2001:db8::1ff".parse().expect("range");
    assert_eq!(r.prefix_len, 64);
    assert_eq!(r.subnet(), "2001:db8::/64");
    assert_eq!(r.to_string(), "2001:db8::100,2001:db8::1ff,64");
    let r: Ipv6Range = " fd00:1:2:3::10 , fd00:1:2:3::20 ,120"
        .parse()
        .expect("ula");
    assert_eq!(r.subnet(), "fd00:1:2:3::/120");
    let full: Ipv6Range = "2001:db8::1,2001:db8::1,128".parse().expect("one");
    assert_eq!(full.subnet(), "2001:db8::1/128");
    for bad in [
        "",
        "2001:db8::1",
        "2001:db8::200,2001:db8::100",
        "2001:db8::1,2001:db8:1::1",
        "2001:db8::1,2001:db8::2,63",
        "2001:db8::1,2001:db8::2,129",
        "2001:db8::1,2001:db8::2,64,1h",
        "fe80::1,fe80::2",
        "::,::1",
        "ff02::1,ff02::2",
        "192.0.2.1,192.0.2.2",
        "2001:db8::1\ndhcp-option=3,2001:db8::2",
    ] {
        assert!(bad.parse::<Ipv6Range>().is_err(), "{bad:?}");
    }
}

#[test]
fn dhcpv6_is_on_only_with_an_ipv6_tftp_address() {
    let v4 = listeners("192.0.2.5:8080", &["192.0.2.5:69"]);
    let (o, _) = DhcpOptions::derive(&v4, &DhcpChoices::default()).expect("v4");
    assert_eq!(o.v6, None);
    // Link-local listeners are not put into URLs: warned, DHCPv6 stays off.
    let ll = listeners("192.0.2.5:8080", &["192.0.2.5:69", "[fe80::1]:69"]);
    let (o, w) = DhcpOptions::derive(&ll, &DhcpChoices::default()).expect("ll");
    assert_eq!(o.v6, None);
    assert!(w.iter().any(|w| w.contains("link-local")), "{w:?}");
    // An IPv4-only HTTP listener cannot serve DHCPv6 iPXE clients: say which flag to give.
    let c = DhcpChoices {
        next_server6: Some("2001:db8::5".parse().expect("ip")),
        ..DhcpChoices::default()
    };
    let e = DhcpOptions::derive(&v4, &c).expect_err("no v6 url");
    assert!(e.to_string().contains("--http-url6"), "{e}");
    // An IPv4 URL never goes into a DHCPv6 line.
    let c4 = DhcpChoices {
        http_url6: Some("http://192.0.2.5:8080".into()),
        ..c.clone()
    };
    assert!(DhcpOptions::derive(&v4, &c4).is_err());
    let c6 = DhcpChoices {
        http_url6: Some("http://[2001:db8::5]:8080".into()),
        ipv6_range: Some("2001:db8::100,2001:db8::1ff".parse().expect("range")),
        ..c
    };
    let (o, w) = DhcpOptions::derive(&v4, &c6).expect("v6");
    assert!(w.is_empty(), "{w:?}");
    let v6 = o.v6.as_ref().expect("v6");
    assert_eq!(
        v6.tftp_url(&o.uefi_boot),
        "tftp://[2001:db8::5]/snponly.efi"
    );
    assert_eq!(o.http_url.as_str(), "http://192.0.2.5:8080");
    // A DNS-name public_url serves both.
    let mut named = listeners("[2001:db8::5]:8080", &["[2001:db8::5]:69"]);
    named.public_url = Some("http://pxe.example".into());
    let c = DhcpChoices {
        next_server: Some(Ipv4Addr::new(192, 0, 2, 5)),
        ..DhcpChoices::default()
    };
    let (o, _) = DhcpOptions::derive(&named, &c).expect("named");
    assert_eq!(o.http_url.as_str(), "http://pxe.example");
    assert_eq!(o.v6.expect("v6").http_url.as_str(), "http://pxe.example");
    // An IPv6 public_url is skipped for DHCPv4, which then needs its own address.
    named.public_url = Some("http://[2001:db8::5]:8080".into());
    let e = DhcpOptions::derive(&named, &c).expect_err("no v4 url");
    assert!(e.to_string().contains("--http-url"), "{e}");
}

/// The lines of `text` that hand out a boot file or URL.
fn boot_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("boot") || l.contains("filename") || l.contains("option6:"))
        .collect()
}

#[test]
fn http_boot_lines_carry_option_60_and_an_absolute_url_but_no_tftp_server() {
    let h = hosts(&two_nodes());
    let o = opts();
    let main = dnsmasq_main(&h, &o);
    let http: Vec<&str> = main
        .lines()
        .filter(|l| l.contains("tag:ironpxe-http"))
        .collect();
    assert_eq!(http.len(), 2, "{main}");
    for l in &http {
        assert!(l.starts_with("dhcp-boot=tag:!ironpxe-ipxe,tag:ironpxe-http,") || l.starts_with("dhcp-option-force=tag:!ironpxe-ipxe,tag:ironpxe-http,option:vendor-class,HTTPClient"), "{l}");
        // No siaddr field, no option 66 / 150, never the TFTP server.
        assert!(!l.contains(",,") && !l.contains("192.0.2.7"), "{l}");
    }
    for opt in ["66", "150", "tftp-server", "server-ip-address"] {
        assert!(
            !main.contains(&format!("option:{opt}")) && !main.contains(&format!(",{opt},")),
            "{opt}: {main}"
        );
    }
    let text = isc(&h, &o);
    assert!(!text.contains("option tftp-server-name") && !text.contains("code 150"));
    // Only one HTTP Boot URL per format, and it is absolute.
    for f in [DhcpFormat::Dnsmasq, DhcpFormat::Isc, DhcpFormat::Kea] {
        let t = generate(f, &two_nodes(), &o).text;
        assert_eq!(
            t.matches("http://192.0.2.1:8080/snponly.efi").count(),
            1,
            "{f}: {t}"
        );
    }
}

#[test]
fn dnsmasq_v6_announces_a_stateful_range_and_urls_by_client() {
    let main = dnsmasq_main(&hosts(&two_nodes()), &opts6());
    let (v4, v6) = main.split_once("# ironpxe: DHCPv6").expect("v6 section");
    for line in [
        "enable-ra",
        "dhcp-range=2001:db8::100,2001:db8::1ff,64,1h",
        "dhcp-vendorclass=set:ironpxe-http,enterprise:343,HTTPClient",
        "dhcp-option=tag:ironpxe-ipxe,option6:bootfile-url,http://[2001:db8::7]:8080/boot.ipxe",
        "dhcp-option=tag:!ironpxe-ipxe,tag:ironpxe-http,option6:bootfile-url,http://[2001:db8::7]:8080/snponly.efi",
        "dhcp-option-force=tag:!ironpxe-ipxe,tag:ironpxe-http,option6:16,00:00:01:57:00:0a:48:54:54:50:43:6c:69:65:6e:74",
        "dhcp-option=tag:!ironpxe-ipxe,tag:!ironpxe-http,option6:bootfile-url,tftp://[2001:db8::7]/snponly.efi",
    ] {
        assert!(v6.lines().any(|l| l == line), "{line} missing:\n{v6}");
    }
    // Never mixed: DHCPv4 lines name no IPv6 address, DHCPv6 lines no IPv4 one.
    for l in boot_lines(v4) {
        assert!(!l.contains('['), "IPv6 in a DHCPv4 line: {l}");
    }
    for l in boot_lines(v6) {
        assert!(!l.contains("192.0.2."), "IPv4 in a DHCPv6 line: {l}");
    }
    assert_eq!(
        dnsmasq_main(&hosts(&two_nodes()), &opts())
            .matches("DHCPv6")
            .count(),
        0,
        "IPv4 only without v6 options"
    );
    // Without a range: a comment saying what to add, no enable-ra.
    let mut o = opts6();
    if let Some(v6) = o.v6.as_mut() {
        v6.range = None;
    }
    let main = dnsmasq_main(&hosts(&two_nodes()), &o);
    assert!(!main.lines().any(|l| l == "enable-ra") && main.contains("# no ipv6_range"));
}

#[test]
fn isc6_and_kea6_hand_out_option_59_by_client() {
    let h = hosts(&two_nodes());
    let text = isc6(&h, &opts6());
    for want in [
        "if substring(option dhcp6.ironpxe-user-class, 2, 4) = \"iPXE\" {\n  option dhcp6.bootfile-url \"http://[2001:db8::7]:8080/boot.ipxe\";",
        "} elsif substring(option dhcp6.ironpxe-vendor-class, 6, 10) = \"HTTPClient\" {\n  option dhcp6.bootfile-url \"http://[2001:db8::7]:8080/snponly.efi\";\n  option dhcp6.ironpxe-vendor-class 343 10 \"HTTPClient\";",
        "} else {\n  option dhcp6.bootfile-url \"tftp://[2001:db8::7]/snponly.efi\";\n}",
        "host ironpxe-525400123456-v6 {",
        "  hardware ethernet 7c:fe:90:29:26:52;",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(!text.contains("192.0.2."), "{text}");
    assert!(
        !text.contains("dhcp-client-identifier"),
        "no RFC 4390 host over v6"
    );
    assert!(isc6(&h, &opts()).starts_with("# ironpxe: no IPv6"));

    let v: Value = serde_json::from_str(&kea6(&h, &opts6())).expect("json");
    let d = &v["Dhcp6"];
    let classes = d["client-classes"].as_array().expect("classes");
    let url = |i: usize| classes[i]["option-data"][0]["data"].clone();
    assert_eq!(url(0), "http://[2001:db8::7]:8080/boot.ipxe");
    assert_eq!(url(1), "http://[2001:db8::7]:8080/snponly.efi");
    assert_eq!(
        classes[1]["option-data"][1]["data"],
        "000001570 00A48545450436C69656E74".replace(' ', "")
    );
    assert_eq!(url(2), "tftp://[2001:db8::7]/snponly.efi");
    assert_eq!(d["reservations"].as_array().expect("r").len(), 2);
    assert!(!d.to_string().contains("192.0.2."), "{d}");
    let r = generate(DhcpFormat::Kea6, &two_nodes(), &opts());
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("no IPv6 TFTP address")));
}

#[test]
fn neutron_http_boot_interfaces_get_option_60_and_a_url_without_tftp_servers() {
    // Ironic's UEFI defaults: bootx64.efi for `http` (a PXE loader), snponly.efi for `http-ipxe`.
    for (bi, ipxe, loader) in [
        ("http", false, "bootx64.efi"),
        ("http-ipxe", true, "snponly.efi"),
    ] {
        let s = listing(&[node(
            ETH_UUID,
            r#""n""#,
            &format!("{bi:?}"),
            &[port(ETH_MAC, "")],
        )]);
        let v: Value =
            serde_json::from_str(&generate(DhcpFormat::Neutron, &s, &opts()).text).expect("json");
        let o = v[0]["extra_dhcp_opts"].as_array().expect("opts");
        let get = |name: &str| {
            o.iter()
                .find(|x| x["opt_name"] == name)
                .map(|x| x["opt_value"].clone())
        };
        let file = if ipxe { "tag:!ipxe,67" } else { "67" };
        assert_eq!(
            get(file),
            Some(json!(format!("http://192.0.2.1:8080/{loader}"))),
            "{bi}"
        );
        assert_eq!(get("60"), Some(json!("HTTPClient")), "{bi}");
        assert_eq!(get("tag:ipxe,67").is_some(), ipxe, "{bi}");
        for n in ["66", "150", "255"] {
            assert_eq!(get(n), None, "{bi}: {n}");
        }
    }
}

/// The option 61 value of `port` in `--format neutron` output, as JSON.
fn neutron_61(s: &Snapshot, port: &str) -> Option<Value> {
    let v: Value =
        serde_json::from_str(&generate(DhcpFormat::Neutron, s, &opts()).text).expect("json");
    let p = v
        .as_array()
        .expect("array")
        .iter()
        .find(|x| x["port"] == port)
        .unwrap_or_else(|| panic!("{port} listed"));
    p["extra_dhcp_opts"]
        .as_array()
        .expect("opts")
        .iter()
        .find(|o| o["opt_name"] == "61")
        .map(|o| o["opt_value"].clone())
}

/// Every DHCP server format's text for `s`.
fn server_configs(s: &Snapshot) -> Vec<String> {
    [DhcpFormat::Dnsmasq, DhcpFormat::Isc, DhcpFormat::Kea]
        .map(|f| generate(f, s, &opts()).text)
        .to_vec()
}

#[test]
fn falsy_client_ids_are_ethernet_ports_in_every_format() {
    for value in ["\"\"", "null", "false", "0", "[]", "{}"] {
        let s = listing(&[node(
            ETH_UUID,
            r#""e""#,
            r#""pxe""#,
            &[port(ETH_MAC, &format!(r#""client-id": {value}"#))],
        )]);
        let e = &hosts(&s).entries[0];
        assert_eq!(e.ids, PortIds::Ethernet(mac(ETH_MAC)), "{value}");
        assert_eq!(e.option61, None, "{value}");
        assert_eq!(neutron_61(&s, ETH_MAC), None, "{value}");
        assert_eq!(
            host_lines(&dnsmasq(&hosts(&s), &opts())),
            vec![format!("{ETH_MAC},e")]
        );
    }
}

#[test]
fn a_short_client_id_reaches_every_format_as_its_bytes_and_neutron_verbatim() {
    let raw = "01:52:54:00:AB:CD:03";
    let s = listing(&[node(
        IB_UUID,
        r#""ib""#,
        r#""pxe""#,
        &[port(IB_MAC, &format!(r#""client-id": "{raw}""#))],
    )]);
    let h = hosts(&s);
    let e = &h.entries[0];
    assert!(e.is_infiniband() && e.rfc4390().is_none());
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    assert!(h.prefixes.is_empty(), "no RFC 4390 vendor prefix to tag by");
    let bytes = "01:52:54:00:ab:cd:03";
    assert_eq!(dnsmasq_host(e), format!("id:{bytes},{IB_MAC},ib"));
    let [dnsmasq_text, isc_text, kea_text] =
        <[String; 3]>::try_from(server_configs(&s)).expect("3");
    assert!(
        dnsmasq_text.contains(&format!("dhcp-host=id:{bytes},")),
        "{dnsmasq_text}"
    );
    assert!(
        isc_text.contains(&format!("option dhcp-client-identifier {bytes};")),
        "{isc_text}"
    );
    assert!(
        kea_text.contains(&format!("\"client-id\": \"{bytes}\"")),
        "{kea_text}"
    );
    // Neutron gets what Ironic passes: the value as stored, upper case and all.
    assert_eq!(neutron_61(&s, IB_MAC), Some(Value::String(raw.into())));
}

#[test]
fn an_upper_case_client_id_is_verbatim_for_neutron_and_normalised_for_servers() {
    let upper = CID.to_uppercase();
    let s = listing(&[node(
        IB_UUID,
        r#""ib""#,
        r#""pxe""#,
        &[port(IB_MAC, &format!(r#""client-id": "{upper}""#))],
    )]);
    let h = hosts(&s);
    assert_eq!(
        h.entries[0].rfc4390().map(|c| c.to_string()).as_deref(),
        Some(CID)
    );
    assert_eq!(dnsmasq_host(&h.entries[0]), format!("id:{CID},{IB_MAC},ib"));
    assert_eq!(neutron_61(&s, IB_MAC), Some(Value::String(upper)));
}

#[test]
fn client_ids_no_config_can_carry_stay_out_of_server_configs() {
    for (value, neutron) in [
        (r#""x,set:evil\nid:*""#, json!("x,set:evil\nid:*")),
        (r#""a b \"q\" {c};""#, json!("a b \"q\" {c};")),
        (r#""01""#, json!("01")),
        ("5", json!(5)),
        ("true", json!(true)),
        (r#"{"k": "v,w"}"#, json!({"k": "v,w"})),
    ] {
        let s = listing(&[node(
            IB_UUID,
            r#""ib""#,
            r#""pxe""#,
            &[port(IB_MAC, &format!(r#""client-id": {value}"#))],
        )]);
        let h = hosts(&s);
        let e = &h.entries[0];
        assert_eq!(
            e.ids,
            PortIds::Infiniband {
                client_id: None,
                ib_mac: Some(mac(IB_MAC))
            },
            "{value}: still an InfiniBand port, by IB MAC"
        );
        assert_eq!(e.notes, vec![Note::BadClientId], "{value}");
        assert!(
            h.warnings.iter().all(|w| !w.contains('\n')),
            "{value}: {:?}",
            h.warnings
        );
        for text in server_configs(&s) {
            for bad in ["evil", "\"q\"", "v,w", "id:*"] {
                assert!(!text.contains(bad), "{value} reached a config:\n{text}");
            }
            assert!(!text.contains("id:0"), "{value}:\n{text}");
        }
        assert_eq!(neutron_61(&s, IB_MAC), Some(neutron), "{value}");
    }
}

#[test]
fn add_all_ports_lists_ports_that_are_not_pxe_enabled_without_an_address() {
    let json = format!(
        r#"{{"nodes": [{}]}}"#,
        node(
            IB_UUID,
            r#""ib""#,
            r#""pxe""#,
            &[
                format!(
                    r#"{{"address": "{IB_MAC}", "pxe_enabled": false, "extra": {{"client-id": "{CID}", "fixed_ip": "192.0.2.10"}}}}"#
                ),
                format!(r#"{{"address": "{ETH_MAC}", "extra": {{"fixed_ip": "192.0.2.11"}}}}"#),
            ],
        )
    );
    let store = |add_all_ports| {
        let store = Store::new(IndexConfig {
            add_all_ports,
            ..IndexConfig::default()
        });
        let doc = StateDoc::from_slice(json.as_bytes()).expect("state parses");
        store.apply(vec![(
            crate::state::source::dir::source_id("t.json"),
            Update::Replace(doc),
        )]);
        store.current()
    };
    let off = hosts(&store(false));
    assert_eq!(off.entries.len(), 1, "only the PXE-enabled port");
    assert_eq!(off.entries[0].port, mac(ETH_MAC));
    let on_snap = store(true);
    let on = hosts(&on_snap);
    assert_eq!(on.entries.len(), 2);
    let ib = on
        .entries
        .iter()
        .find(|e| e.port == mac(IB_MAC))
        .expect("ib");
    assert_eq!(ib.ip, None, "Ironic: fixed_ips []");
    assert!(ib.notes.contains(&Note::NotPxeEnabled));
    assert_eq!(ib.rfc4390().map(|c| c.to_string()).as_deref(), Some(CID));
    assert_eq!(dnsmasq_host(ib), format!("id:{CID},{IB_MAC},ib"));
    let eth = on
        .entries
        .iter()
        .find(|e| e.port == mac(ETH_MAC))
        .expect("eth");
    assert_eq!(eth.ip, Some(Ipv4Addr::new(192, 0, 2, 11)));
    let v: Value =
        serde_json::from_str(&generate(DhcpFormat::Neutron, &on_snap, &opts()).text).expect("json");
    let find = |p: &str| {
        v.as_array()
            .expect("array")
            .iter()
            .find(|x| x["port"] == p)
            .cloned()
            .expect(p)
    };
    assert_eq!(find(IB_MAC)["fixed_ips"], json!([]));
    assert_eq!(find(ETH_MAC).get("fixed_ips"), None);
    // Without fixed IPs Ironic keeps no boot option on that port: 61 alone.
    let names: Vec<Value> = find(IB_MAC)["extra_dhcp_opts"]
        .as_array()
        .expect("opts")
        .iter()
        .map(|o| o["opt_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("61")]);
    assert!(find(IB_MAC)["notes"].to_string().contains("no fixed IPs"));
    assert!(find(ETH_MAC)["extra_dhcp_opts"]
        .to_string()
        .contains("\"255\""));
    assert_eq!(neutron_61(&on_snap, IB_MAC), Some(json!(CID)));
}

/// Every file of a directory, by name.
fn contents(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .expect("ls")
        .map(|e| {
            let e = e.expect("entry");
            let body = fs::read_to_string(e.path()).expect("read");
            (e.file_name().to_string_lossy().into_owned(), body)
        })
        .collect()
}

#[test]
fn hostsdir_sync_of_the_changed_nodes_equals_a_full_sync() {
    let dir = tempfile::tempdir().expect("tmp");
    let (full, some) = (dir.path().join("full"), dir.path().join("changed"));
    let store = Store::new(IndexConfig::default());
    let file = crate::state::source::dir::source_id("t.json");
    let other = "0e1a2b3c-0000-4000-8000-000000000000";
    let ib = ib_node_at;
    let eth = |mac: &str, name: &str| node(ETH_UUID, name, "null", &[port(mac, "")]);
    let third = |mac: &str| node(other, r#""third""#, "null", &[port(mac, "")]);
    let steps = [
        vec![ib("192.0.2.10"), eth(ETH_MAC, r#""eth""#)],
        vec![ib("192.0.2.11"), eth(ETH_MAC, r#""eth""#)],
        vec![
            ib("192.0.2.11"),
            eth(ETH_MAC, r#""renamed""#),
            third("52:54:00:00:00:03"),
        ],
        vec![eth(ETH_MAC, r#""renamed""#), third("52:54:00:00:00:03")],
        // The third node takes the Ethernet node's MAC: settled between nodes, a full sync.
        vec![eth(ETH_MAC, r#""renamed""#), third(ETH_MAC)],
        vec![eth(ETH_MAC, r#""renamed""#)],
        vec![ib("192.0.2.12"), third("52:54:00:00:00:04")],
    ];
    let mut last = store.current();
    let mut partial = 0;
    for nodes in steps {
        let json = format!(r#"{{"nodes": [{}]}}"#, nodes.join(","));
        let doc = StateDoc::from_slice(json.as_bytes()).expect("state parses");
        let snap = store.apply(vec![(file.clone(), Update::Replace(doc))]);
        sync_hostsdir(&full, &snap).expect("full sync");
        if last.has_conflicts() || snap.has_conflicts() {
            sync_hostsdir(&some, &snap).expect("full sync");
        } else {
            let changed = snap.changed_since(&last);
            let r = sync_hostsdir_nodes(&some, &snap, &changed).expect("sync of changes");
            assert_eq!(
                r.created.len() + r.updated.len() + r.deleted.len() + r.unchanged,
                changed.len(),
                "one file looked at per changed node"
            );
            partial += 1;
        }
        assert_eq!(contents(&some), contents(&full), "after {json}");
        last = snap;
    }
    assert_eq!(partial, 5, "all but the two steps around the shared MAC");
}
