//! Inspection as Ironic does it: the port changes Ironic 39's in-band inspection would make
//! to a node for an ironic-python-agent inventory, under the same `[inspector]` settings.
//!
//! Ironic's default hooks `validate-interfaces` and `ports`
//! (`drivers/modules/inspector/hooks/validate_interfaces.py`, `ports.py`) decide it:
//!
//! - `get_interfaces`: an interface without a name or whose `mac_address` is not
//!   `xx:xx:xx:xx:xx:xx` is dropped; interfaces are keyed by name, so a later one of the same
//!   name replaces an earlier one; `pxe_enabled` is "its MAC is `boot.pxe_interface`" (after
//!   dropping a PXELINUX `01-`/`20-` prefix) — all false without `boot.pxe_interface`.
//! - `validate_interfaces` (which ones may become ports): not `lo` nor a loopback IP; with
//!   `add_ports = pxe` only the PXE interface, but every one when there is no
//!   `boot.pxe_interface`; with `active` only those with an IP. None left fails inspection.
//! - `add_ports`: a port per valid interface (unless `add_ports = disabled`) with its
//!   `pxe_enabled` and, when the agent's `client_id` is truthy, `extra.client-id` verbatim; an
//!   address enrolled anywhere already is skipped (`MACAlreadyExists`).
//! - `update_ports`, over the node's ports after that: `keep_ports = present` deletes ports
//!   whose address no interface has, `added` those no valid interface has;
//!   `update_pxe_enabled` sets `pxe_enabled` to "is the PXE interface's MAC" (so all false
//!   without `boot.pxe_interface`); a truthy agent `client_id` that differs from the port's
//!   (string comparison: case counts) replaces it.
//!
//! The agent reports an InfiniBand interface under its IB MAC with its `client_id`
//! (IPA 13 `hardware_managers/mlnx.py`), so a port enrolled under the GUID's first six bytes
//! is not that interface's port: Ironic creates one under the IB MAC and leaves the old one
//! (with `pxe_enabled` cleared) unless `keep_ports` removes it. Pure: the CLI does the I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::model::addr::{ClientId, Mac};
use crate::model::node::{python_truthy, NodeUuid, Port, PortUuid};

/// `[inspector] add_ports`: which inventory interfaces become ports.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddPorts {
    All,
    Active,
    #[default]
    Pxe,
    Disabled,
}

/// `[inspector] keep_ports`: which enrolled ports survive inspection.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeepPorts {
    #[default]
    All,
    Present,
    Added,
}

/// A setting value Ironic does not accept.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{value:?} is not one of {choices}")]
pub struct BadChoice {
    value: String,
    choices: &'static str,
}

macro_rules! choices {
    ($ty:ident { $($v:ident => $s:literal),* }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s),* }
            }
        }
        impl FromStr for $ty {
            type Err = BadChoice;
            fn from_str(s: &str) -> Result<Self, BadChoice> {
                match s {
                    $($s => Ok($ty::$v),)*
                    _ => Err(BadChoice {
                        value: s.to_owned(),
                        choices: concat!($($s, " "),*).trim_end(),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
choices!(AddPorts { All => "all", Active => "active", Pxe => "pxe", Disabled => "disabled" });
choices!(KeepPorts { All => "all", Present => "present", Added => "added" });

/// `[inspector]`: Ironic's option names and defaults (`ironic/conf/inspector.py`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct InspectorSettings {
    pub add_ports: AddPorts,
    pub keep_ports: KeepPorts,
    pub update_pxe_enabled: bool,
}

impl Default for InspectorSettings {
    fn default() -> Self {
        InspectorSettings {
            add_ports: AddPorts::Pxe,
            keep_ports: KeepPorts::All,
            update_pxe_enabled: true,
        }
    }
}

impl fmt::Display for InspectorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "add_ports={} keep_ports={} update_pxe_enabled={}",
            self.add_ports, self.keep_ports, self.update_pxe_enabled
        )
    }
}

/// One entry of `inventory.interfaces`, the fields inspection reads, as the agent sent them.
/// Text fields hold `None` for what Python finds falsy (`null`, `""`, `0`, `false`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InventoryInterface {
    pub name: Option<String>,
    /// Verbatim: Ironic validates it (and so does [`plan`]), it is not parsed leniently here.
    pub mac_address: String,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    /// Verbatim, as Ironic stores it in `extra.client-id`.
    pub client_id: Option<String>,
}

/// The parts of an agent inventory inspection reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub interfaces: Vec<InventoryInterface>,
    /// `boot.pxe_interface`: the agent's `BOOTIF` kernel parameter, verbatim.
    pub pxe_interface: Option<String>,
}

/// Why an inventory is refused before any decision.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InventoryError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error(
        "not an inventory: expected {{\"inventory\": {{\"interfaces\": [...]}}}} \
         (`baremetal node inventory show <node> -f json`) or {{\"interfaces\": [...]}}"
    )]
    NotInventory,
    #[error("inventory.interfaces is empty: Ironic's continue_inspection API refuses it")]
    NoInterfaces,
    #[error("inventory.interfaces[{index}] is not an object")]
    NotObject { index: usize },
    #[error("inventory.interfaces[{index}].{field}: {problem}")]
    Field {
        index: usize,
        field: &'static str,
        problem: String,
    },
    #[error("inventory.boot: {0}")]
    Boot(String),
}

