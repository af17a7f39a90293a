//! The manifest: the TOML description of a testnet (network, nodes, timeline
//! of perturbations, assertions), its parsing and its validation.
//!
//! Owns the manifest's vocabulary and every rule about what a manifest may
//! say. Parsing uses serde with `deny_unknown_fields`, so a misspelt key is
//! one error naming the key and its line; [`Manifest::parse`] then checks the
//! cross-references (node names, roles, times) and reports the first problem.
//! Nothing here starts a process or talks to a node.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod assert;
mod chaos;
mod timeline;
pub use assert::{Assert, AssertKind};
pub use chaos::Chaos;
pub use timeline::{Action, Event};

/// A manifest that cannot be used, as one line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not implemented yet (see testnet/README.md)")]
    NotYet(String),
}

/// A whole manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub network: Network,
    pub run: RunSection,
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
    #[serde(default, rename = "timeline")]
    pub timeline: Vec<Event>,
    #[serde(default, rename = "assert")]
    pub asserts: Vec<Assert>,
    /// Random perturbations from a seed, added to the timeline.
    pub chaos: Option<Chaos>,
}

/// `[network]`: which genesis the nodes share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `dev` (the built-in dev network) or `authorities`: a genesis with
    /// `authorities` keys of their own, made by the runner.
    #[serde(default = "dev")]
    pub genesis: String,
    /// With `genesis = "authorities"`: how many authority keys to make.
    pub authorities: Option<u32>,
    /// Seed of the honest pre-generated chain (`concord generate --seed`).
    #[serde(default)]
    pub seed: u64,
    /// Body size of pre-generated blocks in bytes.
    #[serde(default = "default_block_size")]
    pub block_size: usize,
}

fn dev() -> String {
    "dev".into()
}

fn default_block_size() -> usize {
    256
}

impl Default for Network {
    fn default() -> Self {
        Network {
            genesis: dev(),
            authorities: None,
            seed: 0,
            block_size: default_block_size(),
        }
    }
}

/// `[run]`: how long the run lasts and how the end is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// When end-of-run assertions start being checked (from the first start).
    pub duration: Dur,
    /// How long end-of-run assertions may keep retrying (nodes settling on
    /// the last block) before they fail.
    #[serde(default = "default_settle")]
    pub settle: Dur,
    /// `RUST_LOG` given to every node.
    #[serde(default = "default_log")]
    pub log: String,
    /// Where the nodes run: `loopback` (127.0.0.1) or `namespaces` (one
    /// network namespace each on a bridge; needs root and `ip netns`).
    #[serde(default)]
    pub placement: Placement,
}

/// Where the nodes run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Every node on 127.0.0.1, ports picked free.
    #[default]
    Loopback,
    /// Every node in its own network namespace on a bridge the runner makes.
    Namespaces,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Loopback => "loopback",
            Placement::Namespaces => "namespaces",
        }
    }
}

fn default_settle() -> Dur {
    Dur(Duration::from_secs(20))
}

fn default_log() -> String {
    "info".into()
}

/// What a node is there for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Produces blocks (`--produce`, with `--authority-key` of its
    /// `authority` or `--dev-authority`).
    Producer,
    /// Serves a pre-generated chain of `blocks` blocks.
    Seeder,
    /// Starts empty and syncs (a late joiner is a follower with `start_after`).
    Follower,
    /// Not honest: excluded from agreement checks, expected to be judged.
    Adversary,
}

impl Role {
    pub fn honest(self) -> bool {
        self != Role::Adversary
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Seeder => "seeder",
            Role::Follower => "follower",
            Role::Adversary => "adversary",
        }
    }
}

/// `[[node]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub role: Role,
    /// Blocks generated into the data dir before start (`concord generate`).
    #[serde(default)]
    pub blocks: u64,
    /// Chain seed for those blocks [default: `network.seed`].
    pub seed: Option<u64>,
    /// Adversary behaviour: `fork` (serve a competing, validly signed
    /// chain), or a misbehaving mode of a node built with the `testnet`
    /// feature: `inflate_heights`, `wrong_votes`, `garbage`, `stall`.
    pub behaviour: Option<String>,
    /// Delay from the start of the run.
    #[serde(default)]
    pub start_after: Dur,
    /// Names of nodes to bootstrap to (their p2p address and peer id).
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Index of this node's authority key with `genesis = "authorities"`.
    pub authority: Option<u32>,
    /// Written to the node's `--config` file as is (`[sync]`, `[net]` tunables).
    pub config: Option<toml::Table>,
    /// mDNS discovery (namespaces only) [default: on in namespaces].
    pub mdns: Option<bool>,
    /// Offset added to the node's wall clock, in ms (may be negative).
    pub clock_offset_ms: Option<i64>,
}

impl Node {
    pub fn chain_seed(&self, network: &Network) -> u64 {
        self.seed.unwrap_or(network.seed)
    }
}

/// A duration written `"500ms"`, `"10s"`, `"2m"` or a number of seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}s", self.0.as_secs_f64())
    }
}

/// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"2m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("duration {text:?} needs a unit: ms, s or m"));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("duration {text:?} is not a number with a unit"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 86_400.0 {
        return Err(format!("duration {text:?} is out of range (0 to 24 h)"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
        }
    }
}

impl Manifest {
    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Self::parse_placed(text, None)
    }

    /// Parses, sets the placement (a command-line override) and validates.
    pub fn parse_placed(
        text: &str,
        placement: Option<Placement>,
    ) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start.min(text.len()));
            let line = text[..start].matches('\n').count() + 1;
            ManifestError::Syntax {
                line,
                message: e.message().replace('\n', " "),
            }
        })?;
        let mut manifest = manifest;
        if let Some(p) = placement {
            manifest.run.placement = p;
        }
        if let Some(chaos) = &manifest.chaos {
            let names: Vec<String> = manifest.nodes.iter().map(|n| n.name.clone()).collect();
            let mut drawn = chaos.events(&names)?;
            manifest.timeline.append(&mut drawn);
        }
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Invalid(m));
        match self.network.genesis.as_str() {
            "dev" => {
                if self.network.authorities.is_some() {
                    return bad(
                        "network.authorities needs network.genesis = \"authorities\"".into(),
                    );
                }
            }
            "authorities" => {
                match self.network.authorities {
                    Some(1..=64) => {}
                    _ => return bad(
                        "network.genesis = \"authorities\" needs network.authorities = N (1 to 64)"
                            .into(),
                    ),
                }
            }
            other => {
                return bad(format!(
                    "network.genesis = {other:?}: expected \"dev\" or \"authorities\""
                ))
            }
        }
        if self.nodes.is_empty() {
            return bad("no [[node]]".into());
        }
        let mut names = HashSet::new();
        for n in &self.nodes {
            let valid = !n.name.is_empty()
                && n.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return bad(format!(
                    "node name {:?}: use letters, digits, '-' and '_'",
                    n.name
                ));
            }
            if !names.insert(n.name.as_str()) {
                return bad(format!("node {:?} is defined twice", n.name));
            }
        }
        for n in &self.nodes {
            self.validate_node(n)?;
        }
        for e in &self.timeline {
            e.validate(self)?;
        }
        for a in &self.asserts {
            self.validate_assert(a)?;
        }
        if !self.nodes.iter().any(|n| n.role.honest()) {
            return bad("no honest node: every node is an adversary".into());
        }
        Ok(())
    }

    fn validate_node(&self, n: &Node) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Invalid(format!("node {:?}: {m}", n.name)));
        for b in &n.bootstrap {
            if b == &n.name {
                return bad("bootstraps to itself".into());
            }
            if self.node(b).is_none() {
                return bad(format!("bootstrap names unknown node {b:?}"));
            }
        }
        if let Some(k) = n.authority {
            match self.network.authorities {
                None => return bad("authority needs network.genesis = \"authorities\"".into()),
                Some(count) if k >= count => {
                    return bad(format!("authority = {k}: the keys are 0 to {}", count - 1))
                }
                _ => {}
            }
            if n.role != Role::Producer {
                return bad("authority is only for role = \"producer\"".into());
            }
        } else if n.role == Role::Producer && self.network.authorities.is_some() {
            return bad("a producer needs authority = K with genesis = \"authorities\"".into());
        }
        match n.role {
            Role::Seeder if n.blocks == 0 => return bad("a seeder needs blocks > 0".into()),
            Role::Follower if n.blocks > 0 => {
                return bad("a follower starts empty: blocks must be 0 (use a seeder)".into())
            }
            Role::Adversary => match n.behaviour.as_deref() {
                Some("fork") => {
                    if n.blocks == 0 {
                        return bad("a fork adversary needs blocks > 0".into());
                    }
                    if n.chain_seed(&self.network) == self.network.seed {
                        return bad(format!(
                            "a fork adversary needs a seed other than network.seed = {}",
                            self.network.seed
                        ));
                    }
                }
                Some("inflate_heights" | "wrong_votes" | "garbage" | "stall" | "flood") => {}
                Some(other) => {
                    return bad(format!("unknown behaviour {other:?}: fork, inflate_heights, wrong_votes, garbage, stall or flood"))
                }
                None => return bad("an adversary needs a behaviour (fork, inflate_heights, wrong_votes, garbage, stall, flood)".into()),
            },
            _ => {}
        }
        if n.role != Role::Adversary && n.behaviour.is_some() {
            return bad("behaviour is only for role = \"adversary\"".into());
        }
        if n.role.honest() && n.blocks > 0 && n.chain_seed(&self.network) != self.network.seed {
            return bad("an honest node's chain must use network.seed".into());
        }
        if n.mdns == Some(true) && self.run.placement != Placement::Namespaces {
            return bad(
                "mdns needs run.placement = \"namespaces\" (never on the host's network)".into(),
            );
        }
        if n.start_after > self.run.duration {
            return bad("start_after is after run.duration".into());
        }
        Ok(())
    }

    /// The names of the honest nodes.
    pub fn honest(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role.honest())
            .map(|n| n.name.clone())
            .collect()
    }
}
