//! Load and caps: thousands of concurrent TFTP sessions and HTTP connections, and the
//! per-client and global session caps of both protocols.

use super::*;

/// 2 000 clients on 2 000 source addresses each open a transfer and hold it (the gauge shows
/// all 2 000 at once), then all complete byte-identical.
#[test]
fn two_thousand_concurrent_tftp_sessions_are_all_served() {
    let _g = serial();
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nmax_sessions = 2500\nmax_sessions_per_client = 4\ntimeout_ms = 1000\n\
               max_retries = 60\n"
            .into(),
        ..Options::default()
    });
    raise_nofile(&s, 2000 + 512);
    let data = pattern_file(&s.tftp_root().join("small.bin"), 3000);
    let n = 2000usize;
    let gate = Arc::new(Gate::default());
    let opts = ClientOpts {
        rto: Duration::from_secs(1),
        max_timeouts: 30,
        deadline: Duration::from_secs(150),
        ..ClientOpts::default()
    };
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let src = lo(4, (i / 200) as u8, 1 + (i % 200) as u8);
            held_fetch(s.tftp, src, "small.bin", opts.clone(), gate.clone())
        })
        .collect();
    let (arrived, failed) = gate.wait_arrived(n, Duration::from_secs(120));
    let active = metric(&s, "ironpxe_tftp_sessions_active");
    gate.release();
    let mut bad = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let f = c.join().expect("client");
        match &f.result {
            Ok(b) if *b == data => {}
            other => bad.push(format!(
                "client {i}: {:?} {:?}",
                other.as_ref().map(Vec::len),
                f.stats
            )),
        }
    }
    assert_eq!(
        (arrived, failed),
        (n, 0),
        "every client got a transfer; failures: {:?}",
        &bad[..bad.len().min(5)]
    );
    assert_eq!(active, n as f64, "all {n} transfers were open at once");
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    wait_for(&s, "sessions back to 0", Duration::from_secs(30), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });
}

/// 5 000 TCP connections from 100 source addresses are all open before any sends its
/// request; then each sends one and every one gets its 200.
#[test]
fn five_thousand_concurrent_http_connections_are_served() {
    let _g = serial();
    let s = Ironpxe::start_with(Options {
        toml: "[http]\nmax_connections = 6000\nmax_connections_per_client = 100\n\
               header_timeout_secs = 120\n"
            .into(),
        ..Options::default()
    });
    raise_nofile(&s, 5000 + 512);
    let (threads, per_thread) = (25usize, 200usize);
    let gate = Arc::new(Gate::default());
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (gate, ok, errors, dst) = (gate.clone(), ok.clone(), errors.clone(), s.http);
            thread::spawn(move || {
                let mut conns = Vec::new();
                for k in 0..per_thread {
                    let src = lo(5, t as u8, 1 + (k / 50) as u8);
                    match Conn::connect(src, dst) {
                        Ok(c) => conns.push(c),
                        Err(e) => errors.lock().expect("errors").push(format!("connect: {e}")),
                    }
                }
                gate.arrive_and_wait(Duration::from_secs(120));
                for c in &mut conns {
                    if let Err(e) = c.send_get("/healthz") {
                        errors.lock().expect("errors").push(format!("send: {e}"));
                    }
                }
                for c in &mut conns {
                    match c.read_response() {
                        Ok(r) if r.status == 200 && r.text().contains("\"status\"") => {
                            ok.fetch_add(1, SeqCst);
                        }
                        Ok(r) => errors.lock().expect("errors").push(format!(
                            "status {}: {}",
                            r.status,
                            r.text()
                        )),
                        Err(e) => errors.lock().expect("errors").push(format!("read: {e}")),
                    }
                }
            })
        })
        .collect();
    let (arrived, _) = gate.wait_arrived(threads, Duration::from_secs(120));
    assert_eq!(arrived, threads, "connecting timed out");
    gate.release();
    for w in workers {
        w.join().expect("worker");
    }
    let errors = errors.lock().expect("errors");
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(ok.load(SeqCst), threads * per_thread);
    healthy(&s);
}

