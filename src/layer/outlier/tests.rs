//! Ejection rules on a service's state, with paused time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{advance, Instant};

use super::{InstanceState, OutlierDetection, Outliers, ServiceOutliers};
use crate::instance::ServiceName;
use crate::layer::pick::Outcome::{self, GatewayFailure, Other, Refused, Success};

#[cfg(feature = "metrics")]
mod metrics;
mod routed;

/// A service of `n` instances `10.0.0.<i>:80`, their states.
struct Fleet {
    service: Arc<ServiceOutliers>,
    states: Vec<Arc<InstanceState>>,
}

fn addr(i: usize) -> String {
    format!("10.0.0.{i}:80")
}

fn fleet(config: OutlierDetection, n: usize) -> Fleet {
    let service = Outliers::new(config).service(&ServiceName::new("orders").unwrap());
    let addrs: Vec<String> = (0..n).map(addr).collect();
    let states = service.states(addrs.iter().map(String::as_str));
    Fleet { service, states }
}

impl Fleet {
    fn record(&self, i: usize, outcome: Outcome) {
        let usable = self.states.len();
        self.service
            .record(&self.states[i], outcome, &addr(i), &self.states, usable);
    }

    fn ejected(&self, i: usize) -> bool {
        let now_ms = self.service.now_ms(Instant::now());
        self.service.is_ejected(&self.states[i], now_ms)
    }

