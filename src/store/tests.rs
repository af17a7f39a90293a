//! Tests of the store: layout, crash recovery, rollbacks, corrupt records.

use super::*;
use crate::chain::generate::ChainGenerator;
use crate::chain::AuthorityKey;

fn chain(g: &Genesis, parent: BlockRef, n: usize, body: usize, seed: u64) -> Vec<Block> {
    ChainGenerator::new(g, AuthorityKey::dev(), parent, body, seed)
        .take(n)
        .collect()
}

fn other_genesis() -> Genesis {
    Genesis::new(
        "other".into(),
        0,
        1000,
        vec![AuthorityKey::dev().public()],
        vec![],
    )
    .unwrap()
}

/// Every block from 0 to the tip is present with consistent segment
/// records, and nothing lies above the tip.
fn assert_consistent(store: &Store) {
    let tip = store.tip();
    let mut prev: Option<Hash> = None;
    for h in 0..=tip.height {
        let block = store
            .block(h)
            .unwrap()
            .unwrap_or_else(|| panic!("missing block {h}"));
        let hash = block.hash();
        assert_eq!(store.hash_at(h).unwrap(), Some(hash));
        if let Some(p) = prev {
            assert_eq!(block.header.parent, p);
        }
        prev = Some(hash);
    }
    assert_eq!(prev, Some(tip.hash));
    assert_eq!(store.block(tip.height + 1).unwrap(), None);
    // The segment records cover 0..=tip exactly, with the stored hashes,
    // and none is over the size cap.
    let mut next = 0u64;
    for item in store.files().unwrap().tree.scan_prefix(b"s") {
        let (k, v) = item.unwrap();
        let first = height_from_key(&k).unwrap();
        assert_eq!(first, next, "gap or overlap in the segment records");
        let seg = Segment::parse(first, &v).unwrap();
        assert!(seg.len() as usize <= segment::MAX_BLOCKS);
        for (i, hash) in seg.hashes().iter().enumerate() {
            assert_eq!(store.hash_at(first + i as u64).unwrap(), Some(*hash));
        }
        next = seg.end_height();
    }
    assert_eq!(next, tip.height + 1, "segment records end at {next}");
    // Only segments and the four meta records.
    assert_eq!(
        store.files().unwrap().tree.len() as u64,
        store.files().unwrap().tree.scan_prefix(b"s").count() as u64 + 4
    );
}

/// [`Store::open`], waiting out a lock that a store just dropped in this
/// process may still hold: sled releases its directory lock when its last
/// background job lets go of the files, which under load can be a moment
/// after the drop (seen once in ~50 runs beside a CI build).
fn open(dir: &std::path::Path, genesis: &Genesis) -> Result<Store, StoreError> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, genesis) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

#[test]
fn new_store_holds_genesis() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    assert_eq!(s.genesis_hash(), g.hash());
    assert_eq!(s.tip(), BlockRef::of(g.block()));
    assert_eq!(s.block(0).unwrap().as_ref(), Some(g.block()));
    assert_eq!(s.block(1).unwrap(), None);
    assert_eq!(s.hash_at(1).unwrap(), None);
}

#[test]
fn a_second_open_of_a_data_dir_in_use_is_locked_not_a_raw_sled_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::dev();
    let _first = Store::open(dir.path(), &g).unwrap();
    match Store::open(dir.path(), &g) {
        Err(StoreError::Locked(path)) => assert_eq!(path, dir.path().display().to_string()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two stores opened one data dir"),
    }
}

#[test]
fn import_then_reopen_resumes_exactly() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 300, 40, 0);
    let tip = {
        let s = open(dir.path(), &g).unwrap();
        s.import(&blocks[..100]).unwrap();
        let tip = s.import(&blocks[100..]).unwrap();
        assert_eq!(tip, BlockRef::of(&blocks[299]));
        assert_eq!(s.tip(), tip);
        s.flush().unwrap();
        tip
    };
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), tip);
    for b in &blocks {
        assert_eq!(s.block(b.height()).unwrap().as_ref(), Some(b));
    }
    assert_consistent(&s);
}

