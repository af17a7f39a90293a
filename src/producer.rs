//! Block production: at each slot our authority owns, a block on the local
//! tip, validated, imported and announced — and never two blocks for one
//! slot.
//!
//! Owns the producer task and the record of the last slot each authority
//! key signed (`signed_slots` in the data dir), which is written and synced
//! *before* a block is signed, as Ethereum validators keep a slashing
//! protection record: a crash or restart can then never make this node
//! sign a second, different block for a slot it already signed. It must
//! not touch the network beyond announcing its own blocks, nor sync state
//! beyond reading the published status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::chain::generate::unsigned_block;
use crate::chain::validate::validate_block;
use crate::chain::{AuthorityKey, BlockRef, Genesis, Hash, PublicKey};
use crate::metrics::Metrics;
use crate::net::Client;
use crate::store::Store;
#[cfg(not(feature = "testnet"))]
use crate::sync::driver::now_ms;

/// The producer's clock, moved by the testnet's clock offset.
#[cfg(feature = "testnet")]
fn now_ms() -> u64 {
    crate::testnet::offset_now_ms(crate::sync::driver::now_ms())
}
use crate::sync::SyncHandle;

/// File name of the signed-slot record inside the data dir.
pub const SIGNED_SLOTS_FILE: &str = "signed_slots";

#[derive(Debug, thiserror::Error)]
pub enum SignedSlotsError {
    #[error("cannot read the signed-slot record {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the signed-slot record {path} is garbled at line {line}; refusing to sign without it (move it away only if this node never signed with these keys)")]
    Garbled { path: PathBuf, line: usize },
    #[error("cannot write the signed-slot record {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The last slot each authority key signed a block for, and that block's
/// hash. One line per key: `<public key hex> <slot> <block hash hex>`.
#[derive(Debug)]
pub struct SignedSlots {
    path: PathBuf,
    last: BTreeMap<PublicKey, (u64, Hash)>,
}

/// What the record says about signing a block for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotCheck {
    /// Nothing signed at or after this slot: go ahead.
    Free,
    /// This very block was signed already (same hash): signing it again is
    /// not an equivocation.
    SameBlock,
    /// Another block was signed for this slot: signing would equivocate.
    OtherBlock(Hash),
    /// A later slot was signed already (the clock went back).
    Behind(u64),
}

impl SignedSlots {
    /// Loads `data_dir/signed_slots` (an absent file is an empty record).
    pub fn load(data_dir: &Path) -> Result<SignedSlots, SignedSlotsError> {
        let path = data_dir.join(SIGNED_SLOTS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(SignedSlotsError::Read { path, source }),
        };
        let mut last = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let garbled = || SignedSlotsError::Garbled {
                path: path.clone(),
                line: i + 1,
            };
            let mut parts = line.split_whitespace();
            let (Some(key), Some(slot), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(garbled());
            };
            let key = PublicKey::from_hex(key).map_err(|_| garbled())?;
            let slot: u64 = slot.parse().map_err(|_| garbled())?;
            let hash = Hash::from_hex(hash).map_err(|_| garbled())?;
            last.insert(key, (slot, hash));
        }
        Ok(SignedSlots { path, last })
    }

    /// May `key` sign block `hash` for `slot`?
    pub fn check(&self, key: &PublicKey, slot: u64, hash: &Hash) -> SlotCheck {
        match self.last.get(key) {
            None => SlotCheck::Free,
            Some((s, _)) if *s < slot => SlotCheck::Free,
            Some((s, h)) if *s == slot && h == hash => SlotCheck::SameBlock,
            Some((s, h)) if *s == slot => SlotCheck::OtherBlock(*h),
            Some((s, _)) => SlotCheck::Behind(*s),
        }
    }

    /// Records that `key` is about to sign `hash` for `slot`, durably (a temp
    /// file synced, then renamed over the record) before returning.
    pub fn record(
        &mut self,
        key: PublicKey,
        slot: u64,
        hash: Hash,
    ) -> Result<(), SignedSlotsError> {
        let mut next = self.last.clone();
        next.insert(key, (slot, hash));
        let text: String = next
            .iter()
            .map(|(k, (s, h))| format!("{k} {s} {h}\n"))
            .collect();
        let write_err = |source| SignedSlotsError::Write {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(write_err)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a power cut.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.last = next;
        Ok(())
    }
}

