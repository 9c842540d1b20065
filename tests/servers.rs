//! `ironpxe serve` driven by real clients: tftp-hpa, atftp, curl, and a raw TFTP client for
//! probes the tools cannot send.

mod common;

use std::fs;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::http_server::HttpServer;
use common::tftp::{self, ack, error_packet, recv, rrq, ClientOpts};
use common::tftp::{OP_DATA, OP_ERROR, OP_OACK, OP_RRQ, OP_WRQ};
use common::*;
use ironpxe::model::addr::{pxelinux_lookup_sequence, Guid, IbHwAddr, PxeHwAddr, SystemUuid};

const IB_NODE: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const DUAL_NODE: &str = "53589717-4709-4ead-88b2-fed1cdc9dfc4";

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 config")
}

#[test]
fn ironic_ipxe_layout_serves_per_node_scripts_for_ethernet_and_ib() {
    let s = Ironpxe::start();
    // What Ironic's boot.ipxe chains: pxelinux.cfg/${net<N>/mac:hexhyp}, relative to its URL.
    let (code, eth) = s.get("/pxelinux.cfg/52-54-00-ab-cd-01");
    assert_eq!(code, 200);
    assert!(
        eth.starts_with("#!ipxe") && eth.contains(DUAL_NODE),
        "{eth}"
    );
    assert!(eth.contains("BOOTIF=01-52-54-00-ab-cd-01"), "{eth}");
    let (code, ib) = s.get("/pxelinux.cfg/7c-fe-90-29-26-52");
    assert_eq!(code, 200);
    assert!(
        ib.contains(IB_NODE) && ib.contains("BOOTIF=20-7c-fe-90-29-26-52"),
        "{ib}"
    );
    let (code, body) = s.get("/pxelinux.cfg/52-54-00-99-99-99");
    assert_eq!(code, 404);
    assert!(body.starts_with("#!ipxe"), "iPXE-parsable 404: {body}");
    // The entry script loops over devices and chains /ipxe/<mac> on this server.
    let (code, entry) = s.get("/boot.ipxe");
    assert_eq!(code, 200);
    assert!(
        entry.contains(&format!(
            "http://{}/ipxe/${{net${{netid}}/mac:hexhyp}}",
            s.http
        )),
        "{entry}"
    );
}

#[test]
fn an_infiniband_node_answers_every_spelling_over_both_protocols() {
    let s = Ironpxe::start();
    for name in [
        "20-7c-fe-90-29-26-52",
        "01-7c-fe-90-29-26-52",
        "20-7c-fe-90-03-00-29-26-52",
    ] {
        let cfg = text(
            s.tftp_get(&format!("pxelinux.cfg/{name}"), &[])
                .expect(name),
        );
        assert!(cfg.contains(IB_NODE), "{name}: {cfg}");
        let hw = &name[..2];
        assert!(
            cfg.contains(&format!("BOOTIF={hw}-7c-fe-90-29-26-52")),
            "{name}: {cfg}"
        );
    }
    for spelling in [
        "7c:fe:90:29:26:52",
        "7c-fe-90-29-26-52",
        "7cfe90292652",
        "7CFE.9029.2652",
        "7c:fe:90:03:00:29:26:52",
        "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
        "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52",
        IB_NODE,
    ] {
        let (code, body) = s.get(&format!("/ipxe/{spelling}"));
        assert_eq!(code, 200, "{spelling}");
        assert!(body.contains(IB_NODE), "{spelling}: {body}");
    }
    for unknown in [
        "pxelinux.cfg/20-7c-fe-90-29-26-53",
        "pxelinux.cfg/01-52-54-00-99-99-99",
    ] {
        assert_eq!(
            s.tftp_get(unknown, &[]),
            Err(68),
            "{unknown} must be TFTP file-not-found"
        );
    }
}

