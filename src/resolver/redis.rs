//! [`RedisResolver`]: the cached resolver backed by Redis.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::builder::ResolverBuilder;
use super::cache::{Cache, Entry, Event};
use super::pubsub;
use super::recovery::Recovery;
use super::skipped::{self, SkippedEntries};
use super::snapshot::{Listed, Snapshot};
use super::subscriptions::Subscriptions;
use super::Resolve;
use crate::connection::{self, Connection, Endpoint, Timeouts};
use crate::error::ResolveError;
use crate::instance::{Instance, ServiceName};
use crate::schema::{KeySchema, Keyspace, RawEntry, ReadReply};
use crate::time::after;

/// Background reads (events, periodic refresh, reconnect) running at once,
/// per resolver: a periodic refresh of thousands of services is spread
/// over this many in-flight reads.
const MAX_REFRESH_READS: usize = 32;

/// Reads that callers wait for (misses), running at once, per resolver. A
/// pool of their own: a miss never queues behind background refreshes,
/// which pile up when Redis is slow or unreachable.
const MAX_CALLER_READS: usize = 32;

/// How often `watch` looks for its service again when an eviction took
/// the entry it found away before it was watched.
const MAX_WATCH_TRIES: u32 = 4;

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
    handle: Arc<Handle>,
}

/// Owned by the clones of the resolver only (background tasks hold
/// `Shared`): its drop ends everything.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

