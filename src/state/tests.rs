use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::source::dir::DirSource;
use super::*;
use crate::model::addr::{AnyAddr, Guid, IbHwAddr, Mac, PxelinuxName, SystemUuid};
use crate::model::node::{Node, Port};
use crate::support::watch::Debounce;

const IB_NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const ETH_NODE: &str = "2be26c0b-03f2-4d2e-ae87-c02d7f33c123";

fn ib_node_json(state: &str) -> String {
    format!(
        r#"{{"uuid": "{IB_NODE}", "name": "ib-1", "provision_state": "{state}",
            "extra": {{"system_uuid": "4c4c4544-0051-3510-8051-b2c04f4e4d32"}},
            "ports": [{{"address": "7c:fe:90:29:26:52",
                        "extra": {{"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52",
                                   "fixed_ip": "192.168.10.5"}}}},
                      {{"address": "52:54:00:aa:bb:01"}}]}}"#
    )
}

fn eth_node_json(mac: &str) -> String {
    format!(
        r#"{{"uuid": "{ETH_NODE}", "provision_state": "active", "ports": [{{"address": "{mac}"}}]}}"#
    )
}

fn doc(json: &str) -> StateDoc {
    StateDoc::from_slice(json.as_bytes()).expect("test json parses")
}

fn file(name: &str) -> SourceId {
    crate::state::source::dir::source_id(name)
}

fn store_with(docs: &[(&str, &str)]) -> Store {
    let store = Store::new(IndexConfig::default());
    store.apply(
        docs.iter()
            .map(|(n, j)| (file(n), Update::Replace(doc(j))))
            .collect(),
    );
    store
}

fn uuid_of(m: Option<Match<'_>>) -> Option<String> {
    m.map(|m| m.node.node.uuid.to_string())
}

#[test]
fn every_spelling_of_an_infiniband_port_finds_its_node() {
    let store = store_with(&[("a.json", &ib_node_json("deploying"))]);
    let s = store.current();
    for spelling in [
        "7c:fe:90:29:26:52",
        "7C-FE-90-29-26-52",
        "7cfe.9029.2652",
        "7cfe90292652",
        "7c:fe:90:03:00:29:26:52",
        "7CFE900300292652",
        "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52",
        "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
    ] {
        let addr = AnyAddr::parse(spelling).expect(spelling);
        assert_eq!(
            uuid_of(s.by_addr(&addr)).as_deref(),
            Some(IB_NODE),
            "{spelling}"
        );
    }
    for name in [
        "20-7c-fe-90-29-26-52",
        "01-7c-fe-90-29-26-52",
        "20-7c-fe-90-03-00-29-26-52",
        "4c4c4544-0051-3510-8051-b2c04f4e4d32",
        "4445 4c4c-5100-1035-8051-b2c04f4e4d32",
        "C0A80A05",
    ] {
        let Ok(parsed) = PxelinuxName::parse(&name.replace(' ', "")) else {
            panic!("{name} parses");
        };
        assert_eq!(
            uuid_of(s.by_pxelinux_name(&parsed)).as_deref(),
            Some(IB_NODE),
            "{name}"
        );
    }
    for miss in ["C0A80A0", "C0A80A06", "default", "20-52-54-00-aa-bb-01"] {
        let parsed = PxelinuxName::parse(miss).expect(miss);
        assert!(
            s.by_pxelinux_name(&parsed).is_none(),
            "{miss} must not match"
        );
    }
    let m = s
        .by_ib(&IbHwAddr::Mac(
            Mac::parse("7c:fe:90:29:26:52").expect("mac"),
        ))
        .expect("ib port");
    assert_eq!(m.via, Via::IbMac);
    assert!(m.port.expect("port").is_infiniband());
    let eth = s
        .by_mac(&Mac::parse("52:54:00:aa:bb:01").expect("mac"))
        .expect("eth port");
    assert_eq!(eth.via, Via::EthernetMac);
    assert!(!eth.port.expect("port").is_infiniband());
}

#[test]
fn system_uuid_matches_only_the_configured_field_in_both_byte_orders() {
    let store = store_with(&[("a.json", &ib_node_json("deploying"))]);
    let s = store.current();
    let u = SystemUuid::parse("4c4c4544-0051-3510-8051-b2c04f4e4d32").expect("uuid");
    assert_eq!(s.by_system_uuid(&u).map(|m| m.via), Some(Via::SystemUuid));
    assert_eq!(
        s.by_system_uuid(&u.swapped()).map(|m| m.via),
        Some(Via::SystemUuidSwapped)
    );
    let node_uuid = SystemUuid::parse(IB_NODE).expect("uuid");
    assert!(
        s.by_system_uuid(&node_uuid).is_none(),
        "never the Ironic node UUID"
    );
}

