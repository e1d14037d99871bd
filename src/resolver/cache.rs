//! The snapshot cache: lock-free reads, single-flight
//! reads and coalesced refreshes per service.
//!
//! Layout: [`map`] is the concurrent map, service name to the service's
//! [`CacheEntry`] (its mutable state, [`entry`]) and current snapshot; a hit
//! reads the map alone, without a lock. [`read_state`] holds the rule
//! that makes a read's list from the previous one.
//!
//! A snapshot the cache hands out carries a link to its entry
//! ([`CacheLink`](super::snapshot::CacheLink)): the entry's use flag, its
//! maximum age, and a *retired* flag the cache sets once it stops
//! returning that snapshot (replaced by a changed list, evicted, cleared at
//! shutdown). A holder can so keep using a snapshot without a lookup, by
//! one flag read, for exactly as long as a lookup would return it: the
//! discovery layer's picker cache keeps the snapshot each picker was built
//! for.
//!
//! Reads of an entry are serialized by its
//! [`ReadState`](read_state::ReadState): at most one read runs per
//! service. Callers that miss *join* the running read (or start one);
//! events and periodic refreshes mark the entry *dirty*, which runs one
//! more read after the running one, so a burst of events costs at most two
//! reads.
//!
//! A read does not simply replace the list (see [`Cache::complete`]): an
//! instance of the previous list that the read misses is kept until its
//! last known lease runs out (or a running recovery grace ends, if later),
//! unless an event removed it ([`read_state`]). The entry tracks
//! each instance's lease deadline and the removals announced by events,
//! stamped with a per-entry event generation so a read that started
//! before a removal cannot bring the instance back.
//!
//! Locks: an entry's read state may be held while taking its write-stripe
//! lock ([`Cache::complete`] publishes under it), never the other
//! way round: code under a write-stripe lock (`keep` and `on_remove` of
//! [`Cache::remove_all`], the closure of [`Cache::if_cached`]) must not
//! take an entry's read state. The full order is in the docs of
//! `engine/membership.rs`.
//!
//! Bounds. A *negative* entry (its list is empty, and it is neither
//! subscribed to events nor watched) is returned for the negative-cache
//! time only, then read again when asked for, and dropped by the sweep.
//! The number of entries is capped: past the cap, the least recently used
//! are evicted in a batch ([`Cache::least_recently_used`]). Recency is the
//! entry's use flag (set by a hit, a load and a store only on the first
//! hit since the last look) turned into a timestamp whenever the sweep or
//! an eviction looks: a hit never writes a clock or a shared list, and an
//! eviction is one scan per batch, not bookkeeping per hit. Uses between
//! two looks are not ordered; among them, an entry also used before the
//! last look ranks above one created since (as in segmented LRU).

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use self::map::ServiceMap;
use super::snapshot::Snapshot;
use crate::error::ResolveError;
use crate::instance::ServiceName;

#[cfg(test)]
use self::entry::lock;
pub(crate) use self::entry::CacheEntry;
pub(crate) use self::read_state::{Completed, Event, Read};
#[cfg(test)]
use tokio::time::Instant;

/// The snapshot cache of a resolver: its map of entries, and the rules
/// that bound how long a snapshot is served.
pub(crate) struct Cache {
    map: ServiceMap,
    max_staleness: Option<Duration>,
    /// How long a negative entry's empty list is returned.
    negative_ttl: Duration,
}

/// Where an entry stands for eviction: the lowest goes first (fields
/// compared in order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EvictionRank {
    /// Its list has an instance.
    serves: bool,
    last_used_ms: u64,
    /// Uses between two looks are not ordered: among entries used since
    /// the last look, ...
    used_since_last_look: bool,
    /// ... the one also used before it (a longer-lived one, used again)
    /// ranks above one created since (seen once), so a burst of new names
    /// does not push out a service in steady use.
    used_before: Reverse<u64>,
}

impl Cache {
    pub(super) fn new(max_staleness: Option<Duration>, negative_ttl: Duration) -> Self {
        Cache {
            map: ServiceMap::new(),
            max_staleness,
            negative_ttl,
        }
    }

    /// The hot path: the fresh snapshot of a cached service, marking it used.
    #[inline]
    pub(super) fn cached(&self, name: &str) -> Option<Snapshot> {
        self.map.hit(name)
    }

    /// The entry of a service, without marking it used.
    pub(super) fn get(&self, name: &str) -> Option<Arc<CacheEntry>> {
        self.map.get(name)
    }

    /// The entry of a service, inserted if missing; `true` if inserted.
    pub(super) fn get_or_insert(
        &self,
        name: &ServiceName,
        channel: impl FnOnce() -> Option<String>,
        now_ms: u64,
    ) -> (Arc<CacheEntry>, bool) {
        self.map.get_or_insert_with(name.as_str(), |hash| {
            Arc::new(CacheEntry::new(name.clone(), hash, channel(), now_ms))
        })
    }

    /// Removes `entry` if it is still the cached entry of its service and
    /// `keep` does not say otherwise; both checked, and `on_remove` run,
    /// under the write-stripe lock.
    #[cfg(test)]
    pub(crate) fn remove_if(
        &self,
        entry: &Arc<CacheEntry>,
        keep: impl Fn(&CacheEntry) -> bool,
        on_remove: impl FnMut(&CacheEntry),
    ) -> bool {
        self.remove_all(std::slice::from_ref(entry), keep, on_remove) == 1
    }

