//! Routing decisions of the layer that need no Redis: a fixed resolver and
//! an inner service that reports where each request was sent.

use std::collections::HashMap;
use std::convert::Infallible;

use redis_discovery::balance::{RoundRobin, TagFilter};
use redis_discovery::layer::{Discover, DiscoverExt, DiscoveryLayer, HostHeader};
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
    Response = http::Response<(String, Option<String>)>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|req: http::Request<String>| async move {
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap_or("").to_owned());
        Ok::<_, Infallible>(http::Response::new((
            req.uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            host,
        )))
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
        let (sent_to, _) = client.clone().oneshot(request).await.unwrap().into_body();
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
    let (_, host) = client.clone().oneshot(request).await.unwrap().into_body();
    assert_eq!(host.as_deref(), Some("orders"));
    let request = http::Request::get("http://orders/")
        .version(http::Version::HTTP_2)
        .discover()
        .body(String::new())
        .unwrap();
    let (_, host) = client.oneshot(request).await.unwrap().into_body();
    assert_eq!(host, None);
}

/// `Host` names the service unless the request brings its own (wherever
/// it sits among the headers) or the layer is told to leave it to the
/// client ([`HostHeader::Instance`]).
#[tokio::test]
async fn host_header_policy() {
    let request = |host: Option<&str>| {
        let mut builder = http::Request::get("http://orders/")
            .header(http::header::ACCEPT, "*/*")
            .header(http::header::USER_AGENT, "test");
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        builder
            .header("x-trace", "1")
            .discover()
            .body(String::new())
            .unwrap()
    };
    let client = DiscoveryLayer::new(resolver()).layer(echo());
    let (_, host) = client
        .clone()
        .oneshot(request(None))
        .await
        .unwrap()
        .into_body();
    assert_eq!(host.as_deref(), Some("orders"));
    let (_, host) = client
        .oneshot(request(Some("www.example")))
        .await
        .unwrap()
        .into_body();
    assert_eq!(host.as_deref(), Some("www.example"));
    let client = DiscoveryLayer::builder(resolver())
        .host_header(HostHeader::Instance)
        .build()
        .layer(echo());
    let (sent_to, host) = client.oneshot(request(None)).await.unwrap().into_body();
    assert!(sent_to.starts_with("10.0.0."), "{sent_to}");
    assert_eq!(host, None);
}

/// Two layers with different balancers over one resolver share its
/// snapshots; each keeps its own pickers (the second outside the snapshot).
#[tokio::test]
async fn layers_share_one_resolver() {
    // More layers than a snapshot has picker slots: the others keep their
    // pickers aside, and every layer still routes by its own balancer.
    let resolver = resolver();
    let layers: Vec<_> = (0..6)
        .map(|_| {
            DiscoveryLayer::builder(resolver.clone())
                .balance(RoundRobin::new())
                .build()
                .layer(echo())
        })
        .collect();
    for client in &layers {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..99 {
            let request = http::Request::get("http://orders/")
                .discover()
                .body(String::new())
                .unwrap();
            let (sent_to, _) = client.clone().oneshot(request).await.unwrap().into_body();
            *counts.entry(sent_to).or_default() += 1;
        }
        // Round robin over three equal weights: exactly a third each.
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&n| n == 33), "{counts:?}");
    }
    let random = DiscoveryLayer::new(resolver).layer(echo());
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let (sent_to, _) = random.oneshot(request).await.unwrap().into_body();
    assert!(sent_to.starts_with("10.0.0."), "{sent_to}");
}

