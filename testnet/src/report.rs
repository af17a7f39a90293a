//! The results folder of a run: `summary.json` (every assertion with the
//! numbers behind it, the perturbation timeline, each node's lives, samples
//! and end metrics, the seeds used) and `heights.svg`; node logs are
//! already in `nodes/NAME/log` and the manifest in `manifest.toml`.
//!
//! Owns the report's format; gathers `/metrics` once before cleanup.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::api;
use crate::assertions::Outcome;
use crate::history::NodeHistory;
use crate::manifest::Manifest;
use crate::setup::NodePlan;
use crate::svg::{self, Mark};

/// One perturbation as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    /// Seconds since the start of the run, when it was applied.
    pub t: f64,
    pub planned_at: f64,
    pub action: String,
    pub node: String,
    /// The node's last sampled height before it.
    pub height_before: Option<u64>,
    /// Why it could not be applied.
    pub error: Option<String>,
    /// What was applied in its place (loss without netem: the IP ID mask
    /// and the rate it really drops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The `/metrics` figures kept in the summary.
const METRICS: [&str; 6] = [
    "concord_height",
    "concord_bans_total",
    "concord_fork_judgments_total",
    "concord_fork_peers",
    "concord_reorgs_total",
    "concord_penalties_total",
];

/// The kept `/metrics` figures of every running node, by node name.
pub fn metrics(plans: &[NodePlan], running: &[String]) -> Value {
    let mut all = serde_json::Map::new();
    for p in plans.iter().filter(|p| running.contains(&p.name)) {
        let Ok(text) = api::get(p.api, "/metrics", Duration::from_secs(2)) else {
            continue;
        };
        let figures: serde_json::Map<String, Value> = METRICS
            .iter()
            .map(|m| (m.to_string(), json!(api::metric_sum(&text, m))))
            .collect();
        all.insert(p.name.clone(), Value::Object(figures));
    }
    Value::Object(all)
}

pub struct Report<'a> {
    pub out: &'a Path,
    pub manifest_path: &'a Path,
    pub manifest: &'a Manifest,
    pub plans: &'a [NodePlan],
    pub hist: &'a [NodeHistory],
    pub timeline: &'a [TimelineEntry],
    pub outcomes: &'a [Outcome],
    pub metrics: Value,
    /// Ping round trips between `netem` events.
    pub periods: &'a [crate::rtt::Period],
    /// The loopback shaper's connections: accepted, of those with a
    /// dialer it could not name, and the first of those in detail.
    pub shaper: Option<(u64, u64, Vec<crate::shaper::relay::Unnamed>)>,
    pub passed: bool,
    pub interrupted: Option<i32>,
    pub seconds: f64,
}

pub fn write(r: &Report) -> std::io::Result<()> {
    let nodes: Vec<Value> = r
        .plans
        .iter()
        .zip(r.hist)
        .zip(&r.manifest.nodes)
        .map(|((p, h), m)| {
            json!({
                "name": p.name,
                "role": p.role.name(),
                "peer_id": p.peer_id,
                "p2p": p.multiaddr(),
                "api": p.api.to_string(),
                "log": p.log.strip_prefix(r.out).unwrap_or(&p.log),
                "chain": {"blocks": m.blocks, "seed": m.chain_seed(&r.manifest.network), "tip": p.chain_tip},
                "start_after_s": p.start_after,
                "command": p.args,
                "lives": h.lives,
                "final_height": h.last_height(),
                "met": h.met,
                "judged_fork_at": h.judged,
                "log_facts": h.log,
                "samples": h.samples,
            })
        })
        .collect();
    let summary = json!({
        "passed": r.passed,
        "interrupted_by_signal": r.interrupted,
        "seconds": r.seconds,
        "manifest": r.manifest_path,
        "placement": r.manifest.run.placement.name(),
        "seed": r.manifest.network.seed,
        "block_size": r.manifest.network.block_size,
        "assertions": r.outcomes,
        "timeline": r.timeline,
        "metrics_at_end": r.metrics,
        "ping_periods": r.periods,
        "loopback_shaper": r.shaper.as_ref().map(|(accepted, unnamed, detail)| json!({"connections": accepted, "dialer_not_named": unnamed, "not_named": detail})),
        "nodes": nodes,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
    std::fs::write(r.out.join("summary.json"), text)?;

    let mut marks: Vec<Mark> = r
        .timeline
        .iter()
        .map(|e| Mark {
            t: e.t,
            label: format!("{} {}", e.action, e.node),
        })
        .collect();
    for p in r.plans.iter().filter(|p| p.start_after > 0.0) {
        marks.push(Mark {
            t: p.start_after,
            label: format!("start {}", p.name),
        });
    }
    marks.sort_by(|a, b| a.t.total_cmp(&b.t));
    let hist: Vec<&NodeHistory> = r.hist.iter().collect();
    let title = format!(
        "{} — {}",
        r.manifest_path.display(),
        if r.passed { "passed" } else { "FAILED" }
    );
    std::fs::write(
        r.out.join("heights.svg"),
        svg::heights(&title, &hist, &marks, r.seconds),
    )
}
