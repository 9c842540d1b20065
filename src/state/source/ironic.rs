//! Ironic itself as a state source: a REST client (noauth, HTTP basic, or Keystone
//! application credentials with token renewal) and a change-driven poller feeding the same
//! store as the watched directory.
//!
//! Ironic's listings cost it a large constant per node (its Python encoding, not its
//! database), so the poller walks the fleet once — every page of `nodes` and `ports` with
//! only the fields ironpxe reads — and then, every `interval_secs`, asks only what changed:
//! four small listings sorted newest first ([`refresh`](super::refresh)), whose entries it
//! merges into its own view. A full reconciliation every `reconcile_secs` walks only uuids,
//! which removes what was deleted (Ironic keeps no record of deletions). The store gets the
//! whole view only when something changed. A failed or partial request changes nothing and is
//! reported (log, `/metrics`, `/healthz`). Each published view is also written atomically to
//! a cache file, so a restart while Ironic is down still boots every known machine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::model::node::{Node, NodeUuid, Port, PortUuid, StateDoc};
use crate::state::source::refresh::{sift, Delta, Moved, Stamp, View, Watermark};
use crate::state::source::subset::{Subset, SubsetConfig};
use crate::state::{SourceError, SourceId, Store, Update};

/// `[ironic]` in the config.
#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IronicConfig {
    /// Ironic API base URL, e.g. `http://192.0.2.5:6385`. Unset: no API source.
    pub url: Option<String>,
    /// `X-OpenStack-Ironic-API-Version`; `latest` when unset.
    pub api_version: Option<String>,
    /// Seconds between change probes (default 2): four small sorted listings per probe.
    pub interval_secs: Option<u64>,
    /// Seconds between full reconciliations (default 600): `fields=uuid` walks of nodes and
    /// ports that remove what was deleted and fetch anything the probes missed.
    pub reconcile_secs: Option<u64>,
    /// Seconds a change probe reads back before the newest timestamp it saw last (default
    /// 5): clock skew between Ironic's hosts and rows committed with an older timestamp.
    pub change_overlap_secs: Option<u64>,
    /// Seconds one request may take (default 30).
    pub timeout_secs: Option<u64>,
    /// Page size asked for (default 1000; Ironic caps it at its `max_limit`).
    pub page_limit: Option<u32>,
    /// Where each good poll is kept; default `<state_dir>/.ironic-cache.json` (a dotfile, so
    /// the directory watcher does not load it twice).
    pub cache_file: Option<PathBuf>,
    /// `none` (noauth), `http_basic` or `keystone`.
    pub auth: AuthKind,
    /// HTTP basic user.
    pub username: Option<String>,
    /// HTTP basic password, or a file holding it (`password_file` wins).
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Keystone: identity URL (`https://keystone:5000/v3`) and an application credential.
    pub keystone_url: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_secret: Option<String>,
    pub application_credential_secret_file: Option<PathBuf>,
    /// `[ironic.subset]`: serve one slice of the fleet (see [`subset`](super::subset)).
    pub subset: SubsetConfig,
}

impl fmt::Debug for IronicConfig {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IronicConfig")
            .field("url", &self.url)
            .field("auth", &self.auth)
            .field("username", &self.username)
            .field("keystone_url", &self.keystone_url)
            .field("application_credential_id", &self.application_credential_id)
            .finish_non_exhaustive()
    }
}

/// How to authenticate to Ironic.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    None,
    HttpBasic,
    Keystone,
}

/// Credentials, resolved from the config (secret files read once at start).
#[derive(Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: String,
    },
    Keystone {
        url: String,
        id: String,
        secret: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "http_basic(user={user}, password=***)"),
            Auth::Keystone { url, id, .. } => {
                write!(f, "keystone({url}, credential={id}, secret=***)")
            }
        }
    }
}

/// A failure talking to Ironic; never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    #[error("{what}: {message}")]
    Request { what: String, message: String },
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: bad JSON: {message}")]
    Json { what: String, message: String },
    #[error("config: {0}")]
    Config(String),
}

impl IronicConfig {
    /// The validated `[ironic.subset]`, checked against `api_version`.
    pub fn subset(&self) -> Result<Subset, IronicError> {
        let s =
            Subset::from_config(&self.subset).map_err(|e| IronicError::Config(e.to_string()))?;
        s.check_api_version(self.api_version.as_deref())
            .map_err(|e| IronicError::Config(e.to_string()))?;
        Ok(s)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.unwrap_or(2).max(1))
    }

    /// The change-driven refresh's timing.
    pub fn refresh(&self) -> Refresh {
        Refresh {
            interval: self.interval(),
            reconcile: Duration::from_secs(self.reconcile_secs.unwrap_or(600).max(1)),
            overlap: Duration::from_secs(self.change_overlap_secs.unwrap_or(5)),
        }
    }

    /// Resolves the credentials, reading secret files.
    pub fn auth(&self) -> Result<Auth, IronicError> {
        let need = |v: &Option<String>, key: &str| {
            v.clone().ok_or_else(|| {
                IronicError::Config(format!(
                    "ironic.{key} is required for ironic.auth = {:?}",
                    self.auth
                ))
            })
        };
        let secret = |inline: &Option<String>, file: &Option<PathBuf>, key: &str| match file {
            Some(f) => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    IronicError::Config(format!("ironic.{key}_file {}: {e}", f.display()))
                }),
            None => need(inline, key),
        };
        Ok(match self.auth {
            AuthKind::None => Auth::None,
            AuthKind::HttpBasic => Auth::Basic {
                user: need(&self.username, "username")?,
                password: secret(&self.password, &self.password_file, "password")?,
            },
            AuthKind::Keystone => Auth::Keystone {
                url: need(&self.keystone_url, "keystone_url")?,
                id: need(&self.application_credential_id, "application_credential_id")?,
                secret: secret(
                    &self.application_credential_secret,
                    &self.application_credential_secret_file,
                    "application_credential_secret",
                )?,
            },
        })
    }
}

