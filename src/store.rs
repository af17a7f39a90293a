//! The chain store: sled behind a small typed API.
//!
//! Owns the on-disk layout of a data dir and keeps sled out of every other
//! module (no sled type appears in the public API except inside
//! [`StoreError::Sled`]). It must not validate blocks (that is
//! [`crate::chain::validate`]'s job, done by callers before [`Store::import`])
//! nor know about the network.
//!
//! Layout: one sled tree, so that every change (an import, a rollback) is one
//! atomic `apply_batch`. Keys are prefixed by one byte:
//!
//! | key                        | value                                         |
//! |----------------------------|-----------------------------------------------|
//! | `b` ++ height (8 bytes BE) | block hash (32) ++ encoded block (CBOR)       |
//! | `h` ++ block hash (32)     | height (8 bytes BE)                           |
//! | `m` ++ `genesis`           | genesis hash (32)                             |
//! | `m` ++ `tip`               | height (8 BE) ++ hash (32) ++ timestamp (8 BE) |
//!
//! Storing the hash next to the block lets `hash_at` and the hash index work
//! without re-hashing, and big-endian heights make a range scan return blocks
//! in height order.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chain::{genesis::Genesis, validate::BlockRef, Block, Hash};
use crate::protocol::limits::MAX_BLOCKS_PER_REQUEST;

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

const TREE: &[u8] = b"concord-chain";
const META_GENESIS: &[u8] = b"mgenesis";
const META_TIP: &[u8] = b"mtip";
const TIP_LEN: usize = 8 + 32 + 8;

// sled's default log segment size (512 KiB) is kept on purpose: 2 MiB
// segments cut small-block import CPU by ~25-40% but raised peak RSS about
// sixfold (2.9 GB instead of 0.5 GB after 500k blocks), and 4 MiB slowed 64 KiB
// blocks. sled also refuses to open a store with another segment size.

fn block_key(height: u64) -> [u8; 9] {
    let mut k = [b'b'; 9];
    k[1..].copy_from_slice(&height.to_be_bytes());
    k
}

fn hash_key(hash: &Hash) -> [u8; 33] {
    let mut k = [b'h'; 33];
    k[1..].copy_from_slice(&hash.0);
    k
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

fn block_value(hash: &Hash, block: &Block) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + block.body.len() + 200);
    v.extend_from_slice(&hash.0);
    // cbor4ii appends to the Vec it is given; encoding plain data only fails
    // on allocation failure, which aborts anyway.
    match cbor4ii::serde::to_vec(v, block) {
        Ok(v) => v,
        Err(_) => std::process::abort(),
    }
}

/// Splits a `b` record into the stored hash and the encoded block.
fn split_block_value(height: u64, v: &[u8]) -> Result<(Hash, &[u8]), StoreError> {
    if v.len() < 32 {
        return Err(StoreError::Corrupt(format!(
            "block record at height {height} is {} bytes",
            v.len()
        )));
    }
    let (h, rest) = v.split_at(32);
    Ok((Hash::from_slice(h).unwrap_or(Hash::ZERO), rest))
}

fn decode_block(height: u64, bytes: &[u8]) -> Result<Block, StoreError> {
    Block::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("block at height {height} does not decode: {e}")))
}

