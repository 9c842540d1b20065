//! Ironic's versioned notifications, decoded (pure): one AMQP message body in, one typed
//! event out, and a batch that coalesces a burst of them.
//!
//! A notification says *that* a node or port changed, so the poller can skip its change
//! probes while the stream is healthy. The body comes from a message bus anyone with the
//! bus's credentials can publish to, so it is treated as hostile: bounded in size, every field
//! checked, never trusted for a node's contents — node payloads lack `driver_info`, so a
//! node event only names the node to re-read from Ironic's API. Port payloads carry every
//! field ironpxe reads (`address`, `extra`, `pxe_enabled`, `node_uuid`), so a port's final
//! (`.end`) event is taken as is. A node event whose payload, laid over the node ironpxe
//! already has, reads back as the same node (a power or maintenance change, a `.start`
//! before the change is saved) needs no read at all ([`changes_nothing`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::refresh::Stamp;

use crate::model::node::{Node, NodeUuid, Port, PortUuid};

/// Larger bodies are refused unread: Ironic's largest (a node payload with big
/// `instance_info`/`driver_internal_info`) is a few KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// What one notification means to ironpxe.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `baremetal.node.*`: re-read this node (`deleted`: `delete.end`, drop it unread);
    /// `payload` is the payload's object (`ironic_object.data`), which may show that
    /// nothing ironpxe reads changed.
    Node {
        uuid: NodeUuid,
        deleted: bool,
        payload: Box<Map<String, Value>>,
        /// A final create or update (`create.end`, `update.end`): Ironic's `NodeCRUDPayload`,
        /// which has `driver_info` and `instance_info` too. An API update changes nothing
        /// else ironpxe reads but `shard`, which no node payload has (`driver_internal_info`
        /// is read-only in the API), so the payload laid over the node held is the node.
        complete: bool,
    },
    /// `baremetal.port.*`: `port` is the payload's port when the event is final (`.end`) and
    /// the payload has every field ironpxe reads; otherwise the port is re-read.
    Port {
        uuid: PortUuid,
        deleted: bool,
        port: Option<Box<Port>>,
    },
    /// Anything else Ironic emits (portgroups, volumes, deploy templates …).
    Ignored,
}

impl Event {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Node { .. } => "node",
            Event::Port { .. } => "port",
            Event::Ignored => "ignored",
        }
    }
}

/// Why a body is not a usable notification. Never holds the body itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is larger than the {MAX_BODY}-byte cap")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    Json(String),
    #[error("oslo.messaging envelope: {0}")]
    Envelope(&'static str),
    #[error("no string event_type")]
    NoEventType,
    #[error("{event_type}: {problem}")]
    Payload {
        event_type: String,
        problem: &'static str,
    },
}

/// Decodes one message body: oslo.messaging's envelope `{"oslo.version": "2.0",
/// "oslo.message": "<JSON>"}` or the bare message (oslo's `rabbit_…` drivers with envelopes
/// off), then `event_type` and `payload["ironic_object.data"]`.
pub fn decode(body: &[u8]) -> Result<Event, DecodeError> {
    if body.len() > MAX_BODY {
        return Err(DecodeError::TooLarge(body.len()));
    }
    let outer: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let msg = match outer.get("oslo.message") {
        Some(Value::String(inner)) => {
            if outer.get("oslo.version").and_then(Value::as_str) != Some("2.0") {
                return Err(DecodeError::Envelope("oslo.version is not \"2.0\""));
            }
            serde_json::from_str::<Value>(inner).map_err(|e| DecodeError::Json(e.to_string()))?
        }
        Some(_) => return Err(DecodeError::Envelope("oslo.message is not a string")),
        None => outer,
    };
    let event_type = msg
        .get("event_type")
        .and_then(Value::as_str)
        .ok_or(DecodeError::NoEventType)?;
    let (object, action) = match event_type.strip_prefix("baremetal.") {
        Some(rest) => match rest.split_once('.') {
            Some((object, action)) => (object, action),
            None => return Ok(Event::Ignored),
        },
        None => return Ok(Event::Ignored),
    };
    if object != "node" && object != "port" {
        return Ok(Event::Ignored);
    }
    if object == "node" && crud_before_or_failed(action) {
        return Ok(Event::Ignored);
    }
    let bad = |problem| DecodeError::Payload {
        event_type: event_type.chars().take(120).collect(),
        problem,
    };
    let data = msg
        .get("payload")
        .and_then(|p| p.get("ironic_object.data"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no payload[\"ironic_object.data\"] object"))?;
    let uuid = data
        .get("uuid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no string uuid in the payload"))?;
    let deleted = action == "delete.end";
    let last = action.ends_with(".end");
    if object == "node" {
        let uuid = NodeUuid::parse(uuid).map_err(|_| bad("the node uuid is not a UUID"))?;
        return Ok(Event::Node {
            uuid,
            deleted,
            payload: Box::new(data.clone()),
            complete: action == "update.end" || action == "create.end",
        });
    }
    let uuid = PortUuid::parse(uuid).map_err(|_| bad("the port uuid is not a UUID"))?;
    let port = match last && !deleted {
        true => complete_port(data, uuid).map(Box::new),
        false => None,
    };
    Ok(Event::Port {
        uuid,
        deleted,
        port,
    })
}

