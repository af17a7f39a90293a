//! The event loop: owns the [`Swarm`], runs the one `select!` loop, executes
//! the [`Command`]s of the [`super::Client`]s, keeps the connection
//! bookkeeping (dials in progress, remote addresses, bans) and reports
//! [`NetEvent`]s through the [`EventSink`] (which never waits).
//!
//! Three rooms hang off it, each an `impl EventLoop` of its own: [`serve`]
//! (every request-response event: answering peers, and the answers to our
//! requests), [`discovery`] (dialing, Kademlia, mDNS, identify) and [`ping`]
//! (closing a connection whose pings stopped being answered). This file
//! only routes events to them; it must not grow protocol answers or
//! discovery policy of its own. Connection slots are decided by the pure
//! [`Slots`] policy; this file only applies its answers (closing the
//! newcomer or the evicted peer).

mod discovery;
mod ping;
mod serve;
#[cfg(feature = "testnet")]
mod testnet;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::InboundRequestId;
use libp2p::{
    metrics::Recorder,
    multiaddr::Protocol,
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, trace, warn};

use self::serve::{PendingReplies, Reply, Served, Server, BLOCK_READERS};
use super::address_book::{AddressBook, Source};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::client::Command;
use super::codec::Inbound;
pub(crate) use super::events::EventSink;
use super::quota::{LogLimiter, Quotas};
use super::redial::Redial;
use super::slots::{Admission, SlotConfig, Slots};
use super::{NetConfig, NetError, NetEvent, RequestError};
use crate::chain::Hash;
use crate::metrics::Metrics;
use crate::protocol::{
    AnnounceRequest, BlockHashRequest, BlocksRequest, GenesisRequest, HeightRequest,
};
use crate::store::Store;

/// Owns the swarm. Spawn [`EventLoop::run`]; it returns when a
/// [`super::Client::shutdown`] arrives or every `Client` is dropped.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: EventSink,
    config: NetConfig,
    server: Server,
    /// Responses computed off the loop come back here to be sent.
    served_tx: mpsc::UnboundedSender<Served>,
    served_rx: mpsc::UnboundedReceiver<Served>,
    pending: PendingReplies,
    pending_dials: HashMap<ConnectionId, Reply<()>>,
    bans: HashMap<PeerId, Instant>,
    /// Remote address of every established connection, per peer.
    peer_addrs: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
    /// Lost peers waiting to be dialed again.
    redial: Redial,
    /// Peers reached before (saved by the node for the next start).
    book: AddressBook,
    /// Why we dialed a peer (or first heard of it), until it connects.
    origins: HashMap<PeerId, Source>,
    /// Where each connected peer came from (for `/peers`).
    sources: HashMap<PeerId, Source>,
    /// libp2p's own metrics (identify, Kademlia, ping, swarm events).
    p2p_metrics: libp2p::metrics::Metrics,
    /// Concord's: inbound requests served and refused.
    metrics: Arc<Metrics>,
    /// Who holds an inbound slot, and whom a newcomer evicts.
    slots: Slots,
    /// Connections refused a slot: closed without telling anyone.
    refused_conns: HashSet<ConnectionId>,
    /// Per-peer request quotas.
    quotas: Quotas,
    /// Peer-triggered warnings, limited.
    log_limit: LogLimiter,
    /// Failed pings in a row per connection, to close a silent one.
    silence: ping::Silence,
    /// A flooding adversary's requests in flight (testnet only).
    #[cfg(feature = "testnet")]
    flood: testnet::Flood,
    /// Inbound responses handed to libp2p and their share of the budget,
    /// until written or failed.
    in_flight: HashMap<(&'static str, InboundRequestId), (PeerId, OwnedSemaphorePermit)>,
}

/// Peer-triggered warnings: at most one per peer and this many in all per
/// [`LOG_WINDOW`]; the rest are summed up in one line per window.
const LOG_PER_WINDOW: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(60);

