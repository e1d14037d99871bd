//! reqwest support: flagging reqwest requests, and (feature
//! `reqwest-middleware`) a `reqwest_middleware::Middleware`.

use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;

use super::error::DiscoveryError;
use super::request::sealed::{Internal, RoutableRequest};
use super::request::{header_key, is_idempotent, set_host, DISCOVER_HEADER};
use super::DiscoverExt;

impl DiscoverExt for reqwest::RequestBuilder {
    fn discover(self) -> Self {
        self.header(DISCOVER_HEADER, HeaderValue::from_static("1"))
    }
}

impl DiscoverExt for reqwest::Request {
    fn discover(mut self) -> Self {
        self.headers_mut()
            .insert(DISCOVER_HEADER, HeaderValue::from_static("1"));
        self
    }
}

impl RoutableRequest for reqwest::Request {
    fn take_flag(&mut self, _: Internal) -> bool {
        self.headers_mut().remove(&DISCOVER_HEADER).is_some()
    }

    fn host(&self, _: Internal) -> Option<&str> {
        self.url().host_str()
    }

    fn named_port(&self, _: Internal) -> Option<String> {
        // `Url::port` is already `None` for the scheme's default.
        self.url().port().map(|port| port.to_string())
    }

    fn uri_string(&self, _: Internal) -> String {
        self.url().to_string()
    }

    fn is_idempotent(&self, _: Internal) -> bool {
        is_idempotent(self.method())
    }

    fn hash_key(&self, header: Option<&HeaderName>, _: Internal) -> Option<u64> {
        header_key(self.headers(), header)
    }

    fn route_to(
        &mut self,
        authority: &Authority,
        host: Option<&HeaderValue>,
        _: Internal,
    ) -> Result<(), DiscoveryError> {
        let fail = |reason: String| DiscoveryError::Rewrite {
            addr: authority.to_string(),
            reason,
        };
        let url = self.url_mut();
        url.set_host(Some(authority.host()))
            .map_err(|e| fail(e.to_string()))?;
        url.set_port(authority.port_u16())
            .map_err(|()| fail("the URL cannot take a port".into()))?;
        let version = self.version();
        set_host(self.headers_mut(), version, host);
        Ok(())
    }

    fn replay(&self, _: Internal) -> Option<Self> {
        self.try_clone()
    }
}

#[cfg(feature = "reqwest-middleware")]
pub use middleware::DiscoveryMiddleware;

#[cfg(feature = "reqwest-middleware")]
mod middleware {
    use std::fmt;
    use std::sync::Arc;

    use http::Extensions;
    use reqwest_middleware::{Middleware, Next};

    use super::super::attempts::Attempts;
    use super::super::error::DiscoveryError;
    use super::super::failure::{classify, Failure};
    use super::super::pick::Outcome;
    use super::super::request::sealed::{Internal, RoutableRequest};
    use super::super::request::{service_of, Discover, HashKey};
    use super::super::router::Route;
    use super::super::DiscoveryLayer;
    use crate::instance::ServiceName;

    /// Discovery as a `reqwest_middleware::Middleware`: a request flagged
    /// with the [`Discover`] extension
    /// (`client.get("http://orders/").with_extension(Discover)`) or with
    /// `.discover()` goes to an instance of the service, with the same
    /// picking, ejection and retries as the layer.
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
    #[derive(Clone)]
    pub struct DiscoveryMiddleware {
        router: Arc<dyn Route>,
    }

    impl DiscoveryLayer {
        /// The same discovery as a `reqwest_middleware::Middleware`, sharing
        /// this layer's pickers and health state.
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
            let options = self.router.options();
            let flagged = req.take_flag(Internal) | extensions.get::<Discover>().is_some();
            if !flagged && !options.discover_all {
                return next.run(req, extensions).await;
            }
            let fail = reqwest_middleware::Error::middleware;
            let host = service_of(&req).map_err(fail)?;
            let service = ServiceName::new(host).map_err(|e| fail(DiscoveryError::from(e)))?;
            let key = extensions
                .get::<HashKey>()
                .map(|k| k.0)
                .or_else(|| req.hash_key(options.hash_header.as_ref(), Internal));
            let filter = extensions
                .get::<crate::balance::TagFilter>()
                .cloned()
                .or_else(|| options.filter.clone());
            let mut attempts = Attempts::new();
            let first = attempts.request(key, filter.as_ref());
            let picked =
                match self.router.pick_cached(service.as_str(), first) {
                    Some(picked) => picked,
                    None => {
                        let snapshot = self.router.clone().resolve(service.clone()).await.map_err(
                            |source| {
                                fail(DiscoveryError::Resolve {
                                    service: service.to_string(),
                                    source,
                                })
                            },
                        )?;
                        self.router.pick_from(snapshot, first)
                    }
                };
            let mut picked = picked.map_err(fail)?;
            req.route_to(picked.authority(), picked.host(), Internal)
                .map_err(fail)?;
            // The layer's rules: a copy only when a retry could go to an
            // instance not tried yet; a retry that cannot fails with the
            // attempt's error.
            loop {
                let replay = if attempts.keeps_replay(options, &picked) {
                    req.replay(Internal)
                } else {
                    None
                };
                let idempotent = req.is_idempotent(Internal);
                let error = match next.clone().run(req, extensions).await {
                    Err(reqwest_middleware::Error::Reqwest(e)) => e,
                    other => return other,
                };
                let failure = classify(&error);
                if failure == Failure::Connect {
                    picked.record(Outcome::Refused);
                }
                let retryable = options.retries_after(failure, idempotent);
                let Some(copy) = replay.filter(|_| retryable) else {
                    return Err(reqwest_middleware::Error::Reqwest(error));
                };
                attempts.failed(&picked);
                let request = attempts.request(key, filter.as_ref());
                req = copy;
                match self.router.pick_retry(request, &picked) {
                    Some(retry)
                        if req
                            .route_to(retry.authority(), retry.host(), Internal)
                            .is_ok() =>
                    {
                        tracing::debug!(%service, failed = %picked.authority(), retry = %retry.authority(), %error, "retrying on another instance");
                        picked = retry;
                    }
                    _ => return Err(reqwest_middleware::Error::Reqwest(error)),
                }
            }
        }
    }
}
