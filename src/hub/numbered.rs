//! A fast hash for the dispatcher's maps keyed by numbers the proxy hands out itself (client and backend
//! ids, backend-side request ids, progress tokens).
//!
//! No client chooses these keys, so the protection of the standard SipHash against keys picked to
//! collide buys nothing there; it cost about a tenth of the dispatcher's time per call, which makes a
//! dozen map operations. Maps keyed by what clients send (their request ids, session ids) keep SipHash.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for keys the proxy numbered itself.
pub type NumberedMap<K, V> = HashMap<K, V, BuildHasherDefault<NumberHasher>>;

/// Multiply-rotate hashing of whole words (the scheme of rustc's FxHasher): one multiplication per
/// word, spreading sequential numbers over both the low bits (the bucket) and the high bits (the tag).
#[derive(Default, Clone, Copy)]
pub struct NumberHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for NumberHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(key: impl std::hash::Hash) -> u64 {
        BuildHasherDefault::<NumberHasher>::default().hash_one(key)
    }

    #[test]
    fn sequential_numbers_land_in_distinct_buckets_of_a_small_table() {
        let buckets: std::collections::HashSet<u64> = (1..=64u64).map(|n| hash(n) & 63).collect();
        assert!(buckets.len() > 32, "{} of 64 buckets used", buckets.len());
    }

    #[test]
    fn a_pair_hashes_differently_from_its_reverse() {
        assert_ne!(hash((1usize, 2u64)), hash((2usize, 1u64)));
    }

    #[test]
    fn maps_keyed_by_numbers_find_what_was_put_in() {
        let mut map = NumberedMap::default();
        for n in 0..1000u64 {
            map.insert((n % 3, n), n);
        }
        assert!((0..1000u64).all(|n| map.get(&(n % 3, n)) == Some(&n)));
    }
}
