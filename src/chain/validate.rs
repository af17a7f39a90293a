//! Validation rules: a block against its parent, and a segment as a whole.
//!
//! Owns the definition of a valid block. It is pure (no I/O, no store, no
//! network): callers fetch the parent from wherever they keep it and store
//! what passes. [`crate::store::Store::import`] trusts its callers to have
//! run these checks.
//!
//! Rules, checked in this order so that cheap checks reject garbage before
//! any hashing or curve arithmetic (the first broken one is reported):
//! height, parent hash, body size, body hash, producer is an authority,
//! producer owns the block's slot, the block's slot strictly after its
//! parent's (at most one block per slot), and the ed25519 signature of the
//! producer over the 32-byte block hash.
//!
//! Time: a block more than a configured drift ahead of the local clock is
//! not acceptable *yet* ([`check_not_future`], [`validate_received`]). That
//! is not a property of the block alone, so it is reported as
//! [`ValidationError::FromTheFuture`], which callers defer rather than
//! punish. The functions here never read the clock: callers pass `now_ms`.
//!
//! Signatures: single blocks use `verify_strict`. Segments use
//! `ed25519_dalek::verify_batch`, which can accept a signature with a torsion
//! component that strict verification rejects; only the holder of an
//! authority's secret key can make such a signature, and genesis rejects weak
//! authority keys, so this does not let anyone else forge blocks.

use ed25519_dalek::VerifyingKey;

use crate::chain::{genesis::Genesis, Block, BlockHeader, Hash};

/// Largest block body a valid block may carry (1 MiB). A consensus rule, so it
/// lives with the other rules; the wire limits in `protocol` are derived from it.
pub const MAX_BODY_SIZE: usize = 1024 * 1024;

/// What a new block is checked against: the block before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    pub height: u64,
    pub hash: Hash,
    pub timestamp_ms: u64,
}

/// One broken rule; `height` is the offending block's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("block {height}: expected height {expected}")]
    WrongHeight { height: u64, expected: u64 },
    #[error("block {height}: parent hash does not match the block before it")]
    WrongParent { height: u64 },
    #[error("block {height}: body hash does not match the body")]
    BodyHashMismatch { height: u64 },
    #[error("block {height}: body of {size} bytes exceeds the maximum")]
    BodyTooLarge { height: u64, size: usize },
    #[error("block {height}: producer is not an authority")]
    UnknownProducer { height: u64 },
    #[error("block {height}: producer is an authority but not the one of this slot")]
    WrongSlotProducer { height: u64 },
    #[error("block {height}: slot {slot} is not after its parent's slot {parent_slot} (one block per slot)")]
    SlotNotAfterParent {
        height: u64,
        slot: u64,
        parent_slot: u64,
    },
    #[error("block {height}: timestamp is {ahead_ms} ms ahead of the local clock (more than the allowed drift)")]
    FromTheFuture { height: u64, ahead_ms: u64 },
    #[error("block {height}: invalid signature")]
    BadSignature { height: u64 },
}

impl BlockRef {
    pub fn of(block: &Block) -> BlockRef {
        BlockRef {
            height: block.header.height,
            hash: block.hash(),
            timestamp_ms: block.header.timestamp_ms,
        }
    }
}

/// What links a block to its parent: the height, the parent hash and the
/// slot order (strictly later slot: at most one block per slot).
/// [`validate_detached`] cannot check these for a segment's first block; the
/// caller that links the segment to the real parent runs this.
pub fn check_link(
    slot_ms: u64,
    parent: &BlockRef,
    header: &BlockHeader,
) -> Result<(), ValidationError> {
    check_parent(parent, header)?;
    check_slot(slot_ms, parent, header)
}

fn check_parent(parent: &BlockRef, h: &BlockHeader) -> Result<(), ValidationError> {
    let height = h.height;
    let expected = parent.height.wrapping_add(1);
    if height != expected || parent.height == u64::MAX {
        return Err(ValidationError::WrongHeight { height, expected });
    }
    if h.parent != parent.hash {
        return Err(ValidationError::WrongParent { height });
    }
    Ok(())
}

fn check_slot(slot_ms: u64, parent: &BlockRef, h: &BlockHeader) -> Result<(), ValidationError> {
    let slot_ms = slot_ms.max(1);
    let (slot, parent_slot) = (h.timestamp_ms / slot_ms, parent.timestamp_ms / slot_ms);
    if slot <= parent_slot {
        return Err(ValidationError::SlotNotAfterParent {
            height: h.height,
            slot,
            parent_slot,
        });
    }
    Ok(())
}

