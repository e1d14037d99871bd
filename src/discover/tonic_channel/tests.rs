//! The connector's view of a connection (real loopback sockets) and
//! `NoneReady`'s wait (paused time).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tonic::transport::Endpoint;
use ::tonic::{Code, Status};
use tokio::io::AsyncReadExt;
use tower::{BoxError, ServiceExt};
use tower_service::Service;

use super::connector::{Health, WatchingConnector};
use super::none_ready::NoneReady;
use crate::instance::ServiceName;

async fn connect(
    addr: std::net::SocketAddr,
) -> (Arc<Health>, Result<super::connector::WatchedIo, BoxError>) {
    let uri: http::Uri = format!("http://{addr}").parse().unwrap();
    let health = Arc::new(Health::default());
    let endpoint = Endpoint::from(uri.clone());
    let mut connector = WatchingConnector::new(&endpoint, health.clone());
    let io = connector.ready().await.unwrap().call(uri).await;
    (health, io.map(hyper_util::rt::TokioIo::into_inner))
}

#[tokio::test]
async fn a_refused_connect_is_a_loss() {
    // Bound, not listening: refuses.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (health, io) = connect(socket.local_addr().unwrap()).await;
    assert!(io.is_err());
    assert!(health.is_lost());
}

#[tokio::test]
async fn a_connection_closed_by_the_server_is_a_loss() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (health, io) = connect(listener.local_addr().unwrap()).await;
    let mut io = io.unwrap();
    let (server_side, _) = listener.accept().await.unwrap();
    assert!(!health.is_lost(), "connected");
    drop(server_side);
    let mut buf = [0u8; 8];
    assert_eq!(io.read(&mut buf).await.unwrap(), 0, "the end");
    assert!(health.is_lost());
}

#[tokio::test]
async fn a_connection_let_go_is_a_loss() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (health, io) = connect(listener.local_addr().unwrap()).await;
    let _server_side = listener.accept().await.unwrap();
    assert!(!health.is_lost());
    drop(io);
    assert!(health.is_lost());
}

/// Ready when told.
#[derive(Clone, Default)]
struct Toggle(Arc<AtomicBool>);

impl Service<()> for Toggle {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::future::Ready<Result<&'static str, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.0.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok("called"))
    }
}

fn unavailable(error: BoxError) -> bool {
    error
        .downcast_ref::<Status>()
        .is_some_and(|status| status.code() == Code::Unavailable)
}

#[tokio::test(start_paused = true)]
async fn calls_wait_for_an_instance_then_fail_until_one_is_ready() {
    let toggle = Toggle::default();
    let name = ServiceName::new("greeter").unwrap();
    let mut service = NoneReady::new(toggle.clone(), name, Duration::from_secs(5));

    // Waits...
    let waited = tokio::time::timeout(Duration::from_secs(4), service.ready()).await;
    assert!(waited.is_err(), "still waiting after 4 s");
    // ...then fails.
    let error = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(unavailable(error));
    // Then fails at once, without waiting again.
    let started = tokio::time::Instant::now();
    let error = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(unavailable(error));
    assert_eq!(started.elapsed(), Duration::ZERO);

    // Ready again: calls go through, and a later wait starts afresh.
    toggle.0.store(true, Ordering::SeqCst);
    assert_eq!(
        service.ready().await.unwrap().call(()).await.unwrap(),
        "called"
    );
    toggle.0.store(false, Ordering::SeqCst);
    let waited = tokio::time::timeout(Duration::from_secs(4), service.ready()).await;
    assert!(waited.is_err(), "waits again");
}

#[test]
fn the_channel_is_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    fn check_future<T: Send + 'static>() {}
    check::<super::GrpcChannel>();
    check_future::<super::GrpcResponseFuture>();
}