#[test]
fn reopening_with_another_genesis_fails() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &g).unwrap());
    let err = open(dir.path(), &other_genesis()).unwrap_err();
    assert!(
        matches!(err, StoreError::GenesisMismatch { stored, expected } if stored == g.hash() && expected == other_genesis().hash()),
        "{err:?}"
    );
    assert!(err.to_string().contains("another network"));
    // The data dir is untouched by the failed open.
    assert_eq!(open(dir.path(), &g).unwrap().tip().height, 0);
}

#[test]
fn unlinked_import_changes_nothing() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 20, 8, 0);
    s.import(&blocks[..10]).unwrap();
    let before = s.tip();
    // Gap after the tip.
    assert!(matches!(
        s.import(&blocks[11..]),
        Err(StoreError::NotLinked {
            tip_height: 10,
            start: 12
        })
    ));
    // Right height, wrong parent (a fork's block).
    let fork = chain(&g, BlockRef::of(g.block()), 20, 8, 1);
    assert!(matches!(
        s.import(&fork[10..]),
        Err(StoreError::NotLinked { .. })
    ));
    // Starts right but breaks inside: the good prefix must not be written either.
    let mut broken = blocks[10..].to_vec();
    broken.remove(4);
    assert!(matches!(
        s.import(&broken),
        Err(StoreError::NotLinked { .. })
    ));
    assert_eq!(s.tip(), before);
    assert_eq!(s.block(11).unwrap(), None);
    assert!(!holds(&s, &blocks[10]));
    assert_consistent(&s);
    assert_eq!(s.import(&[]).unwrap(), before);
}

#[test]
fn rollback_then_import_fork() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    let main = chain(&g, BlockRef::of(g.block()), 50, 8, 0);
    s.import(&main).unwrap();
    assert!(matches!(
        s.rollback_to(51),
        Err(StoreError::BadRollback {
            target: 51,
            tip: 50
        })
    ));
    assert_eq!(s.rollback_to(50).unwrap(), BlockRef::of(&main[49]));
    let at20 = s.rollback_to(20).unwrap();
    assert_eq!(at20, BlockRef::of(&main[19]));
    assert_eq!(s.tip(), at20);
    assert!(!holds(&s, &main[30]));
    assert_consistent(&s);
    let fork = chain(&g, at20, 40, 8, 9);
    assert_eq!(s.import(&fork).unwrap(), BlockRef::of(&fork[39]));
    assert_eq!(s.hash_at(21).unwrap(), Some(fork[0].hash()));
    assert_consistent(&s);
    assert_eq!(s.rollback_to(0).unwrap(), BlockRef::of(g.block()));
    assert_consistent(&s);
}

#[test]
fn blocks_range_limits() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 5000, 10, 0);
    s.import(&blocks).unwrap();
    let size = blocks[0].encode().len();
    // Count.
    let r = s.blocks_range(1, 3, usize::MAX).unwrap();
    assert_eq!(r, blocks[..3].to_vec());
    assert!(s.blocks_range(1, 0, usize::MAX).unwrap().is_empty());
    // Count cap.
    assert_eq!(
        s.blocks_range(1, u32::MAX, usize::MAX).unwrap().len(),
        MAX_BLOCKS_PER_REQUEST as usize
    );
    // Byte budget: exactly 4 blocks fit, a byte less fits 3.
    assert_eq!(s.blocks_range(1, 100, 4 * size).unwrap().len(), 4);
    assert_eq!(s.blocks_range(1, 100, 4 * size - 1).unwrap().len(), 3);
    // A single block larger than the budget is still sent.
    assert_eq!(s.blocks_range(0, 100, 1).unwrap(), vec![g.block().clone()]);
    // Up to the tip and beyond.
    assert_eq!(
        s.blocks_range(4998, 100, usize::MAX).unwrap(),
        blocks[4997..].to_vec()
    );
    assert!(s.blocks_range(5001, 100, usize::MAX).unwrap().is_empty());
    assert!(s
        .blocks_range(u64::MAX, 100, usize::MAX)
        .unwrap()
        .is_empty());
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    // A record of a length no segment can have.
    s.files()
        .unwrap()
        .tree
        .insert(segment_key(1), &[1u8; 40][..])
        .unwrap();
    assert!(matches!(s.block(1), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.hash_at(2), Err(StoreError::Corrupt(_))));
    // A well-formed record pointing past the end of the file.
    let bogus = segment::encode(
        1 << 40,
        &[Entry {
            hash: Hash([7; 32]),
            len: 100,
            crc: 0,
        }],
    );
    s.files()
        .unwrap()
        .tree
        .insert(segment_key(1), bogus)
        .unwrap();
    assert_eq!(s.hash_at(1).unwrap(), Some(Hash([7; 32])));
    assert!(s.block(1).is_err());
    assert!(s.blocks_range(1, 10, usize::MAX).is_err());
    s.files()
        .unwrap()
        .tree
        .insert(segment_key(2), &[1u8; 3][..])
        .unwrap();
    assert!(matches!(s.hash_at(2), Err(StoreError::Corrupt(_))));
}