#[test]
fn duplicate_addresses_resolve_to_the_lower_node_uuid_and_warn() {
    let store = store_with(&[
        ("b.json", &eth_node_json("52:54:00:aa:bb:01")),
        ("a.json", &ib_node_json("deploying")),
    ]);
    let s = store.current();
    let m = s.by_mac(&Mac::parse("52:54:00:aa:bb:01").expect("mac"));
    assert_eq!(uuid_of(m).as_deref(), Some(IB_NODE));
    let w = s.warnings.join("\n");
    assert!(w.contains(IB_NODE) && w.contains(ETH_NODE), "{w}");
}

#[test]
fn ethernet_and_ib_mac_collision_prefers_the_hardware_type_asked() {
    let store = store_with(&[
        ("a.json", &ib_node_json("deploying")),
        ("b.json", &eth_node_json("7c:fe:90:29:26:52")),
    ]);
    let s = store.current();
    let mac = Mac::parse("7c:fe:90:29:26:52").expect("mac");
    assert_eq!(uuid_of(s.by_mac(&mac)).as_deref(), Some(ETH_NODE));
    assert_eq!(
        uuid_of(s.by_ib(&IbHwAddr::Mac(mac))).as_deref(),
        Some(IB_NODE)
    );
}

#[test]
fn a_node_in_two_sources_keeps_the_first_and_warns() {
    let store = Store::new(IndexConfig::default());
    store.apply(vec![
        (
            file("b.json"),
            Update::Replace(doc(&ib_node_json("active"))),
        ),
        (
            crate::state::source::ironic::source_id(),
            Update::Replace(doc(&ib_node_json("deploying"))),
        ),
    ]);
    let s = store.current();
    assert_eq!(s.nodes().len(), 1);
    assert_eq!(s.nodes()[0].node.provision_state.as_str(), "deploying");
    assert!(
        s.warnings.iter().any(|w| w.contains("ironic-api")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn generations_revisions_and_changes() {
    let store = store_with(&[
        ("a.json", &ib_node_json("deploying")),
        ("b.json", &eth_node_json("52:54:00:00:00:09")),
    ]);
    let g1 = store.current();
    assert_eq!(g1.generation, 1);
    assert_eq!(g1.changes.added.len(), 2);

    // Same content again: nothing published.
    let same = store.apply(vec![(
        file("a.json"),
        Update::Replace(doc(&ib_node_json("deploying"))),
    )]);
    assert_eq!(same.generation, 1);

    let g2 = store.apply(vec![(
        file("a.json"),
        Update::Replace(doc(&ib_node_json("active"))),
    )]);
    assert_eq!(g2.generation, 2);
    let ib = NodeUuid::parse(IB_NODE).expect("uuid");
    let eth = NodeUuid::parse(ETH_NODE).expect("uuid");
    assert_eq!(g2.changes.modified, [ib].into());
    assert!(g2.changes.added.is_empty() && g2.changes.removed.is_empty());
    assert_eq!(g2.node(&ib).expect("ib").revision, 2);
    assert_eq!(
        g2.node(&eth).expect("eth").revision,
        1,
        "untouched node keeps its revision"
    );
    assert!(Arc::ptr_eq(
        &g1.node(&eth).expect("eth").node,
        &g2.node(&eth).expect("eth").node
    ));

    let g3 = store.apply(vec![(file("b.json"), Update::Remove)]);
    assert_eq!(g3.changes.removed, [eth].into());
    assert!(g3.node(&eth).is_none());
}

#[test]
fn a_failed_source_keeps_its_last_good_contents() {
    let store = store_with(&[("a.json", &ib_node_json("deploying"))]);
    let err = SourceError {
        source: "a.json".into(),
        message: "EOF while parsing".into(),
        line: 3,
        column: 7,
    };
    let s = store.apply(vec![(file("a.json"), Update::Failed(err.clone()))]);
    assert_eq!(s.nodes().len(), 1, "last good contents still served");
    assert_eq!(s.errors, vec![err]);
    assert_eq!(s.errors[0].to_string(), "a.json:3:7: EOF while parsing");
    let fixed = store.apply(vec![(
        file("a.json"),
        Update::Replace(doc(&ib_node_json("active"))),
    )]);
    assert!(fixed.errors.is_empty());
}

#[test]
fn ports_join_nodes_across_files_and_orphans_are_reported() {
    let nodes =
        format!(r#"{{"nodes": [{{"uuid": "{ETH_NODE}", "provision_state": "deploying"}}]}}"#);
    let ports = format!(
        r#"{{"ports": [{{"address": "52:54:00:00:00:01", "node_uuid": "{ETH_NODE}"}},
                      {{"address": "52:54:00:00:00:02", "node_uuid": "{IB_NODE}"}},
                      {{"address": "52:54:00:00:00:03", "node_uuid": "{ETH_NODE}", "pxe_enabled": false}}]}}"#
    );
    let store = store_with(&[("nodes.json", &nodes), ("ports.json", &ports)]);
    let s = store.current();
    let mac = |m: &str| Mac::parse(m).expect("mac");
    assert_eq!(
        uuid_of(s.by_mac(&mac("52:54:00:00:00:01"))).as_deref(),
        Some(ETH_NODE)
    );
    assert!(s.by_mac(&mac("52:54:00:00:00:02")).is_none());
    assert!(
        s.by_mac(&mac("52:54:00:00:00:03")).is_none(),
        "pxe_enabled false does not boot"
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("which no source defines")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn inconsistent_infiniband_port_is_indexed_and_reported() {
    let json = format!(
        r#"{{"uuid": "{IB_NODE}", "ports": [{{"address": "7c:fe:90:03:00:29",
             "extra": {{"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"}}}},
             {{"address": "0c:42:a1:12:34:56", "extra": {{"client-id": "garbage"}}}}]}}"#
    );
    let store = store_with(&[("a.json", &json)]);
    let s = store.current();
    let guid = Guid::parse("7c:fe:90:03:00:29:26:52").expect("guid");
    assert_eq!(uuid_of(s.by_guid(&guid)).as_deref(), Some(IB_NODE));
    let w = s.warnings.join("\n");
    assert!(w.contains("expected 7c:fe:90:29:26:52"), "{w}");
    assert!(w.contains("client-id"), "{w}");
}

