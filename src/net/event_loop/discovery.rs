//! Discovery: finding and dialing peers. Bootstrap addresses at start,
//! identify's listen addresses into Kademlia, Kademlia's routing table and
//! mDNS announcements dialed while we are below
//! [`NetConfig::target_peers`](super::super::NetConfig::target_peers), and the
//! periodic Kademlia walk.
//!
//! Must not touch request-response traffic or the commands of the
//! [`Client`](super::super::Client), and must never dial a banned peer.

use libp2p::{
    identify, kad, mdns,
    metrics::Recorder,
    multiaddr::Protocol,
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition},
    Multiaddr, PeerId, Swarm,
};
use tracing::{debug, info, trace, warn};

use super::EventLoop;
use crate::net::behaviour::{Behaviour, KAD_PROTOCOL};

/// Splits `/p2p/<id>` off the end of an address.
fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// Adds the bootstrap peers to Kademlia and dials them. A bad address is
/// only a warning: the node may still find peers another way.
pub(super) fn dial_bootstrap(swarm: &mut Swarm<Behaviour>, bootstrap: &[Multiaddr]) {
    for addr in bootstrap {
        let (base, peer) = split_peer_id(addr);
        match peer {
            Some(peer) => {
                swarm.behaviour_mut().kad.add_address(&peer, base);
            }
            None => {
                warn!(%addr, "bootstrap address has no /p2p/<peer id>: dialing it, but it cannot seed Kademlia")
            }
        }
        match swarm.dial(addr.clone()) {
            Ok(()) => info!(%addr, "dialing bootstrap peer"),
            Err(e) => warn!(%addr, error = %e, "cannot dial bootstrap peer, continuing"),
        }
    }
}

impl EventLoop {
    /// The periodic discovery round: a Kademlia walk, then dial what is known.
    pub(super) fn on_discovery_tick(&mut self) {
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            debug!(error = %e, "Kademlia bootstrap skipped");
        }
        self.dial_known_peers();
    }

    fn wants_more_peers(&self) -> bool {
        self.swarm.network_info().num_peers() < self.config.target_peers
    }

    /// Dials `peer` at `addrs` if we want more peers and are not connected.
    fn maybe_dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, why: &str) {
        if peer == *self.swarm.local_peer_id()
            || self.bans.contains_key(&peer)
            || self.swarm.is_connected(&peer)
            || !self.wants_more_peers()
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => debug!(%peer, why, "dialing discovered peer"),
            Err(e) => debug!(%peer, why, error = %e, "not dialing discovered peer"),
        }
    }

    /// Dials peers from the Kademlia routing table while below the target.
    fn dial_known_peers(&mut self) {
        if !self.wants_more_peers() {
            return;
        }
        let mut known: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                known.push((
                    *entry.node.key.preimage(),
                    entry.node.value.clone().into_vec(),
                ));
            }
        }
        for (peer, addrs) in known {
            self.maybe_dial(peer, addrs, "routing table");
        }
    }

    pub(super) fn on_identify(&mut self, event: identify::Event) {
        self.p2p_metrics.record(&event);
        match event {
            identify::Event::Received { peer_id, info, .. } => {
                info!(
                    peer = %peer_id,
                    agent = %info.agent_version,
                    protocol_version = %info.protocol_version,
                    protocols = info.protocols.len(),
                    listen_addrs = info.listen_addrs.len(),
                    "identify received"
                );
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                } else {
                    debug!(peer = %peer_id, "peer does not speak Concord Kademlia");
                }
            }
            identify::Event::Error { peer_id, error, .. } => {
                debug!(peer = %peer_id, %error, "identify failed")
            }
            _ => {}
        }
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        self.p2p_metrics.record(&event);
        match event {
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                addresses,
                ..
            } => {
                let addrs = addresses.into_vec();
                if is_new_peer {
                    info!(%peer, addresses = ?addrs, "Kademlia: new peer in routing table");
                } else {
                    debug!(%peer, addresses = ?addrs, "Kademlia: routing table updated");
                }
                self.maybe_dial(peer, addrs, "kademlia");
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                ..
            } => match result {
                Ok(ok) => debug!(
                    remaining = ok.num_remaining,
                    "Kademlia bootstrap progressed"
                ),
                Err(e) => debug!(error = ?e, "Kademlia bootstrap failed"),
            },
            kad::Event::UnroutablePeer { peer } => debug!(%peer, "Kademlia: unroutable peer"),
            other => trace!(event = ?other, "Kademlia event"),
        }
    }

    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(list) => {
                for (peer, addr) in list {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    info!(%peer, %addr, "mDNS discovered peer");
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    self.maybe_dial(peer, vec![addr], "mdns");
                }
            }
            mdns::Event::Expired(list) => {
                for (peer, addr) in list {
                    debug!(%peer, %addr, "mDNS record expired");
                }
            }
        }
    }
}
