//! The Ironic API client against a scripted HTTP server: pagination, partial and failed
//! polls, change probes that never end or carry hostile timestamps, HTTP basic and Keystone
//! authentication (no Keystone runs here, so its token
//! service is scripted too; the real-Ironic test covers noauth end to end).

mod common;

use std::sync::{Arc, Mutex};

use common::http_server::{HttpServer, Reply, Request as Seen};

use ironpxe::state::source::ironic::{poll_once, AuthKind, Client, IronicConfig, PollState};
use ironpxe::state::{IndexConfig, Store};

type Script = Arc<dyn Fn(&Seen) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// Serves `script`'s answers on a loopback port (the tests' one small HTTP server, which
/// logs every request it saw).
fn scripted_server(script: Script) -> HttpServer {
    HttpServer::start(move |req| {
        let (status, extra, body) = script(req);
        extra
            .iter()
            .fold(Reply::new(status, body), |r, (k, v)| r.header(k, v))
    })
}

fn node(i: usize) -> String {
    format!(
        r#"{{"uuid": "00000000-0000-4000-8000-{i:012}", "name": "n{i}", "provision_state": "deploying",
            "driver_info": {{"deploy_kernel": "http://img/k", "deploy_ramdisk": "http://img/r"}},
            "ports": [{{"href": "http://x/v1/nodes/{i}/ports", "rel": "self"}}]}}"#
    )
}

fn port(i: usize) -> String {
    format!(
        r#"{{"uuid": "10000000-0000-4000-8000-{i:012}", "address": "52:54:00:00:00:{i:02x}", "node_uuid": "00000000-0000-4000-8000-{i:012}"}}"#
    )
}

