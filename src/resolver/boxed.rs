//! [`BoxResolver`]: any resolver behind one type, for choosing one at run
//! time or keeping different ones in one collection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Resolve, Snapshot};
use crate::error::ResolveError;
use crate::instance::ServiceName;

/// A type-erased [`Resolve`]: [`Resolve`] returns `impl Future`, so it
/// cannot be a `dyn Resolve`; this wraps any resolver behind one type.
/// Cheap to clone (one `Arc`).
///
/// [`cached`](Resolve::cached), the hot path, is one dynamic call more
/// than the inner resolver's; [`resolve`](Resolve::resolve) boxes its
/// future. Resolvers used directly pay nothing for this type.
///
/// ```
/// use std::convert::Infallible;
/// use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
/// use redis_discovery::resolver::{BoxResolver, StaticResolver};
/// use redis_discovery::Instance;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // One type whichever resolver the configuration picks: here a fixed
/// // map, in production `BoxResolver::new(RedisResolver::connect(url).await?)`.
/// let fixed = StaticResolver::new().with_service("orders", [Instance::new("10.0.0.7:8080")?])?;
/// let resolver: BoxResolver = BoxResolver::new(fixed);
/// let client = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, Infallible>(http::Response::new(req.uri().to_string()))
/// });
/// let client = DiscoveryLayer::new(resolver).layer(client);
/// let request = http::Request::get("http://orders/").discover().body(())?;
/// assert_eq!(client.oneshot(request).await?.into_body(), "http://10.0.0.7:8080/");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BoxResolver {
    inner: Arc<dyn DynResolve>,
}

impl BoxResolver {
    /// Wraps `resolver`.
    pub fn new<R: Resolve>(resolver: R) -> Self {
        BoxResolver {
            inner: Arc::new(resolver),
        }
    }
}

type BoxedResolve<'a> = Pin<Box<dyn Future<Output = Result<Snapshot, ResolveError>> + Send + 'a>>;

/// [`Resolve`] made object-safe: the future boxed.
trait DynResolve: Send + Sync + 'static {
    /// The service is owned, so the future borrows the resolver alone.
    fn resolve_boxed(&self, service: ServiceName) -> BoxedResolve<'_>;
    fn cached_dyn(&self, service: &str) -> Option<Snapshot>;
}

impl<R: Resolve> DynResolve for R {
    fn resolve_boxed(&self, service: ServiceName) -> BoxedResolve<'_> {
        Box::pin(async move { self.resolve(&service).await })
    }

    #[inline]
    fn cached_dyn(&self, service: &str) -> Option<Snapshot> {
        self.cached(service)
    }
}

impl Resolve for BoxResolver {
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send {
        self.inner.resolve_boxed(service.clone())
    }

    #[inline]
    fn cached(&self, service: &str) -> Option<Snapshot> {
        self.inner.cached_dyn(service)
    }
}

impl fmt::Debug for BoxResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxResolver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, Layer, ServiceExt};

    use super::BoxResolver;
    use crate::layer::{DiscoverExt, DiscoveryLayer};
    use crate::resolver::{Resolve, StaticResolver};
    use crate::Instance;

    fn boxed() -> BoxResolver {
        let instances = [Instance::new("10.0.0.7:8080").unwrap()];
        BoxResolver::new(
            StaticResolver::new()
                .with_service("orders", instances)
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn answers_as_the_inner_resolver() {
        let resolver = boxed();
        let cached = resolver.cached("orders").unwrap();
        let resolved = resolver.resolve(&"orders".parse().unwrap()).await.unwrap();
        assert!(crate::resolver::Snapshot::ptr_eq(&cached, &resolved));
        assert!(resolver.clone().cached("nobody").is_none());
        assert!(resolver.resolve(&"nobody".parse().unwrap()).await.is_err());
        assert_eq!(format!("{resolver:?}"), "BoxResolver { .. }");
    }

    #[tokio::test]
    async fn the_layer_routes_over_it() {
        let client = service_fn(|req: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(req.uri().to_string()))
        });
        let client = DiscoveryLayer::new(boxed()).layer(client);
        for _ in 0..3 {
            let request = http::Request::get("http://orders/x")
                .discover()
                .body(())
                .unwrap();
            let sent_to = client.clone().oneshot(request).await.unwrap();
            assert_eq!(sent_to.into_body(), "http://10.0.0.7:8080/x");
        }
    }
}
