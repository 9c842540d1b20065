//! `ironpxe serve`: one process holding the live state, the renderer, the image cache and
//! both servers (HTTP on tokio, TFTP on its own threads).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::model::node::NodeUuid;
use crate::render::Renderer;
use crate::serving::app::App;
use crate::serving::images::ImageCache;
use crate::serving::metrics::Metrics;
use crate::serving::roots::Roots;
use crate::state::{Snapshot, Store};
use anyhow::{anyhow, Context, Result};

/// Builds the runtime and serves `cfg` until SIGINT or SIGTERM; `config_file` is re-read on
/// SIGHUP and never served as an image.
pub fn run(cfg: Config, config_file: Option<PathBuf>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, config_file))
}

async fn serve(cfg: Config, config_file: Option<std::path::PathBuf>) -> Result<()> {
    raise_open_file_limit(&cfg);
    let live = Live::start(&cfg)?;
    let metrics = Arc::new(Metrics::default());
    let problems = live.renderer.problems();
    let mut image_settings = cfg.image_cache_settings();
    if let Some(f) = &config_file {
        image_settings.policy.files.refuse_file(f);
    }
    let images = ImageCache::new(
        image_settings,
        problems.clone(),
        tokio::runtime::Handle::current(),
        metrics.clone(),
    )
    .map_err(|e| anyhow!("image cache {}: {e}", cfg.image_cache_dir.display()))?;
    let ironic = start_ironic(&cfg, &live)?;
    let app = Arc::new(App {
        store: live.store.clone(),
        renderer: live.renderer.clone(),
        roots: Roots::new(tftp_roots(&cfg)),
        http_roots: Roots::new(cfg.http_roots()),
        images: Some(images.clone()),
        metrics,
        public_url: cfg.public_url(),
        ironic,
        journal: Some(crate::serving::journal::Journal::start(cfg.journal.clone())),
        problems,
        grub_prefixes: cfg.grub.prefixes.clone(),
    });
    let admin = start_admin(&cfg, &app).await?;
    let hostsdir = dhcp_hostsdir(&cfg)?;
    let http = crate::serving::http::start(app.clone(), cfg.http_listen, cfg.http.clone())
        .await
        .with_context(|| format!("HTTP listen {}", cfg.http_listen))?;
    // Prefetch only once the HTTP server listens: an image may be on ironpxe's own HTTP
    // server (the shipped example's are), and fetched before the bind it is refused.
    images.update(&app.store.current(), &app.renderer.boot_config(), None);
    start_state_thread(app.clone(), hostsdir)?;
    let tftp =
        crate::serving::tftp::start(app.clone(), &cfg.tftp_listen, http.local.port(), &cfg.tftp)
            .with_context(|| format!("TFTP listen {:?}", cfg.tftp_listen))?;
    let snap = app.store.current();
    tracing::info!(
        http = %http.local,
        tftp = ?tftp,
        admin = ?admin.as_ref().map(|a| a.local),
        nodes = snap.nodes().len(),
        ports = snap.ports().len(),
        "ironpxe serving"
    );

    wait_for_signals(&live, &app, config_file.as_deref()).await;
    tracing::info!("shutting down: no new HTTP connections; letting transfers finish");
    // One grace period for every server, not one each.
    let grace = Duration::from_secs(cfg.http.shutdown_grace_secs);
    let started = Instant::now();
    let admin = async {
        if let Some(a) = admin {
            a.shutdown().await;
        }
    };
    tokio::join!(http.shutdown(), admin);
    drain_tftp(&app, grace.saturating_sub(started.elapsed())).await;
    Ok(())
}

/// The TFTP roots to serve. The default `extra_tftp_roots` are where Debian's packages put
/// the boot loaders, searched if installed: one that is absent is left out with an INFO line
/// (a first run without those packages is clean). A configured root that is absent is
/// warned about ([`Roots::new`]).
fn tftp_roots(cfg: &Config) -> Vec<std::path::PathBuf> {
    let defaults = cfg.extra_tftp_roots == Config::default().extra_tftp_roots;
    let mut roots = cfg.tftp_roots();
    roots.retain(|r| {
        let absent_default = defaults && *r != cfg.tftp_root && !r.exists();
        if absent_default {
            tracing::info!(root = %r.display(), "default extra TFTP root not installed; not searched");
        }
        !absent_default
    });
    roots
}

