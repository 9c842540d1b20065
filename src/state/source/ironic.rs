//! Ironic itself as a state source: a REST client (noauth, HTTP basic, or Keystone
//! application credentials with token renewal) and a poller feeding the same store as the
//! watched directory.
//!
//! A poll reads every page of `GET /v1/nodes?detail=True` and `GET /v1/ports?detail=True`;
//! only a complete poll replaces the API's contribution to the store. A failed or partial
//! poll changes nothing and is reported (log, `/metrics`, `/healthz`). Each good poll is
//! also written atomically to a cache file, so a restart while Ironic is down still boots
//! every known machine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::model::node::{Node, Port, StateDoc};
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
    /// Seconds between polls (default 10).
    pub interval_secs: Option<u64>,
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
        Duration::from_secs(self.interval_secs.unwrap_or(10).max(1))
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
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The slice of the fleet this client lists.
    pub fn subset(&self) -> &Subset {
        &self.subset
    }

    /// One complete poll: every page of nodes and of ports (of the configured subset).
    pub async fn poll(&self) -> Result<StateDoc, IronicError> {
        let mut nodes = Vec::new();
        for query in self.subset.node_queries() {
            nodes.extend(self.list("nodes", &query).await?.nodes);
        }
        let ports = self.list("ports", &self.subset.port_query()).await?;
        Ok(self.subset.select(StateDoc {
            nodes,
            ports: ports.ports,
        }))
    }

    /// Follows `next` links until the listing ends; any failed page fails the whole list.
    /// A filtered listing (`query`, `&k=v…`) pages by `marker` itself: Ironic's `next` link
    /// drops the filters.
    async fn list(&self, what: &str, query: &str) -> Result<StateDoc, IronicError> {
        let mut all = StateDoc::default();
        let first = format!("/v1/{what}?detail=True&limit={}{query}", self.limit);
        let mut path = first.clone();
        for _page in 0..=100_000 {
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

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<String>,
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

/// Polls forever, feeding the store; returns only when the store's owner goes away.
///
/// Only the requests run on the runtime. Taking a poll in — the cache file written and synced,
/// the snapshot of every node built — blocks for as long as the fleet is large, so it runs on
/// the blocking pool, not on a worker that also serves HTTP.
pub async fn run_poller(
    client: Arc<Client>,
    store: Arc<Store>,
    cache: PathBuf,
    interval: Duration,
    state: Arc<PollState>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let polled = client.poll().await;
        let (store, cache, state) = (store.clone(), cache.clone(), state.clone());
        let base = client.base_url().to_owned();
        let taken =
            tokio::task::spawn_blocking(move || take_poll(polled, &base, &store, &cache, &state))
                .await;
        if let Err(e) = taken {
            tracing::error!(error = %e, "taking in an Ironic poll failed");
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