/// A Keystone token and when to renew it.
#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// Renew a token this long before Keystone says it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The Ironic REST client.
pub struct Client {
    http: reqwest::Client,
    base: String,
    version: String,
    limit: u32,
    auth: Auth,
    token: Mutex<Option<Token>>,
    subset: Subset,
    /// `fields=` of node requests: [`NODE_FIELDS`] plus what the API version allows of
    /// [`PLACEMENT_FIELDS`].
    node_fields: String,
}

impl Client {
    pub fn new(cfg: &IronicConfig) -> Result<Client, IronicError> {
        let base = cfg
            .url
            .as_deref()
            .ok_or_else(|| IronicError::Config("ironic.url is not set".into()))?
            .trim_end_matches('/')
            .to_owned();
        let timeout = Duration::from_secs(cfg.timeout_secs.unwrap_or(30).max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| IronicError::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            version: cfg.api_version.clone().unwrap_or_else(|| "latest".into()),
            limit: cfg.page_limit.unwrap_or(1000).max(1),
            auth: cfg.auth()?,
            token: Mutex::new(None),
            subset: cfg.subset()?,
            node_fields: node_fields(cfg.api_version.as_deref()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The slice of the fleet this client lists.
    pub fn subset(&self) -> &Subset {
        &self.subset
    }

    /// One complete walk: every page of nodes and of ports (of the configured subset), with
    /// only the fields ironpxe reads ([`Client::node_fields`], [`PORT_FIELDS`]).
    pub async fn poll(&self) -> Result<StateDoc, IronicError> {
        let mut nodes = Vec::new();
        let fields = format!("fields={}", self.node_fields);
        for query in self.subset.node_queries() {
            nodes.extend(self.list("nodes", &fields, &query).await?.nodes);
        }
        let ports = self
            .list(
                "ports",
                &format!("fields={PORT_FIELDS}"),
                &self.subset.port_query(),
            )
            .await?;
        Ok(self.subset.select(StateDoc {
            nodes,
            ports: ports.ports,
        }))
    }

    /// Follows `next` links until the listing ends; any failed page fails the whole list.
    /// A filtered listing (`query`, `&k=v…`) pages by `marker` itself: Ironic's `next` link
    /// drops the filters.
    async fn list(&self, what: &str, fields: &str, query: &str) -> Result<StateDoc, IronicError> {
        let mut all = StateDoc::default();
        let first = format!("/v1/{what}?{fields}&limit={}{query}", self.limit);
        let mut path = first.clone();
        for _page in 0..=MAX_WALK_PAGES {
            let body = self.get(&path).await?;
            let doc = StateDoc::from_slice(&body).map_err(|e| IronicError::Json {
                what: format!("GET {path}"),
                message: e.to_string(),
            })?;
            let next: Next = serde_json::from_slice(&body).map_err(|e| IronicError::Json {
                what: format!("GET {path}"),
                message: e.to_string(),
            })?;
            let got = doc.nodes.len() + doc.ports.len();
            let last = match (doc.nodes.last(), doc.ports.last()) {
                (Some(n), _) => Some(n.uuid.to_string()),
                (None, Some(p)) => p.uuid.map(|u| u.to_string()),
                (None, None) => None,
            };
            all.nodes.extend(doc.nodes);
            all.ports.extend(doc.ports);
            match next.next.as_deref().and_then(path_of) {
                Some(_) if got > 0 && !query.is_empty() => match last {
                    Some(last) => path = Subset::next_page(&first, &last),
                    None => {
                        return Err(IronicError::Json {
                            what: format!("GET {path}"),
                            message: "a listed port has no uuid to page on".into(),
                        })
                    }
                },
                Some(p) if got > 0 => path = p,
                _ => return Ok(all),
            }
        }
        Err(IronicError::Request {
            what: what.into(),
            message: "pagination does not end".into(),
        })
    }

    /// Every uuid of a listing (`fields=uuid`: the cheapest complete walk Ironic offers),
    /// with `query` (`&k=v…` filters, or empty). Entries whose uuid does not parse are
    /// counted in the second value, not listed.
    pub async fn uuids(
        &self,
        kind: Kind,
        query: &str,
    ) -> Result<(Vec<String>, usize), IronicError> {
        let mut out = Vec::new();
        let mut bad = 0;
        let first = format!(
            "/v1/{}?fields=uuid&limit={}{query}",
            kind.path(),
            self.limit
        );
        let mut path = first.clone();
        for _page in 0..=MAX_WALK_PAGES {
            let page = self.page(&path).await?;
            for v in page.entries(kind) {
                match v.get("uuid").and_then(serde_json::Value::as_str) {
                    Some(u) => out.push(u.to_owned()),
                    None => bad += 1,
                }
            }
            match next_page(&first, &page, kind) {
                Some(p) => path = p,
                None => return Ok((out, bad)),
            }
        }
        Err(IronicError::Request {
            what: kind.path().into(),
            message: "pagination does not end".into(),
        })
    }

    /// One change probe: `kind` (with `query`, `&k=v…` filters, or empty) sorted by `key`
    /// newest first, read (at most `max_pages` pages of `limit`) down to `cutoff`.
    /// `cutoff: None` reads only the first page: the newest timestamp, to start a mark from.
    ///
    /// Ironic 39 sorts nodes by any column but its JSON ones (`node.py`
    /// `invalid_sort_key_list`) and ports by any but `extra`, `internal_info`,
    /// `local_link_connection`; `updated_at` cannot be asked for in `fields=`, and
    /// `fields=` and `detail=True` exclude each other (`utils.get_request_return_fields`), so
    /// probes ask `detail=True` (API 1.43) and read the full entry. Neither column is
    /// indexed: each probe is a scan of the table in the database (cheap next to Ironic's
    /// per-node encoding, which a probe pays only for the entries it returns). Pages are
    /// followed by `marker` (the last entry's uuid; Ironic pages on the sort key and id), not
    /// by `next`, which drops filters.
    pub async fn probe(
        &self,
        kind: Kind,
        key: SortKey,
        query: &str,
        cutoff: Option<Stamp>,
        limit: u32,
        max_pages: usize,
    ) -> Result<Probe, IronicError> {
        let limit = limit.clamp(1, self.limit);
        // Ironic encodes every row of a page, also those past the cutoff: start with two
        // (the mark's own row and one older, the idle answer) and double while all are new.
        let mut size = limit.min(2);
        let first = |size: u32| {
            format!(
                "/v1/{}?detail=True&sort_key={}&sort_dir=desc&limit={size}{query}",
                kind.path(),
                key.name()
            )
        };
        let mut path = first(size);
        let ceiling = Stamp::from(SystemTime::now()).plus(FUTURE_TOLERANCE);
        let mut out = Probe::default();
        let mut dated = false;
        for _page in 0..max_pages {
            let page = self.page(&path).await?;
            size = (size * 2).min(limit);
            let next = next_page(&first(size), &page, kind);
            let entries = page.into_entries(kind);
            let stamps: Vec<_> = entries
                .iter()
                .map(|v| match v.get(key.name()) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(Stamp::parse(s).ok_or(())),
                    Some(_) => Some(Err(())),
                })
                .collect();
            let sifted = sift(&stamps, cutoff, ceiling, dated);
            dated = sifted.dated;
            out.top = out.top.max(sifted.top);
            let mut take = sifted.take.iter().peekable();
            for (i, v) in entries.into_iter().enumerate() {
                if take.next_if_eq(&&i).is_some() {
                    out.entries.push(v);
                }
            }
            match next {
                Some(p) if cutoff.is_some() && !sifted.reached_old => path = p,
                _ => {
                    out.complete = true;
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// `GET /v1/nodes/<uuid>` with [`Client::node_fields`]; `None` when Ironic no longer has it.
    pub async fn node(&self, uuid: NodeUuid) -> Result<Option<Node>, IronicError> {
        self.one(&format!("/v1/nodes/{uuid}?fields={}", self.node_fields))
            .await
    }

    /// `GET /v1/ports/<uuid>` with [`PORT_FIELDS`]; `None` when Ironic no longer has it.
    pub async fn port(&self, uuid: PortUuid) -> Result<Option<Port>, IronicError> {
        self.one(&format!("/v1/ports/{uuid}?fields={PORT_FIELDS}"))
            .await
    }

    async fn one<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, IronicError> {
        match self.get(path).await {
            Ok(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| IronicError::Json {
                    what: format!("GET {path}"),
                    message: e.to_string(),
                }),
            Err(IronicError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn page(&self, path: &str) -> Result<Page, IronicError> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).map_err(|e| IronicError::Json {
            what: format!("GET {path}"),
            message: e.to_string(),
        })
    }

    /// GET with auth; one retry with a fresh token on 401.
    pub async fn get(&self, path: &str) -> Result<bytes::Bytes, IronicError> {
        let resp = self.send(reqwest::Method::GET, path, None).await?;
        read_ok(resp, &format!("GET {path}")).await
    }

    /// POST/PATCH JSON (used by `inspect --apply`).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<bytes::Bytes, IronicError> {
        let what = format!("{method} {path}");
        let resp = self.send(method, path, Some(body)).await?;
        read_ok(resp, &what).await
    }

    /// DELETE (used by `inspect --apply`).
    pub async fn delete(&self, path: &str) -> Result<bytes::Bytes, IronicError> {
        let what = format!("DELETE {path}");
        let resp = self.send(reqwest::Method::DELETE, path, None).await?;
        read_ok(resp, &what).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, IronicError> {
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("X-OpenStack-Ironic-API-Version", &self.version)
                .header("Accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            req = match &self.auth {
                Auth::None => req,
                Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
                Auth::Keystone { .. } => req.header("X-Auth-Token", self.token().await?),
            };
            let resp = req.send().await.map_err(|e| IronicError::Request {
                what: format!("{method} {path}"),
                message: e.without_url().to_string(),
            })?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                if let Auth::Keystone { .. } = self.auth {
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    continue;
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The current Keystone token, renewed before it expires.
    async fn token(&self) -> Result<String, IronicError> {
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if Instant::now() < t.renew_at {
                return Ok(t.value);
            }
        }
        let Auth::Keystone { url, id, secret } = &self.auth else {
            return Err(IronicError::Config("no Keystone credentials".into()));
        };
        let body = serde_json::json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret}}}});
        let what = "POST keystone /auth/tokens".to_owned();
        let resp = self
            .http
            .post(format!("{}/auth/tokens", url.trim_end_matches('/')))
            .json(&body)
            .send()
            .await
            .map_err(|e| IronicError::Request {
                what: what.clone(),
                message: e.without_url().to_string(),
            })?;
        let value = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_ok(resp, &what).await?;
        let value = value.ok_or_else(|| IronicError::Request {
            what: what.clone(),
            message: "no X-Subject-Token in the response".into(),
        })?;
        let renew_at = token_renew_at(&bytes, SystemTime::now());
        tracing::info!(
            renew_in_secs = renew_at.as_secs(),
            "Keystone token obtained"
        );
        let token = Token {
            value: value.clone(),
            renew_at: Instant::now() + renew_at,
        };
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(value)
    }
}

/// How long a token may be used: until `RENEW_MARGIN` before its `expires_at` (at least a
/// minute; an unreadable expiry means one hour, Keystone's default).
fn token_renew_at(body: &[u8], now: SystemTime) -> Duration {
    #[derive(Deserialize)]
    struct R {
        token: T,
    }
    #[derive(Deserialize)]
    struct T {
        expires_at: String,
    }
    let lifetime = serde_json::from_slice::<R>(body)
        .ok()
        .and_then(|r| httpdate_rfc3339(&r.token.expires_at))
        .and_then(|exp| exp.duration_since(now).ok())
        .unwrap_or(Duration::from_secs(3600));
    lifetime
        .saturating_sub(RENEW_MARGIN)
        .max(Duration::from_secs(60))
}

/// Parses Keystone's `2026-11-26T10:00:00.000000Z` (UTC; `+00:00` too, no other offset).
fn httpdate_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s.trim()).ok()
}

/// What ironpxe reads of a node (what `model::node::Node` deserialises), asked with
/// `fields=` (API 1.8). Microversions: `driver_internal_info` 1.3; `boot_interface`,
/// `deploy_interface`, `inspect_interface` 1.31; the rest 1.1. `api_version` below 1.31 makes
/// Ironic refuse the walk (406), which the log names.
pub const NODE_FIELDS: &str = "uuid,name,provision_state,target_provision_state,\
boot_interface,deploy_interface,inspect_interface,driver_info,instance_info,properties,\
driver_internal_info,extra";

/// Where Ironic places a node (read by `[ironic.subset]`), with the microversion each needs:
/// asked whenever `api_version` allows, so a walk's node equals a probe's (`detail=True`
/// returns them all) and a re-read row is not taken for a change.
pub const PLACEMENT_FIELDS: [(&str, u32); 4] = [
    ("resource_class", 21),
    ("conductor_group", 46),
    ("owner", 50),
    ("shard", 82),
];

/// `fields=` for nodes at `api_version` (unset or `latest`: every placement field).
pub fn node_fields(api_version: Option<&str>) -> String {
    let minor = match api_version.map(str::trim) {
        None => u32::MAX,
        Some(v) if v.eq_ignore_ascii_case("latest") => u32::MAX,
        Some(v) => v
            .strip_prefix("1.")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    };
    PLACEMENT_FIELDS
        .iter()
        .filter(|(_, need)| minor >= *need)
        .fold(NODE_FIELDS.to_owned(), |f, (name, _)| format!("{f},{name}"))
}

/// What ironpxe reads of a port; `pxe_enabled` needs API 1.19.
pub const PORT_FIELDS: &str = "uuid,address,node_uuid,pxe_enabled,extra";

/// A walk longer than this many pages is refused as an answer that never ends.
const MAX_WALK_PAGES: usize = 100_000;

/// Entries per change-probe page at most (pages start at two and double), and pages per
/// probe: more changes than about 1 600 since the last probe mean a full walk instead.
const PROBE_LIMIT: u32 = 100;
const MAX_PROBE_PAGES: usize = 20;

/// Listed uuids the view lacks that a reconciliation fetches one by one; more mean a walk.
const MAX_TARGETED: usize = 200;

/// Timestamps this far past our own clock still move a mark; later ones are hostile or a
/// broken clock, taken in but ignored for the mark.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(600);

/// The two listings a change probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nodes,
    Ports,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Ports => "ports",
        }
    }
}

