//! Validation rules: a block against its parent, and a segment as a whole.
//!
//! STUB: signatures fixed, bodies to be written.

use crate::chain::{genesis::Genesis, Block, Hash};

/// What a new block is checked against: the block before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    pub height: u64,
    pub hash: Hash,
    pub timestamp_ms: u64,
}

/// One broken rule; `height` is the offending block's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("block {height}: expected height {expected}")]
    WrongHeight { height: u64, expected: u64 },
    #[error("block {height}: parent hash does not match the block before it")]
    WrongParent { height: u64 },
    #[error("block {height}: body hash does not match the body")]
    BodyHashMismatch { height: u64 },
    #[error("block {height}: body of {size} bytes exceeds the maximum")]
    BodyTooLarge { height: u64, size: usize },
    #[error("block {height}: producer is not an authority")]
    UnknownProducer { height: u64 },
    #[error("block {height}: producer is an authority but not the one of this slot")]
    WrongSlotProducer { height: u64 },
    #[error("block {height}: timestamp is before the parent's")]
    TimestampBeforeParent { height: u64 },
    #[error("block {height}: invalid signature")]
    BadSignature { height: u64 },
}

impl BlockRef {
    pub fn of(block: &Block) -> BlockRef { todo!() }
}

/// Validates one block against its parent (all rules, signature included).
pub fn validate_block(genesis: &Genesis, parent: &BlockRef, block: &Block) -> Result<(), ValidationError> { todo!() }

/// Validates consecutive blocks following `parent`, checking signatures in a
/// batch; on a batch failure, finds the first bad block. Returns the ref of the last block.
pub fn validate_segment(genesis: &Genesis, parent: &BlockRef, blocks: &[Block]) -> Result<BlockRef, ValidationError> { todo!() }
