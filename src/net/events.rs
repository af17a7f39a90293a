//! The path of [`NetEvent`]s from the event loop to their one reader, in two
//! lanes.
//!
//! Owns: which events may be lost and which may not, and the memory bound of
//! each lane. Must not interpret events (that is the reader's job) nor block
//! the event loop.
//!
//! - **Lossless lane** — what carries state the reader cannot recover by
//!   asking again: a peer connecting or leaving (a lost disconnect leaves a
//!   ghost peer whose height keeps counting toward the target), a peer's bad
//!   requests (a flood of garbage must not escape its penalty by filling the
//!   channel), and our listen addresses. It never waits and never drops:
//!   instead of a queue of events it holds *coalesced per-peer state* — what
//!   the reader has not seen yet about each peer. A peer that connects and
//!   leaves before the reader looks is no event at all; one that leaves and
//!   comes back is one "left" and one "connected". So the lane holds at most
//!   one entry per peer that is connected now or that the reader still
//!   believes connected (the set the sync engine's peer book holds anyway),
//!   with at most [`MAX_PENDING_BAD_REQUESTS`] bad requests each (more than
//!   enough to ban), and one entry per listen address. However slowly the
//!   reader reads, connection churn cannot grow it.
//! - **Bulk lane** — hints the reader also learns by polling (a pushed tip:
//!   the sync engine asks every peer for its height periodically): a bounded
//!   channel that drops when full, so a slow reader costs a later
//!   `Synced`/`Imported` line, never memory or a stalled swarm.
//!
//! The reader drains the lossless lane first, so it sees a peer connect
//! before any bulk event that peer caused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, Notify};
use tracing::{trace, warn};

use super::{InboundFault, NetEvent};

/// Bad requests kept per peer until the reader takes them; more add nothing
/// (a peer is banned long before).
pub const MAX_PENDING_BAD_REQUESTS: usize = 8;

#[derive(Debug, Clone)]
struct BadRequest {
    protocol: &'static str,
    fault: InboundFault,
    error: String,
}

/// What the reader has not yet been told about one peer.
#[derive(Debug, Default)]
struct PeerChange {
    /// It left (the reader believes it connected).
    down: bool,
    /// It is connected (again) through this address.
    up: Option<Multiaddr>,
    bad: VecDeque<BadRequest>,
}

impl PeerChange {
    fn is_empty(&self) -> bool {
        !self.down && self.up.is_none() && self.bad.is_empty()
    }
}

#[derive(Debug, Default)]
struct Lane {
    /// Peers with news, in the order their news began.
    order: VecDeque<PeerId>,
    changes: HashMap<PeerId, PeerChange>,
    /// Peers the reader was told connected and not yet told left.
    believed: HashSet<PeerId>,
    listen: VecDeque<Multiaddr>,
    closed: bool,
}

impl Lane {
    fn change(&mut self, peer: PeerId) -> &mut PeerChange {
        if !self.changes.contains_key(&peer) {
            self.order.push_back(peer);
        }
        self.changes.entry(peer).or_default()
    }

    fn connected(&mut self, peer: PeerId, addr: Multiaddr) {
        self.change(peer).up = Some(addr);
    }

    fn disconnected(&mut self, peer: PeerId) {
        let believed = self.believed.contains(&peer);
        let c = self.change(peer);
        // The reader never saw this connection: it is as if it never was,
        // and so are the bad requests it carried (the reader could not
        // place them on a peer it does not know).
        c.up = None;
        if believed {
            c.down = true;
        } else {
            c.bad.clear();
        }
        self.forget_if_empty(peer);
    }

    fn bad_request(&mut self, peer: PeerId, bad: BadRequest) {
        let c = self.change(peer);
        if c.bad.len() < MAX_PENDING_BAD_REQUESTS {
            c.bad.push_back(bad);
        }
    }

    fn forget_if_empty(&mut self, peer: PeerId) {
        if self.changes.get(&peer).is_some_and(PeerChange::is_empty) {
            self.changes.remove(&peer);
            self.order.retain(|p| *p != peer);
        }
    }