/// The column a change probe sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    UpdatedAt,
    /// A row never updated has `updated_at: null`; its `created_at` finds it.
    CreatedAt,
}

impl SortKey {
    fn name(self) -> &'static str {
        match self {
            SortKey::UpdatedAt => "updated_at",
            SortKey::CreatedAt => "created_at",
        }
    }
}

/// The probes of one refresh, in order (their marks are kept in this order): nodes and
/// ports, each by `updated_at` and `created_at`, once per listing of the subset (one node
/// query per combination of its single-valued filters, one port query): four for the whole
/// fleet.
///
/// With server-side node filters, one more: every node by `updated_at`, unfiltered, so a
/// node whose placement changed through the API (which bumps `updated_at`) leaves this
/// replica at once instead of at the next reconciliation. It costs Ironic the encoding of
/// every change in the fleet, per replica.
fn probes(subset: &Subset) -> Vec<(Kind, SortKey, String)> {
    let mut out = Vec::new();
    if subset.node_queries() != [String::new()] {
        out.push((Kind::Nodes, SortKey::UpdatedAt, String::new()));
    }
    for q in subset.node_queries() {
        for key in [SortKey::UpdatedAt, SortKey::CreatedAt] {
            out.push((Kind::Nodes, key, q.clone()));
        }
    }
    for key in [SortKey::UpdatedAt, SortKey::CreatedAt] {
        out.push((Kind::Ports, key, subset.port_query()));
    }
    out
}

