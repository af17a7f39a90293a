//! Every tunable of the sync engine, with its default and the reason for it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::chain::Hash;

/// A block the operator vouches for (`--checkpoint HEIGHT:HASH`): the node
/// never imports or keeps a chain with another block at that height, and
/// disconnects peers whose chain has one (weak subjectivity, as Ethereum
/// clients' checkpoint sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    pub height: u64,
    pub hash: Hash,
}

/// Why a `HEIGHT:HASH` checkpoint did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint {0:?} is not HEIGHT:HASH (a block height, a colon, 64 hex digits)")]
    Format(String),
    #[error("checkpoint {0:?}: height 0 is the genesis, which the genesis file already pins")]
    Genesis(String),
}

impl FromStr for Checkpoint {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = || CheckpointError::Format(s.to_string());
        let (h, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let height: u64 = h.trim().parse().map_err(|_| bad())?;
        let hash = Hash::from_hex(hash.trim()).map_err(|_| bad())?;
        if height == 0 {
            return Err(CheckpointError::Genesis(s.to_string()));
        }
        Ok(Checkpoint { height, hash })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.height, self.hash)
    }
}

/// Tunables of the sync engine. Defaults are chosen for a LAN/testnet of
/// tens to hundreds of peers; each field documents its default.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    /// Most blocks asked for in one batch (default 2048). One batch is one
    /// request when the blocks fit in the response byte budget.
    pub batch_blocks: u32,
    /// Target encoded size of one batch (default 4 MiB, the server's response
    /// budget), used with the observed average block size to size batches.
    pub batch_bytes: u64,
    /// Most batches downloading at once across all peers (default 16).
    pub max_batches_in_flight: usize,
    /// From how many peers each batch is downloaded at once (default 1). The
    /// original design fetched everything from 3 peers (3x the bytes); here
    /// the vote verifies a batch for a few hundred bytes, and slow peers are
    /// hedged, so 1 is enough. Raise it only for very unreliable networks.
    pub redundancy: usize,
    /// Most block requests in flight to one peer (default 2).
    pub max_requests_per_peer: u32,
    /// Most batches validated at once, each on a blocking thread (default 0:
    /// one per core). Signature checks are CPU-bound: more than the cores
    /// only time-slices them, and the lowest batch, the one import waits
    /// for, always starts first.
    pub validation_threads: usize,
    /// Bound on the bytes held in downloaded-but-not-imported batches plus the
    /// estimated size of batches in flight (default 96 MiB). Keeps memory flat
    /// however far the node is behind.
    pub max_buffered_bytes: u64,
    /// New downloads wait up to this long for peers that just connected to
    /// report their genesis and height (default 300 ms), so that the first
    /// peer to answer cannot serve a batch before anyone else can vote on it.
    pub verify_grace: Duration,
    /// Hard timeout of a block request (default 10 s); the peer gets a small penalty.
    pub request_timeout: Duration,
    /// Hard timeout of the small requests: height, genesis, block hash (default 3 s).
    pub small_request_timeout: Duration,
    /// A block request slower than `hedge_factor` times the observed average
    /// block-request time (and at least `hedge_min`) is duplicated to another
    /// peer; the first valid answer wins (default 3.0 and 300 ms).
    pub hedge_factor: f64,
    /// Floor of the hedge delay (default 300 ms).
    pub hedge_min: Duration,
    /// Backoff before a batch is retried once every candidate peer has failed
    /// it (doubles per round, capped at 8x; default 500 ms).
    pub retry_backoff: Duration,
    /// How many peers (besides the one that served a batch) vote on its last
    /// hash in the first round (default 3).
    pub vote_quorum: usize,
    /// How many more peers are asked when the first round is not unanimous
    /// (default 16): a larger sample makes a false 2/3 majority of colluding
    /// peers vanishingly unlikely while there are fewer than 1/3 of them.
    pub vote_escalation: usize,
    /// Time a vote may take before silent voters count as abstaining (default 3 s).
    pub vote_timeout: Duration,
    /// How often every peer is asked for its height (default 5 s). New tips are
    /// also pushed by announcements, so this only keeps heights fresh.
    pub status_interval: Duration,
    /// A peer's reported height and tip older than this no longer count
    /// toward the sync target, and the peer is asked again (default 5 min, as
    /// the original design said). Must be longer than `status_interval`, or
    /// heights would lapse between two regular refreshes.
    pub status_ttl: Duration,
    /// Scores and bans are saved to the store at most this often, when they
    /// changed (and once at shutdown; default 5 s).
    pub persist_interval: Duration,
    /// How often the node checks that the majority agrees with its own tip
    /// hash while idle (default 30 s).
    pub consistency_interval: Duration,
    /// A reorg deeper than this halts sync with an error instead of rewriting
    /// history (default 1,000 blocks). Blocks taken on one peer's word while
    /// no other peer could vote on them are not counted: rolling them back
    /// rewrites nothing anyone vouched for.
    pub max_reorg_depth: u64,
    /// No stored block is rolled back within this long of the engine's start
    /// (default 10 s), so that the first peers to connect — possibly a few
    /// colluding ones — cannot decide before the peer set has formed.
    pub rollback_settle: Duration,
    /// When no block has a 2/3 majority (a split), how long the node waits
    /// before looking again if nothing changes meanwhile (default 10 s,
    /// doubling per unchanged look, capped at 8x). A peer joining or leaving
    /// ends the wait at once.
    pub split_backoff: Duration,
    /// A block producer extends its chain only when sync says it may: synced
    /// to the safe target, its peers agreeing with its tip. With no peers at
    /// all, a node with no `--bootstrap` address and an empty address book
    /// produces alone once this long has passed since start (default 5 s,
    /// time for mDNS to find a neighbour): that is a one-node network. A
    /// node with somewhere to dial never produces without peers, so an
    /// authority restarted on a stale tip or cut off from its network does
    /// not build a fork.
    pub produce_alone_after: Duration,
    /// Blocks the operator vouches for (default none); sorted by height.
    pub checkpoints: Vec<Checkpoint>,
    /// No imported block for this long while behind raises a stall warning
    /// with its reason (default 15 s).
    pub stall_timeout: Duration,
    /// After an import failed for lack of disk space, downloads pause this
    /// long before an import is tried again (default 1 s); the pause doubles
    /// with each failed retry.
    pub disk_full_retry: Duration,
    /// The longest pause between import retries on a full disk (default 30 s).
    pub disk_full_retry_max: Duration,
    /// How long a peer that lied, served invalid data or is on another genesis
    /// stays banned (default 10 min).
    pub ban_duration: Duration,
    /// Score at or below which a peer is banned (default -100).
    pub ban_threshold: i32,
    /// A downloaded block whose timestamp is more than this far ahead of the
    /// local clock is not accepted yet: its batch is fetched again after a
    /// backoff, and its server is not punished (clocks differ; the block is
    /// early, not invalid). Default 2 s: honest producers stamp a block with
    /// the start of its slot, never later than their clock, so the drift
    /// only has to cover clock skew (NTP keeps it to milliseconds; 2 s also
    /// covers an unsynchronized clock off by a second or so). It is also how
    /// early an authority may claim one of its slots, skipping the slots of
    /// others before it, so it is kept to a couple of slots of the dev
    /// network, as Aura allows one slot and geth's 15 s is about one block.
    pub max_future_drift: Duration,
    /// Seed of the engine's random choices (voter sampling, tie breaks), so a
    /// run is reproducible (default 0; the node uses its peer id).
    pub seed: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_blocks: 2048,
            batch_bytes: 4 * 1024 * 1024,
            max_batches_in_flight: 16,
            redundancy: 1,
            max_requests_per_peer: 2,
            validation_threads: 0,
            max_buffered_bytes: 96 * 1024 * 1024,
            verify_grace: Duration::from_millis(300),
            request_timeout: Duration::from_secs(10),
            small_request_timeout: Duration::from_secs(3),
            hedge_factor: 3.0,
            hedge_min: Duration::from_millis(300),
            retry_backoff: Duration::from_millis(500),
            vote_quorum: 3,
            vote_escalation: 16,
            vote_timeout: Duration::from_secs(3),
            status_interval: Duration::from_secs(5),
            status_ttl: Duration::from_secs(300),
            persist_interval: Duration::from_secs(5),
            consistency_interval: Duration::from_secs(30),
            max_reorg_depth: 1000,
            rollback_settle: Duration::from_secs(10),
            split_backoff: Duration::from_secs(10),
            produce_alone_after: Duration::from_secs(5),
            checkpoints: Vec::new(),
            stall_timeout: Duration::from_secs(15),
            disk_full_retry: Duration::from_secs(1),
            disk_full_retry_max: Duration::from_secs(30),
            ban_duration: Duration::from_secs(600),
            ban_threshold: -100,
            max_future_drift: Duration::from_secs(2),
            seed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_parse_and_print_as_height_colon_hash() {
        let hex = "ab".repeat(32);
        let c: Checkpoint = format!("1200:{hex}").parse().unwrap();
        assert_eq!(c.height, 1200);
        assert_eq!(c.to_string(), format!("1200:{hex}"));
        for bad in ["1200", ":abc", "x:ab", "12:abcd", &format!("0:{hex}")] {
            assert!(bad.parse::<Checkpoint>().is_err(), "{bad}");
        }
    }
}
