//! Loading templates safely: every template read, parsed, checked for include and macro-call
//! cycles and trial-rendered (with bounded loops and output, in a render worker stopped at
//! its budget) before the set replaces the running one. Operators edit these files live; a
//! mistake must cost a log line, not the server.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use tera::{Tera, Value};

use super::{error_chain, render_template, Context, Format, Server};
use crate::model::boot::{self, Action, Decision, ImageSource};
use crate::model::node::NodeUuid;
use crate::state::{IndexedNode, IndexedPort};

/// Most items `range` may produce.
const RANGE_MAX: usize = 10_000;
/// Largest output one render may produce (boot configs are a few KB).
pub(super) const OUTPUT_MAX: usize = 1 << 20;
/// Deepest chain of includes/imports/extends.
pub(super) const INCLUDE_DEPTH_MAX: usize = 8;

/// A writer that fails once more than `OUTPUT_MAX` bytes were written, which stops Tera.
#[derive(Default)]
pub(super) struct Bounded(pub(super) Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > OUTPUT_MAX {
            return Err(std::io::Error::other(format!(
                "output larger than {OUTPUT_MAX} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tera's `range`, refusing to build more than `RANGE_MAX` items.
fn bounded_range(args: &HashMap<String, Value>) -> tera::Result<Value> {
    let num = |k: &str, default: Option<u64>| -> tera::Result<u64> {
        match args.get(k) {
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!("`range`: `{k}` must be a non-negative number"))
            }),
            None => default.ok_or_else(|| tera::Error::msg(format!("`range` needs `{k}`"))),
        }
    };
    let (start, end, step) = (
        num("start", Some(0))?,
        num("end", None)?,
        num("step_by", Some(1))?,
    );
    if step == 0 || start > end {
        return Err(tera::Error::msg(
            "`range`: needs start <= end and step_by > 0",
        ));
    }
    let count = (end - start).div_ceil(step);
    if count > RANGE_MAX as u64 {
        return Err(tera::Error::msg(format!(
            "`range` of {count} items: at most {RANGE_MAX}"
        )));
    }
    Ok(Value::Array(
        (start..end)
            .step_by(step as usize)
            .map(Value::from)
            .collect(),
    ))
}

fn no_get_env(_: &HashMap<String, Value>) -> tera::Result<Value> {
    Err(tera::Error::msg(
        "`get_env` is disabled: boot scripts must not carry the server's environment",
    ))
}

/// The template names a template pulls in (`include`, `import`, `extends`).
fn references(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("%}") else { break };
        let tag = after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let keyword = tag.split_whitespace().next().unwrap_or("");
        if matches!(keyword, "include" | "import" | "extends") {
            out.extend(tag.split('"').skip(1).step_by(2).map(str::to_owned));
        }
        rest = &after[close + 2..];
    }
    out
}

/// Refuses include cycles and chains deeper than `INCLUDE_DEPTH_MAX`, naming the chain
/// (Tera would recurse until the stack overflows).
fn check_includes(sources: &[(String, String)]) -> Result<(), Vec<String>> {
    let graph: BTreeMap<&str, Vec<String>> = sources
        .iter()
        .map(|(n, s)| (n.as_str(), references(s)))
        .collect();
    fn walk(graph: &BTreeMap<&str, Vec<String>>, chain: &mut Vec<String>) -> Result<(), String> {
        let here = chain.last().cloned().unwrap_or_default();
        for next in graph.get(here.as_str()).into_iter().flatten() {
            if chain.contains(next) {
                return Err(format!("include cycle: {} -> {next}", chain.join(" -> ")));
            }
            if chain.len() >= INCLUDE_DEPTH_MAX {
                return Err(format!(
                    "includes nested deeper than {INCLUDE_DEPTH_MAX}: {}",
                    chain.join(" -> ")
                ));
            }
            chain.push(next.clone());
            walk(graph, chain)?;
            chain.pop();
        }
        Ok(())
    }
    let errors: Vec<String> = graph
        .keys()
        .filter_map(|name| walk(&graph, &mut vec![(*name).to_owned()]).err())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Reads the four templates and any partials beside them; any unreadable file rejects the set.
pub(super) fn read_sources(dir: &Path) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut errors = Vec::new();
    let mut sources: Vec<(String, String)> = Vec::new();
    for f in Format::ALL {
        let path = dir.join(f.template());
        match fs::read_to_string(&path) {
            Ok(text) => sources.push((f.template().to_owned(), text)),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    // Operators may add partials (`{% include "x.tera" %}`) beside the four templates.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let known = Format::ALL.iter().any(|f| f.template() == name);
            if !known && name.ends_with(".tera") && !name.starts_with('.') {
                match fs::read_to_string(e.path()) {
                    Ok(text) => sources.push((name, text)),
                    Err(err) => errors.push(format!("{}: {err}", e.path().display())),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

/// Parses a set and checks that every render of it is finite in depth: no include or
/// macro-call cycle, no chain deeper than `INCLUDE_DEPTH_MAX`.
pub(super) fn build(sources: Vec<(String, String)>) -> Result<Tera, Vec<String>> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    // A template loop over `range` must not allocate without bound, and boot scripts have no
    // business reading the server's environment.
    tera.register_function("range", bounded_range);
    tera.register_function("get_env", no_get_env);
    check_includes(&sources)?;
    let texts: HashMap<String, String> = sources.iter().cloned().collect();
    if let Err(e) = tera.add_raw_templates(sources) {
        return Err(vec![format!("templates: {}", error_chain(&e))]);
    }
    super::calls::check(&tera, &texts)?;
    Ok(tera)
}

/// Renders each template with every kind of context, so a template that parses but names a
/// missing variable is refused at load time instead of at a client's boot.
pub(super) fn trial_render(tera: &Tera, ramdisk_params: &str) -> Result<(), Vec<String>> {
    let server = Server {
        http_url: "http://192.0.2.1:8080".into(),
        tftp_server: "192.0.2.1".into(),
    };
    let img = |s: &str| Some(ImageSource::Url(format!("http://192.0.2.1/{s}")));
    let decisions = [
        (Action::Ramdisk(boot::Purpose::Deploy), img("k"), img("r")),
        (Action::Instance, img("k"), img("r")),
        (Action::InstanceIso, img("iso"), None),
        (Action::LocalBoot, None, None),
    ];
    let sample = trial_node();
    let mut errors = Vec::new();
    for format in Format::ALL {
        for (action, kernel, ramdisk) in &decisions {
            let d = Decision {
                action: *action,
                kernel: kernel.clone(),
                ramdisk: ramdisk.clone(),
                params: ramdisk_params
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                reason: "trial render".into(),
            };
            for with_node in [false, true] {
                let node = with_node.then_some(&sample.0);
                let port = with_node.then_some(&sample.1);
                let ctx = Context::build(&d, node, port, None, format, &server);
                let res = ctx.and_then(|c| render_template(tera, format, &c));
                if let Err(e) = res {
                    errors.push(format!("{e} (trial render, action {action})"));
                }
            }
        }
    }
    errors.dedup();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn trial_node() -> (IndexedNode, IndexedPort) {
    use crate::model::node::{Node, Port};
    let uuid = NodeUuid([0x11; 16]);
    let node: Node = serde_json::from_value(serde_json::json!({
        "uuid": uuid.to_string(), "name": "trial", "provision_state": "deploying"
    }))
    .unwrap_or_else(|e| unreachable!("static trial node: {e}"));
    let port: Port = serde_json::from_value(serde_json::json!({"address": "52:54:00:00:00:01"}))
        .unwrap_or_else(|e| unreachable!("static trial port: {e}"));
    (
        IndexedNode {
            node: Arc::new(node),
            revision: 0,
            source: Arc::new(crate::state::source::ironic::source_id()),
            ports: vec![0],
            system_uuid: None,
        },
        IndexedPort {
            port: Arc::new(port),
            node: 0,
            client_id: None,
            fixed_ip: None,
            boot_names: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn include_cycles_and_depth_are_refused() {
        let loop1 = src(&[("a.tera", "{% include \"a.tera\" %}")]);
        assert!(check_includes(&loop1).unwrap_err()[0].contains("a.tera -> a.tera"));
        let loop2 = src(&[
            ("a.tera", "x{%- include \"b.tera\" -%}"),
            ("b.tera", "{% include \"a.tera\" %}"),
        ]);
        assert!(check_includes(&loop2).unwrap_err()[0].contains("include cycle"));
        let chain: Vec<(String, String)> = (0..12)
            .map(|i| {
                (
                    format!("t{i}.tera"),
                    format!("{{% include \"t{}.tera\" %}}", i + 1),
                )
            })
            .collect();
        assert!(check_includes(&chain).unwrap_err()[0].contains("deeper"));
        let fine = src(&[
            ("a.tera", "{% include \"b.tera\" %}{% include \"b.tera\" %}"),
            ("b.tera", "b"),
        ]);
        assert!(check_includes(&fine).is_ok());
    }

    #[test]
    fn range_is_bounded() {
        let args = |end: u64| HashMap::from([("end".to_owned(), Value::from(end))]);
        assert_eq!(
            bounded_range(&args(3)).expect("small"),
            Value::from(vec![0, 1, 2])
        );
        assert!(bounded_range(&args(100_000_000_000)).is_err());
        let stepped = HashMap::from([
            ("end".to_owned(), Value::from(10)),
            ("step_by".to_owned(), Value::from(4)),
        ]);
        assert_eq!(
            bounded_range(&stepped).expect("stepped"),
            Value::from(vec![0, 4, 8])
        );
    }

    #[test]
    fn output_is_bounded() {
        use std::io::Write;
        let mut b = Bounded::default();
        assert!(b.write_all(&vec![b'x'; OUTPUT_MAX]).is_ok());
        assert!(b.write_all(b"y").is_err());
    }
}
