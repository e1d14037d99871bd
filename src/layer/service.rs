//! [`DiscoveryService`]: the middleware itself.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower_service::Service;

use super::attempts::Attempts;
use super::future::{ResponseFuture, Retry};
use super::request::sealed::Internal;
use super::request::{service_of, DiscoverRequest};
use super::response::DiscoverResponse;
use super::router::Route;
use super::BoxError;
use crate::instance::ServiceName;

/// Sends requests flagged for discovery to an instance of the service named
/// by their URI host; passes other requests through untouched.
///
/// Made by [`DiscoveryLayer`](super::DiscoveryLayer); see the
/// [module docs](super) for an example.
///
/// A retry goes through a clone of the inner service made when the layer
/// was applied (cloned again for each retry), so a request that needs no
/// retry does not pay for cloning the inner service.
pub struct DiscoveryService<S> {
    inner: S,
    context: Arc<RoutingContext<S>>,
}

/// What the requests of one service (and its clones) share.
pub(crate) struct RoutingContext<S> {
    pub router: Arc<dyn Route>,
    /// The inner service to clone for a retry. In a mutex so the response
    /// future stays `Send` for services that are `Send` but not `Sync`
    /// (`BoxCloneService`); only a retry locks it.
    template: Mutex<S>,
}

impl<S: Clone> RoutingContext<S> {
    /// A fresh clone of the inner service, for a retry.
    pub(crate) fn service(&self) -> S {
        self.template
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: Clone> DiscoveryService<S> {
    pub(crate) fn new(inner: S, router: Arc<dyn Route>) -> Self {
        let template = Mutex::new(inner.clone());
        DiscoveryService {
            inner,
            context: Arc::new(RoutingContext { router, template }),
        }
    }
}

impl<S> DiscoveryService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. (Retries keep using the clone made when
    /// the layer was applied.)
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
            context: self.context.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for DiscoveryService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryService")
            .field("inner", &self.inner)
            .field("options", self.context.router.options())
            .finish()
    }
}

impl<S, Req> Service<Req> for DiscoveryService<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    S::Response: DiscoverResponse,
    Req: DiscoverRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let router = &self.context.router;
        let options = router.options();
        if !req.take_flag(Internal) && !options.discover_all {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let host = match service_of(&req) {
            Ok(host) => host,
            Err(e) => return ResponseFuture::failed(e),
        };
        // Host names are case-insensitive, and so are service names.
        let name = crate::instance::lowercase(host);
        let key = if router.uses_key() {
            req.hash_key(options.hash_header.as_ref(), Internal)
        } else {
            None
        };
        options.budget.deposit();
        let first =
            Attempts::FIRST.request(key, req.tag_filter(Internal).or(options.filter.as_ref()));
        match router.pick_cached(&name, first) {
            // Hit: route now and call the ready inner service in place.
            Some(Ok(picked)) => {
                // A copy to replay only when another instance could take
                // it; made before routing, as a retry routes it again.
                // The copy goes straight into its box (the request is big).
                let mut retry = None;
                if Attempts::FIRST.keeps_replay(options, &picked) {
                    let mut boxed = Box::new(Retry::new(self.context.clone(), &req, key));
                    boxed.replay = req.replay(Internal);
                    retry = boxed.replay.is_some().then_some(boxed);
                }
                if let Err(e) = req.route_to(
                    picked.authority(),
                    picked.tls_authority(),
                    picked.host(),
                    Internal,
                ) {
                    return ResponseFuture::failed(e);
                }
                let span = tracing::debug_span!("discovery", service = %picked.service(), instance = %picked.authority());
                // Not `in_scope`: its closure would move the request once more.
                let entered = span.enter();
                let started = picked.stopwatch();
                let fut = self.inner.call(req);
                drop(entered);
                ResponseFuture::call(fut, picked, started, options.rules, retry, span)
            }
            Some(Err(e)) => ResponseFuture::failed(e),
            // Miss: the ready inner service waits in the future for the resolve.
            None => {
                let service = match ServiceName::new(host) {
                    Ok(s) => s,
                    Err(e) => return ResponseFuture::failed(e.into()),
                };
                let fut = router.clone().resolve(service.clone());
                let mut retry = Retry::new(self.context.clone(), &req, key);
                let clone = self.inner.clone();
                retry.inner = Some(std::mem::replace(&mut self.inner, clone));
                retry.service = Some(service);
                retry.pending = Some(Box::new(req));
                ResponseFuture::resolve(fut, options.rules, Box::new(retry))
            }
        }
    }
}
