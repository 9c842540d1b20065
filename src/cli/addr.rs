//! `ironpxe addr`: every form derivable from one hardware address, and what it matches.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::config::ClientIdPrefix;
use crate::model::addr::{self, AnyAddr, HwType};
use crate::model::resource::{AskedAddr, AskedAs};
use crate::state::diagnosis::{unbooted, Unbooted};
use crate::state::{IndexConfig, Match, Snapshot, Store};

use super::load_state;
use anyhow::{Context, Result};

#[derive(Args, Debug)]
pub struct AddrArgs {
    /// MAC, IB MAC, GUID, IPoIB address or client-id, in any spelling.
    pub address: String,
    /// Also say which enrolled port and node the address matches.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Settings file whose `[index]` fields and `[neutron] add_all_ports` the match uses.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Vendor prefix for client-ids derived from a GUID.
    #[arg(long, default_value_t = ClientIdPrefix(addr::MELLANOX_CLIENT_ID_PREFIX))]
    pub client_id_prefix: ClientIdPrefix,
}

/// `ironpxe addr`.
pub fn addr(args: &AddrArgs, out: &mut dyn Write) -> Result<()> {
    let parsed = AnyAddr::parse(&args.address)?;
    let prefix = args.client_id_prefix.0;
    let store = match &args.state_dir {
        Some(d) => {
            let index = match &args.config {
                Some(f) => crate::config::Config::load(f)?.index_config(),
                None => IndexConfig::default(),
            };
            Some(load_state(d, index)?)
        }
        None => None,
    };
    let snap = store.as_ref().map(Store::current);
    let readings = parsed.readings();
    for (i, reading) in readings.iter().enumerate() {
        if i > 0 {
            writeln!(out).context("writing output")?;
        }
        if readings.len() > 1 {
            writeln!(out, "reading: {} of {}", i + 1, readings.len()).context("writing output")?;
        }
        let d = addr::derive(reading, prefix);
        let rows = [
            ("kind", d.kind.to_owned()),
            ("mac", d.mac),
            ("guid", d.guid),
            ("ib_mac", d.ib_mac),
            ("client_id", d.client_id),
            ("ipoib_addr", d.ipoib_addr),
            ("pxelinux_names", d.pxelinux_names.join(" ")),
            ("ipxe_name", d.ipxe_name),
        ];
        for (k, v) in rows {
            writeln!(out, "{k}: {v}").context("writing output")?;
        }
        if let Some(note) = d.note {
            writeln!(out, "note: {note}").context("writing output")?;
        }
        if let Some(s) = &snap {
            match reading_match(s, reading) {
                Some(m) => writeln!(out, "match: {m:#}"),
                None => match reading_unbooted(s, reading) {
                    Some(u) => writeln!(out, "match: none\nknown: {u}"),
                    None => writeln!(out, "match: none"),
                },
            }
            .context("writing output")?;
        }
    }
    Ok(())
}

fn reading_match<'a>(s: &'a Snapshot, r: &addr::Reading) -> Option<Match<'a>> {
    use addr::{IbHwAddr, Reading};
    match r {
        Reading::EthernetMac(m) => s
            .by_mac(m)
            .filter(|m| m.via == crate::state::Via::EthernetMac),
        Reading::IbMac(m) => s.by_ib(&IbHwAddr::Mac(*m)),
        Reading::Guid(g) => s.by_guid(g),
        Reading::IpoibAddr(a) => s.by_guid(&a.guid()),
        Reading::ClientId(c) => s.by_guid(&c.guid()),
    }
}

/// The port Ironic knows by this reading that no boot answer uses (not PXE-enabled, or an IB
/// identity of a port enrolled without a client-id); a 6-byte reading names only a port of its
/// own kind, so an Ethernet MAC is never reported as an IB MAC.
fn reading_unbooted<'a>(s: &'a Snapshot, r: &addr::Reading) -> Option<Unbooted<'a>> {
    use addr::Reading;
    let (addr, ib) = match r {
        Reading::EthernetMac(m) => (AnyAddr::Six(*m), Some(false)),
        Reading::IbMac(m) => (AnyAddr::Six(*m), Some(true)),
        Reading::Guid(g) => (AnyAddr::Eight(*g), None),
        Reading::IpoibAddr(a) => (AnyAddr::Twenty(a.0), None),
        Reading::ClientId(c) => (AnyAddr::Twenty(c.0), None),
    };
    let asked = AskedAddr {
        addr,
        asked_as: AskedAs::Hw(HwType::Ethernet),
    };
    unbooted(s, &asked).filter(|u| ib.is_none_or(|ib| u.port.port.is_infiniband() == ib))
}
