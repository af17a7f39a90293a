//! What the engine reports about itself: status, the pending-block count,
//! why it is stalled, when it next wants to be woken, and how it rates each
//! connected peer.

use std::time::Instant;

use libp2p::PeerId;

use super::{Mode, SyncEngine, SyncStatus};
use crate::sync::batch::{Batch, BatchState};
use crate::sync::peer_book::GenesisVerdict;

impl SyncEngine {
    /// Each connected peer's score, and whether it holds the chain the
    /// majority vouches for (our genesis, its reported tip checked against
    /// our chain, no vote or served block showing it on another fork). The
    /// driver passes this on to the network's inbound eviction.
    pub fn peer_standings(&self) -> Vec<(PeerId, i32, bool)> {
        self.book
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(peer, p)| {
                let with_majority = p.genesis == GenesisVerdict::Verified
                    && p.tip_checked
                    && p.forked_at.is_none()
                    && p.score >= 0;
                (*peer, p.score, with_majority)
            })
            .collect()
    }

    /// Whether sync is behind the safe target (the sketch's `is_syncing`).
    pub fn is_syncing(&self) -> bool {
        self.targets.is_some_and(|t| self.stored.height < t.safe) || !self.batches.is_empty()
    }

    /// Blocks planned but not yet in the store (the sketch's pending-block count).
    pub fn pending_blocks(&self) -> u64 {
        self.batches
            .values()
            .filter(|b| !matches!(b.state(), BatchState::Importing { .. }))
            .map(Batch::len)
            .sum()
    }

    /// Why this node must not extend its chain now, or `None` when it may:
    /// it is synced to the safe target and its peers agree with its tip. A
    /// block producer asks before each of its slots, so that an authority
    /// that restarted on a stale tip, is still importing, or sits on a
    /// minority fork does not build on it (it would only make a fork).
    ///
    /// "No peers" is a blocker like any other; whether a lone node may
    /// produce anyway (a one-node network) is the producer's decision.
    pub fn production_blocker(&self) -> Option<String> {
        if self.mode != Mode::Normal {
            return Some(format!("sync mode is {}", self.mode.name()));
        }
        let usable = self.book.usable().count();
        if usable == 0 {
            return Some("no peers".into());
        }
        // A peer reporting in may hold a longer chain, so production waits
        // for it — but only as long as its answers could take: a peer that
        // never answers must not stop production for good.
        let patience = self.config.verify_grace + self.config.small_request_timeout * 2;
        if let Some((id, _)) = self
            .book
            .iter()
            .find(|(_, p)| p.reporting() && self.clock < p.connected_at + patience)
        {
            return Some(format!("peer {id} is still reporting in"));
        }
        match self.targets {
            None => return Some("no peer has reported a height yet".into()),
            Some(t) if self.stored.height < t.safe => {
                return Some(format!(
                    "syncing: #{} of safe target #{}",
                    self.stored.height, t.safe
                ))
            }
            Some(_) => {}
        }
        if !self.batches.is_empty() {
            return Some(format!("{} blocks still to import", self.pending_blocks()));
        }
        if self.poll.is_some() || self.poll_wanted.is_some() {
            return Some("checking our tip with the peers".into());
        }
        let forked = self
            .book
            .usable()
            .filter(|(_, p)| p.forked_at.is_some_and(|h| h <= self.stored.height))
            .count();
        if 2 * forked >= usable {
            return Some(format!(
                "{forked} of {usable} peers hold another block at or below our tip"
            ));
        }
        None
    }

    pub fn status(&self, now: Instant) -> SyncStatus {
        SyncStatus {
            height: self.stored.height,
            tip: self.stored.hash,
            target: self.targets.map(|t| t.safe),
            best: self.targets.map(|t| t.best),
            syncing: self.is_syncing(),
            pending_blocks: self.pending_blocks(),
            peers: self.book.usable().count(),
            batches_in_flight: self
                .batches
                .values()
                .filter(|b| matches!(b.state(), BatchState::Downloading { .. }))
                .count(),
            mode: self.mode.clone(),
            stalled: self.stall_reason(now),
            disk_full: self.disk_full.is_some(),
            production_blocker: self.production_blocker(),
        }
    }

    /// The earliest instant at which `handle_timeout` has something to do.
    /// Only instants after the latest input count: a deadline already passed
    /// has been acted on (or waits for an event, not for time), and
    /// returning it would make the driver spin.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hedge_delay = self.hedge_delay();
        let batches = self.batches.values().filter_map(|b| match b.state() {
            BatchState::AwaitingDownload { not_before } => *not_before,
            BatchState::Downloading {
                live,
                hedged: false,
            } => live.first().map(|l| l.sent + hedge_delay),
            _ => None,
        });
        let stall =
            (self.is_syncing() || self.mode != Mode::Normal || self.book.usable().next().is_none())
                .then(|| self.next_stall_check());
        let grace_ends = self
            .book
            .iter()
            .filter(|(_, p)| p.reporting())
            .map(|(_, p)| p.connected_at + self.config.verify_grace);
        // A lapsing height changes the target (and is asked again).
        let lapses = self
            .book
            .usable()
            .filter_map(|(_, p)| p.height_updated)
            .map(|t| t + self.config.status_ttl);
        [self.next_status, self.next_consistency]
            .into_iter()
            .chain(self.requests.values().map(|r| r.deadline))
            .chain(batches)
            .chain(stall)
            .chain(grace_ends)
            .chain(lapses)
            .chain(self.votes.values().map(|v| v.deadline))
            .chain(self.poll.as_ref().map(|p| p.deadline))
            .chain(self.poll_not_before)
            .chain(self.split_until)
            .chain(self.book.next_ban_expiry())
            .chain(self.disk_full.as_ref().map(|d| d.retry_at))
            .filter(|t| *t > self.clock)
            .min()
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
        if let Some(d) = &self.disk_full {
            return Some(format!(
                "disk full since {} s ago ({}): downloads paused, next import attempt in {} s",
                now.saturating_duration_since(d.since).as_secs(),
                d.error,
                d.retry_at.saturating_duration_since(now).as_secs()
            ));
        }
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
        // A node that never had a peer gets `stall_timeout` to find one.
        let had_peers = self.stats.first_peer_connected_at.is_some()
            || !self.batches.is_empty()
            || now >= self.started + self.config.stall_timeout;
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
                b.start(),
                b.end(),
                b.state_name(),
                b.history().len(),
                usable
            ),
        })
    }
}
