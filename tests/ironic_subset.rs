//! `[ironic.subset]` against a REAL Ironic 39 (tests/common/ironic.rs): nodes enrolled in two
//! conductor groups, two shards, two owners, two resource classes and two provisioning
//! networks; ironpxe started with one value of each serves exactly the nodes in all five,
//! pages filtered listings correctly (one node per page: Ironic's own `next` links drop the
//! filters), picks up a node that moves into its slice, and loads only its slice from the
//! cache.

mod common;

use common::ironic::Ironic;
use common::*;
use ironpxe::state::source::ironic::load_cache_of;
use ironpxe::state::source::subset::{Subset, SubsetConfig};
use ironpxe::state::{IndexConfig, Store};
use serde_json::{json, Value};

/// One enrolled node: name, where it sits, its port, and whether the replica must serve it.
struct Placed {
    name: &'static str,
    group: &'static str,
    shard: &'static str,
    owner: &'static str,
    class: &'static str,
    network: &'static str,
    mac: &'static str,
    served: bool,
}

const NODES: [Placed; 7] = [
    Placed {
        name: "in-1",
        group: "row-a",
        shard: "s1",
        owner: "p1",
        class: "rc-a",
        network: "prov-a",
        mac: "52:54:00:5b:00:01",
        served: true,
    },
    Placed {
        name: "in-2",
        group: "row-a",
        shard: "s1",
        owner: "p1",
        class: "rc-a",
        network: "prov-a",
        mac: "52:54:00:5b:00:02",
        served: true,
    },
    Placed {
        name: "other-group",
        group: "row-b",
        shard: "s1",
        owner: "p1",
        class: "rc-a",
        network: "prov-a",
        mac: "52:54:00:5b:00:03",
        served: false,
    },
    Placed {
        name: "other-shard",
        group: "row-a",
        shard: "s2",
        owner: "p1",
        class: "rc-a",
        network: "prov-a",
        mac: "52:54:00:5b:00:04",
        served: false,
    },
    Placed {
        name: "other-owner",
        group: "row-a",
        shard: "s1",
        owner: "p2",
        class: "rc-a",
        network: "prov-a",
        mac: "52:54:00:5b:00:05",
        served: false,
    },
    Placed {
        name: "other-class",
        group: "row-a",
        shard: "s1",
        owner: "p1",
        class: "rc-b",
        network: "prov-a",
        mac: "52:54:00:5b:00:06",
        served: false,
    },
    Placed {
        name: "other-network",
        group: "row-a",
        shard: "s1",
        owner: "p1",
        class: "rc-a",
        network: "prov-b",
        mac: "52:54:00:5b:00:07",
        served: false,
    },
];

/// What ironpxe answers an iPXE client asking by `mac`: the script's `# ironpxe:` line,
/// which names the node, or for a machine it does not know `unknown: <body>` (HTTP 404,
/// `no node matches`: the firmware goes on to its next boot option).
fn served_as(px: &Ironpxe, mac: &str) -> String {
    let (code, body) = px.get(&format!("/ipxe/{mac}"));
    match code {
        200 => body
            .lines()
            .find(|l| l.starts_with("# ironpxe:"))
            .unwrap_or_else(|| panic!("no '# ironpxe:' line for {mac}:\n{body}"))
            .to_owned(),
        404 => format!("unknown: {body}"),
        _ => panic!("GET /ipxe/{mac}: HTTP {code}: {body}"),
    }
}

/// ironpxe polling `ironic` every second with `more` appended to its `[ironic]` section
/// (`[ironic.subset]` unless `more` starts one), after its first complete poll.
fn start(ironic: &Ironic, more: &str) -> Ironpxe {
    let api = ironic.url();
    let more = if more.contains("[ironic.subset]") {
        more.to_owned()
    } else {
        format!("[ironic.subset]\n{more}")
    };
    let px = Ironpxe::start_with(Options {
        toml: format!(
            "[boot]\nipa_api_url = \"{api}\"\n[ironic]\nurl = \"{api}\"\ninterval_secs = 1\n\
             reconcile_secs = 2\n{more}"
        ),
        state: Vec::new(),
        ..Options::default()
    });
    px.wait_until("the first complete Ironic poll", || {
        healthz(&px)["ironic"]["polls_ok"].as_u64().unwrap_or(0) >= 1
    });
    px
}

