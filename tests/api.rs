//! The HTTP API and `concord status` against live `concord run` processes on
//! 127.0.0.1 (free ports): JSON shapes, 4xx on bad input, manual sync.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{api_addr, generate, get_json, http, run_args, wait_until, Proc, BIN};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Fails if a documented field is missing.
fn assert_fields(v: &Value, fields: &[&str], what: &str) {
    for f in fields {
        assert!(v.get(f).is_some(), "{what}: field {f:?} missing in {v}");
    }
}

const STATUS_FIELDS: &[&str] = &[
    "peer_id",
    "genesis",
    "height",
    "tip",
    "target",
    "best",
    "syncing",
    "peers",
    "pending_blocks",
    "batches_in_flight",
    "mode",
    "stalled",
    "listen_addrs",
];
const PEER_FIELDS: &[&str] = &[
    "id",
    "addresses",
    "height",
    "latency_ms",
    "score",
    "state",
    "in_flight",
];
const BLOCK_FIELDS: &[&str] = &[
    "height",
    "hash",
    "parent",
    "timestamp_ms",
    "body_hash",
    "producer",
    "signature",
    "body_size",
];

fn assert_json_error(addr: &str, method: &str, path: &str, code: u16) {
    let (got, body) = http(addr, method, path);
    assert_eq!(got, code, "{method} {path}: {body}");
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: error body is not JSON ({e}): {body:?}"));
    assert!(
        v.get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()),
        "{method} {path}: no \"error\" in {body}"
    );
}

#[test]
fn api_shapes_errors_and_status_command() {
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, fresh_dir) = (dir.path().join("seed"), dir.path().join("fresh"));
    generate(&seed_dir, 300, 64);

    let mut seeder = Proc::spawn("seeder", dir.path(), BIN, &run_args(&seed_dir, &[]));
    let seed_api = api_addr(&mut seeder, DEADLINE);
    let status = get_json(&seed_api, "/status");
    assert_fields(&status, STATUS_FIELDS, "/status");
    assert_eq!(status["height"], 300, "{status}");
    let bootstrap = status["listen_addrs"][0]
        .as_str()
        .expect("a listen address")
        .to_string();
    assert!(bootstrap.contains("/p2p/"), "{bootstrap}");
    let seed_id = status["peer_id"].as_str().unwrap().to_string();

    let mut fresh = Proc::spawn(
        "fresh",
        dir.path(),
        BIN,
        &run_args(&fresh_dir, &["--bootstrap", &bootstrap]),
    );
    let api = api_addr(&mut fresh, DEADLINE);

    // Synced to the seeder, which it lists with its address.
    wait_until(DEADLINE, "the fresh node to reach height 300", || {
        let s = get_json(&api, "/status");
        (s["height"] == 300 && s["syncing"] == false).then_some(())
    });
    let status = get_json(&api, "/status");
    assert_fields(&status, STATUS_FIELDS, "/status");
    assert_eq!(status["genesis"], get_json(&seed_api, "/status")["genesis"]);
    assert_eq!(status["target"], 300, "{status}");

    let peers = get_json(&api, "/peers");
    let list = peers["peers"].as_array().expect("peers array");
    let seed = list
        .iter()
        .find(|p| p["id"] == seed_id.as_str())
        .unwrap_or_else(|| panic!("seeder not in {peers}"));
    assert_fields(seed, PEER_FIELDS, "/peers entry");
    assert_eq!(seed["state"], "verified", "{seed}");
    assert!(
        seed["addresses"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("/ip4/127.0.0.1/tcp/")),
        "{seed}"
    );

    let block = get_json(&api, "/blocks/300");
    assert_fields(&block, BLOCK_FIELDS, "/blocks/300");
    assert_eq!(block["height"], 300);
    assert_eq!(block["body_size"], 64);
    assert_eq!(block["hash"], status["tip"]);
    assert_eq!(get_json(&api, "/blocks/0")["height"], 0);

    // Bad input: 4xx with a JSON error.
    assert_json_error(&api, "GET", "/blocks/301", 404);
    assert_json_error(&api, "GET", "/blocks/abc", 400);
    assert_json_error(&api, "GET", "/blocks/-1", 400);
    assert_json_error(&api, "GET", "/nope", 404);
    assert_json_error(&api, "POST", "/status", 405);
    assert_json_error(&api, "GET", "/sync", 405);

    let (code, body) = http(&api, "POST", "/sync");
    assert_eq!(code, 202, "{body}");
    fresh.wait_for_line(&["manual sync requested"], DEADLINE);

    // `concord status`: summary, JSON, unreachable node.
    let out = Command::new(BIN)
        .args(["status", "--api", &api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let id = status["peer_id"].as_str().unwrap();
    assert!(text.contains(id), "{text}");
    assert!(text.contains("300 / target 300 (synced)"), "{text}");
    assert!(text.contains("peers:    1"), "{text}");

    let out = Command::new(BIN)
        .args(["status", "--json", "--api", &api])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_fields(&v, STATUS_FIELDS, "status --json");

    // A port nobody listens on: the one we just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().to_string();
    drop(free);
    let out = Command::new(BIN)
        .args(["status", "--api", &closed])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the node API"), "{err}");
}

#[test]
fn api_off_and_bad_api_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--api", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: invalid --api"), "{err}");

    let mut args = run_args(&dir.path().join("d"), &[]);
    let pos = args.iter().position(|a| a == "127.0.0.1:0").unwrap();
    args[pos] = "off".into();
    let mut node = Proc::spawn("node", dir.path(), BIN, &args);
    node.wait_for_line(&["sync driver started"], DEADLINE);
    assert!(!node.log_text().contains("API listening"));
}
