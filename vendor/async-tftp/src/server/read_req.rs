use async_io::Async;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use log::trace;
use std::cmp;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;

use crate::error::{Error, Result};
use crate::packet::{Opts, Packet, RwReq, PACKET_DATA_HEADER_LEN};
use crate::server::{ServerConfig, DEFAULT_BLOCK_SIZE};

pub(crate) struct ReadRequest<'r, R>
where
    R: AsyncRead + Send,
{
    peer: SocketAddr,
    socket: Async<UdpSocket>,
    // Whether `socket` is connected to `peer` (sends then name no address).
    connected: bool,
    reader: &'r mut R,
    block_size: usize,
    timeout: Duration,
    max_send_retries: u32,
    oack_opts: Option<Opts>,
    window_size: usize,
    // Set once the peer answered on this transfer's TID (ACK or ERROR). The
    // server uses it to tell a retransmitted RRQ from a new one.
    peer_replied: Arc<AtomicBool>,
    // Whether a window may still go out as one UDP GSO send (Linux, connected
    // socket); cleared for good by the first refusal (see `gso`).
    gso: bool,
    // The retransmit timer, armed lazily (see `recv_ack`), and when it is set
    // to fire (`None`: not armed).
    timer: Timer,
    timer_at: Option<Instant>,
    // The memory blocks are cut from: once every block cut from it has been
    // ACKed (and dropped), `reserve` takes it back, so a lock-step transfer
    // reads every block into one allocation instead of allocating and freeing
    // one per block.
    arena: BytesMut,
}

