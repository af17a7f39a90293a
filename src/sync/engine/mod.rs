//! The sync engine: one pure state machine composed of the peer book, the
//! target choice, the batch scheduler, the verifier and the ancestor search.
//!
//! Inputs are events with the current time (`handle_*`); outputs are
//! [`Action`]s (`poll_action`) and the next instant it wants to be woken at
//! (`poll_timeout`). It never performs I/O, never reads a clock and never
//! spawns anything: the driver ([`crate::sync::driver`]) or a test harness
//! carries out its actions and feeds back their results. It reads the local
//! chain through [`LocalChain`] (a synchronous lookup) and never writes it:
//! writes are `Import` and `Rollback` actions.
//!
//! Its parts: [`checks`] (genesis, heights, checkpoints, batch votes),
//! [`schedule`] (batches to the best peers, hedges, retries), [`import`]
//! (downloaded blocks to the store, in order), [`forks`] (chain polls, fork
//! judgments, splits, the fork search and rollback), [`requests`] (sending,
//! timeouts, penalties), [`status`], and [`shared`] (our chain as the
//! engine reads it, the target, the seeded random source).

mod checks;
mod forks;
mod head_wait;
mod import;
mod requests;
mod schedule;
mod shared;
mod status;
mod types;

pub use types::{
    Action, Failure, LocalChain, Mode, Request, Response, Stats, StoreFailure, SyncStatus,
};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::chain::{BlockRef, Hash, ValidationError};
use crate::sync::batch::{Batch, BatchId, BatchState, ReqId};
use crate::sync::config::SyncConfig;
use crate::sync::fork_choice::ChainPoll;
use crate::sync::peer_book::PeerBook;
use crate::sync::reorg::AncestorSearch;
use crate::sync::target::Targets;
use crate::sync::verifier::Vote;
use shared::bug;

/// What an outstanding request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Genesis,
    Height,
    Download {
        batch: BatchId,
        start: u64,
    },
    /// A vote on a downloaded batch's last hash.
    Vote {
        batch: BatchId,
    },
    /// A step of the fork-point search.
    Probe {
        height: u64,
    },
    /// A chain poll: does the peer hold our block at `height`?
    Poll {
        height: u64,
    },
    /// Does the peer hold the checkpoint at `height`?
    Checkpoint {
        height: u64,
    },
    /// A peer judged to be on another fork announced a new tip: is it back on ours?
    Recheck {
        height: u64,
    },
}

/// Where a split was found: in a batch vote (above our chain) or in a poll
/// about a block we hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplitOrigin {
    Batch,
    Chain,
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    peer: PeerId,
    purpose: Purpose,
    sent: Instant,
    deadline: Instant,
}

/// The engine. See the module docs.
pub struct SyncEngine {
    config: SyncConfig,
    genesis: Hash,
    /// The genesis slot length: a batch's first block must be in a later
    /// slot than the block it extends.
    slot_ms: u64,
    local: Box<dyn LocalChain>,
    book: PeerBook,
    /// Ordered by id (= send order), so expiries are handled reproducibly.
    requests: BTreeMap<ReqId, Outstanding>,
    next_req: ReqId,
    /// Keyed by start height; never overlapping.
    batches: BTreeMap<u64, Batch>,
    next_batch: BatchId,
    votes: HashMap<BatchId, Vote>,
    /// The chain poll in progress (one at a time).
    poll: Option<ChainPoll>,
    /// The height of the next poll wanted, and not before when (polls that
    /// would move us wait for the peer set to settle).
    poll_wanted: Option<u64>,
    poll_not_before: Option<Instant>,
    /// While split: where the split was found, when to look again, and how
    /// many unchanged looks so far (drives the backoff).
    split_origin: Option<SplitOrigin>,
    split_until: Option<Instant>,
    split_rounds: u32,
    /// Set by a reset out of a halt: the operator allows the next fork search
    /// to roll back past `max_reorg_depth`, once.
    allow_deep_reorg: bool,
    /// When the engine started: no rollback before `rollback_settle` after it.
    started: Instant,
    /// What the store has confirmed.
    stored: BlockRef,
    /// The end of the last batch handed to the store (>= stored).
    accepted: BlockRef,
    /// Highest height covered by a batch (>= accepted.height).
    scheduled_to: u64,
    /// Highest height whose block another peer vouched for in a vote (what
    /// was stored before start counts as vouched). Blocks above it were
    /// taken on one peer's word while no one else could vote, so rolling
    /// them back does not count against `max_reorg_depth`.
    confirmed: u64,
    targets: Option<Targets>,
    mode: Mode,
    search: Option<AncestorSearch>,
    /// Peers that held our block when a 2/3 majority told us to leave it:
    /// judged on another fork once the rollback is done.
    abandoning: Vec<PeerId>,
    actions: VecDeque<Action>,
    next_status: Instant,
    next_consistency: Instant,
    last_progress: Instant,
    last_stall_warning: Option<Instant>,
    /// Set while imports fail for lack of disk space (see `on_imported`).
    disk_full: Option<DiskFull>,
    /// Observed average encoded block size, to size batches in bytes.
    avg_block_bytes: f64,
    /// Observed average duration of a block request, to time hedges.
    avg_download: Option<Duration>,
    /// Logged once per shortage, not per batch.
    warned_small_quorum: bool,
    rng: u64,
    stats: Stats,
    /// The in-order import's current wait on its next batch (accounting).
    head_wait: Option<head_wait::HeadWait>,
    /// The latest `now` any input carried (inputs never go back in time).
    clock: Instant,
}

