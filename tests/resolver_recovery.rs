//! The resolver's recovery grace against a real, private redis-server:
//! after Redis was unreachable, or lost a service's keys, no live
//! instance leaves a client's list while registrations come back.
//!
//! Registrations are written by hand (the native schema's keys, and the
//! registry's `register` event), so the test decides when each one comes
//! back instead of racing a heartbeat: lease TTL 3 s, as a registry with
//! a 1 s heartbeat would write.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_discovery::resolver::{RedisResolver, Resolve, ResolverBuilder};
use redis_discovery::{KeySchema, ServiceName};
use support::outage::subscribed;
use support::{cached_addrs, eventually, init_tracing, RedisServer};

const SERVICE: &str = "rec";
const CHANNEL: &str = "sd:{rec}:events";
const ALL: [&str; 3] = ["10.0.12.1:80", "10.0.12.2:80", "10.0.12.3:80"];
/// The lease TTL registrations are written with.
const TTL_MS: i64 = 3_000;
/// The grace the tests configure: a 1 s heartbeat plus the 5 s margin.
const GRACE: Duration = Duration::from_secs(6);
/// How long Redis stays down: longer than the TTL.
const OUTAGE: Duration = Duration::from_secs(4);

fn resolver(server: &RedisServer) -> ResolverBuilder {
    // Frequent refreshes: reads land after Redis is back and before the
    // registrations, the race the grace is for.
    RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(300))
        .recovery_grace(GRACE)
}

