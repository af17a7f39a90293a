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
    authority::AuthorityKey, genesis::Genesis, validate::BlockRef, Block, BlockHeader, Hash,
    PublicKey, Signature,
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

/// The block [`produce_block`] makes, before it is signed: its hash is
/// already final (the hash does not cover the signature), so a producer can
/// record what it is about to sign first.
pub fn unsigned_block(
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
        body: body.into(),
    }
}

/// A deterministic chain of blocks after `parent`, bodies of `body_size`
/// pseudo-random bytes derived from `seed`. The same arguments always give
/// the same blocks; another seed gives a fork.
///
/// Each block goes in the next slot that one of the generator's keys owns,
/// signed by that key: the k-th block's timestamp is `parent.timestamp_ms +
/// j * slot_ms` for the k-th such `j`. With keys for every authority (or a
/// single-authority genesis) that is simply the next slot; with keys for only
/// some, the other authorities' slots stay empty.
pub struct ChainGenerator {
    genesis: Genesis,
    keys: Vec<AuthorityKey>,
    /// For each genesis authority, the index of its key in `keys`, if we hold it.
    owner: Vec<Option<usize>>,
    parent: BlockRef,
    /// `j` of the last block: its timestamp is `base_ms + step * slot_ms`.
    step: u64,
    base_ms: u64,
    body_size: usize,
    body_key: [u8; 32],
}

/// Why a generator cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorError {
    #[error("key {key} is not an authority of genesis {genesis}")]
    NotAuthority { key: PublicKey, genesis: Hash },
    #[error("no authority key to sign with")]
    NoKeys,
}

impl ChainGenerator {
    /// A generator signing with one key.
    ///
    /// # Panics
    ///
    /// If `key` is not an authority of `genesis`: it could never produce a
    /// valid block. [`ChainGenerator::with_keys`] returns that as an error.
    pub fn new(
        genesis: &Genesis,
        key: AuthorityKey,
        parent: BlockRef,
        body_size: usize,
        seed: u64,
    ) -> ChainGenerator {
        match Self::with_keys(genesis, vec![key], parent, body_size, seed) {
            Ok(g) => g,
            Err(e) => panic!("ChainGenerator: {e}"),
        }
    }

    /// A generator filling the slots of every authority in `keys` (a key
    /// given twice counts once).
    pub fn with_keys(
        genesis: &Genesis,
        keys: Vec<AuthorityKey>,
        parent: BlockRef,
        body_size: usize,
        seed: u64,
    ) -> Result<ChainGenerator, GeneratorError> {
        if keys.is_empty() {
            return Err(GeneratorError::NoKeys);
        }
        let mut owner = vec![None; genesis.authorities.len()];
        for (k, key) in keys.iter().enumerate() {
            let public = key.public();
            let Some(i) = genesis.authorities.iter().position(|a| *a == public) else {
                return Err(GeneratorError::NotAuthority {
                    key: public,
                    genesis: genesis.hash(),
                });
            };
            owner[i].get_or_insert(k);
        }
        Ok(ChainGenerator {
            genesis: genesis.clone(),
            keys,
            owner,
            base_ms: parent.timestamp_ms,
            parent,
            step: 0,
            body_size,
            body_key: blake3::derive_key(BODY_KEY_CONTEXT, &seed.to_le_bytes()),
        })
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

    /// Advances to the next slot one of our keys owns and builds the next
    /// block without its signature; returns it with the index of the key that
    /// must sign it. The block hash does not cover the signature, so the
    /// chain of hashes can be built sequentially and signed in parallel
    /// afterwards.
    fn next_unsigned(&mut self) -> (Block, usize) {
        let (timestamp_ms, signer) = loop {
            self.step += 1;
            let ts = self.base_ms + self.step * self.genesis.slot_ms;
            let slot = self.genesis.slot_of(ts);
            if let Some(k) = self.owner[self.genesis.producer_index_for_slot(slot)] {
                break (ts, k);
            }
        };
        let body = self.body(self.parent.height + 1);
        let block = unsigned_block(&self.keys[signer], &self.parent, timestamp_ms, body);
        self.parent = BlockRef {
            height: block.header.height,
            hash: block.header.hash(),
            timestamp_ms,
        };
        (block, signer)
    }

    /// The next `n` blocks, signed on up to `threads` threads (signing is
    /// ~95% of the cost of a small block). Same blocks as `n` calls to `next`.
    pub fn next_batch(&mut self, n: usize, threads: usize) -> Vec<Block> {
        let (mut blocks, signers): (Vec<Block>, Vec<usize>) =
            (0..n).map(|_| self.next_unsigned()).unzip();
        let threads = threads.clamp(1, n.max(1));
        let keys = &self.keys;
        let sign_all = |chunk: &mut [Block], signers: &[usize]| {
            for (b, k) in chunk.iter_mut().zip(signers) {
                b.header.signature = keys[*k].sign(&b.header.hash());
            }
        };
        if threads == 1 {
            sign_all(&mut blocks, &signers);
        } else {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                for (chunk, signers) in blocks.chunks_mut(per).zip(signers.chunks(per)) {
                    s.spawn(move || sign_all(chunk, signers));
                }
            });
        }
        blocks
    }
}

