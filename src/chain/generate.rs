//! Deterministic chain generation (for `concord generate`, tests and benchmarks)
//! and single-block production (for `concord run --produce`).
//!
//! Owns how blocks are built and signed. It is pure: it neither stores nor
//! sends what it makes (the CLI pipes [`ChainGenerator::next_batch`] into
//! [`crate::store::Store::import`]).
//!
//! Generated chains are part of the test vectors and the CLI's reproducibility
//! promise, so the derivation is fixed: the body of the block at height `h` is
//! the first `body_size` bytes of the blake3 XOF of `h` (8 bytes, little
//! endian), keyed with `blake3::derive_key("concord chain generator v1 body",
//! seed as 8 little-endian bytes)`.

use crate::chain::{
    genesis::{AuthorityKey, Genesis},
    validate::BlockRef,
    Block, BlockHeader, Hash, Signature,
};

const BODY_KEY_CONTEXT: &str = "concord chain generator v1 body";

/// Builds and signs the block after `parent` with the given timestamp and body.
pub fn produce_block(
    key: &AuthorityKey,
    parent: &BlockRef,
    timestamp_ms: u64,
    body: Vec<u8>,
) -> Block {
    let mut block = unsigned_block(key, parent, timestamp_ms, body);
    block.header.signature = key.sign(&block.header.hash());
    block
}

fn unsigned_block(
    key: &AuthorityKey,
    parent: &BlockRef,
    timestamp_ms: u64,
    body: Vec<u8>,
) -> Block {
    Block {
        header: BlockHeader {
            height: parent.height + 1,
            parent: parent.hash,
            timestamp_ms,
            body_hash: Hash::digest(&body),
            producer: key.public(),
            signature: Signature::ZERO,
        },
        body,
    }
}

/// A deterministic chain of `count` blocks after `parent`, bodies of `body_size`
/// pseudo-random bytes derived from `seed`; timestamps advance one slot per block.
/// The same arguments always give the same blocks; another seed gives a fork.
///
/// With several authorities, each block goes in the next slot that `key` owns
/// (for a single authority that is simply the next slot):
/// the k-th block's timestamp is `parent.timestamp_ms + j * slot_ms` for the
/// k-th such `j`.
pub struct ChainGenerator {
    genesis: Genesis,
    key: AuthorityKey,
    parent: BlockRef,
    /// `j` of the last block: its timestamp is `base_ms + step * slot_ms`.
    step: u64,
    base_ms: u64,
    body_size: usize,
    body_key: [u8; 32],
}

impl ChainGenerator {
    /// # Panics
    ///
    /// If `key` is not an authority of `genesis`: it could never produce a valid block.
    pub fn new(
        genesis: &Genesis,
        key: AuthorityKey,
        parent: BlockRef,
        body_size: usize,
        seed: u64,
    ) -> ChainGenerator {
        assert!(
            genesis.is_authority(&key.public()),
            "ChainGenerator: key {} is not an authority of genesis {}",
            key.public(),
            genesis.hash()
        );
        ChainGenerator {
            genesis: genesis.clone(),
            key,
            base_ms: parent.timestamp_ms,
            parent,
            step: 0,
            body_size,
            body_key: blake3::derive_key(BODY_KEY_CONTEXT, &seed.to_le_bytes()),
        }
    }

    /// The last block produced so far (the `parent` given to `new` before the first).
    pub fn tip(&self) -> BlockRef {
        self.parent
    }

    fn body(&self, height: u64) -> Vec<u8> {
        let mut body = vec![0u8; self.body_size];
        blake3::Hasher::new_keyed(&self.body_key)
            .update(&height.to_le_bytes())
            .finalize_xof()
            .fill(&mut body);
        body
    }

    /// Advances to the next owned slot and builds the next block without its
    /// signature. The block hash does not cover the signature, so the chain of
    /// hashes can be built sequentially and signed in parallel afterwards.
    fn next_unsigned(&mut self) -> Block {
        let me = self.key.public();
        let timestamp_ms = loop {
            self.step += 1;
            let ts = self.base_ms + self.step * self.genesis.slot_ms;
            if *self.genesis.producer_for_slot(self.genesis.slot_of(ts)) == me {
                break ts;
            }
        };
        let body = self.body(self.parent.height + 1);
        let block = unsigned_block(&self.key, &self.parent, timestamp_ms, body);
        self.parent = BlockRef {
            height: block.header.height,
            hash: block.header.hash(),
            timestamp_ms,
        };
        block
    }

