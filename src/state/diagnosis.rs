//! Diagnoses over a [`Snapshot`]: which enrolled port an address that matched nothing most
//! likely meant, so the operator view can say "did you mean …", and which port Ironic knows by
//! that address although neither it nor ironpxe boots from it.

use std::fmt;

use crate::model::addr::{AnyAddr, HwType, IbHwAddr};
use crate::model::resource::{AskedAddr, AskedAs};
use crate::state::{IndexedNode, IndexedPort, Snapshot};

/// An enrolled port an address names although no boot answer uses it: Ironic knows it (its
/// lookup by port address, `get_node_by_port_addresses`, ignores `pxe_enabled`), but links no
/// boot name for it, or cannot tie the address to it.
#[derive(Clone, Copy, Debug)]
pub struct Unbooted<'a> {
    pub node: &'a IndexedNode,
    pub port: &'a IndexedPort,
    /// `pxe_enabled: false` (and no `add_all_ports`): Ironic writes no boot config for it.
    pub not_pxe_enabled: bool,
    /// What keeps a GUID, IPoIB address or client-id from reaching the port by its IB MAC.
    pub ib_gap: Option<IbGap>,
}

/// Why an InfiniBand identity does not lead to the port holding its IB MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IbGap {
    /// No (or a falsy) `extra.client-id`: Ironic treats the port as Ethernet.
    WithoutClientId,
    /// A client-id that is not 20 bytes: InfiniBand, but its GUID is unknown.
    ClientIdWithoutGuid,
}

/// `node <uuid> (<name>, <state>), port <address> (<kind>), not PXE-enabled[, …]: <why>`.
impl fmt::Display for Unbooted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = &self.node.node;
        let name = node.name.as_deref().unwrap_or("-");
        write!(
            f,
            "node {} ({name}, {}), port {} ({})",
            node.uuid,
            node.provision_state,
            self.port.port.address,
            self.port.port.hw_type().name()
        )?;
        let mut why = Vec::new();
        if self.not_pxe_enabled {
            f.write_str(", not PXE-enabled")?;
            why.push("Ironic's lookup finds the node, but Ironic writes no boot config for the port ([neutron] add_all_ports would)");
        }
        match self.ib_gap {
            Some(IbGap::WithoutClientId) => {
                f.write_str(", enrolled without client-id")?;
                why.push("Ironic treats it as Ethernet (01- names, no option 61), so no GUID, IPoIB address or client-id leads to it");
            }
            Some(IbGap::ClientIdWithoutGuid) => {
                f.write_str(", client-id not RFC 4390")?;
                why.push("its extra.client-id is not 20 bytes, so its GUID is unknown and no GUID, IPoIB address or RFC 4390 client-id leads to it");
            }
            None => {}
        }
        write!(f, ": {}", why.join("; "))
    }
}

/// The enrolled port `asked` names that boot answers do not use, if any: a 6-byte address of
/// a port without boot names, or a GUID (alone or in a 20-byte form) whose IB MAC is a port's
/// address when that port is not PXE-enabled, has no client-id, or has one without a GUID.
/// `None` when the address matches normally or names no port.
pub fn unbooted<'a>(snap: &'a Snapshot, asked: &AskedAddr) -> Option<Unbooted<'a>> {
    let (port, ib_gap) = match asked.addr {
        AnyAddr::Six(mac) => (snap.any_port_by_address(&mac)?, None),
        AnyAddr::Eight(_) | AnyAddr::Twenty(_) => {
            let guid = asked.addr.guid()?;
            let port = snap.any_port_by_address(&guid.ib_mac())?;
            let gap = match (port.port.is_infiniband(), port.guid()) {
                (false, _) => Some(IbGap::WithoutClientId),
                (true, None) => Some(IbGap::ClientIdWithoutGuid),
                (true, Some(g)) if g == guid => None,
                // Another GUID with the same IB MAC: [`closest`] says so.
                (true, Some(_)) => return None,
            };
            (port, gap)
        }
    };
    let not_pxe_enabled = !port.boot_names;
    (not_pxe_enabled || ib_gap.is_some()).then(|| Unbooted {
        node: &snap.nodes()[port.node],
        port,
        not_pxe_enabled,
        ib_gap,
    })
}

