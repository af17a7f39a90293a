//! The sync engine: keeps the node on the chain the honest majority holds.
//!
//! The logic is a set of pure state machines with no I/O and no clock —
//! [`peer_book`], [`target`], [`batch`] (the scheduler's unit, which owns its
//! state transitions), [`verifier`], [`fork_choice`] (whether we may leave our
//! chain) and [`reorg`] — composed by [`engine::SyncEngine`], which takes
//! events and time and emits actions. The [`driver`] task (with its store
//! worker, `store_worker`) is the only part that touches the network handle
//! and the store: it feeds the engine and executes its actions. Tests drive
//! the engine directly with scripted peers and simulated time in `sim`
//! (compiled for tests and with the `sim` feature only; see
//! `tests/sync_sim.rs`). Nothing here may reach the swarm or sled directly;
//! [`persist`] turns the engine's memory of peers into the store's records,
//! and the driver saves them through the store's API.

pub mod batch;
pub mod config;
pub mod driver;
pub mod engine;
pub mod fork_choice;
pub mod peer_book;
pub mod persist;
mod progress;
mod received;
pub mod reorg;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod store_worker;
pub mod target;
mod validation;
pub mod verifier;

pub use config::{Checkpoint, SyncConfig};
pub use driver::{SyncHandle, SyncSnapshot};
pub use engine::{Action, Failure, LocalChain, Request, Response, SyncEngine, SyncStatus};
