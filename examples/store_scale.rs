//! Store cost against chain length: open time, RSS and import rate of a
//! store holding millions of small blocks (issue 15, "flat cost in chain
//! length"; figures in BENCHMARKS.md).
//!
//! ```text
//! cargo run --example store_scale -- build DIR BLOCKS [BODY_BYTES]
//! cargo run --example store_scale -- measure DIR
//! ```
//!
//! `build` appends blocks to the store in DIR (creating it) until its tip is
//! at BLOCKS, straight through [`Store::import`] in batches of 512, and
//! prints the import rate and RSS per million blocks. The blocks are real
//! blocks of the dev chain but unsigned: the store does not verify
//! signatures (sync does, before import), and signing would make building
//! 10 M blocks take longer than the measurement itself. Only `import` calls
//! are timed.
//!
//! `measure` opens the store in a fresh process and prints the open time and
//! RSS after it, then imports 200,000 blocks on top (as a syncing node does;
//! rolled back after, so that it can be run again) and serves 20,000 random
//! ranges of 512 blocks (as a seeder does), with RSS after each.
//!
//! `sled-open` times opening sled alone on the same data dir (the part of
//! the open the store does not control: the first open after many writes
//! replays sled's log).

use std::time::{Duration, Instant};

use concord::chain::generate::unsigned_block;
use concord::chain::validate::BlockRef;
use concord::chain::{AuthorityKey, Block, Genesis};
use concord::protocol::limits::RESPONSE_BYTE_BUDGET;
use concord::store::Store;

const BATCH: usize = 512;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("build"), Some(dir)) => {
            let n: u64 = arg(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
            let body: usize = arg(3).and_then(|a| a.parse().ok()).unwrap_or(256);
            build(dir.as_ref(), n, body);
        }
        (Some("measure"), Some(dir)) => measure(dir.as_ref()),
        (Some("sled-open"), Some(dir)) => sled_open(dir.as_ref()),
        _ => eprintln!(
            "usage: store_scale build DIR BLOCKS [BODY_BYTES] | measure DIR | sled-open DIR"
        ),
    }
}

/// VmRSS and VmHWM of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn rss_line() -> String {
    let (rss, hwm) = rss();
    format!("VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB")
}

/// The next `n` unsigned blocks after `parent`, 256-byte-ish bodies derived
/// from the height.
fn next_blocks(
    key: &AuthorityKey,
    g: &Genesis,
    parent: &mut BlockRef,
    n: usize,
    body: usize,
) -> Vec<Block> {
    (0..n)
        .map(|_| {
            let h = parent.height + 1;
            let mut b = vec![0u8; body];
            for (i, chunk) in b.chunks_mut(8).enumerate() {
                let v = h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
                chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
            }
            let block = unsigned_block(key, parent, parent.timestamp_ms + g.slot_ms, b);
            *parent = BlockRef::of(&block);
            block
        })
        .collect()
}

/// Imports blocks up to height `until`; returns the time spent in `import`.
fn import_until(store: &Store, g: &Genesis, until: u64, body: usize) -> Duration {
    let key = AuthorityKey::dev();
    let mut parent = store.tip();
    let mut spent = Duration::ZERO;
    while parent.height < until {
        let n = BATCH.min((until - parent.height) as usize);
        let blocks = next_blocks(&key, g, &mut parent, n, body);
        let t = Instant::now();
        store.import(&blocks).expect("import");
        spent += t.elapsed();
    }
    spent
}

fn build(dir: &std::path::Path, n: u64, body: usize) {
    let g = Genesis::dev();
    let t = Instant::now();
    let store = Store::open(dir, &g).expect("open");
    println!(
        "open at #{}: {:.3}s, {}",
        store.tip().height,
        t.elapsed().as_secs_f64(),
        rss_line()
    );
    const STEP: u64 = 1_000_000;
    while store.tip().height < n {
        let from = store.tip().height;
        let until = ((from / STEP + 1) * STEP).min(n);
        let spent = import_until(&store, &g, until, body);
        println!(
            "#{from}..#{until}: {:.0} blocks/s (import only), {}",
            (until - from) as f64 / spent.as_secs_f64(),
            rss_line()
        );
    }
    store.flush().expect("flush");
    println!(
        "built #{} in {:.0}s",
        store.tip().height,
        t.elapsed().as_secs_f64()
    );
}

fn measure(dir: &std::path::Path) {
    let g = Genesis::dev();
    let t = Instant::now();
    let store = Store::open(dir, &g).expect("open");
    let tip = store.tip();
    println!(
        "open #{}: {:.3}s, {}",
        tip.height,
        t.elapsed().as_secs_f64(),
        rss_line()
    );

    let added = 200_000;
    let spent = import_until(&store, &g, tip.height + added, 256);
    println!(
        "imported #{}..#{}: {:.0} blocks/s (import only), {}",
        tip.height,
        tip.height + added,
        added as f64 / spent.as_secs_f64(),
        rss_line()
    );
    store.rollback_to(tip.height).expect("rollback");

    // Serving: random ranges of up to 512 blocks, 20,000 requests.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let t = Instant::now();
    let mut served = 0usize;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = x % tip.height.max(1);
        served += store
            .blocks_range(start, 512, RESPONSE_BYTE_BUDGET)
            .expect("range")
            .len();
    }
    println!(
        "served 20000 random ranges ({served} blocks) in {:.1}s, {}",
        t.elapsed().as_secs_f64(),
        rss_line()
    );

    store.flush().expect("flush");
}

fn sled_open(dir: &std::path::Path) {
    let t = Instant::now();
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(32 << 20)
        .open()
        .expect("sled open");
    let tree = db.open_tree("concord-chain").expect("tree");
    println!(
        "sled open: {:.3}s ({} bytes on disk), {}",
        t.elapsed().as_secs_f64(),
        db.size_on_disk().unwrap_or(0),
        rss_line()
    );
    drop(tree);
}
