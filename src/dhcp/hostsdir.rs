//! A dnsmasq `--dhcp-hostsdir` kept in sync with the live snapshot: one file per node, written
//! atomically, and a SIGHUP when dnsmasq must forget a deleted or changed entry.

use super::*;

/// The `--dhcp-hostsdir` files for `snap`: file name → contents, one file per node with at
/// least one entry. Contents are comments and host values only (no tags, no other options).
pub fn hostsdir_files(snap: &Snapshot) -> (BTreeMap<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let files = snap
        .nodes()
        .iter()
        .filter_map(|n| Some((file_name(&n.node.uuid), node_file(snap, n, &mut warnings)?)))
        .collect();
    (files, warnings)
}

fn file_name(node: &NodeUuid) -> String {
    format!("{HOSTSDIR_PREFIX}{node}")
}

/// One node's file: a header, then an entry per boot port (by address), each under its
/// comment; `None` when it has no entry.
fn node_file(
    snap: &Snapshot,
    n: &crate::state::IndexedNode,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let mut entries: Vec<HostEntry> = n
        .ports
        .iter()
        .map(|&i| &snap.ports()[i])
        .filter(|p| p.boot_names)
        .filter_map(|p| entry(snap, &n.node, p, warnings))
        .collect();
    if entries.is_empty() {
        return None;
    }
    entries.sort_by_key(|e| e.port);
    let mut body = format!("# ironpxe: node {} (generated; do not edit)\n", n.node.uuid);
    for e in &entries {
        body.push_str(&entry_comment(e));
        body.push_str(&dnsmasq_host(e));
        body.push('\n');
    }
    Some(body)
}

/// What [`sync_hostsdir`] did, by file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// New files: dnsmasq reads them by itself (inotify).
    pub created: Vec<PathBuf>,
    /// Rewritten files: dnsmasq reads the new entries by itself but keeps the old ones.
    pub updated: Vec<PathBuf>,
    /// Stale files removed: dnsmasq keeps serving their entries until SIGHUP.
    pub deleted: Vec<PathBuf>,
    pub unchanged: usize,
    /// Ports left out or reduced, and why.
    pub warnings: Vec<String>,
}

impl SyncReport {
    /// True when dnsmasq still serves entries that are gone or changed: send it SIGHUP
    /// ([`sighup`]). New files alone need no signal.
    pub fn needs_sighup(&self) -> bool {
        !self.deleted.is_empty() || !self.updated.is_empty()
    }
}

/// Brings a dnsmasq `--dhcp-hostsdir` in line with `snap`: one file `ironpxe-<node-uuid>` per
/// node, each written to a dotfile (which dnsmasq ignores) and renamed into place only when
/// its contents change; files of nodes no longer in the state are deleted, as are leftover
/// dotfiles of an interrupted write. Files without the `ironpxe-` prefix are never touched.
/// The options are not needed by host entries today (boot logic lives in the main snippet);
/// they are taken so per-host options can be added without changing callers.
pub fn sync_hostsdir(dir: &Path, snap: &Snapshot) -> io::Result<SyncReport> {
    fs::create_dir_all(dir)?;
    let (files, warnings) = hostsdir_files(snap);
    let mut report = SyncReport {
        warnings,
        ..SyncReport::default()
    };
    for (name, body) in &files {
        put(dir, name, body, &mut report)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let ours = name
            .strip_prefix(HOSTSDIR_PREFIX)
            .is_some_and(|uuid| NodeUuid::parse(uuid).is_ok());
        let leftover = name.starts_with(&format!(".{HOSTSDIR_PREFIX}")) && name.ends_with(".tmp");
        if leftover {
            remove_if_present(&entry.path())?;
        } else if ours && !files.contains_key(&name) && remove_if_present(&entry.path())? {
            report.deleted.push(entry.path());
        }
    }
    report.deleted.sort();
    Ok(report)
}

/// [`sync_hostsdir`] for the nodes in `changed` alone: one file read and at most one write or
/// delete per node. Gives what a full sync gives when every other node's file is as last
/// synced and no rule settled anything between nodes ([`Snapshot::has_conflicts`]) in this
/// snapshot or the one last synced: each node's file then depends on that node alone.
pub fn sync_hostsdir_nodes(
    dir: &Path,
    snap: &Snapshot,
    changed: &BTreeSet<NodeUuid>,
) -> io::Result<SyncReport> {
    fs::create_dir_all(dir)?;
    let mut report = SyncReport::default();
    for uuid in changed {
        let name = file_name(uuid);
        match snap
            .node(uuid)
            .and_then(|n| node_file(snap, n, &mut report.warnings))
        {
            Some(body) => put(dir, &name, &body, &mut report)?,
            None => {
                let path = dir.join(&name);
                if remove_if_present(&path)? {
                    report.deleted.push(path);
                }
            }
        }
    }
    Ok(report)
}

/// Writes `name` when its contents differ, and says so in `report`.
fn put(dir: &Path, name: &str, body: &str, report: &mut SyncReport) -> io::Result<()> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(old) if old == body.as_bytes() => report.unchanged += 1,
        Ok(_) => {
            write_atomic(dir, name, body)?;
            report.updated.push(path);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(dir, name, body)?;
            report.created.push(path);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// `ironpxe dhcp --hostsdir D [--dnsmasq-pid-file F]`: [`sync_hostsdir`], one line per file
/// touched (`created:`, `updated:`, `deleted:`, then `unchanged: N`), and [`sighup`] to the
/// PID in `pid_file` when [`SyncReport::needs_sighup`] (then a `sighup:` line).
pub fn sync_and_signal(
    dir: &Path,
    snap: &Snapshot,
    pid_file: Option<&Path>,
    out: &mut dyn io::Write,
) -> io::Result<SyncReport> {
    let r = sync_hostsdir(dir, snap)?;
    for (what, paths) in [
        ("created", &r.created),
        ("updated", &r.updated),
        ("deleted", &r.deleted),
    ] {
        for p in paths {
            writeln!(out, "{what}: {}", p.display())?;
        }
    }
    writeln!(out, "unchanged: {}", r.unchanged)?;
    if let Some(pid_file) = pid_file.filter(|_| r.needs_sighup()) {
        sighup(pid_file).map_err(|e| io::Error::new(e.kind(), format!("SIGHUP dnsmasq: {e}")))?;
        writeln!(out, "sighup: {}", pid_file.display())?;
    }
    Ok(r)
}

fn write_atomic(dir: &Path, name: &str, body: &str) -> io::Result<()> {
    crate::support::fs::write_atomic(&dir.join(name), body.as_bytes())
}

/// Removes a file; `false` when it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends SIGHUP (`kill(2)`) to the process whose PID is in `pid_file`, as dnsmasq writes it.
/// Refuses PIDs 0 and 1 and anything but one decimal number: `kill -HUP 0` or `-1` would
/// signal a whole process group or every process.
pub fn sighup(pid_file: &Path) -> io::Result<()> {
    let text = fs::read_to_string(pid_file)?;
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", pid_file.display()),
        )
    };
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(&format!("{:?} is not a PID", shown(t))));
    }
    let pid: u32 = t.parse().map_err(|_| invalid("PID out of range"))?;
    if pid <= 1 {
        return Err(invalid(&format!("refusing to signal PID {pid}")));
    }
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| invalid("PID out of range"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        let what = format!("kill -HUP {}: {e}", pid.as_raw_nonzero());
        io::Error::new(io::Error::from(e).kind(), what)
    })
}
