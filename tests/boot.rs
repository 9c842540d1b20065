//! Boot proof: real QEMU guests (software emulation) network-boot through ironpxe — iPXE over
//! HTTP, PXELINUX over TFTP, UEFI PXE and HTTP Boot, GRUB (shim, distro prefix, HTTP), IPv6
//! only — and an InfiniBand client replayed step by step.
//!
//! The guest is Debian's kernel with a busybox initramfs whose `/init` prints a marker line
//! with `/proc/cmdline` and powers off. Tests that need a network namespace need root.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::guest::{self, Netns, HOST_IP, HOST_IP6, HOST_LL6, MARKER};
use common::{Ironpxe, Options};

const QEMU_TIMEOUT: Duration = Duration::from_secs(240);
const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const MAC: &str = "52:54:00:12:34:56";
/// The guest's SMBIOS UUID; byte 6 (0x35) is within 0x10–0xEF, so PXELINUX asks for it.
const SMBIOS_UUID: &str = "4c4c4544-0051-3510-8051-b2c04f4e4d32";
/// The same UUID as iPXE's PXE stack reports it: first three fields byte-swapped.
const SMBIOS_UUID_SWAPPED: &str = "44454c4c-5100-1035-8051-b2c04f4e4d32";

/// Kernel parameters every guest gets from the config, asserted in its command line.
const BOOT_TOML: &str =
    "[boot]\nkernel_append_params = \"console=ttyS0\"\nextra_append_params = \"ironpxe.test=1\"\n\
                         infiniband_append_params = \"ironpxe.ib=1\"\n";

/// `BOOT_TOML` plus the `[images]` section allowing the guest's file images: the kernel
/// under target/qemu, the initramfs in a temporary directory.
fn boot_toml() -> String {
    let kernel_dir = common::root().join("target/qemu"); // .ci/guest-kernel's directory
    format!(
        "{BOOT_TOML}[images]\nfile_url_allowed_paths = [{:?}, {:?}]\n",
        kernel_dir,
        std::env::temp_dir()
    )
}

struct Images {
    dir: tempfile::TempDir,
    kernel: std::path::PathBuf,
    initrd: std::path::PathBuf,
}

fn images() -> Images {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = guest::kernel();
    let initrd = guest::initramfs(dir.path());
    Images {
        dir,
        kernel,
        initrd,
    }
}

fn node(img: &Images, state: &str, extra: &str) -> (String, String) {
    let json = guest::node_json(NODE, "qemu-1", state, MAC, &img.kernel, &img.initrd, extra);
    ("qemu-1.json".into(), json)
}

/// ironpxe on loopback for QEMU user networking: the guest reaches the host as 10.0.2.2.
fn start_user_net(state: Vec<(String, String)>) -> Ironpxe {
    Ironpxe::start_with(Options {
        toml: format!("{}[http]\nhost_aliases = [\"10.0.2.2\"]\n", boot_toml()),
        state,
        ..Options::default()
    })
}

fn user_net_args(s: &Ironpxe, mac: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!(
            "user,id=n0,bootfile=http://10.0.2.2:{}/boot.ipxe",
            s.http.port()
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={mac}"),
    ]
}

fn tap_args(mac: &str, nic: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
        "-device".into(),
        format!("{nic},netdev=n0,mac={mac}"),
    ]
}

/// ironpxe inside the namespace, TFTP on port 69 of the tap address.
fn start_in_netns(ns: &Netns, state: Vec<(String, String)>) -> Ironpxe {
    Ironpxe::start_with(Options {
        toml: boot_toml(),
        state,
        tftp_listen: vec![format!("{HOST_IP}:69")],
        http_listen: format!("{HOST_IP}:8080"),
        netns: Some(ns.name.clone()),
    })
}

/// A BIOS guest with an e1000 NIC (`mac`) that dnsmasq in `ns` points at `pxelinux.0` on
/// ironpxe's TFTP (plus `dhcp_extra` options), with `qemu_extra` arguments; its serial log.
fn boot_pxelinux(
    ns: &mut Netns,
    img: &Images,
    mac: &str,
    dhcp_extra: &[&str],
    qemu_extra: &[&str],
) -> guest::Serial {
    let boot = format!("--dhcp-boot=pxelinux.0,,{HOST_IP}");
    let dhcp: Vec<&str> = [boot.as_str()]
        .into_iter()
        .chain(dhcp_extra.iter().copied())
        .collect();
    ns.dnsmasq(img.dir.path(), &dhcp);
    let mut args = tap_args(mac, "e1000");
    args.extend(qemu_extra.iter().map(|a| a.to_string()));
    guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join("serial.log"),
        None,
        QEMU_TIMEOUT,
    )
}

fn assert_booted(serial: &guest::Serial, bootif: &str) -> String {
    let line = serial
        .marker_line()
        .unwrap_or_else(|| panic!("no marker; serial log:\n{}", serial.log))
        .to_owned();
    println!("serial: {line}");
    for want in [
        format!("BOOTIF={bootif}"),
        "ipa-api-url=http://127.0.0.1:6385".into(),
        "ironpxe.test=1".into(),
        "console=ttyS0".into(),
    ] {
        assert!(line.contains(&want), "{want} missing from: {line}");
    }
    line
}

/// Prints the serial lines containing any of `keys` (the README's proof excerpts).
fn print_lines(serial: &guest::Serial, keys: &[&str]) {
    for l in serial
        .log
        .lines()
        .filter(|l| keys.iter().any(|k| l.contains(k)))
    {
        println!("serial: {}", l.trim());
    }
}

