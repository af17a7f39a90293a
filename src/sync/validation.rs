//! Validation of downloaded batches on the blocking pool, a few at a time,
//! lowest heights first.
//!
//! Owns the batches waiting to be validated and the validations running. It
//! must not judge a result (the engine does) nor import anything.
//!
//! Why a bound: the engine hands over batches as their downloads and votes
//! complete, up to `max_batches_in_flight` (16) of them at once. One
//! blocking thread per batch had two cores time-slicing between up to 18
//! ed25519 batch verifications, each with its own multiscalar tables in
//! cache: a small-block sync spent ~20% more CPU on the same signatures than
//! the local-import ceiling, which verifies on one thread per core. And the
//! lowest batch, the one the in-order import waits for, got 1/16 of the
//! cores. Now at most `validation_threads` run, and the lowest waiting batch
//! is the next to start.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::chain::validate::validate_received;
use crate::chain::{Block, Genesis, ValidationError};
use crate::sync::batch::BatchId;

/// A finished validation: the batch and the verdict.
pub type Checked = (BatchId, Result<(), ValidationError>);

/// The queue and the running validations.
pub struct Validations {
    genesis: Arc<Genesis>,
    /// Most validations running at once (at least 1).
    limit: usize,
    /// How far ahead of the clock a block may be, for the future rule.
    max_drift_ms: u64,
    /// Waiting, keyed by first height so the lowest starts first (the batch
    /// id breaks ties and keeps keys unique).
    waiting: BTreeMap<(u64, BatchId), Arc<Vec<Block>>>,
    running: FuturesUnordered<JoinHandle<Checked>>,
}

impl Validations {
    /// `threads` 0 means one per core.
    pub fn new(genesis: Arc<Genesis>, threads: usize, max_drift_ms: u64) -> Validations {
        let limit = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Validations {
            genesis,
            limit,
            max_drift_ms,
            waiting: BTreeMap::new(),
            running: FuturesUnordered::new(),
        }
    }

    /// Queues `blocks` of `batch`; [`Validations::start`] starts it when a
    /// thread is free.
    pub fn queue(&mut self, batch: BatchId, blocks: Arc<Vec<Block>>) {
        let first = blocks.first().map_or(0, |b| b.header.height);
        self.waiting.insert((first, batch), blocks);
    }

    /// Starts the lowest waiting batches while fewer than the limit run.
    /// `clock_ms` is read as each starts (the future rule's "now").
    pub fn start(&mut self, clock_ms: impl Fn() -> u64) {
        while self.running.len() < self.limit {
            let Some(((_, batch), blocks)) = self.waiting.pop_first() else {
                return;
            };
            let genesis = self.genesis.clone();
            let (now, drift) = (clock_ms(), self.max_drift_ms);
            self.running.push(tokio::task::spawn_blocking(move || {
                (batch, validate_received(&genesis, &blocks, now, drift))
            }));
        }
    }

    /// Whether nothing is running (then [`Validations::next`] would wait
    /// forever).
    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    /// The next validation to finish; `None` if one panicked (the engine
    /// re-downloads a batch whose check never comes back).
    pub async fn next(&mut self) -> Option<Checked> {
        match self.running.next().await {
            Some(Ok(checked)) => Some(checked),
            _ => None,
        }
    }

    /// How many are running and waiting.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.running.len(), self.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::generate::ChainGenerator;
    use crate::chain::{AuthorityKey, BlockRef};

    fn chain(n: usize) -> (Arc<Genesis>, Vec<Block>) {
        let genesis = Genesis::dev();
        let parent = BlockRef::of(genesis.block());
        let blocks = ChainGenerator::new(&genesis, AuthorityKey::dev(), parent, 64, 0)
            .take(n)
            .collect();
        (Arc::new(genesis), blocks)
    }

    #[tokio::test]
    async fn at_most_the_limit_run_and_the_lowest_waiting_batch_starts_next() {
        let (genesis, blocks) = chain(40);
        let mut v = Validations::new(genesis, 2, u64::MAX);
        // Queued highest first, as batches can complete out of order.
        for (id, part) in [(4u64, 30..40), (3, 20..30), (2, 10..20), (1, 0..10)] {
            v.queue(id, Arc::new(blocks[part].to_vec()));
        }
        v.start(|| 0);
        assert_eq!(v.counts(), (2, 2));
        let mut started_first: Vec<BatchId> = Vec::new();
        for _ in 0..2 {
            let (id, verdict) = v.next().await.expect("a verdict");
            assert_eq!(verdict, Ok(()));
            started_first.push(id);
        }
        started_first.sort();
        assert_eq!(
            started_first,
            vec![1, 2],
            "the two lowest batches ran first"
        );
        assert_eq!(v.counts(), (0, 2));
        v.start(|| 0);
        assert_eq!(v.counts(), (2, 0));
        let mut rest = vec![v.next().await.unwrap().0, v.next().await.unwrap().0];
        rest.sort();
        assert_eq!(rest, vec![3, 4]);
        assert!(v.is_idle());
    }

    #[tokio::test]
    async fn a_bad_batch_gets_its_verdict_and_zero_threads_means_one_per_core() {
        let (genesis, mut blocks) = chain(5);
        blocks[2].body = bytes::Bytes::from_static(b"tampered");
        let mut v = Validations::new(genesis, 0, u64::MAX);
        assert_eq!(
            v.limit,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        v.queue(7, Arc::new(blocks));
        v.start(|| 0);
        let (id, verdict) = v.next().await.unwrap();
        assert_eq!(id, 7);
        assert!(verdict.is_err(), "{verdict:?}");
    }
}
