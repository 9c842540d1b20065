use async_executor::{Executor, Task};
use async_io::Async;
use async_lock::Mutex;
use log::{trace, warn};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::read_req::*;
use super::write_req::*;
use super::Handler;
use crate::error::*;
use crate::packet::{Packet, RwReq};

/// TFTP server.
pub struct TftpServer<H>
where
    H: Handler,
{
    pub(crate) socket: Async<UdpSocket>,
    pub(crate) handler: Arc<H>,
    pub(crate) reqs_in_progress: Arc<Mutex<ReqsInProgress>>,
    pub(crate) ex: Executor<'static>,
    pub(crate) config: ServerConfig,
    /// Where transfer sockets are bound: the listening address with port 0,
    /// its IPv6 scope id kept (a link-local address cannot be bound without
    /// it).
    pub(crate) transfer_addr: SocketAddr,
}

#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub(crate) timeout: Duration,
    pub(crate) block_size_limit: Option<u16>,
    pub(crate) window_size_limit: Option<u16>,
    pub(crate) max_send_retries: u32,
    pub(crate) client_timeout_limit: Option<Duration>,
    pub(crate) ignore_client_timeout: bool,
    pub(crate) ignore_client_block_size: bool,
    pub(crate) ignore_client_window_size: bool,
}

impl ServerConfig {
    /// The client's `timeout` option (RFC 2349, seconds) the server accepts,
    /// if any. RFC 2349 lets a server only echo the client's value or decline
    /// the option by leaving it out of the OACK, so a value above
    /// `client_timeout_limit` is declined, not lowered: the transfer then uses
    /// the server's own `timeout`, and a vanished client holds its session at
    /// most `(max_send_retries + 1)` x the larger of the two.
    pub(crate) fn client_timeout(&self, req: &RwReq) -> Option<u8> {
        if self.ignore_client_timeout {
            return None;
        }
        let secs = req.opts.timeout?;
        match self.client_timeout_limit {
            Some(limit) if Duration::from_secs(u64::from(secs)) > limit => None,
            _ => Some(secs),
        }
    }
}

pub(crate) const DEFAULT_BLOCK_SIZE: usize = 512;

/// Requests being served, at most one per peer address.
#[derive(Default)]
pub(crate) struct ReqsInProgress {
    /// Id of the next request, so that a finished task removes only its own
    /// entry and never the one of a newer request from the same peer.
    next_id: u64,
    pub(crate) reqs: HashMap<SocketAddr, ReqInProgress>,
}

/// A request being served.
pub(crate) struct ReqInProgress {
    id: u64,
    /// `true` for a WRQ, `false` for a RRQ.
    is_write: bool,
    req: RwReq,
    /// Set by the transfer once the peer answered on the transfer's TID.
    peer_replied: Arc<AtomicBool>,
    /// The transfer. Dropping it cancels the transfer.
    task: Task<()>,
}

impl ReqInProgress {
    /// Whether a new request from the same peer is a retransmission of this
    /// one: identical, and the peer has not answered our reply yet (so it
    /// probably did not get it). The running transfer retransmits its reply
    /// by itself, so such a request must be ignored. Any other request
    /// supersedes this one: the peer gave up on it.
    fn is_retransmitted_by(&self, is_write: bool, req: &RwReq) -> bool {
        self.is_write == is_write
            && self.req == *req
            && !self.peer_replied.load(Ordering::Acquire)
    }
}

