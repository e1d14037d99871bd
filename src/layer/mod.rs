//! The tower layer that sends requests for `http://SERVICE/…` to a live
//! instance of SERVICE.
//!
//! ```
//! use std::convert::Infallible;
//! use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
//! use redis_discovery::resolver::StaticResolver;
//! use redis_discovery::Instance;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Any resolver: RedisResolver in production, a fixed map here.
//! let resolver = StaticResolver::new()
//!     .with_service("orders", [Instance::new("10.0.0.7:8080")?])?;
//!
//! // The inner service would be a hyper or reqwest client; this one echoes
//! // where the request was sent.
//! let client = service_fn(|req: http::Request<String>| async move {
//!     let echo = format!("{} Host: {:?}", req.uri(), req.headers()["host"]);
//!     Ok::<_, Infallible>(http::Response::new(echo))
//! });
//! let client = DiscoveryLayer::new(resolver).layer(client);
//!
//! let request = http::Request::get("http://orders/v1/items?page=2")
//!     .discover() // flag it; unflagged requests pass through untouched
//!     .body(String::new())?;
//! let sent_to = client.oneshot(request).await?.into_body();
//! assert_eq!(sent_to, r#"http://10.0.0.7:8080/v1/items?page=2 Host: "orders""#);
//! # Ok(())
//! # }
//! ```
//!
//! # The request path
//!
//! 1. A request not flagged with [`Discover`] (and the layer not set to
//!    [`discover_all`](DiscoveryLayerBuilder::discover_all)) goes to the
//!    inner service untouched.
//! 2. A flagged request's URI host is the service name. A URI that names a
//!    port (`http://orders:8443/`) is refused with
//!    [`DiscoveryError::PortInUri`]: the request goes to the port its
//!    instance registered, so the port would be ignored. The scheme's
//!    default port (80 for `http`, 443 for `https`) counts as none. The
//!    resolver's cached snapshot is read without a lock or I/O and the
//!    balancer picks from a picker built once per snapshot. On a cache miss the request
//!    waits for one resolve shared by all callers of that service. The
//!    layer takes the flag off, so the routed request passes through any
//!    discovery layer further in.
//! 3. The URI authority becomes the instance's `host:port`; scheme, path
//!    and query stay. `Host` is set to the service name unless configured
//!    otherwise ([`HostHeader`]) or the request is HTTP/2 (whose
//!    `:authority` must match `Host`).
//! 4. The attempt has [`attempt_timeout`](DiscoveryLayerBuilder::attempt_timeout)
//!    (15 s) to send its response headers. How it ends is judged once, in
//!    one place for the layer and the reqwest middleware (see
//!    [Failure handling](#failure-handling)): a success, a failure of the
//!    instance (fed to outlier detection), or neither.
//! 5. A failed attempt is retried on an instance the request has not
//!    tried yet when the request did not reach a server (no connection:
//!    any method) or may have but its method is idempotent (GET, HEAD,
//!    OPTIONS, TRACE, PUT, DELETE: a lost connection, a timeout, a
//!    502/503/504 response), its body can be replayed ([`ReplayBody`]),
//!    an instance is left, [`retries`](DiscoveryLayerBuilder::retries) are
//!    left, and the [`RetryBudget`] allows. Otherwise the request gets the
//!    attempt's own error or response.
//! 6. No instance to pick, a failed resolve, a URI without host or with a
//!    port: a [`DiscoveryError`] (as tower's `BoxError`), never a panic.
//!
//! `https://SERVICE/…` needs a connector that verifies the instance's
//! certificate against the service name: the URI carries the instance's
//! address, which is what TLS checks by default. The feature `rustls` has
//! one (`redis_discovery::https::ServiceTls`, hyper-util's client, HTTP/1):
//! with it the layer writes an `https` request's authority as
//! `SERVICE@HOST:PORT`, so connections are pooled per instance while the
//! connector checks the certificate against the service's name.
//!
//! # Failure handling
//!
//! | mechanism | default | counterpart |
//! | --- | --- | --- |
//! | [`attempt_timeout`](DiscoveryLayerBuilder::attempt_timeout): time from sending an attempt to its response headers | 15 s | Envoy's route `timeout` (per try: `per_try_timeout`) |
//! | [`failure_status`](DiscoveryLayerBuilder::failure_status): which statuses are the instance's failure | 502, 503, 504 | Envoy's `gateway-error` |
//! | retries on another instance ([`retries`](DiscoveryLayerBuilder::retries)) | 2, never the same instance twice | Envoy's `retry_on: connect-failure,reset,gateway-error` with `previous_hosts` |
//! | [`RetryBudget`]: retries as a share of requests | 20 % plus 10/s over 10 s | Finagle's `RetryBudget`, tower's `TpsBudget` (used as is) |
//! | [`OutlierDetection`]: eject after consecutive gateway failures; a refused connection at once | 5 in a row; 10 s doubling to 160 s | Envoy's `consecutive_gateway_failure`, `base_ejection_time` |
//! | [`OutlierDetection::max_ejected_percent`] | 50 % | Envoy's `max_ejection_percent` (10 %) |
//! | [`OutlierDetection::panic_threshold_percent`] | 50 % | Envoy's `healthy_panic_threshold` |
//! | [`LeastLoaded`](crate::balance::LeastLoaded): weighted power of two choices over peak-EWMA latency × requests in flight | off (weighted random is the default) | Finagle's and Linkerd's P2C over peak EWMA, made weighted |
//!
//! Failures are classified from the error's source chain: `is_connect()`
//! of hyper-util's (always recognized, whatever the cargo features) and
//! reqwest's errors, `std::io::Error` kinds (refused, reset, aborted,
//! broken pipe, unexpected end, timed out, unreachable) and hyper's own
//! errors (a connection closed before the response). A client's own
//! timeout (reqwest's `is_timeout()`, tower's `Elapsed`, an I/O timeout)
//! is an attempt timeout; retried, it starts afresh, so a request may take
//! up to (retries + 1) × that timeout.
//!
//! tower's pieces where they fit: the retry budget is tower's `TpsBudget`,
//! used as is. `tower::retry::Retry` is not used: its service clones the
//! inner service and the policy for every request (a hyper-util client
//! clone is several `Arc`s), where this layer clones them only for a retry.
//! Nor is its `Policy` trait: a policy sees the request and the result but
//! not the instance the attempt went to, which the verdict must feed, and
//! its `retry` returns a future (a backoff) the layer has no use for, since
//! a retry goes to another instance at once. `tower::timeout::Timeout`
//! outside the layer cannot eject or retry; inside, a timer per attempt is
//! what it would be too, and this one is armed only once the attempt is
//! pending (an attempt answered at once registers no timer).
//!
//! # Cost
//!
//! Routing a cache hit adds no allocation or I/O: one lookup in the layer's
//! picker cache (lock-free; by service, and tag filter if the request has
//! its own), one resolver lookup, one draw, the URI rewrite and the `Host`
//! header. The retry budget's deposit takes tower's `TpsBudget` lock (one
//! per layer, held for a few instructions), and the retry copy below
//! allocates; an attempt that is not answered at once arms one timer. The picker cache holds, per service, the snapshot its picker
//! was built for; over a `RedisResolver`, once a lookup confirmed that
//! snapshot, it is reused without the resolver lookup for as long as the
//! resolver would still return it (one flag read, and a clock read if
//! `max_staleness` is set: a changed list, an eviction or a shutdown ends
//! it at once). To be able to retry, a request keeps a copy of itself (its
//! head and a [`ReplayBody`] copy), made only when an instance it has not
//! tried yet could take the retry; set
//! [`retries(0)`](DiscoveryLayerBuilder::retries) to skip it. A retry goes
//! through a clone of the inner service made when the layer was applied, so
//! requests that need none never clone it; only a retry allocates the set
//! of instances the request has tried. `BENCHMARKS.md` has the numbers.
//!
//! # Cancel safety
//!
//! Dropping a [`ResponseFuture`] (a timeout, a client that went away) at
//! any point leaves nothing behind in the layer, and the same holds for the
//! future of [`DiscoveryMiddleware`] (feature `reqwest-middleware`):
//!
//! - during an attempt, the inner service's future is dropped with it, so
//!   the attempt ends as the client ends any request whose future is
//!   dropped; no retry follows; its timer is deregistered, and the
//!   attempt leaves the instance's count of requests in flight (for
//!   [`LeastLoaded`](crate::balance::LeastLoaded), which counts the time it
//!   ran as a failed attempt's: it may raise the latency estimate, never
//!   lower it);
//! - during a resolve (a cache miss), only this request stops waiting: the
//!   shared resolve goes on for the other callers (`RedisResolver` reads in
//!   its own task and fills its cache, unless the read was still queued
//!   behind a slow Redis and would be the service's first);
//! - the request, its replay copy, the clone of the inner service and the
//!   set of tried instances are freed with the future.
//!
//! Ejections, failure counts and retry-budget withdrawals made by the
//! request's ended attempts stay: they are about the instances and the
//! layer, not the request. The layer spawns no task and holds
//! no lock across an `.await`.
//!
//! # reqwest
//!
//! `reqwest::Client` is a `tower::Service<reqwest::Request>`, so the same
//! layer wraps it (feature `reqwest`). reqwest hides request extensions, so
//! a reqwest request is flagged with a header the layer removes before
//! sending: `client.get("http://orders/").discover()` ([`DiscoverExt`]).
//! With the feature `reqwest-middleware`,
//! [`DiscoveryLayer::middleware`] gives a `reqwest_middleware::Middleware`:
//! not a second implementation, it runs the rest of the middleware chain
//! as the inner service of this layer's [`DiscoveryService`], so both
//! share one retry loop ([`ResponseFuture`]) and one failure classifier.

