//! A batch: a contiguous span of heights moving through download, checking
//! and import, with its history so blame lands on the right peer.
//!
//! Pure data and transitions; the engine decides when to move it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;

use crate::chain::{Block, Hash};

/// Unique per batch for the engine's lifetime, so a late answer to an old
/// batch can never be mistaken for an answer to a new one at the same heights.
pub type BatchId = u64;

/// Correlates a request with its answer.
pub type ReqId = u64;

/// How one attempt at a batch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Request in flight.
    InFlight,
    /// Served blocks whose last hash is this.
    Served(Hash),
    /// Failed: timeout, empty, malformed, invalid, lost the vote…
    Failed(&'static str),
    /// Another peer's answer arrived first (hedged request); no blame.
    Superseded,
}

/// One attempt: who, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub peer: PeerId,
    pub outcome: Outcome,
}

/// A live block request of a downloading batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub req: ReqId,
    pub peer: PeerId,
    pub sent: Instant,
}

/// Where a batch is.
#[derive(Clone, Debug)]
pub enum BatchState {
    /// Waiting for a peer (not before `not_before`, the retry backoff).
    AwaitingDownload { not_before: Option<Instant> },
    /// Requested from one peer, or two once hedged.
    Downloading { live: Vec<Live>, hedged: bool },
    /// Downloaded: being validated as a segment and voted on, both at once.
    Checking {
        server: PeerId,
        blocks: Arc<Vec<Block>>,
        bytes: u64,
        validated: bool,
        voted: bool,
    },
    /// Validated and won its vote: waits for the batches before it.
    Verified {
        server: PeerId,
        blocks: Arc<Vec<Block>>,
        bytes: u64,
    },
    /// Handed to the store, in order; removed once the import is confirmed.
    Importing { bytes: u64 },
}

/// A contiguous span of heights `start..=end`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub id: BatchId,
    pub start: u64,
    pub end: u64,
    pub state: BatchState,
    pub history: Vec<Attempt>,
    /// Peers that failed this batch; not asked again until every candidate has failed.
    pub failed: HashSet<PeerId>,
    /// How many times every candidate failed (drives the backoff).
    pub rounds: u32,
}

impl Batch {
    pub fn new(id: BatchId, start: u64, end: u64) -> Batch {
        Batch {
            id,
            start,
            end,
            state: BatchState::AwaitingDownload { not_before: None },
            history: Vec::new(),
            failed: HashSet::new(),
            rounds: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Short state name for logs and status.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            BatchState::AwaitingDownload { .. } => "awaiting_download",
            BatchState::Downloading { .. } => "downloading",
            BatchState::Checking { .. } => "checking",
            BatchState::Verified { .. } => "verified",
            BatchState::Importing { .. } => "importing",
        }
    }

    /// Records the outcome of `peer`'s in-flight attempt.
    pub fn set_outcome(&mut self, peer: &PeerId, outcome: Outcome) {
        if let Some(a) = self
            .history
            .iter_mut()
            .rev()
            .find(|a| a.peer == *peer && a.outcome == Outcome::InFlight)
        {
            a.outcome = outcome;
        }
    }

    /// Puts the batch back to be fetched again, never from `culprit` in this
    /// round. The batch is never dropped: only the attempt is.
    pub fn retry(&mut self, culprit: Option<PeerId>, not_before: Option<Instant>) {
        if let Some(p) = culprit {
            self.failed.insert(p);
        }
        for a in self.history.iter_mut() {
            if a.outcome == Outcome::InFlight {
                a.outcome = Outcome::Superseded;
            }
        }
        self.state = BatchState::AwaitingDownload { not_before };
    }

    /// Bytes this batch holds in memory (downloaded blocks), if any.
    pub fn held_bytes(&self) -> u64 {
        match &self.state {
            BatchState::Checking { bytes, .. }
            | BatchState::Verified { bytes, .. }
            | BatchState::Importing { bytes } => *bytes,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_keeps_the_batch_and_remembers_the_culprit() {
        let mut b = Batch::new(1, 10, 19);
        let p = PeerId::random();
        b.history.push(Attempt {
            peer: p,
            outcome: Outcome::InFlight,
        });
        b.set_outcome(&p, Outcome::Failed("timeout"));
        b.retry(Some(p), None);
        assert!(b.failed.contains(&p));
        assert_eq!(b.len(), 10);
        assert_eq!(b.state_name(), "awaiting_download");
        assert_eq!(b.history[0].outcome, Outcome::Failed("timeout"));
    }
}
