//! `ironpxe dhcp` against the real servers. dnsmasq serves the generated main snippet and a
//! hostsdir written by `sync_hostsdir` to busybox `udhcpc` over a veth pair between two
//! network namespaces the test creates, with tcpdump watching the wire; dhcpd and kea-dhcp4
//! check the ISC and Kea output. Every process is ended by PID and both namespaces deleted on
//! drop, also when a test fails. The namespace tests need root and fail (never skip) without it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::guest::require_root;
use common::require;
use ironpxe::dhcp::{self, DhcpFormat, DhcpOptions, HttpUrl};
use ironpxe::state::{IndexConfig, Snapshot};

const IB_UUID: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const ETH_UUID: &str = "54ccbcf7-e036-4d44-91be-397df22a5ca5";
/// RFC 4390 client-id: Mellanox prefix, then the port GUID 7c:fe:90:03:00:29:26:52.
const CID: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52";
const IB_MAC: &str = "7c:fe:90:29:26:52";
const ETH_MAC: &str = "52:54:00:12:34:56";
const IB_IP: &str = "192.0.2.10";
const ETH_IP: &str = "192.0.2.20";
/// dnsmasq's own address on the veth.
const SERVER_IP: &str = "192.0.2.1";
/// A third address nobody has: next-server must come from the config, not from dnsmasq.
const NEXT_SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const HTTP_URL: &str = "http://192.0.2.1:8080";
/// Bound on every wait for a process or a log line.
const WAIT: Duration = Duration::from_secs(20);

// ---- state and generation ----

fn ib_node() -> String {
    format!(
        r#"{{"uuid": "{IB_UUID}", "name": "ib-node-1", "provision_state": "deploying", "boot_interface": "pxe",
            "ports": [{{"address": "{IB_MAC}", "extra": {{"client-id": "{CID}", "fixed_ip": "{IB_IP}"}}}}]}}"#
    )
}

/// Named "ignore", a dnsmasq keyword: the generated host name must not make dnsmasq ignore it.
fn eth_node() -> String {
    format!(
        r#"{{"uuid": "{ETH_UUID}", "name": "ignore", "provision_state": "active", "boot_interface": "ipxe",
            "ports": [{{"address": "{ETH_MAC}", "extra": {{"fixed_ip": "{ETH_IP}"}}}}]}}"#
    )
}

/// A state directory holding `files` (name, JSON).
fn state_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("state dir");
    for (name, body) in files {
        fs::write(d.path().join(name), body).expect("write state");
    }
    d
}

fn load(dir: &Path) -> Arc<Snapshot> {
    let store = ironpxe::cli::load_state(dir, IndexConfig::default()).expect("load state");
    let snap = store.current();
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    snap
}

fn opts() -> DhcpOptions {
    let mut o = DhcpOptions::new(HttpUrl::new(HTTP_URL).expect("url"));
    o.next_server = Some(NEXT_SERVER);
    o
}

/// [`opts`] with DHCPv6 on (TFTP and HTTP on 2001:db8::7, a stateful range).
fn opts6() -> DhcpOptions {
    let mut o = opts();
    o.v6 = Some(dhcp::Dhcp6Options {
        tftp_server: "2001:db8::7".parse().expect("ip"),
        http_url: HttpUrl::new("http://[2001:db8::7]:8080").expect("url"),
        range: Some("2001:db8::100,2001:db8::1ff".parse().expect("range")),
    });
    o
}

// ---- the lab: two namespaces joined by a veth pair ----

/// `srv` holds dnsmasq on `vs` (192.0.2.1/24), `cli` the client side `vc`. Dropping the lab
/// ends dnsmasq and tcpdump by PID and deletes both namespaces (and with them the veth pair).
struct Lab {
    srv: String,
    cli: String,
    dir: tempfile::TempDir,
    dnsmasq: Option<Child>,
    tcpdump: Option<Child>,
}

/// What udhcpc's script saw on `bound`, and everything it printed.
struct Lease {
    vars: BTreeMap<String, String>,
    output: String,
}

impl Lease {
    fn get(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or("")
    }

