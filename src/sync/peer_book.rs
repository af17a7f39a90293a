//! The peer book: what the sync engine knows about each peer, and how much it
//! trusts it.
//!
//! Pure bookkeeping: no I/O and no clock (time comes in as `now`). It decides
//! scores and bans; carrying a ban out (disconnecting) is the driver's job.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::chain::Hash;

/// What we know of a peer's genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenesisVerdict {
    /// Not asked yet, or no answer yet.
    Unknown,
    /// Same genesis as ours: the peer may serve and vote.
    Verified,
    /// Another network: never used, banned for a while.
    Mismatch,
}

/// Why a peer is penalized. Penalties distinguish "don't have it" (none),
/// slowness (small), and invalid data or lies (large, ban).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Penalty {
    /// A request timed out.
    Timeout,
    /// Claimed a height, then could not serve blocks below it.
    NotDelivered,
    /// A response that does not answer the request (wrong heights, too many blocks).
    BadResponse,
    /// Served blocks that fail validation.
    InvalidBlocks,
    /// Served a batch whose last hash lost the majority vote.
    ServedLosingBatch,
    /// Voted for a hash the 2/3 majority rejected.
    VotedAgainstMajority,
    /// Reported a tip that the 2/3 majority says is not on the chain.
    WrongChain,
    /// Runs another genesis.
    WrongGenesis,
}

impl Penalty {
    /// Score change (scores start at 0; a peer at or below the ban threshold is banned).
    pub fn score(self) -> i32 {
        match self {
            Penalty::Timeout => -5,
            Penalty::NotDelivered => -30,
            Penalty::BadResponse => -50,
            Penalty::VotedAgainstMajority => -40,
            Penalty::InvalidBlocks
            | Penalty::ServedLosingBatch
            | Penalty::WrongChain
            | Penalty::WrongGenesis => -1000,
        }
    }

    /// Stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Penalty::Timeout => "timeout",
            Penalty::NotDelivered => "not_delivered",
            Penalty::BadResponse => "bad_response",
            Penalty::InvalidBlocks => "invalid_blocks",
            Penalty::ServedLosingBatch => "served_losing_batch",
            Penalty::VotedAgainstMajority => "voted_against_majority",
            Penalty::WrongChain => "wrong_chain",
            Penalty::WrongGenesis => "wrong_genesis",
        }
    }
}

/// Everything the engine tracks about one peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub genesis: GenesisVerdict,
    /// Last reported height and tip, and when we learned them.
    pub height: Option<u64>,
    pub tip: Option<Hash>,
    pub height_updated: Option<Instant>,
    /// Whether the reported tip was compared with our chain yet.
    pub tip_checked: bool,
    /// EWMA of the round-trip time of small requests.
    pub latency: Option<Duration>,
    /// Block requests in flight to this peer.
    pub in_flight: u32,
    pub successes: u64,
    pub failures: HashMap<Penalty, u32>,
    pub score: i32,
    pub connected: bool,
    /// When this connection started (a new peer gets a moment to report in
    /// before sync decisions that its vote could change).
    pub connected_at: Instant,
}

impl PeerInfo {
    fn new(now: Instant) -> Self {
        PeerInfo {
            genesis: GenesisVerdict::Unknown,
            height: None,
            tip: None,
            height_updated: None,
            tip_checked: false,
            latency: None,
            in_flight: 0,
            successes: 0,
            failures: HashMap::new(),
            score: 0,
            connected: true,
            connected_at: now,
        }
    }

    /// Connected, but genesis or height not known yet.
    pub fn reporting(&self) -> bool {
        self.connected
            && (self.genesis == GenesisVerdict::Unknown
                || (self.genesis == GenesisVerdict::Verified && self.height.is_none()))
    }

    /// Usable for sync: connected and on our genesis.
    pub fn usable(&self) -> bool {
        self.connected && self.genesis == GenesisVerdict::Verified
    }
}

/// A ban decided by the book: the driver disconnects the peer and refuses it until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub peer: PeerId,
    pub until: Instant,
    pub reason: Penalty,
}

