//! The fetch scheduler half of the engine: cutting the span to the target
//! into batches, assigning them to the best peers, hedging slow requests,
//! retrying failures elsewhere, and handing verified batches to the store in
//! order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{Action, Failure, Mode, Outstanding, Purpose, Request, SyncEngine};
use crate::chain::{Block, BlockRef, ValidationError};
use crate::sync::batch::{Attempt, Batch, BatchId, BatchState, Live, Outcome};
use crate::sync::peer_book::Penalty;

/// Ordering key of a candidate peer: holds the whole batch, score, spare
/// capacity, speed, random tie-break (higher is better in every field).
type PeerRank = (bool, i32, u32, u128, u64);

/// Smoothing of the batch-duration and block-size averages.
const ALPHA: f64 = 0.2;

impl SyncEngine {
    /// Plans batches up to the target and sends whatever can be sent now.
    pub(super) fn schedule(&mut self, now: Instant) {
        self.recompute_targets();
        if !self.may_extend() {
            return;
        }
        if self.batches.is_empty() {
            // Something else (the producer) may have moved the tip.
            self.resync_from_store();
        }
        let Some(targets) = self.targets else { return };
        self.prune_beyond(targets.best);
        self.plan(targets.best);
        if !self.waiting_for_reports(now) {
            self.assign(now);
        }
        self.try_import(now);
    }

    /// Whether a peer that connected less than `verify_grace` ago has yet to
    /// report in (its genesis and height decide whether it can vote).
    pub(super) fn waiting_for_reports(&self, now: Instant) -> bool {
        self.book
            .iter()
            .any(|(_, p)| p.reporting() && now < p.connected_at + self.config.verify_grace)
    }

    /// Drops trailing batches that no peer claims any more (a liar's heights);
    /// only ones nobody is working on.
    fn prune_beyond(&mut self, goal: u64) {
        while let Some((&start, b)) = self.batches.last_key_value() {
            let idle = matches!(b.state, BatchState::AwaitingDownload { .. });
            if start > goal && idle {
                self.batches.remove(&start);
            } else {
                break;
            }
        }
        self.scheduled_to = self
            .batches
            .values()
            .next_back()
            .map_or(self.accepted.height, |b| b.end)
            .max(self.accepted.height);
    }

    /// Cuts new batches while the lookahead window (count and bytes) allows.
    fn plan(&mut self, goal: u64) {
        let per_batch = ((self.config.batch_bytes as f64 / self.avg_block_bytes) as u64)
            .clamp(1, u64::from(self.config.batch_blocks));
        let max_batches = self.config.max_batches_in_flight * 2;
        while self.scheduled_to < goal
            && self.batches.len() < max_batches
            && self.buffered_bytes() < self.config.max_buffered_bytes
        {
            let start = self.scheduled_to + 1;
            let end = goal.min(start + per_batch - 1);
            let id = self.next_batch;
            self.next_batch += 1;
            self.batches.insert(start, Batch::new(id, start, end));
            self.scheduled_to = end;
        }
    }

    /// Bytes held by downloaded batches plus the estimated size of the rest.
    pub fn buffered_bytes(&self) -> u64 {
        self.batches.values().map(|b| self.expected_bytes(b)).sum()
    }

    /// What a batch holds, or will hold once its next response is in. A
    /// response is cut at the server's byte budget (the rest becomes a batch
    /// of its own), so a batch cut for a wrong size guess never counts for
    /// more than one full response.
    fn expected_bytes(&self, b: &Batch) -> u64 {
        match b.state {
            BatchState::AwaitingDownload { .. } | BatchState::Downloading { .. } => {
                let one_response = self.config.batch_bytes.max(self.avg_block_bytes as u64);
                ((b.len() as f64 * self.avg_block_bytes) as u64).min(one_response)
            }
            _ => b.held_bytes(),
        }
    }

