//! The scale simulation: the real sync core of one node against 200+
//! simulated peers, just under a third of them Byzantine, in simulated
//! latency and time. It syncs 100,000 real (signed, fully validated) blocks
//! to the honest chain, deterministically from a seed it prints.
//!
//! Replay a failure with `CONCORD_SIM_SEED=<seed> cargo test --test sync_sim`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use concord::chain::generate::ChainGenerator;
use concord::chain::validate::validate_detached;
use concord::chain::{AuthorityKey, Block, BlockRef, Genesis};
use concord::sync::engine::Stats;
use concord::sync::peer_book::Penalty;
use concord::sync::sim::{self, Behaviour, SimNet, Validator};
use concord::sync::SyncConfig;
use libp2p::PeerId;

/// Blocks of the honest chain (and of the forged one).
const BLOCKS: u64 = 100_000;
/// Body size of the generated blocks.
const BODY: usize = 48;
/// Seed when `CONCORD_SIM_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5eed_c0c0_2024;

const HONEST: usize = 120;
const SLOW: usize = 15;
/// Per Byzantine kind; six kinds.
const PER_KIND: usize = 11;

fn seed() -> u64 {
    let seed = match std::env::var("CONCORD_SIM_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .unwrap_or_else(|e| panic!("CONCORD_SIM_SEED={s:?}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("sim seed = {seed}");
    seed
}

/// splitmix64: every random choice of the scenario comes from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A signed chain of `BLOCKS` blocks on the dev genesis (genesis first).
fn generate(seed: u64) -> Arc<Vec<Block>> {
    let genesis = Genesis::dev();
    let mut gen = ChainGenerator::new(
        &genesis,
        AuthorityKey::dev(),
        BlockRef::of(genesis.block()),
        BODY,
        seed,
    );
    let mut blocks = Vec::with_capacity(BLOCKS as usize + 1);
    blocks.push(genesis.block().clone());
    while (blocks.len() as u64) <= BLOCKS {
        let n = (BLOCKS + 1 - blocks.len() as u64).min(10_000) as usize;
        blocks.extend(gen.next_batch(n, 2));
    }
    Arc::new(blocks)
}

/// The honest chain, generated once per test binary.
fn honest_chain() -> Arc<Vec<Block>> {
    static CHAIN: OnceLock<Arc<Vec<Block>>> = OnceLock::new();
    CHAIN.get_or_init(|| generate(1)).clone()
}

/// The colluding forgers' chain: same genesis and timestamps, other bodies,
/// signed by the dev key — valid in form, so only the votes can catch it.
fn forged_chain() -> Arc<Vec<Block>> {
    static CHAIN: OnceLock<Arc<Vec<Block>>> = OnceLock::new();
    CHAIN.get_or_init(|| generate(2)).clone()
}

/// The node's own detached segment validation (linking to the real parent
/// is the engine's job).
fn real_validator() -> Validator {
    let genesis = Genesis::dev();
    Box::new(move |blocks: &[Block]| validate_detached(&genesis, blocks))
}

/// What one run observed, to compare between runs.
struct Outcome {
    sim_time: Duration,
    steps: u64,
    stats: Stats,
    bans: Vec<(PeerId, Penalty)>,
    kinds: BTreeMap<PeerId, &'static str>,
}

fn kind(b: &Behaviour) -> &'static str {
    match b {
        Behaviour::Honest => "honest",
        Behaviour::Slow(_) => "slow",
        Behaviour::Stalling => "stalling",
        Behaviour::InflateHeight(_) => "inflate_height",
        Behaviour::Forged(_) => "forged",
        Behaviour::WrongVotes => "wrong_votes",
        Behaviour::WrongGenesis => "wrong_genesis",
        Behaviour::Disconnects { .. } => "disconnects",
        Behaviour::MuteVoter => "mute_voter",
        Behaviour::Silent => "silent",
    }
}

