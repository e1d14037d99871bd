//! [`DiscoveryLayer`] and its builder.

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::budget::{RetryBudget, RetryTokens};
use super::options::{HostHeader, Options};
use super::outlier::OutlierDetection;
use super::router::{Route, Router};
use super::service::DiscoveryService;
use crate::balance::{Balance, Fallback, TagFilter, WeightedRandom};
use crate::resolver::Resolve;

/// A tower [`Layer`] that routes requests for `http://SERVICE/…` to a live
/// instance of SERVICE. See the [module docs](super).
///
/// Clones share the picker cache and the passive-health state.
#[derive(Clone)]
pub struct DiscoveryLayer {
    router: Arc<dyn Route>,
}

impl DiscoveryLayer {
    /// A layer with the default options (see [`DiscoveryLayerBuilder`]):
    /// weighted random, only flagged requests, `Host` set to the service
    /// name, a 15 s attempt timeout, 2 retries within a 20 % budget,
    /// outlier detection after 5 gateway failures in a row.
    pub fn new<R: Resolve>(resolver: R) -> Self {
        Self::builder(resolver).build()
    }

    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn router(&self) -> Arc<dyn Route> {
        self.router.clone()
    }

    /// Starts configuring a layer.
    pub fn builder<R: Resolve>(resolver: R) -> DiscoveryLayerBuilder<R, WeightedRandom> {
        DiscoveryLayerBuilder {
            resolver,
            balance: WeightedRandom::new(),
            options: Options::default(),
        }
    }
}

impl<S: Clone> Layer<S> for DiscoveryLayer {
    type Service = DiscoveryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DiscoveryService::new(inner, self.router.clone())
    }
}

impl fmt::Debug for DiscoveryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryLayer")
            .field("options", self.router.options())
            .finish()
    }
}

/// Options of a [`DiscoveryLayer`].
///
/// | option | default |
/// | --- | --- |
/// | [`balance`](Self::balance) | [`WeightedRandom`] |
/// | [`tag_filter`](Self::tag_filter) | none |
/// | [`fallback`](Self::fallback) | [`Fallback::Fail`] |
/// | [`host_header`](Self::host_header) | [`HostHeader::Service`] |
/// | [`discover_all`](Self::discover_all) | `false`: only requests flagged with [`Discover`](super::Discover) |
/// | [`hash_header`](Self::hash_header) | none |
/// | [`retries`](Self::retries) | 2 |
/// | [`retry_lost_connections`](Self::retry_lost_connections) | `true` (idempotent methods only) |
/// | [`attempt_timeout`](Self::attempt_timeout) | 15 s |
/// | [`failure_status`](Self::failure_status) | 502, 503, 504 |
/// | [`retry_budget`](Self::retry_budget) | [`RetryBudget::new`]: 20 % of requests plus 10 per second |
/// | [`outlier_detection`](Self::outlier_detection) | [`OutlierDetection::new`]: eject after 5 gateway failures in a row (a refused connection at once) for 10 s, doubling up to 160 s |
///
/// Every option accepts every value, so none returns an error: a value
/// beyond an option's range is clamped to it, as the option says
/// ([`OutlierDetection`]: ejections at most [`OutlierDetection::LONGEST`];
/// [`retries`](Self::retries): at most one attempt per instance). No value
/// makes a request panic or retry without end.
#[must_use]
pub struct DiscoveryLayerBuilder<R, B> {
    resolver: R,
    balance: B,
    options: Options,
}

impl<R: Resolve, B: Balance> DiscoveryLayerBuilder<R, B> {
    /// The balancer, e.g. [`RoundRobin`](crate::balance::RoundRobin) or
    /// [`ConsistentHash`](crate::balance::ConsistentHash).
    pub fn balance<B2: Balance>(self, balance: B2) -> DiscoveryLayerBuilder<R, B2> {
        DiscoveryLayerBuilder {
            resolver: self.resolver,
            balance,
            options: self.options,
        }
    }

    /// Only instances whose tags match (a request may carry its own
    /// [`TagFilter`] extension instead).
    pub fn tag_filter(mut self, filter: TagFilter) -> Self {
        self.options.filter = Some(filter);
        self
    }

