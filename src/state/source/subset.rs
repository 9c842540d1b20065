//! `[ironic.subset]`: serve one slice of the fleet, as operators split conductors — one
//! replica per site or rack row.
//!
//! Pure: typed filter values, the list queries and API microversion each filter needs, and
//! the client-side predicate. The poller (or any other query builder) asks [`Subset`] for
//! its query strings and passes every result through [`Subset::select`].
//!
//! What Ironic 39 offers (`api/controllers/v1/node.py`, `port.py`, `utils.py`):
//!
//! | filter | nodes | ports | microversion |
//! |---|---|---|---|
//! | `conductor_group` | `conductor_group=` one value, exact match on the lower-cased column | `conductor_groups=` a list (no microversion guards it) | 1.46 |
//! | `shard` | `shard=a,b` a list | `shard=a,b` a list | 1.82 |
//! | `owner` | `owner=` one value | — | 1.50 |
//! | `resource_class` | `resource_class=` one value | — | 1.21 |
//!
//! Single-valued filters with several values take one query per combination (the
//! combinations are disjoint). Ironic's `next` links drop all four filters, so filtered
//! listings page by `marker` themselves ([`Subset::next_page`]).
//!
//! The provisioning network is filtered here only: it saves Ironic nothing, every node of the
//! other filters is still listed and encoded.

use std::collections::HashSet;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::model::node::{Node, NodeUuid, StateDoc};

/// At most this many node queries per poll (the product of the single-valued filters).
pub const MAX_NODE_QUERIES: usize = 32;

/// Longest value accepted (Ironic's columns are 255 wide at most).
const MAX_VALUE_LEN: usize = 255;

/// `[ironic.subset]` as written. Every list empty (the default): the whole fleet.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SubsetConfig {
    /// Ironic conductor groups (case-insensitive, as in Ironic).
    pub conductor_groups: Vec<String>,
    /// Ironic shards (API >= 1.82).
    pub shards: Vec<String>,
    /// Node owners (project ids).
    pub owners: Vec<String>,
    /// Resource classes.
    pub resource_classes: Vec<String>,
    /// Provisioning networks (name or UUID, compared as written): a node's
    /// `driver_info.provisioning_network`, else `default_provisioning_network`.
    pub provisioning_networks: Vec<String>,
    /// Ironic's `[neutron] provisioning_network`, which nodes without their own use.
    pub default_provisioning_network: Option<String>,
}

/// A subset setting that cannot be used; names the key and says what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubsetError {
    #[error("ironic.subset.{key}: {value:?} {problem}")]
    BadValue {
        key: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error(
        "ironic.subset: {count} node queries per poll (the product of conductor_groups, owners \
         and resource_classes); at most {MAX_NODE_QUERIES}: use shards, or fewer values"
    )]
    TooManyQueries { count: usize },
    #[error(
        "ironic.subset.{key} needs Ironic API 1.{need}, but ironic.api_version is {configured:?}: \
         raise it or remove the filter"
    )]
    ApiVersion {
        key: &'static str,
        need: u32,
        configured: String,
    },
}

/// A validated filter value: non-empty text safe in a query string once percent-encoded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FilterValue(String);

