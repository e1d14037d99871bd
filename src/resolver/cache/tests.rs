use super::read_state::{EXTRA_REMOVALS, MAX_ADDR_LEN};
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
        read_at: Instant::now(),
        generation: 0,
        keys_exist: None,
        grace_end: None,
        grace: Duration::ZERO,
    }
}

fn snap(s: &str, addrs: &[&str]) -> Snapshot {
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

#[test]
fn unchanged_reads_keep_the_snapshot_and_errors_never_replace_it() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    let rx = e.outcomes();
    assert!(e.join_or_start(&rx));
    assert!(!e.join_or_start(&rx), "a read is running");
    assert!(!cache.complete(&e, Ok(read(&["h:1", "h:2"]))).again);
    let first = e.snapshot().unwrap();
    assert!(!e.join_or_start(&rx), "a read finished since rx was taken");
    assert!(e.mark_dirty());
    assert!(!e.mark_dirty(), "running: marked dirty instead");
    assert!(
        cache.complete(&e, Ok(read(&["h:2", "h:1"]))).again,
        "dirty: read again"
    );
    assert!(
        Snapshot::ptr_eq(&first, &e.snapshot().unwrap()),
        "same list"
    );
    assert!(!cache.complete(&e, Err(ResolveError::Shutdown)).again);
    assert!(Snapshot::ptr_eq(&first, &e.snapshot().unwrap()), "kept");
    assert!(matches!(&*e.outcomes().borrow(), Some(Err(_))));
    assert!(e.mark_dirty());
    cache.complete(&e, Ok(read(&["h:3"])));
    assert!(!Snapshot::ptr_eq(&first, &e.snapshot().unwrap()), "changed");
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
        read_at: now,
        generation: e.begin_read(),
        keys_exist: Some(true),
        grace_end: None,
        grace: Duration::ZERO,
    }
}

#[tokio::test(start_paused = true)]
async fn instances_a_read_misses_stay_until_their_lease_runs_out_or_an_event_removes_them() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    let start = Instant::now();
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:2", 10), ("h:3", 10)])));
    assert_eq!(done.recheck, None, "nothing kept");
    let first = e.snapshot().unwrap();

    // The registry lost everything (FLUSHALL); one instance is back.
    tokio::time::advance(Duration::from_secs(1)).await;
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(
        listed(&e),
        ["h:1", "h:2", "h:3"],
        "kept until their leases end"
    );
    assert!(
        Snapshot::ptr_eq(&first, &e.snapshot().unwrap()),
        "same list"
    );
    let recheck = start + Duration::from_secs(10);
    assert_eq!(
        done.recheck,
        Some(recheck),
        "read again when the first ends"
    );
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(done.recheck, None, "already scheduled");

    // An event removes one at once: the next read drops it.
    e.on_event(Event::Removed("h:2"), None);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(listed(&e), ["h:1", "h:3"]);

    // A read that started before a removal does not bring it back, even
    // though it lists it; one started after the removal may.
    let before = leased(&e, &[("h:1", 10), ("h:4", 10)]);
    e.on_event(Event::Removed("h:4"), None);
    cache.complete(&e, Ok(before));
    assert_eq!(listed(&e), ["h:1", "h:3"]);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:4", 10)])));
    assert_eq!(listed(&e), ["h:1", "h:3", "h:4"], "registered again");
    // A re-registration announced while a read runs counts too.
    let before = leased(&e, &[("h:1", 10), ("h:4", 10)]);
    e.on_event(Event::Removed("h:4"), None);
    e.on_event(Event::Listed("h:4"), None);
    cache.complete(&e, Ok(before));
    assert_eq!(listed(&e), ["h:1", "h:3", "h:4"]);

    // The kept leases run out: gone at the next read. h:4's lease was
    // read a second later than h:3's.
    tokio::time::sleep_until(recheck).await;
    e.recheck_due(recheck);
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(listed(&e), ["h:1", "h:4"]);
    let recheck = start + Duration::from_secs(11);
    assert_eq!(done.recheck, Some(recheck));
    tokio::time::sleep_until(recheck).await;
    e.recheck_due(recheck);
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(done.recheck, None);

    // Without leases (Hertz) a read is the whole truth.
    let (h, _) = cache.get_or_insert(&name("h"), || None, 0);
    cache.complete(&h, Ok(read(&["h:1", "h:2"])));
    let done = cache.complete(&h, Ok(read(&["h:1"])));
    assert_eq!(listed(&h), ["h:1"]);
    assert_eq!(done.recheck, None);
}

