//! The composed [`NetworkBehaviour`] of a Concord node.

use std::sync::Arc;
use std::time::Duration;

use libp2p::{
    allow_block_list::{self, BlockedPeers},
    connection_limits::{self, ConnectionLimits},
    identify,
    identity::Keypair,
    kad, mdns, ping,
    request_response::{self, ProtocolSupport},
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    StreamProtocol,
};

use super::blocks_wire::BlocksWire;
use super::codec::{Codec, Wire};
use super::read_buffers::ReadBuffers;
use super::NetConfig;
use crate::protocol::{
    limits, AnnounceRequest, AnnounceResponse, BlockHashRequest, BlockHashResponse, BlocksRequest,
    GenesisRequest, GenesisResponse, HeightRequest, HeightResponse, ANNOUNCE_PROTOCOL,
    BLOCKS_PROTOCOL, BLOCK_HASH_PROTOCOL, GENESIS_PROTOCOL, HEIGHT_PROTOCOL,
};

/// Identify's protocol version string (sent inside identify messages).
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/concord/id/1.0.0";
/// Kademlia protocol name: our own DHT, separate from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/concord/kad/1.0.0");

/// Connections allowed past `max_established` while the event loop decides
/// whom a newcomer evicts (or refuses the newcomer).
pub(crate) const EVICTION_SLACK: u32 = 8;

pub(crate) type Rr<Req, Resp> = request_response::Behaviour<Codec<Req, Resp>>;

/// Everything a Concord node speaks. Field order is poll order: limits and
/// bans first so they can deny connections before anything else sees them.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub height: Rr<HeightRequest, HeightResponse>,
    pub genesis: Rr<GenesisRequest, GenesisResponse>,
    pub block_hash: Rr<BlockHashRequest, BlockHashResponse>,
    pub blocks: Rr<BlocksRequest, BlocksWire>,
    pub announce: Rr<AnnounceRequest, AnnounceResponse>,
}

fn rr<Req, Resp>(
    protocol: &'static str,
    response_max: u64,
    timeout: Duration,
    streams: usize,
    buffers: Option<Arc<ReadBuffers>>,
) -> Rr<Req, Resp>
where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned,
    Resp: Wire,
{
    let codec = Codec::default()
        .set_request_size_maximum(limits::MAX_REQUEST_SIZE)
        .set_response_size_maximum(response_max);
    let codec = match buffers {
        Some(buffers) => codec.with_read_buffers(buffers),
        None => codec,
    };
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(protocol), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(streams),
    )
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair, config: &NetConfig) -> std::io::Result<Behaviour> {
        let peer_id = key.public().to_peer_id();

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_periodic_bootstrap_interval(Some(config.kad_bootstrap_interval));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Without this Kademlia stays a client until an external address is
        // confirmed, which never happens on a LAN or in tests: nobody would
        // answer FIND_NODE and discovery would not work.
        kad.set_mode(Some(kad::Mode::Server));

        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };

        let small = config.request_timeout;
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(
                // The slot policy (`slots.rs`) enforces the real limits after
                // a connection is up; the slack lets a newcomer in to evict
                // someone when every slot is taken.
                ConnectionLimits::default()
                    .with_max_established(Some(
                        config.max_established.saturating_add(EVICTION_SLACK),
                    ))
                    .with_max_established_per_peer(Some(config.max_established_per_peer))
                    .with_max_pending_incoming(Some(config.max_established))
                    .with_max_pending_outgoing(Some(config.max_established)),
            ),
            blocked: allow_block_list::Behaviour::default(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_string(), key.public())
                    .with_agent_version(format!("concord/{}", env!("CARGO_PKG_VERSION")))
                    // A node that dials its bootstrap peers before its own
                    // listener is up would otherwise advertise no address until
                    // the next periodic identify (5 min), and the peer could
                    // not add it to Kademlia.
                    .with_push_listen_addr_updates(true)
                    .with_hide_listen_addrs(hide_listen_addrs()),
            ),
            // Failures are counted (and a silent connection closed) by the
            // event loop: libp2p only reports them.
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(config.ping_interval)
                    .with_timeout(config.ping_timeout),
            ),
            kad,
            mdns: mdns.into(),
            height: rr(
                HEIGHT_PROTOCOL,
                limits::MAX_SMALL_RESPONSE_SIZE,
                small,
                32,
                None,
            ),
            genesis: rr(
                GENESIS_PROTOCOL,
                limits::MAX_SMALL_RESPONSE_SIZE,
                small,
                32,
                None,
            ),
            block_hash: rr(
                BLOCK_HASH_PROTOCOL,
                limits::MAX_SMALL_RESPONSE_SIZE,
                small,
                64,
                None,
            ),
            // Each blocks response can be ~4 MiB: 8 in flight per connection
            // bounds the memory a peer can make us hold.
            blocks: rr(
                BLOCKS_PROTOCOL,
                limits::MAX_BLOCKS_RESPONSE_SIZE,
                config.blocks_request_timeout,
                8,
                // Every read buffer is `MAX_BLOCKS_RESPONSE_SIZE`: four idle
                // ones (16 MiB) cover the reads of two peers' two requests
                // each while earlier buffers are still held by imports.
                Some(ReadBuffers::new(4)),
            ),
            announce: rr(
                ANNOUNCE_PROTOCOL,
                limits::MAX_SMALL_RESPONSE_SIZE,
                small,
                16,
                None,
            ),
        })
    }
}

/// Whether identify keeps the listen addresses to itself: only on a testnet
/// node told to advertise another address (`--testnet-advertise`, a relay
/// in front of the listener), which the event loop adds as its external
/// address; identify then sends that one alone.
fn hide_listen_addrs() -> bool {
    #[cfg(feature = "testnet")]
    return crate::testnet::advertise().is_some();
    #[cfg(not(feature = "testnet"))]
    false
}