/// The producer task: a [`SlotSigner`], and the network and sync handles
/// to announce its blocks and to ask whether it may produce.
pub struct Producer {
    pub signer: SlotSigner,
    pub client: Client,
    pub sync: SyncHandle,
    /// With no bootstrap addresses, produce without peers after this long
    /// (`SyncConfig::produce_alone_after`); `None`: never without peers.
    pub alone: Option<Duration>,
}

/// Builds, signs and imports our blocks, one per slot at most.
pub struct SlotSigner {
    pub key: AuthorityKey,
    pub genesis: Genesis,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub signed: SignedSlots,
}

/// A small payload for produced blocks: which slot, and a few random bytes so
/// bodies differ.
fn block_body(slot: u64) -> Vec<u8> {
    let mut body = format!("concord block for slot {slot} ").into_bytes();
    body.extend(rand::random::<[u8; 16]>());
    body
}

/// Sync's verdict on extending our chain (`blocker`: see
/// [`crate::sync::engine::SyncEngine::production_blocker`]; `None` if it
/// may), except that a node allowed to be alone (`alone`: it has no
/// bootstrap addresses; after how long) produces with no peers at all: a
/// one-node network.
fn production_blocker(
    blocker: Option<String>,
    alone: Option<Duration>,
    uptime: Duration,
) -> Option<String> {
    match (blocker.as_deref(), alone) {
        (Some("no peers"), Some(after)) if uptime >= after => None,
        _ => blocker,
    }
}

