//! The status page: HTML rendered server-side from the Tera templates in `templates/`, with
//! a Tera instance of its own whose autoescaping is ON for `.html` (the boot templates run
//! with it off). Everything a client chose — requested names, addresses, node names and
//! `extra` — is HTML-escaped on the way out. The page's only script is a little inline JS
//! that filters the node table and polls the JSON API; it inserts text with `textContent`.
//! A per-response CSP nonce admits that script and style and nothing else.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tera::{Context, Tera};

use super::{query_param, Admin, NodeView};
use crate::model::boot::{Action, Purpose};
use crate::model::node::NodeUuid;
use crate::serving::journal::Event;
use crate::serving::web::{full, percent_decode, percent_encode, text, Body};

/// Events the front page lists (the JS adds newer ones, keeping at most 200).
const RECENT_EVENTS: usize = 100;

fn tera() -> Result<&'static Tera, String> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = Tera::default();
        // Explicit, though it is Tera's default: this instance must escape.
        t.autoescape_on(vec![".html"]);
        t.register_filter("time", time_filter);
        t.add_raw_templates([
            ("base.html", include_str!("templates/base.html")),
            ("index.html", include_str!("templates/index.html")),
            ("node.html", include_str!("templates/node.html")),
            ("404.html", include_str!("templates/404.html")),
        ])
        .map_err(|e| format!("admin page templates: {e:?}"))?;
        Ok(t)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Routes the page's paths (the token was checked before).
pub fn route(admin: &Admin, path: &str, query: Option<&str>) -> Response<Body> {
    let mut ctx = Context::new();
    // Links carry the token when the page was opened with one, so a browser can navigate.
    let tq = query_param(query, "token")
        .map(|t| format!("?token={}", percent_encode(&t)))
        .unwrap_or_default();
    ctx.insert("tq", &tq);
    match path {
        "/" | "/index.html" => index(admin, ctx),
        _ => match path.strip_prefix("/nodes/").map(NodeUuid::parse) {
            Some(Ok(uuid)) => node(admin, &uuid, ctx),
            _ => not_found(path, ctx),
        },
    }
}

/// An event as the page shows it: with its node's name.
#[derive(Serialize)]
struct EventRow {
    #[serde(flatten)]
    event: Arc<Event>,
    node_name: Option<String>,
    /// Milliseconds since the previous event of the same list (node timeline).
    delta_ms: Option<u64>,
}

fn index(admin: &Admin, mut ctx: Context) -> Response<Body> {
    admin.journal.flush();
    let snap = admin.app.store.current();
    let mut nodes: Vec<NodeView> = admin.nodes();
    nodes.sort_by(|a, b| (&a.name, &a.uuid).cmp(&(&b.name, &b.uuid)));
    let names: HashMap<String, Option<String>> = nodes
        .iter()
        .map(|n| (n.uuid.clone(), n.name.clone()))
        .collect();
    // Discovery is for unknown machines only: no enrolled node is in it.
    let summary: Vec<(&str, usize)> = Action::ALL
        .iter()
        .filter(|&&a| a != Action::Ramdisk(Purpose::Discovery))
        .map(|a| {
            (
                a.name(),
                nodes.iter().filter(|n| n.action == a.name()).count(),
            )
        })
        .collect();
    let all = admin.journal.events_since(0, usize::MAX);
    let last_id = all.last().map_or(0, |e| e.id);
    let events: Vec<EventRow> = all
        .iter()
        .rev()
        .take(RECENT_EVENTS)
        .map(|e| EventRow {
            node_name: e
                .node
                .and_then(|u| names.get(&u.to_string()).cloned().flatten()),
            event: e.clone(),
            delta_ms: None,
        })
        .collect();
    let mut unknown = admin.unknown_clients();
    add_forms_text(&mut unknown);
    ctx.insert("generation", &snap.generation);
    ctx.insert("port_count", &snap.ports().len());
    ctx.insert("nodes", &nodes);
    ctx.insert("summary", &summary);
    ctx.insert("events", &events);
    ctx.insert("last_id", &last_id);
    ctx.insert("unknown", &unknown);
    ctx.insert("problems", &admin.problems());
    render("index.html", ctx, StatusCode::OK)
}

