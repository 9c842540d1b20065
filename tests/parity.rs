//! Differential test: ironpxe against the real code of Ironic 39.0.0 and ironic-python-agent
//! 13.0.0 (both from PyPI, `.ci/ironic-venv`). `tests/parity/ironic_side.py` generates a few
//! hundred nodes and ports in Ironic's API JSON (Ethernet and InfiniBand ports; empty, null,
//! short, upper-case and other-vendor client-ids; non-PXE ports; IB ports without client-id
//! or with the GUID's first six bytes as address; every network boot interface and boot
//! mode), writes them as an ironpxe state directory and records what Ironic's and the agent's
//! own functions answer. This test then asks ironpxe the same questions the way an operator
//! or a client does — a running `ironpxe serve` over TFTP and HTTP for names, `ironpxe dhcp
//! --format neutron`, `ironpxe addr`, `ironpxe inspect` — and compares them property by
//! property, each comparison a named check.
//!
//! A check is either in agreement, in [`DELIBERATE`] (ironpxe differs on purpose; documented
//! in docs/ironic-parity.md, "Differential test"), or in [`PENDING`] (a known disagreement of
//! issue 23 still being fixed: printed, not failed; delete the entry once the fix lands — a
//! pending check that agrees fails the test so the list stays true). Any other disagreement
//! fails, printing the check, the node/port, both values and the seed.
//! `IRONPXE_PARITY_SEED=<n>` reproduces a run (default [`DEFAULT_SEED`], so CI is
//! deterministic).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::http_client;
use common::tftp::{self, ClientOpts, Failure};
use common::{ironic, Ironpxe, Options};
use serde_json::Value;

const DEFAULT_SEED: u64 = 23;
/// Generated nodes (1-3 ports each) and, of those, nodes inspected.
const NODES: usize = 120;
const INVENTORIES: usize = 30;
/// What both sides are configured with (`ironic_side.py` sets Ironic's `[pxe] tftp_server`
/// and `[deploy] http_url` to the same).
const TFTP_SERVER: &str = "192.0.2.1";
const HTTP_URL: &str = "http://192.0.2.1:8080";
/// Ironic's `[DEFAULT] my_ipv6` and by-arch boot files, as `ironic_side.py` sets them.
const MY_IPV6: &str = "2001:db8::1";
const IRONIC_PXE: &str = "[ironic_pxe]\n\
    pxe_bootfile_name_by_arch = { aarch64 = \"grubaa64.efi\", \"x86_64-bios\" = \"pxelinux-x86.0\" }\n\
    ipxe_bootfile_name_by_arch = { \"aarch64-uefi\" = \"snp-arm.efi\", \"None-bios\" = \"undionly-noarch.kpxe\" }\n";

/// One run of both sides: the default settings, or Ironic's `[neutron] add_all_ports = True`
/// (and ironpxe's `[neutron] add_all_ports = true`) on a smaller fleet.
#[derive(Clone, Copy)]
struct Variant {
    nodes: usize,
    inventories: usize,
    add_all_ports: bool,
}

impl Variant {
    const DEFAULT: Variant = Variant {
        nodes: NODES,
        inventories: INVENTORIES,
        add_all_ports: false,
    };
    const ADD_ALL_PORTS: Variant = Variant {
        nodes: 40,
        inventories: 0,
        add_all_ports: true,
    };

    /// Appended to every check name of the run, so both runs report side by side.
    fn suffix(self) -> &'static str {
        if self.add_all_ports {
            "{add_all_ports}"
        } else {
            ""
        }
    }

    /// ironpxe's configuration text for the run (served and `dhcp`).
    fn toml(self) -> String {
        let mut t = IRONIC_PXE.to_owned();
        if self.add_all_ports {
            t.push_str("[neutron]\nadd_all_ports = true\n");
        }
        t
    }
}

