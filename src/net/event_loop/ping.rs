//! Noticing a silent link: libp2p's ping reports each failed ping but never
//! closes a connection, so a peer behind a pulled cable, a blackholed route
//! or a stopped process (TCP still "up", nothing answering) would stay
//! connected until the OS gives up on TCP, many minutes later. This room
//! counts the failed pings of each connection in a row ([`Silence`], pure)
//! and closes a connection once [`NetConfig::ping_max_failures`] pings in a
//! row failed.
//!
//! Owns: the per-connection count and the close. Must not ban, penalize or
//! report the peer as misbehaving (a link fault is nobody's offence; the
//! disconnect that follows is reported like any other and the peer is
//! redialed), nor touch slots beyond feeding them the measured round trip.
//!
//! [`NetConfig::ping_max_failures`]: crate::net::NetConfig::ping_max_failures

use std::collections::HashMap;

use libp2p::{metrics::Recorder, ping, swarm::ConnectionId};
use tracing::{debug, info, trace};

use super::EventLoop;

/// What a ping on one connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Answered,
    /// Timed out or broke. libp2p reports a failure only from the second in
    /// a row on (the first of a run is kept to itself), so each reported
    /// failure stands for at least two missed pings the first time.
    Failed,
    /// The peer does not speak ping: says nothing about the link.
    Unsupported,
}

/// What to do with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    /// This many pings failed in a row: close it.
    Close {
        missed: u32,
    },
}

/// Failed pings in a row, per connection. Pure: fed outcomes, answers
/// verdicts.
#[derive(Debug)]
pub(super) struct Silence {
    /// Pings failed in a row that close a connection (at least 2).
    limit: u32,
    /// Failures reported in a row, per connection with at least one.
    failures: HashMap<ConnectionId, u32>,
}

impl Silence {
    pub(super) fn new(limit: u32) -> Silence {
        Silence {
            limit: limit.max(2),
            failures: HashMap::new(),
        }
    }

    pub(super) fn ping(&mut self, connection: ConnectionId, outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::Answered => {
                self.failures.remove(&connection);
                Verdict::Keep
            }
            Outcome::Unsupported => Verdict::Keep,
            Outcome::Failed => {
                let reported = self.failures.entry(connection).or_insert(0);
                *reported += 1;
                // The first failure of the run went unreported.
                let missed = *reported + 1;
                if missed >= self.limit {
                    self.failures.remove(&connection);
                    Verdict::Close { missed }
                } else {
                    Verdict::Keep
                }
            }
        }
    }

    /// The connection is gone (its count goes too).
    pub(super) fn closed(&mut self, connection: ConnectionId) {
        self.failures.remove(&connection);
    }
}

impl EventLoop {
    pub(super) fn on_ping(&mut self, event: ping::Event) {
        self.p2p_metrics.record(&event);
        let peer = event.peer;
        let outcome = match &event.result {
            Ok(rtt) => {
                trace!(%peer, ?rtt, "ping");
                self.slots.rtt(&peer, *rtt);
                Outcome::Answered
            }
            Err(ping::Failure::Unsupported) => {
                debug!(%peer, "peer does not speak ping");
                Outcome::Unsupported
            }
            Err(e) => {
                debug!(%peer, error = %e, "ping failed");
                Outcome::Failed
            }
        };
        if let Verdict::Close { missed } = self.silence.ping(event.connection, outcome) {
            let addr = self
                .peer_addrs
                .get(&peer)
                .and_then(|conns| conns.get(&event.connection))
                .map(ToString::to_string)
                .unwrap_or_default();
            info!(
                %peer,
                %addr,
                failed_pings = missed,
                "peer stopped answering pings: closing a silent connection"
            );
            self.metrics.silent_connection_closed();
            self.swarm.close_connection(event.connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_closed_after_the_limit_of_failures_in_a_row_and_an_answer_starts_again() {
        let mut s = Silence::new(3);
        let a = ConnectionId::new_unchecked(1);
        let b = ConnectionId::new_unchecked(2);
        // Reported failure 1 is the second missed ping.
        assert_eq!(s.ping(a, Outcome::Failed), Verdict::Keep);
        // An answer in between: the run starts again.
        assert_eq!(s.ping(a, Outcome::Answered), Verdict::Keep);
        assert_eq!(s.ping(a, Outcome::Failed), Verdict::Keep);
        // Another connection's failures are its own.
        assert_eq!(s.ping(b, Outcome::Failed), Verdict::Keep);
        assert_eq!(s.ping(a, Outcome::Failed), Verdict::Close { missed: 3 });
        assert_eq!(s.ping(b, Outcome::Answered), Verdict::Keep);
        s.closed(a);
        assert!(s.failures.is_empty());
    }

    #[test]
    fn a_peer_without_ping_is_never_closed_for_it() {
        let mut s = Silence::new(2);
        let a = ConnectionId::new_unchecked(1);
        for _ in 0..100 {
            assert_eq!(s.ping(a, Outcome::Unsupported), Verdict::Keep);
        }
        assert_eq!(s.ping(a, Outcome::Failed), Verdict::Close { missed: 2 });
    }
}
