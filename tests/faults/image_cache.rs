//! The image cache against an upstream that stalls, lies about lengths or fills the disk
//! (the tests' one small HTTP server, misbehaving on purpose).

use std::path::PathBuf;

use super::common::http_server::{HttpServer, Reply};
use super::*;

/// The `[images]` section allowing the test image server (a loopback address, refused
/// unless listed).
fn allow_image_server(srv: &HttpServer) -> String {
    format!("[images]\nallowed_urls = [\"{}/\"]\n", srv.base)
}

/// A node in `clean wait` whose deploy kernel and ramdisk come from `base`.
fn image_node(base: &str, mac: &str) -> Vec<(String, String)> {
    vec![(
        "img.json".into(),
        format!(
            r#"{{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "img", "provision_state": "clean wait",
                "driver_info": {{"deploy_kernel": "{base}/vmlinuz", "deploy_ramdisk": "{base}/initrd"}},
                "ports": [{{"address": "{mac}"}}]}}"#
        ),
    )]
}

/// The `images/<key>/<name>` paths of the node's kernel and initrd, from its PXELINUX config.
fn image_paths(s: &Ironpxe, mac: &str) -> (String, String) {
    let cfg = tftp_text(s, &format!("pxelinux.cfg/01-{}", mac.replace(':', "-"))).expect("config");
    let (kernel, initrd) = pxelinux_images(&cfg);
    assert!(
        kernel.starts_with("images/") && initrd.starts_with("images/"),
        "{cfg}"
    );
    (kernel, initrd)
}

fn key_of(path: &str) -> String {
    path.split('/')
        .nth(1)
        .expect("images/<key>/<name>")
        .to_owned()
}

