//! Assertion evaluation: pure functions from what was recorded (node
//! histories, chain views) to an [`Outcome`] with pass/fail and the numbers
//! behind it.
//!
//! Owns what each assertion means; gathering the data (HTTP, logs) is the
//! runner's job, so every rule here can be tested on canned data.

use serde::Serialize;
use serde_json::{json, Value};

use crate::history::NodeHistory;

/// The result of one assertion.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub kind: String,
    /// One line: what was asserted.
    pub what: String,
    pub pass: bool,
    /// One line: why it passed or failed.
    pub why: String,
    /// The numbers behind it.
    pub details: Value,
}

fn outcome(kind: &str, what: String, failures: Vec<String>, ok: String, details: Value) -> Outcome {
    let pass = failures.is_empty();
    Outcome {
        kind: kind.to_string(),
        what,
        pass,
        why: if pass { ok } else { failures.join("; ") },
        details,
    }
}

/// When a `height` assertion is checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// Reached at any time up to this many seconds after the start.
    Within(f64),
    /// The height held at this time (the last sample at or before it).
    At(f64),
}

/// Every node in `nodes` reaches `at_least`.
pub fn height(nodes: &[&NodeHistory], at_least: u64, when: When) -> Outcome {
    let what = match when {
        When::Within(t) => format!("height >= {at_least} within {t:.1}s"),
        When::At(t) => format!("height >= {at_least} at {t:.1}s"),
    };
    let mut failures = Vec::new();
    let mut details = serde_json::Map::new();
    for n in nodes {
        match when {
            When::Within(deadline) => {
                let reached = n.reached(at_least);
                let best = n.samples.iter().map(|s| s.height).max();
                details.insert(
                    n.name.clone(),
                    json!({"reached_at_s": reached, "best_height": best}),
                );
                match reached {
                    Some(t) if t <= deadline => {}
                    Some(t) => failures.push(format!("{} reached it late, at {t:.1}s", n.name)),
                    None => failures.push(format!(
                        "{} never reached it (best {})",
                        n.name,
                        best.map_or("none".into(), |b| b.to_string())
                    )),
                }
            }
            When::At(t) => {
                let held = n.samples.iter().rev().find(|s| s.t <= t).map(|s| s.height);
                details.insert(n.name.clone(), json!({"height_at": held}));
                if held.is_none_or(|h| h < at_least) {
                    failures.push(format!(
                        "{} held {} at {t:.1}s",
                        n.name,
                        held.map_or("nothing (no sample)".into(), |h| h.to_string())
                    ));
                }
            }
        }
    }
    if nodes.is_empty() {
        failures.push("no node to check".into());
    }
    let ok = format!("{} node(s) reached it", nodes.len());
    outcome("height", what, failures, ok, Value::Object(details))
}

/// One node's chain as read from its API: the tip and the hash at every
/// height from 1 (index 0) to `hashes.len()`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainView {
    pub name: String,
    pub height: u64,
    pub tip: String,
    pub hashes: Vec<String>,
}