    /// Sends waiting batches to peers, lowest heights first, while the
    /// lookahead window has room in bytes.
    fn assign(&mut self, now: Instant) {
        let mut downloading = self
            .batches
            .values()
            .filter(|b| matches!(b.state, BatchState::Downloading { .. }))
            .count();
        // Batches not yet downloaded count at their estimate; a waiting batch
        // is sent only if the window, counting it as in flight, still fits —
        // except the lowest batch not yet downloaded: everything held waits
        // for it, so holding it back would stall the window for good.
        let mut buffered: u64 = self
            .batches
            .values()
            .filter(|b| !matches!(b.state, BatchState::AwaitingDownload { .. }))
            .map(|b| self.expected_bytes(b))
            .sum();
        let lowest_missing = self
            .batches
            .values()
            .find(|b| {
                matches!(
                    b.state,
                    BatchState::AwaitingDownload { .. } | BatchState::Downloading { .. }
                )
            })
            .map(|b| b.start);
        let starts: Vec<u64> = self.batches.keys().copied().collect();
        for start in starts {
            if downloading >= self.config.max_batches_in_flight {
                break;
            }
            let Some(b) = self.batches.get(&start) else {
                continue;
            };
            let BatchState::AwaitingDownload { not_before } = b.state else {
                continue;
            };
            if not_before.is_some_and(|t| t > now) {
                continue;
            }
            let expected = self.expected_bytes(b);
            if Some(start) != lowest_missing && buffered + expected > self.config.max_buffered_bytes
            {
                break;
            }
            let (end, failed) = (b.end, b.failed.clone());
            let Some(peer) = self.pick_peer(start, end, &failed, None) else {
                // Everyone who could serve it failed it: start a new round
                // after a backoff rather than giving up on the batch.
                let candidates = self.pick_peer(start, end, &Default::default(), None);
                if candidates.is_some() {
                    if let Some(b) = self.batches.get_mut(&start) {
                        b.rounds += 1;
                        b.failed.clear();
                        let backoff = self.config.retry_backoff * 2u32.pow(b.rounds.min(3));
                        b.state = BatchState::AwaitingDownload {
                            not_before: Some(now + backoff),
                        };
                        tracing::debug!(
                            start,
                            end,
                            rounds = b.rounds,
                            "every peer failed batch; backing off"
                        );
                    }
                }
                continue;
            };
            self.request_batch(start, peer, now);
            // Extra copies only when configured: the vote, not duplicate
            // downloads, is what makes a batch trustworthy.
            let mut asked: std::collections::HashSet<PeerId> = failed;
            asked.insert(peer);
            for _ in 1..self.config.redundancy {
                let Some(extra) = self.pick_peer(start, end, &asked, None) else {
                    break;
                };
                asked.insert(extra);
                self.request_batch(start, extra, now);
            }
            downloading += 1;
            buffered += expected;
        }
    }

    /// The best peer to fetch `start..=end` from: one that holds the start,
    /// preferring one that holds it all, then score, load and latency.
    pub(super) fn pick_peer(
        &mut self,
        start: u64,
        end: u64,
        exclude: &std::collections::HashSet<PeerId>,
        also_exclude: Option<PeerId>,
    ) -> Option<PeerId> {
        let max = self.config.max_requests_per_peer;
        let mut best: Option<(PeerId, PeerRank)> = None;
        let candidates: Vec<(PeerId, bool, i32, u32, u128)> = self
            .book
            .usable()
            .filter(|(p, info)| {
                info.in_flight < max
                    && info.height_on_our_chain().is_some_and(|h| h >= start)
                    && !exclude.contains(p)
                    && Some(**p) != also_exclude
            })
            .map(|(p, info)| {
                (
                    *p,
                    info.height_on_our_chain().unwrap_or(0) >= end,
                    info.score,
                    info.in_flight,
                    info.latency.map_or(u128::MAX / 2, |l| l.as_micros()),
                )
            })
            .collect();
        for (p, full, score, load, lat) in candidates {
            let tie = self.random();
            // Higher is better for the first two, lower for the rest.
            let key = (full, score, u32::MAX - load, u128::MAX - lat, tie);
            if best.as_ref().is_none_or(|(_, k)| key > *k) {
                best = Some((p, key));
            }
        }
        best.map(|(p, _)| p)
    }

