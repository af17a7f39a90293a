//! Reopening a store's files in place, the way out of a write error that
//! sled never forgets.
//!
//! sled 0.34 keeps the first I/O error of its log writer as a "global
//! error" and returns it from every later write and flush until the
//! database is opened again (`Config::global_error`, reset only at start).
//! So after a full disk, freeing space alone did not help: the issue saw
//! imports keep failing until a restart in 5 of 6 runs. [`Store::reopen`]
//! is that restart for the store alone: every [`Store`] clone (API, sync,
//! producer, peer serving) keeps working on the new files.
//!
//! It owns only the swap; what an open does (cutting uncommitted bytes off
//! `blocks.dat`, adopting whole blocks past the index, loading the index)
//! is [`Store::open`]'s.

use std::time::{Duration, Instant};

use super::*;

/// How long a reopen waits for readers to let go of the old files (a
/// read takes milliseconds) and for sled's directory lock to be released.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

impl Store {
    /// Closes sled and `blocks.dat` and opens them again as [`Store::open`]
    /// does; returns the tip the disk holds. What sled had not made durable
    /// before its error is gone with it (imports only report a tip once it
    /// is durable, so nothing reported is lost).
    ///
    /// Writers wait meanwhile; readers get [`StoreError::Closed`]. If the
    /// open fails (the disk is still full, say) the store stays closed and
    /// the next reopen tries again. A temporary store cannot be reopened.
    pub fn reopen(&self) -> Result<BlockRef, StoreError> {
        let Some(dir) = self.inner.dir.clone() else {
            return Err(StoreError::Corrupt(
                "a temporary store cannot be reopened".into(),
            ));
        };
        let mut writer = lock(&self.inner.writer);
        let old = self
            .inner
            .files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let end = Instant::now() + RELEASE_WAIT;
        if let Some(old) = old {
            // sled's directory lock goes with the last handle to the old
            // files, which a reader may hold for the length of one read.
            let weak = Arc::downgrade(&old);
            drop(old);
            while weak.strong_count() > 0 {
                if Instant::now() > end {
                    *self.inner.files.write().unwrap_or_else(|e| e.into_inner()) = weak.upgrade();
                    return Err(StoreError::Locked(dir.display().to_string()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let fresh = loop {
            match Store::open(&dir, &self.inner.genesis) {
                // The last handle's drop (sled's threads, its lock) may
                // still be finishing on the reader's thread.
                Err(StoreError::Locked(_)) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => break other?,
            }
        };
        let Ok(fresh) = Arc::try_unwrap(fresh.inner) else {
            return Err(StoreError::Corrupt(
                "a freshly opened store is shared".into(),
            ));
        };
        let tip = fresh.tip.into_inner().unwrap_or_else(|e| e.into_inner());
        *lock(&self.inner.tip) = tip;
        *writer = fresh.writer.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.inner.files.write().unwrap_or_else(|e| e.into_inner()) =
            fresh.files.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(tip)
    }
}
