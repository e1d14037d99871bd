//! The read task of a cached service: waits for a permit, reads, hands
//! the result to the cache ([`Cache::complete`](crate::resolver::cache::Cache::complete)),
//! schedules the re-read that drops kept instances, and records outages
//! for the recovery grace.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::ResolverEngine;
use crate::error::ResolveError;
use crate::metrics::Stopwatch;
use crate::resolver::cache::{CacheEntry, Read};
use crate::resolver::recovery;
use crate::schema::{KeySchema, ReadReply};

impl ResolverEngine {
    /// Starts the read task of an entry (the caller won the right to).
    pub(super) fn spawn_read(self: &Arc<Self>, entry: Arc<CacheEntry>) {
        // Made before spawning and moved into the task, so it also runs if
        // the task is dropped without ever being polled (the runtime is
        // gone).
        let guard = ReadGuard {
            engine: self.clone(),
            entry,
            finished: false,
        };
        self.runtime.spawn(async move {
            let mut guard = guard;
            let engine = guard.engine.clone();
            tokio::select! {
                _ = engine.cancel.cancelled() => {}
                _ = engine.read_loop(&guard.entry) => guard.finished = true,
            }
        });
    }

    async fn read_loop(self: &Arc<Self>, entry: &Arc<CacheEntry>) {
        loop {
            if let Some(subscribed) = entry.take_subscription() {
                // Ok, Err (subscriber down: resubscribes and refreshes on
                // reconnect) and timeout all mean: read now.
                let _ = tokio::time::timeout(self.timeouts.command, subscribed).await;
            }
            let result = {
                let Queued::Permit(_permit) = self.permit(entry).await else {
                    return; // abandoned while queued
                };
                if entry.abandon_if_unwanted(!self.cache.holds(entry)) {
                    return;
                }
                self.read_cached(entry).await
            };
            match &result {
                Ok(read) => {
                    if entry.set_failing(false) {
                        tracing::info!(service = %entry.service(), instances = read.instances.len(), "service read again after failures");
                    }
                }
                Err(error) => {
                    if recovery::unreachable(error) {
                        self.recovery.lost();
                    }
                    let service = entry.service();
                    let age = entry.snapshot().map(|s| s.age());
                    match (entry.set_failing(true), age) {
                        (true, _) => {
                            tracing::debug!(%service, %error, last_known_age = ?age, "read failed again")
                        }
                        (false, Some(age)) if self.max_staleness.is_some_and(|max| age > max) => {
                            tracing::warn!(%service, %error, last_known_age = ?age, max_staleness = ?self.max_staleness, "read failed; the last known instances are too old to serve: callers get an error")
                        }
                        (false, Some(age)) => {
                            tracing::warn!(%service, %error, last_known_age = ?age, "read failed; serving the last known instances")
                        }
                        (false, None) => {
                            tracing::warn!(%service, %error, "read failed; no instances known yet: callers get the error")
                        }
                    }
                }
            }
            let completed = self.cache.complete(entry, result);
            // After every read attempt, good or not: near zero after a good
            // one, growing while Redis fails.
            entry.record_staleness();
            if let Some(at) = completed.recheck {
                self.recheck_at(entry.clone(), at);
            }
            if completed.again {
                continue;
            }
            // A service found with instances is subscribed from now on; a
            // negative one is not (request input must not grow the
            // subscriptions). One more read, once the subscription is
            // confirmed, catches a change made before it.
            let serves = entry.snapshot().is_some_and(|s| !s.is_empty());
            if !(serves && self.subscribe(entry) && entry.mark_dirty()) {
                return;
            }
        }
    }

