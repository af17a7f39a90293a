//! Checks shared by the fuzz targets: each target feeds arbitrary bytes to
//! one decoder family and asserts the same properties the proptests in
//! `tests/hostile_input.rs` assert on generated inputs — no panic, and what
//! decodes re-encodes to bytes that decode to the same value and encode
//! identically again (the encoding is canonical and stable).

use std::fmt::Debug;
use std::sync::OnceLock;

use concord::chain::{validate, Block, BlockRef, Genesis};
use serde::{de::DeserializeOwned, Serialize};

/// The decoder the node's request-response codec runs on a message that
/// passed its size check (`net::codec`: `cbor4ii::serde::from_slice`).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    cbor4ii::serde::from_slice(bytes).ok()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), value).expect("encoding plain data into a Vec cannot fail")
}

/// Decodes `bytes` as a `T`; if that succeeds, checks that the value's
/// encoding decodes to the same value and encodes to the same bytes.
pub fn round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = decode(bytes)?;
    let canonical = encode(&value);
    let again: T = decode(&canonical).expect("a canonical encoding decodes");
    assert_eq!(again, value, "decode(encode(v)) != v");
    assert_eq!(encode(&again), canonical, "encoding is not stable");
    Some(value)
}

/// The dev genesis, built once (building it checks the authority key).
pub fn genesis() -> &'static Genesis {
    static G: OnceLock<Genesis> = OnceLock::new();
    G.get_or_init(Genesis::dev)
}

/// Runs the validation entry points a received block goes through. The
/// verdict does not matter (random bytes are almost never valid): they must
/// only return, never panic.
pub fn validate_all(blocks: &[Block]) {
    let g = genesis();
    let parent = BlockRef::of(g.block());
    let _ = validate::validate_detached(g, blocks);
    let _ = validate::validate_segment(g, &parent, blocks);
    let _ = validate::validate_received(g, blocks, u64::MAX, u64::MAX);
    let _ = validate::check_not_future(blocks, 0, 0);
    if let Some(first) = blocks.first() {
        let _ = validate::validate_block(g, &parent, first);
        let _ = validate::check_link(g.slot_ms, &parent, &first.header);
    }
}

/// A decoded block is within the wire limit exactly when its body is within
/// the chain's body limit (the wire limit is derived from the body limit).
pub fn check_block_limits(block: &Block) {
    use concord::protocol::limits::{MAX_BLOCK_WIRE_SIZE, MAX_BODY_SIZE};
    if block.body.len() <= MAX_BODY_SIZE {
        assert!(block.encode().len() <= MAX_BLOCK_WIRE_SIZE);
    }
}
