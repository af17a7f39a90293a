//! Read buffers for blocks responses, used again once the blocks read into
//! them are gone.
//!
//! Owns the idle buffers. It must not look at what is read into them: the
//! codec reads, [`super::blocks_wire`] parses.
//!
//! Why: futures' `AsyncRead` reads into initialised memory, so a fresh
//! buffer is zeroed before a response is read into it, and a fresh 4 MiB
//! allocation is fresh pages (mapped, faulted in, unmapped when freed). In a
//! large-block sync that was ~5% of the node's CPU for the zeroing and as
//! much again for the page faults. A buffer that held a response is
//! initialised already: when the last block pointing into it is dropped
//! (after import), it comes back here, and the next response is read into
//! it with neither.
//!
//! The binary keeps every buffer of 256 KiB or more in its own mapping and
//! returns it to the OS when freed (`tune_malloc` in src/main.rs), so that
//! a burst of responses leaves nothing behind; the idle buffers kept here
//! are the one exception, bounded to `keep` of them.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Idle buffers, shared by the codec of every blocks stream.
#[derive(Debug)]
pub struct ReadBuffers {
    idle: Mutex<Vec<Vec<u8>>>,
    /// Most idle buffers kept; more are freed.
    keep: usize,
}

impl ReadBuffers {
    /// A pool keeping at most `keep` idle buffers.
    pub fn new(keep: usize) -> Arc<ReadBuffers> {
        Arc::new(ReadBuffers {
            idle: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// An idle buffer (its `len()` is how much of it is initialised), or a
    /// new empty one.
    pub fn take(&self) -> Vec<u8> {
        self.idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .unwrap_or_default()
    }

    /// Takes `buf` back for another read, unless enough are idle.
    pub fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(buf);
            }
        }
    }

    /// The first `filled` bytes of `buf` as [`Bytes`]; `buf` comes back to
    /// this pool when the last view of them is dropped.
    pub fn lend(self: &Arc<Self>, buf: Vec<u8>, filled: usize) -> Bytes {
        let filled = filled.min(buf.len());
        Bytes::from_owner(Lent {
            buf,
            filled,
            home: Arc::downgrade(self),
        })
    }

    /// How many buffers are idle.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }
}

/// A filled buffer lent out as [`Bytes`].
struct Lent {
    buf: Vec<u8>,
    filled: usize,
    home: Weak<ReadBuffers>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.filled]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_buffer_comes_back_when_its_last_view_drops_and_keeps_its_bytes() {
        let pool = ReadBuffers::new(1);
        let mut buf = pool.take();
        assert_eq!(buf.capacity(), 0, "a new pool has nothing idle");
        buf.extend_from_slice(b"hello world");
        let ptr = buf.as_ptr();
        let bytes = pool.lend(buf, 5);
        assert_eq!(&bytes[..], b"hello");
        let view = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(pool.idle_count(), 0, "a view still points into the buffer");
        assert_eq!(&view[..], b"el");
        drop(view);
        assert_eq!(pool.idle_count(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same memory is read into again");
        assert_eq!(again.len(), 11, "and it is initialised as far as before");
    }

    #[test]
    fn no_more_than_keep_are_idle_and_a_dropped_pool_takes_nothing_back() {
        let pool = ReadBuffers::new(2);
        let lent: Vec<Bytes> = (0..3).map(|_| pool.lend(vec![7u8; 16], 16)).collect();
        drop(lent);
        assert_eq!(pool.idle_count(), 2);
        let last = pool.lend(vec![1u8; 4], 4);
        drop(pool);
        assert_eq!(&last[..], &[1, 1, 1, 1]);
        drop(last); // its home is gone: the buffer is simply freed
    }
}
