//! TFTP clients that vanish mid-transfer or go silent: their sessions are freed within the
//! server's bounds.

use super::common::tftp::{recv, rrq, OP_OACK};
use super::*;

/// Nine clients open transfers at once (held open together: the gauge shows all nine), then
/// vanish: before ACKing the OACK, after four blocks at windowsize 1, or after a dozen at
/// windowsize 8. Their sessions are freed after the server's retransmissions.
#[test]
fn clients_that_vanish_mid_transfer_free_their_sessions() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 1000\nmax_retries = 3\n".into(),
        ..Options::default()
    });
    let data = pattern_file(&s.tftp_root().join("big"), 1 << 20);
    let base = metric(&s, "ironpxe_tftp_sessions_active");
    let n = 9;
    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let opts = match i % 3 {
                0 => ClientOpts {
                    vanish_after: Some(4),
                    ..ClientOpts::default()
                },
                1 => ClientOpts {
                    blksize: Some(1024),
                    windowsize: Some(8),
                    vanish_after: Some(12),
                    ..ClientOpts::default()
                },
                _ => ClientOpts {
                    blksize: Some(1408),
                    tsize: true,
                    vanish_after: Some(0),
                    ..ClientOpts::default()
                },
            };
            held_fetch(s.tftp, lo(3, 0, 1 + i as u8), "big", opts, gate.clone())
        })
        .collect();
    let (arrived, failed) = gate.wait_arrived(n, Duration::from_secs(30));
    assert_eq!((arrived, failed), (n, 0), "every client got its transfer");
    assert_eq!(
        metric(&s, "ironpxe_tftp_sessions_active"),
        base + n as f64,
        "all transfers open at once"
    );
    gate.release();
    for c in clients {
        let f = c.join().expect("client");
        assert_eq!(f.result, Err(Failure::Vanished), "{:?}", f.stats);
    }
    wait_for(
        &s,
        "the vanished clients' sessions to be freed",
        Duration::from_secs(20),
        || metric(&s, "ironpxe_tftp_sessions_active") == base,
    );
    let got = tftp(&s, lo(3, 1, 1), "big", &ClientOpts::default()).bytes("after the vanishing");
    assert!(got == data, "a later client is served in full");
    // Its session ends when the server reads the final ACK, which may still be in flight
    // when the client returns: /healthz reaches 0, not necessarily at once.
    wait_for(
        &s,
        "/healthz to report no TFTP session",
        Duration::from_secs(20),
        || hget(&s, "/healthz").1.contains("\"tftp_sessions\":0"),
    );
}

/// Three clients ask `timeout 255` and go silent with their ports still open (no ICMP ends
/// the transfer, as when a machine drops off the network). The option is declined (left out
/// of the OACK) and each slot is freed within `(max_retries + 1)` × max(`timeout_ms`,
/// `max_timeout_secs`) plus slack — before, they were held (5 + 1) × 255 s. A timeout within
/// `max_timeout_secs` is echoed.
#[test]
fn a_silent_client_asking_a_long_timeout_is_freed_within_the_servers_bound() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 500\nmax_retries = 2\nmax_timeout_secs = 1\n".into(),
        ..Options::default()
    });
    pattern_file(&s.tftp_root().join("big"), 64 << 10);
    let base = metric(&s, "ironpxe_tftp_sessions_active");
    let silent: Vec<UdpSocket> = (0..3).map(|i| udp(lo(3, 9, 1 + i))).collect();
    for sock in &silent {
        let asked = rrq(b"big", &[("blksize", "1024"), ("timeout", "255")]);
        sock.send_to(&asked, s.tftp).expect("send RRQ");
        let oack = recv(sock, Duration::from_secs(5)).expect("an OACK");
        assert_eq!(oack.op, OP_OACK);
        assert_eq!(
            oack.options(),
            [("blksize".to_owned(), "1024".to_owned())],
            "timeout 255 declined"
        );
    }
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), base + 3.0);
    // (2 + 1) × max(0.5 s, 1 s) = 3 s, plus generous slack for a loaded machine.
    wait_for(
        &s,
        "the silent clients' sessions to be freed",
        Duration::from_secs(3 + 7),
        || metric(&s, "ironpxe_tftp_sessions_active") == base,
    );
    drop(silent);

    let sock = udp(lo(3, 9, 10));
    sock.send_to(&rrq(b"big", &[("timeout", "1")]), s.tftp)
        .expect("send RRQ");
    let oack = recv(&sock, Duration::from_secs(5)).expect("an OACK");
    assert_eq!(
        oack.options(),
        [("timeout".to_owned(), "1".to_owned())],
        "a timeout within the limit is echoed"
    );
}

/// The receive-buffer metric is what Linux granted (half of what `SO_RCVBUF` reports), and
/// a request above `net.core.rmem_max` is warned about (the doubled value hid the clamp; on
/// a loopback address, where no machine boots, at INFO).
#[test]
fn a_clamped_tftp_receive_buffer_is_reported_as_granted_and_warned_about() {
    let rmem_max: u64 = fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("/proc/sys/net/core/rmem_max")
        .trim()
        .parse()
        .expect("a number");
    let s = Ironpxe::start_with(Options {
        toml: format!("[tftp]\nsocket_rcvbuf = {}\n", rmem_max + 4096),
        ..Options::default()
    });
    assert_eq!(
        metric(&s, "ironpxe_tftp_socket_rcvbuf_bytes"),
        rmem_max as f64,
        "granted: rmem_max"
    );
    assert!(
        s.log().contains("TFTP receive buffer clamped"),
        "the clamp is warned about:\n{}",
        tail(&s.log(), 20)
    );
}
