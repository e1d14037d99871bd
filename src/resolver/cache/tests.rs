//! The cache's map and membership: lookups, staleness, idle tracking,
//! negative entries, eviction and replacement. Helpers shared by the
//! cache's other test files are here too.

use super::*;
use crate::instance::Instance;

pub(super) const NEGATIVE_TTL: Duration = Duration::from_secs(3);

pub(super) fn name(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

/// A read listing `addrs`, without leases (like the Hertz schema).
pub(super) fn read(addrs: &[&str]) -> Read {
    Read {
        instances: addrs
            .iter()
            .map(|a| (Instance::new(a).unwrap(), None))
            .collect(),
        hidden: Default::default(),
        read_at: Instant::now(),
        generation: 0,
        keys_exist: None,
        grace_end: None,
        grace: Duration::ZERO,
    }
}

pub(super) fn snap(s: &str, addrs: &[&str]) -> Snapshot {
    Snapshot::new(
        name(s),
        addrs.iter().map(|a| Instance::new(a).unwrap()).collect(),
    )
}

#[test]
fn insert_find_remove() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (a, inserted) = cache.get_or_insert(&name("a"), || Some("ch".into()), 0);
    assert!(inserted);
    let (again, inserted) = cache.get_or_insert(&name("a"), || unreachable!(), 0);
    assert!(!inserted && Arc::ptr_eq(&a, &again));
    assert_eq!(a.channel(), Some("ch"));
    assert!(cache.cached("a").is_none(), "no snapshot yet");
    cache.complete(&a, Ok(read(&["h:1"])));
    assert_eq!(cache.cached("a").unwrap().len(), 1);
    assert!(cache.cached("b").is_none());
    for i in 0..1000 {
        cache.get_or_insert(&name(&format!("s{i}")), || None, 0);
    }
    assert_eq!(cache.len(), 1001);
    assert_eq!(cache.entries().len(), 1001);
    assert!(cache.cached("a").is_some());
    assert!(!cache.remove_if(&a, |_| true, |_| panic!()), "kept");
    let mut removed = false;
    assert!(cache.remove_if(&a, |_| false, |_| removed = true));
    assert!(removed);
    assert!(
        !cache.remove_if(&a, |_| false, |_| panic!()),
        "already gone"
    );
    assert!(cache.get("a").is_none());
    assert_eq!(cache.len(), 1000);
    cache.clear();
    assert_eq!(cache.len(), 0);
}

/// Addresses of the entry's current snapshot.
pub(super) fn listed(e: &CacheEntry) -> Vec<String> {
    e.snapshot()
        .unwrap()
        .instances()
        .iter()
        .map(|i| i.addr().to_owned())
        .collect()
}

/// A read started now (generation taken now) listing `leases`:
/// address and seconds left on its lease.
pub(super) fn leased(e: &CacheEntry, leases: &[(&str, u64)]) -> Read {
    let now = Instant::now();
    Read {
        instances: leases
            .iter()
            .map(|&(a, secs)| {
                let deadline = now + Duration::from_secs(secs);
                (Instance::new(a).unwrap(), Some(deadline))
            })
            .collect(),
        hidden: Default::default(),
        read_at: now,
        generation: e.begin_read(),
        keys_exist: Some(true),
        grace_end: None,
        grace: Duration::ZERO,
    }
}

#[tokio::test(start_paused = true)]
async fn max_staleness_hides_old_snapshots() {
    let cache = Cache::new(Some(Duration::from_secs(5)), NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(read(&["h:1"])));
    assert!(cache.cached("a").is_some());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(cache.cached("a").is_none());
    assert!(e.snapshot().is_some(), "still known");
    assert!(e.mark_dirty());
    cache.complete(&e, Ok(read(&["h:1"])));
    assert!(cache.cached("a").is_some(), "confirmed again");
}

