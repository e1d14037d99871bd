//! The concurrent map of the cache: service name to its [`CacheEntry`]
//! and current snapshot, read without a lock.
//!
//! A [`papaya`] map (made for read-mostly use): a hit is one hash of the
//! name, one epoch pin, one probe and one `Arc` clone. Measured against
//! the hand-written sharded copy-on-write table it replaces, `cached_hit`
//! bench in one run (1 / 100 / 10 000 services): 25.7 / 33.7 / 38.3 ns
//! against 33.0 / 35.2 / 34.7 ns (base code: 33.7 / 33.9 / 34.1 ns), within
//! the 50 ns target. Writes no longer copy 1/16 of the table: at 10 000
//! services an insert costs 3.2 µs against 6.9 µs and a changed snapshot
//! 6.2 µs against 25.2 µs (release build, a timing run of the cache); a
//! batch removal costs 1.5 µs per entry against 0.14 µs (one copy per
//! shard), paid by evictions and sweeps, not by requests.
//!
//! Changes to one entry (insert, removal, replacement, a new snapshot) are
//! made under a write lock striped by the name's hash, so a check made
//! before a change (is it still this entry? may it go?) holds when the
//! change is made, and code run under that lock ([`ServiceMap::if_cached`],
//! the callbacks of [`ServiceMap::remove_all`]) is ordered with the entry's
//! removal.
//!
//! papaya frees removed values late (in batches, or with the map), so what
//! a removal must do is done at once ([`ServiceMap::left`]). A batch (32
//! values, seize's default) may be freed by a request thread as its pin
//! ends: about 3 µs, once per 32 removals or replacements, not per hit, so
//! the collector keeps its defaults. The table halves, at a later insert's
//! resize, once at most 1/8 full (no `shrink_to_fit`): after a flood up to
//! the default cap of 10 000 names, all removed, it keeps about 180 KB
//! (1.2 MB at 100 000), 56 KB once 20 000 more names came and went (a
//! counting allocator around papaya 0.2.5).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::entry::{lock, CacheEntry};
use crate::resolver::snapshot::Snapshot;

const STRIPES: usize = 16;

/// Service name to cache entry, with lock-free lookups.
pub(super) struct ServiceMap {
    /// The hash stored in an entry: picks its write stripe.
    hasher: foldhash::fast::RandomState,
    table: papaya::HashMap<Box<str>, Slot, foldhash::fast::RandomState>,
    /// Write locks, striped by hash (see the module docs).
    writes: Box<[Mutex<()>]>,
}