/// The whole PXELINUX walk, in order: misses until the first hit, nothing asked after it.
#[test]
fn pxelinux_lookup_sequence_misses_until_the_first_hit() {
    let s = Ironpxe::start();
    let guid = Guid::parse("7c:fe:90:03:00:29:26:52").expect("guid");
    // A UUID no node has, then the IB hardware name, then hex IPs, then default.
    let uuid = SystemUuid::parse("11111111-2222-4333-8444-555555555555").expect("uuid");
    let seq = pxelinux_lookup_sequence(
        Some(uuid),
        PxeHwAddr::Infiniband(IbHwAddr::Mac(guid.ib_mac())),
        Some("192.0.2.77".parse().expect("ip")),
    );
    let names: Vec<String> = seq.iter().map(|n| n.to_string()).collect();
    assert_eq!(names[1], "20-7c-fe-90-29-26-52");
    let results: Vec<bool> = names
        .iter()
        .map(|n| s.tftp_get(&format!("pxelinux.cfg/{n}"), &[]).is_ok())
        .collect();
    assert!(!results[0], "unknown uuid is not found");
    assert!(results[1], "the hardware name hits");
    assert!(
        results[2..names.len() - 1].iter().all(|hit| !hit),
        "hex IPs have no source: {names:?}"
    );
    assert_eq!(results.last(), Some(&true), "default always answers");

    // The node's own SMBIOS UUID (extra.system_uuid) hits first, in both byte orders.
    for u in [
        "4c4c4544-0051-3510-8051-b2c04f4e4d32",
        "44454c4c-5100-1035-8051-b2c04f4e4d32",
    ] {
        let cfg = text(s.tftp_get(&format!("pxelinux.cfg/{u}"), &[]).expect(u));
        assert!(cfg.contains(IB_NODE), "{u}");
    }
}

#[test]
fn ethernet_node_and_unknown_client() {
    let s = Ironpxe::start();
    let active = text(
        s.tftp_get("pxelinux.cfg/01-52-54-00-12-34-56", &[])
            .expect("eth node"),
    );
    assert!(
        active.contains("localboot 0") && active.contains("eth-node-1"),
        "{active}"
    );
    let default = text(s.tftp_get("pxelinux.cfg/default", &[]).expect("default"));
    assert!(
        default.contains("unknown machine") && default.contains("localboot 0"),
        "{default}"
    );
    let (code, body) = s.get("/ipxe/unknown");
    assert_eq!(code, 200);
    assert!(
        body.contains("exit 0") && !body.contains("kernel "),
        "{body}"
    );
}

/// UEFI firmware probes the size (RRQ tsize 0 → OACK → client ERROR 8), then asks again from
/// the same port. The real request must be answered on its first try and the probe must
/// leave the active-sessions gauge.
#[test]
fn uefi_size_probe_then_real_request_from_the_same_port() {
    let s = Ironpxe::start();
    let data = pattern_file(&s.tftp_root().join("snponly.efi"), 200_000);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(
        &rrq(b"snponly.efi", &[("tsize", "0"), ("blksize", "1408")]),
        s.tftp,
    )
    .expect("send");
    let oack = recv(&sock, Duration::from_secs(5)).expect("OACK");
    assert_eq!(oack.op, OP_OACK);
    assert!(
        oack.options().contains(&("tsize".into(), "200000".into())),
        "{:?}",
        oack.options()
    );
    sock.send_to(&error_packet(8, "probe done"), oack.from)
        .expect("send error");

    // The real request, same source port: the first packet back is its OACK.
    sock.send_to(&rrq(b"snponly.efi", &[("blksize", "1408")]), s.tftp)
        .expect("send");
    let first = recv(&sock, Duration::from_secs(5)).expect("answer to the real request");
    assert_eq!(first.op, OP_OACK, "answered on the first try");
    assert_ne!(first.from, oack.from, "a new transfer, not the probe's");
    // Finish it by hand and check the bytes.
    sock.send_to(&ack(0), first.from).expect("ack");
    let mut got = Vec::new();
    loop {
        let p = recv(&sock, Duration::from_secs(5)).expect("data");
        assert_ne!(
            p.from, oack.from,
            "the aborted probe must send nothing more"
        );
        assert_eq!(p.op, OP_DATA);
        got.extend_from_slice(&p.body[2..]);
        sock.send_to(&ack(u16::from_be_bytes([p.body[0], p.body[1]])), p.from)
            .expect("ack");
        if p.body.len() - 2 < 1408 {
            break;
        }
    }
    assert!(got == data, "{} of {} bytes, differ", got.len(), data.len());
    s.wait_until("sessions back to 0", || {
        s.metric("ironpxe_tftp_sessions_active") == 0.0
    });
}

