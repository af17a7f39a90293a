//! What the runner saw of each node during a run: samples of `/status`,
//! which peers each node met and judged (from `/peers`), the lives of its
//! process (start, end, exit, whether the end was intended), and the facts a
//! scan of its log yields (panics, bans, fork judgments, connections).
//!
//! Owns these records and the log scan; plain data, so the assertions can be
//! evaluated on canned histories in tests.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::api::{Peer, Status};
use crate::manifest::Role;

/// One `/status` sample; `t` is seconds since the start of the run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub height: u64,
    pub peers: usize,
    pub mode: String,
    pub syncing: bool,
    pub target: Option<u64>,
    /// Why sync is stalled, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<String>,
}

impl Sample {
    pub fn from_status(t: f64, s: &Status) -> Sample {
        Sample {
            t,
            height: s.height,
            peers: s.peers,
            mode: s.mode.clone(),
            syncing: s.syncing,
            target: s.target,
            stalled: s.stalled.clone(),
        }
    }
}

/// How one life of a node's process ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Life {
    pub started: f64,
    pub ended: Option<f64>,
    /// Exit code, or `None` when a signal ended it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The timeline action that ended it (`kill`, `stop`), or `cleanup`.
    pub ended_by: Option<String>,
}

impl Life {
    /// An end the runner did not cause, or a `stop`/cleanup SIGTERM that did
    /// not exit 0.
    pub fn crashed(&self) -> bool {
        if self.ended.is_none() {
            return false;
        }
        match self.ended_by.as_deref() {
            Some("kill") => false,
            // The cleanup kills what did not stop in time.
            Some("cleanup") => self.exit_code.is_some_and(|c| c != 0),
            Some(_) => self.exit_code != Some(0),
            None => true,
        }
    }
}

/// Facts from a node's log.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LogFacts {
    /// Lines with a panic message.
    pub panics: Vec<String>,
    /// Peer id → ban reasons, from `peer banned` lines.
    pub banned: BTreeMap<String, Vec<String>>,
    /// Peers judged on another fork (`peer is on another fork`).
    pub forked: BTreeSet<String>,
    /// Peers it connected to (`peer connected`).
    pub connected: BTreeSet<String>,
    /// Peers it refused for flooding (`flooding: requests over quota`).
    pub flooded: BTreeSet<String>,
    /// For each text a `log` assertion looks for: how many lines hold it.
    pub matches: BTreeMap<String, u64>,
}

/// The value of `key=` in a tracing text line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!(" {key}=");
    let start = line.find(&pattern)? + pattern.len();
    let rest = &line[start..];
    Some(rest.split_whitespace().next().unwrap_or_default())
}

impl LogFacts {
    /// The facts of `log`, counting the lines that contain each of `texts`.
    pub fn scan(log: &str, texts: &[String]) -> LogFacts {
        let mut facts = LogFacts {
            matches: texts.iter().map(|t| (t.clone(), 0)).collect(),
            ..LogFacts::default()
        };
        for line in log.lines() {
            if line.contains("panicked at") || line.contains("RUST_BACKTRACE") {
                facts.panics.push(line.chars().take(300).collect());
            }
            for (text, n) in facts.matches.iter_mut() {
                if line.contains(text.as_str()) {
                    *n += 1;
                }
            }
            let Some(peer) = field(line, "peer") else {
                continue;
            };
            if line.contains("peer banned") {
                let reason = field(line, "reason").unwrap_or("?").to_string();
                facts
                    .banned
                    .entry(peer.to_string())
                    .or_default()
                    .push(reason);
            } else if line.contains("peer is on another fork") {
                facts.forked.insert(peer.to_string());
            } else if line.contains("peer connected") {
                facts.connected.insert(peer.to_string());
            } else if line.contains("flooding: requests over quota") {
                facts.flooded.insert(peer.to_string());
            }
        }
        facts
    }
}

