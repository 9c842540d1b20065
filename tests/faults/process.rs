//! The server process seen from /proc: its PID, CPU time, open-file and address-space limits.

use super::*;

/// CPU time (clock ticks) used so far by `pid` and its children (the render workers).
pub fn cpu_ticks_of_tree(pid: u32) -> u64 {
    let ticks = |stat: &str| -> Option<(u32, u64)> {
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state ppid … utime (14th field) stime (15th).
        let ppid = f.get(1)?.parse().ok()?;
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((ppid, t))
    };
    let mut total = 0;
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, t)) = ticks(&stat) {
            if p == pid || ppid == pid {
                total += t;
            }
        }
    }
    total
}

/// The `ironpxe serve` process of `s`, found by its unique config path.
pub fn server_pid(s: &Ironpxe) -> u32 {
    let config = s.work.path().join("ironpxe.toml");
    let needle = config.to_string_lossy().into_owned();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&needle) {
            return pid;
        }
    }
    panic!("no ironpxe process with --config {needle}");
}

/// Exited (a zombie until the harness reaps it) or gone.
pub fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

pub fn prlimit(pid: u32, arg: &str) -> Result<(), String> {
    let found = Command::new("sh")
        .args(["-c", "command -v prlimit"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`prlimit` is missing: it raises the open-file limit of the test and of ironpxe; \
         install it with `apt-get install util-linux`"
    );
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), arg])
        .output()
        .expect("run prlimit");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The hard open-file limit of `pid`.
pub fn nofile_hard(pid: u32) -> u64 {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .expect("Max open files")
}

/// Raises the open-file limit of `pid` to 65536, or, without the privilege to raise the
/// hard limit (a container without CAP_SYS_RESOURCE), the soft limit to the hard one; fails
/// clearly when that is below `need`.
pub fn raise_nofile_of(pid: u32, need: u64) {
    if prlimit(pid, "--nofile=65536:65536").is_ok() {
        return;
    }
    let hard = nofile_hard(pid);
    if let Err(e) = prlimit(pid, &format!("--nofile={hard}:{hard}")) {
        panic!("prlimit --pid {pid} --nofile={hard}:{hard} failed: {e}");
    }
    assert!(
        hard >= need,
        "process {pid} may open only {hard} files and this test needs {need}: raise the hard \
         limit (ulimit -Hn, or run with CAP_SYS_RESOURCE)"
    );
}

/// Raises the open-file limit of this test process and of the server.
pub fn raise_nofile(s: &Ironpxe, need: u64) {
    raise_nofile_of(std::process::id(), need);
    raise_nofile_of(server_pid(s), need);
}

/// Caps the server's address space, so a runaway allocation fails inside ironpxe instead of
/// bringing the OOM killer to the machine.
pub fn cap_memory(pid: u32, headroom: u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmSize");
    let arg = format!("--as={}", vm_kib * 1024 + headroom);
    if let Err(e) = prlimit(pid, &arg) {
        panic!("prlimit --pid {pid} {arg}: {e}");
    }
}
