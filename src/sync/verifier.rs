//! The majority-vote verifier: one vote per batch on the hash of its last block.
//!
//! Pure: it tallies answers that the engine feeds it and says what they mean.
//! It never sends requests itself; the engine picks voters and asks them.
//!
//! Rules. The peer that served a batch votes for the hash it served. Round 1
//! asks `vote_quorum` other peers; if every non-abstaining answer agrees, the
//! batch is accepted. Any dissent escalates to a second round with up to
//! `vote_escalation` more peers; then a hash needs at least 2/3 of all
//! non-abstaining votes (server included) to win. The decision names the
//! dissenters (if the served hash wins) or the server's backers (if another
//! wins); the engine takes them to be on another fork there, which is not an
//! offence. With no 2/3 winner the batch is not taken: the engine reports a
//! split. A peer that does not hold the height yet abstains ("don't have it"
//! is not a lie).
//!
//! A vote does not wait for answers that cannot change its outcome: once the
//! served hash holds 2/3 even if every voter still silent, and every peer a
//! second round could still ask, voted against it, it is accepted. On a small
//! network (three seeders: the server and two voters) that is the server and
//! one agreeing voter, so a voter that is busy sending a large response does
//! not hold the batch, and everything above it, back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use libp2p::PeerId;

use crate::chain::Hash;
use crate::sync::fork_choice::{group_sides, Side};

/// What a finished vote decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The served hash stands. `voters` counts non-abstaining voters besides
    /// the server; `dissenters` voted for something else.
    Accepted {
        voters: usize,
        dissenters: Vec<PeerId>,
    },
    /// Another hash won 2/3: the server and `backers` voted for the loser.
    Rejected { winner: Hash, backers: Vec<PeerId> },
    /// No hash reached 2/3 of the votes.
    Inconclusive,
}

/// What the engine should do next with a vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Still waiting for answers.
    Wait,
    /// Round 1 was not unanimous: ask more peers (up to the escalation size).
    Escalate,
    /// Done.
    Decided(Decision),
}

/// One vote in progress.
#[derive(Clone, Debug)]
pub struct Vote {
    pub height: u64,
    pub served: Hash,
    /// `None` when the hash under vote is our own (a consistency check).
    pub server: Option<PeerId>,
    // Ordered: who is blamed or asked next comes out in a reproducible order.
    pending: BTreeSet<PeerId>,
    answers: BTreeMap<PeerId, Option<Hash>>,
    round: u8,
    pub deadline: Instant,
}

impl Vote {
    /// Starts round 1 with the given voters.
    pub fn new(
        height: u64,
        served: Hash,
        server: Option<PeerId>,
        voters: impl IntoIterator<Item = PeerId>,
        deadline: Instant,
    ) -> Vote {
        Vote {
            height,
            served,
            server,
            pending: voters.into_iter().collect(),
            answers: BTreeMap::new(),
            round: 1,
            deadline,
        }
    }

    /// Everyone asked so far (answered or not) and the server.
    pub fn asked(&self) -> impl Iterator<Item = &PeerId> {
        self.pending
            .iter()
            .chain(self.answers.keys())
            .chain(self.server.iter())
    }