impl EventLoop {
    pub(crate) fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: EventSink,
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
        #[cfg(feature = "testnet")]
        if let Some(addr) = crate::testnet::advertise() {
            info!(%addr, "testnet: advertising this address instead of the listen addresses");
            swarm.add_external_address(addr.clone());
        }
        let (served_tx, served_rx) = mpsc::unbounded_channel();
        let server = Server {
            store,
            genesis,
            block_readers: Arc::new(Semaphore::new(BLOCK_READERS)),
            budget: Arc::new(Semaphore::new(
                (config.inbound_budget_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS as u64)
                    as usize,
            )),
            #[cfg(feature = "bench")]
            throttle: config.serve_rate_limit.map(super::throttle::Throttle::new),
        };
        let seed = u64::from_le_bytes(
            swarm.local_peer_id().to_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        );
        let slots = Slots::new(SlotConfig {
            max_inbound: config
                .max_established
                .saturating_sub(config.reserved_outbound)
                .max(1) as usize,
            max_inbound_per_range: config.max_inbound_per_range as usize,
            range_prefix_v4: config.range_prefix_v4,
            range_prefix_v6: config.range_prefix_v6,
            range_limit_loopback: config.range_limit_loopback,
            verify_grace: config.eviction_verify_grace,
            idle_after: config.eviction_idle_after,
            protect_each: config.eviction_protect_each,
        });
        let now = std::time::Instant::now();
        let mut event_loop = EventLoop {
            slots,
            refused_conns: HashSet::new(),
            quotas: Quotas::new(config.flood_report_after, LOG_WINDOW),
            log_limit: LogLimiter::new(LOG_WINDOW, LOG_PER_WINDOW, now),
            silence: ping::Silence::new(config.ping_max_failures),
            #[cfg(feature = "testnet")]
            flood: testnet::Flood::default(),
            in_flight: HashMap::new(),
            redial: Redial::new(config.redial_initial, config.redial_max, seed),
            book: AddressBook::new(config.address_book_size),
            origins: HashMap::new(),
            sources: HashMap::new(),
            swarm,
            commands,
            events,
            server,
            served_tx,
            served_rx,
            pending: PendingReplies::default(),
            pending_dials: HashMap::new(),
            bans: HashMap::new(),
            peer_addrs: HashMap::new(),
            config,
            p2p_metrics,
            metrics,
        };
        event_loop.dial_bootstrap();
        Ok(event_loop)
    }

    /// Runs until shutdown. Never panics on anything a peer sends.
    pub async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut discovery = tokio::time::interval(self.config.kad_bootstrap_interval);
        discovery.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut log_summary = tokio::time::interval(LOG_WINDOW);
        log_summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut room = testnet_room();
        loop {
            let redial_at = self.redial.next_due().map(Instant::from_std);
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
                Some(send) = self.served_rx.recv() => send(&mut self),
                _ = sleep_until(redial_at) => self.redial_due(),
                _ = housekeeping.tick() => {
                    self.expire_bans();
                    self.metrics.inbound_budget_in_use(
                        self.config.inbound_budget_bytes.saturating_sub(
                            self.server.budget.available_permits() as u64 * 1024,
                        ),
                    );
                }
                _ = log_summary.tick() => {
                    let suppressed = self.log_limit.take_suppressed();
                    if suppressed > 0 {
                        warn!(suppressed, "peer-triggered warnings suppressed in the last minute (DEBUG has each)");
                    }
                }
                _ = discovery.tick() => self.on_discovery_tick(),
                _ = testnet_due(&mut room) => self.on_testnet_tick(&mut room),
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Height { peer, reply } => self.request(peer, HeightRequest {}, reply),
            Command::Genesis { peer, reply } => self.request(peer, GenesisRequest {}, reply),
            Command::BlockHash {
                peer,
                height,
                reply,
            } => self.request(peer, BlockHashRequest { height }, reply),
            Command::Blocks {
                peer,
                start,
                count,
                reply,
            } => self.request(peer, BlocksRequest { start, count }, reply),
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
                let b = self.swarm.behaviour_mut();
                b.blocked.block_peer(peer);
                b.kad.remove_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                // Never dialed again, nor offered to the next start.
                self.redial.forget(&peer);
                self.book.remove(&peer);
                self.origins.remove(&peer);
                self.metrics.address_book_size(self.book.len());
                self.bans.insert(peer, Instant::now() + duration);
                let _ = reply.send(());
            }
            Command::Dial { addr, reply } => {
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    // Someone chose this address for us: as good as a bootstrap.
                    self.origins.entry(peer).or_insert(Source::Bootstrap);
                }
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
            Command::PeerSources { reply } => {
                let _ = reply.send(self.sources.clone());
            }
            Command::AddressBook { reply } => {
                let _ = reply.send(self.book.entries());
            }
            Command::Known { entries, reply } => {
                self.add_known(entries);
                let _ = reply.send(());
            }
            Command::Standings { standings, reply } => {
                for (peer, standing) in standings {
                    self.slots.standing(&peer, standing);
                }
                let _ = reply.send(());
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
                if num_established.get() == 1
                    && !self.take_slot(peer_id, &addr, endpoint.is_dialer())
                {
                    self.refused_conns.insert(connection_id);
                    self.swarm.close_connection(connection_id);
                    return;
                }
                self.peer_addrs
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, addr.clone());
                if num_established.get() == 1 {
                    info!(peer = %peer_id, %addr, dialer = endpoint.is_dialer(), "peer connected");
                    self.on_peer_connected(peer_id, &addr, endpoint.is_dialer());
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
                self.silence.closed(connection_id);
                if self.refused_conns.remove(&connection_id) {
                    debug!(peer = %peer_id, "refused connection closed");
                    return;
                }
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
                    self.slots.remove(&peer_id);
                    self.quotas.forget(&peer_id);
                    self.in_flight.retain(|_, (p, _)| *p != peer_id);
                    self.on_peer_lost(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(peer) = peer_id {
                    self.on_dial_failed(peer);
                }
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
            BehaviourEvent::Ping(event) => self.on_ping(event),
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Height(event) => self.on_request_response::<HeightRequest>(event),
            BehaviourEvent::Genesis(event) => self.on_request_response::<GenesisRequest>(event),
            BehaviourEvent::BlockHash(event) => self.on_request_response::<BlockHashRequest>(event),
            BehaviourEvent::Blocks(event) => self.on_request_response::<BlocksRequest>(event),
            BehaviourEvent::Announce(event) => self.on_request_response::<AnnounceRequest>(event),
        }
    }
}

