//! Connection slots: who may hold an inbound slot, and whom to evict when a
//! newcomer arrives and they are all taken. A pure state machine (no I/O,
//! time passed in): the event loop reports connections and what it saw of
//! each peer, applies the [`Admission`] it gets back, and closes connections.
//!
//! The policy follows Bitcoin Core's inbound eviction and Lighthouse's peer
//! pruning:
//! - outbound connections (ours) never count against the inbound slots, and
//!   `reserved_outbound` of the total are kept for them, so a crowd of inbound
//!   peers cannot stop us from dialing;
//! - a protected peer (an operator's bootstrap peer) is never evicted and is
//!   admitted even when the slots are full, past the address-range limit;
//! - at most `max_inbound_per_range` inbound peers per address range (IPv4 /16,
//!   IPv6 /48 by default; loopback exempt unless asked), so one host or one
//!   network cannot take every slot;
//! - when full, a newcomer evicts, in this order: the peer that has stayed
//!   *unverified* longest past the grace period (never answered our genesis
//!   request with our genesis); else the verified peer with the lowest
//!   negative sync score (penalized: timeouts, bad answers, lost votes'
//!   servers are not penalized but are no longer *with the majority*); else,
//!   after protecting the best-scored peers that hold the chain the majority
//!   vouches for, those that served us most, those with the lowest ping and
//!   the longest connected (`protect_each` of each), the one idle longest
//!   (no request in either direction for `idle_after`), else the youngest of
//!   the most crowded address range. If nobody is left to evict, the newcomer
//!   is refused.
//!
//! Must not touch the swarm; knows nothing about sync beyond what the event
//! loop reports (served responses, genesis verified, ping, activity) and the
//! [`Standing`] the sync driver passes on through the client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// The slot policy's knobs (from [`super::NetConfig`]).
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// Most inbound peers at once.
    pub max_inbound: usize,
    /// Most inbound peers from one address range; 0 means no limit.
    pub max_inbound_per_range: usize,
    /// Prefix length of an IPv4 range.
    pub range_prefix_v4: u8,
    /// Prefix length of an IPv6 range.
    pub range_prefix_v6: u8,
    /// Apply the range limit to loopback peers too (a loopback testnet has
    /// every peer in one range, so it is off by default).
    pub range_limit_loopback: bool,
    /// How long a new inbound peer has to answer our genesis request before it
    /// counts as unverified (and first in line for eviction).
    pub verify_grace: Duration,
    /// A verified peer with no request either way for this long is idle.
    pub idle_after: Duration,
    /// How many peers each protection (served most, lowest ping, oldest) keeps.
    pub protect_each: usize,
}

/// What to do with a new inbound peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted into a free slot.
    Admit,
    /// Admitted; close every connection to this peer to make room.
    Evict(PeerId),
    /// Not admitted: close the new connection.
    Refuse(Refusal),
}

/// Why a newcomer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address range already holds `max_inbound_per_range` peers.
    RangeFull,
    /// Every slot is taken by peers that are protected or still in grace.
    Full,
}

impl Refusal {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::RangeFull => "range_full",
            Refusal::Full => "full",
        }
    }
}

/// What sync thinks of a peer, as the slots use it (the sync driver sends
/// it through [`super::Client::peer_standings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Its sync score: negative once penalized (timeouts, bad responses,
    /// bad requests, flooding).
    pub score: i32,
    /// It holds the chain the majority vouches for: its tip is on our chain
    /// and no vote or served block showed it on another fork.
    pub with_majority: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    inbound: bool,
    protected: bool,
    /// Range for the limit (`None`: exempt).
    limit_range: Option<IpAddr>,
    /// Range for the crowding rule (always set for IP addresses).
    group: Option<IpAddr>,
    since: Instant,
    verified: bool,
    served: u64,
    rtt: Option<Duration>,
    last_active: Instant,
    standing: Standing,
}

