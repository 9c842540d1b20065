//! Arbitrary bytes as a state file. Invariants: `StateDoc::from_slice` never panics; it agrees
//! with `from_reader` (the directory loader streams files above a size and reads smaller ones
//! whole, so a file must not mean something else depending on its size); a parsed document
//! loads into a fresh `Store`, where every address of every indexed PXE-enabled port (port
//! address, GUID, client-id, IPoIB form, PXELINUX names, fixed IP), every system UUID and
//! every node UUID finds a node — a port carrying that address; loading the same document
//! again from a second source changes no lookup (the first source wins).
#![no_main]

use std::collections::BTreeSet;

use ironpxe::model::addr::{AnyAddr, IbHwAddr, PxeHwAddr, PxelinuxName};
use ironpxe::model::node::StateDoc;
use ironpxe::state::{IndexConfig, Match, Snapshot, Store, Update};
use libfuzzer_sys::fuzz_target;

fn found<'a>(what: &str, m: Option<Match<'a>>) -> Match<'a> {
    m.unwrap_or_else(|| panic!("INVARIANT BROKEN: {what} finds no node"))
}

/// Every lookup for every indexed port, system UUID and node; returns a fingerprint of the
/// answers (node and port address per lookup) to compare snapshots.
fn check(s: &Snapshot) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut note = |what: &str, m: &Match<'_>| {
        seen.insert(format!(
            "{what} -> {} {:?}",
            m.node.node.uuid,
            m.port.map(|p| p.port.address)
        ))
    };
    for p in s.ports() {
        if !p.port.pxe_enabled {
            continue;
        }
        let mac = p.port.address;
        let m = found(&format!("by_mac({mac})"), s.by_mac(&mac));
        let mp = m
            .port
            .unwrap_or_else(|| panic!("INVARIANT BROKEN: by_mac({mac}) matched no port"));
        assert_eq!(
            mp.port.address, mac,
            "INVARIANT BROKEN: by_mac({mac}) found another address"
        );
        note("mac", &m);
        let m = found(
            &format!("by_addr(Six {mac})"),
            s.by_addr(&AnyAddr::Six(mac)),
        );
        note("addr6", &m);
        let eth = PxelinuxName::Hw(PxeHwAddr::Ethernet(mac));
        found(
            &format!("by_pxelinux_name({eth})"),
            s.by_pxelinux_name(&eth),
        );
        if p.is_infiniband() {
            let m = found(
                &format!("by_ib(Mac {mac}) of an IB port"),
                s.by_ib(&IbHwAddr::Mac(mac)),
            );
            let mp = m.port.expect("port match");
            assert!(
                mp.is_infiniband() && mp.port.address == mac,
                "INVARIANT BROKEN: by_ib({mac}) found {:?}",
                mp.port
            );
            note("ib", &m);
            let ib = PxelinuxName::Hw(PxeHwAddr::Infiniband(IbHwAddr::Mac(mac)));
            found(&format!("by_pxelinux_name({ib})"), s.by_pxelinux_name(&ib));
        }
        if let Some(cid) = p.client_id {
            let guid = cid.guid();
            let m = found(&format!("by_guid({guid})"), s.by_guid(&guid));
            assert_eq!(
                m.port.and_then(|q| q.guid()),
                Some(guid),
                "INVARIANT BROKEN: by_guid({guid}) found another port"
            );
            note("guid", &m);
            for (what, a) in [
                ("guid8", AnyAddr::Eight(guid)),
                ("client-id", AnyAddr::Twenty(cid.0)),
            ] {
                let m = found(&format!("by_addr({what} {a})"), s.by_addr(&a));
                note(what, &m);
            }
            found(
                &format!("by_ib(Guid {guid})"),
                s.by_ib(&IbHwAddr::Guid(guid)),
            );
        }
        if let Some(ip) = p.fixed_ip {
            let m = found(&format!("by_fixed_ip({ip})"), s.by_fixed_ip(ip));
            note("ip", &m);
            let hex = format!("{:08X}", u32::from(ip));
            let name = PxelinuxName::parse(&hex).expect("8 upper-case hex digits");
            found(
                &format!("by_pxelinux_name({hex})"),
                s.by_pxelinux_name(&name),
            );
        }
    }
    for n in s.nodes() {
        let uuid = n.node.uuid;
        let m = found(&format!("by_node_uuid({uuid})"), s.by_node_uuid(&uuid));
        assert_eq!(
            m.node.node.uuid, uuid,
            "INVARIANT BROKEN: by_node_uuid({uuid})"
        );
        for &i in &n.ports {
            let p = s
                .ports()
                .get(i)
                .unwrap_or_else(|| panic!("INVARIANT BROKEN: node {uuid} port index {i}"));
            assert_eq!(
                s.nodes()[p.node].node.uuid,
                uuid,
                "INVARIANT BROKEN: port {i} of node {uuid} points at another node"
            );
        }
        if let Some(u) = n.system_uuid {
            let m = found(&format!("by_system_uuid({u})"), s.by_system_uuid(&u));
            note("system-uuid", &m);
            found(
                &format!("by_system_uuid(swapped {u})"),
                s.by_system_uuid(&u.swapped()),
            );
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let parsed = StateDoc::from_slice(data);
    let streamed = StateDoc::from_reader(data);
    match (&parsed, &streamed) {
        (Ok(a), Ok(b)) if a == b => {}
        (Err(_), Err(_)) => {}
        _ => panic!(
            "INVARIANT BROKEN: from_slice and from_reader disagree on {:?}:\nfrom_slice:  {parsed:?}\nfrom_reader: {streamed:?}",
            String::from_utf8_lossy(data)
        ),
    }
    let Ok(doc) = parsed else {
        return;
    };
    let nodes = doc.nodes.len();
    let store = Store::new(IndexConfig::default());
    let s = store.apply(vec![(
        ironpxe::state::source::dir::source_id("f"),
        Update::Replace(doc),
    )]);
    assert!(
        s.nodes().len() <= nodes,
        "INVARIANT BROKEN: more nodes indexed than parsed"
    );
    let first = check(&s);
    // The same document again, from a source that sorts after the first: it adds nothing.
    let again = StateDoc::from_slice(data).expect("parsed once");
    let s2 = store.apply(vec![(
        ironpxe::state::source::dir::source_id("g"),
        Update::Replace(again),
    )]);
    assert_eq!(
        s2.nodes().len(),
        s.nodes().len(),
        "INVARIANT BROKEN: duplicate source added nodes"
    );
    let second = check(&s2);
    assert_eq!(
        first, second,
        "INVARIANT BROKEN: loading the same document from a second source changed lookups"
    );
    // Removing the first source leaves the second's identical contents.
    let s3 = store.apply(vec![(
        ironpxe::state::source::dir::source_id("f"),
        Update::Remove,
    )]);
    assert_eq!(
        check(&s3),
        first,
        "INVARIANT BROKEN: removing one of two identical sources changed lookups"
    );
});
