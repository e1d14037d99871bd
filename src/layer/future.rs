//! The response future of [`DiscoveryService`](super::DiscoveryService).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::error::DiscoveryError;
use super::request::DiscoverRequest;
use super::router::{Options, PickRequest, Picked, ResolveFuture, Route};
use super::BoxError;
use crate::balance::TagFilter;
use crate::instance::ServiceName;

pin_project! {
    /// The future of a request through the discovery layer. Not boxed: on a
    /// cache hit it wraps the inner service's future directly.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        ctx: Option<Ctx<S, Req>>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The inner service's call is under way.
        Call { #[pin] fut: F },
        // Cache miss: waiting for the single-flight resolve of `ctx.pending`.
        Resolve { fut: ResolveFuture },
        // `ctx.pending` is routed; waiting for the inner service to be ready.
        Ready,
        // Routing failed before anything was sent.
        Failed { error: Option<BoxError> },
    }
}

/// What a discovered request needs after it was first sent.
pub(crate) struct Ctx<S, Req> {
    /// For a retry or a resolve; not needed (not cloned) on a hit without
    /// retries.
    pub router: Option<Arc<dyn Route>>,
    /// How many retries are allowed, and whether after a lost connection.
    pub retries: u32,
    pub retry_lost: bool,
    /// The service, until an instance is picked (then `picked` names it).
    pub service: Option<ServiceName>,
    pub picked: Option<Picked>,
    /// A clone of the inner service for a retry (or the ready service on a
    /// cache miss).
    pub inner: Option<S>,
    /// The request waiting for the resolve or for the inner service (boxed:
    /// only the miss and retry paths need it, and it keeps the future small).
    pub pending: Option<Box<Req>>,
    /// A copy of the request to send if this attempt cannot connect.
    pub replay: Option<Req>,
    pub attempt: u32,
    /// Also retry when a connection closed before any response.
    pub idempotent: bool,
    pub key: Option<u64>,
    pub filter: Option<TagFilter>,
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        ResponseFuture {
            state: State::Call { fut },
            ctx: None,
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn call(fut: S::Future, ctx: Ctx<S, Req>, span: tracing::Span) -> Self {
        ResponseFuture {
            state: State::Call { fut },
            ctx: Some(ctx),
            span,
        }
    }

    pub(crate) fn resolve(fut: ResolveFuture, ctx: Ctx<S, Req>) -> Self {
        ResponseFuture {
            state: State::Resolve { fut },
            ctx: Some(ctx),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn failed(error: DiscoveryError) -> Self {
        ResponseFuture {
            state: State::Failed {
                error: Some(error.into()),
            },
            ctx: None,
            span: tracing::Span::none(),
        }
    }
}

impl<S, Req> Ctx<S, Req> {
    fn service(&self) -> &str {
        match (&self.picked, &self.service) {
            (Some(picked), _) => picked.service().as_str(),
            (None, Some(service)) => service.as_str(),
            (None, None) => "",
        }
    }
}

impl<S, Req> Ctx<S, Req>
where
    Req: DiscoverRequest,
{
    /// The context of a request's first attempt; `inner` is the service to
    /// call again for a retry (or, on a cache miss, the ready one).
    pub(crate) fn new(
        router: Option<Arc<dyn Route>>,
        options: &Options,
        service: Option<ServiceName>,
        inner: Option<S>,
        req: &Req,
        key: Option<u64>,
        filter: Option<TagFilter>,
    ) -> Self {
        Ctx {
            router,
            retries: options.retries,
            retry_lost: options.retry_lost_connections,
            service,
            picked: None,
            inner,
            pending: None,
            replay: None,
            attempt: 0,
            idempotent: req.is_idempotent(),
            key,
            filter,
        }
    }

    fn request(&self, attempt: u32) -> PickRequest<'_> {
        PickRequest {
            key: self.key,
            filter: self.filter.as_ref().or(self
                .router
                .as_ref()
                .and_then(|r| r.options().filter.as_ref())),
            attempt,
            avoid: self.picked.as_ref().map(Picked::authority),
        }
    }

    /// Routes `req` to `picked`, keeping a copy for a retry if one is allowed.
    pub(crate) fn route(&mut self, mut req: Req, picked: Picked) -> Result<Req, DiscoveryError> {
        req.route_to(picked.authority(), picked.host())?;
        // No copy when there is no other instance to retry on.
        let others = picked.usable() > 1;
        self.replay = if self.attempt < self.retries && self.inner.is_some() && others {
            req.replay()
        } else {
            None
        };
        self.picked = Some(picked);
        Ok(req)
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
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
                    let Some(ctx) = this.ctx.as_mut() else {
                        return Poll::Ready(Err(error));
                    };
                    let Some(failed) = ctx.picked.clone() else {
                        return Poll::Ready(Err(error));
                    };
                    let lost_retry = ctx.idempotent && ctx.retry_lost;
                    match classify(&*error) {
                        Failure::Connect => failed.eject(),
                        Failure::ConnectionLost if lost_retry => {}
                        _ => return Poll::Ready(Err(error)),
                    }
                    let Some(req) = ctx.replay.take() else {
                        return Poll::Ready(Err(error));
                    };
                    ctx.attempt += 1;
                    // The current snapshot; a resolver without a cache
                    // (`cached` is optional) retries from the first one.
                    let Some(router) = ctx.router.as_ref() else {
                        return Poll::Ready(Err(error));
                    };
                    let request = ctx.request(ctx.attempt);
                    let picked = match router.pick_cached(ctx.service(), request) {
                        Some(picked) => picked,
                        None => router.pick_from(failed.snapshot().clone(), request),
                    };
                    let Ok(picked) = picked else {
                        return Poll::Ready(Err(error));
                    };
                    if picked.authority() == failed.authority() {
                        return Poll::Ready(Err(error));
                    }
                    tracing::debug!(service = ctx.service(), failed = %failed.authority(), retry = %picked.authority(), %error, "retrying on another instance");
                    match ctx.route(req, picked) {
                        Ok(req) => {
                            ctx.pending = Some(Box::new(req));
                            this.state.set(State::Ready);
                        }
                        Err(_) => return Poll::Ready(Err(error)),
                    }
                }
                StateProj::Resolve { fut } => {
                    let result = ready!(fut.as_mut().poll(cx));
                    let Some(ctx) = this.ctx.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Some(req) = ctx.pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let req = *req;
                    // A cache miss always carries the router.
                    let Some(router) = ctx.router.clone() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let routed = result
                        .map_err(|source| DiscoveryError::Resolve {
                            service: ctx.service().to_owned(),
                            source,
                        })
                        .and_then(|snapshot| {
                            let picked = router.pick_from(snapshot, ctx.request(0))?;
                            ctx.route(req, picked)
                        });
                    match routed {
                        Ok(req) => {
                            if let Some(picked) = &ctx.picked {
                                *this.span = tracing::debug_span!("discovery", service = %picked.service(), instance = %picked.authority());
                            }
                            ctx.pending = Some(Box::new(req));
                            this.state.set(State::Ready);
                        }
                        Err(e) => return Poll::Ready(Err(e.into())),
                    }
                }
                StateProj::Ready => {
                    let Some(ctx) = this.ctx.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Some(inner) = ctx.inner.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Err(e) = ready!(inner.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = ctx.pending.take() else {
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
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("service", &self.ctx.as_ref().map(|c| c.service()))
            .field("attempt", &self.ctx.as_ref().map(|c| c.attempt))
            .finish()
    }
}

/// The states that lack their data only after the future has completed.
fn polled_after_completion() -> BoxError {
    "discovery ResponseFuture polled after completion".into()
}

/// What a failed attempt tells about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection was established (refused, or the client's connect
    /// phase failed): the request certainly did not reach the server.
    Connect,
    /// The connection closed or was reset before a response: the server
    /// may or may not have seen the request.
    ConnectionLost,
    /// Anything else.
    Other,
}

/// Classifies an error by walking its source chain.
pub(crate) fn classify(error: &(dyn StdError + 'static)) -> Failure {
    use std::io::ErrorKind;
    let mut lost = false;
    let mut current = Some(error);
    while let Some(e) = current {
        #[cfg(feature = "hyper-util")]
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return Failure::Connect;
        }
        #[cfg(feature = "reqwest")]
        if e.downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return Failure::Connect;
        }
        #[cfg(any(feature = "hyper-util", feature = "reqwest"))]
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled())
        {
            lost = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return Failure::Connect,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => lost = true,
                _ => {}
            }
        }
        current = e.source();
    }
    if lost {
        Failure::ConnectionLost
    } else {
        Failure::Other
    }
}
