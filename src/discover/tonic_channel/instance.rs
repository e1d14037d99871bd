//! [`InstanceChannel`]: one instance's tonic `Channel`, ready only while
//! its connection is up, so that the balancer routes around an instance
//! that died.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use ::tonic::body::Body;
use ::tonic::transport::{Channel, Endpoint};
use ::tonic::Status;
use tokio::time::Sleep;
use tower::BoxError;
use tower_service::Service;

use super::connector::{Health, WatchingConnector};

/// The first wait after a failed connect; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two connects to an instance that fails them.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a connection must live (or a response come over it) before
/// the backoff starts over: a server that accepts connections and drops
/// them at once (crash-looping behind its listener, a proxy without a
/// backend) gets the backoff too, rather than a reconnect per call.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// The limit on one connect when the endpoint sets no connect timeout:
/// a silent address must not keep the instance connecting for minutes.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type Call = BoxFuture<Result<http::Response<Body>, BoxError>>;

/// One instance's channel. Ready only with a live connection: it connects
/// (eagerly, through tonic with the instance's endpoint, so TLS, HTTP/2
/// settings and timeouts are the endpoint's) before its first call, and
/// when that connection is lost it is not ready until a new one is up,
/// connecting again with a backoff. Never fails `poll_ready`: a balancer
/// would drop it for good.
pub(crate) struct InstanceChannel {
    addr: String,
    endpoint: Option<Endpoint>,
    state: State,
    backoff: Duration,
}

enum State {
    /// No endpoint (the user's closure failed): never ready.
    Unusable,
    Connecting(BoxFuture<Result<Up, BoxError>>),
    Waiting(Pin<Box<Sleep>>),
    Up(Up),
}

struct Up {
    channel: Channel,
    health: Arc<Health>,
    since: Instant,
}

impl Up {
    /// Whether this connection proved itself: lived a while, or answered.
    fn was_stable(&self) -> bool {
        self.health.answered() || self.since.elapsed() >= STABLE_AFTER
    }
}

impl InstanceChannel {
    pub(crate) fn new(addr: &str, endpoint: Endpoint) -> InstanceChannel {
        InstanceChannel {
            addr: addr.to_owned(),
            state: State::Connecting(connect(endpoint.clone())),
            endpoint: Some(endpoint),
            backoff: FIRST_BACKOFF,
        }
    }

    /// An instance without an endpoint: listed, never ready, never called.
    pub(crate) fn unusable(addr: &str) -> InstanceChannel {
        InstanceChannel {
            addr: addr.to_owned(),
            endpoint: None,
            state: State::Unusable,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The connection is lost: connect again at once if it had proved
    /// itself, else after the backoff.
    fn lost(&mut self, stable: bool) {
        if stable {
            self.backoff = FIRST_BACKOFF;
            self.reconnect();
        } else {
            self.back_off();
        }
    }

    fn back_off(&mut self) {
        let wait = self.backoff;
        self.backoff = self.backoff.saturating_mul(2).min(MAX_BACKOFF);
        self.state = State::Waiting(Box::pin(tokio::time::sleep(wait)));
    }

    fn reconnect(&mut self) {
        self.state = match &self.endpoint {
            Some(endpoint) => State::Connecting(connect(endpoint.clone())),
            None => State::Unusable,
        };
    }
}

/// A new channel with a live connection, and its health.
fn connect(endpoint: Endpoint) -> BoxFuture<Result<Up, BoxError>> {
    Box::pin(async move {
        let health = Arc::new(Health::default());
        let connector = WatchingConnector::new(&endpoint, health.clone());
        let limit = endpoint.get_connect_timeout().unwrap_or(CONNECT_LIMIT);
        let channel = tokio::time::timeout(limit, endpoint.connect_with_connector(connector))
            .await
            .map_err(|_| BoxError::from("connect timed out"))??;
        Ok(Up {
            channel,
            health,
            since: Instant::now(),
        })
    })
}

impl Service<http::Request<Body>> for InstanceChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Call;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Unusable => return Poll::Pending,
                State::Up(up) if up.health.is_lost() => {
                    let stable = up.was_stable();
                    tracing::debug!(addr = %self.addr, stable, retry_in = ?(!stable).then_some(self.backoff), "tonic instance connection lost: connecting again");
                    self.lost(stable);
                }
                State::Up(up) => match up.channel.poll_ready(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => {
                        let stable = up.was_stable();
                        tracing::debug!(addr = %self.addr, %error, stable, "tonic instance channel failed: connecting again");
                        self.lost(stable);
                    }
                },
                State::Connecting(connecting) => match connecting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // The backoff starts over only once the connection
                    // proves itself (`Up::was_stable`): a connect is only
                    // TCP and the HTTP/2 preface.
                    Poll::Ready(Ok(up)) => self.state = State::Up(up),
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(addr = %self.addr, %error, retry_in = ?self.backoff, "tonic instance connect failed");
                        self.back_off();
                    }
                },
                State::Waiting(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.reconnect();
                }
            }
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Call {
        match &mut self.state {
            State::Up(up) => {
                let call = up.channel.call(request);
                let health = up.health.clone();
                Box::pin(async move {
                    let response = call.await?;
                    health.mark_answered();
                    Ok(response)
                })
            }
            // Only when called without being ready, against the contract.
            _ => Box::pin(std::future::ready(Err(Status::unavailable(
                "instance not ready",
            )
            .into()))),
        }
    }
}