#[test]
fn two_hundred_clients_probe_and_fetch_at_once() {
    let s = Ironpxe::start();
    let data = pattern_file(&s.tftp_root().join("ipxe.efi"), 50_000);
    let server = s.tftp;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let data = data.clone();
            std::thread::spawn(move || {
                // Spread clients over 127.x source addresses, like distinct machines.
                let src = format!("127.0.{}.{}:0", 1 + i / 200, 1 + i % 200);
                let sock = UdpSocket::bind(src).expect("bind");
                sock.send_to(&rrq(b"ipxe.efi", &[("tsize", "0")]), server)
                    .expect("send");
                let oack = recv(&sock, Duration::from_secs(10)).expect("probe OACK");
                assert_eq!(oack.op, OP_OACK);
                sock.send_to(&error_packet(8, "probe"), oack.from)
                    .expect("send");
                let opts = ClientOpts {
                    blksize: Some(1408),
                    ..ClientOpts::one_try()
                };
                let got = tftp::get(&sock, server, "ipxe.efi", &opts).bytes("fetch");
                assert!(
                    got == data,
                    "client {i}: {} of {} bytes, differ",
                    got.len(),
                    data.len()
                );
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    s.wait_until("sessions back to 0", || {
        s.metric("ironpxe_tftp_sessions_active") == 0.0
    });
}

#[test]
fn state_edits_apply_live_and_broken_files_keep_the_last_good_config() {
    let s = Ironpxe::start();
    let path = s.state.path().join("ib-node-1.json");
    let original = fs::read_to_string(&path).expect("read");
    let before = text(
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .expect("config"),
    );
    assert!(before.contains("default deploy"));

    let edited = original.replace("\"deploying\"", "\"active\"");
    let tmp = s.state.path().join(".ib-node-1.json.tmp");
    fs::write(&tmp, &edited).expect("write");
    fs::rename(&tmp, &path).expect("rename");
    s.wait_until("the edit to be served", || {
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .map(|c| text(c).contains("localboot 0"))
            .unwrap_or(false)
    });

    fs::write(&path, &edited[..edited.len() / 2]).expect("truncate");
    s.wait_until("the error to be counted", || {
        s.metric("ironpxe_state_errors") == 1.0
    });
    let still = text(
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .expect("config"),
    );
    assert!(
        still.contains("localboot 0"),
        "last good state still served: {still}"
    );
    let (_, health) = s.get("/healthz");
    assert!(health.contains("\"degraded\""), "{health}");
}

#[test]
fn thirty_megabytes_over_tftp_with_curl_and_atftp_windowsize() {
    require("atftp", "atftp");
    let s = Ironpxe::start();
    let data = pattern_file(&s.tftp_root().join("big.img"), 30 << 20);
    let got = s
        .tftp_get("big.img", &["--tftp-blksize", "1468"])
        .expect("curl tftp");
    assert!(got == data, "curl: {} bytes, differ", got.len());

    let out = s.work.path().join("atftp.out");
    let status = Command::new("atftp")
        .args([
            "--option",
            "windowsize 8",
            "--option",
            "blksize 1468",
            "-g",
            "-r",
            "big.img",
            "-l",
        ])
        .arg(&out)
        .args(["127.0.0.1", &s.tftp.port().to_string()])
        .status()
        .expect("run atftp");
    assert!(status.success());
    assert!(
        fs::read(&out).expect("read") == data,
        "atftp windowsize 8 differs"
    );
}

#[test]
fn tftp_hpa_client_fetches_configs_and_files() {
    require("tftp", "tftp-hpa");
    let s = Ironpxe::start();
    let data = pattern_file(&s.tftp_root().join("pxelinux.0"), 40_000);
    let out = s.work.path().join("got");
    let run = |remote: &str| {
        let _ = fs::remove_file(&out);
        Command::new("tftp")
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &s.tftp.port().to_string(),
                "-c",
                "get",
                remote,
            ])
            .arg(&out)
            .output()
            .expect("run tftp")
    };
    run("pxelinux.0");
    assert!(fs::read(&out).expect("got file") == data);
    run("pxelinux.cfg/20-7c-fe-90-29-26-52");
    assert!(fs::read_to_string(&out)
        .expect("got config")
        .contains(IB_NODE));
}

/// A node's http kernel, fetched once into the image cache and served over TFTP.
#[test]
fn image_cache_serves_an_http_kernel_over_tftp() {
    let img = tempfile::tempdir().expect("tempdir");
    let kernel = pattern_file(&img.path().join("vmlinuz"), 3_000_000);
    pattern_file(&img.path().join("initrd"), 1000);
    let http = HttpServer::files(img.path());
    let base = http.base.clone();

    let node = format!(
        r#"{{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "img", "provision_state": "clean wait",
            "driver_info": {{"deploy_kernel": "{base}/vmlinuz", "deploy_ramdisk": "{base}/initrd"}},
            "ports": [{{"address": "52:54:00:77:00:01"}}]}}"#
    );
    let s = Ironpxe::start_with(Options {
        state: vec![("img.json".into(), node)],
        // A loopback server: refused unless listed.
        toml: format!("[images]\nallowed_urls = [\"{base}/\"]\n"),
        ..Options::default()
    });
    let cfg = text(
        s.tftp_get("pxelinux.cfg/01-52-54-00-77-00-01", &[])
            .expect("config"),
    );
    let path = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("kernel "))
        .expect("kernel line")
        .to_owned();
    assert!(path.starts_with("images/"), "{cfg}");
    for _ in 0..3 {
        let got = s
            .tftp_get(&path, &["--tftp-blksize", "1468"])
            .expect("kernel over tftp");
        assert!(got == kernel, "image differs ({} bytes)", got.len());
    }
    assert_eq!(http.hits(), 2, "kernel and ramdisk fetched once each");
    assert_eq!(s.get(&format!("/{path}")).0, 200, "same path over HTTP");
    assert_eq!(
        s.tftp_get("images/0123456789abcdef/vmlinuz", &[]),
        Err(68),
        "unknown keys are not fetched"
    );
}

