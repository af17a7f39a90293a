//! The peer lifecycle over real swarms on 127.0.0.1: a disconnect is never
//! lost to a full event channel, a peer that goes silent on an open
//! connection is dropped while healthy ones stay, a peer sending garbage
//! requests is banned, a lost seeder is redialed (and no peers reads as no
//! peers meanwhile), and bans and the address book survive a restart.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw_peer::RawPeer;
use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, BlockRef, Genesis, Hash};
use concord::metrics::Metrics;
use concord::net::{self, Client, NetConfig, NetEvent, NetEvents, Source};
use concord::node::RunningNode;
use concord::store::Store;
use concord::sync::{Action, LocalChain, Request, Response, SyncConfig, SyncEngine};
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId};

const DEADLINE: Duration = Duration::from_secs(180);

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
}

/// Waits (with a deadline) until `cond` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let end = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct StoreChain(Store);

impl LocalChain for StoreChain {
    fn tip(&self) -> BlockRef {
        self.0.tip()
    }
    fn hash_at(&self, height: u64) -> Result<Option<Hash>, concord::sync::engine::StoreFailure> {
        self.0
            .hash_at(height)
            .map_err(|e| concord::sync::engine::StoreFailure::Io(e.to_string()))
    }
}

/// Plays the sync driver for genesis and height questions only.
async fn drive(engine: &mut SyncEngine, client: &Client) {
    while let Some(action) = engine.poll_action() {
        if let Action::Send { id, peer, request } = action {
            let answer = match request {
                Request::Genesis => client
                    .request_genesis(peer)
                    .await
                    .map(|r| Response::Genesis(r.genesis)),
                Request::Height => client.request_height(peer).await.map(|r| Response::Height {
                    height: r.height,
                    tip: r.tip,
                }),
                _ => continue,
            };
            if let Ok(answer) = answer {
                engine.handle_response(id, Ok(answer), Instant::now());
            }
        }
    }
}

/// Hands the next event (if one comes within `wait`) to the engine.
async fn feed(engine: &mut SyncEngine, events: &mut NetEvents, wait: Duration) -> Option<NetEvent> {
    let event = tokio::time::timeout(wait, events.recv()).await.ok()??;
    let now = Instant::now();
    match &event {
        NetEvent::PeerConnected { peer, .. } => engine.handle_peer_connected(*peer, now),
        NetEvent::PeerDisconnected { peer } => engine.handle_peer_disconnected(*peer, now),
        _ => {}
    }
    Some(event)
}

