//! Puts the machine in the same state before every timed part, so that a
//! figure measures the part and not what ran before it.
//!
//! Two leftovers of an earlier part skew the next one on this kind of
//! machine (a VM): dirty pages the kernel writes back up to 30 s later, and
//! memory freed a few seconds ago, which the hypervisor takes back (free
//! page reporting) and faults in again, slowly, when the next part touches
//! it. `dd` of 1 GiB into the page cache here: 2.9 GB/s when the pages were
//! freed a moment before, 0.46 GB/s when they were freed 20 s before; the
//! large chain's import ceiling came out anywhere between 360 and 810 MB/s
//! over three repetitions of one run.

/// Writes every dirty page back.
fn flush_dirty_pages() {
    // SAFETY: sync(2) takes no arguments and touches no memory of ours.
    unsafe { libc::sync() }
}

/// Touches `bytes` of fresh memory and frees it, so that the part about to
/// run finds that much memory the hypervisor has just backed, whether or
/// not the part before it left some.
fn warm_free_memory(bytes: u64) {
    let Ok(len) = usize::try_from(bytes) else {
        return;
    };
    // Filled with a non-zero byte: a zeroed allocation would map the
    // kernel's shared zero page and back nothing.
    let v = vec![1u8; len];
    std::hint::black_box(&v);
}

/// Both of the above, sized for a part that handles `bytes` of chain.
pub fn settle(bytes: u64) {
    flush_dirty_pages();
    // The part writes the chain into the page cache once and holds a window
    // of it in buffers: half as much again covers both.
    warm_free_memory(bytes.saturating_add(bytes / 2).min(4 << 30));
}
