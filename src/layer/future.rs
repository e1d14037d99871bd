//! The response future of [`DiscoveryService`](super::DiscoveryService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::attempts::Attempts;
use super::error::DiscoveryError;
use super::failure::{classify, Failure};
use super::pick::{Outcome, PickRequest, Picked};
use super::request::sealed::Internal;
use super::request::DiscoverRequest;
use super::router::{ResolveFuture, Route};
use super::service::RoutingContext;
use super::BoxError;
use crate::balance::TagFilter;
use crate::instance::ServiceName;

pin_project! {
    /// The future of a request through the discovery layer. Not boxed: on a
    /// cache hit it wraps the inner service's future directly.
    ///
    /// Cancel safe: dropping it drops the attempt under way and frees
    /// everything the request held (see [the module docs](super#cancel-safety)).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The instance of the attempt under way, to eject if it refuses
        // the connection.
        picked: Option<Picked>,
        // What a retry or a cache miss needs; boxed, as a hit without a
        // possible retry needs none of it.
        retry: Option<Box<Retry<S, Req>>>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The inner service's call is under way.
        Call { #[pin] fut: F },
        // Cache miss: waiting for the single-flight resolve of `retry.pending`.
        Resolve { fut: ResolveFuture },
        // `retry.pending` is routed; waiting for the inner service to be ready.
        Ready,
        // Routing failed before anything was sent.
        Failed { error: Option<BoxError> },
    }
}

/// What a request needs to be sent (again) after `call` returned: on a
/// cache miss, or when a retry is possible.
pub(crate) struct Retry<S, Req> {
    pub context: Arc<RoutingContext<S>>,
    /// The ready inner service (cache miss), or a clone of it once a retry
    /// needs one.
    pub inner: Option<S>,
    /// The service, for a cache miss (afterwards `picked` names it).
    pub service: Option<ServiceName>,
    /// The request waiting for the resolve or for the inner service (boxed:
    /// only a miss or a retry has one).
    pub pending: Option<Box<Req>>,
    /// A copy of the request to send if this attempt cannot connect.
    pub replay: Option<Req>,
    pub attempts: Attempts,
    /// Also retry when a connection closed before any response.
    pub idempotent: bool,
    pub key: Option<u64>,
    /// The request's own tag filter, if it has one.
    pub filter: Option<TagFilter>,
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        ResponseFuture {
            state: State::Call { fut },
            picked: None,
            retry: None,
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn call(
        fut: S::Future,
        picked: Picked,
        retry: Option<Box<Retry<S, Req>>>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            state: State::Call { fut },
            picked: Some(picked),
            retry,
            span,
        }
    }