impl Iterator for ChainGenerator {
    type Item = Block;
    fn next(&mut self) -> Option<Block> {
        let (mut block, signer) = self.next_unsigned();
        block.header.signature = self.keys[signer].sign(&block.header.hash());
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
    fn keys_for_some_authorities_fill_only_their_slots() {
        let keys: Vec<AuthorityKey> = (1..=3).map(|i| AuthorityKey::from_seed([i; 32])).collect();
        let g = Genesis::new(
            "three".into(),
            0,
            10,
            keys.iter().map(AuthorityKey::public).collect(),
            vec![],
        )
        .unwrap();
        let parent = BlockRef::of(g.block());
        let two = vec![keys[0].clone(), keys[2].clone()];
        let blocks: Vec<Block> = ChainGenerator::with_keys(&g, two.clone(), parent, 8, 0)
            .unwrap()
            .take(6)
            .collect();
        // Slot s belongs to authority s % 3; authority 1 (slots 1, 4, 7, …) is missing.
        let slots: Vec<u64> = blocks
            .iter()
            .map(|b| g.slot_of(b.header.timestamp_ms))
            .collect();
        assert_eq!(slots, vec![2, 3, 5, 6, 8, 9]);
        for b in &blocks {
            let owner = g.producer_for_slot(g.slot_of(b.header.timestamp_ms));
            assert_eq!(&b.header.producer, owner);
        }
        validate_segment(&g, &parent, &blocks).unwrap();
        // Parallel signing signs each block with its own slot's key.
        let mut batched = ChainGenerator::with_keys(&g, two, parent, 8, 0).unwrap();
        assert_eq!(batched.next_batch(6, 4), blocks);
        // Every key: every slot.
        let all: Vec<Block> = ChainGenerator::with_keys(&g, keys.clone(), parent, 8, 0)
            .unwrap()
            .take(4)
            .collect();
        let slots: Vec<u64> = all
            .iter()
            .map(|b| g.slot_of(b.header.timestamp_ms))
            .collect();
        assert_eq!(slots, vec![1, 2, 3, 4]);
        validate_segment(&g, &parent, &all).unwrap();
        let stranger = AuthorityKey::from_seed([9; 32]);
        assert_eq!(
            ChainGenerator::with_keys(&g, vec![keys[0].clone(), stranger.clone()], parent, 8, 0)
                .err(),
            Some(GeneratorError::NotAuthority {
                key: stranger.public(),
                genesis: g.hash()
            })
        );
        assert_eq!(
            ChainGenerator::with_keys(&g, vec![], parent, 8, 0).err(),
            Some(GeneratorError::NoKeys)
        );
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
