//! What taking in one changed node costs ironpxe at fleet scale: the store's full build of
//! the snapshot (a new source, or a change a patch cannot settle) against a patch of the
//! previous snapshot (what a notified change gets), and the image cache's needs decided for
//! every node (what every generation cost before they followed the changes).
//!
//!     cargo bench --bench publish              N = 10 000 and 100 000
//!     cargo bench --bench publish -- 2000      any N
//!
//! Nodes are copies of the parked nodes Ironic's API returned (`tests/fixtures/ironic/`),
//! one port each, sorted by UUID as the Ironic source keeps them. Prints a Markdown table
//! (medians of 15 rounds). Reports only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpxe::model::boot::BootConfig;
use ironpxe::model::node::{Node, Port, StateDoc};
use ironpxe::state::{IndexConfig, SourceId, Store, Update};
use serde_json::Value;

const ROUNDS: usize = 15;

fn fixture(name: &str, key: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/ironic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v[key].as_array().cloned().unwrap_or_default()
}

/// Node `i` (a copy of a parked node) and its port; `tag` makes a changed copy.
fn node_and_port(nodes: &[Value], port: &Value, i: usize, tag: u32) -> (Arc<Node>, Arc<Port>) {
    let uuid = format!("{i:08x}-0000-4000-8000-{i:012x}");
    let mut n = nodes[i % nodes.len()].clone();
    n["uuid"] = uuid.clone().into();
    n["name"] = format!("node-{i}-{tag}").into();
    let mut p = port.clone();
    p["uuid"] = format!("{i:08x}-1111-4000-8000-{i:012x}").into();
    p["node_uuid"] = uuid.into();
    p["address"] = format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        i >> 24,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
    .into();
    p["extra"] = serde_json::json!({});
    let node = serde_json::from_value(n).expect("a parked node parses");
    let port = serde_json::from_value(p).expect("a parked port parses");
    (Arc::new(node), Arc::new(port))
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn measure(n: usize, nodes: &[Value], port: &Value) -> [Duration; 3] {
    let mut doc = StateDoc::default();
    for i in 0..n {
        let (node, port) = node_and_port(nodes, port, i, 0);
        doc.nodes.push(node);
        doc.ports.push(port);
    }
    let id = SourceId::new(0, "ironic-api");
    let update = |d: &StateDoc| {
        let copy = StateDoc {
            nodes: d.nodes.clone(),
            ports: d.ports.clone(),
        };
        vec![(id.clone(), Update::Replace(copy))]
    };
    let full = (0..ROUNDS)
        .map(|_| {
            let store = Store::new(IndexConfig::default());
            let t = Instant::now();
            store.apply(update(&doc));
            t.elapsed()
        })
        .collect();
    let store = Store::new(IndexConfig::default());
    store.apply(update(&doc));
    let patch = (1..=ROUNDS)
        .map(|round| {
            let i = round * 7919 % n;
            doc.nodes[i] = node_and_port(nodes, port, i, round as u32).0;
            let t = Instant::now();
            let snap = store.apply(update(&doc));
            let took = t.elapsed();
            assert_eq!(snap.changes.modified.len(), 1, "one node changed");
            took
        })
        .collect();
    let cfg = BootConfig {
        ipa_api_url: Some("http://192.0.2.1:6385".into()),
        ..BootConfig::default()
    };
    let snap = store.current();
    let images = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(ironpxe::serving::images::needed_images(&snap, &cfg));
            t.elapsed()
        })
        .collect();
    [median(full), median(patch), median(images)]
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let ns = if ns.is_empty() {
        vec![10_000, 100_000]
    } else {
        ns
    };
    let nodes = fixture("nodes-parked.json", "nodes");
    let ports = fixture("ports-parked.json", "ports");
    let port = ports.first().expect("a parked port");
    println!("| nodes | full build of the snapshot | patch: one node changed | image needs of every node |");
    println!("|---|---|---|---|");
    for n in ns {
        let [full, patch, images] = measure(n, &nodes, port);
        println!("| {n} | {} | {} | {} |", ms(full), ms(patch), ms(images));
    }
}
