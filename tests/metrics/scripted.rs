//! The whole story in one run, through one layer over a `RedisResolver`:
//! hits, a refused instance (its attempt, the retry it causes, its
//! ejection), then a Redis outage (errors, staleness, failed heartbeats,
//! requests still served from the cache) and its end (one reconnect).
//! Each step's counts are exact, except the Redis errors, whose number
//! depends on how many reconnects and refreshes the outage lasts: those
//! are checked to grow, and heartbeat failures against them.

use std::time::Duration;

use redis_discovery::balance::RoundRobin;
use redis_discovery::layer::{DiscoveryLayer, OutlierDetection, RetryBudget};
use redis_discovery::{Instance, RedisResolver};

use super::layer::{attempts, client, ejections, get, retries};
use super::resolver::{
    heartbeat_failures, lookups, reconnects, redis_errors, registrations, staleness,
};
use crate::support::faults::{Fault, FaultServer};
use crate::support::http_server::RefusingPort;
use crate::support::recorder::{outage, recorder};
use crate::support::{eventually, registry, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_sequence_records_exactly_what_happened() {
    let recorded = recorder();
    let _alone = outage().await;
    let service = "scripted-orders";
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let healthy = FaultServer::start(Fault::Healthy).await.unwrap();
    let refusing = RefusingPort::new();
    let mut registrations_held = Vec::new();
    for addr in [healthy.addr(), refusing.addr()] {
        let instance = Instance::from_socket_addr(addr).unwrap();
        registrations_held.push(registry.register(service, instance).await.unwrap());
    }
    assert_eq!(registrations(service), 2.0);

    // Refreshed often, so the outage is seen by reads too.
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    // Ejected for the whole test: the refused instance is tried once.
    let long = Duration::from_secs(3600);
    let layer = DiscoveryLayer::builder(resolver.clone())
        .balance(RoundRobin::new())
        .retry_budget(RetryBudget::unlimited())
        .outlier_detection(OutlierDetection::new().ejection_time(long, long))
        .build();
    let client = client(&layer);

    // 1. Ten requests: one of the first two goes to the refusing instance,
    // is refused, retried on the healthy one, and ejects it.
    for _ in 0..10 {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
    }
    assert_eq!(attempts(recorded, service, healthy.addr(), None).len(), 10);
    let refused = attempts(recorded, service, refusing.addr(), Some("refused"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(retries(recorded, service, "refused"), 1);
    assert_eq!(ejections(recorded, service, refusing.addr()), (1, 0));
    assert_eq!(ejections(recorded, service, healthy.addr()), (0, 0));
    // The first request waited for Redis; every other pick, the retry's
    // included, was answered from the cache.
    assert_eq!(lookups(service), (10, 1));

    // 2. Redis goes away.
    let before = (
        redis_errors("read"),
        redis_errors("subscribe"),
        redis_errors("heartbeat"),
        heartbeat_failures(service),
    );
    let reconnected = reconnects();
    server.stop();
    eventually("failed reads", || async {
        (redis_errors("read") > before.0).then_some(())
    })
    .await;
    eventually("the lost event connection", || async {
        (redis_errors("subscribe") > before.1).then_some(())
    })
    .await;
    eventually("failed heartbeats", || async {
        (redis_errors("heartbeat") > before.2).then_some(())
    })
    .await;
    eventually("the cached list to age past 1 s", || async {
        staleness(service).filter(|&age| age > 1.0)
    })
    .await;
    // One failed heartbeat call renews both instances: two failures each
    // (read between two heartbeats: a call failing while the counters are
    // read would count its error before its failures).
    eventually("two heartbeat failures per failed call", || async {
        let calls = redis_errors("heartbeat") - before.2;
        let failures = heartbeat_failures(service) - before.3;
        let settled = redis_errors("heartbeat") - before.2 == calls;
        (settled && failures == 2 * calls).then_some(())
    })
    .await;
    // Requests are still answered from the cached list: five more hits.
    let (hits, misses) = lookups(service);
    for _ in 0..5 {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
    }
    assert_eq!(lookups(service), (hits + 5, misses));
    assert_eq!(attempts(recorded, service, healthy.addr(), None).len(), 15);
    assert_eq!(
        attempts(recorded, service, refusing.addr(), Some("refused")).len(),
        1
    );
    assert_eq!(reconnects(), reconnected, "not back yet");
    assert_eq!(registrations(service), 2.0, "still held by this process");

    // 3. Redis is back: one reconnect, and a fresh list.
    server.restart();
    eventually("the event connection to be re-established", || async {
        (reconnects() == reconnected + 1).then_some(())
    })
    .await;
    eventually("a good read to reset the age", || async {
        staleness(service).filter(|&age| age < 1.0)
    })
    .await;
    assert_eq!(reconnects(), reconnected + 1, "one reconnect per loss");
    assert_eq!(retries(recorded, service, "refused"), 1);
    assert_eq!(ejections(recorded, service, refusing.addr()), (1, 0));

    drop(registrations_held);
    eventually("the registrations to end", || async {
        (registrations(service) == 0.0).then_some(())
    })
    .await;
}