pub(super) struct Shared {
    /// Taken on shutdown, which closes the connection.
    conn: Mutex<Option<Connection>>,
    endpoint: Endpoint,
    url: String,
    pub(super) keyspace: Keyspace,
    pub(super) cache: Cache,
    refresh_interval: Duration,
    pub(super) idle_expiry: Duration,
    pub(super) max_staleness: Option<Duration>,
    pub(super) negative_ttl: Duration,
    pub(super) max_services: usize,
    /// Held while evicting: one eviction at a time.
    pub(super) evicting: Mutex<()>,
    pub(super) timeouts: Timeouts,
    /// The longest one Redis call may take on this kind of connection.
    call_limit: Duration,
    pub(super) cancel: CancellationToken,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) refresh_reads: Semaphore,
    pub(super) caller_reads: Semaphore,
    started: Instant,
    /// Pending changes for the event connection (native schema).
    pub(super) subscriptions: Option<Subscriptions>,
    /// Outages, for the recovery grace.
    pub(super) recovery: Recovery,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
        let (keyspace, endpoint) = b.validate()?;
        let url = connection::redact(&b.url);
        let connect_error = |source| ResolveError::Connect {
            url: url.clone(),
            source,
        };
        let conn = Connection::open(&endpoint, b.timeouts)
            .await
            .map_err(connect_error)?;
        let events = match keyspace.schema() {
            KeySchema::Native => Some(
                endpoint
                    .events(b.timeouts.connect)
                    .await
                    .map_err(connect_error)?,
            ),
            _ => None,
        };
        let call_limit = b.timeouts.call_limit(&conn);
        let shared = Arc::new(Shared {
            conn: Mutex::new(Some(conn)),
            endpoint,
            url: url.clone(),
            keyspace,
            cache: Cache::new(b.max_staleness, b.negative_ttl),
            refresh_interval: b.refresh_interval,
            idle_expiry: b.idle_expiry,
            max_staleness: b.max_staleness,
            negative_ttl: b.negative_ttl,
            max_services: b.max_services,
            evicting: Mutex::new(()),
            timeouts: b.timeouts,
            call_limit,
            cancel: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            refresh_reads: Semaphore::new(MAX_REFRESH_READS),
            caller_reads: Semaphore::new(MAX_CALLER_READS),
            started: Instant::now(),
            subscriptions: events.as_ref().map(|_| Subscriptions::default()),
            recovery: Recovery::new(b.recovery_grace_or_default()),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![tokio::spawn(maintain(shared.clone()))];
        if let Some(events) = events {
            tasks.push(tokio::spawn(pubsub::run(shared.clone(), events)));
        }
        *shared.lock_tasks() = tasks;
        tracing::debug!(url = %url, schema = %shared.keyspace.schema(), "resolver connected");
        Ok(RedisResolver {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
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
        self.shared().fetch(&service).await
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
        let shared = self.shared();
        let raw = shared.read(&service).await?.entries;
        let mut listed: Vec<Listed> = shared
            .decode_uncached(&service, raw)
            .map(|(instance, lease_left)| Listed {
                instance,
                lease_left,
            })
            .collect();
        listed.sort_by(|a, b| a.instance.addr().cmp(b.instance.addr()));
        Ok(listed)
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
        let shared = self.shared();
        let mut conn = shared.conn()?;
        let call = shared.keyspace.services(&mut conn);
        shared.timed("(service list)", call).await
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
        let shared = self.shared();
        shared.respell(&service);
        let mut tries = 0;
        loop {
            let snapshot = shared.resolve(&service).await?;
            let (entry, inserted) = shared.entry(&service);
            let was_negative = entry.is_negative();
            let receiver = entry.watch(snapshot);
            // An eviction can take the entry away between finding and
            // watching it (a watched entry is never evicted, but the check
            // is under the shard lock, the watch under the entry's): a
            // watcher of such an orphan would never be refreshed, so watch
            // the entry cached now. Bounded, for a cache churned by a flood.
            tries += 1;
            if !shared.cache.holds(&entry) && tries < MAX_WATCH_TRIES {
                continue;
            }
            // Watched: subscribed even with no instance, never negative.
            // Read again if just subscribed (after the confirmation),
            // negative until now, or dropped by the sweep or an eviction
            // meanwhile.
            let subscribed = shared.subscribe(&entry);
            if (inserted || subscribed || was_negative) && entry.mark_dirty() {
                shared.spawn_read(entry.clone());
            }
            return Ok(receiver);
        }
    }

    /// The number of services in the cache.
    pub fn cached_services(&self) -> usize {
        self.shared().cache.len()
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
        self.shared().close();
        let tasks = std::mem::take(&mut *self.shared().lock_tasks());
        for task in tasks {
            // A JoinError only means the task panicked or was aborted.
            let _ = task.await;
        }
    }
}

impl Resolve for RedisResolver {
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send {
        self.shared().resolve(service)
    }

    #[inline]
    fn cached(&self, service: &str) -> Option<Snapshot> {
        // Names are case-insensitive; the cache holds them in lowercase.
        self.shared()
            .cache
            .cached(&crate::instance::lowercase(service))
    }
}

impl fmt::Debug for RedisResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared();
        f.debug_struct("RedisResolver")
            .field("url", &s.url)
            .field("schema", &s.keyspace.schema())
            .field("prefix", &s.keyspace.prefix())
            .field("refresh_interval", &s.refresh_interval)
            .field("idle_expiry", &s.idle_expiry)
            .field("max_staleness", &s.max_staleness)
            .field("negative_ttl", &s.negative_ttl)
            .field("max_services", &s.max_services)
            .field("recovery_grace", &s.recovery.grace())
            .field("cached_services", &s.cache.len())
            .field("closed", &s.cancel.is_cancelled())
            .finish()
    }
}

