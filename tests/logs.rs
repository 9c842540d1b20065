//! The log of a real `ironpxe serve` stays one record a line whatever clients and node state
//! write: newlines through a node name (into errors printed with `Display`), a TFTP file
//! name and an HTTP path never start a line of their own.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::tftp::{recv, rrq};
use common::{Ironpxe, Options};

/// A forged record: a line that would read as a record of its own, and one that would not.
const FORGED: &str = "\n1999-12-31T23:59:59.000000Z ERROR ironpxe: FORGED\nFAKE ERROR";
/// How `FORGED` reads once escaped.
const ESCAPED: &str = "\\n1999-12-31T23:59:59.000000Z ERROR ironpxe: FORGED\\nFAKE ERROR";
const MAC: &str = "52:54:00:aa:bb:01";

/// A node whose name carries `FORGED` and whose configs cannot render (a kernel parameter
/// with a `"`, refused in every format), so the error that quotes the name is logged.
fn hostile_node() -> String {
    serde_json::json!({
        "uuid": "6b1d4c5e-0f43-4c36-9f0e-3a1f5de0c0aa",
        "name": format!("evil{FORGED}"),
        "provision_state": "deploying",
        "boot_interface": "ipxe",
        "deploy_interface": "direct",
        "driver_info": {
            "deploy_kernel": "http://127.0.0.1:8080/ipa/ipa.kernel",
            "deploy_ramdisk": "http://127.0.0.1:8080/ipa/ipa.initramfs",
            "kernel_append_params": "a=\"b"
        },
        "extra": {},
        "ports": [{"address": MAC, "extra": {}}]
    })
    .to_string()
}

/// `2024-05-06T07:08:09.123456Z  INFO target: …`: the default format's record start.
fn is_record(line: &str) -> bool {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let b = stamp.as_bytes();
    let stamp_ok = b.len() >= 20
        && b[4] == b'-'
        && b[10] == b'T'
        && stamp.ends_with('Z')
        && b[..4].iter().all(u8::is_ascii_digit);
    let level = rest.trim_start().split(' ').next().unwrap_or("");
    stamp_ok && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

#[test]
fn newlines_from_clients_and_node_state_never_start_a_log_line() {
    let s = Ironpxe::start_with(Options {
        state: vec![("evil.json".into(), hostile_node())],
        ..Options::default()
    });
    let hyphen = MAC.replace(':', "-");

    // The node's name inside a render error, over TFTP and HTTP.
    assert!(s
        .tftp_get(&format!("pxelinux.cfg/01-{hyphen}"), &[])
        .is_err());
    let (code, _) = s.get(&format!("/ipxe/{hyphen}"));
    assert_eq!(code, 500);
    // A TFTP file name and an HTTP path carrying the same lines.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let name = format!("pxelinux.cfg/x{FORGED}");
    sock.send_to(&rrq(name.as_bytes(), &[]), s.tftp)
        .expect("send");
    let answer = recv(&sock, Duration::from_secs(5)).expect("an answer");
    assert!(answer.error_code().is_some(), "refused");
    let (code, _) = s.get("/pxelinux.cfg/x%0a1999-12-31T23:59:59Z%20ERROR%0aFAKE%20ERROR");
    assert_ne!(code, 200);

    s.wait_until("the four requests are logged", || {
        let log = s.log();
        log.matches("tftp request").count() >= 2 && log.contains("http request failed")
    });
    let log = s.log();
    for line in log.lines() {
        assert!(is_record(line), "a line that is no record: {line:?}\n{log}");
        assert!(
            !line.starts_with("1999-") && !line.starts_with("FAKE"),
            "a forged line: {line:?}"
        );
    }
    // The hostile text was logged, escaped, in one record each: the render errors (TFTP and
    // HTTP) and the refused TFTP name.
    let with = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        with(&format!("evil{ESCAPED}")),
        2,
        "the name in both render errors:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("tftp request failed") && l.contains(ESCAPED)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("http request failed") && l.contains(ESCAPED)),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("pxelinux.cfg/x\\n1999")),
        "the refused TFTP name:\n{log}"
    );
}
