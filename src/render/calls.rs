//! The call graph of a template set — includes, `extends` and macro calls — checked before
//! any render: a cycle (a macro that calls itself, directly or through others) would make
//! Tera recurse until the stack overflows, which aborts the process instead of failing the
//! render, so it must be refused statically, naming the chain. Without cycles every render
//! is finite in depth; chains are also capped so a long one cannot exhaust the stack.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use tera::ast::{Expr, ExprVal, Node};
use tera::Tera;

use super::load::INCLUDE_DEPTH_MAX;

/// Something that runs when rendered: a template's body or one macro.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Template(String),
    Macro { file: String, name: String },
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Template(t) => write!(f, "{t}"),
            Unit::Macro { file, name } => write!(f, "{file}: macro {name}"),
        }
    }
}

/// Refuses call cycles and chains deeper than twice `INCLUDE_DEPTH_MAX`; `texts` (the
/// sources by template name) only serve to name lines. Depth-first with memoised depths, so
/// the cost is linear in the graph, whatever its shape.
pub(super) fn check(tera: &Tera, texts: &HashMap<String, String>) -> Result<(), Vec<String>> {
    let graph = graph(tera);
    let mut depths = BTreeMap::new();
    for start in graph.keys() {
        depth(&graph, start, &mut Vec::new(), &mut depths).map_err(|chain| {
            let named: Vec<String> = chain.iter().map(|u| with_line(u, texts)).collect();
            vec![match chain.first() == chain.last() {
                true => format!(
                    "call cycle (a render would recurse without end): {}",
                    named.join(" -> ")
                ),
                false => format!(
                    "calls nested deeper than {CALL_DEPTH_MAX}: {}",
                    named.join(" -> ")
                ),
            }]
        })?;
    }
    Ok(())
}

/// Longest chain of calls one render may take.
const CALL_DEPTH_MAX: usize = INCLUDE_DEPTH_MAX * 2;

type Graph = BTreeMap<Unit, BTreeSet<Unit>>;

/// The longest call chain below `u`; on failure, the offending chain (for a cycle, it starts
/// and ends with the same unit).
fn depth(
    graph: &Graph,
    u: &Unit,
    stack: &mut Vec<Unit>,
    depths: &mut BTreeMap<Unit, usize>,
) -> Result<usize, Vec<Unit>> {
    if let Some(d) = depths.get(u) {
        return Ok(*d);
    }
    if let Some(at) = stack.iter().position(|s| s == u) {
        let mut cycle = stack[at..].to_vec();
        cycle.push(u.clone());
        return Err(cycle);
    }
    stack.push(u.clone());
    let mut deepest = 0;
    for next in graph.get(u).into_iter().flatten() {
        deepest = deepest.max(1 + depth(graph, next, stack, depths)?);
    }
    if deepest > CALL_DEPTH_MAX || stack.len() > CALL_DEPTH_MAX {
        return Err(stack.clone());
    }
    stack.pop();
    depths.insert(u.clone(), deepest);
    Ok(deepest)
}

/// `file: macro f (line N)`: where a macro is defined, for the operator's editor.
fn with_line(u: &Unit, texts: &HashMap<String, String>) -> String {
    let Unit::Macro { file, name } = u else {
        return u.to_string();
    };
    let line = texts.get(file).and_then(|t| {
        t.lines().position(|l| {
            let l = l.trim_start_matches(['{', '%', '-', ' ', '\t']);
            l.strip_prefix("macro")
                .map(str::trim_start)
                .is_some_and(|rest| {
                    rest.strip_prefix(name.as_str())
                        .is_some_and(|after| after.trim_start().starts_with('('))
                })
        })
    });
    match line {
        Some(i) => format!("{u} (line {})", i + 1),
        None => u.to_string(),
    }
}