impl<H: 'static> TftpServer<H>
where
    H: Handler,
{
    /// Returns the listenning socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.get_ref().local_addr()?)
    }

    /// Consume and start the server.
    ///
    /// Transient errors of the listening socket (e.g. an ICMP-induced
    /// `ECONNREFUSED`, `ENOMEM`) are logged with `log::warn!` and do not stop
    /// the server. Only errors that make the socket unusable are returned.
    pub async fn serve(self) -> Result<()> {
        self.ex
            .run(async {
                let mut buf = [0u8; 4096];

                loop {
                    match self.socket.recv_from(&mut buf).await {
                        Ok((len, peer)) => {
                            self.handle_req_packet(peer, &buf[..len]).await
                        }
                        Err(e) => self.handle_recv_error(e)?,
                    }
                }
            })
            .await
    }

    /// Logs a transient error of the listening socket and keeps serving;
    /// returns the error if it is fatal (see [`recv_error_is_fatal`]).
    fn handle_recv_error(&self, e: io::Error) -> Result<()> {
        let socket_ok = self.socket.get_ref().local_addr().is_ok();

        if recv_error_is_fatal(&e, socket_ok) {
            return Err(e.into());
        }

        warn!("TFTP server: error on listening socket, continuing: {e}");
        Ok(())
    }

    async fn handle_req_packet(&self, peer: SocketAddr, data: &[u8]) {
        let (is_write, req) = match Packet::decode(data) {
            Ok(Packet::Rrq(req)) => (false, req),
            Ok(Packet::Wrq(req)) => (true, req),
            // Ignore packets that are not requests
            Ok(_) => return,
            // Ignore invalid packets
            Err(_) => return,
        };

        // Held until the new entry is inserted, so the new task cannot end
        // (and look for its entry) before it is there.
        let mut in_progress = self.reqs_in_progress.lock().await;

        if let Some(cur) = in_progress.reqs.get(&peer) {
            if cur.is_retransmitted_by(is_write, &req) {
                trace!("Ignoring retransmitted request (peer: {})", &peer);
                return;
            }
            trace!(
                "New request supersedes the one in progress (peer: {})",
                &peer
            );
        }

        let id = in_progress.next_id;
        in_progress.next_id += 1;
        let peer_replied = Arc::new(AtomicBool::new(false));
        let reqs_in_progress = Arc::clone(&self.reqs_in_progress);

        let task = if is_write {
            self.handle_wrq(
                peer,
                req.clone(),
                &peer_replied,
                id,
                reqs_in_progress,
            )
        } else {
            self.handle_rrq(
                peer,
                req.clone(),
                &peer_replied,
                id,
                reqs_in_progress,
            )
        };

        // Replacing an older request of this peer drops its `Task`, which
        // cancels it: its future is dropped by the executor, it sends
        // nothing more and does not touch `reqs_in_progress`.
        in_progress.reqs.insert(
            peer,
            ReqInProgress {
                id,
                is_write,
                req,
                peer_replied,
                task,
            },
        );
    }

    fn handle_rrq(
        &self,
        peer: SocketAddr,
        req: RwReq,
        peer_replied: &Arc<AtomicBool>,
        id: u64,
        reqs_in_progress: Arc<Mutex<ReqsInProgress>>,
    ) -> Task<()> {
        trace!("RRQ recieved (peer: {}, req: {:?})", &peer, &req);

        let handler = Arc::clone(&self.handler);
        let config = self.config.clone();
        let local = self.transfer_addr;
        let peer_replied = Arc::clone(peer_replied);

        // Prepare request future
        let req_fut = async move {
            let (mut reader, size) = handler
                .read_req_open(&peer, req.filename.as_ref())
                .await
                .map_err(Error::Packet)?;

            let mut read_req = ReadRequest::init(
                &mut reader,
                size,
                peer,
                &req,
                config,
                local,
                peer_replied,
            )
            .await?;

            read_req.handle().await;

            Ok(())
        };

        // Run request future in a new task
        self.ex.spawn(run_req(req_fut, peer, id, reqs_in_progress, local))
    }

    fn handle_wrq(
        &self,
        peer: SocketAddr,
        req: RwReq,
        peer_replied: &Arc<AtomicBool>,
        id: u64,
        reqs_in_progress: Arc<Mutex<ReqsInProgress>>,
    ) -> Task<()> {
        trace!("WRQ recieved (peer: {}, req: {:?})", &peer, &req);

        let handler = Arc::clone(&self.handler);
        let config = self.config.clone();
        let local = self.transfer_addr;
        let peer_replied = Arc::clone(peer_replied);

        // Prepare request future
        let req_fut = async move {
            let mut writer = handler
                .write_req_open(
                    &peer,
                    req.filename.as_ref(),
                    req.opts.transfer_size,
                )
                .await
                .map_err(Error::Packet)?;

            let mut write_req = WriteRequest::init(
                &mut writer,
                peer,
                &req,
                config,
                local,
                peer_replied,
            )
            .await?;

            write_req.handle().await;

            Ok(())
        };

        // Run request future in a new task
        self.ex.spawn(run_req(req_fut, peer, id, reqs_in_progress, local))
    }
}

async fn send_error(
    error: Error,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<()> {
    let socket = Async::<UdpSocket>::bind(local).map_err(Error::Bind)?;

    let data = Packet::Error(error.into()).to_bytes();
    socket.send_to(&data[..], peer).await?;

    Ok(())
}

async fn run_req(
    req_fut: impl Future<Output = Result<()>>,
    peer: SocketAddr,
    id: u64,
    reqs_in_progress: Arc<Mutex<ReqsInProgress>>,
    local: SocketAddr,
) {
    if let Err(e) = req_fut.await {
        // A transfer socket that cannot be bound fails every transfer of
        // this server: the operator must see it.
        if let Error::Bind(ref b) = e {
            warn!(
                "Cannot bind a transfer socket on {} (peer: {}): {}",
                local, &peer, b
            );
        } else {
            trace!("Request failed (peer: {}, error: {}", &peer, &e);
        }

        if let Err(e) = send_error(e, peer, local).await {
            trace!("Failed to send error to peer {}: {}", &peer, &e);
        }
    }

    // Remove our entry, unless a newer request of the same peer replaced it.
    let mut in_progress = reqs_in_progress.lock().await;
    let ours = match in_progress.reqs.get(&peer) {
        Some(r) if r.id == id => in_progress.reqs.remove(&peer),
        _ => None,
    };
    drop(in_progress);

    // Our entry holds our own `Task`: detach it rather than drop it, which
    // would cancel this task. Nothing may follow this (the task is done).
    if let Some(ours) = ours {
        ours.task.detach();
    }
}

/// Whether an error from `recv_from` on the listening socket must end
/// [`TftpServer::serve`].
///
/// Errors are transient as long as the socket itself is usable: ICMP-induced
/// `ECONNREFUSED`/`ECONNRESET` (e.g. `WSAECONNRESET` on Windows), `ENOMEM`,
/// `ENOBUFS`, `EINTR`... The server logs them and keeps serving. Fatal are a
/// socket that is no longer usable (`socket_ok` is false, e.g. `EBADF`,
/// `ENOTSOCK`) and `EINVAL`/unsupported operation: these would fail again at
/// once on every retry.
pub(crate) fn recv_error_is_fatal(err: &io::Error, socket_ok: bool) -> bool {
    !socket_ok
        || matches!(
            err.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
        )
}
