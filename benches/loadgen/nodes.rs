//! The node set: every identity derives from the node index, so clients know their addresses
//! without reading the JSON. `gen` writes it as Ironic's API would list it; `gen-file`,
//! `static-tree` and `wrk-paths` write what the other measurements read.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use ironpxe::model::addr::{Guid, IbHwAddr, Mac, PxeHwAddr, SystemUuid, MELLANOX_CLIENT_ID_PREFIX};
use serde_json::{json, Value};

use crate::{err, Res};

pub const SEED: u64 = 0x1b07_5eed_0000_2026;

pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn uuid_bytes(salt: u64, i: u64) -> [u8; 16] {
    let a = splitmix(SEED ^ salt.rotate_left(32) ^ i);
    let b = splitmix(a);
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&a.to_be_bytes());
    u[8..].copy_from_slice(&b.to_be_bytes());
    u[6] = 0x40 | (u[6] & 0x0f); // version 4: PXELINUX asks for it (byte 6 in 0x10..=0xEF)
    u[8] = 0x80 | (u[8] & 0x3f);
    u
}

pub fn uuid_string(u: [u8; 16]) -> String {
    SystemUuid(u).to_string()
}

fn node_uuid(i: usize) -> String {
    uuid_string(uuid_bytes(1, i as u64))
}

fn port_uuid(i: usize, p: usize) -> String {
    uuid_string(uuid_bytes(2, (i * 2 + p) as u64))
}

/// Even nodes are InfiniBand (both ports with `extra.client-id`), odd ones Ethernet.
fn node_is_ib(i: usize) -> bool {
    i % 2 == 0
}

pub fn guid_of(v: u32, enrolled: bool) -> Guid {
    let b = v.to_be_bytes();
    let oui = if enrolled { 0xa1 } else { 0xa2 };
    Guid([0x0c, 0x42, oui, 0xff, 0xfe, b[1], b[2], b[3]])
}

pub fn eth_mac_of(v: u32, enrolled: bool) -> Mac {
    let b = v.to_be_bytes();
    Mac([
        0x52,
        if enrolled { 0x54 } else { 0x55 },
        b[0],
        b[1],
        b[2],
        b[3],
    ])
}

/// A port as Ironic stores it: `address` (Ethernet MAC or IB MAC) and, for IB, the GUID.
#[derive(Clone, Copy)]
pub struct PortId {
    address: Mac,
    guid: Option<Guid>,
}

impl PortId {
    pub fn pxe_hw(&self) -> PxeHwAddr {
        match self.guid {
            Some(_) => PxeHwAddr::Infiniband(IbHwAddr::Mac(self.address)),
            None => PxeHwAddr::Ethernet(self.address),
        }
    }
}

pub fn port_of(i: usize, p: usize) -> PortId {
    let v = (i * 2 + p) as u32;
    if node_is_ib(i) {
        let g = guid_of(v, true);
        PortId {
            address: g.ib_mac(),
            guid: Some(g),
        }
    } else {
        PortId {
            address: eth_mac_of(v, true),
            guid: None,
        }
    }
}

/// A plausible, deterministic API timestamp on 2026-11-25.
fn ts(i: usize, secs: usize) -> String {
    let s = (i * 37 + secs) % 86_400;
    format!(
        "2026-11-25T{:02}:{:02}:{:02}.{:06}+00:00",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        (i * 7919) % 1_000_000
    )
}

fn links(kind: &str, uuid: &str, sub: &str) -> Value {
    json!([
        {"href": format!("http://127.0.0.1:6385/v1/{kind}/{uuid}{sub}"), "rel": "self"},
        {"href": format!("http://127.0.0.1:6385/{kind}/{uuid}{sub}"), "rel": "bookmark"}
    ])
}

fn step(name: &str, prio: u32) -> Value {
    json!({"step": name, "priority": prio, "abortable": true, "argsinfo": null, "interface": "deploy"})
}

