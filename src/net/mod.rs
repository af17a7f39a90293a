//! The network: the libp2p swarm, the one event loop that owns it, and the
//! cloneable [`Client`] handle through which the rest of the program uses it
//! (the Client/EventLoop split of rust-libp2p's file-sharing example).
//!
//! Owns: transport (tcp+noise+yamux, optionally QUIC), identify, ping,
//! Kademlia, mDNS, the five request-response protocols, connection limits and
//! bans, the node key file. Serves inbound requests from the
//! [`crate::store::Store`]. Must not decide anything about sync: it executes
//! requests for [`crate::sync`] and reports what happened as [`NetEvent`]s.
//!
//! Use [`new`] to build the three parts, spawn [`EventLoop::run`], keep the
//! [`Client`] and read the [`NetEvents`] receiver.
//!
//! Files: `transport.rs` (the transport stack, [`build_swarm`], also used by
//! the benchmark), `behaviour.rs` (the composed behaviour), `codec.rs`,
//! `client.rs`, `keys.rs`, `events.rs` (the two lanes of [`NetEvent`]s: what
//! must never be lost, and what may be), `redial.rs` (the backoff schedule of
//! lost peers), `address_book.rs` (peers reached before, for the next start),
//! `slots.rs` (who holds an inbound slot), `quota.rs` (request quotas and the
//! log limiter), `stream_cap.rs` (counting the streams libp2p drops over a
//! connection's stream cap), and `event_loop/`: the loop and its commands (`mod.rs`), inbound serving
//! through one generic path (`serve.rs`), discovery (`discovery.rs`) and
//! the closing of silent connections (`ping.rs`).
//! `throttle.rs` exists only with the `bench` feature.
//!
//! Discovery: bootstrap addresses are dialed at start and added to Kademlia
//! (protocol `/concord/kad/1.0.0`, always in server mode). Identify feeds the
//! listen addresses of every peer into Kademlia; a periodic Kademlia bootstrap
//! walks the DHT, and every newly routable peer (and every peer mDNS finds,
//! when enabled) is dialed while we have fewer than
//! [`NetConfig::target_peers`] connected peers. A lost peer (and a bootstrap
//! or address-book peer that could not be reached) is redialed with
//! exponential backoff ([`NetConfig::redial_initial`] to
//! [`NetConfig::redial_max`]) rather than waiting for the discovery tick;
//! banned peers never are.
//!
//! Identify runs on libp2p's fixed stream protocol `/ipfs/id/1.0.0`
//! (libp2p-identify 0.48 cannot rename it); our protocol version string in it is
//! [`IDENTIFY_PROTOCOL_VERSION`] (`/concord/id/1.0.0`). Only peers that list
//! [`KAD_PROTOCOL`] get their listen addresses added to Kademlia.
//!
//! Connection slots (`slots.rs`, a pure policy): `reserved_outbound` of
//! `max_established` are kept for our own dials; when the inbound slots are
//! full a newcomer evicts an unverified, idle or crowded-range peer (useful,
//! fast and long-lived peers are protected, bootstrap peers never evicted),
//! and at most `max_inbound_per_range` inbound peers share an address range.
//! Quotas (`quota.rs`): a token bucket per peer and protocol; refusals are
//! counted, a persistent flooder reported as [`InboundFault::Flooding`], and
//! peer-triggered warnings limited to one per peer per minute.
//!
//! Silent links: every connection is pinged every
//! [`NetConfig::ping_interval`]; after [`NetConfig::ping_max_failures`]
//! pings in a row went unanswered within [`NetConfig::ping_timeout`], the
//! connection is closed (a pulled cable or a stopped peer otherwise stays
//! "connected" until TCP gives up, minutes later), without any penalty.
//!
//! Inbound `/concord/blocks/1` ranges are read on `spawn_blocking` (at most 8
//! at once) and the response is handed back to the loop through a channel.
//! Each one holds its share of [`NetConfig::inbound_budget_bytes`] from before
//! the read until libp2p reports it written or failed; a slow reader is cut
//! at `blocks_request_timeout` and its share freed.
//! Inbound failures caused by the peer (oversize or undecodable request, stream
//! error, timeout) are logged with peer id and protocol and reported as
//! [`NetEvent::BadRequest`]; nothing a peer sends can panic the loop.

pub mod address_book;
mod behaviour;
pub mod blocks_wire;
mod client;
mod codec;
mod event_loop;
mod events;
pub mod keys;
#[cfg(feature = "testnet")]
pub mod misbehave;
mod quota;
mod read_buffers;
pub mod redial;
pub mod slots;
pub mod stream_cap;
#[cfg(feature = "bench")]
mod throttle;
mod transport;

