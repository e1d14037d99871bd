//! [`NoneReady`]: calls fail with `Unavailable` once no instance has been
//! ready for a while, instead of waiting for one without end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tonic::Status;
use tokio::time::Sleep;
use tower::BoxError;
use tower_service::Service;

use crate::instance::ServiceName;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Wraps the balancer. While it is not ready (no instance listed, or none
/// with a live connection) calls wait, up to `wait`; after that, and
/// until an instance is ready again, each call fails at once with
/// `Unavailable`, so the queue of calls waiting does not grow.
pub(crate) struct NoneReady<S> {
    inner: S,
    service: ServiceName,
    wait: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
    /// No instance was ready for `wait`: fail calls without waiting.
    failing: bool,
    /// The next call fails (it was let through `poll_ready` to do so).
    fail_next: bool,
}

impl<S> NoneReady<S> {
    pub(crate) fn new(inner: S, service: ServiceName, wait: Duration) -> NoneReady<S> {
        NoneReady {
            inner,
            service,
            wait,
            waiting: None,
            failing: false,
            fail_next: false,
        }
    }
}

impl<S, Request> Service<Request> for NoneReady<S>
where
    S: Service<Request, Error = BoxError>,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The balancer is polled first every time, so that it keeps
        // following the registry and reconnecting while calls fail.
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                (self.waiting, self.failing, self.fail_next) = (None, false, false);
                Poll::Ready(ready)
            }
            Poll::Pending if self.failing => {
                self.fail_next = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let wait = self.wait;
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                tracing::debug!(service = %self.service, "no tonic instance ready: calls fail until one is");
                (self.waiting, self.failing, self.fail_next) = (None, true, true);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if std::mem::take(&mut self.fail_next) {
            let status = Status::unavailable(format!("no instance of {} is ready", self.service));
            return Box::pin(std::future::ready(Err(status.into())));
        }
        Box::pin(self.inner.call(request))
    }
}
