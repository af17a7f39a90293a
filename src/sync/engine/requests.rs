//! Requests out and their bookkeeping: sending (with its timeout), releasing
//! a peer's slot when an answer or failure comes back, failing a departed
//! peer's requests over, penalties and bans (also for bad inbound requests,
//! and those restored from an earlier run), and the height refreshes.

use std::time::Instant;

use libp2p::PeerId;

use super::{Action, Failure, Outstanding, Purpose, Request, SyncEngine};
use crate::sync::batch::ReqId;
use crate::sync::peer_book::{PeerMemory, Penalty};

impl SyncEngine {
    /// Asks each of `peers` for its block hash at `height` (votes, polls,
    /// probes, checkpoint and fork rechecks all ask this one question).
    pub(super) fn ask_block_hash(
        &mut self,
        peers: &[PeerId],
        height: u64,
        purpose: Purpose,
        now: Instant,
    ) {
        for p in peers {
            self.send(*p, Request::BlockHash { height }, purpose, now);
        }
    }

    pub(super) fn send(
        &mut self,
        peer: PeerId,
        request: Request,
        purpose: Purpose,
        now: Instant,
    ) -> ReqId {
        let id = self.next_req;
        self.next_req += 1;
        let timeout = match request {
            Request::Blocks { .. } => self.config.request_timeout,
            _ => self.config.small_request_timeout,
        };
        if let Purpose::Download { .. } = purpose {
            if let Some(p) = self.book.get_mut(&peer) {
                p.in_flight += 1;
            }
        }
        *self.stats.requests_sent.entry(request.kind()).or_default() += 1;
        if let Request::Blocks { .. } = request {
            self.stats.first_blocks_request_at.get_or_insert(now);
        }
        self.requests.insert(
            id,
            Outstanding {
                peer,
                purpose,
                sent: now,
                deadline: now + timeout,
            },
        );
        self.actions.push_back(Action::Send { id, peer, request });
        id
    }

    /// Records when a peer was first seen ahead of our stored tip.
    pub(super) fn note_peer_height(&mut self, height: u64, now: Instant) {
        if height > self.stored.height {
            self.stats.first_peer_ahead_at.get_or_insert(now);
        }
    }

    /// Bookkeeping when a request leaves the outstanding map.
    pub(super) fn release(&mut self, out: &Outstanding) {
        if let Purpose::Download { .. } = out.purpose {
            if let Some(p) = self.book.get_mut(&out.peer) {
                p.in_flight = p.in_flight.saturating_sub(1);
            }
        }
    }

    pub(super) fn fail_requests_of(&mut self, peer: &PeerId, now: Instant) {
        let ids: Vec<ReqId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(out) = self.requests.remove(&id) {
                self.release(&out);
                self.on_failure(out, Failure::Disconnected, now);
            }
        }
    }

    /// Penalizes `peer`, and bans it when its score crosses the threshold.
    pub(super) fn penalize(&mut self, peer: &PeerId, penalty: Penalty, now: Instant) {
        if self.book.get(peer).is_none() || self.book.is_banned(peer, now) {
            return;
        }
        *self.stats.penalties.entry(penalty.name()).or_default() += 1;
        tracing::debug!(%peer, reason = penalty.name(), "peer penalized");
        if let Some(ban) = self.book.penalize(
            peer,
            penalty,
            self.config.ban_threshold,
            self.config.ban_duration,
            now,
        ) {
            *self.stats.bans.entry(penalty.name()).or_default() += 1;
            tracing::warn!(%peer, reason = penalty.name(), secs = self.config.ban_duration.as_secs(), "peer banned");
            self.actions.push_back(Action::Ban {
                peer: ban.peer,
                duration: self.config.ban_duration,
                reason: ban.reason,
            });
            self.fail_requests_of(peer, now);
        }
    }

    /// Asks the peers whose height lapsed (`status_ttl`) for it again, out
    /// of the regular round.
    pub(super) fn refresh_stale_heights(&mut self, now: Instant) {
        let ttl = self.config.status_ttl;
        let stale: Vec<PeerId> = self
            .book
            .usable()
            .filter(|(_, p)| p.height.is_some() && !p.status_fresh(now, ttl))
            .map(|(p, _)| *p)
            .collect();
        self.ask_heights(stale, now);
    }

    pub(super) fn refresh_heights(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self.book.usable().map(|(p, _)| *p).collect();
        self.ask_heights(peers, now);
    }

    /// A height request to each of `peers` that has none outstanding.
    fn ask_heights(&mut self, peers: Vec<PeerId>, now: Instant) {
        for p in peers {
            let pending = self
                .requests
                .values()
                .any(|r| r.peer == p && r.purpose == Purpose::Height);
            if !pending {
                self.send(p, Request::Height, Purpose::Height, now);
            }
        }
    }

    // ----- inputs about peers' conduct and memory -----

    /// `peer` sent us an undecodable or oversize request: misbehaviour like
    /// any other (two of them within the retention ban it).
    pub fn handle_bad_request(&mut self, peer: PeerId, now: Instant) {
        self.clock = self.clock.max(now);
        self.penalize(&peer, Penalty::BadRequest, now);
        self.schedule(now);
    }

    /// Scores and bans saved by an earlier run: bans still in force are
    /// carried out again (the driver refuses the peer for what is left).
    pub fn restore(&mut self, memory: Vec<PeerMemory>, now: Instant) {
        self.clock = self.clock.max(now);
        self.book.restore(memory, now);
        let bans: Vec<_> = self.book.banned(now).collect();
        for (peer, reason) in bans {
            if let Some((until, _)) = self.book.ban_of(&peer) {
                self.actions.push_back(Action::Ban {
                    peer,
                    duration: until.saturating_duration_since(now),
                    reason,
                });
            }
        }
    }

    /// What should outlive this run: scores and bans in force.
    pub fn peer_memory(&self, now: Instant) -> Vec<PeerMemory> {
        self.book.memory(now)
    }
}
