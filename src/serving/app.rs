//! What both servers share: the live state, the renderer, the served roots, the image cache
//! and the counters — and the one function that turns a classified request into an answer.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::model::addr::{HwType, PxelinuxName};
use crate::model::boot::Action;
use crate::model::resource::{GrubFile, GrubPrefixes, GrubRequest, IpxeTarget, Resource};
use crate::render::{Format, Pending, RenderError, Rendered, Renderer, Server};
use crate::serving::images::{ImageCache, Lookup, PendingFetch};
use crate::serving::metrics::{Metrics, StateGauges};
use crate::serving::roots::Roots;
use crate::state::{Match, Store};

/// GRUB's entry config in Ironic's UEFI layout: source the per-MAC file.
pub const GRUB_MASTER: &str = "set default=master\nset timeout=1\nset hidden_timeout_quiet=false\n\nmenuentry \"master\" {\n    configfile /$net_default_mac.conf\n}\n";

/// Shared server state.
pub struct App {
    pub store: Arc<Store>,
    pub renderer: Arc<Renderer>,
    pub roots: Roots,
    pub http_roots: Roots,
    pub images: Option<Arc<ImageCache>>,
    pub metrics: Arc<Metrics>,
    /// Configured public base URL (no trailing slash), if any.
    pub public_url: Option<String>,
    /// The Ironic API poller's status, when Ironic is a source.
    pub ironic: Option<Arc<crate::state::source::ironic::PollState>>,
    /// Where requests are recorded for the operator view.
    pub journal: Option<Arc<crate::serving::journal::Journal>>,
    /// Problems of single nodes found while serving (render budget, refused images).
    pub problems: Arc<crate::state::problems::Problems>,
    /// Where GRUB's own names are answered (`[grub] prefixes`).
    pub grub_prefixes: GrubPrefixes,
}

/// A boot config as served: the rendered body and what decided it (not the boot settings,
/// `model::boot::BootConfig`).
#[derive(Debug, Clone)]
pub struct ServedConfig {
    pub body: bytestring::ByteString,
    pub format: Format,
    pub action: Action,
    /// The match as logs show it (`node <uuid> (<name>) port <address>`) or `unknown machine`.
    pub matched: String,
    pub node: Option<crate::model::node::NodeUuid>,
    pub port: Option<crate::model::addr::Mac>,
}

