//! The outlier state of one service: its instances' states by address,
//! and how many of them are ejected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::instance::{Ejection, InstanceState, MAX_MS};
use super::OutlierDetection;
use crate::instance::ServiceName;
use crate::layer::pick::Outcome;
use crate::metrics::LayerServiceMetrics;

/// How often panic mode is logged at most, per service.
const PANIC_LOG_EVERY_MS: u64 = 10_000;

/// Whole milliseconds, rounded up (a period of 1 µs still ejects), saturating.
fn ceil_ms(period: Duration) -> u64 {
    let ms = period.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).min(MAX_MS)
}

/// The instances of one service, as the layer knows them across snapshot
/// changes. Ejection follows Envoy's outlier detection; see
/// [`OutlierDetection`].
pub(crate) struct ServiceOutliers {
    name: ServiceName,
    config: OutlierDetection,
    /// The router's clock origin: ejections are kept as ms since it.
    epoch: Instant,
    /// Instances whose ejection is counted: at least those ejected now.
    /// Raised (by compare-exchange, never past the cap) before an ejection
    /// is stored, lowered after one ended is seen: so ejections never
    /// exceed the cap, even when requests eject at the same time.
    ejected: AtomicUsize,
    /// When panic mode was last logged (ms since the epoch, plus one).
    panic_logged: AtomicU64,
    /// The usable instances (weight above 0) of the service's current
    /// list: what the ejected share is a share of, whatever filter the
    /// request that ejects has. 0 until a list was seen.
    usable: AtomicUsize,
    /// The listed instances' states, by address, and when the list they
    /// come from was read: used when a picker entry is built, never on a
    /// request's path.
    instances: Mutex<Listed>,
    /// The service's metric handles (retries), prepared once here.
    metrics: LayerServiceMetrics,
}

/// The states of a service's listed instances.
#[derive(Default)]
struct Listed {
    by_addr: HashMap<Box<str>, Arc<InstanceState>>,
    /// When the newest list `retain_listed` applied was read: an older
    /// one, seen late, must not forget the instances a newer one added.
    read_at: Option<Instant>,
}

impl ServiceOutliers {
    pub(super) fn new(name: ServiceName, config: OutlierDetection, epoch: Instant) -> Self {
        ServiceOutliers {
            metrics: LayerServiceMetrics::new(name.as_str()),
            name,
            config,
            epoch,
            ejected: AtomicUsize::new(0),
            panic_logged: AtomicU64::new(0),
            usable: AtomicUsize::new(0),
            instances: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Listed> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The states of the instances at `addrs`, made for those not known
    /// (with their metric handles: once per instance, not per request).
    pub(crate) fn states<'a>(
        &self,
        addrs: impl Iterator<Item = &'a str>,
    ) -> Vec<Arc<InstanceState>> {
        let instances = &mut self.lock().by_addr;
        addrs
            .map(|addr| match instances.get(addr) {
                Some(state) => state.clone(),
                None => {
                    let state = Arc::new(InstanceState::new(self.name.as_str(), addr));
                    instances.insert(addr.into(), state.clone());
                    state
                }
            })
            .collect()
    }

    /// The service's metric handles.
    #[inline]
    pub(crate) fn metrics(&self) -> &LayerServiceMetrics {
        &self.metrics
    }

    /// The service's current list, read at `read_at`, is `listed`, `usable`
    /// of them with a weight: forgets the instances not on it (their state
    /// goes, and their ejection with it). A list older than one already
    /// applied changes nothing.
    pub(crate) fn retain_listed<'a>(
        &self,
        listed: impl Iterator<Item = &'a str> + Clone,
        usable: usize,
        read_at: Instant,
    ) {
        let mut guard = self.lock();
        if guard.read_at.is_some_and(|newest| newest > read_at) {
            return;
        }
        guard.read_at = Some(read_at);
        self.usable.store(usable, Ordering::Relaxed);
        // Nearly always every known instance is still listed: no set to
        // build (a resolver without a cache makes a list per request).
        let known = &guard.by_addr;
        let count = listed.clone().count();
        if known.len() <= count && listed.clone().all(|a| known.contains_key(a)) {
            return;
        }
        let listed: std::collections::HashSet<&str> = listed.collect();
        let mut dropped = Vec::new();
        guard.by_addr.retain(|addr, state| {
            let keep = listed.contains(&**addr);
            if !keep {
                dropped.push(state.clone());
            }
            keep
        });
        drop(guard);
        // Entries of older snapshots may still hold them: un-eject, so the
        // count stays right, and retire them, so that a late failure of an
        // attempt in flight cannot eject (and count) them again.
        for state in dropped {
            loop {
                let (word, ejection) = state.ejection();
                if state.replace_ejection(word, Ejection::RETIRED) {
                    if ejection.counted {
                        self.ejected.fetch_sub(1, Ordering::AcqRel);
                        state.metrics.ejection_ended();
                    }
                    break;
                }
            }
        }
    }