    /// One read for the cache: the instances with their lease deadlines
    /// (native schema: the Hertz schema has no per-instance lease).
    async fn read_cached(&self, entry: &CacheEntry) -> Result<Read, ResolveError> {
        let generation = entry.begin_read();
        let read_at = Instant::now();
        let service = entry.service();
        let took = Stopwatch::start();
        let reply = self.read(service).await;
        if !matches!(reply, Err(ResolveError::Shutdown)) {
            // Sent to Redis, answered or not.
            entry.count_read(took);
        }
        let ReadReply {
            entries,
            keys_exist,
        } = reply?;
        // Redis answers: if it was lost, the recovery grace starts now.
        let answered = Instant::now();
        self.recovery.answered(answered);
        let leased = self.keyspace.schema() == KeySchema::Native;
        let mut instances = Vec::new();
        let mut hidden = HashSet::new();
        for decoded in self.decode(service, entries, Some(entry.skipped())) {
            if decoded.disabled {
                hidden.insert(Box::from(decoded.instance.addr()));
                continue;
            }
            // Counted from the start of the read: a little early, never
            // late.
            let deadline = decoded
                .lease_left
                .filter(|_| leased)
                .and_then(|left| read_at.checked_add(left));
            instances.push((decoded.instance, deadline));
        }
        Ok(Read {
            instances,
            hidden,
            read_at,
            generation,
            keys_exist,
            grace_end: self.recovery.grace_end(answered),
            grace: self.recovery.grace(),
        })
    }

    /// Reads `entry` again at `at`, when the first lease (or recovery
    /// grace) of the instances its list keeps without Redis listing them
    /// runs out.
    fn recheck_at(self: &Arc<Self>, entry: Arc<CacheEntry>, at: Instant) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            tokio::select! {
                _ = engine.cancel.cancelled() => {}
                _ = tokio::time::sleep_until(at) => {
                    entry.recheck_due(at);
                    // A running read drops the expired instances itself.
                    if engine.cache.holds(&entry) && entry.start_if_idle() {
                        engine.spawn_read(entry);
                    }
                }
            }
        });
    }

    /// A permit to read `entry`: from the caller pool if a caller waits
    /// for the read, else from the refresh pool, switching pools if a
    /// caller starts waiting meanwhile. While it queues, a read that
    /// [may be abandoned](CacheEntry::abandonable) is abandoned as soon as its
    /// last caller gives up, not when it gets a permit: during a Redis
    /// stall, a flood of names whose callers gave up leaves no task and
    /// no entry behind, however many of them the permits hold up.
    async fn permit(&self, entry: &Arc<CacheEntry>) -> Queued<'_> {
        loop {
            let unawaited = async {
                if entry.abandonable(!self.cache.holds(entry)) {
                    entry.unawaited().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let wanted = entry.is_wanted();
            tokio::select! {
                biased;
                permit = self.caller_reads.acquire(), if wanted => {
                    return Queued::Permit(permit.ok());
                }
                _ = entry.wanted(), if !wanted => {}
                permit = self.refresh_reads.acquire(), if !wanted => {
                    return Queued::Permit(permit.ok());
                }
                _ = unawaited => {
                    if entry.abandon_if_unwanted(!self.cache.holds(entry)) {
                        return Queued::Abandoned;
                    }
                    // A caller or a watch came meanwhile: queue on.
                }
            }
        }
    }
}

/// Where a queued read stands once it stops queueing.
enum Queued<'a> {
    /// It may run (`None`: the pool is closed, which it never is).
    Permit(Option<SemaphorePermit<'a>>),
    /// Every caller gave up on a read whose result would go nowhere: the
    /// entry was released unread ([`CacheEntry::abandon_if_unwanted`]).
    Abandoned,
}

/// Owns a read task's right to read its entry (`running`): if the task is
/// dropped before it finished (shutdown, runtime gone, panic), the entry
/// is released and its waiting callers get an error instead of waiting
/// for an outcome that will never come.
struct ReadGuard {
    engine: Arc<ResolverEngine>,
    entry: Arc<CacheEntry>,
    finished: bool,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let error = if self.engine.cancel.is_cancelled() {
            ResolveError::Shutdown
        } else {
            tracing::warn!(service = %self.entry.service(), "a read was dropped before it finished; has the runtime the resolver was created on shut down?");
            ResolveError::Interrupted {
                service: self.entry.service().to_string(),
            }
        };
        self.entry.interrupt(error);
    }
}
