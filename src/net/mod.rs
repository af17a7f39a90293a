//! The network: the libp2p swarm, the one event loop that owns it, and the
//! cloneable [`Client`] handle through which the rest of the program uses it
//! (the Client/EventLoop split of rust-libp2p's file-sharing example).
//!
//! Owns: transport (tcp+noise+yamux), identify, ping, Kademlia, mDNS, the five
//! request-response protocols, connection limits and bans, the node key file.
//! Serves inbound requests from the [`crate::store::Store`]. Must not decide
//! anything about sync: it executes requests for [`crate::sync`] and reports
//! what happened as [`NetEvent`]s.
//!
//! STUB: API fixed here, bodies to be written.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::chain::Hash;
use crate::protocol::{BlockHashResponse, BlocksResponse, GenesisResponse, HeightResponse};

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
    TipAnnounced { peer: PeerId, height: u64, tip: Hash },
    /// We listen on a new address.
    NewListenAddr { addr: Multiaddr },
}

/// Cloneable handle to the event loop. Every method sends a command with a
/// oneshot reply and awaits it; none blocks the event loop.
#[derive(Clone)]
pub struct Client { /* mpsc::Sender<Command> */ }

impl Client {
    pub fn local_peer_id(&self) -> PeerId { todo!() }
    pub async fn request_height(&self, peer: PeerId) -> Result<HeightResponse, RequestError> { todo!() }
    pub async fn request_genesis(&self, peer: PeerId) -> Result<GenesisResponse, RequestError> { todo!() }
    pub async fn request_block_hash(&self, peer: PeerId, height: u64) -> Result<BlockHashResponse, RequestError> { todo!() }
    pub async fn request_blocks(&self, peer: PeerId, start: u64, count: u32) -> Result<BlocksResponse, RequestError> { todo!() }
    /// Push our new tip to every connected peer (fire and forget).
    pub async fn announce_tip(&self, height: u64, tip: Hash) { todo!() }
    /// Disconnect `peer` and refuse it for `duration`.
    pub async fn ban(&self, peer: PeerId, duration: Duration) { todo!() }
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), RequestError> { todo!() }
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> { todo!() }
    pub async fn connected_peers(&self) -> Vec<PeerId> { todo!() }
    /// Stop the event loop (closes connections).
    pub async fn shutdown(&self) { todo!() }
}