impl<'r, R> ReadRequest<'r, R>
where
    R: AsyncRead + Send + Unpin,
{
    pub(crate) async fn init(
        reader: &'r mut R,
        file_size: Option<u64>,
        peer: SocketAddr,
        req: &RwReq,
        config: ServerConfig,
        local: SocketAddr,
        peer_replied: Arc<AtomicBool>,
    ) -> Result<ReadRequest<'r, R>> {
        let oack_opts = build_oack_opts(&config, req, file_size);

        let block_size = oack_opts
            .as_ref()
            .and_then(|o| o.block_size)
            .map(usize::from)
            .unwrap_or(DEFAULT_BLOCK_SIZE);

        // Default window size is 1 as per rfc7440
        let negotiated_window_size: usize =
            oack_opts.as_ref().and_then(|o| o.window_size).unwrap_or(1u16)
                as usize;

        let timeout = oack_opts
            .as_ref()
            .and_then(|o| o.timeout)
            .map(|t| Duration::from_secs(u64::from(t)))
            .unwrap_or(config.timeout);

        let socket = Async::<UdpSocket>::bind(local).map_err(Error::Bind)?;
        // A connected socket spares the kernel a route lookup per datagram
        // and drops datagrams from other peers itself. Not fatal: an
        // unconnected socket works the same, a little slower.
        let connected = socket.get_ref().connect(peer).is_ok();

        Ok(ReadRequest {
            peer,
            socket,
            connected,
            reader,
            block_size,
            timeout,
            max_send_retries: config.max_send_retries,
            oack_opts,
            window_size: negotiated_window_size,
            peer_replied,
            // GSO sends name no address: only on a connected socket.
            gso: cfg!(target_os = "linux") && connected,
            timer: Timer::never(),
            timer_at: None,
            arena: BytesMut::with_capacity(
                (PACKET_DATA_HEADER_LEN + block_size) * negotiated_window_size,
            ),
        })
    }

    pub(crate) async fn handle(&mut self) {
        if let Err(e) = self.try_handle().await {
            // RFC 1350: an ERROR packet is never answered with an ERROR.
            if let Error::ClientAborted(ref e) = e {
                trace!(
                    "RRQ aborted by peer (peer: {}, error: {:?})",
                    &self.peer,
                    e
                );
                return;
            }

            trace!("RRQ request failed (peer: {}, error: {})", &self.peer, &e);
            let mut buffer = BytesMut::with_capacity(DEFAULT_BLOCK_SIZE);
            Packet::Error(e.into()).encode(&mut buffer);
            let buf = buffer.split().freeze();
            // Errors are never retransmitted.
            // We do not care if `send_to` resulted to an IO error.
            let _ = self.socket.send_to(&buf[..], self.peer).await;
        }
    }

    async fn try_handle(&mut self) -> Result<()> {
        let mut window: VecDeque<Bytes> =
            VecDeque::with_capacity(self.window_size);
        let mut block_id: u16;
        let mut window_base: u16 = 1;
        let mut buf: Bytes;
        let mut is_last_block: bool;

        (buf, is_last_block) = self.fill_data_block(window_base).await?;
        window.push_back(buf);

        // Send OACK after we manage to read the first block from reader.
        //
        // We do this because we want to give the developers the option to
        // produce an error after they construct a reader.
        if let Some(opts) = self.oack_opts.as_ref() {
            trace!("RRQ OACK (peer: {}, opts: {:?}", &self.peer, &opts);
            let mut buff = BytesMut::with_capacity(PACKET_DATA_HEADER_LEN + 64);
            Packet::OAck(opts.to_owned()).encode(&mut buff);
            // OACK is not really part of the window, so we send it separately
            self.send_window(&VecDeque::from([buff.freeze()]), 0).await?;
        }

        loop {
            // calculate next block_id, window might not be empty
            block_id = window_base.wrapping_add(window.len() as u16);

            while !is_last_block && (window.len() < self.window_size) {
                // we still have data and window is not full
                (buf, is_last_block) = self.fill_data_block(block_id).await?;
                window.push_back(buf);
                block_id = block_id.wrapping_add(1);
            }

            let blocks_acked = self.send_window(&window, window_base).await?;
            window_base = window_base.wrapping_add(blocks_acked);

            // remove acked blocks from window
            if blocks_acked == window.len() as u16 {
                window.clear()
            } else {
                window.drain(..blocks_acked as usize);
            }

            if is_last_block && window.is_empty() {
                // transfer is done
                break;
            }
        }

        trace!("RRQ request served (peer: {})", &self.peer);
        Ok(())
    }

    async fn fill_data_block(
        &mut self,
        block_id: u16,
    ) -> Result<(Bytes, bool), Error> {
        // Empty here (every block is split off); reclaims the whole arena when
        // the blocks cut from it are gone, else allocates anew.
        let mut buffer = std::mem::take(&mut self.arena);
        buffer.reserve(PACKET_DATA_HEADER_LEN + self.block_size);
        Packet::encode_data_head(block_id, &mut buffer);

        // The reader gets initialised (zeroed) memory: `AsyncRead::poll_read`
        // takes a `&mut [u8]`, which must never cover uninitialised bytes (a
        // reader may read its buffer). Zeroing one block costs next to nothing
        // beside sending it.
        buffer.resize(PACKET_DATA_HEADER_LEN + self.block_size, 0);
        let len =
            self.read_block(&mut buffer[PACKET_DATA_HEADER_LEN..]).await?;
        buffer.truncate(PACKET_DATA_HEADER_LEN + len);
        let block = buffer.split().freeze();
        self.arena = buffer;
        Ok((block, len < self.block_size))
    }

    /// Sends packets contained in a window and waits for client to acknowledge them. Returns amount
    /// of packets acknowledged.
    async fn send_window(
        &mut self,
        window: &VecDeque<Bytes>,
        window_base: u16,
    ) -> Result<u16> {
        // Send packet until we receive an ack
        for _ in 0..=self.max_send_retries {
            self.send_packets(window).await?;

            match self.recv_ack(window_base, window.len() as u16).await {
                Ok(blocks_acked) => {
                    trace!(
                        "RRQ (peer: {}, window_base: {}, blocks_acked: {}, window_len: {}) - Received ACK",
                        &self.peer,
                        window_base,
                        blocks_acked,
                        window.len()
                    );
                    return Ok(blocks_acked);
                }
                Err(Error::Io(ref e))
                    if e.kind() == io::ErrorKind::TimedOut =>
                {
                    trace!(
                        "RRQ (peer: {}, block_id: {}) - Timeout",
                        &self.peer,
                        window_base
                    );
                    continue;
                }
                Err(e) => return Err(e),
            }
        }

        Err(Error::MaxSendRetriesReached(self.peer, window_base))
    }

    /// Sends a window's packets: as few UDP GSO sends as the kernel takes
    /// (one wakeup of the client per send, not per block), else one by one.
    async fn send_packets(&mut self, window: &VecDeque<Bytes>) -> Result<()> {
        let mut rest = window.iter().peekable();
        while rest.peek().is_some() {
            if self.gso && window.len() > 1 {
                let batch = gso::batch(rest.clone().map(|p| p.len()));
                if batch > 1 {
                    let packets: Vec<&[u8]> =
                        rest.clone().take(batch).map(|p| &p[..]).collect();
                    let sent = self
                        .socket
                        .write_with(|s| gso::send(s, &packets))
                        .await;
                    match sent {
                        Ok(()) => {
                            rest.nth(batch - 1);
                            continue;
                        }
                        Err(e) if gso::refused(&e) => {
                            trace!(
                                "RRQ (peer: {}) - no UDP GSO: {e}",
                                &self.peer
                            );
                            self.gso = false;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if let Some(packet) = rest.next() {
                if self.connected {
                    self.socket.send(&packet[..]).await?;
                } else {
                    self.socket.send_to(&packet[..], self.peer).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for ack packet, returns amount of packets acknowledged.
    ///
    /// An ERROR packet from the peer ends the transfer with
    /// [`Error::ClientAborted`].
    async fn recv_ack(
        &mut self,
        window_base: u16,
        window_len: u16,
    ) -> Result<u16> {
        // Borrow only what each side of the race needs.
        let socket = &mut self.socket;
        let peer = self.peer;

        // The timer is armed lazily: registering one with the reactor costs a
        // wake-up of the reactor (a syscall), once per window if done for each
        // ACK. It stays armed at an earlier deadline, and when it fires before
        // this ACK's deadline it is re-armed once: about one registration per
        // timeout period instead of one per window.
        let deadline = Instant::now() + self.timeout;
        let (timer, timer_at) = (&mut self.timer, &mut self.timer_at);
        if timer_at.map_or(true, |at| at > deadline) {
            timer.set_at(deadline);
            *timer_at = Some(deadline);
        }
        let expiry = async {
            loop {
                (&mut *timer).await;
                *timer_at = None;
                if Instant::now() >= deadline {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                timer.set_at(deadline);
                *timer_at = Some(deadline);
            }
        };

        let reply = future::race(async {
            let mut buf = [0u8; 1024];

            loop {
                let (len, recved_peer) = socket.recv_from(&mut buf[..]).await?;

                // if the packet do not come from the client we are serving, then ignore it
                if recved_peer != peer {
                    continue;
                }

                let packet = Packet::decode(&buf[..len]);

                // RFC 1350: an ERROR packet from the peer terminates the
                // transfer, it is neither retransmitted nor acknowledged.
                if let Ok(Packet::Error(e)) = packet {
                    return Ok(Err(e));
                }

                // parse only valid Ack packets, the rest are ignored
                if let Ok(Packet::Ack(recved_block_id)) = packet {
                    let window_end = window_base.wrapping_add(window_len);

                    if window_end > window_base {
                        // window_end did not wrap
                        if recved_block_id >= window_base && recved_block_id < window_end {
                            // number of blocks acked
                            return Ok(Ok(recved_block_id-window_base+1u16));
                        }
                        else {
                            trace!("Unexpected ack packet {recved_block_id}, window_base: {window_base}, window_len: {window_len}");
                        }
                    }else {
                        // window_end wrapped
                        if recved_block_id >= window_base {
                            return Ok(Ok(1u16 + (recved_block_id - window_base)));
                        } else if recved_block_id < window_end {
                            return Ok(Ok(1u16 + recved_block_id + (window_len - window_end)));
                        } else {
                            trace!("Unexpected ack packet {recved_block_id}, window_base: {window_base}, window_len: {window_len}");
                        }
                    }
                }
            }
        }, expiry)
        .await?;

        // The peer answered on our TID: from now on an identical RRQ from it
        // is a new request, not a retransmission of this one.
        self.peer_replied.store(true, Ordering::Release);

        reply.map_err(Error::ClientAborted)
    }

    async fn read_block(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut len = 0;

        while len < buf.len() {
            match self.reader.read(&mut buf[len..]).await? {
                0 => break,
                x => len += x,
            }
        }

        Ok(len)
    }
}

fn build_oack_opts(
    config: &ServerConfig,
    req: &RwReq,
    file_size: Option<u64>,
) -> Option<Opts> {
    let mut opts = Opts::default();

    if !config.ignore_client_block_size {
        opts.block_size = match (req.opts.block_size, config.block_size_limit) {
            (Some(bsize), Some(limit)) => Some(cmp::min(bsize, limit)),
            (Some(bsize), None) => Some(bsize),
            _ => None,
        };
    }

    opts.timeout = config.client_timeout(req);

    if let (Some(0), Some(file_size)) = (req.opts.transfer_size, file_size) {
        opts.transfer_size = Some(file_size);
    }

    if !config.ignore_client_window_size {
        opts.window_size =
            match (req.opts.window_size, config.window_size_limit) {
                (Some(wsize), Some(limit)) => Some(cmp::min(wsize, limit)),
                (Some(wsize), None) => Some(wsize),
                _ => None,
            };
    }

    if opts == Opts::default() {
        None
    } else {
        Some(opts)
    }
}

/// UDP generic segmentation offload (Linux 4.18+): several datagrams of one
/// size (the last may be shorter) handed to the kernel in one `sendmsg`.
mod gso {
    use std::io;
    use std::net::UdpSocket;

    /// Largest UDP payload of one GSO send, kept below the 64 KiB IP limit.
    const MAX_BYTES: usize = 65_000;
    /// The kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels.
    const MAX_SEGMENTS: usize = 64;

    /// How many of the leading packets (by length) one GSO send can carry:
    /// all but the last of the same length, within the size limits.
    pub(super) fn batch(lens: impl Iterator<Item = usize>) -> usize {
        let mut lens = lens.peekable();
        let Some(&seg) = lens.peek() else {
            return 0;
        };
        let (mut n, mut bytes) = (0, 0);
        for len in lens {
            if n == MAX_SEGMENTS || bytes + len > MAX_BYTES || len > seg {
                break;
            }
            n += 1;
            bytes += len;
            if len < seg {
                break; // a short segment ends a GSO send
            }
        }
        n
    }

    /// Errors by which a kernel or route refuses GSO (not the peer's fault):
    /// no `UDP_SEGMENT`, no checksum offload on the device, segments above the
    /// path MTU. The caller then sends packet by packet.
    pub(super) fn refused(e: &io::Error) -> bool {
        #[cfg(target_os = "linux")]
        {
            matches!(
                e.raw_os_error(),
                Some(
                    libc::EINVAL
                        | libc::EIO
                        | libc::ENOPROTOOPT
                        | libc::EOPNOTSUPP
                        | libc::EMSGSIZE
                )
            )
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = e;
            true
        }
    }

    /// Sends `packets` (all of `packets[0]`'s length but the last, which may be
    /// shorter) in one `sendmsg` with `UDP_SEGMENT` to the address `sock` is
    /// connected to.
    #[cfg(target_os = "linux")]
    pub(super) fn send(sock: &UdpSocket, packets: &[&[u8]]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let seg = packets.first().map_or(0, |p| p.len());
        let seg = u16::try_from(seg)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut iov: Vec<libc::iovec> = packets
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // One control message: SOL_UDP / UDP_SEGMENT / u16, in a u64-aligned buffer.
        let mut control = [0u64; 4];
        // SAFETY: every pointer handed to the kernel points into a live local
        // (iov, control) or a borrowed packet for the whole call;
        // CMSG_SPACE(2) (24 bytes on 64-bit) fits `control` (32 bytes).
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(2) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), seg);
            if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn send(
        _sock: &UdpSocket,
        _packets: &[&[u8]],
    ) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(test)]
    mod tests {
        use super::batch;

        #[test]
        fn batches_equal_packets_and_a_short_last_one() {
            assert_eq!(batch([].into_iter()), 0);
            assert_eq!(batch([516].into_iter()), 1);
            assert_eq!(batch([516; 8].into_iter()), 8);
            assert_eq!(batch([516, 516, 100].into_iter()), 3);
            // A short packet ends the batch; a longer one is never a later segment.
            assert_eq!(batch([516, 100, 516].into_iter()), 2);
            assert_eq!(batch([100, 516].into_iter()), 1);
            // 8 blocks of 8196 bytes exceed one send: 7 go, the 8th waits.
            assert_eq!(batch([8196; 8].into_iter()), 7);
            // At most 64 segments.
            assert_eq!(batch([516; 100].into_iter()), 64);
        }
    }
}
