//! Passive health: instances that refused a connection are skipped for a
//! while.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::outlier::OutlierDetection;
use crate::time::later;

/// How long an instance is ejected (skipped) after it refused a
/// connection: `base` the first time, doubling on each repeat up to `max`.
///

/// accepts any value and clamps it: each duration at most
/// [`Ejection::LONGEST`], and `max` at least `base`. A `base` of zero turns
/// ejection off.
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::layer::{DiscoveryLayer, Ejection};
/// use redis_discovery::resolver::StaticResolver;
///
/// let layer = DiscoveryLayer::builder(StaticResolver::new())
///     .ejection(Ejection { base: Duration::from_secs(5), max: Duration::MAX })
///     .build();
/// // Clamped: at most an hour.
/// assert!(format!("{layer:?}").contains("max: 3600s"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ejection {
    /// The first ejection of an instance (default 10 s).
    pub base: Duration,
    /// Repeated ejections double the period up to this (default 160 s).
    pub max: Duration,
}

impl Ejection {
    /// The longest ejection period: an hour, longer than any lease, so an
    /// instance that is gone is unlisted long before it would be back.
    pub const LONGEST: Duration = Duration::from_secs(3600);

    /// Within the documented bounds: each at most [`LONGEST`](Self::LONGEST),
    /// `max` at least `base`.
    pub(crate) fn clamped(self) -> Self {
        let base = self.base.min(Self::LONGEST);
        Ejection {
            base,
            max: self.max.clamp(base, Self::LONGEST),
        }
    }
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            base: Duration::from_secs(10),
            max: Duration::from_secs(160),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ejected {
    until: Instant,
    strikes: u32,
    /// Counted in `PassiveHealth::active` (set when ejected, cleared by the first
    /// lookup after `until`).
    active: bool,
}

/// Ejected instances per (service, address), with their strikes. Reads are
/// a single atomic load while no ejection is in force, so the hot path pays
/// nothing for it once ejected instances are back.
#[derive(Debug, Default)]
pub(crate) struct PassiveHealth {
    config: Ejection,
    /// Entries whose ejection may still be in force.
    active: AtomicUsize,
    /// service -> address -> ejection; nested so lookups take `&str`.
    ejected: Mutex<EjectionMap>,
}

type EjectionMap = HashMap<String, HashMap<String, Ejected>>;

fn count_active(map: &EjectionMap) -> usize {
    map.values()
        .flat_map(HashMap::values)
        .filter(|e| e.active)
        .count()
}

impl PassiveHealth {
    pub(super) fn new(outlier: OutlierDetection) -> Self {
        Self::with_ejection(Ejection {
            base: outlier.base_ejection,
            max: outlier.max_ejection,
        })
    }

