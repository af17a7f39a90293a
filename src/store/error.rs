//! The store's error type and the questions callers ask of it (is it a
//! full disk, is it the store's own damage).
//!
//! Only the type: it must not build errors from store state (damage is
//! recorded where it is found, in [`super::read`]).

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// [`Store::import_encoded`] was given bytes that are not the blocks'
    /// encoding (a caller's bug); nothing was written.
    #[error("the bytes given for the block at height {height} are not its encoding")]
    NotTheEncoding { height: u64 },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// The store's files are closed: a [`Store::reopen`] is under way or failed.
    #[error("the store is closed while it is reopened after a write error")]
    Closed,
    #[error("block file: {0}")]
    BlockFile(std::io::Error),
    #[error("data dir {0} is in use by another process (is another node running on it?)")]
    Locked(String),
    #[error("data dir belongs to another network: it holds genesis {stored}, this node runs genesis {expected}")]
    GenesisMismatch { stored: Hash, expected: Hash },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("segment does not extend the tip: tip is {tip_height}, segment starts at {start} (or its parent hash differs)")]
    NotLinked { tip_height: u64, start: u64 },
    #[error("cannot roll back to {target}: tip is {tip}")]
    BadRollback { target: u64, tip: u64 },
    #[error("data dir uses store layout {found}, this build reads only layouts 4 and {LAYOUT_VERSION}; sync into a fresh data dir")]
    UnsupportedLayout { found: u8 },
    /// A stored block's bytes are not what was written (its CRC, hash or
    /// encoding is wrong). The block is not handed out.
    #[error("store is damaged: the block at height {height} {what}; it is not served. Stop the node and run `concord check --data-dir {dir} --repair` (rolls back below it; sync fetches the rest again from peers)")]
    Damaged {
        height: u64,
        what: String,
        dir: String,
    },
    /// sled's files cannot be read (sled failed or panicked at open, or its
    /// records contradict each other). `blocks.dat` is not touched.
    #[error("the store's index in {dir} is damaged ({detail}); blocks.dat is untouched: rebuild the index from it with `concord check --data-dir {dir} --rebuild-index`")]
    IndexDamaged { dir: String, detail: String },
}

impl StoreError {
    /// Whether a write failed for lack of space (ENOSPC, or EDQUOT: the
    /// user's quota), in the block file or in sled.
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let io = match self {
            StoreError::BlockFile(io) => io,
            StoreError::Sled(sled::Error::Io(io)) => io,
            _ => return false,
        };
        matches!(io.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
            || io.kind() == std::io::ErrorKind::StorageFull
            || io.to_string().contains("No space left on device")
    }

    /// Whether this is the store's own damage (as opposed to an I/O or
    /// usage error).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Damaged { .. } | StoreError::IndexDamaged { .. } | StoreError::Corrupt(_)
        )
    }
}
