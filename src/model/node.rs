//! Ironic's node and port objects, as its REST API returns them, reduced to what booting needs.
//!
//! Unknown fields are ignored and optional ones tolerated, so a state file can be a verbatim
//! `GET /v1/nodes?detail=True` response. Fields nobody boots from (steps, RAID config, links …)
//! are skipped while parsing, which keeps 100k nodes in memory cheaply.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::model::addr::{ClientId, DhcpClientId, HwType, Mac, SystemUuid};

/// An Ironic UUID: parsed like a [`SystemUuid`] (dashed or bare hex, any case) and printed
/// lower-case dashed, but a type of its own so node, port and SMBIOS UUIDs never mix.
macro_rules! ironic_uuid {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(pub [u8; 16]);

        impl $ty {
            /// Parses the dashed (or bare) hex form, any case.
            pub fn parse(s: &str) -> Result<Self, crate::model::addr::AddrError> {
                SystemUuid::parse(s).map(|u| $ty(u.0))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                SystemUuid(self.0).fmt(f)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

ironic_uuid!(
    /// An Ironic node UUID. Distinct from [`SystemUuid`]: PXELINUX never asks for this one.
    NodeUuid
);
ironic_uuid!(
    /// An Ironic port UUID.
    PortUuid
);

/// Ironic's provision states (ironic/common/states.py). Anything else is kept verbatim.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProvisionState {
    Enroll,
    Verifying,
    Manageable,
    Available,
    Active,
    Deploying,
    WaitCallBack,
    DeployFailed,
    DeployHold,
    Deleting,
    Deleted,
    Cleaning,
    CleanWait,
    CleanFailed,
    CleanHold,
    Error,
    Rebuild,
    Inspecting,
    InspectWait,
    InspectFailed,
    Adopting,
    AdoptFailed,
    Rescue,
    Rescuing,
    RescueWait,
    RescueFailed,
    Unrescuing,
    UnrescueFailed,
    Servicing,
    ServiceWait,
    ServiceFailed,
    ServiceHold,
    /// A state this build does not know (a newer Ironic); treated as "not ours to boot".
    Other(String),
}

impl ProvisionState {
    /// Every state with its API spelling, for tables and tests.
    pub const KNOWN: &'static [(&'static str, ProvisionState)] = &[
        ("enroll", ProvisionState::Enroll),
        ("verifying", ProvisionState::Verifying),
        ("manageable", ProvisionState::Manageable),
        ("available", ProvisionState::Available),
        ("active", ProvisionState::Active),
        ("deploying", ProvisionState::Deploying),
        ("wait call-back", ProvisionState::WaitCallBack),
        ("deploy failed", ProvisionState::DeployFailed),
        ("deploy hold", ProvisionState::DeployHold),
        ("deleting", ProvisionState::Deleting),
        ("deleted", ProvisionState::Deleted),
        ("cleaning", ProvisionState::Cleaning),
        ("clean wait", ProvisionState::CleanWait),
        ("clean failed", ProvisionState::CleanFailed),
        ("clean hold", ProvisionState::CleanHold),
        ("error", ProvisionState::Error),
        ("rebuild", ProvisionState::Rebuild),
        ("inspecting", ProvisionState::Inspecting),
        ("inspect wait", ProvisionState::InspectWait),
        ("inspect failed", ProvisionState::InspectFailed),
        ("adopting", ProvisionState::Adopting),
        ("adopt failed", ProvisionState::AdoptFailed),
        ("rescue", ProvisionState::Rescue),
        ("rescuing", ProvisionState::Rescuing),
        ("rescue wait", ProvisionState::RescueWait),
        ("rescue failed", ProvisionState::RescueFailed),
        ("unrescuing", ProvisionState::Unrescuing),
        ("unrescue failed", ProvisionState::UnrescueFailed),
        ("servicing", ProvisionState::Servicing),
        ("service wait", ProvisionState::ServiceWait),
        ("service failed", ProvisionState::ServiceFailed),
        ("service hold", ProvisionState::ServiceHold),
    ];

    /// Reads the API spelling; unknown states are preserved as [`ProvisionState::Other`].
    pub fn from_api(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, st)| st.clone())
            .unwrap_or_else(|| ProvisionState::Other(s.to_owned()))
    }

    /// The API spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ProvisionState::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, st)| st == known)
                .map(|(name, _)| *name)
                .unwrap_or("unknown"),
        }
    }
}