impl EventLoop {
    /// A peer's first connection: may it hold a slot? Applies an eviction at
    /// once; `false` means the caller closes the new connection.
    fn take_slot(&mut self, peer: PeerId, addr: &Multiaddr, dialer: bool) -> bool {
        let now = std::time::Instant::now();
        if dialer {
            self.slots.outbound(peer, addr, now);
            return true;
        }
        let protected = self.origins.get(&peer) == Some(&Source::Bootstrap)
            || self
                .config
                .bootstrap
                .iter()
                .any(|a| a.iter().last() == Some(Protocol::P2p(peer)));
        match self.slots.admit_inbound(peer, addr, protected, now) {
            Admission::Admit => true,
            Admission::Evict(victim) => {
                debug!(%victim, newcomer = %peer, "inbound slots full: evicting a peer");
                self.metrics.inbound_evicted();
                let _ = self.swarm.disconnect_peer_id(victim);
                true
            }
            Admission::Refuse(why) => {
                debug!(%peer, %addr, reason = why.name(), "inbound connection refused a slot");
                self.metrics.inbound_slot_refused(why.name());
                false
            }
        }
    }
}

// The testnet room's tick (see `testnet.rs`); without the feature a
// branch that never fires, so `run` has one `select!` either way.
#[cfg(feature = "testnet")]
fn testnet_room() -> testnet::Room {
    testnet::Room::new()
}
#[cfg(feature = "testnet")]
async fn testnet_due(room: &mut testnet::Room) {
    room.due().await
}
#[cfg(not(feature = "testnet"))]
struct NoRoom;
#[cfg(not(feature = "testnet"))]
fn testnet_room() -> NoRoom {
    NoRoom
}
#[cfg(not(feature = "testnet"))]
async fn testnet_due(_: &mut NoRoom) {
    std::future::pending().await
}
#[cfg(not(feature = "testnet"))]
impl EventLoop {
    fn on_testnet_tick(&mut self, _: &mut NoRoom) {}
}

/// Sleeps until `at`, or forever without one (a `select!` branch that is
/// only live while something is scheduled).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
