//! The reference TFTP servers ironpxe is measured against besides tftpd-hpa: async-tftp's
//! own directory server (the baseline), and ideal-tftpd (the simplest fast design, for bulk).

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
