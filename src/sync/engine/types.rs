//! The engine's inputs and outputs: the types a driver or a test harness
//! exchanges with [`super::SyncEngine`]. Plain data, no behaviour beyond labels.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::chain::{Block, BlockRef, Hash};
use crate::sync::batch::{BatchId, ReqId};
use crate::sync::fork_choice::Side;
use crate::sync::peer_book::Penalty;

/// Read access to the local chain.
pub trait LocalChain: Send {
    /// The stored tip.
    fn tip(&self) -> BlockRef;
    /// Our block hash at `height`, if we hold one. A read error is an error,
    /// never "no block": taken for a block the peers do not hold, it could
    /// turn into a deeper rollback than the chain calls for.
    fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreFailure>;
}

/// Why the store could not do what the engine asked (read, import, roll
/// back). The engine never decides anything about the chain on one: it logs
/// it and starts over from what the store confirms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    /// The segment does not extend the stored tip (someone else moved it).
    #[error("the segment does not extend the stored tip: {0}")]
    NotLinked(String),
    /// Reading or writing failed (I/O, a damaged store).
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The disk (or the user's quota) is full: nothing of the segment was
    /// committed. A state, not a fault: downloads pause until a retry works.
    #[error("disk full: {0}")]
    DiskFull(String),
}

/// A request the engine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Genesis,
    Height,
    BlockHash { height: u64 },
    Blocks { start: u64, count: u32 },
}

impl Request {
    /// Protocol label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Genesis => "genesis",
            Request::Height => "height",
            Request::BlockHash { .. } => "block_hash",
            Request::Blocks { .. } => "blocks",
        }
    }
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Genesis(Hash),
    Height { height: u64, tip: Hash },
    BlockHash { height: u64, hash: Option<Hash> },
    Blocks(Vec<Block>),
}

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time (small penalty).
    Timeout,
    /// The connection went away (no penalty: the disconnect is handled on its own).
    Disconnected,
    /// Undecodable or oversize answer (penalty).
    Malformed,
    /// The peer does not speak the protocol.
    Unsupported,
}

/// What the engine asks its driver to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send `request` to `peer`; answer with `handle_response(id, …)`.
    Send {
        id: ReqId,
        peer: PeerId,
        request: Request,
    },
    /// Validate `blocks` as a chain segment (signatures included), and that
    /// none is too far ahead of the wall clock, and answer with
    /// `handle_validated(batch, …)`. Linking the first block to its parent
    /// (hash, height, one block per slot) is the engine's job, so this needs
    /// no context.
    Validate {
        batch: BatchId,
        blocks: Arc<Vec<Block>>,
    },
    /// Append `blocks` to the store, atomically, in the order these actions
    /// come; answer with `handle_imported(batch, …)`.
    Import {
        batch: BatchId,
        blocks: Arc<Vec<Block>>,
    },
    /// Atomically remove every block above `height`; answer with `handle_rolled_back`.
    Rollback { height: u64 },
    /// Disconnect `peer` and refuse it for `duration`.
    Ban {
        peer: PeerId,
        duration: Duration,
        reason: Penalty,
    },
}

/// What the engine is doing, for status and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Downloading toward the target or following the tip.
    Normal,
    /// Searching for the common ancestor with the majority chain.
    Searching,
    /// Waiting for the store to roll back.
    RollingBack,
    /// A reorg deeper than allowed: sync stopped until reset.
    Halted(String),
    /// No block at `height` has a 2/3 majority: nothing is fetched until the
    /// balance changes (a peer joins or leaves) or a backoff passes.
    Split { height: u64, sides: Vec<Side> },
}

impl Mode {
    /// Stable name for status and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Searching => "searching",
            Mode::RollingBack => "rolling_back",
            Mode::Halted(_) => "halted",
            Mode::Split { .. } => "split",
        }
    }

    /// Every mode's name (for metrics that show all of them).
    pub const NAMES: [&'static str; 5] = ["normal", "searching", "rolling_back", "halted", "split"];
}

/// Counters since start (monotonic), for metrics and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub blocks_imported: u64,
    pub bytes_imported: u64,
    pub bytes_downloaded: u64,
    /// Non-empty blocks responses received (hedge copies included).
    pub blocks_responses: u64,
    pub requests_sent: HashMap<&'static str, u64>,
    pub retries: u64,
    pub hedges: u64,
    pub votes_won: u64,
    pub votes_lost: u64,
    pub votes_inconclusive: u64,
    pub penalties: HashMap<&'static str, u64>,
    pub bans: HashMap<&'static str, u64>,
    pub reorgs: u64,
    /// Chain polls run (is our chain still the majority's?).
    pub polls: u64,
    /// Times the node found the peers split with no 2/3 majority.
    pub splits: u64,
    /// Times the node refused a reorg deeper than `max_reorg_depth`.
    pub halts: u64,
    /// Times a peer was newly judged to be on another fork.
    pub fork_judgments: u64,
    /// Peers or blocks refused for contradicting a checkpoint.
    pub checkpoint_rejections: u64,
    /// Downloaded batches put off because a block was too far ahead of our clock.
    pub future_blocks: u64,
    /// Reads of our own chain that failed (each stopped a fork decision).
    pub store_read_errors: u64,
    /// When the first peer connected (the `now` of that input).
    pub first_peer_connected_at: Option<Instant>,
    /// When a peer first reported (or announced) a height above our stored tip.
    pub first_peer_ahead_at: Option<Instant>,
    /// When the first block download request was sent.
    pub first_blocks_request_at: Option<Instant>,
    /// Episodes of the in-order import waiting on its next batch while a
    /// later batch was already downloaded (see `engine::head_wait`).
    pub head_waits: u64,
    /// Time of those waits with the next batch still downloading (or not
    /// yet sent to anyone).
    pub head_wait_download: Duration,
    /// Time of those waits with the next batch downloaded, being validated
    /// or voted on.
    pub head_wait_check: Duration,
    /// Of both, the time the lookahead window was full meanwhile, so new
    /// downloads waited too: what a straggler costs in rate.
    pub head_wait_window_full: Duration,
    /// The same waits by the peer that held the batch up (first asked, or
    /// its server).
    pub head_wait_by_peer: HashMap<PeerId, Duration>,
    /// Non-empty blocks responses received from each peer (hedge copies
    /// included): how the scheduler shared the work out.
    pub responses_by_peer: HashMap<PeerId, u64>,
}

/// A snapshot for the node handle and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    pub height: u64,
    pub tip: Hash,
    /// The safe (2/3) target, if any peer reported a height.
    pub target: Option<u64>,
    /// The best height any peer claims.
    pub best: Option<u64>,
    pub syncing: bool,
    /// Blocks planned but not yet imported (awaiting, downloading, checking).
    pub pending_blocks: u64,
    /// Peers on our genesis and connected.
    pub peers: usize,
    pub batches_in_flight: usize,
    pub mode: Mode,
    /// Why sync is not progressing, when it is not.
    pub stalled: Option<String>,
    /// The last import failed for lack of disk space; downloads are paused
    /// and an import is retried with backoff.
    pub disk_full: bool,
    /// Why a producer must not extend our chain now (see
    /// `Engine::production_blocker`); `None` when it may.
    pub production_blocker: Option<String>,
}