/// The layer takes the flag off a request it routes: a discovery layer
/// further in passes it through (it names an instance now, not a service),
/// and the inner service never sees the flag.
#[tokio::test]
async fn routed_requests_pass_through_inner_discovery_layers() {
    let inner_resolver = StaticResolver::new()
        .with_service("10.0.0.1", [Instance::new("10.9.9.9:80").unwrap()])
        .unwrap();
    let seen = service_fn(|req: http::Request<String>| async move {
        let flagged = req.extensions().get::<Discover>().is_some();
        Ok::<_, Infallible>(http::Response::new((req.uri().to_string(), flagged)))
    });
    let single = StaticResolver::new()
        .with_service("orders", [Instance::new("10.0.0.1:80").unwrap()])
        .unwrap();
    let client = tower::ServiceBuilder::new()
        .layer(DiscoveryLayer::new(single))
        .layer(DiscoveryLayer::new(inner_resolver))
        .service(seen);
    for extra in [false, true] {
        let mut request = http::Request::get("http://orders/v1?x=1")
            .discover()
            .body(String::new())
            .unwrap();
        if extra {
            // Another extension: the flag goes, the extension stays.
            request.extensions_mut().insert(7u32);
        }
        let (uri, flagged) = client.clone().oneshot(request).await.unwrap().into_body();
        assert_eq!(uri, "http://10.0.0.1:80/v1?x=1");
        assert!(!flagged);
    }
}

/// Clones of the inner service are made for retries only: requests that
/// need none do not clone it (a hyper client clone is several `Arc`s).
#[tokio::test]
async fn requests_without_retries_do_not_clone_the_inner_service() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    struct Counted(Arc<AtomicUsize>);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Counted(self.0.clone())
        }
    }
    impl tower::Service<http::Request<String>> for Counted {
        type Response = http::Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(())))
        }
    }

    let clones = Arc::new(AtomicUsize::new(0));
    let mut service = DiscoveryLayer::new(resolver()).layer(Counted(clones.clone()));
    let before = clones.load(Ordering::SeqCst);
    for _ in 0..100 {
        let request = http::Request::get("http://orders/")
            .discover()
            .body(String::new())
            .unwrap();
        tower::Service::call(service.ready().await.unwrap(), request)
            .await
            .unwrap();
    }
    assert_eq!(clones.load(Ordering::SeqCst), before);
}

/// The response future is `Send` even when the inner service is `Send` but
/// not `Sync` (`BoxCloneService`), so it can be spawned.
#[test]
fn response_future_is_send_with_a_box_clone_service() {
    fn assert_send<T: Send>(_: &T) {}
    let inner = tower::util::BoxCloneService::new(echo());
    let mut service = DiscoveryLayer::new(resolver()).layer(inner);
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let future = tower::Service::call(&mut service, request);
    assert_send(&future);
}

/// Service names are case-insensitive, like hosts: a request for
/// `http://ORDERS/` reaches `orders`, with `Host: orders`.
#[tokio::test]
async fn hosts_in_any_case_reach_the_service() {
    let client = DiscoveryLayer::new(resolver()).layer(echo());
    for host in ["Orders", "ORDERS", "orders"] {
        let request = http::Request::get(format!("http://{host}/"))
            .discover()
            .body(String::new())
            .unwrap();
        let (sent_to, host_header) = client.clone().oneshot(request).await.unwrap().into_body();
        assert!(sent_to.starts_with("10.0.0."), "{host}: {sent_to}");
        assert_eq!(host_header.as_deref(), Some("orders"));
    }
}

/// A response future polled again after it completed returns an error: it
/// never polls a finished inner future or resolve again (which may panic).
#[tokio::test]
async fn a_completed_future_polled_again_returns_an_error() {
    use std::future::{poll_fn, Future};
    use std::pin::pin;
    use std::task::Poll;
    use tower::Service;

    let empty = StaticResolver::new();
    let layers = [
        (
            DiscoveryLayer::builder(empty).discover_all(true).build(),
            "http://nope/",
        ),
        (DiscoveryLayer::new(resolver()), "http://orders/"),
    ];
    for (layer, uri) in layers {
        let mut client = layer.layer(echo());
        let request = http::Request::get(uri)
            .discover()
            .body(String::new())
            .unwrap();
        poll_fn(|cx| client.poll_ready(cx)).await.unwrap();
        let mut fut = pin!(client.call(request));
        let _first = poll_fn(|cx| fut.as_mut().poll(cx)).await;
        let again = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(matches!(again, Poll::Ready(Err(_))), "{uri}");
    }
}
