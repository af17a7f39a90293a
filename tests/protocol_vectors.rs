//! Checks the hex test vectors in `protocols/*.md` (convention in
//! `protocols/README.md`): each decodes into its named type and re-encodes to
//! the same bytes, and the values match the dev chain regenerated here, so
//! the specs cannot drift from the code.

use std::collections::BTreeMap;
use std::path::Path;

use concord::chain::generate::ChainGenerator;
use concord::chain::validate::{validate_block, validate_segment};
use concord::chain::{AuthorityKey, Block, BlockRef, Genesis};
use concord::protocol::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

struct Vector {
    file: String,
    line: usize,
    ty: String,
    bytes: Vec<u8>,
}

/// Fenced blocks whose info string is `hex <Type>`; whitespace inside is ignored.
fn parse(file: &str, text: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(ty) = line.trim_end().strip_prefix("```hex ") else {
            continue;
        };
        let mut hex = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            hex.extend(l.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes = hex::decode(&hex).unwrap_or_else(|e| panic!("{file}:{}: bad hex: {e}", n + 1));
        out.push(Vector {
            file: file.to_string(),
            line: n + 1,
            ty: ty.trim().to_string(),
            bytes,
        });
    }
    out
}

fn round_trip<T: Serialize + DeserializeOwned>(v: &Vector) -> T {
    let value: T = cbor4ii::serde::from_slice(&v.bytes)
        .unwrap_or_else(|e| panic!("{}:{}: {} does not decode: {e}", v.file, v.line, v.ty));
    let again = cbor4ii::serde::to_vec(Vec::new(), &value).unwrap();
    assert_eq!(
        hex::encode(&again),
        hex::encode(&v.bytes),
        "{}:{}: {} does not re-encode to the same bytes",
        v.file,
        v.line,
        v.ty
    );
    value
}

#[test]
fn spec_vectors_round_trip_and_match_the_dev_chain() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols");
    let g = Genesis::dev();
    let chain: Vec<Block> = std::iter::once(g.block().clone())
        .chain(ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), 16, 0).take(3))
        .collect();
    let tip = BlockRef::of(&chain[3]);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for name in [
        "height.md",
        "genesis.md",
        "block-hash.md",
        "blocks.md",
        "announce.md",
        "README.md",
    ] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let vectors = parse(name, &text);
        if name != "README.md" {
            assert!(!vectors.is_empty(), "{name} has no test vectors");
        }
        for v in &vectors {
            *seen.entry(v.ty.clone()).or_default() += 1;
            let at = format!("{}:{}", v.file, v.line);
            match v.ty.as_str() {
                "HeightRequest" => {
                    let _: HeightRequest = round_trip(v);
                }
                "GenesisRequest" => {
                    let _: GenesisRequest = round_trip(v);
                }
                "AnnounceResponse" => {
                    let _: AnnounceResponse = round_trip(v);
                }
                "HeightResponse" => {
                    let r: HeightResponse = round_trip(v);
                    assert_eq!((r.height, r.tip), (tip.height, tip.hash), "{at}");
                }
                "AnnounceRequest" => {
                    let r: AnnounceRequest = round_trip(v);
                    assert_eq!((r.height, r.tip), (tip.height, tip.hash), "{at}");
                }
                "GenesisResponse" => {
                    let r: GenesisResponse = round_trip(v);
                    assert_eq!(r.genesis, g.hash(), "{at}");
                }
                "BlockHashRequest" => {
                    let r: BlockHashRequest = round_trip(v);
                    assert_eq!(r.height, 2, "{at}");
                }
                "BlockHashResponse" => {
                    let r: BlockHashResponse = round_trip(v);
                    let expected = chain.get(r.height as usize).map(Block::hash);
                    assert_eq!(r.hash, expected, "{at}: height {}", r.height);
                }
                "BlocksRequest" => {
                    let r: BlocksRequest = round_trip(v);
                    assert_eq!((r.start, r.count), (1, 2), "{at}");
                }
                "BlocksResponse" => {
                    let r: BlocksResponse = round_trip(v);
                    if let Some(first) = r.blocks.first() {
                        let h = first.height() as usize;
                        assert_eq!(r.blocks, chain[h..h + r.blocks.len()].to_vec(), "{at}");
                        let parent = BlockRef::of(&chain[h - 1]);
                        validate_segment(&g, &parent, &r.blocks)
                            .unwrap_or_else(|e| panic!("{at}: {e}"));
                    }
                }
                "Block" => {
                    let b: Block = round_trip(v);
                    assert_eq!(Block::decode(&v.bytes).unwrap(), b, "{at}");
                    let h = b.height() as usize;
                    assert_eq!(b, chain[h], "{at}");
                    if h > 0 {
                        validate_block(&g, &BlockRef::of(&chain[h - 1]), &b)
                            .unwrap_or_else(|e| panic!("{at}: {e}"));
                    }
                }
                other => panic!("{at}: unknown vector type {other}"),
            }
        }
    }
    for ty in [
        "HeightRequest",
        "HeightResponse",
        "GenesisRequest",
        "GenesisResponse",
        "BlockHashRequest",
        "BlockHashResponse",
        "BlocksRequest",
        "BlocksResponse",
        "AnnounceRequest",
        "AnnounceResponse",
        "Block",
    ] {
        assert!(seen.contains_key(ty), "no test vector for {ty}");
    }
}

