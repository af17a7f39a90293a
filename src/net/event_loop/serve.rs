//! Inbound serving: the one path every Concord request-response event takes,
//! and what each of the five protocols answers.
//!
//! Owns: answering valid requests (cheap store reads on the loop, blocks
//! ranges off it, at most [`BLOCK_READERS`] at once), refusing what a peer got
//! wrong (counted, reported as [`NetEvent::BadRequest`]), counting what was
//! served; the per-peer quotas (a request over quota is refused, counted,
//! and a persistent flooder reported as [`InboundFault::Flooding`]) and the
//! inbound byte budget (a blocks response holds its share from before the
//! store read until it is written, or the stream fails or times out).
//! Peer-triggered warnings go through the loop's log limiter. What our own
//! requests got back is credited to the peer's slot (`slots.rs`). libp2p delivers the responses to our own requests on the same
//! event, so handing those to the waiting caller is here too. Must not touch
//! connections, bans or discovery, and decides nothing about sync: an
//! announced tip is only reported.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use libp2p::request_response::{
    self, InboundFailure, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::PeerId;
use serde::{de::DeserializeOwned, Serialize};

use crate::net::blocks_wire::{self, BlocksWire};
use crate::net::codec::Wire;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, trace, warn};

use super::{EventLoop, EventSink};
use crate::chain::Hash;
use crate::net::behaviour::{Behaviour, Rr};
use crate::net::codec::Inbound;
use crate::net::quota::{Rate, Verdict};
use crate::net::{InboundFault, NetConfig, NetEvent, RequestError};
use crate::protocol::{
    limits, AnnounceRequest, AnnounceResponse, BlockHashRequest, BlockHashResponse, BlocksRequest,
    GenesisRequest, GenesisResponse, HeightRequest, HeightResponse, ANNOUNCE_PROTOCOL,
    BLOCKS_PROTOCOL, BLOCK_HASH_PROTOCOL, GENESIS_PROTOCOL, HEIGHT_PROTOCOL,
};
use crate::store::Store;

/// Most `/concord/blocks/1` store reads in flight at once.
pub(super) const BLOCK_READERS: usize = 8;

pub(super) type Reply<T> = oneshot::Sender<Result<T, RequestError>>;
type Pending<T> = HashMap<OutboundRequestId, Reply<T>>;
type RrEvent<Req, Resp> = request_response::Event<Inbound<Req>, Resp>;

/// A response computed off the loop: the loop runs it to send the response.
pub(super) type Served = Box<dyn FnOnce(&mut EventLoop) + Send>;

/// Bytes are counted against the inbound budget in units of this many.
const BUDGET_UNIT: u64 = 1024;

/// What a response to one of our requests says about the peer (for its slot).
pub(super) enum Credit {
    /// It answered; the weight is how much it served (blocks, or 1).
    Served(u64),
    /// It answered our genesis request with our genesis.
    Verified,
}

/// Callers waiting for the responses to our own requests, per protocol.
#[derive(Default)]
pub(super) struct PendingReplies {
    height: Pending<HeightResponse>,
    genesis: Pending<GenesisResponse>,
    block_hash: Pending<BlockHashResponse>,
    blocks: Pending<BlocksWire>,
    /// Announce answers are ignored; the map only exists for the generic path.
    announce: Pending<AnnounceResponse>,
}

/// What serving reads: the store, the genesis we answer, and the limits on
/// off-loop reads.
pub(super) struct Server {
    pub(super) store: Store,
    pub(super) genesis: Hash,
    /// Limits concurrent blocks-range reads (memory and blocking threads).
    pub(super) block_readers: Arc<Semaphore>,
    /// The inbound byte budget, in [`BUDGET_UNIT`]s.
    pub(super) budget: Arc<Semaphore>,
    #[cfg(feature = "bench")]
    pub(super) throttle: Option<crate::net::throttle::Throttle>,
}

