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
