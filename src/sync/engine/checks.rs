//! The checking half of the engine: genesis verification, heights and
//! checkpoints of each peer, and the majority votes on downloaded batches.
//! Whether to *leave* a chain we hold is not decided here but in [`super::forks`].

use std::time::Instant;

use libp2p::PeerId;

use super::{Action, Failure, Mode, Outstanding, Purpose, Request, Response, SyncEngine};
use crate::chain::{Block, Hash};
use crate::sync::batch::BatchId;
use crate::sync::config::Checkpoint;
use crate::sync::peer_book::{GenesisVerdict, Penalty};
use crate::sync::verifier::{Decision, Step, Vote};

impl SyncEngine {
    pub(super) fn on_response(&mut self, out: Outstanding, resp: Response, now: Instant) {
        let peer = out.peer;
        match (out.purpose, resp) {
            (Purpose::Genesis, Response::Genesis(g)) => self.on_genesis(peer, g, now),
            (Purpose::Height, Response::Height { height, tip }) => {
                self.book
                    .record_latency(&peer, now.saturating_duration_since(out.sent));
                let first = self.book.get(&peer).is_some_and(|p| p.height.is_none());
                self.book.set_height(&peer, height, tip, now);
                self.note_peer_height(height, now);
                self.check_checkpoints(peer, now);
                if first && self.book.get(&peer).is_some_and(|p| p.usable()) {
                    self.balance_changed("a peer joined", now);
                }
                self.check_claims(now);
            }
            (Purpose::Download { batch, start }, Response::Blocks(blocks)) => {
                self.on_blocks(out, batch, start, blocks, now)
            }
            (Purpose::Vote { batch }, Response::BlockHash { height, hash }) => {
                let asked = self.votes.get(&batch).map(|v| v.height);
                let hash = self.check_hash_answer(peer, asked, height, hash, now);
                if let Some(v) = self.votes.get_mut(&batch) {
                    v.record(peer, hash);
                }
                self.advance_vote(batch, now);
            }
            (Purpose::Probe { height: asked }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, Some(asked), height, hash, now);
                self.on_probe_answer(peer, asked, hash, now);
            }
            (Purpose::Poll { height: asked }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, Some(asked), height, hash, now);
                self.on_poll_answer(peer, asked, hash, now);
            }
            (Purpose::Checkpoint { height: asked }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, Some(asked), height, hash, now);
                self.on_checkpoint_answer(peer, asked, hash, now);
            }
            (Purpose::Recheck { height: asked }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, Some(asked), height, hash, now);
                self.on_recheck_answer(peer, asked, hash);
            }
            (purpose, _) => {
                tracing::debug!(%peer, ?purpose, "answer of the wrong kind");
                self.penalize(&peer, Penalty::BadResponse, now);
                self.on_failure(out, Failure::Malformed, now);
            }
        }
    }

    /// A block-hash answer must be for the height asked; otherwise it is void.
    fn check_hash_answer(
        &mut self,
        peer: PeerId,
        asked: Option<u64>,
        height: u64,
        hash: Option<Hash>,
        now: Instant,
    ) -> Option<Hash> {
        if asked.is_some_and(|a| a != height) {
            self.penalize(&peer, Penalty::BadResponse, now);
            return None;
        }
        if hash.is_none() {
            // It said it does not have it: honest, but stop asking it there.
            self.book.cap_height(&peer, height);
        }
        hash
    }

    pub(super) fn on_failure(&mut self, out: Outstanding, failure: Failure, now: Instant) {
        let peer = out.peer;
        if failure == Failure::Timeout && !matches!(out.purpose, Purpose::Download { .. }) {
            self.penalize(&peer, Penalty::Timeout, now);
        }
        match out.purpose {
            Purpose::Download { batch, start } => {
                self.on_download_failed(out, batch, start, failure, now)
            }
            Purpose::Vote { batch } => {
                if let Some(v) = self.votes.get_mut(&batch) {
                    v.record(peer, None);
                }
                self.advance_vote(batch, now);
            }
            Purpose::Probe { height } => self.on_probe_answer(peer, height, None, now),
            Purpose::Poll { height } => self.on_poll_answer(peer, height, None, now),
            // The peer stays unusable until it shows the checkpoint; its next
            // height report asks again.
            Purpose::Checkpoint { .. }
            | Purpose::Recheck { .. }
            | Purpose::Genesis
            | Purpose::Height => {}
        }
    }

    fn on_genesis(&mut self, peer: PeerId, genesis: Hash, now: Instant) {
        if genesis == self.genesis {
            self.book.set_genesis(&peer, GenesisVerdict::Verified);
            tracing::debug!(%peer, "peer is on our genesis");
            self.send(peer, Request::Height, Purpose::Height, now);
            return;
        }
        tracing::warn!(%peer, theirs = %genesis, ours = %self.genesis, "peer runs another genesis; disconnecting it");
        self.book.set_genesis(&peer, GenesisVerdict::Mismatch);
        let mismatched = self
            .book
            .iter()
            .filter(|(_, p)| p.genesis == GenesisVerdict::Mismatch)
            .count();
        if mismatched >= 2 && mismatched > self.verified_count() {
            tracing::warn!(
                mismatched,
                agreeing = self.verified_count(),
                "most peers run another genesis: this node may be on the wrong network (check --genesis)"
            );
        }
        self.penalize(&peer, Penalty::WrongGenesis, now);
    }

    // ----- checkpoints -----

    /// At start: a stored chain that contradicts a checkpoint is not kept.
    /// The operator's checkpoint outranks any vote, so this rollback needs none.
    pub(super) fn enforce_checkpoints_on_store(&mut self) {
        let tip = self.stored.height;
        let due: Vec<Checkpoint> = self
            .config
            .checkpoints
            .iter()
            .filter(|c| c.height <= tip)
            .copied()
            .collect();
        let mut bad = None;
        for c in due {
            match self.our_hash(c.height) {
                Ok(ours) if ours == Some(c.hash) => {}
                Ok(ours) => {
                    bad = Some((c, ours));
                    break;
                }
                Err(()) => return,
            }
        }
        if let Some((c, ours)) = bad {
            tracing::error!(
                checkpoint = %c,
                ?ours,
                "our stored chain contradicts a checkpoint; rolling back below it"
            );
            self.mode = Mode::RollingBack;
            self.confirmed = self.confirmed.min(c.height - 1);
            self.actions.push_back(Action::Rollback {
                height: c.height - 1,
            });
        }
    }

    /// The highest checkpoint at or below `height` (our chain holds it there:
    /// the store was checked at start and every import since).
    pub(super) fn checkpoint_below(&self, height: u64) -> u64 {
        self.config
            .checkpoints
            .iter()
            .map(|c| c.height)
            .filter(|h| *h <= height)
            .max()
            .unwrap_or(0)
    }

    /// A peer must show every checkpoint at or below its height before it is
    /// used: asks it for the lowest one it has not shown yet.
    pub(super) fn check_checkpoints(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.book.get(&peer) else {
            return;
        };
        let Some(height) = p.height else {
            return;
        };
        let shown = p.checkpoints_shown;
        let next = self
            .config
            .checkpoints
            .iter()
            .map(|c| c.height)
            .find(|h| *h > shown && *h <= height);
        if let Some(p) = self.book.get_mut(&peer) {
            p.unverified_checkpoint = next;
        }
        let Some(h) = next else {
            return;
        };
        let asking = self
            .requests
            .values()
            .any(|r| r.peer == peer && matches!(r.purpose, Purpose::Checkpoint { .. }));
        if !asking {
            self.ask_block_hash(&[peer], h, Purpose::Checkpoint { height: h }, now);
        }
    }

    fn on_checkpoint_answer(
        &mut self,
        peer: PeerId,
        height: u64,
        hash: Option<Hash>,
        now: Instant,
    ) {
        let Some(cp) = self
            .config
            .checkpoints
            .iter()
            .find(|c| c.height == height)
            .copied()
        else {
            return;
        };
        match hash {
            Some(h) if h == cp.hash => {
                if let Some(p) = self.book.get_mut(&peer) {
                    p.checkpoints_shown = p.checkpoints_shown.max(height);
                }
                self.check_checkpoints(peer, now);
                if self.book.get(&peer).is_some_and(|p| p.usable()) {
                    self.balance_changed("a peer joined", now);
                    self.check_claims(now);
                }
            }
            Some(theirs) => {
                tracing::warn!(%peer, checkpoint = %cp, %theirs,
                    "peer's chain contradicts a checkpoint; disconnecting it");
                self.stats.checkpoint_rejections += 1;
                self.penalize(&peer, Penalty::ContradictsCheckpoint, now);
            }
            None => {
                // It claimed the height and then did not hold it (its height
                // is capped below the checkpoint now).
                self.penalize(&peer, Penalty::NotDelivered, now);
                self.check_checkpoints(peer, now);
            }
        }
    }

    /// The first checkpoint a downloaded segment contradicts, if any.
    pub(super) fn contradicted_checkpoint(&self, blocks: &[Block]) -> Option<Checkpoint> {
        let (first, last) = (blocks.first()?.height(), blocks.last()?.height());
        self.config
            .checkpoints
            .iter()
            .filter(|c| c.height >= first && c.height <= last)
            .find(|c| {
                blocks
                    .get((c.height - first) as usize)
                    .is_none_or(|b| b.hash() != c.hash)
            })
            .copied()
    }

    // ----- batch votes -----

    /// Starts a vote on the last hash of a downloaded batch, served by `server`.
    pub(super) fn start_vote(
        &mut self,
        batch: BatchId,
        height: u64,
        served: Hash,
        server: PeerId,
        now: Instant,
    ) {
        let voters = self.pick_voters(height, Some(server), &[], self.config.vote_quorum);
        let quorum = self.config.vote_quorum;
        if voters.len() < quorum && !self.warned_small_quorum {
            let at_most = self.targets.is_some_and(|t| height <= t.safe);
            if at_most {
                self.warned_small_quorum = true;
                tracing::info!(
                    voters = voters.len(),
                    quorum,
                    "fewer peers than the vote quorum: extending our chain from what we have (never leaving it)"
                );
            }
        }
        self.ask_block_hash(&voters, height, Purpose::Vote { batch }, now);
        self.votes.insert(
            batch,
            Vote::new(
                height,
                served,
                Some(server),
                voters,
                now + self.config.vote_timeout,
            ),
        );
        self.advance_vote(batch, now);
    }

    /// Voters still silent at a vote's deadline abstain, so one slow voter
    /// cannot hold a batch back longer than `vote_timeout`.
    pub(super) fn expire_votes(&mut self, now: Instant) {
        let due: Vec<BatchId> = self
            .votes
            .iter()
            .filter(|(_, v)| v.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(v) = self.votes.get_mut(&key) {
                let silent = v.abstain_pending();
                if !silent.is_empty() {
                    tracing::debug!(
                        height = v.height,
                        silent = silent.len(),
                        "vote deadline: silent voters abstain"
                    );
                }
            }
            self.advance_vote(key, now);
        }
    }

    /// Usable peers that hold `height` of our chain (not known to fork below
    /// it), other than `server` and those `asked` already.
    fn voter_candidates<'a>(
        &'a self,
        height: u64,
        server: Option<PeerId>,
        asked: &'a [PeerId],
    ) -> impl Iterator<Item = (&'a PeerId, &'a crate::sync::peer_book::PeerInfo)> + 'a {
        self.book.usable().filter(move |(p, info)| {
            Some(**p) != server
                && !asked.contains(p)
                && info.height_on_our_chain().is_some_and(|h| h >= height)
        })
    }

    /// Up to `n` of [`Self::voter_candidates`], best score first, ties broken
    /// at random.
    fn pick_voters(
        &mut self,
        height: u64,
        server: Option<PeerId>,
        asked: &[PeerId],
        n: usize,
    ) -> Vec<PeerId> {
        let mut c: Vec<(i32, u64, PeerId)> = self
            .voter_candidates(height, server, asked)
            .map(|(p, info)| (info.score, 0, *p))
            .collect();
        for e in c.iter_mut() {
            e.1 = self.random();
        }
        c.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        c.into_iter().take(n).map(|(_, _, p)| p).collect()
    }

    pub(super) fn advance_vote(&mut self, batch: BatchId, now: Instant) {
        let Some(vote) = self.votes.get(&batch) else {
            return;
        };
        let (height, server, round) = (vote.height, vote.server, vote.round());
        let asked: Vec<PeerId> = vote.asked().copied().collect();
        // How many more voters a second round could ask: a vote may end
        // before every voter answered only if even they could not change it.
        let room = if round == 1 {
            self.voter_candidates(height, server, &asked)
                .count()
                .min(self.config.vote_escalation)
        } else {
            0
        };
        match vote.step(room) {
            Step::Wait => {}
            Step::Escalate => {
                let more = self.pick_voters(height, server, &asked, self.config.vote_escalation);
                tracing::debug!(
                    height,
                    extra = more.len(),
                    "vote not unanimous; asking more peers"
                );
                self.ask_block_hash(&more, height, Purpose::Vote { batch }, now);
                if let Some(v) = self.votes.get_mut(&batch) {
                    v.escalate(more, now + self.config.vote_timeout);
                }
            }
            Step::Decided(d) => {
                if let Some(vote) = self.votes.remove(&batch) {
                    self.apply_decision(batch, vote, d, now);
                }
            }
        }
    }

    /// Acts on a batch vote. Losing it is no offence: the server and whoever
    /// backed it hold another chain there, and are not asked for it again.
    fn apply_decision(&mut self, batch: BatchId, vote: Vote, decision: Decision, now: Instant) {
        match decision {
            Decision::Accepted { dissenters, voters } => {
                self.stats.votes_won += 1;
                self.split_rounds = 0;
                for p in dissenters {
                    self.judge_forked(p, vote.height, "voted for another block");
                }
                if voters > 0 {
                    self.confirmed = self.confirmed.max(vote.height);
                } else {
                    tracing::debug!(
                        height = vote.height,
                        "no other peer holds this height yet: accepted on validation alone"
                    );
                }
                self.mark_voted(batch, now);
            }
            Decision::Rejected { winner, backers } => {
                self.stats.votes_lost += 1;
                tracing::info!(height = vote.height, peer = ?vote.server, majority = %winner,
                    "batch lost the majority vote: its server is on another fork; fetching it elsewhere");
                self.reject_batch(batch, "lost vote", false, now);
                for p in vote.server.into_iter().chain(backers) {
                    self.judge_forked(
                        p,
                        vote.height,
                        "served or backed a block the majority does not hold",
                    );
                }
            }
            Decision::Inconclusive => {
                self.stats.votes_inconclusive += 1;
                self.reject_batch(batch, "inconclusive vote", true, now);
                self.enter_split(vote.height, vote.sides(), super::SplitOrigin::Batch, now);
            }
        }
    }
}
