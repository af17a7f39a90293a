//! Helpers for tests that run the `concord` binary.
#![allow(dead_code)]

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
