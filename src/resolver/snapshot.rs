//! [`Snapshot`]: the live instances of one service at one point in time.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::instance::{Instance, ServiceName};
use crate::metrics::CacheMetrics;

/// The live instances of one service, as read at one time. Immutable and
/// cheap to clone (one `Arc`).
///
/// Instances are sorted by address, so two snapshots of the same list
/// compare equal element by element and a diff is a merge.
///
/// # Time
///
/// [`read_at`](Self::read_at) is a [`tokio::time::Instant`] (so tests can
/// run it on a paused clock): the start of the latest read from the source
/// that made exactly this list (the Redis resolver's list can also keep
/// instances a read missed, until their leases run out: see
/// [the module docs](super#how-the-redis-resolver-keeps-its-cache)). A
/// cached resolver keeps the same
/// snapshot (same `Arc`, see [`ptr_eq`](Self::ptr_eq)) when a refresh finds
/// nothing changed and only moves its `read_at` forward; the instances
/// never change. While the source is unreachable nothing confirms the list,
/// so [`age`](Self::age) grows: it tells how stale the answer may be.
///
/// ```
/// use redis_discovery::{Instance, ServiceName};
/// use redis_discovery::resolver::Snapshot;
///
/// let snapshot = Snapshot::new(
///     ServiceName::new("orders")?,
///     vec![Instance::new("10.0.0.2:80")?, Instance::new("10.0.0.1:80")?],
/// );
/// assert_eq!(snapshot.service().as_str(), "orders");
/// assert_eq!(snapshot.instances()[0].addr(), "10.0.0.1:80"); // sorted
/// assert_eq!(snapshot.len(), 2);
/// assert!(Snapshot::ptr_eq(&snapshot, &snapshot.clone()));
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    service: ServiceName,
    instances: Box<[Instance]>,
    /// When the snapshot was made; `read_at` is this plus `confirmed_nanos`.
    created: Instant,
    confirmed_nanos: AtomicU64,
    /// Set on the snapshots a resolver cache makes.
    link: Option<CacheLink>,
}

/// What ties a snapshot to the resolver cache that returns it, so a holder
/// (the discovery layer) can keep using it without a lookup for as long as
/// the cache would still return it.
pub(crate) struct CacheLink {
    /// Set once the cache no longer returns this snapshot: replaced by a
    /// changed list, evicted, or the resolver shut down.
    retired: AtomicBool,
    /// The cache entry's use flag, for its idle sweep.
    used: UseFlag,
    /// The oldest the cache returns it: its `max_staleness`, or the
    /// negative-cache time for a list with no instance.
    max_age: Option<Duration>,
}

/// A cache entry's "used since the last idle sweep" flag, shared with the
/// entry's snapshots so a holder that skips the lookup still marks it; with
/// the entry's metric handles beside it, so such a holder also counts its
/// cache hit through the link it already holds (no lookup, no lock).
#[derive(Clone)]
pub(crate) struct UseFlag(Arc<UseState>);

struct UseState {
    used: AtomicBool,
    /// `None` for flags made without an entry (tests).
    metrics: Option<CacheMetrics>,
}

impl UseFlag {
    /// A flag with no metrics (tests' snapshots).
    #[cfg(test)]
    pub(crate) fn new(marked: bool) -> Self {
        Self::build(marked, None)
    }

    /// The flag of a cache entry, with the entry's metric handles.
    pub(crate) fn with_metrics(marked: bool, metrics: CacheMetrics) -> Self {
        Self::build(marked, Some(metrics))
    }

    fn build(marked: bool, metrics: Option<CacheMetrics>) -> Self {
        UseFlag(Arc::new(UseState {
            used: AtomicBool::new(marked),
            metrics,
        }))
    }

    /// Marks it used: a load, and a store only on the first use since the
    /// last sweep (no cache-line ping-pong between cores).
    #[inline]
    pub(crate) fn mark(&self) {
        if !self.0.used.load(Ordering::Relaxed) {
            self.0.used.store(true, Ordering::Relaxed);
        }
    }