fn node(admin: &Admin, uuid: &NodeUuid, mut ctx: Context) -> Response<Body> {
    admin.journal.flush();
    let snap = admin.app.store.current();
    let (Some(n), Some(detail)) = (snap.node(uuid), admin.node(uuid)) else {
        return not_found(&format!("/nodes/{uuid}"), ctx);
    };
    let view = admin.node_view(&snap, n);
    let mut prev: Option<u64> = None;
    let journey: Vec<EventRow> = admin
        .journal
        .node_events(uuid)
        .into_iter()
        .map(|e| {
            let delta_ms = prev.map(|p| e.time_ms.saturating_sub(p));
            prev = Some(e.time_ms);
            EventRow {
                node_name: view.name.clone(),
                event: e,
                delta_ms,
            }
        })
        .collect();
    // Previews in port order, each in PXELINUX, iPXE, GRUB order.
    let previews: Vec<Value> = view
        .ports
        .iter()
        .filter_map(|p| {
            let per = detail["previews"].get(&p.address)?;
            let formats: Vec<Value> = ["pxelinux", "ipxe", "grub"]
                .iter()
                .filter_map(|f| {
                    let mut v = per.get(*f)?.clone();
                    v["format"] = Value::from(*f);
                    Some(v)
                })
                .collect();
            Some(serde_json::json!({"port": p.address, "infiniband": p.infiniband, "formats": formats}))
        })
        .collect();
    let extra: Vec<(String, String)> = n
        .node
        .extra
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), shown)
        })
        .collect();
    ctx.insert("node", &view);
    ctx.insert("target_provision_state", &n.node.target_provision_state);
    ctx.insert("boot_interface", &n.node.boot_interface);
    ctx.insert("deploy_interface", &n.node.deploy_interface);
    ctx.insert("extra", &extra);
    ctx.insert("journey", &journey);
    ctx.insert("previews", &previews);
    render("node.html", ctx, StatusCode::OK)
}

fn not_found(path: &str, mut ctx: Context) -> Response<Body> {
    // Decoded so the page names what was asked; the template escapes it.
    let shown = percent_decode(path).unwrap_or_else(|| path.to_owned());
    ctx.insert("path", &shown);
    render("404.html", ctx, StatusCode::NOT_FOUND)
}

fn render(template: &str, mut ctx: Context, status: StatusCode) -> Response<Body> {
    let page = nonce().and_then(|nonce| {
        ctx.insert("nonce", &nonce);
        let html = tera()?
            .render(template, &ctx)
            .map_err(|e| format!("rendering {template}: {e:?}"))?;
        Ok((nonce, html))
    });
    let (nonce, html) = match page {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "admin page");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "admin page failed: see the server log\n",
            );
        }
    };
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The URL may hold the token: never send it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// 128 bits from the OS's random source for the CSP nonce: content stored in the page cannot
/// know the nonce of the response it lands in.
fn nonce() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("CSP nonce: {e}"))?;
    let mut hex = String::with_capacity(32);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// Adds `forms`, one line of text per reading, to each unknown client (the page's JS builds
/// the same text from the API's `derived`).
fn add_forms_text(unknown: &mut Value) {
    let Some(clients) = unknown["clients"].as_array_mut() else {
        return;
    };
    for c in clients {
        let forms: Vec<Value> = c["derived"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| serde_json::json!({"kind": d["kind"], "text": forms_text(d)}))
                    .collect()
            })
            .unwrap_or_default();
        c["forms"] = Value::from(forms);
    }
}

/// `mac … · IB MAC … · GUID … · client-id … · IPoIB … · PXELINUX a, b · iPXE …`, empty
/// forms left out (the MAC too when it is the IB MAC).
fn forms_text(d: &Value) -> String {
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    if !s("mac").is_empty() && s("mac") != s("ib_mac") {
        parts.push(format!("MAC {}", s("mac")));
    }
    for (k, label) in [
        ("ib_mac", "IB MAC"),
        ("guid", "GUID"),
        ("client_id", "client-id"),
        ("ipoib_addr", "IPoIB"),
    ] {
        if !s(k).is_empty() {
            parts.push(format!("{label} {}", s(k)));
        }
    }
    let names: Vec<&str> = d["pxelinux_names"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !names.is_empty() {
        parts.push(format!("PXELINUX {}", names.join(", ")));
    }
    if !s("ipxe_name").is_empty() {
        parts.push(format!("iPXE {}", s("ipxe_name")));
    }
    parts.join(" · ")
}

/// Tera filter `time`: milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC), the
/// same text the page's JS writes.
fn time_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(v.as_u64().map(format_ms).unwrap_or_default()))
}

fn format_ms(ms: u64) -> String {
    let Some(t) = UNIX_EPOCH.checked_add(Duration::from_millis(ms)) else {
        return String::new();
    };
    // `2000-02-29T00:00:00.123Z`; `write!`, not `to_string`: past year 9999 it fails.
    let mut s = String::with_capacity(24);
    if write!(s, "{}", humantime::format_rfc3339_millis(t)).is_err() {
        return String::new();
    }
    s.replacen('T', " ", 1).trim_end_matches('Z').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_civil_dates() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_ms(1_735_689_599_999), "2024-12-31 23:59:59.999");
        assert_eq!(format_ms(u64::MAX), "", "past year 9999: nothing, no panic");
    }

    #[test]
    fn templates_parse_and_escape() {
        let t = tera().expect("templates");
        let mut ctx = Context::new();
        ctx.insert("tq", "?token=a%2Fb");
        ctx.insert("nonce", "n");
        ctx.insert("path", "/<script>alert(1)</script>");
        let html = t.render("404.html", &ctx).expect("render");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(html.contains("href=\"/?token=a%2Fb\""), "{html}");
    }
}
