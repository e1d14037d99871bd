//! The resolver against a real, private redis-server (tests/support).

#[path = "../support/mod.rs"]
mod support;

mod access;
mod bounds;
mod entries;
mod events;
mod lifecycle;
mod outage;

use std::time::Duration;

use redis_discovery::resolver::{RedisResolver, Resolve, ResolverBuilder, Snapshot};
use redis_discovery::{
    Instance, KeySchema, RedisRegistry, Registration, ResolveError, ServiceName, ValidationError,
};
use support::{
    cached_addrs, eventually, init_tracing, registry, LogCapture, RedisServer, DEADLINE,
};
use tokio::time::Instant;

/// A resolver whose periodic refresh will not happen during a test, so
/// whatever it sees came from events, reconnects or the first read.
fn no_refresh(server: &RedisServer) -> ResolverBuilder {
    RedisResolver::builder(server.url()).refresh_interval(Duration::from_secs(60))
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

/// Names of the channels the server has subscribers for.
fn subscribed_channels(server: &RedisServer) -> Vec<String> {
    server.cmd(&["PUBSUB", "CHANNELS"])
}

/// Writes one live instance of `service` by hand (no registry, so no
/// heartbeat traffic), at `addr`.
fn write_instance(server: &RedisServer, service: &str, addr: &str) {
    let entry =
        format!(r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":null}}"#);
    write_raw(server, service, addr, &entry, 600_000);
}