/// The answer to one request.
#[derive(Debug)]
pub enum Answer {
    Config(ServedConfig),
    /// A file to send (static file or cached image), with its length.
    File {
        path: PathBuf,
        len: u64,
    },
    /// An image still being fetched: wait, then look again.
    Pending(PendingFetch),
    /// A config being rendered: await [`Rendering::finish`] (never on a serving thread).
    Rendering(Rendering),
    /// Nothing by that name (for PXELINUX: walk on to the next name).
    NotFound(&'static str),
    /// The name is refused (traversal, control bytes, a write).
    Refused(&'static str),
    /// Something that should work failed; the message is for the log.
    Error(String),
    /// It could not be done now (a render over its budget, every worker busy): retry later.
    Unavailable(String),
}

/// What a config answer says besides its body.
pub struct ConfigMeta {
    format: Format,
    matched: String,
    node: Option<crate::model::node::NodeUuid>,
    port: Option<crate::model::addr::Mac>,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl ConfigMeta {
    fn answer(self, result: Result<Rendered, RenderError>) -> Answer {
        if result.as_ref().is_ok_and(|r| r.fresh) {
            self.metrics.render_time(self.started.elapsed());
        }
        match result {
            Ok(r) => Answer::Config(ServedConfig {
                body: r.body,
                format: self.format,
                action: r.action,
                matched: self.matched,
                node: self.node,
                port: self.port,
            }),
            Err(e) if e.is_overload() => Answer::Unavailable(format!("{}: {e}", self.matched)),
            Err(e) => Answer::Error(format!("{}: {e}", self.matched)),
        }
    }
}

/// A config whose render is running (in a worker process).
pub struct Rendering {
    pending: Pending,
    meta: ConfigMeta,
}

impl std::fmt::Debug for Rendering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rendering({})", self.meta.matched)
    }
}

impl Rendering {
    /// Waits for the render (at most its budget) and answers with it.
    pub async fn finish(self) -> Answer {
        let r = self.pending.wait().await;
        self.meta.answer(r)
    }
}

#[cfg(test)]
impl App {
    /// An app over the shipped templates, an empty store and these static roots, journaling.
    pub(crate) fn for_tests(roots: Vec<PathBuf>) -> App {
        use crate::serving::journal::{Journal, JournalConfig};
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let boot = crate::model::boot::BootConfig::default();
        let roots = crate::serving::roots::Roots::new(roots);
        App {
            store: Arc::new(crate::state::Store::new(Default::default())),
            renderer: Arc::new(crate::render::Renderer::new(templates, boot).expect("templates")),
            roots: roots.clone(),
            http_roots: roots,
            images: None,
            metrics: Arc::default(),
            public_url: None,
            ironic: None,
            journal: Some(Journal::start(JournalConfig::default())),
            problems: Arc::default(),
            grub_prefixes: GrubPrefixes::Any,
        }
    }
}

impl App {
    /// Answers a classified request. `roots` are the static roots of the asking protocol.
    pub fn answer(&self, res: &Resource, server: &Server, roots: &Roots) -> Answer {
        let snap = self.store.current();
        match res {
            Resource::Pxelinux(PxelinuxName::Default) => {
                self.config(None, Format::Pxelinux, None, server)
            }
            Resource::Pxelinux(name) => {
                let m = snap.by_pxelinux_name(name);
                self.node_config(m, Format::Pxelinux, name.hw_type(), server)
            }
            Resource::IronicIpxe(mac) => {
                self.node_config(snap.by_mac(mac), Format::Ipxe, None, server)
            }
            Resource::Ipxe(IpxeTarget::Addr(a)) => {
                self.node_config(snap.by_addr(a), Format::Ipxe, None, server)
            }
            Resource::Ipxe(IpxeTarget::Node(u)) => {
                self.node_config(snap.by_node_uuid(u), Format::Ipxe, None, server)
            }
            Resource::Ipxe(IpxeTarget::Unknown) => self.config(None, Format::Ipxe, None, server),
            Resource::IpxeEntry => self.config(None, Format::IpxeEntry, None, server),
            Resource::Grub(g) => match self.static_grub_file(g, roots) {
                Some(file) => file,
                None => self.grub(g, server),
            },
            Resource::GrubConf(mac) => {
                let m = snap.by_mac(mac);
                self.config(m.as_ref(), Format::Grub, None, server)
            }
            Resource::GrubIpConf(ip) => {
                let m = snap.by_fixed_ip(*ip);
                self.config(m.as_ref(), Format::Grub, None, server)
            }
            Resource::Image { key, name } => self.image(key, name),
            Resource::Static(path) => static_file(path, roots),
        }
    }

    /// A GRUB name outside Ironic's layout that is also a file in the roots: the file wins,
    /// so a distro's own `grub.cfg` under its prefix is never shadowed.
    fn static_grub_file(&self, g: &GrubRequest, roots: &Roots) -> Option<Answer> {
        if g.in_ironic_layout() {
            return None;
        }
        match static_file(&g.path, roots) {
            Answer::NotFound(_) => None,
            found_or_refused => Some(found_or_refused),
        }
    }

    fn grub(&self, g: &GrubRequest, server: &Server) -> Answer {
        let snap = self.store.current();
        match g.file {
            GrubFile::Mac(mac) => self.node_config(snap.by_mac(&mac), Format::Grub, None, server),
            GrubFile::HexIp(prefix) => {
                let m = snap.by_pxelinux_name(&PxelinuxName::HexIp(prefix));
                self.node_config(m, Format::Grub, None, server)
            }
            GrubFile::Master => Answer::Config(ServedConfig {
                body: bytestring::ByteString::from_static(GRUB_MASTER),
                format: Format::Grub,
                action: Action::LocalBoot,
                matched: "grub master".into(),
                node: None,
                port: None,
            }),
        }
    }