    /// The next `n` blocks, signed on up to `threads` threads (signing is
    /// ~95% of the cost of a small block). Same blocks as `n` calls to `next`.
    pub fn next_batch(&mut self, n: usize, threads: usize) -> Vec<Block> {
        let mut blocks: Vec<Block> = (0..n).map(|_| self.next_unsigned()).collect();
        let threads = threads.clamp(1, n.max(1));
        let key = &self.key;
        let sign_all = |chunk: &mut [Block]| {
            for b in chunk {
                b.header.signature = key.sign(&b.header.hash());
            }
        };
        if threads == 1 {
            sign_all(&mut blocks);
        } else {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                for chunk in blocks.chunks_mut(per) {
                    s.spawn(move || sign_all(chunk));
                }
            });
        }
        blocks
    }
}

impl Iterator for ChainGenerator {
    type Item = Block;
    fn next(&mut self) -> Option<Block> {
        let mut block = self.next_unsigned();
        block.header.signature = self.key.sign(&block.header.hash());
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::validate::validate_segment;

    fn gen(seed: u64) -> ChainGenerator {
        let g = Genesis::dev();
        ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), 100, seed)
    }

    #[test]
    fn same_args_same_blocks_other_seed_forks() {
        let a: Vec<Block> = gen(0).take(20).collect();
        let b: Vec<Block> = gen(0).take(20).collect();
        let c: Vec<Block> = gen(1).take(20).collect();
        assert_eq!(a, b);
        for (x, y) in a.iter().zip(&c) {
            assert_ne!(x.hash(), y.hash());
            assert_eq!(x.header.timestamp_ms, y.header.timestamp_ms);
        }
        assert_eq!(a[0].body.len(), 100);
        assert_ne!(a[0].body, a[1].body);
    }

    #[test]
    fn timestamps_advance_one_slot_per_block() {
        let g = Genesis::dev();
        for (k, b) in gen(0).take(5).enumerate() {
            assert_eq!(
                b.header.timestamp_ms,
                g.timestamp_ms + (k as u64 + 1) * g.slot_ms
            );
            assert_eq!(b.height(), k as u64 + 1);
        }
    }

    #[test]
    fn batches_equal_the_iterator_and_validate() {
        let g = Genesis::dev();
        let expected: Vec<Block> = gen(5).take(37).collect();
        let mut batched = gen(5);
        let mut got = batched.next_batch(10, 1);
        got.extend(batched.next_batch(27, 3));
        got.extend(batched.next_batch(0, 2));
        assert_eq!(got, expected);
        assert_eq!(batched.tip(), BlockRef::of(&expected[36]));
        validate_segment(&g, &BlockRef::of(g.block()), &got).unwrap();
    }

    #[test]
    fn multi_authority_uses_owned_slots() {
        let a = AuthorityKey::from_seed([1; 32]);
        let b = AuthorityKey::from_seed([2; 32]);
        let c = AuthorityKey::from_seed([3; 32]);
        let g = Genesis::new(
            "three".into(),
            0,
            10,
            vec![a.public(), b.public(), c.public()],
            vec![],
        )
        .unwrap();
        let blocks: Vec<Block> = ChainGenerator::new(&g, b, BlockRef::of(g.block()), 8, 0)
            .take(4)
            .collect();
        let times: Vec<u64> = blocks.iter().map(|b| b.header.timestamp_ms).collect();
        assert_eq!(times, vec![10, 40, 70, 100]);
        validate_segment(&g, &BlockRef::of(g.block()), &blocks).unwrap();
    }

    #[test]
    #[should_panic(expected = "not an authority")]
    fn non_authority_key_panics() {
        let g = Genesis::dev();
        let _ = ChainGenerator::new(
            &g,
            AuthorityKey::from_seed([4; 32]),
            BlockRef::of(g.block()),
            8,
            0,
        );
    }
}
