//! What the resolver and the registry record through the `metrics` facade
//! (feature `metrics`), read back from `metrics_util`'s debugging recorder,
//! against a real, private redis-server (tests/support).
//!
//! The recorder is global: every test installs it (once) before making a
//! resolver or a registry, uses service names of its own, and only the
//! outage test makes Redis fail (the `redis.errors` and
//! `subscription.reconnects` counters have no service label).

use std::time::Duration;

use crate::support::http_server::spawn_server;
use crate::support::recorder::{outage, recorder};
use crate::support::{eventually, registry, RedisServer};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::metrics::{
    CACHE_LOOKUPS, HEARTBEAT_FAILURES, OPERATION, REDIS_ERRORS, REGISTRATIONS, RESOLVE_DURATION,
    RESULT, SERVICE, SNAPSHOT_STALENESS, SUBSCRIPTION_RECONNECTS,
};
use redis_discovery::resolver::{RedisResolver, Resolve};
use redis_discovery::{Instance, ServiceName};
use tower::{Layer, ServiceExt};

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder().counter(name, labels)
}

fn histogram_count(name: &str, labels: &[(&str, &str)]) -> usize {
    recorder().histogram(name, labels).len()
}

/// (hits, misses) of a service in the resolver's cache.
pub(crate) fn lookups(service: &str) -> (u64, u64) {
    let hits = counter(CACHE_LOOKUPS, &[(SERVICE, service), (RESULT, "hit")]);
    let misses = counter(CACHE_LOOKUPS, &[(SERVICE, service), (RESULT, "miss")]);
    (hits, misses)
}

pub(crate) fn reads(service: &str) -> usize {
    histogram_count(RESOLVE_DURATION, &[(SERVICE, service)])
}

pub(crate) fn staleness(service: &str) -> Option<f64> {
    recorder().gauge_set(SNAPSHOT_STALENESS, &[(SERVICE, service)])
}

pub(crate) fn registrations(service: &str) -> f64 {
    recorder().gauge_moved(REGISTRATIONS, &[(SERVICE, service)])
}

pub(crate) fn redis_errors(operation: &str) -> u64 {
    counter(REDIS_ERRORS, &[(OPERATION, operation)])
}

pub(crate) fn heartbeat_failures(service: &str) -> u64 {
    counter(HEARTBEAT_FAILURES, &[(SERVICE, service)])
}

pub(crate) fn reconnects() -> u64 {
    counter(SUBSCRIPTION_RECONNECTS, &[])
}

fn name(s: &str) -> ServiceName {
    ServiceName::new(s).expect("valid name")
}

/// No periodic refresh during a test: reads come from callers, events and
/// the read that follows a new subscription.
async fn quiet_resolver(server: &RedisServer) -> RedisResolver {
    RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(600))
        .connect()
        .await
        .expect("resolver connects")
}

