//! Fork safety over real swarms on 127.0.0.1: nodes holding a competing,
//! validly signed chain (made by `concord generate` with another seed) try
//! to talk honest nodes out of theirs. The honest node keeps its chain and
//! bans nobody; an eclipsed node is rescued by honest peers arriving one by
//! one; an even split is reported and idles until a checkpoint decides it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use concord::node::RunningNode;
use concord::sync::{Checkpoint, SyncConfig, SyncSnapshot};
use libp2p::{Multiaddr, PeerId};

fn sync_config(checkpoints: Vec<Checkpoint>) -> SyncConfig {
    SyncConfig {
        status_interval: Duration::from_secs(1),
        consistency_interval: Duration::from_secs(2),
        checkpoints,
        ..SyncConfig::default()
    }
}

async fn start(
    dir: PathBuf,
    bootstrap: Vec<Multiaddr>,
    sync: SyncConfig,
) -> (RunningNode, Multiaddr) {
    common::start_node(dir, bootstrap, None, sync).await
}

fn peer<'a>(s: &'a SyncSnapshot, id: &PeerId) -> Option<&'a concord::sync::driver::PeerSnapshot> {
    s.peers
        .iter()
        .find(|p| p.peer == *id && p.state == "verified")
}

/// Verified, and on our fork (`Some(false)`) or judged on another (`Some(true)`).
fn forked(s: &SyncSnapshot, id: &PeerId) -> Option<bool> {
    peer(s, id).map(|p| p.forked_at.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_seeder_keeps_its_chain_and_bans_nobody_when_fork_holders_connect_first() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let mut honest = None;
    for n in ["s", "h1", "h2"] {
        honest = Some(common::generate_seeded(&d(n), 2_000, 0));
    }
    let honest = honest.unwrap();
    // A longer fork from #1,700, validly signed.
    for n in ["a", "b"] {
        common::generate_seeded(&d(n), 1_700, 0);
        common::generate_seeded(&d(n), 400, 1);
    }
    let (a, aa) = start(d("a"), vec![], sync_config(vec![])).await;
    let (b, ab) = start(d("b"), vec![aa.clone()], sync_config(vec![])).await;
    let (a_id, b_id) = (a.client.local_peer_id(), b.client.local_peer_id());
    // The seeder's first peers are the two fork holders.
    let (s, sa) = start(d("s"), vec![aa, ab], sync_config(vec![])).await;
    common::wait_sync(&s, "the seeder to judge both fork holders", |x| {
        forked(x, &a_id) == Some(true) && forked(x, &b_id) == Some(true)
    })
    .await;
    assert_eq!(s.store.tip().hash, honest, "converted by two peers");
    let (h1, _) = start(d("h1"), vec![sa.clone()], sync_config(vec![])).await;
    let (h2, _) = start(d("h2"), vec![sa], sync_config(vec![])).await;
    let (h1_id, h2_id) = (h1.client.local_peer_id(), h2.client.local_peer_id());
    // Two against two, every view counted: the node keeps its chain and
    // reports the split instead of choosing.
    common::wait_sync(&s, "the seeder to weigh all four peers", |x| {
        forked(x, &h1_id) == Some(false)
            && forked(x, &h2_id) == Some(false)
            && forked(x, &a_id) == Some(true)
            && forked(x, &b_id) == Some(true)
            && x.status.mode.name() == "split"
    })
    .await;
    let snap = s.sync.snapshot().await.unwrap();
    assert_eq!(snap.status.tip, honest);
    assert_eq!(snap.stats.reorgs, 0);
    assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    for n in [&h1, &h2] {
        let snap = n.sync.snapshot().await.unwrap();
        assert_eq!(n.store.tip().hash, honest);
        assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    }
    for n in [h2, h1, s, b, a] {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eclipsed_node_reorgs_after_three_honest_peers_arrive_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let mut honest = None;
    for n in ["h1", "h2", "h3"] {
        honest = Some(common::generate_seeded(&d(n), 2_000, 0));
    }
    let honest = honest.unwrap();
    common::generate_seeded(&d("f"), 1_700, 0);
    let fork = common::generate_seeded(&d("f"), 300, 1);
    let (f, fa) = start(d("f"), vec![], sync_config(vec![])).await;
    // Bootstrapped to the fork holder alone: it can only take its chain.
    let (n, na) = start(d("n"), vec![fa], sync_config(vec![])).await;
    common::wait_sync(&n, "the eclipsed node to sync the fork", |x| {
        x.status.tip == fork
    })
    .await;
    let mut hs = Vec::new();
    for name in ["h1", "h2", "h3"] {
        let (h, _) = start(d(name), vec![na.clone()], sync_config(vec![])).await;
        let id = h.client.local_peer_id();
        common::wait_sync(&n, "an honest arrival to be verified", |x| {
            peer(x, &id).is_some() || x.status.tip == honest
        })
        .await;
        hs.push(h);
    }
    common::wait_sync(&n, "the eclipsed node to reorg to the honest chain", |x| {
        x.status.tip == honest && x.status.height == 2_000
    })
    .await;
    assert_eq!(n.store.tip().hash, honest);
    let snap = n.sync.snapshot().await.unwrap();
    assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    assert!(snap.stats.reorgs >= 1);
    // Both chains are the dev authority's, slot for slot: each fork block
    // the reorg replaced is an equivocation by that authority.
    assert!(n.metrics.equivocations("reorg") >= 1);
    assert_eq!(n.metrics.equivocations("own_slot"), 0);
    for h in &hs {
        assert_eq!(h.store.tip().hash, honest, "an honest peer was converted");
        let s = h.sync.snapshot().await.unwrap();
        assert!(s.banned.is_empty(), "banned: {:?}", s.banned);
    }
    for h in hs {
        h.stop().await.unwrap();
    }
    n.stop().await.unwrap();
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_even_split_is_reported_the_node_idles_and_a_checkpoint_resolves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let mut honest = None;
    for n in ["h1", "h2", "h3"] {
        honest = Some(common::generate_seeded(&d(n), 2_000, 0));
    }
    let honest = honest.unwrap();
    for n in ["f1", "f2", "f3"] {
        common::generate_seeded(&d(n), 2_000, 1);
    }
    let mut seeders = Vec::new();
    let mut addrs = Vec::new();
    let mut fork_ids = Vec::new();
    for n in ["h1", "h2", "h3", "f1", "f2", "f3"] {
        let (node, addr) = start(d(n), vec![], sync_config(vec![])).await;
        if n.starts_with('f') {
            fork_ids.push(node.client.local_peer_id());
        }
        seeders.push(node);
        addrs.push(addr);
    }
    let (n, _) = start(d("n"), addrs.clone(), sync_config(vec![])).await;
    common::wait_sync(&n, "the split to be reported", |x| {
        x.status.mode.name() == "split"
            && x.status
                .stalled
                .as_deref()
                .is_some_and(|r| r.starts_with("split"))
    })
    .await;
    // The operator is told who holds each side, on /status and in metrics.
    let snap = n.sync.snapshot().await.unwrap();
    let stalled = snap.status.stalled.clone().unwrap_or_default();
    assert!(
        fork_ids.iter().any(|p| stalled.contains(&p.to_string())),
        "the split does not name the fork holders: {stalled}"
    );
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (mode, splits, _) = n.metrics.sync_mode_figures("split");
        if mode == 1 && splits >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "split metrics: mode {mode}, splits {splits}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idle while split: over a few seconds, no stream of block downloads.
    let before = n.sync.snapshot().await.unwrap().stats;
    let quiet = n
        .sync
        .wait_for(Duration::from_secs(5), |x| {
            x.stats.requests_sent.get("blocks").copied().unwrap_or(0)
                > before.requests_sent.get("blocks").copied().unwrap_or(0) + 2
        })
        .await;
    let after = n.sync.snapshot().await.unwrap();
    assert!(
        !quiet,
        "block requests while split: {:?} -> {:?}",
        before.requests_sent, after.stats.requests_sent
    );
    assert!(after.stats.bytes_downloaded - before.bytes_downloaded < 2 * 1024 * 1024);
    assert_eq!(after.status.height, 0);
    assert!(after.banned.is_empty(), "{:?}", after.banned);
    n.stop().await.unwrap();

    // The operator vouches for the honest block at #1,000: the same node,
    // restarted with the checkpoint, drops the fork holders and syncs.
    let cp_hash = seeders[0].store.hash_at(1_000).unwrap().unwrap();
    let cp = Checkpoint {
        height: 1_000,
        hash: cp_hash,
    };
    let (n, _) = start(d("n"), addrs, sync_config(vec![cp])).await;
    common::wait_sync(&n, "the checkpointed node to sync the honest chain", |x| {
        x.status.tip == honest && x.banned.len() == 3
    })
    .await;
    let snap = n.sync.snapshot().await.unwrap();
    let mut banned: Vec<(PeerId, &str)> = snap.banned.clone();
    banned.sort();
    let mut expected: Vec<(PeerId, &str)> = fork_ids
        .iter()
        .map(|p| (*p, "contradicts_checkpoint"))
        .collect();
    expected.sort();
    assert_eq!(banned, expected);
    n.stop().await.unwrap();
    for s in seeders {
        s.stop().await.unwrap();
    }
}
