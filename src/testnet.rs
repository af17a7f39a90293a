//! Hooks only a testnet turns on (cargo feature `testnet`; a release node
//! has none of this): a wall-clock offset for the producer, set once at
//! start from the hidden `concord run --testnet-clock-offset-ms` flag.
//!
//! Owns the offset only. The sync engine's drift check reads the real
//! clock (`sync::driver::now_ms`), so an offset node produces in the slots
//! and with the timestamps its skewed clock says, and judges others'
//! blocks by the true time.

use std::sync::atomic::{AtomicI64, Ordering};

static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Sets the offset added to the producer's clock.
pub fn set_clock_offset_ms(offset: i64) {
    CLOCK_OFFSET_MS.store(offset, Ordering::Relaxed);
}

/// `real_ms` moved by the offset (never below 0).
pub fn offset_now_ms(real_ms: u64) -> u64 {
    let offset = CLOCK_OFFSET_MS.load(Ordering::Relaxed);
    real_ms.saturating_add_signed(offset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn offset_moves_the_clock_both_ways_and_stops_at_zero() {
        super::set_clock_offset_ms(-5_000);
        assert_eq!(super::offset_now_ms(10_000), 5_000);
        assert_eq!(super::offset_now_ms(1_000), 0);
        super::set_clock_offset_ms(250);
        assert_eq!(super::offset_now_ms(1_000), 1_250);
        super::set_clock_offset_ms(0);
    }
}
