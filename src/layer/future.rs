//! The response future of [`DiscoveryService`](super::DiscoveryService):
//! the one retry loop of the layer (the reqwest middleware runs it too).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::attempts::Attempts;
use super::error::DiscoveryError;
use super::pick::{AttemptLoad, Outcome, PickRequest, Picked};
use super::request::sealed::Internal;
use super::request::DiscoverRequest;
use super::response::sealed::StatusResponse;
use super::router::{ResolveFuture, Route};
use super::service::RoutingContext;
use super::verdict::{AttemptRules, Ended};
use super::BoxError;
use crate::balance::TagFilter;
use crate::instance::ServiceName;
use crate::metrics::{AttemptClass, Stopwatch};

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
        // The attempt timeout, armed once the attempt under way is pending.
        #[pin]
        timer: Option<Sleep>,
        // The instance of the attempt under way, for its outcome.
        picked: Option<Picked>,
        // The attempt counted in the instance's load, if the balancer
        // reads load; dropping it ends the attempt.
        load: Option<AttemptLoad>,
        // When the attempt under way was sent, for its duration metric
        // (no clock, no size without feature `metrics`). An attempt
        // dropped unfinished records nothing.
        started: Stopwatch,
        rules: Option<AttemptRules>,
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
    /// A copy of the request to send if this attempt fails.
    pub replay: Option<Req>,
    pub attempts: Attempts,
    /// How the attempt before the pending retry ended: counted as a
    /// retry once the retry is sent.
    pub reason: Option<AttemptClass>,
    pub idempotent: bool,
    pub key: Option<u64>,
    /// The request's own tag filter, if it has one.
    pub filter: Option<TagFilter>,
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn new(state: State<S::Future>, span: tracing::Span) -> Self {
        ResponseFuture {
            state,
            timer: None,
            picked: None,
            load: None,
            started: Stopwatch::IDLE,
            rules: None,
            retry: None,
            span,
        }
    }

    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self::new(State::Call { fut }, tracing::Span::none())
    }

    /// The first attempt, sent to `picked` at `started`.
    pub(crate) fn call(
        fut: S::Future,
        picked: Picked,
        started: Stopwatch,
        rules: AttemptRules,
        retry: Option<Box<Retry<S, Req>>>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            load: picked.start(),
            started,
            picked: Some(picked),
            rules: Some(rules),
            retry,
            ..Self::new(State::Call { fut }, span)
        }
    }

    pub(crate) fn resolve(
        fut: ResolveFuture,
        rules: AttemptRules,
        retry: Box<Retry<S, Req>>,
    ) -> Self {
        ResponseFuture {
            rules: Some(rules),
            retry: Some(retry),
            ..Self::new(State::Resolve { fut }, tracing::Span::none())
        }
    }

    pub(crate) fn failed(error: DiscoveryError) -> Self {
        let error = Some(error.into());
        Self::new(State::Failed { error }, tracing::Span::none())
    }
}

