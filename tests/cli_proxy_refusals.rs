//! `redis-discovery proxy` is no open proxy: a host that is not a
//! registered service is refused (403) without connecting anywhere, a
//! flood of made-up hosts costs Redis next to nothing, a service
//! registered after the proxy started is reachable within a second, known
//! services are served through a Redis outage, and conflicting body
//! framings are refused or re-framed (no request smuggling).
#![cfg(feature = "cli")]

mod support;

use std::time::{Duration, Instant};

use support::proxy::{read, register, start_proxy, wait_routed, ProxyConnection, Upstream};
use support::{eventually, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_not_services_are_refused_without_connecting() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    // A server the proxy must never connect to.
    let bystander = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = bystander.local_addr().unwrap().port();
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 1).await;
    upstream.take_seen();

    let mut client = ProxyConnection::open(proxy.addr).await;
    let absolute = format!("http://127.0.0.1:{port}/");
    let localhost = format!("localhost:{port}");
    let with_port = format!("orders:{port}");
    let cases = [
        (absolute.as_str(), None),
        ("/", Some(localhost.as_str())),
        ("/", Some(with_port.as_str())),
        ("http://example.com/", None),
        ("/", Some("unknown-service")),
    ];
    for (uri, host) in cases {
        let (status, body) = read(client.get(uri, host).await.unwrap()).await;
        assert_eq!(status, 403, "{uri} {host:?}: {body}");
        assert!(body.contains("is not a registered service"), "{body}");
        assert_eq!(body.lines().count(), 1, "{body}");
    }
    // Nothing connected to the bystander (a connection would be queued).
    let accepted = tokio::time::timeout(Duration::from_millis(200), bystander.accept()).await;
    assert!(accepted.is_err(), "the proxy connected to a non-service");
    // Nor did `orders:PORT` reach orders.
    assert!(upstream.take_seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_hosts_lists_the_registry_at_most_once_a_second() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 1).await;
    let (listings, reads) = (redis.calls("smembers"), redis.calls("evalsha"));
    let started = Instant::now();
    let mut client = ProxyConnection::open(proxy.addr).await;
    for i in 0..300 {
        let host = format!("made-up-{i}");
        let (status, _) = read(client.get("/", Some(&host)).await.unwrap()).await;
        assert_eq!(status, 403, "{host}");
    }
    let seconds = started.elapsed().as_secs();
    let listed = redis.calls("smembers") - listings;
    assert!(listed <= seconds + 2, "{listed} listings in {seconds} s");
    // No resolver read per made-up host (a periodic refresh may run).
    let read_ = redis.calls("evalsha") - reads;
    assert!(read_ <= 2 * seconds + 4, "{read_} reads in {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_registered_after_a_refusal_is_reachable_soon() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let proxy = start_proxy(&redis, &[]);
    let mut client = ProxyConnection::open(proxy.addr).await;
    let (status, _) = read(client.get("/", Some("late")).await.unwrap()).await;
    assert_eq!(status, 403);
    let _late = register(&redis, "late", upstream.addr(), 10).await;
    eventually("late to be proxied", || {
        let addr = proxy.addr;
        async move {
            let mut client = ProxyConnection::open(addr).await;
            let (status, _) = read(client.get("/", Some("late")).await.ok()?).await;
            (status == 200).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_services_are_served_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 1).await;
    // Its heartbeats would fail: nothing to renew while Redis is down.
    drop(orders);
    tokio::task::block_in_place(|| redis.stop());
    let mut client = ProxyConnection::open(proxy.addr).await;
    // Through more than one of the resolver's refreshes (every 10 s),
    // which fail: its last known instances are served.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(12) {
        let (status, body) = read(client.get("/v1", Some("orders")).await.unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, upstream.addr().to_string().as_str())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A host the proxy does not know: 503, not 403 (it cannot tell).
    let response = client.get("/", Some("unknown")).await.unwrap();
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(read(response).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_body_framing_is_refused_or_reframed() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 1).await;
    upstream.take_seen();
    // Transfer-Encoding wins over Content-Length, and the connection is
    // closed after the answer (RFC 9112, 6.3): the body is 5 bytes, and
    // what follows it is never read as a request.
    let answer = support::proxy::raw(
        proxy.addr,
        "POST /upload HTTP/1.1\r\nHost: orders\r\nContent-Length: 30\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
         GET /next HTTP/1.1\r\nHost: orders\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n5"), "{answer}");
    let seen = upstream.take_seen();
    let uris: Vec<_> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/upload"]);
    // Neither framing header of the client reached the instance as sent.
    let post = &seen[0].headers;
    assert_ne!(
        post.get("content-length").map(|v| v.as_bytes()),
        Some(&b"30"[..])
    );
    // Framings a proxy cannot trust: refused before anything is sent.
    for request in [
        "POST /upload HTTP/1.1\r\nHost: orders\r\nContent-Length: 3\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
        "POST /upload HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n",
        "POST /upload HTTP/1.0\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let answer = support::proxy::raw(proxy.addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
    }
    assert!(upstream.take_seen().is_empty());
}
