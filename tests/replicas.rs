//! ironpxe's OCI image and Kubernetes manifest (`deploy/`), run for real: the image is built
//! by `deploy/build-image` (buildah, FROM scratch, no registry), the shipped manifest
//! `deploy/k8s/ironpxe.yaml` is played TWICE with `podman kube play` — two replicas on host
//! networking, each on its own loopback address — and both are fed by ONE real Ironic 39
//! (tests/common/ironic.rs). Checked: both serve byte-identical PXELINUX configs, kernels
//! and loaders, and the same iPXE scripts (each replica's own base URL masked); a
//! provision-state change made through Ironic's API reaches both; and one replica killed
//! (SIGKILL) in the middle of a boot storm loses no boot for clients that retry the other.
//!
//! podman here: rootful, runc (crun refuses this host's hybrid cgroup v1/v2 layout), the
//! host's own open-file and process limits (raising them needs CAP_SYS_RESOURCE), and a
//! pause image built locally from catatonit — all through a private `CONTAINERS_CONF`, so
//! the host's podman configuration is left alone. podman 4.3 turns an `httpGet` probe into
//! a `curl` run inside the container (there is none in a scratch image) and schedules it
//! with systemd; the kubelet instead probes from the node. So this test probes the
//! manifest's `/healthz` port from the host, as the kubelet does.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ironic::Ironic;
use common::tftp::{self, ClientOpts};
use common::{require, root};
use serde_json::{json, Value};

/// The two replicas' addresses (each its own, as two provisioning hosts would have).
const ADDRS: [&str; 2] = ["127.0.0.12", "127.0.0.13"];
const MAC_STORM: &str = "52:54:00:aa:00:01";
const MAC_CHANGE: &str = "52:54:00:aa:00:02";

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `containers.conf` for this host (see the module comment), in `dir`.
fn podman_conf(dir: &Path) -> PathBuf {
    // Lowering a limit needs no privilege: the host's hard open-file limit (ironpxe wants
    // many), and processes capped at 4096 (podman runs runc under its own, lower, process
    // limit; 4096 is far above what two replicas' threads and render workers use).
    let limit = |res, cap: u64| {
        let (_, hard) = rlimit::getrlimit(res).expect("getrlimit");
        let n = hard.min(cap);
        format!("{n}:{n}")
    };
    let conf = dir.join("containers.conf");
    fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={}\", \"nproc={}\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            limit(rlimit::Resource::NOFILE, 1 << 20),
            limit(rlimit::Resource::NPROC, 4096)
        ),
    )
    .expect("write containers.conf");
    conf
}

fn podman(conf: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf);
    c
}

