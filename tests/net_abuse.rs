//! Abuse on 127.0.0.1: squatters holding every inbound slot, a flooder held
//! to its quota while an honest peer is answered, and the error rules of
//! protocols/README.md as the node really applies them.

mod common;

use std::time::Duration;

use concord::chain::Genesis;
use concord::net::{self, Client, InboundFault, NetConfig, NetEvent, NetEvents};
use concord::protocol::{GENESIS_PROTOCOL, HEIGHT_PROTOCOL};
use concord::store::Store;
use concord::sync::SyncConfig;
use futures::prelude::*;
use libp2p::{identity::Keypair, multiaddr::Protocol, swarm::SwarmEvent, Multiaddr};
use tokio::time::{timeout, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
}

/// Polls `cond` until it holds, failing after the deadline.
async fn until<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let end = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A squatter: a bare swarm that connects and then does nothing at all (it
/// speaks none of our protocols), kept connected as long as it runs.
fn squat(target: Multiaddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        let _ = swarm.dial(target);
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
                // Evicted or refused: a squatter that comes back would only
                // be evicted again; this one stays out.
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_squatters_hold_every_inbound_slot_and_a_fresh_honest_node_still_gets_in_and_syncs()
{
    let tmp = tempfile::tempdir().unwrap();
    let tip = common::generate_seeded(&tmp.path().join("seeder"), 3_000, 0);
    let net = NetConfig {
        listen_addrs: loopback(),
        // Defaults otherwise: 80 connections, 16 kept for outbound, so 64
        // inbound slots. No grace for unverified peers: with one, a newcomer
        // arriving inside it is refused, and the seeder may learn its address
        // and dial it (an outbound slot), so whether it got in by eviction
        // would depend on the machine's speed. The grace has its unit test.
        eviction_verify_grace: Duration::ZERO,
        ..NetConfig::default()
    };
    let max_inbound = (net.max_established - net.reserved_outbound) as usize;
    assert_eq!(max_inbound, 64);
    let (seeder, seeder_addr) =
        common::start_node_with(tmp.path().join("seeder"), net, None, SyncConfig::default()).await;

    let squatters: Vec<_> = (0..70).map(|_| squat(seeder_addr.clone())).collect();
    // Each squatter beyond the 64th evicts one that came before it.
    let evicted_before = (squatters.len() - max_inbound) as u64;
    until("the squatters hold every inbound slot", || async {
        seeder.client.connected_peers().await.len() >= max_inbound
            && seeder.metrics.evictions() >= evicted_before
    })
    .await;

    let sync = SyncConfig {
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    };
    let (fresh, _) = common::start_node(
        tmp.path().join("fresh"),
        vec![seeder_addr.clone()],
        None,
        sync,
    )
    .await;
    let synced = fresh
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.height == 3_000 && s.status.tip == tip
        })
        .await;
    assert!(
        synced,
        "fresh node did not sync past the squatters: {:?}",
        fresh.sync.snapshot().await
    );
    assert!(
        seeder.metrics.evictions() > evicted_before,
        "the fresh node got in by evicting a squatter"
    );
    assert!(
        seeder.client.connected_peers().await.len() <= max_inbound,
        "never more inbound peers than slots"
    );
    for s in squatters {
        s.abort();
    }
    fresh.stop().await.unwrap();
    seeder.stop().await.unwrap();
}

struct Node {
    client: Client,
    events: NetEvents,
    addr: Multiaddr,
    metrics: std::sync::Arc<concord::metrics::Metrics>,
}

