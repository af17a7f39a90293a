//! A deterministic simulated network for the sync engine: scripted peers,
//! simulated latency, bandwidth and time, no sockets and no threads.
//!
//! The real [`SyncEngine`] runs against it; honest and Byzantine peers are
//! [`Behaviour`]s. Used by the engine's unit tests, `tests/sync_sim.rs` and
//! anything else that wants to drive sync at scale. Owns nothing outside
//! itself: it does no I/O.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::chain::{Block, BlockRef, Hash, ValidationError};
use crate::protocol::limits;
use crate::sync::engine::{
    Action, Failure, LocalChain, Request, Response, StoreFailure, SyncEngine,
};
use crate::sync::peer_book::Penalty;
use crate::sync::SyncConfig;

/// How a simulated peer behaves.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Serves and votes its chain truthfully.
    Honest,
    /// Honest but `factor` times slower (latency and bandwidth).
    Slow(u32),
    /// Answers status queries, never answers block requests.
    Stalling,
    /// Reports `extra` more blocks than it has (serves what it has).
    InflateHeight(u64),
    /// Serves and votes a forged chain of the same height (valid format, other content).
    Forged(Arc<Vec<Block>>),
    /// Serves honest blocks, votes a wrong hash for everything.
    WrongVotes,
    /// Runs another genesis.
    WrongGenesis,
    /// Serves honestly but never answers block-hash queries (votes).
    MuteVoter,
    /// Drops the connection whenever it is asked for blocks; comes back after `back_after`.
    Disconnects { back_after: Duration },
    /// Connects and never answers anything (it never even reports in).
    Silent,
}

impl Behaviour {
    /// Whether this peer tells the truth (tests check none of these is banned).
    pub fn is_honest(&self) -> bool {
        matches!(self, Behaviour::Honest | Behaviour::Slow(_))
    }
}

/// A simulated peer.
pub struct SimPeer {
    pub behaviour: Behaviour,
    /// One-way latency.
    pub latency: Duration,
    /// Bytes per second it sends.
    pub bandwidth: u64,
    /// Its chain, indexed by height (genesis at 0).
    pub chain: Arc<Vec<Block>>,
    pub connected: bool,
    /// When its uplink finishes sending what it was already asked for:
    /// concurrent responses share the peer's bandwidth, so a slow peer's
    /// queue grows with every request it is given.
    pub link_free_at: Instant,
}

/// Our simulated local store.
#[derive(Clone, Debug)]
pub struct SimChain {
    pub refs: Vec<BlockRef>,
    /// Heights whose reads fail as on a damaged store (`StoreFailure::Io`).
    pub unreadable: Option<std::ops::Range<u64>>,
}

impl SimChain {
    pub fn from_blocks(blocks: &[Block]) -> SimChain {
        SimChain {
            refs: blocks.iter().map(block_ref).collect(),
            unreadable: None,
        }
    }
    pub fn tip(&self) -> BlockRef {
        self.refs[self.refs.len() - 1]
    }
}

#[derive(Clone)]
struct SharedChain(Arc<Mutex<SimChain>>);

impl LocalChain for SharedChain {
    fn tip(&self) -> BlockRef {
        self.0
            .lock()
            .map(|c| c.tip())
            .unwrap_or_else(|p| p.into_inner().tip())
    }
    fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreFailure> {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.unreadable.as_ref().is_some_and(|r| r.contains(&height)) {
            return Err(StoreFailure::Io(format!(
                "simulated read error at #{height}"
            )));
        }
        Ok(c.refs.get(height as usize).map(|r| r.hash))
    }
}

enum Event {
    Deliver {
        id: u64,
        result: Result<Response, Failure>,
    },
    Disconnect {
        peer: PeerId,
    },
    Reconnect {
        peer: PeerId,
    },
    Validated {
        batch: u64,
        result: Result<(), ValidationError>,
    },
    Import {
        batch: u64,
        blocks: Arc<Vec<Block>>,
    },
    RolledBack {
        result: Result<BlockRef, StoreFailure>,
    },
}

