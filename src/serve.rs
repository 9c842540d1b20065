//! `ironpxe serve`: one tokio process holding the live state, the renderer and the servers.

use std::sync::Arc;

use crate::cli::{CliError, Live, ServeArgs};
use crate::config::Config;

/// Builds the runtime and runs until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    let cfg = serve_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("starting the runtime: {e}")))?;
    rt.block_on(serve(cfg))
}

/// The config file with `serve`'s own flags applied.
pub fn serve_config(args: &ServeArgs) -> Result<Config, CliError> {
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
    cfg.validate()?;
    Ok(cfg)
}

async fn serve(cfg: Config) -> Result<(), CliError> {
    let live = Live::start(&cfg)?;
    let snap = live.store.current();
    tracing::info!(
        state_dir = %cfg.state_dir.display(),
        templates = %cfg.templates.display(),
        nodes = snap.nodes().len(),
        ports = snap.ports().len(),
        "ironpxe started"
    );
    tokio::spawn(sweep_renders(live.store.subscribe(), live.renderer.clone()));
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Drops cached renders of nodes that changed, on every new state generation.
async fn sweep_renders(
    mut rx: tokio::sync::watch::Receiver<Arc<crate::store::Snapshot>>,
    renderer: Arc<crate::render::Renderer>,
) {
    while rx.changed().await.is_ok() {
        let snap = rx.borrow_and_update().clone();
        renderer.sweep(&snap);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
