//! The operator's view driven by real clients: boot requests from tftp-hpa and curl, then
//! the admin JSON API (curl) and the status page (curl, headless Chromium).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const IB_NODE: &str = "d962231e-c2c4-415e-a7f1-1b765be00bda";
const IB_PORT: &str = "7c:fe:90:29:26:52";
/// What an ARP-type-32 PXELINUX asks for the IB port.
const IB_TFTP: &str = "pxelinux.cfg/20-7c-fe-90-29-26-52";
/// What iPXE asks for the IB port over HTTP.
const IB_IPXE: &str = "/ipxe/7c:fe:90:29:26:52";
/// The GUID's first six bytes enrolled or asked for as the IB MAC: a classic mistake.
const MISS: &str = "pxelinux.cfg/20-7c-fe-90-03-00-29";
const MISS_ADDR: &str = "7c:fe:90:03:00:29";
const XSS: &str = "<script>alert(1)</script>";
const XSS_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;&#x2F;script&gt;";
const IMG_PATH: &str = "/%3Cimg%20src=x%20onerror=alert(1)%3E";
const IMG_ESCAPED: &str = "&#x2F;&lt;img src=x onerror=alert(1)&gt;";
const XSS_NODE: &str = "0b0c0d0e-0000-4000-8000-000000000001";

/// One HTTP answer from curl.
struct Resp {
    status: u16,
    headers: String,
    body: String,
}