/// Registers `addr` by hand as the registry's script would: entry, lease
/// ending `lease_ms` from now by the Redis clock, `register` event.
fn register(server: &RedisServer, addr: &str, lease_ms: i64) {
    let (secs, micros): (i64, i64) = server.cmd(&["TIME"]);
    let deadline = (secs * 1000 + micros / 1000 + lease_ms).to_string();
    let value =
        format!(r#"{{"service_name":"{SERVICE}","addr":"{addr}","weight":10,"tags":null}}"#);
    server.cmd::<()>(&["HSET", "sd:{rec}:instances", addr, &value]);
    server.cmd::<()>(&["ZADD", "sd:{rec}:leases", &deadline, addr]);
    publish(server, "register", addr);
}

fn publish(server: &RedisServer, event: &str, addr: &str) {
    let message = format!(r#"{{"event":"{event}","addr":"{addr}"}}"#);
    server.cmd::<i64>(&["PUBLISH", CHANNEL, &message]);
}

/// Writes `addr` as Hertz's registry does (no lease of its own).
fn hertz_write(server: &RedisServer, addr: &str) {
    let key = format!("/hertz/{SERVICE}/server");
    let value =
        format!(r#"{{"service_name":"{SERVICE}","addr":"{addr}","weight":10,"tags":null}}"#);
    server.cmd::<()>(&["HSET", &key, addr, &value]);
    server.cmd::<()>(&["EXPIRE", &key, "60"]);
}

/// Waits until the instance that never came back has left the list.
async fn never_back_dropped(resolver: &RedisResolver) {
    eventually(
        "the instance that never came back to be dropped",
        || async {
            let list = cached_addrs(resolver, SERVICE)?;
            (list.len() == 2).then_some(())
        },
    )
    .await;
}

/// Waits until the resolver has read the service since `since`.
async fn read_since(resolver: &RedisResolver, since: Instant) {
    let since = tokio::time::Instant::from_std(since);
    eventually("a read", || async {
        let snapshot = resolver.cached(SERVICE)?;
        (snapshot.read_at() >= since).then_some(())
    })
    .await;
}

/// A list of addresses the resolver served, and when it was seen.
type Seen = (Instant, Vec<String>);

/// The resolver's cached list, looked at every 10 ms on a thread of its
/// own; every change is recorded with when it was seen.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(resolver: &RedisResolver) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (resolver, stop2, seen2) = (resolver.clone(), stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let mut list = cached_addrs(&resolver, SERVICE).unwrap_or_default();
                list.sort();
                let mut seen = seen2.lock().unwrap();
                if seen.last().is_none_or(|(_, last)| *last != list) {
                    seen.push((Instant::now(), list));
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Watcher {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops watching; returns every list seen, with when.
    fn stop(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the watcher thread");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Watcher {
    // A test that fails before `stop` leaves no thread behind.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Panics unless every list seen holds `always`, and each list seen
/// before `until` holds `kept` too.
fn check(seen: &[Seen], always: &[&str], kept: &str, until: Instant) {
    for (at, list) in seen {
        for addr in always {
            assert!(list.iter().any(|a| a == addr), "{addr} missing: {list:?}");
        }
        if *at < until {
            assert!(
                list.iter().any(|a| a == kept),
                "{kept} dropped {:?} before the grace could end: {list:?}",
                until - *at
            );
        }
    }
}

/// Registers every instance with a TTL lease and has the resolver read
/// them; returns it, subscribed.
async fn start(server: &RedisServer, builder: ResolverBuilder) -> RedisResolver {
    for addr in ALL {
        register(server, addr, TTL_MS);
    }
    let resolver = builder.connect().await.expect("resolver connects");
    let service = ServiceName::new(SERVICE).unwrap();
    assert_eq!(resolver.resolve(&service).await.unwrap().len(), 3);
    subscribed(&server.url(), CHANNEL, Instant::now()).await;
    resolver
}

/// Redis stopped for longer than the TTL and restarted empty: every
/// known lease has run out. The instances come back one by one; the
/// list never loses one, and the one that never comes back is dropped
/// once the grace is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_longer_than_the_ttl_no_live_instance_leaves_the_list() {
    init_tracing();
    let mut server = RedisServer::start();
    let resolver = start(&server, resolver(&server)).await;
    let watcher = Watcher::start(&resolver);
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.restart();
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    register(&server, ALL[0], 60_000);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    register(&server, ALL[1], 60_000);
    never_back_dropped(&resolver).await;
    let seen = watcher.stop();
    check(&seen, &ALL[..2], ALL[2], restarted + GRACE);
}

/// `FLUSHALL`: a read finds the service's keys gone, which starts the
/// service's grace; the instances come back one by one, after their last
/// known leases ran out, and none leaves the list meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flushall_no_live_instance_leaves_the_list() {
    init_tracing();
    let server = RedisServer::start();
    let resolver = start(&server, resolver(&server)).await;
    let watcher = Watcher::start(&resolver);
    server.flushall();
    let flushed = Instant::now();
    // The refresh finds the keys gone before anything comes back.
    read_since(&resolver, flushed).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    register(&server, ALL[0], 60_000);
    // The last known leases run out (TTL after the flush, at the latest).
    tokio::time::sleep(Duration::from_millis(TTL_MS as u64)).await;
    register(&server, ALL[1], 60_000);
    never_back_dropped(&resolver).await;
    let seen = watcher.stop();
    check(&seen, &ALL[..2], ALL[2], flushed + GRACE);
}

/// During the grace, a `deregister` event still removes an instance at
/// once; an `expire` event does not (after a restart from an old
/// snapshot, the first heartbeat's pruning announces live siblings whose
/// leases ran out while Redis was away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_grace_a_deregister_removes_at_once_and_an_expire_does_not() {
    init_tracing();
    let mut server = RedisServer::start();
    let grace = Duration::from_secs(60); // "at once" is well before its end
    let resolver = start(&server, resolver(&server).recovery_grace(grace)).await;
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.restart();
    let restarted = Instant::now();
    // Resubscribed: events arrive again.
    subscribed(&server.url(), CHANNEL, Instant::now()).await;

    publish(&server, "expire", ALL[0]);
    let published = Instant::now();
    read_since(&resolver, published).await;
    let mut list = cached_addrs(&resolver, SERVICE).unwrap();
    list.sort();
    assert_eq!(list, ALL, "an expire during the grace removes nothing");
    register(&server, ALL[0], 60_000);

    publish(&server, "deregister", ALL[2]);
    let list = eventually("the deregistered instance to leave", || async {
        let list = cached_addrs(&resolver, SERVICE)?;
        (!list.iter().any(|a| a == ALL[2])).then_some(list)
    })
    .await;
    assert!(Instant::now() < restarted + grace, "removed at once");
    let mut list = list;
    list.sort();
    assert_eq!(list, ALL[..2], "the others stay");
}

/// `recovery_grace(0)` turns the grace off: after an outage longer than
/// the TTL, the first read drops every instance not back yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_grace_the_first_read_after_an_outage_drops_what_it_misses() {
    init_tracing();
    let mut server = RedisServer::start();
    let builder = resolver(&server).recovery_grace(Duration::ZERO);
    let resolver = start(&server, builder).await;
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.restart();
    let restarted = Instant::now();
    eventually("the list to empty", || async {
        cached_addrs(&resolver, SERVICE)?.is_empty().then_some(())
    })
    .await;
    assert!(
        restarted.elapsed() < GRACE,
        "dropped at the first read, not after a grace"
    );
}

/// Outside any outage, an instance whose heartbeats stop (a crash) still
/// leaves at the first read after its lease end (here the periodic
/// refresh; with a registry, its siblings' next heartbeat announces the
/// `expire`), not a grace later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_an_outage_a_crashed_instance_leaves_at_its_lease_end() {
    init_tracing();
    let server = RedisServer::start();
    register(&server, ALL[0], 60_000);
    register(&server, ALL[1], 2_000); // never renewed
    let written = Instant::now();
    // The default grace (10 s native).
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let service = ServiceName::new(SERVICE).unwrap();
    assert_eq!(resolver.resolve(&service).await.unwrap().len(), 2);
    eventually("the crashed instance to leave", || async {
        (cached_addrs(&resolver, SERVICE)? == [ALL[0]]).then_some(())
    })
    .await;
    let took = written.elapsed();
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(5),
        "left {took:?} after its 2 s lease was written: no grace outside an outage"
    );
}

