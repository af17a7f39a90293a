//! Segment records: the one sled record each import writes.
//!
//! A segment is the run of blocks one import appended to `blocks.dat`, back
//! to back. Its record holds where the run starts in the file and, per
//! block, the hash, the encoded length and a CRC-32 of the encoded bytes:
//!
//! `offset (8 BE) ++ n × (hash (32) ++ len (4 BE) ++ crc32 (4 BE))`
//!
//! so the location of any block in it is the offset plus the lengths before
//! it. Owns that encoding (and reading layout 4's, which had no CRC) only;
//! it must not touch sled or the file.
//!
//! Why a CRC of the stored bytes rather than re-hashing each block read: the
//! store checks every block it hands out, and a CRC costs 54 ns for a block
//! with a 256-byte body and 26 µs with a 64 KiB body, against 2.0 µs and
//! 64 µs to decode and recompute the header and body hashes, or 1.4 µs and
//! 70 µs for blake3 of the bytes (`cargo run --example check_cost`, on the
//! shared 2-core VM). It also covers the bytes as stored, so a server that
//! sends them without decoding can still check them. It is a check against
//! damage, not against an attacker who can write the data dir: they could
//! rewrite the records too.
//!
//! Why one record per import rather than one per block: sled 0.34 holds
//! about 1.5 KB of heap per inserted record (tree node versions it keeps
//! until they are rewritten; heaptrack on a 200,000-block sync: 300 MB), and
//! a record insert was most of small-block import time.

use super::block_file::Location;
use super::StoreError;
use crate::chain::Hash;

/// The most blocks one record holds; a bigger import writes several. Keeps
/// records small (1.3 KiB) because sled 0.34 holds far more of a tree it
/// reads than its cache capacity says, in proportion to the size of its
/// nodes (a leaf holds up to 17 records):
/// - its cache accounts an access only once 64 accesses have queued up on
///   that page's shard, of 256 (`lru.rs`), so the pages read since stay in
///   memory whatever `cache_capacity` is: serving a 10 M-block chain in
///   order kept 160 MiB with 128-block records (5 KiB), 117 MiB with 32;
///   random ranges 170 and 95 MiB (`store_scale serve-seq` / `measure`,
///   BENCHMARKS.md), and a seeder node peaked at 280 MiB with 128;
/// - a node whose encoding is over 128 KiB (a quarter of its 512 KiB log
///   segment) is written as a blob and counted by the size of the blob
///   pointer, so it is never evicted (512-block records: 390 MiB).
///
/// The price is more records per import: about 1.3 against 1.1 µs of import
/// CPU per small block, where verifying them runs at 55,000 blocks/s on this
/// machine's two cores.
pub(super) const MAX_BLOCKS: usize = 32;

const OFFSET_LEN: usize = 8;
const ENTRY_LEN: usize = 32 + 4 + 4;
/// A layout 4 entry: hash and length, no CRC.
const V4_ENTRY_LEN: usize = 32 + 4;

/// One block's entry in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub hash: Hash,
    pub len: u32,
    pub crc: u32,
}

/// The checksum stored with each block: CRC-32 of its encoding.
pub(super) fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Builds a segment record.
pub(super) fn encode(offset: u64, entries: &[Entry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(OFFSET_LEN + entries.len() * ENTRY_LEN);
    v.extend_from_slice(&offset.to_be_bytes());
    for e in entries {
        v.extend_from_slice(&e.hash.0);
        v.extend_from_slice(&e.len.to_be_bytes());
        v.extend_from_slice(&e.crc.to_be_bytes());
    }
    v
}

/// A layout 4 record's offset and `(hash, len)` entries.
pub(super) fn parse_v4(first: u64, v: &[u8]) -> Result<(u64, Vec<(Hash, u32)>), StoreError> {
    if v.len() < OFFSET_LEN + V4_ENTRY_LEN || !(v.len() - OFFSET_LEN).is_multiple_of(V4_ENTRY_LEN) {
        return Err(StoreError::Corrupt(format!(
            "layout 4 segment record at height {first} is {} bytes",
            v.len()
        )));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&v[..OFFSET_LEN]);
    let entries = v[OFFSET_LEN..]
        .chunks_exact(V4_ENTRY_LEN)
        .map(|e| {
            let mut len = [0u8; 4];
            len.copy_from_slice(&e[32..]);
            (
                Hash::from_slice(&e[..32]).unwrap_or(Hash::ZERO),
                u32::from_be_bytes(len),
            )
        })
        .collect();
    Ok((u64::from_be_bytes(offset), entries))
}

/// A parsed view of a segment record starting at height `first`.
pub(super) struct Segment<'a> {
    first: u64,
    offset: u64,
    entries: &'a [u8],
}

