//! Hostile input, systematically: property tests over every decoder of bytes
//! that a peer or an operator hands the node — the five wire protocols
//! (requests and responses), blocks (the encoding `blocks.dat` holds and the
//! wire carries, then validation), genesis files and config files.
//!
//! Properties, for each decoder:
//! - arbitrary bytes never panic (a panic fails the case);
//! - generated valid values round-trip: `decode(encode(v)) == v`, and the
//!   encoding fits the protocol's size limit;
//! - allocation is bounded: no single allocation while decoding is larger
//!   than the input plus serde's 1 MiB pre-allocation cap (a length head
//!   that claims more than the input holds costs nothing), measured by a
//!   counting allocator in this test binary;
//! - mutated valid encodings are refused or decode to a value whose own
//!   encoding is stable; a mutated valid *block* never validates as a
//!   different block.
//!
//! The codec's size checks (oversize requests delivered as invalid,
//! endless streams cut at the limit) are tested next to the codec, in
//! `src/net/codec.rs`, because the codec is crate-private.
//!
//! Case count: 256 per property so the file runs in about a second; set
//! `PROPTEST_CASES` for a longer run (`PROPTEST_CASES=5000 cargo test
//! --release --test hostile_input`). The cargo fuzz targets in `fuzz/` check
//! the same properties on coverage-guided input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;

use concord::chain::generate::produce_block;
use concord::chain::validate::{self, validate_block};
use concord::chain::{AuthorityKey, Block, BlockHeader, BlockRef, Genesis, Hash, PublicKey};
use concord::chain::{Signature, MAX_BODY_SIZE};
use concord::config::{validate_net, validate_sync, FileConfig};
use concord::net::NetConfig;
use concord::protocol::limits::{
    MAX_BLOCKS_RESPONSE_SIZE, MAX_BLOCK_WIRE_SIZE, MAX_REQUEST_SIZE, MAX_SMALL_RESPONSE_SIZE,
};
use concord::protocol::*;
use concord::sync::SyncConfig;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::{de::DeserializeOwned, Serialize};

// ---------------------------------------------------------------------------
// Allocation accounting: the largest single allocation made by this thread
// while `TRACKING` is set. Thread-local so that tests running in parallel do
// not see each other's allocations; `const` cells need no lazy init, so the
// allocator never allocates itself.

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

/// serde pre-allocates a sequence from its length head, capped at 1 MiB
/// (`serde::de::size_hint::cautious`); beyond that, memory follows the input.
const PREALLOC_CAP: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers

fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Found failures become named regression tests, not files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), value).expect("plain data encodes")
}

/// The decoder the node's codec runs on a message within its size limit.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    cbor4ii::serde::from_slice(bytes).ok()
}

/// Decodes `bytes` (bounded allocation checked); what decodes must re-encode
/// to bytes that decode to the same value and encode identically again.
fn decode_consistently<T>(bytes: &[u8]) -> Result<Option<T>, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let (value, largest) = largest_allocation(|| decode::<T>(bytes));
    prop_assert!(
        largest <= bytes.len() + PREALLOC_CAP,
        "decoding {} bytes made a {largest}-byte allocation",
        bytes.len()
    );
    let Some(value) = value else {
        return Ok(None);
    };
    let canonical = encode(&value);
    let again = decode::<T>(&canonical);
    prop_assert_eq!(again.as_ref(), Some(&value), "decode(encode(v)) != v");
    if let Some(again) = &again {
        prop_assert_eq!(encode(again), canonical, "encoding is not stable");
    }
    Ok(Some(value))
}

