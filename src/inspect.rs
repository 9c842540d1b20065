//! Inspection ingest: what ironic-python-agent reported about a machine's interfaces,
//! checked against the ports Ironic has enrolled for it.
//!
//! The agent already reports an InfiniBand interface's `mac_address` as the IB MAC together
//! with its `client_id`, and Ironic's own inspection hook puts `extra.client-id` on the port.
//! So this checks rather than creates: per interface it says which port Ironic should have
//! and flags enrolled ports that disagree — an address that is not the IB MAC of the
//! client-id's GUID (for instance the GUID's first six bytes), a missing client-id, a
//! client-id for another GUID. Pure: the CLI does the I/O.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::addr::{ClientId, Mac};
use crate::model::node::{NodeUuid, Port, PortUuid};

/// One interface as the agent reports it (`inventory.interfaces[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Interface {
    pub name: String,
    pub mac_address: Mac,
    /// IPoIB DHCP client-id (InfiniBand interfaces only).
    pub client_id: Option<ClientId>,
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(default)]
    name: Option<String>,
    mac_address: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct RawInventory {
    interfaces: Vec<RawInterface>,
}

/// Inspection data as `baremetal node inventory show` prints it (`{"inventory": …}`) or the
/// bare inventory (`{"interfaces": […]}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDoc {
    Wrapped { inventory: RawInventory },
    Bare(RawInventory),
}

/// Reads the agent's interfaces; interfaces without a MAC (loopback) are skipped, and a
/// malformed address is an error naming the interface.
pub fn parse_inventory(bytes: &[u8]) -> Result<Vec<Interface>, String> {
    let raw: RawDoc = serde_json::from_slice(bytes).map_err(|e| {
        format!("not an inventory ({{\"inventory\": {{\"interfaces\": […]}}}}): {e}")
    })?;
    let inv = match raw {
        RawDoc::Wrapped { inventory } => inventory,
        RawDoc::Bare(i) => i,
    };
    let mut out = Vec::new();
    for (i, r) in inv.interfaces.into_iter().enumerate() {
        let name = r.name.unwrap_or_else(|| format!("interface {i}"));
        let Some(mac) = r.mac_address.filter(|m| !m.is_empty()) else {
            continue;
        };
        let mac_address = Mac::parse(&mac).map_err(|e| format!("{name}: mac_address: {e}"))?;
        let client_id = match r.client_id.filter(|c| !c.is_empty()) {
            Some(c) => Some(ClientId::parse(&c).map_err(|e| format!("{name}: client_id: {e}"))?),
            None => None,
        };
        out.push(Interface {
            name,
            mac_address,
            client_id,
        });
    }
    Ok(out)
}

/// The port Ironic should have for an interface.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedPort {
    pub address: Mac,
    pub client_id: Option<ClientId>,
    /// Set when the agent's own report is inconsistent (its MAC is not the IB MAC of its
    /// client-id's GUID); the client-id wins.
    pub inventory_note: Option<String>,
}

impl ExpectedPort {
    pub fn of(iface: &Interface) -> ExpectedPort {
        match iface.client_id {
            None => ExpectedPort {
                address: iface.mac_address,
                client_id: None,
                inventory_note: None,
            },
            Some(cid) => {
                let ib_mac = cid.guid().ib_mac();
                let note = (ib_mac != iface.mac_address).then(|| {
                    format!(
                        "the agent reported mac_address {} but its client-id's GUID {} gives IB MAC {ib_mac}; using the client-id",
                        iface.mac_address,
                        cid.guid()
                    )
                });
                ExpectedPort {
                    address: ib_mac,
                    client_id: Some(cid),
                    inventory_note: note,
                }
            }
        }
    }

    /// The port as JSON, ready for `POST /v1/ports`.
    pub fn json(&self, node: Option<&NodeUuid>) -> Value {
        let mut v = json!({"address": self.address.to_string(), "pxe_enabled": true});
        if let Some(n) = node {
            v["node_uuid"] = json!(n.to_string());
        }
        if let Some(c) = &self.client_id {
            v["extra"] = json!({"client-id": c.to_string()});
        }
        v
    }

