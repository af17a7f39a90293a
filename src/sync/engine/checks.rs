//! The checking half of the engine: genesis verification, heights, the
//! majority votes on batches and on our own tip, and the fork search.

use std::time::Instant;

use libp2p::PeerId;

use super::{Failure, Mode, Outstanding, Purpose, Request, Response, SyncEngine, VoteKey};
use crate::chain::{BlockRef, Hash};
use crate::sync::batch::BatchState;
use crate::sync::peer_book::{GenesisVerdict, Penalty};
use crate::sync::reorg::{AncestorSearch, SearchStep};
use crate::sync::verifier::{Decision, Step, Vote};

/// Reference peers asked at each step of a fork search.
const PROBE_PEERS: usize = 3;

impl SyncEngine {
    pub(super) fn on_response(&mut self, out: Outstanding, resp: Response, now: Instant) {
        let peer = out.peer;
        match (out.purpose, resp) {
            (Purpose::Genesis, Response::Genesis(g)) => self.on_genesis(peer, g, now),
            (Purpose::Height, Response::Height { height, tip }) => {
                self.book
                    .record_latency(&peer, now.saturating_duration_since(out.sent));
                self.book.set_height(&peer, height, tip, now);
                self.note_peer_height(height, now);
                self.check_claims(now);
            }
            (Purpose::Download { batch, start }, Response::Blocks(blocks)) => {
                self.on_blocks(out, batch, start, blocks, now)
            }
            (Purpose::Vote { key }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, key_height(self, key), height, hash, now);
                if let Some(v) = self.votes.get_mut(&key) {
                    v.record(peer, hash);
                }
                self.advance_vote(key, now);
            }
            (Purpose::Probe { height: asked }, Response::BlockHash { height, hash }) => {
                let hash = self.check_hash_answer(peer, Some(asked), height, hash, now);
                self.on_probe_answer(peer, asked, hash, now);
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
        match out.purpose {
            Purpose::Download { batch, start } => {
                self.on_download_failed(out, batch, start, failure, now)
            }
            Purpose::Vote { key } => {
                if failure == Failure::Timeout {
                    self.penalize(&peer, Penalty::Timeout, now);
                }
                if let Some(v) = self.votes.get_mut(&key) {
                    v.record(peer, None);
                }
                self.advance_vote(key, now);
            }
            Purpose::Probe { height } => self.on_probe_answer(peer, height, None, now),
            Purpose::Genesis | Purpose::Height => {
                if failure == Failure::Timeout {
                    self.penalize(&peer, Penalty::Timeout, now);
                }
            }
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

    /// Starts a vote on the hash at `height`; `server` is the peer that
    /// served it (`None` for our own hash).
    pub(super) fn start_vote(
        &mut self,
        key: VoteKey,
        height: u64,
        served: Hash,
        server: Option<PeerId>,
        now: Instant,
    ) {
        let voters = self.pick_voters(height, server, &[], self.config.vote_quorum);
        let quorum = self.config.vote_quorum;
        if voters.len() < quorum && !self.warned_small_quorum && key != VoteKey::Consistency {
            let at_most = self.targets.is_some_and(|t| height <= t.safe);
            if at_most {
                self.warned_small_quorum = true;
                tracing::info!(
                    voters = voters.len(),
                    quorum,
                    "fewer peers than the vote quorum: syncing from what we have"
                );
            }
        }
        for v in &voters {
            self.send(
                *v,
                Request::BlockHash { height },
                Purpose::Vote { key },
                now,
            );
        }
        self.votes.insert(
            key,
            Vote::new(
                height,
                served,
                server,
                voters,
                now + self.config.vote_timeout,
            ),
        );
        self.advance_vote(key, now);
    }

    /// Voters still silent at a vote's deadline abstain, so one slow voter
    /// cannot hold a batch back longer than `vote_timeout`.
    pub(super) fn expire_votes(&mut self, now: Instant) {
        let due: Vec<VoteKey> = self
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

    /// Up to `n` usable peers that hold `height` and were not asked yet,
    /// best score first, ties broken at random.
    fn pick_voters(
        &mut self,
        height: u64,
        server: Option<PeerId>,
        asked: &[PeerId],
        n: usize,
    ) -> Vec<PeerId> {
        let mut c: Vec<(i32, u64, PeerId)> = self
            .book
            .usable()
            .filter(|(p, info)| {
                Some(**p) != server
                    && !asked.contains(p)
                    && info.height.is_some_and(|h| h >= height)
            })
            .map(|(p, info)| (info.score, 0, *p))
            .collect();
        for e in c.iter_mut() {
            e.1 = self.random();
        }
        c.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        c.into_iter().take(n).map(|(_, _, p)| p).collect()
    }

    pub(super) fn advance_vote(&mut self, key: VoteKey, now: Instant) {
        let Some(vote) = self.votes.get(&key) else {
            return;
        };
        if vote.step(false) == Step::Wait {
            return;
        }
        let (height, server, round) = (vote.height, vote.server, vote.round());
        // Only a finished first round can escalate: look for more voters then.
        let more = if round == 1 {
            let asked: Vec<PeerId> = vote.asked().copied().collect();
            self.pick_voters(height, server, &asked, self.config.vote_escalation)
        } else {
            Vec::new()
        };
        let Some(vote) = self.votes.get(&key) else {
            return;
        };
        let step = vote.step(!more.is_empty());
        match step {
            Step::Wait => {}
            Step::Escalate => {
                tracing::debug!(
                    height,
                    extra = more.len(),
                    "vote not unanimous; asking more peers"
                );
                for p in &more {
                    self.send(
                        *p,
                        Request::BlockHash { height },
                        Purpose::Vote { key },
                        now,
                    );
                }
                if let Some(v) = self.votes.get_mut(&key) {
                    v.escalate(more, now + self.config.vote_timeout);
                }
            }
            Step::Decided(d) => {
                if let Some(vote) = self.votes.remove(&key) {
                    self.apply_decision(key, vote, d, now);
                }
            }
        }
    }

    fn apply_decision(&mut self, key: VoteKey, vote: Vote, decision: Decision, now: Instant) {
        match (key, decision) {
            (VoteKey::Batch(batch), Decision::Accepted { dissenters, voters }) => {
                self.stats.votes_won += 1;
                for p in dissenters {
                    tracing::info!(peer = %p, height = vote.height, "peer voted against the majority");
                    self.penalize(&p, Penalty::VotedAgainstMajority, now);
                }
                if voters > 0 {
                    self.confirmed = self.confirmed.max(vote.height);
                } else {
                    tracing::debug!(
                        height = vote.height,
                        "no other peer holds this height yet: accepted on validation alone"
                    );
                }
                if let Some(b) = self.batches.values_mut().find(|b| b.id == batch) {
                    if let BatchState::Checking { voted, .. } = &mut b.state {
                        *voted = true;
                    }
                }
                self.promote(batch);
                self.try_import(now);
            }
            (VoteKey::Batch(batch), Decision::Rejected { winner, backers }) => {
                self.stats.votes_lost += 1;
                tracing::warn!(height = vote.height, peer = ?vote.server, majority = %winner,
                    "batch lost the majority vote; blaming the peer that served it");
                self.reject_batch(batch, "lost vote", false, now);
                if let Some(s) = vote.server {
                    self.penalize(&s, Penalty::ServedLosingBatch, now);
                }
                for p in backers {
                    self.penalize(&p, Penalty::VotedAgainstMajority, now);
                }
            }
            (VoteKey::Batch(batch), Decision::Inconclusive) => {
                self.stats.votes_inconclusive += 1;
                tracing::info!(
                    height = vote.height,
                    "vote inconclusive (no 2/3 majority); refetching elsewhere"
                );
                self.reject_batch(batch, "inconclusive vote", true, now);
            }
            (VoteKey::Consistency, Decision::Rejected { winner, .. }) => {
                let reference: Vec<PeerId> = vote
                    .supporters(&winner)
                    .into_iter()
                    .take(PROBE_PEERS)
                    .collect();
                tracing::warn!(height = vote.height, ours = %vote.served, majority = %winner,
                    "the majority holds another block at our tip height; searching for the fork point");
                self.start_search(vote.height, reference, now);
            }
            (VoteKey::Claim(peer), Decision::Rejected { .. }) => {
                tracing::warn!(%peer, height = vote.height, claimed = %vote.served,
                    "peer claims a tip the majority says is not on the chain");
                self.penalize(&peer, Penalty::WrongChain, now);
            }
            (VoteKey::Claim(peer), Decision::Accepted { voters, .. }) if voters >= 2 => {
                let reference: Vec<PeerId> = vote
                    .supporters(&vote.served)
                    .into_iter()
                    .take(PROBE_PEERS)
                    .collect();
                tracing::warn!(%peer, height = vote.height, "the majority holds another block than ours at a height we hold; searching for the fork point");
                self.start_search(vote.height, reference, now);
            }
            (VoteKey::Claim(_), _) | (VoteKey::Consistency, _) => {
                tracing::debug!(height = vote.height, "our tip agrees with the peers");
            }
        }
    }

    /// Compares peers' reported tips at heights we hold with our own blocks;
    /// a mismatch is put to a vote (with the peer as the one that "served"
    /// its claim), so a peer on a forged chain is found out even if it never
    /// served us a batch, and a node on a minority fork finds out it is.
    pub(super) fn check_claims(&mut self, now: Instant) {
        if self.mode != Mode::Normal {
            return;
        }
        let due: Vec<(PeerId, u64, Hash)> = self
            .book
            .usable()
            .filter(|(_, p)| !p.tip_checked)
            .filter_map(|(id, p)| match (p.height, p.tip) {
                (Some(h), Some(t)) if h > 0 && h <= self.stored.height => Some((*id, h, t)),
                _ => None,
            })
            .collect();
        for (peer, height, tip) in due {
            if let Some(p) = self.book.get_mut(&peer) {
                p.tip_checked = true;
            }
            let key = VoteKey::Claim(peer);
            if self.votes.contains_key(&key) {
                continue;
            }
            if self.local.hash_at(height).is_some_and(|ours| ours != tip) {
                self.start_vote(key, height, tip, Some(peer), now);
            }
        }
    }

    /// Asks peers whether they hold our tip (idle only: batches carry their own votes).
    pub(super) fn check_consistency(&mut self, now: Instant) {
        if self.mode != Mode::Normal
            || self.votes.contains_key(&VoteKey::Consistency)
            || self
                .batches
                .values()
                .any(|b| !matches!(b.state, BatchState::Importing { .. }))
            || self.stored.height == 0
        {
            return;
        }
        let tip = self.stored;
        self.start_vote(VoteKey::Consistency, tip.height, tip.hash, None, now);
    }

    fn start_search(&mut self, diverged: u64, reference: Vec<PeerId>, now: Instant) {
        if reference.is_empty() {
            return;
        }
        self.batches.clear();
        self.votes.retain(|k, _| *k == VoteKey::Consistency);
        self.mode = Mode::Searching;
        let unconfirmed = diverged.saturating_sub(self.confirmed);
        let (search, step) = AncestorSearch::new(
            diverged,
            self.config.max_reorg_depth.saturating_add(unconfirmed),
            reference,
        );
        self.search = Some(search);
        self.follow_search(step, now);
    }

    fn follow_search(&mut self, step: SearchStep, now: Instant) {
        match step {
            SearchStep::Probe(h) => {
                let peers: Vec<PeerId> = self
                    .search
                    .as_ref()
                    .map(|s| s.reference().to_vec())
                    .unwrap_or_default();
                for p in peers {
                    self.send(
                        p,
                        Request::BlockHash { height: h },
                        Purpose::Probe { height: h },
                        now,
                    );
                }
            }
            SearchStep::Found(h) => {
                self.search = None;
                let depth = self.stored.height - h;
                tracing::warn!(common = h, depth, "fork point found; rolling back");
                self.stats.reorgs += 1;
                self.mode = Mode::RollingBack;
                self.actions
                    .push_back(super::Action::Rollback { height: h });
            }
            SearchStep::TooDeep { depth_at_least } => {
                self.search = None;
                let why = format!(
                    "the majority chain forks from ours at least {depth_at_least} blocks below our tip, deeper than max_reorg_depth={}; refusing to rewrite history (inspect, then reset)",
                    self.config.max_reorg_depth
                );
                tracing::error!("{why}");
                self.mode = Mode::Halted(why);
            }
            SearchStep::NoAnswers => {
                tracing::warn!("fork search: reference peers stopped answering; resuming");
                self.search = None;
                self.mode = Mode::Normal;
            }
        }
    }

    fn on_probe_answer(&mut self, peer: PeerId, height: u64, hash: Option<Hash>, now: Instant) {
        let Some(s) = self.search.as_mut() else {
            return;
        };
        if s.probing() != Some(height) {
            return;
        }
        s.record(peer, hash);
        if !s.probe_complete() {
            return;
        }
        let ours = self.local.hash_at(height);
        let step = match self.search.as_mut() {
            Some(s) => s.resolve(ours),
            None => return,
        };
        self.follow_search(step, now);
    }

    pub(super) fn on_rolled_back(&mut self, result: Result<BlockRef, String>, now: Instant) {
        match result {
            Ok(tip) => {
                tracing::warn!(height = tip.height, tip = %tip.hash, "rolled back to the common ancestor; re-syncing")
            }
            Err(e) => tracing::error!(error = %e, "rollback failed"),
        }
        self.mode = Mode::Normal;
        self.batches.clear();
        self.resync_from_store();
        self.confirmed = self.confirmed.min(self.stored.height);
        self.book.recheck_tips();
        self.last_progress = now;
    }
}

/// The height a vote is about (to check answers against).
fn key_height(engine: &SyncEngine, key: VoteKey) -> Option<u64> {
    engine.votes.get(&key).map(|v| v.height)
}