/// How a valid request is answered.
pub(super) enum Answer<Resp> {
    /// Computed on the loop: a point read at most.
    Now(Resp),
    /// Computed off the loop; `None` means no answer (logged by the work).
    Later(BoxFuture<'static, Option<Resp>>),
    /// No answer: dropping the channel closes the stream (logged already).
    Nothing,
}

/// One Concord protocol as the serving path sees it, implemented on its
/// request type.
pub(super) trait Protocol: Sized + Send + Serialize + DeserializeOwned + 'static {
    type Response: Wire + 'static;
    const NAME: &'static str;
    /// Bytes a response may hold before it is built (0: not budgeted, the
    /// small protocols answer in a few dozen bytes).
    const RESERVE: u64 = 0;
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response>;
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response>;
    fn answer(self, peer: PeerId, server: &Server, events: &EventSink) -> Answer<Self::Response>;
    /// This protocol's per-peer quota.
    fn quota(config: &NetConfig) -> Rate {
        Rate {
            burst: f64::from(config.quota_small_burst),
            per_sec: config.quota_small_per_sec,
        }
    }
    /// What a request costs against the quota on arrival.
    fn arrival_cost(_config: &NetConfig) -> f64 {
        1.0
    }
    /// What a built response costs against the quota on top of that.
    fn response_cost(_response: &Self::Response) -> f64 {
        0.0
    }
    /// What an answer to our request tells about the peer.
    fn credit(_response: &Self::Response, _genesis: &Hash) -> Option<Credit> {
        Some(Credit::Served(1))
    }
    /// Bytes a built response really holds (for the budget).
    fn held(_response: &Self::Response) -> u64 {
        0
    }
}

impl Protocol for HeightRequest {
    type Response = HeightResponse;
    const NAME: &'static str = HEIGHT_PROTOCOL;
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response> {
        &mut b.height
    }
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response> {
        &mut p.height
    }
    fn answer(self, _: PeerId, server: &Server, _: &EventSink) -> Answer<HeightResponse> {
        let tip = server.store.tip();
        Answer::Now(HeightResponse {
            height: tip.height,
            tip: tip.hash,
        })
    }
}

impl Protocol for GenesisRequest {
    type Response = GenesisResponse;
    const NAME: &'static str = GENESIS_PROTOCOL;
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response> {
        &mut b.genesis
    }
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response> {
        &mut p.genesis
    }
    fn answer(self, _: PeerId, server: &Server, _: &EventSink) -> Answer<GenesisResponse> {
        Answer::Now(GenesisResponse {
            genesis: server.genesis,
        })
    }
    fn credit(response: &GenesisResponse, genesis: &Hash) -> Option<Credit> {
        // Another genesis earns nothing here; sync refuses and bans the peer.
        (response.genesis == *genesis).then_some(Credit::Verified)
    }
}

impl Protocol for BlockHashRequest {
    type Response = BlockHashResponse;
    const NAME: &'static str = BLOCK_HASH_PROTOCOL;
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response> {
        &mut b.block_hash
    }
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response> {
        &mut p.block_hash
    }
    fn answer(self, peer: PeerId, server: &Server, _: &EventSink) -> Answer<BlockHashResponse> {
        // A point read of a 32-byte value: cheap enough for the loop.
        match server.store.hash_at(self.height) {
            Ok(hash) => Answer::Now(BlockHashResponse {
                height: self.height,
                hash,
            }),
            Err(e) => {
                warn!(%peer, protocol = Self::NAME, error = %e, "store read failed");
                Answer::Nothing
            }
        }
    }
}

