//! `[ironic.notifications]` against a real RabbitMQ and a real Ironic 39 configured to emit
//! its versioned notifications there: with the change probes an hour apart, a PATCH, a
//! provision-state change, a new port and a deleted node reach ironpxe's answers through
//! the message bus alone; with the broker stopped ironpxe keeps serving and a replica with a
//! short `interval_secs` falls back to probing; when the broker is back both reconnect and
//! resync.

mod common;

use std::time::{Duration, Instant};

use common::ironic::Ironic;
use common::rabbitmq::RabbitMq;
use common::*;
use serde_json::json;

/// How long any change may take to be served before the test fails naming it. Generous: a
/// loaded CI machine; the speed is not what is tested.
const WAIT: Duration = Duration::from_secs(30);

fn served(px: &Ironpxe, mac: &str) -> (u16, String) {
    px.get(&format!("/ipxe/{mac}"))
}

/// Polls `cond` until it holds, for up to [`WAIT`]; fails naming `what` with both logs.
fn wait_for(what: &str, px: &Ironpxe, ironic: &Ironic, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < WAIT,
            "never arrived within {WAIT:?}: {what}\n--- ironpxe log\n{}\n{}",
            px.log(),
            ironic.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("notify: {what}: {:.1?}", t.elapsed());
    t.elapsed()
}

/// Publishes raw bodies to Ironic's exchange as Ironic would (routing key
/// `ironic_versioned_notifications.info`), with the venv's kombu (Ironic's own AMQP client).
fn publish(rabbit: &RabbitMq, bodies: &[&str]) {
    let out = std::process::Command::new(common::ironic::venv().join("bin/python"))
        .args([
            "-c",
            "import kombu, sys\n\
             with kombu.Connection(sys.argv[1]) as c:\n\
             \x20   p = c.Producer(exchange=kombu.Exchange('ironic', type='topic', durable=False))\n\
             \x20   for b in sys.argv[2:]:\n\
             \x20       p.publish(b.encode(), routing_key='ironic_versioned_notifications.info',\n\
             \x20                 content_type='application/json', content_encoding='utf-8')\n",
        ])
        .arg(rabbit.transport_url().replace("rabbit://", "amqp://"))
        .args(bodies)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "publishing with kombu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_ironpxe(ironic: &Ironic, rabbit: &RabbitMq, interval_secs: u64) -> Ironpxe {
    Ironpxe::start_with(Options {
        toml: format!(
            "[ironic]\nurl = \"{}\"\ninterval_secs = {interval_secs}\nreconcile_secs = 3600\n\
             [ironic.notifications]\nurl = \"{}\"\npassword = \"guest\"\nprobe_secs = 3600\n",
            ironic.url(),
            rabbit.url()
        ),
        state: vec![],
        ..Options::default()
    })
}

/// The stream is up (connect number `connects`) and a refresh has completed. The connect's
/// resync is one probe round after the queue was bound, unless the walk started after it
/// and took the request; the settling second lets that round finish, so from here on a
/// change reaches a replica with `interval_secs = 3600` only through a notification (the
/// test checks that no probe round ran: good polls == applied bursts).
fn wait_consuming(px: &Ironpxe, ironic: &Ironic, connects: f64) {
    wait_for(
        &format!("connect #{connects} to the broker"),
        px,
        ironic,
        || {
            px.metric("ironpxe_ironic_notification_stream_up") == 1.0
                && px.metric("ironpxe_ironic_notification_connects_total") >= connects
                && px.metric("ironpxe_ironic_polls_total{outcome=\"ok\"}") >= 1.0
        },
    );
    std::thread::sleep(Duration::from_secs(1));
}

