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
        let mut buf = Vec::new();
        self.read_append(offset, len, &mut buf, height)?;
        Ok(buf)
    }

    /// Appends exactly `len` bytes read at `offset` to `buf` (see
    /// [`BlockFile::read`]), straight into its spare capacity: nothing is
    /// zeroed first. On error `buf` is left as it was.
    pub fn read_append(
        &self,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        height: u64,
    ) -> Result<(), StoreError> {
        let start = buf.len();
        buf.reserve_exact(len);
        let mut at = offset;
        while buf.len() - start < len {
            let want = len - (buf.len() - start);
            // Only `want` bytes of spare capacity are offered: the capacity
            // may exceed the range, and reading past it would be wasted I/O.
            let spare = &mut buf.spare_capacity_mut()[..want];
            let n = match rustix::io::pread(&self.file, spare, at) {
                Ok((filled, _)) => filled.len(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(io_err(e.into()));
                }
            };
            if n == 0 {
                buf.truncate(start);
                return Err(StoreError::Corrupt(format!(
                    "block at height {height} lies beyond the end of the block file"
                )));
            }
            // SAFETY: pread initialised these `n` bytes of spare capacity
            // (rustix returns them as the filled slice), which follow the
            // `len()` initialised ones directly.
            unsafe { buf.set_len(buf.len() + n) };
            at += n as u64;
        }
        Ok(())
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
    fn appended_reads_land_after_what_the_buffer_held_and_a_failed_one_adds_nothing() {
        let f = BlockFile::new(tempfile::tempfile().unwrap());
        let bytes: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
        f.write_at(&bytes, 0).unwrap();
        // Spare capacity beyond the range must not be read into.
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(b"head");
        f.read_append(10, 200_000, &mut buf, 0).unwrap();
        assert_eq!(buf.len(), 4 + 200_000);
        assert_eq!(&buf[..4], b"head");
        assert_eq!(&buf[4..], &bytes[10..200_010]);
        let before = buf.clone();
        assert!(matches!(
            f.read_append(299_990, 20, &mut buf, 9),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(buf, before);
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