/// Every unit and what it calls.
fn graph(tera: &Tera) -> Graph {
    // Namespace -> macro files, over all templates: a namespace is resolved in the calling
    // file first, else in any file (over-approximation: more edges can only refuse more).
    let mut any_ns: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for t in tera.templates.values() {
        for (file, ns) in &t.imported_macro_files {
            any_ns.entry(ns).or_default().insert(file);
        }
    }
    let mut g = Graph::new();
    for (name, t) in &tera.templates {
        let resolve = |ns: &str, m: &str| -> Vec<Unit> {
            let files: Vec<&str> = if ns == "self" {
                vec![name.as_str()]
            } else {
                let own: Vec<&str> = t
                    .imported_macro_files
                    .iter()
                    .filter(|(_, n)| n == ns)
                    .map(|(f, _)| f.as_str())
                    .collect();
                if own.is_empty() {
                    any_ns.get(ns).into_iter().flatten().copied().collect()
                } else {
                    own
                }
            };
            files
                .into_iter()
                .map(|f| Unit::Macro {
                    file: f.to_owned(),
                    name: m.to_owned(),
                })
                .collect()
        };
        let mut body = BTreeSet::new();
        nodes(&t.ast, &resolve, &mut body);
        g.insert(Unit::Template(name.clone()), body);
        for (m, def) in &t.macros {
            let mut calls = BTreeSet::new();
            nodes(&def.body, &resolve, &mut calls);
            let unit = Unit::Macro {
                file: name.clone(),
                name: m.clone(),
            };
            g.insert(unit, calls);
        }
    }
    g
}

type Resolve<'a> = dyn Fn(&str, &str) -> Vec<Unit> + 'a;

fn nodes(ns: &[Node], resolve: &Resolve<'_>, out: &mut BTreeSet<Unit>) {
    for n in ns {
        match n {
            Node::VariableBlock(_, e) => expr(e, resolve, out),
            Node::Set(_, s) => expr(&s.value, resolve, out),
            Node::Include(_, names, _) => out.extend(names.iter().cloned().map(Unit::Template)),
            Node::Extends(_, name) => {
                out.insert(Unit::Template(name.clone()));
            }
            Node::FilterSection(_, f, _) => {
                f.filter.args.values().for_each(|e| expr(e, resolve, out));
                nodes(&f.body, resolve, out);
            }
            Node::Block(_, b, _) => nodes(&b.body, resolve, out),
            Node::Forloop(_, f, _) => {
                expr(&f.container, resolve, out);
                nodes(&f.body, resolve, out);
                if let Some(e) = &f.empty_body {
                    nodes(e, resolve, out);
                }
            }
            Node::If(i, _) => {
                for (_, cond, body) in &i.conditions {
                    expr(cond, resolve, out);
                    nodes(body, resolve, out);
                }
                if let Some((_, body)) = &i.otherwise {
                    nodes(body, resolve, out);
                }
            }
            // Macro bodies are units of their own; the rest calls nothing.
            Node::MacroDefinition(..)
            | Node::Super
            | Node::Text(_)
            | Node::ImportMacro(..)
            | Node::Raw(..)
            | Node::Break(_)
            | Node::Continue(_)
            | Node::Comment(..) => {}
        }
    }
}

fn expr(e: &Expr, resolve: &Resolve<'_>, out: &mut BTreeSet<Unit>) {
    value(&e.val, resolve, out);
    for f in &e.filters {
        f.args.values().for_each(|a| expr(a, resolve, out));
    }
}