impl SyncEngine {
    pub fn new(
        config: SyncConfig,
        genesis: Hash,
        slot_ms: u64,
        local: Box<dyn LocalChain>,
        now: Instant,
    ) -> Self {
        let tip = local.tip();
        let rng = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        // Scores outlive a disconnect at least as long as a ban would.
        let retention = config.ban_duration;
        let mut engine = SyncEngine {
            next_status: now + config.status_interval,
            next_consistency: now + config.consistency_interval,
            config,
            genesis,
            slot_ms,
            local,
            book: PeerBook::with_retention(retention),
            requests: BTreeMap::new(),
            next_req: 1,
            batches: BTreeMap::new(),
            next_batch: 1,
            votes: HashMap::new(),
            poll: None,
            poll_wanted: None,
            poll_not_before: None,
            split_origin: None,
            split_until: None,
            split_rounds: 0,
            allow_deep_reorg: false,
            started: now,
            stored: tip,
            accepted: tip,
            scheduled_to: tip.height,
            confirmed: tip.height,
            targets: None,
            mode: Mode::Normal,
            search: None,
            abandoning: Vec::new(),
            actions: VecDeque::new(),
            last_progress: now,
            last_stall_warning: None,
            disk_full: None,
            avg_block_bytes: 512.0,
            avg_download: None,
            warned_small_quorum: false,
            rng,
            stats: Stats::default(),
            head_wait: None,
            clock: now,
        };
        engine.enforce_checkpoints_on_store();
        engine
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub fn peer_book(&self) -> &PeerBook {
        &self.book
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The batches in flight, in height order (for tests and status).
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.values()
    }

    /// Next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ----- inputs -----

    /// A connection to `peer` opened: ask which network it is on.
    pub fn handle_peer_connected(&mut self, peer: PeerId, now: Instant) {
        self.clock = self.clock.max(now);
        if !self.book.connected(peer, now) {
            // Banned: the driver refuses it too; make sure it goes.
            if let Some((until, reason)) = self.book.ban_of(&peer) {
                self.actions.push_back(Action::Ban {
                    peer,
                    duration: until.saturating_duration_since(now),
                    reason,
                });
            }
            return;
        }
        self.stats.first_peer_connected_at.get_or_insert(now);
        self.send(peer, Request::Genesis, Purpose::Genesis, now);
    }

    /// `peer` disconnected: its requests fail over to other peers at once.
    pub fn handle_peer_disconnected(&mut self, peer: PeerId, now: Instant) {
        self.clock = self.clock.max(now);
        if let Some(p) = self.book.get_mut(&peer) {
            p.connected = false;
        }
        self.fail_requests_of(&peer, now);
        if self.book.disconnected(&peer, now).is_some() {
            self.balance_changed("a peer left", now);
        }
        self.schedule(now);
    }

    /// `peer` pushed a new tip: treat it as a height report and react now.
    pub fn handle_tip_announced(&mut self, peer: PeerId, height: u64, tip: Hash, now: Instant) {
        self.clock = self.clock.max(now);
        if self.book.get(&peer).is_some_and(|p| p.usable()) {
            self.book.set_height(&peer, height, tip, now);
            self.note_peer_height(height, now);
            self.check_checkpoints(peer, now);
            self.check_claims(now);
            self.schedule(now);
        }
    }

    /// The answer (or failure) of a request the engine asked for.
    pub fn handle_response(&mut self, id: ReqId, result: Result<Response, Failure>, now: Instant) {
        self.clock = self.clock.max(now);
        let Some(out) = self.requests.remove(&id) else {
            return; // Late answer to a request already given up on.
        };
        self.release(&out);
        match result {
            Err(f) => self.on_failure(out, f, now),
            Ok(resp) => self.on_response(out, resp, now),
        }
        self.schedule(now);
    }

    /// The result of an [`Action::Validate`].
    pub fn handle_validated(
        &mut self,
        batch: BatchId,
        result: Result<(), ValidationError>,
        now: Instant,
    ) {
        self.clock = self.clock.max(now);
        self.on_validated(batch, result, now);
        self.schedule(now);
    }

    /// The result of an [`Action::Import`] (in the order they were emitted).
    pub fn handle_imported(
        &mut self,
        batch: BatchId,
        result: Result<BlockRef, StoreFailure>,
        now: Instant,
    ) {
        self.clock = self.clock.max(now);
        self.on_imported(batch, result, now);
        self.schedule(now);
    }

    /// The result of an [`Action::Rollback`].
    pub fn handle_rolled_back(&mut self, result: Result<BlockRef, StoreFailure>, now: Instant) {
        self.clock = self.clock.max(now);
        self.on_rolled_back(result, now);
        self.schedule(now);
    }

    /// The local chain changed outside the engine (a block produced here).
    pub fn handle_local_tip(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if self.batches.is_empty() {
            self.resync_from_store();
        }
        self.schedule(now);
    }

    /// Time passed: expire requests, hedge slow ones, retry, refresh heights.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        let expired: Vec<ReqId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(out) = self.requests.remove(&id) {
                self.release(&out);
                self.on_failure(out, Failure::Timeout, now);
            }
        }
        self.book.expire_bans(now);
        if now >= self.next_status {
            self.next_status = now + self.config.status_interval;
            self.refresh_heights(now);
        } else {
            self.refresh_stale_heights(now);
        }
        if now >= self.next_consistency {
            self.next_consistency = now + self.config.consistency_interval;
            self.check_consistency(now);
        }
        self.expire_votes(now);
        self.expire_poll(now);
        if self.split_until.is_some_and(|t| t <= now) {
            self.leave_split("time to look again", now);
        }
        self.hedge(now);
        self.check_stall(now);
        self.schedule(now);
    }

    /// Manual sync (the sketch's `manual_sync`): refresh every peer's height
    /// now and schedule whatever is missing.
    pub fn sync_now(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.refresh_heights(now);
        self.balance_changed("manual sync", now);
        self.schedule(now);
    }

    /// Drops every batch, vote, poll and search and starts over from the
    /// stored tip, then asks the peers about our tip again. Peers and bans
    /// are kept. Out of a halt, this is the operator's word that the majority
    /// may be followed: the next fork search may roll back past
    /// `max_reorg_depth`, once.
    pub fn reset(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        let halted = matches!(self.mode, Mode::Halted(_));
        tracing::info!(
            batches = self.batches.len(),
            halted,
            "sync reset: dropping in-flight work"
        );
        if halted {
            tracing::warn!(
                "reset out of a halt: the next fork search may roll back past max_reorg_depth"
            );
        }
        self.allow_deep_reorg = halted;
        // Batches the store is writing stay: their results are still to come.
        self.drop_work(true);
        self.search = None;
        self.poll = None;
        self.poll_not_before = None;
        self.split_origin = None;
        self.split_until = None;
        self.split_rounds = 0;
        self.mode = Mode::Normal;
        self.requests
            .retain(|_, r| matches!(r.purpose, Purpose::Genesis | Purpose::Height));
        for p in self.book.iter().map(|(p, _)| *p).collect::<Vec<_>>() {
            if let Some(info) = self.book.get_mut(&p) {
                info.in_flight = 0;
            }
        }
        self.last_progress = now;
        self.last_stall_warning = None;
        self.book.recheck_tips(self.stored.height);
        if self.stored.height > 0 {
            self.request_poll(self.stored.height, now);
        }
        self.schedule(now);
    }

    /// The highest height covered by a batch, or the accepted tip.
    fn last_planned(&self) -> u64 {
        self.batches
            .values()
            .next_back()
            .map_or(self.accepted.height, |b| b.end())
            .max(self.accepted.height)
    }

    /// Whether downloads wait for disk space (until the next retry).
    pub(super) fn paused_for_disk(&self, now: Instant) -> bool {
        self.disk_full.as_ref().is_some_and(|d| now < d.retry_at)
    }

    /// Drops every batch (but, with `keep_importing`, those the store is
    /// writing: their results are still to come) and every batch vote.
    fn drop_work(&mut self, keep_importing: bool) {
        self.batches
            .retain(|_, b| keep_importing && matches!(b.state(), BatchState::Importing { .. }));
        self.votes.clear();
        self.scheduled_to = self.last_planned();
        // Nothing left in the store's queue: what it holds is where we are.
        if self.batches.is_empty() {
            self.resync_from_store();
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fork_tests;

#[cfg(test)]
mod peer_tests;

#[cfg(test)]
mod route_tests;

#[cfg(test)]
mod read_error_tests;

/// The disk-full state: since when, the error, and when to try again.
#[derive(Debug, Clone)]
pub(super) struct DiskFull {
    pub since: Instant,
    pub error: String,
    pub backoff: Duration,
    pub retry_at: Instant,
    pub last_log: Instant,
}