/// One node shaped like `GET /v1/nodes?detail=True` (Ironic 39), in a state whose config
/// boots a ramdisk.
fn node_json(i: usize, images: &str) -> Value {
    let uuid = node_uuid(i);
    let (state, target) = match i % 4 {
        0 => ("wait call-back", "active"),
        1 => ("clean wait", "available"),
        2 => ("inspect wait", "manageable"),
        _ => ("rescue wait", "rescue"),
    };
    let ib = node_is_ib(i);
    json!({
        "uuid": uuid,
        "created_at": ts(i, 0),
        "updated_at": ts(i, 3),
        "automated_clean": null,
        "bios_interface": "no-bios",
        "boot_interface": "pxe",
        "boot_mode": null,
        "clean_step": {},
        "conductor_group": "",
        "console_enabled": false,
        "console_interface": "no-console",
        "disable_power_off": false,
        "deploy_interface": "direct",
        "deploy_step": if i % 4 == 0 { step("deploy", 100) } else { json!({}) },
        "description": null,
        "driver": "ipmi",
        "driver_info": {
            "deploy_kernel": format!("file://{images}/ipa.kernel"),
            "deploy_ramdisk": format!("file://{images}/ipa.initramfs"),
            "rescue_kernel": format!("file://{images}/rescue.kernel"),
            "rescue_ramdisk": format!("file://{images}/rescue.initramfs"),
            "ipmi_address": format!("127.{}.{}.{}", 100 + (i >> 16) % 100, (i >> 8) & 255, i & 255),
            "ipmi_username": "admin",
            "ipmi_password": "******"
        },
        "driver_internal_info": {
            "is_whole_disk_image": true,
            "deploy_steps": if i % 4 == 0 {
                json!([step("deploy", 100), step("write_image", 80)])
            } else {
                json!([])
            },
            "last_power_state_change": ts(i, 2).trim_end_matches("+00:00"),
            "deploy_boot_mode": "bios",
            "deploy_step_index": 0
        },
        "extra": {},
        "fault": null,
        "firmware_interface": "no-firmware",
        "health": null,
        "inspection_finished_at": null,
        "inspection_started_at": null,
        "inspect_interface": "agent",
        "instance_info": {
            "image_source": "http://127.0.0.1:8088/images/user.img",
            "image_checksum": "fccae2a5b2a9ae79bbfb0ec4bed3246ddae48d7590d8341d3899b649eb284b82",
            "image_type": "whole-disk",
            "image_url": "******"
        },
        "instance_name": null,
        "instance_uuid": null,
        "last_error": null,
        "lessee": null,
        "maintenance": false,
        "maintenance_reason": null,
        "management_interface": "ipmitool",
        "name": format!("bench-{i:06}"),
        "network_data": {},
        "network_interface": "flat",
        "owner": null,
        "parent_node": null,
        "power_interface": "ipmitool",
        "power_state": "power on",
        "properties": {
            "cpus": 64, "memory_mb": 524_288, "local_gb": 1800, "cpu_arch": "x86_64",
            "capabilities": "boot_mode:bios",
            "vendor": if ib { "mellanox-attached" } else { "generic" }
        },
        "protected": false,
        "protected_reason": null,
        "provision_state": state,
        "provision_updated_at": ts(i, 3),
        "raid_config": {},
        "raid_interface": "no-raid",
        "rescue_interface": "agent",
        "reservation": null,
        "resource_class": "baremetal",
        "retired": false,
        "retired_reason": null,
        "secure_boot": null,
        "service_step": {},
        "shard": null,
        "storage_interface": "noop",
        "target_power_state": null,
        "target_provision_state": target,
        "target_raid_config": {},
        "traits": [],
        "vendor_interface": "ipmitool",
        "links": links("nodes", &node_uuid(i), ""),
        "conductor": "conductor-1",
        "allocation_uuid": null,
        "chassis_uuid": null,
        "ports": links("nodes", &node_uuid(i), "/ports"),
        "states": links("nodes", &node_uuid(i), "/states"),
        "portgroups": links("nodes", &node_uuid(i), "/portgroups"),
        "volume": links("nodes", &node_uuid(i), "/volume")
    })
}