impl FilterValue {
    /// Refuses empty or overlong values, control characters and query syntax (`&`, `#`, `=`,
    /// `?`), and `,` — Ironic splits list filters on it.
    fn parse(key: &'static str, raw: &str) -> Result<FilterValue, SubsetError> {
        let bad = |problem| SubsetError::BadValue {
            key,
            value: raw.chars().take(80).collect(),
            problem,
        };
        let v = raw.trim();
        if v.is_empty() {
            return Err(bad("is empty"));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(bad("is longer than 255 bytes"));
        }
        if v.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        if v.contains(['&', '#', '=', '?', ',']) {
            return Err(bad(
                "contains one of & # = ? , (query syntax or a list separator)",
            ));
        }
        Ok(FilterValue(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything but RFC 3986 unreserved characters is percent-encoded in a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(v: &FilterValue) -> String {
    utf8_percent_encode(v.as_str(), QUERY_VALUE).to_string()
}

fn enc_list(vs: &[FilterValue]) -> String {
    vs.iter().map(enc).collect::<Vec<_>>().join(",")
}

/// The slice of the fleet one ironpxe serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subset {
    conductor_groups: Vec<FilterValue>,
    shards: Vec<FilterValue>,
    owners: Vec<FilterValue>,
    resource_classes: Vec<FilterValue>,
    provisioning_networks: Vec<FilterValue>,
    default_provisioning_network: Option<FilterValue>,
}

fn values(key: &'static str, raw: &[String]) -> Result<Vec<FilterValue>, SubsetError> {
    let mut out: Vec<FilterValue> = Vec::new();
    for r in raw {
        let v = FilterValue::parse(key, r)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

impl Subset {
    pub fn from_config(c: &SubsetConfig) -> Result<Subset, SubsetError> {
        let lower = |vs: Vec<FilterValue>| {
            let mut out: Vec<FilterValue> = Vec::new();
            for v in vs {
                let l = FilterValue(v.0.to_lowercase());
                if !out.contains(&l) {
                    out.push(l);
                }
            }
            out
        };
        let s = Subset {
            // Ironic stores conductor groups lower-cased and its filter compares exactly.
            conductor_groups: lower(values("conductor_groups", &c.conductor_groups)?),
            shards: values("shards", &c.shards)?,
            owners: values("owners", &c.owners)?,
            resource_classes: values("resource_classes", &c.resource_classes)?,
            provisioning_networks: values("provisioning_networks", &c.provisioning_networks)?,
            default_provisioning_network: c
                .default_provisioning_network
                .as_deref()
                .map(|v| FilterValue::parse("default_provisioning_network", v))
                .transpose()?,
        };
        let count = s.node_query_count();
        if count > MAX_NODE_QUERIES {
            return Err(SubsetError::TooManyQueries { count });
        }
        Ok(s)
    }

    /// True when no filter is set: the whole fleet.
    pub fn is_everything(&self) -> bool {
        self.conductor_groups.is_empty()
            && self.shards.is_empty()
            && self.owners.is_empty()
            && self.resource_classes.is_empty()
            && self.provisioning_networks.is_empty()
    }

    fn node_query_count(&self) -> usize {
        [&self.conductor_groups, &self.owners, &self.resource_classes]
            .iter()
            .map(|v| v.len().max(1))
            .product()
    }

    /// The lowest API microversion (`1.N`) the server-side filters need, with the key that
    /// needs it; None when no server-side filter is set.
    pub fn min_microversion(&self) -> Option<(u32, &'static str)> {
        [
            (self.shards.is_empty(), 82, "shards"),
            (self.owners.is_empty(), 50, "owners"),
            (self.conductor_groups.is_empty(), 46, "conductor_groups"),
            (self.resource_classes.is_empty(), 21, "resource_classes"),
        ]
        .into_iter()
        .find(|(empty, _, _)| !empty)
        .map(|(_, v, k)| (v, k))
    }

    /// Checks `[ironic] api_version` (None or `latest`: fine) against the filters' needs.
    pub fn check_api_version(&self, configured: Option<&str>) -> Result<(), SubsetError> {
        let Some(configured) = configured.map(str::trim) else {
            return Ok(());
        };
        if configured.eq_ignore_ascii_case("latest") {
            return Ok(());
        }
        let Some((need, key)) = self.min_microversion() else {
            return Ok(());
        };
        let minor = configured
            .strip_prefix("1.")
            .and_then(|m| m.parse::<u32>().ok());
        match minor {
            Some(m) if m >= need => Ok(()),
            _ => Err(SubsetError::ApiVersion {
                key,
                need,
                configured: configured.to_owned(),
            }),
        }
    }

    /// Query parameters (`&k=v…`, to append after `detail=True&limit=N`) of each node
    /// listing a poll makes: one per combination of the single-valued filters, the shard list
    /// in each. `[""]` for the whole fleet.
    pub fn node_queries(&self) -> Vec<String> {
        let mut queries = vec![String::new()];
        for (key, vs) in [
            ("conductor_group", &self.conductor_groups),
            ("owner", &self.owners),
            ("resource_class", &self.resource_classes),
        ] {
            if vs.is_empty() {
                continue;
            }
            queries = queries
                .iter()
                .flat_map(|q| vs.iter().map(move |v| format!("{q}&{key}={}", enc(v))))
                .collect();
        }
        if !self.shards.is_empty() {
            for q in &mut queries {
                q.push_str(&format!("&shard={}", enc_list(&self.shards)));
            }
        }
        queries
    }

    /// Query parameters of the one port listing: by shard where set (API >= 1.82), else by
    /// conductor group; else every port. Ironic filters ports by nothing else without one
    /// request per node (`ports?node=`), far more requests at scale than one listing,
    /// so owner and resource class ports are listed in full and cut client-side by
    /// [`Subset::select`].
    pub fn port_query(&self) -> String {
        if !self.shards.is_empty() {
            format!("&shard={}", enc_list(&self.shards))
        } else if !self.conductor_groups.is_empty() {
            format!("&conductor_groups={}", enc_list(&self.conductor_groups))
        } else {
            String::new()
        }
    }

    /// The path of the page after one that ended with `last` (a UUID, typed so the marker is
    /// safe): Ironic's own `next` link drops the filters. `first` is the first page's path.
    pub fn next_page(first: &str, last: &str) -> String {
        format!("{first}&marker={last}")
    }

    /// Whether this replica serves `node`: every set filter matches (client-side, also a
    /// guard should Ironic ignore a filter).
    /// Whether the subset filters on `shard`, which no node notification carries.
    pub fn reads_shard(&self) -> bool {
        !self.shards.is_empty()
    }

    pub fn selects(&self, node: &Node) -> bool {
        let is = |vs: &[FilterValue], field: &Option<String>| {
            vs.is_empty()
                || field
                    .as_deref()
                    .is_some_and(|f| vs.iter().any(|v| v.0 == f))
        };
        let group = node.conductor_group.as_deref().map(str::to_lowercase);
        let network = node.driver_info.provisioning_network.clone().or_else(|| {
            self.default_provisioning_network
                .as_ref()
                .map(|v| v.0.clone())
        });
        is(&self.conductor_groups, &group)
            && is(&self.shards, &node.shard)
            && is(&self.owners, &node.owner)
            && is(&self.resource_classes, &node.resource_class)
            && is(&self.provisioning_networks, &network)
    }

    /// Keeps the selected nodes (the first of any UUID listed twice — a node that moved
    /// between two of the poll's queries) and only their ports.
    pub fn select(&self, doc: StateDoc) -> StateDoc {
        if self.is_everything() {
            return doc;
        }
        let mut seen: HashSet<NodeUuid> = HashSet::new();
        let nodes: Vec<_> = doc
            .nodes
            .into_iter()
            .filter(|n| self.selects(n) && seen.insert(n.uuid))
            .collect();
        let ports = doc
            .ports
            .into_iter()
            .filter(|p| p.node_uuid.is_some_and(|u| seen.contains(&u)))
            .collect();
        StateDoc { nodes, ports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subset(toml_text: &str) -> Result<Subset, SubsetError> {
        let c: SubsetConfig = toml::from_str(toml_text).expect("toml");
        Subset::from_config(&c)
    }

    fn doc(json: serde_json::Value) -> StateDoc {
        StateDoc::from_slice(json.to_string().as_bytes()).expect("doc")
    }

    #[test]
    fn no_filter_is_the_whole_fleet_with_todays_queries() {
        let s = subset("").expect("empty");
        assert!(s.is_everything());
        assert_eq!(s.node_queries(), vec![String::new()]);
        assert_eq!(s.port_query(), "");
        assert_eq!(s.min_microversion(), None);
        assert_eq!(s.check_api_version(Some("1.1")), Ok(()));
    }

    #[test]
    fn single_valued_filters_multiply_and_shards_go_in_every_query() {
        let s = subset(
            r#"conductor_groups = ["Row-A", "row-b", "ROW-A"]
               owners = ["p1"]
               shards = ["s 1", "s2"]"#,
        )
        .expect("valid");
        assert_eq!(
            s.node_queries(),
            vec![
                "&conductor_group=row-a&owner=p1&shard=s%201,s2",
                "&conductor_group=row-b&owner=p1&shard=s%201,s2",
            ],
            "conductor groups lower-cased and deduplicated, values percent-encoded"
        );
        assert_eq!(s.port_query(), "&shard=s%201,s2", "shards win for ports");
        assert_eq!(s.min_microversion(), Some((82, "shards")));
    }

    #[test]
    fn ports_by_conductor_group_when_no_shard_else_all() {
        let s = subset(r#"conductor_groups = ["a", "b"]"#).expect("valid");
        assert_eq!(s.port_query(), "&conductor_groups=a,b");
        assert_eq!(s.min_microversion(), Some((46, "conductor_groups")));
        let s = subset(r#"resource_classes = ["gpu"]"#).expect("valid");
        assert_eq!(s.node_queries(), vec!["&resource_class=gpu"]);
        assert_eq!(s.port_query(), "", "no server-side port filter: all ports");
        assert_eq!(s.min_microversion(), Some((21, "resource_classes")));
    }

    #[test]
    fn hostile_values_are_refused_naming_the_key() {
        for (text, key) in [
            (r#"shards = ["a&b"]"#, "shards"),
            (r#"owners = ["x#y"]"#, "owners"),
            (r#"conductor_groups = ["a,b"]"#, "conductor_groups"),
            (r#"resource_classes = ["a\nb"]"#, "resource_classes"),
            (r#"resource_classes = ["a=b"]"#, "resource_classes"),
            (r#"provisioning_networks = ["  "]"#, "provisioning_networks"),
            (
                r#"default_provisioning_network = "n?x""#,
                "default_provisioning_network",
            ),
        ] {
            let err = subset(text).expect_err(text).to_string();
            assert!(
                err.contains(&format!("ironic.subset.{key}")),
                "{text}: {err}"
            );
        }
        let long = format!(r#"owners = ["{}"]"#, "o".repeat(256));
        assert!(subset(&long).is_err());
        let unknown: Result<SubsetConfig, _> = toml::from_str("shard = [\"a\"]");
        assert!(unknown.is_err(), "a typo is an error, not a silent no-op");
    }

    #[test]
    fn too_many_combinations_are_refused() {
        let many: Vec<String> = (0..6).map(|i| format!("\"v{i}\"")).collect();
        let text = format!("conductor_groups = [{0}]\nowners = [{0}]", many.join(","));
        assert_eq!(
            subset(&text),
            Err(SubsetError::TooManyQueries { count: 36 })
        );
    }

    #[test]
    fn api_version_must_allow_the_filters() {
        let s = subset(r#"shards = ["s"]"#).expect("valid");
        assert_eq!(s.check_api_version(None), Ok(()));
        assert_eq!(s.check_api_version(Some("latest")), Ok(()));
        assert_eq!(s.check_api_version(Some("1.82")), Ok(()));
        let err = s.check_api_version(Some("1.81")).expect_err("too old");
        assert!(err.to_string().contains("needs Ironic API 1.82"), "{err}");
        assert!(
            s.check_api_version(Some("2")).is_err(),
            "unreadable: refused"
        );
        let s = subset(r#"owners = ["o"]"#).expect("valid");
        assert_eq!(s.check_api_version(Some("1.50")), Ok(()));
        assert!(s.check_api_version(Some("1.49")).is_err());
    }

    #[test]
    fn filtered_pages_carry_the_filter_and_a_marker() {
        let first = "/v1/nodes?detail=True&limit=2&conductor_group=a";
        assert_eq!(
            Subset::next_page(first, "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"),
            "/v1/nodes?detail=True&limit=2&conductor_group=a&marker=1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
        );
    }

    #[test]
    fn select_keeps_matching_nodes_and_only_their_ports() {
        let d = || {
            doc(serde_json::json!({"nodes": [
                {"uuid": "00000000-0000-4000-8000-000000000001", "conductor_group": "row-a",
                 "owner": "p1", "driver_info": {"provisioning_network": "prov-a"}},
                {"uuid": "00000000-0000-4000-8000-000000000002", "conductor_group": "row-b", "owner": "p1"},
                {"uuid": "00000000-0000-4000-8000-000000000003", "conductor_group": "ROW-A", "owner": "p2"},
                {"uuid": "00000000-0000-4000-8000-000000000004", "conductor_group": "row-a", "owner": "p1"},
                {"uuid": "00000000-0000-4000-8000-000000000001", "conductor_group": "row-a", "owner": "p1"},
                {"uuid": "00000000-0000-4000-8000-000000000005", "conductor_group": 7, "owner": "p1"}
            ], "ports": [
                {"address": "52:54:00:00:00:01", "node_uuid": "00000000-0000-4000-8000-000000000001"},
                {"address": "52:54:00:00:00:02", "node_uuid": "00000000-0000-4000-8000-000000000002"},
                {"address": "52:54:00:00:00:04", "node_uuid": "00000000-0000-4000-8000-000000000004"}
            ]}))
        };
        let s = subset(
            r#"conductor_groups = ["Row-A"]
                          owners = ["p1"]"#,
        )
        .expect("valid");
        let got = s.select(d());
        let uuids: Vec<String> = got.nodes.iter().map(|n| n.uuid.to_string()).collect();
        assert_eq!(
            uuids,
            vec![
                "00000000-0000-4000-8000-000000000001",
                "00000000-0000-4000-8000-000000000004"
            ],
            "node 3 has another owner, 2 another group, 5 a non-text group; the duplicate goes"
        );
        assert_eq!(got.ports.len(), 2);
        assert!(got
            .ports
            .iter()
            .all(|p| p.address.to_string() != "52:54:00:00:00:02"));

        // The provisioning network: the node's own, else the default.
        let s = subset(r#"provisioning_networks = ["prov-a"]"#).expect("valid");
        assert_eq!(s.select(d()).nodes.len(), 1);
        let s = subset(
            r#"provisioning_networks = ["prov-a"]
               default_provisioning_network = "prov-a""#,
        )
        .expect("valid");
        assert_eq!(s.select(d()).nodes.len(), 5, "all but the duplicate");
        assert_eq!(subset("").expect("empty").select(d()), d());
    }
}
