//! Every discovered request runs in a `discovery` span naming the service
//! and the chosen instance, on the hit and on the miss path. (Its own test
//! binary: tracing caches callsite interest process-wide.)

mod support;

use std::convert::Infallible;

use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::{Instance, RedisRegistry, RedisResolver};
use tower::{service_fn, Layer, ServiceExt};

#[tokio::test(flavor = "current_thread")]
async fn discovered_requests_get_a_tracing_span() {
    let logs = support::LogCapture::default();
    tracing::subscriber::set_global_default(logs.subscriber(tracing::Level::DEBUG, true)).unwrap();

    let redis = support::RedisServer::start();
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    let _registration = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = RedisResolver::connect(redis.url()).await.unwrap();
    let inner = service_fn(|req: http::Request<String>| async move {
        Ok::<_, Infallible>(http::Response::new(req.uri().to_string()))
    });
    let client = DiscoveryLayer::new(resolver).layer(inner);
    for path in ["/first", "/second"] {
        // The first request misses the cache, the second hits it.
        let request = http::Request::get(format!("http://orders{path}"))
            .discover()
            .body(String::new())
            .unwrap();
        let sent_to = client.clone().oneshot(request).await.unwrap().into_body();
        assert_eq!(sent_to, format!("http://10.0.0.7:8080{path}"));
    }
    let logged = logs.text();
    let spans = logged
        .lines()
        .filter(|l| {
            l.contains("discovery{service=orders instance=10.0.0.7:8080}") && l.ends_with(" new")
        })
        .count();
    assert_eq!(spans, 2, "{logged}");
}
