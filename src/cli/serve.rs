//! `ironpxe serve`: the settings file with `serve`'s own flags applied, handed to
//! [`crate::serving::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::config::Config;

use super::StateArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub tftp_root: Option<PathBuf>,
    /// May be given once per provisioning interface address; a link-local IPv6 address
    /// with its interface: `[fe80::1%eth1]:69`.
    #[arg(long, value_parser = crate::config::parse_listen)]
    pub tftp_listen: Vec<SocketAddr>,
    #[arg(long, value_parser = crate::config::parse_listen)]
    pub http_listen: Option<SocketAddr>,
    /// Poll this Ironic API for nodes and ports (besides the state directory).
    #[arg(long)]
    pub ironic_url: Option<String>,
}

/// `ironpxe serve`: runs until SIGINT or SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<()> {
    crate::serving::run::run(serve_config(args)?, args.state.config.clone())
}

/// The config file with `serve`'s own flags applied.
pub fn serve_config(args: &ServeArgs) -> Result<Config> {
    let mut cfg = args.state.config()?;
    if let Some(r) = &args.tftp_root {
        cfg.tftp_root = r.clone();
    }
    if !args.tftp_listen.is_empty() {
        cfg.tftp_listen = args.tftp_listen.clone();
    }
    if let Some(h) = args.http_listen {
        cfg.http_listen = h;
    }
    if let Some(u) = &args.ironic_url {
        cfg.ironic.url = Some(u.clone());
    }
    cfg.validate()?;
    Ok(cfg)
}
