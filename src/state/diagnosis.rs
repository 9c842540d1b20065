//! Diagnoses over a [`Snapshot`]: which enrolled port an address that matched nothing most
//! likely meant, so the operator view can say "did you mean …".

use crate::model::addr::{AnyAddr, HwType, IbHwAddr};
use crate::model::resource::{AskedAddr, AskedAs};
use crate::state::Snapshot;

/// The enrolled port an unknown address most likely meant: one that differs only by the
/// InfiniBand truncation or the hardware type.
pub fn closest(snap: &Snapshot, asked: &AskedAddr) -> Option<String> {
    match asked.addr {
        AnyAddr::Six(mac) => {
            if asked.asked_as == AskedAs::Hw(HwType::Infiniband) {
                if let Some(m) = snap.by_mac(&mac) {
                    return Some(format!(
                        "Ethernet port {} of node {}: the firmware reports ARP type 32 for an Ethernet port?",
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