impl Protocol for BlocksRequest {
    type Response = BlocksWire;
    const NAME: &'static str = BLOCKS_PROTOCOL;
    const RESERVE: u64 = limits::MAX_BLOCKS_RESPONSE_SIZE;
    /// In bytes: what a peer may draw from our upload, not how often it asks.
    fn quota(config: &NetConfig) -> Rate {
        Rate {
            burst: config.quota_blocks_burst_bytes as f64,
            per_sec: config.quota_blocks_bytes_per_sec as f64,
        }
    }
    fn arrival_cost(config: &NetConfig) -> f64 {
        config.quota_blocks_request_bytes as f64
    }
    fn response_cost(response: &BlocksWire) -> f64 {
        Self::held(response) as f64
    }
    fn credit(response: &BlocksWire, _: &Hash) -> Option<Credit> {
        Some(Credit::Served(response.count()))
    }
    fn held(response: &BlocksWire) -> u64 {
        response.held()
    }
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response> {
        &mut b.blocks
    }
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response> {
        &mut p.blocks
    }
    fn answer(self, peer: PeerId, server: &Server, _: &EventSink) -> Answer<BlocksWire> {
        let count = self.count.min(limits::MAX_BLOCKS_PER_REQUEST);
        let start = self.start;
        let store = server.store.clone();
        let readers = server.block_readers.clone();
        #[cfg(feature = "bench")]
        let throttle = server.throttle.clone();
        Answer::Later(Box::pin(async move {
            // At most BLOCK_READERS ranges (~4 MiB each) are read at once,
            // whatever the number of peers asking.
            let _permit = readers.acquire_owned().await.ok()?;
            // Reading up to 4 MiB from the store must not stall the loop.
            // The stored encodings are sent as they are (CRC-checked, not
            // decoded): see `blocks_wire`.
            let read = tokio::task::spawn_blocking(move || {
                store.blocks_encoded(
                    start,
                    count,
                    limits::RESPONSE_BYTE_BUDGET,
                    blocks_wire::HEADROOM,
                )
            })
            .await;
            match read {
                Ok(Ok(stored)) => {
                    let response = BlocksWire::from_stored(stored);
                    #[cfg(feature = "bench")]
                    if let Some(t) = throttle {
                        t.wait(response.held()).await;
                    }
                    trace!(%peer, start, n = response.count(), "serving blocks");
                    Some(response)
                }
                Ok(Err(e)) => {
                    warn!(%peer, protocol = Self::NAME, error = %e, "store read failed");
                    None
                }
                Err(e) => {
                    warn!(%peer, protocol = Self::NAME, error = %e, "store read task failed");
                    None
                }
            }
        }))
    }
}

impl Protocol for AnnounceRequest {
    type Response = AnnounceResponse;
    const NAME: &'static str = ANNOUNCE_PROTOCOL;
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self, Self::Response> {
        &mut b.announce
    }
    fn pending(p: &mut PendingReplies) -> &mut Pending<Self::Response> {
        &mut p.announce
    }
    fn answer(self, peer: PeerId, _: &Server, events: &EventSink) -> Answer<AnnounceResponse> {
        debug!(%peer, height = self.height, tip = %self.tip, "tip announced");
        events.emit(NetEvent::TipAnnounced {
            peer,
            height: self.height,
            tip: self.tip,
        });
        Answer::Now(AnnounceResponse {})
    }
}

impl EventLoop {
    /// Sends a request of protocol `P` and remembers who waits for the answer.
    pub(super) fn request<P: Protocol>(
        &mut self,
        peer: PeerId,
        request: P,
        reply: Reply<P::Response>,
    ) {
        let id =
            P::behaviour(self.swarm.behaviour_mut()).send_request(&peer, Inbound::Valid(request));
        P::pending(&mut self.pending).insert(id, reply);
    }

