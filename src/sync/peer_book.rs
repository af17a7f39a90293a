//! The peer book: what the sync engine knows about each peer, and how much it
//! trusts it.
//!
//! Pure bookkeeping: no I/O and no clock (time comes in as `now`). It decides
//! scores and bans; carrying a ban out (disconnecting) is the driver's job.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::chain::Hash;

mod memory;
pub use memory::PeerMemory;

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
/// slowness (small), and what can be proven against a peer: invalid data, a
/// claim it cannot back with blocks, another genesis, a chain that contradicts
/// a checkpoint (large, ban). Being on another fork is none of these: a peer
/// that serves or votes for a valid chain the majority does not hold is
/// judged to be on another fork ([`PeerInfo::forked_at`]), never penalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Penalty {
    /// A request timed out.
    Timeout,
    /// Claimed a height, then could not serve blocks below it.
    NotDelivered,
    /// A response that does not answer the request (wrong heights, too many blocks).
    BadResponse,
    /// Served blocks that fail validation.
    InvalidBlocks,
    /// Runs another genesis.
    WrongGenesis,
    /// Holds another block than an operator's `--checkpoint` at its height.
    ContradictsCheckpoint,
    /// Sent us an undecodable or oversize request.
    BadRequest,
}

impl Penalty {
    /// Score change (scores start at 0; a peer at or below the ban threshold is banned).
    pub fn score(self) -> i32 {
        match self {
            Penalty::Timeout => -5,
            Penalty::NotDelivered => -30,
            Penalty::BadResponse | Penalty::BadRequest => -50,
            Penalty::InvalidBlocks | Penalty::WrongGenesis | Penalty::ContradictsCheckpoint => {
                -1000
            }
        }
    }

    /// Stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Penalty::Timeout => "timeout",
            Penalty::NotDelivered => "not_delivered",
            Penalty::BadResponse => "bad_response",
            Penalty::InvalidBlocks => "invalid_blocks",
            Penalty::WrongGenesis => "wrong_genesis",
            Penalty::ContradictsCheckpoint => "contradicts_checkpoint",
            Penalty::BadRequest => "bad_request",
        }
    }

    /// The penalty of a stable name (as saved in the store).
    pub fn from_name(name: &str) -> Option<Penalty> {
        [
            Penalty::Timeout,
            Penalty::NotDelivered,
            Penalty::BadResponse,
            Penalty::InvalidBlocks,
            Penalty::WrongGenesis,
            Penalty::ContradictsCheckpoint,
            Penalty::BadRequest,
        ]
        .into_iter()
        .find(|p| p.name() == name)
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
    /// EWMAs of the bytes of each delivery and of the busy time it took,
    /// timed from the later of its request and the previous delivery, so
    /// that pipelined requests do not count the peer's queue twice.
    /// Averaging bytes and time apart (a ratio of sums, not a mean of
    /// rates) is what keeps two answers that finish together from reading
    /// as one normal and one near-infinitely fast delivery: a mean of rates
    /// made a peer with two requests in flight look several times faster
    /// than it was, so it won nearly every batch while others idled.
    pub delivered: Option<(f64, f64)>,
    /// When it last delivered blocks.
    pub last_delivery: Option<Instant>,
    pub successes: u64,
    pub failures: HashMap<Penalty, u32>,
    pub score: i32,
    pub connected: bool,
    /// When this connection started (a new peer gets a moment to report in
    /// before sync decisions that its vote could change).
    pub connected_at: Instant,
    /// The lowest height at which we know its chain holds another block than
    /// ours (it served, voted or claimed one): it is on another fork from
    /// there. Not a fault; it only stops us syncing from it, or counting its
    /// height, at and above that height. Chain polls still ask it, so its
    /// view counts whenever we reconsider our own chain.
    pub forked_at: Option<u64>,
    /// The lowest checkpoint at or below its height that it has not shown to
    /// hold yet; it is not used for sync until it has.
    pub unverified_checkpoint: Option<u64>,
    /// The highest checkpoint height it has shown to hold.
    pub checkpoints_shown: u64,
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
            delivered: None,
            last_delivery: None,
            successes: 0,
            failures: HashMap::new(),
            score: 0,
            connected: true,
            connected_at: now,
            forked_at: None,
            unverified_checkpoint: None,
            checkpoints_shown: 0,
        }
    }

    /// Bytes per second it delivers blocks at: [`PeerInfo::delivered`]'s
    /// bytes over its busy time. A floor of 100 µs on the time keeps a
    /// burst of tiny answers from reading as an infinitely fast peer.
    pub fn throughput(&self) -> Option<f64> {
        self.delivered.map(|(bytes, secs)| bytes / secs.max(1e-4))
    }

    /// Connected, but genesis, height or checkpoints not known yet.
    pub fn reporting(&self) -> bool {
        self.connected
            && (self.genesis == GenesisVerdict::Unknown
                || (self.genesis == GenesisVerdict::Verified
                    && (self.height.is_none() || self.unverified_checkpoint.is_some())))
    }

    /// Usable for sync: connected, on our genesis, past our checkpoints.
    pub fn usable(&self) -> bool {
        self.connected
            && self.genesis == GenesisVerdict::Verified
            && self.unverified_checkpoint.is_none()
    }

    /// Whether its reported height is younger than `ttl` at `now`.
    pub fn status_fresh(&self, now: Instant, ttl: Duration) -> bool {
        self.height_updated
            .is_some_and(|t| now.saturating_duration_since(t) < ttl)
    }

    /// The height up to which it holds our chain, as far as we know: its
    /// reported height, below the point where it is known to fork from us.
    pub fn height_on_our_chain(&self) -> Option<u64> {
        match (self.height, self.forked_at) {
            (Some(h), Some(f)) => Some(h.min(f.saturating_sub(1))),
            (h, _) => h,
        }
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
    /// What a departed peer's record keeps for `retention`, so that a
    /// reconnect neither launders its score nor restarts its report-in window.
    departed: BTreeMap<PeerId, Departed>,
    retention: Duration,
}

