//! The command line: one module per subcommand. `serve` builds the settings and hands them
//! to [`crate::serving::run`]; the others print and exit. Output formats here are part of the
//! interface operators script against, so they are tested. Errors are `anyhow` chains: this
//! is the binary's edge, where a failure becomes one line for the operator.

mod addr;
mod check;
mod dhcp;
mod inspect;
mod render;
mod serve;

pub use addr::{addr, AddrArgs};
pub use check::{check, CheckArgs};
pub use dhcp::{dhcp, DhcpArgs};
pub use inspect::{inspect, InspectArgs};
pub use render::{render, RenderArgs};
pub use serve::{serve, ServeArgs};

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::state::source::dir::DirSource;
use crate::state::{IndexConfig, Store};

/// Network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
#[derive(Parser, Debug)]
#[command(name = "ironpxe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every form derivable from a hardware address, in any spelling.
    Addr(AddrArgs),
    /// Print exactly what a client would be served, and (on stderr) why.
    Render(RenderArgs),
    /// Validate state and templates; exit non-zero listing every problem.
    Check(CheckArgs),
    /// Serve boot configs from the live state (TFTP and HTTP).
    Serve(ServeArgs),
    /// Print DHCP host entries and boot logic for every PXE-enabled port (dnsmasq, ISC, Kea),
    /// or the Neutron extra_dhcp_opts Ironic itself would set for its [pxe] settings
    /// ([ironic_pxe]); or sync a dnsmasq --dhcp-hostsdir.
    Dhcp(DhcpArgs),
    /// The port changes Ironic's own inspection would make for an ironic-python-agent
    /// inventory (`[inspector]` add_ports, keep_ports, update_pxe_enabled); --apply makes them.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct StateArgs {
    /// TOML configuration file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub templates: Option<PathBuf>,
}

impl StateArgs {
    /// The config file (or defaults) with these flags applied.
    pub fn config(&self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.state_dir {
            cfg.state_dir = d.clone();
        }
        if let Some(t) = &self.templates {
            cfg.templates = t.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Loads the state directory once into a fresh store.
pub fn load_state(dir: &Path, index: IndexConfig) -> Result<Store> {
    if !dir.is_dir() {
        return Err(anyhow!("state directory {} does not exist", dir.display()));
    }
    let store = Store::new(index);
    store.apply(DirSource::new(dir).scan(&HashSet::new()));
    Ok(store)
}
