//! The resolver's and the registry's handles: per cached service, and the
//! rare events (Redis errors, reconnects, failed renewals) looked up when
//! they happen.

use std::fmt;
use std::time::Duration;

use super::handles::{counter, gauge, histogram, Counter, Gauge, Histogram, Stopwatch};
use super::{
    CACHE_LOOKUPS, HEARTBEAT_FAILURES, OPERATION, REDIS_ERRORS, REGISTRATIONS, RESOLVE_DURATION,
    RESULT, SERVICE, SNAPSHOT_STALENESS, SUBSCRIPTION_RECONNECTS,
};

/// One service's handles in a resolver's cache.
pub(crate) struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    resolve: Histogram,
    staleness: Gauge,
}

/// The handles of `service` in a resolver's cache.
pub(crate) fn cache_metrics(service: &str) -> CacheMetrics {
    let service = [(SERVICE, service)];
    let result = |r| [service[0], (RESULT, r)];
    CacheMetrics {
        hits: counter(CACHE_LOOKUPS, &result("hit")),
        misses: counter(CACHE_LOOKUPS, &result("miss")),
        resolve: histogram(RESOLVE_DURATION, &service),
        staleness: gauge(SNAPSHOT_STALENESS, &service),
    }
}

impl CacheMetrics {
    /// A request or lookup answered from the cache.
    #[inline]
    pub(crate) fn hit(&self) {
        self.hits.increment(1);
    }

    /// A request or lookup that waited for Redis.
    pub(crate) fn miss(&self) {
        self.misses.increment(1);
    }

    /// A read of the service's instances from Redis ended (either way).
    pub(crate) fn resolved(&self, took: Stopwatch) {
        self.resolve.record(took.seconds());
    }

    /// How long ago Redis last confirmed the cached list.
    pub(crate) fn staleness(&self, age: Duration) {
        self.staleness.set(age.as_secs_f64());
    }
}

impl fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMetrics").finish_non_exhaustive()
    }
}

/// What a failed Redis call was doing (`operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisOperation {
    /// Reading a service's instances.
    Read,
    /// The resolver's pub/sub connection or its subscriptions.
    Subscribe,
    /// Registering an instance.
    Register,
    /// Renewing registered instances' leases.
    Heartbeat,
    /// Deregistering an instance.
    Deregister,
}

impl RedisOperation {
    fn label(self) -> &'static str {
        match self {
            RedisOperation::Read => "read",
            RedisOperation::Subscribe => "subscribe",
            RedisOperation::Register => "register",
            RedisOperation::Heartbeat => "heartbeat",
            RedisOperation::Deregister => "deregister",
        }
    }
}

/// A Redis call failed. Rare: the handle is looked up each time.
pub(crate) fn redis_error(operation: RedisOperation) {
    counter(REDIS_ERRORS, &[(OPERATION, operation.label())]).increment(1);
}

/// The resolver's pub/sub connection was re-established.
pub(crate) fn subscription_reconnected() {
    counter(SUBSCRIPTION_RECONNECTS, &[]).increment(1);
}

/// `instances` lease renewals of `service`'s instances failed at once (one
/// failed call renews up to a thousand): one handle lookup for them all.
pub(crate) fn heartbeats_failed(service: &str, instances: u64) {
    counter(HEARTBEAT_FAILURES, &[(SERVICE, service)]).increment(instances);
}

/// Counts one registered instance in `redis_discovery.registrations` while
/// it lives: up when made, down when dropped (through the same handle, so
/// the pair always matches).
pub(crate) struct RegistrationGauge {
    gauge: Gauge,
}

/// Counts one registered instance of `service` until the guard drops.
pub(crate) fn registrations(service: &str) -> RegistrationGauge {
    let gauge = gauge(REGISTRATIONS, &[(SERVICE, service)]);
    gauge.increment(1.0);
    RegistrationGauge { gauge }
}

impl Drop for RegistrationGauge {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl fmt::Debug for RegistrationGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationGauge").finish_non_exhaustive()
    }
}
