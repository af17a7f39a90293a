//! The serving throttle of the `bench` feature: holds `/concord/blocks/1`
//! responses back to at most [`super::NetConfig::serve_rate_limit`] bytes per
//! second, so the benchmark (and tests) can play a slow seeder with a real node.
//!
//! Compiled only with the `bench` feature: a node binary has no way to slow
//! its own serving. Owns nothing but the pacing; what is served and when it is
//! read is the serving path's business.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A shared bytes/s limit on blocks responses: each response reserves its
/// share of time after the previous one and is held back until then.
#[derive(Clone)]
pub(crate) struct Throttle {
    bytes_per_sec: u64,
    next_free: Arc<Mutex<Instant>>,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec,
            next_free: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// When a response of `bytes` may go out.
    pub(crate) fn reserve(&self, bytes: u64) -> Instant {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec.max(1) as f64);
        // A poisoned lock only means another response task panicked mid-update;
        // the instant inside is still a valid schedule.
        let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*next).max(Instant::now());
        *next = start + cost;
        *next
    }

    /// Waits until a response of `bytes` may go out.
    pub(crate) async fn wait(&self, bytes: u64) {
        tokio::time::sleep_until(self.reserve(bytes)).await;
    }
}