/// What a change probe found.
#[derive(Debug, Default)]
pub struct Probe {
    /// The entries at or after the cutoff, as Ironic sent them.
    pub entries: Vec<serde_json::Value>,
    /// The newest sane timestamp seen.
    pub top: Option<Stamp>,
    /// False when the page cap was reached before the cutoff: too many changes to trust.
    pub complete: bool,
}

/// One page of a listing, entries kept raw (probes read their timestamps first).
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    nodes: Vec<serde_json::Value>,
    #[serde(default)]
    ports: Vec<serde_json::Value>,
    #[serde(default)]
    next: Option<String>,
}

impl Page {
    fn entries(&self, kind: Kind) -> &[serde_json::Value] {
        match kind {
            Kind::Nodes => &self.nodes,
            Kind::Ports => &self.ports,
        }
    }

    fn into_entries(self, kind: Kind) -> Vec<serde_json::Value> {
        match kind {
            Kind::Nodes => self.nodes,
            Kind::Ports => self.ports,
        }
    }
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// The next page of a listing that started at `first`: `first` plus `&marker=<the last
/// entry's uuid>`, when Ironic says there is more (a `next` link) and the page was not empty.
/// A marker that is not a uuid ends the listing here rather than go into a URL.
fn next_page(first: &str, page: &Page, kind: Kind) -> Option<String> {
    page.next.as_ref()?;
    let last = page.entries(kind).last()?.get("uuid")?.as_str()?;
    let uuid = NodeUuid::parse(last).ok()?;
    Some(format!("{first}&marker={uuid}"))
}

/// The path and query of a `next` link (its host may be Ironic's public name).
fn path_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let i = rest.find("/v1/")?;
    Some(rest[i..].to_owned())
}