/// TFTP names ironpxe was asked for, in order, from its log.
fn tftp_names(s: &Ironpxe) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("tftp request"))
        .filter_map(|l| {
            l.split("name=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn ipxe_over_http_boots_the_deploy_ramdisk() {
    let img = images();
    let s = start_user_net(vec![node(&img, "deploying", "")]);
    let serial = guest::run_qemu(
        None,
        &user_net_args(&s, MAC),
        &img.dir.path().join("serial.log"),
        None,
        QEMU_TIMEOUT,
    );
    assert!(serial.exited, "guest did not power off:\n{}", serial.log);
    assert_booted(&serial, "01-52-54-00-12-34-56");
    let log = s.log();
    for path in ["/boot.ipxe", "/ipxe/52-54-00-12-34-56"] {
        assert!(
            log.contains(&format!("path={path} status=200")),
            "{path} not served:\n{log}"
        );
    }
}

/// The node goes from deploying to active while ironpxe runs; the same guest boots again and
/// now leaves network boot for the local disk.
#[test]
fn a_live_state_change_switches_the_guest_to_local_boot() {
    let img = images();
    let s = start_user_net(vec![node(&img, "deploying", "")]);
    let args = user_net_args(&s, MAC);
    let first = guest::run_qemu(
        None,
        &args,
        &img.dir.path().join("serial1.log"),
        None,
        QEMU_TIMEOUT,
    );
    assert_booted(&first, "01-52-54-00-12-34-56");

    let path = s.state.path().join("qemu-1.json");
    let active = fs::read_to_string(&path)
        .expect("read")
        .replace("\"deploying\"", "\"active\"");
    fs::write(&path, active).expect("write");
    s.wait_until("the state change", || {
        s.get("/ipxe/52:54:00:12:34:56").1.contains("exit 0")
    });

    let second = guest::run_qemu(
        None,
        &args,
        &img.dir.path().join("serial2.log"),
        Some("No bootable device"),
        QEMU_TIMEOUT,
    );
    print_lines(
        &second,
        &["ironpxe", "Booting from Hard Disk", "No bootable device"],
    );
    assert!(
        second.marker_line().is_none(),
        "no ramdisk now:\n{}",
        second.log
    );
    assert!(
        second
            .log
            .contains("ironpxe: provision state active: local"),
        "{}",
        second.log
    );
    assert!(
        second.log.contains("Booting from Hard Disk"),
        "falls through to local disk:\n{}",
        second.log
    );
}

#[test]
fn an_unknown_machine_gets_the_unknown_machine_action_only() {
    let img = images();
    let s = start_user_net(vec![node(&img, "deploying", "")]);
    let serial = guest::run_qemu(
        None,
        &user_net_args(&s, "52:54:00:00:99:99"),
        &img.dir.path().join("serial.log"),
        Some("No bootable device"),
        QEMU_TIMEOUT,
    );
    print_lines(&serial, &["ironpxe", "No bootable device"]);
    assert!(serial.marker_line().is_none(), "{}", serial.log);
    assert!(
        serial.log.contains("no node matches: local boot"),
        "{}",
        serial.log
    );
    let log = s.log();
    assert!(
        log.contains("path=/ipxe/52-54-00-00-99-99 status=404"),
        "{log}"
    );
    assert!(log.contains("path=/ipxe/unknown status=200"), "{log}");
    assert!(
        !log.contains("path=/images/"),
        "no image for an unknown machine:\n{log}"
    );
}

/// Real PXELINUX 6.04 walks its lookup sequence against ironpxe over TFTP and boots the
/// kernel from the image cache over TFTP, as it must on real hardware.
#[test]
fn pxelinux_over_tftp_walks_the_sequence_and_boots() {
    guest::require_root("the PXELINUX boot test");
    let img = images();
    let mut ns = Netns::new("pxe");
    let s = start_in_netns(&ns, vec![node(&img, "deploying", "")]);
    let serial = boot_pxelinux(&mut ns, &img, MAC, &[], &["-uuid", SMBIOS_UUID]);
    assert!(
        serial.exited,
        "guest did not power off:\n{}\nironpxe:\n{}",
        serial.log,
        s.log()
    );
    assert_booted(&serial, "01-52-54-00-12-34-56");

    let names = tftp_names(&s);
    println!("tftp names asked: {names:?}");
    let configs: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("pxelinux.cfg/"))
        .collect();
    // iPXE's PXE stack hands PXELINUX the SMBIOS UUID byte-swapped; no node claims it.
    assert_eq!(
        configs,
        [
            &format!("pxelinux.cfg/{SMBIOS_UUID_SWAPPED}"),
            &"pxelinux.cfg/01-52-54-00-12-34-56".to_owned()
        ],
        "all names: {names:?}"
    );
    let images: Vec<&String> = names.iter().filter(|n| n.starts_with("images/")).collect();
    assert_eq!(images.len(), 2, "kernel and initrd over TFTP: {names:?}");
    assert!(!s.log().contains("path=/images/"), "nothing over HTTP");
}

/// The node's SMBIOS UUID in `extra.system_uuid` matches the byte-swapped name PXELINUX asks.
#[test]
fn pxelinux_uuid_name_matches_the_byte_swapped_smbios_uuid() {
    guest::require_root("the PXELINUX UUID test");
    let img = images();
    let mut ns = Netns::new("uuid");
    let extra = format!("\"system_uuid\": \"{SMBIOS_UUID}\"");
    let s = start_in_netns(&ns, vec![node(&img, "clean wait", &extra)]);
    let serial = boot_pxelinux(&mut ns, &img, MAC, &[], &["-uuid", SMBIOS_UUID]);
    assert!(serial.exited, "{}", serial.log);
    let line = serial
        .marker_line()
        .unwrap_or_else(|| panic!("no marker:\n{}", serial.log));
    assert!(line.contains("ipa-api-url="), "{line}");
    let configs: Vec<String> = tftp_names(&s)
        .into_iter()
        .filter(|n| n.starts_with("pxelinux.cfg/"))
        .collect();
    assert_eq!(
        configs,
        [format!("pxelinux.cfg/{SMBIOS_UUID_SWAPPED}")],
        "the uuid name hits first"
    );
}

/// UEFI: OVMF fetches iPXE's snponly.efi over TFTP, iPXE fetches boot.ipxe over HTTP, and the
/// kernel boots through its EFI stub.
#[test]
fn uefi_ovmf_chains_ipxe_and_boots() {
    guest::require_root("the UEFI boot test");
    assert!(
        Path::new("/usr/lib/ipxe/snponly.efi").exists(),
        "install ipxe (bash .ci/run does)"
    );
    let img = images();
    let mut ns = Netns::new("uefi");
    let s = start_in_netns(&ns, vec![node(&img, "deploying", "")]);
    ns.dnsmasq(
        img.dir.path(),
        &[
            "--dhcp-match=set:efi,option:client-arch,7",
            "--dhcp-match=set:efi,option:client-arch,9",
            "--dhcp-userclass=set:ipxe,iPXE",
            &format!("--dhcp-boot=tag:efi,tag:!ipxe,snponly.efi,,{HOST_IP}"),
            &format!("--dhcp-boot=tag:ipxe,http://{HOST_IP}:8080/boot.ipxe"),
        ],
    );
    let mut args = ovmf_pflash(&img, "pxe");
    // romfile= : OVMF's own virtio driver does PXE, as on a UEFI server.
    args.extend(tap_args(MAC, "virtio-net-pci,romfile="));
    let serial = guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join("serial.log"),
        None,
        QEMU_TIMEOUT,
    );
    assert!(serial.exited, "{}\nironpxe:\n{}", serial.log, s.log());
    assert_booted(&serial, "01-52-54-00-12-34-56");
    let log = s.log();
    assert!(tftp_names(&s).contains(&"snponly.efi".to_owned()), "{log}");
    assert!(
        log.contains("path=/boot.ipxe status=200")
            && log.contains("path=/ipxe/52-54-00-12-34-56 status=200"),
        "{log}"
    );
}