fn value(v: &ExprVal, resolve: &Resolve<'_>, out: &mut BTreeSet<Unit>) {
    match v {
        ExprVal::MacroCall(m) => {
            out.extend(resolve(&m.namespace, &m.name));
            m.args.values().for_each(|a| expr(a, resolve, out));
        }
        ExprVal::FunctionCall(f) => f.args.values().for_each(|a| expr(a, resolve, out)),
        ExprVal::Math(m) => {
            expr(&m.lhs, resolve, out);
            expr(&m.rhs, resolve, out);
        }
        ExprVal::Logic(l) => {
            expr(&l.lhs, resolve, out);
            expr(&l.rhs, resolve, out);
        }
        ExprVal::In(i) => {
            expr(&i.lhs, resolve, out);
            expr(&i.rhs, resolve, out);
        }
        ExprVal::Test(t) => t.args.iter().for_each(|a| expr(a, resolve, out)),
        ExprVal::Array(items) => items.iter().for_each(|a| expr(a, resolve, out)),
        ExprVal::StringConcat(c) => c.values.iter().for_each(|x| value(x, resolve, out)),
        ExprVal::String(_)
        | ExprVal::Int(_)
        | ExprVal::Float(_)
        | ExprVal::Bool(_)
        | ExprVal::Ident(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Result<(), Vec<String>> {
        let mut tera = Tera::default();
        tera.add_raw_templates(pairs.to_vec()).expect("parses");
        let texts = pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        check(&tera, &texts)
    }

    #[test]
    fn self_recursive_macro_is_refused_with_file_line_and_chain() {
        let errs = set(&[
            (
                "macros.tera",
                "{# helpers #}\n{% macro f(n) %}{{ self::f(n=n+1) }}{% endmacro f %}",
            ),
            (
                "pxelinux.tera",
                "{% import \"macros.tera\" as m %}{{ m::f(n=1) }}",
            ),
        ])
        .expect_err("recursion");
        assert!(
            errs.iter()
                .any(|e| e.contains("macros.tera: macro f (line 2) -> macros.tera: macro f")),
            "{errs:?}"
        );
    }

    #[test]
    fn mutual_recursion_through_filters_sets_loops_and_arguments_is_found() {
        let hidden = [
            "{{ self::g() | upper }}",
            "{% set x = self::g() %}",
            "{% for i in [1] %}{% if true %}{{ self::g() }}{% endif %}{% endfor %}",
            "{{ self::h(x=self::g()) }}",
            "{% filter upper %}{{ self::g() }}{% endfilter %}",
            "{{ 1 + self::g() | length }}",
            "{% if self::g() == \"\" %}x{% endif %}",
        ];
        for call in hidden {
            let text = format!(
                "{{% macro f() %}}{call}{{% endmacro %}}{{% macro g() %}}{{{{ self::f() }}}}{{% endmacro %}}{{% macro h(x) %}}{{% endmacro %}}"
            );
            let errs = set(&[("m.tera", &text)]).expect_err(call);
            assert!(errs[0].contains("call cycle"), "{call}: {errs:?}");
        }
    }

    #[test]
    fn recursion_across_files_and_includes_is_found() {
        let errs = set(&[
            (
                "a.tera",
                "{% import \"b.tera\" as b %}{% macro f() %}{{ b::g() }}{% endmacro %}",
            ),
            (
                "b.tera",
                "{% import \"a.tera\" as a %}{% macro g() %}{{ a::f() }}{% endmacro %}",
            ),
        ])
        .expect_err("cross-file");
        assert!(errs[0].contains("a.tera: macro f") && errs[0].contains("b.tera: macro g"));
        let errs = set(&[
            ("p.tera", "{% import \"m.tera\" as m %}{{ m::f() }}"),
            (
                "m.tera",
                "{% macro f() %}{% include \"p.tera\" %}{% endmacro %}",
            ),
        ])
        .expect_err("through include");
        assert!(errs[0].contains("p.tera"), "{errs:?}");
    }

    #[test]
    fn finite_call_chains_and_the_shipped_templates_pass() {
        assert!(set(&[(
            "m.tera",
            "{% macro f() %}{{ self::g() }}{{ self::g() }}{% endmacro %}{% macro g() %}x{% endmacro %}{{ self::f() }}"
        )])
        .is_ok());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let sources = crate::render::load::read_sources(std::path::Path::new(dir)).expect("read");
        assert!(crate::render::load::build(sources).is_ok());
    }

    #[test]
    fn long_chains_are_capped() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "{{% macro f{i}() %}}{{{{ self::f{}() }}}}{{% endmacro %}}",
                i + 1
            ));
        }
        text.push_str("{% macro f40() %}x{% endmacro %}");
        let errs = set(&[("m.tera", &text)]).expect_err("deep");
        assert!(errs[0].contains("deeper than"), "{errs:?}");
    }
}
