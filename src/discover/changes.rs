//! [`InstanceChanges`]: a stream of the changes to one service's instances,
//! and [`RedisResolver::changes`], which makes one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::stream::{FusedStream, Stream};
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;

use super::change::InstanceChange;
use super::diff::SnapshotDiff;
use crate::error::ResolveError;
use crate::instance::ServiceName;
use crate::resolver::{RedisResolver, Snapshot};

/// What waiting for the next snapshot returns: the receiver comes back
/// with the outcome, to wait again.
type Waited = (
    Result<(), watch::error::RecvError>,
    watch::Receiver<Snapshot>,
);

/// The changes to one service's instances, as a [`Stream`] of
/// [`InstanceChange`]s keyed by address
/// ([`InstanceAddr`](super::InstanceAddr)).
///
/// * First, the current list: one [`Insert`](InstanceChange::Insert) per
///   instance (nothing if the service has none yet).
/// * Then every change the resolver sees (events, the periodic refresh,
///   leases running out): the instances that left as
///   [`Remove`](InstanceChange::Remove)s, those that joined as `Insert`s.
///   An instance whose weight or tags changed is removed, then inserted:
///   for one address the remove always comes first.
/// * It ends when the resolver shuts down (its last clone dropped, or
///   [`shutdown`](RedisResolver::shutdown)). Nothing is removed then: the
///   last list stands. Rarely, it can also end while the resolver lives:
///   when the cache is full and churning, `watch` may hand out a receiver
///   of an entry already evicted. An end with the resolver alive means
///   "call `changes` again".
///
/// Built on [`RedisResolver::watch`]: while the stream lives the service
/// stays cached and subscribed, and every stream and watcher of one
/// service shares the resolver's one cache entry and subscription. A
/// consumer slower than the changes skips lists, not changes: each new
/// list is compared with the last one told, so the changes told always
/// add up to the current list. It holds two snapshots at most (the list
/// told and the one being told) and spawns no task; a diff costs time in
/// the size of the two lists (a merge, both being sorted by address).
///
/// Make one with [`RedisResolver::changes`], or from any watch of
/// snapshots with [`new`](Self::new). For `tower::balance`, see
/// `into_discover` (feature `tower-discover`).
///
/// ```
/// use futures_util::StreamExt;
/// use redis_discovery::discover::{InstanceChange, InstanceChanges};
/// use redis_discovery::{Instance, ServiceName, Snapshot};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redis_discovery::ValidationError> {
/// let orders = ServiceName::new("orders")?;
/// let a = Instance::new("10.0.0.1:80")?;
/// let (tx, rx) = tokio::sync::watch::channel(Snapshot::new(orders.clone(), vec![a.clone()]));
/// let mut changes = InstanceChanges::new(rx);
/// assert_eq!(changes.next().await, Some(InstanceChange::Insert(a.clone())));
///
/// // `a` is reweighted: removed, then inserted with its new weight.
/// let heavier = a.clone().with_weight(50);
/// tx.send_replace(Snapshot::new(orders, vec![heavier.clone()]));
/// assert_eq!(changes.next().await, Some(InstanceChange::Remove(a)));
/// assert_eq!(changes.next().await, Some(InstanceChange::Insert(heavier)));
///
/// drop(tx); // the resolver shut down
/// assert_eq!(changes.next().await, None);
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
///
/// `next()` is cancel-safe: a change is taken from the stream only when
/// it is returned. Dropping the stream drops its receiver and nothing
/// else (it started no task): the service is then an ordinary cached
/// service (unless something else watches it), unsubscribed and dropped
/// by the idle sweep once nothing asks for it.
pub struct InstanceChanges {
    service: ServiceName,
    diff: SnapshotDiff,
    /// Waits for the next snapshot, owning the receiver; `None` once the
    /// sender is gone (the resolver shut down), so it is never polled
    /// after it completed.
    next: Option<ReusableBoxFuture<'static, Waited>>,
    /// Makes a new watch of the service when the sender is gone while
    /// its source lives (`None`: it does not), for streams that follow
    /// the service for good (`GrpcChannel`'s).
    resubscribe: Option<Resubscribe>,
    /// The new watch being made.
    again: Option<ReusableBoxFuture<'static, Option<watch::Receiver<Snapshot>>>>,
}

