//! The fetch scheduler: cutting the span to the target into batches,
//! assigning them to the best peers, hedging slow requests and retrying
//! failures elsewhere. What happens to the blocks once they arrive is in
//! [`super::import`].

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{Failure, Outstanding, Purpose, Request, SyncEngine};
use crate::sync::batch::{Batch, BatchId, BatchState};
use crate::sync::peer_book::Penalty;

/// Ordering key of a candidate peer: holds the whole batch, in good
/// standing, minus its expected completion time in µs, random tie-break
/// (higher is better in every field).
type PeerRank = (bool, bool, i64, u64);

impl SyncEngine {
    /// Plans batches up to the target and sends whatever can be sent now,
    /// then notes whether the in-order import is left waiting (accounting).
    pub(super) fn schedule(&mut self, now: Instant) {
        self.schedule_work(now);
        self.track_head(now);
    }

    fn schedule_work(&mut self, now: Instant) {
        self.recompute_targets(now);
        if !self.may_extend() || self.paused_for_disk(now) {
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
            let idle = matches!(b.state(), BatchState::AwaitingDownload { .. });
            if start > goal && idle {
                self.batches.remove(&start);
            } else {
                break;
            }
        }
        self.scheduled_to = self.last_planned();
    }

    /// Cuts new batches while the lookahead window (count and bytes) allows.
    fn plan(&mut self, goal: u64) {
        let per_batch = self.per_batch();
        let max_batches = self.config.max_batches_in_flight * 2;
        while self.scheduled_to < goal
            && self.batches.len() < max_batches
            && self.buffered_bytes() < self.config.max_buffered_bytes
        {
            let start = self.scheduled_to + 1;
            let end = goal.min(start + per_batch - 1);
            self.insert_batch(start, end);
            self.scheduled_to = end;
        }
    }

    /// Blocks per batch: what fits one response at the measured block size.
    fn per_batch(&self) -> u64 {
        ((self.config.batch_bytes as f64 / self.avg_block_bytes) as u64)
            .clamp(1, u64::from(self.config.batch_blocks))
    }

    /// Where a waiting batch about to be sent should end: one response at
    /// the block size now measured. A longer batch is otherwise fetched one
    /// response at a time, each request sent only once the answer before it
    /// is in (a 2,048-block batch of 64 KiB blocks is 32 responses), while
    /// the batches above it fill the lookahead window and the in-order import
    /// waits on it — and the first batches are cut before any block size is
    /// known, so every large-block sync started that way. A batch that
    /// failed somewhere keeps its shape (its record of who failed it).
    fn cut_end(&self, b: &Batch) -> u64 {
        if !b.failed().is_empty() || b.len() <= self.per_batch() {
            return b.end();
        }
        b.start() + self.per_batch() - 1
    }

    /// Cuts the waiting batch at `start` to end at `end`, the rest becoming a
    /// waiting batch of its own that other peers can fetch at once.
    fn cut_at(&mut self, start: u64, end: u64) {
        let Some(b) = self.batches.get(&start) else {
            return;
        };
        if end >= b.end() {
            return;
        }
        let rest_end = b.end();
        self.batches.remove(&start);
        self.insert_batch(start, end);
        self.insert_batch(end + 1, rest_end);
    }