/// The blocks protocol's way of reading a response (into buffers earlier
/// responses used), for the bench's raw-transport ceiling: a ceiling that
/// zeroed a fresh buffer per response would charge the transport for work
/// the node does not do.
#[cfg(feature = "bench")]
pub mod bench_read {
    pub use super::codec::read_lent;
    pub use super::read_buffers::ReadBuffers;
}

use std::sync::Arc;
use std::time::Duration;

pub use address_book::{AddressEntry, Source};
pub use behaviour::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
pub use client::Client;
pub use event_loop::EventLoop;
pub use events::{NetEvents, MAX_PENDING_BAD_REQUESTS};
use libp2p::{identity::Keypair, metrics::Registry, Multiaddr, PeerId};
pub use transport::build_swarm;

use crate::chain::Hash;
use crate::metrics::Metrics;
use crate::store::Store;

/// Why an outbound request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request timed out")]
    Timeout,
    #[error("peer is not connected or the dial failed")]
    Unreachable,
    #[error("connection closed before the response")]
    ConnectionClosed,
    #[error("peer does not support the protocol")]
    UnsupportedProtocol,
    #[error("response could not be decoded or was too large: {0}")]
    BadResponse(String),
    /// The peer closed the stream without a response: it refused the request
    /// (over its quota or budget, a request it found bad, or its own store
    /// failed). Not proof of misbehaviour.
    #[error("the peer refused the request")]
    Refused,
    #[error("network event loop has stopped")]
    Shutdown,
}

/// What the event loop reports to the rest of the program.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// First connection to a peer established.
    PeerConnected { peer: PeerId, addr: Multiaddr },
    /// Last connection to a peer closed.
    PeerDisconnected { peer: PeerId },
    /// A peer pushed a new tip over `/concord/announce/1`.
    TipAnnounced {
        peer: PeerId,
        height: u64,
        tip: Hash,
    },
    /// We listen on a new address.
    NewListenAddr { addr: Multiaddr },
    /// A peer sent us a request we could not serve because of the peer: an
    /// oversize or undecodable request, or a stream that failed or stalled
    /// while we were reading it / answering it. The stream was closed without a
    /// response; the connection stays up (banning is the caller's decision).
    BadRequest {
        peer: PeerId,
        /// Protocol name, e.g. `/concord/blocks/1`.
        protocol: &'static str,
        fault: InboundFault,
        error: String,
    },
}

/// What went wrong with an inbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundFault {
    /// Oversize or undecodable bytes: only the peer can have sent them.
    Malformed,
    /// The stream failed while we read or answered it (the peer may have
    /// given up on its own timeout: not proof of anything).
    Stream,
    /// No request or no answer in time (possibly our own slowness).
    Timeout,
    /// Refused over its request quota so often within a minute that it can
    /// only be flooding (reported once per `flood_report_after` refusals
    /// within a minute, not per request).
    Flooding,
}

