//! A real OpenStack Ironic (PyPI `ironic==39.0.0`, the all-in-one `ironic` command, noauth,
//! sqlite) in a scratch directory, configured from `tests/fixtures/ironic/ironic-parking.conf`
//! so nodes park in every boot-relevant state and its PXE/iPXE interfaces write their boot
//! configs into `<dir>/tftpboot` and `<dir>/httpboot`.
//!
//! The venv comes from `.ci/ironic-venv` (installed once, cached under `target/`). Ironic runs
//! in its own process group and is stopped by that group's id (SIGTERM, bounded wait, SIGKILL)
//! on `stop` and on drop, also when a test fails. `start` after `stop` restarts it on the same
//! directory and port: nodes, states and written files survive.
//!
//! `[deploy] http_url` (`@IMG_PORT@`) is served by the tests' small HTTP server (GET and HEAD
//! of files under the scratch directory): Ironic checks with a HEAD request that the instance
//! image it copied under `httpboot/agent_images` is reachable before it parks a deploy.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http_server::HttpServer;
use super::{require, root};

/// The Ironic version `.ci/ironic-venv` installs.
pub const VERSION: &str = "39.0.0";

/// Source images the nodes' `driver_info` points at (`file://` URLs), with distinct contents.
pub const IMAGES: [&str; 4] = [
    "ipa.kernel",
    "ipa.initramfs",
    "rescue.kernel",
    "rescue.initramfs",
];

