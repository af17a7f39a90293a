//! Per-peer request quotas (token buckets per protocol, as Lighthouse's RPC
//! rate limiter), the detection of persistent offenders, and the aggregation
//! of peer-triggered log lines. Pure: time is passed in, nothing is sent.
//!
//! A request takes its cost from its peer's bucket for that protocol: one
//! token for the small protocols (a request), bytes for blocks (a fixed
//! charge on arrival, then the bytes actually served once the response is
//! built, so many small ranges cost what they serve, not a request each). A
//! bucket without the arrival cost refuses the request (counted by the
//! caller); a served response may leave it in debt, which the refill pays
//! back before the next request is served. The most a peer used in one
//! second and the lowest fill any bucket reached are kept per protocol
//! ([`Peak`]), to show how far honest use stays from the quota. A
//! peer is reported each time it is refused `flood_report_after` times within
//! `flood_window` (a window opens at its first refusal after the last report,
//! or after the last window ran out), so the caller can penalize it through
//! the peer book: two reports ban it, like any other misbehaviour, so a
//! persistent flooder is banned after `2 × flood_report_after` refusals,
//! however fast or slow it is refused, while refusals thinner than
//! `flood_report_after` a window are never reported. (Reporting at most once
//! per window made a ban take a minute at least, longer than a testnet run,
//! and a flooder that barely outpaced the refill was never banned.)
//!
//! Must not decide bans or touch the swarm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// One protocol's bucket size and refill rate (in requests, or bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds (the burst).
    pub burst: f64,
    /// Tokens added per second.
    pub per_sec: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Tokens taken since `second` began (for [`Peak::per_sec`]).
    second: Instant,
    used: f64,
}

/// How close the peers came to one protocol's quota since the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Most tokens one peer took within one second (requests or bytes).
    pub per_sec: f64,
    /// Lowest fill any bucket was left at, as a fraction of the burst
    /// (1: never drawn on; 0 or below: the peer was at or over its quota).
    pub low_water: f64,
}

/// Refusals counted toward a peer's next report.
#[derive(Debug, Clone, Copy)]
struct Offense {
    window_start: Instant,
    refused: u32,
}

/// What to do with an inbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within quota: serve it.
    Serve,
    /// Over quota: refuse it.
    Refuse,
    /// Over quota, and the peer has now been refused `flood_report_after`
    /// times within one window since its last report: report it as a
    /// flooder (the count starts again).
    RefuseAndReport,
}

/// The quotas of every connected peer.
#[derive(Debug)]
pub struct Quotas {
    buckets: HashMap<(PeerId, &'static str), Bucket>,
    offenses: HashMap<PeerId, Offense>,
    peaks: HashMap<&'static str, Peak>,
    flood_report_after: u32,
    flood_window: Duration,
}

impl Quotas {
    pub fn new(flood_report_after: u32, flood_window: Duration) -> Quotas {
        Quotas {
            buckets: HashMap::new(),
            offenses: HashMap::new(),
            peaks: HashMap::new(),
            flood_report_after: flood_report_after.max(1),
            flood_window,
        }
    }

    /// A request from `peer` on `protocol`, whose quota is `rate`, costing
    /// `cost` tokens on arrival (a cost above the burst is capped at it, so
    /// a full bucket always admits one request).
    pub fn check(
        &mut self,
        peer: PeerId,
        protocol: &'static str,
        rate: Rate,
        cost: f64,
        now: Instant,
    ) -> Verdict {
        let cap = rate.burst.max(1.0);
        let cost = cost.clamp(0.0, cap);
        let b = self.refill(peer, protocol, rate, now);
        if b.tokens >= cost {
            self.take(peer, protocol, cap, cost, now);
            return Verdict::Serve;
        }
        let o = self.offenses.entry(peer).or_insert(Offense {
            window_start: now,
            refused: 0,
        });
        if now.saturating_duration_since(o.window_start) >= self.flood_window {
            *o = Offense {
                window_start: now,
                refused: 0,
            };
        }
        o.refused = o.refused.saturating_add(1);
        if o.refused >= self.flood_report_after {
            // The next refusal opens a new window and a new count.
            self.offenses.remove(&peer);
            Verdict::RefuseAndReport
        } else {
            Verdict::Refuse
        }
    }

    /// `peer` was served `cost` more tokens' worth (the bytes of a built
    /// response). The bucket may go into debt, down to minus its burst.
    pub fn charge(
        &mut self,
        peer: PeerId,
        protocol: &'static str,
        rate: Rate,
        cost: f64,
        now: Instant,
    ) {
        let cap = rate.burst.max(1.0);
        self.refill(peer, protocol, rate, now);
        self.take(peer, protocol, cap, cost.max(0.0), now);
    }

