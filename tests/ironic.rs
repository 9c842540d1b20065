//! ironpxe against a REAL OpenStack Ironic 39 (tests/common/ironic.rs): nodes enrolled and
//! parked through Ironic's API in every boot-relevant state, ironpxe polling that API, and
//! for every node ironpxe's answer compared with the boot config the same Ironic wrote into
//! its own TFTP/HTTP roots — the chosen boot, the kernel and initrd BYTES, and the kernel
//! parameters. Then live changes (abort), Ironic going down (ironpxe keeps serving, also
//! across its own restart from the cache file) and Ironic coming back.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::ironic::Ironic;
use common::*;
use serde_json::{json, Value};

/// The InfiniBand port: Ironic's `port.address` is the 6-byte IB MAC, its
/// `extra.client-id` the Mellanox prefix + GUID `7c:fe:90:03:00:29:26:52`.
const IB_MAC: &str = "7c:fe:90:29:26:52";
const IB_CLIENT_ID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";

/// Where Ironic writes a node's config and how ironpxe is asked for it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// iPXE boot interface: Ironic writes `httpboot/pxelinux.cfg/<mac-with-dashes>`;
    /// ironpxe answers HTTP `/pxelinux.cfg/<mac-with-dashes>`.
    Ipxe,
    /// PXE boot interface on an InfiniBand port: Ironic writes
    /// `tftpboot/pxelinux.cfg/20-<ib-mac>`; ironpxe answers TFTP `20-` and `01-`.
    PxeIb,
    /// Ironic writes nothing; ironpxe must hand out no ramdisk.
    Nothing,
}

struct Case {
    name: &'static str,
    uuid: String,
    mac: &'static str,
    kind: Kind,
    /// The action ironpxe must name (`deploy`, `clean`, `inspect`, `rescue`, `local`).
    action: &'static str,
    /// Source images the boot must load (rescue boots the rescue images).
    images: (&'static str, &'static str),
}

/// What a config makes the machine boot.
#[derive(Clone, Debug, PartialEq)]
enum Served {
    Local {
        label: String,
    },
    Kernel {
        label: String,
        kernel: String,
        initrd: String,
        /// Every kernel parameter, in order, as written.
        params: Vec<String>,
        /// The line(s) carrying kernel and parameters, for messages.
        lines: String,
    },
}

fn dashes(mac: &str) -> String {
    mac.replace(':', "-")
}

/// Kernel parameters apart from per-request ids, BOOTIF and the initrd name.
fn comparable(params: &[String]) -> Vec<String> {
    params
        .iter()
        .filter(|p| {
            !p.starts_with("ipa-global-request-id=")
                && !p.starts_with("BOOTIF=")
                && !p.starts_with("initrd=")
        })
        .cloned()
        .collect()
}

/// Words of an iPXE command up to `||`.
fn command_words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .take_while(|w| *w != "||")
        .map(str::to_owned)
        .collect()
}

/// Ironic's iPXE config: the first `goto <label>` picks the section that boots.
fn parse_ironic_ipxe(text: &str) -> Served {
    let label = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("goto "))
        .unwrap_or_else(|| panic!("no default goto in Ironic's iPXE config:\n{text}"))
        .trim()
        .to_owned();
    let (mut kernel, mut initrd) = (None, None);
    let mut inside = false;
    for l in text.lines().map(str::trim) {
        if let Some(name) = l.strip_prefix(':') {
            inside = name == label;
        } else if inside && l.starts_with("kernel ") && kernel.is_none() {
            kernel = Some(l.to_owned());
        } else if inside && l.starts_with("initrd ") && initrd.is_none() {
            initrd = Some(l.to_owned());
        }
    }
    if label == "boot_whole_disk" {
        return Served::Local { label };
    }
    let k = kernel.unwrap_or_else(|| panic!("no kernel in :{label}:\n{text}"));
    let i = initrd.unwrap_or_else(|| panic!("no initrd in :{label}:\n{text}"));
    let kw = command_words(&k);
    let iw = command_words(&i);
    Served::Kernel {
        label,
        kernel: kw.get(1).cloned().unwrap_or_default(),
        initrd: iw.last().cloned().unwrap_or_default(),
        params: kw.iter().skip(2).cloned().collect(),
        lines: format!("{k}\n{i}"),
    }
}

/// ironpxe's iPXE script: the `kernel` and `initrd` commands; none means local boot.
fn parse_ironpxe_ipxe(text: &str) -> Served {
    assert!(text.starts_with("#!ipxe"), "not an iPXE script:\n{text}");
    let label = text
        .lines()
        .find_map(|l| l.strip_prefix("# ironpxe: "))
        .and_then(|l| l.rsplit(": ").next())
        .unwrap_or_else(|| panic!("no `# ironpxe: … : <action>` header:\n{text}"))
        .trim()
        .to_owned();
    let line = |cmd: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{cmd} ")))
            .map(str::to_owned)
    };
    let (Some(k), Some(i)) = (line("kernel"), line("initrd")) else {
        assert!(
            line("kernel").is_none() && line("initrd").is_none() && !text.contains("sanboot"),
            "half a boot:\n{text}"
        );
        assert!(text.contains("exit"), "local boot must leave iPXE:\n{text}");
        return Served::Local { label };
    };
    let kw = command_words(&k);
    // `initrd [--name n] URL`
    let mut iw = command_words(&i).into_iter().skip(1);
    let mut initrd = String::new();
    while let Some(w) = iw.next() {
        if w == "--name" || w == "-n" {
            iw.next();
        } else if !w.starts_with('-') {
            initrd = w;
            break;
        }
    }
    Served::Kernel {
        label,
        kernel: kw.get(1).cloned().unwrap_or_default(),
        initrd,
        params: kw.iter().skip(2).cloned().collect(),
        lines: format!("{k}\n{i}"),
    }
}