/// Network settings. Every field has a documented default
/// ([`NetConfig::default`]).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on. Default: `/ip4/127.0.0.1/tcp/7070`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers dialed at start and added to Kademlia. Each should end in
    /// `/p2p/<peer id>` (without it the address is dialed but cannot seed
    /// Kademlia). Default: none.
    pub bootstrap: Vec<Multiaddr>,
    /// Enable mDNS discovery on the local link. Default: `false`.
    pub mdns: bool,
    /// Most established connections in total, inbound and outbound.
    /// Default: 80.
    pub max_established: u32,
    /// Of `max_established`, how many are kept for connections we dial:
    /// inbound peers may hold at most `max_established - reserved_outbound`
    /// slots (64 by default). Default: 16.
    pub reserved_outbound: u32,
    /// Most inbound peers from one address range (see `range_prefix_v4`);
    /// 0 turns the limit off. Bootstrap peers are exempt. Default: 16.
    pub max_inbound_per_range: u32,
    /// Prefix length of an IPv4 address range. Default: 16.
    pub range_prefix_v4: u8,
    /// Prefix length of an IPv6 address range. Default: 48.
    pub range_prefix_v6: u8,
    /// Apply `max_inbound_per_range` to loopback peers too. Off by default so
    /// that a testnet on 127.0.0.1 works; on, a single host is limited like any
    /// other range. Default: `false`.
    pub range_limit_loopback: bool,
    /// A new inbound peer that has not answered our genesis request with our
    /// genesis within this long is unverified, and the first to be evicted
    /// when a newcomer needs its slot. Default: 10 s.
    pub eviction_verify_grace: Duration,
    /// A verified inbound peer with no request in either direction for this
    /// long is idle, and evicted before busy ones. Default: 120 s.
    pub eviction_idle_after: Duration,
    /// Inbound peers kept by each eviction protection: those that served us
    /// the most blocks, those with the lowest ping, the longest connected.
    /// Default: 4.
    pub eviction_protect_each: usize,
    /// Token bucket of each small protocol (height, genesis, block-hash,
    /// announce), per peer: burst size. Default: 256. An honest node in
    /// sync asks one peer for many votes (block-hash) in bursts: a quota of
    /// 32 and 16/s made seeders ban a syncing follower as a flooder (the
    /// testnet's quick manifest), so the quota sits well above honest use
    /// and still caps a flooder at a few hundred tiny answers a second.
    pub quota_small_burst: u32,
    /// ... and refill rate, requests per second. Default: 128.
    pub quota_small_per_sec: f64,
    /// Token bucket of `/concord/blocks/1` per peer, in bytes served: burst
    /// size. Default: 512 MiB. A request is charged
    /// `quota_blocks_request_bytes` on arrival and the bytes of its response
    /// once built, so many small ranges cost what they serve: counting
    /// requests (64, then 1024 a peer) let seeders ban honest followers
    /// that synced fast in small batches. The byte budget, not this quota,
    /// bounds memory; this shares a seeder's upload among its peers.
    pub quota_blocks_burst_bytes: u64,
    /// ... and refill rate, bytes per second. Default: 256 MiB/s, several
    /// times the most an honest follower drew from one seeder on loopback
    /// (SECURITY.md, *Honest use against the quotas*).
    pub quota_blocks_bytes_per_sec: u64,
    /// What a blocks request costs on arrival, before its response is known
    /// (a bucket without it refuses the request). Default: 64 KiB, so a
    /// flooder of one-block ranges gets at most
    /// `quota_blocks_bytes_per_sec / 64 KiB` requests a second.
    pub quota_blocks_request_bytes: u64,
    /// A peer refused this many requests over quota within a minute is
    /// reported as a flooder (penalized by sync like a bad request; twice
    /// bans it), and again for each further this many within a minute: a
    /// persistent flooder is banned after twice this many refusals, in
    /// seconds. Honest peers are never refused (the quotas sit 20x above
    /// honest use, SECURITY.md). Default: 256.
    pub flood_report_after: u32,
    /// Bytes of inbound responses in flight at once (being read from the
    /// store, queued or being written), over all peers. A blocks request
    /// reserves twice the largest response (the response and its encoding)
    /// before it is read, keeps twice what it really holds, and releases it
    /// when the response is written or the stream fails or times out; a
    /// request that finds the budget spent is refused. Default: 96 MiB.
    pub inbound_budget_bytes: u64,
    /// Most established connections to one peer. Default: 2 (simultaneous
    /// dials from both sides may briefly create two).
    pub max_established_per_peer: u32,
    /// Timeout of the small requests (height, genesis, block-hash, announce).
    /// libp2p's timeout covers the whole exchange including the responder's
    /// processing. Default: 5 s.
    pub request_timeout: Duration,
    /// Timeout of a `/concord/blocks/1` request: up to ~4 MiB of response plus
    /// the responder's store read. Default: 10 s.
    pub blocks_request_timeout: Duration,
    /// How long a connection without any open stream is kept. Sync opens
    /// streams intermittently, so this is far longer than libp2p's 10 s
    /// default. Default: 120 s.
    pub idle_connection_timeout: Duration,
    /// How often each connection is pinged (libp2p ping; both ends ping).
    /// Default: 2 s. A ping is one 32-byte exchange on an open stream; 50
    /// nodes with a dozen connections each send a few hundred a second in
    /// all.
    pub ping_interval: Duration,
    /// How long a ping may take before it failed. Default: 5 s.
    pub ping_timeout: Duration,
    /// Pings failed in a row (timed out or broken) after which the
    /// connection is closed as silent: a pulled cable, a blackholed route, a
    /// stopped process, where TCP stays "up" and nothing answers. Logged,
    /// counted in `concord_silent_connections_closed_total`, never penalized
    /// (a link fault is not misbehaviour); the peer is redialed like any
    /// lost peer. An answered ping starts the count again; a peer that does
    /// not speak ping is never closed for it. At least 2: libp2p reports a
    /// failure only from the second in a row on. Default: 2.
    ///
    /// With the defaults a silent link is closed 17 to 19 s after it went
    /// quiet: the ping in flight times out (`ping_timeout`), and
    /// `ping_interval` later libp2p opens a new ping stream whose
    /// negotiation it gives 10 s (fixed in libp2p-ping 0.48), which fails
    /// too (measured: 16.8 s in the testnet's `partition` manifest). An
    /// honest peer is closed only if one connection leaves a ping
    /// unanswered for 5 s and, 2 s later, the next one too: at least 12 s
    /// without a word on that connection, where 960 pings in that run
    /// (load average 7 on 2 cores) took 36 ms at most. A link whose queue holds a pong back longer
    /// (a slow link saturated by block downloads) needs a longer timeout.
    pub ping_max_failures: u32,
    /// Discovery dials new peers while fewer than this many are connected.
    /// Default: 8.
    pub target_peers: usize,
    /// Interval of Kademlia bootstrap (random walk) and of the discovery
    /// check that dials known-but-unconnected peers. Default: 30 s.
    pub kad_bootstrap_interval: Duration,
    /// Capacity of the bulk lane of [`NetEvents`] (pushed tips, which are also
    /// polled). The event loop never waits on it: when it is full, a tip
    /// announcement is dropped with a WARN log. Connections, disconnections
    /// and bad requests take the lossless lane, which is bounded by the peers
    /// instead (see `events.rs`). Default: 1024.
    pub event_channel_capacity: usize,
    /// First delay before a lost peer is redialed; it doubles per failed dial
    /// (jittered to 50–100 %). Default: 1 s.
    pub redial_initial: Duration,
    /// Longest delay between redials of a lost peer. Default: 60 s.
    pub redial_max: Duration,
    /// Most peers kept in the address book (the worst, then the oldest, are
    /// evicted). Default: 1000.
    pub address_book_size: usize,
    /// Serve `/concord/blocks/1` responses at no more than this many bytes per
    /// second (of encoded blocks), to play a slow seeder. Only with the `bench`
    /// feature (the benchmark and tests): a node binary cannot throttle itself.
    /// Default: `None` (no limit).
    #[cfg(feature = "bench")]
    pub serve_rate_limit: Option<u64>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/7070"
                .parse()
                .expect("valid literal multiaddr")],
            bootstrap: Vec::new(),
            mdns: false,
            max_established: 80,
            reserved_outbound: 16,
            max_inbound_per_range: 16,
            range_prefix_v4: 16,
            range_prefix_v6: 48,
            range_limit_loopback: false,
            eviction_verify_grace: Duration::from_secs(10),
            eviction_idle_after: Duration::from_secs(120),
            eviction_protect_each: 4,
            quota_small_burst: 256,
            quota_small_per_sec: 128.0,
            quota_blocks_burst_bytes: 512 * 1024 * 1024,
            quota_blocks_bytes_per_sec: 256 * 1024 * 1024,
            quota_blocks_request_bytes: 64 * 1024,
            flood_report_after: 256,
            inbound_budget_bytes: 96 * 1024 * 1024,
            max_established_per_peer: 2,
            request_timeout: Duration::from_secs(5),
            blocks_request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(2),
            ping_timeout: Duration::from_secs(5),
            ping_max_failures: 2,
            target_peers: 8,
            kad_bootstrap_interval: Duration::from_secs(30),
            event_channel_capacity: 1024,
            redial_initial: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            address_book_size: 1000,
            #[cfg(feature = "bench")]
            serve_rate_limit: None,
        }
    }
}

