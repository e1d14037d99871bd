//! [`GrpcChannel`]: a channel for tonic clients that balances over a
//! service's instances in the registry, follows them, and routes around
//! an instance whose connection is lost (feature `tonic`).
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | `GrpcChannel`, `RedisResolver::tonic_channel` |
//! | `instance.rs` | one instance's tonic `Channel`, ready only while connected |
//! | `connector.rs` | the connector that sees a connection lost |
//! | `driver.rs` | the task that runs the balancer and queues the calls |
//! | `tests.rs` | the connector and the driver's waits, unit-tested |

mod connector;
mod driver;
mod instance;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tonic::body::Body;
use ::tonic::transport::Endpoint;
use tokio::sync::oneshot;
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::BoxError;
use tower_service::Service;

use self::driver::{BoxFuture, Dispatched, Handle, Waits};
use self::instance::InstanceChannel;
use super::changes::{InstanceChanges, Resubscribe};
use crate::error::ResolveError;
use crate::instance::{Instance, ServiceName};
use crate::resolver::{RedisResolver, WeakResolver};

/// How many calls may wait for the balancer; more wait in `poll_ready`
/// (as with tonic's own channel, whose default this is).
const CALLS_BUFFERED: usize = 1024;

/// A gRPC channel over a service's instances that follows the registry:
/// give it to any tonic client (`GreeterClient::new(channel)`,
/// `tonic::client::Grpc::new(channel)`); clone it freely, clones share
/// the connections. Feature `tonic`.
///
/// Made by [`RedisResolver::tonic_channel`], or by [`GrpcChannel::new`]
/// from an [`InstanceChanges`] stream.
///
/// * **Connections.** Each instance gets its own tonic `Channel` made
///   from the [`Endpoint`] your closure returns for it (scheme, TLS,
///   timeouts, HTTP/2 and TCP keep-alives are yours; the endpoint's local
///   address is not used). The balancer runs in its own task, whether or
///   not calls come: instances are connected as soon as they are listed,
///   and dropped (their connection closed) as soon as the registry drops
///   them; a call is only sent over a connection that is up. The closure
///   runs once per insert (the first list, then every instance that
///   joins or changes weight or tags). An instance whose endpoint fails
///   to build is never called (warning through `tracing`). A drained
///   instance (weight 0) is not connected.
/// * **Balancing.** Calls go to the less loaded of two ready instances
///   picked at random (tower's power of two choices); weights are not
///   used. An instance's load is its calls waiting for their response
///   *headers*: a server-streaming call counts until its response starts,
///   not while its messages stream.
/// * **An instance that dies without deregistering.** Its connection
///   reads its end (or an error), or a connect to it fails: from then on
///   it is not ready, and no new call goes to it. It is connected to again
///   at once if its connection had proved itself (lived 1 s, or answered
///   a call), else after 0.1 s doubling up to 5 s (so a server that
///   accepts connections and drops them is not hammered, nor preferred
///   as a fresh, unloaded instance), and gets calls again once a
///   connection is up, until the registry drops it. Calls already sent
///   to it when it died fail (`Unknown` "transport error",
///   `Unavailable`, or `Cancelled`, as tonic and hyper report a lost
///   connection); they are not retried, as their request may have
///   reached the server. A connect is limited by the endpoint's connect
///   timeout, or to 10 s without one.
/// * **A host that vanishes without closing its connections** (powered
///   off, cut off) is only noticed when its connection fails. An idle
///   ready instance's connection is checked when a call picks it. Set the
///   endpoint's `http2_keep_alive_interval` and `keep_alive_timeout` to
///   notice it within those, and `keep_alive_while_idle(true)`: without
///   it, pings are sent only while calls are open, and an idle
///   connection to a vanished host is found dead only by the next calls
///   (which then fail).
/// * **No instance ready.** Calls wait for one, up to 5 seconds, counted
///   from the first of calls waiting one after the other (a gap of 1 s
///   with no call waiting starts the count over). Past that, until an
///   instance is ready, calls fail with `Unavailable` ("no instance of
///   ... is ready") after waiting at most 1 s each (about one connect),
///   so the calls waiting do not pile up. An instance ready while no
///   call waits takes the next call at once.
/// * **The registry.** The channel follows the service until it is
///   dropped. From [`RedisResolver::tonic_channel`], it watches the
///   service again if its watch ends while the resolver lives (an entry
///   evicted from a full cache), going on with the changes since. When
///   the resolver is dropped or shut down, the channel keeps the
///   instances it has.
/// * **Tasks.** A task (spawned with [`tokio::spawn`], so make the
///   channel inside a Tokio runtime) runs the balancer and queues the
///   calls (1024 at most; more wait in `poll_ready`), and tonic spawns
///   two per instance connected (its channel's and the connection's).
///   They all end when the channel (every clone) is dropped and the
///   calls queued are answered: the balancer's task drops the stream,
///   and with it the resolver's watch of the service. It sleeps between
///   events (a call, a change, a connection up).
///
/// ```no_run
/// use redis_discovery::discover::GrpcChannel;
/// use tonic::transport::Endpoint;
/// # use redis_discovery::RedisResolver;
///
/// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
/// let changes = resolver.changes("greeter").await?;
/// let channel = GrpcChannel::new(changes, |instance| {
///     Endpoint::from_shared(format!("http://{}", instance.addr()))
///         .map(|endpoint| endpoint.timeout(std::time::Duration::from_secs(5)))
/// });
/// // `channel` goes to a generated client: `GreeterClient::new(channel)`.
/// let client = tonic::client::Grpc::new(channel);
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct GrpcChannel {
    service: ServiceName,
    handle: Handle<http::Request<Body>, http::Response<Body>>,
}