    fn node_config(
        &self,
        m: Option<Match<'_>>,
        format: Format,
        hw: Option<HwType>,
        server: &Server,
    ) -> Answer {
        match m {
            Some(m) => self.config(Some(&m), format, hw, server),
            None => Answer::NotFound("no node matches"),
        }
    }

    fn config(
        &self,
        m: Option<&Match<'_>>,
        format: Format,
        hw: Option<HwType>,
        server: &Server,
    ) -> Answer {
        let meta = ConfigMeta {
            format,
            matched: m.map_or_else(|| "unknown machine".into(), |m| m.to_string()),
            node: m.map(|m| m.node.node.uuid),
            port: m.and_then(|m| m.port).map(|p| p.port.address),
            started: Instant::now(),
            metrics: self.metrics.clone(),
        };
        match self.renderer.begin(m, format, hw, server).ready() {
            Ok(result) => meta.answer(result),
            Err(pending) => Answer::Rendering(Rendering { pending, meta }),
        }
    }

    fn image(&self, key: &str, name: &str) -> Answer {
        let Some(images) = &self.images else {
            return Answer::NotFound("image cache disabled");
        };
        match images.lookup(key, name) {
            Lookup::Ready { path, len } => Answer::File { path, len },
            Lookup::Pending(p) => Answer::Pending(p),
            Lookup::Unknown => Answer::NotFound("no node needs this image"),
            Lookup::Failed(e) => Answer::Error(e.to_string()),
            // The reason is the node's problem (/api/v1/problems); the client learns nothing.
            Lookup::Refused(_) => Answer::Refused("image reference refused by [images] policy"),
        }
    }

    /// Gauges for `/metrics` and `/healthz`.
    pub fn gauges(&self) -> StateGauges {
        let s = self.store.current();
        let stats = self.renderer.stats();
        let stat = |f: fn(&crate::render::pool::PoolStats) -> &std::sync::atomic::AtomicU64| {
            stats.map_or(0, |s| f(s).load(std::sync::atomic::Ordering::Relaxed))
        };
        StateGauges {
            nodes: s.nodes().len(),
            ports: s.ports().len(),
            state_generation: s.generation,
            state_errors: s.errors.len(),
            template_generation: self.renderer.generation(),
            template_errors: self.renderer.errors().len(),
            node_problems: self.problems.len(),
            renders_stopped: stat(|s| &s.over_budget),
            render_worker_starts: stat(|s| &s.worker_starts),
            render_worker_deaths: stat(|s| &s.worker_deaths),
            ironic: self.ironic.as_ref().map(|p| p.get()),
        }
    }

    /// The server description used when a request carries none better: the configured public
    /// URL, else the address the client reached us at (callers resolve a wildcard listen
    /// address first: `[::]` or `0.0.0.0` in a URL reaches nothing; should one come here,
    /// loopback is written, never the wildcard).
    pub fn default_server(&self, local_ip: IpAddr, http_port: u16) -> Server {
        server_at(self.public_url.as_deref(), local_ip, http_port)
    }
}

/// How a client that reached this server at `local_ip` is told to reach it again: the
/// configured public URL, else HTTP on that address; TFTP at that address. The one place this
/// is decided, for TFTP, for HTTP without a trusted `Host`, the status page and `ironpxe
/// render` alike (a wildcard `local_ip` should not come here: loopback is written, never it).
pub fn server_at(public_url: Option<&str>, local_ip: IpAddr, http_port: u16) -> Server {
    let local = crate::model::net::preview_address(SocketAddr::new(local_ip, http_port), &[]);
    let http_url = match public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            crate::model::net::http_base_url(local).unwrap_or_else(|| format!("http://{local}"))
        }
    };
    Server {
        http_url,
        tftp_server: crate::model::net::server_name(local.ip())
            .unwrap_or_else(|| local.ip().to_string()),
    }
}

