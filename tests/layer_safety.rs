//! The layer's retries and options under faults, over real HTTP servers:
//! a retry never goes back to an instance the request already tried, no
//! option value makes a request panic or retry without end, and a port in
//! a discovered URI is refused with an error that names it.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use http_body_util::BodyExt;
use redis_discovery::balance::{ConsistentHash, LeastLoaded, RoundRobin};
use redis_discovery::layer::{
    BoxError, DiscoverExt, DiscoveryError, DiscoveryLayer, DiscoveryService, HashKey,
    OutlierDetection, RetryBudget,
};
use redis_discovery::resolver::{Resolve, StaticResolver};
use redis_discovery::{Instance, RedisRegistry, RedisResolver, Registration};
use support::http_server::{spawn_server, Recording, RefusingPort, TestServer};
use support::RedisServer;
use tower::{Layer, ServiceExt};

/// `refusing` instances that refuse every connection and `answering` ones
/// that answer, all of service `orders`: in a fixed map, and registered in
/// a private Redis.
struct Fleet {
    refusing: Vec<RefusingPort>,
    _answering: Vec<TestServer>,
    fixed: StaticResolver,
    redis: RedisServer,
    _registrations: Vec<Registration>,
    registered: RedisResolver,
}

async fn fleet(refusing: usize, answering: usize) -> Fleet {
    let refusing: Vec<RefusingPort> = (0..refusing).map(|_| RefusingPort::new()).collect();
    let mut instances: Vec<Instance> = refusing
        .iter()
        .map(|port| Instance::from_socket_addr(port.addr()).unwrap())
        .collect();
    let mut servers = Vec::new();
    for _ in 0..answering {
        let (addr, server) = spawn_server().await;
        instances.push(Instance::from_socket_addr(addr).unwrap());
        servers.push(server);
    }
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    let mut registrations = Vec::new();
    for instance in &instances {
        registrations.push(registry.register("orders", instance.clone()).await.unwrap());
    }
    Fleet {
        refusing,
        _answering: servers,
        fixed: StaticResolver::new()
            .with_service("orders", instances)
            .unwrap(),
        registered: RedisResolver::connect(redis.url()).await.unwrap(),
        redis,
        _registrations: registrations,
    }
}

/// No ejection: every retry decision is the pick's own.
const NO_EJECTION: OutlierDetection = OutlierDetection::disabled();

/// One GET through `client`, bounded by the test deadline; the body.
async fn get(
    client: &DiscoveryService<Recording>,
    uri: &str,
    key: u64,
) -> Result<String, BoxError> {
    let request = http::Request::get(uri)
        .extension(HashKey(key))
        .discover()
        .body(String::new())
        .unwrap();
    let response = tokio::time::timeout(support::DEADLINE, client.clone().oneshot(request))
        .await
        .expect("the request ends")?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The layers under test: over a fixed map and over Redis, every balancer,
/// with and without ejection.
fn layers(fleet: &Fleet, retries: u32) -> Vec<(String, DiscoveryLayer)> {
    let mut layers = Vec::new();
    layers_over(&fleet.fixed, "fixed", retries, &mut layers);
    layers_over(&fleet.registered, "redis", retries, &mut layers);
    layers
}

fn layers_over<R: Resolve + Clone>(
    resolver: &R,
    resolver_name: &str,
    retries: u32,
    layers: &mut Vec<(String, DiscoveryLayer)>,
) {
    for (ejection, name) in [
        (NO_EJECTION, "no ejection"),
        (OutlierDetection::new(), "ejection"),
    ] {
        let name = format!("{resolver_name}, {name}");
        let builder = || {
            // Unlimited: these tests count retries per request, not
            // their share (tests/layer_budget.rs does).
            DiscoveryLayer::builder(resolver.clone())
                .retries(retries)
                .retry_budget(RetryBudget::unlimited())
                .outlier_detection(ejection)
        };
        layers.push((format!("weighted random, {name}"), builder().build()));
        let round_robin = builder().balance(RoundRobin::new()).build();
        layers.push((format!("round robin, {name}"), round_robin));
        let hash = builder().balance(ConsistentHash::new()).build();
        layers.push((format!("consistent hash, {name}"), hash));
        let least_loaded = builder().balance(LeastLoaded::new()).build();
        layers.push((format!("least loaded, {name}"), least_loaded));
    }
}

fn assert_distinct(sent: &[String], what: &str) {
    let distinct: HashSet<&String> = sent.iter().collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "{what}: an instance tried twice: {sent:?}"
    );
}

/// Within one request every retry goes to an instance not tried yet: with
/// four refusing instances and one answering, four retries always reach the
/// answering one, whatever the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_goes_back_to_a_tried_instance() {
    let fleet = fleet(4, 1).await;
    for (what, layer) in layers(&fleet, 4) {
        let inner = Recording::new();
        let client = layer.layer(inner.clone());
        for key in 0..40 {
            let result = get(&client, "http://orders/", key).await;
            let sent = inner.take();
            assert_distinct(&sent, &what);
            assert!(result.is_ok(), "{what}: {result:?} after {sent:?}");
        }
    }
}

/// Retries end once every instance was tried, whatever the retry count:
/// `retries(u32::MAX)` over three refusing instances makes three attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_when_every_instance_was_tried() {
    let fleet = fleet(3, 0).await;
    for (what, layer) in layers(&fleet, u32::MAX) {
        let inner = Recording::new();
        let client = layer.layer(inner.clone());
        for key in 0..5 {
            let result = get(&client, "http://orders/", key).await;
            let sent = inner.take();
            assert_distinct(&sent, &what);
            assert!(result.is_err(), "{what}: every instance refuses");
            assert_eq!(sent.len(), 3, "{what}: one attempt per instance: {sent:?}");
        }
    }
}

