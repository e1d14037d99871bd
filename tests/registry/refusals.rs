//! What the registry refuses or reports: invalid input (nothing written),
//! out-of-range settings, a Redis that is down.

use super::*;

/// Issue 2, test 4: every validation rule errors and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_writes_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let s = Duration::from_secs;
    for (ttl, hb) in [(s(0), s(1)), (s(10), s(0)), (s(9), s(5))] {
        let err = RedisRegistry::builder(url.clone())
            .lease_ttl(ttl)
            .heartbeat_interval(hb)
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Invalid(ValidationError::Config(_))),
            "{err}"
        );
    }
    for prefix in ["", "a b", "{sd}"] {
        let err = RedisRegistry::builder(url.clone())
            .prefix(prefix)
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    }
    for bad_url in ["", "http://127.0.0.1:6379", "127.0.0.1:6379"] {
        let err = RedisRegistry::connect(bad_url).await.unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Invalid(ValidationError::RedisUrl { .. })
            ),
            "{err}"
        );
    }
    let err = RedisRegistry::builder(url.clone())
        .command_timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");

    let registry = registry(&server).await;
    for name in [
        "",
        "a b",
        "{orders}",
        "a:b",
        "a/b",
        "zürich",
        &"x".repeat(256),
    ] {
        let err = registry.register(name, instance(1)).await.unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{name:?}: {err}");
    }
    let too_big = instance(1)
        .with_tags((0..64).map(|n| (format!("key-{n}"), "v".repeat(256))))
        .unwrap();
    let err = registry.register("orders", too_big).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Invalid(ValidationError::EntryTooLarge { .. })
        ),
        "{err}"
    );
    let err = registry
        .deregister("orders", "not-an-address")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Invalid(ValidationError::Address { .. })),
        "{err}"
    );
    for addr in ["", "host", "host:0", "host:70000", "::1:80", "a b:1"] {
        assert!(Instance::new(addr).is_err(), "{addr:?}");
    }

    let dbsize: i64 = server.cmd(&["DBSIZE"]);
    assert_eq!(dbsize, 0, "keys written: {:?}", server.keys());
    assert_eq!(server.writes(), 0, "{:?}", server.commandstats());
}

/// Issue 2, test 6: Redis down gives a clear error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_an_error_not_a_hang() {
    let mut server = RedisServer::start();
    let url = server.url();
    let registry = RedisRegistry::builder(url.clone())
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    server.stop();

    let started = Instant::now();
    let err = registry.register("orders", instance(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Redis { .. } | RegistryError::Timeout { .. }
        ),
        "{err}"
    );
    eprintln!(
        "register with Redis down failed after {:?}: {err}",
        started.elapsed()
    );
    // Bounded by the timeouts, not a hang (loose: the machine may be busy).
    assert!(started.elapsed() < Duration::from_secs(10));

    let err = RedisRegistry::builder(url.as_str())
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_settings_are_refused() {
    let server = RedisServer::start();
    let err = RedisRegistry::builder(server.url())
        .lease_ttl(Duration::MAX)
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 24 hours"), "{err}");
    let err = RedisRegistry::builder(server.url())
        .heartbeat_interval(Duration::MAX)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    assert!(Instance::new("0.0.0.0:80").is_err());
    // Weight 0 cannot drain in the Hertz schema: refused, not silently 10.
    let hertz = RedisRegistry::builder(server.url())
        .schema(redis_discovery::KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let err = hertz
        .register("h", instance(1).with_weight(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Hertz schema"), "{err}");
    assert!(server.keys().is_empty());
}
