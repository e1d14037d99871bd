//! The concurrent map of the cache: service name to its [`CacheEntry`] and
//! current snapshot, read without a lock.
//!
//! 16 shards, each an `ArcSwap` of an immutable hash table of slots. A hit
//! is one hash of the name, one `ArcSwap` load, one table probe, one `Arc`
//! clone and no lock. Inserting or evicting a service, or publishing a
//! *changed* snapshot, copies one shard (1/16 of the services: two `Arc`
//! clones per service) under that shard's write lock; all three are rare
//! next to hits (a refresh that finds nothing changed copies nothing).
//!
//! Kept over a concurrent map crate, measured on the `cached_hit` bench
//! (same run, 1 / 100 / 10 000 services): see the crate's BENCHMARKS.md.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::HashTable;

use super::entry::{lock, CacheEntry};
use crate::resolver::snapshot::Snapshot;

const SHARDS: usize = 16;

/// Service name to cache entry, with lock-free lookups.
pub(super) struct ServiceMap {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
}

#[derive(Default)]
struct Shard {
    table: ArcSwap<HashTable<Slot>>,
    write: Mutex<()>,
}

#[derive(Clone)]
struct Slot {
    entry: Arc<CacheEntry>,
    /// The entry's current snapshot, copied here for the hot path.
    snapshot: Option<Snapshot>,
    /// The snapshot's [`max_age`](Snapshot::max_age), copied here so a hit
    /// reads no more memory than the slot.
    max_age: Option<Duration>,
}

impl Slot {
    fn new(entry: Arc<CacheEntry>) -> Self {
        Slot {
            entry,
            snapshot: None,
            max_age: None,
        }
    }

    fn holds(&self, entry: &Arc<CacheEntry>) -> bool {
        Arc::ptr_eq(&self.entry, entry)
    }
}

