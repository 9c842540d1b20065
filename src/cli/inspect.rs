//! `ironpxe inspect`: the port changes Ironic's own inspection would make for an
//! ironic-python-agent inventory, under the `[inspector]` settings; `--apply` makes them
//! through the Ironic API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::inspect::{
    parse_inventory, plan, AddPorts, Change, Dropped, EnrolledPort, InspectorSettings,
    InterfaceOutcome, KeepPorts, Plan, Skipped, Verdict,
};
use crate::model::addr::{ClientId, Mac};
use crate::model::node::NodeUuid;
use crate::state::source::ironic::Client;
use crate::state::{Snapshot, Store};

use super::{load_state, StateArgs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Inspection data (`baremetal node inventory show <node> -f json`) or the inventory.
    pub inventory: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
    /// Read the enrolled ports from this Ironic API instead of the state directory.
    #[arg(long)]
    pub ironic_url: Option<String>,
    /// The node (UUID or name) the inventory belongs to (default: the node owning its MACs).
    #[arg(long)]
    pub node: Option<String>,
    /// Make the changes through the Ironic API.
    #[arg(long)]
    pub apply: bool,
    /// Ironic's `[inspector] add_ports`: all, active, pxe, disabled (default: config, else pxe).
    #[arg(long, value_parser = clap::value_parser!(AddPorts))]
    pub add_ports: Option<AddPorts>,
    /// Ironic's `[inspector] keep_ports`: all, present, added (default: config, else all).
    #[arg(long, value_parser = clap::value_parser!(KeepPorts))]
    pub keep_ports: Option<KeepPorts>,
    /// Ironic's `[inspector] update_pxe_enabled` (default: config, else true).
    #[arg(long)]
    pub update_pxe_enabled: Option<bool>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: InspectFormat,
}

impl InspectArgs {
    fn settings(&self, base: InspectorSettings) -> InspectorSettings {
        InspectorSettings {
            add_ports: self.add_ports.unwrap_or(base.add_ports),
            keep_ports: self.keep_ports.unwrap_or(base.keep_ports),
            update_pxe_enabled: self.update_pxe_enabled.unwrap_or(base.update_pxe_enabled),
        }
    }
}

/// `ironpxe inspect`: prints the plan; fails while Ironic's inspection would change
/// something (unless `--apply` made the changes) or would fail.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> Result<()> {
    let path = args.inventory.display();
    let bytes = std::fs::read(&args.inventory).map_err(|e| anyhow!("{path}: {e}"))?;
    let inv = parse_inventory(&bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    let mut cfg = args.state.config()?;
    if let Some(u) = &args.ironic_url {
        cfg.ironic.url = Some(u.clone());
    }
    let settings = args.settings(cfg.inspector);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let client = cfg
        .ironic
        .url
        .as_ref()
        .map(|_| Client::new(&cfg.ironic))
        .transpose()?;
    let store = match &client {
        Some(c) => {
            let store = Store::new(cfg.index_config());
            store.apply(vec![(
                crate::state::source::ironic::source_id(),
                crate::state::Update::Replace(rt.block_on(c.poll())?),
            )]);
            store
        }
        None => load_state(&cfg.state_dir, cfg.index_config())?,
    };
    let snap = store.current();
    let node = inspected_node(&snap, args.node.as_deref(), &inv)?;
    let (enrolled, elsewhere) = ports_of(&snap, node.as_ref());
    let planned = plan(&inv, &settings, &enrolled, &elsewhere);
    let applied = match (&planned, args.apply) {
        (Ok(p), true) if !p.changes.is_empty() => {
            let c = client
                .as_ref()
                .ok_or_else(|| anyhow!("--apply needs --ironic-url (or [ironic] url)"))?;
            let node = node.ok_or_else(|| {
                anyhow!("--apply needs the node: no enrolled port has these MACs; pass --node")
            })?;
            Some(rt.block_on(apply_all(c, &p.changes, &node)))
        }
        _ => None,
    };
    let header = Header {
        node: node.as_ref(),
        name: node.and_then(|u| snap.node(&u)?.node.name.clone()),
        settings,
    };
    match args.format {
        InspectFormat::Text => print_text(out, &header, &planned, applied.as_ref())?,
        InspectFormat::Json => print_json(out, &header, &planned, applied.as_ref())?,
    }
    outcome(&planned, applied)
}

