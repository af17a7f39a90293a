//! The engine's side of the peer lifecycle, driven by hand in simulated
//! time: status reports that lapse, bad inbound requests, and scores and
//! bans carried over from an earlier run.

use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{Action, LocalChain, Request, Response, StoreFailure, SyncEngine};
use crate::chain::{BlockRef, Hash};
use crate::sync::peer_book::{PeerMemory, Penalty};
use crate::sync::SyncConfig;

/// A local chain of just its genesis.
struct GenesisOnly(BlockRef);

impl LocalChain for GenesisOnly {
    fn tip(&self) -> BlockRef {
        self.0
    }
    fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreFailure> {
        Ok((height == 0).then_some(self.0.hash))
    }
}

fn engine(config: SyncConfig, now: Instant) -> (SyncEngine, Hash) {
    let genesis = BlockRef {
        height: 0,
        hash: Hash::digest(b"peer tests genesis"),
        timestamp_ms: 0,
    };
    let e = SyncEngine::new(
        config,
        genesis.hash,
        crate::sync::sim::SIM_SLOT_MS,
        Box::new(GenesisOnly(genesis)),
        now,
    );
    (e, genesis.hash)
}

/// Carries out the queued actions: genesis questions get our genesis,
/// height questions get `height` (at our genesis) if given, nothing else is
/// answered. Returns the requests sent and the bans.
fn answer(
    e: &mut SyncEngine,
    genesis: Hash,
    height: Option<u64>,
    now: Instant,
) -> (Vec<Request>, Vec<(PeerId, Duration, Penalty)>) {
    let (mut sent, mut bans) = (Vec::new(), Vec::new());
    while let Some(action) = e.poll_action() {
        match action {
            Action::Send { id, request, .. } => {
                let response = match request {
                    Request::Genesis => Some(Response::Genesis(genesis)),
                    Request::Height => height.map(|height| Response::Height {
                        height,
                        tip: genesis,
                    }),
                    _ => None,
                };
                sent.push(request);
                if let Some(r) = response {
                    e.handle_response(id, Ok(r), now);
                }
            }
            Action::Ban {
                peer,
                duration,
                reason,
            } => bans.push((peer, duration, reason)),
            _ => {}
        }
    }
    (sent, bans)
}

#[test]
fn a_height_older_than_the_status_ttl_is_not_counted_and_is_asked_again() {
    let t0 = Instant::now();
    let config = SyncConfig {
        status_interval: Duration::from_secs(60),
        status_ttl: Duration::from_secs(120),
        consistency_interval: Duration::from_secs(3600),
        ..SyncConfig::default()
    };
    let (mut e, genesis) = engine(config, t0);
    let p = PeerId::random();
    e.handle_peer_connected(p, t0);
    answer(&mut e, genesis, Some(0), t0);
    assert_eq!(e.status(t0).target, Some(0), "a fresh report counts");

    // The peer goes quiet: its regular refresh at 60 s is never answered.
    let mut now = t0;
    let mut asked_after_lapse = false;
    while let Some(next) = e.poll_timeout() {
        if next > t0 + Duration::from_secs(125) {
            break;
        }
        now = next;
        e.handle_timeout(now);
        let (sent, _) = answer(&mut e, genesis, None, now);
        let lapsed = now >= t0 + Duration::from_secs(120);
        if lapsed && sent.contains(&Request::Height) {
            asked_after_lapse = true;
        }
        let counted = e.status(now).target.is_some();
        assert_eq!(counted, !lapsed, "at {:?}", now - t0);
    }
    assert!(
        now >= t0 + Duration::from_secs(120),
        "time reached the lapse"
    );
    assert!(asked_after_lapse, "a lapsed height is asked again");
    assert_eq!(e.status(now).peers, 1, "the peer itself is still there");

    // A fresh report (here a pushed tip) counts again.
    e.handle_tip_announced(p, 0, genesis, now);
    assert_eq!(e.status(now).target, Some(0));
}

#[test]
fn undecodable_requests_from_a_peer_are_penalized_until_it_is_banned() {
    let t0 = Instant::now();
    let (mut e, genesis) = engine(SyncConfig::default(), t0);
    let p = PeerId::random();
    e.handle_peer_connected(p, t0);
    answer(&mut e, genesis, Some(0), t0);
    e.handle_bad_request(p, t0);
    let (_, bans) = answer(&mut e, genesis, Some(0), t0);
    assert!(bans.is_empty(), "one bad request is not yet a ban");
    assert_eq!(e.peer_book().get(&p).unwrap().score, -50);
    e.handle_bad_request(p, t0);
    let (_, bans) = answer(&mut e, genesis, Some(0), t0);
    assert_eq!(bans.len(), 1);
    assert_eq!((bans[0].0, bans[0].2), (p, Penalty::BadRequest));
    assert_eq!(e.stats().penalties["bad_request"], 2);
}

#[test]
fn restored_bans_are_carried_out_again_for_what_is_left_of_them() {
    let t0 = Instant::now();
    let (mut e, genesis) = engine(SyncConfig::default(), t0);
    let (liar, slow) = (PeerId::random(), PeerId::random());
    e.restore(
        vec![
            PeerMemory {
                peer: liar,
                score: -100,
                ban: Some((t0 + Duration::from_secs(90), Penalty::BadRequest)),
                left: None,
            },
            PeerMemory {
                peer: slow,
                score: -20,
                ban: None,
                left: None,
            },
        ],
        t0,
    );
    let (_, bans) = answer(&mut e, genesis, Some(0), t0);
    assert_eq!(
        bans,
        vec![(liar, Duration::from_secs(90), Penalty::BadRequest)]
    );
    let t1 = t0 + Duration::from_secs(30);
    e.handle_peer_connected(liar, t1);
    let (_, bans) = answer(&mut e, genesis, Some(0), t1);
    assert_eq!(
        bans,
        vec![(liar, Duration::from_secs(60), Penalty::BadRequest)]
    );
    e.handle_peer_connected(slow, t1);
    assert_eq!(e.peer_book().get(&slow).unwrap().score, -20);
    assert_eq!(e.peer_memory(t1).len(), 2);
}
