//! The event loop: owns the [`Swarm`], executes [`Command`]s from the
//! [`super::Client`]s, serves inbound requests from the store and reports
//! [`NetEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    identify, kad, mdns,
    metrics::Recorder,
    multiaddr::Protocol,
    request_response::{self, InboundFailure, OutboundFailure, OutboundRequestId, ResponseChannel},
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, ConnectionId, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, trace, warn};

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::client::Command;
use super::codec::Inbound;
use super::{NetConfig, NetError, NetEvent, RequestError};
use crate::chain::Hash;
use crate::metrics::Metrics;
use crate::protocol::{
    limits, AnnounceRequest, AnnounceResponse, BlockHashResponse, BlocksResponse, GenesisResponse,
    HeightResponse, ANNOUNCE_PROTOCOL, BLOCKS_PROTOCOL, BLOCK_HASH_PROTOCOL, GENESIS_PROTOCOL,
    HEIGHT_PROTOCOL,
};
use crate::store::Store;

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;
type Pending<T> = HashMap<OutboundRequestId, Reply<T>>;
type RrEvent<Req, Resp> = request_response::Event<Inbound<Req>, Resp>;

/// Splits `/p2p/<id>` off the end of an address.
pub(crate) fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// Sends [`NetEvent`]s without ever waiting: the loop must keep serving peers
/// even if nobody reads events, so a full channel drops the event (WARN).
/// Events are hints for the sync engine, which also polls peers itself.
struct EventSink(mpsc::Sender<NetEvent>);

impl EventSink {
    fn emit(&self, event: NetEvent) {
        match self.0.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                warn!(?event, "net event channel full, dropping event")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                trace!("net event receiver dropped")
            }
        }
    }
}

/// A blocks response computed off the loop, to be sent by the loop.
type Served = (PeerId, ResponseChannel<BlocksResponse>, BlocksResponse);

/// Owns the swarm. Spawn [`EventLoop::run`]; it returns when a
/// [`super::Client::shutdown`] arrives or every `Client` is dropped.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: EventSink,
    store: Store,
    genesis: Hash,
    config: NetConfig,
    served_tx: mpsc::UnboundedSender<Served>,
    served_rx: mpsc::UnboundedReceiver<Served>,
    pending_height: Pending<HeightResponse>,
    pending_genesis: Pending<GenesisResponse>,
    pending_block_hash: Pending<BlockHashResponse>,
    pending_blocks: Pending<BlocksResponse>,
    /// Announce answers are ignored; the map only exists for the generic handler.
    pending_announce: Pending<AnnounceResponse>,
    pending_dials: HashMap<ConnectionId, Reply<()>>,
    bans: HashMap<PeerId, Instant>,
    /// Remote address of every established connection, per peer.
    peer_addrs: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
    /// Limits concurrent blocks-range reads (memory and blocking threads).
    block_readers: Arc<Semaphore>,
    /// libp2p's own metrics (identify, Kademlia, ping, swarm events).
    p2p_metrics: libp2p::metrics::Metrics,
    /// Concord's: inbound requests served and refused.
    metrics: Arc<Metrics>,
    #[cfg(feature = "bench")]
    throttle: Option<super::throttle::Throttle>,
}

/// Most `/concord/blocks/1` store reads in flight at once.
const BLOCK_READERS: usize = 8;

