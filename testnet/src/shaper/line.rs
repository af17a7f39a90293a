//! The delay line: when each chunk a relay read may be written on, given
//! the link shaping of the two nodes at the ends. Sans-IO: every call takes
//! `now`, nothing sleeps or reads a clock, so the tests drive it with
//! made-up instants and get the same answer every time.
//!
//! The model: each node has one link to a switch, shaped like `tc` on both
//! of its ends in the namespaces placement. A chunk from node A to node B
//! crosses A's link (A's upload) and B's link (B's download), so it waits
//! for A's upload bucket and B's download bucket (a rate limit is shared
//! by every connection of that node, like a real link), then for A's delay
//! and B's delay (each `delay ± jitter`, uniform). Chunks leave in the
//! order they came in: a chunk whose draw would overtake the one before it
//! waits for it (release = max(previous release, its own time)), so jitter
//! never reorders a byte stream. An end that is not one of the nodes (a
//! dialer the relay could not name) adds nothing.
//!
//! Owns the shaping state of every node ([`Links`]) and one direction's
//! queue ([`DelayLine`]); the sockets are [`super::relay`]'s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// How many bytes one direction of one connection may hold in its queue
/// before the relay stops reading from the sender (a router's buffer: the
/// sender's own TCP then backs off). With a delay `d`, one connection
/// carries at most `QUEUE_CAP / d` (1 MiB / 300 ms ≈ 3.4 MB/s).
pub const QUEUE_CAP: usize = 1024 * 1024;

/// How far behind a rate limit may put a connection's queue before the
/// relay stops reading from the sender: the `latency 400ms` of the token
/// bucket filter the namespaces placement uses for a rate, so both
/// placements hold the same backlog (a 2 Mbit/s link: 100 kB).
pub const QUEUE_LATENCY: Duration = Duration::from_millis(400);

/// Bytes a rate-limited link may send at once after being idle (the
/// token bucket's depth).
pub const BURST: f64 = 16.0 * 1024.0;

/// How one node's link is shaped (both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shape {
    /// Added to every chunk crossing the link, each way.
    pub delay: Duration,
    /// Each chunk's delay is drawn uniformly from `delay ± jitter` (not
    /// below zero).
    pub jitter: Duration,
    /// Bytes per second each way, `None`: unlimited.
    pub rate: Option<f64>,
}

impl Shape {
    pub fn is_none(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.rate.is_none()
    }
}

/// A token bucket that may go into debt: reserving more than it holds
/// returns the instant the debt is paid off, and later reservations queue
/// behind it (first come, first served).
#[derive(Debug)]
struct Bucket {
    /// Bytes available; negative: owed.
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: BURST,
            last: None,
        }
    }

    /// Takes `n` bytes at `now` from a bucket filling at `rate`; when they
    /// may go.
    fn reserve(&mut self, n: usize, now: Instant, rate: Option<f64>) -> Instant {
        let Some(rate) = rate.filter(|r| *r > 0.0) else {
            // Unlimited: a later limit starts from a full bucket.
            self.tokens = BURST;
            self.last = Some(now);
            return now;
        };
        let since = self
            .last
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        self.tokens = (self.tokens + since * rate).min(BURST) - n as f64;
        self.last = Some(now.max(self.last.unwrap_or(now)));
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// One node's link: its shape and its two buckets.
#[derive(Debug)]
struct Link {
    shape: Shape,
    up: Bucket,
    down: Bucket,
}

/// The links of every node of a run, shared by every relay task and
/// changed by the timeline while they run.
#[derive(Debug)]
pub struct Links {
    nodes: Vec<Mutex<Link>>,
}

impl Links {
    pub fn new(n: usize) -> Arc<Links> {
        Arc::new(Links {
            nodes: (0..n)
                .map(|_| {
                    Mutex::new(Link {
                        shape: Shape::default(),
                        up: Bucket::new(),
                        down: Bucket::new(),
                    })
                })
                .collect(),
        })
    }

    /// Shapes node `i`'s link from now on (chunks already queued keep their
    /// times).
    pub fn set(&self, i: usize, shape: Shape) {
        if let Some(link) = self.nodes.get(i) {
            link.lock().unwrap_or_else(|e| e.into_inner()).shape = shape;
        }
    }

    pub fn shape(&self, i: usize) -> Shape {
        self.nodes
            .get(i)
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).shape)
            .unwrap_or_default()
    }

    /// When `n` bytes read at `now` going from `from` to `to` are through
    /// both buckets, and when they may be written, before the order rule:
    /// that plus both delays drawn with `rng`.
    fn schedule(
        &self,
        from: Option<usize>,
        to: Option<usize>,
        n: usize,
        now: Instant,
        rng: &mut Rng,
    ) -> (Instant, Instant) {
        let mut sent = now;
        let mut delay = Duration::ZERO;
        for (end, upload) in [(from, true), (to, false)] {
            let Some(link) = end.and_then(|i| self.nodes.get(i)) else {
                continue;
            };
            let mut link = link.lock().unwrap_or_else(|e| e.into_inner());
            let shape = link.shape;
            let bucket = if upload { &mut link.up } else { &mut link.down };
            sent = sent.max(bucket.reserve(n, now, shape.rate));
            delay += rng.around(shape.delay, shape.jitter);
        }
        (sent, sent + delay)
    }
}

