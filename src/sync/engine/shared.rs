//! Small pieces every part of the engine uses: our own chain as the engine
//! reads it (a read error is counted and stops the decision that needed it,
//! never taken for a missing block), the sync target from the peers'
//! heights, the seeded random source, and what a wrong batch transition
//! does. Engine state only: no I/O, no clock.

use std::time::Instant;

use super::SyncEngine;
use crate::chain::Hash;
use crate::sync::batch::WrongState;
use crate::sync::peer_book::GenesisVerdict;
use crate::sync::target;

impl SyncEngine {
    pub(super) fn resync_from_store(&mut self) {
        let tip = self.local.tip();
        self.stored = tip;
        self.accepted = tip;
        self.scheduled_to = tip.height;
    }

    /// Targets from the heights peers hold of *our* chain: a peer known to be
    /// on another fork counts only below its fork point, so a longer fork
    /// next to us is not something to sync to; and a report older than
    /// `status_ttl` does not count (the peer may have fallen behind or gone
    /// quiet; it is asked again).
    pub(super) fn recompute_targets(&mut self, now: Instant) {
        let ttl = self.config.status_ttl;
        self.targets = target::compute(
            self.book
                .usable()
                .filter(|(_, p)| p.status_fresh(now, ttl))
                .filter_map(|(_, p)| p.height_on_our_chain()),
        );
    }

    pub(super) fn verified_count(&self) -> usize {
        self.book
            .iter()
            .filter(|(_, p)| p.genesis == GenesisVerdict::Verified)
            .count()
    }

    /// Our hash at `height`; a read error is logged and stops the decision
    /// that needed it (`Err(())`), never taken for a missing block.
    pub(super) fn our_hash(&mut self, height: u64) -> Result<Option<Hash>, ()> {
        self.local.hash_at(height).map_err(|e| {
            self.stats.store_read_errors += 1;
            tracing::error!(height, error = %e, "cannot read our own chain; no fork decision is taken on it");
        })
    }

    /// xorshift64*: deterministic from the configured seed.
    pub(super) fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A batch transition the engine asked for in a state that does not allow
/// it: an engine bug. Debug builds (and so every test) stop on it; a release
/// node logs it and carries on, the batch left as it was.
pub(super) fn bug(e: WrongState) {
    if cfg!(debug_assertions) {
        panic!("sync engine bug: {e}");
    }
    tracing::error!(error = %e, "sync engine bug: wrong batch transition");
}
