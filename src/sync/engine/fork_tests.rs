//! Fork safety, scripted: the attacks on an honest node's chain from the
//! fork-safety issue, each against the real engine in simulated time. Peers
//! that hold another *valid* chain are `Behaviour::Honest` with that chain:
//! they are on another fork, not liars, and none may be banned for it.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;

use crate::chain::Block;
use crate::sync::config::Checkpoint;
use crate::sync::engine::Mode;
use crate::sync::peer_book::Penalty;
use crate::sync::sim::{self, Behaviour, SimNet};
use crate::sync::SyncConfig;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn net(local: &[Block], config: SyncConfig) -> SimNet {
    SimNet::new(config, local, sim::unsigned_validator(), 11)
}

fn honest(n: u64) -> Arc<Vec<Block>> {
    Arc::new(sim::unsigned_chain(n, 64, 1))
}

/// `base` up to `common`, then `len` blocks of its own.
fn fork_of(base: &[Block], common: u64, len: u64, salt: u8) -> Arc<Vec<Block>> {
    let mut f = base[..=common as usize].to_vec();
    sim::extend_unsigned(&mut f, len, 64, salt);
    Arc::new(f)
}

/// The default config with a checkpoint at `chain[height]`.
fn checkpointed(chain: &[Block], height: u64) -> SyncConfig {
    SyncConfig {
        checkpoints: vec![Checkpoint {
            height,
            hash: chain[height as usize].hash(),
        }],
        ..SyncConfig::default()
    }
}

fn on(net: &SimNet, chain: &[Block]) -> bool {
    let tip = net.tip();
    tip.height == chain.len() as u64 - 1 && tip.hash == chain[chain.len() - 1].hash()
}

/// Every rollback so far had, by the simulator's own count of the connected
/// peers' chains, at least `vote_quorum` voters and 2/3 of them on one other
/// block; and there was at least one.
fn rolled_back_only_with_a_quorum(net: &SimNet) -> bool {
    let quorum = SyncConfig::default().vote_quorum;
    let seen = &net.report.rollbacks;
    assert!(
        seen.iter().all(|r| r.had_quorum(quorum)),
        "a rollback without a 2/3 quorum: {seen:?}"
    );
    !seen.is_empty()
}

fn fork_at(net: &SimNet, peer: &PeerId) -> Option<u64> {
    net.engine.peer_book().get(peer).and_then(|p| p.forked_at)
}

#[test]
fn an_honest_seeder_keeps_its_chain_when_two_fork_holders_connect_first() {
    let chain = honest(2_000);
    // A longer competing chain from #1,700: it looks like something to sync to.
    let fork = fork_of(&chain, 1_700, 400, 9);
    let mut n = net(&chain, SyncConfig::default());
    let a = n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
    let b = n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
    n.run_until(200 * MS, |_| false);
    assert!(on(&n, &chain), "rolled back within 200 ms: {:?}", n.tip());
    let h1 = n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    let h2 = n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    n.run_until(60 * SEC, |_| false);
    assert!(on(&n, &chain), "left its chain: {:?}", n.tip());
    assert_eq!(n.engine.stats().reorgs, 0);
    assert!(n.report.bans.is_empty(), "banned: {:?}", n.report.bans);
    assert!(fork_at(&n, &a).is_some() && fork_at(&n, &b).is_some());
    assert_eq!((fork_at(&n, &h1), fork_at(&n, &h2)), (None, None));
    // Two against two: no 2/3 either way, and the node says so.
    assert!(matches!(n.engine.mode(), Mode::Split { height: 2_000, .. }));
    // Two more honest peers make 4 of 6: the majority holds our block.
    n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    assert!(n.run_until(30 * SEC, |n| n.engine.mode() == &Mode::Normal));
    assert!(on(&n, &chain));
    assert!(n.report.bans.is_empty(), "banned: {:?}", n.report.bans);
}

#[test]
fn an_eclipsed_node_reorgs_once_honest_peers_arrive_one_by_one() {
    for depth in [300u64, 1_000] {
        let chain = honest(3_000);
        let fork = fork_of(&chain, 3_000 - depth, depth, 9);
        let mut n = net(&chain[..1], SyncConfig::default());
        // Alone with one peer, the node can only take its chain.
        let f = n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
        assert!(n.run_until(30 * SEC, |n| on(n, &fork)));
        let mut honest_peers = Vec::new();
        for _ in 0..3 {
            honest_peers.push(n.add_peer(Behaviour::Honest, 5 * MS, chain.clone()));
            n.run_until(2 * SEC, |_| false);
        }
        assert!(
            n.run_until(60 * SEC, |n| on(n, &chain)),
            "depth {depth}: still at {:?}, {:?}",
            n.tip(),
            n.engine.status(n.now)
        );
        assert_eq!(n.engine.stats().reorgs, 1, "depth {depth}");
        assert!(rolled_back_only_with_a_quorum(&n), "depth {depth}");
        assert!(
            n.report.bans.is_empty(),
            "depth {depth}: {:?}",
            n.report.bans
        );
        assert!(honest_peers.iter().all(|p| fork_at(&n, p).is_none()));
        assert!(n.run_until(10 * SEC, |n| fork_at(n, &f).is_some()));
    }
}

