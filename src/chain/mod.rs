//! The chain: blocks, genesis, validation rules and deterministic chain generation.
//!
//! Owns what makes a block valid. It is pure: no I/O except reading a genesis
//! file in [`genesis`] and creating or reading an authority key file in
//! [`authority`]; storage is [`crate::store`]'s job.

pub mod authority;
pub mod equivocation;
pub mod generate;
pub mod genesis;
pub mod types;
pub mod validate;
pub mod wire;

pub use authority::{AuthorityKey, AuthorityKeyError};
pub use genesis::Genesis;
pub use types::{Block, BlockHeader, Hash, PublicKey, Signature};
pub use validate::{BlockRef, ValidationError, MAX_BODY_SIZE};
