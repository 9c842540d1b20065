//! Image references and the image cache against a real `ironpxe serve`: node state cannot
//! make ironpxe read host files or fetch from internal services (`[images]
//! file_url_allowed_paths`, `allowed_urls`), a refused reference is the node's problem, and a
//! cached copy follows its source (Ironic's master-cache rule) also across restarts.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::http_client::{self, Conn};
use common::http_server::{HttpServer, Reply};
use common::{curl, pxelinux_images, root, Ironpxe, Options};
use serde_json::Value;

// ---- the upstream image server (common::http_server), whose files can change ----

/// The upstream's answer for an image: the body, with `Last-Modified` when given.
fn image(body: Vec<u8>, modified: Option<SystemTime>) -> Reply {
    Reply::ok(body).last_modified(modified)
}

// ---- helpers ----

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

/// A whole second in the past (`Last-Modified` has one-second resolution).
fn an_hour_ago() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - 3600)
}

/// A state file for one node in `clean wait` booting `kernel` and `ramdisk`.
fn node(uuid: &str, mac: &str, state: &str, kernel: &str, ramdisk: &str) -> String {
    format!(
        r#"{{"uuid": "{uuid}", "name": "n-{}", "provision_state": "{state}",
            "driver_info": {{"deploy_kernel": "{kernel}", "deploy_ramdisk": "{ramdisk}"}},
            "ports": [{{"address": "{mac}"}}]}}"#,
        &mac[mac.len() - 2..]
    )
}

/// The `images/<key>/<name>` paths of a node's kernel and initrd, from its PXELINUX config.
fn image_paths(s: &Ironpxe, mac: &str) -> (String, String) {
    let name = format!("pxelinux.cfg/01-{}", mac.replace(':', "-"));
    let cfg = String::from_utf8(s.tftp_get(&name, &[]).expect("config")).expect("text");
    let (kernel, initrd) = pxelinux_images(&cfg);
    (kernel, initrd)
}

/// GET over ironpxe's HTTP: status and body bytes.
fn http_get(s: &Ironpxe, path: &str) -> (u16, Vec<u8>) {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let o = curl(&[
        "-s",
        "--max-time",
        "30",
        "-o",
        out.path().to_str().expect("utf-8"),
        "-w",
        "%{http_code}",
        &s.url(&format!("/{path}")),
    ]);
    let code = String::from_utf8_lossy(&o.stdout).parse().unwrap_or(0);
    (code, fs::read(out.path()).unwrap_or_default())
}