struct Inner {
    tree: sled::Tree,
    /// Kept so the database outlives every handle to its tree and can be flushed.
    db: sled::Db,
    genesis_hash: Hash,
    /// Brief locks only, so `tip()` never waits for a write to reach disk.
    tip: Mutex<BlockRef>,
    /// Serializes writers: the link check and the batch must see the same tip.
    writer: Mutex<()>,
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
/// tip or nothing) is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating if needed) the store in `path`. A new store gets the
    /// genesis block; an existing one must hold the same genesis.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(sled::Error::Io)?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Self::init(db, genesis)
    }

    /// A store that lives only as long as it is open (tests, benchmarks).
    pub fn temporary(genesis: &Genesis) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Self::init(db, genesis)
    }

    fn init(db: sled::Db, genesis: &Genesis) -> Result<Store, StoreError> {
        let tree = db.open_tree(TREE)?;
        let expected = genesis.hash();
        let tip = match tree.get(META_GENESIS)? {
            Some(stored) => {
                let stored = Hash::from_slice(&stored).ok_or_else(|| {
                    StoreError::Corrupt(format!("genesis record has {} bytes", stored.len()))
                })?;
                if stored != expected {
                    return Err(StoreError::GenesisMismatch { stored, expected });
                }
                let tip =
                    decode_tip(&tree.get(META_TIP)?.ok_or_else(|| {
                        StoreError::Corrupt("genesis recorded but no tip".into())
                    })?)?;
                let stored_tip = tree.get(block_key(tip.height))?.ok_or_else(|| {
                    StoreError::Corrupt(format!("no block at tip height {}", tip.height))
                })?;
                if split_block_value(tip.height, &stored_tip)?.0 != tip.hash {
                    return Err(StoreError::Corrupt(format!(
                        "tip hash differs from the block at height {}",
                        tip.height
                    )));
                }
                tip
            }
            None => {
                if !tree.is_empty() {
                    return Err(StoreError::Corrupt(
                        "store has data but no genesis record".into(),
                    ));
                }
                let block = genesis.block();
                let tip = BlockRef::of(block);
                let mut batch = sled::Batch::default();
                batch.insert(&block_key(0)[..], block_value(&tip.hash, block));
                batch.insert(&hash_key(&tip.hash)[..], &0u64.to_be_bytes()[..]);
                batch.insert(META_GENESIS, &expected.0[..]);
                batch.insert(META_TIP, &encode_tip(&tip)[..]);
                tree.apply_batch(batch)?;
                db.flush()?;
                tip
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                tree,
                db,
                genesis_hash: expected,
                tip: Mutex::new(tip),
                writer: Mutex::new(()),
            }),
        })
    }

    pub fn genesis_hash(&self) -> Hash {
        self.inner.genesis_hash
    }

    /// The highest stored block (cached: no disk access).
    pub fn tip(&self) -> BlockRef {
        *lock(&self.inner.tip)
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        match self.inner.tree.get(block_key(height))? {
            Some(v) => Ok(Some(decode_block(
                height,
                split_block_value(height, &v)?.1,
            )?)),
            None => Ok(None),
        }
    }

    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        match self.inner.tree.get(block_key(height))? {
            Some(v) => Ok(Some(split_block_value(height, &v)?.0)),
            None => Ok(None),
        }
    }

    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        match self.inner.tree.get(hash_key(hash))? {
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("hash index entry for {hash} is {} bytes", v.len()))
                })?;
                Ok(Some(u64::from_be_bytes(bytes)))
            }
            None => Ok(None),
        }
    }

    /// Consecutive blocks from `start`: at most `min(count, MAX_BLOCKS_PER_REQUEST)`,
    /// and no more than fit in `byte_budget` bytes of encoded blocks — except
    /// that the block at `start` is always returned if it exists, however big.
    /// Empty if there is no block at `start` (or `count` is 0).
    pub fn blocks_range(
        &self,
        start: u64,
        count: u32,
        byte_budget: usize,
    ) -> Result<Vec<Block>, StoreError> {
        let max = count.min(MAX_BLOCKS_PER_REQUEST) as usize;
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let mut used = 0usize;
        let end = block_key(u64::MAX);
        for (i, item) in self.inner.tree.range(block_key(start)..=end).enumerate() {
            // Wrapping: `start` comes from a peer and may be u64::MAX.
            let expected_height = start.wrapping_add(i as u64);
            let (k, v) = item?;
            let height = u64::from_be_bytes(
                k[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed block key".into()))?,
            );
            // A gap means a concurrent rollback removed the rest; what we have is still consecutive.
            if height != expected_height {
                break;
            }
            let encoded = split_block_value(height, &v)?.1;
            if !out.is_empty() && used + encoded.len() > byte_budget {
                break;
            }
            used += encoded.len();
            out.push(decode_block(height, encoded)?);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }

    /// Appends `blocks` on top of the tip in one atomic write and returns the
    /// new tip. The segment must link to the tip and be consecutive.
    ///
    /// Does NOT verify the blocks: callers run
    /// [`crate::chain::validate::validate_segment`] first. An empty segment is
    /// a no-op.
    pub fn import(&self, blocks: &[Block]) -> Result<BlockRef, StoreError> {
        let _writer = lock(&self.inner.writer);
        let tip = self.tip();
        let mut batch = sled::Batch::default();
        let mut prev = tip;
        for block in blocks {
            let h = &block.header;
            if h.height != prev.height + 1 || h.parent != prev.hash {
                return Err(StoreError::NotLinked {
                    tip_height: tip.height,
                    start: blocks[0].header.height,
                });
            }
            let hash = h.hash();
            batch.insert(&block_key(h.height)[..], block_value(&hash, block));
            batch.insert(&hash_key(&hash)[..], &h.height.to_be_bytes()[..]);
            prev = BlockRef {
                height: h.height,
                hash,
                timestamp_ms: h.timestamp_ms,
            };
        }
        if blocks.is_empty() {
            return Ok(tip);
        }
        batch.insert(META_TIP, &encode_tip(&prev)[..]);
        self.inner.tree.apply_batch(batch)?;
        *lock(&self.inner.tip) = prev;
        Ok(prev)
    }

    /// Removes every block above `height` (and its hash index entry) and makes
    /// the block at `height` the tip, atomically. Rolling back to the tip is a no-op.
    pub fn rollback_to(&self, height: u64) -> Result<BlockRef, StoreError> {
        let _writer = lock(&self.inner.writer);
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
            let v = self.inner.tree.get(block_key(height))?.ok_or_else(|| {
                StoreError::Corrupt(format!("no block at height {height} below the tip"))
            })?;
            let (hash, encoded) = split_block_value(height, &v)?;
            let block = decode_block(height, encoded)?;
            BlockRef {
                height,
                hash,
                timestamp_ms: block.header.timestamp_ms,
            }
        };
        let mut batch = sled::Batch::default();
        for item in self
            .inner
            .tree
            .range(block_key(height + 1)..=block_key(tip.height))
        {
            let (k, v) = item?;
            let h = u64::from_be_bytes(
                k[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed block key".into()))?,
            );
            let (hash, _) = split_block_value(h, &v)?;
            batch.remove(&k);
            batch.remove(&hash_key(&hash)[..]);
        }
        batch.insert(META_TIP, &encode_tip(&new_tip)[..]);
        self.inner.tree.apply_batch(batch)?;
        *lock(&self.inner.tip) = new_tip;
        Ok(new_tip)
    }

    /// Waits until everything written so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::generate::ChainGenerator;
    use crate::chain::AuthorityKey;

    fn chain(g: &Genesis, parent: BlockRef, n: usize, body: usize, seed: u64) -> Vec<Block> {
        ChainGenerator::new(g, AuthorityKey::dev(), parent, body, seed)
            .take(n)
            .collect()
    }

    fn other_genesis() -> Genesis {
        Genesis::new(
            "other".into(),
            0,
            1000,
            vec![AuthorityKey::dev().public()],
            vec![],
        )
        .unwrap()
    }

    /// Every block from 0 to the tip is present with a consistent hash
    /// index, and nothing lies above the tip.
    fn assert_consistent(store: &Store) {
        let tip = store.tip();
        let mut prev: Option<Hash> = None;
        for h in 0..=tip.height {
            let block = store
                .block(h)
                .unwrap()
                .unwrap_or_else(|| panic!("missing block {h}"));
            let hash = block.hash();
            assert_eq!(store.hash_at(h).unwrap(), Some(hash));
            assert_eq!(store.height_of(&hash).unwrap(), Some(h));
            if let Some(p) = prev {
                assert_eq!(block.header.parent, p);
            }
            prev = Some(hash);
        }
        assert_eq!(prev, Some(tip.hash));
        assert_eq!(store.block(tip.height + 1).unwrap(), None);
        let n_hashes = store.inner.tree.scan_prefix(b"h").count() as u64;
        assert_eq!(n_hashes, tip.height + 1, "hash index has stale entries");
    }

    #[test]
    fn new_store_holds_genesis() {
        let g = Genesis::dev();
        let s = Store::temporary(&g).unwrap();
        assert_eq!(s.genesis_hash(), g.hash());
        assert_eq!(s.tip(), BlockRef::of(g.block()));
        assert_eq!(s.block(0).unwrap().as_ref(), Some(g.block()));
        assert_eq!(s.height_of(&g.hash()).unwrap(), Some(0));
        assert_eq!(s.block(1).unwrap(), None);
        assert_eq!(s.hash_at(1).unwrap(), None);
        assert_eq!(s.height_of(&Hash::ZERO).unwrap(), None);
    }

    #[test]
    fn import_then_reopen_resumes_exactly() {
        let g = Genesis::dev();
        let dir = tempfile::tempdir().unwrap();
        let blocks = chain(&g, BlockRef::of(g.block()), 300, 40, 0);
        let tip = {
            let s = Store::open(dir.path(), &g).unwrap();
            s.import(&blocks[..100]).unwrap();
            let tip = s.import(&blocks[100..]).unwrap();
            assert_eq!(tip, BlockRef::of(&blocks[299]));
            assert_eq!(s.tip(), tip);
            s.flush().unwrap();
            tip
        };
        let s = Store::open(dir.path(), &g).unwrap();
        assert_eq!(s.tip(), tip);
        for b in &blocks {
            assert_eq!(s.block(b.height()).unwrap().as_ref(), Some(b));
        }
        assert_consistent(&s);
    }

    #[test]
    fn reopening_with_another_genesis_fails() {
        let g = Genesis::dev();
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &g).unwrap());
        let err = Store::open(dir.path(), &other_genesis()).unwrap_err();
        assert!(
            matches!(err, StoreError::GenesisMismatch { stored, expected } if stored == g.hash() && expected == other_genesis().hash())
        );
        assert!(err.to_string().contains("another network"));
        // The data dir is untouched by the failed open.
        assert_eq!(Store::open(dir.path(), &g).unwrap().tip().height, 0);
    }

    #[test]
    fn unlinked_import_changes_nothing() {
        let g = Genesis::dev();
        let s = Store::temporary(&g).unwrap();
        let blocks = chain(&g, BlockRef::of(g.block()), 20, 8, 0);
        s.import(&blocks[..10]).unwrap();
        let before = s.tip();
        // Gap after the tip.
        assert!(matches!(
            s.import(&blocks[11..]),
            Err(StoreError::NotLinked {
                tip_height: 10,
                start: 12
            })
        ));
        // Right height, wrong parent (a fork's block).
        let fork = chain(&g, BlockRef::of(g.block()), 20, 8, 1);
        assert!(matches!(
            s.import(&fork[10..]),
            Err(StoreError::NotLinked { .. })
        ));
        // Starts right but breaks inside: the good prefix must not be written either.
        let mut broken = blocks[10..].to_vec();
        broken.remove(4);
        assert!(matches!(
            s.import(&broken),
            Err(StoreError::NotLinked { .. })
        ));
        assert_eq!(s.tip(), before);
        assert_eq!(s.block(11).unwrap(), None);
        assert_eq!(s.height_of(&blocks[10].hash()).unwrap(), None);
        assert_consistent(&s);
        assert_eq!(s.import(&[]).unwrap(), before);
    }

    #[test]
    fn rollback_then_import_fork() {
        let g = Genesis::dev();
        let s = Store::temporary(&g).unwrap();
        let main = chain(&g, BlockRef::of(g.block()), 50, 8, 0);
        s.import(&main).unwrap();
        assert!(matches!(
            s.rollback_to(51),
            Err(StoreError::BadRollback {
                target: 51,
                tip: 50
            })
        ));
        assert_eq!(s.rollback_to(50).unwrap(), BlockRef::of(&main[49]));
        let at20 = s.rollback_to(20).unwrap();
        assert_eq!(at20, BlockRef::of(&main[19]));
        assert_eq!(s.tip(), at20);
        assert_eq!(s.height_of(&main[30].hash()).unwrap(), None);
        assert_consistent(&s);
        let fork = chain(&g, at20, 40, 8, 9);
        assert_eq!(s.import(&fork).unwrap(), BlockRef::of(&fork[39]));
        assert_eq!(s.hash_at(21).unwrap(), Some(fork[0].hash()));
        assert_consistent(&s);
        assert_eq!(s.rollback_to(0).unwrap(), BlockRef::of(g.block()));
        assert_consistent(&s);
    }

    #[test]
    fn blocks_range_limits() {
        let g = Genesis::dev();
        let s = Store::temporary(&g).unwrap();
        let blocks = chain(&g, BlockRef::of(g.block()), 5000, 10, 0);
        s.import(&blocks).unwrap();
        let size = blocks[0].encode().len();
        // Count.
        let r = s.blocks_range(1, 3, usize::MAX).unwrap();
        assert_eq!(r, blocks[..3].to_vec());
        assert!(s.blocks_range(1, 0, usize::MAX).unwrap().is_empty());
        // Count cap.
        assert_eq!(
            s.blocks_range(1, u32::MAX, usize::MAX).unwrap().len(),
            MAX_BLOCKS_PER_REQUEST as usize
        );
        // Byte budget: exactly 4 blocks fit, a byte less fits 3.
        assert_eq!(s.blocks_range(1, 100, 4 * size).unwrap().len(), 4);
        assert_eq!(s.blocks_range(1, 100, 4 * size - 1).unwrap().len(), 3);
        // A single block larger than the budget is still sent.
        assert_eq!(s.blocks_range(0, 100, 1).unwrap(), vec![g.block().clone()]);
        // Up to the tip and beyond.
        assert_eq!(
            s.blocks_range(4998, 100, usize::MAX).unwrap(),
            blocks[4997..].to_vec()
        );
        assert!(s.blocks_range(5001, 100, usize::MAX).unwrap().is_empty());
        assert!(s
            .blocks_range(u64::MAX, 100, usize::MAX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let g = Genesis::dev();
        let s = Store::temporary(&g).unwrap();
        s.inner.tree.insert(block_key(1), &[1u8; 40][..]).unwrap();
        assert!(matches!(s.block(1), Err(StoreError::Corrupt(_))));
        s.inner.tree.insert(block_key(2), &[1u8; 3][..]).unwrap();
        assert!(matches!(s.hash_at(2), Err(StoreError::Corrupt(_))));
        s.inner
            .tree
            .insert(hash_key(&Hash::ZERO), &[1u8; 3][..])
            .unwrap();
        assert!(matches!(
            s.height_of(&Hash::ZERO),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Child half of `crash_mid_import_leaves_a_consistent_store`: imports,
    /// flushes once, keeps importing and aborts without flushing.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os("CONCORD_STORE_CRASH_DIR") else {
            return;
        };
        let g = Genesis::dev();
        let s = Store::open(Path::new(&dir), &g).unwrap();
        let mut gen = ChainGenerator::new(&g, AuthorityKey::dev(), s.tip(), 64, 0);
        s.import(&gen.next_batch(500, 2)).unwrap();
        s.flush().unwrap();
        for _ in 0..40 {
            s.import(&gen.next_batch(250, 2)).unwrap();
        }
        std::process::abort();
    }

    #[test]
    fn crash_mid_import_leaves_a_consistent_store() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe)
            .args([
                "--exact",
                "store::tests::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CONCORD_STORE_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");
        let g = Genesis::dev();
        let s = Store::open(dir.path(), &g).unwrap();
        let tip = s.tip();
        assert!(
            tip.height >= 500,
            "flushed blocks were lost: tip {}",
            tip.height
        );
        // Imports are 250-block batches after the flushed 500: a torn batch would show here.
        assert_eq!(
            (tip.height - 500) % 250,
            0,
            "partial batch at tip {}",
            tip.height
        );
        assert_consistent(&s);
        println!("after crash the store resumed at height {}", tip.height);
    }

    /// Not a timed assertion: prints import throughput with `--nocapture`.
    #[test]
    fn import_throughput() {
        let g = Genesis::dev();
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &g).unwrap();
        let n = 100_000;
        let mut gen = ChainGenerator::new(&g, AuthorityKey::dev(), s.tip(), 64, 0);
        let batches: Vec<Vec<Block>> = (0..n / 1000).map(|_| gen.next_batch(1000, 2)).collect();
        let start = std::time::Instant::now();
        for b in &batches {
            s.import(b).unwrap();
        }
        s.flush().unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "imported {n} 64-byte blocks in batches of 1000: {secs:.2}s, {:.0} blocks/s",
            n as f64 / secs
        );
        assert_eq!(s.tip().height, n as u64);
    }
}