    /// Removes those of `entries` that are still the cached entry of their
    /// service and that `keep` does not keep;
    /// `keep` checked, and `on_remove` run, under the write-stripe lock.
    /// Returns how many were removed.
    pub(super) fn remove_all(
        &self,
        entries: &[Arc<CacheEntry>],
        keep: impl Fn(&CacheEntry) -> bool,
        on_remove: impl FnMut(&CacheEntry),
    ) -> usize {
        self.map.remove_all(entries, keep, on_remove)
    }

    /// Replaces `entry`, if it is still the cached entry of its service
    /// and `keep` does not keep it, by a new entry for `name` (the same
    /// service, spelled otherwise: the Hertz schema reads its key under
    /// the entry's spelling). `keep` checked, the swap made and
    /// `on_remove` run in one critical section under the write-stripe
    /// lock: no request can insert the service between the removal and
    /// the insertion. Returns whether replaced.
    pub(super) fn replace_unless(
        &self,
        entry: &Arc<CacheEntry>,
        keep: impl FnOnce(&CacheEntry) -> bool,
        name: &ServiceName,
        channel: impl FnOnce() -> Option<String>,
        now_ms: u64,
        on_remove: impl FnOnce(&CacheEntry),
    ) -> bool {
        if name.as_str() != entry.service.as_str() {
            return false; // another service
        }
        let make = || Arc::new(CacheEntry::new(name.clone(), entry.hash, channel(), now_ms));
        self.map.replace_unless(entry, keep, make, on_remove)
    }

    /// Whether `entry` is still the cached entry of its service.
    pub(super) fn holds(&self, entry: &Arc<CacheEntry>) -> bool {
        self.map.holds(entry)
    }

    /// Runs `f` on `entry` under its write-stripe lock if it is still the
    /// cached entry of its service (so it is ordered with its removal).
    /// `f` must not take the entry's read state (see the module docs on
    /// locks).
    pub(super) fn if_cached<R>(
        &self,
        entry: &Arc<CacheEntry>,
        f: impl FnOnce(&CacheEntry) -> R,
    ) -> Option<R> {
        self.map.if_cached(entry, f)
    }

    /// Up to `count` entries to evict, least recently used first, entries
    /// serving no instance (negative, or not read yet) before any that
    /// serve some: a flood of unknown names does not push real services
    /// out. Never `except` (the entry being inserted) nor a watched entry.
    /// Records every entry's use since the last look (as the sweep does).
    pub(super) fn least_recently_used(
        &self,
        count: usize,
        now_ms: u64,
        except: &Arc<CacheEntry>,
    ) -> Vec<Arc<CacheEntry>> {
        let mut candidates: Vec<(EvictionRank, Arc<CacheEntry>)> = self
            .entries()
            .into_iter()
            .filter_map(|entry| {
                let before = entry.look(now_ms);
                if Arc::ptr_eq(&entry, except) || entry.is_watched() {
                    return None;
                }
                let rank = EvictionRank {
                    serves: entry.serves(),
                    last_used_ms: entry.last_used_ms(),
                    used_since_last_look: before.is_some(),
                    used_before: Reverse(before.unwrap_or(u64::MAX)),
                };
                Some((rank, entry))
            })
            .collect();
        if count < candidates.len() {
            candidates.select_nth_unstable_by_key(count, |(rank, _)| *rank);
            candidates.truncate(count);
        }
        candidates.into_iter().map(|(_, entry)| entry).collect()
    }

    /// Whether `entry` is negative and its list older than the
    /// negative-cache time: the sweep drops it.
    pub(super) fn negative_expired(&self, entry: &CacheEntry) -> bool {
        entry.is_negative()
            && entry
                .snapshot()
                .is_some_and(|s| s.read_at().elapsed() > self.negative_ttl)
    }

    /// The maximum age of a new snapshot of `entry`: the negative-cache
    /// time for a negative one (capped by `max_staleness`), else
    /// `max_staleness`.
    fn max_age(&self, entry: &CacheEntry, empty: bool) -> Option<Duration> {
        if empty && !entry.is_subscribed() && !entry.is_watched() {
            let ttl = self.negative_ttl;
            Some(self.max_staleness.map_or(ttl, |max| max.min(ttl)))
        } else {
            self.max_staleness
        }
    }

    /// Every cached entry (a copy of the list, in no particular order).
    pub(super) fn entries(&self) -> Vec<Arc<CacheEntry>> {
        self.map.entries()
    }

    /// The number of cached services.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Records the result of a read and wakes its waiters (see
    /// [`CacheEntry::complete`]).
    pub(super) fn complete(
        &self,
        entry: &Arc<CacheEntry>,
        result: Result<Read, ResolveError>,
    ) -> Completed {
        let max_age = |entry: &CacheEntry, empty| self.max_age(entry, empty);
        entry.complete(result, max_age, |new| self.map.publish(entry, new))
    }

    /// Drops every entry.
    pub(super) fn clear(&self) {
        self.map.clear();
    }
}

mod entry;
mod map;
mod read_state;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