#[test]
fn http_range_and_head() {
    let s = Ironpxe::start();
    let data = pattern_file(&s.tftp_root().join("kernel"), 100_000);
    let out = curl(&["-s", "-r", "1000-1999", &s.url("/kernel")]);
    assert_eq!(out.stdout, data[1000..2000]);
    let head = curl(&["-sI", &s.url("/kernel")]);
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("content-length: 100000"),
        "{head}"
    );
    assert!(
        head.contains("accept-ranges: bytes") && head.contains("last-modified:"),
        "{head}"
    );
    let (code, _) = s.get("/kernel?x=1");
    assert_eq!(code, 200);
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        "200000-",
        &s.url("/kernel"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "416");
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        &s.url("/kernel"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
}

#[test]
fn traversal_is_refused_over_both_protocols_and_writes_too() {
    let s = Ironpxe::start();
    let secret = s.work.path().join("secret.txt");
    fs::write(&secret, "secret").expect("write");
    std::os::unix::fs::symlink(&secret, s.tftp_root().join("leak")).expect("symlink");
    fs::write(s.tftp_root().join("ok.txt"), "fine").expect("write");

    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/leak",
        "/ok.txt%00",
    ] {
        let out = curl(&[
            "-s",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &s.url(path),
        ]);
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(code == "403" || code == "400", "{path}: {code}");
    }
    assert_eq!(s.get("/ok.txt"), (200, "fine".into()));

    let abs = secret.to_str().expect("utf-8").as_bytes().to_vec();
    for name in [
        b"../secret.txt".to_vec(),
        b"..\\secret.txt".to_vec(),
        b"leak".to_vec(),
        abs,
        b"a/../../secret.txt".to_vec(),
    ] {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.send_to(&rrq(&name, &[]), s.tftp).expect("send");
        let p = recv(&sock, Duration::from_secs(5)).expect("answer");
        assert_eq!(p.op, OP_ERROR, "{}", String::from_utf8_lossy(&name));
        assert!(
            matches!(p.error_code(), Some(1 | 2)),
            "{:?}",
            p.error_code()
        );
    }
    // A NUL ends a TFTP name by protocol: "ok.txt\0x\0octet" is a malformed request (mode
    // "x") and gets no data.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut bad = OP_RRQ.to_be_bytes().to_vec();
    bad.extend_from_slice(b"ok.txt\0x\0octet\0");
    sock.send_to(&bad, s.tftp).expect("send");
    assert!(recv(&sock, Duration::from_millis(500)).is_none_or(|p| p.op != OP_DATA));
    // A write request: access violation, and nothing is written.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut wrq = rrq(b"new.txt", &[]);
    wrq[1] = OP_WRQ as u8;
    sock.send_to(&wrq, s.tftp).expect("send");
    let p = recv(&sock, Duration::from_secs(5)).expect("answer");
    assert_eq!(p.error_code(), Some(2));
    assert!(!s.tftp_root().join("new.txt").exists());
}

#[test]
fn grub_names_and_ironic_uefi_layout() {
    let s = Ironpxe::start();
    // GRUB writes `01` even on InfiniBand: the IB port answers under its IB MAC.
    let ib = text(
        s.tftp_get("grub.cfg-01-7c-fe-90-29-26-52", &[])
            .expect("grub ib"),
    );
    assert!(
        ib.contains(IB_NODE) && ib.contains("linux /images/"),
        "{ib}"
    );
    let nested = text(
        s.tftp_get("grub/grub.cfg-01-52-54-00-ab-cd-01", &[])
            .expect("grub eth"),
    );
    assert!(nested.contains(DUAL_NODE), "{nested}");
    assert_eq!(
        s.tftp_get("grub.cfg-01-52-54-00-99-99-99", &[]),
        Err(68),
        "unknown: GRUB walks on"
    );
    // Ironic's UEFI layout: grub/grub.cfg sources <mac>.conf.
    let master = text(s.tftp_get("grub/grub.cfg", &[]).expect("master"));
    assert!(
        master.contains("configfile /$net_default_mac.conf"),
        "{master}"
    );
    let conf = text(s.tftp_get("7c:fe:90:29:26:52.conf", &[]).expect("conf"));
    assert!(conf.contains(IB_NODE), "{conf}");
    let unknown = text(
        s.tftp_get("52:54:00:99:99:99.conf", &[])
            .expect("unknown conf"),
    );
    assert!(unknown.contains("unknown machine"), "{unknown}");
}

