//! The handles the crate records through. Each is prepared once, where the
//! instance or service is first seen, so a request only updates a handle.
//! Without the `metrics` feature they are empty types whose methods do
//! nothing, and no clock is read.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(feature = "metrics")]
use ::metrics::{Counter, Gauge, Histogram};

#[cfg(not(feature = "metrics"))]
use off::{Counter, Gauge, Histogram};

use super::{
    ATTEMPT_DURATION, CACHE_LOOKUPS, EJECTIONS, EJECTIONS_ENDED, ERROR_TYPE, HEARTBEAT_FAILURES,
    OPERATION, REDIS_ERRORS, REGISTRATIONS, RESOLVE_DURATION, RESULT, RETRIES,
    RETRIES_BUDGET_EXHAUSTED, SERVER_ADDRESS, SERVER_PORT, SERVICE, SNAPSHOT_STALENESS,
    SUBSCRIPTION_RECONNECTS,
};

/// Without the feature: handles that record nothing.
#[cfg(not(feature = "metrics"))]
mod off {
    #[derive(Clone, Default)]
    pub(super) struct Counter;
    impl Counter {
        pub(super) const fn noop() -> Self {
            Counter
        }
        #[inline(always)]
        pub(super) fn increment(&self, _: u64) {}
    }
    #[derive(Clone, Default)]
    pub(super) struct Gauge;
    impl Gauge {
        #[inline(always)]
        pub(super) fn increment(&self, _: f64) {}
        #[inline(always)]
        pub(super) fn decrement(&self, _: f64) {}
        #[inline(always)]
        pub(super) fn set(&self, _: f64) {}
    }
    #[derive(Clone, Default)]
    pub(super) struct Histogram;
    impl Histogram {
        #[inline(always)]
        pub(super) fn record(&self, _: f64) {}
    }
}

type Labels<'a> = &'a [(&'static str, &'a str)];

#[cfg(feature = "metrics")]
fn owned(labels: Labels<'_>) -> Vec<::metrics::Label> {
    labels
        .iter()
        .map(|&(key, value)| ::metrics::Label::new(key, value.to_owned()))
        .collect()
}

#[cfg(feature = "metrics")]
fn counter(name: &'static str, labels: Labels<'_>) -> Counter {
    ::metrics::counter!(name, owned(labels))
}
#[cfg(feature = "metrics")]
fn gauge(name: &'static str, labels: Labels<'_>) -> Gauge {
    ::metrics::gauge!(name, owned(labels))
}
#[cfg(feature = "metrics")]
fn histogram(name: &'static str, labels: Labels<'_>) -> Histogram {
    ::metrics::histogram!(name, owned(labels))
}
#[cfg(not(feature = "metrics"))]
fn counter(_: &'static str, _: Labels<'_>) -> Counter {
    Counter
}
#[cfg(not(feature = "metrics"))]
fn gauge(_: &'static str, _: Labels<'_>) -> Gauge {
    Gauge
}
#[cfg(not(feature = "metrics"))]
fn histogram(_: &'static str, _: Labels<'_>) -> Histogram {
    Histogram
}

/// Host and port of an instance's `host:port` (`[v6]:port`) address.
fn host_port(addr: &str) -> (&str, &str) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
        None => (addr, ""),
    }
}

/// The time an attempt or a read took; reads no clock without the feature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    /// `None`: not started (no `Instant` to spare; the size is the same).
    #[cfg(feature = "metrics")]
    started: Option<std::time::Instant>,
}

impl Stopwatch {
    /// Not started: for a future that may never send an attempt, without
    /// a clock read.
    pub(crate) const IDLE: Stopwatch = Stopwatch {
        #[cfg(feature = "metrics")]
        started: None,
    };

    #[inline]
    pub(crate) fn start() -> Self {
        Stopwatch {
            #[cfg(feature = "metrics")]
            started: Some(std::time::Instant::now()),
        }
    }

