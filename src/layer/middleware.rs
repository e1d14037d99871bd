//! The discovery layer as a `reqwest_middleware::Middleware` (feature
//! `reqwest-middleware`). Not a second retry loop: the middleware wraps
//! the rest of the middleware chain in a tower service and sends the
//! request through the layer's own [`DiscoveryService`], so picking,
//! timeouts, outlier detection, retries and their budget are the layer's.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use tower_service::Service;

use super::error::DiscoveryError;
use super::request::sealed::{Internal, RoutableRequest};
use super::request::{Discover, HashKey};
use super::router::Route;
use super::service::DiscoveryService;
use super::{BoxError, DiscoveryLayer};
use crate::balance::TagFilter;

/// Discovery as a `reqwest_middleware::Middleware`: a request flagged
/// with the [`Discover`] extension
/// (`client.get("http://orders/").with_extension(Discover)`) or with
/// `.discover()` goes to an instance of the service, with the same
/// picking, timeouts, ejection, retries and retry budget as the layer.
///
/// ```no_run
/// use redis_discovery::layer::{Discover, DiscoveryLayer};
/// use redis_discovery::RedisResolver;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(DiscoveryLayer::new(resolver).middleware())
///     .build();
/// let body = client
///     .get("http://orders/v1/items")
///     .with_extension(Discover)
///     .send()
///     .await?
///     .text()
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// Attempts run the rest of the chain one after another with the request's
/// extensions, as a retry middleware passes them: an attempt sees what the
/// one before it left, and the request has the last attempt's afterwards.
/// The [`Discover`] flag is taken off, as the layer takes it off an
/// `http::Request`, so a discovery middleware further in leaves the routed
/// request alone.
#[derive(Clone)]
pub struct DiscoveryMiddleware {
    router: Arc<dyn Route>,
}

impl DiscoveryLayer {
    /// The same discovery as a `reqwest_middleware::Middleware`, sharing
    /// this layer's pickers, health state and retry budget.
    pub fn middleware(&self) -> DiscoveryMiddleware {
        DiscoveryMiddleware {
            router: self.router(),
        }
    }
}

impl fmt::Debug for DiscoveryMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryMiddleware")
            .field("options", self.router.options())
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for DiscoveryMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let flagged = req.take_flag(Internal) | extensions.remove::<Discover>().is_some();
        if !flagged && !self.router.options().discover_all {
            return next.run(req, extensions).await;
        }
        let request = FlaggedRequest {
            key: extensions.get::<HashKey>().map(|k| k.0),
            filter: extensions.get::<TagFilter>().cloned(),
            request: req,
        };
        let chain = Chain {
            next,
            extensions: Arc::new(Mutex::new(std::mem::take(extensions))),
        };
        let slot = chain.extensions.clone();
        let mut service = DiscoveryService::new(chain, self.router.clone());
        let result = service.call(request).await;
        *extensions = std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
        result.map_err(into_middleware_error)
    }
}

/// The layer's error as the middleware's: the chain's own errors as they
/// were, the layer's as `Error::Middleware`.
fn into_middleware_error(error: BoxError) -> reqwest_middleware::Error {
    match error.downcast::<reqwest_middleware::Error>() {
        Ok(error) => *error,
        Err(error) => match error.downcast::<DiscoveryError>() {
            Ok(error) => reqwest_middleware::Error::middleware(*error),
            Err(error) => reqwest_middleware::Error::middleware(LayerError(error)),
        },
    }
}

/// Any other error of the layer, as a `std::error::Error`.
#[derive(Debug)]
struct LayerError(BoxError);

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A request the middleware found flagged, with what its extensions say
/// (reqwest requests carry none of their own).
struct FlaggedRequest {
    request: reqwest::Request,
    key: Option<u64>,
    filter: Option<TagFilter>,
}

impl RoutableRequest for FlaggedRequest {
    fn take_flag(&mut self, _: Internal) -> bool {
        true
    }

    fn host(&self, _: Internal) -> Option<&str> {
        self.request.host(Internal)
    }

    fn named_port(&self, _: Internal) -> Option<String> {
        self.request.named_port(Internal)
    }

    fn uri_string(&self, _: Internal) -> String {
        self.request.uri_string(Internal)
    }

    fn is_idempotent(&self, _: Internal) -> bool {
        self.request.is_idempotent(Internal)
    }

    fn tag_filter(&self, _: Internal) -> Option<&TagFilter> {
        self.filter.as_ref()
    }

    fn hash_key(&self, header: Option<&HeaderName>, _: Internal) -> Option<u64> {
        self.key.or_else(|| self.request.hash_key(header, Internal))
    }

    fn route_to(
        &mut self,
        authority: &Authority,
        tls_authority: Option<&Authority>,
        host: Option<&HeaderValue>,
        _: Internal,
    ) -> Result<(), DiscoveryError> {
        self.request
            .route_to(authority, tls_authority, host, Internal)
    }

    fn replay(&self, _: Internal) -> Option<Self> {
        Some(FlaggedRequest {
            request: self.request.replay(Internal)?,
            key: self.key,
            filter: self.filter.clone(),
        })
    }
}

/// The rest of the middleware chain as a tower service: one attempt per
/// call, each with the extensions the previous attempt left.
#[derive(Clone)]
struct Chain<'a> {
    next: Next<'a>,
    extensions: Arc<Mutex<Extensions>>,
}

impl<'a> Service<FlaggedRequest> for Chain<'a> {
    type Response = reqwest::Response;
    type Error = reqwest_middleware::Error;
    type Future = BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: FlaggedRequest) -> Self::Future {
        let next = self.next.clone();
        let slot = self.extensions.clone();
        Box::pin(async move {
            let lock = || slot.lock().unwrap_or_else(PoisonError::into_inner);
            let mut extensions = lock().clone();
            let result = next.run(req.request, &mut extensions).await;
            *lock() = extensions;
            result
        })
    }
}
