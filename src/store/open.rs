//! Opening a store: creating or checking the data dir (genesis, layout,
//! the directory lock), migrating layout 4, rebuilding a missing index from
//! `blocks.dat` (see [`rebuild`]), adopting valid blocks the file holds past
//! the index's end and cutting what cannot be accounted for (saying so). sled failing or panicking at open becomes one
//! [`StoreError::IndexDamaged`] line. Everything after open is in the parent
//! module.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::rebuild::{self, Scan};
use super::*;

impl Store {
    /// Opens (creating if needed) the store in `path`. A new store gets the
    /// genesis block; an existing one must hold the same genesis.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(StoreError::BlockFile)?;
        let dir = path.display().to_string();
        let damaged = |detail: String| StoreError::IndexDamaged {
            dir: dir.clone(),
            detail,
        };
        // sled 0.34 panics on some damaged files ("tried to serialize
        // Uninitialized"); that is the store's damage, not a bug to crash on.
        let opened = catch_unwind(AssertUnwindSafe(|| Self::open_unguarded(path, genesis)));
        match opened {
            // An I/O error (permissions, a full disk) is not damage.
            Ok(Err(StoreError::Sled(e))) if !matches!(e, sled::Error::Io(_)) => {
                Err(damaged(format!("sled: {e}")))
            }
            Ok(other) => other,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(damaged(format!("sled panicked while reading it: {msg}")))
            }
        }
    }

    fn open_unguarded(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if is_lock_conflict(&io) => {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        // Opened after sled, whose directory lock keeps a second process out.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(block_file::FILE_NAME))
            .map_err(StoreError::BlockFile)?;
        Self::init(db, BlockFile::new(file), genesis, Some(path.to_path_buf()))
    }

    /// A store that lives only as long as it is open (tests, benchmarks).
    pub fn temporary(genesis: &Genesis) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let file = tempfile::tempfile().map_err(StoreError::BlockFile)?;
        Self::init(db, BlockFile::new(file), genesis, None)
    }

    fn init(
        db: sled::Db,
        blocks: BlockFile,
        genesis: &Genesis,
        dir: Option<PathBuf>,
    ) -> Result<Store, StoreError> {
        let tree = db.open_tree(TREE)?;
        let expected = genesis.hash();
        let label = dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "DIR".into());
        // Records that do not add up are the index's damage: blocks.dat can
        // rebuild them.
        let index_damage = |e: StoreError| match e {
            StoreError::Corrupt(detail) => StoreError::IndexDamaged {
                dir: label.clone(),
                detail,
            },
            StoreError::Sled(e) if !matches!(e, sled::Error::Io(_)) => StoreError::IndexDamaged {
                dir: label.clone(),
                detail: format!("sled: {e}"),
            },
            other => other,
        };
        let tip = match tree.get(META_GENESIS).map_err(|e| index_damage(e.into()))? {
            Some(stored) => {
                Self::read_records(&tree, &blocks, expected, &stored).map_err(index_damage)?
            }
            None => {
                if !tree.is_empty() {
                    return Err(index_damage(StoreError::Corrupt(
                        "store has data but no genesis record".into(),
                    )));
                }
                // A new data dir, or one whose index is gone: blocks.dat
                // decides which.
                let tip = rebuild::build_index(&tree, &blocks, genesis)?;
                db.flush()?;
                tip
            }
        };
        let recorded_end = match tree
            .get(META_FILE_END)
            .map_err(|e| index_damage(e.into()))?
        {
            Some(v) => Some(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                index_damage(StoreError::Corrupt(format!(
                    "file end record has {} bytes",
                    v.len()
                )))
            })?)),
            None => None,
        };
        Self::check_ends(&tree, &tip).map_err(index_damage)?;
        let peers = db.open_tree(PEERS_TREE)?;
        let store = Store {
            inner: Arc::new(Inner {
                files: RwLock::new(Some(Arc::new(Files {
                    tree,
                    peers,
                    db,
                    blocks,
                }))),
                genesis: genesis.clone(),
                genesis_hash: expected,
                tip: Mutex::new(tip),
                writer: Mutex::new(0),
                dir,
                damaged: AtomicU64::new(NO_DAMAGE),
                damaged_reads: Default::default(),
            }),
        };
        store.recover_block_file(genesis, recorded_end)?;
        Ok(store)
    }

    /// The tip of an existing store, after checking its genesis and layout
    /// (and migrating layout 4).
    fn read_records(
        tree: &sled::Tree,
        blocks: &BlockFile,
        expected: Hash,
        stored: &[u8],
    ) -> Result<BlockRef, StoreError> {
        let layout = match tree.get(META_LAYOUT)? {
            Some(v) if v.as_ref() == [LAYOUT_VERSION] || v.as_ref() == [LAYOUT_V4] => v[0],
            Some(v) => {
                return Err(StoreError::UnsupportedLayout {
                    found: v.first().copied().unwrap_or(0),
                })
            }
            None => return Err(StoreError::UnsupportedLayout { found: 1 }),
        };
        let stored = Hash::from_slice(stored).ok_or_else(|| {
            StoreError::Corrupt(format!("genesis record has {} bytes", stored.len()))
        })?;
        if stored != expected {
            return Err(StoreError::GenesisMismatch { stored, expected });
        }
        let read_tip = || -> Result<BlockRef, StoreError> {
            decode_tip(
                &tree
                    .get(META_TIP)?
                    .ok_or_else(|| StoreError::Corrupt("genesis recorded but no tip".into()))?,
            )
        };
        if layout == LAYOUT_V4 {
            Self::migrate_v4(tree, blocks, &read_tip()?)?;
        }
        read_tip()
    }

    /// Whether the block at `loc` reads back whole (checksum, encoding and
    /// hash), without reporting damage: used where a bad block is expected.
    fn is_whole(&self, height: u64, loc: &Location, file_len: u64) -> bool {
        loc.end() <= file_len
            && self
                .files()
                .and_then(|f| f.blocks.read(loc.offset, u64::from(loc.len), height))
                .is_ok_and(|bytes| {
                    loc.intact(&bytes)
                        && Block::decode(&bytes).is_ok_and(|b| b.header.hash() == loc.hash)
                })
    }

    /// Makes `blocks.dat` agree with the committed tip: walks back from the
    /// tip to the highest block whose bytes are whole (only an OS crash that
    /// lost file pages sled had persisted makes this go below the tip) and
    /// rolls sled back to it; then adopts the valid blocks that extend it
    /// past the recorded file end (an import a crash cut between its write
    /// and its commit, or records sled lost) and cuts what is left, saying
    /// how much when it is not the rolled-back blocks the records account for.
    fn recover_block_file(
        &self,
        genesis: &Genesis,
        recorded_end: Option<u64>,
    ) -> Result<(), StoreError> {
        let files = self.files()?;
        let file_len = files.blocks.len()?;
        let tip = self.tip();
        let mut height = tip.height;
        let good = loop {
            let loc = self.location(height)?.ok_or_else(|| {
                StoreError::Corrupt(format!("no block record at height {height} below the tip"))
            })?;
            if self.is_whole(height, &loc, file_len) {
                break loc;
            }
            if height == 0 {
                return Err(StoreError::Corrupt(
                    "the genesis block is missing from the block file".into(),
                ));
            }
            height -= 1;
        };
        let mut end = good.end();
        if height < tip.height {
            tracing::warn!(
                tip = tip.height,
                resumed_at = height,
                "block file lost the blocks above {height} (crash before they reached disk); rolling back to it"
            );
            self.rollback_to(height)?;
        } else {
            // Bytes between the tip's end and the recorded end are blocks a
            // rollback removed; past the recorded end, an import that never
            // committed (or that sled forgot).
            let committed = recorded_end.unwrap_or(end).clamp(end, file_len);
            if file_len > committed {
                let scan = rebuild::scan(&files.blocks, committed, genesis, Some(tip));
                if !scan.chain.is_empty() {
                    self.adopt(&scan)?;
                    end = scan.end;
                }
            }
        }
        let committed = recorded_end.unwrap_or(end).max(end);
        if file_len > committed {
            tracing::warn!(
                bytes = file_len - committed,
                offset = committed,
                "cutting {} bytes off blocks.dat past the last committed block: no valid block \
                 extending the chain starts there (a write a crash cut short)",
                file_len - committed
            );
        } else if file_len > end {
            tracing::debug!(
                bytes = file_len - end,
                "cutting rolled-back blocks off the block file"
            );
        }
        if file_len > end {
            files.blocks.truncate(end)?;
        }
        *lock(&self.inner.writer) = end;
        Ok(())
    }

    /// Commits blocks a scan found past the tip (already validated).
    fn adopt(&self, scan: &Scan) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (scan.chain.first(), scan.chain.last()) else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        rebuild::segment_records(&mut batch, &scan.chain);
        batch.insert(META_TIP, &encode_tip(&last.block)[..]);
        batch.insert(META_FILE_END, &scan.end.to_be_bytes()[..]);
        let files = self.files()?;
        files.blocks.sync()?;
        files.tree.apply_batch(batch)?;
        *lock(&self.inner.tip) = last.block;
        tracing::warn!(
            from = first.block.height,
            to = last.block.height,
            "adopted {} valid blocks found in blocks.dat past the index's end (an import a crash \
             cut before its commit, or index records sled lost)",
            scan.chain.len()
        );
        Ok(())
    }

    /// Rewrites layout 4's segment records with a CRC per block, checking
    /// each block's hashes first so that damage is never given a valid CRC.
    /// A damaged block ends the chain below it (logged): sync fetches the
    /// rest again from peers.
    fn migrate_v4(tree: &sled::Tree, blocks: &BlockFile, tip: &BlockRef) -> Result<(), StoreError> {
        tracing::info!(
            tip = tip.height,
            "migrating the store from layout 4 to 5: reading every block once to record its checksum"
        );
        let file_len = blocks.len()?;
        let mut batch = sled::Batch::default();
        let mut last_good: Option<BlockRef> = None;
        let mut bad: Option<u64> = None;
        for item in tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let first = height_from_key(&k)?;
            if bad.is_some() {
                batch.remove(k);
                continue;
            }
            let (offset, old) = segment::parse_v4(first, &v)?;
            let mut entries = Vec::with_capacity(old.len());
            let mut at = offset;
            for (i, (hash, len)) in old.into_iter().enumerate() {
                let height = first + i as u64;
                let block = (at + u64::from(len) <= file_len)
                    .then(|| blocks.read(at, u64::from(len), height).ok())
                    .flatten()
                    .and_then(|bytes| Some((Block::decode(&bytes).ok()?, bytes)))
                    .filter(|(b, _)| {
                        b.header.height == height
                            && b.header.hash() == hash
                            && Hash::digest(&b.body) == b.header.body_hash
                    });
                let Some((b, bytes)) = block else {
                    bad = Some(height);
                    break;
                };
                entries.push(Entry {
                    hash,
                    len,
                    crc: segment::checksum(&bytes),
                });
                last_good = Some(BlockRef::of(&b));
                at += u64::from(len);
            }
            if entries.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, segment::encode(offset, &entries));
            }
        }
        let new_tip = last_good.ok_or_else(|| {
            StoreError::Corrupt("the genesis block in blocks.dat is damaged".into())
        })?;
        if let Some(height) = bad {
            tracing::error!(
                height,
                "the block at height {height} is damaged: the store now ends at #{}; sync fetches \
                 the rest again from peers",
                new_tip.height
            );
        }
        batch.insert(META_TIP, &encode_tip(&new_tip)[..]);
        // Whatever lies past the tip was there before the migration: cut, not adopted.
        batch.insert(META_FILE_END, &file_len.to_be_bytes()[..]);
        batch.insert(META_LAYOUT, &[LAYOUT_VERSION][..]);
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
    }

    /// Checks the segment records at both ends of the chain: the first
    /// starts at genesis and the last ends at the tip, with its hash. Only
    /// the ends, so that open costs the same at any chain length; a record
    /// missing in between is found when its heights are read (see
    /// `Store::location`) or by `concord check`.
    fn check_ends(tree: &sled::Tree, tip: &BlockRef) -> Result<(), StoreError> {
        let mut records = tree.scan_prefix(b"s");
        match records.next().transpose()? {
            Some((k, _)) if height_from_key(&k)? == 0 => {}
            Some((k, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "the first segment record starts at {}, not at genesis",
                    height_from_key(&k)?
                )))
            }
            None => return Err(StoreError::Corrupt("no segment records".into())),
        }
        let (k, v) = Self::segment_at(tree, u64::MAX)?
            .ok_or_else(|| StoreError::Corrupt("no segment records".into()))?;
        let seg = Segment::parse(k, &v)?;
        let last = seg.location(seg.end_height() - 1).map(|l| l.hash);
        if seg.end_height() != tip.height + 1 || last != Some(tip.hash) {
            return Err(StoreError::Corrupt(format!(
                "segment records end below {} with {}, tip is #{} {}",
                seg.end_height(),
                last.unwrap_or(Hash::ZERO),
                tip.height,
                tip.hash
            )));
        }
        Ok(())
    }
}

/// Whether sled failed to open because its directory lock is held: a second
/// node on the same data dir. sled wraps the `WouldBlock` of the lock call in
/// an error of another kind ("could not acquire lock on …"), so the kind is
/// looked for in the wrapped error too.
fn is_lock_conflict(io: &std::io::Error) -> bool {
    let would_block = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
    would_block(io)
        || io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
            .is_some_and(would_block)
        || io.to_string().contains("could not acquire lock")
}
