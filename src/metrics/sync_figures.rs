//! What the sync side reports ([`SyncFigures`], [`SyncCounters`]) and how
//! [`Metrics::observe_sync`] mirrors it into the gauges and counters.
//!
//! Plain numbers and names only: it must not see the sync engine's types
//! (the driver converts them) nor register metrics (the parent does).

use super::*;

/// What the sync side reports, as plain numbers and names: this module
/// does not know the sync engine's types (the driver fills this in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncFigures {
    pub height: u64,
    pub target: Option<u64>,
    pub best: Option<u64>,
    pub syncing: bool,
    pub pending_blocks: u64,
    pub batches_in_flight: u64,
    /// Peers by state (`verified`, `checking`, `wrong_genesis`, `banned`).
    pub peers: Vec<(&'static str, u64)>,
    pub fork_peers: u64,
    /// Imports fail for lack of disk space (downloads paused).
    pub disk_full: bool,
    /// Every mode's name, and whether it is the current one.
    pub modes: Vec<(&'static str, bool)>,
    pub counters: SyncCounters,
    /// Votes by outcome (`won`, `lost`, `inconclusive`).
    pub votes: Vec<(&'static str, u64)>,
    pub requests_sent: Vec<(&'static str, u64)>,
    pub penalties: Vec<(&'static str, u64)>,
    pub bans: Vec<(&'static str, u64)>,
}

/// The cumulative sync counters mirrored by `concord_*_total`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    pub blocks_imported: u64,
    pub bytes_imported: u64,
    pub bytes_downloaded: u64,
    pub retries: u64,
    pub hedges: u64,
    pub reorgs: u64,
    pub splits: u64,
    pub halts: u64,
    pub polls: u64,
    pub fork_judgments: u64,
    pub checkpoint_rejections: u64,
    pub future_blocks: u64,
    pub store_read_errors: u64,
}

impl Metrics {
    /// Mirrors the sync side's figures. Call from one task only (the sync
    /// driver): counters advance to the cumulative values given.
    pub fn observe_sync(&self, f: &SyncFigures) {
        set(&self.height, f.height);
        set(&self.target, f.target.unwrap_or(0));
        set(&self.best, f.best.unwrap_or(0));
        set(&self.syncing, u64::from(f.syncing));
        set(&self.disk_full, u64::from(f.disk_full));
        set(&self.pending_blocks, f.pending_blocks);
        set(&self.batches_in_flight, f.batches_in_flight);
        for (state, n) in &f.peers {
            set(&self.peers.get_or_create(&vec![("state", *state)]), *n);
        }
        set(&self.fork_peers, f.fork_peers);
        for (name, current) in &f.modes {
            set(
                &self.mode.get_or_create(&vec![("mode", *name)]),
                u64::from(*current),
            );
        }
        let c = &f.counters;
        advance(&self.blocks_imported, c.blocks_imported);
        advance(&self.bytes_imported, c.bytes_imported);
        advance(&self.bytes_downloaded, c.bytes_downloaded);
        advance(&self.retries, c.retries);
        advance(&self.hedges, c.hedges);
        advance(&self.reorgs, c.reorgs);
        advance(&self.splits, c.splits);
        advance(&self.halts, c.halts);
        advance(&self.polls, c.polls);
        advance(&self.fork_judgments, c.fork_judgments);
        advance(&self.checkpoint_rejections, c.checkpoint_rejections);
        advance(&self.future_blocks, c.future_blocks);
        advance(&self.store_read_errors, c.store_read_errors);
        for (outcome, n) in &f.votes {
            advance(&self.votes.get_or_create(&vec![("outcome", *outcome)]), *n);
        }
        for (kind, n) in &f.requests_sent {
            advance(
                &self.requests_sent.get_or_create(&vec![("kind", *kind)]),
                *n,
            );
        }
        for (reason, n) in &f.penalties {
            advance(
                &self.penalties.get_or_create(&vec![("reason", *reason)]),
                *n,
            );
        }
        for (reason, n) in &f.bans {
            advance(&self.bans.get_or_create(&vec![("reason", *reason)]), *n);
        }
    }
}
