//! Template faults: runaway templates (cycles, huge loops) and a render that runs for
//! minutes.

use super::*;

/// Templates with an include cycle and with a loop of 10^11 items are refused: the last good
/// set keeps serving, the problem is reported naming the template, the process survives (its
/// address space is capped so a runaway allocation kills only it), and a fix is picked up.
#[test]
fn runaway_templates_are_refused_and_the_last_good_set_serves() {
    let tdir = tempfile::tempdir().expect("templates dir");
    for e in fs::read_dir(root().join("templates"))
        .expect("templates")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "tera") {
            fs::copy(e.path(), tdir.path().join(e.file_name())).expect("copy template");
        }
    }
    let s = Ironpxe::start_with(Options {
        toml: format!(
            "templates = {:?}\n[render]\ntrial_budget_ms = 2000\n",
            tdir.path()
        ),
        ..Options::default()
    });
    let pid = server_pid(&s);
    cap_memory(pid, 2 << 30);
    let original = fs::read_to_string(tdir.path().join("pxelinux.tera")).expect("read");
    let good = tftp_text(&s, IB_CFG).expect("config");
    assert!(good.contains("default deploy"), "{good}");
    let alive = |what: &str| {
        assert!(
            !exited(pid),
            "ironpxe died on {what}\n{}",
            tail(&s.log(), 30)
        );
        healthy(&s);
    };
    // A broken edit since log offset `mark`: refused, reported naming `template`, the process
    // alive, and `last_good` still served.
    let refused = |what: &str, mark: usize, template: &str, last_good: &str| {
        wait_for(&s, what, Duration::from_secs(30), || {
            metric(&s, "ironpxe_template_errors") > 0.0
        });
        alive(what);
        assert!(
            s.log()[mark..].contains(template),
            "the log names the template:\n{}",
            &s.log()[mark..]
        );
        assert_eq!(
            tftp_text(&s, IB_CFG).expect("served"),
            last_good,
            "last good set"
        );
    };

    // An include that includes itself.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("loop.tera"),
        "{% include \"loop.tera\" %}\n",
    )
    .expect("write");
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{{% include \"loop.tera\" %}}\n"),
    )
    .expect("write");
    refused("an include cycle", mark, "loop.tera", &good);
    assert!(hget(&s, "/healthz").1.contains("\"degraded\""));
    fs::write(tdir.path().join("loop.tera"), "# LOOP-FIXED\n").expect("write");
    wait_for(
        &s,
        "the fixed include served",
        Duration::from_secs(20),
        || {
            metric(&s, "ironpxe_template_errors") == 0.0
                && tftp_text(&s, IB_CFG).is_ok_and(|c| c.contains("LOOP-FIXED"))
        },
    );
    let fixed = tftp_text(&s, IB_CFG).expect("config");

    // A loop of 10^11 items.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{{% for i in range(end=100000000000) %}}x{{% endfor %}}\n"),
    )
    .expect("write");
    refused("a loop of 10^11 items", mark, "pxelinux.tera", &fixed);
    let recovered = |what: &str| {
        fs::write(tdir.path().join("pxelinux.tera"), &original).expect("restore");
        wait_for(&s, what, Duration::from_secs(20), || {
            metric(&s, "ironpxe_template_errors") == 0.0
        });
    };
    recovered("recovery from the loop");
    let good = tftp_text(&s, IB_CFG).expect("config");

    // A macro that calls itself: refused before any render (it would overflow the stack and
    // abort the process), naming the file, the line and the chain.
    let mark = s.log().len();
    fs::write(
        tdir.path().join("macros.tera"),
        "{# helpers #}\n{% macro f(n) %}{{ self::f(n=n+1) }}{% endmacro f %}\n",
    )
    .expect("write");
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{{% import \"macros.tera\" as m %}}{{{{ m::f(n=1) }}}}\n{original}"),
    )
    .expect("write");
    refused(
        "a self-recursive macro",
        mark,
        "macros.tera: macro f (line 2) -> macros.tera: macro f",
        &good,
    );
    fs::remove_file(tdir.path().join("macros.tera")).expect("remove");
    recovered("recovery from the recursive macro");

    // Loops within the `range` bound that together run for minutes: the trial render is
    // stopped at its budget — its worker killed — and nothing keeps burning CPU.
    let mark = s.log().len();
    let cubic = "{% for i in range(end=10000) %}{% for j in range(end=10000) %}{% for k in range(end=10000) %}{% endfor %}{% endfor %}{% endfor %}";
    fs::write(
        tdir.path().join("pxelinux.tera"),
        format!("{original}{cubic}\n"),
    )
    .expect("write");
    refused("loops that run for minutes", mark, "stopped", &good);
    assert!(s.log()[mark..].contains("trial render ran longer than 2000 ms"));
    let before = cpu_ticks_of_tree(pid);
    thread::sleep(Duration::from_secs(3));
    let burnt = cpu_ticks_of_tree(pid) - before;
    assert!(
        burnt < 50,
        "CPU keeps burning after the refusal: {burnt} ticks in 3 s (server and its workers)"
    );
    fs::write(tdir.path().join("pxelinux.tera"), &original).expect("restore");
    wait_for(&s, "recovery", Duration::from_secs(20), || {
        metric(&s, "ironpxe_template_errors") == 0.0
            && tftp_text(&s, IB_CFG).is_ok_and(|c| c == good)
    });
    alive("recovery");
    for l in s.log().lines().filter(|l| l.contains("template error")) {
        eprintln!("{l}");
    }
}