/// Whether the store holds `b` at its height.
fn holds(s: &Store, b: &Block) -> bool {
    s.hash_at(b.height()).unwrap() == Some(b.hash())
}

/// The first heights of the segment records, in order.
fn segment_firsts(s: &Store) -> Vec<u64> {
    s.files()
        .unwrap()
        .tree
        .scan_prefix(b"s")
        .map(|i| height_from_key(&i.unwrap().0).unwrap())
        .collect()
}

#[test]
fn a_big_import_is_split_into_capped_segment_records() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let n = 2 * segment::MAX_BLOCKS + 10;
    let blocks = chain(&g, BlockRef::of(g.block()), n, 4, 3);
    {
        let s = open(dir.path(), &g).unwrap();
        s.import(&blocks).unwrap();
        let firsts = segment_firsts(&s);
        let m = segment::MAX_BLOCKS as u64;
        assert_eq!(firsts, vec![0, 1, 1 + m, 1 + 2 * m]);
        // A range across the record boundaries is still one run of blocks.
        let got = s.blocks_range(m - 5, 20, usize::MAX).unwrap();
        assert_eq!(got, blocks[m as usize - 6..m as usize + 14].to_vec());
        assert_consistent(&s);
        // Roll back into the middle record: the last one goes.
        s.rollback_to(m + m / 2).unwrap();
        assert_consistent(&s);
        s.flush().unwrap();
    }
    let s = open(dir.path(), &g).unwrap();
    let m = segment::MAX_BLOCKS;
    assert_eq!(s.tip(), BlockRef::of(&blocks[m + m / 2 - 1]));
    assert_consistent(&s);
}

#[test]
fn rollback_removes_and_truncates_segment_records() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let main = chain(&g, BlockRef::of(g.block()), 100, 8, 0);
    // Imports of 20 blocks are one record each.
    const { assert!(segment::MAX_BLOCKS >= 20) };
    let fork_tip;
    {
        let s = open(dir.path(), &g).unwrap();
        // Records start at 0 (genesis), 1, 21, 41, 61, 81.
        for seg in main.chunks(20) {
            s.import(seg).unwrap();
        }
        // 55 straddles the record at 41; the ones at 61 and 81 go.
        let at55 = s.rollback_to(55).unwrap();
        assert_eq!(at55, BlockRef::of(&main[54]));
        let firsts = segment_firsts(&s);
        assert_eq!(firsts, vec![0, 1, 21, 41]);
        assert_eq!(
            s.files()
                .unwrap()
                .tree
                .get(segment_key(41))
                .unwrap()
                .unwrap()
                .len(),
            8 + 15 * 40
        );
        for b in &main[..55] {
            assert!(holds(&s, b));
        }
        for b in &main[55..] {
            assert!(!holds(&s, b));
        }
        assert_consistent(&s);
        // Rolling back to a record's last height keeps it whole.
        s.rollback_to(40).unwrap();
        assert_eq!(s.files().unwrap().tree.get(segment_key(41)).unwrap(), None);
        assert_eq!(
            s.files()
                .unwrap()
                .tree
                .get(segment_key(21))
                .unwrap()
                .unwrap()
                .len(),
            8 + 20 * 40
        );
        assert_consistent(&s);
        // Fork re-import on top of the truncated index.
        let fork = chain(&g, BlockRef::of(&main[39]), 30, 8, 7);
        fork_tip = s.import(&fork).unwrap();
        for b in &fork {
            assert!(holds(&s, b));
        }
        for b in &main[40..] {
            assert!(!holds(&s, b));
        }
        assert_consistent(&s);
        s.flush().unwrap();
    }
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), fork_tip);
    assert!(!holds(&s, &main[50]));
    assert!(holds(&s, &main[20]));
    assert_consistent(&s);
    assert_eq!(s.rollback_to(0).unwrap(), BlockRef::of(g.block()));
    assert_consistent(&s);
}

