//! The snapshot and its indexes: every spelling of a hardware address resolves to the same
//! node, by hash lookup.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Changes, SourceError, SourceId};
use crate::model::addr::{
    AnyAddr, ClientId, Guid, IbHwAddr, Mac, PxeHwAddr, PxelinuxName, SystemUuid,
};
use crate::model::node::{Node, NodeUuid, Port, StateDoc};

mod patch;
pub(super) use patch::Touched;

/// Which node fields hold what Ironic itself does not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Key in `node.extra` holding the SMBIOS system UUID PXELINUX asks for.
    pub system_uuid_key: String,
    /// Key in `port.extra` holding the fixed IPv4 address a port's DHCP reservation gives it,
    /// so hex-IP PXELINUX names can resolve.
    pub fixed_ip_key: String,
    /// Ironic's `[neutron] add_all_ports`: ports that are not PXE-enabled get boot names
    /// (and DHCP entries) too, as `pxe_utils._link_mac_pxe_configs` links them then.
    pub add_all_ports: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            system_uuid_key: "system_uuid".into(),
            fixed_ip_key: "fixed_ip".into(),
            add_all_ports: false,
        }
    }
}

/// A node with what the snapshot derived for it.
#[derive(Debug)]
pub struct IndexedNode {
    pub node: Arc<Node>,
    /// The generation in which this node or one of its ports last changed: renders of an
    /// unchanged node stay cached across generations.
    pub revision: u64,
    /// Shared by every node of the source: cloning a snapshot's nodes allocates nothing here.
    pub source: Arc<SourceId>,
    /// Indexes into [`Snapshot::ports`].
    pub ports: Vec<usize>,
    pub system_uuid: Option<SystemUuid>,
}

/// A port with its parsed InfiniBand identity.
#[derive(Debug, PartialEq)]
pub struct IndexedPort {
    pub port: Arc<Port>,
    /// Index into [`Snapshot::nodes`].
    pub node: usize,
    /// From `extra.client-id`; `None` for Ethernet ports and client-ids that are not RFC 4390.
    pub client_id: Option<ClientId>,
    pub fixed_ip: Option<Ipv4Addr>,
    /// Whether Ironic links boot names for this port: PXE-enabled, or any port with
    /// `add_all_ports`. Only these are answered and get DHCP entries.
    pub boot_names: bool,
}

impl IndexedPort {
    pub fn is_infiniband(&self) -> bool {
        self.port.is_infiniband()
    }

    pub fn guid(&self) -> Option<Guid> {
        self.client_id.map(|c| c.guid())
    }
}

/// How a request was matched to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    EthernetMac,
    IbMac,
    Guid,
    NodeUuid,
    SystemUuid,
    /// The byte-swapped spelling of the SMBIOS UUID (iPXE's PXE stack swaps the first three
    /// fields).
    SystemUuidSwapped,
    FixedIp,
}

impl Via {
    pub fn describe(self) -> &'static str {
        match self {
            Via::EthernetMac => "Ethernet MAC (port.address)",
            Via::IbMac => "InfiniBand MAC (IB port.address)",
            Via::Guid => "InfiniBand GUID (from the port's extra.client-id)",
            Via::NodeUuid => "Ironic node UUID",
            Via::SystemUuid => "SMBIOS system UUID (node extra field)",
            Via::SystemUuidSwapped => "SMBIOS system UUID, first three fields byte-swapped",
            Via::FixedIp => "fixed IP (port extra field)",
        }
    }
}

/// A resolved request: the node, and the port when the request named one.
#[derive(Clone, Copy, Debug)]
pub struct Match<'a> {
    pub node: &'a IndexedNode,
    pub port: Option<&'a IndexedPort>,
    pub via: Via,
}

