//! `redis-discovery proxy`: bodies stream through without being held
//! whole, SIGTERM drains the requests in flight, and h2c clients are
//! served.
#![cfg(feature = "cli")]

mod support;

use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::cli::{sigterm, wait_exit, wait_for_line};
use support::proxy::{read, register, start_proxy, Generated, ProxyConnection, Upstream};
use support::RedisServer;

const MIB: usize = 1024 * 1024;

/// Uploads `bytes` to /upload; the instance's count of what it read.
async fn upload(client: &mut ProxyConnection, bytes: usize) -> String {
    let request = http::Request::post("/upload")
        .header("host", "orders")
        .body(Generated(bytes).boxed_unsync())
        .unwrap();
    let (status, body) = read(client.send(request).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Downloads `bytes` from /download, frame by frame; the bytes read.
async fn download(client: &mut ProxyConnection, bytes: usize) -> usize {
    let response = client
        .get(&format!("/download/{bytes}"), Some("orders"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        read += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_up_and_down_stream_through_without_being_held() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    let mut client = ProxyConnection::open(proxy.addr).await;
    // Warm up: buffers and allocator arenas at their working size.
    assert_eq!(upload(&mut client, MIB).await, MIB.to_string());
    assert_eq!(download(&mut client, MIB).await, MIB);
    let before = proxy.peak_rss_kib();

    assert_eq!(upload(&mut client, 10 * MIB).await, (10 * MIB).to_string());
    assert_eq!(download(&mut client, 10 * MIB).await, 10 * MIB);
    let grown = proxy.peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS {before} KiB, grew by {grown} KiB");
    // Holding either body whole would take 10 MiB.
    assert!(grown < 8 * 1024, "peak RSS grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let mut proxy = start_proxy(&redis, &[]);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = ProxyConnection::open(addr).await;
            read(client.get("/slow/1500", Some("orders")).await.unwrap()).await
        }));
    }
    support::eventually("3 requests at the instance", || {
        let n = upstream.requests();
        async move { (n >= 3).then_some(()) }
    })
    .await;
    sigterm(&proxy.process);
    tokio::task::block_in_place(|| wait_for_line(&proxy.out, "proxy stopping"));
    // It no longer accepts: the listener is closed before that line.
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!((status, body), (200, upstream.addr().to_string()));
    }
    let status = tokio::task::block_in_place(|| wait_exit(&mut proxy.process));
    assert_eq!(status.code(), Some(0));
    tokio::task::block_in_place(|| wait_for_line(&proxy.out, "proxy stopped"));
    // One access line per request, through `tracing` (target `access`).
    let log = proxy.log();
    let served = log
        .iter()
        .filter(|l| {
            l.contains(" access: client=127.0.0.1 method=GET service=orders path=/slow/1500 status=200 ms=")
        })
        .count();
    assert_eq!(served, 3, "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_cuts_requests_that_never_end() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let mut proxy = start_proxy(&redis, &["--drain-timeout", "300ms"]);
    let addr = proxy.addr;
    let hanging = tokio::spawn(async move {
        let mut client = ProxyConnection::open(addr).await;
        client
            .get("/hang", Some("orders"))
            .await
            .map(|r| r.status())
    });
    support::eventually("the request at the instance", || {
        let n = upstream.requests();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    sigterm(&proxy.process);
    let status = tokio::task::block_in_place(|| wait_exit(&mut proxy.process));
    assert_eq!(status.code(), Some(0));
    tokio::task::block_in_place(|| wait_for_line(&proxy.out, "drain timeout reached"));
    // The cut request fails; it is not left hanging.
    assert!(hanging.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_over_http_1_1_upstream() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    // The first request may come before the proxy has read orders.
    let request = http::Request::get("http://orders/v1/items")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (status, body) = read(sender.send_request(request).await.unwrap()).await;
    assert_eq!((status, body), (200, upstream.addr().to_string()));
    let seen = upstream.take_seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/v1/items");
    assert_eq!(last.headers["host"], "orders");
}

/// An h2c connection to `proxy` and the task that drives it (it ends when
/// the connection closes).
async fn h2c(
    proxy: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_and_frees_its_slot() {
    let redis = RedisServer::start();
    let proxy = start_proxy(
        &redis,
        &["--max-connections", "1", "--idle-timeout", "300ms"],
    );
    let (mut sender, connection) = h2c(proxy.addr).await;
    let request = http::Request::get(format!("http://{}/healthz", proxy.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    let (status, _) = read(sender.send_request(request).await.unwrap()).await;
    assert_eq!(status, 200);
    // Idle, it is closed (GOAWAY) though the client keeps it, ...
    tokio::time::timeout(support::DEADLINE, connection)
        .await
        .expect("the idle connection was not closed")
        .unwrap()
        .unwrap();
    // ... and its slot serves the next client.
    let mut client = ProxyConnection::open(proxy.addr).await;
    let answer = tokio::time::timeout(support::DEADLINE, client.get("/healthz", None))
        .await
        .expect("the next connection was not served");
    assert_eq!(read(answer.unwrap()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_and_frees_its_slot() {
    use tokio::io::AsyncReadExt;
    let redis = RedisServer::start();
    let proxy = start_proxy(
        &redis,
        &["--max-connections", "1", "--idle-timeout", "300ms"],
    );
    // Not a byte: HTTP/1's header timer never starts (the protocol is not
    // known yet), so only the idle timeout ends it.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(support::DEADLINE, silent.read(&mut byte))
        .await
        .expect("the silent connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let mut client = ProxyConnection::open(proxy.addr).await;
    let answer = tokio::time::timeout(support::DEADLINE, client.get("/healthz", None))
        .await
        .expect("the next connection was not served");
    assert_eq!(support::proxy::read(answer.unwrap()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_idle_timeout_is_not_cut() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &["--idle-timeout", "200ms"]);
    let (mut sender, _connection) = h2c(proxy.addr).await;
    let request = http::Request::get("http://orders/slow/1500")
        .body(http_body_util::Empty::new())
        .unwrap();
    let (status, body) = read(sender.send_request(request).await.unwrap()).await;
    assert_eq!((status, body), (200, upstream.addr().to_string()));
    // HTTP/1.1 too.
    let mut client = ProxyConnection::open(proxy.addr).await;
    let (status, body) = read(client.get("/slow/1500", Some("orders")).await.unwrap()).await;
    assert_eq!((status, body), (200, upstream.addr().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_is_logged_499() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    let addr = proxy.addr;
    let hanging = tokio::spawn(async move {
        let mut client = ProxyConnection::open(addr).await;
        let _ = client.get("/hang", Some("orders")).await;
    });
    support::eventually("the request at the instance", || {
        let n = upstream.requests();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    // The client goes away (its connection closes) before any answer.
    hanging.abort();
    support::eventually("a 499 access line", || {
        let log = proxy.log();
        async move {
            log.iter()
                .any(|l| l.contains("service=orders path=/hang status=499"))
                .then_some(())
        }
    })
    .await;
}