impl Slot {
    /// A slot that has done nothing yet.
    fn new(
        inbound: bool,
        protected: bool,
        limit_range: Option<IpAddr>,
        group: Option<IpAddr>,
        now: Instant,
    ) -> Slot {
        Slot {
            inbound,
            protected,
            limit_range,
            group,
            since: now,
            verified: false,
            served: 0,
            rtt: None,
            last_active: now,
            standing: Standing::default(),
        }
    }
}

/// Every connected peer's slot (see the module docs).
#[derive(Debug)]
pub struct Slots {
    config: SlotConfig,
    peers: HashMap<PeerId, Slot>,
}

fn masked(ip: IpAddr, v4: u8, v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(v4.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// The IP address of a multiaddr, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

impl Slots {
    pub fn new(config: SlotConfig) -> Slots {
        Slots {
            config,
            peers: HashMap::new(),
        }
    }

    fn ranges(&self, addr: &Multiaddr) -> (Option<IpAddr>, Option<IpAddr>) {
        let Some(ip) = ip_of(addr) else {
            return (None, None);
        };
        let group = masked(ip, self.config.range_prefix_v4, self.config.range_prefix_v6);
        let exempt = ip.is_loopback() && !self.config.range_limit_loopback;
        (if exempt { None } else { Some(group) }, Some(group))
    }

    /// Inbound peers holding a slot.
    pub fn inbound(&self) -> usize {
        self.peers.values().filter(|s| s.inbound).count()
    }

    /// Is `peer` holding a slot?
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// A new inbound peer at `addr`. Admitted peers (also on `Evict`) are
    /// recorded; the evicted one is forgotten at once.
    pub fn admit_inbound(
        &mut self,
        peer: PeerId,
        addr: &Multiaddr,
        protected: bool,
        now: Instant,
    ) -> Admission {
        let (limit_range, group) = self.ranges(addr);
        let slot = Slot::new(true, protected, limit_range, group, now);
        if !protected && self.config.max_inbound_per_range > 0 {
            if let Some(range) = limit_range {
                let same = self
                    .peers
                    .values()
                    .filter(|s| s.inbound && !s.protected && s.limit_range == Some(range))
                    .count();
                if same >= self.config.max_inbound_per_range {
                    return Admission::Refuse(Refusal::RangeFull);
                }
            }
        }
        let admission = if self.inbound() < self.config.max_inbound {
            Admission::Admit
        } else {
            match self.victim(now) {
                Some(victim) => {
                    self.peers.remove(&victim);
                    Admission::Evict(victim)
                }
                None => return Admission::Refuse(Refusal::Full),
            }
        };
        self.peers.insert(peer, slot);
        admission
    }

    /// A peer we dialed connected: it holds no inbound slot and is never
    /// evicted.
    pub fn outbound(&mut self, peer: PeerId, addr: &Multiaddr, now: Instant) {
        let (limit_range, group) = self.ranges(addr);
        self.peers
            .insert(peer, Slot::new(false, false, limit_range, group, now));
    }

    /// The last connection to `peer` closed.
    pub fn remove(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// `peer` answered our genesis request with our genesis.
    pub fn verified(&mut self, peer: &PeerId, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.verified = true;
            s.last_active = now;
        }
    }

    /// `peer` answered one of our requests (`weight`: blocks, or 1).
    pub fn served(&mut self, peer: &PeerId, weight: u64, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.served = s.served.saturating_add(weight);
            s.last_active = now;
        }
    }

    /// `peer` sent us a request we answered.
    pub fn active(&mut self, peer: &PeerId, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.last_active = now;
        }
    }

    /// What sync now thinks of `peer`.
    pub fn standing(&mut self, peer: &PeerId, standing: Standing) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.standing = standing;
        }
    }

    /// A ping round trip to `peer`.
    pub fn rtt(&mut self, peer: &PeerId, rtt: Duration) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.rtt = Some(rtt);
        }
    }

    /// Whom a newcomer would evict now (see the module docs).
    pub fn victim(&self, now: Instant) -> Option<PeerId> {
        let grace = self.config.verify_grace;
        let candidates: Vec<(&PeerId, &Slot)> = self
            .peers
            .iter()
            .filter(|(_, s)| s.inbound && !s.protected)
            .collect();
        // Unverified past the grace period: the one that had the longest chance.
        if let Some((p, _)) = candidates
            .iter()
            .filter(|(_, s)| !s.verified && now.saturating_duration_since(s.since) >= grace)
            .min_by_key(|(p, s)| (s.since, **p))
        {
            return Some(**p);
        }
        let mut rest: Vec<(&PeerId, &Slot)> =
            candidates.into_iter().filter(|(_, s)| s.verified).collect();
        // Penalized by sync: the lowest score first, the youngest on a tie.
        if let Some((p, _)) = rest
            .iter()
            .filter(|(_, s)| s.standing.score < 0)
            .min_by_key(|(p, s)| (s.standing.score, std::cmp::Reverse(s.since), **p))
        {
            return Some(**p);
        }
        let n = self.config.protect_each;
        // Those on the majority's chain with the best scores.
        rest.sort_by_key(|(p, s)| {
            (
                !s.standing.with_majority,
                std::cmp::Reverse(s.standing.score),
                **p,
            )
        });
        let voters = rest
            .iter()
            .take(n)
            .take_while(|(_, s)| s.standing.with_majority)
            .count();
        rest.drain(..voters);
        protect(&mut rest, n, |(p, s)| (std::cmp::Reverse(s.served), **p));
        protect(&mut rest, n, |(p, s)| (s.rtt.unwrap_or(Duration::MAX), **p));
        protect(&mut rest, n, |(p, s)| (s.since, **p));
        if let Some((p, _)) = rest
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_active) >= self.config.idle_after)
            .min_by_key(|(p, s)| (s.last_active, **p))
        {
            return Some(**p);
        }
        let mut crowd: HashMap<Option<IpAddr>, usize> = HashMap::new();
        for (_, s) in &rest {
            *crowd.entry(s.group).or_default() += 1;
        }
        let (group, _) = crowd.into_iter().max_by_key(|(g, n)| (*n, *g))?;
        rest.iter()
            .filter(|(_, s)| s.group == group)
            .max_by_key(|(p, s)| (s.since, **p))
            .map(|(p, _)| **p)
    }
}