/// Starts the admin API and page when `[admin] listen` is set.
async fn start_admin(
    cfg: &Config,
    app: &Arc<App>,
) -> Result<Option<crate::serving::web::WebServer>> {
    let (Some(listen), Some(journal)) = (cfg.admin.listen, app.journal.clone()) else {
        return Ok(None);
    };
    let token = match &cfg.admin.token_file {
        Some(f) => Some(crate::serving::admin::access::Token::read(f)?),
        None => None,
    };
    let admin = Arc::new(crate::serving::admin::Admin {
        app: app.clone(),
        journal,
        token,
        hosts: crate::serving::admin::access::HostCheck::new(listen, &cfg.admin.host_aliases),
        preview_server: crate::serving::app::preview_server(
            app.public_url.as_deref(),
            cfg.http_listen,
            &cfg.tftp_listen,
            crate::render::Format::Ipxe,
        ),
        client_id_prefix: cfg.client_id_prefix(),
    });
    let grace = Duration::from_secs(cfg.http.shutdown_grace_secs);
    let server = crate::serving::admin::start(admin, listen, cfg.admin.max_connections, grace)
        .await
        .with_context(|| format!("[admin] listen {listen}"))?;
    Ok(Some(server))
}

/// Raises the open-file soft limit to the hard one (the soft one is often 1024, far below the
/// session caps) and warns when even the hard one cannot hold every session the caps allow:
/// past it a client meets a failed accept or open instead of the caps' clean refusal.
fn raise_open_file_limit(cfg: &Config) {
    let need = open_files_needed(cfg);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(got) if got < need => tracing::warn!(
            limit = got,
            needed = need,
            "open-file limit below what the session caps need; raise it (systemd: \
             LimitNOFILE={need}) or lower [tftp] max_sessions and [http] max_connections"
        ),
        Ok(got) => tracing::debug!(limit = got, needed = need, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, needed = need, "cannot raise the open-file limit"),
    }
}

/// Descriptors one TFTP transfer or HTTP connection may hold at once: its socket and the
/// file it is sending.
const FDS_PER_SESSION: u64 = 2;

/// Descriptors besides the sessions: listening sockets, the runtime, the state watch, the
/// image cache, render workers, logs.
const FDS_RESERVED: u64 = 256;

/// Open files ironpxe may need with every session cap full.
fn open_files_needed(cfg: &Config) -> u64 {
    let sessions = (cfg.tftp.max_sessions + cfg.http.max_connections) as u64;
    sessions * FDS_PER_SESSION + FDS_RESERVED
}

/// Starts the Ironic API poller when `ironic.url` is set, after loading the last good poll.
fn start_ironic(
    cfg: &Config,
    live: &Live,
) -> Result<Option<Arc<crate::state::source::ironic::PollState>>> {
    if cfg.ironic.url.is_none() {
        return Ok(None);
    }
    let client = crate::state::source::ironic::Client::new(&cfg.ironic)?;
    let cache = cfg.ironic_cache();
    crate::state::source::ironic::load_cache_of(&live.store, &cache, client.subset());
    let state = Arc::new(crate::state::source::ironic::PollState::default());
    tracing::info!(ironic = client.base_url(), interval_secs = cfg.ironic.interval().as_secs(), cache = %cache.display(), "polling Ironic");
    let notices = match cfg.ironic.notifications.resolve()? {
        None => None,
        Some(amqp) => {
            let shared = Arc::new(crate::state::source::ironic::NotifyShared::default());
            state.set_notify(shared.clone());
            tracing::info!(broker = ?amqp, probe_secs = amqp.probe.as_secs(), "taking Ironic's notifications");
            let probe_every = amqp.probe;
            Some(crate::state::source::ironic::Notifications {
                events: crate::state::source::ironic::spawn_notifications(amqp, shared.clone()),
                shared,
                probe_every,
            })
        }
    };
    tokio::spawn(crate::state::source::ironic::run_poller(
        Arc::new(client),
        live.store.clone(),
        cache,
        cfg.ironic.refresh(),
        state.clone(),
        notices,
    ));
    Ok(Some(state))
}