/// The part of a peer's record that outlives its connection.
#[derive(Clone, Debug)]
struct Departed {
    left: Instant,
    score: i32,
    failures: HashMap<Penalty, u32>,
    first_connected: Instant,
}

/// At most this many departed records are kept (oldest dropped first), so
/// identities that connect once and leave cannot grow the book without bound.
const MAX_DEPARTED: usize = 4096;

/// Weight of a new latency sample in the EWMA.
const LATENCY_ALPHA: f64 = 0.3;
/// Weight of a new throughput sample in the EWMA.
const THROUGHPUT_ALPHA: f64 = 0.3;
/// Successes raise the score up to this cap, so a long good record cannot
/// absorb a lie (lies cost far more than this).
const MAX_SCORE: i32 = 50;

impl PeerBook {
    /// A book that forgets nothing about a departed peer's score.
    pub fn new() -> Self {
        Self::default()
    }

    /// A book that keeps a departed peer's score, penalties and first
    /// connection time for `retention` (the engine uses its ban duration).
    pub fn with_retention(retention: Duration) -> Self {
        PeerBook {
            retention,
            ..Self::default()
        }
    }

    /// A peer connected. Returns false if it is banned (the driver should drop it).
    pub fn connected(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.is_banned(&peer, now) {
            return false;
        }
        let retention = self.retention;
        self.departed
            .retain(|_, d| now.saturating_duration_since(d.left) < retention);
        let before = self.departed.remove(&peer);
        self.peers
            .entry(peer)
            .and_modify(|p| p.connected = true)
            .or_insert_with(|| {
                let mut info = PeerInfo::new(now);
                if let Some(d) = before {
                    info.score = d.score;
                    info.failures = d.failures;
                    info.connected_at = d.first_connected;
                }
                info
            });
        true
    }

