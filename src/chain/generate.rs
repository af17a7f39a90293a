//! Deterministic chain generation (for `concord generate`, tests and benchmarks)
//! and single-block production (for `concord run --produce`).
//!
//! STUB: signatures fixed, bodies to be written.

use crate::chain::{genesis::{AuthorityKey, Genesis}, validate::BlockRef, Block};

/// Builds and signs the block after `parent` with the given timestamp and body.
pub fn produce_block(key: &AuthorityKey, parent: &BlockRef, timestamp_ms: u64, body: Vec<u8>) -> Block { todo!() }

/// A deterministic chain of `count` blocks after `parent`, bodies of `body_size`
/// pseudo-random bytes derived from `seed`; timestamps advance one slot per block.
/// The same arguments always give the same blocks; another seed gives a fork.
/// Single-authority genesis only for now (every slot belongs to `key`).
pub struct ChainGenerator { /* … */ }

impl ChainGenerator {
    pub fn new(genesis: &Genesis, key: AuthorityKey, parent: BlockRef, body_size: usize, seed: u64) -> ChainGenerator { todo!() }
}

impl Iterator for ChainGenerator {
    type Item = Block;
    fn next(&mut self) -> Option<Block> { todo!() }
}
