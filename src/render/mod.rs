//! Rendering boot configs from operator-editable Tera templates, with a cache keyed by
//! everything that changes the output.
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

use serde::Serialize;
use tera::Tera;

use crate::boot::{self, Action, BootConfig, BootError, Decision, ImageSource};
use crate::node::NodeUuid;
use crate::store::{IndexedNode, IndexedPort, Match, Snapshot};
use crate::watch::{watch_dir, Debounce, WatchHandle};

/// The output formats, one template each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// ARP hardware type of the name a client asked under; it picks `BOOTIF=01-…` or `20-…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HwType {
    Ethernet,
    Infiniband,
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
#[derive(Debug, thiserror::Error)]
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
}

/// One rendered config with what decided it.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub body: Arc<str>,
    pub action: Action,
    pub reason: Arc<str>,
    /// True when this call rendered it (a cache miss), for the render-time metric.
    pub fresh: bool,
}

/// Everything that changes a rendered config.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct CacheKey {
    templates: u64,
    node: Option<(NodeUuid, u64)>,
    port: Option<crate::addr::Mac>,
    hw: Option<HwType>,
    format: Format,
    server: Server,
}

/// Cached renders are dropped wholesale beyond this many (a fleet's worth of nodes × formats).
const CACHE_CAP: usize = 200_000;

/// A loaded, validated set of templates.
struct Templates {
    tera: Tera,
    generation: u64,
}

/// Renders configs; holds the last good templates and the render cache.
pub struct Renderer {
    dir: PathBuf,
    boot: RwLock<Arc<BootConfig>>,
    templates: RwLock<Arc<Templates>>,
    errors: RwLock<Vec<String>>,
    cache: Mutex<HashMap<CacheKey, Rendered>>,
}

impl Renderer {
    /// Loads and validates the templates in `dir`; fails when any is missing or broken.
    pub fn new(dir: impl Into<PathBuf>, boot: BootConfig) -> Result<Self, Vec<String>> {
        let dir = dir.into();
        let tera = load_templates(&dir, &boot)?;
        Ok(Renderer {
            dir,
            boot: RwLock::new(Arc::new(boot)),
            templates: RwLock::new(Arc::new(Templates {
                tera,
                generation: 1,
            })),
            errors: RwLock::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The boot settings renders use now.
    pub fn boot_config(&self) -> Arc<BootConfig> {
        self.boot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the boot settings (config reload) and drops every cached render.
    pub fn set_boot_config(&self, boot: BootConfig) {
        *self.boot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(boot);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The template generation: bumps on every successful reload.
    pub fn generation(&self) -> u64 {
        self.current().generation
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
        match load_templates(&self.dir, &self.boot_config()) {
            Ok(tera) => {
                let mut t = self.templates.write().unwrap_or_else(|p| p.into_inner());
                let generation = t.generation + 1;
                *t = Arc::new(Templates { tera, generation });
                drop(t);
                self.errors
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|k, _| match k.node {
            None => true,
            Some((uuid, rev)) => snap.node(&uuid).is_some_and(|n| n.revision == rev),
        });
    }

    /// Renders the config for a matched node (or, with `None`, an unknown machine).
    pub fn render(
        &self,
        target: Option<&Match<'_>>,
        format: Format,
        hw: Option<HwType>,
        server: &Server,
    ) -> Result<Rendered, RenderError> {
        let templates = self.current();
        let key = CacheKey {
            templates: templates.generation,
            node: target.map(|m| (m.node.node.uuid, m.node.revision)),
            port: target.and_then(|m| m.port).map(|p| p.port.address),
            hw,
            format,
            server: server.clone(),
        };
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let boot = self.boot_config();
        let rendered = render_uncached(&templates.tera, &boot, target, format, hw, server)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(
            key,
            Rendered {
                fresh: false,
                ..rendered.clone()
            },
        );
        Ok(rendered)
    }

    /// Number of cached renders (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn render_uncached(
    tera: &Tera,
    boot_cfg: &BootConfig,
    target: Option<&Match<'_>>,
    format: Format,
    hw: Option<HwType>,
    server: &Server,
) -> Result<Rendered, RenderError> {
    let port = target.and_then(|m| m.port);
    let infiniband = port.is_some_and(|p| p.is_infiniband());
    let decision = match target {
        Some(m) => boot::decide(&m.node.node, infiniband, boot_cfg)?,
        None => boot::decide_unknown(boot_cfg)?,
    };
    let ctx = Context::build(&decision, target.map(|m| m.node), port, hw, format, server)?;
    let body = render_template(tera, format, &ctx)?;
    Ok(Rendered {
        fresh: true,
        body: body.into(),
        action: decision.action,
        reason: decision.reason.into(),
    })
}

fn render_template(tera: &Tera, format: Format, ctx: &Context) -> Result<String, RenderError> {
    let tctx =
        tera::Context::from_serialize(ctx).map_err(|e| template_error(format.template(), &e))?;
    let mut out = load::Bounded::default();
    tera.render_to(format.template(), &tctx, &mut out)
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
    /// The DHCP client-id (IB ports), else empty.
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
        let hw = port.map(|p| {
            hw.unwrap_or(if p.is_infiniband() {
                HwType::Infiniband
            } else {
                HwType::Ethernet
            })
        });
        let bootif = match (port, hw) {
            (Some(p), Some(HwType::Infiniband)) => format!("20-{}", p.port.address.hyphen()),
            (Some(p), _) => format!("01-{}", p.port.address.hyphen()),
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
        hw_type: match hw {
            Some(HwType::Infiniband) => "20",
            _ => "01",
        },
        infiniband: p.is_infiniband(),
        guid: p.guid().map(|g| g.to_string()).unwrap_or_default(),
        client_id: p.client_id.map(|c| c.to_string()).unwrap_or_default(),
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

mod grammar;
pub use grammar::check_token;
mod load;
use load::load_templates;

#[cfg(test)]
mod tests;