/// One line naming the node and the port: `node <uuid> (<name>) port <address>`, as logs
/// show a request's match. The alternate form (`{:#}`) adds the provision state, the port's
/// link type and how they matched, as the CLI shows it.
impl fmt::Display for Match<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = &self.node.node;
        let name = node.name.as_deref().unwrap_or("-");
        if f.alternate() {
            write!(f, "node {} ({name}, {})", node.uuid, node.provision_state)?;
        } else {
            write!(f, "node {} ({name})", node.uuid)?;
        }
        if let Some(p) = self.port {
            write!(f, " port {}", p.port.address)?;
            if f.alternate() {
                write!(f, " ({})", p.port.hw_type().name())?;
            }
        }
        if f.alternate() {
            write!(f, " via {}", self.via.describe())?;
        }
        Ok(())
    }
}

/// One generation of node state with its indexes. Immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    nodes: Vec<IndexedNode>,
    ports: Vec<IndexedPort>,
    by_uuid: HashMap<NodeUuid, usize>,
    by_eth_mac: HashMap<Mac, usize>,
    by_ib_mac: HashMap<Mac, usize>,
    by_guid: HashMap<Guid, usize>,
    by_system_uuid: HashMap<SystemUuid, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    /// Every port by `port.address`, booted or not: what Ironic's own lookup
    /// (`get_node_by_port_addresses`) finds, for diagnostics only.
    by_address: HashMap<Mac, usize>,
    /// Sources whose latest input was refused (their last good contents are in use).
    pub errors: Vec<SourceError>,
    /// Conflicts resolved by rule (duplicate nodes or addresses, orphan ports …), then the
    /// fields of single nodes that were ignored.
    pub warnings: Vec<String>,
    pub changes: Changes,
    /// The ignored fields of each node, kept apart so a patch can replace one node's.
    node_warnings: BTreeMap<NodeUuid, Vec<String>>,
    /// No conflict, orphan port or port joined to another source's node: each node is then
    /// derived from its own source's rows alone, and [`Snapshot::patch`] may replace a few.
    patchable: bool,
}

impl Snapshot {
    /// Builds generation `prev + 1` from every source's document. Conflicts are settled by
    /// source priority, then node UUID order, and each one is reported in `warnings`.
    pub(super) fn build(
        cfg: &IndexConfig,
        docs: &BTreeMap<SourceId, Arc<StateDoc>>,
        errors: Vec<SourceError>,
        prev: Option<&Snapshot>,
    ) -> Snapshot {
        let generation = prev.map_or(0, |p| p.generation + 1);
        let mut b = Builder {
            derive: Derive { cfg },
            s: Snapshot::empty(generation, errors),
        };
        b.add_nodes(docs);
        b.add_ports(docs);
        b.index_addresses();
        b.set_revisions(prev);
        b.s.patchable &= b.s.warnings.is_empty();
        b.s.flatten_warnings();
        b.s
    }

    /// Generation `generation` with nothing in it yet.
    fn empty(generation: u64, errors: Vec<SourceError>) -> Snapshot {
        Snapshot {
            generation,
            nodes: Vec::new(),
            ports: Vec::new(),
            by_uuid: HashMap::new(),
            by_eth_mac: HashMap::new(),
            by_ib_mac: HashMap::new(),
            by_guid: HashMap::new(),
            by_system_uuid: HashMap::new(),
            by_ip: HashMap::new(),
            by_address: HashMap::new(),
            errors,
            warnings: Vec::new(),
            changes: Changes::default(),
            node_warnings: BTreeMap::new(),
            patchable: true,
        }
    }

    /// Keeps what was ignored in a node's fields (nothing when `warns` is empty).
    fn note(&mut self, node: NodeUuid, warns: Vec<String>) {
        if !warns.is_empty() {
            self.node_warnings.entry(node).or_default().extend(warns);
        }
    }

    /// `warnings` = conflicts, then each node's ignored fields in node UUID order.
    fn flatten_warnings(&mut self) {
        let fields = self.node_warnings.values().flatten().cloned();
        self.warnings.extend(fields);
    }