/// A PXELINUX config (Ironic's or ironpxe's): `default <label>` and that label's block.
fn parse_pxelinux(text: &str) -> Served {
    let label = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("default "))
        .unwrap_or_else(|| panic!("no default in PXELINUX config:\n{text}"))
        .trim()
        .to_owned();
    let mut inside = false;
    let mut block = Vec::new();
    for l in text.lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("label ") {
            inside = name.trim() == label;
        } else if inside && !l.is_empty() && !l.starts_with('#') {
            block.push(l.to_owned());
        }
    }
    let kernel = block.iter().find_map(|l| l.strip_prefix("kernel "));
    let append = block.iter().find_map(|l| l.strip_prefix("append "));
    let local = block.iter().any(|l| l.starts_with("localboot"))
        || label == "boot_whole_disk"
        || kernel.is_none();
    if local {
        return Served::Local { label };
    }
    let words: Vec<String> = append
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let initrd = words
        .iter()
        .find_map(|w| w.strip_prefix("initrd="))
        .unwrap_or_else(|| panic!("no initrd= in label {label}:\n{text}"))
        .to_owned();
    Served::Kernel {
        label: label.clone(),
        kernel: kernel.unwrap_or_default().trim().to_owned(),
        initrd,
        params: words,
        lines: block.join("\n"),
    }
}

fn http_bytes(url: &str) -> Vec<u8> {
    let out = curl(&["-s", "-f", "--max-time", "20", url]);
    assert!(out.status.success(), "GET {url} failed");
    out.stdout
}

fn tftp_bytes(px: &Ironpxe, name: &str) -> Vec<u8> {
    px.tftp_get(name, &[])
        .unwrap_or_else(|code| panic!("TFTP {name} from ironpxe: curl exit {code}"))
}

/// Every file and symlink (with its target) under Ironic's roots.
fn ironic_tree(ironic: &Ironic) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            match fs::read_link(&p) {
                Ok(target) => out.push(format!("{rel} -> {}", target.display())),
                Err(_) if p.is_dir() => {
                    out.push(format!("{rel}/"));
                    walk(base, &p, out);
                }
                Err(_) => out.push(rel),
            }
        }
    }
    let mut out = Vec::new();
    walk(ironic.dir(), &ironic.tftpboot(), &mut out);
    walk(ironic.dir(), &ironic.httpboot(), &mut out);
    out.sort();
    out
}

/// Ironic's config for the case, or None when it wrote none.
fn ironic_config(ironic: &Ironic, case: &Case) -> Option<(String, Served)> {
    let (path, ipxe) = match case.kind {
        Kind::Ipxe | Kind::Nothing => (
            ironic
                .httpboot()
                .join("pxelinux.cfg")
                .join(dashes(case.mac)),
            true,
        ),
        Kind::PxeIb => (
            ironic
                .tftpboot()
                .join("pxelinux.cfg")
                .join(format!("20-{}", dashes(case.mac))),
            false,
        ),
    };
    let text = fs::read_to_string(&path).ok()?;
    let served = if ipxe {
        parse_ironic_ipxe(&text)
    } else {
        parse_pxelinux(&text)
    };
    Some((text, served))
}

/// ironpxe's answers for the case: (what was asked, raw text, parsed).
fn ironpxe_configs(px: &Ironpxe, case: &Case) -> Vec<(String, String, Served)> {
    let http = |path: String| {
        let (code, body) = px.get(&path);
        assert_eq!(code, 200, "ironpxe GET {path} ({}): {body}", case.name);
        let parsed = parse_ironpxe_ipxe(&body);
        (format!("HTTP {path}"), body, parsed)
    };
    let tftp = |name: String| {
        let body = String::from_utf8(tftp_bytes(px, &name)).expect("utf-8 config");
        let parsed = parse_pxelinux(&body);
        (format!("TFTP {name}"), body, parsed)
    };
    let d = dashes(case.mac);
    match case.kind {
        Kind::Ipxe => vec![http(format!("/pxelinux.cfg/{d}"))],
        Kind::PxeIb => vec![
            tftp(format!("pxelinux.cfg/20-{d}")),
            tftp(format!("pxelinux.cfg/01-{d}")),
        ],
        Kind::Nothing => vec![
            http(format!("/pxelinux.cfg/{d}")),
            tftp(format!("pxelinux.cfg/01-{d}")),
        ],
    }
}

