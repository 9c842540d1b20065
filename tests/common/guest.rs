//! Real QEMU guests for the boot tests: a Debian kernel, a busybox initramfs whose `/init`
//! prints one marker line with `/proc/cmdline` and powers off, network namespaces with a tap
//! device and dnsmasq. Everything started here is ended by PID on drop, also on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{require, root};

/// What the guest's `/init` prints, followed by the kernel command line.
pub const MARKER: &str = "IRONPXE-GUEST-UP cmdline:";

/// The Debian kernel, fetched once into `target/qemu/` by `.ci/guest-kernel`.
pub fn kernel() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join(".ci/guest-kernel"))
        .output()
        .expect("run .ci/guest-kernel");
    assert!(
        out.status.success(),
        "fetching the guest kernel failed (needs apt access; bash .ci/run does it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Builds the marker initramfs from the host's static busybox into `dir/initrd.gz`.
pub fn initramfs(dir: &Path) -> PathBuf {
    require("busybox", "busybox-static");
    let tree = dir.join("initramfs");
    for d in ["bin", "dev", "proc", "sys"] {
        fs::create_dir_all(tree.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("copy busybox (install busybox-static)");
    let init = format!(
        "#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs dev /dev\nexec >/dev/console 2>&1\n\
         /bin/busybox mount -t proc proc /proc\necho \"{MARKER} $(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n"
    );
    fs::write(tree.join("init"), init).expect("write init");
    let status = Command::new("sh")
        .arg("-c")
        .arg("chmod +x init && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz")
        .current_dir(&tree)
        .status()
        .expect("build initramfs");
    assert!(status.success(), "building the initramfs failed");
    dir.join("initrd.gz")
}

/// Fails unless running as root, which network namespaces and tap devices need.
pub fn require_root(what: &str) {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(uid, "0", "{what} needs root (network namespaces, tap devices): run as root, as bash .ci/run in CI does");
    require("ip", "iproute2");
    require("dnsmasq", "dnsmasq-base");
}

/// A network namespace with `tap0` at 192.0.2.1/24 for QEMU, deleted on drop.
pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

pub const HOST_IP: &str = "192.0.2.1";
/// The namespace's IPv6 addresses on `tap0` (after [`Netns::add_ipv6`]): a ULA one and a
/// link-local one.
pub const HOST_IP6: &str = "fd00:1b::1";
pub const HOST_LL6: &str = "fe80::1";

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("ipx-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ns = Netns {
            name: name.clone(),
            children: Vec::new(),
        };
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec!["-n", &name, "tuntap", "add", "tap0", "mode", "tap"],
            vec!["-n", &name, "addr", "add", "192.0.2.1/24", "dev", "tap0"],
            vec!["-n", &name, "link", "set", "tap0", "up"],
        ] {
            let ok = Command::new("ip")
                .args(&args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "ip {args:?} failed");
        }
        ns
    }

    /// Starts dnsmasq as DHCP server only (no DNS), with extra options; logs to `log`.
    pub fn dnsmasq(&mut self, dir: &Path, extra: &[&str]) -> PathBuf {
        let range = ["--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0"];
        self.spawn_dnsmasq(dir, &range, extra)
    }

    /// Adds IPv6 to `tap0`: [`HOST_IP6`]/64 and the link-local [`HOST_LL6`]/64, both without
    /// duplicate detection so they can be bound before QEMU brings the link up.
    pub fn add_ipv6(&self) {
        for addr in [format!("{HOST_IP6}/64"), format!("{HOST_LL6}/64")] {
            let ok = Command::new("ip")
                .args(["-n", &self.name, "-6", "addr", "add", &addr])
                .args(["dev", "tap0", "nodad"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "ip -6 addr add {addr} failed");
        }
    }

    /// dnsmasq with no range of its own: `extra` (e.g. `ironpxe dhcp`'s output with
    /// `--ipv6-range`) brings every `dhcp-range`, so an IPv6-only config serves no DHCPv4.
    pub fn dnsmasq_own_ranges(&mut self, dir: &Path, extra: &[&str]) -> PathBuf {
        self.spawn_dnsmasq(dir, &[], extra)
    }

    fn spawn_dnsmasq(&mut self, dir: &Path, ranges: &[&str], extra: &[&str]) -> PathBuf {
        let log = dir.join("dnsmasq.log");
        let out = fs::File::create(&log).expect("dnsmasq log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--interface=tap0",
            ])
            .args(["--bind-interfaces", "--log-dhcp"])
            .args(ranges)
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg("--conf-file=/dev/null")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dnsmasq (install dnsmasq-base)");
        self.children.push(child);
        log
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// How a guest run ended.
pub struct Serial {
    pub log: String,
    pub exited: bool,
}

impl Serial {
    pub fn marker_line(&self) -> Option<&str> {
        self.log.lines().find(|l| l.contains(MARKER))
    }
}

/// Runs QEMU (optionally inside a namespace) with its serial console in a file, until it
/// exits, `until` appears in the serial log, or `timeout` passes; QEMU is killed after.
pub fn run_qemu(
    netns: Option<&str>,
    args: &[String],
    serial: &Path,
    until: Option<&str>,
    timeout: Duration,
) -> Serial {
    require("qemu-system-x86_64", "qemu-system-x86 ipxe-qemu");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
            c
        }
        None => Command::new("qemu-system-x86_64"),
    };
    let mut child = cmd
        .args([
            "-m",
            "256",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-boot",
            "n",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn qemu");
    let deadline = Instant::now() + timeout;
    let read = || {
        fs::read(serial)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    };
    let exited = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break true;
        }
        if until.is_some_and(|u| read().contains(u)) || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Serial {
        log: read(),
        exited,
    }
}

/// A state file for one node with one port, booting `kernel`/`initrd` as deploy images.
pub fn node_json(
    uuid: &str,
    name: &str,
    state: &str,
    mac: &str,
    kernel: &Path,
    initrd: &Path,
    extra: &str,
) -> String {
    format!(
        r#"{{"uuid": "{uuid}", "name": "{name}", "provision_state": "{state}", "boot_interface": "ipxe",
            "driver_info": {{"deploy_kernel": "file://{}", "deploy_ramdisk": "file://{}"}},
            "extra": {{{extra}}},
            "ports": [{{"address": "{mac}"}}]}}"#,
        kernel.display(),
        initrd.display()
    )
}