    /// Node `i` keeps its revision (and shares its row with `prev`) when neither it nor its
    /// ports changed since `prev`; otherwise it is recorded as modified or added.
    fn carry_revision(&mut self, prev: &Snapshot, i: usize) {
        let uuid = self.nodes[i].node.uuid;
        match prev.node(&uuid) {
            Some(old) if same_node(prev, old, self, &self.nodes[i]) => {
                self.nodes[i].revision = old.revision;
                // Share the unchanged node with the previous generation.
                self.nodes[i].node = old.node.clone();
            }
            Some(_) => {
                self.changes.modified.insert(uuid);
            }
            None => {
                self.changes.added.insert(uuid);
            }
        }
    }

    /// Puts port `i` under every key it is answered by: none unless Ironic links boot names
    /// for it ([`IndexedPort::boot_names`]); its MAC in the InfiniBand or Ethernet map, its
    /// GUID, and a fixed IP only when PXE-enabled (Ironic creates the Neutron port of any
    /// other with no IP). `None` when a key is taken and `on` declines.
    fn index_boot_keys(&mut self, i: usize, on: &mut OnTaken<'_>) -> Option<()> {
        let p = &self.ports[i];
        if !p.boot_names {
            return Some(());
        }
        let map = if p.is_infiniband() {
            &mut self.by_ib_mac
        } else {
            &mut self.by_eth_mac
        };
        on.put(map, p.port.address, i, &self.ports, &self.nodes)?;
        if let Some(guid) = p.guid() {
            on.put(&mut self.by_guid, guid, i, &self.ports, &self.nodes)?;
        }
        if let Some(ip) = p.fixed_ip.filter(|_| p.port.pxe_enabled) {
            on.put(&mut self.by_ip, ip, i, &self.ports, &self.nodes)?;
        }
        Some(())
    }

    pub fn nodes(&self) -> &[IndexedNode] {
        &self.nodes
    }

    /// The nodes added, removed or changed since `earlier`, an older generation of the same
    /// store: this generation's [`Changes`] when it is the next one, else by revision (a
    /// node's revision is the generation it last changed in), which needs no history.
    pub fn changed_since(&self, earlier: &Snapshot) -> BTreeSet<NodeUuid> {
        if self.generation == earlier.generation + 1 {
            let c = &self.changes;
            return c
                .added
                .iter()
                .chain(&c.removed)
                .chain(&c.modified)
                .copied()
                .collect();
        }
        let mut out: BTreeSet<NodeUuid> = self
            .nodes
            .iter()
            .filter(|n| {
                earlier
                    .node(&n.node.uuid)
                    .is_none_or(|o| o.revision != n.revision)
            })
            .map(|n| n.node.uuid)
            .collect();
        out.extend(
            earlier
                .nodes
                .iter()
                .map(|n| n.node.uuid)
                .filter(|u| !self.by_uuid.contains_key(u)),
        );
        out
    }

    /// Whether a rule settled anything between nodes or sources (a duplicate node, port or
    /// address, an orphan port, a port joined to another source's node): then what is derived
    /// for one node may change when another one does.
    pub fn has_conflicts(&self) -> bool {
        !self.patchable
    }

    pub fn ports(&self) -> &[IndexedPort] {
        &self.ports
    }

    pub fn node(&self, uuid: &NodeUuid) -> Option<&IndexedNode> {
        self.by_uuid.get(uuid).map(|&i| &self.nodes[i])
    }

