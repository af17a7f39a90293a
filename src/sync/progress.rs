//! The operator's view of sync progress: the `Syncing …` line every few
//! seconds while behind, one `Synced` line when caught up, one line per block
//! while following; and the same status as plain figures for the metrics.
//! Reads engine status and stats; decides nothing.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::chain::BlockRef;
use crate::metrics::{SyncCounters, SyncFigures};
use crate::sync::driver::SyncSnapshot;
use crate::sync::engine::{Mode, SyncEngine};

/// The operator's view of sync progress: a line every few seconds while
/// syncing, one when synced, one per block while following.
pub(crate) struct Progress {
    pub(crate) next: Instant,
    pub(crate) next_publish: Instant,
    /// A step happened since the last published snapshot.
    pub(crate) publish_pending: bool,
    window_start: Instant,
    window_blocks: u64,
    window_bytes: u64,
    was_syncing: bool,
}

/// The line an import is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Caught up after syncing.
    Synced,
    /// One block while following.
    Following,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub(crate) fn new(now: Instant) -> Self {
        Progress {
            next: now + PROGRESS_EVERY,
            next_publish: now,
            publish_pending: false,
            window_start: now,
            window_blocks: 0,
            window_bytes: 0,
            was_syncing: false,
        }
    }

    pub(crate) fn imported(&mut self, engine: &SyncEngine, tip: &BlockRef) {
        let status = engine.status(Instant::now());
        match self.after_import(status.target, status.peers, tip.height) {
            Some(Line::Synced) => info!(
                height = tip.height,
                tip = %tip.hash,
                peers = status.peers,
                "Synced: reached the network's height; following the tip"
            ),
            Some(Line::Following) => {
                info!(height = tip.height, tip = %tip.hash, peers = status.peers, "Imported block #{} (following)", tip.height)
            }
            None => {}
        }
    }

    /// Which line an import at `height` earns, given the engine's target and
    /// usable peers at that moment.
    fn after_import(&mut self, target: Option<u64>, peers: usize, height: u64) -> Option<Line> {
        // No target means no peer to compare with: that is not "synced"
        // (with no peers the node cannot know), so the state carries over.
        // No usable peer is not "synced" either, whatever the last target said.
        let syncing = match target {
            Some(t) if peers > 0 => height < t,
            _ => self.was_syncing,
        };
        let line = match (self.was_syncing, syncing) {
            (true, false) => Some(Line::Synced),
            (false, false) => Some(Line::Following),
            _ => None,
        };
        self.was_syncing = syncing;
        line
    }

    pub(crate) fn report(&mut self, engine: &SyncEngine, now: Instant) {
        self.next = now + PROGRESS_EVERY;
        let stats = engine.stats();
        let status = engine.status(now);
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            .max(1e-3);
        let blocks = stats.blocks_imported - self.window_blocks;
        let bytes = stats.bytes_imported - self.window_bytes;
        self.window_start = now;
        self.window_blocks = stats.blocks_imported;
        self.window_bytes = stats.bytes_imported;
        let Some(target) = status.target else { return };
        if status.height >= target {
            return;
        }
        self.was_syncing = true;
        let rate = blocks as f64 / secs;
        let left = target - status.height;
        let eta = if rate > 0.0 {
            format_secs(left as f64 / rate)
        } else {
            "?".into()
        };
        let line = format!(
            "Syncing {}/{} ({:.1}%) {} blk/s {:.1} MiB/s ETA {} peers={}",
            thousands(status.height),
            thousands(target),
            100.0 * status.height as f64 / target.max(1) as f64,
            thousands(rate as u64),
            bytes as f64 / secs / (1024.0 * 1024.0),
            eta,
            status.peers
        );
        match status.stalled {
            Some(reason) => warn!(%reason, "{line} (stalled)"),
            None => info!("{line}"),
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The snapshot as the plain figures the metrics module takes.
pub(crate) fn figures(snap: &SyncSnapshot) -> SyncFigures {
    let (s, st) = (&snap.status, &snap.stats);
    let count = |state: &str| snap.peers.iter().filter(|p| p.state == state).count() as u64;
    let mut peers: Vec<(&'static str, u64)> = ["verified", "checking", "wrong_genesis"]
        .into_iter()
        .map(|state| (state, count(state)))
        .collect();
    peers.push(("banned", snap.banned.len() as u64));
    let named = |m: &std::collections::HashMap<&'static str, u64>| {
        let mut v: Vec<(&'static str, u64)> = m.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_unstable();
        v
    };
    SyncFigures {
        height: s.height,
        target: s.target,
        best: s.best,
        syncing: s.syncing,
        pending_blocks: s.pending_blocks,
        batches_in_flight: s.batches_in_flight as u64,
        peers,
        fork_peers: snap.peers.iter().filter(|p| p.forked_at.is_some()).count() as u64,
        disk_full: s.disk_full,
        modes: Mode::NAMES
            .iter()
            .map(|name| (*name, *name == s.mode.name()))
            .collect(),
        counters: SyncCounters {
            blocks_imported: st.blocks_imported,
            bytes_imported: st.bytes_imported,
            bytes_downloaded: st.bytes_downloaded,
            retries: st.retries,
            hedges: st.hedges,
            reorgs: st.reorgs,
            splits: st.splits,
            halts: st.halts,
            polls: st.polls,
            fork_judgments: st.fork_judgments,
            checkpoint_rejections: st.checkpoint_rejections,
            future_blocks: st.future_blocks,
            store_read_errors: st.store_read_errors,
        },
        votes: vec![
            ("won", st.votes_won),
            ("lost", st.votes_lost),
            ("inconclusive", st.votes_inconclusive),
        ],
        requests_sent: named(&st.requests_sent),
        penalties: named(&st.penalties),
        bans: named(&st.bans),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_numbers_read_like_operators_expect() {
        assert_eq!(thousands(412_337), "412,337");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(format_secs(15.2), "15s");
        assert_eq!(format_secs(125.0), "2m05s");
        assert_eq!(format_secs(7300.0), "2h01m");
    }

    #[test]
    fn losing_the_last_peer_never_reads_as_synced() {
        let mut p = Progress::new(Instant::now());
        p.was_syncing = true;
        assert_eq!(p.after_import(Some(100), 2, 50), None, "still behind");
        // The last peer left; the target it set is still there, and the
        // import reaches it: with nobody to compare with, that is not synced.
        assert_eq!(p.after_import(Some(100), 0, 100), None);
        assert_eq!(p.after_import(None, 0, 101), None, "no target either");
        assert!(p.was_syncing, "the state carries over while peerless");
        // A peer is back and agrees: now it is.
        assert_eq!(p.after_import(Some(101), 1, 101), Some(Line::Synced));
        assert_eq!(p.after_import(Some(102), 1, 102), Some(Line::Following));
    }
}
