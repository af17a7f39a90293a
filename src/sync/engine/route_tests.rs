//! Routing around slow peers, decided by the simulator: a seeder ten times
//! slower than the others must cost the syncing node little of its rate,
//! with the node (validation and import), not the seeders, the bottleneck —
//! as on a real node syncing from a few healthy seeders.

use std::sync::Arc;
use std::time::Duration;

use crate::chain::Block;
use crate::sync::sim::{self, Behaviour, SimNet};
use crate::sync::SyncConfig;

const MS: Duration = Duration::from_millis(1);

/// Simulated seconds to sync `chain` from seeders of these behaviours.
fn sync_time(chain: &Arc<Vec<Block>>, seeders: &[Behaviour], cost_per_block: Duration) -> f64 {
    let mut n = SimNet::new(
        SyncConfig::default(),
        &chain[..1],
        sim::unsigned_validator(),
        7,
    );
    n.cost_per_block = cost_per_block;
    for b in seeders {
        n.add_peer(b.clone(), 2 * MS, chain.clone());
    }
    let start = n.now;
    let tip = chain.len() as u64 - 1;
    assert!(
        n.run_until(Duration::from_secs(600), |n| n.tip().height == tip),
        "{seeders:?}: stuck at {:?}",
        n.tip()
    );
    assert!(n.report.bans.is_empty(), "bans: {:?}", n.report.bans);
    // From the first blocks request, as the bench times sync: how long
    // peers take to report in is not what this measures.
    let first = n.engine.stats().first_blocks_request_at.unwrap_or(start);
    n.now.duration_since(first).as_secs_f64()
}

/// (3 healthy seeders' rate, with one of them 10x slow) for one chain shape.
fn rates(blocks: u64, body: usize, cost_per_block: Duration) -> (f64, f64) {
    let chain = Arc::new(sim::unsigned_chain(blocks, body, 1));
    let fast = sync_time(
        &chain,
        &[Behaviour::Honest, Behaviour::Honest, Behaviour::Honest],
        cost_per_block,
    );
    let slow = sync_time(
        &chain,
        &[Behaviour::Honest, Behaviour::Honest, Behaviour::Slow(10)],
        cost_per_block,
    );
    (blocks as f64 / fast, blocks as f64 / slow)
}

#[test]
fn a_ten_times_slower_seeder_costs_at_most_a_fifth_of_the_rate_with_large_blocks() {
    // 64 KiB blocks; the node imports 150 MB/s, each seeder sends 100 MB/s.
    let (fast, slow) = rates(3_000, 64 * 1024, Duration::from_micros(430));
    eprintln!(
        "large: 3 seeders {fast:.0} blocks/s, one slow {slow:.0} blocks/s, ratio {:.2}",
        slow / fast
    );
    assert!(slow >= 0.8 * fast, "ratio {:.2}", slow / fast);
}

#[test]
fn large_blocks_from_three_seeders_sync_at_the_import_rate() {
    // The node imports 1 / 430 µs = 2,326 blocks/s; three seeders send
    // 4,600 blocks/s between them, so import is the bottleneck. The first
    // batches are cut for a 512-byte guess (2,048 blocks, 32 responses of
    // 64 KiB blocks): fetched as one batch, one response at a time, they
    // held the import to 0.67 of its rate.
    let cost = Duration::from_micros(430);
    let (fast, _) = rates(3_000, 64 * 1024, cost);
    let ceiling = 1.0 / cost.as_secs_f64();
    eprintln!(
        "large: 3 seeders {fast:.0} blocks/s of {ceiling:.0} ({:.2})",
        fast / ceiling
    );
    assert!(
        fast >= 0.85 * ceiling,
        "{:.2} of the import rate",
        fast / ceiling
    );
}

#[test]
fn a_ten_times_slower_seeder_costs_at_most_a_fifth_of_the_rate_with_small_blocks() {
    // 256-byte blocks; the node validates and imports 60,000 blocks/s.
    let (fast, slow) = rates(120_000, 256, Duration::from_micros(16));
    eprintln!(
        "small: 3 seeders {fast:.0} blocks/s, one slow {slow:.0} blocks/s, ratio {:.2}",
        slow / fast
    );
    assert!(slow >= 0.8 * fast, "ratio {:.2}", slow / fast);
}
