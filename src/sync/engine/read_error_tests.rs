//! A read error on our own chain is not a vote: the engine must not take a
//! block it could not read for a block the peers do not hold. Here every
//! peer is on another fork (a real majority), and our store cannot read the
//! heights the fork search probes first: were an error taken for "no block"
//! there, the search would see disagreement at its floor and halt (or roll
//! back deeper than the fork).

use std::sync::Arc;
use std::time::Duration;

use crate::chain::Block;
use crate::sync::engine::Mode;
use crate::sync::sim::{self, Behaviour, SimNet};
use crate::sync::SyncConfig;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn on(net: &SimNet, chain: &[Block]) -> bool {
    let tip = net.tip();
    tip.height == chain.len() as u64 - 1 && tip.hash == chain[chain.len() - 1].hash()
}

#[test]
fn a_read_error_during_the_fork_search_stops_it_without_rollback_judgment_or_halt() {
    let chain = Arc::new(sim::unsigned_chain(2_000, 64, 1));
    let mut fork = chain[..=1_700].to_vec();
    sim::extend_unsigned(&mut fork, 400, 64, 9);
    let fork = Arc::new(fork);
    let config = SyncConfig::default();
    // The search's first probe is its floor: max_reorg_depth under our tip.
    let floor = 2_000 - config.max_reorg_depth;
    let mut n = SimNet::new(config, &chain, sim::unsigned_validator(), 11);
    n.local.lock().expect("sim chain").unreadable = Some(floor - 100..floor + 100);
    let peers: Vec<_> = (0..4)
        .map(|_| n.add_peer(Behaviour::Honest, 2 * MS, fork.clone()))
        .collect();

    // Past the settle time and a couple of consistency checks: every poll
    // finds the majority elsewhere and every search hits the bad heights.
    n.run_until(90 * SEC, |_| false);
    let stats = n.engine.stats().clone();
    assert!(
        stats.store_read_errors > 0,
        "the search never read the bad heights"
    );
    assert!(on(&n, &chain), "moved off our chain: {:?}", n.tip());
    assert_eq!(stats.reorgs, 0, "a rollback was asked for");
    assert!(
        !matches!(n.engine.mode(), Mode::Halted(_)),
        "{:?}",
        n.engine.mode()
    );
    assert!(stats.penalties.is_empty(), "{:?}", stats.penalties);
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
    // The only judgment is the true one: each peer differs at our tip (from
    // the poll), none lower, where only a misread could have placed it.
    assert_eq!(stats.fork_judgments, peers.len() as u64);
    for p in &peers {
        let at = n.engine.peer_book().get(p).and_then(|p| p.forked_at);
        assert_eq!(at, Some(2_000), "peer {p}");
    }

    // The same network with a readable store does move: the case above was
    // held back by the read error alone, and the rollback stops at the fork.
    n.local.lock().expect("sim chain").unreadable = None;
    assert!(
        n.run_until(120 * SEC, |n| on(n, &fork)),
        "{:?} {:?}",
        n.tip(),
        n.engine.mode()
    );
    assert_eq!(n.engine.stats().reorgs, 1);
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
}