/// A snapshot the cache returns stays "still cached" until the cache
/// would return another (a changed list), none (evicted, cleared), or
/// refuses it as stale; marking it used is a lookup for the idle sweep.
#[tokio::test(start_paused = true)]
async fn snapshots_know_while_the_cache_returns_them() {
    let cache = Cache::new(Some(Duration::from_secs(5)), NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(read(&["h:1"])));
    let first = cache.cached("a").unwrap();
    assert!(first.still_cached());
    assert!(!snap("a", &["h:1"]).still_cached(), "made by no cache");

    cache.complete(&e, Ok(read(&["h:1"])));
    assert!(first.still_cached(), "unchanged list: same snapshot");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(!first.still_cached(), "stale");
    assert!(cache.cached("a").is_none(), "as the cache says");
    cache.complete(&e, Ok(read(&["h:1"])));
    assert!(first.still_cached(), "confirmed again");

    cache.complete(&e, Ok(read(&["h:1", "h:2"])));
    assert!(!first.still_cached(), "replaced");
    let second = cache.cached("a").unwrap();
    assert!(second.still_cached());

    e.idle_for(1_000);
    assert!(!e.in_use());
    second.mark_used();
    assert!(e.in_use(), "marked used through the snapshot");

    assert!(cache.remove_if(&e, |_| false, |_| {}));
    assert!(!second.still_cached(), "evicted");

    let (e, _) = cache.get_or_insert(&name("b"), || None, 0);
    cache.complete(&e, Ok(read(&["h:1"])));
    let third = cache.cached("b").unwrap();
    cache.clear();
    assert!(!third.still_cached(), "cleared (shutdown)");
}

#[test]
fn idle_tracking_and_watchers() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 1_000);
    assert_eq!(e.idle_for(1_500), Duration::ZERO, "used at creation");
    assert_eq!(e.idle_for(4_000), Duration::from_millis(2_500));
    cache.cached("a");
    assert!(e.in_use());
    assert_eq!(e.idle_for(5_000), Duration::ZERO);
    assert_eq!(e.idle_for(9_000), Duration::from_secs(4));
    let rx = e.watch(snap("a", &[]));
    assert!(e.in_use());
    assert_eq!(e.idle_for(10_000), Duration::ZERO);
    assert!(e.mark_dirty());
    cache.complete(&e, Ok(read(&["h:1"])));
    assert_eq!(rx.borrow().len(), 1);
    drop(rx);
    assert!(!e.in_use());
}

/// An empty list of an entry neither subscribed nor watched is negative:
/// returned for the negative TTL only (hit, `fresh`, `still_cached`), then
/// expired for the sweep. Subscribed or watched, an empty list is a normal
/// answer, kept current by events or refreshes.
#[tokio::test(start_paused = true)]
async fn empty_lists_are_negative_for_the_negative_ttl_unless_subscribed_or_watched() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(read(&[])));
    let hit = cache.cached("a").expect("served while fresh");
    assert!(hit.still_cached() && e.is_negative() && e.fresh().is_some());
    assert!(!cache.negative_expired(&e));
    tokio::time::advance(NEGATIVE_TTL + Duration::from_millis(1)).await;
    assert!(cache.cached("a").is_none(), "expired: read again");
    assert!(!hit.still_cached() && e.fresh().is_none());
    assert!(cache.negative_expired(&e), "the sweep drops it");
    // Read again, still empty: served again for the negative TTL.
    assert!(e.mark_dirty());
    cache.complete(&e, Ok(read(&[])));
    assert!(cache.cached("a").is_some() && !cache.negative_expired(&e));

    // Subscribed: the same empty list is no longer negative.
    assert!(e.set_subscribed() && !e.set_subscribed());
    assert!(!e.is_negative());
    cache.complete(&e, Ok(read(&[])));
    tokio::time::advance(NEGATIVE_TTL * 10).await;
    assert!(cache.cached("a").is_some(), "kept current by events");
    assert!(!cache.negative_expired(&e));

    // Watched (Hertz: no subscription): not negative either.
    let (h, _) = cache.get_or_insert(&name("h"), || None, 0);
    cache.complete(&h, Ok(read(&[])));
    let _rx = h.watch(snap("h", &[]));
    assert!(!h.is_negative());
    cache.complete(&h, Ok(read(&[])));
    tokio::time::advance(NEGATIVE_TTL * 10).await;
    assert!(cache.cached("h").is_some());

    // With instances, never negative.
    let (i, _) = cache.get_or_insert(&name("i"), || None, 0);
    cache.complete(&i, Ok(read(&["h:1"])));
    tokio::time::advance(NEGATIVE_TTL * 10).await;
    assert!(cache.cached("i").is_some() && !i.is_negative());
}