/// The exit status: an error while inspection would fail or change something.
fn outcome(
    planned: &Result<Plan, crate::inspect::InspectionError>,
    applied: Option<Applied>,
) -> Result<()> {
    let p = planned.as_ref().map_err(|e| anyhow!("{e}"))?;
    match applied {
        Some(Applied { failed: None, .. }) => Ok(()),
        Some(Applied {
            failed: Some(e), ..
        }) => Err(e),
        None if p.changes.is_empty() => Ok(()),
        None => Err(anyhow!(
            "Ironic's inspection would make {} port change(s); --apply makes them",
            p.changes.len()
        )),
    }
}

/// The node an inventory belongs to: `--node` (UUID or name), else the one owning its MACs
/// (as Ironic's lookup does).
fn inspected_node(
    snap: &Snapshot,
    given: Option<&str>,
    inv: &crate::inspect::Inventory,
) -> Result<Option<NodeUuid>> {
    if let Some(n) = given {
        if let Ok(u) = NodeUuid::parse(n) {
            return Ok(Some(u));
        }
        return snap
            .nodes()
            .iter()
            .find(|x| x.node.name.as_deref() == Some(n))
            .map(|x| Some(x.node.uuid))
            .ok_or_else(|| anyhow!("--node {n}: no node has this UUID or name"));
    }
    let macs: Vec<Mac> = inv
        .interfaces
        .iter()
        .filter_map(|i| crate::inspect::ironic_mac(&i.mac_address).ok())
        .collect();
    let mut found: Option<NodeUuid> = None;
    for p in snap
        .ports()
        .iter()
        .filter(|p| macs.contains(&p.port.address))
    {
        let u = snap.nodes()[p.node].node.uuid;
        if let Some(f) = found.filter(|f| *f != u) {
            return Err(anyhow!(
                "the inventory's MACs are enrolled on two nodes ({f} and {u}); pass --node"
            ));
        }
        found = Some(u);
    }
    Ok(found)
}

/// The node's ports, and every other node's addresses (Ironic will not create those again).
fn ports_of(
    snap: &Snapshot,
    node: Option<&NodeUuid>,
) -> (Vec<EnrolledPort>, BTreeMap<Mac, NodeUuid>) {
    let mut mine = Vec::new();
    let mut elsewhere = BTreeMap::new();
    for p in snap.ports() {
        let owner = snap.nodes()[p.node].node.uuid;
        if Some(&owner) == node {
            mine.push(EnrolledPort::from(&*p.port));
        } else {
            elsewhere.insert(p.port.address, owner);
        }
    }
    (mine, elsewhere)
}

/// What `--apply` did: the changes made, in order, and the failure that stopped it.
struct Applied {
    done: Vec<String>,
    failed: Option<anyhow::Error>,
}

/// Makes the changes in order; stops at the first failure.
async fn apply_all(c: &Client, changes: &[Change], node: &NodeUuid) -> Applied {
    let mut done = Vec::new();
    for ch in changes {
        match apply_one(c, ch, node).await {
            Ok(s) => done.push(s),
            Err(e) => {
                return Applied {
                    done,
                    failed: Some(e),
                }
            }
        }
    }
    Applied { done, failed: None }
}

