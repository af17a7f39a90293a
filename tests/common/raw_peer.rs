//! Misbehaving clients for tests: a bare libp2p swarm ([`raw_swarm`]) that
//! speaks one request-response protocol through a codec of the test's
//! choosing, and [`RawPeer`], which writes arbitrary bytes as a request.

use std::io;
use std::time::Duration;

use concord::protocol::BLOCKS_PROTOCOL;
use futures::prelude::*;
use libp2p::{request_response, Multiaddr, PeerId, StreamProtocol};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(20);

/// A codec that writes arbitrary request bytes: a misbehaving client.
#[derive(Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await
    }
}

/// A swarm with a new identity over TCP (noise, yamux) running `behaviour`,
/// that keeps idle connections for `idle`.
pub fn bare_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: B,
    idle: Duration,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// A swarm with a new identity over TCP (noise, yamux) that speaks only
/// `protocol`, outbound, through `codec`, and keeps idle connections for `idle`.
pub fn raw_swarm<C>(
    codec: C,
    protocol: &'static str,
    config: request_response::Config,
    idle: Duration,
) -> libp2p::Swarm<request_response::Behaviour<C>>
where
    C: request_response::Codec<Protocol = StreamProtocol> + Clone + Send + 'static,
{
    let behaviour = request_response::Behaviour::with_codec(
        codec,
        [(
            StreamProtocol::new(protocol),
            request_response::ProtocolSupport::Outbound,
        )],
        config,
    );
    bare_swarm(behaviour, idle)
}

pub struct RawPeer {
    swarm: libp2p::Swarm<request_response::Behaviour<RawCodec>>,
    pub peer_id: PeerId,
}

impl RawPeer {
    pub fn new() -> RawPeer {
        RawPeer::with_protocol(BLOCKS_PROTOCOL)
    }

    /// A raw peer speaking `protocol` instead of `/concord/blocks/1`.
    #[allow(dead_code)]
    pub fn with_protocol(protocol: &'static str) -> RawPeer {
        let swarm = raw_swarm(
            RawCodec,
            protocol,
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            Duration::from_secs(60),
        );
        let peer_id = *swarm.local_peer_id();
        RawPeer { swarm, peer_id }
    }

    /// Sends `bytes` as a blocks request and drives the swarm until the
    /// request ends (the server closes the stream without answering).
    pub async fn send(&mut self, peer: PeerId, addr: Multiaddr, bytes: Vec<u8>) {
        self.swarm.add_peer_address(peer, addr);
        let id = self.swarm.behaviour_mut().send_request(&peer, bytes);
        timeout(DEADLINE, async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(e) = self.swarm.select_next_some().await
                {
                    match e {
                        request_response::Event::OutboundFailure { request_id, .. }
                            if request_id == id =>
                        {
                            return
                        }
                        request_response::Event::Message {
                            message: request_response::Message::Response { request_id, .. },
                            ..
                        } if request_id == id => return,
                        _ => {}
                    }
                }
            }
        })
        .await
        .expect("raw request did not finish");
    }

    /// Sends `bytes` as a request and returns the bytes of the response (a
    /// clean close with no bytes is an empty response), or the failure.
    #[allow(dead_code)]
    pub async fn exchange(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.swarm.add_peer_address(peer, addr);
        let id = self.swarm.behaviour_mut().send_request(&peer, bytes);
        timeout(DEADLINE, async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(e) = self.swarm.select_next_some().await
                {
                    match e {
                        request_response::Event::OutboundFailure {
                            request_id, error, ..
                        } if request_id == id => return Err(error.to_string()),
                        request_response::Event::Message {
                            message:
                                request_response::Message::Response {
                                    request_id,
                                    response,
                                },
                            ..
                        } if request_id == id => return Ok(response),
                        _ => {}
                    }
                }
            }
        })
        .await
        .expect("raw request did not finish")
    }
}
