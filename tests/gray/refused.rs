//! Outlier detection through the layer, over real HTTP servers and ports
//! that refuse connections: at most the configured share of instances is
//! ejected, and below the panic threshold ejections are ignored.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::support;
use redis_discovery::balance::WeightedRandom;
use redis_discovery::layer::{
    DiscoverExt, DiscoveryLayer, DiscoveryService, OutlierDetection, RetryBudget,
};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use support::http_server::{spawn_server, Recording, RefusingPort, TestServer};
use tower::{Layer, ServiceExt};

/// Three ports that refuse connections and one server that answers, as
/// service `orders`.
struct Fleet {
    refusing: Vec<RefusingPort>,
    _answering: TestServer,
    resolver: StaticResolver,
}

async fn fleet() -> Fleet {
    let refusing: Vec<RefusingPort> = (0..3).map(|_| RefusingPort::new()).collect();
    let mut instances: Vec<Instance> = refusing
        .iter()
        .map(|port| Instance::from_socket_addr(port.addr()).unwrap())
        .collect();
    let (addr, answering) = spawn_server().await;
    instances.push(Instance::from_socket_addr(addr).unwrap());
    let resolver = StaticResolver::new()
        .with_service("orders", instances)
        .unwrap();
    Fleet {
        refusing,
        _answering: answering,
        resolver,
    }
}

impl Fleet {
    fn refusing(&self) -> HashSet<String> {
        self.refusing.iter().map(|p| p.addr().to_string()).collect()
    }

    /// A client through the layer with `outlier`; ejections outlast the
    /// test, so that none ends on a slow machine.
    fn client(&self, outlier: OutlierDetection) -> (DiscoveryService<Recording>, Recording) {
        let long = Duration::from_secs(600);
        let layer = DiscoveryLayer::builder(self.resolver.clone())
            .balance(WeightedRandom::seeded(11))
            .retries(3)
            // These tests count attempts per request, not their share.
            .retry_budget(RetryBudget::unlimited())
            .outlier_detection(outlier.ejection_time(long, long))
            .build();
        let inner = Recording::new();
        (layer.layer(inner.clone()), inner)
    }
}

/// One GET, which must succeed (a retry reaches the answering server);
/// the attempts it made, in order.
async fn get(client: &DiscoveryService<Recording>, inner: &Recording) -> Vec<String> {
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let response = tokio::time::timeout(support::DEADLINE, client.clone().oneshot(request))
        .await
        .expect("the request ends");
    let sent = inner.take();
    assert!(response.is_ok(), "{response:?} after {sent:?}");
    sent
}

/// Sends requests until every refusing instance was tried once (so each
/// refused, and was ejected if the share allows).
async fn warm_up(fleet: &Fleet, client: &DiscoveryService<Recording>, inner: &Recording) {
    let mut refused = HashSet::new();
    for _ in 0..1000 {
        refused.extend(get(client, inner).await);
        if fleet.refusing().is_subset(&refused) {
            return;
        }
    }
    panic!("not every instance tried in 1000 requests: {refused:?}");
}

/// Three of four instances refusing, at most 50 % ejected: two are, the
/// third keeps its share of first attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_max_share_is_ejected() {
    let fleet = fleet().await;
    let (client, inner) = fleet.client(OutlierDetection::new());
    warm_up(&fleet, &client, &inner).await;
    let mut tried = HashSet::new();
    for _ in 0..200 {
        tried.extend(get(&client, &inner).await);
    }
    let refusing_tried = fleet.refusing().intersection(&tried).count();
    assert_eq!(refusing_tried, 1, "two ejected, one kept in: {tried:?}");
}

/// Three of four instances ejected (a share of 100 % allowed): below the
/// panic threshold (50 %), first attempts spread over all four rather than
/// all going to the last one; with no threshold they all do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_panic_threshold_traffic_spreads_over_all_instances() {
    let fleet = fleet().await;
    for (threshold, spread) in [(50, true), (0, false)] {
        let outlier = OutlierDetection::new()
            .max_ejected_percent(100)
            .panic_threshold_percent(threshold);
        let (client, inner) = fleet.client(outlier);
        warm_up(&fleet, &client, &inner).await;
        let mut first: HashMap<String, usize> = HashMap::new();
        for _ in 0..200 {
            let sent = get(&client, &inner).await;
            *first.entry(sent[0].clone()).or_default() += 1;
        }
        for refusing in fleet.refusing() {
            let share = first.get(&refusing).copied().unwrap_or(0);
            if spread {
                assert!(share >= 20, "threshold {threshold} %: {first:?}");
            } else {
                assert_eq!(share, 0, "threshold {threshold} %: {first:?}");
            }
        }
    }
}