/// The enrolled port an unknown address most likely meant: one Ironic knows but does not boot
/// from it ([`unbooted`]), or one that differs only by the InfiniBand truncation or the
/// hardware type.
pub fn closest(snap: &Snapshot, asked: &AskedAddr) -> Option<String> {
    if let Some(u) = unbooted(snap, asked) {
        return Some(u.to_string());
    }
    match asked.addr {
        AnyAddr::Six(mac) => {
            if asked.asked_as == AskedAs::Hw(HwType::Infiniband) {
                if let Some(m) = snap.by_mac(&mac) {
                    return Some(format!(
                        "Ethernet port {} of node {}, enrolled without client-id: the firmware reports ARP type 32 for an Ethernet port?",
                        mac, m.node.node.uuid
                    ));
                }
            }
            // The GUID's first six bytes taken for the MAC.
            snap.ports().iter().find_map(|p| {
                let g = p.guid()?;
                (g.truncations()[0] == mac).then(|| {
                    format!(
                        "InfiniBand port {} (GUID {g}) of node {}: {mac} is the GUID's first six bytes, not its IB MAC",
                        p.port.address,
                        snap.nodes()[p.node].node.uuid
                    )
                })
            })
        }
        AnyAddr::Eight(g) => snap.by_ib(&IbHwAddr::Mac(g.ib_mac())).map(|m| {
            format!(
                "InfiniBand port {} of node {} has this GUID's IB MAC but no matching extra.client-id",
                g.ib_mac(),
                m.node.node.uuid
            )
        }),
        AnyAddr::Twenty(_) => {
            let g = asked.addr.guid()?;
            closest(
                snap,
                &AskedAddr {
                    addr: AnyAddr::Eight(g),
                    asked_as: asked.asked_as,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node::StateDoc;
    use crate::model::resource::classify;
    use crate::state::{IndexConfig, Store, Update};

    /// What a request for `name` asked under.
    fn asked(name: &str) -> AskedAddr {
        let res = classify(name).expect(name);
        AskedAddr::of(&res).expect(name)
    }

    fn store(json: &str) -> Store {
        let store = Store::new(IndexConfig::default());
        store.apply(vec![(
            crate::state::source::dir::source_id("a"),
            Update::Replace(StateDoc::from_slice(json.as_bytes()).expect("json")),
        )]);
        store
    }

    #[test]
    fn ports_ironic_knows_but_does_not_boot_are_named_with_the_reason() {
        let json = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "n1",
            "provision_state": "active", "ports": [
            {"address": "52:54:00:00:00:03", "pxe_enabled": false},
            {"address": "7c:fe:90:29:26:52"},
            {"address": "7c:fe:90:11:22:33", "extra": {"client-id": "01:7c:fe:90:11:22:33"}},
            {"address": "7c:fe:90:44:55:66", "pxe_enabled": false, "extra": {"client-id": ""}}]}"#;
        let s = store(json).current();
        let head = "node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123 (n1, active), port";
        for (name, says) in [
            (
                "pxelinux.cfg/01-52-54-00-00-00-03",
                format!("{head} 52:54:00:00:00:03 (ethernet), not PXE-enabled: Ironic's lookup finds the node"),
            ),
            (
                "ipxe/52:54:00:00:00:03",
                format!("{head} 52:54:00:00:00:03 (ethernet), not PXE-enabled"),
            ),
            // A GUID, an IPoIB address and a client-id whose IB MAC is an Ethernet port.
            (
                "ipxe/7c:fe:90:03:00:29:26:52",
                format!("{head} 7c:fe:90:29:26:52 (ethernet), enrolled without client-id: Ironic treats it as Ethernet"),
            ),
            (
                "ipxe/a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
                format!("{head} 7c:fe:90:29:26:52 (ethernet), enrolled without client-id"),
            ),
            (
                "ipxe/ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:aa:bb:29:26:52",
                format!("{head} 7c:fe:90:29:26:52 (ethernet), enrolled without client-id"),
            ),
            (
                "ipxe/7c:fe:90:00:00:11:22:33",
                format!("{head} 7c:fe:90:11:22:33 (infiniband), client-id not RFC 4390"),
            ),
            (
                "ipxe/7c:fe:90:00:00:44:55:66",
                format!("{head} 7c:fe:90:44:55:66 (ethernet), not PXE-enabled, enrolled without client-id: "),
            ),
        ] {
            let a = asked(name);
            assert!(s.by_addr(&a.addr).is_none(), "{name} matches no boot answer");
            let u = unbooted(&s, &a).expect(name).to_string();
            assert!(u.starts_with(&says), "{name}: {u}");
            assert_eq!(closest(&s, &a).as_deref(), Some(u.as_str()), "{name}");
        }
        // A port that boots, and an address nobody has, are nothing to report.
        for name in [
            "ipxe/7c:fe:90:29:26:52",
            "ipxe/52:54:00:00:00:09",
            "ipxe/7c:fe:90:11:22:33",
        ] {
            assert!(unbooted(&s, &asked(name)).is_none(), "{name}");
        }
    }

    #[test]
    fn closest_port_names_the_truncation_mistake() {
        let json = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "ports": [
            {"address": "7c:fe:90:29:26:52", "extra": {"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"}},
            {"address": "52:54:00:00:00:01"}]}"#;
        let store = Store::new(IndexConfig::default());
        store.apply(vec![(
            crate::state::source::dir::source_id("a"),
            Update::Replace(StateDoc::from_slice(json.as_bytes()).expect("json")),
        )]);
        let s = store.current();
        let t = closest(&s, &asked("pxelinux.cfg/20-7c-fe-90-03-00-29")).expect("truncation");
        assert!(t.contains("first six bytes"), "{t}");
        let h = closest(&s, &asked("pxelinux.cfg/20-52-54-00-00-00-01")).expect("hw type");
        assert!(h.contains("ARP type 32"), "{h}");
        assert!(closest(&s, &asked("pxelinux.cfg/01-52-54-00-00-00-09")).is_none());
        // A GUID, alone or ending an IPoIB address, whose IB MAC is enrolled without it.
        for name in [
            "ipxe/7c:fe:90:aa:bb:29:26:52",
            "ipxe/a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:aa:bb:29:26:52",
        ] {
            let g = closest(&s, &asked(name)).expect(name);
            assert!(g.contains("no matching extra.client-id"), "{g}");
        }
    }
}
