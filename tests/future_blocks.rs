//! The future-timestamp rule on the real sync path, over 127.0.0.1: a
//! seeder holds a chain whose last blocks are stamped a minute ahead of the
//! wall clock. The follower imports everything up to them, puts those off
//! (counted, in its stats and its metrics) without importing one, and
//! punishes nobody: the seeder is honest, only early.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord::chain::generate::produce_block;
use concord::chain::{AuthorityKey, BlockRef, Genesis};
use concord::store::Store;
use concord::sync::SyncConfig;

const DEADLINE: Duration = Duration::from_secs(120);
/// Blocks stamped in the past, then blocks a minute ahead.
const PAST: u64 = 20;
const FUTURE: u64 = 5;
const AHEAD_MS: u64 = 60_000;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_ahead_of_the_clock_are_put_off_counted_and_punish_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let start_ms = wall_ms();
    let key = AuthorityKey::dev();
    let genesis = Genesis::new(
        "future".into(),
        start_ms - 60_000,
        1000,
        vec![key.public()],
        Vec::new(),
    )
    .unwrap();
    let seeder_dir = tmp.path().join("seeder");
    {
        let store = Store::open(&seeder_dir, &genesis).unwrap();
        let mut parent = BlockRef::of(genesis.block());
        let mut blocks = Vec::new();
        for h in 1..=PAST + FUTURE {
            let ts = if h <= PAST {
                genesis.timestamp_ms + h * genesis.slot_ms
            } else {
                start_ms + AHEAD_MS + (h - PAST) * genesis.slot_ms
            };
            let b = produce_block(&key, &parent, ts, vec![h as u8; 64]);
            parent = BlockRef::of(&b);
            blocks.push(b);
        }
        store.import(&blocks).unwrap();
        store.flush().unwrap();
    }

    let mut seeder_config = common::node_config(seeder_dir, vec![], None, SyncConfig::default());
    seeder_config.genesis = genesis.clone();
    let (seeder, seeder_addr) = common::start_config(seeder_config).await;
    // One block per batch, so that the past blocks are never held back by
    // sharing a segment with a future one (a segment is accepted or put
    // off whole), and a quick retry, so that it is put off more than once.
    let sync = SyncConfig {
        batch_blocks: 1,
        retry_backoff: Duration::from_millis(200),
        status_interval: Duration::from_secs(1),
        ..SyncConfig::default()
    };
    let drift = sync.max_future_drift;
    let mut follower_config =
        common::node_config(tmp.path().join("follower"), vec![seeder_addr], None, sync);
    follower_config.genesis = genesis.clone();
    follower_config.api = Some("127.0.0.1:0".parse().unwrap());
    let (follower, _) = common::start_config(follower_config).await;

    let put_off = follower
        .sync
        .wait_for(DEADLINE, |s| {
            s.status.height == PAST
                && s.status.target == Some(PAST + FUTURE)
                && s.stats.future_blocks >= 2
        })
        .await;
    let snap = follower.sync.snapshot().await.unwrap();
    assert!(
        put_off,
        "the follower did not import the past blocks and put off the future ones: {snap:?}"
    );
    assert!(
        wall_ms() + drift.as_millis() as u64 + 1000 < start_ms + AHEAD_MS,
        "the test ran so long that the future blocks came due; nothing was shown"
    );
    let tip = follower.store.tip();
    assert_eq!(tip.height, PAST, "a block from the future was imported");
    let tip_block = follower.store.block(PAST).unwrap().unwrap();
    assert!(tip_block.header.timestamp_ms <= wall_ms() + drift.as_millis() as u64);
    assert!(
        snap.banned.is_empty(),
        "an honest seeder was banned: {snap:?}"
    );
    assert!(
        !snap.stats.penalties.contains_key("invalid_blocks"),
        "early blocks were judged invalid: {:?}",
        snap.stats.penalties
    );
    let seeder_id = seeder.client.local_peer_id();
    let seen = snap.peers.iter().find(|p| p.peer == seeder_id);
    assert!(
        seen.is_some_and(|p| p.state == "verified"),
        "the seeder is no longer a verified peer: {snap:?}"
    );

    let api = follower.api_addr.unwrap().to_string();
    let (code, metrics) =
        tokio::task::spawn_blocking(move || common::http(&api, "GET", "/metrics"))
            .await
            .unwrap();
    assert_eq!(code, 200);
    let counted: u64 = metrics
        .lines()
        .find(|l| l.starts_with("concord_") && l.contains("future_blocks") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no future_blocks counter in the metrics:\n{metrics}"));
    assert!(counted >= 1, "future blocks not counted in the metrics");
    follower.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