/// Compares ironpxe's answer for every case with what Ironic wrote; returns the differing
/// lines (for the log) of the first Kernel case of each kind.
fn compare_all(ironic: &Ironic, px: &Ironpxe, cases: &[Case], phase: &str) -> Vec<String> {
    let t = Instant::now();
    let tree = ironic_tree(ironic);
    let mut notes = Vec::new();
    for case in cases {
        let mine = ironpxe_configs(px, case);
        let Some((ironic_text, theirs)) = ironic_config(ironic, case) else {
            assert_eq!(
                case.kind,
                Kind::Nothing,
                "{phase}: Ironic wrote no config for {} ({})\ntree: {tree:#?}",
                case.name,
                case.uuid
            );
            let d = dashes(case.mac);
            let mentions: Vec<&String> = tree
                .iter()
                .filter(|p| p.contains(&case.uuid) || p.contains(&d) || p.contains(case.mac))
                .collect();
            assert!(
                mentions.is_empty(),
                "{phase}: Ironic wrote files for {}: {mentions:?}",
                case.name
            );
            for (asked, body, served) in &mine {
                assert!(
                    matches!(served, Served::Local { label } if label == "local"),
                    "{phase}: {} ({}) {asked}: ironpxe must boot locally, served:\n{body}",
                    case.name,
                    case.uuid
                );
            }
            continue;
        };
        assert_ne!(
            case.kind,
            Kind::Nothing,
            "{phase}: Ironic wrote a config for {}:\n{ironic_text}",
            case.name
        );
        let Served::Kernel {
            label: their_label,
            kernel: their_kernel,
            initrd: their_initrd,
            params: their_params,
            lines: their_lines,
        } = &theirs
        else {
            panic!(
                "{phase}: Ironic's config for {} boots locally:\n{ironic_text}",
                case.name
            );
        };
        assert_eq!(
            their_label, "deploy",
            "{phase}: Ironic boots its agent ramdisks from label `deploy` (rescue too)"
        );
        let fetch_theirs = |r: &str| match case.kind {
            Kind::Ipxe => http_bytes(r),
            _ => fs::read(ironic.tftpboot().join(r))
                .unwrap_or_else(|e| panic!("Ironic's {r} for {}: {e}", case.name)),
        };
        let their_k = fetch_theirs(their_kernel);
        let their_i = fetch_theirs(their_initrd);
        let (want_k, want_i) = (ironic.image(case.images.0).1, ironic.image(case.images.1).1);
        assert!(
            their_k == want_k && their_i == want_i,
            "{phase}: Ironic's {} images are not {:?} (test setup)",
            case.name,
            case.images
        );
        for (asked, body, served) in &mine {
            let ctx = format!(
                "{phase}: {} ({}, {}) {asked}\n--- ironpxe:\n{body}\n--- Ironic:\n{ironic_text}",
                case.name, case.uuid, case.action
            );
            let Served::Kernel {
                label,
                kernel,
                initrd,
                params,
                lines,
            } = served
            else {
                panic!("ironpxe boots locally where Ironic boots a ramdisk: {ctx}");
            };
            assert_eq!(label, case.action, "action: {ctx}");
            let (k, i) = match case.kind {
                Kind::Ipxe => (http_bytes(kernel), http_bytes(initrd)),
                _ => (tftp_bytes(px, kernel), tftp_bytes(px, initrd)),
            };
            assert!(
                k == their_k,
                "kernel bytes differ ({kernel} vs Ironic's {their_kernel}): {ctx}"
            );
            assert!(
                i == their_i,
                "initrd bytes differ ({initrd} vs Ironic's {their_initrd}): {ctx}"
            );
            assert_eq!(
                comparable(params),
                comparable(their_params),
                "kernel parameters (apart from ipa-global-request-id, BOOTIF, initrd=): {ctx}"
            );
            let theirs_only: BTreeSet<&String> = their_params
                .iter()
                .filter(|p| !params.contains(p))
                .collect();
            let mine_only: BTreeSet<&String> = params
                .iter()
                .filter(|p| !their_params.contains(p))
                .collect();
            notes.push(format!(
                "{} {asked}: Ironic only {theirs_only:?}, ironpxe only {mine_only:?}\n  \
                 Ironic:  {}\n  ironpxe: {}",
                case.name,
                their_lines.replace('\n', "\n           "),
                lines.replace('\n', "\n           ")
            ));
        }
    }
    eprintln!(
        "{phase}: all {} nodes match Ironic ({:.1?})",
        cases.len(),
        t.elapsed()
    );
    notes
}

fn start_ironpxe(ironic: &Ironic, state: Vec<(String, String)>) -> Ironpxe {
    let api = ironic.url();
    Ironpxe::start_with(Options {
        toml: format!(
            "[boot]\nipa_api_url = \"{api}\"\nextra_append_params = \"ipa-debug=1\"\n\
             [ironic]\nurl = \"{api}\"\ninterval_secs = 1\n\
             [images]\nfile_url_allowed_paths = [{:?}]\n",
            // The source images' directory, as in Ironic's own file_url_allowed_paths.
            ironic.dir().join("img_src")
        ),
        state,
        ..Options::default()
    })
}