/// Slot length the simulated engine links batches with: the sim's unsigned
/// chains and the dev chain both put block `h` in a slot of its own, 1 s apart.
pub const SIM_SLOT_MS: u64 = 1000;

/// Validates a segment; the real one is `chain::validate::validate_segment`.
pub type Validator = Box<dyn Fn(&[Block]) -> Result<(), ValidationError>>;

/// Observations over a run.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub bans: Vec<(PeerId, Penalty)>,
    pub max_held_bytes: u64,
    pub max_pending_blocks: u64,
    pub max_batches: usize,
    pub steps: u64,
    /// Non-empty block responses each peer sent (whether or not they arrived first).
    pub served: BTreeMap<PeerId, u64>,
    /// Every rollback of the stored chain, with the connected peers' chains
    /// at the first dropped height as the simulator (not the engine) sees them.
    pub rollbacks: Vec<RollbackSeen>,
}

/// What the connected peers held at the first height a rollback dropped,
/// counted by the simulator from their chains: an oracle for the fork-choice
/// rule that does not trust the engine's own tally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackSeen {
    /// The first height dropped.
    pub height: u64,
    /// Connected peers whose chain reaches `height`.
    pub voters: usize,
    /// Of those, the ones holding the block we dropped.
    pub agree: usize,
    /// The largest group holding one other block there.
    pub majority: usize,
}

impl RollbackSeen {
    /// Whether the fork-choice rule allowed this rollback: at least `quorum`
    /// voters and 2/3 of them on one other block.
    pub fn had_quorum(&self, quorum: usize) -> bool {
        self.voters >= quorum && 3 * self.majority >= 2 * self.voters
    }
}

/// The simulated network around one engine.
pub struct SimNet {
    pub engine: SyncEngine,
    pub now: Instant,
    /// Ordered, so that anything iterating the peers is reproducible.
    pub peers: BTreeMap<PeerId, SimPeer>,
    pub local: Arc<Mutex<SimChain>>,
    /// Time validation and import take per block (simulated CPU and disk).
    pub cost_per_block: Duration,
    import_busy_until: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    validator: Validator,
    genesis_hash: Hash,
    rng: u64,
    /// Forged hashes that wrong voters answer with.
    pub report: SimReport,
    /// While set, every import fails as on a full disk (nothing stored).
    pub disk_full: bool,
}

impl SimNet {
    /// A network around an engine whose store holds `local` (genesis first).
    pub fn new(config: SyncConfig, local: &[Block], validator: Validator, seed: u64) -> SimNet {
        let now = Instant::now();
        let chain = Arc::new(Mutex::new(SimChain::from_blocks(local)));
        let genesis_hash = local[0].hash();
        let engine = SyncEngine::new(
            config,
            genesis_hash,
            SIM_SLOT_MS,
            Box::new(SharedChain(chain.clone())),
            now,
        );
        SimNet {
            engine,
            now,
            peers: BTreeMap::new(),
            local: chain,
            cost_per_block: Duration::from_micros(5),
            import_busy_until: now,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            validator,
            genesis_hash,
            rng: seed | 1,
            report: SimReport::default(),
            disk_full: false,
        }
    }

    /// Adds a connected peer. Its id is derived from the network's seed, so
    /// a run is reproducible down to the peer ids (which break ties).
    pub fn add_peer(
        &mut self,
        behaviour: Behaviour,
        latency: Duration,
        chain: Arc<Vec<Block>>,
    ) -> PeerId {
        let id = self.next_peer_id();
        let bandwidth = match behaviour {
            Behaviour::Slow(f) => 100_000_000 / u64::from(f.max(1)),
            _ => 100_000_000,
        };
        let latency = match behaviour {
            Behaviour::Slow(f) => latency * f,
            _ => latency,
        };
        self.peers.insert(
            id,
            SimPeer {
                behaviour,
                latency,
                bandwidth,
                chain,
                connected: true,
                link_free_at: self.now,
            },
        );
        self.engine.handle_peer_connected(id, self.now);
        self.pump();
        id
    }

