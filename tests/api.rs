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
    "fork_at",
    "source",
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

    // Heights are refreshed only on demand (an hour apart otherwise), so a
    // height request after `POST /sync` is the manual sync's doing.
    let config = dir.path().join("fresh.toml");
    std::fs::write(
        &config,
        "[sync]\nstatus_interval_ms = 3600000\nstatus_ttl_ms = 7200000\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut fresh = Proc::spawn(
        "fresh",
        dir.path(),
        BIN,
        &run_args(&fresh_dir, &["--bootstrap", &bootstrap, "--config", config]),
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
    assert_eq!(seed["source"], "bootstrap", "{seed}");
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

    let height_requests = || {
        let (code, text) = http(&api, "GET", "/metrics");
        assert_eq!(code, 200, "{text}");
        sample(
            &parse_prometheus(&text),
            "concord_requests_sent_total{kind=\"height\"}",
        )
        .unwrap_or(0.0)
    };
    let asked = height_requests();
    let (code, body) = http(&api, "POST", "/sync");
    assert_eq!(code, 202, "{body}");
    fresh.wait_for_line(&["manual sync requested"], DEADLINE);
    wait_until(DEADLINE, "a height request after POST /sync", || {
        (height_requests() > asked).then_some(())
    });
    assert_json_error(&api, "GET", "/sync/reset", 405);
    let (code, body) = http(&api, "POST", "/sync/reset");
    assert_eq!(code, 202, "{body}");
    fresh.wait_for_line(&["sync reset requested"], DEADLINE);
    // After a reset the node is still synced and on the same tip.
    let after = common::wait_until(DEADLINE, "the reset node to report synced", || {
        let s = get_json(&api, "/status");
        (s["height"] == 300 && s["syncing"] == false && s["mode"] == "normal").then_some(s)
    });
    assert_eq!(after["tip"], status["tip"]);

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

/// Checks the exposition format: every line is a `# …` comment or
/// `name{labels} value`; returns the samples as (name with labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in metrics line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in metrics line {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with('}'), "unclosed labels in {line:?}");
                let labels = &labels[..labels.len() - 1];
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "bad label name in {line:?}"
                    );
                    assert!(v.starts_with('"'), "unquoted label value in {line:?}");
                }
                name
            }
            None => series,
        };
        assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

fn scrape(api: &str) -> Vec<(String, f64)> {
    let (code, text) = http(api, "GET", "/metrics");
    assert_eq!(code, 200, "{text}");
    parse_prometheus(&text)
}

#[test]
fn metrics_parse_and_move_while_syncing() {
    let dir = tempfile::tempdir().unwrap();
    let (seed_dir, fresh_dir) = (dir.path().join("seed"), dir.path().join("fresh"));
    generate(&seed_dir, 5000, 512);
    let mut seeder = Proc::spawn("seeder", dir.path(), BIN, &run_args(&seed_dir, &[]));
    let seed_api = api_addr(&mut seeder, DEADLINE);
    let bootstrap = get_json(&seed_api, "/status")["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_string();

    // A fresh node with its API up before it has any peer.
    let mut fresh = Proc::spawn("fresh", dir.path(), BIN, &run_args(&fresh_dir, &[]));
    let api = api_addr(&mut fresh, DEADLINE);
    let before = scrape(&api);
    assert_eq!(sample(&before, "concord_height"), Some(0.0));
    assert_eq!(sample(&before, "concord_blocks_imported_total"), Some(0.0));
    drop(fresh);

    let mut fresh = Proc::spawn(
        "fresh2",
        dir.path(),
        BIN,
        &run_args(&fresh_dir, &["--bootstrap", &bootstrap]),
    );
    let api = api_addr(&mut fresh, DEADLINE);
    let after = wait_until(DEADLINE, "concord_height to reach 5000", || {
        let s = scrape(&api);
        (sample(&s, "concord_height") == Some(5000.0)).then_some(s)
    });
    assert_eq!(sample(&after, "concord_target"), Some(5000.0));
    assert!(sample(&after, "concord_blocks_imported_total").is_some_and(|n| n >= 5000.0));
    assert!(sample(&after, "concord_bytes_imported_total").is_some_and(|n| n > 5000.0 * 512.0));
    assert_eq!(
        sample(&after, "concord_peers{state=\"verified\"}"),
        Some(1.0)
    );
    // The fork-safety figures: one mode at a time, no fork peers, no split.
    assert_eq!(
        sample(&after, "concord_sync_mode{mode=\"normal\"}"),
        Some(1.0)
    );
    for mode in ["searching", "rolling_back", "halted", "split"] {
        let key = format!("concord_sync_mode{{mode=\"{mode}\"}}");
        assert_eq!(sample(&after, &key), Some(0.0), "{key}");
    }
    assert_eq!(sample(&after, "concord_fork_peers"), Some(0.0));
    assert_eq!(sample(&after, "concord_splits_total"), Some(0.0));
    assert_eq!(sample(&after, "concord_store_read_errors_total"), Some(0.0));
    // The bootstrap peer is in the address book; nothing was lost, so
    // nothing needed a redial beyond (at most) the start-up dial.
    assert!(sample(&after, "concord_address_book_peers").is_some_and(|n| n >= 1.0));
    assert!(sample(&after, "concord_redials_total").is_some_and(|n| n <= 1.0));
    assert!(
        sample(
            &after,
            "concord_request_duration_seconds_count{protocol=\"/concord/blocks/1\",result=\"ok\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "no blocks request latency"
    );
    // libp2p's own metrics are there too.
    assert!(
        after.iter().any(|(s, _)| s.starts_with("libp2p_swarm_")),
        "no libp2p swarm metrics"
    );
    assert!(
        after
            .iter()
            .any(|(s, _)| s.starts_with("libp2p_bandwidth_")),
        "no libp2p bandwidth metrics"
    );
    // The seeder counted what it served.
    let seed = scrape(&seed_api);
    assert!(
        sample(
            &seed,
            "concord_inbound_requests_served_total{protocol=\"/concord/blocks/1\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "seeder served no blocks"
    );
}
