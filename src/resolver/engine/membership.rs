//! Which services the resolver's cache holds, and which it subscribes:
//! inserting (and evicting past the cap), subscribing a service once it
//! has instances, and the sweep of idle and negative entries. Each change
//! to an entry's membership and to its subscription is made under the
//! entry's write-stripe lock, so an unsubscribe and a later subscribe of the same
//! channel reach the event connection in order.
//!
//! # Lock order
//!
//! Locks are taken in this order only, never the other way round:
//!
//! 1. `ResolverEngine::evicting` (one eviction at a time);
//! 2. an entry's read state (`CacheEntry::state`: [`Cache::complete`] holds it
//!    while it publishes a new snapshot into the slot, which takes ...);
//! 3. a write-stripe lock;
//! 4. leaf locks, under which nothing else is taken: the pending
//!    subscription changes ([`Subscriptions`]), an entry's skipped-entry
//!    memory, and the resolver's outage state (`Recovery`: its grace end
//!    is read before an entry's read state is taken, never under it).
//!
//! So code running under a write-stripe lock (the closures given to
//! [`Cache::if_cached`] and [`Cache::remove_all`]) never takes an entry's
//! read state: [`subscribe`](ResolverEngine::subscribe) records the subscription
//! confirmation on the entry only after the write-stripe lock is released.
//!
//! [`Cache::complete`]: crate::resolver::cache::Cache::complete
//! [`Cache::if_cached`]: crate::resolver::cache::Cache::if_cached
//! [`Cache::remove_all`]: crate::resolver::cache::Cache::remove_all
//! [`Subscriptions`]: crate::resolver::subscriptions::Subscriptions

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::ResolverEngine;
use crate::error::ResolveError;
use crate::instance::ServiceName;
use crate::resolver::cache::CacheEntry;
use crate::resolver::snapshot::Snapshot;
use crate::schema::KeySchema;

/// How often `watch` looks for its service again when an eviction took
/// the entry it found away before it was watched.
const MAX_WATCH_TRIES: u32 = 4;

impl ResolverEngine {
    /// The cached entry of a service, created if missing (not subscribed:
    /// see [`subscribe`](Self::subscribe)); evicts the least recently used
    /// services if that puts the cache over its cap.
    pub(super) fn entry(&self, service: &ServiceName) -> (Arc<CacheEntry>, bool) {
        let now_ms = self.now_ms();
        let channel = || self.keyspace.events_channel(service.as_str());
        let (entry, inserted) = self.cache.get_or_insert(service, channel, now_ms);
        if inserted {
            self.evict_over_cap(&entry, now_ms);
        }
        (entry, inserted)
    }

    /// Hertz schema, for [`watch`](crate::resolver::RedisResolver::watch): the key
    /// is read under the spelling of the request that cached the service
    /// (Go writes `/hertz/{name}/server` with its case). A watch spelled
    /// otherwise replaces a cached entry that serves no instance (negative,
    /// or not read yet) and is not watched, so that `watch("Orders")` reads
    /// `/hertz/Orders/server` whichever request came first. An entry that
    /// serves instances, or is watched, keeps its spelling. Only a watch:
    /// `resolve` is reachable from request input (hyper keeps the case of
    /// the host), and requests alternating spellings must not turn the
    /// negative cache into one Redis read per request. The native schema
    /// is case-insensitive throughout: nothing to do.
    fn respell(&self, service: &ServiceName) {
        if self.keyspace.schema() != KeySchema::Hertz {
            return;
        }
        let Some(entry) = self.cache.get(service.as_str()) else {
            return;
        };
        if entry.service().spelling() == service.spelling() {
            return;
        }
        // One critical section: a request between the removal and the
        // insertion would otherwise re-insert its own spelling, which the
        // watch would then join and keep.
        let keep = |e: &CacheEntry| e.serves() || e.is_watched();
        let channel = || self.keyspace.events_channel(service.as_str());
        let unsubscribe = |old: &CacheEntry| self.unsubscribe_removed(old);
        let replaced =
            self.cache
                .replace_unless(&entry, keep, service, channel, self.now_ms(), unsubscribe);
        if replaced {
            tracing::debug!(old = %entry.service().spelling(), new = %service.spelling(), "Hertz schema: an entry with no instance replaced by another spelling");
        }
    }

    /// Past `max_services`, evicts the least recently used services (never
    /// `inserted`), a sixteenth of the cap at once so the scan that picks
    /// them is paid once per that many inserts.
    fn evict_over_cap(&self, inserted: &Arc<CacheEntry>, now_ms: u64) {
        if self.cache.len() <= self.max_services {
            return;
        }
        let _one_at_a_time = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.cache.len();
        if len <= self.max_services {
            return; // another caller evicted meanwhile
        }
        let target = self.max_services - self.max_services / 16;
        let victims = self
            .cache
            .least_recently_used(len - target, now_ms, inserted);
        // One line for the batch, after the write-stripe locks are released.
        let evicted = self.drop_entries(&victims, CacheEntry::is_watched).len();
        tracing::debug!(
            evicted,
            max_services = self.max_services,
            "cache full: least recently used services evicted"
        );
    }