/// Reads an inventory, wrapped as `baremetal node inventory show` prints it or bare. Ironic's
/// API schema (`api/controllers/v1/ramdisk.py`) requires a non-empty `interfaces` list of
/// objects with a string `mac_address`; a field Ironic's code would crash on or store as a
/// non-string (a truthy non-string name, IP, client-id or `boot.pxe_interface`) is refused
/// here, naming it.
pub fn parse_inventory(bytes: &[u8]) -> Result<Inventory, InventoryError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| InventoryError::Json(e.to_string()))?;
    let inv = match doc.get("inventory") {
        Some(inv) => inv,
        None => &doc,
    };
    let inv = inv.as_object().ok_or(InventoryError::NotInventory)?;
    let list = inv
        .get("interfaces")
        .and_then(Value::as_array)
        .ok_or(InventoryError::NotInventory)?;
    if list.is_empty() {
        return Err(InventoryError::NoInterfaces);
    }
    let interfaces = list
        .iter()
        .enumerate()
        .map(|(index, v)| parse_interface(index, v))
        .collect::<Result<_, _>>()?;
    let pxe_interface = match inv.get("boot") {
        None => None,
        Some(Value::Object(b)) => text_field(b, "pxe_interface")
            .map_err(|p| InventoryError::Boot(format!("pxe_interface: {p}")))?,
        Some(other) => {
            return Err(InventoryError::Boot(format!(
                "is {other}, not an object (Ironic's inspection fails on it)"
            )))
        }
    };
    Ok(Inventory {
        interfaces,
        pxe_interface,
    })
}

fn parse_interface(index: usize, v: &Value) -> Result<InventoryInterface, InventoryError> {
    let o = v.as_object().ok_or(InventoryError::NotObject { index })?;
    let field = |field: &'static str| {
        text_field(o, field).map_err(|problem| InventoryError::Field {
            index,
            field,
            problem,
        })
    };
    let mac_address = match o.get("mac_address") {
        Some(Value::String(s)) => s.clone(),
        other => {
            return Err(InventoryError::Field {
                index,
                field: "mac_address",
                problem: format!(
                    "is {}, not a string: Ironic's continue_inspection API refuses it",
                    other.map_or_else(|| "missing".to_owned(), Value::to_string)
                ),
            })
        }
    };
    Ok(InventoryInterface {
        name: field("name")?,
        mac_address,
        ipv4_address: field("ipv4_address")?,
        ipv6_address: field("ipv6_address")?,
        client_id: field("client_id")?,
    })
}

/// A text field by Python truthiness: falsy values are `None`, a string is kept verbatim,
/// any other truthy value is refused.
fn text_field(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(v) if !python_truthy(v) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("is {other}, not a string")),
    }
}

/// An enrolled port as inspection sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolledPort {
    pub uuid: Option<PortUuid>,
    pub address: Mac,
    pub pxe_enabled: bool,
    /// `extra["client-id"]` as stored: any JSON value (compared with the agent's as Ironic
    /// does, verbatim).
    pub client_id: Option<Value>,
}

impl From<&Port> for EnrolledPort {
    fn from(p: &Port) -> Self {
        EnrolledPort {
            uuid: p.uuid,
            address: p.address,
            pxe_enabled: p.pxe_enabled,
            client_id: p.extra.get(Port::CLIENT_ID_KEY).cloned(),
        }
    }
}

/// Why an interface never reaches `all_interfaces` (`get_interfaces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    NoName,
    InvalidMac,
    /// Python's check (`re.match` with `$`) lets one trailing newline through; ironpxe does
    /// not (see docs/ironic-parity.md, 5).
    MacWithNewline,
    /// A later interface of the same name replaced it.
    Renamed,
}

/// Why an interface in `all_interfaces` is not valid (`validate_interfaces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    Loopback,
    NotPxe,
    NoIp,
}

/// What inspection made of one inventory interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Dropped(Dropped),
    Skipped(Skipped),
    /// Valid: a port is created for it unless `add_ports = disabled` or its address is taken.
    Valid,
}

impl Verdict {
    /// One line for the operator.
    pub fn describe(self, add_ports: AddPorts) -> String {
        match self {
            Verdict::Dropped(Dropped::NoName) => "ignored: no name".into(),
            Verdict::Dropped(Dropped::InvalidMac) => {
                "ignored: mac_address is not xx:xx:xx:xx:xx:xx".into()
            }
            Verdict::Dropped(Dropped::MacWithNewline) => {
                "ignored: mac_address ends in a newline (Ironic would keep it; ironpxe does not)"
                    .into()
            }
            Verdict::Dropped(Dropped::Renamed) => {
                "ignored: a later interface has the same name".into()
            }
            Verdict::Skipped(Skipped::Loopback) => "not added: loopback".into(),
            Verdict::Skipped(Skipped::NotPxe) => {
                "not added: did not PXE-boot (add_ports=pxe)".into()
            }
            Verdict::Skipped(Skipped::NoIp) => "not added: no IP address (add_ports=active)".into(),
            Verdict::Valid if add_ports == AddPorts::Disabled => {
                "valid, not added (add_ports=disabled)".into()
            }
            Verdict::Valid => "valid: added as a port".into(),
        }
    }
}

/// One inventory interface and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceOutcome {
    pub name: Option<String>,
    /// As the agent sent it.
    pub mac_address: String,
    /// The validated address; `None` when it was not one.
    pub mac: Option<Mac>,
    /// Ironic's `pxe_enabled` for it: its MAC is `boot.pxe_interface`.
    pub pxe: bool,
    pub client_id: Option<String>,
    pub verdict: Verdict,
    /// Position in Ironic's name-keyed dict: a replacing interface takes the replaced one's.
    slot: usize,
}

/// A change Ironic's inspection would make to the node's ports.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create {
        address: Mac,
        pxe_enabled: bool,
        client_id: Option<String>,
    },
    /// Only the fields that change are set.
    Update {
        port: Option<PortUuid>,
        address: Mac,
        pxe_enabled: Option<bool>,
        client_id: Option<String>,
    },
    Delete {
        port: Option<PortUuid>,
        address: Mac,
    },
}

impl Change {
    /// The request body: `POST /v1/ports` for a create, a JSON patch for an update.
    pub fn body(&self, node: Option<&NodeUuid>) -> Value {
        match self {
            Change::Create {
                address,
                pxe_enabled,
                client_id,
            } => {
                let mut v = json!({"address": address.to_string(), "pxe_enabled": pxe_enabled});
                if let Some(n) = node {
                    v["node_uuid"] = json!(n.to_string());
                }
                v["extra"] = match client_id {
                    Some(c) => json!({ Port::CLIENT_ID_KEY: c }),
                    None => json!({}),
                };
                v
            }
            Change::Update {
                pxe_enabled,
                client_id,
                ..
            } => {
                let mut patch = Vec::new();
                if let Some(p) = pxe_enabled {
                    patch.push(json!({"op": "replace", "path": "/pxe_enabled", "value": p}));
                }
                if let Some(c) = client_id {
                    patch.push(json!({"op": "add", "path": "/extra/client-id", "value": c}));
                }
                Value::Array(patch)
            }
            Change::Delete { .. } => Value::Null,
        }
    }

