//! The request-response codec of the Concord protocols: one CBOR value per
//! direction per stream, exactly like `libp2p::request_response::cbor`, with
//! one difference that matters for a server: an inbound request that is
//! oversize or does not decode is *delivered* as [`Inbound::Invalid`] instead of
//! failing inside the connection handler. libp2p's own codec turns such a
//! request into a stream error that the behaviour only logs at DEBUG (the
//! request id is not yet known), so the event loop could never report the peer.
//! With this codec the event loop sees the peer id and the protocol and emits
//! [`super::NetEvent::BadRequest`].
//!
//! The bytes on the wire are identical to `cbor::Codec` (same encoder, same
//! framing: the request ends when the requester closes its write side).
//!
//! Responses go through [`Wire`]: the small ones with serde, a blocks
//! response as bytes (see [`super::blocks_wire`]): a server writes the
//! stored encodings as they are, and a reader reads into one buffer sized
//! from the response limit up front (never regrown) that the received
//! blocks then point into. Blocks responses are read into buffers that
//! earlier responses were read into ([`ReadBuffers`]), so they are not
//! zeroed again.

use std::sync::Arc;
use std::{io, marker::PhantomData};

use bytes::Bytes;
use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{de::DeserializeOwned, Serialize};

use super::read_buffers::ReadBuffers;

/// The error text of a refusal (a response stream closed with no bytes).
pub(crate) const REFUSED: &str = "refused: the stream closed with no response";

/// A request as read by the server: decoded, or why it could not be.
#[derive(Debug, Clone)]
pub(crate) enum Inbound<T> {
    /// A well-formed request.
    Valid(T),
    /// Oversize or undecodable bytes; the string says which.
    Invalid(String),
    /// The requester closed its side without sending a byte: a request it
    /// gave up on (a link that came back after a cut delivers these by the
    /// dozen), not an offence. Refused like a bad request, never reported.
    Empty,
}

/// CBOR codec with size limits (see the module docs).
pub(crate) struct Codec<Req, Resp> {
    request_size_maximum: u64,
    response_size_maximum: u64,
    /// Where responses are read into, when they are large enough to be worth
    /// keeping buffers for (blocks); `None`: a new buffer each time.
    buffers: Option<Arc<ReadBuffers>>,
    phantom: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for Codec<Req, Resp> {
    fn default() -> Self {
        Codec {
            request_size_maximum: crate::protocol::limits::MAX_REQUEST_SIZE,
            response_size_maximum: crate::protocol::limits::MAX_SMALL_RESPONSE_SIZE,
            buffers: None,
            phantom: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Codec {
            request_size_maximum: self.request_size_maximum,
            response_size_maximum: self.response_size_maximum,
            buffers: self.buffers.clone(),
            phantom: PhantomData,
        }
    }
}

impl<Req, Resp> Codec<Req, Resp> {
    /// Largest request accepted (bytes).
    pub(crate) fn set_request_size_maximum(mut self, max: u64) -> Self {
        self.request_size_maximum = max;
        self
    }

    /// Largest response accepted (bytes).
    pub(crate) fn set_response_size_maximum(mut self, max: u64) -> Self {
        self.response_size_maximum = max;
        self
    }

    /// Reads responses into buffers from `buffers`, lent to the response
    /// and back when it is dropped.
    pub(crate) fn with_read_buffers(mut self, buffers: Arc<ReadBuffers>) -> Self {
        self.buffers = Some(buffers);
        self
    }
}

/// Buffers are filled (zeroed, then read into) this much at a time.
const READ_STEP: usize = 64 * 1024;

/// Reads until EOF into the front of `buf`, at most `max` bytes: how many
/// arrived, or `Ok(None)` when the peer sent more.
///
/// `buf.len()` is how much of it is initialised (a buffer used before keeps
/// its bytes; they are overwritten, never read). It gets its capacity up
/// front (`max` + 1, the most it can hold) and is never regrown; memory not
/// yet initialised is zeroed [`READ_STEP`] bytes at a time just before it is
/// read into, so pages past what arrived are never touched.
async fn read_into<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: u64,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let limit = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
    if buf.capacity() < limit {
        buf.reserve_exact(limit - buf.len());
    }
    let mut filled = 0usize;
    loop {
        let ready = buf.len().min(limit);
        if filled == ready {
            if ready == limit {
                break;
            }
            buf.resize((ready + READ_STEP).min(limit), 0);
            continue;
        }
        let n = io.read(&mut buf[filled..ready]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok((filled as u64 <= max).then_some(filled))
}

/// [`read_into`] a new buffer, returned holding exactly what arrived.
async fn read_bounded<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: u64,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let Some(filled) = read_into(io, max, &mut buf).await? else {
        return Ok(None);
    };
    buf.truncate(filled);
    // A short response does not keep the whole reservation (realloc shrinks
    // in place).
    if buf.capacity() > READ_STEP && buf.capacity() / 2 > filled {
        buf.shrink_to_fit();
    }
    Ok(Some(buf))
}

/// [`read_into`] a buffer from `buffers`. A response filling at least half
/// of it keeps it (lent, back when the response is dropped); a shorter one
/// is copied out and the buffer goes back at once, so a response never
/// holds more than twice its size (the engine bounds what it buffers by
/// response sizes).
pub async fn read_lent<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: u64,
    buffers: &Arc<ReadBuffers>,
) -> io::Result<Option<Bytes>> {
    let mut buf = buffers.take();
    let read = read_into(io, max, &mut buf).await;
    if let Ok(Some(filled)) = read {
        if filled.saturating_mul(2) >= buf.capacity() {
            return Ok(Some(buffers.lend(buf, filled)));
        }
    }
    let copied = read.map(|read| read.map(|filled| Bytes::copy_from_slice(&buf[..filled])));
    buffers.give_back(buf);
    copied
}

/// Deepest nesting of arrays and maps accepted. A blocks response is three
/// deep (map, list of blocks, block); the decoder recurses per level, so a
/// peer must not choose the depth.
pub(crate) const MAX_NESTING: usize = 16;

/// Checks that `bytes` are exactly one well-formed CBOR item in the subset
/// the protocols use: definite lengths only, no tags, at most
/// [`MAX_NESTING`] levels, nothing after the item. Iterative and linear in
/// the number of items, so hostile input costs no stack and little time.
pub(crate) fn check_shape(bytes: &[u8]) -> Result<(), String> {
    let pos = item_end(bytes, 0)?;
    if pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the CBOR item",
            bytes.len() - pos
        ));
    }
    Ok(())
}

