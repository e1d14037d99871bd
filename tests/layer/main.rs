//! The discovery layer over real HTTP servers registered in a real Redis,
//! with hyper-util's client and with reqwest.

#[path = "../support/mod.rs"]
mod support;

mod retries;
mod reuse;

use std::collections::HashMap;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryError, DiscoveryLayer, DiscoveryService};
use redis_discovery::{Instance, RedisRegistry, RedisResolver, Registration};
use support::http_server::{spawn_server, TestServer};
use support::RedisServer;
use tower::{Layer, Service, ServiceExt};

struct Fleet {
    _redis: RedisServer,
    _registrations: Vec<Registration>,
    servers: Vec<(SocketAddr, TestServer)>,
    resolver: RedisResolver,
}

/// `weights.len()` servers registered as `orders` with those weights.
async fn fleet(weights: &[u32]) -> Fleet {
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for &weight in weights {
        let (addr, task) = spawn_server().await;
        registrations.push(
            registry
                .register(
                    "orders",
                    Instance::from_socket_addr(addr)
                        .unwrap()
                        .with_weight(weight),
                )
                .await
                .unwrap(),
        );
        servers.push((addr, task));
    }
    let resolver = RedisResolver::connect(redis.url()).await.unwrap();
    Fleet {
        _redis: redis,
        _registrations: registrations,
        servers,
        resolver,
    }
}

type HyperClient = DiscoveryService<Client<HttpConnector, String>>;

fn hyper_client(layer: &DiscoveryLayer) -> HyperClient {
    layer.layer(Client::builder(TokioExecutor::new()).build_http())
}

/// GET through the layer; the body names the server that answered.
async fn get(
    client: &HyperClient,
    uri: &str,
    discover: bool,
) -> Result<String, redis_discovery::layer::BoxError> {
    let mut request = http::Request::get(uri).body(String::new()).unwrap();
    if discover {
        request = request.discover();
    }
    let response = client.clone().oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The instance that answered: the echo's first word.
fn answered_by(body: &str) -> String {
    body.split(' ').next().unwrap().to_owned()
}

/// Sends a reqwest-middleware request and reads the body.
#[cfg(feature = "reqwest-middleware")]
async fn text_of(request: reqwest_middleware::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}

fn shares(
    counts: &HashMap<String, usize>,
    total: usize,
    servers: &[(SocketAddr, TestServer)],
) -> Vec<f64> {
    servers
        .iter()
        .map(|(addr, _)| *counts.get(&addr.to_string()).unwrap_or(&0) as f64 / total as f64)
        .collect()
}

fn assert_shares(observed: &[f64], weights: &[u32]) {
    let sum: u32 = weights.iter().sum();
    for (o, &w) in observed.iter().zip(weights) {
        let expected = w as f64 / sum as f64;
        assert!(
            (o - expected).abs() < 0.05,
            "observed {observed:?} for weights {weights:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_requests_follow_the_weights() {
    let weights = [1, 3, 6];
    let fleet = fleet(&weights).await;
    let client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    let mut counts = HashMap::new();
    let total = 2000;
    for i in 0..total {
        let body = get(&client, &format!("http://orders/items?n={i}"), true)
            .await
            .unwrap();
        let mut parts = body.split(' ');
        let (server, host, uri) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        // Host is the logical name; path and query are kept.
        assert_eq!(host, "orders");
        assert_eq!(uri, format!("/items?n={i}"));
        *counts.entry(server.to_owned()).or_insert(0) += 1;
    }
    let observed = shares(&counts, total, &fleet.servers);
    eprintln!("hyper shares {observed:?} for weights {weights:?}");
    assert_shares(&observed, &weights);
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_requests_follow_the_weights() {
    let weights = [1, 3, 6];
    let fleet = fleet(&weights).await;
    let http = reqwest::Client::new();
    let client = DiscoveryLayer::new(fleet.resolver.clone()).layer(http.clone());
    let mut counts = HashMap::new();
    let total = 2000;
    for _ in 0..total {
        let request = http.get("http://orders/x").discover().build().unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        let body = response.text().await.unwrap();
        let mut parts = body.split(' ');
        let server = parts.next().unwrap().to_owned();
        assert_eq!(parts.next(), Some("orders"));
        *counts.entry(server).or_insert(0) += 1;
    }
    let observed = shares(&counts, total, &fleet.servers);
    eprintln!("reqwest shares {observed:?} for weights {weights:?}");
    assert_shares(&observed, &weights);
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_discovers_flagged_requests() {
    let weights = [1, 1];
    let fleet = fleet(&weights).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(DiscoveryLayer::new(fleet.resolver.clone()).middleware())
        .build();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let body = text_of(
            client
                .get("http://orders/mw")
                .with_extension(redis_discovery::layer::Discover),
        )
        .await;
        seen.insert(answered_by(&body));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Unflagged: where the URL says.
    let direct = fleet.servers[0].0;
    let body = text_of(client.get(format!("http://{direct}/"))).await;
    assert!(body.starts_with(&direct.to_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflagged_requests_go_where_their_uri_says() {
    let fleet = fleet(&[1, 1, 1]).await;
    let client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    for (addr, _) in &fleet.servers {
        let body = get(&client, &format!("http://{addr}/direct"), false)
            .await
            .unwrap();
        assert_eq!(body, format!("{addr} {addr} /direct"));
    }
    // The layer never resolved anything for them.
    assert_eq!(fleet.resolver.cached_services(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_service() {
    let fleet = fleet(&[0]).await; // one drained instance
    let client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    let err = get(&client, "http://orders/", true).await.unwrap_err();
    let err = err
        .downcast_ref::<DiscoveryError>()
        .expect("a DiscoveryError");
    assert!(
        matches!(err, DiscoveryError::NoInstance { service, .. } if service == "orders"),
        "{err}"
    );
    let err = get(&client, "http://nobody/", true).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no live instance of service nobody"),
        "{err}"
    );
    let err = get(&client, "/relative", true).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<DiscoveryError>(),
            Some(DiscoveryError::NoHost { .. })
        ),
        "{err}"
    );
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_honours_hash_keys() {
    use redis_discovery::balance::ConsistentHash;
    use redis_discovery::layer::{Discover, HashKey};

    let fleet = fleet(&[1, 1, 1, 1]).await;
    let layer = DiscoveryLayer::builder(fleet.resolver.clone())
        .balance(ConsistentHash::new())
        .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    for key in 0..20u64 {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let body = text_of(
                client
                    .get("http://orders/sticky")
                    .with_extension(Discover)
                    .with_extension(HashKey(key)),
            )
            .await;
            seen.insert(answered_by(&body));
        }
        assert_eq!(seen.len(), 1, "key {key} went to {seen:?}");
    }
}
