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
//! prints, per million blocks, the import rate (wall clock), the CPU time per
//! block of the importing thread and of the whole process (these two hold on a
//! busy machine, where the wall clock does not), and RSS. The blocks are real
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
        (Some("serve-seq"), Some(dir)) => serve_seq(dir.as_ref()),
        _ => eprintln!(
            "usage: store_scale build DIR BLOCKS [BODY_BYTES] | measure DIR | serve-seq DIR | sled-open DIR"
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

/// CPU time used so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`):
/// unlike the wall clock, it does not count the time other processes held
/// the cores, so per-block import cost compares across a noisy run.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of the whole process so far (user + system, every thread:
/// sled's flusher included), from `/proc/self/stat` in clock ticks.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz as f64)
}

/// Time spent in `import`: on the wall clock and on the importing thread's
/// CPU clock.
#[derive(Default)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

/// Imports blocks up to height `until`; returns the time spent in `import`.
fn import_until(store: &Store, g: &Genesis, until: u64, body: usize) -> Spent {
    let key = AuthorityKey::dev();
    let mut parent = store.tip();
    let mut spent = Spent::default();
    while parent.height < until {
        let n = BATCH.min((until - parent.height) as usize);
        let blocks = next_blocks(&key, g, &mut parent, n, body);
        let (t, c) = (Instant::now(), thread_cpu());
        store.import(&blocks).expect("import");
        spent.wall += t.elapsed();
        spent.cpu += thread_cpu().saturating_sub(c);
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
        let proc0 = process_cpu();
        let spent = import_until(&store, &g, until, body);
        let blocks = (until - from) as f64;
        println!(
            "#{from}..#{until}: {:.0} blocks/s (import only, wall), {:.2} us/block import-thread CPU, \
             {:.2} us/block process CPU (all threads, block generation included), {}",
            blocks / spent.wall.as_secs_f64(),
            spent.cpu.as_secs_f64() * 1e6 / blocks,
            process_cpu().saturating_sub(proc0).as_secs_f64() * 1e6 / blocks,
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
        "imported #{}..#{}: {:.0} blocks/s (import only, wall), {:.2} us/block import-thread CPU, {}",
        tip.height,
        tip.height + added,
        added as f64 / spent.wall.as_secs_f64(),
        spent.cpu.as_secs_f64() * 1e6 / added as f64,
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

/// Serves the whole chain in order, in the ranges a syncing peer asks for
/// (512 blocks, the response budget), as the encodings a seeder sends, with
/// RSS after every million blocks: whether serving a long chain holds memory
/// in proportion to what it has served. `THREADS` (default 1) reader threads
/// take ranges in turn, as a node's blocking pool does.
fn serve_seq(dir: &std::path::Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let g = Genesis::dev();
    let store = Store::open(dir, &g).expect("open");
    let tip = store.tip().height;
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let t = Instant::now();
    let next = AtomicU64::new(1);
    let served = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let start = next.fetch_add(512, Ordering::Relaxed);
                if start > tip {
                    break;
                }
                let stored = store
                    .blocks_encoded(start, 512, RESPONSE_BYTE_BUDGET, 16)
                    .expect("range");
                let before = served.fetch_add(u64::from(stored.count), Ordering::Relaxed);
                let after = before + u64::from(stored.count);
                if after / 1_000_000 > before / 1_000_000 {
                    println!("served {after} blocks: {}", rss_line());
                }
            });
        }
    });
    println!(
        "served #1..#{tip} with {threads} threads in {:.1}s, {}",
        t.elapsed().as_secs_f64(),
        rss_line()
    );
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