impl Default for ProvisionState {
    /// A node file written by hand without a state is treated like a freshly enrolled node.
    fn default() -> Self {
        ProvisionState::Enroll
    }
}

impl<'de> Deserialize<'de> for ProvisionState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ProvisionState::from_api(&String::deserialize(d)?))
    }
}

impl Serialize for ProvisionState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ProvisionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot-relevant part of `driver_info` (credentials and the rest are never kept).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct DriverInfo {
    pub deploy_kernel: Option<String>,
    pub deploy_ramdisk: Option<String>,
    pub rescue_kernel: Option<String>,
    pub rescue_ramdisk: Option<String>,
    pub kernel_append_params: Option<String>,
    /// The node's own Neutron provisioning network (name or UUID); read only by the
    /// `[ironic.subset]` filter.
    #[serde(
        deserialize_with = "text_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioning_network: Option<String>,
}

/// The boot-relevant part of `instance_info`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct InstanceInfo {
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    pub image_source: Option<String>,
    pub image_type: Option<String>,
    pub boot_iso: Option<String>,
    pub kernel_append_params: Option<String>,
    /// Ironic accepts a dict or its JSON text here.
    pub capabilities: Option<Value>,
    /// Deprecated boot mode Ironic still reads (`boot_mode_utils`); text only.
    #[serde(deserialize_with = "text_only")]
    pub deploy_boot_mode: Option<String>,
}

/// The boot-relevant part of `properties`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Properties {
    /// `"boot_mode:uefi,boot_option:netboot"`-style text, or a dict.
    pub capabilities: Option<Value>,
    /// The key of Ironic's `[pxe] *_bootfile_name_by_arch`; text only.
    #[serde(deserialize_with = "text_only")]
    pub cpu_arch: Option<String>,
}

/// The boot-relevant part of `driver_internal_info`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct DriverInternalInfo {
    pub is_whole_disk_image: Option<bool>,
    pub root_uuid_or_disk_id: Option<String>,
    /// The boot mode Ironic recorded at deploy (`boot_mode_utils`); text only.
    #[serde(deserialize_with = "text_only")]
    pub deploy_boot_mode: Option<String>,
}

/// A node as the boot server sees it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Node {
    pub uuid: NodeUuid,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub provision_state: ProvisionState,
    #[serde(default)]
    pub target_provision_state: Option<String>,
    #[serde(default)]
    pub boot_interface: Option<String>,
    #[serde(default)]
    pub deploy_interface: Option<String>,
    #[serde(default)]
    pub inspect_interface: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub driver_info: DriverInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub instance_info: InstanceInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub properties: Properties,
    #[serde(default, deserialize_with = "null_default")]
    pub driver_internal_info: DriverInternalInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub extra: Map<String, Value>,
    /// Where Ironic places the node: read only by the `[ironic.subset]` filter, so a replica
    /// serves its slice alone. Plain fields, not a flattened struct: `flatten` would buffer
    /// every node's whole JSON while parsing.
    #[serde(
        default,
        deserialize_with = "text_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub conductor_group: Option<String>,
    #[serde(
        default,
        deserialize_with = "text_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub shard: Option<String>,
    #[serde(
        default,
        deserialize_with = "text_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<String>,
    #[serde(
        default,
        deserialize_with = "text_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_class: Option<String>,
    /// Ports embedded in a node object (or links, in list responses); moved out into
    /// [`StateDoc::ports`] on load, so always empty afterwards.
    #[serde(
        default,
        rename = "ports",
        deserialize_with = "embedded",
        skip_serializing
    )]
    embedded_ports: Vec<Port>,
}