    fn port_match(&self, idx: usize, via: Via) -> Match<'_> {
        let port = &self.ports[idx];
        Match {
            node: &self.nodes[port.node],
            port: Some(port),
            via,
        }
    }

    /// A 6-byte address as a client with ARP type 1 reports it: an Ethernet MAC, or the IB
    /// MAC that upstream-iPXE firmware presents as Ethernet. Ethernet ports win a tie.
    pub fn by_mac(&self, mac: &Mac) -> Option<Match<'_>> {
        self.by_eth_mac
            .get(mac)
            .map(|&i| self.port_match(i, Via::EthernetMac))
            .or_else(|| {
                self.by_ib_mac
                    .get(mac)
                    .map(|&i| self.port_match(i, Via::IbMac))
            })
    }

    /// An InfiniBand hardware address (ARP type 32): IB ports only.
    pub fn by_ib(&self, ib: &IbHwAddr) -> Option<Match<'_>> {
        match ib {
            IbHwAddr::Mac(mac) => self
                .by_ib_mac
                .get(mac)
                .map(|&i| self.port_match(i, Via::IbMac)),
            IbHwAddr::Guid(guid) => self.by_guid(guid),
        }
    }

    pub fn by_guid(&self, guid: &Guid) -> Option<Match<'_>> {
        self.by_guid
            .get(guid)
            .map(|&i| self.port_match(i, Via::Guid))
    }

    /// Any address spelling; 20-byte forms (IPoIB address and client-id) both end in the GUID.
    pub fn by_addr(&self, addr: &AnyAddr) -> Option<Match<'_>> {
        match addr {
            AnyAddr::Six(mac) => self.by_mac(mac),
            AnyAddr::Eight(_) | AnyAddr::Twenty(_) => self.by_guid(&addr.guid()?),
        }
    }

    pub fn by_node_uuid(&self, uuid: &NodeUuid) -> Option<Match<'_>> {
        self.by_uuid.get(uuid).map(|&i| Match {
            node: &self.nodes[i],
            port: None,
            via: Via::NodeUuid,
        })
    }

    /// The SMBIOS UUID as PXELINUX prints it, in either byte order.
    pub fn by_system_uuid(&self, uuid: &SystemUuid) -> Option<Match<'_>> {
        let hit = |u: &SystemUuid, via| {
            self.by_system_uuid.get(u).map(|&i| Match {
                node: &self.nodes[i],
                port: None,
                via,
            })
        };
        hit(uuid, Via::SystemUuid).or_else(|| hit(&uuid.swapped(), Via::SystemUuidSwapped))
    }

    /// Any enrolled port with this `port.address`, whether or not it boots (Ironic's lookup
    /// by port address, `db/sqlalchemy/api.py` `get_node_by_port_addresses`, ignores
    /// `pxe_enabled` and the client-id). For diagnostics: boot answers use the other lookups.
    pub fn any_port_by_address(&self, mac: &Mac) -> Option<&IndexedPort> {
        self.by_address.get(mac).map(|&i| &self.ports[i])
    }

    pub fn by_fixed_ip(&self, ip: Ipv4Addr) -> Option<Match<'_>> {
        self.by_ip
            .get(&ip)
            .map(|&i| self.port_match(i, Via::FixedIp))
    }

    /// Resolves a PXELINUX config name. `default` never matches a node, and hex-IP names only
    /// as a full eight-digit address equal to a port's fixed IP.
    pub fn by_pxelinux_name(&self, name: &PxelinuxName) -> Option<Match<'_>> {
        match name {
            PxelinuxName::Uuid(u) => self.by_system_uuid(u),
            PxelinuxName::Hw(PxeHwAddr::Ethernet(mac)) => self.by_mac(mac),
            PxelinuxName::Hw(PxeHwAddr::Infiniband(ib)) => self.by_ib(ib),
            PxelinuxName::HexIp(prefix) => prefix.ip().and_then(|ip| self.by_fixed_ip(ip)),
            PxelinuxName::Default => None,
        }
    }
}

