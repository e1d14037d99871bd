//! The router's picker cache: for each service (and tag filter), the
//! snapshot a picker was built for, the picker, and what a request routed
//! by it needs. One mechanism for both jobs: a request finds its picker
//! with one lock-free lookup, and (for snapshots a resolver cache keeps
//! current) skips the resolver lookup too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};
use http::HeaderValue;

use super::health::Health;
use crate::balance::{Pick, TagFilter};
use crate::instance::ServiceName;
use crate::resolver::Snapshot;

/// A picker built for one snapshot (and one tag filter), with what a
/// request routed by it needs. Shared by the requests it routes.
pub(crate) struct PickerEntry {
    pub snapshot: Snapshot,
    /// Snapshot indexes of the instances the picker was built over.
    pub members: Vec<usize>,
    pub picker: Box<dyn Pick>,
    /// Members with a weight above 0: what "half the instances" means for
    /// ejection.
    pub usable: usize,
    /// The router's passive health, so an attempt can eject its instance
    /// without holding the router.
    pub health: Arc<Health>,
    /// `Host: SERVICE`, made once per snapshot so a request only clones
    /// it; `None` when the layer leaves `Host` to the client.
    pub host: Option<HeaderValue>,
    /// A lookup (the resolver's `cached`) returned this very snapshot
    /// after the entry was built, so while the snapshot says its cache
    /// would still return it, asking again would only cost a lookup. Not
    /// set by the lookup or resolve the entry was built from: a snapshot
    /// `resolve` answered with may be one its cache no longer holds, and
    /// one more lookup per snapshot change is cheap.
    reusable: AtomicBool,
}

impl PickerEntry {
    pub(super) fn new(
        snapshot: Snapshot,
        members: Vec<usize>,
        picker: Box<dyn Pick>,
        health: Arc<Health>,
        host: Option<HeaderValue>,
    ) -> Self {
        let usable = members
            .iter()
            .filter(|&&i| snapshot.instances()[i].weight() > 0)
            .count();
        PickerEntry {
            snapshot,
            members,
            picker,
            usable,
            health,
            host,
            reusable: AtomicBool::new(false),
        }
    }

    /// Whether the snapshot can be used without asking the resolver: its
    /// cache returned it and would still return it. Marks the service used
    /// for the cache's idle sweep, as the skipped lookup would have.
    #[inline]
    pub(super) fn current_without_lookup(&self) -> bool {
        let current = self.reusable.load(Ordering::Relaxed) && self.snapshot.still_cached();
        if current {
            self.snapshot.mark_used();
        }
        current
    }

    /// A lookup after the entry was built returned its snapshot.
    #[inline]
    pub(super) fn returned_by_cached(&self) {
        // Only snapshots a cache keeps current can tell when to stop.
        if self.snapshot.is_linked() && !self.reusable.load(Ordering::Relaxed) {
            self.reusable.store(true, Ordering::Relaxed);
        }
    }
}

/// A cache key: the service, and the request's own tag filter (`None`:
/// the layer's filter, or none).
#[derive(Clone, PartialEq, Eq, Hash)]
struct PickerKey {
    service: ServiceName,
    filter: Option<TagFilter>,
}

/// A key to look up without making a [`PickerKey`]: hashes as one
/// (`ServiceName` hashes as its `str`, `&T` as `T`).
#[derive(Hash)]
struct LookupKey<'a> {
    service: &'a str,
    filter: Option<&'a TagFilter>,
}

impl Equivalent<PickerKey> for LookupKey<'_> {
    fn equivalent(&self, key: &PickerKey) -> bool {
        self.service == key.service.as_str() && self.filter == key.filter.as_ref()
    }
}

type Map = HashMap<PickerKey, Arc<PickerEntry>, foldhash::fast::RandomState>;

/// The most entries kept. Past it, entries whose snapshot its cache has
/// dropped go first; if none has, the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// The pickers of one router, by service and tag filter. Reads are one
/// lock-free load and a lookup; an insert (once per snapshot change)
/// copies the map.
#[derive(Default)]
pub(crate) struct PickerCache {
    map: ArcSwap<Map>,
}

impl PickerCache {
    /// The entry of `service` and `filter`, whatever its snapshot.
    #[inline]
    pub(super) fn get(
        &self,
        service: &str,
        filter: Option<&TagFilter>,
    ) -> Option<Arc<PickerEntry>> {
        self.map.load().get(&LookupKey { service, filter }).cloned()
    }

    /// Keeps `entry` for its service and `filter`, and returns it, or the
    /// entry another request stored for the same snapshot meanwhile (so a
    /// stateful picker has one state per snapshot).
    pub(super) fn insert(
        &self,
        filter: Option<&TagFilter>,
        entry: PickerEntry,
    ) -> Arc<PickerEntry> {
        let entry = Arc::new(entry);
        let key = PickerKey {
            service: entry.snapshot.service().clone(),
            filter: filter.cloned(),
        };
        let mut kept = entry.clone();
        self.map.rcu(|map| {
            if let Some(current) = map.get(&key) {
                if Snapshot::ptr_eq(&current.snapshot, &entry.snapshot) {
                    kept = current.clone();
                    return Arc::clone(map);
                }
            }
            kept = entry.clone();
            let mut map = Map::clone(map);
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, e| !e.snapshot.is_linked() || e.snapshot.still_cached());
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(key.clone(), entry.clone());
            Arc::new(map)
        });
        kept
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::health::Health;
    use super::{PickerCache, PickerEntry};
    use crate::balance::{Balance, RoundRobin, TagFilter};
    use crate::instance::{Instance, ServiceName};
    use crate::resolver::Snapshot;

    fn entry(snapshot: &Snapshot) -> PickerEntry {
        let picker = Box::new(RoundRobin::new().build(snapshot.instances()));
        let health = Arc::new(Health::new(Default::default()));
        let members = (0..snapshot.len()).collect();
        PickerEntry::new(snapshot.clone(), members, picker, health, None)
    }

    fn snapshot() -> Snapshot {
        let name = ServiceName::new("Orders").unwrap();
        Snapshot::new(name, vec![Instance::new("h:1").unwrap()])
    }

    #[test]
    fn one_entry_per_snapshot_service_and_filter() {
        let cache = PickerCache::default();
        let first = snapshot();
        assert!(cache.get("orders", None).is_none());
        let kept = cache.insert(None, entry(&first));
        assert!(Arc::ptr_eq(&kept, &cache.get("orders", None).unwrap()));
        // A second picker for the same snapshot is not kept: one state.
        assert!(Arc::ptr_eq(&kept, &cache.insert(None, entry(&first))));
        let filter = TagFilter::new().with("zone", "a");
        assert!(cache.get("orders", Some(&filter)).is_none());
        let filtered = cache.insert(Some(&filter), entry(&first));
        assert!(!Arc::ptr_eq(&kept, &filtered));
        // A new snapshot replaces the entry.
        let second = snapshot();
        let replaced = cache.insert(None, entry(&second));
        assert!(Snapshot::ptr_eq(&replaced.snapshot, &second));
        let found = cache.get("orders", None).unwrap();
        assert!(Snapshot::ptr_eq(&found.snapshot, &second));
        // Unlinked snapshots are never used without a lookup.
        found.returned_by_cached();
        assert!(!found.current_without_lookup());
    }
}