    /// The equivalent `baremetal` command line.
    pub fn command(&self, node: Option<&NodeUuid>) -> String {
        let port_ref = |port: &Option<PortUuid>, address: &Mac| {
            port.map_or_else(|| format!("<port {address}>"), |p| p.to_string())
        };
        match self {
            Change::Create {
                address,
                pxe_enabled,
                client_id,
            } => {
                let node = node.map_or_else(|| "<node>".to_owned(), |n| n.to_string());
                let extra = client_id
                    .as_ref()
                    .map(|c| format!(" --extra {}", shell_word(&format!("client-id={c}"))))
                    .unwrap_or_default();
                format!("baremetal port create --node {node} --pxe-enabled {pxe_enabled}{extra} {address}")
            }
            Change::Update {
                port,
                address,
                pxe_enabled,
                client_id,
            } => {
                let mut cmd = format!("baremetal port set {}", port_ref(port, address));
                if let Some(p) = pxe_enabled {
                    cmd.push_str(&format!(" --pxe-enabled {p}"));
                }
                if let Some(c) = client_id {
                    let arg = shell_word(&format!("client-id={c}"));
                    cmd.push_str(&format!(" --extra {arg}"));
                }
                cmd
            }
            Change::Delete { port, address } => {
                format!("baremetal port delete {}", port_ref(port, address))
            }
        }
    }
}

/// One shell word: verbatim when it is plainly safe, else single-quoted (the agent's
/// client-id is free text, and the command is meant to be pasted).
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || ":._=-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A port as it would be after inspection.
#[derive(Clone, Debug, PartialEq)]
pub struct PortAfter {
    pub port: Option<PortUuid>,
    pub address: Mac,
    pub pxe_enabled: bool,
    pub client_id: Option<Value>,
}

/// Everything inspection would decide.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// `boot.pxe_interface` as Ironic reads it (`get_pxe_mac`).
    pub pxe_mac: Option<String>,
    pub interfaces: Vec<InterfaceOutcome>,
    /// Creates first, then the node's ports in order (Ironic's order).
    pub changes: Vec<Change>,
    /// The node's ports afterwards: the enrolled survivors, then the created ones.
    pub ports_after: Vec<PortAfter>,
    /// Things Ironic does silently that an operator should know.
    pub notes: Vec<String>,
}

/// Why Ironic's inspection would fail (and change nothing).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InspectionError {
    #[error("no valid network interfaces: every interface lacks a name or a valid mac_address; Ironic's inspection fails and changes no port")]
    NoValidInterfaces,
    #[error("no network interfaces match the configuration (add_ports={0}); Ironic's inspection fails and changes no port")]
    NoMatchingInterfaces(AddPorts),
}

/// `get_pxe_mac`: `boot.pxe_interface` without a PXELINUX `NN-` prefix, dashes as colons,
/// lower case. Not validated (it is only compared).
pub fn pxe_mac(pxe_interface: Option<&str>) -> Option<String> {
    let raw = pxe_interface.filter(|s| !s.is_empty())?;
    let mac = match raw.split_once('-') {
        Some((_, rest)) => rest.replace('-', ":"),
        None => raw.to_owned(),
    };
    (!mac.is_empty()).then(|| mac.to_lowercase())
}

/// Ironic's MAC rule (oslo `netutils.is_valid_mac`): six colon-separated hex pairs, any case.
pub fn ironic_mac(raw: &str) -> Result<Mac, Dropped> {
    let (body, newline) = match raw.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let bytes = body.as_bytes();
    let shape = bytes.len() == 17
        && bytes.iter().enumerate().all(|(i, b)| match i % 3 {
            2 => *b == b':',
            _ => b.is_ascii_hexdigit(),
        });
    match (shape, newline) {
        (false, _) => Err(Dropped::InvalidMac),
        (true, true) => Err(Dropped::MacWithNewline),
        (true, false) => Mac::parse(body).map_err(|_| Dropped::InvalidMac),
    }
}

/// `utils.is_loopback`: a loopback IP literal (IPv6 may carry a `%scope`), or `localhost`.
fn is_loopback(ip: &str) -> bool {
    if let Ok(a) = ip.parse::<IpAddr>() {
        return a.is_loopback();
    }
    if let Some((addr, scope)) = ip.split_once('%') {
        if !scope.is_empty() && !scope.contains('%') {
            if let Ok(a) = addr.parse::<std::net::Ipv6Addr>() {
                return a.is_loopback();
            }
        }
    }
    ip == "localhost" || ip == "localhost.localdomain"
}

/// The interface's IP as `validate_interfaces` reads it: IPv4, else IPv6 without its scope.
fn interface_ip(i: &InventoryInterface) -> Option<String> {
    let v6 = i
        .ipv6_address
        .as_deref()
        .map(|s| s.split('%').next().unwrap_or_default().to_owned());
    i.ipv4_address.clone().or(v6).filter(|s| !s.is_empty())
}

/// `get_interfaces` and `validate_interfaces`: every interface's verdict and its MAC.
fn judge(inv: &Inventory, add_ports: AddPorts, pxe: Option<&str>) -> Vec<InterfaceOutcome> {
    let mut out: Vec<InterfaceOutcome> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for i in &inv.interfaces {
        let mut o = InterfaceOutcome {
            name: i.name.clone(),
            mac_address: i.mac_address.clone(),
            mac: None,
            pxe: false,
            client_id: i.client_id.clone(),
            verdict: Verdict::Valid,
            slot: out.len(),
        };
        let mac = ironic_mac(&i.mac_address);
        o.mac = mac.ok();
        o.pxe = o.mac.is_some_and(|m| Some(m.to_string().as_str()) == pxe);
        o.verdict = match (&i.name, mac) {
            (None, _) => Verdict::Dropped(Dropped::NoName),
            (_, Err(d)) => Verdict::Dropped(d),
            (Some(name), Ok(_)) => {
                if let Some(prev) = by_name.insert(name, out.len()) {
                    out[prev].verdict = Verdict::Dropped(Dropped::Renamed);
                    o.slot = out[prev].slot;
                }
                validity(i, name, o.pxe, add_ports, pxe.is_some())
            }
        };
        out.push(o);
    }
    out
}