/// Every rule except the signature (and, without `parent_time`, the slot
/// order against the parent). Returns the block's hash (computed once here
/// because both linking the next block and the signature need it) and the
/// producer's verifying key.
fn check_unsigned<'g>(
    genesis: &'g Genesis,
    parent: &BlockRef,
    parent_time: bool,
    block: &Block,
) -> Result<(Hash, &'g VerifyingKey), ValidationError> {
    let h = &block.header;
    let height = h.height;
    check_parent(parent, h)?;
    if block.body.len() > MAX_BODY_SIZE {
        return Err(ValidationError::BodyTooLarge {
            height,
            size: block.body.len(),
        });
    }
    if Hash::digest(&block.body) != h.body_hash {
        return Err(ValidationError::BodyHashMismatch { height });
    }
    let slot_index = genesis.producer_index_for_slot(genesis.slot_of(h.timestamp_ms));
    if genesis.authorities[slot_index] != h.producer {
        return Err(if genesis.is_authority(&h.producer) {
            ValidationError::WrongSlotProducer { height }
        } else {
            ValidationError::UnknownProducer { height }
        });
    }
    if parent_time {
        check_slot(genesis.slot_ms, parent, h)?;
    }
    Ok((h.hash(), genesis.verifying_key(slot_index)))
}

fn verify_one(key: &VerifyingKey, hash: &Hash, block: &Block) -> Result<(), ValidationError> {
    let sig = ed25519_dalek::Signature::from_bytes(&block.header.signature.0);
    key.verify_strict(&hash.0, &sig)
        .map_err(|_| ValidationError::BadSignature {
            height: block.header.height,
        })
}

/// Validates one block against its parent (all rules, signature included).
pub fn validate_block(
    genesis: &Genesis,
    parent: &BlockRef,
    block: &Block,
) -> Result<(), ValidationError> {
    let (hash, key) = check_unsigned(genesis, parent, true, block)?;
    verify_one(key, &hash, block)
}