    fn with_ejection(config: Ejection) -> Self {
        PassiveHealth {
            config,
            ..Default::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, EjectionMap> {
        self.ejected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an ejection may be in force.
    #[inline]
    pub(super) fn any(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    pub(super) fn is_ejected(&self, service: &str, addr: &str) -> bool {
        if !self.any() {
            return false;
        }
        let now = Instant::now();
        let mut map = self.lock();
        let Some(entry) = map.get_mut(service).and_then(|m| m.get_mut(addr)) else {
            return false;
        };
        if entry.until > now {
            return true;
        }
        if entry.active {
            // Back in rotation: stop paying for the lock once none is left.
            entry.active = false;
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        false
    }

    /// Ejects `addr` unless that would eject more than half of the `live`
    /// instances of `service`. Returns whether it was ejected.
    pub(super) fn eject(&self, service: &str, addr: &str, live: usize) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        // Forget old strikes: an instance that behaved for a while starts over.
        let forget = self.config.max.saturating_mul(2);
        for instances in map.values_mut() {
            instances.retain(|_, e| later(e.until, forget) > now);
        }
        map.retain(|_, instances| !instances.is_empty());
        let instances = map.entry(service.to_owned()).or_default();
        let ejected_now = instances
            .iter()
            .filter(|(a, e)| a.as_str() != addr && e.until > now)
            .count();
        if ejected_now.saturating_add(1).saturating_mul(2) > live {
            tracing::warn!(
                service,
                addr,
                ejected_now,
                live,
                "not ejecting: at most half of the instances may be ejected"
            );
            self.active.store(count_active(&map), Ordering::Release);
            return false;
        }
        let entry = instances.entry(addr.to_owned()).or_insert(Ejected {
            until: now,
            strikes: 0,
            active: false,
        });
        if entry.until > now {
            // Already ejected: the other requests that were in flight when
            // it failed are no new evidence.
            return true;
        }
        entry.strikes = entry.strikes.saturating_add(1);
        entry.active = true;
        let period = self
            .config
            .base
            .saturating_mul(1u32 << (entry.strikes - 1).min(16))
            .min(self.config.max);
        entry.until = later(now, period);
        tracing::warn!(
            service,
            addr,
            ?period,
            strikes = entry.strikes,
            "ejected instance after a connect failure"
        );
        self.active.store(count_active(&map), Ordering::Release);
        true
    }

    /// Drops the ejections of `service` whose address is not in `live`.
    pub(super) fn retain_listed<'a>(&self, service: &str, live: impl Iterator<Item = &'a str>) {
        if !self.any() {
            return;
        }
        let live: std::collections::HashSet<&str> = live.collect();
        let mut map = self.lock();
        if let Some(instances) = map.get_mut(service) {
            instances.retain(|a, _| live.contains(a.as_str()));
        }
        map.retain(|_, instances| !instances.is_empty());
        self.active.store(count_active(&map), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ejection_grows_expires_and_is_capped_at_half() {
        let health = PassiveHealth::with_ejection(Ejection::default());
        assert!(!health.is_ejected("s", "a:1"));
        assert!(health.eject("s", "a:1", 4));
        assert!(health.is_ejected("s", "a:1"));
        assert!(health.eject("s", "b:1", 4));
        // A third of four would be more than half.
        assert!(!health.eject("s", "c:1", 4));
        assert!(!health.is_ejected("s", "c:1"));
        // Other services are independent.
        assert!(health.eject("t", "c:1", 2));

        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!health.is_ejected("s", "a:1"));
        // A second strike doubles the period.
        assert!(health.eject("s", "a:1", 4));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(health.is_ejected("s", "a:1"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!health.is_ejected("s", "a:1"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_ejected_are_not_new_strikes() {
        let health = PassiveHealth::with_ejection(Ejection::default());
        // Twenty requests were in flight when the instance went away.
        for _ in 0..20 {
            assert!(health.eject("s", "a:1", 4));
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!health.is_ejected("s", "a:1"), "back after one base period");
        // Once nothing is ejected any more, lookups are lock-free again.
        assert!(!health.any());
    }

    /// Any period, even one an `Instant` cannot hold, ejects without a
    /// panic (the builder clamps; the arithmetic saturates regardless).
    #[tokio::test(start_paused = true)]
    async fn huge_periods_saturate() {
        let huge = Ejection {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        for config in [huge, huge.clamped()] {
            let health = PassiveHealth::with_ejection(config);
            for _ in 0..3 {
                assert!(health.eject("s", "a:1", 4));
                assert!(health.is_ejected("s", "a:1"));
                assert!(health.eject("s", "b:1", 4));
            }
            tokio::time::advance(Duration::from_secs(7200)).await;
            assert_eq!(health.is_ejected("s", "a:1"), config == huge);
        }
    }

    #[test]
    fn clamps() {
        let secs = Duration::from_secs;
        let clamped = |base, max| Ejection { base, max }.clamped();
        assert_eq!(clamped(secs(10), Duration::MAX).max, Ejection::LONGEST);
        assert_eq!(
            clamped(Duration::MAX, secs(1)),
            clamped(Ejection::LONGEST, Ejection::LONGEST)
        );
        assert_eq!(clamped(secs(10), secs(1)).max, secs(10));
        assert_eq!(Ejection::default().clamped(), Ejection::default());
    }

    /// A base of zero turns ejection off.
    #[tokio::test(start_paused = true)]
    async fn zero_base_ejects_for_no_time() {
        let health = PassiveHealth::with_ejection(Ejection {
            base: Duration::ZERO,
            max: Duration::ZERO,
        });
        assert!(health.eject("s", "a:1", 4));
        assert!(!health.is_ejected("s", "a:1"));
    }

    #[tokio::test(start_paused = true)]
    async fn unlisted_instances_are_put_back() {
        let health = PassiveHealth::with_ejection(Ejection::default());
        assert!(health.eject("s", "a:1", 2));
        health.retain_listed("s", ["b:1"].into_iter());
        assert!(!health.is_ejected("s", "a:1"));
        assert!(!health.any());
    }
}