fn round_trips<T>(value: &T, limit: u64) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value);
    prop_assert!(
        bytes.len() as u64 <= limit,
        "{} bytes over the {limit}-byte limit",
        bytes.len()
    );
    let decoded = decode_consistently::<T>(&bytes)?;
    prop_assert_eq!(decoded.as_ref(), Some(value));
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, 1 << b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len();
        match m {
            Mutation::Flip(i, bit) if n > 0 => bytes[i.index(n)] ^= bit,
            Mutation::Set(i, v) if n > 0 => bytes[i.index(n)] = *v,
            Mutation::Insert(i, v) => bytes.insert(i.index(n + 1), *v),
            Mutation::Remove(i) if n > 0 => {
                bytes.remove(i.index(n));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(n + 1)),
            Mutation::Append(tail) => bytes.extend_from_slice(tail),
            _ => {}
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// Arbitrary bytes, and bytes that start like CBOR maps and arrays so that
/// cases get past the first byte.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (
            prop::sample::select(vec![0xa0u8, 0xa1, 0xa2, 0xbf, 0x80, 0x87, 0x9f]),
            prop::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(head, rest)| {
                let mut v = vec![head];
                v.extend(rest);
                v
            }),
    ]
}

// ---------------------------------------------------------------------------
// Generators of valid values

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn block() -> impl Strategy<Value = Block> {
    (
        any::<u64>(),
        hash(),
        any::<u64>(),
        hash(),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 64),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(height, parent, timestamp_ms, body_hash, producer, sig, body)| Block {
                header: BlockHeader {
                    height,
                    parent,
                    timestamp_ms,
                    body_hash,
                    producer: PublicKey(producer),
                    signature: Signature(sig.try_into().expect("64 bytes")),
                },
                body: body.into(),
            },
        )
}

fn dev() -> &'static Genesis {
    static G: std::sync::OnceLock<Genesis> = std::sync::OnceLock::new();
    G.get_or_init(Genesis::dev)
}

/// A valid block 1 of the dev chain: slot `slot_offset` after genesis, any body.
fn valid_block() -> impl Strategy<Value = Block> {
    (1u64..1_000_000, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(slot, body)| {
        let g = dev();
        produce_block(
            &AuthorityKey::dev(),
            &BlockRef::of(g.block()),
            g.timestamp_ms + slot * g.slot_ms,
            body,
        )
    })
}

fn genesis() -> impl Strategy<Value = Genesis> {
    (
        ".{0,24}",
        // TOML integers are i64: a genesis file cannot hold more.
        0..=i64::MAX as u64,
        1..=i64::MAX as u64,
        prop::collection::btree_set(any::<[u8; 32]>(), 1..4),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(name, ts, slot, seeds, payload, text)| {
            let keys = seeds
                .into_iter()
                .map(|s| AuthorityKey::from_seed(s).public())
                .collect();
            let payload = if text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            };
            Genesis::new(name, ts, slot, keys, payload).expect("keys from seeds are valid")
        })
}

/// TOML-ish text: mostly the genesis or config grammar, some noise.
fn toml_text(valid: String) -> impl Strategy<Value = String> {
    (mutations(), Just(valid))
        .prop_map(|(m, v)| String::from_utf8_lossy(&mutate(v.into_bytes(), &m)).into_owned())
}

