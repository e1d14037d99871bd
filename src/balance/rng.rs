//! Random numbers for picking: fastrand's per-thread generator, or a seeded
//! SplitMix64 sequence.
//!
//! Load balancing needs speed and a good spread, not unpredictability. The
//! default draws come from `fastrand` (wyrand in a thread-local cell, seeded
//! per thread). The seeded generator is SplitMix64 (Steele, Lea and Flood)
//! on one shared atomic: lock-free and deterministic for a single thread
//! (for tests); the ring of `ConsistentHash` uses the same output function
//! [`mix64`] for its points.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The SplitMix64 increment (2^64 / golden ratio, odd).
pub(crate) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a bijection of `u64`).
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The next draw of this thread's generator.
#[inline]
pub(crate) fn thread_u64() -> u64 {
    fastrand::u64(..)
}

/// The generator of a picker: this thread's, or a seeded one.
pub(crate) enum Rng {
    /// [`thread_u64`].
    Thread,
    /// A SplitMix64 sequence from a seed, shared by all threads of the picker.
    /// Kept by hand: a crate generator needs `&mut`, so a lock on every
    /// pick, where one atomic add does here.
    Seeded(AtomicU64),
}

impl Rng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        match seed {
            None => Rng::Thread,
            Some(seed) => Rng::Seeded(AtomicU64::new(seed)),
        }
    }

    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        match self {
            Rng::Thread => thread_u64(),
            Rng::Seeded(state) => mix64(
                state
                    .fetch_add(GAMMA, Ordering::Relaxed)
                    .wrapping_add(GAMMA),
            ),
        }
    }
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rng::Thread => f.write_str("thread-local fastrand"),
            Rng::Seeded(_) => f.write_str("seeded SplitMix64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic() {
        let (a, b) = (Rng::new(Some(7)), Rng::new(Some(7)));
        let a: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(a, b);
        // The reference SplitMix64 output for seed 0.
        let zero = Rng::new(Some(0));
        assert_eq!(zero.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn thread_draws_differ() {
        let draws: std::collections::HashSet<u64> = (0..1000).map(|_| thread_u64()).collect();
        assert_eq!(draws.len(), 1000);
    }
}