/// Waits (bounded) until the served config for `case` boots locally.
fn wait_local(px: &Ironpxe, case: &Case) -> Duration {
    let t = Instant::now();
    let path = format!("/pxelinux.cfg/{}", dashes(case.mac));
    px.wait_until(&format!("{} to boot locally", case.name), || {
        let (code, body) = px.get(&path);
        code == 200 && matches!(parse_ironpxe_ipxe(&body), Served::Local { .. })
    });
    t.elapsed()
}

fn healthz(px: &Ironpxe) -> Value {
    let (code, body) = px.get("/healthz");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("healthz JSON")
}

#[test]
fn ironpxe_serves_what_a_real_ironic_writes_and_survives_it_going_away() {
    let t0 = Instant::now();
    let mut ironic = Ironic::start();
    let up = t0.elapsed();

    // ---- enrol and park, through the real API ----
    let t = Instant::now();
    let none = || json!({});
    let ipxe_direct = json!({"boot_interface": "ipxe", "deploy_interface": "direct"});
    let mut cases = Vec::new();
    let mut add = |name: &'static str,
                   fields: Value,
                   mac: &'static str,
                   client_id: Option<&str>,
                   steps: Vec<(&str, Value, &str)>,
                   kind: Kind,
                   action: &'static str| {
        let uuid = ironic.create_node(name, fields);
        ironic.create_port(&uuid, mac, client_id);
        ironic.drive(&uuid, &steps);
        let images = if action == "rescue" {
            ("rescue.kernel", "rescue.initramfs")
        } else {
            ("ipa.kernel", "ipa.initramfs")
        };
        cases.push(Case {
            name,
            uuid,
            mac,
            kind,
            action,
            images,
        });
    };
    let to_available = || {
        vec![
            ("manage", json!({}), "manageable"),
            ("provide", json!({}), "available"),
        ]
    };
    let mut deploy = to_available();
    deploy.push(("active", none(), "wait call-back"));
    add(
        "n-deploy-ipxe",
        ipxe_direct.clone(),
        "52:54:00:00:00:01",
        None,
        deploy.clone(),
        Kind::Ipxe,
        "deploy",
    );
    add(
        "n-ib-pxe",
        json!({"boot_interface": "pxe", "deploy_interface": "direct"}),
        IB_MAC,
        Some(IB_CLIENT_ID),
        deploy,
        Kind::PxeIb,
        "deploy",
    );
    add(
        "n-clean-auto",
        json!({"boot_interface": "ipxe", "deploy_interface": "direct", "automated_clean": true}),
        "52:54:00:00:00:02",
        None,
        vec![
            ("manage", none(), "manageable"),
            ("provide", none(), "clean wait"),
        ],
        Kind::Ipxe,
        "clean",
    );
    add(
        "n-clean-manual",
        ipxe_direct.clone(),
        "52:54:00:00:00:03",
        None,
        vec![
            ("manage", none(), "manageable"),
            (
                "clean",
                json!({"clean_steps": [{"interface": "deploy", "step": "erase_devices_metadata"}]}),
                "clean wait",
            ),
        ],
        Kind::Ipxe,
        "clean",
    );
    add(
        "n-inspect",
        json!({"boot_interface": "ipxe", "deploy_interface": "direct", "inspect_interface": "agent"}),
        "52:54:00:00:00:04",
        None,
        vec![
            ("manage", none(), "manageable"),
            ("inspect", none(), "inspect wait"),
        ],
        Kind::Ipxe,
        "inspect",
    );
    let mut rescue = to_available();
    rescue.push(("active", none(), "active"));
    rescue.push((
        "rescue",
        json!({"rescue_password": "ironpxe-test"}),
        "rescue wait",
    ));
    add(
        "n-rescue",
        json!({"boot_interface": "ipxe", "deploy_interface": "fake", "rescue_interface": "agent"}),
        "52:54:00:00:00:05",
        None,
        rescue,
        Kind::Ipxe,
        "rescue",
    );
    let mut active = to_available();
    active.push(("active", none(), "active"));
    add(
        "n-active",
        json!({"boot_interface": "fake", "deploy_interface": "fake"}),
        "52:54:00:00:00:06",
        None,
        active,
        Kind::Nothing,
        "local",
    );
    add(
        "n-available",
        ipxe_direct.clone(),
        "52:54:00:00:00:07",
        None,
        to_available(),
        Kind::Nothing,
        "local",
    );
    add(
        "n-manageable",
        ipxe_direct,
        "52:54:00:00:00:08",
        None,
        vec![("manage", none(), "manageable")],
        Kind::Nothing,
        "local",
    );
    let parked = t.elapsed();
    eprintln!("parked {} nodes in {parked:.1?}", cases.len());
    let n = cases.len() as f64;

    // ---- ironpxe from an EMPTY state directory, fed by the API only ----
    let px = start_ironpxe(&ironic, Vec::new());
    let t = Instant::now();
    px.wait_until("ironpxe to have every node from Ironic", || {
        px.metric("ironpxe_nodes") == n
    });
    eprintln!("ironpxe had all nodes {:.1?} after start", t.elapsed());
    let notes = compare_all(&ironic, &px, &cases, "live");
    for note in &notes {
        eprintln!("{note}");
    }
    assert_eq!(healthz(&px)["status"], "ok");
    assert_eq!(px.metric("ironpxe_ironic_poll_failing"), 0.0);

    // ---- abort two wait states: Ironic removes its files, ironpxe follows ----
    for name in ["n-inspect", "n-clean-manual"] {
        let case = cases.iter_mut().find(|c| c.name == name).expect("case");
        let failed = if name == "n-inspect" {
            "inspect failed"
        } else {
            "clean failed"
        };
        ironic.provision(&case.uuid, "abort", json!({}));
        ironic.wait_state(&case.uuid, failed);
        case.kind = Kind::Nothing;
        case.action = "local";
        let took = wait_local(&px, case);
        eprintln!("abort {name} -> {failed}: ironpxe boots it locally after {took:.1?}");
    }
    compare_all(&ironic, &px, &cases, "after abort");
    let before: Vec<_> = cases.iter().map(|c| ironpxe_configs(&px, c)).collect();

    // ---- Ironic down: the last good poll keeps serving ----
    ironic.stop();
    let t = Instant::now();
    px.wait_until("a failed poll to show", || {
        px.metric("ironpxe_ironic_poll_failing") == 1.0
    });
    eprintln!(
        "poll failure visible {:.1?} after Ironic stopped",
        t.elapsed()
    );
    let h = healthz(&px);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["ironic"]["last_error"].is_string(), "{h}");
    assert_eq!(px.metric("ironpxe_nodes"), n);
    let during: Vec<_> = cases.iter().map(|c| ironpxe_configs(&px, c)).collect();
    for (b, d) in before.iter().zip(&during) {
        for ((asked, text_b, _), (_, text_d, _)) in b.iter().zip(d) {
            assert_eq!(text_b, text_d, "{asked} changed while Ironic is down");
        }
    }
    compare_all(&ironic, &px, &cases, "Ironic down");

    // ---- ironpxe restarted while Ironic is still down: served from its cache file ----
    let cache = fs::read_to_string(px.state.path().join(".ironic-cache.json"))
        .expect("<state_dir>/.ironic-cache.json after good polls");
    drop(px);
    let px = start_ironpxe(&ironic, vec![(".ironic-cache.json".into(), cache)]);
    assert_eq!(
        px.metric("ironpxe_nodes"),
        n,
        "every node from the cache at start\n{}",
        px.log()
    );
    px.wait_until("the restarted ironpxe to report the failing poll", || {
        px.metric("ironpxe_ironic_poll_failing") == 1.0
    });
    assert_eq!(healthz(&px)["status"], "degraded");
    compare_all(&ironic, &px, &cases, "ironpxe restarted, Ironic down");

    // ---- Ironic back: ironpxe recovers ----
    ironic.start_again();
    let t = Instant::now();
    px.wait_until("polls to succeed again", || {
        px.metric("ironpxe_ironic_poll_failing") == 0.0
    });
    eprintln!(
        "ironpxe recovered {:.1?} after Ironic answered",
        t.elapsed()
    );
    let h = healthz(&px);
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["ironic"]["last_error"].is_null(), "{h}");
    compare_all(&ironic, &px, &cases, "Ironic back");
    ironic.stop();
    eprintln!(
        "total {:.1?} (Ironic first start {up:.1?}, parking {parked:.1?})",
        t0.elapsed()
    );
}

