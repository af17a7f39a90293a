//! Fork choice: whether the node may leave a block it holds because peers
//! hold another one at that height.
//!
//! Pure: the engine picks the electorate (every usable peer that claims the
//! height, none left out), sends the block-hash queries and feeds the answers
//! in; a [`ChainPoll`] tallies them and says what they allow. It never sends,
//! stores or rolls back anything.
//!
//! The rule, in one sentence: **a node stays on the chain it holds unless at
//! least `quorum` peers answered and one other block holds at least 2/3 of
//! all the answers, those that agree with us included.** Fewer voters than
//! that ([`Verdict::TooFew`]) keeps our chain; no side reaching 2/3 with
//! enough voters is a [`Verdict::Split`], a state the engine reports and
//! waits out. Disagreeing is not lying: the verdicts name who disagrees so the
//! engine can stop syncing from them above that height, never to punish them.
//! Whether the peer set has settled (the node just started, a peer is still
//! reporting in) is the engine's check, made before it acts on `Leave`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use libp2p::PeerId;

use crate::chain::Hash;

/// One side of a split: a block hash and the peers that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub hash: Hash,
    pub holders: Vec<PeerId>,
    /// Whether this is the block we hold.
    pub ours: bool,
}

/// Groups `(peer, hash)` answers into sides, largest first (on a tie, the
/// side holding `ours` first, then by hash). Shared by chain polls and by
/// batch votes, whose inconclusive outcome is a split too.
pub fn group_sides(
    answers: impl IntoIterator<Item = (PeerId, Hash)>,
    ours: Option<Hash>,
) -> Vec<Side> {
    let mut by_hash: BTreeMap<Hash, Vec<PeerId>> = BTreeMap::new();
    for (p, h) in answers {
        by_hash.entry(h).or_default().push(p);
    }
    let mut sides: Vec<Side> = by_hash
        .into_iter()
        .map(|(hash, holders)| Side {
            ours: Some(hash) == ours,
            hash,
            holders,
        })
        .collect();
    sides.sort_by(|a, b| {
        b.holders
            .len()
            .cmp(&a.holders.len())
            .then(b.ours.cmp(&a.ours))
    });
    sides
}

/// What a finished poll allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still waiting for answers.
    Wait,
    /// Our block stands (nobody disagrees, or 2/3 of the answers agree with us).
    Keep {
        agree: usize,
        dissenters: Vec<PeerId>,
    },
    /// A 2/3 majority of at least `quorum` voters holds `winner`: leaving our
    /// chain is allowed.
    Leave {
        winner: Hash,
        supporters: Vec<PeerId>,
        voters: usize,
    },
    /// Peers disagree with us, but fewer than `quorum` answered: our chain stands.
    TooFew {
        dissenters: Vec<PeerId>,
        voters: usize,
    },
    /// Enough voters, no 2/3 for any block: the sides, largest first.
    Split { sides: Vec<Side> },
}

/// One poll of the peers about our block at `height`.
#[derive(Clone, Debug)]
pub struct ChainPoll {
    pub height: u64,
    /// Our block at `height`.
    pub ours: Hash,
    // Ordered, so verdicts (and who is named in them) replay exactly.
    pending: BTreeSet<PeerId>,
    answers: BTreeMap<PeerId, Option<Hash>>,
    pub deadline: Instant,
}

impl ChainPoll {
    pub fn new(
        height: u64,
        ours: Hash,
        voters: impl IntoIterator<Item = PeerId>,
        deadline: Instant,
    ) -> ChainPoll {
        ChainPoll {
            height,
            ours,
            pending: voters.into_iter().collect(),
            answers: BTreeMap::new(),
            deadline,
        }
    }

    /// Records `peer`'s hash at the height (`None`: it does not hold it, or
    /// gave no usable answer). Answers from peers not asked are ignored.
    pub fn record(&mut self, peer: PeerId, hash: Option<Hash>) {
        if self.pending.remove(&peer) {
            self.answers.insert(peer, hash);
        }
    }

