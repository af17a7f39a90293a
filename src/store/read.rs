//! Reading blocks back: by height, as a range of decoded blocks, or as the
//! stored encodings for serving; every block is checked against its CRC
//! first, and damage found is recorded here ([`Store::damaged_height`],
//! the damaged-reads counter) and logged once.
//!
//! Only reads: it must not write to sled or `blocks.dat`, nor change the
//! tip (imports and rollbacks are in the parent module, opening in
//! [`super::open`]).

use super::*;

/// Blocks imported together lie back to back in the file: `locs` cut into
/// contiguous runs (usually one), each read with one `pread`.
pub(super) fn runs(locs: &[(u64, Location)]) -> impl Iterator<Item = &[(u64, Location)]> {
    locs.chunk_by(|a, b| b.1.offset == a.1.end())
}

/// Stored block encodings as [`Store::blocks_encoded`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlocks {
    /// The headroom asked for, then the encodings back to back.
    pub buf: Vec<u8>,
    /// How many blocks the encodings are.
    pub count: u32,
}

impl Store {
    /// Records damage at `height` (logged at the first sighting of a new
    /// lowest height, counted always) and returns the error to hand out.
    pub(super) fn damage(&self, height: u64, what: impl Into<String>) -> StoreError {
        let err = StoreError::Damaged {
            height,
            what: what.into(),
            dir: self.dir_label(),
        };
        self.inner.damaged_reads.inc();
        let before = self.inner.damaged.fetch_min(height, Ordering::Relaxed);
        if height < before {
            tracing::error!(height, "{err}");
        }
        err
    }

    /// Checks `bytes` read from `loc` and decodes them; damage is recorded.
    pub(super) fn checked_decode(
        &self,
        height: u64,
        loc: &Location,
        bytes: &[u8],
    ) -> Result<Block, StoreError> {
        if !loc.intact(bytes) {
            return Err(self.damage(height, "does not match its checksum"));
        }
        let block = Block::decode(bytes)
            .map_err(|e| self.damage(height, format!("does not decode ({e})")))?;
        if block.header.height != height {
            return Err(self.damage(
                height,
                format!("says it is at height {}", block.header.height),
            ));
        }
        Ok(block)
    }

    pub(super) fn read_block(&self, height: u64, loc: &Location) -> Result<Block, StoreError> {
        let bytes = self
            .files()?
            .blocks
            .read(loc.offset, u64::from(loc.len), height)?;
        self.checked_decode(height, loc, &bytes)
    }

    /// The lowest height found damaged since open, if any.
    pub fn damaged_height(&self) -> Option<u64> {
        match self.inner.damaged.load(Ordering::Relaxed) {
            NO_DAMAGE => None,
            h => Some(h),
        }
    }

    /// Reads that found a damaged block since open: a counter to register
    /// as a metric (clones share the count).
    pub fn damaged_reads(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.damaged_reads.clone()
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        match self.location(height)? {
            Some(loc) => Ok(Some(self.read_block(height, &loc)?)),
            None => Ok(None),
        }
    }

    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self.location(height)?.map(|l| l.hash))
    }

    /// Consecutive blocks from `start`: at most `min(count, MAX_BLOCKS_PER_REQUEST)`,
    /// and no more than fit in `byte_budget` bytes of encoded blocks — except
    /// that the block at `start` is always returned if it exists, however big.
    /// Empty if there is no block at `start` (or `count` is 0).
    ///
    /// Every block is checked; the range ends before the first damaged one
    /// (recorded and logged), and is [`StoreError::Damaged`] if that is the
    /// block at `start`.
    pub fn blocks_range(
        &self,
        start: u64,
        count: u32,
        byte_budget: usize,
    ) -> Result<Vec<Block>, StoreError> {
        let locs = self.range_locations(start, count, byte_budget)?;
        let files = self.files()?;
        let mut out = Vec::with_capacity(locs.len());
        for run in runs(&locs) {
            let (first_height, first) = run[0];
            let span = run[run.len() - 1].1.end() - first.offset;
            let bytes = files.blocks.read(first.offset, span, first_height)?;
            for (height, loc) in run {
                let at = (loc.offset - first.offset) as usize;
                match self.checked_decode(*height, loc, &bytes[at..at + loc.len as usize]) {
                    Ok(block) => out.push(block),
                    Err(e) if out.is_empty() => return Err(e),
                    Err(_) => return Ok(out),
                }
            }
        }
        Ok(out)
    }

    /// The stored encodings of the blocks [`Store::blocks_range`] would
    /// return, back to back, after `headroom` zero bytes (room for a
    /// caller's framing, so that it need not copy the encodings), without
    /// decoding them: a server sends them as they are. Each block is checked
    /// against its CRC (the check [`Store::blocks_range`] starts with); the
    /// range ends before the first damaged one, and is
    /// [`StoreError::Damaged`] if that is the block at `start`.
    pub fn blocks_encoded(
        &self,
        start: u64,
        count: u32,
        byte_budget: usize,
        headroom: usize,
    ) -> Result<EncodedBlocks, StoreError> {
        let locs = self.range_locations(start, count, byte_budget)?;
        let files = self.files()?;
        let total: u64 = locs.iter().map(|(_, l)| u64::from(l.len)).sum();
        let mut buf = Vec::with_capacity(headroom + total as usize);
        buf.resize(headroom, 0);
        let mut count = 0u32;
        for run in runs(&locs) {
            let (first_height, first) = run[0];
            let span = run[run.len() - 1].1.end() - first.offset;
            // Read straight into the response buffer: no copy after, and
            // no zeroing before.
            let at = buf.len();
            let span = usize::try_from(span).map_err(|_| {
                StoreError::Corrupt(format!("block run at height {first_height} too large"))
            })?;
            files
                .blocks
                .read_append(first.offset, span, &mut buf, first_height)?;
            for (height, loc) in run {
                let from = at + (loc.offset - first.offset) as usize;
                if !loc.intact(&buf[from..from + loc.len as usize]) {
                    let e = self.damage(*height, "does not match its checksum");
                    if count == 0 {
                        return Err(e);
                    }
                    buf.truncate(from);
                    return Ok(EncodedBlocks { buf, count });
                }
                count += 1;
            }
        }
        Ok(EncodedBlocks { buf, count })
    }

    /// Where the blocks of a range lie (see [`Store::blocks_range`] for the limits).
    pub(super) fn range_locations(
        &self,
        start: u64,
        count: u32,
        byte_budget: usize,
    ) -> Result<Vec<(u64, Location)>, StoreError> {
        let max = count.min(MAX_BLOCKS_PER_REQUEST) as usize;
        let mut locs: Vec<(u64, Location)> = Vec::new();
        if max == 0 {
            return Ok(locs);
        }
        let mut used = 0u64;
        let files = self.files()?;
        let Some((first, _)) = Self::segment_at(&files.tree, start)? else {
            return Ok(locs);
        };
        let mut expected_height = start;
        'segments: for item in files.tree.range(segment_key(first)..=segment_key(u64::MAX)) {
            let (k, v) = item?;
            let seg = Segment::parse(height_from_key(&k)?, &v)?;
            for (height, loc) in seg.locations_from(expected_height) {
                // A gap means a concurrent rollback changed the records;
                // what we have is still consecutive.
                if height != expected_height {
                    break 'segments;
                }
                if !locs.is_empty() && used + u64::from(loc.len) > byte_budget as u64 {
                    break 'segments;
                }
                used += u64::from(loc.len);
                locs.push((height, loc));
                if locs.len() == max {
                    break 'segments;
                }
                expected_height += 1;
            }
        }
        Ok(locs)
    }
}
