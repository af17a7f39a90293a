//! Prints the hex test vectors used in `protocols/*.md`, in the fenced-block
//! convention of `protocols/README.md`. The chain is the dev genesis plus
//! three blocks from `ChainGenerator` (seed 0, 16-byte bodies).
//!
//! `cargo run --example protocol_vectors`

use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, Block, BlockRef, Genesis};
use concord::protocol::*;
use serde::Serialize;

fn show<T: Serialize>(name: &str, value: &T) {
    let bytes = cbor4ii::serde::to_vec(Vec::new(), value).expect("encode");
    println!("```hex {name}");
    for chunk in bytes.chunks(32) {
        println!("{}", hex::encode(chunk));
    }
    println!("```\n");
}

fn main() {
    let g = Genesis::dev();
    let blocks: Vec<Block> =
        ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), 16, 0)
            .take(3)
            .collect();
    println!("dev genesis hash {}", g.hash());
    println!("dev authority {}", AuthorityKey::dev().public());
    for b in std::iter::once(g.block()).chain(&blocks) {
        println!(
            "block {} hash {} body_hash {} ts {} signing_bytes {}",
            b.height(),
            b.hash(),
            b.header.body_hash,
            b.header.timestamp_ms,
            hex::encode(b.header.signing_bytes())
        );
    }
    println!("genesis body {}", hex::encode(&g.block().body));
    println!();
    show("HeightRequest", &HeightRequest {});
    show(
        "HeightResponse",
        &HeightResponse {
            height: 3,
            tip: blocks[2].hash(),
        },
    );
    show("GenesisRequest", &GenesisRequest {});
    show("GenesisResponse", &GenesisResponse { genesis: g.hash() });
    show("Block", g.block());
    show("BlockHashRequest", &BlockHashRequest { height: 2 });
    show(
        "BlockHashResponse",
        &BlockHashResponse {
            height: 2,
            hash: Some(blocks[1].hash()),
        },
    );
    show(
        "BlockHashResponse",
        &BlockHashResponse {
            height: 99,
            hash: None,
        },
    );
    show("BlocksRequest", &BlocksRequest { start: 1, count: 2 });
    show(
        "BlocksResponse",
        &BlocksResponse {
            blocks: blocks[..2].to_vec(),
        },
    );
    show("BlocksResponse", &BlocksResponse { blocks: vec![] });
    show("Block", &blocks[0]);
    show(
        "AnnounceRequest",
        &AnnounceRequest {
            height: 3,
            tip: blocks[2].hash(),
        },
    );
    show("AnnounceResponse", &AnnounceResponse {});
}