/// A node create, update or delete that has not been saved yet (`.start`: its payload is
/// what the API is about to ask the conductor for) or was refused (`.error`): nothing to read.
/// Its `.end` follows when it is saved.
fn crud_before_or_failed(action: &str) -> bool {
    matches!(
        action.split_once('.'),
        Some(("create" | "update" | "delete", "start" | "error"))
    )
}

/// The payload as a port, when it has every field ironpxe reads with a usable value and
/// names the uuid the event does; otherwise the port is re-read from the API.
fn complete_port(data: &Map<String, Value>, uuid: PortUuid) -> Option<Port> {
    let mut fields = Map::new();
    for key in ["uuid", "address", "node_uuid", "pxe_enabled", "extra"] {
        fields.insert(key.to_owned(), data.get(key)?.clone());
    }
    if !fields["node_uuid"].is_string() || !fields["pxe_enabled"].is_boolean() {
        return None;
    }
    let port: Port = serde_json::from_value(Value::Object(fields)).ok()?;
    (port.uuid == Some(uuid)).then_some(port)
}

/// True when none of `payloads` changes `cached` as ironpxe reads it: each payload's
/// `fields` that it has, laid over the cached node's JSON, read back as the same node. A
/// field a payload lacks (node payloads never carry both `driver_info` and
/// `driver_internal_info`) is taken as unchanged: the event's own operation does not change
/// it, and a change made without an event is the probes' to find. Anything that does not
/// read back means a read, never a guess.
pub fn changes_nothing<'a>(
    cached: &Node,
    payloads: impl IntoIterator<Item = &'a Map<String, Value>>,
    fields: &[&str],
) -> bool {
    payloads
        .into_iter()
        .all(|p| overlay(cached, [p], fields).is_some_and(|n| n == *cached))
}

/// `cached` with each payload's `fields` laid over it in turn: the node after those events
/// when every one is [complete](Event::Node) and none is older than the copy held. `None`
/// when the result does not read back as a node.
pub fn overlay<'a>(
    cached: &Node,
    payloads: impl IntoIterator<Item = &'a Map<String, Value>>,
    fields: &[&str],
) -> Option<Node> {
    let Ok(Value::Object(mut merged)) = serde_json::to_value(cached) else {
        return None;
    };
    for p in payloads {
        for f in fields {
            if let Some(v) = p.get(*f) {
                merged.insert((*f).to_owned(), v.clone());
            }
        }
    }
    serde_json::from_value::<Node>(Value::Object(merged)).ok()
}

/// The payload's `updated_at`: when Ironic saved what it describes.
fn updated_at(payload: &Map<String, Value>) -> Option<Stamp> {
    Stamp::parse(payload.get("updated_at")?.as_str()?)
}