/// One direction of one relayed connection: the chunks read and not yet
/// written, each with the instant it may go.
#[derive(Debug)]
pub struct DelayLine {
    links: Arc<Links>,
    from: Option<usize>,
    to: Option<usize>,
    rng: Rng,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
    last_release: Option<Instant>,
    /// When the last chunk read is through the rate limits.
    last_sent: Option<Instant>,
}

impl DelayLine {
    /// Bytes from node `from` to node `to` (`None`: not a node of the run).
    pub fn new(links: Arc<Links>, from: Option<usize>, to: Option<usize>, seed: u64) -> DelayLine {
        DelayLine {
            links,
            from,
            to,
            rng: Rng::new(seed),
            queue: VecDeque::new(),
            queued: 0,
            last_release: None,
            last_sent: None,
        }
    }

    /// Whether the relay may read more from the sender at `now`: under
    /// [`QUEUE_CAP`] bytes queued, and the rate limits not more than
    /// [`QUEUE_LATENCY`] behind.
    pub fn has_room(&self, now: Instant) -> bool {
        self.queued < QUEUE_CAP && self.last_sent.is_none_or(|s| s <= now + QUEUE_LATENCY)
    }

    /// A chunk read at `now`; returns when it will go.
    pub fn push(&mut self, now: Instant, chunk: Vec<u8>) -> Instant {
        let (sent, own) = self
            .links
            .schedule(self.from, self.to, chunk.len(), now, &mut self.rng);
        self.last_sent = Some(sent);
        let release = self.last_release.map_or(own, |last| last.max(own));
        self.last_release = Some(release);
        self.queued += chunk.len();
        self.queue.push_back((release, chunk));
        release
    }

    /// When the next chunk may go, if any is queued.
    pub fn next_release(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// The next chunk, if its time has come at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_release()? > now {
            return None;
        }
        let (_, chunk) = self.queue.pop_front()?;
        self.queued -= chunk.len();
        Some(chunk)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pops everything due at each millisecond from `t0` to `t0 + until`:
    /// (millisecond it came out, chunk).
    fn drain(line: &mut DelayLine, t0: Instant, until: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for m in 0..=until {
            while let Some(c) = line.pop_due(t0 + ms(m)) {
                out.push((m, c));
            }
        }
        out
    }

    #[test]
    fn jitter_never_reorders_and_no_chunk_leaves_before_its_least_delay() {
        let links = Links::new(2);
        links.set(
            0,
            Shape {
                delay: ms(150),
                jitter: ms(100),
                rate: None,
            },
        );
        let mut line = DelayLine::new(links, Some(0), Some(1), 7);
        let t0 = Instant::now();
        // A chunk a millisecond: draws 50-250 ms would overtake each other.
        for k in 0..200u64 {
            line.push(t0 + ms(k), k.to_le_bytes().to_vec());
        }
        let out = drain(&mut line, t0, 1000);
        assert_eq!(out.len(), 200, "every chunk comes out");
        let mut overtaken = 0;
        for (k, (at, chunk)) in out.iter().enumerate() {
            assert_eq!(chunk, &(k as u64).to_le_bytes().to_vec(), "order kept");
            assert!(
                *at >= k as u64 + 50,
                "chunk {k} out at {at} ms, before delay - jitter"
            );
            assert!(
                *at <= k as u64 + 250 || out[k - 1].0 == *at,
                "chunk {k} held too long"
            );
            overtaken += usize::from(k > 0 && out[k - 1].0 == *at);
        }
        // The order rule did bite (some draws were earlier than the chunk before).
        assert!(overtaken > 10, "{overtaken}");
    }

