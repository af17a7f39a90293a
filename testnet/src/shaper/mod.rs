//! The loopback link shaper: `netem` (delay, jitter, rate) for nodes on
//! 127.0.0.1, where this machine's kernel cannot do it (no `sch_netem`)
//! and loopback has no per-node link to shape anyway.
//!
//! When a loopback manifest has a `netem` event, every node listens on a
//! private port and the runner puts a TCP relay on its public port (the
//! one in `--bootstrap` addresses). The node is started with the hidden
//! `--testnet-advertise PUBLIC` (node built with `--features testnet`), so
//! identify tells peers the public address only, and every connection to a
//! node (Kademlia, redials, bootstrap) goes through its relay. A relay
//! names the dialing node ([`owner`]) and shapes the connection with both
//! nodes' links ([`line`]): what one node's `netem` does applies to every
//! connection it has, dialed or accepted, both ways.
//!
//! What it models: added one-way delay with jitter (per chunk of up to
//! 16 KiB read, order kept) and a rate limit per node and direction
//! (shared by its connections, 16 KiB burst), with a bounded queue (1 MiB
//! and 400 ms of rate backlog per connection and direction, like the
//! namespaces' `tbf … latency 400ms`) after which the sender is pushed
//! back.
//! What it does not: packet loss (TCP would hide it as retransmission
//! delay; a relay has no packets to drop), a real path's TCP dynamics (each
//! side's TCP sees a loopback round trip; its window never limits a
//! connection, the relay's queue does), and a refused dial (a dial to a
//! node that is down connects to its relay and is then closed).
//!
//! Owns a tokio runtime (its own threads, in the runner's process), the
//! relays' listeners, and the per-node shaping the timeline changes; it is
//! stopped on drop.

pub mod line;
pub mod owner;
pub mod relay;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use line::{Links, Shape};
use relay::Shared;

/// The relays of one run.
pub struct Shaper {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

impl Shaper {
    /// Starts a relay for each node: `listeners[i]` (bound already, the
    /// node's public address) forwarding to `targets[i]` (its real
    /// listener).
    pub fn start(
        listeners: Vec<TcpListener>,
        targets: Vec<SocketAddr>,
        seed: u64,
    ) -> std::io::Result<Shaper> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shaper")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            links: Links::new(targets.len()),
            pids: Mutex::new(vec![None; targets.len()]),
            ports: targets.iter().map(SocketAddr::port).collect(),
            accepted: Default::default(),
            unnamed: Default::default(),
            unnamed_kept: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
            seed,
        });
        for (i, (listener, target)) in listeners.into_iter().zip(targets).enumerate() {
            listener.set_nonblocking(true)?;
            let listener = {
                let _inside = runtime.enter();
                tokio::net::TcpListener::from_std(listener)?
            };
            runtime.spawn(relay::serve(listener, i, target, shared.clone()));
        }
        Ok(Shaper {
            runtime: Some(runtime),
            shared,
        })
    }

    /// Node `i`'s process (a new life) or `None` (it ended).
    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        let mut pids = self.shared.pids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = pids.get_mut(i) {
            *slot = pid;
        }
    }

    /// Shapes node `i`'s link from now on (`Shape::default()`: no shaping).
    pub fn set(&self, i: usize, shape: Shape) {
        self.shared.links.set(i, shape);
    }

    /// Connections accepted so far, and how many of those had a dialer
    /// that could not be named (shaped by one end only).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.unnamed.load(Ordering::Relaxed),
        )
    }

    /// The first unnamed connections in detail.
    pub fn unnamed(&self) -> Vec<relay::Unnamed> {
        self.shared
            .unnamed_kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// Parses a `tc`-style rate (`"2mbit"`, `"500kbit"`, `"100kbps"`) into bytes
/// per second (`k` = 1000, `m` = 10^6, as tc does).
pub fn parse_rate(text: &str) -> Option<f64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let value: f64 = digits.parse::<u64>().ok()? as f64;
    let bytes = match &text[digits.len()..] {
        "bit" => value / 8.0,
        "kbit" => value * 1e3 / 8.0,
        "mbit" => value * 1e6 / 8.0,
        "gbit" => value * 1e9 / 8.0,
        "bps" => value,
        "kbps" => value * 1e3,
        "mbps" => value * 1e6,
        _ => return None,
    };
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_tc() {
        assert_eq!(parse_rate("2mbit"), Some(250_000.0));
        assert_eq!(parse_rate("500kbit"), Some(62_500.0));
        assert_eq!(parse_rate("100kbps"), Some(100_000.0));
        assert_eq!(parse_rate("fast"), None);
    }
}