/// `deploy/build-image`: the image reference it built (or found, unchanged).
fn build_image() -> String {
    let t = Instant::now();
    let out = run(
        Command::new("bash")
            .arg(root().join("deploy/build-image"))
            .current_dir(root()),
        "bash deploy/build-image",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(
        image.starts_with("localhost/ironpxe:"),
        "build-image printed {stdout:?}"
    );
    eprintln!("image {image} ready in {:.1?}", t.elapsed());
    image
}

/// Replaces `from` by `to` in `text`, which must contain it exactly `times` times: a changed
/// manifest fails here, naming what the test expected to find.
fn sub(text: &str, from: &str, to: &str, times: usize) -> String {
    let n = text.matches(from).count();
    assert_eq!(
        n, times,
        "deploy/k8s/ironpxe.yaml: expected {from:?} {times}x, found {n}x"
    );
    text.replace(from, to)
}

/// Ports free on both replica addresses: (tftp, http, admin).
fn free_ports() -> (u16, u16, u16) {
    let both_free = |udp: bool, port: u16| {
        ADDRS.iter().all(|a| {
            let addr: SocketAddr = format!("{a}:{port}").parse().expect("addr");
            if udp {
                UdpSocket::bind(addr).is_ok()
            } else {
                TcpListener::bind(addr).is_ok()
            }
        })
    };
    let pick = |udp: bool| loop {
        let addr: SocketAddr = format!("{}:0", ADDRS[0]).parse().expect("addr");
        let port = if udp {
            UdpSocket::bind(addr).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind(addr).and_then(|s| s.local_addr())
        }
        .expect("bind loopback")
        .port();
        if both_free(udp, port) {
            return port;
        }
    };
    let tftp = pick(true);
    let mut http = pick(false);
    while http == tftp {
        http = pick(false);
    }
    let mut admin = pick(false);
    while admin == http {
        admin = pick(false);
    }
    (tftp, http, admin)
}

/// One played replica, torn down (`podman kube down`) on drop.
struct Replica {
    conf: PathBuf,
    yaml: PathBuf,
    pod: String,
    tftp: SocketAddr,
    http: SocketAddr,
    secret: String,
}

impl Replica {
    /// The shipped manifest for this replica: its own object names, one replica, the test's
    /// image, its own addresses and ports, this Ironic.
    fn manifest(
        manifest: &str,
        image: &str,
        id: &str,
        ip: &str,
        ports: (u16, u16, u16),
        ironic: &str,
    ) -> String {
        let (t, h, a) = ports;
        let mut m = manifest.to_owned();
        // ConfigMaps: named by their object and their volume; the Secret by its object
        // (its volume says `secretName`).
        for (name, times) in [
            ("ironpxe-config", 2),
            ("ironpxe-state", 2),
            ("ironpxe-ironic", 1),
        ] {
            m = sub(
                &m,
                &format!("name: {name}\n"),
                &format!("name: {name}-{id}\n"),
                times,
            );
        }
        m = sub(
            &m,
            "secretName: ironpxe-ironic\n",
            &format!("secretName: ironpxe-ironic-{id}\n"),
            1,
        );
        m = sub(
            &m,
            "kind: Deployment\nmetadata:\n  name: ironpxe\n",
            &format!("kind: Deployment\nmetadata:\n  name: ironpxe-{id}\n"),
            1,
        );
        m = sub(&m, "  replicas: 2\n", "  replicas: 1\n", 1);
        m = sub(
            &m,
            "image: localhost/ironpxe:latest\n",
            &format!("image: {image}\n"),
            1,
        );
        m = sub(
            &m,
            "imagePullPolicy: IfNotPresent\n",
            "imagePullPolicy: Never\n",
            1,
        );
        m = sub(
            &m,
            "tftp_listen = [\"0.0.0.0:69\"]",
            &format!("tftp_listen = [\"{ip}:{t}\"]"),
            1,
        );
        m = sub(
            &m,
            "http_listen = \"0.0.0.0:80\"",
            &format!("http_listen = \"{ip}:{h}\""),
            1,
        );
        m = sub(
            &m,
            "listen = \"127.0.0.1:8081\"",
            &format!("listen = \"{ip}:{a}\""),
            1,
        );
        m = sub(&m, "http://192.0.2.5:6385", ironic, 2);
        // Ironic's image server is on loopback, which must be named to be fetched from.
        m = sub(
            &m,
            "allowed_urls = [\"192.0.2.5\"]",
            "allowed_urls = [\"127.0.0.1\"]",
            1,
        );
        m = sub(
            &m,
            "    [ironic]\n",
            "    [ironic]\n    interval_secs = 1\n",
            1,
        );
        // The probes follow the HTTP port (the kubelet probes the pod's, i.e. the host's,
        // address on hostNetwork).
        m = sub(
            &m,
            "            port: 80\n",
            &format!("            port: {h}\n            host: {ip}\n"),
            2,
        );
        m
    }

    fn play(
        conf: &Path,
        dir: &Path,
        yaml_text: &str,
        id: &str,
        ports: (u16, u16, u16),
        ip: &str,
    ) -> Replica {
        let yaml = dir.join(format!("replica-{id}.yaml"));
        fs::write(&yaml, yaml_text).expect("write manifest");
        let replica = Replica {
            conf: conf.to_owned(),
            yaml: yaml.clone(),
            pod: format!("ironpxe-{id}-pod-0"),
            tftp: format!("{ip}:{}", ports.0).parse().expect("addr"),
            http: format!("{ip}:{}", ports.1).parse().expect("addr"),
            secret: format!("ironpxe-ironic-{id}"),
        };
        let t = Instant::now();
        run(
            podman(conf).args(["kube", "play"]).arg(&yaml),
            &format!("podman kube play {}", yaml.display()),
        );
        eprintln!(
            "replica {id}: played in {:.1?} ({})",
            t.elapsed(),
            replica.http
        );
        replica
    }

    fn logs(&self) -> String {
        let out = podman(&self.conf)
            .args(["logs", &format!("{}-ironpxe", self.pod)])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.http, path)
    }

    /// Polls `/healthz` (the manifest's probe) until `cond` holds on its JSON; bounded.
    fn wait_health(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = self.get("/healthz") {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if cond(&v) {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not get {what} within 60 s; its log:\n{}",
                self.pod,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn tftp(&self, name: &str, opts: &ClientOpts) -> Result<Vec<u8>, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        tftp::get(&sock, self.tftp, name, opts)
            .result
            .map_err(|f| f.to_string())
    }

    fn kill(&self) {
        run(
            podman(&self.conf).args(["pod", "kill", "--signal", "KILL", &self.pod]),
            "podman pod kill",
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = podman(&self.conf)
            .args(["kube", "down"])
            .arg(&self.yaml)
            .stdin(Stdio::null())
            .output();
        let _ = podman(&self.conf)
            .args(["secret", "rm", &self.secret])
            .stdin(Stdio::null())
            .output();
    }
}

/// A bounded HTTP/1.1 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((code, body.to_owned()))
}

/// The action a rendered config names in its first line (`# ironpxe: node … <uuid>: deploy`).
fn action(cfg: &str) -> &str {
    cfg.lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .unwrap_or_default()
}

/// `kernel images/<key>/<name>` and `initrd=images/…` of a PXELINUX config.
fn images(cfg: &str) -> (String, String) {
    common::pxelinux_images(cfg)
}

/// One boot: PXELINUX config, kernel and initrd over TFTP, iPXE script over HTTP, each from
/// `first` and, when that fails, from the other replica. Returns how many steps failed over.
fn boot(reps: &[&Replica; 2], first: usize, want: &Expected) -> Result<u32, String> {
    let opts = ClientOpts {
        rto: Duration::from_millis(300),
        max_timeouts: 3,
        deadline: Duration::from_secs(20),
        ..ClientOpts::default()
    };
    let mut failovers = 0;
    let order = [first, 1 - first];
    let tftp_step = |name: &str, bytes: &[u8], failovers: &mut u32| -> Result<(), String> {
        let mut why = Vec::new();
        for (i, &r) in order.iter().enumerate() {
            match reps[r].tftp(name, &opts) {
                Ok(got) if got == bytes => {
                    *failovers += i as u32;
                    return Ok(());
                }
                Ok(got) => {
                    return Err(format!(
                        "{name} from {}: {} bytes, not the expected {}",
                        reps[r].tftp,
                        got.len(),
                        bytes.len()
                    ))
                }
                Err(e) => why.push(format!("{}: {e}", reps[r].tftp)),
            }
        }
        Err(format!("{name}: {why:?}"))
    };
    tftp_step(
        &format!("pxelinux.cfg/01-{}", MAC_STORM.replace(':', "-")),
        want.pxelinux.as_bytes(),
        &mut failovers,
    )?;
    tftp_step(&want.kernel_path, &want.kernel, &mut failovers)?;
    tftp_step(&want.initrd_path, &want.initrd, &mut failovers)?;
    let mut why = Vec::new();
    for (i, &r) in order.iter().enumerate() {
        match reps[r].get(&format!("/ipxe/{MAC_STORM}")) {
            Ok((200, body)) if normalise(&body, reps[r]) == want.ipxe => {
                return Ok(failovers + i as u32);
            }
            Ok((code, body)) => {
                return Err(format!("iPXE from {}: HTTP {code}: {body}", reps[r].http))
            }
            Err(e) => why.push(format!("{}: {e}", reps[r].http)),
        }
    }
    Err(format!("iPXE script: {why:?}"))
}

/// A replica's iPXE script with its own base URL replaced: the one place replicas differ,
/// since each tells the client to fetch from itself.
fn normalise(script: &str, r: &Replica) -> String {
    script.replace(&format!("http://{}", r.http), "http://<replica>")
}

struct Expected {
    pxelinux: String,
    kernel_path: String,
    initrd_path: String,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    ipxe: String,
}

#[test]
fn two_replicas_played_by_podman_share_one_ironic_and_survive_a_kill_mid_storm() {
    for (tool, pkg) in [
        ("podman", "podman"),
        ("buildah", "buildah"),
        ("runc", "runc"),
        ("catatonit", "catatonit"),
        ("setcap", "libcap2-bin"),
        ("getcap", "libcap2-bin"),
        ("readelf", "binutils"),
    ] {
        require(tool, pkg);
    }
    let t0 = Instant::now();
    let image = build_image();
    let scratch = tempfile::Builder::new()
        .prefix("ironpxe-replicas-")
        .tempdir()
        .expect("scratch");
    let conf = podman_conf(scratch.path());

    // The image: the binary carries its low-port capability, the loaders are Debian's.
    let mnt = run(
        podman(&conf).args(["image", "mount", &image]),
        "podman image mount",
    );
    let mnt = PathBuf::from(String::from_utf8_lossy(&mnt.stdout).trim());
    let caps = run(
        Command::new("getcap").arg(mnt.join("usr/bin/ironpxe")),
        "getcap",
    );
    assert!(
        String::from_utf8_lossy(&caps.stdout).contains("cap_net_bind_service=ep"),
        "the image's ironpxe lacks cap_net_bind_service: {caps:?}"
    );
    let pxelinux0 =
        fs::read("/usr/lib/PXELINUX/pxelinux.0").expect("pxelinux.0 (apt-get install pxelinux)");
    assert_eq!(
        fs::read(mnt.join("usr/lib/PXELINUX/pxelinux.0")).expect("pxelinux.0 in the image"),
        pxelinux0
    );
    let _ = podman(&conf).args(["image", "unmount", &image]).output();

    // ---- one real Ironic, two nodes parked in wait call-back ----
    let ironic = Ironic::start();
    let img = |name: &str| format!("http://127.0.0.1:{}/img_src/{name}", ironic.img_port);
    let driver_info = json!({
        "deploy_kernel": img("ipa.kernel"),
        "deploy_ramdisk": img("ipa.initramfs"),
    });
    let mut uuids = BTreeMap::new();
    for (name, mac) in [("rep-storm", MAC_STORM), ("rep-change", MAC_CHANGE)] {
        let uuid = ironic.create_node(
            name,
            json!({"boot_interface": "pxe", "deploy_interface": "direct", "driver_info": driver_info}),
        );
        ironic.create_port(&uuid, mac, None);
        ironic.drive(
            &uuid,
            &[
                ("manage", json!({}), "manageable"),
                ("provide", json!({}), "available"),
                ("active", json!({}), "wait call-back"),
            ],
        );
        uuids.insert(mac, uuid);
    }

    // ---- the shipped manifest, played twice ----
    let manifest = fs::read_to_string(root().join("deploy/k8s/ironpxe.yaml"))
        .expect("deploy/k8s/ironpxe.yaml");
    let ports = free_ports();
    let tag = std::process::id();
    let reps: Vec<Replica> = ["a", "b"]
        .iter()
        .zip(ADDRS)
        .map(|(id, ip)| {
            let id = format!("{id}{tag}");
            let text = Replica::manifest(&manifest, &image, &id, ip, ports, &ironic.url());
            Replica::play(&conf, scratch.path(), &text, &id, ports, ip)
        })
        .collect();
    for r in &reps {
        let h = r.wait_health("a good Ironic poll with both nodes", |h| {
            h["ironic"]["polls_ok"].as_u64().unwrap_or(0) >= 1 && h["nodes"] == 2
        });
        assert_eq!(h["status"], "ok", "{}: {h}\n{}", r.pod, r.logs());
    }
    eprintln!(
        "both replicas serving Ironic's nodes after {:.1?}",
        t0.elapsed()
    );

    // ---- identical answers ----
    let cfg_name = |mac: &str| format!("pxelinux.cfg/01-{}", mac.replace(':', "-"));
    let one = ClientOpts::default();
    let cfgs: Vec<String> = reps
        .iter()
        .map(|r| {
            String::from_utf8(r.tftp(&cfg_name(MAC_STORM), &one).expect("PXELINUX config"))
                .expect("UTF-8")
        })
        .collect();
    assert_eq!(cfgs[0], cfgs[1], "the replicas' PXELINUX configs differ");
    assert_eq!(action(&cfgs[0]), "deploy", "{}", cfgs[0]);
    assert!(cfgs[0].contains(&uuids[MAC_STORM]), "{}", cfgs[0]);
    let (kernel_path, initrd_path) = images(&cfgs[0]);
    let (kernel, initrd) = (
        ironic.image("ipa.kernel").1,
        ironic.image("ipa.initramfs").1,
    );
    for r in &reps {
        assert_eq!(
            r.tftp(&kernel_path, &one).unwrap_or_else(|e| panic!(
                "kernel from {}: {e}\n{}",
                r.pod,
                r.logs()
            )),
            kernel,
            "{} kernel",
            r.pod
        );
        assert_eq!(
            r.tftp(&initrd_path, &one).unwrap_or_else(|e| panic!(
                "initrd from {}: {e}\n{}",
                r.pod,
                r.logs()
            )),
            initrd,
            "{} initrd",
            r.pod
        );
        assert_eq!(
            r.tftp("pxelinux.0", &one).unwrap_or_else(|e| panic!(
                "pxelinux.0 from {}: {e}\n{}",
                r.pod,
                r.logs()
            )),
            pxelinux0,
            "{} pxelinux.0",
            r.pod
        );
    }
    let scripts: Vec<String> = reps
        .iter()
        .map(|r| {
            let (code, body) = r.get(&format!("/ipxe/{MAC_STORM}")).expect("iPXE script");
            assert_eq!(code, 200, "{body}");
            // http(s) images are fetched by iPXE from where Ironic says, not via a replica.
            assert!(
                body.contains(&format!("kernel {} ", img("ipa.kernel"))),
                "{}: {body}",
                r.pod
            );
            normalise(&body, r)
        })
        .collect();
    assert_eq!(
        scripts[0], scripts[1],
        "the replicas' iPXE scripts differ beyond their own address"
    );

    // ---- a provision-state change through Ironic's API reaches both ----
    for r in &reps {
        let cfg = r.tftp(&cfg_name(MAC_CHANGE), &one).expect("config");
        assert_eq!(action(&String::from_utf8_lossy(&cfg)), "deploy");
    }
    let t = Instant::now();
    ironic.provision(&uuids[MAC_CHANGE], "abort", json!({}));
    ironic.wait_state(&uuids[MAC_CHANGE], "deploy failed");
    for r in &reps {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cfg = r.tftp(&cfg_name(MAC_CHANGE), &one).expect("config");
            if action(&String::from_utf8_lossy(&cfg)) == "local" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still deploys the aborted node\n{}",
                r.pod,
                r.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("abort reached {} after {:.1?}", r.pod, t.elapsed());
    }

    // ---- a boot storm; replica a is killed in the middle ----
    let want = Arc::new(Expected {
        pxelinux: cfgs[0].clone(),
        kernel_path,
        initrd_path,
        kernel,
        initrd,
        ipxe: scripts[0].clone(),
    });
    let reps = Arc::new(reps);
    let done = Arc::new(AtomicU32::new(0));
    let after_kill = Arc::new(AtomicU32::new(0));
    let failovers = Arc::new(AtomicU32::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (reps, want, done, after_kill, failovers, killed) = (
                reps.clone(),
                want.clone(),
                done.clone(),
                after_kill.clone(),
                failovers.clone(),
                killed.clone(),
            );
            std::thread::spawn(move || -> Result<u32, String> {
                let mut boots = 0;
                // Each client boots until 40 boots have completed after the kill.
                while after_kill.load(Ordering::SeqCst) < 40 {
                    let was_killed = killed.load(Ordering::SeqCst);
                    let f = boot(&[&reps[0], &reps[1]], i % 2, &want)?;
                    failovers.fetch_add(f, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    if was_killed {
                        after_kill.fetch_add(1, Ordering::SeqCst);
                    }
                    boots += 1;
                }
                Ok(boots)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::SeqCst) < 16 {
        assert!(Instant::now() < deadline, "the storm did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    reps[0].kill();
    killed.store(true, Ordering::SeqCst);
    eprintln!(
        "killed {} after {} boots",
        reps[0].pod,
        done.load(Ordering::SeqCst)
    );
    let mut failures = Vec::new();
    for c in clients {
        match c.join().expect("client thread") {
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    let (total, moved) = (
        done.load(Ordering::SeqCst),
        failovers.load(Ordering::SeqCst),
    );
    eprintln!("storm: {total} boots, {moved} steps retried on the other replica");
    assert!(failures.is_empty(), "boots lost: {failures:#?}");
    // Half the clients try replica a first: after the kill each of their boots fails over.
    assert!(
        moved >= 4,
        "only {moved} steps failed over: was replica a really killed?"
    );
    assert!(
        reps[0].get("/healthz").is_err(),
        "the killed replica still answers"
    );
    let h = reps[1].wait_health("ok", |h| h["status"] == "ok");
    assert_eq!(h["nodes"], 2, "{h}");
    eprintln!("whole test {:.1?}", t0.elapsed());
}
