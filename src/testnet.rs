//! Hooks only a testnet turns on (cargo feature `testnet`; a release node
//! has none of this), each set once at start from a hidden `concord run`
//! flag:
//! - a wall-clock offset (`--testnet-clock-offset-ms`): the node's own
//!   clock, read by the producer (which slot it is, the timestamps it
//!   signs) and by the sync driver's future-timestamp check (how far
//!   ahead a received block may be), so an offset node behaves in every
//!   respect like one whose system clock is off;
//! - a deny list (`--testnet-deny-file`): a file of peer ids, one a line,
//!   that the event loop's testnet room re-reads; a listed peer's
//!   connections are closed and new ones (dialed or inbound) refused;
//! - an advertised address (`--testnet-advertise`): the one address the
//!   node tells peers it is reached at (identify sends it instead of the
//!   listen addresses), so that a runner's relay in front of the listener
//!   (the loopback link shaper) is the only way in that peers learn of.
//!
//! Owns the settings only; the event loop applies the deny list and the
//! advertised address, the behaviour hides the listen addresses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use libp2p::Multiaddr;

static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
static DENY_FILE: OnceLock<PathBuf> = OnceLock::new();
static ADVERTISE: OnceLock<Multiaddr> = OnceLock::new();

/// Sets the offset added to the node's clock.
pub fn set_clock_offset_ms(offset: i64) {
    CLOCK_OFFSET_MS.store(offset, Ordering::Relaxed);
}

/// `real_ms` moved by the offset (never below 0).
pub fn offset_now_ms(real_ms: u64) -> u64 {
    shift(real_ms, CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

fn shift(real_ms: u64, offset: i64) -> u64 {
    real_ms.saturating_add_signed(offset)
}

/// Sets the deny list's file (once; a second call is ignored).
pub fn set_deny_file(path: PathBuf) {
    let _ = DENY_FILE.set(path);
}

/// The deny list's file, if one was given.
pub fn deny_file() -> Option<&'static Path> {
    DENY_FILE.get().map(PathBuf::as_path)
}

/// Sets the address to advertise instead of the listen addresses (once; a
/// second call is ignored).
pub fn set_advertise(addr: Multiaddr) {
    let _ = ADVERTISE.set(addr);
}

/// The address to advertise instead of the listen addresses, if one was given.
pub fn advertise() -> Option<&'static Multiaddr> {
    ADVERTISE.get()
}

#[cfg(test)]
mod tests {
    // The process-wide offset is left alone: the sync tests' drift check
    // reads it.
    #[test]
    fn offset_moves_the_clock_both_ways_and_stops_at_zero() {
        assert_eq!(super::shift(10_000, -5_000), 5_000);
        assert_eq!(super::shift(1_000, -5_000), 0);
        assert_eq!(super::shift(1_000, 250), 1_250);
    }
}
