//! Retries and ejection through the layer: killed, dead and hanging-up
//! instances, a lone instance, reqwest-middleware's retries, retries without
//! a resolver cache.

use super::*;

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
