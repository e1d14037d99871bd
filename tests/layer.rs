//! The discovery layer over real HTTP servers registered in a real Redis,
//! with hyper-util's client and with reqwest.

mod support;

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

/// A killed instance costs no failed GET: the refused connection is
/// retried on another instance, and the instance is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_causes_no_failed_request() {
    let mut fleet = fleet(&[1, 1, 1]).await;
    let client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    for _ in 0..30 {
        get(&client, "http://orders/", true).await.unwrap();
    }
    let (dead, server) = &mut fleet.servers[0];
    server.crash().await;
    let dead = *dead;
    let mut counts = HashMap::new();
    for _ in 0..300 {
        let body = get(&client, "http://orders/", true)
            .await
            .expect("no request fails");
        *counts.entry(answered_by(&body)).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&dead.to_string()), None, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
}

/// Without retries, a killed instance fails the request that finds it dead
/// and is then ejected: later requests avoid it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_instance_is_ejected() {
    let mut fleet = fleet(&[1, 1, 1]).await;
    let layer = DiscoveryLayer::builder(fleet.resolver.clone())
        .retries(0)
        .build();
    let client = hyper_client(&layer);
    get(&client, "http://orders/", true).await.unwrap();
    fleet.servers[0].1.crash().await;
    let mut failures = 0;
    for _ in 0..300 {
        if get(&client, "http://orders/", true).await.is_err() {
            failures += 1;
        }
    }
    // Without ejection about a third would fail; with it, the first only
    // (a pooled connection may add one more).
    assert!((1..=2).contains(&failures), "{failures} failed requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_share_one_resolve() {
    let fleet = fleet(&[1]).await;
    let client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    // Load the read script first, so a NOSCRIPT retry does not count twice.
    fleet.resolver.fetch("warm.up").await.unwrap();
    let before = fleet._redis.calls("evalsha_ro") + fleet._redis.calls("eval_ro");
    let requests = (0..50).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { get(&client, "http://orders/", true).await.map(drop) })
    });
    for r in futures_util::future::join_all(requests).await {
        r.unwrap().unwrap();
    }
    // One read for the 50 requests. Found with instances, the service is
    // then subscribed and read once more after the confirmation.
    let reads = || fleet._redis.calls("evalsha_ro") + fleet._redis.calls("eval_ro") - before;
    support::eventually("the read after the subscription", || async {
        (reads() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        reads(),
        2,
        "one read for 50 requests, one after subscribing"
    );
}

/// A resolver with no cache (`cached` is optional in `Resolve`): every
/// request resolves, and retries pick from the snapshot of the first try.
#[derive(Clone)]
struct Uncached(RedisResolver);

impl redis_discovery::Resolve for Uncached {
    fn resolve(
        &self,
        service: &redis_discovery::ServiceName,
    ) -> impl std::future::Future<
        Output = Result<redis_discovery::Snapshot, redis_discovery::ResolveError>,
    > + Send {
        redis_discovery::Resolve::resolve(&self.0, service)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_work_without_a_resolver_cache() {
    let mut fleet = fleet(&[1, 1, 1]).await;
    let client = hyper_client(&DiscoveryLayer::new(Uncached(fleet.resolver.clone())));
    fleet.servers[0].1.crash().await;
    for _ in 0..100 {
        get(&client, "http://orders/", true)
            .await
            .expect("no request fails");
    }
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

/// A loopback port that accepts connections and closes them at once (a
/// server dying under its clients); counts the connections.
async fn hang_up_server() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

/// A retry goes to another instance: with one instance there is none, so
/// a GET whose connection is lost fails after one attempt, through the
/// layer and through the middleware alike (no copy is kept for it either).
#[tokio::test]
async fn a_lone_instance_is_not_retried() {
    use std::sync::atomic::Ordering;
    let (addr, accepted) = hang_up_server().await;
    let resolver = redis_discovery::resolver::StaticResolver::new()
        .with_service("orders", [Instance::new(addr.to_string()).unwrap()])
        .unwrap();
    let layer = DiscoveryLayer::new(resolver);
    let client = hyper_client(&layer);
    get(&client, "http://orders/", true)
        .await
        .expect_err("the connection is lost");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    #[cfg(feature = "reqwest-middleware")]
    {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(layer.middleware())
            .build();
        let result = client
            .get("http://orders/")
            .with_extension(redis_discovery::layer::Discover)
            .send()
            .await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}

/// The middleware retries like the layer: a killed instance costs no
/// failed GET.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_retries_on_another_instance() {
    let mut fleet = fleet(&[1, 1, 1]).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(DiscoveryLayer::new(fleet.resolver.clone()).middleware())
        .build();
    let request = || {
        client
            .get("http://orders/")
            .with_extension(redis_discovery::layer::Discover)
    };
    for _ in 0..30 {
        text_of(request()).await;
    }
    let (dead, server) = &mut fleet.servers[0];
    server.crash().await;
    let dead = *dead;
    let mut counts = HashMap::new();
    for _ in 0..300 {
        *counts
            .entry(answered_by(&text_of(request()).await))
            .or_insert(0) += 1;
    }
    assert_eq!(counts.get(&dead.to_string()), None, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
}

/// One service value used for every request (no clone per request: it
/// reuses the snapshot it routed by, without a resolver lookup) still
/// follows the registry: a deregistered instance stops getting requests,
/// a registered one starts, and after the resolver shuts down requests
/// fail instead of going to the last known instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_service_follows_the_registry() {
    let mut fleet = fleet(&[1, 1]).await;
    let mut client = hyper_client(&DiscoveryLayer::new(fleet.resolver.clone()));
    let (leaving, _) = fleet.servers[1];
    let leaving = leaving.to_string();
    // Who answers 40 requests sent through `client` itself.
    async fn answers(client: &mut HyperClient) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..40 {
            let request = http::Request::get("http://orders/")
                .body(String::new())
                .unwrap()
                .discover();
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            *counts
                .entry(answered_by(&String::from_utf8_lossy(&body)))
                .or_insert(0) += 1;
        }
        counts
    }
    assert_eq!(answers(&mut client).await.len(), 2);

    let registration = fleet._registrations.remove(1);
    assert!(registration.deregister().await.unwrap());
    let deadline = std::time::Instant::now() + support::DEADLINE;
    while answers(&mut client).await.contains_key(&leaving) {
        assert!(
            std::time::Instant::now() < deadline,
            "still routed to {leaving}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let registry = RedisRegistry::connect(fleet._redis.url()).await.unwrap();
    let addr: SocketAddr = leaving.parse().unwrap();
    let _back = registry
        .register("orders", Instance::from_socket_addr(addr).unwrap())
        .await
        .unwrap();
    while !answers(&mut client).await.contains_key(&leaving) {
        assert!(
            std::time::Instant::now() < deadline,
            "not routed to {leaving}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    fleet.resolver.shutdown().await;
    let request = http::Request::get("http://orders/")
        .body(String::new())
        .unwrap()
        .discover();
    let result = client.ready().await.unwrap().call(request).await;
    assert!(result.is_err(), "routed after shutdown");
}

/// A resolver around a `RedisResolver` that counts the calls to it, and
/// returns the inner resolver's snapshots (which the layer may reuse while
/// they are current) or copies of its own (which it may not).
#[derive(Clone)]
struct Counting {
    inner: RedisResolver,
    reuse: bool,
    cached: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    resolved: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn new(inner: RedisResolver, reuse: bool) -> Self {
        Counting {
            inner,
            reuse,
            cached: Default::default(),
            resolved: Default::default(),
        }
    }

    fn calls(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.cached.load(SeqCst), self.resolved.load(SeqCst))
    }
}

impl redis_discovery::resolver::Resolve for Counting {
    fn resolve(
        &self,
        service: &redis_discovery::ServiceName,
    ) -> impl std::future::Future<
        Output = Result<redis_discovery::resolver::Snapshot, redis_discovery::ResolveError>,
    > + Send {
        self.resolved
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.resolve(service)
    }

    fn cached(&self, service: &str) -> Option<redis_discovery::resolver::Snapshot> {
        self.cached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let snapshot = self.inner.cached(service)?;
        if self.reuse {
            return Some(snapshot);
        }
        // A snapshot of its own, which no cache keeps current.
        Some(redis_discovery::resolver::Snapshot::new(
            snapshot.service().clone(),
            snapshot.instances().to_vec(),
        ))
    }
}

/// One request through `client` itself (no clone).
async fn send_through(client: &mut HyperClient) {
    let request = http::Request::get("http://orders/")
        .body(String::new())
        .unwrap()
        .discover();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    response.into_body().collect().await.unwrap();
}

/// A resolver is asked on every request unless its snapshots are linked
/// (a resolver cache's), which know when they stop being current. A linked
/// snapshot is reused from the layer's picker cache, which a service value
/// shares with all its clones: the resolver is asked until the cache holds
/// a snapshot a lookup returned again (a miss, then one lookup), and then
/// not by the service, a clone of it, or a `clone().oneshot()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_snapshots_are_reused_across_the_router() {
    let fleet = fleet(&[1, 1]).await;
    let asked_every_time = Counting::new(fleet.resolver.clone(), false);
    let mut client = hyper_client(&DiscoveryLayer::new(asked_every_time.clone()));
    for _ in 0..10 {
        send_through(&mut client).await;
    }
    assert_eq!(asked_every_time.calls().0, 10);

    let reused = Counting::new(fleet.resolver.clone(), true);
    let mut client = hyper_client(&DiscoveryLayer::new(reused.clone()));
    for _ in 0..10 {
        send_through(&mut client).await;
    }
    assert_eq!(reused.calls().0, 2, "asked twice, then reused");
    let mut clone = client.clone();
    send_through(&mut clone).await;
    assert_eq!(reused.calls().0, 2, "a clone starts with the snapshot");
    let request = http::Request::get("http://orders/")
        .body(String::new())
        .unwrap()
        .discover();
    let response = client.clone().oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(reused.calls().0, 2, "so does a clone().oneshot()");
}

/// Requests that reuse a snapshot keep its service in the resolver's cache:
/// no idle expiry while they flow (a second resolve would show one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_snapshots_keep_their_service_cached() {
    let fleet = fleet(&[1, 1]).await;
    let idle_expiry = std::time::Duration::from_secs(1);
    let resolver = RedisResolver::builder(fleet._redis.url())
        .idle_expiry(idle_expiry)
        .connect()
        .await
        .unwrap();
    let counting = Counting::new(resolver, true);
    let mut client = hyper_client(&DiscoveryLayer::new(counting.clone()));
    let until = std::time::Instant::now() + 3 * idle_expiry;
    while std::time::Instant::now() < until {
        send_through(&mut client).await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(counting.calls(), (2, 1), "(cached, resolve) calls");
}
