//! The fork-choice half of the engine: which peers are on another fork,
//! whether our own chain is still the one the majority holds (chain polls),
//! splits, and — only when the rule in [`crate::sync::fork_choice`] allows
//! it — the search for the fork point and the rollback.
//!
//! Leaving a chain we hold takes a real majority of a settled peer set;
//! extending it does not (that path is in `download`). A peer that holds
//! another valid chain is judged to be on another fork, never punished.

use std::time::Instant;

use libp2p::PeerId;

use super::{Action, Mode, Purpose, SplitOrigin, StoreFailure, SyncEngine};
use crate::chain::{BlockRef, Hash};
use crate::sync::batch::BatchState;
use crate::sync::fork_choice::{ChainPoll, Side, Verdict};
use crate::sync::reorg::{AncestorSearch, SearchStep};

/// Reference peers asked at each step of a fork search.
const PROBE_PEERS: usize = 3;

impl SyncEngine {
    /// Records that `peer` holds another block than ours at `height`.
    /// Returns true if that is news.
    pub(super) fn judge_forked(&mut self, peer: PeerId, height: u64, why: &'static str) -> bool {
        let news = self.book.mark_forked(&peer, height);
        if news {
            self.stats.fork_judgments += 1;
            tracing::info!(%peer, height, why,
                "peer is on another fork: not syncing from it at or above this height");
        }
        news
    }

    /// Compares peers' reported tips with our chain. A tip at a height we
    /// hold (now, or once we get there) that is not our block there makes
    /// the peer a fork holder and
    /// puts our block to a poll (every new view counts); a peer judged to be
    /// on another fork that announces a tip above ours is asked one small
    /// question to see whether it came back to our chain.
    pub(super) fn check_claims(&mut self, now: Instant) {
        if !self.may_extend() {
            return;
        }
        let due: Vec<(PeerId, u64, Hash, Option<u64>)> = self
            .book
            .usable()
            .filter(|(_, p)| !p.tip_checked)
            .filter_map(|(id, p)| match (p.height, p.tip) {
                (Some(h), Some(t)) if h > 0 => Some((*id, h, t, p.forked_at)),
                _ => None,
            })
            .collect();
        for (peer, height, tip, forked) in due {
            // A tip above ours that is not known to be on another fork is
            // left unchecked: it is compared once our chain reaches its
            // height (this runs after every import), so a peer met while we
            // were still below its tip cannot stay unjudged.
            if height > self.stored.height && forked.is_none() {
                continue;
            }
            if let Some(p) = self.book.get_mut(&peer) {
                p.tip_checked = true;
            }
            if height <= self.stored.height {
                let Ok(Some(ours)) = self.our_hash(height) else {
                    continue;
                };
                if ours == tip {
                    if self.book.mark_agrees(&peer, height) {
                        tracing::info!(%peer, height, "peer is back on our chain");
                    }
                } else if self.judge_forked(peer, height, "reports another tip at a height we hold")
                {
                    self.request_poll(height, now);
                }
            } else if let Some(f) = forked {
                let at = f.min(self.stored.height);
                if at > 0 {
                    self.ask_block_hash(&[peer], at, Purpose::Recheck { height: at }, now);
                }
            }
        }
    }

    pub(super) fn on_recheck_answer(&mut self, peer: PeerId, height: u64, hash: Option<Hash>) {
        let Some(theirs) = hash else {
            return;
        };
        let Ok(ours) = self.our_hash(height) else {
            return;
        };
        if ours == Some(theirs) {
            if self.book.mark_agrees(&peer, height) {
                tracing::info!(%peer, height, "peer is back on our chain");
            }
        } else {
            self.judge_forked(peer, height, "still holds another block");
        }
    }

    /// While idle, every `consistency_interval`: do the peers still hold our tip?
    pub(super) fn check_consistency(&mut self, now: Instant) {
        let busy = self
            .batches
            .values()
            .any(|b| !matches!(b.state(), BatchState::Importing { .. }));
        if self.mode != Mode::Normal || busy || self.stored.height == 0 {
            return;
        }
        self.request_poll(self.stored.height, now);
    }

