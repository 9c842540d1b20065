//! `ironpxe inspect`: what ironic-python-agent reported about a machine's interfaces against
//! the ports Ironic has enrolled; `--apply` makes Ironic agree.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::model::addr;
use crate::model::node::NodeUuid;
use crate::state::{Snapshot, Store};

use super::{load_state, StateArgs};
use anyhow::{anyhow, Context, Result};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Inspection data (`baremetal node inventory show <node> -f json`) or the inventory.
    pub inventory: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
    /// Read the enrolled ports from this Ironic API instead of the state directory.
    #[arg(long)]
    pub ironic_url: Option<String>,
    /// The node the inventory belongs to (default: the node its interfaces match).
    #[arg(long)]
    pub node: Option<String>,
    /// Create missing ports and fix disagreeing ones through the Ironic API.
    #[arg(long)]
    pub apply: bool,
}

/// `ironpxe inspect`: per interface, the port Ironic should have and how the enrolled one
/// differs; `--apply` makes Ironic agree. Fails while any interface disagrees.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> Result<()> {
    use crate::inspect::{check, parse_inventory, ExpectedPort, Finding};
    let bytes =
        std::fs::read(&args.inventory).map_err(|e| anyhow!("{}: {e}", args.inventory.display()))?;
    let ifaces =
        parse_inventory(&bytes).map_err(|e| anyhow!("{}: {e}", args.inventory.display()))?;
    let mut cfg = args.state.config()?;
    if let Some(u) = &args.ironic_url {
        cfg.ironic.url = Some(u.clone());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let client = match &cfg.ironic.url {
        Some(_) => Some(crate::state::source::ironic::Client::new(&cfg.ironic)?),
        None => None,
    };
    let store = match &client {
        Some(c) => {
            let doc = rt.block_on(c.poll())?;
            let store = Store::new(cfg.index_config());
            store.apply(vec![(
                crate::state::source::ironic::source_id(),
                crate::state::Update::Replace(doc),
            )]);
            store
        }
        None => load_state(&cfg.state_dir, cfg.index_config())?,
    };
    let snap = store.current();
    let expected: Vec<ExpectedPort> = ifaces.iter().map(ExpectedPort::of).collect();
    let node = inspected_node(&snap, args.node.as_deref(), &expected)?;
    let enrolled: Vec<crate::model::node::Port> = node
        .and_then(|u| snap.node(&u))
        .map(|n| {
            n.ports
                .iter()
                .map(|&i| (*snap.ports()[i].port).clone())
                .collect()
        })
        .unwrap_or_default();
    let prefix = cfg.client_id_prefix();
    let mut open = 0;
    for (iface, exp) in ifaces.iter().zip(&expected) {
        let finding = check(exp, &enrolled);
        print_interface(out, iface, exp, node.as_ref(), &finding, prefix)?;
        let fixed = match (&finding, args.apply) {
            (Finding::Ok { .. }, _) => true,
            (_, false) => false,
            (f, true) => {
                let c = client
                    .as_ref()
                    .ok_or_else(|| anyhow!("--apply needs --ironic-url (or [ironic] url)"))?;
                let node = node.ok_or_else(|| {
                    anyhow!("--apply needs the node: no enrolled node matches; pass --node")
                })?;
                writeln!(out, "applied: {}", rt.block_on(apply(c, f, exp, &node))?)
                    .context("writing output")?;
                true
            }
        };
        open += usize::from(!fixed);
        writeln!(out).context("writing output")?;
    }
    match open {
        0 => Ok(()),
        n => Err(anyhow!("{n} interface(s) disagree with Ironic's ports")),
    }
}

/// The node an inventory belongs to: `--node`, else the one its interfaces match.
fn inspected_node(
    snap: &Snapshot,
    given: Option<&str>,
    expected: &[crate::inspect::ExpectedPort],
) -> Result<Option<NodeUuid>> {
    if let Some(n) = given {
        return NodeUuid::parse(n).map(Some).context("--node");
    }
    let mut found: Option<NodeUuid> = None;
    for e in expected {
        let m = match e.client_id {
            Some(c) => snap.by_guid(&c.guid()).or_else(|| snap.by_mac(&e.address)),
            None => snap.by_mac(&e.address),
        };
        if let Some(m) = m {
            let u = m.node.node.uuid;
            if found.is_some_and(|f| f != u) {
                return Err(anyhow!(
                    "interfaces match two nodes ({} and {u}); pass --node",
                    found.map(|f| f.to_string()).unwrap_or_default()
                ));
            }
            found = Some(u);
        }
    }
    Ok(found)
}

fn print_interface(
    out: &mut dyn Write,
    iface: &crate::inspect::Interface,
    exp: &crate::inspect::ExpectedPort,
    node: Option<&NodeUuid>,
    finding: &crate::inspect::Finding,
    prefix: [u8; 12],
) -> Result<()> {
    use crate::inspect::Finding;
    let reading = match exp.client_id {
        Some(c) => addr::Reading::ClientId(c),
        None => addr::Reading::EthernetMac(exp.address),
    };
    let d = addr::derive(&reading, prefix);
    let finding = match finding {
        Finding::Ok { port } => format!(
            "ok (port {})",
            port.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        ),
        Finding::Missing => "missing: Ironic has no port for this interface".into(),
        Finding::Disagrees { problems, .. } => format!("disagrees: {}", problems.join("; ")),
    };
    let rows = [
        ("interface", iface.name.clone()),
        (
            "kind",
            if exp.client_id.is_some() {
                "infiniband".into()
            } else {
                "ethernet".into()
            },
        ),
        ("guid", d.guid),
        ("ib_mac", d.ib_mac),
        ("client_id", d.client_id),
        ("pxelinux_names", d.pxelinux_names.join(" ")),
        ("port", exp.json(node).to_string()),
        ("create", exp.create_command(node)),
        ("finding", finding),
    ];
    for (k, v) in rows {
        writeln!(out, "{k}: {v}").context("writing output")?;
    }
    if let Some(n) = &exp.inventory_note {
        writeln!(out, "note: {n}").context("writing output")?;
    }
    Ok(())
}

/// Creates or patches the port through the API; returns what was done.
async fn apply(
    c: &crate::state::source::ironic::Client,
    finding: &crate::inspect::Finding,
    exp: &crate::inspect::ExpectedPort,
    node: &NodeUuid,
) -> Result<String> {
    use crate::inspect::Finding;
    let err = |e: crate::state::source::ironic::IronicError| anyhow!(e.to_string());
    match finding {
        Finding::Ok { .. } => Ok("nothing".into()),
        Finding::Missing => {
            let body = exp.json(Some(node));
            let r = c
                .send_json(reqwest::Method::POST, "/v1/ports", &body)
                .await
                .map_err(err)?;
            let uuid = serde_json::from_slice::<serde_json::Value>(&r)
                .ok()
                .and_then(|v| v["uuid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Ok(format!("created port {uuid} {}", exp.address))
        }
        Finding::Disagrees { port, patch, .. } => {
            let port =
                port.ok_or_else(|| anyhow!("the disagreeing port has no uuid; fix it by hand"))?;
            let body = serde_json::Value::Array(patch.clone());
            c.send_json(reqwest::Method::PATCH, &format!("/v1/ports/{port}"), &body)
                .await
                .map_err(err)?;
            Ok(format!("patched port {port}"))
        }
    }
}