/// The ports a node has in Ironic: (address, pxe_enabled, extra.client-id as JSON text).
fn node_ports(ironic: &Ironic, node: &str) -> BTreeSet<(String, bool, String)> {
    let ports = ironic.api("GET", &format!("/v1/nodes/{node}/ports?detail=True"), None);
    ports["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or_default().to_owned(),
                p["pxe_enabled"].as_bool().unwrap_or_default(),
                p["extra"]["client-id"].to_string(),
            )
        })
        .collect()
}

/// `ironpxe inspect` against the real Ironic's own inspection: the ports ironpxe plans
/// (`--format json`, `ports_after`) are exactly the ports Ironic has after processing the
/// same inventory through `POST /v1/continue_inspection`; then, from the same starting
/// ports, `--apply` produces them through the API, and a second run has nothing to do.
/// The start holds what Ironic changes: a port under the GUID's first six bytes, a PXE flag
/// the inventory contradicts, a client-id in the other case, a port no interface has.
#[test]
fn inspect_plans_and_applies_what_ironics_own_inspection_does() {
    let ironic = Ironic::start();
    let node = ironic.create_node(
        "inspected",
        json!({"boot_interface": "ipxe", "deploy_interface": "direct", "inspect_interface": "agent"}),
    );
    let enrol = || {
        for (address, pxe, cid) in [
            ("52:54:00:aa:00:01", true, None),
            ("7c:fe:90:03:00:29", true, None),
            ("52:54:00:aa:00:03", false, Some("01:52:54:00:aa:00:03")),
            ("52:54:00:aa:00:09", true, None),
        ] {
            let mut body = json!({"address": address, "node_uuid": node, "pxe_enabled": pxe});
            if let Some(c) = cid {
                body["extra"] = json!({ "client-id": c });
            }
            ironic.api("POST", "/v1/ports", Some(&body));
        }
    };
    enrol();
    let upper_cid = IB_CLIENT_ID.to_uppercase();
    let inventory = json!({
        "interfaces": [
            {"name": "lo", "mac_address": "00:00:00:00:00:00", "ipv4_address": "127.0.0.1"},
            {"name": "eno1", "mac_address": "52:54:00:aa:00:01", "ipv4_address": null},
            {"name": "eno2", "mac_address": "52:54:00:aa:00:02", "ipv4_address": "192.0.2.12"},
            {"name": "eno3", "mac_address": "52:54:00:aa:00:03", "client_id": "01:52:54:00:AA:00:03"},
            {"name": "ib0", "mac_address": IB_MAC, "ipv4_address": "192.0.2.10", "client_id": upper_cid}
        ],
        "boot": {"current_boot_mode": "bios", "pxe_interface": "20-7c-fe-90-29-26-52"},
        "cpu": {"architecture": "x86_64"}
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("inventory.json");
    fs::write(&file, json!({ "inventory": inventory }).to_string()).expect("write");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironpxe"))
            .args([
                "inspect",
                &file.display().to_string(),
                "--ironic-url",
                &ironic.url(),
            ])
            .args(["--node", &node])
            .args(extra)
            .output()
            .expect("run inspect");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, text, _) = run(&["--format", "json"]);
    assert!(!ok, "pending changes fail the check:\n{text}");
    let plan: Value = serde_json::from_str(&text).expect("json plan");
    let planned: BTreeSet<(String, bool, String)> = plan["ports_after"]
        .as_array()
        .expect("ports_after")
        .iter()
        .map(|p| {
            let address = p["address"].as_str().unwrap_or_default().to_owned();
            (
                address,
                p["pxe_enabled"] == json!(true),
                p["client_id"].to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, bool, String)> = [
        ("52:54:00:aa:00:01", false, Value::Null),
        ("7c:fe:90:03:00:29", false, Value::Null),
        ("52:54:00:aa:00:03", false, json!("01:52:54:00:AA:00:03")),
        ("52:54:00:aa:00:09", false, Value::Null),
        (IB_MAC, true, json!(upper_cid)),
    ]
    .into_iter()
    .map(|(a, p, c)| (a.to_owned(), p, c.to_string()))
    .collect();
    assert_eq!(planned, expected, "{text}");

    // Ironic's own inspection of the same inventory.
    ironic.drive(
        &node,
        &[
            ("manage", json!({}), "manageable"),
            ("inspect", json!({}), "inspect wait"),
        ],
    );
    ironic.api(
        "POST",
        &format!("/v1/continue_inspection?node_uuid={node}"),
        Some(&json!({ "inventory": inventory })),
    );
    ironic.wait_state(&node, "manageable");
    assert_eq!(node_ports(&ironic, &node), planned, "Ironic's inspection");

    // The same start again, and ironpxe makes the changes.
    let ports = ironic.api("GET", &format!("/v1/nodes/{node}/ports"), None);
    for p in ports["ports"].as_array().expect("ports") {
        let uuid = p["uuid"].as_str().expect("uuid");
        let (code, body) = ironic.try_api("DELETE", &format!("/v1/ports/{uuid}"), None);
        assert_eq!(code, 204, "{body}");
    }
    enrol();
    let (ok, text, err) = run(&["--apply"]);
    assert!(ok, "{text}{err}");
    assert!(
        text.contains("applied: created port") && text.contains("result: applied 5 change(s)"),
        "{text}"
    );
    assert_eq!(
        node_ports(&ironic, &node),
        planned,
        "after --apply:\n{text}"
    );
    let (ok, text, err) = run(&[]);
    assert!(ok, "nothing left to do:\n{text}{err}");
    assert!(text.contains("result: ok:"), "{text}");
}

/// Entries in each answer the proxy forwarded: (request path, entries listed).
type Answers = std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>;

/// A counting proxy in front of Ironic: the tests' HTTP server logs every request ironpxe
/// makes, and each is forwarded to Ironic as HTTP/1.0 (so the answer is never chunked);
/// `answers` gets how many entries each listing answer held.
fn counting_proxy(api_port: u16, answers: Answers) -> common::http_server::HttpServer {
    use common::http_server::{HttpServer, Reply};
    use std::io::{Read, Write};
    HttpServer::start(move |req| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api_port)).expect("reach Ironic");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut head = format!(
            "{} {} HTTP/1.0\r\nHost: 127.0.0.1:{api_port}\r\n",
            req.method, req.path
        );
        for (k, v) in &req.headers {
            if k.starts_with("x-openstack") || k == "accept" || k == "content-type" {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
        s.write_all(head.as_bytes()).expect("forward head");
        s.write_all(&req.body).expect("forward body");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("Ironic's answer");
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP head from Ironic");
        let status = String::from_utf8_lossy(&out[..split])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status from Ironic");
        let body = out[split + 4..].to_vec();
        let listed = serde_json::from_slice::<Value>(&body).ok().map_or(0, |v| {
            ["nodes", "ports"]
                .iter()
                .filter_map(|k| v[k].as_array().map(Vec::len))
                .sum()
        });
        answers
            .lock()
            .expect("answers")
            .push((req.path.clone(), listed));
        Reply::new(status, body).header("Content-Type", "application/json")
    })
}

fn refresh_mac(i: usize) -> String {
    format!("52:54:00:ab:{:02x}:{:02x}", i / 256, i % 256)
}

/// Enrols nodes `from..to` (`enroll` state, fake hardware), one port each.
fn enrol(ironic: &Ironic, from: usize, to: usize) -> Vec<(String, String)> {
    (from..to)
        .map(|i| {
            let node = ironic.create_node(&format!("refresh-{i}"), json!({}));
            let port = ironic.create_port(&node, &refresh_mac(i), None);
            (node, port)
        })
        .collect()
}

/// The iPXE script ironpxe serves for a MAC: (status, body).
fn served(px: &Ironpxe, mac: &str) -> (u16, String) {
    px.get(&format!("/ipxe/{mac}"))
}

/// ironpxe's completed refreshes (`/healthz`).
fn polls_ok(px: &Ironpxe) -> u64 {
    healthz(px)["ironic"]["polls_ok"]
        .as_u64()
        .expect("polls_ok")
}

/// Over an idle stretch of at least `cycles` refreshes: (refreshes, requests ironpxe made
/// per kind). Every request must be a one-page change probe answered with at most a few
/// entries (the rows stamped exactly with the mark), or a page of a uuid walk. Starts once the
/// probes' windows have settled (`change_overlap_secs` = 2 with `interval_secs` = 1).
fn idle_requests(
    px: &Ironpxe,
    proxy: &common::http_server::HttpServer,
    answers: &Answers,
    cycles: u64,
) -> (u64, usize, usize) {
    // A mark settles once a probe starts `change_overlap_secs` (2 s) after the probe that
    // moved it, or Ironic's clock (whole seconds in its `Date`) is past it by as much: counting
    // refreshes alone fell short on a loaded machine (a probe still paging through the 40
    // rows just enrolled). Wait that long, then three refreshes more.
    std::thread::sleep(Duration::from_secs(4));
    let warm = polls_ok(px) + 3;
    px.wait_until("the probes to settle", || polls_ok(px) >= warm);
    let answered0 = answers.lock().expect("answers").len();
    let (p0, seen0) = (polls_ok(px), proxy.requests().len());
    px.wait_until(&format!("{cycles} idle refreshes"), || {
        polls_ok(px) >= p0 + cycles
    });
    let seen = proxy.requests();
    let p1 = polls_ok(px);
    let new = &seen[seen0..];
    let probes = new.iter().filter(|r| r.path.contains("sort_key=")).count();
    let walks = new
        .iter()
        .filter(|r| r.path.contains("fields=uuid&"))
        .count();
    for r in new {
        assert!(
            r.method == "GET"
                && ((r.path.contains("sort_key=") && !r.path.contains("marker="))
                    || r.path.contains("fields=uuid&")),
            "an idle refresh made a request other than a one-page probe or a uuid walk: {} {}\n{:#?}",
            r.method,
            r.path,
            new.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
    let answered = answers.lock().expect("answers")[answered0..].to_vec();
    for (path, listed) in &answered {
        assert!(
            !path.contains("sort_key=") || *listed <= 3,
            "an idle probe listed {listed} entries: {path}"
        );
    }
    (p1 - p0, probes, walks)
}

#[test]
fn the_change_driven_refresh_serves_changes_and_deletions_and_is_quiet_when_idle() {
    let t0 = Instant::now();
    let ironic = Ironic::start();
    let mut fleet = enrol(&ironic, 0, 20);
    eprintln!("refresh: 20 nodes enrolled at {:.1?}", t0.elapsed());
    let answers = Answers::default();
    let proxy = counting_proxy(ironic.api_port, answers.clone());
    let px = Ironpxe::start_with(Options {
        toml: format!(
            "[ironic]\nurl = \"{}\"\ninterval_secs = 1\nreconcile_secs = 3\n\
             change_overlap_secs = 2\npage_limit = 25\n",
            proxy.base
        ),
        state: vec![],
        ..Options::default()
    });
    let counts = |px: &Ironpxe| {
        let h = healthz(px);
        (h["nodes"].as_u64(), h["ports"].as_u64())
    };
    px.wait_until("the first walk", || counts(&px) == (Some(20), Some(20)));
    let first = proxy.requests();
    assert!(
        first.iter().any(|r| r
            .path
            .starts_with("/v1/nodes?fields=uuid,name,provision_state")),
        "the walk asks only for the fields ironpxe reads: {:?}",
        first.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(
        !first
            .iter()
            .any(|r| r.path.contains("detail=True") && !r.path.contains("sort_key=")),
        "no detail walk"
    );

    // (a) A provision-state change through the API is served.
    let (n0, _) = &fleet[0];
    let (code, body) = served(&px, &refresh_mac(0));
    assert!(
        code == 200 && body.contains("provision state enroll"),
        "{code} {body}"
    );
    let t = Instant::now();
    ironic.provision(n0, "manage", json!({}));
    ironic.wait_state(n0, "manageable");
    px.wait_until("the manageable state to be served", || {
        served(&px, &refresh_mac(0))
            .1
            .contains("provision state manageable")
    });
    eprintln!(
        "refresh: provision state served {:.1?} after the API call",
        t.elapsed()
    );

    // (b) A PATCH to a node field and to a port's address are served.
    let (n1, _) = &fleet[1];
    ironic.api(
        "PATCH",
        &format!("/v1/nodes/{n1}"),
        Some(&json!([{"op": "replace", "path": "/name", "value": "renamed-by-patch"}])),
    );
    px.wait_until("the new name to be served", || {
        served(&px, &refresh_mac(1)).1.contains("renamed-by-patch")
    });
    let (_, p2) = &fleet[2];
    let moved = "52:54:00:cd:00:02";
    ironic.api(
        "PATCH",
        &format!("/v1/ports/{p2}"),
        Some(&json!([{"op": "replace", "path": "/address", "value": moved}])),
    );
    px.wait_until("the port's new address to be served", || {
        served(&px, moved).0 == 200 && served(&px, &refresh_mac(2)).0 == 404
    });

    // (d) Idle: a bounded number of small requests per refresh, whatever the fleet's size.
    let (cycles20, probes20, walks20) = idle_requests(&px, &proxy, &answers, 5);
    fleet.extend(enrol(&ironic, 20, 60));
    px.wait_until("40 new nodes (created_at probe)", || {
        counts(&px) == (Some(60), Some(60))
    });
    // A probe longer than a page follows pages by marker on the sorted listing: ironpxe's
    // client, five to a page, down to a cutoff older than every row.
    let client = ironpxe::state::source::ironic::Client::new(
        &ironpxe::state::source::ironic::IronicConfig {
            url: Some(ironic.url()),
            page_limit: Some(5),
            ..Default::default()
        },
    )
    .expect("client");
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(client.probe(
            ironpxe::state::source::ironic::Kind::Nodes,
            ironpxe::state::source::ironic::SortKey::CreatedAt,
            "",
            ironpxe::state::source::refresh::Stamp::parse("2000-01-01T00:00:00Z"),
            ironpxe::state::source::ironic::Pages {
                first: 2,
                limit: 100,
                max: 100,
            },
        ))
        .expect("probe");
    let created: Vec<&str> = probe
        .entries
        .iter()
        .map(|n| n["created_at"].as_str().unwrap_or_default())
        .collect();
    let names: BTreeSet<&str> = probe
        .entries
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default())
        .collect();
    assert!(probe.complete);
    assert_eq!((created.len(), names.len()), (60, 60), "every row once");
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first across pages: {created:?}"
    );
    let (cycles60, probes60, walks60) = idle_requests(&px, &proxy, &answers, 5);
    eprintln!(
        "refresh: idle, 20 nodes: {probes20} probes + {walks20} uuid walks in {cycles20} refreshes; \
         60 nodes: {probes60} + {walks60} in {cycles60}"
    );
    for (n, cycles, probes, walks) in [
        (20, cycles20, probes20, walks20),
        (60, cycles60, probes60, walks60),
    ] {
        // Three probes a refresh (node updates, new nodes, new ports) and port updates every
        // fifth. A window can cut a refresh in two: one more refresh's worth at most.
        assert!(
            probes as u64 <= 3 * (cycles + 1) + (cycles + 1) / 5 + 1,
            "{n} nodes: {probes} probe requests in {cycles} refreshes"
        );
        assert!(
            probes as u64 >= 3 * (cycles - 1),
            "{n} nodes: every refresh probes: {probes} in {cycles}"
        );
        // Nodes and ports, at 25 a page, once per reconcile_secs (3).
        let pages = 2 * (n / 25 + 1) as u64;
        assert!(
            walks as u64 <= pages * (cycles / 3 + 2),
            "{n} nodes: {walks} uuid-walk pages in {cycles} refreshes (reconcile_secs = 3)"
        );
    }

    // (c) Deletions through the API disappear after a reconciliation.
    let (_, p3) = &fleet[3];
    ironic.api("DELETE", &format!("/v1/ports/{p3}"), None);
    px.wait_until("the deleted port to vanish", || {
        served(&px, &refresh_mac(3)).0 == 404 && counts(&px) == (Some(60), Some(59))
    });
    let (n4, _) = &fleet[4];
    ironic.api("DELETE", &format!("/v1/nodes/{n4}"), None);
    px.wait_until("the deleted node to vanish", || {
        served(&px, &refresh_mac(4)).0 == 404 && counts(&px) == (Some(59), Some(58))
    });
    let h = healthz(&px);
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["ironic"]["polls_failed"], 0, "{h}");
    // Everything above came through probes and reconciliations: one walk, at the start.
    let walks = px.metric(r#"ironpxe_ironic_refresh_total{what="walk"}"#);
    let reconciles = px.metric(r#"ironpxe_ironic_refresh_total{what="reconcile"}"#);
    let changes = px.metric(r#"ironpxe_ironic_refresh_total{what="change"}"#);
    eprintln!("refresh: {walks} walk, {reconciles} reconciliations, {changes} changes taken in");
    assert_eq!(walks, 1.0, "no fallback walk");
    assert!(reconciles >= 2.0, "{reconciles}");
    // 40 nodes and 40 ports enrolled, a state change, a rename, a moved port, two deletions
    // (the node's port with it): at least 86, and re-reads of unchanged rows count nothing.
    assert!((86.0..200.0).contains(&changes), "{changes} changes");
    eprintln!("refresh: done in {:.1?}", t0.elapsed());
}