impl Producer {
    /// At each slot our key owns, builds a block on the current tip,
    /// validates and imports it, and announces it.
    pub async fn run(mut self) {
        let me = self.signer.key.public();
        let genesis = self.signer.genesis.clone();
        let slot_ms = genesis.slot_ms.max(1);
        let started = tokio::time::Instant::now();
        let mut last_slot: Option<u64> = None;
        let mut last_blocker: Option<String> = None;
        loop {
            let now = now_ms();
            let slot = now / slot_ms;
            let tip = self.signer.store.tip();
            let fresh_slot =
                last_slot.is_none_or(|s| slot > s) && genesis.slot_of(tip.timestamp_ms) < slot;
            if now >= genesis.timestamp_ms && fresh_slot && *genesis.producer_for_slot(slot) == me {
                last_slot = Some(slot);
                let blocker = match self.sync.status() {
                    Some(snapshot) => production_blocker(
                        snapshot.status.production_blocker,
                        self.alone,
                        started.elapsed(),
                    ),
                    None => Some("sync has not started".into()),
                };
                if blocker != last_blocker {
                    match &blocker {
                        Some(why) => info!(slot, reason = %why, "not producing in our slot"),
                        None if last_blocker.is_some() => info!(slot, "producing again"),
                        None => {}
                    }
                    last_blocker = blocker.clone();
                }
                if blocker.is_none() {
                    match self.signer.produce_one(&tip, slot).await {
                        Ok(Some((height, hash))) => {
                            self.client.announce_tip(height, hash).await;
                            self.sync.local_tip_changed().await;
                        }
                        Ok(None) => {}
                        Err(e) => error!(slot, error = %e, "block production failed"),
                    }
                }
            }
            // Sleep to the start of the next slot (at least a few ms).
            let next = (slot + 1) * slot_ms;
            let wait = next.saturating_sub(now_ms()).max(5);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

impl SlotSigner {
    /// Builds our block for `slot` on `tip`, records the slot, signs,
    /// validates and imports it; returns its height and hash if imported.
    pub async fn produce_one(
        &mut self,
        tip: &BlockRef,
        slot: u64,
    ) -> Result<Option<(u64, Hash)>, String> {
        let me = self.key.public();
        let timestamp_ms = slot * self.genesis.slot_ms;
        let mut block = unsigned_block(&self.key, tip, timestamp_ms, block_body(slot));
        let hash = block.header.hash();
        match self.signed.check(&me, slot, &hash) {
            SlotCheck::Free => self
                .signed
                .record(me, slot, hash)
                .map_err(|e| format!("not signing: {e}"))?,
            SlotCheck::SameBlock => {}
            SlotCheck::OtherBlock(first) => {
                warn!(slot, authority = %me, first = %first, second = %hash,
                    "refusing to sign a second block for a slot this key already signed (equivocation prevented)");
                self.metrics.equivocation("own_slot");
                return Ok(None);
            }
            SlotCheck::Behind(signed) => {
                warn!(
                    slot,
                    signed_slot = signed,
                    "this key already signed a later slot (did the clock go back?); not producing"
                );
                return Ok(None);
            }
        }
        block.header.signature = self.key.sign(&hash);
        validate_block(&self.genesis, tip, &block)
            .map_err(|e| format!("produced an invalid block: {e}"))?;
        let height = block.height();
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.import(&[block])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                // The tip moved under us (e.g. a sync import); the slot is
                // spent: the record forbids another block in it.
                warn!(height, slot, error = %e, "produced block not imported (the tip moved); skipping this slot");
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        }
        info!("Produced block #{height} {hash}");
        Ok(Some((height, hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_produces_alone_only_without_bootstrap_addresses_and_after_the_wait() {
        let none = || Some("no peers".to_string());
        let wait = Some(Duration::from_secs(5));
        let at = Duration::from_secs;
        assert_eq!(production_blocker(none(), wait, at(1)), none());
        assert_eq!(production_blocker(none(), wait, at(5)), None);
        // With bootstrap addresses: never without peers.
        assert_eq!(production_blocker(none(), None, at(3600)), none());
        // Alone or not, every other blocker holds.
        let syncing = Some("syncing: #3 of safe target #9".to_string());
        assert_eq!(production_blocker(syncing.clone(), wait, at(60)), syncing);
        assert_eq!(production_blocker(None, None, Duration::ZERO), None);
    }

    #[test]
    fn a_slot_is_signed_once_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuthorityKey::from_seed([1; 32]).public();
        let other = AuthorityKey::from_seed([2; 32]).public();
        let (a, b) = (Hash::digest(b"a"), Hash::digest(b"b"));
        let mut rec = SignedSlots::load(dir.path()).unwrap();
        assert_eq!(rec.check(&key, 10, &a), SlotCheck::Free);
        rec.record(key, 10, a).unwrap();
        assert_eq!(rec.check(&key, 10, &a), SlotCheck::SameBlock);
        assert_eq!(rec.check(&key, 10, &b), SlotCheck::OtherBlock(a));
        assert_eq!(rec.check(&key, 9, &b), SlotCheck::Behind(10));
        assert_eq!(rec.check(&key, 11, &b), SlotCheck::Free);
        assert_eq!(rec.check(&other, 10, &b), SlotCheck::Free);
        // A restart reads the same record.
        let back = SignedSlots::load(dir.path()).unwrap();
        assert_eq!(back.check(&key, 10, &b), SlotCheck::OtherBlock(a));
        assert_eq!(back.check(&key, 11, &b), SlotCheck::Free);
    }

    #[tokio::test]
    async fn the_producer_refuses_a_second_block_for_a_signed_slot_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = Genesis::dev();
        let key = AuthorityKey::dev();
        let store = Store::open(dir.path(), &genesis).unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        let tip = store.tip();
        let slot = genesis.slot_of(tip.timestamp_ms) + 1;
        // A block for `slot` was signed before a restart (it never reached the store).
        let mut before = SignedSlots::load(dir.path()).unwrap();
        before
            .record(key.public(), slot, Hash::digest(b"earlier block"))
            .unwrap();
        let mut signer = SlotSigner {
            key,
            genesis: genesis.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            signed: SignedSlots::load(dir.path()).unwrap(),
        };
        assert_eq!(signer.produce_one(&tip, slot).await, Ok(None));
        assert_eq!(metrics.equivocations("own_slot"), 1);
        assert_eq!(store.tip(), tip, "nothing was imported");
        // The next slot is free: produced, imported and recorded.
        let (height, hash) = signer.produce_one(&tip, slot + 1).await.unwrap().unwrap();
        assert_eq!((height, store.tip().hash), (1, hash));
        let after = SignedSlots::load(dir.path()).unwrap();
        assert_eq!(
            after.check(&signer.key.public(), slot + 1, &hash),
            SlotCheck::SameBlock
        );
        // An earlier slot than the last signed one is refused, but is no equivocation.
        assert_eq!(signer.produce_one(&tip, slot).await, Ok(None));
        assert_eq!(metrics.equivocations("own_slot"), 1);
    }

    #[test]
    fn a_garbled_record_refuses_to_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNED_SLOTS_FILE), "nonsense here\n").unwrap();
        let err = SignedSlots::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, SignedSlotsError::Garbled { line: 1, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}
