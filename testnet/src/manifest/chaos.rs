//! `[chaos]`: random perturbations drawn from a seed and added to the
//! timeline at parse time, so the same seed gives the same run (the seed is
//! in the manifest copy and the summary).
//!
//! Each draw picks a node and a fault, applies it at a random time and
//! undoes it 2 to 6 s later (kill → restart, pause → resume, disconnect →
//! reconnect, netem (a rate limit of 256 kbit/s to 2 Mbit/s) → netem
//! cleared); a node has one fault at a time.

use serde::Deserialize;

use super::{Action, Dur, Event, ManifestError};
use crate::rng::Rng;

/// `[chaos]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    pub seed: u64,
    /// How many faults to draw.
    pub faults: u32,
    /// The window they fall in.
    pub from: Dur,
    pub until: Dur,
    /// Nodes that may be hit [default: every node].
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Faults to draw from: `kill`, `pause`, `disconnect`, `netem`
    /// [default: kill and pause; the others need namespaces].
    #[serde(default)]
    pub actions: Vec<Action>,
}

fn event(at_ms: u64, action: Action, node: &str) -> Event {
    Event {
        at: Dur(std::time::Duration::from_millis(at_ms)),
        action,
        node: Some(node.to_string()),
        groups: Vec::new(),
        delay: None,
        jitter: None,
        loss: None,
        rate: None,
    }
}

impl Chaos {
    /// The drawn events, in draw order. `all` is every node's name.
    pub fn events(&self, all: &[String]) -> Result<Vec<Event>, ManifestError> {
        let bad = |m: &str| Err(ManifestError::Invalid(format!("chaos: {m}")));
        let nodes: Vec<String> = if self.nodes.is_empty() {
            all.to_vec()
        } else {
            self.nodes.clone()
        };
        if let Some(n) = nodes.iter().find(|n| !all.contains(n)) {
            return bad(&format!("unknown node {n:?}"));
        }
        let actions = if self.actions.is_empty() {
            vec![Action::Kill, Action::Pause]
        } else {
            self.actions.clone()
        };
        if let Some(a) = actions.iter().find(|a| {
            !matches!(
                a,
                Action::Kill | Action::Pause | Action::Disconnect | Action::Netem
            )
        }) {
            return bad(&format!(
                "action {:?}: draws kill, pause, disconnect or netem",
                a.name()
            ));
        }
        let (from, until) = (
            self.from.0.as_millis() as u64,
            self.until.0.as_millis() as u64,
        );
        if until < from + 6_000 || nodes.is_empty() {
            return bad("needs nodes and until at least 6 s after from");
        }
        let mut rng = Rng::new(self.seed);
        let mut busy_until = vec![0u64; nodes.len()];
        let mut events = Vec::new();
        for _ in 0..self.faults {
            let i = rng.below(nodes.len() as u64) as usize;
            let hold = 2_000 + rng.below(4_001);
            let start = from.max(busy_until[i]) + rng.below(until.saturating_sub(from) / 2);
            if start + hold > until {
                continue;
            }
            busy_until[i] = start + hold + 1_000;
            let name = &nodes[i];
            let action = actions[rng.below(actions.len() as u64) as usize];
            let undo = match action {
                Action::Kill => Action::Restart,
                Action::Pause => Action::Resume,
                Action::Disconnect => Action::Reconnect,
                _ => Action::Netem,
            };
            let mut first = event(start, action, name);
            if action == Action::Netem {
                // A rate limit: kernels without sch_netem shape it too.
                first.rate = Some(format!("{}kbit", 256 * (1 + rng.below(8))));
            }
            events.push(first);
            events.push(event(start + hold, undo, name));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(seed: u64) -> Chaos {
        Chaos {
            seed,
            faults: 6,
            from: Dur(std::time::Duration::from_secs(5)),
            until: Dur(std::time::Duration::from_secs(40)),
            nodes: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn plan(seed: u64) -> Vec<(u128, &'static str, String)> {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        chaos(seed)
            .events(&names)
            .unwrap()
            .into_iter()
            .map(|e| (e.at.0.as_millis(), e.action.name(), e.node.unwrap()))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_each_is_undone() {
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        let p = plan(7);
        assert!(!p.is_empty());
        for pair in p.chunks(2) {
            let undo = match pair[0].1 {
                "kill" => "restart",
                _ => "resume",
            };
            assert_eq!((pair[1].1, &pair[1].2), (undo, &pair[0].2));
            assert!(pair[1].0 > pair[0].0 && pair[1].0 <= 40_000);
        }
    }
}
