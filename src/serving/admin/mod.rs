//! The operator's view, on its own listen address (never a boot port): a JSON API over the
//! live state and the journal, and a status page. Optional bearer token.

pub mod access;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::addr::{self, Reading};
use crate::model::boot;
use crate::model::node::{NodeUuid, PortLink};
use crate::render::{Format, Server};
use crate::serving::app::App;
use crate::serving::journal::{self, Event, Journal};
use crate::serving::web::{self, full, text, Body, WebServer};
use crate::state::diagnosis::closest;
use crate::state::{IndexedNode, IndexedPort, Snapshot};

/// What the admin handlers need.
pub struct Admin {
    pub app: Arc<App>,
    pub journal: Arc<Journal>,
    /// Required bearer token, if configured.
    pub token: Option<access::Token>,
    /// Without a token: the `Host` names requests must carry (DNS-rebinding protection).
    pub hosts: access::HostCheck,
    /// How rendered previews address the boot server.
    pub preview_server: Server,
    pub client_id_prefix: [u8; 12],
}

/// A port with every InfiniBand form, for the API.
#[derive(Serialize)]
pub struct PortView {
    pub uuid: Option<String>,
    pub address: String,
    pub pxe_enabled: bool,
    pub infiniband: bool,
    pub guid: Option<String>,
    pub client_id: Option<String>,
    pub pxelinux_names: Vec<String>,
    pub ipxe_name: String,
    /// Whether ironpxe answers the port's boot names (PXE-enabled, or `add_all_ports`).
    pub boot_names: bool,
    /// Why the port boots otherwise than its fields suggest, if it does.
    pub note: Option<String>,
}

/// What the operator must know about a port Ironic treats unexpectedly.
fn port_note(p: &IndexedPort) -> Option<String> {
    let note = match (p.boot_names, p.port.pxe_enabled, p.port.client_id()) {
        (false, _, _) => {
            "not PXE-enabled: Ironic writes no boot config for it, its names are not answered"
                .into()
        }
        (true, false, _) => "not PXE-enabled, booted by [neutron] add_all_ports".into(),
        (true, true, Some(Err(why))) => format!("InfiniBand without a GUID: {why}"),
        _ => return None,
    };
    Some(note)
}
#[derive(Serialize)]
pub struct NodeView {
    pub uuid: String,
    pub name: Option<String>,
    pub provision_state: String,
    pub action: &'static str,
    pub source: String,
    pub ports: Vec<PortView>,
    pub last_request: Option<Arc<Event>>,
}

impl Admin {
    fn port_view(&self, p: &IndexedPort) -> PortView {
        let reading = match p.client_id {
            Some(c) => Reading::ClientId(c),
            None if p.is_infiniband() => Reading::IbMac(p.port.address),
            None => Reading::EthernetMac(p.port.address),
        };
        let d = addr::derive(&reading, self.client_id_prefix);
        PortView {
            uuid: p.port.uuid.map(|u| u.to_string()),
            address: p.port.address.to_string(),
            pxe_enabled: p.port.pxe_enabled,
            infiniband: p.is_infiniband(),
            guid: p.guid().map(|g| g.to_string()),
            client_id: match p.port.link() {
                PortLink::Infiniband(form) => form.hex().map(|c| c.to_string()),
                PortLink::Ethernet => None,
            },
            pxelinux_names: d.pxelinux_names,
            ipxe_name: d.ipxe_name,
            boot_names: p.boot_names,
            note: port_note(p),
        }
    }

    pub fn node_view(&self, snap: &Snapshot, n: &IndexedNode) -> NodeView {
        NodeView {
            uuid: n.node.uuid.to_string(),
            name: n.node.name.clone(),
            provision_state: n.node.provision_state.to_string(),
            action: boot::action_for(&n.node).name(),
            source: n.source.to_string(),
            ports: n
                .ports
                .iter()
                .map(|&i| self.port_view(&snap.ports()[i]))
                .collect(),
            last_request: self.journal.last_event(&n.node.uuid),
        }
    }

    /// `GET /api/v1/nodes`.
    pub fn nodes(&self) -> Vec<NodeView> {
        let snap = self.app.store.current();
        snap.nodes()
            .iter()
            .map(|n| self.node_view(&snap, n))
            .collect()
    }

    /// `GET /api/v1/nodes/<uuid>`: the node, its journey and a preview of each config.
    pub fn node(&self, uuid: &NodeUuid) -> Option<Value> {
        let snap = self.app.store.current();
        let n = snap.node(uuid)?;
        let mut previews = serde_json::Map::new();
        for &i in &n.ports {
            let p = &snap.ports()[i];
            let Some(m) = snap
                .by_mac(&p.port.address)
                .filter(|m| m.node.node.uuid == *uuid)
            else {
                continue;
            };
            let hw = Some(p.port.hw_type());
            let mut per = serde_json::Map::new();
            for f in [Format::Pxelinux, Format::Ipxe, Format::Grub] {
                let v = match self
                    .app
                    .renderer
                    .render(Some(&m), f, hw, &self.preview_server)
                {
                    Ok(r) => json!({"body": &*r.body, "action": r.action.name()}),
                    Err(e) => json!({"error": e.to_string()}),
                };
                per.insert(f.name().into(), v);
            }
            previews.insert(p.port.address.to_string(), Value::Object(per));
        }
        Some(json!({
            "node": self.node_view(&snap, n),
            "journey": self.journal.node_events(uuid),
            "previews": previews,
        }))
    }

