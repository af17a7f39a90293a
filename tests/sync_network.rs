//! Sync over real swarms on 127.0.0.1: seeders holding chains made by
//! `concord generate`, a fresh node that finds them through Kademlia and
//! syncs, follows a producer, and is not fooled by a forger (who is on
//! another fork, not banned).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use concord::chain::AuthorityKey;
use concord::node::RunningNode;
use concord::sync::SyncConfig;
use libp2p::Multiaddr;

const DEADLINE: Duration = Duration::from_secs(180);

async fn start(dir: PathBuf, bootstrap: Vec<Multiaddr>, produce: bool) -> (RunningNode, Multiaddr) {
    let sync = SyncConfig {
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    };
    common::start_node(dir, bootstrap, produce.then(AuthorityKey::dev), sync).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_node_finds_seeders_through_kademlia_syncs_and_follows_a_producer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tip = None;
    for name in ["s1", "s2", "s3", "producer"] {
        let t = common::generate_seeded(&tmp.path().join(name), 20_000, 0);
        assert!(tip.is_none_or(|x| x == t), "same arguments, same chain");
        tip = Some(t);
    }
    let tip = tip.unwrap();
    let (s1, a1) = start(tmp.path().join("s1"), vec![], false).await;
    let (s2, _) = start(tmp.path().join("s2"), vec![a1.clone()], false).await;
    let (s3, _) = start(tmp.path().join("s3"), vec![a1.clone()], false).await;
    // The fresh node knows only s1; Kademlia must bring it s2 and s3.
    let (fresh, _) = start(tmp.path().join("fresh"), vec![a1.clone()], false).await;
    let synced = fresh
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.height == 20_000
                && s.status.tip == tip
                && s.peers.iter().filter(|p| p.state == "verified").count() >= 3
        })
        .await;
    let snap = fresh.sync.snapshot().await.unwrap();
    assert!(synced, "fresh node did not sync from 3 seeders: {snap:?}");
    assert!(
        snap.banned.is_empty(),
        "honest seeders banned: {:?}",
        snap.banned
    );
    assert_eq!(fresh.store.tip().hash, tip);

    // A producer joins with the same chain and extends it; the follower tracks it.
    let (producer, _) = start(tmp.path().join("producer"), vec![a1.clone()], true).await;
    let followed = fresh
        .sync
        .wait_for(DEADLINE, |s| s.status.height >= 20_003)
        .await;
    assert!(
        followed,
        "follower did not track the producer: {:?}",
        fresh.sync.snapshot().await
    );
    let h = 20_003;
    let theirs = producer.store.hash_at(h).unwrap();
    assert_eq!(fresh.store.hash_at(h).unwrap(), theirs, "same block at {h}");
    for n in [producer, fresh, s3, s2, s1] {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_serving_a_forged_chain_is_judged_on_another_fork_and_the_node_ends_honest() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = common::generate_seeded(&tmp.path().join("h1"), 6_000, 0);
    common::generate_seeded(&tmp.path().join("h2"), 6_000, 0);
    common::generate_seeded(&tmp.path().join("h3"), 6_000, 0);
    // Valid format, signed by the (well-known) dev key, different content.
    let forged = common::generate_seeded(&tmp.path().join("liar"), 6_000, 1);
    assert_ne!(honest, forged);
    let (h1, a1) = start(tmp.path().join("h1"), vec![], false).await;
    let (h2, a2) = start(tmp.path().join("h2"), vec![a1.clone()], false).await;
    let (h3, a3) = start(tmp.path().join("h3"), vec![a1.clone()], false).await;
    let (liar, a4) = start(tmp.path().join("liar"), vec![a1.clone()], false).await;
    let liar_id = liar.client.local_peer_id();
    let (fresh, _) = start(tmp.path().join("fresh"), vec![a1, a2, a3, a4], false).await;
    let done = fresh
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.height == 6_000
                && s.status.tip == honest
                && s.peers
                    .iter()
                    .any(|p| p.peer == liar_id && p.forked_at.is_some())
        })
        .await;
    let snap = fresh.sync.snapshot().await.unwrap();
    assert!(
        done,
        "node did not end honest with the forger judged on another fork: {snap:?}"
    );
    // Validly signed blocks of another chain are a fork, not a lie: nobody
    // is banned, and no honest seeder is taken for a fork holder.
    assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    assert!(
        snap.peers
            .iter()
            .filter(|p| p.peer != liar_id)
            .all(|p| p.forked_at.is_none()),
        "{:?}",
        snap.peers
    );
    assert_eq!(fresh.store.tip().hash, honest);
    for n in [fresh, liar, h3, h2, h1] {
        n.stop().await.unwrap();
    }
}
