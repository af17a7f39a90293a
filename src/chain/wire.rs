//! A block's encoding as bytes: reading a block from its CBOR encoding
//! without copying the body, and writing the framing around a body.
//!
//! Owns the *canonical* form of a block's encoding: the one
//! [`Block::encode`] writes, every head in its shortest form. Blocks that
//! arrive in that form are taken as views into the received buffer (their
//! body is a slice of it), so that the bytes received are the bytes
//! validated and stored, and a server can send stored bytes as they are
//! (they are the same bytes `Block::encode` would write). Other encodings of
//! a block are not refused here: the caller falls back to [`Block::decode`]
//! (and then stores a re-encoding). It must not validate blocks (that is
//! [`super::validate`]'s job).

use bytes::Bytes;

use super::types::{Block, BlockHeader, Hash, PublicKey, Signature};

/// CBOR major types used by a block.
const UINT: u8 = 0;
const BYTES: u8 = 2;
const ARRAY: u8 = 4;

/// Appends the shortest CBOR head of `major` with argument `v`.
pub fn push_head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        out.push(m | v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[m | 24, v as u8]);
    } else if v <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Length of the shortest CBOR head for argument `v`.
pub fn head_len(v: u64) -> usize {
    match v {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The canonical encoding of `block` up to (not including) its body bytes:
/// the array head, the six header items and the body's head.
pub fn encode_prefix(block: &Block, out: &mut Vec<u8>) {
    let h = &block.header;
    push_head(out, ARRAY, 7);
    push_head(out, UINT, h.height);
    push_head(out, BYTES, Hash::LEN as u64);
    out.extend_from_slice(&h.parent.0);
    push_head(out, UINT, h.timestamp_ms);
    for item in [&h.body_hash.0[..], &h.producer.0[..], &h.signature.0[..]] {
        push_head(out, BYTES, item.len() as u64);
        out.extend_from_slice(item);
    }
    push_head(out, BYTES, block.body.len() as u64);
}

/// Length of the canonical encoding of `block` (what [`Block::encode`] writes).
pub fn encoded_len(block: &Block) -> usize {
    let h = &block.header;
    1 + head_len(h.height)
        + 2
        + Hash::LEN
        + head_len(h.timestamp_ms)
        + 2 * (2 + Hash::LEN)
        + 2
        + Signature::LEN
        + head_len(block.body.len() as u64)
        + block.body.len()
}

/// Reads a head that must be in its shortest form.
fn shortest_head(b: &[u8], pos: &mut usize) -> Option<(u8, u64)> {
    let first = *b.get(*pos)?;
    *pos += 1;
    let (major, info) = (first >> 5, first & 0x1f);
    let (n, min) = match info {
        0..=23 => return Some((major, u64::from(info))),
        24 => (1, 24),
        25 => (2, 0x100),
        26 => (4, 0x1_0000),
        27 => (8, 0x1_0000_0000),
        _ => return None,
    };
    let raw = b.get(*pos..*pos + n)?;
    *pos += n;
    let v = raw.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x));
    (v >= min).then_some((major, v))
}

fn uint(b: &[u8], pos: &mut usize) -> Option<u64> {
    match shortest_head(b, pos)? {
        (UINT, v) => Some(v),
        _ => None,
    }
}

/// A byte string's range in `b`.
fn byte_string(b: &[u8], pos: &mut usize) -> Option<std::ops::Range<usize>> {
    let (major, len) = shortest_head(b, pos)?;
    if major != BYTES {
        return None;
    }
    let start = *pos;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > b.len() {
        return None;
    }
    *pos = end;
    Some(start..end)
}

fn fixed<const N: usize>(b: &[u8], pos: &mut usize) -> Option<[u8; N]> {
    let r = byte_string(b, pos)?;
    <[u8; N]>::try_from(&b[r]).ok()
}

/// The block whose canonical encoding is exactly `encoded`, its body a view
/// into `encoded` (no copy). `None` if the bytes are not one block in the
/// canonical form (they may still be a block: see the module docs).
pub fn parse(encoded: &Bytes) -> Option<Block> {
    let b = &encoded[..];
    let mut pos = 0;
    if shortest_head(b, &mut pos)? != (ARRAY, 7) {
        return None;
    }
    let height = uint(b, &mut pos)?;
    let parent = Hash(fixed(b, &mut pos)?);
    let timestamp_ms = uint(b, &mut pos)?;
    let body_hash = Hash(fixed(b, &mut pos)?);
    let producer = PublicKey(fixed(b, &mut pos)?);
    let signature = Signature(fixed(b, &mut pos)?);
    let body = byte_string(b, &mut pos)?;
    if pos != b.len() {
        return None;
    }
    Some(Block {
        header: BlockHeader {
            height,
            parent,
            timestamp_ms,
            body_hash,
            producer,
            signature,
        },
        body: encoded.slice(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(height: u64, ts: u64, body: usize) -> Block {
        Block {
            header: BlockHeader {
                height,
                parent: Hash([1; 32]),
                timestamp_ms: ts,
                body_hash: Hash([4; 32]),
                producer: PublicKey([2; 32]),
                signature: Signature([3; 64]),
            },
            body: Bytes::from(vec![9u8; body]),
        }
    }

    #[test]
    fn prefix_and_length_agree_with_the_encoder_and_parse_inverts_it() {
        for (h, ts, body) in [
            (0, 0, 0),
            (23, 24, 23),
            (24, 255, 24),
            (256, 65_535, 255),
            (65_536, u64::from(u32::MAX), 65_536),
            (u64::MAX, 1 << 40, 3),
        ] {
            let b = sample(h, ts, body);
            let enc = b.encode();
            let mut prefix = Vec::new();
            encode_prefix(&b, &mut prefix);
            assert_eq!(enc.len(), encoded_len(&b), "{h} {ts} {body}");
            assert_eq!(&enc[..prefix.len()], &prefix[..]);
            assert_eq!(&enc[prefix.len()..], &b.body[..]);
            let bytes = Bytes::from(enc);
            let parsed = parse(&bytes).expect("canonical");
            assert_eq!(parsed, b);
            // The body is a view into the encoding, not a copy.
            assert_eq!(parsed.body.as_ptr(), bytes[prefix.len()..].as_ptr());
        }
    }

    #[test]
    fn other_encodings_of_a_block_are_not_taken_as_views() {
        let b = sample(5, 7, 4);
        let enc = b.encode();
        // Height 5 written as `18 05` (a longer head than needed).
        let mut long = vec![enc[0], 0x18, 0x05];
        long.extend_from_slice(&enc[2..]);
        assert_eq!(Block::decode(&long).unwrap(), b, "still a block");
        assert!(parse(&Bytes::from(long)).is_none());
        // Truncated, trailing byte, text string instead of bytes.
        assert!(parse(&Bytes::from(enc[..enc.len() - 1].to_vec())).is_none());
        let mut trailing = enc.clone();
        trailing.push(0);
        assert!(parse(&Bytes::from(trailing)).is_none());
        let mut text = enc.clone();
        let at = enc.len() - 5;
        assert_eq!(text[at], 0x44, "body head");
        text[at] = 0x64;
        assert!(parse(&Bytes::from(text)).is_none());
    }
}