    /// Disconnects `peer` now (it may be added back with [`SimNet::reconnect`]).
    pub fn disconnect(&mut self, peer: PeerId) {
        self.at(Duration::ZERO, Event::Disconnect { peer });
    }

    /// Connects a peer that was disconnected.
    pub fn reconnect(&mut self, peer: PeerId) {
        self.at(Duration::ZERO, Event::Reconnect { peer });
    }

    /// Our tip.
    pub fn tip(&self) -> BlockRef {
        SharedChain(self.local.clone()).tip()
    }

    /// Runs until `done` holds or `limit` of simulated time passes; returns whether it held.
    ///
    /// # Panics
    ///
    /// If the engine asks to be woken again and again without time passing
    /// (a spin: on a real node, a core at 100%).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&SimNet) -> bool) -> bool {
        let end = self.now + limit;
        let mut same_instant = 0u32;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            let next_event = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.engine.poll_timeout();
            let next = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return false,
                },
            };
            if next > end {
                self.now = end;
                return done(self);
            }
            if next <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 100_000,
                    "the engine spins: woken 100,000 times at one instant ({:?})",
                    self.engine.status(self.now)
                );
            } else {
                same_instant = 0;
            }
            self.now = self.now.max(next);
            self.report.steps += 1;
            let mut fired = false;
            while let Some(Reverse((t, seq))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                fired = true;
                if let Some(ev) = self.events.remove(&seq) {
                    self.dispatch(ev);
                }
            }
            if !fired || next_timer.is_some_and(|t| t <= self.now) {
                self.engine.handle_timeout(self.now);
            }
            let s = self.engine.status(self.now);
            self.report.max_pending_blocks = self.report.max_pending_blocks.max(s.pending_blocks);
            self.report.max_held_bytes = self.report.max_held_bytes.max(self.engine.held_bytes());
            self.report.max_batches = self.report.max_batches.max(self.engine.batches().count());
        }
    }

    fn at(&mut self, delay: Duration, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + delay, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn dispatch(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Deliver { id, result } => self.engine.handle_response(id, result, now),
            Event::Disconnect { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = false;
                }
                self.engine.handle_peer_disconnected(peer, now);
            }
            Event::Reconnect { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = true;
                }
                self.engine.handle_peer_connected(peer, now);
            }
            Event::Validated { batch, result } => self.engine.handle_validated(batch, result, now),
            Event::Import { batch, blocks } => {
                // The store applies the segment when the simulated write completes.
                let result = self.import(&blocks);
                self.engine.handle_imported(batch, result, now)
            }
            Event::RolledBack { result } => self.engine.handle_rolled_back(result, now),
        }
    }

    /// Carries out every action the engine has queued.
    fn pump(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { id, peer, request } => self.serve(id, peer, request),
                Action::Validate { batch, blocks } => {
                    let result = (self.validator)(&blocks);
                    let cost = self.cost_per_block * blocks.len() as u32;
                    self.at(cost, Event::Validated { batch, result });
                }
                Action::Import { batch, blocks } => {
                    // The store imports one segment at a time, in order.
                    let cost = self.cost_per_block * blocks.len() as u32;
                    let done = self.import_busy_until.max(self.now) + cost;
                    self.import_busy_until = done;
                    self.at(done - self.now, Event::Import { batch, blocks });
                }
                Action::Rollback { height } => {
                    self.see_rollback(height);
                    let result = {
                        let mut c = self.local.lock().unwrap_or_else(|p| p.into_inner());
                        c.refs.truncate(height as usize + 1);
                        Ok(c.tip())
                    };
                    self.at(Duration::from_millis(1), Event::RolledBack { result });
                }
                Action::Ban { peer, reason, .. } => {
                    self.report.bans.push((peer, reason));
                    if let Some(p) = self.peers.get_mut(&peer) {
                        if p.connected {
                            p.connected = false;
                            self.at(Duration::from_millis(1), Event::Disconnect { peer });
                        }
                    }
                }
            }
        }
    }

    fn see_rollback(&mut self, to: u64) {
        let first = to + 1;
        let Some(ours) = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refs
            .get(first as usize)
            .map(|r| r.hash)
        else {
            return;
        };
        let mut groups: BTreeMap<Hash, usize> = BTreeMap::new();
        for p in self.peers.values().filter(|p| p.connected) {
            if let Some(b) = p.chain.get(first as usize) {
                *groups.entry(b.hash()).or_default() += 1;
            }
        }
        let seen = RollbackSeen {
            height: first,
            voters: groups.values().sum(),
            agree: groups.get(&ours).copied().unwrap_or(0),
            majority: groups
                .iter()
                .filter(|(h, _)| **h != ours)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0),
        };
        self.report.rollbacks.push(seen);
    }

    fn import(&mut self, blocks: &[Block]) -> Result<BlockRef, StoreFailure> {
        if self.disk_full {
            return Err(StoreFailure::DiskFull(
                "block file: No space left on device (os error 28)".into(),
            ));
        }
        let mut c = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let tip = c.tip();
        if blocks[0].height() != tip.height + 1 || blocks[0].header.parent != tip.hash {
            return Err(StoreFailure::NotLinked(format!(
                "segment at {} does not extend tip {}",
                blocks[0].height(),
                tip.height
            )));
        }
        c.refs.extend(blocks.iter().map(block_ref));
        Ok(c.tip())
    }

    /// A peer id drawn from the network's seed (an ed25519 key from seeded bytes).
    fn next_peer_id(&mut self) -> PeerId {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.random().to_le_bytes());
        }
        libp2p::identity::Keypair::ed25519_from_bytes(bytes)
            .expect("any 32 bytes are an ed25519 secret key")
            .public()
            .to_peer_id()
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A peer answers (or not) according to its behaviour.
    fn serve(&mut self, id: u64, peer: PeerId, request: Request) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if !p.connected {
            self.at(
                Duration::from_millis(1),
                Event::Deliver {
                    id,
                    result: Err(Failure::Disconnected),
                },
            );
            return;
        }
        let (latency, chain, behaviour, bandwidth) =
            (p.latency, p.chain.clone(), p.behaviour.clone(), p.bandwidth);
        let rtt = latency * 2 + Duration::from_micros(self.random() % 500);
        let top = chain.len() as u64 - 1;
        let response = match (&behaviour, request) {
            (Behaviour::Silent, _) => return,
            (Behaviour::WrongGenesis, Request::Genesis) => Response::Genesis(Hash([0xee; 32])),
            (_, Request::Genesis) => Response::Genesis(self.genesis_hash),
            (Behaviour::InflateHeight(extra), Request::Height) => Response::Height {
                height: top + extra,
                tip: Hash([0xaa; 32]),
            },
            (Behaviour::Forged(f), Request::Height) => Response::Height {
                height: f.len() as u64 - 1,
                tip: f[f.len() - 1].hash(),
            },
            (_, Request::Height) => Response::Height {
                height: top,
                tip: chain[top as usize].hash(),
            },
            (Behaviour::MuteVoter, Request::BlockHash { .. }) => return,
            (Behaviour::WrongVotes, Request::BlockHash { height }) => Response::BlockHash {
                height,
                hash: (height <= top).then(|| Hash::digest(&height.to_le_bytes())),
            },
            (Behaviour::Forged(f), Request::BlockHash { height }) => Response::BlockHash {
                height,
                hash: f.get(height as usize).map(Block::hash),
            },
            (_, Request::BlockHash { height }) => Response::BlockHash {
                height,
                hash: chain.get(height as usize).map(Block::hash),
            },
            (Behaviour::Stalling, Request::Blocks { .. }) => return,
            (Behaviour::Disconnects { back_after }, Request::Blocks { .. }) => {
                let back = *back_after;
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = false;
                }
                self.at(rtt / 2, Event::Disconnect { peer });
                self.at(back, Event::Reconnect { peer });
                return;
            }
            (b, Request::Blocks { start, count }) => {
                let source = match b {
                    Behaviour::Forged(f) => f.clone(),
                    _ => chain,
                };
                Response::Blocks(range(&source, start, count))
            }
        };
        if matches!(&response, Response::Blocks(bs) if !bs.is_empty()) {
            *self.report.served.entry(peer).or_default() += 1;
        }
        let bytes: u64 = match &response {
            Response::Blocks(bs) => bs.iter().map(|b| b.body.len() as u64 + 180).sum(),
            _ => 64,
        };
        let transfer = Duration::from_secs_f64(bytes as f64 / bandwidth as f64);
        let now = self.now;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let sending = (now + rtt / 2).max(p.link_free_at);
        p.link_free_at = sending + transfer;
        let arrives = p.link_free_at + rtt / 2;
        self.at(
            arrives.saturating_duration_since(now),
            Event::Deliver {
                id,
                result: Ok(response),
            },
        );
    }
}

