//! What outlier detection records (feature `metrics`): an ejection when
//! one is stored, its end when the first look after it sees it ended or
//! when the ejected instance is no longer listed, once either way.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tokio::time::{advance, Instant};

use super::{addr, fleet, Fleet, SECOND};
use crate::layer::outlier::OutlierDetection;
use crate::layer::pick::Outcome::Refused;
use crate::metrics::{EJECTIONS, EJECTIONS_ENDED};

/// Four instances whose handles come from a recorder of their own.
fn recorded_fleet() -> (Fleet, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let fleet = metrics::with_local_recorder(&recorder, || {
        fleet(OutlierDetection::new().max_ejected_percent(100), 4)
    });
    (fleet, snapshotter)
}

/// Each instance's ejections and ended ejections since the last snapshot
/// (a snapshot drains every counter), by instance number.
fn counts(snapshotter: &Snapshotter) -> ([u64; 4], [u64; 4]) {
    let (mut ejections, mut ended) = ([0; 4], [0; 4]);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let counts = match key.name() {
            EJECTIONS => &mut ejections,
            EJECTIONS_ENDED => &mut ended,
            _ => continue,
        };
        if kind != MetricKind::Counter {
            continue;
        }
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let DebugValue::Counter(n) = value else {
            continue;
        };
        for (i, count) in counts.iter_mut().enumerate() {
            let host = format!("10.0.0.{i}");
            let expected = [
                ("service", "orders"),
                ("server.address", host.as_str()),
                ("server.port", "80"),
            ];
            if labels == expected {
                *count += n;
            }
        }
    }
    (ejections, ended)
}

#[tokio::test(start_paused = true)]
async fn an_ejection_and_its_end_are_counted_once() {
    let (fleet, snapshotter) = recorded_fleet();
    fleet.record(1, Refused);
    fleet.record(1, Refused); // already ejected: no new ejection
    assert!(fleet.ejected(1));
    assert_eq!(counts(&snapshotter), ([0, 1, 0, 0], [0; 4]));

    advance(11 * SECOND).await;
    assert!(!fleet.ejected(1), "the 10 s period ran out");
    assert!(!fleet.ejected(1), "a second look ends nothing more");
    assert_eq!(counts(&snapshotter), ([0; 4], [0, 1, 0, 0]));
}

#[tokio::test(start_paused = true)]
async fn an_ejected_instance_no_longer_listed_ends_its_ejection_once() {
    let (fleet, snapshotter) = recorded_fleet();
    fleet.record(3, Refused);
    assert_eq!(counts(&snapshotter), ([0, 0, 0, 1], [0; 4]));
    let listed: Vec<String> = (0..3).map(addr).collect();
    fleet
        .service
        .retain_listed(listed.iter().map(String::as_str), 3, Instant::now());
    // Ended with its listing: ejections less ended ones are those in force.
    assert_eq!(counts(&snapshotter), ([0; 4], [0, 0, 0, 1]));
    advance(3600 * SECOND).await;
    assert!(!fleet.ejected(3));
    fleet.record(3, Refused); // retired: ejects nothing
    assert_eq!(counts(&snapshotter), ([0; 4], [0; 4]));
}
