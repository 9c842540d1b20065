//! `ironpxe check`: every state error, template error, unrenderable node and refused image.

use std::io::Write;

use clap::Args;

use crate::render::{Format, Renderer, Server};
use crate::state::Snapshot;

use super::{load_state, StateArgs};
use anyhow::{anyhow, Context, Result};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub state: StateArgs,
}

/// `ironpxe check`: every state error, template error and node that cannot be rendered.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<()> {
    let cfg = args.state.config()?;
    let mut problems = Vec::new();
    let store = load_state(&cfg.state_dir, cfg.index_config())?;
    let snap = store.current();
    problems.extend(snap.errors.iter().map(|e| format!("state: {e}")));
    let renderer = match Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render) {
        Ok(r) => Some(r),
        Err(errs) => {
            problems.extend(errs.into_iter().map(|e| format!("templates: {e}")));
            None
        }
    };
    if let Some(r) = &renderer {
        problems.extend(render_problems(&snap, r));
    }
    let policy = cfg.image_policy();
    problems.extend(crate::serving::images::refused_references(
        &snap,
        &cfg.boot_config()?,
        &policy,
    ));
    for w in &snap.warnings {
        writeln!(out, "warning: {w}").context("writing output")?;
    }
    writeln!(
        out,
        "{} nodes, {} ports, {} warnings, {} problems",
        snap.nodes().len(),
        snap.ports().len(),
        snap.warnings.len(),
        problems.len()
    )
    .context("writing output")?;
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        writeln!(out, "problem: {p}").context("writing output")?;
    }
    Err(anyhow!("{} problems found", problems.len()))
}

/// Renders every booted port (PXE-enabled, or any with `add_all_ports`) in every format; one problem per port and distinct error.
/// Renders are started a batch at a time so every render worker is kept busy.
fn render_problems(snap: &Snapshot, r: &Renderer) -> Vec<String> {
    const FORMATS: [Format; 3] = [Format::Pxelinux, Format::Ipxe, Format::Grub];
    const BATCH: usize = 256;
    let server = Server {
        http_url: "http://192.0.2.1".into(),
        tftp_server: "192.0.2.1".into(),
    };
    let ports: Vec<_> = snap
        .ports()
        .iter()
        .filter(|p| p.boot_names)
        .filter_map(|p| Some((p, snap.by_mac(&p.port.address)?)))
        .collect();
    let mut problems = Vec::new();
    for batch in ports.chunks(BATCH) {
        let pending: Vec<_> = batch
            .iter()
            .map(|(_, m)| FORMATS.map(|f| r.begin(Some(m), f, None, &server)))
            .collect();
        for ((p, _), renders) in batch.iter().zip(pending) {
            let mut errors: Vec<(String, Vec<&str>)> = Vec::new();
            for (f, pending) in FORMATS.iter().zip(renders) {
                if let Err(e) = pending.wait_blocking() {
                    let e = e.to_string();
                    match errors.iter_mut().find(|(msg, _)| *msg == e) {
                        Some((_, formats)) => formats.push(f.name()),
                        None => errors.push((e, vec![f.name()])),
                    }
                }
            }
            for (e, formats) in errors {
                problems.push(format!(
                    "port {} ({}): {e}",
                    p.port.address,
                    formats.join(", ")
                ));
            }
        }
    }
    problems
}
