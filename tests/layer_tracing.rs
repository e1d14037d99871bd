//! Every discovered request runs in a `discovery` span naming the service
//! and the chosen instance, on the hit and on the miss path. (Its own test
//! binary: tracing caches callsite interest process-wide.)

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::{Instance, RedisRegistry, RedisResolver};
use tower::{service_fn, Layer, ServiceExt};
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn discovered_requests_get_a_tracing_span() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::NEW)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let redis = support::RedisServer::start();
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    let _registration = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = RedisResolver::connect(redis.url()).await.unwrap();
    let inner = service_fn(|req: http::Request<String>| async move {
        Ok::<_, Infallible>(req.uri().to_string())
    });
    let client = DiscoveryLayer::new(resolver).layer(inner);
    for path in ["/first", "/second"] {
        // The first request misses the cache, the second hits it.
        let request = http::Request::get(format!("http://orders{path}"))
            .discover()
            .body(String::new())
            .unwrap();
        let sent_to = client.clone().oneshot(request).await.unwrap();
        assert_eq!(sent_to, format!("http://10.0.0.7:8080{path}"));
    }
    let logged = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    let spans = logged
        .lines()
        .filter(|l| {
            l.contains("discovery{service=orders instance=10.0.0.7:8080}") && l.ends_with(" new")
        })
        .count();
    assert_eq!(spans, 2, "{logged}");
}
