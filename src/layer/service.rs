//! [`DiscoveryService`]: the middleware itself.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::error::DiscoveryError;
use super::future::{Ctx, ResponseFuture};
use super::request::DiscoverRequest;
use super::router::{PickRequest, Route};
use super::BoxError;
use crate::instance::ServiceName;

/// Sends requests flagged for discovery to an instance of the service named
/// by their URI host; passes other requests through untouched.
///
/// Made by [`DiscoveryLayer`](super::DiscoveryLayer); see the
/// [module docs](super) for an example.
pub struct DiscoveryService<S> {
    inner: S,
    router: Arc<dyn Route>,
}

impl<S> DiscoveryService<S> {
    pub(crate) fn new(inner: S, router: Arc<dyn Route>) -> Self {
        DiscoveryService { inner, router }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for DiscoveryService<S> {
    fn clone(&self) -> Self {
        DiscoveryService {
            inner: self.inner.clone(),
            router: self.router.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for DiscoveryService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryService")
            .field("inner", &self.inner)
            .field("options", self.router.options())
            .finish()
    }
}

impl<S, Req> Service<Req> for DiscoveryService<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: DiscoverRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let options = self.router.options();
        if !req.take_flag() && !options.discover_all {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let Some(host) = req.host() else {
            return ResponseFuture::failed(DiscoveryError::NoHost {
                uri: req.uri_string(),
            });
        };
        let key = if self.router.uses_key() {
            req.hash_key(options.hash_header.as_ref())
        } else {
            None
        };
        // Only a request that carries its own filter pays for cloning it.
        let filter = req.tag_filter().cloned();
        let first = PickRequest {
            key,
            filter: filter.as_ref().or(options.filter.as_ref()),
            attempt: 0,
            avoid: None,
        };
        match self.router.pick_cached(host, first) {
            // Hit: route now and call the ready inner service in place.
            Some(Ok(picked)) => {
                let span = tracing::debug_span!("discovery", service = %picked.service(), instance = %picked.authority());
                let retry = options.retries > 0;
                let mut ctx = Ctx::new(
                    retry.then(|| self.router.clone()),
                    options,
                    None,
                    retry.then(|| self.inner.clone()),
                    &req,
                    key,
                    filter,
                );
                match ctx.route(req, picked) {
                    Ok(req) => {
                        let fut = span.in_scope(|| self.inner.call(req));
                        ResponseFuture::call(fut, ctx, span)
                    }
                    Err(e) => ResponseFuture::failed(e),
                }
            }
            Some(Err(e)) => ResponseFuture::failed(e),
            // Miss: the ready inner service waits in the future for the resolve.
            None => {
                let service = match ServiceName::new(host) {
                    Ok(s) => s,
                    Err(e) => return ResponseFuture::failed(e.into()),
                };
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let fut = self.router.clone().resolve(service.clone());
                let mut ctx = Ctx::new(
                    Some(self.router.clone()),
                    options,
                    Some(service),
                    Some(ready),
                    &req,
                    key,
                    filter,
                );
                ctx.pending = Some(Box::new(req));
                ResponseFuture::resolve(fut, ctx)
            }
        }
    }
}