/// `curl`s a URL with `extra` arguments; headers are lower-cased.
fn fetch(url: &str, extra: &[&str]) -> Resp {
    let mut args = vec!["-s", "-D", "-", "--max-time", "15"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn admin_url(s: &Ironpxe, path: &str) -> String {
    format!("http://{}{path}", s.admin.expect("admin address"))
}

fn admin(s: &Ironpxe, path: &str) -> Resp {
    fetch(&admin_url(s, path), &[])
}

fn admin_json(s: &Ironpxe, path: &str) -> Value {
    let r = admin(s, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

/// Fetches over TFTP with tftp-hpa (bounded); `None` on a TFTP error.
fn tftp_hpa(s: &Ironpxe, name: &str) -> Option<Vec<u8>> {
    require("tftp", "tftp-hpa");
    let out_file = s.work.path().join("tftp-got");
    let _ = fs::remove_file(&out_file);
    let out = Command::new("timeout")
        .args(["30", "tftp", "-m", "binary", "127.0.0.1"])
        .arg(s.tftp.port().to_string())
        .args(["-c", "get", name])
        .arg(&out_file)
        .output()
        .expect("run tftp");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.contains("Error code") {
        return None;
    }
    assert!(out.status.success(), "tftp {name}: {said}");
    Some(fs::read(&out_file).expect("tftp output"))
}

/// What the IB node's firmware and a misconfigured one ask: the PXELINUX config over TFTP,
/// the GUID-prefix miss (twice), the iPXE script over HTTP. Returns the served bodies.
/// Each request is in the journal before the next is made, so the journal's order is the
/// order asked: a TFTP transfer is filed when its last ACK arrives, which can be after the
/// tftp-hpa process has exited and the next one has asked.
fn boot_requests(s: &Ironpxe) -> (Vec<u8>, String) {
    let mut since = last_event_id(s);
    let pxelinux = tftp_hpa(s, IB_TFTP).expect("IB PXELINUX config over TFTP");
    assert!(String::from_utf8_lossy(&pxelinux).contains(IB_NODE));
    since = await_filed(s, since, IB_TFTP);
    for _ in 0..2 {
        assert_eq!(tftp_hpa(s, MISS), None, "{MISS} must not be found");
        since = await_filed(s, since, MISS);
    }
    let (code, ipxe) = s.get(IB_IPXE);
    assert_eq!(code, 200, "{ipxe}");
    await_filed(s, since, IB_IPXE);
    (pxelinux, ipxe)
}

/// The id of the journal's newest event (0 when empty).
fn last_event_id(s: &Ironpxe) -> u64 {
    let events = admin_json(s, "/api/v1/events?since=0");
    let events = events.as_array().expect("event list");
    events.last().map_or(0, |e| e["id"].as_u64().expect("id"))
}

/// Waits (bounded) until the one event after `since` is `name`; returns its id.
fn await_filed(s: &Ironpxe, since: u64, name: &str) -> u64 {
    let mut id = None;
    s.wait_until(&format!("{name} in the journal"), || {
        let events = admin_json(s, &format!("/api/v1/events?since={since}"));
        match names(&events)[..] {
            [] => false,
            [one] if one == name => {
                id = events[0]["id"].as_u64();
                true
            }
            _ => panic!("after event {since} only {name} was asked: {events:#}"),
        }
    });
    id.expect("event id")
}

/// Tera's HTML escaping, to find rendered text in a page.
fn escape_html(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#x27;"),
            '/' => o.push_str("&#x2F;"),
            c => o.push(c),
        }
    }
    o
}

fn names(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .expect("event list")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect()
}

#[test]
fn api_shows_the_journeys_real_requests_make() {
    let s = Ironpxe::start();
    let admin_addr = s.admin.expect("admin listens");
    assert_ne!(
        admin_addr.port(),
        s.http.port(),
        "admin is not the boot port"
    );
    let (pxelinux, ipxe) = boot_requests(&s);

    // The IB node's journey: exactly its two requests, in order, with what was served.
    let detail = admin_json(&s, &format!("/api/v1/nodes/{IB_NODE}"));
    let journey = detail["journey"].as_array().expect("journey");
    assert_eq!(
        names(&detail["journey"]),
        [IB_TFTP, IB_IPXE],
        "{journey:#?}"
    );
    for (e, (protocol, bytes)) in journey
        .iter()
        .zip([("tftp", pxelinux.len()), ("http", ipxe.len())])
    {
        assert_eq!(e["protocol"], protocol, "{e}");
        assert_eq!(e["client"], "127.0.0.1", "{e}");
        assert_eq!(e["outcome"], "served", "{e}");
        assert_eq!(e["node"], IB_NODE, "{e}");
        assert_eq!(e["port"], IB_PORT, "{e}");
        assert_eq!(e["action"], "deploy", "{e}");
        assert!(bytes > 0);
        assert_eq!(e["bytes"], json!(bytes), "{e}");
    }
    // The previews are exactly what the clients were served.
    let previews = &detail["previews"][IB_PORT];
    assert_eq!(
        previews["pxelinux"]["body"].as_str(),
        Some(String::from_utf8_lossy(&pxelinux).as_ref())
    );
    assert_eq!(previews["ipxe"]["body"].as_str(), Some(ipxe.as_str()));
    assert_eq!(previews["grub"]["action"], "deploy");

    // Paging through every event.
    let all = admin_json(&s, "/api/v1/events?since=0");
    assert_eq!(names(&all), [IB_TFTP, MISS, MISS, IB_IPXE]);
    let ids: Vec<u64> = all
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_u64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(all[1]["outcome"], "not_found");
    assert_eq!(all[1]["node"], Value::Null);
    let page = admin_json(&s, &format!("/api/v1/events?since={}&limit=2", ids[0]));
    assert_eq!(names(&page), [MISS, MISS]);
    let page = admin_json(&s, &format!("/api/v1/events?since={}", ids[2]));
    assert_eq!(names(&page), [IB_IPXE]);
    let page = admin_json(&s, &format!("/api/v1/events?since={}", ids[3]));
    assert_eq!(page, json!([]));

    // The miss is an unknown client, with its spellings and the port it most likely meant.
    let unknown = admin_json(&s, "/api/v1/unknown-clients");
    assert_eq!(unknown["evicted"], 0);
    let clients = unknown["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 1, "{unknown:#}");
    let u = &clients[0];
    assert_eq!(u["address"], MISS_ADDR);
    assert_eq!(u["asked_as"], "20");
    assert_eq!(u["count"], 2);
    assert_eq!(u["last_client"], "127.0.0.1");
    assert!(u["first_seen_ms"].as_u64() <= u["last_seen_ms"].as_u64());
    let ib_reading = u["derived"]
        .as_array()
        .expect("derived")
        .iter()
        .find(|d| d["kind"] == "ib-mac")
        .unwrap_or_else(|| panic!("an ib-mac reading: {u:#}"));
    assert_eq!(ib_reading["ib_mac"], MISS_ADDR);
    assert!(
        ib_reading["pxelinux_names"]
            .as_array()
            .is_some_and(|n| n.contains(&json!("20-7c-fe-90-03-00-29"))),
        "{ib_reading}"
    );
    let closest = u["closest"].as_str().expect("closest");
    assert!(
        closest.contains(&format!("InfiniBand port {IB_PORT}")),
        "{closest}"
    );
    assert!(closest.contains(IB_NODE), "{closest}");
    assert!(closest.contains("first six bytes"), "{closest}");

    // The node list shows every IB form and the last request.
    let nodes = admin_json(&s, "/api/v1/nodes");
    let ib = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["uuid"] == IB_NODE)
        .expect("IB node listed");
    assert_eq!(ib["name"], "ib-node-1");
    assert_eq!(ib["provision_state"], "deploying");
    assert_eq!(ib["action"], "deploy");
    assert_eq!(ib["last_request"]["name"], IB_IPXE);
    let port = &ib["ports"][0];
    assert_eq!(port["address"], IB_PORT);
    assert_eq!(port["infiniband"], true);
    assert_eq!(port["guid"], "7c:fe:90:03:00:29:26:52");
    assert_eq!(
        port["client_id"],
        "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"
    );
    assert_eq!(
        port["pxelinux_names"],
        json!(["20-7c-fe-90-29-26-52", "01-7c-fe-90-29-26-52"])
    );
    assert_eq!(port["ipxe_name"], IB_PORT);

    // The page renders the same: journeys, the unknown client, escaped previews.
    let front = admin(&s, "/");
    assert_eq!(front.status, 200);
    assert!(front.headers.contains("content-type: text/html"));
    for needle in [
        &escape_html(IB_TFTP),
        &escape_html(IB_IPXE),
        MISS_ADDR,
        "20-7c-fe-90-03-00-29",
        "first six bytes",
    ] {
        assert!(front.body.contains(needle), "{needle} on /");
    }
    let page = admin(&s, &format!("/nodes/{IB_NODE}"));
    assert_eq!(page.status, 200);
    for needle in [
        escape_html(IB_TFTP),
        escape_html(IB_IPXE),
        "7c:fe:90:03:00:29:26:52".into(),
        format!(
            "<pre>{}</pre>",
            escape_html(&String::from_utf8_lossy(&pxelinux))
        ),
        format!("<pre>{}</pre>", escape_html(&ipxe)),
    ] {
        assert!(page.body.contains(&needle), "{needle} on the node page");
    }

    // The admin API is not on the boot port, and unknown admin paths are 404.
    assert_eq!(s.get("/api/v1/nodes").0, 404, "boot port has no admin API");
    assert_eq!(admin(&s, "/api/v1/nope").status, 404);
    assert_eq!(admin(&s, "/api/v1/nodes/not-a-uuid").status, 400);
    let missing = admin(&s, "/nodes/00000000-0000-4000-8000-000000000000");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Not found"));
    assert_eq!(admin(&s, "/no/such/page").status, 404);
}

#[test]
fn token_is_required_when_configured_and_links_carry_it() {
    let dir = tempfile::tempdir().expect("temp");
    let token_file = dir.path().join("token");
    fs::write(&token_file, "s3cret/+token\n").expect("token");
    let s = Ironpxe::start_with(Options {
        toml: format!("admin.token_file = {:?}\n", token_file),
        ..Options::default()
    });
    let url = admin_url(&s, "/api/v1/nodes");
    let denied = fetch(&url, &[]);
    assert_eq!(denied.status, 401);
    assert!(denied.headers.contains("www-authenticate: bearer"));
    assert_eq!(
        fetch(&url, &["-H", "Authorization: Bearer wrong"]).status,
        401
    );
    assert_eq!(admin(&s, "/").status, 401, "the page too");
    assert_eq!(
        fetch(&url, &["-H", "Authorization: Bearer s3cret/+token"]).status,
        200
    );
    // In the URL (percent-encoded), as a browser carries it; links keep it.
    let q = "?token=s3cret%2F%2Btoken";
    assert_eq!(admin(&s, &format!("/api/v1/nodes{q}")).status, 200);
    let page = admin(&s, &format!("/{q}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("href=\"/nodes/{IB_NODE}{q}\"")),
        "node links carry the token"
    );
    assert_eq!(admin(&s, &format!("/nodes/{IB_NODE}{q}")).status, 200);
    // Given as a header, the token is not written into the page.
    let page = fetch(
        &admin_url(&s, "/"),
        &["-H", "Authorization: Bearer s3cret/+token"],
    );
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("s3cret"), "no token in the page");
    assert!(page.body.contains(&format!("href=\"/nodes/{IB_NODE}\"")));
}

/// Fifty rounds of a boot request then an admin read: each read shows the request just made
/// (the journal is flushed exactly), and the reads together take less than the 50 × 15 ms
/// the old fixed-sleep `settle` alone spent in them.
#[test]
fn admin_reads_see_the_request_just_made_without_a_fixed_sleep() {
    let s = Ironpxe::start();
    let mut since = 0u64;
    let mut admin_secs = 0.0;
    for i in 0..50 {
        let path = format!("/no-such-file-{i}");
        assert_eq!(s.get(&path).0, 404);
        let out = curl(&[
            "-s",
            "-w",
            "\n%{time_total}",
            &admin_url(&s, &format!("/api/v1/events?since={since}")),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, secs) = text.rsplit_once('\n').expect("body and time");
        admin_secs += secs.trim().parse::<f64>().expect("time_total");
        let events: Value = serde_json::from_str(body).expect("events");
        assert_eq!(names(&events), [path.as_str()], "round {i}");
        since = events[0]["id"].as_u64().expect("id");
    }
    assert!(
        admin_secs < 50.0 * 0.015,
        "50 admin reads took {admin_secs:.3} s: a fixed sleep per request"
    );
}

/// The journal and `ironpxe_bytes_sent_total` count the body bytes that went out, not the
/// `Content-Length` promised: 0 for a HEAD, a part for a download the client closed early,
/// all of it for a complete GET.
#[test]
fn http_bytes_are_counted_as_sent_for_head_and_aborted_downloads() {
    let s = Ironpxe::start();
    let len = 32usize << 20;
    pattern_file(&s.tftp_root().join("big.bin"), len);
    let events = |since: u64| admin_json(&s, &format!("/api/v1/events?since={since}"));
    let bytes_of = |e: &Value| e["bytes"].as_u64().expect("bytes");

    let head = curl(&["-s", "-I", &s.url("/big.bin")]);
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains(&format!("content-length: {len}")), "{head}");
    let after_head = events(0);
    assert_eq!(names(&after_head), ["/big.bin"]);
    assert_eq!(bytes_of(&after_head[0]), 0, "a HEAD sends no body");
    let mut since = after_head[0]["id"].as_u64().expect("id");

    // Read the head and a little of the body, then close with the rest unread.
    let opts = http_client::Opts {
        timeout: Duration::from_secs(10),
        host: "127.0.0.1".into(),
        ..http_client::Opts::default()
    };
    let mut c = http_client::Conn::open(s.http, &opts).expect("connect");
    c.send_get("/big.bin").expect("send");
    c.read_bytes(256 << 10).expect("the start of the body");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(15);
    let aborted = loop {
        let e = events(since);
        if let Some(ev) = e.as_array().and_then(|a| a.first()) {
            break ev.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the aborted download is journaled"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(aborted["name"], "/big.bin");
    let part = bytes_of(&aborted);
    assert!(
        part > 0 && part < len as u64,
        "an aborted download counts what was sent: {part} of {len}"
    );
    since = aborted["id"].as_u64().expect("id");

    let full = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &s.url("/big.bin"),
    ]);
    assert_eq!(String::from_utf8_lossy(&full.stdout), len.to_string());
    let complete = events(since);
    assert_eq!(
        bytes_of(&complete[0]),
        len as u64,
        "a complete GET counts all"
    );
    assert_eq!(
        s.metric("ironpxe_bytes_sent_total{protocol=\"http\"}") as u64,
        part + len as u64,
        "the metric counts the same bytes"
    );
}

/// `ironpxe serve` with `extra` TOML that must refuse to start: its exit status and stderr,
/// or `None` when it was still running after a bound (it was then killed).
fn serve_refused(extra: &str) -> Option<(std::process::ExitStatus, String)> {
    let work = tempfile::tempdir().expect("work dir");
    let config = work.path().join("ironpxe.toml");
    let toml = format!(
        "state_dir = {:?}\ntemplates = {:?}\ntftp_root = {:?}\nimage_cache_dir = {:?}\n\
         tftp_listen = [\"127.0.0.1:0\"]\nhttp_listen = \"127.0.0.1:0\"\n\
         admin.listen = \"127.0.0.1:0\"\n{extra}",
        root().join("examples/state"),
        root().join("templates"),
        root().join("tftp-root"),
        work.path().join("images"),
    );
    fs::write(&config, toml).expect("write config");
    let stderr = File::create(work.path().join("stderr")).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn ironpxe");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = fs::read_to_string(work.path().join("stderr")).unwrap_or_default();
    status.map(|st| (st, said))
}

/// A token file holding only white space would accept an empty `?token=` from anyone: it
/// stops the start with an error naming the file.
#[test]
fn an_empty_token_file_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp");
    let token_file = dir.path().join("admin-token");
    fs::write(&token_file, " \n").expect("token");
    let (status, said) = serve_refused(&format!("admin.token_file = {token_file:?}\n"))
        .expect("ironpxe must refuse to start with an empty token file, not serve");
    assert!(!status.success(), "{said}");
    assert!(
        said.contains(&token_file.display().to_string()) && said.contains("empty"),
        "the error names the file: {said}"
    );
}