/// GRUB built with a distro prefix (`grub-mkimage -p /EFI/centos`) walks its names under it:
/// the MAC name and the full hex IP find the node (from `extra.fixed_ip`, as PXELINUX's do),
/// and so does Ironic's `<ip>.conf`; shorter hex IPs miss, `grub.cfg` is the master — over TFTP and HTTP alike. A real file of
/// such a name is served, never shadowed.
#[test]
fn grub_names_under_a_distro_prefix_over_both_protocols() {
    let node = r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "g1",
        "provision_state": "active", "boot_interface": "pxe",
        "ports": [{"address": "52:54:00:12:34:56", "extra": {"fixed_ip": "10.99.0.111"}}]}"#;
    let s = Ironpxe::start_with(Options {
        state: vec![("g1.json".into(), node.into())],
        ..Options::default()
    });
    for name in [
        "EFI/centos/grub.cfg-01-52-54-00-12-34-56",
        "EFI/centos/grub.cfg-0A63006F",
    ] {
        let tftp = text(s.tftp_get(name, &[]).expect(name));
        assert!(tftp.contains("node g1"), "{name}: {tftp}");
        let (code, http) = s.get(&format!("/{name}"));
        assert_eq!((code, &http), (200, &tftp), "{name} over HTTP");
    }
    // Ironic's `<ip>.conf` link (UEFI, PXE without iPXE) from the same fixed IP: the node's
    // GRUB config, as `<mac>.conf`; another address is the unknown machine.
    let by_ip = text(s.tftp_get("10.99.0.111.conf", &[]).expect("ip.conf"));
    let by_mac = text(s.tftp_get("52:54:00:12:34:56.conf", &[]).expect("mac.conf"));
    assert!(by_ip.contains("node g1"), "{by_ip}");
    assert_eq!(by_ip, by_mac);
    assert_eq!(s.get("/10.99.0.111.conf"), (200, by_ip));
    let other = text(s.tftp_get("10.99.0.112.conf", &[]).expect("other ip.conf"));
    assert!(other.contains("unknown machine"), "{other}");
    for name in ["EFI/centos/grub.cfg-0A63006", "EFI/centos/grub.cfg-0"] {
        assert_eq!(s.tftp_get(name, &[]), Err(68), "{name}: GRUB walks on");
        assert_eq!(s.get(&format!("/{name}")).0, 404, "{name}");
    }
    let master = text(s.tftp_get("EFI/centos/grub.cfg", &[]).expect("master"));
    assert!(
        master.contains("configfile /$net_default_mac.conf"),
        "{master}"
    );
    assert_eq!(s.get("/EFI/centos/grub.cfg"), (200, master));
    // The operator's own file under that prefix wins.
    let dir = s.tftp_root().join("EFI/redhat");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("grub.cfg"), "menuentry own {\n}\n").expect("write");
    let own = text(s.tftp_get("EFI/redhat/grub.cfg", &[]).expect("own"));
    assert_eq!(own, "menuentry own {\n}\n");
    assert_eq!(s.get("/EFI/redhat/grub.cfg"), (200, own));
}

/// GRUB reads exactly the size an OACK announces and nothing of a file without `tsize`: a
/// GRUB config asked for the first time (its render still running in a worker) must
/// announce its size all the same. (PXELINUX and iPXE do without: theirs stream at once.)
#[test]
fn a_grub_config_rendered_on_request_announces_its_size_over_tftp() {
    let s = Ironpxe::start();
    for name in [
        "grub.cfg-01-7c-fe-90-29-26-52",
        "EFI/centos/grub.cfg-01-52-54-00-ab-cd-01",
        "52:54:00:ab:cd:01.conf",
    ] {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let opts = [("tsize", "0"), ("blksize", "1024")];
        sock.send_to(&rrq(name.as_bytes(), &opts), s.tftp)
            .expect("send");
        let oack = recv(&sock, Duration::from_secs(10)).expect("OACK");
        assert_eq!(oack.op, OP_OACK, "{name}");
        sock.send_to(&error_packet(0, "size known"), oack.from)
            .expect("send error");
        let body = s.tftp_get(name, &[]).expect(name);
        let tsize = body.len().to_string();
        assert!(
            oack.options().contains(&("tsize".into(), tsize)),
            "{name}: {:?}, body of {} bytes",
            oack.options(),
            body.len()
        );
    }
}

