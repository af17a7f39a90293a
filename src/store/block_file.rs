//! The block data file: every stored block's CBOR encoding, appended in
//! import order, addressed by `(offset, len)` locations that sled holds.
//!
//! Owns the file; it must not decide what is committed (sled's tip does)
//! nor decode blocks.
//!
//! Why bodies live outside sled: sled 0.34 copies every value above its blob
//! threshold through its own blob files and page cache, and writing 1 GiB of
//! 64 KiB values peaked at ~730 MB of RSS whatever its cache size
//! (`examples/sled_rss.rs`). An append-only file costs a few `pwrite`s per
//! import, and the kernel's page cache, not the node's heap, holds what was
//! read or written recently.
//!
//! Crash safety comes from the order of writes, not from the file: an import
//! writes its blocks past the committed end first and commits them with one
//! sled batch afterwards, so bytes past the tip block's end are either an
//! import that never committed or blocks a rollback removed; the store
//! truncates them at open. The one case ordering cannot cover (the OS lost
//! file pages that sled had already made durable) shows up at open as a tip
//! whose bytes are missing or do not hash right, and the store walks back to
//! the highest block that is whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::StoreError;
use crate::chain::Hash;

/// Name of the data file inside a data dir.
pub(super) const FILE_NAME: &str = "blocks.dat";

/// The largest single `pwrite`. Appending to a file in 4 MiB writes (one
/// import of large blocks) ran at 430–970 MB/s on the benchmark VM, in
/// 64–128 KiB writes at 1.1–3.1 GB/s (the kernel's copy into fresh page-cache
/// pages was 18% of all CPU in a large-block sync profile). Reads show no
/// such effect.
const WRITE_CHUNK: usize = 128 * 1024;

/// Where one block's encoding lies, with the block's hash next to it so that
/// `hash_at` needs no file read, and the CRC-32 its bytes must have (see
/// [`super::segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub hash: Hash,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

impl Location {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }

    /// Whether `bytes` (read from this location) are what was stored.
    pub fn intact(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len as usize && super::segment::checksum(bytes) == self.crc
    }
}

/// The data file. Reads and writes are positional (`pread`/`pwrite`), so
/// readers never contend with the writer for a cursor.
pub(super) struct BlockFile {
    file: File,
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::BlockFile(e)
}

impl BlockFile {
    pub fn new(file: File) -> BlockFile {
        BlockFile { file }
    }

    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.file.metadata().map_err(io_err)?.len())
    }

    /// Writes `bytes` at `offset` in [`WRITE_CHUNK`] pieces.
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), StoreError> {
        let mut at = offset;
        for piece in bytes.chunks(WRITE_CHUNK) {
            self.file.write_all_at(piece, at).map_err(io_err)?;
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset`; a range past the end is corruption
    /// (a location sled committed whose bytes are not there).
    pub fn read(&self, offset: u64, len: u64, height: u64) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(len)
            .map_err(|_| StoreError::Corrupt(format!("block read at height {height} too large")))?;
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf, height)?;
        Ok(buf)
    }

    /// Reads exactly `buf.len()` bytes at `offset` into `buf` (see [`BlockFile::read`]).
    pub fn read_into(&self, offset: u64, buf: &mut [u8], height: u64) -> Result<(), StoreError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => StoreError::Corrupt(format!(
                    "block at height {height} lies beyond the end of the block file"
                )),
                _ => io_err(e),
            })
    }

    pub fn truncate(&self, len: u64) -> Result<(), StoreError> {
        self.file.set_len(len).map_err(io_err)
    }

    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_bigger_than_a_chunk_land_whole() {
        let f = BlockFile::new(tempfile::tempfile().unwrap());
        let bytes: Vec<u8> = (0..WRITE_CHUNK * 2 + 77).map(|i| (i % 251) as u8).collect();
        f.write_at(&bytes, 5).unwrap();
        assert_eq!(f.len().unwrap(), 5 + bytes.len() as u64);
        assert_eq!(f.read(5, bytes.len() as u64, 0).unwrap(), bytes);
    }

    #[test]
    fn reads_past_the_end_are_corruption_not_panics() {
        let f = BlockFile::new(tempfile::tempfile().unwrap());
        f.write_at(b"hello", 0).unwrap();
        assert_eq!(f.read(1, 3, 0).unwrap(), b"ell");
        assert!(matches!(f.read(3, 10, 7), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            f.read(u64::MAX - 1, 1, 7),
            Err(StoreError::Corrupt(_)) | Err(StoreError::BlockFile(_))
        ));
        f.truncate(2).unwrap();
        assert_eq!(f.len().unwrap(), 2);
    }
}
