//! [`RedisResolver`]: the cached resolver backed by Redis.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "tonic")]
use std::sync::Weak;

use tokio::sync::watch;

use super::builder::ResolverBuilder;
use super::engine::ResolverEngine;
use super::snapshot::{Listed, Snapshot};
use super::Resolve;
use crate::error::ResolveError;
use crate::instance::ServiceName;

/// The user-facing resolver: service name to live instances, from Redis,
/// cached. Cheap to clone; clones share one cache and one set of
/// connections.
///
/// * [`Resolve::cached`] answers from memory: lock-free, no I/O.
/// * [`Resolve::resolve`] answers from the cache, or reads the service once
///   (one round trip, a read-only script) however many callers wait; a
///   caller waits at most the connect timeout plus twice the command
///   timeout.
/// * Cached services are kept fresh by change events (native schema, one
///   pub/sub connection per resolver) and by a periodic refresh.
/// * An instance a read misses is kept until its last known lease runs
///   out, unless an event said it was deregistered or expired (native
///   schema), and, after Redis was unreachable or lost a service's keys,
///   until the [recovery grace](ResolverBuilder::recovery_grace) ends
///   (one heartbeat plus a margin from when Redis answers again;
///   `deregister` events still remove at once): an outage, a `FLUSHALL`
///   or a failover does not shrink the list while registrations come
///   back. See the [module docs](super).
/// * An error never replaces a good snapshot: while Redis is unreachable,
///   the last known instances are served and their
///   [`age`](Snapshot::age) grows.
/// * Services not asked for during the idle expiry are dropped. A service
///   found with no instance is remembered for the
///   [negative TTL](ResolverBuilder::negative_ttl) only, and not
///   subscribed; the cache holds at most
///   [`max_services`](ResolverBuilder::max_services) services, evicting
///   the least recently used. Requests for unknown names so cost bounded
///   memory and no subscription.
/// * Every async method is cancel-safe; each says what dropping its future
///   leaves. In short: a read that callers share goes on for the others
///   (and fills the cache), except a first read still queued when its
///   last caller gives up, which is dropped unsent; an uncached read is
///   abandoned.
/// * When the last clone is dropped (or on [`shutdown`](Self::shutdown))
///   every background task ends and the connections close.
///
/// See the [module docs](super) for an example.
#[derive(Clone)]
pub struct RedisResolver {
    handle: Arc<ResolverHandle>,
}

/// Owned by the clones of the resolver only (background tasks hold the
/// engine): its drop ends everything.
struct ResolverHandle {
    engine: Arc<ResolverEngine>,
}

/// A [`RedisResolver`] that does not keep it alive (its clones do).
#[cfg(feature = "tonic")]
#[derive(Clone)]
pub(crate) struct WeakResolver(Weak<ResolverHandle>);

#[cfg(feature = "tonic")]
impl WeakResolver {
    /// The resolver, unless its last clone was dropped.
    pub(crate) fn upgrade(&self) -> Option<RedisResolver> {
        self.0.upgrade().map(|handle| RedisResolver { handle })
    }
}

impl Drop for ResolverHandle {
    fn drop(&mut self) {
        self.engine.close();
    }
}

impl RedisResolver {
    /// Starts configuring a resolver for the Redis at `url` (any of the
    /// [crate's URLs](crate#redis-urls), Sentinel and Cluster included).
    pub fn builder(url: impl Into<String>) -> ResolverBuilder {
        ResolverBuilder::new(url.into())
    }

    /// Connects with the default options.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind: the connections opened
    /// so far close, and no task has been started (they start when it
    /// completes).
    pub async fn connect(url: impl Into<String>) -> Result<Self, ResolveError> {
        Self::builder(url).connect().await
    }

    pub(super) async fn from_builder(b: ResolverBuilder) -> Result<Self, ResolveError> {
        // Boxed: callers' futures hold a pointer, not the connect future's
        // nested state; unboxed, rustc hit its query depth limit laying out
        // the CLI's test futures.
        let engine = Box::pin(ResolverEngine::start(b)).await?;
        Ok(RedisResolver {
            handle: Arc::new(ResolverHandle { engine }),
        })
    }