/// A real PXELINUX parses and boots an InfiniBand node's `20-` config, named to it by DHCP
/// option 209 (QEMU has no InfiniBand adapter to make PXELINUX ask for it by itself).
#[test]
fn pxelinux_boots_an_infiniband_nodes_config() {
    guest::require_root("the InfiniBand PXELINUX test");
    let img = images();
    let mut ns = Netns::new("ib");
    let ib = format!(
        r#"{{"uuid": "d962231e-c2c4-415e-a7f1-1b765be00bda", "name": "ib-1", "provision_state": "wait call-back",
            "boot_interface": "pxe",
            "driver_info": {{"deploy_kernel": "file://{}", "deploy_ramdisk": "file://{}"}},
            "ports": [{{"address": "7c:fe:90:29:26:52",
                        "extra": {{"client-id": "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"}}}}]}}"#,
        img.kernel.display(),
        img.initrd.display()
    );
    let s = start_in_netns(&ns, vec![("ib.json".into(), ib)]);
    let serial = boot_pxelinux(
        &mut ns,
        &img,
        "52:54:00:12:34:99",
        &["--dhcp-option-force=209,pxelinux.cfg/20-7c-fe-90-29-26-52"],
        &[],
    );
    assert!(serial.exited, "{}\nironpxe:\n{}", serial.log, s.log());
    let line = serial
        .marker_line()
        .unwrap_or_else(|| panic!("no marker:\n{}", serial.log));
    println!("serial: {line}");
    assert!(line.contains("BOOTIF=20-7c-fe-90-29-26-52"), "{line}");
    assert!(
        line.contains("ironpxe.ib=1"),
        "InfiniBand-only parameters: {line}"
    );
    assert!(tftp_names(&s).contains(&"pxelinux.cfg/20-7c-fe-90-29-26-52".to_owned()));
    let _ = MARKER;
}

/// What an IPoIB client asks, replayed step by step (QEMU has no InfiniBand adapter): each
/// walk stops at its first hit, and every step gets what a real client would.
#[test]
fn infiniband_client_replay() {
    use ironpxe::model::addr::{pxelinux_lookup_sequence, Guid, IbHwAddr, PxeHwAddr, SystemUuid};
    let s = Ironpxe::start();
    let guid = Guid::parse("7c:fe:90:03:00:29:26:52").expect("guid");
    let ib_mac = guid.ib_mac();
    let uuid = SystemUuid::parse("11111111-2222-4333-8444-555555555555").expect("uuid");
    let ip = Some("192.0.2.55".parse().expect("ip"));
    // Walks like PXELINUX: the first name that exists is used, nothing after it is asked.
    let walk = |hw: PxeHwAddr| -> Vec<(String, Option<String>)> {
        let mut steps = Vec::new();
        for name in pxelinux_lookup_sequence(Some(uuid), hw, ip) {
            let got = s.tftp_get(&format!("pxelinux.cfg/{name}"), &[]).ok();
            let hit = got.map(|b| String::from_utf8_lossy(&b).into_owned());
            let done = hit.is_some();
            steps.push((name.to_string(), hit));
            if done {
                break;
            }
        }
        steps
    };
    // Firmware reporting ARP type 32.
    let fw = walk(PxeHwAddr::Infiniband(IbHwAddr::Mac(ib_mac)));
    assert_eq!(fw.len(), 2, "{fw:?}");
    assert_eq!(fw[0], ("11111111-2222-4333-8444-555555555555".into(), None));
    assert_eq!(fw[1].0, "20-7c-fe-90-29-26-52");
    let cfg = fw[1].1.as_deref().unwrap_or_default();
    assert!(
        cfg.contains("ib-node-1") && cfg.contains("BOOTIF=20-7c-fe-90-29-26-52"),
        "{cfg}"
    );
    // Upstream-iPXE firmware presents IPoIB as Ethernet with the IB MAC.
    let ipxe_fw = walk(PxeHwAddr::Ethernet(ib_mac));
    assert_eq!(ipxe_fw[1].0, "01-7c-fe-90-29-26-52");
    let cfg = ipxe_fw[1].1.as_deref().unwrap_or_default();
    assert!(
        cfg.contains("ib-node-1") && cfg.contains("BOOTIF=01-7c-fe-90-29-26-52"),
        "{cfg}"
    );
    // An IB port nobody enrolled walks everything and ends at default.
    let stranger = Guid::parse("7c:fe:90:03:00:99:99:99")
        .expect("guid")
        .ib_mac();
    let lost = walk(PxeHwAddr::Infiniband(IbHwAddr::Mac(stranger)));
    assert_eq!(
        lost.len(),
        11,
        "uuid, hw, 8 hex-IP prefixes, default: {lost:?}"
    );
    assert!(lost[..10].iter().all(|(_, hit)| hit.is_none()));
    assert_eq!(lost[10].0, "default");
    assert!(lost[10]
        .1
        .as_deref()
        .unwrap_or_default()
        .contains("unknown machine"));

    // The iPXE side over HTTP.
    let (code, entry) = s.get("/boot.ipxe");
    assert!(
        code == 200 && entry.contains("/ipxe/${net${netid}/mac:hexhyp}"),
        "{entry}"
    );
    for path in [
        "/pxelinux.cfg/7c-fe-90-29-26-52",
        "/ipxe/7c-fe-90-29-26-52",
        "/ipxe/7c:fe:90:29:26:52",
        "/ipxe/7c:fe:90:03:00:29:26:52",
        "/ipxe/a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52",
    ] {
        let (code, body) = s.get(path);
        assert_eq!(code, 200, "{path}");
        assert!(
            body.starts_with("#!ipxe") && body.contains("ib-node-1"),
            "{path}: {body}"
        );
        assert!(
            body.contains("BOOTIF=20-7c-fe-90-29-26-52"),
            "{path}: {body}"
        );
    }
    assert_eq!(s.get("/ipxe/7c:fe:90:03:00:99:99:99").0, 404);
}

