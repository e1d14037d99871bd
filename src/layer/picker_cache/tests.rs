use std::sync::Arc;

use tokio::time::Instant;

use super::super::outlier::Outliers;
use super::{PickerCache, PickerEntry, MAX_UNBOUNDED};
use crate::balance::{Balance, RoundRobin, TagFilter};
use crate::instance::{Instance, ServiceName};
use crate::resolver::{CacheLink, Snapshot, UseFlag};

fn entry(snapshot: &Snapshot) -> PickerEntry {
    let picker = Box::new(RoundRobin::new().build(snapshot.instances()));
    let outliers = Outliers::new(Default::default()).service(snapshot.service());
    let members = (0..snapshot.len()).collect();
    PickerEntry::new(snapshot.clone(), members, picker, outliers, None, None)
}

fn snapshot() -> Snapshot {
    let name = ServiceName::new("Orders").unwrap();
    Snapshot::new(name, vec![Instance::new("h:1").unwrap()])
}

/// A snapshot as a resolver cache returns it.
fn linked(service: &str) -> Snapshot {
    let name = ServiceName::new(service).unwrap();
    let link = CacheLink::new(UseFlag::new(true), None);
    Snapshot::cached_at(
        name,
        vec![Instance::new("h:1").unwrap()],
        Instant::now(),
        link,
    )
}

#[test]
fn one_entry_per_snapshot_service_and_filter() {
    let cache = PickerCache::default();
    let first = snapshot();
    assert!(cache.get("orders", None).is_none());
    let kept = cache.insert(None, entry(&first)).entry;
    assert!(Arc::ptr_eq(&kept, &cache.get("orders", None).unwrap()));
    // A second picker for the same snapshot is not kept: one state.
    let again = cache.insert(None, entry(&first));
    assert!(Arc::ptr_eq(&kept, &again.entry) && !again.stored);
    let filter = TagFilter::new().with("zone", "a");
    assert!(cache.get("orders", Some(&filter)).is_none());
    let filtered = cache.insert(Some(&filter), entry(&first)).entry;
    assert!(!Arc::ptr_eq(&kept, &filtered));
    // A new snapshot replaces the entry.
    let second = snapshot();
    let replaced = cache.insert(None, entry(&second)).entry;
    assert!(Snapshot::ptr_eq(&replaced.snapshot, &second));
    let found = cache.get("orders", None).unwrap();
    assert!(Snapshot::ptr_eq(&found.snapshot, &second));
    // Unlinked snapshots are never used without a lookup.
    found.returned_by_cached();
    assert!(!found.current_without_lookup());
}

#[test]
fn more_current_services_than_the_cap_keep_their_pickers() {
    let cache = PickerCache::default();
    let services = MAX_UNBOUNDED + 1000;
    let snapshots: Vec<_> = (0..services).map(|i| linked(&format!("s{i}"))).collect();
    let stored: Vec<_> = snapshots
        .iter()
        .map(|s| cache.insert(None, entry(s)).entry)
        .collect();
    assert_eq!(cache.len(), services);
    for (snapshot, stored) in snapshots.iter().zip(&stored) {
        let found = cache.get(snapshot.service().as_str(), None).unwrap();
        assert!(Arc::ptr_eq(&found, stored), "{}", snapshot.service());
    }
}

#[test]
fn retired_snapshots_are_pruned() {
    let cache = PickerCache::default();
    let evicted: Vec<_> = (0..100).map(|i| linked(&format!("gone{i}"))).collect();
    for snapshot in &evicted {
        cache.insert(None, entry(snapshot));
    }
    // The resolver evicts them.
    for snapshot in &evicted {
        snapshot.retire();
    }
    // Enough stores for a prune.
    let kept: Vec<_> = (0..200).map(|i| linked(&format!("kept{i}"))).collect();
    for snapshot in &kept {
        cache.insert(None, entry(snapshot));
    }
    for snapshot in &evicted {
        assert!(cache.get(snapshot.service().as_str(), None).is_none());
    }
    for snapshot in &kept {
        assert!(cache.get(snapshot.service().as_str(), None).is_some());
    }
    assert_eq!(cache.len(), kept.len());
}

#[test]
fn an_older_snapshot_does_not_replace_a_current_one() {
    let cache = PickerCache::default();
    let older = linked("orders");
    let old_entry = cache.insert(None, entry(&older)).entry;
    older.retire();
    let current = linked("orders");
    let stored = cache.insert(None, entry(&current));
    assert!(stored.stored);
    // A late resolve or a retry with the older snapshot: routed by a
    // picker of its own, not stored.
    let late = cache.insert(None, entry(&older));
    assert!(!late.stored);
    assert!(Snapshot::ptr_eq(&late.entry.snapshot, &older));
    assert!(!Arc::ptr_eq(&late.entry, &old_entry));
    let found = cache.get("orders", None).unwrap();
    assert!(Arc::ptr_eq(&found, &stored.entry));
}

#[test]
fn unbounded_entries_are_capped() {
    let cache = PickerCache::default();
    let current = linked("current");
    let current_entry = cache.insert(None, entry(&current)).entry;
    for i in 0..MAX_UNBOUNDED * 2 {
        let filter = TagFilter::new().with("n", i.to_string());
        cache.insert(Some(&filter), entry(&current));
        let name = ServiceName::new(format!("static{i}")).unwrap();
        let unlinked = Snapshot::new(name, vec![Instance::new("h:1").unwrap()]);
        cache.insert(None, entry(&unlinked));
    }
    assert!(cache.len() <= MAX_UNBOUNDED + 1, "{}", cache.len());
    // The current entry of the layer's filter stays.
    let found = cache.get("current", None).unwrap();
    assert!(Arc::ptr_eq(&found, &current_entry));
}