/// The payloads not older than `held` (the newest `updated_at` already taken for the node:
/// API workers emit independently, so an older one can arrive late), oldest first, with the
/// newest `updated_at` among them. A payload without a sane `updated_at` is kept and counts as
/// undated (first): one later than `ceiling` (our clock plus a tolerance) would otherwise make
/// every later payload of the node look old.
pub fn not_older(
    payloads: &[Map<String, Value>],
    held: Option<Stamp>,
    ceiling: Stamp,
) -> (Vec<&Map<String, Value>>, Option<Stamp>) {
    let mut kept: Vec<_> = payloads
        .iter()
        .map(|p| (updated_at(p).filter(|at| *at <= ceiling), p))
        .filter(|(at, _)| held.is_none_or(|h| at.is_none_or(|at| at >= h)))
        .collect();
    kept.sort_by_key(|(at, _)| *at);
    let newest = kept.iter().filter_map(|(at, _)| *at).max();
    (kept.into_iter().map(|(_, p)| p).collect(), newest)
}

/// Node payloads one burst keeps per node; more mean a read anyway.
const MAX_PAYLOADS: usize = 16;

/// A burst of events, one entry per node and per port, in arrival order's net effect: a
/// deletion is final (uuids are never reused), otherwise the latest event wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub nodes: BTreeMap<NodeUuid, NodeChange>,
    pub ports: BTreeMap<PortUuid, PortChange>,
}

/// What a burst says about one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeChange {
    pub deleted: bool,
    /// Every payload of the burst; `None`: too many, read the node.
    pub payloads: Option<Vec<Map<String, Value>>>,
    /// Every event of the burst was [complete](Event::Node).
    pub complete: bool,
}

/// What to do about one port.
#[derive(Clone, Debug, PartialEq)]
pub enum PortChange {
    Deleted,
    /// Take this copy (a complete `.end` payload).
    Upsert(Box<Port>),
    /// Re-read it from the API.
    Fetch,
}