/// A GRUB config's render is awaited before its OACK (GRUB needs `tsize`); meanwhile the
/// same TFTP socket answers other clients (async-tftp patch 12: no lock around the open).
/// The only render worker is stopped with SIGSTOP, so the render waits until continued.
#[test]
fn a_grub_render_in_progress_does_not_hold_up_other_tftp_clients() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nthreads = 1\n[render]\nworkers = 1\nbudget_ms = 120000\n".into(),
        ..Options::default()
    });
    let kernel = pattern_file(&s.tftp_root().join("kernel"), 5000);
    // A worker starts with its first job: the node's iPXE script (another template).
    assert_eq!(s.get("/ipxe/7c:fe:90:29:26:52").0, 200);
    let workers = s.render_workers();
    assert_eq!(workers.len(), 1, "one render worker: {workers:?}");
    signal_pid(workers[0], "STOP");

    let grub = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let name = "grub.cfg-01-7c-fe-90-29-26-52";
    grub.send_to(&rrq(name.as_bytes(), &[("tsize", "0")]), s.tftp)
        .expect("send");
    let other = s.tftp_get("kernel", &[]);
    let early = recv(&grub, Duration::from_millis(1));
    signal_pid(workers[0], "CONT");
    assert_eq!(
        other.expect("a static file while a GRUB render waits"),
        kernel
    );
    assert!(
        early.is_none(),
        "GRUB was answered while its render was stopped"
    );
    let oack = recv(&grub, Duration::from_secs(30)).expect("OACK once the render ran");
    assert_eq!(oack.op, OP_OACK, "{name}");
    assert!(
        oack.options().iter().any(|(k, v)| k == "tsize" && v != "0"),
        "{:?}",
        oack.options()
    );
    grub.send_to(&error_packet(0, "size known"), oack.from)
        .expect("send error");
}

/// Header names go out in their canonical case: GRUB 2.06's HTTP client matches
/// `Content-Length: ` byte for byte and, without it, waits for the server to close (~34 s
/// a file). Every kind of response, from the boot and the admin server, read raw.
#[test]
fn http_header_names_are_in_canonical_case_on_the_wire() {
    use common::http_client::{Conn, Opts};
    let s = Ironpxe::start();
    pattern_file(&s.tftp_root().join("kernel"), 5000);
    let admin = s.admin.expect("admin server");
    let requests: [(std::net::SocketAddr, &str, &str); 8] = [
        (s.http, "GET /grub.cfg", "200"),
        (s.http, "GET /boot.ipxe", "200"),
        (s.http, "GET /kernel", "200"),
        (s.http, "HEAD /kernel", "200"),
        (s.http, "GET /kernel\r\nRange: bytes=10-19", "206"),
        (s.http, "GET /grub.cfg-01-52-54-00-99-99-99", "404"),
        (s.http, "GET /healthz", "200"),
        (admin, "GET /api/v1/nodes", "200"),
    ];
    for (dst, req, status) in requests {
        let mut conn = Conn::open(dst, &Opts::default()).expect("connect");
        let (line, extra) = req.split_once("\r\n").unwrap_or((req, ""));
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("{extra}\r\n")
        };
        let raw = format!("{line} HTTP/1.1\r\nHost: {dst}\r\n{extra}Connection: close\r\n\r\n");
        conn.send(raw.as_bytes()).expect("send");
        let reply = conn.read_to_end().expect("read");
        let reply = String::from_utf8_lossy(&reply);
        let head = reply.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{req}: {head}"
        );
        assert!(head.contains("\r\nContent-Length: "), "{req}: {head}");
        for header in head.lines().skip(1) {
            let name = header.split(':').next().unwrap_or_default();
            let canonical = name.split('-').all(|w| {
                w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && w.chars().skip(1).all(|c| !c.is_ascii_uppercase())
            });
            assert!(
                canonical,
                "{req}: header {name:?} not in canonical case:\n{head}"
            );
        }
    }
}

/// Debian's boot loaders are served from the default extra roots without copying.
#[test]
fn extra_roots_serve_debian_boot_loaders() {
    let ldlinux = std::path::Path::new("/usr/lib/syslinux/modules/bios/ldlinux.c32");
    assert!(
        ldlinux.exists(),
        "install syslinux-common (bash .ci/run does)"
    );
    let s = Ironpxe::start();
    let got = s
        .tftp_get("ldlinux.c32", &["--tftp-blksize", "1408"])
        .expect("ldlinux.c32");
    assert!(
        got == fs::read(ldlinux).expect("read"),
        "ldlinux.c32 differs"
    );
    let got = s.tftp_get("/pxelinux.0", &[]).expect("pxelinux.0");
    assert!(got == fs::read("/usr/lib/PXELINUX/pxelinux.0").expect("read"));
}

