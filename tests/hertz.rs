//! The Hertz-compatible key schema, checked byte for byte against what
//! hertz-contrib's Redis registry writes and reads.

mod support;

use std::time::Duration;

use redis_discovery::{Instance, KeySchema, RedisRegistry, Tags};
use support::{eventually, RedisServer};

const KEY: &str = "/hertz/hertz.test.demo/server";

/// Our registry in the Hertz schema writes what a Hertz resolver reads:
/// key, field, JSON field names and types, and a 60 s expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_writes_what_hertz_reads() {
    let server = RedisServer::start();
    let registry = RedisRegistry::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    assert_eq!(registry.lease_ttl(), Duration::from_secs(60));
    assert_eq!(registry.heartbeat_interval(), Duration::from_secs(30));

    let plain = registry
        .register("hertz.test.demo", Instance::new("127.0.0.1:8888").unwrap())
        .await
        .unwrap();
    let tagged = registry
        .register(
            "hertz.test.demo",
            Instance::new("127.0.0.1:8889")
                .unwrap()
                .with_weight(5)
                .with_tag("zone", "a")
                .unwrap(),
        )
        .await
        .unwrap();

    // Only Hertz's key: no native keys, no services set.
    assert_eq!(server.keys(), vec![KEY]);
    assert_eq!(server.cmd::<String>(&["TYPE", KEY]), "hash");
    let ttl: i64 = server.cmd(&["TTL", KEY]);
    assert!((55..=60).contains(&ttl), "TTL {ttl}");

    let value: String = server.cmd(&["HGET", KEY, "127.0.0.1:8888"]);
    assert_eq!(
        value,
        r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8888","weight":10,"tags":null}"#
    );
    // Field names and JSON types, as Go's json.Unmarshal into Hertz's struct needs them.
    let v: serde_json::Value =
        serde_json::from_str(&server.cmd::<String>(&["HGET", KEY, "127.0.0.1:8889"])).unwrap();
    assert_eq!(v["service_name"], "hertz.test.demo");
    assert_eq!(v["addr"], "127.0.0.1:8889");
    assert!(v["weight"].is_i64() && v["weight"] == 5);
    assert_eq!(v["tags"], serde_json::json!({"zone": "a"}));
    assert_eq!(v.as_object().unwrap().len(), 4);

    // Deregister is HDEL of the one field.
    assert!(tagged.deregister().await.unwrap());
    let fields: Vec<String> = server.cmd(&["HKEYS", KEY]);
    assert_eq!(fields, vec!["127.0.0.1:8888"]);
    assert!(plain.deregister().await.unwrap());
    assert!(server.keys().is_empty());
}

/// Unlike Hertz's EXPIRE-only keepalive, our heartbeat re-runs HSET +
/// EXPIRE, so an entry lost to a flush or restart comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_recreates_lost_hertz_entries() {
    let mut server = RedisServer::start();
    let registry = RedisRegistry::builder(server.url())
        .schema(KeySchema::Hertz)
        .lease_ttl(Duration::from_secs(4))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let _reg = registry
        .register("hertz.test.demo", Instance::new("127.0.0.1:8888").unwrap())
        .await
        .unwrap();
    let value: String = server.cmd(&["HGET", KEY, "127.0.0.1:8888"]);
    server.flushall();
    eventually("the entry to be back after FLUSHALL", || async {
        (server.cmd::<Option<String>>(&["HGET", KEY, "127.0.0.1:8888"]) == Some(value.clone()))
            .then_some(())
    })
    .await;
    server.restart();
    eventually("the entry to be back after a restart", || async {
        (server.cmd::<Option<String>>(&["HGET", KEY, "127.0.0.1:8888"]) == Some(value.clone()))
            .then_some(())
    })
    .await;
    let ttl: i64 = server.cmd(&["TTL", KEY]);
    assert!((1..=4).contains(&ttl), "TTL {ttl}");
}