async fn apply_one(c: &Client, ch: &Change, node: &NodeUuid) -> Result<String> {
    let err = |e: crate::state::source::ironic::IronicError| anyhow!(e.to_string());
    let port_of = |port: &Option<crate::model::node::PortUuid>, address: &Mac| {
        port.ok_or_else(|| anyhow!("port {address} has no uuid in Ironic's listing"))
    };
    match ch {
        Change::Create { address, .. } => {
            let r = c
                .send_json(reqwest::Method::POST, "/v1/ports", &ch.body(Some(node)))
                .await
                .map_err(err)?;
            let uuid = serde_json::from_slice::<Value>(&r)
                .ok()
                .and_then(|v| v["uuid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Ok(format!("created port {uuid} {address}"))
        }
        Change::Update { port, address, .. } => {
            let port = port_of(port, address)?;
            let path = format!("/v1/ports/{port}");
            c.send_json(reqwest::Method::PATCH, &path, &ch.body(None))
                .await
                .map_err(err)?;
            Ok(format!("updated port {port} {address}"))
        }
        Change::Delete { port, address } => {
            let port = port_of(port, address)?;
            c.delete(&format!("/v1/ports/{port}")).await.map_err(err)?;
            Ok(format!("deleted port {port} {address}"))
        }
    }
}

struct Header<'a> {
    node: Option<&'a NodeUuid>,
    name: Option<String>,
    settings: InspectorSettings,
}

/// Agent text as one safe token: verbatim when printable ASCII, else quoted and escaped.
fn shown(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

/// A note (it quotes agent text) on one line: control characters escaped.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn verdict_key(v: Verdict) -> &'static str {
    match v {
        Verdict::Dropped(Dropped::NoName) => "no_name",
        Verdict::Dropped(Dropped::InvalidMac) => "invalid_mac",
        Verdict::Dropped(Dropped::MacWithNewline) => "mac_with_newline",
        Verdict::Dropped(Dropped::Renamed) => "renamed",
        Verdict::Skipped(Skipped::Loopback) => "loopback",
        Verdict::Skipped(Skipped::NotPxe) => "not_pxe",
        Verdict::Skipped(Skipped::NoIp) => "no_ip",
        Verdict::Valid => "valid",
    }
}

fn interface_rows(o: &InterfaceOutcome, add_ports: AddPorts) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        (
            "interface",
            o.name.as_deref().map_or_else(|| "-".into(), shown),
        ),
        (
            "mac_address",
            o.mac
                .map_or_else(|| shown(&o.mac_address), |m| m.to_string()),
        ),
        (
            "client_id",
            o.client_id.as_deref().map_or_else(|| "-".into(), shown),
        ),
    ];
    if let Some(c) = o.client_id.as_deref().and_then(|c| ClientId::parse(c).ok()) {
        rows.push(("guid", c.guid().to_string()));
    }
    rows.push(("pxe_enabled", o.pxe.to_string()));
    rows.push(("verdict", o.verdict.describe(add_ports)));
    rows
}

fn change_line(ch: &Change) -> String {
    let cid = |c: &Option<String>| c.as_deref().map_or_else(|| "-".into(), shown);
    let port =
        |p: &Option<crate::model::node::PortUuid>| p.map_or_else(|| "-".into(), |p| p.to_string());
    match ch {
        Change::Create {
            address,
            pxe_enabled,
            client_id,
        } => format!(
            "create: port {address} pxe_enabled={pxe_enabled} client-id={}",
            cid(client_id)
        ),
        Change::Update {
            port: p,
            address,
            pxe_enabled,
            client_id,
        } => {
            let mut s = format!("update: port {} {address}", port(p));
            if let Some(v) = pxe_enabled {
                s.push_str(&format!(" pxe_enabled={v}"));
            }
            if client_id.is_some() {
                s.push_str(&format!(" client-id={}", cid(client_id)));
            }
            s
        }
        Change::Delete { port: p, address } => format!("delete: port {} {address}", port(p)),
    }
}

fn print_text(
    out: &mut dyn Write,
    h: &Header,
    planned: &Result<Plan, crate::inspect::InspectionError>,
    applied: Option<&Applied>,
) -> Result<()> {
    let mut lines = vec![
        match h.node {
            Some(u) => format!(
                "node: {u} ({})",
                h.name.as_deref().map_or_else(|| "-".into(), shown)
            ),
            None => "node: none (no enrolled port has these MACs)".into(),
        },
        format!("settings: {}", h.settings),
    ];
    match planned {
        Err(e) => lines.push(format!("result: inspection fails: {e}")),
        Ok(p) => text_plan(&mut lines, h, p, applied),
    }
    for l in lines {
        writeln!(out, "{l}").context("writing output")?;
    }
    Ok(())
}

