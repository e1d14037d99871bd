//! The process-wide debugging recorder of the metrics tests: installed
//! once, before any layer or resolver prepares its handles, and read
//! through running totals, since each snapshot of `metrics-util`'s
//! `DebuggingRecorder` drains counters and histograms (tests running at
//! the same time would otherwise take each other's values). The snapshot
//! resets gauges to 0 too: a gauge moved up and down is the sum of what the
//! reads found ([`Recorded::gauge_moved`]), one that is set is the last
//! value read that is not 0 ([`Recorded::gauge_set`]; a real value of
//! exactly 0 cannot be told from no change). Tests keep apart by using
//! service names of their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// A metric's name and labels (sorted).
type Series = (String, BTreeMap<String, String>);

/// What the recorder has seen since it was installed.
pub struct Recorded {
    snapshotter: Snapshotter,
    totals: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    counters: HashMap<Series, u64>,
    histograms: HashMap<Series, Vec<f64>>,
    gauges_moved: HashMap<Series, f64>,
    gauges_set: HashMap<Series, f64>,
}

/// The recorder, installed as the global one on first use: call it before
/// building the layer or resolver under test.
pub fn recorder() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder is installed in this test binary");
        Recorded {
            snapshotter,
            totals: Mutex::default(),
        }
    })
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let labels = labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (name.to_owned(), labels)
}

impl Recorded {
    /// Adds what was recorded since the last snapshot to the totals.
    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let series = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *totals.counters.entry(series).or_default() += n,
                DebugValue::Histogram(values) => totals
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
                DebugValue::Gauge(value) => {
                    let value = value.into_inner();
                    *totals.gauges_moved.entry(series.clone()).or_default() += value;
                    if value != 0.0 {
                        totals.gauges_set.insert(series, value);
                    }
                }
            }
        }
        totals
    }

    /// The counter `name` with exactly these labels (any order); 0 if it
    /// was never incremented.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let totals = self.totals();
        totals
            .counters
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0)
    }

    /// The gauge `name`, moved up and down (`increment`, `decrement`): the
    /// sum of the moves; 0 if it never moved.
    pub fn gauge_moved(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let totals = self.totals();
        totals
            .gauges_moved
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The gauge `name`, set (`set`): the last value that was not 0.
    pub fn gauge_set(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let totals = self.totals();
        totals.gauges_set.get(&series(name, labels)).copied()
    }

    /// The values of histogram `name` with exactly these labels.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let totals = self.totals();
        totals
            .histograms
            .get(&series(name, labels))
            .cloned()
            .unwrap_or_default()
    }

    /// Every series of `name` whose labels include `label` and that was
    /// recorded to, with its total (a counter's count or a histogram's
    /// number of values).
    pub fn series_with(&self, name: &str, label: (&str, &str)) -> Vec<(Series, u64)> {
        let totals = self.totals();
        let matches =
            |(n, labels): &Series| n == name && labels.get(label.0).is_some_and(|v| v == label.1);
        let counters = totals
            .counters
            .iter()
            .filter(|(s, _)| matches(s))
            .map(|(s, &n)| (s.clone(), n));
        let histograms = totals
            .histograms
            .iter()
            .filter(|(s, _)| matches(s))
            .map(|(s, v)| (s.clone(), v.len() as u64));
        let mut found: Vec<_> = counters.chain(histograms).filter(|(_, n)| *n > 0).collect();
        found.sort();
        found
    }
}

/// Held by the tests that make Redis fail: `redis.errors` and
/// `subscription.reconnects` carry no service label, so two outages at
/// once would count in each other's totals.
pub async fn outage() -> tokio::sync::MutexGuard<'static, ()> {
    static OUTAGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    OUTAGES.lock().await
}
