//! Opening a store: creating or checking the data dir (genesis, layout,
//! the directory lock), cutting block-file bytes that no committed segment
//! covers (a crash between the write and the commit), and loading the hash
//! index. Everything after open is in the parent module.

use super::*;

impl Store {
    /// Opens (creating if needed) the store in `path`. A new store gets the
    /// genesis block; an existing one must hold the same genesis.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(StoreError::BlockFile)?;
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
        Self::init(db, BlockFile::new(file), genesis)
    }

    /// A store that lives only as long as it is open (tests, benchmarks).
    pub fn temporary(genesis: &Genesis) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let file = tempfile::tempfile().map_err(StoreError::BlockFile)?;
        Self::init(db, BlockFile::new(file), genesis)
    }

    fn init(db: sled::Db, blocks: BlockFile, genesis: &Genesis) -> Result<Store, StoreError> {
        let tree = db.open_tree(TREE)?;
        let expected = genesis.hash();
        let tip = match tree.get(META_GENESIS)? {
            Some(stored) => {
                match tree.get(META_LAYOUT)? {
                    Some(v) if v.as_ref() == [LAYOUT_VERSION] => {}
                    Some(v) => {
                        return Err(StoreError::UnsupportedLayout {
                            found: v.first().copied().unwrap_or(0),
                        })
                    }
                    None => return Err(StoreError::UnsupportedLayout { found: 1 }),
                }
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
                // That the segments end at this tip, with its hash, is
                // checked by `load_index` below.
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
                let encoded = block.encode();
                // Whatever a half-finished earlier init left in the file goes.
                blocks.truncate(0)?;
                blocks.write_at(&encoded, 0)?;
                let mut batch = sled::Batch::default();
                batch.insert(
                    &segment_key(0)[..],
                    segment::encode(0, &[(tip.hash, encoded.len() as u32)]),
                );
                batch.insert(META_GENESIS, &expected.0[..]);
                batch.insert(META_LAYOUT, &[LAYOUT_VERSION][..]);
                batch.insert(META_TIP, &encode_tip(&tip)[..]);
                blocks.sync()?;
                tree.apply_batch(batch)?;
                db.flush()?;
                tip
            }
        };
        let index = Self::load_index(&tree, &tip)?;
        let peers = db.open_tree(PEERS_TREE)?;
        let store = Store {
            inner: Arc::new(Inner {
                tree,
                peers,
                db,
                blocks,
                genesis_hash: expected,
                tip: Mutex::new(tip),
                writer: Mutex::new(0),
                index: RwLock::new(index),
            }),
        };
        store.recover_block_file()?;
        Ok(store)
    }

    /// Makes `blocks.dat` agree with the committed tip: walks back from the
    /// tip to the highest block whose bytes are whole (only an OS crash that
    /// lost file pages sled had persisted makes this go below the tip), rolls
    /// sled back to it, and cuts off whatever lies past its end.
    fn recover_block_file(&self) -> Result<(), StoreError> {
        let file_len = self.inner.blocks.len()?;
        let tip = self.tip();
        let mut height = tip.height;
        let good = loop {
            let loc = self.location(height)?.ok_or_else(|| {
                StoreError::Corrupt(format!("no block record at height {height} below the tip"))
            })?;
            let whole = loc.end() <= file_len
                && self
                    .read_block(height, &loc)
                    .is_ok_and(|b| b.header.hash() == loc.hash);
            if whole {
                break loc;
            }
            if height == 0 {
                return Err(StoreError::Corrupt(
                    "the genesis block is missing from the block file".into(),
                ));
            }
            height -= 1;
        };
        if height < tip.height {
            tracing::warn!(
                tip = tip.height,
                resumed_at = height,
                "block file lost the blocks above {height} (crash before they reached disk); rolling back to it"
            );
            self.rollback_to(height)?;
        }
        if file_len > good.end() {
            tracing::debug!(
                bytes = file_len - good.end(),
                "cutting uncommitted or rolled-back bytes off the block file"
            );
            self.inner.blocks.truncate(good.end())?;
        }
        *lock(&self.inner.writer) = good.end();
        Ok(())
    }

    /// Builds the in-memory index from the segment records, checking that
    /// they cover `0..=tip` exactly and end with the tip's hash.
    fn load_index(tree: &sled::Tree, tip: &BlockRef) -> Result<HashIndex, StoreError> {
        let mut index = HashIndex::default();
        let mut next = 0u64;
        let mut last = None;
        for item in tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let first = height_from_key(&k)?;
            if first != next {
                return Err(StoreError::Corrupt(format!(
                    "segment record starts at {first}, expected {next}"
                )));
            }
            let hashes = Segment::parse(first, &v)?.hashes();
            index.insert(first, &hashes);
            next = first + hashes.len() as u64;
            last = hashes.last().copied();
        }
        if next != tip.height + 1 || last != Some(tip.hash) {
            return Err(StoreError::Corrupt(format!(
                "segment records cover heights below {next}, tip is {}",
                tip.height
            )));
        }
        Ok(index)
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
