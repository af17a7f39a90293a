//! Operator recovery from a halt, through the commands the halt names: a node
//! whose own chain forks from the majority's deeper than `max_reorg_depth`
//! halts; `concord reset` makes it follow the majority once; and for a node
//! that would halt again at every start, `concord rollback` (offline) cuts
//! its chain back so that it syncs forward.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use concord::chain::Hash;
use concord::node::RunningNode;
use concord::sync::SyncConfig;
use libp2p::Multiaddr;

const BIN: &str = env!("CARGO_BIN_EXE_concord");

fn sync_config() -> SyncConfig {
    SyncConfig {
        status_interval: Duration::from_secs(1),
        consistency_interval: Duration::from_secs(2),
        max_reorg_depth: 100,
        ..SyncConfig::default()
    }
}

async fn start(dir: PathBuf, bootstrap: Vec<Multiaddr>, api: bool) -> (RunningNode, Multiaddr) {
    let mut config = common::node_config(dir, bootstrap, None, sync_config());
    if api {
        config.api = Some("127.0.0.1:0".parse().unwrap());
    }
    common::start_config(config).await
}

fn concord(args: &[&str], data_dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    cmd.output().expect("run concord")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

/// Three honest seeders at #1,300; `x` holds the honest chain to #1,000 and
/// then 200 blocks of its own: a fork 200 deep, twice the reorg bound.
fn chains(root: &Path) -> Hash {
    let mut honest = None;
    for n in ["h1", "h2", "h3"] {
        honest = Some(common::generate_seeded(&root.join(n), 1_300, 0));
    }
    common::generate_seeded(&root.join("x"), 1_000, 0);
    common::generate_seeded(&root.join("x"), 200, 9);
    honest.unwrap()
}

async fn seeders(root: &Path) -> (Vec<RunningNode>, Vec<Multiaddr>) {
    let (mut nodes, mut addrs) = (Vec::new(), Vec::new());
    for n in ["h1", "h2", "h3"] {
        let (node, addr) = start(root.join(n), vec![], false).await;
        nodes.push(node);
        addrs.push(addr);
    }
    (nodes, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_node_follows_the_majority_after_concord_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = chains(tmp.path());
    let own_tip =
        concord::store::Store::open(&tmp.path().join("x"), &concord::chain::Genesis::dev())
            .unwrap()
            .tip()
            .hash;
    let (hs, addrs) = seeders(tmp.path()).await;
    let (x, _) = start(tmp.path().join("x"), addrs, true).await;
    common::wait_sync(&x, "the deep fork to halt sync", |s| {
        s.status.mode.name() == "halted"
    })
    .await;
    assert_eq!(
        x.store.tip().hash,
        own_tip,
        "history rewritten past the bound"
    );
    let reason = x
        .sync
        .snapshot()
        .await
        .unwrap()
        .status
        .stalled
        .unwrap_or_default();
    assert!(reason.contains("concord reset"), "{reason}");
    assert!(reason.contains("concord rollback"), "{reason}");

    let api = x.api_addr.unwrap().to_string();
    let text = stdout(&concord(&["reset", "--api", &api], None));
    assert!(text.contains("sync reset"), "{text}");
    common::wait_sync(&x, "the reset node to follow the majority", |s| {
        s.status.tip == honest && s.status.mode.name() == "normal"
    })
    .await;
    let snap = x.sync.snapshot().await.unwrap();
    assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    assert_eq!(snap.stats.halts, 1);
    for n in hs.into_iter().chain([x]) {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concord_rollback_cuts_a_stopped_node_below_the_fork_and_it_syncs_without_halting() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = chains(tmp.path());
    let x_dir = tmp.path().join("x");
    let (hs, addrs) = seeders(tmp.path()).await;
    let (x, _) = start(x_dir.clone(), addrs.clone(), false).await;
    common::wait_sync(&x, "the deep fork to halt sync", |s| {
        s.status.mode.name() == "halted"
    })
    .await;

    // While the node runs, its data dir is locked.
    let err = one_error_line(&concord(&["rollback", "--to", "900"], Some(&x_dir)));
    assert!(err.contains("in use"), "{err}");
    x.stop().await.unwrap();

    let err = one_error_line(&concord(&["rollback", "--to", "5000"], Some(&x_dir)));
    assert!(
        err.contains("above the tip") && err.contains("#1200"),
        "{err}"
    );
    let text = stdout(&concord(&["rollback", "--to", "900"], Some(&x_dir)));
    assert!(
        text.starts_with("rolled back 300 blocks: tip was #1200 "),
        "{text}"
    );
    assert!(text.contains(", now #900 "), "{text}");

    let (x, _) = start(x_dir, addrs, false).await;
    common::wait_sync(&x, "the rolled-back node to sync the majority chain", |s| {
        s.status.tip == honest
    })
    .await;
    let snap = x.sync.snapshot().await.unwrap();
    assert_eq!(snap.stats.halts, 0);
    assert_eq!(
        snap.stats.reorgs, 0,
        "nothing left to reorg after the rollback"
    );
    assert!(snap.banned.is_empty(), "banned: {:?}", snap.banned);
    for n in hs.into_iter().chain([x]) {
        n.stop().await.unwrap();
    }
}

#[test]
fn rollback_of_a_missing_data_dir_is_one_line_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nope");
    let err = one_error_line(&concord(&["rollback", "--to", "0"], Some(&dir)));
    assert!(err.contains("does not exist"), "{err}");
    assert!(!dir.exists());
}