    /// `GET /api/v1/unknown-clients`.
    pub fn unknown_clients(&self) -> Value {
        let snap = self.app.store.current();
        let (list, evicted) = self.journal.unknown_clients();
        let clients: Vec<Value> = list
            .iter()
            .map(|u| {
                json!({
                    "address": u.asked.addr.to_string(),
                    "asked_as": u.asked.asked_as,
                    "first_seen_ms": u.first_seen_ms,
                    "last_seen_ms": u.last_seen_ms,
                    "count": u.count,
                    "last_client": u.last_client,
                    "derived": journal::derived(&u.asked, self.client_id_prefix),
                    "closest": closest(&snap, &u.asked),
                })
            })
            .collect();
        json!({"clients": clients, "evicted": evicted, "capacity": self.journal.config().unknown_clients})
    }

    /// State and template problems, for the page.
    pub fn problems(&self) -> Value {
        let snap = self.app.store.current();
        json!({
            "state_errors": snap.errors,
            "warnings": snap.warnings,
            "template_errors": self.app.renderer.errors(),
            "node_problems": self.app.problems.list(),
            "journal_dropped": self.journal.dropped(),
        })
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let query = query_param(req.uri().query(), "token");
        let given = bearer.map(str::to_owned).or(query);
        given.is_some_and(|g| token.matches(&g))
    }

    /// With no token, only requests naming this server in `Host` (see [`access`]).
    fn host_allowed(&self, req: &Request<Incoming>) -> bool {
        self.token.is_some()
            || self.hosts.allows(
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok()),
            )
    }
}

/// One query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| web::percent_decode(&v.replace('+', " ")))
}

fn json_response(status: StatusCode, v: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v)
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}").into_bytes());
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Routes one admin request.
pub fn handle(admin: &Admin, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return web::method_not_allowed();
    }
    if !admin.host_allowed(req) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "ironpxe admin: this Host is not the admin listen address, localhost or an [admin] host_aliases entry (DNS-rebinding protection while no [admin] token_file is set)\n",
        );
    }
    if !admin.authorized(req) {
        let mut r = text(StatusCode::UNAUTHORIZED, "bearer token required\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path();
    let query = req.uri().query();
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return api(admin, rest, query);
    }
    page::route(admin, path, query)
}

fn api(admin: &Admin, rest: &str, query: Option<&str>) -> Response<Body> {
    match rest {
        "nodes" => json_response(StatusCode::OK, &admin.nodes()),
        "events" => {
            let since = query_param(query, "since")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let limit = query_param(query, "limit")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1000)
                .min(10_000);
            admin.journal.flush();
            json_response(StatusCode::OK, &admin.journal.events_since(since, limit))
        }
        "unknown-clients" => {
            admin.journal.flush();
            json_response(StatusCode::OK, &admin.unknown_clients())
        }
        "problems" => json_response(StatusCode::OK, &admin.problems()),
        _ => match rest.strip_prefix("nodes/").map(NodeUuid::parse) {
            Some(Ok(u)) => {
                admin.journal.flush();
                match admin.node(&u) {
                    Some(v) => json_response(StatusCode::OK, &v),
                    None => json_response(StatusCode::NOT_FOUND, &json!({"error": "no such node"})),
                }
            }
            Some(Err(e)) => {
                json_response(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()}))
            }
            None => json_response(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
        },
    }
}

/// Starts the admin server on the current runtime. Its connections are capped at
/// `max_connections` (from one client address as from all: operators are few) and drain
/// within `shutdown_grace` at shutdown, like the boot HTTP server's.
pub async fn start(
    admin: Arc<Admin>,
    listen: SocketAddr,
    max_connections: usize,
    shutdown_grace: Duration,
) -> std::io::Result<WebServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let accept = web::Accept {
        name: "admin",
        header_timeout: Duration::from_secs(10),
        max_header_bytes: None,
        shutdown_grace,
        max_connections,
        max_connections_per_client: max_connections,
    };
    let server = web::serve(
        listener,
        accept,
        || {},
        move |req, _, _| {
            let admin = admin.clone();
            // The handlers read the journal and render previews: off the runtime's threads.
            async move {
                let r = tokio::task::spawn_blocking(move || handle(&admin, &req)).await;
                r.unwrap_or_else(|_| {
                    text(StatusCode::INTERNAL_SERVER_ERROR, "admin handler failed\n")
                })
            }
        },
    )?;
    tracing::info!(local = %server.local, "admin listening");
    Ok(server)
}