/// The dnsmasq hostsdir to keep in sync, with its generation options.
struct Hostsdir {
    dir: std::path::PathBuf,
    pid_file: Option<std::path::PathBuf>,
}

fn dhcp_hostsdir(cfg: &Config) -> Result<Option<Hostsdir>> {
    let Some(dir) = cfg.dhcp.hostsdir.clone() else {
        return Ok(None);
    };
    let d = &cfg.dhcp;
    // Host files carry no boot options; derived only so a bad [dhcp] value fails at start.
    // A URL ironpxe cannot derive matters only to `ironpxe dhcp`, which says so.
    match crate::dhcp::DhcpOptions::derive(&cfg.dhcp_listeners(), &cfg.dhcp_choices()) {
        Ok(_) => {}
        Err(crate::dhcp::DhcpError::Config(why)) => tracing::warn!(%why, "[dhcp] boot URLs"),
        Err(e) => return Err(anyhow!("[dhcp]: {e}")),
    }
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!("[dhcp] hostsdir {}: {e}", dir.display()))?;
    Ok(Some(Hostsdir {
        dir,
        pid_file: d.dnsmasq_pid_file.clone(),
    }))
}

/// Writes the hostsdir for a snapshot and signals dnsmasq when it must forget entries.
/// Syncs the hostsdir with `snap`: only the files of the nodes changed since `since` (the
/// snapshot last synced) when neither snapshot settled anything between nodes — each
/// node's file then depends on that node alone — else every file.
fn sync_hostsdir(h: &Hostsdir, snap: &Snapshot, since: Option<(&Snapshot, &BTreeSet<NodeUuid>)>) {
    let synced = match since.filter(|(last, _)| !last.has_conflicts() && !snap.has_conflicts()) {
        Some((_, changed)) => crate::dhcp::sync_hostsdir_nodes(&h.dir, snap, changed),
        None => crate::dhcp::sync_hostsdir(&h.dir, snap),
    };
    match synced {
        Ok(r) => {
            if !(r.created.is_empty() && r.updated.is_empty() && r.deleted.is_empty()) {
                tracing::info!(
                    created = r.created.len(),
                    updated = r.updated.len(),
                    deleted = r.deleted.len(),
                    "dnsmasq hostsdir updated"
                );
            }
            if let Some(pid) = h.pid_file.as_deref().filter(|_| r.needs_sighup()) {
                if let Err(e) = crate::dhcp::sighup(pid) {
                    tracing::error!(pid_file = %pid.display(), error = %e, "cannot SIGHUP dnsmasq");
                }
            }
        }
        Err(e) => {
            tracing::error!(dir = %h.dir.display(), error = %e, "cannot write the dnsmasq hostsdir")
        }
    }
}

/// Starts the thread that follows the state (see [`follow_state`]). A thread of its own, not
/// a tokio task: a generation of many nodes costs a boot decision and a synced file write per
/// node, and on a runtime worker that stalls the HTTP requests queued behind it — all of them
/// on a one-CPU machine, whose runtime has one worker.
fn start_state_thread(app: Arc<App>, hostsdir: Option<Hostsdir>) -> Result<()> {
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("state".into())
        .spawn(move || follow_state(&app, hostsdir.as_ref(), &rt))
        .context("starting the state thread")?;
    Ok(())
}

/// On every new state generation: drop stale renders, prefetch newly needed images, and keep
/// the dnsmasq hostsdir in step — each for the nodes changed since the generation last
/// followed, so a change costs the same at any fleet size. Blocks; `rt` only wakes it on a
/// new generation.
fn follow_state(app: &App, hostsdir: Option<&Hostsdir>, rt: &tokio::runtime::Handle) {
    let mut rx = app.store.subscribe();
    let mut last = rx.borrow_and_update().clone();
    if let Some(h) = hostsdir {
        sync_hostsdir(h, &last, None);
    }
    while rt.block_on(rx.changed()).is_ok() {
        let snap = rx.borrow_and_update().clone();
        // What changed since the generation last followed (generations may be skipped).
        let changed = snap.changed_since(&last);
        app.renderer.sweep(&snap);
        if let Some(images) = &app.images {
            let since = Some((last.generation, &changed));
            images.update(&snap, &app.renderer.boot_config(), since);
        }
        if let Some(h) = hostsdir {
            sync_hostsdir(h, &snap, Some((&last, &changed)));
        }
        last = snap;
    }
}