/// OVMF's pflash pair: Debian's code and a private copy of its variable store (one per `tag`,
/// so guests of one test never share boot variables).
fn ovmf_pflash(img: &Images, tag: &str) -> Vec<String> {
    let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    let vars_template = Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd");
    assert!(
        code.exists() && vars_template.exists(),
        "install ovmf (bash .ci/run does)"
    );
    let vars = img.dir.path().join(format!("OVMF_VARS-{tag}.fd"));
    fs::copy(vars_template, &vars).expect("copy vars");
    vec![
        "-drive".to_owned(),
        format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
        "-drive".into(),
        format!("if=pflash,format=raw,file={}", vars.display()),
    ]
}

/// UEFI HTTP Boot, fed by the dnsmasq configuration `ironpxe dhcp` generates (nothing
/// hand-written): OVMF's HttpBootDxe asks with vendor class `HTTPClient:Arch:00016`, gets
/// option 60 and `http://…/snponly.efi`, fetches iPXE from ironpxe's HTTP server, and iPXE
/// chains `boot.ipxe` and the node's script into the deploy ramdisk. OVMF tries PXE before
/// HTTP Boot on each NIC; its fw_cfg switches turn PXE off so only HTTP Boot remains.
#[test]
fn uefi_http_boot_from_the_generated_dnsmasq_config() {
    guest::require_root("the UEFI HTTP Boot test");
    let loader = Path::new("/usr/lib/ipxe/snponly.efi");
    assert!(loader.exists(), "install ipxe (bash .ci/run does)");
    let img = images();
    let mut ns = Netns::new("httpboot");
    let s = start_in_netns(&ns, vec![node(&img, "deploying", "")]);
    // The loader is served from ironpxe's HTTP root (the TFTP root by default).
    fs::copy(loader, s.tftp_root().join("snponly.efi")).expect("copy snponly.efi");

    let http_url = format!("http://{HOST_IP}:8080");
    let conf_args = generated_dnsmasq(&s, img.dir.path(), &[]);
    let conf_text = fs::read_to_string(img.dir.path().join("ironpxe-dnsmasq.conf")).expect("conf");
    let http_line = format!("dhcp-boot=tag:!ironpxe-ipxe,tag:ironpxe-http,{http_url}/snponly.efi");
    assert!(
        conf_text.lines().any(|l| l == http_line),
        "{http_line} missing:\n{conf_text}"
    );
    let conf_args: Vec<&str> = conf_args.iter().map(String::as_str).collect();
    let dnsmasq_log = ns.dnsmasq(img.dir.path(), &conf_args);

    let mut args = ovmf_pflash(&img, "main");
    for knob in ["IPv4PXESupport", "IPv6PXESupport"] {
        args.push("-fw_cfg".into());
        args.push(format!("name=opt/org.tianocore/{knob},string=n"));
    }
    // romfile= : OVMF's own virtio driver and HTTP Boot, no iPXE option ROM.
    args.extend(tap_args(MAC, "virtio-net-pci,romfile="));
    let serial = guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join("serial.log"),
        None,
        QEMU_TIMEOUT,
    );
    let dhcp_log = fs::read_to_string(&dnsmasq_log).unwrap_or_default();
    assert!(
        serial.exited,
        "{}\nironpxe:\n{}\ndnsmasq:\n{dhcp_log}",
        serial.log,
        s.log()
    );
    print_lines(&serial, &["HTTP Boot", "iPXE initialising", "ironpxe"]);
    assert_booted(&serial, "01-52-54-00-12-34-56");

    // dnsmasq recognised the HTTP Boot client and answered from the generated lines.
    assert!(
        dhcp_log.contains("vendor class: HTTPClient:Arch:00016"),
        "{dhcp_log}"
    );
    // The HTTP Boot exchange (its transaction id, from the line with its tags): option 60
    // back, the absolute URL as boot file, no TFTP server option.
    let xid = dhcp_log
        .lines()
        .find(|l| l.contains("tags:") && l.contains("ironpxe-http"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no ironpxe-http tag:\n{dhcp_log}"));
    let exchange: Vec<&str> = dhcp_log
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(xid))
        .collect();
    for l in &exchange {
        println!("dnsmasq: {}", l.trim());
    }
    let sent = |what: &str| {
        exchange
            .iter()
            .any(|l| l.contains("sent") && l.contains(what))
    };
    assert!(
        sent(&format!("option: 67 bootfile-name  {http_url}/snponly.efi")),
        "{exchange:#?}"
    );
    // dnsmasq logs option 60 as hex: "HTTPClient".
    let http_client = "48:54:54:50:43:6c:69:65:6e:74";
    assert!(
        sent(&format!("option: 60 vendor-class  {http_client}")),
        "{exchange:#?}"
    );
    for opt in ["option: 66 ", "option:150 "] {
        assert!(!sent(opt), "{opt}: {exchange:#?}");
    }
    // iPXE then came back as iPXE and got boot.ipxe.
    assert!(
        dhcp_log.contains(&format!("option: 67 bootfile-name  {http_url}/boot.ipxe")),
        "{dhcp_log}"
    );
    let log = s.log();
    for path in ["/snponly.efi", "/boot.ipxe", "/ipxe/52-54-00-12-34-56"] {
        assert!(
            log.contains(&format!("path={path} status=200")),
            "{path} not served over HTTP:\n{log}"
        );
    }
    assert!(
        tftp_names(&s).is_empty(),
        "HTTP Boot uses no TFTP: {:?}",
        tftp_names(&s)
    );
}

