//! The heartbeat through Redis outages: entries back right after a
//! restart, an outage logged once per registry, and a hung Redis holding
//! no operation up for more than a round's one deadline.

use std::time::{Duration, Instant};

use redis_discovery::RedisRegistry;

use super::support::outage::crash_and_restart;
use super::support::{self, eventually, lease_renewed, LogCapture, RedisServer};
use super::{addr, all_back, instance, register_many, registry};

/// Issue 12, item 1 (registry side): TTL 3 s, heartbeat 1 s; Redis
/// stopped for 5 s and restarted empty, 5 times in a row: every entry is
/// back within one heartbeat plus 500 ms after Redis accepts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_back_within_a_heartbeat_after_each_restart() {
    let mut server = RedisServer::start();
    let heartbeat = Duration::from_secs(1);
    let registry = registry(&server, Duration::from_secs(3), heartbeat).await;
    let (services, per_service) = (20, 5);
    let registrations = register_many(&registry, services, per_service).await;
    for restart in 1..=5 {
        // The outage itself, not a synchronisation.
        let (restarted, accepting) = crash_and_restart(server, Duration::from_secs(5)).await;
        server = restarted;
        let back = all_back(&server, services, per_service, accepting).await;
        eprintln!("restart {restart}: every entry back {back:?} after Redis accepted connections");
        assert!(
            back <= heartbeat + Duration::from_millis(500),
            "restart {restart}: back after {back:?}"
        );
    }
    registry.shutdown().await.unwrap();
    drop(registrations);
}

/// Failing heartbeats and lost entries are logged per registry: one warn
/// when they start failing, one info when they succeed again, one info
/// summary of the re-created entries per outage (not one per
/// registration), and one more after a later FLUSHALL.
#[tokio::test]
async fn an_outage_is_logged_once_per_registry() {
    let mut server = RedisServer::start();
    let logs = LogCapture::default();
    // Everything runs on this (current-thread) runtime's thread.
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::INFO, false));
    let registry = registry(&server, Duration::from_secs(2), Duration::from_millis(500)).await;
    let services = 5;
    let registrations = register_many(&registry, services, 10).await;
    let lines = |what: &str| {
        logs.text()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // Down for 2 s (many retries), not a synchronisation.
    let (restarted, _) = crash_and_restart(server, Duration::from_secs(2)).await;
    server = restarted;
    eventually("heartbeats to succeed again", || async {
        (!lines("heartbeat succeeds again").is_empty()).then_some(())
    })
    .await;
    all_back(&server, services, 10, Instant::now()).await;
    let failing = lines("heartbeat failed");
    assert_eq!(failing.len(), 1, "{}", logs.text());
    assert!(
        failing[0].contains("WARN") && failing[0].contains("services=5"),
        "{failing:?}"
    );
    assert_eq!(
        lines("heartbeat succeeds again").len(),
        1,
        "{}",
        logs.text()
    );
    let lost = lines("re-created them");
    assert_eq!(lost.len(), 1, "{}", logs.text());
    assert!(
        lost[0].contains("INFO") && lost[0].contains("entries=50"),
        "{lost:?}"
    );
    let before_flush = lost.len();

    // After a clean round, a FLUSHALL is a new episode: one more summary.
    lease_renewed(&server, "svc-0", &addr(1)).await;
    lease_renewed(&server, "svc-0", &addr(1)).await;
    server.flushall();
    all_back(&server, services, 10, Instant::now()).await;
    let waiting = Instant::now();
    let lost = loop {
        let lost = lines("re-created them");
        if lost.len() > before_flush {
            break lost;
        }
        assert!(
            waiting.elapsed() < support::DEADLINE,
            "no summary after FLUSHALL: {}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lost.len(), before_flush + 1, "{}", logs.text());
    assert!(
        lost[before_flush].contains("INFO") && lost[before_flush].contains("entries=50"),
        "{lost:?}"
    );
    // Nothing else at info or above: no line per registration, per
    // retry or per round (the index write fails with the heartbeats: one
    // line at most).
    let known = [
        "heartbeat failed",
        "heartbeat succeeds again",
        "re-created them",
        "could not add services to the services index",
    ];
    let text = logs.text();
    assert!(
        text.lines().all(|l| known.iter().any(|k| l.contains(k))),
        "{text}"
    );
    assert!(lines("services index").len() <= 1, "{text}");
    registry.shutdown().await.unwrap();
    drop(registrations);
}

/// A round on a hung Redis holds the registry's write lock at most one
/// command timeout, however many waves of calls it has (1 500 services:
/// six waves of 256): an update or a deregistration started meanwhile
/// returns (here with a timeout) within a few command timeouts, not one
/// per wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_on_a_hung_redis_delays_an_update_by_one_command_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let registry = RedisRegistry::builder(server.url())
        .lease_ttl(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_millis(400))
        .command_timeout(timeout)
        .connect()
        .await
        .expect("connect to test redis");
    let services = 1500;
    let mut registrations = register_many(&registry, services, 1).await;
    lease_renewed(&server, "svc-0", &addr(1)).await;
    server.freeze();
    // Rounds and their retries now take the lock again and again (one
    // round in flight most of the time): time operations that wait for it.
    let mut slowest = Duration::ZERO;
    for weight in 1..=4u32 {
        let started = Instant::now();
        let updated = registrations[0]
            .update(instance(1).with_weight(weight))
            .await;
        let took = started.elapsed();
        eprintln!("update during a hung round: {updated:?} after {took:?}");
        slowest = slowest.max(took);
        let reg = registrations.pop().expect("a registration");
        let started = Instant::now();
        let removed = reg.deregister().await;
        let took = started.elapsed();
        eprintln!("deregister during a hung round: {removed:?} after {took:?}");
        slowest = slowest.max(took);
    }
    server.thaw();
    assert!(
        slowest <= timeout * 3,
        "an operation waited {slowest:?} (command timeout {timeout:?})"
    );
    registry.shutdown().await.unwrap();
    drop(registrations);
}