impl Shared {
    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        if !self.cancel.is_cancelled() {
            tracing::debug!(url = %self.url, "resolver shutting down");
        }
        self.cancel.cancel();
        self.cache.clear();
        drop(self.lock_conn().take());
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle on the read connection, unless shut down.
    fn conn(&self) -> Result<Connection, ResolveError> {
        self.lock_conn().clone().ok_or(ResolveError::Shutdown)
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn subscriptions(&self) -> Option<&Subscriptions> {
        self.subscriptions.as_ref()
    }

    /// The cached resolve: hit, or join (or start) the single read.
    pub(super) async fn resolve(
        self: &Arc<Self>,
        service: &ServiceName,
    ) -> Result<Snapshot, ResolveError> {
        if let Some(snapshot) = self.cache.cached(service.as_str()) {
            return Ok(snapshot);
        }
        if self.cancel.is_cancelled() {
            return Err(ResolveError::Shutdown);
        }
        let (entry, _) = self.entry(service);
        entry.touch();
        // Subscribe to outcomes before looking, so a read that ends between
        // the look and the wait is not missed.
        let mut outcomes = entry.outcomes();
        if let Some(snapshot) = entry.fresh() {
            return Ok(snapshot);
        }
        if entry.join_or_start(&outcomes) {
            self.spawn_read(entry.clone());
        }
        let limit = self.resolve_timeout();
        let waited = tokio::time::timeout(limit, async {
            tokio::select! {
                _ = self.cancel.cancelled() => false,
                changed = outcomes.changed() => changed.is_ok(),
            }
        })
        .await;
        let outcome = match waited {
            Ok(true) => outcomes.borrow_and_update().clone(),
            Ok(false) => return Err(ResolveError::Shutdown),
            // The read goes on and will update the cache; this caller has
            // waited long enough.
            Err(_) => Some(Err(ResolveError::Timeout {
                service: service.to_string(),
                timeout: limit,
            })),
        };
        match outcome {
            Some(Ok(snapshot)) => Ok(snapshot),
            Some(Err(error)) => match (entry.snapshot(), self.max_staleness) {
                (Some(last), None) => Ok(last),
                (Some(last), Some(max)) if last.age() <= max => Ok(last),
                (Some(last), Some(max)) => Err(ResolveError::Stale {
                    service: service.to_string(),
                    age: last.age(),
                    max,
                }),
                (None, _) => Err(error),
            },
            None => Err(ResolveError::Shutdown),
        }
    }

    /// The longest a caller waits for a read: the subscription of a new
    /// service (a command timeout), the read itself, plus a connect timeout
    /// for a reconnect.
    fn resolve_timeout(&self) -> Duration {
        self.timeouts
            .connect
            .saturating_add(self.timeouts.command)
            .saturating_add(self.call_limit)
    }

    /// An event arrived on `channel`: refresh its service if cached.
    pub(super) fn on_event(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let Some(service) = self.keyspace.service_of_channel(channel) else {
            return;
        };
        if tracing::enabled!(tracing::Level::TRACE) {
            // Four bytes per character at most.
            let head = &payload[..payload.len().min(4 * MAX_LOGGED_EVENT_CHARS)];
            let payload = String::from_utf8_lossy(head);
            let event = skipped::truncated(&payload, MAX_LOGGED_EVENT_CHARS);
            tracing::trace!(service, event, "change event");
        }
        if let Some(entry) = self.cache.get(service) {
            let message = serde_json::from_slice::<EventMessage<'_>>(payload).ok();
            let event = match &message {
                Some(m) if matches!(&*m.event, "register" | "update") => Event::Listed(&m.addr),
                Some(m) if m.event == "deregister" => Event::Removed(&m.addr),
                Some(m) if m.event == "expire" => Event::Expired(&m.addr),
                _ => Event::Other,
            };
            entry.on_event(event, self.recovery.grace_end(Instant::now()));
            if entry.mark_dirty() {
                self.spawn_read(entry);
            }
        }
    }

    /// Reads every cached service again, after the running reads (which
    /// may have missed events): on reconnect of the event connection.
    pub(super) fn refresh_all(self: &Arc<Self>) {
        for entry in self.cache.entries() {
            // A negative entry is not subscribed: it missed nothing.
            if entry.refreshable() && entry.mark_dirty() {
                self.spawn_read(entry);
            }
        }
    }

    /// The periodic refresh: reads every cached service that is not being
    /// read already. A running read stands for this one, so when Redis is
    /// slow the queue of reads drains instead of growing.
    fn refresh_periodic(self: &Arc<Self>) {
        for entry in self.cache.entries() {
            // A negative entry is read again when asked for after its
            // negative-cache time, or dropped by the sweep.
            if entry.refreshable() && entry.start_if_idle() {
                self.spawn_read(entry);
            }
        }
    }

    pub(super) fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One uncached read, decoded.
    async fn fetch(&self, service: &ServiceName) -> Result<Snapshot, ResolveError> {
        let read_at = Instant::now();
        let raw = self.read(service).await?.entries;
        let instances: Vec<Instance> = self.decode_uncached(service, raw).map(|(i, _)| i).collect();
        Ok(Snapshot::read_at_instant(
            service.clone(),
            instances,
            read_at,
        ))
    }

    /// One read of a service. A read that fails on a broken connection
    /// is tried once more at once: that try waits for the reconnect the
    /// failure started (the first read after Redis comes back would fail
    /// otherwise). Both tries share one call limit, so a caller's wait
    /// bound holds.
    pub(super) async fn read(&self, service: &ServiceName) -> Result<ReadReply, ResolveError> {
        let mut conn = self.conn()?;
        let call = async {
            match self.keyspace.read(&mut conn, service).await {
                Err(error) if connection::broke(&error) => {
                    // Redis went away (a restart, a failover) even if the
                    // retry succeeds: without events (the Hertz schema)
                    // this is the only sign of it, and the recovery grace
                    // must follow.
                    self.recovery.lost();
                    tracing::debug!(%service, %error, "read failed on a broken connection; trying once more");
                    self.keyspace.read(&mut conn, service).await
                }
                result => result,
            }
        };
        self.timed(service.as_str(), call).await
    }

    /// Runs a Redis call with the command timeout, mapping errors.
    async fn timed<T>(
        &self,
        service: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ResolveError> {
        match tokio::time::timeout(self.call_limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(ResolveError::Redis {
                service: service.to_owned(),
                source,
            }),
            Err(_) => Err(ResolveError::Timeout {
                service: service.to_owned(),
                timeout: self.call_limit,
            }),
        }
    }

    /// Decodes what an uncached read (`fetch`, `list`) found: skipped
    /// entries are warned about as a cached read would if the service is
    /// cached (once while they stay), else at this read.
    fn decode_uncached(
        &self,
        service: &ServiceName,
        raw: Vec<RawEntry>,
    ) -> impl Iterator<Item = (Instance, Option<Duration>)> {
        let entry = self.cache.get(service.as_str());
        self.decode(service, raw, entry.as_deref().map(Entry::skipped))
    }

    /// Decodes entries, skipping corrupt ones and those the address policy
    /// refuses: with one warning per entry while it stays if `warned` (the
    /// cache entry's memory) is given, else with a warning at this read.
    pub(super) fn decode(
        &self,
        service: &ServiceName,
        raw: Vec<RawEntry>,
        warned: Option<&SkippedEntries>,
    ) -> impl Iterator<Item = (Instance, Option<Duration>)> {
        let mut skipped = Vec::new();
        let mut decoded = Vec::with_capacity(raw.len());
        for entry in raw {
            match self.keyspace.decode(&entry) {
                Ok(instance) => decoded.push((instance, entry.lease_left)),
                Err(error) => skipped.push((entry.field, error)),
            }
        }
        match warned {
            Some(warned) => warned.observe(service, skipped),
            None => skipped::warn_all(service, skipped),
        }
        decoded.into_iter()
    }
}

/// The most characters of a change event logged (anyone who may publish
/// on the channel chooses its size).
const MAX_LOGGED_EVENT_CHARS: usize = 512;

/// A change event as published by the registry's scripts:
/// `{"event":"register"|"update"|"deregister"|"expire","addr":"host:port"}`.
#[derive(serde::Deserialize)]
struct EventMessage<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    addr: std::borrow::Cow<'a, str>,
}

/// Periodic refresh and idle sweep, until the resolver is dropped.
async fn maintain(shared: Arc<Shared>) {
    let refresh_every = shared.refresh_interval;
    let mut refresh = tokio::time::interval_at(after(refresh_every), refresh_every);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let sweep_every = (shared.idle_expiry / 4)
        .min(shared.negative_ttl)
        .max(Duration::from_millis(10));
    let mut sweep = tokio::time::interval_at(after(sweep_every), sweep_every);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = refresh.tick() => {
                tracing::trace!(services = shared.cache.len(), "periodic refresh");
                shared.refresh_periodic();
            }
            _ = sweep.tick() => shared.sweep(),
        }
    }
}