    /// The next event for the reader, oldest news first.
    fn pop(&mut self) -> Option<NetEvent> {
        if let Some(addr) = self.listen.pop_front() {
            return Some(NetEvent::NewListenAddr { addr });
        }
        while let Some(&peer) = self.order.front() {
            let Some(c) = self.changes.get_mut(&peer) else {
                self.order.pop_front();
                continue;
            };
            // Bad requests while the reader knows the peer (they are the
            // peer's, whichever connection carried them); then a departure,
            // since whatever follows belongs to a new connection.
            let bad_first = self.believed.contains(&peer) || (!c.down && c.up.is_none());
            let bad = if bad_first { c.bad.pop_front() } else { None };
            let event = if let Some(b) = bad {
                NetEvent::BadRequest {
                    peer,
                    protocol: b.protocol,
                    fault: b.fault,
                    error: b.error,
                }
            } else if c.down {
                c.down = false;
                self.believed.remove(&peer);
                NetEvent::PeerDisconnected { peer }
            } else if let Some(addr) = c.up.take() {
                self.believed.insert(peer);
                NetEvent::PeerConnected { peer, addr }
            } else {
                self.changes.remove(&peer);
                self.order.pop_front();
                continue;
            };
            if self.changes.get(&peer).is_some_and(PeerChange::is_empty) {
                self.changes.remove(&peer);
                self.order.pop_front();
            }
            return Some(event);
        }
        None
    }

    fn len(&self) -> usize {
        self.changes.len() + self.listen.len()
    }
}

struct Shared {
    lane: Mutex<Lane>,
    wake: Notify,
}

