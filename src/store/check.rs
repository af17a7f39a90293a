//! `concord check`'s verification: every stored block read back and checked
//! as sync validates blocks (checksum, encoding, hash against the index,
//! parent link, slot order, body hash, signature), from genesis to the tip.
//!
//! Owns only reading and judging; it must not repair (the CLI rolls back
//! with [`Store::rollback_to`]) nor report damage to the running node's
//! damage record (a check of a stopped node's store is not a served read).

use super::*;
use crate::chain::validate::{validate_block, validate_segment};

/// Blocks validated together (signatures in one batch).
const CHUNK: usize = 256;

/// The first block that failed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlock {
    pub height: u64,
    pub reason: String,
}

/// What [`Store::check`] found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The tip when the check started.
    pub tip: BlockRef,
    /// Blocks that passed, from genesis up.
    pub good: u64,
    /// Encoded bytes of the blocks that passed.
    pub bytes: u64,
    pub first_bad: Option<BadBlock>,
}

impl Store {
    /// Checks every block from genesis to the tip and stops at the first bad
    /// one. `progress` is called with the height reached after each chunk.
    pub fn check(
        &self,
        genesis: &Genesis,
        mut progress: impl FnMut(u64),
    ) -> Result<CheckReport, StoreError> {
        let tip = self.tip();
        let mut report = CheckReport {
            tip,
            good: 0,
            bytes: 0,
            first_bad: None,
        };
        let mut parent: Option<BlockRef> = None;
        let mut chunk: Vec<Block> = Vec::with_capacity(CHUNK);
        let files = self.files()?;
        for item in files.tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let seg = Segment::parse(height_from_key(&k)?, &v)?;
            // Open does not look between the ends of the chain: a lost
            // record shows here as a gap.
            let expected = report.good + chunk.len() as u64;
            if seg.first() > expected && expected <= tip.height {
                self.check_chunk(genesis, &mut parent, &mut chunk, &mut report);
                if report.first_bad.is_none() {
                    report.first_bad = Some(BadBlock {
                        height: expected,
                        reason: "has no record in the index".into(),
                    });
                }
                return Ok(report);
            }
            for (height, loc) in seg.locations_from(0) {
                if height > tip.height {
                    break;
                }
                let block = match self.read_for_check(genesis, height, &loc) {
                    Ok(b) => b,
                    Err(reason) => {
                        self.check_chunk(genesis, &mut parent, &mut chunk, &mut report);
                        if report.first_bad.is_none() {
                            report.first_bad = Some(BadBlock { height, reason });
                        }
                        return Ok(report);
                    }
                };
                chunk.push(block);
                if chunk.len() == CHUNK {
                    self.check_chunk(genesis, &mut parent, &mut chunk, &mut report);
                    if report.first_bad.is_some() {
                        return Ok(report);
                    }
                    progress(height);
                }
            }
        }
        self.check_chunk(genesis, &mut parent, &mut chunk, &mut report);
        if report.first_bad.is_none() && report.good != tip.height + 1 {
            report.first_bad = Some(BadBlock {
                height: report.good,
                reason: "has no record in the index".into(),
            });
        }
        Ok(report)
    }

    /// The block at `loc`, if its bytes, encoding and hash are right (the
    /// genesis block must also be this network's).
    fn read_for_check(
        &self,
        genesis: &Genesis,
        height: u64,
        loc: &Location,
    ) -> Result<Block, String> {
        let bytes = self
            .files()
            .and_then(|f| f.blocks.read(loc.offset, u64::from(loc.len), height))
            .map_err(|e| format!("cannot be read: {e}"))?;
        if !loc.intact(&bytes) {
            return Err("does not match its checksum".into());
        }
        let block = Block::decode(&bytes).map_err(|e| format!("does not decode: {e}"))?;
        if block.header.height != height {
            return Err(format!("says it is at height {}", block.header.height));
        }
        let hash = block.hash();
        if hash != loc.hash {
            return Err(format!("hashes to {hash}, the index says {}", loc.hash));
        }
        if height == 0 && hash != genesis.block().hash() {
            return Err("is not this network's genesis block".into());
        }
        Ok(block)
    }

    /// Validates `chunk` against `parent` (the genesis block alone needs
    /// none), recording the first bad block; clears the chunk.
    fn check_chunk(
        &self,
        genesis: &Genesis,
        parent: &mut Option<BlockRef>,
        chunk: &mut Vec<Block>,
        report: &mut CheckReport,
    ) {
        let mut blocks: &[Block] = chunk;
        if parent.is_none() {
            if let Some(g) = blocks.first() {
                *parent = Some(BlockRef::of(g));
                report.good += 1;
                report.bytes += g.encode().len() as u64;
                blocks = &blocks[1..];
            }
        }
        let Some(p) = *parent else {
            chunk.clear();
            return;
        };
        let ok = match validate_segment(genesis, &p, blocks) {
            Ok(last) => {
                *parent = Some(last);
                blocks.len()
            }
            Err(_) => {
                // Find the first bad one (the batch check does not say).
                let mut prev = p;
                let mut n = 0;
                for b in blocks {
                    if let Err(e) = validate_block(genesis, &prev, b) {
                        report.first_bad = Some(BadBlock {
                            height: b.header.height,
                            reason: format!("fails validation: {e}"),
                        });
                        break;
                    }
                    prev = BlockRef::of(b);
                    n += 1;
                }
                *parent = Some(prev);
                n
            }
        };
        report.good += ok as u64;
        report.bytes += blocks[..ok]
            .iter()
            .map(|b| b.encode().len() as u64)
            .sum::<u64>();
        chunk.clear();
    }
}
