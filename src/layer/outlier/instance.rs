//! The state the layer keeps for one instance: its ejection, its
//! consecutive gateway failures and its measured load, all atomics.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::balance::InstanceLoad;
use crate::metrics::InstanceMetrics;

/// The latest ejection time representable (ms since the router's epoch):
/// 48 bits, about 8 900 years.
pub(super) const MAX_MS: u64 = (1 << 48) - 1;

/// Strikes beyond this are not counted (the period stopped doubling long
/// before).
const MAX_STRIKES: u32 = (1 << 14) - 1;
/// The bit of a state its service forgot (the instance is no longer listed).
const RETIRED: u64 = 1 << 15;

/// An instance's ejection in one word, so that it changes in one
/// compare-exchange: when it ends, how many ejections in a row it is, and
/// whether it is counted in its service's ejected count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ejection {
    /// Ejected while the clock (ms since the epoch) is before this.
    pub until_ms: u64,
    /// Ejections in a row (0: never ejected, or forgotten).
    pub strikes: u32,
    /// Counted in [`ServiceOutliers`](super::ServiceOutliers)'s ejected
    /// count: set with the ejection, cleared (and the count lowered) by
    /// the first look after it ended.
    pub counted: bool,
    /// The service forgot this state (its instance is no longer listed):
    /// attempts still in flight to it must not eject it, as nothing would
    /// lower the service's count again.
    pub retired: bool,
}

impl Ejection {
    pub(super) const NONE: Ejection = Ejection {
        until_ms: 0,
        strikes: 0,
        counted: false,
        retired: false,
    };

    /// A state its service forgot.
    pub(super) const RETIRED: Ejection = Ejection {
        retired: true,
        ..Ejection::NONE
    };

    fn pack(self) -> u64 {
        (self.until_ms.min(MAX_MS) << 16)
            | (u64::from(self.strikes.min(MAX_STRIKES)) << 1)
            | if self.retired { RETIRED } else { 0 }
            | u64::from(self.counted)
    }

    fn unpack(word: u64) -> Self {
        Ejection {
            until_ms: word >> 16,
            strikes: ((word >> 1) & u64::from(MAX_STRIKES)) as u32,
            counted: word & 1 == 1,
            retired: word & RETIRED != 0,
        }
    }

    /// The next strike: strikes are forgotten once the instance behaved
    /// for `forget_ms` after its last ejection.
    pub(super) fn next_strike(self, now_ms: u64, forget_ms: u64) -> u32 {
        if self.strikes == 0 || self.until_ms.saturating_add(forget_ms) <= now_ms {
            1
        } else {
            self.strikes.saturating_add(1).min(MAX_STRIKES)
        }
    }
}

/// What the layer knows of one instance of a service, shared by the picker
/// entries that list it (and by the attempts in flight to it), and kept
/// across snapshot changes while the instance is listed.
pub(crate) struct InstanceState {
    /// An [`Ejection`], packed.
    ejection: AtomicU64,
    /// Gateway failures in a row.
    failures: AtomicU32,
    /// Requests in flight and latency, for load-aware balancers.
    pub(crate) load: InstanceLoad,
    /// Its metric handles, prepared once here rather than per request.
    pub(crate) metrics: InstanceMetrics,
}

impl InstanceState {
    /// The state of the instance at `addr` of `service`, as first seen.
    pub(super) fn new(service: &str, addr: &str) -> Self {
        InstanceState {
            ejection: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            load: InstanceLoad::default(),
            metrics: InstanceMetrics::new(service, addr),
        }
    }

    pub(super) fn ejection(&self) -> (u64, Ejection) {
        let word = self.ejection.load(Ordering::Acquire);
        (word, Ejection::unpack(word))
    }

    /// Replaces the ejection read as `word`, unless it changed since.
    pub(super) fn replace_ejection(&self, word: u64, new: Ejection) -> bool {
        self.ejection
            .compare_exchange(word, new.pack(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// One more gateway failure in a row: how many now.
    pub(super) fn failed(&self) -> u32 {
        let counted = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            });
        counted.unwrap_or_else(|n| n).saturating_add(1)
    }

    /// A success, or an ejection: the count starts over. Reads before it
    /// writes, so a success costs no write while nothing failed.
    pub(super) fn reset_failures(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    pub(super) fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceState")
            .field("ejection", &self.ejection().1)
            .field("failures", &self.failures.load(Ordering::Relaxed))
            .field("load", &self.load)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        for ejection in [
            Ejection::NONE,
            Ejection::RETIRED,
            Ejection {
                until_ms: MAX_MS,
                strikes: MAX_STRIKES,
                counted: true,
                retired: false,
            },
            Ejection {
                until_ms: 12_345,
                strikes: 3,
                counted: false,
                retired: true,
            },
        ] {
            assert_eq!(Ejection::unpack(ejection.pack()), ejection);
        }
        // Out of range: saturated, never spilling into another field.
        let huge = Ejection {
            until_ms: u64::MAX,
            strikes: u32::MAX,
            counted: false,
            retired: false,
        };
        let unpacked = Ejection::unpack(huge.pack());
        assert_eq!((unpacked.until_ms, unpacked.strikes), (MAX_MS, MAX_STRIKES));
        assert!(!unpacked.counted && !unpacked.retired);
    }

    #[test]
    fn failures_saturate() {
        let state = InstanceState::new("orders", "10.0.0.1:80");
        state.failures.store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(state.failed(), u32::MAX);
        assert_eq!(state.failed(), u32::MAX);
        state.reset_failures();
        assert_eq!(state.failed(), 1);
    }
}