/// Runs the scenario to height `height` of the honest chain and checks
/// everything the issue asks of it.
fn run(seed: u64, height: u64) -> (SimNet, Outcome) {
    let wall = Instant::now();
    let (full, full_forged) = (honest_chain(), forged_chain());
    let (honest, forged) = if height == BLOCKS {
        (full, full_forged)
    } else {
        let cut = |c: &Arc<Vec<Block>>| Arc::new(c[..=height as usize].to_vec());
        (cut(&full), cut(&full_forged))
    };
    let generated = wall.elapsed();

    let mut rng = Rng(seed);
    let config = SyncConfig {
        seed: rng.next(),
        ..SyncConfig::default()
    };
    let mut behaviours: Vec<Behaviour> = Vec::new();
    behaviours.extend((0..HONEST).map(|_| Behaviour::Honest));
    behaviours.extend((0..SLOW).map(|_| Behaviour::Slow(10)));
    for _ in 0..PER_KIND {
        behaviours.push(Behaviour::InflateHeight(rng.range(1, 1_000_000)));
        behaviours.push(Behaviour::Forged(forged.clone()));
        behaviours.push(Behaviour::WrongVotes);
        behaviours.push(Behaviour::Stalling);
        behaviours.push(Behaviour::Disconnects {
            back_after: Duration::from_millis(rng.range(200, 3_000)),
        });
        behaviours.push(Behaviour::WrongGenesis);
    }
    // Fisher–Yates: which peer connects when (and so gets which id) is random too.
    for i in (1..behaviours.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        behaviours.swap(i, j);
    }
    let byzantine = behaviours.iter().filter(|b| !b.is_honest()).count();
    assert!(behaviours.len() >= 200);
    assert!(3 * byzantine < behaviours.len(), "just under a third");

    let mut net = SimNet::new(config.clone(), &honest[..1], real_validator(), rng.next());
    let start = net.now;
    let mut kinds = BTreeMap::new();
    for b in behaviours {
        let latency = Duration::from_millis(rng.range(2, 80));
        let k = kind(&b);
        let id = net.add_peer(b, latency, honest.clone());
        kinds.insert(id, k);
    }

    let tip = honest[height as usize].hash();
    let synced = net.run_until(Duration::from_secs(600), |n| {
        let t = n.tip();
        t.height == height && t.hash == tip
    });
    let sim_time = net.now - start;
    // Sync ends before the block requests left with stallers expire: run on
    // until every one of them has (twice the request timeout), so that the
    // checks below see what the engine does to each kind.
    net.run_until(2 * config.request_timeout, |_| false);
    let wall = wall.elapsed();
    let stats = net.engine.stats().clone();

    // ----- summary -----
    let mut bans_by: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (p, why) in &net.report.bans {
        *bans_by.entry((kinds[p], why.name())).or_default() += 1;
    }
    let requests: u64 = stats.requests_sent.values().sum();
    let sorted = |m: &std::collections::HashMap<&'static str, u64>| {
        m.iter().map(|(k, v)| (*k, *v)).collect::<BTreeMap<_, _>>()
    };
    eprintln!(
        "--- sync sim: {height} blocks, {} peers ({byzantine} Byzantine), seed {seed} ---",
        kinds.len()
    );
    eprintln!(
        "synced: {synced}  height {}  sim time {:.2?}  wall {:.2?} (chains ready after {:.2?})  steps {}",
        net.tip().height,
        sim_time,
        wall,
        generated,
        net.report.steps
    );
    eprintln!(
        "requests {requests} ({:.1} per 1,000 blocks): {:?}",
        requests as f64 * 1000.0 / height as f64,
        sorted(&stats.requests_sent)
    );
    eprintln!(
        "votes won {} lost {} inconclusive {}  hedges {}  retries {}  reorgs {}",
        stats.votes_won,
        stats.votes_lost,
        stats.votes_inconclusive,
        stats.hedges,
        stats.retries,
        stats.reorgs
    );
    eprintln!("penalties {:?}", sorted(&stats.penalties));
    eprintln!("bans (kind, reason) {bans_by:?}");
    eprintln!(
        "memory: max held {} KiB, max pending blocks {}, max batches {}",
        net.report.max_held_bytes / 1024,
        net.report.max_pending_blocks,
        net.report.max_batches
    );

    // ----- checks -----
    assert!(
        synced,
        "did not sync: {:?} {:?}",
        net.engine.status(net.now),
        stats
    );
    assert_eq!(stats.blocks_imported, height, "every block imported once");
    let honest_banned = sim::banned_honest(&net);
    assert!(
        honest_banned.is_empty(),
        "honest peers banned: {:?}",
        net.report
            .bans
            .iter()
            .filter(|(p, _)| honest_banned.contains(p))
            .collect::<Vec<_>>()
    );
    // A ban lasts longer than the run: nobody is banned twice.
    let distinct: BTreeSet<PeerId> = net.report.bans.iter().map(|(p, _)| *p).collect();
    assert_eq!(distinct.len(), net.report.bans.len(), "{bans_by:?}");
    // Each adversary kind's expected outcome. Provable faults ban: another
    // genesis always; claiming heights it cannot serve, once it is asked for
    // them. Holding another valid chain (forged blocks, wrong votes) is being
    // on another fork: judged, never banned. No honest peer is ever judged
    // to be on another fork.
    let banned_for = |k: &str| -> BTreeSet<Penalty> {
        net.report
            .bans
            .iter()
            .filter(|(p, _)| kinds[p] == k)
            .map(|(_, why)| *why)
            .collect()
    };
    let count = |k: &str| kinds.values().filter(|v| **v == k).count();
    let banned_count = |k: &str| {
        net.report
            .bans
            .iter()
            .filter(|(p, _)| kinds[p] == k)
            .count()
    };
    assert_eq!(
        banned_count("wrong_genesis"),
        count("wrong_genesis"),
        "{bans_by:?}"
    );
    assert_eq!(banned_for("wrong_genesis"), [Penalty::WrongGenesis].into());
    assert!(
        banned_for("inflate_height").is_subset(&[Penalty::NotDelivered, Penalty::Timeout].into()),
        "{bans_by:?}"
    );
    assert!(banned_count("inflate_height") >= 1, "{bans_by:?}");
    // Penalties each peer of a kind carries, by reason.
    let failures = |k: &str, why: Penalty| -> Vec<u32> {
        kinds
            .iter()
            .filter(|(_, kind)| **kind == k)
            .map(|(p, _)| {
                net.engine
                    .peer_book()
                    .get(p)
                    .and_then(|i| i.failures.get(&why).copied())
                    .unwrap_or(0)
            })
            .collect()
    };
    // How many peers of kind `k` the peer book holds something on.
    let count = |k: &str, has: &dyn Fn(&concord::sync::peer_book::PeerInfo) -> bool| {
        kinds
            .iter()
            .filter(|(p, kind)| **kind == k && net.engine.peer_book().get(p).is_some_and(has))
            .count()
    };
    let penalized = |k: &str| count(k, &|i| i.failures.values().any(|n| *n > 0));
    eprintln!(
        "stalling: timeouts {:?}, penalized {}; disconnects penalized {}",
        failures("stalling", Penalty::Timeout),
        penalized("stalling"),
        penalized("disconnects")
    );
    // A staller answers status and votes truthfully and lets block requests
    // run out. Here the fast peers leave it no batch (none of its requests
    // times out even after the wait above): it is neither penalized nor
    // banned; were it asked, a timeout (-5) is all it could cost it.
    assert_eq!(
        penalized("stalling"),
        failures("stalling", Penalty::Timeout)
            .iter()
            .filter(|n| **n > 0)
            .count(),
        "stallers penalized for something else than timeouts"
    );
    assert_eq!(banned_count("stalling"), 0, "{bans_by:?}");
    // Dropping the connection is no fault: requests fail over at once, and
    // the peer is neither penalized nor banned.
    assert_eq!(penalized("disconnects"), 0, "disconnecting peers penalized");
    assert_eq!(banned_count("disconnects"), 0, "{bans_by:?}");
    for k in ["forged", "wrong_votes", "honest", "slow"] {
        assert_eq!(banned_count(k), 0, "{k} banned: {bans_by:?}");
    }
    let judged = |k: &str| count(k, &|i| i.forked_at.is_some());
    assert_eq!(judged("honest"), 0, "honest peers judged on another fork");
    assert_eq!(judged("slow"), 0, "slow peers judged on another fork");
    // Every forger that served a batch first lost its vote and is known to be
    // on another fork.
    assert!(stats.votes_lost <= (judged("forged") + judged("wrong_votes")) as u64 * 4);
    for (p, k) in &kinds {
        let served = net.report.served.get(p).copied().unwrap_or(0);
        if *k == "forged" && served > 0 {
            let info = net.engine.peer_book().get(p);
            assert!(
                info.is_some_and(|i| i.forked_at.is_some()),
                "forger {p} served {served} batches and was not judged: {info:?}"
            );
        }
    }
    // Bounded memory: the byte window plus a batch or two in flight.
    assert!(
        net.report.max_held_bytes <= config.max_buffered_bytes + 2 * config.batch_bytes,
        "held {} bytes",
        net.report.max_held_bytes
    );
    assert!(
        net.report.max_batches <= 2 * config.max_batches_in_flight + 2,
        "{} batches",
        net.report.max_batches
    );

    let outcome = Outcome {
        sim_time,
        steps: net.report.steps,
        stats,
        bans: net.report.bans.clone(),
        kinds,
    };
    (net, outcome)
}