    /// Asks for a chain poll about our block at `height`; one runs at a time,
    /// so a request during a poll runs after it (at the lowest height asked).
    pub(super) fn request_poll(&mut self, height: u64, now: Instant) {
        self.poll_wanted = Some(self.poll_wanted.map_or(height, |w| w.min(height)));
        self.start_wanted_poll(now);
    }

    fn start_wanted_poll(&mut self, now: Instant) {
        if self.poll.is_some() || !matches!(self.mode, Mode::Normal | Mode::Split { .. }) {
            return;
        }
        if self.poll_not_before.is_some_and(|t| t > now) {
            return;
        }
        self.poll_not_before = None;
        let Some(wanted) = self.poll_wanted.take() else {
            return;
        };
        let height = wanted.min(self.stored.height);
        let Ok(Some(ours)) = self.our_hash(height) else {
            return;
        };
        if height == 0 {
            return;
        }
        // Every usable peer that holds the height, on our fork or not: the
        // poll is where a peer we think is on another fork is heard. All of
        // them, not a sample: 2/3 of a sample is not 2/3 of the peers (a
        // 45% minority of 80 peers wins a 19-peer draw about one poll in
        // fifty). Slots bound the electorate, so the cost is one small
        // request per connected peer per poll.
        let voters: Vec<PeerId> = self
            .book
            .usable()
            .filter(|(_, p)| p.height.is_some_and(|h| h >= height))
            .map(|(id, _)| *id)
            .collect();
        if voters.is_empty() {
            return;
        }
        self.stats.polls += 1;
        tracing::debug!(
            height,
            voters = voters.len(),
            "polling peers about our block"
        );
        self.ask_block_hash(&voters, height, Purpose::Poll { height }, now);
        self.poll = Some(ChainPoll::new(
            height,
            ours,
            voters,
            now + self.config.vote_timeout,
        ));
    }

    pub(super) fn on_poll_answer(
        &mut self,
        peer: PeerId,
        height: u64,
        hash: Option<Hash>,
        now: Instant,
    ) {
        match self.poll.as_mut() {
            Some(p) if p.height == height => p.record(peer, hash),
            _ => return,
        }
        self.decide_poll(now);
    }

    /// Silent voters abstain at the deadline; a poll deferred until the peer
    /// set settles starts when it has.
    pub(super) fn expire_poll(&mut self, now: Instant) {
        if let Some(p) = self.poll.as_mut().filter(|p| p.deadline <= now) {
            p.abstain_pending();
        }
        self.decide_poll(now);
        self.start_wanted_poll(now);
    }

    fn decide_poll(&mut self, now: Instant) {
        let verdict = match &self.poll {
            Some(p) => p.verdict(self.config.vote_quorum),
            None => return,
        };
        if verdict == Verdict::Wait {
            return;
        }
        let Some(poll) = self.poll.take() else {
            return;
        };
        let h = poll.height;
        let mut holders_of_ours = Vec::new();
        // Every answer is a fact about that peer's chain, whatever the verdict.
        for side in poll.sides() {
            for p in side.holders {
                if side.ours {
                    holders_of_ours.push(p);
                    if self.book.mark_agrees(&p, h) {
                        tracing::info!(peer = %p, height = h, "peer is back on our chain");
                    }
                } else {
                    self.judge_forked(p, h, "holds another block at a height we hold");
                }
            }
        }
        match verdict {
            Verdict::Wait => {}
            Verdict::Keep { agree, dissenters } => {
                if !dissenters.is_empty() {
                    tracing::info!(
                        height = h,
                        agree,
                        disagree = dissenters.len(),
                        "the majority holds our block; the peers that disagree are on another fork"
                    );
                }
                self.split_rounds = 0;
                self.end_split_if(SplitOrigin::Chain, "the majority holds our block");
            }
            Verdict::TooFew { dissenters, voters } => {
                tracing::info!(height = h, disagree = dissenters.len(), voters,
                    quorum = self.config.vote_quorum,
                    "peers hold another block than ours, but fewer than vote_quorum answered: keeping our chain");
                self.end_split_if(SplitOrigin::Chain, "too few voters left to split");
            }
            Verdict::Leave {
                winner,
                supporters,
                voters,
            } => {
                if let Some(at) = self.unsettled_until(now) {
                    tracing::info!(height = h, voters,
                        "a majority holds another block than ours, but the peer set is still forming; deciding once it has settled");
                    self.poll_wanted = Some(h);
                    self.poll_not_before = Some(at);
                    return;
                }
                tracing::warn!(height = h, ours = %poll.ours, majority = %winner, voters,
                    holders = supporters.len(),
                    "2/3 of the peers hold another block at a height we hold; searching for the fork point");
                self.split_rounds = 0;
                self.end_split_if(SplitOrigin::Chain, "a 2/3 majority formed");
                let reference = supporters.into_iter().take(PROBE_PEERS).collect();
                self.abandoning = holders_of_ours;
                self.start_search(h, reference, now);
            }
            Verdict::Split { sides } => self.enter_split(h, sides, SplitOrigin::Chain, now),
        }
        self.start_wanted_poll(now);
    }