fn port_json(i: usize, p: usize) -> Value {
    let id = port_of(i, p);
    let uuid = port_uuid(i, p);
    let extra = match id.guid {
        Some(g) => json!({"client-id": g.client_id(MELLANOX_CLIENT_ID_PREFIX).to_string()}),
        None => json!({}),
    };
    json!({
        "uuid": uuid,
        "created_at": ts(i, 1),
        "updated_at": null,
        "address": id.address.to_string(),
        "extra": extra,
        "internal_info": {},
        "is_smartnic": false,
        "local_link_connection": {
            "switch_id": format!("0c:42:a1:00:{:02x}:{:02x}", (i >> 8) & 255, i & 255),
            "port_id": format!("{}{}", if id.guid.is_some() { "ib" } else { "Ethernet1/" }, p + 1),
            "switch_info": format!("leaf-{:03}", i / 48)
        },
        "physical_network": if id.guid.is_some() { "ib-fabric" } else { "provisioning" },
        "pxe_enabled": true,
        "node_uuid": node_uuid(i),
        "name": null,
        "description": null,
        "vendor": null,
        "category": null,
        "available_for_dynamic_portgroup": true,
        "links": links("ports", &uuid, ""),
        "portgroup_uuid": null
    })
}

/// Writes `{"<key>": [ … ]}` pretty-printed like the API, one object at a time.
fn write_list(path: &Path, key: &str, count: usize, item: impl Fn(usize) -> Value) -> Res<u64> {
    let tmp = path.with_extension("json.tmp");
    let mut w = io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
    writeln!(w, "{{\n  \"{key}\": [")?;
    for k in 0..count {
        let text = serde_json::to_string_pretty(&item(k))?;
        for (n, line) in text.lines().enumerate() {
            if n > 0 {
                w.write_all(b"\n")?;
            }
            w.write_all(b"    ")?;
            w.write_all(line.as_bytes())?;
        }
        w.write_all(if k + 1 < count { b",\n" } else { b"\n" })?;
    }
    writeln!(w, "  ]\n}}")?;
    w.flush()?;
    drop(w);
    fs::rename(&tmp, path)?;
    Ok(fs::metadata(path)?.len())
}

#[derive(Args)]
pub struct GenArgs {
    /// Number of nodes (2 ports each).
    #[arg(long)]
    nodes: usize,
    /// Directory to write nodes.json and ports.json into.
    #[arg(long)]
    state_dir: PathBuf,
    /// Directory of the deploy/rescue images the nodes reference (file:// URLs).
    #[arg(long)]
    images: PathBuf,
}

pub fn gen(a: &GenArgs) -> Res<()> {
    fs::create_dir_all(&a.state_dir)?;
    fs::create_dir_all(&a.images)?;
    for name in [
        "ipa.kernel",
        "ipa.initramfs",
        "rescue.kernel",
        "rescue.initramfs",
    ] {
        let p = a.images.join(name);
        if !p.exists() {
            fs::write(&p, format!("{name}: a stand-in image for benchmarks\n"))?;
        }
    }
    let images = fs::canonicalize(&a.images)?;
    let images = images.to_string_lossy();
    let t = Instant::now();
    let nb = write_list(&a.state_dir.join("nodes.json"), "nodes", a.nodes, |i| {
        node_json(i, &images)
    })?;
    let pb = write_list(&a.state_dir.join("ports.json"), "ports", a.nodes * 2, |k| {
        port_json(k / 2, k % 2)
    })?;
    eprintln!(
        "gen: {} nodes ({} bytes, {:.0} per node), {} ports ({} bytes) in {:.1}s",
        a.nodes,
        nb,
        nb as f64 / a.nodes.max(1) as f64,
        a.nodes * 2,
        pb,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args)]
pub struct GenFileArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    size_mb: f64,
}