    fn ejected_count(&self) -> usize {
        (0..self.states.len()).filter(|&i| self.ejected(i)).count()
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn consecutive_gateway_failures_eject_at_the_threshold_and_not_before() {
    let fleet = fleet(OutlierDetection::new().consecutive_failures(3), 4);
    fleet.record(0, GatewayFailure);
    fleet.record(0, GatewayFailure);
    assert!(!fleet.ejected(0), "two of three");
    fleet.record(0, Other);
    assert!(!fleet.ejected(0), "other outcomes count for nothing");
    fleet.record(0, GatewayFailure);
    assert!(fleet.ejected(0), "the third in a row");
    assert_eq!(fleet.states[0].failures(), 0, "the count starts over");
    assert!(fleet.service.any_ejected());
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count() {
    let fleet = fleet(OutlierDetection::new().consecutive_failures(3), 4);
    for _ in 0..5 {
        fleet.record(1, GatewayFailure);
        fleet.record(1, GatewayFailure);
        fleet.record(1, Success);
    }
    assert!(!fleet.ejected(1));
    assert_eq!(fleet.states[1].failures(), 0);
    fleet.record(1, GatewayFailure);
    fleet.record(1, GatewayFailure);
    fleet.record(1, GatewayFailure);
    assert!(fleet.ejected(1));
}

#[tokio::test(start_paused = true)]
async fn zero_consecutive_failures_ejects_only_on_refusals() {
    let fleet = fleet(OutlierDetection::new().consecutive_failures(0), 4);
    for _ in 0..100 {
        fleet.record(0, GatewayFailure);
    }
    assert!(!fleet.ejected(0));
    fleet.record(0, Refused);
    assert!(fleet.ejected(0), "a refused connection ejects at once");
}

#[tokio::test(start_paused = true)]
async fn the_period_doubles_per_strike_up_to_the_max_and_strikes_are_forgotten() {
    let config = OutlierDetection::new().ejection_time(10 * SECOND, 25 * SECOND);
    let fleet = fleet(config, 4);
    // Periods 10 s, 20 s, then 25 s (the cap), twice.
    for period in [10, 20, 25, 25] {
        fleet.record(0, Refused);
        advance((period - 1) * SECOND).await;
        assert!(fleet.ejected(0), "ejected for {period} s");
        advance(2 * SECOND).await;
        assert!(!fleet.ejected(0), "back after {period} s");
        assert!(!fleet.service.any_ejected());
    }
    // Quiet for twice the max: the next ejection is a first one again.
    advance(51 * SECOND).await;
    fleet.record(0, Refused);
    advance(11 * SECOND).await;
    assert!(!fleet.ejected(0), "a first strike: 10 s");
}

#[tokio::test(start_paused = true)]
async fn failures_while_ejected_are_no_new_strike() {
    let fleet = fleet(OutlierDetection::new().consecutive_failures(1), 4);
    // Twenty requests were in flight when the instance went away.
    for i in 0..20 {
        fleet.record(0, if i % 2 == 0 { Refused } else { GatewayFailure });
    }
    advance(11 * SECOND).await;
    assert!(!fleet.ejected(0), "back after one base period");
    fleet.record(0, GatewayFailure);
    advance(19 * SECOND).await;
    assert!(fleet.ejected(0), "the second strike: 20 s");
    advance(2 * SECOND).await;
    assert!(!fleet.ejected(0));
}

#[tokio::test(start_paused = true)]
async fn at_most_the_max_share_is_ejected() {
    // Three of four failing, at most 50 %: two ejected (today's "half").
    let fleet = fleet(OutlierDetection::new().consecutive_failures(2), 4);
    for _ in 0..10 {
        for i in 0..3 {
            fleet.record(i, GatewayFailure);
        }
    }
    assert_eq!(fleet.ejected_count(), 2);
    assert_eq!(fleet.service.ejected_count(), 2);
    // Once they are back, the third may go too: ended ejections free
    // their places without anyone looking at them first.
    advance(11 * SECOND).await;
    fleet.record(2, Refused);
    assert!(fleet.ejected(2));
    assert_eq!(fleet.ejected_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_share_rounds_down_but_allows_one_of_two_or_more() {
    let cases = [
        (50, 1, 0),
        (50, 2, 1),
        (50, 3, 1),
        (50, 5, 2),
        (10, 4, 1), // Envoy: at least one
        (0, 4, 0),  // off
        (100, 4, 4),
        (100, 1, 0),
    ];
    for (percent, n, most) in cases {
        let config = OutlierDetection::new().max_ejected_percent(percent);
        let fleet = fleet(config, n);
        for i in 0..n {
            fleet.record(i, Refused);
        }
        assert_eq!(fleet.ejected_count(), most, "{percent} % of {n}");
    }
}

/// Concurrent ejections never overshoot the cap: the count is raised by
/// compare-exchange before an ejection is stored.
#[test]
fn concurrent_ejections_stay_within_the_cap() {
    let config = OutlierDetection::new().ejection_time(Duration::from_millis(1), SECOND);
    for _ in 0..20 {
        let fleet = Arc::new(fleet(config, 8));
        std::thread::scope(|scope| {
            for t in 0..4 {
                let fleet = &fleet;
                scope.spawn(move || {
                    for round in 0..200 {
                        fleet.record((t + round) % 8, Refused);
                        assert!(fleet.service.ejected_count() <= 4);
                    }
                });
            }
        });
        assert!(fleet.ejected_count() <= 4);
        assert!(fleet.service.ejected_count() <= 4);
    }
}

#[tokio::test(start_paused = true)]
async fn disabled_ejects_nothing() {
    let fleet = fleet(OutlierDetection::disabled(), 4);
    for _ in 0..100 {
        for i in 0..4 {
            fleet.record(i, Refused);
            fleet.record(i, GatewayFailure);
        }
    }
    assert_eq!(fleet.ejected_count(), 0);
    assert!(!fleet.service.any_ejected());
    assert_eq!(fleet.states[0].failures(), 0, "nothing counted either");
}

/// Every value of every option, even unclamped ones, ejects (or not)
/// without a panic or an overflow.
#[tokio::test(start_paused = true)]
async fn no_config_value_panics() {
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        SECOND,
        OutlierDetection::LONGEST,
        Duration::MAX,
    ];
    let mut configs = vec![];
    for &base in &durations {
        for &max in &durations {
            for failures in [0, 1, u32::MAX] {
                for percent in [0, 1, 50, 100, 255] {
                    let built = OutlierDetection::new()
                        .consecutive_failures(failures)
                        .ejection_time(base, max)
                        .max_ejected_percent(percent)
                        .panic_threshold_percent(percent);
                    let mut raw = built;
                    (raw.base_ejection, raw.max_ejection) = (base, max);
                    (raw.max_ejected_percent, raw.panic_threshold_percent) = (percent, percent);
                    configs.extend([built, raw]);
                }
            }
        }
    }
    for config in configs {
        let fleet = fleet(config, 3);
        for outcome in [GatewayFailure, Refused, Success, Other, Refused] {
            for i in 0..3 {
                fleet.record(i, outcome);
            }
            let now_ms = fleet.service.now_ms(Instant::now());
            let candidates = fleet.states.iter().map(|s| &**s);
            fleet.service.panicking(3, candidates, now_ms);
            fleet.service.panicking(0, std::iter::empty(), now_ms);
        }
        assert!(fleet.ejected_count() <= fleet.service.max_ejected(3));
    }
}

#[tokio::test(start_paused = true)]
async fn unlisted_instances_are_dropped_with_their_ejection() {
    let fleet = fleet(OutlierDetection::new(), 4);
    fleet.record(0, Refused);
    assert!(fleet.ejected(0));
    let listed: Vec<String> = (1..4).map(addr).collect();
    fleet
        .service
        .retain_listed(listed.iter().map(String::as_str), 3, Instant::now());
    assert_eq!(fleet.service.known(), 3);
    assert!(!fleet.service.any_ejected(), "its place is free");
    assert!(!fleet.ejected(0), "an older entry holding it sees it back");
    // Listed again: a new state.
    let again = fleet.service.states([addr(0).as_str()].into_iter());
    assert!(!Arc::ptr_eq(&again[0], &fleet.states[0]));
}

/// An attempt still in flight to an instance no longer listed fails
/// afterwards: it must not eject (and count) the forgotten state, which
/// nothing would ever uncount, blocking every later ejection.
#[tokio::test(start_paused = true)]
async fn a_late_failure_of_an_unlisted_instance_ejects_nothing() {
    let fleet = fleet(OutlierDetection::new(), 4);
    let listed: Vec<String> = (1..4).map(addr).collect();
    fleet
        .service
        .retain_listed(listed.iter().map(String::as_str), 3, Instant::now());
    for _ in 0..10 {
        fleet.record(0, Refused);
        fleet.record(0, GatewayFailure);
    }
    assert!(!fleet.ejected(0));
    assert!(!fleet.service.any_ejected(), "nothing counted");
    advance(SECOND * 3600).await;
    fleet.record(1, Refused);
    assert!(fleet.ejected(1), "a listed instance is still ejected");
}

/// The ejected share is of the service's list, not of the instances a
/// request's own tag filter sees.
#[tokio::test(start_paused = true)]
async fn the_ejected_share_is_of_the_whole_list() {
    let fleet = fleet(OutlierDetection::new(), 10);
    let listed: Vec<String> = (0..10).map(addr).collect();
    fleet
        .service
        .retain_listed(listed.iter().map(String::as_str), 10, Instant::now());
    fleet.record(9, Refused);
    assert!(fleet.ejected(9));
    // A request filtered to instances 0 and 1 (usable 2) ejects 0: two of
    // ten are ejected, within half of the list.
    let members = &fleet.states[..2];
    fleet
        .service
        .record(&fleet.states[0], Refused, &addr(0), members, 2);
    assert!(fleet.ejected(0));
}

/// A list read before one already applied (a request that held it, seen
/// late) forgets nothing the newer list has.
#[tokio::test(start_paused = true)]
async fn an_older_list_forgets_nothing() {
    let fleet = fleet(OutlierDetection::new(), 4);
    let older = Instant::now();
    advance(SECOND).await;
    let all: Vec<String> = (0..4).map(addr).collect();
    fleet
        .service
        .retain_listed(all.iter().map(String::as_str), 4, Instant::now());
    let three: Vec<String> = (0..3).map(addr).collect();
    fleet
        .service
        .retain_listed(three.iter().map(String::as_str), 3, older);
    assert_eq!(fleet.service.known(), 4);
    fleet.record(3, Refused);
    assert!(fleet.ejected(3), "instance 3 is listed and ejectable");
}

#[tokio::test(start_paused = true)]
async fn the_panic_threshold() {
    let config = OutlierDetection::new().max_ejected_percent(100);
    for (threshold, ejected, panicking) in [
        (50, 3, true),
        (50, 2, false),
        (50, 0, false),
        (0, 4, false),
        (100, 1, true),
        (100, 0, false),
    ] {
        let fleet = fleet(config.panic_threshold_percent(threshold), 4);
        for i in 0..ejected {
            fleet.record(i, Refused);
        }
        let now_ms = fleet.service.now_ms(Instant::now());
        let candidates = fleet.states.iter().map(|s| &**s);
        assert_eq!(
            fleet.service.panicking(4, candidates, now_ms),
            panicking,
            "{ejected} of 4 ejected, threshold {threshold} %"
        );
    }
}

#[test]
fn a_service_keeps_its_state_while_held_and_is_swept_after() {
    let outliers = Outliers::new(OutlierDetection::new());
    let orders = ServiceName::new("orders").unwrap();
    let held = outliers.service(&orders);
    assert!(Arc::ptr_eq(&held, &outliers.service(&orders)));
    for i in 0..1000 {
        outliers.service(&ServiceName::new(format!("s{i}")).unwrap());
        assert!(outliers.len() <= 130, "bounded: {}", outliers.len());
    }
    assert!(Arc::ptr_eq(&held, &outliers.service(&orders)), "held: kept");
}