/// A map value: replaced whole, so a hit sees an entry, its snapshot and
/// its maximum age from one moment.
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
            table: papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            writes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The hash an entry of `name` is stored with.
    pub(super) fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The write stripe of a hash.
    fn stripe_index(hash: u64) -> usize {
        (hash >> 32) as usize % STRIPES
    }

    fn stripe(&self, hash: u64) -> &Mutex<()> {
        &self.writes[Self::stripe_index(hash)]
    }

    fn key(entry: &CacheEntry) -> &str {
        entry.service.as_str()
    }

    /// The hot path: the fresh snapshot of `name`, marking its entry used.
    #[inline]
    pub(super) fn hit(&self, name: &str) -> Option<Snapshot> {
        let table = self.table.pin();
        let slot = table.get(name)?;
        slot.entry.touch();
        let snapshot = slot.snapshot.as_ref()?;
        if let Some(max) = slot.max_age {
            if snapshot.age() > max {
                return None;
            }
        }
        slot.entry.count_hit();
        Some(snapshot.clone())
    }

    /// The entry of `name`, without marking it used.
    pub(super) fn get(&self, name: &str) -> Option<Arc<CacheEntry>> {
        self.table.pin().get(name).map(|s| s.entry.clone())
    }

    /// The entry of `name`, inserted (made by `make` from the name's hash)
    /// if missing; `true` if inserted.
    pub(super) fn get_or_insert_with(
        &self,
        name: &str,
        make: impl FnOnce(u64) -> Arc<CacheEntry>,
    ) -> (Arc<CacheEntry>, bool) {
        if let Some(entry) = self.get(name) {
            return (entry, false);
        }
        let hash = self.hash(name);
        let _write = lock(self.stripe(hash));
        let table = self.table.pin();
        if let Some(slot) = table.get(name) {
            return (slot.entry.clone(), false);
        }
        let entry = make(hash);
        table.insert(name.into(), Slot::new(entry.clone()));
        (entry, true)
    }

    /// Whether `entry` is (still) the map's entry of its name.
    pub(super) fn holds(&self, entry: &Arc<CacheEntry>) -> bool {
        self.table
            .pin()
            .get(Self::key(entry))
            .is_some_and(|s| s.holds(entry))
    }

    /// Removes those of `entries` that are still in the map and that
    /// `keep` does not keep; `keep` checked, and `on_remove` run, under
    /// their write stripe's lock. The removed entries' snapshots are
    /// retired. Returns how many were removed.
    pub(super) fn remove_all(
        &self,
        entries: &[Arc<CacheEntry>],
        keep: impl Fn(&CacheEntry) -> bool,
        mut on_remove: impl FnMut(&CacheEntry),
    ) -> usize {
        let mut removed = 0;
        for (index, stripe) in self.writes.iter().enumerate() {
            let ours = || {
                entries
                    .iter()
                    .filter(move |e| Self::stripe_index(e.hash) == index)
            };
            if ours().next().is_none() {
                continue;
            }
            let _write = lock(stripe);
            let gone: Vec<&Arc<CacheEntry>> =
                ours().filter(|e| self.holds(e) && !keep(e)).collect();
            let table = self.table.pin();
            for entry in &gone {
                if let Some(old) = table.remove(Self::key(entry)) {
                    Self::left(old);
                }
            }
            removed += gone.len();
            for entry in gone {
                on_remove(entry);
            }
        }
        removed
    }

    /// Replaces `entry`, if it is still in the map and `keep` does not
    /// keep it, by the entry `make` returns (same name and hash). `keep`
    /// checked, the swap made and `on_remove` run in one critical section.
    /// Returns whether replaced.
    pub(super) fn replace_unless(
        &self,
        entry: &Arc<CacheEntry>,
        keep: impl FnOnce(&CacheEntry) -> bool,
        make: impl FnOnce() -> Arc<CacheEntry>,
        on_remove: impl FnOnce(&CacheEntry),
    ) -> bool {
        let _write = lock(self.stripe(entry.hash));
        if !self.holds(entry) || keep(entry) {
            return false;
        }
        let table = self.table.pin();
        if let Some(old) = table.insert(Self::key(entry).into(), Slot::new(make())) {
            Self::left(old);
        }
        on_remove(entry);
        true
    }

    /// Runs `f` on `entry` under its write stripe's lock if it is still in
    /// the map (so it is ordered with its removal).
    pub(super) fn if_cached<R>(
        &self,
        entry: &Arc<CacheEntry>,
        f: impl FnOnce(&CacheEntry) -> R,
    ) -> Option<R> {
        let _write = lock(self.stripe(entry.hash));
        self.holds(entry).then(|| f(entry))
    }

    /// Copies a new snapshot into the entry's slot, if the entry is still
    /// in the map; retires the one it replaces.
    pub(super) fn publish(&self, entry: &Arc<CacheEntry>, snapshot: &Snapshot) {
        let _write = lock(self.stripe(entry.hash));
        if !self.holds(entry) {
            return;
        }
        let table = self.table.pin();
        let slot = Slot {
            entry: entry.clone(),
            snapshot: Some(snapshot.clone()),
            max_age: snapshot.max_age(),
        };
        if let Some(old) = table.insert(Self::key(entry).into(), slot) {
            if let Some(old) = old
                .snapshot
                .as_ref()
                .filter(|o| !Snapshot::ptr_eq(o, snapshot))
            {
                old.retire();
            }
        }
    }

    /// Every entry (a copy of the list, in no particular order).
    pub(super) fn entries(&self) -> Vec<Arc<CacheEntry>> {
        self.table
            .pin()
            .iter()
            .map(|(_, s)| s.entry.clone())
            .collect()
    }

    /// The number of entries.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Drops every entry: retires their snapshots and closes their
    /// watchers once they are out of the map.
    pub(super) fn clear(&self) {
        let _writes: Vec<_> = self.writes.iter().map(lock).collect();
        let table = self.table.pin();
        // The guard keeps the values readable after their removal.
        let gone: Vec<&Slot> = table.iter().map(|(_, slot)| slot).collect();
        table.clear();
        gone.into_iter().for_each(Self::left);
    }

    /// What a value's removal must do at once, where the map frees it only
    /// later (papaya reclaims in batches, or when the map is dropped):
    /// retire its snapshot (hits stop returning it) and close its watchers.
    fn left(slot: &Slot) {
        if let Some(s) = &slot.snapshot {
            s.retire();
        }
        slot.entry.close_watchers();
    }
}