/// Everything recorded about one node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeHistory {
    pub name: String,
    pub role: Role,
    /// An adversary's behaviour (`fork`, `garbage`, …).
    pub behaviour: Option<String>,
    pub peer_id: String,
    pub samples: Vec<Sample>,
    /// Peers seen in its `/peers` in state `verified` (same genesis).
    pub met: BTreeSet<String>,
    /// Peers seen in its `/peers` with a `fork_at`, and the first one seen.
    pub judged: BTreeMap<String, u64>,
    /// Peers seen with a negative score, and the lowest.
    pub low_scores: BTreeMap<String, i32>,
    pub lives: Vec<Life>,
    pub log: LogFacts,
}

impl NodeHistory {
    pub fn new(name: &str, role: Role, peer_id: &str) -> NodeHistory {
        NodeHistory {
            name: name.to_string(),
            role,
            behaviour: None,
            peer_id: peer_id.to_string(),
            samples: Vec::new(),
            met: BTreeSet::new(),
            judged: BTreeMap::new(),
            low_scores: BTreeMap::new(),
            lives: Vec::new(),
            log: LogFacts::default(),
        }
    }

    /// Folds one `/peers` answer in.
    pub fn record_peers(&mut self, peers: &[Peer]) {
        for p in peers {
            if p.state == "verified" {
                self.met.insert(p.id.clone());
            }
            if let Some(h) = p.fork_at {
                self.judged.entry(p.id.clone()).or_insert(h);
            }
            if p.score < 0 {
                let low = self.low_scores.entry(p.id.clone()).or_insert(p.score);
                *low = (*low).min(p.score);
            }
        }
    }

    /// Did it ever reach `height`, and when first?
    pub fn reached(&self, height: u64) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.height >= height)
            .map(|s| s.t)
    }

    pub fn last_height(&self) -> Option<u64> {
        self.samples.last().map(|s| s.height)
    }

    /// Whether its process runs now.
    pub fn running(&self) -> bool {
        self.lives.last().is_some_and(|l| l.ended.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scan_finds_panics_bans_forks_connections_floods_and_asked_texts() {
        let log = "\
2026-01-01T00:00:00Z  INFO concord::net::event_loop: peer connected peer=A addr=/ip4/1 dialer=true
2026-01-01T00:00:01Z  WARN concord::sync::engine::requests: peer banned peer=B reason=invalid_block secs=600
2026-01-01T00:00:02Z  INFO concord::sync::engine::forks: peer is on another fork: not syncing from it at or above this height peer=C height=5 why=vote
2026-01-01T00:00:03Z  WARN concord::net::event_loop::serve: flooding: requests over quota peer=D protocol=/concord/height/1
thread 'tokio-runtime-worker' panicked at src/x.rs:1:1:
";
        let f = LogFacts::scan(log, &["another fork".into(), "absent".into()]);
        assert_eq!(f.flooded, BTreeSet::from(["D".to_string()]));
        assert_eq!(f.matches["another fork"], 1);
        assert_eq!(f.matches["absent"], 0);
        assert_eq!(f.connected, BTreeSet::from(["A".to_string()]));
        assert_eq!(f.banned["B"], vec!["invalid_block".to_string()]);
        assert_eq!(f.forked, BTreeSet::from(["C".to_string()]));
        assert_eq!(f.panics.len(), 1);
    }

    #[test]
    fn a_life_ended_by_kill_is_no_crash_but_a_failed_stop_is() {
        let mut life = Life {
            started: 0.0,
            ended: Some(3.0),
            exit_code: None,
            signal: Some(9),
            ended_by: Some("kill".into()),
        };
        assert!(!life.crashed());
        life.ended_by = None;
        assert!(life.crashed());
        life.ended_by = Some("stop".into());
        life.exit_code = Some(0);
        assert!(!life.crashed());
        life.exit_code = Some(1);
        assert!(life.crashed());
    }
}
