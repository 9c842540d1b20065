//! `ironpxe render`: exactly what a client would be served, and (on stderr) why.

use std::io::Write;

use clap::Args;

use crate::model::addr::{AnyAddr, HwType, PxelinuxName, SystemUuid};
use crate::model::node::NodeUuid;
use crate::model::resource::{AskedAddr, AskedAs, Resource};
use crate::render::{Format, Renderer, Server};
use crate::state::diagnosis::unbooted;
use crate::state::{Match, Snapshot};

use super::{load_state, StateArgs};
use anyhow::{anyhow, Context, Result};

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Any address spelling, a PXELINUX name (`01-…`, `20-…`) or an Ironic node UUID.
    #[arg(long)]
    pub client: String,
    /// The client's SMBIOS UUID, tried first as PXELINUX does.
    #[arg(long)]
    pub smbios_uuid: Option<String>,
    /// pxelinux, ipxe, grub or boot.ipxe.
    #[arg(long, default_value = "ipxe")]
    pub format: Format,
    /// Base URL written into scripts (defaults to http://<http_listen>).
    #[arg(long)]
    pub public_url: Option<String>,
}

/// How `render` resolved its `--client`, with the hardware type the name implies.
struct Resolved<'a> {
    found: Option<Match<'a>>,
    hw: Option<HwType>,
    /// The hardware address the client names, for saying why nothing matched.
    asked: Option<AskedAddr>,
}

fn resolve<'a>(s: &'a Snapshot, client: &str, smbios: Option<&SystemUuid>) -> Result<Resolved<'a>> {
    if let Some(m) = smbios.and_then(|u| s.by_system_uuid(u)) {
        return Ok(Resolved {
            found: Some(m),
            hw: None,
            asked: None,
        });
    }
    if let Ok(a) = AnyAddr::parse(client) {
        return Ok(Resolved {
            found: s.by_addr(&a),
            hw: None,
            asked: Some(AskedAddr {
                addr: a,
                asked_as: AskedAs::Ipxe,
            }),
        });
    }
    if let Ok(u) = NodeUuid::parse(client) {
        return Ok(Resolved {
            found: s.by_node_uuid(&u),
            hw: None,
            asked: None,
        });
    }
    let name = client.trim().trim_start_matches("pxelinux.cfg/");
    match PxelinuxName::parse(name) {
        Ok(n) => Ok(Resolved {
            found: s.by_pxelinux_name(&n),
            hw: n.hw_type(),
            asked: AskedAddr::of(&Resource::Pxelinux(n)),
        }),
        Err(e) => Err(anyhow!(
            "--client {client:?} is neither an address, a node UUID nor a PXELINUX name: {e}"
        )),
    }
}

/// `ironpxe render`.
pub fn render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let cfg = args.state.config()?;
    let store = load_state(&cfg.state_dir, cfg.index_config())?;
    let renderer = Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render)
        .map_err(|e| anyhow!(e.join("\n")))?;
    let smbios = match &args.smbios_uuid {
        Some(u) => Some(SystemUuid::parse(u).context("--smbios-uuid")?),
        None => None,
    };
    let snap = store.current();
    let r = resolve(&snap, &args.client, smbios.as_ref())?;
    // No client connection says which address it reached: a specific one of ours, never
    // the wildcard (`[::]` in a URL reaches nothing).
    let shown = crate::model::net::preview_address(cfg.http_listen, &cfg.tftp_listen);
    let server = Server {
        http_url: args
            .public_url
            .clone()
            .or_else(|| crate::model::net::http_base_url(shown))
            .unwrap_or_else(|| format!("http://{shown}"))
            .trim_end_matches('/')
            .to_owned(),
        tftp_server: crate::model::net::server_name(shown.ip())
            .unwrap_or_else(|| shown.ip().to_string()),
    };
    let rendered = renderer.render(r.found.as_ref(), args.format, r.hw, &server)?;
    let what = match r.found {
        Some(m) => format!("{m:#}"),
        None => "no node matches: this is the unknown-machine config".into(),
    };
    writeln!(err, "matched: {what}").context("writing output")?;
    if r.found.is_none() {
        if let Some(u) = r.asked.as_ref().and_then(|a| unbooted(&snap, a)) {
            writeln!(err, "why: {u}").context("writing output")?;
        }
    }
    writeln!(err, "action: {} ({})", rendered.action, rendered.reason).context("writing output")?;
    out.write_all(rendered.body.as_bytes())
        .context("writing output")?;
    Ok(())
}