    #[test]
    fn both_ends_delays_add_up_and_an_unknown_end_adds_nothing() {
        let links = Links::new(2);
        let d = |n| Shape {
            delay: ms(n),
            jitter: Duration::ZERO,
            rate: None,
        };
        links.set(0, d(100));
        links.set(1, d(30));
        let t0 = Instant::now();
        let mut both = DelayLine::new(links.clone(), Some(1), Some(0), 1);
        assert_eq!(both.push(t0, vec![1]), t0 + ms(130));
        let mut one = DelayLine::new(links.clone(), None, Some(0), 1);
        assert_eq!(one.push(t0, vec![1]), t0 + ms(100));
        // Not due a millisecond early, due on time.
        assert_eq!(one.pop_due(t0 + ms(99)), None);
        assert_eq!(one.pop_due(t0 + ms(100)), Some(vec![1]));
        // Cleared: new chunks go at once.
        links.set(0, Shape::default());
        links.set(1, Shape::default());
        assert_eq!(both.push(t0 + ms(200), vec![2]), t0 + ms(200));
    }

    #[test]
    fn a_rate_limit_spaces_chunks_and_is_shared_by_every_connection_of_the_node() {
        let links = Links::new(3);
        let rate = 100_000.0; // bytes a second
        links.set(
            0,
            Shape {
                rate: Some(rate),
                ..Shape::default()
            },
        );
        let t0 = Instant::now();
        // Two connections of node 0 upload 16 chunks of 10 kB each, at once.
        let mut a = DelayLine::new(links.clone(), Some(0), Some(1), 1);
        let mut b = DelayLine::new(links.clone(), Some(0), Some(2), 2);
        let mut last = t0;
        for _ in 0..8 {
            last = last.max(a.push(t0, vec![0; 10_000]));
            last = last.max(b.push(t0, vec![0; 10_000]));
        }
        // 160 kB, less the 16 KiB burst, at 100 kB/s.
        let expected = (160_000.0 - BURST) / rate;
        let took = (last - t0).as_secs_f64();
        assert!(
            (took - expected).abs() < 1e-6,
            "took {took} s, expected {expected} s"
        );
        // Downloads of node 0 are limited the same way, uploads of the others not.
        let mut down = DelayLine::new(links.clone(), Some(1), Some(0), 3);
        let mut other = DelayLine::new(links.clone(), Some(1), Some(2), 4);
        assert_eq!(other.push(t0, vec![0; 100_000]), t0);
        let at = down.push(t0, vec![0; 100_000]);
        assert!(at > t0 + ms(800), "{:?}", at - t0);
        // After an idle second the bucket is full again: a burst goes at once.
        let later = last + Duration::from_secs(1);
        assert_eq!(a.push(later, vec![0; 1000]), later);
    }

    #[test]
    fn the_queue_is_bounded() {
        let links = Links::new(1);
        links.set(
            0,
            Shape {
                delay: ms(100),
                ..Shape::default()
            },
        );
        let mut line = DelayLine::new(links, Some(0), None, 1);
        let t0 = Instant::now();
        let mut pushed = 0;
        while line.has_room(t0) {
            line.push(t0, vec![0; 16 * 1024]);
            pushed += 16 * 1024;
        }
        // A delay alone fills the bytes, not the time.
        assert_eq!(pushed, QUEUE_CAP);
        assert!(line.pop_due(t0 + ms(100)).is_some());
        assert!(line.has_room(t0 + ms(100)));
    }

    #[test]
    fn a_rate_limit_stops_reading_once_its_backlog_passes_the_queue_latency() {
        let links = Links::new(1);
        let rate = 250_000.0; // 2 Mbit/s
        links.set(
            0,
            Shape {
                rate: Some(rate),
                delay: ms(150),
                ..Shape::default()
            },
        );
        let mut line = DelayLine::new(links, None, Some(0), 1);
        let t0 = Instant::now();
        let mut pushed = 0usize;
        while line.has_room(t0) {
            line.push(t0, vec![0; 10_000]);
            pushed += 10_000;
        }
        // The burst plus 400 ms at the rate, give or take the last chunk.
        let most = BURST + rate * QUEUE_LATENCY.as_secs_f64() + 10_000.0;
        assert!(pushed as f64 <= most, "{pushed}");
        assert!(pushed as f64 > most - 20_000.0, "{pushed}");
        // Reading resumes as the backlog drains.
        assert!(line.has_room(t0 + ms(100)));
    }
}
