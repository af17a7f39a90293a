//! SIGTERM while syncing: the node exits 0 within a few seconds with its store
//! flushed, and a restart on the same data dir resumes from at least the last
//! height it reported, then completes the sync. The seeder serves through the
//! test throttle, so the sync cannot finish before the signal however fast
//! the machine is.

mod common;

use std::time::{Duration, Instant};

use common::{api_addr, generate, get_json, run_args, wait_until, Proc, BIN};
use concord::chain::Genesis;
use concord::net::NetConfig;
use concord::node::{self, NodeConfig};
use concord::sync::SyncConfig;

const BLOCKS: u64 = 20_000;
/// About 5 MB of blocks at 1 MB/s: several seconds of sync to interrupt.
const SERVE_BYTES_PER_SEC: u64 = 1_000_000;
const DEADLINE: Duration = Duration::from_secs(120);

fn sigterm(p: &Proc) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_while_syncing_exits_0_and_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, fresh_dir) = (dir.path().join("seed"), dir.path().join("fresh"));
    generate(&seed_dir, BLOCKS, 256);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seeder = runtime
        .block_on(node::start(NodeConfig {
            data_dir: seed_dir,
            genesis: Genesis::dev(),
            net: NetConfig {
                listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                serve_rate_limit: Some(SERVE_BYTES_PER_SEC),
                ..NetConfig::default()
            },
            produce: None,
            sync: SyncConfig::default(),
            api: Some("127.0.0.1:0".parse().unwrap()),
        }))
        .expect("seeder starts");
    let seed_api = seeder.api_addr.expect("seeder API").to_string();
    let bootstrap = wait_until(DEADLINE, "the seeder to listen", || {
        get_json(&seed_api, "/status")["listen_addrs"][0]
            .as_str()
            .map(str::to_string)
    });

    let mut fresh = Proc::spawn(
        "fresh",
        dir.path(),
        BIN,
        &run_args(&fresh_dir, &["--bootstrap", &bootstrap]),
    );
    let api = api_addr(&mut fresh, DEADLINE);
    wait_until(DEADLINE, "the node to be syncing with height > 0", || {
        let s = get_json(&api, "/status");
        let h = s["height"].as_u64().unwrap_or(0);
        assert!(h < BLOCKS, "the throttled sync finished before the signal");
        (h > 0 && s["syncing"] == true).then_some(())
    });
    // The last height the node reported before the signal.
    let last_seen = get_json(&api, "/status")["height"].as_u64().unwrap();
    assert!(last_seen < BLOCKS);

    sigterm(&fresh);
    let sent = Instant::now();
    let status = wait_until(Duration::from_secs(10), "exit after SIGTERM", || {
        fresh.child.try_wait().unwrap()
    });
    let took = sent.elapsed();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        fresh.log_text()
    );
    assert!(took < Duration::from_secs(8), "took {took:?} to stop");
    let log = fresh.log_text();
    assert!(log.contains("node stopped, store flushed"), "{log}");

    // Restart on the same data dir: resumes from >= last_seen, then completes.
    let mut again = Proc::spawn(
        "fresh-again",
        dir.path(),
        BIN,
        &run_args(&fresh_dir, &["--bootstrap", &bootstrap]),
    );
    let line = again.wait_for_line(&["chain store opened", "height="], DEADLINE);
    let opened: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("height="))
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height in {line:?}"));
    assert!(
        opened >= last_seen,
        "reopened at {opened}, below the {last_seen} seen before the signal"
    );
    let api = api_addr(&mut again, DEADLINE);
    wait_until(DEADLINE, "the restarted node to complete the sync", || {
        let s = get_json(&api, "/status");
        (s["height"] == BLOCKS && s["syncing"] == false).then_some(())
    });
    let last = format!("/blocks/{BLOCKS}");
    assert_eq!(
        get_json(&api, &last)["hash"],
        get_json(&seed_api, &last)["hash"]
    );
    runtime.block_on(seeder.stop()).unwrap();
}
