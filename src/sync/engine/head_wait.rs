//! Accounting of where the in-order import loses time: how long the next
//! batch to import kept it waiting while later batches were already in, in
//! which state (still downloading, or being checked), and whose batch it
//! was. Counters and log lines only: it decides nothing, so the scheduler's
//! choices can be judged by what they cost (the bench reports these).

use std::time::Instant;

use libp2p::PeerId;

use super::SyncEngine;
use crate::sync::batch::BatchState;

/// The wait in progress: the import's next batch is not ready while a later
/// one is.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeadWait {
    start: u64,
    since: Instant,
    /// Still downloading (or waiting for a peer) rather than being checked.
    downloading: bool,
    /// Who holds it up: the first peer asked (downloading) or its server.
    peer: Option<PeerId>,
    /// Whether the lookahead window was full when the wait began, so
    /// downloads were held up too: the part of a wait that costs rate.
    window_full: bool,
}

impl SyncEngine {
    /// Closes the wait in progress if the head changed, and opens one if
    /// the head now holds the import back. Called after every input.
    pub(super) fn track_head(&mut self, now: Instant) {
        let current = self.head_wait_now(now);
        let same = match (&self.head_wait, &current) {
            (Some(a), Some(b)) => {
                a.start == b.start
                    && a.downloading == b.downloading
                    && a.peer == b.peer
                    && a.window_full == b.window_full
            }
            _ => false,
        };
        if same {
            return;
        }
        if let Some(w) = self.head_wait.take() {
            let waited = now.saturating_duration_since(w.since);
            let s = &mut self.stats;
            s.head_waits += 1;
            if w.downloading {
                s.head_wait_download += waited;
            } else {
                s.head_wait_check += waited;
            }
            if w.window_full {
                s.head_wait_window_full += waited;
            }
            if let Some(p) = w.peer {
                *s.head_wait_by_peer.entry(p).or_default() += waited;
            }
            tracing::debug!(start = w.start, waited_ms = waited.as_secs_f64() * 1e3,
                downloading = w.downloading, window_full = w.window_full,
                peer = ?w.peer, "in-order import waited for a batch");
        }
        self.head_wait = current;
    }

    fn head_wait_now(&self, now: Instant) -> Option<HeadWait> {
        let mut rest = self
            .batches
            .values()
            .filter(|b| !matches!(b.state(), BatchState::Importing { .. }));
        let head = rest.next()?;
        if head.start() != self.accepted.height + 1 {
            return None;
        }
        let (downloading, peer) = match head.state() {
            BatchState::AwaitingDownload { .. } => (true, None),
            BatchState::Downloading { live, .. } => (true, live.first().map(|l| l.peer)),
            BatchState::Checking { server, .. } => (false, Some(*server)),
            BatchState::Verified { .. } | BatchState::Importing { .. } => return None,
        };
        if !rest.any(|b| b.held_bytes() > 0) {
            return None;
        }
        let window_full =
            self.buffered_bytes() + self.config.batch_bytes > self.config.max_buffered_bytes;
        Some(HeadWait {
            start: head.start(),
            since: now,
            downloading,
            peer,
            window_full,
        })
    }
}
