//! The resolver against a real, private redis-server (tests/support).

mod support;

use std::time::Duration;

use redis_discovery::resolver::{RedisResolver, Resolve, ResolverBuilder, Snapshot};
use redis_discovery::{
    Instance, KeySchema, RedisRegistry, Registration, ResolveError, ServiceName, ValidationError,
};
use support::{cached_addrs, eventually, init_tracing, LogCapture, RedisServer, DEADLINE};
use tokio::time::Instant;

/// A resolver whose periodic refresh will not happen during a test, so
/// whatever it sees came from events, reconnects or the first read.
fn no_refresh(server: &RedisServer) -> ResolverBuilder {
    RedisResolver::builder(server.url()).refresh_interval(Duration::from_secs(60))
}

async fn registry(server: &RedisServer) -> RedisRegistry {
    RedisRegistry::builder(server.url())
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("registry connects")
}

fn name(s: &str) -> ServiceName {
    ServiceName::new(s).expect("valid name")
}

fn instance(addr: &str) -> Instance {
    Instance::new(addr).expect("valid address")
}

fn addrs(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .instances()
        .iter()
        .map(|i| i.addr().to_owned())
        .collect()
}

/// Redis `TIME` in ms since the epoch.
fn redis_now_ms(server: &RedisServer) -> i64 {
    let (secs, micros): (i64, i64) = server.cmd(&["TIME"]);
    secs * 1000 + micros / 1000
}

/// Writes an entry by hand, with a lease ending `lease_ms` from now
/// (negative: already expired), publishing nothing.
fn write_raw(server: &RedisServer, service: &str, field: &str, value: &str, lease_ms: i64) {
    let deadline = (redis_now_ms(server) + lease_ms).to_string();
    server.cmd::<()>(&["HSET", &format!("sd:{{{service}}}:instances"), field, value]);
    server.cmd::<()>(&[
        "ZADD",
        &format!("sd:{{{service}}}:leases"),
        &deadline,
        field,
    ]);
}

fn numsub(server: &RedisServer, channel: &str) -> i64 {
    let (_, n): (String, i64) = server.cmd(&["PUBSUB", "NUMSUB", channel]);
    n
}

/// Creates a Redis user that may only read the `sd:*` keys (and subscribe
/// to their channels if `channels`); returns the server's URL as that user.
fn read_only_user(server: &RedisServer, user: &str, channels: bool) -> String {
    let mut acl = vec![
        "ACL",
        "SETUSER",
        user,
        "on",
        ">pw",
        "resetkeys",
        "~sd:*",
        "resetchannels",
    ];
    if channels {
        acl.push("&sd:*");
    }
    acl.extend([
        "-@all",
        "+@read",
        "+time",
        "+evalsha_ro",
        "+eval_ro",
        "+subscribe",
        "+unsubscribe",
        "+ping",
    ]);
    server.cmd::<()>(&acl);
    server
        .url()
        .replace("redis://", &format!("redis://{user}:pw@"))
}

fn read_calls(server: &RedisServer) -> u64 {
    server.calls("evalsha_ro") + server.calls("eval_ro")
}

#[tokio::test]
async fn resolves_registered_instances_with_weights_and_tags() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let mut held: Vec<Registration> = Vec::new();
    for (addr, weight, zone) in [
        ("10.0.0.1:80", 10, "a"),
        ("10.0.0.2:80", 20, "b"),
        ("[::1]:8080", 0, "a"),
    ] {
        let i = instance(addr)
            .with_weight(weight)
            .with_tag("zone", zone)
            .unwrap();
        held.push(registry.register("orders", i).await.unwrap());
    }
    // An entry whose lease ran out a minute ago, never pruned.
    write_raw(
        &server,
        "orders",
        "10.0.0.9:80",
        r#"{"service_name":"orders","addr":"10.0.0.9:80","weight":10,"tags":null}"#,
        -60_000,
    );
    let resolver = no_refresh(&server).connect().await.unwrap();
    let snapshot = resolver.resolve(&name("orders")).await.unwrap();
    assert_eq!(
        addrs(&snapshot),
        ["10.0.0.1:80", "10.0.0.2:80", "[::1]:8080"]
    );
    let by_addr = |a: &str| {
        snapshot
            .instances()
            .iter()
            .find(|i| i.addr() == a)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_addr("10.0.0.2:80").weight(), 20);
    assert_eq!(by_addr("10.0.0.2:80").tag("zone"), Some("b"));
    assert_eq!(by_addr("[::1]:8080").weight(), 0, "drained is still listed");
    assert_eq!(snapshot.service().as_str(), "orders");
    // Same answer from the hot path, same snapshot.
    let cached = resolver.cached("orders").unwrap();
    assert!(Snapshot::ptr_eq(&snapshot, &cached));
    // The uncached read and the listing agree, with lease times.
    assert_eq!(
        addrs(&resolver.fetch("orders").await.unwrap()),
        addrs(&snapshot)
    );
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed.len(), 3);
    for l in &listed {
        let left = l.lease_left.expect("native leases have a deadline");
        assert!(left <= Duration::from_secs(3), "{left:?}");
    }
    assert_eq!(resolver.services().await.unwrap(), ["orders"]);
    // The expired entry is still stored: nobody pruned it, the read
    // filtered it.
    let stored: bool = server.cmd(&["HEXISTS", "sd:{orders}:instances", "10.0.0.9:80"]);
    assert!(stored);
    // A service nobody registered is a normal, empty, cached answer.
    let empty = resolver.resolve(&name("nobody")).await.unwrap();
    assert!(empty.is_empty());
    assert!(resolver.cached("nobody").unwrap().is_empty());
    // Invalid names are refused before Redis.
    assert!(matches!(
        resolver.fetch("not a name").await,
        Err(ResolveError::Invalid(_))
    ));
    drop(held);
}

