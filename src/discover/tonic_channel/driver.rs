//! The task that runs the balancer and queues the calls (in place of
//! tower's `Buffer`, whose worker polls the balancer only while a call
//! waits): it follows the registry, connects and reconnects instances
//! while no call comes, and fails a call with `Unavailable` once no
//! instance has been ready for a while.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use ::tonic::Status;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSender;
use tower::BoxError;
use tower_service::Service;

use crate::instance::ServiceName;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// What the driver hands back for a call: the call sent (its response to
/// come, polled by the caller), or why it was not sent.
pub(crate) type Dispatched<R> = Result<BoxFuture<Result<R, BoxError>>, BoxError>;

/// How long calls wait for a ready instance, and how failing calls wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waits {
    /// Calls wait this long (counted from the first of calls waiting one
    /// after the other) for an instance to be ready; after that they fail.
    pub(crate) none_ready: Duration,
    /// Once calls fail, each new one still waits up to this long (about
    /// one connect) before failing.
    pub(crate) grace: Duration,
    /// With no call waiting for this long, the count starts over.
    pub(crate) idle_gap: Duration,
}

/// A call queued for the driver.
pub(crate) struct Queued<Req, R> {
    request: Req,
    queued_at: Instant,
    respond: oneshot::Sender<Dispatched<R>>,
}

/// The callers' end: a bounded queue to the driver.
pub(crate) struct Handle<Req, R> {
    tx: PollSender<Queued<Req, R>>,
}

impl<Req, R> Clone for Handle<Req, R> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
        }
    }
}

impl<Req: Send + 'static, R: Send + 'static> Handle<Req, R> {
    /// Spawns the driver of `service`; it ends once every handle is
    /// dropped and the calls queued are answered.
    pub(crate) fn spawn<S>(service: S, name: ServiceName, waits: Waits, bound: usize) -> Self
    where
        S: Service<Req, Response = R, Error = BoxError> + Send + 'static,
        S::Future: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(bound.max(1));
        let mut driver = Driver {
            service,
            name,
            waits,
            rx,
            head: None,
            stretch: None,
            failing: false,
            idle_since: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        };
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_drive(cx)).await });
        Handle {
            tx: PollSender::new(tx),
        }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tx
            .poll_reserve(cx)
            .map_err(|_| BoxError::from("the channel's driver is gone"))
    }

    /// Queues `request`; the receiver gets the call once sent.
    pub(crate) fn call(&mut self, request: Req) -> oneshot::Receiver<Dispatched<R>> {
        let (respond, response) = oneshot::channel();
        let queued = Queued {
            request,
            queued_at: Instant::now(),
            respond,
        };
        if let Err(unsent) = self.tx.send_item(queued) {
            // Called without `poll_ready` (or the driver is gone).
            if let Some(queued) = unsent.into_inner() {
                let _ = queued
                    .respond
                    .send(Err(BoxError::from("called before poll_ready")));
            }
        }
        response
    }
}

struct Driver<S, Req, R> {
    service: S,
    name: ServiceName,
    waits: Waits,
    rx: mpsc::Receiver<Queued<Req, R>>,
    /// The oldest call waiting; the others wait in `rx`.
    head: Option<Queued<Req, R>>,
    /// Since when calls have waited, one after the other, for a ready
    /// instance.
    stretch: Option<Instant>,
    /// Calls waited the whole `none_ready` for nothing: each new one
    /// waits only the `grace`.
    failing: bool,
    /// Since when no call waits.
    idle_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<S, Req, R> Driver<S, Req, R>
where
    S: Service<Req, Response = R, Error = BoxError>,
    S::Future: Send + 'static,
{
    /// When the head call fails if no instance is ready by then.
    fn deadline(&self, queued_at: Instant) -> Instant {
        if self.failing {
            queued_at + self.waits.grace
        } else {
            self.stretch.unwrap_or(queued_at) + self.waits.none_ready
        }
    }

    /// Takes the next call into `head`, skipping those whose caller left.
    /// `Ready(false)`: no handle is left and nothing is queued.
    fn poll_next_call(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        while self.head.is_none() {
            match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(false),
                Some(queued) if queued.respond.is_closed() => {}
                Some(queued) => {
                    // A gap with no call waiting: the count starts over.
                    let now = Instant::now();
                    if self.idle_since.is_some_and(|idle| {
                        now.saturating_duration_since(idle) >= self.waits.idle_gap
                    }) {
                        (self.stretch, self.failing) = (None, false);
                    }
                    self.idle_since = None;
                    self.head = Some(queued);
                }
            }
        }
        Poll::Ready(true)
    }

    fn fail_head(&mut self) {
        if let Some(head) = self.head.take() {
            let status = Status::unavailable(format!("no instance of {} is ready", self.name));
            let _ = head.respond.send(Err(status.into()));
        }
    }
}

impl<S, Req, R> Driver<S, Req, R>
where
    S: Service<Req, Response = R, Error = BoxError>,
    S::Future: Send + 'static,
{
    /// Runs until no handle is left and no call is queued.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let this = self;
        loop {
            // Polled whether or not a call waits: it reads the registry's
            // changes and connects instances, and wakes this task when
            // either moves.
            let ready = match this.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Pending => false,
                Poll::Ready(Err(error)) => {
                    // Not with an `Infallible` discover. Fails the call
                    // waiting, if any; not ready for the others.
                    tracing::warn!(service = %this.name, %error, "tonic balancer failed");
                    if let Some(head) = this.head.take() {
                        let _ = head.respond.send(Err(error));
                    }
                    false
                }
            };
            if ready {
                (this.stretch, this.failing) = (None, false);
            }
            match this.poll_next_call(cx) {
                Poll::Ready(false) => return Poll::Ready(()),
                Poll::Ready(true) => {}
                Poll::Pending => {
                    this.idle_since.get_or_insert_with(Instant::now);
                    return Poll::Pending;
                }
            }
            let Some(head) = this.head.as_mut() else {
                continue;
            };
            // Registers for the caller leaving, too.
            if head.respond.poll_closed(cx).is_ready() {
                this.head = None; // its caller left: not sent
                continue;
            }
            if ready {
                if let Some(head) = this.head.take() {
                    let call = this.service.call(head.request);
                    let _ = head.respond.send(Ok(Box::pin(call)));
                }
                continue;
            }
            let queued_at = head.queued_at;
            this.stretch.get_or_insert(queued_at);
            let deadline = this.deadline(queued_at);
            if Instant::now() >= deadline {
                if !this.failing {
                    tracing::debug!(service = %this.name, "no tonic instance ready: calls fail until one is");
                }
                this.failing = true;
                this.fail_head();
                continue;
            }
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_ready() {
                continue;
            }
            // Woken by the balancer, a new call, the head's caller
            // leaving, or the timer.
            return Poll::Pending;
        }
    }
}
