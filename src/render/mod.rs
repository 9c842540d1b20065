//! Rendering boot configs from operator-editable Tera templates, with a cache keyed by
//! everything that changes the output.
//!
//! Templates run in worker processes ([`worker`], [`pool`]): a render that runs past its
//! budget is killed, not abandoned, and one node's slow render never blocks a serving thread
//! — callers get a [`Pending`] render to await. Every result, failures included, is cached
//! per (template generation, node revision), and concurrent requests for the same config
//! share one render, so a retry storm costs one render. Tests and tools that render the
//! shipped templates can render in-process instead ([`Renderer::new`]).
//!
//! Safety against injected lines comes from the context, not from escaping: every value that
//! reaches a template is either built here from typed data (addresses, UUIDs, action names) or
//! checked to be one shell-free token per the target format, and display text is reduced to a
//! harmless character set. Templates run with autoescape off.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use serde::Serialize;
use tera::Tera;

use crate::model::addr::{HwType, PxeHwAddr};
use crate::model::boot::{self, Action, BootConfig, BootError, Decision, ImageSource};
use crate::model::node::{NodeUuid, PortLink};
use crate::state::problems::{ProblemKind, Problems};
use crate::state::{IndexedNode, IndexedPort, Match, Snapshot};
use crate::support::watch::{watch_dir, Debounce, WatchHandle};
use cache::{CacheKey, Claim, RenderCache};

/// The output formats, one template each.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub enum Format {
    /// A PXELINUX config file (`pxelinux.cfg/…`).
    Pxelinux,
    /// A per-node iPXE script.
    Ipxe,
    /// A GRUB config (`grub.cfg-01-…`, `<mac>.conf`).
    Grub,
    /// The `boot.ipxe` entry script that chains each network device's per-node script.
    IpxeEntry,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Pxelinux,
        Format::Ipxe,
        Format::Grub,
        Format::IpxeEntry,
    ];

    /// The template file that renders this format.
    pub fn template(self) -> &'static str {
        match self {
            Format::Pxelinux => "pxelinux.tera",
            Format::Ipxe => "ipxe.tera",
            Format::Grub => "grub.tera",
            Format::IpxeEntry => "boot.ipxe.tera",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Pxelinux => "pxelinux",
            Format::Ipxe => "ipxe",
            Format::Grub => "grub",
            Format::IpxeEntry => "boot.ipxe",
        }
    }

    /// How this format refers to an image. iPXE fetches http(s) itself; PXELINUX (TFTP only)
    /// and GRUB get a path under `images/` that ironpxe serves from its image cache.
    pub fn image_ref(self, img: &ImageSource, server: &Server) -> String {
        let cached = format!("images/{}/{}", img.cache_key(), img.file_name());
        match (self, img) {
            (Format::Ipxe | Format::IpxeEntry, ImageSource::Url(u)) => u.clone(),
            (Format::Ipxe | Format::IpxeEntry, ImageSource::File(_)) => {
                format!("{}/{cached}", server.http_url)
            }
            (Format::Pxelinux, _) => cached,
            (Format::Grub, _) => format!("/{cached}"),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format {s:?} (pxelinux, ipxe, grub, boot.ipxe)"))
    }
}

/// How clients reach this server, as written into rendered configs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Server {
    /// Base URL of the HTTP server, no trailing slash.
    pub http_url: String,
    /// Host or address of the TFTP server.
    pub tftp_server: String,
}

/// A rendering failure, naming what the operator must fix.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("{field} = {value:?} cannot go into a {format} config: {why}")]
    Unsafe {
        field: &'static str,
        value: String,
        format: Format,
        why: &'static str,
    },
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    /// The render ran past its budget (or its worker died) and was stopped.
    #[error("template {template}: {message}")]
    Stopped { template: String, message: String },
    /// No render worker could take it (not the template's fault: not remembered).
    #[error("renderer busy: {0}")]
    Unavailable(String),
}

impl RenderError {
    /// True when a client should retry later rather than fix anything (HTTP 503).
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            RenderError::Stopped { .. } | RenderError::Unavailable(_)
        )
    }
}

