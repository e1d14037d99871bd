//! Load-aware picking: what a layer measures of each instance (requests in
//! flight and a peak-EWMA of latency) and what a picker reads of it.
//!
//! STUB (interface fixed by the lead; the balance helper implements it).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use tokio::time::Instant;

/// How a latency-aware balancer wants the layer to measure load: a
/// peak-EWMA of each instance's latency (time to response headers), with
/// `decay` as the EWMA's time constant, and `default_rtt` as the estimate
/// of an instance not measured yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakEwma {
    decay: Duration,
    default_rtt: Duration,
}

impl PeakEwma {
    /// Decay 10 s (Finagle's), default RTT 30 ms.
    pub const fn new() -> Self {
        PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }

    /// The EWMA's time constant (clamped by the implementation).
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// The estimate of an instance not measured yet.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

/// The measured load of one instance; lives in the layer's per-instance
/// state, so it survives snapshot changes. Updates are atomics on the
/// instance's own state.
#[derive(Debug, Default)]
pub(crate) struct InstanceLoad {
    outstanding: AtomicU32,
    ewma_ns: AtomicU64,
    stamp_ns: AtomicU64,
}

impl InstanceLoad {
    /// An attempt was sent to the instance.
    pub(crate) fn start(&self) {}

    /// The attempt started `rtt` ago ended (response headers, an error, a
    /// timeout, or the request was dropped). A failed attempt may raise
    /// the estimate but never lower it (fast failures must not attract
    /// traffic).
    pub(crate) fn end(&self, _rtt: Duration, _failed: bool, _now: Instant, _ewma: &PeakEwma) {}

    /// The cost of sending one more request now: the decayed peak-EWMA
    /// latency times (outstanding + 1).
    pub(crate) fn cost(&self, _now: Instant, _ewma: &PeakEwma) -> f64 {
        0.0
    }
}

/// Where a [`Loads`] finds the load of a picker's instance `index`.
pub(crate) trait LoadSource: Sync {
    fn load(&self, index: usize) -> Option<&InstanceLoad>;
}

/// What a picker sees of the load of the instances it was built over,
/// by the index it returns. Made by the discovery layer for balancers that
/// ask for it ([`Balance::peak_ewma`](super::Balance::peak_ewma)).
pub struct Loads<'a> {
    source: &'a dyn LoadSource,
    now: Instant,
    ewma: PeakEwma,
}

impl<'a> Loads<'a> {
    pub(crate) fn new(source: &'a dyn LoadSource, now: Instant, ewma: PeakEwma) -> Self {
        Loads { source, now, ewma }
    }

    /// The cost of sending one more request to instance `index` (its
    /// decayed peak-EWMA latency in nanoseconds times its requests in
    /// flight plus one); infinite for an index out of range.
    pub fn cost(&self, index: usize) -> f64 {
        self.source
            .load(index)
            .map_or(f64::INFINITY, |load| load.cost(self.now, &self.ewma))
    }
}

impl fmt::Debug for Loads<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loads").field("ewma", &self.ewma).finish()
    }
}