/// Checks where ironpxe differs from Ironic on purpose: (check, reason). Also in
/// docs/ironic-parity.md, "Differential test".
const DELIBERATE: &[(&str, &str)] = &[
    (
        "names.unlinked.pxelinux-01[ib]",
        "ironpxe answers 01-<ib-mac>: upstream-iPXE firmware presents IPoIB as Ethernet and asks it; Ironic links only 20-",
    ),
    (
        "names.unlinked.pxelinux-01[ib-guid-prefix]",
        "as above, for an IB port enrolled under the GUID's first six bytes",
    ),
    (
        "names.unlinked.pxelinux-01[odd-client-id]",
        "as above: a truthy client-id that is not 20 bytes makes an InfiniBand port (Ironic's rule)",
    ),
    (
        "names.unlinked.no-network-boot",
        "ironpxe answers every enrolled node (local boot when Ironic would not net-boot it); Ironic links nothing for a non-network boot interface",
    ),
    (
        "lookup.ipoib[ib-guid-prefix]",
        "ironpxe matches the GUID in the port's client-id; Ironic's lookup knows only port.address, here not the IB MAC the agent reports",
    ),
    (
        "dhcp.neutron-ports-of-non-pxe-boot-interfaces",
        "Ironic gives every port of a node whose boot interface lacks pxe_boot a Neutron port; such nodes never boot from ironpxe, which lists none of their non-PXE ports",
    ),
    (
        "names.unlinked.ip-conf[eth]",
        "ironpxe answers <ip>.conf for every node with that fixed IP, as it answers <mac>.conf; Ironic links it only for UEFI nodes booted by PXE without iPXE",
    ),
    ("names.unlinked.ip-conf[ib]", "as above"),
    ("names.unlinked.ip-conf[ib-guid-prefix]", "as above"),
    ("names.unlinked.ip-conf[ib-no-client-id]", "as above"),
    ("names.unlinked.ip-conf[odd-client-id]", "as above"),
    (
        "lookup.address-dashes",
        "ironpxe reads every spelling of an address; Ironic's lookup API takes colon-separated MACs only",
    ),
];

/// Disagreements known today, each fixed by another part of issue 23: (check, issue item).
/// Printed with examples, not failed. Delete an entry when its fix lands.
const PENDING: &[(&str, &str)] = &[];

/// One answer compared.
struct Mismatch {
    subject: String,
    ironic: String,
    ironpxe: String,
}

/// Every comparison made, by check.
#[derive(Default)]
struct Report {
    checks: BTreeMap<String, (usize, Vec<Mismatch>)>,
    /// The running [`Variant`]'s suffix, appended to each check's name.
    suffix: &'static str,
}

/// A check's name without its [`Variant`] suffix: what [`DELIBERATE`] and [`PENDING`] list
/// (a listed difference holds in every variant).
fn base(check: &str) -> &str {
    check.split('{').next().unwrap_or(check)
}

impl Report {
    fn compare(&mut self, check: &str, subject: &str, ironic: &str, ironpxe: &str) {
        let key = format!("{check}{}", self.suffix);
        let e = self.checks.entry(key).or_default();
        e.0 += 1;
        if ironic != ironpxe {
            e.1.push(Mismatch {
                subject: subject.to_owned(),
                ironic: ironic.to_owned(),
                ironpxe: ironpxe.to_owned(),
            });
        }
    }

    /// Prints every check; returns the failures (unexpected disagreements and pending
    /// entries that agree now).
    fn finish(&self, seed: u64) -> Vec<String> {
        let listed = |list: &[(&str, &str)], c: &str| {
            list.iter()
                .find(|(name, _)| *name == base(c))
                .map(|(_, why)| why.to_string())
        };
        let mut failures = Vec::new();
        eprintln!("ironic parity (seed {seed}): check, compared, disagreeing");
        for (check, (n, bad)) in &self.checks {
            let status = match (listed(DELIBERATE, check), listed(PENDING, check)) {
                (Some(why), _) => format!("deliberate: {why}"),
                (None, Some(item)) if bad.is_empty() => {
                    failures.push(format!(
                        "{check}: listed in PENDING ({item}) but agrees now: remove it"
                    ));
                    "agrees (PENDING entry is stale)".into()
                }
                (None, Some(item)) => format!("PENDING ({item})"),
                (None, None) if bad.is_empty() => "ok".into(),
                (None, None) => {
                    for m in bad.iter().take(5) {
                        failures.push(format!(
                            "{check}: {}: Ironic {} / ironpxe {} (IRONPXE_PARITY_SEED={seed})",
                            m.subject, m.ironic, m.ironpxe
                        ));
                    }
                    "FAILS".into()
                }
            };
            eprintln!("  {check}: {n}, {} — {status}", bad.len());
            if listed(DELIBERATE, check).is_none() {
                for m in bad.iter().take(3) {
                    eprintln!(
                        "      e.g. {}: Ironic {} / ironpxe {}",
                        m.subject, m.ironic, m.ironpxe
                    );
                }
            }
        }
        for (c, _) in PENDING.iter().chain(DELIBERATE) {
            if !self.checks.keys().any(|k| base(k) == *c) {
                failures.push(format!("{c}: listed, but no such check ran (renamed?)"));
            }
        }
        failures
    }
}

