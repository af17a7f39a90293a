//! Genesis: the network's name, start time, slot length, authorities and
//! initial payload; the dev genesis.
//!
//! Owns the genesis file format and the genesis block derived from it. It must not touch the store or the network:
//! the store only receives a [`Genesis`] to check a data dir against.
//!
//! # Genesis file (TOML)
//!
//! ```toml
//! name = "dev"                  # any string
//! timestamp_ms = 1767225600000  # ms since the Unix epoch; the genesis block's timestamp
//! slot_ms = 1000                # slot length in ms, > 0
//! authorities = [               # ed25519 public keys, 64 hex digits each, at least one
//!   "…",
//! ]
//! payload = "hello"             # optional: UTF-8 text …
//! # payload_hex = "00ff"        # … or arbitrary bytes as hex (at most one of the two)
//! ```
//!
//! A missing payload means an empty one. [`Genesis::to_toml`] writes
//! `payload` when the bytes are valid UTF-8 and `payload_hex` otherwise, so
//! every genesis round-trips through [`Genesis::load`].
//!
//! # Genesis block
//!
//! Height 0, parent [`Hash::ZERO`], producer [`PublicKey::ZERO`], signature
//! [`Signature::ZERO`], timestamp = `timestamp_ms`, and a body that is the
//! CBOR map `{"name": text, "timestamp_ms": uint, "slot_ms": uint,
//! "authorities": [bytes(32)…], "payload": bytes}` (keys in that order,
//! shortest-form integers). The body hash, and so the genesis hash, therefore
//! commits to every field.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::chain::authority::AuthorityKey;
use crate::chain::{Block, BlockHeader, Hash, PublicKey, Signature};

/// 2026-01-01T00:00:00Z in ms since the Unix epoch.
const DEV_TIMESTAMP_MS: u64 = 1_767_225_600_000;

/// Errors loading or parsing a genesis file.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid genesis file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A network's genesis. The genesis block (height 0) commits to every field:
/// its body is the canonical encoding of this spec, so two networks that differ
/// in anything have different genesis hashes.
///
/// Build it with [`Genesis::new`], [`Genesis::dev`] or [`Genesis::load`]; the
/// fields are public for reading. Changing a field afterwards leaves the
/// cached genesis block and keys stale: build a new value instead.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub name: String,
    pub timestamp_ms: u64,
    pub slot_ms: u64,
    pub authorities: Vec<PublicKey>,
    pub payload: Vec<u8>,
    block: Block,
    hash: Hash,
    /// Parsed once: decompressing a key per signature check would cost more
    /// than the rest of block validation together.
    verifying_keys: Vec<VerifyingKey>,
}

/// The canonical body of the genesis block; field order is part of the format.
#[derive(Serialize)]
struct GenesisBody<'a> {
    name: &'a str,
    timestamp_ms: u64,
    slot_ms: u64,
    authorities: &'a [PublicKey],
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

/// The largest integer TOML can hold (a signed 64-bit one).
const MAX_TOML_INTEGER: u64 = i64::MAX as u64;

/// The TOML shape of a genesis file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    name: String,
    timestamp_ms: u64,
    slot_ms: u64,
    authorities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
}

impl Genesis {
    /// Checks the fields and derives the genesis block. The error's `reason`
    /// is a single line; `source` names where the fields came from.
    pub fn new(
        name: String,
        timestamp_ms: u64,
        slot_ms: u64,
        authorities: Vec<PublicKey>,
        payload: Vec<u8>,
    ) -> Result<Genesis, String> {
        if authorities.is_empty() {
            return Err("at least one authority is required".into());
        }
        if slot_ms == 0 {
            return Err("slot_ms must be greater than 0".into());
        }
        // A genesis must be writable as a genesis file, and a TOML integer
        // is a signed 64-bit one: a larger value would make `to_toml` fail.
        for (field, value) in [("timestamp_ms", timestamp_ms), ("slot_ms", slot_ms)] {
            if value > MAX_TOML_INTEGER {
                return Err(format!(
                    "{field} {value} is larger than {MAX_TOML_INTEGER}, the largest integer a genesis file (TOML) can hold"
                ));
            }
        }
        let mut verifying_keys = Vec::with_capacity(authorities.len());
        for (i, key) in authorities.iter().enumerate() {
            let vk = VerifyingKey::from_bytes(&key.0)
                .map_err(|_| format!("authority {i} ({key}) is not a valid ed25519 public key"))?;
            // Weak (small-order) keys would let anyone forge signatures that verify.
            if vk.is_weak() {
                return Err(format!("authority {i} ({key}) is a weak ed25519 key"));
            }
            verifying_keys.push(vk);
        }
        for (i, key) in authorities.iter().enumerate() {
            if authorities[..i].contains(key) {
                return Err(format!("authority {key} is listed twice"));
            }
        }
        let body = cbor4ii::serde::to_vec(
            Vec::new(),
            &GenesisBody {
                name: &name,
                timestamp_ms,
                slot_ms,
                authorities: &authorities,
                payload: &payload,
            },
        )
        .map_err(|e| format!("cannot encode genesis body: {e}"))?;
        let block = Block {
            header: BlockHeader {
                height: 0,
                parent: Hash::ZERO,
                timestamp_ms,
                body_hash: Hash::digest(&body),
                producer: PublicKey::ZERO,
                signature: Signature::ZERO,
            },
            body: body.into(),
        };
        let hash = block.hash();
        Ok(Genesis {
            name,
            timestamp_ms,
            slot_ms,
            authorities,
            payload,
            block,
            hash,
            verifying_keys,
        })
    }