/// What the local disk's bootloader prints (see [`local_disk`]).
pub const LOCAL_DISK_MARKER: &str = "IRONPXE-LOCAL-DISK-BOOTED";

/// A raw disk image `dir/disk.img` as an installed UEFI machine has it: an MBR with one EFI
/// System Partition whose removable-media loader `EFI/BOOT/BOOTX64.EFI` is a GRUB that prints
/// [`LOCAL_DISK_MARKER`] and powers off. Built without root or loop mounts (grub-mkimage,
/// mkfs.vfat, mtools), so the local-boot test can see the firmware reach this disk.
pub fn local_disk(dir: &Path) -> PathBuf {
    require("grub-mkimage", "grub-common grub-efi-amd64-bin");
    require("mkfs.vfat", "dosfstools");
    require("mcopy", "mtools");
    assert!(
        Path::new("/usr/lib/grub/x86_64-efi/normal.mod").exists(),
        "GRUB's x86_64-efi modules are missing: install grub-efi-amd64-bin (bash .ci/run does)"
    );
    let cfg = dir.join("local-disk-grub.cfg");
    fs::write(&cfg, format!("echo {LOCAL_DISK_MARKER}\nhalt\n")).expect("write grub cfg");
    let loader = dir.join("local-disk-bootx64.efi");
    let out = Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o"])
        .arg(&loader)
        .arg("-c")
        .arg(&cfg)
        .args(["echo", "halt"])
        .output()
        .expect("run grub-mkimage");
    assert!(
        out.status.success(),
        "grub-mkimage: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 1 MiB of MBR and gap, then a 16 MiB partition of type 0xEF (EFI System Partition).
    const START: u32 = 2048;
    const SECTORS: u32 = 16 * 2048;
    let disk = dir.join("disk.img");
    let mut mbr = vec![0u8; 512];
    let entry = &mut mbr[446..462];
    entry[4] = 0xef;
    entry[8..12].copy_from_slice(&START.to_le_bytes());
    entry[12..16].copy_from_slice(&SECTORS.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let file = fs::File::create(&disk).expect("create disk image");
    file.set_len(u64::from(START + SECTORS) * 512)
        .expect("size disk image");
    std::io::Write::write_all(&mut &file, &mbr).expect("write MBR");
    drop(file);

    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run disk tool");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("mkfs.vfat")
        .arg("--offset")
        .arg(START.to_string())
        .arg(&disk)
        .arg((SECTORS / 2).to_string()));
    let part = format!("{}@@{}", disk.display(), u64::from(START) * 512);
    run(Command::new("mmd").args(["-i", &part, "::/EFI", "::/EFI/BOOT"]));
    run(Command::new("mcopy")
        .args(["-i", &part])
        .arg(&loader)
        .arg("::/EFI/BOOT/BOOTX64.EFI"));
    disk
}