/// A client that vanishes mid-transfer frees its session after the retransmissions.
#[test]
fn a_vanished_client_frees_its_session() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 100\nmax_retries = 3\n".into(),
        ..Options::default()
    });
    pattern_file(&s.tftp_root().join("big"), 1 << 20);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(&rrq(b"big", &[]), s.tftp).expect("send");
    let first = recv(&sock, Duration::from_secs(5)).expect("data");
    assert_eq!(first.op, OP_DATA);
    s.wait_until("the session to show", || {
        s.metric("ironpxe_tftp_sessions_active") == 1.0
    });
    drop(sock); // vanish without ACK
    s.wait_until("the session to be freed", || {
        s.metric("ironpxe_tftp_sessions_active") == 0.0
    });
}

/// Each listen address answers from itself: replies never leave from another address.
#[test]
fn each_listen_address_replies_from_itself() {
    let s = Ironpxe::start_with(Options {
        tftp_listen: vec!["127.0.0.2:0".into(), "127.0.0.3:0".into()],
        ..Options::default()
    });
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let port = s.log().lines().find_map(|l| {
            let rest = l.split("TFTP listening").nth(1)?;
            let addr = rest.split("local=").nth(1)?.split_whitespace().next()?;
            addr.starts_with(ip).then(|| addr.to_owned())
        });
        let addr: std::net::SocketAddr = port.expect("listen line").parse().expect("addr");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.send_to(&rrq(b"pxelinux.cfg/default", &[]), addr)
            .expect("send");
        let p = recv(&sock, Duration::from_secs(5)).expect("answer");
        assert_eq!(p.op, OP_DATA);
        assert_eq!(p.from.ip().to_string(), ip, "reply source address");
    }
}

/// SIGHUP re-reads the config's boot settings; a broken config keeps the running one.
#[test]
fn sighup_reloads_boot_settings_and_survives_a_broken_config() {
    let s = Ironpxe::start();
    let before = text(
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .expect("config"),
    );
    assert!(!before.contains("ipa-debug=1"));
    let config = s.work.path().join("ironpxe.toml");
    let original = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        format!("{original}\n[boot]\nextra_append_params = \"ipa-debug=1\"\n"),
    )
    .expect("write");
    s.signal("HUP");
    s.wait_until("the new boot settings", || {
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .map(|c| text(c).contains("ipa-debug=1"))
            .unwrap_or(false)
    });
    fs::write(&config, "this is [not toml").expect("write");
    s.signal("HUP");
    s.wait_until("the reload error in the log", || {
        s.log().contains("config reload failed")
    });
    let after = text(
        s.tftp_get("pxelinux.cfg/20-7c-fe-90-29-26-52", &[])
            .expect("still serving"),
    );
    assert!(
        after.contains("ipa-debug=1"),
        "running config kept: {after}"
    );
}

/// `[dhcp] hostsdir`: one dnsmasq host file per node, kept in step with the state.
#[test]
fn serve_keeps_a_dnsmasq_hostsdir_in_step_with_the_state() {
    let work = tempfile::tempdir().expect("tempdir");
    let hosts = work.path().join("hosts");
    let s = Ironpxe::start_with(Options {
        toml: format!(
            "[dhcp]\nhostsdir = {:?}\nnext_server = \"192.0.2.7\"\n",
            hosts
        ),
        ..Options::default()
    });
    let file = hosts.join(format!("ironpxe-{IB_NODE}"));
    s.wait_until("host files written", || file.exists());
    let body = fs::read_to_string(&file).expect("read");
    assert!(
        body.contains(
            "id:ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52,7c:fe:90:29:26:52"
        ),
        "{body}"
    );
    assert!(hosts.join(format!("ironpxe-{DUAL_NODE}")).exists());
    fs::remove_file(s.state.path().join("ib-node-1.json")).expect("remove");
    s.wait_until("the node's host file removed", || !file.exists());
}