/// The seed: `IRONPXE_PARITY_SEED`, else [`DEFAULT_SEED`].
fn seed() -> u64 {
    match std::env::var("IRONPXE_PARITY_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("IRONPXE_PARITY_SEED={s:?}: {e}")),
        Err(_) => DEFAULT_SEED,
    }
}

/// Runs the Ironic side into `out`; returns its answers.
fn ironic_side(seed: u64, variant: Variant, out: &Path) -> Value {
    let venv = ironic::venv();
    let script = common::root().join("tests/parity/ironic_side.py");
    let run = Command::new(venv.join("bin/python"))
        .args(["-W", "ignore"])
        .arg(&script)
        .args(["--seed", &seed.to_string()])
        .args(["--nodes", &variant.nodes.to_string()])
        .args(["--inventories", &variant.inventories.to_string()])
        .args(variant.add_all_ports.then_some("--add-all-ports"))
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/parity/ironic_side.py");
    assert!(
        run.status.success(),
        "tests/parity/ironic_side.py --seed {seed} failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = fs::read_to_string(out.join("ironic.json")).expect("ironic.json");
    let v: Value = serde_json::from_str(&text).expect("ironic.json is JSON");
    assert_eq!(
        v["tftp_server"], TFTP_SERVER,
        "ironic_side.py's tftp_server"
    );
    assert_eq!(v["http_url"], HTTP_URL, "ironic_side.py's http_url");
    v
}

/// A port as the Ironic side describes it.
struct PortInfo {
    uuid: String,
    node: String,
    address: String,
    guid: Option<String>,
    /// The generator's kind (`eth`, `ib`, `ib-upper`, `cid-empty` …).
    kind: String,
    /// PXE-enabled, or booted all the same under `[neutron] add_all_ports`.
    boots: bool,
    fixed_ip: Option<String>,
    /// The node boots from the network (Ironic links names for it).
    network_boot: bool,
}

impl PortInfo {
    /// The class in name checks: a node that does not boot from the network, else
    /// [`PortInfo::class`].
    fn name_class(&self) -> &'static str {
        match self.network_boot {
            false => "no-network-boot",
            true => self.class(),
        }
    }

    /// The class in check names: what makes Ironic treat the port differently.
    fn class(&self) -> &'static str {
        match self.kind.as_str() {
            _ if !self.boots => "non-pxe",
            "eth" => "eth",
            "ib" | "ib-upper" | "ib-other-prefix" => "ib",
            "ib-no-client-id" => "ib-no-client-id",
            "ib-guid-prefix" => "ib-guid-prefix",
            _ => "odd-client-id",
        }
    }

    fn subject(&self) -> String {
        format!(
            "node {} port {} {} ({})",
            self.node, self.uuid, self.address, self.kind
        )
    }
}

