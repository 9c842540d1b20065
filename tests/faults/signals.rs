//! Signals during transfers: SIGHUP reloads, SIGTERM ends within the grace period.

use super::*;

/// SIGHUP in the middle of slow transfers: they finish byte-identical. SIGTERM in the middle
/// of slow transfers: the process exits within the grace period and every client sees an
/// end (complete, ERROR or timeout) — none hangs.
#[test]
fn sighup_and_sigterm_during_transfers() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\ntimeout_ms = 500\nmax_retries = 5\n[http]\nshutdown_grace_secs = 2\n".into(),
        ..Options::default()
    });
    let pid = server_pid(&s);
    let data = pattern_file(&s.tftp_root().join("slow.bin"), 150_000);
    let slow = |delay_ms: u64| ClientOpts {
        blksize: Some(1024),
        ack_delay: Duration::from_millis(delay_ms),
        max_timeouts: 12,
        deadline: Duration::from_secs(60),
        ..ClientOpts::default()
    };

    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..6)
        .map(|i| held_fetch(s.tftp, lo(8, 0, 1 + i), "slow.bin", slow(10), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(6, Duration::from_secs(20)), (6, 0));
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), 6.0);
    gate.release();
    s.signal("HUP");
    wait_for(&s, "the reload", Duration::from_secs(10), || {
        s.log().contains("SIGHUP: reloading")
    });
    for c in clients {
        let got = c.join().expect("client").bytes("a transfer across SIGHUP");
        assert!(got == data, "byte-identical across SIGHUP");
    }
    wait_for(&s, "sessions back to 0", Duration::from_secs(15), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });

    let gate = Arc::new(Gate::default());
    let clients: Vec<_> = (0..6)
        .map(|i| held_fetch(s.tftp, lo(8, 1, 1 + i), "slow.bin", slow(20), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(6, Duration::from_secs(20)), (6, 0));
    gate.release();
    thread::sleep(Duration::from_millis(300));
    s.signal("TERM");
    let term = Instant::now();
    let deadline = term + Duration::from_secs(2 + 8);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "ironpxe still running 10 s after SIGTERM (grace 2 s)\n{}",
            tail(&s.log(), 20)
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("SIGTERM: exited after {:?} (grace 2 s)", term.elapsed());
    let (mut done, mut ended) = (0, 0);
    for c in clients {
        let f = c.join().expect("client");
        match f.result {
            Ok(b) => {
                assert!(
                    b == data,
                    "a transfer reported complete must be byte-identical"
                );
                done += 1;
            }
            Err(Failure::Timeout(_) | Failure::Cut | Failure::Error { .. } | Failure::Io(_)) => {
                ended += 1
            }
            Err(Failure::Corrupt(why)) => {
                panic!("a transfer reported complete must be byte-identical: {why}")
            }
            Err(Failure::Vanished) => unreachable!("the clients never vanish"),
        }
    }
    assert_eq!(done + ended, 6);
    eprintln!("SIGTERM: {done} transfers completed, {ended} ended early");
    assert!(s.log().contains("shutting down"), "{}", tail(&s.log(), 20));
}