    /// `None` once the peer set has settled (the engine ran `rollback_settle`
    /// and no peer is still reporting in); otherwise when it will have.
    fn unsettled_until(&self, now: Instant) -> Option<Instant> {
        let settle = self.started + self.config.rollback_settle;
        let reports = self
            .book
            .iter()
            .filter(|(_, p)| p.reporting())
            .map(|(_, p)| p.connected_at + self.config.verify_grace)
            .filter(|t| *t > now)
            .max();
        let at = reports.map_or(settle, |r| r.max(settle));
        (at > now).then_some(at)
    }

    // ----- splits -----

    /// Whether blocks above our tip may be fetched now: not while searching,
    /// rolling back or halted, nor while split about blocks above our chain.
    /// Split about a block we hold, the node keeps its chain and goes on
    /// extending it from the peers that share it (never leaving it).
    pub(super) fn may_extend(&self) -> bool {
        match self.mode {
            Mode::Normal => true,
            Mode::Split { .. } => self.split_origin == Some(SplitOrigin::Chain),
            _ => false,
        }
    }

    /// No block has a 2/3 majority: say so, stop fetching, and look again
    /// after a backoff or as soon as the peer set changes.
    pub(super) fn enter_split(
        &mut self,
        height: u64,
        sides: Vec<Side>,
        origin: SplitOrigin,
        now: Instant,
    ) {
        let backoff = self.config.split_backoff * 2u32.pow(self.split_rounds.min(3));
        self.split_rounds += 1;
        self.split_origin = Some(origin);
        self.split_until = Some(now + backoff);
        let desc = describe_sides(&sides);
        if matches!(self.mode, Mode::Split { .. }) {
            tracing::debug!(height, sides = %desc, "still split");
        } else {
            self.stats.splits += 1;
            tracing::warn!(height, sides = %desc, retry_in_s = backoff.as_secs(),
                "no 2/3 majority: the peers are split between chains; waiting for the balance to change (a --checkpoint decides it)");
        }
        self.mode = Mode::Split { height, sides };
    }

    /// A peer joined or left (or the operator asked): a split may be over.
    pub(super) fn balance_changed(&mut self, why: &'static str, now: Instant) {
        if matches!(self.mode, Mode::Split { .. }) {
            self.leave_split(why, now);
        }
    }

    pub(super) fn leave_split(&mut self, why: &'static str, now: Instant) {
        let Mode::Split { height, .. } = self.mode else {
            return;
        };
        tracing::info!(height, why, "split: looking again");
        self.mode = Mode::Normal;
        self.split_until = None;
        match self.split_origin.take() {
            Some(SplitOrigin::Chain) => self.request_poll(height, now),
            _ => {
                for b in self.batches.values_mut() {
                    if matches!(b.state(), BatchState::AwaitingDownload { .. }) {
                        if let Err(e) = b.clear_backoff() {
                            super::bug(e);
                        }
                    }
                }
            }
        }
    }

    fn end_split_if(&mut self, origin: SplitOrigin, why: &'static str) {
        if matches!(self.mode, Mode::Split { .. }) && self.split_origin == Some(origin) {
            tracing::info!(why, "split resolved");
            self.mode = Mode::Normal;
            self.split_origin = None;
            self.split_until = None;
        }
    }

    // ----- the fork search and the rollback -----

