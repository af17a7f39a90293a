//! Equivocation: two different blocks for one slot by the same authority.
//!
//! Owns the detection rule. Pure: callers feed it headers of blocks that
//! validated (so a signature vouches for each) and decide what to do with a
//! finding (log it, count it). Only signed, valid blocks are evidence: an
//! unsigned header proves nothing about its claimed producer.

use std::collections::BTreeMap;

use crate::chain::{BlockHeader, Hash, PublicKey};

/// Two different blocks by `producer` in `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Equivocation {
    pub slot: u64,
    pub producer: PublicKey,
    /// The block seen first.
    pub first: Hash,
    /// The other block.
    pub second: Hash,
}

/// Remembers which block each authority made in each slot, for the most
/// recent slots (bounded: the oldest slots are forgotten first), and reports
/// a second, different block for a remembered slot.
#[derive(Debug)]
pub struct SlotWatch {
    slot_ms: u64,
    capacity: usize,
    seen: BTreeMap<(u64, PublicKey), Hash>,
}

impl SlotWatch {
    /// A watch for a genesis with slots of `slot_ms`, remembering at most
    /// `capacity` blocks.
    pub fn new(slot_ms: u64, capacity: usize) -> SlotWatch {
        SlotWatch {
            slot_ms: slot_ms.max(1),
            capacity: capacity.max(1),
            seen: BTreeMap::new(),
        }
    }

    /// Remembers `header` (keeping the block already remembered for its
    /// slot and producer, if any) without checking it.
    pub fn remember(&mut self, header: &BlockHeader) {
        let key = (header.timestamp_ms / self.slot_ms, header.producer);
        self.seen.entry(key).or_insert_with(|| header.hash());
        while self.seen.len() > self.capacity {
            self.seen.pop_first();
        }
    }

    /// Whether `header` is a different block than the one remembered for its
    /// slot and producer. A finding replaces the remembered block with this
    /// one (the block the caller now holds), so a later switch back is
    /// reported again.
    pub fn check(&mut self, header: &BlockHeader) -> Option<Equivocation> {
        let slot = header.timestamp_ms / self.slot_ms;
        let seen = self.seen.get_mut(&(slot, header.producer))?;
        let hash = header.hash();
        if *seen == hash {
            return None;
        }
        let first = std::mem::replace(seen, hash);
        Some(Equivocation {
            slot,
            producer: header.producer,
            first,
            second: hash,
        })
    }

    /// How many blocks are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::generate::produce_block;
    use crate::chain::{AuthorityKey, BlockRef, Genesis};

    #[test]
    fn a_second_block_in_a_slot_by_the_same_authority_is_reported() {
        let g = Genesis::dev();
        let dev = AuthorityKey::dev();
        let parent = BlockRef::of(g.block());
        let ts = g.timestamp_ms + g.slot_ms;
        let a = produce_block(&dev, &parent, ts, b"a".to_vec());
        let b = produce_block(&dev, &parent, ts + 10, b"b".to_vec());
        let later = produce_block(&dev, &parent, ts + g.slot_ms, b"c".to_vec());
        let mut watch = SlotWatch::new(g.slot_ms, 16);
        assert_eq!(watch.check(&a.header), None, "nothing remembered yet");
        watch.remember(&a.header);
        assert_eq!(watch.check(&a.header), None, "the same block again");
        assert_eq!(watch.check(&later.header), None, "another slot");
        assert_eq!(
            watch.check(&b.header),
            Some(Equivocation {
                slot: g.slot_of(ts),
                producer: dev.public(),
                first: a.hash(),
                second: b.hash(),
            })
        );
        assert_eq!(watch.check(&b.header), None, "b is now the remembered one");
        // Another authority in the same slot is not the same authority.
        let other = AuthorityKey::from_seed([3; 32]);
        let c = produce_block(&other, &parent, ts, b"a".to_vec());
        assert_eq!(watch.check(&c.header), None);
    }

    #[test]
    fn the_oldest_slots_are_forgotten_first() {
        let g = Genesis::dev();
        let dev = AuthorityKey::dev();
        let parent = BlockRef::of(g.block());
        let at = |k: u64, body: &[u8]| {
            produce_block(&dev, &parent, g.timestamp_ms + k * g.slot_ms, body.to_vec())
        };
        let mut watch = SlotWatch::new(g.slot_ms, 2);
        for k in 1..=3 {
            watch.remember(&at(k, b"x").header);
        }
        assert_eq!(watch.len(), 2);
        assert_eq!(watch.check(&at(1, b"y").header), None, "slot 1 forgotten");
        assert!(watch.check(&at(3, b"y").header).is_some());
    }
}