async fn read_ok(resp: reqwest::Response, what: &str) -> Result<bytes::Bytes, IronicError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| IronicError::Request {
        what: what.to_owned(),
        message: e.without_url().to_string(),
    })?;
    if status.is_success() {
        Ok(bytes)
    } else {
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        Err(IronicError::Status {
            what: what.to_owned(),
            status: status.as_u16(),
            body,
        })
    }
}

/// The source id of the Ironic API's document: it ranks first, so a node Ironic reports wins
/// over a file's copy of it.
pub fn source_id() -> SourceId {
    SourceId::new(0, "ironic-api")
}

/// The poller's state, for `/metrics` and `/healthz`.
#[derive(Default, Debug, Clone)]
pub struct PollStatus {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
    pub nodes: usize,
    pub ports: usize,
    /// Full walks (the first, and any fallback: a probe that lost track).
    pub walks: u64,
    /// Reconciliations by uuid walk.
    pub reconciles: u64,
    /// Node and port changes taken in from probes and reconciliations.
    pub changes: u64,
}

/// Shared view of the poller.
#[derive(Default)]
pub struct PollState(Mutex<PollStatus>);

impl PollState {
    pub fn get(&self) -> PollStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut PollStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Loads the cache from the last good poll into the store (a restart while Ironic is down).
pub fn load_cache(store: &Store, cache: &Path) {
    load_cache_of(store, cache, &Subset::default());
}

/// [`load_cache`], keeping only `subset`'s nodes: the subset may have changed since the cache
/// was written.
pub fn load_cache_of(store: &Store, cache: &Path, subset: &Subset) {
    match std::fs::read(cache) {
        Ok(bytes) => match StateDoc::from_slice(&bytes) {
            Ok(doc) => {
                let cached = doc.nodes.len();
                let doc = subset.select(doc);
                if doc.nodes.len() < cached {
                    tracing::info!(cache = %cache.display(), dropped = cached - doc.nodes.len(), "cached nodes outside [ironic.subset] not loaded");
                }
                tracing::info!(cache = %cache.display(), nodes = doc.nodes.len(), "loaded the last good Ironic poll");
                store.apply(vec![(source_id(), Update::Replace(doc))]);
            }
            Err(e) => {
                tracing::warn!(cache = %cache.display(), error = %e, "Ironic cache unreadable; ignored")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(cache = %cache.display(), error = %e, "Ironic cache unreadable; ignored")
        }
    }
}

/// Writes the poll to `cache` atomically (a dotfile beside it, synced, then renamed), unless
/// the cache already holds exactly this.
fn write_cache(cache: &Path, doc: &StateDoc) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        nodes: &'a [Arc<Node>],
        ports: &'a [Arc<Port>],
    }
    let data = serde_json::to_vec(&Out {
        nodes: &doc.nodes,
        ports: &doc.ports,
    })
    .map_err(std::io::Error::other)?;
    if std::fs::read(cache).is_ok_and(|old| old == data) {
        return Ok(());
    }
    crate::support::fs::write_atomic(cache, &data)
}