fn validity(
    i: &InventoryInterface,
    name: &str,
    pxe: bool,
    add_ports: AddPorts,
    have_pxe_mac: bool,
) -> Verdict {
    let ip = interface_ip(i);
    if name == "lo" || ip.as_deref().is_some_and(is_loopback) {
        Verdict::Skipped(Skipped::Loopback)
    } else if add_ports == AddPorts::Pxe && have_pxe_mac && !pxe {
        Verdict::Skipped(Skipped::NotPxe)
    } else if add_ports == AddPorts::Active && ip.is_none() {
        Verdict::Skipped(Skipped::NoIp)
    } else {
        Verdict::Valid
    }
}

/// `all_interfaces` in Ironic's dict order.
fn effective(interfaces: &[InterfaceOutcome]) -> Vec<&InterfaceOutcome> {
    let mut all: Vec<&InterfaceOutcome> = interfaces
        .iter()
        .filter(|o| !matches!(o.verdict, Verdict::Dropped(_)))
        .collect();
    all.sort_by_key(|o| o.slot);
    all
}

/// A port during the simulation.
struct Working {
    before: Option<EnrolledPort>,
    now: PortAfter,
    deleted: bool,
}

/// The port changes Ironic's inspection would make to a node with `enrolled` ports, given
/// the addresses enrolled on other nodes (`elsewhere`, which Ironic will not create again).
pub fn plan(
    inv: &Inventory,
    settings: &InspectorSettings,
    enrolled: &[EnrolledPort],
    elsewhere: &BTreeMap<Mac, NodeUuid>,
) -> Result<Plan, InspectionError> {
    let pxe_mac = pxe_mac(inv.pxe_interface.as_deref());
    let interfaces = judge(inv, settings.add_ports, pxe_mac.as_deref());
    let in_all = |o: &&InterfaceOutcome| !matches!(o.verdict, Verdict::Dropped(_));
    let valid = |o: &&InterfaceOutcome| o.verdict == Verdict::Valid;
    if !interfaces.iter().any(|o| in_all(&o)) {
        return Err(InspectionError::NoValidInterfaces);
    }
    if !interfaces.iter().any(|o| valid(&o)) {
        return Err(InspectionError::NoMatchingInterfaces(settings.add_ports));
    }
    let mut notes = Vec::new();
    let mut ports: Vec<Working> = enrolled
        .iter()
        .map(|p| Working {
            before: Some(p.clone()),
            now: PortAfter {
                port: p.uuid,
                address: p.address,
                pxe_enabled: p.pxe_enabled,
                client_id: p.client_id.clone(),
            },
            deleted: false,
        })
        .collect();
    if settings.add_ports != AddPorts::Disabled {
        for o in effective(&interfaces).into_iter().filter(valid) {
            add_port(o, &mut ports, elsewhere, &mut notes);
        }
    }
    update_ports(&interfaces, settings, &mut ports);
    notes.extend(diagnose(&interfaces, enrolled, &ports));
    Ok(Plan {
        pxe_mac,
        changes: changes(&ports),
        ports_after: ports
            .iter()
            .filter(|w| !w.deleted)
            .map(|w| w.now.clone())
            .collect(),
        interfaces,
        notes,
    })
}

/// `add_ports` for one valid interface: a new port, unless its address is taken.
fn add_port(
    o: &InterfaceOutcome,
    ports: &mut Vec<Working>,
    elsewhere: &BTreeMap<Mac, NodeUuid>,
    notes: &mut Vec<String>,
) {
    let Some(mac) = o.mac else { return };
    let name = o.name.as_deref().unwrap_or_default();
    if let Some(other) = elsewhere.get(&mac) {
        notes.push(format!(
            "{name}: no port created: {mac} is already enrolled on node {other} (Ironic skips it)"
        ));
        return;
    }
    if ports.iter().any(|w| w.now.address == mac) {
        return;
    }
    ports.push(Working {
        before: None,
        now: PortAfter {
            port: None,
            address: mac,
            pxe_enabled: o.pxe,
            client_id: o.client_id.clone().map(Value::String),
        },
        deleted: false,
    });
}

/// `update_ports`: deletions by `keep_ports`, `pxe_enabled`, client-ids.
fn update_ports(
    interfaces: &[InterfaceOutcome],
    settings: &InspectorSettings,
    ports: &mut [Working],
) {
    let all = effective(interfaces);
    let macs = |pick: &dyn Fn(&InterfaceOutcome) -> bool| -> Vec<Mac> {
        all.iter()
            .filter(|o| pick(o))
            .filter_map(|o| o.mac)
            .collect()
    };
    let expected = match settings.keep_ports {
        KeepPorts::All => Vec::new(),
        KeepPorts::Present => macs(&|_| true),
        KeepPorts::Added => macs(&|o| o.verdict == Verdict::Valid),
    };
    let pxe_macs = macs(&|o| o.pxe);
    // Keyed by address, the last interface wins (a dict in Ironic), even with no client-id.
    let client_ids: HashMap<Mac, Option<&String>> = all
        .iter()
        .filter_map(|o| Some((o.mac?, o.client_id.as_ref())))
        .collect();
    for w in ports.iter_mut() {
        if !expected.is_empty() && !expected.contains(&w.now.address) {
            w.deleted = true;
            continue;
        }
        if settings.update_pxe_enabled {
            w.now.pxe_enabled = pxe_macs.contains(&w.now.address);
        }
        if let Some(Some(new)) = client_ids.get(&w.now.address) {
            if w.now.client_id.as_ref().and_then(Value::as_str) != Some(new.as_str()) {
                w.now.client_id = Some(Value::String((*new).clone()));
            }
        }
    }
}