impl Batch {
    pub fn add(&mut self, e: Event) {
        match e {
            Event::Node {
                uuid,
                deleted,
                payload,
                complete,
            } => {
                let slot = self.nodes.entry(uuid).or_insert_with(|| NodeChange {
                    deleted: false,
                    payloads: Some(Vec::new()),
                    complete: true,
                });
                slot.deleted |= deleted;
                slot.complete &= complete;
                if let Some(p) = &mut slot.payloads {
                    match p.len() < MAX_PAYLOADS {
                        true => p.push(*payload),
                        false => slot.payloads = None,
                    }
                }
            }
            Event::Port {
                uuid,
                deleted,
                port,
            } => {
                let slot = self.ports.entry(uuid).or_insert(PortChange::Fetch);
                if *slot != PortChange::Deleted {
                    *slot = match (deleted, port) {
                        (true, _) => PortChange::Deleted,
                        (false, Some(p)) => PortChange::Upsert(p),
                        (false, None) => PortChange::Fetch,
                    };
                }
            }
            Event::Ignored => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.ports.is_empty()
    }

    pub fn len(&self) -> usize {
        self.nodes.len() + self.ports.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every message a real Ironic 39 emitted in `tests/ironic_notify.rs`'s capture (node
    /// created, port created, manage, inspect (failed), PATCHes, power, maintenance, port and
    /// node deleted), as the bodies arrived on the queue.
    const CAPTURED: &str = include_str!("../../../tests/fixtures/ironic/notifications.jsonl");

    const NODE: &str = "0e1cdc31-1873-45f8-99e8-c27784257663";
    const PORT: &str = "fe5e90f5-3544-45dd-b524-bd78d7e06137";

    fn envelope(msg: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": msg.to_string()}))
            .expect("json")
    }

    fn node_msg(event_type: &str, uuid: Value) -> Value {
        json!({
            "event_type": event_type,
            "priority": "INFO",
            "payload": {"ironic_object.name": "NodePayload", "ironic_object.data": {"uuid": uuid}},
        })
    }

    fn port_data() -> Value {
        json!({"uuid": PORT, "address": "52:54:00:12:34:56", "node_uuid": NODE,
               "pxe_enabled": true, "extra": {"client-id": null}})
    }

    fn port_msg(event_type: &str, data: Value) -> Value {
        json!({"event_type": event_type, "priority": "INFO",
               "payload": {"ironic_object.name": "PortCRUDPayload", "ironic_object.data": data}})
    }

    #[test]
    fn every_captured_message_decodes_to_its_node_or_port() {
        let node = NodeUuid::parse(NODE).expect("uuid");
        let port = PortUuid::parse(PORT).expect("uuid");
        let mut kinds = BTreeMap::<String, usize>::new();
        for line in CAPTURED.lines() {
            let outer: Value = serde_json::from_str(line).expect("fixture line");
            let inner: Value =
                serde_json::from_str(outer["oslo.message"].as_str().expect("str")).expect("json");
            let et = inner["event_type"].as_str().expect("event_type");
            let e = decode(line.as_bytes()).unwrap_or_else(|e| panic!("{et}: {e}"));
            *kinds.entry(e.kind().into()).or_default() += 1;
            match e {
                Event::Node { uuid, deleted, .. } => {
                    assert!(et.starts_with("baremetal.node."), "{et}");
                    assert_eq!(uuid, node, "{et}");
                    assert_eq!(deleted, et == "baremetal.node.delete.end", "{et}");
                }
                Event::Port {
                    uuid,
                    deleted,
                    port: p,
                } => {
                    assert!(et.starts_with("baremetal.port."), "{et}");
                    assert_eq!(uuid, port, "{et}");
                    assert_eq!(deleted, et == "baremetal.port.delete.end", "{et}");
                    let final_upsert = et.ends_with(".end") && !deleted;
                    assert_eq!(p.is_some(), final_upsert, "{et}");
                    if let Some(p) = p {
                        assert_eq!(p.address.to_string(), "52:54:00:12:34:56");
                        assert_eq!(p.node_uuid, Some(node));
                        assert!(p.pxe_enabled);
                        assert!(!p.is_infiniband());
                    }
                }
                Event::Ignored => assert!(
                    et.ends_with("node.create.start")
                        || et.ends_with("node.update.start")
                        || et.ends_with("node.delete.start"),
                    "{et} ignored"
                ),
            }
        }
        assert_eq!(kinds.get("ignored"), Some(&4), "{kinds:?}");
        assert_eq!(kinds.get("node"), Some(&18), "{kinds:?}");
        assert_eq!(kinds.get("port"), Some(&5), "{kinds:?}");
    }

    #[test]
    fn the_captured_error_priority_event_names_its_node() {
        let line = CAPTURED
            .lines()
            .find(|l| l.contains("provision_set.error"))
            .expect("captured provision_set.error");
        assert!(matches!(
            decode(line.as_bytes()),
            Ok(Event::Node { deleted: false, .. })
        ));
    }

    #[test]
    fn an_unenveloped_message_is_accepted() {
        let body =
            serde_json::to_vec(&node_msg("baremetal.node.update.end", json!(NODE))).expect("json");
        assert!(matches!(
            decode(&body),
            Ok(Event::Node { uuid, deleted: false, .. }) if uuid == NodeUuid::parse(NODE).expect("uuid")
        ));
    }

    #[test]
    fn node_events_of_every_kind_name_the_node() {
        for et in [
            "baremetal.node.provision_set.start",
            "baremetal.node.provision_set.end",
            "baremetal.node.provision_set.success",
            "baremetal.node.provision_set.error",
            "baremetal.node.update.end",
            "baremetal.node.create.end",
            "baremetal.node.power_set.end",
            "baremetal.node.maintenance_set.end",
            "baremetal.node.console_set.end",
            "baremetal.node.power_state_corrected.success",
        ] {
            let e = decode(&envelope(&node_msg(et, json!(NODE)))).expect(et);
            assert!(
                matches!(&e, Event::Node { uuid, deleted: false, payload, complete }
                    if *uuid == NodeUuid::parse(NODE).expect("uuid") && payload["uuid"] == json!(NODE)
                        && *complete == (et.ends_with(".update.end") || et.ends_with(".create.end"))),
                "{et}: {e:?}"
            );
        }
        let e = decode(&envelope(&node_msg(
            "baremetal.node.delete.end",
            json!(NODE),
        )));
        assert!(matches!(e, Ok(Event::Node { deleted: true, .. })));
    }

    #[test]
    fn other_events_are_ignored() {
        for et in [
            "baremetal.node.create.start",
            "baremetal.node.update.start",
            "baremetal.node.update.error",
            "baremetal.node.delete.start",
            "baremetal.node.delete.error",
            "baremetal.portgroup.create.end",
            "baremetal.volumeconnector.update.end",
            "baremetal.deploy_template.create.end",
            "compute.instance.create.end",
            "baremetal",
            "baremetal.node",
            "",
        ] {
            assert_eq!(
                decode(&envelope(&node_msg(et, json!(NODE)))),
                Ok(Event::Ignored),
                "{et:?}"
            );
        }
    }

    #[test]
    fn a_final_port_event_carries_the_port_and_others_ask_for_a_read() {
        let body = envelope(&port_msg("baremetal.port.update.end", port_data()));
        match decode(&body) {
            Ok(Event::Port {
                port: Some(p),
                deleted: false,
                ..
            }) => assert_eq!(p.uuid, Some(PortUuid::parse(PORT).expect("uuid"))),
            other => panic!("{other:?}"),
        }
        for et in [
            "baremetal.port.update.start",
            "baremetal.port.create.error",
            "baremetal.port.delete.end",
        ] {
            match decode(&envelope(&port_msg(et, port_data()))) {
                Ok(Event::Port {
                    port: None,
                    deleted,
                    ..
                }) => {
                    assert_eq!(deleted, et.ends_with("delete.end"), "{et}")
                }
                other => panic!("{et}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_incomplete_or_odd_port_payload_means_a_read_not_a_guess() {
        let mut cases = Vec::new();
        for key in ["address", "node_uuid", "pxe_enabled", "extra"] {
            let mut d = port_data();
            d.as_object_mut().expect("object").remove(key);
            cases.push((format!("without {key}"), d));
        }
        let odd = [
            ("address", json!("not-a-mac")),
            ("address", json!(42)),
            ("node_uuid", json!(null)),
            ("node_uuid", json!("zzz")),
            ("pxe_enabled", json!(null)),
            ("pxe_enabled", json!("yes")),
            ("extra", json!([1])),
        ];
        for (key, v) in odd {
            let mut d = port_data();
            d[key] = v.clone();
            cases.push((format!("{key} = {v}"), d));
        }
        for (what, d) in cases {
            match decode(&envelope(&port_msg("baremetal.port.create.end", d))) {
                Ok(Event::Port {
                    port: None,
                    deleted: false,
                    ..
                }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_bodies_are_errors_never_panics() {
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(decode(&big), Err(DecodeError::TooLarge(MAX_BODY + 1)));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not JSON"),
            (b"\xff\xfe".to_vec(), "not JSON"),
            (b"[1,2]".to_vec(), "event_type"),
            (b"null".to_vec(), "event_type"),
            (br#"{"oslo.message": 5}"#.to_vec(), "not a string"),
            (
                br#"{"oslo.version": "1.0", "oslo.message": "{}"}"#.to_vec(),
                "2.0",
            ),
            (
                br#"{"oslo.version": "2.0", "oslo.message": "{"}"#.to_vec(),
                "not JSON",
            ),
            (br#"{"event_type": 7}"#.to_vec(), "event_type"),
            (
                serde_json::to_vec(&json!({"event_type": "baremetal.node.update.end"}))
                    .expect("json"),
                "payload",
            ),
            (
                serde_json::to_vec(&json!({"event_type": "baremetal.node.update.end",
                    "payload": {"ironic_object.data": []}}))
                .expect("json"),
                "payload",
            ),
            (
                envelope(&node_msg("baremetal.node.update.end", json!(null))),
                "uuid",
            ),
            (
                envelope(&node_msg("baremetal.node.update.end", json!(12))),
                "uuid",
            ),
            (
                envelope(&node_msg("baremetal.node.update.end", json!("../../etc"))),
                "not a UUID",
            ),
            (
                envelope(&port_msg("baremetal.port.update.end", json!({"uuid": "x"}))),
                "not a UUID",
            ),
        ];
        for (body, want) in cases {
            let e = decode(&body).expect_err(&String::from_utf8_lossy(&body));
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        }
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(decode(deep.as_bytes()), Err(DecodeError::Json(_))));
    }

    #[test]
    fn an_error_never_echoes_a_long_event_type_whole() {
        let et = format!("baremetal.node.{}", "x".repeat(10_000));
        let e = decode(&envelope(&node_msg(&et, json!(null)))).expect_err("no uuid");
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
    }

    #[test]
    fn a_payload_older_than_the_one_taken_is_dropped_and_the_rest_ordered() {
        let at = |t: Option<&str>| {
            let mut m = Map::new();
            if let Some(t) = t {
                m.insert("updated_at".into(), json!(t));
            }
            m
        };
        let (t1, t2, t3) = (
            "2026-12-03T10:00:01+00:00",
            "2026-12-03T10:00:02+00:00",
            "2026-12-03T10:00:03+00:00",
        );
        let burst = [at(Some(t3)), at(Some(t1)), at(None), at(Some(t2))];
        let stamp = |t| Stamp::parse(t).expect("stamp");
        let ceiling = stamp("2026-12-03T10:10:00+00:00");
        let (kept, newest) = not_older(&burst, None, ceiling);
        assert_eq!(
            kept,
            [&burst[2], &burst[1], &burst[3], &burst[0]],
            "oldest first"
        );
        assert_eq!(newest, Some(stamp(t3)));
        let (kept, newest) = not_older(&burst, Some(stamp(t2)), ceiling);
        assert_eq!(
            kept,
            [&burst[2], &burst[3], &burst[0]],
            "t1 is older than t2, taken"
        );
        assert_eq!(newest, Some(stamp(t3)));
        let late = [at(Some(t1))];
        assert_eq!(not_older(&late, Some(stamp(t2)), ceiling), (vec![], None));
        // A stamp from the far future is kept but never held: it cannot silence the node.
        let hostile = [at(Some("2999-01-01T00:00:00+00:00"))];
        let (kept, newest) = not_older(&hostile, Some(stamp(t2)), ceiling);
        assert_eq!((kept, newest), (vec![&hostile[0]], None));
    }

    #[test]
    fn a_batch_coalesces_a_burst_and_a_deletion_is_final() {
        let n = NodeUuid::parse(NODE).expect("uuid");
        let p = PortUuid::parse(PORT).expect("uuid");
        let full = |et| decode(&envelope(&port_msg(et, port_data()))).expect(et);
        let event = |deleted, complete| Event::Node {
            uuid: n,
            deleted,
            payload: Box::default(),
            complete,
        };
        let ev = |deleted| event(deleted, true);
        let mut b = Batch::default();
        assert!(b.is_empty());
        for _ in 0..3 {
            b.add(ev(false));
        }
        assert_eq!(b.nodes[&n].payloads.as_ref().map(Vec::len), Some(3));
        assert!(
            b.nodes[&n].complete,
            "three updates: their payloads make the node"
        );
        b.add(event(false, false));
        b.add(ev(false));
        assert!(
            !b.nodes[&n].complete,
            "one provision-state event in the burst: a read"
        );
        b.add(Event::Ignored);
        assert_eq!(b.len(), 1);
        b.add(full("baremetal.port.update.start"));
        assert_eq!(b.ports[&p], PortChange::Fetch);
        b.add(full("baremetal.port.update.end"));
        assert!(matches!(b.ports[&p], PortChange::Upsert(_)));
        b.add(ev(true));
        b.add(ev(false));
        assert!(b.nodes[&n].deleted, "a deletion is final");
        for _ in 0..MAX_PAYLOADS - 5 {
            b.add(ev(false));
        }
        assert_eq!(
            b.nodes[&n].payloads, None,
            "too many payloads: read the node"
        );
        b.add(full("baremetal.port.delete.end"));
        b.add(full("baremetal.port.update.end"));
        assert_eq!(b.ports[&p], PortChange::Deleted);
        assert_eq!(b.len(), 2);
    }

    /// The captured payloads of one event type, in order.
    fn captured(event_type: &str) -> Vec<Map<String, Value>> {
        CAPTURED
            .lines()
            .filter_map(|l| {
                let outer: Value = serde_json::from_str(l).ok()?;
                let inner: Value = serde_json::from_str(outer["oslo.message"].as_str()?).ok()?;
                (inner["event_type"] == event_type)
                    .then(|| inner["payload"]["ironic_object.data"].as_object().cloned())
                    .flatten()
            })
            .collect()
    }

    const FIELDS: &[&str] = &[
        "uuid",
        "name",
        "provision_state",
        "target_provision_state",
        "boot_interface",
        "deploy_interface",
        "inspect_interface",
        "driver_info",
        "instance_info",
        "properties",
        "driver_internal_info",
        "extra",
        "resource_class",
        "conductor_group",
        "owner",
        "shard",
    ];

    /// `base` with the `FIELDS` that `payload` has laid over it.
    fn overlaid(base: &Node, payload: &Map<String, Value>) -> Node {
        let mut n = serde_json::to_value(base).expect("json");
        for f in FIELDS {
            if let Some(v) = payload.get(*f) {
                n[*f] = v.clone();
            }
        }
        serde_json::from_value(n).expect("node")
    }

    #[test]
    fn a_payload_that_changes_nothing_ironpxe_reads_costs_no_read() {
        // The node as ironpxe had it after create.end (its full CRUD payload).
        let created = captured("baremetal.node.create.end").remove(0);
        let cached: Node = serde_json::from_value(Value::Object(created)).expect("node");

        // A provision-state change is a change, start and end.
        let verifying = captured("baremetal.node.provision_set.start");
        assert!(!changes_nothing(&cached, &verifying[..1], FIELDS));
        let manage_end = captured("baremetal.node.provision_set.end");
        assert!(!changes_nothing(&cached, &manage_end[..1], FIELDS));
        // …and nothing once ironpxe has read it.
        let manageable = overlaid(&cached, &manage_end[0]);
        assert!(changes_nothing(&manageable, &manage_end[..1], FIELDS));

        // Power and maintenance changes after inspect failed change nothing ironpxe reads.
        let error = captured("baremetal.node.provision_set.error").remove(0);
        let failed = overlaid(&cached, &error);
        let later: Vec<_> = captured("baremetal.node.power_set.start")
            .into_iter()
            .chain(captured("baremetal.node.power_set.end"))
            .chain(captured("baremetal.node.maintenance_set.start"))
            .chain(captured("baremetal.node.maintenance_set.end"))
            .filter(|p| p["provision_state"] == json!("inspect failed"))
            .collect();
        assert!(later.len() >= 4, "{}", later.len());
        assert!(changes_nothing(&failed, &later, FIELDS));

        // One changing payload among unchanged ones is enough; odd values mean a read.
        let mut renamed = later[0].clone();
        renamed.insert("name".into(), json!("renamed"));
        assert!(!changes_nothing(
            &failed,
            &[later[0].clone(), renamed],
            FIELDS
        ));
        for (k, v) in [("provision_state", json!(5)), ("driver_info", json!("x"))] {
            let mut odd = later[0].clone();
            odd.insert(k.into(), v);
            assert!(!changes_nothing(&failed, &[odd], FIELDS), "{k}");
        }
        // A field ironpxe does not read is not compared.
        let mut powered = later[0].clone();
        powered.insert("power_state".into(), json!("power on"));
        assert!(changes_nothing(&failed, &[powered], FIELDS));
    }
}
