//! The transport stack of every Concord swarm: TCP (nodelay) with noise and
//! yamux (plus QUIC with the `quic` feature), DNS resolution, and bandwidth
//! metrics per transport and direction.
//!
//! One function for the node and for the benchmark's raw-transport ceiling,
//! so that the ceiling keeps measuring the stack the node actually runs. Owns
//! nothing above the connection: behaviours are the caller's.

use std::time::Duration;

use libp2p::{
    identity::Keypair, metrics::Registry, noise, swarm::NetworkBehaviour, tcp, yamux, Swarm,
    SwarmBuilder,
};

use super::NetError;

/// A swarm running `behaviour` on the Concord transport stack, closing
/// connections that have had no stream for `idle`. Bandwidth goes to `registry`.
pub fn build_swarm<B: NetworkBehaviour>(
    key: Keypair,
    behaviour: B,
    idle: Duration,
    registry: &mut Registry,
) -> Result<Swarm<B>, NetError> {
    let builder = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        .with_dns()
        .map_err(|e| NetError::Transport(format!("DNS resolver: {e}")))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(move |_| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(behaviour))
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
