//! The chain store: sled plus an append-only block file, behind a small typed API.
//!
//! Owns the on-disk layout of a data dir and keeps sled out of every other
//! module (no sled type appears in the public API except inside
//! [`StoreError::Sled`]). It must not validate blocks (that is
//! [`crate::chain::validate`]'s job, done by callers before [`Store::import`])
//! nor know about the network.
//!
//! Layout 4: the blocks' CBOR encodings sit in `blocks.dat` (see
//! [`block_file`] for why they are not sled values and how crashes are
//! handled); one sled tree holds everything else, so that every change (an
//! import, a rollback) is committed by one atomic `apply_batch`. Keys are
//! prefixed by one byte:
//!
//! | key                        | value                                         |
//! |----------------------------|-----------------------------------------------|
//! | `s` ++ first height (8 BE) | segment: offset in `blocks.dat` (8 BE) ++ per block its hash (32), encoded length (4 BE) and CRC-32 of the encoding (4 BE) |
//! | `m` ++ `genesis`           | genesis hash (32)                             |
//! | `m` ++ `tip`               | height (8 BE) ++ hash (32) ++ timestamp (8 BE) |
//! | `m` ++ `fileend`           | where the next import is written in `blocks.dat` (8 BE) |
//! | `m` ++ `layout`            | layout version (1 byte, currently 5)          |
//!
//! Each import (and the genesis block) writes one segment record for the
//! blocks it appended back to back (see [`segment`] for why not one record
//! per block; a big import is split into records of at most
//! [`segment::MAX_BLOCKS`] blocks), in the same batch as the tip; the segments together cover
//! heights `0..=tip` exactly, without gaps or overlaps. A block's location
//! is found by the last segment starting at or below its height; a range of
//! heights is usually one contiguous span of the file, read with one
//! `pread`. A rollback removes the segments above the new tip and cuts the
//! one that straddles it, in one batch.
//!
//! There is no lookup by hash: sync, serving and the API all address blocks
//! by height (a fork is found by comparing `hash_at` with a peer's hashes),
//! so the store keeps nothing in memory per block, and open reads only the
//! records at the ends of the chain. RSS and open time stay flat in the
//! chain's length (`cargo run --example store_scale`, BENCHMARKS.md).
//!
//! A second tree, `peers`, holds what the node remembers about its peers
//! between runs (scores, bans, the address book): see [`peers`]. It is not
//! part of the chain and never written in the chain's batches.
//!
//! Blocks go in and out as encodings too, so that sync and serving copy no
//! body: [`Store::import_encoded`] writes encodings as received (checked to
//! be the blocks' own), [`Store::blocks_encoded`] reads the stored bytes for
//! a response without decoding them.
//!
//! Every block the store hands out (to the API, to peers, to `concord
//! check`) is checked against the CRC-32 in its record first; a block that
//! fails is never returned: it is [`StoreError::Damaged`], logged once with
//! the repair command and remembered ([`Store::damaged_height`]). See
//! [`segment`] for why a CRC and [`check`] for the full verification.
//!
//! Layout 4 (the same without CRCs and `fileend`) is migrated at open: each
//! block is read, its hash checked and its CRC computed (see [`open`]).
//! Earlier layouts are refused with [`StoreError::UnsupportedLayout`]:
//! nothing was deployed with them; re-sync into a fresh data dir.
//!
//! The index can always be rebuilt from `blocks.dat` alone (see [`rebuild`]):
//! an open that finds sled empty but blocks in the file rebuilds it, and one
//! that finds sled damaged says so in one line ([`StoreError::IndexDamaged`])
//! naming `concord check --rebuild-index`.

mod block_file;
pub mod check;
mod error;
mod open;
pub mod peers;
mod read;
mod rebuild;
mod reopen;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::chain::{genesis::Genesis, validate::BlockRef, wire, Block, Hash};
use crate::protocol::limits::MAX_BLOCKS_PER_REQUEST;
use block_file::{BlockFile, Location};
use segment::{Entry, Segment};

pub use error::StoreError;
pub use read::EncodedBlocks;
pub use rebuild::set_index_aside;

/// sled's page cache. With block bodies in their own file sled holds only
/// segment records (36 bytes per block) and meta, so a small cache covers
/// the hot part of the tree; its default is 1 GiB.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