// ---- the watched directory, with real files and bounded waits ----

fn wait_for(store: &Store, what: &str, cond: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.current();
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_atomic(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, body).expect("write tmp");
    fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn state_of(s: &Snapshot) -> Option<String> {
    let ib = NodeUuid::parse(IB_NODE).ok()?;
    s.node(&ib)
        .map(|n| n.node.provision_state.as_str().to_owned())
}

#[test]
fn watched_directory_follows_create_modify_rename_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::new(IndexConfig::default()));
    let _w = DirSource::new(dir.path())
        .watch(store.clone(), Debounce::default())
        .expect("watch");
    assert!(store.current().nodes().is_empty());

    fs::write(dir.path().join("ib.json"), ib_node_json("deploying")).expect("write");
    wait_for(&store, "created file loaded", |s| {
        state_of(s).as_deref() == Some("deploying")
    });

    write_atomic(dir.path(), "ib.json", &ib_node_json("clean wait"));
    wait_for(&store, "atomic rename seen", |s| {
        state_of(s).as_deref() == Some("clean wait")
    });

    fs::write(dir.path().join("ib.json"), ib_node_json("active")).expect("rewrite in place");
    wait_for(&store, "in-place write seen", |s| {
        state_of(s).as_deref() == Some("active")
    });

    // Broken JSON: last good kept, error names file, line and column.
    fs::write(
        dir.path().join("ib.json"),
        "{\n  \"uuid\": \"x\",\n  oops\n}",
    )
    .expect("write");
    let s = wait_for(&store, "parse error reported", |s| !s.errors.is_empty());
    assert_eq!(state_of(&s).as_deref(), Some("active"));
    let e = &s.errors[0];
    assert!(
        e.source.ends_with("ib.json") && e.line == 3 && e.column > 0,
        "{e}"
    );

    write_atomic(dir.path(), "ib.json", &ib_node_json("rescue wait"));
    wait_for(&store, "fixed file clears the error", |s| {
        s.errors.is_empty() && state_of(s).as_deref() == Some("rescue wait")
    });

    // Editor temp files and dotfiles are ignored.
    fs::write(dir.path().join(".ib.json.swp"), "garbage").expect("write");
    fs::write(dir.path().join("ib.json~"), "garbage").expect("write");
    fs::write(dir.path().join("notes.txt"), "garbage").expect("write");
    std::thread::sleep(Duration::from_millis(100));
    assert!(store.current().errors.is_empty());

    fs::remove_file(dir.path().join("ib.json")).expect("remove");
    wait_for(&store, "deleted file removes its nodes", |s| {
        s.nodes().is_empty()
    });
}