/// The change-driven refresh's timing (`[ironic]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// Between change probes.
    pub interval: Duration,
    /// Between uuid reconciliations.
    pub reconcile: Duration,
    /// How far back before the last newest timestamp a probe reads.
    pub overlap: Duration,
}

/// The poller's view of Ironic and where its probes stand.
struct Refresher {
    client: Arc<Client>,
    cfg: Refresh,
    view: View,
    /// Counts since the last report (see [`PollStatus`]).
    walks: u64,
    reconciles: u64,
    changes: u64,
    /// What each probe asks ([`probes`]) and its mark.
    probes: Vec<(Kind, SortKey, String)>,
    marks: Vec<Watermark>,
    /// No complete walk yet, or the probes lost track: walk everything next.
    need_walk: bool,
    last_reconcile: Instant,
}

impl Refresher {
    fn new(client: Arc<Client>, cfg: Refresh) -> Refresher {
        Refresher {
            client,
            cfg,
            view: View::default(),
            walks: 0,
            reconciles: 0,
            changes: 0,
            marks: Vec::new(),
            probes: Vec::new(),
            need_walk: true,
            last_reconcile: Instant::now(),
        }
    }

    /// One refresh; true when the view changed.
    async fn cycle(&mut self) -> Result<bool, IronicError> {
        if self.need_walk {
            self.walk().await?;
            return Ok(true);
        }
        let mut changed = false;
        if self.last_reconcile.elapsed() >= self.cfg.reconcile {
            changed |= self.reconcile().await?;
            if self.need_walk {
                return Ok(changed);
            }
        }
        Ok(self.incremental().await? || changed)
    }

    /// The full walk. The marks are taken first: whatever changes during the walk is newer
    /// than them, so the next probe reads it again.
    async fn walk(&mut self) -> Result<(), IronicError> {
        let probes = probes(self.client.subset());
        let mut marks = vec![Watermark::default(); probes.len()];
        for (mark, (kind, key, query)) in marks.iter_mut().zip(&probes) {
            let started = Instant::now();
            let p = self.client.probe(*kind, *key, query, None, 1, 1).await?;
            mark.advance(p.top, self.cfg.overlap, started, Instant::now());
        }
        let doc = self.client.poll().await?;
        let (view, dropped) = View::from_doc(doc);
        if dropped > 0 {
            tracing::warn!(dropped, "Ironic listed ports without a uuid; ignored");
        }
        tracing::info!(
            nodes = view.node_count(),
            ports = view.port_count(),
            "walked every Ironic node and port"
        );
        self.view = view;
        self.marks = marks;
        self.probes = probes;
        self.walks += 1;
        self.need_walk = false;
        self.last_reconcile = Instant::now();
        Ok(())
    }