fn block_file_path(dir: &Path) -> std::path::PathBuf {
    dir.join(block_file::FILE_NAME)
}

#[test]
fn uncommitted_bytes_past_the_tip_are_cut_at_open() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 60, 100, 0);
    let tip = {
        let s = open(dir.path(), &g).unwrap();
        let tip = s.import(&blocks[..40]).unwrap();
        s.flush().unwrap();
        tip
    };
    let committed = std::fs::metadata(block_file_path(dir.path()))
        .unwrap()
        .len();
    // An import whose bytes reached the file but whose batch never committed.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(block_file_path(dir.path()))
            .unwrap();
        f.write_all(&[0xAB; 5000]).unwrap();
    }
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), tip);
    assert_eq!(
        std::fs::metadata(block_file_path(dir.path()))
            .unwrap()
            .len(),
        committed
    );
    s.import(&blocks[40..]).unwrap();
    assert_consistent(&s);
}

#[test]
fn lost_file_tail_rolls_back_to_the_last_whole_block() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 90, 100, 0);
    {
        let s = open(dir.path(), &g).unwrap();
        for seg in blocks[..60].chunks(30) {
            s.import(seg).unwrap();
        }
        s.flush().unwrap();
    }
    // The OS lost the file's last pages while sled's records survived:
    // cut into the middle of block 50.
    let loc50 = {
        let s = open(dir.path(), &g).unwrap();
        s.location(50).unwrap().unwrap()
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(block_file_path(dir.path()))
        .unwrap();
    f.set_len(loc50.offset + 10).unwrap();
    drop(f);
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[48]), "resumes at block 49");
    assert_consistent(&s);
    // Garbage where the tip's bytes should be walks back the same way.
    s.import(&blocks[49..70]).unwrap();
    let loc70 = s.location(70).unwrap().unwrap();
    s.flush().unwrap();
    drop(s);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(block_file_path(dir.path()))
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0u8; 16], loc70.offset + 20).unwrap();
    drop(f);
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[68]));
    s.import(&blocks[69..]).unwrap();
    assert_consistent(&s);
}

#[test]
fn ranges_read_across_a_rollback_gap_in_the_file() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let main = chain(&g, BlockRef::of(g.block()), 80, 300, 0);
    let s = open(dir.path(), &g).unwrap();
    s.import(&main).unwrap();
    s.rollback_to(40).unwrap();
    let fork = chain(&g, BlockRef::of(&main[39]), 30, 300, 3);
    s.import(&fork).unwrap();
    // Blocks 1..=40 and 41..=70 now lie in two runs with dead bytes between.
    assert_ne!(
        s.location(41).unwrap().unwrap().offset,
        s.location(40).unwrap().unwrap().end()
    );
    let got = s.blocks_range(30, 30, usize::MAX).unwrap();
    let want: Vec<Block> = main[29..40].iter().chain(&fork[..19]).cloned().collect();
    assert_eq!(got, want);
    assert_consistent(&s);
    let dead_end = std::fs::metadata(block_file_path(dir.path()))
        .unwrap()
        .len();
    // A rollback's bytes past the new tip are cut at the next open.
    s.rollback_to(50).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path(), &g).unwrap();
    let end = std::fs::metadata(block_file_path(dir.path()))
        .unwrap()
        .len();
    assert_eq!(end, s.location(50).unwrap().unwrap().end());
    assert!(end < dead_end);
    assert_consistent(&s);
}