fn embedded<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    let entries: Option<Vec<PortEntry>> = Option::deserialize(d)?;
    Ok(embedded_ports(entries.unwrap_or_default()))
}

/// An Ironic port. `address` holds the InfiniBand MAC for an IB port, which Ironic marks by
/// `extra["client-id"]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Port {
    #[serde(default)]
    pub uuid: Option<PortUuid>,
    pub address: Mac,
    /// Missing only in a port embedded in its node's file; filled in from the node then.
    #[serde(default)]
    pub node_uuid: Option<NodeUuid>,
    #[serde(default = "yes", deserialize_with = "null_true")]
    pub pxe_enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub extra: Map<String, Value>,
}

impl Port {
    /// The key Ironic (and its inspection hook) uses for the IPoIB DHCP client-id.
    pub const CLIENT_ID_KEY: &'static str = "client-id";

    /// True for an InfiniBand port: `extra["client-id"]` is truthy (see [`Port::link`]).
    pub fn is_infiniband(&self) -> bool {
        self.extra
            .get(Self::CLIENT_ID_KEY)
            .is_some_and(python_truthy)
    }

    pub fn hw_type(&self) -> HwType {
        if self.is_infiniband() {
            HwType::Infiniband
        } else {
            HwType::Ethernet
        }
    }

    /// What Ironic makes of this port, and what ironpxe can read from its client-id. The one
    /// place the rule lives: naming, DHCP, kernel parameters, `addr` and the status page ask
    /// here (or [`Port::is_infiniband`]).
    ///
    /// Ironic tests the value with Python truthiness, `if client_id:`, in
    /// `common/pxe_utils.py` `_get_pxe_mac_path` (`20-` instead of `01-`),
    /// `common/neutron.py` `add_ports_to_network` and `validate_port_info`, and
    /// `drivers/modules/network/common.py` `plug_port_to_tenant_network` (option 61 with the
    /// value verbatim). So `null`, `""`, `0`, `false`, `[]` and `{}` make an Ethernet port, and
    /// any other value an InfiniBand one, whether or not it is a 20-byte RFC 4390 client-id.
    pub fn link(&self) -> PortLink {
        match self.extra.get(Self::CLIENT_ID_KEY) {
            Some(v) if python_truthy(v) => PortLink::Infiniband(ClientIdForm::of(v)),
            _ => PortLink::Ethernet,
        }
    }

    /// The RFC 4390 client-id of an InfiniBand port, or why it has none; `None` for an
    /// Ethernet port (no or a falsy client-id).
    pub fn client_id(&self) -> Option<Result<ClientId, String>> {
        match self.link() {
            PortLink::Ethernet => None,
            PortLink::Infiniband(ClientIdForm::Hex(c)) => Some(c.rfc4390().ok_or_else(|| {
                format!(
                    "extra.client-id {c} is {} bytes, not the 20 of an RFC 4390 client-id (12-byte prefix + GUID): no GUID",
                    c.as_bytes().len()
                )
            })),
            PortLink::Infiniband(ClientIdForm::Unusable(why)) => Some(Err(why)),
        }
    }
}

