//! The chain store: sled behind a small typed API.
//!
//! STUB: signatures fixed, bodies to be written.

use std::path::Path;

use crate::chain::{genesis::Genesis, validate::BlockRef, Block, Hash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("data dir belongs to another network: it holds genesis {stored}, this node runs genesis {expected}")]
    GenesisMismatch { stored: Hash, expected: Hash },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("segment does not extend the tip: tip is {tip_height}, segment starts at {start} (or its parent hash differs)")]
    NotLinked { tip_height: u64, start: u64 },
    #[error("cannot roll back to {target}: tip is {tip}")]
    BadRollback { target: u64, tip: u64 },
}

/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store { /* sled::Db, tree, cached tip */ }

impl Store {
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> { todo!() }
    pub fn temporary(genesis: &Genesis) -> Result<Store, StoreError> { todo!() }
    pub fn genesis_hash(&self) -> Hash { todo!() }
    pub fn tip(&self) -> BlockRef { todo!() }
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> { todo!() }
    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreError> { todo!() }
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StoreError> { todo!() }
    pub fn blocks_range(&self, start: u64, count: u32, byte_budget: usize) -> Result<Vec<Block>, StoreError> { todo!() }
    pub fn import(&self, blocks: &[Block]) -> Result<BlockRef, StoreError> { todo!() }
    pub fn rollback_to(&self, height: u64) -> Result<BlockRef, StoreError> { todo!() }
    pub fn flush(&self) -> Result<(), StoreError> { todo!() }
}
