//! Rough throughput figures for the chain hot paths (not a benchmark suite):
//! generation with parallel signing, segment validation, and store import.
//!
//! `cargo run --release --example store_bench [BLOCKS] [BODY_SIZE] [BATCH]`

use std::time::Instant;

use concord::chain::generate::ChainGenerator;
use concord::chain::validate::validate_segment;
use concord::chain::{AuthorityKey, Block, Genesis};
use concord::store::Store;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let body: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let g = Genesis::dev();
    let dir = tempfile_dir();
    let store = Store::open(&dir, &g).expect("open store");

    let t = Instant::now();
    let mut gen = ChainGenerator::new(&g, AuthorityKey::dev(), store.tip(), body, 0);
    let batches: Vec<Vec<Block>> = (0..n / batch).map(|_| gen.next_batch(batch, 2)).collect();
    let n = batches.len() * batch;
    report("generate+sign (2 threads)", n, t);
    let bytes: usize = batches.iter().flatten().map(|b| b.encode().len()).sum();

    let t = Instant::now();
    let mut parent = store.tip();
    for b in &batches {
        parent = validate_segment(&g, &parent, b).expect("valid");
    }
    report("validate_segment (batch signatures)", n, t);

    let t = Instant::now();
    for b in &batches {
        store.import(b).expect("import");
    }
    store.flush().expect("flush");
    report(&format!("import in batches of {batch} + flush"), n, t);
    let s = t.elapsed().as_secs_f64();
    println!(
        "  = {:.1} MB/s of encoded blocks ({} bytes each)",
        bytes as f64 / s / 1e6,
        bytes / n.max(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(what: &str, n: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!(
        "{what}: {n} blocks in {s:.2}s = {:.0} blocks/s",
        n as f64 / s
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("concord-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
