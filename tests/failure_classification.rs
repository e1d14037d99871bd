//! Failed attempts are classified the same with and without the crate's
//! `hyper-util` feature: CI runs this file in both builds
//! (`cargo test --all-features` and `cargo test --test
//! failure_classification`). A DNS failure, a connect timeout and a refused
//! connection never reached the server, so every request is retried on the
//! healthy instance: none fails, as with the feature before 0.3.

// Only the servers this test needs.
#[allow(dead_code)]
#[path = "support/http_server.rs"]
mod http_server;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer, OutlierDetection};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use tower::{Layer, ServiceExt};

use http_server::{spawn_server, RefusingPort};

// The never-answering server.
#[path = "support/faults.rs"]
mod faults;

/// A name only the test's resolver knows: it fails to resolve, as a name
/// the DNS does not have would (no query leaves the machine).
const UNRESOLVABLE: &str = "gone.test";

/// hyper-util's DNS resolution, with one name that fails.
#[derive(Clone)]
struct Resolver;

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            if name.as_str() == UNRESOLVABLE {
                return Err(std::io::Error::other(
                    "failed to lookup address information: Name or service not known",
                ));
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter())
        })
    }
}

/// A loopback listener whose accept queue is full: connecting to it hangs
/// until the client's connect timeout.
async fn unanswered_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue: these complete the handshake and are never accepted.
    let mut held = Vec::new();
    for _ in 0..4 {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    (listener, held)
}

/// Sends 50 GETs for `orders` (a healthy instance and `bad`) and counts
/// the failures.
async fn failures_with(bad: &str, connect_timeout: Duration) -> usize {
    let (healthy, _server) = spawn_server().await;
    let resolver = StaticResolver::new()
        .with_service(
            "orders",
            [
                Instance::new(healthy.to_string()).unwrap(),
                Instance::new(bad).unwrap(),
            ],
        )
        .unwrap();
    let mut connector = HttpConnector::new_with_resolver(Resolver);
    connector.set_connect_timeout(Some(connect_timeout));
    let client = Client::builder(TokioExecutor::new()).build(connector);
    // Ejection off: every request may meet the bad instance.
    let layer = DiscoveryLayer::builder(resolver)
        .outlier_detection(OutlierDetection::disabled())
        .build();
    // The fault is real: a request straight to the bad instance fails.
    let direct = http::Request::get(format!("http://{bad}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = client
        .request(direct)
        .await
        .expect_err("the bad instance fails");
    assert!(error.is_connect(), "{error:?}");
    let client = layer.layer(client);
    let mut failed = 0;
    for _ in 0..50 {
        let request = http::Request::get("http://orders/")
            .discover()
            .body(Empty::<Bytes>::new())
            .unwrap();
        match client.clone().oneshot(request).await {
            Ok(response) => {
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body);
                assert!(body.starts_with(&healthy.to_string()), "{body}");
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failures_are_retried() {
    let bad = format!("{UNRESOLVABLE}:80");
    assert_eq!(failures_with(&bad, Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeouts_are_retried() {
    let (listener, _held) = unanswered_listener().await;
    let bad = listener.local_addr().unwrap().to_string();
    assert_eq!(failures_with(&bad, Duration::from_millis(100)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried() {
    let refusing = RefusingPort::new();
    let bad = refusing.addr().to_string();
    assert_eq!(failures_with(&bad, Duration::from_secs(5)).await, 0);
}

/// A client's own timeout inside the layer (tower's `Timeout` around the
/// client) counts as the attempt's timeout: the GET is retried elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeouts_are_retried() {
    let (healthy, _server) = spawn_server().await;
    let hanging = faults::FaultServer::start(faults::Fault::Hanging)
        .await
        .unwrap();
    let resolver = StaticResolver::new()
        .with_service(
            "orders",
            [
                Instance::new(healthy.to_string()).unwrap(),
                Instance::from_socket_addr(hanging.addr()).unwrap(),
            ],
        )
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = tower::timeout::Timeout::new(client, Duration::from_millis(200));
    let client = DiscoveryLayer::new(resolver).layer(client);
    for _ in 0..30 {
        let request = http::Request::get("http://orders/")
            .discover()
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = client.clone().oneshot(request).await.expect("retried");
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    assert!(hanging.requests() <= 5, "ejected after 5 timeouts");
}