/// The nodes hold the same tip and the same block at every height.
/// `not_running` names nodes left out because they were stopped on purpose.
pub fn same_chain(views: &[ChainView], min_height: u64, not_running: &[String]) -> Outcome {
    let what = "honest nodes hold the same tip and the same block at every height".to_string();
    let mut failures = Vec::new();
    let tips: serde_json::Map<String, Value> = views
        .iter()
        .map(|v| (v.name.clone(), json!({"height": v.height, "tip": v.tip})))
        .collect();
    let mut first_difference = None;
    if let Some(first) = views.first() {
        for v in &views[1..] {
            if (v.height, &v.tip) != (first.height, &first.tip) {
                failures.push(format!(
                    "{} tip #{} {} but {} tip #{} {}",
                    first.name,
                    first.height,
                    short(&first.tip),
                    v.name,
                    v.height,
                    short(&v.tip)
                ));
            }
            let differs = first
                .hashes
                .iter()
                .zip(&v.hashes)
                .position(|(a, b)| a != b)
                .map(|i| i as u64 + 1);
            if let Some(h) = differs {
                first_difference = Some(first_difference.map_or(h, |d: u64| d.min(h)));
                failures.push(format!("{} and {} differ at #{h}", first.name, v.name));
            }
        }
        if first.height < min_height {
            failures.push(format!(
                "common height {} is below min_height {min_height}",
                first.height
            ));
        }
    } else {
        failures.push("no running honest node to compare".into());
    }
    let compared = views.iter().map(|v| v.hashes.len()).min().unwrap_or(0);
    let ok = format!(
        "{} nodes agree on all {compared} heights (tip {})",
        views.len(),
        views.first().map_or(String::new(), |v| short(&v.tip))
    );
    let details = json!({
        "tips": tips,
        "heights_compared": compared,
        "first_difference": first_difference,
        "not_running": not_running,
    });
    outcome("same_chain", what, failures, ok, details)
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// Did `honest` judge `adversary` (fork seen in `/peers` or its log, or a ban)?
fn judged(honest: &NodeHistory, adversary: &str) -> bool {
    honest.judged.contains_key(adversary)
        || honest.log.forked.contains(adversary)
        || honest.log.banned.contains_key(adversary)
}

/// Did `honest` meet `adversary`, that is, get from it the answer (or the
/// requests) its behaviour is about? Judging it counts too.
/// - `garbage` corrupts even its genesis answer, the first question asked
///   on every connection: met once connected (a `peer connected` line);
/// - `flood`: met once this node refused its requests over quota (a
///   `flooding` line);
/// - the others answer the genesis question truthfully and then lie
///   (`fork`, `inflate_heights`, `wrong_votes`) or fall silent (`stall`)
///   on the questions asked of every verified peer: met once `verified`.
fn met(honest: &NodeHistory, adversary: &NodeHistory) -> bool {
    let id = adversary.peer_id.as_str();
    let contact = match adversary.behaviour.as_deref() {
        Some("garbage") => honest.log.connected.contains(id),
        Some("flood") => honest.log.flooded.contains(id),
        _ => honest.met.contains(id),
    };
    contact || judged(honest, id)
}

/// Every honest node that met an adversary judged it on another fork (or
/// banned it), and every adversary was met by at least one honest node.
pub fn adversaries_judged(honest: &[&NodeHistory], adversaries: &[&NodeHistory]) -> Outcome {
    let what = "every honest node that met an adversary judged it (fork_at or ban)".to_string();
    let mut failures = Vec::new();
    let mut details = serde_json::Map::new();
    for a in adversaries {
        let mut met_by = Vec::new();
        let mut judged_by = Vec::new();
        for h in honest {
            if met(h, a) {
                met_by.push(h.name.clone());
                if judged(h, &a.peer_id) {
                    judged_by.push(h.name.clone());
                } else {
                    failures.push(format!("{} met {} but never judged it", h.name, a.name));
                }
            }
        }
        if met_by.is_empty() {
            failures.push(format!("no honest node met {}", a.name));
        }
        details.insert(
            a.name.clone(),
            json!({"met_by": met_by, "judged_by": judged_by}),
        );
    }
    if adversaries.is_empty() {
        failures.push("the manifest has no adversary".into());
    }
    let ok = format!(
        "{} adversary(ies) judged by every honest node that met them",
        adversaries.len()
    );
    outcome(
        "adversaries_judged",
        what,
        failures,
        ok,
        Value::Object(details),
    )
}

/// No honest node banned another honest node.
pub fn no_honest_banned(judges: &[&NodeHistory], honest: &[&NodeHistory]) -> Outcome {
    let what = "no honest node banned an honest peer".to_string();
    let mut failures = Vec::new();
    let mut low_scores = serde_json::Map::new();
    let mut bans = serde_json::Map::new();
    for j in judges {
        for (peer, reasons) in &j.log.banned {
            let name = honest.iter().find(|h| &h.peer_id == peer).map(|h| &h.name);
            if let Some(name) = name {
                failures.push(format!("{} banned {name} ({})", j.name, reasons.join(", ")));
            }
            bans.insert(
                format!(
                    "{} -> {}",
                    j.name,
                    name.map_or(peer.as_str(), |n| n.as_str())
                ),
                json!(reasons),
            );
        }
        for (peer, score) in &j.low_scores {
            if let Some(h) = honest.iter().find(|h| &h.peer_id == peer) {
                low_scores.insert(format!("{} -> {}", j.name, h.name), json!(score));
            }
        }
    }
    let ok = format!("{} honest node(s), no honest peer banned", judges.len());
    let details = json!({"bans": bans, "lowest_honest_scores": low_scores});
    outcome("no_honest_banned", what, failures, ok, details)
}

/// No node ended unless the timeline ended it, and no log holds a panic.
pub fn no_crash(nodes: &[&NodeHistory]) -> Outcome {
    let what = "no node crashed except those killed on purpose".to_string();
    let mut failures = Vec::new();
    let mut details = serde_json::Map::new();
    for n in nodes {
        for life in n.lives.iter().filter(|l| l.crashed()) {
            failures.push(format!(
                "{} ended at {:.1}s (exit {:?}, signal {:?}, by {})",
                n.name,
                life.ended.unwrap_or_default(),
                life.exit_code,
                life.signal,
                life.ended_by.as_deref().unwrap_or("nobody")
            ));
        }
        if let Some(p) = n.log.panics.first() {
            failures.push(format!("{} panicked: {p}", n.name));
        }
        details.insert(
            n.name.clone(),
            json!({"lives": n.lives, "panics": n.log.panics.len()}),
        );
    }
    let ok = format!("{} node(s), no crash, no panic", nodes.len());
    outcome("no_crash", what, failures, ok, Value::Object(details))
}

/// After every heal, each honest node outside the biggest group held that
/// group's chain (its tip was the reference node's block at that height)
/// within `within` seconds of the heal.
pub fn minority_reorgs(watches: &[crate::faults::ReorgWatch], within: f64) -> Outcome {
    let what = format!("after a heal the minority holds the majority's chain within {within:.1}s");
    let mut failures = Vec::new();
    for w in watches {
        match w.agreed_at {
            Some(t) if t - w.healed_at <= within => {}
            Some(t) => failures.push(format!(
                "{} joined {}'s chain {:.1}s after the heal",
                w.node,
                w.reference,
                t - w.healed_at
            )),
            None => failures.push(format!(
                "{} never held {}'s chain after the heal at {:.1}s",
                w.node, w.reference, w.healed_at
            )),
        }
    }
    if watches.is_empty() {
        failures.push("no heal was applied, or no honest node was in a minority".into());
    }
    let diverged = watches.iter().filter(|w| w.diverged == Some(true)).count();
    let ok = format!(
        "{} minority node(s) on the majority's chain ({diverged} had diverged, so reorged)",
        watches.len()
    );
    outcome(
        "minority_reorgs",
        what,
        failures,
        ok,
        json!({"watches": watches}),
    )
}

/// Each node's log holds between `at_least` and `at_most` lines with `text`.
pub fn log(nodes: &[&NodeHistory], text: &str, at_least: u64, at_most: Option<u64>) -> Outcome {
    let range = match at_most {
        Some(m) => format!("{at_least} to {m}"),
        None => format!("at least {at_least}"),
    };
    let what = format!("{range} log line(s) with {text:?} in each node's log");
    let mut failures = Vec::new();
    let mut counts = serde_json::Map::new();
    for h in nodes {
        let n = h.log.matches.get(text).copied().unwrap_or(0);
        counts.insert(h.name.clone(), json!(n));
        if n < at_least || at_most.is_some_and(|m| n > m) {
            failures.push(format!("{} has {n}", h.name));
        }
    }
    if nodes.is_empty() {
        failures.push("no node to look at".into());
    }
    let ok = format!("{} node(s): {range}", nodes.len());
    outcome("log", what, failures, ok, Value::Object(counts))
}

/// Every node in `names` pinged its peers at least once in `period` (the
/// one in force at `at`), with a mean round trip of at least `at_least`
/// and at most `at_most` ms.
pub fn ping_rtt(
    period: Option<&crate::rtt::Period>,
    names: &[String],
    at: f64,
    at_least: Option<u64>,
    at_most: Option<u64>,
) -> Outcome {
    let bounds = match (at_least, at_most) {
        (Some(lo), Some(hi)) => format!("{lo}-{hi} ms"),
        (Some(lo), None) => format!(">= {lo} ms"),
        (None, Some(hi)) => format!("<= {hi} ms"),
        (None, None) => "any".into(),
    };
    let what = format!("mean ping round trip {bounds} at {at:.1}s");
    let Some(period) = period else {
        return outcome(
            "ping_rtt",
            what,
            vec![format!("no netem period covers {at:.1}s")],
            String::new(),
            json!({}),
        );
    };
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for name in names {
        match period.nodes.get(name) {
            None => failures.push(format!("{name}: not running at the end of the period")),
            Some(r) => match r.mean_rtt_ms {
                None => failures.push(format!("{name}: no ping in the period")),
                Some(mean) => {
                    seen.push(format!("{name} {mean:.0} ms over {} pings", r.pings));
                    if at_least.is_some_and(|lo| mean < lo as f64) {
                        failures.push(format!("{name}: {mean:.0} ms is below {bounds}"));
                    }
                    if at_most.is_some_and(|hi| mean > hi as f64) {
                        failures.push(format!("{name}: {mean:.0} ms is above {bounds}"));
                    }
                }
            },
        }
    }
    let ok = format!(
        "{} ({:.1}s to {})",
        seen.join(", "),
        period.from,
        period.to.map_or("the end".into(), |t| format!("{t:.1}s"))
    );
    outcome("ping_rtt", what, failures, ok, json!(period))
}
