//! The event loop's testnet room (cargo feature `testnet` only; a release
//! node has none of this): what a testnet asks of the swarm itself.
//! - A **deny list** ([`crate::testnet::deny_file`]): re-read every
//!   [`TICK`]; a listed peer is put on the block list, which closes its
//!   connections and refuses new ones both ways (dials fail, inbound is
//!   closed at once); a peer taken off the list is unblocked unless it is
//!   banned. This models a firewall that rejects, not a silent link: both
//!   sides see the connection end at once, nothing is delayed or lost.
//! - A **flooding** adversary ([`crate::net::misbehave::floods`]): every
//!   tick, [`misbehave::FLOOD_PER_TICK`] height requests to every
//!   connected peer, answers ignored.
//!
//! Must not touch bans (beyond leaving a banned peer blocked), slots or
//! discovery.

use std::collections::BTreeSet;

use libp2p::PeerId;
use tracing::{info, warn};

use super::EventLoop;
use crate::net::codec::Inbound;
use crate::net::misbehave;
use crate::protocol::HeightRequest;

/// How often the room looks at the deny list and floods.
pub(super) const TICK: std::time::Duration = misbehave::FLOOD_TICK;

/// The room's state between ticks.
pub(super) struct Room {
    interval: tokio::time::Interval,
    /// The deny list as last read.
    text: Option<String>,
    denied: BTreeSet<PeerId>,
}

impl Room {
    pub(super) fn new() -> Room {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Room {
            interval,
            text: None,
            denied: BTreeSet::new(),
        }
    }

    pub(super) async fn due(&mut self) {
        self.interval.tick().await;
    }
}

/// The peer ids of a deny list (one a line; blank lines and `#` comments
/// skipped), and the lines that are not peer ids.
fn parse(text: &str) -> (BTreeSet<PeerId>, Vec<&str>) {
    let mut peers = BTreeSet::new();
    let mut bad = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<PeerId>() {
            Ok(p) => {
                peers.insert(p);
            }
            Err(_) => bad.push(line),
        }
    }
    (peers, bad)
}

impl EventLoop {
    pub(super) fn on_testnet_tick(&mut self, room: &mut Room) {
        if let Some(path) = crate::testnet::deny_file() {
            // A missing file is an empty list (the runner may not have
            // written it yet).
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if room.text.as_deref() != Some(text.as_str()) {
                let (denied, bad) = parse(&text);
                if !bad.is_empty() {
                    warn!(path = %path.display(), ?bad, "testnet deny list: lines that are not peer ids ignored");
                }
                for peer in room.denied.difference(&denied) {
                    if !self.bans.contains_key(peer) {
                        self.swarm.behaviour_mut().blocked.unblock_peer(*peer);
                    }
                }
                info!(denied = denied.len(), "testnet deny list changed");
                room.denied = denied;
                room.text = Some(text);
            }
            // Every tick: an expired ban unblocks a peer that is still denied.
            for peer in &room.denied {
                self.swarm.behaviour_mut().blocked.block_peer(*peer);
            }
        }
        if misbehave::floods() {
            let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
            for peer in peers {
                for _ in 0..misbehave::FLOOD_PER_TICK {
                    self.swarm
                        .behaviour_mut()
                        .height
                        .send_request(&peer, Inbound::Valid(HeightRequest {}));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deny_list_holds_the_peer_ids_and_names_the_other_lines() {
        let a = PeerId::random();
        let b = PeerId::random();
        let text = format!("# cut\n{a}\n\n  {b}  \nnot-a-peer\n{a}\n");
        let (peers, bad) = parse(&text);
        assert_eq!(peers, BTreeSet::from([a, b]));
        assert_eq!(bad, vec!["not-a-peer"]);
        assert!(parse("").0.is_empty());
    }
}