#[test]
fn syncs_100k_blocks_against_200_peers_a_third_byzantine() {
    let seed = seed();
    let (net, outcome) = run(seed, BLOCKS);
    assert_eq!(net.tip().hash, honest_chain()[BLOCKS as usize].hash());
    assert!(
        outcome.sim_time < Duration::from_secs(120),
        "{:?}",
        outcome.sim_time
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let seed = seed();
    let (_, a) = run(seed, 10_000);
    let (_, b) = run(seed, 10_000);
    assert!(a.kinds == b.kinds, "same seed, other peers");
    // Counters must match exactly; the first-contact timestamps are absolute
    // Instants of each run's own simulated clock, so compare them without.
    let counters = |s: &Stats| Stats {
        first_peer_connected_at: None,
        first_peer_ahead_at: None,
        first_blocks_request_at: None,
        ..s.clone()
    };
    assert_eq!(
        counters(&a.stats),
        counters(&b.stats),
        "same seed, other counters"
    );
    assert_eq!(a.bans, b.bans, "same seed, other bans");
    assert_eq!(a.steps, b.steps, "same seed, other event sequence");
    assert_eq!(a.sim_time, b.sim_time, "same seed, other timing");
    let (_, c) = run(seed ^ 1, 10_000);
    assert!(a.kinds != c.kinds, "another seed, another network");
}