#[test]
fn one_or_two_peers_never_talk_a_node_out_of_its_stored_chain() {
    let chain = honest(2_000);
    let fork = fork_of(&chain, 1_700, 300, 9);
    for peers in [1, 2] {
        let mut n = net(&chain, SyncConfig::default());
        let forkers: Vec<PeerId> = (0..peers)
            .map(|_| n.add_peer(Behaviour::Honest, 2 * MS, fork.clone()))
            .collect();
        // Past the settle time and several consistency checks.
        n.run_until(120 * SEC, |_| false);
        assert!(on(&n, &chain), "{peers} peer(s) moved it: {:?}", n.tip());
        assert_eq!(n.engine.stats().reorgs, 0);
        assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
        assert!(forkers.iter().all(|p| fork_at(&n, p) == Some(2_000)));
    }
}

#[test]
fn a_real_majority_moves_a_stored_chain_but_only_after_the_peer_set_settles() {
    let chain = honest(2_000);
    let fork = fork_of(&chain, 1_700, 400, 9);
    let config = SyncConfig::default();
    let settle = config.rollback_settle;
    let mut n = net(&chain, config);
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
    }
    // 3 of 3 hold the fork, but nobody decides in the first moments.
    n.run_until(settle - 500 * MS, |_| false);
    assert!(on(&n, &chain), "rolled back before settling: {:?}", n.tip());
    assert!(n.run_until(30 * SEC, |n| on(n, &fork)));
    assert_eq!(n.engine.stats().reorgs, 1);
    assert!(rolled_back_only_with_a_quorum(&n));
    assert!(n.report.bans.is_empty());
}

#[test]
fn a_large_minority_never_wins_a_vote_it_could_only_win_in_a_sample() {
    // 44 honest peers and 36 (45%) on a fork as long as our chain: no side
    // has 2/3, so no poll of them all may move the node. A poll of a random
    // 19 of the 80 would give the minority 2/3 every fifty polls or so.
    let chain = honest(2_000);
    let fork = fork_of(&chain, 1_700, 300, 9);
    // Split, the node polls again after each backoff: short ones give many
    // polls (a draw of 19 would have lost one of 200 with odds of 97%).
    let config = SyncConfig {
        consistency_interval: 5 * SEC,
        split_backoff: SEC,
        ..SyncConfig::default()
    };
    let mut n = net(&chain, config);
    for _ in 0..44 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    let forkers: Vec<PeerId> = (0..36)
        .map(|_| n.add_peer(Behaviour::Honest, 5 * MS, fork.clone()))
        .collect();
    n.run_until(3_600 * SEC, |_| false);
    assert!(
        n.engine.stats().polls >= 200,
        "{} polls",
        n.engine.stats().polls
    );
    assert!(on(&n, &chain), "a minority moved it: {:?}", n.tip());
    assert_eq!(n.engine.stats().reorgs, 0);
    assert!(n.report.rollbacks.is_empty(), "{:?}", n.report.rollbacks);
    // 44 of 80 is no 2/3 either: the node says the peers are split.
    assert!(matches!(n.engine.mode(), Mode::Split { height: 2_000, .. }));
    assert!(forkers.iter().all(|p| fork_at(&n, p).is_some()));
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
}

#[test]
fn fork_holders_first_and_honest_peers_a_moment_later_make_a_split_not_a_rollback() {
    let chain = honest(2_000);
    let fork = fork_of(&chain, 1_700, 400, 9);
    let mut n = net(&chain, SyncConfig::default());
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
    }
    n.run_until(300 * MS, |_| false);
    for _ in 0..2 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    n.run_until(60 * SEC, |_| false);
    // 3 of 5 is no 2/3: the node keeps its chain and says the peers are split.
    assert!(on(&n, &chain), "{:?}", n.tip());
    assert_eq!(n.engine.stats().reorgs, 0);
    assert!(matches!(n.engine.mode(), Mode::Split { height: 2_000, .. }));
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
}