// ---------------------------------------------------------------------------
// Wire protocols: one block per protocol, requests and responses.

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn height_decoders_survive_anything(bytes in hostile_bytes()) {
        decode_consistently::<HeightRequest>(&bytes)?;
        decode_consistently::<HeightResponse>(&bytes)?;
    }

    #[test]
    fn height_messages_round_trip(height in any::<u64>(), tip in hash()) {
        round_trips(&HeightRequest {}, MAX_REQUEST_SIZE)?;
        round_trips(&HeightResponse { height, tip }, MAX_SMALL_RESPONSE_SIZE)?;
    }

    #[test]
    fn mutated_height_messages_stay_consistent(
        height in any::<u64>(), tip in hash(), m in mutations()
    ) {
        decode_consistently::<HeightRequest>(&mutate(encode(&HeightRequest {}), &m))?;
        let bytes = mutate(encode(&HeightResponse { height, tip }), &m);
        decode_consistently::<HeightResponse>(&bytes)?;
    }

    #[test]
    fn genesis_protocol_decoders_survive_anything(bytes in hostile_bytes()) {
        decode_consistently::<GenesisRequest>(&bytes)?;
        decode_consistently::<GenesisResponse>(&bytes)?;
    }

    #[test]
    fn genesis_protocol_messages_round_trip(genesis in hash(), m in mutations()) {
        round_trips(&GenesisRequest {}, MAX_REQUEST_SIZE)?;
        round_trips(&GenesisResponse { genesis }, MAX_SMALL_RESPONSE_SIZE)?;
        decode_consistently::<GenesisRequest>(&mutate(encode(&GenesisRequest {}), &m))?;
        decode_consistently::<GenesisResponse>(&mutate(encode(&GenesisResponse { genesis }), &m))?;
    }

    #[test]
    fn block_hash_decoders_survive_anything(bytes in hostile_bytes()) {
        decode_consistently::<BlockHashRequest>(&bytes)?;
        decode_consistently::<BlockHashResponse>(&bytes)?;
    }

    #[test]
    fn block_hash_messages_round_trip(
        height in any::<u64>(), hash in prop::option::of(hash()), m in mutations()
    ) {
        round_trips(&BlockHashRequest { height }, MAX_REQUEST_SIZE)?;
        round_trips(&BlockHashResponse { height, hash }, MAX_SMALL_RESPONSE_SIZE)?;
        decode_consistently::<BlockHashRequest>(&mutate(encode(&BlockHashRequest { height }), &m))?;
        let bytes = mutate(encode(&BlockHashResponse { height, hash }), &m);
        decode_consistently::<BlockHashResponse>(&bytes)?;
    }

    #[test]
    fn blocks_decoders_survive_anything(bytes in hostile_bytes()) {
        decode_consistently::<BlocksRequest>(&bytes)?;
        if let Some(resp) = decode_consistently::<BlocksResponse>(&bytes)? {
            validate_all(&resp.blocks);
        }
    }

    #[test]
    fn blocks_messages_round_trip(
        start in any::<u64>(), count in any::<u32>(),
        blocks in prop::collection::vec(block(), 0..4), m in mutations()
    ) {
        round_trips(&BlocksRequest { start, count }, MAX_REQUEST_SIZE)?;
        let resp = BlocksResponse { blocks };
        round_trips(&resp, MAX_BLOCKS_RESPONSE_SIZE)?;
        decode_consistently::<BlocksRequest>(&mutate(encode(&BlocksRequest { start, count }), &m))?;
        if let Some(r) = decode_consistently::<BlocksResponse>(&mutate(encode(&resp), &m))? {
            validate_all(&r.blocks);
        }
    }

    #[test]
    fn announce_decoders_survive_anything(bytes in hostile_bytes()) {
        decode_consistently::<AnnounceRequest>(&bytes)?;
        decode_consistently::<AnnounceResponse>(&bytes)?;
    }

    #[test]
    fn announce_messages_round_trip(height in any::<u64>(), tip in hash(), m in mutations()) {
        round_trips(&AnnounceRequest { height, tip }, MAX_REQUEST_SIZE)?;
        round_trips(&AnnounceResponse {}, MAX_SMALL_RESPONSE_SIZE)?;
        decode_consistently::<AnnounceRequest>(&mutate(encode(&AnnounceRequest { height, tip }), &m))?;
        decode_consistently::<AnnounceResponse>(&mutate(encode(&AnnounceResponse {}), &m))?;
    }
}

/// Every validation entry point a received block goes through; the verdict
/// on garbage does not matter, only that each returns.
fn validate_all(blocks: &[Block]) {
    let g = dev();
    let parent = BlockRef::of(g.block());
    let _ = validate::validate_detached(g, blocks);
    let _ = validate::validate_segment(g, &parent, blocks);
    let _ = validate::validate_received(g, blocks, u64::MAX, u64::MAX);
    let _ = validate::check_not_future(blocks, 0, 0);
    if let Some(first) = blocks.first() {
        let _ = validate_block(g, &parent, first);
        let _ = validate::check_link(g.slot_ms, &parent, &first.header);
    }
}

