//! A batch: a contiguous span of heights moving through download, checking
//! and import, with its history so blame lands on the right peer.
//!
//! The batch owns its state: the engine moves it only through the transition
//! methods below, each allowed from named states and returning [`WrongState`]
//! otherwise (as Lighthouse's range-sync `BatchInfo` does). A wrong transition
//! is an engine bug, never a peer's doing: the engine asserts on it in debug
//! builds. Events that may legitimately arrive late (a hedge's second answer,
//! a validation result for a batch that lost its vote meanwhile) are filtered
//! by the engine with [`Batch::state`] before it calls a transition.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

impl BatchState {
    /// Short name for logs, status and errors.
    pub fn name(&self) -> &'static str {
        match self {
            BatchState::AwaitingDownload { .. } => "awaiting_download",
            BatchState::Downloading { .. } => "downloading",
            BatchState::Checking { .. } => "checking",
            BatchState::Verified { .. } => "verified",
            BatchState::Importing { .. } => "importing",
        }
    }
}

/// A transition asked of a batch in a state that does not allow it: a bug
/// in the engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("batch {id} ({start}..={end}): cannot {op} while {state}")]
pub struct WrongState {
    pub id: BatchId,
    pub start: u64,
    pub end: u64,
    pub op: &'static str,
    pub state: &'static str,
}

/// A contiguous span of heights `start..=end`.
#[derive(Clone, Debug)]
pub struct Batch {
    id: BatchId,
    start: u64,
    end: u64,
    state: BatchState,
    history: Vec<Attempt>,
    /// Peers that failed this batch; not asked again until every candidate has failed.
    failed: HashSet<PeerId>,
    /// How many times every candidate failed (drives the backoff).
    rounds: u32,
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

    pub fn id(&self) -> BatchId {
        self.id
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn state(&self) -> &BatchState {
        &self.state
    }

    pub fn history(&self) -> &[Attempt] {
        &self.history
    }

    /// Peers that failed it in this round.
    pub fn failed(&self) -> &HashSet<PeerId> {
        &self.failed
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Short state name for logs and status.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
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

    /// The peer whose blocks the batch holds (checking or verified).
    pub fn server(&self) -> Option<PeerId> {
        match &self.state {
            BatchState::Checking { server, .. } | BatchState::Verified { server, .. } => {
                Some(*server)
            }
            _ => None,
        }
    }

    fn wrong(&self, op: &'static str) -> WrongState {
        WrongState {
            id: self.id,
            start: self.start,
            end: self.end,
            op,
            state: self.state.name(),
        }
    }

    // ----- transitions -----

    /// Sends a request for the batch to `peer`: awaiting → downloading, or,
    /// while downloading, a hedge (a second live request).
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn send(&mut self, req: ReqId, peer: PeerId, now: Instant) -> Result<(), WrongState> {
        let live = Live {
            req,
            peer,
            sent: now,
        };
        match &mut self.state {
            BatchState::AwaitingDownload { .. } => {
                self.state = BatchState::Downloading {
                    live: vec![live],
                    hedged: false,
                };
            }
            BatchState::Downloading { live: l, hedged } => {
                l.push(live);
                *hedged = true;
            }
            _ => return Err(self.wrong("send a request")),
        }
        self.history.push(Attempt {
            peer,
            outcome: Outcome::InFlight,
        });
        Ok(())
    }

    /// Downloading and slow, with nobody else to ask: stop looking for a hedge.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn stop_hedging(&mut self) -> Result<(), WrongState> {
        match &mut self.state {
            BatchState::Downloading { hedged, .. } => {
                *hedged = true;
                Ok(())
            }
            _ => Err(self.wrong("stop hedging")),
        }
    }

    /// `peer`'s request failed (or its answer was void). With another request
    /// still live the batch keeps downloading; otherwise it goes back to
    /// waiting, never from `peer` again this round. Returns whether it went back.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn request_failed(&mut self, peer: &PeerId, why: &'static str) -> Result<bool, WrongState> {
        let BatchState::Downloading { live, .. } = &mut self.state else {
            return Err(self.wrong("fail a request"));
        };
        live.retain(|l| l.peer != *peer);
        let others_live = !live.is_empty();
        self.set_outcome(peer, Outcome::Failed(why));
        self.failed.insert(*peer);
        if !others_live {
            self.supersede_in_flight();
            self.state = BatchState::AwaitingDownload { not_before: None };
        }
        Ok(!others_live)
    }