fn served(registry: &prometheus_client::registry::Registry, protocol: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let key = format!("concord_inbound_requests_served_total{{protocol=\"{protocol}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_is_not_lost_when_the_event_channel_is_full() {
    let genesis = Genesis::dev();
    // A: the node under test, with room for one bulk event only.
    let store_a = Store::temporary(&genesis).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (client_a, mut events, event_loop) = net::new_with_metrics(
        Keypair::generate_ed25519(),
        NetConfig {
            listen_addrs: loopback(),
            event_channel_capacity: 1,
            ..NetConfig::default()
        },
        store_a.clone(),
        genesis.hash(),
        &mut registry,
        metrics,
    )
    .unwrap();
    tokio::spawn(event_loop.run());
    // B: a peer 5 blocks ahead.
    let store_b = Store::temporary(&genesis).unwrap();
    let mut gen = ChainGenerator::new(
        &genesis,
        AuthorityKey::dev(),
        BlockRef::of(genesis.block()),
        16,
        1,
    );
    store_b.import(&gen.next_batch(5, 1)).unwrap();
    let (client_b, _events_b, loop_b) = net::new(
        Keypair::generate_ed25519(),
        NetConfig {
            listen_addrs: loopback(),
            ..NetConfig::default()
        },
        store_b,
        genesis.hash(),
    )
    .unwrap();
    tokio::spawn(loop_b.run());
    let pb = client_b.local_peer_id();

    let mut engine = SyncEngine::new(
        SyncConfig::default(),
        genesis.hash(),
        genesis.slot_ms,
        Box::new(StoreChain(store_a.clone())),
        Instant::now(),
    );
    let end = Instant::now() + DEADLINE;
    let a_addr = loop {
        if let Some(a) = client_a.listen_addrs().await.into_iter().next() {
            break a.with(Protocol::P2p(client_a.local_peer_id()));
        }
        assert!(Instant::now() < end, "A never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client_b.dial(a_addr).await.unwrap();
    // The sync side learns B and counts its height.
    let end = Instant::now() + DEADLINE;
    while engine.status(Instant::now()).target != Some(5) {
        assert!(Instant::now() < end, "A's engine never counted B");
        feed(&mut engine, &mut events, Duration::from_millis(100)).await;
        drive(&mut engine, &client_a).await;
    }

    // Nobody reads A's events now: B's pushes fill the channel, then B leaves.
    // (A takes at most 16 announce streams at once per connection; a few
    // more than the channel holds is all this needs.)
    for h in 0..10 {
        client_b.announce_tip(100 + h, Hash::ZERO).await;
    }
    until("A served B's announcements", || {
        let n = served(&registry, "/concord/announce/1");
        async move { n >= 5 }
    })
    .await;
    client_b.shutdown().await;
    until("A lost B", || {
        let c = client_a.clone();
        async move { !c.connected_peers().await.contains(&pb) }
    })
    .await;

    // Everything A reported reaches the sync side: the disconnect too. It
    // comes first (the lossless lane is read first); the announcements that
    // fit in the channel were queued before it.
    let mut tips = 0;
    let mut gone = false;
    while !gone {
        match feed(&mut engine, &mut events, DEADLINE).await {
            Some(NetEvent::TipAnnounced { .. }) => tips += 1,
            Some(NetEvent::PeerDisconnected { peer }) if peer == pb => gone = true,
            Some(_) => {}
            None => panic!("the disconnect was lost"),
        }
    }
    while let Some(event) = feed(&mut engine, &mut events, Duration::from_millis(100)).await {
        if let NetEvent::TipAnnounced { .. } = event {
            tips += 1;
        }
    }
    assert!(
        tips <= 1,
        "the channel was full: {tips} announcements got through"
    );
    let status = engine.status(Instant::now());
    assert!(engine.peer_book().get(&pb).is_none(), "B is a ghost");
    assert_eq!(status.target, None, "B's height still counts");
    assert_eq!(status.peers, 0);
    client_a.shutdown().await;
}

/// A swarm that answers pings (and pings back at libp2p's default pace),
/// keeps idle connections, and dials `target`.
fn pinging_peer(target: &Multiaddr) -> libp2p::Swarm<libp2p::ping::Behaviour> {
    let mut swarm = common::raw_peer::bare_swarm(
        libp2p::ping::Behaviour::default(),
        Duration::from_secs(3600),
    );
    swarm.dial(target.clone()).unwrap();
    swarm
}

/// Drives `swarm` until it is dropped; sets `closed` if a connection ends.
async fn keep_driving<B: libp2p::swarm::NetworkBehaviour>(
    mut swarm: libp2p::Swarm<B>,
    closed: Arc<std::sync::atomic::AtomicBool>,
) {
    use futures::StreamExt;
    loop {
        if let libp2p::swarm::SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_silent_on_an_open_connection_is_dropped_and_healthy_ones_stay() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let genesis = Genesis::dev();
    let store = Store::temporary(&genesis).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    // 2 pings in a row failed: the one in flight times out after 1 s, and
    // 300 ms later libp2p's negotiation of a new ping stream after its fixed
    // 10 s: a silent peer is dropped about 11.3 s after it froze.
    let config = NetConfig {
        listen_addrs: loopback(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_secs(1),
        ping_max_failures: 2,
        ..NetConfig::default()
    };
    let (client, mut events, event_loop) = net::new_with_metrics(
        Keypair::generate_ed25519(),
        config,
        store.clone(),
        store.genesis_hash(),
        &mut registry,
        metrics.clone(),
    )
    .unwrap();
    tokio::spawn(event_loop.run());
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(NetEvent::NewListenAddr { addr }) = events.recv().await {
                return addr;
            }
        }
    })
    .await
    .unwrap();

    // The peer to be silenced runs on a runtime of its own, in a thread of
    // its own: blocking that thread stops its connection tasks, so nothing
    // answers while the kernel keeps its TCP connection open.
    let (id_tx, id_rx) = std::sync::mpsc::channel();
    let (freeze_tx, freeze_rx) = tokio::sync::oneshot::channel::<()>();
    let (thaw_tx, thaw_rx) = std::sync::mpsc::channel::<()>();
    let silent_thread = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use futures::StreamExt;
                let mut swarm = pinging_peer(&addr);
                id_tx.send(*swarm.local_peer_id()).unwrap();
                let mut freeze = std::pin::pin!(freeze_rx);
                loop {
                    tokio::select! {
                        _ = swarm.select_next_some() => {}
                        _ = &mut freeze => break,
                    }
                }
                // Frozen: the whole runtime waits here, the swarm alive.
                let _ = thaw_rx.recv();
                drop(swarm);
            });
        })
    };
    let silent = id_rx.recv().unwrap();

    let healthy_closed = Arc::new(AtomicBool::new(false));
    let healthy_swarm = pinging_peer(&addr);
    let healthy = *healthy_swarm.local_peer_id();
    let healthy_task = tokio::spawn(keep_driving(healthy_swarm, healthy_closed.clone()));
    // A peer that does not speak ping at all: never closed for it.
    let mute_closed = Arc::new(AtomicBool::new(false));
    let mut mute_swarm = common::raw_peer::raw_swarm(
        common::raw_peer::RawCodec,
        concord::protocol::HEIGHT_PROTOCOL,
        libp2p::request_response::Config::default(),
        Duration::from_secs(3600),
    );
    mute_swarm.dial(addr.clone()).unwrap();
    let mute = *mute_swarm.local_peer_id();
    let mute_task = tokio::spawn(keep_driving(mute_swarm, mute_closed.clone()));

    until("all three peers are connected", || {
        let c = client.clone();
        async move {
            let peers = c.connected_peers().await;
            [silent, healthy, mute].iter().all(|p| peers.contains(p))
        }
    })
    .await;
    assert_eq!(metrics.silent_connections_closed(), 0);

    freeze_tx.send(()).unwrap();
    let frozen_at = Instant::now();
    let end = frozen_at + Duration::from_secs(30);
    loop {
        if !client.connected_peers().await.contains(&silent) {
            break;
        }
        assert!(Instant::now() < end, "the silent peer was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = frozen_at.elapsed();
    eprintln!("silent peer dropped {took:?} after it froze");

    let peers = client.connected_peers().await;
    assert!(peers.contains(&healthy), "the healthy peer was dropped");
    assert!(peers.contains(&mute), "the peer without ping was dropped");
    assert!(!healthy_closed.load(Ordering::SeqCst));
    assert!(!mute_closed.load(Ordering::SeqCst));
    assert_eq!(metrics.silent_connections_closed(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("concord_silent_connections_closed_total 1"),
        "{text}"
    );

    thaw_tx.send(()).unwrap();
    silent_thread.join().unwrap();
    healthy_task.abort();
    mute_task.abort();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_undecodable_requests_is_banned() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, addr) =
        common::start_node(tmp.path().join("a"), vec![], None, SyncConfig::default()).await;
    let id = node.client.local_peer_id();
    let base: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    let mut raw = RawPeer::new();
    let raw_id = raw.peer_id;
    for _ in 0..2 {
        raw.send(id, base.clone(), b"\xff\x00 not CBOR".to_vec())
            .await;
    }
    let banned = node
        .sync
        .wait_for(DEADLINE, |s| s.banned.contains(&(raw_id, "bad_request")))
        .await;
    assert!(banned, "{:?}", node.sync.snapshot().await);
    until("the raw peer is disconnected", || {
        let c = node.client.clone();
        async move { !c.connected_peers().await.contains(&raw_id) }
    })
    .await;
    node.stop().await.unwrap();
}

fn seeder_net(listen: Multiaddr, rate: Option<u64>) -> NetConfig {
    NetConfig {
        listen_addrs: vec![listen],
        serve_rate_limit: rate,
        ..NetConfig::default()
    }
}

/// A net config in which only our own dials can explain a reconnect:
/// discovery (Kademlia walk and dials of known peers) runs every 10 minutes,
/// and without `listen` nobody can dial us.
fn patient_net(bootstrap: Vec<Multiaddr>, listen: bool) -> NetConfig {
    NetConfig {
        listen_addrs: if listen { loopback() } else { vec![] },
        bootstrap,
        kad_bootstrap_interval: Duration::from_secs(600),
        ..NetConfig::default()
    }
}

fn quick_sync() -> SyncConfig {
    SyncConfig {
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    }
}

fn port_of(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a tcp address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_seeder_restarting_is_redialed_and_sync_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir: PathBuf = tmp.path().join("seeder");
    let tip = common::generate_seeded(&seed_dir, 10_000, 0);
    // Slow enough that the syncing node is mid-sync when the seeder stops.
    let (seeder, seed_addr) = common::start_node_with(
        seed_dir.clone(),
        seeder_net(loopback()[0].clone(), Some(400_000)),
        None,
        quick_sync(),
    )
    .await;
    let (node, _) = common::start_node_with(
        tmp.path().join("node"),
        patient_net(vec![seed_addr.clone()], false),
        None,
        quick_sync(),
    )
    .await;
    let started = node.sync.wait_for(DEADLINE, |s| s.status.height > 0).await;
    assert!(
        started,
        "sync never started: {:?}",
        node.sync.snapshot().await
    );
    seeder.stop().await.unwrap();

    // No peers reads as no peers: a stall with its reason, never "synced".
    let no_peers = node
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.peers == 0 && s.status.stalled.as_deref() == Some("no peers")
        })
        .await;
    let snap = node.sync.snapshot().await.unwrap();
    assert!(no_peers, "{:?}", snap.status);
    assert!(
        snap.status.height < 10_000,
        "finished before the seeder stopped"
    );

    // Same key (data dir), same port.
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", port_of(&seed_addr))
        .parse()
        .unwrap();
    let (seeder, _) =
        common::start_node_with(seed_dir, seeder_net(listen, None), None, quick_sync()).await;
    let done = node
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.height == 10_000 && s.status.tip == tip
        })
        .await;
    assert!(
        done,
        "did not reconnect and finish: {:?}",
        node.sync.snapshot().await
    );
    let sources = node.client.peer_sources().await;
    assert_eq!(
        sources.get(&seeder.client.local_peer_id()),
        Some(&Source::Bootstrap)
    );
    node.stop().await.unwrap();
    seeder.stop().await.unwrap();
}