    /// A handle that does not keep the resolver alive.
    #[cfg(feature = "tonic")]
    pub(crate) fn downgrade(&self) -> WeakResolver {
        WeakResolver(Arc::downgrade(&self.handle))
    }

    fn engine(&self) -> &Arc<ResolverEngine> {
        &self.handle.engine
    }

    /// Reads a service now, bypassing the cache: one round trip, a
    /// read-only script, nothing written and nothing cached. Corrupt
    /// entries are skipped with a warning. What Redis holds now: unlike the
    /// cache, it keeps no instance whose entry is missing.
    ///
    /// ```no_run
    /// # use redis_discovery::resolver::RedisResolver;
    /// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
    /// let snapshot = resolver.fetch("orders").await?;
    /// for instance in snapshot.instances() {
    ///     println!("{} weight {}", instance.addr(), instance.weight());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the read: its reply, if any, is
    /// discarded; nothing is cached or left running.
    pub async fn fetch<S>(&self, service: S) -> Result<Snapshot, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
    {
        let service = service.try_into().map_err(Into::into)?;
        self.engine().fetch(&service).await
    }

    /// Lists a service's live instances with the time left on each lease,
    /// sorted by address (the CLI's `list SERVICE`). Uncached, like
    /// [`fetch`](Self::fetch).
    ///
    /// # Cancel safety
    ///
    /// As [`fetch`](Self::fetch): dropping the future abandons the read and
    /// leaves nothing behind.
    pub async fn list<S>(&self, service: S) -> Result<Vec<Listed>, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
    {
        let service = service.try_into().map_err(Into::into)?;
        self.engine().list(&service).await
    }

    /// The names of the services known to the registry, sorted: services
    /// that have had an instance, **not necessarily with a live one now**.
    /// Use [`list`](Self::list) or [`fetch`](Self::fetch) for the live
    /// instances of each (the CLI's `list` prints the count next to every
    /// name, 0 included).
    ///
    /// * Native schema: the members of the `PREFIX:services` set whose keys
    ///   still exist. Every register and heartbeat adds the name; a clean
    ///   deregister of a service's last instance removes it. A service whose
    ///   instances all crashed is listed, with no live instance, until its
    ///   keys expire a minute after its last lease; from then on it is not
    ///   (its name stays in the set, since reads write nothing).
    /// * Hertz schema: a `SCAN` for `/hertz/*/server` keys: services whose
    ///   hash has not expired yet, which may hold only dead instances.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the listing (a Hertz `SCAN` stops
    /// between two calls) and leaves nothing behind.
    pub async fn services(&self) -> Result<Vec<String>, ResolveError> {
        self.engine().services().await
    }

    /// Watches a service: the receiver starts with its current snapshot and
    /// gets every new one (a new snapshot is made only when the list of
    /// instances changed, after an event or a refresh). While any receiver
    /// lives the service stays cached and subscribed; when the resolver is
    /// dropped, [`changed`](watch::Receiver::changed) returns an error.
    ///
    /// Fails like [`resolve`](Resolve::resolve) if the service cannot be
    /// read now.
    ///
    /// Do not hold the receiver's [`borrow`](watch::Receiver::borrow) (or
    /// [`borrow_and_update`](watch::Receiver::borrow_and_update)) across
    /// an `.await`, nor for long: the resolver sends a new snapshot
    /// while holding the service's lock, blocking its thread until every
    /// borrow is released. A borrow held across an `.await` so blocks
    /// reads of the service, then the runtime's threads, and can hang the
    /// resolver. Clone the snapshot out instead, as below: a [`Snapshot`]
    /// is cheap to clone (an `Arc`).
    ///
    /// Hertz schema: the key is read under this call's spelling
    /// (`/hertz/Orders/server` for `watch("Orders")`), also when the
    /// service was cached under another spelling and has no instance, as
    /// long as nothing else watches it (see the [module docs](super)).
    ///
    /// ```no_run
    /// # use redis_discovery::resolver::RedisResolver;
    /// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
    /// let mut updates = resolver.watch("orders").await?;
    /// while updates.changed().await.is_ok() {
    ///     let snapshot = updates.borrow_and_update().clone();
    ///     println!("orders now has {} instances", snapshot.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes creates no receiver. If it
    /// had started a read (as [`resolve`](Resolve::resolve) does), the read
    /// goes on (unless dropped unsent as `resolve` says: a first read still
    /// queued) and caches the service, which is then an ordinary cached
    /// service: dropped by the idle sweep when not asked for, subscribed
    /// only if it has instances.
    pub async fn watch<S>(&self, service: S) -> Result<watch::Receiver<Snapshot>, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
    {
        let service = service.try_into().map_err(Into::into)?;
        self.engine().watch(&service).await
    }