    /// Peers that answered `hash`.
    pub fn supporters(&self, hash: &Hash) -> Vec<PeerId> {
        self.answers
            .iter()
            .filter(|(_, h)| h.as_ref() == Some(hash))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Every hash voted for (the server's included) with its voters,
    /// largest group first: the sides of a split (none is ours: the height
    /// is above our chain).
    pub fn sides(&self) -> Vec<Side> {
        let server = self.server.map(|s| (s, self.served));
        let answers = self.answers.iter().filter_map(|(p, h)| h.map(|h| (*p, h)));
        group_sides(server.into_iter().chain(answers), None)
    }

    pub fn is_pending(&self, peer: &PeerId) -> bool {
        self.pending.contains(peer)
    }

    pub fn round(&self) -> u8 {
        self.round
    }

    /// Records an answer; `None` abstains. Answers from peers not asked are ignored.
    pub fn record(&mut self, peer: PeerId, hash: Option<Hash>) {
        if self.pending.remove(&peer) {
            self.answers.insert(peer, hash);
        }
    }

    /// Silent voters abstain (on timeout or disconnect).
    pub fn abstain_pending(&mut self) -> Vec<PeerId> {
        let silent: Vec<PeerId> = std::mem::take(&mut self.pending).into_iter().collect();
        for p in &silent {
            self.answers.insert(*p, None);
        }
        silent
    }

    /// Starts round 2 with more voters.
    pub fn escalate(&mut self, voters: impl IntoIterator<Item = PeerId>, deadline: Instant) {
        self.round = 2;
        self.pending.extend(voters);
        self.deadline = deadline;
    }

    /// Non-abstaining answers so far.
    fn votes(&self) -> Vec<(PeerId, Hash)> {
        self.answers
            .iter()
            .filter_map(|(p, h)| h.map(|h| (*p, h)))
            .collect()
    }

    /// Whether the served hash wins whatever the rest say: it holds 2/3 of
    /// the votes even if every pending voter, and `room` more voters of a
    /// second round, voted against it. Only then may a vote end early: the
    /// full process could not decide otherwise.
    fn accepted_whatever_the_rest_say(&self, votes: &[(PeerId, Hash)], room: usize) -> bool {
        let server_votes = usize::from(self.server.is_some());
        let served = votes.iter().filter(|(_, h)| *h == self.served).count() + server_votes;
        let room = if self.round == 1 { room } else { 0 };
        let worst = votes.len() + server_votes + self.pending.len() + room;
        3 * served >= 2 * worst
    }

    /// What the answers so far mean. `room` is how many more voters a second
    /// round could ask (0: nobody else holds the height).
    pub fn step(&self, room: usize) -> Step {
        let votes = self.votes();
        if !self.pending.is_empty() {
            if !votes.is_empty() && self.accepted_whatever_the_rest_say(&votes, room) {
                return Step::Decided(Decision::Accepted {
                    voters: votes.len(),
                    dissenters: self.dissenters(&votes),
                });
            }
            return Step::Wait;
        }
        let can_escalate = room > 0;
        let unanimous = votes.iter().all(|(_, h)| *h == self.served);
        if unanimous {
            return Step::Decided(Decision::Accepted {
                voters: votes.len(),
                dissenters: Vec::new(),
            });
        }
        if self.round == 1 && can_escalate {
            return Step::Escalate;
        }
        let mut counts: HashMap<Hash, usize> = HashMap::new();
        for (_, h) in &votes {
            *counts.entry(*h).or_default() += 1;
        }
        // The server's own served hash is a vote too.
        let server_votes = usize::from(self.server.is_some());
        *counts.entry(self.served).or_default() += server_votes;
        let n = votes.len() + server_votes;
        let two_thirds = |c: usize| 3 * c >= 2 * n;
        if two_thirds(counts[&self.served]) {
            return Step::Decided(Decision::Accepted {
                voters: votes.len(),
                dissenters: self.dissenters(&votes),
            });
        }
        if let Some((winner, _)) = counts
            .iter()
            .find(|(h, c)| **h != self.served && two_thirds(**c))
        {
            return Step::Decided(Decision::Rejected {
                winner: *winner,
                backers: votes
                    .iter()
                    .filter(|(_, h)| *h == self.served)
                    .map(|(p, _)| *p)
                    .collect(),
            });
        }
        Step::Decided(Decision::Inconclusive)
    }

    fn dissenters(&self, votes: &[(PeerId, Hash)]) -> Vec<PeerId> {
        votes
            .iter()
            .filter(|(_, h)| *h != self.served)
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    const GOOD: Hash = Hash([1; 32]);
    const BAD: Hash = Hash([2; 32]);

    #[test]
    fn unanimous_first_round_accepts() {
        let now = Instant::now();
        let v = peers(3);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(GOOD));
        assert_eq!(vote.step(16), Step::Wait);
        vote.record(v[1], Some(GOOD));
        vote.record(v[2], None); // abstains: does not hold it yet
        assert_eq!(
            vote.step(16),
            Step::Decided(Decision::Accepted {
                voters: 2,
                dissenters: vec![]
            })
        );
    }

    #[test]
    fn dissent_escalates_then_the_liar_voter_is_named() {
        let now = Instant::now();
        let v = peers(3);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(GOOD));
        vote.record(v[1], Some(BAD));
        vote.record(v[2], Some(GOOD));
        assert_eq!(vote.step(16), Step::Escalate);
        let more = peers(4);
        vote.escalate(more.clone(), now);
        assert_eq!(vote.step(16), Step::Wait);
        for p in &more {
            vote.record(*p, Some(GOOD));
        }
        assert_eq!(
            vote.step(16),
            Step::Decided(Decision::Accepted {
                voters: 7,
                dissenters: vec![v[1]]
            })
        );
    }

    #[test]
    fn a_forged_batch_loses_and_its_backers_are_named() {
        let now = Instant::now();
        let v = peers(3);
        let mut vote = Vote::new(10, BAD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(GOOD));
        vote.record(v[1], Some(GOOD));
        vote.record(v[2], Some(GOOD));
        // No more peers to ask: decide on what we have. 3 of 4 votes say GOOD.
        assert_eq!(
            vote.step(0),
            Step::Decided(Decision::Rejected {
                winner: GOOD,
                backers: vec![]
            })
        );
    }

    #[test]
    fn a_split_without_two_thirds_blames_nobody() {
        let now = Instant::now();
        let v = peers(1);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(BAD));
        assert_eq!(vote.step(0), Step::Decided(Decision::Inconclusive));
    }