/// `[render]` settings: the cost one render may have.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderConfig {
    /// Longest one render may run, in milliseconds; then its worker is killed, the client
    /// gets an error and the node a problem.
    pub budget_ms: u64,
    /// Longest the trial render of an edited template set may run, in milliseconds.
    pub trial_budget_ms: u64,
    /// Worker processes rendering at once.
    pub workers: usize,
    /// Address-space limit of each worker process, in MiB (0: none).
    pub worker_memory_mib: u64,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            budget_ms: 1000,
            trial_budget_ms: 5000,
            workers: 2,
            worker_memory_mib: 1024,
        }
    }
}

/// One rendered config with what decided it.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Shared, never copied, by the cache and every transfer that sends it.
    pub body: ByteString,
    pub action: Action,
    pub reason: Arc<str>,
    /// True when this call rendered it (a cache miss), for the render-time metric.
    pub fresh: bool,
}

/// Cached renders kept (a fleet's worth of nodes × formats); beyond it the least recently
/// used are evicted.
const CACHE_CAP: usize = 200_000;

/// A loaded, validated set of templates.
struct Templates {
    set: Arc<TemplateSet>,
    /// Parsed here only when rendering in-process.
    tera: Option<Tera>,
}

impl Templates {
    fn generation(&self) -> u64 {
        self.set.generation
    }
}

/// What a render's result is shared through while it runs.
type Outcome = Result<Rendered, RenderError>;
type Slot = tokio::sync::watch::Receiver<Option<Outcome>>;

/// Where templates are rendered.
enum Engine {
    /// In this process, unbounded: for tests and tools over trusted templates.
    InProcess,
    Workers(pool::Pool),
}

/// Renders configs; holds the last good templates and the render cache.
pub struct Renderer {
    dir: PathBuf,
    boot: RwLock<Arc<BootConfig>>,
    templates: RwLock<Arc<Templates>>,
    errors: RwLock<Vec<String>>,
    cache: Arc<RenderCache>,
    engine: Engine,
    problems: Arc<Problems>,
    reloading: Mutex<()>,
}

/// A render that may still be running; [`Pending::wait`] or [`Pending::wait_blocking`] it.
pub enum Pending {
    Ready(Outcome),
    Running {
        slot: Slot,
        /// The caller that started it: the render time is counted once, by it.
        owner: bool,
    },
}

impl Pending {
    /// Waits for the result without blocking a thread.
    pub async fn wait(self) -> Outcome {
        match self {
            Pending::Ready(r) => r,
            Pending::Running { mut slot, owner } => {
                let r = match slot.wait_for(Option::is_some).await {
                    Ok(v) => v.clone(),
                    Err(_) => None,
                };
                finish(r, owner)
            }
        }
    }

    /// Waits on this thread (command-line tools, the admin previews).
    pub fn wait_blocking(self) -> Outcome {
        futures_lite::future::block_on(self.wait())
    }

    /// The result if it is there already.
    pub fn ready(self) -> Result<Outcome, Pending> {
        match self {
            Pending::Ready(r) => Ok(r),
            running => Err(running),
        }
    }
}

fn finish(r: Option<Outcome>, owner: bool) -> Outcome {
    match r {
        Some(Ok(mut rendered)) => {
            rendered.fresh = owner;
            Ok(rendered)
        }
        Some(Err(e)) => Err(e),
        None => Err(RenderError::Unavailable("the renderer stopped".into())),
    }
}

impl Renderer {
    /// Loads and validates the templates in `dir` and renders in this process: for tests and
    /// tools over trusted templates (no budget). The server uses [`Renderer::isolated`].
    pub fn new(dir: impl Into<PathBuf>, boot: BootConfig) -> Result<Self, Vec<String>> {
        Self::start(dir.into(), boot, Engine::InProcess)
    }

    /// Loads and validates the templates in `dir` in a worker process, and renders in a pool
    /// of them within `cfg`'s budgets.
    pub fn isolated(
        dir: impl Into<PathBuf>,
        boot: BootConfig,
        cfg: &RenderConfig,
    ) -> Result<Self, Vec<String>> {
        let launcher = pool::Launcher::this_executable(cfg);
        Self::start(
            dir.into(),
            boot,
            Engine::Workers(pool::Pool::start(cfg, launcher)),
        )
    }

