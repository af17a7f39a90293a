//! `concord-testnet`: runs a testnet of real `concord` processes described
//! by a TOML manifest, perturbs it, and checks that it held.
//!
//! The runner never links the node: it drives the `concord` binary
//! (`generate`, `key`, `run`) and observes it through its HTTP API and logs.
//! Modules, in the order a run uses them: [`manifest`] (the format and its
//! validation), [`setup`] (out dir, chains, keys, ports, command lines), [`netns`]
//! (the namespaces placement and its link faults; [`lossmask`]: loss
//! without netem), [`shaper`] (the
//! loopback placement's link shaping: a relay per node),
//! [`process`] (children, signals, cleanup), [`api`] (the node's HTTP API),
//! [`history`] (what was seen), [`rtt`] (ping round trips between `netem`
//! events), [`live`] (the terminal view), [`run`] (the
//! stages), [`chain_check`] and [`evaluate`] / [`assertions`] (the checks),
//! [`report`] and [`svg`] (the results folder), [`rng`] (the seeded draws).

pub mod api;
pub mod assertions;
pub mod chain_check;
pub mod evaluate;
pub mod faults;
pub mod history;
pub mod live;
pub mod lossmask;
pub mod manifest;
pub mod netns;
pub mod process;
pub mod report;
pub mod rng;
pub mod rtt;
pub mod run;
pub mod setup;
pub mod shaper;
pub mod svg;