/// The changes, creates first (Ironic creates, then updates and deletes).
fn changes(ports: &[Working]) -> Vec<Change> {
    let creates = ports
        .iter()
        .filter(|w| w.before.is_none())
        .map(|w| Change::Create {
            address: w.now.address,
            pxe_enabled: w.now.pxe_enabled,
            client_id: w
                .now
                .client_id
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    let others = ports.iter().filter_map(|w| {
        let before = w.before.as_ref()?;
        if w.deleted {
            return Some(Change::Delete {
                port: before.uuid,
                address: before.address,
            });
        }
        let pxe = (w.now.pxe_enabled != before.pxe_enabled).then_some(w.now.pxe_enabled);
        let cid = (w.now.client_id != before.client_id)
            .then(|| {
                w.now
                    .client_id
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .flatten();
        (pxe.is_some() || cid.is_some()).then_some(Change::Update {
            port: before.uuid,
            address: before.address,
            pxe_enabled: pxe,
            client_id: cid,
        })
    });
    creates.chain(others).collect()
}

/// What Ironic does silently that usually means an enrolment mistake.
fn diagnose(
    interfaces: &[InterfaceOutcome],
    enrolled: &[EnrolledPort],
    ports: &[Working],
) -> Vec<String> {
    let mut notes = Vec::new();
    for o in interfaces.iter().filter(|o| o.verdict == Verdict::Valid) {
        let (Some(mac), Some(cid)) = (o.mac, o.client_id.as_deref()) else {
            continue;
        };
        let name = o.name.as_deref().unwrap_or_default();
        let Ok(cid) = ClientId::parse(cid) else {
            notes.push(format!(
                "{name}: client_id {cid:?} is not a 20-byte IPoIB client-id; Ironic stores it verbatim"
            ));
            continue;
        };
        let guid = cid.guid();
        if guid.ib_mac() != mac {
            notes.push(format!(
                "{name}: mac_address {mac} is not the IB MAC {} of its client-id's GUID {guid}; Ironic uses mac_address",
                guid.ib_mac()
            ));
        }
        for p in enrolled
            .iter()
            .filter(|p| guid.truncations().contains(&p.address))
        {
            let kept = ports
                .iter()
                .any(|w| !w.deleted && w.now.address == p.address);
            notes.push(format!(
                "port {} is six bytes of {name}'s GUID {guid}, not its IB MAC {}: {}",
                p.address,
                guid.ib_mac(),
                if kept {
                    "Ironic keeps it (keep_ports); delete it by hand"
                } else {
                    "Ironic deletes it"
                }
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
    const IB_MAC: &str = "7c:fe:90:29:26:52";
    const GUID_HEAD: &str = "7c:fe:90:03:00:29";
    const ETH: &str = "52:54:00:12:34:57";

    fn iface(name: &str, mac: &str, ip: Option<&str>, cid: Option<&str>) -> Value {
        json!({"name": name, "mac_address": mac, "ipv4_address": ip, "client_id": cid})
    }

    /// The IB node's usual inventory: loopback, an Ethernet NIC without IP, the IB port.
    fn ifaces() -> Vec<Value> {
        vec![
            iface("lo", "00:00:00:00:00:00", Some("127.0.0.1"), None),
            iface("eno1", ETH, None, None),
            iface("ib0", IB_MAC, Some("192.0.2.10"), Some(CID)),
        ]
    }

    fn inventory(interfaces: Vec<Value>, pxe: Option<&str>) -> Inventory {
        let mut inv = json!({"interfaces": interfaces});
        if let Some(p) = pxe {
            inv["boot"] = json!({"pxe_interface": p, "current_boot_mode": "uefi"});
        }
        parse_inventory(json!({ "inventory": inv }).to_string().as_bytes()).expect("inventory")
    }

    fn port(i: usize, address: &str, pxe: bool, cid: Option<Value>) -> EnrolledPort {
        EnrolledPort {
            uuid: Some(PortUuid::parse(&format!("11111111-2222-4333-8444-{i:012}")).expect("uuid")),
            address: Mac::parse(address).expect("mac"),
            pxe_enabled: pxe,
            client_id: cid,
        }
    }

    fn short(c: &Change) -> String {
        let cid = |c: &Option<String>| c.clone().unwrap_or_else(|| "-".into());
        match c {
            Change::Create {
                address,
                pxe_enabled,
                client_id,
            } => format!("create {address} pxe={pxe_enabled} cid={}", cid(client_id)),
            Change::Update {
                address,
                pxe_enabled,
                client_id,
                ..
            } => format!(
                "update {address} pxe={} cid={}",
                pxe_enabled.map_or("=".into(), |p| p.to_string()),
                client_id.clone().unwrap_or_else(|| "=".into())
            ),
            Change::Delete { address, .. } => format!("delete {address}"),
        }
    }

    struct Case {
        what: &'static str,
        interfaces: Vec<Value>,
        pxe: Option<&'static str>,
        settings: (AddPorts, KeepPorts, bool),
        enrolled: Vec<EnrolledPort>,
        elsewhere: Vec<&'static str>,
        expect: Result<Vec<String>, InspectionError>,
    }

    const DEFAULT: (AddPorts, KeepPorts, bool) = (AddPorts::Pxe, KeepPorts::All, true);

    fn ok(changes: &[&str]) -> Result<Vec<String>, InspectionError> {
        Ok(changes.iter().map(|s| s.to_string()).collect())
    }

    fn cases() -> Vec<Case> {
        [
            cases_pxe_interface(),
            cases_add_ports(),
            cases_keep_and_update(),
            cases_client_ids(),
            cases_guid_prefix_and_loopback(),
            cases_failures(),
            cases_odd_inventories(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn upper_cid() -> &'static str {
        Box::leak(CID.to_uppercase().into_boxed_str())
    }

    fn cases_pxe_interface() -> Vec<Case> {
        vec![
            Case {
                what: "no boot.pxe_interface: every non-loopback interface, none PXE-enabled",
                interfaces: ifaces(),
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![port(1, ETH, true, None)],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {IB_MAC} pxe=false cid={CID}"),
                    &format!("update {ETH} pxe=false cid=="),
                ]),
            },
            Case {
                what: "pxe_interface (PXELINUX 20- form) names the IB interface",
                interfaces: ifaces(),
                pxe: Some("20-7C-FE-90-29-26-52"),
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {IB_MAC} pxe=true cid={CID}")]),
            },
            Case {
                what: "pxe_interface in iPXE's colon form",
                interfaces: ifaces(),
                pxe: Some(ETH),
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {ETH} pxe=true cid=-")]),
            },
        ]
    }

    fn cases_add_ports() -> Vec<Case> {
        use AddPorts as A;
        use KeepPorts as K;
        vec![
            Case {
                what: "add_ports=all adds the non-PXE NIC too",
                interfaces: ifaces(),
                pxe: Some("01-52-54-00-12-34-57"),
                settings: (A::All, K::All, true),
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {ETH} pxe=true cid=-"),
                    &format!("create {IB_MAC} pxe=false cid={CID}"),
                ]),
            },
            Case {
                what: "add_ports=active skips a NIC without IP",
                interfaces: ifaces(),
                pxe: Some("01-52-54-00-12-34-57"),
                settings: (A::Active, K::All, true),
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {IB_MAC} pxe=false cid={CID}")]),
            },
            Case {
                what: "add_ports=active counts a scoped IPv6 address",
                interfaces: vec![
                    json!({"name": "eno1", "mac_address": ETH, "ipv6_address": "fe80::1%eno1"}),
                ],
                pxe: None,
                settings: (A::Active, K::All, true),
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {ETH} pxe=false cid=-")]),
            },
            Case {
                what: "add_ports=disabled creates nothing but still updates",
                interfaces: ifaces(),
                pxe: Some(ETH),
                settings: (A::Disabled, K::All, true),
                enrolled: vec![port(1, ETH, false, None), port(2, IB_MAC, true, None)],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("update {ETH} pxe=true cid=="),
                    &format!("update {IB_MAC} pxe=false cid={CID}"),
                ]),
            },
        ]
    }

    fn cases_keep_and_update() -> Vec<Case> {
        use AddPorts as A;
        use KeepPorts as K;
        vec![
            Case {
                what: "keep_ports=present deletes ports of absent MACs, keeps skipped ones",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: (A::Pxe, K::Present, true),
                enrolled: vec![
                    port(1, ETH, false, None),
                    port(2, "52:54:00:99:99:99", false, None),
                ],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {IB_MAC} pxe=true cid={CID}"),
                    "delete 52:54:00:99:99:99",
                ]),
            },
            Case {
                what: "keep_ports=added also deletes the non-PXE NIC's port",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: (A::Pxe, K::Added, true),
                enrolled: vec![
                    port(1, ETH, false, None),
                    port(2, "52:54:00:99:99:99", false, None),
                ],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {IB_MAC} pxe=true cid={CID}"),
                    &format!("delete {ETH}"),
                    "delete 52:54:00:99:99:99",
                ]),
            },
            Case {
                what: "keep_ports=all keeps everything",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: (A::Pxe, K::All, true),
                enrolled: vec![port(2, "52:54:00:99:99:99", false, None)],
                elsewhere: vec![],
                expect: ok(&[&format!("create {IB_MAC} pxe=true cid={CID}")]),
            },
            Case {
                what: "update_pxe_enabled=false leaves pxe_enabled alone",
                interfaces: ifaces(),
                pxe: None,
                settings: (A::Pxe, K::All, false),
                enrolled: vec![
                    port(1, ETH, true, None),
                    port(2, IB_MAC, true, Some(json!(CID))),
                ],
                elsewhere: vec![],
                expect: ok(&[]),
            },
        ]
    }

    fn cases_client_ids() -> Vec<Case> {
        use AddPorts as A;
        use KeepPorts as K;
        let upper = upper_cid();
        vec![
            Case {
                what: "an upper-case client-id replaces the port's lower-case one, verbatim",
                interfaces: vec![iface("ib0", IB_MAC, None, Some(upper))],
                pxe: Some(IB_MAC),
                settings: DEFAULT,
                enrolled: vec![port(2, IB_MAC, true, Some(json!(CID)))],
                elsewhere: vec![],
                expect: ok(&[&format!("update {IB_MAC} pxe== cid={upper}")]),
            },
            Case {
                what: "an empty client-id changes nothing and creates no extra",
                interfaces: vec![
                    iface("ib0", IB_MAC, None, Some("")),
                    iface("eno1", ETH, None, Some("")),
                ],
                pxe: Some(IB_MAC),
                settings: DEFAULT,
                enrolled: vec![port(2, IB_MAC, true, Some(json!(CID)))],
                elsewhere: vec![],
                expect: ok(&[]),
            },
            Case {
                what: "a missing client-id keeps the port's",
                interfaces: vec![json!({"name": "ib0", "mac_address": IB_MAC})],
                pxe: None,
                settings: (A::Pxe, K::All, false),
                enrolled: vec![port(2, IB_MAC, true, Some(json!(CID)))],
                elsewhere: vec![],
                expect: ok(&[]),
            },
            Case {
                what: "a short (non-IPoIB) client-id is stored verbatim",
                interfaces: vec![iface("eno1", ETH, None, Some("01:52:54:00:00:00:03"))],
                pxe: Some(ETH),
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {ETH} pxe=true cid=01:52:54:00:00:00:03")]),
            },
            Case {
                what: "a non-string client-id on the port is replaced",
                interfaces: vec![iface("ib0", IB_MAC, None, Some(CID))],
                pxe: Some(IB_MAC),
                settings: DEFAULT,
                enrolled: vec![port(2, IB_MAC, true, Some(json!(7)))],
                elsewhere: vec![],
                expect: ok(&[&format!("update {IB_MAC} pxe== cid={CID}")]),
            },
        ]
    }

    fn cases_guid_prefix_and_loopback() -> Vec<Case> {
        use AddPorts as A;
        use KeepPorts as K;
        vec![
            Case {
                what: "a port under the GUID's first six bytes: a new one under the IB MAC",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: DEFAULT,
                enrolled: vec![port(3, GUID_HEAD, true, None)],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {IB_MAC} pxe=true cid={CID}"),
                    &format!("update {GUID_HEAD} pxe=false cid=="),
                ]),
            },
            Case {
                what: "the GUID-prefix port with keep_ports=present is deleted",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: (A::Pxe, K::Present, true),
                enrolled: vec![port(3, GUID_HEAD, true, Some(json!(CID)))],
                elsewhere: vec![],
                expect: ok(&[
                    &format!("create {IB_MAC} pxe=true cid={CID}"),
                    &format!("delete {GUID_HEAD}"),
                ]),
            },
            Case {
                what: "loopback by name and by IP are never added",
                interfaces: vec![
                    iface("lo", ETH, None, None),
                    iface("dummy", "52:54:00:00:00:02", Some("127.0.0.2"), None),
                    iface("v6lo", "52:54:00:00:00:03", None, None),
                    iface("eno2", "52:54:00:00:00:04", None, None),
                ]
                .into_iter()
                .enumerate()
                .map(|(i, mut v)| {
                    if i == 2 {
                        v["ipv6_address"] = json!("::1%lo");
                    }
                    v
                })
                .collect(),
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&["create 52:54:00:00:00:04 pxe=false cid=-"]),
            },
        ]
    }

    fn cases_failures() -> Vec<Case> {
        use AddPorts as A;
        use KeepPorts as K;
        vec![
            Case {
                what: "only loopback: inspection fails",
                interfaces: vec![iface("lo", ETH, Some("127.0.0.1"), None)],
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: Err(InspectionError::NoMatchingInterfaces(AddPorts::Pxe)),
            },
            Case {
                what: "only loopback with add_ports=disabled still fails",
                interfaces: vec![iface("lo", ETH, Some("127.0.0.1"), None)],
                pxe: None,
                settings: (A::Disabled, K::All, true),
                enrolled: vec![],
                elsewhere: vec![],
                expect: Err(InspectionError::NoMatchingInterfaces(AddPorts::Disabled)),
            },
            Case {
                what: "pxe_interface matching nothing with add_ports=pxe fails",
                interfaces: ifaces(),
                pxe: Some("01-52-54-00-00-00-99"),
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: Err(InspectionError::NoMatchingInterfaces(AddPorts::Pxe)),
            },
            Case {
                what: "no valid MAC at all fails (dashes, 20 bytes, no name)",
                interfaces: vec![
                    iface("eno1", "52-54-00-12-34-57", None, None),
                    iface(
                        "ib0",
                        "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
                        None,
                        None,
                    ),
                    json!({"mac_address": ETH}),
                    iface("eno2", "52:54:00:12:34:58\n", None, None),
                ],
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: Err(InspectionError::NoValidInterfaces),
            },
        ]
    }

    fn cases_odd_inventories() -> Vec<Case> {
        let upper = upper_cid();
        vec![
            Case {
                what: "an address enrolled on another node is not created again",
                interfaces: ifaces(),
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![IB_MAC],
                expect: ok(&[&format!("create {ETH} pxe=false cid=-")]),
            },
            Case {
                what: "upper-case MACs: created lower-case, matched to pxe_interface",
                interfaces: vec![iface("eno1", &ETH.to_uppercase(), None, None)],
                pxe: Some("52:54:00:12:34:57"),
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {ETH} pxe=true cid=-")]),
            },
            Case {
                what: "a later interface of the same name replaces the earlier",
                interfaces: vec![
                    iface("eno1", "52:54:00:00:00:01", None, None),
                    iface("eno1", ETH, None, None),
                ],
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {ETH} pxe=false cid=-")]),
            },
            Case {
                what: "two interfaces with one MAC: one port, the last client-id wins",
                interfaces: vec![
                    iface("ib0", IB_MAC, None, Some(CID)),
                    iface("ib0.8001", IB_MAC, None, Some(upper)),
                ],
                pxe: None,
                settings: DEFAULT,
                enrolled: vec![],
                elsewhere: vec![],
                expect: ok(&[&format!("create {IB_MAC} pxe=false cid={upper}")]),
            },
            Case {
                what: "ports that already agree: nothing to do",
                interfaces: ifaces(),
                pxe: Some(IB_MAC),
                settings: DEFAULT,
                enrolled: vec![
                    port(1, ETH, false, None),
                    port(2, IB_MAC, true, Some(json!(CID))),
                ],
                elsewhere: vec![],
                expect: ok(&[]),
            },
        ]
    }

    #[test]
    fn plans_what_ironics_inspection_does() {
        for c in cases() {
            let settings = InspectorSettings {
                add_ports: c.settings.0,
                keep_ports: c.settings.1,
                update_pxe_enabled: c.settings.2,
            };
            let elsewhere: BTreeMap<Mac, NodeUuid> = c
                .elsewhere
                .iter()
                .map(|m| {
                    let n = NodeUuid::parse("99999999-2222-4333-8444-555555555555").expect("n");
                    (Mac::parse(m).expect("mac"), n)
                })
                .collect();
            let inv = inventory(c.interfaces, c.pxe);
            let got = plan(&inv, &settings, &c.enrolled, &elsewhere)
                .map(|p| p.changes.iter().map(short).collect::<Vec<_>>());
            assert_eq!(got, c.expect, "{}", c.what);
        }
        assert_eq!(cases().len(), 28, "every case runs");
    }

    #[test]
    fn ports_after_and_notes_for_the_guid_prefix_port() {
        let inv = inventory(ifaces(), Some(IB_MAC));
        let enrolled = [port(3, GUID_HEAD, true, None)];
        let p = plan(
            &inv,
            &InspectorSettings::default(),
            &enrolled,
            &BTreeMap::new(),
        )
        .expect("plan");
        let after: Vec<(String, bool)> = p
            .ports_after
            .iter()
            .map(|a| (a.address.to_string(), a.pxe_enabled))
            .collect();
        assert_eq!(
            after,
            [(GUID_HEAD.to_owned(), false), (IB_MAC.to_owned(), true)]
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains(GUID_HEAD) && n.contains("delete it by hand")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.pxe_mac.as_deref(), Some(IB_MAC));
        let verdicts: Vec<Verdict> = p.interfaces.iter().map(|o| o.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Skipped(Skipped::Loopback),
                Verdict::Skipped(Skipped::NotPxe),
                Verdict::Valid
            ]
        );
    }

    #[test]
    fn change_bodies_and_commands() {
        let n = NodeUuid::parse("99999999-2222-4333-8444-555555555555").expect("n");
        let create = Change::Create {
            address: Mac::parse(IB_MAC).expect("mac"),
            pxe_enabled: true,
            client_id: Some(CID.into()),
        };
        assert_eq!(
            create.body(Some(&n)),
            json!({"address": IB_MAC, "pxe_enabled": true, "node_uuid": n.to_string(),
                   "extra": {"client-id": CID}})
        );
        assert_eq!(
            create.command(None),
            format!("baremetal port create --node <node> --pxe-enabled true --extra client-id={CID} {IB_MAC}")
        );
        let p = port(4, ETH, true, None);
        let update = Change::Update {
            port: p.uuid,
            address: p.address,
            pxe_enabled: Some(false),
            client_id: None,
        };
        assert_eq!(
            update.body(None),
            json!([{"op": "replace", "path": "/pxe_enabled", "value": false}])
        );
        assert_eq!(
            update.command(None),
            "baremetal port set 11111111-2222-4333-8444-000000000004 --pxe-enabled false"
        );
        let delete = Change::Delete {
            port: None,
            address: p.address,
        };
        assert_eq!(
            delete.command(None),
            format!("baremetal port delete <port {ETH}>")
        );
    }

    #[test]
    fn pxe_mac_follows_get_pxe_mac() {
        assert_eq!(pxe_mac(None), None);
        assert_eq!(pxe_mac(Some("")), None);
        assert_eq!(pxe_mac(Some("01-")), None);
        assert_eq!(
            pxe_mac(Some("01-AA-BB-CC-DD-EE-FF")).as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(
            pxe_mac(Some("AA:BB:CC:DD:EE:FF")).as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        // A dashed MAC without a type prefix loses its first byte, as in Ironic.
        assert_eq!(
            pxe_mac(Some("aa-bb-cc-dd-ee-ff")).as_deref(),
            Some("bb:cc:dd:ee:ff")
        );
    }

    #[test]
    fn ironics_mac_rule_and_loopback_rule() {
        assert!(ironic_mac("AA:bb:cc:dd:ee:ff").is_ok());
        for bad in [
            "aa-bb-cc-dd-ee-ff",
            "aabb.ccdd.eeff",
            "aa:bb:cc:dd:ee",
            " aa:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:fg",
        ] {
            assert_eq!(ironic_mac(bad), Err(Dropped::InvalidMac), "{bad:?}");
        }
        assert_eq!(
            ironic_mac("aa:bb:cc:dd:ee:ff\n"),
            Err(Dropped::MacWithNewline)
        );
        for lo in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::1%lo",
            "localhost",
            "localhost.localdomain",
        ] {
            assert!(is_loopback(lo), "{lo}");
        }
        for not in [
            "192.0.2.1",
            "::ffff:127.0.0.1",
            "LOCALHOST",
            "127.0.0.01",
            "::1%",
            "fe80::1",
        ] {
            assert!(!is_loopback(not), "{not}");
        }
    }

    #[test]
    fn parses_hostile_inventories_by_ironics_rules() {
        let parse = |v: Value| parse_inventory(v.to_string().as_bytes());
        // Falsy values are absent; strings verbatim.
        let inv = parse(
            json!({"interfaces": [{"name": "x", "mac_address": "zz", "client_id": false,
                                               "ipv4_address": 0, "ipv6_address": ""}],
                               "boot": {"pxe_interface": null}}),
        )
        .expect("parses");
        assert_eq!(inv.interfaces[0].client_id, None);
        assert_eq!(inv.interfaces[0].ipv4_address, None);
        assert_eq!(inv.interfaces[0].mac_address, "zz");
        assert_eq!(inv.pxe_interface, None);
        let err = |v: Value| parse(v).expect_err("refused").to_string();
        assert!(err(json!({"interfaces": []})).contains("empty"));
        assert!(err(json!({"nodes": []})).contains("not an inventory"));
        assert!(
            err(json!({"interfaces": [{"name": "lo", "mac_address": null}]}))
                .contains("interfaces[0].mac_address")
        );
        assert!(
            err(json!({"interfaces": [{"name": 5, "mac_address": ETH}]}))
                .contains("interfaces[0].name")
        );
        assert!(
            err(json!({"interfaces": [{"name": "a", "mac_address": ETH, "client_id": [1]}]}))
                .contains("client_id")
        );
        assert!(
            err(json!({"interfaces": [{"name": "a", "mac_address": ETH}], "boot": null}))
                .contains("inventory.boot")
        );
        assert!(err(json!({"interfaces": [1]})).contains("not an object"));
        assert!(parse_inventory(b"{").is_err());
    }

    #[test]
    fn settings_parse_with_ironics_names() {
        let s: InspectorSettings = toml::from_str(
            "add_ports = \"all\"\nkeep_ports = \"added\"\nupdate_pxe_enabled = false\n",
        )
        .expect("toml");
        assert_eq!(
            s.to_string(),
            "add_ports=all keep_ports=added update_pxe_enabled=false"
        );
        assert_eq!(
            InspectorSettings::default().to_string(),
            "add_ports=pxe keep_ports=all update_pxe_enabled=true"
        );
        assert!(toml::from_str::<InspectorSettings>("add_ports = \"some\"\n").is_err());
        assert_eq!("active".parse::<AddPorts>(), Ok(AddPorts::Active));
        assert_eq!(
            "none".parse::<KeepPorts>().unwrap_err().to_string(),
            "\"none\" is not one of all present added"
        );
    }
}
