//! `[[timeline]]`: the perturbations a manifest may schedule, and the rules
//! on their fields (which action needs a node, groups, netem settings, and
//! what each placement can shape).

use std::collections::HashSet;

use serde::Deserialize;

use super::{Dur, Manifest, ManifestError, Placement};
use crate::lossmask::LossMask;
use crate::netns::Shaping;
use crate::shaper::{self, line::Shape};

/// A perturbation.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL.
    Kill,
    /// Start again on the same data dir and ports.
    Restart,
    /// SIGSTOP.
    Pause,
    /// SIGCONT.
    Resume,
    /// SIGTERM (graceful; the node must exit 0).
    Stop,
    /// Cut the node off every other node (namespaces: blackhole rules).
    Disconnect,
    /// Undo its disconnect.
    Reconnect,
    /// Split the nodes into `groups` that cannot reach each other.
    Partition,
    /// Undo the partition (and every disconnect).
    Heal,
    /// Latency / loss / rate limit on the node's link, both ways (tc in
    /// namespaces, the relays of [`crate::shaper`] on loopback); with none
    /// of `delay`, `loss`, `rate`: remove it.
    Netem,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Disconnect => "disconnect",
            Action::Reconnect => "reconnect",
            Action::Partition => "partition",
            Action::Heal => "heal",
            Action::Netem => "netem",
        }
    }

    /// Link shaping (tc in namespaces, the relay shaper on loopback).
    pub fn is_shaping(self) -> bool {
        self == Action::Netem
    }

    /// A link fault: a cut (disconnect, partition; in namespaces a
    /// blackhole, on loopback each node's deny list) or shaping.
    pub fn is_link_fault(self) -> bool {
        matches!(
            self,
            Action::Disconnect
                | Action::Reconnect
                | Action::Partition
                | Action::Heal
                | Action::Netem
        )
    }
}

/// `[[timeline]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: Dur,
    pub action: Action,
    /// The node (every action but `partition` and `heal`).
    pub node: Option<String>,
    /// `partition`: every node in exactly one group.
    #[serde(default)]
    pub groups: Vec<Vec<String>>,
    /// `netem`: added latency.
    pub delay: Option<Dur>,
    /// `netem`: latency jitter (needs `delay`).
    pub jitter: Option<Dur>,
    /// `netem`: packet loss in percent (namespaces only: refused on
    /// loopback, whose relays carry TCP streams, not packets).
    pub loss: Option<f64>,
    /// `netem`: rate limit, tc syntax (`"1mbit"`, `"500kbit"`; `k` = 1000,
    /// `bps` = bytes a second).
    pub rate: Option<String>,
}

impl Event {
    /// The node, or `-` for network-wide actions.
    pub fn target(&self) -> String {
        match (&self.node, self.action) {
            (Some(n), _) => n.clone(),
            (None, Action::Partition) => self
                .groups
                .iter()
                .map(|g| g.join(","))
                .collect::<Vec<_>>()
                .join(" | "),
            (None, _) => "-".into(),
        }
    }

    /// Whether this event needs the netem qdisc (delay or loss).
    pub fn needs_netem(&self) -> bool {
        self.action == Action::Netem && (self.delay.is_some() || self.loss.is_some())
    }

    /// The shaping a `netem` event asks for, or `None` to remove it. On a
    /// kernel without netem (`netem` false), loss without delay is a
    /// [`LossMask`] (refused: delay, and losses the mask cannot round to).
    pub fn shaping(&self, netem: bool) -> Result<Option<Shaping>, String> {
        if !self.needs_netem() {
            return Ok(self.rate.clone().map(Shaping::Rate));
        }
        if !netem {
            if self.delay.is_some() {
                return Err("delay needs the netem qdisc, which this kernel lacks".into());
            }
            let mask = LossMask::from_percent(self.loss.unwrap_or(0.0))?;
            return Ok(match mask {
                Some(mask) => Some(Shaping::DropMask {
                    mask,
                    rate: self.rate.clone(),
                }),
                None => self.rate.clone().map(Shaping::Rate),
            });
        }
        let mut args = Vec::new();
        if let Some(d) = self.delay {
            args.extend(["delay".into(), format!("{}ms", d.0.as_millis())]);
            if let Some(j) = self.jitter {
                args.push(format!("{}ms", j.0.as_millis()));
            }
        }
        if let Some(l) = self.loss {
            args.extend(["loss".into(), format!("{l}%")]);
        }
        if let Some(r) = &self.rate {
            args.extend(["rate".into(), r.clone()]);
        }
        Ok(Some(Shaping::Netem(args)))
    }