#[cfg(test)]
impl Snapshot {
    /// Everything a snapshot holds, in a canonical text form: two snapshots with equal dumps
    /// answer every lookup alike.
    pub(super) fn dump(&self) -> String {
        fn sorted<K: fmt::Display>(m: &HashMap<K, usize>) -> Vec<(String, usize)> {
            let mut v: Vec<_> = m.iter().map(|(k, &i)| (k.to_string(), i)).collect();
            v.sort();
            v
        }
        let mut out = format!(
            "generation {} patchable {}\n",
            self.generation, self.patchable
        );
        for n in &self.nodes {
            out += &format!(
                "node {} rev {} from {} ports {:?} system {:?} {:?}\n",
                n.node.uuid, n.revision, n.source, n.ports, n.system_uuid, n.node
            );
        }
        for p in &self.ports {
            out += &format!("port {p:?}\n");
        }
        out += &format!(
            "uuid {:?}\neth {:?}\nib {:?}\nguid {:?}\nsystem {:?}\nip {:?}\naddress {:?}\n",
            sorted(&self.by_uuid),
            sorted(&self.by_eth_mac),
            sorted(&self.by_ib_mac),
            sorted(&self.by_guid),
            sorted(&self.by_system_uuid),
            sorted(&self.by_ip),
            sorted(&self.by_address)
        );
        out += &format!(
            "errors {:?}\nwarnings {:#?}\nchanges {:?}\n",
            self.errors, self.warnings, self.changes
        );
        out
    }
}

struct Builder<'a> {
    derive: Derive<'a>,
    s: Snapshot,
}

impl Builder<'_> {
    /// Nodes from every source in priority order; a UUID seen again is a conflict.
    fn add_nodes(&mut self, docs: &BTreeMap<SourceId, Arc<StateDoc>>) {
        for (source, doc) in docs {
            let shared = Arc::new(source.clone());
            for node in &doc.nodes {
                if let Some(&i) = self.s.by_uuid.get(&node.uuid) {
                    let first = &self.s.nodes[i].source;
                    self.s.warnings.push(format!(
                        "node {} is defined in {first} and in {source}; using {first}",
                        node.uuid
                    ));
                    continue;
                }
                let mut warns = Vec::new();
                let system_uuid = self.derive.system_uuid(node, source, &mut warns);
                self.s.note(node.uuid, warns);
                self.s.by_uuid.insert(node.uuid, self.s.nodes.len());
                self.s.nodes.push(IndexedNode {
                    node: node.clone(),
                    revision: self.s.generation,
                    source: shared.clone(),
                    ports: Vec::new(),
                    system_uuid,
                });
            }
        }
    }

    /// Ports joined to their nodes by `node_uuid`; the first source to define a port UUID wins.
    fn add_ports(&mut self, docs: &BTreeMap<SourceId, Arc<StateDoc>>) {
        let mut seen = HashMap::new();
        for (source, doc) in docs {
            for port in &doc.ports {
                if let Some(uuid) = port.uuid {
                    if let Some(first) = seen.insert(uuid, source) {
                        self.s.warnings.push(format!(
                            "port {uuid} is defined in {first} and in {source}; using {first}"
                        ));
                        seen.insert(uuid, first);
                        continue;
                    }
                }
                self.add_port(source, port);
            }
        }
    }

    fn add_port(&mut self, source: &SourceId, port: &Arc<Port>) {
        let Some(node_uuid) = port.node_uuid else {
            self.s.warnings.push(format!(
                "{source}: port {} has no node_uuid; ignored",
                port.address
            ));
            return;
        };
        let Some(&node) = self.s.by_uuid.get(&node_uuid) else {
            self.s.warnings.push(format!(
                "{source}: port {} belongs to node {node_uuid}, which no source defines; ignored",
                port.address
            ));
            return;
        };
        // A port joined to another source's node: only a full build sees both sources.
        self.s.patchable &= *self.s.nodes[node].source == *source;
        let mut warns = Vec::new();
        let indexed = self
            .derive
            .port(source, (node, node_uuid), port, &mut warns);
        self.s.note(node_uuid, warns);
        self.s.nodes[node].ports.push(self.s.ports.len());
        self.s.ports.push(indexed);
    }

    /// Fills the address maps. Only ports Ironic links boot names for are answered
    /// ([`IndexedPort::boot_names`]); a fixed IP only for a PXE-enabled port (Ironic creates the
    /// Neutron port of any other with no IP). On a duplicate the node with the lower UUID keeps
    /// the address.
    fn index_addresses(&mut self) {
        let s = &mut self.s;
        let mut warnings = Vec::new();
        for i in 0..s.ports.len() {
            let p = &s.ports[i];
            let first =
                |&j: &usize| s.nodes[s.ports[j].node].node.uuid <= s.nodes[p.node].node.uuid;
            match s.by_address.get(&p.port.address) {
                None => {
                    s.by_address.insert(p.port.address, i);
                }
                Some(j) => {
                    // Settled by node UUID without a warning; a patch could not settle it.
                    s.patchable = false;
                    if !first(j) {
                        s.by_address.insert(p.port.address, i);
                    }
                }
            }
            // Settling never declines.
            let _ = s.index_boot_keys(i, &mut OnTaken::Settle(&mut warnings));
        }
        for (i, n) in s.nodes.iter().enumerate() {
            if let Some(u) = n.system_uuid {
                if let Some(&other) = s.by_system_uuid.get(&u) {
                    let (keep, drop) = lower_first(&s.nodes, other, i);
                    warnings.push(format!(
                        "system UUID {u} is on nodes {} and {}; using {}",
                        s.nodes[keep].node.uuid, s.nodes[drop].node.uuid, s.nodes[keep].node.uuid
                    ));
                    s.by_system_uuid.insert(u, keep);
                } else {
                    s.by_system_uuid.insert(u, i);
                }
            }
        }
        s.warnings.extend(warnings);
    }

    /// Keeps each node's revision when neither it nor its ports changed since `prev`.
    fn set_revisions(&mut self, prev: Option<&Snapshot>) {
        let Some(prev) = prev else {
            self.s.changes.added = self.s.by_uuid.keys().copied().collect();
            return;
        };
        for i in 0..self.s.nodes.len() {
            self.s.carry_revision(prev, i);
        }
        for old in &prev.nodes {
            if !self.s.by_uuid.contains_key(&old.node.uuid) {
                self.s.changes.removed.insert(old.node.uuid);
            }
        }
    }
}