    /// How close peers came to `protocol`'s quota (`None`: no request yet).
    pub fn peak(&self, protocol: &'static str) -> Option<Peak> {
        self.peaks.get(protocol).copied()
    }

    fn refill(
        &mut self,
        peer: PeerId,
        protocol: &'static str,
        rate: Rate,
        now: Instant,
    ) -> &mut Bucket {
        let cap = rate.burst.max(1.0);
        let b = self.buckets.entry((peer, protocol)).or_insert(Bucket {
            tokens: cap,
            at: now,
            second: now,
            used: 0.0,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_sec).min(cap);
        b.at = now;
        b
    }

    fn take(&mut self, peer: PeerId, protocol: &'static str, cap: f64, cost: f64, now: Instant) {
        let Some(b) = self.buckets.get_mut(&(peer, protocol)) else {
            return;
        };
        b.tokens = (b.tokens - cost).max(-cap);
        if now.saturating_duration_since(b.second) >= Duration::from_secs(1) {
            b.second = now;
            b.used = 0.0;
        }
        b.used += cost;
        let peak = self.peaks.entry(protocol).or_insert(Peak {
            per_sec: 0.0,
            low_water: 1.0,
        });
        peak.per_sec = peak.per_sec.max(b.used);
        peak.low_water = peak.low_water.min(b.tokens / cap);
    }

    /// `peer` is gone: its buckets go too (a reconnect starts full, which the
    /// connection limits and bans bound).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.retain(|(p, _), _| p != peer);
        self.offenses.remove(peer);
    }
}

/// Peer-triggered warnings, at most one per peer per window and at most
/// `per_window` in all; the rest are counted and summed up in one line.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    per_window: u32,
    window_start: Instant,
    logged: u32,
    suppressed: u64,
    peers: HashMap<PeerId, Instant>,
}

impl LogLimiter {
    pub fn new(window: Duration, per_window: u32, now: Instant) -> LogLimiter {
        LogLimiter {
            window,
            per_window,
            window_start: now,
            logged: 0,
            suppressed: 0,
            peers: HashMap::new(),
        }
    }

