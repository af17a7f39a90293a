//! Tip latency: a local network of in-process nodes on 127.0.0.1, one of
//! them producing (dev authority, 1 s slots); for each produced height, the
//! time from the producer's store holding the block to each other node's
//! store holding it. Stores are polled every 0.5 ms on a dedicated thread.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Serialize;

use concord::chain::{AuthorityKey, Genesis};
use concord::net::NetConfig;
use concord::node::{self, NodeConfig, RunningNode};
use concord::sync::SyncConfig;

#[derive(Clone, Debug, Default, Serialize)]
pub struct TipLatency {
    pub nodes: usize,
    pub blocks_measured: usize,
    /// One sample per (height, follower).
    pub samples: usize,
    /// Samples never seen on a follower before the deadline.
    pub missing: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// Starts one in-process node on 127.0.0.1 (port chosen by the OS) and
/// returns it with its full `/p2p/` address.
pub async fn start_node(
    dir: &Path,
    bootstrap: Vec<Multiaddr>,
    produce: bool,
    serve_rate_limit: Option<u64>,
    target_peers: Option<usize>,
) -> anyhow::Result<(RunningNode, Multiaddr)> {
    let config = NodeConfig {
        api: None,
        data_dir: dir.to_path_buf(),
        genesis: Genesis::dev(),
        net: NetConfig {
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap,
            serve_rate_limit,
            target_peers: target_peers.unwrap_or(NetConfig::default().target_peers),
            ..NetConfig::default()
        },
        produce: produce.then(AuthorityKey::dev),
        sync: SyncConfig::default(),
    };
    let node = node::start(config).await?;
    let id = node.client.local_peer_id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = node.client.listen_addrs().await.into_iter().next() {
            return Ok((node, a.with(Protocol::P2p(id))));
        }
        anyhow::ensure!(Instant::now() < deadline, "node did not start listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the tip-latency test with `nodes` nodes for `blocks` produced blocks.
pub async fn measure(work: &Path, nodes: usize, blocks: u64) -> anyhow::Result<TipLatency> {
    let _ = std::fs::remove_dir_all(work);
    let (producer, addr) = start_node(&work.join("n0"), vec![], true, None, None).await?;
    let mut all = vec![producer];
    for i in 1..nodes {
        let (n, _) = start_node(
            &work.join(format!("n{i}")),
            vec![addr.clone()],
            false,
            None,
            None,
        )
        .await?;
        all.push(n);
    }
    // Let everyone connect and catch up with what was produced meanwhile.
    let warm = Instant::now();
    loop {
        let h = all[0].store.tip().height;
        let caught_up = all.iter().all(|n| n.store.tip().height >= h);
        if (caught_up && h >= 1 && warm.elapsed() > Duration::from_secs(2))
            || warm.elapsed() > Duration::from_secs(30)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from = all[0].store.tip().height + 1;
    let to = from + blocks - 1;
    let stores: Vec<_> = all.iter().map(|n| n.store.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // seen[node][height - from] = when that node's store first held it.
    let poller = std::thread::spawn(move || {
        let mut seen = vec![vec![None::<Instant>; blocks as usize]; stores.len()];
        let deadline = Instant::now() + Duration::from_secs(blocks * 2 + 30);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            let now = Instant::now();
            for (i, s) in stores.iter().enumerate() {
                let h = s.tip().height.min(to);
                if h >= from {
                    for slot in &mut seen[i][..=(h - from) as usize] {
                        slot.get_or_insert(now);
                    }
                }
            }
            if seen.iter().all(|v| v.iter().all(Option::is_some)) {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        seen
    });
    let seen = tokio::task::spawn_blocking(move || poller.join())
        .await?
        .map_err(|_| anyhow::anyhow!("tip poller panicked"))?;
    stop.store(true, Ordering::Relaxed);
    for n in all {
        let _ = tokio::time::timeout(Duration::from_secs(10), n.stop()).await;
    }
    let _ = std::fs::remove_dir_all(work);

    let mut lat = Vec::new();
    let mut missing = 0;
    for k in 0..blocks as usize {
        let Some(produced) = seen[0][k] else {
            missing += nodes - 1;
            continue;
        };
        for node in &seen[1..] {
            match node[k] {
                Some(t) => lat.push(t.saturating_duration_since(produced).as_secs_f64() * 1000.0),
                None => missing += 1,
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i]
    };
    Ok(TipLatency {
        nodes,
        blocks_measured: blocks as usize,
        samples: lat.len(),
        missing,
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    })
}
