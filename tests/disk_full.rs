//! A real full disk: the data dir on a small tmpfs this test mounts (it
//! needs root; without it, or without tmpfs, each test prints SKIPPED and
//! returns; CI runs as root).
//!
//! - The store alone: once sled's own write failed for lack of space, it
//!   keeps failing after space returns, until the store is reopened; the
//!   reopened store holds every import that returned Ok.
//! - A syncing node: it fills the disk, says so (`/status`, the metric, one
//!   log line), stops downloading, and once the tmpfs is made bigger resumes
//!   by itself (reopening the store) to the seeder's tip with the seeder's
//!   hashes; its reported height never goes down and the reopened store
//!   holds every height reported before.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{get_json, run_args, Proc, BIN};
use concord::chain::{Block, Genesis, Hash};
use concord::store::Store;

const DEADLINE: Duration = Duration::from_secs(90);

/// A tmpfs mounted for the length of a test; unmounted on drop (a panic too).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` at `path`, or says why it cannot.
    fn mount(path: &Path, size_kib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (root and tmpfs needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn resize(&self, size_kib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size_kib}k")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Mounts the test's tmpfs, or prints why the test is skipped.
fn tmpfs_or_skip(test: &str, path: &Path, size_kib: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(path, size_kib) {
        Ok(t) => Some(t),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A seeder chain of `blocks` blocks of `size` bytes; returns its hashes.
fn seeder(dir: &Path, blocks: u64, size: usize) -> Vec<Hash> {
    common::generate(dir, blocks, size);
    let s = Store::open(dir, &Genesis::dev()).unwrap();
    (0..=s.tip().height)
        .map(|h| s.hash_at(h).unwrap().unwrap())
        .collect()
}

/// Fills the filesystem holding `path` with a ballast file until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn sled_keeps_failing_after_a_full_disk_until_the_store_is_reopened() {
    let work = tempfile::tempdir().unwrap();
    let Some(_fs) = tmpfs_or_skip("sled_keeps_failing…", &work.path().join("mnt"), 8 * 1024)
    else {
        return;
    };
    let source = work.path().join("source");
    let expected = seeder(&source, 300, 256);
    let source = Store::open(&source, &Genesis::dev()).unwrap();
    let blocks: Vec<Block> = source.blocks_range(1, 300, usize::MAX).unwrap();
    // blocks.dat lives off the tmpfs, so the write that fails is sled's own.
    let dir = work.path().join("mnt/store");
    std::fs::create_dir_all(&dir).unwrap();
    let outside = work.path().join("blocks.dat");
    std::os::unix::fs::symlink(&outside, dir.join("blocks.dat")).unwrap();
    let store = Store::open(&dir, &Genesis::dev()).unwrap();
    let ballast = work.path().join("mnt/ballast");
    let mut next = 0;
    for chunk in blocks.chunks(2) {
        if next == 20 {
            fill(&ballast);
        }
        match store.import(chunk) {
            Ok(tip) => next = tip.height as usize,
            Err(e) => {
                assert!(e.is_disk_full(), "not a full disk: {e}");
                break;
            }
        }
    }
    let durable = store.tip().height;
    assert!(
        (20..300).contains(&(durable as usize)),
        "the full disk never failed an import (tip {durable})"
    );
    std::fs::remove_file(&ballast).unwrap();
    let again = store.import(&blocks[durable as usize..durable as usize + 2]);
    let sticky = again.is_err();
    println!("sled after ENOSPC, space freed, not reopened: {again:?}");
    // The import that failed may come back: its bytes reached blocks.dat,
    // and an open adopts valid blocks found there past the index.
    let tip = store.reopen().unwrap();
    assert!(
        tip.height >= durable,
        "reopening lost imports that returned Ok ({} < {durable})",
        tip.height
    );
    for b in blocks[tip.height as usize..].chunks(16) {
        store.import(b).unwrap();
    }
    assert_eq!(store.tip().height, 300);
    for (h, hash) in expected.iter().enumerate() {
        assert_eq!(store.hash_at(h as u64).unwrap(), Some(*hash));
    }
    assert!(
        sticky,
        "sled recovered from its write error without a reopen: the reopen would not be needed"
    );
}

fn status(api: &str) -> serde_json::Value {
    get_json(api, "/status")
}

/// Where the disk fills up first.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Full {
    /// Everything on a 12 MiB tmpfs: usually `blocks.dat` fails first,
    /// sometimes sled; space returns by remounting it bigger.
    Everything,
    /// Only sled on the tmpfs (`blocks.dat` a symlink off it), which a
    /// ballast leaves 40 KiB: sled's own write fails, and sled keeps
    /// failing until the store is reopened; space returns by removing the
    /// ballast.
    SledOnly,
}

#[test]
fn a_node_on_a_full_disk_pauses_and_resumes_by_itself_when_space_returns() {
    full_disk_pauses_and_resumes(Full::Everything);
}

#[test]
fn a_node_whose_sled_write_failed_on_a_full_disk_resumes_by_reopening_the_store() {
    full_disk_pauses_and_resumes(Full::SledOnly);
}

fn full_disk_pauses_and_resumes(full: Full) {
    let work = tempfile::tempdir().unwrap();
    let mnt = work.path().join("mnt");
    let size_kib = if full == Full::Everything {
        12 * 1024
    } else {
        1024
    };
    let Some(fs) = tmpfs_or_skip(&format!("full disk {full:?}"), &mnt, size_kib) else {
        return;
    };
    let seeder_dir = work.path().join("seeder");
    let expected = seeder(&seeder_dir, 600, 65_536);
    let want = expected.len() as u64 - 1;
    let config = work.path().join("follower.toml");
    std::fs::write(
        &config,
        "[sync]\ndisk_full_retry_ms = 100\ndisk_full_retry_max_ms = 3000\n",
    )
    .unwrap();
    let mut seeder = Proc::spawn("seeder", work.path(), BIN, &run_args(&seeder_dir, &[]));
    let line = seeder.wait_for_line(&["listening", "/ip4/127.0.0.1/tcp/"], DEADLINE);
    let addr = common::address_in(&line);
    let follower_dir = mnt.join("follower");
    let ballast = mnt.join("ballast");
    if full == Full::SledOnly {
        std::fs::create_dir_all(&follower_dir).unwrap();
        let outside = work.path().join("follower-blocks.dat");
        std::os::unix::fs::symlink(&outside, follower_dir.join("blocks.dat")).unwrap();
        fill(&ballast);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&ballast)
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(40 * 1024)).unwrap();
    }
    let config_arg = config.display().to_string();
    let args = run_args(
        &follower_dir,
        &["--bootstrap", &addr, "--config", &config_arg],
    );
    let mut follower = Proc::spawn("follower", work.path(), BIN, &args);
    let api = common::api_addr(&mut follower, DEADLINE);

    // Every height /status reports, in order: it must never go down.
    let mut reported: Vec<u64> = Vec::new();
    let mut poll = |api: &str| {
        let s = status(api);
        if let Some(h) = s["height"].as_u64() {
            reported.push(h);
        }
        s
    };
    let paused = common::wait_until(DEADLINE, "the follower to report a full disk", || {
        let s = poll(&api);
        s["disk_full"].as_bool().unwrap_or(false).then_some(s)
    });
    let at_pause = paused["height"].as_u64().unwrap();
    assert!(at_pause < want, "the disk held the whole chain: {paused}");
    let stalled = paused["stalled"].as_str().unwrap_or_default().to_string();
    assert!(stalled.contains("disk full"), "stalled: {stalled:?}");
    let (_, metrics) = common::http(&api, "GET", "/metrics");
    assert!(
        metrics.contains("concord_disk_full 1"),
        "metric not set while the disk is full"
    );
    // Downloads stop: no batch in flight, and the height stays.
    common::wait_until(DEADLINE, "downloads to stop", || {
        let s = poll(&api);
        (s["batches_in_flight"] == 0).then_some(())
    });
    // Each retry downloads a window of batches again to import one; by
    // 3.5 s into the pause the backoff (100 ms doubling) is at its 3 s
    // maximum: from then on downloads must stand still for most of the
    // time (a busy loop, as before, never does).
    std::thread::sleep(Duration::from_millis(3500));
    let mut samples = Vec::new();
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_millis(4000) {
        samples.push((
            std::time::Instant::now(),
            metric(&api, "concord_bytes_downloaded_total"),
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut still = Duration::ZERO;
    let mut since = samples[0].0;
    for w in samples.windows(2) {
        if w[1].1 != w[0].1 {
            since = w[1].0;
        }
        still = still.max(w[1].0 - since);
    }
    assert!(
        still >= Duration::from_millis(1500),
        "downloads never stood still for 1.5 s while paused (longest {still:?}): {samples:?}"
    );
    let s = poll(&api);
    assert_eq!(s["height"], at_pause, "imports went on on a full disk: {s}");
    assert!(s["disk_full"].as_bool().unwrap(), "{s}");

    match full {
        Full::Everything => fs.resize(256 * 1024),
        Full::SledOnly => std::fs::remove_file(&ballast).unwrap(),
    }
    common::wait_until_explained(
        DEADLINE,
        &format!("the follower to resume to the seeder's tip ({want})"),
        || {
            let s = poll(&api);
            (s["height"] == want && s["disk_full"] == false).then_some(())
        },
        || format!(": {}\nfollower log:\n{}", status(&api), follower.log_text()),
    );
    let log = follower.log_text();
    assert!(
        reported.windows(2).all(|w| w[0] <= w[1]),
        "a reported height went away: {reported:?}"
    );
    assert_eq!(
        log.matches("disk full: downloads paused").count(),
        1,
        "the full disk is logged once:\n{log}"
    );
    let reopened: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("store reopened after a full disk"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("height="))
                .and_then(|h| h.parse().ok())
        })
        .collect();
    assert!(!reopened.is_empty(), "the store was never reopened:\n{log}");
    assert!(
        reopened[0] >= at_pause,
        "the reopened store lost heights reported before the full disk ({} < {at_pause})",
        reopened[0]
    );
    assert!(
        log.contains("disk space is back"),
        "resuming is not logged:\n{log}"
    );
    follower.kill();
    // After a restart (here: a kill, then opening the store), everything is
    // there and identical to the seeder.
    let store = Store::open(&follower_dir, &Genesis::dev()).unwrap();
    assert_eq!(store.tip().height, want);
    let report = store.check(&Genesis::dev(), |_| {}).unwrap();
    assert_eq!(report.first_bad, None);
    for (h, hash) in expected.iter().enumerate() {
        assert_eq!(store.hash_at(h as u64).unwrap(), Some(*hash), "height {h}");
    }
    println!(
        "{full:?}: paused at {at_pause} of {want}; reopened at {reopened:?}; {} status polls",
        reported.len()
    );
}

/// A counter or gauge from `/metrics` (0 if absent).
fn metric(api: &str, name: &str) -> f64 {
    let (_, text) = common::http(api, "GET", "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}