#[test]
fn missing_block_file_is_corruption_not_a_silent_reset() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), &g).unwrap();
        s.import(&chain(&g, BlockRef::of(g.block()), 10, 100, 0))
            .unwrap();
        s.flush().unwrap();
    }
    std::fs::remove_file(block_file_path(dir.path())).unwrap();
    assert!(matches!(open(dir.path(), &g), Err(StoreError::Corrupt(_))));
}

#[test]
fn old_layout_is_refused() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), &g).unwrap();
        s.files().unwrap().tree.remove(META_LAYOUT).unwrap();
        s.flush().unwrap();
    }
    let err = open(dir.path(), &g).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedLayout { found: 1 }));
    assert!(err.to_string().contains("fresh data dir"), "{err}");
}

/// Child half of `crash_mid_import_leaves_a_consistent_store`: imports,
/// flushes once, keeps importing and aborts without flushing.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os("CONCORD_STORE_CRASH_DIR") else {
        return;
    };
    let g = Genesis::dev();
    let s = open(Path::new(&dir), &g).unwrap();
    let mut gen = ChainGenerator::new(&g, AuthorityKey::dev(), s.tip(), 64, 0);
    s.import(&gen.next_batch(500, 2)).unwrap();
    s.flush().unwrap();
    for _ in 0..40 {
        s.import(&gen.next_batch(250, 2)).unwrap();
    }
    std::process::abort();
}

#[test]
fn crash_mid_import_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args([
            "--exact",
            "store::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONCORD_STORE_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    let g = Genesis::dev();
    let s = open(dir.path(), &g).unwrap();
    let tip = s.tip();
    assert!(
        tip.height >= 500,
        "flushed blocks were lost: tip {}",
        tip.height
    );
    // Imports are 250-block batches after the flushed 500: a torn batch would show here.
    assert_eq!(
        (tip.height - 500) % 250,
        0,
        "partial batch at tip {}",
        tip.height
    );
    assert_consistent(&s);
    println!("after crash the store resumed at height {}", tip.height);
}

/// Not a timed assertion: prints import throughput with `--nocapture`.
#[test]
fn import_throughput() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &g).unwrap();
    let n = 100_000;
    let mut gen = ChainGenerator::new(&g, AuthorityKey::dev(), s.tip(), 64, 0);
    let batches: Vec<Vec<Block>> = (0..n / 1000).map(|_| gen.next_batch(1000, 2)).collect();
    let start = std::time::Instant::now();
    for b in &batches {
        s.import(b).unwrap();
    }
    s.flush().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "imported {n} 64-byte blocks in batches of 1000: {secs:.2}s, {:.0} blocks/s",
        n as f64 / secs
    );
    assert_eq!(s.tip().height, n as u64);
}

/// Flips one byte of `blocks.dat` at `offset`.
fn flip_byte(dir: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(block_file_path(dir))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5A], offset).unwrap();
}

/// A data dir holding 200 blocks with 300-byte bodies, imported in 4 batches.
fn store_of_200(dir: &Path) -> Vec<Block> {
    let g = Genesis::dev();
    let blocks = chain(&g, BlockRef::of(g.block()), 200, 300, 0);
    let s = open(dir, &g).unwrap();
    for seg in blocks.chunks(50) {
        s.import(seg).unwrap();
    }
    s.flush().unwrap();
    blocks
}

/// sled's files in a data dir (all but `blocks.dat`).
fn sled_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != block_file::FILE_NAME)
        .collect()
}

