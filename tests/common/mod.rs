//! Helpers for tests that run the `concord` binary.
#![allow(dead_code)]

pub mod raw_peer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_concord");

/// A child process whose stderr (the log) goes to a file; killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `program args…` with its log in `dir/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, program: &str, args: &[String]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains a line with every one of `needles`;
    /// returns that line. Panics (printing the log) after `deadline`.
    pub fn wait_for_line(&mut self, needles: &[&str], deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {needles:?}; log:\n{text}",
                    self.name
                );
            }
            if Instant::now() > end {
                panic!(
                    "{} did not log {needles:?} within {deadline:?}; log:\n{text}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The peer id of the node key in `data_dir` (created if absent).
pub fn peer_id_of(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .arg("key")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "concord key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The multiaddr following `address=` in a log line.
pub fn address_in(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
        .unwrap_or_else(|| panic!("no address= in {line:?}"))
        .to_string()
}

/// One HTTP/1.1 request to `addr` (`127.0.0.1:port`); returns the status code
/// and the body. Panics if the server cannot be reached.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("bad HTTP answer: {raw:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GET `path` and parse the body as JSON, asserting a 200.
pub fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let (code, body) = http(addr, "GET", path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON {e}: {body}"))
}

/// Polls `f` every 100 ms until it returns `Some`; panics with `what` after `deadline`.
pub fn wait_until<T>(deadline: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_explained(deadline, what, f, String::new)
}

/// [`wait_until`], adding what `explain` says (a node's log, the last
/// status) to the failure message on timeout.
pub fn wait_until_explained<T>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            panic!(
                "timed out after {deadline:?} waiting for {what}{}",
                explain()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the "API listening" log line; returns `127.0.0.1:port`.
pub fn api_addr(p: &mut Proc, deadline: Duration) -> String {
    let line = p.wait_for_line(&["API listening"], deadline);
    address_in(&line).trim_start_matches("http://").to_string()
}

/// `concord generate` into `dir`.
pub fn generate(dir: &Path, blocks: u64, block_size: usize) {
    let out = Command::new(BIN)
        .args(["generate", "--data-dir"])
        .arg(dir)
        .args(["--blocks", &blocks.to_string()])
        .args(["--block-size", &block_size.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Args of `concord run` on loopback with free ports for p2p and the API.
pub fn run_args(data_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--data-dir",
        &data_dir.display().to_string(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `concord generate --seed SEED` appending `blocks` blocks of 256 bytes to
/// the chain in `dir` (another seed: a competing chain from that point);
/// returns the tip hash it prints.
pub fn generate_seeded(dir: &Path, blocks: u64, seed: u64) -> concord::chain::Hash {
    let out = Command::new(BIN)
        .args(["generate", "--blocks", &blocks.to_string()])
        .args(["--block-size", "256", "--seed", &seed.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run concord generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let hash = text
        .split_whitespace()
        .skip_while(|w| *w != "hash")
        .nth(1)
        .unwrap_or_else(|| panic!("no tip hash in {text:?}"));
    concord::chain::Hash::from_hex(hash).unwrap()
}

/// The config of an in-process dev-network node on 127.0.0.1 (free port, no API).
pub fn node_config(
    data_dir: PathBuf,
    bootstrap: Vec<libp2p::Multiaddr>,
    produce: Option<concord::chain::AuthorityKey>,
    sync: concord::sync::SyncConfig,
) -> concord::node::NodeConfig {
    let net = concord::net::NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        ..concord::net::NetConfig::default()
    };
    concord::node::NodeConfig {
        data_dir,
        genesis: concord::chain::Genesis::dev(),
        net,
        produce,
        sync,
        api: None,
    }
}

/// Starts an in-process dev-network node on 127.0.0.1 (free port, no API)
/// and waits until it listens; returns it with its `/p2p/<id>` address.
pub async fn start_node(
    data_dir: PathBuf,
    bootstrap: Vec<libp2p::Multiaddr>,
    produce: Option<concord::chain::AuthorityKey>,
    sync: concord::sync::SyncConfig,
) -> (concord::node::RunningNode, libp2p::Multiaddr) {
    start_config(node_config(data_dir, bootstrap, produce, sync)).await
}

/// [`start_node`] with the whole network config given.
pub async fn start_node_with(
    data_dir: PathBuf,
    net: concord::net::NetConfig,
    produce: Option<concord::chain::AuthorityKey>,
    sync: concord::sync::SyncConfig,
) -> (concord::node::RunningNode, libp2p::Multiaddr) {
    let mut config = node_config(data_dir, vec![], produce, sync);
    config.net = net;
    start_config(config).await
}

/// Starts an in-process node and waits until it listens; returns it with
/// its `/p2p/<id>` address. A data dir a node just stopped on may still be
/// locked for a moment (its last store handles are being dropped): that is
/// waited out.
pub async fn start_config(
    config: concord::node::NodeConfig,
) -> (concord::node::RunningNode, libp2p::Multiaddr) {
    let end = Instant::now() + Duration::from_secs(60);
    let node = loop {
        match concord::node::start(config.clone()).await {
            Ok(node) => break node,
            Err(concord::node::NodeError::Store {
                source: concord::store::StoreError::Locked(_),
                ..
            }) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node does not start: {e}"),
        }
    };
    let id = node.client.local_peer_id();
    if config.net.listen_addrs.is_empty() {
        // Listens nowhere: reachable only through its own dials.
        return (
            node,
            libp2p::Multiaddr::empty().with(libp2p::multiaddr::Protocol::P2p(id)),
        );
    }
    let addr = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            if let Some(a) = node.client.listen_addrs().await.into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("node listens");
    (node, addr.with(libp2p::multiaddr::Protocol::P2p(id)))
}

/// How long an in-process node gets to reach a sync state.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(180);

/// Waits until `node`'s sync snapshot satisfies `pred`; fails the test with
/// `what` and the last snapshot after [`SYNC_DEADLINE`].
pub async fn wait_sync(
    node: &concord::node::RunningNode,
    what: &str,
    pred: impl Fn(&concord::sync::SyncSnapshot) -> bool,
) {
    let ok = node.sync.wait_for(SYNC_DEADLINE, pred).await;
    assert!(
        ok,
        "timed out waiting for {what}: {:?}",
        node.sync.snapshot().await
    );
}