    /// Whether it was marked; clears it (the sweep).
    pub(crate) fn take(&self) -> bool {
        self.0.used.swap(false, Ordering::Relaxed)
    }

    /// Whether it is marked.
    pub(crate) fn get(&self) -> bool {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The entry's metric handles, if made with them.
    #[inline]
    pub(crate) fn metrics(&self) -> Option<&CacheMetrics> {
        self.0.metrics.as_ref()
    }
}

impl CacheLink {
    pub(crate) fn new(used: UseFlag, max_age: Option<Duration>) -> Self {
        CacheLink {
            retired: AtomicBool::new(false),
            used,
            max_age,
        }
    }
}

impl Snapshot {
    /// A snapshot of `instances`, read now. Sorts the instances by address
    /// and keeps only the first of several with the same address.
    pub fn new(service: ServiceName, instances: Vec<Instance>) -> Self {
        Self::read_at_instant(service, instances, Instant::now())
    }

    /// A snapshot of `instances` read at `read_at`.
    pub(crate) fn read_at_instant(
        service: ServiceName,
        instances: Vec<Instance>,
        read_at: Instant,
    ) -> Self {
        Self::build(service, instances, read_at, None)
    }

    /// A snapshot of `instances` read at `read_at`, for the resolver cache
    /// that `link` ties it to.
    pub(crate) fn cached_at(
        service: ServiceName,
        instances: Vec<Instance>,
        read_at: Instant,
        link: CacheLink,
    ) -> Self {
        Self::build(service, instances, read_at, Some(link))
    }

    fn build(
        service: ServiceName,
        mut instances: Vec<Instance>,
        read_at: Instant,
        link: Option<CacheLink>,
    ) -> Self {
        instances.sort_by(|a, b| a.addr().cmp(b.addr()));
        instances.dedup_by(|later, first| later.addr() == first.addr());
        Snapshot {
            inner: Arc::new(Inner {
                service,
                instances: instances.into_boxed_slice(),
                created: read_at,
                confirmed_nanos: AtomicU64::new(0),
                link,
            }),
        }
    }

    /// The service these instances belong to.
    #[inline]
    pub fn service(&self) -> &ServiceName {
        &self.inner.service
    }

    /// The live instances, sorted by address. Includes drained (weight 0)
    /// instances: balancers skip them.
    #[inline]
    pub fn instances(&self) -> &[Instance] {
        &self.inner.instances
    }

    /// Whether the service has no live instance (a normal answer).
    pub fn is_empty(&self) -> bool {
        self.inner.instances.is_empty()
    }

    /// The number of live instances.
    pub fn len(&self) -> usize {
        self.inner.instances.len()
    }

    /// When this list was last read from the source (see [Time](#time)).
    pub fn read_at(&self) -> Instant {
        self.inner.read_at()
    }

