//! splitmix64, the runner's one source of reproducible draws: chaos
//! timelines from `chaos.seed`, jitter per relayed connection. Small, good
//! enough, and the same everywhere. Owns nothing else.

use std::time::Duration;

#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[mean - spread, mean + spread]`, not below zero.
    pub fn around(&mut self, mean: Duration, spread: Duration) -> Duration {
        if spread.is_zero() {
            return mean;
        }
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let offset = spread.as_secs_f64() * (2.0 * unit - 1.0);
        Duration::from_secs_f64((mean.as_secs_f64() + offset).max(0.0))
    }
}