/// The admin API's node problems: node UUID → message, for kind `image`.
fn image_problems(s: &Ironpxe) -> HashMap<String, String> {
    let url = format!("http://{}/api/v1/problems", s.admin.expect("admin"));
    let o = curl(&["-s", "--max-time", "10", &url]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    v["node_problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] == "image")
        .map(|p| {
            (
                p["node"].as_str().unwrap_or_default().to_owned(),
                p["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The image is not served over either protocol, and its bytes do not leak in an error.
fn refused_everywhere(s: &Ironpxe, path: &str, secret: &[u8]) {
    let tftp = s.tftp_get(path, &[]);
    assert!(
        tftp.is_err(),
        "{path} served over TFTP ({} bytes)",
        tftp.map(|b| b.len()).unwrap_or(0)
    );
    let (code, body) = http_get(s, path);
    assert_eq!(
        code,
        403,
        "{path} over HTTP: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        !body.windows(secret.len()).any(|w| w == secret),
        "{path}: the refusal leaks the file"
    );
}

const N1: &str = "11111111-0000-4000-8000-000000000001";
const N2: &str = "11111111-0000-4000-8000-000000000002";
const N3: &str = "11111111-0000-4000-8000-000000000003";

// ---- item 4: references ----

/// `file://` and path images are read only inside `file_url_allowed_paths`, resolved with
/// symlinks followed; `/etc` is refused whatever is allowed. Refused references are never
/// served over TFTP or HTTP, the nodes show the problem on `/healthz` and
/// `/api/v1/problems`, and a node's problem goes when its images are fine again.
#[test]
fn file_images_outside_the_allowed_paths_are_refused_and_shown_as_node_problems() {
    let host = tempfile::tempdir().expect("tempdir");
    let (allowed, outside) = (host.path().join("allowed"), host.path().join("outside"));
    fs::create_dir_all(&allowed).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    let secret = b"SECRET-ADMIN-TOKEN".to_vec();
    fs::write(outside.join("admin-token"), &secret).expect("write");
    std::os::unix::fs::symlink(outside.join("admin-token"), allowed.join("link")).expect("symlink");
    let kernel = pattern(200_000, 1);
    let initrd = pattern(3_000, 2);
    fs::write(allowed.join("ok.kernel"), &kernel).expect("write");
    fs::write(allowed.join("ok.initrd"), &initrd).expect("write");
    let p = |f: &Path| f.display().to_string();
    let (ok_k, ok_i) = (p(&allowed.join("ok.kernel")), p(&allowed.join("ok.initrd")));
    let (m1, m2, m3) = (
        "52:54:00:20:00:01",
        "52:54:00:20:00:02",
        "52:54:00:20:00:03",
    );
    let token_url = format!("file://{}", p(&outside.join("admin-token")));
    let n2_file = "n2.json";
    let s = Ironpxe::start_with(Options {
        state: vec![
            (
                "n1.json".into(),
                node(N1, m1, "clean wait", &token_url, "/etc/passwd"),
            ),
            (
                n2_file.into(),
                node(
                    N2,
                    m2,
                    "clean wait",
                    &p(&allowed.join("link")),
                    &format!("file://{ok_i}"),
                ),
            ),
            ("n3.json".into(), node(N3, m3, "clean wait", &ok_k, &ok_i)),
        ],
        toml: format!("[images]\nfile_url_allowed_paths = [{:?}]\n", allowed),
        ..Options::default()
    });

    let (k1, i1) = image_paths(&s, m1);
    let (k2, i2) = image_paths(&s, m2);
    refused_everywhere(&s, &k1, &secret);
    refused_everywhere(&s, &i1, b"root:");
    refused_everywhere(&s, &k2, &secret);
    assert_eq!(
        s.tftp_get(&i2, &[]).expect("allowed file over TFTP"),
        initrd
    );
    let (k3, _) = image_paths(&s, m3);
    assert_eq!(
        s.tftp_get(&k3, &[]).expect("allowed file over TFTP"),
        kernel
    );
    assert_eq!(
        http_get(&s, &k3),
        (200, kernel.clone()),
        "allowed file over HTTP"
    );

    let (_, health) = s.get("/healthz");
    let health: Value = serde_json::from_str(&health).expect("healthz json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["node_problems"], 2, "{health}");
    let problems = image_problems(&s);
    assert_eq!(problems.len(), 2, "{problems:?}");
    let n1 = &problems[N1];
    assert!(
        n1.contains("outside [images] file_url_allowed_paths") && n1.contains("never served"),
        "{n1}"
    );
    assert!(
        problems[N2].contains("admin-token"),
        "the link's target is named: {problems:?}"
    );

    fs::write(
        s.state.path().join(n2_file),
        node(N2, m2, "clean wait", &ok_k, &ok_i),
    )
    .expect("fix n2");
    s.wait_until("n2's problem to go", || {
        let p = image_problems(&s);
        p.len() == 1 && p.contains_key(N1)
    });
}

/// http(s) images are fetched only from allowed origins, never from loopback or link-local
/// addresses unless an IP entry names them — also when a listed name resolves to one. The
/// refused upstream never sees a request; an explicitly listed loopback server does.
#[test]
fn http_images_on_refused_origins_are_never_fetched() {
    let body = pattern(5_000, 3);
    let file = image(body.clone(), None);
    let refused = HttpServer::routes([("/vmlinuz", file.clone()), ("/initrd", file.clone())]);
    let listed = HttpServer::routes([("/vmlinuz", file.clone()), ("/initrd", file)]);
    let port = refused.base.rsplit(':').next().expect("port").to_owned();
    let (m1, m2, m3) = (
        "52:54:00:21:00:01",
        "52:54:00:21:00:02",
        "52:54:00:21:00:03",
    );
    let s = Ironpxe::start_with(Options {
        state: vec![
            (
                "n1.json".into(),
                node(
                    N1,
                    m1,
                    "clean wait",
                    &refused.url("/vmlinuz"),
                    &format!("http://localhost:{port}/initrd"),
                ),
            ),
            (
                "n2.json".into(),
                node(
                    N2,
                    m2,
                    "clean wait",
                    "http://169.254.169.254/latest/meta-data/vmlinuz",
                    &format!("http://[::1]:{port}/initrd"),
                ),
            ),
            (
                "n3.json".into(),
                node(
                    N3,
                    m3,
                    "clean wait",
                    &listed.url("/vmlinuz"),
                    &listed.url("/initrd"),
                ),
            ),
        ],
        toml: format!("[images]\nallowed_urls = [\"*\", \"{}/\"]\n", listed.base),
        ..Options::default()
    });
    let (k3, i3) = image_paths(&s, m3);
    assert_eq!(s.tftp_get(&k3, &[]).expect("listed loopback server"), body);
    assert_eq!(http_get(&s, &i3), (200, body.clone()));
    s.wait_until("both nodes' problems", || image_problems(&s).len() == 2);
    for mac in [m1, m2] {
        let (k, i) = image_paths(&s, mac);
        refused_everywhere(&s, &k, &body);
        refused_everywhere(&s, &i, &body);
    }
    let problems = image_problems(&s);
    assert!(problems[N1].contains("loopback"), "{problems:?}");
    assert!(
        problems[N1].contains("localhost"),
        "the name is refused by address: {problems:?}"
    );
    assert!(problems[N2].contains("link-local"), "{problems:?}");
    assert_eq!(refused.hits(), 0, "the refused server was contacted");
    assert_eq!(
        listed.count("GET /vmlinuz") + listed.count("GET /initrd"),
        2
    );
}

/// Every redirect target is checked like the first URL: an allowed server redirecting to a
/// refused one is not followed (the refused one sees nothing), one redirecting within its
/// origin is.
#[test]
fn a_redirect_to_a_refused_origin_is_not_followed() {
    let body = pattern(4_000, 4);
    let refused = HttpServer::routes([("/vmlinuz", image(body.clone(), None))]);
    let listed = HttpServer::routes([
        ("/vmlinuz", Reply::redirect(&refused.url("/vmlinuz"))),
        ("/initrd", Reply::redirect("/real-initrd")),
        ("/real-initrd", image(body.clone(), None)),
    ]);
    let m1 = "52:54:00:22:00:01";
    let s = Ironpxe::start_with(Options {
        state: vec![(
            "n1.json".into(),
            node(
                N1,
                m1,
                "clean wait",
                &listed.url("/vmlinuz"),
                &listed.url("/initrd"),
            ),
        )],
        // `*` too: a loopback target is refused by address, not only for being unlisted.
        toml: format!("[images]\nallowed_urls = [\"*\", \"{}/\"]\n", listed.base),
        ..Options::default()
    });
    let (k, i) = image_paths(&s, m1);
    assert_eq!(
        http_get(&s, &i),
        (200, body.clone()),
        "a same-origin redirect is followed"
    );
    refused_everywhere(&s, &k, &body);
    let problems = image_problems(&s);
    assert!(
        problems
            .get(N1)
            .is_some_and(|m| m.contains("redirect from") && m.contains("loopback")),
        "{problems:?}"
    );
    assert!(
        listed.count("GET /vmlinuz") >= 1,
        "the allowed server was asked"
    );
    assert_eq!(refused.hits(), 0, "the redirect was followed");
}

/// `ironpxe check` names every refused reference and fails.
#[test]
fn check_reports_refused_image_references() {
    let state = tempfile::tempdir().expect("tempdir");
    fs::write(
        state.path().join("n.json"),
        node(
            N1,
            "52:54:00:23:00:01",
            "clean wait",
            "/etc/shadow",
            "http://169.254.169.254/latest/meta-data/x",
        ),
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(["check", "--state-dir"])
        .arg(state.path())
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run ironpxe check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("2 problems"), "{out}");
    assert!(
        out.contains(&format!("node {N1}: image refused: /etc/shadow")),
        "{out}"
    );
    assert!(
        out.contains("169.254.169.254") && out.contains("link-local"),
        "{out}"
    );
}

// ---- item 5: revalidation ----

/// Writes a node's state file (atomically, so the watcher never sees half a file).
fn write_state(s: &Ironpxe, file: &str, body: &str) {
    let tmp = s.state.path().join(format!(".{file}.tmp"));
    fs::write(&tmp, body).expect("write");
    fs::rename(&tmp, s.state.path().join(file)).expect("rename");
}

/// A node re-entering a state that needs its images revalidates them (Ironic's rule): a
/// newer `Last-Modified` or none at all fetches the image again, an unchanged one does not;
/// the new copy replaces the old atomically, and a client that was mid-transfer finishes on
/// the old bytes.
#[test]
fn a_changed_image_is_fetched_again_when_a_node_reenters_and_transfers_in_flight_keep_the_old_bytes(
) {
    let t0 = an_hour_ago();
    let (v1, v2) = (pattern(16 << 20, 5), pattern(16 << 20, 6));
    let initrd = pattern(3_000, 7);
    let (nolm1, nolm2) = (pattern(2_000, 8), pattern(2_100, 9));
    let up = HttpServer::routes([
        ("/vmlinuz", image(v1.clone(), Some(t0))),
        ("/initrd", image(initrd.clone(), Some(t0))),
        ("/nolm", image(nolm1.clone(), None)),
    ]);
    let (m1, m2) = ("52:54:00:24:00:01", "52:54:00:24:00:02");
    let n1 = |state: &str| node(N1, m1, state, &up.url("/vmlinuz"), &up.url("/initrd"));
    let n2 = |state: &str| node(N2, m2, state, &up.url("/nolm"), &up.url("/initrd"));
    let s = Ironpxe::start_with(Options {
        state: vec![
            ("n1.json".into(), n1("clean wait")),
            ("n2.json".into(), n2("clean wait")),
        ],
        toml: format!(
            "[images]\nallowed_urls = [\"{}/\"]\nrevalidate_secs = 0\n",
            up.base
        ),
        ..Options::default()
    });
    let (k1, i1) = image_paths(&s, m1);
    let (k2, _) = image_paths(&s, m2);
    assert!(http_get(&s, &k1) == (200, v1.clone()), "first copy");
    assert_eq!(http_get(&s, &k2), (200, nolm1.clone()));
    assert_eq!(http_get(&s, &i1), (200, initrd.clone()));

    // A client that reads slowly: 64 KiB of the old kernel, then it stalls.
    let opts = http_client::Opts {
        recv_buffer: Some(16 << 10), // a small window
        ..http_client::Opts::default()
    };
    let mut slow = Conn::open(s.http, &opts).expect("connect");
    slow.send(
        format!("GET /{k1} HTTP/1.1\r\nHost: ironpxe\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let mut got = slow.read_bytes(64 << 10).expect("the first bytes");

    up.set(
        "/vmlinuz",
        image(v2.clone(), Some(t0 + Duration::from_secs(60))),
    );
    up.set("/nolm", image(nolm2.clone(), None));
    write_state(&s, "n1.json", &n1("available"));
    write_state(&s, "n2.json", &n2("available"));
    for mac in [m1, m2] {
        let cfg = format!("pxelinux.cfg/01-{}", mac.replace(':', "-"));
        s.wait_until("the nodes to boot locally", || {
            s.tftp_get(&cfg, &[])
                .is_ok_and(|c| !String::from_utf8_lossy(&c).contains("images/"))
        });
    }
    assert_eq!(
        up.count("HEAD /vmlinuz"),
        0,
        "leaving a state revalidates nothing"
    );
    write_state(&s, "n1.json", &n1("clean wait"));
    write_state(&s, "n2.json", &n2("clean wait"));
    s.wait_until("the changed images fetched again", || {
        up.count("GET /vmlinuz") == 2 && up.count("GET /nolm") == 2
    });
    assert!(up.count("HEAD /vmlinuz") >= 1 && up.count("HEAD /initrd") >= 1);

    assert!(
        http_get(&s, &k1) == (200, v2.clone()),
        "the new kernel over HTTP"
    );
    assert!(
        s.tftp_get(&k1, &["--tftp-blksize", "8192"])
            .expect("over TFTP")
            == v2,
        "the new kernel over TFTP"
    );
    assert_eq!(
        http_get(&s, &k2),
        (200, nolm2),
        "no Last-Modified: fetched again"
    );
    assert_eq!(http_get(&s, &i1), (200, initrd));
    assert_eq!(
        up.count("GET /initrd"),
        1,
        "an unchanged Last-Modified is not fetched again"
    );

    got.extend(slow.read_to_end().expect("the rest"));
    let body_at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    assert!(
        got[body_at..] == v1[..],
        "the client mid-transfer got {} bytes, not the old kernel",
        got.len() - body_at
    );
}

/// The copy's `Last-Modified` is kept as its mtime, so a restarted server revalidates what
/// it finds in the cache (at the default `revalidate_secs`): a changed image is fetched
/// again, an unchanged one is reused without a GET.
#[test]
fn a_restart_revalidates_the_cached_images() {
    let t0 = an_hour_ago();
    let (v1, v2, initrd) = (
        pattern(300_000, 10),
        pattern(300_000, 11),
        pattern(3_000, 12),
    );
    let up = HttpServer::routes([
        ("/vmlinuz", image(v1.clone(), Some(t0))),
        ("/initrd", image(initrd.clone(), Some(t0))),
    ]);
    let cache = tempfile::tempdir().expect("cache dir");
    let m1 = "52:54:00:25:00:01";
    let opts = || Options {
        state: vec![(
            "n1.json".into(),
            node(
                N1,
                m1,
                "clean wait",
                &up.url("/vmlinuz"),
                &up.url("/initrd"),
            ),
        )],
        toml: format!(
            "image_cache_dir = {:?}\n[images]\nallowed_urls = [\"{}/\"]\n",
            cache.path(),
            up.base
        ),
        ..Options::default()
    };
    let s = Ironpxe::start_with(opts());
    let (k, i) = image_paths(&s, m1);
    assert_eq!(http_get(&s, &k), (200, v1));
    assert_eq!(http_get(&s, &i), (200, initrd.clone()));
    drop(s);
    let key = k.split('/').nth(1).expect("key");
    let mtime = fs::metadata(cache.path().join(key))
        .and_then(|m| m.modified())
        .expect("cached copy");
    assert_eq!(mtime, t0, "the copy carries its Last-Modified");

    up.set(
        "/vmlinuz",
        image(v2.clone(), Some(t0 + Duration::from_secs(60))),
    );
    let s = Ironpxe::start_with(opts());
    assert_eq!(
        http_get(&s, &k),
        (200, v2),
        "the restarted server serves the new kernel"
    );
    assert_eq!(http_get(&s, &i), (200, initrd));
    assert_eq!(up.count("GET /vmlinuz"), 2);
    assert_eq!(up.count("GET /initrd"), 1, "the unchanged copy is reused");
    assert_eq!(up.count("HEAD /initrd"), 1, "and revalidated once");
}