    fn start_search(&mut self, diverged: u64, reference: Vec<PeerId>, now: Instant) {
        if reference.is_empty() {
            return;
        }
        self.drop_work(true);
        self.mode = Mode::Searching;
        // The lowest common height a rollback may go to: `max_reorg_depth`
        // below the highest block another peer vouched for. Blocks above it
        // were taken on one peer's word: dropping them rewrites nothing.
        let floor = if self.allow_deep_reorg {
            0
        } else {
            self.confirmed
                .min(self.stored.height)
                .saturating_sub(self.config.max_reorg_depth)
        };
        let common = self.checkpoint_below(diverged);
        let (search, step) = AncestorSearch::new(diverged, floor, common, reference);
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
                self.ask_block_hash(&peers, h, Purpose::Probe { height: h }, now);
            }
            SearchStep::Found(h) => {
                self.search = None;
                let depth = self.stored.height - h;
                tracing::warn!(common = h, depth, "fork point found; rolling back");
                self.stats.reorgs += 1;
                self.mode = Mode::RollingBack;
                self.actions.push_back(Action::Rollback { height: h });
            }
            SearchStep::TooDeep { floor } => {
                self.search = None;
                let why = format!(
                    "the majority chain forks from ours below #{floor}, more than max_reorg_depth={} blocks under the last block peers vouched for (#{}); refusing to rewrite history; inspect, then `concord reset` (POST /sync/reset) to follow the majority once, or stop the node and `concord rollback --to HEIGHT` (a height you trust, below the fork)",
                    self.config.max_reorg_depth, self.confirmed
                );
                tracing::error!("{why}");
                self.stats.halts += 1;
                self.mode = Mode::Halted(why);
                self.abandoning.clear();
            }
            SearchStep::NoAnswers => {
                tracing::warn!("fork search: reference peers stopped answering; resuming");
                self.abandoning.clear();
                self.search = None;
                self.mode = Mode::Normal;
            }
        }
    }

    pub(super) fn on_probe_answer(
        &mut self,
        peer: PeerId,
        height: u64,
        hash: Option<Hash>,
        now: Instant,
    ) {
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
        let Ok(ours) = self.our_hash(height) else {
            tracing::warn!("fork search stopped: our own chain could not be read");
            self.search = None;
            self.mode = Mode::Normal;
            return;
        };
        let step = match self.search.as_mut() {
            Some(s) => s.resolve(ours),
            None => return,
        };
        self.follow_search(step, now);
    }

    pub(super) fn on_rolled_back(&mut self, result: Result<BlockRef, StoreFailure>, now: Instant) {
        let rolled_back = result.is_ok();
        match result {
            Ok(tip) => {
                tracing::warn!(height = tip.height, tip = %tip.hash, "rolled back to the common ancestor; re-syncing")
            }
            Err(e) => tracing::error!(error = %e, "rollback failed"),
        }
        self.mode = Mode::Normal;
        self.allow_deep_reorg = false;
        self.drop_work(false);
        self.confirmed = self.confirmed.min(self.stored.height);
        self.book.recheck_tips(self.stored.height);
        // The peers that held the blocks we just dropped hold another chain
        // than the majority's from the first dropped height: were they
        // unjudged, a longer such chain would be planned, served by them,
        // taken (nobody else can vote above the majority's height) and
        // rolled back again, in a loop.
        let first_dropped = self.stored.height + 1;
        for peer in std::mem::take(&mut self.abandoning) {
            if rolled_back {
                self.judge_forked(
                    peer,
                    first_dropped,
                    "holds the chain we left for the majority's",
                );
            }
        }
        self.last_progress = now;
    }
}

/// `<hash> held by N (ours)` for each side, for logs and status.
pub(super) fn describe_sides(sides: &[Side]) -> String {
    // Who holds each side, not only how many: the operator deciding with a
    // checkpoint wants to know which peers to look at. A few names per side
    // keep the line short with 80 peers.
    const NAMED: usize = 5;
    sides
        .iter()
        .map(|s| {
            let mut names: Vec<String> = s
                .holders
                .iter()
                .take(NAMED)
                .map(|p| p.to_string())
                .collect();
            if s.holders.len() > NAMED {
                names.push(format!("{} more", s.holders.len() - NAMED));
            }
            format!(
                "{} held by {}{} [{}]",
                s.hash,
                s.holders.len(),
                if s.ours { " (ours)" } else { "" },
                names.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