/// The Hertz schema has no events and no per-instance lease, but the
/// resolver-wide grace applies: reads failed while Redis was away, so
/// after it comes back empty, what the first reads miss stays for the
/// grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hertz_schema_keeps_missed_instances_for_the_grace_after_an_outage() {
    init_tracing();
    let mut server = RedisServer::start();
    hertz_write(&server, ALL[0]);
    hertz_write(&server, ALL[1]);
    let resolver = resolver(&server)
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let service = ServiceName::new(SERVICE).unwrap();
    assert_eq!(resolver.resolve(&service).await.unwrap().len(), 2);
    let watcher = Watcher::start(&resolver);
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.restart();
    let restarted = Instant::now();
    // A read after the restart finds nothing; both stay.
    read_since(&resolver, restarted).await;
    hertz_write(&server, ALL[0]);
    eventually(
        "the instance that never came back to be dropped",
        || async { (cached_addrs(&resolver, SERVICE)? == [ALL[0]]).then_some(()) },
    )
    .await;
    check(&watcher.stop(), &ALL[..1], ALL[1], restarted + GRACE);
}

/// The first read after Redis restarted would fail on the dead
/// connection; it is tried once more at once, which waits for the
/// reconnect, so callers get an answer instead of an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_read_after_a_restart_succeeds() {
    init_tracing();
    let mut server = RedisServer::start();
    register(&server, ALL[0], 60_000);
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    assert_eq!(resolver.fetch(SERVICE).await.unwrap().len(), 1);
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    register(&server, ALL[0], 60_000);
    let snapshot = resolver.fetch(SERVICE).await;
    assert_eq!(snapshot.map(|s| s.len()).ok(), Some(1), "answered at once");
}

/// A restart so short that no read fails during it: the first read after
/// it fails on the dead connection and its retry succeeds. With the Hertz
/// schema (no event connection to notice the loss) that failure alone
/// must start the grace, or the empty hash would empty the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_no_read_saw_still_starts_the_grace_without_events() {
    init_tracing();
    let mut server = RedisServer::start();
    hertz_write(&server, ALL[0]);
    hertz_write(&server, ALL[1]);
    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .refresh_interval(Duration::from_secs(1))
        .recovery_grace(GRACE)
        .connect()
        .await
        .unwrap();
    let service = ServiceName::new(SERVICE).unwrap();
    assert_eq!(resolver.resolve(&service).await.unwrap().len(), 2);
    server.restart();
    let restarted = Instant::now();
    read_since(&resolver, restarted).await;
    let listed = cached_addrs(&resolver, SERVICE).unwrap_or_default();
    assert_eq!(listed.len(), 2, "kept for the grace: {listed:?}");
}
