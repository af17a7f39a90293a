//! A `/concord/blocks/1` response as bytes, in both directions.
//!
//! Serving: the store's encodings of the blocks (checked against their CRCs,
//! see [`crate::store::Store::blocks_encoded`]) go out as they are, behind
//! the few bytes of the response map's framing, written into headroom the
//! store left in front of them: no block is decoded or re-encoded, and the
//! bytes are the ones `BlocksResponse`'s serde encoding would be (the
//! store holds `Block::encode` bytes; `tests/protocol_vectors.rs` checks it
//! byte for byte against `protocols/blocks.md`).
//!
//! Receiving: the response is parsed in place. Every block in the canonical
//! form (see [`crate::chain::wire`]) becomes a [`Block`] whose body is a view
//! into the received buffer, and the encodings of all blocks are kept as one
//! slice of it, to be written to the store as they came
//! ([`crate::store::Store::import_encoded`]). A block in another valid
//! encoding is decoded the ordinary way, and the response then carries no
//! encodings (the store re-encodes): what is accepted is exactly what the
//! serde decoder accepts.
//!
//! Owns the response's framing only; it must not judge the blocks.

use std::io;

use bytes::Bytes;

use super::codec::{check_shape, item_end, read_head};
use crate::chain::{wire, Block};
use crate::protocol::BlocksResponse;
use crate::store::EncodedBlocks;

/// The map key of the blocks list.
const KEY: &[u8] = b"blocks";

/// Bytes a response's framing takes in front of the encodings at most:
/// map head, key, list head.
pub const HEADROOM: usize = 1 + 1 + KEY.len() + 3;

/// A blocks response: what a server sends, or what a reader received.
#[derive(Debug, Clone)]
pub enum BlocksWire {
    /// Built by a server: the whole response as it goes on the wire.
    Encoded { bytes: Bytes, count: u32 },
    /// Read from a peer.
    Received(ReceivedBlocks),
}

/// A blocks response as read: the blocks (bodies pointing into the received
/// buffer when canonical) and, when every block was in the canonical form,
/// their encodings back to back as received.
#[derive(Debug, Clone, Default)]
pub struct ReceivedBlocks {
    pub blocks: Vec<Block>,
    pub encoded: Option<Bytes>,
}

impl BlocksWire {
    /// The response for the store's encodings of `stored.count` blocks,
    /// read with [`HEADROOM`] bytes of headroom.
    pub fn from_stored(stored: EncodedBlocks) -> BlocksWire {
        let EncodedBlocks { mut buf, count } = stored;
        if buf.len() < HEADROOM {
            // Read without the headroom (not what `blocks_encoded` is asked
            // for here): make room, at the cost of one copy.
            buf.splice(0..0, std::iter::repeat_n(0, HEADROOM));
        }
        let mut framing = Vec::with_capacity(HEADROOM);
        wire::push_head(&mut framing, 5, 1);
        wire::push_head(&mut framing, 3, KEY.len() as u64);
        framing.extend_from_slice(KEY);
        wire::push_head(&mut framing, 4, u64::from(count));
        // The framing goes right in front of the encodings.
        let start = HEADROOM - framing.len();
        buf[start..HEADROOM].copy_from_slice(&framing);
        BlocksWire::Encoded {
            bytes: Bytes::from(buf).slice(start..),
            count,
        }
    }