/// Without a token, a request whose `Host` is not this server's address, `localhost` or an
/// `[admin] host_aliases` entry is refused (421) before anything is read: a hostile page
/// rebinding its own name to 127.0.0.1 gets no data. With a token, the token decides.
#[test]
fn without_a_token_only_this_servers_host_names_are_answered() {
    let s = Ironpxe::start_with(Options {
        toml: "admin.host_aliases = [\"ironpxe-admin.example\"]\n".into(),
        ..Options::default()
    });
    let port = s.admin.expect("admin").port();
    let url = admin_url(&s, "/api/v1/nodes");
    for hostile in [
        format!("evil.example:{port}"),
        "127.0.0.1.nip.example".into(),
    ] {
        let host = format!("Host: {hostile}");
        let r = fetch(&url, &["-H", &host]);
        assert_eq!(r.status, 421, "{hostile}: {}", r.body);
        assert!(
            r.body.contains("host_aliases"),
            "says what to fix: {}",
            r.body
        );
        assert!(!r.body.contains(IB_NODE), "no data");
        assert_eq!(
            fetch(&admin_url(&s, "/"), &["-H", &host]).status,
            421,
            "the page too"
        );
    }
    for ok in [
        String::new(), // curl's own: the listen address
        format!("Host: localhost:{port}"),
        "Host: ironpxe-admin.example".into(),
    ] {
        let args: Vec<&str> = if ok.is_empty() {
            vec![]
        } else {
            vec!["-H", &ok]
        };
        let r = fetch(&url, &args);
        assert_eq!(r.status, 200, "{ok:?}: {}", r.body);
        assert!(r.body.contains(IB_NODE));
    }

    let dir = tempfile::tempdir().expect("temp");
    let token_file = dir.path().join("token");
    fs::write(&token_file, "t0ken\n").expect("token");
    let s = Ironpxe::start_with(Options {
        toml: format!("admin.token_file = {token_file:?}\n"),
        ..Options::default()
    });
    let url = admin_url(&s, "/api/v1/nodes");
    let evil = format!("Host: evil.example:{}", s.admin.expect("admin").port());
    let r = fetch(&url, &["-H", &evil, "-H", "Authorization: Bearer t0ken"]);
    assert_eq!(r.status, 200, "with a token, the token decides: {}", r.body);
    assert_eq!(admin(&s, "/api/v1/nodes?token=").status, 401, "empty token");
}