    /// Every request-response event of protocol `P`, in both directions.
    pub(super) fn on_request_response<P: Protocol>(&mut self, event: RrEvent<P, P::Response>) {
        use request_response::{Event, Message};
        let protocol = P::NAME;
        let now = std::time::Instant::now();
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request,
                        channel,
                        request_id,
                    },
                ..
            } => match request {
                Inbound::Valid(request) => {
                    let verdict = self.quotas.check(
                        peer,
                        protocol,
                        P::quota(&self.config),
                        P::arrival_cost(&self.config),
                        now,
                    );
                    self.observe_quota(protocol);
                    match verdict {
                        Verdict::Serve => self.serve(peer, request, channel, request_id),
                        verdict => {
                            // `channel` is dropped: the stream closes without a response.
                            self.metrics.inbound_over_quota(protocol);
                            if verdict == Verdict::RefuseAndReport {
                                self.peer_warn(peer, protocol, "flooding: requests over quota");
                                self.refused(
                                    peer,
                                    protocol,
                                    InboundFault::Flooding,
                                    "requests over quota".into(),
                                );
                            } else {
                                trace!(%peer, protocol, "request over quota refused");
                            }
                        }
                    }
                }
                Inbound::Empty => {
                    // `channel` is dropped: the stream closes without a response.
                    self.metrics.inbound_refused(protocol);
                    debug!(%peer, protocol, "empty request (given up by the requester) refused");
                }
                Inbound::Invalid(error) => {
                    self.peer_warn(peer, protocol, &format!("bad request: {error}"));
                    // `channel` is dropped: the stream closes without a response.
                    self.refused(peer, protocol, InboundFault::Malformed, error);
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
            } => {
                match P::credit(&response, &self.server.genesis) {
                    Some(Credit::Verified) => self.slots.verified(&peer, now),
                    Some(Credit::Served(weight)) => self.slots.served(&peer, weight, now),
                    None => {}
                }
                match P::pending(&mut self.pending).remove(&request_id) {
                    Some(reply) => {
                        let _ = reply.send(Ok(response));
                    }
                    None => {
                        trace!(%peer, protocol, "response without a waiting caller");
                        #[cfg(feature = "testnet")]
                        self.flood_request_done(protocol, peer, request_id);
                    }
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => match P::pending(&mut self.pending).remove(&request_id) {
                Some(reply) => {
                    debug!(%peer, protocol, %error, "outbound request failed");
                    let _ = reply.send(Err(map_outbound(error)));
                }
                None => {
                    trace!(%peer, protocol, %error, "outbound request without a waiting caller failed");
                    #[cfg(feature = "testnet")]
                    self.flood_request_done(protocol, peer, request_id);
                }
            },
            Event::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                // Whatever happened, the response's share of the budget is free.
                self.in_flight.remove(&(protocol, request_id));
                match error {
                    InboundFailure::Io(e) => {
                        let error = format!("stream error: {e}");
                        self.peer_warn(peer, protocol, &error);
                        self.refused(peer, protocol, InboundFault::Stream, error);
                    }
                    InboundFailure::Timeout => {
                        debug!(%peer, protocol, "inbound request timed out");
                        self.refused(peer, protocol, InboundFault::Timeout, "timed out".into());
                    }
                    other => {
                        debug!(%peer, protocol, error = %other, "inbound request not answered")
                    }
                }
            }
            Event::ResponseSent { request_id, .. } => {
                self.in_flight.remove(&(protocol, request_id));
            }
        }
    }

    /// Publishes how close peers came to `protocol`'s quota.
    fn observe_quota(&self, protocol: &'static str) {
        if let Some(peak) = self.quotas.peak(protocol) {
            self.metrics
                .inbound_quota_peak(protocol, peak.per_sec, peak.low_water);
        }
    }

    /// A warning caused by a peer, through the log limiter (the rest are
    /// DEBUG lines and summed up once a minute).
    fn peer_warn(&mut self, peer: PeerId, protocol: &'static str, what: &str) {
        if self.log_limit.allow(peer, std::time::Instant::now()) {
            warn!(%peer, protocol, "{what}");
        } else {
            debug!(%peer, protocol, "{what}");
        }
    }

    fn serve<P: Protocol>(
        &mut self,
        peer: PeerId,
        request: P,
        channel: ResponseChannel<P::Response>,
        request_id: InboundRequestId,
    ) {
        #[cfg(feature = "testnet")]
        if crate::net::misbehave::stalls(P::NAME) {
            return crate::net::misbehave::hold(channel);
        }
        self.slots.active(&peer, std::time::Instant::now());
        let permit = if P::RESERVE > 0 {
            let units = P::RESERVE.div_ceil(BUDGET_UNIT) as u32;
            match self.server.budget.clone().try_acquire_many_owned(units) {
                Ok(permit) => Some(permit),
                Err(_) => {
                    // `channel` is dropped: the stream closes without a response.
                    self.metrics.inbound_over_budget(P::NAME);
                    trace!(%peer, protocol = P::NAME, "inbound budget spent, request refused");
                    return;
                }
            }
        } else {
            None
        };
        match request.answer(peer, &self.server, &self.events) {
            Answer::Now(response) => {
                respond::<P>(self, peer, channel, response, request_id, permit)
            }
            Answer::Later(work) => {
                let served = self.served_tx.clone();
                tokio::spawn(async move {
                    if let Some(response) = work.await {
                        let permit = permit.map(|p| shrink(p, P::held(&response)));
                        let send: Served = Box::new(move |event_loop| {
                            respond::<P>(event_loop, peer, channel, response, request_id, permit)
                        });
                        let _ = served.send(send);
                    }
                });
            }
            Answer::Nothing => {}
        }
    }

    /// A request the peer got wrong: counted and reported, never answered.
    fn refused(&self, peer: PeerId, protocol: &'static str, fault: InboundFault, error: String) {
        self.metrics.inbound_refused(protocol);
        self.events.emit(NetEvent::BadRequest {
            peer,
            protocol,
            fault,
            error,
        });
    }
}