    /// The equivalent `baremetal` CLI line.
    pub fn create_command(&self, node: Option<&NodeUuid>) -> String {
        let node = node.map_or_else(|| "<node>".to_owned(), |n| n.to_string());
        let extra = self
            .client_id
            .map(|c| format!(" --extra client-id={c}"))
            .unwrap_or_default();
        format!(
            "baremetal port create --node {node} --pxe-enabled true{extra} {}",
            self.address
        )
    }
}

/// What was found for one interface.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// An enrolled port agrees.
    Ok { port: Option<PortUuid> },
    /// No enrolled port: create one.
    Missing,
    /// The port was found but disagrees; `patch` is the JSON patch that fixes it.
    Disagrees {
        port: Option<PortUuid>,
        problems: Vec<String>,
        patch: Vec<Value>,
    },
}

/// Compares the expected port with the node's enrolled ports.
pub fn check(expected: &ExpectedPort, enrolled: &[Port]) -> Finding {
    let Some(port) = find_port(expected, enrolled) else {
        return Finding::Missing;
    };
    let mut problems = Vec::new();
    let mut patch = Vec::new();
    if port.address != expected.address {
        problems.push(describe_wrong_address(port.address, expected));
        patch.push(
            json!({"op": "replace", "path": "/address", "value": expected.address.to_string()}),
        );
    }
    if let Some(cid) = &expected.client_id {
        match port.client_id() {
            None => {
                problems.push(format!(
                    "port {} has no extra.client-id (expected {cid})",
                    port.address
                ));
                patch.push(
                    json!({"op": "add", "path": "/extra/client-id", "value": cid.to_string()}),
                );
            }
            Some(Err(e)) => {
                problems.push(format!(
                    "port {} extra.client-id is unusable: {e}",
                    port.address
                ));
                patch.push(
                    json!({"op": "add", "path": "/extra/client-id", "value": cid.to_string()}),
                );
            }
            Some(Ok(have)) if have != *cid => {
                problems.push(format!(
                    "port {} extra.client-id is {have}, the agent reports {cid}",
                    port.address
                ));
                patch.push(
                    json!({"op": "add", "path": "/extra/client-id", "value": cid.to_string()}),
                );
            }
            Some(Ok(_)) => {}
        }
    }
    if problems.is_empty() {
        Finding::Ok { port: port.uuid }
    } else {
        Finding::Disagrees {
            port: port.uuid,
            problems,
            patch,
        }
    }
}

/// The enrolled port an interface corresponds to: same GUID (client-id), same address, or
/// an address that is a wrong truncation of the GUID.
fn find_port<'a>(expected: &ExpectedPort, enrolled: &'a [Port]) -> Option<&'a Port> {
    let guid = expected.client_id.map(|c| c.guid());
    let same_guid = |p: &&Port| match (guid, p.client_id()) {
        (Some(g), Some(Ok(c))) => c.guid() == g,
        _ => false,
    };
    let wrong_truncation = |p: &&Port| guid.is_some_and(|g| g.truncations().contains(&p.address));
    enrolled
        .iter()
        .find(same_guid)
        .or_else(|| enrolled.iter().find(|p| p.address == expected.address))
        .or_else(|| enrolled.iter().find(wrong_truncation))
}