/// What an honest server returns for a range: consecutive blocks within the
/// count cap and the byte budget, at least one if it has `start`.
pub fn range(chain: &[Block], start: u64, count: u32) -> Vec<Block> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let count = count.min(limits::MAX_BLOCKS_PER_REQUEST) as u64;
    for h in start..start.saturating_add(count) {
        let Some(b) = chain.get(h as usize) else {
            break;
        };
        let size = b.body.len() + 180;
        if !out.is_empty() && bytes + size > limits::RESPONSE_BYTE_BUDGET {
            break;
        }
        bytes += size;
        out.push(b.clone());
    }
    out
}

/// Peers never banned in a run, by honesty.
pub fn banned_honest(net: &SimNet) -> Vec<PeerId> {
    let banned: HashSet<PeerId> = net.report.bans.iter().map(|(p, _)| *p).collect();
    net.peers
        .iter()
        .filter(|(id, p)| p.behaviour.is_honest() && banned.contains(id))
        .map(|(id, _)| *id)
        .collect()
}

fn block_ref(b: &Block) -> BlockRef {
    BlockRef {
        height: b.height(),
        hash: b.hash(),
        timestamp_ms: b.header.timestamp_ms,
    }
}

/// An unsigned test chain of `n` blocks after a fixed genesis, linked and
/// with correct body hashes; `salt` gives forks (same genesis, other blocks).
/// For engine tests whose validator checks links and bodies only.
pub fn unsigned_chain(n: u64, body_size: usize, salt: u8) -> Vec<Block> {
    use crate::chain::{BlockHeader, PublicKey, Signature};
    let mut out = Vec::with_capacity(n as usize + 1);
    let genesis = Block {
        header: BlockHeader {
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: 0,
            body_hash: Hash::digest(b"sim genesis"),
            producer: PublicKey::ZERO,
            signature: Signature::ZERO,
        },
        body: bytes::Bytes::from_static(b"sim genesis"),
    };
    out.push(genesis);
    extend_unsigned(&mut out, n, body_size, salt);
    out
}