/// Gives back the part of a reservation that a built response does not use.
fn shrink(mut permit: OwnedSemaphorePermit, held: u64) -> OwnedSemaphorePermit {
    let keep = held.div_ceil(BUDGET_UNIT).max(1) as usize;
    if permit.num_permits() > keep {
        drop(permit.split(permit.num_permits() - keep));
    }
    permit
}

fn map_outbound(error: OutboundFailure) -> RequestError {
    match error {
        OutboundFailure::DialFailure => RequestError::Unreachable,
        OutboundFailure::Timeout => RequestError::Timeout,
        OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
        OutboundFailure::UnsupportedProtocols => RequestError::UnsupportedProtocol,
        OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            RequestError::Refused
        }
        OutboundFailure::Io(e) => RequestError::BadResponse(e.to_string()),
    }
}

/// Sends a response and counts it as served, keeping its share of the
/// budget until libp2p reports it written (or failed); a peer that went away
/// before the answer is only worth a debug line.
fn respond<P: Protocol>(
    event_loop: &mut EventLoop,
    peer: PeerId,
    channel: ResponseChannel<P::Response>,
    response: P::Response,
    request_id: InboundRequestId,
    permit: Option<OwnedSemaphorePermit>,
) {
    #[cfg(feature = "testnet")]
    let response = crate::net::misbehave::twist(response);
    let cost = P::response_cost(&response);
    if cost > 0.0 {
        let rate = P::quota(&event_loop.config);
        let now = std::time::Instant::now();
        event_loop.quotas.charge(peer, P::NAME, rate, cost, now);
        event_loop.observe_quota(P::NAME);
    }
    if P::behaviour(event_loop.swarm.behaviour_mut())
        .send_response(channel, response)
        .is_err()
    {
        debug!(%peer, protocol = P::NAME, "peer went away before the response");
    } else {
        event_loop.metrics.inbound_served(P::NAME);
        if let Some(permit) = permit {
            event_loop
                .in_flight
                .insert((P::NAME, request_id), (peer, permit));
        }
    }
}
