//! Finding the chain in `blocks.dat` without the index: what an open does
//! when sled's files are gone (the whole index is rebuilt) or when the file
//! holds blocks past the end the index knows (an import a crash cut short,
//! or an index that lost its latest records: they are adopted).
//!
//! Owns the scan and the segment records it writes; it must not decide when
//! to run (that is [`super::open`]) and trusts nothing it reads: every block
//! is validated again against its parent ([`validate_block`], signature
//! included) before it counts.
//!
//! The file is append-only, so file order is history: a block that extends
//! the chain found so far is appended; one that links to an earlier block of
//! it is a later fork choice (the bytes before it were rolled back and then
//! written over by a new import), so the chain is cut to its parent first.
//! The scan ends at the first bytes that are not a valid block linking to the
//! chain; what lies past them cannot be accounted for, and the caller says
//! so before cutting it. One case the file cannot tell apart: blocks removed
//! by a rollback that no import followed come back in a full rebuild (they
//! are valid blocks of the chain; sync or `concord rollback` removes them
//! again if the network has moved on).

use super::block_file::BlockFile;
use super::segment::{self, Entry};
use super::{encode_tip, segment_key, StoreError, LAYOUT_VERSION, META_FILE_END, META_GENESIS};
use super::{META_LAYOUT, META_TIP};
use crate::chain::validate::{validate_block, BlockRef};
use crate::chain::{Block, Genesis, MAX_BODY_SIZE};

/// Bytes read to find a block's encoded length: the array head and the six
/// fixed items plus the body's head fit in 200.
const HEAD_PROBE: u64 = 256;

/// One block found by the scan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scanned {
    pub offset: u64,
    pub entry: Entry,
    pub block: BlockRef,
}

/// The chain a scan found above its base.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Consecutive heights, the first one above the base.
    pub chain: Vec<Scanned>,
    /// Where the scan stopped: the end of the last block it accepted (in
    /// file order), or its start if it accepted none.
    pub end: u64,
}

