//! Common-ancestor search: when the majority holds another block at a height
//! we hold, find the highest height where we still agree, by binary search
//! with block-hash queries to the peers of the majority.
//!
//! Pure: the engine sends the probes and feeds back the answers and our own
//! hash at each probed height.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::chain::Hash;

/// The result of feeding a probe's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchStep {
    /// Probe this height next (ask the reference peers for their hash there).
    Probe(u64),
    /// The highest common height: roll back to it.
    Found(u64),
    /// The chains disagree at `floor`, the lowest common height allowed:
    /// halt instead of rewriting history.
    TooDeep { floor: u64 },
    /// The reference peers stopped answering: give up for now.
    NoAnswers,
}

/// Binary search state. Invariant: we agree with the majority at `lo`
/// (genesis at worst) and disagree at `hi`.
#[derive(Clone, Debug)]
pub struct AncestorSearch {
    lo: u64,
    hi: u64,
    /// The lowest height the search may go to; `None` once it is known to
    /// be within bounds.
    floor_check: Option<u64>,
    reference: Vec<PeerId>,
    probe: Option<u64>,
    answers: HashMap<PeerId, Option<Hash>>,
}

impl AncestorSearch {
    /// Starts a search: we disagree at `diverged`; the common ancestor may be
    /// no lower than `floor` (the rollback bound) or the search ends in
    /// [`SearchStep::TooDeep`]; every honest chain holds our block at
    /// `known_common` (the genesis, or a checkpoint), so the search never
    /// probes below it.
    pub fn new(
        diverged: u64,
        floor: u64,
        known_common: u64,
        reference: Vec<PeerId>,
    ) -> (AncestorSearch, SearchStep) {
        let lo = known_common.min(diverged.saturating_sub(1));
        let mut s = AncestorSearch {
            lo,
            hi: diverged,
            floor_check: (floor > lo).then_some(floor),
            reference,
            probe: None,
            answers: HashMap::new(),
        };
        if floor >= diverged {
            // We already disagree at or above the floor.
            return (s, SearchStep::TooDeep { floor });
        }
        let step = match s.floor_check {
            // First make sure the fork is not deeper than allowed.
            Some(f) => SearchStep::Probe(f),
            None => s.next(),
        };
        if let SearchStep::Probe(h) = step {
            s.probe = Some(h);
        }
        (s, step)
    }

    pub fn reference(&self) -> &[PeerId] {
        &self.reference
    }

    pub fn probing(&self) -> Option<u64> {
        self.probe
    }

    /// Whether we are still waiting on `peer` for the current probe.
    pub fn awaits(&self, peer: &PeerId) -> bool {
        self.probe.is_some() && self.reference.contains(peer) && !self.answers.contains_key(peer)
    }

    /// Records a reference peer's answer for the current probe.
    pub fn record(&mut self, peer: PeerId, hash: Option<Hash>) {
        if self.awaits(&peer) {
            self.answers.insert(peer, hash);
        }
    }

    /// True once every reference peer has answered (or been marked silent).
    pub fn probe_complete(&self) -> bool {
        self.reference.iter().all(|p| self.answers.contains_key(p))
    }

    /// Resolves the current probe against our own hash at that height.
    pub fn resolve(&mut self, ours: Option<Hash>) -> SearchStep {
        let Some(h) = self.probe.take() else {
            return self.next();
        };
        let mut counts: HashMap<Hash, usize> = HashMap::new();
        let mut answered = 0;
        for a in self.answers.values().flatten() {
            *counts.entry(*a).or_default() += 1;
            answered += 1;
        }
        self.answers.clear();
        let majority = counts
            .into_iter()
            .find(|(_, c)| 2 * c > answered)
            .map(|(h, _)| h);
        let Some(theirs) = majority else {
            return SearchStep::NoAnswers;
        };
        let agree = ours == Some(theirs);
        if self.floor_check.take().is_some() {
            if !agree {
                return SearchStep::TooDeep { floor: h };
            }
            self.lo = h;
        } else if agree {
            self.lo = h;
        } else {
            self.hi = h;
        }
        let step = self.next();
        if let SearchStep::Probe(p) = step {
            self.probe = Some(p);
        }
        step
    }

    fn next(&self) -> SearchStep {
        if self.hi <= self.lo + 1 {
            SearchStep::Found(self.lo)
        } else {
            SearchStep::Probe(self.lo + (self.hi - self.lo) / 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a search where our chain and theirs agree up to `fork`
    /// (exclusive above), our tip at `diverged`.
    fn run(diverged: u64, fork: u64, max_depth: u64) -> (SearchStep, usize) {
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let theirs = |h: u64| Hash::digest(&h.to_be_bytes());
        let ours = |h: u64| {
            if h <= fork {
                theirs(h)
            } else {
                Hash::digest(&(h + 1_000_000).to_be_bytes())
            }
        };
        let floor = diverged.saturating_sub(max_depth);
        let (mut s, mut step) = AncestorSearch::new(diverged, floor, 0, peers.clone());
        let mut probes = 0;
        while let SearchStep::Probe(h) = step {
            probes += 1;
            for p in &peers {
                assert!(s.awaits(p));
                s.record(*p, Some(theirs(h)));
            }
            assert!(s.probe_complete());
            step = s.resolve(Some(ours(h)));
        }
        (step, probes)
    }

    #[test]
    fn finds_the_fork_point_in_logarithmic_probes() {
        let (step, probes) = run(10_000, 9_990, 1000);
        assert_eq!(step, SearchStep::Found(9_990));
        assert!(probes <= 12, "{probes} probes");
        assert_eq!(run(5, 0, 1000).0, SearchStep::Found(0));
        assert_eq!(run(5, 4, 1000).0, SearchStep::Found(4));
    }

    #[test]
    fn a_fork_deeper_than_the_bound_halts() {
        let (step, _) = run(10_000, 100, 1000);
        assert_eq!(step, SearchStep::TooDeep { floor: 9_000 });
        // Exactly at the bound is allowed; one block more is not.
        assert_eq!(run(10_000, 9_000, 1000).0, SearchStep::Found(9_000));
        assert!(matches!(
            run(10_000, 8_999, 1000).0,
            SearchStep::TooDeep { .. }
        ));
        assert!(matches!(
            AncestorSearch::new(10, 10, 0, vec![PeerId::random()]).1,
            SearchStep::TooDeep { floor: 10 }
        ));
    }

    #[test]
    fn a_checkpoint_bounds_the_search_from_below() {
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        // Common up to 9,990 and a checkpoint at 9,900: probes stay above it.
        let (mut s, mut step) = AncestorSearch::new(10_000, 9_000, 9_900, peers.clone());
        let mut probes = 0;
        while let SearchStep::Probe(h) = step {
            assert!(h > 9_900, "probed {h} below the checkpoint");
            probes += 1;
            for p in &peers {
                s.record(*p, Some(Hash::digest(&h.to_be_bytes())));
            }
            let ours = if h <= 9_990 {
                Hash::digest(&h.to_be_bytes())
            } else {
                Hash::ZERO
            };
            step = s.resolve(Some(ours));
        }
        assert_eq!(step, SearchStep::Found(9_990));
        assert!(probes <= 7, "{probes}");
    }

    #[test]
    fn silence_gives_up() {
        let peers: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
        let (mut s, step) = AncestorSearch::new(50, 0, 0, peers.clone());
        assert!(matches!(step, SearchStep::Probe(_)));
        for p in &peers {
            s.record(*p, None);
        }
        assert_eq!(s.resolve(Some(Hash::ZERO)), SearchStep::NoAnswers);
    }
}