async fn start(store: Store, config: NetConfig) -> Node {
    let genesis = store.genesis_hash();
    let mut registry = libp2p::metrics::Registry::default();
    let metrics = std::sync::Arc::new(concord::metrics::Metrics::register(&mut registry));
    let (client, mut events, event_loop) = net::new_with_metrics(
        Keypair::generate_ed25519(),
        config,
        store,
        genesis,
        &mut registry,
        metrics.clone(),
    )
    .unwrap();
    tokio::spawn(event_loop.run());
    let addr = timeout(DEADLINE, async {
        loop {
            if let Some(NetEvent::NewListenAddr { addr }) = events.recv().await {
                return addr;
            }
        }
    })
    .await
    .unwrap();
    let addr = addr.with(Protocol::P2p(client.local_peer_id()));
    Node {
        client,
        events,
        addr,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_is_held_to_its_quota_and_reported_while_an_honest_peer_is_answered() {
    let genesis = Genesis::dev();
    let config = NetConfig {
        listen_addrs: loopback(),
        quota_small_burst: 10,
        quota_small_per_sec: 5.0,
        flood_report_after: 50,
        ..NetConfig::default()
    };
    let mut server = start(Store::temporary(&genesis).unwrap(), config).await;
    let plain = || NetConfig {
        listen_addrs: loopback(),
        ..NetConfig::default()
    };
    let flooder = start(Store::temporary(&genesis).unwrap(), plain()).await;
    let honest = start(Store::temporary(&genesis).unwrap(), plain()).await;
    let ps = server.client.local_peer_id();
    flooder.client.dial(server.addr.clone()).await.unwrap();
    honest.client.dial(server.addr.clone()).await.unwrap();

    // The flood: 8 streams at a time, 400 height requests in all.
    let started = Instant::now();
    let flood = {
        let client = flooder.client.clone();
        tokio::spawn(async move {
            stream::iter(0..400)
                .map(|_| {
                    let c = client.clone();
                    async move {
                        match c.request_height(ps).await {
                            Ok(_) => true,
                            // Refused, not malformed: the requester does not
                            // hold a refusal against the responder.
                            Err(e) => {
                                assert_eq!(e, net::RequestError::Refused);
                                false
                            }
                        }
                    }
                })
                .buffer_unordered(8)
                .filter(|ok| future::ready(*ok))
                .count()
                .await
        })
    };
    // Meanwhile the honest peer asks once per 300 ms, well within quota.
    let mut honest_ok = 0;
    for _ in 0..10 {
        if honest.client.request_height(ps).await.is_ok() {
            honest_ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let flood_ok = flood.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(honest_ok, 10, "every honest request answered");
    let allowed = 10.0 + 5.0 * elapsed;
    assert!(
        (flood_ok as f64) <= allowed + 1.0,
        "flooder served {flood_ok} in {elapsed:.1} s, quota allows {allowed:.0}"
    );
    let refused = server.metrics.over_quota(HEIGHT_PROTOCOL);
    assert_eq!(refused, 400 - flood_ok as u64, "every refusal counted");
    eprintln!(
        "flooder: {flood_ok} of 400 served in {elapsed:.2} s ({:.1}/s), {refused} refused",
        flood_ok as f64 / elapsed
    );
    // Reported once as a flooder (the sync side penalizes, twice bans).
    let pf = flooder.client.local_peer_id();
    timeout(DEADLINE, async {
        loop {
            match server.events.recv().await {
                Some(NetEvent::BadRequest {
                    peer,
                    fault: InboundFault::Flooding,
                    ..
                }) if peer == pf => return,
                Some(_) => {}
                None => panic!("events closed"),
            }
        }
    })
    .await
    .expect("flooder reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_gets_a_clean_close_with_no_bytes_and_a_non_empty_map_is_refused() {
    let genesis = Genesis::dev();
    let mut server = start(
        Store::temporary(&genesis).unwrap(),
        NetConfig {
            listen_addrs: loopback(),
            ..NetConfig::default()
        },
    )
    .await;
    let ps = server.client.local_peer_id();
    let base: Multiaddr = server
        .addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    // `blocks start=0` returns the genesis block.
    let asker = start(
        Store::temporary(&genesis).unwrap(),
        NetConfig {
            listen_addrs: loopback(),
            ..NetConfig::default()
        },
    )
    .await;
    asker.client.dial(server.addr.clone()).await.unwrap();
    let r = asker.client.request_blocks(ps, 0, 2).await.unwrap();
    assert_eq!(
        r.blocks,
        vec![genesis.block().clone()],
        "start=0 is the genesis block"
    );

    let mut raw = common::raw_peer::RawPeer::with_protocol(GENESIS_PROTOCOL);
    // The canonical request is answered (the genesis hash).
    let ok = raw.exchange(ps, base.clone(), vec![0xa0]).await;
    assert_eq!(
        ok.map(|b| b.len()),
        Ok(43),
        "a1 67 genesis 58 20 <32 bytes>"
    );
    // A non-empty map, trailing bytes, an indefinite map, garbage: each one
    // ends in a clean close with no response bytes (not a reset).
    for bad in [
        vec![0xa1, 0x61, 0x78, 0x01],
        vec![0xa0, 0x00],
        vec![0xbf, 0xff],
        vec![0xff; 10],
    ] {
        let got = raw.exchange(ps, base.clone(), bad.clone()).await;
        assert_eq!(got, Ok(Vec::new()), "{bad:02x?}");
        let fault = timeout(DEADLINE, async {
            loop {
                if let Some(NetEvent::BadRequest {
                    protocol, fault, ..
                }) = server.events.recv().await
                {
                    return (protocol, fault);
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(fault, (GENESIS_PROTOCOL, InboundFault::Malformed));
    }
    // An empty request (the requester gave up: a link back from a cut
    // delivers these) is refused the same way but is no offence: the next
    // fault reported is the garbage sent after it, not the empty one.
    let got = raw.exchange(ps, base.clone(), Vec::new()).await;
    assert_eq!(got, Ok(Vec::new()), "empty request");
    let got = raw.exchange(ps, base.clone(), vec![0xff; 7]).await;
    assert_eq!(got, Ok(Vec::new()));
    let error = timeout(DEADLINE, async {
        loop {
            if let Some(NetEvent::BadRequest { error, .. }) = server.events.recv().await {
                return error;
            }
        }
    })
    .await
    .unwrap();
    assert!(error.contains("(7 bytes)"), "first fault reported: {error}");
}