    /// A new batch `start..=end` with a fresh id.
    pub(super) fn insert_batch(&mut self, start: u64, end: u64) {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(start, Batch::new(id, start, end));
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
        match b.state() {
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
            .filter(|b| matches!(b.state(), BatchState::Downloading { .. }))
            .count();
        // Batches not yet downloaded count at their estimate; a waiting batch
        // is sent only if the window, counting it as in flight, still fits —
        // except the lowest batch not yet downloaded: everything held waits
        // for it, so holding it back would stall the window for good.
        let mut buffered: u64 = self
            .batches
            .values()
            .filter(|b| !matches!(b.state(), BatchState::AwaitingDownload { .. }))
            .map(|b| self.expected_bytes(b))
            .sum();
        let lowest_missing = self
            .batches
            .values()
            .find(|b| {
                matches!(
                    b.state(),
                    BatchState::AwaitingDownload { .. } | BatchState::Downloading { .. }
                )
            })
            .map(Batch::start);
        // By key from a cursor rather than over a list taken up front: a
        // batch cut down to one response leaves its rest just above it.
        let mut cursor = Some(0u64);
        while let Some(start) = cursor.and_then(|c| self.batches.range(c..).next().map(|(k, _)| *k))
        {
            cursor = start.checked_add(1);
            if downloading >= self.config.max_batches_in_flight {
                break;
            }
            let Some(b) = self.batches.get(&start) else {
                continue;
            };
            let BatchState::AwaitingDownload { not_before } = *b.state() else {
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
            let (end, failed) = (self.cut_end(b), b.failed().clone());
            let Some(peer) = self.pick_peer(start, end, &failed, None) else {
                // Everyone who could serve it failed it: start a new round
                // after a backoff rather than giving up on the batch.
                if self.pick_peer(start, end, &HashSet::new(), None).is_some() {
                    let base = self.config.retry_backoff;
                    if let Some(b) = self.batches.get_mut(&start) {
                        match b.new_round(base, now) {
                            Ok(backoff) => tracing::debug!(
                                start,
                                end,
                                ?backoff,
                                "every peer failed batch; backing off"
                            ),
                            Err(e) => super::bug(e),
                        }
                    }
                }
                continue;
            };
            if self.faster_when_free(start, end, peer) {
                break;
            }
            self.cut_at(start, end);
            self.request_batch(start, peer, now);
            // Extra copies only when configured: the vote, not duplicate
            // downloads, is what makes a batch trustworthy.
            let mut asked = failed;
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

    /// The best peer to fetch `start..=end` from: one that holds the start
    /// of our chain, preferring one that holds it all, then one in good
    /// standing, then the one expected to deliver it soonest (its queue of
    /// requests and this batch at its measured throughput, plus its
    /// latency). Speed, not score, decides among good peers: ranking by
    /// score let the first peer to answer take most batches, and gave a
    /// slow peer as much as a fast one.
    pub(super) fn pick_peer(
        &mut self,
        start: u64,
        end: u64,
        exclude: &HashSet<PeerId>,
        also_exclude: Option<PeerId>,
    ) -> Option<PeerId> {
        self.rank_peers(start, end, exclude, also_exclude, false)
            .map(|(p, _)| p)
    }

    /// Whether a peer that has no room for another request now (all its
    /// `max_requests_per_peer` in flight) is still expected to deliver
    /// `start..=end` sooner than `chosen` would: then the batch waits for
    /// it. This is what gives a slow peer fewer batches rather than every
    /// batch the fast ones have no room for — each of which would hold the
    /// in-order import back until it arrived.
    fn faster_when_free(&mut self, start: u64, end: u64, chosen: PeerId) -> bool {
        let exclude = HashSet::new();
        let fastest = self.fastest_throughput();
        let Some(chosen_eta) = self.eta(start, end, &chosen, fastest) else {
            return false;
        };
        self.rank_peers(start, end, &exclude, Some(chosen), true)
            .is_some_and(|(_, eta)| eta < chosen_eta)
    }

    /// When `peer` is expected to have delivered `start..=end`, in seconds
    /// from now: its latency plus its queue and this batch at its measured
    /// throughput. A peer not measured yet is expected to be as fast as the
    /// fastest one measured, so that every peer gets tried.
    fn eta(&self, start: u64, end: u64, peer: &PeerId, fastest: Option<f64>) -> Option<f64> {
        let info = self.book.get(peer)?;
        let bytes = ((end - start + 1) as f64 * self.avg_block_bytes)
            .min(self.config.batch_bytes.max(self.avg_block_bytes as u64) as f64);
        let latency = info.latency.map_or(0.1, |l| l.as_secs_f64());
        Some(match info.throughput().or(fastest) {
            Some(t) => latency + f64::from(info.in_flight + 1) * bytes / t.max(1.0),
            // Nothing measured yet: spread by load, then latency.
            None => f64::from(info.in_flight) * 10.0 + latency,
        })
    }

    fn fastest_throughput(&self) -> Option<f64> {
        self.book
            .usable()
            .filter_map(|(_, p)| p.throughput())
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
    }

    /// The best candidate for `start..=end` and its expected delivery time.
    /// `busy_only` ranks only the peers with no room for another request.
    fn rank_peers(
        &mut self,
        start: u64,
        end: u64,
        exclude: &HashSet<PeerId>,
        also_exclude: Option<PeerId>,
        busy_only: bool,
    ) -> Option<(PeerId, f64)> {
        let max = self.config.max_requests_per_peer;
        let candidates: Vec<(PeerId, bool, bool)> = self
            .book
            .usable()
            .filter(|(p, info)| {
                (info.in_flight < max) != busy_only
                    && info.height_on_our_chain().is_some_and(|h| h >= start)
                    && !exclude.contains(p)
                    && Some(**p) != also_exclude
            })
            .map(|(p, info)| {
                (
                    *p,
                    info.height_on_our_chain().unwrap_or(0) >= end,
                    info.score >= 0,
                )
            })
            .collect();
        let fastest = self.fastest_throughput();
        let mut best: Option<(PeerId, PeerRank, f64)> = None;
        for (p, full, good) in candidates {
            let Some(eta) = self.eta(start, end, &p, fastest) else {
                continue;
            };
            let tie = self.random();
            // Higher is better in every field; the expected time in µs is
            // negated.
            let key = (full, good, -((eta * 1e6) as i64), tie);
            if best.as_ref().is_none_or(|(_, k, _)| key > *k) {
                best = Some((p, key, eta));
            }
        }
        best.map(|(p, _, eta)| (p, eta))
    }

    fn request_batch(&mut self, start: u64, peer: PeerId, now: Instant) {
        let Some(b) = self.batches.get(&start) else {
            return;
        };
        let (id, count) = (b.id(), b.len().min(u64::from(u32::MAX)) as u32);
        let req = self.send(
            peer,
            Request::Blocks { start, count },
            Purpose::Download { batch: id, start },
            now,
        );
        if let Some(b) = self.batches.get_mut(&start) {
            if let Err(e) = b.send(req, peer, now) {
                super::bug(e);
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
        let slow: Vec<(u64, u64, PeerId, HashSet<PeerId>)> = self
            .batches
            .values()
            .filter_map(|b| match b.state() {
                BatchState::Downloading {
                    live,
                    hedged: false,
                } => live
                    .first()
                    .filter(|l| l.sent + delay <= now)
                    .map(|l| (b.start(), b.end(), l.peer, b.failed().clone())),
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
                if let Err(e) = b.stop_hedging() {
                    super::bug(e);
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
        tracing::debug!(start, peer = %out.peer, ?failure, "batch request failed");
        self.fail_attempt(batch, start, out.peer, failure_name(failure));
    }

    /// `peer`'s attempt at a batch is void (it failed, or its answer was
    /// unusable): fetch the batch again elsewhere, unless a hedge may still
    /// deliver. A batch no longer downloading was served by a hedge already.
    pub(super) fn fail_attempt(
        &mut self,
        batch: BatchId,
        start: u64,
        peer: PeerId,
        why: &'static str,
    ) {
        let Some(b) = self.batches.get_mut(&start).filter(|b| b.id() == batch) else {
            return;
        };
        if !matches!(b.state(), BatchState::Downloading { .. }) {
            return;
        }
        match b.request_failed(&peer, why) {
            Ok(true) => self.stats.retries += 1,
            Ok(false) => {}
            Err(e) => super::bug(e),
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