fn ports(answers: &Value, variant: Variant) -> Vec<PortInfo> {
    let nodes = &answers["nodes"];
    let mut out: Vec<PortInfo> = answers["ports"]
        .as_object()
        .expect("ports")
        .iter()
        .map(|(uuid, p)| {
            let node = p["node"].as_str().expect("node").to_owned();
            PortInfo {
                uuid: uuid.clone(),
                network_boot: nodes[&node]["boot_interface"] != "fake",
                node,
                address: p["address"].as_str().expect("address").to_owned(),
                guid: p["guid"].as_str().map(str::to_owned),
                kind: p["kind"].as_str().expect("kind").to_owned(),
                boots: p["pxe_enabled"].as_bool().expect("pxe_enabled") || variant.add_all_ports,
                fixed_ip: p["extra"]["fixed_ip"].as_str().map(str::to_owned),
            }
        })
        .collect();
    out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    out
}

#[test]
fn ironpxe_agrees_with_ironic_and_the_agent() {
    let seed = seed();
    let mut report = Report::default();
    for variant in [Variant::DEFAULT, Variant::ADD_ALL_PORTS] {
        run(&mut report, seed, variant);
    }
    let failures = report.finish(seed);
    assert!(
        failures.is_empty(),
        "ironpxe disagrees with Ironic (reproduce: IRONPXE_PARITY_SEED={seed} cargo test --test parity):\n{}",
        failures.join("\n")
    );
}

/// Both sides on one generated fleet, compared into `report`.
fn run(report: &mut Report, seed: u64, variant: Variant) {
    report.suffix = variant.suffix();
    let dir = tempfile::Builder::new()
        .prefix("ironpxe-parity-")
        .tempdir()
        .expect("temp dir");
    let answers = ironic_side(seed, variant, dir.path());
    let ports = ports(&answers, variant);
    assert!(
        ports.len() > variant.nodes * 5 / 4,
        "only {} ports generated",
        ports.len()
    );
    let state = dir.path().join("state");
    names(report, &answers, &ports, &state, variant);
    dhcp(report, &answers, &ports, &state, variant);
    lookups(report, &answers, &ports, &state);
    derivations(report, &answers, &ports, &state);
    inspections(report, &answers, dir.path());
}

// ---- names ------------------------------------------------------------------------------

/// What ironpxe answered for one name.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Node(String),
    Unknown,
    NotFound,
    Other(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Node(u) => write!(f, "node {u}"),
            Answer::Unknown => write!(f, "unknown-machine config"),
            Answer::NotFound => write!(f, "not found"),
            Answer::Other(s) => write!(f, "{s}"),
        }
    }
}

/// The node a served config is for, from its `# ironpxe: node <name> <uuid>: …` line.
fn served_node(body: &str) -> Answer {
    for line in body.lines().take(3) {
        if let Some(rest) = line.strip_prefix("# ironpxe: node ") {
            let uuid = rest.split_whitespace().nth(1).unwrap_or_default();
            return Answer::Node(uuid.trim_end_matches(':').to_owned());
        }
        if line.starts_with("# ironpxe: unknown machine") {
            return Answer::Unknown;
        }
    }
    Answer::Other(format!("unparsed config {:?}", body.lines().next()))
}

/// Asks a running ironpxe for names, each once.
struct Asker {
    server: Ironpxe,
    sock: UdpSocket,
    http: http_client::Client,
    seen: HashMap<(String, String), Answer>,
}

impl Asker {
    fn ask(&mut self, root: &str, name: &str) -> Answer {
        let key = (root.to_owned(), name.to_owned());
        if let Some(a) = self.seen.get(&key) {
            return a.clone();
        }
        let a = match root {
            "tftp" => self.tftp(name),
            _ => self.http(name),
        };
        self.seen.insert(key, a.clone());
        a
    }

    fn tftp(&self, name: &str) -> Answer {
        let f = tftp::get(&self.sock, self.server.tftp, name, &ClientOpts::default());
        match f.result {
            Ok(b) => served_node(&String::from_utf8_lossy(&b)),
            Err(Failure::Error { code: 1, .. }) => Answer::NotFound,
            Err(e) => Answer::Other(format!("TFTP {e}")),
        }
    }

    fn http(&mut self, name: &str) -> Answer {
        match self.http.get(&format!("/{name}")) {
            Ok(r) if r.status == 200 => served_node(&r.text()),
            Ok(r) if r.status == 404 => Answer::NotFound,
            Ok(r) => Answer::Other(format!("HTTP {}", r.status)),
            Err(e) => Answer::Other(format!("HTTP {e}")),
        }
    }
}

