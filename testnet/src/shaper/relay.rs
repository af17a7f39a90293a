//! One node's relay: accepts on the node's public address, names the
//! dialer ([`super::owner`]), connects to the node's real listener and
//! copies bytes both ways, each way through a [`DelayLine`].
//!
//! Owns the sockets and the copying; when a chunk may go is the delay
//! line's business. A direction that ends (EOF) is passed on as a
//! half-close after its queue drained; an error on either side drops both
//! connections (the peers see a reset or an EOF, as on a dead link).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::line::{DelayLine, Links};
use super::owner;

/// Bytes read at a time: the chunk a delay is drawn for.
const READ_SIZE: usize = 16 * 1024;

/// What every relay of a run shares.
pub struct Shared {
    pub links: Arc<Links>,
    /// Index → pid of the node's current life (to name dialers).
    pub pids: Mutex<Vec<Option<u32>>>,
    /// Connections accepted, and how many of them had a dialer that was
    /// not one of the nodes (shaped by the listening node's link alone).
    pub accepted: AtomicU64,
    pub unnamed: AtomicU64,
    pub seed: u64,
}

/// Copies `from` to `to` through `line` until `from` ends; then shuts
/// `to`'s write side down.
pub async fn pump<R, W>(mut from: R, mut to: W, mut line: DelayLine) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_SIZE];
    let mut open = true;
    while open || !line.is_empty() {
        let next = line.next_release().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = from.read(&mut buf), if open && line.has_room() => {
                let n = read?;
                if n == 0 {
                    open = false;
                } else {
                    line.push(std::time::Instant::now(), buf[..n].to_vec());
                }
            }
            () = sleep_until(next), if next.is_some() => {
                while let Some(chunk) = line.pop_due(std::time::Instant::now()) {
                    to.write_all(&chunk).await?;
                }
            }
        }
    }
    to.shutdown().await
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Accepts on `listener` for node `node` (real listener at `target`) until
/// the runtime stops.
pub async fn serve(listener: TcpListener, node: usize, target: SocketAddr, shared: Arc<Shared>) {
    let conns = AtomicU64::new(0);
    loop {
        let Ok((inbound, remote)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let k = conns.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = relay(inbound, remote, node, target, k, shared).await;
        });
    }
}

async fn relay(
    inbound: TcpStream,
    remote: SocketAddr,
    node: usize,
    target: SocketAddr,
    k: u64,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let local = inbound.local_addr()?;
    let pids = shared
        .pids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let dialer = tokio::task::spawn_blocking(move || owner::dialer(remote, local, &pids))
        .await
        .ok()
        .flatten();
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    if dialer.is_none() {
        shared.unnamed.fetch_add(1, Ordering::Relaxed);
    }
    // The node down (killed, not started): the dialer sees its connection
    // closed right after it opened, not refused.
    let outbound = TcpStream::connect(target).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let seed = shared.seed ^ ((node as u64) << 48) ^ (k << 1);
    let to_node = DelayLine::new(shared.links.clone(), dialer, Some(node), seed);
    let from_node = DelayLine::new(shared.links.clone(), Some(node), dialer, seed | 1);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::try_join!(
        pump(in_read, out_write, to_node),
        pump(out_read, in_write, from_node)
    )?;
    Ok(())
}
