//! The Concord wire protocols (the four query protocols plus tip announcements): message types, protocol names and limits.
//!
//! Each protocol is a libp2p request-response protocol using the CBOR codec
//! (one request, one response per stream). This module owns the message shapes
//! and every wire size/count limit (the block body limit is a chain rule,
//! re-exported in [`limits`] so the list is complete); the specs in `protocols/*.md` describe the same
//! things for implementers in other languages, and `tests/protocol_vectors.rs`
//! checks the hex test vectors there against these types.
//!
//! It may import [`crate::chain`] (blocks, hashes, the body rule) and nothing
//! else of Concord. It must not touch the swarm or the store: serving requests is
//! [`crate::net`]'s job, deciding what to ask is [`crate::sync`]'s.

use serde::{Deserialize, Serialize};

use crate::chain::{Block, Hash};

/// `/concord/height/1`: "what is your tip?"
pub const HEIGHT_PROTOCOL: &str = "/concord/height/1";
/// `/concord/genesis/1`: "which network are you on?"
pub const GENESIS_PROTOCOL: &str = "/concord/genesis/1";
/// `/concord/block-hash/1`: "which block do you hold at height h?"
pub const BLOCK_HASH_PROTOCOL: &str = "/concord/block-hash/1";
/// `/concord/blocks/1`: "send me blocks start..start+count".
pub const BLOCKS_PROTOCOL: &str = "/concord/blocks/1";

/// `/concord/announce/1`: "I have a new tip" (push, so followers react in
/// one round trip instead of waiting for a status poll).
pub const ANNOUNCE_PROTOCOL: &str = "/concord/announce/1";

/// Hard limits of the wire protocols. These are protocol constants (a peer in
/// another language must know them), not tunables: see `protocols/*.md`.
pub mod limits {
    /// Re-exported so a peer implementer finds every limit in one place; the
    /// rule itself belongs to the chain (a block is invalid, not just unsendable).
    pub use crate::chain::MAX_BODY_SIZE;
    /// Largest encoded block: body plus header fields plus CBOR framing.
    pub const MAX_BLOCK_WIRE_SIZE: usize = MAX_BODY_SIZE + 256;
    /// Most blocks a `/concord/blocks/1` request may ask for; a larger `count`
    /// is served as if it were this.
    pub const MAX_BLOCKS_PER_REQUEST: u32 = 4096;
    /// A server stops adding blocks to a response once the next block would
    /// push the encoded blocks past this many bytes (but always sends at least
    /// one block if it has the start height).
    pub const RESPONSE_BYTE_BUDGET: usize = 4 * 1024 * 1024;
    /// Largest request any Concord protocol accepts (all requests are tiny).
    pub const MAX_REQUEST_SIZE: u64 = 1024;
    /// Largest `/concord/blocks/1` response: the byte budget or one maximal
    /// block, whichever is larger, plus the envelope.
    pub const MAX_BLOCKS_RESPONSE_SIZE: u64 = (if RESPONSE_BYTE_BUDGET > MAX_BLOCK_WIRE_SIZE {
        RESPONSE_BYTE_BUDGET
    } else {
        MAX_BLOCK_WIRE_SIZE
    } + 64) as u64;
    /// Largest response of the three small protocols.
    pub const MAX_SMALL_RESPONSE_SIZE: u64 = 1024;
}

/// Request of `/concord/height/1`. Encoded as an empty CBOR map (`a0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
// Requests are strict: an unknown key is a bad request (see protocols/README.md).
#[serde(deny_unknown_fields)]
pub struct HeightRequest {}

/// Response of `/concord/height/1`: the responder's tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeightResponse {
    pub height: u64,
    pub tip: Hash,
}

/// Request of `/concord/genesis/1`. Encoded as an empty CBOR map (`a0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
// Requests are strict: an unknown key is a bad request (see protocols/README.md).
#[serde(deny_unknown_fields)]
pub struct GenesisRequest {}

/// Response of `/concord/genesis/1`: the hash of the responder's genesis block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisResponse {
    pub genesis: Hash,
}

/// Request of `/concord/block-hash/1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Requests are strict: an unknown key is a bad request (see protocols/README.md).
#[serde(deny_unknown_fields)]
pub struct BlockHashRequest {
    pub height: u64,
}

/// Response of `/concord/block-hash/1`: `hash` is null when the responder has
/// no block at that height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHashResponse {
    pub height: u64,
    pub hash: Option<Hash>,
}

/// Request of `/concord/blocks/1`: consecutive blocks from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Requests are strict: an unknown key is a bad request (see protocols/README.md).
#[serde(deny_unknown_fields)]
pub struct BlocksRequest {
    pub start: u64,
    pub count: u32,
}

/// Response of `/concord/blocks/1`: consecutive blocks starting at the
/// requested `start`, possibly fewer than asked (byte budget, or the
/// responder's tip); empty when the responder does not have `start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksResponse {
    pub blocks: Vec<Block>,
}

/// Request of `/concord/announce/1`: the sender's new tip. Receivers treat it
/// like an unsolicited height answer (a hint, verified by fetching).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Requests are strict: an unknown key is a bad request (see protocols/README.md).
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    pub height: u64,
    pub tip: Hash,
}

/// Response of `/concord/announce/1`: an empty acknowledgement (`a0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AnnounceResponse {}