/// Runs until SIGINT/SIGTERM; SIGHUP reloads state, templates and the config's boot
/// settings (a broken config keeps the running one).
async fn wait_for_signals(live: &Live, app: &App, config_file: Option<&std::path::Path>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; only SIGINT stops the server");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => reload(live, app, config_file),
        }
    }
}

fn reload(live: &Live, app: &App, config_file: Option<&std::path::Path>) {
    tracing::info!("SIGHUP: reloading");
    if let Some(path) = config_file {
        match Config::load(path).and_then(|c| c.boot_config()) {
            Ok(boot) => {
                app.renderer.set_boot_config(boot);
                tracing::info!(config = %path.display(), "boot settings reloaded (listen addresses and roots need a restart)");
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the running config")
            }
        }
    }
    live.rescan();
}

/// Waits, bounded, for running TFTP transfers to end.
async fn drain_tftp(app: &App, grace: Duration) {
    let deadline = Instant::now() + grace;
    while app.metrics.tftp_sessions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = app.metrics.tftp_sessions();
    if left > 0 {
        tracing::warn!(transfers = left, "TFTP transfers still running at exit");
    }
}

/// Keeps state and templates live; the servers attach to the same store and renderer.
pub struct Live {
    pub store: Arc<Store>,
    pub renderer: Arc<Renderer>,
    watches: Vec<crate::support::watch::WatchHandle>,
}

impl Live {
    /// Loads everything once and starts watching; fails only on what cannot be served at all.
    pub fn start(cfg: &Config) -> Result<Live> {
        let store = Arc::new(Store::new(cfg.index_config()));
        let renderer = Arc::new(
            Renderer::isolated(&cfg.templates, cfg.boot_config()?, &cfg.render)
                .map_err(|e| anyhow!(e.join("\n")))?,
        );
        let debounce = crate::support::watch::Debounce::default();
        let state_watch = crate::state::source::dir::DirSource::new(&cfg.state_dir)
            .watch(store.clone(), debounce)
            .map_err(|e| anyhow!("watching state directory {}: {e}", cfg.state_dir.display()))?;
        let template_watch = renderer
            .watch(debounce)
            .map_err(|e| anyhow!("watching templates {}: {e}", cfg.templates.display()))?;
        Ok(Live {
            store,
            renderer,
            watches: vec![state_watch, template_watch],
        })
    }

    /// Rescans the state directory and reloads the templates now (SIGHUP).
    pub fn rescan(&self) {
        for w in &self.watches {
            w.poke();
        }
        self.renderer.reload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first run with the default caps is quiet under a hard limit of 20 000 (common in
    /// containers) and under the shipped systemd unit's `LimitNOFILE=65536`; caps that limit
    /// cannot hold still warn.
    #[test]
    fn the_default_caps_fit_common_open_file_limits_and_larger_ones_warn() {
        let cfg = Config::default();
        assert_eq!(open_files_needed(&cfg), 2 * (4096 + 4096) + 256);
        assert!(open_files_needed(&cfg) <= 20_000);
        let mut big = Config::default();
        big.tftp.max_sessions = 30_000;
        big.http.max_connections = 10_000;
        assert!(open_files_needed(&big) > 65_536);
    }

    /// The default extra roots are searched when installed; a configured one is always kept
    /// (and warned about by `Roots::new` when missing).
    #[test]
    fn absent_default_extra_roots_are_left_out_and_configured_ones_kept() {
        let cfg = Config::default();
        let roots = tftp_roots(&cfg);
        assert_eq!(roots[0], cfg.tftp_root);
        for r in &cfg.extra_tftp_roots {
            assert_eq!(roots.contains(r), r.exists(), "{}", r.display());
        }
        let own = Config {
            extra_tftp_roots: vec!["/nonexistent/ironpxe-root".into()],
            ..Config::default()
        };
        assert_eq!(
            tftp_roots(&own),
            vec![own.tftp_root.clone(), "/nonexistent/ironpxe-root".into()]
        );
    }
}