/// How long calls wait for an instance to be ready before failing, and
/// how long each waits once they fail.
const WAITS: Waits = Waits {
    none_ready: Duration::from_secs(5),
    grace: Duration::from_secs(1),
    idle_gap: Duration::from_secs(1),
};

impl GrpcChannel {
    /// A channel over `changes`' instances; `endpoint` makes each
    /// instance's [`Endpoint`]. See [`GrpcChannel`] for what it does and
    /// spawns. Call it inside a Tokio runtime.
    pub fn new<F, E>(changes: InstanceChanges, endpoint: F) -> GrpcChannel
    where
        F: Fn(&Instance) -> Result<Endpoint, E> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let service = changes.service().clone();
        let named = service.clone();
        let discover = changes.into_discover(move |instance: Instance| {
            let channel = match endpoint(&instance) {
                Ok(made) => InstanceChannel::new(instance.addr(), made),
                Err(error) => {
                    tracing::warn!(
                        service = %named,
                        addr = instance.addr(),
                        error = %error,
                        "no tonic endpoint for this instance: never called"
                    );
                    InstanceChannel::unusable(instance.addr())
                }
            };
            PendingRequests::new(channel, CompleteOnResponse::default())
        });
        let balance = Balance::new(discover);
        GrpcChannel {
            handle: Handle::spawn(balance, service.clone(), WAITS, CALLS_BUFFERED),
            service,
        }
    }

    /// The service whose instances this channel calls.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

impl Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = GrpcResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.handle.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> GrpcResponseFuture {
        GrpcResponseFuture {
            state: Sending::Queued(self.handle.call(request)),
        }
    }
}

impl fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannel")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The response of a call through a [`GrpcChannel`]. Feature `tonic`.
///
/// # Cancel safety
///
/// Dropping it while the call is queued (no instance ready yet) drops
/// the call unsent: no instance sees it. Dropping it after the call was
/// sent resets its HTTP/2 stream, as with tonic's own channel: the server
/// may have received (and acted on) the request.
pub struct GrpcResponseFuture {
    state: Sending,
}

enum Sending {
    /// Waiting for the driver to send the call.
    Queued(oneshot::Receiver<Dispatched<http::Response<Body>>>),
    /// Sent: waiting for its response.
    Sent(BoxFuture<Result<http::Response<Body>, BoxError>>),
}

impl Future for GrpcResponseFuture {
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                Sending::Queued(queued) => match std::task::ready!(Pin::new(queued).poll(cx)) {
                    Ok(Ok(sent)) => this.state = Sending::Sent(sent),
                    Ok(Err(error)) => return Poll::Ready(Err(error)),
                    Err(_) => return Poll::Ready(Err("the channel's driver is gone".into())),
                },
                Sending::Sent(sent) => return sent.as_mut().poll(cx),
            }
        }
    }
}

impl fmt::Debug for GrpcResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcResponseFuture").finish_non_exhaustive()
    }
}

impl RedisResolver {
    /// A [`GrpcChannel`] over `service`'s instances that follows the
    /// registry: [`changes`](Self::changes) given to
    /// [`GrpcChannel::new`], whose docs say how it balances, what it does
    /// when an instance dies, what it spawns and when that ends. Fails
    /// like [`watch`](Self::watch). Feature `tonic`.
    ///
    /// ```no_run
    /// use tonic::transport::Endpoint;
    /// # use redis_discovery::RedisResolver;
    ///
    /// # async fn run() -> Result<(), redis_discovery::ResolveError> {
    /// let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
    /// let channel = resolver
    ///     .tonic_channel("greeter", |instance| {
    ///         Endpoint::from_shared(format!("http://{}", instance.addr()))
    ///     })
    ///     .await?;
    /// // A generated client takes it: `GreeterClient::new(channel)`.
    /// let client = tonic::client::Grpc::new(channel);
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`changes`](Self::changes): dropping the future before it
    /// completes makes no channel (and spawns nothing); a read it started
    /// goes on and caches the service as an ordinary cached service.
    pub async fn tonic_channel<S, F, E>(
        &self,
        service: S,
        endpoint: F,
    ) -> Result<GrpcChannel, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
        F: Fn(&Instance) -> Result<Endpoint, E> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let changes = self.changes(service).await?;
        let again = resubscribe(self.downgrade(), changes.service().clone());
        Ok(GrpcChannel::new(changes.resubscribing(again), endpoint))
    }
}

/// How long to wait before watching the service again after a failure.
const RESUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// A new watch of `service` when the stream's ends while the resolver
/// lives (its cache entry was evicted): retried while Redis cannot be
/// read, given up once the resolver is dropped or shut down. Holds the
/// resolver only while asking it, so the channel does not keep it alive.
fn resubscribe(resolver: WeakResolver, service: ServiceName) -> Resubscribe {
    Box::new(move || {
        let (resolver, service) = (resolver.clone(), service.clone());
        Box::pin(async move {
            loop {
                let watched = match resolver.upgrade() {
                    Some(resolver) => resolver.watch(service.clone()).await,
                    None => return None,
                };
                match watched {
                    Ok(snapshots) => {
                        tracing::debug!(%service, "tonic channel: watching the service again");
                        return Some(snapshots);
                    }
                    Err(ResolveError::Shutdown) => return None,
                    Err(error) => {
                        tracing::warn!(%service, %error, retry_in = ?RESUBSCRIBE_RETRY, "tonic channel: cannot watch the service again");
                        tokio::time::sleep(RESUBSCRIBE_RETRY).await;
                    }
                }
            }
        })
    })
}
