//! HTTP abuse: slowloris connections, oversized heads, unknown methods and garbage.

use std::io::{Read, Write};

use super::*;

/// Slowloris connections (stalled or trickling a byte every 100 ms) do not block others and
/// are closed after `header_timeout_secs`; oversized request lines and headers get a 4xx or
/// a close; unknown methods get 405 and garbage 400; /healthz answers throughout.
#[test]
fn http_abuse_never_blocks_or_hangs_the_server() {
    let s = Ironpxe::start_with(Options {
        toml: "[http]\nheader_timeout_secs = 1\nmax_header_bytes = 8192\n".into(),
        ..Options::default()
    });
    let bound = Duration::from_secs(15);
    let mut stalled: Vec<Conn> = (0..30)
        .map(|i| {
            let mut c = Conn::connect(lo(7, 0, 1 + i % 10), s.http).expect("connect");
            c.send(b"GET /healthz HTTP/1.1\r\nHost: ironpxe\r\nX-Slow: ")
                .expect("partial request");
            c
        })
        .collect();
    let tricklers: Vec<_> = (0..10)
        .map(|i| {
            let dst = s.http;
            thread::spawn(move || -> Result<(), String> {
                let mut c = Conn::connect(lo(7, 1, 1 + i), dst).map_err(|e| e.to_string())?;
                c.send(b"GET /healthz HTTP/1.1\r\n")
                    .map_err(|e| e.to_string())?;
                let _ = c.stream.set_read_timeout(Some(Duration::from_millis(100)));
                let started = Instant::now();
                let mut chunk = [0u8; 1024];
                while started.elapsed() < Duration::from_secs(15) {
                    if c.stream.write_all(b"X").is_err() {
                        return Ok(()); // closed by the server
                    }
                    match c.stream.read(&mut chunk) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {} // e.g. a 408; the close follows
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => return Ok(()),
                    }
                }
                Err("a trickling connection was still open after 15 s".into())
            })
        })
        .collect();
    // Others are served while the slow ones hang on.
    for _ in 0..5 {
        healthy(&s);
    }
    for (i, c) in stalled.iter_mut().enumerate() {
        c.wait_closed(bound)
            .unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
    }
    for t in tricklers {
        t.join().expect("trickler").expect("trickler closed");
    }
    healthy(&s);

    let acceptable = |what: &str, e: &Ending| {
        eprintln!("{what}: {e:?}");
        assert!(
            matches!(e, Ending::Closed | Ending::Status(400 | 413 | 414 | 431)),
            "{what}: {e:?}"
        );
    };
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: ironpxe\r\n\r\n",
        "a".repeat(20_000)
    );
    let e = Conn::exchange(lo(7, 2, 1), s.http, long_line.as_bytes(), bound);
    acceptable("a 20 kB request line", &e);
    healthy(&s);
    let mut big_headers = String::from("GET /healthz HTTP/1.1\r\nHost: ironpxe\r\n");
    for i in 0..200 {
        big_headers.push_str(&format!("X-Pad-{i}: {}\r\n", "b".repeat(100)));
    }
    big_headers.push_str("\r\n");
    let e = Conn::exchange(lo(7, 2, 1), s.http, big_headers.as_bytes(), bound);
    acceptable("20 kB of headers", &e);
    healthy(&s);
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: ironpxe\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let e = Conn::exchange(lo(7, 2, 1), s.http, many.as_bytes(), bound);
    acceptable("150 headers", &e);
    healthy(&s);

    for method in ["PUT", "DELETE", "PROPFIND", "FOO", "POST"] {
        let req = format!(
            "{method} /healthz HTTP/1.1\r\nHost: ironpxe\r\nContent-Length: 5\r\n\r\nhello"
        );
        let e = Conn::exchange(lo(7, 2, 2), s.http, req.as_bytes(), bound);
        assert_eq!(e, Ending::Status(405), "{method}");
        healthy(&s);
    }
    for garbage in [
        &b"G@RBAGE /healthz HTTP/1.1\r\nHost: ironpxe\r\n\r\n"[..],
        b"\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\r\n\r\n\r\n\r\n",
    ] {
        let e = Conn::exchange(lo(7, 2, 3), s.http, garbage, bound);
        assert!(
            matches!(e, Ending::Closed | Ending::Status(400 | 405 | 505)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(garbage)
        );
        healthy(&s);
    }
}