    pub(crate) fn resolve(fut: ResolveFuture, retry: Box<Retry<S, Req>>) -> Self {
        ResponseFuture {
            state: State::Resolve { fut },
            picked: None,
            retry: Some(retry),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn failed(error: DiscoveryError) -> Self {
        ResponseFuture {
            state: State::Failed {
                error: Some(error.into()),
            },
            picked: None,
            retry: None,
            span: tracing::Span::none(),
        }
    }
}

fn service_of<'a>(picked: Option<&'a Picked>, service: Option<&'a ServiceName>) -> &'a str {
    picked
        .map(Picked::service)
        .or(service)
        .map_or("", ServiceName::as_str)
}

impl<S, Req> Retry<S, Req>
where
    Req: DiscoverRequest,
{
    pub(crate) fn new(context: Arc<RoutingContext<S>>, req: &Req, key: Option<u64>) -> Self {
        Retry {
            context,
            inner: None,
            service: None,
            pending: None,
            replay: None,
            attempts: Attempts::new(),
            idempotent: req.is_idempotent(Internal),
            key,
            filter: req.tag_filter(Internal).cloned(),
        }
    }

    fn router(&self) -> &dyn Route {
        &*self.context.router
    }

    fn request(&self) -> PickRequest<'_> {
        let filter = self.filter.as_ref();
        let filter = filter.or(self.router().options().filter.as_ref());
        self.attempts.request(self.key, filter)
    }

    /// Routes `req` to `picked` and keeps it for the inner service, with a
    /// copy for a further retry if one is allowed.
    fn route(&mut self, mut req: Box<Req>, picked: &Picked) -> Result<(), DiscoveryError> {
        self.replay = if self.attempts.keeps_replay(self.router().options(), picked) {
            req.replay(Internal)
        } else {
            None
        };
        req.route_to(picked.authority(), picked.host(), Internal)?;
        self.pending = Some(req);
        Ok(())
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: DiscoverRequest,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Call { fut } => {
                    let polled = {
                        let _entered = this.span.enter();
                        fut.poll(cx)
                    };
                    let error: BoxError = match ready!(polled) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(e) => e.into(),
                    };
                    let Some(failed) = this.picked.take() else {
                        return Poll::Ready(Err(error));
                    };
                    let failure = classify(&*error);
                    if failure == Failure::Connect {
                        failed.record(Outcome::Refused);
                    }
                    let Some(retry) = this.retry.as_deref_mut() else {
                        return Poll::Ready(Err(error));
                    };
                    let retryable = retry
                        .router()
                        .options()
                        .retries_after(failure, retry.idempotent);
                    let Some(req) = retry.replay.take().filter(|_| retryable) else {
                        return Poll::Ready(Err(error));
                    };
                    retry.attempts.failed(&failed);
                    let Some(picked) = retry.router().pick_retry(retry.request(), &failed) else {
                        return Poll::Ready(Err(error));
                    };
                    if retry.route(Box::new(req), &picked).is_err() {
                        return Poll::Ready(Err(error));
                    }
                    tracing::debug!(service = %failed.service(), failed = %failed.authority(), retry = %picked.authority(), %error, "retrying on another instance");
                    *this.picked = Some(picked);
                    this.state.set(State::Ready);
                }
                StateProj::Resolve { fut } => {
                    let result = ready!(fut.as_mut().poll(cx));
                    let Some(retry) = this.retry.as_deref_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Some(req) = retry.pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let routed = result
                        .map_err(|source| DiscoveryError::Resolve {
                            service: service_of(None, retry.service.as_ref()).to_owned(),
                            source,
                        })
                        .and_then(|snapshot| {
                            let picked = retry.router().pick_from(snapshot, retry.request())?;
                            retry.route(req, &picked)?;
                            Ok(picked)
                        });
                    match routed {
                        Ok(picked) => {
                            *this.span = tracing::debug_span!("discovery", service = %picked.service(), instance = %picked.authority());
                            *this.picked = Some(picked);
                            this.state.set(State::Ready);
                        }
                        Err(e) => return Poll::Ready(Err(e.into())),
                    }
                }
                StateProj::Ready => {
                    let Some(retry) = this.retry.as_deref_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let context = &retry.context;
                    let inner = retry.inner.get_or_insert_with(|| context.service());
                    if let Err(e) = ready!(inner.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = retry.pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let fut = {
                        let _entered = this.span.enter();
                        inner.call(*req)
                    };
                    this.state.set(State::Call { fut });
                }
                StateProj::Failed { error } => {
                    let error = error.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Call { .. } => "call",
            State::Resolve { .. } => "resolve",
            State::Ready => "ready",
            State::Failed { .. } => "failed",
        };
        let retry = self.retry.as_deref();
        f.debug_struct("ResponseFuture")
            .field(
                "service",
                &service_of(self.picked.as_ref(), retry.and_then(|r| r.service.as_ref())),
            )
            .field("state", &state)
            .field("attempt", &retry.map_or(0, |r| r.attempts.number()))
            .finish()
    }
}

/// The states that lack their data only after the future has completed.
fn polled_after_completion() -> BoxError {
    "discovery ResponseFuture polled after completion".into()
}