#[test]
fn notifications_carry_changes_and_the_stream_falls_back_to_probing_and_reconnects() {
    let t0 = Instant::now();
    let mut rabbit = RabbitMq::start();
    let ironic = Ironic::start_with(&format!(
        "[DEFAULT]\nnotification_level = info\n\
         [oslo_messaging_notifications]\ndriver = messagingv2\ntransport_url = {}\nretry = 2\n\
         [oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\n",
        rabbit.transport_url()
    ));
    // A node parked in `inspect wait` (Ironic accepts PATCHes there), one in `enroll` to
    // delete, both with a port.
    let (mac_a, mac_b, mac_new, mac_late) = (
        "52:54:00:4e:00:01",
        "52:54:00:4e:00:02",
        "52:54:00:4e:00:03",
        "52:54:00:4e:00:04",
    );
    let a = ironic.create_node(
        "notify-a",
        json!({"boot_interface": "ipxe", "deploy_interface": "direct", "inspect_interface": "agent"}),
    );
    ironic.create_port(&a, mac_a, None);
    ironic.drive(
        &a,
        &[
            ("manage", json!({}), "manageable"),
            ("inspect", json!({}), "inspect wait"),
        ],
    );
    let b = ironic.create_node("notify-b", json!({}));
    ironic.create_port(&b, mac_b, None);
    eprintln!("notify: Ironic ready at {:.1?}", t0.elapsed());

    // Replica 1 probes once an hour whatever happens; replica 2 every second while the
    // stream is down.
    let px = start_ironpxe(&ironic, &rabbit, 3600);
    let px2 = start_ironpxe(&ironic, &rabbit, 1);
    wait_consuming(&px, &ironic, 1.0);
    wait_consuming(&px2, &ironic, 1.0);
    let (code, body) = served(&px, mac_a);
    assert!(
        code == 200 && body.contains("inspect") && !body.contains("rescue.kernel"),
        "{code} {body}"
    );
    let polls = px.metric("ironpxe_ironic_polls_total{outcome=\"ok\"}");
    let batches0 = px.metric("ironpxe_ironic_notification_batches_total");

    // (a) A PATCH of driver_info in inspect wait.
    let (rescue_kernel, _) = ironic.image("rescue.kernel");
    ironic.api(
        "PATCH",
        &format!("/v1/nodes/{a}"),
        Some(&json!([{"op": "replace", "path": "/driver_info/deploy_kernel", "value": rescue_kernel}])),
    );
    wait_for("the PATCHed deploy kernel", &px, &ironic, || {
        served(&px, mac_a).1.contains("rescue.kernel")
    });
    // Ironic's update.end payload has driver_info: the node was made from it, not read.
    let reads = |outcome: &str| {
        px.metric(&format!(
            "ironpxe_ironic_notification_node_reads_total{{outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(reads("get"), 0.0, "the PATCH cost a GET");
    assert!(reads("payload") >= 1.0, "{}", reads("payload"));

    // (b) A provision-state change: abort inspect wait -> inspect failed.
    ironic.provision(&a, "abort", json!({}));
    wait_for(
        "the aborted inspection (inspect failed)",
        &px,
        &ironic,
        || {
            let (_, body) = served(&px, mac_a);
            body.contains("inspect failed")
        },
    );

    // (c) A port created.
    assert_eq!(served(&px, mac_new).0, 404);
    ironic.create_port(&a, mac_new, None);
    wait_for("the new port", &px, &ironic, || {
        served(&px, mac_new).0 == 200
    });

    // (d) A node deleted (with its port).
    assert_eq!(served(&px, mac_b).0, 200);
    ironic.api("DELETE", &format!("/v1/nodes/{b}"), None);
    wait_for("the deleted node", &px, &ironic, || {
        served(&px, mac_b).0 == 404
    });

    // Only notifications carried these: every good poll since is an applied burst, no
    // probe round ran.
    let batches = px.metric("ironpxe_ironic_notification_batches_total");
    assert!(
        batches - batches0 >= 4.0,
        "{batches} bursts for four changes"
    );
    assert_eq!(
        px.metric("ironpxe_ironic_polls_total{outcome=\"ok\"}") - polls,
        batches - batches0,
        "a probe round ran although probes are an hour apart"
    );
    assert_eq!(
        px.metric("ironpxe_ironic_refresh_total{what=\"walk\"}"),
        1.0
    );
    assert!(px.metric("ironpxe_ironic_notifications_total{kind=\"node\"}") >= 4.0);
    assert!(px.metric("ironpxe_ironic_notifications_total{kind=\"port\"}") >= 1.0);
    assert_eq!(px.metric("ironpxe_ironic_notification_errors_total"), 0.0);

    // A power change names the node but changes nothing ironpxe reads: no GET.
    let gets = px.metric("ironpxe_ironic_notification_node_reads_total{outcome=\"get\"}");
    let same = px.metric("ironpxe_ironic_notification_node_reads_total{outcome=\"unchanged\"}");
    // The abort's events: a read (a PATCH's update.end is its own payload, a deletion's
    // events read nothing, a port's final payload is taken as it is).
    assert!(gets >= 1.0, "{gets} node GETs for an abort");
    ironic.api(
        "PUT",
        &format!("/v1/nodes/{a}/states/power"),
        Some(&json!({"target": "power on"})),
    );
    wait_for(
        "the power change's events taken without a GET",
        &px,
        &ironic,
        || px.metric("ironpxe_ironic_notification_node_reads_total{outcome=\"unchanged\"}") > same,
    );
    std::thread::sleep(Duration::from_millis(500)); // the .end event, if it came apart
    assert_eq!(
        px.metric("ironpxe_ironic_notification_node_reads_total{outcome=\"get\"}"),
        gets,
        "a power change cost a GET"
    );

    // Hostile bodies on the same exchange are counted and skipped; the stream stays up.
    publish(
        &rabbit,
        &[
            r#"{"oslo.version": "2.0", "oslo.message": "{"}"#,
            r#"{"event_type": "baremetal.node.update.end", "payload": {}}"#,
            "not json at all",
        ],
    );
    wait_for(
        "three unreadable notifications counted",
        &px,
        &ironic,
        || px.metric("ironpxe_ironic_notification_errors_total") == 3.0,
    );
    assert_eq!(px.metric("ironpxe_ironic_notification_stream_up"), 1.0);
    assert_eq!(px.metric("ironpxe_ironic_notification_connects_total"), 1.0);

    // (e) The broker goes away: both keep serving; replica 2 probes every second again.
    rabbit.stop();
    for p in [&px, &px2] {
        wait_for("the stream marked down", p, &ironic, || {
            p.metric("ironpxe_ironic_notification_stream_up") == 0.0
        });
        assert_eq!(served(p, mac_a).0, 200, "still serving without the broker");
    }
    ironic.api(
        "PATCH",
        &format!("/v1/nodes/{a}"),
        Some(&json!([{"op": "replace", "path": "/name", "value": "renamed-while-down"}])),
    );
    wait_for(
        "the PATCH made while the broker was down, by probing (replica 2)",
        &px2,
        &ironic,
        || served(&px2, mac_a).1.contains("renamed-while-down"),
    );

    // (f) The broker is back: both reconnect; replica 1 (probes hourly) catches the change
    // it missed through the reconnect's resync, and the next change through a notification.
    rabbit.start_again();
    wait_consuming(&px, &ironic, 2.0);
    wait_consuming(&px2, &ironic, 2.0);
    wait_for(
        "the missed PATCH, by the reconnect's resync (replica 1)",
        &px,
        &ironic,
        || served(&px, mac_a).1.contains("renamed-while-down"),
    );
    ironic.create_port(&a, mac_late, None);
    wait_for(
        "a port created after the reconnect (replica 1)",
        &px,
        &ironic,
        || served(&px, mac_late).0 == 200,
    );
    let health = px.get("/healthz");
    assert!(health.1.contains("\"status\":\"ok\""), "{health:?}");
    assert!(
        px.log().contains("Ironic notification stream lost"),
        "no warning about the lost stream:\n{}",
        px.log()
    );
    eprintln!("notify: done in {:.1?}", t0.elapsed());
}