    #[inline]
    fn seconds(&self) -> f64 {
        #[cfg(feature = "metrics")]
        return self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        0.0
    }
}

/// How an attempt ended, as its metrics label it (`error.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptClass {
    /// A response the failure classifier accepts.
    Ok,
    /// A response status the classifier counts as the instance's failure.
    FailureStatus,
    Refused,
    Connect,
    ConnectionLost,
    TimedOut,
    Other,
}

impl AttemptClass {
    #[cfg(test)]
    const ALL: [AttemptClass; 7] = [
        AttemptClass::Ok,
        AttemptClass::FailureStatus,
        AttemptClass::Refused,
        AttemptClass::Connect,
        AttemptClass::ConnectionLost,
        AttemptClass::TimedOut,
        AttemptClass::Other,
    ];

    /// The `error.type` label; `None` for a success.
    pub(crate) fn error_type(self) -> Option<&'static str> {
        match self {
            AttemptClass::Ok => None,
            AttemptClass::FailureStatus => Some("failure_status"),
            AttemptClass::Refused => Some("refused"),
            AttemptClass::Connect => Some("connect"),
            AttemptClass::ConnectionLost => Some("connection_lost"),
            AttemptClass::TimedOut => Some("timeout"),
            AttemptClass::Other => Some("other"),
        }
    }
}

/// One handle per attempt class: the success's made at once (the common
/// case, read with no check), each failure's on its first use, so an
/// instance that never fails adds no failure series to the exporter.
struct ByClass<T> {
    /// `None` for a metric that has no success series (retries).
    ok: Option<T>,
    /// By class, less one (the success).
    failed: [OnceLock<T>; 6],
    name: &'static str,
    /// The labels every class shares.
    labels: Box<[(&'static str, Box<str>)]>,
    make: fn(&'static str, Labels<'_>) -> T,
}

impl<T> ByClass<T> {
    fn new(
        name: &'static str,
        labels: Labels<'_>,
        with_ok: bool,
        make: fn(&'static str, Labels<'_>) -> T,
    ) -> Self {
        ByClass {
            ok: with_ok.then(|| make(name, labels)),
            failed: Default::default(),
            name,
            labels: labels.iter().map(|&(k, v)| (k, v.into())).collect(),
            make,
        }
    }

    #[inline]
    fn get(&self, class: AttemptClass) -> Option<&T> {
        let Some(failed) = (class as usize).checked_sub(1) else {
            return self.ok.as_ref();
        };
        let slot = self.failed.get(failed)?;
        Some(slot.get_or_init(|| {
            let mut labels: Vec<(&'static str, &str)> =
                self.labels.iter().map(|(k, v)| (*k, &**v)).collect();
            labels.extend(class.error_type().map(|e| (ERROR_TYPE, e)));
            (self.make)(self.name, &labels)
        }))
    }
}

/// One instance's handles in a layer: made when the layer first lists the
/// instance, kept while it stays listed.
pub(crate) struct InstanceMetrics {
    attempts: ByClass<Histogram>,
    ejections: Counter,
    ejections_ended: Counter,
    /// Whether a recorder was installed when the handles were made: if
    /// not, they record nothing and attempts read no clock.
    #[cfg(feature = "metrics")]
    timed: bool,
}

/// Whether `histogram` records anywhere. The facade cannot say, but a
/// no-op handle never converts the value it is given: recording one zero
/// times, with a value that notes its conversion, tells without recording
/// anything. So without a recorder, attempts skip their two clock reads
/// (about 60 ns a request on the benchmark machine). Should the facade
/// ever convert for no-op handles too, attempts are timed: never wrong.
#[cfg(feature = "metrics")]
fn records(histogram: &Histogram) -> bool {
    struct Probe<'a>(&'a std::cell::Cell<bool>);
    impl ::metrics::IntoF64 for Probe<'_> {
        fn into_f64(self) -> f64 {
            self.0.set(true);
            0.0
        }
    }
    let converted = std::cell::Cell::new(false);
    histogram.record_many(Probe(&converted), 0);
    converted.get()
}

impl InstanceMetrics {
    pub(crate) fn new(service: &str, addr: &str) -> Self {
        let (host, port) = host_port(addr);
        let labels = [
            (SERVICE, service),
            (SERVER_ADDRESS, host),
            (SERVER_PORT, port),
        ];
        let attempts = ByClass::new(ATTEMPT_DURATION, &labels, true, histogram);
        InstanceMetrics {
            #[cfg(feature = "metrics")]
            timed: attempts.ok.as_ref().is_some_and(records),
            attempts,
            ejections: counter(EJECTIONS, &labels),
            ejections_ended: counter(EJECTIONS_ENDED, &labels),
        }
    }