    fn request_batch(&mut self, start: u64, peer: PeerId, now: Instant) {
        let Some(b) = self.batches.get(&start) else {
            return;
        };
        let (id, count) = (b.id, b.len().min(u64::from(u32::MAX)) as u32);
        let req = self.send(
            peer,
            Request::Blocks { start, count },
            Purpose::Download { batch: id, start },
            now,
        );
        if let Some(b) = self.batches.get_mut(&start) {
            b.history.push(Attempt {
                peer,
                outcome: Outcome::InFlight,
            });
            let live = Live {
                req,
                peer,
                sent: now,
            };
            match &mut b.state {
                BatchState::Downloading { live: l, hedged } => {
                    l.push(live);
                    *hedged = true;
                }
                _ => {
                    b.state = BatchState::Downloading {
                        live: vec![live],
                        hedged: false,
                    }
                }
            }
        }
    }

    /// Bytes of downloaded blocks held in memory (not yet imported).
    pub fn held_bytes(&self) -> u64 {
        self.batches.values().map(Batch::held_bytes).sum()
    }

    pub(super) fn hedge_delay(&self) -> Duration {
        let base = self.avg_download.unwrap_or(Duration::from_secs(1));
        base.mul_f64(self.config.hedge_factor)
            .max(self.config.hedge_min)
    }

    /// Duplicates requests that are slower than usual to another peer.
    pub(super) fn hedge(&mut self, now: Instant) {
        let delay = self.hedge_delay();
        let slow: Vec<(u64, u64, PeerId, std::collections::HashSet<PeerId>)> = self
            .batches
            .values()
            .filter_map(|b| match &b.state {
                BatchState::Downloading {
                    live,
                    hedged: false,
                } => live
                    .first()
                    .filter(|l| l.sent + delay <= now)
                    .map(|l| (b.start, b.end, l.peer, b.failed.clone())),
                _ => None,
            })
            .collect();
        for (start, end, first, failed) in slow {
            if let Some(peer) = self.pick_peer(start, end, &failed, Some(first)) {
                tracing::debug!(start, end, slow = %first, to = %peer, "hedging slow batch request");
                self.stats.hedges += 1;
                self.request_batch(start, peer, now);
            } else if let Some(b) = self.batches.get_mut(&start) {
                // Nobody else to ask: stop re-checking until something changes.
                if let BatchState::Downloading { hedged, .. } = &mut b.state {
                    *hedged = true;
                }
            }
        }
    }

    /// A block request failed.
    pub(super) fn on_download_failed(
        &mut self,
        out: Outstanding,
        batch: BatchId,
        start: u64,
        failure: Failure,
        now: Instant,
    ) {
        match failure {
            Failure::Timeout => self.penalize(&out.peer, Penalty::Timeout, now),
            Failure::Malformed => self.penalize(&out.peer, Penalty::BadResponse, now),
            Failure::Disconnected | Failure::Unsupported => {}
        }
        let Some(b) = self.batches.get_mut(&start).filter(|b| b.id == batch) else {
            return;
        };
        let BatchState::Downloading { live, .. } = &mut b.state else {
            return; // Already served by a hedge.
        };
        live.retain(|l| l.peer != out.peer);
        let others_live = !live.is_empty();
        b.set_outcome(&out.peer, Outcome::Failed(failure_name(failure)));
        b.failed.insert(out.peer);
        if !others_live {
            self.stats.retries += 1;
            b.retry(Some(out.peer), None);
            tracing::debug!(start, peer = %out.peer, ?failure, "batch request failed; retrying elsewhere");
        }
    }