/// Reads one CBOR head at `pos` (any length form): major type and argument.
pub(crate) fn read_head(bytes: &[u8], pos: &mut usize) -> Result<(u8, u64), String> {
    let head = *bytes.get(*pos).ok_or("truncated CBOR")?;
    *pos += 1;
    let (major, info) = (head >> 5, head & 0x1f);
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let raw = bytes.get(*pos..*pos + n).ok_or("truncated CBOR")?;
            *pos += n;
            raw.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))
        }
        31 => return Err("indefinite-length CBOR item".into()),
        _ => return Err("reserved CBOR head".into()),
    };
    Ok((major, arg))
}

/// Where the CBOR item starting at `start` ends, checking it as
/// [`check_shape`] does (except for what follows it).
pub(crate) fn item_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut pos = start;
    // Items still to read at each open level; the bottom one is the message.
    let mut levels: Vec<u64> = vec![1];
    while let Some(left) = levels.last_mut() {
        if *left == 0 {
            levels.pop();
            continue;
        }
        *left -= 1;
        let head_at = pos;
        let (major, arg) = read_head(bytes, &mut pos)?;
        match major {
            0 | 1 => {}
            // false, true, null, undefined and floats: what cbor4ii's serde
            // decoder skips. It refuses the other simple values, so this
            // must too, or a parser built on this (`blocks_wire`) would be
            // more lenient than the decoder it stands in for.
            7 => match bytes[head_at] {
                0xf4..=0xf7 | 0xf9..=0xfb => {}
                _ => return Err("a CBOR simple value the protocols do not use".into()),
            },
            2 | 3 => {
                let end = usize::try_from(arg)
                    .ok()
                    .and_then(|n| pos.checked_add(n))
                    .filter(|end| *end <= bytes.len())
                    .ok_or("truncated CBOR string")?;
                pos = end;
            }
            4 | 5 => {
                let items = if major == 5 {
                    arg.saturating_mul(2)
                } else {
                    arg
                };
                if items > 0 {
                    levels.push(items);
                    if levels.len() > MAX_NESTING + 1 {
                        return Err(format!("CBOR nested deeper than {MAX_NESTING}"));
                    }
                }
            }
            _ => return Err("CBOR tag".into()),
        }
    }
    Ok(pos)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    check_shape(bytes)
        .and_then(|()| cbor4ii::serde::from_slice(bytes).map_err(|e| e.to_string()))
        .map_err(|e| format!("undecodable CBOR ({} bytes): {e}", bytes.len()))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(io::Error::other)
}

