//! Probe: peak RSS of sled 0.34 alone while writing 16,000 values of 64 KiB
//! (about 1 GiB) in batches of 1,000, as a syncing node does with large blocks.
//!
//! `cargo run --release --example sled_rss [CACHE_BYTES]` (set `FLUSH=1` to
//! flush after every batch). On the 2-core bench machine it peaks at ~730 MB
//! whether the cache is 64 MiB or 8 MiB, flushed or not: this is where the
//! node's RSS goes when it syncs the 1 GiB chain (see BENCHMARKS.md).

fn main() {
    let dir = std::env::temp_dir().join(format!("sled_rss_{}", std::process::id()));
    let cache: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 << 20);
    let db = sled::Config::new()
        .path(&dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache)
        .open()
        .unwrap();
    let t = db.open_tree("x").unwrap();
    let v = vec![7u8; 65536];
    for b in 0..16u64 {
        let mut batch = sled::Batch::default();
        for i in 0..1000u64 {
            let k = (b * 1000 + i).to_be_bytes();
            let mut val = v.clone();
            val[..8].copy_from_slice(&k);
            batch.insert(&k, val);
        }
        t.apply_batch(batch).unwrap();
        if std::env::var("FLUSH").is_ok() {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
    {
        println!("{l}");
    }
    drop(t);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
