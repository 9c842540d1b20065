//! Test harness: a real `ironpxe serve` process on loopback with a private state directory
//! and real client tools. For what the tools cannot send: [`tftp`], the one TFTP client, and
//! [`http_client`], the one raw HTTP client (both shared with benches/loadgen);
//! [`http_server`] is the one small HTTP server the tests stand up.
#![allow(dead_code)] // each test binary uses a different part

pub mod guest;
pub mod http_client;
pub mod http_server;
pub mod ironic;
pub mod rabbitmq;
pub mod tftp;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a one-shot `ironpxe` command from the checkout, as an operator would.
pub fn ironpxe_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironpxe"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run ironpxe")
}

/// Fails (never skips) when a client tool is missing, saying how to install it.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install {package}` (bash .ci/run does)"
    );
}

/// A running `ironpxe serve`, killed on drop; its log is captured for assertions.
pub struct Ironpxe {
    child: Child,
    pub http: SocketAddr,
    /// The admin API/page address (`[admin] listen`).
    pub admin: Option<SocketAddr>,
    pub tftp: SocketAddr,
    pub state: tempfile::TempDir,
    pub work: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

pub struct Options {
    /// Extra TOML appended to the generated config.
    pub toml: String,
    /// Files to put in the state directory.
    pub state: Vec<(String, String)>,
    /// TFTP listen addresses (port 0: any free port).
    pub tftp_listen: Vec<String>,
    pub http_listen: String,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        let mut state = Vec::new();
        for e in fs::read_dir(root().join("examples/state")).expect("examples/state") {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            state.push((name, fs::read_to_string(&p).expect("read example")));
        }
        Options {
            toml: String::new(),
            state,
            tftp_listen: vec!["127.0.0.1:0".into()],
            http_listen: "127.0.0.1:0".into(),
            netns: None,
        }
    }
}

impl Ironpxe {
    pub fn start() -> Ironpxe {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Ironpxe {
        let state = tempfile::tempdir().expect("state dir");
        let work = tempfile::tempdir().expect("work dir");
        for (name, body) in &opts.state {
            fs::write(state.path().join(name), body).expect("write state");
        }
        let tftp_root = work.path().join("tftp-root");
        fs::create_dir(&tftp_root).expect("tftp root");
        let config = work.path().join("ironpxe.toml");
        // A top-level `templates = …` or `image_cache_dir = …` in `opts.toml` replaces the
        // harness's (TOML refuses a duplicate key; `Options` gains no field since tests build
        // it in full).
        let sets = |key: &str| {
            opts.toml
                .lines()
                .map(str::trim_start)
                .take_while(|l| !l.starts_with('['))
                .any(|l| l.split('=').next().map(str::trim) == Some(key))
        };
        let templates = if sets("templates") {
            String::new()
        } else {
            format!("templates = {:?}\n", root().join("templates"))
        };
        let cache = if sets("image_cache_dir") {
            String::new()
        } else {
            format!("image_cache_dir = {:?}\n", work.path().join("images"))
        };
        // The example state's images are on http://127.0.0.1:8080, ironpxe's own HTTP server
        // in the default config (allowed by default) but not in tests (another port): allow
        // it explicitly, unless the test writes its own `[images]` section.
        let own_images = opts.toml.lines().any(|l| {
            l.trim_start().starts_with("[images]") || l.trim_start().starts_with("images.")
        });
        let images = if own_images {
            ""
        } else {
            "images.allowed_urls = [\"*\", \"http://127.0.0.1:8080/\"]\n"
        };
        let toml = format!(
            "state_dir = {:?}\n{templates}tftp_root = {:?}\n{cache}\
             tftp_listen = {:?}\nhttp_listen = {:?}\nadmin.listen = \"127.0.0.1:0\"\n{images}{}",
            state.path(),
            tftp_root,
            opts.tftp_listen,
            opts.http_listen,
            opts.toml
        );
        fs::write(&config, toml).expect("write config");
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ironpxe")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ironpxe")),
        };
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ironpxe");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ironpxe serving") {
                    let _ = tx.send(line.clone());
                }
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "ironpxe did not start: {}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        };
        let http = field(&ready, "http=").parse().expect("http addr");
        let tftp = field(&ready, "tftp=[")
            .trim_end_matches([']', ','])
            .parse()
            .expect("tftp addr");
        let admin = ready
            .split("admin=Some(")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|a| a.parse().ok());
        Ironpxe {
            child,
            http,
            admin,
            tftp,
            state,
            work,
            log,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's render worker processes (`ironpxe __render-worker`, its children).
    pub fn render_workers(&self) -> Vec<u32> {
        let mut workers = Vec::new();
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid())).expect("/proc tasks");
        for task in tasks.map_while(Result::ok) {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("__render-worker") {
                    workers.push(pid);
                }
            }
        }
        workers
    }

    /// Sends a signal (`HUP`, `TERM` …) to the server.
    pub fn signal(&self, sig: &str) {
        signal_pid(self.pid(), sig);
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn tftp_root(&self) -> PathBuf {
        self.work.path().join("tftp-root")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `curl -s` a path; returns (HTTP status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let out = curl(&["-s", "-w", "\n%{http_code}", &self.url(path)]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.parse().unwrap_or(0), body.to_owned())
    }

    /// A metric's value from `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Fetches over TFTP with `curl` (non-zero exit on a TFTP error); `Err(exit code)`.
    pub fn tftp_get(&self, name: &str, extra: &[&str]) -> Result<Vec<u8>, i32> {
        let url = format!("tftp://{}/{name}", self.tftp);
        let mut args = vec!["-s", "--max-time", "20"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = curl(&args);
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }

    /// Polls `cond` until it holds; bounded.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Ironpxe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal (`HUP`, `STOP` …) to a process; fails the test when `kill` does.
pub fn signal_pid(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

pub fn curl(args: &[&str]) -> Output {
    require("curl", "curl");
    Command::new("curl").args(args).output().expect("run curl")
}

/// Writes `len` bytes of a deterministic pattern.
pub fn pattern_file(path: &Path, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    fs::write(path, &data).expect("write pattern");
    data
}

/// The kernel and initrd references of a PXELINUX config (`kernel …`, `initrd=…`).
pub fn pxelinux_images(cfg: &str) -> (String, String) {
    let kernel = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("kernel "))
        .unwrap_or_else(|| panic!("no kernel line: {cfg}"))
        .to_owned();
    let initrd = cfg
        .split_whitespace()
        .find_map(|w| w.strip_prefix("initrd="))
        .unwrap_or_else(|| panic!("no initrd: {cfg}"))
        .to_owned();
    (kernel, initrd)
}