    /// What a run says about this event's loss on a kernel without netem
    /// (the rate actually applied), if it has any.
    pub fn loss_note(&self) -> Option<String> {
        let l = self.loss?;
        match LossMask::from_percent(l) {
            Ok(Some(m)) => Some(m.describe(l)),
            Ok(None) => None,
            Err(why) => Some(why),
        }
    }

    /// The shaping a `netem` event asks of the loopback shaper (all zero:
    /// remove it). `loss` has no loopback equivalent (refused at parse time).
    pub fn loopback_shape(&self) -> Shape {
        Shape {
            delay: self.delay.map_or(Default::default(), |d| d.0),
            jitter: self.jitter.map_or(Default::default(), |d| d.0),
            rate: self.rate.as_deref().and_then(shaper::parse_rate),
        }
    }

    pub(super) fn validate(&self, m: &Manifest) -> Result<(), ManifestError> {
        let at = self.at;
        let what = self.action.name();
        let bad = |msg: String| {
            Err(ManifestError::Invalid(format!(
                "timeline at {at} ({what}): {msg}"
            )))
        };
        if at > m.run.duration {
            return bad(format!("after run.duration = {}", m.run.duration));
        }
        if self.action.is_shaping() && m.run.placement == Placement::Loopback && self.loss.is_some()
        {
            return bad(
                "loss cannot be modelled on loopback: the loopback shaper relays TCP streams, and TCP turns a lost packet into a retransmission delay (use delay/jitter, or the namespaces placement on a kernel with sch_netem; see testnet/README.md)"
                    .into(),
            );
        }
        let needs_node = !matches!(self.action, Action::Partition | Action::Heal);
        match (&self.node, needs_node) {
            (None, true) => return bad("needs node".into()),
            (Some(_), false) => return bad("takes no node".into()),
            (Some(n), true) if m.node(n).is_none() => return bad(format!("unknown node {n:?}")),
            _ => {}
        }
        if self.action == Action::Partition {
            if self.groups.len() < 2 {
                return bad("needs groups = [[...], [...]] (two or more)".into());
            }
            let mut seen = HashSet::new();
            for name in self.groups.iter().flatten() {
                if m.node(name).is_none() {
                    return bad(format!("unknown node {name:?}"));
                }
                if !seen.insert(name.as_str()) {
                    return bad(format!("{name:?} is in two groups"));
                }
            }
            if let Some(n) = m.nodes.iter().find(|n| !seen.contains(n.name.as_str())) {
                return bad(format!("node {:?} is in no group", n.name));
            }
        } else if !self.groups.is_empty() {
            return bad("groups is only for partition".into());
        }
        let netem_fields = self.delay.is_some()
            || self.jitter.is_some()
            || self.loss.is_some()
            || self.rate.is_some();
        if self.action != Action::Netem && netem_fields {
            return bad("delay, jitter, loss and rate are only for netem".into());
        }
        if self.jitter.is_some() && self.delay.is_none() {
            return bad("jitter needs delay".into());
        }
        if self.loss.is_some_and(|l| !(0.0..=100.0).contains(&l)) {
            return bad("loss is a percentage from 0 to 100".into());
        }
        if let Some(r) = &self.rate {
            let digits = r.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &r[digits.len()..];
            if digits.parse::<u64>().is_err()
                || !matches!(
                    unit,
                    "bit" | "kbit" | "mbit" | "gbit" | "bps" | "kbps" | "mbps"
                )
            {
                return bad(format!(
                    "rate {r:?}: a number and a unit: bit, kbit, mbit, gbit, bps, kbps, mbps"
                ));
            }
        }
        Ok(())
    }
}