impl<'a> Segment<'a> {
    pub fn parse(first: u64, v: &'a [u8]) -> Result<Segment<'a>, StoreError> {
        let bad = || {
            StoreError::Corrupt(format!(
                "segment record at height {first} is {} bytes",
                v.len()
            ))
        };
        if v.len() < OFFSET_LEN + ENTRY_LEN || !(v.len() - OFFSET_LEN).is_multiple_of(ENTRY_LEN) {
            return Err(bad());
        }
        let (offset, entries) = v.split_at(OFFSET_LEN);
        Ok(Segment {
            first,
            offset: u64::from_be_bytes(offset.try_into().map_err(|_| bad())?),
            entries,
        })
    }

    /// The height of the first block.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Number of blocks (at least one).
    pub fn len(&self) -> u64 {
        (self.entries.len() / ENTRY_LEN) as u64
    }

    /// The height after the last block.
    pub fn end_height(&self) -> u64 {
        self.first + self.len()
    }

    fn entry(&self, i: usize) -> Entry {
        let e = &self.entries[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
        let mut len = [0u8; 4];
        len.copy_from_slice(&e[32..36]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&e[36..]);
        Entry {
            hash: Hash::from_slice(&e[..32]).unwrap_or(Hash::ZERO),
            len: u32::from_be_bytes(len),
            crc: u32::from_be_bytes(crc),
        }
    }

    #[cfg(test)]
    pub fn hashes(&self) -> Vec<Hash> {
        (0..self.len() as usize)
            .map(|i| self.entry(i).hash)
            .collect()
    }

    /// Locations of the blocks from `height` (inside this segment) on, in order.
    pub fn locations_from(&self, height: u64) -> impl Iterator<Item = (u64, Location)> + '_ {
        let skip = height.saturating_sub(self.first) as usize;
        let mut offset = self.offset;
        (0..self.len() as usize).filter_map(move |i| {
            let Entry { hash, len, crc } = self.entry(i);
            let loc = Location {
                hash,
                offset,
                len,
                crc,
            };
            offset += u64::from(len);
            (i >= skip).then_some((self.first + i as u64, loc))
        })
    }

    /// The location of the block at `height`, if this segment holds it.
    pub fn location(&self, height: u64) -> Option<Location> {
        if height < self.first || height >= self.end_height() {
            return None;
        }
        self.locations_from(height).next().map(|(_, l)| l)
    }

    /// The record of this segment cut to its first `keep` blocks (`keep` ≥ 1).
    pub fn truncated(&self, keep: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(OFFSET_LEN + keep * ENTRY_LEN);
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.entries[..keep.min(self.len() as usize) * ENTRY_LEN]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_add_up_and_truncation_keeps_the_head() {
        let e = |b: u8, len: u32| Entry {
            hash: Hash([b; 32]),
            len,
            crc: u32::from(b) * 7,
        };
        let entries = [e(1, 10), e(2, 20), e(3, 5)];
        let v = encode(100, &entries);
        let s = Segment::parse(7, &v).unwrap();
        assert_eq!((s.len(), s.end_height()), (3, 10));
        assert_eq!(
            s.location(8),
            Some(Location {
                hash: Hash([2; 32]),
                offset: 110,
                len: 20,
                crc: 14,
            })
        );
        assert_eq!(s.location(6), None);
        assert_eq!(s.location(10), None);
        let from: Vec<u64> = s
            .locations_from(8)
            .map(|(h, l)| h * 1000 + l.offset)
            .collect();
        assert_eq!(from, vec![8110, 9130]);
        let cut = s.truncated(2);
        let t = Segment::parse(7, &cut).unwrap();
        assert_eq!((t.len(), t.location(8).map(|l| l.end())), (2, Some(130)));
        assert_eq!(t.hashes(), vec![Hash([1; 32]), Hash([2; 32])]);
    }

    #[test]
    fn malformed_records_are_corruption() {
        for n in [0, 7, 8, 44, 47, 49, 89] {
            assert!(
                matches!(
                    Segment::parse(1, &vec![0u8; n]),
                    Err(StoreError::Corrupt(_))
                ),
                "{n} bytes"
            );
        }
        assert!(Segment::parse(1, &[0u8; 48]).is_ok());
        assert!(parse_v4(1, &[0u8; 45]).is_err());
        assert_eq!(parse_v4(1, &[0u8; 80]).unwrap().1.len(), 2);
    }
}