const TREE: &[u8] = b"concord-chain";
const PEERS_TREE: &[u8] = b"peers";
const META_GENESIS: &[u8] = b"mgenesis";
const META_TIP: &[u8] = b"mtip";
const META_LAYOUT: &[u8] = b"mlayout";
const META_FILE_END: &[u8] = b"mfileend";
const TIP_LEN: usize = 8 + 32 + 8;
/// Layout 5: block encodings in `blocks.dat`, one segment record per import
/// in sled with a CRC-32 per block, and the committed end of the file.
pub const LAYOUT_VERSION: u8 = 5;
/// Layout 4, migrated at open.
const LAYOUT_V4: u8 = 4;
/// No damaged block seen (the value of `Inner::damaged`).
const NO_DAMAGE: u64 = u64::MAX;

fn segment_key(first_height: u64) -> [u8; 9] {
    let mut k = [b's'; 9];
    k[1..].copy_from_slice(&first_height.to_be_bytes());
    k
}

fn height_from_key(k: &[u8]) -> Result<u64, StoreError> {
    k.get(1..)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("malformed key of {} bytes", k.len())))
}

fn encode_tip(tip: &BlockRef) -> [u8; TIP_LEN] {
    let mut v = [0u8; TIP_LEN];
    v[..8].copy_from_slice(&tip.height.to_be_bytes());
    v[8..40].copy_from_slice(&tip.hash.0);
    v[40..].copy_from_slice(&tip.timestamp_ms.to_be_bytes());
    v
}

fn decode_tip(v: &[u8]) -> Result<BlockRef, StoreError> {
    if v.len() != TIP_LEN {
        return Err(StoreError::Corrupt(format!(
            "tip record has {} bytes, expected {TIP_LEN}",
            v.len()
        )));
    }
    let be = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
    Ok(BlockRef {
        height: be(&v[..8]),
        hash: Hash::from_slice(&v[8..40]).unwrap_or(Hash::ZERO),
        timestamp_ms: be(&v[40..]),
    })
}

/// Appends the CBOR encoding of `block` to `buf`.
fn encode_block_into(buf: Vec<u8>, block: &Block) -> Vec<u8> {
    // cbor4ii appends to the Vec it is given; encoding plain data only fails
    // on allocation failure, which aborts anyway.
    match cbor4ii::serde::to_vec(buf, block) {
        Ok(v) => v,
        Err(_) => std::process::abort(),
    }
}

/// The open files. Swapped whole by [`Store::reopen`]; `None` only while
/// that is under way or after it failed (every file access is then
/// [`StoreError::Closed`] until a reopen succeeds).
struct Files {
    tree: sled::Tree,
    /// Peer scores, bans and the address book (see [`peers`]).
    peers: sled::Tree,
    /// Kept so the database outlives every handle to its tree and can be flushed.
    db: sled::Db,
    blocks: BlockFile,
}

struct Inner {
    files: RwLock<Option<Arc<Files>>>,
    /// What [`Store::reopen`] opens the files with.
    genesis: Genesis,
    genesis_hash: Hash,
    /// Brief locks only, so `tip()` never waits for a write to reach disk.
    tip: Mutex<BlockRef>,
    /// Serializes writers (the link check and the batch must see the same
    /// tip) and holds where the next import is appended in `blocks.dat`.
    writer: Mutex<u64>,
    /// The data dir (for repair hints); `None` for a temporary store.
    dir: Option<PathBuf>,
    /// The lowest height found damaged since open, or [`NO_DAMAGE`].
    damaged: AtomicU64,
    /// Reads that found a damaged block since open (exported as a metric).
    damaged_reads: prometheus_client::metrics::counter::Counter,
}

/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("genesis", &self.inner.genesis_hash)
            .field("tip", &self.tip())
            .finish()
    }
}