    /// Time since [`read_at`](Self::read_at): grows while the source is
    /// unreachable.
    pub fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.read_at())
    }

    /// Whether `a` and `b` are the same snapshot (not just equal lists):
    /// a new snapshot is made only when the list changed, so callers can
    /// cache work per snapshot (e.g. a balancer's pick table).
    pub fn ptr_eq(a: &Snapshot, b: &Snapshot) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// Whether a resolver cache returns this snapshot, so that
    /// [`still_cached`](Self::still_cached) can tell when it stops.
    #[inline]
    pub(crate) fn is_linked(&self) -> bool {
        self.inner.link.is_some()
    }

    /// Whether the resolver cache that returned this snapshot would still
    /// return it: same list, not evicted, not shut down, not older than its
    /// [`max_age`](Self::max_age). `false` for snapshots no cache keeps
    /// current.
    #[inline]
    pub(crate) fn still_cached(&self) -> bool {
        self.inner.link.as_ref().is_some_and(|link| {
            !link.retired.load(Ordering::Relaxed)
                && link.max_age.is_none_or(|max| self.age() <= max)
        })
    }

    /// The oldest a cache returns this snapshot (`None`: however old, or
    /// made by no cache).
    #[inline]
    pub(crate) fn max_age(&self) -> Option<Duration> {
        self.inner.max_age()
    }

    /// Marks the service used for its cache's idle sweep, and counts a
    /// cache hit, as the lookup it stands for would have: for a holder
    /// (the layer's picker cache) that uses the snapshot without a lookup.
    #[inline]
    pub(crate) fn mark_used(&self) {
        if let Some(link) = &self.inner.link {
            link.used.mark();
            if let Some(metrics) = link.used.metrics() {
                metrics.hit();
            }
        }
    }

    /// The cache no longer returns this snapshot.
    pub(crate) fn retire(&self) {
        if let Some(link) = &self.inner.link {
            link.retired.store(true, Ordering::Relaxed);
        }
    }

    /// Moves `read_at` forward to `at` (never backward): a read at `at`
    /// returned the same list.
    pub(crate) fn confirm(&self, at: Instant) {
        let offset = at.saturating_duration_since(self.inner.created).as_nanos();
        let offset = u64::try_from(offset).unwrap_or(u64::MAX);
        self.inner
            .confirmed_nanos
            .fetch_max(offset, Ordering::Relaxed);
    }

    pub(crate) fn into_arc(self) -> Arc<Inner> {
        self.inner
    }

    pub(crate) fn from_arc(inner: Arc<Inner>) -> Self {
        Snapshot { inner }
    }
}

impl Inner {
    pub(crate) fn read_at(&self) -> Instant {
        self.created + Duration::from_nanos(self.confirmed_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn instances(&self) -> &[Instance] {
        &self.instances
    }

    pub(crate) fn max_age(&self) -> Option<Duration> {
        self.link.as_ref().and_then(|link| link.max_age)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("service", self.service())
            .field("instances", &self.instances())
            .field("age", &self.age())
            .finish()
    }
}

/// One instance as listed by [`RedisResolver::list`](super::RedisResolver::list):
/// the instance and the time left on its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listed {
    /// The instance.
    pub instance: Instance,
    /// Time left on its lease (native schema), or on the whole service
    /// hash (Hertz schema); `None` if Redis reported no expiry.
    pub lease_left: Option<Duration>,
    /// The weight its owner registered, when an operator's
    /// [`Override`](crate::Override) replaced it (`instance` has the
    /// weight served); `None` without an override, and when the owner
    /// registered weight 0 (its own drain holds).
    pub registered_weight: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ServiceName {
        ServiceName::new("svc").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn age_grows_and_confirm_resets_it() {
        let s = Snapshot::new(name(), vec![Instance::new("h:1").unwrap()]);
        assert_eq!(s.age(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(s.age(), Duration::from_secs(5));
        let clone = s.clone();
        s.confirm(Instant::now() - Duration::from_secs(1));
        assert_eq!(clone.age(), Duration::from_secs(1));
        // Never backward.
        s.confirm(Instant::now() - Duration::from_secs(3));
        assert_eq!(s.age(), Duration::from_secs(1));
        assert!(Snapshot::ptr_eq(&s, &clone));
        let other = Snapshot::new(name(), vec![Instance::new("h:1").unwrap()]);
        assert!(!Snapshot::ptr_eq(&s, &other));
    }

    #[test]
    fn sorted_and_empty() {
        let s = Snapshot::new(
            name(),
            vec![Instance::new("b:1").unwrap(), Instance::new("a:2").unwrap()],
        );
        let addrs: Vec<_> = s.instances().iter().map(Instance::addr).collect();
        assert_eq!(addrs, ["a:2", "b:1"]);
        assert!(!s.is_empty());
        assert!(Snapshot::new(name(), vec![]).is_empty());
        let debug = format!("{s:?}");
        assert!(debug.contains("a:2") && debug.contains("svc"), "{debug}");
    }
}
