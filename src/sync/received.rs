//! The encodings of downloaded blocks as they were received, kept beside the
//! engine's batches so that the store worker writes them to `blocks.dat` as
//! they came ([`crate::store::Store::import_encoded`]) instead of encoding
//! the blocks again.
//!
//! The engine knows nothing of bytes: it takes a response's blocks as a
//! `Vec<Block>`, wraps that vector in an `Arc` for the batch and hands the
//! same `Arc` out to validate and to import. This map follows that vector by
//! identity: its buffer's address when the engine takes it, then a `Weak`
//! to the batch's `Arc` (so an entry never outlives the batch's blocks and
//! never answers for other blocks). The encodings are slices of the same
//! received buffer the blocks' bodies point into, so keeping them costs
//! no memory. Owns only that bookkeeping; it decides nothing.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::chain::Block;
use crate::sync::batch::BatchId;

#[derive(Default)]
pub(super) struct Encodings {
    /// The answer being handed to the engine: its vector's buffer address,
    /// length and the encodings.
    handed: Option<(usize, usize, Bytes)>,
    by_batch: HashMap<BatchId, (Weak<Vec<Block>>, Bytes)>,
}

impl Encodings {
    /// `blocks` (with these encodings) go to the engine now.
    pub fn handing(&mut self, blocks: &[Block], encoded: Bytes) {
        self.handed = Some((blocks.as_ptr() as usize, blocks.len(), encoded));
    }

    /// The engine asks to validate `blocks` for `batch`: if they are the
    /// vector just handed to it, its encodings now belong to the batch.
    pub fn validating(&mut self, batch: BatchId, blocks: &Arc<Vec<Block>>) {
        let ours = self
            .handed
            .as_ref()
            .is_some_and(|(at, n, _)| *at == blocks.as_ptr() as usize && *n == blocks.len());
        if let (true, Some((_, _, encoded))) = (ours, self.handed.take()) {
            self.by_batch
                .insert(batch, (Arc::downgrade(blocks), encoded));
        }
    }

    /// The encodings of `blocks`, imported now for `batch`, if kept.
    pub fn take(&mut self, batch: BatchId, blocks: &Arc<Vec<Block>>) -> Option<Bytes> {
        let (weak, encoded) = self.by_batch.remove(&batch)?;
        weak.upgrade()
            .is_some_and(|b| Arc::ptr_eq(&b, blocks))
            .then_some(encoded)
    }

    /// After the engine's actions are carried out: an answer it did not
    /// take is forgotten, and so are batches it dropped.
    pub fn settle(&mut self) {
        self.handed = None;
        self.by_batch.retain(|_, (weak, _)| weak.strong_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::sim;

    #[test]
    fn encodings_follow_the_handed_vector_and_die_with_its_batch() {
        let chain = sim::unsigned_chain(3, 8, 1)[1..].to_vec();
        let mut e = Encodings::default();
        let encoded = Bytes::from_static(b"enc");
        e.handing(&chain, encoded.clone());
        let blocks = Arc::new(chain); // what the engine does with it
        e.validating(7, &blocks);
        e.settle();
        assert_eq!(e.take(7, &blocks), Some(encoded.clone()));
        // Other blocks, or a batch dropped by the engine, get nothing.
        let other = Arc::new(blocks.to_vec());
        e.handing(&other, encoded.clone());
        e.validating(8, &blocks);
        e.settle();
        assert_eq!(e.take(8, &blocks), None);
        e.handing(&other, encoded);
        e.validating(9, &other);
        drop(other);
        e.settle();
        assert!(e.by_batch.is_empty());
    }
}