/// 3 honest and 3 fork holders of equally long chains from the genesis.
fn even_split(config: SyncConfig) -> (SimNet, Arc<Vec<Block>>, Vec<PeerId>, Vec<PeerId>) {
    let chain = honest(3_000);
    let fork = Arc::new(sim::unsigned_chain(3_000, 64, 2));
    let mut n = net(&chain[..1], config);
    let mut h = Vec::new();
    let mut f = Vec::new();
    for _ in 0..3 {
        h.push(n.add_peer(Behaviour::Honest, 5 * MS, chain.clone()));
        f.push(n.add_peer(Behaviour::Honest, 5 * MS, fork.clone()));
    }
    (n, chain, h, f)
}

#[test]
fn an_even_split_is_reported_the_node_idles_and_resumes_when_the_balance_changes() {
    let (mut n, chain, _, _) = even_split(SyncConfig::default());
    assert!(n.run_until(20 * SEC, |n| matches!(n.engine.mode(), Mode::Split { .. })));
    let status = n.engine.status(n.now);
    let reason = status.stalled.unwrap_or_default();
    assert!(reason.starts_with("split: no 2/3 majority"), "{reason}");
    assert_eq!(n.tip().height, 0);
    // Two minutes of split: a handful of wake-ups and re-checks, not a loop.
    let (steps, bytes) = (n.report.steps, n.engine.stats().bytes_downloaded);
    n.run_until(120 * SEC, |_| false);
    let steps = n.report.steps - steps;
    let bytes = n.engine.stats().bytes_downloaded - bytes;
    let one_batch = 2_048 * (64 + 180);
    assert!(steps < 400, "{steps} engine steps while split");
    assert!(
        bytes <= 8 * one_batch,
        "{bytes} bytes downloaded while split"
    );
    assert!(matches!(n.engine.mode(), Mode::Split { .. }));
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
    // Three more honest peers: 6 of 9 is 2/3.
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    assert!(
        n.run_until(60 * SEC, |n| on(n, &chain)),
        "{:?}",
        n.engine.status(n.now)
    );
    assert_eq!(n.engine.mode(), &Mode::Normal);
    assert!(n.report.bans.is_empty(), "{:?}", n.report.bans);
}

#[test]
fn a_checkpoint_breaks_a_split_and_disconnects_exactly_the_peers_that_contradict_it() {
    let chain = honest(3_000);
    let config = checkpointed(&chain, 1_500);
    let (mut n, chain, h, f) = even_split(config);
    assert!(
        n.run_until(30 * SEC, |n| on(n, &chain)),
        "{:?}",
        n.engine.status(n.now)
    );
    let mut banned: Vec<(PeerId, Penalty)> = n.report.bans.clone();
    banned.sort();
    let mut expected: Vec<(PeerId, Penalty)> = f
        .iter()
        .map(|p| (*p, Penalty::ContradictsCheckpoint))
        .collect();
    expected.sort();
    assert_eq!(banned, expected);
    assert!(h.iter().all(|p| fork_at(&n, p).is_none()));
    assert_eq!(
        n.engine.stats().splits,
        0,
        "never split: the checkpoint decided"
    );
}

#[test]
fn a_checkpoint_keeps_a_fresh_node_off_an_eclipsing_fork() {
    let chain = honest(3_000);
    let fork = fork_of(&chain, 1_000, 2_000, 9);
    let config = checkpointed(&chain, 1_500);
    let mut n = net(&chain[..1], config);
    let f = n.add_peer(Behaviour::Honest, 2 * MS, fork.clone());
    assert!(n.run_until(10 * SEC, |n| n.report.bans.iter().any(|(p, _)| *p == f)));
    assert_eq!(n.tip().height, 0, "nothing taken from the eclipsing peer");
    n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    assert!(n.run_until(30 * SEC, |n| on(n, &chain)));
}

#[test]
fn a_stored_chain_that_contradicts_a_checkpoint_is_not_kept() {
    let chain = honest(2_000);
    let fork = fork_of(&chain, 1_000, 1_000, 9);
    let config = checkpointed(&chain, 1_500);
    let mut n = net(&fork, config);
    assert_eq!(n.engine.mode(), &Mode::RollingBack);
    n.run_until(10 * MS, |_| false);
    assert_eq!(n.tip().height, 1_499, "rolled back below the checkpoint");
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    assert!(
        n.run_until(60 * SEC, |n| on(n, &chain)),
        "{:?}",
        n.engine.status(n.now)
    );
    assert!(n.report.bans.is_empty());
}

