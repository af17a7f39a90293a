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

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::line::{DelayLine, Links};
use super::owner;

/// Bytes read at a time: the chunk a delay is drawn for.
const READ_SIZE: usize = 16 * 1024;

/// A connection whose dialer could not be named (shaped by the listening
/// node's link alone), for the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Unnamed {
    /// The node whose relay accepted it.
    pub node: usize,
    pub remote: SocketAddr,
    /// Seconds from the shaper's start.
    pub at: f64,
    /// Bytes carried each way once it ended (`None`: still open).
    pub to_node: Option<u64>,
    pub from_node: Option<u64>,
}

/// The first unnamed connections kept in detail (the count goes on).
const UNNAMED_KEPT: usize = 32;

/// What every relay of a run shares.
pub struct Shared {
    pub links: Arc<Links>,
    /// Index → pid of the node's current life (to name dialers).
    pub pids: Mutex<Vec<Option<u32>>>,
    /// Index → the port the node really listens on.
    pub ports: Vec<u16>,
    /// Connections accepted, and how many of them had a dialer that was
    /// not one of the nodes (shaped by the listening node's link alone).
    pub accepted: AtomicU64,
    pub unnamed: AtomicU64,
    pub unnamed_kept: Mutex<Vec<Unnamed>>,
    pub started: std::time::Instant,
    pub seed: u64,
}

/// Copies `from` to `to` through `line` until `from` ends; then shuts
/// `to`'s write side down. The bytes copied.
pub async fn pump<R, W>(mut from: R, mut to: W, mut line: DelayLine) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_SIZE];
    let mut copied = 0u64;
    let mut open = true;
    while open || !line.is_empty() {
        let next = line.next_release().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = from.read(&mut buf), if open && line.has_room(std::time::Instant::now()) => {
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
                    copied += chunk.len() as u64;
                }
            }
        }
    }
    to.shutdown().await?;
    Ok(copied)
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
    let ports = shared.ports.clone();
    let dialer = tokio::task::spawn_blocking(move || owner::dialer(remote, local, &pids, &ports))
        .await
        .ok()
        .flatten();
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let mut kept = None;
    if dialer.is_none() {
        shared.unnamed.fetch_add(1, Ordering::Relaxed);
        let mut list = shared
            .unnamed_kept
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if list.len() < UNNAMED_KEPT {
            kept = Some(list.len());
            list.push(Unnamed {
                node,
                remote,
                at: shared.started.elapsed().as_secs_f64(),
                to_node: None,
                from_node: None,
            });
        }
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
    let (to_node, from_node) = tokio::try_join!(
        pump(in_read, out_write, to_node),
        pump(out_read, in_write, from_node)
    )?;
    if let Some(k) = kept {
        let mut list = shared
            .unnamed_kept
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = list.get_mut(k) {
            entry.to_node = Some(to_node);
            entry.from_node = Some(from_node);
        }
    }
    Ok(())
}