mod attempts;
mod budget;
mod discovery_layer;
mod error;
mod failure;
mod future;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod options;
mod outlier;
mod pick;
mod picker_cache;
mod replay;
mod request;
#[cfg(feature = "reqwest")]
mod reqwest;
mod response;
mod router;
mod service;
mod verdict;

pub use budget::RetryBudget;
pub use discovery_layer::{DiscoveryLayer, DiscoveryLayerBuilder};
pub use error::DiscoveryError;
pub use future::ResponseFuture;
#[cfg(feature = "reqwest-middleware")]
pub use middleware::DiscoveryMiddleware;
pub use options::HostHeader;
pub use outlier::OutlierDetection;
pub use replay::ReplayBody;
pub use request::{Discover, DiscoverRequest, HashKey, DISCOVER_HEADER};
pub use response::DiscoverResponse;
pub use service::DiscoveryService;

/// The layer's error type is tower's: a [`DiscoveryError`] or the inner
/// service's error.
pub use tower::BoxError;

/// Flags a request for discovery in one call: `.discover()`.
///
/// For `http::Request` and its builder it adds the [`Discover`] extension;
/// for reqwest (feature `reqwest`) it adds the [`DISCOVER_HEADER`] that the
/// layer removes before sending.
pub trait DiscoverExt {
    /// Flags the request for discovery.
    fn discover(self) -> Self;
}

impl DiscoverExt for http::request::Builder {
    fn discover(self) -> Self {
        self.extension(Discover)
    }
}

impl<B> DiscoverExt for http::Request<B> {
    fn discover(mut self) -> Self {
        self.extensions_mut().insert(Discover);
        self
    }
}
