//! From the manifest's assertions and the run's records to the list of
//! outcomes: picks the nodes each assertion covers and calls the pure
//! judges in [`crate::assertions`]; adds a `timeline` outcome when a
//! perturbation could not be applied.
//!
//! Owns the defaults of what an assertion covers (every honest node; every
//! node for `no_crash`).

use crate::assertions::{self, Outcome, When};
use crate::faults::ReorgWatch;
use crate::history::NodeHistory;
use crate::manifest::{Assert, AssertKind, Manifest};
use crate::report::TimelineEntry;
use crate::rtt::Periods;

fn pick<'a>(
    hist: &'a [NodeHistory],
    names: &[String],
    all: impl Fn(&NodeHistory) -> bool,
) -> Vec<&'a NodeHistory> {
    hist.iter()
        .filter(|h| {
            if names.is_empty() {
                all(h)
            } else {
                names.contains(&h.name)
            }
        })
        .collect()
}

/// Every outcome, in manifest order. `checked` holds the `same_chain`
/// outcomes already measured during the run, in the order they were checked.
pub fn all(
    manifest: &Manifest,
    hist: &[NodeHistory],
    checked: Vec<(Assert, Outcome)>,
    timeline: &[TimelineEntry],
    watches: &[ReorgWatch],
    periods: &Periods,
) -> Vec<Outcome> {
    let end = manifest.run.duration.0.as_secs_f64();
    let honest = pick(hist, &[], |h| h.role.honest());
    let adversaries = pick(hist, &[], |h| !h.role.honest());
    let mut checked = checked.into_iter();
    let mut outcomes = Vec::new();
    for a in manifest.assertions() {
        let nodes = pick(hist, &a.nodes, |h| h.role.honest());
        let outcome = match a.kind {
            AssertKind::Height => {
                let when = match (a.within, a.at) {
                    (Some(w), _) => When::Within(w.0.as_secs_f64()),
                    (None, Some(at)) => When::At(at.0.as_secs_f64()),
                    (None, None) => When::At(end),
                };
                assertions::height(&nodes, a.at_least.unwrap_or(0), when)
            }
            AssertKind::SameChain => match checked.next() {
                Some((_, mut o)) => {
                    let at = a.at.map_or("at the end".to_string(), |t| format!("at {t}"));
                    o.what = format!("{} ({at})", o.what);
                    o
                }
                None => {
                    let mut o = assertions::same_chain(&[], 0, &[]);
                    o.why = "not checked: the run was interrupted first".into();
                    o
                }
            },
            AssertKind::AdversariesJudged => assertions::adversaries_judged(&nodes, &adversaries),
            AssertKind::NoHonestBanned => assertions::no_honest_banned(&nodes, &honest),
            AssertKind::MinorityReorgs => {
                assertions::minority_reorgs(watches, a.within.map_or(0.0, |w| w.0.as_secs_f64()))
            }
            AssertKind::Log => assertions::log(
                &nodes,
                a.contains.as_deref().unwrap_or_default(),
                a.at_least.unwrap_or(1),
                a.at_most,
            ),
            AssertKind::PingRtt => {
                let at = a.at.map_or(end, |t| t.0.as_secs_f64());
                let names: Vec<String> = nodes.iter().map(|h| h.name.clone()).collect();
                assertions::ping_rtt(periods.at(at), &names, at, a.at_least, a.at_most)
            }
            AssertKind::NoCrash => {
                let nodes = pick(hist, &a.nodes, |_| true);
                assertions::no_crash(&nodes)
            }
        };
        outcomes.push(outcome);
    }
    let failed: Vec<String> = timeline
        .iter()
        .filter_map(|e| {
            e.error
                .as_ref()
                .map(|why| format!("{} {} at {:.1}s: {why}", e.action, e.node, e.t))
        })
        .collect();
    if !failed.is_empty() {
        outcomes.push(Outcome {
            kind: "timeline".into(),
            what: "every perturbation applied".into(),
            pass: false,
            why: failed.join("; "),
            details: serde_json::json!({"failed": failed}),
        });
    }
    outcomes
}