impl ServiceMap {
    pub(super) fn new() -> Self {
        ServiceMap {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// The hash an entry of `name` is stored under.
    pub(super) fn hash(&self, name: &str) -> u64 {
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

    /// The hot path: the fresh snapshot of `name`, marking its entry used.
    #[inline]
    pub(super) fn hit(&self, name: &str) -> Option<Snapshot> {
        let hash = self.hash(name);
        let table = self.shard(hash).table.load();
        let slot = table.find(hash, |s| s.entry.service.as_str() == name)?;
        slot.entry.touch();
        let snapshot = slot.snapshot.as_ref()?;
        if let Some(max) = slot.max_age {
            if snapshot.age() > max {
                return None;
            }
        }
        Some(snapshot.clone())
    }

    /// The entry of `name`, without marking it used.
    pub(super) fn get(&self, name: &str) -> Option<Arc<CacheEntry>> {
        let hash = self.hash(name);
        let table = self.shard(hash).table.load();
        table
            .find(hash, |s| s.entry.service.as_str() == name)
            .map(|s| s.entry.clone())
    }

    /// The entry of `name`, inserted (made by `make` from the name's hash)
    /// if missing; `true` if inserted.
    pub(super) fn get_or_insert_with(
        &self,
        name: &str,
        make: impl FnOnce(u64) -> Arc<CacheEntry>,
    ) -> (Arc<CacheEntry>, bool) {
        let hash = self.hash(name);
        let shard = self.shard(hash);
        let find = |table: &HashTable<Slot>| {
            table
                .find(hash, |s| s.entry.service.as_str() == name)
                .map(|s| s.entry.clone())
        };
        if let Some(entry) = find(&shard.table.load()) {
            return (entry, false);
        }
        let _write = lock(&shard.write);
        let current = shard.table.load_full();
        if let Some(entry) = find(&current) {
            return (entry, false);
        }
        let entry = make(hash);
        let mut table = HashTable::clone(&current);
        table.insert_unique(hash, Slot::new(entry.clone()), |s| s.entry.hash);
        shard.table.store(Arc::new(table));
        (entry, true)
    }

    /// Removes those of `entries` that are still in the map and that
    /// `keep` does not keep, copying each shard once; `keep` checked, and
    /// `on_remove` run, under the shard's write lock. The removed entries'
    /// snapshots are retired. Returns how many were removed.
    pub(super) fn remove_all(
        &self,
        entries: &[Arc<CacheEntry>],
        keep: impl Fn(&CacheEntry) -> bool,
        mut on_remove: impl FnMut(&CacheEntry),
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
            let current = shard.table.load_full();
            let is_cached = |e: &Arc<CacheEntry>| current.find(e.hash, |s| s.holds(e)).is_some();
            let gone: Vec<&Arc<CacheEntry>> = ours().filter(|e| is_cached(e) && !keep(e)).collect();
            if gone.is_empty() {
                continue;
            }
            let mut table = HashTable::clone(&current);
            let mut retired = Vec::with_capacity(gone.len());
            for entry in &gone {
                if let Ok(found) = table.find_entry(entry.hash, |s| s.holds(entry)) {
                    retired.extend(found.remove().0.snapshot);
                }
            }
            table.shrink_to_fit(|s| s.entry.hash);
            shard.table.store(Arc::new(table));
            retired.iter().for_each(Snapshot::retire);
            removed += gone.len();
            for entry in gone {
                on_remove(entry);
            }
        }
        removed
    }

    /// Replaces `entry`, if it is still in the map and `keep` does not
    /// keep it, by the entry `make` returns (it must have the same name
    /// and hash). `keep` checked, the swap made and `on_remove` run in one
    /// critical section under the shard's write lock. Returns whether
    /// replaced.
    pub(super) fn replace_unless(
        &self,
        entry: &Arc<CacheEntry>,
        keep: impl FnOnce(&CacheEntry) -> bool,
        make: impl FnOnce() -> Arc<CacheEntry>,
        on_remove: impl FnOnce(&CacheEntry),
    ) -> bool {
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.table.load_full();
        if current.find(entry.hash, |s| s.holds(entry)).is_none() || keep(entry) {
            return false;
        }
        let mut table = HashTable::clone(&current);
        let mut retired = None;
        if let Some(slot) = table.find_mut(entry.hash, |s| s.holds(entry)) {
            retired = std::mem::replace(slot, Slot::new(make())).snapshot;
        }
        shard.table.store(Arc::new(table));
        retired.iter().for_each(Snapshot::retire);
        on_remove(entry);
        true
    }

    /// Whether `entry` is still in the map.
    pub(super) fn holds(&self, entry: &Arc<CacheEntry>) -> bool {
        let table = self.shard(entry.hash).table.load();
        table.find(entry.hash, |s| s.holds(entry)).is_some()
    }

    /// Runs `f` on `entry` under its shard's write lock if it is still in
    /// the map (so it is ordered with its removal).
    pub(super) fn if_cached<R>(
        &self,
        entry: &Arc<CacheEntry>,
        f: impl FnOnce(&CacheEntry) -> R,
    ) -> Option<R> {
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.table.load();
        current.find(entry.hash, |s| s.holds(entry))?;
        Some(f(entry))
    }

    /// Copies a new snapshot into the entry's slot, if the entry is still
    /// in the map; retires the one it replaces.
    pub(super) fn publish(&self, entry: &Arc<CacheEntry>, snapshot: &Snapshot) {
        let shard = self.shard(entry.hash);
        let _write = lock(&shard.write);
        let current = shard.table.load_full();
        if current.find(entry.hash, |s| s.holds(entry)).is_none() {
            return; // evicted
        }
        let mut table = HashTable::clone(&current);
        let mut old = None;
        if let Some(slot) = table.find_mut(entry.hash, |s| s.holds(entry)) {
            old = slot.snapshot.replace(snapshot.clone());
            slot.max_age = snapshot.max_age();
        }
        shard.table.store(Arc::new(table));
        if let Some(old) = old.filter(|old| !Snapshot::ptr_eq(old, snapshot)) {
            old.retire();
        }
    }

    /// Every entry (a copy of the list, in no particular order).
    pub(super) fn entries(&self) -> Vec<Arc<CacheEntry>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            all.extend(shard.table.load().iter().map(|s| s.entry.clone()));
        }
        all
    }

    /// The number of entries.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.load().len()).sum()
    }

    /// Drops every entry, retiring their snapshots.
    pub(super) fn clear(&self) {
        for shard in self.shards.iter() {
            let _write = lock(&shard.write);
            let old = shard.table.swap(Arc::default());
            old.iter()
                .filter_map(|slot| slot.snapshot.as_ref())
                .for_each(Snapshot::retire);
        }
    }
}