/// One CBOR head at `at`: (major type, value, head length).
fn cbor_head(b: &[u8], at: usize) -> Option<(u8, u64, usize)> {
    let ib = *b.get(at)?;
    let arg = |n: usize| -> Option<u64> {
        let s = b.get(at + 1..at + 1 + n)?;
        Some(s.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    let (val, len) = match ib & 31 {
        ai @ 0..=23 => (u64::from(ai), 1),
        24 => (arg(1)?, 2),
        25 => (arg(2)?, 3),
        26 => (arg(4)?, 5),
        27 => (arg(8)?, 9),
        _ => return None,
    };
    Some((ib >> 5, val, len))
}

/// The length of the block encoding that starts `b` (its first bytes
/// suffice), or `None` if `b` does not start like one: an array of seven
/// unsigned integers and byte strings, as the store writes blocks.
pub(super) fn encoded_len(b: &[u8]) -> Option<u64> {
    let (major, n, mut at) = cbor_head(b, 0)?;
    if major != 4 || n != 7 {
        return None;
    }
    let mut total = at as u64;
    for _ in 0..7 {
        let (major, val, head) = cbor_head(b, at)?;
        total = match major {
            0 => total + head as u64,
            2 => total.checked_add(head as u64)?.checked_add(val)?,
            _ => return None,
        };
        at = usize::try_from(total).ok()?;
    }
    Some(total)
}

/// The block whose encoding starts at `offset`, with its encoded bytes'
/// entry; `None` where no whole, decodable block starts.
fn block_at(file: &BlockFile, offset: u64, file_len: u64) -> Option<(Block, Entry)> {
    let probe = HEAD_PROBE.min(file_len.checked_sub(offset)?);
    if probe == 0 {
        return None;
    }
    let head = file.read(offset, probe, 0).ok()?;
    let len = encoded_len(&head)?;
    if len > MAX_BODY_SIZE as u64 + HEAD_PROBE || offset + len > file_len {
        return None;
    }
    let bytes = file.read(offset, len, 0).ok()?;
    let block = Block::decode(&bytes).ok()?;
    let entry = Entry {
        hash: block.hash(),
        len: u32::try_from(len).ok()?,
        crc: segment::checksum(&bytes),
    };
    Some((block, entry))
}

/// Scans `file` from `from` for blocks that extend `base` (validated against
/// their parents), taking later forks over earlier ones as described in the
/// module docs. With `base` `None` the scan starts at the genesis block,
/// which must be the first thing at `from`.
pub(super) fn scan(file: &BlockFile, from: u64, genesis: &Genesis, base: Option<BlockRef>) -> Scan {
    let file_len = file.len().unwrap_or(0);
    let mut scan = Scan {
        chain: Vec::new(),
        end: from,
    };
    let mut offset = from;
    let base = match base {
        Some(b) => b,
        None => match block_at(file, offset, file_len) {
            Some((block, entry)) if entry.hash == genesis.block().hash() => {
                let block = BlockRef::of(&block);
                scan.chain.push(Scanned {
                    offset,
                    entry,
                    block,
                });
                offset += u64::from(entry.len);
                scan.end = offset;
                // Heights above genesis link to the genesis entry itself.
                block
            }
            _ => return scan,
        },
    };
    // `chain[i]` is at height `first + i`.
    let first = if scan.chain.is_empty() {
        base.height + 1
    } else {
        0
    };
    while let Some((block, entry)) = block_at(file, offset, file_len) {
        let h = block.header.height;
        if h < first.max(1) || h > first + scan.chain.len() as u64 {
            break;
        }
        let parent = if h == first {
            base
        } else {
            scan.chain[(h - 1 - first) as usize].block
        };
        if validate_block(genesis, &parent, &block).is_err() {
            break;
        }
        scan.chain.truncate((h - first) as usize);
        scan.chain.push(Scanned {
            offset,
            entry,
            block: BlockRef::of(&block),
        });
        offset += u64::from(entry.len);
        scan.end = offset;
    }
    scan
}

/// Adds to `batch` the segment records of `chain` (consecutive heights):
/// one per run of blocks that lie back to back in the file, at most
/// [`segment::MAX_BLOCKS`] each.
pub(super) fn segment_records(batch: &mut sled::Batch, chain: &[Scanned]) {
    let mut start = 0;
    while start < chain.len() {
        let mut end = start + 1;
        while end < chain.len()
            && end - start < segment::MAX_BLOCKS
            && chain[end].offset == chain[end - 1].offset + u64::from(chain[end - 1].entry.len)
        {
            end += 1;
        }
        let entries: Vec<Entry> = chain[start..end].iter().map(|s| s.entry).collect();
        batch.insert(
            &segment_key(chain[start].block.height)[..],
            segment::encode(chain[start].offset, &entries),
        );
        start = end;
    }
}

/// Builds a whole index in an empty `tree` from `file` (see the module
/// docs) and returns the tip. An empty file (or a genesis block a crash cut
/// short) gets the genesis block written; a file that does not start with
/// this network's genesis block is refused, untouched.
pub(super) fn build_index(
    tree: &sled::Tree,
    file: &BlockFile,
    genesis: &Genesis,
) -> Result<BlockRef, StoreError> {
    let file_len = file.len()?;
    let encoded = genesis.block().encode();
    let mut batch = sled::Batch::default();
    let (tip, end) = if file_len == 0 || genesis_prefix(file, file_len, &encoded)? {
        // A new store, or a first open that stopped while writing genesis.
        file.truncate(0)?;
        file.write_at(&encoded, 0)?;
        file.sync()?;
        let tip = BlockRef::of(genesis.block());
        let entry = Entry {
            hash: tip.hash,
            len: encoded.len() as u32,
            crc: segment::checksum(&encoded),
        };
        batch.insert(&segment_key(0)[..], segment::encode(0, &[entry]));
        (tip, encoded.len() as u64)
    } else {
        let scan = scan(file, 0, genesis, None);
        let Some(last) = scan.chain.last() else {
            return Err(StoreError::Corrupt(format!(
                "the index is missing and blocks.dat ({file_len} bytes) does not start with this \
                 network's genesis block: it is not this chain's file; move it away or use \
                 another data dir"
            )));
        };
        tracing::warn!(
            blocks = scan.chain.len(),
            tip = last.block.height,
            "the store's index was missing: rebuilt it from blocks.dat (every block validated again); \
             tip is #{} {}",
            last.block.height,
            last.block.hash
        );
        segment_records(&mut batch, &scan.chain);
        (last.block, scan.end)
    };
    batch.insert(META_GENESIS, &genesis.hash().0[..]);
    batch.insert(META_LAYOUT, &[LAYOUT_VERSION][..]);
    batch.insert(META_TIP, &encode_tip(&tip)[..]);
    batch.insert(META_FILE_END, &end.to_be_bytes()[..]);
    tree.apply_batch(batch)?;
    Ok(tip)
}

/// Whether the file is shorter than the genesis block's encoding and a
/// prefix of it: a first open that stopped while writing it.
fn genesis_prefix(file: &BlockFile, file_len: u64, encoded: &[u8]) -> Result<bool, StoreError> {
    if file_len >= encoded.len() as u64 {
        return Ok(false);
    }
    Ok(file.read(0, file_len, 0)? == encoded[..file_len as usize])
}

/// sled's own files in a data dir (everything but `blocks.dat` and the
/// node's other files).
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Moves sled's files in `dir` into a new `index-damaged-<unix secs>`
/// directory beside them (kept for inspection, never deleted), so that the
/// next open rebuilds the index from `blocks.dat`. Returns that directory,
/// or `None` if there were no sled files. The node must be stopped. What the
/// node remembered about its peers (kept in the same sled database) starts
/// empty again.
pub fn set_index_aside(dir: &std::path::Path) -> Result<Option<std::path::PathBuf>, StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = dir.join(format!("index-damaged-{secs}"));
    let mut moved = false;
    for item in std::fs::read_dir(dir).map_err(StoreError::BlockFile)? {
        let item = item.map_err(StoreError::BlockFile)?;
        let name = item.file_name();
        if !is_sled_file(&name.to_string_lossy()) {
            continue;
        }
        if !moved {
            std::fs::create_dir_all(&aside).map_err(StoreError::BlockFile)?;
            moved = true;
        }
        std::fs::rename(item.path(), aside.join(&name)).map_err(StoreError::BlockFile)?;
    }
    Ok(moved.then_some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_the_encoding() {
        let g = Genesis::dev();
        let mut b = g.block().clone();
        for size in [0usize, 5, 23, 24, 255, 256, 65_535, 65_536, 70_000] {
            b.body = vec![7u8; size].into();
            let enc = b.encode();
            assert_eq!(
                encoded_len(&enc[..enc.len().min(256)]),
                Some(enc.len() as u64),
                "{size}"
            );
        }
        assert_eq!(encoded_len(&[0x86]), None);
        assert_eq!(encoded_len(&[]), None);
        assert_eq!(encoded_len(&[0x87, 0x01]), None);
    }
}