/// The cache directory's entries: name and length.
fn cache_entries(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A whole TFTP transfer within 5 s.
fn quick() -> ClientOpts {
    ClientOpts {
        deadline: Duration::from_secs(5),
        ..ClientOpts::default()
    }
}

/// An image that must be refused at once, over both protocols.
fn image_refused(s: &Ironpxe, path: &str) {
    image_refused_over_tftp(s, path, &quick());
    image_refused_over_http(s, path, Duration::from_secs(5));
}

/// A TFTP fetch of an image that must fail with an ERROR (never data of the wrong length).
fn image_refused_over_tftp(s: &Ironpxe, path: &str, opts: &ClientOpts) {
    let f = tftp(s, lo(0, 0, 1), path, opts);
    assert!(
        matches!(f.result, Err(Failure::Error { .. })),
        "{path} over TFTP: expected an ERROR, got {:?} ({:?})",
        f.result.as_ref().map(Vec::len),
        f.stats
    );
}

/// An HTTP GET of an image that must fail (never a 200).
fn image_refused_over_http(s: &Ironpxe, path: &str, bound: Duration) {
    let mut c = Conn::connect(lo(0, 0, 1), s.http).expect("connect");
    let _ = c.stream.set_read_timeout(Some(bound));
    match c.get(&format!("/{path}")) {
        Ok(r) => assert!(
            r.status >= 500,
            "{path} over HTTP: expected an error status, got {} with {} bytes",
            r.status,
            r.body.len()
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("{path} over HTTP: no answer within {bound:?}")
        }
        Err(_) => {} // closed: not served
    }
}

/// An upstream that sends half the kernel and stalls: requests wait and then fail, nothing
/// partial is ever in the cache or served, and the failure is counted (with
/// `image_fetch_timeout_secs = 3`).
#[test]
fn a_stalled_image_fetch_serves_nothing_partial() {
    let kernel = (0..2_000_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>();
    let initrd = vec![7u8; 1000];
    let half = kernel.len() / 2;
    let srv = HttpServer::routes([
        ("/vmlinuz", Reply::ok(kernel).stall_after(half)),
        ("/initrd", Reply::ok(initrd.clone())),
    ]);
    let mac = "52:54:00:77:00:02";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_fetch_timeout_secs = 3\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let (kpath, ipath) = image_paths(&s, mac);
    let cache = s.work.path().join("images");
    let key = key_of(&kpath);
    let waiting = |over_tftp: bool| {
        let (path, tftp_addr, http) = (kpath.clone(), s.tftp, s.http);
        thread::spawn(move || -> Result<(), String> {
            if over_tftp {
                let opts = ClientOpts {
                    rto: Duration::from_secs(1),
                    max_timeouts: 60,
                    deadline: Duration::from_secs(60),
                    ..ClientOpts::default()
                };
                let f = tftp::get(&udp(lo(0, 0, 1)), tftp_addr, &path, &opts);
                match f.result {
                    Err(Failure::Error { .. }) => Ok(()),
                    other => Err(format!("TFTP: {:?}", other.map(|b| b.len()))),
                }
            } else {
                let mut c = Conn::connect(lo(0, 0, 1), http).map_err(|e| e.to_string())?;
                let _ = c.stream.set_read_timeout(Some(Duration::from_secs(60)));
                match c.get(&format!("/{path}")) {
                    Ok(r) if r.status >= 500 => Ok(()),
                    Ok(r) => Err(format!("HTTP {} with {} bytes", r.status, r.body.len())),
                    Err(e) => Err(format!("HTTP: {e}")),
                }
            }
        })
    };
    let (t, h) = (waiting(true), waiting(false));
    // While the fetch hangs, only its temporary file may exist.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for (name, _) in cache_entries(&cache) {
            assert!(name != key, "a partial kernel under its final name: {name}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    t.join()
        .expect("tftp waiter")
        .expect("TFTP request while stalled");
    h.join()
        .expect("http waiter")
        .expect("HTTP request while stalled");
    assert!(metric(&s, "ironpxe_image_fetch_errors_total") >= 1.0);
    let entries = cache_entries(&cache);
    assert!(
        entries
            .iter()
            .all(|(n, _)| *n != key && !n.starts_with('.')),
        "nothing partial left: {entries:?}"
    );
    // The failure is remembered for a while: refused at once, over both protocols.
    image_refused(&s, &kpath);
    let got = tftp(&s, lo(0, 0, 1), &ipath, &quick()).bytes("the initrd");
    assert!(got == initrd, "the other image is fine");
    drop(srv);
}

/// An upstream that sends more than it announced is refused and counted, and nothing is
/// served; so is one that announces nothing and sends more than the cache holds.
#[test]
fn an_image_longer_than_the_cache_is_refused_and_excess_bytes_are_not_cached() {
    let srv = HttpServer::routes([
        ("/vmlinuz", Reply::ok(vec![1u8; 150_000]).announce(100_000)),
        ("/initrd", Reply::ok(vec![2u8; 3 << 20]).no_length()),
    ]);
    let mac = "52:54:00:77:00:03";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_cache_mib = 2\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let (kpath, ipath) = image_paths(&s, mac);
    wait_for(&s, "both fetches to end", Duration::from_secs(20), || {
        metric(&s, "ironpxe_image_fetches_total") >= 2.0
    });
    let entries = cache_entries(&s.work.path().join("images"));
    let errors = metric(&s, "ironpxe_image_fetch_errors_total");
    // Longer than the cache, no length announced: refused by the cap.
    image_refused(&s, &ipath);
    // Longer than announced: by HTTP/1.1 framing (RFC 9112 §6.3) the response is the
    // announced 100 000 bytes; the HTTP stack discards the excess. What is cached and served
    // is exactly that response — never a prefix shorter than what the server announced.
    let served = tftp(&s, lo(0, 0, 1), &kpath, &quick()).result;
    let served = served.unwrap_or_else(|e| panic!("the announced image is served: {e:?}"));
    assert_eq!(served.len(), 100_000, "exactly the announced length");
    assert!(served.iter().all(|b| *b == 1));
    assert_eq!(
        errors, 1.0,
        "only the over-cap fetch failed; cache: {entries:?}"
    );
    assert_eq!(
        entries.len(),
        1,
        "only the complete kernel is cached: {entries:?}"
    );
    drop(srv);
}

/// Unmounts on drop (lazily if busy).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The image cache on a full disk (a 1 MiB tmpfs mounted over the cache directory after
/// ironpxe starts; both fetches wait for the test to open their gate): a 100 kB initrd is
/// cached, the 3 MB kernel fails cleanly, nothing partial is served or left, and the cache
/// stays within its 2 MiB cap.
#[test]
fn a_full_disk_fails_the_image_fetch_cleanly() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a tmpfs: run it as root"
    );
    let kernel = (0..3_000_000u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>();
    let initrd = (0..100_000u32)
        .map(|i| (i % 241) as u8)
        .collect::<Vec<u8>>();
    let srv = HttpServer::routes([
        ("/vmlinuz", Reply::ok(kernel).gated("vmlinuz")),
        ("/initrd", Reply::ok(initrd.clone()).gated("initrd")),
    ]);
    let mac = "52:54:00:77:00:04";
    let s = Ironpxe::start_with(Options {
        state: image_node(&srv.base, mac),
        toml: format!("image_cache_mib = 2\n{}", allow_image_server(&srv)),
        ..Options::default()
    });
    let cache = s.work.path().join("images");
    wait_for(
        &s,
        "both fetches to reach the server",
        Duration::from_secs(10),
        || srv.hits() >= 2,
    );
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&cache)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount -t tmpfs failed");
    let _mount = Mount(cache.clone());
    let (kpath, ipath) = image_paths(&s, mac);

    srv.open("initrd");
    wait_for(&s, "the initrd cached", Duration::from_secs(15), || {
        metric(&s, "ironpxe_image_fetches_total") >= 1.0
    });
    assert_eq!(metric(&s, "ironpxe_image_fetch_errors_total"), 0.0);
    srv.open("vmlinuz");
    wait_for(
        &s,
        "the kernel fetch to fail",
        Duration::from_secs(15),
        || metric(&s, "ironpxe_image_fetch_errors_total") >= 1.0,
    );
    assert!(
        s.log().contains("No space left on device"),
        "the failure was the full disk:\n{}",
        tail(&s.log(), 20)
    );
    image_refused(&s, &kpath);
    let got = tftp(&s, lo(0, 0, 1), &ipath, &quick()).bytes("the initrd");
    assert!(got == initrd, "the complete image is served");
    let entries = cache_entries(&cache);
    let (ikey, kkey) = (key_of(&ipath), key_of(&kpath));
    for (name, len) in &entries {
        assert!(
            *name == ikey && *len == initrd.len() as u64,
            "only complete files in the cache: {entries:?} (kernel key {kkey})"
        );
    }
    assert!(fs::read(cache.join(&ikey)).expect("cached initrd") == initrd);
    let bytes = metric(&s, "ironpxe_image_cache_bytes");
    assert!(
        bytes <= f64::from(2u32 << 20),
        "cache within its cap: {bytes}"
    );
    drop(srv);
}
