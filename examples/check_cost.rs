//! Per-block cost of checking a stored block before it is served, three ways:
//! its own hashes (decode, header hash, blake3 of the body against the header's
//! body hash), blake3 of the stored encoding, crc32 of the stored encoding.
//!
//! `cargo run --release --example check_cost [BODY_SIZE...]`

use std::hint::black_box;
use std::time::Instant;

use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, Block, Genesis, Hash};

fn per_block(name: &str, size: usize, n: usize, mut f: impl FnMut(usize)) {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{size:>7} B body  {name:<28} {:>9.0} ns/block", ns);
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![256, 65536]
    } else {
        sizes
    };
    let g = Genesis::dev();
    for size in sizes {
        let n = if size > 4096 { 2_000 } else { 50_000 };
        let mut gen = ChainGenerator::new(
            &g,
            AuthorityKey::dev(),
            concord::chain::validate::BlockRef::of(g.block()),
            size,
            0,
        );
        let blocks: Vec<Block> = gen.next_batch(n.min(2_000), 2);
        let enc: Vec<Vec<u8>> = blocks.iter().map(Block::encode).collect();
        let k = enc.len();
        per_block("own hashes (decode+2 hash)", size, n, |i| {
            let b = Block::decode(&enc[i % k]).expect("decodes");
            black_box(b.header.hash());
            assert_eq!(Hash::digest(&b.body), b.header.body_hash);
        });
        per_block("decode only", size, n, |i| {
            black_box(Block::decode(&enc[i % k]).expect("decodes"));
        });
        per_block("blake3 of stored bytes", size, n, |i| {
            black_box(blake3::hash(&enc[i % k]));
        });
        per_block("crc32 of stored bytes", size, n, |i| {
            black_box(crc32fast::hash(&enc[i % k]));
        });
    }
}