/// The example state plus a node whose name and extra are markup.
fn xss_options() -> Options {
    let mut opts = Options::default();
    opts.state.push((
        "xss.json".into(),
        json!({
            "uuid": XSS_NODE,
            "name": XSS,
            "provision_state": "active",
            "extra": {"note": XSS},
            "ports": [{"address": "52:54:00:12:34:99", "pxe_enabled": true}]
        })
        .to_string(),
    ));
    opts
}

#[test]
fn page_escapes_everything_a_client_chose() {
    let s = Ironpxe::start_with(xss_options());
    assert_eq!(s.get(IMG_PATH).0, 404);
    assert_eq!(s.get("/ipxe/52:54:00:12:34:99").0, 200);

    let front = admin(&s, "/");
    assert_eq!(front.status, 200);
    let csp = front
        .headers
        .lines()
        .find(|l| l.starts_with("content-security-policy:"))
        .expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"));
    assert!(!front.body.contains("<img"), "raw <img on /");
    assert!(!front.body.contains(XSS), "raw <script> on /");
    assert_eq!(
        front.body.matches("<script").count(),
        1,
        "only the page's own"
    );
    assert!(front.body.contains(IMG_ESCAPED), "escaped request on /");
    assert!(front.body.contains(XSS_ESCAPED), "escaped node name on /");

    let node = admin(&s, &format!("/nodes/{XSS_NODE}"));
    assert_eq!(node.status, 200);
    assert!(!node.body.contains("<script"), "no script on the node page");
    assert!(!node.body.contains("<img"));
    // Name (title, heading) and extra, escaped.
    assert!(node.body.matches(XSS_ESCAPED).count() >= 3, "{}", node.body);
    assert!(node.body.contains(&escape_html("/ipxe/52:54:00:12:34:99")));

    // The 404 page names what was asked, escaped.
    let nf = admin(&s, "/nodes/%3Cimg%20src=x%20onerror=alert(1)%3E");
    assert_eq!(nf.status, 404);
    assert!(!nf.body.contains("<img"));
    assert!(nf.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

// ---- headless Chromium ----

fn require_chromium() {
    require("chromium", "chromium");
}

/// A Chromium process group with a fresh profile, killed on drop.
struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    fn spawn(extra: &[&str], wrap: Option<&str>) -> Browser {
        require_chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = match wrap {
            // A shell that sets up descriptors, then becomes Chromium.
            Some(script) => {
                let mut c = Command::new("sh");
                c.args(["-c", script, "sh", "chromium"]);
                c
            }
            None => Command::new("chromium"),
        };
        let stdout = File::create(profile.path().join("stdout")).expect("stdout");
        let stderr = File::create(profile.path().join("stderr")).expect("stderr");
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("spawn chromium");
        Browser { child, profile }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.profile.path().join("stderr")).unwrap_or_default()
    }

    /// Waits (bounded) for Chromium to exit; returns its stdout.
    fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait().expect("wait chromium") {
                Some(st) => {
                    assert!(st.success(), "chromium failed: {}", self.stderr());
                    break;
                }
                None if Instant::now() > deadline => {
                    panic!("chromium timed out: {}", self.stderr())
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        fs::read_to_string(self.profile.path().join("stdout")).expect("stdout")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and the renderers it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// `--dump-dom` after the page's JS had 3 s of (virtual) time.
fn dump_dom(url: &str) -> String {
    Browser::spawn(&["--virtual-time-budget=3000", "--dump-dom", url], None)
        .finish(Duration::from_secs(90))
}

/// The opening tags of the node table's rows.
fn node_rows(dom: &str) -> Vec<&str> {
    dom.match_indices("<tr data-uuid=")
        .map(|(i, _)| &dom[i..i + dom[i..].find('>').expect("tag end")])
        .collect()
}

#[test]
fn browser_renders_journeys_filter_and_screenshot() {
    require_chromium();
    let s = Ironpxe::start();
    boot_requests(&s);

    // (a) The journeys and the unknown IB client; the live refresh ran (and was let in).
    let dom = dump_dom(&admin_url(&s, "/"));
    for needle in [
        IB_TFTP,
        IB_IPXE,
        MISS_ADDR,
        "20-7c-fe-90-03-00-29",
        "is the GUID's first six bytes",
        "live · updated",
        "3 of 3 shown",
    ] {
        assert!(dom.contains(needle), "{needle} in the DOM:\n{dom}");
    }
    assert!(node_rows(&dom).iter().all(|r| !r.contains("hidden")));

    // (b) `?q=` filters on load: only the IB node's row stays visible.
    let dom = dump_dom(&admin_url(&s, "/?q=ib-node"));
    let rows = node_rows(&dom);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in rows {
        let visible = r.contains("data-name=\"ib-node-1\"");
        assert_eq!(!r.contains("hidden"), visible, "{r}");
    }
    assert!(dom.contains("1 of 3 shown"));

    // (c) A screenshot of the page (`IRONPXE_UPDATE_SCREENSHOT=1` refreshes the README's).
    let png = s.work.path().join("admin-page.png");
    let shot = format!("--screenshot={}", png.display());
    Browser::spawn(
        &[
            "--virtual-time-budget=3000",
            &shot,
            "--window-size=1280,1600",
            &admin_url(&s, "/"),
        ],
        None,
    )
    .finish(Duration::from_secs(90));
    let bytes = fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(bytes.len() > 20_000, "a page, not a blank: {}", bytes.len());
    assert_eq!(&bytes[16..24], &[0, 0, 5, 0, 0, 0, 6, 0x40], "1280x1600");
    if std::env::var_os("IRONPXE_UPDATE_SCREENSHOT").is_some() {
        fs::write(root().join("docs/admin-page.png"), &bytes).expect("docs/admin-page.png");
    }
}

/// Chrome DevTools Protocol over `--remote-debugging-pipe` (Chromium reads fd 3, writes
/// fd 4; NUL-terminated JSON), through two FIFOs.
struct Devtools {
    _browser: Browser,
    to: File,
    from: Receiver<Value>,
    next: u64,
    session: Option<String>,
}

impl Devtools {
    fn start(dir: &Path) -> Devtools {
        let (to_path, from_path) = (dir.join("to-chromium"), dir.join("from-chromium"));
        for p in [&to_path, &from_path] {
            let ok = Command::new("mkfifo").arg(p).status().expect("mkfifo");
            assert!(ok.success());
        }
        // Opened read-write, a FIFO never blocks the open on either side.
        let rw = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .expect("open fifo")
        };
        let (to, from) = (rw(&to_path), rw(&from_path));
        let script = format!(
            "exec \"$@\" 3<'{}' 4>'{}'",
            to_path.display(),
            from_path.display()
        );
        let browser = Browser::spawn(&["--remote-debugging-pipe", "about:blank"], Some(&script));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        Devtools {
            _browser: browser,
            to,
            from: rx,
            next: 0,
            session: None,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method}"));
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn browser_live_refresh_inserts_requests_as_text() {
    require_chromium();
    let s = Ironpxe::start();
    let mut dt = Devtools::start(s.work.path());
    let target = dt.call("Target.createTarget", json!({"url": admin_url(&s, "/")}));
    let attached = dt.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    dt.session = attached["sessionId"].as_str().map(str::to_owned);
    // Loaded, and the page's script has run (it fills the filter count).
    dt.wait_for(
        "the page",
        "document.readyState === 'complete' && document.getElementById('shown').textContent !== ''",
    );
    assert_eq!(
        dt.eval("document.querySelectorAll('#events tbody tr.empty').length"),
        json!(1),
        "no requests yet when the page loaded"
    );

    // Requests made after the page loaded arrive through the JSON API.
    assert_eq!(s.get(IMG_PATH).0, 404);
    boot_requests(&s);
    dt.wait_for(
        "five new rows",
        "document.querySelectorAll('#events tbody tr.new').length === 5",
    );
    dt.wait_for(
        "the unknown client",
        &format!("document.getElementById('unknown').textContent.includes('{MISS_ADDR}')"),
    );
    let names = dt.eval(
        "Array.from(document.querySelectorAll('#events tbody tr.new td.name'), td => td.textContent)",
    );
    // Newest first.
    assert_eq!(
        names,
        json!([
            IB_IPXE,
            MISS,
            MISS,
            IB_TFTP,
            "/<img src=x onerror=alert(1)>"
        ])
    );
    // The request's markup stayed text: no element was made of it.
    assert_eq!(dt.eval("document.querySelectorAll('img').length"), json!(0));
    assert_eq!(
        dt.eval("document.querySelectorAll('#events tr.new td.name *').length"),
        json!(0)
    );
    let link = dt.eval(&format!(
        "(a => a && a.textContent)(document.querySelector('#events tr.new a[href=\"/nodes/{IB_NODE}\"]'))"
    ));
    assert_eq!(link, json!("ib-node-1"), "node links named from the table");
    let unknown = dt.eval("document.getElementById('unknown').tBodies[0].textContent");
    let unknown = unknown.as_str().expect("text");
    assert!(
        unknown.contains("is the GUID's first six bytes"),
        "{unknown}"
    );
    assert!(
        unknown.contains("PXELINUX 20-7c-fe-90-03-00-29"),
        "{unknown}"
    );
    assert_eq!(
        dt.eval("document.querySelector('#unknown tbody td.num').textContent"),
        json!("2"),
        "count"
    );
    let html = dt.eval("document.documentElement.outerHTML");
    assert!(html
        .as_str()
        .expect("html")
        .contains("&lt;img src=x onerror=alert(1)&gt;"));
}