fn start_server(state: &Path, variant: Variant) -> Asker {
    let mut files = Vec::new();
    for e in fs::read_dir(state).expect("state dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).expect("name");
        files.push((name.to_owned(), fs::read_to_string(&p).expect("state file")));
    }
    let server = Ironpxe::start_with(Options {
        state: files,
        toml: variant.toml(),
        ..Options::default()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let http = http_client::Client::new(server.http, http_client::Opts::default());
    Asker {
        server,
        sock,
        http,
        seen: HashMap::new(),
    }
}

/// The kind of a name Ironic links, by its shape (`root`: `tftp` or `http`).
fn name_kind(root: &str, name: &str) -> &'static str {
    if let Some(n) = name.strip_prefix("pxelinux.cfg/") {
        return match (root, &n[..3.min(n.len())]) {
            ("tftp", "01-") => "pxelinux-01",
            ("tftp", "20-") => "pxelinux-20",
            ("tftp", _) => "pxelinux-other",
            _ => "ipxe-mac",
        };
    }
    if name.starts_with("grub.cfg-01-") {
        "grub-mac"
    } else if name.ends_with(".conf") && name.contains(':') {
        "grub-conf"
    } else if name.ends_with(".conf") {
        "ip-conf"
    } else {
        "other"
    }
}

/// The names ironpxe could answer for a port: (kind, root, name).
fn candidates(p: &PortInfo) -> Vec<(&'static str, &'static str, String)> {
    let dashes = p.address.replace(':', "-");
    let mut out = vec![
        ("pxelinux-01", "tftp", format!("pxelinux.cfg/01-{dashes}")),
        ("pxelinux-20", "tftp", format!("pxelinux.cfg/20-{dashes}")),
        ("ipxe-mac", "http", format!("pxelinux.cfg/{dashes}")),
        ("grub-mac", "tftp", format!("grub.cfg-01-{dashes}")),
        ("grub-conf", "tftp", format!("{}.conf", p.address)),
    ];
    if let Some(ip) = &p.fixed_ip {
        out.push(("ip-conf", "tftp", format!("{ip}.conf")));
    }
    out
}

/// `names.linked.<kind>`: every name Ironic links for a node (for its boot interface and
/// mode) resolves in ironpxe to that node. `names.unlinked.<kind>[class]`: a name ironpxe
/// resolves to a port's node is one Ironic links for it under some boot interface.
fn names(report: &mut Report, answers: &Value, ports: &[PortInfo], state: &Path, variant: Variant) {
    let mut asker = start_server(state, variant);
    for (node, n) in answers["nodes"].as_object().expect("nodes") {
        for link in n["links"].as_array().expect("links") {
            let (root, name) = (
                link[0].as_str().expect("root"),
                link[1].as_str().expect("name"),
            );
            let got = asker.ask(root, name);
            report.compare(
                &format!("names.linked.{}", name_kind(root, name)),
                &format!("node {node} {root}:{name}"),
                &Answer::Node(node.clone()).to_string(),
                &got.to_string(),
            );
        }
    }
    for p in ports {
        let all: BTreeSet<&str> = answers["nodes"][&p.node]["all_links"]
            .as_array()
            .expect("all_links")
            .iter()
            .filter_map(|l| l[1].as_str())
            .collect();
        for (kind, root, name) in candidates(p) {
            let served = asker.ask(root, &name) == Answer::Node(p.node.clone());
            let check = match p.name_class() {
                "no-network-boot" => "names.unlinked.no-network-boot".to_owned(),
                class => format!("names.unlinked.{kind}[{class}]"),
            };
            report.compare(
                &check,
                &format!("{} {root}:{name}", p.subject()),
                if all.contains(name.as_str()) {
                    "linked"
                } else {
                    "not linked"
                },
                if served || all.contains(name.as_str()) {
                    "linked"
                } else {
                    "not linked"
                },
            );
        }
    }
}

// ---- DHCP -------------------------------------------------------------------------------

/// Runs `ironpxe …`, returning stdout (a failed run is a test failure unless `may_fail`).
fn cli(args: &[&str], may_fail: bool) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(args)
        .current_dir(common::root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ironpxe");
    assert!(
        may_fail || out.status.success(),
        "ironpxe {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `opt_name` → `opt_value` per IP version (`-` when the option names none).
fn opts_by_name(opts: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for o in opts.as_array().into_iter().flatten() {
        let v = match &o["ip_version"] {
            Value::Null => "-".to_owned(),
            v => format!("v{v}"),
        };
        let name = format!("{v}:{}", o["opt_name"].as_str().unwrap_or("?"));
        out.insert(name, o["opt_value"].as_str().unwrap_or("?").to_owned());
    }
    out
}

/// `dhcp.port-listed[class]`: ironpxe lists a port in `dhcp --format neutron` exactly when
/// Ironic creates a Neutron port for it; `dhcp.opt[<version>:<name>]`: per listed port, each
/// option's value (absent on one side: `absent`).
fn dhcp(report: &mut Report, answers: &Value, ports: &[PortInfo], state: &Path, variant: Variant) {
    let state = state.to_string_lossy();
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("ironpxe.toml");
    fs::write(&config, variant.toml()).expect("write config");
    let config = config.to_string_lossy();
    let url6 = format!("http://[{MY_IPV6}]:8080");
    let text = cli(
        &[
            "dhcp",
            "--format",
            "neutron",
            "--config",
            &config,
            "--state-dir",
            &state,
        ]
        .into_iter()
        .chain(["--next-server", TFTP_SERVER, "--http-url", HTTP_URL])
        .chain(["--next-server6", MY_IPV6, "--http-url6", &url6])
        .collect::<Vec<_>>(),
        false,
    );
    let listed: Value = serde_json::from_str(&text).expect("dhcp --format neutron prints JSON");
    let mut ours: HashMap<(String, String), &Value> = HashMap::new();
    for e in listed.as_array().expect("a JSON array") {
        let key = (
            e["node"].as_str().unwrap_or_default().to_owned(),
            e["port"].as_str().unwrap_or_default().to_lowercase(),
        );
        ours.insert(key, &e["extra_dhcp_opts"]);
    }
    for p in ports {
        let theirs = &answers["nodes"][&p.node]["dhcp"][&p.uuid]["opts"];
        let mine = ours.get(&(p.node.clone(), p.address.clone()));
        let yes_no = |b: bool| if b { "listed" } else { "not listed" };
        let check = match p.network_boot {
            true => format!("dhcp.port-listed[{}]", p.class()),
            false => "dhcp.neutron-ports-of-non-pxe-boot-interfaces".to_owned(),
        };
        report.compare(
            &check,
            &p.subject(),
            yes_no(!theirs.is_null()),
            yes_no(mine.is_some()),
        );
        let (Some(mine), false) = (mine, theirs.is_null()) else {
            continue;
        };
        let (a, b) = (opts_by_name(theirs), opts_by_name(mine));
        for name in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
            let get = |m: &BTreeMap<String, String>| {
                m.get(name).cloned().unwrap_or_else(|| "absent".into())
            };
            report.compare(
                &format!("dhcp.opt[{name}]"),
                &p.subject(),
                &get(&a),
                &get(&b),
            );
        }
    }
}

// ---- lookups and derivations ------------------------------------------------------------

/// `ironpxe addr` for many addresses, two at a time; returns stdout per address.
fn addr_all(addresses: &[String], state: Option<&Path>) -> HashMap<String, String> {
    let out = Mutex::new(HashMap::new());
    let next = Mutex::new(addresses.iter());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(a) = next.lock().map(|mut i| i.next()).unwrap_or(None) {
                    let mut args = vec!["addr".to_owned(), a.clone()];
                    if let Some(d) = state {
                        args.extend(["--state-dir".into(), d.to_string_lossy().into_owned()]);
                    }
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    let text = cli(&refs, true);
                    if let Ok(mut o) = out.lock() {
                        o.insert(a.clone(), text);
                    }
                }
            });
        }
    });
    out.into_inner().unwrap_or_default()
}

