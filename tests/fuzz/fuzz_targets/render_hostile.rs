//! Hostile node data through the renderer. The input is `[state, shape, fields…]` with the
//! fields separated by 0xFF (never part of UTF-8): node name, an `extra` value,
//! `kernel_append_params`, the kernel and ramdisk references (used for deploy, rescue and
//! instance images alike); a missing field is left out of the node. The node JSON is built
//! with serde_json, so any string is valid JSON. A benign node of the same shape (state,
//! interfaces, capabilities, port kind, which fields are present) is rendered beside it.
//!
//! Invariants, for every format and hardware type: the hostile render is an error, or it
//! has exactly the benign render's line count, the same multiset of first words per line
//! (no new command), the same action, and only printable ASCII and `\n`; an iPXE script read
//! as iPXE reads it (`ironpxe_fuzz::ipxe`: words, `#` comments, `||`/`&&`/`;`, labels,
//! `${…}` expansions) has exactly the benign script's commands — same count, lines, labels,
//! names, separators and expansions; and when the benign node fails to render, the hostile
//! one fails too.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ironpxe::model::addr::HwType;
use ironpxe::model::addr::Mac;
use ironpxe::model::boot::BootConfig;
use ironpxe::model::node::{ProvisionState, StateDoc};
use ironpxe::render::{Format, Renderer, Server};
use ironpxe::state::{IndexConfig, Store, Update};
use ironpxe_fuzz::{ipxe, repo};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const HOSTILE_UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const BENIGN_UUID: &str = "2be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const ETH_MAC: &str = "52:54:00:00:00:01";
const IB_MAC: &str = "7c:fe:90:29:26:52";
const IB_CLIENT_ID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
const BOOT_INTERFACES: [&str; 4] = ["pxe", "ipxe", "http", "redfish-virtual-media"];

fn boot_config() -> BootConfig {
    BootConfig {
        image_base_url: Some("http://glance.example:9292/v2/images".into()),
        ..ironpxe_fuzz::boot_config()
    }
}

fn renderer() -> &'static Renderer {
    static R: OnceLock<Renderer> = OnceLock::new();
    R.get_or_init(|| {
        ipxe::self_check();
        Renderer::new(repo().join("templates"), boot_config())
            .unwrap_or_else(|e| panic!("fuzz setup: templates: {e:?}"))
    })
}

fn server() -> Server {
    Server {
        http_url: "http://192.0.2.1:8080".into(),
        tftp_server: "192.0.2.1".into(),
    }
}

/// The node's string fields; `None` leaves the field out.
struct Fields {
    name: Option<String>,
    extra: Option<String>,
    append: Option<String>,
    kernel: Option<String>,
    ramdisk: Option<String>,
}

impl Fields {
    fn parse(data: &[u8]) -> Fields {
        let mut it = data
            .split(|&b| b == 0xff)
            .map(|f| String::from_utf8_lossy(f).into_owned());
        Fields {
            name: it.next(),
            extra: it.next(),
            append: it.next(),
            kernel: it.next(),
            ramdisk: it.next(),
        }
    }

    /// Benign values wherever this one has a field.
    fn benign(&self) -> Fields {
        let b = |f: &Option<String>, v: &str| f.as_ref().map(|_| v.to_owned());
        Fields {
            name: b(&self.name, "n1"),
            extra: b(&self.extra, "r1"),
            append: b(&self.append, "console=ttyS0,115200n8 %default%"),
            kernel: b(&self.kernel, "http://img.example/ipa.kernel"),
            ramdisk: b(&self.ramdisk, "http://img.example/ipa.initramfs"),
        }
    }
}

/// Inserts `key: value` when the value is present.
fn put(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.into(), Value::String(v.clone()));
    }
}

fn node_json(uuid: &str, state: &str, shape: u8, f: &Fields) -> Value {
    let infiniband = shape & 1 != 0;
    let append_in_instance = shape & 2 != 0;
    let ramdisk_deploy = shape & 4 != 0;
    let netboot = shape & 8 != 0;
    let boot_interface = BOOT_INTERFACES[usize::from(shape >> 4) % BOOT_INTERFACES.len()];
    let mut driver_info = Map::new();
    let mut instance_info = Map::new();
    for (k, v) in [
        ("deploy_kernel", &f.kernel),
        ("deploy_ramdisk", &f.ramdisk),
        ("rescue_kernel", &f.kernel),
        ("rescue_ramdisk", &f.ramdisk),
    ] {
        put(&mut driver_info, k, v);
    }
    for (k, v) in [
        ("kernel", &f.kernel),
        ("ramdisk", &f.ramdisk),
        ("boot_iso", &f.kernel),
    ] {
        put(&mut instance_info, k, v);
    }
    let append_to = if append_in_instance {
        &mut instance_info
    } else {
        &mut driver_info
    };
    put(append_to, "kernel_append_params", &f.append);
    if netboot {
        instance_info.insert("capabilities".into(), json!({"boot_option": "netboot"}));
    }
    let mut node = Map::new();
    node.insert("uuid".into(), json!(uuid));
    put(&mut node, "name", &f.name);
    node.insert("provision_state".into(), json!(state));
    node.insert("boot_interface".into(), json!(boot_interface));
    node.insert(
        "deploy_interface".into(),
        json!(if ramdisk_deploy { "ramdisk" } else { "direct" }),
    );
    node.insert("driver_info".into(), Value::Object(driver_info));
    node.insert("instance_info".into(), Value::Object(instance_info));
    let mut extra = Map::new();
    put(&mut extra, "note", &f.extra);
    if let Some(v) = &f.extra {
        // The value as a key too, and as a nested value the context drops.
        extra.insert(v.clone(), json!(true));
        extra.insert("nested".into(), json!({ "v": v }));
    }
    node.insert("extra".into(), Value::Object(extra));
    let port = if infiniband {
        json!({"address": IB_MAC, "extra": {"client-id": IB_CLIENT_ID}})
    } else {
        json!({"address": ETH_MAC})
    };
    node.insert("ports".into(), json!([port]));
    Value::Object(node)
}

