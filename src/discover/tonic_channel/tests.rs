//! The connector's view of a connection (real loopback sockets) and
//! the driver's waits (paused time).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::tonic::transport::Endpoint;
use ::tonic::{Code, Status};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tower::{BoxError, ServiceExt};
use tower_service::Service;

use super::connector::{Health, WatchingConnector};
use super::driver::{Handle, Waits};
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

/// Ready when told; wakes its caller when told.
#[derive(Clone, Default)]
struct Toggle(Arc<Mutex<(bool, Option<Waker>)>>);

impl Toggle {
    fn set(&self, ready: bool) {
        let mut state = self.0.lock().unwrap();
        state.0 = ready;
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }
}

impl Service<()> for Toggle {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::future::Ready<Result<&'static str, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut state = self.0.lock().unwrap();
        if state.0 {
            Poll::Ready(Ok(()))
        } else {
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok("called"))
    }
}

fn unavailable(error: &BoxError) -> bool {
    error
        .downcast_ref::<Status>()
        .is_some_and(|status| status.code() == Code::Unavailable)
}

const WAITS: Waits = Waits {
    none_ready: Duration::from_secs(5),
    grace: Duration::from_secs(1),
    idle_gap: Duration::from_secs(1),
};

fn driven(toggle: &Toggle) -> Handle<(), &'static str> {
    let name = ServiceName::new("greeter").unwrap();
    Handle::spawn(toggle.clone(), name, WAITS, 16)
}

/// One call; how long it took.
async fn call(handle: &mut Handle<(), &'static str>) -> (Result<&'static str, BoxError>, Duration) {
    let started = Instant::now();
    let outcome = async {
        std::future::poll_fn(|cx| handle.poll_ready(cx)).await?;
        match handle.call(()).await {
            Ok(Ok(sent)) => sent.await,
            Ok(Err(error)) => Err(error),
            Err(_) => Err("driver gone".into()),
        }
    }
    .await;
    (outcome, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn calls_wait_for_an_instance_then_fail_after_a_grace_until_one_is_ready() {
    let toggle = Toggle::default();
    let mut handle = driven(&toggle);

    // Waits 5 s, then fails.
    let (outcome, took) = call(&mut handle).await;
    assert!(unavailable(&outcome.unwrap_err()));
    assert_eq!(took, Duration::from_secs(5));
    // Calls that follow fail after the grace, not the whole wait.
    let (outcome, took) = call(&mut handle).await;
    assert!(unavailable(&outcome.unwrap_err()));
    assert_eq!(took, Duration::from_secs(1));
    // Ready within the grace: the call goes through.
    let mut caller = handle.clone();
    let pending = tokio::spawn(async move { call(&mut caller).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    toggle.set(true);
    let (outcome, took) = pending.await.unwrap();
    assert_eq!(outcome.unwrap(), "called");
    assert_eq!(took, Duration::from_millis(500));

    // Unready again: a call waits the whole 5 s again.
    toggle.set(false);
    let (_, took) = call(&mut handle).await;
    assert_eq!(took, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn after_an_idle_gap_a_call_waits_the_whole_period_again() {
    let toggle = Toggle::default();
    let mut handle = driven(&toggle);
    let (outcome, _) = call(&mut handle).await;
    assert!(unavailable(&outcome.unwrap_err()), "failing");
    // No call for 2 s: the next waits the whole period.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, took) = call(&mut handle).await;
    assert_eq!(took, Duration::from_secs(5));

    // A caller that gave up leaves nothing armed: 6 s later, a new call
    // waits the whole period too.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), call(&mut handle)).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, took) = call(&mut handle).await;
    assert_eq!(took, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn an_instance_ready_while_no_call_waits_takes_the_next_call_at_once() {
    let toggle = Toggle::default();
    let mut handle = driven(&toggle);
    let (outcome, _) = call(&mut handle).await;
    assert!(unavailable(&outcome.unwrap_err()), "failing");
    toggle.set(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (outcome, took) = call(&mut handle).await;
    assert_eq!(outcome.unwrap(), "called");
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_caller_left_is_not_sent() {
    let toggle = Toggle::default();
    let mut handle = driven(&toggle);
    std::future::poll_fn(|cx| handle.poll_ready(cx))
        .await
        .unwrap();
    drop(handle.call(()));
    toggle.set(true);
    let (outcome, _) = call(&mut handle).await;
    assert_eq!(outcome.unwrap(), "called");
}

#[tokio::test(start_paused = true)]
async fn the_driver_ends_when_every_handle_is_dropped() {
    let toggle = Toggle::default();
    let handle = driven(&toggle);
    let clone = handle.clone();
    drop(handle);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(Arc::strong_count(&toggle.0), 2, "a clone keeps it");
    drop(clone);
    for _ in 0..100 {
        if Arc::strong_count(&toggle.0) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the driver still holds the service");
}

#[test]
fn the_channel_is_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    fn check_future<T: Send + 'static>() {}
    check::<super::GrpcChannel>();
    check_future::<super::GrpcResponseFuture>();
}