/// IPv6 only (no DHCPv4 anywhere): dnsmasq sends router advertisements and leases stateful
/// DHCPv6 addresses with option 59 (bootfile-url). One namespace, one ironpxe — TFTP on the
/// link-local `[fe80::1%tap0]:69` (an interface-name zone), HTTP on the wildcard `[::]:8080`
/// — and two guests in turn:
/// 1. SeaBIOS with virtio-net's iPXE ROM: DHCPv6 → `http://[fd00:1b::1]:8080/boot.ipxe`;
/// 2. OVMF's own PXEv6 (PXEv4 switched off in its fw_cfg): DHCPv6 →
///    `tftp://[fe80::1]/snponly.efi` from the link-local listener, then iPXE as in 1.
///
/// Both boot the deploy ramdisk, and every URL in the scripts names the address the client
/// reached, bracketed — never `[::]`.
#[test]
fn ipv6_only_bios_ipxe_and_ovmf_pxev6_boot_with_link_local_tftp() {
    guest::require_root("the IPv6 boot test");
    assert!(
        Path::new("/usr/lib/ipxe/snponly.efi").exists(),
        "install ipxe (bash .ci/run does)"
    );
    let img = images();
    let mut ns = Netns::new("v6");
    ns.add_ipv6();
    let s = Ironpxe::start_with(Options {
        toml: boot_toml(),
        state: vec![node(&img, "deploying", "")],
        tftp_listen: vec![format!("[{HOST_LL6}%tap0]:69")],
        http_listen: "[::]:8080".into(),
        netns: Some(ns.name.clone()),
    });
    let SocketAddr::V6(tftp) = s.tftp else {
        panic!("TFTP on IPv6: {}", s.tftp)
    };
    assert!(
        tftp.scope_id() != 0 && tftp.ip().to_string() == HOST_LL6,
        "the zone became tap0's scope id: {tftp}"
    );
    // ironpxe's own DHCPv6 config for this link: RA + a stateful range (OVMF's PXEv6 needs
    // an address), option 59 = the iPXE entry URL for iPXE, the link-local TFTP URL otherwise.
    let conf = generated_dnsmasq(
        &s,
        img.dir.path(),
        &[
            "--next-server6",
            HOST_LL6,
            "--http-url6",
            &format!("http://[{HOST_IP6}]:8080"),
            "--ipv6-range",
            "fd00:1b::10,fd00:1b::100,64",
        ],
    );
    let written = fs::read_to_string(img.dir.path().join("ironpxe-dnsmasq.conf")).expect("conf");
    for want in [
        "enable-ra".to_owned(),
        format!("option6:bootfile-url,http://[{HOST_IP6}]:8080/boot.ipxe"),
        format!("option6:bootfile-url,tftp://[{HOST_LL6}]/snponly.efi"),
    ] {
        assert!(written.contains(&want), "{want} in:\n{written}");
    }
    assert!(
        !written
            .lines()
            .any(|l| l.starts_with("dhcp-range=") && !l.contains(':')),
        "no DHCPv4 range:\n{written}"
    );
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    ns.dnsmasq_own_ranges(img.dir.path(), &conf);

    // 1. BIOS iPXE.
    let bios = guest::run_qemu(
        Some(&ns.name),
        &tap_args(MAC, "virtio-net-pci"),
        &img.dir.path().join("serial-bios.log"),
        None,
        QEMU_TIMEOUT,
    );
    assert!(bios.exited, "{}\nironpxe:\n{}", bios.log, s.log());
    print_lines(&bios, &["http://["]);
    assert_booted(&bios, "01-52-54-00-12-34-56");

    // 2. OVMF PXEv6 → snponly.efi over link-local TFTP → iPXE.
    let mut args = ovmf_pflash(&img, "pxev6");
    args.push("-fw_cfg".into());
    args.push("name=opt/org.tianocore/IPv4PXESupport,string=n".into());
    args.extend(tap_args(MAC, "virtio-net-pci,romfile="));
    let uefi = guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join("serial-uefi.log"),
        None,
        QEMU_TIMEOUT,
    );
    assert!(uefi.exited, "{}\nironpxe:\n{}", uefi.log, s.log());
    print_lines(&uefi, &["PXE", "http://["]);
    assert_booted(&uefi, "01-52-54-00-12-34-56");

    let log = s.log();
    let lines = |what: &str| -> Vec<&str> { log.lines().filter(|l| l.contains(what)).collect() };
    // ironpxe's only TFTP listener is the link-local one: OVMF reached it (from its leased
    // ULA address) and got the whole file from a transfer socket bound with the zone.
    let size = fs::metadata("/usr/lib/ipxe/snponly.efi")
        .expect("snponly.efi")
        .len();
    let snponly = lines("name=snponly.efi");
    println!("ironpxe: {}", snponly.join("\nironpxe: "));
    assert!(
        snponly
            .iter()
            .any(|l| l.contains("tftp transfer ended") && l.contains(&format!("bytes={size} "))),
        "snponly.efi sent whole over link-local TFTP:\n{log}"
    );
    let entry = lines("path=/boot.ipxe status=200");
    println!("ironpxe: {}", entry.join("\nironpxe: "));
    assert_eq!(
        entry.len(),
        2,
        "both guests' iPXE fetched boot.ipxe:\n{log}"
    );
    assert!(
        entry.iter().all(|l| l.contains("client=[fd00:1b::")),
        "over the ULA address:\n{log}"
    );
    for serial in [&bios, &uefi] {
        assert!(
            serial.log.contains(&format!("http://[{HOST_IP6}]:8080/")),
            "iPXE fetched by the bracketed address:\n{}",
            serial.log
        );
        assert!(!serial.log.contains("[::]"), "{}", serial.log);
    }
}

