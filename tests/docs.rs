//! The documentation's examples are real: every `$ ironpxe …` line in a ```console block of
//! the README and docs/ is run from the repository root, and its output must match the lines
//! shown after it exactly (a line `...` stands for any lines).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One example: the command line and the output shown for it.
struct Example {
    file: String,
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn examples(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<Example> = Vec::new();
    let mut in_console = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                file: path.display().to_string(),
                line: i + 1,
                command: cmd.to_owned(),
                expected: Vec::new(),
            });
        } else if let Some(ex) = out.last_mut() {
            ex.expected.push(raw.to_owned());
        }
    }
    out
}

/// Matches output lines against expected ones, where `...` matches any run of lines.
fn matches(actual: &[&str], expected: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=actual.len()).any(|k| matches(&actual[k..], rest))
        }
        Some((e, rest)) => {
            actual.first().is_some_and(|a| a.trim_end() == e.trim_end())
                && matches(&actual[1..], rest)
        }
    }
}

fn run(ex: &Example) -> Result<(), String> {
    let args: Vec<&str> = ex.command.split_whitespace().collect();
    if args.first() != Some(&"ironpxe") {
        return Err(format!(
            "{}:{}: only `ironpxe` commands may appear in console blocks",
            ex.file, ex.line
        ));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(&args[1..])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    if matches(&lines, &ex.expected) {
        Ok(())
    } else {
        Err(format!(
            "{}:{}: `{}` printed:\n{}\n--- but the document shows:\n{}",
            ex.file,
            ex.line,
            ex.command,
            stdout,
            ex.expected.join("\n")
        ))
    }
}

#[test]
fn every_documented_command_prints_what_the_document_shows() {
    let mut docs = vec![root().join("README.md")];
    if let Ok(entries) = std::fs::read_dir(root().join("docs")) {
        docs.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md")),
        );
    }
    let all: Vec<Example> = docs.iter().flat_map(|d| examples(d)).collect();
    assert!(
        all.len() >= 5,
        "expected the docs to show commands, found {}",
        all.len()
    );
    let failures: Vec<String> = all.iter().filter_map(|ex| run(ex).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} examples differ:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

/// Every guide in docs/ shows at least one command the test above runs, and the README links
/// it: a guide with nothing runnable, or one nobody can find, goes stale unnoticed.
#[test]
fn every_guide_runs_an_example_and_is_linked_from_the_readme() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut guides = 0;
    for entry in std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "md") {
            continue;
        }
        guides += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            !examples(&path).is_empty(),
            "docs/{name} shows no `$ ironpxe …` example in a console block"
        );
        assert!(
            readme.contains(&format!("(docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
    assert!(
        guides >= 4,
        "infiniband, http-boot, ipv6, grub: found {guides}"
    );
}

#[test]
fn the_matcher_itself() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&["a", "b", "c"], &e(&["a", "...", "c"])));
    assert!(matches(&["a", "c"], &e(&["a", "...", "c"])));
    assert!(!matches(&["a", "b"], &e(&["a", "c"])));
    assert!(!matches(&["a"], &e(&["a", "b"])));
}

/// Every test SECURITY.md cites as proof exists (a renamed or deleted test would leave a
/// claim unproven).
#[test]
fn security_claims_point_to_existing_tests() {
    let text = std::fs::read_to_string(root().join("SECURITY.md")).expect("SECURITY.md");
    let mut sources = String::new();
    for dir in ["src", "tests", "vendor/async-tftp/src"] {
        for entry in walk(&root().join(dir)) {
            if entry.extension().is_some_and(|x| x == "rs") {
                sources.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
            }
        }
    }
    let mut cited = 0;
    let mut missing = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let name = quoted.rsplit("::").next().unwrap_or(quoted);
        let looks_like_test = name.split('_').count() >= 4
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        // Config keys (`max_sessions_per_client`) look alike: they are struct fields.
        if !looks_like_test || sources.contains(&format!("pub {name}:")) {
            continue;
        }
        cited += 1;
        if !sources.contains(&format!("fn {name}(")) {
            missing.push(name.to_owned());
        }
    }
    assert!(cited >= 20, "SECURITY.md cites only {cited} tests");
    // A cited path (`src/x.rs::tests::name`) must exist and hold the test it names: a moved
    // file would otherwise leave the reader looking in the wrong place.
    let mut stale = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        if !["src/", "tests/", "vendor/"]
            .iter()
            .any(|p| quoted.starts_with(p))
        {
            continue;
        }
        let mut parts = quoted.split("::");
        let file = root().join(parts.next().unwrap_or_default());
        if file.is_dir() {
            continue;
        }
        let Ok(body) = std::fs::read_to_string(&file) else {
            stale.push(format!("{quoted}: no such file"));
            continue;
        };
        let name = parts.last().unwrap_or("*");
        if name != "*" && !body.contains(&format!("fn {name}(")) {
            stale.push(format!("{quoted}: no fn {name} in that file"));
        }
    }
    assert!(
        stale.is_empty(),
        "SECURITY.md cites stale paths: {stale:#?}"
    );
    assert!(
        missing.is_empty(),
        "SECURITY.md cites tests that do not exist: {missing:?}"
    );
    for target in [
        "addr",
        "pxelinux_name",
        "http_path",
        "host_header",
        "tftp_request",
        "state_json",
        "render_hostile",
    ] {
        let f = root().join(format!("tests/fuzz/fuzz_targets/{target}.rs"));
        assert!(
            f.exists(),
            "SECURITY.md cites fuzz target {target}, missing: {}",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("target") && !p.ends_with("corpus") {
                out.extend(walk(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}

/// README "Layout" names every module directory and file two levels under `src/`, and
/// nothing that does not exist.
#[test]
fn the_readme_layout_matches_the_tree() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Layout section");
    let listed: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.starts_with("src/") || p.ends_with('/'))
        .collect();
    for p in &listed {
        assert!(
            root().join(p).exists(),
            "README Layout lists {p}, which does not exist"
        );
    }
    let src = root().join("src");
    let mut missing = Vec::new();
    for top in std::fs::read_dir(&src).expect("src/").flatten() {
        let name = format!("src/{}", top.file_name().to_string_lossy());
        let is_dir = top.path().is_dir();
        let shown = if is_dir {
            format!("{name}/")
        } else {
            name.clone()
        };
        if shown != "src/lib.rs" && !listed.contains(&shown.as_str()) {
            missing.push(shown.clone());
        }
        if !is_dir {
            continue;
        }
        for inner in std::fs::read_dir(top.path()).expect("dir").flatten() {
            let file = inner.file_name().to_string_lossy().into_owned();
            if matches!(file.as_str(), "mod.rs" | "tests.rs" | "templates") {
                continue;
            }
            let stem = file.trim_end_matches(".rs");
            let full = format!("{shown}{file}");
            let dir_form = format!("{shown}{file}/");
            // Listed by path, or named in its directory's line.
            let named = listed.contains(&full.as_str())
                || listed.contains(&dir_form.as_str())
                || section.lines().any(|l| {
                    (l.trim_start().starts_with(&shown)
                        || l.starts_with("                         "))
                        && l.contains(stem)
                });
            if !named {
                missing.push(full);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README Layout does not mention: {missing:?}"
    );
}