fn describe_wrong_address(have: Mac, expected: &ExpectedPort) -> String {
    let Some(cid) = expected.client_id else {
        return format!("port address {have} should be {}", expected.address);
    };
    let g = cid.guid();
    if g.truncations()[0] == have {
        format!(
            "port address {have} is the GUID {g}'s first six bytes; the IB MAC drops bytes 3-4: {}",
            expected.address
        )
    } else {
        format!(
            "port address {have} is not the IB MAC of the client-id's GUID {g} (expected {})",
            expected.address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";

    fn inventory() -> Vec<Interface> {
        let doc = json!({"inventory": {"interfaces": [
            {"name": "lo", "mac_address": null},
            {"name": "eth0", "mac_address": "52:54:00:12:34:56", "client_id": null},
            {"name": "ib0", "mac_address": "7c:fe:90:29:26:52", "client_id": CID}
        ]}});
        parse_inventory(doc.to_string().as_bytes()).expect("parses")
    }

    fn port(address: &str, client_id: Option<&str>) -> Port {
        let mut v = json!({"address": address, "uuid": "11111111-2222-4333-8444-555555555555"});
        if let Some(c) = client_id {
            v["extra"] = json!({"client-id": c});
        }
        serde_json::from_value(v).expect("port")
    }

    #[test]
    fn parses_the_agents_inventory_in_both_shapes() {
        let ifaces = inventory();
        assert_eq!(ifaces.len(), 2, "lo skipped");
        assert_eq!(
            ifaces[1].client_id.map(|c| c.to_string()).as_deref(),
            Some(CID)
        );
        let bare = json!({"interfaces": [{"name": "x", "mac_address": "52:54:00:00:00:01"}]});
        assert_eq!(
            parse_inventory(bare.to_string().as_bytes())
                .expect("bare")
                .len(),
            1
        );
        let bad = json!({"interfaces": [{"name": "ib9", "mac_address": "zz"}]});
        let err = parse_inventory(bad.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("ib9") && err.contains("mac_address"), "{err}");
    }

    #[test]
    fn expected_port_for_infiniband_comes_from_the_client_id() {
        let ib = &inventory()[1];
        let e = ExpectedPort::of(ib);
        assert_eq!(e.address.to_string(), "7c:fe:90:29:26:52");
        assert!(e.inventory_note.is_none());
        assert_eq!(
            e.create_command(None),
            format!("baremetal port create --node <node> --pxe-enabled true --extra client-id={CID} 7c:fe:90:29:26:52")
        );
        assert_eq!(e.json(None)["extra"]["client-id"], json!(CID));
        // An agent reporting the wrong MAC: the client-id wins, and it is said.
        let odd = Interface {
            mac_address: Mac::parse("7c:fe:90:03:00:29").expect("mac"),
            ..ib.clone()
        };
        assert!(ExpectedPort::of(&odd).inventory_note.is_some());
    }

    #[test]
    fn vendor_prefix_is_kept() {
        let other = "ff:00:00:00:00:00:02:00:00:02:c9:99:7c:fe:90:03:00:29:26:52";
        let iface = Interface {
            name: "ib1".into(),
            mac_address: Mac::parse("7c:fe:90:29:26:52").expect("mac"),
            client_id: Some(ClientId::parse(other).expect("cid")),
        };
        assert_eq!(
            ExpectedPort::of(&iface).json(None)["extra"]["client-id"],
            json!(other)
        );
    }

    #[test]
    fn findings() {
        let e = ExpectedPort::of(&inventory()[1]);
        assert_eq!(check(&e, &[]), Finding::Missing);
        assert!(matches!(
            check(&e, &[port("7c:fe:90:29:26:52", Some(CID))]),
            Finding::Ok { .. }
        ));

        let Finding::Disagrees {
            problems, patch, ..
        } = check(&e, &[port("7c:fe:90:29:26:52", None)])
        else {
            panic!("missing client-id must disagree");
        };
        assert!(problems[0].contains("no extra.client-id"), "{problems:?}");
        assert_eq!(
            patch,
            vec![json!({"op": "add", "path": "/extra/client-id", "value": CID})]
        );

        // Enrolled with the GUID's first six bytes (the classic truncation mistake).
        let Finding::Disagrees {
            problems, patch, ..
        } = check(&e, &[port("7c:fe:90:03:00:29", None)])
        else {
            panic!("wrong truncation must disagree");
        };
        assert!(problems[0].contains("first six bytes"), "{problems:?}");
        assert_eq!(patch[0]["value"], json!("7c:fe:90:29:26:52"));
        assert_eq!(patch.len(), 2, "address and client-id");

        // Right GUID in the client-id, wrong address.
        let Finding::Disagrees { problems, .. } =
            check(&e, &[port("7c:fe:90:00:00:01", Some(CID))])
        else {
            panic!("wrong address must disagree");
        };
        assert!(problems[0].contains("is not the IB MAC"), "{problems:?}");

        // A client-id for another GUID on the right address.
        let other = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:00:00:01";
        let Finding::Disagrees { problems, .. } =
            check(&e, &[port("7c:fe:90:29:26:52", Some(other))])
        else {
            panic!("other GUID must disagree");
        };
        assert!(problems[0].contains("the agent reports"), "{problems:?}");

        let eth = ExpectedPort::of(&inventory()[0]);
        assert!(matches!(
            check(&eth, &[port("52:54:00:12:34:56", None)]),
            Finding::Ok { .. }
        ));
    }
}
