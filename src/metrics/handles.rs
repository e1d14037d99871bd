//! The handles the crate records through, and the layer's (the resolver's
//! and registry's are in `resolver_registry.rs`). Each is prepared once,
//! where the instance or service is first seen, so a request only updates
//! a handle.
//! Without the `metrics` feature they are empty types whose methods do
//! nothing, and no clock is read.

use std::fmt;
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
pub(super) use ::metrics::{Counter, Gauge, Histogram};

#[cfg(not(feature = "metrics"))]
pub(super) use off::{Counter, Gauge, Histogram};

use super::{
    ATTEMPT_DURATION, EJECTIONS, EJECTIONS_ENDED, ERROR_TYPE, RETRIES, RETRIES_BUDGET_EXHAUSTED,
    SERVER_ADDRESS, SERVER_PORT, SERVICE,
};

/// Without the feature: handles that record nothing.
#[cfg(not(feature = "metrics"))]
mod off {
    #[derive(Clone, Default)]
    pub(in crate::metrics) struct Counter;
    impl Counter {
        pub(in crate::metrics) const fn noop() -> Self {
            Counter
        }
        #[inline(always)]
        pub(in crate::metrics) fn increment(&self, _: u64) {}
    }
    #[derive(Clone, Default)]
    pub(in crate::metrics) struct Gauge;
    impl Gauge {
        #[inline(always)]
        pub(in crate::metrics) fn increment(&self, _: f64) {}
        #[inline(always)]
        pub(in crate::metrics) fn decrement(&self, _: f64) {}
        #[inline(always)]
        pub(in crate::metrics) fn set(&self, _: f64) {}
    }
    #[derive(Clone, Default)]
    pub(in crate::metrics) struct Histogram;
    impl Histogram {
        #[inline(always)]
        pub(in crate::metrics) fn record(&self, _: f64) {}
    }
}

pub(super) type Labels<'a> = &'a [(&'static str, &'a str)];

#[cfg(feature = "metrics")]
fn owned(labels: Labels<'_>) -> Vec<::metrics::Label> {
    labels
        .iter()
        .map(|&(key, value)| ::metrics::Label::new(key, value.to_owned()))
        .collect()
}

#[cfg(feature = "metrics")]
pub(super) fn counter(name: &'static str, labels: Labels<'_>) -> Counter {
    ::metrics::counter!(name, owned(labels))
}
#[cfg(feature = "metrics")]
pub(super) fn gauge(name: &'static str, labels: Labels<'_>) -> Gauge {
    ::metrics::gauge!(name, owned(labels))
}
#[cfg(feature = "metrics")]
pub(super) fn histogram(name: &'static str, labels: Labels<'_>) -> Histogram {
    ::metrics::histogram!(name, owned(labels))
}
#[cfg(not(feature = "metrics"))]
pub(super) fn counter(_: &'static str, _: Labels<'_>) -> Counter {
    Counter
}
#[cfg(not(feature = "metrics"))]
pub(super) fn gauge(_: &'static str, _: Labels<'_>) -> Gauge {
    Gauge
}
#[cfg(not(feature = "metrics"))]
pub(super) fn histogram(_: &'static str, _: Labels<'_>) -> Histogram {
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
    pub(super) fn seconds(&self) -> f64 {
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