/// `threads` listening sockets share the TFTP port (`SO_REUSEPORT`), clients spread over them
/// are all served, and a second ironpxe cannot join the port and take a share of the clients.
#[test]
fn tftp_sockets_share_the_port_and_a_second_server_is_refused() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nthreads = 3\n".into(),
        ..Options::default()
    });
    let local = format!("0100007F:{:04X}", s.tftp.port());
    let sockets = fs::read_to_string("/proc/net/udp")
        .expect("/proc/net/udp")
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .count();
    assert_eq!(sockets, 3, "listening sockets on {}", s.tftp);

    let server = s.tftp;
    let clients: Vec<_> = (0..60)
        .map(|i| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind(format!("127.0.3.{}:0", 1 + i)).expect("bind");
                let opts = ClientOpts::one_try();
                tftp::get(&sock, server, "pxelinux.cfg/default", &opts)
                    .result
                    .map(|b| b.len())
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let got = c.join().expect("client thread");
        assert!(matches!(got, Ok(n) if n > 0), "client {i}: {got:?}");
    }

    let config = fs::read_to_string(s.work.path().join("ironpxe.toml")).expect("config");
    let taken = format!("tftp_listen = [\"{}\"]", s.tftp);
    let second = s.work.path().join("second.toml");
    fs::write(
        &second,
        config.replace("tftp_listen = [\"127.0.0.1:0\"]", &taken),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(["serve", "--config"])
        .arg(&second)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second ironpxe");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let out = child.wait_with_output().expect("second ironpxe output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!running, "a second server shares the TFTP port: {err}");
    assert!(!out.status.success(), "a second server started: {err}");
    assert!(
        err.contains("TFTP listen") && err.contains("in use"),
        "unclear error: {err}"
    );
}

/// The README's first command, `ironpxe serve` from the repository root with no config: the
/// shipped example (examples/state, templates/, tftp-root/) on its unprivileged loopback
/// ports. It logs no WARN or ERROR, and a PXELINUX client following the example gets the
/// kernel and initrd its config names: the placeholders in tftp-root/ipa/, fetched by the
/// image cache from ironpxe's own HTTP server.
#[test]
fn the_readme_first_run_is_clean_and_a_pxelinux_client_gets_its_kernel() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Instant;

    /// Kills the server however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // A private temporary directory: the default image cache is `$TMPDIR/ironpxe-images`.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .arg("serve")
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ironpxe");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Killed(child);
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ironpxe serving") {
                let _ = tx.send(());
            }
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    let all = || log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "ironpxe did not start (ports 6969, 8080, 8081 free?):\n{}",
                all()
            )
        });
    let serving = Instant::now();

    let server = "127.0.0.1:6969".parse().expect("example TFTP address");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let one_try = ClientOpts::one_try();
    let cfg = tftp::get(&sock, server, "pxelinux.cfg/20-7c-fe-90-29-26-52", &one_try)
        .result
        .unwrap_or_else(|e| panic!("pxelinux config: {e}\n{}", all()));
    let (kernel, initrd) = pxelinux_images(&text(cfg));
    assert!(
        kernel.starts_with("images/") && kernel.ends_with("/ipa.kernel"),
        "{kernel}"
    );
    for (name, placeholder) in [(kernel, "ipa.kernel"), (initrd, "ipa.initramfs")] {
        let got = tftp::get(&sock, server, &name, &one_try)
            .result
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", all()));
        let want = fs::read(root().join("tftp-root/ipa").join(placeholder)).expect("placeholder");
        assert_eq!(got, want, "{name}");
        assert!(text(got).starts_with("placeholder: put the IPA"), "{name}");
    }

    std::thread::sleep(Duration::from_secs(3).saturating_sub(serving.elapsed()));
    let log = all();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect();
    assert!(
        loud.is_empty(),
        "a first run logs:\n{}\n\nfull log:\n{log}",
        loud.join("\n")
    );
    assert!(log.contains("image cached"), "{log}");
}

/// A test process that is stopped and continued (a paused CI container, a debugger) gets
/// EINTR from every socket read with a timeout, handler or not (signal(7)). The shared
/// clients must keep waiting, not report an I/O error: CI once failed on exactly that.
#[test]
fn a_client_stopped_and_continued_keeps_waiting_for_its_answer() {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let answer = std::thread::spawn(move || {
        let (_, client) = server.recv_from(&mut [0u8; 600]).expect("RRQ");
        std::thread::sleep(Duration::from_millis(900));
        let mut data = vec![0, OP_DATA as u8, 0, 1];
        data.extend_from_slice(b"after the pause");
        server.send_to(&data, client).expect("DATA");
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = server.recv_from(&mut [0u8; 600]); // the ACK, if the client is still there
    });
    // Stops this whole process 0.3 s into the wait, for 0.2 s.
    let pid = std::process::id();
    let mut pauser = Command::new("sh")
        .args([
            "-c",
            &format!("sleep 0.3; kill -STOP {pid}; sleep 0.2; kill -CONT {pid}"),
        ])
        .spawn()
        .expect("sh");

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let got = tftp::get(&sock, addr, "pause", &ClientOpts::one_try()).result;
    let _ = pauser.wait();
    answer.join().expect("answering thread");
    assert_eq!(
        got.expect("a stop and continue is not an error"),
        b"after the pause"
    );
}