fn text_plan(lines: &mut Vec<String>, h: &Header, p: &Plan, applied: Option<&Applied>) {
    lines.push(match &p.pxe_mac {
        Some(m) => format!("pxe_interface: {}", shown(m)),
        None => "pxe_interface: none (no port will be PXE-enabled)".into(),
    });
    for o in &p.interfaces {
        lines.push(String::new());
        for (k, v) in interface_rows(o, h.settings.add_ports) {
            lines.push(format!("{k}: {v}"));
        }
    }
    lines.push(String::new());
    for ch in &p.changes {
        lines.push(change_line(ch));
        lines.push(format!("command: {}", one_line(&ch.command(h.node))));
    }
    for n in &p.notes {
        lines.push(format!("note: {}", one_line(n)));
    }
    let (done, failed) = match applied {
        Some(a) => (a.done.as_slice(), a.failed.as_ref()),
        None => (&[][..], None),
    };
    lines.extend(done.iter().map(|d| format!("applied: {d}")));
    lines.push(match (applied, failed) {
        (_, Some(e)) => format!("result: failed after {} change(s): {e:#}", done.len()),
        (Some(_), None) => format!("result: applied {} change(s)", done.len()),
        (None, _) if p.changes.is_empty() => {
            "result: ok: Ironic's inspection would change nothing".into()
        }
        (None, _) => format!("result: {} change(s) pending", p.changes.len()),
    });
}

fn print_json(
    out: &mut dyn Write,
    h: &Header,
    planned: &Result<Plan, crate::inspect::InspectionError>,
    applied: Option<&Applied>,
) -> Result<()> {
    let s = h.settings;
    let mut v = json!({
        "node": h.node.map(|u| u.to_string()),
        "settings": {"add_ports": s.add_ports.as_str(), "keep_ports": s.keep_ports.as_str(),
                     "update_pxe_enabled": s.update_pxe_enabled},
        "error": null,
    });
    match planned {
        Err(e) => v["error"] = json!(e.to_string()),
        Ok(p) => json_plan(&mut v, h, p),
    }
    if let Some(a) = applied {
        v["applied"] = json!(a.done);
        if let Some(e) = &a.failed {
            v["error"] = json!(format!("{e:#}"));
        }
    }
    writeln!(out, "{}", serde_json::to_string_pretty(&v).context("json")?).context("writing output")
}

fn json_plan(v: &mut Value, h: &Header, p: &Plan) {
    v["pxe_mac"] = json!(p.pxe_mac);
    v["interfaces"] = p
        .interfaces
        .iter()
        .map(|o| {
            json!({"name": o.name, "mac_address": o.mac_address, "mac": o.mac.map(|m| m.to_string()), "client_id": o.client_id,
                   "pxe_enabled": o.pxe, "verdict": verdict_key(o.verdict)})
        })
        .collect();
    v["changes"] = p
        .changes
        .iter()
        .map(|ch| {
            let mut c = match ch {
                Change::Create { address, pxe_enabled, client_id } => json!({
                    "op": "create", "address": address.to_string(),
                    "pxe_enabled": pxe_enabled, "client_id": client_id}),
                Change::Update { port, address, pxe_enabled, client_id } => json!({
                    "op": "update", "port": port.map(|p| p.to_string()), "address": address.to_string(),
                    "pxe_enabled": pxe_enabled, "client_id": client_id}),
                Change::Delete { port, address } => json!({
                    "op": "delete", "port": port.map(|p| p.to_string()), "address": address.to_string()}),
            };
            c["body"] = ch.body(h.node);
            c["command"] = json!(ch.command(h.node));
            c
        })
        .collect();
    v["ports_after"] = p
        .ports_after
        .iter()
        .map(|a| {
            json!({"port": a.port.map(|p| p.to_string()), "address": a.address.to_string(),
                   "pxe_enabled": a.pxe_enabled, "client_id": a.client_id})
        })
        .collect();
    v["notes"] = json!(p.notes);
}
