//! An arbitrary `Host` header through `HostPolicy::server_for`, for policies with aliases.
//! Invariants: the base URL is the fallback `http://<local address>` or `http://` followed
//! only by `[A-Za-z0-9.:[]-]`; a Host that is not taken back never leaks into the URL; and
//! the URL passes `check_token` for every format, so client text can never carry white
//! space, quotes, `$`, `;` or a newline into a boot script.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ironpxe::render::{check_token, Format};
use ironpxe::serving::http::HostPolicy;
use libfuzzer_sys::fuzz_target;

fn policies() -> [HostPolicy; 3] {
    let aliases = vec![
        "boot.example.org".to_owned(),
        "PXE-01".to_owned(),
        "ironpxe".to_owned(),
    ];
    [
        // Listening on every address: any IP literal with our port names us.
        HostPolicy {
            listen: Some((Ipv4Addr::UNSPECIFIED, 8080).into()),
            public_url: None,
            aliases: aliases.clone(),
        },
        HostPolicy {
            listen: Some((Ipv4Addr::new(192, 0, 2, 10), 80).into()),
            public_url: None,
            aliases: aliases.clone(),
        },
        HostPolicy {
            listen: Some((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 8080).into()),
            public_url: None,
            aliases,
        },
    ]
}

fn url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'[' | b']' | b'-')
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the local address the request came in on; the rest is the header
    // as `HeaderValue::to_str` gives it (visible ASCII and spaces; anything else is refused
    // before the policy sees it — but the policy must not rely on that).
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(host) = std::str::from_utf8(rest) else {
        return;
    };
    let locals: [SocketAddr; 4] = [
        (Ipv4Addr::new(192, 0, 2, 10), 8080).into(),
        (Ipv4Addr::new(192, 0, 2, 10), 80).into(),
        (Ipv4Addr::LOCALHOST, 8080).into(),
        (Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 8080).into(),
    ];
    let local = locals[usize::from(pick) % locals.len()];
    for policy in policies() {
        let server = policy.server_for(Some(host), local);
        let url = &server.http_url;
        let fallback = format!("http://{local}");
        if *url != fallback {
            let Some(rest) = url.strip_prefix("http://") else {
                panic!(
                    "INVARIANT BROKEN: Host {host:?} on {local}: base URL {url:?} is not http://"
                );
            };
            if rest.is_empty() || !rest.bytes().all(url_char) {
                panic!(
                    "INVARIANT BROKEN: Host {host:?} on {local} with {policy:?}: base URL {url:?} has characters outside [A-Za-z0-9.:[]-]"
                );
            }
            // The Host, normalised: lower-case name, the port as a number.
            if rest != normalised(host) {
                panic!("INVARIANT BROKEN: Host {host:?} on {local}: base URL {url:?} is neither the fallback nor the Host");
            }
            if rest.bytes().any(|b| b.is_ascii_uppercase()) {
                panic!("INVARIANT BROKEN: Host {host:?}: base URL {url:?} is not lower-case (cache flooding)");
            }
        }
        for format in Format::ALL {
            if let Err(e) = check_token("u", url, format) {
                panic!("INVARIANT BROKEN: Host {host:?} on {local}: base URL {url:?} unsafe for {format}: {e}");
            }
        }
        assert_eq!(
            server.tftp_server,
            local.ip().to_string(),
            "INVARIANT BROKEN: tftp_server of {local}"
        );
        // Without a Host header, the fallback.
        assert_eq!(policy.server_for(None, local).http_url, fallback);
    }
});

/// `name[:port]` with the name lower-cased and the port without leading zeros.
fn normalised(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || lower.starts_with('[') => {
            match port.parse::<u16>() {
                Ok(p) if !port.starts_with('+') => format!("{name}:{p}"),
                _ => lower,
            }
        }
        _ => lower,
    }
}