/// Entries written with raw commands exactly as Go Hertz writes them, read
/// by our resolver with Hertz's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_reads_what_hertz_writes() {
    use redis_discovery::RedisResolver;

    let server = RedisServer::start();
    let entries = [
        // What Go's json.Marshal writes for an instance without tags.
        (
            "127.0.0.1:8001",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8001","weight":10,"tags":null}"#,
        ),
        (
            "127.0.0.1:8002",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8002","weight":3,"tags":{"zone":"a"}}"#,
        ),
        // No tags field at all.
        (
            "127.0.0.1:8003",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8003","weight":7}"#,
        ),
        // Weight 0 and -5: Hertz reads them as 10.
        (
            "127.0.0.1:8004",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8004","weight":0,"tags":null}"#,
        ),
        (
            "127.0.0.1:8005",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8005","weight":-5,"tags":null}"#,
        ),
        // The address is taken from the JSON, not from the field.
        (
            "field-is-ignored",
            r#"{"service_name":"hertz.test.demo","addr":"127.0.0.1:8006","weight":1,"tags":null}"#,
        ),
        // Not JSON: skipped with a warning.
        ("127.0.0.1:8007", "this is not json"),
    ];
    for (field, value) in entries {
        server.cmd::<i64>(&["HSET", KEY, field, value]);
    }
    server.cmd::<i64>(&["EXPIRE", KEY, "60"]);
    let writes = server.writes();

    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.fetch("hertz.test.demo").await.unwrap();
    let mut got: Vec<(String, u32, Tags)> = snapshot
        .instances()
        .iter()
        .map(|i| (i.addr().to_owned(), i.weight(), i.tags().clone()))
        .collect();
    got.sort();
    let zone = Tags::from([("zone".to_owned(), "a".to_owned())]);
    let none = Tags::new;
    assert_eq!(
        got,
        vec![
            ("127.0.0.1:8001".into(), 10, none()),
            ("127.0.0.1:8002".into(), 3, zone),
            ("127.0.0.1:8003".into(), 7, none()),
            ("127.0.0.1:8004".into(), 10, none()),
            ("127.0.0.1:8005".into(), 10, none()),
            ("127.0.0.1:8006".into(), 1, none()),
        ]
    );
    // The resolver only read: no write reached the server.
    assert_eq!(server.writes(), writes);

    // Through the cache too (no pub/sub in this schema: periodic refresh).
    let cached = redis_discovery::Resolve::resolve(&resolver, &"hertz.test.demo".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(cached.len(), 6);
    server.cmd::<i64>(&["HDEL", KEY, "127.0.0.1:8001"]);
    assert_eq!(resolver.fetch("hertz.test.demo").await.unwrap().len(), 5);
}

/// A registration in our Hertz schema is found by our Hertz resolver,
/// i.e. the bytes round-trip through the layout Go reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hertz_registry_and_resolver_agree() {
    use redis_discovery::RedisResolver;

    let server = RedisServer::start();
    let registry = RedisRegistry::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let _reg = registry
        .register(
            "hertz.test.demo",
            Instance::new("127.0.0.1:8888").unwrap().with_weight(4),
        )
        .await
        .unwrap();
    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let listed = resolver.list("hertz.test.demo").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance.weight(), 4);
    let left = listed[0].lease_left.expect("the hash has an expiry");
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );
    assert_eq!(resolver.services().await.unwrap(), vec!["hertz.test.demo"]);
}

/// Regression: the Hertz key is read under the spelling of the request
/// that created the cache entry, and `watch` reused an existing entry. So
/// once a lowercased request for `orders` had come first (even one that
/// found nothing, remembered as a negative entry), `watch("Orders")`, as
/// the README advises for Go services named with capitals, kept reading
/// `/hertz/orders/server`. An entry with no instance, not watched, is now
/// replaced by a watch spelled otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_by_the_go_spelling_wins_over_an_earlier_lowercase_request() {
    use redis_discovery::resolver::{RedisResolver, Resolve};
    use redis_discovery::ServiceName;

    let server = RedisServer::start();
    let key = "/hertz/Orders/server";
    let json = r#"{"service_name":"Orders","addr":"127.0.0.1:8080","weight":10,"tags":null}"#;
    server.cmd::<()>(&["HSET", key, "127.0.0.1:8080", json]);
    server.cmd::<()>(&["EXPIRE", key, "60"]);
    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .refresh_interval(Duration::from_millis(200))
        .negative_ttl(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    // A lowercased request (a reqwest host) first: `/hertz/orders/server`
    // does not exist.
    let lowercase = ServiceName::new("orders").unwrap();
    assert!(resolver.resolve(&lowercase).await.unwrap().is_empty());
    assert!(resolver.cached("orders").is_some_and(|s| s.is_empty()));

    let watched = resolver.watch("Orders").await.unwrap();
    assert_eq!(watched.borrow().len(), 1, "read /hertz/Orders/server");
    // From then on every spelling finds it, lowercased hosts included.
    for spelling in ["orders", "Orders", "ORDERS"] {
        let snapshot = resolver.cached(spelling).expect("cached");
        assert_eq!(snapshot.len(), 1, "{spelling}");
        let resolved = resolver
            .resolve(&ServiceName::new(spelling).unwrap())
            .await
            .unwrap();
        assert_eq!(resolved.len(), 1, "{spelling}");
    }
    // A watched entry keeps its spelling, even with no instance left.
    server.cmd::<()>(&["DEL", key]);
    let mut updates = watched.clone();
    tokio::time::timeout(support::DEADLINE, updates.wait_for(|s| s.is_empty()))
        .await
        .expect("the watch sees the key gone")
        .unwrap();
    let other = resolver.watch("orders").await.unwrap();
    assert!(other.borrow().is_empty());
    server.cmd::<()>(&["HSET", key, "127.0.0.1:8080", json]);
    server.cmd::<()>(&["EXPIRE", key, "60"]);
    tokio::time::timeout(support::DEADLINE, updates.wait_for(|s| s.len() == 1))
        .await
        .expect("the watch, still reading /hertz/Orders/server, sees the key back")
        .unwrap();
}