/// The first block, if any, whose timestamp is more than `max_drift_ms`
/// ahead of `now_ms`. Not a verdict on the blocks: they become acceptable as
/// the clock advances (see the module docs).
pub fn check_not_future(
    blocks: &[Block],
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<(), ValidationError> {
    let limit = now_ms.saturating_add(max_drift_ms);
    match blocks.iter().find(|b| b.header.timestamp_ms > limit) {
        Some(b) => Err(ValidationError::FromTheFuture {
            height: b.header.height,
            ahead_ms: b.header.timestamp_ms - now_ms,
        }),
        None => Ok(()),
    }
}

/// What sync runs on a downloaded segment: [`validate_detached`], then
/// [`check_not_future`]. A segment that breaks a rule is invalid whatever the
/// time, so that verdict comes first; one that is only early is
/// [`ValidationError::FromTheFuture`].
pub fn validate_received(
    genesis: &Genesis,
    blocks: &[Block],
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<(), ValidationError> {
    validate_detached(genesis, blocks)?;
    check_not_future(blocks, now_ms, max_drift_ms)
}

/// Validates a downloaded segment on its own: every rule between its blocks
/// and on each block (signatures in a batch), against a stand-in parent made
/// from the first block's own parent hash. The rules between the first block
/// and its real parent ([`check_link`]: height, hash, slot order) are the
/// caller's job (the sync engine runs them when it hands batches to the
/// store in order), so this needs no context and can run off the event loop
/// while the segment is being voted on.
pub fn validate_detached(genesis: &Genesis, blocks: &[Block]) -> Result<(), ValidationError> {
    let Some(first) = blocks.first() else {
        return Ok(());
    };
    let stand_in = BlockRef {
        height: first.header.height.saturating_sub(1),
        hash: first.header.parent,
        timestamp_ms: 0,
    };
    check_segment(genesis, &stand_in, false, blocks).map(|_| ())
}

/// Validates consecutive blocks following `parent`, checking signatures in a
/// batch; on a batch failure, finds the first bad block. Returns the ref of the last block.
///
/// A block that breaks a non-signature rule is reported even if an earlier
/// block has a bad signature: the cheap rules run over the whole segment first.
pub fn validate_segment(
    genesis: &Genesis,
    parent: &BlockRef,
    blocks: &[Block],
) -> Result<BlockRef, ValidationError> {
    check_segment(genesis, parent, true, blocks)
}

/// [`validate_segment`]; without `parent_time`, the first block's slot is
/// not compared with the parent's (the parent is a stand-in).
fn check_segment(
    genesis: &Genesis,
    parent: &BlockRef,
    parent_time: bool,
    blocks: &[Block],
) -> Result<BlockRef, ValidationError> {
    let mut hashes: Vec<Hash> = Vec::with_capacity(blocks.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(blocks.len());
    let mut sigs: Vec<ed25519_dalek::Signature> = Vec::with_capacity(blocks.len());
    let mut prev = *parent;
    for (i, block) in blocks.iter().enumerate() {
        let (hash, key) = check_unsigned(genesis, &prev, parent_time || i > 0, block)?;
        hashes.push(hash);
        keys.push(*key);
        sigs.push(ed25519_dalek::Signature::from_bytes(
            &block.header.signature.0,
        ));
        prev = BlockRef {
            height: block.header.height,
            hash,
            timestamp_ms: block.header.timestamp_ms,
        };
    }
    if blocks.is_empty() {
        return Ok(prev);
    }
    let messages: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_err() {
        for ((block, hash), key) in blocks.iter().zip(&hashes).zip(&keys) {
            verify_one(key, hash, block)?;
        }
        // The batch can fail where each signature passes strict verification
        // only if the batch equation itself is unusable; the individual
        // checks are the authority.
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::generate::{produce_block, ChainGenerator};
    use crate::chain::{AuthorityKey, BlockHeader, PublicKey, Signature};

    fn genesis_ref(g: &Genesis) -> BlockRef {
        BlockRef::of(g.block())
    }

    /// A valid block after the genesis of `g`, produced by the dev key.
    fn next_block(g: &Genesis, body: Vec<u8>) -> Block {
        produce_block(
            &AuthorityKey::dev(),
            &genesis_ref(g),
            g.timestamp_ms + g.slot_ms,
            body,
        )
    }

    /// Re-signs after a header edit so that only the intended rule breaks.
    fn resign(key: &AuthorityKey, mut b: Block) -> Block {
        b.header.signature = key.sign(&b.header.hash());
        b
    }

    fn two_authorities() -> (Genesis, AuthorityKey, AuthorityKey) {
        let a = AuthorityKey::from_seed([1; 32]);
        let b = AuthorityKey::from_seed([2; 32]);
        let g = Genesis::new("two".into(), 0, 1000, vec![a.public(), b.public()], vec![]).unwrap();
        (g, a, b)
    }

    #[test]
    fn valid_chain_passes() {
        let g = Genesis::dev();
        let blocks: Vec<Block> =
            ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 64, 0)
                .take(50)
                .collect();
        let mut parent = genesis_ref(&g);
        for b in &blocks {
            validate_block(&g, &parent, b).unwrap();
            parent = BlockRef::of(b);
        }
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &blocks).unwrap(),
            parent
        );
        assert_eq!(validate_segment(&g, &parent, &[]).unwrap(), parent);
    }

    #[test]
    fn wrong_height() {
        let g = Genesis::dev();
        let mut b = next_block(&g, vec![1]);
        b.header.height = 2;
        let b = resign(&AuthorityKey::dev(), b);
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::WrongHeight {
                height: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn wrong_parent() {
        let g = Genesis::dev();
        let mut b = next_block(&g, vec![1]);
        b.header.parent.0[0] ^= 1;
        let b = resign(&AuthorityKey::dev(), b);
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::WrongParent { height: 1 })
        );
    }

    #[test]
    fn body_hash_mismatch() {
        let g = Genesis::dev();
        let mut b = next_block(&g, vec![1, 2, 3]);
        let mut body = b.body.to_vec();
        body[0] ^= 1;
        b.body = body.into();
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::BodyHashMismatch { height: 1 })
        );
    }

    #[test]
    fn body_too_large() {
        let g = Genesis::dev();
        let b = next_block(&g, vec![7; MAX_BODY_SIZE + 1]);
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::BodyTooLarge {
                height: 1,
                size: MAX_BODY_SIZE + 1
            })
        );
        // The limit itself is allowed.
        let b = next_block(&g, vec![7; MAX_BODY_SIZE]);
        validate_block(&g, &genesis_ref(&g), &b).unwrap();
    }

    #[test]
    fn unknown_producer() {
        let g = Genesis::dev();
        let stranger = AuthorityKey::from_seed([9; 32]);
        let b = produce_block(
            &stranger,
            &genesis_ref(&g),
            g.timestamp_ms + g.slot_ms,
            vec![1],
        );
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::UnknownProducer { height: 1 })
        );
    }

    #[test]
    fn wrong_slot_producer() {
        let (g, a, b) = two_authorities();
        let parent = genesis_ref(&g);
        // Slot 1 belongs to b, slot 2 to a.
        let ok = produce_block(&b, &parent, 1000, vec![]);
        validate_block(&g, &parent, &ok).unwrap();
        let bad = produce_block(&a, &parent, 1000, vec![]);
        assert_eq!(
            validate_block(&g, &parent, &bad),
            Err(ValidationError::WrongSlotProducer { height: 1 })
        );
        validate_block(&g, &parent, &produce_block(&a, &parent, 2999, vec![])).unwrap();
    }

    #[test]
    fn slot_not_after_the_parents() {
        let g = Genesis::dev();
        let dev = AuthorityKey::dev();
        let slot0 = g.slot_of(g.timestamp_ms);
        let b = produce_block(&dev, &genesis_ref(&g), g.timestamp_ms - 1, vec![]);
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::SlotNotAfterParent {
                height: 1,
                slot: slot0 - 1,
                parent_slot: slot0
            })
        );
        // Same slot as the parent: equal timestamps, and a later one in the slot.
        for ts in [g.timestamp_ms, g.timestamp_ms + g.slot_ms - 1] {
            let b = produce_block(&dev, &genesis_ref(&g), ts, vec![]);
            assert_eq!(
                validate_block(&g, &genesis_ref(&g), &b),
                Err(ValidationError::SlotNotAfterParent {
                    height: 1,
                    slot: slot0,
                    parent_slot: slot0
                })
            );
        }
        // The first millisecond of the next slot is fine.
        let one = produce_block(&dev, &genesis_ref(&g), g.timestamp_ms + g.slot_ms, vec![]);
        validate_block(&g, &genesis_ref(&g), &one).unwrap();
        // One authority cannot fill a slot with a run of blocks: the second
        // block in slot 1 breaks the rule inside a segment too.
        let two = produce_block(
            &dev,
            &BlockRef::of(&one),
            one.header.timestamp_ms + 1,
            vec![],
        );
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &[one.clone(), two.clone()]),
            Err(ValidationError::SlotNotAfterParent {
                height: 2,
                slot: slot0 + 1,
                parent_slot: slot0 + 1
            })
        );
        assert!(validate_detached(&g, &[one.clone(), two.clone()]).is_err());
        // Detached, the first block's parent is unknown: the link check catches it.
        validate_detached(&g, std::slice::from_ref(&two)).unwrap();
        assert_eq!(
            check_link(g.slot_ms, &BlockRef::of(&one), &two.header),
            Err(ValidationError::SlotNotAfterParent {
                height: 2,
                slot: slot0 + 1,
                parent_slot: slot0 + 1
            })
        );
        check_link(g.slot_ms, &genesis_ref(&g), &one.header).unwrap();
        assert_eq!(
            check_link(g.slot_ms, &genesis_ref(&g), &two.header),
            Err(ValidationError::WrongHeight {
                height: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn too_far_in_the_future() {
        let g = Genesis::dev();
        let blocks: Vec<Block> =
            ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 8, 0)
                .take(5)
                .collect();
        // Block k is at genesis + k s.
        let at = |k: u64| g.timestamp_ms + k * g.slot_ms;
        check_not_future(&blocks, at(5), 0).unwrap();
        check_not_future(&blocks, at(3), 2000).unwrap();
        assert_eq!(
            check_not_future(&blocks, at(3), 1999),
            Err(ValidationError::FromTheFuture {
                height: 5,
                ahead_ms: 2000
            })
        );
        assert_eq!(
            check_not_future(&blocks, at(0), 500),
            Err(ValidationError::FromTheFuture {
                height: 1,
                ahead_ms: 1000
            })
        );
        check_not_future(&blocks, u64::MAX, u64::MAX).unwrap();
        // Received segments: invalid first, then early.
        validate_received(&g, &blocks, at(5), 0).unwrap();
        assert!(matches!(
            validate_received(&g, &blocks, at(4), 0),
            Err(ValidationError::FromTheFuture { height: 5, .. })
        ));
        let mut bad = blocks.clone();
        bad[4].body = [&bad[4].body[..], &[1]].concat().into();
        assert_eq!(
            validate_received(&g, &bad, at(0), 0),
            Err(ValidationError::BodyHashMismatch { height: 5 })
        );
    }

    #[test]
    fn bad_signature() {
        let g = Genesis::dev();
        let mut b = next_block(&g, vec![1]);
        b.header.signature.0[0] ^= 1;
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::BadSignature { height: 1 })
        );
        let mut b = next_block(&g, vec![1]);
        b.header.signature = Signature::ZERO;
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::BadSignature { height: 1 })
        );
        // A signature by another key over the right hash.
        let b = resign(&AuthorityKey::from_seed([3; 32]), next_block(&g, vec![1]));
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::BadSignature { height: 1 })
        );
    }

    #[test]
    fn segment_finds_bad_signature_in_the_middle() {
        let g = Genesis::dev();
        let mut blocks: Vec<Block> =
            ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 32, 1)
                .take(100)
                .collect();
        blocks[57].header.signature.0[10] ^= 0x40;
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &blocks),
            Err(ValidationError::BadSignature { height: 58 })
        );
    }

    #[test]
    fn segment_reports_links_and_rules_per_block() {
        let g = Genesis::dev();
        let gen = || ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 16, 2).take(10);
        let mut blocks: Vec<Block> = gen().collect();
        blocks.swap(3, 4);
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &blocks),
            Err(ValidationError::WrongHeight {
                height: 5,
                expected: 4
            })
        );
        let mut blocks: Vec<Block> = gen().collect();
        blocks[6].body = [&blocks[6].body[..], &[0]].concat().into();
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &blocks),
            Err(ValidationError::BodyHashMismatch { height: 7 })
        );
        // A fork's block does not link to this chain's parent.
        let fork: Vec<Block> = ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 16, 3)
            .take(10)
            .collect();
        let mut blocks: Vec<Block> = gen().collect();
        blocks[5] = fork[5].clone();
        assert_eq!(
            validate_segment(&g, &genesis_ref(&g), &blocks),
            Err(ValidationError::WrongParent { height: 6 })
        );
        // Starting from the wrong parent.
        let blocks: Vec<Block> = gen().collect();
        assert_eq!(
            validate_segment(&g, &BlockRef::of(&blocks[0]), &blocks[2..]),
            Err(ValidationError::WrongHeight {
                height: 3,
                expected: 2
            })
        );
    }

    #[test]
    fn zero_producer_block_is_rejected() {
        // The genesis shape (zero producer) is never valid above height 0.
        let g = Genesis::dev();
        let b = Block {
            header: BlockHeader {
                height: 1,
                parent: g.hash(),
                timestamp_ms: g.timestamp_ms,
                body_hash: Hash::digest(&[]),
                producer: PublicKey::ZERO,
                signature: Signature::ZERO,
            },
            body: Default::default(),
        };
        assert_eq!(
            validate_block(&g, &genesis_ref(&g), &b),
            Err(ValidationError::UnknownProducer { height: 1 })
        );
    }

    /// Not a timed assertion: prints a rough throughput figure with `--nocapture`.
    #[test]
    fn segment_validation_throughput() {
        let g = Genesis::dev();
        let blocks: Vec<Block> =
            ChainGenerator::new(&g, AuthorityKey::dev(), genesis_ref(&g), 256, 4)
                .take(2000)
                .collect();
        let start = std::time::Instant::now();
        let mut parent = genesis_ref(&g);
        for b in &blocks {
            let (hash, _) = check_unsigned(&g, &parent, true, b).unwrap();
            parent = BlockRef {
                height: b.header.height,
                hash,
                timestamp_ms: b.header.timestamp_ms,
            };
        }
        let rules = start.elapsed();
        let start = std::time::Instant::now();
        validate_segment(&g, &genesis_ref(&g), &blocks).unwrap();
        let all = start.elapsed();
        println!(
            "validation of 2000 256-byte blocks: rules only {:.0} blocks/s, with batch signatures {:.0} blocks/s",
            2000.0 / rules.as_secs_f64(),
            2000.0 / all.as_secs_f64()
        );
    }
}