#[test]
fn a_flipped_body_byte_deep_in_the_file_is_damage_never_served() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_of_200(dir.path());
    let loc = open(dir.path(), &g).unwrap().location(57).unwrap().unwrap();
    // Ten bytes before the end of block 57: inside its body.
    flip_byte(dir.path(), loc.end() - 10);
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip().height, 200, "open checks the tip only");
    let err = s.block(57).unwrap_err();
    assert!(
        matches!(err, StoreError::Damaged { height: 57, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--repair"), "{err}");
    // A range stops before the damaged block; one starting at it is refused.
    let got = s.blocks_range(50, 20, usize::MAX).unwrap();
    assert_eq!(got, blocks[49..56].to_vec());
    assert!(matches!(
        s.blocks_range(57, 20, usize::MAX),
        Err(StoreError::Damaged { height: 57, .. })
    ));
    assert_eq!(s.damaged_height(), Some(57));
    assert_eq!(s.damaged_reads().get(), 3);
    // The check names it; the repair rolls back below it and sync (here: an
    // import of the same blocks) makes the store whole again.
    let report = s.check(&g, |_| {}).unwrap();
    assert_eq!(report.first_bad.map(|b| b.height), Some(57));
    assert_eq!(report.good, 57);
    s.rollback_to(56).unwrap();
    s.import(&blocks[56..]).unwrap();
    let report = s.check(&g, |_| {}).unwrap();
    assert_eq!((report.first_bad, report.good), (None, 201));
    assert_consistent(&s);
}

#[test]
fn a_flipped_header_byte_is_damage_not_a_wrong_hash() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    store_of_200(dir.path());
    let loc = open(dir.path(), &g)
        .unwrap()
        .location(120)
        .unwrap()
        .unwrap();
    // Inside the parent hash (after the array and height heads).
    flip_byte(dir.path(), loc.offset + 8);
    let s = open(dir.path(), &g).unwrap();
    assert!(matches!(
        s.block(120),
        Err(StoreError::Damaged { height: 120, .. })
    ));
    assert_eq!(s.blocks_range(119, 5, usize::MAX).unwrap().len(), 1);
    let report = s.check(&g, |_| {}).unwrap();
    assert_eq!(report.first_bad.map(|b| b.height), Some(120));
}

#[test]
fn check_finds_a_block_whose_checksum_was_rewritten_with_it() {
    // Damage that a CRC cannot see (the record was rewritten to match) is
    // still found by the check's hash and signature validation.
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 30, 100, 0);
    s.import(&blocks).unwrap();
    let loc = s.location(12).unwrap().unwrap();
    let mut bytes = s
        .files()
        .unwrap()
        .blocks
        .read(loc.offset, u64::from(loc.len), 12)
        .unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    s.files()
        .unwrap()
        .blocks
        .write_at(&bytes, loc.offset)
        .unwrap();
    let (first, v) = Store::segment_at(&s.files().unwrap().tree, 12)
        .unwrap()
        .unwrap();
    let seg = Segment::parse(first, &v).unwrap();
    let entries: Vec<Entry> = seg
        .locations_from(first)
        .map(|(h, l)| Entry {
            hash: l.hash,
            len: l.len,
            crc: if h == 12 {
                segment::checksum(&bytes)
            } else {
                l.crc
            },
        })
        .collect();
    s.files()
        .unwrap()
        .tree
        .insert(
            segment_key(first),
            segment::encode(seg.locations_from(first).next().unwrap().1.offset, &entries),
        )
        .unwrap();
    let report = s.check(&g, |_| {}).unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.height, 12, "{}", bad.reason);
}

