//! What the node remembers about its peers between runs, in the `peers`
//! tree of the same sled database: scores and bans (with their expiry) and
//! the address book.
//!
//! Owns the on-disk form of these records only. The records are plain data
//! (peer ids and multiaddrs as their byte encodings, times as Unix ms, names
//! as strings): the store does not know the network's types, and what the
//! records mean — which bans are still in force, which addresses are worth
//! dialing — is decided by the sync driver and the network, not here.
//!
//! | key                      | value                      |
//! |--------------------------|----------------------------|
//! | `r` ++ peer id bytes     | CBOR [`PeerRecord`]        |
//! | `a` ++ peer id bytes     | CBOR [`AddressRecord`]     |
//!
//! Each kind is saved whole: one atomic batch replaces every record of that
//! kind, so a crash leaves either the old set or the new one.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

const SCORE_PREFIX: u8 = b'r';
const ADDRESS_PREFIX: u8 = b'a';

/// A peer's score and ban.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    pub score: i32,
    /// Unix ms at which its ban ends, and the ban's reason.
    pub banned_until_ms: Option<u64>,
    pub ban_reason: Option<String>,
    /// Unix ms at which the peer left; `None` if it was connected when
    /// saved (and in records written before this field existed).
    #[serde(default)]
    pub left_ms: Option<u64>,
}

/// One address-book entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AddressRecord {
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    /// Multiaddr byte encodings.
    pub addrs: Vec<serde_bytes::ByteBuf>,
    pub last_seen_ms: u64,
    pub successes: u32,
    pub failures: u32,
    pub source: String,
}

/// Everything saved about peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerData {
    pub scores: Vec<PeerRecord>,
    pub addresses: Vec<AddressRecord>,
}

fn key(prefix: u8, peer: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + peer.len());
    k.push(prefix);
    k.extend_from_slice(peer);
    k
}

impl Store {
    /// Loads every saved peer record. A record that does not decode is
    /// skipped with a warning: losing one peer's memory is better than
    /// refusing to start.
    pub fn load_peers(&self) -> Result<PeerData, StoreError> {
        let files = self.files()?;
        let tree = &files.peers;
        let mut data = PeerData::default();
        for item in tree.scan_prefix([SCORE_PREFIX]) {
            let (k, v) = item?;
            match cbor4ii::serde::from_slice::<PeerRecord>(&v) {
                Ok(r) => data.scores.push(r),
                Err(e) => {
                    tracing::warn!(key = ?k, error = %e, "skipping an unreadable peer record")
                }
            }
        }
        for item in tree.scan_prefix([ADDRESS_PREFIX]) {
            let (k, v) = item?;
            match cbor4ii::serde::from_slice::<AddressRecord>(&v) {
                Ok(r) => data.addresses.push(r),
                Err(e) => {
                    tracing::warn!(key = ?k, error = %e, "skipping an unreadable address record")
                }
            }
        }
        Ok(data)
    }

    /// Replaces the saved scores and bans with `records`.
    pub fn save_peer_scores(&self, records: &[PeerRecord]) -> Result<(), StoreError> {
        self.replace(
            SCORE_PREFIX,
            records
                .iter()
                .map(|r| (key(SCORE_PREFIX, &r.peer), encode(r))),
        )
    }

    /// Replaces the saved address book with `records`.
    pub fn save_addresses(&self, records: &[AddressRecord]) -> Result<(), StoreError> {
        self.replace(
            ADDRESS_PREFIX,
            records
                .iter()
                .map(|r| (key(ADDRESS_PREFIX, &r.peer), encode(r))),
        )
    }

    fn replace(
        &self,
        prefix: u8,
        records: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let files = self.files()?;
        let tree = &files.peers;
        let mut batch = sled::Batch::default();
        let mut keep = std::collections::HashSet::new();
        for (k, v) in records {
            batch.insert(k.as_slice(), v);
            keep.insert(k);
        }
        for item in tree.scan_prefix([prefix]) {
            let (k, _) = item?;
            if !keep.contains(k.as_ref()) {
                batch.remove(k);
            }
        }
        tree.apply_batch(batch)?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data: encoding only fails on allocation failure, which aborts.
    cbor4ii::serde::to_vec(Vec::new(), value).unwrap_or_else(|_| std::process::abort())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Genesis;

    fn score(peer: u8, s: i32) -> PeerRecord {
        PeerRecord {
            peer: vec![peer; 4],
            score: s,
            banned_until_ms: (s < -100).then_some(1_000),
            ban_reason: (s < -100).then(|| "bad_request".into()),
            left_ms: (s > -100).then_some(2_000),
        }
    }

    #[test]
    fn peer_records_survive_a_reopen_and_a_save_replaces_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = Genesis::dev();
        let addr = AddressRecord {
            peer: vec![9; 4],
            addrs: vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])],
            last_seen_ms: 5,
            successes: 2,
            failures: 1,
            source: "bootstrap".into(),
        };
        {
            let store = Store::open(dir.path(), &genesis).unwrap();
            store
                .save_peer_scores(&[score(1, -5), score(2, -1000)])
                .unwrap();
            store.save_addresses(std::slice::from_ref(&addr)).unwrap();
            store.save_peer_scores(&[score(2, -1000)]).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), &genesis).unwrap();
        let data = store.load_peers().unwrap();
        assert_eq!(data.scores, vec![score(2, -1000)]);
        assert_eq!(data.addresses, vec![addr]);
        assert_eq!(store.tip().height, 0, "the chain is untouched");
    }

    #[test]
    fn a_score_record_written_before_departure_times_still_reads() {
        #[derive(Serialize)]
        struct Old {
            #[serde(with = "serde_bytes")]
            peer: Vec<u8>,
            score: i32,
            banned_until_ms: Option<u64>,
            ban_reason: Option<String>,
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Genesis::dev()).unwrap();
        let old = Old {
            peer: vec![3; 4],
            score: -7,
            banned_until_ms: None,
            ban_reason: None,
        };
        store
            .replace(
                SCORE_PREFIX,
                std::iter::once((key(SCORE_PREFIX, &old.peer), encode(&old))),
            )
            .unwrap();
        let data = store.load_peers().unwrap();
        assert_eq!(
            data.scores,
            vec![PeerRecord {
                peer: vec![3; 4],
                score: -7,
                banned_until_ms: None,
                ban_reason: None,
                left_ms: None,
            }]
        );
    }
}
