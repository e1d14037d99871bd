//! The snapshot cache: lock-free reads, copy-on-write inserts, single-flight
//! reads and coalesced refreshes per service.
//!
//! Layout: 16 shards, each an `ArcSwap` of an immutable hash table of
//! slots; a slot is a service's `Arc<Entry>` (its mutable state) and its
//! current snapshot. A hit is one hash of the name, one `ArcSwap` load, one
//! table probe, one `Arc` clone and no lock. Inserting or evicting a
//! service, or a *changed* snapshot, copies one shard (1/16 of the
//! services: two `Arc` clones per service) under that shard's write lock;
//! all three are rare next to hits (a refresh that finds nothing changed
//! copies nothing).
//!
//! A snapshot the cache hands out carries a link to its entry
//! ([`CacheLink`]): the entry's use flag, its maximum age, and a
//! *retired* flag the cache sets once it stops returning that snapshot
//! (replaced by a changed list, evicted, cleared at shutdown). A holder
//! can so keep using a snapshot without a lookup, by one flag read, for
//! exactly as long as a lookup would return it: the discovery layer
//! remembers the snapshot it routed by last.
//!
//! Reads of an entry are serialized by its [`ReadState`]: at most one read
//! runs per service. Callers that miss *join* the running read (or start
//! one); events and periodic refreshes mark the entry *dirty*, which runs
//! one more read after the running one, so a burst of events costs at most
//! two reads.
//!
//! A read does not simply replace the list (see [`Cache::complete`]): an
//! instance of the previous list that the read misses is kept until its
//! last known lease runs out (or a running recovery grace ends, if later),
//! unless an event removed it ([`read_state`]). The entry tracks
//! each instance's lease deadline and the removals announced by events,
//! stamped with a per-entry event generation so a read that started
//! before a removal cannot bring the instance back.
//!
//! Locks: an entry's read state may be held while taking its shard's
//! write lock ([`Cache::complete`] publishes under it), never the other
//! way round: code under a shard lock (`keep` and `on_remove` of
//! [`Cache::remove_all`], the closure of [`Cache::if_cached`]) must not
//! take an entry's read state. The full order is in the docs of
//! `membership.rs`.
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
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hashbrown::HashTable;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use self::read_state::ReadState;
use super::skipped::SkippedEntries;
use super::snapshot::{CacheLink, Inner as SnapshotInner, Snapshot, UseFlag};
use crate::error::ResolveError;
use crate::instance::{Instance, ServiceName};

const SHARDS: usize = 16;

/// The result of one read, as seen by the callers waiting for it.
pub(crate) type Outcome = Option<Result<Snapshot, ResolveError>>;

/// What one successful read of a service found.
pub(crate) struct Read {
    /// The listed instances, each with the deadline of its lease (native
    /// schema; `None` where there is no per-instance lease).
    pub instances: Vec<(Instance, Option<Instant>)>,
    /// When the read started.
    pub read_at: Instant,
    /// The entry's [event generation](Entry::begin_read) when the read
    /// started.
    pub generation: u64,
    /// Whether the service's keys exist (native schema; `None`: the schema
    /// cannot tell). Found gone after a read that found them, they start
    /// the service's recovery grace.
    pub keys_exist: Option<bool>,
    /// The end of the resolver's recovery grace, if one runs.
    pub grace_end: Option<Instant>,
    /// The length of a recovery grace (zero: none).
    pub grace: Duration,
}

/// What [`Cache::complete`] asks of the read task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    /// The entry was marked dirty meanwhile: read it again.
    pub again: bool,
    /// The list keeps instances the read did not find: read again at this
    /// time, when the first of them is due to go (its last known lease, or
    /// the recovery grace, has run out).
    pub recheck: Option<Instant>,
}

