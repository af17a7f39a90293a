//! Link faults while a run goes: which node is disconnected, the current
//! partition, what every node must therefore not reach (applied through
//! [`Links`]: blackhole rules in the namespaces placement, each node's
//! deny list on loopback; shaping by `tc` in namespaces, by the relays of
//! [`crate::shaper`] on loopback), and the watch behind `minority_reorgs`
//! after a heal.
//!
//! Owns the fault state, the deny files' contents and the reorg watch; the
//! namespaces' rules are [`crate::netns`]'s, the verdict is
//! [`crate::assertions::minority_reorgs`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::api;
use crate::manifest::{Action, Event, Role};
use crate::netns::Netns;
use crate::setup::NodePlan;
use crate::shaper::Shaper;

const TIMEOUT: Duration = Duration::from_millis(1000);

/// How a placement cuts links.
pub enum Links<'a> {
    /// Real link faults: `ip rule … blackhole` in each namespace, `tc`
    /// shaping (silent drops, no reset).
    Netns(&'a mut Netns),
    /// Loopback: each node's deny list (`--testnet-deny-file`), which the
    /// node re-reads; it closes and refuses connections to the listed
    /// peers (a reject, not a silent drop). Shaping by the relays, when
    /// the run has them.
    Loopback {
        plans: &'a [NodePlan],
        shaper: Option<&'a Shaper>,
    },
}

impl Links<'_> {
    /// Node `i` must reach none of `others` (and every other node again).
    fn block(&mut self, i: usize, others: &BTreeSet<usize>) -> Result<(), String> {
        match self {
            Links::Netns(net) => net.block(i, others).map_err(|e| e.to_string()),
            Links::Loopback { plans, .. } => {
                let Some(path) = &plans[i].deny_file else {
                    return Err(format!("{} runs without a deny list", plans[i].name));
                };
                let text: String = others
                    .iter()
                    .map(|&j| format!("{}\n", plans[j].peer_id))
                    .collect();
                // Written whole and renamed, so the node never reads half a list.
                let tmp = path.with_extension("new");
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// Who may reach whom now.
#[derive(Default)]
pub struct Faults {
    /// Group index of every node while partitioned.
    groups: Option<Vec<usize>>,
    disconnected: BTreeSet<usize>,
}

impl Faults {
    /// The nodes `i` must not reach under the current faults.
    fn blocked(&self, i: usize, n: usize) -> BTreeSet<usize> {
        (0..n)
            .filter(|&j| j != i)
            .filter(|&j| {
                self.disconnected.contains(&i)
                    || self.disconnected.contains(&j)
                    || self.groups.as_ref().is_some_and(|g| g[i] != g[j])
            })
            .collect()
    }

    /// Applies a link-fault event. `index` maps a node name to its index.
    pub fn apply(
        &mut self,
        e: &Event,
        mut links: Links<'_>,
        n: usize,
        index: impl Fn(&str) -> Option<usize>,
    ) -> Result<(), String> {
        let node = e.node.as_deref().and_then(&index);
        match (e.action, node) {
            (Action::Disconnect, Some(i)) => {
                if !self.disconnected.insert(i) {
                    return Err("already disconnected".into());
                }
            }
            (Action::Reconnect, Some(i)) => {
                if !self.disconnected.remove(&i) {
                    return Err("not disconnected".into());
                }
            }
            (Action::Partition, _) => {
                let mut groups = vec![0; n];
                for (g, names) in e.groups.iter().enumerate() {
                    for name in names {
                        if let Some(i) = index(name) {
                            groups[i] = g;
                        }
                    }
                }
                self.groups = Some(groups);
            }
            (Action::Heal, _) => {
                if self.groups.is_none() && self.disconnected.is_empty() {
                    return Err("nothing to heal".into());
                }
                self.groups = None;
                self.disconnected.clear();
            }
            (Action::Netem, Some(i)) => {
                return match links {
                    Links::Netns(net) => {
                        let shaping = e.shaping(net.has_netem())?;
                        net.shape(i, shaping.as_ref()).map_err(|e| e.to_string())
                    }
                    Links::Loopback {
                        shaper: Some(shaper),
                        ..
                    } => {
                        shaper.set(i, e.loopback_shape());
                        Ok(())
                    }
                    Links::Loopback { shaper: None, .. } => {
                        Err("this run has no loopback shaper".into())
                    }
                };
            }
            _ => return Err("not a link fault".into()),
        }
        for i in 0..n {
            links.block(i, &self.blocked(i, n))?;
        }
        Ok(())
    }
}

/// One minority node's way back to the majority after a heal.
#[derive(Clone, Debug, Serialize)]
pub struct ReorgWatch {
    pub node: String,
    /// A majority node it is compared with.
    pub reference: String,
    pub healed_at: f64,
    /// At the heal: its tip was not the reference's block at that height.
    pub diverged: Option<bool>,
    /// When its tip was first the reference's block at that height.
    pub agreed_at: Option<f64>,
    /// Its height then.
    pub agreed_height: Option<u64>,
}

/// Whether node `m`'s tip is the reference's block at that height: `None`
/// when either could not be read or the reference is below it.
fn agrees(m: &NodePlan, r: &NodePlan) -> Option<(bool, u64)> {
    let s = api::status(m.api, TIMEOUT).ok()?;
    if s.height == 0 {
        return Some((true, 0));
    }
    let hash = api::block_hash(r.api, s.height, TIMEOUT).ok()?;
    Some((hash == s.tip, s.height))
}

/// At a heal: one watch per honest node outside the biggest group (counted
/// in honest nodes; ties go to the first group), against the first honest
/// node of that group. `groups` is the partition being healed.
pub fn watch_heal(groups: &[Vec<String>], plans: &[NodePlan], t: f64) -> Vec<ReorgWatch> {
    let honest = |name: &String| {
        plans
            .iter()
            .any(|p| &p.name == name && p.role != Role::Adversary)
    };
    let Some(major) = groups
        .iter()
        .enumerate()
        .max_by_key(|(i, g)| (g.iter().filter(|n| honest(n)).count(), usize::MAX - i))
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    let Some(reference) = groups[major].iter().find(|n| honest(n)) else {
        return Vec::new();
    };
    let plan = |name: &str| plans.iter().find(|p| p.name == name);
    let mut watches = Vec::new();
    for (g, names) in groups.iter().enumerate() {
        if g == major {
            continue;
        }
        for name in names.iter().filter(|n| honest(n)) {
            let diverged = match (plan(name), plan(reference)) {
                (Some(m), Some(r)) => agrees(m, r).map(|(same, _)| !same),
                _ => None,
            };
            watches.push(ReorgWatch {
                node: name.clone(),
                reference: reference.clone(),
                healed_at: t,
                diverged,
                agreed_at: None,
                agreed_height: None,
            });
        }
    }
    watches
}

/// Looks again at every watch that has not agreed yet.
pub fn look(watches: &mut [ReorgWatch], plans: &[NodePlan], t: f64) {
    for w in watches.iter_mut().filter(|w| w.agreed_at.is_none()) {
        let m = plans.iter().find(|p| p.name == w.node);
        let r = plans.iter().find(|p| p.name == w.reference);
        if let (Some(m), Some(r)) = (m, r) {
            if let Some((true, h)) = agrees(m, r) {
                w.agreed_at = Some(t);
                w.agreed_height = Some(h);
            }
        }
    }
}