/// Ironic's API request lines (`… - GET /v1/… - 200 (…ms)`), complete lines only: the
/// replicas keep polling while the test reads.
fn api_log(ironic: &Ironic) -> String {
    let mut all = String::new();
    for name in ["ironic.log", "ironic.out"] {
        all += &std::fs::read_to_string(ironic.dir().join(name)).unwrap_or_default();
    }
    all.lines()
        .filter(|l| l.contains(" - GET /v1/") && l.trim_end().ends_with("ms)"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn healthz(px: &Ironpxe) -> Value {
    let (code, body) = px.get("/healthz");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("healthz JSON")
}

#[test]
fn a_replica_serves_only_its_conductor_group_shard_owner_class_and_network() {
    let ironic = Ironic::start();
    let mut uuids = Vec::new();
    for n in &NODES {
        let mut info = ironic.driver_info();
        info["provisioning_network"] = json!(n.network);
        let uuid = ironic.create_node(
            n.name,
            json!({"shard": n.shard, "resource_class": n.class, "driver_info": info}),
        );
        ironic.create_port(&uuid, n.mac, None);
        // The API refuses a conductor group no running conductor serves (NoValidHost; this
        // Ironic runs one conductor) and, under noauth, any owner: set both in Ironic's own
        // database.
        ironic.sql(
            "UPDATE nodes SET conductor_group = ?, owner = ? WHERE uuid = ?",
            &[n.group, n.owner, &uuid],
        );
        uuids.push(uuid);
    }
    let listed = ironic.api("GET", "/v1/nodes?conductor_group=row-b", None);
    assert_eq!(
        listed["nodes"].as_array().map(Vec::len),
        Some(1),
        "Ironic itself filters by the group written to its database: {listed}"
    );

    let px = start(
        &ironic,
        "page_limit = 1\n[ironic.subset]\nconductor_groups = [\"ROW-A\"]\nshards = [\"s1\"]\n\
         owners = [\"p1\"]\nresource_classes = [\"rc-a\"]\n\
         provisioning_networks = [\"prov-a\"]\n",
    );

    let h = healthz(&px);
    assert_eq!(h["nodes"], json!(2), "only in-1 and in-2: {h}");
    assert_eq!(h["ports"], json!(2), "only their ports: {h}");
    for (n, uuid) in NODES.iter().zip(&uuids) {
        let line = served_as(&px, n.mac);
        if n.served {
            assert!(
                line.contains(&format!("node {} {uuid}", n.name)),
                "{} must be served: {line}",
                n.name
            );
        } else {
            assert!(
                line.starts_with("unknown:") && line.contains("no node matches"),
                "{} is outside the subset, so an unknown machine: {line}",
                n.name
            );
        }
    }

    // Ironic did the filtering: every listing ironpxe asked for carried the filters, pages
    // after the first too (by marker), and ports were listed by shard.
    let log = api_log(&ironic);
    let listings: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(" - GET /v1/").map(|(_, r)| r))
        .filter(|r| {
            (r.starts_with("nodes?") || r.starts_with("ports?"))
                && (r.contains("detail=True") || r.contains("fields="))
        })
        .collect();
    // The one unfiltered listing: the change probe that sees nodes leave the subset.
    let (leave_probes, listings): (Vec<&str>, Vec<&str>) = listings.into_iter().partition(|r| {
        r.starts_with("nodes?") && r.contains("sort_key=updated_at") && !r.contains("owner=")
    });
    assert!(
        !leave_probes.is_empty(),
        "a subset replica probes for nodes leaving it"
    );
    let nodes: Vec<&&str> = listings.iter().filter(|r| r.starts_with("nodes")).collect();
    assert!(
        nodes.iter().any(|r| r.contains("marker=")),
        "one node per page, so later pages: {listings:#?}"
    );
    for r in &nodes {
        assert!(
            r.contains("conductor_group=row-a")
                && r.contains("owner=p1")
                && r.contains("resource_class=rc-a")
                && r.contains("shard=s1"),
            "a node listing without the filters: {r}"
        );
    }
    let ports: Vec<&&str> = listings.iter().filter(|r| r.starts_with("ports")).collect();
    assert!(
        !ports.is_empty() && ports.iter().all(|r| r.contains("shard=s1")),
        "ports listed by shard: {ports:#?}"
    );

    // A second replica for the other row, by conductor group alone: its ports come by
    // `conductor_groups=` (Ironic 39 takes it with no microversion guard).
    let px2 = start(&ironic, "conductor_groups = [\"Row-B\"]\n");
    let h = healthz(&px2);
    assert_eq!((&h["nodes"], &h["ports"]), (&json!(1), &json!(1)), "{h}");
    assert!(served_as(&px2, NODES[2].mac).contains(&format!("node other-group {}", uuids[2])));
    assert!(served_as(&px2, NODES[0].mac).starts_with("unknown:"));
    let log = api_log(&ironic);
    assert!(
        log.lines()
            .any(|l| l.contains("GET /v1/ports?") && l.contains("conductor_groups=row-b")),
        "the second replica lists ports by conductor group"
    );

    // A node moving between rows (its conductor group changed) moves between the replicas.
    // The change is made in the database, which leaves `updated_at` alone (the API bumps
    // it): the change probes cannot see it, the reconciliation (`reconcile_secs = 2`) does.
    ironic.sql(
        "UPDATE nodes SET conductor_group = 'row-a' WHERE uuid = ?",
        &[&uuids[2]],
    );
    px.wait_until("other-group to join row-a's replica", || {
        served_as(&px, NODES[2].mac).contains(&format!("node other-group {}", uuids[2]))
    });
    px2.wait_until("other-group to leave row-b's replica", || {
        served_as(&px2, NODES[2].mac).starts_with("unknown:")
    });
    assert_eq!(healthz(&px)["nodes"], json!(3));
    assert_eq!(healthz(&px2)["nodes"], json!(0));

    // The cache keeps where each node sits: a replica restarted with another subset while
    // Ironic is down loads only that subset's nodes from it.
    let cache = px.state.path().join(".ironic-cache.json");
    let loaded = |subset: &str| {
        let cfg: SubsetConfig = toml::from_str(subset).expect("subset toml");
        let store = Store::new(IndexConfig::default());
        load_cache_of(&store, &cache, &Subset::from_config(&cfg).expect("subset"));
        let s = store.current();
        (s.nodes().len(), s.ports().len())
    };
    assert_eq!(loaded(""), (3, 3), "row-a's replica cached its three nodes");
    assert_eq!(loaded("owners = [\"p1\"]\nshards = [\"s1\"]"), (3, 3));
    assert_eq!(loaded("conductor_groups = [\"row-b\"]"), (0, 0));
    assert_eq!(loaded("resource_classes = [\"rc-b\"]"), (0, 0));

    for p in [&px, &px2] {
        assert!(
            !p.log().contains("Ironic poll failed"),
            "every poll succeeded:\n{}",
            p.log()
        );
    }
}