#[test]
fn a_deleted_index_is_rebuilt_from_the_block_file_with_the_chain_intact() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let main = chain(&g, BlockRef::of(g.block()), 150, 200, 0);
    let fork = chain(&g, BlockRef::of(&main[99]), 80, 200, 9);
    let tip = {
        let s = open(dir.path(), &g).unwrap();
        for seg in main.chunks(40) {
            s.import(seg).unwrap();
        }
        // A reorg leaves the old fork's bytes in the middle of the file.
        s.rollback_to(100).unwrap();
        let tip = s.import(&fork).unwrap();
        s.flush().unwrap();
        tip
    };
    let len = std::fs::metadata(block_file_path(dir.path()))
        .unwrap()
        .len();
    for p in sled_files(dir.path()) {
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), tip, "the rebuilt index ends at the same tip");
    assert_consistent(&s);
    assert_eq!(
        std::fs::metadata(block_file_path(dir.path()))
            .unwrap()
            .len(),
        len,
        "nothing cut"
    );
    assert_eq!(s.blocks_range(95, 10, usize::MAX).unwrap()[6], fork[0]);
    assert_eq!(s.check(&g, |_| {}).unwrap().first_bad, None);
}

#[test]
fn a_block_file_of_another_chain_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    store_of_200(dir.path());
    for p in sled_files(dir.path()) {
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }
    let len = std::fs::metadata(block_file_path(dir.path()))
        .unwrap()
        .len();
    let err = open(dir.path(), &other_genesis()).unwrap_err();
    assert!(err.to_string().contains("genesis block"), "{err}");
    assert_eq!(
        std::fs::metadata(block_file_path(dir.path()))
            .unwrap()
            .len(),
        len
    );
}

#[test]
fn an_index_that_lost_its_latest_records_adopts_the_blocks_past_its_end() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let blocks = chain(&g, BlockRef::of(g.block()), 200, 100, 0);
    {
        let s = open(dir.path(), &g).unwrap();
        s.import(&blocks[..100]).unwrap();
        s.flush().unwrap();
    }
    let copy = |from: &Path, to: &Path| {
        for p in sled_files(from) {
            if p.is_file() {
                std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
            }
        }
    };
    copy(dir.path(), old.path());
    {
        let s = open(dir.path(), &g).unwrap();
        for seg in blocks[100..].chunks(25) {
            s.import(seg).unwrap();
        }
        s.flush().unwrap();
    }
    // sled's files go back to what they were at height 100; blocks.dat keeps 200.
    for p in sled_files(dir.path()) {
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }
    copy(old.path(), dir.path());
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[199]));
    assert_consistent(&s);
}

#[test]
fn a_damaged_index_is_one_clear_error_and_rebuilds() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_of_200(dir.path());
    // Make the records disagree with the tip: remove the last segment record.
    {
        let s = open(dir.path(), &g).unwrap();
        let last = *segment_firsts(&s).last().unwrap();
        s.files().unwrap().tree.remove(segment_key(last)).unwrap();
        s.flush().unwrap();
    }
    let err = open(dir.path(), &g).unwrap_err();
    assert!(matches!(err, StoreError::IndexDamaged { .. }), "{err}");
    assert!(err.to_string().contains("--rebuild-index"), "{err}");
    let aside = set_index_aside(dir.path()).unwrap().unwrap();
    assert!(aside.join("db").exists() || aside.join("conf").exists());
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[199]));
    assert_consistent(&s);
}

#[test]
fn a_record_lost_mid_chain_is_index_damage_when_read_and_rebuilds() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_of_200(dir.path());
    let (gap, after) = {
        let s = open(dir.path(), &g).unwrap();
        let firsts = segment_firsts(&s);
        s.files()
            .unwrap()
            .tree
            .remove(segment_key(firsts[2]))
            .unwrap();
        s.flush().unwrap();
        (firsts[2], firsts[3])
    };
    // Open reads only the ends of the chain, so it does not see the gap;
    // every read inside it does, and never answers "no such block".
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[199]));
    for read in [
        s.hash_at(gap).map(|_| ()),
        s.block(after - 1).map(|_| ()),
        s.rollback_to(gap).map(|_| ()),
    ] {
        let err = read.unwrap_err();
        assert!(matches!(err, StoreError::IndexDamaged { .. }), "{err}");
        assert!(err.to_string().contains("--rebuild-index"), "{err}");
    }
    assert!(holds(&s, &blocks[(after - 1) as usize]));
    let report = s.check(&g, |_| {}).unwrap();
    assert_eq!(report.first_bad.map(|b| b.height), Some(gap));
    drop(s);
    set_index_aside(dir.path()).unwrap().unwrap();
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(s.tip(), BlockRef::of(&blocks[199]));
    assert_consistent(&s);
}