    /// What to do when no instance matches the tag filter.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.options.fallback = fallback;
        self
    }

    /// What `Host` header discovered requests carry.
    pub fn host_header(mut self, host: HostHeader) -> Self {
        self.options.host = host;
        self
    }

    /// Discover every request (its URI host is always a service name), not
    /// only flagged ones.
    pub fn discover_all(mut self, all: bool) -> Self {
        self.options.discover_all = all;
        self
    }

    /// Take the consistent-hash key from this request header.
    pub fn hash_header(mut self, header: HeaderName) -> Self {
        self.options.hash_header = Some(header);
        self
    }

    /// How many other instances to try when an attempt fails before the
    /// request can have been processed: the connection was refused (any
    /// method), or, for idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT,
    /// DELETE), a connection closed before any response (see
    /// [`retry_lost_connections`](Self::retry_lost_connections)). Only
    /// requests whose body can be replayed ([`ReplayBody`](super::ReplayBody))
    /// are retried; the copy is made before each send, so prefer `Bytes` or
    /// `Full<Bytes>` bodies (cheap to clone) over `String`/`Vec<u8>` for
    /// large uploads. `0` disables retries.
    ///
    /// Within one request every retry goes to an instance not tried yet,
    /// and retries end once none is left: a request makes at most one
    /// attempt per instance that may be picked, so any count is accepted
    /// (`u32::MAX` means "every instance once").
    pub fn retries(mut self, retries: u32) -> Self {
        self.options.retries = retries;
        self
    }

    /// Whether idempotent requests are also retried when a connection
    /// closed or was reset before any response (default `true`: a pooled
    /// keep-alive connection to a crashed instance fails that way). Such a
    /// request may have reached the server; turn this off if your PUT or
    /// DELETE handlers are not truly idempotent.
    pub fn retry_lost_connections(mut self, retry: bool) -> Self {
        self.options.rules.retry_lost_connections = retry;
        self
    }

    /// When instances are ejected (skipped), for how long, and how many at
    /// once: see [`OutlierDetection`]. [`OutlierDetection::disabled`]
    /// turns ejection off.
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.options.outlier = outlier;
        self
    }

    /// The time limit of one attempt, from sending it to its response
    /// headers (the body's streaming is not limited). Default 15 s
    /// (Envoy's route timeout); `None` turns it off. Clamped: at least
    /// 1 ms, at most [`OutlierDetection::LONGEST`].
    ///
    /// An attempt that times out counts as a gateway failure of its
    /// instance, and an idempotent request whose body can be replayed is
    /// retried on another instance; otherwise the request fails with
    /// [`DiscoveryError::AttemptTimeout`](super::DiscoveryError::AttemptTimeout).
    /// The timer is tokio's: outside a tokio runtime, or in one built
    /// without `enable_time`, attempts have no timeout (a warning says so
    /// once per thread; see the CHANGELOG for `panic = "abort"` builds).
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.rules.timeout =
            timeout.map(|t| t.clamp(Duration::from_millis(1), OutlierDetection::LONGEST));
        self
    }

    /// Which response statuses are failures of the instance that sent them
    /// (default: 502, 503 and 504). Such a response counts toward the
    /// instance's ejection ([`OutlierDetection`]) and, for an idempotent
    /// request whose body can be replayed, is retried on another instance
    /// (the last attempt's response is returned as it is).
    ///
    /// ```
    /// use redis_discovery::layer::DiscoveryLayer;
    /// use redis_discovery::resolver::StaticResolver;
    ///
    /// // Also count 500 and 429 against the instance.
    /// let layer = DiscoveryLayer::builder(StaticResolver::new())
    ///     .failure_status(|status| status.is_server_error() || status.as_u16() == 429)
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn failure_status(mut self, is_failure: fn(http::StatusCode) -> bool) -> Self {
        self.options.rules.is_failure = is_failure;
        self
    }

    /// How many retries the layer may make, as a share of its requests
    /// (default: 20 % plus 10 per second, over 10 s). See [`RetryBudget`].
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.options.budget = RetryTokens::new(budget);
        self
    }

    /// The client's connector is a [`ServiceTls`](crate::https::ServiceTls)
    /// one (feature `rustls`): an `https` request's authority becomes
    /// `~SERVICE@HOST:PORT`, so that connections are pooled per instance
    /// while the connector checks the certificate against the service's
    /// name. Off by default: other connectors, and HTTP/2 (which would send
    /// the user info in `:authority`), must not see it.
    #[cfg(feature = "rustls")]
    pub fn service_tls(mut self, on: bool) -> Self {
        self.options.service_tls = on;
        self
    }

    /// Builds the layer.
    pub fn build(self) -> DiscoveryLayer {
        DiscoveryLayer {
            router: Arc::new(Router::new(self.resolver, self.balance, self.options)),
        }
    }
}

impl<R, B: fmt::Debug> fmt::Debug for DiscoveryLayerBuilder<R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryLayerBuilder")
            .field("balance", &self.balance)
            .field("options", &self.options)
            .finish()
    }
}
