//! Concord: a libp2p node that keeps a blockchain synchronized across a
//! peer-to-peer network.
//!
//! Layout (each module's doc says what it owns and what it must not touch):
//! - [`chain`]: blocks, genesis, validation, generation — pure.
//! - [`store`]: the sled-backed chain store.
//! - [`protocol`]: wire messages, protocol names, limits.
//! - [`net`]: the libp2p swarm, its event loop and the cloneable [`net::Client`] handle.
//! - [`sync`]: the sync engine: pure state machines (peer book, target,
//!   scheduler, verifier) and the driver task that connects them to the network.
//! - [`config`]: the config file format (`concord run --config`).
//! - [`node`]: assembles a running node from a config.
//! - [`metrics`]: Concord's Prometheus metrics (libp2p's own are registered next to them).
//! - [`api`]: the HTTP API (status, peers, blocks, manual sync, metrics).

pub mod api;
pub mod chain;
pub mod config;
pub mod metrics;
pub mod net;
pub mod node;
pub mod protocol;
pub mod store;
pub mod sync;