    fn start(dir: PathBuf, boot: BootConfig, engine: Engine) -> Result<Self, Vec<String>> {
        let templates = load_set(&dir, &boot, &engine, 1)?;
        Ok(Renderer {
            dir,
            boot: RwLock::new(Arc::new(boot)),
            templates: RwLock::new(Arc::new(templates)),
            errors: RwLock::new(Vec::new()),
            cache: Arc::new(RenderCache::new(CACHE_CAP)),
            engine,
            problems: Arc::default(),
            reloading: Mutex::new(()),
        })
    }

    /// The registry where render failures of nodes are reported (shared with the servers).
    pub fn problems(&self) -> Arc<Problems> {
        self.problems.clone()
    }

    /// Counters of the worker pool: renders stopped at their budget, workers started, died.
    pub fn stats(&self) -> Option<&pool::PoolStats> {
        match &self.engine {
            Engine::Workers(p) => Some(&p.stats),
            Engine::InProcess => None,
        }
    }

    /// The boot settings renders use now.
    pub fn boot_config(&self) -> Arc<BootConfig> {
        self.boot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the boot settings (config reload) and drops every cached render.
    pub fn set_boot_config(&self, boot: BootConfig) {
        *self.boot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(boot);
        self.cache.clear();
        self.problems.clear_kind(ProblemKind::Render);
    }

    /// The template generation: bumps on every successful reload.
    pub fn generation(&self) -> u64 {
        self.current().generation()
    }

    /// Problems with the templates on disk (empty when the loaded set is current).
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn current(&self) -> Arc<Templates> {
        self.templates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the template directory; on failure keeps the last good set and records why.
    pub fn reload(&self) -> bool {
        // One reload at a time: a generation number names exactly one set.
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation() + 1;
        match load_set(&self.dir, &self.boot_config(), &self.engine, generation) {
            Ok(loaded) => {
                *self.templates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                self.errors
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.cache.clear();
                self.problems.clear_kind(ProblemKind::Render);
                tracing::info!(generation, dir = %self.dir.display(), "templates reloaded");
                true
            }
            Err(errs) => {
                for e in &errs {
                    tracing::error!(error = %e, "template error; keeping the last good templates");
                }
                *self.errors.write().unwrap_or_else(|p| p.into_inner()) = errs;
                false
            }
        }
    }

    /// Reloads on every change in the template directory.
    pub fn watch(self: &Arc<Self>, debounce: Debounce) -> notify::Result<WatchHandle> {
        let me = Arc::clone(self);
        let dir = self.dir.clone();
        let mut last_seen = dir_fingerprint(&dir);
        watch_dir(&dir, debounce, move |paths| {
            let now = dir_fingerprint(&me.dir);
            if paths.is_empty() && now == last_seen {
                return; // periodic rescan, nothing changed
            }
            last_seen = now;
            me.reload();
        })
    }

    /// Drops cached renders of nodes that changed or went away in `snap`.
    pub fn sweep(&self, snap: &Snapshot) {
        let mut changed = Vec::new();
        self.cache.retain(|k| match k.node {
            None => true,
            Some((uuid, rev)) => {
                let same = snap.node(&uuid).is_some_and(|n| n.revision == rev);
                if !same {
                    changed.push(uuid);
                }
                same
            }
        });
        // A changed node gets a fresh chance; a vanished one has no problems any more.
        for uuid in changed {
            self.problems.clear(uuid, ProblemKind::Render);
        }
        self.problems.retain_nodes(|u| snap.node(u).is_some());
    }

    /// Renders the config for a matched node (or, with `None`, an unknown machine) and waits
    /// for it on this thread. Servers use [`Renderer::begin`].
    pub fn render(
        &self,
        target: Option<&Match<'_>>,
        format: Format,
        hw: Option<HwType>,
        server: &Server,
    ) -> Outcome {
        self.begin(target, format, hw, server).wait_blocking()
    }

    /// Starts the render of a config, or finds it cached or already running. Returns at once
    /// unless rendering in-process.
    pub fn begin(
        &self,
        target: Option<&Match<'_>>,
        format: Format,
        hw: Option<HwType>,
        server: &Server,
    ) -> Pending {
        let templates = self.current();
        let node = target.map(|m| m.node.node.uuid);
        let key = CacheKey {
            templates: templates.generation(),
            node: target.map(|m| (m.node.node.uuid, m.node.revision)),
            port: target.and_then(|m| m.port).map(|p| p.port.address),
            hw,
            format,
            server: server.clone(),
        };
        let (tx, slot) = match self.cache.claim(&key) {
            Claim::Done(r) => return Pending::Ready(r),
            Claim::Running(slot) => return Pending::Running { slot, owner: false },
            Claim::Owner(tx, slot) => (tx, slot),
        };
        let done = Completion {
            cache: self.cache.clone(),
            problems: self.problems.clone(),
            key,
            node,
            tx,
            slot: slot.clone(),
            finished: false,
        };
        let boot = self.boot_config();
        let prepared = prepare(&boot, target, format, hw, server);
        match (prepared, &self.engine, &templates.tera) {
            (Err(e), _, _) => done.finish(Err(e)),
            (Ok(p), Engine::InProcess, Some(tera)) => {
                let body = render_template(tera, format, &p.ctx);
                done.finish(body.map(|b| p.rendered(b)));
            }
            (Ok(_), Engine::InProcess, None) => {
                done.finish(Err(RenderError::Unavailable("templates not parsed".into())))
            }
            (Ok(p), Engine::Workers(pool), _) => submit(pool, &templates.set, format, p, done),
        }
        // Finished already (in-process, a refused context, a full queue)?
        let now = slot.borrow().clone();
        match now {
            Some(r) => Pending::Ready(finish(Some(r), true)),
            None => Pending::Running { slot, owner: true },
        }
    }
    /// Number of cached renders (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The part of a render that needs no template: the boot decision and the checked context.
struct Prepared {
    ctx: Context,
    action: Action,
    reason: Arc<str>,
}

impl Prepared {
    fn rendered(&self, body: String) -> Rendered {
        Rendered {
            fresh: true,
            body: body.into(),
            action: self.action,
            reason: self.reason.clone(),
        }
    }
}

fn prepare(
    boot_cfg: &BootConfig,
    target: Option<&Match<'_>>,
    format: Format,
    hw: Option<HwType>,
    server: &Server,
) -> Result<Prepared, RenderError> {
    let port = target.and_then(|m| m.port);
    let infiniband = port.is_some_and(|p| p.is_infiniband());
    let decision = match target {
        Some(m) => boot::decide(&m.node.node, infiniband, boot_cfg)?,
        None => boot::decide_unknown(boot_cfg)?,
    };
    let ctx = Context::build(&decision, target.map(|m| m.node), port, hw, format, server)?;
    Ok(Prepared {
        ctx,
        action: decision.action,
        reason: decision.reason.into(),
    })
}

/// Hands a prepared render to the worker pool.
fn submit(
    pool: &pool::Pool,
    set: &Arc<TemplateSet>,
    format: Format,
    p: Prepared,
    done: Completion,
) {
    let context = match serde_json::to_value(&p.ctx) {
        Ok(v) => v,
        Err(e) => {
            return done.finish(Err(RenderError::Template {
                template: format.template().into(),
                message: e.to_string(),
            }))
        }
    };
    let started = Instant::now();
    pool.submit(pool::Job {
        set: set.clone(),
        request: worker::Request::Render { format, context },
        done: Box::new(move |r| {
            let outcome = match r {
                Ok(body) => Ok(p.rendered(body)),
                Err(e) => Err(job_error(format, &e, started.elapsed())),
            };
            done.finish(outcome);
        }),
    });
}

fn job_error(format: Format, e: &pool::JobError, took: Duration) -> RenderError {
    let template = format.template().to_owned();
    match e {
        pool::JobError::Refused(errs) => RenderError::Template {
            template,
            message: errs.join("; "),
        },
        pool::JobError::Unavailable(why) => RenderError::Unavailable(why.clone()),
        other => RenderError::Stopped {
            template,
            message: format!("{} (after {} ms)", pool::describe(other), took.as_millis()),
        },
    }
}

/// Stores a finished render in the cache, tells its waiters, and reports a node's failure.
struct Completion {
    cache: Arc<RenderCache>,
    problems: Arc<Problems>,
    key: CacheKey,
    node: Option<NodeUuid>,
    tx: tokio::sync::watch::Sender<Option<Outcome>>,
    /// The running entry this render claimed.
    slot: Slot,
    finished: bool,
}

impl Completion {
    fn finish(mut self, outcome: Outcome) {
        if let (Some(node), Err(e)) = (self.node, &outcome) {
            if !matches!(e, RenderError::Unavailable(_)) {
                self.problems.set(
                    node,
                    ProblemKind::Render,
                    format!("{}: {e}", self.key.format),
                );
            }
        }
        self.cache.finish(&self.key, &self.slot, &outcome);
        let _ = self.tx.send(Some(outcome));
        self.finished = true;
    }
}

impl Drop for Completion {
    /// Dropped unfinished (the thread running it died): the running entry, which the cache
    /// never evicts, goes too — its waiters learn the renderer stopped, and the next request
    /// renders again instead of joining a render that will never end.
    fn drop(&mut self) {
        if !self.finished {
            let stopped = Err(RenderError::Unavailable("the renderer stopped".into()));
            self.cache.finish(&self.key, &self.slot, &stopped);
        }
    }
}

/// Reads, checks and trial-renders the set in `dir`: in a worker when there is a pool, so a
/// template that recurses, loops or allocates without end costs a killed process.
fn load_set(
    dir: &Path,
    boot: &BootConfig,
    engine: &Engine,
    generation: u64,
) -> Result<Templates, Vec<String>> {
    let sources = load::read_sources(dir)?;
    let tera = match engine {
        Engine::Workers(pool) => {
            pool.trial(sources.clone(), &boot.ramdisk_params)?;
            None
        }
        Engine::InProcess => {
            let tera = load::build(sources.clone())?;
            load::trial_render(&tera, &boot.ramdisk_params)?;
            Some(tera)
        }
    };
    Ok(Templates {
        set: Arc::new(TemplateSet {
            generation,
            sources,
        }),
        tera,
    })
}

/// Renders one format with a context that arrived as JSON (in a worker).
fn render_value(
    tera: &Tera,
    format: Format,
    context: serde_json::Value,
) -> Result<String, RenderError> {
    let tctx =
        tera::Context::from_value(context).map_err(|e| template_error(format.template(), &e))?;
    render_context(tera, format, &tctx)
}

fn render_template(tera: &Tera, format: Format, ctx: &Context) -> Result<String, RenderError> {
    let tctx =
        tera::Context::from_serialize(ctx).map_err(|e| template_error(format.template(), &e))?;
    render_context(tera, format, &tctx)
}

fn render_context(
    tera: &Tera,
    format: Format,
    tctx: &tera::Context,
) -> Result<String, RenderError> {
    let mut out = load::Bounded::default();
    tera.render_to(format.template(), tctx, &mut out)
        .map_err(|e| template_error(format.template(), &e))?;
    String::from_utf8(out.0).map_err(|e| RenderError::Template {
        template: format.template().to_owned(),
        message: e.to_string(),
    })
}

fn template_error(template: &str, e: &tera::Error) -> RenderError {
    RenderError::Template {
        template: template.to_owned(),
        message: error_chain(e),
    }
}

/// Tera puts the useful part (line, column, what was expected) in the error's sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg.replace('\n', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The template context, documented in the README. Every string in it is safe for the
/// format it is rendered into.
#[derive(Serialize, Debug)]
pub struct Context {
    /// `deploy`, `clean`, `service`, `inspect`, `rescue`, `discovery`, `instance`,
    /// `instance_iso` or `local`.
    pub action: &'static str,
    /// How to boot: `kernel` (kernel + initrd), `iso` (iPXE sanboot) or `local`.
    pub boot: &'static str,
    /// Why this action, as display text.
    pub reason: String,
    /// Kernel (or ISO) reference for this format; empty when booting locally.
    pub kernel: String,
    /// Initrd reference for this format; empty when none.
    pub initrd: String,
    /// Kernel parameters without BOOTIF, space separated.
    pub kernel_params: String,
    /// `01-aa-bb-…` or `20-…` for the booting port, empty when unknown.
    pub bootif: String,
    pub node: Option<NodeContext>,
    pub port: Option<PortContext>,
    pub server: Server,
}

/// The node part of the context.
#[derive(Serialize, Debug)]
pub struct NodeContext {
    pub uuid: String,
    pub name: String,
    pub provision_state: String,
    /// `node.extra` string, number and boolean values as display text.
    pub extra: HashMap<String, String>,
}

/// The port part of the context.
#[derive(Serialize, Debug)]
pub struct PortContext {
    /// The port's address (the IB MAC for InfiniBand), colon form.
    pub address: String,
    /// `01` or `20`: the hardware type the client asked under.
    pub hw_type: &'static str,
    pub infiniband: bool,
    /// The GUID (IB ports with a valid client-id), else empty.
    pub guid: String,
    /// The DHCP client-id of an IB port in colon hex (any length), else empty.
    pub client_id: String,
}

impl Context {
    fn build(
        d: &Decision,
        node: Option<&IndexedNode>,
        port: Option<&IndexedPort>,
        hw: Option<HwType>,
        format: Format,
        server: &Server,
    ) -> Result<Context, RenderError> {
        check_token("server.http_url", &server.http_url, format)?;
        check_token("server.tftp_server", &server.tftp_server, format)?;
        let reference = |field, img: &Option<ImageSource>| -> Result<String, RenderError> {
            match img {
                None => Ok(String::new()),
                Some(i) => {
                    let r = format.image_ref(i, server);
                    check_token(field, &r, format)?;
                    Ok(r)
                }
            }
        };
        let kernel = reference("kernel", &d.kernel)?;
        let initrd = reference("ramdisk", &d.ramdisk)?;
        for p in &d.params {
            check_token("kernel parameter", p, format)?;
        }
        grammar::check_command_line(&d.params, format)?;
        let boot = match d.action {
            Action::LocalBoot => "local",
            Action::InstanceIso => "iso",
            _ => "kernel",
        };
        // The type asked under, else the port's own.
        let hw = port.map(|p| hw.unwrap_or(p.port.hw_type()));
        let bootif = match (port, hw) {
            (Some(p), Some(hw)) => PxeHwAddr::new(hw, p.port.address).to_string(),
            _ => String::new(),
        };
        Ok(Context {
            action: d.action.name(),
            boot,
            reason: display_text(&d.reason),
            kernel,
            initrd,
            kernel_params: d.params.join(" "),
            bootif,
            node: node.map(node_context),
            port: port.map(|p| port_context(p, hw)),
            server: server.clone(),
        })
    }
}

fn node_context(n: &IndexedNode) -> NodeContext {
    let node = &n.node;
    let extra = node
        .extra
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(x) => x.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((display_text(k), display_text(&v)))
        })
        .collect();
    NodeContext {
        uuid: node.uuid.to_string(),
        name: display_text(node.name.as_deref().unwrap_or("")),
        provision_state: display_text(node.provision_state.as_str()),
        extra,
    }
}

fn port_context(p: &IndexedPort, hw: Option<HwType>) -> PortContext {
    PortContext {
        address: p.port.address.to_string(),
        hw_type: hw.unwrap_or(HwType::Ethernet).arp(),
        infiniband: p.is_infiniband(),
        guid: p.guid().map(|g| g.to_string()).unwrap_or_default(),
        // The hex of any truthy client-id (never its raw text: it may be anything).
        client_id: match p.port.link() {
            PortLink::Infiniband(form) => form.hex().map(|c| c.to_string()).unwrap_or_default(),
            PortLink::Ethernet => String::new(),
        },
    }
}

/// Longest display text kept; more is cut.
const DISPLAY_MAX: usize = 120;

/// Reduces text for comments and `echo` lines to characters that mean nothing to PXELINUX,
/// iPXE or GRUB: letters, digits, space and `._:/@+=,-`; anything else becomes `_`.
pub fn display_text(s: &str) -> String {
    s.chars()
        .take(DISPLAY_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ._:/@+=,-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Names and sizes of the template files, to tell a real change from a periodic rescan.
fn dir_fingerprint(dir: &Path) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().ok(),
            ))
        })
        .collect();
    v.sort();
    v
}

mod cache;
mod calls;
mod grammar;
pub use grammar::check_token;
mod load;
pub mod pool;
pub mod worker;
use pool::TemplateSet;

#[cfg(test)]
mod tests;
