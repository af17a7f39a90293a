//! Misbehaving answers for testnet adversaries (cargo feature `testnet`
//! only; a release node has none of this). One mode per process, set at
//! start from the hidden `concord run --testnet-misbehave MODE` flag:
//! - `inflate_heights`: height answers claim a million blocks more than we
//!   hold (a claim we cannot back);
//! - `wrong_votes`: block-hash answers name a hash we do not hold;
//! - `garbage`: every answer is corrupted: the genesis and tip hashes and
//!   block-hash votes are rehashed, served blocks have a flipped body byte
//!   (so the first question any peer asks, our genesis, is already wrong);
//! - `stall`: the genesis question is answered truthfully (the peer takes
//!   us for one of its network), every other request is never answered
//!   (the response channel is kept, so the asker waits for its own timeout);
//! - `flood`: answers honestly, and keeps [`FLOOD_IN_FLIGHT`] height
//!   requests in flight to every connected peer, sending the next as each
//!   ends, at most [`FLOOD_PER_TICK`] a peer per [`FLOOD_TICK`] (far above
//!   an honest node's quota, see `NetConfig::quota_small_per_sec`).
//!
//! Owns only the twist of an answer and the flood's pace; `serve.rs` calls
//! [`stalls`]/[`hold`] and [`twist`] on its one answering path, and the
//! event loop's testnet room sends the flood.

use std::any::Any;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::chain::Hash;
use crate::net::blocks_wire::BlocksWire;
use crate::protocol::{BlockHashResponse, GenesisResponse, HeightResponse, GENESIS_PROTOCOL};

/// A misbehaviour mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Honest = 0,
    InflateHeights = 1,
    WrongVotes = 2,
    Garbage = 3,
    Stall = 4,
    Flood = 5,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "inflate_heights" => Mode::InflateHeights,
            "wrong_votes" => Mode::WrongVotes,
            "garbage" => Mode::Garbage,
            "stall" => Mode::Stall,
            "flood" => Mode::Flood,
            other => {
                return Err(format!(
                    "{other:?}: inflate_heights, wrong_votes, garbage, stall or flood"
                ))
            }
        })
    }
}

/// How often a flooder sends its burst.
pub const FLOOD_TICK: Duration = Duration::from_millis(100);
/// Most height requests a flooder sends each connected peer per
/// [`FLOOD_TICK`]: 500 a second, about four times the default quota's
/// refill.
pub const FLOOD_PER_TICK: usize = 50;
/// Height requests a flooder keeps in flight to each peer: the peer's cap
/// of concurrent height streams per connection (`behaviour.rs`). Sending a
/// tick's worth at once and waiting for the next tick left the streams idle
/// once the refusals came back, so under load the flood got through barely
/// faster than the quota refills; topping up as each request ends keeps the
/// cap full for as long as the round trip allows.
pub const FLOOD_IN_FLIGHT: usize = 32;

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

/// Whether requests of `protocol` are left unanswered.
pub fn stalls(protocol: &str) -> bool {
    stalls_in(mode(), protocol)
}

fn stalls_in(mode: u8, protocol: &str) -> bool {
    mode == Mode::Stall as u8 && protocol != GENESIS_PROTOCOL
}

/// Whether this node floods its peers with requests.
pub fn floods() -> bool {
    mode() == Mode::Flood as u8
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

/// Another hash than `hash`, derived from it.
fn corrupt(hash: &mut Hash) {
    *hash = Hash::digest(hash.as_bytes());
}

/// The answer as this mode gives it.
pub fn twist<R: 'static>(response: R) -> R {
    twist_in(mode(), response)
}

fn twist_in<R: 'static>(mode: u8, response: R) -> R {
    let mut boxed: Box<dyn Any> = Box::new(response);
    match mode {
        m if m == Mode::InflateHeights as u8 => {
            if let Some(h) = boxed.downcast_mut::<HeightResponse>() {
                h.height = h.height.saturating_add(1_000_000);
            }
        }
        m if m == Mode::WrongVotes as u8 => {
            if let Some(v) = boxed.downcast_mut::<BlockHashResponse>() {
                if let Some(hash) = v.hash.as_mut() {
                    corrupt(hash);
                }
            }
        }
        m if m == Mode::Garbage as u8 => {
            if let Some(g) = boxed.downcast_mut::<GenesisResponse>() {
                corrupt(&mut g.genesis);
            }
            if let Some(h) = boxed.downcast_mut::<HeightResponse>() {
                corrupt(&mut h.tip);
            }
            if let Some(v) = boxed.downcast_mut::<BlockHashResponse>() {
                if let Some(hash) = v.hash.as_mut() {
                    corrupt(hash);
                }
            }
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
    use crate::protocol::HEIGHT_PROTOCOL;

    // The process-wide mode is left alone: other tests run nodes in this
    // process.
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
        let genesis = GenesisResponse {
            genesis: Hash::ZERO,
        };
        let inflate = Mode::InflateHeights as u8;
        assert_eq!(twist_in(inflate, height).height, 1_000_010);
        assert_eq!(twist_in(inflate, vote), vote);
        let wrong = Mode::WrongVotes as u8;
        assert_ne!(twist_in(wrong, vote).hash, Some(Hash::ZERO));
        assert_eq!(twist_in(wrong, height), height);
        let garbage = Mode::Garbage as u8;
        assert_ne!(twist_in(garbage, genesis).genesis, Hash::ZERO);
        assert_ne!(twist_in(garbage, height).tip, Hash::ZERO);
        assert_eq!(twist_in(garbage, height).height, 10);
        assert_ne!(twist_in(garbage, vote).hash, Some(Hash::ZERO));
        let stall = Mode::Stall as u8;
        assert!(stalls_in(stall, HEIGHT_PROTOCOL));
        assert!(!stalls_in(stall, GENESIS_PROTOCOL));
        let flood = Mode::Flood as u8;
        assert!(!stalls_in(flood, HEIGHT_PROTOCOL));
        assert_eq!(twist_in(flood, height), height);
        let honest = Mode::Honest as u8;
        assert!(!stalls_in(honest, HEIGHT_PROTOCOL));
        assert_eq!(twist_in(honest, height), height);
        assert_eq!(twist_in(honest, genesis).genesis, Hash::ZERO);
        // Nothing set the mode in this process: the node is honest.
        assert!(!floods() && !stalls(HEIGHT_PROTOCOL));
        assert_eq!("flood".parse::<Mode>(), Ok(Mode::Flood));
        assert!("nonsense".parse::<Mode>().is_err());
    }
}
