//! A store that knows when it is damaged: bytes flipped deep in `blocks.dat`
//! are found by `concord check` (which names the first bad height and
//! repairs by rolling back below it) and are never served, neither by the
//! API nor to a syncing peer; an index that is gone or damaged is rebuilt
//! from `blocks.dat` with the chain intact.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use concord::chain::Genesis;
use concord::store::Store;
use concord::sync::SyncConfig;

const DEADLINE: Duration = Duration::from_secs(120);

fn concord(args: &[&str], data_dir: &Path) -> Output {
    Command::new(common::BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run concord")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where the block at `height` starts in `blocks.dat`: `concord generate`
/// writes blocks back to back from genesis, with no rollbacks.
fn offset_of(dir: &Path, height: u64) -> u64 {
    let store = Store::open(dir, &Genesis::dev()).unwrap();
    (0..height)
        .map(|h| store.block(h).unwrap().unwrap().encode().len() as u64)
        .sum()
}

fn flip(dir: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("blocks.dat"))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset).unwrap();
}

fn sled_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            matches!(name.as_str(), "conf" | "db" | "blobs") || name.starts_with("snap.")
        })
        .collect()
}

#[test]
fn check_names_the_first_flipped_byte_and_repair_rolls_back_below_it() {
    let dir = tempfile::tempdir().unwrap();
    common::generate(dir.path(), 300, 1024);
    let out = concord(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: 301 blocks"), "{}", text(&out));

    // A body byte of block 250 and, deeper, a header byte (in the parent
    // hash) of block 120.
    let body_at = offset_of(dir.path(), 251) - 100;
    let header_at = offset_of(dir.path(), 120) + 10;
    flip(dir.path(), body_at);
    flip(dir.path(), header_at);

    let out = concord(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("first bad block at height 120"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--repair"), "{}", text(&out));

    let out = concord(&["check", "--repair"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tip is now #119"), "{}", text(&out));
    let out = concord(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: 120 blocks"), "{}", text(&out));
}

#[test]
fn a_deleted_or_damaged_index_is_rebuilt_with_the_chain_intact() {
    let dir = tempfile::tempdir().unwrap();
    common::generate(dir.path(), 300, 512);
    let tip = Store::open(dir.path(), &Genesis::dev()).unwrap().tip();
    let len = std::fs::metadata(dir.path().join("blocks.dat"))
        .unwrap()
        .len();

    // Deleted: the next open rebuilds it (before, it started a new chain and
    // cut blocks.dat to the genesis block).
    for p in sled_files(dir.path()) {
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }
    let out = concord(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: 301 blocks"), "{}", text(&out));
    assert_eq!(
        std::fs::metadata(dir.path().join("blocks.dat"))
            .unwrap()
            .len(),
        len
    );

    // Damaged: 64 bytes of sled's file flipped. Whatever sled makes of it,
    // the open never panics; when it fails, it says how to rebuild.
    let db = dir.path().join("db");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&db)
        .unwrap();
    let n = f.metadata().unwrap().len();
    for i in 0..64u64 {
        let at = (i * 4099 + 17) % n;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[!b[0]], at).unwrap();
    }
    drop(f);
    let out = concord(&["check"], dir.path());
    let said = text(&out);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "neither a pass nor a clear failure: {said}"
    );
    if !out.status.success() {
        assert!(said.contains("--rebuild-index"), "{said}");
    }
    let out = concord(&["check", "--rebuild-index"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: 301 blocks"), "{}", text(&out));
    let rebuilt = Store::open(dir.path(), &Genesis::dev()).unwrap().tip();
    assert_eq!(rebuilt, tip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_block_is_served_neither_by_the_api_nor_to_a_syncing_peer() {
    let seeder_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    common::generate(seeder_dir.path(), 200, 256);
    flip(seeder_dir.path(), offset_of(seeder_dir.path(), 151) - 20);

    let sync = SyncConfig {
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    };
    let mut config = common::node_config(seeder_dir.path().into(), vec![], None, sync.clone());
    config.api = Some("127.0.0.1:0".parse().unwrap());
    let (seeder, seeder_addr) = common::start_config(config).await;
    let api = seeder.api_addr.unwrap().to_string();

    let (follower, _) =
        common::start_node(follower_dir.path().into(), vec![seeder_addr], None, sync).await;
    let synced = follower
        .sync
        .wait_for(DEADLINE, |s| s.status.height >= 149)
        .await;
    assert!(synced, "{:?}", follower.sync.snapshot().await);
    // The follower asks for block 150 and is refused, not given damage.
    let damaged_reads = seeder.store.damaged_reads();
    let api2 = api.clone();
    tokio::task::spawn_blocking(move || {
        common::wait_until(DEADLINE, "the follower to ask for block 150", || {
            (damaged_reads.get() >= 1).then_some(())
        });
        let (code, body) = common::http(&api2, "GET", "/blocks/150");
        assert_eq!(code, 500, "{body}");
        assert!(body.contains("damaged"), "{body}");
        let (code, _) = common::http(&api2, "GET", "/blocks/149");
        assert_eq!(code, 200);
        let status = common::get_json(&api2, "/status");
        assert_eq!(status["store_damaged_at"], 150, "{status}");
        let (_, metrics) = common::http(&api2, "GET", "/metrics");
        assert!(
            metrics.contains("concord_store_damaged_reads_total"),
            "{metrics}"
        );
    })
    .await
    .unwrap();
    assert_eq!(follower.store.tip().height, 149);
    assert_eq!(follower.store.hash_at(150).unwrap(), None);
    follower.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
