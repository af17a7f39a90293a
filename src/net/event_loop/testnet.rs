//! The event loop's testnet room (cargo feature `testnet` only; a release
//! node has none of this): what a testnet asks of the swarm itself.
//! - A **deny list** ([`crate::testnet::deny_file`]): re-read every
//!   [`TICK`]; a listed peer is put on the block list, which closes its
//!   connections and refuses new ones both ways (dials fail, inbound is
//!   closed at once); a peer taken off the list is unblocked unless it is
//!   banned. This models a firewall that rejects, not a silent link: both
//!   sides see the connection end at once, nothing is delayed or lost.
//! - A **flooding** adversary ([`crate::net::misbehave::floods`]):
//!   [`misbehave::FLOOD_IN_FLIGHT`] height requests kept in flight to every
//!   connected peer, the next sent as soon as one ends (answered, refused or
//!   failed), at most [`misbehave::FLOOD_PER_TICK`] a peer per tick (so a
//!   request that fails at once cannot spin the loop); answers ignored.
//!
//! Must not touch bans (beyond leaving a banned peer blocked), slots or
//! discovery.

use std::collections::{BTreeSet, HashMap, HashSet};

use libp2p::request_response::OutboundRequestId;
use libp2p::PeerId;
use tracing::{info, warn};

use super::EventLoop;
use crate::net::codec::Inbound;
use crate::net::misbehave;
use crate::protocol::{HeightRequest, HEIGHT_PROTOCOL};

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

/// A flooder's requests in flight and sent this tick, per peer.
#[derive(Default)]
pub(super) struct Flood {
    in_flight: HashMap<PeerId, HashSet<OutboundRequestId>>,
    sent: HashMap<PeerId, usize>,
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
            let peers: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
            self.flood.sent.clear();
            self.flood.in_flight.retain(|p, _| peers.contains(p));
            for peer in peers {
                self.flood_top_up(peer);
            }
        }
    }

    /// One of our requests without a waiting caller ended: if it was a
    /// flood request, the next one goes out at once.
    pub(super) fn flood_request_done(
        &mut self,
        protocol: &'static str,
        peer: PeerId,
        id: OutboundRequestId,
    ) {
        if protocol != HEIGHT_PROTOCOL {
            return;
        }
        let ours = self
            .flood
            .in_flight
            .get_mut(&peer)
            .is_some_and(|ids| ids.remove(&id));
        // A peer gone (or banned) is not dialed again for the flood.
        if ours && misbehave::floods() && self.swarm.is_connected(&peer) {
            self.flood_top_up(peer);
        }
    }

    fn flood_top_up(&mut self, peer: PeerId) {
        let sent = self.flood.sent.entry(peer).or_insert(0);
        let in_flight = self.flood.in_flight.entry(peer).or_default();
        while in_flight.len() < misbehave::FLOOD_IN_FLIGHT && *sent < misbehave::FLOOD_PER_TICK {
            let id = self
                .swarm
                .behaviour_mut()
                .height
                .send_request(&peer, Inbound::Valid(HeightRequest {}));
            in_flight.insert(id);
            *sent += 1;
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
