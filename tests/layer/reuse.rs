//! Resolver lookups the layer makes: one shared resolve for the first
//! requests, linked snapshots reused across the router, a long-lived
//! service following the registry.

use super::*;

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
