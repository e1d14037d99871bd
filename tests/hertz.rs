//! The Hertz-compatible key schema, checked byte for byte against what
//! hertz-contrib's Redis registry writes and reads.

mod support;

use std::time::Duration;

use redis_discovery::{Instance, KeySchema, RedisRegistry};
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
