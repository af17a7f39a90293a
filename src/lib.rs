//! Concord: a libp2p node that keeps a blockchain synchronized across a
//! peer-to-peer network.
//!
//! Layout, lowest layer first (each module's doc says what it owns and what
//! it must not touch). A module uses only the ones listed before it, except
//! [`metrics`], which imports nothing of Concord: `net` and `sync` hand it
//! plain numbers ([`metrics::SyncFigures`]).
//! - [`metrics`]: Concord's Prometheus metrics (libp2p's own are registered next to them).
//! - [`chain`]: blocks, genesis, the validation rules (including the body
//!   size limit), generation. Pure; imports nothing else of Concord.
//! - [`protocol`]: wire messages, protocol names, wire limits. Imports only `chain`.
//! - [`store`]: the chain store (`blocks.dat` + sled). No validation, no network.
//! - [`net`]: the libp2p swarm and the cloneable [`net::Client`] handle.
//!   `net/transport.rs` is the one transport stack; `net/event_loop/` is the
//!   loop and its commands (`mod.rs`), inbound serving (`serve.rs`) and
//!   discovery (`discovery.rs`). Decides nothing about sync.
//! - [`sync`]: the sync engine: pure state machines (peer book, target,
//!   batches, verifier, fork choice, ancestor search) composed by
//!   `sync::engine` (its parts: checks, schedule, import, forks, requests,
//!   status) and the driver task that connects them to the network and the store.
//! - [`config`]: the config file format (`concord run --config`).
//! - [`producer`]: block production in our authority's slots, never two
//!   blocks for one slot (the signed-slot record in the data dir).
//! - [`api`]: the HTTP API (status, peers, blocks, manual sync, metrics).
//! - [`node`]: assembles a running node from a config.
//!
//! Outside the library: the `concord` binary (`src/main.rs`, commands in
//! `src/cli/`) only wires library calls together. Test and bench code is
//! not in a node: `sync::sim` (the simulated network) exists only under
//! `cfg(test)` or the `sim` feature, and the benchmark harness is the
//! `concord-bench` binary (`bench/`), built only with the `bench` feature,
//! which also adds the one hook it needs here (`NetConfig::serve_rate_limit`).
//! `cargo test` turns both features on (see Cargo.toml). The `testnet`
//! feature adds [`testnet`]'s hooks for `concord-testnet` (clock offset, deny list).

pub mod api;
pub mod chain;
pub mod config;
pub mod metrics;
pub mod net;
pub mod node;
pub mod producer;
pub mod protocol;
pub mod store;
pub mod sync;
#[cfg(feature = "testnet")]
pub mod testnet;