/// Python's truth value of a JSON value, which is how Ironic tests `extra["client-id"]`:
/// `null`, `false`, zero, `""`, `[]` and `{}` are false, everything else true.
pub fn python_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        // -0 and 0.0 are zero too; a number serde cannot hold as f64 is not zero.
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How Ironic treats a port, by its `extra["client-id"]` ([`Port::link`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortLink {
    /// No client-id or a falsy one: `01-<mac>` names, no option 61.
    Ethernet,
    /// A truthy client-id: `20-<mac>` names and option 61 with the value verbatim.
    Infiniband(ClientIdForm),
}

/// What ironpxe can read from a truthy client-id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientIdForm {
    /// Hex a DHCP server can match (normalised spelling; the bytes are the same). 20 bytes
    /// are an RFC 4390 client-id and carry the GUID ([`DhcpClientId::rfc4390`]).
    Hex(DhcpClientId),
    /// Not hex of 2-128 bytes, or not a string (Ironic hands even a number to Neutron as it
    /// is): the port is InfiniBand all the same, but no DHCP server config can carry the
    /// value safely. Why, with the value cut short.
    Unusable(String),
}

impl ClientIdForm {
    fn of(v: &Value) -> ClientIdForm {
        match v.as_str() {
            Some(s) => match DhcpClientId::parse(s) {
                Ok(c) => ClientIdForm::Hex(c),
                Err(e) => ClientIdForm::Unusable(format!("extra.client-id: {e}")),
            },
            None => {
                let text: String = v.to_string().chars().take(64).collect();
                ClientIdForm::Unusable(format!("extra.client-id is {text}, not a string"))
            }
        }
    }

    /// The hex form, when there is one.
    pub fn hex(&self) -> Option<DhcpClientId> {
        match self {
            ClientIdForm::Hex(c) => Some(*c),
            ClientIdForm::Unusable(_) => None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Ironic returns `null` for unset dict fields; treat it as empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A field only ever read as text: any other JSON value (a number, a dict) is taken as unset,
/// so an odd value written by anyone with node-update rights cannot refuse the whole node.
fn text_only<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
}

fn null_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// An entry of a node's `ports` list: embedded port objects, or (in list responses) links.
enum PortEntry {
    Port(Box<Port>),
    Link,
}

/// The fields of a port or a link, decoded in one pass (no intermediate JSON tree).
#[derive(Deserialize)]
struct PortOrLink {
    #[serde(default)]
    uuid: Option<PortUuid>,
    #[serde(default)]
    address: Option<Mac>,
    #[serde(default)]
    node_uuid: Option<NodeUuid>,
    #[serde(default = "yes", deserialize_with = "null_true")]
    pxe_enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    extra: Map<String, Value>,
    #[serde(default)]
    href: Option<serde::de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for PortEntry {
    /// A link has `href` and no `address`; anything else must be a valid port, so a
    /// malformed port is an error rather than silently taken for a link.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PortOrLink::deserialize(d)?;
        match (p.address, p.href) {
            (Some(address), _) => Ok(PortEntry::Port(Box::new(Port {
                uuid: p.uuid,
                address,
                node_uuid: p.node_uuid,
                pxe_enabled: p.pxe_enabled,
                extra: p.extra,
            }))),
            (None, Some(_)) => Ok(PortEntry::Link),
            (None, None) => Err(serde::de::Error::missing_field("address")),
        }
    }
}

/// One state file's contents: a node, a node listing, a port listing, or both listings.
/// Nodes and ports are shared with every snapshot built from the document, never copied:
/// at 100k nodes a second copy is a few hundred megabytes (a clone shares them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDoc {
    pub nodes: Vec<Arc<Node>>,
    pub ports: Vec<Arc<Port>>,
}

/// The three shapes a state file may take, told apart by their keys.
#[derive(Deserialize)]
struct RawDoc {
    #[serde(default)]
    nodes: Option<Vec<Node>>,
    #[serde(default)]
    ports: Option<Vec<PortEntry>>,
    /// Anything else: the fields of a single node object.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Why a state document was refused; the position is serde_json's (1-based line and column).
#[derive(Debug, thiserror::Error)]
#[error("{message} at line {line} column {column}")]
pub struct DocError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl From<serde_json::Error> for DocError {
    fn from(e: serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its Display; keep the bare message.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_owned(),
            None => full,
        };
        DocError {
            message,
            line: e.line(),
            column: e.column(),
        }
    }
}

impl StateDoc {
    /// Parses one state file from a reader, streaming: listings are decoded straight into
    /// [`Node`]/[`Port`] values, never into a generic JSON tree.
    pub fn from_reader<R: std::io::Read>(r: R) -> Result<StateDoc, DocError> {
        let raw: RawDoc = serde_json::from_reader(r)?;
        Self::from_raw(raw)
    }

    /// Parses one state file held in memory. A single node object is parsed straight from
    /// the bytes, so even a wrong field type is reported with its line and column.
    pub fn from_slice(bytes: &[u8]) -> Result<StateDoc, DocError> {
        let raw: RawDoc = serde_json::from_slice(bytes)?;
        let single = raw.rest.contains_key("uuid");
        // The same decoding as a streamed file, so a file means the same at any size.
        Self::from_raw(raw).map_err(|e| {
            // A single node is checked after buffering, which loses the position; parsing
            // the bytes as a node again gives the operator the line and column.
            match serde_json::from_slice::<Node>(bytes) {
                Err(positioned) if single => positioned.into(),
                _ => e,
            }
        })
    }

    fn from_raw(raw: RawDoc) -> Result<StateDoc, DocError> {
        if raw.rest.contains_key("uuid") && raw.nodes.is_some() {
            return Err(DocError {
                message: "a node object (with \"uuid\") cannot also hold a \"nodes\" listing"
                    .into(),
                line: 1,
                column: 1,
            });
        }
        let mut doc = StateDoc::default();
        let top_ports = raw.ports.map(embedded_ports).unwrap_or_default();
        for nwp in raw.nodes.unwrap_or_default() {
            doc.push_node(nwp, Vec::new());
        }
        if raw.rest.contains_key("uuid") {
            // A single node object: its "ports" (taken by RawDoc) are its own.
            let node: Node =
                serde_json::from_value(Value::Object(raw.rest)).map_err(|e| DocError {
                    message: format!("not an Ironic node object: {e}"),
                    line: 1,
                    column: 1,
                })?;
            doc.push_node(node, top_ports);
        } else if doc.nodes.is_empty() && top_ports.is_empty() && !raw.rest.is_empty() {
            return Err(DocError {
                message: "expected a node object (with \"uuid\"), {\"nodes\": [...]} or {\"ports\": [...]}"
                    .into(),
                line: 1,
                column: 1,
            });
        } else {
            doc.ports.extend(top_ports.into_iter().map(Arc::new));
        }
        Ok(doc)
    }

    fn push_node(&mut self, mut node: Node, ports: Vec<Port>) {
        let embedded = std::mem::take(&mut node.embedded_ports);
        for mut port in embedded.into_iter().chain(ports) {
            port.node_uuid.get_or_insert(node.uuid);
            self.ports.push(Arc::new(port));
        }
        self.nodes.push(Arc::new(node));
    }
}

fn embedded_ports(entries: Vec<PortEntry>) -> Vec<Port> {
    entries
        .into_iter()
        .filter_map(|e| match e {
            PortEntry::Port(p) => Some(*p),
            PortEntry::Link => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ironic");

    fn sample(name: &str) -> StateDoc {
        let path = format!("{SAMPLES}/{name}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        StateDoc::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_real_ironic_node_listing_with_link_ports() {
        let doc = sample("nodes-parked.json");
        assert_eq!(doc.nodes.len(), 9);
        assert!(doc.ports.is_empty(), "links in a listing are not ports");
        let ib = doc
            .nodes
            .iter()
            .find(|n| n.name.as_deref() == Some("n-ib-pxe"));
        let ib = ib.expect("n-ib-pxe in sample");
        assert_eq!(ib.provision_state, ProvisionState::WaitCallBack);
        assert_eq!(ib.boot_interface.as_deref(), Some("pxe"));
        assert_eq!(
            ib.driver_info.deploy_kernel.as_deref(),
            Some("http://127.0.0.1:38037/img_src/ipa.kernel")
        );
    }

    #[test]
    fn parses_real_ironic_port_listing_with_infiniband_port() {
        let doc = sample("ports-parked.json");
        assert_eq!(doc.ports.len(), 9);
        let ib: Vec<_> = doc.ports.iter().filter(|p| p.is_infiniband()).collect();
        assert_eq!(ib.len(), 1);
        assert_eq!(ib[0].address.to_string(), "0c:42:a1:12:34:56");
        let cid = ib[0].client_id().expect("has client-id").expect("parses");
        assert_eq!(cid.guid().ib_mac(), ib[0].address);
    }

    #[test]
    fn single_node_file_with_embedded_ports() {
        let json = br#"{
            "uuid": "1BE26C0B-03F2-4D2E-AE87-C02D7F33C123",
            "name": "n1", "provision_state": "deploying",
            "driver_info": null, "extra": {"system_uuid": "x"},
            "ports": [{"address": "52-54-00-12-34-56"},
                      {"href": "http://x/v1/nodes/1/ports", "rel": "self"}]
        }"#;
        let doc = StateDoc::from_slice(json).expect("parses");
        assert_eq!(doc.nodes.len(), 1);
        assert_eq!(doc.nodes[0].provision_state, ProvisionState::Deploying);
        assert_eq!(doc.ports.len(), 1);
        assert_eq!(doc.ports[0].node_uuid, Some(doc.nodes[0].uuid));
        assert!(doc.ports[0].pxe_enabled);
        assert_eq!(
            doc.nodes[0].uuid.to_string(),
            "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
        );
    }

    /// A port whose `extra` is `extra` (JSON text).
    fn port_with(extra: &str) -> Port {
        let json = format!(r#"{{"address": "7c:fe:90:29:26:52", "extra": {extra}}}"#);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    /// Ironic's `if client_id:` over every kind of JSON value: which ports are InfiniBand, and
    /// what ironpxe reads from the client-id.
    #[test]
    fn client_id_rule_is_python_truthiness() {
        const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
        // (extra, InfiniBand?, hex bytes ironpxe writes into DHCP configs, RFC 4390 GUID?)
        let table: &[(&str, bool, Option<&str>, bool)] = &[
            ("{}", false, None, false),
            (r#"{"client-id": null}"#, false, None, false),
            (r#"{"client-id": ""}"#, false, None, false),
            (r#"{"client-id": false}"#, false, None, false),
            (r#"{"client-id": 0}"#, false, None, false),
            (r#"{"client-id": 0.0}"#, false, None, false),
            (r#"{"client-id": -0.0}"#, false, None, false),
            (r#"{"client-id": []}"#, false, None, false),
            (r#"{"client-id": {}}"#, false, None, false),
            (r#"{"Client-Id": "ff:00"}"#, false, None, false),
            (
                &format!(r#"{{"client-id": "{CID}"}}"#),
                true,
                Some(CID),
                true,
            ),
            (
                &format!(r#"{{"client-id": "{}"}}"#, CID.to_uppercase()),
                true,
                Some(CID),
                true,
            ),
            (
                &format!(r#"{{"client-id": "  {}  "}}"#, CID.replace(':', "-")),
                true,
                Some(CID),
                true,
            ),
            (
                r#"{"client-id": "01:52:54:00:00:00:03"}"#,
                true,
                Some("01:52:54:00:00:00:03"),
                false,
            ),
            (r#"{"client-id": "0152"}"#, true, Some("01:52"), false),
            (r#"{"client-id": "01"}"#, true, None, false),
            (r#"{"client-id": " "}"#, true, None, false),
            (r#"{"client-id": "0"}"#, true, None, false),
            (r#"{"client-id": "x,set:evil\nid:*"}"#, true, None, false),
            (r#"{"client-id": "ff:00 \"q\""}"#, true, None, false),
            (r#"{"client-id": 5}"#, true, None, false),
            (r#"{"client-id": -1}"#, true, None, false),
            (r#"{"client-id": 0.5}"#, true, None, false),
            (r#"{"client-id": true}"#, true, None, false),
            (r#"{"client-id": [0]}"#, true, None, false),
            (r#"{"client-id": {"a": 1}}"#, true, None, false),
        ];
        let long = format!(r#"{{"client-id": "{}"}}"#, "ab:".repeat(128) + "ab");
        let mut rows: Vec<(&str, bool, Option<&str>, bool)> = table.to_vec();
        rows.push((&long, true, None, false));
        for (extra, ib, hex, guid) in rows {
            let p = port_with(extra);
            assert_eq!(p.is_infiniband(), ib, "{extra}");
            let link = p.link();
            assert_eq!(matches!(link, PortLink::Infiniband(_)), ib, "{extra}");
            assert_eq!(p.hw_type() == HwType::Infiniband, ib, "{extra}");
            let form = match &link {
                PortLink::Infiniband(f) => Some(f),
                PortLink::Ethernet => None,
            };
            let shown = form.and_then(ClientIdForm::hex).map(|c| c.to_string());
            assert_eq!(shown.as_deref(), hex, "{extra}");
            match p.client_id() {
                None => assert!(!ib, "{extra}"),
                Some(Ok(c)) => {
                    assert!(guid, "{extra}");
                    assert_eq!(c.guid().ib_mac(), p.address, "{extra}");
                }
                Some(Err(why)) => {
                    assert!(!guid && ib, "{extra}: {why}");
                    assert!(why.contains("client-id"), "{why}");
                    assert!(why.len() < 300, "the reason is cut short: {why}");
                    assert!(!why.contains('\n'), "{why}");
                }
            }
        }
    }

    #[test]
    fn python_truthy_matches_python_for_every_json_kind() {
        for (json, truthy) in [
            ("null", false),
            ("false", false),
            ("true", true),
            ("0", false),
            ("-0", false),
            ("0e10", false),
            ("1", true),
            ("18446744073709551615", true),
            ("1e-300", true),
            ("\"\"", false),
            ("\"0\"", true),
            ("\"false\"", true),
            ("[]", false),
            ("[null]", true),
            ("{}", false),
            ("{\"\": null}", true),
        ] {
            let v: Value = serde_json::from_str(json).expect(json);
            assert_eq!(python_truthy(&v), truthy, "{json}");
        }
    }

    #[test]
    fn unknown_state_is_kept_verbatim() {
        let json =
            br#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "provision_state": "levitating"}"#;
        let doc = StateDoc::from_slice(json).expect("parses");
        assert_eq!(
            doc.nodes[0].provision_state,
            ProvisionState::Other("levitating".into())
        );
        assert_eq!(doc.nodes[0].provision_state.as_str(), "levitating");
    }

    #[test]
    fn every_known_state_round_trips() {
        for (name, st) in ProvisionState::KNOWN {
            assert_eq!(&ProvisionState::from_api(name), st);
            assert_eq!(st.as_str(), *name);
        }
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = StateDoc::from_slice(b"{\n  \"nodes\": [\n    {\"uuid\": }\n]}").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.column > 1, "{err}");
        let err = StateDoc::from_slice(b"{\"nodes\": [{\"uuid\": \"not-a-uuid\"}]}").unwrap_err();
        assert!(err.message.contains("not-a-uuid"), "{err}");
        let err = StateDoc::from_slice(b"{\"ports\": [{\"address\": \"52:54:00\"}]}").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn truncated_file_is_an_error() {
        let full = std::fs::read(format!("{SAMPLES}/nodes-parked.json")).expect("sample");
        let err = StateDoc::from_slice(&full[..full.len() / 2]).unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
    }

    #[test]
    fn rejects_objects_of_other_shapes() {
        let err = StateDoc::from_slice(br#"{"hello": "world"}"#).unwrap_err();
        assert!(err.message.contains("expected a node object"), "{err}");
        assert!(StateDoc::from_slice(b"[]").is_err());
        assert_eq!(
            StateDoc::from_slice(b"{}").expect("empty is fine"),
            StateDoc::default()
        );
    }
}