    /// Blocks arrived for a batch.
    pub(super) fn on_blocks(
        &mut self,
        out: Outstanding,
        batch: BatchId,
        start: u64,
        blocks: Vec<Block>,
        now: Instant,
    ) {
        let peer = out.peer;
        // Every byte received counts, late hedge copies included: this is
        // the overhead figure.
        let bytes: u64 = blocks.iter().map(|b| b.body.len() as u64 + 180).sum();
        self.stats.bytes_downloaded += bytes;
        let Some(b) = self.batches.get(&start).filter(|b| b.id == batch) else {
            return;
        };
        if !matches!(b.state, BatchState::Downloading { .. }) {
            return; // A hedge won already; the late copy is not held against anyone.
        }
        let end = b.end;
        if blocks.is_empty() {
            // "Don't have it" is honest only from a peer that never claimed it.
            let claimed = self
                .book
                .get(&peer)
                .and_then(|p| p.height)
                .is_some_and(|h| h >= start);
            if claimed {
                self.penalize(&peer, Penalty::NotDelivered, now);
                self.book.cap_height(&peer, start);
            }
            self.fail_attempt(start, peer, "empty");
            return;
        }
        let consecutive = blocks
            .iter()
            .enumerate()
            .all(|(i, blk)| blk.height() == start + i as u64);
        if !consecutive || start + blocks.len() as u64 - 1 > end {
            self.penalize(&peer, Penalty::BadResponse, now);
            self.fail_attempt(start, peer, "wrong heights");
            return;
        }
        if let Some(c) = self.contradicted_checkpoint(&blocks) {
            tracing::warn!(%peer, checkpoint = %c, "peer served blocks that contradict a checkpoint");
            self.stats.checkpoint_rejections += 1;
            self.penalize(&peer, Penalty::ContradictsCheckpoint, now);
            self.fail_attempt(start, peer, "contradicts checkpoint");
            return;
        }
        let elapsed = now.saturating_duration_since(out.sent);
        self.avg_download = Some(match self.avg_download {
            None => elapsed,
            Some(a) => a.mul_f64(1.0 - ALPHA) + elapsed.mul_f64(ALPHA),
        });
        let per_block = bytes as f64 / blocks.len() as f64;
        // The first answer replaces the starting guess outright: with 64 KiB
        // blocks an average still near the guess would cut batches (and
        // estimate the window) 100x too small for many rounds.
        self.avg_block_bytes = if self.stats.blocks_responses == 0 {
            per_block
        } else {
            self.avg_block_bytes * (1.0 - ALPHA) + per_block * ALPHA
        };
        self.stats.blocks_responses += 1;
        let got_end = start + blocks.len() as u64 - 1;
        let last = blocks[blocks.len() - 1].hash();
        // A partial answer (byte budget, or the peer's tip) is valid: the
        // rest becomes a batch of its own.
        if got_end < end {
            let id = self.next_batch;
            self.next_batch += 1;
            self.batches
                .insert(got_end + 1, Batch::new(id, got_end + 1, end));
        }
        let blocks = Arc::new(blocks);
        if let Some(b) = self.batches.get_mut(&start) {
            b.end = got_end;
            for a in b.history.iter_mut() {
                if a.outcome == Outcome::InFlight {
                    a.outcome = if a.peer == peer {
                        Outcome::Served(last)
                    } else {
                        Outcome::Superseded
                    };
                }
            }
            b.state = BatchState::Checking {
                server: peer,
                blocks: blocks.clone(),
                bytes,
                validated: false,
                voted: false,
            };
        }
        self.book.reward(&peer);
        self.actions.push_back(Action::Validate { batch, blocks });
        self.start_vote(batch, got_end, last, peer, now);
    }

    /// The served attempt is void: fetch the batch again elsewhere.
    pub(super) fn fail_attempt(&mut self, start: u64, peer: PeerId, why: &'static str) {
        if let Some(b) = self.batches.get_mut(&start) {
            b.set_outcome(&peer, Outcome::Failed(why));
            if let BatchState::Downloading { live, .. } = &mut b.state {
                live.retain(|l| l.peer != peer);
                if !live.is_empty() {
                    b.failed.insert(peer);
                    return; // The hedge may still deliver.
                }
            }
            self.stats.retries += 1;
            b.retry(Some(peer), None);
        }
    }