/// A poisoned lock only means another thread panicked; the data (a `Copy`
/// tip or an offset) is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// The open files, for the length of one operation.
    fn files(&self) -> Result<Arc<Files>, StoreError> {
        self.inner
            .files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// The last segment record starting at or below `height`.
    fn segment_at(tree: &sled::Tree, height: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        match tree
            .range(segment_key(0)..=segment_key(height))
            .next_back()
            .transpose()?
        {
            Some((k, v)) => Ok(Some((height_from_key(&k)?, v))),
            None => Ok(None),
        }
    }

    /// Where the block at `height` is. A height at or below the tip that no
    /// record covers is [`StoreError::IndexDamaged`]: open checks only the
    /// records at the ends of the chain (a whole scan would cost time in
    /// proportion to its length), so a record lost in the middle is found here.
    fn location(&self, height: u64) -> Result<Option<Location>, StoreError> {
        let found = match Self::segment_at(&self.files()?.tree, height)? {
            Some((first, v)) => Segment::parse(first, &v)?.location(height),
            None => None,
        };
        // The tip is read after the records: a rollback lowers it before it
        // removes them, so a height it removed is never taken for damage.
        if found.is_none() && height <= self.tip().height {
            return Err(StoreError::IndexDamaged {
                dir: self.dir_label(),
                detail: format!("no segment record holds height {height}, below the tip"),
            });
        }
        Ok(found)
    }

    fn dir_label(&self) -> String {
        match &self.inner.dir {
            Some(d) => d.display().to_string(),
            None => "DIR".into(),
        }
    }

    pub fn genesis_hash(&self) -> Hash {
        self.inner.genesis_hash
    }

    /// The highest stored block (cached: no disk access).
    pub fn tip(&self) -> BlockRef {
        *lock(&self.inner.tip)
    }

    /// Appends `blocks` on top of the tip in one atomic write and returns the
    /// new tip. The segment must link to the tip and be consecutive.
    ///
    /// Does NOT verify the blocks: callers run
    /// [`crate::chain::validate::validate_segment`] first. An empty segment is
    /// a no-op. Returns once sled has the import on disk; after an error
    /// (a full disk: [`StoreError::is_disk_full`]) nothing of it counts as
    /// stored and the store should be [reopened](Store::reopen) before the
    /// next write, as sled keeps failing once a write of its own failed.
    pub fn import(&self, blocks: &[Block]) -> Result<BlockRef, StoreError> {
        let bytes: usize = blocks.iter().map(wire::encoded_len).sum();
        let mut buf = Vec::with_capacity(bytes);
        for block in blocks {
            buf = encode_block_into(buf, block);
        }
        self.append(blocks, &buf)
    }

    /// [`Store::import`] for blocks whose encodings the caller already holds
    /// (as received): `encoded` is their canonical encodings (see
    /// [`crate::chain::wire`]) back to back, written to `blocks.dat` as they
    /// are. The same contract as `import` (validated, linked, consecutive).
    ///
    /// The bytes are checked to be the blocks' encoding, cheaply: each
    /// block's framing (about 190 bytes) is compared, and its body is either
    /// the very bytes inside `encoded` (a block parsed from it, whose body is
    /// a view into it) or compared. Otherwise [`StoreError::NotTheEncoding`]
    /// and nothing is written.
    pub fn import_encoded(&self, blocks: &[Block], encoded: &[u8]) -> Result<BlockRef, StoreError> {
        let mut at = 0usize;
        let mut prefix = Vec::with_capacity(192);
        for block in blocks {
            let not = || StoreError::NotTheEncoding {
                height: block.header.height,
            };
            prefix.clear();
            wire::encode_prefix(block, &mut prefix);
            let end = at + prefix.len() + block.body.len();
            let one = encoded.get(at..end).ok_or_else(not)?;
            let (head, body) = one.split_at(prefix.len());
            if head != prefix || (body.as_ptr() != block.body.as_ptr() && body != &block.body[..]) {
                return Err(not());
            }
            at = end;
        }
        if at != encoded.len() {
            return Err(StoreError::NotTheEncoding {
                height: self.tip().height + blocks.len() as u64 + 1,
            });
        }
        self.append(blocks, encoded)
    }

    /// Appends `blocks`, whose canonical encodings are `buf` back to back
    /// (checked by the callers), on top of the tip in one atomic write.
    fn append(&self, blocks: &[Block], buf: &[u8]) -> Result<BlockRef, StoreError> {
        let mut file_end = lock(&self.inner.writer);
        let tip = self.tip();
        if blocks.is_empty() {
            return Ok(tip);
        }
        let mut prev = tip;
        let mut entries = Vec::with_capacity(blocks.len());
        let mut at = 0usize;
        for block in blocks {
            let h = &block.header;
            if h.height != prev.height + 1 || h.parent != prev.hash {
                return Err(StoreError::NotLinked {
                    tip_height: tip.height,
                    start: blocks[0].header.height,
                });
            }
            let hash = h.hash();
            let len = wire::encoded_len(block);
            let crc = segment::checksum(&buf[at..at + len]);
            at += len;
            let len = u32::try_from(len).map_err(|_| {
                StoreError::Corrupt(format!("block at height {} is over 4 GiB", h.height))
            })?;
            entries.push(Entry { hash, len, crc });
            prev = BlockRef {
                height: h.height,
                hash,
                timestamp_ms: h.timestamp_ms,
            };
        }
        let first = tip.height + 1;
        let mut batch = sled::Batch::default();
        let mut offset = *file_end;
        for (i, chunk) in entries.chunks(segment::MAX_BLOCKS).enumerate() {
            let start = first + (i * segment::MAX_BLOCKS) as u64;
            batch.insert(&segment_key(start)[..], segment::encode(offset, chunk));
            offset += chunk.iter().map(|e| u64::from(e.len)).sum::<u64>();
        }
        batch.insert(META_TIP, &encode_tip(&prev)[..]);
        let new_end = *file_end + buf.len() as u64;
        batch.insert(META_FILE_END, &new_end.to_be_bytes()[..]);
        let files = self.files()?;
        // Bytes first, commit second: a crash in between leaves only bytes
        // past the committed end, which the next open cuts off.
        files.blocks.write_at(buf, *file_end)?;
        files.tree.apply_batch(batch)?;
        // The new tip is reported (to sync, the API, peers, the producer's
        // slot record) only once sled has it on disk: sled otherwise writes
        // in the background, and a write that fails there (a full disk)
        // loses a tip already reported, or a crash loses up to its flush
        // interval. It also makes a full disk fail this import, not a
        // later one. One flush per import, not per block.
        files.db.flush()?;
        *file_end = new_end;
        *lock(&self.inner.tip) = prev;
        Ok(prev)
    }

    /// Removes every block above `height` (and its segment entries) and makes
    /// the block at `height` the tip, atomically. Rolling back to the tip is a no-op.
    ///
    /// The removed blocks' bytes stay in `blocks.dat` (readers that fetched a
    /// location just before may still read them) until the next open cuts
    /// them off or, if blocks were imported after them, for good: reorgs are
    /// bounded by the sync config, so this dead space is too.
    pub fn rollback_to(&self, height: u64) -> Result<BlockRef, StoreError> {
        let writer = lock(&self.inner.writer);
        let tip = self.tip();
        if height > tip.height {
            return Err(StoreError::BadRollback {
                target: height,
                tip: tip.height,
            });
        }
        if height == tip.height {
            return Ok(tip);
        }
        let new_tip = {
            let loc = self.location(height)?.ok_or_else(|| {
                StoreError::Corrupt(format!("no block at height {height} below the tip"))
            })?;
            let block = self.read_block(height, &loc)?;
            BlockRef {
                height,
                hash: loc.hash,
                timestamp_ms: block.header.timestamp_ms,
            }
        };
        let mut batch = sled::Batch::default();
        // The segments overlapping `height + 1..`: the last one starting at
        // or below `height` (it may straddle) and every one above it.
        let files = self.files()?;
        let straddling = Self::segment_at(&files.tree, height)?;
        let above = files
            .tree
            .range(segment_key(height + 1)..=segment_key(u64::MAX))
            .map(|item| -> Result<(u64, sled::IVec), StoreError> {
                let (k, v) = item?;
                Ok((height_from_key(&k)?, v))
            });
        for item in straddling.into_iter().map(Ok).chain(above) {
            let (first, v) = item?;
            if first <= height {
                // At or below the new tip: keep the part up to `height`.
                let seg = Segment::parse(first, &v)?;
                let keep = (height - first + 1) as usize;
                if keep as u64 >= seg.len() {
                    continue;
                }
                batch.insert(&segment_key(first)[..], seg.truncated(keep));
            } else {
                batch.remove(&segment_key(first)[..]);
            }
        }
        batch.insert(META_TIP, &encode_tip(&new_tip)[..]);
        // The removed blocks' bytes stay below the file end: an open must not
        // take them for an import that did not commit.
        batch.insert(META_FILE_END, &writer.to_be_bytes()[..]);
        // The tip comes down before the records go, so that a reader never
        // sees a height at or below the tip without its record (see
        // `location`); it goes back up if the batch fails.
        *lock(&self.inner.tip) = new_tip;
        if let Err(e) = files.tree.apply_batch(batch) {
            *lock(&self.inner.tip) = tip;
            return Err(e.into());
        }
        Ok(new_tip)
    }

    /// Waits until everything written so far is on disk: the block file
    /// first, so that sled never holds a durable location whose bytes are not.
    pub fn flush(&self) -> Result<(), StoreError> {
        let files = self.files()?;
        files.blocks.sync()?;
        files.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
