//! The store worker: one blocking thread that owns the sync driver's store
//! writes, imports and rollbacks strictly in the order the engine emitted
//! them, and that watches for equivocation where the node sees both blocks:
//! a rollback drops our block in a slot, and the chain that replaces it has
//! another block by the same authority in that slot.
//!
//! After a write fails for lack of space it reopens the store before the
//! next job (the engine retries with backoff): sled keeps failing once one
//! of its own writes failed, so freeing space alone would not bring the
//! node back (see [`crate::store`]'s `reopen` module). A reopen that fails
//! is reported as the disk still being full, and tried again at the next job.
//!
//! It must not decide anything about sync: it writes what it is told and
//! reports the outcome.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::chain::equivocation::{Equivocation, SlotWatch};
use crate::chain::{Block, BlockRef};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sync::batch::BatchId;
use crate::sync::engine::StoreFailure;

/// The engine's view of a store error.
pub(super) fn store_failure(e: StoreError) -> StoreFailure {
    match e {
        StoreError::NotLinked { .. } => StoreFailure::NotLinked(e.to_string()),
        _ if e.is_disk_full() => StoreFailure::DiskFull(e.to_string()),
        _ => StoreFailure::Io(e.to_string()),
    }
}

pub(super) enum StoreJob {
    /// With the blocks' encodings as received, when they were kept.
    Import(BatchId, Arc<Vec<Block>>, Option<Bytes>),
    Rollback(u64),
}

pub(super) enum StoreDone {
    Imported(BatchId, Result<BlockRef, StoreFailure>),
    RolledBack(Result<BlockRef, StoreFailure>),
}

/// Blocks a rollback drops that are remembered to catch their authors
/// equivocating: more than any reorg `max_reorg_depth` allows by default.
const DROPPED_BLOCKS_WATCHED: usize = 4096;

/// One thread owns store writes so they happen strictly in order. It also
/// watches for equivocation where the node sees both blocks: a rollback
/// drops our block in a slot, and the chain that replaces it has another
/// block by the same authority in that slot.
pub(super) fn spawn(
    store: Store,
    slot_ms: u64,
    metrics: Arc<Metrics>,
) -> (
    mpsc::UnboundedSender<StoreJob>,
    mpsc::UnboundedReceiver<StoreDone>,
) {
    let (job_tx, mut job_rx) = mpsc::unbounded_channel::<StoreJob>();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let mut dropped = SlotWatch::new(slot_ms, DROPPED_BLOCKS_WATCHED);
        let mut reopen = false;
        while let Some(job) = job_rx.blocking_recv() {
            if reopen {
                match store.reopen() {
                    Ok(tip) => {
                        info!(height = tip.height, "store reopened after a full disk");
                    }
                    Err(e) => {
                        let failure = StoreFailure::DiskFull(format!("reopening the store: {e}"));
                        let done = match job {
                            StoreJob::Import(batch, ..) => StoreDone::Imported(batch, Err(failure)),
                            StoreJob::Rollback(_) => StoreDone::RolledBack(Err(failure)),
                        };
                        if done_tx.send(done).is_err() {
                            break;
                        }
                        continue;
                    }
                }
            }
            let done = match job {
                StoreJob::Import(batch, blocks, encoded) => {
                    if !dropped.is_empty() {
                        for e in blocks.iter().filter_map(|b| dropped.check(&b.header)) {
                            report_equivocation(&metrics, &e);
                        }
                    }
                    let imported = match encoded {
                        // The bytes as received go to the file as they are.
                        Some(encoded) => match store.import_encoded(&blocks, &encoded) {
                            Err(e @ StoreError::NotTheEncoding { .. }) => {
                                warn!(error = %e, "kept encodings do not match; encoding the blocks again");
                                store.import(&blocks)
                            }
                            done => done,
                        },
                        None => store.import(&blocks),
                    };
                    StoreDone::Imported(batch, imported.map_err(store_failure))
                }
                StoreJob::Rollback(h) => {
                    remember_dropped(&store, h, &mut dropped);
                    StoreDone::RolledBack(store.rollback_to(h).map_err(store_failure))
                }
            };
            reopen = matches!(
                done,
                StoreDone::Imported(_, Err(StoreFailure::DiskFull(_)))
                    | StoreDone::RolledBack(Err(StoreFailure::DiskFull(_)))
            );
            if done_tx.send(done).is_err() {
                break;
            }
        }
    });
    (job_tx, done_rx)
}

/// Remembers the blocks above `height` (up to [`DROPPED_BLOCKS_WATCHED`] of
/// them, nearest the fork first) before a rollback drops them. A read error
/// only costs the detection, never the rollback.
fn remember_dropped(store: &Store, height: u64, watch: &mut SlotWatch) {
    let tip = store.tip().height;
    let mut next = height + 1;
    let mut read = 0;
    while next <= tip && read < DROPPED_BLOCKS_WATCHED {
        match store.blocks_range(next, 4096, 16 * 1024 * 1024) {
            Ok(blocks) if !blocks.is_empty() => {
                for b in blocks.iter().take(DROPPED_BLOCKS_WATCHED - read) {
                    watch.remember(&b.header);
                }
                read += blocks.len();
                next += blocks.len() as u64;
            }
            Ok(_) => break,
            Err(e) => {
                warn!(height = next, error = %e, "cannot read the blocks a rollback drops; equivocation in them goes unseen");
                break;
            }
        }
    }
}

/// Two blocks for one slot by one authority, both validly signed: the
/// authority's key signed both, which an honest producer never does.
fn report_equivocation(metrics: &Metrics, e: &Equivocation) {
    warn!(slot = e.slot, authority = %e.producer, first = %e.first, second = %e.second,
        "equivocation: an authority signed two different blocks for one slot (seen across a reorg)");
    metrics.equivocation("reorg");
}
