//! The engine behind [`RedisResolver`](super::RedisResolver): its
//! connection, its cache and the background work that keeps the cache
//! fresh. The facade's clones share one [`ResolverEngine`]; its background
//! tasks hold it too.
//!
//! * here: the engine's state, its start and close, the cached resolve
//!   and the uncached reads;
//! * [`membership`]: which services the cache holds and subscribes (insert,
//!   evict, sweep, watch);
//! * [`read_task`]: the read task of a cached service (permits, single
//!   flight, the recovery grace);
//! * [`reads`]: one read of a service from Redis, decoded, and the
//!   uncached reads (`fetch`, `list`, `services`);
//! * [`refresh`]: change events, refresh after a reconnect, the periodic
//!   refresh and the sweep timer.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::builder::ResolverBuilder;
use super::cache::Cache;
use super::pubsub;
use super::recovery::Recovery;
use super::snapshot::Snapshot;
use super::subscriptions::Subscriptions;
use crate::connection::{Connection, Endpoint, Timeouts};
use crate::error::{RedisFailure, ResolveError};
use crate::instance::ServiceName;
use crate::metrics::{redis_error, RedisOperation};
use crate::schema::{KeySchema, Keyspace};

mod membership;
mod read_task;
mod reads;
mod refresh;

/// Background reads (events, periodic refresh, reconnect) running at once,
/// per resolver: a periodic refresh of thousands of services is spread
/// over this many in-flight reads.
const MAX_REFRESH_READS: usize = 32;

/// Reads that callers wait for (misses), running at once, per resolver. A
/// pool of their own: a miss never queues behind background refreshes,
/// which pile up when Redis is slow or unreachable.
const MAX_CALLER_READS: usize = 32;

/// A resolver's state and background work, shared by the clones of the
/// [`RedisResolver`](super::RedisResolver) and its background tasks.
pub(super) struct ResolverEngine {
    /// Taken on shutdown, which closes the connection.
    conn: Mutex<Option<Connection>>,
    endpoint: Endpoint,
    url: String,
    keyspace: Keyspace,
    cache: Cache,
    refresh_interval: Duration,
    idle_expiry: Duration,
    max_staleness: Option<Duration>,
    negative_ttl: Duration,
    max_services: usize,
    /// Held while evicting: one eviction at a time.
    evicting: Mutex<()>,
    timeouts: Timeouts,
    /// The longest one Redis call may take on this kind of connection.
    call_limit: Duration,
    cancel: CancellationToken,
    runtime: tokio::runtime::Handle,
    refresh_reads: Semaphore,
    caller_reads: Semaphore,
    started: Instant,
    /// Pending changes for the event connection (native schema).
    subscriptions: Option<Subscriptions>,
    /// Outages, for the recovery grace.
    recovery: Recovery,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ResolverEngine {
    /// Connects as `b` says and starts the background tasks.
    pub(super) async fn start(b: ResolverBuilder) -> Result<Arc<Self>, ResolveError> {
        let (keyspace, endpoint) = b.validate()?;
        let url = b.redis.redacted_url();
        let connect_error = |operation| {
            let url = url.clone();
            move |source| {
                redis_error(operation);
                ResolveError::Connect {
                    url,
                    source: RedisFailure::new(source),
                }
            }
        };
        let conn = Connection::open(&endpoint, b.redis.timeouts)
            .await
            .map_err(connect_error(RedisOperation::Read))?;
        let events = match keyspace.schema() {
            KeySchema::Native => Some(
                endpoint
                    .events(b.redis.timeouts.connect)
                    .await
                    .map_err(connect_error(RedisOperation::Subscribe))?,
            ),
            _ => None,
        };
        let call_limit = b.redis.timeouts.call_limit(&conn);
        let engine = Arc::new(ResolverEngine {
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
            timeouts: b.redis.timeouts,
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
        let mut tasks = vec![tokio::spawn(refresh::maintain(engine.clone()))];
        if let Some(events) = events {
            tasks.push(tokio::spawn(pubsub::run(engine.clone(), events)));
        }
        *engine.lock_tasks() = tasks;
        tracing::debug!(url = %url, schema = %engine.keyspace.schema(), "resolver connected");
        Ok(engine)
    }

    fn lock_tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the background tasks and closes the connection (they end by
    /// themselves; see [`shutdown`](Self::shutdown) to wait for them).
    pub(super) fn close(&self) {
        if !self.cancel.is_cancelled() {
            tracing::debug!(url = %self.url, "resolver shutting down");
        }
        self.cancel.cancel();
        self.cache.clear();
        drop(self.lock_conn().take());
    }

    /// Closes, then waits for the background tasks to end.
    pub(super) async fn shutdown(&self) {
        self.close();
        let tasks = std::mem::take(&mut *self.lock_tasks());
        for task in tasks {
            // A JoinError only means the task panicked or was aborted.
            let _ = task.await;
        }
    }

    fn lock_conn(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle on the read connection, unless shut down.
    fn conn(&self) -> Result<Connection, ResolveError> {
        self.lock_conn().clone().ok_or(ResolveError::Shutdown)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The hot path: the fresh snapshot of a cached service (`name` in
    /// lowercase).
    #[inline]
    pub(super) fn cached(&self, name: &str) -> Option<Snapshot> {
        self.cache.cached(name)
    }

    /// The number of services in the cache.
    pub(super) fn cached_services(&self) -> usize {
        self.cache.len()
    }

    /// Pending changes for the event connection (native schema).
    pub(super) fn subscriptions(&self) -> Option<&Subscriptions> {
        self.subscriptions.as_ref()
    }

    /// Where Redis is, for the event connection.
    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(super) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub(super) fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub(super) fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// Outages, for the recovery grace.
    pub(super) fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Completes when the resolver is shut down or dropped.
    pub(super) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the resolver has been shut down or dropped.
    pub(super) fn is_closed(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The Redis URL, without its password, for errors.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Keeps a task started after the resolver (an events stream's), so
    /// that [`shutdown`](Self::shutdown) waits for it too. Finished tasks
    /// are let go here: the list holds the live ones only.
    pub(super) fn track(&self, task: JoinHandle<()>) {
        let mut tasks = self.lock_tasks();
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// The engine's settings and state, for the facade's `Debug`.
    pub(super) fn describe(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("url", &self.url)
            .field("schema", &self.keyspace.schema())
            .field("prefix", &self.keyspace.prefix())
            .field("refresh_interval", &self.refresh_interval)
            .field("idle_expiry", &self.idle_expiry)
            .field("max_staleness", &self.max_staleness)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_services", &self.max_services)
            .field("recovery_grace", &self.recovery.grace())
            .field("cached_services", &self.cache.len())
            .field("closed", &self.cancel.is_cancelled());
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
            // A read ended since the look in the map.
            entry.count_hit();
            return Ok(snapshot);
        }
        if entry.join_or_start(&outcomes) {
            self.spawn_read(entry.clone());
        }
        // Once per caller that waits, whatever the wait ends with: hits
        // plus misses are the lookups.
        entry.count_miss();
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
}
