//! Real swarms on 127.0.0.1: the five Concord protocols end to end, bad
//! inbound requests, and discovery through Kademlia.

mod common;

use std::time::Duration;

use common::raw_peer::RawPeer;
use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, Block, BlockRef, Genesis};
use concord::net::{self, Client, InboundFault, NetConfig, NetEvent, NetEvents};
use concord::protocol::{limits, BLOCKS_PROTOCOL};
use concord::store::Store;
use futures::prelude::*;
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr};
use tokio::time::{timeout, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn test_config(bootstrap: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        kad_bootstrap_interval: Duration::from_secs(1),
        ..NetConfig::default()
    }
}

struct Node {
    client: Client,
    events: NetEvents,
    addr: Multiaddr,
}

async fn start(store: Store, bootstrap: Vec<Multiaddr>) -> Node {
    let genesis = store.genesis_hash();
    let (client, mut events, event_loop) = net::new(
        Keypair::generate_ed25519(),
        test_config(bootstrap),
        store,
        genesis,
    )
    .unwrap();
    tokio::spawn(event_loop.run());
    let addr = next_event(&mut events, |e| match e {
        NetEvent::NewListenAddr { addr } => Some(addr.clone()),
        _ => None,
    })
    .await;
    let addr = addr.with(Protocol::P2p(client.local_peer_id()));
    Node {
        client,
        events,
        addr,
    }
}

/// Reads events until `f` returns `Some`, failing after the deadline.
async fn next_event<T>(rx: &mut NetEvents, mut f: impl FnMut(&NetEvent) -> Option<T>) -> T {
    timeout(DEADLINE, async {
        loop {
            let event = rx.recv().await.expect("event channel closed");
            if let Some(t) = f(&event) {
                return t;
            }
        }
    })
    .await
    .expect("expected event did not arrive before the deadline")
}

/// Polls `cond` until it holds, failing after the deadline.
async fn until<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let end = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 300 blocks of 64 KiB (a full range hits the byte budget) then 4200 tiny
/// blocks (a range can hit MAX_BLOCKS_PER_REQUEST).
fn filled_store() -> (Store, Vec<Block>) {
    let genesis = Genesis::dev();
    let store = Store::temporary(&genesis).unwrap();
    let mut big = ChainGenerator::new(
        &genesis,
        AuthorityKey::dev(),
        BlockRef::of(genesis.block()),
        64 * 1024,
        1,
    );
    let mut blocks = big.next_batch(300, 2);
    let mut small = ChainGenerator::new(&genesis, AuthorityKey::dev(), big.tip(), 16, 2);
    blocks.extend(small.next_batch(4200, 2));
    store.import(&blocks).unwrap();
    (store, blocks)
}