#[test]
fn readme_states_the_limits_of_the_code() {
    use concord::protocol::limits::*;
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols/README.md"))
            .unwrap();
    let thousands = |n: u64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    for (name, value) in [
        ("MAX_BODY_SIZE", MAX_BODY_SIZE as u64),
        ("MAX_BLOCK_WIRE_SIZE", MAX_BLOCK_WIRE_SIZE as u64),
        ("MAX_BLOCKS_PER_REQUEST", MAX_BLOCKS_PER_REQUEST as u64),
        ("RESPONSE_BYTE_BUDGET", RESPONSE_BYTE_BUDGET as u64),
        ("MAX_REQUEST_SIZE", MAX_REQUEST_SIZE),
        ("MAX_BLOCKS_RESPONSE_SIZE", MAX_BLOCKS_RESPONSE_SIZE),
        ("MAX_SMALL_RESPONSE_SIZE", MAX_SMALL_RESPONSE_SIZE),
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README has no row for {name}"));
        assert!(
            row.contains(&thousands(value)) || row.contains(&value.to_string()),
            "README row for {name} does not state {value}: {row}"
        );
    }
}

/// What a node serves for `/concord/blocks/1` is built from the stored
/// encodings without decoding them (`concord::net::blocks_wire`): it must be
/// the spec's `BlocksResponse` vectors byte for byte. And what a node
/// receives is stored as it came: the vector's blocks, parsed, imported
/// with their encodings into a fresh store, are served again as the same
/// bytes.
#[test]
fn served_blocks_responses_are_the_spec_vectors_byte_for_byte() {
    use concord::net::blocks_wire::{self, BlocksWire};
    use concord::protocol::limits::RESPONSE_BYTE_BUDGET;
    use concord::store::Store;

    let g = Genesis::dev();
    let chain: Vec<Block> =
        ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), 16, 0)
            .take(3)
            .collect();
    let seeder = Store::temporary(&g).unwrap();
    seeder.import(&chain).unwrap();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols/blocks.md"))
            .unwrap();
    let vectors: Vec<Vector> = parse("blocks.md", &text)
        .into_iter()
        .filter(|v| v.ty == "BlocksResponse")
        .collect();
    assert_eq!(vectors.len(), 2, "blocks 1 and 2, and the empty answer");
    let serve = |store: &Store, start: u64, count: u32| {
        let stored = store
            .blocks_encoded(start, count, RESPONSE_BYTE_BUDGET, blocks_wire::HEADROOM)
            .unwrap();
        BlocksWire::from_stored(stored)
            .into_bytes()
            .unwrap()
            .to_vec()
    };
    for v in &vectors {
        let at = format!("{}:{}", v.file, v.line);
        let received = blocks_wire::parse(bytes::Bytes::from(v.bytes.clone())).unwrap();
        let (start, count) = match received.blocks.first() {
            Some(b) => (b.height(), received.blocks.len() as u32),
            None => (10, 2), // a height the seeder does not have
        };
        assert_eq!(
            hex::encode(serve(&seeder, start, count)),
            hex::encode(&v.bytes),
            "{at}"
        );
        // Received encodings, stored as they came, served again.
        let encoded = received.encoded.expect("the vector's blocks are canonical");
        let expected: Vec<u8> = received.blocks.iter().flat_map(Block::encode).collect();
        assert_eq!(&encoded[..], &expected[..], "{at}");
        if start == 1 {
            let follower = Store::temporary(&g).unwrap();
            follower.import_encoded(&received.blocks, &encoded).unwrap();
            assert_eq!(
                hex::encode(serve(&follower, 1, count)),
                hex::encode(&v.bytes),
                "{at}"
            );
        }
    }
}