/// Session caps per client and in all, for TFTP and for HTTP: over a cap a client is refused
/// cleanly (a TFTP ERROR / a 503 saying which cap), the holders keep working, other clients
/// are served, and a freed slot is usable again.
#[test]
fn session_caps_refuse_cleanly_and_other_clients_are_served() {
    let s = Ironpxe::start_with(Options {
        toml: "[tftp]\nmax_sessions = 12\nmax_sessions_per_client = 8\ntimeout_ms = 1000\n\
               max_retries = 30\n[http]\nmax_connections = 12\nmax_connections_per_client = 8\n"
            .into(),
        ..Options::default()
    });
    let data = pattern_file(&s.tftp_root().join("f.bin"), 20_000);
    let quick = ClientOpts {
        deadline: Duration::from_secs(20),
        ..ClientOpts::default()
    };
    let refused = |src: Ipv4Addr, why: &str| {
        let f = tftp(&s, src, "f.bin", &quick);
        match &f.result {
            Err(Failure::Error { message, .. }) => assert!(
                message.contains(why),
                "from {src}: the ERROR must say {why:?}: {message:?}"
            ),
            other => panic!(
                "from {src}: expected a TFTP ERROR ({why}), got {:?}",
                other.as_ref().map(Vec::len)
            ),
        }
    };

    // TFTP, per client: 8 transfers from one address held open, 5 more refused.
    let a = lo(6, 0, 1);
    let gate = Arc::new(Gate::default());
    let mut holders: Vec<_> = (0..8)
        .map(|_| held_fetch(s.tftp, a, "f.bin", ClientOpts::default(), gate.clone()))
        .collect();
    assert_eq!(gate.wait_arrived(8, Duration::from_secs(20)), (8, 0));
    for _ in 0..5 {
        refused(a, "too many sessions from this address");
    }
    let got = tftp(&s, lo(6, 0, 2), "f.bin", &quick).bytes("another client meanwhile");
    assert!(got == data);
    // TFTP, in all: 4 more holders from other addresses fill the 12; a 13th is refused.
    let gate2 = Arc::new(Gate::default());
    holders.extend((0..4).map(|i| {
        held_fetch(
            s.tftp,
            lo(6, 1, 1 + i),
            "f.bin",
            ClientOpts::default(),
            gate2.clone(),
        )
    }));
    assert_eq!(gate2.wait_arrived(4, Duration::from_secs(20)), (4, 0));
    assert_eq!(metric(&s, "ironpxe_tftp_sessions_active"), 12.0);
    refused(lo(6, 1, 9), "too many sessions in all");
    gate.release();
    gate2.release();
    for h in holders {
        let got = h.join().expect("holder").bytes("a holder");
        assert!(got == data, "holders complete byte-identical");
    }
    wait_for(&s, "TFTP sessions freed", Duration::from_secs(15), || {
        metric(&s, "ironpxe_tftp_sessions_active") == 0.0
    });
    let got = tftp(&s, a, "f.bin", &quick).bytes("the capped address once freed");
    assert!(got == data);
    assert!(s.log().contains("tftp request refused"));

    // HTTP, per client: 8 kept-alive connections from one address, 5 more get 503.
    let b = lo(6, 2, 1);
    let mut held: Vec<Conn> = (0..8)
        .map(|_| {
            let mut c = Conn::connect(b, s.http).expect("connect");
            let r = c.get("/healthz").expect("held connection");
            assert_eq!(r.status, 200);
            c
        })
        .collect();
    let over_cap = |src: Ipv4Addr, why: &str| {
        let mut c = Conn::connect(src, s.http).expect("connect");
        let _ = c.send_get("/healthz");
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("over-cap connection from {src}: no 503 but {e}"));
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
        assert!(
            r.head.to_ascii_lowercase().contains("retry-after"),
            "{}",
            r.head
        );
        c.wait_closed(Duration::from_secs(5))
            .expect("an over-cap connection is closed");
    };
    for _ in 0..5 {
        over_cap(b, "too many sessions from this address");
    }
    for c in &mut held {
        assert_eq!(c.get("/healthz").expect("still works").status, 200);
    }
    // HTTP, in all: 4 more from other addresses fill the 12; a 13th gets 503.
    for i in 0..4 {
        let mut c = Conn::connect(lo(6, 3, 1 + i), s.http).expect("connect");
        assert_eq!(c.get("/healthz").expect("other client").status, 200);
        held.push(c);
    }
    over_cap(lo(6, 3, 9), "too many sessions in all");
    for c in &mut held {
        assert_eq!(c.get("/healthz").expect("still works").status, 200);
    }
    // A closed connection frees its slot (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Conn::connect(lo(6, 3, 9), s.http).expect("connect");
        match c.get("/healthz") {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "the freed slot was never reusable: {other:?}"
            ),
        }
        thread::sleep(Duration::from_millis(100));
    }
}