/// `ironpxe dhcp --format dnsmasq` for `s`'s state (with `more` flags), written to
/// `dir/ironpxe-dnsmasq.conf`: dnsmasq's arguments.
fn generated_dnsmasq(s: &Ironpxe, dir: &Path, more: &[&str]) -> Vec<String> {
    let state = s.state.path().to_str().expect("utf-8 path");
    let http_url = format!("http://{HOST_IP}:8080");
    let mut args = vec![
        "dhcp",
        "--format",
        "dnsmasq",
        "--state-dir",
        state,
        "--next-server",
        HOST_IP,
        "--http-url",
        &http_url,
    ];
    args.extend_from_slice(more);
    let out = common::ironpxe_cli(&args);
    assert!(
        out.status.success(),
        "ironpxe dhcp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = dir.join("ironpxe-dnsmasq.conf");
    fs::write(&conf, &out.stdout).expect("write dnsmasq conf");
    vec![format!("--conf-file={}", conf.display())]
}

/// An active node's UEFI guest: OVMF with the NIC first (bootindex 1; IPv6 off, so its
/// entries are PXEv4 then HTTPv4) and [`guest::local_disk`] second; ironpxe in a namespace
/// with `loaders` (name, source) in its TFTP/HTTP root, dnsmasq with the arguments `dhcp`
/// returns. Stops early if OVMF opens its boot manager menu (UiApp). Asserts the disk booted,
/// after the boot script printed `said_local`; returns the serial log and ironpxe.
fn uefi_local_boot(
    tag: &str,
    said_local: &str,
    loaders: &[(&str, &str)],
    dhcp: impl FnOnce(&Ironpxe, &Path) -> Vec<String>,
) -> (guest::Serial, Ironpxe) {
    guest::require_root("the UEFI local-boot tests");
    let img = images();
    let disk = guest::local_disk(img.dir.path());
    let mut ns = Netns::new(tag);
    let s = start_in_netns(&ns, vec![node(&img, "active", "")]);
    for (name, from) in loaders {
        assert!(
            Path::new(from).exists(),
            "{from} is missing: install ipxe, shim-signed and grub-efi-amd64-signed (bash .ci/run does)"
        );
        fs::copy(from, s.tftp_root().join(name)).expect("copy loader");
    }
    let dhcp_args = dhcp(&s, img.dir.path());
    let dhcp_args: Vec<&str> = dhcp_args.iter().map(String::as_str).collect();
    ns.dnsmasq(img.dir.path(), &dhcp_args);
    let mut args = ovmf_pflash(&img, "main");
    args.extend([
        // IPv4 only, as on a fleet provisioned over IPv4 (each IPv6 entry would wait out a
        // DHCPv6 timeout here).
        "-fw_cfg".into(),
        "name=opt/org.tianocore/IPv6Support,string=no".into(),
        "-drive".into(),
        format!("if=none,id=disk0,format=raw,file={}", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=disk0,bootindex=2".into(),
    ]);
    // romfile= : OVMF's own virtio driver does PXE and HTTP Boot, as on a UEFI server.
    args.extend(tap_args(MAC, "virtio-net-pci,romfile=,bootindex=1"));
    let serial = guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join("serial.log"),
        Some("UiApp"),
        QEMU_TIMEOUT,
    );
    // The README's excerpt: each line from its first key on (iPXE's progress shares lines).
    for l in serial.log.lines() {
        let keys = ["BdsDxe: ", "ironpxe: ", guest::LOCAL_DISK_MARKER];
        if let Some(at) = keys.iter().filter_map(|k| l.find(k)).min() {
            let line: String = l[at..].chars().take(100).collect();
            println!("serial: {line}");
        }
    }
    let log = &serial.log;
    assert!(
        !log.contains("UiApp"),
        "the firmware opened its boot manager menu instead of the next boot entry:\n{log}\nironpxe:\n{}",
        s.log()
    );
    let disk_at = log
        .find(guest::LOCAL_DISK_MARKER)
        .unwrap_or_else(|| panic!("the disk never booted:\n{log}\nironpxe:\n{}", s.log()));
    assert!(serial.exited, "the disk's loader powers off:\n{log}");
    assert!(
        serial.marker_line().is_none(),
        "no ramdisk for an active node"
    );
    assert!(
        log[..disk_at].contains(said_local),
        "the disk booted before ironpxe's {said_local:?}:\n{log}"
    );
    (serial, s)
}

/// Local boot on UEFI through iPXE, DHCP from `ironpxe dhcp`'s own dnsmasq config: each
/// network entry (PXEv4 → snponly.efi over TFTP, HTTPv4 → snponly.efi over HTTP) ends in
/// ironpxe's "leaving network boot" and a failure status, so the firmware goes on to its next
/// boot entry until the disk boots — not to its boot manager menu, where a success status
/// (iPXE's `exit 0`) puts OVMF: UEFI spec 2.10, 3.1.1.
#[test]
fn uefi_local_boot_continues_to_the_next_boot_entry() {
    let (serial, s) = uefi_local_boot(
        "lboot",
        "ironpxe: provision state active: local",
        &[("snponly.efi", "/usr/lib/ipxe/snponly.efi")],
        |s, d| generated_dnsmasq(s, d, &[]),
    );
    let log = &serial.log;
    let leaving = "ironpxe: leaving network boot so the firmware boots the next device";
    for entry in ["\"UEFI PXEv4", "\"UEFI HTTPv4"] {
        assert!(
            log.lines()
                .any(|l| l.contains("BdsDxe: failed to start") && l.contains(entry)),
            "{entry} did not end as a failed boot option:\n{log}"
        );
    }
    assert_eq!(
        log.matches(leaving).count(),
        2,
        "once per network entry:\n{log}"
    );
    let ironpxe_log = s.log();
    for want in [
        "path=/snponly.efi status=200",
        "path=/boot.ipxe status=200",
        "path=/ipxe/52-54-00-12-34-56 status=200",
    ] {
        assert!(ironpxe_log.contains(want), "{want}:\n{ironpxe_log}");
    }
    assert!(
        tftp_names(&s).contains(&"snponly.efi".to_owned()),
        "{ironpxe_log}"
    );
}

/// Local boot on UEFI through Ironic's default path, Debian's signed shim and GRUB over TFTP:
/// GRUB's `exit` would hand OVMF success (its menu), so the node's GRUB config starts the
/// disk's removable-media loader itself.
#[test]
fn uefi_grub_local_boot_starts_the_disks_loader() {
    let (serial, s) = uefi_local_boot(
        "lgrub",
        "ironpxe: starting /EFI/BOOT/BOOTX64.EFI from a local disk",
        &[
            ("shimx64.efi", "/usr/lib/shim/shimx64.efi.signed"),
            (
                "grubx64.efi",
                "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
            ),
        ],
        |_, _| {
            vec![
                "--dhcp-match=set:efi,option:client-arch,7".into(),
                format!("--dhcp-boot=tag:efi,shimx64.efi,,{HOST_IP}"),
            ]
        },
    );
    assert!(
        !serial
            .log
            .contains("Failed to boot both default and fallback entries"),
        "GRUB found no local entry (an empty config?):\n{}",
        serial.log
    );
    let names = tftp_names(&s);
    println!("tftp names asked: {names:?}");
    for want in ["shimx64.efi", "grubx64.efi", "52:54:00:12:34:56.conf"] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} not asked: {names:?}\n{}",
            s.log()
        );
    }
}