    /// The built-in `dev` genesis: one authority, [`AuthorityKey::dev`].
    pub fn dev() -> Genesis {
        Genesis::new(
            "dev".into(),
            DEV_TIMESTAMP_MS,
            1000,
            vec![AuthorityKey::dev().public()],
            b"concord dev network".to_vec(),
        )
        .expect("the built-in dev genesis is valid")
    }

    /// Reads a TOML genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|reason| GenesisError::Invalid {
            path: shown,
            reason,
        })
    }

    /// Parses genesis TOML text; the error is one line without the file name.
    pub fn from_toml(text: &str) -> Result<Genesis, String> {
        let file: GenesisFile = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        let mut authorities = Vec::with_capacity(file.authorities.len());
        for (i, hex) in file.authorities.iter().enumerate() {
            let key = PublicKey::from_hex(hex.trim())
                .map_err(|e| format!("authority {i} {hex:?} is not 64 hex digits: {e}"))?;
            authorities.push(key);
        }
        let payload = match (file.payload, file.payload_hex) {
            (Some(_), Some(_)) => return Err("give either payload or payload_hex, not both".into()),
            (Some(text), None) => text.into_bytes(),
            (None, Some(h)) => {
                hex::decode(h.trim()).map_err(|e| format!("payload_hex is not valid hex: {e}"))?
            }
            (None, None) => Vec::new(),
        };
        Genesis::new(
            file.name,
            file.timestamp_ms,
            file.slot_ms,
            authorities,
            payload,
        )
    }

    /// `"dev"` or a path.
    pub fn resolve(spec: &str) -> Result<Genesis, GenesisError> {
        if spec == "dev" {
            Ok(Genesis::dev())
        } else {
            Genesis::load(Path::new(spec))
        }
    }

    /// TOML text of this genesis (what `concord genesis` writes).
    pub fn to_toml(&self) -> String {
        let (payload, payload_hex) = match std::str::from_utf8(&self.payload) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (None, Some(hex::encode(&self.payload))),
        };
        let file = GenesisFile {
            name: self.name.clone(),
            timestamp_ms: self.timestamp_ms,
            slot_ms: self.slot_ms,
            authorities: self.authorities.iter().map(PublicKey::to_hex).collect(),
            payload: payload.filter(|p| !p.is_empty()),
            payload_hex,
        };
        // Strings, integers up to i64::MAX (checked by `new`) and an array of
        // strings always serialize.
        let body = toml::to_string_pretty(&file).unwrap_or_default();
        format!("# Concord genesis. Genesis hash: {}\n{body}", self.hash)
    }

    /// The genesis block (height 0, zero parent, zero producer and signature).
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Hash of the genesis block: the network's identity.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Slot of a timestamp: `timestamp_ms / slot_ms`.
    pub fn slot_of(&self, timestamp_ms: u64) -> u64 {
        timestamp_ms / self.slot_ms
    }

    /// Index into `authorities` of the producer of `slot`.
    pub fn producer_index_for_slot(&self, slot: u64) -> usize {
        // The remainder is < len, which is a usize.
        (slot % self.authorities.len() as u64) as usize
    }

    /// The authority allowed to produce in `slot`: `authorities[slot % n]`.
    pub fn producer_for_slot(&self, slot: u64) -> &PublicKey {
        &self.authorities[self.producer_index_for_slot(slot)]
    }

    /// Whether `key` is one of the authorities.
    pub fn is_authority(&self, key: &PublicKey) -> bool {
        self.authorities.contains(key)
    }

    /// The parsed key of `authorities[index]`.
    pub fn verifying_key(&self, index: usize) -> &VerifyingKey {
        &self.verifying_keys[index]
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_genesis_is_stable_and_well_formed() {
        let g = Genesis::dev();
        assert_eq!(g.name, "dev");
        assert_eq!(g.timestamp_ms, DEV_TIMESTAMP_MS);
        assert_eq!(g.slot_ms, 1000);
        assert_eq!(g.authorities, vec![AuthorityKey::dev().public()]);
        let b = g.block();
        assert_eq!(b.height(), 0);
        assert_eq!(b.header.parent, Hash::ZERO);
        assert_eq!(b.header.producer, PublicKey::ZERO);
        assert_eq!(b.header.signature, Signature::ZERO);
        assert_eq!(b.header.timestamp_ms, g.timestamp_ms);
        assert_eq!(b.header.body_hash, Hash::digest(&b.body));
        assert_eq!(g.hash(), b.hash());
        assert_eq!(Genesis::dev().hash(), g.hash());
        assert_eq!(Genesis::resolve("dev").unwrap().hash(), g.hash());
    }

    #[test]
    fn toml_round_trips_text_and_binary_payloads() {
        for payload in [b"hello".to_vec(), vec![0xff, 0x00, 0x80], Vec::new()] {
            let g = Genesis::new(
                "net".into(),
                5,
                250,
                vec![
                    AuthorityKey::dev().public(),
                    AuthorityKey::from_seed([7; 32]).public(),
                ],
                payload.clone(),
            )
            .unwrap();
            let back = Genesis::from_toml(&g.to_toml()).unwrap();
            assert_eq!(back.payload, payload);
            assert_eq!(back.hash(), g.hash());
        }
        let dev = Genesis::dev();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        std::fs::write(&path, dev.to_toml()).unwrap();
        assert_eq!(Genesis::load(&path).unwrap().hash(), dev.hash());
        assert_eq!(
            Genesis::resolve(path.to_str().unwrap()).unwrap().hash(),
            dev.hash()
        );
    }

    #[test]
    fn integers_a_genesis_file_cannot_hold_are_refused_at_creation() {
        let keys = || vec![AuthorityKey::dev().public()];
        let max = i64::MAX as u64;
        for (ts, slot, field) in [
            (max + 1, 1000, "timestamp_ms"),
            (u64::MAX, 1000, "timestamp_ms"),
            (0, max + 1, "slot_ms"),
        ] {
            let e = Genesis::new("n".into(), ts, slot, keys(), vec![]).unwrap_err();
            assert!(e.starts_with(field) && e.contains("TOML"), "{e}");
        }
        // The largest accepted values write and read back.
        let g = Genesis::new("n".into(), max, max, keys(), vec![]).unwrap();
        let back = Genesis::from_toml(&g.to_toml()).unwrap();
        assert_eq!((back.timestamp_ms, back.slot_ms), (max, max));
        assert_eq!(back.hash(), g.hash());
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = || {
            (
                "n".to_string(),
                1u64,
                1000u64,
                vec![AuthorityKey::dev().public()],
                b"p".to_vec(),
            )
        };
        let make = |t: (String, u64, u64, Vec<PublicKey>, Vec<u8>)| {
            Genesis::new(t.0, t.1, t.2, t.3, t.4).unwrap().hash()
        };
        let h = make(base());
        let mut t = base();
        t.0.push('x');
        assert_ne!(make(t), h);
        let mut t = base();
        t.1 += 1;
        assert_ne!(make(t), h);
        let mut t = base();
        t.2 += 1;
        assert_ne!(make(t), h);
        let mut t = base();
        t.3.push(AuthorityKey::from_seed([1; 32]).public());
        assert_ne!(make(t), h);
        let mut t = base();
        t.4.push(0);
        assert_ne!(make(t), h);
    }

    #[test]
    fn invalid_files_give_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuthorityKey::dev().public().to_hex();
        let cases = [
            (
                "no-auth",
                "name='x'\ntimestamp_ms=0\nslot_ms=1\nauthorities=[]\n".to_string(),
            ),
            (
                "zero-slot",
                format!("name='x'\ntimestamp_ms=0\nslot_ms=0\nauthorities=['{key}']\n"),
            ),
            (
                "bad-hex",
                "name='x'\ntimestamp_ms=0\nslot_ms=1\nauthorities=['zz']\n".to_string(),
            ),
            ("syntax", "name = \n".to_string()),
            // A y coordinate of 2 does not decompress to a curve point.
            (
                "not-a-point",
                format!(
                    "name='x'\ntimestamp_ms=0\nslot_ms=1\nauthorities=['02{}']\n",
                    "00".repeat(31)
                ),
            ),
            // The identity point is a small-order (weak) key.
            (
                "weak",
                format!(
                    "name='x'\ntimestamp_ms=0\nslot_ms=1\nauthorities=['01{}']\n",
                    "00".repeat(31)
                ),
            ),
        ];
        for (name, text) in cases {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, text).unwrap();
            let err = Genesis::load(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{name}: {err}");
            assert!(!err.contains('\n'), "{name}: {err}");
        }
        let missing = dir.path().join("missing.toml");
        let err = Genesis::resolve(missing.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, GenesisError::Read { .. }));
        assert!(err.to_string().contains("missing.toml"));
    }

    #[test]
    fn signatures_verify_with_the_cached_key() {
        let key = AuthorityKey::dev();
        let g = Genesis::dev();
        let h = Hash::digest(b"x");
        let sig = ed25519_dalek::Signature::from_bytes(&key.sign(&h).0);
        assert!(g.verifying_key(0).verify_strict(&h.0, &sig).is_ok());
        assert!(!format!("{key:?}").contains(&hex::encode(
            blake3::hash(crate::chain::authority::DEV_SEED_PHRASE).as_bytes()
        )));
    }
}
