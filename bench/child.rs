//! The syncing node of one scenario, run in its own process
//! (`concord-bench sync-child`, hidden) so that its peak RSS and its TCP bytes are
//! its own. It starts a fresh node, waits until it holds the expected tip,
//! and prints one JSON line of [`ChildReport`] on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use concord::chain::{Genesis, Hash};
use concord::net::NetConfig;
use concord::node::{self, NodeConfig};
use concord::sync::SyncConfig;

/// What the parent asks of the child.
pub struct ChildArgs {
    pub data_dir: PathBuf,
    pub bootstrap: Vec<libp2p::Multiaddr>,
    pub height: u64,
    pub tip: Hash,
    pub timeout: Duration,
}

/// What the child reports. Times are milliseconds since the node started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChildReport {
    pub converged: bool,
    pub height: u64,
    pub tip: String,
    pub synced_ms: Option<f64>,
    pub first_peer_connected_ms: Option<f64>,
    pub first_peer_ahead_ms: Option<f64>,
    pub first_blocks_request_ms: Option<f64>,
    pub blocks_imported: u64,
    pub bytes_imported: u64,
    pub bytes_downloaded: u64,
    pub requests_sent: u64,
    pub block_requests_sent: u64,
    pub retries: u64,
    pub hedges: u64,
    pub banned: usize,
    /// Peers judged to hold another chain (the lying seeder's forged chain).
    pub fork_peers: usize,
    /// Peers it was connected to when synced: the seeders it was given;
    /// one more means it found another through Kademlia.
    #[serde(default)]
    pub peers: usize,
    /// Payload bytes received on the node's TCP sockets (`ss -ti`
    /// `bytes_received`: noise + yamux framing and every protocol included).
    pub tcp_bytes_received: Option<u64>,
    /// VmHWM of this process, KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds this process used, from its start to synced.
    #[serde(default)]
    pub cpu_secs: f64,
    /// Where the in-order import waited on its next batch while a later one
    /// was in (`Stats::head_wait_*`), ms: still downloading, being checked,
    /// and of both the time the lookahead window was full.
    #[serde(default)]
    pub head_waits: u64,
    #[serde(default)]
    pub head_wait_download_ms: f64,
    #[serde(default)]
    pub head_wait_check_ms: f64,
    #[serde(default)]
    pub head_wait_window_full_ms: f64,
    /// Per seeder (ordered as `--bootstrap`, so the slow seeder is last):
    /// blocks responses received from it and head-of-line wait on it, ms.
    #[serde(default)]
    pub per_seeder: Vec<(u64, f64)>,
}

/// Runs the child (blocking; builds its own runtime).
pub fn run(args: ChildArgs) -> anyhow::Result<ChildReport> {
    // Logs (stderr) only when asked for: RUST_LOG=concord=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(sync_once(args))
}

async fn sync_once(args: ChildArgs) -> anyhow::Result<ChildReport> {
    let started = Instant::now();
    let seeders = args.bootstrap.clone();
    let config = NodeConfig {
        api: None,
        data_dir: args.data_dir,
        genesis: Genesis::dev(),
        net: NetConfig {
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            // The scenario's seeders and no others: discovery dials nobody
            // once it has as many peers as it was given.
            target_peers: args.bootstrap.len(),
            bootstrap: args.bootstrap,
            ..NetConfig::default()
        },
        produce: None,
        sync: SyncConfig::default(),
    };
    let node = node::start(config).await?;
    let (height, tip) = (args.height, args.tip);
    let converged = node
        .sync
        .wait_for(args.timeout, |s| {
            s.status.height >= height && node.store.hash_at(height).ok().flatten() == Some(tip)
        })
        .await;
    let synced_ms = converged.then(|| ms(started, Instant::now()));
    let snap = node.sync.snapshot().await;
    let mut report = ChildReport {
        converged,
        synced_ms,
        tcp_bytes_received: tcp_bytes_received(),
        peak_rss_kib: peak_rss_kib(),
        cpu_secs: crate::cpu::process_cpu().as_secs_f64(),
        ..ChildReport::default()
    };
    let local = node.store.tip();
    report.height = local.height;
    report.tip = local.hash.to_hex();
    if let Some(s) = snap {
        let st = &s.stats;
        report.first_peer_connected_ms = st.first_peer_connected_at.map(|t| ms(started, t));
        report.first_peer_ahead_ms = st.first_peer_ahead_at.map(|t| ms(started, t));
        report.first_blocks_request_ms = st.first_blocks_request_at.map(|t| ms(started, t));
        report.blocks_imported = st.blocks_imported;
        report.bytes_imported = st.bytes_imported;
        report.bytes_downloaded = st.bytes_downloaded;
        report.requests_sent = st.requests_sent.values().sum();
        report.block_requests_sent = st.requests_sent.get("blocks").copied().unwrap_or(0);
        report.retries = st.retries;
        report.hedges = st.hedges;
        report.banned = s.banned.len();
        report.fork_peers = s.peers.iter().filter(|p| p.forked_at.is_some()).count();
        report.head_waits = st.head_waits;
        report.head_wait_download_ms = st.head_wait_download.as_secs_f64() * 1e3;
        report.head_wait_check_ms = st.head_wait_check.as_secs_f64() * 1e3;
        report.head_wait_window_full_ms = st.head_wait_window_full.as_secs_f64() * 1e3;
        report.per_seeder = seeders
            .iter()
            .map(|a| {
                let peer = a.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                let served = peer.and_then(|p| st.responses_by_peer.get(&p).copied());
                let waited = peer.and_then(|p| st.head_wait_by_peer.get(&p).copied());
                (
                    served.unwrap_or(0),
                    waited.unwrap_or_default().as_secs_f64() * 1e3,
                )
            })
            .collect();
        report.peers = s.peers.len();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), node.stop()).await;
    Ok(report)
}

fn ms(start: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(start).as_secs_f64() * 1000.0
}

/// VmHWM from /proc/self/status, KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of `bytes_received` over this process's established TCP sockets, from `ss -tinp`.
fn tcp_bytes_received() -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tinpH", "state", "established"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let me = format!("pid={},", std::process::id());
    let (mut total, mut mine, mut seen) = (0u64, false, false);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with(char::is_whitespace) {
            mine = line.contains(&me);
            seen |= mine;
        }
        if mine {
            for word in line.split_whitespace() {
                if let Some(n) = word.strip_prefix("bytes_received:") {
                    total += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    seen.then_some(total)
}
