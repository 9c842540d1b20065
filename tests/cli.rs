//! The `ironpxe` binary's one-shot commands, run as an operator runs them.

use std::fs;
use std::path::Path;
use std::process::Output;

mod common;

use common::root;

fn ironpxe(args: &[&str]) -> Output {
    common::ironpxe_cli(args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `key: value` lines of one reading block.
fn field<'a>(block: &'a str, key: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}: "))
                .or_else(|| (l == format!("{key}:")).then_some(""))
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{block}"))
}

#[test]
fn addr_prints_every_form_of_a_guid_in_any_spelling() {
    for spelling in [
        "7c:fe:90:03:00:29:26:52",
        "7CFE900300292652",
        " 7c-fe-90-03-00-29-26-52 ",
        "7cfe.9003.0029.2652",
    ] {
        let o = ironpxe(&["addr", spelling]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(field(&out, "kind"), "guid");
        assert_eq!(field(&out, "guid"), "7c:fe:90:03:00:29:26:52");
        assert_eq!(field(&out, "ib_mac"), "7c:fe:90:29:26:52");
        assert_eq!(
            field(&out, "client_id"),
            "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"
        );
        assert_eq!(field(&out, "ipoib_addr"), "");
        assert_eq!(
            field(&out, "pxelinux_names"),
            "20-7c-fe-90-29-26-52 01-7c-fe-90-29-26-52"
        );
        assert_eq!(field(&out, "ipxe_name"), "7c:fe:90:29:26:52");
    }
}

#[test]
fn addr_on_an_ib_mac_lists_both_readings_and_says_the_guid_is_lost() {
    let o = ironpxe(&["addr", "7C-FE-90-29-26-52", "--state-dir", "examples/state"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert_eq!(field(blocks[0], "kind"), "ethernet-mac");
    assert_eq!(field(blocks[0], "match"), "none");
    assert_eq!(field(blocks[1], "kind"), "ib-mac");
    assert_eq!(field(blocks[1], "guid"), "");
    assert!(field(blocks[1], "note").contains("GUID"));
    let m = field(blocks[1], "match");
    assert!(
        m.contains("d962231e-c2c4-415e-a7f1-1b765be00bda") && m.contains("ib-node-1"),
        "{m}"
    );
}

#[test]
fn addr_with_a_20_byte_ipoib_address_matches_by_guid() {
    let o = ironpxe(&[
        "addr",
        "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
        "--state-dir",
        "examples/state",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("kind: ipoib-addr") && out.contains("kind: client-id"),
        "{out}"
    );
    for block in out.split("\n\n") {
        assert_eq!(field(block, "guid"), "7c:fe:90:03:00:29:26:52");
        assert!(field(block, "match").contains("ib-node-1"), "{block}");
    }
}

#[test]
fn addr_rejects_malformed_input_naming_the_bad_part() {
    let o = ironpxe(&["addr", "7c:fe:zz:29:26:52"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("\"zz\""), "{}", stderr(&o));
    let o = ironpxe(&["addr", "7c:fe:90:29:26"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains('5'), "{}", stderr(&o));
}

#[test]
fn render_prints_the_config_and_explains_the_match_on_stderr() {
    let o = ironpxe(&["render", "--client", "7cfe.9029.2652", "--format", "ipxe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("#!ipxe\n"), "{out}");
    assert!(out.contains("BOOTIF=20-7c-fe-90-29-26-52"), "{out}");
    assert!(out.contains("ipa-api-url=http://127.0.0.1:6385"), "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("ib-node-1") && err.contains("action: deploy"),
        "{err}"
    );

    // The node UUID and an explicit hardware-type name find the same node.
    let by_uuid = ironpxe(&[
        "render",
        "--client",
        "d962231e-c2c4-415e-a7f1-1b765be00bda",
        "--format",
        "pxelinux",
    ]);
    assert!(stderr(&by_uuid).contains("ib-node-1"));
    let as_eth = ironpxe(&[
        "render",
        "--client",
        "01-7c-fe-90-29-26-52",
        "--format",
        "pxelinux",
    ]);
    assert!(
        stdout(&as_eth).contains("BOOTIF=01-7c-fe-90-29-26-52"),
        "{}",
        stdout(&as_eth)
    );

    // SMBIOS UUID in the byte order iPXE's PXE stack reports.
    let smbios = ironpxe(&[
        "render",
        "--client",
        "00:00:00:00:00:99",
        "--smbios-uuid",
        "44454c4c-5100-1035-8051-b2c04f4e4d32",
        "--format",
        "grub",
    ]);
    assert!(
        stderr(&smbios).contains("byte-swapped"),
        "{}",
        stderr(&smbios)
    );
}

#[test]
fn render_an_unknown_client_gets_the_unknown_machine_config() {
    let o = ironpxe(&[
        "render",
        "--client",
        "52:54:00:99:99:99",
        "--format",
        "pxelinux",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("localboot 0"));
    assert!(stderr(&o).contains("no node matches"));
}

fn temp_state_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for (n, body) in files {
        fs::write(d.path().join(n), body).expect("write");
    }
    d
}

#[test]
fn check_passes_the_shipped_example_and_lists_every_problem_otherwise() {
    let ok = ironpxe(&["check"]);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("3 nodes, 4 ports"), "{}", stdout(&ok));

    let state = temp_state_with(&[
        ("broken.json", "{\n \"nodes\": [\n  {\"uuid\": 12}\n]}\n"),
        (
            "noimages.json",
            r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "deploying",
                "ports": [{"address": "52:54:00:00:00:01"}]}"#,
        ),
    ]);
    let o = ironpxe(&["check", "--state-dir", path(state.path())]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("broken.json:3:"), "{out}");
    assert!(out.contains("driver_info.deploy_kernel"), "{out}");
    assert!(out.contains("2 problems"), "{out}");
}

#[test]
fn check_reports_broken_templates_with_position() {
    let t = tempfile::tempdir().expect("tempdir");
    for f in ["pxelinux.tera", "ipxe.tera", "grub.tera", "boot.ipxe.tera"] {
        fs::copy(root().join("templates").join(f), t.path().join(f)).expect("copy");
    }
    fs::write(t.path().join("grub.tera"), "set x=1\n{% for %}\n").expect("write");
    let o = ironpxe(&["check", "--templates", path(t.path())]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("grub.tera") && out.contains("2:"), "{out}");
}

#[test]
fn missing_state_directory_is_a_clear_error() {
    let o = ironpxe(&["check", "--state-dir", "/nonexistent/ironpxe-state"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/ironpxe-state"),
        "{}",
        stderr(&o)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A node with a port that is not PXE-enabled and an Ethernet-marked port whose IB MAC is an
/// InfiniBand GUID's (enrolled without its client-id).
const UNBOOTED_STATE: &str = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "n1",
    "provision_state": "clean wait",
    "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r"},
    "ports": [{"address": "52:54:00:00:00:03", "pxe_enabled": false},
              {"address": "7c:fe:90:29:26:52", "extra": {"client-id": ""}}]}"#;

#[test]
fn addr_names_ports_ironic_knows_but_does_not_boot() {
    let state = temp_state_with(&[("n.json", UNBOOTED_STATE)]);
    let dir = path(state.path());
    let head = "node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123 (n1, clean wait), port";
    let o = ironpxe(&["addr", "52:54:00:00:00:03", "--state-dir", dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert_eq!(field(blocks[0], "match"), "none");
    assert_eq!(
        field(blocks[0], "known"),
        format!("{head} 52:54:00:00:00:03 (ethernet), not PXE-enabled: Ironic's lookup finds the node, but Ironic writes no boot config for the port ([neutron] add_all_ports would)")
    );
    assert!(
        !blocks[1].contains("known:"),
        "an Ethernet port is no IB MAC:\n{out}"
    );

    let o = ironpxe(&["addr", "7c:fe:90:03:00:29:26:52", "--state-dir", dir]);
    let out = stdout(&o);
    assert_eq!(field(&out, "match"), "none");
    assert_eq!(
        field(&out, "known"),
        format!("{head} 7c:fe:90:29:26:52 (ethernet), enrolled without client-id: Ironic treats it as Ethernet (01- names, no option 61), so no GUID, IPoIB address or client-id leads to it")
    );

    // With Ironic's [neutron] add_all_ports the port boots, and addr says so.
    let cfg = temp_state_with(&[("ironpxe.toml", "[neutron]\nadd_all_ports = true\n")]);
    let cfg_file = cfg.path().join("ironpxe.toml");
    let o = ironpxe(&[
        "addr",
        "52:54:00:00:00:03",
        "--state-dir",
        dir,
        "--config",
        path(&cfg_file),
    ]);
    let out = stdout(&o);
    assert!(
        field(&out, "match").starts_with("node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123"),
        "{out}"
    );
    assert!(!out.contains("known:"), "{out}");
}

#[test]
fn render_says_why_a_known_port_gets_the_unknown_machine_config() {
    let state = temp_state_with(&[("n.json", UNBOOTED_STATE)]);
    let o = ironpxe(&[
        "render",
        "--state-dir",
        path(state.path()),
        "--client",
        "01-52-54-00-00-00-03",
        "--format",
        "pxelinux",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("localboot 0"), "boot answer unchanged");
    let err = stderr(&o);
    assert!(err.contains("no node matches"), "{err}");
    assert!(
        err.contains("why: node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123 (n1, clean wait), port 52:54:00:00:00:03 (ethernet), not PXE-enabled"),
        "{err}"
    );
}