#[tokio::test]
async fn callers_mark_reads_wanted_and_periodic_refreshes_do_not_pile_up() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    // A background refresh starts; the periodic one finds it running
    // and neither starts another nor marks it dirty.
    assert!(e.start_if_idle());
    assert!(!e.start_if_idle());
    assert!(!e.is_wanted());
    // A caller joins: the read becomes wanted, and a read waiting for
    // a refresh permit is woken.
    let rx = e.outcomes();
    assert!(!e.join_or_start(&rx));
    assert!(e.is_wanted());
    tokio::time::timeout(Duration::from_secs(10), e.wanted())
        .await
        .expect("woken");
    assert!(!cache.complete(&e, Ok(read(&[]))).again, "not dirty");
    assert!(!e.is_wanted(), "the outcome answered every caller");
    // A caller that starts a read wants it too.
    let rx = e.outcomes();
    assert!(e.join_or_start(&rx));
    assert!(e.is_wanted());
    // Cut short: the caller gets an error and the next one can start.
    e.interrupt(ResolveError::Shutdown);
    assert!(matches!(&*rx.borrow(), Some(Err(ResolveError::Shutdown))));
    assert!(!e.is_wanted());
    let rx = e.outcomes();
    assert!(e.join_or_start(&rx), "not running any more");
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

/// Regression: `complete` used to send the outcome before clearing
/// `running`, so a caller could subscribe after the outcome, see the
/// read still running, join it and wait for an outcome that never came.
/// Races a completing read against a joining caller many times; after
/// both, a caller that joined must have an outcome to wake up to.
#[test]
fn a_caller_never_joins_a_read_that_already_ended() {
    let cache = Arc::new(Cache::new(None, NEGATIVE_TTL));
    let service = name("a");
    for round in 0..10_000 {
        let (e, _) = cache.get_or_insert(&service, || None, 0);
        assert!(e.mark_dirty());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let reader = {
            let (cache, e, barrier) = (cache.clone(), e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.complete(&e, Err(ResolveError::Shutdown));
            })
        };
        barrier.wait();
        let seen = e.outcomes();
        let joined = !e.join_or_start(&seen);
        reader.join().unwrap();
        assert!(
            !joined || seen.has_changed().unwrap(),
            "round {round}: joined a read that had already ended"
        );
        cache.remove_if(&e, |_| false, |_| {});
    }
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

/// A read that got its permit is dropped unsent only if nobody waits for
/// it, nothing watches the entry, and it is a first read (or the entry
/// was evicted); a caller then starts a read of its own, and one that
/// holds an outcome receiver keeps the read.
#[test]
fn only_unwanted_first_reads_are_abandoned() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    let seen = e.outcomes();
    assert!(e.join_or_start(&seen));
    assert!(!e.abandon_if_unwanted(false), "a caller waits");
    drop(seen);
    assert!(e.abandon_if_unwanted(false), "first read, nobody waits");
    let seen = e.outcomes();
    assert!(e.join_or_start(&seen), "released: the next caller starts");
    drop(seen);
    cache.complete(&e, Ok(read(&["h:1"])));
    // Read once: a refresh nobody waits for is kept, unless evicted.
    assert!(e.start_if_idle());
    assert!(!e.abandon_if_unwanted(false));
    assert!(e.abandon_if_unwanted(true));
    // Watched: always kept.
    let (w, _) = cache.get_or_insert(&name("w"), || None, 0);
    let _rx = w.watch(snap("w", &[]));
    assert!(w.start_if_idle());
    assert!(!w.abandon_if_unwanted(true));
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

/// Regression: the removals announced by events were all recorded until
/// a read completed, with addresses of any length: while Redis was slow,
/// anyone who may publish on the events channel grew them without bound.
#[tokio::test(start_paused = true)]
async fn removals_announced_while_a_read_runs_are_bounded() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:2", 10)])));
    let removed = |e: &CacheEntry| lock(&e.state).removals();

    // Too long to be an address: not recorded.
    e.on_event(Event::Removed(&"x".repeat(MAX_ADDR_LEN + 1)), None);
    assert_eq!(removed(&e), 0);

    let slow = leased(&e, &[("h:1", 10), ("h:2", 10)]);
    e.on_event(Event::Removed("h:2"), None);
    for n in 0..3 * EXTRA_REMOVALS {
        e.on_event(Event::Removed(&format!("10.{n}.0.1:80")), None);
        assert!(removed(&e) <= 2 + EXTRA_REMOVALS);
    }
    // The read that started before may bring h:2 back (the record of its
    // removal is gone) ...
    cache.complete(&e, Ok(slow));
    assert_eq!(listed(&e), ["h:1", "h:2"]);
    // ... the next one, started after, is trusted alone: h:2, still
    // leased, is not kept.
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(removed(&e), 0);
    // From then on, instances a read misses are kept again.
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:3", 10)])));
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10)])));
    assert_eq!(listed(&e), ["h:1", "h:3"]);
}
