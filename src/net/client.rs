//! The cloneable handle to the event loop.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::address_book::{AddressEntry, Source};
use super::blocks_wire::{BlocksWire, ReceivedBlocks};
use super::slots::Standing;
use super::RequestError;
use crate::chain::Hash;
use crate::protocol::{BlockHashResponse, BlocksResponse, GenesisResponse, HeightResponse};

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What a [`Client`] asks the event loop to do.
#[derive(Debug)]
pub(crate) enum Command {
    Height {
        peer: PeerId,
        reply: Reply<HeightResponse>,
    },
    Genesis {
        peer: PeerId,
        reply: Reply<GenesisResponse>,
    },
    BlockHash {
        peer: PeerId,
        height: u64,
        reply: Reply<BlockHashResponse>,
    },
    Blocks {
        peer: PeerId,
        start: u64,
        count: u32,
        reply: Reply<BlocksWire>,
    },
    Announce {
        height: u64,
        tip: Hash,
        reply: oneshot::Sender<()>,
    },
    Ban {
        peer: PeerId,
        duration: Duration,
        reply: oneshot::Sender<()>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    PeerAddresses {
        reply: oneshot::Sender<HashMap<PeerId, Vec<Multiaddr>>>,
    },
    PeerSources {
        reply: oneshot::Sender<HashMap<PeerId, Source>>,
    },
    AddressBook {
        reply: oneshot::Sender<Vec<AddressEntry>>,
    },
    Known {
        entries: Vec<AddressEntry>,
        reply: oneshot::Sender<()>,
    },
    Standings {
        standings: Vec<(PeerId, Standing)>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Cloneable handle to the event loop. Every method sends a command with a
/// oneshot reply and awaits it; none blocks the event loop. Once the loop has
/// stopped, requests fail with [`RequestError::Shutdown`] and the other
/// methods return empty/unit values.
#[derive(Clone)]
pub struct Client {
    sender: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Client {
    pub(crate) fn new(sender: mpsc::Sender<Command>, local_peer_id: PeerId) -> Client {
        Client {
            sender,
            local_peer_id,
        }
    }

    /// Sends a command and waits for its reply; `None` if the loop is gone.
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.sender.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, RequestError> {
        self.call(make).await.unwrap_or(Err(RequestError::Shutdown))
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    pub async fn request_height(&self, peer: PeerId) -> Result<HeightResponse, RequestError> {
        self.request(|reply| Command::Height { peer, reply }).await
    }

    pub async fn request_genesis(&self, peer: PeerId) -> Result<GenesisResponse, RequestError> {
        self.request(|reply| Command::Genesis { peer, reply }).await
    }

    pub async fn request_block_hash(
        &self,
        peer: PeerId,
        height: u64,
    ) -> Result<BlockHashResponse, RequestError> {
        self.request(|reply| Command::BlockHash {
            peer,
            height,
            reply,
        })
        .await
    }

    /// Asks for blocks `start..start+count`. The answer may hold fewer blocks
    /// (byte budget, the peer's tip, `count` above
    /// [`crate::protocol::limits::MAX_BLOCKS_PER_REQUEST`]); ask again from
    /// where it stopped.
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        start: u64,
        count: u32,
    ) -> Result<BlocksResponse, RequestError> {
        let received = self.request_blocks_received(peer, start, count).await?;
        Ok(BlocksResponse {
            blocks: received.blocks,
        })
    }

    /// [`Client::request_blocks`], with the blocks' encodings as received
    /// (for storing them as they came: see [`super::blocks_wire`]).
    pub async fn request_blocks_received(
        &self,
        peer: PeerId,
        start: u64,
        count: u32,
    ) -> Result<ReceivedBlocks, RequestError> {
        let wire = self
            .request(|reply| Command::Blocks {
                peer,
                start,
                count,
                reply,
            })
            .await?;
        match wire {
            BlocksWire::Received(received) => Ok(received),
            // The codec only ever reads `Received`; decoding covers the rest.
            encoded @ BlocksWire::Encoded { .. } => Ok(ReceivedBlocks {
                blocks: encoded.into_blocks().map_err(RequestError::BadResponse)?,
                encoded: None,
            }),
        }
    }

    /// Push our new tip to every connected peer (fire and forget: returns once
    /// the requests are queued; answers and failures are only logged).
    pub async fn announce_tip(&self, height: u64, tip: Hash) {
        self.call(|reply| Command::Announce { height, tip, reply })
            .await;
    }

    /// Disconnect `peer` and refuse it for `duration`.
    pub async fn ban(&self, peer: PeerId, duration: Duration) {
        self.call(|reply| Command::Ban {
            peer,
            duration,
            reply,
        })
        .await;
    }

    /// What sync now thinks of these peers, for the choice of whom to evict
    /// when the inbound slots are full (see `slots.rs`).
    pub async fn peer_standings(&self, standings: Vec<(PeerId, Standing)>) {
        self.call(|reply| Command::Standings { standings, reply })
            .await;
    }

    /// Dials `addr` and waits until the connection is established or failed.
    /// An address with `/p2p/<peer id>` is checked against the remote's key.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), RequestError> {
        self.request(|reply| Command::Dial { addr, reply }).await
    }

    /// Addresses we currently listen on (without `/p2p/…`).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Peers with at least one established connection.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        self.call(|reply| Command::ConnectedPeers { reply })
            .await
            .unwrap_or_default()
    }

    /// Remote addresses of the established connections, per connected peer
    /// (the address we dialed, or the one an inbound connection came from).
    pub async fn peer_addresses(&self) -> HashMap<PeerId, Vec<Multiaddr>> {
        self.call(|reply| Command::PeerAddresses { reply })
            .await
            .unwrap_or_default()
    }

    /// Where each connected peer came from.
    pub async fn peer_sources(&self) -> HashMap<PeerId, Source> {
        self.call(|reply| Command::PeerSources { reply })
            .await
            .unwrap_or_default()
    }

    /// The address book, best entries first (empty once the loop stopped).
    pub async fn address_book(&self) -> Vec<AddressEntry> {
        self.call(|reply| Command::AddressBook { reply })
            .await
            .unwrap_or_default()
    }

    /// Peers known from an earlier run (the saved address book): entered in
    /// the book and Kademlia and dialed now, with backoff if unreachable.
    /// Entries of banned peers are skipped.
    pub async fn add_known(&self, entries: Vec<AddressEntry>) {
        self.call(|reply| Command::Known { entries, reply }).await;
    }

    /// Stop the event loop (closes connections). Returns once it has stopped
    /// (or immediately if it already had).
    pub async fn shutdown(&self) {
        self.call(|reply| Command::Shutdown { reply }).await;
    }
}