    /// `peer` served `blocks` (the first `got_end - start + 1` heights; the
    /// batch shrinks to them): downloading → checking.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn downloaded(
        &mut self,
        peer: PeerId,
        blocks: Arc<Vec<Block>>,
        bytes: u64,
        got_end: u64,
    ) -> Result<(), WrongState> {
        if !matches!(self.state, BatchState::Downloading { .. }) {
            return Err(self.wrong("take downloaded blocks"));
        }
        let last = blocks.last().map(Block::hash).unwrap_or(Hash::ZERO);
        for a in self.history.iter_mut() {
            if a.outcome == Outcome::InFlight {
                a.outcome = if a.peer == peer {
                    Outcome::Served(last)
                } else {
                    Outcome::Superseded
                };
            }
        }
        self.end = got_end.clamp(self.start, self.end);
        self.state = BatchState::Checking {
            server: peer,
            blocks,
            bytes,
            validated: false,
            voted: false,
        };
        Ok(())
    }

    /// The segment validated. Returns true if the batch is now verified.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn validated(&mut self) -> Result<bool, WrongState> {
        match &mut self.state {
            BatchState::Checking { validated, .. } => *validated = true,
            _ => return Err(self.wrong("mark validated")),
        }
        Ok(self.promote())
    }

    /// The batch won its vote. Returns true if the batch is now verified.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn voted(&mut self) -> Result<bool, WrongState> {
        match &mut self.state {
            BatchState::Checking { voted, .. } => *voted = true,
            _ => return Err(self.wrong("mark voted")),
        }
        Ok(self.promote())
    }

    /// Checking → verified once validated and voted.
    fn promote(&mut self) -> bool {
        if let BatchState::Checking {
            server,
            blocks,
            bytes,
            validated: true,
            voted: true,
        } = &self.state
        {
            self.state = BatchState::Verified {
                server: *server,
                blocks: blocks.clone(),
                bytes: *bytes,
            };
            return true;
        }
        false
    }

    /// What was downloaded is void (invalid, lost or split its vote, does
    /// not link): checking or verified → awaiting, not from its server again
    /// this round, not before `not_before`. Returns the server.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn reject(
        &mut self,
        why: &'static str,
        not_before: Option<Instant>,
    ) -> Result<PeerId, WrongState> {
        let Some(server) = self.server() else {
            return Err(self.wrong("reject downloaded blocks"));
        };
        if let Some(a) = self
            .history
            .iter_mut()
            .rev()
            .find(|a| a.peer == server && matches!(a.outcome, Outcome::Served(_)))
        {
            a.outcome = Outcome::Failed(why);
        }
        self.failed.insert(server);
        self.supersede_in_flight();
        self.state = BatchState::AwaitingDownload { not_before };
        Ok(server)
    }

    /// Verified → importing: returns the blocks for the store.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn start_import(&mut self) -> Result<Arc<Vec<Block>>, WrongState> {
        let BatchState::Verified { blocks, bytes, .. } = &self.state else {
            return Err(self.wrong("start importing"));
        };
        let blocks = blocks.clone();
        self.state = BatchState::Importing { bytes: *bytes };
        Ok(blocks)
    }

    /// Every candidate failed it: a new round, after a backoff that doubles
    /// per round (capped at 8x `base`). Returns the backoff.
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn new_round(&mut self, base: Duration, now: Instant) -> Result<Duration, WrongState> {
        if !matches!(self.state, BatchState::AwaitingDownload { .. }) {
            return Err(self.wrong("start a new round"));
        }
        self.rounds += 1;
        self.failed.clear();
        let backoff = base * 2u32.pow(self.rounds.min(3));
        self.state = BatchState::AwaitingDownload {
            not_before: Some(now + backoff),
        };
        Ok(backoff)
    }

    /// Waiting: drop the backoff (something changed; try now).
    #[must_use = "a wrong batch transition is an engine bug"]
    pub fn clear_backoff(&mut self) -> Result<(), WrongState> {
        match &mut self.state {
            BatchState::AwaitingDownload { not_before } => {
                *not_before = None;
                Ok(())
            }
            _ => Err(self.wrong("clear the backoff")),
        }
    }

    fn set_outcome(&mut self, peer: &PeerId, outcome: Outcome) {
        if let Some(a) = self
            .history
            .iter_mut()
            .rev()
            .find(|a| a.peer == *peer && a.outcome == Outcome::InFlight)
        {
            a.outcome = outcome;
        }
    }

    fn supersede_in_flight(&mut self) {
        for a in self.history.iter_mut() {
            if a.outcome == Outcome::InFlight {
                a.outcome = Outcome::Superseded;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(n: usize) -> Arc<Vec<Block>> {
        Arc::new(crate::sync::sim::unsigned_chain(n as u64, 8, 1)[1..].to_vec())
    }

    #[test]
    fn a_batch_walks_from_waiting_to_importing() {
        let now = Instant::now();
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut b = Batch::new(1, 1, 10);
        b.send(1, p, now).unwrap();
        b.send(2, q, now).unwrap(); // a hedge
        b.downloaded(q, blocks(10), 100, 10).unwrap();
        assert_eq!(b.history()[0].outcome, Outcome::Superseded);
        assert!(matches!(b.history()[1].outcome, Outcome::Served(_)));
        assert!(!b.voted().unwrap(), "not validated yet");
        assert!(b.validated().unwrap(), "both checks passed");
        assert_eq!(b.state_name(), "verified");
        assert_eq!(b.start_import().unwrap().len(), 10);
        assert_eq!(b.held_bytes(), 100);
    }

    #[test]
    fn a_partial_answer_shrinks_the_batch() {
        let now = Instant::now();
        let p = PeerId::random();
        let mut b = Batch::new(1, 1, 100);
        b.send(1, p, now).unwrap();
        b.downloaded(p, blocks(40), 400, 40).unwrap();
        assert_eq!((b.start(), b.end(), b.len()), (1, 40, 40));
    }

    #[test]
    fn a_failed_request_retries_elsewhere_unless_a_hedge_is_live() {
        let now = Instant::now();
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut b = Batch::new(1, 10, 19);
        b.send(1, p, now).unwrap();
        b.send(2, q, now).unwrap();
        assert!(
            !b.request_failed(&p, "timeout").unwrap(),
            "the hedge is live"
        );
        assert!(b.request_failed(&q, "timeout").unwrap());
        assert_eq!(b.state_name(), "awaiting_download");
        assert!(b.failed().contains(&p) && b.failed().contains(&q));
        assert_eq!(b.history()[0].outcome, Outcome::Failed("timeout"));
        let backoff = b.new_round(Duration::from_millis(100), now).unwrap();
        assert_eq!(backoff, Duration::from_millis(200));
        assert!(b.failed().is_empty(), "a new round asks everyone again");
    }

    #[test]
    fn rejected_blocks_blame_their_server_and_keep_the_batch() {
        let now = Instant::now();
        let p = PeerId::random();
        let mut b = Batch::new(1, 1, 5);
        b.send(1, p, now).unwrap();
        b.downloaded(p, blocks(5), 50, 5).unwrap();
        assert_eq!(b.reject("lost vote", None).unwrap(), p);
        assert_eq!(b.state_name(), "awaiting_download");
        assert_eq!(b.history()[0].outcome, Outcome::Failed("lost vote"));
        assert!(b.failed().contains(&p));
        assert_eq!(b.len(), 5, "the batch is never dropped, only the attempt");
    }

    #[test]
    fn every_wrong_transition_is_an_error() {
        let now = Instant::now();
        let p = PeerId::random();
        let mut waiting = Batch::new(1, 1, 5);
        assert_eq!(
            waiting.downloaded(p, blocks(5), 50, 5).unwrap_err().op,
            "take downloaded blocks"
        );
        assert!(waiting.request_failed(&p, "x").is_err());
        assert!(waiting.validated().is_err());
        assert!(waiting.voted().is_err());
        assert!(waiting.reject("x", None).is_err());
        assert!(waiting.start_import().is_err());
        assert!(waiting.stop_hedging().is_err());
        let mut checking = Batch::new(2, 1, 5);
        checking.send(1, p, now).unwrap();
        checking.downloaded(p, blocks(5), 50, 5).unwrap();
        let e = checking.send(2, p, now).unwrap_err();
        assert_eq!(e.state, "checking");
        assert_eq!(
            e.to_string(),
            "batch 2 (1..=5): cannot send a request while checking"
        );
        assert!(checking.start_import().is_err(), "not verified yet");
        assert!(checking.new_round(Duration::ZERO, now).is_err());
        assert!(checking.clear_backoff().is_err());
    }
}
