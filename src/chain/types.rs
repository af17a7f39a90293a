//! The value types of the chain: hashes, keys, signatures, headers and blocks,
//! with their canonical byte encodings.
//!
//! These types are shared by every other module (store, wire protocols, sync),
//! so they carry no behaviour beyond encoding and hashing. Validation lives in
//! [`crate::chain::validate`].

use std::fmt;

use bytes::Bytes;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of the canonical header encoding that is hashed (and signed).
pub const HEADER_SIGNING_LEN: usize = 8 + 32 + 8 + 32 + 32;

macro_rules! byte_array_type {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// All-zero value (used by the genesis block, which has no parent and no producer).
            pub const ZERO: Self = Self([0u8; $len]);

            /// Lower-case hex of all bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses lower- or upper-case hex of exactly the right length.
            pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }

            /// Builds from a slice, `None` if the length is wrong.
            pub fn from_slice(s: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(s).ok().map(Self)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            // Short form: logs and test failures stay readable.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a byte string of {} bytes", $len)
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        $name::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
                    }
                    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<$name, E> {
                        self.visit_bytes(v)
                    }
                    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<$name, E> {
                        self.visit_bytes(&v)
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    };
}

byte_array_type!(
    /// A blake3 hash: of a block header (the block hash) or of a body.
    Hash,
    32
);
byte_array_type!(
    /// An ed25519 public key (compressed Edwards point), as it appears in headers and genesis files.
    PublicKey,
    32
);
byte_array_type!(
    /// An ed25519 signature over a block hash.
    Signature,
    64
);

impl Hash {
    /// blake3 of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Hash(*blake3::hash(data).as_bytes())
    }
}

/// A block header. The block hash is blake3 of [`BlockHeader::signing_bytes`],
/// which covers every field except the signature; the signature signs that hash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockHeader {
    /// Distance from genesis (genesis is 0).
    pub height: u64,
    /// Hash of the block at `height - 1` ([`Hash::ZERO`] for genesis).
    pub parent: Hash,
    /// Milliseconds since the Unix epoch; decides the slot and so the producer.
    pub timestamp_ms: u64,
    /// blake3 of the body.
    pub body_hash: Hash,
    /// The authority that produced (and signed) the block.
    pub producer: PublicKey,
    /// ed25519 signature by `producer` over the block hash.
    pub signature: Signature,
}

impl BlockHeader {
    /// The canonical encoding that is hashed: big-endian height, parent,
    /// big-endian timestamp, body hash, producer (112 bytes, no signature).
    pub fn signing_bytes(&self) -> [u8; HEADER_SIGNING_LEN] {
        let mut out = [0u8; HEADER_SIGNING_LEN];
        out[0..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..40].copy_from_slice(&self.parent.0);
        out[40..48].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[48..80].copy_from_slice(&self.body_hash.0);
        out[80..112].copy_from_slice(&self.producer.0);
        out
    }

    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.signing_bytes())
    }
}

/// A block: header plus opaque body bytes.
///
/// The body is a [`Bytes`]: a block decoded from a received response keeps
/// its body as a view into the response buffer (see [`super::wire`]), so
/// validating and storing it copies nothing.
///
/// On the wire and in the store a block is one CBOR array of seven items:
/// `[height, parent, timestamp_ms, body_hash, producer, signature, body]`
/// (integers as CBOR unsigned integers, the rest as byte strings). See
/// `protocols/blocks.md`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    pub header: BlockHeader,
    pub body: Bytes,
}

impl Block {
    /// The block hash (hash of the header).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Height shortcut.
    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// CBOR encoding (the same bytes that travel on the wire and sit in the store).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail except on allocation failure.
        cbor4ii::serde::to_vec(Vec::with_capacity(self.body.len() + 200), self).unwrap_or_default()
    }

    /// Decodes one block from its CBOR encoding.
    pub fn decode(
        bytes: &[u8],
    ) -> Result<Self, cbor4ii::serde::DecodeError<std::convert::Infallible>> {
        cbor4ii::serde::from_slice(bytes)
    }
}

impl Serialize for Block {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = &self.header;
        let mut t = s.serialize_tuple(7)?;
        t.serialize_element(&h.height)?;
        t.serialize_element(&h.parent)?;
        t.serialize_element(&h.timestamp_ms)?;
        t.serialize_element(&h.body_hash)?;
        t.serialize_element(&h.producer)?;
        t.serialize_element(&h.signature)?;
        t.serialize_element(serde_bytes::Bytes::new(&self.body))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Block;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a block: an array of 7 items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Block, A::Error> {
                let next = |i: usize| de::Error::invalid_length(i, &"7 items");
                let height = seq.next_element()?.ok_or_else(|| next(0))?;
                let parent = seq.next_element()?.ok_or_else(|| next(1))?;
                let timestamp_ms = seq.next_element()?.ok_or_else(|| next(2))?;
                let body_hash = seq.next_element()?.ok_or_else(|| next(3))?;
                let producer = seq.next_element()?.ok_or_else(|| next(4))?;
                let signature = seq.next_element()?.ok_or_else(|| next(5))?;
                let body: serde_bytes::ByteBuf = seq.next_element()?.ok_or_else(|| next(6))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(8, &"7 items"));
                }
                Ok(Block {
                    header: BlockHeader {
                        height,
                        parent,
                        timestamp_ms,
                        body_hash,
                        producer,
                        signature,
                    },
                    body: Bytes::from(body.into_vec()),
                })
            }
        }
        d.deserialize_tuple(7, V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Block {
        Block {
            header: BlockHeader {
                height: 7,
                parent: Hash([1; 32]),
                timestamp_ms: 1_700_000_000_000,
                body_hash: Hash::digest(b"hello"),
                producer: PublicKey([2; 32]),
                signature: Signature([3; 64]),
            },
            body: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn block_round_trips_through_cbor() {
        let b = sample();
        let bytes = b.encode();
        assert_eq!(bytes[0], 0x87, "a block is a 7-item CBOR array");
        assert_eq!(Block::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn block_with_wrong_item_count_is_rejected() {
        let b = sample();
        let h = &b.header;
        let six = (
            h.height,
            h.parent,
            h.timestamp_ms,
            h.body_hash,
            h.producer,
            h.signature,
        );
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &six).unwrap();
        assert!(Block::decode(&bytes).is_err());
    }

    #[test]
    fn hash_covers_every_field_but_the_signature() {
        let b = sample();
        let mut c = b.clone();
        c.header.signature = Signature([9; 64]);
        assert_eq!(b.hash(), c.hash());
        for mutate in [
            (|h: &mut BlockHeader| h.height += 1) as fn(&mut BlockHeader),
            |h| h.parent.0[0] ^= 1,
            |h| h.timestamp_ms += 1,
            |h| h.body_hash.0[0] ^= 1,
            |h| h.producer.0[0] ^= 1,
        ] {
            let mut d = b.clone();
            mutate(&mut d.header);
            assert_ne!(b.hash(), d.hash());
        }
    }

    #[test]
    fn byte_arrays_reject_wrong_lengths() {
        let bytes =
            cbor4ii::serde::to_vec(Vec::new(), &serde_bytes::ByteBuf::from(vec![0u8; 31])).unwrap();
        assert!(cbor4ii::serde::from_slice::<Hash>(&bytes).is_err());
        assert_eq!(
            Hash::from_hex(&Hash([0xab; 32]).to_hex()).unwrap(),
            Hash([0xab; 32])
        );
    }
}