async fn wait_verified(node: &RunningNode, peer: PeerId) -> bool {
    node.sync
        .wait_for(DEADLINE, |s| {
            s.peers
                .iter()
                .any(|p| p.peer == peer && p.state == "verified")
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_bans_and_reconnects_from_its_address_book() {
    let tmp = tempfile::tempdir().unwrap();
    let tip = common::generate_seeded(&tmp.path().join("seeder"), 50, 0);
    let (seeder, seed_addr) =
        common::start_node(tmp.path().join("seeder"), vec![], None, quick_sync()).await;
    let seeder_id = seeder.client.local_peer_id();
    let node_dir = tmp.path().join("node");
    let (node, node_addr) = common::start_node_with(
        node_dir.clone(),
        patient_net(vec![seed_addr], true),
        None,
        quick_sync(),
    )
    .await;
    let synced = node
        .sync
        .wait_for(DEADLINE, |s| s.status.height == 50 && s.status.tip == tip)
        .await;
    assert!(synced, "{:?}", node.sync.snapshot().await);

    // A peer sending garbage is banned.
    let mut raw = RawPeer::new();
    let raw_id = raw.peer_id;
    let base: Multiaddr = node_addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    for _ in 0..2 {
        raw.send(
            node.client.local_peer_id(),
            base.clone(),
            b"\xff garbage".to_vec(),
        )
        .await;
    }
    assert!(
        node.sync
            .wait_for(DEADLINE, |s| s.banned.contains(&(raw_id, "bad_request")))
            .await
    );
    let before = node.sync.snapshot().await.unwrap();
    let left_before = before
        .ban_remaining
        .iter()
        .find(|(p, _)| *p == raw_id)
        .map(|(_, d)| *d)
        .unwrap();
    let book = node.client.address_book().await;
    assert!(book.iter().any(|e| e.peer == seeder_id), "{book:?}");
    assert!(book.iter().all(|e| e.peer != raw_id), "{book:?}");
    node.stop().await.unwrap();

    // Restarted with no --bootstrap.
    let (node, node_addr) =
        common::start_node_with(node_dir, patient_net(vec![], true), None, quick_sync()).await;
    assert!(
        node.sync
            .wait_for(DEADLINE, |s| s.banned.contains(&(raw_id, "bad_request")))
            .await,
        "the ban did not survive the restart: {:?}",
        node.sync.snapshot().await
    );
    let after = node.sync.snapshot().await.unwrap();
    let left_after = after
        .ban_remaining
        .iter()
        .find(|(p, _)| *p == raw_id)
        .map(|(_, d)| *d)
        .unwrap();
    assert!(
        left_after <= left_before && left_after > Duration::ZERO,
        "before {left_before:?}, after {left_after:?}"
    );
    // The banned peer comes back with a well-formed request: refused, where
    // a stranger sending the same is answered.
    let base: Multiaddr = node_addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    let node_id = node.client.local_peer_id();
    let ask = cbor4ii::serde::to_vec(
        Vec::new(),
        &concord::protocol::BlocksRequest { start: 1, count: 1 },
    )
    .unwrap();
    let refused = raw.exchange(node_id, base.clone(), ask.clone()).await;
    assert!(refused.is_err(), "the banned peer was served: {refused:?}");
    assert!(!node.client.connected_peers().await.contains(&raw_id));
    let answered = RawPeer::new().exchange(node_id, base, ask).await;
    assert!(
        answered.as_ref().is_ok_and(|b| !b.is_empty()),
        "a stranger was not served: {answered:?}"
    );
    assert!(
        wait_verified(&node, seeder_id).await,
        "did not reconnect from the address book: {:?}",
        node.sync.snapshot().await
    );
    assert_eq!(
        node.client.peer_sources().await.get(&seeder_id),
        Some(&Source::AddressBook)
    );
    node.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
