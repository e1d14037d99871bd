//! Load-aware picking: what a layer measures of each instance (requests in
//! flight and a peak-EWMA of latency) and what a picker reads of it.
//!
//! The estimate follows Finagle's and Linkerd's peak EWMA (tower's
//! `PeakEwma` too): a latency above the estimate replaces it at once (the
//! peak), one below moves it there with weight `1 - exp(-elapsed / decay)`,
//! and reading it decays it toward 0 by the time since the last update, so
//! that an idle slow instance is tried again. Reading writes nothing here
//! (the decay is computed, not stored), which keeps the pick path free of
//! writes to shared cache lines; the value read is the one Finagle's would
//! be when nothing read it since the last update.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How a latency-aware balancer wants the layer to measure load: a
/// peak-EWMA of each instance's latency (time to response headers), with
/// `decay` as the EWMA's time constant, and `default_rtt` as the estimate
/// of an instance not measured yet.
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::balance::PeakEwma;
///
/// let ewma = PeakEwma::new()
///     .decay(Duration::from_secs(5))
///     .default_rtt(Duration::ZERO); // clamped to 1 µs
/// assert_eq!(ewma, PeakEwma::new().decay(Duration::from_secs(5)).default_rtt(Duration::from_micros(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakEwma {
    decay: Duration,
    default_rtt: Duration,
}

impl PeakEwma {
    /// The bounds of [`decay`](Self::decay).
    pub const DECAY_RANGE: (Duration, Duration) =
        (Duration::from_millis(1), Duration::from_secs(3600));
    /// The bounds of [`default_rtt`](Self::default_rtt).
    pub const DEFAULT_RTT_RANGE: (Duration, Duration) =
        (Duration::from_micros(1), Duration::from_secs(3600));

    /// Decay 10 s (Finagle's), default RTT 30 ms (a cross-zone round trip
    /// plus a fast handler: a guess that a first measurement replaces).
    pub const fn new() -> Self {
        PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }

    /// The EWMA's time constant: how long a peak takes to fade to about a
    /// third (1/e) when nothing is measured. Clamped to 1 ms..=1 h.
    pub fn decay(mut self, decay: Duration) -> Self {
        let (min, max) = Self::DECAY_RANGE;
        self.decay = decay.clamp(min, max);
        self
    }

    /// The estimate of an instance not measured yet. Clamped to 1 µs..=1 h.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        let (min, max) = Self::DEFAULT_RTT_RANGE;
        self.default_rtt = rtt.clamp(min, max);
        self
    }

    /// `exp(-elapsed / decay)`: the weight left to the old estimate.
    #[inline]
    fn weight_after(&self, elapsed_ns: u64) -> f64 {
        // Both below 2^53 ns (decay at most 1 h; elapsed rounds): exact
        // enough, and u64 converts in one instruction where u128 does not.
        (-(elapsed_ns as f64) / nanos(self.decay) as f64).exp()
    }

    fn default_rtt_ns(&self) -> f64 {
        nanos(self.default_rtt) as f64
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

/// The measured load of one instance: its requests in flight and a
/// peak-EWMA of its latency; lives in the layer's per-instance state, so it
/// survives snapshot changes. Only atomics, no lock.
///
/// The two atomics of the estimate are read and written separately: a
/// reader may see a new estimate with the old time stamp (decayed a little
/// too much for a moment), and of two attempts ending at once one
/// observation below the estimate may be lost (a peak never is: it is a
/// `fetch_max`). Both are benign for a heuristic that is measured again on
/// the next response.
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::balance::{InstanceLoad, PeakEwma};
/// use tokio::time::Instant;
///
/// let ewma = PeakEwma::new();
/// let now = Instant::now();
/// let load = InstanceLoad::new(now);
/// assert_eq!(load.cost(now, &ewma), 30e6); // default RTT 30 ms, 0 in flight
/// load.start();
/// load.start();
/// load.end(Duration::from_millis(80), false, now, &ewma);
/// assert_eq!(load.outstanding(), 1);
/// assert_eq!(load.cost(now, &ewma), 2.0 * 80e6); // the peak, times (1 + 1)
/// ```
pub struct InstanceLoad {
    outstanding: AtomicU32,
    /// The estimate in nanoseconds, at least 1 once measured; 0: never
    /// measured.
    ewma_ns: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `base`.
    stamp_ns: AtomicU64,
    base: Instant,
}

impl InstanceLoad {
    /// No request in flight, never measured; times are stamped relative to
    /// `base` (an earlier `now` counts as `base`).
    pub fn new(base: Instant) -> Self {
        InstanceLoad {
            outstanding: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            stamp_ns: AtomicU64::new(0),
            base,
        }
    }

    /// An attempt was sent to the instance (saturates at `u32::MAX`).
    pub fn start(&self) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// The attempt started `rtt` ago ended (response headers, an error, a
    /// timeout, or the request was dropped): one request less in flight
    /// (never below 0), and `rtt` observed. A failed attempt may raise
    /// the estimate but never lower it (fast failures must not attract
    /// traffic).
    pub fn end(&self, rtt: Duration, failed: bool, now: Instant, ewma: &PeakEwma) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let rtt_ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
        let now_ns = self.nanos_since_base(now);
        let estimate = self.ewma_ns.load(Ordering::Relaxed);
        if rtt_ns > estimate {
            // The peak (or the first measurement, which replaces the
            // default: a guess carries no weight).
            self.ewma_ns.fetch_max(rtt_ns, Ordering::Relaxed);
        } else {
            let elapsed = now_ns.saturating_sub(self.stamp_ns.load(Ordering::Relaxed));
            let w = ewma.weight_after(elapsed);
            if failed {
                // Above what a pick reads now (the estimate decayed toward
                // 0): raise it to the failure's time, else leave it be.
                if rtt_ns as f64 <= estimate as f64 * w {
                    return;
                }
                self.ewma_ns.store(rtt_ns, Ordering::Relaxed);
            } else {
                let blended = estimate as f64 * w + rtt_ns as f64 * (1.0 - w);
                // Between rtt_ns and estimate, so at least 1; `as` saturates.
                self.ewma_ns
                    .store((blended as u64).max(1), Ordering::Relaxed);
            }
        }
        self.stamp_ns.store(now_ns, Ordering::Relaxed);
    }

    /// The cost of sending one more request now: the decayed peak-EWMA
    /// latency in nanoseconds times (outstanding + 1).
    pub fn cost(&self, now: Instant, ewma: &PeakEwma) -> f64 {
        self.latency_ns(now, ewma) * (f64::from(self.outstanding()) + 1.0)
    }

    /// The requests in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The estimate in nanoseconds, decayed toward 0 by the time since its
    /// last update; `default_rtt` if never measured.
    #[inline]
    pub fn latency_ns(&self, now: Instant, ewma: &PeakEwma) -> f64 {
        let estimate = self.ewma_ns.load(Ordering::Relaxed);
        if estimate == 0 {
            return ewma.default_rtt_ns();
        }
        let elapsed = self
            .nanos_since_base(now)
            .saturating_sub(self.stamp_ns.load(Ordering::Relaxed));
        estimate as f64 * ewma.weight_after(elapsed)
    }

    #[inline]
    fn nanos_since_base(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.base))
    }
}

