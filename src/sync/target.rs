//! Sync target choice: which height the node may trust enough to sync to.
//!
//! Pure function of the heights reported by genesis-verified peers.

/// The two heights the engine steers by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Targets {
    /// The highest height that at least 2/3 of the peers report reaching. A
    /// minority lying about its height cannot raise it.
    pub safe: u64,
    /// The highest height any peer claims. Blocks above `safe` are still
    /// followed (a new block exists at first on one node only), but only
    /// from peers claiming them and only through blocks that validate.
    pub best: u64,
    /// How many peers the figures are drawn from.
    pub peers: usize,
}

/// Computes the targets from reported heights; `None` without any.
pub fn compute(heights: impl IntoIterator<Item = u64>) -> Option<Targets> {
    let mut hs: Vec<u64> = heights.into_iter().collect();
    if hs.is_empty() {
        return None;
    }
    hs.sort_unstable_by(|a, b| b.cmp(a));
    let n = hs.len();
    // The k-th highest height, k = ceil(2n/3): at least k peers are at or above it.
    let k = (2 * n).div_ceil(3);
    Some(Targets {
        safe: hs[k - 1],
        best: hs[0],
        peers: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lying_minority_cannot_inflate_the_safe_target() {
        // 7 honest at 1000, 3 liars at a billion (3/10 < 1/3).
        let hs = [1000u64; 7].into_iter().chain([1_000_000_000; 3]);
        let t = compute(hs).unwrap();
        assert_eq!(t.safe, 1000);
        assert_eq!(t.best, 1_000_000_000);
        assert_eq!(t.peers, 10);
    }

    #[test]
    fn two_thirds_must_reach_the_safe_target() {
        assert_eq!(compute([10, 20, 30]).unwrap().safe, 20);
        assert_eq!(compute([10, 20, 30, 40]).unwrap().safe, 20);
        assert_eq!(compute([5]).unwrap().safe, 5);
        assert_eq!(compute([5, 9]).unwrap().safe, 5);
        assert!(compute(std::iter::empty()).is_none());
    }

    #[test]
    fn a_third_or_more_of_liars_can_raise_it_only_to_an_honest_height_when_below_the_bound() {
        // 2 of 6 lie (exactly 1/3): k = 4, the 4th highest is honest.
        let t = compute([100, 100, 100, 100, 9999, 9999]).unwrap();
        assert_eq!(t.safe, 100);
    }
}