/// Nodes 1-5 over three pages, ports over two; `fail_page` makes that node page fail.
fn paged_ironic(fail_page: Arc<Mutex<Option<&'static str>>>) -> Script {
    Arc::new(move |req: &Seen| {
        let page = |items: Vec<String>, next: Option<&str>| {
            let key = if req.path.starts_with("/v1/nodes") {
                "nodes"
            } else {
                "ports"
            };
            let next = next
                .map(|n| format!(r#", "next": "http://public.example:6385{n}""#))
                .unwrap_or_default();
            format!(r#"{{"{key}": [{}]{next}}}"#, items.join(","))
        };
        let marker = req
            .path
            .split("marker=")
            .nth(1)
            .map(|m| m.split('&').next().unwrap_or(""));
        if let Some(bad) = *fail_page.lock().expect("lock") {
            if marker == Some(bad) {
                return (500, vec![], "boom".into());
            }
        }
        let body = match (req.path.starts_with("/v1/nodes"), marker) {
            (true, None) => page(
                vec![node(1), node(2)],
                Some("/v1/nodes?detail=True&limit=2&marker=n2"),
            ),
            (true, Some("n2")) => page(
                vec![node(3), node(4)],
                Some("/v1/nodes?detail=True&limit=2&marker=n4"),
            ),
            (true, Some("n4")) => page(vec![node(5)], None),
            (false, None) => page(
                (1..=3).map(port).collect(),
                Some("/v1/ports?detail=True&marker=p3"),
            ),
            (false, Some("p3")) => page((4..=5).map(port).collect(), None),
            _ => return (404, vec![], "{}".into()),
        };
        (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            body,
        )
    })
}

fn config(url: &str) -> IronicConfig {
    IronicConfig {
        url: Some(url.to_owned()),
        page_limit: Some(2),
        ..IronicConfig::default()
    }
}

#[tokio::test]
async fn follows_pagination_and_a_partial_poll_changes_nothing() {
    let fail = Arc::new(Mutex::new(None));
    let srv = scripted_server(paged_ironic(fail.clone()));
    let url = srv.base.clone();
    let client = Client::new(&config(&url)).expect("client");
    let store = Store::new(IndexConfig::default());
    let state = PollState::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join(".ironic-cache.json");

    poll_once(&client, &store, &cache, &state).await;
    let s = store.current();
    assert_eq!(
        (s.nodes().len(), s.ports().len()),
        (5, 5),
        "every page read"
    );
    assert!(s.errors.is_empty());
    assert_eq!(state.get().polls_ok, 1);
    assert!(cache.exists(), "a good poll is cached");
    let first = srv.requests()[0].clone();
    assert_eq!(
        first
            .headers
            .get("x-openstack-ironic-api-version")
            .map(String::as_str),
        Some("latest")
    );
    assert!(
        first.path.contains("limit=2") && first.path.contains("fields=uuid,"),
        "{}",
        first.path
    );

    // Page 2 of the nodes fails: the poll fails as a whole and the store keeps all five.
    *fail.lock().expect("lock") = Some("n2");
    poll_once(&client, &store, &cache, &state).await;
    let s = store.current();
    assert_eq!(s.nodes().len(), 5, "a partial poll changes nothing");
    assert_eq!(s.errors.len(), 1);
    assert!(s.errors[0].message.contains("500"), "{:?}", s.errors);
    let st = state.get();
    assert_eq!((st.polls_ok, st.polls_failed), (1, 1));
    assert!(st.last_error.is_some());

    // Ironic answers again: recovered.
    *fail.lock().expect("lock") = None;
    poll_once(&client, &store, &cache, &state).await;
    assert!(store.current().errors.is_empty());
    assert!(state.get().last_error.is_none());

    // A restart while Ironic is down: the cache alone boots every node.
    let restarted = Store::new(IndexConfig::default());
    ironpxe::state::source::ironic::load_cache(&restarted, &cache);
    assert_eq!(restarted.current().nodes().len(), 5);
    assert_eq!(restarted.current().ports().len(), 5);
}

#[tokio::test]
async fn bad_json_and_a_dead_ironic_are_errors_not_empty_states() {
    let srv = scripted_server(Arc::new(|_: &Seen| (200, vec![], "{\"nodes\": [".into())));
    let url = srv.base.clone();
    let client = Client::new(&config(&url)).expect("client");
    let store = Store::new(IndexConfig::default());
    let state = PollState::default();
    let cache = tempfile::tempdir().expect("tempdir").path().join("c.json");
    poll_once(&client, &store, &cache, &state).await;
    assert!(
        state
            .get()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("JSON"),
        "{:?}",
        state.get()
    );
    assert_eq!(store.current().errors.len(), 1);

    let dead = Client::new(&config("http://127.0.0.1:9")).expect("client");
    poll_once(&dead, &store, &cache, &state).await;
    assert_eq!(state.get().polls_failed, 2);
}

#[tokio::test]
async fn http_basic_credentials_are_sent_and_never_logged() {
    let srv = scripted_server(Arc::new(|req: &Seen| {
        // "admin:s3cret" in base64.
        if req.headers.get("authorization").map(String::as_str) == Some("Basic YWRtaW46czNjcmV0") {
            (200, vec![], r#"{"nodes": [], "ports": []}"#.into())
        } else {
            (401, vec![], "{}".into())
        }
    }));
    let url = srv.base.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").expect("write");
    let cfg = IronicConfig {
        auth: AuthKind::HttpBasic,
        username: Some("admin".into()),
        password_file: Some(pw),
        ..config(&url)
    };
    let client = Client::new(&cfg).expect("client");
    let store = Store::new(IndexConfig::default());
    let state = PollState::default();
    poll_once(&client, &store, &dir.path().join("c.json"), &state).await;
    assert_eq!(state.get().polls_ok, 1, "{:?}", state.get());
    assert_eq!(srv.requests().len(), 2, "nodes and ports");
    assert!(!format!("{cfg:?}").contains("s3cret"));
}

/// Keystone application credentials: a token is fetched once, reused, and fetched again
/// when Ironic says it is no longer valid.
#[tokio::test]
async fn keystone_token_is_reused_and_renewed() {
    let issued = Arc::new(Mutex::new(0u32));
    let counter = issued.clone();
    let srv = scripted_server(Arc::new(move |req: &Seen| {
        if req.path == "/v3/auth/tokens" && req.method == "POST" {
            let mut n = counter.lock().expect("lock");
            *n += 1;
            let token = format!("token-{n}");
            let body = r#"{"token": {"expires_at": "2999-01-01T00:00:00.000000Z"}}"#;
            return (201, vec![("X-Subject-Token".into(), token)], body.into());
        }
        match req.headers.get("x-auth-token").map(String::as_str) {
            // The first token is "revoked" after it has been used for one poll.
            Some("token-1") if req.path.starts_with("/v1/ports") => (401, vec![], "{}".into()),
            Some(t) if t.starts_with("token-") => {
                (200, vec![], r#"{"nodes": [], "ports": []}"#.into())
            }
            _ => (401, vec![], "{}".into()),
        }
    }));
    let url = srv.base.clone();
    let cfg = IronicConfig {
        auth: AuthKind::Keystone,
        keystone_url: Some(format!("{url}/v3")),
        application_credential_id: Some("cred-id".into()),
        application_credential_secret: Some("cred-secret".into()),
        ..config(&url)
    };
    let client = Client::new(&cfg).expect("client");
    let store = Store::new(IndexConfig::default());
    let state = PollState::default();
    let cache = tempfile::tempdir().expect("tempdir").path().join("c.json");
    poll_once(&client, &store, &cache, &state).await;
    assert_eq!(state.get().polls_ok, 1, "{:?}", state.get());
    assert_eq!(
        *issued.lock().expect("lock"),
        2,
        "renewed once after the 401"
    );
    poll_once(&client, &store, &cache, &state).await;
    assert_eq!(
        *issued.lock().expect("lock"),
        2,
        "the renewed token is reused"
    );
    let log = srv.requests();
    assert!(log
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .all(|r| r.headers.contains_key("x-auth-token")));
}

/// A node entry of a change probe, `updated_at` as given (`null` when `None`).
fn probed_node(i: usize, updated_at: Option<&str>) -> String {
    let stamp = updated_at
        .map(|s| format!("\"{s}\""))
        .unwrap_or_else(|| "null".into());
    format!(
        r#"{{"uuid": "00000000-0000-4000-8000-{i:012}", "provision_state": "active",
            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": {stamp}}}"#
    )
}

#[tokio::test]
async fn a_probe_whose_pages_never_end_is_cut_off_and_reported_incomplete() {
    use ironpxe::state::source::ironic::{Kind, SortKey};
    use ironpxe::state::source::refresh::Stamp;
    // Every page is full, every entry new, and there is always a next page.
    let srv = scripted_server(Arc::new(|req: &Seen| {
        // Pages follow by marker: the last entry's uuid, whose last digits number it.
        let page: usize = req
            .path
            .split("marker=")
            .nth(1)
            .and_then(|m| m.split('&').next())
            .and_then(|m| m.get(24..))
            .and_then(|m| m.parse::<usize>().ok())
            .map_or(0, |last| last / 5 + 1);
        let items: Vec<_> = (0..5)
            .map(|i| probed_node(page * 5 + i, Some("2026-12-03T18:00:00.000001+00:00")))
            .collect();
        let body = format!(
            r#"{{"nodes": [{}], "next": "http://x/v1/nodes?detail=True&sort_key=updated_at&sort_dir=desc&limit=5&marker={}"}}"#,
            items.join(","),
            page + 1
        );
        (200, vec![], body)
    }));
    let client = Client::new(&config(&srv.base)).expect("client");
    let cutoff = Stamp::parse("2026-12-03T17:00:00+00:00");
    let p = client
        .probe(Kind::Nodes, SortKey::UpdatedAt, "", cutoff, pages(5, 7))
        .await
        .expect("probe");
    assert!(!p.complete, "a probe that reached its page cap says so");
    assert_eq!(srv.hits(), 7, "bounded by the page cap");
    assert_eq!(p.entries.len(), 35);
    let last = &srv.requests()[6].path;
    assert!(
        last.ends_with("&marker=00000000-0000-4000-8000-000000000029")
            && last.contains("sort_key=updated_at"),
        "pages follow by marker, keeping the sort: {last}"
    );
    let first = &srv.requests()[0].path;
    assert!(
        first.contains("sort_key=updated_at")
            && first.contains("sort_dir=desc")
            && first.contains("detail=True")
            && first.contains("limit=2"),
        "limit capped by page_limit (2): {first}"
    );
}

#[tokio::test]
async fn a_probe_stops_at_the_first_null_and_a_future_stamp_does_not_move_its_mark() {
    use ironpxe::state::source::ironic::{Kind, SortKey};
    use ironpxe::state::source::refresh::Stamp;
    let srv = scripted_server(Arc::new(|_: &Seen| {
        let items = [
            probed_node(1, Some("2999-01-01T00:00:00+00:00")),
            probed_node(2, Some("2026-12-03T18:00:00+00:00")),
            probed_node(4, Some("not a time")),
            probed_node(3, None),
            probed_node(5, Some("2026-12-03T10:00:00+00:00")),
        ];
        let body = format!(
            r#"{{"nodes": [{}], "next": "http://x/v1/nodes?marker=again"}}"#,
            items.join(",")
        );
        (200, vec![], body)
    }));
    let client = Client::new(&config(&srv.base)).expect("client");
    let cutoff = Stamp::parse("2026-12-03T17:59:55+00:00");
    let p = client
        .probe(Kind::Nodes, SortKey::UpdatedAt, "", cutoff, pages(2, 20))
        .await
        .expect("probe");
    assert!(p.complete);
    assert_eq!(
        srv.hits(),
        1,
        "an entry older than the cutoff ends the probe"
    );
    let uuids: Vec<_> = p
        .entries
        .iter()
        .map(|e| e["uuid"].as_str().unwrap_or_default()[24..].to_owned())
        .collect();
    assert_eq!(
        uuids,
        vec!["000000000001", "000000000002", "000000000004"],
        "future and unparsable entries are taken in; a null one is the created_at probe's"
    );
    assert_eq!(p.top, Stamp::parse("2026-12-03T18:00:00+00:00"));
}

/// A probe's pages as the poller asks them when idle: two rows first, doubling to `limit`.
fn pages(limit: u32, max: usize) -> ironpxe::state::source::ironic::Pages {
    ironpxe::state::source::ironic::Pages {
        first: 2,
        limit,
        max,
    }
}
