//! The in-memory hash → height index, rebuilt from the segment records at
//! open and kept up to date by imports and rollbacks.
//!
//! Owns only the map; it must not read or write sled (the store does that
//! and hands hashes in).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::chain::Hash;

/// The map key of a hash: its first 8 bytes. Block hashes are cryptographic
/// and blocks are validated before import, so the prefix is already uniform.
fn prefix(hash: &Hash) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash.0[..8]);
    u64::from_le_bytes(p)
}

/// Hasher for keys that are already uniformly distributed (hash prefixes).
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// In-memory hash → height index over the whole chain (about 17-34 bytes per
/// block). `by_prefix` answers almost everything; a block whose 8-byte prefix
/// is already taken by another stored block goes to `collisions` instead.
#[derive(Default)]
pub(super) struct HashIndex {
    by_prefix: HashMap<u64, u64, BuildHasherDefault<PrefixHasher>>,
    collisions: HashMap<Hash, u64>,
}

impl HashIndex {
    /// Candidate height for `hash`; callers verify it against the hash in the segment record.
    pub(super) fn get(&self, hash: &Hash) -> Option<u64> {
        self.collisions
            .get(hash)
            .or_else(|| self.by_prefix.get(&prefix(hash)))
            .copied()
    }

    /// Adds blocks `first..` whose hashes are `hashes`.
    pub(super) fn insert(&mut self, first: u64, hashes: &[Hash]) {
        self.by_prefix.reserve(hashes.len());
        for (i, hash) in hashes.iter().enumerate() {
            let height = first + i as u64;
            match self.by_prefix.entry(prefix(hash)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(height);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    // Entries are removed on rollback, so an occupied prefix
                    // belongs to another block still below this one.
                    self.collisions.insert(*hash, height);
                }
            }
        }
    }

    /// Removes blocks `first..` whose hashes are `hashes`.
    pub(super) fn remove(&mut self, first: u64, hashes: &[Hash]) {
        for (i, hash) in hashes.iter().enumerate() {
            let height = first + i as u64;
            if self.collisions.get(hash) == Some(&height) {
                self.collisions.remove(hash);
            } else if self.by_prefix.get(&prefix(hash)) == Some(&height) {
                self.by_prefix.remove(&prefix(hash));
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_prefix.len() + self.collisions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_collisions_use_the_side_map() {
        let mut index = HashIndex::default();
        let a = Hash([1u8; 32]);
        let mut b = a;
        b.0[31] = 2;
        index.insert(3, &[a]);
        index.insert(9, &[b]);
        assert_eq!(index.get(&a), Some(3));
        assert_eq!(index.get(&b), Some(9));
        index.remove(9, &[b]);
        assert_eq!((index.get(&a), index.len()), (Some(3), 1));
        index.insert(9, &[b]);
        index.remove(3, &[a]);
        assert_eq!(index.get(&b), Some(9));
        assert_eq!(index.get(&a), None);
    }
}