pub fn gen_file(a: &GenFileArgs) -> Res<()> {
    let len = (a.size_mb * 1_048_576.0) as usize;
    if fs::metadata(&a.out)
        .map(|m| m.len() as usize == len)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut w = io::BufWriter::new(fs::File::create(&a.out)?);
    let mut x = SEED;
    let mut left = len;
    while left > 0 {
        x = splitmix(x);
        let b = x.to_le_bytes();
        let n = left.min(8);
        w.write_all(&b[..n])?;
        left -= n;
    }
    w.flush()?;
    Ok(())
}

// ---- static-tree and wrk-paths ----

#[derive(Args)]
pub struct StaticTreeArgs {
    #[arg(long)]
    nodes: usize,
    /// ironpxe's HTTP address, serving the same state.
    #[arg(long)]
    http: SocketAddr,
    /// Written like Ironic's tftpboot: <node-uuid>/config and pxelinux.cfg/{01,20}-<mac> links.
    #[arg(long)]
    tftp_root: PathBuf,
    /// Pre-rendered iPXE scripts: <http-root>/ipxe/n<index>.
    #[arg(long)]
    http_root: PathBuf,
}

pub fn static_tree(a: &StaticTreeArgs) -> Res<()> {
    let t = Instant::now();
    let cfg_dir = a.tftp_root.join("pxelinux.cfg");
    let ipxe_dir = a.http_root.join("ipxe");
    fs::create_dir_all(&cfg_dir)?;
    fs::create_dir_all(&ipxe_dir)?;
    let mut http = crate::http_client(a.http);
    let mut fetch = |path: &str| -> Res<Vec<u8>> {
        let r = http.get(path)?;
        if r.status != 200 {
            return err(format!("GET {path}: HTTP {}", r.status));
        }
        Ok(r.body)
    };
    for i in 0..a.nodes {
        let uuid = node_uuid(i);
        let node_dir = a.tftp_root.join(&uuid);
        fs::create_dir_all(&node_dir)?;
        // Ironic writes one config per node and links every PXE-enabled port to it.
        let body = fetch(&format!("/pxelinux.cfg/{}", port_of(i, 0).pxe_hw()))?;
        fs::write(node_dir.join("config"), body)?;
        for p in 0..2 {
            let link = cfg_dir.join(port_of(i, p).pxe_hw().to_string());
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("../{uuid}/config"), &link)?;
        }
        let body = fetch(&format!("/ipxe/{}", port_of(i, 0).address))?;
        fs::write(ipxe_dir.join(format!("n{i}")), body)?;
    }
    fs::write(cfg_dir.join("default"), fetch("/pxelinux.cfg/default")?)?;
    eprintln!(
        "static-tree: {} nodes, {} links in {:.1}s",
        a.nodes,
        a.nodes * 2,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args)]
pub struct WrkPathsArgs {
    #[arg(long)]
    nodes: usize,
    /// `ironpxe` (/ipxe/<address> in mixed spellings) or `nginx` (/ipxe/n<index>).
    #[arg(long)]
    kind: String,
    #[arg(long)]
    out: PathBuf,
}

/// The address spelling iPXE (or an operator) might use, varied over the nodes.
fn ipxe_spelling(i: usize) -> String {
    let id = port_of(i, 0);
    match (id.guid, (i / 2) % 4) {
        (_, 0) => id.address.to_string(),
        (_, 1) => id.address.hyphen(),
        (_, 2) => id.address.raw(),
        (Some(g), _) => g.to_string(),
        (None, _) => id.address.to_string().to_ascii_uppercase(),
    }
}

pub fn wrk_paths(a: &WrkPathsArgs) -> Res<()> {
    let mut w = io::BufWriter::new(fs::File::create(&a.out)?);
    for i in 0..a.nodes {
        match a.kind.as_str() {
            "ironpxe" => writeln!(w, "/ipxe/{}", ipxe_spelling(i))?,
            "nginx" => writeln!(w, "/ipxe/n{i}")?,
            k => return err(format!("unknown --kind {k}")),
        }
    }
    w.flush()?;
    Ok(())
}