#[test]
fn a_synced_node_does_not_feed_on_a_longer_fork_next_to_it() {
    let chain = honest(2_000);
    let mut fork = sim::unsigned_chain(1_900, 64, 1);
    sim::extend_unsigned(&mut fork, 600, 64, 9);
    let mut n = net(&chain, SyncConfig::default());
    n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    let f = n.add_peer(Behaviour::Honest, 2 * MS, Arc::new(fork.clone()));
    n.run_until(20 * SEC, |_| false);
    assert_eq!(fork_at(&n, &f), Some(2_000));
    let (served, steps) = (n.report.served.get(&f).copied(), n.report.steps);
    // The fork keeps growing and announcing its tips, once a second.
    for _ in 0..60 {
        sim::extend_unsigned(&mut fork, 1, 64, 9);
        let c = Arc::new(fork.clone());
        let tip = fork[fork.len() - 1].hash();
        if let Some(p) = n.peers.get_mut(&f) {
            p.chain = c;
        }
        n.engine
            .handle_tip_announced(f, fork.len() as u64 - 1, tip, n.now);
        n.run_until(SEC, |_| false);
    }
    assert!(on(&n, &chain));
    assert_eq!(
        n.report.served.get(&f).copied(),
        served,
        "blocks fetched from the judged fork"
    );
    let steps = n.report.steps - steps;
    assert!(
        steps < 600,
        "{steps} engine steps in a minute next to a fork"
    );
    assert!(n.report.bans.is_empty());
    assert_eq!(n.engine.stats().reorgs, 0);
}

#[test]
fn losing_every_peer_mid_sync_idles_and_says_no_peers() {
    let chain = Arc::new(sim::unsigned_chain(20_000, 256, 1));
    let mut n = net(&chain[..1], SyncConfig::default());
    let p = n.add_peer(Behaviour::Slow(20), 5 * MS, chain.clone());
    assert!(n.run_until(60 * SEC, |n| n.tip().height >= 2_000));
    assert!(n.tip().height < 20_000, "too fast to test");
    n.disconnect(p);
    let steps = n.report.steps;
    // Spinning would panic inside run_until.
    n.run_until(120 * SEC, |_| false);
    assert!(
        n.report.steps - steps < 100,
        "{} steps",
        n.report.steps - steps
    );
    assert_eq!(n.engine.status(n.now).stalled.as_deref(), Some("no peers"));
    n.reconnect(p);
    assert!(n.run_until(300 * SEC, |n| on(n, &chain)));
}

#[test]
fn forks_around_max_reorg_depth_reorg_or_halt_loudly_and_a_reset_is_the_way_out() {
    let chain = honest(1_500);
    let config = SyncConfig {
        max_reorg_depth: 100,
        ..SyncConfig::default()
    };
    for (depth, halts) in [(100u64, false), (101, true)] {
        // Our own stored fork: every block of it counts (it was ours before start).
        let ours = fork_of(&chain, 1_000, depth, 9);
        let mut n = net(&ours, config.clone());
        for _ in 0..3 {
            n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
        }
        if !halts {
            assert!(n.run_until(60 * SEC, |n| on(n, &chain)), "depth {depth}");
            assert_eq!(n.engine.stats().halts, 0);
            assert!(rolled_back_only_with_a_quorum(&n));
            continue;
        }
        assert!(n.run_until(60 * SEC, |n| matches!(n.engine.mode(), Mode::Halted(_))));
        n.run_until(30 * SEC, |_| false);
        assert!(on(&n, &ours), "history rewritten past the bound");
        assert_eq!(n.engine.stats().halts, 1);
        let stalled = n.engine.status(n.now).stalled.unwrap_or_default();
        assert!(stalled.starts_with("halted:"), "{stalled}");
        assert!(stalled.contains("/sync/reset"), "{stalled}");
        // The operator looked and decided: follow the majority, once.
        n.engine.reset(n.now);
        assert!(n.run_until(60 * SEC, |n| on(n, &chain)));
        assert_eq!(n.engine.mode(), &Mode::Normal);
        assert!(n.report.bans.is_empty());
    }
}

/// Runs until `done`, checking at every step that the engine never lets a
/// producer extend a chain other than `majority`'s tip.
fn run_checking_production(
    n: &mut SimNet,
    majority: &[Block],
    limit: Duration,
    done: impl Fn(&SimNet) -> bool,
) -> bool {
    n.run_until(limit, |n| {
        if n.engine.production_blocker().is_none() {
            assert!(
                on(n, majority),
                "production allowed at #{} off the majority's tip",
                n.tip().height
            );
        }
        done(n)
    })
}

