//! The cache's rule during a recovery grace ([`ReadState::merge`]).

use super::tests::{leased, listed, name, read, NEGATIVE_TTL};
use super::*;

/// `read` as the resolver makes it during a recovery grace ending at
/// `grace_end` (grace length 10 s), finding the service's keys or not.
fn recovering(mut read: Read, keys_exist: bool, grace_end: Option<Instant>) -> Read {
    read.keys_exist = read.keys_exist.map(|_| keys_exist);
    read.grace_end = grace_end;
    read.grace = Duration::from_secs(10);
    read
}

#[tokio::test(start_paused = true)]
async fn during_a_recovery_grace_missed_instances_stay_until_it_ends() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:2", 3), ("h:3", 3)])));
    // Redis away longer than the leases; back empty, one instance back.
    tokio::time::advance(Duration::from_secs(5)).await;
    let grace_end = Instant::now() + Duration::from_secs(10);
    let back = recovering(leased(&e, &[("h:1", 3)]), true, Some(grace_end));
    let done = cache.complete(&e, Ok(back));
    assert_eq!(listed(&e), ["h:1", "h:2", "h:3"], "kept to the grace end");
    assert_eq!(done.recheck, Some(grace_end), "read again when it ends");
    // h:2 comes back; a deregister removes h:3 at once, during the grace.
    tokio::time::advance(Duration::from_secs(1)).await;
    let next = recovering(leased(&e, &[("h:1", 3), ("h:2", 3)]), true, Some(grace_end));
    cache.complete(&e, Ok(next));
    assert_eq!(listed(&e), ["h:1", "h:2", "h:3"]);
    e.on_event(Event::Removed("h:3"), Some(grace_end));
    let next = recovering(leased(&e, &[("h:1", 3), ("h:2", 3)]), true, Some(grace_end));
    cache.complete(&e, Ok(next));
    assert_eq!(listed(&e), ["h:1", "h:2"], "deregistered at once");
    // An expire during the grace is no removal: h:2 stays to its end.
    e.on_event(Event::Expired("h:2"), Some(grace_end));
    let next = recovering(leased(&e, &[("h:1", 3)]), true, Some(grace_end));
    cache.complete(&e, Ok(next));
    assert_eq!(
        listed(&e),
        ["h:1", "h:2"],
        "an expire waits for the grace end"
    );
    // The grace ends: what reads still miss goes.
    tokio::time::sleep_until(grace_end).await;
    let done = cache.complete(&e, Ok(leased(&e, &[("h:1", 3)])));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(done.recheck, None);
    // Outside a grace, an expire removes at once (its lease still runs).
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:4", 3)])));
    e.on_event(Event::Expired("h:4"), None);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3)])));
    assert_eq!(listed(&e), ["h:1"]);

    // Without leases (Hertz), kept during a grace too, then dropped.
    let (h, _) = cache.get_or_insert(&name("h"), || None, 0);
    cache.complete(&h, Ok(read(&["h:1", "h:2"])));
    let grace_end = Instant::now() + Duration::from_secs(10);
    let done = cache.complete(&h, Ok(recovering(read(&["h:1"]), true, Some(grace_end))));
    assert_eq!(listed(&h), ["h:1", "h:2"]);
    assert_eq!(done.recheck, Some(grace_end));
    tokio::time::sleep_until(grace_end).await;
    cache.complete(&h, Ok(read(&["h:1"])));
    assert_eq!(listed(&h), ["h:1"]);
}

