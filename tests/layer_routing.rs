//! Routing decisions of the layer that need no Redis: a fixed resolver and
//! an inner service that reports where each request was sent.

use std::collections::HashMap;
use std::convert::Infallible;

use redis_discovery::balance::{RoundRobin, TagFilter};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use tower::{service_fn, Layer, ServiceExt};

fn resolver() -> StaticResolver {
    let zoned =
        |addr: &str, zone: &str| Instance::new(addr).unwrap().with_tag("zone", zone).unwrap();
    StaticResolver::new()
        .with_service(
            "orders",
            [
                zoned("10.0.0.1:80", "a"),
                zoned("10.0.0.2:80", "a"),
                zoned("10.0.0.3:80", "b"),
            ],
        )
        .unwrap()
}

/// Echoes the authority the request was sent to and its `Host` header.
fn echo() -> impl tower::Service<
    http::Request<String>,
    Response = (String, Option<String>),
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|req: http::Request<String>| async move {
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap_or("").to_owned());
        Ok::<_, Infallible>((
            req.uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            host,
        ))
    })
}

/// A stateful balancer keeps its state across requests that carry their
/// own tag filter: round robin alternates between the matching instances.
#[tokio::test]
async fn per_request_filters_keep_round_robin_going() {
    let client = DiscoveryLayer::builder(resolver())
        .balance(RoundRobin::new())
        .build()
        .layer(echo());
    let zone_a: TagFilter = "zone=a".parse().unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let mut request = http::Request::get("http://orders/")
            .discover()
            .body(String::new())
            .unwrap();
        request.extensions_mut().insert(zone_a.clone());
        let (sent_to, _) = client.clone().oneshot(request).await.unwrap();
        *counts.entry(sent_to).or_default() += 1;
    }
    assert_eq!(counts.get("10.0.0.1:80"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("10.0.0.2:80"), Some(&50), "{counts:?}");
}

/// HTTP/2 carries the authority as `:authority`; a `Host` naming the
/// service would contradict it, so none is added.
#[tokio::test]
async fn no_host_header_on_http2() {
    let client = DiscoveryLayer::new(resolver()).layer(echo());
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let (_, host) = client.clone().oneshot(request).await.unwrap();
    assert_eq!(host.as_deref(), Some("orders"));
    let request = http::Request::get("http://orders/")
        .version(http::Version::HTTP_2)
        .discover()
        .body(String::new())
        .unwrap();
    let (_, host) = client.oneshot(request).await.unwrap();
    assert_eq!(host, None);
}

/// Two layers with different balancers over one resolver share its
/// snapshots; each keeps its own pickers (the second outside the snapshot).
#[tokio::test]
async fn two_layers_share_one_resolver() {
    let resolver = resolver();
    let random = DiscoveryLayer::new(resolver.clone()).layer(echo());
    let round_robin = DiscoveryLayer::builder(resolver)
        .balance(RoundRobin::new())
        .build()
        .layer(echo());
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..99 {
        for client in [&random, &round_robin] {
            let request = http::Request::get("http://orders/")
                .discover()
                .body(String::new())
                .unwrap();
            let (sent_to, _) = client.clone().oneshot(request).await.unwrap();
            if std::ptr::eq(client, &round_robin) {
                *counts.entry(sent_to).or_default() += 1;
            }
        }
    }
    // Round robin over three equal weights: exactly a third each.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 33), "{counts:?}");
}
