//! Ironic itself as a state source: a REST client (`client.rs`: noauth, HTTP basic, or
//! Keystone application credentials with token renewal) and a change-driven poller
//! (`poller.rs`) feeding the same store as the watched directory.
//!
//! Optionally, `notify.rs` consumes Ironic's notifications over AMQP, so the poller probes
//! rarely while they flow.
//!
//! This file holds what both share — the `[ironic]` settings, the credentials resolved from
//! them, the error type and the store's id for the API's document — and re-exports the rest,
//! so callers name everything as `source::ironic::X` whichever file it lives in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::state::source::subset::{Subset, SubsetConfig};
use crate::state::SourceId;

mod client;
mod notify;
mod poller;

pub use client::{
    node_fields, Client, Kind, Pages, Probe, SortKey, NODE_FIELDS, PLACEMENT_FIELDS, PORT_FIELDS,
};
pub use notify::{
    spawn as spawn_notifications, Amqp, NotificationsConfig, NotifyConfigError, NotifyShared,
    NotifyStatus,
};
pub use poller::{
    load_cache, load_cache_of, poll_once, run_poller, Notifications, PollState, PollStatus,
    Refresh, COALESCE,
};

/// `[ironic]` in the config.
#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IronicConfig {
    /// Ironic API base URL, e.g. `http://192.0.2.5:6385`. Unset: no API source.
    pub url: Option<String>,
    /// `X-OpenStack-Ironic-API-Version`; `latest` when unset.
    pub api_version: Option<String>,
    /// Seconds between change probes (default 2): three small sorted listings per round.
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
    /// `[ironic.notifications]`: Ironic's change notifications over AMQP (off unless `url`).
    pub notifications: NotificationsConfig,
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
            .field("notifications", &self.notifications)
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
            Some(f) => read_secret(f).map_err(|e| {
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

/// A secret kept in a file (`*_file` keys): its contents without the trailing line end an
/// editor or `echo` leaves.
pub(super) fn read_secret(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
}

/// The source id of the Ironic API's document: it ranks first, so a node Ironic reports wins
/// over a file's copy of it.
pub fn source_id() -> SourceId {
    SourceId::new(0, "ironic-api")
}

#[cfg(test)]
mod tests {
    use super::*;

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