#[test]
fn symlink_swap_like_a_configmap_is_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::create_dir(d.join("..v1")).expect("mkdir");
    fs::write(d.join("..v1/ib.json"), ib_node_json("deploying")).expect("write");
    std::os::unix::fs::symlink("..v1", d.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/ib.json", d.join("ib.json")).expect("symlink");
    let store = Arc::new(Store::new(IndexConfig::default()));
    let _w = DirSource::new(d)
        .watch(store.clone(), Debounce::default())
        .expect("watch");
    assert_eq!(state_of(&store.current()).as_deref(), Some("deploying"));

    fs::create_dir(d.join("..v2")).expect("mkdir");
    fs::write(d.join("..v2/ib.json"), ib_node_json("active")).expect("write");
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).expect("symlink");
    fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
    wait_for(&store, "ConfigMap swap seen", |s| {
        state_of(s).as_deref() == Some("active")
    });
}

#[test]
fn a_vanished_directory_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    fs::create_dir(&state).expect("mkdir");
    fs::write(state.join("ib.json"), ib_node_json("deploying")).expect("write");
    let mut src = DirSource::new(&state);
    let store = Store::new(IndexConfig::default());
    store.apply(src.scan(&HashSet::new()));
    fs::remove_dir_all(&state).expect("rm");
    let s = store.apply(src.scan(&HashSet::new()));
    assert_eq!(s.nodes().len(), 1, "nodes survive a vanished directory");
    assert!(
        s.errors[0].message.contains("state directory"),
        "{:?}",
        s.errors
    );
    fs::create_dir(&state).expect("mkdir");
    fs::write(state.join("ib.json"), ib_node_json("active")).expect("write");
    let s = store.apply(src.scan(&HashSet::new()));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(state_of(&s).as_deref(), Some("active"));
}

#[test]
fn a_directory_named_like_a_state_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("odd.json")).expect("mkdir");
    let store = Store::new(IndexConfig::default());
    let s = store.apply(DirSource::new(dir.path()).scan(&HashSet::new()));
    assert!(
        s.errors[0].message.contains("not a regular file"),
        "{:?}",
        s.errors
    );
}

#[test]
fn a_match_describes_itself_briefly_for_logs_and_fully_for_the_cli() {
    let store = store_with(&[("a.json", &ib_node_json("deploying"))]);
    let s = store.current();
    let ib = s
        .by_addr(&AnyAddr::parse("7c:fe:90:03:00:29:26:52").expect("guid"))
        .expect("ib port");
    assert_eq!(
        ib.to_string(),
        format!("node {IB_NODE} (ib-1) port 7c:fe:90:29:26:52")
    );
    assert_eq!(
        format!("{ib:#}"),
        format!(
            "node {IB_NODE} (ib-1, deploying) port 7c:fe:90:29:26:52 (infiniband) via {}",
            Via::Guid.describe()
        )
    );
    let node = s
        .by_node_uuid(&crate::model::node::NodeUuid::parse(IB_NODE).expect("uuid"))
        .expect("node");
    assert_eq!(node.to_string(), format!("node {IB_NODE} (ib-1)"));
    assert_eq!(
        format!("{node:#}"),
        format!("node {IB_NODE} (ib-1, deploying) via Ironic node UUID")
    );
}