/// Loads `node` into a fresh store.
fn load(node: &Value) -> Store {
    let bytes = serde_json::to_vec(node).expect("json");
    let doc = StateDoc::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("node JSON built by the harness does not load: {e}\n{node}"));
    let store = Store::new(IndexConfig::default());
    store.apply(vec![(
        ironpxe::state::source::dir::source_id("n.json"),
        Update::Replace(doc),
    )]);
    store
}

/// Renders the store's node, matched by `mac`, in `format` for `hw`: body and action.
fn render(
    store: &Store,
    format: Format,
    hw: Option<HwType>,
    mac: &Mac,
) -> Result<(String, String), String> {
    let s = store.current();
    let m = s.by_mac(mac).expect("the node's only port is indexed");
    renderer()
        .render(Some(&m), format, hw, &server())
        .map(|r| (r.body.to_string(), r.action.to_string()))
        .map_err(|e| e.to_string())
}

fn first_words(body: &str) -> BTreeMap<&str, usize> {
    let mut words = BTreeMap::new();
    for line in body.lines() {
        *words
            .entry(line.split_whitespace().next().unwrap_or(""))
            .or_insert(0) += 1;
    }
    words
}

/// The hostile script runs exactly the benign one's commands, as iPXE reads them.
fn same_ipxe_commands(hostile: &str, benign: &str, ctx: &str) {
    let read = |body: &str, which: &str| {
        ipxe::parse(body.as_bytes())
            .unwrap_or_else(|e| panic!("INVARIANT BROKEN: {ctx}: {which} script: {e}\n{body}"))
    };
    let (h, b) = (read(hostile, "hostile"), read(benign, "benign"));
    let shapes = |c: &[ipxe::Command]| {
        c.iter()
            .map(|c| format!("{:?}", c.shape()))
            .collect::<Vec<_>>()
    };
    if shapes(&h) != shapes(&b) {
        panic!(
            "INVARIANT BROKEN: {ctx}: iPXE runs other commands ({} where the benign script has {})\n--- hostile\n{}\n--- benign\n{}",
            h.len(),
            b.len(),
            shapes(&h).join("\n"),
            shapes(&b).join("\n")
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [state, shape, rest @ ..] = data else {
        return;
    };
    let known = ProvisionState::KNOWN;
    let state = known
        .get(usize::from(*state))
        .map_or("levitating", |(name, _)| *name);
    let hostile = Fields::parse(rest);
    let benign = hostile.benign();
    let hostile_node = load(&node_json(HOSTILE_UUID, state, *shape, &hostile));
    let benign_node = load(&node_json(BENIGN_UUID, state, *shape, &benign));
    // Each input starts from an empty render cache (fresh stores reuse revisions).
    renderer().set_boot_config(boot_config());
    let mac = Mac::parse(if shape & 1 != 0 { IB_MAC } else { ETH_MAC }).expect("mac");
    for format in Format::ALL {
        for hw in [None, Some(HwType::Ethernet), Some(HwType::Infiniband)] {
            let good = render(&benign_node, format, hw, &mac);
            let bad = render(&hostile_node, format, hw, &mac);
            let ctx = || format!("state {state:?}, shape {shape:#04x}, {format}, {hw:?}");
            let (good, bad) = match (good, bad) {
                (Ok(g), Ok(b)) => (g, b),
                (_, Err(_)) => continue,
                (Err(e), Ok((b, _))) => panic!(
                    "INVARIANT BROKEN: {}: the benign node fails ({e}) but the hostile one renders:\n{b}",
                    ctx()
                ),
            };
            let (gb, ga) = (&good.0, &good.1);
            let (hb, ha) = (&bad.0, &bad.1);
            assert_eq!(ha, ga, "INVARIANT BROKEN: {}: action differs", ctx());
            if let Some(c) = hb.chars().find(|&c| c != '\n' && !(' '..='~').contains(&c)) {
                panic!("INVARIANT BROKEN: {}: output holds {c:?}:\n{hb}", ctx());
            }
            if hb.lines().count() != gb.lines().count() {
                panic!(
                    "INVARIANT BROKEN: {}: {} lines where the benign node has {}\n--- hostile\n{hb}\n--- benign\n{gb}",
                    ctx(),
                    hb.lines().count(),
                    gb.lines().count()
                );
            }
            if first_words(hb) != first_words(gb) {
                panic!(
                    "INVARIANT BROKEN: {}: lines start with other words\n--- hostile\n{hb}\n--- benign\n{gb}",
                    ctx()
                );
            }
            if matches!(format, Format::Ipxe | Format::IpxeEntry) {
                same_ipxe_commands(hb, gb, &ctx());
            }
        }
    }
});