/// A response as the codec moves it: the bytes it is written as, and what
/// the bytes read are.
pub(crate) trait Wire: Sized + Send {
    fn to_wire(self) -> io::Result<Bytes>;
    /// `bytes` is a whole response (not empty, within the limit).
    fn from_wire(bytes: Bytes) -> Result<Self, String>;
}

/// The responses that are plain serde values.
macro_rules! serde_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn to_wire(self) -> io::Result<Bytes> {
                encode(&self).map(Bytes::from)
            }
            fn from_wire(bytes: Bytes) -> Result<Self, String> {
                decode(&bytes)
            }
        }
    )*};
}

serde_wire!(
    crate::protocol::HeightResponse,
    crate::protocol::GenesisResponse,
    crate::protocol::BlockHashResponse,
    crate::protocol::BlocksResponse,
    crate::protocol::AnnounceResponse
);

impl Wire for super::blocks_wire::BlocksWire {
    fn to_wire(self) -> io::Result<Bytes> {
        self.into_bytes()
    }
    fn from_wire(bytes: Bytes) -> Result<Self, String> {
        super::blocks_wire::parse(bytes)
            .map(Self::Received)
            .map_err(|e| format!("undecodable blocks response: {e}"))
    }
}

impl<Req, Resp> libp2p::request_response::Codec for Codec<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Wire,
{
    type Protocol = StreamProtocol;
    type Request = Inbound<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match read_bounded(io, self.request_size_maximum).await? {
            None => Inbound::Invalid(format!(
                "request larger than {} bytes",
                self.request_size_maximum
            )),
            Some(bytes) if bytes.is_empty() => Inbound::Empty,
            Some(bytes) => match decode(&bytes) {
                Ok(req) => Inbound::Valid(req),
                Err(e) => Inbound::Invalid(e),
            },
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let max = self.response_size_maximum;
        let read = match &self.buffers {
            Some(buffers) => read_lent(io, max, buffers).await?,
            None => read_bounded(io, max).await?.map(Bytes::from),
        };
        let bytes = read.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response larger than {} bytes", self.response_size_maximum),
            )
        })?;
        if bytes.is_empty() {
            // A clean close with no bytes is how a responder refuses (see
            // protocols/README.md): not a malformed response.
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, REFUSED));
        }
        Resp::from_wire(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Inbound<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Inbound::Valid(req) => io.write_all(&encode(&req)?).await,
            Inbound::Empty => Ok(()),
            Inbound::Invalid(reason) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to send an invalid request: {reason}"),
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = resp.to_wire()?;
        io.write_all(&bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BlockHashRequest, BlocksResponse, HeightRequest, HeightResponse};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_decoding_rules_of_protocols_readme() {
        // The empty map is a height request; anything in it is refused.
        assert!(decode::<HeightRequest>(&hex("a0")).is_ok());
        assert!(
            decode::<HeightRequest>(&hex("a1617801")).is_err(),
            "unknown key"
        );
        // Keys in another order are fine; an unknown key in a request is not.
        assert_eq!(
            decode::<BlockHashRequest>(&hex("a166686569676874182a")).unwrap(),
            BlockHashRequest { height: 42 }
        );
        assert!(decode::<BlockHashRequest>(&hex("a266686569676874182a617801")).is_err());
        // Trailing bytes, indefinite lengths, tags, truncation: refused.
        assert!(decode::<HeightRequest>(&hex("a000")).is_err(), "trailing");
        assert!(
            decode::<HeightRequest>(&hex("bfff")).is_err(),
            "indefinite map"
        );
        assert!(decode::<HeightRequest>(&hex("c0a0")).is_err(), "tag");
        assert!(decode::<HeightRequest>(&hex("")).is_err(), "empty");
        assert!(
            decode::<BlockHashRequest>(&hex("a16668656967")).is_err(),
            "truncated"
        );
        // A response may carry keys we do not know (newer peers)...
        let mut r = cbor4ii::serde::to_vec(
            Vec::new(),
            &HeightResponse {
                height: 1,
                tip: crate::chain::Hash::ZERO,
            },
        )
        .unwrap();
        r[0] += 1; // one more key: "x": [[...]] nested 15 deep is fine
        r.extend(hex("6178"));
        r.extend(std::iter::repeat_n(0x81, MAX_NESTING - 1));
        r.push(0x00);
        assert!(decode::<HeightResponse>(&r).is_ok());
        // ...but not nested deeper than MAX_NESTING, however long the response.
        let mut deep = hex("a166626c6f636b73");
        deep.extend(std::iter::repeat_n(0x81, 100_000));
        deep.push(0x00);
        let e = decode::<BlocksResponse>(&deep).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
        // A huge declared length costs nothing: it is truncated at once.
        assert!(check_shape(&hex("9bffffffffffffffff")).is_err());
    }

    #[test]
    fn simple_values_are_skipped_exactly_where_serde_skips_them() {
        // A blocks response `{"blocks": [], "x": <v>}`: an unknown key's
        // value is skipped, both by the serde decoder and by the in-place
        // parser, for false/true/null/undefined and floats; every other
        // simple value (simple(0..19), the one-byte form) both refuse. The
        // fuzzer found the in-place parser accepting simple(0).
        let with = |v: &str| hex(&format!("a266626c6f636b73806178{v}"));
        for ok in [
            "f4",
            "f5",
            "f6",
            "f7",
            "f93c00",
            "fa3f800000",
            "fb3ff0000000000000",
        ] {
            assert!(decode::<BlocksResponse>(&with(ok)).is_ok(), "{ok}");
            assert!(
                crate::net::blocks_wire::parse(with(ok).into()).is_ok(),
                "{ok}"
            );
        }
        for bad in ["e0", "f3", "f820", "f8ff"] {
            assert!(
                cbor4ii::serde::from_slice::<BlocksResponse>(&with(bad)).is_err(),
                "serde accepts {bad}"
            );
            assert!(decode::<BlocksResponse>(&with(bad)).is_err(), "{bad}");
            assert!(
                crate::net::blocks_wire::parse(with(bad).into()).is_err(),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod hostile_tests {
    //! The codec's half of the hostile-input properties (the decoders
    //! themselves are covered in `tests/hostile_input.rs`): whatever a peer
    //! writes, reading a request yields a request or a refusal, never an I/O
    //! error or a panic, and never buffers more than the limit plus one byte.

    use futures::executor::block_on;
    use futures::io::{AsyncReadExt, Cursor};
    use libp2p::request_response::Codec as _;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::{limits, *};

    fn codec<Req, Resp>(response_max: u64) -> Codec<Req, Resp> {
        Codec::default()
            .set_request_size_maximum(limits::MAX_REQUEST_SIZE)
            .set_response_size_maximum(response_max)
    }

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/test/1")
    }

    /// What the server makes of `bytes`; `Some` iff valid.
    fn read_req<Req, Resp>(bytes: &[u8]) -> Option<Req>
    where
        Req: Send + Serialize + DeserializeOwned,
        Resp: Wire,
    {
        let mut c = codec::<Req, Resp>(limits::MAX_SMALL_RESPONSE_SIZE);
        let read = block_on(c.read_request(&protocol(), &mut Cursor::new(bytes)));
        match read.expect("reading a request from memory never fails") {
            Inbound::Valid(r) => Some(r),
            Inbound::Invalid(_) | Inbound::Empty => None,
        }
    }

    /// The request decoders agree with the plain decode, and everything over
    /// the limit is refused whatever it holds.
    fn requests_agree(bytes: &[u8]) {
        fn one<Req, Resp>(bytes: &[u8])
        where
            Req: Send + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
            Resp: Wire,
        {
            let direct = decode::<Req>(bytes).ok();
            let expected = direct.filter(|_| bytes.len() as u64 <= limits::MAX_REQUEST_SIZE);
            assert_eq!(read_req::<Req, Resp>(bytes), expected);
        }
        one::<HeightRequest, HeightResponse>(bytes);
        one::<GenesisRequest, GenesisResponse>(bytes);
        one::<BlockHashRequest, BlockHashResponse>(bytes);
        one::<BlocksRequest, BlocksResponse>(bytes);
        one::<AnnounceRequest, AnnounceResponse>(bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_request_bytes_are_a_request_or_a_refusal(
            bytes in prop::collection::vec(any::<u8>(), 0..1100)
        ) {
            requests_agree(&bytes);
        }

        /// Valid requests padded past the limit: refused although a prefix decodes.
        #[test]
        fn requests_over_the_limit_are_refused(start in any::<u64>(), count in any::<u32>(), pad in 0usize..64) {
            let mut bytes = encode(&BlocksRequest { start, count }).unwrap();
            requests_agree(&bytes);
            prop_assert!(read_req::<BlocksRequest, BlocksResponse>(&bytes).is_some());
            bytes.resize(limits::MAX_REQUEST_SIZE as usize + 1 + pad, 0);
            prop_assert!(read_req::<BlocksRequest, BlocksResponse>(&bytes).is_none());
        }
    }

    #[test]
    fn an_endless_request_is_cut_at_the_limit_and_refused_with_the_reason() {
        let mut endless = futures::io::repeat(0xa0);
        let mut c = codec::<HeightRequest, HeightResponse>(limits::MAX_SMALL_RESPONSE_SIZE);
        let read = block_on(c.read_request(&protocol(), &mut endless)).unwrap();
        let Inbound::Invalid(reason) = read else {
            panic!("an endless request was accepted");
        };
        assert_eq!(reason, "request larger than 1024 bytes");
        // The reader was left where the codec stopped: at most limit + 1 bytes taken.
        let mut rest = [0u8; 4];
        assert_eq!(block_on(endless.read(&mut rest)).unwrap(), 4);
    }

    #[test]
    fn an_endless_response_is_cut_at_the_limit_and_is_invalid_data() {
        for max in [
            limits::MAX_SMALL_RESPONSE_SIZE,
            limits::MAX_BLOCKS_RESPONSE_SIZE,
        ] {
            let mut c = codec::<BlocksRequest, BlocksResponse>(max);
            let err = block_on(c.read_response(&protocol(), &mut futures::io::repeat(0x80)))
                .expect_err("an endless response was accepted");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(err.to_string(), format!("response larger than {max} bytes"));
        }
    }

    /// The encoded blocks response for `n` blocks of `body` bytes.
    fn blocks_response(n: usize, body: usize) -> (Vec<crate::chain::Block>, Bytes) {
        use crate::chain::{generate::ChainGenerator, AuthorityKey, BlockRef, Genesis};
        use crate::net::blocks_wire::BlocksWire;
        let g = Genesis::dev();
        let chain: Vec<_> =
            ChainGenerator::new(&g, AuthorityKey::dev(), BlockRef::of(g.block()), body, 0)
                .take(n)
                .collect();
        let bytes = BlocksWire::from_blocks(chain.clone())
            .unwrap()
            .into_bytes()
            .unwrap();
        (chain, bytes)
    }

    #[test]
    fn a_blocks_response_is_read_into_the_buffer_the_last_one_left_behind() {
        use crate::net::blocks_wire::BlocksWire;
        let buffers = ReadBuffers::new(2);
        let mut c = codec::<BlocksRequest, BlocksWire>(limits::MAX_BLOCKS_RESPONSE_SIZE)
            .with_read_buffers(buffers.clone());
        let read = |c: &mut Codec<BlocksRequest, BlocksWire>, bytes: &Bytes| match block_on(
            c.read_response(&protocol(), &mut Cursor::new(bytes.to_vec())),
        ) {
            Ok(BlocksWire::Received(r)) => r,
            other => panic!("not a received response: {other:?}"),
        };
        // Over half the limit: the response keeps the buffer it was read into.
        let (chain, big) = blocks_response(40, 64 * 1024);
        assert!(big.len() as u64 * 2 > limits::MAX_BLOCKS_RESPONSE_SIZE);
        let first = read(&mut c, &big);
        assert_eq!(first.blocks, chain);
        let at = first.blocks[0].body.as_ptr();
        assert_eq!(buffers.idle_count(), 0, "lent while the blocks live");
        drop(first);
        assert_eq!(buffers.idle_count(), 1, "back once they are dropped");
        let again = read(&mut c, &big);
        assert_eq!(again.blocks, chain, "a used buffer yields the same blocks");
        assert_eq!(
            again.blocks[0].body.as_ptr(),
            at,
            "read into the same memory"
        );
        // A short response is copied out: the buffer is idle again at once,
        // and what was left in it from the long one does not leak in.
        let (short_chain, short) = blocks_response(3, 100);
        let small = read(&mut c, &short);
        assert_eq!(small.blocks, short_chain);
        assert_eq!(buffers.idle_count(), 1);
        drop(again);
        assert_eq!(buffers.idle_count(), 2);
        // Too long: refused, and the buffer is not lost.
        let mut endless = futures::io::repeat(0x80);
        let err = block_on(c.read_response(&protocol(), &mut endless)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(buffers.idle_count(), 2);
    }

    #[test]
    fn a_response_exactly_at_the_limit_is_read_and_one_byte_more_is_not() {
        let ok = encode(&HeightResponse {
            height: 1,
            tip: crate::chain::Hash([3; 32]),
        })
        .unwrap();
        let mut c = codec::<HeightRequest, HeightResponse>(ok.len() as u64);
        assert!(block_on(c.read_response(&protocol(), &mut Cursor::new(&ok))).is_ok());
        let mut longer = ok.clone();
        longer.push(0);
        let err = block_on(c.read_response(&protocol(), &mut Cursor::new(&longer))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