impl Shared {
    /// A poisoned lock only means a panic elsewhere; the lane is plain data.
    fn lane(&self) -> MutexGuard<'_, Lane> {
        self.lane.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The event loop's end. Never waits.
pub(crate) struct EventSink {
    shared: Arc<Shared>,
    bulk: mpsc::Sender<NetEvent>,
}

impl EventSink {
    /// Reports an event: lossless ones into the coalescing lane, the rest
    /// into the bounded channel (dropped with a WARN when it is full).
    pub(crate) fn emit(&self, event: NetEvent) {
        match event {
            NetEvent::PeerConnected { peer, addr } => self.lossless(|l| l.connected(peer, addr)),
            NetEvent::PeerDisconnected { peer } => self.lossless(|l| l.disconnected(peer)),
            NetEvent::NewListenAddr { addr } => self.lossless(|l| l.listen.push_back(addr)),
            NetEvent::BadRequest {
                peer,
                protocol,
                fault,
                error,
            } => self.lossless(|l| {
                l.bad_request(
                    peer,
                    BadRequest {
                        protocol,
                        fault,
                        error,
                    },
                )
            }),
            bulk @ NetEvent::TipAnnounced { .. } => match self.bulk.try_send(bulk) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    warn!(?event, "net event channel full, dropping a tip announcement (heights are also polled)")
                }
                Err(mpsc::error::TrySendError::Closed(_)) => trace!("net event receiver dropped"),
            },
        }
    }

    fn lossless(&self, f: impl FnOnce(&mut Lane)) {
        f(&mut self.shared.lane());
        self.shared.wake.notify_one();
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.shared.lane().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The reader's end of the network's events (see the module docs).
pub struct NetEvents {
    shared: Arc<Shared>,
    bulk: mpsc::Receiver<NetEvent>,
    bulk_open: bool,
}

impl NetEvents {
    /// The next event; `None` once the event loop has stopped and everything
    /// it reported was read. Cancel-safe (usable in `select!`).
    pub async fn recv(&mut self) -> Option<NetEvent> {
        loop {
            let closed = {
                let mut lane = self.shared.lane();
                if let Some(event) = lane.pop() {
                    return Some(event);
                }
                lane.closed
            };
            if !self.bulk_open {
                if closed {
                    return None;
                }
                self.shared.wake.notified().await;
                continue;
            }
            tokio::select! {
                biased;
                _ = self.shared.wake.notified() => {}
                event = self.bulk.recv() => match event {
                    Some(event) => return Some(event),
                    None => self.bulk_open = false,
                },
            }
        }
    }

    /// Entries held in the lossless lane (peers with news, listen addresses).
    pub fn pending_lossless(&self) -> usize {
        self.shared.lane().len()
    }
}

/// The two ends; `capacity` bounds the bulk lane only.
pub(crate) fn channel(capacity: usize) -> (EventSink, NetEvents) {
    let shared = Arc::new(Shared {
        lane: Mutex::new(Lane::default()),
        wake: Notify::new(),
    });
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        EventSink {
            shared: shared.clone(),
            bulk: tx,
        },
        NetEvents {
            shared,
            bulk: rx,
            bulk_open: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Hash;

    fn addr() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/1".parse().unwrap()
    }

    fn tip(peer: PeerId) -> NetEvent {
        NetEvent::TipAnnounced {
            peer,
            height: 1,
            tip: Hash::ZERO,
        }
    }

    fn drain(rx: &mut NetEvents) -> Vec<NetEvent> {
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            while let Ok(Some(e)) =
                tokio::time::timeout(std::time::Duration::from_millis(20), rx.recv()).await
            {
                out.push(e);
            }
        });
        out
    }

    #[test]
    fn a_full_channel_drops_tips_but_never_a_disconnect() {
        let (tx, mut rx) = channel(2);
        let p = PeerId::random();
        tx.emit(NetEvent::PeerConnected {
            peer: p,
            addr: addr(),
        });
        let first = drain(&mut rx);
        assert!(matches!(first[..], [NetEvent::PeerConnected { .. }]));
        for _ in 0..100 {
            tx.emit(tip(p));
        }
        tx.emit(NetEvent::PeerDisconnected { peer: p });
        let events = drain(&mut rx);
        let tips = events
            .iter()
            .filter(|e| matches!(e, NetEvent::TipAnnounced { .. }))
            .count();
        assert_eq!(tips, 2, "the bulk lane is bounded");
        assert!(matches!(
            events.first(),
            Some(NetEvent::PeerDisconnected { peer }) if *peer == p
        ));
    }

    #[test]
    fn churn_the_reader_never_saw_is_no_event_and_holds_no_memory() {
        let (tx, mut rx) = channel(1);
        for _ in 0..10_000 {
            let p = PeerId::random();
            tx.emit(NetEvent::PeerConnected {
                peer: p,
                addr: addr(),
            });
            tx.emit(NetEvent::BadRequest {
                peer: p,
                protocol: "/x",
                fault: InboundFault::Malformed,
                error: "garbage".into(),
            });
            tx.emit(NetEvent::PeerDisconnected { peer: p });
        }
        assert_eq!(rx.pending_lossless(), 0);
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn a_reconnect_is_one_departure_then_one_arrival_with_bad_requests_capped() {
        let (tx, mut rx) = channel(1);
        let p = PeerId::random();
        tx.emit(NetEvent::PeerConnected {
            peer: p,
            addr: addr(),
        });
        assert_eq!(drain(&mut rx).len(), 1);
        for _ in 0..5 {
            tx.emit(NetEvent::PeerDisconnected { peer: p });
            tx.emit(NetEvent::PeerConnected {
                peer: p,
                addr: addr(),
            });
        }
        for _ in 0..100 {
            tx.emit(NetEvent::BadRequest {
                peer: p,
                protocol: "/x",
                fault: InboundFault::Malformed,
                error: "garbage".into(),
            });
        }
        let events = drain(&mut rx);
        assert_eq!(events.len(), 2 + MAX_PENDING_BAD_REQUESTS);
        let kinds: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                NetEvent::PeerDisconnected { .. } => Some("down"),
                NetEvent::PeerConnected { .. } => Some("up"),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, ["down", "up"]);
        assert_eq!(rx.pending_lossless(), 0);
    }

    #[test]
    fn the_reader_ends_after_everything_was_read() {
        let (tx, mut rx) = channel(1);
        let p = PeerId::random();
        tx.emit(NetEvent::PeerConnected {
            peer: p,
            addr: addr(),
        });
        drop(tx);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                rx.recv().await,
                Some(NetEvent::PeerConnected { .. })
            ));
            assert!(rx.recv().await.is_none());
        });
    }
}