fn same_node(prev: &Snapshot, old: &IndexedNode, next: &Snapshot, new: &IndexedNode) -> bool {
    old.node == new.node
        && old.system_uuid == new.system_uuid
        && old.ports.len() == new.ports.len()
        && old
            .ports
            .iter()
            .zip(&new.ports)
            .all(|(&a, &b)| prev.ports[a].port == next.ports[b].port)
}

/// What indexing does with a key another port already has: a full build settles it by rule
/// and warns ([`claim`]); a patch declines, and the store builds in full.
enum OnTaken<'w> {
    Settle(&'w mut Vec<String>),
    Decline,
}

impl OnTaken<'_> {
    /// Inserts `key → port`; `None` only when the key is taken and this declines.
    fn put<K: std::hash::Hash + Eq + Copy + fmt::Display>(
        &mut self,
        map: &mut HashMap<K, usize>,
        key: K,
        port: usize,
        ports: &[IndexedPort],
        nodes: &[IndexedNode],
    ) -> Option<()> {
        match self {
            OnTaken::Settle(warnings) => {
                claim(map, key, port, ports, nodes, warnings);
                Some(())
            }
            OnTaken::Decline => fresh_key(map, key, port),
        }
    }
}

/// Inserts `key → i` unless the key is taken (`None`).
fn fresh_key<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, i: usize) -> Option<()> {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(_) => None,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(i);
            Some(())
        }
    }
}

/// Inserts `key → port`, settling a duplicate in favour of the node with the lower UUID.
fn claim<K: std::hash::Hash + Eq + Copy + std::fmt::Display>(
    map: &mut HashMap<K, usize>,
    key: K,
    port: usize,
    ports: &[IndexedPort],
    nodes: &[IndexedNode],
    warnings: &mut Vec<String>,
) {
    let Some(&other) = map.get(&key) else {
        map.insert(key, port);
        return;
    };
    let (a, b) = (ports[other].node, ports[port].node);
    if a == b {
        warnings.push(format!(
            "address {key} appears twice on node {}; using the first port",
            nodes[a].node.uuid
        ));
        return;
    }
    let (keep, drop) = lower_first(nodes, a, b);
    warnings.push(format!(
        "address {key} is on nodes {} and {}; using {}",
        nodes[keep].node.uuid, nodes[drop].node.uuid, nodes[keep].node.uuid
    ));
    if keep == b {
        map.insert(key, port);
    }
}

