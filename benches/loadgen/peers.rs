//! The reference TFTP servers ironpxe is measured against besides tftpd-hpa: async-tftp's
//! own directory server (the baseline), ideal-tftpd (the simplest fast design, for bulk) and
//! null-tftpd (no server at all, for the config phase).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::Res;

// ---- bare-tftpd: async-tftp's own directory server, through the crate's public builder only ----

#[derive(Args)]
pub struct BareArgs {
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    listen: SocketAddr,
    /// Exits by itself after this long.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

pub fn bare_tftpd(a: &BareArgs) -> Res<()> {
    use async_tftp::server::TftpServerBuilder;
    let builder = TftpServerBuilder::with_dir_ro(&a.root)?.bind(a.listen);
    let listen = a.listen;
    std::thread::Builder::new()
        .name("bare-tftpd".into())
        .spawn(move || {
            let r = async_io::block_on(async {
                let server = builder.build().await?;
                server.serve().await
            });
            if let Err(e) = r {
                eprintln!("bare-tftpd {listen}: {e}");
                std::process::exit(1);
            }
        })?;
    eprintln!("bare-tftpd serving {} on {listen}", a.root.display());
    std::thread::sleep(Duration::from_secs(a.max_seconds));
    Ok(())
}

// ---- ideal-tftpd: a reference design for bulk transfers, not a server anyone should run ----

/// A deliberately minimal windowed TFTP sender: one OS thread and one connected blocking
/// socket per transfer, the file in memory, one reused packet buffer, no per-packet work
/// beyond a copy and a `send` (no GSO). Not a server anyone should run: the simplest fast
/// design, against which a missed bulk target is read (would another design have met it
/// here?).
#[derive(Args)]
pub struct IdealArgs {
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    listen: SocketAddr,
    /// Retransmit timeout.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Exits by itself after this long.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

pub fn ideal_tftpd(a: &IdealArgs) -> Res<()> {
    let sock = UdpSocket::bind(a.listen)?;
    let files: Arc<std::sync::Mutex<BTreeMap<String, Arc<[u8]>>>> = Arc::default();
    let timeout = Duration::from_millis(a.timeout_ms);
    let stop = Instant::now() + Duration::from_secs(a.max_seconds);
    eprintln!("ideal-tftpd serving {} on {}", a.root.display(), a.listen);
    let mut buf = [0u8; 1500];
    while Instant::now() < stop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            got => got?,
        };
        let Some((name, blksize, windowsize)) = ideal_rrq(&buf[..n]) else {
            continue;
        };
        let data = {
            let mut f = files.lock().map_err(|_| "file cache poisoned")?;
            match f.get(&name) {
                Some(d) => d.clone(),
                None if !name.contains("..") => match fs::read(a.root.join(&name)) {
                    Ok(d) => f.entry(name).or_insert_with(|| d.into()).clone(),
                    Err(_) => continue,
                },
                None => continue,
            }
        };
        let local = SocketAddr::new(a.listen.ip(), 0);
        std::thread::spawn(move || {
            let _ = ideal_send(local, peer, &data, blksize, windowsize, timeout);
        });
    }
    Ok(())
}

/// File name, blksize and windowsize of an RRQ (defaults 512 and 1).
fn ideal_rrq(p: &[u8]) -> Option<(String, usize, usize)> {
    if p.get(..2)? != [0, 1] {
        return None;
    }
    let mut parts = p[2..].split(|&b| b == 0).map(String::from_utf8_lossy);
    let name = parts.next()?.trim_start_matches('/').to_owned();
    let _mode = parts.next()?;
    let (mut bs, mut ws) = (512, 1);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        match k.to_ascii_lowercase().as_str() {
            "blksize" => bs = v.parse::<usize>().ok()?.clamp(8, 65464),
            "windowsize" => ws = v.parse::<usize>().ok()?.clamp(1, 64),
            _ => {}
        }
    }
    Some((name, bs, ws))
}

