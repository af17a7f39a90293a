//! The runner's view of a node: one HTTP/1.1 GET to its API over a
//! `TcpStream` (loopback only, short timeouts), and the few fields of
//! `/status`, `/peers`, `/blocks/{h}` and `/metrics` the runner reads.
//!
//! Owns the wire shapes the runner depends on; it knows nothing of the
//! node's code (only its documented HTTP API).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Answers are small; anything bigger is not our node.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{addr}{path}: {source}")]
    Io {
        addr: SocketAddr,
        path: String,
        source: std::io::Error,
    },
    #[error("{addr}{path}: answered {status}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: String,
    },
    #[error("{addr}{path}: malformed answer: {reason}")]
    Malformed {
        addr: SocketAddr,
        path: String,
        reason: String,
    },
}

/// `GET path`: the body of a 2xx answer.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ApiError> {
    let io = |source| ApiError::Io {
        addr,
        path: path.to_string(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(ApiError::Malformed {
            addr,
            path: path.to_string(),
            reason: "no end of headers".into(),
        });
    };
    let status = head.lines().next().unwrap_or_default();
    if status
        .split_whitespace()
        .nth(1)
        .is_none_or(|c| !c.starts_with('2'))
    {
        return Err(ApiError::Status {
            addr,
            path: path.to_string(),
            status: status.to_string(),
        });
    }
    Ok(body.to_string())
}

fn get_json<T: for<'de> Deserialize<'de>>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<T, ApiError> {
    let body = get(addr, path, timeout)?;
    serde_json::from_str(&body).map_err(|e| ApiError::Malformed {
        addr,
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// The fields of `GET /status` the runner uses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Status {
    pub height: u64,
    pub tip: String,
    pub target: Option<u64>,
    pub syncing: bool,
    pub peers: usize,
    pub mode: String,
    pub stalled: Option<String>,
    /// Empty until the p2p listener is up.
    #[serde(default)]
    pub listen_addrs: Vec<String>,
}

/// One entry of `GET /peers`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Peer {
    pub id: String,
    pub state: String,
    pub score: i32,
    pub fork_at: Option<u64>,
    pub height: Option<u64>,
}

#[derive(Deserialize)]
struct PeersBody {
    peers: Vec<Peer>,
}

#[derive(Deserialize)]
struct BlockBody {
    hash: String,
}

pub fn status(addr: SocketAddr, timeout: Duration) -> Result<Status, ApiError> {
    get_json(addr, "/status", timeout)
}

pub fn peers(addr: SocketAddr, timeout: Duration) -> Result<Vec<Peer>, ApiError> {
    get_json::<PeersBody>(addr, "/peers", timeout).map(|b| b.peers)
}

/// The hash of the block at `height`.
pub fn block_hash(addr: SocketAddr, height: u64, timeout: Duration) -> Result<String, ApiError> {
    get_json::<BlockBody>(addr, &format!("/blocks/{height}"), timeout).map(|b| b.hash)
}

/// The sum of every sample of the counter or gauge `name` (all labels) in
/// Prometheus text; 0 if absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name` exactly, then labels or a space (not a longer name).
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            l.rsplit(' ').next()?.parse::<f64>().ok()
        })
        // An empty f64 sum is -0.0; report a plain 0.
        .sum::<f64>()
        + 0.0
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_sum_adds_labels_and_skips_longer_names() {
        let text = "# HELP concord_bans Peer bans\n\
                    concord_bans_total{reason=\"invalid_block\"} 2\n\
                    concord_bans_total{reason=\"genesis\"} 1\n\
                    concord_bans_total_extra 9\n\
                    concord_reorgs_total 3\n";
        assert_eq!(metric_sum(text, "concord_bans_total"), 3.0);
        assert_eq!(metric_sum(text, "concord_reorgs_total"), 3.0);
        assert_eq!(metric_sum(text, "concord_missing"), 0.0);
    }
}