fn lower_first(nodes: &[IndexedNode], a: usize, b: usize) -> (usize, usize) {
    if nodes[a].node.uuid <= nodes[b].node.uuid {
        (a, b)
    } else {
        (b, a)
    }
}

/// What the snapshot derives from one node or port by itself, with the warnings about its
/// fields: shared by a full build and a patch, so both derive alike.
#[derive(Clone, Copy)]
struct Derive<'a> {
    cfg: &'a IndexConfig,
}

impl Derive<'_> {
    fn system_uuid(
        self,
        node: &Node,
        source: &SourceId,
        warns: &mut Vec<String>,
    ) -> Option<SystemUuid> {
        let key = &self.cfg.system_uuid_key;
        let raw = node.extra.get(key)?;
        let what = match raw.as_str().map(SystemUuid::parse) {
            Some(Ok(u)) => return Some(u),
            Some(Err(e)) => format!("extra.{key}: {e}"),
            None => format!("extra.{key} is {raw}, not a string"),
        };
        warns.push(format!("{source}: node {}: {what}; ignored", node.uuid));
        None
    }

    /// The port as indexed under node index `node`.
    fn port(
        self,
        source: &SourceId,
        (node, node_uuid): (usize, NodeUuid),
        port: &Arc<Port>,
        warns: &mut Vec<String>,
    ) -> IndexedPort {
        IndexedPort {
            port: port.clone(),
            node,
            client_id: client_id(source, node_uuid, port, warns),
            fixed_ip: self.fixed_ip(source, node_uuid, port, warns),
            boot_names: port.pxe_enabled || self.cfg.add_all_ports,
        }
    }

    fn fixed_ip(
        self,
        source: &SourceId,
        node: NodeUuid,
        port: &Port,
        warns: &mut Vec<String>,
    ) -> Option<Ipv4Addr> {
        let key = &self.cfg.fixed_ip_key;
        let raw = port.extra.get(key)?;
        match raw.as_str().map(str::parse::<Ipv4Addr>) {
            Some(Ok(ip)) => Some(ip),
            _ => {
                warns.push(format!(
                    "{source}: node {node}: port {} extra.{key} = {raw} is not an IPv4 address; ignored",
                    port.address
                ));
                None
            }
        }
    }
}

/// The port's RFC 4390 client-id. A client-id that decides the link type otherwise than
/// its looks suggest is reported: a falsy one (an Ethernet port, as Ironic treats it) and
/// a truthy one that is not 20 bytes (InfiniBand all the same, but without a GUID).
fn client_id(
    source: &SourceId,
    node: NodeUuid,
    port: &Port,
    warns: &mut Vec<String>,
) -> Option<ClientId> {
    let address = port.address;
    match port.client_id() {
        Some(Ok(cid)) => {
            if cid.guid().ib_mac() != address {
                warns.push(format!(
                    "{source}: InfiniBand port {address} of node {node}: address is not the IB MAC of the client-id's GUID {} (expected {})",
                    cid.guid(), cid.guid().ib_mac()
                ));
            }
            Some(cid)
        }
        Some(Err(e)) => {
            warns.push(format!(
                "{source}: node {node}: port {address} {e}; it boots as InfiniBand all the same (20-{}, as Ironic treats any non-empty client-id)",
                address.hyphen()
            ));
            None
        }
        None => {
            if let Some(v) = port.extra.get(Port::CLIENT_ID_KEY) {
                let v: String = v.to_string().chars().take(16).collect();
                warns.push(format!(
                    "{source}: node {node}: port {address} extra.client-id is {v}, which Ironic reads as no client-id: an Ethernet port (01-{})",
                    address.hyphen()
                ));
            }
            None
        }
    }
}