    /// Whether an instance of the service may be ejected: one atomic load.
    #[inline]
    pub(crate) fn any_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire) > 0
    }

    /// The clock as ejections keep it.
    #[inline]
    pub(crate) fn now_ms(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX).min(MAX_MS)
    }

    /// Whether `state` is ejected at `now_ms`; the first look after an
    /// ejection ended lowers the ejected count.
    pub(crate) fn is_ejected(&self, state: &InstanceState, now_ms: u64) -> bool {
        let (word, ejection) = state.ejection();
        if ejection.until_ms > now_ms {
            return true;
        }
        if ejection.counted {
            let ended = Ejection {
                counted: false,
                ..ejection
            };
            if state.replace_ejection(word, ended) {
                self.ejected.fetch_sub(1, Ordering::AcqRel);
                state.metrics.ejection_ended();
            }
        }
        false
    }

    /// Whether ejections are ignored for a request over `usable` instances
    /// (weight above 0), `candidates` their states: fewer than the panic
    /// threshold's share are not ejected (Envoy's healthy panic threshold).
    /// Counts them only when the ejected count says it may be so.
    pub(crate) fn panicking<'a>(
        &self,
        usable: usize,
        candidates: impl Iterator<Item = &'a InstanceState>,
        now_ms: u64,
    ) -> bool {
        let threshold = usize::from(self.config.panic_threshold_percent);
        let below = |live: usize| live.saturating_mul(100) < threshold.saturating_mul(usable);
        // Ejected members are at most the service's count.
        let at_least_live = usable.saturating_sub(self.ejected.load(Ordering::Acquire));
        if usable == 0 || !below(at_least_live) {
            return false;
        }
        let live = candidates.filter(|s| !self.is_ejected(s, now_ms)).count();
        let panicking = below(live);
        if panicking {
            self.log_panic(now_ms, live, usable);
        }
        panicking
    }

    fn log_panic(&self, now_ms: u64, live: usize, usable: usize) {
        let last = self.panic_logged.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_add(1) >= last.saturating_add(PANIC_LOG_EVERY_MS);
        if due
            && self
                .panic_logged
                .compare_exchange(
                    last,
                    now_ms.saturating_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                service = %self.name,
                live,
                usable,
                threshold_percent = self.config.panic_threshold_percent,
                "panic mode: too few instances left, ignoring ejections"
            );
        }
    }

    /// What an attempt sent to the instance of `state` (at `addr`, one of
    /// a picker's `members`, `usable` of which have a weight) showed.
    pub(crate) fn record(
        &self,
        state: &InstanceState,
        outcome: Outcome,
        addr: &str,
        members: &[Arc<InstanceState>],
        usable: usize,
    ) {
        if self.config.base_ejection.is_zero() {
            return;
        }
        match outcome {
            Outcome::Success => state.reset_failures(),
            Outcome::Other => {}
            Outcome::Refused => {
                self.eject(state, addr, members, usable, "a refused connection");
            }
            Outcome::GatewayFailure => {
                let threshold = self.config.consecutive_failures;
                if threshold == 0 {
                    return;
                }
                let now_ms = self.now_ms(Instant::now());
                // Requests in flight when it was ejected are no new evidence.
                if self.is_ejected(state, now_ms) {
                    return;
                }
                if state.failed() >= threshold {
                    self.eject(state, addr, members, usable, "consecutive gateway failures");
                }
            }
        }
    }

    /// At most this many of `usable` instances ejected at once: the
    /// configured share, rounded down, but at least one of two or more
    /// (Envoy's rule) unless the share is 0.
    pub(super) fn max_ejected(&self, usable: usize) -> usize {
        let percent = usize::from(self.config.max_ejected_percent);
        if percent == 0 || usable < 2 {
            return 0;
        }
        (usable.saturating_mul(percent) / 100).max(1)
    }

    /// Ejects the instance of `state` unless that would exceed the cap.
    /// Returns whether it is ejected (now or already).
    pub(super) fn eject(
        &self,
        state: &InstanceState,
        addr: &str,
        members: &[Arc<InstanceState>],
        usable: usize,
        why: &str,
    ) -> bool {
        let now_ms = self.now_ms(Instant::now());
        // The share is of the service's list; a request's own filter may
        // see fewer (its `usable`) before the list was seen.
        let listed = self.usable.load(Ordering::Relaxed);
        let cap = self.max_ejected(if listed > 0 { listed } else { usable });
        let mut swept = false;
        loop {
            // Already ejected: the requests in flight when it failed are no
            // new strike. An ended ejection is uncounted here.
            if self.is_ejected(state, now_ms) {
                return true;
            }
            let (word, ejection) = state.ejection();
            if ejection.retired {
                return false; // no longer listed
            }
            if ejection.counted {
                continue; // ejected meanwhile, or its end not seen yet
            }
            let reserved = self
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok();
            if !reserved {
                if !swept {
                    // Ended ejections not seen yet may hold the places.
                    swept = true;
                    for member in members {
                        self.is_ejected(member, now_ms);
                    }
                    continue;
                }
                tracing::warn!(
                    service = %self.name,
                    addr,
                    usable,
                    max_ejected_percent = self.config.max_ejected_percent,
                    "not ejecting after {why}: too many instances ejected already"
                );
                return false;
            }
            let strikes = ejection.next_strike(now_ms, self.forget_ms());
            let period = self.period_ms(strikes);
            let ejected = Ejection {
                until_ms: now_ms.saturating_add(period).min(MAX_MS),
                strikes,
                counted: true,
                retired: false,
            };
            if state.replace_ejection(word, ejected) {
                state.reset_failures();
                state.metrics.ejected();
                tracing::warn!(
                    service = %self.name,
                    addr,
                    period = ?Duration::from_millis(period),
                    strikes,
                    "ejected instance after {why}"
                );
                return true;
            }
            self.ejected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The ejection period of the `strikes`-th ejection in a row: the base
    /// doubled per strike, up to the max.
    fn period_ms(&self, strikes: u32) -> u64 {
        let base = ceil_ms(self.config.base_ejection);
        let max = ceil_ms(self.config.max_ejection).max(base);
        let doublings = strikes.saturating_sub(1).min(16);
        base.saturating_mul(1 << doublings).min(max)
    }

    /// Strikes are forgotten after twice the longest period without one.
    fn forget_ms(&self) -> u64 {
        ceil_ms(self.config.max_ejection)
            .max(ceil_ms(self.config.base_ejection))
            .saturating_mul(2)
    }

    #[cfg(test)]
    pub(super) fn ejected_count(&self) -> usize {
        self.ejected.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn known(&self) -> usize {
        self.lock().by_addr.len()
    }
}

impl std::fmt::Debug for ServiceOutliers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOutliers")
            .field("name", &self.name)
            .field("ejected", &self.ejected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
