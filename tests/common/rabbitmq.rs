//! A real RabbitMQ (Debian's `rabbitmq-server`) for tests: its own epmd and broker as child
//! processes in their own process groups, every file in a scratch directory, every socket on
//! 127.0.0.1 (AMQP, Erlang distribution and epmd on free ports; a unique node name), stopped
//! on drop. Runs as root or as any user: no system service, no `rabbitmq` user.

use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ironic::free_port;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

pub struct RabbitMq {
    scratch: tempfile::TempDir,
    pub port: u16,
    epmd_port: u16,
    dist_port: u16,
    node: String,
    epmd: Option<Child>,
    server: Option<Child>,
}

impl RabbitMq {
    /// Starts epmd and the broker and waits, bounded, until AMQP accepts connections.
    pub fn start() -> RabbitMq {
        assert!(
            std::path::Path::new(SERVER).exists(),
            "{SERVER} is missing: install it with `apt-get install rabbitmq-server` (bash .ci/run does)"
        );
        super::require("epmd", "erlang-base");
        let scratch = tempfile::Builder::new()
            .prefix("ironpxe-rabbitmq-")
            .tempdir()
            .expect("scratch dir");
        let dir = scratch.path();
        for sub in ["mnesia", "log"] {
            fs::create_dir_all(dir.join(sub)).expect("scratch subdir");
        }
        let port = free_port();
        fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users.guest = true\n\
                 log.file.level = info\n"
            ),
        )
        .expect("rabbitmq.conf");
        fs::write(dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        let node = format!(
            "ironpxe{}x{}@localhost",
            std::process::id(),
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        );
        let mut r = RabbitMq {
            scratch,
            port,
            epmd_port: free_port(),
            dist_port: free_port(),
            node,
            epmd: None,
            server: None,
        };
        r.start_again();
        r
    }

    fn dir(&self) -> PathBuf {
        self.scratch.path().to_owned()
    }

    /// `amqp://guest@127.0.0.1:<port>/` (password `guest`).
    pub fn url(&self) -> String {
        format!("amqp://guest@127.0.0.1:{}/", self.port)
    }

    /// oslo.messaging's `transport_url` for the same broker.
    pub fn transport_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.port)
    }

    pub fn running(&self) -> bool {
        self.server.is_some()
    }

    /// (Re)starts epmd (if needed) and the broker; waits until AMQP accepts a connection.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "RabbitMQ is already running");
        let dir = self.dir();
        let out = |name: &str| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .expect("log file")
        };
        if self.epmd.is_none() {
            let epmd = Command::new("epmd")
                .args([
                    "-port",
                    &self.epmd_port.to_string(),
                    "-address",
                    "127.0.0.1",
                ])
                .stdin(Stdio::null())
                .stdout(out("epmd.out"))
                .stderr(out("epmd.out"))
                .process_group(0)
                .spawn()
                .expect("spawn epmd");
            self.epmd = Some(epmd);
        }
        let t = Instant::now();
        let server = Command::new(SERVER)
            .env("HOME", &dir)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(out("server.out"))
            .stderr(out("server.out"))
            .process_group(0)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.server = None;
                panic!("rabbitmq-server exited with {status}\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ did not accept AMQP connections on 127.0.0.1:{} within 60 s\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("rabbitmq: up in {:.1?} on {}", t.elapsed(), self.url());
    }

    /// Stops the broker (SIGTERM to its process group, bounded, then SIGKILL); epmd stays.
    pub fn stop(&mut self) {
        if let Some(child) = self.server.take() {
            stop_group(child, "rabbitmq-server");
        }
    }

    /// The broker's output and log, last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        let log = self.dir().join("log").join(format!("{}.log", self.node));
        for p in [self.dir().join("server.out"), log] {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(30);
            s.push_str(&format!(
                "--- {} (last 30 lines)\n{}\n",
                p.display(),
                lines[from..].join("\n")
            ));
        }
        s
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        if let Some(epmd) = self.epmd.take() {
            stop_group(epmd, "epmd");
        }
    }
}

/// SIGTERM to the child's process group, up to 20 s, then SIGKILL; reaps the child.
fn stop_group(mut child: Child, what: &str) {
    let pgid = child.id();
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    };
    let t = Instant::now();
    signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gone = !Command::new("kill")
            .args(["-0", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let _ = child.try_wait();
        if gone {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("{what}: process group {pgid} ignored SIGTERM for 20 s; SIGKILL");
            signal("KILL");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    eprintln!("{what}: stopped in {:.1?}", t.elapsed());
}
