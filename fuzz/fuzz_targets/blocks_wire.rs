#![no_main]
//! The in-place parsers a syncing node reads blocks responses with
//! (`net::blocks_wire::parse`, `chain::wire::parse`): never more lenient
//! than the serde decoders they stand in for, and what they parse is what
//! those decode.
use concord::chain::{wire, Block};
use concord::net::blocks_wire;
use concord::protocol::BlocksResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = bytes::Bytes::copy_from_slice(data);
    if let Ok(received) = blocks_wire::parse(buf.clone()) {
        let serde: BlocksResponse = cbor4ii::serde::from_slice(data)
            .expect("the in-place parser accepted what serde refuses");
        assert_eq!(received.blocks, serde.blocks, "parsers disagree");
        if let Some(encoded) = &received.encoded {
            let again: Vec<u8> = received.blocks.iter().flat_map(Block::encode).collect();
            assert_eq!(&encoded[..], &again[..], "kept encodings are not the blocks'");
        }
        received
            .blocks
            .iter()
            .for_each(concord_fuzz::check_block_limits);
    }
    if let Some(block) = wire::parse(&buf) {
        let decoded = Block::decode(data).expect("a canonical block decodes");
        assert_eq!(block, decoded, "parsers disagree on one block");
        assert_eq!(block.encode(), data, "parsed bytes are not the canonical encoding");
    }
});