/// The venv holding Ironic, installed by `.ci/ironic-venv` when missing (never skipped).
pub fn venv() -> PathBuf {
    require("python3", "python3 python3-venv");
    require("flock", "util-linux");
    let out = Command::new("bash")
        .arg(root().join(".ci/ironic-venv"))
        .stdin(Stdio::null())
        .output()
        .expect("run .ci/ironic-venv");
    assert!(
        out.status.success(),
        "`bash .ci/ironic-venv` failed: it needs python3 >= 3.10 with venv \
         (`apt-get install python3 python3-venv`) and access to PyPI for ironic=={VERSION}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let venv = PathBuf::from(path.lines().last().unwrap_or_default());
    assert!(
        venv.join("bin/ironic").is_file(),
        "no bin/ironic in {}",
        venv.display()
    );
    venv
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A real Ironic API + conductor and the image server its config names.
pub struct Ironic {
    scratch: tempfile::TempDir,
    pub api_port: u16,
    pub img_port: u16,
    venv: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    images: HttpServer,
}

impl Ironic {
    /// Creates the scratch directory, config, images and database, then starts Ironic.
    pub fn start() -> Ironic {
        Self::start_with("")
    }

    /// [`Ironic::start`] with `extra_conf` appended to `ironic.conf` (oslo.config merges a
    /// section given twice), e.g. to make it emit notifications.
    pub fn start_with(extra_conf: &str) -> Ironic {
        require("curl", "curl");
        let venv = venv();
        let scratch = tempfile::Builder::new()
            .prefix("ironpxe-ironic-")
            .tempdir()
            .expect("scratch dir");
        let dir = scratch.path().to_owned();
        for sub in [
            "state",
            "tmp",
            "locks",
            "httpboot",
            "tftpboot",
            "images",
            "master_images",
            "tftp_master",
            "iso_master",
            "deploy_logs",
            "img_src",
        ] {
            fs::create_dir_all(dir.join(sub)).expect("scratch subdir");
        }
        for name in IMAGES {
            fs::write(
                dir.join("img_src").join(name),
                format!(
                    "ironpxe test image {name}: {}\n",
                    "x".repeat(name.len() * 37)
                ),
            )
            .expect("write image");
        }
        fs::write(dir.join("img_src/user.img"), vec![0x5a; 4096]).expect("write user image");

        let images = HttpServer::files(&dir);
        let api_port = free_port();
        let template = fs::read_to_string(root().join("tests/fixtures/ironic/ironic-parking.conf"))
            .expect("tests/fixtures/ironic/ironic-parking.conf");
        assert!(
            template.contains("\n[conductor]\n"),
            "no [conductor] section"
        );
        let conf_text = template
            .replace("@IRONIC_DIR@", &dir.to_string_lossy())
            .replace("@API_PORT@", &api_port.to_string())
            .replace("@IMG_PORT@", &images.addr.port().to_string())
            .replace(
                "\n[conductor]\n",
                &format!(
                    "\n[conductor]\nfile_url_allowed_paths = {}\n",
                    dir.join("img_src").display()
                ),
            );
        let conf = dir.join("ironic.conf");
        fs::write(&conf, format!("{conf_text}\n{extra_conf}\n")).expect("write ironic.conf");

        let t = Instant::now();
        let out = Command::new(venv.join("bin/ironic-dbsync"))
            .arg("--config-file")
            .arg(&conf)
            .arg("create_schema")
            .stdin(Stdio::null())
            .output()
            .expect("run ironic-dbsync");
        assert!(
            out.status.success(),
            "ironic-dbsync create_schema failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("ironic: schema created in {:.1?}", t.elapsed());

        let mut ironic = Ironic {
            scratch,
            api_port,
            img_port: images.addr.port(),
            venv,
            conf,
            child: None,
            images,
        };
        ironic.start_again();
        ironic
    }

    /// The scratch directory (Ironic's `state_path`, roots, database, log).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Ironic's TFTP root (PXE configs, `<uuid>/deploy_kernel` …).
    pub fn tftpboot(&self) -> PathBuf {
        self.dir().join("tftpboot")
    }

    /// Ironic's HTTP root (iPXE configs, `<uuid>/deploy_kernel` …).
    pub fn httpboot(&self) -> PathBuf {
        self.dir().join("httpboot")
    }

    /// A source image's `file://` URL and its bytes.
    pub fn image(&self, name: &str) -> (String, Vec<u8>) {
        let p = self.dir().join("img_src").join(name);
        let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (format!("file://{}", p.display()), bytes)
    }

    /// `driver_info` with every deploy and rescue image as a `file://` URL.
    pub fn driver_info(&self) -> Value {
        json!({
            "deploy_kernel": self.image("ipa.kernel").0,
            "deploy_ramdisk": self.image("ipa.initramfs").0,
            "rescue_kernel": self.image("rescue.kernel").0,
            "rescue_ramdisk": self.image("rescue.initramfs").0,
        })
    }

    /// `instance_info` for a whole-disk `file://` image. `image_type` must be given: without
    /// it Ironic 39 answers a deploy with HTTP 500 (`'str' object has no attribute 'url'`,
    /// `images.is_source_a_path` on a file:// URL).
    pub fn instance_info(&self) -> Value {
        json!({
            "image_source": format!("file://{}", self.dir().join("img_src/user.img").display()),
            "image_type": "whole-disk",
        })
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts `ironic` (API + conductor) in its own process group and waits, bounded, until
    /// the API answers and the conductor has registered `fake-hardware`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Ironic is already running");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("ironic.out"))
            .expect("ironic.out");
        let err = out.try_clone().expect("ironic.out");
        let t = Instant::now();
        let child = Command::new(self.venv.join("bin/ironic"))
            .arg("--config-file")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("spawn ironic");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = self.try_api("GET", "/v1/drivers", None);
            if code == 200 && body.to_string().contains("\"fake-hardware\"") {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "ironic exited with {status} before answering\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Ironic did not answer GET /v1/drivers with fake-hardware within 60 s\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("ironic: API up in {:.1?} on {}", t.elapsed(), self.url());
    }

    /// Stops Ironic: SIGTERM to its process group, a bounded wait, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        let t = Instant::now();
        signal_group(pgid, "TERM");
        if !wait_group(&mut child, pgid, Duration::from_secs(20)) {
            eprintln!("ironic: process group {pgid} ignored SIGTERM for 20 s; SIGKILL");
            signal_group(pgid, "KILL");
            if !wait_group(&mut child, pgid, Duration::from_secs(10)) {
                eprintln!("ironic: process group {pgid} still has processes after SIGKILL");
            }
        }
        eprintln!("ironic: stopped in {:.1?}", t.elapsed());
    }

    /// The last lines of Ironic's log and output, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        for name in ["ironic.out", "ironic.log"] {
            let text = fs::read_to_string(self.dir().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            s.push_str(&format!(
                "--- {name} (last 40 lines)\n{}\n",
                lines[from..].join("\n")
            ));
        }
        s
    }

    /// One API call with `curl`; (HTTP status, JSON body or Null). Status 0: no answer.
    pub fn try_api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url());
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "30", "-X", method])
            .args(["-H", "X-OpenStack-Ironic-API-Version: latest"])
            .args(["-H", "Accept: application/json"])
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd.arg(&url).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let json = serde_json::from_str(body).unwrap_or(Value::Null);
        (code.trim().parse().unwrap_or(0), json)
    }

    /// An API call that must succeed (2xx).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, json) = self.try_api(method, path, body);
        assert!(
            (200..300).contains(&code),
            "{method} {path} {}: HTTP {code}: {json}\n{}",
            body.map(Value::to_string).unwrap_or_default(),
            self.log_tail()
        );
        json
    }

    /// Enrols a `fake-hardware` node; `fields` adds or overrides node fields (interfaces,
    /// `automated_clean` …). Returns its UUID.
    pub fn create_node(&self, name: &str, fields: Value) -> String {
        let mut body = json!({
            "name": name,
            "driver": "fake-hardware",
            "driver_info": self.driver_info(),
            "instance_info": self.instance_info(),
        });
        if let (Some(obj), Some(more)) = (body.as_object_mut(), fields.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        let node = self.api("POST", "/v1/nodes", Some(&body));
        node["uuid"].as_str().expect("node uuid").to_owned()
    }

    /// Enrols a port; `client_id` goes to `extra.client-id` (an InfiniBand port).
    pub fn create_port(&self, node: &str, address: &str, client_id: Option<&str>) -> String {
        let mut body = json!({"address": address, "node_uuid": node});
        if let Some(c) = client_id {
            body["extra"] = json!({ "client-id": c });
        }
        let port = self.api("POST", "/v1/ports", Some(&body));
        port["uuid"].as_str().expect("port uuid").to_owned()
    }

    /// `PUT /v1/nodes/<uuid>/states/provision` with `{"target": target}` plus `extra` fields
    /// (`clean_steps`, `rescue_password` …).
    pub fn provision(&self, node: &str, target: &str, extra: Value) {
        let mut body = json!({ "target": target });
        if let (Some(obj), Some(more)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.api(
            "PUT",
            &format!("/v1/nodes/{node}/states/provision"),
            Some(&body),
        );
    }

    pub fn node(&self, node: &str) -> Value {
        self.api("GET", &format!("/v1/nodes/{node}"), None)
    }

    /// Waits (bounded) until the node's `provision_state` is `state` and no transition is
    /// in flight; fails at once, with `last_error`, if it lands elsewhere.
    pub fn wait_state(&self, node: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.node(node);
            let now = n["provision_state"].as_str().unwrap_or_default();
            let busy = !n["reservation"].is_null();
            if now == state && !busy {
                return;
            }
            let target = &n["target_provision_state"];
            assert!(
                !target.is_null() || busy,
                "node {} ({node}) is in {now:?}, not {state:?}: last_error {}\n{}",
                n["name"],
                n["last_error"],
                self.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "node {node} did not reach {state:?} within 30 s: {now:?} -> {target}, \
                 last_error {}\n{}",
                n["last_error"],
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one SQL statement on Ironic's own sqlite database (its `dbsync`'d schema) with
    /// `args` bound as parameters, through the venv's Python: for what the API refuses here,
    /// such as a conductor group no running conductor serves.
    pub fn sql(&self, statement: &str, args: &[&str]) {
        let db = self.dir().join("ironic.sqlite");
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], timeout=30)\n\
                 n = c.execute(sys.argv[2], sys.argv[3:]).rowcount\n\
                 c.commit()\n\
                 sys.exit(0 if n > 0 else 3)",
            ])
            .arg(&db)
            .arg(statement)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "SQL {statement:?} {args:?} on {} changed nothing or failed: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `provision` targets in order, waiting for each state.
    pub fn drive(&self, node: &str, steps: &[(&str, Value, &str)]) {
        for (target, extra, state) in steps {
            self.provision(node, target, extra.clone());
            self.wait_state(node, state);
        }
    }
}

impl Drop for Ironic {
    fn drop(&mut self) {
        self.stop();
        self.images.stop();
    }
}

fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Waits until the group leader is reaped and no live (non-zombie) process is left in the
/// group; false on timeout.
fn wait_group(leader: &mut Child, pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut reaped = false;
    loop {
        if !reaped {
            reaped = matches!(leader.try_wait(), Ok(Some(_)) | Err(_));
        }
        if reaped && !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether any process in the group is alive (zombies waiting for a reaper do not count).
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[0] != "X" && f[2] == pgid.to_string()
    })
}
