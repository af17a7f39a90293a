//! Reading the nodes' chains for `same_chain`: every node's tip, then the
//! hash at every height from `/blocks/{h}` (one thread per node), retried
//! until the tips agree or the settle time is over.
//!
//! Owns the gathering only; [`crate::assertions::same_chain`] judges.

use std::time::{Duration, Instant};

use crate::assertions::{self, ChainView, Outcome};
use crate::setup::NodePlan;
use crate::{api, process};

const TIMEOUT: Duration = Duration::from_secs(2);
/// Between two looks at the tips while they settle.
const RETRY: Duration = Duration::from_millis(300);

/// Each node's tip; an error names the node.
fn tips(nodes: &[&NodePlan]) -> Result<Vec<(u64, String)>, String> {
    nodes
        .iter()
        .map(|n| {
            api::status(n.api, TIMEOUT)
                .map(|s| (s.height, s.tip))
                .map_err(|e| format!("{}: {e}", n.name))
        })
        .collect()
}

/// Every node's hashes at heights `1..=upto` (or its own height if lower).
fn views(nodes: &[&NodePlan], tips: &[(u64, String)], upto: u64) -> Result<Vec<ChainView>, String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .zip(tips)
            .map(|(n, (height, tip))| {
                scope.spawn(move || {
                    let top = (*height).min(upto);
                    let mut hashes = Vec::new();
                    for h in 1..=top {
                        // A Ctrl-C must not wait for tens of thousands of
                        // reads (70 nodes x 1,000 heights under load: minutes).
                        if let Some(signal) = process::stop_requested() {
                            return Err(format!("interrupted by signal {signal}"));
                        }
                        let hash = api::block_hash(n.api, h, TIMEOUT)
                            .map_err(|e| format!("{}: {e}", n.name))?;
                        hashes.push(hash);
                    }
                    Ok::<ChainView, String>(ChainView {
                        name: n.name.clone(),
                        height: *height,
                        tip: tip.clone(),
                        hashes,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a reading thread panicked".to_string()))
            })
            .collect()
    })
}

/// Waits up to `settle` for the nodes' tips to agree, then compares every
/// height. On time out, compares what they hold up to the lowest tip, so the
/// report says where they part.
pub fn check(
    nodes: &[&NodePlan],
    min_height: u64,
    not_running: &[String],
    settle: Duration,
) -> Outcome {
    let deadline = Instant::now() + settle;
    let mut last_error = String::new();
    loop {
        let timed_out = Instant::now() >= deadline;
        match tips(nodes) {
            Ok(t) => {
                let agree = t.windows(2).all(|w| w[0] == w[1]);
                if agree || timed_out {
                    let lowest = t.iter().map(|(h, _)| *h).min().unwrap_or(0);
                    let upto = if agree { u64::MAX } else { lowest };
                    match views(nodes, &t, upto) {
                        Ok(v) => {
                            let mut outcome = assertions::same_chain(&v, min_height, not_running);
                            if !agree && !v.is_empty() {
                                // Hashes were read up to the lowest tip only.
                                outcome.pass = false;
                                outcome.why = format!(
                                    "tips did not agree within {:.0}s (hashes compared up to the lowest tip, #{lowest}): {}",
                                    settle.as_secs_f64(),
                                    outcome.why
                                );
                            }
                            if outcome.pass || timed_out {
                                return outcome;
                            }
                        }
                        Err(e) => last_error = e,
                    }
                }
            }
            Err(e) => last_error = e,
        }
        if timed_out || process::stop_requested().is_some() {
            let mut outcome = assertions::same_chain(&[], min_height, not_running);
            outcome.why = format!("cannot read the chains: {last_error}");
            return outcome;
        }
        std::thread::sleep(RETRY);
    }
}
