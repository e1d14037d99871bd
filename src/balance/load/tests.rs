//! The peak-EWMA arithmetic, on tokio's paused clock.

use std::time::Duration;

use tokio::time::{advance, Instant};

use super::*;

const MS: f64 = 1e6;

/// Asserts `got` within 0.1 % of `expected`.
fn assert_near(got: f64, expected: f64) {
    assert!(
        (got - expected).abs() <= expected.abs() * 1e-3 + 1.0,
        "{got} ns, expected {expected} ns"
    );
}

/// Ends an attempt of `ms` milliseconds now.
fn observe(load: &InstanceLoad, ms: u64, failed: bool, ewma: &PeakEwma) {
    load.start();
    load.end(Duration::from_millis(ms), failed, Instant::now(), ewma);
}

#[tokio::test(start_paused = true)]
async fn never_measured_uses_the_default() {
    let ewma = PeakEwma::new().default_rtt(Duration::from_millis(12));
    let load = InstanceLoad::default();
    assert_eq!(load.latency_ns(Instant::now(), &ewma), 12.0 * MS);
    load.start();
    load.start();
    // The default does not decay: there is nothing to decay from.
    advance(Duration::from_secs(60)).await;
    assert_eq!(load.cost(Instant::now(), &ewma), 3.0 * 12.0 * MS);
    assert_eq!(load.cost(Instant::now(), &PeakEwma::new()), 3.0 * 30.0 * MS);
}

#[tokio::test(start_paused = true)]
async fn peaks_replace_and_lower_values_blend() {
    let ewma = PeakEwma::new(); // decay 10 s
    let load = InstanceLoad::default();
    // The first measurement replaces the default, even below it.
    observe(&load, 10, false, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 10.0 * MS);
    // A peak replaces at once.
    observe(&load, 100, false, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 100.0 * MS);
    // One decay later, 10 ms blends in with weight 1 - 1/e.
    advance(Duration::from_secs(10)).await;
    observe(&load, 10, false, &ewma);
    let w = (-1f64).exp();
    assert_near(
        load.latency_ns(Instant::now(), &ewma),
        100.0 * MS * w + 10.0 * MS * (1.0 - w),
    );
    // Right after an update, a lower value barely moves it.
    let before = load.latency_ns(Instant::now(), &ewma);
    observe(&load, 1, false, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), before);
    assert_eq!(load.outstanding(), 0);
}

#[tokio::test(start_paused = true)]
async fn reading_decays_toward_zero() {
    let ewma = PeakEwma::new().decay(Duration::from_secs(2));
    let load = InstanceLoad::default();
    observe(&load, 500, false, &ewma);
    advance(Duration::from_secs(2)).await;
    assert_near(
        load.latency_ns(Instant::now(), &ewma),
        500.0 * MS * (-1f64).exp(),
    );
    // An idle slow instance becomes cheap again, and reading wrote nothing.
    advance(Duration::from_secs(60)).await;
    assert!(load.latency_ns(Instant::now(), &ewma) < 1.0);
    observe(&load, 400, false, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 400.0 * MS);
}

#[tokio::test(start_paused = true)]
async fn failures_never_lower_the_estimate() {
    let ewma = PeakEwma::new();
    let load = InstanceLoad::default();
    observe(&load, 100, false, &ewma);
    // A fast failure changes nothing.
    observe(&load, 1, true, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 100.0 * MS);
    advance(Duration::from_secs(5)).await;
    let decayed = load.latency_ns(Instant::now(), &ewma);
    observe(&load, 1, true, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), decayed);
    // A slow one raises it: above the peak...
    observe(&load, 300, true, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 300.0 * MS);
    // ...and above what a pick reads of a stale estimate.
    advance(Duration::from_secs(30)).await;
    assert!(load.latency_ns(Instant::now(), &ewma) < 20.0 * MS);
    observe(&load, 50, true, &ewma);
    assert_near(load.latency_ns(Instant::now(), &ewma), 50.0 * MS);
    // A first measurement that failed counts too (a timeout, say).
    let fresh = InstanceLoad::default();
    observe(&fresh, 15_000, true, &ewma);
    assert_near(fresh.latency_ns(Instant::now(), &ewma), 15_000.0 * MS);
}

#[tokio::test(start_paused = true)]
async fn outstanding_saturates_both_ways() {
    let ewma = PeakEwma::new();
    let load = InstanceLoad::default();
    // More ends than starts (a bug elsewhere) never underflow.
    load.end(Duration::from_millis(1), false, Instant::now(), &ewma);
    load.end(Duration::from_millis(1), true, Instant::now(), &ewma);
    assert_eq!(load.outstanding(), 0);
    load.outstanding.store(u32::MAX - 1, Ordering::Relaxed);
    load.start();
    load.start();
    assert_eq!(load.outstanding(), u32::MAX);
    assert!(load.cost(Instant::now(), &ewma).is_finite());
}

#[tokio::test(start_paused = true)]
async fn huge_durations_saturate() {
    let ewma = PeakEwma::new().decay(Duration::MAX);
    let load = InstanceLoad::default();
    load.start();
    load.end(Duration::MAX, false, Instant::now(), &ewma);
    let peak = load.latency_ns(Instant::now(), &ewma);
    assert_eq!(peak, u64::MAX as f64);
    assert!(load.cost(Instant::now(), &ewma).is_finite());
    // Lower values blend without overflow, failed or not.
    load.end(Duration::ZERO, false, Instant::now(), &ewma);
    load.end(Duration::ZERO, true, Instant::now(), &ewma);
    assert!(load.latency_ns(Instant::now(), &ewma) > 0.0);
    // A time far ahead (a century) or before the base: no panic.
    let far = Instant::now()
        .checked_add(Duration::from_secs(100 * 365 * 86_400))
        .expect("a century fits");
    assert!(load.latency_ns(far, &ewma) < 1.0);
    load.end(Duration::from_millis(3), false, far, &ewma);
    assert_near(load.latency_ns(far, &ewma), 3.0 * MS);
    let early = InstanceLoad::new(far);
    early.start();
    early.end(Duration::from_millis(7), false, Instant::now(), &ewma);
    assert_near(early.latency_ns(Instant::now(), &ewma), 7.0 * MS);
}

#[test]
fn options_are_clamped() {
    let low = PeakEwma::new()
        .decay(Duration::ZERO)
        .default_rtt(Duration::ZERO);
    assert_eq!(low.decay, Duration::from_millis(1));
    assert_eq!(low.default_rtt, Duration::from_micros(1));
    let high = PeakEwma::new()
        .decay(Duration::MAX)
        .default_rtt(Duration::MAX);
    assert_eq!(high.decay, Duration::from_secs(3600));
    assert_eq!(high.default_rtt, Duration::from_secs(3600));
    assert_eq!(PeakEwma::default(), PeakEwma::new());
}

#[tokio::test(start_paused = true)]
async fn loads_read_by_index() {
    let now = Instant::now();
    let loads = [InstanceLoad::new(now), InstanceLoad::new(now)];
    loads[1].start();
    let view = Loads::from_slice(&loads, now, PeakEwma::new());
    assert_eq!(view.cost(0), 30.0 * MS);
    assert_eq!(view.cost(1), 60.0 * MS);
    assert_eq!(view.cost(2), f64::INFINITY);
    assert_eq!(view.latency_and_outstanding(1), Some((30.0 * MS, 1)));
    assert_eq!(view.latency_and_outstanding(2), None);
    assert!(format!("{view:?}").contains("decay"));
    assert!(format!("{:?}", loads[1]).contains("outstanding: 1"));
}