/// `duration` in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

impl Default for InstanceLoad {
    /// [`InstanceLoad::new`] with `base` now.
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl fmt::Debug for InstanceLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceLoad")
            .field("outstanding", &self.outstanding())
            .field("ewma_ns", &self.ewma_ns.load(Ordering::Relaxed))
            .field("stamp_ns", &self.stamp_ns.load(Ordering::Relaxed))
            .finish()
    }
}

/// Where a [`Loads`] finds the load of a picker's instance `index`.
pub(crate) trait LoadSource: Sync {
    fn load(&self, index: usize) -> Option<&InstanceLoad>;
}

/// What a picker sees of the load of the instances it was built over,
/// by the index it returns. Made by the discovery layer for balancers that
/// ask for it ([`Balance::peak_ewma`](super::Balance::peak_ewma)), or from
/// a slice (tests, simulations, benchmarks).
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::balance::{InstanceLoad, Loads, PeakEwma};
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// let loads = [InstanceLoad::new(now), InstanceLoad::new(now)];
/// loads[1].start();
/// let view = Loads::from_slice(&loads, now, PeakEwma::new());
/// assert!(view.cost(0) < view.cost(1));
/// assert_eq!(view.cost(2), f64::INFINITY);
/// ```
pub struct Loads<'a> {
    source: Source<'a>,
    now: Instant,
    ewma: PeakEwma,
}

enum Source<'a> {
    Layer(&'a dyn LoadSource),
    Slice(&'a [InstanceLoad]),
}

impl<'a> Loads<'a> {
    pub(crate) fn new(source: &'a dyn LoadSource, now: Instant, ewma: PeakEwma) -> Self {
        Loads {
            source: Source::Layer(source),
            now,
            ewma,
        }
    }

    /// The loads of instances `0..loads.len()`, read at `now`.
    pub fn from_slice(loads: &'a [InstanceLoad], now: Instant, ewma: PeakEwma) -> Self {
        Loads {
            source: Source::Slice(loads),
            now,
            ewma,
        }
    }

    #[inline]
    fn load(&self, index: usize) -> Option<&InstanceLoad> {
        match self.source {
            Source::Layer(source) => source.load(index),
            Source::Slice(loads) => loads.get(index),
        }
    }

    /// The cost of sending one more request to instance `index` (its
    /// decayed peak-EWMA latency in nanoseconds times its requests in
    /// flight plus one); infinite for an index out of range.
    pub fn cost(&self, index: usize) -> f64 {
        self.load(index)
            .map_or(f64::INFINITY, |load| load.cost(self.now, &self.ewma))
    }

    /// The decayed peak-EWMA latency of instance `index` in nanoseconds
    /// and its requests in flight; `None` for an index out of range.
    #[inline]
    pub fn latency_and_outstanding(&self, index: usize) -> Option<(f64, u32)> {
        self.load(index)
            .map(|load| (load.latency_ns(self.now, &self.ewma), load.outstanding()))
    }
}

impl fmt::Debug for Loads<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loads").field("ewma", &self.ewma).finish()
    }
}

#[cfg(test)]
mod tests;