/// Ejection periods up to `Duration::MAX` are accepted (clamped) and a
/// refused connection ejects without a panic; the instance stays ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ejection_periods_do_not_panic() {
    let fleet = fleet(1, 2).await;
    let refusing = fleet.refusing[0].addr().to_string();
    for base in [Duration::from_secs(10), Duration::MAX] {
        let layer = DiscoveryLayer::builder(fleet.registered.clone())
            .balance(RoundRobin::new())
            .outlier_detection(OutlierDetection::new().ejection_time(base, Duration::MAX))
            .build();
        let inner = Recording::new();
        let client = layer.layer(inner.clone());
        let mut tried_refusing = 0;
        for key in 0..12 {
            let body = get(&client, "http://orders/", key).await;
            assert!(body.is_ok(), "base {base:?}: {body:?}");
            tried_refusing += inner.take().iter().filter(|s| **s == refusing).count();
        }
        assert_eq!(
            tried_refusing, 1,
            "base {base:?}: ejected after one refusal"
        );
    }
}

/// A port in a discovered URI is refused with an error naming it (the
/// instance's own port is where the request goes); the scheme's default
/// port is the same as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_the_uri_is_refused() {
    let fleet = fleet(0, 1).await;
    let inner = Recording::new();
    let client = DiscoveryLayer::new(fleet.registered.clone()).layer(inner.clone());
    for (uri, port) in [
        ("http://orders:8443/x", "8443"),
        ("http://orders:443/x", "443"),
        ("http://orders:99999/x", "99999"),
    ] {
        let err = get(&client, uri, 0).await.unwrap_err();
        match err.downcast_ref::<DiscoveryError>() {
            Some(DiscoveryError::PortInUri {
                service,
                port: named,
            }) => {
                assert_eq!((service.as_str(), named.as_str()), ("orders", port));
            }
            _ => panic!("{uri}: {err}"),
        }
        assert!(err.to_string().contains(port), "{err}");
        assert_eq!(inner.take(), Vec::<String>::new(), "{uri}: nothing sent");
    }
    for uri in ["http://orders:80/x", "http://orders:/x"] {
        let body = get(&client, uri, 0).await.unwrap();
        assert!(body.ends_with(" orders /x"), "{uri}: {body}");
    }
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_a_reqwest_url_is_refused() {
    let fleet = fleet(0, 1).await;
    let http = reqwest::Client::new();
    let client = DiscoveryLayer::new(fleet.registered.clone()).layer(http.clone());
    let request = http.get("http://orders:8443/x").discover().build().unwrap();
    let err = client.clone().oneshot(request).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<DiscoveryError>(), Some(DiscoveryError::PortInUri { port, .. }) if port == "8443"),
        "{err}"
    );
    let request = http.get("http://orders:80/x").discover().build().unwrap();
    let body = client.oneshot(request).await.unwrap().text().await.unwrap();
    assert!(body.ends_with(" orders /x"), "{body}");
}

/// The reqwest middleware shares the retry rules: four refusing
/// instances and one answering, every request answered; three refusing,
/// `retries(u32::MAX)` ends.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_retries_each_instance_once() {
    for (refusing, answering) in [(4, 1), (3, 0)] {
        let fleet = fleet(refusing, answering).await;
        let layer = DiscoveryLayer::builder(fleet.registered.clone())
            .retries(u32::MAX)
            .outlier_detection(NO_EJECTION)
            .build();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(layer.middleware())
            .build();
        for _ in 0..20 {
            let request = client
                .get("http://orders/")
                .with_extension(redis_discovery::layer::Discover)
                .send();
            let response = tokio::time::timeout(support::DEADLINE, request)
                .await
                .expect("the request ends");
            assert_eq!(response.is_ok(), answering > 0, "{response:?}");
        }
    }
}

/// Request input cannot grow the resolver (issue 11, item 7, through the
/// layer): with `discover_all`, 3000 requests to 3000 distinct hosts nobody
/// registered subscribe no channel and leave at most the cache cap, while
/// the real service keeps being routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_from_requests_leave_no_subscription_and_a_capped_cache() {
    let fleet = fleet(0, 1).await;
    let max_services = 500;
    let resolver = RedisResolver::builder(fleet.redis.url())
        .max_services(max_services)
        .connect()
        .await
        .unwrap();
    let client = DiscoveryLayer::builder(resolver.clone())
        .discover_all(true)
        .build()
        .layer(Recording::new());
    get(&client, "http://orders/", 0).await.unwrap();

    for batch in 0..30 {
        let requests = (0..100).map(|i| {
            let uri = format!("http://unknown-{}/", batch * 100 + i);
            let client = client.clone();
            async move {
                let request = http::Request::get(uri).body(String::new()).unwrap();
                tokio::time::timeout(support::DEADLINE, client.oneshot(request))
                    .await
                    .expect("the request ends")
            }
        });
        for result in futures_util::future::join_all(requests).await {
            let error = result.expect_err("no instance of an unknown host");
            assert!(
                matches!(
                    error.downcast_ref::<DiscoveryError>(),
                    Some(DiscoveryError::NoInstance { .. })
                ),
                "{error}"
            );
        }
        let cached = resolver.cached_services();
        assert!(cached <= max_services, "{cached} cached services");
    }
    let channels: Vec<String> = fleet.redis.cmd(&["PUBSUB", "CHANNELS"]);
    assert!(channels.len() < 100, "{} channels", channels.len());
    assert_eq!(channels, ["sd:{orders}:events"], "only the real service");
    get(&client, "http://orders/", 0).await.unwrap();
}
