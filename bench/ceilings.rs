//! The machine's own ceilings, measured in the same run as the sync
//! scenarios: local import (validate + store from memory, no network),
//! verification only (what a syncing node cannot avoid: blake3 of every
//! body and header, ed25519 batch verification) and raw transport (bytes
//! through libp2p tcp+noise+yamux on 127.0.0.1).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::prelude::*;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{identity::Keypair, metrics::Registry, Multiaddr, StreamProtocol};
use serde::Serialize;

use crate::chains::ChainInfo;
use crate::cpu::{cpu_since, process_cpu};
use concord::chain::validate::validate_segment;
use concord::chain::{Block, BlockRef, Genesis};
use concord::net::bench_read::{read_lent, ReadBuffers};
use concord::protocol::limits::RESPONSE_BYTE_BUDGET;
use concord::store::Store;
use concord::sync::SyncConfig;

/// A measured rate.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rate {
    pub secs: f64,
    pub blocks_per_s: f64,
    /// Millions of bytes (of encoded blocks, or raw payload) per second.
    pub mb_per_s: f64,
    /// CPU seconds this process spent while timed (every thread: both
    /// swarms of the raw transport, every validating thread of an import).
    pub cpu_secs: f64,
}

impl Rate {
    /// CPU seconds per MB moved or imported.
    pub fn cpu_per_mb(&self) -> f64 {
        self.cpu_secs / (self.mb_per_s * self.secs).max(1e-9)
    }
}

/// Local import ceiling: the chain's blocks are read into memory in the
/// batches sync uses (at most `batch_blocks`, at most the 4 MiB response
/// budget), then validated (`validate_segment`, batches in parallel on every
/// core, as the driver does on the blocking pool) and imported in order
/// (`Store::import`, one writer) into a fresh store in `work`. Only the
/// validate+import phase is timed.
pub fn local_import(genesis: &Genesis, chain: &ChainInfo, work: &Path) -> anyhow::Result<Rate> {
    let batches = load_batches(genesis, chain)?;
    let _ = std::fs::remove_dir_all(work);
    let dst = Store::open(work, genesis)?;
    crate::settle::settle(chain.encoded_bytes);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (started, cpu0) = (Instant::now(), process_cpu());
    let cursor = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, Arc<Vec<Block>>)>(threads * 2);
    let result: anyhow::Result<()> = std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (cursor, batches) = (&cursor, &batches);
            s.spawn(move || loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                let Some((parent, blocks)) = batches.get(i) else {
                    return;
                };
                if validate_segment(genesis, parent, blocks).is_err()
                    || tx.send((i, blocks.clone())).is_err()
                {
                    return;
                }
            });
        }
        drop(tx);
        let mut ready = BTreeMap::new();
        let mut want = 0usize;
        for (i, blocks) in rx {
            ready.insert(i, blocks);
            while let Some(blocks) = ready.remove(&want) {
                dst.import(&blocks)?;
                want += 1;
            }
        }
        anyhow::ensure!(want == batches.len(), "a batch failed validation");
        Ok(())
    });
    result?;
    let (secs, cpu_secs) = (started.elapsed().as_secs_f64(), cpu_since(cpu0));
    anyhow::ensure!(dst.tip().hash == chain.tip_hash(), "imported tip differs");
    drop(dst);
    let _ = std::fs::remove_dir_all(work);
    Ok(Rate {
        secs,
        blocks_per_s: chain.height as f64 / secs,
        mb_per_s: chain.encoded_bytes as f64 / secs / 1e6,
        cpu_secs,
    })
}

/// The chain's blocks in the batches sync uses (at most `batch_blocks`, at
/// most the 4 MiB response budget), each with its parent.
fn load_batches(
    genesis: &Genesis,
    chain: &ChainInfo,
) -> anyhow::Result<Vec<(BlockRef, Arc<Vec<Block>>)>> {
    let src = Store::open(&chain.dir, genesis)?;
    let per_batch = SyncConfig::default().batch_blocks;
    let mut batches: Vec<(BlockRef, Arc<Vec<Block>>)> = Vec::new();
    let mut parent = BlockRef::of(genesis.block());
    let mut next = 1u64;
    while next <= chain.height {
        let blocks = src.blocks_range(next, per_batch, RESPONSE_BYTE_BUDGET)?;
        anyhow::ensure!(!blocks.is_empty(), "chain cache is missing block {next}");
        next += blocks.len() as u64;
        let last = blocks.last().map(BlockRef::of).unwrap_or(parent);
        batches.push((parent, Arc::new(blocks)));
        parent = last;
    }
    Ok(batches)
}