// ---------------------------------------------------------------------------
// Blocks: the stored and wire encoding, then validation.

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn block_decoder_survives_anything(bytes in hostile_bytes()) {
        if let Some(b) = decode_consistently::<Block>(&bytes)? {
            prop_assert_eq!(Block::decode(&bytes).ok(), Some(b.clone()));
            validate_all(std::slice::from_ref(&b));
        }
    }

    #[test]
    fn blocks_round_trip_within_the_wire_limit(b in block()) {
        prop_assert_eq!(b.encode(), encode(&b));
        round_trips(&b, MAX_BLOCK_WIRE_SIZE as u64)?;
    }

    /// The strong form of "refused or consistent" for blocks: whatever a
    /// mutation turns a valid block into, it is not a valid block.
    #[test]
    fn a_mutated_valid_block_never_validates_as_another(b in valid_block(), m in mutations()) {
        let parent = BlockRef::of(dev().block());
        prop_assert_eq!(validate_block(dev(), &parent, &b), Ok(()));
        let bytes = mutate(b.encode(), &m);
        if let Some(other) = decode_consistently::<Block>(&bytes)? {
            if other != b {
                prop_assert!(validate_block(dev(), &parent, &other).is_err());
                prop_assert!(validate::validate_detached(dev(), &[other]).is_err());
            }
        }
    }
}

#[test]
fn a_block_at_the_body_limit_fits_the_wire_limit_and_one_byte_more_is_refused() {
    let g = dev();
    let parent = BlockRef::of(g.block());
    let key = AuthorityKey::dev();
    let at = produce_block(&key, &parent, g.timestamp_ms + 1000, vec![7; MAX_BODY_SIZE]);
    assert!(at.encode().len() <= MAX_BLOCK_WIRE_SIZE);
    assert_eq!(validate_block(g, &parent, &at), Ok(()));
    let over = produce_block(
        &key,
        &parent,
        g.timestamp_ms + 1000,
        vec![7; MAX_BODY_SIZE + 1],
    );
    assert_eq!(
        validate_block(g, &parent, &over),
        Err(validate::ValidationError::BodyTooLarge {
            height: 1,
            size: MAX_BODY_SIZE + 1
        })
    );
}

