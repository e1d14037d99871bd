//! [`DiscoverInstances`]: a change stream as a `tower::discover::Discover`
//! (feature `tower-discover`).

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::stream::{FusedStream, Stream};
use tower::discover::Change;

use super::change::{InstanceAddr, InstanceChange};
use super::changes::InstanceChanges;
use crate::instance::Instance;

impl InstanceChanges {
    /// This stream as a [`tower::discover::Discover`], for
    /// `tower::balance`: each instance inserted becomes the service
    /// `make(instance)` makes, keyed by its [`InstanceAddr`]; each
    /// removed instance a [`Change::Remove`] of its key. A drained
    /// instance (weight 0) is not inserted: draining one is a remove, and
    /// a weight above 0 again an insert. Feature `tower-discover`.
    ///
    /// `make` runs once per insert (for the first list, then for every
    /// instance that joins or changes), not per request. It cannot fail:
    /// the discover's error is [`Infallible`]. When the resolver shuts
    /// down the stream ends, and `tower`'s balancers keep the services
    /// they have.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use redis_discovery::discover::InstanceChanges;
    /// use redis_discovery::{Instance, ServiceName, Snapshot};
    /// use tower::balance::p2c::Balance;
    /// use tower::load::{CompleteOnResponse, PendingRequests};
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let list = vec![Instance::new("10.0.0.1:80")?, Instance::new("10.0.0.2:80")?];
    /// // `resolver.changes("orders").await?` with a `RedisResolver`.
    /// let (_tx, rx) = tokio::sync::watch::channel(Snapshot::new(ServiceName::new("orders")?, list));
    /// let changes = InstanceChanges::new(rx);
    ///
    /// // One service per instance: here one that answers with its address.
    /// let discover = changes.into_discover(|instance: Instance| {
    ///     let addr = instance.addr().to_owned();
    ///     let service = service_fn(move |_request: ()| {
    ///         let addr = addr.clone();
    ///         async move { Ok::<_, Infallible>(addr) }
    ///     });
    ///     PendingRequests::new(service, CompleteOnResponse::default())
    /// });
    /// let mut balance = Balance::new(discover);
    /// let answer = balance.ready().await?.call(()).await?;
    /// assert!(answer == "10.0.0.1:80" || answer == "10.0.0.2:80");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_discover<F, S>(self, make: F) -> DiscoverInstances<F>
    where
        F: FnMut(Instance) -> S,
    {
        DiscoverInstances {
            changes: self,
            make,
        }
    }
}

/// An [`InstanceChanges`] stream as a [`tower::discover::Discover`]: items
/// `Result<Change<InstanceAddr, S>, Infallible>`, where `S` is what the
/// closure given to [`into_discover`](InstanceChanges::into_discover)
/// makes of an instance. Feature `tower-discover`.
///
/// `Unpin` whatever the closure (it is never pinned), as
/// `tower::balance::p2c::Balance` requires.
pub struct DiscoverInstances<F> {
    changes: InstanceChanges,
    make: F,
}

// The closure is only ever called through `&mut`, never pinned.
impl<F> Unpin for DiscoverInstances<F> {}

impl<F> DiscoverInstances<F> {
    /// The change stream underneath.
    pub fn changes(&self) -> &InstanceChanges {
        &self.changes
    }
}

impl<F, S> Stream for DiscoverInstances<F>
where
    F: FnMut(Instance) -> S,
{
    type Item = Result<Change<InstanceAddr, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let change = match ready!(Pin::new(&mut this.changes).poll_next(cx)) {
                None => return Poll::Ready(None),
                // Drained (weight 0): listed, never picked, so never handed
                // to a balancer (its remove, if one comes, is a no-op there).
                Some(InstanceChange::Insert(instance)) if instance.weight() == 0 => continue,
                Some(InstanceChange::Insert(instance)) => {
                    let key = InstanceAddr::from(&instance);
                    Change::Insert(key, (this.make)(instance))
                }
                Some(InstanceChange::Remove(instance)) => {
                    Change::Remove(InstanceAddr::from(&instance))
                }
            };
            return Poll::Ready(Some(Ok(change)));
        }
    }
}

impl<F, S> FusedStream for DiscoverInstances<F>
where
    F: FnMut(Instance) -> S,
{
    fn is_terminated(&self) -> bool {
        self.changes.is_terminated()
    }
}

impl<F> fmt::Debug for DiscoverInstances<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoverInstances")
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}
