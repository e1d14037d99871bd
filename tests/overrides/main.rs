//! The operator's overrides against a real Redis and real HTTP servers:
//! weights and drains change what the layer sends, disabled instances are
//! hidden, overrides outlive re-registrations and expire with the
//! service's keys, a read-only user sees them, the Hertz schema refuses.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod events;
mod stored;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryError, DiscoveryLayer, DiscoveryService};
use redis_discovery::{
    Instance, KeySchema, Override, RedisRegistry, RedisResolver, RegistryError, Resolve,
    ValidationError,
};
use support::http_server::{spawn_server, TestServer};
use support::{eventually, registry, RedisServer};
use tower::{Layer, ServiceExt};

type HyperClient = DiscoveryService<Client<HttpConnector, String>>;

fn client(resolver: &RedisResolver) -> HyperClient {
    DiscoveryLayer::new(resolver.clone()).layer(Client::builder(TokioExecutor::new()).build_http())
}

/// GET `http://orders/` through the layer: the address that answered.
async fn get(client: &HyperClient) -> Result<String, redis_discovery::layer::BoxError> {
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let response = client.clone().oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    Ok(body.split(' ').next().unwrap_or_default().to_owned())
}

/// Hits per answering address over `n` requests.
async fn hits(client: &HyperClient, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(get(client).await.unwrap()).or_default() += 1;
    }
    counts
}

/// The weight the resolver's cache serves for `addr`; `None` if it does
/// not list it.
fn cached_weight(resolver: &RedisResolver, addr: &str) -> Option<u32> {
    let snapshot = resolver.cached("orders")?;
    let weight = snapshot
        .instances()
        .iter()
        .find(|i| i.addr() == addr)
        .map(Instance::weight);
    weight
}

/// Two HTTP servers registered as `orders`, weight 10 each.
async fn two_servers(
    registry: &RedisRegistry,
) -> (
    Vec<(SocketAddr, TestServer)>,
    Vec<redis_discovery::Registration>,
) {
    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for _ in 0..2 {
        let (addr, server) = spawn_server().await;
        let instance = Instance::from_socket_addr(addr).unwrap();
        registrations.push(registry.register("orders", instance).await.unwrap());
        servers.push((addr, server));
    }
    (servers, registrations)
}

/// A resolver that reads again only on events (no periodic refresh
/// within a test).
async fn resolver(url: &str) -> RedisResolver {
    RedisResolver::builder(url)
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_override_changes_the_shares_and_undrain_restores_them() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap(); // cached and subscribed

    assert!(registry
        .set_override("orders", &a, Override::Weight(30))
        .await
        .unwrap());
    eventually("the new weight to reach the resolver", || async {
        (cached_weight(&resolver, &a) == Some(30)).then_some(())
    })
    .await;
    let n = 2000;
    let counts = hits(&client, n).await;
    let share = *counts.get(&a).unwrap_or(&0) as f64 / n as f64;
    // 0.75 expected; 5 binomial standard deviations.
    let sd = (0.75 * 0.25 / n as f64).sqrt();
    assert!((share - 0.75).abs() < 5.0 * sd, "{counts:?}");
    // `list` serves the override and tells the registered weight.
    let listed = resolver.list("orders").await.unwrap();
    let row = listed.iter().find(|l| l.instance.addr() == a).unwrap();
    assert_eq!(
        (row.instance.weight(), row.registered_weight),
        (30, Some(10))
    );

    assert!(registry.clear_override("orders", &a).await.unwrap());
    assert!(
        !registry.clear_override("orders", &a).await.unwrap(),
        "gone"
    );
    eventually("the registered weight to come back", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    let counts = hits(&client, n).await;
    let share = *counts.get(&a).unwrap_or(&0) as f64 / n as f64;
    let sd = (0.5 * 0.5 / n as f64).sqrt();
    assert!((share - 0.5).abs() < 5.0 * sd, "{counts:?}");
    assert!(counts.contains_key(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_gets_nothing_and_all_drained_is_no_instance() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap();

    registry
        .set_override("orders", &a, Override::drain())
        .await
        .unwrap();
    eventually("the drain to reach the resolver", || async {
        (cached_weight(&resolver, &a) == Some(0)).then_some(())
    })
    .await;
    let counts = hits(&client, 200).await;
    assert_eq!(counts.get(&b), Some(&200), "{counts:?}");

    registry
        .set_override("orders", &b, Override::drain())
        .await
        .unwrap();
    eventually("both drained", || async {
        (cached_weight(&resolver, &b) == Some(0)).then_some(())
    })
    .await;
    let error = get(&client).await.unwrap_err();
    let error = error
        .downcast_ref::<DiscoveryError>()
        .expect("a DiscoveryError");
    assert!(
        matches!(error, DiscoveryError::NoInstance { .. }),
        "{error}"
    );
    // Listed all the same: drained is not gone.
    assert_eq!(resolver.list("orders").await.unwrap().len(), 2);

    registry.clear_override("orders", &a).await.unwrap();
    eventually("a undrained", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    assert_eq!(get(&client).await.unwrap(), a);
}

/// Disabled: absent from resolve, fetch, list and the layer, while its
/// owner's heartbeats renew it; back on undrain. Leases of a minute,
/// longer than the deadline: the cache must hide it at once, not keep it
/// as an instance a read missed until its known lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_instance_is_hidden_while_heartbeated_and_back_after() {
    let redis = RedisServer::start();
    let registry = RedisRegistry::builder(redis.url())
        .lease_ttl(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap();

    registry
        .set_override("orders", &a, Override::Disabled)
        .await
        .unwrap();
    eventually("a hidden from the cache", || async {
        (cached_weight(&resolver, &a).is_none()).then_some(())
    })
    .await;
    // Three heartbeats (500 ms each) later, still hidden everywhere.
    for _ in 0..3 {
        support::lease_renewed(&redis, "orders", &a).await;
    }
    assert_eq!(cached_weight(&resolver, &a), None);
    let fetched = resolver.fetch("orders").await.unwrap();
    assert_eq!(fetched.len(), 1);
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance.addr(), b);
    let counts = hits(&client, 100).await;
    assert_eq!(counts.get(&b), Some(&100), "{counts:?}");
    assert_eq!(
        registry.overrides("orders").await.unwrap(),
        [(a.clone(), Override::Disabled)]
    );

    assert!(registry.clear_override("orders", &a).await.unwrap());
    eventually("a back in the cache", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    eventually("a gets traffic again", || async {
        (get(&client).await.ok()? == a).then_some(())
    })
    .await;
}