/// Errors building the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot build the transport: {0}")]
    Transport(String),
    #[error("cannot start mDNS: {0}")]
    Mdns(std::io::Error),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// Builds the swarm (listening on `config.listen_addrs`, bootstrap dials
/// queued) and returns the handle, the event receiver and the loop to spawn.
///
/// `store` is served to peers; `genesis` is the hash answered on
/// `/concord/genesis/1`.
///
/// Its metrics go to a private registry; use [`new_with_metrics`] to expose them.
pub fn new(
    key: Keypair,
    config: NetConfig,
    store: Store,
    genesis: Hash,
) -> Result<(Client, NetEvents, EventLoop), NetError> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    new_with_metrics(key, config, store, genesis, &mut registry, metrics)
}

/// [`new`], registering libp2p's metrics (bandwidth, identify, Kademlia,
/// ping, swarm) in `registry` and counting inbound requests in `metrics`.
pub fn new_with_metrics(
    key: Keypair,
    config: NetConfig,
    store: Store,
    genesis: Hash,
    registry: &mut Registry,
    metrics: Arc<Metrics>,
) -> Result<(Client, NetEvents, EventLoop), NetError> {
    let local_peer_id = key.public().to_peer_id();
    let behaviour = behaviour::Behaviour::new(&key, &config).map_err(NetError::Mdns)?;
    let swarm = build_swarm(key, behaviour, config.idle_connection_timeout, registry)?;
    let p2p_metrics = libp2p::metrics::Metrics::new(registry);
    let (command_tx, command_rx) = tokio::sync::mpsc::channel(256);
    let (event_tx, event_rx) = events::channel(config.event_channel_capacity);
    let event_loop = EventLoop::new(
        swarm,
        command_rx,
        event_tx,
        store,
        genesis,
        config,
        (p2p_metrics, metrics),
    )?;
    Ok((Client::new(command_tx, local_peer_id), event_rx, event_loop))
}
