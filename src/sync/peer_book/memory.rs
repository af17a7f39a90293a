//! What the peer book hands over to the next run, and takes back: scores
//! and bans in force ([`PeerMemory`]). Pure like the book: the driver turns
//! it into store records ([`crate::sync::persist`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use libp2p::PeerId;

use super::{Departed, PeerBook, Penalty, MAX_DEPARTED};

/// What the book remembers of a peer beyond its connection: its score and
/// its ban. The driver saves it and feeds it back at the next start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMemory {
    pub peer: PeerId,
    pub score: i32,
    /// Banned until then, and why.
    pub ban: Option<(Instant, Penalty)>,
    /// When it left; `None` while it is connected (for it, the restart is
    /// the departure). Its score is kept for the book's retention from then.
    pub left: Option<Instant>,
}

impl PeerBook {
    /// Scores other than 0 and bans in force, of connected and departed
    /// peers alike, ordered by peer.
    pub fn memory(&self, now: Instant) -> Vec<PeerMemory> {
        let mut out: BTreeMap<PeerId, PeerMemory> = BTreeMap::new();
        let mut note = |peer: PeerId, score: i32, left: Option<Instant>| {
            if score != 0 {
                out.insert(
                    peer,
                    PeerMemory {
                        peer,
                        score,
                        ban: None,
                        left,
                    },
                );
            }
        };
        for (p, d) in &self.departed {
            if now.saturating_duration_since(d.left) < self.retention {
                note(*p, d.score, Some(d.left));
            }
        }
        for (p, info) in &self.peers {
            note(*p, info.score, None);
        }
        for (p, (until, reason)) in &self.banned {
            if *until > now {
                out.entry(*p)
                    .or_insert(PeerMemory {
                        peer: *p,
                        score: 0,
                        ban: None,
                        left: None,
                    })
                    .ban = Some((*until, *reason));
            }
        }
        out.into_values().collect()
    }

    /// Takes back what [`PeerBook::memory`] gave at an earlier run: bans
    /// that have not expired, and scores kept for the retention from when
    /// their peer left (a peer connected at the save left at the restart,
    /// `now`); a score whose retention ran out is dropped. Peers connected
    /// already keep what they have.
    pub fn restore(&mut self, memory: impl IntoIterator<Item = PeerMemory>, now: Instant) {
        for m in memory {
            if let Some((until, reason)) = m.ban {
                if until > now {
                    self.banned.insert(m.peer, (until, reason));
                }
            }
            let left = m.left.map_or(now, |l| l.min(now));
            if m.score != 0
                && now.saturating_duration_since(left) < self.retention
                && !self.peers.contains_key(&m.peer)
                && self.departed.len() < MAX_DEPARTED
            {
                self.departed.insert(
                    m.peer,
                    Departed {
                        left,
                        score: m.score,
                        failures: HashMap::new(),
                        first_connected: now,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn scores_and_bans_come_back_from_memory_and_expired_bans_do_not() {
        let t0 = Instant::now();
        let ban_for = Duration::from_secs(600);
        let mut book = PeerBook::with_retention(ban_for);
        let (liar, slow, clean) = (PeerId::random(), PeerId::random(), PeerId::random());
        for p in [liar, slow, clean] {
            book.connected(p, t0);
        }
        book.penalize(&liar, Penalty::BadRequest, -100, ban_for, t0);
        book.penalize(&liar, Penalty::BadRequest, -100, ban_for, t0);
        book.penalize(&slow, Penalty::Timeout, -100, ban_for, t0);
        book.disconnected(&slow, t0);
        let memory = book.memory(t0);
        assert_eq!(memory.len(), 2, "a clean peer is nothing to remember");
        let later = t0 + Duration::from_secs(60);
        let mut fresh = PeerBook::with_retention(ban_for);
        fresh.restore(memory.clone(), later);
        assert!(fresh.is_banned(&liar, later));
        assert_eq!(
            fresh.ban_of(&liar),
            Some((t0 + ban_for, Penalty::BadRequest))
        );
        fresh.connected(slow, later);
        assert_eq!(fresh.get(&slow).unwrap().score, -5);
        let mut too_late = PeerBook::with_retention(ban_for);
        too_late.restore(memory, t0 + ban_for);
        assert!(!too_late.is_banned(&liar, t0 + ban_for));
        assert_eq!(Penalty::from_name("bad_request"), Some(Penalty::BadRequest));
        assert_eq!(Penalty::from_name("nonsense"), None);
    }
}