/// Guests of the GRUB boots, one per path, each its own node.
const SHIM_MAC: &str = "52:54:00:12:34:56";
const CENTOS_MAC: &str = "52:54:00:12:34:57";
const HTTP_MAC: &str = "52:54:00:12:34:58";
/// The address dnsmasq pins for the `/EFI/centos` guest: GRUB asks `grub.cfg-C000026F`.
const CENTOS_IP: &str = "192.0.2.111";

/// A file a Debian package ships, or a failure naming the package.
fn packaged(path: &str, package: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    assert!(
        p.exists(),
        "{path} missing: install {package} (bash .ci/run does)"
    );
    p.to_owned()
}

/// An unsigned x86_64-efi GRUB with `prefix` built in and the network modules (TFTP and HTTP).
fn grub_mkimage(out: &Path, prefix: &str) {
    common::require("grub-mkimage", "grub-common");
    let modules = packaged("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin");
    let status = std::process::Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-d"])
        .arg(&modules)
        .args(["-p", prefix, "-o"])
        .arg(out)
        .args([
            "normal",
            "configfile",
            "linux",
            "echo",
            "test",
            "net",
            "efinet",
            "tftp",
            "http",
        ])
        .status()
        .expect("run grub-mkimage");
    assert!(status.success(), "grub-mkimage -p {prefix} failed");
}

/// `(name, outcome)` of every TFTP request in ironpxe's log, names without a leading `/`.
fn tftp_outcomes(s: &Ironpxe) -> Vec<(String, String)> {
    s.log()
        .lines()
        .filter(|l| l.contains("tftp request"))
        .filter_map(|l| {
            let name = l.split("name=\"").nth(1)?.split('"').next()?;
            let outcome = l.split("outcome=").nth(1)?.split(' ').next()?;
            Some((name.trim_start_matches('/').to_owned(), outcome.to_owned()))
        })
        .collect()
}

/// `path status` of every HTTP request in ironpxe's log.
fn http_requests(s: &Ironpxe) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("http request"))
        .filter_map(|l| Some(format!("path={}", l.split("path=").nth(1)?)))
        .collect()
}

/// An OVMF guest (Secure Boot off: no keys enrolled) that PXE-boots from `mac` through its
/// own virtio driver; 512 MiB, as GRUB loading the kernel runs out of memory in 256.
fn boot_ovmf(ns: &Netns, img: &Images, tag: &str, mac: &str) -> guest::Serial {
    let mut args = vec!["-m".to_owned(), "512".into()];
    args.extend(ovmf_pflash(img, tag));
    args.extend(tap_args(mac, "virtio-net-pci,romfile="));
    guest::run_qemu(
        Some(&ns.name),
        &args,
        &img.dir.path().join(format!("serial-{tag}.log")),
        None,
        QEMU_TIMEOUT,
    )
}