/// Length heads that claim far more than the input holds: refused with a
/// decode error, without allocating what they claim.
#[test]
fn lying_length_heads_are_refused_without_allocating_what_they_claim() {
    let mut lies: Vec<(&str, Vec<u8>)> = Vec::new();
    // `{"blocks": array(2^32 - 1)}` with nothing after it.
    let mut v = hex::decode("a166626c6f636b739a").unwrap();
    v.extend([0xff; 4]);
    lies.push(("blocks array", v));
    // A block whose body claims 2^63 bytes.
    let mut empty = dev().block().clone();
    empty.body.clear();
    let mut v = empty.encode();
    assert_eq!(v.pop(), Some(0x40), "an empty body is the last byte");
    v.extend([0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    lies.push(("block body", v));
    // A map of 2^64 - 1 entries, an array of 2^64 - 1 items.
    lies.push((
        "map",
        vec![0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    lies.push((
        "array",
        vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    for (what, bytes) in lies {
        let (resp, largest) = largest_allocation(|| {
            (
                decode::<BlocksResponse>(&bytes),
                decode::<Block>(&bytes),
                decode::<HeightResponse>(&bytes),
            )
        });
        assert!(
            resp.0.is_none() && resp.1.is_none() && resp.2.is_none(),
            "{what}"
        );
        assert!(largest <= PREALLOC_CAP, "{what}: {largest}-byte allocation");
    }
}

/// Nesting deeper than the decoder's recursion limit (unknown keys are
/// skipped by recursing into their values) is an error, not a stack overflow.
#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    for depth in [1_000usize, 100_000] {
        // {"x": [[[[…]]]], "height": 1, "tip": …}: the unknown key comes first.
        let mut v = vec![0xa3, 0x61, b'x'];
        v.extend(std::iter::repeat_n(0x81, depth));
        v.push(0x80);
        let known = encode(&HeightResponse {
            height: 1,
            tip: Hash([1; 32]),
        });
        v.extend_from_slice(&known[1..]);
        assert!(decode::<HeightResponse>(&v).is_none(), "depth {depth}");
        let mut block = vec![0x87];
        block.extend(std::iter::repeat_n(0x81, depth));
        assert!(Block::decode(&block).is_err(), "depth {depth}");
    }
}

// ---------------------------------------------------------------------------
// Genesis files and config files.

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn genesis_files_round_trip(g in genesis()) {
        let text = g.to_toml();
        let back = Genesis::from_toml(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(back.hash(), g.hash());
        prop_assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn mutated_genesis_files_are_refused_or_consistent(
        text in genesis().prop_flat_map(|g| toml_text(g.to_toml()))
    ) {
        if let Ok(g) = Genesis::from_toml(&text) {
            let again = Genesis::from_toml(&g.to_toml()).map_err(TestCaseError::fail)?;
            prop_assert_eq!(again.hash(), g.hash());
        }
    }

    #[test]
    fn genesis_parser_survives_anything(text in ".{0,300}") {
        if let Ok(g) = Genesis::from_toml(&text) {
            prop_assert_eq!(Genesis::from_toml(&g.to_toml()).ok().map(|a| a.hash()), Some(g.hash()));
        }
    }

    #[test]
    fn config_files_round_trip(
        batch_blocks in prop::option::of(any::<u32>()),
        hedge in prop::option::of(-10.0f64..10.0),
        drift in prop::option::of(0..=i64::MAX as u64),
        target_peers in prop::option::of(0..=i64::MAX as usize),
        api in prop::option::of(".{0,20}"),
        bootstrap in prop::option::of(prop::collection::vec(".{0,30}", 0..3)),
    ) {
        let mut file = FileConfig {
            api,
            bootstrap,
            ..FileConfig::default()
        };
        file.sync.batch_blocks = batch_blocks;
        file.sync.hedge_factor = hedge;
        file.sync.max_future_drift_ms = drift;
        file.net.target_peers = target_peers;
        let text = file.to_toml().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(FileConfig::parse(&text).ok(), Some(file));
    }

    #[test]
    fn mutated_config_files_are_refused_or_consistent(
        text in toml_text(include_str!("../concord.example.toml").to_string())
    ) {
        check_config_text(&text)?;
    }

    #[test]
    fn config_parser_survives_anything(text in ".{0,300}") {
        check_config_text(&text)?;
    }
}

/// Parses, applies and validates; what parses prints to text that parses to
/// the same text again (compared as text: a NaN factor is not equal to itself).
fn check_config_text(text: &str) -> Result<(), TestCaseError> {
    let Ok(file) = FileConfig::parse(text) else {
        return Ok(());
    };
    let (mut net, mut sync) = (NetConfig::default(), SyncConfig::default());
    file.net.apply(&mut net);
    file.sync.apply(&mut sync);
    let _ = validate_net(&net);
    let _ = validate_sync(&sync);
    if let Ok(written) = file.to_toml() {
        let again = FileConfig::parse(&written).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.to_toml().ok(), Some(written));
    }
    Ok(())
}

/// The allocation bound above is only as good as the counter: it must see a
/// large allocation made on this thread.
#[test]
fn the_allocation_counter_sees_allocations() {
    let (v, largest) = largest_allocation(|| vec![1u8; 3 * PREALLOC_CAP]);
    assert_eq!(v.len(), 3 * PREALLOC_CAP);
    assert!(largest >= 3 * PREALLOC_CAP);
    let ((), none) = largest_allocation(|| ());
    assert_eq!(none, 0);
}