    /// The four change probes, merged into the view only when all four are complete.
    async fn incremental(&mut self) -> Result<bool, IronicError> {
        let mut probes = Vec::with_capacity(self.probes.len());
        let started = Instant::now();
        for (mark, (kind, key, query)) in self.marks.iter().zip(&self.probes) {
            let (kind, key) = (*kind, *key);
            let cutoff = mark.cutoff(self.cfg.overlap);
            let p = self
                .client
                .probe(kind, key, query, cutoff, PROBE_LIMIT, MAX_PROBE_PAGES)
                .await?;
            if !p.complete {
                tracing::warn!(
                    listing = kind.path(),
                    sort_key = key.name(),
                    "more changes since the last probe than one probe reads: walking the fleet"
                );
                self.walk().await?;
                return Ok(true);
            }
            probes.push(p);
        }
        let mut delta = Delta::default();
        let mut unreadable = 0usize;
        let filtered = self.client.subset().node_queries() != [String::new()];
        for ((kind, key, query), (p, mark)) in self
            .probes
            .iter()
            .zip(probes.into_iter().zip(&mut self.marks))
        {
            let (kind, key) = (*kind, *key);
            // The unfiltered node probe of a subset: what it lists outside the subset left.
            let prune = filtered && query.is_empty();
            for v in p.entries {
                match kind {
                    Kind::Nodes => match serde_json::from_value::<Node>(v) {
                        Ok(n) if prune && !self.client.subset().selects(&n) => {
                            delta.nodes_removed += usize::from(self.view.remove_node(&n.uuid))
                        }
                        Ok(n) => delta.nodes_changed += usize::from(self.view.upsert_node(n)),
                        Err(_) => unreadable += 1,
                    },
                    Kind::Ports => match serde_json::from_value::<Port>(v) {
                        Ok(p) => delta.ports_changed += usize::from(self.view.upsert_port(p)),
                        Err(_) => unreadable += 1,
                    },
                }
            }
            if mark.advance(p.top, self.cfg.overlap, started, Instant::now()) == Moved::Backward {
                tracing::debug!(
                    listing = kind.path(),
                    sort_key = key.name(),
                    "the newest timestamp went back (a deletion, or Ironic's clock); the mark follows"
                );
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "Ironic sent entries ironpxe cannot read; their last good copies are kept"
            );
        }
        if delta.any() {
            tracing::debug!(?delta, "Ironic changes taken in");
        }
        self.changes += (delta.nodes_changed + delta.ports_changed) as u64;
        Ok(delta.any())
    }

    /// Removes what Ironic no longer lists and fetches what the view lacks.
    async fn reconcile(&mut self) -> Result<bool, IronicError> {
        let subset = self.client.subset();
        let (mut nodes, mut bad_n) = (Vec::new(), 0);
        for q in subset.node_queries() {
            let (listed, bad) = self.client.uuids(Kind::Nodes, &q).await?;
            nodes.extend(listed);
            bad_n += bad;
        }
        let (ports, bad_p) = self.client.uuids(Kind::Ports, &subset.port_query()).await?;
        let nodes: std::collections::BTreeSet<NodeUuid> = nodes
            .iter()
            .filter_map(|u| NodeUuid::parse(u).ok())
            .collect();
        let ports: std::collections::BTreeSet<PortUuid> = ports
            .iter()
            .filter_map(|u| PortUuid::parse(u).ok())
            .collect();
        let mut delta = self.view.retain_listed(&nodes, &ports);
        let (unknown_nodes, unknown_ports) = self.view.unknown(&nodes, &ports);
        if unknown_nodes.len() + unknown_ports.len() > MAX_TARGETED {
            tracing::warn!(
                nodes = unknown_nodes.len(),
                ports = unknown_ports.len(),
                "reconciliation found many entries the probes missed: walking the fleet"
            );
            self.walk().await?;
            return Ok(true);
        }
        // One request at a time: these are rare, and Ironic serves other clients too.
        for u in &unknown_nodes {
            if let Some(n) = self.client.node(*u).await? {
                delta.nodes_changed += usize::from(self.view.upsert_node(n));
            }
        }
        for u in &unknown_ports {
            if let Some(p) = self.client.port(*u).await? {
                delta.ports_changed += usize::from(self.view.upsert_port(p));
            }
        }
        self.last_reconcile = Instant::now();
        self.reconciles += 1;
        self.changes +=
            (delta.nodes_changed + delta.ports_changed + delta.nodes_removed + delta.ports_removed)
                as u64;
        let orphans = self.view.orphan_ports();
        tracing::info!(
            nodes = self.view.node_count(),
            ports = self.view.port_count(),
            removed_nodes = delta.nodes_removed,
            removed_ports = delta.ports_removed,
            fetched_nodes = unknown_nodes.len(),
            fetched_ports = unknown_ports.len(),
            unreadable_uuids = bad_n + bad_p,
            orphan_ports = orphans,
            "reconciled with Ironic"
        );
        Ok(delta.any())
    }
}