    /// A batch failed after download (invalid, lost its vote, inconclusive).
    pub(super) fn reject_batch(
        &mut self,
        batch: BatchId,
        why: &'static str,
        backoff: bool,
        now: Instant,
    ) {
        let backoff_until = backoff.then(|| now + self.config.retry_backoff);
        if let Some(b) = self.batches.values_mut().find(|b| b.id == batch) {
            let server = match &b.state {
                BatchState::Checking { server, .. } | BatchState::Verified { server, .. } => {
                    Some(*server)
                }
                _ => None,
            };
            if let Some(s) = server {
                b.set_outcome_served(&s, why);
            }
            self.stats.retries += 1;
            b.retry(server, backoff_until);
        }
        self.votes.remove(&batch);
    }

    /// Result of segment validation.
    pub(super) fn on_validated(
        &mut self,
        batch: BatchId,
        result: Result<(), ValidationError>,
        now: Instant,
    ) {
        let Some(b) = self.batches.values_mut().find(|b| b.id == batch) else {
            return;
        };
        let BatchState::Checking {
            server, validated, ..
        } = &mut b.state
        else {
            return;
        };
        let server = *server;
        match result {
            Ok(()) => {
                *validated = true;
                self.promote(batch);
                self.try_import(now);
            }
            Err(e) => {
                tracing::warn!(peer = %server, batch_start = b.start, error = %e, "peer served invalid blocks");
                self.reject_batch(batch, "invalid", false, now);
                self.penalize(&server, Penalty::InvalidBlocks, now);
            }
        }
    }

    /// Checking → Verified once both validation and vote passed.
    pub(super) fn promote(&mut self, batch: BatchId) {
        if let Some(b) = self.batches.values_mut().find(|b| b.id == batch) {
            if let BatchState::Checking {
                server,
                blocks,
                bytes,
                validated: true,
                voted: true,
            } = &b.state
            {
                b.state = BatchState::Verified {
                    server: *server,
                    blocks: blocks.clone(),
                    bytes: *bytes,
                };
            }
        }
    }

    /// Hands verified batches that link to the accepted chain to the store, in order.
    pub(super) fn try_import(&mut self, now: Instant) {
        loop {
            let Some(b) = self
                .batches
                .values()
                .find(|b| !matches!(b.state, BatchState::Importing { .. }))
            else {
                return;
            };
            if b.start != self.accepted.height + 1 {
                return;
            }
            let BatchState::Verified {
                server,
                blocks,
                bytes,
            } = &b.state
            else {
                return;
            };
            let (id, start, server, blocks, bytes) =
                (b.id, b.start, *server, blocks.clone(), *bytes);
            let first = &blocks[0].header;
            if first.parent != self.accepted.hash || first.timestamp_ms < self.accepted.timestamp_ms
            {
                self.on_link_failure(id, start, server, now);
                return;
            }
            let last = &blocks[blocks.len() - 1];
            self.accepted = BlockRef {
                height: last.height(),
                hash: last.hash(),
                timestamp_ms: last.header.timestamp_ms,
            };
            if let Some(b) = self.batches.get_mut(&start) {
                b.state = BatchState::Importing { bytes };
            }
            self.actions.push_back(Action::Import { batch: id, blocks });
        }
    }

    /// A verified batch does not extend what we accepted.
    fn on_link_failure(&mut self, batch: BatchId, start: u64, server: PeerId, now: Instant) {
        if self.accepted == self.stored {
            // It won its vote, yet does not extend our own tip: the majority
            // holds another chain below our tip. Check and find where we forked.
            // It validated (and won its vote, if anyone could vote), yet does
            // not extend our tip: its server holds another block at our tip
            // height. Ask everyone whether ours is still the majority's.
            let h = self.stored.height;
            self.judge_forked(server, h, "served blocks that do not extend our tip");
            tracing::info!(height = h, peer = %server,
                "a peer's chain does not extend our tip; polling the peers about our block");
            self.drop_work(true);
            self.request_poll(h, now);
        } else {
            // Two verified batches disagree: refetch the later one elsewhere.
            tracing::warn!(start, peer = %server, "batch does not link to the one before it; refetching");
            self.reject_batch(batch, "does not link", false, now);
        }
    }