/// GRUB three ways, sharing one namespace, dnsmasq and ironpxe (HTTP on port 80, the port
/// GRUB's `(http,<host>)` device speaks to), each guest booting its own node's deploy ramdisk:
///
/// 1. Ironic's default UEFI path: PXE → Debian's signed shim → signed `grubnetx64.efi`
///    (`/grub` built in) → `grub/grub.cfg` → `/<mac>.conf` → kernel and initrd over TFTP.
/// 2. GRUB built with `-p /EFI/centos`: it walks `EFI/centos/grub.cfg-01-<mac>` (a miss: the
///    node is enrolled under another port MAC) to the hex-IP name of its pinned address,
///    which the port's `extra.fixed_ip` names.
/// 3. GRUB with an `(http,…)` prefix reads `grub.cfg`, `<mac>.conf`, kernel and initrd over
///    HTTP — which GRUB 2.06 only does when header names are in canonical case.
#[test]
fn grub_boots_via_shim_under_a_distro_prefix_and_over_http() {
    guest::require_root("the GRUB boot tests");
    let shim = packaged("/usr/lib/shim/shimx64.efi.signed", "shim-signed");
    let signed_grub = packaged(
        "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
        "grub-efi-amd64-signed",
    );
    let img = images();
    let node = |uuid: &str, name: &str, mac: &str, port_extra: &str| {
        let json = format!(
            r#"{{"uuid": "{uuid}", "name": "{name}", "provision_state": "deploying", "boot_interface": "pxe",
                "driver_info": {{"deploy_kernel": "file://{}", "deploy_ramdisk": "file://{}"}},
                "ports": [{{"address": "{mac}", "extra": {{{port_extra}}}}}]}}"#,
            img.kernel.display(),
            img.initrd.display()
        );
        (format!("{name}.json"), json)
    };
    let fixed_ip = format!("\"fixed_ip\": \"{CENTOS_IP}\"");
    let state = vec![
        node("1be26c0b-03f2-4d2e-ae87-c02d7f33c101", "shim", SHIM_MAC, ""),
        node(
            "1be26c0b-03f2-4d2e-ae87-c02d7f33c102",
            "centos",
            "52:54:00:12:34:59",
            &fixed_ip,
        ),
        node("1be26c0b-03f2-4d2e-ae87-c02d7f33c103", "http", HTTP_MAC, ""),
    ];
    let mut ns = Netns::new("grub");
    let s = Ironpxe::start_with(Options {
        toml: boot_toml(),
        state,
        tftp_listen: vec![format!("{HOST_IP}:69")],
        http_listen: format!("{HOST_IP}:80"),
        netns: Some(ns.name.clone()),
    });
    let root = s.tftp_root();
    fs::copy(shim, root.join("shimx64.efi")).expect("copy shim");
    fs::copy(signed_grub, root.join("grubx64.efi")).expect("copy signed grub"); // shim's next stage
    grub_mkimage(&root.join("grub-centos.efi"), "/EFI/centos");
    grub_mkimage(
        &root.join("grub-http.efi"),
        &format!("(http,{HOST_IP})/EFI/http"),
    );
    let hosts = [
        format!("--dhcp-host={SHIM_MAC},set:shim"),
        format!("--dhcp-host={CENTOS_MAC},{CENTOS_IP},set:centos"),
        format!("--dhcp-host={HTTP_MAC},set:http"),
        format!("--dhcp-boot=tag:shim,shimx64.efi,,{HOST_IP}"),
        format!("--dhcp-boot=tag:centos,grub-centos.efi,,{HOST_IP}"),
        format!("--dhcp-boot=tag:http,grub-http.efi,,{HOST_IP}"),
    ];
    ns.dnsmasq(
        img.dir.path(),
        &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let names_of = |asked: &[(String, String)]| -> Vec<String> {
        asked.iter().map(|(n, _)| n.clone()).collect()
    };

    // 1. shim → signed GRUB over TFTP.
    let serial = boot_ovmf(&ns, &img, "shim", SHIM_MAC);
    assert!(serial.exited, "{}\nironpxe:\n{}", serial.log, s.log());
    assert_booted(&serial, "01-52-54-00-12-34-56");
    let asked = tftp_outcomes(&s);
    let names = names_of(&asked);
    println!("shim: tftp names asked: {names:?}");
    let at = |name: &str| names.iter().position(|n| n == name);
    let order = [
        at("shimx64.efi"),
        at("grubx64.efi"),
        at("grub/grub.cfg"),
        at("52:54:00:12:34:56.conf"),
    ];
    assert!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "shim, GRUB, the master, <mac>.conf in that order: {names:?}"
    );
    let images = names.iter().filter(|n| n.starts_with("images/")).count();
    assert_eq!(images, 2, "kernel and initrd over TFTP: {names:?}");
    let seen = asked.len();

    // 2. GRUB with a distro prefix walks its names under it.
    let serial = boot_ovmf(&ns, &img, "centos", CENTOS_MAC);
    assert!(serial.exited, "{}\nironpxe:\n{}", serial.log, s.log());
    assert_booted(&serial, "01-52-54-00-12-34-59");
    let asked = tftp_outcomes(&s).split_off(seen);
    println!("centos: tftp names asked: {:?}", names_of(&asked));
    let configs: Vec<(String, String)> = asked
        .iter()
        .filter(|(n, _)| n.contains("grub.cfg"))
        .cloned()
        .collect();
    let pair = |n: &str, o: &str| (n.to_owned(), o.to_owned());
    assert_eq!(
        configs.first(),
        Some(&pair(
            "EFI/centos/grub.cfg-01-52-54-00-12-34-57",
            "NotFound"
        )),
        "the MAC name first, under the prefix: {configs:?}"
    );
    assert!(
        configs[1..]
            .iter()
            .all(|c| *c == pair("EFI/centos/grub.cfg-C000026F", "Served")),
        "then the full hex IP, found by the port's fixed_ip; nothing shorter: {configs:?}"
    );
    assert!(configs.len() > 1, "{configs:?}");
    let seen = seen + asked.len();

    // 3. GRUB over HTTP.
    let http_before = http_requests(&s).len();
    let serial = boot_ovmf(&ns, &img, "http", HTTP_MAC);
    assert!(serial.exited, "{}\nironpxe:\n{}", serial.log, s.log());
    assert_booted(&serial, "01-52-54-00-12-34-58");
    let over_tftp = names_of(&tftp_outcomes(&s).split_off(seen));
    assert!(
        over_tftp.iter().all(|n| n == "grub-http.efi"),
        "only GRUB itself over TFTP: {over_tftp:?}"
    );
    let http = http_requests(&s).split_off(http_before);
    println!("http: requests: {http:?}");
    let served: Vec<&String> = http.iter().filter(|r| r.ends_with("status=200")).collect();
    let want = [
        "path=/EFI/http/grub.cfg status=200",
        "path=/52:54:00:12:34:58.conf status=200",
    ];
    assert_eq!(
        served[..2],
        want.map(String::from).iter().collect::<Vec<_>>()[..],
        "{http:?}"
    );
    assert_eq!(
        served.len(),
        4,
        "config, <mac>.conf, kernel, initrd: {http:?}"
    );
    assert!(
        served[2..].iter().all(|r| r.starts_with("path=/images/")),
        "{http:?}"
    );
}