/// A store of one node with `ports` (JSON objects), indexed with `add_all_ports`.
fn one_node(ports: &str, add_all_ports: bool) -> Store {
    let store = Store::new(IndexConfig {
        add_all_ports,
        ..IndexConfig::default()
    });
    let json = format!(r#"{{"uuid": "{ETH_NODE}", "name": "n", "ports": [{ports}]}}"#);
    store.apply(vec![(file("a.json"), Update::Replace(doc(&json)))]);
    store
}

#[test]
fn the_client_id_rule_decides_which_names_a_port_answers() {
    let cid = "FF:00:00:00:00:00:02:00:00:02:C9:00:7C:FE:90:03:00:29:26:52";
    let store = one_node(
        &format!(
            r#"{{"address": "52:54:00:00:00:01", "extra": {{"client-id": ""}}}},
               {{"address": "52:54:00:00:00:02", "extra": {{"client-id": null}}}},
               {{"address": "52:54:00:00:00:03", "extra": {{"client-id": "01:52:54:00:00:00:03"}}}},
               {{"address": "52:54:00:00:00:04", "extra": {{"client-id": 7}}}},
               {{"address": "7c:fe:90:29:26:52", "extra": {{"client-id": "{cid}"}}}}"#
        ),
        false,
    );
    let s = store.current();
    let mac = |m: &str| Mac::parse(m).expect("mac");
    // Falsy client-ids are Ethernet ports: found as 01-<mac>, never as 20-<mac>.
    for m in ["52:54:00:00:00:01", "52:54:00:00:00:02"] {
        assert_eq!(
            s.by_mac(&mac(m)).map(|m| m.via),
            Some(Via::EthernetMac),
            "{m}"
        );
        assert!(s.by_ib(&IbHwAddr::Mac(mac(m))).is_none(), "{m}");
    }
    // Truthy ones are InfiniBand, RFC 4390 or not: 20-<mac> answers (and 01-<mac>, by IB MAC).
    for m in [
        "52:54:00:00:00:03",
        "52:54:00:00:00:04",
        "7c:fe:90:29:26:52",
    ] {
        assert_eq!(
            s.by_ib(&IbHwAddr::Mac(mac(m))).map(|m| m.via),
            Some(Via::IbMac),
            "{m}"
        );
        assert_eq!(s.by_mac(&mac(m)).map(|m| m.via), Some(Via::IbMac), "{m}");
    }
    // Only the 20-byte one has a GUID; upper case is the same bytes.
    let guid = Guid::parse("7c:fe:90:03:00:29:26:52").expect("guid");
    assert!(s.by_guid(&guid).is_some());
    assert_eq!(s.ports().iter().filter(|p| p.guid().is_some()).count(), 1);
    // Each surprising client-id is reported naming its port.
    for (m, says) in [
        (
            "52:54:00:00:00:01",
            "an Ethernet port (01-52-54-00-00-00-01)",
        ),
        ("52:54:00:00:00:02", "an Ethernet port"),
        (
            "52:54:00:00:00:03",
            "boots as InfiniBand all the same (20-52-54-00-00-00-03",
        ),
        ("52:54:00:00:00:04", "not a string"),
    ] {
        assert!(
            s.warnings.iter().any(|w| w.contains(m) && w.contains(says)),
            "{m}: {says:?} in {:?}",
            s.warnings
        );
    }
    assert!(
        !s.warnings.iter().any(|w| w.contains("7c:fe:90:29:26:52")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn add_all_ports_answers_ports_that_are_not_pxe_enabled_without_their_ip() {
    let ports = r#"{"address": "52:54:00:00:00:01", "pxe_enabled": false, "extra": {"fixed_ip": "192.0.2.9"}},
                   {"address": "7c:fe:90:29:26:52", "pxe_enabled": false,
                    "extra": {"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"}}"#;
    let eth = Mac::parse("52:54:00:00:00:01").expect("mac");
    let ib = Mac::parse("7c:fe:90:29:26:52").expect("mac");
    let guid = Guid::parse("7c:fe:90:03:00:29:26:52").expect("guid");
    let ip = "192.0.2.9".parse().expect("ip");
    let off = one_node(ports, false).current();
    assert!(off.by_mac(&eth).is_none() && off.by_mac(&ib).is_none());
    assert!(off.by_guid(&guid).is_none() && off.by_fixed_ip(ip).is_none());
    assert!(off.ports().iter().all(|p| !p.boot_names));
    let on = one_node(ports, true).current();
    assert_eq!(on.by_mac(&eth).map(|m| m.via), Some(Via::EthernetMac));
    assert_eq!(
        on.by_ib(&IbHwAddr::Mac(ib)).map(|m| m.via),
        Some(Via::IbMac)
    );
    assert!(on.by_guid(&guid).is_some());
    assert!(
        on.by_fixed_ip(ip).is_none(),
        "Ironic gives a port that is not PXE-enabled no IP, so no <ip>.conf or hex-IP name"
    );
    assert!(on.ports().iter().all(|p| p.boot_names));
    // Ironic's own lookup finds both either way.
    for s in [&off, &on] {
        assert!(s.any_port_by_address(&eth).is_some() && s.any_port_by_address(&ib).is_some());
    }
}

/// A document of the Ironic source from a script of bytes: nodes and ports drawn from small
/// pools (so addresses, system UUIDs and GUIDs collide now and then), sorted by UUID as the
/// Ironic source sorts them.
fn scripted_doc(script: &[u8]) -> StateDoc {
    let mut bytes = script.iter().copied().cycle();
    let mut next = move || bytes.next().unwrap_or(0);
    let states = [
        "deploying",
        "wait call-back",
        "active",
        "clean wait",
        "available",
    ];
    let mut nodes = Vec::new();
    for i in 0..12u8 {
        let b = next();
        if b % 8 == 0 {
            continue;
        }
        let mut extra = serde_json::json!({});
        match next() % 8 {
            0 => {
                extra["system_uuid"] =
                    format!("4c4c4544-0000-0000-0000-00000000000{}", next() % 4).into()
            }
            1 => extra["system_uuid"] = "not-a-uuid".into(),
            _ => {}
        }
        nodes.push(serde_json::json!({
            "uuid": format!("{i:02x}000000-0000-4000-8000-000000000000"),
            "provision_state": states[usize::from(b) % states.len()],
            "extra": extra,
        }));
    }
    let mut ports = Vec::new();
    for i in 0..16u8 {
        let b = next();
        if b % 3 == 0 {
            continue;
        }
        let mac = next();
        let mut extra = serde_json::json!({});
        match next() % 10 {
            0 => {
                extra["client-id"] =
                    format!("ff:00:00:00:00:00:02:00:00:02:c9:00:52:54:00:03:00:00:00:{mac:02x}")
                        .into()
            }
            1 => extra["client-id"] = "garbage".into(),
            2 => extra["fixed_ip"] = format!("10.0.0.{}", next() % 20).into(),
            3 => extra["fixed_ip"] = serde_json::json!(7),
            _ => {}
        }
        ports.push(serde_json::json!({
            "uuid": format!("{i:02x}aaaaaa-0000-4000-8000-000000000000"),
            // Now and then a port of no node (an orphan).
            "node_uuid": format!("{:02x}000000-0000-4000-8000-000000000000", if next() % 16 == 0 { 12 } else { next() % 12 }),
            "address": format!("52:54:00:00:00:{mac:02x}"),
            "pxe_enabled": next() % 5 != 0,
            "extra": extra,
        }));
    }
    let json = serde_json::json!({"nodes": nodes, "ports": ports}).to_string();
    let mut d = StateDoc::from_slice(json.as_bytes()).expect("scripted doc parses");
    d.nodes.sort_by_key(|n| n.uuid);
    d.ports.sort_by_key(|p| p.uuid);
    d
}

/// One change as a notification brings it: one node's or one port's row replaced by the
/// row of another script, or dropped. Unchanged rows stay shared, as the poller's view keeps them.
fn mutate(doc: &StateDoc, other: &StateDoc, pick: u8) -> StateDoc {
    let mut next = StateDoc {
        nodes: doc.nodes.clone(),
        ports: doc.ports.clone(),
    };
    let i = usize::from(pick / 4);
    match pick % 4 {
        0 if !other.nodes.is_empty() => {
            let row = other.nodes[i % other.nodes.len()].clone();
            next.nodes.retain(|n| n.uuid != row.uuid);
            next.nodes.push(row);
        }
        1 if !next.nodes.is_empty() => {
            // Ironic deletes a node's ports with it.
            let gone = next.nodes.remove(i % next.nodes.len()).uuid;
            next.ports.retain(|p| p.node_uuid != Some(gone));
        }
        2 if !other.ports.is_empty() => {
            let row = other.ports[i % other.ports.len()].clone();
            next.ports.retain(|p| p.uuid != row.uuid);
            next.ports.push(row);
        }
        3 if !next.ports.is_empty() => {
            let at = i % next.ports.len();
            next.ports.remove(at);
        }
        _ => {}
    }
    next.nodes.sort_by_key(|n| n.uuid);
    next.ports.sort_by_key(|p| p.uuid);
    next
}

/// Runs a script through the store: after every change the published snapshot must equal
/// a full build of the same documents. Returns how many generations were patches.
fn patch_matches_build(base: &[u8], others: &[Vec<u8>], picks: &[u8], with_file: bool) -> usize {
    let cfg = IndexConfig::default();
    let store = Store::new(cfg.clone());
    let ironic = crate::state::source::ironic::source_id();
    let mut updates = vec![(ironic.clone(), Update::Replace(scripted_doc(base)))];
    if with_file {
        updates.push((
            file("a.json"),
            Update::Replace(doc(&eth_node_json("52:54:00:00:00:05"))),
        ));
    }
    store.apply(updates);
    let mut current = store.sources.lock().expect("lock").docs[&ironic].clone();
    let mut patched = 0;
    for (other, &pick) in others.iter().zip(picks) {
        let next = mutate(&current, &scripted_doc(other), pick);
        let prev = store.current();
        let touched = Touched::between(&current, &next).expect("sorted documents compare");
        let got = store.apply(vec![(ironic.clone(), Update::Replace(next))]);
        if Arc::ptr_eq(&got, &prev) {
            continue; // nothing changed: nothing published
        }
        let docs = store.sources.lock().expect("lock").docs.clone();
        let full = Snapshot::build(&cfg, &docs, Vec::new(), Some(&prev)).dump();
        assert_eq!(
            got.dump(),
            full,
            "published after change {pick} of {touched:?}"
        );
        // The store patches only small changes of large fleets: try every one here.
        if let Some(patch) = Snapshot::patch(&prev, &cfg, &ironic, &touched, Vec::new()) {
            assert_eq!(
                patch.dump(),
                full,
                "patched after change {pick} of {touched:?}"
            );
            patched += 1;
        }
        current = docs[&ironic].clone();
    }
    patched
}

#[test]
fn patch_equals_a_full_build() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use proptest::test_runner::{RngAlgorithm, TestRng};
    // A fixed seed: the count asserted below must not vary between runs.
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let config = Config {
        cases: 400,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let patched = std::sync::atomic::AtomicUsize::new(0);
    let script = || proptest::collection::vec(any::<u8>(), 100..120);
    let strategy = (
        script(),
        proptest::collection::vec(script(), 1..8),
        proptest::collection::vec(any::<u8>(), 8),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(base, others, picks, with_file)| {
            let n = patch_matches_build(&base, &others, &picks, with_file);
            patched.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Not vacuous: many of those generations were patches, not full builds.
    let patched = patched.into_inner();
    assert!(patched > 150, "only {patched} generations were patched");
}

#[test]
fn a_notified_change_at_scale_is_a_patch() {
    let cfg = IndexConfig::default();
    let ironic = crate::state::source::ironic::source_id();
    let node = |i: u32, state: &str| -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "uuid": format!("{i:08x}-0000-4000-8000-000000000000"), "provision_state": state,
            }))
            .expect("node"),
        )
    };
    let port = |i: u32| -> Arc<Port> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "uuid": format!("{i:08x}-1111-4000-8000-000000000000"),
                "node_uuid": format!("{i:08x}-0000-4000-8000-000000000000"),
                "address": format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 255, i & 255),
            }))
            .expect("port"),
        )
    };
    let old = StateDoc {
        nodes: (0..1000).map(|i| node(i, "available")).collect(),
        ports: (0..1000).map(port).collect(),
    };
    let store = Store::new(cfg.clone());
    let g1 = store.apply(vec![(ironic.clone(), Update::Replace(old.clone()))]);
    let mut new = old.clone();
    new.nodes[500] = node(500, "deploying");
    let touched = Touched::between(&old, &new).expect("sorted");
    assert_eq!(touched.len(), 1, "one node touched: {touched:?}");
    let patch = Snapshot::patch(&g1, &cfg, &ironic, &touched, Vec::new()).expect("a patch");
    let g2 = store.apply(vec![(ironic.clone(), Update::Replace(new))]);
    assert_eq!(g2.dump(), patch.dump());
    let changed = NodeUuid::parse("000001f4-0000-4000-8000-000000000000").expect("uuid");
    assert_eq!(g2.changes.modified, [changed].into());
    assert_eq!(g2.node(&changed).expect("node").revision, 2);
    let mac = Mac::parse("52:54:00:00:01:f4").expect("mac");
    assert_eq!(g2.by_mac(&mac).map(|m| m.node.node.uuid), Some(changed));
    assert_eq!(g2.node(&g1.nodes()[0].node.uuid).expect("kept").revision, 1);
}