/// Per-peer state plus the ban list.
///
/// Ordered maps: the engine's choices iterate the peers (voters, servers,
/// tie breaks drawn from a seeded generator in iteration order), so the order
/// must not depend on a per-process hash seed or a run would not replay.
#[derive(Debug, Default)]
pub struct PeerBook {
    peers: BTreeMap<PeerId, PeerInfo>,
    banned: BTreeMap<PeerId, (Instant, Penalty)>,
}

/// Weight of a new latency sample in the EWMA.
const LATENCY_ALPHA: f64 = 0.3;
/// Successes raise the score up to this cap, so a long good record cannot
/// absorb a lie (lies cost far more than this).
const MAX_SCORE: i32 = 50;

impl PeerBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// A peer connected. Returns false if it is banned (the driver should drop it).
    pub fn connected(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.is_banned(&peer, now) {
            return false;
        }
        self.peers
            .entry(peer)
            .and_modify(|p| p.connected = true)
            .or_insert_with(|| PeerInfo::new(now));
        true
    }

    /// A peer's last connection closed: forget it (a reconnect starts fresh,
    /// except for bans, which are kept separately).
    pub fn disconnected(&mut self, peer: &PeerId) -> Option<PeerInfo> {
        self.peers.remove(peer)
    }

    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(peer)
    }

    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerInfo> {
        self.peers.get_mut(peer)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Peers on our genesis and connected.
    pub fn usable(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter().filter(|(_, p)| p.usable())
    }

    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|(until, _)| *until > now)
    }

    /// Number of peers currently banned.
    pub fn banned_count(&self, now: Instant) -> usize {
        self.banned.values().filter(|(u, _)| *u > now).count()
    }

    /// Why and until when a peer is banned.
    pub fn ban_of(&self, peer: &PeerId) -> Option<(Instant, Penalty)> {
        self.banned.get(peer).copied()
    }

    pub fn set_genesis(&mut self, peer: &PeerId, verdict: GenesisVerdict) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.genesis = verdict;
        }
    }

    /// Records a reported height. Heights only move forward, except that a
    /// report from the peer itself may lower it (it reorged or restarted).
    pub fn set_height(&mut self, peer: &PeerId, height: u64, tip: Hash, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            if p.tip != Some(tip) {
                p.tip_checked = false;
            }
            p.height = Some(height);
            p.tip = Some(tip);
            p.height_updated = Some(now);
        }
    }

    /// Lowers what we believe a peer holds (it failed to serve `height`).
    pub fn cap_height(&mut self, peer: &PeerId, below: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            if let Some(h) = p.height {
                if h >= below {
                    p.height = Some(below.saturating_sub(1));
                    // Its tip hash was for the height it claimed, not this one.
                    p.tip = None;
                }
            }
        }
    }

    pub fn record_latency(&mut self, peer: &PeerId, rtt: Duration) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.latency = Some(match p.latency {
                None => rtt,
                Some(old) => old.mul_f64(1.0 - LATENCY_ALPHA) + rtt.mul_f64(LATENCY_ALPHA),
            });
        }
    }

    pub fn reward(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.successes += 1;
            p.score = (p.score + 1).min(MAX_SCORE);
        }
    }

    /// Applies a penalty; returns the ban if the score crossed `threshold`.
    /// A peer already banned is left alone: the ban stands as decided, and
    /// the driver is not told twice (its later answers, which may still
    /// arrive before the disconnect lands, are moot).
    pub fn penalize(
        &mut self,
        peer: &PeerId,
        penalty: Penalty,
        threshold: i32,
        ban_for: Duration,
        now: Instant,
    ) -> Option<Ban> {
        if self.is_banned(peer, now) {
            return None;
        }
        let p = self.peers.get_mut(peer)?;
        *p.failures.entry(penalty).or_default() += 1;
        p.score = p.score.saturating_add(penalty.score());
        if p.score <= threshold {
            let until = now + ban_for;
            self.banned.insert(*peer, (until, penalty));
            p.connected = false;
            Some(Ban {
                peer: *peer,
                until,
                reason: penalty,
            })
        } else {
            None
        }
    }

    /// Our chain changed under the checked tips (a rollback): check them again.
    pub fn recheck_tips(&mut self) {
        for p in self.peers.values_mut() {
            p.tip_checked = false;
        }
    }

    /// Peers currently banned, with the reason.
    pub fn banned(&self, now: Instant) -> impl Iterator<Item = (PeerId, Penalty)> + '_ {
        self.banned
            .iter()
            .filter(move |(_, (u, _))| *u > now)
            .map(|(p, (_, r))| (*p, *r))
    }

    /// Forgets expired bans (so the map stays bounded by the peers seen recently).
    pub fn expire_bans(&mut self, now: Instant) {
        self.banned.retain(|_, (until, _)| *until > now);
    }

    /// Earliest ban expiry, for the engine's timer.
    pub fn next_ban_expiry(&self) -> Option<Instant> {
        self.banned.values().map(|(u, _)| *u).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lies_ban_and_slowness_does_not() {
        let now = Instant::now();
        let mut book = PeerBook::new();
        let honest_slow = PeerId::random();
        let liar = PeerId::random();
        book.connected(honest_slow, now);
        book.connected(liar, now);
        for _ in 0..5 {
            assert!(book
                .penalize(
                    &honest_slow,
                    Penalty::Timeout,
                    -100,
                    Duration::from_secs(60),
                    now
                )
                .is_none());
        }
        let ban = book
            .penalize(
                &liar,
                Penalty::ServedLosingBatch,
                -100,
                Duration::from_secs(60),
                now,
            )
            .expect("a lie bans");
        assert_eq!(ban.until, now + Duration::from_secs(60));
        assert!(book.is_banned(&liar, now));
        assert!(
            !book.connected(liar, now + Duration::from_secs(1)),
            "banned peers are refused"
        );
        assert!(
            book.connected(liar, now + Duration::from_secs(61)),
            "bans expire"
        );
        assert!(!book.is_banned(&honest_slow, now));
    }

    #[test]
    fn a_banned_peer_is_not_banned_again() {
        // Regression: a forger with two batches in flight lost both votes
        // before its disconnect landed and was banned twice (two Ban actions).
        let now = Instant::now();
        let mut book = PeerBook::new();
        let liar = PeerId::random();
        book.connected(liar, now);
        let ban_for = Duration::from_secs(60);
        let first = book.penalize(&liar, Penalty::ServedLosingBatch, -100, ban_for, now);
        assert!(first.is_some());
        let later = now + Duration::from_millis(5);
        assert!(book
            .penalize(&liar, Penalty::ServedLosingBatch, -100, ban_for, later)
            .is_none());
        assert_eq!(
            book.ban_of(&liar),
            Some((now + ban_for, Penalty::ServedLosingBatch))
        );
    }

    #[test]
    fn rewards_are_capped_so_history_cannot_buy_a_lie() {
        let now = Instant::now();
        let mut book = PeerBook::new();
        let p = PeerId::random();
        book.connected(p, now);
        for _ in 0..10_000 {
            book.reward(&p);
        }
        assert_eq!(book.get(&p).unwrap().score, MAX_SCORE);
        assert!(book
            .penalize(
                &p,
                Penalty::InvalidBlocks,
                -100,
                Duration::from_secs(1),
                now
            )
            .is_some());
    }

    #[test]
    fn latency_is_smoothed_and_heights_can_be_capped() {
        let now = Instant::now();
        let mut book = PeerBook::new();
        let p = PeerId::random();
        book.connected(p, now);
        book.record_latency(&p, Duration::from_millis(100));
        book.record_latency(&p, Duration::from_millis(200));
        let l = book.get(&p).unwrap().latency.unwrap();
        assert!(l > Duration::from_millis(100) && l < Duration::from_millis(200));
        book.set_height(&p, 1000, Hash::ZERO, now);
        book.cap_height(&p, 500);
        assert_eq!(book.get(&p).unwrap().height, Some(499));
        book.cap_height(&p, 900);
        assert_eq!(
            book.get(&p).unwrap().height,
            Some(499),
            "capping never raises"
        );
    }
}