    /// Started when an attempt to this instance is sent: reads the clock
    /// only if a recorder takes the duration.
    #[inline]
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        #[cfg(feature = "metrics")]
        if self.timed {
            return Stopwatch::start();
        }
        Stopwatch::IDLE
    }

    /// An attempt to this instance ended as `class`, `took` after it started.
    #[inline]
    pub(crate) fn attempt(&self, class: AttemptClass, took: Stopwatch) {
        if let Some(histogram) = self.attempts.get(class) {
            histogram.record(took.seconds());
        }
    }

    pub(crate) fn ejected(&self) {
        self.ejections.increment(1);
    }

    pub(crate) fn ejection_ended(&self) {
        self.ejections_ended.increment(1);
    }
}

impl fmt::Debug for InstanceMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceMetrics").finish_non_exhaustive()
    }
}

/// One service's handles in a layer.
pub(crate) struct LayerServiceMetrics {
    /// By [`AttemptClass`] of the failed attempt.
    retries: ByClass<Counter>,
    budget_exhausted: Counter,
}

impl LayerServiceMetrics {
    pub(crate) fn new(service: &str) -> Self {
        LayerServiceMetrics {
            // A retry follows a failure: no series without `error.type`.
            retries: ByClass::new(RETRIES, &[(SERVICE, service)], false, counter),
            budget_exhausted: counter(RETRIES_BUDGET_EXHAUSTED, &[(SERVICE, service)]),
        }
    }

    /// A request is sent again after an attempt that ended as `reason`.
    pub(crate) fn retry(&self, reason: AttemptClass) {
        if let Some(counter) = self.retries.get(reason) {
            counter.increment(1);
        }
    }

    /// The retry budget refused a retry.
    pub(crate) fn budget_exhausted(&self) {
        self.budget_exhausted.increment(1);
    }
}

impl fmt::Debug for LayerServiceMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerServiceMetrics")
            .finish_non_exhaustive()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(host_port("10.0.0.1:8080"), ("10.0.0.1", "8080"));
        assert_eq!(host_port("[::1]:80"), ("::1", "80"));
        assert_eq!(host_port("odd"), ("odd", ""));
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn attempts_are_timed_only_with_a_recorder() {
        let noop = ::metrics::NoopRecorder;
        let timed = |recorder: &dyn ::metrics::Recorder| {
            ::metrics::with_local_recorder(recorder, || {
                InstanceMetrics::new("orders", "10.0.0.1:80").timed
            })
        };
        assert!(!timed(&noop));
        let debugging = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = debugging.snapshotter();
        assert!(timed(&debugging));
        // The probe records nothing.
        use metrics_util::debugging::DebugValue;
        for (_, _, _, value) in snapshotter.snapshot().into_vec() {
            match value {
                DebugValue::Histogram(values) => assert!(values.is_empty(), "{values:?}"),
                DebugValue::Counter(n) => assert_eq!(n, 0),
                DebugValue::Gauge(_) => {}
            }
        }
    }

    #[test]
    fn classes_index_their_handles() {
        for (i, class) in AttemptClass::ALL.iter().enumerate() {
            assert_eq!(*class as usize, i);
        }
    }
}
