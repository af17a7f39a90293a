//! End to end with real `concord` processes on 127.0.0.1: a runner killed
//! with SIGKILL leaves no node behind and the next run on the same out dir
//! starts clean and passes the `smoke` manifest; a manifest whose assertion
//! cannot hold exits 1; a broken manifest exits 2 with one line.
//!
//! Needs the `concord` binary next to `concord-testnet` (`cargo build -p
//! concord`; `cargo test --workspace` and `testnet/ci.sh` build it too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_concord-testnet");

fn concord() -> PathBuf {
    let path = Path::new(RUNNER).with_file_name("concord");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p concord`",
        path.display()
    );
    path
}

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name)
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Polls `condition` until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killed_runner_leaves_nothing_then_smoke_passes_and_failures_fail() {
    let bin = concord();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out_text = out.display().to_string();

    // 1. A runner killed with SIGKILL once its nodes run.
    let mut runner = Command::new(RUNNER)
        .args(["run", "--concord"])
        .arg(&bin)
        .arg(manifest("smoke.toml"))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the runner");
    wait_until(Duration::from_secs(60), "the nodes to start", || {
        processes_mentioning(&format!("{out_text}/nodes/")).len() >= 5
    });
    runner.kill().expect("SIGKILL the runner");
    runner.wait().expect("reap the runner");
    wait_until(Duration::from_secs(10), "the orphaned nodes to die", || {
        processes_mentioning(&format!("{out_text}/nodes/")).is_empty()
    });

    // 2. The next run on the same out dir starts clean and passes.
    let status = Command::new(RUNNER)
        .args(["run", "--concord"])
        .arg(&bin)
        .arg(manifest("smoke.toml"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run smoke");
    assert_eq!(
        status.code(),
        Some(0),
        "smoke failed; see {out_text}/summary.json"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("summary is JSON");
    assert_eq!(summary["passed"], true);
    assert_eq!(summary["timeline"].as_array().map(Vec::len), Some(4));
    assert!(out.join("heights.svg").is_file());
    assert!(out.join("nodes/f/log").is_file());
    assert!(processes_mentioning(&format!("{out_text}/nodes/")).is_empty());

    // 3. An assertion that cannot hold: exit 1, and it says which.
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        "[run]\nduration = \"3s\"\nsettle = \"1s\"\n\
         [[node]]\nname = \"solo\"\nrole = \"follower\"\n\
         [[assert]]\nkind = \"height\"\nat_least = 1000000\nwithin = \"2s\"\n",
    )
    .expect("write manifest");
    let result = Command::new(RUNNER)
        .args(["run", "--concord"])
        .arg(&bin)
        .arg(&failing)
        .arg("--out")
        .arg(dir.path().join("out2"))
        .output()
        .expect("run failing");
    assert_eq!(result.status.code(), Some(1));
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(text.contains("FAIL height"), "{text}");
    assert!(text.contains("solo never reached it"), "{text}");

    // 4. A broken manifest: exit 2, one line naming the key.
    std::fs::write(&failing, "[run]\nduration = \"3s\"\nspeed = 2\n").expect("write");
    let result = Command::new(RUNNER)
        .args(["run"])
        .arg(&failing)
        .arg("--out")
        .arg(dir.path().join("out3"))
        .output()
        .expect("run broken");
    assert_eq!(result.status.code(), Some(2));
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 3: unknown field `speed`"), "{err}");
}

/// Names of the network namespaces that exist now.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The namespaces a run recorded in its state file.
fn recorded(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("netns.state"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("netns ").map(str::to_string))
        .collect()
}

// `within` leaves room for a dial caught by the cut: on a loaded machine f
// may first dial s during the disconnect (2-5 s), and the kernel's SYN
// retries (1, 2, 4, 8 s apart) then reach s only about 15 s after that
// dial, not at the reconnect (seen in CI: f at height 0 at 17 s).
const NAMESPACED: &str = r#"
[run]
placement = "namespaces"
duration = "25s"
settle = "5s"

[[node]]
name = "s"
role = "seeder"
blocks = 50

[[node]]
name = "f"
role = "follower"
start_after = "1s"

[[timeline]]
at = "2s"
action = "disconnect"
node = "f"

[[timeline]]
at = "5s"
action = "reconnect"
node = "f"

[[assert]]
kind = "height"
nodes = ["f"]
at_least = 50
within = "24s"

[[assert]]
kind = "same_chain"
min_height = 50
"#;

/// Namespaces placement (skipped, saying so, where `ip netns` does not
/// work): a runner killed with SIGKILL leaves its namespaces, the next run
/// on the same out dir removes them, runs with mDNS only (no bootstrap)
/// through a disconnect, passes, and removes its own.
#[test]
fn namespaces_run_finds_peers_by_mdns_and_cleans_up_after_a_killed_runner() {
    let probe = format!("ctn-e2e-probe-{}", std::process::id());
    let works = Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !works {
        println!("skipping the namespaces test: `ip netns add` does not work here");
        return;
    }
    let bin = concord();
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, text) = (dir.path().join("out"), dir.path().join("ns.toml"));
    std::fs::write(&text, NAMESPACED).expect("write manifest");
    let run = || {
        let mut c = Command::new(RUNNER);
        c.args(["run", "--concord"])
            .arg(&bin)
            .arg(&text)
            .arg("--out")
            .arg(&out);
        c
    };
    let mut runner = run().stdout(Stdio::null()).spawn().expect("start");
    let out_text = out.display().to_string();
    wait_until(Duration::from_secs(60), "both nodes to start", || {
        processes_mentioning(&format!("{out_text}/nodes/")).len() >= 2
    });
    runner.kill().expect("SIGKILL the runner");
    runner.wait().expect("reap the runner");
    let left = recorded(&out);
    assert_eq!(left.len(), 3, "bridge and two nodes: {left:?}");
    assert!(left.iter().all(|n| namespaces().contains(n)));

    let status = run().status().expect("run again");
    assert_eq!(status.code(), Some(0), "see {out_text}/summary.json");
    let now = namespaces();
    assert!(left.iter().all(|n| !now.contains(n)), "stale: {now:?}");
    assert!(recorded(&out).is_empty(), "state file left");
    let log = std::fs::read_to_string(out.join("nodes/f/log")).expect("log");
    assert!(log.contains("mDNS discovered peer"), "f found s by mDNS");
    assert!(processes_mentioning(&format!("{out_text}/nodes/")).is_empty());
}
