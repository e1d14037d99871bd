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
//!     Ok::<_, Infallible>(format!("{} Host: {:?}", req.uri(), req.headers()["host"]))
//! });
//! let client = DiscoveryLayer::new(resolver).layer(client);
//!
//! let request = http::Request::get("http://orders/v1/items?page=2")
//!     .discover() // flag it; unflagged requests pass through untouched
//!     .body(String::new())?;
//! let sent_to = client.oneshot(request).await?;
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
//! 4. If the instance refuses the connection, it is ejected (skipped for
//!    10 s, doubling on repeats, never more than half the usable instances)
//!    and a request whose body can be replayed ([`ReplayBody`]) is sent to
//!    an instance it has not tried yet, as long as one is left: retries end
//!    when their count ([`retries`](DiscoveryLayerBuilder::retries)) is
//!    used up or every instance was tried once. A request that may have
//!    reached a server is retried only if its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT,
//!    DELETE) and the connection closed before any response
//!    ([`retry_lost_connections`](DiscoveryLayerBuilder::retry_lost_connections)).
//! 5. No instance to pick, a failed resolve, a URI without host or with a
//!    port: a [`DiscoveryError`] (as tower's `BoxError`), never a panic.
//!
//! `https://SERVICE/…` works only with a connector that verifies the
//! instance's certificate against the service name: the URI carries the
//! instance's address, which is what TLS checks by default.
//!
//! # Cost
//!
//! A cache hit adds no allocation, lock or I/O: one lookup in the layer's
//! picker cache (lock-free; by service, and tag filter if the request has
//! its own), one resolver lookup, one draw, the URI rewrite and the `Host`
//! header. The picker cache holds, per service, the snapshot its picker
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
//!   dropped; no retry follows;
//! - during a resolve (a cache miss), only this request stops waiting: the
//!   shared resolve goes on for the other callers (`RedisResolver` reads in
//!   its own task and fills its cache, unless the read was still queued
//!   behind a slow Redis and would be the service's first);
//! - the request, its replay copy, the clone of the inner service and the
//!   set of tried instances are freed with the future.
//!
//! Ejections made by the request's failed attempts stay in force: they are
//! about the instance, not the request. The layer spawns no task and holds
//! no lock across an `.await`.
//!
//! # reqwest
//!
//! `reqwest::Client` is a `tower::Service<reqwest::Request>`, so the same
//! layer wraps it (feature `reqwest`). reqwest hides request extensions, so
//! a reqwest request is flagged with a header the layer removes before
//! sending: `client.get("http://orders/").discover()` ([`DiscoverExt`]).
//! With the feature `reqwest-middleware`,
//! [`DiscoveryLayer::middleware`] gives a `reqwest_middleware::Middleware`.

mod attempts;
mod discovery_layer;
mod error;
mod failure;
mod future;
mod options;
mod outlier;
mod pick;
mod picker_cache;
mod replay;
mod request;
#[cfg(feature = "reqwest")]
mod reqwest;
mod router;
mod service;

pub use discovery_layer::{DiscoveryLayer, DiscoveryLayerBuilder};
pub use error::DiscoveryError;
pub use future::ResponseFuture;
pub use options::HostHeader;
pub use outlier::OutlierDetection;
pub use replay::ReplayBody;
pub use request::{Discover, DiscoverRequest, HashKey, DISCOVER_HEADER};
#[cfg(feature = "reqwest-middleware")]
pub use reqwest::DiscoveryMiddleware;
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