/// Refreshes forever, feeding the store; returns only when the store's owner goes away.
///
/// Only the requests run on the runtime. Taking a changed view in — the cache file written
/// and synced, the snapshot of every node built — blocks for as long as the fleet is large,
/// so it runs on the blocking pool, not on a worker that also serves HTTP.
pub async fn run_poller(
    client: Arc<Client>,
    store: Arc<Store>,
    cache: PathBuf,
    cfg: Refresh,
    state: Arc<PollState>,
) {
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let base = client.base_url().to_owned();
    let mut r = Refresher::new(client, cfg);
    loop {
        ticker.tick().await;
        let outcome = r.cycle().await;
        let counts = (
            std::mem::take(&mut r.walks),
            std::mem::take(&mut r.reconciles),
            std::mem::take(&mut r.changes),
        );
        state.update(|s| {
            s.walks += counts.0;
            s.reconciles += counts.1;
            s.changes += counts.2;
        });
        let recovering = state.get().last_error.is_some() || state.get().polls_ok == 0;
        let polled = match outcome {
            Ok(changed) if changed || recovering => {
                Ok(Some(r.client.subset().select(r.view.to_doc())))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        let (store, cache, state, base) =
            (store.clone(), cache.clone(), state.clone(), base.clone());
        let taken = tokio::task::spawn_blocking(move || match polled {
            Ok(None) => state.update(|s| {
                s.polls_ok += 1;
                s.last_ok = Some(Instant::now());
            }),
            Ok(Some(doc)) => take_poll(Ok(doc), &base, &store, &cache, &state),
            Err(e) => take_poll(Err(e), &base, &store, &cache, &state),
        })
        .await;
        if let Err(e) = taken {
            tracing::error!(error = %e, "taking in an Ironic refresh failed");
        }
    }
}

/// One poll, taken in on the calling thread (tests, one-shot use; the server's poller keeps
/// that part off the runtime, see [`run_poller`]).
pub async fn poll_once(client: &Client, store: &Store, cache: &Path, state: &PollState) {
    take_poll(client.poll().await, client.base_url(), store, cache, state);
}

/// A complete listing replaces the API's contribution; a failure keeps it. Blocks (file
/// write and sync, snapshot build).
fn take_poll(
    polled: Result<StateDoc, IronicError>,
    base_url: &str,
    store: &Store,
    cache: &Path,
    state: &PollState,
) {
    match polled {
        Ok(doc) => {
            let (n, p) = (doc.nodes.len(), doc.ports.len());
            if let Err(e) = write_cache(cache, &doc) {
                tracing::warn!(cache = %cache.display(), error = %e, "cannot write the Ironic cache");
            }
            store.apply(vec![(source_id(), Update::Replace(doc))]);
            state.update(|s| {
                s.polls_ok += 1;
                s.last_ok = Some(Instant::now());
                s.last_error = None;
                s.nodes = n;
                s.ports = p;
            });
        }
        Err(e) => {
            let message = e.to_string();
            tracing::warn!(ironic = base_url, error = %message, "Ironic poll failed; serving the last good state");
            store.apply(vec![(
                source_id(),
                Update::Failed(SourceError {
                    source: "ironic-api".into(),
                    message: message.clone(),
                    line: 0,
                    column: 0,
                }),
            )]);
            state.update(|s| {
                s.polls_failed += 1;
                s.last_error = Some(message);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_fields_follow_the_api_version() {
        let all = node_fields(None);
        assert!(
            all.starts_with(NODE_FIELDS) && all.ends_with(",shard"),
            "{all}"
        );
        assert_eq!(all, node_fields(Some("latest")));
        assert_eq!(
            node_fields(Some("1.50")),
            format!("{NODE_FIELDS},resource_class,conductor_group,owner")
        );
        assert_eq!(
            node_fields(Some("1.31")),
            format!("{NODE_FIELDS},resource_class")
        );
        assert_eq!(node_fields(Some("1.20")), NODE_FIELDS);
        assert_eq!(node_fields(Some("garbage")), NODE_FIELDS);
    }

    #[test]
    fn next_links_keep_path_and_query_only() {
        assert_eq!(
            path_of("http://public.example:6385/v1/nodes?limit=2&marker=abc&detail=True")
                .as_deref(),
            Some("/v1/nodes?limit=2&marker=abc&detail=True")
        );
        assert_eq!(
            path_of("https://x/baremetal/v1/ports?marker=1").as_deref(),
            Some("/v1/ports?marker=1")
        );
        assert_eq!(path_of("garbage"), None);
    }

    #[test]
    fn keystone_expiry_parsing_and_renewal_margin() {
        let t = httpdate_rfc3339("2026-11-26T10:00:00.000000Z").expect("parses");
        let expect = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_687_200);
        assert_eq!(t, expect);
        let now = expect - Duration::from_secs(3600);
        let body = br#"{"token": {"expires_at": "2026-11-26T10:00:00.000000Z"}}"#;
        assert_eq!(token_renew_at(body, now), Duration::from_secs(3300));
        let soon = expect - Duration::from_secs(30);
        assert_eq!(
            token_renew_at(body, soon),
            Duration::from_secs(60),
            "never less than a minute"
        );
        assert_eq!(
            token_renew_at(b"{}", now),
            Duration::from_secs(3300),
            "default one hour"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let cfg = IronicConfig {
            url: Some("http://ironic".into()),
            auth: AuthKind::HttpBasic,
            username: Some("admin".into()),
            password: Some("hunter2".into()),
            application_credential_secret: Some("s3cr3t".into()),
            ..IronicConfig::default()
        };
        let dbg = format!("{cfg:?} {:?}", cfg.auth().expect("auth"));
        assert!(!dbg.contains("hunter2") && !dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("admin"));
    }

    #[test]
    fn missing_credentials_name_the_key() {
        let cfg = IronicConfig {
            auth: AuthKind::Keystone,
            ..IronicConfig::default()
        };
        let err = cfg.auth().expect_err("refused").to_string();
        assert!(err.contains("ironic.keystone_url"), "{err}");
    }
}