/// Removes from `rest` the `n` peers that sort first by `key`.
fn protect<K: Ord>(
    rest: &mut Vec<(&PeerId, &Slot)>,
    n: usize,
    key: impl Fn(&(&PeerId, &Slot)) -> K,
) {
    rest.sort_by_key(|e| key(e));
    let keep = n.min(rest.len());
    rest.drain(..keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_inbound: usize) -> SlotConfig {
        SlotConfig {
            max_inbound,
            max_inbound_per_range: 0,
            range_prefix_v4: 16,
            range_prefix_v6: 48,
            range_limit_loopback: false,
            verify_grace: Duration::from_secs(5),
            idle_after: Duration::from_secs(60),
            protect_each: 1,
        }
    }

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/1").parse().unwrap()
    }

    #[test]
    fn free_slots_admit_and_outbound_never_count() {
        let t0 = Instant::now();
        let mut s = Slots::new(config(1));
        s.outbound(PeerId::random(), &addr("10.0.0.1"), t0);
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.0.0.2"), false, t0),
            Admission::Admit
        );
        assert_eq!(s.inbound(), 1);
    }

    #[test]
    fn a_newcomer_evicts_the_longest_unverified_squatter_but_not_one_in_grace() {
        let t0 = Instant::now();
        let mut s = Slots::new(config(3));
        let old = PeerId::random();
        let younger = PeerId::random();
        let honest = PeerId::random();
        s.admit_inbound(old, &addr("127.0.0.1"), false, t0);
        s.admit_inbound(
            younger,
            &addr("127.0.0.1"),
            false,
            t0 + Duration::from_secs(1),
        );
        s.admit_inbound(
            honest,
            &addr("127.0.0.1"),
            false,
            t0 + Duration::from_secs(2),
        );
        s.verified(&honest, t0 + Duration::from_secs(2));
        // Nobody is past the grace period yet and the only verified peer is
        // protected three times over: the newcomer is refused.
        let t = t0 + Duration::from_secs(3);
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("127.0.0.1"), false, t),
            Admission::Refuse(Refusal::Full)
        );
        let t = t0 + Duration::from_secs(10);
        let new = PeerId::random();
        assert_eq!(
            s.admit_inbound(new, &addr("127.0.0.1"), false, t),
            Admission::Evict(old)
        );
        assert!(!s.contains(&old) && s.contains(&new) && s.contains(&honest));
        // The next one takes the other squatter, then the fresh newcomer once
        // its grace has run out — never the verified peer.
        let t = t + Duration::from_secs(1);
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("127.0.0.1"), false, t),
            Admission::Evict(younger)
        );
        let t = t + Duration::from_secs(10);
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("127.0.0.1"), false, t),
            Admission::Evict(new)
        );
        assert!(s.contains(&honest));
    }

    #[test]
    fn useful_fast_and_old_peers_are_protected_and_the_idle_one_goes() {
        let t0 = Instant::now();
        let mut cfg = config(5);
        cfg.verify_grace = Duration::ZERO;
        let mut s = Slots::new(cfg);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            s.admit_inbound(
                *p,
                &addr(&format!("10.{i}.0.1")),
                false,
                t0 + Duration::from_secs(i as u64),
            );
            s.verified(p, t0 + Duration::from_secs(i as u64));
        }
        let t = t0 + Duration::from_secs(100);
        let (oldest, server, fast, idle, busy) = (peers[0], peers[1], peers[2], peers[3], peers[4]);
        s.served(&server, 500, t);
        s.rtt(&fast, Duration::from_millis(1));
        s.rtt(&server, Duration::from_millis(50));
        s.rtt(&busy, Duration::from_millis(50));
        s.active(&busy, t);
        s.active(&fast, t);
        s.active(&oldest, t);
        assert_eq!(s.victim(t), Some(idle));
        s.active(&idle, t);
        // Nobody idle and nobody protected: the youngest of the most crowded
        // range (a and b share 10.1/16).
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut s3 = Slots::new(SlotConfig {
            protect_each: 0,
            verify_grace: Duration::ZERO,
            ..config(10)
        });
        for (p, ip, at) in [(a, "10.1.0.1", 1), (b, "10.1.7.7", 2), (c, "10.2.0.1", 3)] {
            s3.admit_inbound(p, &addr(ip), false, t0 + Duration::from_secs(at));
            s3.verified(&p, t0 + Duration::from_secs(5));
        }
        assert_eq!(s3.victim(t0 + Duration::from_secs(6)), Some(b));
    }

    #[test]
    fn protected_peers_are_never_evicted_and_always_admitted() {
        let t0 = Instant::now();
        let mut s = Slots::new(SlotConfig {
            max_inbound_per_range: 1,
            range_limit_loopback: true,
            ..config(1)
        });
        let boot = PeerId::random();
        assert_eq!(
            s.admit_inbound(boot, &addr("127.0.0.1"), true, t0),
            Admission::Admit
        );
        let t = t0 + Duration::from_secs(60);
        // Full of a protected peer: a stranger cannot evict it.
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.0.0.1"), false, t),
            Admission::Refuse(Refusal::Full)
        );
        // A second bootstrap peer is admitted past the range limit, evicting
        // the unverified stranger if there is one.
        let stranger = PeerId::random();
        let mut s = Slots::new(SlotConfig {
            max_inbound_per_range: 1,
            range_limit_loopback: true,
            ..config(1)
        });
        s.admit_inbound(stranger, &addr("127.0.0.1"), false, t0);
        assert_eq!(
            s.admit_inbound(boot, &addr("127.0.0.1"), true, t),
            Admission::Evict(stranger)
        );
    }

    #[test]
    fn the_range_limit_bites_per_prefix_and_spares_loopback_by_default() {
        let t0 = Instant::now();
        let mut s = Slots::new(SlotConfig {
            max_inbound_per_range: 2,
            ..config(100)
        });
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.1.0.1"), false, t0),
            Admission::Admit
        );
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.1.200.1"), false, t0),
            Admission::Admit
        );
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.1.3.3"), false, t0),
            Admission::Refuse(Refusal::RangeFull)
        );
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("10.2.0.1"), false, t0),
            Admission::Admit
        );
        for _ in 0..10 {
            assert_eq!(
                s.admit_inbound(PeerId::random(), &addr("127.0.0.1"), false, t0),
                Admission::Admit
            );
        }
        let mut s = Slots::new(SlotConfig {
            max_inbound_per_range: 2,
            range_limit_loopback: true,
            ..config(100)
        });
        s.admit_inbound(PeerId::random(), &addr("127.0.0.1"), false, t0);
        s.admit_inbound(PeerId::random(), &addr("127.0.0.2"), false, t0);
        assert_eq!(
            s.admit_inbound(PeerId::random(), &addr("127.0.0.3"), false, t0),
            Admission::Refuse(Refusal::RangeFull)
        );
    }

    /// Six verified loopback peers (one range) admitted a second apart:
    /// with one protection each, the first is protected for serving, the
    /// second for its ping, the third for its age; the crowd rule then takes
    /// the youngest (the sixth) unless sync's standing says otherwise.
    fn six_verified(t0: Instant) -> (Slots, Vec<PeerId>) {
        let mut s = Slots::new(SlotConfig {
            verify_grace: Duration::ZERO,
            ..config(6)
        });
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64 + 1);
            s.admit_inbound(*p, &addr("127.0.0.1"), false, at);
            s.verified(p, at);
        }
        s.served(&peers[0], 100, t0 + Duration::from_secs(7));
        s.rtt(&peers[1], Duration::from_millis(1));
        (s, peers)
    }

    #[test]
    fn penalized_peers_go_first_after_the_unverified_lowest_score_first() {
        let t0 = Instant::now();
        let (mut s, p) = six_verified(t0);
        let t = t0 + Duration::from_secs(8);
        assert_eq!(s.victim(t), Some(p[5]), "no standing: the crowd rule");
        // Penalized peers go before anyone the protections or the crowd rule
        // would keep, even the one that served us most.
        let penalized = |score| Standing {
            score,
            with_majority: false,
        };
        s.standing(&p[0], penalized(-30));
        s.standing(&p[2], penalized(-60));
        assert_eq!(s.victim(t), Some(p[2]), "lowest score first");
        s.remove(&p[2]);
        assert_eq!(s.victim(t), Some(p[0]));
        // ... but an unverified peer past its grace still goes before them.
        let stranger = PeerId::random();
        s.admit_inbound(stranger, &addr("10.9.0.1"), false, t);
        assert_eq!(s.victim(t), Some(stranger));
    }

    #[test]
    fn peers_with_the_majority_are_protected_best_score_first() {
        let t0 = Instant::now();
        let (mut s, p) = six_verified(t0);
        let t = t0 + Duration::from_secs(8);
        let voter = |score| Standing {
            score,
            with_majority: true,
        };
        // The youngest holds the majority's chain: protected, so the crowd
        // rule takes the next youngest.
        s.standing(&p[5], voter(10));
        assert_eq!(s.victim(t), Some(p[4]));
        // Two voters and one protection: the better score is kept.
        s.standing(&p[4], voter(3));
        assert_eq!(s.victim(t), Some(p[4]));
        s.standing(&p[4], voter(20));
        assert_eq!(s.victim(t), Some(p[5]));
    }
}