    /// Voters still silent at the deadline abstain.
    pub fn abstain_pending(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.answers.insert(p, None);
        }
    }

    /// The answers grouped by hash, largest group first (ours first on a tie).
    pub fn sides(&self) -> Vec<Side> {
        let answers = self.answers.iter().filter_map(|(p, h)| h.map(|h| (*p, h)));
        group_sides(answers, Some(self.ours))
    }

    /// What the answers allow, with `quorum` the fewest voters that may move us.
    pub fn verdict(&self, quorum: usize) -> Verdict {
        if !self.pending.is_empty() {
            return Verdict::Wait;
        }
        let sides = self.sides();
        let voters: usize = sides.iter().map(|s| s.holders.len()).sum();
        let agree = sides.iter().find(|s| s.ours).map_or(0, |s| s.holders.len());
        let dissenters: Vec<PeerId> = sides
            .iter()
            .filter(|s| !s.ours)
            .flat_map(|s| s.holders.iter().copied())
            .collect();
        if dissenters.is_empty() {
            return Verdict::Keep {
                agree,
                dissenters: Vec::new(),
            };
        }
        let two_thirds = |n: usize| 3 * n >= 2 * voters;
        if voters >= quorum {
            if let Some(w) = sides
                .iter()
                .find(|s| !s.ours && two_thirds(s.holders.len()))
            {
                return Verdict::Leave {
                    winner: w.hash,
                    supporters: w.holders.clone(),
                    voters,
                };
            }
        }
        if agree > 0 && two_thirds(agree) {
            return Verdict::Keep { agree, dissenters };
        }
        if voters < quorum {
            return Verdict::TooFew { dissenters, voters };
        }
        Verdict::Split { sides }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Hash = Hash([1; 32]);
    const THEIRS: Hash = Hash([2; 32]);
    const THIRD: Hash = Hash([3; 32]);

    fn poll(answers: &[Option<Hash>]) -> (ChainPoll, Vec<PeerId>) {
        let peers: Vec<PeerId> = (0..answers.len()).map(|_| PeerId::random()).collect();
        let mut p = ChainPoll::new(100, OURS, peers.clone(), Instant::now());
        for (peer, a) in peers.iter().zip(answers) {
            p.record(*peer, *a);
        }
        (p, peers)
    }

    #[test]
    fn waits_for_every_voter_or_the_deadline() {
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let mut p = ChainPoll::new(100, OURS, peers.clone(), Instant::now());
        p.record(peers[0], Some(THEIRS));
        assert_eq!(p.verdict(3), Verdict::Wait);
        p.abstain_pending();
        assert!(matches!(p.verdict(3), Verdict::TooFew { voters: 1, .. }));
    }

    #[test]
    fn one_or_two_peers_never_move_us_however_sure_they_are() {
        let (p, _) = poll(&[Some(THEIRS)]);
        assert!(matches!(p.verdict(3), Verdict::TooFew { voters: 1, .. }));
        let (p, peers) = poll(&[Some(THEIRS), Some(THEIRS)]);
        assert_eq!(
            p.verdict(3),
            Verdict::TooFew {
                dissenters: {
                    let mut d = peers.clone();
                    d.sort();
                    d
                },
                voters: 2
            }
        );
    }

    #[test]
    fn two_thirds_of_a_quorum_counting_those_who_agree_with_us_moves_us() {
        // 2 of 3 hold theirs: exactly 2/3.
        let (p, peers) = poll(&[Some(OURS), Some(THEIRS), Some(THEIRS)]);
        match p.verdict(3) {
            Verdict::Leave {
                winner,
                supporters,
                voters,
            } => {
                assert_eq!(winner, THEIRS);
                assert_eq!(voters, 3);
                assert!(supporters.contains(&peers[1]) && supporters.contains(&peers[2]));
                assert!(!supporters.contains(&peers[0]));
            }
            v => panic!("{v:?}"),
        }
        // 3 of 5 is not 2/3: a split, not a reorg.
        let (p, _) = poll(&[
            Some(OURS),
            Some(OURS),
            Some(THEIRS),
            Some(THEIRS),
            Some(THEIRS),
        ]);
        assert!(matches!(p.verdict(3), Verdict::Split { .. }));
    }

    #[test]
    fn a_two_thirds_majority_with_us_keeps_our_block_and_names_the_dissenters() {
        let (p, peers) = poll(&[Some(OURS), Some(OURS), Some(THEIRS), None]);
        assert_eq!(
            p.verdict(3),
            Verdict::Keep {
                agree: 2,
                dissenters: vec![peers[2]]
            }
        );
    }

    #[test]
    fn abstentions_do_not_count_and_no_dissent_keeps() {
        let (p, _) = poll(&[None, None, Some(OURS)]);
        assert_eq!(
            p.verdict(3),
            Verdict::Keep {
                agree: 1,
                dissenters: vec![]
            }
        );
        let (p, _) = poll(&[None, None]);
        assert_eq!(
            p.verdict(3),
            Verdict::Keep {
                agree: 0,
                dissenters: vec![]
            }
        );
    }

    #[test]
    fn an_even_split_names_every_side() {
        let (p, _) = poll(&[
            Some(OURS),
            Some(OURS),
            Some(THEIRS),
            Some(THEIRS),
            Some(THIRD),
            Some(THIRD),
        ]);
        match p.verdict(3) {
            Verdict::Split { sides } => {
                assert_eq!(sides.len(), 3);
                assert!(sides[0].ours, "ours first on a tie");
                assert!(sides.iter().all(|s| s.holders.len() == 2));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn answers_from_peers_not_asked_are_ignored() {
        let (mut p, _) = poll(&[Some(OURS)]);
        p.record(PeerId::random(), Some(THEIRS));
        assert!(matches!(p.verdict(1), Verdict::Keep { agree: 1, .. }));
    }
}
