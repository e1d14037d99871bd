//! The response future of [`DiscoveryService`](super::DiscoveryService).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::attempts::Attempts;
use super::error::DiscoveryError;
use super::request::DiscoverRequest;
use super::router::{PickRequest, Picked, ResolveFuture, Route};
use super::service::Shared;
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
    pub shared: Arc<Shared<S>>,
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
    pub(crate) fn new(shared: Arc<Shared<S>>, req: &Req, key: Option<u64>) -> Self {
        Retry {
            shared,
            inner: None,
            service: None,
            pending: None,
            replay: None,
            attempts: Attempts::new(),
            idempotent: req.is_idempotent(),
            key,
            filter: req.tag_filter().cloned(),
        }
    }

    fn router(&self) -> &dyn Route {
        &*self.shared.router
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
            req.replay()
        } else {
            None
        };
        req.route_to(picked.authority(), picked.host())?;
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
                        failed.eject();
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
                    let shared = &retry.shared;
                    let inner = retry.inner.get_or_insert_with(|| shared.service());
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
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled() || e.is_closed())
        {
            lost = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return Failure::Connect,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
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

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::{classify, Failure};

    /// An error whose source is `source`, as clients wrap I/O errors.
    #[derive(Debug)]
    struct Wrapped(Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn failures_are_classified_by_their_source_chain() {
        let of = |kind| classify(&Wrapped(Error::from(kind)));
        assert_eq!(of(ErrorKind::ConnectionRefused), Failure::Connect);
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::NotConnected,
            ErrorKind::BrokenPipe,
            ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(of(kind), Failure::ConnectionLost, "{kind:?}");
        }
        assert_eq!(of(ErrorKind::TimedOut), Failure::Other);
        assert_eq!(classify(&Error::other("refused?")), Failure::Other);
    }
}