    /// May a warning caused by `peer` be logged now? If not, it is counted.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.logged = 0;
        }
        let fresh = self
            .peers
            .get(&peer)
            .is_none_or(|at| now.saturating_duration_since(*at) >= self.window);
        if fresh && self.logged < self.per_window {
            self.logged += 1;
            self.peers.insert(peer, now);
            if self.peers.len() > 4096 {
                let window = self.window;
                self.peers
                    .retain(|_, at| now.saturating_duration_since(*at) < window);
            }
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Warnings suppressed since the last call (for the summary line).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 4.0,
        per_sec: 2.0,
    };

    #[test]
    fn a_flooder_gets_its_burst_then_the_refill_rate_and_is_reported_per_n_refusals() {
        let t0 = Instant::now();
        let mut q = Quotas::new(10, Duration::from_secs(60));
        let flooder = PeerId::random();
        let honest = PeerId::random();
        let (mut served, mut refused, mut reports) = (0, 0, 0);
        // 1000 requests over 10 s: burst 4 + 2/s x 10 s = 24 served.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 10);
            match q.check(flooder, "/p", RATE, 1.0, now) {
                Verdict::Serve => served += 1,
                Verdict::RefuseAndReport => {
                    refused += 1;
                    reports += 1;
                }
                Verdict::Refuse => refused += 1,
            }
            // An honest peer at 1 request/s is always served.
            if i % 100 == 0 {
                assert_eq!(q.check(honest, "/p", RATE, 1.0, now), Verdict::Serve);
            }
        }
        assert!((23..=25).contains(&served), "served {served}");
        // One report per 10 refusals, all within the first window.
        assert_eq!(reports, refused / 10);
        // Another protocol has its own bucket.
        assert_eq!(
            q.check(flooder, "/q", RATE, 1.0, t0 + Duration::from_secs(10)),
            Verdict::Serve
        );
        q.forget(&flooder);
        assert_eq!(
            q.check(flooder, "/p", RATE, 1.0, t0 + Duration::from_secs(10)),
            Verdict::Serve
        );
    }

    #[test]
    fn two_reports_come_from_twice_n_refusals_inside_one_window() {
        let t0 = Instant::now();
        let mut q = Quotas::new(10, Duration::from_secs(60));
        let p = PeerId::random();
        // Empty the bucket (burst 4), then 20 refusals in one second.
        let mut verdicts = Vec::new();
        for i in 0..24u64 {
            let now = t0 + Duration::from_micros(i);
            let v = q.check(p, "/p", RATE, 1.0, now);
            if v != Verdict::Serve {
                verdicts.push(v);
            }
        }
        assert_eq!(verdicts.len(), 20);
        let reports: Vec<usize> = (0..verdicts.len())
            .filter(|&i| verdicts[i] == Verdict::RefuseAndReport)
            .collect();
        // The 10th and the 20th refusal: a second report, and so a ban,
        // within the same window as the first.
        assert_eq!(reports, [9, 19]);
    }

    #[test]
    fn refusals_thinner_than_n_per_window_are_never_reported() {
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        let mut q = Quotas::new(10, window);
        let p = PeerId::random();
        // A burst of 1 refilled at 1 per 100 s: every request after the first
        // is refused. 9 refusals a window, evenly spaced, for an hour.
        let slow = Rate {
            burst: 1.0,
            per_sec: 0.01,
        };
        assert_eq!(q.check(p, "/p", slow, 1.0, t0), Verdict::Serve);
        // 9 x 6.7 s is just over the window: never 10 refusals within one.
        let step = Duration::from_millis(6_700);
        let mut refused = 0;
        for i in 1..=540u32 {
            match q.check(p, "/p", slow, 1.0, t0 + step * i) {
                Verdict::RefuseAndReport => panic!("reported at refusal {i}"),
                Verdict::Refuse => refused += 1,
                Verdict::Serve => {}
            }
        }
        assert!(refused > 500, "refused {refused}");
        // Refusals bunched up, 10 or more within a window, are reported
        // (12 requests: at most one is served).
        let later = t0 + step * 600;
        let bunched = (0..12u32)
            .map(|i| {
                q.check(
                    p,
                    "/p",
                    slow,
                    1.0,
                    later + Duration::from_millis(u64::from(i)),
                )
            })
            .filter(|v| *v == Verdict::RefuseAndReport)
            .count();
        assert_eq!(bunched, 1);
    }

    /// A blocks-like quota in bytes: 1 MiB burst, 1 MiB/s, 4 KiB on arrival.
    const BYTES: Rate = Rate {
        burst: 1_048_576.0,
        per_sec: 1_048_576.0,
    };
    const ARRIVAL: f64 = 4096.0;

    #[test]
    fn many_small_ranges_cost_what_they_serve_and_a_big_reader_is_held_to_the_byte_rate() {
        let t0 = Instant::now();
        let mut q = Quotas::new(10, Duration::from_secs(60));
        // An honest sync of tiny blocks: 200 requests in one second, each
        // serving 300 bytes, costs 0.84 MiB: within this quota, where a count
        // quota of 64 requests a second would have refused most of them.
        let honest = PeerId::random();
        for i in 0..200u64 {
            let now = t0 + Duration::from_millis(i * 5);
            assert_eq!(
                q.check(honest, "/b", BYTES, ARRIVAL, now),
                Verdict::Serve,
                "request {i}"
            );
            q.charge(honest, "/b", BYTES, 300.0, now);
        }
        let peak = q.peak("/b").unwrap();
        assert!((peak.per_sec - 200.0 * 4396.0).abs() < 1.0, "{peak:?}");
        assert!(peak.low_water > 0.0, "{peak:?}");

        // A reader taking 256 KiB responses as fast as it may, for 10 s:
        // served the burst plus the refill, in bytes, and no more.
        let big = PeerId::random();
        let response = 256.0 * 1024.0;
        let mut served = 0u32;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            if q.check(big, "/b", BYTES, ARRIVAL, now) == Verdict::Serve {
                served += 1;
                q.charge(big, "/b", BYTES, response, now);
            }
        }
        let allowed = (BYTES.burst + 10.0 * BYTES.per_sec) / (ARRIVAL + response);
        assert!(
            f64::from(served) <= allowed + 1.0 && f64::from(served) >= allowed - 2.0,
            "served {served}, allowed {allowed:.1}"
        );
        // One response larger than the burst is still served from a full
        // bucket, and leaves it in debt (at most minus the burst).
        let huge = PeerId::random();
        assert_eq!(q.check(huge, "/b", BYTES, ARRIVAL, t0), Verdict::Serve);
        q.charge(huge, "/b", BYTES, 4.0 * BYTES.burst, t0);
        assert_eq!(q.check(huge, "/b", BYTES, ARRIVAL, t0), Verdict::Refuse);
        assert!(q.peak("/b").unwrap().low_water <= -0.99);
    }

    #[test]
    fn the_log_limiter_lets_one_line_per_peer_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(60), 3, t0);
        let p = PeerId::random();
        assert!(l.allow(p, t0));
        for _ in 0..1000 {
            assert!(!l.allow(p, t0));
        }
        assert!(l.allow(PeerId::random(), t0));
        assert!(l.allow(PeerId::random(), t0));
        assert!(!l.allow(PeerId::random(), t0), "global cap of 3");
        assert_eq!(l.take_suppressed(), 1001);
        assert_eq!(l.take_suppressed(), 0);
        assert!(l.allow(p, t0 + Duration::from_secs(61)));
    }
}