fn service_name<'a>(picked: Option<&'a Picked>, service: Option<&'a ServiceName>) -> &'a str {
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
            reason: None,
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
        req.route_to(
            picked.authority(),
            picked.tls_authority(),
            picked.host(),
            Internal,
        )?;
        self.pending = Some(req);
        Ok(())
    }

    /// After the attempt sent to `failed` ended (as `reason`) so that a
    /// retry is allowed: the instance for the next attempt, with the
    /// request routed to it. `None` when there is no copy, no instance
    /// left, or no budget.
    fn next_attempt(&mut self, failed: &Picked, reason: AttemptClass) -> Option<Picked> {
        let req = self.replay.take()?;
        self.attempts.failed(failed);
        let picked = self.router().pick_retry(self.request(), failed)?;
        if !self.router().options().budget.withdraw() {
            failed.service_metrics().budget_exhausted();
            tracing::debug!(service = %failed.service(), "retry budget spent: not retrying");
            return None;
        }
        self.route(Box::new(req), &picked).ok()?;
        self.reason = Some(reason);
        Some(picked)
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    S::Response: StatusResponse,
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
                    let timeout = this.rules.as_ref().and_then(|r| r.timeout);
                    let result = match (polled, timeout) {
                        (Poll::Ready(result), _) => result.map_err(Into::into),
                        (Poll::Pending, None) => return Poll::Pending,
                        (Poll::Pending, Some(timeout)) => {
                            if this.timer.is_none() {
                                let deadline = crate::time::after(timeout);
                                this.timer.set(crate::time::timer(deadline));
                            }
                            // No timer (a runtime without one): no timeout.
                            let Some(timer) = this.timer.as_mut().as_pin_mut() else {
                                return Poll::Pending;
                            };
                            ready!(timer.poll(cx));
                            Err(timed_out(this.picked.as_ref(), timeout))
                        }
                    };
                    this.timer.set(None);
                    // Done with this attempt: polled again, the future says
                    // so rather than poll a finished inner future.
                    this.state.set(State::Failed { error: None });
                    let (Some(failed), Some(rules)) = (this.picked.take(), *this.rules) else {
                        return Poll::Ready(result);
                    };
                    let retry = this.retry.as_deref_mut();
                    let idempotent = retry.as_ref().is_some_and(|r| r.idempotent);
                    let ended = match &result {
                        Ok(response) => Ended::Response(response.status(Internal)),
                        Err(e) if is_timeout(&**e) => Ended::TimedOut,
                        Err(e) => Ended::Failed(&**e),
                    };
                    let verdict = rules.judge(ended, idempotent);
                    failed.measure(verdict.class, *this.started);
                    failed.record(verdict.outcome);
                    if let Some(load) = this.load.take() {
                        // A quick 500 must not make the instance look fast
                        // to a load-aware balancer, whatever the classifier
                        // counts against it.
                        let server_error =
                            matches!(ended, Ended::Response(s) if s.is_server_error());
                        load.end(verdict.outcome != Outcome::Success || server_error);
                    }
                    let next = match retry {
                        Some(retry) if verdict.retry => retry.next_attempt(&failed, verdict.class),
                        _ => None,
                    };
                    let Some(picked) = next else {
                        return Poll::Ready(result);
                    };
                    match &result {
                        Ok(response) => {
                            tracing::debug!(service = %failed.service(), failed = %failed.authority(), retry = %picked.authority(), status = %response.status(Internal), "retrying on another instance")
                        }
                        Err(error) => {
                            tracing::debug!(service = %failed.service(), failed = %failed.authority(), retry = %picked.authority(), %error, "retrying on another instance")
                        }
                    }
                    *this.picked = Some(picked);
                    this.state.set(State::Ready);
                }
                StateProj::Resolve { fut } => {
                    let result = ready!(fut.as_mut().poll(cx));
                    // The resolve is done: never polled again.
                    this.state.set(State::Failed { error: None });
                    let Some(retry) = this.retry.as_deref_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Some(req) = retry.pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let routed = result
                        .map_err(|source| DiscoveryError::Resolve {
                            service: service_name(None, retry.service.as_ref()).to_owned(),
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
                        this.state.set(State::Failed { error: None });
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = retry.pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let started = this
                        .picked
                        .as_ref()
                        .map_or(Stopwatch::IDLE, Picked::stopwatch);
                    let fut = {
                        let _entered = this.span.enter();
                        inner.call(*req)
                    };
                    *this.started = started;
                    if let (Some(reason), Some(picked)) = (retry.reason.take(), &*this.picked) {
                        picked.service_metrics().retry(reason);
                    }
                    *this.load = this.picked.as_ref().and_then(Picked::start);
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

/// The error of an attempt that timed out.
#[cold]
fn timed_out(picked: Option<&Picked>, timeout: std::time::Duration) -> BoxError {
    DiscoveryError::AttemptTimeout {
        service: service_name(picked, None).to_owned(),
        instance: picked
            .map(|p| p.authority().to_string())
            .unwrap_or_default(),
        timeout,
    }
    .into()
}

fn is_timeout(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        error.downcast_ref::<DiscoveryError>(),
        Some(DiscoveryError::AttemptTimeout { .. })
    )
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
                &service_name(self.picked.as_ref(), retry.and_then(|r| r.service.as_ref())),
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
