//! Redialing lost peers with exponential backoff: a pure state machine (time
//! comes in as `now`, dials go out as [`Redial::due`]); the event loop
//! carries the dials out and reports what happened.
//!
//! Owns: which lost peers are worth dialing again and when. Must not dial,
//! read a clock or know about bans beyond being told to [`Redial::forget`] a
//! peer (the event loop does so when it bans one, so a banned peer is never
//! redialed).
//!
//! A peer enters when a useful connection to it is lost, or when it comes
//! from the bootstrap list or the address book (so an unreachable bootstrap
//! peer is retried too). The first dial is after `initial`, each failure
//! doubles the delay up to `max`, and every delay is jittered to between half
//! and all of it, so nodes that lost the same peer do not dial it in step.
//! After [`GIVE_UP_AFTER`] failed attempts in a row the peer is dropped (the
//! discovery tick and the address book at the next start still know it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// Consecutive failed dials after which a peer is no longer redialed.
pub const GIVE_UP_AFTER: u32 = 30;
/// Most peers waiting for a redial; the one that failed most is dropped.
pub const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<Multiaddr>,
    /// Failed attempts in a row.
    failures: u32,
    /// When to dial next; `None` while a dial is in progress.
    next: Option<Instant>,
}

/// The backoff schedule of every lost peer.
#[derive(Debug)]
pub struct Redial {
    initial: Duration,
    max: Duration,
    entries: BTreeMap<PeerId, Entry>,
    rng: u64,
}

impl Redial {
    /// `seed` drives the jitter (any value; tests fix it).
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Redial {
        Redial {
            initial,
            max: max.max(initial),
            entries: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    /// The un-jittered delay before attempt `failures + 1`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        // xorshift64: cheap, and reproducible from the seed.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let half = d / 2;
        let extra = half.mul_f64((x % 1_000_001) as f64 / 1_000_000.0);
        half + extra
    }

    /// `peer` was lost (or is known from the bootstrap list or the address
    /// book): dial it at `addrs` after the initial delay — or `now`, with
    /// `at_once` (a start-up dial). A peer already waiting keeps its backoff
    /// but learns the addresses.
    pub fn lost(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: Instant, at_once: bool) {
        if addrs.is_empty() {
            return;
        }
        if let Some(e) = self.entries.get_mut(&peer) {
            for a in addrs {
                if !e.addrs.contains(&a) {
                    e.addrs.push(a);
                }
            }
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            let worst = self
                .entries
                .iter()
                .max_by_key(|(_, e)| e.failures)
                .map(|(p, _)| *p);
            if let Some(p) = worst {
                self.entries.remove(&p);
            }
        }
        let delay = if at_once {
            Duration::ZERO
        } else {
            self.jittered(self.initial)
        };
        self.entries.insert(
            peer,
            Entry {
                addrs,
                failures: 0,
                next: Some(now + delay),
            },
        );
    }

    /// A dial to `peer` failed: back off, or give up after [`GIVE_UP_AFTER`].
    pub fn failed(&mut self, peer: &PeerId, now: Instant) {
        let Some(failures) = self.entries.get(peer).map(|e| e.failures + 1) else {
            return;
        };
        if failures >= GIVE_UP_AFTER {
            self.entries.remove(peer);
            return;
        }
        let delay = self.jittered(self.backoff(failures));
        if let Some(e) = self.entries.get_mut(peer) {
            e.failures = failures;
            e.next = Some(now + delay);
        }
    }

    /// Connected again (by whatever path): nothing left to do.
    pub fn connected(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    /// Never dial `peer` again (banned).
    pub fn forget(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    /// The peers to dial now, with their addresses; each is marked as being
    /// dialed until [`Redial::failed`] or [`Redial::connected`] is called.
    pub fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for (peer, e) in self.entries.iter_mut() {
            if e.next.is_some_and(|t| t <= now) {
                e.next = None;
                out.push((*peer, e.addrs.clone()));
            }
        }
        out
    }

    /// A dial that could not even start (we have enough peers, say): try
    /// again after the current delay without counting a failure.
    pub fn postpone(&mut self, peer: &PeerId, now: Instant) {
        let Some(failures) = self.entries.get(peer).map(|e| e.failures) else {
            return;
        };
        let delay = self.jittered(self.backoff(failures.max(1)));
        if let Some(e) = self.entries.get_mut(peer) {
            e.next = Some(now + delay);
        }
    }

    /// When [`Redial::due`] next has something.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.next).min()
    }

    pub fn is_waiting(&self, peer: &PeerId) -> bool {
        self.entries.contains_key(peer)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Vec<Multiaddr> {
        vec!["/ip4/127.0.0.1/tcp/9".parse().unwrap()]
    }

    fn r() -> Redial {
        Redial::new(Duration::from_secs(1), Duration::from_secs(60), 7)
    }

    #[test]
    fn the_backoff_doubles_up_to_the_max() {
        let r = r();
        let secs: Vec<u64> = (0..9).map(|f| r.backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(r.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_lost_peer_is_dialed_after_a_jittered_delay_then_backs_off_on_failure() {
        let t0 = Instant::now();
        let mut r = r();
        let p = PeerId::random();
        r.lost(p, addr(), t0, false);
        let first = r.next_due().unwrap() - t0;
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        assert!(r.due(t0).is_empty(), "not before its time");
        let at = t0 + Duration::from_secs(1);
        assert_eq!(r.due(at), vec![(p, addr())]);
        assert!(r.due(at).is_empty(), "one dial at a time");
        assert_eq!(r.next_due(), None, "nothing due while dialing");
        let mut now = at;
        for failures in 1..6u32 {
            r.failed(&p, now);
            let wait = r.next_due().unwrap() - now;
            let full = r.backoff(failures);
            assert!(wait >= full / 2 && wait <= full, "{failures}: {wait:?}");
            now += wait;
            assert_eq!(r.due(now).len(), 1);
        }
        r.connected(&p);
        assert!(r.is_empty());
    }

    #[test]
    fn banned_peers_are_forgotten_and_hopeless_ones_given_up() {
        let t0 = Instant::now();
        let mut r = r();
        let banned = PeerId::random();
        r.lost(banned, addr(), t0, true);
        r.forget(&banned);
        assert!(r.due(t0 + Duration::from_secs(3600)).is_empty());
        let gone = PeerId::random();
        r.lost(gone, addr(), t0, true);
        let mut now = t0;
        for _ in 0..GIVE_UP_AFTER {
            assert_eq!(r.due(now).len(), 1);
            r.failed(&gone, now);
            now += Duration::from_secs(61);
        }
        assert!(!r.is_waiting(&gone));
    }

    #[test]
    fn start_up_dials_are_due_at_once_and_entries_are_bounded() {
        let t0 = Instant::now();
        let mut r = r();
        for _ in 0..(MAX_ENTRIES + 10) {
            r.lost(PeerId::random(), addr(), t0, true);
        }
        assert_eq!(r.len(), MAX_ENTRIES);
        assert_eq!(r.due(t0).len(), MAX_ENTRIES);
        r.lost(PeerId::random(), vec![], t0, true);
        assert_eq!(r.len(), MAX_ENTRIES, "no address, nothing to dial");
    }
}