/// Eviction picks entries serving no instance first, then the least
/// recently used; never the entry being inserted or a watched one.
#[test]
fn least_recently_used_prefers_entries_without_instances_then_the_oldest() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let entry = |s: &str, addrs: &[&str], at_ms: u64| {
        let (e, _) = cache.get_or_insert(&name(s), || None, at_ms);
        if !addrs.is_empty() {
            cache.complete(&e, Ok(read(addrs)));
        }
        e.idle_for(at_ms); // the use at creation, recorded at `at_ms`
        e
    };
    entry("old", &["h:1"], 1_000);
    entry("recent", &["h:1"], 2_000);
    entry("unread", &[], 3_000);
    let watched = entry("watched", &["h:1"], 0);
    let _rx = watched.watch(snap("watched", &[]));
    let inserted = entry("inserted", &[], 0);
    let names = |picked: Vec<Arc<CacheEntry>>| -> Vec<String> {
        picked.iter().map(|e| e.service().to_string()).collect()
    };
    assert_eq!(
        names(cache.least_recently_used(1, 4_000, &inserted)),
        ["unread"]
    );
    let mut two = names(cache.least_recently_used(2, 4_000, &inserted));
    two.sort();
    assert_eq!(two, ["old", "unread"]);
    // A hit makes `old` the most recent at the next look.
    cache.cached("old");
    let mut two = names(cache.least_recently_used(2, 5_000, &inserted));
    two.sort();
    assert_eq!(two, ["recent", "unread"]);
    let all = cache.least_recently_used(10, 5_000, &inserted);
    assert_eq!(all.len(), 3, "never the watched or the inserted entry");
    let removed = cache.remove_all(&all, |_| false, |_| {});
    assert_eq!(removed, 3);
    assert_eq!(cache.len(), 2);
    assert!(cache.get("old").is_none() && cache.get("watched").is_some());
}

/// Regression: a respelling watch removed the entry, and inserted its own
/// spelling only later: a request in between re-inserted its spelling,
/// which the watch then joined and kept. The swap is one critical section.
#[test]
fn an_entry_is_replaced_by_another_spelling_in_place() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (lower, _) = cache.get_or_insert(&name("orders"), || None, 0);
    let keep_none = |_: &CacheEntry| false;
    let mut removed = 0;
    let replaced = cache.replace_unless(
        &lower,
        keep_none,
        &name("Orders"),
        || None,
        0,
        |_| removed += 1,
    );
    assert!(replaced && removed == 1);
    // A request spelled in lowercase finds the watch's spelling.
    let (found, inserted) = cache.get_or_insert(&name("orders"), || unreachable!(), 0);
    assert!(!inserted && !Arc::ptr_eq(&found, &lower));
    assert_eq!(found.service().spelling(), "Orders");
    assert_eq!(cache.len(), 1);
    // Not twice (the old entry is gone), not when kept, not another name.
    let again = |e: &Arc<CacheEntry>, keep: bool, n: &str| {
        cache.replace_unless(e, |_| keep, &name(n), || None, 0, |_| panic!())
    };
    assert!(!again(&lower, false, "ORDERS"));
    assert!(!again(&found, true, "ORDERS"));
    assert!(!again(&found, false, "billing"));
    assert_eq!(cache.get("orders").unwrap().service().spelling(), "Orders");
}