    /// A peer's last connection closed: its live state goes (a reconnect
    /// reports in again), its score and penalties stay for `retention`.
    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) -> Option<PeerInfo> {
        let info = self.peers.remove(peer)?;
        if !self.retention.is_zero() {
            if self.departed.len() >= MAX_DEPARTED {
                self.evict_departed();
            }
            self.departed.insert(
                *peer,
                Departed {
                    left: now,
                    score: info.score,
                    failures: info.failures.clone(),
                    first_connected: info.connected_at,
                },
            );
        }
        Some(info)
    }

    /// Makes room for one departed record: the oldest with a score of 0 or
    /// more goes first. Were the oldest dropped whatever its score, a peer
    /// could launder its own by churning fresh identities until its record
    /// is the oldest; only when every record is negative does one go.
    fn evict_departed(&mut self) {
        let oldest = |negative: bool| {
            self.departed
                .iter()
                .filter(|(_, d)| (d.score < 0) == negative)
                .min_by_key(|(_, d)| d.left)
                .map(|(p, _)| *p)
        };
        if let Some(p) = oldest(false).or_else(|| oldest(true)) {
            self.departed.remove(&p);
        }
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

    /// `peer` delivered `bytes` of blocks for a request sent at `sent`.
    pub fn record_delivery(&mut self, peer: &PeerId, bytes: u64, sent: Instant, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            let since = p.last_delivery.map_or(sent, |d| d.max(sent));
            let secs = now.saturating_duration_since(since).as_secs_f64();
            let (b, t) = match p.delivered {
                None => (bytes as f64, secs),
                Some((b, t)) => (
                    b * (1.0 - THROUGHPUT_ALPHA) + bytes as f64 * THROUGHPUT_ALPHA,
                    t * (1.0 - THROUGHPUT_ALPHA) + secs * THROUGHPUT_ALPHA,
                ),
            };
            p.delivered = Some((b, t));
            p.last_delivery = Some(now);
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

    /// Records that `peer` holds another block than ours at `height`.
    /// Returns true if this is news (it was not known to fork at or below it).
    pub fn mark_forked(&mut self, peer: &PeerId, height: u64) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        if p.forked_at.is_some_and(|f| f <= height) {
            return false;
        }
        p.forked_at = Some(height);
        true
    }

    /// `peer` holds our block at `height`: blocks are hash-linked, so it
    /// holds ours at every height below too. Returns true if that clears a fork.
    pub fn mark_agrees(&mut self, peer: &PeerId, height: u64) -> bool {
        match self.peers.get_mut(peer) {
            Some(p) if p.forked_at.is_some_and(|f| f <= height) => {
                p.forked_at = None;
                true
            }
            _ => false,
        }
    }

    /// Our chain changed under the checked tips (a rollback to `height`):
    /// check them again, and forget forks judged against blocks we dropped.
    pub fn recheck_tips(&mut self, height: u64) {
        for p in self.peers.values_mut() {
            p.tip_checked = false;
            if p.forked_at.is_some_and(|f| f > height) {
                p.forked_at = None;
            }
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
                Penalty::InvalidBlocks,
                -100,
                Duration::from_secs(60),
                now,
            )
            .expect("invalid data bans");
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
        let first = book.penalize(&liar, Penalty::InvalidBlocks, -100, ban_for, now);
        assert!(first.is_some());
        let later = now + Duration::from_millis(5);
        assert!(book
            .penalize(&liar, Penalty::InvalidBlocks, -100, ban_for, later)
            .is_none());
        assert_eq!(
            book.ban_of(&liar),
            Some((now + ban_for, Penalty::InvalidBlocks))
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

    #[test]
    fn two_answers_finishing_together_read_as_the_peers_rate_not_faster() {
        // Two peers that each move 40 MB/s. One answers its two pipelined
        // 4 MB requests one after the other (at 100 and 200 ms), the other
        // serves both at once, so both land at ~200 ms, 1 ms apart. Both
        // must read as 40 MB/s: a mean of per-delivery rates had the second
        // at 4 MB / 1 ms for every other sample, so it read ~100x faster.
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let mut book = PeerBook::new();
        let (serial, together) = (PeerId::random(), PeerId::random());
        book.connected(serial, t0);
        book.connected(together, t0);
        let mb4 = 4_000_000;
        for round in 0..10u64 {
            let sent = t0 + ms(round * 201);
            book.record_delivery(&serial, mb4, sent, sent + ms(100));
            book.record_delivery(&serial, mb4, sent, sent + ms(200));
            book.record_delivery(&together, mb4, sent, sent + ms(200));
            book.record_delivery(&together, mb4, sent, sent + ms(201));
        }
        let rate = |p: &PeerId| book.get(p).unwrap().throughput().unwrap();
        let (s, t) = (rate(&serial), rate(&together));
        assert!((38e6..=42e6).contains(&s), "serial peer read as {s:.0} B/s");
        // Read just after its 1 ms sample, which the EWMA weighs most: a
        // bounded lean (~20%), where the mean of rates read ~1 GB/s.
        assert!(
            (36e6..=50e6).contains(&t),
            "concurrent peer read as {t:.0} B/s"
        );
    }

    #[test]
    fn a_reconnect_launders_neither_the_score_nor_the_report_in_window() {
        let t0 = Instant::now();
        let ban_for = Duration::from_secs(600);
        let mut book = PeerBook::with_retention(ban_for);
        let p = PeerId::random();
        book.connected(p, t0);
        let bad =
            |book: &mut PeerBook, at| book.penalize(&p, Penalty::BadResponse, -100, ban_for, at);
        assert!(bad(&mut book, t0).is_none(), "-50: not yet");
        let t1 = t0 + Duration::from_secs(5);
        book.disconnected(&p, t1);
        book.connected(p, t1 + Duration::from_millis(10));
        let info = book.get(&p).unwrap();
        assert_eq!(info.score, -50, "the score came back with the peer");
        assert_eq!(
            info.connected_at, t0,
            "the report-in window is not restarted"
        );
        assert!(bad(&mut book, t1).is_some(), "the second offence bans");
        // Long after it left, a peer starts clean.
        let q = PeerId::random();
        book.connected(q, t0);
        book.penalize(&q, Penalty::BadResponse, -100, ban_for, t0);
        book.disconnected(&q, t0);
        let later = t0 + ban_for + Duration::from_secs(1);
        book.connected(q, later);
        assert_eq!(book.get(&q).unwrap().score, 0);
        assert_eq!(book.get(&q).unwrap().connected_at, later);
    }

    #[test]
    fn departed_records_are_bounded() {
        let t0 = Instant::now();
        let mut book = PeerBook::with_retention(Duration::from_secs(600));
        for i in 0..(MAX_DEPARTED + 100) {
            let p = PeerId::random();
            book.connected(p, t0);
            book.disconnected(&p, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(book.departed.len(), MAX_DEPARTED);
    }

    #[test]
    fn churning_fresh_identities_does_not_evict_a_negative_score() {
        let t0 = Instant::now();
        let ban_for = Duration::from_secs(600);
        let mut book = PeerBook::with_retention(ban_for);
        let cycle = |book: &mut PeerBook, p: PeerId, at: Instant| {
            book.connected(p, at);
            book.disconnected(&p, at);
        };
        let liar = PeerId::random();
        book.connected(liar, t0);
        book.penalize(&liar, Penalty::BadResponse, -100, ban_for, t0);
        book.disconnected(&liar, t0);
        // The liar's record is the oldest; fresh identities fill the book
        // well past its bound.
        let mut fresh = Vec::new();
        for i in 1..=(MAX_DEPARTED as u64 + 10) {
            let p = PeerId::random();
            cycle(&mut book, p, t0 + Duration::from_millis(i));
            fresh.push(p);
        }
        assert_eq!(book.departed.len(), MAX_DEPARTED);
        assert_eq!(book.departed[&liar].score, -50, "the liar's score stays");
        assert!(
            !book.departed.contains_key(&fresh[0]),
            "the oldest clean one went"
        );
        let back = t0 + Duration::from_secs(1);
        book.connected(liar, back);
        assert_eq!(book.get(&liar).unwrap().score, -50);
        book.disconnected(&liar, back);
        // Only negative records left: then the oldest of them goes.
        let mut book = PeerBook::with_retention(ban_for);
        let mut liars = Vec::new();
        for i in 0..=(MAX_DEPARTED as u64) {
            let p = PeerId::random();
            let at = t0 + Duration::from_millis(i);
            book.connected(p, at);
            book.penalize(&p, Penalty::Timeout, -100, ban_for, at);
            book.disconnected(&p, at);
            liars.push(p);
        }
        assert_eq!(book.departed.len(), MAX_DEPARTED);
        assert!(!book.departed.contains_key(&liars[0]));
        assert!(book.departed.contains_key(&liars[MAX_DEPARTED]));
    }

    #[test]
    fn fork_judgments_follow_the_hash_links() {
        let now = Instant::now();
        let mut book = PeerBook::new();
        let p = PeerId::random();
        book.connected(p, now);
        book.set_genesis(&p, GenesisVerdict::Verified);
        book.set_height(&p, 1000, Hash::ZERO, now);
        assert!(book.mark_forked(&p, 800));
        assert!(!book.mark_forked(&p, 900), "already known to fork lower");
        assert_eq!(book.get(&p).unwrap().height_on_our_chain(), Some(799));
        assert!(book.mark_forked(&p, 700), "a lower fork point is news");
        assert!(
            !book.mark_agrees(&p, 600),
            "agreeing below the fork says nothing"
        );
        assert!(
            book.mark_agrees(&p, 750),
            "agreeing at or above it clears it"
        );
        assert_eq!(book.get(&p).unwrap().height_on_our_chain(), Some(1000));
        book.mark_forked(&p, 500);
        book.recheck_tips(400);
        assert_eq!(
            book.get(&p).unwrap().forked_at,
            None,
            "a judgment against blocks we rolled back is void"
        );
        book.mark_forked(&p, 300);
        book.recheck_tips(400);
        assert_eq!(book.get(&p).unwrap().forked_at, Some(300));
    }
}
