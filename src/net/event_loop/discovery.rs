//! Discovery: finding and dialing peers. Bootstrap addresses at start,
//! identify's listen addresses into Kademlia, Kademlia's routing table and
//! mDNS announcements dialed while we are below
//! [`NetConfig::target_peers`](super::super::NetConfig::target_peers), the
//! periodic Kademlia walk, redialing lost peers on the backoff schedule of
//! [`Redial`](super::super::redial::Redial), and keeping the address book
//! (who connected, from where, how dials went).
//!
//! Must not touch request-response traffic or the commands of the
//! [`Client`](super::super::Client), and must never dial a banned peer.

use libp2p::{
    identify, kad, mdns,
    metrics::Recorder,
    multiaddr::Protocol,
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition},
    Multiaddr, PeerId,
};
use tracing::{debug, info, trace, warn};

use super::EventLoop;
use crate::net::address_book::{AddressEntry, Source};
use crate::net::behaviour::KAD_PROTOCOL;

/// Wall-clock milliseconds for the address book (it outlives the process,
/// so `Instant` will not do).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// More origins than this and those of peers we no longer track are dropped.
const MAX_ORIGINS: usize = 4096;

/// Splits `/p2p/<id>` off the end of an address.
fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

impl EventLoop {
    /// Adds the bootstrap peers to Kademlia and the address book and dials
    /// them (retried with backoff while unreachable). A bad address is only
    /// a warning: the node may still find peers another way.
    pub(super) fn dial_bootstrap(&mut self) {
        let now = std::time::Instant::now();
        for addr in self.config.bootstrap.clone() {
            let (base, peer) = split_peer_id(&addr);
            let Some(peer) = peer else {
                warn!(%addr, "bootstrap address has no /p2p/<peer id>: dialing it, but it cannot seed Kademlia");
                match self.swarm.dial(addr.clone()) {
                    Ok(()) => info!(%addr, "dialing bootstrap peer"),
                    Err(e) => warn!(%addr, error = %e, "cannot dial bootstrap peer, continuing"),
                }
                continue;
            };
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, base.clone());
            self.book.trusted(peer, &base, Source::Bootstrap, unix_ms());
            self.origins.insert(peer, Source::Bootstrap);
            info!(%addr, "dialing bootstrap peer");
            self.redial.lost(peer, vec![base], now, true);
        }
        self.metrics.address_book_size(self.book.len());
    }

    /// Peers from the saved address book: known again, and dialed now.
    pub(super) fn add_known(&mut self, entries: Vec<AddressEntry>) {
        let now = std::time::Instant::now();
        let entries: Vec<AddressEntry> = entries
            .into_iter()
            .filter(|e| !self.bans.contains_key(&e.peer) && e.peer != *self.swarm.local_peer_id())
            .collect();
        info!(peers = entries.len(), "dialing peers from the address book");
        self.book.load(entries.iter().cloned());
        for e in entries {
            for a in &e.addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&e.peer, a.clone());
            }
            self.origins.entry(e.peer).or_insert(Source::AddressBook);
            self.redial.lost(e.peer, e.addrs, now, true);
        }
        self.metrics.address_book_size(self.book.len());
    }

    /// Dials the lost peers whose backoff ran out.
    pub(super) fn redial_due(&mut self) {
        let now = std::time::Instant::now();
        for (peer, addrs) in self.redial.due(now) {
            if self.bans.contains_key(&peer) {
                self.redial.forget(&peer);
                continue;
            }
            if self.swarm.is_connected(&peer) {
                self.redial.connected(&peer);
                continue;
            }
            if !self.wants_more_peers() {
                self.redial.postpone(&peer, now);
                continue;
            }
            match self.dial(peer, addrs) {
                Ok(()) => {
                    debug!(%peer, "redialing lost peer");
                    self.metrics.redial();
                }
                Err(e) => {
                    debug!(%peer, error = %e, "redial not started");
                    self.redial.postpone(&peer, now);
                }
            }
        }
    }

    /// First connection to `peer`: where it came from, and (for a peer we
    /// dialed) the address that worked, into the address book.
    pub(super) fn on_peer_connected(&mut self, peer: PeerId, addr: &Multiaddr, dialer: bool) {
        self.redial.connected(&peer);
        let source = match self.origins.get(&peer) {
            Some(s) => *s,
            None if dialer => Source::Kademlia,
            None => Source::Inbound,
        };
        self.sources.insert(peer, source);
        if dialer {
            self.book
                .connected(peer, std::slice::from_ref(addr), source, unix_ms());
            self.metrics.address_book_size(self.book.len());
        }
    }

    /// Last connection to `peer` closed: redial it if we know where.
    pub(super) fn on_peer_lost(&mut self, peer: PeerId) {
        self.sources.remove(&peer);
        if self.bans.contains_key(&peer) {
            return;
        }
        if let Some(e) = self.book.get(&peer) {
            debug!(%peer, "lost a known peer; redialing with backoff");
            self.redial
                .lost(peer, e.addrs.clone(), std::time::Instant::now(), false);
        }
        if self.origins.len() > MAX_ORIGINS {
            let (redial, book) = (&self.redial, &self.book);
            self.origins
                .retain(|p, _| redial.is_waiting(p) || book.get(p).is_some());
        }
    }

    /// A dial to `peer` failed: back off, and count it against its entry.
    pub(super) fn on_dial_failed(&mut self, peer: PeerId) {
        self.redial.failed(&peer, std::time::Instant::now());
        self.book.failed(&peer);
    }

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

    /// Dials `peer` at `addrs` unless a connection or a dial to it exists.
    fn dial(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<(), libp2p::swarm::DialError> {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.swarm.dial(opts)
    }

    /// Dials `peer` at `addrs` if we want more peers and are not connected.
    fn maybe_dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, why: Source) {
        if peer == *self.swarm.local_peer_id()
            || self.bans.contains_key(&peer)
            || self.swarm.is_connected(&peer)
            || !self.wants_more_peers()
        {
            return;
        }
        match self.dial(peer, addrs) {
            Ok(()) => {
                debug!(%peer, %why, "dialing discovered peer");
                self.origins.entry(peer).or_insert(why);
            }
            Err(e) => debug!(%peer, %why, error = %e, "not dialing discovered peer"),
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
            self.maybe_dial(peer, addrs, Source::Kademlia);
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
                // What a connected peer says it listens on: how to reach it
                // again (an inbound peer's remote port is not).
                if self.book.get(&peer_id).is_some() {
                    self.book.listen_addrs(peer_id, &info.listen_addrs);
                } else if self.swarm.is_connected(&peer_id) && !self.bans.contains_key(&peer_id) {
                    let source = self
                        .sources
                        .get(&peer_id)
                        .copied()
                        .unwrap_or(Source::Inbound);
                    self.book
                        .connected(peer_id, &info.listen_addrs, source, unix_ms());
                    self.metrics.address_book_size(self.book.len());
                }
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
                self.maybe_dial(peer, addrs, Source::Kademlia);
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
                    self.maybe_dial(peer, vec![addr], Source::Mdns);
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