/// A node whose render runs for minutes (a template loop that only its data triggers, so the
/// trial render passes): its render is stopped at the budget, the client gets an error
/// (TFTP ERROR with a message, HTTP 503), the node shows the problem, a retry storm does not
/// render it again — and twenty other clients on the same TFTP thread are served meanwhile.
#[test]
fn a_slow_render_stalls_no_one_and_is_remembered() {
    let _serial = serial();
    let tdir = tempfile::tempdir().expect("templates dir");
    let slow = "{% if node and node.name == \"slow\" %}{% for i in range(end=10000) %}{% for j in range(end=10000) %}{% for k in range(end=10000) %}{% endfor %}{% endfor %}{% endfor %}{% endif %}";
    for e in fs::read_dir(root().join("templates"))
        .expect("templates")
        .flatten()
    {
        let text = fs::read_to_string(e.path()).expect("template");
        let text = match e.file_name().to_str() {
            Some("pxelinux.tera" | "ipxe.tera") => format!("{slow}{text}"),
            _ => text,
        };
        fs::write(tdir.path().join(e.file_name()), text).expect("copy template");
    }
    let node = |name: &str, i: u32| {
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        let json = format!(
            r#"{{"uuid": "{uuid}", "name": "{name}", "provision_state": "deploying",
                "driver_info": {{"deploy_kernel": "http://192.0.2.1/k", "deploy_ramdisk": "http://192.0.2.1/r"}},
                "ports": [{{"address": "52:54:00:00:{:02x}:{:02x}", "node_uuid": "{uuid}", "pxe_enabled": true}}]}}"#,
            i / 256,
            i % 256
        );
        (format!("{name}.json"), json)
    };
    let mut opts = Options {
        toml: format!(
            "templates = {:?}\n[render]\nbudget_ms = 1000\n[tftp]\nthreads = 1\n",
            tdir.path()
        ),
        ..Options::default()
    };
    opts.state.push(node("slow", 500));
    for i in 1..=20 {
        opts.state.push(node(&format!("fast-{i}"), i));
    }
    let s = Ironpxe::start_with(opts);
    let pid = server_pid(&s);
    let cfg = |i: u32| {
        format!(
            "pxelinux.cfg/01-52-54-00-00-{:02x}-{:02x}",
            i / 256,
            i % 256
        )
    };

    // The slow node first, then twenty others on the same (single) TFTP thread.
    let server = s.tftp;
    let slow_client = thread::spawn(move || {
        let opts = ClientOpts {
            deadline: Duration::from_secs(30),
            ..ClientOpts::default()
        };
        tftp::get(&udp(lo(9, 9, 9)), server, &cfg(500), &opts).result
    });
    thread::sleep(Duration::from_millis(100));
    let fast: Vec<_> = (1..=20)
        .map(|i| {
            thread::spawn(move || {
                // Far below the minutes the slow render would take if it blocked the thread.
                let opts = ClientOpts {
                    deadline: Duration::from_secs(10),
                    ..ClientOpts::default()
                };
                let got = tftp::get(&udp(lo(9, 1, i as u8)), server, &cfg(i), &opts).result;
                (i, got)
            })
        })
        .collect();
    for c in fast {
        let (i, got) = c.join().expect("client");
        let text = got.unwrap_or_else(|e| panic!("fast-{i} not served while slow renders: {e:?}"));
        assert!(
            String::from_utf8_lossy(&text).contains(&format!("fast-{i} ")),
            "fast-{i}"
        );
    }
    match slow_client.join().expect("slow client") {
        Err(Failure::Error { code, message }) => {
            assert_eq!(code, 0);
            assert!(message.contains("cannot render"), "{message}");
        }
        other => panic!("the slow node's client must get a TFTP error: {other:?}"),
    }
    let (code, _) = hget(&s, "/ipxe/52:54:00:00:01:f4");
    assert_eq!(code, 503, "over budget over HTTP");
    assert_eq!(
        metric(&s, "ironpxe_renders_stopped_total"),
        2.0,
        "one per format"
    );

    // Visible to the operator: health, problems API, the log.
    let (_, health) = hget(&s, "/healthz");
    assert!(
        health.contains("\"degraded\"") && health.contains("\"node_problems\":1"),
        "{health}"
    );
    let admin = s.admin.expect("admin listens");
    let problems = curl(&["-sf", &format!("http://{admin}/api/v1/problems")]);
    let problems = String::from_utf8_lossy(&problems.stdout).into_owned();
    assert!(
        problems.contains("00000000-0000-4000-8000-000000000500") && problems.contains("budget"),
        "{problems}"
    );

    // A retry storm: remembered for this template generation and node revision.
    for _ in 0..5 {
        let opts = ClientOpts {
            deadline: Duration::from_secs(10),
            ..ClientOpts::default()
        };
        assert!(matches!(
            tftp(&s, lo(9, 9, 8), &cfg(500), &opts).result,
            Err(Failure::Error { .. })
        ));
        assert_eq!(hget(&s, "/ipxe/52:54:00:00:01:f4").0, 503);
    }
    assert_eq!(
        metric(&s, "ironpxe_renders_stopped_total"),
        2.0,
        "not rendered again"
    );
    let before = cpu_ticks_of_tree(pid);
    thread::sleep(Duration::from_secs(2));
    assert!(
        cpu_ticks_of_tree(pid) - before < 50,
        "nothing keeps rendering"
    );

    // A new revision of the node is rendered again (and is fine now).
    let fixed = node("slow", 500)
        .1
        .replace("\"slow\"", "\"no-longer-slow\"");
    fs::write(s.state.path().join("slow.json"), fixed).expect("update node");
    wait_for(
        &s,
        "the renamed node served",
        Duration::from_secs(20),
        || tftp_text(&s, &cfg(500)).is_ok_and(|t| t.contains("no-longer-slow")),
    );
    wait_for(&s, "the problem cleared", Duration::from_secs(10), || {
        hget(&s, "/healthz").1.contains("\"node_problems\":0")
    });
}
