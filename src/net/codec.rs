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

use std::{io, marker::PhantomData};

use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{de::DeserializeOwned, Serialize};

/// A request as read by the server: decoded, or why it could not be.
#[derive(Debug, Clone)]
pub(crate) enum Inbound<T> {
    /// A well-formed request.
    Valid(T),
    /// Oversize or undecodable bytes; the string says which.
    Invalid(String),
}

/// CBOR codec with size limits (see the module docs).
pub(crate) struct Codec<Req, Resp> {
    request_size_maximum: u64,
    response_size_maximum: u64,
    phantom: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for Codec<Req, Resp> {
    fn default() -> Self {
        Codec {
            request_size_maximum: crate::protocol::limits::MAX_REQUEST_SIZE,
            response_size_maximum: crate::protocol::limits::MAX_SMALL_RESPONSE_SIZE,
            phantom: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Codec {
            request_size_maximum: self.request_size_maximum,
            response_size_maximum: self.response_size_maximum,
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
}

/// Reads until EOF, at most `max` bytes; `Ok(None)` when the peer sent more.
async fn read_bounded<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: u64,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    io.take(max.saturating_add(1)).read_to_end(&mut buf).await?;
    if buf.len() as u64 > max {
        Ok(None)
    } else {
        Ok(Some(buf))
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    cbor4ii::serde::from_slice(bytes)
        .map_err(|e| format!("undecodable CBOR ({} bytes): {e}", bytes.len()))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(io::Error::other)
}

impl<Req, Resp> libp2p::request_response::Codec for Codec<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
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
        let bytes = read_bounded(io, self.response_size_maximum)
            .await?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("response larger than {} bytes", self.response_size_maximum),
                )
            })?;
        decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
        io.write_all(&encode(&resp)?).await
    }
}

#[cfg(test)]
mod tests {
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
        Resp: Send + Serialize + DeserializeOwned,
    {
        let mut c = codec::<Req, Resp>(limits::MAX_SMALL_RESPONSE_SIZE);
        let read = block_on(c.read_request(&protocol(), &mut Cursor::new(bytes)));
        match read.expect("reading a request from memory never fails") {
            Inbound::Valid(r) => Some(r),
            Inbound::Invalid(_) => None,
        }
    }

    /// The request decoders agree with the plain decode, and everything over
    /// the limit is refused whatever it holds.
    fn requests_agree(bytes: &[u8]) {
        fn one<Req, Resp>(bytes: &[u8])
        where
            Req: Send + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
            Resp: Send + Serialize + DeserializeOwned,
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