/// The node of the first `match:` line that found one, else of a `known:` line (a port
/// ironpxe does not boot from, e.g. not PXE-enabled, but whose node it names).
fn matched_node(addr_output: &str) -> String {
    let lines = || addr_output.lines();
    lines()
        .filter_map(|l| l.strip_prefix("match: node "))
        .chain(lines().filter_map(|l| l.strip_prefix("known: node ")))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|u| format!("node {u}"))
        .next()
        .unwrap_or_else(|| "none".into())
}

/// `lookup.<spelling>[class]`: the node Ironic's lookup (`GET /v1/lookup`, dbapi
/// `get_node_by_port_addresses`) finds for an address vs `ironpxe addr --state-dir`.
fn lookups(report: &mut Report, answers: &Value, ports: &[PortInfo], state: &Path) {
    let by_uuid: HashMap<&str, &PortInfo> = ports.iter().map(|p| (p.uuid.as_str(), p)).collect();
    let rows = answers["lookups"].as_array().expect("lookups");
    let addresses: Vec<String> = rows
        .iter()
        .filter_map(|r| r["address"].as_str().map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ours = addr_all(&addresses, Some(state));
    for r in rows {
        let (kind, address) = (
            r["kind"].as_str().unwrap_or("?"),
            r["address"].as_str().unwrap_or("?"),
        );
        let p = by_uuid[r["port"].as_str().expect("port")];
        let theirs = r["node"]
            .as_str()
            .map(|u| format!("node {u}"))
            .unwrap_or_else(|| "none".into());
        let check = match kind {
            "address-dashes" => "lookup.address-dashes".to_owned(),
            _ => format!("lookup.{kind}[{}]", p.class()),
        };
        report.compare(
            &check,
            &format!("{} as {address}", p.subject()),
            &theirs,
            &matched_node(&ours[address]),
        );
    }
}

/// `ipa.<field>`: what `ironpxe addr <ipoib-address>` derives vs what IPA's Mellanox
/// hardware manager reports for that interface (IB MAC, client-id); `lookup.ipoib[class]`:
/// the node ironpxe matches for the IPoIB address vs Ironic's lookup of the IPA-derived MAC.
fn derivations(report: &mut Report, answers: &Value, ports: &[PortInfo], state: &Path) {
    let rows = answers["ipa"].as_array().expect("ipa");
    let addresses: Vec<String> = rows
        .iter()
        .filter_map(|r| r["ipoib"].as_str().map(str::to_owned))
        .collect();
    let ours = addr_all(&addresses, Some(state));
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or("(none)")
            .to_owned()
    };
    for r in rows {
        let ipoib = r["ipoib"].as_str().expect("ipoib");
        let text = &ours[ipoib];
        let subject = format!("IPoIB address {ipoib}");
        for (check, key, theirs) in [
            ("ipa.ib_mac", "ib_mac", &r["mac"]),
            ("ipa.client_id", "client_id", &r["client_id"]),
        ] {
            report.compare(
                check,
                &subject,
                theirs.as_str().unwrap_or("?"),
                &field(text, key),
            );
        }
        let guid = &ipoib[36..];
        let ipa_mac = r["mac"].as_str().unwrap_or("?");
        for p in ports.iter().filter(|p| p.guid.as_deref() == Some(guid)) {
            let theirs = answers["lookups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["port"] == p.uuid.as_str() && l["address"] == ipa_mac)
                .and_then(|l| l["node"].as_str())
                .map(|u| format!("node {u}"))
                .unwrap_or_else(|| "none".into());
            let check = format!("lookup.ipoib[{}]", p.class());
            report.compare(
                &check,
                &format!("{} as {ipoib}", p.subject()),
                &theirs,
                &matched_node(text),
            );
        }
    }
}

// ---- inspection -------------------------------------------------------------------------

/// A port as "pxe_enabled=<b> client-id=<v>" (`v` raw JSON, `null` when unset).
fn port_summary(pxe: &Value, cid: &Value) -> String {
    format!("pxe_enabled={pxe} client-id={cid}")
}

/// `inspect.<property>[<flags>]` per inspected node and `[inspector]` settings, from Ironic's
/// validate-interfaces and ports hooks vs `ironpxe inspect --format json`:
/// * `inspect.port`: per address, the port the node has afterwards (or "no port");
/// * `inspect.fails`: whether inspection fails (Ironic raises; ironpxe reports `error`);
/// * `inspect.verdict`: ironpxe says "no change" exactly when Ironic changed nothing.
fn inspections(report: &mut Report, answers: &Value, dir: &Path) {
    let state = dir.join("state");
    let before = enrolled(&state);
    for r in answers["inspections"].as_array().expect("inspections") {
        let node = r["node"].as_str().expect("node");
        let inv_path = dir.join("inventories").join(format!("{node}.json"));
        let settings = &r["settings"];
        let flags: Vec<String> = ["add_ports", "keep_ports", "update_pxe_enabled"]
            .iter()
            .flat_map(|k| {
                let value = settings[*k].to_string().trim_matches('"').to_owned();
                [format!("--{}", k.replace('_', "-")), value]
            })
            .collect();
        let tag = match flags.join(" ").as_str() {
            "--add-ports pxe --keep-ports all --update-pxe-enabled true" => String::new(),
            other => format!("[{other}]"),
        };
        let (inv_arg, state_arg) = (inv_path.to_string_lossy(), state.to_string_lossy());
        let mut args = vec![
            "inspect",
            &inv_arg,
            "--state-dir",
            &state_arg,
            "--node",
            node,
            "--format",
            "json",
        ];
        args.extend(flags.iter().map(String::as_str));
        let ours: Value = serde_json::from_str(&cli(&args, true))
            .unwrap_or_else(|e| panic!("ironpxe inspect {args:?}: not JSON: {e}"));
        let subject = format!("node {node} settings {settings}");
        let fails = |v: &Value| if v.is_null() { "succeeds" } else { "fails" };
        let theirs_failed = !r["error"].is_null();
        report.compare(
            &format!("inspect.fails{tag}"),
            &subject,
            fails(&r["error"]),
            fails(&ours["error"]),
        );
        if theirs_failed {
            continue;
        }
        let theirs: BTreeMap<String, String> = r["ports"]
            .as_object()
            .expect("ports")
            .iter()
            .map(|(a, p)| (a.clone(), port_summary(&p["pxe_enabled"], &p["client_id"])))
            .collect();
        let mine: BTreeMap<String, String> = ours["ports_after"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let a = p["address"].as_str().unwrap_or("?").to_owned();
                (a, port_summary(&p["pxe_enabled"], &p["client_id"]))
            })
            .collect();
        let addresses: BTreeSet<&String> = theirs.keys().chain(mine.keys()).collect();
        let none = "no port".to_owned();
        for a in addresses {
            report.compare(
                &format!("inspect.port{tag}"),
                &format!("{subject} address {a}"),
                theirs.get(a).unwrap_or(&none),
                mine.get(a).unwrap_or(&none),
            );
        }
        let was: BTreeMap<String, String> = before
            .iter()
            .filter(|((n, _), _)| n == node)
            .map(|((_, a), p)| (a.clone(), p.clone()))
            .collect();
        let word = |same: bool| if same { "unchanged" } else { "changed" };
        let no_changes = ours["changes"].as_array().is_some_and(|c| c.is_empty());
        report.compare(
            &format!("inspect.verdict{tag}"),
            &subject,
            word(was == theirs),
            word(no_changes),
        );
    }
}

/// The enrolled ports: (node, address) → summary, as [`port_summary`] writes it.
fn enrolled(state: &Path) -> HashMap<(String, String), String> {
    let text = fs::read_to_string(state.join("ports.json")).expect("ports.json");
    let v: Value = serde_json::from_str(&text).expect("ports.json is JSON");
    v["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            let cid = p["extra"].get("client-id").cloned().unwrap_or(Value::Null);
            (
                (
                    p["node_uuid"].as_str().unwrap_or_default().to_owned(),
                    p["address"].as_str().unwrap_or_default().to_owned(),
                ),
                port_summary(&p["pxe_enabled"], &cid),
            )
        })
        .collect()
}