    fn bound(&self) -> bool {
        !self.get("ip").is_empty()
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_root("the DHCP namespace tests");
        require("tcpdump", "tcpdump");
        require("busybox", "busybox-static");
        let pid = std::process::id();
        let lab = Lab {
            srv: format!("ipxd-{tag}-s{pid}"),
            cli: format!("ipxd-{tag}-c{pid}"),
            dir: tempfile::tempdir().expect("lab dir"),
            dnsmasq: None,
            tcpdump: None,
        };
        for ns in [&lab.srv, &lab.cli] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (s, c) = (lab.srv.as_str(), lab.cli.as_str());
        ip(&[
            "-n", s, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", c,
        ]);
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "vs",
        ]);
        ip(&["-n", s, "link", "set", "vs", "up"]);
        ip(&["-n", c, "link", "set", "vc", "up"]);
        let script = lab.dir.path().join("udhcpc.script");
        // busybox udhcpc exports ip, siaddr, sname, boot_file, hostname, serverid …
        fs::write(
            &script,
            "#!/bin/sh\nif [ \"$1\" = bound ]; then\n  for v in ip siaddr sname boot_file hostname serverid; do\n    eval \"echo lease $v=\\$$v\"\n  done\nfi\n",
        )
        .expect("script");
        ip_chmod(&script);
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts dnsmasq with the generated main snippet and `hostsdir`; unknown clients get
    /// nothing (`static` range). Returns once dnsmasq listens.
    fn start_dnsmasq(&mut self, main_snippet: &str, hostsdir: &Path) {
        let conf = self.path("main.conf");
        fs::write(
            &conf,
            format!("{main_snippet}dhcp-range=192.0.2.0,static,255.255.255.0\n"),
        )
        .expect("main conf");
        let log = fs::File::create(self.path("dnsmasq.log")).expect("log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.srv,
                "dnsmasq",
                "--no-daemon",
                "--port=0",
            ])
            .args([
                "--interface=vs",
                "--bind-interfaces",
                "--log-dhcp",
                "--no-ping",
            ])
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!("--dhcp-hostsdir={}", hostsdir.display()))
            .arg(format!(
                "--dhcp-leasefile={}",
                self.path("leases").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq (install dnsmasq-base)");
        // --no-daemon writes no PID file; write one as a daemonized dnsmasq would.
        fs::write(self.path("dnsmasq.pid"), format!("{}\n", child.id())).expect("pid file");
        self.dnsmasq = Some(child);
        self.wait_log("dnsmasq listening", |l| {
            l.contains("sockets bound exclusively to interface vs")
        });
    }

    fn dnsmasq_log(&self) -> String {
        fs::read_to_string(self.path("dnsmasq.log")).unwrap_or_default()
    }

    fn dnsmasq_alive(&mut self) -> bool {
        matches!(self.dnsmasq.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn wait_log(&mut self, what: &str, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.dnsmasq_log();
            if cond(&log) {
                return;
            }
            assert!(
                self.dnsmasq_alive(),
                "dnsmasq exited while waiting for {what}:\n{log}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_client_mac(&self, mac: &str) {
        ip(&["-n", &self.cli, "link", "set", "vc", "down"]);
        ip(&["-n", &self.cli, "link", "set", "vc", "address", mac]);
        ip(&["-n", &self.cli, "link", "set", "vc", "up"]);
    }

    /// One bounded busybox udhcpc run (3 discovers, 1 s apart) from the client namespace.
    fn udhcpc(&self, extra: &[&str]) -> Lease {
        let out_path = self.path("udhcpc.out");
        let out = fs::File::create(&out_path).expect("udhcpc out");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.cli, "busybox", "udhcpc", "-i", "vc"])
            .args(["-n", "-q", "-t", "3", "-T", "1", "-s"])
            .arg(self.path("udhcpc.script"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn udhcpc");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("wait udhcpc").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "udhcpc {extra:?} did not finish:\n{}",
                    fs::read_to_string(&out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = fs::read_to_string(&out_path).unwrap_or_default();
        let vars = output
            .lines()
            .filter_map(|l| l.strip_prefix("lease "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Lease { vars, output }
    }

    /// udhcpc with the RFC 4390 client-id (`-x 0x3d:<hex>` replaces its default client-id).
    fn rfc4390_client(&self, client_id: &str) -> Lease {
        self.udhcpc(&["-x", &format!("0x3d:{}", client_id.replace(':', ""))])
    }

    /// tcpdump on the server side of the veth, until [`Lab::stop_capture`].
    fn start_capture(&mut self) {
        let err = self.path("tcpdump.err");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.srv,
                "tcpdump",
                "--immediate-mode",
                "-l",
            ])
            .args(["-n", "-e", "-vv", "-i", "vs", "udp port 67 or udp port 68"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.path("tcpdump.out")).expect("out"))
            .stderr(fs::File::create(&err).expect("err"))
            .spawn()
            .expect("spawn tcpdump (install tcpdump)");
        self.tcpdump = Some(child);
        let deadline = Instant::now() + WAIT;
        while !fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_capture(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(mut c) = self.tcpdump.take() {
            end(&mut c);
        }
        fs::read_to_string(self.path("tcpdump.out")).unwrap_or_default()
    }
}

fn ip_chmod(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// SIGTERM by PID, then SIGKILL if it has not exited within a few seconds.
fn end(c: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in [self.dnsmasq.as_mut(), self.tcpdump.as_mut()]
            .into_iter()
            .flatten()
        {
            end(c);
        }
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A lab whose dnsmasq serves the IB and Ethernet nodes from a synced hostsdir.
fn serving_lab(tag: &str) -> (Lab, tempfile::TempDir) {
    let state = state_dir(&[("ib.json", ib_node()), ("eth.json", eth_node())]);
    let snap = load(state.path());
    let mut lab = Lab::new(tag);
    let hostsdir = lab.path("hosts");
    let r = dhcp::sync_hostsdir(&hostsdir, &snap).expect("sync");
    assert_eq!(r.created.len(), 2, "{r:?}");
    lab.start_dnsmasq(&dhcp::dnsmasq_main(&dhcp::hosts(&snap), &opts()), &hostsdir);
    (lab, state)
}

// ---- tcpdump parsing ----

/// One captured frame: destination MAC, IP destination, and the whole `-vv` text.
struct Frame {
    dst_mac: String,
    ip_dst: String,
    text: String,
}

fn frames(capture: &str) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    for line in capture.lines() {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            // "12:00:00.000 src > dst, ethertype IPv4 …"
            let dst_mac = line
                .split(" > ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap_or("")
                .to_owned();
            out.push(Frame {
                dst_mac,
                ip_dst: String::new(),
                text: format!("{line}\n"),
            });
        } else if let Some(f) = out.last_mut() {
            if f.ip_dst.is_empty() && line.contains(" > ") {
                // "    192.0.2.1.67 > 255.255.255.255.68: …"
                f.ip_dst = line
                    .split(" > ")
                    .nth(1)
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("")
                    .to_owned();
            }
            f.text.push_str(line);
            f.text.push('\n');
        }
    }
    out
}

// ---- the DHCP exchanges ----

/// The client got a lease; otherwise shows what it and dnsmasq said.
fn assert_bound(lease: &Lease, lab: &Lab) {
    assert!(
        lease.bound(),
        "no lease:\n{}\n{}",
        lease.output,
        lab.dnsmasq_log()
    );
}

#[test]
fn rfc4390_client_id_gets_fixed_address_boot_file_and_next_server() {
    let (lab, _state) = serving_lab("cid");
    let lease = lab.rfc4390_client(CID);
    assert_bound(&lease, &lab);
    assert_eq!(lease.get("ip"), IB_IP);
    assert_eq!(lease.get("boot_file"), "pxelinux.0");
    assert_eq!(lease.get("hostname"), "ib-node-1");
    assert_eq!(lease.get("siaddr"), NEXT_SERVER.to_string());
    assert_eq!(lease.get("serverid"), SERVER_IP);
    let log = lab.dnsmasq_log();
    assert!(log.contains("tags: known, ironpxe-ib"), "{log}");
    assert!(
        !log.contains("bad "),
        "dnsmasq refused a generated line:\n{log}"
    );
}

#[test]
fn upstream_ipxe_ib_mac_with_broadcast_flag_gets_the_same_address() {
    let (lab, _state) = serving_lab("ibmac");
    // Upstream iPXE presents IPoIB as Ethernet: chaddr = IB MAC, client-id 01:<ib-mac>
    // (udhcpc's default), broadcast flag set (-B).
    lab.set_client_mac(IB_MAC);
    let lease = lab.udhcpc(&["-B"]);
    assert_bound(&lease, &lab);
    assert_eq!(lease.get("ip"), IB_IP);
    assert_eq!(lease.get("hostname"), "ib-node-1");
    assert_eq!(lease.get("boot_file"), "pxelinux.0");
    let log = lab.dnsmasq_log();
    assert!(
        log.contains(&format!("DHCPACK(vs) {IB_IP} {IB_MAC} ib-node-1")),
        "{log}"
    );
    assert!(
        !log.contains("ironpxe-ib"),
        "01:<mac> is not an RFC 4390 client-id, so no ib tag:\n{log}"
    );
}

/// Measured dnsmasq behaviour, kept as a test so a change shows: while one identity of an IB
/// port holds the lease on the reserved address, the other identity is refused it ("not using
/// configured address … because it is leased to …") until that lease ends.
#[test]
fn second_identity_of_an_ib_port_waits_for_the_first_ones_lease() {
    let (lab, _state) = serving_lab("both");
    lab.set_client_mac("02:00:00:00:00:04");
    assert_eq!(lab.rfc4390_client(CID).get("ip"), IB_IP);
    lab.set_client_mac(IB_MAC);
    let second = lab.udhcpc(&["-B"]);
    assert!(!second.bound(), "{:?}", second.vars);
    let log = lab.dnsmasq_log();
    assert!(
        log.contains(&format!(
            "not using configured address {IB_IP} because it is leased to"
        )),
        "{log}"
    );
}

#[test]
fn unknown_client_id_gets_no_reservation() {
    let (lab, _state) = serving_lab("unknown");
    // Same vendor prefix, a GUID no port has.
    let lease = lab.rfc4390_client("ff:00:00:00:00:00:02:00:00:02:c9:00:00:11:22:33:44:55:66:77");
    assert!(!lease.bound(), "unknown client got {:?}", lease.vars);
    let log = lab.dnsmasq_log();
    assert!(log.contains("no address available"), "{log}");
    assert!(!log.contains("DHCPOFFER"), "{log}");
    // A known Ethernet client still works (and its hostile name "ignore" did not make dnsmasq ignore it).
    lab.set_client_mac(ETH_MAC);
    let lease = lab.udhcpc(&[]);
    assert_eq!(lease.get("ip"), ETH_IP, "{}", lab.dnsmasq_log());
    assert_eq!(lease.get("hostname"), "node-ignore");
}

#[test]
fn ib_reply_is_broadcast_and_ethernet_reply_is_unicast_on_the_wire() {
    let (mut lab, _state) = serving_lab("wire");
    lab.start_capture();
    lab.set_client_mac("02:00:00:00:00:01");
    let ib = lab.rfc4390_client(CID);
    lab.set_client_mac(ETH_MAC);
    let eth = lab.udhcpc(&[]);
    let capture = lab.stop_capture();
    assert_eq!(ib.get("ip"), IB_IP, "{}", ib.output);
    assert_eq!(eth.get("ip"), ETH_IP, "{}", eth.output);
    let all = frames(&capture);
    let replies = |yiaddr: &str| -> Vec<&Frame> {
        all.iter()
            .filter(|f| {
                f.text.contains("BOOTP/DHCP, Reply")
                    && f.text.contains(&format!("Your-IP {yiaddr}"))
            })
            .collect()
    };
    let requests = |chaddr: &str| -> Vec<&Frame> {
        all.iter()
            .filter(|f| {
                f.text
                    .contains(&format!("BOOTP/DHCP, Request from {chaddr}"))
            })
            .collect()
    };
    // The RFC 4390 client did not ask for broadcast: dnsmasq's dhcp-broadcast=tag:ironpxe-ib did it.
    let ib_requests = requests("02:00:00:00:00:01");
    assert!(!ib_requests.is_empty(), "{capture}");
    assert!(
        ib_requests.iter().all(|f| f.text.contains("Flags [none]")),
        "{capture}"
    );
    let ib_replies = replies(IB_IP);
    assert!(ib_replies.len() >= 2, "offer and ack:\n{capture}");
    for f in &ib_replies {
        assert_eq!(f.dst_mac, "ff:ff:ff:ff:ff:ff", "{}", f.text);
        assert_eq!(f.ip_dst, "255.255.255.255.68", "{}", f.text);
    }
    let eth_replies = replies(ETH_IP);
    assert!(eth_replies.len() >= 2, "offer and ack:\n{capture}");
    for f in &eth_replies {
        assert_eq!(f.dst_mac, ETH_MAC, "{}", f.text);
        assert_eq!(f.ip_dst, format!("{ETH_IP}.68"), "{}", f.text);
        assert!(f.text.contains("Flags [none]"), "{}", f.text);
    }
}

#[test]
fn boot_file_follows_client_type_and_next_server_is_the_configured_one() {
    let (lab, _state) = serving_lab("boot");
    lab.set_client_mac(ETH_MAC);
    let cases: [(&[&str], String); 6] = [
        (&[], "pxelinux.0".into()),
        (&["-x", "93:0007"], "snponly.efi".into()),
        (&["-x", "93:0009"], "snponly.efi".into()),
        (&["-x", "93:000b"], "snponly.efi".into()),
        (&["-x", "77:\"iPXE\""], format!("{HTTP_URL}/boot.ipxe")),
        // UEFI HTTP Boot, as OVMF asks: an absolute URL.
        (
            &["-V", "HTTPClient:Arch:00016:UNDI:003000", "-x", "93:0010"],
            format!("{HTTP_URL}/snponly.efi"),
        ),
    ];
    for (args, boot_file) in cases {
        let lease = lab.udhcpc(args);
        assert_eq!(lease.get("ip"), ETH_IP, "{args:?}: {}", lease.output);
        assert_eq!(lease.get("boot_file"), boot_file, "{args:?}");
        // dnsmasq would put its own address here; the dhcp-boot server field overrides it,
        // except for HTTP Boot, which is given no TFTP server.
        let http = boot_file.starts_with("http://192.0.2.1:8080/snponly");
        assert_eq!(
            lease.get("siaddr") == NEXT_SERVER.to_string(),
            !http,
            "{args:?}: siaddr {}",
            lease.get("siaddr")
        );
        assert_eq!(lease.get("serverid"), SERVER_IP);
    }
    let log = lab.dnsmasq_log();
    assert!(
        log.contains("tags: known, ironpxe-http"),
        "HTTP Boot client tagged:\n{log}"
    );
}

#[test]
fn hostsdir_follows_the_state_live_and_dnsmasq_survives_sighup_after_an_ib_match() {
    let state = state_dir(&[("eth.json", eth_node())]);
    let mut lab = Lab::new("sync");
    let hostsdir = lab.path("hosts");
    let pid_file = lab.path("dnsmasq.pid");
    let snap = load(state.path());
    dhcp::sync_hostsdir(&hostsdir, &snap).expect("sync");
    // The main snippet is written once; the IB node is not in the state yet.
    lab.start_dnsmasq(&dhcp::dnsmasq_main(&dhcp::hosts(&snap), &opts()), &hostsdir);
    let ib_file = hostsdir.join(format!("{}{IB_UUID}", dhcp::HOSTSDIR_PREFIX));
    assert!(!lab.rfc4390_client(CID).bound(), "IB node not enrolled yet");

    // Enrol: a new file, read by dnsmasq through inotify without a restart or a signal.
    fs::write(state.path().join("ib.json"), ib_node()).expect("enrol");
    let r = dhcp::sync_hostsdir(&hostsdir, &load(state.path())).expect("sync");
    assert_eq!(r.created, vec![ib_file.clone()]);
    assert!(!r.needs_sighup());
    let read_line = format!("read {}", ib_file.display());
    lab.wait_log("dnsmasq reading the new file", |l| l.contains(&read_line));
    let lease = lab.rfc4390_client(CID);
    assert_eq!(
        lease.get("ip"),
        IB_IP,
        "{}\n{}",
        lease.output,
        lab.dnsmasq_log()
    );

    // Unenrol: the file goes, dnsmasq keeps serving the entry until SIGHUP.
    fs::remove_file(state.path().join("ib.json")).expect("unenrol");
    let r = dhcp::sync_hostsdir(&hostsdir, &load(state.path())).expect("sync");
    assert_eq!(r.deleted, vec![ib_file.clone()]);
    assert!(r.needs_sighup());
    lab.set_client_mac("02:00:00:00:00:02");
    let stale = lab.rfc4390_client(CID);
    assert_eq!(
        stale.get("ip"),
        IB_IP,
        "dnsmasq still serves a deleted file's entry before SIGHUP"
    );

    // SIGHUP after an IB client matched a hostsdir entry: dnsmasq 2.90 crashes here when the
    // entry carries set:<tag>; generated entries carry none.
    let reads = |l: &str| l.matches("read ").count();
    let before = reads(&lab.dnsmasq_log());
    dhcp::sighup(&pid_file).expect("sighup");
    lab.wait_log("dnsmasq re-reading after SIGHUP", |l| reads(l) > before);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lab.dnsmasq_alive(),
        "dnsmasq died on SIGHUP:\n{}",
        lab.dnsmasq_log()
    );
    lab.set_client_mac("02:00:00:00:00:03");
    let gone = lab.rfc4390_client(CID);
    assert!(
        !gone.bound(),
        "entry still served after SIGHUP: {:?}",
        gone.vars
    );
    lab.set_client_mac(ETH_MAC);
    assert_eq!(lab.udhcpc(&[]).get("ip"), ETH_IP);
    assert!(lab.dnsmasq_alive(), "{}", lab.dnsmasq_log());
}

// ---- the generated configs, checked by each server's own parser ----

/// A state with every kind of entry: IB with and without a usable client-id, Ethernet, a
/// dual-port node and a hostile node name.
fn varied_state() -> tempfile::TempDir {
    let bad_ib = r#"{"uuid": "11111111-2222-4333-8444-555555555555", "name": "bad\nset:x,6.6.6.6",
        "ports": [{"address": "0c:42:a1:00:00:01", "extra": {"client-id": "ff:00:not-hex"}}]}"#;
    let dual = r#"{"uuid": "53589717-4709-4ead-88b2-fed1cdc9dfc4", "name": "dual-node-1",
        "ports": [{"address": "52:54:00:ab:cd:01", "extra": {"fixed_ip": "192.0.2.31"}},
                  {"address": "0c:42:a1:12:34:56", "extra": {"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:0c:42:a1:ff:fe:12:34:56"}}]}"#;
    // Truthy client-ids that are not RFC 4390 (a short one, upper case) reach every config
    // as bytes; an empty one makes an Ethernet port.
    let odd = r#"{"uuid": "63589717-4709-4ead-88b2-fed1cdc9dfc5", "name": "odd",
        "ports": [{"address": "52:54:00:ab:cd:07", "extra": {"client-id": "01:52:54:00:AB:CD:07", "fixed_ip": "192.0.2.37"}},
                  {"address": "52:54:00:ab:cd:08", "extra": {"client-id": "", "fixed_ip": "192.0.2.38"}}]}"#;
    state_dir(&[
        ("ib.json", ib_node()),
        ("eth.json", eth_node()),
        ("bad.json", bad_ib.into()),
        ("dual.json", dual.into()),
        ("odd.json", odd.into()),
    ])
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn generated_configs_pass_dnsmasq_dhcpd_and_kea_checks() {
    require("dnsmasq", "dnsmasq-base");
    require("dhcpd", "isc-dhcp-server");
    require("kea-dhcp4", "kea-dhcp4-server");
    let state = varied_state();
    let snap = load(state.path());
    let work = tempfile::tempdir().expect("work");
    let w = work.path();

    let dnsmasq_conf = w.join("dnsmasq.conf");
    let out = dhcp::generate(DhcpFormat::Dnsmasq, &snap, &opts6());
    assert!(out.text.contains("option6:bootfile-url"), "{}", out.text);
    assert_eq!(
        out.warnings.len(),
        1,
        "one warning, the bad client-id: {:?}",
        out.warnings
    );
    fs::write(
        &dnsmasq_conf,
        format!("dhcp-range=192.0.2.0,static,255.255.255.0\n{}", out.text),
    )
    .expect("write");
    assert!(
        out.text
            .contains("dhcp-host=id:01:52:54:00:ab:cd:07,52:54:00:ab:cd:07,192.0.2.37,odd"),
        "{}",
        out.text
    );
    assert!(
        out.text
            .contains("dhcp-host=52:54:00:ab:cd:08,192.0.2.38,odd"),
        "{}",
        out.text
    );
    let o = run(Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", dnsmasq_conf.display())));
    assert!(
        o.status.success(),
        "dnsmasq --test: {}\n{}",
        text(&o),
        out.text
    );

    let isc = w.join("dhcpd.conf");
    fs::write(
        &isc,
        format!(
            "subnet 192.0.2.0 netmask 255.255.255.0 {{ range 192.0.2.100 192.0.2.150; }}\n{}",
            dhcp::generate(DhcpFormat::Isc, &snap, &opts()).text
        ),
    )
    .expect("write");
    let o = run(Command::new("dhcpd").args(["-t", "-4", "-cf"]).arg(&isc));
    assert!(o.status.success(), "dhcpd -t: {}", text(&o));
    // dhcpd -t does fail on a bad statement (the check is real).
    let broken = w.join("broken.conf");
    fs::write(&broken, "host x { no-such-statement on; }\n").expect("write");
    assert!(
        !run(Command::new("dhcpd").args(["-t", "-4", "-cf"]).arg(&broken))
            .status
            .success()
    );

    let kea_text = dhcp::generate(DhcpFormat::Kea, &snap, &opts()).text;
    let mut kea: serde_json::Value = serde_json::from_str(&kea_text).expect("kea json");
    let o = kea_check(w, &mut kea, 4, "192.0.2.0/24", "192.0.2.100-192.0.2.150");
    assert!(o.status.success(), "kea-dhcp4 -t: {}\n{kea_text}", text(&o));
    kea["Dhcp4"]["ip-reservations-unique"] = serde_json::json!(true);
    let o = kea_check(w, &mut kea, 4, "192.0.2.0/24", "192.0.2.100-192.0.2.150");
    assert!(
        !o.status.success(),
        "Kea refuses the IB port's two reservations without ip-reservations-unique=false"
    );
}

/// Completes a generated Kea fragment with one subnet and no interfaces, writes it and runs
/// `kea-dhcp{family} -t` on it.
fn kea_check(
    w: &Path,
    kea: &mut serde_json::Value,
    family: u8,
    subnet: &str,
    pool: &str,
) -> Output {
    let root = format!("Dhcp{family}");
    kea[&root][format!("subnet{family}")] =
        serde_json::json!([{"id": 1, "subnet": subnet, "pools": [{"pool": pool}]}]);
    kea[&root]["interfaces-config"] = serde_json::json!({"interfaces": []});
    let file = w.join(format!("kea{family}.json"));
    fs::write(&file, kea.to_string()).expect("write");
    run(Command::new(format!("kea-dhcp{family}"))
        .arg("-t")
        .arg(&file))
}

/// The DHCPv6 halves: `dhcpd -t -6` and `kea-dhcp6 -t` accept them (dnsmasq's is checked with
/// the DHCPv4 one above: one configuration), and each check does fail on a broken file.
#[test]
fn generated_dhcpv6_configs_pass_dhcpd6_and_kea6_checks() {
    require("dhcpd", "isc-dhcp-server");
    require("kea-dhcp6", "kea-dhcp6-server");
    let state = varied_state();
    let snap = load(state.path());
    let work = tempfile::tempdir().expect("work");
    let w = work.path();

    let isc6 = dhcp::generate(DhcpFormat::Isc6, &snap, &opts6()).text;
    assert!(isc6.contains("dhcp6.bootfile-url"), "{isc6}");
    let conf = w.join("dhcpd6.conf");
    let subnet = "subnet6 2001:db8::/64 { range6 2001:db8::100 2001:db8::1ff; }\n";
    fs::write(&conf, format!("{subnet}{isc6}")).expect("write");
    let o = run(Command::new("dhcpd").args(["-t", "-6", "-cf"]).arg(&conf));
    assert!(o.status.success(), "dhcpd -t -6: {}\n{isc6}", text(&o));
    fs::write(
        &conf,
        format!(
            "{subnet}{}",
            isc6.replace("option dhcp6.bootfile-url", "option dhcp6.no-such-url")
        ),
    )
    .expect("write");
    assert!(
        !run(Command::new("dhcpd").args(["-t", "-6", "-cf"]).arg(&conf))
            .status
            .success(),
        "dhcpd -t -6 checks options"
    );

    let kea_text = dhcp::generate(DhcpFormat::Kea6, &snap, &opts6()).text;
    let mut kea: serde_json::Value = serde_json::from_str(&kea_text).expect("kea6 json");
    let (subnet6, pool6) = ("2001:db8::/64", "2001:db8::100-2001:db8::1ff");
    let o = kea_check(w, &mut kea, 6, subnet6, pool6);
    assert!(o.status.success(), "kea-dhcp6 -t: {}\n{kea_text}", text(&o));
    kea["Dhcp6"]["client-classes"][0]["option-data"][0]["name"] =
        serde_json::json!("no-such-option");
    assert!(
        !kea_check(w, &mut kea, 6, subnet6, pool6).status.success(),
        "kea-dhcp6 -t checks option names"
    );
}

fn ironpxe(args: &[&str]) -> Output {
    common::ironpxe_cli(args)
}

#[test]
fn cli_prints_every_format_and_syncs_a_hostsdir() {
    let state = varied_state();
    let sd = state.path().to_str().expect("utf-8");
    let common = [
        "--state-dir",
        sd,
        "--http-url",
        HTTP_URL,
        "--next-server",
        "192.0.2.7",
        "--http-boot-loader",
        "grubx64.efi",
        "--next-server6",
        "2001:db8::7",
        "--http-url6",
        "http://[2001:db8::7]:8080",
        "--ipv6-range",
        "2001:db8::100,2001:db8::1ff",
    ];
    let expect = [
        ("dnsmasq", "dhcp-boot=tag:!ironpxe-ipxe,tag:!ironpxe-http,tag:!ironpxe-efi,pxelinux.0,,192.0.2.7"),
        ("dnsmasq", "dhcp-boot=tag:!ironpxe-ipxe,tag:ironpxe-http,http://192.0.2.1:8080/grubx64.efi"),
        ("dnsmasq", "dhcp-range=2001:db8::100,2001:db8::1ff,64,1h"),
        ("dnsmasq", "option6:bootfile-url,tftp://[2001:db8::7]/snponly.efi"),
        ("isc", "option dhcp-client-identifier ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52;"),
        ("isc6", "option dhcp6.bootfile-url \"http://[2001:db8::7]:8080/grubx64.efi\";"),
        ("kea", "\"ip-reservations-unique\": false"),
        ("kea6", "\"data\": \"http://[2001:db8::7]:8080/boot.ipxe\""),
        ("neutron", "\"opt_name\": \"tag:ipxe,67\""),
    ];
    for (format, line) in expect {
        let mut args = vec!["dhcp", "--format", format];
        args.extend(common);
        let o = ironpxe(&args);
        assert!(o.status.success(), "{format}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(line), "{format}: {line} missing:\n{out}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("warning: node 11111111-2222-4333-8444-555555555555 port 0c:42:a1:00:00:01: InfiniBand port (its extra.client-id is not empty) with an unusable extra.client-id"),
            "{format}: {err}"
        );
    }
    let o = ironpxe(&["dhcp", "--format", "bogus"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A DHCPv6-only format without an IPv6 TFTP address says what to give.
    let o = ironpxe(&["dhcp", "--format", "isc6", "--state-dir", sd]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--next-server6"), "{}", text(&o));
    // A typed range: a bad one is refused by the parser, naming the problem.
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "dnsmasq",
        "--ipv6-range",
        "fe80::1,fe80::2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("link-local"), "{}", text(&o));
    // An IPv6 URL is refused for DHCPv4 clients.
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "dnsmasq",
        "--state-dir",
        sd,
        "--http-url",
        "http://[2001:db8::7]:8080",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = ironpxe(&["dhcp", "--format", "dnsmasq", "--dnsmasq-pid-file", "/x"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "pid file needs --hostsdir: {}",
        text(&o)
    );
    let o = ironpxe(&["dhcp", "--format", "dnsmasq", "--http-url", "http://a,b"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let hd = tempfile::tempdir().expect("hostsdir");
    let hosts = hd.path().join("h");
    let h = hosts.to_str().expect("utf-8");
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "dnsmasq",
        "--state-dir",
        sd,
        "--hostsdir",
        h,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches("created: ").count(),
        5,
        "one file per node: {out}"
    );
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "dnsmasq",
        "--state-dir",
        sd,
        "--hostsdir",
        h,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unchanged: 5"),
        "{}",
        text(&o)
    );
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "kea",
        "--state-dir",
        sd,
        "--hostsdir",
        h,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // A deletion with a PID file signals that process.
    fs::remove_file(state.path().join("bad.json")).expect("rm");
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid_file = hd.path().join("pid");
    fs::write(&pid_file, sleeper.id().to_string()).expect("pid");
    let o = ironpxe(&[
        "dhcp",
        "--format",
        "dnsmasq",
        "--state-dir",
        sd,
        "--hostsdir",
        h,
        "--dnsmasq-pid-file",
        pid_file.to_str().expect("utf-8"),
    ]);
    if !o.status.success() {
        let _ = sleeper.kill();
    }
    let status = sleeper.wait().expect("wait");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("deleted: ") && out.contains("sighup: "),
        "{out}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(1));
}