    /// Every change event the registry publishes, across services,
    /// services registered later included (native schema): for consoles,
    /// audit logs and dashboards. The cache does not need it (it has its
    /// own event connection).
    ///
    /// ```no_run
    /// use redis_discovery::resolver::{RedisResolver, RegistryEvent};
    ///
    /// # async fn run() -> Result<(), redis_discovery::ResolveError> {
    /// let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
    /// let mut events = resolver.events().await?;
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         RegistryEvent::Changed(change) => {
    ///             println!("{}: {} {}", change.service, change.kind, change.addr);
    ///         }
    ///         RegistryEvent::Missed => println!("events were lost: re-reading every service"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The stream has a pub/sub connection of its own, subscribed with
    /// `PSUBSCRIBE PREFIX:{*}:events`. This returns once Redis confirmed
    /// the subscription (within the connect timeout plus the command
    /// timeout; a Cluster's seeds are tried in turn), and fails if it
    /// cannot: [`ResolveError::Connect`]. Its Redis user needs
    /// `+psubscribe` and, since Redis matches a subscribed pattern
    /// literally against the user's channel rules, that very pattern
    /// (`&sd:{*}:events`) or `allchannels`: `&sd:*` is not enough.
    ///
    /// A task owned by the stream forwards the events; when the connection
    /// is lost (it is pinged every refresh interval, since a pub/sub
    /// connection is otherwise silent), it reconnects with backoff (100 ms
    /// to 1 s) and, subscribed again, yields
    /// [`RegistryEvent::Missed`](super::RegistryEvent::Missed): what was
    /// published meanwhile is lost. A reader more than 1024 events behind
    /// loses events too, and gets a `Missed` instead of them. Messages that
    /// are not valid events (an unknown kind, an invalid service name or
    /// address) are skipped.
    ///
    /// The task ends, and the connection closes, when the stream is
    /// dropped or the resolver is shut down or dropped (then
    /// [`next`](super::RegistryEvents::next) returns `None`);
    /// [`shutdown`](Self::shutdown) waits for it.
    ///
    /// Hertz schema: no events exist; fails with
    /// [`ResolveError::EventsUnsupported`] without connecting. A resolver
    /// shut down fails with [`ResolveError::Shutdown`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind: the connection opened so
    /// far closes, and the task starts only when the future completes.
    pub async fn events(&self) -> Result<super::RegistryEvents, ResolveError> {
        super::events::subscribe(self.engine()).await
    }

    /// The number of services in the cache.
    pub fn cached_services(&self) -> usize {
        self.engine().cached_services()
    }

    /// Ends every background task and closes the connections now, for
    /// every clone; waits for the tasks to end. Afterwards `resolve` fails
    /// with [`ResolveError::Shutdown`] and `cached` answers `None`.
    /// Dropping the last clone does the same without waiting.
    ///
    /// # Cancel safety
    ///
    /// The shutdown happens at the first poll, before any wait: dropping
    /// the future after that only stops waiting for the tasks, which end
    /// by themselves. A future dropped without ever being polled shuts
    /// nothing down.
    pub async fn shutdown(&self) {
        self.engine().shutdown().await;
    }
}

impl Resolve for RedisResolver {
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send {
        self.engine().resolve(service)
    }

    #[inline]
    fn cached(&self, service: &str) -> Option<Snapshot> {
        // Names are case-insensitive; the cache holds them in lowercase.
        self.engine().cached(&crate::instance::lowercase(service))
    }
}

impl fmt::Debug for RedisResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisResolver");
        self.engine().describe(&mut d);
        d.finish()
    }
}
