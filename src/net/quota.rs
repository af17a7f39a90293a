//! Per-peer request quotas (token buckets per protocol, as Lighthouse's RPC
//! rate limiter), the detection of persistent offenders, and the aggregation
//! of peer-triggered log lines. Pure: time is passed in, nothing is sent.
//!
//! A request takes one token from its peer's bucket for that protocol; an
//! empty bucket means the request is refused (and counted by the caller). A
//! peer refused `flood_report_after` times within `flood_window` is reported
//! once per window, so the caller can penalize it through the peer book (two
//! reports ban it, like any other misbehaviour).
//!
//! Must not decide bans or touch the swarm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// One protocol's bucket size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds (the burst).
    pub burst: u32,
    /// Tokens added per second.
    pub per_sec: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Offense {
    window_start: Instant,
    refused: u32,
    reported: bool,
}

/// What to do with an inbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within quota: serve it.
    Serve,
    /// Over quota: refuse it.
    Refuse,
    /// Over quota, and the peer has now been refused often enough in this
    /// window to be reported as a flooder (once per window).
    RefuseAndReport,
}

/// The quotas of every connected peer.
#[derive(Debug)]
pub struct Quotas {
    buckets: HashMap<(PeerId, &'static str), Bucket>,
    offenses: HashMap<PeerId, Offense>,
    flood_report_after: u32,
    flood_window: Duration,
}

impl Quotas {
    pub fn new(flood_report_after: u32, flood_window: Duration) -> Quotas {
        Quotas {
            buckets: HashMap::new(),
            offenses: HashMap::new(),
            flood_report_after: flood_report_after.max(1),
            flood_window,
        }
    }

    /// A request from `peer` on `protocol`, whose quota is `rate`.
    pub fn check(
        &mut self,
        peer: PeerId,
        protocol: &'static str,
        rate: Rate,
        now: Instant,
    ) -> Verdict {
        let cap = f64::from(rate.burst.max(1));
        let b = self.buckets.entry((peer, protocol)).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Serve;
        }
        let o = self.offenses.entry(peer).or_insert(Offense {
            window_start: now,
            refused: 0,
            reported: false,
        });
        if now.saturating_duration_since(o.window_start) >= self.flood_window {
            *o = Offense {
                window_start: now,
                refused: 0,
                reported: false,
            };
        }
        o.refused = o.refused.saturating_add(1);
        if !o.reported && o.refused >= self.flood_report_after {
            o.reported = true;
            Verdict::RefuseAndReport
        } else {
            Verdict::Refuse
        }
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
        burst: 4,
        per_sec: 2.0,
    };

    #[test]
    fn a_flooder_gets_its_burst_then_the_refill_rate_and_is_reported_once() {
        let t0 = Instant::now();
        let mut q = Quotas::new(10, Duration::from_secs(60));
        let flooder = PeerId::random();
        let honest = PeerId::random();
        let mut served = 0;
        let mut reports = 0;
        // 1000 requests over 10 s: burst 4 + 2/s x 10 s = 24 served.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 10);
            match q.check(flooder, "/p", RATE, now) {
                Verdict::Serve => served += 1,
                Verdict::RefuseAndReport => reports += 1,
                Verdict::Refuse => {}
            }
            // An honest peer at 1 request/s is always served.
            if i % 100 == 0 {
                assert_eq!(q.check(honest, "/p", RATE, now), Verdict::Serve);
            }
        }
        assert!((23..=25).contains(&served), "served {served}");
        assert_eq!(reports, 1);
        // Another protocol has its own bucket.
        assert_eq!(
            q.check(flooder, "/q", RATE, t0 + Duration::from_secs(10)),
            Verdict::Serve
        );
        // A new window reports again.
        let later = t0 + Duration::from_secs(120);
        let mut again = 0;
        for i in 0..100u64 {
            if q.check(flooder, "/p", RATE, later + Duration::from_micros(i))
                == Verdict::RefuseAndReport
            {
                again += 1;
            }
        }
        assert_eq!(again, 1);
        q.forget(&flooder);
        assert_eq!(q.check(flooder, "/p", RATE, later), Verdict::Serve);
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