/// A change event, as far as the cache cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// `register` or `update`: the instance is (back) in the registry.
    Listed(&'a str),
    /// `deregister`: the instance left the registry.
    Removed(&'a str),
    /// `expire`: its lease ran out. A removal, except during a recovery
    /// grace.
    Expired(&'a str),
    /// Anything else.
    Other,
}

pub(crate) struct Cache {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
    max_staleness: Option<Duration>,
    /// How long a negative entry's empty list is returned.
    negative_ttl: Duration,
}

#[derive(Default)]
struct Shard {
    map: ArcSwap<HashTable<Slot>>,
    write: Mutex<()>,
}

#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    /// The entry's current snapshot, copied here for the hot path.
    snapshot: Option<Snapshot>,
    /// The snapshot's [`max_age`](Snapshot::max_age), copied here so a hit
    /// reads no more memory than the slot.
    max_age: Option<Duration>,
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

/// One cached service.
pub(crate) struct Entry {
    service: ServiceName,
    hash: u64,
    /// The events channel (native schema).
    channel: Option<String>,
    /// The current snapshot (also in the entry's slot, for hits).
    snapshot: ArcSwapOption<SnapshotInner>,
    /// Set on every use; cleared by the idle sweep. Shared with the
    /// entry's snapshots, whose holders mark it ([`Snapshot::mark_used`]).
    used: UseFlag,
    /// Last sweep that saw the entry used, ms since the resolver started.
    last_used_ms: AtomicU64,
    /// Subscribed to its events channel (requested, at least): set once
    /// a read found instances, or by a watch.
    subscribed: AtomicBool,
    /// The latest read failed (to log a failure once, not at every retry).
    failing: AtomicBool,
    state: Mutex<ReadState>,
    /// Wakes a read waiting for a refresh permit when a caller starts
    /// waiting for it (it then takes a caller permit instead).
    wanted_notify: Notify,
    outcome: watch::Sender<Outcome>,
    watchers: OnceLock<watch::Sender<Snapshot>>,
    /// The skipped registry entries already warned about: freed with the
    /// entry, so bounded by the cache cap.
    skipped: SkippedEntries,
}

impl Cache {
    pub fn new(max_staleness: Option<Duration>, negative_ttl: Duration) -> Self {
        Cache {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            max_staleness,
            negative_ttl,
        }
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    fn shard_index(hash: u64) -> usize {
        // Bits the table itself does not use: the low bits pick a bucket,
        // the top 7 are the control tag.
        (hash >> 32) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[Self::shard_index(hash)]
    }

    /// The hot path: the fresh snapshot of a cached service, marking it used.
    pub fn cached(&self, name: &str) -> Option<Snapshot> {
        let hash = self.hash(name);
        let map = self.shard(hash).map.load();
        let slot = map.find(hash, |s| s.entry.service.as_str() == name)?;
        slot.entry.touch();
        let snapshot = slot.snapshot.as_ref()?;
        if let Some(max) = slot.max_age {
            if snapshot.age() > max {
                return None;
            }
        }
        Some(snapshot.clone())
    }

    /// The entry of a service, without marking it used.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        let hash = self.hash(name);
        let map = self.shard(hash).map.load();
        map.find(hash, |s| s.entry.service.as_str() == name)
            .map(|s| s.entry.clone())
    }

    /// The entry of a service, inserted if missing; `true` if inserted.
    pub fn get_or_insert(
        &self,
        name: &ServiceName,
        channel: impl FnOnce() -> Option<String>,
        now_ms: u64,
    ) -> (Arc<Entry>, bool) {
        let hash = self.hash(name.as_str());
        let shard = self.shard(hash);
        let find = |map: &HashTable<Slot>| {
            map.find(hash, |s| s.entry.service.as_str() == name.as_str())
                .map(|s| s.entry.clone())
        };
        if let Some(entry) = find(&shard.map.load()) {
            return (entry, false);
        }
        let _write = lock(&shard.write);
        let current = shard.map.load_full();
        if let Some(entry) = find(&current) {
            return (entry, false);
        }
        let entry = Arc::new(Entry::new(name.clone(), hash, channel(), now_ms));
        let mut map = HashTable::clone(&current);
        let slot = Slot {
            entry: entry.clone(),
            snapshot: None,
            max_age: None,
        };
        map.insert_unique(hash, slot, |s| s.entry.hash);
        shard.map.store(Arc::new(map));
        (entry, true)
    }

    /// Removes `entry` if it is still the cached entry of its service and
    /// `keep` does not say otherwise; both checked, and `on_remove` run,
    /// under the shard's write lock.
    #[cfg(test)]
    pub fn remove_if(
        &self,
        entry: &Arc<Entry>,
        keep: impl Fn(&Entry) -> bool,
        on_remove: impl FnMut(&Entry),
    ) -> bool {
        self.remove_all(std::slice::from_ref(entry), keep, on_remove) == 1
    }

    /// Removes those of `entries` that are still the cached entry of their
    /// service and that `keep` does not keep, copying each shard once;
    /// `keep` checked, and `on_remove` run, under the shard's write lock.
    /// Returns how many were removed.
    pub fn remove_all(
        &self,
        entries: &[Arc<Entry>],
        keep: impl Fn(&Entry) -> bool,
        mut on_remove: impl FnMut(&Entry),
    ) -> usize {
        let mut removed = 0;
        for (index, shard) in self.shards.iter().enumerate() {
            let ours = || {
                entries
                    .iter()
                    .filter(move |e| Self::shard_index(e.hash) == index)
            };
            if ours().next().is_none() {
                continue;
            }
            let _write = lock(&shard.write);
            let current = shard.map.load_full();
            let is_cached =
                |e: &Arc<Entry>| current.find(e.hash, |s| Arc::ptr_eq(&s.entry, e)).is_some();
            let gone: Vec<&Arc<Entry>> = ours().filter(|e| is_cached(e) && !keep(e)).collect();
            if gone.is_empty() {
                continue;
            }
            let gone_count = gone.len();
            let mut map = HashTable::clone(&current);
            let mut retired = Vec::with_capacity(gone.len());
            for entry in &gone {
                if let Ok(found) = map.find_entry(entry.hash, |s| Arc::ptr_eq(&s.entry, entry)) {
                    retired.extend(found.remove().0.snapshot);
                }
            }
            map.shrink_to_fit(|s| s.entry.hash);
            shard.map.store(Arc::new(map));
            retired.iter().for_each(Snapshot::retire);
            for entry in gone {
                on_remove(entry);
            }
            removed += gone_count;
        }
        removed
    }

    /// Replaces `entry`, if it is still the cached entry of its service
    /// and `keep` does not keep it, by a new entry for `name` (the same
    /// service, spelled otherwise: the Hertz schema reads its key under
    /// the entry's spelling). `keep` checked, the swap made and
    /// `on_remove` run in one critical section under the shard's write
    /// lock: no request can insert the service between the removal and
    /// the insertion. Returns whether replaced.
    pub fn replace_unless(
        &self,
        entry: &Arc<Entry>,
        keep: impl FnOnce(&Entry) -> bool,
        name: &ServiceName,
        channel: impl FnOnce() -> Option<String>,
        now_ms: u64,
        on_remove: impl FnOnce(&Entry),
    ) -> bool {
        if name.as_str() != entry.service.as_str() {
            return false; // another service
        }
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.map.load_full();
        let is_ours = |s: &Slot| Arc::ptr_eq(&s.entry, entry);
        if current.find(entry.hash, is_ours).is_none() || keep(entry) {
            return false;
        }
        let new = Arc::new(Entry::new(name.clone(), entry.hash, channel(), now_ms));
        let mut map = HashTable::clone(&current);
        let mut retired = None;
        if let Some(slot) = map.find_mut(entry.hash, is_ours) {
            let old = std::mem::replace(
                slot,
                Slot {
                    entry: new,
                    snapshot: None,
                    max_age: None,
                },
            );
            retired = old.snapshot;
        }
        shard.map.store(Arc::new(map));
        retired.iter().for_each(Snapshot::retire);
        on_remove(entry);
        true
    }

    /// Whether `entry` is still the cached entry of its service.
    pub fn holds(&self, entry: &Arc<Entry>) -> bool {
        let map = self.shard(entry.hash).map.load();
        map.find(entry.hash, |s| Arc::ptr_eq(&s.entry, entry))
            .is_some()
    }

    /// Runs `f` on `entry` under its shard's write lock if it is still the
    /// cached entry of its service (so it is ordered with its removal).
    /// `f` must not take the entry's read state (see the module docs on
    /// locks).
    pub fn if_cached<R>(&self, entry: &Arc<Entry>, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.map.load();
        current.find(entry.hash, |s| Arc::ptr_eq(&s.entry, entry))?;
        Some(f(entry))
    }

    /// Up to `count` entries to evict, least recently used first, entries
    /// serving no instance (negative, or not read yet) before any that
    /// serve some: a flood of unknown names does not push real services
    /// out. Never `except` (the entry being inserted) nor a watched entry.
    /// Records every entry's use since the last look (as the sweep does).
    pub fn least_recently_used(
        &self,
        count: usize,
        now_ms: u64,
        except: &Arc<Entry>,
    ) -> Vec<Arc<Entry>> {
        let mut candidates: Vec<(EvictionRank, Arc<Entry>)> = self
            .entries()
            .into_iter()
            .filter_map(|entry| {
                let before = entry.look(now_ms);
                if Arc::ptr_eq(&entry, except) || entry.is_watched() {
                    return None;
                }
                let rank = EvictionRank {
                    serves: entry.serves(),
                    last_used_ms: entry.last_used_ms.load(Ordering::Relaxed),
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
    pub fn negative_expired(&self, entry: &Entry) -> bool {
        entry.is_negative()
            && entry
                .snapshot
                .load()
                .as_ref()
                .is_some_and(|s| s.read_at().elapsed() > self.negative_ttl)
    }

    /// The maximum age of a new snapshot of `entry`: the negative-cache
    /// time for a negative one (capped by `max_staleness`), else
    /// `max_staleness`.
    fn max_age(&self, entry: &Entry, empty: bool) -> Option<Duration> {
        if empty && !entry.is_subscribed() && !entry.is_watched() {
            let ttl = self.negative_ttl;
            Some(self.max_staleness.map_or(ttl, |max| max.min(ttl)))
        } else {
            self.max_staleness
        }
    }

    /// Every cached entry (a copy of the list, in no particular order).
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            all.extend(shard.map.load().iter().map(|s| s.entry.clone()));
        }
        all
    }

    /// The number of cached services.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.load().len()).sum()
    }

    /// Records the result of a read and wakes its waiters. A failure never
    /// replaces a good snapshot. A successful read makes the new list by
    /// the rule of the module docs ([`ReadState::merge`]): instances it
    /// misses are kept until their last known lease runs out (or a
    /// running recovery grace ends), unless an event removed them. An
    /// unchanged list keeps the current snapshot
    /// and only moves its `read_at`.
    ///
    /// The outcome is sent and `running` cleared in one critical section
    /// with [`Entry::join_or_start`]: a caller either joins before the
    /// outcome is sent (and is woken by it), or sees it, or finds no read
    /// running and starts one. It can never join a read that has already
    /// sent its outcome and then wait for nothing.
    pub fn complete(&self, entry: &Arc<Entry>, result: Result<Read, ResolveError>) -> Completed {
        let mut state = lock(&entry.state); // also orders stores and watchers
        let mut recheck = None;
        let outcome = match result {
            Ok(read) => {
                let read_at = read.read_at;
                let now = Instant::now();
                let current = entry.snapshot.load_full();
                let previous = current.as_deref().map_or(&[][..], SnapshotInner::instances);
                let (list, keep_until) = state.merge(read, previous, now);
                if let Some(at) = keep_until {
                    // One pending re-read at a time, the earliest needed (a
                    // past one was lost: its task never ran).
                    if state.recheck.is_none_or(|r| r > at || r <= now) {
                        state.recheck = Some(at);
                        recheck = Some(at);
                    }
                }
                let max_age = self.max_age(entry, list.is_empty());
                let link = CacheLink::new(entry.used.clone(), max_age);
                let new = Snapshot::cached_at(entry.service.clone(), list, read_at, link);
                let same_list = current
                    .as_ref()
                    .is_some_and(|c| c.instances() == new.instances());
                let snapshot = match current {
                    Some(current) if same_list && current.max_age() == max_age => {
                        let current = Snapshot::from_arc(current);
                        current.confirm(new.read_at());
                        current
                    }
                    _ => {
                        // A new list; or the same list no longer negative
                        // (now subscribed or watched) or newly so: only
                        // the cache's copy changes.
                        entry.snapshot.store(Some(new.clone().into_arc()));
                        self.publish(entry, &new);
                        if let Some(tx) = entry.watchers.get().filter(|_| !same_list) {
                            tx.send_replace(new.clone());
                        }
                        new
                    }
                };
                Ok(snapshot)
            }
            Err(e) => Err(e),
        };
        entry.outcome.send_replace(Some(outcome));
        state.wanted = false; // every waiting caller has its outcome
        let again = state.dirty;
        if again {
            state.dirty = false;
        } else {
            state.running = false;
        }
        Completed { again, recheck }
    }

    /// Copies a new snapshot into the entry's slot, if the entry is still
    /// cached.
    fn publish(&self, entry: &Arc<Entry>, snapshot: &Snapshot) {
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.map.load_full();
        let is_ours = |s: &Slot| Arc::ptr_eq(&s.entry, entry);
        if current.find(entry.hash, is_ours).is_none() {
            return; // evicted
        }
        let mut map = HashTable::clone(&current);
        let mut old = None;
        if let Some(slot) = map.find_mut(entry.hash, is_ours) {
            old = slot.snapshot.replace(snapshot.clone());
            slot.max_age = snapshot.max_age();
        }
        shard.map.store(Arc::new(map));
        if let Some(old) = old.filter(|old| !Snapshot::ptr_eq(old, snapshot)) {
            old.retire();
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let _write = lock(&shard.write);
            let old = shard.map.swap(Arc::default());
            old.iter()
                .filter_map(|slot| slot.snapshot.as_ref())
                .for_each(Snapshot::retire);
        }
    }
}

impl Entry {
    fn new(service: ServiceName, hash: u64, channel: Option<String>, now_ms: u64) -> Self {
        Entry {
            service,
            hash,
            channel,
            snapshot: ArcSwapOption::empty(),
            used: UseFlag::new(true), // used at creation
            last_used_ms: AtomicU64::new(now_ms),
            subscribed: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            state: Mutex::new(ReadState::default()),
            wanted_notify: Notify::new(),
            outcome: watch::Sender::new(None),
            watchers: OnceLock::new(),
            skipped: SkippedEntries::default(),
        }
    }

    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The skipped registry entries already warned about.
    pub fn skipped(&self) -> &SkippedEntries {
        &self.skipped
    }

    /// Marks the entry used.
    #[inline]
    pub fn touch(&self) {
        self.used.mark();
    }

    /// The current snapshot, if any.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot.load_full().map(Snapshot::from_arc)
    }

    /// The current snapshot if it is no older than its maximum age (what
    /// a hit would return).
    #[inline]
    pub fn fresh(&self) -> Option<Snapshot> {
        let snapshot = self.snapshot()?;
        match snapshot.max_age() {
            Some(max) if snapshot.age() > max => None,
            _ => Some(snapshot),
        }
    }

    /// Whether the current list has an instance.
    pub fn serves(&self) -> bool {
        self.snapshot
            .load()
            .as_ref()
            .is_some_and(|s| !s.instances().is_empty())
    }

    /// Negative: read, no instance, neither subscribed nor watched.
    pub fn is_negative(&self) -> bool {
        self.snapshot
            .load()
            .as_ref()
            .is_some_and(|s| s.instances().is_empty())
            && !self.is_subscribed()
            && !self.is_watched()
    }

    /// Whether a background refresh (periodic, or after a reconnect)
    /// should read the entry: it has a list that is not negative, or it is
    /// watched. A service never read (its first read failed, or was
    /// dropped unsent: see [`abandon_if_unwanted`](Self::abandon_if_unwanted))
    /// is read when a caller asks for it, not in the background.
    pub fn refreshable(&self) -> bool {
        self.is_watched() || (self.snapshot.load().is_some() && !self.is_negative())
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Records that the entry is subscribed; `false` if it already was.
    pub fn set_subscribed(&self) -> bool {
        !self.subscribed.swap(true, Ordering::Relaxed)
    }

    /// For the idle sweep: whether the entry was used since the last look
    /// (clears the flag) or is watched; records `now_ms` as its last use if
    /// so. Returns how long it has been idle.
    pub fn idle_for(&self, now_ms: u64) -> Duration {
        self.look(now_ms);
        Duration::from_millis(now_ms.saturating_sub(self.last_used_ms.load(Ordering::Relaxed)))
    }

    /// Records a use since the last look (by the sweep or an eviction), or
    /// a watch, as a use at `now_ms`. Returns the last use recorded before,
    /// if there was one since.
    fn look(&self, now_ms: u64) -> Option<u64> {
        let used = self.used.take() || self.is_watched();
        used.then(|| self.last_used_ms.swap(now_ms, Ordering::Relaxed))
    }

    /// Whether the entry has been used since the last sweep or is watched.
    pub fn in_use(&self) -> bool {
        self.used.get() || self.is_watched()
    }

    pub fn is_watched(&self) -> bool {
        self.watchers
            .get()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// A receiver of read outcomes that has seen the current one.
    pub fn outcomes(&self) -> watch::Receiver<Outcome> {
        self.outcome.subscribe()
    }

    /// Whether a caller waits for a read outcome (holds a receiver).
    pub fn is_awaited(&self) -> bool {
        self.outcome.receiver_count() > 0
    }

    /// A caller needs a read: returns `true` if the caller must start one
    /// (none is running, and none has finished since `seen` was taken).
    /// Either way the read the caller waits for is marked
    /// [wanted](Self::is_wanted).
    pub fn join_or_start(&self, seen: &watch::Receiver<Outcome>) -> bool {
        let mut state = lock(&self.state);
        if seen.has_changed().unwrap_or(true) {
            return false; // an outcome is already there
        }
        state.wanted = true;
        if state.running {
            drop(state);
            // The read may be queued for a refresh permit: let it jump.
            self.wanted_notify.notify_one();
            return false;
        }
        state.running = true;
        true
    }

    /// Whether a caller waits for the running read.
    pub fn is_wanted(&self) -> bool {
        lock(&self.state).wanted
    }

    /// Completes when a caller may have started waiting for the read (see
    /// [`is_wanted`](Self::is_wanted); can also wake spuriously).
    pub async fn wanted(&self) {
        self.wanted_notify.notified().await;
    }

    /// Something changed (event, reconnect): returns `true` if the caller
    /// must start a read; otherwise the running read is followed by one
    /// more.
    pub fn mark_dirty(&self) -> bool {
        let mut state = lock(&self.state);
        if state.running {
            state.dirty = true;
            return false;
        }
        state.running = true;
        true
    }

    /// The periodic refresh: returns `true` if the caller must start a
    /// read, `false` if one is running already (it is recent enough: not
    /// marked dirty, so a slow Redis does not grow a backlog of reads).
    pub fn start_if_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if state.running {
            return false;
        }
        state.running = true;
        true
    }

    /// A read starts: returns the entry's event generation, to hand back
    /// in its [`Read`].
    pub fn begin_read(&self) -> u64 {
        lock(&self.state).generation
    }

    /// Records a change event about one instance (the read it triggers
    /// is started separately, with [`mark_dirty`](Self::mark_dirty)).
    /// `resolver_grace`: the end of the resolver's recovery grace, if one
    /// runs (an `expire` is then no removal).
    pub fn on_event(&self, event: Event<'_>, resolver_grace: Option<Instant>) {
        lock(&self.state).on_event(event, resolver_grace, Instant::now());
    }

    /// The re-read scheduled for `at` is due: another may be scheduled.
    pub fn recheck_due(&self, at: Instant) {
        let mut state = lock(&self.state);
        if state.recheck == Some(at) {
            state.recheck = None;
        }
    }

    /// Records that the first read must wait for `subscribed`.
    pub fn set_subscription(&self, subscribed: oneshot::Receiver<()>) {
        lock(&self.state).subscribed = Some(subscribed);
    }

    /// The pending subscription confirmation, if the first read has not
    /// waited for it yet.
    pub fn take_subscription(&self) -> Option<oneshot::Receiver<()>> {
        lock(&self.state).subscribed.take()
    }

    /// A read that queues for a permit (or just got one) is dropped unsent if no caller
    /// waits for it (they gave up while it queued) and nothing watches
    /// the entry, and either the entry was `evicted` meanwhile (its result
    /// would go nowhere) or this is its first read (nothing is served from
    /// it yet). During a Redis stall, a flood of names whose callers gave
    /// up so leaves no backlog of reads ahead of a real service's first
    /// read, however many of those names the cache still holds. Returns
    /// `true` if dropped: the entry is released with no outcome sent, so
    /// the next caller starts a read of its own.
    ///
    /// Checked under the read state: a caller holds its outcome receiver
    /// before it joins, and joins under that lock, so it either counts
    /// here (the read is sent) or finds no read running (and starts one).
    pub fn abandon_if_unwanted(&self, evicted: bool) -> bool {
        let mut state = lock(&self.state);
        let unwanted = !self.is_awaited() && self.abandonable(evicted);
        if unwanted {
            state.running = false;
            state.dirty = false;
            state.wanted = false;
        }
        unwanted
    }

    /// Whether a read of the entry would be dropped unsent once no caller
    /// waits for it: nothing watches the entry, and either it was
    /// `evicted` or it was never read (see
    /// [`abandon_if_unwanted`](Self::abandon_if_unwanted)).
    pub fn abandonable(&self, evicted: bool) -> bool {
        !self.is_watched() && (evicted || self.snapshot.load().is_none())
    }

    /// Completes when no caller waits for a read outcome (at once if none
    /// does now).
    pub async fn unawaited(&self) {
        self.outcome.closed().await;
    }

    /// Ends a read that was cut short (shutdown, its runtime gone, a
    /// panic): waiting callers get `error`, and the next caller or refresh
    /// starts a new read. One critical section, like [`Cache::complete`].
    pub fn interrupt(&self, error: ResolveError) {
        let mut state = lock(&self.state);
        self.outcome.send_replace(Some(Err(error)));
        state.running = false;
        state.dirty = false;
        state.wanted = false;
    }

    /// A receiver of every new snapshot, starting with the current one
    /// (`fallback` if there is none yet).
    pub fn watch(&self, fallback: Snapshot) -> watch::Receiver<Snapshot> {
        let _state = lock(&self.state);
        self.watchers
            .get_or_init(|| watch::Sender::new(self.snapshot().unwrap_or(fallback)))
            .subscribe()
    }

    /// Records whether the latest read failed; returns the previous state.
    pub fn set_failing(&self, failing: bool) -> bool {
        self.failing.swap(failing, Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing a panic could leave half-done is protected: carry on.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

mod read_state;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