#[test]
fn a_restarted_producer_on_a_stale_tip_may_extend_only_once_synced() {
    let chain = honest(2_000);
    let mut n = net(&chain[..=100], SyncConfig::default());
    assert_eq!(n.engine.production_blocker().as_deref(), Some("no peers"));
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    let blocked_while_behind = n.run_until(SEC, |n| {
        n.engine
            .production_blocker()
            .is_some_and(|b| b.starts_with("syncing"))
    });
    assert!(blocked_while_behind);
    assert!(run_checking_production(&mut n, &chain, 60 * SEC, |n| {
        n.engine.production_blocker().is_none()
    }));
    assert!(on(&n, &chain));
}

#[test]
fn a_producer_on_a_minority_fork_may_not_extend_it() {
    let chain = honest(2_000);
    // Our own chain: as long as the majority's, another block at every height from #1,901.
    let ours = fork_of(&chain, 1_900, 99, 9);
    let mut n = net(&ours, SyncConfig::default());
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    assert!(run_checking_production(&mut n, &chain, 120 * SEC, |n| {
        on(n, &chain) && n.engine.production_blocker().is_none()
    }));
    assert_eq!(n.engine.stats().reorgs, 1);
    assert!(rolled_back_only_with_a_quorum(&n));
}

#[test]
fn a_longer_fork_taken_from_its_only_peer_is_left_once_for_the_majority_and_not_taken_again() {
    let chain = honest(1_500);
    // Another chain from #1, a thousand blocks longer than the honest one.
    let fork = fork_of(&chain, 0, 2_500, 9);
    let mut n = net(&chain[..1], SyncConfig::default());
    let evil = n.add_peer(Behaviour::Honest, 5 * MS, fork.clone());
    assert!(
        n.run_until(60 * SEC, |n| on(n, &fork)),
        "took the only chain there was"
    );
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    assert!(n.run_until(120 * SEC, |n| on(n, &chain)));
    // Stays there: the peer of the longer chain is on another fork from #1,
    // and its blocks above the majority's height are not planned again.
    n.run_until(60 * SEC, |_| false);
    assert!(on(&n, &chain), "back on the longer fork");
    assert_eq!(n.engine.stats().reorgs, 1);
    assert!(rolled_back_only_with_a_quorum(&n));
    assert_eq!(fork_at(&n, &evil), Some(1));
    assert!(n.report.bans.is_empty(), "bans: {:?}", n.report.bans);
}

#[test]
fn a_fork_holder_met_while_we_are_below_its_tip_is_judged_once_we_pass_it() {
    let chain = honest(1_500);
    // Another chain from #700 whose tip is below the honest one: the node
    // hears it at the start, while it holds nothing above genesis.
    let fork = fork_of(&chain, 700, 500, 9);
    let mut n = net(&chain[..1], SyncConfig::default());
    let evil = n.add_peer(Behaviour::Honest, 5 * MS, fork.clone());
    let honest_peers: Vec<PeerId> = (0..3)
        .map(|_| n.add_peer(Behaviour::Honest, 5 * MS, chain.clone()))
        .collect();
    assert!(n.run_until(60 * SEC, |n| on(n, &chain)), "{:?}", n.tip());
    assert!(
        n.run_until(5 * SEC, |n| fork_at(n, &evil).is_some()),
        "passed the fork holder's tip #1200 without comparing it"
    );
    assert!(fork_at(&n, &evil).unwrap() <= 1_200);
    assert!(honest_peers.iter().all(|p| fork_at(&n, p).is_none()));
    assert!(n.report.bans.is_empty(), "bans: {:?}", n.report.bans);
}

#[test]
fn a_peer_that_never_reports_in_holds_production_back_only_for_a_while() {
    let chain = honest(200);
    let mut n = net(&chain, SyncConfig::default());
    for _ in 0..3 {
        n.add_peer(Behaviour::Honest, 5 * MS, chain.clone());
    }
    assert!(n.run_until(5 * SEC, |n| n.engine.production_blocker().is_none()));
    let silent = n.add_peer(Behaviour::Silent, 5 * MS, chain.clone());
    let blocker = n.engine.production_blocker().unwrap_or_default();
    assert!(blocker.contains(&silent.to_string()), "{blocker}");
    assert!(
        n.run_until(30 * SEC, |n| n.engine.production_blocker().is_none()),
        "still blocked: {:?}",
        n.engine.production_blocker()
    );
    assert!(on(&n, &chain));
}