    /// The response for `blocks` built the ordinary way (serde), for paths
    /// that hold decoded blocks.
    pub fn from_blocks(blocks: Vec<Block>) -> io::Result<BlocksWire> {
        let count = blocks.len() as u32;
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &BlocksResponse { blocks })
            .map_err(io::Error::other)?;
        Ok(BlocksWire::Encoded {
            bytes: Bytes::from(bytes),
            count,
        })
    }

    /// How many blocks it holds.
    pub fn count(&self) -> u64 {
        match self {
            BlocksWire::Encoded { count, .. } => u64::from(*count),
            BlocksWire::Received(r) => r.blocks.len() as u64,
        }
    }

    /// Bytes it holds in memory (for the serving budget).
    pub fn held(&self) -> u64 {
        match self {
            BlocksWire::Encoded { bytes, .. } => bytes.len() as u64,
            BlocksWire::Received(r) => r.blocks.iter().map(|b| wire::encoded_len(b) as u64).sum(),
        }
    }

    /// The blocks, decoded (a server's response is decoded here: only tests
    /// and the testnet's misbehaving modes look into one).
    pub fn into_blocks(self) -> Result<Vec<Block>, String> {
        match self {
            BlocksWire::Received(r) => Ok(r.blocks),
            BlocksWire::Encoded { bytes, .. } => parse(bytes).map(|r| r.blocks),
        }
    }

    pub fn into_bytes(self) -> io::Result<Bytes> {
        match self {
            BlocksWire::Encoded { bytes, .. } => Ok(bytes),
            BlocksWire::Received(r) => BlocksWire::from_blocks(r.blocks)?.into_bytes(),
        }
    }
}

