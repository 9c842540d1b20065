//! What the fuzz targets share: a served root with traps in it, the example state loaded into
//! a real `App`, the checks every classified request must pass, and iPXE's own reading of a
//! script ([`ipxe`]).

pub mod ipxe;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ironpxe::model::boot::BootConfig;
use ironpxe::model::node::StateDoc;
use ironpxe::model::resource::Resource;
use ironpxe::render::{Renderer, Server};
use ironpxe::serving::app::App;
use ironpxe::serving::metrics::Metrics;
use ironpxe::serving::roots::Roots;
use ironpxe::state::{IndexConfig, Store, Update};

/// The repository root (this crate lives in `tests/fuzz`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A served root set up once per process, with a secret file beside it.
pub struct Fixture {
    /// The canonical served root: every answered file must be under it.
    pub root: PathBuf,
    /// The canonical path of the file outside the root that symlinks point at.
    pub secret: PathBuf,
    pub roots: Roots,
    _dir: tempfile::TempDir,
}

/// The served root:
///
/// ```text
/// <tmp>/secret                     outside the root
/// <tmp>/root/pxelinux.0            regular files
/// <tmp>/root/ldlinux.c32
/// <tmp>/root/boot/grub/x.efi       a subdirectory
/// <tmp>/root/pxelinux.cfg/whatever a real file among virtual names
/// <tmp>/root/images/short/x
/// <tmp>/root/leak     -> ../secret symlinks out of the root
/// <tmp>/root/out      -> ..        (a directory outside)
/// <tmp>/root/etc      -> /etc
/// <tmp>/root/inner    -> boot      a symlink that stays inside
/// <tmp>/root/loop     -> loop      a symlink loop
/// ```
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ironpxe-fuzz-")
            .tempdir()
            .expect("fuzz fixture: tempdir");
        let top = dir
            .path()
            .canonicalize()
            .expect("fuzz fixture: canonical tmp");
        let root = top.join("root");
        let secret = top.join("secret");
        for d in ["boot/grub", "pxelinux.cfg", "images/short"] {
            fs::create_dir_all(root.join(d)).expect("fuzz fixture: mkdir");
        }
        fs::write(&secret, "secret\n").expect("fuzz fixture: write");
        for f in [
            "pxelinux.0",
            "ldlinux.c32",
            "boot/grub/x.efi",
            "pxelinux.cfg/whatever",
            "images/short/x",
        ] {
            fs::write(root.join(f), f).expect("fuzz fixture: write");
        }
        let link = |to: &str, at: &str| {
            std::os::unix::fs::symlink(to, root.join(at)).expect("fuzz fixture: symlink")
        };
        link("../secret", "leak");
        link("..", "out");
        link("/etc", "etc");
        link("boot", "inner");
        link("loop", "loop");
        let roots = Roots::new([&root]);
        assert_eq!(
            roots.dirs(),
            std::slice::from_ref(&root),
            "fuzz fixture: root kept"
        );
        Fixture {
            root,
            secret,
            roots,
            _dir: dir,
        }
    })
}

/// The boot settings the example App renders with.
pub fn boot_config() -> BootConfig {
    BootConfig {
        ipa_api_url: Some("http://127.0.0.1:6385".into()),
        extra_append_params: "ipa-debug=1".into(),
        infiniband_append_params: "rd.driver.pre=ib_ipoib".into(),
        ..BootConfig::default()
    }
}

/// The shipped templates, loaded.
pub fn renderer() -> Renderer {
    Renderer::new(repo().join("templates"), boot_config())
        .unwrap_or_else(|e| panic!("fuzz setup: shipped templates do not load: {e:?}"))
}

/// A store holding every `examples/state/*.json` file.
pub fn example_store() -> Store {
    let store = Store::new(IndexConfig::default());
    let dir = repo().join("examples/state");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz setup: {}: {e}", dir.display()))
        .map(|e| e.expect("fuzz setup: dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let updates = files
        .iter()
        .map(|p| {
            let bytes = fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let doc = StateDoc::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("fuzz setup: {}: {e}", p.display()));
            (
                ironpxe::state::source::dir::source_id(p.clone()),
                Update::Replace(doc),
            )
        })
        .collect();
    let snap = store.apply(updates);
    assert!(
        !snap.nodes().is_empty() && snap.errors.is_empty(),
        "fuzz setup: example state loads"
    );
    store
}

/// An App like `ironpxe serve` builds, over the example state and the fixture root, with no
/// image cache.
pub fn example_app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let roots = fixture().roots.clone();
        App {
            store: Arc::new(example_store()),
            renderer: Arc::new(renderer()),
            roots: roots.clone(),
            http_roots: roots,
            images: None,
            metrics: Arc::new(Metrics::default()),
            public_url: None,
            ironic: None,
            journal: None,
            problems: Default::default(),
            grub_prefixes: Default::default(),
        }
    })
}

/// What the TFTP handler of a server on 127.0.0.1 (HTTP on 8080) renders with.
pub fn tftp_server() -> Server {
    example_app().default_server(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)
}

/// Checks a relative path from `classify`: one normalised relative path, nothing that could
/// climb out of a root or confuse a file system call.
pub fn check_relative(what: &str, p: &str, input: &str) {
    let bad = |why: &str| -> ! {
        panic!("INVARIANT BROKEN: {what} {p:?} (from {input:?}) {why}");
    };
    if p.is_empty() {
        bad("is empty");
    }
    if p.starts_with('/') {
        bad("starts with `/`");
    }
    if p.contains('\\') {
        bad("contains a backslash");
    }
    if p.bytes().any(|b| b < 0x20 || b == 0x7f) {
        bad("contains NUL or a control byte");
    }
    for part in p.split('/') {
        match part {
            ".." => bad("has a `..` component"),
            "." | "" => bad("has an empty or `.` component (not normalised)"),
            _ => {}
        }
    }
    if Path::new(p)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        bad("has a component that is not a plain name");
    }
}

/// Checks every path a classified resource carries (static paths, image keys and names).
pub fn check_resource_paths(res: &Resource, input: &str) {
    match res {
        Resource::Static(p) => check_relative("static path", p, input),
        Resource::Grub(g) => check_relative("grub path", &g.path, input),
        Resource::Image { key, name } => {
            check_relative("image key", key, input);
            check_relative("image name", name, input);
            if name.contains('/') {
                panic!("INVARIANT BROKEN: image name {name:?} (from {input:?}) has a `/`");
            }
            if key.len() != 16 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                panic!("INVARIANT BROKEN: image key {key:?} (from {input:?}) is not 16 lower-case hex digits");
            }
        }
        _ => {}
    }
}

/// Checks that a file about to be served lies inside the fixture root and is not the secret.
pub fn check_inside_root(path: &Path, input: &str) {
    let f = fixture();
    if !path.starts_with(&f.root) {
        panic!(
            "INVARIANT BROKEN: {input:?} resolves to {} outside the served root {}",
            path.display(),
            f.root.display()
        );
    }
    let canonical = path
        .canonicalize()
        .unwrap_or_else(|e| panic!("{input:?}: answered path {} vanished: {e}", path.display()));
    if !canonical.starts_with(&f.root) || canonical == f.secret {
        panic!(
            "INVARIANT BROKEN: {input:?} answers {} whose target {} is outside the served root",
            path.display(),
            canonical.display()
        );
    }
    if !canonical.is_file() {
        panic!(
            "INVARIANT BROKEN: {input:?} answers {}, not a regular file",
            path.display()
        );
    }
}