fn encoded_len(blocks: &[Block]) -> usize {
    blocks.iter().map(|b| b.encode().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_end_to_end() {
    let genesis = Genesis::dev();
    let (store_a, blocks) = filled_store();
    let tip = store_a.tip();
    assert_eq!(tip.height, 4500);
    let mut a = start(store_a.clone(), vec![]).await;
    let b = start(Store::temporary(&genesis).unwrap(), vec![a.addr.clone()]).await;
    let (pa, pb) = (a.client.local_peer_id(), b.client.local_peer_id());

    until("B connected to A", || async {
        b.client.connected_peers().await.contains(&pa)
    })
    .await;
    next_event(&mut a.events, |e| {
        matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == pb).then_some(())
    })
    .await;

    // height, genesis
    let h = b.client.request_height(pa).await.unwrap();
    assert_eq!((h.height, h.tip), (tip.height, tip.hash));
    assert_eq!(
        b.client.request_genesis(pa).await.unwrap().genesis,
        genesis.hash()
    );

    // block-hash: present, genesis, beyond the tip
    let r = b.client.request_block_hash(pa, 17).await.unwrap();
    assert_eq!((r.height, r.hash), (17, store_a.hash_at(17).unwrap()));
    assert_eq!(r.hash, Some(blocks[16].hash()));
    assert_eq!(
        b.client.request_block_hash(pa, 0).await.unwrap().hash,
        Some(genesis.hash())
    );
    assert_eq!(
        b.client.request_block_hash(pa, 4501).await.unwrap().hash,
        None
    );

    // blocks: a normal range is exactly the stored blocks
    let r = b.client.request_blocks(pa, 5, 10).await.unwrap();
    assert_eq!(r.blocks, blocks[4..14].to_vec());

    // a large range stops at the byte budget; continue from where it stopped
    let mut next = 1u64;
    let mut got: Vec<Block> = Vec::new();
    let mut responses = 0;
    while next <= 300 {
        let r = b.client.request_blocks(pa, next, 300).await.unwrap();
        assert!(
            !r.blocks.is_empty(),
            "a server with the start block sends at least one"
        );
        assert!(encoded_len(&r.blocks) <= limits::RESPONSE_BYTE_BUDGET);
        assert_eq!(r.blocks[0].height(), next);
        next += r.blocks.len() as u64;
        got.extend(r.blocks);
        responses += 1;
    }
    assert!(
        responses >= 5,
        "300 x 64 KiB cannot fit in fewer than 5 responses of 4 MiB"
    );
    got.truncate(300);
    assert_eq!(got, blocks[..300].to_vec());

    // start beyond the tip: empty
    assert!(b
        .client
        .request_blocks(pa, 4501, 10)
        .await
        .unwrap()
        .blocks
        .is_empty());
    assert!(b
        .client
        .request_blocks(pa, u64::MAX, 10)
        .await
        .unwrap()
        .blocks
        .is_empty());

    // count above the maximum is clamped
    let r = b.client.request_blocks(pa, 301, u32::MAX).await.unwrap();
    assert_eq!(r.blocks.len(), limits::MAX_BLOCKS_PER_REQUEST as usize);
    assert_eq!(
        r.blocks[..],
        blocks[300..300 + limits::MAX_BLOCKS_PER_REQUEST as usize]
    );

    // announce
    b.client.announce_tip(42, blocks[41].hash()).await;
    let (peer, height, hash) = next_event(&mut a.events, |e| match e {
        NetEvent::TipAnnounced { peer, height, tip } => Some((*peer, *height, *tip)),
        _ => None,
    })
    .await;
    assert_eq!((peer, height, hash), (pb, 42, blocks[41].hash()));

    // listen addrs
    assert!(!a.client.listen_addrs().await.is_empty());

    // bad requests from a raw peer: garbage, then oversize
    let mut raw = RawPeer::new();
    let raw_id = raw.peer_id;
    let a_base: Multiaddr = a
        .addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    raw.send(pa, a_base.clone(), b"\xff\x00 definitely not CBOR".to_vec())
        .await;
    let (peer, protocol, fault, error) = next_event(&mut a.events, |e| match e {
        NetEvent::BadRequest {
            peer,
            protocol,
            fault,
            error,
        } => Some((*peer, *protocol, *fault, error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (peer, protocol, fault),
        (raw_id, BLOCKS_PROTOCOL, InboundFault::Malformed),
        "{error}"
    );

    raw.send(
        pa,
        a_base,
        vec![0x42; limits::MAX_REQUEST_SIZE as usize * 4],
    )
    .await;
    let (peer, error) = next_event(&mut a.events, |e| match e {
        NetEvent::BadRequest { peer, error, .. } => Some((*peer, error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(peer, raw_id);
    assert!(error.contains("larger than"), "{error}");

    // A is still serving
    let r = b.client.request_blocks(pa, 1, 2).await.unwrap();
    assert_eq!(r.blocks, blocks[..2].to_vec());
    assert_eq!(b.client.request_height(pa).await.unwrap().height, 4500);

    // ban: A drops B and refuses it until the ban expires
    a.client.ban(pb, Duration::from_secs(2)).await;
    until("A dropped B", || async {
        !a.client.connected_peers().await.contains(&pb)
    })
    .await;
    // A refuses B while the ban lasts, though it still takes others: the
    // refusal is about B, not a dead listener.
    let c = start(Store::temporary(&Genesis::dev()).unwrap(), vec![]).await;
    let pc = c.client.local_peer_id();
    c.client
        .dial(a.addr.clone())
        .await
        .expect("A accepts an unbanned peer");
    until("A connected to C", || async {
        a.client.connected_peers().await.contains(&pc)
    })
    .await;
    let _ = b.client.dial(a.addr.clone()).await;
    assert!(
        !a.client.connected_peers().await.contains(&pb),
        "A took the banned peer back"
    );
    c.client.shutdown().await;
    until("B reconnects after the ban expires", || async {
        let _ = b.client.dial(a.addr.clone()).await;
        a.client.connected_peers().await.contains(&pb)
    })
    .await;

    b.client.shutdown().await;
    a.client.shutdown().await;
    assert!(b.client.request_height(pa).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_node_discovers_other_seeders_through_kademlia() {
    let genesis = Genesis::dev();
    let s1 = start(Store::temporary(&genesis).unwrap(), vec![]).await;
    let s2 = start(Store::temporary(&genesis).unwrap(), vec![s1.addr.clone()]).await;
    let s3 = start(Store::temporary(&genesis).unwrap(), vec![s1.addr.clone()]).await;
    let (p1, p2, p3) = (
        s1.client.local_peer_id(),
        s2.client.local_peer_id(),
        s3.client.local_peer_id(),
    );
    until("seeders connected to S1", || async {
        let peers = s1.client.connected_peers().await;
        peers.contains(&p2) && peers.contains(&p3)
    })
    .await;

    let fresh = start(Store::temporary(&genesis).unwrap(), vec![s1.addr.clone()]).await;
    until("fresh node connected to all three seeders", || async {
        let peers = fresh.client.connected_peers().await;
        [p1, p2, p3].iter().all(|p| peers.contains(p))
    })
    .await;
    // And it can query a seeder it was never told about.
    assert_eq!(
        fresh.client.request_genesis(p3).await.unwrap().genesis,
        genesis.hash()
    );
}