/// Parses a whole blocks response (see the module docs). Accepts what the
/// serde decoder of [`BlocksResponse`] accepts (unknown keys are skipped).
pub fn parse(buf: Bytes) -> Result<ReceivedBlocks, String> {
    check_shape(&buf)?;
    let mut pos = 0usize;
    let (major, entries) = read_head(&buf, &mut pos)?;
    if major != 5 {
        return Err("a blocks response is a map".into());
    }
    let mut found: Option<ReceivedBlocks> = None;
    for _ in 0..entries {
        let key_at = pos;
        let (kind, _) = read_head(&buf, &mut pos)?;
        // Field names are text strings; serde refuses any other key (a
        // byte string spelling `blocks` included), and so does this parser.
        if kind != 3 {
            return Err("a map key that is not a text string".into());
        }
        let key_end = item_end(&buf, key_at)?;
        let key = buf.get(pos..key_end).ok_or("a map key past the end")?;
        if std::str::from_utf8(key).is_err() {
            return Err("a map key that is not UTF-8".into());
        }
        let is_blocks = key == KEY;
        pos = key_end;
        if !is_blocks {
            pos = item_end(&buf, pos)?;
            continue;
        }
        if found.is_some() {
            return Err("duplicate field `blocks`".into());
        }
        let (major, count) = read_head(&buf, &mut pos)?;
        if major != 4 {
            return Err("`blocks` is not a list".into());
        }
        let span_start = pos;
        let mut blocks = Vec::with_capacity(count.min(4096) as usize);
        let mut canonical = true;
        for _ in 0..count {
            let end = item_end(&buf, pos)?;
            let item = buf.slice(pos..end);
            match wire::parse(&item) {
                Some(block) => blocks.push(block),
                None => {
                    canonical = false;
                    blocks.push(Block::decode(&item).map_err(|e| e.to_string())?);
                }
            }
            pos = end;
        }
        found = Some(ReceivedBlocks {
            blocks,
            encoded: canonical.then(|| buf.slice(span_start..pos)),
        });
    }
    found.ok_or_else(|| "missing field `blocks`".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{generate::ChainGenerator, AuthorityKey, BlockRef, Genesis};

    fn blocks(n: u64, body: usize) -> Vec<Block> {
        let g = Genesis::dev();
        ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), body, 0)
            .take(n as usize)
            .collect()
    }

    #[test]
    fn received_blocks_point_into_the_buffer_and_keep_their_encodings() {
        let chain = blocks(5, 100);
        let wire = BlocksWire::from_blocks(chain.clone()).unwrap();
        let bytes = wire.into_bytes().unwrap();
        let r = parse(bytes.clone()).unwrap();
        assert_eq!(r.blocks, chain);
        let encoded: Vec<u8> = chain.iter().flat_map(Block::encode).collect();
        assert_eq!(r.encoded.as_deref(), Some(&encoded[..]));
        let in_buf = bytes.as_ptr_range();
        assert!(r.blocks.iter().all(|b| in_buf.contains(&b.body.as_ptr())));
    }

    #[test]
    fn a_non_canonical_block_is_decoded_and_the_encodings_are_dropped() {
        let chain = blocks(2, 10);
        let mut bytes = BlocksWire::from_blocks(chain.clone())
            .unwrap()
            .into_bytes()
            .unwrap()
            .to_vec();
        // Block 1's height `01` written as `18 01`.
        let at = 10; // a1 66 "blocks" 82 | 87 01
        assert_eq!(&bytes[at - 1..at + 1], &[0x87, 0x01]);
        bytes.insert(at, 0x18);
        let r = parse(Bytes::from(bytes)).unwrap();
        assert_eq!(r.blocks, chain);
        assert!(r.encoded.is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever bytes arrive, the in-place parser accepts exactly what the
        /// serde decoder accepts, with the same blocks.
        #[test]
        fn the_parser_agrees_with_the_serde_decoder(
            flips in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..4),
            cut in 0usize..2000,
        ) {
            let valid = BlocksWire::from_blocks(blocks(3, 40)).unwrap().into_bytes().unwrap();
            let mut bytes = valid.to_vec();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            if cut < bytes.len() / 4 {
                bytes.truncate(bytes.len() - cut);
            }
            let serde: Result<BlocksResponse, _> = check_shape(&bytes)
                .and_then(|()| cbor4ii::serde::from_slice(&bytes).map_err(|e| e.to_string()));
            let ours = parse(Bytes::from(bytes));
            proptest::prop_assert_eq!(serde.ok().map(|r| r.blocks), ours.ok().map(|r| r.blocks));
        }
    }

    #[test]
    fn unknown_keys_are_skipped_and_missing_or_duplicate_blocks_refused() {
        let chain = blocks(1, 4);
        let inner = BlocksWire::from_blocks(chain.clone())
            .unwrap()
            .into_bytes()
            .unwrap();
        let mut two = vec![0xa2, 0x61, b'x', 0x82, 0x01, 0x02];
        two.extend_from_slice(&inner[1..]);
        assert_eq!(parse(Bytes::from(two)).unwrap().blocks, chain);
        assert!(parse(Bytes::from_static(&[0xa0])).is_err());
        let mut dup = vec![0xa2];
        dup.extend_from_slice(&inner[1..]);
        dup.extend_from_slice(&inner[1..]);
        assert!(parse(Bytes::from(dup)).is_err());
    }

    /// Found by the `blocks_wire` fuzz target: a byte-string key spelling
    /// `blocks` was taken for the field, which serde refuses.
    #[test]
    fn keys_that_are_not_text_are_refused_as_serde_refuses_them() {
        let mut bytes_blocks = vec![0xa1, 0x46];
        bytes_blocks.extend_from_slice(b"blocks");
        bytes_blocks.push(0x80);
        let mut bytes_unknown = vec![0xa2, 0x41, b'x', 0x01, 0x66];
        bytes_unknown.extend_from_slice(b"blocks");
        bytes_unknown.push(0x80);
        for input in [bytes_blocks, bytes_unknown] {
            let serde: Result<BlocksResponse, _> = cbor4ii::serde::from_slice(&input);
            assert!(serde.is_err(), "serde took {input:02x?}");
            assert!(parse(Bytes::from(input)).is_err());
        }
        // Nor text that is not UTF-8 (found by the fuzz target too).
        let mut bad_utf8 = vec![0xa2, 0x62, 0xff, 0xfe, 0x01, 0x66];
        bad_utf8.extend_from_slice(b"blocks");
        bad_utf8.push(0x80);
        let serde: Result<BlocksResponse, _> = cbor4ii::serde::from_slice(&bad_utf8);
        assert!(serde.is_err());
        assert!(parse(Bytes::from(bad_utf8)).is_err());
        let mut text = vec![0xa1, 0x66];
        text.extend_from_slice(b"blocks");
        text.push(0x80);
        assert!(parse(Bytes::from(text)).unwrap().blocks.is_empty());
    }
}