/// A new watch of the service, or `None` when its source is gone for good.
pub(crate) type Resubscribe = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Option<watch::Receiver<Snapshot>>> + Send>>
        + Send
        + Sync,
>;

impl InstanceChanges {
    /// The changes of the snapshots `snapshots` receives: first its
    /// current one (marked seen), then every newer one. The stream ends
    /// when the sender is dropped.
    pub fn new(mut snapshots: watch::Receiver<Snapshot>) -> Self {
        let first = snapshots.borrow_and_update().clone();
        let service = first.service().clone();
        let mut diff = SnapshotDiff::default();
        diff.towards(first);
        InstanceChanges {
            service,
            diff,
            next: Some(ReusableBoxFuture::new(wait(snapshots))),
            resubscribe: None,
            again: None,
        }
    }

    /// When the watch ends, `resubscribe` makes a new one and the stream
    /// goes on from it, telling the changes from the last list told (so
    /// nothing is inserted twice, and what left meanwhile is removed); it
    /// ends when `resubscribe` gives `None`.
    // Only `tonic_channel` keeps a stream going across watches.
    #[cfg_attr(not(feature = "tonic"), allow(dead_code))]
    pub(crate) fn resubscribing(mut self, resubscribe: Resubscribe) -> Self {
        self.resubscribe = Some(resubscribe);
        self
    }

    /// The service whose instances these are.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

/// Waits for a new snapshot; hands the receiver back.
async fn wait(mut snapshots: watch::Receiver<Snapshot>) -> Waited {
    let changed = snapshots.changed().await;
    (changed, snapshots)
}

impl Stream for InstanceChanges {
    type Item = InstanceChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<InstanceChange>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.diff.next() {
                return Poll::Ready(Some(change));
            }
            if let Some(again) = this.again.as_mut() {
                let made = ready!(again.poll(cx));
                this.again = None;
                let Some(mut snapshots) = made else {
                    return Poll::Ready(None);
                };
                let snapshot = snapshots.borrow_and_update().clone();
                this.next = Some(ReusableBoxFuture::new(wait(snapshots)));
                this.diff.towards(snapshot);
                continue;
            }
            let Some(next) = this.next.as_mut() else {
                return Poll::Ready(None);
            };
            let (changed, mut snapshots) = ready!(next.poll(cx));
            if changed.is_err() {
                this.next = None;
                match &this.resubscribe {
                    Some(resubscribe) => {
                        this.again = Some(ReusableBoxFuture::new(resubscribe()));
                        continue;
                    }
                    None => return Poll::Ready(None),
                }
            }
            // Cloned out at once: the resolver sends under a lock that a
            // held borrow would block.
            let snapshot = snapshots.borrow_and_update().clone();
            next.set(wait(snapshots));
            this.diff.towards(snapshot);
        }
    }
}

impl FusedStream for InstanceChanges {
    fn is_terminated(&self) -> bool {
        self.next.is_none() && self.again.is_none() && self.diff.is_idle()
    }
}

impl fmt::Debug for InstanceChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceChanges")
            .field("service", &self.service)
            .field("told", &self.diff.told_len())
            .field("telling", &!self.diff.is_idle())
            .field("ended", &self.next.is_none())
            .finish()
    }
}

impl RedisResolver {
    /// The changes to `service`'s instances, as a [`Stream`]: first the
    /// current list as inserts, then every change as removes and inserts
    /// keyed by address, until the resolver shuts down. See
    /// [`InstanceChanges`].
    ///
    /// Built on [`watch`](Self::watch), and fails like it (the service
    /// cannot be read now). Several streams (and watchers) of one service
    /// share one cache entry and one subscription.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use redis_discovery::discover::InstanceChange;
    /// # use redis_discovery::RedisResolver;
    ///
    /// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
    /// let mut changes = resolver.changes("orders").await?;
    /// while let Some(change) = changes.next().await {
    ///     match change {
    ///         InstanceChange::Insert(instance) => println!("+ {instance}"),
    ///         InstanceChange::Remove(instance) => println!("- {instance}"),
    ///     }
    /// }
    /// // The resolver shut down.
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`watch`](Self::watch): dropping the future before it completes
    /// makes no stream; a read it started goes on and caches the service
    /// as an ordinary cached service.
    pub async fn changes<S>(&self, service: S) -> Result<InstanceChanges, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
    {
        Ok(InstanceChanges::new(self.watch(service).await?))
    }
}
