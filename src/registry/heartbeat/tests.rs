//! The heartbeat's retry timing and log episodes.

use super::*;
use crate::error::{RedisFailure, RegistryError};

fn failed(broke: bool) -> Renewal {
    let error = if broke {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = redis::RedisError::from(io);
        assert!(crate::connection::broke(&error));
        RegistryError::Redis {
            source: RedisFailure::new(error),
        }
    } else {
        RegistryError::Timeout {
            timeout: Duration::from_secs(2),
        }
    };
    Renewal {
        failed: HashSet::from(["orders".to_owned()]),
        failed_instances: 1,
        broke,
        error: Some(error),
        ..Renewal::default()
    }
}

/// The delays before each retry after failures on a broken
/// connection (`true`) or not.
fn delays(interval: Duration, failures: &[bool]) -> Vec<Duration> {
    let mut outage = Outage::new();
    let cap = retry_cap(interval);
    failures
        .iter()
        .map(|&broke| outage.next_delay(broke, cap))
        .collect()
}

#[test]
fn a_broken_connection_is_retried_at_once_then_with_a_short_backoff() {
    let ms = Duration::from_millis;
    // Heartbeat 1 s: the cap is 250 ms. Every broken try after a
    // backoff is followed by one at once (it waits for the reconnect).
    assert_eq!(
        delays(ms(1000), &[true, true, true, true, true, true, true, true]),
        [
            ms(0),
            ms(100),
            ms(0),
            ms(200),
            ms(0),
            ms(250),
            ms(0),
            ms(250)
        ]
    );
    // Timeouts (a hung Redis) only back off.
    assert_eq!(
        delays(ms(1000), &[false, false, false, false]),
        [ms(100), ms(200), ms(250), ms(250)]
    );
    // Heartbeat 60 s: capped at 1 s; 100 ms: at 25 ms.
    assert_eq!(
        delays(Duration::from_secs(60), &[false; 6]),
        [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
    assert_eq!(delays(ms(100), &[false; 2]), [ms(25), ms(25)]);
    // Heartbeat 10 ms (the shortest): 10 ms, not 2.5 ms.
    assert_eq!(delays(ms(10), &[false; 2]), [ms(10), ms(10)]);
}

#[test]
fn a_backoff_delay_is_spread_by_a_quarter_either_way() {
    let ms = Duration::from_millis;
    assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    let delays: Vec<Duration> = (0..1000).map(|_| jittered(ms(100))).collect();
    assert!(
        delays.iter().all(|d| (ms(75)..=ms(125)).contains(d)),
        "{delays:?}"
    );
    // Spread over the range, not one value.
    assert!(delays.iter().any(|d| *d < ms(90)), "{delays:?}");
    assert!(delays.iter().any(|d| *d > ms(110)), "{delays:?}");
    let longest = (0..1000).map(|_| jittered(ms(1000))).max();
    assert!(longest <= Some(ms(1250)), "{longest:?}");
}

#[test]
fn each_outage_reports_its_losses_anew() {
    let second = Duration::from_secs(1);
    let recreated = || Renewal {
        written: 10,
        created: 10,
        ..Renewal::default()
    };
    let mut health = HeartbeatHealth::default();
    for _ in 0..2 {
        health.record(true, failed(true), second);
        assert!(!health.reported_lost);
        // A retry re-creates the lost entries and ends the outage.
        health.record(false, recreated(), second);
        assert!(health.outage.is_none());
        assert!(!health.reported_lost, "the next outage is news");
    }
    // Without an outage (FLUSHALL), one report until a clean round.
    health.record(true, recreated(), second);
    assert!(health.reported_lost);
    health.record(true, Renewal::default(), second);
    assert!(!health.reported_lost);
}

#[test]
fn success_ends_the_outage() {
    let mut health = HeartbeatHealth::default();
    health.record(true, failed(true), Duration::from_secs(1));
    assert!(health.outage.is_some());
    health.record(false, Renewal::default(), Duration::from_secs(1));
    assert!(health.outage.is_none());
}