#[tokio::test]
async fn registrations_count_the_instances_kept_alive() {
    recorder();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let service = "mreg-orders";
    assert_eq!(registrations(service), 0.0, "nothing registered yet");
    let one = registry
        .register(service, Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let two = registry
        .register(service, Instance::new("10.0.0.2:80").unwrap())
        .await
        .unwrap();
    assert_eq!(registrations(service), 2.0);
    // The same address again takes the lease over: still two.
    let two_again = registry
        .register(
            service,
            Instance::new("10.0.0.2:80").unwrap().with_weight(5),
        )
        .await
        .unwrap();
    assert_eq!(registrations(service), 2.0);
    assert!(one.deregister().await.unwrap());
    assert_eq!(registrations(service), 1.0);
    // A detached handle ends nothing.
    assert!(!two.deregister().await.unwrap());
    assert_eq!(registrations(service), 1.0);
    // A dropped handle deregisters in the background.
    drop(two_again);
    eventually("the dropped registration to be counted out", || async {
        (registrations(service) == 0.0).then_some(())
    })
    .await;
    // By address, and at shutdown.
    let _three = registry
        .register(service, Instance::new("10.0.0.3:80").unwrap())
        .await
        .unwrap();
    let _four = registry
        .register(service, Instance::new("10.0.0.4:80").unwrap())
        .await
        .unwrap();
    assert_eq!(registrations(service), 2.0);
    assert!(registry.deregister(service, "10.0.0.3:80").await.unwrap());
    assert_eq!(registrations(service), 1.0);
    registry.shutdown().await.unwrap();
    assert_eq!(registrations(service), 0.0);
}

#[tokio::test]
async fn resolves_count_hits_misses_and_reads() {
    recorder();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let service = "mcache-orders";
    let _registered = registry
        .register(service, Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let resolver = quiet_resolver(&server).await;

    // Not cached: `cached` answers nothing and counts nothing.
    assert!(resolver.cached(service).is_none());
    assert_eq!(lookups(service), (0, 0));
    // The first resolve waits for a read: a miss.
    let first = resolver.resolve(&name(service)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(lookups(service), (0, 1));
    // Then answered from the cache: hits, by `resolve` and `cached` alike.
    for _ in 0..3 {
        resolver.resolve(&name(service)).await.unwrap();
    }
    assert!(resolver.cached(service).is_some());
    assert!(resolver.cached("MCACHE-Orders").is_some(), "any case");
    assert_eq!(lookups(service), (5, 1));
    // Two reads: the miss's, and one more once the service is subscribed
    // (catching a change made before the subscription).
    eventually("the read after the subscription", || async {
        (reads(service) == 2).then_some(())
    })
    .await;
    // The age of the list Redis confirmed last: a read ago.
    let age = staleness(service).expect("staleness set by the reads");
    assert!((0.0..5.0).contains(&age), "staleness {age}");

    // A service nobody registered: a miss, then negative-cached hits.
    let nobody = "mcache-nobody";
    assert!(resolver.resolve(&name(nobody)).await.unwrap().is_empty());
    assert!(resolver.resolve(&name(nobody)).await.unwrap().is_empty());
    assert_eq!(lookups(nobody), (1, 1));
    assert_eq!(reads(nobody), 1, "not subscribed: one read");
    // The other service is unaffected.
    assert_eq!(lookups(service), (5, 1));
}

/// Requests through the discovery layer: the first waits for Redis (a
/// miss); every later one is a hit, whether the layer asked the cache or
/// reused its picker without a lookup (`Snapshot::mark_used`), never both.
#[tokio::test]
async fn layer_requests_count_one_lookup_each() {
    recorder();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let service = "mlayer-orders";
    let (addr, _http) = spawn_server().await;
    let _registered = registry
        .register(service, Instance::from_socket_addr(addr).unwrap())
        .await
        .unwrap();
    let resolver = quiet_resolver(&server).await;
    let client = DiscoveryLayer::new(resolver.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http());
    let requests = 20;
    for _ in 0..requests {
        let request = http::Request::get(format!("http://{service}/x"))
            .body(String::new())
            .unwrap()
            .discover();
        let response = client.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(lookups(service), (requests - 1, 1));
}

#[tokio::test]
async fn an_outage_counts_errors_staleness_heartbeat_failures_and_one_reconnect() {
    recorder();
    let _alone = outage().await;
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let service = "mout-orders";
    let _one = registry
        .register(service, Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let _two = registry
        .register(service, Instance::new("10.0.0.2:80").unwrap())
        .await
        .unwrap();
    // Refreshed every 200 ms: each refresh is a read attempt, which sets
    // the staleness.
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(200))
        .connect()
        .await
        .expect("resolver connects");
    assert_eq!(resolver.resolve(&name(service)).await.unwrap().len(), 2);
    eventually("a refresh after the first read", || async {
        (reads(service) >= 3).then_some(())
    })
    .await;
    let reconnected = reconnects();
    assert_eq!(heartbeat_failures(service), 0);
    let (read_errors, subscribe_errors, heartbeat_errors) = (
        redis_errors("read"),
        redis_errors("subscribe"),
        redis_errors("heartbeat"),
    );

    server.stop();
    eventually("failed reads to be counted", || async {
        (redis_errors("read") > read_errors).then_some(())
    })
    .await;
    eventually("the lost event connection to be counted", || async {
        (redis_errors("subscribe") > subscribe_errors).then_some(())
    })
    .await;
    // Growing while Redis is down, with every failed refresh.
    let down = eventually("the staleness to pass 1 s", || async {
        staleness(service).filter(|&age| age > 1.0)
    })
    .await;
    eventually("the staleness to grow", || async {
        staleness(service).filter(|&age| age > down + 0.5)
    })
    .await;
    // Heartbeats fail: one failed call renews both instances of the
    // service, so two failed renewals per Redis error.
    let failed_calls = eventually("failed heartbeats", || async {
        let calls = redis_errors("heartbeat") - heartbeat_errors;
        (calls >= 2).then_some(calls)
    })
    .await;
    assert!(failed_calls >= 2);
    // Read between two heartbeats: a call failing while the counters are
    // read counts its error before its failures.
    eventually("two heartbeat failures per failed call", || async {
        let calls = redis_errors("heartbeat") - heartbeat_errors;
        let failures = heartbeat_failures(service);
        let settled = redis_errors("heartbeat") - heartbeat_errors == calls;
        (settled && failures == 2 * calls).then_some(())
    })
    .await;
    assert_eq!(reconnects(), reconnected, "not back yet");
    // The cached list is still served, and hits still count.
    let (hits, misses) = lookups(service);
    assert_eq!(resolver.cached(service).map(|s| s.len()), Some(2));
    assert_eq!(lookups(service), (hits + 1, misses));

    server.restart();
    eventually("the event connection to be re-established", || async {
        (reconnects() == reconnected + 1).then_some(())
    })
    .await;
    // Confirmed by Redis again: the next read sets a small age.
    eventually("the staleness to drop after a good read", || async {
        staleness(service).filter(|&age| age < 1.0)
    })
    .await;
    assert_eq!(reconnects(), reconnected + 1, "one reconnect per loss");
    assert_eq!(registrations(service), 2.0, "still registered");
}