#[test]
fn an_instance_whose_heartbeat_stopped_disappears_before_anything_prunes_it() {
    init_tracing();
    let server = RedisServer::start();
    // A registry on its own runtime, ended abruptly: no deregister, no
    // more heartbeats, as if the process had crashed.
    let crashed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let held = crashed.block_on(async {
        let registry = RedisRegistry::builder(url)
            .lease_ttl(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_secs(1))
            .connect()
            .await
            .unwrap();
        let a = registry
            .register("pay", instance("10.0.1.1:80"))
            .await
            .unwrap();
        let b = registry
            .register("pay", instance("10.0.1.2:80"))
            .await
            .unwrap();
        (registry, a, b)
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let resolver = no_refresh(&server).connect().await.unwrap();
        let first = resolver.fetch("pay").await.unwrap();
        assert_eq!(addrs(&first), ["10.0.1.1:80", "10.0.1.2:80"]);
        crashed.shutdown_background();
        std::mem::forget(held); // its runtime is gone: nothing to run a drop on
        eventually("the crashed instances' leases run out", || async {
            resolver
                .fetch("pay")
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await;
        let stored: i64 = server.cmd(&["HLEN", "sd:{pay}:instances"]);
        assert_eq!(stored, 2, "still stored: filtered by lease, not pruned");
        // Only a clean deregister of the last instance removes the name.
        assert_eq!(
            resolver.services().await.unwrap(),
            ["pay"],
            "a known service, with no live instance"
        );
        // Once its keys expire (a minute after the last lease; deleted here
        // as the expiry would), it is no longer listed, though still in the set.
        server.cmd::<()>(&["DEL", "sd:{pay}:instances", "sd:{pay}:leases"]);
        assert!(resolver.services().await.unwrap().is_empty());
        let members: Vec<String> = server.cmd(&["SMEMBERS", "sd:services"]);
        assert_eq!(members, ["pay"]);
    });
}

#[tokio::test]
async fn registrations_and_deregistrations_are_pushed_within_a_second() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _one = registry
        .register("push", instance("10.0.2.1:80"))
        .await
        .unwrap();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let snapshot = resolver.resolve(&name("push")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.2.1:80"]);

    let started = Instant::now();
    let two = registry
        .register("push", instance("10.0.2.2:80"))
        .await
        .unwrap();
    until(|| cached_addrs(&resolver, "push").is_some_and(|a| a.len() == 2)).await;
    let latency = started.elapsed();
    eprintln!("register visible through the cache {latency:?} after the call started");
    assert!(
        latency < Duration::from_secs(1),
        "register took {latency:?}"
    );

    let started = Instant::now();
    two.deregister().await.unwrap();
    until(|| cached_addrs(&resolver, "push").is_some_and(|a| a.len() == 1)).await;
    let latency = started.elapsed();
    eprintln!("deregister visible through the cache {latency:?} after the call started");
    assert!(
        latency < Duration::from_secs(1),
        "deregister took {latency:?}"
    );
    assert_eq!(cached_addrs(&resolver, "push").unwrap(), ["10.0.2.1:80"]);
}

/// Polls `check` every millisecond until it holds.
async fn until(mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    loop {
        if check() {
            return;
        }
        if started.elapsed() > DEADLINE {
            panic!("condition not met within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn after_the_event_connection_drops_it_resubscribes_and_refreshes() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _one = registry
        .register("resync", instance("10.0.3.1:80"))
        .await
        .unwrap();
    let resolver = no_refresh(&server).connect().await.unwrap();
    resolver.resolve(&name("resync")).await.unwrap();
    let channel = "sd:{resync}:events";
    eventually("subscribed once found with instances", || async {
        (numsub(&server, channel) == 1).then_some(())
    })
    .await;

    // A change whose event is lost: written by hand, nothing published.
    write_raw(
        &server,
        "resync",
        "10.0.3.2:80",
        r#"{"service_name":"resync","addr":"10.0.3.2:80","weight":10,"tags":null}"#,
        60_000,
    );
    let killed: i64 = server.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, 1, "one event connection per resolver");
    // And one registered while it may still be down.
    let _three = registry
        .register("resync", instance("10.0.3.3:80"))
        .await
        .unwrap();
    eventually("both changes after the reconnect", || async {
        let seen = cached_addrs(&resolver, "resync")?;
        (seen == ["10.0.3.1:80", "10.0.3.2:80", "10.0.3.3:80"]).then_some(())
    })
    .await;
    eventually("resubscribed", || async {
        (numsub(&server, channel) == 1).then_some(())
    })
    .await;
    // Events flow again.
    let _four = registry
        .register("resync", instance("10.0.3.4:80"))
        .await
        .unwrap();
    eventually("an event after the reconnect", || async {
        (cached_addrs(&resolver, "resync")?.len() == 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_outage_serves_the_last_instances_then_recovers() {
    init_tracing();
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("outage", instance("10.0.4.1:80"))
        .await
        .unwrap();
    let _b = registry
        .register("outage", instance("10.0.4.2:80"))
        .await
        .unwrap();
    let refresh = Duration::from_secs(1);
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(refresh)
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let service = name("outage");
    let before = resolver.resolve(&service).await.unwrap();
    assert_eq!(addrs(&before), ["10.0.4.1:80", "10.0.4.2:80"]);

    server.stop();
    let stopped = Instant::now();
    // For the whole outage (three refresh intervals) both paths keep
    // answering with the last instances, older and older.
    let mut last_age = Duration::ZERO;
    while stopped.elapsed() < refresh * 3 {
        let cached = resolver.cached("outage").expect("still cached");
        assert_eq!(addrs(&cached), ["10.0.4.1:80", "10.0.4.2:80"]);
        assert!(cached.age() >= last_age);
        last_age = cached.age();
        let resolved = resolver.resolve(&service).await.expect("no error");
        assert_eq!(addrs(&resolved), addrs(&cached));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last_age >= refresh * 2, "age grew to {last_age:?}");
    eprintln!("age after {:?} of outage: {last_age:?}", stopped.elapsed());

    server.restart(); // empty: the registry's heartbeats re-create entries
    let restarted = Instant::now();
    let _c = eventually("the registry reconnects", || async {
        registry
            .register("outage", instance("10.0.4.3:80"))
            .await
            .ok()
    })
    .await;
    eventually("fresh data after the restart", || async {
        let snapshot = resolver.cached("outage")?;
        (addrs(&snapshot) == ["10.0.4.1:80", "10.0.4.2:80", "10.0.4.3:80"]
            && snapshot.read_at() > restarted)
            .then_some(())
    })
    .await;
    eprintln!("fresh again {:?} after the restart", restarted.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_resolves_share_one_read() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("flight", instance("10.0.5.1:80"))
        .await
        .unwrap();
    let resolver = no_refresh(&server).connect().await.unwrap();
    // Load the script into the script cache first (EVALSHA_RO then
    // EVAL_RO on NOSCRIPT), so the count below is of reads only.
    resolver.fetch("warm-up").await.unwrap();
    let before = read_calls(&server);

    let service = name("flight");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (resolver, service) = (resolver.clone(), service.clone());
            tokio::spawn(async move { resolver.resolve(&service).await })
        })
        .collect();
    let mut snapshots = Vec::new();
    for task in tasks {
        snapshots.push(task.await.unwrap().unwrap());
    }
    assert!(snapshots.iter().all(|s| Snapshot::ptr_eq(s, &snapshots[0])));
    assert_eq!(addrs(&snapshots[0]), ["10.0.5.1:80"]);
    // One read for 1000 callers; then, found with instances, the service
    // is subscribed, and read once more after the confirmation.
    eventually("the read after the subscription", || async {
        (read_calls(&server) - before >= 2).then_some(())
    })
    .await;
    assert_eq!(numsub(&server, "sd:{flight}:events"), 1);
    assert_eq!(read_calls(&server) - before, 2, "one read for 1000 callers");
}

#[tokio::test(flavor = "current_thread")]
async fn corrupt_entries_are_skipped_and_logged() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _good = registry
        .register("messy", instance("10.0.6.1:80").with_weight(5))
        .await
        .unwrap();
    let huge = format!(
        r#"{{"service_name":"messy","addr":"10.0.6.5:80","weight":1,"tags":{{"x":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    let corrupt = [
        ("10.0.6.2:80", "not json".to_owned()),
        (
            "bad-address",
            r#"{"service_name":"messy","addr":"bad-address","weight":1}"#.to_owned(),
        ),
        (
            "10.0.6.3:80",
            r#"{"service_name":"messy","addr":"10.0.6.3:80","weight":-1}"#.to_owned(),
        ),
        (
            "10.0.6.4:80",
            r#"{"service_name":"messy","addr":"10.0.6.4:80","weight":"heavy"}"#.to_owned(),
        ),
        ("10.0.6.5:80", huge),
    ];
    for (field, value) in &corrupt {
        write_raw(&server, "messy", field, value, 60_000);
    }
    let resolver = no_refresh(&server).connect().await.unwrap();

    let logs = LogCapture::default();
    let subscriber = logs.subscriber(tracing::Level::WARN, false);
    let snapshot = {
        // The read runs on this (current-thread) runtime's thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        resolver.resolve(&name("messy")).await.unwrap()
    };
    assert_eq!(addrs(&snapshot), ["10.0.6.1:80"]);
    assert_eq!(snapshot.instances()[0].weight(), 5);

    let logs = logs.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("skipping a corrupt registry entry"))
        .collect();
    assert_eq!(warnings.len(), corrupt.len(), "{logs}");
    for (field, _) in &corrupt {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(field) && w.contains("service=messy")),
            "no warning for {field}: {logs}"
        );
    }
    assert!(logs.len() < 10_000, "the 1 MiB value is not logged");
}

#[tokio::test]
async fn a_user_that_may_not_subscribe_is_told_once_and_served_by_refresh() {
    init_tracing();
    let server = RedisServer::start();
    // Reads allowed, but no event channel.
    let url = read_only_user(&server, "quiet", false);
    let registry = registry(&server).await;
    let _a = registry
        .register("quiet", instance("10.0.8.1:80"))
        .await
        .unwrap();
    let logs = LogCapture::default();
    // A current-thread runtime: every task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = RedisResolver::builder(url)
        .refresh_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&name("quiet")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.8.1:80"]);
    let _b = registry
        .register("quiet", instance("10.0.8.2:80"))
        .await
        .unwrap();
    eventually("the periodic refresh to bring the new instance", || async {
        (cached_addrs(&resolver, "quiet")?.len() == 2).then_some(())
    })
    .await;
    let text = logs.text();
    assert_eq!(text.matches("may not subscribe").count(), 1, "{text}");
    assert!(text.contains("&sd:*"), "{text}");
    assert!(!text.contains("event connection lost"), "{text}");
}

#[tokio::test]
async fn dropping_the_resolver_ends_its_tasks_and_closes_its_connections() {
    init_tracing();
    let server = RedisServer::start();
    eventually("no other client", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
    let resolver = no_refresh(&server).connect().await.unwrap();
    let watcher = resolver.clone();
    let mut updates = watcher.watch("dropped").await.unwrap();
    assert!(updates.borrow_and_update().is_empty());
    eventually("two connections: reads and events (subscribed)", || async {
        let clients = server.clients();
        let subscribed = clients.iter().filter(|c| c.contains("sub=1")).count();
        (clients.len() == 2 && subscribed == 1).then_some(())
    })
    .await;
    drop(resolver);
    assert_eq!(numsub(&server, "sd:{dropped}:events"), 1, "a clone lives");
    drop(watcher);
    eventually("the connections close", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
    assert!(
        updates.changed().await.is_err(),
        "watchers see the end of the resolver"
    );
}

#[tokio::test]
async fn shutdown_stops_every_clone() {
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let clone = resolver.clone();
    resolver.resolve(&name("x")).await.unwrap();
    resolver.shutdown().await;
    assert!(clone.cached("x").is_none());
    assert!(matches!(
        clone.resolve(&name("x")).await,
        Err(ResolveError::Shutdown)
    ));
    eventually("the connections close", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_watchers_while_a_clone_lives() {
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let clone = resolver.clone();
    let mut updates = resolver.watch("watched").await.unwrap();
    resolver.shutdown().await;
    let changed = tokio::time::timeout(DEADLINE, updates.changed()).await;
    assert!(
        matches!(changed, Ok(Err(_))),
        "watchers see the shutdown at once, not when the last clone goes"
    );
    drop(clone);
}

#[tokio::test]
async fn idle_services_are_dropped_and_unsubscribed_unless_watched() {
    init_tracing();
    let server = RedisServer::start();
    // Long enough that a stalled test thread does not see "idle" dropped
    // before it checked the subscription.
    let resolver = no_refresh(&server)
        .idle_expiry(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let registry = registry(&server).await;
    let _idle = registry
        .register("idle", instance("10.0.7.9:80"))
        .await
        .unwrap();
    resolver.resolve(&name("idle")).await.unwrap();
    // Watched with no instance: subscribed all the same.
    let mut watched = resolver.watch("watched").await.unwrap();
    eventually("both subscribed", || async {
        let both = numsub(&server, "sd:{idle}:events") + numsub(&server, "sd:{watched}:events");
        (both == 2).then_some(())
    })
    .await;
    eventually("the idle service is dropped and unsubscribed", || async {
        (resolver.cached_services() == 1 && numsub(&server, "sd:{idle}:events") == 0).then_some(())
    })
    .await;
    assert_eq!(numsub(&server, "sd:{watched}:events"), 1);
    // The watched one stays, and keeps getting changes.
    let _w = registry
        .register("watched", instance("10.0.7.1:80"))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, watched.changed())
        .await
        .expect("a change within the deadline")
        .unwrap();
    assert_eq!(addrs(&watched.borrow_and_update()), ["10.0.7.1:80"]);
    drop(watched);
    eventually("dropped once unwatched", || async {
        (resolver.cached_services() == 0 && numsub(&server, "sd:{watched}:events") == 0)
            .then_some(())
    })
    .await;
    // Asked for again: cached and subscribed again.
    let again = resolver.resolve(&name("watched")).await.unwrap();
    assert_eq!(addrs(&again), ["10.0.7.1:80"]);
    eventually("subscribed again", || async {
        (numsub(&server, "sd:{watched}:events") == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn too_old_snapshots_are_refused_with_max_staleness() {
    init_tracing();
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("stale", instance("10.0.8.1:80"))
        .await
        .unwrap();
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(500))
        .max_staleness(Duration::from_secs(1))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let service = name("stale");
    resolver.resolve(&service).await.unwrap();
    server.stop();
    eventually("the snapshot goes stale", || async {
        resolver.cached("stale").is_none().then_some(())
    })
    .await;
    match resolver.resolve(&service).await {
        Err(ResolveError::Stale { service, age, max }) => {
            assert_eq!(service, "stale");
            assert!(age > max, "{age:?} {max:?}");
            assert_eq!(max, Duration::from_secs(1));
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    server.restart();
    eventually("fresh again", || async {
        let s = resolver.resolve(&service).await.ok()?;
        (addrs(&s) == ["10.0.8.1:80"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_read_only_user_is_enough() {
    init_tracing();
    let server = RedisServer::start();
    let url = read_only_user(&server, "reader", true);
    let registry = registry(&server).await;
    let _a = registry
        .register("ro", instance("10.0.9.1:80"))
        .await
        .unwrap();
    let resolver = RedisResolver::builder(url.as_str())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&name("ro")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.9.1:80"]);
    assert_eq!(resolver.services().await.unwrap(), ["ro"]);
    assert_eq!(resolver.list("ro").await.unwrap().len(), 1);
    let _b = registry
        .register("ro", instance("10.0.9.2:80"))
        .await
        .unwrap();
    eventually("events reach the read-only user", || async {
        (cached_addrs(&resolver, "ro")?.len() == 2).then_some(())
    })
    .await;
    // And it really cannot write.
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let write: redis::RedisResult<()> = redis::cmd("HSET")
        .arg("sd:{ro}:instances")
        .arg("x")
        .arg("y")
        .query_async(&mut conn)
        .await;
    assert!(write.is_err());
}

#[tokio::test]
async fn the_hertz_schema_refreshes_periodically() {
    init_tracing();
    let server = RedisServer::start();
    let registry = RedisRegistry::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let _a = registry
        .register("hertz.demo", instance("10.0.10.1:80"))
        .await
        .unwrap();
    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .refresh_interval(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&name("hertz.demo")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.10.1:80"]);
    assert!(
        server
            .clients()
            .iter()
            .all(|c| !c.contains("flags=P") && !c.contains("sub=1")),
        "no event connection with the Hertz schema"
    );
    let _b = registry
        .register("hertz.demo", instance("10.0.10.2:80"))
        .await
        .unwrap();
    eventually("seen at a refresh", || async {
        (cached_addrs(&resolver, "hertz.demo")?.len() == 2).then_some(())
    })
    .await;
    assert_eq!(resolver.services().await.unwrap(), ["hertz.demo"]);
}

#[tokio::test]
async fn bad_options_are_refused_before_connecting() {
    // Nothing listens on port 1: a connection attempt would fail with
    // Connect, so Invalid proves nothing was tried.
    let b = || RedisResolver::builder("redis://127.0.0.1:1");
    for (builder, what) in [
        (b().refresh_interval(Duration::ZERO), "refresh interval"),
        (b().idle_expiry(Duration::ZERO), "idle expiry"),
        (b().max_staleness(Duration::from_secs(5)), "max staleness"),
        (b().command_timeout(Duration::ZERO), "command timeout"),
        (b().prefix("has space"), "prefix"),
        // Too long to add to an instant: refused, not a panic in a task.
        (b().refresh_interval(Duration::MAX), "refresh interval"),
        (
            b().refresh_interval(Duration::from_secs(2 * 24 * 3600)),
            "at most",
        ),
        (b().idle_expiry(Duration::MAX), "idle expiry"),
        (b().max_staleness(Duration::MAX), "max staleness"),
        (b().connect_timeout(Duration::MAX), "connect timeout"),
        (b().negative_ttl(Duration::ZERO), "negative TTL"),
        (b().negative_ttl(Duration::MAX), "negative TTL"),
        (b().max_services(0), "max services"),
        (b().max_services(usize::MAX), "max services"),
        (
            b().command_timeout(Duration::from_secs(2 * 3600)),
            "command timeout",
        ),
    ] {
        match builder.connect().await {
            Err(ResolveError::Invalid(ValidationError::Config(message))) => {
                assert!(message.contains(what), "{message}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(matches!(
        RedisResolver::connect("http://127.0.0.1").await,
        Err(ResolveError::Invalid(ValidationError::RedisUrl { .. }))
    ));
    match b()
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    {
        Err(e @ ResolveError::Connect { .. }) => {
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_dropped_with_its_runtime_answers_its_callers() {
    init_tracing();
    let server = RedisServer::start();
    // The resolver's background tasks and reads run on the runtime it was
    // created on; that runtime goes away while the resolver lives on.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resolver = first
        .block_on(no_refresh(&server).connect())
        .expect("connects");
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        for attempt in 0..2 {
            // Used to wait forever: the read task was dropped unpolled and
            // the service stayed marked as being read.
            let result = tokio::time::timeout(DEADLINE, resolver.resolve(&name("orphan")))
                .await
                .expect("an answer, not a hang");
            assert!(
                matches!(result, Err(ResolveError::Interrupted { ref service }) if service == "orphan"),
                "attempt {attempt}: {result:?}"
            );
        }
    });
}

/// Stops a redis-server process (SIGSTOP): connections stay open and
/// nothing answers, like a network blackhole. Resumed when dropped.
struct Frozen(String);

impl Frozen {
    fn new(server: &RedisServer) -> Frozen {
        let info: String = server.cmd(&["INFO", "server"]);
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .expect("INFO server has process_id")
            .trim()
            .to_owned();
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

#[tokio::test]
async fn a_miss_during_a_blackhole_fails_fast_instead_of_queueing_behind_refreshes() {
    init_tracing();
    let server = RedisServer::start();
    let command = Duration::from_millis(300);
    // A long connect timeout makes the caller's overall limit (connect +
    // 2 x command = 4.6 s) far longer than one read of its own (at most
    // 2 x command = 0.6 s), so the error says which one ended the wait.
    let connect = Duration::from_secs(4);
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(500))
        .command_timeout(command)
        .connect_timeout(connect)
        .connect()
        .await
        .unwrap();
    // Many cached services: once Redis stops answering, each periodic
    // refresh queues a read per service, each taking a command timeout.
    let services: Vec<ServiceName> = (0..1000).map(|i| name(&format!("svc-{i}"))).collect();
    let reads = services.iter().map(|s| resolver.resolve(s));
    for result in futures_util::future::join_all(reads).await {
        result.expect("resolves while Redis is up");
    }
    let frozen = Frozen::new(&server);
    // Let the refreshes pile up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Cached services still answer at once.
    assert!(resolver.resolve(&services[0]).await.is_ok());
    // A miss gets its own read (subscription wait and read, each bounded
    // by the command timeout) and fails, rather than waiting in line
    // behind hundreds of background reads until the overall limit.
    let asked = Instant::now();
    let cold = tokio::time::timeout(DEADLINE, resolver.resolve(&name("cold")))
        .await
        .expect("an answer, not a hang");
    eprintln!(
        "a miss during the blackhole failed after {:?}: {cold:?}",
        asked.elapsed()
    );
    match cold {
        Err(ResolveError::Timeout { timeout, .. }) => assert_eq!(
            timeout, command,
            "the read's own command timeout, not the caller's overall limit"
        ),
        Err(ResolveError::Redis { .. }) => {}
        other => panic!("expected a failed read, got {other:?}"),
    }
    drop(frozen);
    eventually("Redis answers again", || async {
        resolver.resolve(&name("cold")).await.ok()
    })
    .await;
}

#[tokio::test]
async fn after_a_flushall_instances_stay_until_their_leases_run_out_or_an_event_removes_them() {
    init_tracing();
    let server = RedisServer::start();
    let all = ["10.0.11.1:80", "10.0.11.2:80", "10.0.11.3:80"];
    let value = |addr: &str| {
        format!(r#"{{"service_name":"flush","addr":"{addr}","weight":10,"tags":null}}"#)
    };
    let event = |kind: &str, addr: &str| {
        let message = format!(r#"{{"event":"{kind}","addr":"{addr}"}}"#);
        server.cmd::<i64>(&["PUBLISH", "sd:{flush}:events", &message]);
    };
    // Leases written by hand, so nothing heartbeats them back.
    let lease = Duration::from_secs(6);
    let written = Instant::now();
    for addr in all {
        write_raw(
            &server,
            "flush",
            addr,
            &value(addr),
            lease.as_millis() as i64,
        );
    }
    // No periodic refresh: only events, and the lease deadlines, drive it.
    let resolver = no_refresh(&server).connect().await.unwrap();
    let first = resolver.resolve(&name("flush")).await.unwrap();
    let resolved = Instant::now();
    assert_eq!(addrs(&first), all);
    // The resolver counts a lease from the start of its read, with the
    // time left by the Redis clock: its deadlines are no earlier than
    // this (a margin for clock rounding).
    let leases_last_until = written + lease - (resolved - written) - Duration::from_millis(200);

    // The registry is lost; one instance comes back and says so.
    server.flushall();
    write_raw(&server, "flush", all[0], &value(all[0]), 60_000);
    let published = Instant::now();
    event("register", all[0]);
    let after = eventually("a read after the register event", || async {
        let snapshot = resolver.cached("flush")?;
        (snapshot.read_at() >= published).then_some(snapshot)
    })
    .await;
    assert_eq!(
        addrs(&resolver.fetch("flush").await.unwrap()),
        [all[0]],
        "Redis lists one"
    );
    if Instant::now() < leases_last_until {
        assert_eq!(addrs(&after), all, "the cache keeps the other two");
    }

    // An event removes one of the kept instances at once.
    event("deregister", all[1]);
    let after = eventually("the deregistered instance leaves", || async {
        let seen = cached_addrs(&resolver, "flush")?;
        (!seen.iter().any(|a| a == all[1])).then_some(seen)
    })
    .await;
    if Instant::now() < leases_last_until {
        assert_eq!(after, [all[0], all[2]], "the other one is still kept");
    }

    // The last kept lease runs out: only the live instance is left,
    // without any event or periodic refresh.
    eventually(
        "the kept instance leaves when its lease runs out",
        || async { (cached_addrs(&resolver, "flush")? == [all[0]]).then_some(()) },
    )
    .await;
    assert!(
        Instant::now() >= leases_last_until,
        "an instance left before its last known lease ran out"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_first_read_does_not_claim_to_serve_instances() {
    let mut server = RedisServer::start();
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    server.stop();
    let logs = LogCapture::default();
    let subscriber = logs.subscriber(tracing::Level::WARN, false);
    let result = {
        // The read runs on this (current-thread) runtime's thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        resolver.resolve(&name("never-read")).await
    };
    assert!(result.is_err(), "{result:?}");
    let logs = logs.text();
    assert!(
        logs.contains("no instances known yet") && logs.contains("never-read"),
        "{logs}"
    );
    assert!(!logs.contains("serving the last known instances"), "{logs}");
}

/// Names of the channels the server has subscribers for.
fn subscribed_channels(server: &RedisServer) -> Vec<String> {
    server.cmd(&["PUBSUB", "CHANNELS"])
}

/// Regression (issue 11, item 7): every distinct unknown name used to cost
/// a cache entry and a pub/sub channel, both kept for the idle expiry, so
/// request input (a layer with `discover_all`) grew memory and Redis
/// subscriptions without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_are_remembered_briefly_unsubscribed_and_the_cache_is_capped() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _real = registry
        .register("real", instance("10.0.12.1:80"))
        .await
        .unwrap();
    let max_services = 500;
    let resolver = no_refresh(&server)
        .negative_ttl(Duration::from_secs(1))
        .max_services(max_services)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        addrs(&resolver.resolve(&name("real")).await.unwrap()),
        ["10.0.12.1:80"]
    );
    eventually("the real service subscribed", || async {
        (numsub(&server, "sd:{real}:events") == 1).then_some(())
    })
    .await;

    // 3000 distinct names nobody registered, 100 at a time.
    for batch in 0..30 {
        let lookups = (0..100).map(|i| {
            let resolver = resolver.clone();
            let service = name(&format!("unknown-{}", batch * 100 + i));
            async move { resolver.resolve(&service).await }
        });
        for found in futures_util::future::join_all(lookups).await {
            assert!(found.unwrap().is_empty());
        }
        let cached = resolver.cached_services();
        assert!(cached <= max_services, "{cached} cached services");
    }
    let channels = subscribed_channels(&server);
    assert!(
        channels.len() < 100,
        "{} channels subscribed",
        channels.len()
    );
    assert_eq!(
        channels,
        ["sd:{real}:events"],
        "only the service with instances"
    );
    assert_eq!(
        cached_addrs(&resolver, "real").as_deref(),
        Some(&["10.0.12.1:80".to_owned()][..]),
        "unknown names evicted first: the real service stays"
    );

    // Negative entries are served from memory for the negative TTL only.
    let late = name("unknown-2999");
    assert!(resolver.resolve(&late).await.unwrap().is_empty());
    let _late = registry
        .register("unknown-2999", instance("10.0.12.2:80"))
        .await
        .unwrap();
    eventually(
        "an instance registered later is found after the negative TTL",
        || async {
            let snapshot = resolver.resolve(&late).await.ok()?;
            (addrs(&snapshot) == ["10.0.12.2:80"]).then_some(())
        },
    )
    .await;
    // Found with instances: subscribed from then on.
    eventually("the late service subscribed", || async {
        (numsub(&server, "sd:{unknown-2999}:events") == 1).then_some(())
    })
    .await;
    eventually("negative entries expire", || async {
        (resolver.cached_services() == 2).then_some(())
    })
    .await;
    assert_eq!(subscribed_channels(&server).len(), 2);
}

/// Regression (issue 11, item 9): one server without read-only scripts
/// (Redis 6, or `EVALSHA_RO` renamed away) used to switch every connection
/// in the process to `EVALSHA`, which a read-only ACL user on Redis 7 may
/// not run. The fallback is decided per server.
#[tokio::test]
async fn the_read_only_script_fallback_is_decided_per_server() {
    init_tracing();
    let old = RedisServer::start_with(&[
        "--rename-command",
        "EVALSHA_RO",
        "",
        "--rename-command",
        "EVAL_RO",
        "",
    ]);
    let current = RedisServer::start();
    for server in [&old, &current] {
        // By hand: a registry's heartbeats would run EVALSHA.
        let entry = r#"{"service_name":"ro","addr":"10.0.13.1:80","weight":10,"tags":null}"#;
        write_raw(server, "ro", "10.0.13.1:80", entry, 600_000);
    }
    let reader = read_only_user(&current, "reader", true);
    let on_old = no_refresh(&old).connect().await.unwrap();
    let on_current = RedisResolver::builder(reader.as_str())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    for _ in 0..2 {
        let fetched = on_old
            .fetch("ro")
            .await
            .expect("plain EVALSHA on the old server");
        assert_eq!(addrs(&fetched), ["10.0.13.1:80"]);
        let fetched = on_current
            .fetch("ro")
            .await
            .expect("EVALSHA_RO for the read-only user on the current server");
        assert_eq!(addrs(&fetched), ["10.0.13.1:80"]);
    }
    assert!(old.calls("evalsha") + old.calls("eval") >= 2);
    assert_eq!(
        current.calls("evalsha"),
        0,
        "never tried on the current server"
    );
    // A read refused for another reason is reported with its kind.
    current.cmd::<()>(&["ACL", "SETUSER", "reader", "-evalsha_ro", "-eval_ro"]);
    match on_current.fetch("ro").await {
        Err(ResolveError::Redis {
            service,
            source: error,
        }) => {
            assert_eq!(service, "ro");
            assert_eq!(error.code(), Some("NOPERM"), "{error}");
        }
        other => panic!("expected a NOPERM Redis error, got {other:?}"),
    }
}

/// Writes one live instance of `service` by hand (no registry, so no
/// heartbeat traffic), at `addr`.
fn write_instance(server: &RedisServer, service: &str, addr: &str) {
    let entry =
        format!(r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":null}}"#);
    write_raw(server, service, addr, &entry, 600_000);
}

/// Past `max_services` the least recently used services are evicted, and
/// unsubscribed: neither the cache nor the subscriptions outgrow the cap,
/// and a service in use stays.
#[tokio::test]
async fn past_the_cap_the_least_recently_used_services_are_evicted_and_unsubscribed() {
    init_tracing();
    let server = RedisServer::start();
    for n in 0..40 {
        write_instance(&server, &format!("svc-{n}"), "10.0.14.1:80");
    }
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .connect()
        .await
        .unwrap();
    for n in 0..40 {
        let snapshot = resolver.resolve(&name(&format!("svc-{n}"))).await.unwrap();
        assert_eq!(snapshot.len(), 1);
        assert!(
            resolver.cached("svc-0").is_some(),
            "the service in use stays ({n}, {})",
            resolver.cached_services()
        );
        assert!(resolver.cached_services() <= max_services);
    }
    let channels = eventually("evicted services unsubscribed", || async {
        let channels = subscribed_channels(&server);
        (channels.len() == resolver.cached_services()).then_some(channels)
    })
    .await;
    assert!(channels.len() <= max_services, "{channels:?}");
    assert!(channels.contains(&"sd:{svc-0}:events".to_owned()));
    assert!(channels.contains(&"sd:{svc-39}:events".to_owned()));
    // An evicted service is read again when asked for.
    let again = resolver.resolve(&name("svc-1")).await.unwrap();
    assert_eq!(addrs(&again), ["10.0.14.1:80"]);
}

/// Cancel safety of `resolve`: a caller that gives up only stops waiting.
/// The read it started goes on, for the callers that joined it and, with
/// none left, to fill the cache.
#[tokio::test]
async fn a_dropped_resolve_leaves_its_read_to_the_others_and_the_cache() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "shared", "10.0.15.1:80");
    write_instance(&server, "alone", "10.0.15.2:80");
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    server.freeze();
    let (shared, alone) = (name("shared"), name("alone"));
    let give_up = Duration::from_millis(100);
    let dropped = tokio::time::timeout(give_up, resolver.resolve(&shared)).await;
    assert!(dropped.is_err(), "Redis is frozen");
    let dropped = tokio::time::timeout(give_up, resolver.resolve(&alone)).await;
    assert!(dropped.is_err(), "Redis is frozen");
    let joined = tokio::spawn({
        let resolver = resolver.clone();
        async move { resolver.resolve(&shared).await }
    });
    server.thaw();
    let snapshot = tokio::time::timeout(DEADLINE, joined)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.15.1:80"]);
    eventually("the abandoned read fills the cache", || async {
        (cached_addrs(&resolver, "alone")? == ["10.0.15.2:80"]).then_some(())
    })
    .await;
}

/// Freezes `server`, then resolves `names` distinct names (`PREFIX-N`) at
/// once, each caller giving up quickly; leaves the server frozen. Returns
/// the count of reads before the flood.
async fn flood_while_frozen(
    server: &RedisServer,
    resolver: &RedisResolver,
    prefix: &str,
    names: usize,
) -> u64 {
    resolver.fetch("warm.up").await.unwrap(); // script loaded: one call a read
    let before = read_calls(server);
    server.freeze();
    let lookups = (0..names).map(|n| {
        let resolver = resolver.clone();
        let service = name(&format!("{prefix}-{n}"));
        async move {
            let give_up = Duration::from_millis(50);
            tokio::time::timeout(give_up, resolver.resolve(&service)).await
        }
    });
    for gave_up in futures_util::future::join_all(lookups).await {
        assert!(gave_up.is_err(), "Redis is frozen");
    }
    before
}

/// Reads queue for a permit while Redis is slow. One queued for a service
/// that has since been evicted, and that no caller waits for any more, is
/// dropped instead of sent: a flood of names while Redis hangs does not
/// turn into a flood of reads, one per name, once it answers.
#[tokio::test]
async fn queued_reads_that_no_one_waits_for_and_no_cache_keeps_are_dropped() {
    init_tracing();
    let server = RedisServer::start();
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let names = 300;
    let before = flood_while_frozen(&server, &resolver, "flood", names).await;
    server.thaw();
    // A read queued behind all of them: once it is done, they have been
    // sent (those that had a permit, and those of the services still
    // cached) or dropped.
    let last = resolver.resolve(&name("last")).await.unwrap();
    assert!(last.is_empty());
    let reads = read_calls(&server) - before;
    assert!(reads < 100, "{reads} reads for {names} abandoned names");
}

/// Regression (deadlock): subscribing an entry held its shard lock and
/// then took the entry's read state, while completing a read of the same
/// entry holds its read state and then takes the shard lock to publish a
/// changed list. Subscribes now run on live entries (after a read found
/// instances, and from `watch`), so watches, resolves, refreshes, events
/// and evictions on the same services at once could hang the resolver,
/// and with it every task touching that shard.
///
/// Runs on a runtime of its own in a thread of its own, so a deadlock
/// (threads blocked on locks, timers included) fails the test instead of
/// hanging it.
#[test]
fn concurrent_watches_resolves_events_and_evictions_never_deadlock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    init_tracing();
    let server = RedisServer::start();
    let services: Vec<String> = (0..32).map(|n| format!("busy-{n}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Changes every service's list all the time, with events: every read
    // finds a new list, so its completion publishes a new snapshot.
    let writer = std::thread::spawn({
        let (stop, services) = (stop.clone(), services.clone());
        let mut conn = server.conn();
        let lease = redis_now_ms(&server) + 600_000;
        move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for service in &services {
                    n += 1;
                    let addr = format!("10.0.16.{}:{}", n % 200 + 1, 1000 + n % 50_000);
                    let entry = format!(
                        r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":null}}"#
                    );
                    let event = format!(r#"{{"event":"register","addr":"{addr}"}}"#);
                    let _: redis::RedisResult<()> = redis::pipe()
                        .hset(format!("sd:{{{service}}}:instances"), &addr, entry)
                        .ignore()
                        .zadd(format!("sd:{{{service}}}:leases"), &addr, lease)
                        .ignore()
                        .publish(format!("sd:{{{service}}}:events"), event)
                        .ignore()
                        .query(&mut conn);
                }
            }
        }
    });
    let (done, finished) = std::sync::mpsc::channel();
    let url = server.url();
    let stress = std::thread::spawn(move || {
        // More threads than cores: a thread is preempted between two
        // steps more often, which is what opens the window.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(8)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            // A small cap: services are evicted and inserted again, so
            // each is subscribed for the first time again and again.
            let resolver = RedisResolver::builder(url)
                .refresh_interval(Duration::from_millis(20))
                .max_services(8)
                .connect()
                .await
                .unwrap();
            let until = Instant::now() + Duration::from_secs(6);
            let tasks: Vec<_> = (0..64)
                .map(|task| {
                    let (resolver, services) = (resolver.clone(), services.clone());
                    tokio::spawn(async move {
                        let mut round = task;
                        while Instant::now() < until {
                            round += 1;
                            let service = &services[round % services.len()];
                            if round % 3 == 0 {
                                let watched = resolver.watch(service.as_str()).await;
                                tokio::task::yield_now().await;
                                drop(watched);
                            } else {
                                let _ = resolver.resolve(&name(service)).await;
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            // Still answering.
            let answered = resolver.resolve(&name("busy-0")).await.unwrap();
            assert!(!answered.is_empty());
        });
        let _ = done.send(());
    });
    let outcome = finished.recv_timeout(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    match outcome {
        Ok(()) => stress.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(stress.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the resolver deadlocked (or is hopelessly slow)")
        }
    }
}

/// Regression: a queued read was dropped only if no caller waited *and*
/// its service had been evicted. During a Redis stall, the first reads of
/// thousands of unknown names whose callers gave up stayed queued while
/// the cache still held the names, and once Redis answered a real
/// service's first resolve waited behind one read per name. A first read
/// nobody waits for is now dropped at its permit, cached or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_first_reads_that_no_one_waits_for_are_dropped_even_while_cached() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "real", "10.0.18.1:80");
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let names = 1000;
    let before = flood_while_frozen(&server, &resolver, "stalled", names).await;
    assert!(
        resolver.cached_services() >= names,
        "the names are still cached: {}",
        resolver.cached_services()
    );
    server.thaw();
    let real = tokio::time::timeout(DEADLINE, resolver.resolve(&name("real")))
        .await
        .expect("the real service answers")
        .unwrap();
    assert_eq!(addrs(&real), ["10.0.18.1:80"]);
    // Only the reads that had a permit when Redis froze were sent.
    let reads = read_calls(&server) - before;
    assert!(reads < 100, "{reads} reads for {names} abandoned names");
    // An abandoned name is read again when asked for.
    let again = resolver.resolve(&name("stalled-7")).await.unwrap();
    assert!(again.is_empty());
}

/// Regression (item 7: no queue fed by request input is unbounded): a
/// queued first read whose callers all gave up was only dropped once it
/// got a permit. While Redis stalls, the permits are held by hung reads,
/// so every distinct unknown name kept a task (and, through it, its
/// entry, evicted or not) until Redis answered: memory grew with the
/// request rate times the stall. Such a read is now abandoned as soon as
/// its last caller gives up.
#[tokio::test]
async fn queued_reads_end_when_their_callers_give_up_while_redis_stalls() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "real", "10.0.19.1:80");
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .command_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let names = 1000;
    flood_while_frozen(&server, &resolver, "stall", names).await;
    // Left: the reads holding a permit (32), hung on the frozen Redis.
    let bound = baseline + 32 + 8;
    eventually(
        "the queued reads end while Redis is still frozen",
        || async {
            let alive = metrics.num_alive_tasks();
            let cached = resolver.cached_services();
            (alive <= bound && cached <= max_services).then_some(())
        },
    )
    .await;
    server.thaw();
    let real = tokio::time::timeout(DEADLINE, resolver.resolve(&name("real")))
        .await
        .expect("the real service answers")
        .unwrap();
    assert_eq!(addrs(&real), ["10.0.19.1:80"]);
}
