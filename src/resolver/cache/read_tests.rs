//! An entry's reads: how a read's list is made from the previous one,
//! joining and abandoning reads, and the bounds on what events record.

use super::read_state::{EXTRA_REMOVALS, MAX_ADDR_LEN};
use super::tests::{leased, listed, name, read, snap, NEGATIVE_TTL};
use super::*;

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

/// An instance an override disables is hidden at once, though its lease
/// runs (not kept as a missed one, no grace started), and back when the
/// override goes.
#[tokio::test(start_paused = true)]
async fn a_disabled_instance_is_hidden_while_its_lease_runs_and_back_after() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:2", 10)])));
    e.on_event(Event::Other, None); // `override`
    let mut disabled = leased(&e, &[("h:1", 10)]);
    disabled.hidden.insert(Box::from("h:2"));
    let done = cache.complete(&e, Ok(disabled));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(done.recheck, None, "nothing kept");
    // No grace was started: a later read missing h:1 for real keeps it
    // only for its lease, and h:2 stays hidden.
    let mut again = leased(&e, &[("h:1", 10)]);
    again.hidden.insert(Box::from("h:2"));
    cache.complete(&e, Ok(again));
    assert_eq!(listed(&e), ["h:1"]);
    e.on_event(Event::Other, None);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 10), ("h:2", 10)])));
    assert_eq!(listed(&e), ["h:1", "h:2"], "enabled again");
}
