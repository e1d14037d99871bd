//! The router's picker cache: for each service (and tag filter), the
//! snapshot a picker was built for, the picker, and what a request routed
//! by it needs. One mechanism for both jobs: a request finds its picker
//! with one lock-free lookup, and (for snapshots a resolver cache keeps
//! current) skips the resolver lookup too.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use http::HeaderValue;
use papaya::{Compute, Equivalent, Operation};

use super::outlier::{InstanceState, ServiceOutliers};
use crate::balance::{InstanceLoad, LoadSource, PeakEwma, Pick, TagFilter};
use crate::instance::ServiceName;
use crate::resolver::Snapshot;

/// A picker built for one snapshot (and one tag filter), with what a
/// request routed by it needs. Shared by the requests it routes.
pub(crate) struct PickerEntry {
    pub snapshot: Snapshot,
    /// Snapshot indexes of the instances the picker was built over.
    pub members: Vec<usize>,
    pub picker: Box<dyn Pick>,
    /// Members with a weight above 0: what the share of ejected instances
    /// and the panic threshold are of.
    pub usable: usize,
    /// The outlier state of the service, so an attempt can eject its
    /// instance without holding the router.
    pub outliers: Arc<ServiceOutliers>,
    /// Each member's state (by member index), found once here so that a
    /// request reads and updates it without a lookup or a lock.
    pub states: Vec<Arc<InstanceState>>,
    /// How the balancer wants load measured; `None`: it reads none, and
    /// nothing is measured.
    pub ewma: Option<PeakEwma>,
    /// `Host: SERVICE`, made once per snapshot so a request only clones
    /// it; `None` when the layer leaves `Host` to the client.
    pub host: Option<HeaderValue>,
    /// With [`service_tls`](super::DiscoveryLayerBuilder::service_tls):
    /// each instance's authority for an `https` request, `~SERVICE@HOST:PORT`
    /// (by snapshot index), made once per snapshot.
    pub tls_authorities: Option<Box<[http::uri::Authority]>>,
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
        outliers: Arc<ServiceOutliers>,
        ewma: Option<PeakEwma>,
        host: Option<HeaderValue>,
    ) -> Self {
        let instances = snapshot.instances();
        let members: Vec<usize> = members
            .into_iter()
            .filter(|&i| i < instances.len())
            .collect();
        let usable = members
            .iter()
            .filter(|&&i| instances[i].weight() > 0)
            .count();
        let states = outliers.states(members.iter().map(|&i| instances[i].addr()));
        PickerEntry {
            snapshot,
            members,
            picker,
            usable,
            outliers,
            states,
            ewma,
            host,
            tls_authorities: None,
            reusable: AtomicBool::new(false),
        }
    }

    /// Keeps each instance's `https` authority naming the service, for
    /// `ServiceTls` (instances whose authority cannot take it keep theirs).
    #[cfg(feature = "rustls")]
    pub(super) fn with_service_tls(mut self) -> Self {
        let service = self.snapshot.service().clone();
        let authorities = self
            .snapshot
            .instances()
            .iter()
            .map(|i| crate::https::service_authority(&service, i.authority()))
            .collect();
        self.tls_authorities = Some(authorities);
        self
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

    /// Whether its snapshot is one a cache returned and no longer would:
    /// replaced, evicted, or too old. Such an entry only serves the
    /// requests already holding it.
    #[inline]
    pub(super) fn is_retired(&self) -> bool {
        self.snapshot.is_linked() && !self.snapshot.still_cached()
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

impl LoadSource for PickerEntry {
    fn load(&self, index: usize) -> Option<&InstanceLoad> {
        self.states.get(index).map(|state| &state.load)
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

type PickerMap = papaya::HashMap<PickerKey, Arc<PickerEntry>, foldhash::fast::RandomState>;

/// Whether nothing else bounds how many entries like this one there are:
/// a request's own tag filter (any number of them), or a snapshot no
/// cache keeps (so none retires it). Entries of the layer's filter for
/// linked snapshots are bounded by the resolver's `max_services`.
fn is_unbounded(key: &PickerKey, entry: &PickerEntry) -> bool {
    key.filter.is_some() || !entry.snapshot.is_linked()
}

/// The most unbounded entries (see [`is_unbounded`]) kept: past it they
/// all go (the others stay).
const MAX_UNBOUNDED: usize = 4096;

/// The fewest stores between two prunes of retired entries; otherwise a
/// prune waits for stores as many as half the entries (new keys grow the
/// map too), so its cost is spread over them: amortized O(1) per store.
const MIN_STORES_PER_PRUNE: usize = 64;

/// What [`PickerCache::insert`] did with an entry.
pub(super) struct Inserted {
    /// The entry to route the request with.
    pub entry: Arc<PickerEntry>,
    /// Whether it is the new entry and the cache now holds it (not one
    /// stored before for the same snapshot, nor an older snapshot's entry
    /// routing this request only).
    pub stored: bool,
}

/// The pickers of one router, by service and tag filter. A read is one
/// lock-free [`papaya`] lookup; a store (once per snapshot change) changes
/// one entry. Entries for snapshots their cache still returns are never
/// evicted; retired ones are pruned every so often, and unbounded ones
/// are capped.
pub(crate) struct PickerCache {
    map: PickerMap,
    /// Unbounded entries held (see [`is_unbounded`]); signed since a
    /// prune may count a removal before the store counts its insert.
    unbounded: AtomicIsize,
    /// Stores since the last prune.
    stores: AtomicUsize,
    /// Held by the one prune at a time.
    pruning: Mutex<()>,
}

impl Default for PickerCache {
    fn default() -> Self {
        PickerCache {
            map: PickerMap::with_hasher(foldhash::fast::RandomState::default()),
            unbounded: AtomicIsize::new(0),
            stores: AtomicUsize::new(0),
            pruning: Mutex::new(()),
        }
    }
}

impl PickerCache {
    /// The entry of `service` and `filter`, whatever its snapshot.
    #[inline]
    pub(super) fn get(
        &self,
        service: &str,
        filter: Option<&TagFilter>,
    ) -> Option<Arc<PickerEntry>> {
        self.map.pin().get(&LookupKey { service, filter }).cloned()
    }

    /// Keeps `entry` for its service and `filter`, and returns it; or
    /// returns the entry another request stored for the same snapshot
    /// meanwhile (so a stateful picker has one state per snapshot). An
    /// entry for a retired snapshot does not replace one whose snapshot is
    /// current: it routes this request only.
    pub(super) fn insert(&self, filter: Option<&TagFilter>, entry: PickerEntry) -> Inserted {
        let entry = Arc::new(entry);
        let key = PickerKey {
            service: entry.snapshot.service().clone(),
            filter: filter.cloned(),
        };
        let unbounded = is_unbounded(&key, &entry);
        if unbounded && self.unbounded.load(Ordering::Relaxed) >= MAX_UNBOUNDED as isize {
            self.prune(true);
        }
        let map = self.map.pin();
        // Checked and stored atomically for the key: no store undoes
        // another's newer one.
        let computed = map.compute(key, |current| match current {
            Some((_, current)) if Snapshot::ptr_eq(&current.snapshot, &entry.snapshot) => {
                Operation::Abort(current.clone())
            }
            Some((_, current)) if current.snapshot.still_cached() && entry.is_retired() => {
                Operation::Abort(entry.clone())
            }
            _ => Operation::Insert(entry.clone()),
        });
        let replaced_unbounded = match computed {
            Compute::Inserted(..) => false,
            Compute::Updated {
                old: (key, old), ..
            } => is_unbounded(key, old),
            Compute::Aborted(kept) => {
                return Inserted {
                    entry: kept,
                    stored: false,
                }
            }
            // Not asked for: nothing stored.
            Compute::Removed(..) => {
                return Inserted {
                    entry,
                    stored: false,
                }
            }
        };
        let delta = isize::from(unbounded) - isize::from(replaced_unbounded);
        if delta != 0 {
            self.unbounded.fetch_add(delta, Ordering::Relaxed);
        }
        let stores = self.stores.fetch_add(1, Ordering::Relaxed) + 1;
        if stores >= MIN_STORES_PER_PRUNE && stores * 2 >= self.map.len() {
            self.prune(false);
        }
        Inserted {
            entry,
            stored: true,
        }
    }

    /// Removes the entries of retired snapshots, and with `unbounded` all
    /// unbounded entries. Skipped while another prune runs.
    fn prune(&self, unbounded: bool) {
        let _pruning = match self.pruning.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        self.stores.store(0, Ordering::Relaxed);
        let map = self.map.pin();
        for (key, entry) in map.iter() {
            if !(entry.is_retired() || unbounded && is_unbounded(key, entry)) {
                continue;
            }
            // Only this entry: not one stored for the key since.
            let removed = map.remove_if(key, |_, held| Arc::ptr_eq(held, entry));
            if let Ok(Some((key, removed))) = removed {
                if is_unbounded(key, removed) {
                    self.unbounded.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// How many entries are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests;