#[tokio::test(start_paused = true)]
async fn keys_found_gone_after_a_read_found_them_start_the_services_grace() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:2", 3)])));
    // The leases are over; then a FLUSHALL: the keys are gone. The grace
    // (10 s) starts now.
    tokio::time::advance(Duration::from_secs(4)).await;
    let flushed = Instant::now();
    let done = cache.complete(&e, Ok(recovering(leased(&e, &[]), false, None)));
    assert_eq!(listed(&e), ["h:1", "h:2"], "kept: the registry lost them");
    let grace_end = flushed + Duration::from_secs(10);
    assert_eq!(done.recheck, Some(grace_end));
    // One is back (keys exist again): the other stays to the grace end,
    // and a later read finding them gone again does not extend it.
    tokio::time::advance(Duration::from_secs(1)).await;
    cache.complete(&e, Ok(recovering(leased(&e, &[("h:1", 3)]), true, None)));
    assert_eq!(listed(&e), ["h:1", "h:2"]);
    tokio::time::advance(Duration::from_secs(1)).await;
    let done = cache.complete(&e, Ok(recovering(leased(&e, &[]), false, None)));
    assert_eq!(
        done.recheck, None,
        "the re-read at the grace end is pending"
    );
    assert_eq!(listed(&e), ["h:1", "h:2"]);
    tokio::time::sleep_until(grace_end).await;
    e.recheck_due(grace_end);
    cache.complete(&e, Ok(recovering(leased(&e, &[]), false, None)));
    assert!(listed(&e).is_empty(), "dropped at the grace end");

    // A service never found with keys starts no grace; nor does a zero
    // grace.
    let (n, _) = cache.get_or_insert(&name("n"), || None, 0);
    cache.complete(&n, Ok(recovering(leased(&n, &[]), false, None)));
    assert_eq!(lock(&n.state).recheck, None);
    let (z, _) = cache.get_or_insert(&name("z"), || None, 0);
    cache.complete(&z, Ok(leased(&z, &[("h:1", 3)])));
    tokio::time::advance(Duration::from_secs(4)).await;
    let mut gone = leased(&z, &[]);
    gone.keys_exist = Some(false);
    cache.complete(&z, Ok(gone));
    assert!(
        listed(&z).is_empty(),
        "grace zero: dropped at its lease end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_missing_starts_the_services_grace() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:2", 3)])));
    // A FLUSHALL first seen after h:1's heartbeat re-created the keys:
    // h:2 is missing while its lease runs, and no event removed it.
    tokio::time::advance(Duration::from_secs(1)).await;
    let lost = Instant::now();
    let done = cache.complete(&e, Ok(recovering(leased(&e, &[("h:1", 3)]), true, None)));
    assert_eq!(listed(&e), ["h:1", "h:2"]);
    assert!(done.recheck.is_some());
    // Its lease ends (its heartbeat is late): the grace keeps it.
    tokio::time::advance(Duration::from_secs(3)).await;
    cache.complete(&e, Ok(recovering(leased(&e, &[("h:1", 3)]), true, None)));
    assert_eq!(listed(&e), ["h:1", "h:2"], "kept by the service's grace");
    tokio::time::sleep_until(lost + Duration::from_secs(10)).await;
    cache.complete(&e, Ok(recovering(leased(&e, &[("h:1", 3)]), true, None)));
    assert_eq!(listed(&e), ["h:1"], "dropped at the grace end");
    // A deregister is no loss: no grace, removed at once.
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:3", 3)])));
    e.on_event(Event::Removed("h:3"), None);
    let done = cache.complete(&e, Ok(recovering(leased(&e, &[("h:1", 3)]), true, None)));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(done.recheck, None);
}

#[tokio::test(start_paused = true)]
async fn graces_that_follow_one_another_keep_a_missed_instance_one_grace_at_most() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:2", 3)])));
    // h:2 crashed; its lease runs out. Redis is lost and answers again
    // every few seconds, so every read sees a grace ending 10 s later.
    tokio::time::advance(Duration::from_secs(4)).await;
    let first_missed = Instant::now();
    let bound = first_missed + Duration::from_secs(10);
    loop {
        let grace_end = Some(Instant::now() + Duration::from_secs(10));
        let done = cache.complete(
            &e,
            Ok(recovering(leased(&e, &[("h:1", 3)]), true, grace_end)),
        );
        if Instant::now() < bound {
            assert_eq!(listed(&e), ["h:1", "h:2"], "kept within one grace");
            // Scheduled once (at the first read), for its bound.
            assert!(done.recheck.is_none_or(|at| at == bound), "{done:?}");
            assert_eq!(
                lock(&e.state).recheck,
                Some(bound),
                "read again at its bound"
            );
        } else {
            assert_eq!(listed(&e), ["h:1"], "gone one grace after first missed");
            break;
        }
        tokio::time::advance(Duration::from_secs(3)).await;
    }
}

/// A read during a recovery grace that finds an instance disabled by an
/// override drops it at once: Redis answered for it, it is not missed.
#[tokio::test(start_paused = true)]
async fn during_a_recovery_grace_a_disabled_instance_leaves_at_once() {
    let cache = Cache::new(None, NEGATIVE_TTL);
    let (e, _) = cache.get_or_insert(&name("a"), || None, 0);
    cache.complete(&e, Ok(leased(&e, &[("h:1", 3), ("h:2", 3)])));
    let grace_end = Instant::now() + Duration::from_secs(10);
    let mut back = recovering(leased(&e, &[("h:1", 3)]), true, Some(grace_end));
    back.hidden.insert(Box::from("h:2"));
    let done = cache.complete(&e, Ok(back));
    assert_eq!(listed(&e), ["h:1"]);
    assert_eq!(done.recheck, None, "nothing kept");
}