    /// Removes `entries` from the cache (those still cached, unless `keep`
    /// says otherwise, checked under the write-stripe lock), unsubscribing them.
    /// Returns the names of those removed, to log once the write-stripe locks
    /// are released (a subscriber may be slow).
    fn drop_entries(
        &self,
        entries: &[Arc<CacheEntry>],
        keep: impl Fn(&CacheEntry) -> bool,
    ) -> Vec<ServiceName> {
        let mut removed = Vec::new();
        self.cache.remove_all(entries, keep, |entry| {
            removed.push(entry.service().clone());
            self.unsubscribe_removed(entry);
        });
        removed
    }

    /// Unsubscribes an entry just removed from the cache, if subscribed.
    /// Under the write-stripe lock, like `subscribe`: a later re-insert's
    /// subscribe comes after this unsubscribe.
    fn unsubscribe_removed(&self, entry: &CacheEntry) {
        if let (Some(subscriptions), Some(channel)) = (&self.subscriptions, entry.channel()) {
            if entry.is_subscribed() {
                subscriptions.unsubscribe(channel);
            }
        }
    }

    /// Subscribes `entry` to its events channel, unless it is already, or
    /// no longer cached, or there are no events (Hertz schema). `true` if
    /// asked now: the next read waits until Redis confirmed, so no change
    /// falls between that read and the subscription.
    pub(super) fn subscribe(&self, entry: &Arc<CacheEntry>) -> bool {
        let (Some(subscriptions), Some(channel)) = (&self.subscriptions, entry.channel()) else {
            return false;
        };
        if entry.is_subscribed() {
            return false;
        }
        // Under the write-stripe lock, ordered with the entry's removal; nothing
        // else (see the module docs on lock order).
        let asked = self.cache.if_cached(entry, |entry| {
            if !entry.set_subscribed() {
                return None;
            }
            let (ack, subscribed) = oneshot::channel();
            subscriptions.subscribe(channel, ack);
            Some(subscribed)
        });
        let Some(Some(subscribed)) = asked else {
            return false;
        };
        // Outside the write-stripe lock: this takes the entry's read state. A read
        // that started meanwhile does not wait for the confirmation, but
        // the caller's follow-up read (`mark_dirty` after this returns)
        // finds it and does.
        entry.set_subscription(subscribed);
        true
    }

    /// The events channel of every subscribed entry.
    pub(in crate::resolver) fn channels(&self) -> Vec<String> {
        self.cache
            .entries()
            .iter()
            .filter(|e| e.is_subscribed())
            .filter_map(|e| e.channel().map(str::to_owned))
            .collect()
    }

    /// Drops services idle for longer than the idle expiry, and negative
    /// ones older than the negative-cache time.
    pub(super) fn sweep(&self) {
        let now = self.now_ms();
        let (mut idle, mut negative) = (Vec::new(), Vec::new());
        for entry in self.cache.entries() {
            if self.cache.negative_expired(&entry) {
                negative.push(entry);
            } else if entry.idle_for(now) >= self.idle_expiry {
                idle.push(entry);
            }
        }
        let expired = |e: &CacheEntry| !self.cache.negative_expired(e);
        let dropped = self.drop_entries(&negative, expired).len();
        if dropped > 0 {
            tracing::trace!(
                dropped,
                "no instance: services dropped from the negative cache"
            );
        }
        for service in self.drop_entries(&idle, CacheEntry::in_use) {
            tracing::debug!(%service, idle_expiry = ?self.idle_expiry, "service idle: dropped from the cache");
        }
    }

    /// Watches a service (see [`RedisResolver::watch`](crate::resolver::RedisResolver::watch)).
    pub(in crate::resolver) async fn watch(
        self: &Arc<Self>,
        service: &ServiceName,
    ) -> Result<watch::Receiver<Snapshot>, ResolveError> {
        self.respell(service);
        let mut tries = 0;
        loop {
            let snapshot = self.resolve(service).await?;
            let (entry, inserted) = self.entry(service);
            let was_negative = entry.is_negative();
            let receiver = entry.watch(snapshot);
            // An eviction can take the entry away between finding and
            // watching it (a watched entry is never evicted, but the check
            // is under the write-stripe lock, the watch under the entry's): a
            // watcher of such an orphan would never be refreshed, so watch
            // the entry cached now. Bounded, for a cache churned by a flood.
            tries += 1;
            if !self.cache.holds(&entry) && tries < MAX_WATCH_TRIES {
                continue;
            }
            // Watched: subscribed even with no instance, never negative.
            // Read again if just subscribed (after the confirmation),
            // negative until now, or dropped by the sweep or an eviction
            // meanwhile.
            let subscribed = self.subscribe(&entry);
            if (inserted || subscribed || was_negative) && entry.mark_dirty() {
                self.spawn_read(entry.clone());
            }
            return Ok(receiver);
        }
    }
}