/// Appends `n` unsigned blocks to `chain` (see [`unsigned_chain`]).
pub fn extend_unsigned(chain: &mut Vec<Block>, n: u64, body_size: usize, salt: u8) {
    use crate::chain::{BlockHeader, PublicKey, Signature};
    for _ in 0..n {
        let parent = &chain[chain.len() - 1];
        let height = parent.height() + 1;
        let mut body = vec![salt; body_size];
        body[..8.min(body_size)].copy_from_slice(&height.to_le_bytes()[..8.min(body_size)]);
        let b = Block {
            header: BlockHeader {
                height,
                parent: parent.hash(),
                timestamp_ms: height * 1000,
                body_hash: Hash::digest(&body),
                producer: PublicKey::ZERO,
                signature: Signature::ZERO,
            },
            body: body.into(),
        };
        chain.push(b);
    }
}

/// A validator for [`unsigned_chain`]s: internal links and body hashes.
pub fn unsigned_validator() -> Validator {
    Box::new(|blocks: &[Block]| {
        for w in blocks.windows(2) {
            if w[1].header.parent != w[0].hash() {
                return Err(ValidationError::WrongParent {
                    height: w[1].height(),
                });
            }
        }
        for b in blocks {
            if Hash::digest(&b.body) != b.header.body_hash {
                return Err(ValidationError::BodyHashMismatch { height: b.height() });
            }
        }
        Ok(())
    })
}