#[test]
fn reads_racing_rollbacks_never_report_index_damage() {
    let g = Genesis::dev();
    let s = Store::temporary(&g).unwrap();
    let main = chain(&g, BlockRef::of(g.block()), 400, 0, 0);
    s.import(&main[..200]).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Re-import and roll back the top of the chain, record by record.
            for _ in 0..50 {
                s.import(&main[200..]).unwrap();
                s.rollback_to(200).unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        while !done.load(Ordering::Relaxed) {
            let tip = s.tip().height;
            for h in [tip, tip.saturating_sub(100), 201] {
                if let Err(e) = s.hash_at(h) {
                    panic!("read of {h} (tip {tip}): {e}");
                }
            }
        }
    });
}

#[test]
fn garbage_in_sled_files_never_panics_the_open() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_of_200(dir.path());
    // 64 bytes flipped in every sled file, spread through it.
    for p in sled_files(dir.path()).into_iter().filter(|p| p.is_file()) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let len = f.metadata().unwrap().len();
        for i in 0..64u64 {
            let at = (i * 7919 + 13) % len.max(1);
            let mut b = [0u8; 1];
            if f.read_exact_at(&mut b, at).is_ok() {
                f.write_all_at(&[!b[0]], at).unwrap();
            }
        }
    }
    match open(dir.path(), &g) {
        Ok(s) => assert_consistent(&s),
        Err(e) => {
            assert!(e.is_damage() || matches!(e, StoreError::Sled(_)), "{e}");
            set_index_aside(dir.path()).unwrap();
            let s = open(dir.path(), &g).unwrap();
            assert_eq!(s.tip(), BlockRef::of(&blocks[199]));
        }
    }
}

/// Rewrites a layout 5 store as layout 4 (no CRCs, no file end record).
fn downgrade_to_v4(s: &Store) {
    let mut batch = sled::Batch::default();
    for item in s.files().unwrap().tree.scan_prefix(b"s") {
        let (k, v) = item.unwrap();
        let first = height_from_key(&k).unwrap();
        let seg = Segment::parse(first, &v).unwrap();
        let mut locs = seg.locations_from(first);
        let (_, l0) = locs.next().unwrap();
        let mut out = l0.offset.to_be_bytes().to_vec();
        for (_, l) in std::iter::once((first, l0)).chain(locs) {
            out.extend_from_slice(&l.hash.0);
            out.extend_from_slice(&l.len.to_be_bytes());
        }
        batch.insert(k, out);
    }
    batch.remove(META_FILE_END);
    batch.insert(META_LAYOUT, &[LAYOUT_V4][..]);
    s.files().unwrap().tree.apply_batch(batch).unwrap();
    s.flush().unwrap();
}

#[test]
fn a_layout_4_store_is_migrated_and_its_damage_cut() {
    let g = Genesis::dev();
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_of_200(dir.path());
    let loc = {
        let s = open(dir.path(), &g).unwrap();
        let loc = s.location(150).unwrap().unwrap();
        downgrade_to_v4(&s);
        loc
    };
    flip_byte(dir.path(), loc.end() - 3);
    let s = open(dir.path(), &g).unwrap();
    assert_eq!(
        s.files()
            .unwrap()
            .tree
            .get(META_LAYOUT)
            .unwrap()
            .unwrap()
            .as_ref(),
        [LAYOUT_VERSION]
    );
    assert_eq!(
        s.tip(),
        BlockRef::of(&blocks[148]),
        "ends below the damaged block"
    );
    assert_consistent(&s);
    s.import(&blocks[149..]).unwrap();
    assert_eq!(s.check(&g, |_| {}).unwrap().first_bad, None);
}