fn ideal_send(
    local: SocketAddr,
    peer: SocketAddr,
    data: &[u8],
    bs: usize,
    ws: usize,
    timeout: Duration,
) -> io::Result<()> {
    let sock = UdpSocket::bind(local)?;
    sock.connect(peer)?;
    sock.set_read_timeout(Some(timeout))?;
    let window = if ws > 1 {
        format!("windowsize\0{ws}\0")
    } else {
        String::new()
    };
    let oack = format!("\0\x06blksize\0{bs}\0{window}tsize\0{}\0", data.len());
    let blocks = data.len() / bs + 1; // the last block is short, possibly empty
    let (mut base, mut pkt, mut ack) = (0usize, vec![0u8; bs + 4], [0u8; 516]);
    // Block 0 is the OACK; blocks 1..=blocks carry data.
    while base <= blocks {
        for i in base..(base + ws).min(blocks + 1) {
            if i == 0 {
                sock.send(oack.as_bytes())?;
                break;
            }
            let chunk = &data[((i - 1) * bs).min(data.len())..(i * bs).min(data.len())];
            pkt[..2].copy_from_slice(&[0, 3]);
            pkt[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            pkt[4..4 + chunk.len()].copy_from_slice(chunk);
            sock.send(&pkt[..4 + chunk.len()])?;
        }
        match sock.recv(&mut ack) {
            Ok(4..) if ack[..2] == [0, 4] => {
                // The ACKed block, unwrapped near the window base.
                let got = u16::from_be_bytes([ack[2], ack[3]]);
                let ahead = got.wrapping_sub(base as u16) as usize;
                if ahead < ws.max(1) {
                    base += ahead + 1;
                }
            }
            Ok(_) => return Ok(()), // an ERROR or garbage: the client is gone
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---- null-tftpd: the client's ceiling for the config phase ----

/// A TFTP responder that keeps no state and renders nothing: every packet is answered from
/// its own content alone, from the listening socket (no socket per transfer), with one fixed
/// config held in memory. A storm's config phase against it measures the client and the
/// kernel, not a server: the ceiling a real server's config phase is read against.
///
/// PXELINUX's SMBIOS-UUID and hex-IP names (told apart by their shape) get "file not
/// found", every other name the config, so a known client makes as many requests as it does
/// against ironpxe (UUID miss, then its hardware name); an unknown one stops at its
/// hardware name instead of walking to `default` (compare `requests/s` for those).
#[derive(Args)]
pub struct NullArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Receiving threads on the one socket (ironpxe's default: one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Exits by itself after this long.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

/// The config every hit gets: a PXELINUX config of the size ironpxe renders for a deploy.
const NULL_CONFIG: &[u8] = b"# null-tftpd: one fixed config for every client\n\
default deploy\n\
label deploy\n  kernel images/d6c53ffe94065bd9/ipa.kernel\n  append initrd=images/8c0c39788f17f5d1/\
ipa.initramfs selinux=0 troubleshoot=0 text nofb vga=normal ipa-api-url=http://127.0.0.1:6385 \
BOOTIF=01-52-54-00-12-34-56\nipappend 2\n";

pub fn null_tftpd(a: &NullArgs) -> Res<()> {
    // As large a receive buffer as ironpxe asks for: a ceiling must not drop requests.
    let sock = crate::tftp::socket_with_rcvbuf(a.listen, 8 << 20)?;
    // Woken once a second to notice the time limit.
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let stop = Instant::now() + Duration::from_secs(a.max_seconds);
    eprintln!(
        "null-tftpd answering on {} ({} bytes, {} threads)",
        a.listen,
        NULL_CONFIG.len(),
        a.threads
    );
    let threads: Vec<_> = (0..a.threads.max(1))
        .map(|_| {
            let sock = sock.try_clone()?;
            Ok(std::thread::spawn(move || null_loop(&sock, stop)))
        })
        .collect::<io::Result<_>>()?;
    for t in threads {
        t.join().map_err(|_| "null-tftpd thread panicked")??;
    }
    Ok(())
}

fn null_loop(sock: &UdpSocket, stop: Instant) -> io::Result<()> {
    let (mut buf, mut out) = ([0u8; 1500], Vec::with_capacity(1500));
    while Instant::now() < stop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        out.clear();
        null_reply(&buf[..n], &mut out);
        if !out.is_empty() {
            // A full send buffer or a vanished client: the client retransmits.
            let _ = sock.send_to(&out, peer);
        }
    }
    Ok(())
}

/// The reply to one packet, from that packet alone (empty: none).
fn null_reply(p: &[u8], out: &mut Vec<u8>) {
    let data = |out: &mut Vec<u8>| {
        out.extend_from_slice(&[0, 3, 0, 1]);
        out.extend_from_slice(NULL_CONFIG);
    };
    match p.get(..2) {
        Some([0, 1]) => {}
        // ACK of the OACK (block 0): the one data block. Later ACKs end the transfer.
        Some([0, 4]) if p.get(2..4) == Some(&[0, 0]) => return data(out),
        _ => return,
    }
    let mut parts = p[2..].split(|&b| b == 0);
    let name = parts.next().unwrap_or_default();
    let _mode = parts.next();
    if null_misses(name) {
        out.extend_from_slice(b"\0\x05\0\x01File not found\0");
        return;
    }
    // Options: blksize is granted when the config fits one block of it; tsize answered.
    let mut oack = false;
    out.extend_from_slice(&[0, 6]);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.eq_ignore_ascii_case(b"tsize") {
            out.extend_from_slice(format!("tsize\0{}\0", NULL_CONFIG.len()).as_bytes());
            oack = true;
        } else if k.eq_ignore_ascii_case(b"blksize") {
            let fits = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|bs| (NULL_CONFIG.len() + 1..=65464).contains(&bs));
            if fits {
                out.extend_from_slice(b"blksize\0");
                out.extend_from_slice(v);
                out.push(0);
                oack = true;
            }
        }
    }
    if !oack {
        out.clear();
        data(out);
    }
}

/// PXELINUX's names that no client is found by here: `pxelinux.cfg/<uuid>` (36 characters
/// with dashes) and `pxelinux.cfg/<hex IP prefix>` (1 to 8 hex digits).
fn null_misses(name: &[u8]) -> bool {
    let name = name.strip_prefix(b"/").unwrap_or(name);
    let Some(rest) = name.strip_prefix(b"pxelinux.cfg/") else {
        return false;
    };
    let hex = |b: &u8| b.is_ascii_hexdigit();
    let uuid = rest.len() == 36 && rest.iter().all(|b| hex(b) || *b == b'-');
    let hex_ip = (1..=8).contains(&rest.len()) && rest.iter().all(hex);
    uuid || hex_ip
}
