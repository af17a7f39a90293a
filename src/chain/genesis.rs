//! Genesis: the network's name, start time, slot length, authorities and
//! initial payload; the dev genesis and the dev authority key.
//!
//! STUB: signatures fixed, bodies to be written.

use std::path::Path;

use crate::chain::{Block, Hash, PublicKey, Signature};

/// Errors loading or parsing a genesis file.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid genesis file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A network's genesis. The genesis block (height 0) commits to every field:
/// its body is the canonical encoding of this spec, so two networks that differ
/// in anything have different genesis hashes.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub name: String,
    pub timestamp_ms: u64,
    pub slot_ms: u64,
    pub authorities: Vec<PublicKey>,
    pub payload: Vec<u8>,
    // private caches: genesis block, its hash, parsed verifying keys…
}

impl Genesis {
    /// The built-in `dev` genesis: one authority, [`AuthorityKey::dev`].
    pub fn dev() -> Genesis { todo!() }
    /// Reads a TOML genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> { todo!() }
    /// `"dev"` or a path.
    pub fn resolve(spec: &str) -> Result<Genesis, GenesisError> { todo!() }
    /// TOML text of this genesis (what `concord genesis` writes).
    pub fn to_toml(&self) -> String { todo!() }
    /// The genesis block (height 0, zero parent, zero producer and signature).
    pub fn block(&self) -> &Block { todo!() }
    /// Hash of the genesis block: the network's identity.
    pub fn hash(&self) -> Hash { todo!() }
    /// Slot of a timestamp: `timestamp_ms / slot_ms`.
    pub fn slot_of(&self, timestamp_ms: u64) -> u64 { todo!() }
    /// The authority allowed to produce in `slot`: `authorities[slot % n]`.
    pub fn producer_for_slot(&self, slot: u64) -> &PublicKey { todo!() }
    /// Whether `key` is one of the authorities.
    pub fn is_authority(&self, key: &PublicKey) -> bool { todo!() }
}

/// An authority's signing key (ed25519).
#[derive(Clone)]
pub struct AuthorityKey { /* ed25519_dalek::SigningKey */ }

impl AuthorityKey {
    /// The well-known dev authority, derived from a fixed public seed (like Substrate's //Alice).
    /// Never use it on a real network.
    pub fn dev() -> AuthorityKey { todo!() }
    pub fn from_seed(seed: [u8; 32]) -> AuthorityKey { todo!() }
    pub fn public(&self) -> PublicKey { todo!() }
    pub fn sign(&self, block_hash: &Hash) -> Signature { todo!() }
}
