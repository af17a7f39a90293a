//! `[[assert]]`: the assertions a manifest may list, the rules on their
//! fields, and the ones added when a manifest does not list them.

use serde::Deserialize;

use super::{Action, Dur, Manifest, ManifestError};

/// `[[assert]]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    pub kind: AssertKind,
    /// Nodes it applies to [default: every honest node].
    #[serde(default)]
    pub nodes: Vec<String>,
    /// `height`: the height to reach; `log`: the fewest lines; `ping_rtt`:
    /// the least mean round trip in ms.
    pub at_least: Option<u64>,
    /// `height`: deadline from the start of the run.
    pub within: Option<Dur>,
    /// When to check [default: the end of the run].
    pub at: Option<Dur>,
    /// `same_chain`: the common height must be at least this.
    pub min_height: Option<u64>,
    /// `log`: the text a line of each listed node's log must contain.
    pub contains: Option<String>,
    /// `log`: at most this many such lines (`at_least` defaults to 1);
    /// `ping_rtt`: the greatest mean round trip in ms.
    pub at_most: Option<u64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssertKind {
    Height,
    SameChain,
    AdversariesJudged,
    NoHonestBanned,
    NoCrash,
    /// After each `heal`, every honest node outside the biggest group holds
    /// the biggest group's chain within `within`.
    MinorityReorgs,
    /// Each listed node's log has between `at_least` (default 1) and
    /// `at_most` lines containing `contains`.
    Log,
    /// Each listed node's mean libp2p ping round trip over the `netem`
    /// period in force at `at` is at least `at_least` / at most `at_most` ms.
    PingRtt,
}

impl AssertKind {
    pub fn name(self) -> &'static str {
        match self {
            AssertKind::Height => "height",
            AssertKind::SameChain => "same_chain",
            AssertKind::AdversariesJudged => "adversaries_judged",
            AssertKind::NoHonestBanned => "no_honest_banned",
            AssertKind::NoCrash => "no_crash",
            AssertKind::MinorityReorgs => "minority_reorgs",
            AssertKind::Log => "log",
            AssertKind::PingRtt => "ping_rtt",
        }
    }
}

impl Manifest {
    pub(super) fn validate_assert(&self, a: &Assert) -> Result<(), ManifestError> {
        let what = a.kind.name();
        let bad = |m: String| Err(ManifestError::Invalid(format!("assert {what}: {m}")));
        for name in &a.nodes {
            match self.node(name) {
                None => return bad(format!("unknown node {name:?}")),
                Some(n)
                    if !n.role.honest()
                        && !matches!(
                            a.kind,
                            AssertKind::Height | AssertKind::Log | AssertKind::PingRtt
                        ) =>
                {
                    return bad(format!("node {name:?} is an adversary"))
                }
                _ => {}
            }
        }
        if a.at.is_some_and(|t| t > self.run.duration) {
            return bad("at is after run.duration".into());
        }
        match a.kind {
            AssertKind::Height => {
                if a.at_least.is_none() {
                    return bad("needs at_least".into());
                }
                if a.within.is_some() && a.at.is_some() {
                    return bad("give within or at, not both".into());
                }
            }
            AssertKind::MinorityReorgs => {
                if a.within.is_none() || a.at_least.is_some() {
                    return bad("needs within (from each heal) and no at_least".into());
                }
                let healed = self.timeline.iter().any(|e| e.action == Action::Heal)
                    && self.timeline.iter().any(|e| e.action == Action::Partition);
                if !healed {
                    return bad("needs a partition and a heal in the timeline".into());
                }
                if !a.nodes.is_empty() {
                    return bad("takes no nodes (the minority is every honest node outside the biggest group)".into());
                }
            }
            AssertKind::Log => {
                if a.contains.as_deref().is_none_or(str::is_empty) || a.within.is_some() {
                    return bad("needs contains = \"text\" (and no within)".into());
                }
                if a.at_most.is_some_and(|m| m < a.at_least.unwrap_or(1)) {
                    return bad("at_most is below at_least".into());
                }
            }
            AssertKind::PingRtt => {
                if a.nodes.is_empty() || a.at.is_none() || a.within.is_some() {
                    return bad(
                        "needs nodes and at (a time inside a netem period), no within".into(),
                    );
                }
                if a.at_least.is_none() && a.at_most.is_none() {
                    return bad("needs at_least and/or at_most (ms)".into());
                }
                if a.at_most.is_some_and(|m| m < a.at_least.unwrap_or(0)) {
                    return bad("at_most is below at_least".into());
                }
                let netem = self.timeline.iter().filter(|e| e.action == Action::Netem);
                if !netem.clone().any(|e| a.at.is_some_and(|at| e.at <= at)) {
                    return bad("at is before the first netem event (periods run from one netem to the next)".into());
                }
            }
            _ => {
                if a.at_least.is_some() || a.within.is_some() {
                    return bad("at_least and within are only for kind = \"height\"".into());
                }
            }
        }
        if a.contains.is_some() && a.kind != AssertKind::Log {
            return bad("contains is only for kind = \"log\"".into());
        }
        if a.at_most.is_some() && !matches!(a.kind, AssertKind::Log | AssertKind::PingRtt) {
            return bad("at_most is only for kind = \"log\" and \"ping_rtt\"".into());
        }
        if a.at.is_some()
            && !matches!(
                a.kind,
                AssertKind::Height | AssertKind::SameChain | AssertKind::PingRtt
            )
        {
            return bad(
                "at is only for height, same_chain and ping_rtt (the others cover the whole run)"
                    .into(),
            );
        }
        if a.min_height.is_some() && a.kind != AssertKind::SameChain {
            return bad("min_height is only for kind = \"same_chain\"".into());
        }
        Ok(())
    }

    /// The assertions to check: the manifest's, plus `no_crash` and
    /// `no_honest_banned` at the end when it does not list them.
    pub fn assertions(&self) -> Vec<Assert> {
        let mut list = self.asserts.clone();
        for kind in [AssertKind::NoCrash, AssertKind::NoHonestBanned] {
            if !list.iter().any(|a| a.kind == kind) {
                list.push(Assert {
                    kind,
                    nodes: Vec::new(),
                    at_least: None,
                    within: None,
                    at: None,
                    min_height: None,
                    contains: None,
                    at_most: None,
                });
            }
        }
        list
    }
}