    #[test]
    fn silence_is_abstention_and_no_voters_accepts_on_validation_alone() {
        let now = Instant::now();
        let v = peers(2);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        assert_eq!(vote.abstain_pending().len(), 2);
        assert_eq!(
            vote.step(16),
            Step::Decided(Decision::Accepted {
                voters: 0,
                dissenters: vec![]
            })
        );
        let stranger = PeerId::random();
        vote.record(stranger, Some(BAD));
        assert!(matches!(
            vote.step(16),
            Step::Decided(Decision::Accepted { .. })
        ));
    }

    #[test]
    fn consistency_check_without_server_rejects_our_hash_on_a_majority() {
        let now = Instant::now();
        let v = peers(3);
        let mut vote = Vote::new(10, BAD, None, v.clone(), now);
        for p in &v {
            vote.record(*p, Some(GOOD));
        }
        assert!(matches!(
            vote.step(0),
            Step::Decided(Decision::Rejected { winner: GOOD, .. })
        ));
    }

    #[test]
    fn a_vote_ends_once_the_silent_voters_could_not_change_it() {
        let now = Instant::now();
        let v = peers(2);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(GOOD));
        // Server and one voter: 2 of at most 3 votes, whatever v[1] says...
        assert_eq!(
            vote.step(0),
            Step::Decided(Decision::Accepted {
                voters: 1,
                dissenters: vec![]
            })
        );
        // ...but not while a second round could still ask one more peer
        // (2 of 4 is not 2/3).
        assert_eq!(vote.step(1), Step::Wait);
    }

    #[test]
    fn a_vote_with_a_dissent_in_waits_for_the_rest() {
        let now = Instant::now();
        let v = peers(4);
        let mut vote = Vote::new(10, GOOD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(GOOD));
        vote.record(v[1], Some(BAD));
        vote.record(v[2], Some(GOOD));
        // 3 of at most 5: v[3] against would leave 3/5 < 2/3.
        assert_eq!(vote.step(0), Step::Wait);
        vote.record(v[3], Some(GOOD));
        assert_eq!(
            vote.step(0),
            Step::Decided(Decision::Accepted {
                voters: 4,
                dissenters: vec![v[1]]
            })
        );
    }

    #[test]
    fn a_forged_batch_is_never_accepted_early() {
        let now = Instant::now();
        let v = peers(3);
        // The server and one colluding voter against two silent honest ones.
        let mut vote = Vote::new(10, BAD, Some(PeerId::random()), v.clone(), now);
        vote.record(v[0], Some(BAD));
        assert_eq!(vote.step(0), Step::Wait);
        vote.record(v[1], Some(GOOD));
        vote.record(v[2], Some(GOOD));
        assert_eq!(vote.step(0), Step::Decided(Decision::Inconclusive));
    }
}