impl EventLoop {
    pub(crate) fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        store: Store,
        genesis: Hash,
        config: NetConfig,
        (p2p_metrics, metrics): (libp2p::metrics::Metrics, Arc<Metrics>),
    ) -> Result<EventLoop, NetError> {
        info!(peer_id = %swarm.local_peer_id(), "local peer id");
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        for addr in &config.bootstrap {
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
        let (served_tx, served_rx) = mpsc::unbounded_channel();
        Ok(EventLoop {
            swarm,
            commands,
            events: EventSink(events),
            store,
            genesis,
            served_tx,
            served_rx,
            pending_height: HashMap::new(),
            pending_genesis: HashMap::new(),
            pending_block_hash: HashMap::new(),
            pending_blocks: HashMap::new(),
            pending_announce: HashMap::new(),
            pending_dials: HashMap::new(),
            bans: HashMap::new(),
            peer_addrs: HashMap::new(),
            block_readers: Arc::new(Semaphore::new(BLOCK_READERS)),
            #[cfg(feature = "bench")]
            throttle: config.serve_rate_limit.map(super::throttle::Throttle::new),
            config,
            p2p_metrics,
            metrics,
        })
    }

    /// Runs until shutdown. Never panics on anything a peer sends.
    pub async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut discovery = tokio::time::interval(self.config.kad_bootstrap_interval);
        discovery.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        info!("network shutting down");
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        debug!("all clients dropped, network stopping");
                        break;
                    }
                },
                Some((peer, channel, response)) = self.served_rx.recv() => {
                    let rr = &mut self.swarm.behaviour_mut().blocks;
                    respond(rr, channel, response, &self.metrics, BLOCKS_PROTOCOL, peer);
                }
                _ = housekeeping.tick() => self.expire_bans(),
                _ = discovery.tick() => {
                    if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                        debug!(error = %e, "Kademlia bootstrap skipped");
                    }
                    self.dial_known_peers();
                }
            }
        }
    }

    // ---------------------------------------------------------------- commands

    fn on_command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Height { peer, reply } => {
                let id = b
                    .height
                    .send_request(&peer, Inbound::Valid(Default::default()));
                self.pending_height.insert(id, reply);
            }
            Command::Genesis { peer, reply } => {
                let id = b
                    .genesis
                    .send_request(&peer, Inbound::Valid(Default::default()));
                self.pending_genesis.insert(id, reply);
            }
            Command::BlockHash {
                peer,
                height,
                reply,
            } => {
                let req = crate::protocol::BlockHashRequest { height };
                let id = b.block_hash.send_request(&peer, Inbound::Valid(req));
                self.pending_block_hash.insert(id, reply);
            }
            Command::Blocks {
                peer,
                start,
                count,
                reply,
            } => {
                let req = crate::protocol::BlocksRequest { start, count };
                let id = b.blocks.send_request(&peer, Inbound::Valid(req));
                self.pending_blocks.insert(id, reply);
            }
            Command::Announce { height, tip, reply } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                debug!(height, %tip, peers = peers.len(), "announcing tip");
                for peer in peers {
                    self.swarm
                        .behaviour_mut()
                        .announce
                        .send_request(&peer, Inbound::Valid(AnnounceRequest { height, tip }));
                }
                let _ = reply.send(());
            }
            Command::Ban {
                peer,
                duration,
                reply,
            } => {
                info!(%peer, ?duration, "banning peer");
                b.blocked.block_peer(peer);
                b.kad.remove_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                self.bans.insert(peer, Instant::now() + duration);
                let _ = reply.send(());
            }
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let connection_id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        debug!(%addr, "dialing");
                        self.pending_dials.insert(connection_id, reply);
                    }
                    Err(e) => {
                        warn!(%addr, error = %e, "dial failed");
                        let _ = reply.send(Err(RequestError::Unreachable));
                    }
                }
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::PeerAddresses { reply } => {
                let addrs = self
                    .peer_addrs
                    .iter()
                    .map(|(peer, conns)| {
                        let mut list: Vec<Multiaddr> = conns.values().cloned().collect();
                        list.sort();
                        list.dedup();
                        (*peer, list)
                    })
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; kept for exhaustiveness.
                let _ = reply.send(());
            }
        }
    }

    fn expire_bans(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            info!(%peer, "ban expired");
        }
    }

    // --------------------------------------------------------------- discovery

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

    // ------------------------------------------------------------ swarm events

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.p2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(Protocol::P2p(*self.swarm.local_peer_id()));
                info!(address = %full, "listening");
                self.events.emit(NetEvent::NewListenAddr { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                info!(%address, "listen address expired")
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                let addr = endpoint.get_remote_address().clone();
                self.peer_addrs
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, addr.clone());
                if num_established.get() == 1 {
                    info!(peer = %peer_id, %addr, dialer = endpoint.is_dialer(), "peer connected");
                    self.events.emit(NetEvent::PeerConnected {
                        peer: peer_id,
                        addr,
                    });
                } else {
                    debug!(peer = %peer_id, %addr, n = num_established.get(), "additional connection");
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                endpoint,
                ..
            } => {
                if let Some(conns) = self.peer_addrs.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        self.peer_addrs.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    let addr = endpoint.get_remote_address();
                    match cause {
                        Some(cause) => info!(peer = %peer_id, %addr, %cause, "peer disconnected"),
                        None => info!(peer = %peer_id, %addr, "peer disconnected"),
                    }
                    self.events
                        .emit(NetEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    warn!(peer = ?peer_id, %error, "dial failed");
                    let _ = reply.send(Err(RequestError::Unreachable));
                } else {
                    debug!(peer = ?peer_id, %error, "outgoing connection failed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(%send_back_addr, %error, "incoming connection failed");
            }
            other => trace!(event = ?other, "swarm event"),
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Identify(event) => self.on_identify(event),
            BehaviourEvent::Ping(event) => {
                self.p2p_metrics.record(&event);
                match event.result {
                    Ok(rtt) => trace!(peer = %event.peer, ?rtt, "ping"),
                    Err(e) => debug!(peer = %event.peer, error = %e, "ping failed"),
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Height(event) => {
                if let Some((peer, _, channel)) = split_rr(
                    &self.events,
                    &self.metrics,
                    HEIGHT_PROTOCOL,
                    &mut self.pending_height,
                    event,
                ) {
                    let tip = self.store.tip();
                    let response = HeightResponse {
                        height: tip.height,
                        tip: tip.hash,
                    };
                    let rr = &mut self.swarm.behaviour_mut().height;
                    respond(rr, channel, response, &self.metrics, HEIGHT_PROTOCOL, peer);
                }
            }
            BehaviourEvent::Genesis(event) => {
                if let Some((peer, _, channel)) = split_rr(
                    &self.events,
                    &self.metrics,
                    GENESIS_PROTOCOL,
                    &mut self.pending_genesis,
                    event,
                ) {
                    let response = GenesisResponse {
                        genesis: self.genesis,
                    };
                    let rr = &mut self.swarm.behaviour_mut().genesis;
                    respond(rr, channel, response, &self.metrics, GENESIS_PROTOCOL, peer);
                }
            }
            BehaviourEvent::BlockHash(event) => {
                if let Some((peer, request, channel)) = split_rr(
                    &self.events,
                    &self.metrics,
                    BLOCK_HASH_PROTOCOL,
                    &mut self.pending_block_hash,
                    event,
                ) {
                    // A point read of a 32-byte value: cheap enough for the loop.
                    match self.store.hash_at(request.height) {
                        Ok(hash) => {
                            let response = BlockHashResponse {
                                height: request.height,
                                hash,
                            };
                            let rr = &mut self.swarm.behaviour_mut().block_hash;
                            respond(
                                rr,
                                channel,
                                response,
                                &self.metrics,
                                BLOCK_HASH_PROTOCOL,
                                peer,
                            );
                        }
                        // Dropping the channel closes the stream without an answer.
                        Err(e) => {
                            warn!(%peer, protocol = BLOCK_HASH_PROTOCOL, error = %e, "store read failed")
                        }
                    }
                }
            }
            BehaviourEvent::Blocks(event) => {
                if let Some((peer, request, channel)) = split_rr(
                    &self.events,
                    &self.metrics,
                    BLOCKS_PROTOCOL,
                    &mut self.pending_blocks,
                    event,
                ) {
                    let count = request.count.min(limits::MAX_BLOCKS_PER_REQUEST);
                    let store = self.store.clone();
                    let served = self.served_tx.clone();
                    let readers = self.block_readers.clone();
                    #[cfg(feature = "bench")]
                    let throttle = self.throttle.clone();
                    tokio::spawn(async move {
                        // At most BLOCK_READERS ranges (~4 MiB each) are read
                        // at once, whatever the number of peers asking.
                        let Ok(_permit) = readers.acquire_owned().await else {
                            return;
                        };
                        // Reading up to 4 MiB from sled must not stall the loop.
                        let read = tokio::task::spawn_blocking(move || {
                            store.blocks_range(request.start, count, limits::RESPONSE_BYTE_BUDGET)
                        })
                        .await;
                        match read {
                            Ok(Ok(blocks)) => {
                                #[cfg(feature = "bench")]
                                if let Some(t) = throttle {
                                    // Approximate encoded size: body plus ~190 B of header.
                                    let bytes =
                                        blocks.iter().map(|b| b.body.len() as u64 + 190).sum();
                                    t.wait(bytes).await;
                                }
                                trace!(%peer, start = request.start, n = blocks.len(), "serving blocks");
                                let _ = served.send((peer, channel, BlocksResponse { blocks }));
                            }
                            Ok(Err(e)) => {
                                warn!(%peer, protocol = BLOCKS_PROTOCOL, error = %e, "store read failed")
                            }
                            Err(e) => {
                                warn!(%peer, protocol = BLOCKS_PROTOCOL, error = %e, "store read task failed")
                            }
                        }
                    });
                }
            }
            BehaviourEvent::Announce(event) => {
                if let Some((peer, request, channel)) = split_rr(
                    &self.events,
                    &self.metrics,
                    ANNOUNCE_PROTOCOL,
                    &mut self.pending_announce,
                    event,
                ) {
                    debug!(%peer, height = request.height, tip = %request.tip, "tip announced");
                    let rr = &mut self.swarm.behaviour_mut().announce;
                    respond(
                        rr,
                        channel,
                        AnnounceResponse {},
                        &self.metrics,
                        ANNOUNCE_PROTOCOL,
                        peer,
                    );
                    self.events.emit(NetEvent::TipAnnounced {
                        peer,
                        height: request.height,
                        tip: request.tip,
                    });
                }
            }
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
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

    fn on_kad(&mut self, event: kad::Event) {
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

    fn on_mdns(&mut self, event: mdns::Event) {
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

/// Handles everything of a request-response event except serving a valid
/// inbound request, which it returns to the caller.
fn split_rr<Req, Resp>(
    events: &EventSink,
    metrics: &Metrics,
    protocol: &'static str,
    pending: &mut Pending<Resp>,
    event: RrEvent<Req, Resp>,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    use request_response::{Event, Message};
    match event {
        Event::Message {
            peer,
            message: Message::Request {
                request, channel, ..
            },
            ..
        } => match request {
            Inbound::Valid(request) => return Some((peer, request, channel)),
            Inbound::Invalid(error) => {
                warn!(%peer, protocol, %error, "bad request");
                metrics.inbound_refused(protocol);
                // `channel` is dropped: the stream closes without a response.
                events.emit(NetEvent::BadRequest {
                    peer,
                    protocol,
                    error,
                });
            }
        },
        Event::Message {
            peer,
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => match pending.remove(&request_id) {
            Some(reply) => {
                let _ = reply.send(Ok(response));
            }
            None => trace!(%peer, protocol, "response without a waiting caller"),
        },
        Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            debug!(%peer, protocol, %error, "outbound request failed");
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(map_outbound(error)));
            }
        }
        Event::InboundFailure { peer, error, .. } => match error {
            InboundFailure::Io(e) => {
                let error = format!("stream error: {e}");
                warn!(%peer, protocol, %error, "bad request");
                metrics.inbound_refused(protocol);
                events.emit(NetEvent::BadRequest {
                    peer,
                    protocol,
                    error,
                });
            }
            InboundFailure::Timeout => {
                debug!(%peer, protocol, "inbound request timed out");
                metrics.inbound_refused(protocol);
                events.emit(NetEvent::BadRequest {
                    peer,
                    protocol,
                    error: "timed out".into(),
                });
            }
            other => debug!(%peer, protocol, error = %other, "inbound request not answered"),
        },
        Event::ResponseSent { .. } => {}
    }
    None
}

fn map_outbound(error: OutboundFailure) -> RequestError {
    match error {
        OutboundFailure::DialFailure => RequestError::Unreachable,
        OutboundFailure::Timeout => RequestError::Timeout,
        OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
        OutboundFailure::UnsupportedProtocols => RequestError::UnsupportedProtocol,
        OutboundFailure::Io(e) => RequestError::BadResponse(e.to_string()),
    }
}

/// Sends a response on `rr` and counts it as served; a peer that went away
/// before the answer is only worth a debug line.
fn respond<Req, Resp>(
    rr: &mut super::behaviour::Rr<Req, Resp>,
    channel: libp2p::request_response::ResponseChannel<Resp>,
    response: Resp,
    metrics: &Metrics,
    protocol: &'static str,
    peer: PeerId,
) where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    if rr.send_response(channel, response).is_err() {
        debug!(%peer, protocol, "peer went away before the response");
    } else {
        metrics.inbound_served(protocol);
    }
}