    pub(super) fn on_imported(
        &mut self,
        batch: BatchId,
        result: Result<BlockRef, String>,
        now: Instant,
    ) {
        let Some((&start, b)) = self.batches.iter().find(|(_, b)| b.id == batch) else {
            return;
        };
        let (n, bytes) = (b.len(), b.held_bytes());
        self.batches.remove(&start);
        match result {
            Ok(tip) => {
                self.stored = tip;
                self.stats.blocks_imported += n;
                self.stats.bytes_imported += bytes;
                self.last_progress = now;
                self.last_stall_warning = None;
                self.check_claims(now);
            }
            Err(e) => {
                tracing::error!(error = %e, "import failed; restarting sync from the stored tip");
                self.drop_work(false);
            }
        }
    }

    pub(super) fn check_stall(&mut self, now: Instant) {
        if let Some(reason) = self.stall_reason(now) {
            let due = self
                .last_stall_warning
                .is_none_or(|t| now >= t + self.config.stall_timeout);
            if due {
                self.last_stall_warning = Some(now);
                tracing::warn!(height = self.stored.height, target = ?self.targets.map(|t| t.safe), %reason, "sync stalled");
            }
        }
    }

    /// When `check_stall` next has something to say.
    pub(super) fn next_stall_check(&self) -> Instant {
        let after_progress = self.last_progress + self.config.stall_timeout;
        match self.last_stall_warning {
            Some(w) => (w + self.config.stall_timeout).max(after_progress),
            None => after_progress,
        }
    }

    /// Why sync is not progressing, if it is not: halted, split, no peers
    /// left (at once: these are states), or no block imported for
    /// `stall_timeout` while behind.
    pub(super) fn stall_reason(&self, now: Instant) -> Option<String> {
        match &self.mode {
            Mode::Halted(why) => return Some(format!("halted: {why}")),
            Mode::Split { height, sides } => {
                return Some(format!(
                    "split: no 2/3 majority at #{height}: {}",
                    super::forks::describe_sides(sides)
                ))
            }
            _ => {}
        }
        let usable = self.book.usable().count();
        let had_peers = self.stats.first_peer_connected_at.is_some() || !self.batches.is_empty();
        if usable == 0 && had_peers {
            return Some(if self.book.is_empty() {
                "no peers".into()
            } else {
                "no usable peers (connected ones are still reporting in or on another genesis)"
                    .into()
            });
        }
        let behind = self.targets.is_some_and(|t| self.stored.height < t.safe);
        if !behind || now < self.last_progress + self.config.stall_timeout {
            return None;
        }
        let first = self.batches.values().next();
        Some(match first {
            None => "no batch planned".into(),
            Some(b) => format!(
                "first batch {}..={} is {} after {} attempts ({} peers usable)",
                b.start,
                b.end,
                b.state_name(),
                b.history.len(),
                usable
            ),
        })
    }
}

impl Batch {
    fn set_outcome_served(&mut self, peer: &PeerId, why: &'static str) {
        if let Some(a) = self
            .history
            .iter_mut()
            .rev()
            .find(|a| a.peer == *peer && matches!(a.outcome, Outcome::Served(_)))
        {
            a.outcome = Outcome::Failed(why);
        }
    }
}

fn failure_name(f: Failure) -> &'static str {
    match f {
        Failure::Timeout => "timeout",
        Failure::Disconnected => "disconnected",
        Failure::Malformed => "malformed",
        Failure::Unsupported => "unsupported",
    }
}