/// Verification-only ceiling: what a syncing node cannot avoid doing to the
/// blocks whatever its design, on every core: blake3 of each body (checked
/// against the header's body hash), blake3 of each header (the block hash)
/// and ed25519 batch verification of the signatures, per batch of the
/// sizes sync uses. No chain rules, no store, no network. Blocks are loaded
/// first; only the verification is timed.
pub fn verify_only(genesis: &Genesis, chain: &ChainInfo) -> anyhow::Result<Rate> {
    let batches = load_batches(genesis, chain)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cursor = AtomicUsize::new(0);
    let (started, cpu0) = (Instant::now(), process_cpu());
    let ok = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (cursor, batches) = (&cursor, &batches);
                s.spawn(move || {
                    let mut keys: BTreeMap<[u8; 32], ed25519_dalek::VerifyingKey> = BTreeMap::new();
                    loop {
                        let i = cursor.fetch_add(1, Ordering::Relaxed);
                        let Some((_, blocks)) = batches.get(i) else {
                            return true;
                        };
                        let mut msgs = Vec::with_capacity(blocks.len());
                        let mut sigs = Vec::with_capacity(blocks.len());
                        let mut vks = Vec::with_capacity(blocks.len());
                        for b in blocks.iter() {
                            let h = &b.header;
                            if concord::chain::Hash::digest(&b.body) != h.body_hash {
                                return false;
                            }
                            msgs.push(h.hash());
                            sigs.push(ed25519_dalek::Signature::from_bytes(&h.signature.0));
                            let key = match keys.get(&h.producer.0) {
                                Some(k) => *k,
                                None => {
                                    match ed25519_dalek::VerifyingKey::from_bytes(&h.producer.0) {
                                        Ok(k) => *keys.entry(h.producer.0).or_insert(k),
                                        Err(_) => return false,
                                    }
                                }
                            };
                            vks.push(key);
                        }
                        let msgs: Vec<&[u8]> = msgs.iter().map(|m| &m.0[..]).collect();
                        if ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_err() {
                            return false;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().all(|w| w.join().unwrap_or(false))
    });
    let (secs, cpu_secs) = (started.elapsed().as_secs_f64(), cpu_since(cpu0));
    anyhow::ensure!(ok, "verification failed on the cached chain");
    Ok(Rate {
        secs,
        blocks_per_s: chain.height as f64 / secs,
        mb_per_s: chain.encoded_bytes as f64 / secs / 1e6,
        cpu_secs,
    })
}

/// Raw bytes over request-response: the request is the number of bytes
/// wanted (u32 BE), the response is that many bytes, read to EOF the way
/// the node reads a blocks response (into reused buffers).
#[derive(Clone)]
struct RawCodec {
    buffers: Arc<ReadBuffers>,
}

const RAW_PROTOCOL: StreamProtocol = StreamProtocol::new("/concord-bench/raw/1");

/// Longest raw response read: a response budget and some, as for blocks.
const RAW_RESPONSE_MAX: u64 = RESPONSE_BYTE_BUDGET as u64 + 1024;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = u32;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<u32>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut b = [0u8; 4];
        io.read_exact(&mut b).await?;
        Ok(u32::from_be_bytes(b))
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_lent(io, RAW_RESPONSE_MAX, &self.buffers)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "raw response too long"))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: u32) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.to_be_bytes()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Self::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&resp).await
    }
}

type RawSwarm = libp2p::Swarm<request_response::Behaviour<RawCodec>>;

/// The node's own transport stack ([`concord::net::build_swarm`]), so the
/// ceiling is the one sync runs on; its bandwidth metrics go to a registry
/// nobody reads.
fn raw_swarm() -> anyhow::Result<RawSwarm> {
    let behaviour = request_response::Behaviour::with_codec(
        RawCodec {
            buffers: ReadBuffers::new(4),
        },
        [(RAW_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
    );
    let key = Keypair::generate_ed25519();
    let idle = Duration::from_secs(60);
    Ok(concord::net::build_swarm(
        key,
        behaviour,
        idle,
        &mut Registry::default(),
    )?)
}

/// Raw transport ceiling: moves `volume` bytes from one swarm to another over
/// one connection (tcp+noise+yamux on 127.0.0.1) in `chunk`-byte responses
/// with `in_flight` requests outstanding (as sync asks one peer). Timed from
/// the first request to the last byte received.
pub async fn raw_transport(volume: u64, chunk: usize, in_flight: usize) -> anyhow::Result<Rate> {
    let mut server = raw_swarm()?;
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>()?)?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    let payload = Bytes::from((0..chunk).map(|i| (i * 7 + 13) as u8).collect::<Vec<u8>>());
    let serve = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = server.select_next_some().await
            {
                let _ = server
                    .behaviour_mut()
                    .send_response(channel, payload.clone());
            }
        }
    });
    let mut client = raw_swarm()?;
    client.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))?;
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
            break;
        }
    }
    let (started, cpu0) = (Instant::now(), process_cpu());
    let (mut sent, mut received, mut outstanding) = (0u64, 0u64, 0usize);
    let result = tokio::time::timeout(Duration::from_secs(600), async {
        while received < volume {
            while outstanding < in_flight && sent < volume {
                client
                    .behaviour_mut()
                    .send_request(&server_id, chunk as u32);
                sent += chunk as u64;
                outstanding += 1;
            }
            match client.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    received += response.len() as u64;
                    outstanding -= 1;
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => {
                    anyhow::bail!("raw transport request failed: {error}")
                }
                _ => {}
            }
        }
        Ok(())
    })
    .await;
    let (secs, cpu_secs) = (started.elapsed().as_secs_f64(), cpu_since(cpu0));
    serve.abort();
    result.map_err(|_| anyhow::anyhow!("raw transport timed out"))??;
    Ok(Rate {
        secs,
        blocks_per_s: 0.0,
        mb_per_s: received as f64 / secs / 1e6,
        cpu_secs,
    })
}
