//! The chain: blocks, genesis, validation rules and deterministic chain generation.
//!
//! Owns what makes a block valid. It is pure: no I/O except reading a genesis
//! file in [`genesis`]; storage is [`crate::store`]'s job.

pub mod generate;
pub mod genesis;
pub mod types;
pub mod validate;

pub use genesis::{AuthorityKey, Genesis};
pub use types::{Block, BlockHeader, Hash, PublicKey, Signature};
pub use validate::{BlockRef, ValidationError, MAX_BODY_SIZE};
