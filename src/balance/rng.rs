//! Fast random numbers for picking: SplitMix64, per thread or seeded.
//!
//! Load balancing needs speed and a good spread, not unpredictability, so the
//! pickers use SplitMix64 (Steele, Lea and Flood; it passes BigCrush): one
//! add and a few multiply-xorshifts per draw. The default generator lives in
//! a thread-local cell, seeded from `rand`'s thread RNG on first use in each
//! thread; the seeded one is a shared atomic state, lock-free and
//! deterministic for a single thread (for tests).

use std::cell::Cell;
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

thread_local! {
    // `0` means "not seeded yet". A const initializer and no destructor make
    // the access a plain thread-local load.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// A thread's first seed (kept out of the draw's inlined code).
#[cold]
#[inline(never)]
fn seed() -> u64 {
    rand::random::<u64>() | 1
}

/// The next draw of this thread's generator.
#[inline]
pub(crate) fn thread_u64() -> u64 {
    STATE.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed();
        }
        s = s.wrapping_add(GAMMA);
        state.set(s);
        mix64(s)
    })
}

/// The generator of a picker: this thread's, or a seeded one.
pub(crate) enum Rng {
    /// [`thread_u64`].
    Thread,
    /// A SplitMix64 sequence from a seed, shared by all threads of the picker.
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
            Rng::Thread => f.write_str("thread-local SplitMix64"),
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