/// What `serve` would write into a `format` config for a client that reached it at the
/// configured listen addresses — no client connection says which: iPXE scripts are fetched
/// over HTTP (the HTTP listen address), PXELINUX and GRUB configs over TFTP (the first
/// specific TFTP listen address). On a wildcard the address shown is
/// [`crate::model::net::preview_address`]'s.
pub fn preview_server(
    public_url: Option<&str>,
    http_listen: SocketAddr,
    tftp_listen: &[SocketAddr],
    format: Format,
) -> Server {
    let http = crate::model::net::preview_address(http_listen, tftp_listen);
    let tftp = tftp_listen
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| !ip.is_unspecified());
    let local = match format {
        Format::Pxelinux | Format::Grub => tftp.unwrap_or(http.ip()),
        Format::Ipxe | Format::IpxeEntry => http.ip(),
    };
    server_at(public_url, local, http.port())
}

/// A static file from `roots`, if it is there.
fn static_file(path: &str, roots: &Roots) -> Answer {
    match roots.resolve(path) {
        Ok(p) => match std::fs::metadata(&p) {
            Ok(m) => Answer::File {
                path: p,
                len: m.len(),
            },
            Err(_) => Answer::NotFound("vanished"),
        },
        Err(crate::model::paths::PathError::NotFound) => Answer::NotFound("no such file"),
        Err(_) => Answer::Refused("outside the served roots"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node::StateDoc;
    use crate::model::resource::classify;
    use crate::state::Update;

    const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

    /// An active node (local boot: no images to fetch) with one port at 10.99.0.111.
    fn app_with_node(root: &std::path::Path) -> App {
        let app = App::for_tests(vec![root.to_owned()]);
        let json = format!(
            r#"{{"uuid": "{NODE}", "name": "n1", "provision_state": "active",
                "boot_interface": "pxe",
                "ports": [{{"address": "52:54:00:12:34:56", "extra": {{"fixed_ip": "10.99.0.111"}}}}]}}"#
        );
        let doc = StateDoc::from_slice(json.as_bytes()).expect("json");
        let id = crate::state::source::dir::source_id("n1.json");
        app.store.apply(vec![(id, Update::Replace(doc))]);
        app
    }

    fn answer(app: &App, name: &str) -> Answer {
        let server = app.default_server(IpAddr::from([192, 0, 2, 1]), 8080);
        app.answer(&classify(name).expect(name), &server, &app.roots)
    }

    fn config_of(name: &str, a: Answer) -> ServedConfig {
        match a {
            Answer::Config(c) => c,
            other => panic!("{name}: not a config: {other:?}"),
        }
    }

    /// GRUB's walk under a distro prefix: the MAC name and the full hex IP find the node,
    /// shorter hex IPs are not found (GRUB walks on), `grub.cfg` is the master.
    #[test]
    fn grub_walk_under_a_prefix_finds_the_node_by_mac_and_fixed_ip() {
        let dir = tempfile::tempdir().expect("dir");
        let app = app_with_node(dir.path());
        for name in [
            "EFI/centos/grub.cfg-01-52-54-00-12-34-56",
            "EFI/centos/grub.cfg-0A63006F",
            "/grub.cfg-0A63006F",
        ] {
            let c = config_of(name, answer(&app, name));
            assert_eq!(c.format, Format::Grub, "{name}");
            assert_eq!(
                c.node.map(|u| u.to_string()).as_deref(),
                Some(NODE),
                "{name}"
            );
            assert!(c.body.contains("node n1"), "{name}: {}", c.body);
        }
        for name in [
            "EFI/centos/grub.cfg-0A63006",
            "EFI/centos/grub.cfg-0",
            "EFI/centos/grub.cfg-0A63006E",
            "EFI/centos/grub.cfg-01-52-54-00-00-00-01",
        ] {
            assert!(matches!(answer(&app, name), Answer::NotFound(_)), "{name}");
        }
        let master = config_of("master", answer(&app, "EFI/centos/grub.cfg"));
        assert_eq!(&*master.body, GRUB_MASTER);
        assert!(master.body.contains("configfile /$net_default_mac.conf"));
        let conf = config_of("mac.conf", answer(&app, "52:54:00:12:34:56.conf"));
        assert!(conf.body.contains("node n1"), "{}", conf.body);
    }

    /// Previews say what `serve` would: iPXE formats at the HTTP listen address, PXELINUX and
    /// GRUB at the TFTP one (the HTTP port either way), the public URL over both.
    #[test]
    fn previews_use_the_address_each_format_is_fetched_from() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let tftp = [sa("0.0.0.0:69"), sa("192.0.2.5:69")];
        let at = |public, http: &str, f| preview_server(public, sa(http), &tftp, f);
        let ipxe = at(None, "192.0.2.1:8080", Format::Ipxe);
        assert_eq!(
            (ipxe.http_url.as_str(), ipxe.tftp_server.as_str()),
            ("http://192.0.2.1:8080", "192.0.2.1")
        );
        let pxe = at(None, "192.0.2.1:8080", Format::Pxelinux);
        assert_eq!(
            (pxe.http_url.as_str(), pxe.tftp_server.as_str()),
            ("http://192.0.2.5:8080", "192.0.2.5")
        );
        assert_eq!(at(None, "192.0.2.1:8080", Format::Grub), pxe);
        let wild = at(None, "0.0.0.0:8080", Format::IpxeEntry);
        assert_eq!(wild.http_url, "http://192.0.2.5:8080", "never the wildcard");
        for f in Format::ALL {
            let p = at(Some("http://pxe.example/"), "192.0.2.1:8080", f);
            assert_eq!(p.http_url, "http://pxe.example", "{f}");
        }
        // The same function answers TFTP clients: a served config and its preview agree.
        let app = App {
            public_url: Some("http://pxe.example".into()),
            ..App::for_tests(Vec::new())
        };
        assert_eq!(
            app.default_server(IpAddr::from([192, 0, 2, 5]), 8080),
            at(
                Some("http://pxe.example"),
                "192.0.2.1:8080",
                Format::Pxelinux
            )
        );
    }

    /// `<ip>.conf` (Ironic's GRUB link by the port's IP) finds the node by the same fixed IP
    /// as the hex-IP names, and is its GRUB config; another address is the unknown machine.
    #[test]
    fn grub_ip_conf_finds_the_node_by_its_fixed_ip() {
        let dir = tempfile::tempdir().expect("dir");
        let app = app_with_node(dir.path());
        let by_ip = config_of("ip.conf", answer(&app, "10.99.0.111.conf"));
        let by_mac = config_of("mac.conf", answer(&app, "52:54:00:12:34:56.conf"));
        assert_eq!(by_ip.format, Format::Grub);
        assert_eq!(by_ip.node.map(|u| u.to_string()).as_deref(), Some(NODE));
        assert_eq!(by_ip.port, by_mac.port);
        assert_eq!(by_ip.body, by_mac.body);
        let other = config_of("other", answer(&app, "10.99.0.112.conf"));
        assert_eq!(other.node, None);
        assert!(other.body.contains("unknown machine"), "{}", other.body);
        assert!(matches!(
            answer(&app, "grub/10.99.0.111.conf"),
            Answer::NotFound(_)
        ));
    }

    /// Outside Ironic's layout a real file of a GRUB name is served, not shadowed; in it
    /// (the root, `grub/`) ironpxe's answer replaces what Ironic would have written.
    #[test]
    fn a_static_file_under_a_prefix_wins_over_grubs_virtual_names() {
        let dir = tempfile::tempdir().expect("dir");
        let app = app_with_node(dir.path());
        let files = [
            "EFI/centos/grub.cfg",
            "EFI/centos/grub.cfg-01-52-54-00-12-34-56",
            "EFI/centos/grub.cfg-0A",
            "grub/grub.cfg",
            "grub.cfg-01-52-54-00-12-34-56",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "static\n").expect("write");
        }
        for f in &files[..3] {
            match answer(&app, f) {
                Answer::File { path, len } => {
                    assert_eq!(len, 7, "{f}");
                    assert!(path.ends_with(f), "{f}: {}", path.display());
                }
                other => panic!("{f}: {other:?}"),
            }
        }
        for f in &files[3..] {
            let c = config_of(f, answer(&app, f));
            assert_ne!(&*c.body, "static\n", "{f} is ironpxe's");
        }
        // A symlink out of the root under a prefix is refused, not served and not shadowed.
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("EFI/centos/grub.cfg-0A6"))
            .expect("symlink");
        assert!(matches!(
            answer(&app, "EFI/centos/grub.cfg-0A6"),
            Answer::Refused(_)
        ));
    }
}
