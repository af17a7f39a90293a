//! A network of its own: three authorities, each with its own key, and a
//! follower, as real swarms on 127.0.0.1. Each authority produces only in
//! its slots; while one is stopped the other two keep producing in theirs;
//! restarted on its stale tip, it syncs before it produces again; every node
//! ends with the same block at every height.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord::chain::{AuthorityKey, Genesis, Hash};
use concord::node::RunningNode;
use concord::sync::SyncConfig;
use libp2p::Multiaddr;

const DEADLINE: Duration = Duration::from_secs(180);
const SLOT_MS: u64 = 1000;

fn keys() -> Vec<AuthorityKey> {
    (1u8..=3)
        .map(|i| AuthorityKey::from_seed([i; 32]))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn genesis() -> Genesis {
    let now = now_ms();
    let authorities = keys().iter().map(AuthorityKey::public).collect();
    Genesis::new(
        "three".into(),
        now - now % SLOT_MS,
        SLOT_MS,
        authorities,
        vec![],
    )
    .unwrap()
}

fn sync_config() -> SyncConfig {
    SyncConfig {
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    }
}

async fn start(
    g: &Genesis,
    dir: std::path::PathBuf,
    bootstrap: Vec<Multiaddr>,
    key: Option<AuthorityKey>,
) -> (RunningNode, Multiaddr) {
    let mut config = common::node_config(dir, bootstrap, key, sync_config());
    config.genesis = g.clone();
    common::start_config(config).await
}

async fn wait_height(node: &RunningNode, what: &str, height: u64) {
    let ok = node
        .sync
        .wait_for(DEADLINE, |s| s.status.height >= height)
        .await;
    assert!(
        ok,
        "timed out waiting for {what} to reach #{height}: {:?}",
        node.sync.snapshot().await.map(|s| s.status)
    );
}

/// The chain of `node` from #1 to its tip: (height, hash, producer index).
fn chain(node: &RunningNode, g: &Genesis) -> Vec<(u64, Hash, usize)> {
    let tip = node.store.tip().height;
    (1..=tip)
        .map(|h| {
            let b = node.store.block(h).unwrap().expect("block below the tip");
            let who = g
                .authorities
                .iter()
                .position(|k| *k == b.header.producer)
                .expect("producer is an authority");
            assert_eq!(
                who,
                g.producer_index_for_slot(g.slot_of(b.header.timestamp_ms)),
                "block #{h} is outside its producer's slot"
            );
            (h, b.hash(), who)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_with_their_own_keys_keep_one_chain_through_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let g = genesis();
    let k = keys();
    let (a0, addr0) = start(&g, d("a0"), vec![], Some(k[0].clone())).await;
    let (a1, addr1) = start(&g, d("a1"), vec![addr0.clone()], Some(k[1].clone())).await;
    let (a2, _) = start(
        &g,
        d("a2"),
        vec![addr0.clone(), addr1.clone()],
        Some(k[2].clone()),
    )
    .await;
    let (f, _) = start(&g, d("f"), vec![addr0.clone()], None).await;

    // A few full rounds: every authority produced in its own slots.
    wait_height(&f, "the follower", 6).await;
    let producers: Vec<usize> = chain(&f, &g).iter().map(|b| b.2).collect();
    for who in 0..3 {
        assert!(
            producers.contains(&who),
            "authority {who} never produced: {producers:?}"
        );
    }

    // Authority 2 stops; the other two keep producing in their slots.
    a2.stop().await.unwrap();
    let stopped_at = f.store.tip().height;
    wait_height(&f, "the follower, one authority down", stopped_at + 4).await;
    let while_down: Vec<usize> = chain(&f, &g)[stopped_at as usize..]
        .iter()
        .map(|b| b.2)
        .collect();
    assert!(
        while_down.contains(&0) && while_down.contains(&1),
        "{while_down:?}"
    );
    // (A block of authority 2 may have been in flight as it stopped.)
    assert!(while_down[1..].iter().all(|&w| w != 2), "{while_down:?}");

    // Restarted on its stale tip at the start of one of its own slots, when
    // a producer that did not wait for sync would build on that tip at once:
    // it syncs, then produces on the network's chain.
    let now = now_ms();
    let slot = (g.slot_of(now) + 1..)
        .find(|&s| g.producer_index_for_slot(s) == 2)
        .unwrap();
    let slot_start = slot * SLOT_MS;
    // Scheduling the scenario on the wall clock (the slots are), not
    // synchronizing with the nodes.
    tokio::time::sleep(Duration::from_millis(slot_start.saturating_sub(now) + 20)).await;
    let behind = f.store.tip().height;
    let (a2, _) = start(&g, d("a2"), vec![addr0, addr1], Some(k[2].clone())).await;
    assert!(
        a2.store.tip().height < behind,
        "not stale: the test proves nothing"
    );
    let produced_again = a2
        .sync
        .wait_for(DEADLINE, |_| {
            chain(&f, &g)[behind as usize..].iter().any(|b| b.2 == 2)
        })
        .await;
    assert!(
        produced_again,
        "the restarted authority never produced again"
    );
    let snap = a2.sync.snapshot().await.unwrap();
    assert_eq!(
        snap.stats.reorgs, 0,
        "the restarted authority built on its stale tip and had to reorg"
    );

    // Every node holds the same block at every height up to a common height.
    let top = f.store.tip().height + 2;
    for (n, name) in [(&a0, "a0"), (&a1, "a1"), (&a2, "a2"), (&f, "f")] {
        wait_height(n, name, top).await;
    }
    let reference: Vec<(u64, Hash, usize)> = chain(&f, &g)[..top as usize].to_vec();
    for (n, name) in [(&a0, "a0"), (&a1, "a1"), (&a2, "a2")] {
        assert_eq!(
            chain(n, &g)[..top as usize],
            reference[..],
            "{name} differs"
        );
    }
    // A block built on the stale tip would have had to be rolled back to get here.
    let reorgs = a2.sync.snapshot().await.unwrap().stats.reorgs;
    assert_eq!(reorgs, 0, "the restarted authority built on its stale tip");
    for n in [f, a2, a1, a0] {
        let banned = n.sync.snapshot().await.unwrap().banned;
        assert!(banned.is_empty(), "banned: {banned:?}");
        n.stop().await.unwrap();
    }
}
