"""The Ironic side of tests/parity.rs: generated nodes and ports, and what Ironic 39.0.0 and
ironic-python-agent 13.0.0 themselves answer about them.

Usage: ironic_side.py --seed N --nodes N --out DIR

Writes DIR/state/{nodes,ports}.json (Ironic API JSON, an ironpxe state directory),
DIR/inventories/<node>.json (agent inventories) and DIR/ironic.json (Ironic's answers). Every
answer comes from calling Ironic's or the agent's own functions; only what they reach outside
the process is replaced: the Neutron client (a recorder), the DHCP provider's IP addresses
(each PXE-enabled port's `extra.fixed_ip`, the value ironpxe uses for hex-IP names), the
agent's view of /sys and its ioctls. Nodes and ports live in a real sqlite database made by
Ironic's own migrations, so lookups and inspection hooks run Ironic's real queries.

This is test code of ironpxe; it imports Ironic and the agent, it copies neither.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from types import SimpleNamespace
from unittest import mock

# What both sides are configured with (ironpxe gets the same values as flags).
TFTP_SERVER = "192.0.2.1"
HTTP_URL = "http://192.0.2.1:8080"
# [DEFAULT] my_ipv6 and the by-arch boot files (ironpxe: --next-server6 and [ironic_pxe]).
MY_IPV6 = "2001:db8::1"
PXE_BY_ARCH = {"aarch64": "grubaa64.efi", "x86_64-bios": "pxelinux-x86.0"}
IPXE_BY_ARCH = {"aarch64-uefi": "snp-arm.efi", "None-bios": "undionly-noarch.kpxe"}

MLNX_PREFIX = "ff:00:00:00:00:00:02:00:00:02:c9:00"
# A client-id prefix another vendor's firmware might use (same RFC 4390 shape).
OTHER_PREFIX = "ff:00:00:00:00:00:02:00:00:1b:21:00"
IB_OUIS = ["7c:fe:90", "0c:42:a1", "b8:59:9f", "98:03:9b", "00:02:c9"]
PROVISION_STATES = ["deploying", "wait call-back", "cleaning", "clean wait",
                    "inspecting", "inspect wait", "rescuing", "rescue wait",
                    "active", "available", "manageable", "enroll",
                    "deploy failed", "service wait"]
BOOT_INTERFACES = ["pxe", "ipxe", "http", "http-ipxe", "pxe", "ipxe", "fake"]
# [inspector] settings each inventory is inspected with; the first is Ironic's default.
INSPECTOR_SETTINGS = [
    {"add_ports": "pxe", "keep_ports": "all", "update_pxe_enabled": True},
    {"add_ports": "all", "keep_ports": "all", "update_pxe_enabled": True},
    {"add_ports": "active", "keep_ports": "present", "update_pxe_enabled": True},
    {"add_ports": "disabled", "keep_ports": "added", "update_pxe_enabled": False},
]


def hexbytes(rng, n):
    return ":".join("%02x" % rng.randrange(256) for _ in range(n))


class Generator:
    """Nodes and ports in the shape `GET /v1/nodes?detail=True` / `ports` returns them."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.used = set()
        self.ip = 0

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def unique(self, make):
        while True:
            v = make()
            if v not in self.used:
                self.used.add(v)
                return v

    def fixed_ip(self):
        self.ip += 1
        return "10.%d.%d.%d" % (self.rng.randrange(256), self.ip // 250, self.ip % 250 + 1)

    def guid(self):
        oui = self.rng.choice(IB_OUIS)
        return self.unique(lambda: "%s:%s" % (oui, hexbytes(self.rng, 5)))

    def eth_mac(self):
        return self.unique(lambda: "52:54:00:" + hexbytes(self.rng, 3))

    def port(self, node_uuid, kind):
        r = self.rng
        extra = {}
        pxe = r.random() < 0.8
        guid = None
        if kind == "eth":
            address = self.eth_mac()
        elif kind in ("ib", "ib-upper", "ib-other-prefix", "ib-no-client-id", "ib-guid-prefix"):
            guid = self.guid()
            g = guid.split(":")
            address = ":".join(g[0:3] + g[5:8])
            if kind == "ib-guid-prefix":
                address = ":".join(g[0:6])
            if address in self.used and kind != "ib-guid-prefix":
                return None
            self.used.add(address)
            prefix = OTHER_PREFIX if kind == "ib-other-prefix" else MLNX_PREFIX
            if kind != "ib-no-client-id":
                extra["client-id"] = "%s:%s" % (prefix, guid)
            if kind == "ib-upper":
                extra["client-id"] = extra["client-id"].upper()
        else:  # odd client-ids on an Ethernet-looking address
            address = self.eth_mac()
            extra["client-id"] = {
                "cid-empty": "", "cid-null": None,
                "cid-short": "01:" + address,
            }[kind]
        if r.random() < 0.35:
            extra["fixed_ip"] = self.fixed_ip()
        port = {
            "uuid": self.uuid(), "address": address, "node_uuid": node_uuid,
            "parity_kind": kind,  # removed before the state is written
            "pxe_enabled": pxe, "extra": extra, "local_link_connection": {},
            "physical_network": None, "portgroup_uuid": None, "is_smartnic": False,
        }
        return port, guid

    def node(self, i):
        r = self.rng
        node_uuid = self.uuid()
        props = {}
        arch = r.choice(["x86_64", "x86_64", "aarch64", None])
        if arch:
            props["cpu_arch"] = arch
        mode = r.choice(["bios", "uefi", None])
        if mode:
            props["capabilities"] = "boot_mode:%s" % mode
        node = {
            "uuid": node_uuid, "name": "parity-%d" % i, "driver": "ipmi",
            "provision_state": r.choice(PROVISION_STATES),
            "boot_interface": r.choice(BOOT_INTERFACES),
            "deploy_interface": "direct", "network_interface": "flat",
            "properties": props, "instance_info": {}, "driver_internal_info": {},
            "driver_info": {"deploy_kernel": "http://192.0.2.1:8080/ipa.kernel",
                            "deploy_ramdisk": "http://192.0.2.1:8080/ipa.initramfs",
                            "rescue_kernel": "http://192.0.2.1:8080/ipa.kernel",
                            "rescue_ramdisk": "http://192.0.2.1:8080/ipa.initramfs"},
            "extra": {},
        }
        kinds = ["eth", "eth", "ib", "ib-upper", "ib-other-prefix", "ib-no-client-id",
                 "ib-guid-prefix", "cid-empty", "cid-null", "cid-short"]
        ports, guids = [], {}
        for _ in range(r.choice([1, 1, 2, 2, 3])):
            made = self.port(node_uuid, r.choice(kinds))
            if made:
                ports.append(made[0])
                guids[made[0]["uuid"]] = made[1]
        return node, ports, guids


def generate(seed, count):
    g = Generator(seed)
    nodes, ports, guids = [], [], {}
    for i in range(count):
        n, ps, gs = g.node(i)
        nodes.append(n)
        ports.extend(ps)
        guids.update(gs)
    return nodes, ports, guids, g.rng


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


def ipoib_address(guid, rng):
    """A Linux IPoIB hardware address: 4 flag/QPN bytes, the GID prefix, the GUID."""
    qpn = rng.choice(["a0:00:00:27", "80:00:02:08", "00:00:04:4a"])
    return "%s:fe:80:00:00:00:00:00:00:%s" % (qpn, guid)


# --- the agent (a separate process: the agent and Ironic register clashing options) -----

def ipa_main(path):
    """For each IPoIB address, what IPA's Mellanox hardware manager reports."""
    warnings.filterwarnings("ignore")
    from ironic_python_agent import config
    config.populate_config()
    from ironic_python_agent import hardware, netutils
    from ironic_python_agent.hardware_managers import mlnx
    with open(path) as f:
        addresses = json.load(f)
    out = []
    mgr = mlnx.MellanoxDeviceHardwareManager()
    for a in addresses:
        with mock.patch.object(netutils, "get_mac_addr", return_value=a), \
                mock.patch.object(netutils, "get_ipv4_addr", return_value=None), \
                mock.patch.object(netutils, "interface_has_carrier", return_value=True), \
                mock.patch.object(hardware, "_get_device_info",
                                  return_value=mlnx.MLNX_VENDOR_ID):
            iface = mgr.get_interface_info("ib0")
        out.append({"ipoib": a, "mac": iface.mac_address, "client_id": iface.client_id})
    json.dump(out, sys.stdout)


def run_ipa(tmp, addresses):
    path = os.path.join(tmp, "ipoib.json")
    with open(path, "w") as f:
        json.dump(addresses, f)
    out = subprocess.run([sys.executable, __file__, "--ipa", path], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


# --- Ironic -------------------------------------------------------------------------------

class Ironic:
    """A configured Ironic library (no services) over a fresh sqlite database."""

    def __init__(self, tmp, add_all_ports=False):
        warnings.filterwarnings("ignore")
        import logging
        logging.disable(logging.CRITICAL)
        from ironic.conf import CONF
        from ironic.common import context
        from ironic import objects
        objects.register_all()
        CONF([], project="ironic")
        CONF.set_override("connection", "sqlite:///%s/ironic.db" % tmp, group="database")
        CONF.set_override("sqlite_synchronous", False, group="database")  # a scratch DB
        CONF.set_override("tftp_server", TFTP_SERVER, group="pxe")
        CONF.set_override("http_url", HTTP_URL, group="deploy")
        CONF.set_override("my_ipv6", MY_IPV6)
        CONF.set_override("pxe_bootfile_name_by_arch", PXE_BY_ARCH, group="pxe")
        CONF.set_override("ipxe_bootfile_name_by_arch", IPXE_BY_ARCH, group="pxe")
        CONF.set_override("add_all_ports", add_all_ports, group="neutron")
        from ironic.db import migration
        with contextlib.redirect_stderr(open(os.devnull, "w")):
            migration.create_schema()
        self.CONF, self.objects, self.tmp = CONF, objects, tmp
        self.boots = {}
        self.ctx = context.get_admin_context()
        self.template = os.path.join(tmp, "config.template")
        with open(self.template, "w") as f:
            f.write("parity {{ pxe_options }}\n")

    def enrol(self, nodes, ports):
        """Creates the nodes and ports; returns node uuid -> Node object."""
        fields = ["uuid", "name", "driver", "provision_state", "boot_interface",
                  "deploy_interface", "network_interface", "properties", "instance_info",
                  "driver_internal_info", "driver_info", "extra"]
        made = {}
        for n in nodes:
            node = self.objects.Node(self.ctx, **{k: n[k] for k in fields})
            node.create()
            made[n["uuid"]] = node
        for p in ports:
            port = self.objects.Port(
                self.ctx, uuid=p["uuid"], address=p["address"],
                node_id=made[p["node_uuid"]].id, pxe_enabled=p["pxe_enabled"],
                extra=p["extra"], local_link_connection={})
            port.create()
        return made

    def boot(self, node):
        """The node's boot interface, as Ironic's driver would load it (None: not a
        network boot interface)."""
        from ironic.drivers.modules import ipxe, pxe
        name = node.boot_interface
        cls = {"pxe": pxe.PXEBoot, "http": pxe.HttpBoot, "ipxe": ipxe.iPXEBoot,
               "http-ipxe": ipxe.iPXEHttpBoot}.get(name)
        if cls and name not in self.boots:
            # iPXE interfaces write boot.ipxe into the HTTP root when loaded.
            self.CONF.set_override("http_root", self.tmp, group="deploy")
            self.boots[name] = cls()
        return self.boots.get(name)

    def task(self, node, boot):
        ports = self.objects.Port.list_by_node_id(self.ctx, node.id)
        # The network interface is only named in add_ports_to_network's log line.
        return SimpleNamespace(node=node, ports=ports, portgroups=[], context=self.ctx,
                               driver=SimpleNamespace(boot=boot, network=object()))

    @contextlib.contextmanager
    def ip_source(self):
        """The DHCP provider's IPs: each port with a Neutron IP (PXE-enabled) and a
        `extra.fixed_ip`."""
        from ironic.dhcp import neutron as dhcp_neutron

        def ips(_self, task):
            return [p.extra["fixed_ip"] for p in task.ports
                    if p.pxe_enabled and p.extra.get("fixed_ip")]
        with mock.patch.object(dhcp_neutron.NeutronDHCPApi, "get_ip_addresses", ips):
            yield

    def links(self, node, ipxe_enabled):
        """Every name `pxe_utils.create_pxe_config` links for the node, as
        (root, path relative to it): root `tftp` or `http`."""
        from ironic.common import pxe_utils
        boot = self.boot(node)
        roots = {r: tempfile.mkdtemp(dir=self.tmp) for r in ("tftp", "http")}
        self.CONF.set_override("tftp_root", roots["tftp"], group="pxe")
        self.CONF.set_override("http_root", roots["http"], group="deploy")
        task = self.task(node, boot)
        with self.ip_source():
            pxe_utils.create_pxe_config(task, {}, self.template, ipxe_enabled=ipxe_enabled)
        found = []
        for root, top in roots.items():
            for d, _dirs, files in os.walk(top):
                for f in files:
                    p = os.path.join(d, f)
                    if os.path.islink(p):
                        found.append([root, os.path.relpath(p, top)])
            shutil.rmtree(top)
        return sorted(found)

    def dhcp_options(self, node):
        """The options `PXEBaseMixin.prepare_ramdisk` sends to every Neutron port of the
        node (IPv4 then IPv6), per port: plus option 61 from `neutron.add_ports_to_network`.
        Ports without a Neutron port are absent; `fixed_ips: []` marks one without an IP."""
        from ironic.common import neutron, pxe_utils
        boot = self.boot(node)
        # A boot interface without `pxe_boot` (fake, virtual media): Neutron ports for every
        # port, no boot options (no prepare_ramdisk over the network).
        task = self.task(node, boot or SimpleNamespace(capabilities=[]))
        common = []
        for v in (4, 6) if boot else ():
            common += pxe_utils.dhcp_options_for_instance(
                task, ipxe_enabled=boot.ipxe_enabled, ip_version=v,
                http_boot_enabled=boot.http_boot_enabled)
        created = []

        class Client:
            def create_port(self, **attrs):
                created.append(attrs)
                return SimpleNamespace(id="neutron-%d" % len(created), fixed_ips=[])

            def close(self):
                pass

        def update(_ctx, port_id, attrs, client=None):
            created[int(port_id.split("-")[1]) - 1]["update"] = attrs
            return SimpleNamespace(id=port_id, fixed_ips=[])
        with mock.patch.object(neutron, "get_client", return_value=Client()), \
                mock.patch.object(neutron, "update_neutron_port", update):
            try:
                vifs = neutron.add_ports_to_network(task, "provisioning-net")
            except Exception as e:  # e.g. "No available PXE-enabled ports"
                return {"error": str(e)}
        by_mac = {c["update"]["mac_address"]: c for c in created}
        out = {}
        for p in task.ports:
            if p.uuid not in vifs:
                continue
            attrs = by_mac[p.address]
            # Neutron keeps the boot options of its port's IP versions (dhcp/neutron.py
            # update_port_dhcp_opts): the mocked provisioning network is dual-stack (ironpxe:
            # DHCPv6 on), and a port created with `fixed_ips: []` keeps none.
            boot_opts = [] if attrs.get("fixed_ips") == [] else common
            out[p.uuid] = {"opts": attrs.get("extra_dhcp_opts", []) + boot_opts,
                           "fixed_ips": attrs.get("fixed_ips")}
        return out

    def lookup(self, spelling):
        """The node `GET /v1/lookup?addresses=<spelling>` finds: the API's MAC validation,
        then `Node.get_by_port_addresses` (dbapi `get_node_by_port_addresses`)."""
        from ironic.api.controllers.v1 import ramdisk
        from ironic.common import exception
        valid = ramdisk.get_valid_mac_addresses([spelling])
        if not valid:
            return None
        try:
            return self.objects.Node.get_by_port_addresses(self.ctx, valid).uuid
        except exception.NodeNotFound:
            return None

    def inspect(self, node_uuid, inventory, settings):
        """The node's ports after the validate-interfaces and ports inspection hooks ran
        on `inventory` with these `[inspector]` settings; the database is restored after."""
        from ironic.drivers.modules.inspector.hooks import ports as ports_hook
        from ironic.drivers.modules.inspector.hooks import validate_interfaces as vi
        db = os.path.join(self.tmp, "ironic.db")
        shutil.copyfile(db, db + ".bak")
        try:
            for k, v in settings.items():
                self.CONF.set_override(k, v, group="inspector")
            node = self.objects.Node.get_by_uuid(self.ctx, node_uuid)
            task = SimpleNamespace(node=node, context=self.ctx)
            plugin_data = {}
            try:
                vi.ValidateInterfacesHook().preprocess(task, inventory, plugin_data)
                ports_hook.PortsHook()(task, inventory, plugin_data)
                error = None
            except Exception as e:  # InvalidNodeInventory: inspection fails
                error = type(e).__name__
            after = {p.address: {"pxe_enabled": p.pxe_enabled,
                                 "client_id": p.extra.get("client-id", None)}
                     for p in self.objects.Port.list_by_node_id(self.ctx, node.id)}
            return {"error": error, "ports": after}
        finally:
            shutil.copyfile(db + ".bak", db)
            for k in settings:
                self.CONF.clear_override(k, group="inspector")


def spellings(port, guid, ipa_macs):
    """Addresses an agent or an operator would look the port up by."""
    a = port["address"]
    out = [("address", a), ("address-upper", a.upper()), ("address-dashes", a.replace(":", "-"))]
    if guid and guid in ipa_macs:
        out.append(("ipa-mac", ipa_macs[guid]))
    return out


def inventory_for(rng, node, ports, guids):
    """What the agent would report for the node: its ports as interfaces (IB ports as the
    Mellanox manager reports them), sometimes an unenrolled NIC, loopback, a boot
    interface in one of its spellings or none."""
    ifaces = [{"name": "lo", "mac_address": "00:00:00:00:00:00", "ipv4_address": "127.0.0.1"}]
    for i, p in enumerate(ports):
        guid = guids.get(p["uuid"])
        if guid:
            g = guid.split(":")
            mac = ":".join(g[0:3] + g[5:8])
            cid = "%s:%s" % (MLNX_PREFIX, guid)
            ifaces.append({"name": "ib%d" % i, "mac_address": mac, "client_id": cid,
                           "ipv4_address": rng.choice([None, "192.0.2.%d" % (10 + i)])})
        else:
            ifaces.append({"name": "eth%d" % i, "mac_address": p["address"], "client_id": None,
                           "ipv4_address": rng.choice([None, "192.0.2.%d" % (10 + i)])})
    if rng.random() < 0.4:
        ifaces.append({"name": "eno9", "mac_address": "52:54:01:" + hexbytes(rng, 3),
                       "client_id": None, "ipv4_address": None})
    inv = {"interfaces": ifaces}
    real = [i for i in ifaces if i["name"] != "lo"]
    choice = rng.random()
    if choice < 0.7 and real:
        mac = rng.choice(real)["mac_address"]
        inv["boot"] = {"pxe_interface": rng.choice([mac, "01-" + mac.replace(":", "-")])}
    return inv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--nodes", type=int, default=120)
    ap.add_argument("--inventories", type=int, default=30)
    ap.add_argument("--out")
    ap.add_argument("--add-all-ports", action="store_true",
                    help="Ironic's [neutron] add_all_ports = True")
    ap.add_argument("--ipa", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ipa:
        return ipa_main(args.ipa)
    nodes, ports, guids, rng = generate(args.seed, args.nodes)
    kinds = {p["uuid"]: p.pop("parity_kind") for p in ports}
    out = args.out
    write_json(os.path.join(out, "state", "nodes.json"), {"nodes": nodes})
    write_json(os.path.join(out, "state", "ports.json"), {"ports": ports})
    tmp = tempfile.mkdtemp(prefix="ironpxe-parity-")
    try:
        answers = answer(args, nodes, ports, guids, kinds, rng, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(os.path.join(out, "ironic.json"), answers)


def answer(args, nodes, ports, guids, kinds, rng, tmp):
    guid_list = sorted({g for g in guids.values() if g})
    ipa = run_ipa(tmp, [ipoib_address(g, rng) for g in guid_list])
    ipa_macs = {a["ipoib"][36:]: a["mac"] for a in ipa}
    ironic = Ironic(tmp, add_all_ports=args.add_all_ports)
    made = ironic.enrol(nodes, ports)
    by_node = {}
    for p in ports:
        by_node.setdefault(p["node_uuid"], []).append(p)
    result = {"seed": args.seed, "tftp_server": TFTP_SERVER, "http_url": HTTP_URL,
              "nodes": {}, "ports": {}, "lookups": [], "ipa": ipa, "inspections": []}
    for n in nodes:
        node = made[n["uuid"]]
        boot = ironic.boot(node)
        entry = {"boot_interface": n["boot_interface"], "links": [], "all_links": []}
        if boot is not None:
            entry["links"] = ironic.links(node, boot.ipxe_enabled)
            entry["all_links"] = sorted(
                ironic.links(node, False) + ironic.links(node, True))
        entry["dhcp"] = ironic.dhcp_options(node)
        result["nodes"][n["uuid"]] = entry
    for p in ports:
        guid = guids.get(p["uuid"])
        result["ports"][p["uuid"]] = {"node": p["node_uuid"], "address": p["address"],
                                      "guid": guid, "kind": kinds[p["uuid"]],
                                      "pxe_enabled": p["pxe_enabled"], "extra": p["extra"]}
        for kind, s in spellings(p, guid, ipa_macs):
            result["lookups"].append({"port": p["uuid"], "kind": kind, "address": s,
                                      "node": ironic.lookup(s)})
    for n in nodes[:args.inventories]:
        inv = inventory_for(rng, n, by_node.get(n["uuid"], []), guids)
        write_json(os.path.join(args.out, "inventories", n["uuid"] + ".json"),
                   {"inventory": inv})
        for settings in INSPECTOR_SETTINGS:
            r = ironic.inspect(n["uuid"], inv, settings)
            r.update({"node": n["uuid"], "settings": settings})
            result["inspections"].append(r)
    return result


if __name__ == "__main__":
    sys.exit(main())
