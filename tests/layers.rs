//! The layers of `src/`, checked: every `crate::` path in a module must point at a layer that
//! module may use. A new edge the wrong way (the model reaching into the store, the renderer
//! into the servers, TFTP into HTTP, anything but the CLI and the start-up code reading the
//! configuration file's types) fails here with the file and line that made it.
//!
//! Layers, bottom up:
//!   support  — watcher, log formatter; knows nothing of nodes
//!   model    — addresses, names, nodes/ports, the boot decision; pure
//!   state    — the store, its snapshot and its sources (directory, Ironic API), node problems
//!   render   — templates into boot configs
//!   serving  — the servers and what serves them; dhcp, inspect — the other outputs
//!   config   — parses the settings file into each layer's own settings
//!   cli      — the binary's commands

use std::path::{Path, PathBuf};

/// What every server module may use: the layers below and the shared serving pieces (never
/// another protocol's server, never the start-up code).
const SERVING_SHARED: &[&str] = &[
    "support",
    "model",
    "state",
    "render",
    "serving::app",
    "serving::images",
    "serving::journal",
    "serving::limits",
    "serving::metrics",
    "serving::request",
    "serving::roots",
    "serving::web",
];

/// Which top-level modules (or exact module paths) a module may name: the first matching
/// prefix of the importing module decides; `extra` adds to `base`.
struct Rule {
    module: &'static str,
    base: &'static [&'static str],
    extra: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        module: "support",
        base: &["support"],
        extra: &[],
    },
    Rule {
        module: "model",
        base: &["model"],
        extra: &[],
    },
    Rule {
        module: "state",
        base: &["support", "model", "state"],
        extra: &[],
    },
    Rule {
        module: "render",
        base: &["support", "model", "state", "render"],
        extra: &[],
    },
    // The composition root: starts every server from the parsed settings.
    Rule {
        module: "serving::run",
        base: SERVING_SHARED,
        extra: &["serving", "dhcp", "config"],
    },
    // TFTP and HTTP never name each other (nor admin, nor the web helper for TFTP).
    Rule {
        module: "serving::tftp",
        base: &[],
        extra: &[
            "support",
            "model",
            "state",
            "render",
            "serving::app",
            "serving::images",
            "serving::journal",
            "serving::limits",
            "serving::metrics",
            "serving::request",
            "serving::roots",
            "serving::tftp",
        ],
    },
    Rule {
        module: "serving::http",
        base: SERVING_SHARED,
        extra: &["serving::http"],
    },
    Rule {
        module: "serving",
        base: SERVING_SHARED,
        extra: &["serving::admin"],
    },
    Rule {
        module: "dhcp",
        base: &["support", "model", "state", "dhcp"],
        extra: &[],
    },
    Rule {
        module: "inspect",
        base: &["support", "model", "inspect"],
        extra: &[],
    },
    Rule {
        module: "config",
        base: &[
            "support", "model", "state", "render", "serving", "dhcp", "inspect", "config",
        ],
        extra: &[],
    },
    Rule {
        module: "cli",
        base: &[
            "support", "model", "state", "render", "serving", "dhcp", "inspect", "config", "cli",
        ],
        extra: &[],
    },
];

/// One `crate::` reference that breaks a rule.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// `src/serving/tftp.rs` → `serving::tftp`; `src/state/mod.rs` → `state`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_owned();
    }
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn allowed_for(module: &str) -> Vec<&'static str> {
    RULES
        .iter()
        .find(|r| module == r.module || module.starts_with(&format!("{}::", r.module)))
        .map(|r| r.base.iter().chain(r.extra).copied().collect())
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/layers.rs RULES"))
}

fn permits(allowed: &[&str], target: &str) -> bool {
    allowed
        .iter()
        .any(|a| target == *a || target.starts_with(&format!("{a}::")))
}

/// Every `crate::a::b…` path in code (comments dropped), as the module path it names.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let path: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let modules: Vec<&str> = path
            .split("::")
            .filter(|s| !s.is_empty())
            .take_while(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
            .collect();
        out.push(modules.join("::"));
        rest = tail;
    }
    out
}

fn check_source(file: &str, module: &str, text: &str) -> Vec<Violation> {
    let allowed = allowed_for(module);
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.contains("super::super") {
            bad.push(Violation {
                file: file.into(),
                line: n + 1,
                from: module.into(),
                to: "super::super (name the module with crate::)".into(),
            });
        }
        for target in crate_paths(line) {
            if !target.is_empty() && !permits(&allowed, &target) {
                bad.push(Violation {
                    file: file.into(),
                    line: n + 1,
                    from: module.into(),
                    to: target,
                });
            }
        }
    }
    bad
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_path_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let module = module_of(rel);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read source");
        bad.extend(check_source(&rel.display().to_string(), &module, &text));
        checked += 1;
    }
    assert!(checked > 40, "only {checked} modules found under src/");
    let report: Vec<String> = bad
        .iter()
        .map(|v| format!("src/{}:{}: {} uses crate::{}", v.file, v.line, v.from, v.to))
        .collect();
    assert!(report.is_empty(), "wrong-way edges:\n{}", report.join("\n"));
}

#[test]
fn the_checker_catches_each_kind_of_wrong_edge() {
    let cases = [
        ("model::addr", "use crate::state::Snapshot;", "state"),
        (
            "state",
            "use crate::serving::metrics::Metrics;",
            "serving::metrics",
        ),
        (
            "render",
            "let x = crate::serving::app::App::new();",
            "serving::app",
        ),
        (
            "serving::tftp",
            "use crate::serving::http::files;",
            "serving::http::files",
        ),
        (
            "serving::http",
            "use crate::serving::tftp::start;",
            "serving::tftp::start",
        ),
        ("dhcp", "use crate::config::Config;", "config"),
        ("serving::images", "use crate::config::Config;", "config"),
    ];
    for (module, line, to) in cases {
        let found = check_source("x.rs", module, line);
        assert_eq!(found.len(), 1, "{module}: {line}");
        assert_eq!(found[0].to, to);
    }
    // Allowed edges and comments pass.
    assert!(check_source("x.rs", "serving::run", "use crate::config::Config;").is_empty());
    assert!(check_source("x.rs", "model", "// see crate::serving::roots").is_empty());
    assert!(check_source("x.rs", "cli::serve", "use crate::serving::run;").is_empty());
    assert_eq!(module_of(Path::new("state/mod.rs")), "state");
    assert_eq!(
        module_of(Path::new("serving/http/files.rs")),
        "serving::http::files"
    );
}
