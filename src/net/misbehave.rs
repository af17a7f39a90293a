//! Misbehaving answers for testnet adversaries (cargo feature `testnet`
//! only; a release node has none of this). One mode per process, set at
//! start from the hidden `concord run --testnet-misbehave MODE` flag:
//! - `inflate_heights`: height answers claim a million blocks more than we
//!   hold (a claim we cannot back);
//! - `wrong_votes`: block-hash answers name a hash we do not hold;
//! - `garbage`: served blocks have a flipped body byte (they fail
//!   validation);
//! - `stall`: no request is ever answered (the response channel is kept,
//!   so the peer waits for its own timeout).
//!
//! Owns only the twist of an answer; `serve.rs` calls [`stalls`]/[`hold`]
//! and [`twist`] on its one answering path.

use std::any::Any;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use crate::chain::Hash;
use crate::net::blocks_wire::BlocksWire;
use crate::protocol::{BlockHashResponse, HeightResponse};

/// A misbehaviour mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Honest = 0,
    InflateHeights = 1,
    WrongVotes = 2,
    Garbage = 3,
    Stall = 4,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "inflate_heights" => Mode::InflateHeights,
            "wrong_votes" => Mode::WrongVotes,
            "garbage" => Mode::Garbage,
            "stall" => Mode::Stall,
            other => {
                return Err(format!(
                    "{other:?}: inflate_heights, wrong_votes, garbage or stall"
                ))
            }
        })
    }
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Honest as u8);
/// Response channels a stalling node never answers (kept so the streams stay open).
static HELD: Mutex<Vec<Box<dyn Any + Send>>> = Mutex::new(Vec::new());
/// Bound on held channels: past it the oldest are dropped (the peer sees a
/// closed stream instead of a timeout).
const MAX_HELD: usize = 10_000;

pub fn set_mode(mode: Mode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

fn mode() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// Whether requests are left unanswered.
pub fn stalls() -> bool {
    mode() == Mode::Stall as u8
}

/// Keeps a response channel unanswered.
pub fn hold<T: Send + 'static>(channel: T) {
    if let Ok(mut held) = HELD.lock() {
        if held.len() >= MAX_HELD {
            held.remove(0);
        }
        held.push(Box::new(channel));
    }
}

/// The answer as this mode gives it.
pub fn twist<R: 'static>(response: R) -> R {
    let mut boxed: Box<dyn Any> = Box::new(response);
    match mode() {
        m if m == Mode::InflateHeights as u8 => {
            if let Some(h) = boxed.downcast_mut::<HeightResponse>() {
                h.height = h.height.saturating_add(1_000_000);
            }
        }
        m if m == Mode::WrongVotes as u8 => {
            if let Some(v) = boxed.downcast_mut::<BlockHashResponse>() {
                if let Some(hash) = v.hash.as_mut() {
                    *hash = Hash::digest(hash.as_bytes());
                }
            }
        }
        m if m == Mode::Garbage as u8 => {
            if let Some(b) = boxed.downcast_mut::<BlocksWire>() {
                // Served bytes are stored encodings: decode, flip a body
                // byte of each block, encode again (testnet only).
                let mut blocks = std::mem::replace(b, BlocksWire::Received(Default::default()))
                    .into_blocks()
                    .unwrap_or_default();
                for block in &mut blocks {
                    let mut body = block.body.to_vec();
                    match body.first_mut() {
                        Some(byte) => *byte ^= 0xff,
                        None => body.push(0xff),
                    }
                    block.body = body.into();
                }
                if let Ok(twisted) = BlocksWire::from_blocks(blocks) {
                    *b = twisted;
                }
            }
        }
        _ => {}
    }
    match boxed.downcast::<R>() {
        Ok(r) => *r,
        // The box holds an R: this arm is never taken.
        Err(_) => unreachable!("twist keeps the response type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the mode is process-wide.
    #[test]
    fn each_mode_twists_only_its_answer() {
        let height = HeightResponse {
            height: 10,
            tip: Hash::ZERO,
        };
        let vote = BlockHashResponse {
            height: 3,
            hash: Some(Hash::ZERO),
        };
        set_mode(Mode::InflateHeights);
        assert_eq!(twist(height).height, 1_000_010);
        assert_eq!(twist(vote), vote);
        set_mode(Mode::WrongVotes);
        assert_ne!(twist(vote).hash, Some(Hash::ZERO));
        assert_eq!(twist(height), height);
        set_mode(Mode::Stall);
        assert!(stalls());
        set_mode(Mode::Honest);
        assert!(!stalls());
        assert_eq!(twist(height), height);
        assert!("flood".parse::<Mode>().is_err());
    }
}
