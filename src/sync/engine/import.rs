//! From downloaded blocks to the store: a response's shape and checkpoints
//! checked, then validation and the vote (both at once), promotion to
//! verified, and in-order hand-over to the store, which links each batch to
//! the one before it. A batch that does not extend our own tip is where a
//! fork shows itself; [`super::forks`] takes it from there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{Action, Outstanding, StoreFailure, SyncEngine};
use crate::chain::validate::check_link;
use crate::chain::{Block, BlockRef, ValidationError};
use crate::sync::batch::{BatchId, BatchState};
use crate::sync::peer_book::Penalty;

/// Smoothing of the batch-duration and block-size averages.
const ALPHA: f64 = 0.2;

impl SyncEngine {
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
        if !blocks.is_empty() {
            *self.stats.responses_by_peer.entry(peer).or_default() += 1;
        }
        let Some(b) = self.batches.get(&start).filter(|b| b.id() == batch) else {
            return;
        };
        if !matches!(b.state(), BatchState::Downloading { .. }) {
            return; // A hedge won already; the late copy is not held against anyone.
        }
        let end = b.end();
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
            self.fail_attempt(batch, start, peer, "empty");
            return;
        }
        let consecutive = blocks
            .iter()
            .enumerate()
            .all(|(i, blk)| blk.height() == start + i as u64);
        if !consecutive || start + blocks.len() as u64 - 1 > end {
            self.penalize(&peer, Penalty::BadResponse, now);
            self.fail_attempt(batch, start, peer, "wrong heights");
            return;
        }
        if let Some(c) = self.contradicted_checkpoint(&blocks) {
            tracing::warn!(%peer, checkpoint = %c, "peer served blocks that contradict a checkpoint");
            self.stats.checkpoint_rejections += 1;
            self.penalize(&peer, Penalty::ContradictsCheckpoint, now);
            self.fail_attempt(batch, start, peer, "contradicts checkpoint");
            return;
        }
        let elapsed = now.saturating_duration_since(out.sent);
        tracing::debug!(start, %peer, n = blocks.len(), elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "batch delivered");
        self.book.record_delivery(&peer, bytes, out.sent, now);
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
        let blocks = Arc::new(blocks);
        if let Some(b) = self.batches.get_mut(&start) {
            if let Err(e) = b.downloaded(peer, blocks.clone(), bytes, got_end) {
                return super::bug(e);
            }
        }
        // A partial answer (byte budget, or the peer's tip) is valid: the
        // rest becomes a batch of its own.
        if got_end < end {
            self.insert_batch(got_end + 1, end);
        }
        self.book.reward(&peer);
        self.actions.push_back(Action::Validate { batch, blocks });
        self.start_vote(batch, got_end, last, peer, now);
    }

    /// A batch failed after download (invalid, lost its vote, inconclusive,
    /// does not link): it is fetched again, not from the same server.
    pub(super) fn reject_batch(
        &mut self,
        batch: BatchId,
        why: &'static str,
        backoff: bool,
        now: Instant,
    ) {
        let not_before = backoff.then(|| now + self.config.retry_backoff);
        if let Some(b) = self.batches.values_mut().find(|b| b.id() == batch) {
            match b.reject(why, not_before) {
                Ok(_) => self.stats.retries += 1,
                Err(e) => super::bug(e),
            }
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
        let Some(b) = self.batches.values_mut().find(|b| b.id() == batch) else {
            return;
        };
        // It may have lost its vote (and gone back to waiting) meanwhile.
        let BatchState::Checking { server, .. } = *b.state() else {
            return;
        };
        match result {
            Ok(()) => {
                if let Err(e) = b.validated() {
                    return super::bug(e);
                }
                self.try_import(now);
            }
            Err(ValidationError::FromTheFuture { height, ahead_ms }) => {
                // Not invalid, only early: clocks differ. Like a deferred
                // block elsewhere, it is fetched again after a backoff (by
                // then it may be acceptable), and nobody is punished.
                tracing::info!(peer = %server, height, ahead_ms,
                    "peer served a block too far ahead of our clock; fetching it again later");
                self.stats.future_blocks += 1;
                self.reject_batch(batch, "from the future", true, now);
            }
            Err(e) => {
                tracing::warn!(peer = %server, batch_start = b.start(), error = %e, "peer served invalid blocks");
                self.reject_batch(batch, "invalid", false, now);
                self.penalize(&server, Penalty::InvalidBlocks, now);
            }
        }
    }

    /// The batch won its vote.
    pub(super) fn mark_voted(&mut self, batch: BatchId, now: Instant) {
        let Some(b) = self.batches.values_mut().find(|b| b.id() == batch) else {
            return;
        };
        if !matches!(b.state(), BatchState::Checking { .. }) {
            return;
        }
        if let Err(e) = b.voted() {
            return super::bug(e);
        }
        self.try_import(now);
    }

    /// Hands verified batches that link to the accepted chain to the store, in order.
    pub(super) fn try_import(&mut self, now: Instant) {
        loop {
            let Some(b) = self
                .batches
                .values()
                .find(|b| !matches!(b.state(), BatchState::Importing { .. }))
            else {
                return;
            };
            if b.start() != self.accepted.height + 1 {
                return;
            }
            let BatchState::Verified { server, blocks, .. } = b.state() else {
                return;
            };
            let (id, start, server) = (b.id(), b.start(), *server);
            let first = &blocks[0].header;
            if first.parent != self.accepted.hash {
                self.on_link_failure(id, start, server, now);
                return;
            }
            // Validation saw the segment alone; the rules between its first
            // block and ours (one block per slot) are checked here.
            if let Err(e) = check_link(self.slot_ms, &self.accepted, first) {
                tracing::warn!(peer = %server, batch_start = start, error = %e, "peer served invalid blocks");
                self.reject_batch(id, "invalid", false, now);
                self.penalize(&server, Penalty::InvalidBlocks, now);
                return;
            }
            let last = &blocks[blocks.len() - 1];
            let tip = BlockRef {
                height: last.height(),
                hash: last.hash(),
                timestamp_ms: last.header.timestamp_ms,
            };
            let Some(b) = self.batches.get_mut(&start) else {
                return;
            };
            match b.start_import() {
                Ok(blocks) => {
                    self.accepted = tip;
                    self.actions.push_back(Action::Import { batch: id, blocks });
                }
                Err(e) => return super::bug(e),
            }
        }
    }

    /// A verified batch does not extend what we accepted.
    fn on_link_failure(&mut self, batch: BatchId, start: u64, server: PeerId, now: Instant) {
        if self.accepted == self.stored {
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
        result: Result<BlockRef, StoreFailure>,
        now: Instant,
    ) {
        // Any import that worked ends a disk-full pause, the batch's or
        // not: imports queued at the store worker behind one that failed
        // land after sync restarted and dropped their batches, and if
        // those were the first to work, nothing else would say the space
        // is back (the node held the network's tip and still said "disk
        // full").
        if let Ok(tip) = &result {
            if let Some(d) = self.disk_full.take() {
                tracing::info!(
                    height = tip.height,
                    paused_s = now.saturating_duration_since(d.since).as_secs(),
                    "disk space is back: imports work again, sync resumes"
                );
            }
        }
        let Some((&start, b)) = self.batches.iter().find(|(_, b)| b.id() == batch) else {
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
            Err(StoreFailure::DiskFull(error)) => {
                self.on_disk_full(error, now);
                self.drop_work(false);
            }
            Err(e) => {
                tracing::error!(error = %e, "import failed; restarting sync from the stored tip");
                self.drop_work(false);
            }
        }
    }
}

impl SyncEngine {
    /// An import failed for lack of disk space: nothing of it is stored.
    /// Downloads pause for `disk_full_retry`, doubling per failed retry up
    /// to `disk_full_retry_max`; the log says so once, then at most once a
    /// minute (the retries themselves are quiet).
    fn on_disk_full(&mut self, error: String, now: Instant) {
        const LOG_EVERY: Duration = Duration::from_secs(60);
        let first = self.config.disk_full_retry;
        match &mut self.disk_full {
            None => {
                tracing::error!(height = self.stored.height, %error,
                    "disk full: downloads paused; importing is retried with backoff and sync resumes by itself once there is space");
                self.disk_full = Some(super::DiskFull {
                    since: now,
                    error,
                    backoff: first,
                    retry_at: now + first,
                    last_log: now,
                });
            }
            Some(d) => {
                d.backoff = (d.backoff * 2).min(self.config.disk_full_retry_max.max(first));
                d.retry_at = now + d.backoff;
                d.error = error;
                if now >= d.last_log + LOG_EVERY {
                    d.last_log = now;
                    tracing::warn!(height = self.stored.height, error = %d.error,
                        full_for_s = now.saturating_duration_since(d.since).as_secs(),
                        retry_in_s = d.backoff.as_secs(), "disk still full: downloads paused");
                }
            }
        }
    }
}
